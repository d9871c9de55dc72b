/* jitter.h — an adaptive jitter buffer: RTP payloads in by sequence and
 * timestamp (any order, duplicates and late ones dropped), audio out one
 * frame at a time, with the codec's concealment for what is missing. The
 * playout delay follows the measured interarrival jitter (RFC 3550 §6.4.1)
 * between one frame and max_ms. No Lua. */
#ifndef LUASIP_MEDIA_JITTER_H
#define LUASIP_MEDIA_JITTER_H

#include "media/codec.h"

#include <stddef.h>
#include <stdint.h>

#define JITTER_SLOTS 64
#define JITTER_MAX_PAYLOAD 512

typedef struct {
  uint8_t used;
  uint16_t seq;
  uint32_t ts;
  uint16_t len;
  uint8_t data[JITTER_MAX_PAYLOAD];
} jitter_slot_t;

typedef struct {
  jitter_slot_t slots[JITTER_SLOTS];
  int started;
  uint32_t play_ts;       /* RTP timestamp of the next sample to play */
  uint32_t newest_ts;     /* highest timestamp received */
  int have_newest;
  unsigned rate;          /* RTP clock */
  unsigned frame;         /* samples per frame (tick) */
  unsigned max_delay;     /* samples */
  unsigned lookahead;     /* samples of extra delay, so a lost packet's
                           * successor is there to rebuild it from (FEC) */
  double jitter;          /* samples (RFC 3550 estimator) */
  int have_transit;
  int32_t last_transit;
  int16_t pending[2880];  /* decoded samples not yet played (60 ms at 48 kHz) */
  int npending;
  uint32_t pending_ts;
  /* counters */
  uint64_t late, duplicate, too_big, concealed, played;
  uint64_t recovered; /* samples rebuilt from the next packet's FEC */
} jitter_t;

void jitter_init(jitter_t *j, unsigned rate, unsigned frame, unsigned max_ms);
/* arrival: the packet's arrival time in RTP units (for the jitter estimate). */
void jitter_put(jitter_t *j, uint16_t seq, uint32_t ts, uint8_t const *payload, size_t len,
                uint32_t arrival);
/* Write frame samples to out: decoded audio, concealment, or silence before
 * the first packet / after a long gap. Returns 1 when out holds received or
 * concealed audio, 0 for silence. With no codec nothing is decoded (nobody
 * listens): the buffer keeps time, releases what is due, and out is
 * silence. */
int jitter_get(jitter_t *j, codec_t *codec, int16_t *out);
double jitter_ms(jitter_t const *j);
/* Hold `samples` more before playing (0 by default): with Opus a frame, so
 * a lone lost packet can be rebuilt from the next one's in-band FEC. */
void jitter_set_lookahead(jitter_t *j, unsigned samples);

#endif
