/* recorder.c — see recorder.h. */
#include "media/recorder.h"

#include <sndfile.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Samples gathered before one write: 20 ms frames would cost a write()
 * per call per tick; this is 0.5 s at 48 kHz, 3 s at 8 kHz. */
#define REC_BUFFER 24000

struct recorder {
  SNDFILE *sf;
  int fd;
  uint64_t samples;
  char *path, *tmp;
  int failed;
  size_t nbuf;
  int16_t buf[REC_BUFFER];
};

static int flush_buffer(recorder_t *r)
{
  if (r->nbuf && sf_write_short(r->sf, r->buf, (sf_count_t)r->nbuf) != (sf_count_t)r->nbuf)
    r->failed = 1;
  r->nbuf = 0;
  return r->failed ? -1 : 0;
}

static int format_for(char const *path)
{
  char const *dot = strrchr(path, '.');
  if (dot && (!strcasecmp(dot, ".ogg") || !strcasecmp(dot, ".opus")))
    return SF_FORMAT_OGG | SF_FORMAT_OPUS;
  return SF_FORMAT_WAV | SF_FORMAT_PCM_16;
}

recorder_t *recorder_open(char const *path, unsigned rate, char *err, size_t errlen)
{
  recorder_t *r = calloc(1, sizeof *r);
  SF_INFO info;
  size_t n = strlen(path);
  if (!r)
    goto nomem;
  r->fd = -1;
  r->path = strdup(path);
  r->tmp = malloc(n + 16);
  if (!r->path || !r->tmp)
    goto nomem;
  snprintf(r->tmp, n + 16, "%s.partXXXXXX", path);
  r->fd = mkstemp(r->tmp);
  if (r->fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    goto fail;
  }
  memset(&info, 0, sizeof info);
  info.samplerate = (int)rate;
  info.channels = 1;
  info.format = format_for(path);
  if ((info.format & SF_FORMAT_SUBMASK) == SF_FORMAT_OPUS && rate != 8000 && rate != 12000 &&
      rate != 16000 && rate != 24000 && rate != 48000)
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  r->sf = sf_open_fd(r->fd, SFM_WRITE, &info, 0);
  if (!r->sf) {
    snprintf(err, errlen, "%s: %s", path, sf_strerror(NULL));
    goto fail;
  }
  return r;
nomem:
  snprintf(err, errlen, "out of memory");
fail:
  if (r) {
    if (r->fd >= 0) {
      close(r->fd);
      unlink(r->tmp);
    }
    free(r->path);
    free(r->tmp);
    free(r);
  }
  return NULL;
}

int recorder_write(recorder_t *r, int16_t const *pcm, int n)
{
  if (n < 0 || r->failed)
    return -1;
  if (r->nbuf + (size_t)n > REC_BUFFER && flush_buffer(r) < 0)
    return -1;
  if ((size_t)n > REC_BUFFER) {
    if (sf_write_short(r->sf, pcm, n) != n)
      return r->failed = 1, -1;
  } else {
    memcpy(r->buf + r->nbuf, pcm, (size_t)n * sizeof *pcm);
    r->nbuf += (size_t)n;
  }
  r->samples += (uint64_t)n;
  return 0;
}

uint64_t recorder_samples(recorder_t const *r) { return r->samples; }

int recorder_close(recorder_t *r, int keep, char *err, size_t errlen)
{
  int rc = 0;
  if (flush_buffer(r) < 0 && keep) {
    snprintf(err, errlen, "%s: write failed", r->path);
    keep = 0;
    rc = -1;
  }
  sf_write_sync(r->sf);
  if (sf_close(r->sf) != 0 && keep) { /* writes the header; r->fd stays open */
    snprintf(err, errlen, "%s: %s", r->path, sf_strerror(NULL));
    rc = -1;
  }
  if (rc == 0 && keep) {
    if (fsync(r->fd) != 0 || rename(r->tmp, r->path) != 0) {
      snprintf(err, errlen, "%s: %s", r->path, strerror(errno));
      rc = -1;
    } else {
      /* and the directory, so the rename itself is durable */
      char *dir = strdup(r->path);
      int dfd = dir ? open(dirname(dir), O_RDONLY | O_DIRECTORY) : -1;
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
      free(dir);
    }
  }
  close(r->fd);
  if (rc != 0 || !keep)
    unlink(r->tmp);
  free(r->path);
  free(r->tmp);
  free(r);
  return rc;
}
