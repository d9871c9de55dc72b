/* loop.c — the one event loop: a sofia su_root with timers, fd watches and
 * signals on it. Everything that runs in luasip (SIP transports, timers,
 * stdin for the REPL, later RTP and stores) is registered on this root. */
#include "loop.h"

#include <sofia-sip/su.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/su_time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct loop {
  su_home_t home[1];
  su_root_t *root;
  int pollfd;
  int activity;    /* application callbacks run during this step */
  unsigned long dispatched; /* quiet watch wakeups */
  loop_counts_t counts;
  /* signals */
  int sig_pipe[2];
  su_wait_t sig_wait[1];
  int sig_index;
  loop_signal_f *sig_cb;
  void *sig_arg;
};

struct loop_timer {
  loop_t *loop;
  su_timer_t *timer;
  loop_timer_f *cb;
  void *arg;
  double repeat_ms;
  su_time_t due;
  int armed;
};

struct loop_watch {
  loop_t *loop;
  su_wait_t wait[1];
  int index;
  int fd;
  int events;
  int quiet;
  loop_watch_f *cb;
  void *arg;
};

/* ---- the pollable fd ------------------------------------------------------
 * sofia's epoll port keeps its epoll descriptor private. It is the one fd
 * that becomes readable when the root has I/O to dispatch, so embedding
 * loops (luv, cqueues) need it. We find it by listing the eventpoll fds
 * before and after su_root_create(): the new one is sofia's. */

#define MAX_EPOLL_SCAN 64

