/* store/writer.c — the writer thread, its job queue, completion ports and
 * group commit.
 *
 * One dedicated thread (uv_thread_create, not libuv's pool, so a slow fsync
 * never starves DNS or file work) owns every write transaction. It takes up
 * to ST_BATCH_MAX queued jobs — from two lanes: the first lane's first, then
 * at most ST_BULK_BATCH of the second's, a whole batch of them when the
 * first lane is empty (st_submit_bulk: MCP session churn,
 * so that a flood of it never queues ahead of SCIM, admin and revocation
 * writes, and a SCIM import never starves it) —, runs them in one batch txn, commits the batch
 * once, runs the batch's post-commit actions, then delivers each job's
 * status to its port (or calls done inline / wakes a st_write_sync waiter).
 *
 * Honest results: a job must see the same outcome it would have had alone.
 *  - Jobs run straight in the batch txn (a child txn per job costs LMDB
 *    ~2.5 MB of buffers and a merge); the first that fails has the txn
 *    aborted, and the batch runs again with each job in a child of a fresh
 *    batch txn, whose failing children are aborted alone.
 *  - A job that fails on map/txn space behind other jobs may only have
 *    failed because of the batch's earlier dirty pages: the batch is cut
 *    there, committed, and the job re-run at the head of a fresh batch.
 *  - If the batch commit itself fails (map full while writing the
 *    freelist, I/O error), or a child commit fails (parent state unknown),
 *    every job of the batch is re-run alone; a lone job gets the commit
 *    error as its status.
 * Hence the purity contract on jobs documented in store.h.
 *
 * The reserve (store.h): a job that writes without st_txn_use_reserve is
 * measured in its txn before and after it runs and refused as
 * ST_EMAPFULL past the mark, exactly as if LMDB had run out of map.
 *
 * Ports are reference-counted: one reference for the open uv handle, one
 * per job in flight. The writer never touches a closed port's handle (the
 * closed flag and uv_async_send are under the port mutex), and whoever drops
 * the last reference frees it — the loop in the handle's close callback, or
 * the writer after delivering to an already closed port. */
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>


struct st__sync {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done;
  int status;
};

/* ---- ports --------------------------------------------------------------- */

static void port_free(st_port *p) {
  uv_mutex_destroy(&p->mu);
  free(p);
}

/* Drops one reference; frees the port if it was the last. */
static void port_unref(st_port *p) {
  uv_mutex_lock(&p->mu);
  int last = --p->refs == 0;
  uv_mutex_unlock(&p->mu);
  if (last) port_free(p);
}

static void port_async_cb(uv_async_t *h) {
  st_port *p = h->data;
  uv_mutex_lock(&p->mu);
  st__job *list = p->head;
  p->head = p->tail = NULL;
  uv_mutex_unlock(&p->mu);
  /* behind what the gate already holds: dones keep their order */
  if (p->stamp)
    for (st__job *j = list; j; j = j->next)
      if (j->done) p->stamp(p->gate_arg, j->gate_state);
  if (list) {
    if (p->parked_tail) p->parked_tail->next = list;
    else p->parked = list;
    while (list->next) list = list->next;
    p->parked_tail = list;
  }
  /* closed is only ever set on this thread, so no lock: a done callback
   * that closed the port stops delivery (st_port_close took the rest). */
  while (!p->closed && p->parked) {
    st__job *j = p->parked;
    if (j->done && p->gate && !p->gate(p->gate_arg, j->gate_state)) break;
    if (!(p->parked = j->next)) p->parked_tail = NULL;
    uv_mutex_lock(&p->mu);
    p->pending--;
    uv_mutex_unlock(&p->mu);
    if (j->done) j->done(j->status, j->arg);
    free(j);
    /* Cannot be the last reference: the handle's own is held until the
     * close callback, which runs in a later loop iteration. */
    port_unref(p);
  }
}

static void port_closed_cb(uv_handle_t *h) {
  st_port *p = h->data;
  if (p->close_cb) p->close_cb(p->close_arg);
  port_unref(p);
}

