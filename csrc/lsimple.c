/* lsimple.c — for the SIMPLE modules: PIDF and isComposing bodies
 * (csrc/simple/pidf.c) as Lua tables.
 *
 *   core.pidf_parse(xml [, lenient]) -> { entity =, tuples = { { id =,
 *       basic = "open" | "closed" | nil, contact =, priority =, note =,
 *       timestamp = }, ... }, notes = { ... }, activities = { ... } }  or
 *       nil, reason   (lenient: PIDF_LENIENT, an unknown basic is nil)
 *   core.pidf_build(t) -> xml      (the same shape)
 *   core.iscomposing_parse(xml) -> { state = "active" | "idle",
 *       content_type =, last_active =, refresh = } or nil, reason
 *   core.iscomposing_build(t) -> xml */
#include "lcore.h"
#include "simple/pidf.h"

#include <stdlib.h>
#include <string.h>

static void set_string(lua_State *L, char const *k, char const *v)
{
  if (!v)
    return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void push_list(lua_State *L, char *const *items, unsigned n)
{
  lua_createtable(L, (int)n, 0);
  for (unsigned i = 0; i < n; i++) {
    lua_pushstring(L, items[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

/* Push a document a builder made (and free it), or raise when it could
 * not (out of memory). */
static int push_built(lua_State *L, char *xml, char const *what)
{
  if (!xml)
    return luaL_error(L, "%s: out of memory", what);
  lua_pushstring(L, xml);
  free(xml);
  return 1;
}

static int l_pidf_parse(lua_State *L)
{
  size_t len;
  char const *xml = luaL_checklstring(L, 1, &len);
  char err[160];
  pidf_t p;
  if (pidf_parse(xml, len, lua_toboolean(L, 2) ? PIDF_LENIENT : 0, &p, err, sizeof err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 4);
  set_string(L, "entity", p.entity);
  lua_createtable(L, (int)p.ntuples, 0);
  for (unsigned i = 0; i < p.ntuples; i++) {
    pidf_tuple_t const *t = &p.tuples[i];
    lua_createtable(L, 0, 6);
    set_string(L, "id", t->id);
    set_string(L, "basic", t->basic == PIDF_BASIC_OPEN ? "open" : t->basic == PIDF_BASIC_CLOSED ? "closed" : NULL);
    set_string(L, "contact", t->contact);
    if (t->priority >= 0) {
      lua_pushnumber(L, t->priority);
      lua_setfield(L, -2, "priority");
    }
    set_string(L, "note", t->note);
    set_string(L, "timestamp", t->timestamp);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "tuples");
  push_list(L, p.notes, p.nnotes);
  lua_setfield(L, -2, "notes");
  push_list(L, p.activities, p.nactivities);
  lua_setfield(L, -2, "activities");
  pidf_free(&p);
  return 1;
}

/* A string field of the table at idx, or NULL; raises on another type.
 * The string stays valid while the table holds it. */
static char const *opt_field(lua_State *L, int idx, char const *k, char const *what)
{
  char const *v = NULL;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: %s must be a string", what, k);
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* A list of strings at field k into out (at most max). */
static unsigned list_field(lua_State *L, int idx, char const *k, char **out, unsigned max, char const *what)
{
  unsigned n = 0;
  lua_getfield(L, idx, k);
  if (lua_istable(L, -1)) {
    for (int i = 1; ; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s[%d] must be a string", what, k, i);
      if (n >= max)
        luaL_error(L, "%s: more than %u %s", what, max, k);
      out[n++] = (char *)lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "%s: %s must be a list of strings", what, k);
  }
  lua_pop(L, 1);
  return n;
}

static int l_pidf_build(lua_State *L)
{
  static char const what[] = "core.pidf_build";
  pidf_tuple_t tuples[PIDF_MAX_TUPLES];
  pidf_t p;
  char *xml;
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&p, 0, sizeof p);
  memset(tuples, 0, sizeof tuples);
  p.entity = (char *)opt_field(L, 1, "entity", what);
  p.nnotes = list_field(L, 1, "notes", p.notes, PIDF_MAX_NOTES, what);
  p.nactivities = list_field(L, 1, "activities", p.activities, PIDF_MAX_ACTIVITIES, what);
  lua_getfield(L, 1, "tuples");
  if (lua_istable(L, -1)) {
    int list = lua_gettop(L);
    for (int i = 1; ; i++) {
      pidf_tuple_t *t;
      char const *basic;
      lua_rawgeti(L, list, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      luaL_argcheck(L, lua_istable(L, -1), 1, "tuples must be a list of tables");
      if (p.ntuples >= PIDF_MAX_TUPLES)
        return luaL_error(L, "%s: more than %d tuples", what, PIDF_MAX_TUPLES);
      t = &tuples[p.ntuples++];
      t->id = (char *)opt_field(L, -1, "id", what);
      t->contact = (char *)opt_field(L, -1, "contact", what);
      t->note = (char *)opt_field(L, -1, "note", what);
      t->timestamp = (char *)opt_field(L, -1, "timestamp", what);
      basic = opt_field(L, -1, "basic", what);
      if (basic && strcmp(basic, "open") == 0)
        t->basic = PIDF_BASIC_OPEN;
      else if (basic && strcmp(basic, "closed") == 0)
        t->basic = PIDF_BASIC_CLOSED;
      else if (basic)
        return luaL_error(L, "%s: basic must be \"open\" or \"closed\"", what);
      lua_getfield(L, -1, "priority");
      t->priority = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
      lua_pop(L, 2); /* priority, the tuple (kept alive by the list) */
    }
  }
  p.tuples = tuples;
  xml = pidf_build(&p);
  lua_pop(L, 1);
  return push_built(L, xml, what);
}

static int l_iscomposing_parse(lua_State *L)
{
  size_t len;
  char const *xml = luaL_checklstring(L, 1, &len);
  char err[160];
  iscomposing_t c;
  if (iscomposing_parse(xml, len, &c, err, sizeof err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 4);
  set_string(L, "state", c.active ? "active" : "idle");
  set_string(L, "content_type", c.content_type);
  set_string(L, "last_active", c.last_active);
  if (c.refresh) {
    lua_pushinteger(L, c.refresh);
    lua_setfield(L, -2, "refresh");
  }
  iscomposing_free(&c);
  return 1;
}

static int l_iscomposing_build(lua_State *L)
{
  static char const what[] = "core.iscomposing_build";
  iscomposing_t c;
  char const *state;
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&c, 0, sizeof c);
  state = opt_field(L, 1, "state", what);
  if (!state || (strcmp(state, "active") != 0 && strcmp(state, "idle") != 0))
    return luaL_error(L, "%s: state must be \"active\" or \"idle\"", what);
  c.active = strcmp(state, "active") == 0;
  c.content_type = (char *)opt_field(L, 1, "content_type", what);
  c.last_active = (char *)opt_field(L, 1, "last_active", what);
  lua_getfield(L, 1, "refresh");
  if (!lua_isnil(L, -1)) {
    lua_Integer r = lua_tointeger(L, -1);
    if (!lua_isnumber(L, -1) || r < 1 || r > 86400)
      return luaL_error(L, "%s: refresh must be 1..86400 seconds", what);
    c.refresh = (unsigned)r;
  }
  lua_pop(L, 1);
  return push_built(L, iscomposing_build(&c), what);
}

void lsip_open_simple(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "pidf_parse", l_pidf_parse }, { "pidf_build", l_pidf_build },
    { "iscomposing_parse", l_iscomposing_parse }, { "iscomposing_build", l_iscomposing_build },
    { NULL, NULL },
  };
  lsip_setfuncs(L, ctx, funcs);
}
