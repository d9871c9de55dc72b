/* loop.h — the one event loop: a sofia su_root with timers, fd watches and
 * signals on it. Pure C; the Lua binding is csrc/lloop.c. */
#ifndef LUASIP_LOOP_H
#define LUASIP_LOOP_H

#include <sofia-sip/su_wait.h>

typedef struct loop loop_t;
typedef struct loop_timer loop_timer_t;
typedef struct loop_watch loop_watch_t;

typedef void loop_timer_f(loop_timer_t *t, void *arg);
typedef void loop_watch_f(loop_watch_t *w, int revents, void *arg);
typedef void loop_signal_f(int signo, void *arg);

/* LOOP_QUIET marks a watch whose callback enters the application only
 * through the bindings' trampoline (which notes activity itself): its
 * wakeups alone do not end loop_step, which goes on dispatching such
 * watches (the media engine's RTP sockets) for a bounded number of rounds
 * instead of returning to Lua after every few packets. */
enum { LOOP_READ = 1, LOOP_WRITE = 2, LOOP_QUIET = 4 };

/* Live object counts, so tests can assert nothing leaks. */
typedef struct {
  int timers;  /* created and not destroyed */
  int armed;   /* of those, armed */
  int watches;
} loop_counts_t;

loop_t *loop_create(void);
void loop_destroy(loop_t *loop);
su_root_t *loop_root(loop_t const *loop);

/* Dispatch what is ready; if no application callback ran, wait at most
 * timeout_ms (-1: until an event) for I/O or the next timer and dispatch
 * again. Returns the milliseconds until the next timer, or -1 if none. */
long loop_step(loop_t *loop, long timeout_ms);
/* Tell the loop an application callback ran (the bindings' trampoline does),
 * so loop_step returns instead of waiting on. */
void loop_note_activity(loop_t *loop);
/* Milliseconds until the next timer (-1 if none), without dispatching. */
long loop_next_timeout(loop_t *loop);
/* An fd that polls readable when loop_step has I/O to dispatch; -1 if the
 * sofia port in use does not expose one. */
int loop_pollfd(loop_t const *loop);
/* Monotonic clock in seconds. */
double loop_now(void);
loop_counts_t loop_counts(loop_t const *loop);
/* Open file descriptors in the process (from /proc/self/fd), or -1. */
int loop_open_fds(void);

/* Timers. delay and repeat are in milliseconds; repeat 0 means one-shot.
 * A repeating timer keeps its phase: late wakeups do not accumulate drift.
 * A callback may stop, restart or destroy its own timer. */
loop_timer_t *loop_timer_create(loop_t *loop, loop_timer_f *cb, void *arg);
int loop_timer_start(loop_timer_t *t, double delay_ms, double repeat_ms);
void loop_timer_stop(loop_timer_t *t);
int loop_timer_armed(loop_timer_t const *t);
void loop_timer_destroy(loop_timer_t *t);

/* File-descriptor watches (LOOP_READ | LOOP_WRITE). A callback may modify
 * or destroy its own watch. */
loop_watch_t *loop_watch_create(loop_t *loop, int fd, int events,
                                loop_watch_f *cb, void *arg);
int loop_watch_modify(loop_watch_t *w, int events);
int loop_watch_fd(loop_watch_t const *w);
void loop_watch_destroy(loop_watch_t *w);

/* Route SIGINT, SIGTERM and SIGHUP into the loop. Signals are per process,
 * so only one loop can own them; a second call from another loop fails with
 * EBUSY. If SIGINT or SIGTERM arrives again before the loop has consumed the
 * first (a script stuck outside the loop), the default action is restored
 * and the signal re-raised, so the process can always be stopped. */
int loop_signals_enable(loop_t *loop, loop_signal_f *cb, void *arg);
void loop_signals_disable(loop_t *loop);

#endif
