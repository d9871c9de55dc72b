/* tts.h — speech from text (espeak-ng) off the loop thread.
 *
 * A worker thread synthesises each queued text into a WAV file (22050 Hz
 * mono, written to a temporary name and renamed) in a private folder made
 * with mkdtemp; completions come back to the loop through an eventfd. The
 * folder and its files are removed by tts_destroy. espeak-ng keeps
 * process-wide state, so every tts_t in a process shares one lock around
 * it (the only static state luasip has, forced by the library). No Lua. */
#ifndef LUASIP_MEDIA_TTS_H
#define LUASIP_MEDIA_TTS_H

#include "loop/loop.h"

#include <stddef.h>

typedef struct tts tts_t;

/* done(arg, id, path, err): path of the file, or err (path NULL). */
typedef void tts_done_f(void *arg, unsigned id, char const *path, char const *err);

tts_t *tts_create(loop_t *loop, tts_done_f *done, void *arg, char *err, size_t errlen);
/* Waits for the synthesis in progress, then frees everything. */
void tts_destroy(tts_t *t);

/* Queue text (UTF-8, at most TTS_MAX_TEXT bytes) in voice (an espeak-ng
 * voice name, NULL: "en") to become <folder>/<name>.wav; name is
 * [A-Za-z0-9_-]+. Returns the job's id (> 0), or 0 with err. If the file
 * exists already, done runs on the next loop iteration without work. */
#define TTS_MAX_TEXT 4096
unsigned tts_say(tts_t *t, char const *text, char const *voice, char const *name, char *err,
                 size_t errlen);

char const *tts_folder(tts_t const *t);

#endif
