/* conf.c — N-1 mixing for conferences. See conf.h. */
#include "media/conf.h"

#include <speex/speex_resampler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MAX 960 /* 20 ms at 48 kHz */

typedef struct {
  struct media_session *s;
  unsigned rate;                    /* the member's; the mix may run at another */
  SpeexResamplerState *in, *back;   /* member -> mix rate, and back (NULL: same rate) */
  int16_t heard[FRAME_MAX];         /* what it said, at the mix rate */
  int16_t out[FRAME_MAX];           /* what it hears, at its rate */
} member_t;

struct media_conf {
  struct media_engine *e;
  media_conf_t *next, **prev;
  unsigned rate, frame;
  int n;
  member_t *m[MEDIA_CONF_MAX];
};

media_conf_t *media_conf_create(struct media_engine *e)
{
  media_conf_t *c = calloc(1, sizeof *c);
  media_conf_t **list = media_engine_confs(e);
  if (!c)
    return NULL;
  c->e = e;
  c->next = *list;
  if (c->next)
    c->next->prev = &c->next;
  c->prev = list;
  *list = c;
  return c;
}

void media_conf_destroy(media_conf_t *c)
{
  if (!c)
    return;
  while (c->n)
    media_conf_leave(c, c->m[c->n - 1]->s);
  *c->prev = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
}

int media_conf_join(media_conf_t *c, struct media_session *s, char *err, size_t errlen)
{
  unsigned rate = media_session_rate(s);
  member_t *m;
  for (int i = 0; i < c->n; i++)
    if (c->m[i]->s == s)
      return 0;
  if (!rate) {
    snprintf(err, errlen, "no media negotiated yet");
    return -1;
  }
  if (c->n == MEDIA_CONF_MAX) {
    snprintf(err, errlen, "the conference is full (%d members)", MEDIA_CONF_MAX);
    return -1;
  }
  m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->s = s;
  m->rate = rate;
  if (!c->n) {
    c->rate = rate;
    c->frame = rate / 50;
  }
  if (rate != c->rate) {
    int e1 = 0, e2 = 0;
    m->in = speex_resampler_init(1, rate, c->rate, 3, &e1);
    m->back = speex_resampler_init(1, c->rate, rate, 3, &e2);
    if (!m->in || !m->back) {
      if (m->in)
        speex_resampler_destroy(m->in);
      if (m->back)
        speex_resampler_destroy(m->back);
      free(m);
      snprintf(err, errlen, "cannot resample %u to %u Hz", rate, c->rate);
      return -1;
    }
  }
  c->m[c->n++] = m;
  media_session_set_conf(s, c, m->out);
  return 0;
}

void media_conf_leave(media_conf_t *c, struct media_session *s)
{
  for (int i = 0; i < c->n; i++)
    if (c->m[i]->s == s) {
      media_session_set_conf(s, NULL, NULL);
      if (c->m[i]->in)
        speex_resampler_destroy(c->m[i]->in);
      if (c->m[i]->back)
        speex_resampler_destroy(c->m[i]->back);
      free(c->m[i]);
      c->m[i] = c->m[--c->n];
      return;
    }
}

int media_conf_members(media_conf_t const *c) { return c->n; }

static int16_t clamp16(int32_t v)
{
  return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

static void mix(media_conf_t *c)
{
  int32_t sum[FRAME_MAX];
  int16_t const *heard[MEDIA_CONF_MAX];
  unsigned n = c->frame;
  if (!c->n || n == 0 || n > FRAME_MAX)
    return;
  memset(sum, 0, n * sizeof *sum);
  for (int i = 0; i < c->n; i++) {
    member_t *m = c->m[i];
    unsigned frame, rate;
    int16_t const *h = media_session_heard(m->s, &frame, &rate);
    heard[i] = NULL;
    if (!frame || rate != m->rate || frame > FRAME_MAX)
      continue; /* not running (yet), or renegotiated to another rate */
    if (m->in) {
      spx_uint32_t in_len = frame, out_len = n;
      speex_resampler_process_int(m->in, 0, h, &in_len, m->heard, &out_len);
      if (out_len < n)
        memset(m->heard + out_len, 0, (n - out_len) * sizeof *m->heard);
      h = m->heard;
    } else if (frame != n) {
      continue;
    }
    heard[i] = h;
    for (unsigned k = 0; k < n; k++)
      sum[k] += h[k];
  }
  for (int i = 0; i < c->n; i++) {
    member_t *m = c->m[i];
    int16_t mixed[FRAME_MAX];
    int16_t *out = m->back ? mixed : m->out;
    for (unsigned k = 0; k < n; k++)
      out[k] = clamp16(heard[i] ? sum[k] - heard[i][k] : sum[k]);
    if (m->back) {
      spx_uint32_t in_len = n, out_len = m->rate / 50;
      speex_resampler_process_int(m->back, 0, mixed, &in_len, m->out, &out_len);
      if (out_len < m->rate / 50)
        memset(m->out + out_len, 0, (m->rate / 50 - out_len) * sizeof *m->out);
    }
  }
}

void media_conf_mix_all(media_conf_t *list)
{
  for (media_conf_t *c = list; c; c = c->next)
    mix(c);
}