int st_port_open(st_store *st, uv_loop_t *loop, st_port **out) {
  st_port *p;
  if (!st || !loop || !out) return ST_EINVAL;
  *out = NULL;
  if (!(p = calloc(1, sizeof *p))) return ST_ENOMEM;
  if (uv_mutex_init(&p->mu) != 0) {
    free(p);
    return ST_ENOMEM;
  }
  if (uv_async_init(loop, &p->async, port_async_cb) != 0) {
    port_free(p);
    return ST_EIO;
  }
  p->async.data = p;
  p->refs = 1;
  *out = p;
  return 0;
}

void st_port_close(st_port *p, void (*cb)(void *arg), void *arg) {
  if (!p) return;
  p->close_cb = cb;
  p->close_arg = arg;
  uv_mutex_lock(&p->mu);
  p->closed = 1;
  st__job *list = p->head;
  p->head = p->tail = NULL;
  for (st__job *j = list; j; j = j->next) p->refs--; /* the handle's ref keeps refs >= 1 */
  for (st__job *j = p->parked; j; j = j->next) p->refs--;
  p->pending = 0;
  uv_mutex_unlock(&p->mu);
  if (p->parked_tail) {
    p->parked_tail->next = list;
    list = p->parked;
    p->parked = p->parked_tail = NULL;
  }
  while (list) {
    st__job *j = list;
    list = j->next;
    free(j); /* already committed; done is deliberately not called */
  }
  uv_close((uv_handle_t *)&p->async, port_closed_cb);
}

void st_port_gate(st_port *p, st_gate_fn gate, st_stamp_fn stamp, void *arg) {
  p->gate = gate;
  p->stamp = stamp;
  p->gate_arg = arg;
}

void st_port_kick(st_port *p) {
  uv_mutex_lock(&p->mu);
  if (!p->closed) uv_async_send(&p->async);
  uv_mutex_unlock(&p->mu);
}

size_t st_port_pending(const st_port *p) {
  st_port *mp = (st_port *)p; /* the mutex is not part of the logical state */
  uv_mutex_lock(&mp->mu);
  size_t n = mp->pending;
  uv_mutex_unlock(&mp->mu);
  return n;
}

/* Writer side: hand a finished job to its port (or drop it if closed). */
static void port_deliver(st__job *j) {
  st_port *p = j->port;
  uv_mutex_lock(&p->mu);
  if (p->closed) {
    int last = --p->refs == 0;
    uv_mutex_unlock(&p->mu);
    free(j);
    if (last) port_free(p);
    return;
  }
  j->next = NULL;
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  /* Under the mutex so st_port_close cannot uv_close the handle between
   * our closed check and the send. */
  uv_async_send(&p->async);
  uv_mutex_unlock(&p->mu);
}

/* ---- queue --------------------------------------------------------------- */

static int enqueue(st_store *st, st__job *j, bool bulk) {
  int rc = 0;
  /* Freeze the hook table before any job can run. */
  atomic_store(&st->serving, 1);
  uv_mutex_lock(&st->qmu);
  if (st->stopping || !st->writer_started) rc = ST_ECLOSED;
  else if (st->qlen >= st->qmax) rc = ST_EBUSY;
  else {
    st__job **head = bulk ? &st->bhead : &st->qhead, **tail = bulk ? &st->btail : &st->qtail;
    j->next = NULL;
    if (*tail) (*tail)->next = j;
    else *head = j;
    *tail = j;
    st->qlen++;
    uv_cond_signal(&st->qcond);
  }
  uv_mutex_unlock(&st->qmu);
  return rc;
}

static int submit(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg, bool bulk);

int st_submit(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg) {
  return submit(st, port, fn, done, arg, false);
}

int st_submit_bulk(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg) {
  return submit(st, port, fn, done, arg, true);
}

static int submit(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg, bool bulk) {
  st__job *j;
  int rc;
  if (!st || !fn) return ST_EINVAL;
  if (!(j = calloc(1, sizeof *j))) return ST_ENOMEM;
  j->fn = fn;
  j->done = done;
  j->arg = arg;
  j->port = port;
  if (port) {
    uv_mutex_lock(&port->mu);
    if (port->closed) {
      uv_mutex_unlock(&port->mu);
      free(j);
      return ST_ECLOSED;
    }
    port->refs++;
    port->pending++;
    uv_mutex_unlock(&port->mu);
  }
  if ((rc = enqueue(st, j, bulk)) < 0) {
    if (port) {
      uv_mutex_lock(&port->mu);
      port->refs--;
      port->pending--;
      uv_mutex_unlock(&port->mu);
    }
    free(j);
  }
  return rc;
}

