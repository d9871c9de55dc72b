/* tone.h — call-progress tones and beeps: up to four summed frequencies,
 * switched on and off by a cadence, at any sample rate. No Lua. */
#ifndef LUASIP_MEDIA_TONE_H
#define LUASIP_MEDIA_TONE_H

#include <stdint.h>

#define TONE_MAX_FREQS 4
#define TONE_MAX_STEPS 8

typedef struct {
  double freqs[TONE_MAX_FREQS]; /* Hz */
  int nfreqs;
  unsigned cadence[TONE_MAX_STEPS]; /* ms on, ms off, ms on, ...; none: always on */
  int nsteps;
  unsigned duration_ms; /* 0: until stopped */
  double level_dbm0;    /* per frequency (the binding's default is -13) */
} tone_spec_t;

typedef struct {
  tone_spec_t spec;
  unsigned rate;
  /* each frequency a phase accumulator (a full turn is 2^32) into a sine
   * table: no sin() per sample; spurs stay below -60 dB, far under G.711's
   * own noise */
  uint32_t phase[TONE_MAX_FREQS], step[TONE_MAX_FREQS];
  double amp;
  uint64_t pos;       /* samples generated */
  uint64_t total;     /* 0: endless */
  uint64_t period;    /* cadence period in samples, 0: none */
} tone_t;

/* 0, or -1 for a spec out of range (frequencies 0 < f < rate/2, at most
 * four; cadence steps > 0 ms). */
int tone_init(tone_t *t, tone_spec_t const *spec, unsigned rate);
/* Write up to n samples; returns how many (fewer when the tone ended). */
int tone_generate(tone_t *t, int16_t *out, int n);

#endif
