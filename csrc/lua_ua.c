/* lua_ua.c — Lua binding of the user agent engine (csrc/sip/ua.c):
 * core.ua{...} and its handles. Policy (calls, registration, auth) is in
 * lua/luasip/ua.lua; options become sofia tags and event tags Lua values
 * in lsiptags.c. This file delivers the events and manages lifetimes:
 *   - a UA is anchored until closed; closing starts nua's shutdown, which
 *     completes in the background (the context waits for it, bounded,
 *     when the Lua state closes);
 *   - a handle is not anchored: when it is collected or closed the engine
 *     ends what it had going gracefully (BYE, un-REGISTER);
 *   - events find their handle through a weak table, so a handle being
 *     collected just stops receiving them. */
#include "lsiptags.h"
#include "sip/ua.h"

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include <stdlib.h>
#include <string.h>

#define UA_CLASS "luasip.ua_core"
#define HANDLE_CLASS "luasip.handle"
#define MAX_TAGS 48


typedef struct closing_ua {
  struct closing_ua *next;
  sip_ua_t *ua;
  lsip_ctx *ctx;
} closing_ua;

typedef struct {
  lsip_obj obj;
  sip_ua_t *ua;      /* NULL once closed */
  int handles_ref;   /* weak table: lightuserdata(handle) -> handle userdata */
  int appl_message;  /* MESSAGE answered by the application */
} lua_ua;

typedef struct {
  lsip_obj obj;
  lua_ua *lu;
  int ua_ref;                 /* keeps the UA userdata alive */
  nua_handle_t *nh;           /* NULL once released */
  int adopted;
  int release_how;            /* enum sip_ua_release when collected */
  nua_saved_event_t pending[1]; /* a request waiting for the application's answer */
} lhandle;

/* Push the userdata of a live handle, or nothing (returns 0). */
static int push_handle(lua_ua *lu, lhandle *h)
{
  lua_State *L = lu->obj.ctx->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lu->handles_ref);
  lua_pushlightuserdata(L, h);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static void handle_release(lsip_obj *o);
static lhandle *new_handle(lua_State *L, lua_ua *lu, int ua_idx);

/* A request kept for the application's answer that will not get one:
 * a SUBSCRIBE nobody serves gets 489 (RFC 6665 §3.2.2), others 500. */
static void refuse_pending(nua_handle_t *nh, nua_saved_event_t pending[1])
{
  nua_event_data_t const *d = nua_event_data(pending);
  if (d && d->e_event == nua_i_subscribe)
    nua_respond(nh, SIP_489_BAD_EVENT, NUTAG_WITH_SAVED(pending), TAG_END());
  else
    nua_respond(nh, 500, "Not handled", NUTAG_WITH_SAVED(pending), TAG_END());
  nua_destroy_event(pending);
  pending[0] = NULL;
}