static int list_epoll_fds(int *fds, int max)
{
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *d;
  int n = 0;
  if (!dir)
    return 0;
  while ((d = readdir(dir)) && n < max) {
    char path[300], target[64];
    ssize_t len;
    if (d->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/self/fd/%s", d->d_name);
    len = readlink(path, target, sizeof target - 1);
    if (len <= 0)
      continue;
    target[len] = '\0';
    if (strcmp(target, "anon_inode:[eventpoll]") == 0)
      fds[n++] = atoi(d->d_name);
  }
  closedir(dir);
  return n;
}

int loop_open_fds(void)
{
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *d;
  int n = 0;
  if (!dir)
    return -1;
  while ((d = readdir(dir)))
    n += d->d_name[0] != '.';
  closedir(dir);
  return n - 1; /* the directory stream itself */
}

static int find_new_fd(int const *before, int nbefore, int const *after, int nafter)
{
  for (int i = 0; i < nafter; i++) {
    int seen = 0;
    for (int j = 0; j < nbefore; j++)
      seen |= before[j] == after[i];
    if (!seen)
      return after[i];
  }
  return -1;
}

/* ---- loop ---------------------------------------------------------------- */

loop_t *loop_create(void)
{
  int before[MAX_EPOLL_SCAN], after[MAX_EPOLL_SCAN], nbefore, nafter;
  loop_t *loop;

  if (su_init() != 0)
    return NULL;
  loop = su_home_new(sizeof *loop);
  if (!loop) {
    su_deinit();
    return NULL;
  }
  loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
  loop->sig_index = -1;

  nbefore = list_epoll_fds(before, MAX_EPOLL_SCAN);
  loop->root = su_root_create(loop);
  if (!loop->root) {
    su_home_unref(loop->home);
    su_deinit();
    return NULL;
  }
  nafter = list_epoll_fds(after, MAX_EPOLL_SCAN);
  loop->pollfd = find_new_fd(before, nbefore, after, nafter);
  /* Sofia runs clones (nua's stack) in threads of their own by default:
   * keep everything on this one loop, the Lua thread. */
  su_root_threading(loop->root, 0);
  /* Sofia writes to TCP sockets that peers may have closed. */
  signal(SIGPIPE, SIG_IGN);
  return loop;
}

void loop_destroy(loop_t *loop)
{
  if (!loop)
    return;
  loop_signals_disable(loop);
  su_root_destroy(loop->root);
  su_home_unref(loop->home);
  su_deinit();
}

su_root_t *loop_root(loop_t const *loop) { return loop->root; }
int loop_pollfd(loop_t const *loop) { return loop->pollfd; }
loop_counts_t loop_counts(loop_t const *loop) { return loop->counts; }

/* su_timer_expire() reports the time to the first timer that is not yet due
 * and fires those that are. Asked with a clock one day in the past, nothing
 * is due, so it only measures; we then take the day back off. */
#define MEASURE_SHIFT_MS (24L * 3600 * 1000)

static long queue_next(su_timer_queue_t *q, su_time_t shifted)
{
  su_duration_t t = SU_WAIT_FOREVER;
  if (!q)
    return -1;
  su_timer_expire(q, &t, shifted);
  if (t == SU_WAIT_FOREVER || t < 0)
    return -1;
  t -= MEASURE_SHIFT_MS;
  return t < 0 ? 0 : (long)t;
}

long loop_next_timeout(loop_t *loop)
{
  su_time_t shifted = su_now();
  long a, b;
  shifted.tv_sec -= MEASURE_SHIFT_MS / 1000;
  a = queue_next(su_task_timers(su_root_task(loop->root)), shifted);
  b = queue_next(su_task_deferrable(su_root_task(loop->root)), shifted);
  if (a < 0)
    return b;
  if (b < 0)
    return a;
  return a < b ? a : b;
}

/* One turn: dispatch what is ready now; if that woke the application, return
 * at once so its wait loops can look again. Otherwise wait on the epoll fd
 * for I/O or the next timer, and dispatch again.
 *
 * We wait ourselves rather than in su_root_step(root, timeout): sofia fires
 * due timers first and then sleeps out the timeout, so a step that fires
 * the last timer would sleep until the next packet. The next timer is known
 * to the millisecond, rounded down; we round up so the wait never ends
 * just short of the deadline and spins. */
/* Dispatch what is ready: sofia's epoll port serves at most four fds per
 * step, so while only quiet watches ran, step again (bounded), up to the
 * first application callback or until nothing more is ready. */
#define DISPATCH_ROUNDS 64
static void dispatch(loop_t *loop)
{
  for (int i = 0; i < DISPATCH_ROUNDS; i++) {
    unsigned long before = loop->dispatched;
    su_root_step(loop->root, 0);
    if (loop->activity || loop->dispatched == before)
      break;
  }
}

long loop_step(loop_t *loop, long timeout_ms)
{
  if (loop->pollfd < 0) {
    su_duration_t d = su_root_step(loop->root, timeout_ms < 0 ? SU_WAIT_FOREVER : (su_duration_t)timeout_ms);
    return d == SU_WAIT_FOREVER ? -1 : (long)d;
  }
  loop->activity = 0;
  dispatch(loop);
  if (!loop->activity && timeout_ms != 0) {
    struct pollfd p = { .fd = loop->pollfd, .events = POLLIN };
    long wait = timeout_ms, next = loop_next_timeout(loop);
    if (next >= 0 && (wait < 0 || next + 1 < wait))
      wait = next + 1;
    (void)poll(&p, 1, wait > INT_MAX ? INT_MAX : (int)wait);
    dispatch(loop);
  }
  return loop_next_timeout(loop);
}

void loop_note_activity(loop_t *loop) { loop->activity++; }

double loop_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- timers -------------------------------------------------------------- */

static su_time_t time_add_ms(su_time_t t, double ms)
{
  long long us = (long long)(ms * 1000.0 + 0.5);
  long long usec = (long long)t.tv_usec + us;
  long long carry = usec >= 0 ? usec / 1000000 : -((-usec + 999999) / 1000000);
  t.tv_sec = (unsigned long)((long long)t.tv_sec + carry);
  t.tv_usec = (unsigned long)(usec - carry * 1000000);
  return t;
}

static void timer_wakeup(su_root_magic_t *magic, su_timer_t *st, su_timer_arg_t *arg)
{
  loop_timer_t *t = arg;
  (void)magic;
  if (t->repeat_ms > 0) {
    /* Keep the phase: skip whole periods we were too late for. */
    su_time_t now = su_now();
    double late_us = su_time_diff(now, t->due) * 1e6;
    long long skip = late_us >= 0 ? (long long)(late_us / (t->repeat_ms * 1000.0)) : 0;
    t->due = time_add_ms(t->due, t->repeat_ms * (double)(skip + 1));
    su_timer_set_at(st, timer_wakeup, t, t->due);
  } else {
    t->armed = 0;
    t->loop->counts.armed--;
  }
  t->loop->activity++;
  t->cb(t, t->arg); /* may destroy t: touch nothing after */
}

loop_timer_t *loop_timer_create(loop_t *loop, loop_timer_f *cb, void *arg)
{
  loop_timer_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->timer = su_timer_create(su_root_task(loop->root), 0);
  if (!t->timer) {
    free(t);
    return NULL;
  }
  t->loop = loop;
  t->cb = cb;
  t->arg = arg;
  loop->counts.timers++;
  return t;
}

int loop_timer_start(loop_timer_t *t, double delay_ms, double repeat_ms)
{
  if (delay_ms < 0)
    delay_ms = 0;
  t->repeat_ms = repeat_ms > 0 ? repeat_ms : 0;
  t->due = time_add_ms(su_now(), delay_ms);
  if (su_timer_set_at(t->timer, timer_wakeup, t, t->due) < 0)
    return -1;
  if (!t->armed)
    t->loop->counts.armed++;
  t->armed = 1;
  return 0;
}

void loop_timer_stop(loop_timer_t *t)
{
  if (!t->armed)
    return;
  su_timer_reset(t->timer);
  t->armed = 0;
  t->loop->counts.armed--;
}

int loop_timer_armed(loop_timer_t const *t) { return t->armed; }

void loop_timer_destroy(loop_timer_t *t)
{
  if (!t)
    return;
  loop_timer_stop(t);
  su_timer_destroy(t->timer);
  t->loop->counts.timers--;
  free(t);
}

/* ---- fd watches ---------------------------------------------------------- */

static int to_poll_events(int events)
{
  return (events & LOOP_READ ? SU_WAIT_IN : 0) | (events & LOOP_WRITE ? SU_WAIT_OUT : 0);
}

static int watch_wakeup(su_root_magic_t *magic, su_wait_t *wait, su_wakeup_arg_t *arg)
{
  loop_watch_t *w = arg;
  int rev = wait->revents, events = 0;
  (void)magic;
  wait->revents = 0;
  if (rev & SU_WAIT_IN)
    events |= LOOP_READ;
  if (rev & SU_WAIT_OUT)
    events |= LOOP_WRITE;
  /* On error or hang-up, wake it for what it waits for: its own read or
   * write then reports the error. */
  if (rev & (SU_WAIT_ERR | SU_WAIT_HUP))
    events |= w->events;
  if (events) {
    if (w->quiet)
      w->loop->dispatched++;
    else
      w->loop->activity++;
    w->cb(w, events, w->arg); /* may destroy w */
  }
  return 0;
}

loop_watch_t *loop_watch_create(loop_t *loop, int fd, int events,
                                loop_watch_f *cb, void *arg)
{
  loop_watch_t *w;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    errno = EBADF;
    return NULL;
  }
  w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->loop = loop;
  w->fd = fd;
  w->quiet = (events & LOOP_QUIET) != 0;
  w->events = events & (LOOP_READ | LOOP_WRITE);
  w->cb = cb;
  w->arg = arg;
  if (su_wait_create(w->wait, fd, to_poll_events(events)) < 0 ||
      (w->index = su_root_register(loop->root, w->wait, watch_wakeup, w, 0)) < 0) {
    free(w);
    return NULL;
  }
  loop->counts.watches++;
  return w;
}

