/* lloop.c — Lua binding of the loop: run/step/stop, the clock, timers, fd
 * watches, the pollable fd for embedding, and signals. */
#include "lcore.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TIMER_CLASS "luasip.timer"
#define WATCH_CLASS "luasip.watch"

/* ---- running the loop ---------------------------------------------------- */

static void check_not_nested(lua_State *L, lsip_ctx *ctx, char const *what)
{
  if (ctx->depth > 0)
    luaL_error(L, "%s cannot be called from a callback: use luasip.spawn "
                  "and a blocking verb", what);
}

static int l_run(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  check_not_nested(L, ctx, "luasip.run()");
  ctx->stop = 0;
  while (!ctx->stop)
    loop_step(ctx->loop, -1);
  ctx->stop = 0;
  return 0;
}

/* step([timeout_ms]) -> ms until the next timer, or nil if none */
static int l_step(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  lua_Number ms = luaL_optnumber(L, 1, 0);
  long next;
  check_not_nested(L, ctx, "luasip.step()");
  luaL_argcheck(L, ms == ms, 1, "timeout must be a number");
  /* negative or beyond any poll(2) timeout: until something happens */
  next = loop_step(ctx->loop, (ms < 0 || ms > INT_MAX) ? -1 : (long)ms);
  if (next < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, next);
  return 1;
}

static int l_stop(lua_State *L)
{
  lsip_ctx_of(L)->stop = 1;
  return 0;
}

/* stopped() -> true once stop() was requested and not yet consumed by run() */
static int l_stopped(lua_State *L)
{
  lua_pushboolean(L, lsip_ctx_of(L)->stop);
  return 1;
}

static int l_clear_stop(lua_State *L)
{
  lsip_ctx_of(L)->stop = 0;
  return 0;
}

static int l_now(lua_State *L)
{
  lua_pushnumber(L, loop_now());
  return 1;
}