int st_write_sync(st_store *st, st_job_fn fn, void *arg) {
  st__sync s;
  st__job *j;
  int rc;
  if (!st || !fn) return ST_EINVAL;
  if (st__on_writer(st)) return ST_EINVAL; /* it would wait for itself */
  if (!(j = calloc(1, sizeof *j))) return ST_ENOMEM;
  if (uv_mutex_init(&s.mu) != 0) {
    free(j);
    return ST_ENOMEM;
  }
  if (uv_cond_init(&s.cv) != 0) {
    uv_mutex_destroy(&s.mu);
    free(j);
    return ST_ENOMEM;
  }
  s.done = 0;
  s.status = 0;
  j->fn = fn;
  j->arg = arg;
  j->sync = &s;
  if ((rc = enqueue(st, j, false)) < 0) {
    free(j);
    goto out;
  }
  uv_mutex_lock(&s.mu);
  while (!s.done) uv_cond_wait(&s.cv, &s.mu);
  rc = s.status;
  uv_mutex_unlock(&s.mu);
out:
  uv_cond_destroy(&s.cv);
  uv_mutex_destroy(&s.mu);
  return rc;
}

/* ---- group commit -------------------------------------------------------- */

static void deliver(st__job *j) {
  if (j->sync) {
    st__sync *s = j->sync;
    int status = j->status;
    free(j);
    uv_mutex_lock(&s->mu);
    s->status = status;
    s->done = 1;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
    return;
  }
  if (j->port) {
    port_deliver(j);
    return;
  }
  if (j->done) j->done(j->status, j->arg);
  free(j);
}

static void job_discard_actions(st__job *j) {
  st__actions_discard(j->act_head);
  j->act_head = j->act_tail = NULL;
}

/* The reserve's mark (store.h): would an ordinary job that writes, taking
 * the pages in use from before to after, reach into the reserve? */
static int over_mark(const st_store *st, size_t before, size_t after) {
  if (after > st->limit_pages) return 1;
  return before >= st->full_pages && after >= before;
}

/* Runs job j in txn (the batch's own, or a child of it) and returns its
 * status; the caller ends txn. On success j's post-commit actions are
 * queued on it; on failure they are discarded. *resource: it failed for
 * lack of map or txn space. */
static int run_job(st_store *st, MDB_txn *txn, st__job *j, int *resource) {
  st_txn t;
  st__txn_init(&t, st, txn, 1);
  size_t before = st->reserve_pages ? st__pages_used(st, txn) : 0;
  int status = j->fn(&t, j->arg);
  st__txn_close_cursors(&t);
  if (status >= 0 && !t.poison && st->reserve_pages && t.wrote && (!t.use_reserve || t.ordinary) &&
      over_mark(st, before, st__pages_used(st, txn))) {
    /* Refused like a real MAP_FULL: aborted whole, and behind other jobs
     * re-run at the head of a fresh batch (their growth may be why). */
    t.poison = ST_EMAPFULL;
  }
  if (t.poison) {
    /* Fail closed: LMDB refuses a txn after such an error anyway, and a
     * job that ignored it must not be reported as committed. */
    if (status >= 0) status = t.poison;
    j->poison = t.poison;
    *resource = st__is_resource(t.poison);
  }
  if (status < 0) {
    st__actions_discard(t.act_head);
    return status;
  }
  if (t.act_head) {
    if (j->act_tail) j->act_tail->next = t.act_head;
    else j->act_head = t.act_head;
    j->act_tail = t.act_tail;
  }
  return status;
}

/* Runs one job in a child of parent. *resource: it failed for lack of map
 * or txn space. *fatal: the child commit failed, the parent is suspect. */
