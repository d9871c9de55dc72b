/* lua_ua.c — Lua binding of the user agent engine (csrc/sip/ua.c):
 * core.ua{...} and its handles. Policy (calls, registration, auth) is in
 * lua/luasip/ua.lua; this file converts options to sofia tags and nua
 * events to Lua values, and manages lifetimes:
 *   - a UA is anchored until closed; closing starts nua's shutdown, which
 *     completes in the background (the context waits for it, bounded,
 *     when the Lua state closes);
 *   - a handle is not anchored: when it is collected or closed the engine
 *     ends what it had going gracefully (BYE, un-REGISTER);
 *   - events find their handle through a weak table, so a handle being
 *     collected just stops receiving them. */
#include "lcore.h"
#include "sip/ua.h"
#include "sip/stun.h"

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/soa_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UA_CLASS "luasip.ua_core"
#define HANDLE_CLASS "luasip.handle"
#define MAX_TAGS 48

void lsip_push_msg(lua_State *L, msg_t *msg);
void lsip_push_url(lua_State *L, url_t const *u);

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

/* ---- tags from Lua options ---------------------------------------------- */

enum kind { K_STR, K_UINT, K_BOOL, K_REFRESHER, K_HANDLE, K_EVENT, K_HEADERS };

typedef struct {
  char const *key;
  tag_type_t tag;
  enum kind kind;
} optmap;

static optmap const request_opts[] = {
  { "to", siptag_to_str, K_STR },
  { "from", siptag_from_str, K_STR },
  { "uri", nutag_url, K_STR },
  { "headers", siptag_header_str, K_HEADERS },
  { "body", siptag_payload_str, K_STR },
  { "content_type", siptag_content_type_str, K_STR },
  { "sdp", soatag_user_sdp_str, K_STR },
  { "hold", soatag_hold, K_STR },
  { "refer_to", siptag_refer_to_str, K_STR },
  { "referred_by", siptag_referred_by_str, K_STR },
  { "replaces", siptag_replaces_str, K_STR },
  { "event", siptag_event_str, K_STR },
  { "subscription_state", siptag_subscription_state_str, K_STR },
  { "expires", siptag_expires_str, K_STR },
  { "registrar", nutag_registrar, K_STR },
  { "contact_user", nutag_m_username, K_STR },
  { "contact_display", nutag_m_display, K_STR },
  { "contact_params", nutag_m_params, K_STR },
  { "contact", siptag_contact_str, K_STR },
  { "authorization", siptag_authorization_str, K_STR },
  { "proxy_authorization", siptag_proxy_authorization_str, K_STR },
  { "supported", siptag_supported_str, K_STR },
  { "require", siptag_require_str, K_STR },
  { "session_timer", nutag_session_timer, K_UINT },
  { "min_se", nutag_min_se, K_UINT },
  { "refresher", nutag_session_refresher, K_REFRESHER },
  { "early_media", nutag_early_media, K_BOOL },
  { "reason", siptag_reason_str, K_STR },
  { "notify_refer", nutag_notify_refer, K_HANDLE },
  { "refer_event", nutag_refer_event, K_EVENT },
  { "route", siptag_route_str, K_STR },
  { "user_agent", siptag_user_agent_str, K_STR },
  { "subject", siptag_subject_str, K_STR },
  { "allow", siptag_allow_str, K_STR },
  { "refresh_without_sdp", nutag_refresh_without_sdp, K_BOOL },
  { "update_refresh", nutag_update_refresh, K_BOOL },
  { "invite_timer", nutag_invite_timer, K_UINT },
  { "autoanswer", nutag_autoanswer, K_BOOL },
  { "media_enable", nutag_media_enable, K_BOOL },
  { NULL, NULL, K_STR },
};

