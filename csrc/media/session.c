/* session.c — see session.h. */
#include "media/session.h"

#include "media/clip.h"
#include "media/codec.h"
#include "media/conf.h"
#include "media/jitter.h"
#include "media/recorder.h"
#include "media/rtp.h"
#include "media/sdes.h"

#include <sofia-sip/su_uniqueid.h>
#include <spandsp.h>
#include <speex/speex_resampler.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 20
/* Below this mean amplitude a frame is silence (about -45 dBFS). */
#define SILENCE_LEVEL 150
#define RTCP_TICKS (5000 / TICK_MS)
#define BATCH 16
#define MTU 1500
#define MAX_FRAME 2880 /* samples: 60 ms at 48 kHz */

#define TIMING_BUCKETS 500 /* 0.1 ms each, up to 50 ms */

struct media_engine {
  loop_t *loop;
  int tfd;               /* timerfd: the 20 ms tick, exact (sofia timers are not) */
  loop_watch_t *tick_watch;
  int ticking;
  unsigned port_min, port_max, next_port;
  media_session_t *sessions;
  int nsessions;
  int ndead;       /* destroyed and not yet freed (sweep) */
  int dispatching;
  uint64_t ticks;
  clip_cache_t *clips;   /* decoded files, shared by every session */
  media_conf_t *confs;   /* conferences, mixed at the start of each tick */
  /* tick timing, in 0.1 ms buckets: the interval's error from 20 ms, and
   * the time the tick's work took (how late its last session sends) */
  double last_tick;
  uint64_t err_hist[TIMING_BUCKETS], busy_hist[TIMING_BUCKETS], timed;
  uint64_t send_hist[TIMING_BUCKETS]; /* each packet's interval error */
  uint8_t rx[BATCH][MTU];
};

/* Decoded files kept cached when no session plays them. */
#define CLIP_BUDGET (64u << 20)

enum dtmf_state { DTMF_IDLE, DTMF_SENDING, DTMF_GAP };
enum { PLAY_NONE, PLAY_TONE, PLAY_CLIP };

struct media_session {
  media_engine_t *e;
  media_session_t *next;
  int dead;
  media_cb_t cb;
  void *arg;
  int fd, rtcp_fd;
  loop_watch_t *rtcp_watch; /* RTP is read by the tick, RTCP when it comes */
  unsigned port;
  int family;
  /* where we send */
  struct sockaddr_storage remote, remote_rtcp;
  socklen_t remote_len, remote_rtcp_len;
  int running, latched, rtcp_mux;
  int send_ok;            /* the peer receives (its a= direction) */
  double last_send;       /* when the last audio packet left (timing) */
  codec_t *codec;
  int pt, te_pt;
  unsigned te_rate;       /* telephone-event's clock (may differ from the codec's) */
  unsigned rate, frame, ptime_samples;
  /* sending */
  uint32_t ssrc;
  uint16_t seq;
  uint32_t ts;
  int marker;
  int16_t out[MAX_FRAME];
  unsigned nout;
  int playing;            /* PLAY_NONE, PLAY_TONE or PLAY_CLIP */
  media_session_t *peer;  /* bridged: the peer's audio is our source */
  SpeexResamplerState *peer_rs; /* the peer's rate to ours, when they differ */
  sdes_t *sec;            /* SRTP, when keyed */
  media_conf_t *conf;     /* a conference member: the mix is our source */
  int16_t const *feed;    /* the conference's mix for us */
  clip_t *clip;
  clip_enc_t *clip_enc;   /* the clip's packets for our codec (the prompt cache) */
  size_t clip_pos;
  int clip_loop;
  int echo;               /* the source is what we received a tick ago */
  tone_t tone;
  /* RFC 4733 sending */
  char dtmf_queue[65];
  unsigned dtmf_pos, dtmf_len, dtmf_samples, dtmf_elapsed, dtmf_gap;
  enum dtmf_state dtmf_state;
  uint32_t dtmf_ts;
  int dtmf_inband;        /* the queue goes out as tones in the audio */
  tone_t dtmf_tone;
  /* in-band DTMF detection */
  int inband_mode;        /* enum media_inband */
  dtmf_rx_state_t *dtmf_rx;
  SpeexResamplerState *rx_rs; /* our rate to the detector's 8 kHz */
  unsigned rx_rs_rate;
  char inband_digit;      /* the digit sounding now */
  uint64_t inband_at, inband_start; /* 8 kHz samples heard, and at its start */
  /* receiving */
  jitter_t jb;
  recorder_t *rec;
  uint64_t rec_max;
  uint64_t rec_silence, rec_quiet; /* samples: the silence that stops, heard so far */
  double rec_last;        /* seconds of the recording that ended itself, -1 none */
  int16_t in[MAX_FRAME];
  int ev_active, have_done;
  uint32_t ev_ts, done_ts;
  uint8_t ev_code;
  uint16_t ev_duration;
  uint64_t ev_tick;
  /* statistics (RFC 3550 A.1, A.3) */
  int have_seq;
  uint32_t remote_ssrc;
  uint16_t max_seq, base_seq;
  uint32_t cycles;
  uint64_t received, expected_prior, received_prior;
  media_stats_t st;
  uint32_t lsr;            /* middle of the last SR's NTP time */
  double lsr_at;           /* when it came (monotonic s) */
  uint64_t next_rtcp;
};

/* NTP time now: seconds since 1900 and fraction. */
static void ntp_now(uint32_t *sec, uint32_t *frac)
{
  struct timeval tv;
  gettimeofday(&tv, NULL);
  *sec = (uint32_t)tv.tv_sec + 2208988800u;
  *frac = (uint32_t)((double)tv.tv_usec * 4294.967296);
}

/* ---- the engine ---------------------------------------------------------- */

static void on_tick_fd(loop_watch_t *w, int revents, void *arg);
static void tick(media_engine_t *e);
static void pick_encoding(media_session_t *s);
static void detect_inband(media_session_t *s);

/* Start the periodic tick (a timerfd made now), or stop it (and close the
 * timerfd: an idle engine holds no descriptor). 0, or -1 when the timer
 * cannot be made. */
