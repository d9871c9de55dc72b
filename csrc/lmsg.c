/* lmsg.c — luasip.message: a read-only view of one parsed SIP message
 * (request or response) that holds a reference on sofia's msg_t.
 *
 * Fields are decoded on access from sofia's parsed headers, so nothing the
 * parser rejected ever reaches Lua: a header sofia could not parse is
 * absent from its slot and shows up only in raw text. */
#include "lcore.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/msg_mclass.h>
#include <sofia-sip/msg_mclass_hash.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/url.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MSG_CLASS "luasip.message"
#define MAX_FIELD 65536

typedef struct {
  msg_t *msg;
} lmsg;

static lsip_classref msg_class = LSIP_CLASSREF(MSG_CLASS);

void lsip_push_msg(lua_State *L, msg_t *msg)
{
  lmsg *m = compat_newuserdata(L, sizeof *m);
  m->msg = msg_ref_create(msg);
  lsip_setclass(L, &msg_class);
}

/* The msg_t of the luasip.message at idx (borrowed). */
msg_t *lsip_check_msg(lua_State *L, int idx)
{
  lmsg *m = lsip_checkclass(L, idx, &msg_class);
  if (!m->msg)
    luaL_argerror(L, idx, "message already released");
  return m->msg;
}

static sip_t const *sip_of(lua_State *L, lmsg **pm)
{
  lmsg *m = lsip_checkclass(L, 1, &msg_class);
  if (pm)
    *pm = m;
  return sip_object(m->msg);
}

/* Encode a header's value (without its name) and push it. */
static void push_field(lua_State *L, msg_header_t const *h)
{
  char stackbuf[512];
  char *buf = stackbuf;
  issize_t n;
  if (h->sh_class == sip_unknown_class) {
    lua_pushstring(L, h->sh_unknown->un_value ? h->sh_unknown->un_value : "");
    return;
  }
  n = msg_header_field_e(buf, sizeof stackbuf, h, 0);
  if (n >= (issize_t)sizeof stackbuf && n < MAX_FIELD) {
    buf = malloc((size_t)n + 1);
    if (!buf) {
      lua_pushnil(L);
      return;
    }
    n = msg_header_field_e(buf, (isize_t)n + 1, h, 0);
  }
  if (n < 0)
    lua_pushnil(L);
  else
    lua_pushlstring(L, buf, (size_t)(n < MAX_FIELD ? n : 0));
  if (buf != stackbuf)
    free(buf);
}

/* Push a parsed URI as a table: scheme, user, password, host, port,
 * params (table), headers (string), and str (the whole URI). */
static void push_url(lua_State *L, url_t const *u)
{
  su_home_t home[1] = { SU_HOME_INIT(home) };
  char *s;
  lua_createtable(L, 0, 8);
  if (u->url_scheme) { lua_pushstring(L, u->url_scheme); lua_setfield(L, -2, "scheme"); }
  if (u->url_user) { lua_pushstring(L, u->url_user); lua_setfield(L, -2, "user"); }
  if (u->url_password) { lua_pushstring(L, u->url_password); lua_setfield(L, -2, "password"); }
  if (u->url_host) { lua_pushstring(L, u->url_host); lua_setfield(L, -2, "host"); }
  if (u->url_port) {
    lua_pushinteger(L, atoi(u->url_port));
    lua_setfield(L, -2, "port");
  }
  lua_newtable(L);
  if (u->url_params) {
    /* ";"-separated name[=value] pairs */
    char const *p = u->url_params;
    while (*p) {
      size_t len = strcspn(p, ";");
      size_t eq = strcspn(p, "=");
      if (len > 0) {
        if (eq < len) {
          lua_pushlstring(L, p, eq);
          lua_pushlstring(L, p + eq + 1, len - eq - 1);
        } else {
          lua_pushlstring(L, p, len);
          lua_pushboolean(L, 1);
        }
        lua_settable(L, -3);
      }
      p += len;
      if (*p == ';')
        p++;
    }
  }
  lua_setfield(L, -2, "params");
  if (u->url_headers) { lua_pushstring(L, u->url_headers); lua_setfield(L, -2, "headers"); }
  {
    /* most URIs fit the stack buffer: no allocation then */
    char buf[256];
    isize_t n = url_e(buf, sizeof buf, u);
    if (n >= 0 && (size_t)n < sizeof buf) {
      lua_pushlstring(L, buf, (size_t)n);
      lua_setfield(L, -2, "str");
    } else {
      s = url_as_string(home, u);
      if (s) { lua_pushstring(L, s); lua_setfield(L, -2, "str"); }
    }
  }
  su_home_deinit(home);
}