static void on_ua_event(void *arg, sip_ua_event_t *ev)
{
  lua_ua *lu = arg;
  lsip_ctx *ctx = lu->obj.ctx;
  lua_State *L = ctx->L;
  lhandle *h = ev->owner;
  lhandle *fresh = NULL;
  lhandle *answer_now = NULL;
  int top;

  if (ctx->closing || lu->obj.fn_ref == LUA_NOREF || !lua_checkstack(L, 24))
    return;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lu->obj.fn_ref);
  lua_pushstring(L, sip_ua_event_name(ev->event));
  lua_pushinteger(L, ev->status);
  lua_pushstring(L, ev->phrase ? ev->phrase : "");
  if (ev->nh && !h) {
    /* a new incoming handle: offered to Lua, adopted with h:adopt() */
    if (!lsip_push_ref(ctx, lu->obj.self_ref)) {
      lua_settop(L, top);
      return;
    }
    fresh = new_handle(L, lu, -1);
    lua_remove(L, -2); /* the UA */
    fresh->nh = ev->nh;
  } else if (h) {
    if (!push_handle(lu, h)) {
      lua_settop(L, top);
      return; /* being collected */
    }
    h = lua_touserdata(L, -1);
  } else {
    lua_pushnil(L);
  }
  if (ev->msg)
    lsip_push_msg(L, ev->msg);
  else
    lua_pushnil(L);
  lsip_push_event_info(L, ev->tags);

  /* An out-of-dialog MESSAGE is answered later, by the handler's task:
   * keep it (NUTAG_WITH_SAVED). One inside a dialog belongs to that call's
   * handle, whose respond() answers the INVITE: answer it below. A new
   * SUBSCRIBE (an application method in nua's defaults; status 100 until
   * answered) waits likewise for the watcher's accept() or reject(). */
  if (fresh && ev->saved[0] &&
      ((ev->event == nua_i_message && lu->appl_message) ||
       (ev->event == nua_i_subscribe && ev->status < 200))) {
    fresh->pending[0] = ev->saved[0];
    ev->keep_saved = 1;
  }
  /* An UPDATE is the application's to answer (NUTAG_APPL_METHOD): nua
   * without soa would answer an offer in it with a bare 200. The call
   * answers it during this event through h:respond(); one left unanswered
   * (no call, or its handler failed) gets 500 below. So does a SUBSCRIBE
   * for a new event inside an existing dialog (489 unless answered). */
  if (h && ev->saved[0] &&
      (ev->event == nua_i_update || (ev->event == nua_i_subscribe && ev->status < 200))) {
    if (h->pending[0]) {
      nua_respond(ev->nh, 500, "Not handled", NUTAG_WITH_SAVED(ev->saved), TAG_END());
    } else {
      h->pending[0] = ev->saved[0];
      ev->keep_saved = 1;
      answer_now = h;
    }
  }
  lsip_pcall(ctx, 6, 0);
  if (answer_now && answer_now->pending[0] == ev->saved[0] && answer_now->nh)
    refuse_pending(answer_now->nh, answer_now->pending);
  lua_settop(L, top);
  if (!fresh && h && ev->event == nua_i_message && lu->appl_message && ev->saved[0] &&
      h->nh && lu->ua)
    nua_respond(ev->nh, SIP_200_OK, NUTAG_WITH_SAVED(ev->saved), TAG_END());

  if (fresh && !fresh->adopted) {
    /* nobody took it: the engine disposes of it */
    if (fresh->pending[0])
      refuse_pending(ev->nh, fresh->pending);
    fresh->nh = NULL;
    lsip_obj_close(&fresh->obj);
  }
}

/* ---- the UA -------------------------------------------------------------- */

static void on_ua_done(void *arg)
{
  closing_ua *c = arg;
  lsip_ctx *ctx = c->ctx;
  closing_ua **pp = (closing_ua **)&ctx->closing_uas;
  while (*pp && *pp != c)
    pp = &(*pp)->next;
  if (*pp)
    *pp = c->next;
  free(c); /* the engine frees the UA itself after this callback */
  lsip_ctx_unref(ctx);
}

static void ua_release(lsip_obj *o)
{
  lua_ua *lu = (lua_ua *)o;
  lsip_ctx *ctx = o->ctx;
  closing_ua *c;
  if (!lu->ua)
    return;
  c = calloc(1, sizeof *c);
  if (!c) {
    sip_ua_abandon(lu->ua);
    lu->ua = NULL;
    return;
  }
  c->ua = lu->ua;
  c->ctx = ctx;
  c->next = ctx->closing_uas;
  ctx->closing_uas = c;
  ctx->refs++;
  lu->ua = NULL;
  if (!ctx->closing && lu->handles_ref != LUA_NOREF) {
    luaL_unref(ctx->L, LUA_REGISTRYINDEX, lu->handles_ref);
    lu->handles_ref = LUA_NOREF;
  }
  sip_ua_close(c->ua, on_ua_done, c);
}

/* Called by the context when the state closes: wait (bounded) for the
 * UAs being closed, then give up on the rest without aborting. */
void lsip_reap_uas(lsip_ctx *ctx, double seconds)
{
  double deadline = loop_now() + seconds;
  while (ctx->closing_uas && loop_now() < deadline)
    loop_step(ctx->loop, 20);
  while (ctx->closing_uas) {
    closing_ua *c = ctx->closing_uas;
    ctx->closing_uas = c->next;
    sip_ua_abandon(c->ua); /* its nua leaks: better than an abort */
    free(c);
    lsip_ctx_unref(ctx);
  }
}