/* time() -> wall-clock seconds since the epoch, with sub-second part */
static int l_time(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* pollfd() -> fd, seconds until the next timer (or nil) */
static int l_pollfd(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  int fd = loop_pollfd(ctx->loop);
  long ms;
  if (fd < 0)
    return lsip_fail(L, "the sofia port in use has no pollable fd (SU_PORT=epoll has one)", "ENOTSUP");
  lua_pushinteger(L, fd);
  ms = loop_next_timeout(ctx->loop);
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 2;
}

/* timeout() -> seconds until the next timer, or nil if none */
static int l_timeout(lua_State *L)
{
  long ms = loop_next_timeout(lsip_ctx_of(L)->loop);
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* ---- timers -------------------------------------------------------------- */

typedef struct {
  lsip_obj obj;
  loop_timer_t *t;
} ltimer;

static void timer_release(lsip_obj *o)
{
  ltimer *lt = (ltimer *)o;
  loop_timer_destroy(lt->t);
  lt->t = NULL;
}

static void on_timer(loop_timer_t *t, void *arg)
{
  ltimer *lt = arg;
  int n = lsip_obj_push_call(&lt->obj);
  if (n < 0)
    return;
  if (!loop_timer_armed(t)) /* one-shot: the stack keeps it alive for the call */
    lsip_obj_unanchor(&lt->obj);
  lsip_pcall(lt->obj.ctx, n - 1, 0);
}

static ltimer *check_timer(lua_State *L)
{
  ltimer *lt = luaL_checkudata(L, 1, TIMER_CLASS);
  if (!lt->t)
    luaL_error(L, "luasip.timer: used after close()");
  return lt;
}

/* timer(fn) -> a stopped timer; fn(timer) runs on expiry */
static int l_timer(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  ltimer *lt;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lt = compat_newuserdata(L, sizeof *lt);
  memset(lt, 0, sizeof *lt);
  lt->t = loop_timer_create(ctx->loop, on_timer, lt);
  if (!lt->t)
    return luaL_error(L, "luasip.timer: cannot create a timer");
  luaL_setmetatable(L, TIMER_CLASS);
  lsip_obj_init(ctx, &lt->obj, LSIP_TIMERS, timer_release);
  lsip_obj_set_fn(L, &lt->obj, 1);
  return 1;
}

/* Longest timer: ~31 years, far inside su_time_t and int64 microseconds;
 * also rejects inf and nan. */
#define MAX_DELAY_S 1e9

/* timer:start(delay_s [, repeat_s]) -> timer. Restarting re-arms. */
static int timer_start(lua_State *L)
{
  ltimer *lt = check_timer(L);
  lua_Number delay = luaL_checknumber(L, 2);
  lua_Number repeat = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, delay >= 0 && delay <= MAX_DELAY_S, 2,
                "delay must be a number of seconds from 0 to 1e9");
  luaL_argcheck(L, repeat >= 0 && repeat <= MAX_DELAY_S, 3,
                "repeat must be a number of seconds from 0 to 1e9");
  luaL_argcheck(L, repeat == 0 || repeat >= 0.001, 3, "repeat must be at least 1 ms");
  if (loop_timer_start(lt->t, delay * 1000.0, repeat * 1000.0) < 0)
    return luaL_error(L, "luasip.timer: cannot arm the timer");
  lsip_obj_anchor(L, &lt->obj, 1);
  lua_settop(L, 1);
  return 1;
}

static int timer_stop(lua_State *L)
{
  ltimer *lt = luaL_checkudata(L, 1, TIMER_CLASS);
  if (lt->t) {
    loop_timer_stop(lt->t);
    lsip_obj_unanchor(&lt->obj);
  }
  return 0;
}

static int timer_armed(lua_State *L)
{
  ltimer *lt = luaL_checkudata(L, 1, TIMER_CLASS);
  lua_pushboolean(L, lt->t && loop_timer_armed(lt->t));
  return 1;
}

static int timer_close(lua_State *L)
{
  ltimer *lt = luaL_checkudata(L, 1, TIMER_CLASS);
  lsip_obj_close(&lt->obj);
  return 0;
}

static int timer_tostring(lua_State *L)
{
  ltimer *lt = luaL_checkudata(L, 1, TIMER_CLASS);
  lua_pushfstring(L, "luasip.timer (%s): %p",
                  !lt->t ? "closed" : loop_timer_armed(lt->t) ? "armed" : "stopped", (void *)lt);
  return 1;
}

/* ---- fd watches ---------------------------------------------------------- */

typedef struct {
  lsip_obj obj;
  loop_watch_t *w;
} lwatch;

static void watch_release(lsip_obj *o)
{
  lwatch *lw = (lwatch *)o;
  loop_watch_destroy(lw->w);
  lw->w = NULL;
}

static char const *events_string(int ev)
{
  return ev == (LOOP_READ | LOOP_WRITE) ? "rw" : ev == LOOP_READ ? "r" : ev == LOOP_WRITE ? "w" : "";
}

static int check_events(lua_State *L, int idx)
{
  char const *s = luaL_checkstring(L, idx);
  if (strcmp(s, "r") == 0)
    return LOOP_READ;
  if (strcmp(s, "w") == 0)
    return LOOP_WRITE;
  if (strcmp(s, "rw") == 0 || strcmp(s, "wr") == 0)
    return LOOP_READ | LOOP_WRITE;
  return luaL_argerror(L, idx, "events must be \"r\", \"w\" or \"rw\"");
}

static void on_watch(loop_watch_t *w, int revents, void *arg)
{
  lwatch *lw = arg;
  int n = lsip_obj_push_call(&lw->obj);
  (void)w;
  if (n < 0)
    return;
  lua_pushstring(lw->obj.ctx->L, events_string(revents));
  lsip_pcall(lw->obj.ctx, n, 0);
}

/* A descriptor from an integer, a Lua file, or an object with :getfd(). */
static int check_fd(lua_State *L, int idx)
{
  int fd = -1;
  if (lua_type(L, idx) == LUA_TNUMBER)
    fd = (int)lua_tointeger(L, idx);
  else if (luaL_testudata(L, idx, LUA_FILEHANDLE)) {
    FILE **f = lua_touserdata(L, idx);
    fd = *f ? fileno(*f) : -1;
  } else if (luaL_getmetafield(L, idx, "__index") != 0) {
    lua_pop(L, 1);
    lua_getfield(L, idx, "getfd");
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, idx);
      lua_call(L, 1, 1);
      fd = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : -1;
    }
    lua_pop(L, 1);
  }
  if (fd < 0)
    luaL_argerror(L, idx, "expected a file descriptor, a file, or an object with getfd()");
  return fd;
}