static optmap const ua_opts[] = {
  { "url", nutag_url, K_STR },
  { "sips_url", nutag_sips_url, K_STR },
  { "from", siptag_from_str, K_STR },
  { "user_agent", nutag_user_agent, K_STR },
  { "proxy", nutag_proxy, K_STR },
  { "registrar", nutag_registrar, K_STR },
  { "certificate_dir", nutag_certificate_dir, K_STR },
  { "keepalive", nutag_keepalive, K_UINT },
  { "outbound", nutag_outbound, K_STR },
  { "session_timer", nutag_session_timer, K_UINT },
  { "min_se", nutag_min_se, K_UINT },
  { "refresher", nutag_session_refresher, K_REFRESHER },
  { "supported", siptag_supported_str, K_STR },
  { "allow", siptag_allow_str, K_STR },
  { "appl_method", nutag_appl_method, K_STR },
  { "early_media", nutag_early_media, K_BOOL },
  { "only183_100rel", nutag_only183_100rel, K_BOOL },
  { "contact_user", nutag_m_username, K_STR },
  { "contact_display", nutag_m_display, K_STR },
  { "tls_verify_policy", tptag_tls_verify_policy, K_UINT },
  { "tport_keepalive", tptag_keepalive, K_UINT },
  { "media_address", soatag_address, K_STR },
  { "max_size", ntatag_maxsize, K_UINT },
  { "client_rport", ntatag_client_rport, K_BOOL },
  { "server_rport", ntatag_server_rport, K_UINT },
  { "sip_t1", ntatag_sip_t1, K_UINT },
  { "sip_t1x64", ntatag_sip_t1x64, K_UINT },
  { "enable_message", nutag_enablemessage, K_BOOL },
  { "autoalert", nutag_autoalert, K_BOOL },
  { "auto_100", nutag_auto100, K_BOOL },
  { "auto_302", nutag_auto302, K_BOOL },
  { NULL, NULL, K_STR },
};

static int valid_token(char const *s, size_t len)
{
  if (len == 0)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c))
      return 0;
  }
  return 1;
}

/* Check one header and push its "Name: value\r\n" line. */
static void push_header_line(lua_State *L, char const *name, size_t nlen,
                             char const *value, size_t vlen, char const *what)
{
  if (!valid_token(name, nlen))
    luaL_error(L, "%s: bad header name '%s'", what, name);
  for (size_t i = 0; i < vlen; i++)
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
      luaL_error(L, "%s: header '%s' has a line break in its value", what, name);
  lua_pushlstring(L, name, nlen);
  lua_pushliteral(L, ": ");
  lua_pushlstring(L, value, vlen);
  lua_pushliteral(L, "\r\n");
  lua_concat(L, 4);
}

/* headers = { Name = "value" | {"v1", "v2"}, ... } or { "Name: value", ... }.
 * Pushes the "Name: value\r\n..." string. Nothing is allocated outside
 * Lua, so an error on a bad header leaks nothing. */
static void push_headers(lua_State *L, int t, char const *what)
{
  luaL_Buffer b;
  int list, n = 0;
  t = lua_absindex(L, t);
  if (!lua_istable(L, t))
    luaL_error(L, "%s: headers must be a table", what);
  lua_newtable(L); /* the lines */
  list = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t nlen, vlen;
    if (lua_type(L, -2) == LUA_TNUMBER) {
      char const *line = lua_tostring(L, -1);
      char const *colon = line ? strchr(line, ':') : NULL;
      char const *v;
      if (!colon)
        luaL_error(L, "%s: header list entries must look like \"Name: value\"", what);
      v = colon + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      push_header_line(L, line, (size_t)(colon - line), v, strlen(v), what);
      lua_rawseti(L, list, ++n);
    } else if (lua_type(L, -2) == LUA_TSTRING) {
      char const *name = lua_tolstring(L, -2, &nlen);
      if (lua_istable(L, -1)) {
        for (int i = 1; i <= (int)lua_rawlen(L, -1); i++) {
          char const *v;
          lua_rawgeti(L, -1, i);
          v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vlen) : NULL;
          if (!v)
            luaL_error(L, "%s: header values must be strings", what);
          push_header_line(L, name, nlen, v, vlen, what);
          lua_rawseti(L, list, ++n);
          lua_pop(L, 1);
        }
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        char const *v = lua_tolstring(L, -1, &vlen);
        push_header_line(L, name, nlen, v, vlen, what);
        lua_rawseti(L, list, ++n);
      } else {
        luaL_error(L, "%s: header values must be strings", what);
      }
    } else {
      luaL_error(L, "%s: header names must be strings", what);
    }
    lua_pop(L, 1);
  }
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, list);
}

static lhandle *to_handle(lua_State *L, int idx);

/* Fill tags from the option table at idx; values are kept alive by the
 * `keep` table (at keep index) until the call returns. Unknown keys are an
 * error so that typos do not pass silently. */
