/* lsiptags.c — sofia tag lists from Lua option tables (requests and UA
 * settings, with header validation), and event tags back as a Lua table.
 * Shared by the nua binding (lua_ua.c). */
#include "lsiptags.h"

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include <string.h>

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
  { "refer_to", siptag_refer_to_str, K_STR },
  { "referred_by", siptag_referred_by_str, K_STR },
  { "replaces", siptag_replaces_str, K_STR },
  { "event", siptag_event_str, K_STR },
  { "subscription_state", siptag_subscription_state_str, K_STR },
  { "accept", siptag_accept_str, K_STR },
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
  { "auto_ack", nutag_autoack, K_BOOL },
  { "call_id", siptag_call_id_str, K_STR },
  { "if_match", siptag_if_match_str, K_STR },
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
  { "allow_events", siptag_allow_events_str, K_STR },
  { "appl_method", nutag_appl_method, K_STR },
  { "early_media", nutag_early_media, K_BOOL },
  { "only183_100rel", nutag_only183_100rel, K_BOOL },
  { "contact_user", nutag_m_username, K_STR },
  { "contact_display", nutag_m_display, K_STR },
  { "tls_verify_policy", tptag_tls_verify_policy, K_UINT },
  { "tport_keepalive", tptag_keepalive, K_UINT },
  { "media_enable", nutag_media_enable, K_BOOL },
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

/* Check one header and push its "Name: value\r\n" line. */
static void push_header_line(lua_State *L, char const *name, size_t nlen,
                             char const *value, size_t vlen, char const *what)
{
  lsip_check_header(L, name, nlen, value, vlen, what);
  lua_pushlstring(L, name, nlen);
  lua_pushliteral(L, ": ");
  lua_pushlstring(L, value, vlen);
  lua_pushliteral(L, "\r\n");
  lua_concat(L, 4);
}

/* headers = { Name = "value" | {"v1", "v2"}, ... } or { "Name: value", ... }.
 * Pushes the "Name: value\r\n..." string. Nothing is allocated outside
 * Lua, so an error on a bad header leaks nothing. */
void lsip_push_headers(lua_State *L, int t, char const *what)
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


/* Fill tags from the option table at idx; values are kept alive by the
 * `keep` table (at keep index) until the call returns. Keys not in the map
 * belong to the Lua layer, which checks them for typos. */
static int build_tags_from(lua_State *L, int idx, int keep, optmap const *map,
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
      lsip_push_headers(L, -1, what);
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
      nua_handle_t *nh = lsip_nua_handle_of(L, -1);
      if (!nh)
        luaL_error(L, "%s: option '%s' must be a live handle", what, key);
      tags[n].t_value = (tag_value_t)nh;
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

/* ---- event tags as Lua values -------------------------------------------- */

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

/* The tags of an event, as a table. */
void lsip_push_event_info(lua_State *L, tagi_t const *tags)
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

int lsip_build_tags(lua_State *L, int idx, int keep, enum lsip_optset set,
                    tagi_t *tags, int max, su_home_t *home, char const *what)
{
  return build_tags_from(L, idx, keep, set == LSIP_OPTS_UA ? ua_opts : request_opts,
                         tags, max, home, what);
}