static int set_ticking(media_engine_t *e, int on)
{
  struct itimerspec its;
  if (!on) {
    loop_watch_destroy(e->tick_watch);
    if (e->tfd >= 0)
      close(e->tfd);
    e->tick_watch = NULL;
    e->tfd = -1;
    e->ticking = 0;
    return 0;
  }
  if (e->tfd < 0) {
    e->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (e->tfd < 0)
      return -1;
    e->tick_watch = loop_watch_create(e->loop, e->tfd, LOOP_READ | LOOP_QUIET, on_tick_fd, e);
    if (!e->tick_watch) {
      close(e->tfd);
      e->tfd = -1;
      return -1;
    }
  }
  memset(&its, 0, sizeof its);
  its.it_interval.tv_nsec = TICK_MS * 1000000L;
  its.it_value.tv_nsec = TICK_MS * 1000000L;
  timerfd_settime(e->tfd, 0, &its, NULL);
  e->ticking = 1;
  return 0;
}

media_engine_t *media_engine_create(loop_t *loop, unsigned port_min, unsigned port_max,
                                    char *err, size_t errlen)
{
  media_engine_t *e;
  port_min += port_min & 1; /* RTP on even ports */
  if (port_min < 1024 || port_max > 65535 || port_max < port_min + 1) {
    snprintf(err, errlen, "RTP port range %u-%u: need even..odd within 1024-65535", port_min,
             port_max);
    return NULL;
  }
  e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  e->loop = loop;
  e->port_min = port_min;
  e->port_max = port_max;
  e->next_port = port_min + 2 * (su_random() % ((port_max - port_min + 1) / 2));
  e->tfd = -1;
  e->clips = clip_cache_create(CLIP_BUDGET);
  if (!e->clips) {
    free(e);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return e;
}

int media_engine_destroy(media_engine_t *e)
{
  if (!e)
    return 0;
  if (e->nsessions)
    return -1;
  set_ticking(e, 0);
  clip_cache_destroy(e->clips);
  free(e);
  return 0;
}

int media_engine_sessions(media_engine_t const *e) { return e->nsessions; }

static void free_session(media_session_t *s)
{
  char err[128];
  if (s->rec)
    recorder_close(s->rec, 0, err, sizeof err);
  clip_release(s->clip);
  if (s->dtmf_rx)
    dtmf_rx_free(s->dtmf_rx);
  if (s->rx_rs)
    speex_resampler_destroy(s->rx_rs);
  sdes_destroy(s->sec);
  codec_destroy(s->codec);
  free(s);
}

/* Free the sessions destroyed while callbacks were running. */
static void sweep(media_engine_t *e)
{
  media_session_t **p = &e->sessions;
  if (e->dispatching || !e->ndead)
    return;
  e->ndead = 0;
  while (*p) {
    media_session_t *s = *p;
    if (s->dead) {
      *p = s->next;
      free_session(s);
    } else {
      p = &s->next;
    }
  }
}

/* ---- sockets ------------------------------------------------------------- */

static int bind_port(int family, char const *addr, unsigned port)
{
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  if (fd < 0)
    return -1;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, addr, &a->sin6_addr);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, addr, &a->sin_addr);
    len = sizeof *a;
  }
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void on_readable(loop_watch_t *w, int revents, void *arg);

media_session_t *media_session_create(media_engine_t *e, char const *addr,
                                      media_cb_t const *cb, void *arg, char *err, size_t errlen)
{
  media_session_t *s;
  struct in6_addr a6;
  struct in_addr a4;
  int family;
  unsigned tries, span = (e->port_max - e->port_min + 1) / 2;
  if (inet_pton(AF_INET, addr, &a4) == 1)
    family = AF_INET;
  else if (inet_pton(AF_INET6, addr, &a6) == 1)
    family = AF_INET6;
  else {
    snprintf(err, errlen, "media address must be a numeric IP address: %s", addr);
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->fd = s->rtcp_fd = -1;
  s->rec_last = -1;
  for (tries = 0; tries < span; tries++) {
    unsigned port = e->next_port;
    e->next_port += 2;
    if (e->next_port + 1 > e->port_max)
      e->next_port = e->port_min;
    s->fd = bind_port(family, addr, port);
    if (s->fd < 0)
      continue;
    s->rtcp_fd = bind_port(family, addr, port + 1);
    if (s->rtcp_fd < 0) {
      close(s->fd);
      s->fd = -1;
      continue;
    }
    s->port = port;
    break;
  }
  if (s->fd < 0) {
    snprintf(err, errlen, "no free RTP port in %u-%u", e->port_min, e->port_max);
    free(s);
    return NULL;
  }
  {
    int on = 1; /* arrival times for the jitter estimate, as RTP is read per tick */
    setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  }
  s->rtcp_watch = loop_watch_create(e->loop, s->rtcp_fd, LOOP_READ | LOOP_QUIET, on_readable, s);
  if (!s->rtcp_watch) {
    close(s->fd);
    close(s->rtcp_fd);
    free(s);
    snprintf(err, errlen, "cannot watch the RTP socket");
    return NULL;
  }
  s->e = e;
  s->family = family;
  if (cb)
    s->cb = *cb;
  s->arg = arg;
  s->ssrc = su_random();
  s->seq = (uint16_t)su_random();
  s->ts = su_random();
  s->pt = s->te_pt = -1;
  s->inband_mode = MEDIA_INBAND_AUTO;
  s->st.rtt_ms = -1;
  s->st.remote_lost = -1;
  s->next = e->sessions;
  e->sessions = s;
  e->nsessions++;
  return s;
}

unsigned media_session_port(media_session_t const *s) { return s->port; }
char const *media_session_codec(media_session_t const *s)
{
  return s->codec ? codec_name(s->codec) : NULL;
}

static int set_addr(media_session_t *s, struct sockaddr_storage *ss, socklen_t *len,
                    char const *addr, unsigned port)
{
  memset(ss, 0, sizeof *ss);
  if (s->family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1)
      return -1;
    *len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &a->sin_addr) != 1)
      return -1;
    *len = sizeof *a;
  }
  return 0;
}

