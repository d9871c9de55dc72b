/* conf.h — conferences: a mix of every member's audio, in which each
 * member hears everyone but itself (N-1 mixing). Mixed once per engine
 * tick, before the sessions send: every member's frame played out last
 * tick is summed once, and each member gets the sum minus its own frame,
 * saturated to 16 bits. The mix runs at the first member's rate; members
 * at another rate are resampled (speexdsp) on the way in and out. No Lua. */
#ifndef LUASIP_MEDIA_CONF_H
#define LUASIP_MEDIA_CONF_H

#include <stddef.h>
#include <stdint.h>

typedef struct media_conf media_conf_t;
struct media_engine;
struct media_session;

#define MEDIA_CONF_MAX 256 /* members per conference */

media_conf_t *media_conf_create(struct media_engine *e);
/* Removes every member (they go back to silence) and frees. */
void media_conf_destroy(media_conf_t *c);
int media_conf_join(media_conf_t *c, struct media_session *s, char *err, size_t errlen);
void media_conf_leave(media_conf_t *c, struct media_session *s);
int media_conf_members(media_conf_t const *c);

/* For the engine: mix every conference in the list. */
void media_conf_mix_all(media_conf_t *list);

/* Session internals conf.c uses (session.c). */
int16_t const *media_session_heard(struct media_session const *s, unsigned *frame,
                                   unsigned *rate);
void media_session_set_conf(struct media_session *s, media_conf_t *c, int16_t const *feed);
media_conf_t **media_engine_confs(struct media_engine *e);
unsigned media_session_rate(struct media_session const *s);

#endif
