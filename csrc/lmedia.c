/* lmedia.c — Lua binding of the media engine (csrc/media/): sessions with
 * their sources, sinks, DTMF and statistics, for lua/luasip/media.lua. */
#include "lcore.h"
#include "media/conf.h"
#include "media/sdes.h"
#include "media/sdpmap.h"
#include "media/session.h"
#include "media/tts.h"

#include <string.h>

#define SESSION_CLASS "luasip.media_session"
#define CONF_CLASS "luasip.media_conference"
#define SETNUM(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))

typedef struct {
  lsip_obj obj;
  media_session_t *s;
} lsession;

/* The RTP port range until core.media_ports sets another. */
#define PORT_MIN 16384
#define PORT_MAX 32767

static media_engine_t *engine(lua_State *L, lsip_ctx *ctx, unsigned lo, unsigned hi)
{
  char err[160];
  if (!ctx->media) {
    ctx->media = media_engine_create(ctx->loop, lo, hi, err, sizeof err);
    if (!ctx->media)
      luaL_error(L, "luasip.media: %s", err);
  }
  return ctx->media;
}

/* core.media_ports(min, max): the RTP port range, before the first session */
static int l_media_ports(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
  luaL_argcheck(L, lo >= 1024 && lo <= 65534, 1, "port from 1024 to 65534");
  luaL_argcheck(L, hi > lo && hi <= 65535, 2, "port above min, at most 65535");
  if (ctx->media && media_engine_destroy(ctx->media) < 0)
    return luaL_error(L, "luasip.media: the port range cannot change while sessions are open");
  ctx->media = NULL;
  engine(L, ctx, (unsigned)lo, (unsigned)hi);
  return 0;
}

static void session_release(lsip_obj *o)
{
  lsession *ls = (lsession *)o;
  media_session_destroy(ls->s);
  ls->s = NULL;
}

static void on_dtmf(void *arg, char digit, unsigned duration_ms, int source)
{
  lsession *ls = arg;
  int n = lsip_obj_push_call(&ls->obj);
  lua_State *L = ls->obj.ctx->L;
  if (n < 0)
    return;
  lua_pushliteral(L, "dtmf");
  lua_pushlstring(L, &digit, 1);
  lua_pushinteger(L, duration_ms);
  if (source == MEDIA_DTMF_INBAND)
    lua_pushliteral(L, "inband");
  else
    lua_pushliteral(L, "rfc4733");
  lsip_pcall(ls->obj.ctx, n + 3, 0);
}

static void on_event(void *arg, int kind, char const *detail)
{
  lsession *ls = arg;
  int n = lsip_obj_push_call(&ls->obj);
  lua_State *L = ls->obj.ctx->L;
  if (n < 0)
    return;
  lua_pushstring(L, kind == MEDIA_PLAY_DONE     ? "play_done"
                    : kind == MEDIA_RECORD_DONE ? "record_done"
                                                : "dtmf_sent");
  if (detail)
    lua_pushstring(L, detail);
  else
    lua_pushnil(L);
  lsip_pcall(ls->obj.ctx, n + 1, 0);
}

/* core.media_session(addr, fn [, weak]) -> session; a weak session is not
 * kept alive by the engine and its fn gets no session argument. fn(session, what, ...) gets
 * ("dtmf", digit, ms, "rfc4733" or "inband"), ("play_done"), ("record_done", error or nil),
 * ("dtmf_sent"). */
static int l_media_session(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  char const *addr = luaL_checkstring(L, 1);
  static media_cb_t const cb = { on_dtmf, on_event };
  char err[160];
  lsession *ls;
  int weak = lua_toboolean(L, 3);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  engine(L, ctx, PORT_MIN, PORT_MAX);
  ls = compat_newuserdata(L, sizeof *ls);
  memset(ls, 0, sizeof *ls);
  ls->s = media_session_create(ctx->media, addr, &cb, ls, err, sizeof err);
  if (!ls->s)
    return lsip_fail(L, err, "EADDRINUSE");
  luaL_setmetatable(L, SESSION_CLASS);
  lsip_obj_init(ctx, &ls->obj, LSIP_MEDIA, session_release);
  lsip_obj_set_fn(L, &ls->obj, 2);
  /* until close, the engine calls back; an unanchored session (weak: a
   * call's) is closed when it is collected */
  if (!weak)
    lsip_obj_anchor(L, &ls->obj, -1);
  return 1;
}