static int opt_bool(lua_State *L, int idx, char const *k, int dflt)
{
  int v;
  lua_getfield(L, idx, k);
  v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.ua{options..., on_event = fn(name, status, phrase, handle, msg, info)} */
static int l_ua(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t tags[MAX_TAGS];
  char err[256] = "";
  lua_ua *lu;
  int keep;

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "on_event");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_event must be a function");
  lua_newtable(L);
  keep = lua_gettop(L);
  lsip_build_tags(L, 1, keep, LSIP_OPTS_UA, tags, MAX_TAGS, home, "luasip.ua");

  lu = compat_newuserdata(L, sizeof *lu);
  memset(lu, 0, sizeof *lu);
  lu->handles_ref = LUA_NOREF;
  lu->appl_message = opt_bool(L, 1, "appl_message", 1);
  lu->ua = sip_ua_create(loop_root(ctx->loop), on_ua_event, lu, err, sizeof err,
                         NUTAG_APPL_METHOD(lu->appl_message ? "MESSAGE, UPDATE" : "UPDATE"),
                         NUTAG_ENABLEMESSAGE(1),
                         NTATAG_UA(1),
                         NTATAG_MAXSIZE(65536),
                         TPTAG_LOG(ctx->trace),
                         TAG_NEXT(tags));
  su_home_deinit(home);
  if (!lu->ua)
    return lsip_fail(L, err, "EADDRINUSE");
  luaL_setmetatable(L, UA_CLASS);
  lsip_obj_init(ctx, &lu->obj, LSIP_UAS, ua_release);
  lsip_obj_set_fn(L, &lu->obj, keep - 1);
  lsip_obj_anchor(L, &lu->obj, -1);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushstring(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lu->handles_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static lua_ua *check_ua(lua_State *L)
{
  lua_ua *lu = luaL_checkudata(L, 1, UA_CLASS);
  if (!lu->ua)
    luaL_error(L, "luasip.ua: used after close()");
  return lu;
}

/* ua:get_params() — nua answers with an r_get_params event (info.contact) */
static int ua_get_params(lua_State *L)
{
  lua_ua *lu = check_ua(L);
  nua_get_params(sip_ua_nua(lu->ua), TAG_ANY(), TAG_END());
  return 0;
}

static int ua_set_params(lua_State *L)
{
  lua_ua *lu = check_ua(L);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t tags[MAX_TAGS];
  lua_newtable(L);
  lsip_build_tags(L, 2, -1, LSIP_OPTS_UA, tags, MAX_TAGS, home, "ua:set_params");
  nua_set_params(sip_ua_nua(lu->ua), TAG_NEXT(tags));
  su_home_deinit(home);
  return 0;
}

static int ua_close(lua_State *L)
{
  lua_ua *lu = luaL_checkudata(L, 1, UA_CLASS);
  lsip_obj_close(&lu->obj);
  return 0;
}

static int ua_closed(lua_State *L)
{
  lua_ua *lu = luaL_checkudata(L, 1, UA_CLASS);
  lua_pushboolean(L, lu->ua == NULL);
  return 1;
}

static int ua_counts(lua_State *L)
{
  lua_ua *lu = check_ua(L);
  sip_ua_counts_t c = sip_ua_counts(lu->ua);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, c.handles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, c.orphans);
  lua_setfield(L, -2, "orphans");
  return 1;
}

/* ---- handles ------------------------------------------------------------- */

static void handle_release(lsip_obj *o)
{
  lhandle *h = (lhandle *)o;
  lsip_ctx *ctx = o->ctx;
  if (h->nh && h->lu && h->lu->ua) {
    if (h->pending[0])
      refuse_pending(h->nh, h->pending);
    sip_ua_release(h->lu->ua, h->nh, (enum sip_ua_release)h->release_how);
  }
  if (h->pending[0])
    nua_destroy_event(h->pending);
  h->pending[0] = NULL;
  h->nh = NULL;
  if (!ctx->closing) {
    if (h->lu && h->lu->handles_ref != LUA_NOREF) {
      lua_rawgeti(ctx->L, LUA_REGISTRYINDEX, h->lu->handles_ref);
      lua_pushlightuserdata(ctx->L, h);
      lua_pushnil(ctx->L);
      lua_rawset(ctx->L, -3);
      lua_pop(ctx->L, 1);
    }
    luaL_unref(ctx->L, LUA_REGISTRYINDEX, h->ua_ref);
  }
  h->ua_ref = LUA_NOREF;
}

/* A handle userdata for lu (its userdata at ua_idx), left on the stack. */
static lhandle *new_handle(lua_State *L, lua_ua *lu, int ua_idx)
{
  lhandle *h;
  ua_idx = lua_absindex(L, ua_idx);
  h = compat_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->lu = lu;
  h->release_how = SIP_UA_DESTROY;
  luaL_setmetatable(L, HANDLE_CLASS);
  lua_pushvalue(L, ua_idx);
  h->ua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lsip_obj_init(lu->obj.ctx, &h->obj, LSIP_HANDLES, handle_release);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lu->handles_ref);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return h;
}

