/* audit/log.c — the audit log's life cycle, its submission queue and the
 * audit thread (group commit, chain-head log lines, stats).
 *
 * Rules this file keeps, and why:
 *  - audit_submit never does I/O: it serialises the caller's members on
 *    the caller's thread (outside the lock), then appends under the queue
 *    mutex. Records of a chain get their seq and prev only in the commit
 *    job, from the head stored in the same transaction, so seqs are
 *    consecutive in queue order and a prune or a reopen can never fork a
 *    chain.
 *  - The queue is capped in records and bytes, counting the batch being
 *    written too; a refused record is counted in stats.dropped, never lost
 *    silently.
 *  - One batch = everything queued = ONE job on the audit env's writer
 *    (st_write_sync, one fsync). The job is a pure function of (store, the
 *    batch list): the writer may run it twice. A failed commit puts the
 *    batch back at the FRONT of the queue (order kept); the next attempt
 *    waits batch_ms, doubling up to 1 s while failures last (audit_flush
 *    retries at once); audit_ok is false until a commit succeeds.
 *  - audit_close makes one last attempt and never waits for a store that
 *    keeps failing: what it cannot write is counted as dropped and logged.
 *  - A record is written on a loop's core and read on the audit writer's:
 *    every line of it the writer touches first is a cache miss. So the
 *    writer reads each entry once (prefetching the next one while it
 *    hashes this one), writes it straight into the page LMDB reserved
 *    (st_put_reserve: no copy built first), and notes the batch's blocks
 *    for the audit thread, which neither counts nor frees by walking the
 *    list: the queue keeps the count and bytes, and blocks of
 *    AUDIT_BLOCK_BYTES go back to a pool of pointers (POOL_MAX) that
 *    audit_block_get hands to the next records without reading them.
 *  - The pool holds every block in flight at the peak (up to POOL_MAX):
 *    at 45k calls/s a batch is ~2,300 records, and with a pool of 2,048
 *    the rest were malloc'd on the loop and freed here each batch; glibc
 *    gave the freed heap back to the kernel and the loop's next mallocs
 *    faulted it in again (perf: 0.06–0.3 page faults per call, the loop's
 *    largest audit cost). What the traffic of the last pool_trim_ms did
 *    not take is freed (audit__pool_trim). The queue's byte cap counts
 *    the memory a record holds (its whole block).
 *  - The writer thread and this thread run as background threads (nice
 *    +5, SCHED_BATCH: st_thread_nice): a commit never
 *    preempts a loop on waking.
 *  - ...but once running, a commit of a busy second's records (1,500
 *    records, ~2 ms of hashing and copying) kept the core it woke on
 *    while a loop waited runnable behind it and the other core sat idle
 *    (perf sched: the loop delayed ~1.9 ms every 50 ms, p99 doubled,
 *    throughput -10 %; the scheduler does not move a task that just ran).
 *    So the job steps off the CPU for a moment after every JOB_SLICE
 *    bytes (PAUSE_NS): the loop gets its core back within ~0.1 ms, and
 *    the writer wakes wherever a core is free. sched_yield is not enough:
 *    the kernel keeps running a yielding thread that is still owed time
 *    (EEVDF). A pause costs the commit wall time, not CPU, and no pause
 *    is taken by a batch smaller than a slice.
 *  - ...but on a core the loop keeps busy (a container with one CPU, or
 *    every core serving) a woken batch thread waits for the loop's slice
 *    to end after every pause: the writer then managed ~13k records/s
 *    against 45k calls/s, its batches grew to the queue's cap, and
 *    audit_on_failure refused calls. So a job pauses only during its
 *    first half batch interval (PAUSE_BUDGET_DIV, at most 25 ms), and a
 *    batch the queue's length forced out (wake_records: the writer is
 *    behind) not at all; past that it writes with its fair share of the
 *    core, and keeps up. */
#include "audit/audit_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define DEFAULT_MAP_SIZE ((size_t)4 << 30)
#define DEFAULT_BATCH_MS 50u
#define DEFAULT_QUEUE_MAX 100000u
#define DEFAULT_QUEUE_BYTES ((size_t)256 << 20) /* the memory queued records hold: 100,000 in blocks fit */
#define DEFAULT_HEAD_LOG_MS 3600000
#define HEAD_LOG_MS_MAX ((int64_t)1 << 40) /* ~35 years */
#define WAKE_RECORDS_MAX 10000 /* a queue this long is committed without waiting batch_ms */
#define CACHE_SLOTS 512        /* heads cached by one commit job (power of two) */
#define CACHE_MAX 256          /* ... of which at most this many in use before a write-back */
#define RETRY_MAX_NS (1000u * 1000000u) /* failed commits back off from batch_ms up to 1 s */
#define POOL_MAX 32768         /* AUDIT_BLOCK_BYTES blocks kept for audit_block_get (64 MiB at most) */
#define POOL_TRIM_MS 10000u   /* blocks left unused in the pool this long are freed (default) */
#define POOL_TRIM_STEP 256     /* ... this many per hold of the pool's lock */
#define JOB_SLICE (32u * 1024) /* bytes a commit job writes (each record counts 256 more) ... */
#define PAUSE_NS 1000          /* ... before it sleeps this long (plus the timer's slack), */
#define PAUSE_BUDGET_DIV 2     /* ... while the job has run less than batch_ms / this */
#define PAUSE_BUDGET_MAX_NS (25u * 1000000u) /* ... and this, whatever batch_ms */