static lsession *check(lua_State *L)
{
  lsession *ls = luaL_checkudata(L, 1, SESSION_CLASS);
  if (!ls->s)
    luaL_error(L, "luasip.media_session: used after close()");
  return ls;
}

static int s_port(lua_State *L)
{
  lua_pushinteger(L, media_session_port(check(L)->s));
  return 1;
}

static int s_codec(lua_State *L)
{
  char const *c = media_session_codec(check(L)->s);
  if (c)
    lua_pushstring(L, c);
  else
    lua_pushnil(L);
  return 1;
}

/* session:start(remote_sdp [, ptime_ms [, allow]]) -> true, or nil, error;
 * allow: the codecs to choose from, "opus,PCMU" (default: any we have) */
static int s_start(lua_State *L)
{
  lsession *ls = check(L);
  size_t len;
  char const *sdp = luaL_checklstring(L, 2, &len);
  lua_Integer ptime = luaL_optinteger(L, 3, 0);
  char const *allow = luaL_optstring(L, 4, NULL);
  sdpmap_t m;
  char err[160];
  luaL_argcheck(L, ptime >= 0 && ptime <= 120, 3, "ptime in ms, 0 to 120");
  if (sdpmap_parse_allow(sdp, len, allow, &m, err, sizeof err) < 0 ||
      media_session_start(ls->s, &m, (unsigned)ptime, err, sizeof err) < 0)
    return lsip_fail(L, err, "488");
  lua_pushboolean(L, 1);
  return 1;
}

static double field_num(lua_State *L, int idx, char const *k, double dflt)
{
  double v = dflt;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "tone: %s must be a number", k);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* session:tone{freqs = {440, 480}, cadence = {2000, 4000}, duration = ms,
 * level = dBm0} */
