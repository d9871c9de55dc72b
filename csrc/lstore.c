/* lstore.c — Lua binding of the SQLite store (csrc/store/sqlite.c):
 * core.sqlite(path) -> db, whose writes complete on the loop once durable. */
#include "lcore.h"
#include "store/sqlite.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DB_CLASS "luasip.sqlite"

typedef struct {
  lsip_obj obj;
  sqlstore_t *s;
  loop_watch_t *w;
  int pending;  /* writes whose callback has not run: they anchor the db */
  int close_ms; /* how long close() waits for a stuck writer */
} ldb;

/* What a write's completion needs: its db and its Lua callback. */
typedef struct {
  ldb *db;
  int fn_ref;
} lwrite;

static void db_release(lsip_obj *o)
{
  ldb *db = (ldb *)o;
  sqlstore_t *s = db->s;
  if (db->w)
    loop_watch_destroy(db->w);
  db->w = NULL;
  db->s = NULL;
  /* Commits what is queued and runs the callbacks of every write. */
  if (s && sqlstore_close(s, db->close_ms) < 0)
    lsip_report(o->ctx, "luasip.sqlite: closed while its writer thread was stuck; "
                        "the writes in progress were reported failed");
}

static void write_done(void *arg, int ok, char const *err)
{
  lwrite *w = arg;
  ldb *db = w->db;
  lsip_ctx *ctx = db->obj.ctx;
  int fn = w->fn_ref;
  free(w);
  if (--db->pending == 0)
    lsip_obj_unanchor(&db->obj);
  if (fn == LUA_NOREF)
    return;
  if (!lsip_push_ref(ctx, fn)) {
    if (!ctx->closing)
      luaL_unref(ctx->L, LUA_REGISTRYINDEX, fn);
    return;
  }
  luaL_unref(ctx->L, LUA_REGISTRYINDEX, fn);
  lua_pushboolean(ctx->L, ok);
  if (ok) {
    lsip_pcall(ctx, 1, 0);
  } else {
    lua_pushstring(ctx->L, err);
    lsip_pcall(ctx, 2, 0);
  }
}

static void on_ready(loop_watch_t *w, int revents, void *arg)
{
  ldb *db = arg;
  lsip_ctx *ctx = db->obj.ctx;
  int top = lua_gettop(ctx->L);
  (void)w;
  (void)revents;
  /* Keep the db alive through the callbacks: the last one unanchors it. */
  lsip_push_ref(ctx, db->obj.self_ref);
  sqlstore_dispatch(db->s);
  lua_settop(ctx->L, top);
}

static ldb *check_db(lua_State *L)
{
  ldb *db = luaL_checkudata(L, 1, DB_CLASS);
  if (!db->s)
    luaL_error(L, "luasip.sqlite: used after close()");
  return db;
}

/* ---- parameters ---------------------------------------------------------- */

static void to_value(lua_State *L, int idx, sqlstore_value_t *v)
{
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    v->type = SQLSTORE_NULL;
    break;
  case LUA_TBOOLEAN:
    v->type = SQLSTORE_INT;
    v->i = lua_toboolean(L, idx);
    break;
  case LUA_TNUMBER: {
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
      v->type = SQLSTORE_INT;
      v->i = lua_tointeger(L, idx);
      break;
    }
    v->type = SQLSTORE_DOUBLE;
    v->d = lua_tonumber(L, idx);
#else
    /* LuaJIT numbers are doubles: integral ones go in as integers. */
    lua_Number d = lua_tonumber(L, idx);
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
      v->type = SQLSTORE_INT;
      v->i = (int64_t)d;
    } else {
      v->type = SQLSTORE_DOUBLE;
      v->d = d;
    }
#endif
    break;
  }
  case LUA_TSTRING:
    v->type = SQLSTORE_TEXT;
    v->s = lua_tolstring(L, idx, &v->len);
    break;
  default:
    luaL_error(L, "luasip.sqlite: a parameter must be a string, number, boolean or nil, not a %s",
               luaL_typename(L, idx));
  }
}

/* The parameters in the table at idx (nil: none): integer keys bind by
 * position, string keys by name. Fills out (if not NULL); returns the count.
 * The values point into strings the table holds. */
