/* compat.h — the few Lua C API differences between Lua 5.4 and LuaJIT 2.1
 * (5.1 API plus some 5.2 extensions) that the bindings use. */
#ifndef LUASIP_COMPAT_H
#define LUASIP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#ifndef LUA_OK
#define LUA_OK 0
#endif
static inline int compat_absindex(lua_State *L, int i)
{
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex(L, i) compat_absindex((L), (i))
#ifndef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs((L), (l), 0))
#endif
#endif

#if LUA_VERSION_NUM >= 504
#define compat_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#else
#define compat_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

/* Keep this module (and what it links: sofia, libedit) mapped until the
 * process exits. lua_close() would otherwise dlclose() it while sofia's
 * global logs still point into it, and leak checkers would lose sight of
 * the libraries' own globals. */
#include <dlfcn.h>
static inline void compat_pin_module(void *symbol)
{
  Dl_info info;
  if (dladdr(symbol, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

#endif
