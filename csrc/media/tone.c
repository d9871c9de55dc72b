/* tone.c — see tone.h. */
#include "media/tone.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define TABLE_BITS 12
static float sine[1 << TABLE_BITS];
static pthread_once_t sine_once = PTHREAD_ONCE_INIT;

static void make_sine(void)
{
  for (int i = 0; i < 1 << TABLE_BITS; i++)
    sine[i] = (float)sin(2 * M_PI * i / (1 << TABLE_BITS));
}

int tone_init(tone_t *t, tone_spec_t const *spec, unsigned rate)
{
  uint64_t period = 0;
  memset(t, 0, sizeof *t);
  if (!rate || spec->nfreqs < 1 || spec->nfreqs > TONE_MAX_FREQS || spec->nsteps < 0 ||
      spec->nsteps > TONE_MAX_STEPS)
    return -1;
  for (int i = 0; i < spec->nfreqs; i++)
    if (!(spec->freqs[i] > 0 && spec->freqs[i] < rate / 2.0))
      return -1;
  for (int i = 0; i < spec->nsteps; i++) {
    if (!spec->cadence[i] || spec->cadence[i] > 600000)
      return -1;
    period += (uint64_t)spec->cadence[i] * rate / 1000;
  }
  t->spec = *spec;
  t->rate = rate;
  pthread_once(&sine_once, make_sine);
  for (int i = 0; i < spec->nfreqs; i++)
    t->step[i] = (uint32_t)llround(spec->freqs[i] / rate * 4294967296.0); /* sin starts at 0 */
  /* dBm0: a full-scale sine is +3.14 dBm0 (G.711), i.e. 32767 peak */
  t->amp = 32767.0 * pow(10.0, (spec->level_dbm0 - 3.14) / 20.0);
  if (t->amp * spec->nfreqs > 32767.0)
    t->amp = 32767.0 / spec->nfreqs;
  t->total = (uint64_t)spec->duration_ms * rate / 1000;
  t->period = period;
  return 0;
}

/* Whether the cadence sounds at sample pos, and for how many samples
 * more it stays so (UINT64_MAX: for ever). */
static uint64_t cadence_run(tone_t const *t, uint64_t pos, int *on)
{
  uint64_t at;
  *on = 1;
  if (!t->period)
    return UINT64_MAX;
  at = pos % t->period;
  for (int i = 0; i < t->spec.nsteps; i++) {
    uint64_t len = (uint64_t)t->spec.cadence[i] * t->rate / 1000;
    if (at < len) {
      *on = i % 2 == 0;
      return len - at;
    }
    at -= len;
  }
  *on = 0; /* rounding left a sample or two at the period's end */
  return t->period - (pos % t->period);
}

int tone_generate(tone_t *t, int16_t *out, int n)
{
  int k = 0, nf = t->spec.nfreqs;
  if (t->total)
    n = t->pos >= t->total ? 0 : t->total - t->pos < (uint64_t)n ? (int)(t->total - t->pos) : n;
  while (k < n) {
    int on;
    uint64_t run = cadence_run(t, t->pos, &on);
    int m = run < (uint64_t)(n - k) ? (int)run : n - k;
    if (!on) {
      memset(out + k, 0, (size_t)m * sizeof *out);
    } else {
      float amp = (float)t->amp, acc[512];
      /* in blocks: one frequency at a time over the block, then scale */
      for (int b = 0; b < m; b += 512) {
        int len = m - b < 512 ? m - b : 512;
        memset(acc, 0, (size_t)len * sizeof *acc);
        for (int i = 0; i < nf; i++) {
          uint32_t ph = t->phase[i], st = t->step[i];
          for (int j = 0; j < len; j++, ph += st)
            acc[j] += sine[ph >> (32 - TABLE_BITS)];
          t->phase[i] = ph;
        }
        for (int j = 0; j < len; j++)
          out[k + b + j] = (int16_t)(acc[j] * amp); /* |acc * amp| <= 32767: tone_init bounds amp */
      }
    }
    k += m;
    t->pos += (uint64_t)m;
  }
  return k;
}