int media_session_start(media_session_t *s, sdpmap_t const *r, unsigned ptime, char *err,
                        size_t errlen)
{
  codec_t *c;
  if (!r->port) {
    s->running = 0;
    return 0;
  }
  if (r->ipv6 != (s->family == AF_INET6)) {
    snprintf(err, errlen, "the peer's address family differs from ours");
    return -1;
  }
  if (r->pt < 0) {
    snprintf(err, errlen, "no codec in common");
    return -1;
  }
  if (!s->codec || strcasecmp(codec_name(s->codec), r->codec) || s->pt != r->pt) {
    c = codec_create(r->codec, r->rate, r->channels == 2 ? 1 : r->channels, r->fmtp);
    if (!c) {
      snprintf(err, errlen, "codec %s/%u not available", r->codec, r->rate);
      return -1;
    }
    codec_destroy(s->codec);
    s->codec = c;
    if (s->rate != codec_audio_rate(c) && s->playing == PLAY_CLIP)
      media_session_stop_play(s); /* decoded for the old rate */
    if (s->rate != codec_audio_rate(c))
      media_session_unbridge(s); /* its resampling was for the old rate */
    s->rate = codec_audio_rate(c);
    s->frame = s->rate * TICK_MS / 1000;
    jitter_init(&s->jb, codec_rtp_rate(c), s->frame, 300);
    if (codec_has_fec(c))
      jitter_set_lookahead(&s->jb, s->frame); /* 20 ms more, for FEC */
    s->nout = 0;
  }
  s->pt = r->pt;
  s->te_pt = r->te_pt;
  s->te_rate = r->te_rate ? r->te_rate : s->rate;
  if (!ptime)
    ptime = r->ptime ? r->ptime : 20;
  if (ptime != 10 && ptime != 20 && ptime != 30 && ptime != 40)
    ptime = 20;
  if (ptime < TICK_MS)
    ptime = TICK_MS; /* 10 ms is sent as 20: one packet per tick */
  if (ptime == 30 && !strcasecmp(r->codec, "opus"))
    ptime = 20; /* not an Opus frame size */
  s->ptime_samples = s->rate * ptime / 1000;
  pick_encoding(s);
  /* a re-INVITE to a new address un-latches */
  if (set_addr(s, &s->remote, &s->remote_len, r->addr, r->port) < 0 ||
      set_addr(s, &s->remote_rtcp, &s->remote_rtcp_len, r->addr, r->rtcp_port) < 0) {
    snprintf(err, errlen, "bad connection address %s", r->addr);
    return -1;
  }
  s->latched = 0;
  s->rtcp_mux = r->rtcp_mux;
  s->send_ok = (r->sendrecv & 2) != 0;
  if (!s->running) {
    s->marker = 1;
    s->next_rtcp = s->e->ticks + RTCP_TICKS / 2;
  }
  s->running = 1;
  if (!s->e->ticking && set_ticking(s->e, 1) < 0) {
    snprintf(err, errlen, "cannot start the media tick: %s", strerror(errno));
    s->running = 0;
    return -1;
  }
  return 0;
}

void media_session_destroy(media_session_t *s)
{
  media_engine_t *e;
  if (!s || s->dead)
    return;
  e = s->e;
  s->dead = 1;
  s->running = 0;
  media_session_unbridge(s);
  if (s->conf)
    media_conf_leave(s->conf, s);
  loop_watch_destroy(s->rtcp_watch);
  close(s->fd);
  close(s->rtcp_fd);
  e->nsessions--;
  e->ndead++;
  if (!e->nsessions)
    set_ticking(e, 0);
  sweep(e);
}

/* ---- sources and sinks --------------------------------------------------- */

int media_session_srtp(media_session_t *s, char const *suite, char const *local_key,
                       char const *remote_key, char *err, size_t errlen)
{
  sdes_t *sec = NULL;
  if (suite) {
    sec = sdes_create(suite, local_key, remote_key, err, errlen);
    if (!sec)
      return -1;
  }
  sdes_destroy(s->sec);
  s->sec = sec;
  return 0;
}

int media_session_bridge(media_session_t *a, media_session_t *b, char *err, size_t errlen)
{
  if (a == b || a->dead || b->dead) {
    snprintf(err, errlen, "cannot bridge a session with itself or a closed one");
    return -1;
  }
  if (!a->codec || !b->codec) {
    snprintf(err, errlen, "no media negotiated yet");
    return -1;
  }
  media_session_unbridge(a);
  media_session_unbridge(b);
  if (a->rate != b->rate) {
    int e1 = 0, e2 = 0;
    a->peer_rs = speex_resampler_init(1, b->rate, a->rate, 3, &e1);
    b->peer_rs = speex_resampler_init(1, a->rate, b->rate, 3, &e2);
    if (!a->peer_rs || !b->peer_rs) {
      snprintf(err, errlen, "cannot resample between %u and %u Hz", a->rate, b->rate);
      if (a->peer_rs)
        speex_resampler_destroy(a->peer_rs);
      if (b->peer_rs)
        speex_resampler_destroy(b->peer_rs);
      a->peer_rs = b->peer_rs = NULL;
      return -1;
    }
  }
  a->peer = b;
  b->peer = a;
  return 0;
}

static void drop_resampler(media_session_t *s)
{
  if (s->peer_rs)
    speex_resampler_destroy(s->peer_rs);
  s->peer_rs = NULL;
}

void media_session_unbridge(media_session_t *s)
{
  if (s->peer) {
    drop_resampler(s->peer);
    s->peer->peer = NULL;
    s->peer = NULL;
  }
  drop_resampler(s);
}

/* The bridged peer's last frame, at our rate. */
static void from_peer(media_session_t *s, int16_t *frame, unsigned n)
{
  media_session_t *p = s->peer;
  spx_uint32_t in_len = p->frame, out_len = n;
  if (!s->peer_rs) {
    if (p->frame == n)
      memcpy(frame, p->in, n * sizeof *frame);
    else
      memset(frame, 0, n * sizeof *frame);
    return;
  }
  speex_resampler_process_int(s->peer_rs, 0, p->in, &in_len, frame, &out_len);
  if (out_len < n)
    memset(frame + out_len, 0, (n - out_len) * sizeof *frame);
}

media_session_t *media_session_bridged(media_session_t const *s) { return s->peer; }

/* For conf.c: the frame last played out, its size and rate. */
int16_t const *media_session_heard(media_session_t const *s, unsigned *frame, unsigned *rate)
{
  *frame = s->codec && s->running ? s->frame : 0;
  *rate = s->rate;
  return s->in;
}

void media_session_set_conf(media_session_t *s, media_conf_t *c, int16_t const *feed)
{
  s->conf = c;
  s->feed = feed;
}

