/* clip.c — audio files decoded once (libsndfile), mixed to mono and
 * resampled (speexdsp) to a codec's rate, cached by path, rate, size and
 * modification time. See clip.h. */
#include "media/clip.h"
#include "media/codec.h"

#include <sndfile.h>
#include <speex/speex_resampler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct clip {
  clip_cache_t *cache;
  clip_t *next, *prev;   /* cache list, most recently used first */
  char *path;
  unsigned rate;
  off_t size;
  struct timespec mtime;
  int refs;
  int16_t *pcm;
  size_t n;
  clip_enc_t *encodings;
};

struct clip_enc {
  clip_enc_t *next;
  clip_t *clip;
  char key[64];
  unsigned ptime;        /* samples per packet */
  size_t npackets, done; /* packets in all, encoded so far */
  uint32_t *off;         /* packet i is data[off[i]..off[i+1]) */
  uint8_t *data;
  size_t cap;
  codec_t *enc;          /* the encoder, until every packet is made */
};

struct clip_cache {
  clip_t *head;
  size_t budget, bytes;
  unsigned clips, referenced;
  uint64_t hits, loads;
  unsigned encodings;
  uint64_t encoded, reused;
};

clip_cache_t *clip_cache_create(size_t budget_bytes)
{
  clip_cache_t *c = calloc(1, sizeof *c);
  if (c)
    c->budget = budget_bytes;
  return c;
}

static void unlink_clip(clip_t *k)
{
  clip_cache_t *c = k->cache;
  if (k->prev)
    k->prev->next = k->next;
  else
    c->head = k->next;
  if (k->next)
    k->next->prev = k->prev;
  k->next = k->prev = NULL;
}

static void free_encodings(clip_t *k)
{
  clip_cache_t *c = k->cache;
  while (k->encodings) {
    clip_enc_t *x = k->encodings;
    k->encodings = x->next;
    c->bytes -= (x->npackets + 1) * sizeof *x->off + x->off[x->done];
    c->encodings--;
    codec_destroy(x->enc);
    free(x->off);
    free(x->data);
    free(x);
  }
}

static void free_clip(clip_t *k)
{
  clip_cache_t *c = k->cache;
  unlink_clip(k);
  free_encodings(k);
  c->bytes -= k->n * sizeof *k->pcm;
  c->clips--;
  free(k->pcm);
  free(k->path);
  free(k);
}

void clip_cache_destroy(clip_cache_t *c)
{
  if (!c)
    return;
  while (c->head)
    free_clip(c->head);
  free(c);
}

/* Drop unreferenced clips, least recently used first, down to the budget. */
static void trim(clip_cache_t *c)
{
  clip_t *k = c->head;
  if (!k)
    return;
  while (k->next)
    k = k->next;
  while (k && c->bytes > c->budget) {
    clip_t *prev = k->prev;
    if (!k->refs)
      free_clip(k);
    k = prev;
  }
}

/* Resample mono pcm[0..n) from rate `from` to `to`: a new buffer. */
static int16_t *resample(int16_t const *pcm, size_t n, unsigned from, unsigned to, size_t *out_n,
                         char *err, size_t errlen)
{
  int rerr = 0;
  SpeexResamplerState *st = speex_resampler_init(1, from, to, 5, &rerr);
  size_t cap = (size_t)((double)n * to / from) + 1024, got = 0;
  int16_t *out = malloc(cap * sizeof *out);
  int16_t zeros[256] = { 0 };
  if (!st || !out) {
    snprintf(err, errlen, "resampler %u -> %u Hz: %s", from, to,
             st ? "out of memory" : speex_resampler_strerror(rerr));
    if (st)
      speex_resampler_destroy(st);
    free(out);
    return NULL;
  }
  speex_resampler_skip_zeros(st);
  /* the input, then zeros to flush the filter's latency */
  for (int pass = 0; pass < 2; pass++) {
    size_t done = 0, total = pass ? (size_t)speex_resampler_get_input_latency(st) : n;
    while (done < total && got < cap) {
      spx_uint32_t in_len = (spx_uint32_t)(total - done > 4096 ? 4096 : total - done);
      spx_uint32_t out_len = (spx_uint32_t)(cap - got > 65536 ? 65536 : cap - got);
      if (pass && in_len > 256)
        in_len = 256;
      speex_resampler_process_int(st, 0, pass ? zeros : pcm + done, &in_len, out + got, &out_len);
      if (!in_len && !out_len)
        break;
      done += in_len;
      got += out_len;
    }
  }
  speex_resampler_destroy(st);
  *out_n = got;
  return out;
}