static int build_tags(lua_State *L, int idx, int keep, optmap const *map,
                      tagi_t *tags, int max, su_home_t *home, char const *what)
{
  int n = 0;
  tags[0].t_tag = NULL;
  tags[0].t_value = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  idx = lua_absindex(L, idx);
  keep = lua_absindex(L, keep);
  if (!lua_istable(L, idx))
    luaL_error(L, "%s: options must be a table", what);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    char const *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    optmap const *m = map;
    if (!key)
      luaL_error(L, "%s: option names must be strings", what);
    for (; m->key; m++)
      if (strcmp(m->key, key) == 0)
        break;
    if (!m->key) {
      lua_pop(L, 1);
      continue; /* the Lua layer owns other keys */
    }
    if (n >= max - 1)
      luaL_error(L, "%s: too many options", what);
    tags[n].t_tag = m->tag;
    switch (m->kind) {
    case K_STR:
      if (!lua_isstring(L, -1))
        luaL_error(L, "%s: option '%s' must be a string", what, key);
      lua_pushvalue(L, -1);
      tags[n].t_value = (tag_value_t)lua_tostring(L, -1);
      lua_rawseti(L, keep, (int)lua_rawlen(L, keep) + 1);
      break;
    case K_HEADERS:
      push_headers(L, -1, what);
      tags[n].t_value = (tag_value_t)lua_tostring(L, -1);
      lua_rawseti(L, keep, (int)lua_rawlen(L, keep) + 1);
      break;
    case K_UINT:
      if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
        luaL_error(L, "%s: option '%s' must be a non-negative number", what, key);
      tags[n].t_value = (tag_value_t)(unsigned)lua_tointeger(L, -1);
      break;
    case K_BOOL:
      tags[n].t_value = (tag_value_t)(lua_toboolean(L, -1) ? 1 : 0);
      break;
    case K_REFRESHER: {
      char const *r = lua_tostring(L, -1);
      int v;
      if (!r) r = "";
      if (strcmp(r, "local") == 0) v = nua_local_refresher;
      else if (strcmp(r, "remote") == 0) v = nua_remote_refresher;
      else if (strcmp(r, "any") == 0) v = nua_any_refresher;
      else if (strcmp(r, "none") == 0) v = nua_no_refresher;
      else
        return luaL_error(L, "%s: refresher must be \"local\", \"remote\", \"any\" or \"none\"", what);
      tags[n].t_value = (tag_value_t)v;
      break;
    }
    case K_HANDLE: {
      lhandle *h = to_handle(L, -1);
      if (!h || !h->nh)
        luaL_error(L, "%s: option '%s' must be a live handle", what, key);
      tags[n].t_value = (tag_value_t)h->nh;
      break;
    }
    case K_EVENT: {
      char const *e = lua_tostring(L, -1);
      sip_event_t *ev = e ? sip_event_make(home, e) : NULL;
      if (!ev)
        luaL_error(L, "%s: option '%s' must be an Event header value", what, key);
      tags[n].t_value = (tag_value_t)ev;
      break;
    }
    }
    n++;
    lua_pop(L, 1);
  }
  tags[n].t_tag = NULL;
  tags[n].t_value = 0;
  return n;
}

/* ---- events -------------------------------------------------------------- */

