/* sofialog.c — capture sofia-sip's log output into a callback.
 *
 * Sofia logs in fragments through su_log_t objects: each module has one,
 * and modules without their own logger fall back to su_log_default. tport's
 * message dump (tport_log_msg) writes to su_log_default at level 0 as
 *   "recv 412 bytes from udp/[127.0.0.1]:5061 at 10:00:00.000001:\n"
 *   "   ----...\n" "   <line>\n" ... "   ----...\n"
 * so lines on that channel are parsed into whole-message trace records. */
#include "sofialog.h"

#include <sofia-sip/su_log.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exported by libsofia-sip-ua but not declared in its public headers. */
extern su_log_t nta_log[], tport_log[], nua_log[], soa_log[], nea_log[],
  iptsec_log[], stun_log[], sresolv_log[], su_log_global[];

#define LINE_MAX_LEN 4096
#define TRACE_MAX_LEN (256 * 1024)

typedef struct channel {
  sofialog_t *owner;
  su_log_t *log;
  char const *name;
  int is_default;
  size_t len;
  char line[LINE_MAX_LEN];
} channel_t;

enum { TRACE_IDLE, TRACE_HEAD, TRACE_BODY };

struct sofialog {
  sofialog_f *cb;
  void *arg;
  channel_t channels[10];
  int nchannels;
  int trace_state;
  char trace_dir[8];
  size_t trace_bytes;   /* the size the dump's header announced */
  size_t trace_logged;  /* message bytes seen so far, line ends as 1 byte */
  size_t trace_lines;
  char *trace;
  size_t trace_len, trace_cap;
};

static void trace_append(sofialog_t *s, char const *p, size_t n)
{
  if (s->trace_len + n + 1 > s->trace_cap) {
    size_t cap = s->trace_cap ? s->trace_cap * 2 : 4096;
    char *t;
    while (cap < s->trace_len + n + 1)
      cap *= 2;
    if (cap > TRACE_MAX_LEN || !(t = realloc(s->trace, cap)))
      return; /* oversized dump: keep what fits */
    s->trace = t;
    s->trace_cap = cap;
  }
  memcpy(s->trace + s->trace_len, p, n);
  s->trace_len += n;
  s->trace[s->trace_len] = '\0';
}

/* tport_log_msg() frames each dump with this line (3 spaces, 72 dashes). */
static int is_separator(char const *l, size_t n)
{
  if (n != 75 || memcmp(l, "   ", 3) != 0)
    return 0;
  for (size_t i = 3; i < n; i++)
    if (l[i] != '-')
      return 0;
  return 1;
}

/* "recv 281 bytes from udp/[...]:5061 at 07:18:30.820620:" -> 281 */
static int dump_header(char const *l, size_t n, size_t *bytes)
{
  size_t i = 5, v = 0;
  if (n < 16 || l[n - 1] != ':' || (memcmp(l, "recv ", 5) != 0 &&
      memcmp(l, "send ", 5) != 0 && memcmp(l, "sent ", 5) != 0))
    return 0;
  if (i >= n || l[i] < '0' || l[i] > '9')
    return 0;
  for (; i < n && l[i] >= '0' && l[i] <= '9' && v < (size_t)1 << 40; i++)
    v = v * 10 + (size_t)(l[i] - '0');
  if (n - i < 7 || memcmp(l + i, " bytes ", 7) != 0)
    return 0;
  *bytes = v;
  return 1;
}

static void trace_emit(sofialog_t *s)
{
  s->trace_state = TRACE_IDLE;
  s->cb(s->arg, SOFIALOG_TRACE, s->trace_dir, s->trace ? s->trace : "", s->trace_len);
}

/* A whole line from su_log_default. */
static void default_line(sofialog_t *s, char const *l, size_t n)
{
  size_t bytes;
  switch (s->trace_state) {
  case TRACE_IDLE:
    if (dump_header(l, n, &bytes)) {
      s->trace_state = TRACE_HEAD;
      s->trace_bytes = bytes;
      s->trace_logged = s->trace_lines = 0;
      memcpy(s->trace_dir, l, 4);
      s->trace_dir[4] = '\0';
      s->trace_len = 0;
      trace_append(s, l, n - 1); /* without the final ':' */
      trace_append(s, "\n", 1);
      return;
    }
    s->cb(s->arg, SOFIALOG_LINE, "su", l, n);
    return;
  case TRACE_HEAD: /* the opening separator */
    s->trace_state = is_separator(l, n) ? TRACE_BODY : TRACE_IDLE;
    return;
  default: /* TRACE_BODY */
    /* A body line can look like the separator: it only closes the dump
     * once the lines seen could hold all the announced bytes (a line end
     * is 1 or 2 bytes in the message). A dump sofia cut short (lines over
     * 2047 bytes, NULs) is closed when it overruns. */
    if (is_separator(l, n) && s->trace_logged + s->trace_lines >= s->trace_bytes) {
      trace_emit(s);
      return;
    }
    if (n >= 3 && memcmp(l, "   ", 3) == 0)
      l += 3, n -= 3;
    trace_append(s, l, n);
    trace_append(s, "\n", 1);
    s->trace_logged += n + 1;
    s->trace_lines++;
    if (s->trace_logged > s->trace_bytes + 64)
      trace_emit(s);
  }
}

static void flush_line(channel_t *c)
{
  sofialog_t *s = c->owner;
  size_t n = c->len;
  c->len = 0;
  if (n > 0 && c->line[n - 1] == '\r')
    n--;
  if (c->is_default)
    default_line(s, c->line, n);
  else if (n > 0)
    s->cb(s->arg, SOFIALOG_LINE, c->name, c->line, n);
}

static void channel_feed(channel_t *c, char const *buf, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      flush_line(c);
      continue;
    }
    if (c->len == LINE_MAX_LEN - 1)
      flush_line(c);
    c->line[c->len++] = buf[i];
  }
}

static void logger(void *stream, char const *fmt, va_list ap)
{
  char buf[LINE_MAX_LEN];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  channel_feed(stream, buf, (size_t)n);
}

void sofialog_feed(sofialog_t *s, int default_channel, char const *text, size_t len)
{
  channel_feed(&s->channels[default_channel ? 0 : 2], text, len);
}

sofialog_t *sofialog_start(sofialog_f *cb, void *arg)
{
  static struct { su_log_t *log; char const *name; } const logs[] = {
    { su_log_default, "su" }, { su_log_global, "su" }, { nta_log, "nta" },
    { tport_log, "tport" }, { nua_log, "nua" }, { soa_log, "soa" },
    { nea_log, "nea" }, { iptsec_log, "iptsec" }, { stun_log, "stun" },
    { sresolv_log, "sresolv" },
  };
  sofialog_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->cb = cb;
  s->arg = arg;
  for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
    channel_t *c = &s->channels[s->nchannels++];
    c->owner = s;
    c->log = logs[i].log;
    c->name = logs[i].name;
    c->is_default = logs[i].log == su_log_default;
    su_log_redirect(c->log, logger, c);
  }
  return s;
}

void sofialog_stop(sofialog_t *s)
{
  if (!s)
    return;
  for (int i = 0; i < s->nchannels; i++)
    su_log_redirect(s->channels[i].log, NULL, NULL);
  free(s->trace);
  free(s);
}
