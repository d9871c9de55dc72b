/* codec.c — see codec.h. */
#include "media/codec.h"

#include <spandsp.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { PCMU, PCMA };

struct codec {
  enum kind kind;
  plc_state_t *plc;
};

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
  c->plc = plc_init(NULL);
  if (!c->plc) {
    free(c);
    return NULL;
  }
  return c;
}

void codec_destroy(codec_t *c)
{
  if (!c)
    return;
  plc_free(c->plc);
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
  plc_rx(c->plc, pcm, n);
  return n;
}

int codec_conceal(codec_t *c, int16_t *pcm, int n)
{
  return plc_fillin(c->plc, pcm, n);
}