/* Name-address headers (From, To, Contact...) as {display, uri, tag, params}. */
static void push_addr(lua_State *L, char const *display, url_t const *url,
                      msg_param_t const *params, char const *tag)
{
  lua_createtable(L, 0, 4);
  if (display) {
    lua_pushstring(L, display);
    lua_setfield(L, -2, "display");
  }
  push_url(L, url);
  lua_setfield(L, -2, "uri");
  if (tag) {
    lua_pushstring(L, tag);
    lua_setfield(L, -2, "tag");
  }
  lua_newtable(L);
  for (int i = 0; params && params[i]; i++) {
    char const *p = params[i];
    size_t eq = strcspn(p, "=");
    lua_pushlstring(L, p, eq);
    if (p[eq])
      lua_pushstring(L, p + eq + 1);
    else
      lua_pushboolean(L, 1);
    lua_settable(L, -3);
  }
  lua_setfield(L, -2, "params");
}

static int is_body_or_line(sip_t const *sip, msg_header_t const *h)
{
  return h == (msg_header_t const *)sip->sip_request ||
         h == (msg_header_t const *)sip->sip_status ||
         h == (msg_header_t const *)sip->sip_separator ||
         h == (msg_header_t const *)sip->sip_payload ||
         h->sh_class->hc_name == NULL;
}

static char const *header_name(msg_header_t const *h)
{
  if (h->sh_class == sip_unknown_class)
    return h->sh_unknown->un_name;
  return h->sh_class->hc_name;
}

static int name_matches(msg_header_t const *h, char const *name)
{
  char const *n = header_name(h);
  if (n && su_casematch(n, name))
    return 1;
  return h->sh_class->hc_short[0] && name[1] == '\0' &&
         su_casenmatch(h->sh_class->hc_short, name, 1);
}

/* The list a header named name lives on: a parsed header's own slot in
 * the sip_t (found through sofia's name hash, long or compact form, any
 * case), or the list of unknown headers (*unknown is set then). NULL when
 * no header can have that name. Headers sofia could not parse are on
 * neither list. O(1) instead of comparing every header's name. */
static msg_header_t **header_slot(msg_t *msg, sip_t const *sip, char const *name, int *unknown)
{
  msg_mclass_t const *mc = msg_mclass(msg);
  msg_href_t const *hr;
  isize_t len = 0;
  *unknown = 0;
  if (!mc || !sip)
    return NULL;
  msg_header_name_hash(name, &len);
  if (len == 0 || (size_t)len != strlen(name))
    return NULL; /* not a token: no such header */
  hr = msg_find_hclass(mc, name, NULL);
  if (!hr || !hr->hr_class || hr->hr_class == mc->mc_error->hr_class)
    return NULL;
  if (hr->hr_class == mc->mc_unknown->hr_class) {
    *unknown = 1;
    return (msg_header_t **)&((sip_t *)sip)->sip_unknown;
  }
  return msg_hclass_offset(mc, (msg_pub_t *)sip, hr->hr_class);
}

/* The next header on the list from h named name (unknown headers are
 * matched by name, case-insensitively). */
static msg_header_t *next_named(msg_header_t *h, char const *name, int unknown)
{
  if (!unknown)
    return h;
  for (; h; h = h->sh_next)
    if (h->sh_unknown->un_name && su_casematch(h->sh_unknown->un_name, name))
      return h;
  return NULL;
}

/* m:header(name) -> the first value, or nil */
static int msg_header(lua_State *L)
{
  lmsg *m;
  sip_t const *sip = sip_of(L, &m);
  char const *name = luaL_checkstring(L, 2);
  int unknown;
  msg_header_t **slot = header_slot(m->msg, sip, name, &unknown);
  msg_header_t *h = slot ? next_named(*slot, name, unknown) : NULL;
  if (h)
    push_field(L, h);
  else
    lua_pushnil(L);
  return 1;
}

