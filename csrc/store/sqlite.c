/* sqlite.c — the SQLite store engine: a WAL database, one writer thread that
 * commits whatever is queued as one durable transaction, and completions
 * handed back to the loop thread through an eventfd. See sqlite.h. */
#include "store/sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define CACHE_SIZE 32
#define ALIGN(n) (((n) + 15) & ~(size_t)15)

typedef struct job job_t;
struct job {
  job_t *next;
  sqlstore_done_f *done;
  void *arg;
  int nstmts;
  sqlstore_stmt_t *stmts; /* in the same allocation, with their values and text */
  int state;              /* 0 not yet decided, 1 committed, -1 failed */
  char *err;
};

typedef struct {
  char *sql;
  sqlite3_stmt *st;
  uint64_t used;
} cached_t;

struct sqlstore {
  pthread_mutex_t mu;    /* the lists, flags and stats below */
  pthread_cond_t wake;   /* the writer: work queued, or closing */
  pthread_cond_t exited; /* close(): the writer has finished */
  pthread_mutex_t dbmu;  /* the write connection: a batch or an exec */
  pthread_t thread;
  job_t *queue, **queue_tail;
  job_t *done, **done_tail;
  job_t *inflight; /* the batch the writer is running */
  int closing, abandoned, thread_done;
  int efd;
  sqlite3 *wdb; /* the writer's (and exec's, between batches) */
  sqlite3 *rdb; /* read-only, loop thread */
  cached_t cache[CACHE_SIZE]; /* the writer's prepared statements */
  uint64_t tick;
  uint64_t commits, jobs, failed;
  int pending; /* loop thread only */
};

