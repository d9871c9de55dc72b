/* codec.c — see codec.h. */
#include "media/codec.h"

#include <spandsp.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { PCMU, PCMA };

/* Concealment: repeat the last pitch-sized stretch of received audio,
 * fading it out over 60 ms. (spandsp's plc_fillin copies overlapping
 * memory with memcpy, which ASan rightly reports, so it is not used.) */
#define PLC_HISTORY 400   /* 50 ms at 8 kHz */
#define PLC_PERIOD 80     /* 10 ms: a stretch long enough for most voices */
#define PLC_FADE 480      /* 60 ms to silence */

struct codec {
  enum kind kind;
  int16_t history[PLC_HISTORY];
  int nhistory;
  int concealed; /* samples concealed since the last received */
};

static void remember(codec_t *c, int16_t const *pcm, int n)
{
  if (n >= PLC_HISTORY) {
    memcpy(c->history, pcm + n - PLC_HISTORY, sizeof c->history);
    c->nhistory = PLC_HISTORY;
  } else {
    int keep = c->nhistory + n > PLC_HISTORY ? PLC_HISTORY - n : c->nhistory;
    memmove(c->history, c->history + c->nhistory - keep, (size_t)keep * sizeof *pcm);
    memcpy(c->history + keep, pcm, (size_t)n * sizeof *pcm);
    c->nhistory = keep + n;
  }
}

codec_t *codec_create(char const *name, unsigned rate, unsigned channels, char const *fmtp)
{
  codec_t *c;
  enum kind kind;
  (void)fmtp;
  if (!name || rate != 8000 || channels > 1)
    return NULL;
  if (!strcasecmp(name, "PCMU"))
    kind = PCMU;
  else if (!strcasecmp(name, "PCMA"))
    kind = PCMA;
  else
    return NULL;
  c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->kind = kind;
  return c;
}

void codec_destroy(codec_t *c)
{
  if (!c)
    return;
  free(c);
}

char const *codec_name(codec_t const *c) { return c->kind == PCMU ? "PCMU" : "PCMA"; }
unsigned codec_audio_rate(codec_t const *c) { (void)c; return 8000; }
unsigned codec_rtp_rate(codec_t const *c) { (void)c; return 8000; }

int codec_encode(codec_t *c, int16_t const *pcm, int n, uint8_t *out, size_t size)
{
  if (n < 0 || (size_t)n > size)
    return -1;
  for (int i = 0; i < n; i++)
    out[i] = c->kind == PCMU ? linear_to_ulaw(pcm[i]) : linear_to_alaw(pcm[i]);
  return n;
}

int codec_decode(codec_t *c, uint8_t const *in, size_t len, int16_t *pcm, int max)
{
  int n = len < (size_t)max ? (int)len : max;
  for (int i = 0; i < n; i++)
    pcm[i] = c->kind == PCMU ? ulaw_to_linear(in[i]) : alaw_to_linear(in[i]);
  remember(c, pcm, n);
  c->concealed = 0;
  return n;
}

int codec_conceal(codec_t *c, int16_t *pcm, int n)
{
  int period = c->nhistory < PLC_PERIOD ? c->nhistory : PLC_PERIOD;
  for (int i = 0; i < n; i++, c->concealed++) {
    int left = PLC_FADE - c->concealed;
    if (!period || left <= 0) {
      pcm[i] = 0;
      continue;
    }
    pcm[i] = (int16_t)((int32_t)c->history[c->nhistory - period + c->concealed % period] * left /
                       PLC_FADE);
  }
  return n;
}