/* m:headers([name]) -> list of values for name, or of {name, value} for all */
static int msg_headers(lua_State *L)
{
  lmsg *m;
  sip_t const *sip = sip_of(L, &m);
  char const *name = luaL_optstring(L, 2, NULL);
  msg_header_t **head;
  int n = 0;
  lua_newtable(L);
  if (name) {
    int unknown;
    msg_header_t **slot = header_slot(m->msg, sip, name, &unknown);
    for (msg_header_t *h = slot ? next_named(*slot, name, unknown) : NULL; h;
         h = next_named(h->sh_next, name, unknown)) {
      push_field(L, h);
      lua_rawseti(L, -2, ++n);
    }
    return 1;
  }
  head = msg_chain_head(m->msg);
  for (msg_header_t *h = head ? *head : NULL; h; h = h->sh_succ) {
    if (is_body_or_line(sip, h))
      continue;
    lua_createtable(L, 2, 0);
    lua_pushstring(L, header_name(h));
    lua_rawseti(L, -2, 1);
    push_field(L, h);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* m:aor() -> the To URI as an address-of-record, "sip:user@host" with the
 * user unescaped, the host in lower case and no port or parameters (RFC
 * 3261 §10.3 step 5; a sips To gives the same AOR as sip), then the user
 * (or nil) and the host; nil for no To or a scheme other than sip/sips.
 * Flat values: the registrar's hot path reads these per REGISTER, and a
 * URI table costs a dozen allocations. */
static int msg_aor(lua_State *L)
{
  sip_t const *sip = sip_of(L, NULL);
  url_t const *u = sip && sip->sip_to ? sip->sip_to->a_url : NULL;
  char host[256], user[256];
  size_t hlen, ulen = 0;
  luaL_Buffer b;
  if (!u || !u->url_host || (u->url_type != url_sip && u->url_type != url_sips) ||
      strlen(u->url_host) >= sizeof host || (u->url_user && strlen(u->url_user) >= sizeof user)) {
    lua_pushnil(L);
    return 1;
  }
  hlen = strlen(u->url_host);
  for (size_t i = 0; i < hlen; i++) {
    char c = u->url_host[i];
    host[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
  }
  host[hlen] = '\0';
  if (u->url_user) /* by length: a %00 stays in the Lua string */
    ulen = url_unescape_to(user, u->url_user, SIZE_MAX);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "sip:");
  if (u->url_user) {
    luaL_addlstring(&b, user, ulen);
    luaL_addchar(&b, '@');
  }
  luaL_addlstring(&b, host, hlen);
  luaL_pushresult(&b);
  if (u->url_user)
    lua_pushlstring(L, user, ulen);
  else
    lua_pushnil(L);
  lua_pushlstring(L, host, hlen);
  return 3;
}

/* The value of parameter name (lower case) in params, or NULL; "" for a
 * parameter without a value. */
static char const *param_value(msg_param_t const *params, char const *name, size_t nlen)
{
  for (int i = 0; params && params[i]; i++) {
    char const *p = params[i];
    if (su_casenmatch(p, name, nlen) && (p[nlen] == '=' || p[nlen] == '\0'))
      return p[nlen] == '=' ? p + nlen + 1 : "";
  }
  return NULL;
}

static void set_param_field(lua_State *L, msg_param_t const *params, char const *name,
                            char const *field)
{
  char const *v = param_value(params, name, strlen(name));
  if (v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, field);
  }
}

/* m:contact_list() -> list of {uri=, expires=, q=, instance=, reg_id=}, one
 * per Contact, with the parameters as their raw strings (absent ones nil);
 * uri is "*" for a wildcard. The flat form of m.contacts for registrars. */
static int msg_contact_list(lua_State *L)
{
  sip_t const *sip = sip_of(L, NULL);
  int n = 0;
  lua_newtable(L);
  for (sip_contact_t const *c = sip ? sip->sip_contact : NULL; c; c = c->m_next) {
    char buf[256];
    isize_t len;
    lua_createtable(L, 0, 3);
    len = url_e(buf, sizeof buf, c->m_url);
    if (len >= 0 && (size_t)len < sizeof buf) {
      lua_pushlstring(L, buf, (size_t)len);
    } else {
      su_home_t home[1] = { SU_HOME_INIT(home) };
      char *str = url_as_string(home, c->m_url);
      lua_pushstring(L, str ? str : "");
      su_home_deinit(home);
    }
    lua_setfield(L, -2, "uri");
    set_param_field(L, c->m_params, "expires", "expires");
    set_param_field(L, c->m_params, "q", "q");
    set_param_field(L, c->m_params, "+sip.instance", "instance");
    set_param_field(L, c->m_params, "reg-id", "reg_id");
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* Reject what would smuggle a header line into a message: a name that
 * is not a token, a value with CR, LF or NUL. Shared with lsiptags.c. */
void lsip_check_header(lua_State *L, char const *name, size_t nlen, char const *value,
                       size_t vlen, char const *what)
{
  int ok = nlen > 0;
  for (size_t i = 0; ok && i < nlen; i++) {
    unsigned char c = (unsigned char)name[i];
    ok = c > ' ' && c < 127 && !strchr("()<>@,;:\\\"/[]?={}", c);
  }
  if (!ok)
    luaL_error(L, "%s: bad header name '%s'", what, name);
  for (size_t i = 0; i < vlen; i++)
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
      luaL_error(L, "%s: header '%s' has a line break in its value", what, name);
}

/* m:remove_header(name) -> how many were removed */
static int msg_remove_header(lua_State *L)
{
  lmsg *m;
  sip_t const *sip = sip_of(L, &m);
  char const *name = luaL_checkstring(L, 2);
  msg_header_t **head = msg_chain_head(m->msg);
  int n = 0;
  for (msg_header_t *h = head ? *head : NULL, *next; h; h = next) {
    next = h->sh_succ;
    if (is_body_or_line(sip, h) || !name_matches(h, name))
      continue;
    if (msg_header_remove(m->msg, (msg_pub_t *)sip, h) == 0)
      n++;
  }
  lua_pushinteger(L, n);
  return 1;
}

/* m:add_header(name, value) — append a header (parsed by sofia) */
static int msg_add_header(lua_State *L)
{
  lmsg *m;
  sip_t *sip = (sip_t *)sip_of(L, &m);
  size_t nlen, vlen;
  char const *name = luaL_checklstring(L, 2, &nlen);
  char const *value = luaL_checklstring(L, 3, &vlen);
  char *line;
  int rc;
  lsip_check_header(L, name, nlen, value, vlen, "luasip.message");
  line = su_sprintf(NULL, "%s: %s", name, value);
  rc = line ? sip_add_tl(m->msg, sip, SIPTAG_HEADER_STR(line), TAG_END()) : -1;
  su_free(NULL, line);
  if (rc < 0)
    return luaL_error(L, "luasip.message: cannot add header '%s'", name);
  lua_pushboolean(L, 1);
  return 1;
}

/* m:set_header(name, value) — replace every header of that name */
static int msg_set_header(lua_State *L)
{
  lua_settop(L, 3);
  luaL_checkstring(L, 3);
  lua_pushcfunction(L, msg_remove_header);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  return msg_add_header(L);
}

/* m:raw() -> the whole message as text */
static int msg_raw(lua_State *L)
{
  lmsg *m = lsip_checkclass(L, 1, &msg_class);
  su_home_t home[1] = { SU_HOME_INIT(home) };
  size_t len = 0;
  char *s = msg_as_string(home, m->msg, NULL, 0, &len);
  if (s)
    lua_pushlstring(L, s, len);
  else
    lua_pushnil(L);
  su_home_deinit(home);
  return 1;
}

/* m:challenges() -> list of {scheme, proxy, params={realm=, nonce=, ...}}
 * from WWW-Authenticate and Proxy-Authenticate, unquoted. */
static void push_challenges(lua_State *L, msg_auth_t const *au, int proxy, int *n)
{
  for (; au; au = au->au_next) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, au->au_scheme ? au->au_scheme : "");
    lua_setfield(L, -2, "scheme");
    lua_pushboolean(L, proxy);
    lua_setfield(L, -2, "proxy");
    lua_newtable(L);
    for (int i = 0; au->au_params && au->au_params[i]; i++) {
      char const *p = au->au_params[i];
      size_t eq = strcspn(p, "=");
      char const *v = p[eq] ? p + eq + 1 : "";
      size_t vlen = strlen(v);
      {
        luaL_Buffer b; /* the name, lower-cased */
        luaL_buffinit(L, &b);
        for (size_t k = 0; k < eq; k++)
          luaL_addchar(&b, (char)((p[k] >= 'A' && p[k] <= 'Z') ? p[k] + 32 : p[k]));
        luaL_pushresult(&b);
      }
      if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
        /* unquote, dropping backslash escapes */
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t k = 1; k + 1 < vlen; k++) {
          if (v[k] == '\\' && k + 2 < vlen)
            k++;
          luaL_addchar(&b, v[k]);
        }
        luaL_pushresult(&b);
      } else {
        lua_pushstring(L, v);
      }
      lua_settable(L, -3);
    }
    lua_setfield(L, -2, "params");
    lua_rawseti(L, -2, ++*n);
  }
}