const double audit_stats_bucket_le_ms[AUDIT_STATS_NBUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, INFINITY};

/* One queued record: the caller's members as a compact JSON object. */
typedef struct entry {
  struct entry *next;
  char tenant[AUDIT_TENANT_MAX + 1];
  char uid[AUDIT_UID_MAX + 1];
  size_t len;  /* strlen(body) */
  size_t cap;  /* the block's size: AUDIT_BLOCK_BYTES goes back to the pool */
  char body[]; /* "{...}" */
} entry;

/* the memory a queued record holds (a recycled block: all AUDIT_BLOCK_BYTES
 * of it), which the queue's byte cap bounds */
static size_t entry_bytes(const entry *e) { return e->cap; }

/* One queued cursor update (audit_cursor_set), or the drop of every
 * cursor of a sink (audit_cursor_drop: uid "", drop). Applied in order. */
typedef struct cursor_upd {
  char sink[AUDIT_SINK_MAX + 1];
  char uid[AUDIT_UID_MAX + 1];
  uint64_t seq;
  bool drop;
} cursor_upd;

struct audit_log {
  st_store *st;
  st_log_fn log;
  void *log_ctx;
  uint64_t batch_ns, head_log_ns; /* head_log_ns 0: off */
  uint64_t pool_trim_ns;
  int nice;                       /* audit_options.nice */
  size_t queue_max, queue_bytes_max, wake_records;
  uv_thread_t thread;

  uv_mutex_t mu;     /* everything below up to the atomics */
  uv_cond_t wake;    /* the audit thread waits here */
  uv_cond_t settled; /* audit_flush waits here for a batch to end */
  entry *head, *tail; /* pending records, oldest first (not the batch being written) */
  size_t npending, pbytes; /* pending records and their bytes (entry_bytes) */
  cursor_upd cur[AUDIT_CURSORS_PENDING]; /* pending cursor updates, one per (sink, uid) */
  size_t ncur;
  uint64_t first_ns;  /* when the oldest pending record (or cursor update) was queued */
  size_t qrecords, qbytes; /* pending + the batch being written */
  bool stopping, exited;
  uint64_t started, finished, flush_want; /* batches; flush asks for batch #flush_want */
  audit_stats stats;  /* all but queue_* and broken, kept here */
  struct sink_state {
    char name[AUDIT_SINK_MAX + 1];
    audit_sink_state st;
  } *sinks;           /* audit_sink_state_put */
  size_t nsinks, capsinks;

  uv_mutex_t pool_mu; /* the recycled blocks (its own lock: never held with mu) */
  entry **pool;      /* POOL_MAX slots: committed blocks of AUDIT_BLOCK_BYTES to reuse */
  size_t npool;
  size_t pool_low;   /* the fewest blocks the pool held since the last trim (audit__pool_trim) */

  atomic_int broken; /* the last commit failed */
  atomic_int full;   /* a record was refused for room since the last good commit */
  atomic_int closed;
};

static void alog(audit_log *a, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (a->log) a->log(a->log_ctx, level, "audit", msg);
  else if (level >= ST_LOG_WARN)
    fprintf(stderr, "mcpgate audit: %s: %s\n", level >= ST_LOG_ERROR ? "error" : "warn", msg);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

st_store *audit_store(audit_log *a) { return a ? a->st : NULL; }

/* ---- the commit job ---------------------------------------------------------------- */

typedef struct slot {
  const char *uid; /* borrowed from the batch; NULL: free */
  audit__head *h;  /* in the job's heads array (not zeroed: only used ones are read) */
} slot;

typedef struct batch {
  const entry *list; /* read only: the job may run more than once */
  uint64_t pause_ns;  /* the job pauses (JOB_SLICE) only this long after it began */
  const cursor_upd *cur;
  size_t ncur;
  /* The job's scratch output (rewritten by every run): the batch's n
   * entries, blocks of AUDIT_BLOCK_BYTES from the front (nkeep), the others
   * from the back. The job reads every entry anyway; the audit thread then
   * recycles them without walking the list (a cache miss per entry on
   * another core). NULL: no room for it (the list is walked). */
  entry **ents;
  size_t n, nkeep;
  uint64_t pauses; /* taken by the job's last run */
} batch;

static slot *cache_find(slot *tab, const char *uid) {
  uint32_t hv = 2166136261u;
  for (const char *p = uid; *p; p++) hv = (hv ^ (uint8_t)*p) * 16777619u;
  for (uint32_t i = hv & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1))
    if (!tab[i].uid || strcmp(tab[i].uid, uid) == 0) return &tab[i];
}

/* the slots in use are listed in used[0..n): a batch of a few records
 * touches a few slots, not the whole table */
static int cache_write_back(st_txn *txn, slot *tab, uint16_t *used, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc;
    if ((rc = audit__head_put(txn, tab[used[i]].uid, tab[used[i]].h)) < 0) return rc;
  }
  for (size_t i = 0; i < n; i++) tab[used[i]].uid = NULL;
  return 0;
}

