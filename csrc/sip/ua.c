/* ua.c — a SIP user agent over nua; see ua.h. */
#include "sip/ua.h"

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/msg.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long an orphan may take to end before it is destroyed anyway:
 * longer than a non-INVITE transaction (64*T1 = 32 s). */
#define ORPHAN_TTL_S 40

/* Each handle's magic: the engine's record of it. */
typedef struct uah {
  struct uah *next, *prev;
  sip_ua_t *ua;
  nua_handle_t *nh;
  void *owner;                /* NULL once orphaned */
  enum sip_ua_release how;
  int uas_pending;            /* an incoming INVITE not yet answered */
  int established;            /* the call reached "ready" */
  su_time_t deadline;         /* orphans only */
} uah_t;

struct sip_ua {
  su_root_t *root;
  nua_t *nua;
  sip_ua_event_f *cb;
  void *arg;
  uah_t handles;              /* list head */
  int nhandles, norphans;
  su_timer_t *reaper;         /* orphan deadlines; also the deferred nua_destroy */
  int closing;                /* nua_shutdown sent */
  int shut;                   /* nua_r_shutdown final seen */
  int destroyed;
  sip_ua_done_f *done;
  void *done_arg;
  uah_t *dispatching;         /* the handle of the event being delivered */
  int dispatch_gone;          /* ... which the application destroyed */
};

char const *sip_ua_event_name(nua_event_t e)
{
  char const *n = nua_event_name(e);
  return strncmp(n, "nua_", 4) == 0 ? n + 4 : n;
}

static uah_t *uah_new(sip_ua_t *ua, nua_handle_t *nh, void *owner)
{
  uah_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->ua = ua;
  h->nh = nh;
  h->owner = owner;
  h->next = ua->handles.next;
  h->prev = &ua->handles;
  h->next->prev = h;
  ua->handles.next = h;
  ua->nhandles++;
  nua_handle_bind(nh, (nua_hmagic_t *)h);
  return h;
}

static void uah_destroy(uah_t *h)
{
  sip_ua_t *ua = h->ua;
  if (h == ua->dispatching)
    ua->dispatch_gone = 1;
  h->prev->next = h->next;
  h->next->prev = h->prev;
  ua->nhandles--;
  if (!h->owner)
    ua->norphans--;
  nua_handle_bind(h->nh, NULL);
  nua_handle_destroy(h->nh);
  free(h);
}

static void arm_reaper(sip_ua_t *ua);

/* ---- the nua callback ---------------------------------------------------- */

static int callstate_of(tagi_t const *tags)
{
  int cs = -1;
  tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
  return cs;
}

/* Is this event the end of what the orphan was asked to finish? */
static int orphan_done(uah_t *h, nua_event_t event, int status, tagi_t const *tags)
{
  switch (event) {
  case nua_i_state:
    return callstate_of(tags) == nua_callstate_terminated;
  case nua_i_terminated:
    return 1;
  case nua_r_bye:
    /* before the call was up, nua_bye() sent CANCEL: its 200 comes as
     * r_bye, but the INVITE may still be answered; wait for the end */
    return status >= 200 && h->established;
  case nua_r_unregister:
  case nua_r_register:
    return h->how == SIP_UA_UNREGISTER && status >= 200;
  default:
    return 0;
  }
}