static int run_child(st_store *st, MDB_txn *parent, st__job *j, int *resource, int *fatal) {
  MDB_txn *child = NULL;
  int rc, status;
  *resource = 0;
  *fatal = 0;
  j->poison = 0;
  if ((rc = mdb_txn_begin(st->env, parent, 0, &child)) != 0) {
    status = st__err(rc);
    *resource = st__is_resource(status);
    return status;
  }
  if ((status = run_job(st, child, j, resource)) < 0) {
    mdb_txn_abort(child);
    return status;
  }
  if ((rc = mdb_txn_commit(child)) != 0) {
    job_discard_actions(j);
    *fatal = 1;
    j->poison = st__err(rc);
    return st__err(rc);
  }
  return status;
}

static void record_commit(st_store *st, uint64_t ns, size_t jobs, int err) {
  double secs = (double)ns / 1e9;
  uv_mutex_lock(&st->smu);
  if (err) {
    st->stats.commit_errors++;
    st->stats.last_commit_error = err;
  } else {
    st->stats.commits++;
    st->stats.last_commit_error = 0;
  }
  st->stats.commit_seconds_sum += secs;
  st->stats.commit_seconds_count++;
  for (int i = 0; i < ST_STATS_NBUCKETS; i++)
    if (secs <= st_stats_bucket_le[i]) st->stats.commit_seconds_bucket[i]++;
  st->stats.batch_jobs_sum += jobs;
  st->stats.batch_jobs_count++;
  uv_mutex_unlock(&st->smu);
}

static void record_outcomes(st_store *st, st__job **jobs, size_t n) {
  uint64_t ok = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (jobs[i]->status >= 0) ok++;
    else failed++;
  }
  uv_mutex_lock(&st->smu);
  st->stats.jobs_committed += ok;
  st->stats.jobs_failed += failed;
  uv_mutex_unlock(&st->smu);
}

/* Worst storage-level failure among the batch's jobs, for st_ready. */
static int jobs_health(st__job **jobs, size_t n) {
  int h = 0;
  for (size_t i = 0; i < n; i++) {
    int p = jobs[i]->poison;
    if (p == ST_EMAPFULL || p == ST_EIO || p == ST_ECORRUPT) h = p;
  }
  return h;
}

/* The batch's txn could not begin (LMDB's rc): every job gets the error. */
static size_t batch_unbegun(st_store *st, st__job **jobs, size_t n, int rc) {
  rc = st__err(rc);
  st__log(st, ST_LOG_ERROR, "cannot begin write transaction: %s", st_strerror(rc));
  for (size_t i = 0; i < n; i++) jobs[i]->status = rc;
  record_commit(st, 0, n, rc);
  record_outcomes(st, jobs, n);
  atomic_store(&st->health, rc);
  for (size_t i = 0; i < n; i++) deliver(jobs[i]);
  return n;
}

/* Runs jobs[0..n) one after the other in txn itself until one fails; how
 * many succeeded (n: all). */
static size_t run_direct(st_store *st, MDB_txn *txn, st__job **jobs, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    int resource = 0;
    jobs[i]->poison = 0;
    if ((jobs[i]->status = run_job(st, txn, jobs[i], &resource)) < 0) break;
  }
  return i;
}

/* Runs a prefix of jobs[0..n) as one batch and delivers their results.
 * Returns how many jobs were consumed (>= 1). */