static int msg_challenges(lua_State *L)
{
  sip_t const *sip = sip_of(L, NULL);
  int n = 0;
  lua_newtable(L);
  if (sip) {
    push_challenges(L, (msg_auth_t const *)sip->sip_www_authenticate, 0, &n);
    push_challenges(L, (msg_auth_t const *)sip->sip_proxy_authenticate, 1, &n);
  }
  return 1;
}

static void push_source(lua_State *L, msg_t *msg)
{
  su_addrinfo_t *ai = msg_addrinfo(msg);
  char addr[64] = "";
  int port = 0;
  if (ai && ai->ai_addr) {
    su_sockaddr_t const *su = (su_sockaddr_t const *)ai->ai_addr;
    if (su->su_family == AF_INET6) {
      inet_ntop(AF_INET6, &su->su_sin6.sin6_addr, addr, sizeof addr);
      port = ntohs(su->su_sin6.sin6_port);
    } else if (su->su_family == AF_INET) {
      /* by hand: glibc's inet_ntop goes through sprintf */
      unsigned char const *b = (unsigned char const *)&su->su_sin.sin_addr;
      char *p = addr;
      for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100) *p++ = (char)('0' + v / 100);
        if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
      }
      port = ntohs(su->su_sin.sin_port);
    }
  }
  if (addr[0]) {
    lua_pushstring(L, addr);
    lua_pushinteger(L, port);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
}