/* ua:handle{to=, from=, ...} -> a handle for outgoing requests */
static int ua_handle(lua_State *L)
{
  lua_ua *lu = check_ua(L);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t tags[MAX_TAGS];
  lhandle *h;
  int keep;
  lua_newtable(L);
  keep = lua_gettop(L);
  lsip_build_tags(L, 2, keep, LSIP_OPTS_REQUEST, tags, MAX_TAGS, home, "ua:handle");
  h = new_handle(L, lu, 1);
  h->adopted = 1;
  h->nh = sip_ua_handle(lu->ua, h, TAG_NEXT(tags));
  su_home_deinit(home);
  if (!h->nh) {
    lsip_obj_close(&h->obj);
    return lsip_fail(L, "cannot create a handle", "ENOMEM");
  }
  return 1;
}

nua_handle_t *lsip_nua_handle_of(lua_State *L, int idx)
{
  lhandle *h = luaL_testudata(L, idx, HANDLE_CLASS);
  return h && h->nh && h->lu->ua ? h->nh : NULL;
}

static lhandle *check_handle(lua_State *L)
{
  lhandle *h = luaL_checkudata(L, 1, HANDLE_CLASS);
  if (!h->nh || !h->lu->ua)
    luaL_error(L, "luasip.handle: used after close()");
  return h;
}

/* h:adopt() — take ownership of a new incoming handle during its event */
static int handle_adopt(lua_State *L)
{
  lhandle *h = check_handle(L);
  if (!h->adopted) {
    sip_ua_adopt(h->lu->ua, h->nh, h);
    h->adopted = 1;
  }
  return 0;
}

/* h:on_collect("destroy" | "bye" | "unregister") — what closing or
 * collecting the handle does to what it has going. */
static int handle_on_collect(lua_State *L)
{
  static char const *const names[] = { "destroy", "bye", "unregister", NULL };
  lhandle *h = luaL_checkudata(L, 1, HANDLE_CLASS);
  h->release_how = luaL_checkoption(L, 2, NULL, names);
  return 0;
}

typedef void nua_req_f(nua_handle_t *, tag_type_t, tag_value_t, ...);

static struct { char const *name; nua_req_f *fn; } const requests[] = {
  { "invite", nua_invite }, { "ack", nua_ack }, { "bye", nua_bye },
  { "cancel", nua_cancel }, { "register", nua_register },
  { "unregister", nua_unregister }, { "options", nua_options },
  { "message", nua_message }, { "info", nua_info }, { "refer", nua_refer },
  { "update", nua_update }, { "prack", nua_prack }, { "notify", nua_notify },
  { "subscribe", nua_subscribe }, { "unsubscribe", nua_unsubscribe },
  { "publish", nua_publish }, { "unpublish", nua_unpublish },
  { NULL, NULL },
};

/* h:send(method, opts) */
static int handle_send(lua_State *L)
{
  lhandle *h = check_handle(L);
  char const *method = luaL_checkstring(L, 2);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t tags[MAX_TAGS];
  int i;
  for (i = 0; requests[i].name; i++)
    if (strcmp(requests[i].name, method) == 0)
      break;
  if (!requests[i].name)
    return luaL_error(L, "luasip.handle: unknown request '%s'", method);
  lua_newtable(L);
  lsip_build_tags(L, 3, -1, LSIP_OPTS_REQUEST, tags, MAX_TAGS, home, method);
  requests[i].fn(h->nh, TAG_NEXT(tags));
  su_home_deinit(home);
  return 0;
}

/* h:respond(status, phrase, opts) */
static int handle_respond(lua_State *L)
{
  lhandle *h = check_handle(L);
  int status = (int)luaL_checkinteger(L, 2);
  char const *phrase = luaL_optstring(L, 3, NULL);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t tags[MAX_TAGS];
  luaL_argcheck(L, status >= 100 && status <= 699, 2, "status must be 100..699");
  lua_newtable(L);
  lsip_build_tags(L, 4, -1, LSIP_OPTS_REQUEST, tags, MAX_TAGS, home, "respond");
  if (!phrase)
    phrase = sip_status_phrase(status);
  if (!phrase)
    phrase = "Unknown";
  if (h->pending[0]) {
    nua_respond(h->nh, status, phrase, NUTAG_WITH_SAVED(h->pending), TAG_NEXT(tags));
    if (status >= 200) {
      nua_destroy_event(h->pending);
      h->pending[0] = NULL;
    }
  } else {
    nua_respond(h->nh, status, phrase, TAG_NEXT(tags));
  }
  su_home_deinit(home);
  return 0;
}

/* h:authenticate("Digest:\"realm\":user:password") — answer the pending
 * 401/407 challenge with sofia's digest client (MD5). */
