/* codec.c — see codec.h. */
#include "media/codec.h"

#include <opus.h>
#include <spandsp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { PCMU, PCMA, OPUS };

/* Concealment: repeat the last pitch-sized stretch of received audio,
 * fading it out over 60 ms. (spandsp's plc_fillin copies overlapping
 * memory with memcpy, which ASan rightly reports, so it is not used.) */
#define PLC_HISTORY 400   /* 50 ms at 8 kHz */
#define PLC_PERIOD 80     /* 10 ms: a stretch long enough for most voices */
#define PLC_FADE 480      /* 60 ms to silence */

struct codec {
  enum kind kind;
  OpusEncoder *enc;  /* Opus: mono at 48 kHz (RFC 7587 lets us send mono) */
  OpusDecoder *dec;
  int16_t history[PLC_HISTORY];
  int nhistory;
  int concealed; /* samples concealed since the last received */
  long bitrate;  /* Opus encoder settings */
  int fec;
  char key[48];
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

/* An fmtp parameter's number (RFC 7587 §6.1), or dflt. */
static long fmtp_num(char const *fmtp, char const *key, long dflt)
{
  size_t klen = strlen(key);
  for (char const *p = fmtp; p && *p;) {
    while (*p == ' ' || *p == ';')
      p++;
    if (!strncasecmp(p, key, klen) && p[klen] == '=')
      return strtol(p + klen + 1, NULL, 10);
    p = strchr(p, ';');
  }
  return dflt;
}

/* G.711 decoding by table: 256 entries per law, filled from spandsp's
 * expansions when the library loads (a lookup per sample instead of a
 * variable shift; no lazy set-up for threads to race on). */
static int16_t ulaw_table[256], alaw_table[256];

__attribute__((constructor)) static void g711_tables(void)
{
  for (int i = 0; i < 256; i++) {
    ulaw_table[i] = ulaw_to_linear((uint8_t)i);
    alaw_table[i] = alaw_to_linear((uint8_t)i);
  }
}

static codec_t *opus_create(long bitrate, int fec)
{
  int err = 0;
  codec_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->kind = OPUS;
  c->enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  if (err == OPUS_OK)
    c->dec = opus_decoder_create(48000, 1, &err);
  if (err != OPUS_OK || !c->enc || !c->dec) {
    codec_destroy(c);
    return NULL;
  }
  if (bitrate < 6000 || bitrate > 510000)
    bitrate = 32000;
  c->bitrate = bitrate;
  c->fec = fec;
  snprintf(c->key, sizeof c->key, "opus/48000 b=%ld fec=%d", bitrate, c->fec);
  opus_encoder_ctl(c->enc, OPUS_SET_BITRATE((opus_int32)bitrate));
  opus_encoder_ctl(c->enc, OPUS_SET_COMPLEXITY(5));
  if (c->fec) {
    /* the peer decodes FEC: carry it, tuned for a few percent loss */
    opus_encoder_ctl(c->enc, OPUS_SET_INBAND_FEC(1));
    opus_encoder_ctl(c->enc, OPUS_SET_PACKET_LOSS_PERC(5));
  }
  return c;
}

codec_t *codec_create(char const *name, unsigned rate, unsigned channels, char const *fmtp)
{
  codec_t *c;
  enum kind kind;
  if (!name)
    return NULL;
  if (!strcasecmp(name, "opus"))
    return rate == 48000 ? opus_create(fmtp_num(fmtp, "maxaveragebitrate", 32000),
                                       fmtp_num(fmtp, "useinbandfec", 0) == 1)
                         : NULL;
  if (rate != 8000 || channels > 1)
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
  snprintf(c->key, sizeof c->key, "%s/8000", kind == PCMU ? "PCMU" : "PCMA");
  return c;
}

char const *codec_key(codec_t const *c) { return c->key; }

codec_t *codec_twin(codec_t const *c)
{
  return c->kind == OPUS ? opus_create(c->bitrate, c->fec)
                         : codec_create(codec_name(c), 8000, 1, NULL);
}

int codec_has_fec(codec_t const *c) { return c->kind == OPUS; }

void codec_destroy(codec_t *c)
{
  if (!c)
    return;
  if (c->enc)
    opus_encoder_destroy(c->enc);
  if (c->dec)
    opus_decoder_destroy(c->dec);
  free(c);
}

char const *codec_name(codec_t const *c)
{
  return c->kind == PCMU ? "PCMU" : c->kind == PCMA ? "PCMA" : "opus";
}
unsigned codec_audio_rate(codec_t const *c) { return c->kind == OPUS ? 48000 : 8000; }
unsigned codec_rtp_rate(codec_t const *c) { return c->kind == OPUS ? 48000 : 8000; }

int codec_encode(codec_t *c, int16_t const *pcm, int n, uint8_t *out, size_t size)
{
  if (c->kind == OPUS) {
    int len = opus_encode(c->enc, pcm, n, out, (opus_int32)(size > 1500 ? 1500 : size));
    return len < 0 ? -1 : len;
  }
  if (n < 0 || (size_t)n > size)
    return -1;
  for (int i = 0; i < n; i++)
    out[i] = c->kind == PCMU ? linear_to_ulaw(pcm[i]) : linear_to_alaw(pcm[i]);
  return n;
}

int codec_decode(codec_t *c, uint8_t const *in, size_t len, int16_t *pcm, int max)
{
  if (c->kind == OPUS) {
    int n = len ? opus_decode(c->dec, in, (opus_int32)len, pcm, max, 0) : -1;
    return n < 0 ? -1 : n;
  }
  int n = len < (size_t)max ? (int)len : max;
  int16_t const *table = c->kind == PCMU ? ulaw_table : alaw_table;
  for (int i = 0; i < n; i++)
    pcm[i] = table[in[i]];
  remember(c, pcm, n);
  c->concealed = 0;
  return n;
}

int codec_packet_samples(codec_t const *c, uint8_t const *in, size_t len)
{
  if (c->kind == OPUS) {
    int n = len ? opus_packet_get_nb_samples(in, (opus_int32)len, 48000) : -1;
    return n < 0 ? -1 : n;
  }
  return (int)len;
}

int codec_recover(codec_t *c, uint8_t const *next, size_t len, int16_t *pcm, int n)
{
  int got;
  if (c->kind != OPUS || !len || n <= 0 || n % 120 || n > 5760)
    return -1;
  /* decode_fec=1: the LBRR data of `next` describes the frame before it
   * (without any, libopus conceals instead, which is no worse) */
  got = opus_decode(c->dec, next, (opus_int32)len, pcm, n, 1);
  return got == n ? n : -1;
}

int codec_conceal(codec_t *c, int16_t *pcm, int n)
{
  if (c->kind == OPUS) {
    /* Opus's own concealment, in whole 2.5 ms steps */
    int done = 0;
    while (n - done >= 120) {
      int step = n - done >= 960 ? 960 : (n - done) / 120 * 120;
      int got = opus_decode(c->dec, NULL, 0, pcm + done, step, 0);
      if (got <= 0)
        break;
      done += got;
    }
    if (done < n)
      memset(pcm + done, 0, (size_t)(n - done) * sizeof *pcm);
    return n;
  }
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
