/* conf.c — N-1 mixing for conferences. See conf.h. */
#include "media/conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MAX 960 /* 20 ms at 48 kHz */

typedef struct {
  struct media_session *s;
  int16_t out[FRAME_MAX];    /* what this member hears */
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
  if (c->n && rate != c->rate) {
    snprintf(err, errlen, "the conference runs at %u Hz, this call at %u Hz", c->rate, rate);
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
  c->rate = rate;
  c->frame = rate / 50;
  c->m[c->n++] = m;
  media_session_set_conf(s, c, m->out);
  return 0;
}

void media_conf_leave(media_conf_t *c, struct media_session *s)
{
  for (int i = 0; i < c->n; i++)
    if (c->m[i]->s == s) {
      media_session_set_conf(s, NULL, NULL);
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
    unsigned frame, rate;
    heard[i] = media_session_heard(c->m[i]->s, &frame, &rate);
    if (frame != n || rate != c->rate) {
      heard[i] = NULL; /* not running (yet), or renegotiated away */
      continue;
    }
    for (unsigned k = 0; k < n; k++)
      sum[k] += heard[i][k];
  }
  for (int i = 0; i < c->n; i++) {
    int16_t *out = c->m[i]->out;
    if (heard[i])
      for (unsigned k = 0; k < n; k++)
        out[k] = clamp16(sum[k] - heard[i][k]);
    else
      for (unsigned k = 0; k < n; k++)
        out[k] = clamp16(sum[k]);
  }
}

void media_conf_mix_all(media_conf_t *list)
{
  for (media_conf_t *c = list; c; c = c->next)
    mix(c);
}