media_conf_t **media_engine_confs(media_engine_t *e) { return &e->confs; }
unsigned media_session_rate(media_session_t const *s) { return s->codec ? s->rate : 0; }

int media_session_play_tone(media_session_t *s, tone_spec_t const *spec)
{
  tone_t t;
  if (tone_init(&t, spec, s->rate ? s->rate : 8000) < 0)
    return -1;
  media_session_stop_play(s);
  s->tone = t;
  s->playing = PLAY_TONE;
  s->echo = 0;
  return 0;
}

void media_session_stop_play(media_session_t *s)
{
  s->playing = PLAY_NONE;
  clip_release(s->clip);
  s->clip = NULL;
  s->clip_enc = NULL;
}

/* The clip's shared encoding, when our packets are one tick long (other
 * packet sizes encode live). */
static void pick_encoding(media_session_t *s)
{
  s->clip_enc = s->clip && s->codec && s->ptime_samples == s->frame
                    ? clip_encoding(s->clip, s->codec, s->frame)
                    : NULL;
}

int media_session_play_file(media_session_t *s, char const *path, int loop, char *err,
                            size_t errlen)
{
  clip_t *k;
  if (!s->codec) {
    snprintf(err, errlen, "no media negotiated yet");
    return -1;
  }
  k = clip_get(s->e->clips, path, s->rate, err, errlen);
  if (!k)
    return -1;
  media_session_stop_play(s);
  s->echo = 0;
  s->clip = k;
  s->clip_pos = 0;
  s->clip_loop = loop;
  s->playing = PLAY_CLIP;
  pick_encoding(s);
  return 0;
}

clip_stats_t media_engine_clip_stats(media_engine_t const *e) { return clip_cache_stats(e->clips); }

/* Fill frame[0..n) from the clip; 1 when it ended (the rest is silence). */
static int clip_fill(media_session_t *s, int16_t *frame, unsigned n)
{
  size_t total, got = 0;
  int16_t const *pcm = clip_samples(s->clip, &total);
  while (got < n) {
    size_t take = total - s->clip_pos;
    if (!take) {
      if (!s->clip_loop || !total)
        break;
      s->clip_pos = 0;
      continue;
    }
    if (take > n - got)
      take = n - got;
    memcpy(frame + got, pcm + s->clip_pos, take * sizeof *frame);
    s->clip_pos += take;
    got += take;
  }
  if (got < n) {
    memset(frame + got, 0, (n - got) * sizeof *frame);
    return 1;
  }
  return 0;
}

void media_session_detect_inband(media_session_t *s, int mode)
{
  if (mode >= MEDIA_INBAND_OFF && mode <= MEDIA_INBAND_AUTO)
    s->inband_mode = mode;
}

void media_session_echo(media_session_t *s, int on)
{
  s->echo = on != 0;
  if (on)
    media_session_stop_play(s);
}

int media_session_record(media_session_t *s, char const *path, unsigned max_ms,
                         unsigned silence_ms, char *err, size_t errlen)
{
  recorder_t *r;
  if (!s->codec) {
    snprintf(err, errlen, "no media negotiated yet");
    return -1;
  }
  if (s->rec) {
    snprintf(err, errlen, "already recording");
    return -1;
  }
  r = recorder_open(path, s->rate, err, errlen);
  if (!r)
    return -1;
  s->rec = r;
  s->rec_max = max_ms ? (uint64_t)max_ms * s->rate / 1000 : 0;
  s->rec_silence = silence_ms ? (uint64_t)silence_ms * s->rate / 1000 : 0;
  s->rec_quiet = 0;
  s->rec_last = -1;
  return 0;
}

int media_session_stop_record(media_session_t *s, int keep, double *seconds, char *err,
                              size_t errlen)
{
  recorder_t *r = s->rec;
  if (!r && s->rec_last >= 0) {
    /* it finished by itself (maximum, silence): its length */
    if (seconds)
      *seconds = s->rec_last;
    s->rec_last = -1;
    return 0;
  }
  if (!r) {
    snprintf(err, errlen, "not recording");
    return -1;
  }
  s->rec = NULL;
  if (seconds)
    *seconds = s->rate ? (double)recorder_samples(r) / s->rate : 0;
  return recorder_close(r, keep, err, errlen);
}

int media_session_send_dtmf(media_session_t *s, char const *digits, unsigned duration_ms,
                            int inband)
{
  size_t n = strlen(digits), have = s->dtmf_len - s->dtmf_pos;
  inband = inband != 0;
  if ((!inband && s->te_pt < 0) || !s->running || !s->codec)
    return -1;
  if ((have || s->dtmf_state != DTMF_IDLE) && s->dtmf_inband != inband)
    return -1; /* the queue is going out the other way */
  if (have + n > sizeof s->dtmf_queue - 1)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (rtp_event_code(digits[i]) < 0)
      return -1;
  memmove(s->dtmf_queue, s->dtmf_queue + s->dtmf_pos, have);
  memcpy(s->dtmf_queue + have, digits, n);
  s->dtmf_pos = 0;
  s->dtmf_len = (unsigned)(have + n);
  s->dtmf_inband = inband;
  s->dtmf_samples = s->rate * (duration_ms >= 40 && duration_ms <= 5000 ? duration_ms : 100) / 1000;
  return 0;
}

media_stats_t media_session_stats(media_session_t const *s)
{
  media_stats_t st = s->st;
  st.jitter_ms = jitter_ms(&s->jb);
  st.late = s->jb.late;
  st.concealed_ms = s->rate ? s->jb.concealed * 1000 / s->rate : 0;
  st.recovered_ms = s->rate ? s->jb.recovered * 1000 / s->rate : 0;
  st.latched = s->latched;
  if (s->have_seq) {
    uint64_t expected = (uint64_t)s->cycles + s->max_seq - s->base_seq + 1;
    st.lost = (int64_t)expected - (int64_t)s->received;
  }
  return st;
}

/* ---- sending ------------------------------------------------------------- */

static void send_rtp(media_session_t *s, int marker, int pt, uint32_t ts, uint8_t const *payload,
                     size_t len)
{
  uint8_t pkt[RTP_HEADER_LEN + MTU + SDES_TRAILER];
  int n = (int)(RTP_HEADER_LEN + len);
  if (len > MTU || !s->send_ok)
    return;
  rtp_write_header(pkt, marker, (unsigned)pt, s->seq++, ts, s->ssrc);
  memcpy(pkt + RTP_HEADER_LEN, payload, len);
  if (s->sec && sdes_protect(s->sec, pkt, &n, 0) != SDES_OK)
    return;
  if (sendto(s->fd, pkt, (size_t)n, 0, (struct sockaddr *)&s->remote, s->remote_len) >= 0) {
    s->st.packets_sent++;
    s->st.bytes_sent += len;
  }
}