static size_t run_batch(st_store *st, st__job **jobs, size_t n) {
  MDB_txn *parent = NULL;
  size_t used;
  int rc, fatal = 0;
  uint64_t t0;

  if ((rc = mdb_txn_begin(st->env, NULL, 0, &parent)) != 0) return batch_unbegun(st, jobs, n, rc);

  /* MCPGATE_TEST_JOB_RERUN (a test hook): every batch's jobs run once in a
   * txn that is then aborted, and then as below — every job runs at least
   * twice, so one that is not re-run safe (store.h's contract) shows in
   * the tests that use it, as a wrong answer or a leak. */
  if (st->test_rerun) {
    run_direct(st, parent, jobs, n);
    mdb_txn_abort(parent);
    for (size_t i = 0; i < n; i++) job_discard_actions(jobs[i]);
    if ((rc = mdb_txn_begin(st->env, NULL, 0, &parent)) != 0) return batch_unbegun(st, jobs, n, rc);
  }

  /* The jobs run in the batch's txn itself first: a child txn costs LMDB
   * ~2.5 MB of allocations and a merge of its dirty pages into the parent
   * per job, and jobs seldom fail. A batch of one job stops there: its
   * failure aborts the whole txn, which holds nothing else (the same
   * outcome as its child aborted and an empty commit). In a larger batch
   * the first failure aborts the txn and the batch starts again with a
   * child per job, as below: the jobs before it run twice, which the job
   * contract allows (store.h) — at most twice the work, for the batches
   * that hold a failure. */
  used = run_direct(st, parent, jobs, n);
  if (used < n && n == 1) {
    mdb_txn_abort(parent);
    record_commit(st, 0, 1, 0);
    record_outcomes(st, jobs, 1);
    atomic_store(&st->health, jobs_health(jobs, 1));
    deliver(jobs[0]);
    return 1;
  }
  if (used < n) {
    /* the txn holds the failed job's partial writes: none of it stays */
    mdb_txn_abort(parent);
    atomic_fetch_add(&st->batch_fallbacks, 1);
    for (size_t i = 0; i < used; i++) job_discard_actions(jobs[i]);
    used = 0;
    if ((rc = mdb_txn_begin(st->env, NULL, 0, &parent)) != 0) return batch_unbegun(st, jobs, n, rc);
  }
  for (; used < n; used++) {
    int resource = 0;
    jobs[used]->status = run_child(st, parent, jobs[used], &resource, &fatal);
    if (fatal) {
      used++;
      break;
    }
    /* Out of space behind other jobs: cut the batch here; this job runs
     * again at the head of the next one. */
    if (resource && used > 0) break;
  }

  t0 = uv_hrtime();
  int injected = atomic_load(&st->test_fail_commits) > 0;
  if (injected) atomic_fetch_sub(&st->test_fail_commits, 1);
  if (fatal || injected) {
    mdb_txn_abort(parent);
    rc = fatal ? jobs[used - 1]->status : ST_EMAPFULL;
  } else {
    rc = st__err(mdb_txn_commit(parent));
  }
  uint64_t ns = uv_hrtime() - t0;

  if (rc == 0) {
    record_commit(st, ns, used, 0);
    record_outcomes(st, jobs, used);
    atomic_store(&st->health, jobs_health(jobs, used));
    /* Post-commit actions (fan-out to loops...) run before any reply of
     * the batch is released. */
    for (size_t i = 0; i < used; i++) {
      st__actions_run(jobs[i]->act_head);
      jobs[i]->act_head = jobs[i]->act_tail = NULL;
    }
    for (size_t i = 0; i < used; i++) deliver(jobs[i]);
    return used;
  }

  record_commit(st, ns, used, rc);
  for (size_t i = 0; i < used; i++) job_discard_actions(jobs[i]);
  if (used == 1) {
    st__log(st, ST_LOG_ERROR, "write transaction commit failed: %s", st_strerror(rc));
    if (jobs[0]->status >= 0) jobs[0]->status = rc;
    record_outcomes(st, jobs, 1);
    atomic_store(&st->health, rc == ST_ETXNFULL ? 0 : rc);
    deliver(jobs[0]);
    return 1;
  }
  st__log(st, ST_LOG_WARN, "batch commit of %zu jobs failed (%s); re-running each job alone", used,
         st_strerror(rc));
  for (size_t i = 0; i < used; i++) run_batch(st, jobs + i, 1);
  return used;
}

void st_thread_nice(int inc) {
  /* A background thread (inc > 0) is also a batch thread: SCHED_BATCH
   * keeps its fair share of CPU (no starvation, unlike SCHED_IDLE) but it
   * never preempts a running thread when it wakes. The audit log's commit
   * every 50 ms is a burst of a few ms: as a normal thread it preempted
   * the loop on waking (its sleep earned it the credit) and each request
   * then waiting on the loop was late — p99 doubled and throughput fell by
   * ~10 % for ~2 % of the CPU. Best effort; needs no privilege. (Once
   * running, a long job still shares the core it woke on: the audit log's
   * commit job pauses now and then for that, audit/log.c.) */
  if (inc > 0) {
    struct sched_param sp = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
  }
  /* Linux gives each thread its own nice value (PRIO_PROCESS with a tid) */
  id_t tid = (id_t)syscall(SYS_gettid);
  errno = 0;
  int cur = getpriority(PRIO_PROCESS, tid);
  if (cur == -1 && errno) return;
  (void)setpriority(PRIO_PROCESS, tid, cur + inc); /* best effort: raising it needs no privilege */
}