static int msg_index(lua_State *L)
{
  lmsg *m;
  sip_t const *sip = sip_of(L, &m);
  char const *k = luaL_checkstring(L, 2);

  /* methods first (the methods table is this function's upvalue) */
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1))
    return 1;
  lua_pop(L, 1);
  if (!sip) {
    lua_pushnil(L);
    return 1;
  }

  if (strcmp(k, "method") == 0) {
    if (sip->sip_request)
      lua_pushstring(L, sip->sip_request->rq_method_name);
    else if (sip->sip_cseq)
      lua_pushstring(L, sip->sip_cseq->cs_method_name);
    else
      lua_pushnil(L);
  } else if (strcmp(k, "status") == 0) {
    if (sip->sip_status) lua_pushinteger(L, sip->sip_status->st_status);
    else lua_pushnil(L);
  } else if (strcmp(k, "reason") == 0) {
    if (sip->sip_status) lua_pushstring(L, sip->sip_status->st_phrase);
    else lua_pushnil(L);
  } else if (strcmp(k, "is_request") == 0) {
    lua_pushboolean(L, sip->sip_request != NULL);
  } else if (strcmp(k, "uri") == 0) {
    if (sip->sip_request) push_url(L, sip->sip_request->rq_url);
    else lua_pushnil(L);
  } else if (strcmp(k, "from") == 0 || strcmp(k, "to") == 0) {
    sip_addr_t const *a = k[0] == 'f' ? sip->sip_from : sip->sip_to;
    if (a) push_addr(L, a->a_display, a->a_url, a->a_params, a->a_tag);
    else lua_pushnil(L);
  } else if (strcmp(k, "from_tag") == 0 || strcmp(k, "to_tag") == 0) {
    sip_addr_t const *a = k[0] == 'f' ? sip->sip_from : sip->sip_to;
    if (a && a->a_tag) lua_pushstring(L, a->a_tag);
    else lua_pushnil(L);
  } else if (strcmp(k, "contact") == 0) {
    sip_contact_t const *c = sip->sip_contact;
    if (c) push_addr(L, c->m_display, c->m_url, c->m_params, NULL);
    else lua_pushnil(L);
  } else if (strcmp(k, "contacts") == 0) {
    int n = 0;
    lua_newtable(L);
    for (sip_contact_t const *c = sip->sip_contact; c; c = c->m_next) {
      push_addr(L, c->m_display, c->m_url, c->m_params, NULL);
      lua_rawseti(L, -2, ++n);
    }
  } else if (strcmp(k, "call_id") == 0) {
    if (sip->sip_call_id) lua_pushstring(L, sip->sip_call_id->i_id);
    else lua_pushnil(L);
  } else if (strcmp(k, "cseq") == 0) {
    if (sip->sip_cseq) lua_pushinteger(L, sip->sip_cseq->cs_seq);
    else lua_pushnil(L);
  } else if (strcmp(k, "body") == 0) {
    if (sip->sip_payload)
      lua_pushlstring(L, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    else
      lua_pushnil(L);
  } else if (strcmp(k, "content_type") == 0) {
    if (sip->sip_content_type && sip->sip_content_type->c_type)
      lua_pushstring(L, sip->sip_content_type->c_type);
    else
      lua_pushnil(L);
  } else if (strcmp(k, "source") == 0 || strcmp(k, "source_port") == 0) {
    push_source(L, m->msg);
    if (k[6] == '\0')
      lua_pop(L, 1);
    else
      lua_remove(L, -2);
  } else if (strcmp(k, "transport") == 0) {
    su_addrinfo_t *ai = msg_addrinfo(m->msg);
    char const *t = NULL;
    if (sip->sip_request && sip->sip_via && sip->sip_via->v_protocol) {
      char const *p = strrchr(sip->sip_via->v_protocol, '/');
      t = p ? p + 1 : NULL;
    }
    if (t) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (; *t; t++)
        luaL_addchar(&b, (char)((*t >= 'A' && *t <= 'Z') ? *t + 32 : *t));
      luaL_pushresult(&b);
    } else if (ai) {
      lua_pushstring(L, ai->ai_protocol == IPPROTO_TCP ? "tcp" : "udp");
    } else {
      lua_pushnil(L);
    }
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int msg_gc(lua_State *L)
{
  lmsg *m = lsip_checkclass(L, 1, &msg_class);
  if (m->msg) {
    msg_destroy(m->msg);
    m->msg = NULL;
  }
  return 0;
}

static int msg_tostring(lua_State *L)
{
  sip_t const *sip = sip_of(L, NULL);
  if (sip && sip->sip_request)
    lua_pushfstring(L, "luasip.message (%s %s)", sip->sip_request->rq_method_name,
                    sip->sip_call_id ? sip->sip_call_id->i_id : "-");
  else if (sip && sip->sip_status)
    lua_pushfstring(L, "luasip.message (%d %s)", sip->sip_status->st_status,
                    sip->sip_status->st_phrase);
  else
    lua_pushstring(L, "luasip.message");
  return 1;
}

void lsip_open_msg(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const methods[] = {
    { "header", msg_header }, { "headers", msg_headers }, { "raw", msg_raw },
    { "challenges", msg_challenges }, { "add_header", msg_add_header },
    { "set_header", msg_set_header }, { "remove_header", msg_remove_header },
    { "aor", msg_aor }, { "contact_list", msg_contact_list }, { NULL, NULL },
  };
  (void)ctx;
  luaL_newmetatable(L, MSG_CLASS);
  lua_pushcfunction(L, msg_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, msg_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, MSG_CLASS);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_pushcclosure(L, msg_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lsip_classref_init(L, &msg_class);
}
