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

#endif
