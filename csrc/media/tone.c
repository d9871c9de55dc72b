/* tone.c — see tone.h. */
#include "media/tone.h"

#include <math.h>
#include <string.h>

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
  for (int i = 0; i < spec->nfreqs; i++) {
    double w = 2 * M_PI * spec->freqs[i] / rate;
    t->re[i] = 1, t->im[i] = 0; /* sin starts at 0 */
    t->cos_step[i] = cos(w);
    t->sin_step[i] = sin(w);
  }
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
      for (int j = 0; j < m; j++) {
        double v = 0;
        for (int i = 0; i < nf; i++) {
          double re = t->re[i], im = t->im[i];
          v += im;
          t->re[i] = re * t->cos_step[i] - im * t->sin_step[i];
          t->im[i] = re * t->sin_step[i] + im * t->cos_step[i];
        }
        out[k + j] = (int16_t)lrint(v * t->amp);
      }
      /* keep the phasors on the unit circle (rounding drifts them) */
      for (int i = 0; i < nf; i++) {
        double r = sqrt(t->re[i] * t->re[i] + t->im[i] * t->im[i]);
        t->re[i] /= r, t->im[i] /= r;
      }
    }
    k += m;
    t->pos += (uint64_t)m;
  }
  return k;
}