/* seq in decimal into out (at most 20 digits); its length */
static size_t u64_dec(uint64_t v, char out[24]) {
  char t[24];
  size_t n = 0;
  do {
    t[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
  return n;
}
/* the prefix fits: pre has room for the uid, tenant, hash, two seqs and the keys */
#define APPEND(b, len, p, n)     \
  do {                           \
    memcpy((b) + (len), (p), (n)); \
    (len) += (n);                \
  } while (0)

static int commit_job(st_txn *txn, void *arg) {
  const batch *b = arg;
  slot *tab = calloc(CACHE_SLOTS, sizeof *tab);
  audit__head *heads = malloc(CACHE_MAX * sizeof *heads);
  uint16_t used[CACHE_MAX];
  slot *last = NULL; /* the previous record's chain: a batch is mostly runs of one */
  size_t ncached = 0;
  uint8_t key[AUDIT__KEY_MAX];
  /* {"id":"<uid>-<seq>","prev":"<hash>","seq":<seq>,"tenant":"<t>" */
  char pre[AUDIT_UID_MAX + AUDIT_HASH_HEX + AUDIT_TENANT_MAX + 2 * 24 + 64];
  int rc = 0;
  batch *bw = arg; /* only its scratch output is written */
  size_t nother = 0;
  bw->nkeep = 0;
  if (!tab || !heads) {
    rc = AUDIT_ENOMEM;
    goto out;
  }
  size_t slice = 0; /* bytes written since the last pause */
  uint64_t began = uv_hrtime();
  bool pausing = true;
  bw->pauses = 0;
  for (const entry *e = b->list; e; e = e->next) {
    if ((slice += e->len + 256) > JOB_SLICE) { /* see the rules above */
      if (pausing && (pausing = uv_hrtime() - began < b->pause_ns)) {
        nanosleep(&(struct timespec){0, PAUSE_NS}, NULL);
        bw->pauses++;
      }
      slice = 0;
    }
    if (b->ents) {
      if (bw->nkeep + nother >= b->n) { /* more entries than counted: never; walk then */
        free(bw->ents);
        bw->ents = NULL;
      } else if (e->cap == AUDIT_BLOCK_BYTES) {
        bw->ents[bw->nkeep++] = (entry *)e;
      } else {
        bw->ents[b->n - ++nother] = (entry *)e;
      }
    }
    /* The entries were written on a loop's core: each line read here is a
     * miss. Fetching the next record's lines while this one is hashed and
     * put hides them (a linked list defeats the hardware's prefetcher). */
    if (e->next)
      for (size_t off = 0; off < 8 * 64; off += 64) __builtin_prefetch((const char *)e->next + off);
    slot *sl = last && last->uid && strcmp(last->uid, e->uid) == 0 ? last : cache_find(tab, e->uid);
    if (!sl->uid) {
      if (ncached >= CACHE_MAX) {
        if ((rc = cache_write_back(txn, tab, used, ncached)) < 0) goto out;
        ncached = 0;
        sl = cache_find(tab, e->uid);
      }
      sl->h = &heads[ncached];
      rc = audit__head_get(txn, e->uid, sl->h);
      if (rc == ST_ENOTFOUND) audit__head_init(sl->h, e->tenant);
      else if (rc < 0) goto out;
      sl->uid = e->uid;
      used[ncached++] = (uint16_t)(sl - tab);
    }
    last = sl;
    uint64_t seq = sl->h->seq + 1;
    /* The chain's tenant (a uid belongs to the tenant of its first record).
     * The prefix written piece by piece (one record per call of the data
     * path: stdio's formatting cost more than the rest of it), then the
     * record is written once, straight into the page LMDB made room in:
     * no copy of it is built first */
    char num[24];
    size_t nl = u64_dec(seq, num);
    size_t len = 0;
    APPEND(pre, len, "{\"id\":\"", 7);
    APPEND(pre, len, e->uid, strlen(e->uid));
    APPEND(pre, len, "-", 1);
    APPEND(pre, len, num, nl);
    APPEND(pre, len, "\",\"prev\":\"", 10);
    APPEND(pre, len, sl->h->hash, AUDIT_HASH_HEX);
    APPEND(pre, len, "\",\"seq\":", 8);
    APPEND(pre, len, num, nl);
    APPEND(pre, len, ",\"tenant\":\"", 11);
    APPEND(pre, len, sl->h->tenant, strlen(sl->h->tenant));
    APPEND(pre, len, "\"", 1);
    size_t vlen = len + (e->len > 2 ? e->len : 1); /* "{...}" → ",...}"; "{}" → "}" */
    size_t kl = audit__rec_key(e->uid, seq, key);
    char *v;
    /* Never overwrite: a head behind its records means tampering; failing
     * (closed) beats destroying the evidence. */
    if ((rc = st_put_reserve(txn, (st_db)AUDIT_DB_RECORDS, key, kl, vlen, ST_NOOVERWRITE | ST_APPEND, (void **)&v)) <
        0)
      goto out;
    memcpy(v, pre, len);
    if (e->len > 2) {
      v[len] = ',';
      memcpy(v + len + 1, e->body + 1, e->len - 1);
    } else {
      v[len] = '}';
    }
    if ((rc = audit__hash_hex(v, vlen, sl->h->hash)) < 0) goto out;
    sl->h->seq = seq;
  }
  if ((rc = cache_write_back(txn, tab, used, ncached)) < 0) goto out;
  /* after the records: a cursor of this batch's own records finds them */
  for (size_t i = 0; i < b->ncur; i++)
    if ((rc = b->cur[i].drop ? audit__cursor_drop(txn, b->cur[i].sink)
                             : audit__cursor_put(txn, b->cur[i].sink, b->cur[i].uid, b->cur[i].seq)) < 0)
      goto out;
out:
  free(heads);
  free(tab);
  return rc;
}

/* ---- the audit thread ------------------------------------------------------------- */

static void head_line(void *ctx, const char *tenant, const char *uid, uint64_t seq,
                      const char *hash) {
  alog(ctx, ST_LOG_INFO, "chain head tenant=%s uid=%s seq=%" PRIu64 " hash=%s", tenant, uid, seq,
       hash);
}

/* One read txn for all heads; the log callback is short and this is the
 * audit thread, not a loop. */
static void log_heads(audit_log *a) {
  st_txn *txn = NULL;
  int rc = st_read_begin(a->st, &txn);
  if (rc == 0) {
    rc = audit_heads(txn, head_line, a);
    st_txn_end(txn);
  }
  if (rc < 0) alog(a, ST_LOG_ERROR, "cannot log the chain heads: %s", audit_strerror(rc));
}

static void free_list(entry *e) {
  while (e) {
    entry *n = e->next;
    free(e);
    e = n;
  }
}

/* A committed batch's blocks of AUDIT_BLOCK_BYTES go back to the pool
 * (as many as it has room for), the others are freed. Records are built
 * on a loop and committed here: without the pool each cost the loop a
 * malloc from glibc's shared arena and this thread a free into it (blocks
 * this size miss the per-thread caches). With the job's list of the batch
 * (b->ents) no entry is read here; without it the list is walked. */
static void recycle(audit_log *a, entry *list, const batch *b) {
  if (!list) return;
  if (!b->ents) {
    free_list(list);
    return;
  }
  size_t take;
  uv_mutex_lock(&a->pool_mu);
  take = POOL_MAX - a->npool < b->nkeep ? POOL_MAX - a->npool : b->nkeep;
  memcpy(a->pool + a->npool, b->ents, take * sizeof b->ents[0]);
  a->npool += take;
  uv_mutex_unlock(&a->pool_mu);
  for (size_t i = take; i < b->nkeep; i++) free(b->ents[i]);
  for (size_t i = b->nkeep; i < b->n; i++) free(b->ents[i]);
}

/* Frees the blocks no record needed since the last call (the fewest the
 * pool held meanwhile): the pool keeps what the traffic of the last
 * pool_trim_ms took, and a burst's blocks go back to the allocator once it
 * has passed. A few at a time: a loop may be waiting for the lock. The
 * audit thread, every pool_trim_ms. */
void audit__pool_trim(audit_log *a) {
  entry *spare[POOL_TRIM_STEP];
  uv_mutex_lock(&a->pool_mu);
  size_t excess = a->pool_low;
  uv_mutex_unlock(&a->pool_mu);
  while (excess) {
    size_t k = 0;
    uv_mutex_lock(&a->pool_mu);
    while (k < POOL_TRIM_STEP && k < excess && a->npool) spare[k++] = a->pool[--a->npool];
    uv_mutex_unlock(&a->pool_mu);
    if (!k) break;
    for (size_t i = 0; i < k; i++) free(spare[i]);
    excess -= k;
  }
  uv_mutex_lock(&a->pool_mu);
  a->pool_low = a->npool;
  uv_mutex_unlock(&a->pool_mu);
}

/* What settle wants logged: written after the queue mutex is released, so
 * a slow (or re-entrant) log callback never holds up submitters. */
typedef struct notes {
  int n;
  int level[2];
  char msg[2][160];
} notes;

static void note(notes *w, int level, const char *fmt, ...) {
  va_list ap;
  if (w->n >= 2) return;
  va_start(ap, fmt);
  vsnprintf(w->msg[w->n], sizeof w->msg[0], fmt, ap);
  va_end(ap);
  w->level[w->n++] = level;
}

/* Under mu: cursor updates of a failed batch go back, before those queued
 * since (they are older), unless one of those supersedes them — a newer
 * update of the same (sink, uid), or a drop of the sink (the update would
 * bring a dropped cursor back) — or there is no room: the ones queued
 * since are kept first, and a sink whose update is lost sets it again. */
static void cursors_back(audit_log *a, const cursor_upd *cur, size_t n) {
  cursor_upd merged[AUDIT_CURSORS_PENDING];
  size_t m = 0, room = AUDIT_CURSORS_PENDING - a->ncur;
  for (size_t i = 0; i < n && m < room; i++) {
    size_t j = 0;
    while (j < a->ncur && (strcmp(a->cur[j].sink, cur[i].sink) || (strcmp(a->cur[j].uid, cur[i].uid) && !a->cur[j].drop)))
      j++;
    if (j == a->ncur) merged[m++] = cur[i];
  }
  memcpy(merged + m, a->cur, a->ncur * sizeof a->cur[0]);
  m += a->ncur;
  memcpy(a->cur, merged, m * sizeof merged[0]);
  a->ncur = m;
}

/* Under mu: the outcome of one batch attempt (list: n entries, bytes,
 * last its tail — counted before the lock). Returns the entries to free
 * once the lock is released (never under it: a batch is thousands of
 * entries, and every submitter waits for this mutex). */
static entry *settle(audit_log *a, entry *list, size_t n, size_t bytes, entry *last, int rc, uint64_t ns,
                     bool stopping, notes *w) {
  double ms = (double)ns / 1e6;
  a->stats.last_commit_ms = ms;
  a->stats.commit_ms_sum += ms;
  a->stats.commit_ms_count++;
  for (int i = 0; i < AUDIT_STATS_NBUCKETS; i++)
    if (ms <= audit_stats_bucket_le_ms[i]) a->stats.commit_ms_bucket[i]++;
  if (rc >= 0) {
    a->stats.commits++;
    a->stats.written += n;
    a->qrecords -= n;
    a->qbytes -= bytes;
    if (atomic_exchange(&a->broken, 0))
      note(w, ST_LOG_WARN, "audit commits succeed again (%zu records written)", n);
    atomic_store(&a->full, 0);
    return list;
  }
  a->stats.commit_failures++;
  if (!atomic_exchange(&a->broken, 1) || stopping)
    note(w, ST_LOG_ERROR, "audit commit of %zu records failed: %s%s", n, audit_strerror(rc),
         stopping ? "" : " (kept queued; retrying)");
  if (stopping) {
    note(w, ST_LOG_ERROR, "audit close: %zu records could not be written and are lost", n);
    a->stats.dropped += n;
    a->qrecords -= n;
    a->qbytes -= bytes;
    return list;
  }
  /* back to the front of the queue, order kept */
  if (last) {
    last->next = a->head;
    if (!a->tail) a->tail = last;
    a->head = list;
    a->npending += n;
    a->pbytes += bytes;
  }
  a->first_ns = uv_hrtime();
  return NULL;
}

static void thread_main(void *arg) {
  audit_log *a = arg;
  pthread_setname_np(pthread_self(), "mcpgate-audit");
  if (a->nice) st_thread_nice(a->nice); /* as its environment's writer */
  uint64_t next_heads = a->head_log_ns ? uv_hrtime() + a->head_log_ns : UINT64_MAX;
  uint64_t next_trim = uv_hrtime() + a->pool_trim_ns;
  uint64_t retry_at = 0, backoff = a->batch_ns;
  uv_mutex_lock(&a->mu);
  for (;;) {
    uint64_t now = uv_hrtime();
    bool pending = a->head || a->ncur;
    bool commit = a->stopping || a->started < a->flush_want ||
                  (pending && now >= retry_at &&
                   (a->npending >= a->wake_records || now >= a->first_ns + a->batch_ns));
    if (!commit && now >= next_heads) {
      uv_mutex_unlock(&a->mu);
      log_heads(a);
      uv_mutex_lock(&a->mu);
      next_heads = uv_hrtime() + a->head_log_ns;
      continue;
    }
    if (!commit && now >= next_trim) {
      uv_mutex_unlock(&a->mu);
      audit__pool_trim(a);
      uv_mutex_lock(&a->mu);
      next_trim = uv_hrtime() + a->pool_trim_ns;
      continue;
    }
    if (!commit) {
      uint64_t deadline = next_heads < next_trim ? next_heads : next_trim;
      if (pending) {
        uint64_t d = a->first_ns + a->batch_ns;
        if (d < retry_at) d = retry_at;
        if (d < deadline) deadline = d;
      }
      if (deadline == UINT64_MAX) uv_cond_wait(&a->wake, &a->mu);
      else uv_cond_timedwait(&a->wake, &a->mu, deadline > now ? deadline - now : 1);
      continue;
    }
    /* the batch's count, bytes and tail as the queue kept them: walking
     * thousands of entries another core just wrote costs a cache miss each */
    entry *list = a->head, *last = a->tail;
    size_t n = a->npending, bytes = a->pbytes;
    bool stopping = a->stopping;
    cursor_upd cur[AUDIT_CURSORS_PENDING];
    size_t ncur = a->ncur;
    memcpy(cur, a->cur, ncur * sizeof cur[0]);
    a->ncur = 0;
    a->head = a->tail = NULL;
    a->npending = a->pbytes = 0;
    a->started++;
    uv_mutex_unlock(&a->mu);
    int rc = 0;
    uint64_t t0 = uv_hrtime(), ns = 0;
    uint64_t pause_ns = n >= a->wake_records ? 0 : a->batch_ns / PAUSE_BUDGET_DIV;
    if (pause_ns > PAUSE_BUDGET_MAX_NS) pause_ns = PAUSE_BUDGET_MAX_NS;
    batch b = {list, pause_ns, cur, ncur, n ? malloc(n * sizeof(entry *)) : NULL, n, 0, 0};
    if (list || ncur) {
      rc = st_write_sync(a->st, commit_job, &b);
      ns = uv_hrtime() - t0;
    }
    uv_mutex_lock(&a->mu);
    notes w = {0};
    a->stats.pauses += b.pauses;
    entry *done = list || ncur ? settle(a, list, n, bytes, last, rc, ns, stopping, &w) : NULL;
    if (rc < 0 && !stopping) cursors_back(a, cur, ncur);
    if (rc < 0) {
      retry_at = uv_hrtime() + backoff;
      backoff = backoff * 2 > RETRY_MAX_NS ? (a->batch_ns > RETRY_MAX_NS ? a->batch_ns : RETRY_MAX_NS)
                                           : backoff * 2;
    } else if (list || ncur) {
      backoff = a->batch_ns;
    }
    if (w.n || done) { /* logged before audit_flush returns, and freed, outside the lock */
      uv_mutex_unlock(&a->mu);
      recycle(a, done, rc >= 0 ? &b : &(batch){.ents = NULL});
      for (int i = 0; i < w.n; i++) alog(a, w.level[i], "%s", w.msg[i]);
      uv_mutex_lock(&a->mu);
    }
    free(b.ents);
    a->finished++;
    uv_cond_broadcast(&a->settled);
    if (stopping && !a->head && !a->ncur) break;
  }
  a->exited = true;
  uv_cond_broadcast(&a->settled);
  uv_mutex_unlock(&a->mu);
}

/* ---- public ------------------------------------------------------------------------ */

int audit_open(audit_log **out, const audit_options *o) {
  audit_log *a = NULL;
  st_options so = {0};
  int rc, inited = 0;
  if (!out) return AUDIT_EINVAL;
  *out = NULL;
  if (!o || !o->dir) return AUDIT_EINVAL;
  if (!(a = calloc(1, sizeof *a))) return AUDIT_ENOMEM;
  a->log = o->log;
  a->log_ctx = o->log_ctx;
  a->nice = o->nice;
  a->batch_ns = (uint64_t)(o->batch_ms ? o->batch_ms : DEFAULT_BATCH_MS) * 1000000u;
  int64_t hl = o->head_log_ms ? o->head_log_ms : DEFAULT_HEAD_LOG_MS;
  if (hl > HEAD_LOG_MS_MAX) hl = HEAD_LOG_MS_MAX; /* keeps the ns arithmetic in range */
  a->head_log_ns = hl < 0 ? 0 : (uint64_t)hl * 1000000u;
  a->pool_trim_ns = (uint64_t)(o->pool_trim_ms ? o->pool_trim_ms : POOL_TRIM_MS) * 1000000u;
  a->queue_max = o->queue_max ? o->queue_max : DEFAULT_QUEUE_MAX;
  a->queue_bytes_max = o->queue_bytes_max ? o->queue_bytes_max : DEFAULT_QUEUE_BYTES;
  a->wake_records = a->queue_max / 4;
  if (a->wake_records > WAKE_RECORDS_MAX) a->wake_records = WAKE_RECORDS_MAX;
  if (a->wake_records < 1) a->wake_records = 1;
  rc = AUDIT_ENOMEM;
  if (uv_mutex_init(&a->mu) != 0) goto fail;
  inited = 1;
  if (uv_cond_init(&a->wake) != 0) goto fail;
  inited = 2;
  if (uv_cond_init(&a->settled) != 0) goto fail;
  inited = 3;
  if (!(a->pool = malloc(POOL_MAX * sizeof *a->pool)) || uv_mutex_init(&a->pool_mu) != 0) goto fail;
  inited = 4;

  so.dir = o->dir;
  so.map_size = o->map_size ? o->map_size : DEFAULT_MAP_SIZE;
  so.schema = &audit_schema;
  so.log = o->log;
  so.log_ctx = o->log_ctx;
  so.writer_nice = o->nice;
  if ((rc = st_open(&a->st, &so)) < 0) goto fail;
  if (uv_thread_create(&a->thread, thread_main, a) != 0) {
    rc = AUDIT_ENOMEM;
    goto fail;
  }
  *out = a;
  return 0;
fail:
  st_close(a->st);
  if (inited >= 4) uv_mutex_destroy(&a->pool_mu);
  free(a->pool);
  if (inited >= 3) uv_cond_destroy(&a->settled);
  if (inited >= 2) uv_cond_destroy(&a->wake);
  if (inited >= 1) uv_mutex_destroy(&a->mu);
  free(a);
  return rc;
}

void audit_close(audit_log *a) {
  if (!a) return;
  atomic_store(&a->closed, 1);
  uv_mutex_lock(&a->mu);
  a->stopping = true;
  uv_cond_signal(&a->wake);
  uv_mutex_unlock(&a->mu);
  uv_thread_join(&a->thread);
  st_close(a->st);
  free_list(a->head); /* empty: the thread drained or dropped everything */
  for (size_t i = 0; i < a->npool; i++) free(a->pool[i]);
  free(a->pool);
  uv_mutex_destroy(&a->pool_mu);
  free(a->sinks);
  uv_cond_destroy(&a->settled);
  uv_cond_destroy(&a->wake);
  uv_mutex_destroy(&a->mu);
  free(a);
}

/* Queues the caller's members (text, len bytes: one JSON object "{...}";
 * copied). The checks of tenant and uid are the caller's. */
static int enqueue_entry(audit_log *a, entry *e);

static int enqueue(audit_log *a, const char *tenant, const char *tenant_uid, const char *body, size_t len) {
  if (len > AUDIT_RECORD_MAX) {
    uv_mutex_lock(&a->mu);
    a->stats.dropped++;
    uv_mutex_unlock(&a->mu);
    return AUDIT_ETOOBIG;
  }
  size_t cap = sizeof(entry) + len + 1;
  entry *e = cap <= AUDIT_BLOCK_BYTES ? (entry *)(void *)audit_block_get(a) : malloc(cap);
  if (!e) return AUDIT_ENOMEM;
  if (cap <= AUDIT_BLOCK_BYTES) cap = AUDIT_BLOCK_BYTES;
  memcpy(e->body, body, len);
  e->body[len] = 0;
  size_t tl = strlen(tenant), ul = strlen(tenant_uid);
  memcpy(e->tenant, tenant, tl + 1); /* lengths checked by audit__tenant_ok / audit__uid_ok */
  memcpy(e->uid, tenant_uid, ul + 1);
  e->len = len;
  e->cap = cap;
  return enqueue_entry(a, e);
}

/* Queues e (taken in every case: freed when refused). */
static int enqueue_entry(audit_log *a, entry *e) {
  int rc;
  e->next = NULL;

  uv_mutex_lock(&a->mu);
  if (a->stopping) {
    rc = AUDIT_ECLOSED;
  } else if (a->qrecords >= a->queue_max || a->qbytes + entry_bytes(e) > a->queue_bytes_max) {
    a->stats.dropped++;
    atomic_store(&a->full, 1);
    rc = AUDIT_EFULL;
  } else {
    if (a->tail) a->tail->next = e;
    else a->head = e;
    a->tail = e;
    a->qrecords++;
    a->qbytes += entry_bytes(e);
    a->pbytes += entry_bytes(e);
    if (++a->npending == 1 && !a->ncur) a->first_ns = uv_hrtime();
    if (a->npending == 1 || a->npending == a->wake_records) uv_cond_signal(&a->wake);
    e = NULL;
    rc = atomic_load(&a->broken) ? AUDIT_EBROKEN : 0;
  }
  uv_mutex_unlock(&a->mu);
  free(e);
  return rc;
}

int audit_submit(audit_log *a, const char *tenant, const char *tenant_uid, json_t *rec) {
  static const char *const owned[] = {"seq", "id", "prev", "tenant"};
  if (!a || !json_is_object(rec) || !audit__tenant_ok(tenant) || !audit__uid_ok(tenant_uid)) {
    json_decref(rec);
    return AUDIT_EINVAL;
  }
  if (atomic_load(&a->closed)) {
    json_decref(rec);
    return AUDIT_ECLOSED;
  }
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) json_object_del(rec, owned[i]);
  if (!json_is_integer(json_object_get(rec, "time")) &&
      json_object_set_new(rec, "time", json_integer(now_ms())) < 0) {
    json_decref(rec);
    return AUDIT_ENOMEM;
  }
  char *body = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(rec);
  if (!body) return AUDIT_ENOMEM;
  int rc = enqueue(a, tenant, tenant_uid, body, strlen(body));
  free(body);
  return rc;
}

size_t audit_text_headroom(void) { return offsetof(entry, body); }

char *audit_block_get(audit_log *a) {
  entry *e = NULL;
  if (a) { /* the block itself is not read: its lines are another core's */
    uv_mutex_lock(&a->pool_mu);
    if (a->npool) e = a->pool[--a->npool];
    if (a->npool < a->pool_low) a->pool_low = a->npool;
    uv_mutex_unlock(&a->pool_mu);
  }
  return e ? (char *)e : malloc(AUDIT_BLOCK_BYTES);
}

/* Copies a NUL-terminated name of at most max bytes whose every byte has
 * the class bit `want` into dst: its length, or 0 when it is empty, too
 * long or holds another byte. One pass (the data path submits a record
 * per call). */
enum { CL_TENANT = 1, CL_UID = 2 };
static const unsigned char name_class[256] = {
    ['a' ... 'z'] = CL_TENANT | CL_UID, ['0' ... '9'] = CL_TENANT | CL_UID, ['-'] = CL_TENANT | CL_UID,
    ['A' ... 'Z'] = CL_UID, ['_'] = CL_UID,
};
static size_t copy_name(char *dst, const char *s, size_t max, unsigned char want) {
  size_t n = 0;
  for (; s[n]; n++) {
    if (n >= max || !(name_class[(unsigned char)s[n]] & want)) return 0;
    dst[n] = s[n];
  }
  dst[n] = 0;
  return n;
}

int audit_submit_block(audit_log *a, const char *tenant, const char *tenant_uid, char *block, size_t len,
                       size_t cap) {
  const char *m = block ? block + offsetof(entry, body) : NULL;
  entry *e = (entry *)(void *)block;
  if (!a || !m || !tenant || !tenant_uid || cap < offsetof(entry, body) || len >= cap - offsetof(entry, body) ||
      len < 2 || m[0] != '{' ||
      m[len - 1] != '}' || m[len] != 0 || memchr(m, 0, len) ||
      !copy_name(e->tenant, tenant, AUDIT_TENANT_MAX, CL_TENANT) ||
      !copy_name(e->uid, tenant_uid, AUDIT_UID_MAX, CL_UID)) {
    free(block);
    return AUDIT_EINVAL;
  }
  if (atomic_load(&a->closed)) {
    free(block);
    return AUDIT_ECLOSED;
  }
  if (len > AUDIT_RECORD_MAX) {
    free(block);
    uv_mutex_lock(&a->mu);
    a->stats.dropped++;
    uv_mutex_unlock(&a->mu);
    return AUDIT_ETOOBIG;
  }
  e->len = len;
  e->cap = cap;
  return enqueue_entry(a, e);
}

int audit_submit_text(audit_log *a, const char *tenant, const char *tenant_uid, const char *members, size_t len) {
  if (!a || !members || len < 2 || members[0] != '{' || members[len - 1] != '}' || memchr(members, 0, len) ||
      !audit__tenant_ok(tenant) || !audit__uid_ok(tenant_uid))
    return AUDIT_EINVAL;
  if (atomic_load(&a->closed)) return AUDIT_ECLOSED;
  return enqueue(a, tenant, tenant_uid, members, len);
}

bool audit_ok(const audit_log *a) {
  return a && !atomic_load(&a->broken) && !atomic_load(&a->full) && !atomic_load(&a->closed);
}

void audit_flush(audit_log *a) {
  if (!a) return;
  uv_mutex_lock(&a->mu);
  if (a->qrecords > 0 && !a->exited) {
    uint64_t target = a->started + 1; /* the next batch takes all that is queued now */
    if (a->flush_want < target) a->flush_want = target;
    uv_cond_signal(&a->wake);
    while (a->finished < target && !a->exited) uv_cond_wait(&a->settled, &a->mu);
  }
  uv_mutex_unlock(&a->mu);
}

void audit_flush_all(audit_log *a) {
  if (!a) return;
  uv_mutex_lock(&a->mu);
  if ((a->qrecords > 0 || a->ncur > 0) && !a->exited) {
    uint64_t target = a->started + 1;
    if (a->flush_want < target) a->flush_want = target;
    uv_cond_signal(&a->wake);
    while (a->finished < target && !a->exited) uv_cond_wait(&a->settled, &a->mu);
  }
  uv_mutex_unlock(&a->mu);
}

int audit_sink_state_put(audit_log *a, const char *sink, const audit_sink_state *st) {
  if (!a || !audit__sink_ok(sink)) return AUDIT_EINVAL;
  int rc = 0;
  uv_mutex_lock(&a->mu);
  size_t i = 0;
  while (i < a->nsinks && strcmp(a->sinks[i].name, sink)) i++;
  if (!st) {
    if (i < a->nsinks) {
      memmove(&a->sinks[i], &a->sinks[i + 1], (a->nsinks - i - 1) * sizeof a->sinks[0]);
      a->nsinks--;
    }
  } else if (i < a->nsinks) {
    a->sinks[i].st = *st;
  } else {
    if (a->nsinks == a->capsinks) {
      size_t cap = a->capsinks ? a->capsinks * 2 : 8;
      struct sink_state *n = realloc(a->sinks, cap * sizeof *n);
      if (!n) rc = AUDIT_ENOMEM;
      else {
        a->sinks = n;
        a->capsinks = cap;
      }
    }
    if (!rc) {
      snprintf(a->sinks[a->nsinks].name, sizeof a->sinks[0].name, "%s", sink);
      a->sinks[a->nsinks++].st = *st;
    }
  }
  uv_mutex_unlock(&a->mu);
  return rc;
}

bool audit_sink_state_get(audit_log *a, const char *sink, audit_sink_state *out) {
  bool found = false;
  if (!a || !sink) return false;
  uv_mutex_lock(&a->mu);
  for (size_t i = 0; i < a->nsinks && !found; i++)
    if (!strcmp(a->sinks[i].name, sink)) {
      *out = a->sinks[i].st;
      found = true;
    }
  uv_mutex_unlock(&a->mu);
  return found;
}

void audit_sink_states_each(audit_log *a, void (*cb)(void *ctx, const char *sink, const audit_sink_state *st),
                            void *ctx) {
  if (!a) return;
  uv_mutex_lock(&a->mu);
  for (size_t i = 0; i < a->nsinks; i++) cb(ctx, a->sinks[i].name, &a->sinks[i].st);
  uv_mutex_unlock(&a->mu);
}

int audit_cursor_set(audit_log *a, const char *sink, const char *uid, uint64_t seq) {
  if (!a || !audit__sink_ok(sink) || !audit__uid_ok(uid)) return AUDIT_EINVAL;
  int rc = 0;
  uv_mutex_lock(&a->mu);
  size_t j = 0;
  while (j < a->ncur && (strcmp(a->cur[j].sink, sink) || strcmp(a->cur[j].uid, uid))) j++;
  if (a->stopping) {
    rc = AUDIT_ECLOSED;
  } else if (j < a->ncur) {
    if (a->cur[j].seq < seq) a->cur[j].seq = seq;
  } else if (a->ncur == AUDIT_CURSORS_PENDING) {
    rc = AUDIT_EFULL;
  } else {
    cursor_upd *u = &a->cur[a->ncur++];
    snprintf(u->sink, sizeof u->sink, "%s", sink);
    snprintf(u->uid, sizeof u->uid, "%s", uid);
    u->seq = seq;
    u->drop = false;
    if (!a->head && a->ncur == 1) {
      a->first_ns = uv_hrtime();
      uv_cond_signal(&a->wake);
    }
  }
  uv_mutex_unlock(&a->mu);
  return rc;
}

int audit_cursor_drop(audit_log *a, const char *sink) {
  if (!a || !audit__sink_ok(sink)) return AUDIT_EINVAL;
  int rc = 0;
  uv_mutex_lock(&a->mu);
  if (a->stopping) {
    rc = AUDIT_ECLOSED;
  } else {
    /* the sink's pending updates (and an earlier drop) go: this drop covers them */
    size_t w = 0;
    for (size_t i = 0; i < a->ncur; i++)
      if (strcmp(a->cur[i].sink, sink)) a->cur[w++] = a->cur[i];
    a->ncur = w;
    if (a->ncur == AUDIT_CURSORS_PENDING) {
      rc = AUDIT_EFULL;
    } else {
      cursor_upd *u = &a->cur[a->ncur++];
      memset(u, 0, sizeof *u);
      snprintf(u->sink, sizeof u->sink, "%s", sink);
      u->drop = true;
      if (!a->head && a->ncur == 1) {
        a->first_ns = uv_hrtime();
        uv_cond_signal(&a->wake);
      }
    }
  }
  uv_mutex_unlock(&a->mu);
  return rc;
}

void audit_stats_get(audit_log *a, audit_stats *out) {
  memset(out, 0, sizeof *out);
  if (!a) return;
  uv_mutex_lock(&a->mu);
  *out = a->stats;
  out->queue_records = a->qrecords;
  out->queue_bytes = a->qbytes;
  uv_mutex_unlock(&a->mu);
  uv_mutex_lock(&a->pool_mu);
  out->pool_blocks = a->npool;
  uv_mutex_unlock(&a->pool_mu);
  out->broken = atomic_load(&a->broken) != 0;
}