int loop_watch_modify(loop_watch_t *w, int events)
{
  if (su_root_eventmask(w->loop->root, w->index, w->fd, to_poll_events(events)) < 0)
    return -1;
  w->events = events & (LOOP_READ | LOOP_WRITE);
  return 0;
}

int loop_watch_fd(loop_watch_t const *w) { return w->fd; }

void loop_watch_destroy(loop_watch_t *w)
{
  if (!w)
    return;
  su_root_deregister(w->loop->root, w->index);
  w->loop->counts.watches--;
  free(w);
}

/* ---- signals --------------------------------------------------------------
 * A self-pipe: the handler writes the signal number, the loop reads it and
 * calls back in normal context. Signal dispositions are process-wide, so
 * this is the one piece of static state in the core. */

static int signal_write_fd = -1;
static volatile sig_atomic_t signal_unread[NSIG];
static int const handled_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define N_HANDLED (sizeof handled_signals / sizeof handled_signals[0])
static struct sigaction saved_actions[N_HANDLED];

static void signal_handler(int signo)
{
  int saved = errno;
  unsigned char b = (unsigned char)signo;
  if (signo != SIGHUP && signal_unread[signo]) {
    /* The loop has not run since the last one: do not trap the user. */
    signal(signo, SIG_DFL);
    raise(signo);
  }
  signal_unread[signo] = 1;
  if (signal_write_fd >= 0 && write(signal_write_fd, &b, 1) < 0) {
    /* pipe full: the loop already has signals to read */
  }
  errno = saved;
}

