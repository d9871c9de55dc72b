/* jitter.c — see jitter.h. */
#include "media/jitter.h"

#include <string.h>

#define DIFF(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)))

void jitter_init(jitter_t *j, unsigned rate, unsigned frame, unsigned max_ms)
{
  memset(j, 0, sizeof *j);
  j->rate = rate;
  j->frame = frame;
  j->max_delay = (unsigned)((uint64_t)rate * (max_ms ? max_ms : 300) / 1000);
  if (j->max_delay < 2 * frame)
    j->max_delay = 2 * frame;
}

double jitter_ms(jitter_t const *j) { return j->rate ? j->jitter * 1000.0 / j->rate : 0; }

void jitter_set_lookahead(jitter_t *j, unsigned samples) { j->lookahead = samples; }

static unsigned target(jitter_t const *j)
{
  double t = j->frame + j->lookahead + 3 * j->jitter;
  return t > j->max_delay ? j->max_delay : (unsigned)t;
}

void jitter_put(jitter_t *j, uint16_t seq, uint32_t ts, uint8_t const *payload, size_t len,
                uint32_t arrival)
{
  jitter_slot_t *s = &j->slots[seq % JITTER_SLOTS];
  int32_t transit = DIFF(arrival, ts);
  /* RFC 3550 §6.4.1: J += (|D| - J) / 16 */
  if (j->have_transit) {
    int64_t d = (int64_t)transit - j->last_transit;
    double ad = d < 0 ? -(double)d : (double)d;
    if (ad > 10.0 * j->rate) /* a wild timestamp: do not let one packet own the estimate */
      ad = 10.0 * j->rate;
    j->jitter += (ad - j->jitter) / 16.0;
  }
  j->have_transit = 1;
  j->last_transit = transit;
  if (len > JITTER_MAX_PAYLOAD) {
    j->too_big++;
    return;
  }
  if (j->started && DIFF(ts, j->play_ts) < 0) {
    j->late++;
    return;
  }
  if (s->used && s->seq == seq && s->ts == ts) {
    j->duplicate++;
    return;
  }
  /* a slot still holding an older packet: that one is hopelessly late */
  s->used = 1;
  s->seq = seq;
  s->ts = ts;
  s->len = (uint16_t)len;
  memcpy(s->data, payload, len);
  if (!j->have_newest || DIFF(ts, j->newest_ts) > 0)
    j->newest_ts = ts;
  j->have_newest = 1;
}

static jitter_slot_t *find(jitter_t *j, uint32_t ts)
{
  for (int i = 0; i < JITTER_SLOTS; i++)
    if (j->slots[i].used && j->slots[i].ts == ts)
      return &j->slots[i];
  return NULL;
}

/* The queued packet with the lowest timestamp at or after ts, or NULL. */
static jitter_slot_t *next_after(jitter_t *j, uint32_t ts)
{
  jitter_slot_t *best = NULL;
  for (int i = 0; i < JITTER_SLOTS; i++) {
    jitter_slot_t *s = &j->slots[i];
    if (!s->used)
      continue;
    if (DIFF(s->ts, ts) < 0) { /* behind the playout point: drop it */
      s->used = 0;
      j->late++;
      continue;
    }
    if (!best || DIFF(s->ts, best->ts) < 0)
      best = s;
  }
  return best;
}

int jitter_get(jitter_t *j, codec_t *codec, int16_t *out)
{
  unsigned produced = 0;
  int audio = 0;
  if (!j->started) {
    jitter_slot_t *first = NULL;
    for (int i = 0; i < JITTER_SLOTS; i++)
      if (j->slots[i].used && (!first || DIFF(j->slots[i].ts, first->ts) < 0))
        first = &j->slots[i];
    /* int64: timestamps come from the network and may be 2^31 apart */
    if (!first || (int64_t)DIFF(j->newest_ts, first->ts) + j->frame < (int64_t)target(j)) {
      memset(out, 0, j->frame * sizeof *out);
      return 0;
    }
    j->started = 1;
    j->play_ts = first->ts;
    j->npending = 0;
  } else if ((int64_t)DIFF(j->newest_ts, j->play_ts) > (int64_t)target(j) + 2 * j->frame) {
    /* too much queued (the jitter went down, or the sender sped up): drop
     * a frame's worth to come back to the target delay */
    j->play_ts += j->frame;
    j->npending = 0;
  }
  if (!codec) {
    /* nobody listens: keep time and release what is due, decode nothing */
    uint32_t end = j->play_ts + j->frame;
    for (int i = 0; i < JITTER_SLOTS; i++)
      if (j->slots[i].used && DIFF(j->slots[i].ts, end) < 0) {
        j->slots[i].used = 0;
        j->played++;
      }
    if ((int64_t)DIFF(end, j->newest_ts) > (int64_t)j->max_delay) {
      j->started = 0; /* nothing for a long while: start over on the next packet */
      j->have_newest = 0;
    }
    j->play_ts = end;
    j->npending = 0;
    memset(out, 0, j->frame * sizeof *out);
    return 0;
  }
  while (produced < j->frame) {
    unsigned want = j->frame - produced;
    if (j->npending > 0 && j->pending_ts == j->play_ts) {
      unsigned n = (unsigned)j->npending < want ? (unsigned)j->npending : want;
      memcpy(out + produced, j->pending, n * sizeof *out);
      memmove(j->pending, j->pending + n, (j->npending - n) * sizeof *out);
      j->npending -= (int)n;
      j->pending_ts += n;
      j->play_ts += n;
      produced += n;
      audio = 1;
      continue;
    }
    j->npending = 0;
    jitter_slot_t *s = find(j, j->play_ts);
    if (s) {
      int n = codec_decode(codec, s->data, s->len, j->pending,
                           (int)(sizeof j->pending / sizeof j->pending[0]));
      s->used = 0;
      if (n > 0) {
        j->npending = n;
        j->pending_ts = j->play_ts;
        j->played++;
        continue;
      }
    }
    /* missing: conceal up to the next packet (or the end of the frame) */
    s = next_after(j, j->play_ts);
    if (!s && (int64_t)DIFF(j->play_ts, j->newest_ts) > (int64_t)j->max_delay) {
      /* nothing for a long while: stop concealing, start over on the next packet */
      j->started = 0;
      j->have_newest = 0;
      memset(out + produced, 0, want * sizeof *out);
      return audio;
    }
    if (s) {
      int32_t gap = DIFF(s->ts, j->play_ts);
      int fec = codec_has_fec(codec) ? codec_packet_samples(codec, s->data, s->len) : 0;
      if (fec > 0 && gap == fec && fec <= (int)(sizeof j->pending / sizeof j->pending[0]) &&
          codec_recover(codec, s->data, s->len, j->pending, fec) == fec) {
        /* the one packet before s is lost and s carries its FEC: play
         * that instead of concealing */
        j->npending = fec;
        j->pending_ts = j->play_ts;
        j->recovered += (uint64_t)fec;
        continue;
      }
      /* conceal up to where s's FEC (if any) can take over */
      if (fec > 0 && gap > fec && gap - fec < (int32_t)want)
        want = (unsigned)(gap - fec);
      else if ((int64_t)gap < (int64_t)want)
        want = (unsigned)gap;
    }
    codec_conceal(codec, out + produced, (int)want);
    j->concealed += want;
    j->play_ts += want;
    produced += want;
    audio = 1;
  }
  return audio;
}
