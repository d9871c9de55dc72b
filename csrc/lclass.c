/* lclass.c — userdata classes: a metatable per class, and class checks by
 * registry reference (a raw compare) instead of luaL_checkudata's lookup by
 * name. No context needed, so the fuzz targets link it alone. */
#include "lcore.h"

void lsip_class(lua_State *L, char const *name, luaL_Reg const *methods,
                luaL_Reg const *meta)
{
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

void lsip_classref_init(lua_State *L, lsip_classref *c)
{
  luaL_getmetatable(L, c->name);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void *lsip_checkclass(lua_State *L, int idx, lsip_classref const *c)
{
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int same;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same)
      return p;
  }
  return luaL_checkudata(L, idx, c->name); /* raises the usual error */
}

void lsip_setclass(lua_State *L, lsip_classref const *c)
{
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  if (lua_istable(L, -1))
    lua_setmetatable(L, -2);
  else {
    lua_pop(L, 1);
    luaL_setmetatable(L, c->name);
  }
}