/* Send one audio packet of `samples` samples starting at ts, and time its
 * interval from the previous one. */
static void send_payload(media_session_t *s, uint8_t const *payload, size_t len, uint32_t ts,
                         unsigned samples)
{
  double now = loop_now();
  send_rtp(s, s->marker, s->pt, ts, payload, len);
  if (s->last_send > 0 && now - s->last_send < 1.0) {
    /* how far this packet's interval is from its ptime */
    double err = (now - s->last_send) * 1000.0 - samples * 1000.0 / s->rate;
    unsigned b = (unsigned)((err < 0 ? -err : err) * 10.0);
    s->e->send_hist[b < TIMING_BUCKETS ? b : TIMING_BUCKETS - 1]++;
  }
  s->last_send = now;
  s->marker = 0;
}

static void send_audio(media_session_t *s, int16_t const *pcm, unsigned n)
{
  uint8_t payload[MTU];
  memcpy(s->out + s->nout, pcm, n * sizeof *pcm);
  s->nout += n;
  if (s->nout < s->ptime_samples)
    return;
  int len = codec_encode(s->codec, s->out, (int)s->nout, payload, sizeof payload);
  if (len > 0)
    send_payload(s, payload, (size_t)len, s->ts - (s->nout - n), s->nout);
  s->marker = 0;
  s->nout = 0;
}

/* Send the clip's next packet from its shared encoding: 1 when the clip
 * ended, 0 when it goes on, -1 when there is no packet (play it live). */
static int clip_send(media_session_t *s)
{
  size_t len, i = s->clip_pos / s->frame;
  uint8_t const *p = clip_packet(s->clip_enc, i, &len);
  if (!p) {
    s->clip_enc = NULL;
    return -1;
  }
  send_payload(s, p, len, s->ts, s->frame);
  s->clip_pos = (i + 1) * s->frame;
  if (i + 1 < clip_enc_packets(s->clip_enc))
    return 0;
  if (!s->clip_loop)
    return 1;
  s->clip_pos = 0; /* a loop restarts on a packet boundary */
  return 0;
}

/* The two frequencies of a digit (ITU-T Q.23). */
static int dtmf_freqs(char c, double *lo, double *hi)
{
  static char const keys[] = "123A456B789C*0#D";
  static double const rows[] = { 697, 770, 852, 941 }, cols[] = { 1209, 1336, 1477, 1633 };
  char const *k = c ? strchr(keys, c) : NULL;
  if (!k)
    return -1;
  *lo = rows[(k - keys) / 4];
  *hi = cols[(k - keys) % 4];
  return 0;
}

/* A digit went out: a gap of `ticks` follows it. */
static void digit_done(media_session_t *s, unsigned ticks)
{
  s->dtmf_pos++;
  s->dtmf_state = DTMF_GAP;
  s->dtmf_gap = ticks;
}

/* One tick of the gap after a digit; at its end, the next digit, or the
 * queue is all sent. */
static void gap_tick(media_session_t *s)
{
  if (--s->dtmf_gap)
    return;
  s->dtmf_state = DTMF_IDLE;
  if (s->dtmf_pos >= s->dtmf_len) {
    s->dtmf_pos = s->dtmf_len = 0;
    if (s->cb.event)
      s->cb.event(s->arg, MEDIA_DTMF_SENT, NULL);
  }
}

/* One tick of in-band DTMF: a digit's tones, then as long a pause (what a
 * detector needs to tell two equal digits apart), both in frame. */
static int inband_tick(media_session_t *s, int16_t *frame)
{
  unsigned n = s->frame;
  int got = 0;
  if (s->dtmf_state == DTMF_SENDING) {
    got = tone_generate(&s->dtmf_tone, frame, (int)n);
    s->dtmf_elapsed += n;
    if ((unsigned)got < n || s->dtmf_elapsed >= s->dtmf_samples)
      digit_done(s, (s->dtmf_samples + n - 1) / n);
  } else {
    gap_tick(s);
  }
  if ((unsigned)got < n)
    memset(frame + got, 0, (n - (unsigned)got) * sizeof *frame);
  return 2;
}

/* One tick of DTMF sending: 0 when no digit occupies the stream, 1 when an
 * RFC 4733 event packet went out instead of audio, 2 when frame holds the
 * in-band audio to send. */
static int dtmf_tick(media_session_t *s, int16_t *frame)
{
  uint8_t p[4];
  rtp_event_t ev;
  if (s->dtmf_state == DTMF_IDLE) {
    if (s->dtmf_pos >= s->dtmf_len)
      return 0;
    s->dtmf_state = DTMF_SENDING;
    s->dtmf_ts = s->ts;
    s->dtmf_elapsed = 0;
    if (s->dtmf_inband) {
      tone_spec_t spec;
      memset(&spec, 0, sizeof spec);
      dtmf_freqs(s->dtmf_queue[s->dtmf_pos], &spec.freqs[0], &spec.freqs[1]);
      spec.nfreqs = 2;
      spec.duration_ms = s->dtmf_samples * 1000 / s->rate;
      spec.level_dbm0 = -7; /* per frequency: well above detectors' floors */
      if (tone_init(&s->dtmf_tone, &spec, s->rate) < 0)
        s->dtmf_samples = 0; /* cannot happen for these frequencies */
    } else {
      s->nout = 0;
    }
  }
  if (s->dtmf_inband)
    return inband_tick(s, frame);
  if (s->dtmf_state == DTMF_GAP) {
    gap_tick(s);
    return 0;
  }
  s->dtmf_elapsed += s->frame;
  ev.event = (uint8_t)rtp_event_code(s->dtmf_queue[s->dtmf_pos]);
  ev.volume = 10;
  {
    /* in telephone-event clock units (8 kHz events beside 48 kHz Opus) */
    uint64_t d = (uint64_t)s->dtmf_elapsed * s->te_rate / s->rate;
    ev.duration = (uint16_t)(d > 65535 ? 65535 : d);
  }
  ev.end = s->dtmf_elapsed >= s->dtmf_samples;
  rtp_event_write(p, &ev);
  /* the end packet goes out three times (RFC 4733 §2.5.1.4) */
  for (int i = 0; i < (ev.end ? 3 : 1); i++)
    send_rtp(s, s->dtmf_elapsed == s->frame, s->te_pt, s->dtmf_ts, p, 4);
  if (ev.end)
    digit_done(s, 3); /* 60 ms between digits */
  return 1;
}