static int collect_params(lua_State *L, int idx, sqlstore_value_t *out)
{
  int n = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  if (!lua_istable(L, idx))
    luaL_error(L, "luasip.sqlite: parameters must be a table, not a %s", luaL_typename(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    sqlstore_value_t v;
    memset(&v, 0, sizeof v);
    if (lua_type(L, -2) == LUA_TSTRING) {
      v.name = lua_tostring(L, -2);
    } else {
      lua_Number k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
      if (!(k >= 1 && k <= 32766 && k == floor(k)))
        luaL_error(L, "luasip.sqlite: parameter keys must be names or positions from 1");
      v.pos = (int)k;
    }
    to_value(L, -1, &v);
    if (out)
      out[n] = v;
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* ---- the db -------------------------------------------------------------- */

static lua_Number opt_seconds(lua_State *L, char const *field, lua_Number dflt)
{
  lua_Number v = dflt;
  if (lua_isnoneornil(L, 2))
    return dflt;
  lua_getfield(L, 2, field);
  if (!lua_isnil(L, -1)) {
    v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v >= 0 && v <= 3600))
      luaL_error(L, "luasip.sqlite: %s must be a number of seconds from 0 to 3600", field);
  }
  lua_pop(L, 1);
  return v;
}

/* sqlite(path [, {busy_timeout = s, close_timeout = s}]) -> db, or nil, msg, code.
 * busy_timeout: how long a write waits for another process's lock (5 s);
 * close_timeout: how long close() waits for the writer (by default long
 * enough for a batch in progress and the final one to wait out a lock). */
static int l_sqlite(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  char const *path = luaL_checkstring(L, 1);
  lua_Number busy, close_s;
  char err[512] = "";
  ldb *db;
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  busy = opt_seconds(L, "busy_timeout", 5);
  close_s = opt_seconds(L, "close_timeout", busy * 2 + 5);
  db = compat_newuserdata(L, sizeof *db);
  memset(db, 0, sizeof *db);
  db->s = sqlstore_open(path, (int)(busy * 1000), err, sizeof err);
  if (!db->s)
    return lsip_fail(L, err, "EIO");
  db->close_ms = (int)(close_s * 1000);
  db->w = loop_watch_create(ctx->loop, sqlstore_fd(db->s), LOOP_READ, on_ready, db);
  if (!db->w) {
    sqlstore_close(db->s, db->close_ms);
    db->s = NULL;
    return lsip_fail_errno(L, "luasip.sqlite");
  }
  luaL_setmetatable(L, DB_CLASS);
  lsip_obj_init(ctx, &db->obj, LSIP_STORES, db_release);
  return 1;
}

/* db:write(sql, params [, callback]) or db:write({{sql, params}, ...} [, callback]):
 * queue one job, atomic; callback(true) once durable, or callback(false, err). */
static int db_write(lua_State *L)
{
  ldb *db = check_db(L);
  int single = lua_type(L, 2) == LUA_TSTRING;
  int cb = single ? 4 : 3;
  int nstmts = 1, nvalues = 0;
  sqlstore_stmt_t *stmts;
  sqlstore_value_t *values;
  lwrite *w;

  lua_settop(L, cb); /* the scratch space goes above the arguments */
  if (single) {
    nvalues = collect_params(L, 3, NULL);
  } else {
    luaL_argcheck(L, lua_istable(L, 2), 2, "expected an SQL string or a list of {sql, params}");
    nstmts = (int)lua_rawlen(L, 2);
    luaL_argcheck(L, nstmts > 0, 2, "the list of statements is empty");
    for (int i = 1; i <= nstmts; i++) {
      lua_rawgeti(L, 2, i);
      luaL_argcheck(L, lua_istable(L, -1), 2, "each statement must be a table {sql, params}");
      lua_rawgeti(L, -1, 1);
      luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "each statement must start with its SQL");
      lua_rawgeti(L, -2, 2);
      nvalues += collect_params(L, -1, NULL);
      lua_pop(L, 3);
    }
  }
  luaL_argcheck(L, lua_isnoneornil(L, cb) || lua_isfunction(L, cb), cb, "callback must be a function");

  /* Scratch space the collector frees, whatever raises. */
  stmts = lua_newuserdata(L, nstmts * sizeof *stmts + (nvalues + 1) * sizeof *values);
  values = (sqlstore_value_t *)(stmts + nstmts);
  if (single) {
    stmts[0].sql = lua_tostring(L, 2);
    stmts[0].params = values;
    stmts[0].nparams = collect_params(L, 3, values);
  } else {
    sqlstore_value_t *v = values;
    for (int i = 1; i <= nstmts; i++) {
      lua_rawgeti(L, 2, i);
      lua_rawgeti(L, -1, 1);
      stmts[i - 1].sql = lua_tostring(L, -1); /* the list holds it */
      lua_rawgeti(L, -2, 2);
      stmts[i - 1].params = v;
      stmts[i - 1].nparams = collect_params(L, -1, v);
      v += stmts[i - 1].nparams;
      lua_pop(L, 3);
    }
  }

  w = malloc(sizeof *w);
  if (!w)
    return luaL_error(L, "luasip.sqlite: out of memory");
  w->db = db;
  w->fn_ref = LUA_NOREF;
  if (sqlstore_write(db->s, stmts, nstmts, write_done, w) < 0) {
    free(w);
    return lsip_fail_errno(L, "luasip.sqlite: write");
  }
  if (!lua_isnoneornil(L, cb)) {
    lua_pushvalue(L, cb);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  db->pending++;
  lsip_obj_anchor(L, &db->obj, 1);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct {
  lua_State *L;
  int n;
} rows_ctx;

static int push_row(void *arg, int ncols, char const *const *names, sqlstore_value_t const *cols)
{
  rows_ctx *rc = arg;
  lua_State *L = rc->L;
  lua_createtable(L, 0, ncols);
  for (int i = 0; i < ncols; i++) {
    sqlstore_value_t const *v = &cols[i];
    switch (v->type) {
    case SQLSTORE_NULL: continue;
    case SQLSTORE_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
    case SQLSTORE_DOUBLE: lua_pushnumber(L, v->d); break;
    case SQLSTORE_TEXT: lua_pushlstring(L, v->s, v->len); break;
    }
    lua_setfield(L, -2, names[i]);
  }
  lua_rawseti(L, -2, ++rc->n);
  return 0;
}

/* db:rows(sql [, params]) -> list of rows (column name -> value; NULL is
 * absent), or nil, msg, code. Synchronous, on the read-only connection. */
static int db_rows(lua_State *L)
{
  ldb *db = check_db(L);
  char const *sql = luaL_checkstring(L, 2);
  int n;
  lua_settop(L, 3);
  n = collect_params(L, 3, NULL);
  sqlstore_value_t *values = lua_newuserdata(L, (n + 1) * sizeof *values);
  sqlstore_stmt_t q = { sql, values, 0 };
  rows_ctx rc = { L, 0 };
  char err[512] = "";
  q.nparams = collect_params(L, 3, values);
  lua_newtable(L);
  if (sqlstore_query(db->s, &q, push_row, &rc, err, sizeof err) < 0)
    return lsip_fail(L, err, "EIO");
  return 1;
}

/* db:exec(sql) -> true, or nil, msg, code. Synchronous, between batches:
 * for schema set-up. Several statements are allowed. */
static int db_exec(lua_State *L)
{
  ldb *db = check_db(L);
  char const *sql = luaL_checkstring(L, 2);
  char err[512] = "";
  if (sqlstore_exec(db->s, sql, err, sizeof err) < 0)
    return lsip_fail(L, err, "EIO");
  lua_pushboolean(L, 1);
  return 1;
}

/* db:stats() -> {commits=, jobs=, failed=, pending=} */
static int db_stats(lua_State *L)
{
  ldb *db = check_db(L);
  sqlstore_stats_t st;
  sqlstore_stats(db->s, &st);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)st.commits);
  lua_setfield(L, -2, "commits");
  lua_pushinteger(L, (lua_Integer)st.jobs);
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, (lua_Integer)st.failed);
  lua_setfield(L, -2, "failed");
  lua_pushinteger(L, st.pending);
  lua_setfield(L, -2, "pending");
  return 1;
}

/* close(): commits what is queued, runs the callbacks; idempotent. */
static int db_close(lua_State *L)
{
  ldb *db = luaL_checkudata(L, 1, DB_CLASS);
  lsip_obj_close(&db->obj);
  return 0;
}

static int db_tostring(lua_State *L)
{
  ldb *db = luaL_checkudata(L, 1, DB_CLASS);
  lua_pushfstring(L, "luasip.sqlite (%s): %p", db->s ? "open" : "closed", (void *)db);
  return 1;
}

void lsip_open_store(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = { { "sqlite", l_sqlite }, { NULL, NULL } };
  static luaL_Reg const methods[] = {
    { "write", db_write }, { "rows", db_rows }, { "exec", db_exec },
    { "stats", db_stats }, { "close", db_close }, { NULL, NULL },
  };
  static luaL_Reg const meta[] = {
    { "__gc", db_close }, { "__close", db_close },
    { "__tostring", db_tostring }, { NULL, NULL },
  };
  lsip_class(L, DB_CLASS, methods, meta);
  lsip_setfuncs(L, ctx, funcs);
}
