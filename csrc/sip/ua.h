/* ua.h — a SIP user agent over nua. Pure C; csrc/lua_ua.c binds it.
 *
 * The engine owns what must outlive any Lua object:
 *   - the nua instance, through an asynchronous shutdown (nua_destroy is
 *     only legal after nua_r_shutdown completes);
 *   - every nua handle it creates or that arrives with a request, so the
 *     live count is exact and nothing leaks: a new incoming handle the
 *     application did not adopt during its event is destroyed at once
 *     (OPTIONS, INFO and other requests nua answered itself);
 *   - orphans: handles their owner let go of while a dialog or a
 *     registration was up. The engine ends them gracefully (BYE, CANCEL,
 *     un-REGISTER) and destroys them on their terminal event.
 * The application sees events only for handles it owns (bound magic) and
 * for new incoming handles; never after sip_ua_close(). */
#ifndef LUASIP_SIP_UA_H
#define LUASIP_SIP_UA_H

#include <sofia-sip/su_wait.h>
#include <sofia-sip/nua.h>

typedef struct sip_ua sip_ua_t;

typedef struct {
  nua_event_t event;
  int status;
  char const *phrase;
  nua_handle_t *nh;     /* NULL for UA-wide events */
  void *owner;          /* the handle's magic, or NULL for a new incoming handle */
  sip_t const *sip;     /* the message of the event, or NULL */
  msg_t *msg;           /* the same message; take a msg_ref to keep it */
  tagi_t const *tags;
  /* The event saved with nua_save_event(): an application that answers
   * the request later (NUTAG_WITH_SAVED) sets keep_saved and then owns
   * it (nua_destroy_event). */
  nua_saved_event_t saved[1];
  int keep_saved;
} sip_ua_event_t;

typedef void sip_ua_event_f(void *arg, sip_ua_event_t *ev);
/* Called once the nua is gone after sip_ua_close() (never from inside a
 * nua callback). */
typedef void sip_ua_done_f(void *arg);

sip_ua_t *sip_ua_create(su_root_t *root, sip_ua_event_f *cb, void *arg,
                        char *err, size_t errlen,
                        tag_type_t tag, tag_value_t value, ...);
nua_t *sip_ua_nua(sip_ua_t *ua);

/* Start the shutdown: calls are hung up and registrations removed by nua;
 * no more events reach the application; done(arg) runs when the nua has
 * been destroyed, after which ua itself is freed. Idempotent. */
void sip_ua_close(sip_ua_t *ua, sip_ua_done_f *done, void *arg);
/* Give up on a shutdown that never completed: leak the nua rather than
 * abort in nua_destroy. */
void sip_ua_abandon(sip_ua_t *ua);

/* A new handle owned by `owner` (non-NULL). */
nua_handle_t *sip_ua_handle(sip_ua_t *ua, void *owner, tag_type_t tag, tag_value_t value, ...);
/* Take ownership of a new incoming handle during its event. */
void sip_ua_adopt(sip_ua_t *ua, nua_handle_t *nh, void *owner);

enum sip_ua_release {
  SIP_UA_DESTROY,     /* destroy now */
  SIP_UA_BYE,         /* hang up the call (BYE, or CANCEL before answer, or 480 to an incoming one) */
  SIP_UA_UNREGISTER,  /* remove the registration */
};
/* The owner lets go of the handle; the engine finishes it as asked and
 * destroys it. No event reaches the owner afterwards. */
void sip_ua_release(sip_ua_t *ua, nua_handle_t *nh, enum sip_ua_release how);

typedef struct {
  int handles;  /* live nua handles, orphans included */
  int orphans;  /* handles being ended gracefully */
} sip_ua_counts_t;
sip_ua_counts_t sip_ua_counts(sip_ua_t const *ua);

/* The UA's event names without the "nua_" prefix: "i_invite", "r_register". */
char const *sip_ua_event_name(nua_event_t e);

#endif