static void writer_main(void *arg) {
  st_store *st = arg;
  st__job *batch[ST_BATCH_MAX];
  /* for top -H, perf: the main store's "mcpgate-writer", another
   * environment's after its schema ("mcpgate-auditw") */
  char name[16];
  if (st->schema == &st_schema_main) snprintf(name, sizeof name, "mcpgate-writer");
  else snprintf(name, sizeof name, "mcpgate-%.6sw", st->schema->name);
  pthread_setname_np(pthread_self(), name);
  if (st->writer_nice) st_thread_nice(st->writer_nice);
  /* MCPGATE_TEST_WRITER_PAUSE_FILE (a test hook, the main store only):
   * while that file exists, queued jobs wait — a test lines up jobs in a
   * known order behind a read it wants to race (a write committing between
   * a request's checks and its own job) */
  const char *pause = st->schema == &st_schema_main ? getenv("MCPGATE_TEST_WRITER_PAUSE_FILE") : NULL;
  if (pause && *pause)
    st__log(st, ST_LOG_WARN, "MCPGATE_TEST_WRITER_PAUSE_FILE is set: writes wait while %s exists (a test hook; never "
            "set it in production)", pause);
  const char *rerun = getenv("MCPGATE_TEST_JOB_RERUN");
  st->test_rerun = rerun && !strcmp(rerun, "1");
  if (st->test_rerun)
    st__log(st, ST_LOG_WARN, "MCPGATE_TEST_JOB_RERUN is set: every write job runs twice, the first run aborted (a "
            "test hook; never set it in production)");
  for (;;) {
    size_t n = 0, off = 0;
    uv_mutex_lock(&st->qmu);
    while (!st->qhead && !st->bhead && !st->stopping) uv_cond_wait(&st->qcond, &st->qmu);
    if (!st->qhead && !st->bhead) { /* stopping and drained */
      uv_mutex_unlock(&st->qmu);
      break;
    }
    if (pause && *pause && !st->stopping && access(pause, F_OK) == 0) {
      uv_mutex_unlock(&st->qmu);
      usleep(1000);
      continue; /* looks again, stopping read under the lock */
    }
    /* the first lane first, leaving the second its share (st_submit_bulk) */
    size_t room = st->bhead ? ST_BATCH_MAX - ST_BULK_BATCH : ST_BATCH_MAX;
    while (st->qhead && n < room) {
      batch[n++] = st->qhead;
      st->qhead = st->qhead->next;
    }
    if (!st->qhead) st->qtail = NULL;
    /* behind first-lane jobs, ST_BULK_BATCH of the second; alone, a whole
     * batch (a backlog of sessions is not drained 32 a commit) */
    size_t bmax = n ? ST_BULK_BATCH : ST_BATCH_MAX;
    for (size_t b = 0; st->bhead && b < bmax; b++) {
      batch[n++] = st->bhead;
      st->bhead = st->bhead->next;
    }
    if (!st->bhead) st->btail = NULL;
    st->qlen -= n;
    uv_mutex_unlock(&st->qmu);
    while (off < n) off += run_batch(st, batch + off, n - off);
  }
  atomic_store(&st->writer_alive, 0);
}

int st__writer_start(st_store *st) {
  atomic_store(&st->writer_alive, 1);
  uv_mutex_lock(&st->qmu);
  st->writer_started = 1;
  uv_mutex_unlock(&st->qmu);
  if (uv_thread_create(&st->writer, writer_main, st) != 0) {
    atomic_store(&st->writer_alive, 0);
    st->writer_started = 0;
    return ST_ENOMEM;
  }
  return 0;
}

int st__on_writer(st_store *st) {
  if (!st->writer_started) return 0;
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &st->writer);
}

void st__writer_stop(st_store *st) {
  uv_mutex_lock(&st->qmu);
  st->stopping = 1;
  uv_cond_broadcast(&st->qcond);
  uv_mutex_unlock(&st->qmu);
  uv_thread_join(&st->writer);
  st->writer_started = 0;
}
