/* lagent.c — Lua binding of the SIP agent (csrc/sip/agent.c), SIP message
 * tracing, and the capture of sofia's own log output into luasip.log. */
#include "lcore.h"
#include "sip/agent.h"
#include "sip/sofialog.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <string.h>

#define AGENT_CLASS "luasip.agent"
#define MAX_TRANSPORTS 4
#define MAX_ALIASES 16

typedef struct {
  lsip_obj obj;
  sip_agent_t *agent;
} lagent;

static void agent_release(lsip_obj *o)
{
  lagent *la = (lagent *)o;
  lsip_close_requests(o->ctx, la->agent);
  sip_agent_destroy(la->agent);
  la->agent = NULL;
}

/* A request for the application: on_request(request). */
static void on_request(void *arg, msg_t *msg, sip_t *sip)
{
  lagent *la = arg;
  lua_State *L = la->obj.ctx->L;
  (void)sip;
  if (lsip_obj_push_call(&la->obj) < 0) {
    msg_destroy(msg);
    return;
  }
  lua_pop(L, 1); /* the hook gets the request, not the agent */
  lsip_push_request(L, la->obj.ctx, la->agent, msg);
  lsip_pcall(la->obj.ctx, 1, 0);
}

/* The string stays on the stack, which keeps it alive while it is used. */
static char const *opt_string(lua_State *L, char const *field, char const *dflt)
{
  lua_getfield(L, 1, field);
  if (lua_isnil(L, -1))
    return dflt;
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "luasip.agent: option '%s' must be a string", field);
  return lua_tostring(L, -1);
}

/* agent{host=, port=, transports={"udp","tcp"}, max_size=, user_agent=,
 *       aliases={...}, on_request=fn(request)} -> agent, or nil, msg, code */
static int l_agent(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  char const *transports[MAX_TRANSPORTS + 1] = { 0 };
  char const *aliases[MAX_ALIASES + 1] = { 0 };
  sip_agent_config_t cfg;
  char err[256] = "";
  lagent *la;
  int n = 0;

  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&cfg, 0, sizeof cfg);
  cfg.host = opt_string(L, "host", "127.0.0.1");
  cfg.user_agent = opt_string(L, "user_agent", NULL);
  lua_getfield(L, 1, "port");
  cfg.port = (int)luaL_optinteger(L, -1, 5060);
  lua_pop(L, 1);
  if (cfg.port < 0 || cfg.port > 65535)
    return luaL_error(L, "luasip.agent: port must be 0..65535");
  lua_getfield(L, 1, "max_size");
  cfg.max_size = (unsigned)luaL_optinteger(L, -1, 65536);
  lua_pop(L, 1);
  lua_getfield(L, 1, "transports");
  if (lua_isnil(L, -1)) {
    transports[n++] = "udp";
    transports[n++] = "tcp";
  } else {
    luaL_argcheck(L, lua_istable(L, -1), 1, "transports must be a list");
    for (int i = 1; i <= (int)lua_rawlen(L, -1); i++) {
      char const *t;
      lua_rawgeti(L, -1, i);
      t = lua_tostring(L, -1);
      if (!t || (strcmp(t, "udp") != 0 && strcmp(t, "tcp") != 0))
        return luaL_error(L, "luasip.agent: transport must be \"udp\" or \"tcp\"");
      if (n == MAX_TRANSPORTS)
        return luaL_error(L, "luasip.agent: too many transports");
      transports[n++] = t; /* the list table keeps it alive */
      lua_pop(L, 1);
    }
    if (n == 0)
      return luaL_error(L, "luasip.agent: no transports");
  }
  cfg.transports = transports;
  lua_getfield(L, 1, "aliases");
  if (!lua_isnil(L, -1)) {
    int na = 0;
    luaL_argcheck(L, lua_istable(L, -1), 1, "aliases must be a list");
    for (int i = 1; i <= (int)lua_rawlen(L, -1); i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "luasip.agent: aliases must be strings");
      if (na == MAX_ALIASES)
        return luaL_error(L, "luasip.agent: too many aliases");
      aliases[na++] = lua_tostring(L, -1); /* the list keeps it alive */
      lua_pop(L, 1);
    }
    cfg.aliases = aliases;
  }
  cfg.trace = ctx->trace;
  lua_getfield(L, 1, "on_request");
  if (!lua_isnil(L, -1))
    luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_request must be a function");

  la = compat_newuserdata(L, sizeof *la);
  memset(la, 0, sizeof *la);
  la->agent = sip_agent_create(loop_root(ctx->loop), &cfg, on_request, la, err, sizeof err);
  if (!la->agent)
    return lsip_fail(L, err, "EADDRINUSE");
  luaL_setmetatable(L, AGENT_CLASS);
  lsip_obj_init(ctx, &la->obj, LSIP_AGENTS, agent_release);
  if (!lua_isnil(L, -2))
    lsip_obj_set_fn(L, &la->obj, -2);
  lsip_obj_anchor(L, &la->obj, -1); /* serves until closed */
  return 1;
}

