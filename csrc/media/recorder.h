/* recorder.h — a recording written through libsndfile: WAV (16-bit PCM)
 * or, for a .ogg / .opus path, Ogg/Opus. It is written to a temporary
 * file next to the target and only fsync'ed and renamed into place when it
 * finishes, so a partial recording never appears under its final name.
 * No Lua. */
#ifndef LUASIP_MEDIA_RECORDER_H
#define LUASIP_MEDIA_RECORDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct recorder recorder_t;

recorder_t *recorder_open(char const *path, unsigned rate, char *err, size_t errlen);
int recorder_write(recorder_t *r, int16_t const *pcm, int n);
/* Samples written so far. */
uint64_t recorder_samples(recorder_t const *r);
/* keep: flush, fsync, rename into place (0, or -1 with err); otherwise
 * the temporary file is removed. Frees r either way. */
int recorder_close(recorder_t *r, int keep, char *err, size_t errlen);

#endif
