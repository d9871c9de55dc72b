/* lstun.c — addresses for a UA behind NAT or on port 0: core.stun() over
 * csrc/sip/stun.c, and core.free_port(). */
#include "lcore.h"
#include "sip/stun.h"

#include <sofia-sip/su.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

void lsip_open_stun(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "stun", l_stun }, { "free_port", l_free_port }, { NULL, NULL },
  };
  static luaL_Reg const methods[] = { { "close", stun_close }, { NULL, NULL } };
  static luaL_Reg const meta[] = { { "__gc", stun_close }, { NULL, NULL } };
  lsip_class(L, STUN_CLASS, methods, meta);
  lsip_setfuncs(L, ctx, funcs);
}