/* Decode a whole file to mono at its own rate. */
static int16_t *decode(char const *path, size_t *n, unsigned *rate, char *err, size_t errlen)
{
  SF_INFO info;
  SNDFILE *f;
  int16_t *pcm = NULL, *buf = NULL;
  size_t got = 0;
  memset(&info, 0, sizeof info);
  f = sf_open(path, SFM_READ, &info);
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, sf_strerror(NULL));
    return NULL;
  }
  if (info.channels < 1 || info.channels > 8 || info.samplerate < 4000 ||
      info.samplerate > 192000) {
    snprintf(err, errlen, "%s: unsupported format (%d channels at %d Hz)", path, info.channels,
             info.samplerate);
    goto fail;
  }
  if (info.frames < 0 || info.frames > (sf_count_t)info.samplerate * CLIP_MAX_SECONDS) {
    snprintf(err, errlen, "%s: longer than %d s", path, CLIP_MAX_SECONDS);
    goto fail;
  }
  /* frames may be unknown (0) for some containers: read until the end */
  size_t cap = info.frames > 0 ? (size_t)info.frames : (size_t)info.samplerate * 10;
  pcm = malloc(cap * sizeof *pcm);
  buf = malloc(4096 * (size_t)info.channels * sizeof *buf);
  if (!pcm || !buf) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (;;) {
    sf_count_t r = sf_readf_short(f, buf, 4096);
    if (r <= 0)
      break;
    if (got + (size_t)r > cap) {
      size_t ncap = cap * 2 + (size_t)r;
      int16_t *np;
      if (ncap > (size_t)info.samplerate * CLIP_MAX_SECONDS) {
        snprintf(err, errlen, "%s: longer than %d s", path, CLIP_MAX_SECONDS);
        goto fail;
      }
      np = realloc(pcm, ncap * sizeof *pcm);
      if (!np) {
        snprintf(err, errlen, "out of memory");
        goto fail;
      }
      pcm = np, cap = ncap;
    }
    for (sf_count_t i = 0; i < r; i++) {
      int sum = 0;
      for (int ch = 0; ch < info.channels; ch++)
        sum += buf[i * info.channels + ch];
      pcm[got++] = (int16_t)(sum / info.channels);
    }
  }
  if (sf_error(f)) {
    snprintf(err, errlen, "%s: %s", path, sf_strerror(f));
    goto fail;
  }
  sf_close(f);
  free(buf);
  *n = got;
  *rate = (unsigned)info.samplerate;
  return pcm;
fail:
  sf_close(f);
  free(buf);
  free(pcm);
  return NULL;
}

clip_t *clip_get(clip_cache_t *c, char const *path, unsigned rate, char *err, size_t errlen)
{
  struct stat st;
  clip_t *k;
  int16_t *pcm;
  size_t n;
  unsigned file_rate;
  if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: not a readable file", path);
    return NULL;
  }
  for (k = c->head; k; k = k->next)
    if (k->rate == rate && k->size == st.st_size && k->mtime.tv_sec == st.st_mtim.tv_sec &&
        k->mtime.tv_nsec == st.st_mtim.tv_nsec && strcmp(k->path, path) == 0)
      break;
  if (k) {
    c->hits++;
    unlink_clip(k);
  } else {
    pcm = decode(path, &n, &file_rate, err, errlen);
    if (!pcm)
      return NULL;
    if (file_rate != rate) {
      size_t rn;
      int16_t *r = resample(pcm, n, file_rate, rate, &rn, err, errlen);
      free(pcm);
      if (!r)
        return NULL;
      pcm = r, n = rn;
    }
    k = calloc(1, sizeof *k);
    if (!k || !(k->path = strdup(path))) {
      free(k);
      free(pcm);
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
    k->cache = c;
    k->rate = rate;
    k->size = st.st_size;
    k->mtime = st.st_mtim;
    k->pcm = pcm;
    k->n = n;
    c->bytes += n * sizeof *pcm;
    c->clips++;
    c->loads++;
  }
  /* most recently used first */
  k->next = c->head;
  if (c->head)
    c->head->prev = k;
  c->head = k;
  if (!k->refs++)
    c->referenced++;
  trim(c);
  return k;
}