static int s_tone(lua_State *L)
{
  lsession *ls = check(L);
  tone_spec_t spec;
  double d;
  memset(&spec, 0, sizeof spec);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "freqs");
  luaL_argcheck(L, lua_istable(L, -1), 2, "freqs must be a list of 1 to 4 frequencies");
  spec.nfreqs = (int)lua_rawlen(L, -1);
  luaL_argcheck(L, spec.nfreqs >= 1 && spec.nfreqs <= TONE_MAX_FREQS, 2,
                "freqs must be a list of 1 to 4 frequencies");
  for (int i = 0; i < spec.nfreqs; i++) {
    lua_rawgeti(L, -1, i + 1);
    spec.freqs[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "cadence");
  if (lua_istable(L, -1)) {
    spec.nsteps = (int)lua_rawlen(L, -1);
    luaL_argcheck(L, spec.nsteps <= TONE_MAX_STEPS, 2, "cadence has at most 8 steps");
    for (int i = 0; i < spec.nsteps; i++) {
      lua_rawgeti(L, -1, i + 1);
      d = lua_tonumber(L, -1);
      luaL_argcheck(L, d >= 1 && d <= 600000, 2, "cadence steps are 1 to 600000 ms");
      spec.cadence[i] = (unsigned)d;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  d = field_num(L, 2, "duration", 0);
  luaL_argcheck(L, d >= 0 && d <= 86400000, 2, "duration is 0 to 86400000 ms");
  spec.duration_ms = (unsigned)d;
  spec.level_dbm0 = field_num(L, 2, "level", -13);
  luaL_argcheck(L, spec.level_dbm0 >= -60 && spec.level_dbm0 <= 3, 2, "level is -60 to 3 dBm0");
  if (media_session_play_tone(ls->s, &spec) < 0)
    return luaL_argerror(L, 2, "frequencies must lie between 0 and half the sample rate");
  lua_pushboolean(L, 1);
  return 1;
}

static int s_stop_play(lua_State *L)
{
  media_session_stop_play(check(L)->s);
  return 0;
}

/* session:record(path [, max_seconds [, silence_seconds]]) -> true, or nil, error */
/* session:play(path [, loop]) -> true, or nil, error */
static int s_play(lua_State *L)
{
  lsession *ls = check(L);
  char const *path = luaL_checkstring(L, 2);
  char err[300];
  if (media_session_play_file(ls->s, path, lua_toboolean(L, 3), err, sizeof err) < 0)
    return lsip_fail(L, err, "EIO");
  lua_pushboolean(L, 1);
  return 1;
}

/* core.media_timing([reset]) -> { ticks, interval_error_p99_ms, busy_p50_ms,
 * busy_p99_ms } (nil before the engine exists) */
static int l_media_timing(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  media_timing_t t;
  if (!ctx->media)
    return 0;
  t = media_engine_timing(ctx->media, lua_toboolean(L, 1));
  lua_createtable(L, 0, 4);
  SETNUM("ticks", t.ticks);
  SETNUM("interval_error_p99_ms", t.interval_error_p99_ms);
  SETNUM("busy_p50_ms", t.busy_p50_ms);
  SETNUM("busy_p99_ms", t.busy_p99_ms);
  SETNUM("send_error_p99_ms", t.send_error_p99_ms);
  return 1;
}

/* core.media_cache() -> { clips, referenced, bytes, hits, loads, encodings,
 * encoded, reused }: decoded files, and the encoded-prompt cache's packets
 * encoded and copied */
static int l_media_cache(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  clip_stats_t st;
  memset(&st, 0, sizeof st);
  if (ctx->media)
    st = media_engine_clip_stats(ctx->media);
  lua_createtable(L, 0, 8);
  SETNUM("clips", st.clips);
  SETNUM("referenced", st.referenced);
  SETNUM("bytes", st.bytes);
  SETNUM("hits", st.hits);
  SETNUM("loads", st.loads);
  SETNUM("encodings", st.encodings);
  SETNUM("encoded", st.encoded);
  SETNUM("reused", st.reused);
  return 1;
}

static void on_tts_done(void *arg, unsigned id, char const *path, char const *err)
{
  lsip_ctx *ctx = arg;
  lua_State *L = ctx->L;
  int top;
  if (ctx->closing || !ctx->tts_ref || !lua_checkstack(L, 6))
    return;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->tts_ref);
  lua_rawgeti(L, -1, (lua_Integer)id);
  lua_pushnil(L);
  lua_rawseti(L, -3, (lua_Integer)id);
  if (lua_isfunction(L, -1)) {
    if (path)
      lua_pushstring(L, path);
    else
      lua_pushnil(L);
    if (err)
      lua_pushstring(L, err);
    else
      lua_pushnil(L);
    lsip_pcall(ctx, 2, 0);
  }
  lua_settop(L, top);
}

/* core.tts(text, voice | nil, name, fn(path, err)) -> id, or nil, error:
 * speech synthesised off the loop into <tts folder>/<name>.wav */
static int l_tts(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  char const *text = luaL_checkstring(L, 1);
  char const *voice = luaL_optstring(L, 2, NULL);
  char const *name = luaL_checkstring(L, 3);
  char err[200];
  unsigned id;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  if (!ctx->tts) {
    ctx->tts = tts_create(ctx->loop, on_tts_done, ctx, err, sizeof err);
    if (!ctx->tts)
      return lsip_fail(L, err, "EIO");
  }
  if (!ctx->tts_ref) {
    lua_newtable(L);
    ctx->tts_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  id = tts_say(ctx->tts, text, voice, name, err, sizeof err);
  if (!id)
    return lsip_fail(L, err, "EINVAL");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->tts_ref);
  lua_pushvalue(L, 4);
  lua_rawseti(L, -2, (lua_Integer)id);
  lua_pop(L, 1);
  lua_pushinteger(L, id);
  return 1;
}

/* session:bridge(other) -> true, or nil, error; session:bridge(nil) ends it */
static int s_bridge(lua_State *L)
{
  lsession *ls = check(L);
  char err[160];
  if (lua_isnoneornil(L, 2)) {
    media_session_unbridge(ls->s);
    lua_pushboolean(L, 1);
    return 1;
  }
  lsession *other = luaL_checkudata(L, 2, SESSION_CLASS);
  if (!other->s)
    return luaL_error(L, "session:bridge: the other session is closed");
  if (media_session_bridge(ls->s, other->s, err, sizeof err) < 0)
    return lsip_fail(L, err, "EINVAL");
  lua_pushboolean(L, 1);
  return 1;
}

/* session:bridged() -> true when bridged (to anything), else false */
static int s_bridged(lua_State *L)
{
  lsession *ls = check(L);
  lua_pushboolean(L, media_session_bridged(ls->s) != NULL);
  return 1;
}

typedef struct {
  lsip_obj obj;
  media_conf_t *c;
} lconf;

static void conf_release(lsip_obj *o)
{
  lconf *lc = (lconf *)o;
  media_conf_destroy(lc->c);
  lc->c = NULL;
}

/* core.media_conference() -> a conference (closed when collected) */
static int l_media_conference(lua_State *L)
{
  lsip_ctx *ctx = lsip_ctx_of(L);
  lconf *lc;
  engine(L, ctx, PORT_MIN, PORT_MAX);
  lc = compat_newuserdata(L, sizeof *lc);
  memset(lc, 0, sizeof *lc);
  lc->c = media_conf_create(ctx->media);
  if (!lc->c)
    return lsip_fail(L, "out of memory", "ENOMEM");
  luaL_setmetatable(L, CONF_CLASS);
  lsip_obj_init(ctx, &lc->obj, LSIP_CONFS, conf_release);
  return 1;
}

static lconf *check_conf(lua_State *L)
{
  lconf *lc = luaL_checkudata(L, 1, CONF_CLASS);
  if (!lc->c)
    luaL_error(L, "luasip.media_conference: used after close()");
  return lc;
}

/* conf:join(session) -> true, or nil, error */
static int c_join(lua_State *L)
{
  lconf *lc = check_conf(L);
  lsession *ls = luaL_checkudata(L, 2, SESSION_CLASS);
  char err[160];
  if (!ls->s)
    return luaL_error(L, "conference:join: the session is closed");
  if (media_conf_join(lc->c, ls->s, err, sizeof err) < 0)
    return lsip_fail(L, err, "EINVAL");
  lua_pushboolean(L, 1);
  return 1;
}

static int c_leave(lua_State *L)
{
  lconf *lc = check_conf(L);
  lsession *ls = luaL_checkudata(L, 2, SESSION_CLASS);
  if (ls->s)
    media_conf_leave(lc->c, ls->s);
  return 0;
}

static int c_members(lua_State *L)
{
  lua_pushinteger(L, media_conf_members(check_conf(L)->c));
  return 1;
}

static int c_close(lua_State *L)
{
  lconf *lc = luaL_checkudata(L, 1, CONF_CLASS);
  lsip_obj_close(&lc->obj);
  return 0;
}

/* session:srtp(suite, local_key, remote_key) -> true, or nil, error;
 * session:srtp(nil): plain RTP */
static int s_srtp(lua_State *L)
{
  lsession *ls = check(L);
  char const *suite = luaL_optstring(L, 2, NULL);
  char const *lk = suite ? luaL_checkstring(L, 3) : NULL;
  char const *rk = suite ? luaL_checkstring(L, 4) : NULL;
  char err[160];
  if (media_session_srtp(ls->s, suite, lk, rk, err, sizeof err) < 0)
    return lsip_fail(L, err, "EINVAL");
  lua_pushboolean(L, 1);
  return 1;
}

/* core.srtp_key(suite) -> a fresh random base64 key, or nil, error */
static int l_srtp_key(lua_State *L)
{
  char b64[96];
  if (sdes_new_key(luaL_checkstring(L, 1), b64, sizeof b64) < 0)
    return lsip_fail(L, "unknown SRTP suite", "EINVAL");
  lua_pushstring(L, b64);
  return 1;
}

/* session:echo(on) */
static int s_echo(lua_State *L)
{
  lsession *ls = check(L);
  media_session_echo(ls->s, lua_isnoneornil(L, 2) || lua_toboolean(L, 2));
  return 0;
}

static int s_record(lua_State *L)
{
  lsession *ls = check(L);
  char const *path = luaL_checkstring(L, 2);
  lua_Number max = luaL_optnumber(L, 3, 0);
  lua_Number silence = luaL_optnumber(L, 4, 0);
  char err[300];
  luaL_argcheck(L, max >= 0 && max <= 86400, 3, "max_seconds from 0 (no limit) to 86400");
  luaL_argcheck(L, silence >= 0 && silence <= 3600, 4, "silence_seconds from 0 (off) to 3600");
  if (media_session_record(ls->s, path, (unsigned)(max * 1000), (unsigned)(silence * 1000), err,
                           sizeof err) < 0)
    return lsip_fail(L, err, "EIO");
  lua_pushboolean(L, 1);
  return 1;
}

/* session:stop_record([keep = true]) -> seconds, or nil, error */
static int s_stop_record(lua_State *L)
{
  lsession *ls = check(L);
  int keep = lua_isnone(L, 2) || lua_toboolean(L, 2);
  double seconds = 0;
  char err[300];
  if (media_session_stop_record(ls->s, keep, &seconds, err, sizeof err) < 0)
    return lsip_fail(L, err, "EIO");
  lua_pushnumber(L, seconds);
  return 1;
}

/* session:send_dtmf(digits [, ms [, inband]]) -> true, or nil, error */
static int s_send_dtmf(lua_State *L)
{
  lsession *ls = check(L);
  char const *digits = luaL_checkstring(L, 2);
  lua_Integer ms = luaL_optinteger(L, 3, 100);
  int inband = lua_toboolean(L, 4);
  luaL_argcheck(L, ms >= 40 && ms <= 5000, 3, "duration from 40 to 5000 ms");
  if (media_session_send_dtmf(ls->s, digits, (unsigned)ms, inband) < 0)
    return lsip_fail(L, inband ? "cannot send these digits in-band now (0-9 * # A-D, a running "
                                 "session, at most 64 queued, none going out as RFC 4733)"
                               : "cannot send these digits now (0-9 * # A-D, a running session "
                                 "that negotiated telephone-event, at most 64 queued, none "
                                 "going out in-band)",
                     "EINVAL");
  lua_pushboolean(L, 1);
  return 1;
}

/* session:detect_inband(mode): "auto" (while no telephone-event), true or
 * false */
static int s_detect_inband(lua_State *L)
{
  lsession *ls = check(L);
  int mode;
  if (lua_type(L, 2) == LUA_TSTRING && !strcmp(lua_tostring(L, 2), "auto"))
    mode = MEDIA_INBAND_AUTO;
  else if (lua_type(L, 2) == LUA_TBOOLEAN)
    mode = lua_toboolean(L, 2) ? MEDIA_INBAND_ON : MEDIA_INBAND_OFF;
  else
    return luaL_argerror(L, 2, "\"auto\", true or false");
  media_session_detect_inband(ls->s, mode);
  return 0;
}

static int s_stats(lua_State *L)
{
  media_stats_t st = media_session_stats(check(L)->s);
  lua_createtable(L, 0, 16);
  SETNUM("packets_sent", st.packets_sent);
  SETNUM("bytes_sent", st.bytes_sent);
  SETNUM("packets_received", st.packets_received);
  SETNUM("bytes_received", st.bytes_received);
  SETNUM("lost", st.lost);
  SETNUM("jitter_ms", st.jitter_ms);
  if (st.rtt_ms >= 0)
    SETNUM("rtt_ms", st.rtt_ms);
  if (st.remote_lost >= 0) {
    SETNUM("remote_lost", st.remote_lost);
    SETNUM("remote_jitter_ms", st.remote_jitter_ms);
  }
  SETNUM("rtcp_sent", st.rtcp_sent);
  SETNUM("rtcp_received", st.rtcp_received);
  SETNUM("malformed", st.malformed);
  SETNUM("unknown_pt", st.unknown_pt);
  SETNUM("late", st.late);
  SETNUM("concealed_ms", st.concealed_ms);
  SETNUM("recovered_ms", st.recovered_ms);
  SETNUM("srtp_auth_fail", st.srtp_auth_fail);
  SETNUM("srtp_replay", st.srtp_replay);
  lua_pushboolean(L, st.latched);
  lua_setfield(L, -2, "latched");
  return 1;
}

static int s_close(lua_State *L)
{
  lsession *ls = luaL_checkudata(L, 1, SESSION_CLASS);
  lsip_obj_close(&ls->obj);
  return 0;
}

static int s_tostring(lua_State *L)
{
  lsession *ls = luaL_checkudata(L, 1, SESSION_CLASS);
  if (!ls->s)
    lua_pushliteral(L, "luasip.media_session (closed)");
  else
    lua_pushfstring(L, "luasip.media_session (port %d, %s)", (int)media_session_port(ls->s),
                    media_session_codec(ls->s) ? media_session_codec(ls->s) : "not started");
  return 1;
}

/* core.sdp_map(sdp [, allow]) -> the first audio stream as the engine sees
 * it (codec chosen among allow, a comma list), or nil, error */
static int l_sdp_map(lua_State *L)
{
  size_t len;
  char const *sdp = luaL_checklstring(L, 1, &len);
  char const *allow = luaL_optstring(L, 2, NULL);
  sdpmap_t m;
  char err[160];
  if (sdpmap_parse_allow(sdp, len, allow, &m, err, sizeof err) < 0)
    return lsip_fail(L, err, "488");
  lua_createtable(L, 0, 16);
  lua_pushstring(L, m.addr);
  lua_setfield(L, -2, "addr");
  SETNUM("port", m.port);
  SETNUM("rtcp_port", m.rtcp_port);
  lua_pushboolean(L, m.rtcp_mux);
  lua_setfield(L, -2, "rtcp_mux");
  if (m.pt >= 0) {
    SETNUM("pt", m.pt);
    lua_pushstring(L, m.codec);
    lua_setfield(L, -2, "codec");
    SETNUM("rate", m.rate);
    SETNUM("channels", m.channels);
  }
  if (m.te_pt >= 0) {
    SETNUM("te_pt", m.te_pt);
    SETNUM("te_rate", m.te_rate);
  }
  if (m.ptime)
    SETNUM("ptime", m.ptime);
  lua_pushboolean(L, m.secure);
  lua_setfield(L, -2, "secure");
  lua_createtable(L, m.ncrypto, 0);
  for (int i = 0; i < m.ncrypto; i++) {
    lua_createtable(L, 0, 3);
    SETNUM("tag", m.crypto[i].tag);
    lua_pushstring(L, m.crypto[i].suite);
    lua_setfield(L, -2, "suite");
    lua_pushstring(L, m.crypto[i].key);
    lua_setfield(L, -2, "key");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "crypto");
  /* the peer's direction, as its a= line says it */
  lua_pushstring(L, m.sendrecv == 3 ? "sendrecv" : m.sendrecv == 1 ? "sendonly"
                    : m.sendrecv == 2 ? "recvonly" : "inactive");
  lua_setfield(L, -2, "direction");
  if (m.fmtp[0]) {
    lua_pushstring(L, m.fmtp);
    lua_setfield(L, -2, "fmtp");
  }
  SETNUM("audio", m.audio + 1);
  lua_createtable(L, m.nstreams, 0);
  for (int i = 0; i < m.nstreams; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, m.streams[i].media);
    lua_setfield(L, -2, "media");
    lua_pushstring(L, m.streams[i].proto);
    lua_setfield(L, -2, "proto");
    lua_pushstring(L, m.streams[i].fmt);
    lua_setfield(L, -2, "fmt");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "streams");
  return 1;
}

