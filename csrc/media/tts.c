/* tts.c — espeak-ng on a worker thread, results through an eventfd. See
 * tts.h. */
#include "media/tts.h"

#include <dirent.h>
#include <errno.h>
#include <espeak-ng/speak_lib.h>
#include <fcntl.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct job {
  struct job *next;
  unsigned id;
  char *text, *voice, *name;
  char *path;     /* done: the file */
  char err[400];  /* done: why not */
} job_t;

struct tts {
  loop_t *loop;
  loop_watch_t *watch;
  tts_done_f *done;
  void *arg;
  int efd;
  char folder[64];
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  job_t *queue, **queue_tail;  /* waiting for the worker */
  job_t *finished;             /* waiting for the loop */
  int closing;
  unsigned next_id;
};

/* espeak-ng is one per process: its calls are serialised here. */
static pthread_mutex_t espeak_mu = PTHREAD_MUTEX_INITIALIZER;
static int espeak_rate;      /* 0: not initialised; -1: failed */

/* The file being written by the synthesis callback. */
typedef struct {
  SNDFILE *f;
  int failed;
} sink_t;

static int on_samples(short *wav, int n, espeak_EVENT *events)
{
  sink_t *sink = events ? events->user_data : NULL;
  if (sink && wav && n > 0 && !sink->failed &&
      sf_writef_short(sink->f, wav, n) != n)
    sink->failed = 1;
  return 0;
}

static void synthesise(tts_t *t, job_t *j)
{
  char path[256], tmp[300];
  SF_INFO info;
  sink_t sink = { NULL, 0 };
  int fd;
  snprintf(path, sizeof path, "%s/%s.wav", t->folder, j->name);
  if (access(path, R_OK) == 0) {
    j->path = strdup(path);
    return;
  }
  pthread_mutex_lock(&espeak_mu);
  if (!espeak_rate) {
    espeak_rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_DONT_EXIT);
    if (espeak_rate <= 0)
      espeak_rate = -1;
    else
      espeak_SetSynthCallback(on_samples);
  }
  if (espeak_rate < 0) {
    snprintf(j->err, sizeof j->err, "espeak-ng did not initialise (voice data missing?)");
    goto out;
  }
  if (espeak_SetVoiceByName(j->voice) != EE_OK) {
    snprintf(j->err, sizeof j->err, "espeak-ng has no voice %.60s", j->voice);
    goto out;
  }
  snprintf(tmp, sizeof tmp, "%s.partXXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(j->err, sizeof j->err, "%s: %s", tmp, strerror(errno));
    goto out;
  }
  memset(&info, 0, sizeof info);
  info.samplerate = espeak_rate;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  sink.f = sf_open_fd(fd, SFM_WRITE, &info, 1);
  if (!sink.f) {
    snprintf(j->err, sizeof j->err, "%s: %s", tmp, sf_strerror(NULL));
    unlink(tmp);
    goto out;
  }
  if (espeak_Synth(j->text, strlen(j->text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL,
                   &sink) != EE_OK)
    sink.failed = 1;
  espeak_Synchronize();
  if (sf_close(sink.f) || sink.failed) {
    snprintf(j->err, sizeof j->err, "speech synthesis failed");
    unlink(tmp);
    goto out;
  }
  if (rename(tmp, path) < 0) {
    snprintf(j->err, sizeof j->err, "%s: %s", path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  j->path = strdup(path);
out:
  pthread_mutex_unlock(&espeak_mu);
}

static void *worker(void *arg)
{
  tts_t *t = arg;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    job_t *j;
    while (!t->queue && !t->closing)
      pthread_cond_wait(&t->wake, &t->mu);
    if (t->closing)
      break;
    j = t->queue;
    t->queue = j->next;
    if (!t->queue)
      t->queue_tail = &t->queue;
    pthread_mutex_unlock(&t->mu);
    synthesise(t, j);
    pthread_mutex_lock(&t->mu);
    j->next = t->finished;
    t->finished = j;
    uint64_t one = 1;
    if (write(t->efd, &one, sizeof one) < 0) {
      /* the counter is saturated only if nobody reads: nothing to do */
    }
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void free_job(job_t *j)
{
  free(j->text);
  free(j->voice);
  free(j->name);
  free(j->path);
  free(j);
}

static void on_finished(loop_watch_t *w, int revents, void *arg)
{
  tts_t *t = arg;
  uint64_t n;
  job_t *list, *rev = NULL;
  (void)w, (void)revents;
  if (read(t->efd, &n, sizeof n) < 0 && errno != EAGAIN)
    return;
  pthread_mutex_lock(&t->mu);
  list = t->finished;
  t->finished = NULL;
  pthread_mutex_unlock(&t->mu);
  while (list) { /* oldest first */
    job_t *next = list->next;
    list->next = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    job_t *j = rev;
    rev = j->next;
    t->done(t->arg, j->id, j->path, j->path ? NULL : j->err);
    free_job(j);
  }
}

tts_t *tts_create(loop_t *loop, tts_done_f *done, void *arg, char *err, size_t errlen)
{
  tts_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->loop = loop;
  t->done = done;
  t->arg = arg;
  t->queue_tail = &t->queue;
  snprintf(t->folder, sizeof t->folder, "/tmp/luasip-tts-XXXXXX");
  if (!mkdtemp(t->folder)) {
    snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
    free(t);
    return NULL;
  }
  t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (t->efd < 0 || !(t->watch = loop_watch_create(loop, t->efd, LOOP_READ, on_finished, t))) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->wake, NULL);
  if (pthread_create(&t->thread, NULL, worker, t) != 0) {
    snprintf(err, errlen, "cannot start the speech thread");
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->wake);
    goto fail;
  }
  return t;
fail:
  loop_watch_destroy(t->watch);
  if (t->efd >= 0)
    close(t->efd);
  rmdir(t->folder);
  free(t);
  return NULL;
}

static void remove_folder(char const *folder)
{
  DIR *d = opendir(folder);
  struct dirent *e;
  char path[512];
  if (d) {
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(folder);
}

void tts_destroy(tts_t *t)
{
  job_t *j;
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  t->closing = 1;
  pthread_cond_signal(&t->wake);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  while ((j = t->queue)) {
    t->queue = j->next;
    free_job(j);
  }
  while ((j = t->finished)) {
    t->finished = j->next;
    free_job(j);
  }
  loop_watch_destroy(t->watch);
  close(t->efd);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->wake);
  remove_folder(t->folder);
  free(t);
}

unsigned tts_say(tts_t *t, char const *text, char const *voice, char const *name, char *err,
                 size_t errlen)
{
  job_t *j;
  size_t len = strlen(text);
  if (!len || len > TTS_MAX_TEXT) {
    snprintf(err, errlen, "text of 1 to %d bytes", TTS_MAX_TEXT);
    return 0;
  }
  if (!name[0] || strlen(name) > 100 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                                              strlen(name)) {
    snprintf(err, errlen, "file name must be [A-Za-z0-9_-], at most 100");
    return 0;
  }
  j = calloc(1, sizeof *j);
  if (!j || !(j->text = strdup(text)) || !(j->voice = strdup(voice ? voice : "en")) ||
      !(j->name = strdup(name))) {
    if (j)
      free_job(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  pthread_mutex_lock(&t->mu);
  j->id = ++t->next_id ? t->next_id : ++t->next_id;
  *t->queue_tail = j;
  t->queue_tail = &j->next;
  pthread_cond_signal(&t->wake);
  pthread_mutex_unlock(&t->mu);
  return j->id;
}

char const *tts_folder(tts_t const *t) { return t->folder; }