void clip_release(clip_t *k)
{
  if (!k)
    return;
  if (--k->refs == 0) {
    k->cache->referenced--;
    trim(k->cache);
  }
}

int16_t const *clip_samples(clip_t const *k, size_t *n)
{
  *n = k->n;
  return k->pcm;
}

clip_enc_t *clip_encoding(clip_t *k, codec_t const *c, unsigned ptime)
{
  char key[64];
  clip_enc_t *x;
  if (!ptime)
    return NULL;
  snprintf(key, sizeof key, "%s p=%u", codec_key(c), ptime);
  for (x = k->encodings; x; x = x->next)
    if (!strcmp(x->key, key))
      return x;
  x = calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->clip = k;
  memcpy(x->key, key, sizeof key);
  x->ptime = ptime;
  x->npackets = (k->n + ptime - 1) / ptime;
  x->off = calloc(x->npackets + 1, sizeof *x->off);
  x->enc = x->npackets ? codec_twin(c) : NULL;
  if (!x->off || (x->npackets && !x->enc)) {
    codec_destroy(x->enc);
    free(x->off);
    free(x);
    return NULL;
  }
  x->next = k->encodings;
  k->encodings = x;
  k->cache->bytes += (x->npackets + 1) * sizeof *x->off;
  k->cache->encodings++;
  return x;
}

size_t clip_enc_packets(clip_enc_t const *x) { return x->npackets; }

/* Encode the next packet; -1 on failure. */
static int encode_next(clip_enc_t *x)
{
  clip_t *k = x->clip;
  int16_t pcm[2880];
  uint8_t out[1500];
  size_t at = x->done * x->ptime, n = k->n - at < x->ptime ? k->n - at : x->ptime;
  size_t have = x->off[x->done];
  int len;
  if (x->ptime > sizeof pcm / sizeof *pcm || !x->enc)
    return -1;
  memcpy(pcm, k->pcm + at, n * sizeof *pcm);
  memset(pcm + n, 0, (x->ptime - n) * sizeof *pcm);
  len = codec_encode(x->enc, pcm, (int)x->ptime, out, sizeof out);
  if (len <= 0)
    return -1;
  if (have + (size_t)len > x->cap) {
    size_t ncap = x->cap ? x->cap * 2 : (size_t)len * 64;
    uint8_t *nd;
    while (ncap < have + (size_t)len)
      ncap *= 2;
    nd = realloc(x->data, ncap);
    if (!nd)
      return -1;
    x->data = nd, x->cap = ncap;
  }
  memcpy(x->data + have, out, (size_t)len);
  x->off[++x->done] = (uint32_t)(have + (size_t)len);
  k->cache->bytes += (size_t)len;
  k->cache->encoded++;
  if (x->done == x->npackets) {
    /* every packet made: the encoder is no longer needed */
    codec_destroy(x->enc);
    x->enc = NULL;
  }
  return 0;
}

uint8_t const *clip_packet(clip_enc_t *x, size_t i, size_t *len)
{
  if (i >= x->npackets)
    return NULL;
  if (i < x->done)
    x->clip->cache->reused++;
  while (x->done <= i)
    if (encode_next(x) < 0)
      return NULL;
  *len = x->off[i + 1] - x->off[i];
  return x->data + x->off[i];
}

clip_stats_t clip_cache_stats(clip_cache_t const *c)
{
  clip_stats_t s = { c->clips, c->referenced, c->bytes, c->hits, c->loads,
                     c->encodings, c->encoded, c->reused };
  return s;
}