static lagent *check_agent(lua_State *L)
{
  lagent *la = luaL_checkudata(L, 1, AGENT_CLASS);
  if (!la->agent)
    luaL_error(L, "luasip.agent: used after close()");
  return la;
}

static int agent_port(lua_State *L)
{
  lua_pushinteger(L, sip_agent_port(check_agent(L)->agent));
  return 1;
}

static int agent_addresses(lua_State *L)
{
  char addr[SIP_AGENT_MAX_TPORTS][96];
  int n = sip_agent_addresses(check_agent(L)->agent, addr, SIP_AGENT_MAX_TPORTS);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, addr[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* agent:answer_options(allow|nil) — answer OPTIONS in C with this Allow
 * (nil: hand them to on_request like any request) */
static int agent_answer_options(lua_State *L)
{
  lagent *la = check_agent(L);
  char const *allow = luaL_optstring(L, 2, NULL);
  sip_agent_answer_options(la->agent, allow != NULL, allow);
  return 0;
}

/* agent:request(text, next_hop|nil, fn) — see lsip_agent_request */
static int agent_request(lua_State *L)
{
  lagent *la = luaL_checkudata(L, 1, AGENT_CLASS);
  if (!la->agent)
    return luaL_error(L, "luasip.agent: used after close()");
  return lsip_agent_request(L, la->obj.ctx, la->agent);
}

static int agent_close(lua_State *L)
{
  lagent *la = luaL_checkudata(L, 1, AGENT_CLASS);
  lsip_obj_close(&la->obj);
  return 0;
}

static int agent_tostring(lua_State *L)
{
  lagent *la = luaL_checkudata(L, 1, AGENT_CLASS);
  if (la->agent)
    lua_pushfstring(L, "luasip.agent (port %d): %p", sip_agent_port(la->agent), (void *)la);
  else
    lua_pushfstring(L, "luasip.agent (closed): %p", (void *)la);
  return 1;
}

/* trace(on) — log every SIP message every agent sends or receives */
static int l_trace(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  if (lua_gettop(L) == 0) {
    lua_pushboolean(L, ctx->trace);
    return 1;
  }
  ctx->trace = lua_toboolean(L, 1);
  for (lsip_obj *o = ctx->objects.next; o != &ctx->objects; o = o->next)
    if (o->kind == LSIP_AGENTS)
      sip_agent_set_trace(((lagent *)o)->agent, ctx->trace);
  lsip_ua_trace(ctx, ctx->trace);
  lua_pushboolean(L, ctx->trace);
  return 1;
}

/* ---- sofia's log output -------------------------------------------------- */

static void on_sofia_log(void *arg, int kind, char const *source,
                         char const *text, size_t len)
{
  lsip_ctx *ctx = arg;
  if (!lsip_push_ref(ctx, ctx->log_ref))
    return;
  lua_pushstring(ctx->L, kind == SOFIALOG_TRACE ? "trace" : "debug");
  lua_pushstring(ctx->L, source);
  lua_pushlstring(ctx->L, text, len);
  lsip_pcall(ctx, 3, 0);
}

/* Sofia's logs are process-wide: the newest context captures them. */
void lsip_open_sofialog(lua_State *L, lsip_ctx *ctx)
{
  (void)L;
  ctx->sofialog = sofialog_start(on_sofia_log, ctx);
}

void lsip_close_sofialog(lsip_ctx *ctx)
{
  sofialog_stop(ctx->sofialog);
  ctx->sofialog = NULL;
}

void lsip_open_agent(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "agent", l_agent }, { "trace", l_trace }, { NULL, NULL },
  };
  static luaL_Reg const methods[] = {
    { "port", agent_port }, { "addresses", agent_addresses },
    { "answer_options", agent_answer_options },
    { "request", agent_request }, { "close", agent_close }, { NULL, NULL },
  };
  static luaL_Reg const meta[] = {
    { "__gc", agent_close }, { "__close", agent_close },
    { "__tostring", agent_tostring }, { NULL, NULL },
  };
  lsip_class(L, AGENT_CLASS, methods, meta);
  lsip_setfuncs(L, ctx, funcs);
}