static void on_nua_event(nua_event_t event, int status, char const *phrase,
                         nua_t *nua, nua_magic_t *magic,
                         nua_handle_t *nh, nua_hmagic_t *hmagic,
                         sip_t const *sip, tagi_t tags[])
{
  sip_ua_t *ua = (sip_ua_t *)magic;
  uah_t *h = (uah_t *)hmagic;
  sip_ua_event_t ev;
  int fresh = 0;

  if (event == nua_r_shutdown) {
    if (status >= 200 && !ua->shut) {
      ua->shut = 1;
      /* nua_destroy() may not run inside its own callback. */
      su_timer_set_interval(ua->reaper, NULL, NULL, 0);
      arm_reaper(ua);
    }
    return;
  }
  if (ua->closing)
    return;

  if (nh && !h) {
    /* A new incoming handle: nua created it for a request. */
    h = uah_new(ua, nh, NULL);
    if (!h) {
      nua_handle_destroy(nh);
      return;
    }
    ua->norphans++; /* owned by nobody until adopted */
    fresh = 1;
  }
  if (h && event == nua_i_invite)
    h->uas_pending = 1;
  else if (h && event == nua_i_state && callstate_of(tags) >= nua_callstate_completed)
    h->uas_pending = 0;
  if (h && event == nua_i_state && callstate_of(tags) == nua_callstate_ready)
    h->established = 1;
  if (h && !h->owner && !fresh) {
    if (event == nua_i_update) /* the application answers UPDATE: nobody will */
      nua_respond(nh, SIP_481_NO_TRANSACTION, NUTAG_WITH_THIS(nua), TAG_END());
    if (orphan_done(h, event, status, tags))
      uah_destroy(h);
    return;
  }

  memset(&ev, 0, sizeof ev);
  ev.event = event;
  ev.status = status;
  ev.phrase = phrase;
  ev.nh = nh;
  ev.owner = h ? h->owner : NULL;
  ev.sip = sip;
  ev.msg = NULL;
  if (nua_save_event(ua->nua, ev.saved)) {
    nua_event_data_t const *data = nua_event_data(ev.saved);
    ev.msg = data && data->e_msg ? msg_ref_create(data->e_msg) : NULL;
  }
  ev.tags = tags;
  ua->dispatching = h;
  ua->dispatch_gone = 0;
  ua->cb(ua->arg, &ev);
  ua->dispatching = NULL;
  if (ev.msg)
    msg_destroy(ev.msg);
  if (!ev.keep_saved && ev.saved[0])
    nua_destroy_event(ev.saved);

  /* Nobody adopted a new incoming handle: nua has answered the request
   * (OPTIONS, INFO, ...) or the application ignored it. */
  if (ua->dispatch_gone)
    return;
  if (fresh && !ua->closing && !h->owner) {
    if (event == nua_i_invite && nua_handle_has_invite(nh)) {
      /* An INVITE nobody took: refuse it, then let it end as an orphan. */
      h->how = SIP_UA_BYE;
      h->deadline = su_now();
      h->deadline.tv_sec += ORPHAN_TTL_S;
      nua_respond(nh, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
      arm_reaper(ua);
    } else {
      uah_destroy(h);
    }
  }
}

/* ---- orphan deadlines and the deferred destroy ------------------------- */

static void destroy_nua(sip_ua_t *ua)
{
  while (ua->handles.next != &ua->handles) {
    uah_t *h = ua->handles.next;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    nua_handle_bind(h->nh, NULL); /* nua_destroy frees the handles */
    free(h);
  }
  ua->nhandles = ua->norphans = 0;
  nua_destroy(ua->nua);
  ua->nua = NULL;
  ua->destroyed = 1;
  su_timer_destroy(ua->reaper);
  ua->reaper = NULL;
  if (ua->done)
    ua->done(ua->done_arg);
  free(ua);
}

static void on_reaper(su_root_magic_t *rm, su_timer_t *t, su_timer_arg_t *arg)
{
  sip_ua_t *ua = (sip_ua_t *)arg;
  su_time_t now = su_now();
  (void)rm; (void)t;
  if (ua->shut) {
    destroy_nua(ua);
    return;
  }
  for (uah_t *h = ua->handles.next, *next; h != &ua->handles; h = next) {
    next = h->next;
    if (!h->owner && h->deadline.tv_sec && su_time_cmp(h->deadline, now) <= 0)
      uah_destroy(h);
  }
  arm_reaper(ua);
}

static void arm_reaper(sip_ua_t *ua)
{
  su_time_t first = { 0, 0 };
  if (!ua->reaper)
    return;
  if (ua->shut) {
    su_timer_set_interval(ua->reaper, on_reaper, (su_timer_arg_t *)ua, 0);
    return;
  }
  for (uah_t *h = ua->handles.next; h != &ua->handles; h = h->next)
    if (!h->owner && h->deadline.tv_sec &&
        (!first.tv_sec || su_time_cmp(h->deadline, first) < 0))
      first = h->deadline;
  if (first.tv_sec)
    su_timer_set_at(ua->reaper, on_reaper, (su_timer_arg_t *)ua, first);
  else
    su_timer_reset(ua->reaper);
}

/* ---- the API ------------------------------------------------------------ */

sip_ua_t *sip_ua_create(su_root_t *root, sip_ua_event_f *cb, void *arg,
                        char *err, size_t errlen,
                        tag_type_t tag, tag_value_t value, ...)
{
  sip_ua_t *ua = calloc(1, sizeof *ua);
  ta_list ta;
  if (!ua) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ua->root = root;
  ua->cb = cb;
  ua->arg = arg;
  ua->handles.next = ua->handles.prev = &ua->handles;
  ua->reaper = su_timer_create(su_root_task(root), 0);
  ta_start(ta, tag, value);
  ua->nua = nua_create(root, on_nua_event, (nua_magic_t *)ua, ta_tags(ta));
  (void)ta_end(ta);
  if (!ua->nua || !ua->reaper) {
    snprintf(err, errlen, "cannot create the user agent: %s",
             errno ? strerror(errno) : "bad address or parameters");
    if (ua->reaper)
      su_timer_destroy(ua->reaper);
    free(ua);
    return NULL;
  }
  return ua;
}

nua_t *sip_ua_nua(sip_ua_t *ua) { return ua->nua; }

void sip_ua_close(sip_ua_t *ua, sip_ua_done_f *done, void *arg)
{
  if (ua->closing)
    return;
  ua->closing = 1;
  ua->done = done;
  ua->done_arg = arg;
  su_timer_reset(ua->reaper);
  nua_shutdown(ua->nua);
}

void sip_ua_abandon(sip_ua_t *ua)
{
  /* The nua and its handles stay allocated; make sure nothing of ours
   * is reachable from them any more. */
  if (ua->destroyed)
    return;
  su_timer_destroy(ua->reaper);
  ua->reaper = NULL;
  ua->destroyed = 1;
}

nua_handle_t *sip_ua_handle(sip_ua_t *ua, void *owner, tag_type_t tag, tag_value_t value, ...)
{
  ta_list ta;
  nua_handle_t *nh;
  if (ua->closing)
    return NULL;
  ta_start(ta, tag, value);
  nh = nua_handle(ua->nua, NULL, ta_tags(ta));
  (void)ta_end(ta);
  if (nh && !uah_new(ua, nh, owner)) {
    nua_handle_destroy(nh);
    return NULL;
  }
  return nh;
}

void sip_ua_adopt(sip_ua_t *ua, nua_handle_t *nh, void *owner)
{
  uah_t *h = nua_handle_magic(nh);
  if (h && !h->owner && owner) {
    h->owner = owner;
    ua->norphans--;
  }
}

void sip_ua_release(sip_ua_t *ua, nua_handle_t *nh, enum sip_ua_release how)
{
  uah_t *h = nua_handle_magic(nh);
  int pending = 0;
  if (!h || !h->owner)
    return;
  h->owner = NULL;
  ua->norphans++;
  if (ua->closing) /* nua_shutdown ends everything */
    return;
  h->how = how;
  if (how == SIP_UA_BYE && h->uas_pending) {
    nua_respond(nh, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    pending = 1;
  } else if (how == SIP_UA_BYE && nua_handle_has_invite(nh)) {
    nua_bye(nh, TAG_END());
    pending = 1;
  } else if (how == SIP_UA_UNREGISTER && nua_handle_has_registrations(nh)) {
    nua_unregister(nh, TAG_END());
    pending = 1;
  }
  if (!pending) {
    uah_destroy(h);
    return;
  }
  h->deadline = su_now();
  h->deadline.tv_sec += ORPHAN_TTL_S;
  arm_reaper(ua);
}

sip_ua_counts_t sip_ua_counts(sip_ua_t const *ua)
{
  sip_ua_counts_t c = { ua->nhandles, ua->norphans };
  return c;
}
