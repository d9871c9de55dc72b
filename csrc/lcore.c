/* lcore.c — luasip.core: the per-state context, the pcall trampoline every
 * C→Lua call goes through, and orderly teardown when the state closes. */
#include "lcore.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_CLASS "luasip.context"

lsip_ctx *lsip_ctx_of(lua_State *L)
{
  lsip_ctx **p = lua_touserdata(L, lua_upvalueindex(1));
  if (!*p)
    luaL_error(L, "luasip: the Lua state is closing");
  return *p;
}

/* ---- trampoline ---------------------------------------------------------- */

static int traceback(lua_State *L)
{
  char const *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void lsip_report(lsip_ctx *ctx, char const *msg)
{
  lua_State *L = ctx->L;
  if (!ctx->closing && ctx->error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->error_ref);
    lua_pushstring(L, msg);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK)
      return;
    fprintf(stderr, "luasip: error handler failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  fprintf(stderr, "luasip: %s\n", msg);
}

int lsip_pcall(lsip_ctx *ctx, int nargs, int nresults)
{
  lua_State *L = ctx->L;
  int base = lua_gettop(L) - nargs, rc;
  if (ctx->closing) {
    lua_settop(L, base - 1);
    return LUA_ERRRUN;
  }
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  loop_note_activity(ctx->loop);
  ctx->depth++;
  rc = lua_pcall(L, nargs, nresults, base);
  ctx->depth--;
  lua_remove(L, base);
  if (rc != LUA_OK) {
    char const *msg = lua_tostring(L, -1);
    lsip_report(ctx, msg ? msg : "(error without message)");
    lua_pop(L, 1);
  }
  return rc;
}

int lsip_push_ref(lsip_ctx *ctx, int ref)
{
  if (ctx->closing || ref == LUA_NOREF || ref == LUA_REFNIL)
    return 0;
  /* Callbacks can nest on ctx->L (sofia may log while a C function called
   * from a callback runs on it): make room for the call and its arguments. */
  if (!lua_checkstack(ctx->L, 16))
    return 0;
  lua_rawgeti(ctx->L, LUA_REGISTRYINDEX, ref);
  return 1;
}

/* ---- objects ------------------------------------------------------------- */

void lsip_obj_init(lsip_ctx *ctx, lsip_obj *o, enum lsip_count kind,
                   void (*release)(lsip_obj *))
{
  o->ctx = ctx;
  o->release = release;
  o->kind = kind;
  o->self_ref = LUA_NOREF;
  o->fn_ref = LUA_NOREF;
  ctx->counts[kind]++;
  o->next = ctx->objects.next;
  o->prev = &ctx->objects;
  ctx->objects.next->prev = o;
  ctx->objects.next = o;
  ctx->refs++;
}

void lsip_ctx_unref(lsip_ctx *ctx)
{
  if (--ctx->refs == 0)
    free(ctx);
}

void lsip_obj_anchor(lua_State *L, lsip_obj *o, int idx)
{
  if (o->self_ref != LUA_NOREF || !o->next)
    return;
  lua_pushvalue(L, idx);
  o->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lsip_obj_unanchor(lsip_obj *o)
{
  if (o->self_ref == LUA_NOREF)
    return;
  if (!o->ctx->closing)
    luaL_unref(o->ctx->L, LUA_REGISTRYINDEX, o->self_ref);
  o->self_ref = LUA_NOREF;
}

void lsip_obj_set_fn(lua_State *L, lsip_obj *o, int idx)
{
  lua_pushvalue(L, idx);
  luaL_unref(L, LUA_REGISTRYINDEX, o->fn_ref);
  o->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int lsip_obj_push_call(lsip_obj *o)
{
  if (!lsip_push_ref(o->ctx, o->fn_ref))
    return -1;
  if (o->self_ref == LUA_NOREF)
    return 1;
  lua_rawgeti(o->ctx->L, LUA_REGISTRYINDEX, o->self_ref);
  return 2;
}

void lsip_obj_close(lsip_obj *o)
{
  lsip_ctx *ctx = o->ctx;
  if (!o->next)
    return; /* already closed */
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = NULL;
  o->release(o);
  if (!ctx->closing)
    luaL_unref(ctx->L, LUA_REGISTRYINDEX, o->fn_ref);
  o->fn_ref = LUA_NOREF;
  ctx->counts[o->kind]--;
  lsip_obj_unanchor(o);
  lsip_ctx_unref(ctx);
}

/* ---- helpers ------------------------------------------------------------- */

void lsip_setfuncs(lua_State *L, lsip_ctx *ctx, luaL_Reg const *funcs)
{
  for (; funcs->name; funcs++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ud_ref);
    lua_pushcclosure(L, funcs->func, 1);
    lua_setfield(L, -2, funcs->name);
  }
}

int lsip_fail(lua_State *L, char const *msg, char const *code)
{
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

static char const *errno_name(int e)
{
  switch (e) {
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EACCES: return "EACCES";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EBADF: return "EBADF";
  case EBUSY: return "EBUSY";
  case EINVAL: return "EINVAL";
  case EMFILE: return "EMFILE";
  case ENOMEM: return "ENOMEM";
  case ENOENT: return "ENOENT";
  case ENOTDIR: return "ENOTDIR";
  case ENOSPC: return "ENOSPC";
  case EEXIST: return "EEXIST";
  case EPERM: return "EPERM";
  default: return "EIO";
  }
}

int lsip_fail_errno(lua_State *L, char const *what)
{
  int e = errno;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(e));
  lua_pushstring(L, errno_name(e));
  return 3;
}

/* ---- the context --------------------------------------------------------- */

static int ctx_gc(lua_State *L)
{
  lsip_ctx **p = luaL_checkudata(L, 1, CTX_CLASS);
  lsip_ctx *ctx = *p;
  if (!ctx)
    return 0;
  *p = NULL;
  /* The state is closing: call no Lua from here on, and release every
   * survivor before the loop goes. */
  ctx->closing = 1;
  while (ctx->objects.next != &ctx->objects)
    lsip_obj_close(ctx->objects.next);
  lsip_reap_uas(ctx, 3.0);
  lsip_close_media(ctx);
  loop_destroy(ctx->loop);
  ctx->loop = NULL;
  lsip_close_sofialog(ctx);
  lsip_ctx_unref(ctx);
  return 0;
}

static int l_set_handlers(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  static char const *const names[] = { "error", "signal", "log", NULL };
  int *slots[] = { &ctx->error_ref, &ctx->signal_ref, &ctx->log_ref };
  luaL_checktype(L, 1, LUA_TTABLE);
  for (int i = 0; names[i]; i++) {
    lua_getfield(L, 1, names[i]);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    luaL_argcheck(L, lua_isfunction(L, -1), 1, "handlers must be functions");
    luaL_unref(L, LUA_REGISTRYINDEX, *slots[i]);
    *slots[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* core.heap_bytes() -> bytes of C heap in use (malloc), for leak checks */
static int l_heap_bytes(lua_State *L)
{
  struct mallinfo2 mi = mallinfo2();
  lua_pushinteger(L, (lua_Integer)mi.uordblks);
  return 1;
}

/* core.busy() -> true while anything can still happen: a server or UA, a
 * watch, an armed timer (cheap: the CLI asks on every loop turn) */
static int l_busy(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  lua_pushboolean(L, ctx->counts[LSIP_AGENTS] > 0 || ctx->counts[LSIP_UAS] > 0 ||
                     ctx->counts[LSIP_STORES] > 0 || ctx->counts[LSIP_WATCHES] > 0 || loop_counts(ctx->loop).armed > 0);
  return 1;
}

static int l_depth(lua_State *L)
{
  lua_pushinteger(L, lsip_ctx_of(L)->depth);
  return 1;
}

static int l_counts(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  loop_counts_t lc = loop_counts(ctx->loop);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, ctx->counts[LSIP_TIMERS]);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, lc.armed);
  lua_setfield(L, -2, "armed_timers");
  lua_pushinteger(L, ctx->counts[LSIP_WATCHES]);
  lua_setfield(L, -2, "watches");
  lua_pushinteger(L, ctx->counts[LSIP_AGENTS]);
  lua_setfield(L, -2, "agents");
  lua_pushinteger(L, ctx->counts[LSIP_UAS]);
  lua_setfield(L, -2, "uas");
  lua_pushinteger(L, ctx->counts[LSIP_STORES]);
  lua_setfield(L, -2, "stores");
  lua_pushinteger(L, ctx->counts[LSIP_REQUESTS]);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, ctx->counts[LSIP_MEDIA]);
  lua_setfield(L, -2, "media_sessions");
  lua_pushinteger(L, ctx->counts[LSIP_CONFS]);
  lua_setfield(L, -2, "conferences");
  {
    int handles = 0, orphans = 0, closing = 0;
    lsip_ua_counts(ctx, &handles, &orphans, &closing);
    lua_pushinteger(L, handles);
    lua_setfield(L, -2, "sip_handles");
    lua_pushinteger(L, orphans);
    lua_setfield(L, -2, "sip_orphans");
    lua_pushinteger(L, ctx->counts[LSIP_HANDLES]);
    lua_setfield(L, -2, "handles");
    lua_pushinteger(L, closing);
    lua_setfield(L, -2, "closing_uas");
  }
  lua_pushinteger(L, loop_open_fds());
  lua_setfield(L, -2, "fds");
  return 1;
}

#ifndef LUASIP_VERSION
#define LUASIP_VERSION "scm"
#endif

int luaopen_luasip_core(lua_State *L)
{
  static luaL_Reg const ctx_meta[] = { { "__gc", ctx_gc }, { NULL, NULL } };
  static luaL_Reg const funcs[] = {
    { "set_handlers", l_set_handlers },
    { "depth", l_depth },
    { "busy", l_busy },
    { "heap_bytes", l_heap_bytes },
    { "counts", l_counts },
    { NULL, NULL },
  };
  lsip_ctx **p;
  lsip_ctx *ctx = calloc(1, sizeof *ctx);

  if (!ctx)
    return luaL_error(L, "luasip.core: out of memory");
  compat_pin_module((void *)luaopen_luasip_core);
  ctx->loop = loop_create();
  if (!ctx->loop) {
    free(ctx);
    return luaL_error(L, "luasip.core: cannot create the sofia event loop (%s)", strerror(errno));
  }
  ctx->objects.next = ctx->objects.prev = &ctx->objects;
  ctx->error_ref = ctx->signal_ref = ctx->log_ref = LUA_NOREF;
  ctx->refs = 1;

  lua_newtable(L); /* the module */

  /* The context userdata is finalized when the state closes. It lives in
   * the registry, and in the module for the upvalues. */
  p = lua_newuserdata(L, sizeof *p);
  *p = ctx;
  luaL_newmetatable(L, CTX_CLASS);
  luaL_setfuncs(L, ctx_meta, 0);
  lua_setmetatable(L, -2);
  ctx->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  ctx->L = lua_newthread(L);
  ctx->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lsip_setfuncs(L, ctx, funcs);
  lsip_open_loop(L, ctx);
  lsip_open_sofialog(L, ctx);
  lsip_open_agent(L, ctx);
  lsip_open_request(L, ctx);
  lsip_open_msg(L, ctx);
  lsip_open_ua(L, ctx);
  lsip_open_stun(L, ctx);
  lsip_open_digest(L, ctx);
  lsip_open_store(L, ctx);
  lsip_open_media(L, ctx);
  lsip_open_simple(L, ctx);
  lsip_open_files(L, ctx);

  lua_pushstring(L, LUASIP_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