/* watch(fd, events, fn) -> watch; fn(watch, events) while it is open */
static int l_watch(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  int fd = check_fd(L, 1);
  int events = check_events(L, 2);
  lwatch *lw;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lw = compat_newuserdata(L, sizeof *lw);
  memset(lw, 0, sizeof *lw);
  lw->w = loop_watch_create(ctx->loop, fd, events, on_watch, lw);
  if (!lw->w)
    return lsip_fail_errno(L, "luasip.watch");
  luaL_setmetatable(L, WATCH_CLASS);
  lsip_obj_init(ctx, &lw->obj, LSIP_WATCHES, watch_release);
  lsip_obj_set_fn(L, &lw->obj, 3);
  lsip_obj_anchor(L, &lw->obj, -1); /* open watches live until closed */
  return 1;
}

static lwatch *check_watch(lua_State *L)
{
  lwatch *lw = luaL_checkudata(L, 1, WATCH_CLASS);
  if (!lw->w)
    luaL_error(L, "luasip.watch: used after close()");
  return lw;
}

static int watch_modify(lua_State *L)
{
  lwatch *lw = check_watch(L);
  if (loop_watch_modify(lw->w, check_events(L, 2)) < 0)
    return lsip_fail_errno(L, "luasip.watch:modify");
  lua_settop(L, 1);
  return 1;
}

static int watch_getfd(lua_State *L)
{
  lua_pushinteger(L, loop_watch_fd(check_watch(L)->w));
  return 1;
}

static int watch_close(lua_State *L)
{
  lwatch *lw = luaL_checkudata(L, 1, WATCH_CLASS);
  lsip_obj_close(&lw->obj);
  return 0;
}

static int watch_tostring(lua_State *L)
{
  lwatch *lw = luaL_checkudata(L, 1, WATCH_CLASS);
  if (lw->w)
    lua_pushfstring(L, "luasip.watch (fd %d): %p", loop_watch_fd(lw->w), (void *)lw);
  else
    lua_pushfstring(L, "luasip.watch (closed): %p", (void *)lw);
  return 1;
}

/* ---- signals ------------------------------------------------------------- */

static void on_signal(int signo, void *arg)
{
  lsip_ctx *ctx = arg;
  char const *name = signo == SIGINT ? "INT" : signo == SIGTERM ? "TERM" : signo == SIGHUP ? "HUP" : "?";
  if (!lsip_push_ref(ctx, ctx->signal_ref))
    return;
  lua_pushstring(ctx->L, name);
  lsip_pcall(ctx, 1, 0);
}

/* signals(on) -> true, or nil, msg, code */
static int l_signals(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  if (!lua_toboolean(L, 1)) {
    loop_signals_disable(ctx->loop);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (loop_signals_enable(ctx->loop, on_signal, ctx) < 0)
    return lsip_fail_errno(L, "luasip.signals");
  lua_pushboolean(L, 1);
  return 1;
}

void lsip_open_loop(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "run", l_run }, { "step", l_step }, { "stop", l_stop },
    { "stopped", l_stopped }, { "clear_stop", l_clear_stop },
    { "now", l_now }, { "time", l_time }, { "pollfd", l_pollfd }, { "timeout", l_timeout },
    { "timer", l_timer }, { "watch", l_watch }, { "signals", l_signals },
    { NULL, NULL },
  };
  static luaL_Reg const timer_methods[] = {
    { "start", timer_start }, { "stop", timer_stop }, { "armed", timer_armed },
    { "close", timer_close }, { NULL, NULL },
  };
  static luaL_Reg const timer_meta[] = {
    { "__gc", timer_close }, { "__close", timer_close },
    { "__tostring", timer_tostring }, { NULL, NULL },
  };
  static luaL_Reg const watch_methods[] = {
    { "modify", watch_modify }, { "getfd", watch_getfd },
    { "close", watch_close }, { NULL, NULL },
  };
  static luaL_Reg const watch_meta[] = {
    { "__gc", watch_close }, { "__close", watch_close },
    { "__tostring", watch_tostring }, { NULL, NULL },
  };
  lsip_class(L, TIMER_CLASS, timer_methods, timer_meta);
  lsip_class(L, WATCH_CLASS, watch_methods, watch_meta);
  lsip_setfuncs(L, ctx, funcs);
}