static void set_str(lua_State *L, char const *k, char const *v)
{
  if (!v)
    return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, char const *k, int v)
{
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static char const *active_name(int a)
{
  switch (a) {
  case 0: return "inactive";
  case 1: return "sendonly";
  case 2: return "recvonly";
  case 3: return "sendrecv";
  default: return NULL;
  }
}

/* The tags of an event, as a table. */
static void push_info(lua_State *L, tagi_t const *tags)
{
  su_home_t home[1] = { SU_HOME_INIT(home) };
  tagi_t const *t;
  lua_createtable(L, 0, 8);
  for (t = tags; t; t = tl_next(t)) {
    tag_type_t tt = t->t_tag;
    if (tt == nutag_callstate) {
      set_str(L, "callstate", nua_callstate_name((enum nua_callstate)t->t_value));
    } else if (tt == nutag_offer_recv) {
      set_bool(L, "offer_recv", t->t_value != 0);
    } else if (tt == nutag_answer_recv) {
      set_bool(L, "answer_recv", t->t_value != 0);
    } else if (tt == nutag_offer_sent) {
      set_bool(L, "offer_sent", t->t_value != 0);
    } else if (tt == nutag_answer_sent) {
      set_bool(L, "answer_sent", t->t_value != 0);
    } else if (tt == soatag_local_sdp_str) {
      set_str(L, "local_sdp", (char const *)t->t_value);
    } else if (tt == soatag_remote_sdp_str) {
      set_str(L, "remote_sdp", (char const *)t->t_value);
    } else if (tt == soatag_active_audio) {
      set_str(L, "audio", active_name((int)t->t_value));
    } else if (tt == nutag_substate) {
      set_str(L, "substate", nua_substate_name((enum nua_substate)t->t_value));
    } else if (tt == nutag_refer_event && t->t_value) {
      char *s = sip_header_as_string(home, (sip_header_t const *)t->t_value);
      set_str(L, "refer_event", s);
    } else if (tt == ntatag_contact && t->t_value) {
      sip_contact_t const *m = (sip_contact_t const *)t->t_value;
      char *s = url_as_string(home, m->m_url);
      set_str(L, "contact", s);
    } else if (tt == siptag_contact && t->t_value) {
      /* registration: the contacts the registrar returned */
    }
  }
  su_home_deinit(home);
}

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

static void on_ua_event(void *arg, sip_ua_event_t *ev)
{
  lua_ua *lu = arg;
  lsip_ctx *ctx = lu->obj.ctx;
  lua_State *L = ctx->L;
  lhandle *h = ev->owner;
  lhandle *fresh = NULL;
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
  push_info(L, ev->tags);

  {
    lhandle *target = fresh ? fresh : h;
    /* keep the request for a later answer (NUTAG_WITH_SAVED) */
    if (target && ev->event == nua_i_message && lu->appl_message && ev->saved[0]) {
      if (target->pending[0])
        nua_destroy_event(target->pending);
      target->pending[0] = ev->saved[0];
      ev->keep_saved = 1;
    }
  }
  lsip_pcall(ctx, 6, 0);
  lua_settop(L, top);

  if (fresh && !fresh->adopted) {
    /* nobody took it: the engine disposes of it */
    if (fresh->pending[0]) {
      nua_respond(ev->nh, 500, "Not handled", NUTAG_WITH_SAVED(fresh->pending), TAG_END());
      nua_destroy_event(fresh->pending);
      fresh->pending[0] = NULL;
    }
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
  free(c->ua);
  free(c);
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
  build_tags(L, 1, keep, ua_opts, tags, MAX_TAGS, home, "luasip.ua");

  lu = compat_newuserdata(L, sizeof *lu);
  memset(lu, 0, sizeof *lu);
  lu->handles_ref = LUA_NOREF;
  lu->appl_message = opt_bool(L, 1, "appl_message", 1);
  lu->ua = sip_ua_create(loop_root(ctx->loop), on_ua_event, lu, err, sizeof err,
                         NUTAG_APPL_METHOD(lu->appl_message ? "MESSAGE" : NULL),
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
  build_tags(L, 2, -1, ua_opts, tags, MAX_TAGS, home, "ua:set_params");
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
    if (h->pending[0]) {
      nua_respond(h->nh, 500, "Not handled", NUTAG_WITH_SAVED(h->pending), TAG_END());
    }
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
  build_tags(L, 2, keep, request_opts, tags, MAX_TAGS, home, "ua:handle");
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

static lhandle *to_handle(lua_State *L, int idx)
{
  return luaL_testudata(L, idx, HANDLE_CLASS);
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
  build_tags(L, 3, -1, request_opts, tags, MAX_TAGS, home, method);
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
  build_tags(L, 4, -1, request_opts, tags, MAX_TAGS, home, "respond");
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

/* digest helpers: core.hash(algorithm, data) -> lower-case hex */
#include <openssl/evp.h>
static int l_hash(lua_State *L)
{
  char const *alg = luaL_checkstring(L, 1);
  size_t len;
  char const *data = luaL_checklstring(L, 2, &len);
  EVP_MD const *md = NULL;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (su_casematch(alg, "MD5"))
    md = EVP_md5();
  else if (su_casematch(alg, "SHA-256"))
    md = EVP_sha256();
  else if (su_casematch(alg, "SHA-512-256"))
    md = EVP_sha512_256();
  if (!md)
    return luaL_error(L, "core.hash: unknown algorithm '%s'", alg);
  if (!EVP_Digest(data, len, out, &outlen, md, NULL))
    return luaL_error(L, "core.hash: digest failed");
  for (unsigned i = 0; i < outlen; i++) {
    static char const digits[] = "0123456789abcdef";
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * outlen);
  return 1;
}

/* core.free_port(host) -> a TCP port free on host right now (for TLS on
 * port 0: nua reports only its primary contact, so the port is chosen
 * before binding; a rare race with another process is retried by the caller). */
static int l_free_port(lua_State *L)
{
  char const *host = luaL_checkstring(L, 1);
  su_sockaddr_t su[1];
  socklen_t len;
  int fd, port = 0;
  memset(su, 0, sizeof su);
  if (inet_pton(AF_INET6, host, &su->su_sin6.sin6_addr) == 1) {
    su->su_family = AF_INET6;
    len = sizeof su->su_sin6;
  } else if (inet_pton(AF_INET, host, &su->su_sin.sin_addr) == 1) {
    su->su_family = AF_INET;
    len = sizeof su->su_sin;
  } else {
    return lsip_fail(L, "free_port: not an IP address", "EINVAL");
  }
  fd = socket(su->su_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return lsip_fail_errno(L, "free_port");
  if (bind(fd, &su->su_sa, len) == 0 && getsockname(fd, &su->su_sa, &len) == 0)
    port = ntohs(su->su_port);
  close(fd);
  if (!port)
    return lsip_fail(L, "free_port: cannot bind", "EADDRINUSE");
  lua_pushinteger(L, port);
  return 1;
}

/* SIP message tracing (luasip.trace) for every open UA. */
void lsip_ua_trace(lsip_ctx *ctx, int on)
{
  for (lsip_obj *o = ctx->objects.next; o != &ctx->objects; o = o->next)
    if (o->kind == LSIP_UAS && ((lua_ua *)o)->ua)
      nua_set_params(sip_ua_nua(((lua_ua *)o)->ua), TPTAG_LOG(on), TAG_END());
}

/* ---- STUN ---------------------------------------------------------------- */

#define STUN_CLASS "luasip.stun"

typedef struct {
  lsip_obj obj;
  sip_stun_t *q;
} lstun;

static void stun_release(lsip_obj *o)
{
  lstun *s = (lstun *)o;
  if (s->q)
    sip_stun_destroy(s->q);
  s->q = NULL;
}

static void on_stun(void *arg, char const *addr, int port, char const *err)
{
  lstun *s = arg;
  lua_State *L = s->obj.ctx->L;
  int n = lsip_obj_push_call(&s->obj);
  if (n < 0)
    return;
  if (n == 2)
    lua_pop(L, 1); /* the callback gets the result, not the object */
  if (addr) {
    lua_pushstring(L, addr);
    lua_pushinteger(L, port);
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushstring(L, err && err[0] ? err : "STUN failed");
  }
  lsip_pcall(s->obj.ctx, 3, 0);
}

/* core.stun(server, local_host, fn(addr, port, err)) -> query (close() cancels) */
static int l_stun(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  char const *server = luaL_checkstring(L, 1);
  char const *local = luaL_checkstring(L, 2);
  char err[160] = "";
  lstun *s;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  s = compat_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, STUN_CLASS);
  lsip_obj_init(ctx, &s->obj, LSIP_HANDLES, stun_release);
  s->q = sip_stun_query(loop_root(ctx->loop), server, local, on_stun, s, err, sizeof err);
  if (!s->q) {
    lsip_obj_close(&s->obj);
    return lsip_fail(L, err, "EINVAL");
  }
  lsip_obj_set_fn(L, &s->obj, 3);
  lsip_obj_anchor(L, &s->obj, -1); /* until closed: the answer may come late */
  return 1;
}

static int stun_close(lua_State *L)
{
  lstun *s = luaL_checkudata(L, 1, STUN_CLASS);
  lsip_obj_close(&s->obj);
  return 0;
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
    { "ua", l_ua }, { "hash", l_hash }, { "free_port", l_free_port }, { "stun", l_stun },
    { NULL, NULL },
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
  static luaL_Reg const stun_methods[] = { { "close", stun_close }, { NULL, NULL } };
  static luaL_Reg const stun_meta[] = { { "__gc", stun_close }, { NULL, NULL } };
  lsip_class(L, STUN_CLASS, stun_methods, stun_meta);
  lsip_class(L, UA_CLASS, ua_methods, ua_meta);
  lsip_class(L, HANDLE_CLASS, h_methods, h_meta);
  lsip_setfuncs(L, ctx, funcs);
}