static void send_rtcp(media_session_t *s)
{
  uint8_t buf[256 + SDES_TRAILER];
  rtcp_sender_info_t si;
  rtcp_report_t rr;
  int nrr = 0;
  size_t len;
  if (s->st.packets_sent) {
    ntp_now(&si.ntp_sec, &si.ntp_frac);
    si.rtp_ts = s->ts;
    si.packets = (uint32_t)s->st.packets_sent;
    si.octets = (uint32_t)s->st.bytes_sent;
  }
  if (s->have_seq) {
    uint64_t expected = (uint64_t)s->cycles + s->max_seq - s->base_seq + 1;
    uint64_t exp_int = expected - s->expected_prior, rec_int = s->received - s->received_prior;
    int64_t lost_int = (int64_t)exp_int - (int64_t)rec_int;
    memset(&rr, 0, sizeof rr);
    rr.ssrc = s->remote_ssrc;
    rr.fraction_lost = exp_int && lost_int > 0 ? (uint8_t)((lost_int << 8) / (int64_t)exp_int) : 0;
    rr.cumulative_lost = (int32_t)((int64_t)expected - (int64_t)s->received);
    rr.highest_seq = s->cycles + s->max_seq;
    rr.jitter = (uint32_t)s->jb.jitter;
    rr.lsr = s->lsr;
    if (s->lsr)
      rr.dlsr = (uint32_t)((loop_now() - s->lsr_at) * 65536.0);
    s->expected_prior = expected;
    s->received_prior = s->received;
    nrr = 1;
  }
  len = rtcp_write(buf, 256, s->ssrc, s->st.packets_sent ? &si : NULL, &rr, nrr, "luasip");
  if (!len)
    return;
  if (s->sec) {
    int n = (int)len;
    if (sdes_protect(s->sec, buf, &n, 1) != SDES_OK)
      return;
    len = (size_t)n;
  }
  if ((s->rtcp_mux ? sendto(s->fd, buf, len, 0, (struct sockaddr *)&s->remote, s->remote_len)
                   : sendto(s->rtcp_fd, buf, len, 0, (struct sockaddr *)&s->remote_rtcp,
                            s->remote_rtcp_len)) >= 0)
    s->st.rtcp_sent++;
}

/* ---- receiving ----------------------------------------------------------- */

static void report_event(media_session_t *s)
{
  char c = rtp_event_char(s->ev_code);
  s->ev_active = 0;
  s->have_done = 1;
  s->done_ts = s->ev_ts;
  if (c && s->cb.dtmf)
    s->cb.dtmf(s->arg, c, s->te_rate ? (unsigned)((uint64_t)s->ev_duration * 1000 / s->te_rate) : 0,
               MEDIA_DTMF_RFC4733);
}

static void on_event_packet(media_session_t *s, rtp_header_t const *h, uint8_t const *p)
{
  rtp_event_t ev;
  if (rtp_event_parse(p + h->payload_off, h->payload_len, &ev) < 0) {
    s->st.malformed++;
    return;
  }
  if (s->have_done && h->ts == s->done_ts)
    return; /* the repeated end packets, or a late one */
  if (s->ev_active && h->ts != s->ev_ts)
    report_event(s); /* the last one's end packets were all lost */
  if (!s->ev_active) {
    s->ev_active = 1;
    s->ev_ts = h->ts;
  }
  s->ev_code = ev.event;
  if (ev.duration > s->ev_duration || s->ev_ts == h->ts)
    s->ev_duration = ev.duration;
  s->ev_tick = s->e->ticks;
  if (ev.end)
    report_event(s);
}

static void count_seq(media_session_t *s, rtp_header_t const *h)
{
  if (!s->have_seq || h->ssrc != s->remote_ssrc) {
    s->have_seq = 1;
    s->remote_ssrc = h->ssrc;
    s->base_seq = s->max_seq = h->seq;
    s->cycles = 0;
    s->received = 0;
    s->expected_prior = s->received_prior = 0;
  } else {
    uint16_t delta = (uint16_t)(h->seq - s->max_seq);
    if (delta < 3000) { /* in order, with a permissible gap */
      if (h->seq < s->max_seq)
        s->cycles += 65536;
      s->max_seq = h->seq;
    }
  }
  s->received++;
}

static void on_rtcp_packet(void *arg, rtcp_packet_t const *pkt)
{
  media_session_t *s = arg;
  if (pkt->type == RTCP_SR) {
    s->lsr = (pkt->ntp_sec << 16) | (pkt->ntp_frac >> 16);
    s->lsr_at = loop_now();
  }
  for (int i = 0; i < pkt->nreports; i++) {
    rtcp_report_t const *r = &pkt->reports[i];
    if (r->ssrc != s->ssrc)
      continue;
    s->st.remote_lost = r->cumulative_lost;
    s->st.remote_jitter_ms = s->rate ? r->jitter * 1000.0 / s->rate : 0;
    if (r->lsr) {
      uint32_t sec, frac, now;
      ntp_now(&sec, &frac);
      now = (sec << 16) | (frac >> 16);
      s->st.rtt_ms = (double)(int32_t)(now - r->lsr - r->dlsr) * 1000.0 / 65536.0;
      if (s->st.rtt_ms < 0)
        s->st.rtt_ms = 0;
    }
  }
}

