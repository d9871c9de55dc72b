/* sqlite.h — an SQLite (WAL) database with one writer thread doing group
 * commit, for the stores. Pure C: the Lua binding is csrc/lstore.c.
 *
 * Writes are queued from the loop thread. The writer takes everything queued
 * and runs it in one transaction (BEGIN IMMEDIATE ... COMMIT, synchronous=
 * FULL), each job inside its own savepoint: a failing job is rolled back and
 * gets its error, the rest of the batch commits. Once the batch is durable
 * the writer makes sqlstore_fd() readable; sqlstore_dispatch() on the loop
 * thread then calls each job's done() in submission order.
 * Reads and schema set-up run synchronously on the loop thread. */
#ifndef LUASIP_STORE_SQLITE_H
#define LUASIP_STORE_SQLITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sqlstore sqlstore_t;

enum sqlstore_type { SQLSTORE_NULL, SQLSTORE_INT, SQLSTORE_DOUBLE, SQLSTORE_TEXT };

/* A parameter or column value. A parameter with a name binds to ":name",
 * "@name" or "$name" in the statement; one without binds to position `pos`
 * (1-based). Text is length-counted and need not be NUL-terminated. */
typedef struct {
  enum sqlstore_type type;
  char const *name;
  int pos;
  int64_t i;
  double d;
  char const *s;
  size_t len;
} sqlstore_value_t;

/* One SQL statement with its parameters. */
typedef struct {
  char const *sql;
  sqlstore_value_t const *params;
  int nparams;
} sqlstore_stmt_t;

/* ok: the job's statements are committed durably; otherwise none of them
 * is, and err says why (valid during the call only). */
typedef void sqlstore_done_f(void *arg, int ok, char const *err);
/* One result row; return non-zero to stop. Values are valid during the call. */
typedef int sqlstore_row_f(void *arg, int ncols, char const *const *names,
                           sqlstore_value_t const *cols);

typedef struct {
  uint64_t commits; /* transactions committed */
  uint64_t jobs;    /* jobs finished, committed or failed */
  uint64_t failed;  /* of those, failed */
  int pending;      /* queued, running, or finished and not yet dispatched */
} sqlstore_stats_t;

/* Open (creating) the database at path in WAL mode and start the writer.
 * busy_ms: how long a statement waits for another process's lock.
 * Returns NULL with a message in err on failure. */
sqlstore_t *sqlstore_open(char const *path, int busy_ms, char *err, size_t errlen);

/* Readable when finished jobs wait for sqlstore_dispatch(). */
int sqlstore_fd(sqlstore_t const *s);

/* Queue a job of n statements, run atomically. Everything is copied.
 * Returns 0, or -1 with errno set (ENOMEM, or EPIPE once closing). */
int sqlstore_write(sqlstore_t *s, sqlstore_stmt_t const *stmts, int n,
                   sqlstore_done_f *done, void *arg);

/* Call done() for every finished job. done() may queue more jobs or close
 * the store. Returns the number of jobs dispatched. */
int sqlstore_dispatch(sqlstore_t *s);

/* Run sql (several statements allowed) on the write connection between
 * batches, synchronously: for schema set-up at open. 0, or -1 and err. */
int sqlstore_exec(sqlstore_t *s, char const *sql, char *err, size_t errlen);

/* Run one query on the read-only connection, calling row() per row.
 * 0, or -1 and err. */
int sqlstore_query(sqlstore_t *s, sqlstore_stmt_t const *q, sqlstore_row_f *row,
                   void *arg, char *err, size_t errlen);

void sqlstore_stats(sqlstore_t *s, sqlstore_stats_t *st);

/* Commit everything queued, stop the writer and free the store, calling
 * done() for every job on the way. Waits at most timeout_ms for the writer:
 * if it is stuck (a lock held elsewhere, a hung disk), it is left to finish
 * on its own, and the jobs it has not finished are reported failed.
 * Returns 0, or -1 if the writer was left behind. */
int sqlstore_close(sqlstore_t *s, int timeout_ms);

#endif