static int handle_authenticate(lua_State *L)
{
  lhandle *h = check_handle(L);
  char const *auth = luaL_checkstring(L, 2);
  nua_authenticate(h->nh, NUTAG_AUTH(auth), TAG_END());
  return 0;
}

/* h:has("invite" | "active_call" | "hold" | "registrations") */
static int handle_has(lua_State *L)
{
  lhandle *h = check_handle(L);
  char const *what = luaL_checkstring(L, 2);
  int v;
  if (strcmp(what, "invite") == 0) v = nua_handle_has_invite(h->nh);
  else if (strcmp(what, "active_call") == 0) v = nua_handle_has_active_call(h->nh);
  else if (strcmp(what, "hold") == 0) v = nua_handle_has_call_on_hold(h->nh);
  else if (strcmp(what, "registrations") == 0) v = nua_handle_has_registrations(h->nh);
  else return luaL_error(L, "luasip.handle: has() knows invite, active_call, hold, registrations");
  lua_pushboolean(L, v);
  return 1;
}

static int handle_close(lua_State *L)
{
  lhandle *h = luaL_checkudata(L, 1, HANDLE_CLASS);
  lsip_obj_close(&h->obj);
  return 0;
}

static int handle_alive(lua_State *L)
{
  lhandle *h = luaL_checkudata(L, 1, HANDLE_CLASS);
  lua_pushboolean(L, h->nh != NULL && h->lu->ua != NULL);
  return 1;
}

static int handle_tostring(lua_State *L)
{
  lhandle *h = luaL_checkudata(L, 1, HANDLE_CLASS);
  lua_pushfstring(L, "luasip.handle%s: %p", h->nh ? "" : " (closed)", (void *)h);
  return 1;
}

/* SIP message tracing (luasip.trace) for every open UA. */
void lsip_ua_trace(lsip_ctx *ctx, int on)
{
  for (lsip_obj *o = ctx->objects.next; o != &ctx->objects; o = o->next)
    if (o->kind == LSIP_UAS && ((lua_ua *)o)->ua)
      nua_set_params(sip_ua_nua(((lua_ua *)o)->ua), TPTAG_LOG(on), TAG_END());
}

/* core.closing_uas() -> UAs whose shutdown is still in progress (cheap:
 * ua:close() polls it) */
static int l_closing_uas(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  int n = 0;
  for (closing_ua *c = ctx->closing_uas; c; c = c->next)
    n++;
  lua_pushinteger(L, n);
  return 1;
}

void lsip_ua_counts(lsip_ctx *ctx, int *handles, int *orphans, int *closing)
{
  *handles = *orphans = *closing = 0;
  for (lsip_obj *o = ctx->objects.next; o != &ctx->objects; o = o->next) {
    if (o->kind == LSIP_UAS && ((lua_ua *)o)->ua) {
      sip_ua_counts_t c = sip_ua_counts(((lua_ua *)o)->ua);
      *handles += c.handles;
      *orphans += c.orphans;
    }
  }
  for (closing_ua *c = ctx->closing_uas; c; c = c->next) {
    sip_ua_counts_t n = sip_ua_counts(c->ua);
    *handles += n.handles;
    *orphans += n.orphans;
    ++*closing;
  }
}

void lsip_open_ua(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "ua", l_ua }, { "closing_uas", l_closing_uas }, { NULL, NULL },
  };
  static luaL_Reg const ua_methods[] = {
    { "handle", ua_handle }, { "get_params", ua_get_params },
    { "set_params", ua_set_params }, { "close", ua_close },
    { "closed", ua_closed }, { "counts", ua_counts }, { NULL, NULL },
  };
  static luaL_Reg const ua_meta[] = {
    { "__gc", ua_close }, { "__close", ua_close }, { NULL, NULL },
  };
  static luaL_Reg const h_methods[] = {
    { "adopt", handle_adopt }, { "on_collect", handle_on_collect },
    { "send", handle_send }, { "respond", handle_respond }, { "has", handle_has },
    { "authenticate", handle_authenticate },
    { "close", handle_close }, { "alive", handle_alive }, { NULL, NULL },
  };
  static luaL_Reg const h_meta[] = {
    { "__gc", handle_close }, { "__close", handle_close },
    { "__tostring", handle_tostring }, { NULL, NULL },
  };
  lsip_class(L, UA_CLASS, ua_methods, ua_meta);
  lsip_class(L, HANDLE_CLASS, h_methods, h_meta);
  lsip_setfuncs(L, ctx, funcs);
}