static void on_datagram(media_session_t *s, uint8_t *p, size_t len,
                        struct sockaddr_storage const *from, socklen_t fromlen, int rtcp_socket,
                        double arrival)
{
  rtp_header_t h;
  int is_rtcp;
  if (!s->running || !s->codec)
    return;
  is_rtcp = rtcp_socket || rtp_is_rtcp(p, len);
  if (s->sec) {
    int n = (int)len, rc;
    if (len < 12 || len > MTU) {
      s->st.malformed++;
      return;
    }
    rc = sdes_unprotect(s->sec, p, &n, is_rtcp);
    if (rc == SDES_AUTH) {
      s->st.srtp_auth_fail++;
      return;
    }
    if (rc == SDES_REPLAY) {
      s->st.srtp_replay++;
      return;
    }
    if (rc != SDES_OK) {
      s->st.malformed++;
      return;
    }
    len = (size_t)n;
  }
  if (is_rtcp) {
    if (rtcp_parse(p, len, on_rtcp_packet, s) < 0)
      s->st.malformed++;
    else
      s->st.rtcp_received++;
    return;
  }
  if (rtp_parse(p, len, &h) < 0) {
    s->st.malformed++;
    return;
  }
  if (h.pt != s->pt && h.pt != s->te_pt) {
    s->st.unknown_pt++;
    return;
  }
  /* symmetric RTP: the first packet's source is where the peer really is */
  if (!s->latched) {
    s->latched = 1;
    if (fromlen != s->remote_len || memcmp(from, &s->remote, fromlen)) {
      memcpy(&s->remote, from, fromlen);
      s->remote_len = fromlen;
    }
  }
  s->st.packets_received++;
  s->st.bytes_received += h.payload_len;
  count_seq(s, &h);
  if ((int)h.pt == s->te_pt) {
    on_event_packet(s, &h, p);
    return;
  }
  jitter_put(&s->jb, h.seq, h.ts, p + h.payload_off, h.payload_len,
             (uint32_t)(uint64_t)(arrival * codec_rtp_rate(s->codec)));
}

/* When a datagram arrived, on loop_now()'s clock: the kernel's receive
 * timestamp (SO_TIMESTAMPNS, wall clock) moved to the monotonic one; the
 * read time when there is none. */
static double arrival_of(struct msghdr const *m, double mono_now, double real_now)
{
  for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c;
       c = CMSG_NXTHDR((struct msghdr *)m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      double ago = real_now - ((double)ts.tv_sec + ts.tv_nsec / 1e9);
      return ago >= 0 && ago < 1.0 ? mono_now - ago : mono_now;
    }
  return mono_now;
}

/* Read what the socket has (bounded: at most 4 batches) and handle it. */
static void receive(media_session_t *s, int fd, int rtcp_socket)
{
  media_engine_t *e = s->e;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage from[BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(struct timespec))];
    struct cmsghdr align;
  } ctl[BATCH];
  for (int round = 0; round < 4 && !s->dead; round++) {
    int n;
    struct timespec rt;
    double mono;
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = e->rx[i];
      iov[i].iov_len = MTU;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      msgs[i].msg_hdr.msg_control = ctl[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
    }
    n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
      break;
    mono = loop_now();
    clock_gettime(CLOCK_REALTIME, &rt);
    for (int i = 0; i < n && !s->dead; i++)
      on_datagram(s, e->rx[i], msgs[i].msg_len, &from[i], msgs[i].msg_hdr.msg_namelen,
                  rtcp_socket,
                  arrival_of(&msgs[i].msg_hdr, mono, (double)rt.tv_sec + rt.tv_nsec / 1e9));
    if (n < BATCH)
      break;
  }
}

/* RTCP sockets are watched on the loop (their packets are rare); RTP
 * sockets are read once per tick instead, between sending and playing
 * out: one recvmmsg per session and tick, no wakeup per packet. */
static void on_readable(loop_watch_t *w, int revents, void *arg)
{
  media_session_t *s = arg;
  media_engine_t *e = s->e;
  (void)revents;
  e->dispatching++;
  receive(s, loop_watch_fd(w), 1);
  e->dispatching--;
  sweep(e);
}

static double percentile(uint64_t const *hist, uint64_t total, double p)
{
  uint64_t want = (uint64_t)(total * p), seen = 0;
  for (unsigned i = 0; i < TIMING_BUCKETS; i++) {
    seen += hist[i];
    if (seen > want)
      return (i + 1) / 10.0;
  }
  return TIMING_BUCKETS / 10.0;
}

/* The timerfd fired: one tick, or a few more when the loop was held up
 * (the media clock keeps its pace; beyond 5 missed ticks they are lost). */
static void on_tick_fd(loop_watch_t *w, int revents, void *arg)
{
  media_engine_t *e = arg;
  uint64_t n = 0;
  (void)w, (void)revents;
  if (read(e->tfd, &n, sizeof n) != sizeof n || !n)
    return;
  if (n > 5)
    n = 5;
  while (n-- && e->ticking)
    tick(e);
}

media_timing_t media_engine_timing(media_engine_t *e, int reset)
{
  media_timing_t t = { e->ticks, 0, 0, 0, 0 };
  uint64_t busy = 0, sends = 0;
  for (unsigned i = 0; i < TIMING_BUCKETS; i++)
    busy += e->busy_hist[i], sends += e->send_hist[i];
  if (sends)
    t.send_error_p99_ms = percentile(e->send_hist, sends, 0.99);
  if (e->timed)
    t.interval_error_p99_ms = percentile(e->err_hist, e->timed, 0.99);
  if (busy) {
    t.busy_p99_ms = percentile(e->busy_hist, busy, 0.99);
    t.busy_p50_ms = percentile(e->busy_hist, busy, 0.50);
  }
  if (reset) {
    memset(e->err_hist, 0, sizeof e->err_hist);
    memset(e->busy_hist, 0, sizeof e->busy_hist);
    memset(e->send_hist, 0, sizeof e->send_hist);
    e->timed = 0;
  }
  return t;
}

/* ---- the tick ------------------------------------------------------------ */

/* Mean absolute amplitude of a frame (a cheap energy measure). */
static unsigned frame_energy(int16_t const *pcm, unsigned n)
{
  uint64_t sum = 0;
  for (unsigned i = 0; i < n; i++)
    sum += (unsigned)(pcm[i] < 0 ? -(int)pcm[i] : pcm[i]);
  return n ? (unsigned)(sum / n) : 0;
}

/* spandsp's detector, as a digit starts (code) and ends (0): reported at
 * its end with its length, as RFC 4733 events are. */
static void on_inband(void *arg, int code, int level, int delay)
{
  media_session_t *s = arg;
  (void)level, (void)delay;
  if (code) {
    s->inband_digit = (char)code;
    s->inband_start = s->inband_at;
  } else if (s->inband_digit) {
    char c = s->inband_digit;
    s->inband_digit = 0;
    if (s->cb.dtmf)
      s->cb.dtmf(s->arg, c, (unsigned)((s->inband_at - s->inband_start) / 8), MEDIA_DTMF_INBAND);
  }
}

