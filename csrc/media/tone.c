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
  for (int i = 0; i < spec->nfreqs; i++)
    t->step[i] = 2 * M_PI * spec->freqs[i] / rate;
  /* dBm0: a full-scale sine is +3.14 dBm0 (G.711), i.e. 32767 peak */
  t->amp = 32767.0 * pow(10.0, (spec->level_dbm0 - 3.14) / 20.0);
  if (t->amp * spec->nfreqs > 32767.0)
    t->amp = 32767.0 / spec->nfreqs;
  t->total = (uint64_t)spec->duration_ms * rate / 1000;
  t->period = period;
  return 0;
}

/* On or off at sample position pos of the cadence. */
static int sounding(tone_t const *t, uint64_t pos)
{
  uint64_t at;
  if (!t->period)
    return 1;
  at = pos % t->period;
  for (int i = 0; i < t->spec.nsteps; i++) {
    uint64_t len = (uint64_t)t->spec.cadence[i] * t->rate / 1000;
    if (at < len)
      return i % 2 == 0;
    at -= len;
  }
  return 0;
}

int tone_generate(tone_t *t, int16_t *out, int n)
{
  int k = 0;
  for (; k < n; k++) {
    double v = 0;
    if (t->total && t->pos >= t->total)
      break;
    if (sounding(t, t->pos))
      for (int i = 0; i < t->spec.nfreqs; i++)
        v += sin(t->phase[i]);
    for (int i = 0; i < t->spec.nfreqs; i++) {
      t->phase[i] += t->step[i];
      if (t->phase[i] > 2 * M_PI)
        t->phase[i] -= 2 * M_PI;
    }
    out[k] = (int16_t)lrint(v * t->amp);
    t->pos++;
  }
  return k;
}