static int signal_wakeup(su_root_magic_t *magic, su_wait_t *wait, su_wakeup_arg_t *arg)
{
  loop_t *loop = arg;
  unsigned char buf[64];
  ssize_t n;
  (void)magic;
  wait->revents = 0;
  while ((n = read(loop->sig_pipe[0], buf, sizeof buf)) > 0) {
    loop->activity++;
    for (ssize_t i = 0; i < n; i++) {
      signal_unread[buf[i]] = 0;
      if (loop->sig_cb)
        loop->sig_cb(buf[i], loop->sig_arg);
    }
  }
  return 0;
}

int loop_signals_enable(loop_t *loop, loop_signal_f *cb, void *arg)
{
  struct sigaction sa;
  if (loop->sig_index >= 0) {
    loop->sig_cb = cb;
    loop->sig_arg = arg;
    return 0;
  }
  if (signal_write_fd >= 0) {
    errno = EBUSY;
    return -1;
  }
  if (pipe2(loop->sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
    return -1;
  su_wait_create(loop->sig_wait, loop->sig_pipe[0], SU_WAIT_IN);
  loop->sig_index = su_root_register(loop->root, loop->sig_wait, signal_wakeup, loop, 0);
  if (loop->sig_index < 0) {
    close(loop->sig_pipe[0]);
    close(loop->sig_pipe[1]);
    loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
    return -1;
  }
  loop->sig_cb = cb;
  loop->sig_arg = arg;
  signal_write_fd = loop->sig_pipe[1];
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = signal_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < N_HANDLED; i++) {
    signal_unread[handled_signals[i]] = 0;
    sigaction(handled_signals[i], &sa, &saved_actions[i]);
  }
  return 0;
}

void loop_signals_disable(loop_t *loop)
{
  if (loop->sig_index < 0)
    return;
  for (size_t i = 0; i < N_HANDLED; i++)
    sigaction(handled_signals[i], &saved_actions[i], NULL);
  signal_write_fd = -1;
  su_root_deregister(loop->root, loop->sig_index);
  loop->sig_index = -1;
  close(loop->sig_pipe[0]);
  close(loop->sig_pipe[1]);
  loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
  loop->sig_cb = NULL;
}