void lsip_open_media(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const methods[] = {
    { "port", s_port }, { "codec", s_codec }, { "start", s_start }, { "tone", s_tone },
    { "stop_play", s_stop_play }, { "srtp", s_srtp }, { "bridge", s_bridge }, { "bridged", s_bridged }, { "play", s_play }, { "echo", s_echo }, { "record", s_record }, { "stop_record", s_stop_record },
    { "send_dtmf", s_send_dtmf }, { "detect_inband", s_detect_inband }, { "stats", s_stats }, { "close", s_close }, { NULL, NULL }
  };
  static luaL_Reg const meta[] = { { "__gc", s_close }, { "__close", s_close },
                                   { "__tostring", s_tostring }, { NULL, NULL } };
  static luaL_Reg const funcs[] = { { "media_session", l_media_session },
                                    { "media_ports", l_media_ports },
                                    { "sdp_map", l_sdp_map },
                                    { "media_cache", l_media_cache },
                                    { "media_timing", l_media_timing },
                                    { "tts", l_tts },
                                    { "srtp_key", l_srtp_key },
                                    { "media_conference", l_media_conference },
                                    { NULL, NULL } };
  static luaL_Reg const conf_methods[] = { { "join", c_join }, { "leave", c_leave },
                                          { "members", c_members }, { "close", c_close },
                                          { NULL, NULL } };
  static luaL_Reg const conf_meta[] = { { "__gc", c_close }, { "__close", c_close },
                                        { NULL, NULL } };
  lsip_class(L, SESSION_CLASS, methods, meta);
  lsip_class(L, CONF_CLASS, conf_methods, conf_meta);
  lsip_setfuncs(L, ctx, funcs);
}

void lsip_close_media(lsip_ctx *ctx)
{
  tts_destroy(ctx->tts);
  ctx->tts = NULL;
  media_engine_destroy(ctx->media);
  ctx->media = NULL;
}
