/* lcore.h — what the binding files share: the per-state context, the one
 * pcall trampoline for C→Lua calls, and the object registry used to tear
 * everything down in order when the Lua state closes. */
#ifndef LUASIP_LCORE_H
#define LUASIP_LCORE_H

#include "compat.h"
#include "loop/loop.h"

typedef struct lsip_ctx lsip_ctx;
typedef struct lsip_obj lsip_obj;

enum lsip_count { LSIP_TIMERS, LSIP_WATCHES, LSIP_AGENTS, LSIP_UAS, LSIP_HANDLES,
                  LSIP_STORES, LSIP_REQUESTS, LSIP_MEDIA, LSIP_CONFS, LSIP_NCOUNTS };

/* Every binding object that owns engine resources starts with this header.
 * release() frees the engine side; the header's close path (close(), __gc,
 * __close, and every survivor when the state closes) calls it once and
 * drops the Lua callback, the anchor and the live count. */
struct lsip_obj {
  lsip_obj *next, *prev;
  lsip_ctx *ctx;
  void (*release)(lsip_obj *);
  enum lsip_count kind;
  int self_ref; /* registry anchor while C can call back, or LUA_NOREF */
  int fn_ref;   /* the Lua callback, or LUA_NOREF */
};

struct lsip_ctx {
  lua_State *L;    /* dedicated thread all callbacks run on */
  int thread_ref;
  int ud_ref;      /* the context userdata: upvalue of every function */
  loop_t *loop;
  int depth;       /* C→Lua callbacks in progress */
  int stop;        /* luasip.stop() requested */
  int closing;     /* the Lua state is closing: call no more Lua */
  int refs;        /* the context userdata + live objects */
  int error_ref;   /* function(message) reporting errors from callbacks */
  int signal_ref;  /* function(signame) */
  int log_ref;     /* function(level, source, text) for sofia output */
  int trace;       /* SIP message tracing on */
  struct sofialog *sofialog; /* capture of sofia's log output */
  lsip_obj objects; /* list head */
  void *closing_uas; /* UAs whose shutdown is in progress (lua_ua.c) */
  struct media_engine *media; /* the RTP engine, made with the first session (lmedia.c) */
  struct tts *tts;  /* speech synthesis worker, made on first use (lmedia.c) */
  int tts_ref;      /* registry table: job id -> fn(path, err); 0 until then */
  int counts[LSIP_NCOUNTS];
};

lsip_ctx *lsip_ctx_of(lua_State *L); /* from upvalue 1 of the running C function */
/* Keep the context allocated past the state (work finishing in the background). */
void lsip_ctx_unref(lsip_ctx *ctx);

/* Call the function below nargs arguments on ctx->L through the trampoline:
 * errors are logged with a traceback and never propagate. Returns LUA_OK
 * with nresults on the stack, or an error code with nothing on it. */
int lsip_pcall(lsip_ctx *ctx, int nargs, int nresults);
/* Push the registry value ref onto ctx->L; returns 0 if the state is closing. */
int lsip_push_ref(lsip_ctx *ctx, int ref);
/* Report an error message through the Lua error handler or stderr. */
void lsip_report(lsip_ctx *ctx, char const *msg);

void lsip_obj_init(lsip_ctx *ctx, lsip_obj *o, enum lsip_count kind,
                   void (*release)(lsip_obj *));
/* Keep the function at idx as the object's callback. */
void lsip_obj_set_fn(lua_State *L, lsip_obj *o, int idx);
/* Push the callback, then the object itself (when anchored), onto ctx->L.
 * Returns the number of values pushed, or -1 (nothing pushed) when there is
 * no callback or the state is closing. */
int lsip_obj_push_call(lsip_obj *o);
/* Unlink, release engine resources, drop the anchor. Idempotent. */
void lsip_obj_close(lsip_obj *o);
void lsip_obj_anchor(lua_State *L, lsip_obj *o, int idx);
void lsip_obj_unanchor(lsip_obj *o);

/* Metatable with __name, __index = methods and the given metamethods. */
void lsip_class(lua_State *L, char const *name, luaL_Reg const *methods,
                luaL_Reg const *meta);
/* A class's metatable under an integer registry key: type checks without
 * luaL_checkudata's lookup by name, which hashes the name every call (a
 * visible cost on per-request paths). A ref from another Lua state never
 * matches, so a mismatch falls back to the checked lookup by name. */
typedef struct {
  char const *name;
  int ref; /* LUA_NOREF until lsip_classref_init */
} lsip_classref;
#define LSIP_CLASSREF(n) { (n), LUA_NOREF }
/* After lsip_class()/luaL_newmetatable() registered c->name. */
void lsip_classref_init(lua_State *L, lsip_classref *c);
/* luaL_checkudata(L, idx, c->name), fast when it is one. */
void *lsip_checkclass(lua_State *L, int idx, lsip_classref const *c);
/* luaL_setmetatable(L, c->name) for the value at the top. */
void lsip_setclass(lua_State *L, lsip_classref const *c);
/* Register funcs into the table at the top with the context as upvalue. */
void lsip_setfuncs(lua_State *L, lsip_ctx *ctx, luaL_Reg const *funcs);

int lsip_fail(lua_State *L, char const *msg, char const *code);
int lsip_fail_errno(lua_State *L, char const *what);

void lsip_open_loop(lua_State *L, lsip_ctx *ctx);
void lsip_open_agent(lua_State *L, lsip_ctx *ctx);
void lsip_open_sofialog(lua_State *L, lsip_ctx *ctx);
void lsip_close_sofialog(lsip_ctx *ctx);
void lsip_open_msg(lua_State *L, lsip_ctx *ctx);
/* Push a luasip.message holding its own reference on msg (lmsg.c). */
struct msg_s;
void lsip_push_msg(lua_State *L, struct msg_s *msg);
struct msg_s *lsip_check_msg(lua_State *L, int idx);
/* Raise "<what>: bad header name" / "has a line break in its value" for a
 * header that would not stay one line (lmsg.c). */
void lsip_check_header(lua_State *L, char const *name, size_t nlen, char const *value,
                       size_t vlen, char const *what);
/* The server side (lrequest.c): requests and proxy branches over nta. */
struct sip_agent;
void lsip_open_request(lua_State *L, lsip_ctx *ctx);
void lsip_push_request(lua_State *L, lsip_ctx *ctx, struct sip_agent *agent, struct msg_s *msg);
void lsip_close_requests(lsip_ctx *ctx, struct sip_agent *agent);
int lsip_agent_request(lua_State *L, lsip_ctx *ctx, struct sip_agent *agent);
void lsip_open_ua(lua_State *L, lsip_ctx *ctx);
void lsip_open_stun(lua_State *L, lsip_ctx *ctx);
void lsip_open_digest(lua_State *L, lsip_ctx *ctx);
void lsip_open_store(lua_State *L, lsip_ctx *ctx);
void lsip_open_media(lua_State *L, lsip_ctx *ctx);
void lsip_open_simple(lua_State *L, lsip_ctx *ctx);
void lsip_open_files(lua_State *L, lsip_ctx *ctx);
void lsip_close_media(lsip_ctx *ctx);
void lsip_reap_uas(lsip_ctx *ctx, double seconds);
void lsip_ua_trace(lsip_ctx *ctx, int on);
void lsip_ua_counts(lsip_ctx *ctx, int *handles, int *orphans, int *closing);

#endif
