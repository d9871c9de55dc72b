/* session.h — the media engine: one RTP session per call on the one loop.
 *
 * An engine owns the RTP port range and one paced tick (every 20 ms) that
 * drives every session: each tick a session takes a frame from its source
 * (a tone, or silence), encodes and sends it, and plays a frame out of its
 * jitter buffer into its sinks (a recorder). Packets are read when the
 * socket is readable (recvmmsg), parsed, latched (symmetric RTP: the first
 * packet's source becomes the destination) and queued. RFC 4733 events are
 * received and sent; RTCP SR/RR go out every 5 s and come in for the
 * round-trip time. No Lua: the binding is csrc/lmedia.c. */
#ifndef LUASIP_MEDIA_SESSION_H
#define LUASIP_MEDIA_SESSION_H

#include "loop/loop.h"
#include "media/clip.h"
#include "media/sdpmap.h"
#include "media/tone.h"

#include <stddef.h>
#include <stdint.h>

typedef struct media_engine media_engine_t;
typedef struct media_session media_session_t;

enum media_event {
  MEDIA_PLAY_DONE = 1,   /* the source ended (a tone's duration) */
  MEDIA_RECORD_DONE,     /* the recorder reached its maximum; detail: error or NULL */
  MEDIA_DTMF_SENT,       /* the digits queued by media_session_send_dtmf went out */
};

/* Where a received digit came from. */
enum media_dtmf_source { MEDIA_DTMF_RFC4733, MEDIA_DTMF_INBAND };

/* In-band DTMF detection (spandsp's detector on the decoded audio): off,
 * on, or on only while the peer did not negotiate telephone-event. */
enum media_inband { MEDIA_INBAND_OFF, MEDIA_INBAND_ON, MEDIA_INBAND_AUTO };

typedef struct {
  /* a digit received, once per digit, at its end */
  void (*dtmf)(void *arg, char digit, unsigned duration_ms, int source);
  void (*event)(void *arg, int kind, char const *detail);
} media_cb_t;

typedef struct {
  uint64_t packets_sent, bytes_sent, packets_received, bytes_received;
  int64_t lost;             /* expected - received (RFC 3550 A.3) */
  double jitter_ms;
  double rtt_ms;            /* -1 until an RR reports on our SR */
  int64_t remote_lost;      /* from the peer's last report, -1 none */
  double remote_jitter_ms;
  uint64_t rtcp_sent, rtcp_received, malformed, unknown_pt, late, concealed_ms;
  uint64_t recovered_ms;    /* rebuilt from Opus in-band FEC instead of concealed */
  uint64_t srtp_auth_fail, srtp_replay; /* SRTP packets dropped */
  int latched;
} media_stats_t;

media_engine_t *media_engine_create(loop_t *loop, unsigned port_min, unsigned port_max,
                                    char *err, size_t errlen);
/* Fails (-1) while sessions are alive. */
int media_engine_destroy(media_engine_t *e);
int media_engine_sessions(media_engine_t const *e);

/* Tick timing since the last reset (upper bounds, 0.1 ms resolution): p99
 * of |interval - 20 ms|, p50/p99 of the work per tick, and p99 over every
 * audio packet sent of |its interval from the session's previous - ptime|. */
typedef struct {
  uint64_t ticks;
  double interval_error_p99_ms, busy_p50_ms, busy_p99_ms;
  double send_error_p99_ms; /* p99 of |a packet's send interval - its ptime| */
} media_timing_t;
media_timing_t media_engine_timing(media_engine_t *e, int reset);

/* The decoded-file cache: clips held, in use, bytes, hits and loads. */
clip_stats_t media_engine_clip_stats(media_engine_t const *e);

/* Bind an even RTP port and the next one for RTCP on addr. */
media_session_t *media_session_create(media_engine_t *e, char const *addr,
                                      media_cb_t const *cb, void *arg, char *err, size_t errlen);
unsigned media_session_port(media_session_t const *s);
/* Start (or, on a re-INVITE, change) sending to and receiving from what
 * remote describes, with our ptime (ms; 0: the peer's or 20). -1 with err
 * when no codec we know was negotiated. A remote port of 0 stops. */
int media_session_start(media_session_t *s, sdpmap_t const *remote, unsigned ptime,
                        char *err, size_t errlen);
/* Key SRTP (SDES): suite (NULL: plain RTP again), our base64 key and the
 * peer's. Packets either way are protected from now on. */
int media_session_srtp(media_session_t *s, char const *suite, char const *local_key,
                       char const *remote_key, char *err, size_t errlen);
/* Stop everything, close the sockets, free. Safe inside a callback. */
void media_session_destroy(media_session_t *s);

int media_session_play_tone(media_session_t *s, tone_spec_t const *spec);
void media_session_stop_play(media_session_t *s);
/* Play an audio file (any format libsndfile reads), decoded and resampled
 * once into the engine's cache; loop: from the start again at its end. */
int media_session_play_file(media_session_t *s, char const *path, int loop, char *err,
                            size_t errlen);
/* Send back what is received (one tick later); a new source ends it. */
void media_session_echo(media_session_t *s, int on);
/* Record what is received into path; it ends by itself (MEDIA_RECORD_DONE,
 * detail "silence" or an error) after max_ms, or after silence_ms of
 * silence (0: neither). */
int media_session_record(media_session_t *s, char const *path, unsigned max_ms,
                         unsigned silence_ms, char *err, size_t errlen);
/* Finish the recording (keep: rename into place); its length in seconds.
 * After one that ended by itself: that one's length. */
int media_session_stop_record(media_session_t *s, int keep, double *seconds,
                              char *err, size_t errlen);
/* Queue RFC 4733 digits (0-9 * # A-D), duration ms each (default 100). */
/* Queue digits to send, each lasting duration_ms: as RFC 4733 events
 * (needs telephone-event), or in-band as tones in the audio. -1 when they
 * cannot be queued (bad digits, too many, the queue busy in the other way). */
int media_session_send_dtmf(media_session_t *s, char const *digits, unsigned duration_ms,
                            int inband);
/* In-band DTMF detection: enum media_inband (the default is AUTO). */
void media_session_detect_inband(media_session_t *s, int mode);
media_stats_t media_session_stats(media_session_t const *s);

/* Relay audio between two running sessions at the same rate: each sends
 * what the other hears (a source below tones, files and echo). Ends when
 * either is unbridged or destroyed. */
int media_session_bridge(media_session_t *a, media_session_t *b, char *err, size_t errlen);
void media_session_unbridge(media_session_t *s);
media_session_t *media_session_bridged(media_session_t const *s);
unsigned media_session_rate(media_session_t const *s);
char const *media_session_codec(media_session_t const *s);

#endif