static void set_err(char *err, size_t errlen, char const *fmt, ...)
{
  va_list ap;
  if (!err || !errlen)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- jobs ---------------------------------------------------------------- */

/* One allocation holding the job, its statements, their values and text. */
static job_t *job_new(sqlstore_stmt_t const *stmts, int n, sqlstore_done_f *done, void *arg)
{
  size_t size = ALIGN(sizeof(job_t)) + ALIGN(n * sizeof(sqlstore_stmt_t));
  size_t nvalues = 0;
  job_t *j;
  sqlstore_value_t *v;
  char *text;

  for (int i = 0; i < n; i++) {
    nvalues += stmts[i].nparams;
    size += strlen(stmts[i].sql) + 1;
    for (int k = 0; k < stmts[i].nparams; k++) {
      sqlstore_value_t const *p = &stmts[i].params[k];
      if (p->name)
        size += strlen(p->name) + 1;
      if (p->type == SQLSTORE_TEXT)
        size += p->len + 1;
    }
  }
  size += ALIGN(nvalues * sizeof(sqlstore_value_t));
  j = malloc(size);
  if (!j)
    return NULL;
  memset(j, 0, sizeof *j);
  j->done = done;
  j->arg = arg;
  j->nstmts = n;
  j->stmts = (sqlstore_stmt_t *)((char *)j + ALIGN(sizeof(job_t)));
  v = (sqlstore_value_t *)((char *)j->stmts + ALIGN(n * sizeof(sqlstore_stmt_t)));
  text = (char *)v + ALIGN(nvalues * sizeof(sqlstore_value_t));
  for (int i = 0; i < n; i++) {
    size_t len = strlen(stmts[i].sql) + 1;
    j->stmts[i].sql = memcpy(text, stmts[i].sql, len);
    text += len;
    j->stmts[i].params = v;
    j->stmts[i].nparams = stmts[i].nparams;
    for (int k = 0; k < stmts[i].nparams; k++, v++) {
      *v = stmts[i].params[k];
      if (v->name) {
        len = strlen(v->name) + 1;
        v->name = memcpy(text, v->name, len);
        text += len;
      }
      if (v->type == SQLSTORE_TEXT) {
        if (v->len)
          memcpy(text, v->s, v->len);
        text[v->len] = '\0';
        v->s = text;
        text += v->len + 1;
      }
    }
  }
  return j;
}

static void job_free(job_t *j)
{
  free(j->err);
  free(j);
}

/* Call done() for each job of a list and free it. Touches no store: a
 * done() may close the store the jobs came from. */
static void jobs_dispatch(job_t *list)
{
  while (list) {
    job_t *j = list;
    list = j->next;
    if (j->done)
      j->done(j->arg, j->state > 0, j->state > 0 ? NULL : j->err ? j->err : "write failed");
    job_free(j);
  }
}

/* Fail every job of the list not decided yet. */
static void jobs_fail(job_t *list, char const *err)
{
  for (job_t *j = list; j; j = j->next) {
    if (j->state != 0)
      continue;
    j->state = -1;
    j->err = strdup(err);
  }
}

/* ---- statements ---------------------------------------------------------- */

static int bind_values(sqlite3_stmt *st, sqlstore_value_t const *v, int n, char *err, size_t errlen)
{
  int count = sqlite3_bind_parameter_count(st);
  for (int i = 0; i < n; i++, v++) {
    int idx = v->pos, rc = SQLITE_OK;
    if (v->name) {
      static char const prefixes[] = ":@$";
      char buf[256];
      idx = 0;
      for (int p = 0; !idx && prefixes[p]; p++) {
        if (snprintf(buf, sizeof buf, "%c%s", prefixes[p], v->name) < (int)sizeof buf)
          idx = sqlite3_bind_parameter_index(st, buf);
      }
      if (!idx) {
        set_err(err, errlen, "the statement has no parameter named '%s'", v->name);
        return -1;
      }
    } else if (idx < 1 || idx > count) {
      set_err(err, errlen, "parameter %d is out of range: the statement has %d", idx, count);
      return -1;
    }
    switch (v->type) {
    case SQLSTORE_NULL: rc = sqlite3_bind_null(st, idx); break;
    case SQLSTORE_INT: rc = sqlite3_bind_int64(st, idx, v->i); break;
    case SQLSTORE_DOUBLE: rc = sqlite3_bind_double(st, idx, v->d); break;
    case SQLSTORE_TEXT:
      rc = sqlite3_bind_text64(st, idx, v->s, v->len, SQLITE_STATIC, SQLITE_UTF8);
      break;
    }
    if (rc != SQLITE_OK) {
      set_err(err, errlen, "%s", sqlite3_errstr(rc));
      return -1;
    }
  }
  return 0;
}

/* Only whitespace and semicolons may follow the one statement. */
static int only_one_statement(char const *tail)
{
  for (; tail && *tail; tail++)
    if (!strchr(" \t\r\n;", *tail))
      return 0;
  return 1;
}

static sqlite3_stmt *prepare(sqlite3 *db, char const *sql, unsigned flags, char *err, size_t errlen)
{
  sqlite3_stmt *st = NULL;
  char const *tail = NULL;
  if (sqlite3_prepare_v3(db, sql, -1, flags, &st, &tail) != SQLITE_OK) {
    set_err(err, errlen, "%s", sqlite3_errmsg(db));
    return NULL;
  }
  if (!st) {
    set_err(err, errlen, "empty SQL statement");
    return NULL;
  }
  if (!only_one_statement(tail)) {
    sqlite3_finalize(st);
    set_err(err, errlen, "one SQL statement at a time (a job takes a list of them)");
    return NULL;
  }
  return st;
}

/* The writer's statements, prepared once (few distinct texts are used). */
static sqlite3_stmt *cache_get(sqlstore_t *s, char const *sql, char *err, size_t errlen)
{
  cached_t *slot = &s->cache[0];
  sqlite3_stmt *st;
  for (int i = 0; i < CACHE_SIZE; i++) {
    cached_t *c = &s->cache[i];
    if (c->sql && strcmp(c->sql, sql) == 0) {
      c->used = ++s->tick;
      return c->st;
    }
    if (!c->sql || (slot->sql && c->used < slot->used))
      slot = c;
  }
  st = prepare(s->wdb, sql, SQLITE_PREPARE_PERSISTENT, err, errlen);
  if (!st)
    return NULL;
  if (slot->sql) {
    sqlite3_finalize(slot->st);
    free(slot->sql);
  }
  slot->sql = strdup(sql);
  if (!slot->sql) {
    sqlite3_finalize(st);
    slot->st = NULL;
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  slot->st = st;
  slot->used = ++s->tick;
  return st;
}

static void cache_clear(sqlstore_t *s)
{
  for (int i = 0; i < CACHE_SIZE; i++) {
    sqlite3_finalize(s->cache[i].st);
    free(s->cache[i].sql);
    memset(&s->cache[i], 0, sizeof s->cache[i]);
  }
}

/* Run one statement on the write connection. */
static int run_stmt(sqlstore_t *s, char const *sql, sqlstore_value_t const *params, int nparams,
                    char *err, size_t errlen)
{
  sqlite3_stmt *st = cache_get(s, sql, err, errlen);
  int rc;
  if (!st)
    return -1;
  if (bind_values(st, params, nparams, err, errlen) < 0) {
    sqlite3_clear_bindings(st);
    return -1;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    ;
  if (rc != SQLITE_DONE)
    set_err(err, errlen, "%s", sqlite3_errmsg(s->wdb));
  sqlite3_reset(st);
  sqlite3_clear_bindings(st); /* text was bound SQLITE_STATIC from the job */
  return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- the writer ---------------------------------------------------------- */

/* A job in its own savepoint: all of its statements or none. */
static int run_job(sqlstore_t *s, job_t *j, char *err, size_t errlen)
{
  if (run_stmt(s, "SAVEPOINT job", NULL, 0, err, errlen) < 0)
    return -1;
  for (int i = 0; i < j->nstmts; i++) {
    sqlstore_stmt_t const *q = &j->stmts[i];
    if (run_stmt(s, q->sql, q->params, q->nparams, err, errlen) < 0) {
      /* Some errors (I/O, disk full) roll the whole transaction back. */
      if (!sqlite3_get_autocommit(s->wdb)) {
        run_stmt(s, "ROLLBACK TO job", NULL, 0, NULL, 0);
        run_stmt(s, "RELEASE job", NULL, 0, NULL, 0);
      }
      return -1;
    }
  }
  return run_stmt(s, "RELEASE job", NULL, 0, err, errlen);
}

/* Run a batch as one transaction and decide every job's state. Returns 1
 * if something was committed. */
static int run_batch(sqlstore_t *s, job_t *batch)
{
  char err[512];
  for (;;) {
    int lost = 0, any = 0;
    if (run_stmt(s, "BEGIN IMMEDIATE", NULL, 0, err, sizeof err) < 0) {
      jobs_fail(batch, err);
      return 0;
    }
    for (job_t *j = batch; j && !lost; j = j->next) {
      if (j->state != 0)
        continue;
      if (run_job(s, j, err, sizeof err) < 0) {
        j->state = -1;
        j->err = strdup(err);
        /* The transaction is gone with the jobs run so far: run it again
         * without the failed ones. Each round fails one more, so it ends. */
        lost = sqlite3_get_autocommit(s->wdb);
      } else {
        any = 1;
      }
    }
    if (lost)
      continue;
    if (!any) {
      run_stmt(s, "ROLLBACK", NULL, 0, NULL, 0);
      return 0;
    }
    if (run_stmt(s, "COMMIT", NULL, 0, err, sizeof err) < 0) {
      if (!sqlite3_get_autocommit(s->wdb))
        run_stmt(s, "ROLLBACK", NULL, 0, NULL, 0);
      jobs_fail(batch, err);
      return 0;
    }
    for (job_t *j = batch; j; j = j->next)
      if (j->state == 0)
        j->state = 1;
    return 1;
  }
}

static void *writer_main(void *arg)
{
  sqlstore_t *s = arg;
  int abandoned;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    job_t *batch, *last;
    int committed, n = 0, failed = 0;
    while (!s->queue && !s->closing)
      pthread_cond_wait(&s->wake, &s->mu);
    if (!s->queue)
      break; /* closing, and everything queued is done */
    batch = s->inflight = s->queue;
    s->queue = NULL;
    s->queue_tail = &s->queue;
    pthread_mutex_unlock(&s->mu);

    pthread_mutex_lock(&s->dbmu);
    committed = run_batch(s, batch);
    pthread_mutex_unlock(&s->dbmu);

    pthread_mutex_lock(&s->mu);
    s->inflight = NULL;
    for (last = batch;; last = last->next) {
      n++;
      failed += last->state < 0;
      if (!last->next)
        break;
    }
    if (s->abandoned) { /* close() gave up on us: nobody is listening */
      while (batch) {
        job_t *j = batch;
        batch = j->next;
        job_free(j);
      }
      continue;
    }
    s->commits += committed;
    s->jobs += n;
    s->failed += failed;
    *s->done_tail = batch;
    s->done_tail = &last->next;
    {
      uint64_t one = 1;
      ssize_t w = write(s->efd, &one, sizeof one); /* fails only when already readable */
      (void)w;
    }
  }
  pthread_mutex_unlock(&s->mu);

  pthread_mutex_lock(&s->dbmu);
  cache_clear(s);
  sqlite3_close(s->wdb);
  s->wdb = NULL;
  pthread_mutex_unlock(&s->dbmu);

  pthread_mutex_lock(&s->mu);
  s->thread_done = 1;
  abandoned = s->abandoned;
  pthread_cond_broadcast(&s->exited);
  pthread_mutex_unlock(&s->mu);
  if (abandoned) { /* close() has returned long ago: the store is ours to free */
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->dbmu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->exited);
    free(s);
  }
  return NULL;
}

/* ---- the loop thread's side ---------------------------------------------- */

static void store_free(sqlstore_t *s)
{
  if (s->rdb)
    sqlite3_close(s->rdb);
  if (s->wdb)
    sqlite3_close(s->wdb);
  if (s->efd >= 0)
    close(s->efd);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->dbmu);
  pthread_cond_destroy(&s->wake);
  pthread_cond_destroy(&s->exited);
  free(s);
}

static int pragma_text(sqlite3 *db, char const *sql, char *out, size_t outlen, char *err, size_t errlen)
{
  sqlite3_stmt *st = prepare(db, sql, 0, err, errlen);
  int rc;
  if (!st)
    return -1;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    snprintf(out, outlen, "%s", (char const *)sqlite3_column_text(st, 0));
  else if (rc != SQLITE_DONE)
    set_err(err, errlen, "%s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

sqlstore_t *sqlstore_open(char const *path, int busy_ms, char *err, size_t errlen)
{
  sqlstore_t *s;
  pthread_condattr_t ca;
  char mode[32] = "";
  int rc;

  if (!sqlite3_threadsafe()) {
    set_err(err, errlen, "this SQLite library was built without thread support");
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->dbmu, NULL);
  pthread_cond_init(&s->wake, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->exited, &ca);
  pthread_condattr_destroy(&ca);
  s->queue_tail = &s->queue;
  s->done_tail = &s->done;
  s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->efd < 0) {
    set_err(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }

  rc = sqlite3_open_v2(path, &s->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "%s: %s", path, s->wdb ? sqlite3_errmsg(s->wdb) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_busy_timeout(s->wdb, busy_ms);
  if (pragma_text(s->wdb, "PRAGMA journal_mode=WAL", mode, sizeof mode, err, errlen) < 0)
    goto fail;
  if (strcmp(mode, "wal") != 0) {
    set_err(err, errlen, "%s: cannot use WAL mode (journal mode is %s)", path, mode);
    goto fail;
  }
  /* In WAL mode, FULL syncs the log on every commit: a commit is durable. */
  if (sqlite3_exec(s->wdb, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK) {
    set_err(err, errlen, "%s", sqlite3_errmsg(s->wdb));
    goto fail;
  }

  rc = sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "%s: %s", path, s->rdb ? sqlite3_errmsg(s->rdb) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_busy_timeout(s->rdb, busy_ms);

  rc = pthread_create(&s->thread, NULL, writer_main, s);
  if (rc != 0) {
    set_err(err, errlen, "cannot start the writer thread: %s", strerror(rc));
    goto fail;
  }
  return s;

fail:
  store_free(s);
  return NULL;
}

int sqlstore_fd(sqlstore_t const *s)
{
  return s->efd;
}

int sqlstore_write(sqlstore_t *s, sqlstore_stmt_t const *stmts, int n,
                   sqlstore_done_f *done, void *arg)
{
  job_t *j;
  if (s->closing) {
    errno = EPIPE;
    return -1;
  }
  j = job_new(stmts, n, done, arg);
  if (!j) {
    errno = ENOMEM;
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  *s->queue_tail = j;
  s->queue_tail = &j->next;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->mu);
  s->pending++;
  return 0;
}

int sqlstore_dispatch(sqlstore_t *s)
{
  uint64_t count;
  job_t *list;
  int n = 0;
  ssize_t r = read(s->efd, &count, sizeof count); /* resets it; EAGAIN when nothing */
  (void)r;
  pthread_mutex_lock(&s->mu);
  list = s->done;
  s->done = NULL;
  s->done_tail = &s->done;
  pthread_mutex_unlock(&s->mu);
  for (job_t *j = list; j; j = j->next)
    n++;
  s->pending -= n; /* before any done(), which may free s */
  jobs_dispatch(list);
  return n;
}

int sqlstore_exec(sqlstore_t *s, char const *sql, char *err, size_t errlen)
{
  char *msg = NULL;
  int rc;
  pthread_mutex_lock(&s->dbmu);
  rc = s->wdb ? sqlite3_exec(s->wdb, sql, NULL, NULL, &msg) : SQLITE_MISUSE;
  pthread_mutex_unlock(&s->dbmu);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

int sqlstore_query(sqlstore_t *s, sqlstore_stmt_t const *q, sqlstore_row_f *row,
                   void *arg, char *err, size_t errlen)
{
  sqlite3_stmt *st = prepare(s->rdb, q->sql, 0, err, errlen);
  char const **names;
  sqlstore_value_t *vals;
  int ncols, rc;
  if (!st)
    return -1;
  if (bind_values(st, q->params, q->nparams, err, errlen) < 0) {
    sqlite3_finalize(st);
    return -1;
  }
  ncols = sqlite3_column_count(st);
  names = malloc((ncols + 1) * (sizeof *names + sizeof *vals));
  if (!names) {
    sqlite3_finalize(st);
    set_err(err, errlen, "out of memory");
    return -1;
  }
  vals = (sqlstore_value_t *)(names + ncols + 1);
  for (int i = 0; i < ncols; i++)
    names[i] = sqlite3_column_name(st, i);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < ncols; i++) {
      sqlstore_value_t *v = &vals[i];
      memset(v, 0, sizeof *v);
      switch (sqlite3_column_type(st, i)) {
      case SQLITE_INTEGER:
        v->type = SQLSTORE_INT;
        v->i = sqlite3_column_int64(st, i);
        break;
      case SQLITE_FLOAT:
        v->type = SQLSTORE_DOUBLE;
        v->d = sqlite3_column_double(st, i);
        break;
      case SQLITE_TEXT:
      case SQLITE_BLOB:
        v->type = SQLSTORE_TEXT;
        v->s = (char const *)sqlite3_column_blob(st, i);
        v->len = (size_t)sqlite3_column_bytes(st, i);
        if (!v->s)
          v->s = "";
        break;
      default:
        v->type = SQLSTORE_NULL;
      }
    }
    if (row(arg, ncols, names, vals))
      break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    set_err(err, errlen, "%s", sqlite3_errmsg(s->rdb));
  free(names);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

void sqlstore_stats(sqlstore_t *s, sqlstore_stats_t *st)
{
  pthread_mutex_lock(&s->mu);
  st->commits = s->commits;
  st->jobs = s->jobs;
  st->failed = s->failed;
  pthread_mutex_unlock(&s->mu);
  st->pending = s->pending;
}

int sqlstore_close(sqlstore_t *s, int timeout_ms)
{
  struct timespec deadline;
  job_t *finished, *unstarted;
  struct { sqlstore_done_f *done; void *arg; } *running = NULL;
  int nrunning = 0;

  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  sqlite3_close(s->rdb);
  s->rdb = NULL;

  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  pthread_cond_signal(&s->wake);
  while (!s->thread_done)
    if (pthread_cond_timedwait(&s->exited, &s->mu, &deadline) == ETIMEDOUT)
      break;
  finished = s->done;
  s->done = NULL;
  if (s->thread_done) {
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    store_free(s);
    jobs_dispatch(finished);
    return 0;
  }

  /* The writer is stuck: leave it to finish and free the store itself. */
  s->abandoned = 1;
  unstarted = s->queue;
  s->queue = NULL;
  s->queue_tail = &s->queue;
  for (job_t *j = s->inflight; j; j = j->next)
    nrunning++;
  running = nrunning ? calloc(nrunning, sizeof *running) : NULL;
  nrunning = 0;
  for (job_t *j = s->inflight; j && running; j = j->next, nrunning++) {
    running[nrunning].done = j->done;
    running[nrunning].arg = j->arg;
  }
  close(s->efd); /* the writer writes it only when not abandoned */
  s->efd = -1;
  pthread_detach(s->thread); /* before unlocking: from then on s is the writer's */
  pthread_mutex_unlock(&s->mu);

  jobs_dispatch(finished);
  jobs_fail(unstarted, "not written: the store was closed while its writer was stuck");
  jobs_dispatch(unstarted);
  for (int i = 0; i < nrunning; i++)
    if (running[i].done)
      running[i].done(running[i].arg, 0, "outcome unknown: the store was closed while this write was in progress");
  free(running);
  return -1;
}