/* Listen for DTMF in what was just played out (at 8 kHz, resampled when the
 * codec runs at another rate). */
static void detect_inband(media_session_t *s)
{
  int16_t buf[MAX_FRAME];
  int16_t const *pcm = s->in;
  spx_uint32_t n = s->frame;
  if (!s->dtmf_rx) {
    s->dtmf_rx = dtmf_rx_init(NULL, NULL, NULL);
    if (!s->dtmf_rx)
      return;
    dtmf_rx_set_realtime_callback(s->dtmf_rx, on_inband, s);
  }
  if (s->rate != 8000) {
    spx_uint32_t in_len = s->frame;
    if (s->rx_rs && s->rx_rs_rate != s->rate) {
      speex_resampler_destroy(s->rx_rs);
      s->rx_rs = NULL;
    }
    if (!s->rx_rs) {
      int err = 0;
      s->rx_rs = speex_resampler_init(1, s->rate, 8000, 3, &err);
      if (!s->rx_rs)
        return;
      s->rx_rs_rate = s->rate;
    }
    n = MAX_FRAME;
    speex_resampler_process_int(s->rx_rs, 0, s->in, &in_len, buf, &n);
    pcm = buf;
  }
  s->inband_at += n;
  dtmf_rx(s->dtmf_rx, pcm, (int)n);
}

/* A tick in two passes over the sessions: first every session sends (so a
 * packet leaves as early in the tick as it can, whatever the others'
 * work), then every session plays out what it received into its sinks. */
static void session_send(media_session_t *s)
{
  int16_t frame[MAX_FRAME];
  unsigned n = s->frame;
  /* a received event whose end never came */
  if (s->ev_active && s->e->ticks - s->ev_tick > 500 / TICK_MS)
    report_event(s);
  if (s->dead)
    return;
  int dt = dtmf_tick(s, frame);
  if (dt == 2) {
    send_audio(s, frame, n); /* in-band digits: the source waits */
  } else if (!dt) {
    int done = 0, sent = 0;
    if (s->playing == PLAY_TONE) {
      int got = tone_generate(&s->tone, frame, (int)n);
      if ((unsigned)got < n) {
        memset(frame + got, 0, (n - (unsigned)got) * sizeof *frame);
        s->playing = PLAY_NONE;
        done = 1;
      }
    } else if (s->playing == PLAY_CLIP) {
      int r = s->clip_enc ? clip_send(s) : -1;
      if (r >= 0)
        sent = 1, done = r;
      else
        done = clip_fill(s, frame, n);
      if (done)
        media_session_stop_play(s);
    } else if (s->echo) {
      memcpy(frame, s->in, n * sizeof *frame);
    } else if (s->peer) {
      from_peer(s, frame, n);
    } else if (s->feed) {
      memcpy(frame, s->feed, n * sizeof *frame);
    } else {
      memset(frame, 0, n * sizeof *frame);
    }
    if (!sent)
      send_audio(s, frame, n);
    if (done && s->cb.event)
      s->cb.event(s->arg, MEDIA_PLAY_DONE, NULL);
  }
  s->ts += n;
}

static void session_play(media_session_t *s)
{
  unsigned n = s->frame;
  /* play out what was received: decoded only when something listens (a
   * recording, echo, a bridge, a conference, the in-band DTMF detector) */
  int inband = s->inband_mode == MEDIA_INBAND_ON ||
               (s->inband_mode == MEDIA_INBAND_AUTO && s->te_pt < 0);
  int listened = s->rec || s->echo || s->peer || s->conf || inband;
  jitter_get(&s->jb, listened ? s->codec : NULL, s->in);
  if (inband) {
    detect_inband(s);
    if (s->dead)
      return;
  }
  if (s->rec) {
    char err[256];
    int failed = recorder_write(s->rec, s->in, (int)n) < 0;
    int quiet = 0;
    if (s->rec_silence) {
      s->rec_quiet = frame_energy(s->in, n) < SILENCE_LEVEL ? s->rec_quiet + n : 0;
      quiet = s->rec_quiet >= s->rec_silence;
    }
    if (failed || quiet || (s->rec_max && recorder_samples(s->rec) >= s->rec_max)) {
      recorder_t *r = s->rec;
      int rc;
      s->rec = NULL;
      s->rec_last = s->rate ? (double)recorder_samples(r) / s->rate : 0;
      rc = recorder_close(r, 1, err, sizeof err);
      if (s->cb.event)
        s->cb.event(s->arg, MEDIA_RECORD_DONE,
                    failed ? "write failed" : rc ? err : quiet ? "silence" : NULL);
    }
  }
  if (s->dead)
    return;
  if (s->e->ticks >= s->next_rtcp) {
    send_rtcp(s);
    /* RFC 3550 §6.3.1: randomise the interval (0.5..1.5 of 5 s) */
    s->next_rtcp = s->e->ticks + RTCP_TICKS / 2 + su_random() % RTCP_TICKS;
  }
}

static void tick(media_engine_t *e)
{
  double start = loop_now();
  e->ticks++;
  if (e->last_tick > 0 && start - e->last_tick < 1.0) {
    double err = (start - e->last_tick) * 1000.0 - TICK_MS;
    unsigned b = (unsigned)((err < 0 ? -err : err) * 10.0);
    e->err_hist[b < TIMING_BUCKETS ? b : TIMING_BUCKETS - 1]++;
    e->timed++;
  }
  e->last_tick = start;
  e->dispatching++;
  media_conf_mix_all(e->confs);
  for (media_session_t *s = e->sessions; s; s = s->next)
    if (!s->dead && s->running && s->codec)
      session_send(s);
  /* what arrived since the last tick (stale packets of sessions not
   * running are read and dropped) */
  for (media_session_t *s = e->sessions; s; s = s->next)
    if (!s->dead)
      receive(s, s->fd, 0);
  for (media_session_t *s = e->sessions; s; s = s->next)
    if (!s->dead && s->running && s->codec)
      session_play(s);
  e->dispatching--;
  sweep(e);
  {
    unsigned b = (unsigned)((loop_now() - start) * 10000.0);
    e->busy_hist[b < TIMING_BUCKETS ? b : TIMING_BUCKETS - 1]++;
  }
}
