/* tests/unit/test_audit.c — audit/ against a real LMDB env on disk (a
 * mkdtemp dir under /tmp, removed at the end of each test): chains of two
 * tenants interleaved and submitted from two threads, the stored format
 * (seq, id, prev = SHA-256 of the previous record's bytes), tampering
 * (edited record, edited prev, deleted record, head mismatch) named by
 * audit_verify and seen by st_check, retention, query filters and paging,
 * export chunks, argument redaction and digests, the queue cap, a map too
 * small to commit, reopening, and the chain-head log lines. Tampering is a
 * test-only write job on the audit env (audit_store). No sleep asserts
 * time: audit_flush waits for commits. UNIT_VERBOSE=1 prints the logs. */
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "audit/audit.h"
#include "audit/audit_int.h"
#include "store/store.h"
#include "store/seal.h"
#include "store/store_testing.h"
#include "store/tenant.h"
#include "tests/unit/unit.h"

/* ---- fixtures --------------------------------------------------------------------- */

static char g_tmp[64];
static char g_dir[128];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
static void tmp_setup(void) {
  tmp_cleanup(); /* a failed CHECK skips a test's own cleanup */
  strcpy(g_tmp, "/tmp/mcpgate-test-audit-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  snprintf(g_dir, sizeof g_dir, "%s/audit", g_tmp);
}

/* Log capture: every line kept (capped), printed with UNIT_VERBOSE. */
typedef struct logcap {
  uv_mutex_t mu;
  char lines[64][256];
  int n;
  int errors;
} logcap;
static logcap g_log;
static void log_fn(void *ctx, int level, const char *module, const char *msg) {
  logcap *l = ctx;
  if (getenv("UNIT_VERBOSE")) fprintf(stderr, "  [%s %d] %s\n", module, level, msg);
  uv_mutex_lock(&l->mu);
  if (level >= ST_LOG_ERROR) l->errors++;
  if (l->n < 64) snprintf(l->lines[l->n++], sizeof l->lines[0], "%s: %s", module, msg);
  uv_mutex_unlock(&l->mu);
}
static void log_reset(void) {
  uv_mutex_lock(&g_log.mu);
  g_log.n = 0;
  g_log.errors = 0;
  uv_mutex_unlock(&g_log.mu);
}
static bool log_has(const char *needle) {
  bool found = false;
  uv_mutex_lock(&g_log.mu);
  for (int i = 0; i < g_log.n && !found; i++) found = strstr(g_log.lines[i], needle) != NULL;
  uv_mutex_unlock(&g_log.mu);
  return found;
}

static audit_options opts(void) {
  audit_options o = {0};
  o.dir = g_dir;
  o.map_size = 64u << 20;
  o.batch_ms = 5;
  o.head_log_ms = -1;
  o.log = log_fn;
  o.log_ctx = &g_log;
  return o;
}
static audit_log *open_with(const audit_options *o) {
  audit_log *a = NULL;
  return audit_open(&a, o) == 0 ? a : NULL;
}
static audit_log *open_default(void) {
  audit_options o = opts();
  return open_with(&o);
}

#define UID_A "a1b2c3d4e5f60718"
#define UID_B "ffeeddccbbaa9988"

static json_t *rec_kind(const char *kind, const char *user, int n) {
  return json_pack("{sssssi}", "kind", kind, "user", user, "n", n);
}
static int submit_n(audit_log *a, const char *tenant, const char *uid, int from, int to) {
  for (int i = from; i < to; i++) {
    int rc = audit_submit(a, tenant, uid, rec_kind("call", "alice", i));
    if (rc < 0) return rc;
  }
  return 0;
}

/* Copy of one stored record (NUL-terminated, malloc'd) or NULL. */
static char *rec_get(audit_log *a, const char *uid, uint64_t seq, size_t *len) {
  uint8_t k[80];
  size_t ul = strlen(uid);
  st_txn *t;
  st_val v;
  char *out = NULL;
  memcpy(k, uid, ul);
  k[ul] = 0;
  for (int i = 0; i < 8; i++) k[ul + 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
  if (st_read_begin(audit_store(a), &t) < 0) return NULL;
  if (st_get(t, (st_db)AUDIT_DB_RECORDS, k, ul + 9, &v) == 0 && (out = malloc(v.len + 1))) {
    memcpy(out, v.data, v.len);
    out[v.len] = 0;
    if (len) *len = v.len;
  }
  st_txn_end(t);
  return out;
}
static json_t *rec_json(audit_log *a, const char *uid, uint64_t seq) {
  char *s = rec_get(a, uid, seq, NULL);
  json_t *j = s ? json_loads(s, 0, NULL) : NULL;
  free(s);
  return j;
}
static void hex_sha(const char *s, size_t n, char out[65]) {
  uint8_t d[32];
  st_sha256(s, n, d);
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* The test-only tampering write: put or delete a raw key of the audit env. */
typedef struct raw_job {
  st_db db;
  uint8_t k[80];
  size_t klen;
  const char *v; /* NULL: delete */
} raw_job;
static int raw_fn(st_txn *txn, void *arg) {
  raw_job *r = arg;
  if (!r->v) return st_del(txn, r->db, r->k, r->klen);
  return st_put(txn, r->db, r->k, r->klen, r->v, strlen(r->v), 0);
}
static int raw_rec(audit_log *a, const char *uid, uint64_t seq, const char *v) {
  raw_job r = {(st_db)AUDIT_DB_RECORDS, {0}, 0, v};
  size_t ul = strlen(uid);
  memcpy(r.k, uid, ul);
  r.k[ul] = 0;
  for (int i = 0; i < 8; i++) r.k[ul + 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
  r.klen = ul + 9;
  return st_write_sync(audit_store(a), raw_fn, &r);
}
static int raw_head(audit_log *a, const char *uid, const char *v) {
  raw_job r = {(st_db)AUDIT_DB_HEADS, {0}, strlen(uid), v};
  memcpy(r.k, uid, r.klen);
  return st_write_sync(audit_store(a), raw_fn, &r);
}
static char *head_get(audit_log *a, const char *uid) {
  st_txn *t;
  st_val v;
  char *out = NULL;
  if (st_read_begin(audit_store(a), &t) < 0) return NULL;
  if (st_get(t, (st_db)AUDIT_DB_HEADS, uid, strlen(uid), &v) == 0 && (out = malloc(v.len + 1))) {
    memcpy(out, v.data, v.len);
    out[v.len] = 0;
  }
  st_txn_end(t);
  return out;
}

/* Replaces the first occurrence of from by to in s (same buffer if it fits). */
static char *str_replace1(const char *s, const char *from, const char *to) {
  const char *p = strstr(s, from);
  if (!p) return NULL;
  size_t n = strlen(s) - strlen(from) + strlen(to);
  char *out = malloc(n + 1);
  size_t pre = (size_t)(p - s);
  memcpy(out, s, pre);
  strcpy(out + pre, to);
  strcat(out, p + strlen(from));
  return out;
}

/* Reports collected from audit_verify. */
typedef struct reports {
  int n;
  uint64_t seq[16];
  char uid[16][80];
  char msg[16][300];
} reports;
static void report_fn(void *ctx, const char *uid, uint64_t seq, const char *msg) {
  reports *r = ctx;
  if (getenv("UNIT_VERBOSE")) fprintf(stderr, "  verify: %s %" PRIu64 ": %s\n", uid, seq, msg);
  if (r->n < 16) {
    r->seq[r->n] = seq;
    snprintf(r->uid[r->n], sizeof r->uid[0], "%s", uid);
    snprintf(r->msg[r->n], sizeof r->msg[0], "%s", msg);
  }
  r->n++;
}

/* Checks a chain's links straight from the stored bytes, independently of
 * audit_verify: seq/id per key, prev = sha256 of the previous bytes. */
static int chain_links_ok(audit_log *a, const char *uid, const char *tenant, uint64_t first,
                          uint64_t last) {
  char prev[65];
  if (first == 1) memset(prev, '0', 64), prev[64] = 0;
  for (uint64_t s = first; s <= last; s++) {
    size_t len;
    char *b = rec_get(a, uid, s, &len), id[100];
    if (!b) return 0;
    json_t *j = json_loads(b, 0, NULL);
    snprintf(id, sizeof id, "%s-%" PRIu64, uid, s);
    int ok = j && (uint64_t)json_integer_value(json_object_get(j, "seq")) == s &&
             strcmp(json_string_value(json_object_get(j, "id")), id) == 0 &&
             strcmp(json_string_value(json_object_get(j, "tenant")), tenant) == 0 &&
             json_is_integer(json_object_get(j, "time")) &&
             (s == first && first != 1 ? 1 : strcmp(json_string_value(json_object_get(j, "prev")), prev) == 0);
    hex_sha(b, len, prev);
    json_decref(j);
    free(b);
    if (!ok) return 0;
  }
  return 1;
}

/* ---- chains ------------------------------------------------------------------------ */

typedef struct head_seen {
  int n;
  char uid[4][80], tenant[4][80], hash[4][80];
  uint64_t seq[4];
} head_seen;
static void head_cb(void *ctx, const char *tenant, const char *uid, uint64_t seq, const char *hash) {
  head_seen *h = ctx;
  if (h->n < 4) {
    snprintf(h->uid[h->n], 80, "%s", uid);
    snprintf(h->tenant[h->n], 80, "%s", tenant);
    snprintf(h->hash[h->n], 80, "%s", hash);
    h->seq[h->n] = seq;
  }
  h->n++;
}

TEST(chains_of_two_tenants_interleaved) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  for (int i = 0; i < 10; i++) {
    CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", i)), 0);
    CHECK_INT(audit_submit(a, "beta", UID_B, rec_kind("call", "bob", i)), 0);
  }
  audit_flush(a);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT(s.written, 20);
  CHECK_INT(s.queue_records, 0);
  CHECK_INT(s.queue_bytes, 0);
  CHECK(s.commits >= 1);
  CHECK_INT(s.commit_failures, 0);
  CHECK_INT(s.commit_ms_count, s.commits);
  CHECK_INT(s.commit_ms_bucket[AUDIT_STATS_NBUCKETS - 1], s.commit_ms_count); /* +Inf: all */
  for (int i = 1; i < AUDIT_STATS_NBUCKETS; i++) CHECK(s.commit_ms_bucket[i] >= s.commit_ms_bucket[i - 1]);
  CHECK(s.last_commit_ms > 0 && s.commit_ms_sum >= s.last_commit_ms);
  CHECK(!s.broken);
  CHECK(audit_ok(a));
  CHECK(chain_links_ok(a, UID_A, "acme", 1, 10));
  CHECK(chain_links_ok(a, UID_B, "beta", 1, 10));
  /* submission order within a chain, and the exact stored form */
  for (int i = 0; i < 10; i++) {
    json_t *j = rec_json(a, UID_A, (uint64_t)i + 1);
    CHECK(j);
    int n = (int)json_integer_value(json_object_get(j, "n"));
    json_decref(j);
    CHECK_INT(n, i);
  }
  char *first = rec_get(a, UID_A, 1, NULL);
  CHECK(first);
  const char *want_prefix = "{\"id\":\"" UID_A "-1\",\"prev\":\"00000000000000000000000000000000"
                            "00000000000000000000000000000000\",\"seq\":1,\"tenant\":\"acme\","
                            "\"kind\":\"call\",\"n\":0,\"time\":";
  int prefix_ok = strncmp(first, want_prefix, strlen(want_prefix)) == 0;
  free(first);
  CHECK(prefix_ok);
  CHECK_INT(rec_get(a, UID_A, 11, NULL) == NULL, 1);

  /* heads */
  st_txn *t;
  head_seen h = {0};
  char last_hash[65];
  size_t len;
  char *last = rec_get(a, UID_B, 10, &len);
  CHECK(last);
  hex_sha(last, len, last_hash);
  free(last);
  CHECK_INT(st_read_begin(audit_store(a), &t), 0);
  CHECK_INT(audit_heads(t, head_cb, &h), 2);
  st_txn_end(t);
  CHECK_STR(h.uid[0], UID_A); /* uid order */
  CHECK_STR(h.tenant[0], "acme");
  CHECK_INT(h.seq[0], 10);
  CHECK_STR(h.uid[1], UID_B);
  CHECK_STR(h.tenant[1], "beta");
  CHECK_INT(h.seq[1], 10);
  CHECK_STR(h.hash[1], last_hash);

  reports r = {0};
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 0);
  CHECK_INT(audit_verify(audit_store(a), UID_A, report_fn, &r), 0);
  CHECK_INT(audit_verify(audit_store(a), "0000000000000000", report_fn, &r), 0); /* no chain */
  CHECK_INT(audit_verify(audit_store(a), "bad/uid", report_fn, &r), AUDIT_EINVAL);
  CHECK_INT(r.n, 0);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

typedef struct thr_arg {
  audit_log *a;
  int id, n, fails;
} thr_arg;
static void submitter(void *p) {
  thr_arg *t = p;
  for (int i = 0; i < t->n; i++) {
    json_t *r = json_pack("{sisi}", "thread", t->id, "n", i);
    if (audit_submit(t->a, "acme", UID_A, r) != 0) t->fails++;
    if (i % 2 == 0 && audit_submit(t->a, "beta", UID_B, json_pack("{sisi}", "thread", t->id, "n", i)) != 0)
      t->fails++;
  }
}

TEST(two_threads_submit_concurrently) {
  enum { N = 3000 };
  tmp_setup();
  audit_options o = opts();
  o.batch_ms = 1;
  audit_log *a = open_with(&o);
  CHECK(a);
  thr_arg t1 = {a, 1, N, 0}, t2 = {a, 2, N, 0};
  uv_thread_t h1, h2;
  CHECK_INT(uv_thread_create(&h1, submitter, &t1), 0);
  CHECK_INT(uv_thread_create(&h2, submitter, &t2), 0);
  uv_thread_join(&h1);
  uv_thread_join(&h2);
  CHECK_INT(t1.fails + t2.fails, 0);
  audit_flush(a);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT(s.written, 3 * N);
  CHECK_INT(s.dropped, 0);
  /* every record once, consecutive seqs, each thread's records in its order */
  int next[3] = {0, 0, 0};
  for (uint64_t q = 1; q <= 2 * N; q++) {
    json_t *j = rec_json(a, UID_A, q);
    CHECK(j);
    int th = (int)json_integer_value(json_object_get(j, "thread"));
    int n = (int)json_integer_value(json_object_get(j, "n"));
    json_decref(j);
    CHECK(th == 1 || th == 2);
    CHECK_INT(n, next[th]);
    next[th]++;
  }
  CHECK_INT(next[1], N);
  CHECK_INT(next[2], N);
  CHECK(rec_get(a, UID_A, 2 * N + 1, NULL) == NULL);
  CHECK(chain_links_ok(a, UID_A, "acme", 1, 2 * N));
  CHECK(chain_links_ok(a, UID_B, "beta", 1, N));
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* More chains in one batch than the commit job caches heads for. */
TEST(many_chains_in_one_batch) {
  char uids[300][20];
  tmp_setup();
  audit_options o = opts();
  o.batch_ms = 600000; /* only audit_flush commits: one batch */
  audit_log *a = open_with(&o);
  CHECK(a);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 300; i++) {
      snprintf(uids[i], sizeof uids[i], "u%04d", i);
      CHECK_INT(audit_submit(a, "acme", uids[i], rec_kind("call", "alice", round)), 0);
    }
  audit_flush(a);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT(s.written, 600);
  CHECK_INT(s.commits, 1);
  for (int i = 0; i < 300; i += 37) CHECK(chain_links_ok(a, uids[i], "acme", 1, 2));
  CHECK(chain_links_ok(a, uids[299], "acme", 1, 2));
  CHECK(rec_get(a, uids[5], 3, NULL) == NULL);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

TEST(submit_rules) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(audit_submit(a, "Acme", UID_A, rec_kind("x", "u", 1)), AUDIT_EINVAL);
  CHECK_INT(audit_submit(a, "", UID_A, rec_kind("x", "u", 1)), AUDIT_EINVAL);
  CHECK_INT(audit_submit(a, "acme", "a/b", rec_kind("x", "u", 1)), AUDIT_EINVAL);
  CHECK_INT(audit_submit(a, "acme", NULL, rec_kind("x", "u", 1)), AUDIT_EINVAL);
  CHECK_INT(audit_submit(a, "acme", UID_A, json_string("not an object")), AUDIT_EINVAL);
  CHECK_INT(audit_submit(a, "acme", UID_A, NULL), AUDIT_EINVAL);
  /* the caller's time is kept; seq, id, prev, tenant are the module's */
  CHECK_INT(audit_submit(a, "acme", UID_A,
                         json_pack("{sIsissssssss}", "time", (json_int_t)1234, "seq", 99, "id", "forged",
                                   "prev", "forged", "tenant", "other", "kind", "k")),
            0);
  CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{ss}", "time", "yesterday")), 0);
  CHECK_INT(audit_submit(a, "acme", UID_A, json_object()), 0);
  /* over AUDIT_RECORD_MAX: dropped and counted */
  char *big = malloc(AUDIT_RECORD_MAX + 1);
  memset(big, 'x', AUDIT_RECORD_MAX);
  big[AUDIT_RECORD_MAX] = 0;
  CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{ss}", "blob", big)), AUDIT_ETOOBIG);
  free(big);
  audit_flush(a);
  json_t *j = rec_json(a, UID_A, 1);
  CHECK(j);
  json_int_t tm = json_integer_value(json_object_get(j, "time"));
  json_int_t sq = json_integer_value(json_object_get(j, "seq"));
  int forged = strcmp(json_string_value(json_object_get(j, "tenant")), "acme") ||
               strcmp(json_string_value(json_object_get(j, "id")), UID_A "-1");
  json_decref(j);
  CHECK_INT(tm, 1234);
  CHECK_INT(sq, 1);
  CHECK_INT(forged, 0);
  j = rec_json(a, UID_A, 2);
  CHECK(j);
  int time_set = json_is_integer(json_object_get(j, "time")) &&
                 json_integer_value(json_object_get(j, "time")) > 1600000000000LL;
  json_decref(j);
  CHECK(time_set);
  j = rec_json(a, UID_A, 3); /* an empty object gets the module's members */
  CHECK(j);
  size_t members = json_object_size(j);
  json_decref(j);
  CHECK_INT(members, 5);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT(s.written, 3);
  CHECK_INT(s.dropped, 1);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  CHECK_STR(audit_strerror(AUDIT_EFULL), "audit queue full: record dropped");
  CHECK_STR(audit_strerror(ST_EMAPFULL), st_strerror(ST_EMAPFULL));
  audit_close(a);
  tmp_cleanup();
}

/* audit_submit_text: the caller's text is stored as given after the
 * module's members, chains like any record, and is queryable. */
TEST(submit_text_records) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  static const char t1[] = "{\"kind\":\"call\",\"time\":1700000000000,\"tool\":\"echo\",\"arguments\":{\"q\":\"x\"}}";
  CHECK_INT(audit_submit_text(a, "acme", UID_A, t1, sizeof t1 - 1), 0);
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("admin", "u", 1)), 0);
  CHECK_INT(audit_submit_text(a, "acme", UID_A, "{}", 2), 0);
  /* not one object, a NUL inside, bad ids */
  CHECK_INT(audit_submit_text(a, "acme", UID_A, "[1]", 3), AUDIT_EINVAL);
  CHECK_INT(audit_submit_text(a, "acme", UID_A, "{", 1), AUDIT_EINVAL);
  CHECK_INT(audit_submit_text(a, "acme", UID_A, "{\"a\":\"\0\"}", 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_text(a, "Acme", UID_A, t1, sizeof t1 - 1), AUDIT_EINVAL);
  CHECK_INT(audit_submit_text(a, "acme", NULL, t1, sizeof t1 - 1), AUDIT_EINVAL);
  audit_flush(a);
  size_t n = 0;
  char *b = rec_get(a, UID_A, 1, &n);
  CHECK(b != NULL);
  int spliced = b && strstr(b, ",\"tenant\":\"acme\",\"kind\":\"call\",\"time\":1700000000000,") != NULL &&
                strncmp(b, "{\"id\":\"" UID_A "-1\",", strlen("{\"id\":\"" UID_A "-1\",")) == 0;
  free(b);
  CHECK(spliced);
  json_t *j = rec_json(a, UID_A, 1);
  CHECK(j);
  int fields = json_integer_value(json_object_get(j, "seq")) == 1 &&
               !strcmp(json_string_value(json_object_get(json_object_get(j, "arguments"), "q")) ?: "", "x");
  json_decref(j);
  CHECK(fields);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  st_txn *txn;
  CHECK_INT(st_read_begin(audit_store(a), &txn), 0);
  audit_filter f = {.tool = "echo"};
  json_t *out = NULL;
  char next[AUDIT_CURSOR_MAX];
  CHECK_INT(audit_query(txn, UID_A, &f, &out, next), 0);
  st_txn_end(txn);
  CHECK_INT(json_array_size(out), 1);
  json_decref(out);
  audit_close(a);
  tmp_cleanup();
}

/* ---- tampering ------------------------------------------------------------------------ */

/* A fresh log with one chain of n records. */
static audit_log *chain_of(int n) {
  audit_log *a = open_default();
  if (!a || submit_n(a, "acme", UID_A, 0, n) < 0) return NULL;
  audit_flush(a);
  return a;
}

static int all_seqs_are(const reports *r, uint64_t seq) {
  if (r->n == 0) return 0;
  for (int i = 0; i < r->n && i < 16; i++)
    if (r->seq[i] != seq) return 0;
  return 1;
}

TEST(verify_names_an_edited_record) {
  tmp_setup();
  audit_log *a = chain_of(6);
  CHECK(a);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  /* record 3's content */
  char *b = rec_get(a, UID_A, 3, NULL), *ed = str_replace1(b, "\"alice\"", "\"mallory\"");
  free(b);
  CHECK(ed);
  CHECK_INT(raw_rec(a, UID_A, 3, ed), 0);
  free(ed);
  reports r = {0};
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 3);
  CHECK_STR(r.uid[0], UID_A);
  CHECK(strstr(r.msg[0], "record 3 does not hash to what record 4 recorded"));
  /* the same through the schema's check */
  CHECK(st_check(audit_store(a), NULL, NULL) >= 1);
  audit_close(a);
  tmp_cleanup();
}

TEST(verify_names_an_edited_prev_and_an_edited_last_record) {
  tmp_setup();
  audit_log *a = chain_of(6);
  CHECK(a);
  /* record 2's prev: both links around it break, record 2 is named */
  json_t *j = rec_json(a, UID_A, 2);
  CHECK(j);
  char *b = rec_get(a, UID_A, 2, NULL);
  char *ed = str_replace1(b, json_string_value(json_object_get(j, "prev")),
                          "1111111111111111111111111111111111111111111111111111111111111111");
  json_decref(j);
  free(b);
  CHECK(ed);
  CHECK_INT(raw_rec(a, UID_A, 2, ed), 0);
  free(ed);
  reports r = {0};
  CHECK_INT(audit_verify(audit_store(a), UID_A, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 2);
  audit_close(a);

  tmp_setup();
  a = chain_of(6);
  CHECK(a);
  /* the last record: the head's hash no longer matches */
  b = rec_get(a, UID_A, 6, NULL);
  ed = str_replace1(b, "\"call\"", "\"read\"");
  free(b);
  CHECK(ed);
  CHECK_INT(raw_rec(a, UID_A, 6, ed), 0);
  free(ed);
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 6);
  CHECK(strstr(r.msg[0], "chain head"));
  audit_close(a);

  tmp_setup();
  a = chain_of(6);
  CHECK(a);
  /* the seq inside a record: named by its own check and by its broken link */
  b = rec_get(a, UID_A, 4, NULL);
  ed = str_replace1(b, "\"seq\":4", "\"seq\":5");
  free(b);
  CHECK(ed);
  CHECK_INT(raw_rec(a, UID_A, 4, ed), 0);
  free(ed);
  memset(&r, 0, sizeof r);
  CHECK(audit_verify(audit_store(a), NULL, report_fn, &r) >= 1);
  CHECK(all_seqs_are(&r, 4));
  audit_close(a);
  tmp_cleanup();
}

TEST(verify_names_a_deleted_record) {
  tmp_setup();
  audit_log *a = chain_of(6);
  CHECK(a);
  CHECK_INT(raw_rec(a, UID_A, 3, NULL), 0);
  reports r = {0};
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 3);
  CHECK(strstr(r.msg[0], "record 3 is missing"));
  audit_close(a);

  tmp_setup();
  a = chain_of(6);
  CHECK(a);
  CHECK_INT(raw_rec(a, UID_A, 6, NULL), 0); /* the last one */
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 6);
  CHECK(strstr(r.msg[0], "record 6 is missing"));
  CHECK_INT(raw_rec(a, UID_A, 1, NULL), 0); /* and the first */
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 2);
  CHECK_INT(r.seq[0], 1);
  CHECK_INT(r.seq[1], 6);
  audit_close(a);
  tmp_cleanup();
}

TEST(verify_head_mismatch_and_orphans) {
  tmp_setup();
  audit_log *a = chain_of(4);
  CHECK(a);
  char *h = head_get(a, UID_A);
  CHECK(h);
  /* the head claims one more record than there is */
  char *ed = str_replace1(h, "\"seq\":4", "\"seq\":5");
  CHECK(ed);
  CHECK_INT(raw_head(a, UID_A, ed), 0);
  free(ed);
  reports r = {0};
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK_INT(r.seq[0], 5);
  /* the head's hash altered */
  json_t *j = json_loads(h, 0, NULL);
  ed = str_replace1(h, json_string_value(json_object_get(j, "hash")),
                    "2222222222222222222222222222222222222222222222222222222222222222");
  json_decref(j);
  CHECK(ed);
  CHECK_INT(raw_head(a, UID_A, ed), 0);
  free(ed);
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK(strstr(r.msg[0], "chain head"));
  /* a head that is not what this module writes */
  CHECK_INT(raw_head(a, UID_A, "{\"tenant\":\"acme\"}"), 0);
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK(strstr(r.msg[0], "unreadable"));
  /* no head at all: the records are orphans */
  CHECK_INT(raw_head(a, UID_A, NULL), 0);
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), NULL, report_fn, &r), 1);
  CHECK(strstr(r.msg[0], "without a chain head"));
  memset(&r, 0, sizeof r);
  CHECK_INT(audit_verify(audit_store(a), UID_A, report_fn, &r), 1);
  /* put back: clean again */
  CHECK_INT(raw_head(a, UID_A, h), 0);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  free(h);
  audit_close(a);
  tmp_cleanup();
}

typedef struct check_seen {
  int n;
  char line[300];
} check_seen;
static void check_cb(void *ctx, const char *area, const char *msg) {
  check_seen *c = ctx;
  if (c->n++ == 0) snprintf(c->line, sizeof c->line, "%s: %s", area, msg);
}

TEST(store_check_reports_an_edited_record) {
  tmp_setup();
  audit_log *a = chain_of(5);
  CHECK(a);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  char *b = rec_get(a, UID_A, 2, NULL), *ed = str_replace1(b, "\"n\":1", "\"n\":7");
  free(b);
  CHECK(ed);
  CHECK_INT(raw_rec(a, UID_A, 2, ed), 0);
  free(ed);
  check_seen c = {0};
  CHECK_INT(st_check(audit_store(a), check_cb, &c), 1);
  CHECK_STR(c.line, "audit: chain " UID_A " record 2: record 2 does not hash to what record 3 recorded");
  audit_close(a);
  /* offline: the env opened with the exported schema checks the same */
  st_options so = {0};
  st_store *st = NULL;
  so.dir = g_dir;
  so.schema = &audit_schema;
  so.log = log_fn;
  so.log_ctx = &g_log;
  CHECK_INT(st_open(&st, &so), 0);
  CHECK_INT(st_check(st, NULL, NULL), 1);
  st_close(st);
  tmp_cleanup();
}

/* ---- retention ------------------------------------------------------------------- */

static int submit_at(audit_log *a, const char *uid, int64_t t, const char *kind) {
  return audit_submit(a, uid[0] == 'a' ? "acme" : "beta", uid,
                      json_pack("{sIss}", "time", (json_int_t)t, "kind", kind));
}

/* Chains as audit_verify_chains saw them. */
typedef struct chains_seen {
  int n;
  char uid[4][AUDIT_UID_MAX + 1];
  uint64_t first[4], last[4], checked[4];
} chains_seen;

static void chain_cb(void *ctx, const audit_chain_summary *c) {
  chains_seen *s = ctx;
  if (s->n < 4) {
    snprintf(s->uid[s->n], sizeof s->uid[0], "%s", c->uid);
    s->first[s->n] = c->first;
    s->last[s->n] = c->last;
    s->checked[s->n] = c->checked;
  }
  s->n++;
}

TEST(prune_keeps_the_chain_verifiable) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  for (int i = 1; i <= 10; i++) {
    CHECK_INT(submit_at(a, UID_A, 1000 * i, "call"), 0);
    CHECK_INT(submit_at(a, UID_B, 1000 * i, "call"), 0);
  }
  audit_flush(a);
  size_t pruned = 99;
  CHECK_INT(audit_prune(a, 5500, 1000, &pruned), 0);
  CHECK_INT(pruned, 10); /* 5 per chain */
  for (uint64_t s = 1; s <= 5; s++) CHECK(rec_get(a, UID_A, s, NULL) == NULL);
  for (uint64_t s = 6; s <= 10; s++) {
    char *b = rec_get(a, UID_A, s, NULL);
    CHECK(b);
    free(b);
  }
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  CHECK(chain_links_ok(a, UID_A, "acme", 6, 10));
  /* what verification says it checked: the records left, not the pruned */
  chains_seen cs = {0};
  CHECK_INT(audit_verify_chains(audit_store(a), NULL, NULL, chain_cb, &cs), 0);
  CHECK_INT(cs.n, 2);
  CHECK_STR(cs.uid[0], UID_A);
  CHECK_INT(cs.first[0], 6);
  CHECK_INT(cs.last[0], 10);
  CHECK_INT(cs.checked[0], 5);
  CHECK_INT(cs.checked[1], 5);
  /* bounded: at most max_records per call, chains in uid order */
  CHECK_INT(audit_prune(a, 9500, 3, &pruned), 0);
  CHECK_INT(pruned, 3);
  CHECK(rec_get(a, UID_A, 8, NULL) == NULL);
  char *b9 = rec_get(a, UID_A, 9, NULL);
  CHECK(b9);
  free(b9);
  b9 = rec_get(a, UID_B, 6, NULL);
  CHECK(b9);
  free(b9);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  /* a record not old enough stops its chain even if later ones are older */
  CHECK_INT(submit_at(a, UID_A, 500, "late"), 0);
  audit_flush(a);
  CHECK_INT(audit_prune(a, 9500, 100, &pruned), 0);
  CHECK_INT(pruned, 5); /* A: 9 (10 is not old enough); B: 6..9 */
  CHECK(rec_get(a, UID_B, 9, NULL) == NULL);
  /* the chain goes on after pruning */
  CHECK_INT(submit_at(a, UID_A, 20000, "call"), 0);
  audit_flush(a);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  /* everything pruned: the head alone still verifies, and the chain continues */
  CHECK_INT(audit_prune(a, 100000, 1000, &pruned), 0);
  CHECK_INT(pruned, 4); /* A: 10, 11, 12; B: 10 */
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  memset(&cs, 0, sizeof cs);
  CHECK_INT(audit_verify_chains(audit_store(a), UID_A, NULL, chain_cb, &cs), 0);
  CHECK_INT(cs.n, 1);
  CHECK_INT(cs.checked[0], 0);
  CHECK_INT(cs.first[0], 13);
  CHECK_INT(cs.last[0], 12);
  CHECK_INT(submit_at(a, UID_A, 30000, "call"), 0);
  audit_flush(a);
  json_t *j = rec_json(a, UID_A, 13);
  CHECK(j);
  json_decref(j);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  CHECK_INT(audit_prune(a, 100000, 0, &pruned), AUDIT_EINVAL);
  /* a pruned record altered in a copy cannot be hidden: the first kept
   * record's prev must match the head's pruned_hash */
  char *h = head_get(a, UID_B);
  json_t *hj = json_loads(h, 0, NULL);
  char *ed = str_replace1(h, json_string_value(json_object_get(hj, "pruned_hash")),
                          "3333333333333333333333333333333333333333333333333333333333333333");
  json_decref(hj);
  free(h);
  CHECK(ed);
  CHECK_INT(raw_head(a, UID_B, ed), 0);
  free(ed);
  CHECK_INT(audit_verify(audit_store(a), UID_B, NULL, NULL), 1);
  audit_close(a);
  tmp_cleanup();
}

/* ---- query ------------------------------------------------------------------------ */

static const char *const users[] = {"alice", "bob", "carol"};
static const char *const tools[] = {"search", "write"};

/* 30 records: user i%3, tool i%2, decision allow unless i%5==0, time 1000*(i+1). */
static audit_log *query_fixture(void) {
  audit_log *a = open_default();
  if (!a) return NULL;
  for (int i = 0; i < 30; i++) {
    json_t *r = json_pack("{sssssssssssIsi}", "kind", i == 7 ? "admin" : "call", "user", users[i % 3],
                          "connector", i < 15 ? "github" : "jira", "tool", tools[i % 2], "decision",
                          i % 5 == 0 ? "deny" : "allow", "time", (json_int_t)(1000 * (i + 1)), "i", i);
    if (audit_submit(a, "acme", UID_A, r) < 0) return NULL;
  }
  audit_flush(a);
  return a;
}

/* Runs a query; returns the number of records (and their "i" in got[]),
 * or a negative error. */
static int q(audit_log *a, const audit_filter *f, int *got, char cursor[AUDIT_CURSOR_MAX]) {
  st_txn *t;
  json_t *arr = NULL;
  char c[AUDIT_CURSOR_MAX];
  int rc = st_read_begin(audit_store(a), &t);
  if (rc < 0) return rc;
  rc = audit_query(t, UID_A, f, &arr, cursor ? cursor : c);
  st_txn_end(t);
  if (rc < 0) return rc;
  size_t i;
  json_t *r;
  json_array_foreach(arr, i, r) got[i] = (int)json_integer_value(json_object_get(r, "i"));
  rc = (int)json_array_size(arr);
  json_decref(arr);
  return rc;
}

TEST(query_filters) {
  int got[1000];
  char cur[AUDIT_CURSOR_MAX];
  tmp_setup();
  audit_log *a = query_fixture();
  CHECK(a);
  audit_filter f = {0};
  CHECK_INT(q(a, &f, got, cur), 30);
  CHECK_INT(got[0], 29); /* newest first */
  CHECK_INT(got[29], 0);
  CHECK_STR(cur, "");
  f.user = "bob";
  CHECK_INT(q(a, &f, got, cur), 10);
  for (int i = 0; i < 10; i++) CHECK_INT(got[i] % 3, 1);
  f.user = NULL;
  f.tool = "write";
  CHECK_INT(q(a, &f, got, cur), 15);
  f.tool = NULL;
  f.decision = "deny";
  CHECK_INT(q(a, &f, got, cur), 6);
  CHECK_INT(got[0], 25);
  f.decision = NULL;
  f.kind = "admin";
  CHECK_INT(q(a, &f, got, cur), 1);
  CHECK_INT(got[0], 7);
  f.kind = NULL;
  f.connector = "jira";
  CHECK_INT(q(a, &f, got, cur), 15);
  CHECK_INT(got[14], 15);
  f.connector = "github";
  f.user = "alice";
  f.tool = "search";
  CHECK_INT(q(a, &f, got, cur), 3); /* i in {0, 6, 12} */
  CHECK_INT(got[0], 12);
  CHECK_INT(got[2], 0);
  f = (audit_filter){0};
  f.user = "nobody";
  CHECK_INT(q(a, &f, got, cur), 0);
  CHECK_STR(cur, "");
  /* since inclusive, until exclusive */
  f = (audit_filter){0};
  f.since_ms = 5000;
  f.until_ms = 10000;
  CHECK_INT(q(a, &f, got, cur), 5); /* times 5000..9000: i 4..8 */
  CHECK_INT(got[0], 8);
  CHECK_INT(got[4], 4);
  f.until_ms = 0;
  CHECK_INT(q(a, &f, got, cur), 26);
  f.since_ms = 0;
  f.until_ms = 2000;
  CHECK_INT(q(a, &f, got, cur), 1);
  f.since_ms = 3000;
  f.until_ms = 2000;
  CHECK_INT(q(a, &f, got, cur), AUDIT_EINVAL);
  /* a chain with no records */
  st_txn *t;
  json_t *arr = NULL;
  CHECK_INT(st_read_begin(audit_store(a), &t), 0);
  f = (audit_filter){0};
  int rc = audit_query(t, UID_B, &f, &arr, cur);
  st_txn_end(t);
  CHECK_INT(rc, 0);
  CHECK_INT(json_array_size(arr), 0);
  json_decref(arr);
  audit_close(a);
  tmp_cleanup();
}

TEST(query_pages_with_cursors) {
  int got[1000], seen[30] = {0}, total = 0, pages = 0, last = 1000;
  char cur[AUDIT_CURSOR_MAX] = "", next[AUDIT_CURSOR_MAX];
  tmp_setup();
  audit_log *a = query_fixture();
  CHECK(a);
  audit_filter f = {0};
  f.decision = "allow"; /* 24 matches */
  f.limit = 5;
  do {
    f.cursor = cur;
    int n = q(a, &f, got, next);
    CHECK(n >= 0 && n <= 5);
    for (int i = 0; i < n; i++) {
      CHECK(got[i] < last); /* strictly newest first across pages */
      last = got[i];
      seen[got[i]]++;
    }
    total += n;
    pages++;
    /* records appended while paging do not disturb the pages */
    if (pages == 2) {
      CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{sssi}", "decision", "allow", "i", 99)), 0);
      audit_flush(a);
    }
    strcpy(cur, next);
  } while (cur[0] && pages < 20);
  CHECK_INT(total, 24);
  CHECK_INT(pages, 5);
  for (int i = 0; i < 30; i++) CHECK_INT(seen[i], i % 5 == 0 ? 0 : 1);

  /* malformed cursors */
  const char *bad[] = {"x", "q", "q000000000000000", "q00000000000000001", "q0000000000000000",
                       "Q0000000000000005", "q000000000000000A", "q00000000000000g5", " q000000000000005"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    f.cursor = bad[i];
    CHECK_INT(q(a, &f, got, next), AUDIT_EINVAL);
  }
  f.cursor = "q0000000000000005"; /* well-formed: seq 5 and older */
  CHECK_INT(q(a, &f, got, next), 4);
  CHECK_INT(got[0], 4);
  f.cursor = NULL;
  f.limit = AUDIT_QUERY_LIMIT_MAX + 1;
  CHECK_INT(q(a, &f, got, next), AUDIT_EINVAL);
  audit_close(a);
  tmp_cleanup();
}

TEST(query_scan_is_bounded) {
  int got[1000];
  char next[AUDIT_CURSOR_MAX];
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{sssi}", "kind", "rare", "i", 1)), 0);
  for (int i = 0; i < AUDIT_SCAN_MAX + 50; i++)
    CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{sssi}", "kind", "common", "i", 2)), 0);
  audit_flush(a);
  audit_filter f = {0};
  f.kind = "rare";
  CHECK_INT(q(a, &f, got, next), 0); /* stopped by the bound */
  CHECK(next[0]);
  f.cursor = next;
  char next2[AUDIT_CURSOR_MAX];
  CHECK_INT(q(a, &f, got, next2), 1);
  CHECK_INT(got[0], 1);
  CHECK_STR(next2, "");
  audit_close(a);
  tmp_cleanup();
}

/* ---- export ----------------------------------------------------------------------- */

typedef struct sink {
  int n;
  uint64_t seqs[64];
  char prev_hash[65];
  int links_ok;
  int stop_at; /* > 0: return -7 on that call */
} sink;
static int sink_fn(void *ctx, const char *bytes, size_t len) {
  sink *s = ctx;
  if (s->stop_at && s->n + 1 == s->stop_at) return -7;
  json_t *j = json_loadb(bytes, len, 0, NULL);
  if (!j || bytes[len] != 0 || strchr(bytes, '\n')) s->links_ok = 0;
  if (s->prev_hash[0] && strcmp(json_string_value(json_object_get(j, "prev")), s->prev_hash) != 0)
    s->links_ok = 0;
  hex_sha(bytes, len, s->prev_hash);
  if (s->n < 64) s->seqs[s->n] = (uint64_t)json_integer_value(json_object_get(j, "seq"));
  s->n++;
  json_decref(j);
  return 0;
}

static int export_chunk(audit_log *a, int64_t since, int64_t until, uint64_t *after, size_t max, sink *s) {
  st_txn *t;
  int rc = st_read_begin(audit_store(a), &t);
  if (rc < 0) return rc;
  rc = audit_export_chunk(t, UID_A, since, until, after, max, sink_fn, s);
  st_txn_end(t);
  return rc;
}

TEST(export_chunks) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  for (int i = 1; i <= 25; i++) CHECK_INT(submit_at(a, UID_A, 1000 * i, "call"), 0);
  CHECK_INT(submit_at(a, UID_B, 1000, "call"), 0);
  audit_flush(a);
  sink s = {0};
  s.links_ok = 1;
  uint64_t after = 0;
  int rcs[10], counts[10], calls = 0, rc;
  do {
    rc = export_chunk(a, 0, 0, &after, 7, &s);
    counts[calls] = s.n;
    rcs[calls++] = rc;
  } while (rc == AUDIT_EXPORT_MORE && calls < 10);
  CHECK_INT(calls, 4);
  CHECK_INT(counts[0], 7); /* max_records per chunk */
  CHECK_INT(counts[1], 14);
  CHECK_INT(counts[2], 21);
  CHECK_INT(rcs[0], AUDIT_EXPORT_MORE);
  CHECK_INT(rcs[2], AUDIT_EXPORT_MORE);
  CHECK_INT(rcs[3], 0);
  CHECK_INT(s.n, 25);
  for (int i = 0; i < 25; i++) CHECK_INT(s.seqs[i], (uint64_t)i + 1);
  CHECK(s.links_ok); /* the bytes are the stored ones: the chain links */
  CHECK_INT(after, 25);
  CHECK_INT(export_chunk(a, 0, 0, &after, 7, &s), 0);
  CHECK_INT(s.n, 25);
  /* a time window, chunk by chunk */
  memset(&s, 0, sizeof s);
  s.links_ok = 1;
  after = 0;
  calls = 0;
  do rc = export_chunk(a, 10000, 20000, &after, 3, &s);
  while (rc == AUDIT_EXPORT_MORE && ++calls < 20);
  CHECK_INT(rc, 0);
  CHECK_INT(s.n, 10);
  CHECK_INT(s.seqs[0], 10);
  CHECK_INT(s.seqs[9], 19);
  /* an emit error stops it and is returned; nothing is skipped on resume */
  memset(&s, 0, sizeof s);
  s.links_ok = 1;
  s.stop_at = 3;
  after = 0;
  CHECK_INT(export_chunk(a, 0, 0, &after, 10, &s), -7);
  CHECK_INT(after, 2);
  s.stop_at = 0;
  CHECK_INT(export_chunk(a, 0, 0, &after, 1, &s), AUDIT_EXPORT_MORE);
  CHECK_INT(s.seqs[2], 3);
  CHECK_INT(export_chunk(a, 0, 0, &after, 0, &s), AUDIT_EINVAL);
  audit_close(a);
  tmp_cleanup();
}

/* Large records: a query or export call stops at AUDIT_SCAN_BYTES_MAX
 * stored bytes examined (then the record that passes it), and the next
 * call resumes there — nothing lost, nothing repeated. Found by review:
 * only the count was capped (AUDIT_SCAN_MAX), so one call under one read
 * txn could parse 10,000 records of up to 256 KiB each. */
#define BIG_N 60
typedef struct big_sink {
  int n;
  uint64_t seqs[BIG_N + 1];
  size_t lens[BIG_N + 1]; /* by seq: its stored bytes */
} big_sink;
static int big_emit(void *ctx, const char *bytes, size_t len) {
  big_sink *s = ctx;
  json_t *j = json_loadb(bytes, len, 0, NULL);
  uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
  json_decref(j);
  if (s->n <= BIG_N) s->seqs[s->n] = seq;
  if (seq >= 1 && seq <= BIG_N) s->lens[seq] = len;
  s->n++;
  return 0;
}
static int big_chunk(audit_log *a, uint64_t *after, big_sink *s) {
  st_txn *t;
  int rc = st_read_begin(audit_store(a), &t);
  if (rc < 0) return rc;
  rc = audit_export_chunk(t, UID_A, 0, 0, after, 1000, big_emit, s);
  st_txn_end(t);
  return rc;
}

TEST(scans_stop_at_the_byte_budget) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  /* every tenth record small and "marked", the others ~200 KB: 54 of
   * them are more than AUDIT_SCAN_BYTES_MAX, in fewer than AUDIT_SCAN_MAX */
  char *pad = malloc(200001);
  CHECK(pad);
  memset(pad, 'x', 200000);
  pad[200000] = 0;
  for (int i = 1; i <= BIG_N; i++) {
    json_t *r = i % 10 ? json_pack("{sssiss}", "kind", "common", "i", i, "pad", pad)
                       : json_pack("{sssi}", "kind", "marked", "i", i);
    CHECK_INT(audit_submit(a, "acme", UID_A, r), 0);
  }
  free(pad);
  audit_flush(a);
  CHECK(54u * 200000 > AUDIT_SCAN_BYTES_MAX);

  /* the export: the first chunk ends with the record that passes the budget */
  big_sink s = {0};
  uint64_t after = 0;
  CHECK_INT(big_chunk(a, &after, &s), AUDIT_EXPORT_MORE);
  int first = s.n;
  CHECK(first > 1 && first < BIG_N);
  size_t sum = 0;
  for (int i = 1; i < first; i++) sum += s.lens[i];
  CHECK(sum < AUDIT_SCAN_BYTES_MAX);
  CHECK(sum + s.lens[first] >= AUDIT_SCAN_BYTES_MAX);
  CHECK_INT(after, (uint64_t)first);
  int calls = 1, rc;
  while ((rc = big_chunk(a, &after, &s)) == AUDIT_EXPORT_MORE && calls < 100) calls++;
  CHECK_INT(rc, 0);
  CHECK_INT(s.n, BIG_N); /* each once, in order */
  for (int i = 0; i < BIG_N; i++) CHECK_INT(s.seqs[i], (uint64_t)i + 1);

  /* the query: newest first, it stops before the record past the budget
   * with a cursor naming it; paging finds every marked record once */
  audit_filter f = {0};
  f.kind = "marked";
  int got[100], all[100], n = 0, pages = 0;
  char cur[AUDIT_CURSOR_MAX] = "", next[AUDIT_CURSOR_MAX];
  do {
    f.cursor = cur[0] ? cur : NULL;
    int k = q(a, &f, got, next);
    CHECK(k >= 0);
    if (!pages) {
      CHECK(next[0]); /* stopped by the bytes, not the end */
      uint64_t c = strtoull(next + 1, NULL, 16);
      CHECK(c > 1 && c < BIG_N);
      size_t seen = 0; /* seqs BIG_N..c+1 were examined */
      for (uint64_t i = c + 1; i <= BIG_N; i++) seen += s.lens[i];
      CHECK(seen >= AUDIT_SCAN_BYTES_MAX);
      CHECK(seen - s.lens[c + 1] < AUDIT_SCAN_BYTES_MAX);
    }
    for (int i = 0; i < k && n < 100; i++) all[n++] = got[i];
    memcpy(cur, next, sizeof cur);
    pages++;
  } while (cur[0] && pages < 100);
  CHECK(pages >= 2);
  CHECK_INT(n, BIG_N / 10);
  for (int i = 0; i < n; i++) CHECK_INT(all[i], BIG_N - 10 * i);
  audit_close(a);
  tmp_cleanup();
}

/* ---- arguments ----------------------------------------------------------------------- */

TEST(args_redaction_digest_and_cap) {
  json_t *args = json_loads(
      "{\"query\":\"x\",\"Password\":\"p1\",\"nested\":{\"API_KEY\":\"k\",\"deep\":[{\"myToken\":\"t\","
      "\"keep\":1},[{\"x-Authorization\":\"b\"}]]},\"list\":[1,\"two\",null],\"client_secret\":{\"a\":1}}",
      0, NULL);
  CHECK(args);
  char *before = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
  json_t *full = audit_args(args, AUDIT_ARGS_FULL, NULL, 100000);
  CHECK(full);
  char *s = json_dumps(full, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(full);
  CHECK_STR(s, "{\"Password\":\"[redacted]\",\"client_secret\":\"[redacted]\",\"list\":[1,\"two\",null],"
               "\"nested\":{\"API_KEY\":\"[redacted]\",\"deep\":[{\"keep\":1,\"myToken\":\"[redacted]\"},"
               "[{\"x-Authorization\":\"[redacted]\"}]]},\"query\":\"x\"}");
  size_t red_len = strlen(s);
  char red_hex[65], want_digest[80];
  hex_sha(s, red_len, red_hex);
  snprintf(want_digest, sizeof want_digest, "sha256:%s", red_hex);
  free(s);
  /* args untouched */
  char *after = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
  CHECK_STR(after, before);
  free(after);
  free(before);

  /* DIGEST: over the redacted copy, whatever the secret's value or key order */
  json_t *d = audit_args(args, AUDIT_ARGS_DIGEST, NULL, 0);
  CHECK(d);
  CHECK_STR(json_string_value(json_object_get(d, "digest")), want_digest);
  CHECK_INT(json_integer_value(json_object_get(d, "bytes")), red_len);
  CHECK_INT(json_object_size(d), 2);
  json_decref(d);
  json_t *reordered = json_loads(
      "{\"client_secret\":\"other\",\"list\":[1,\"two\",null],\"query\":\"x\",\"nested\":{\"deep\":"
      "[{\"keep\":1,\"myToken\":\"zz\"},[{\"x-Authorization\":\"c\"}]],\"API_KEY\":\"k2\"},\"Password\":\"p2\"}",
      0, NULL);
  json_t *d2 = audit_args(reordered, AUDIT_ARGS_DIGEST, NULL, 0);
  CHECK(d2);
  CHECK_STR(json_string_value(json_object_get(d2, "digest")), want_digest);
  json_decref(d2);
  json_decref(reordered);
  /* a changed non-secret value changes it */
  json_t *other = json_pack("{ss}", "query", "y");
  json_t *d3 = audit_args(other, AUDIT_ARGS_DIGEST, NULL, 0);
  CHECK(d3);
  int differs = strcmp(json_string_value(json_object_get(d3, "digest")), want_digest) != 0;
  json_decref(d3);
  json_decref(other);
  CHECK(differs);

  /* FULL over the cap: the digest form, marked truncated */
  json_t *t = audit_args(args, AUDIT_ARGS_FULL, NULL, red_len - 1);
  CHECK(t);
  CHECK(json_is_true(json_object_get(t, "truncated")));
  CHECK_INT(json_integer_value(json_object_get(t, "bytes")), red_len);
  CHECK_STR(json_string_value(json_object_get(t, "digest")), want_digest);
  json_decref(t);
  t = audit_args(args, AUDIT_ARGS_FULL, NULL, red_len); /* exactly at the cap: kept */
  CHECK(t);
  CHECK(json_object_get(t, "query"));
  json_decref(t);

  /* NONE, NULL */
  CHECK(audit_args(args, AUDIT_ARGS_NONE, NULL, 1000) == NULL);
  CHECK(audit_args(NULL, AUDIT_ARGS_FULL, NULL, 1000) == NULL);
  /* the caller's own patterns replace the default list */
  const char *const mine[] = {"QUERY", "", NULL};
  json_t *m = audit_args(args, AUDIT_ARGS_FULL, mine, 100000);
  CHECK(m);
  CHECK_STR(json_string_value(json_object_get(m, "query")), "[redacted]");
  CHECK_STR(json_string_value(json_object_get(m, "Password")), "p1");
  json_decref(m);
  /* scalars and arrays at the top */
  json_t *arr = json_loads("[{\"token\":1},\"x\"]", 0, NULL);
  json_t *ra = audit_args(arr, AUDIT_ARGS_FULL, NULL, 1000);
  s = json_dumps(ra, JSON_COMPACT);
  CHECK_STR(s, "[{\"token\":\"[redacted]\"},\"x\"]");
  free(s);
  json_decref(ra);
  json_decref(arr);
  /* depth is capped */
  json_t *deep = json_string("bottom");
  for (int i = 0; i < AUDIT_ARGS_DEPTH_MAX + 10; i++) deep = json_pack("[o]", deep);
  json_t *rd = audit_args(deep, AUDIT_ARGS_FULL, NULL, 1u << 20);
  CHECK(rd);
  s = json_dumps(rd, JSON_COMPACT);
  int capped = strstr(s, "[too deep]") != NULL && strstr(s, "bottom") == NULL;
  free(s);
  json_decref(rd);
  json_decref(deep);
  CHECK(capped);
  json_decref(args);
}

/* a pattern is matched with or without its separators, in any case:
 * "api_key" masks "apiKey", "X-Api-Key" and "APIKEY" (found by review:
 * those went into records in clear); only '_' and '-' are skipped */
TEST(args_redaction_spellings) {
  CHECK(audit_redact_at("apiKey", 6, "api_key"));
  CHECK(audit_redact_at("api-key\"", 8, "api_key"));
  CHECK(audit_redact_at("API__KEY", 8, "api_key"));
  CHECK(audit_redact_at("apikey", 6, "-api_key-"));
  CHECK(!audit_redact_at("apiXkey", 7, "api_key"));
  CHECK(!audit_redact_at("api", 3, "api_key"));
  CHECK(!audit_redact_at("_apikey", 7, "api_key")); /* the text starts at the pattern's first letter */
  CHECK(audit_redact_at("_b", 2, "_"));             /* separators only: as it is */
  CHECK(!audit_redact_at("ab", 2, "_"));
  CHECK_STR(audit_redact_lead("__x-y"), "x-y");
  CHECK_STR(audit_redact_lead("--"), "--");
  json_t *args = json_loads("{\"apiKey\":\"s1\",\"headers\":{\"X-Api-Key\":\"s2\",\"Accept\":\"json\"},"
                            "\"APIKEY\":\"s3\",\"list\":[{\"pass-word\":\"s4\"}],\"apiXkey\":\"k\"}",
                            0, NULL);
  CHECK(args);
  json_t *r = audit_args(args, AUDIT_ARGS_FULL, NULL, 100000);
  char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
  CHECK_STR(s, "{\"APIKEY\":\"[redacted]\",\"apiKey\":\"[redacted]\",\"apiXkey\":\"k\",\"headers\":{\"Accept\":"
               "\"json\",\"X-Api-Key\":\"[redacted]\"},\"list\":[{\"pass-word\":\"[redacted]\"}]}");
  free(s);
  json_decref(r);
  /* a caller's pattern too: "card_number" masks "cardNumber" */
  const char *const mine[] = {"card_number", NULL};
  json_t *c = json_loads("{\"cardNumber\":\"4111\",\"card\":1}", 0, NULL);
  json_t *rc = audit_args(c, AUDIT_ARGS_FULL, mine, 1000);
  s = json_dumps(rc, JSON_COMPACT | JSON_SORT_KEYS);
  CHECK_STR(s, "{\"card\":1,\"cardNumber\":\"[redacted]\"}");
  free(s);
  json_decref(rc);
  json_decref(c);
  json_decref(args);
}

/* the tenant setting audit_redact: its grammar, and its split */
static int redact_refused(const char *v, const char *want) {
  char err[256] = "";
  if (audit_redact_check(v, err, sizeof err) != AUDIT_EINVAL) return 0;
  if (!strstr(err, want)) {
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, want);
    return 0;
  }
  return 1;
}

TEST(tenant_redact_check_and_split) {
  char err[256];
  CHECK_INT(audit_redact_check("", err, sizeof err), 0);
  CHECK_INT(audit_redact_check("cardNumber", err, sizeof err), 0);
  CHECK_INT(audit_redact_check("cardNumber,ssn,x-api_KEY-2", err, sizeof err), 0);
  char longest[AUDIT_REDACT_VALUE_MAX + 2];
  size_t l = 0;
  for (int i = 0; i < AUDIT_REDACT_TENANT_MAX; i++) {
    if (i) longest[l++] = ',';
    memset(longest + l, 'a' + i % 26, AUDIT_REDACT_PATTERN_MAX);
    l += AUDIT_REDACT_PATTERN_MAX;
  }
  longest[l] = 0;
  CHECK_INT((int)l, AUDIT_REDACT_VALUE_MAX);
  CHECK_INT(audit_redact_check(longest, err, sizeof err), 0);
  longest[l] = ',', longest[l + 1] = 0; /* a 33rd, empty */
  CHECK(redact_refused(longest, "at most 32 patterns"));
  char many[200] = "a";
  for (int i = 1; i < AUDIT_REDACT_TENANT_MAX + 1; i++) strcat(many, ",a");
  CHECK(redact_refused(many, "at most 32 patterns"));
  char big[80];
  memset(big, 'x', 65);
  big[65] = 0;
  CHECK(redact_refused(big, "pattern 1 is too long"));
  CHECK(redact_refused("a,,b", "pattern 2 is empty"));
  CHECK(redact_refused("a,", "pattern 2 is empty"));
  CHECK(redact_refused(",a", "pattern 1 is empty"));
  CHECK(redact_refused("card number", "pattern 1 holds ' '"));
  CHECK(redact_refused("ssn,card.no", "pattern 2 holds '.'"));
  CHECK(redact_refused("a,b\"c", "pattern 2 holds '\"'"));
  CHECK(redact_refused("caf\xc3\xa9", "pattern 1 holds byte 0xc3"));
  CHECK(redact_refused("a\tb", "holds byte 0x09"));
  CHECK_INT(audit_redact_check(NULL, err, sizeof err), AUDIT_EINVAL);

  /* split: appended after what is there, NULL after the last */
  const char *pats[8] = {"password", "token"};
  size_t n = 2;
  char buf[64];
  audit_redact_split("cardNumber,,ssn", buf, sizeof buf, pats, &n, 7);
  CHECK_INT(n, 4);
  CHECK_STR(pats[2], "cardNumber");
  CHECK_STR(pats[3], "ssn");
  CHECK(pats[4] == NULL);
  n = 2;
  audit_redact_split("a,b,c,d,e,f,g", buf, sizeof buf, pats, &n, 4); /* room for 2 more */
  CHECK_INT(n, 4);
  CHECK_STR(pats[3], "b");
  CHECK(pats[4] == NULL);
  n = 0;
  audit_redact_split("abcdef,gh", buf, 8, pats, &n, 7); /* the buffer fits the first only */
  CHECK_INT(n, 1);
  CHECK_STR(pats[0], "abcdef");
  CHECK(pats[1] == NULL);
  n = 0;
  audit_redact_split(NULL, buf, sizeof buf, pats, &n, 7);
  CHECK_INT(n, 0);
  CHECK(pats[0] == NULL);

  /* the defaults plus the tenant's: both mask */
  const char *all[24];
  n = 0;
  for (const char *const *d = audit_redact_default; *d && n < 20; d++) all[n++] = *d;
  audit_redact_split("cardnumber", buf, sizeof buf, all, &n, 23);
  json_t *args = json_loads("{\"CardNumber\":\"4111\",\"password\":\"p\",\"items\":[{\"cardNumberHash\":\"h\"}],"
                            "\"q\":1}", 0, NULL);
  json_t *m = audit_args(args, AUDIT_ARGS_FULL, all, 100000);
  char *s = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
  CHECK_STR(s, "{\"CardNumber\":\"[redacted]\",\"items\":[{\"cardNumberHash\":\"[redacted]\"}],"
               "\"password\":\"[redacted]\",\"q\":1}");
  free(s);
  json_decref(m);
  json_decref(args);
}

/* ---- failure: queue cap, map full ----------------------------------------------------- */

TEST(queue_full_drops_and_counts) {
  tmp_setup();
  audit_options o = opts();
  o.queue_max = 5;
  audit_log *a = open_with(&o);
  CHECK(a);
  /* every commit fails, so nothing leaves the queue */
  st__test_fail_commits(audit_store(a), 1 << 30);
  for (int i = 0; i < 5; i++) {
    int rc = audit_submit(a, "acme", UID_A, rec_kind("call", "alice", i));
    CHECK(rc == 0 || rc == AUDIT_EBROKEN);
  }
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", 5)), AUDIT_EFULL);
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", 6)), AUDIT_EFULL);
  CHECK(!audit_ok(a));
  audit_flush(a); /* an attempt that fails: records stay queued */
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT(s.dropped, 2);
  CHECK_INT(s.queue_records, 5);
  CHECK(s.queue_bytes > 0);
  CHECK(s.commit_failures >= 1);
  CHECK(s.broken);
  CHECK_INT(s.written, 0);
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", 7)), AUDIT_EFULL);
  /* the store recovers: the queued records are written, in order */
  st__test_fail_commits(audit_store(a), 0);
  audit_flush(a);
  audit_stats_get(a, &s);
  CHECK_INT(s.written, 5);
  CHECK_INT(s.queue_records, 0);
  CHECK_INT(s.queue_bytes, 0);
  CHECK(!s.broken);
  CHECK(audit_ok(a));
  for (int i = 0; i < 5; i++) {
    json_t *j = rec_json(a, UID_A, (uint64_t)i + 1);
    CHECK(j);
    int n = (int)json_integer_value(json_object_get(j, "n"));
    json_decref(j);
    CHECK_INT(n, i);
  }
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", 8)), 0);
  audit_close(a);
  tmp_cleanup();
}

TEST(queue_bytes_cap) {
  tmp_setup();
  audit_options o = opts();
  o.queue_bytes_max = 4096;
  audit_log *a = open_with(&o);
  CHECK(a);
  st__test_fail_commits(audit_store(a), 1 << 30);
  char blob[1500];
  memset(blob, 'b', sizeof blob - 1);
  blob[sizeof blob - 1] = 0;
  int full = 0, queued = 0;
  for (int i = 0; i < 5; i++) {
    int rc = audit_submit(a, "acme", UID_A, json_pack("{ss}", "blob", blob));
    if (rc == AUDIT_EFULL) full++;
    else if (rc == 0 || rc == AUDIT_EBROKEN) queued++;
  }
  CHECK_INT(queued, 2);
  CHECK_INT(full, 3);
  st__test_fail_commits(audit_store(a), 0);
  audit_close(a); /* commits what is queued */
  a = open_with(&o);
  CHECK(a);
  char *b = rec_get(a, UID_A, 2, NULL);
  CHECK(b);
  free(b);
  CHECK(rec_get(a, UID_A, 3, NULL) == NULL);
  audit_close(a);
  tmp_cleanup();
}

TEST(map_too_small_fails_closed) {
  tmp_setup();
  audit_options o = opts();
  o.map_size = 64u << 10;
  o.batch_ms = 600000; /* one batch, when audit_flush asks: all 40 records at once */
  audit_log *a = open_with(&o);
  CHECK(a);
  char *blob = malloc(8000);
  memset(blob, 'm', 7999);
  blob[7999] = 0;
  int queued = 0;
  for (int i = 0; i < 40; i++) {
    int rc = audit_submit(a, "acme", UID_A, json_pack("{sssi}", "blob", blob, "i", i));
    CHECK(rc == 0 || rc == AUDIT_EBROKEN);
    queued++;
  }
  audit_flush(a);
  CHECK(!audit_ok(a));
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK(s.broken);
  CHECK(s.commit_failures >= 1);
  CHECK_INT(s.written, 0);
  CHECK_INT(s.queue_records, (uint64_t)queued);
  CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{ss}", "blob", blob)), AUDIT_EBROKEN);
  free(blob);
  /* nothing corrupt: the env checks clean, the chain is empty */
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  log_reset();
  audit_close(a); /* one last attempt, then the loss is counted and logged */
  CHECK(log_has("could not be written"));
  /* reopened with room: a fresh, valid chain */
  o.map_size = 16u << 20;
  a = open_with(&o);
  CHECK(a);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  CHECK_INT(audit_submit(a, "acme", UID_A, rec_kind("call", "alice", 1)), 0);
  audit_flush(a);
  CHECK(audit_ok(a));
  CHECK(chain_links_ok(a, UID_A, "acme", 1, 1));
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* ---- reopen, heads in the log --------------------------------------------------------- */

TEST(reopen_continues_the_chains) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(submit_n(a, "acme", UID_A, 0, 3), 0);
  CHECK_INT(submit_n(a, "beta", UID_B, 0, 2), 0);
  audit_close(a); /* no flush: close commits what is queued */
  CHECK_INT(audit_submit(NULL, "acme", UID_A, json_object()), AUDIT_EINVAL);
  a = open_default();
  CHECK(a);
  CHECK_INT(submit_n(a, "acme", UID_A, 3, 5), 0);
  audit_flush(a);
  CHECK(chain_links_ok(a, UID_A, "acme", 1, 5));
  CHECK(chain_links_ok(a, UID_B, "beta", 1, 2));
  CHECK(rec_get(a, UID_A, 6, NULL) == NULL);
  CHECK_INT(audit_verify(audit_store(a), NULL, NULL, NULL), 0);
  /* a re-created tenant (new uid) starts its own chain */
  CHECK_INT(audit_submit(a, "acme", "0123456789abcdef", json_object()), 0);
  audit_flush(a);
  json_t *j = rec_json(a, "0123456789abcdef", 1);
  CHECK(j);
  int zero_prev = strcmp(json_string_value(json_object_get(j, "prev")),
                         "0000000000000000000000000000000000000000000000000000000000000000") == 0;
  json_decref(j);
  CHECK(zero_prev);
  audit_close(a);
  tmp_cleanup();
}

/* ---- SIEM delivery cursors ------------------------------------------------------ */

static uint64_t cursor_of(audit_log *a, const char *name, const char *uid) {
  st_txn *t;
  uint64_t seq = 99999;
  if (st_read_begin(audit_store(a), &t) < 0) return seq;
  if (audit_cursor_get(t, name, uid, &seq) < 0) seq = 88888;
  st_txn_end(t);
  return seq;
}

TEST(cursors_move_forward_commit_without_records_and_are_checked) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(submit_n(a, "acme", UID_A, 0, 5), 0);
  audit_flush(a);
  CHECK_INT((int)cursor_of(a, "operator", UID_A), 0); /* never acknowledged */
  CHECK_INT(audit_cursor_set(a, "operator", UID_A, 3), 0);
  CHECK_INT(audit_cursor_set(a, "operator", UID_A, 2), 0); /* never back, also while queued */
  CHECK_INT(audit_cursor_set(a, "tenant:acme", UID_A, 1), 0);
  audit_flush_all(a); /* no record queued: the cursors alone are committed */
  CHECK_INT((int)cursor_of(a, "operator", UID_A), 3);
  CHECK_INT((int)cursor_of(a, "tenant:acme", UID_A), 1);
  CHECK_INT(audit_cursor_set(a, "operator", UID_A, 2), 0);
  audit_flush_all(a);
  CHECK_INT((int)cursor_of(a, "operator", UID_A), 3); /* the stored one is larger */
  /* bad names; the pending table's cap */
  CHECK_INT(audit_cursor_set(a, "Operator", UID_A, 4), AUDIT_EINVAL);
  CHECK_INT(audit_cursor_set(a, "", UID_A, 4), AUDIT_EINVAL);
  CHECK_INT(audit_cursor_set(a, "operator", "bad uid", 4), AUDIT_EINVAL);
  st_txn *t;
  uint64_t seq;
  CHECK_INT(st_read_begin(audit_store(a), &t), 0);
  CHECK_INT(audit_cursor_get(t, "operator", "", &seq), AUDIT_EINVAL);
  st_txn_end(t);
  char name[32];
  int rc = 0, i;
  for (i = 0; i <= AUDIT_CURSORS_PENDING && rc == 0; i++) {
    snprintf(name, sizeof name, "s%d", i);
    rc = audit_cursor_set(a, name, UID_A, 1);
  }
  CHECK_INT(rc, AUDIT_EFULL);
  CHECK_INT(i, AUDIT_CURSORS_PENDING + 1);
  CHECK_INT(audit_cursor_set(a, "s0", UID_A, 2), 0); /* an update of a queued pair still fits */
  audit_flush_all(a);
  CHECK_INT((int)cursor_of(a, "s0", UID_A), 2);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  /* a cursor past its chain's head, or of no chain, is a problem st_check names */
  CHECK_INT(audit_cursor_set(a, "operator", UID_A, 9), 0);
  CHECK_INT(audit_cursor_set(a, "operator", UID_B, 1), 0);
  audit_flush_all(a);
  check_seen c = {0};
  CHECK_INT(st_check(audit_store(a), check_cb, &c), 2);
  audit_close(a);
  /* a graceful close commits queued cursors */
  a = open_default();
  CHECK(a);
  CHECK_INT(audit_cursor_set(a, "late", UID_A, 4), 0);
  audit_close(a);
  a = open_default();
  CHECK(a);
  CHECK_INT((int)cursor_of(a, "late", UID_A), 4);
  audit_close(a);
  tmp_cleanup();
}

/* A deleted tenant sink's cursor goes (audit_cursor_drop): every chain of
 * that sink, not another sink whose name begins alike, and its updates
 * still pending go with it; one queued after the drop is applied after it. */
TEST(cursor_drop_forgets_one_sink) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(submit_n(a, "acme", UID_A, 0, 3), 0);
  CHECK_INT(submit_n(a, "acme", UID_B, 0, 3), 0);
  audit_flush(a);
  CHECK_INT(audit_cursor_set(a, "tenant:acme:00000000000000aa", UID_A, 2), 0);
  CHECK_INT(audit_cursor_set(a, "tenant:acme:00000000000000aa", UID_B, 1), 0);
  CHECK_INT(audit_cursor_set(a, "tenant:acme:00000000000000aab", UID_A, 3), 0);
  CHECK_INT(audit_cursor_set(a, "tenant:acme", UID_A, 3), 0);
  audit_flush_all(a);
  CHECK_INT(audit_cursor_set(a, "tenant:acme:00000000000000aa", UID_A, 3), 0); /* pending: goes with the drop */
  CHECK_INT(audit_cursor_drop(a, "tenant:acme:00000000000000aa"), 0);
  audit_flush_all(a);
  CHECK_INT((int)cursor_of(a, "tenant:acme:00000000000000aa", UID_A), 0);
  CHECK_INT((int)cursor_of(a, "tenant:acme:00000000000000aa", UID_B), 0);
  CHECK_INT((int)cursor_of(a, "tenant:acme:00000000000000aab", UID_A), 3);
  CHECK_INT((int)cursor_of(a, "tenant:acme", UID_A), 3);
  /* drop, then set, in one commit: the set stands */
  CHECK_INT(audit_cursor_drop(a, "tenant:acme"), 0);
  CHECK_INT(audit_cursor_set(a, "tenant:acme", UID_B, 2), 0);
  audit_flush_all(a);
  CHECK_INT((int)cursor_of(a, "tenant:acme", UID_A), 0);
  CHECK_INT((int)cursor_of(a, "tenant:acme", UID_B), 2);
  CHECK_INT(audit_cursor_drop(a, "Bad Name"), AUDIT_EINVAL);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* An environment made by the first schema (records and heads, no cursors)
 * opens, migrates to step 2 and keeps its chains. */
TEST(migration_adds_the_cursors_to_a_step_1_environment) {
  tmp_setup();
  st_options so = {0};
  st_store *st = NULL;
  so.dir = g_dir;
  so.schema = &audit_schema;
  so.log = log_fn;
  so.log_ctx = &g_log;
  CHECK_INT(st__open_at(&st, &so, 1), 0);
  CHECK_INT((int)st_schema_version(st), 1);
  st_close(st);
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT((int)st_schema_version(audit_store(a)), 2);
  CHECK_INT(submit_n(a, "acme", UID_A, 0, 2), 0);
  audit_flush(a);
  CHECK_INT(audit_cursor_set(a, "operator", UID_A, 2), 0);
  audit_flush_all(a);
  CHECK_INT((int)cursor_of(a, "operator", UID_A), 2);
  CHECK_INT(st_check(audit_store(a), NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* ---- a tenant's own SIEM sink (main store) ----------------------------------------- */

typedef struct tsink_job {
  const char *tenant, *url, *format, *token, *now, *inc;
  bool drop, del, purge, create_tenant;
  int created, rv;
} tsink_job;
static int tsink_fn(st_txn *txn, void *arg) {
  tsink_job *j = arg;
  if (j->create_tenant) j->rv = st_tenant_create(txn, j->tenant, j->tenant, "2026-01-01T00:00:00Z", "0123456789abcdef");
  else if (j->purge) j->rv = st_purge_tenant_step(txn, j->tenant, 100) < 0 ? -1 : 0;
  else if (j->del) j->rv = audit_tenant_sink_del(txn, j->tenant);
  else j->rv = audit_tenant_sink_put(txn, j->tenant, j->url, j->format ? j->format : "ndjson", j->token, j->drop,
                                     j->now ? j->now : "2026-12-05T00:00:00Z", j->inc ? j->inc : "00000000000000aa",
                                     &j->created);
  return j->rv < 0 && j->rv != ST_ENOTFOUND ? j->rv : 0;
}
static int tsink(st_store *st, tsink_job j, int *created) {
  int rc = st_write_sync(st, tsink_fn, &j);
  if (created) *created = j.created;
  return rc ? rc : j.rv;
}
static int parse_doc(const char *text, char *err, size_t errlen) {
  json_t *d = json_loads(text, 0, NULL);
  const char *u, *f, *t;
  bool drop;
  int rc = audit_tenant_sink_parse(d, &u, &f, &t, &drop, err, errlen);
  json_decref(d);
  return rc;
}

TEST(tenant_sink_parse_store_purge_and_check) {
  tmp_setup();
  char err[512];
  /* validation names the member, never echoes a token */
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/in\"}", err, sizeof err), 0);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/in\",\"format\":\"splunk_hec\",\"token\":\"abc\"}", err,
                      sizeof err), 0);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/in\",\"token\":null}", err, sizeof err), 0);
  CHECK_INT(parse_doc("{\"url\":\"ftp://siem.example.com/in\"}", err, sizeof err), AUDIT_EINVALID);
  CHECK(strstr(err, "\"url\"") != NULL);
  CHECK_INT(parse_doc("{\"url\":\"https://u:p@siem.example.com/in\"}", err, sizeof err), AUDIT_EINVALID);
  /* user info a '?' or a '/' hides from a cut at the first of "/?#" */
  CHECK_INT(parse_doc("{\"url\":\"https://u:p?w@siem.example.com/in\"}", err, sizeof err), AUDIT_EINVALID);
  CHECK(strstr(err, "p?w") == NULL);
  CHECK_INT(parse_doc("{\"url\":\"https://u:p/w@siem.example.com/in\"}", err, sizeof err), AUDIT_EINVALID);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/in?by=a@b\"}", err, sizeof err), 0);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/in#x\"}", err, sizeof err), AUDIT_EINVALID);
  CHECK_INT(parse_doc("{\"url\":\"https://\"}", err, sizeof err), AUDIT_EINVALID);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/\",\"format\":\"syslog\"}", err, sizeof err),
            AUDIT_EINVALID);
  CHECK(strstr(err, "\"format\"") != NULL);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/\",\"token\":\"has space-SECRETX\"}", err, sizeof err),
            AUDIT_EINVALID);
  CHECK(strstr(err, "\"token\"") != NULL && strstr(err, "SECRETX") == NULL);
  CHECK_INT(parse_doc("{\"url\":\"https://siem.example.com/\",\"extra\":1}", err, sizeof err), AUDIT_EINVALID);
  CHECK_INT(parse_doc("[]", err, sizeof err), AUDIT_EINVALID);

  /* the main store: put, keep or drop the token, delete, purge, check */
  char dir[160], key[160];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp);
  st_options o = {0};
  st_store *st = NULL;
  o.dir = dir;
  o.map_size = 64u << 20;
  o.master_key_file = key;
  o.log = log_fn;
  o.log_ctx = &g_log;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(audit_register_store(st), 0);
  CHECK_INT(st_purge_add(st, "secrets", st_secret_purge_tenant, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .create_tenant = true}, NULL), 0);
  int created = 0;
  /* a tenant that does not exist is the caller's to refuse; the record is keyed by a valid id only */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "Bad Id", .url = "https://x.example/"}, NULL), ST_EINVAL);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://siem.example.com/in", .token = "tok-1"}, &created),
            0);
  CHECK_INT(created, 1);
  st_txn *t;
  json_t *rec = NULL;
  char *tok = NULL;
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(audit_tenant_sink_get(t, "acme", &rec), 0);
  CHECK(json_is_true(json_object_get(rec, "token_set")));
  CHECK_INT(audit_tenant_sink_token(t, "acme", &tok), 0);
  CHECK_STR(tok, "tok-1");
  st_txn_end(t);
  json_decref(rec);
  audit_tenant_sink_token_free(tok);
  /* a PUT without a token keeps it; with null drops it */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://siem2.example.com/in", .format = "splunk_hec"},
                  &created),
            0);
  CHECK_INT(created, 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(audit_tenant_sink_token(t, "acme", &tok), 0);
  CHECK_STR(tok, "tok-1");
  audit_tenant_sink_token_free(tok);
  CHECK_INT(audit_tenant_sink_get(t, "acme", &rec), 0);
  CHECK_STR(json_string_value(json_object_get(rec, "format")), "splunk_hec");
  /* two writes in the same second (the same "updated") are still told apart */
  CHECK_INT((int)json_integer_value(json_object_get(rec, "rev")), 2);
  /* the incarnation is the making write's: an update's is ignored */
  CHECK_STR(json_string_value(json_object_get(rec, "inc")), "00000000000000aa");
  /* so is the delivery cursor's name */
  char cname[AUDIT_SINK_MAX + 1];
  audit_tenant_sink_cursor("acme", rec, cname);
  CHECK_STR(cname, "tenant:acme:00000000000000aa");
  json_decref(rec);
  st_txn_end(t);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://siem2.example.com/in", .drop = true}, NULL), 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(audit_tenant_sink_token(t, "acme", &tok), ST_ENOTFOUND);
  CHECK_INT(audit_tenant_sink_get(t, "acme", &rec), 0);
  CHECK(json_is_false(json_object_get(rec, "token_set")));
  json_decref(rec);
  st_txn_end(t);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .del = true}, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .del = true}, NULL), ST_ENOTFOUND);
  /* made again: rev starts over, the new incarnation tells it from the deleted one */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://siem3.example.com/in", .inc = "00000000000000bb"},
                  &created),
            0);
  CHECK_INT(created, 1);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(audit_tenant_sink_get(t, "acme", &rec), 0);
  CHECK_INT((int)json_integer_value(json_object_get(rec, "rev")), 1);
  CHECK_STR(json_string_value(json_object_get(rec, "inc")), "00000000000000bb");
  /* its own cursor: it starts as a new sink, not where the deleted one stopped */
  audit_tenant_sink_cursor("acme", rec, cname);
  CHECK_STR(cname, "tenant:acme:00000000000000bb");
  /* a record made before sinks had their own cursor: the tenant's name */
  json_t *legacy = json_pack("{s:s}", "url", "https://siem.example.com/in");
  audit_tenant_sink_cursor("acme", legacy, cname);
  CHECK_STR(cname, "tenant:acme");
  json_decref(legacy);
  json_decref(rec);
  st_txn_end(t);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .del = true}, NULL), 0);
  /* the tenant's purge takes the record and the token */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://siem.example.com/in", .token = "tok-2"}, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .purge = true}, NULL), 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(audit_tenant_sink_get(t, "acme", &rec), ST_ENOTFOUND);
  CHECK_INT(audit_tenant_sink_token(t, "acme", &tok), ST_ENOTFOUND);
  st_txn_end(t);
  /* a sink of no tenant is a problem st_check names */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "ghost", .url = "https://siem.example.com/in"}, NULL), 0);
  CHECK_INT(st_check(st, NULL, NULL), 1);
  st_close(st);
  tmp_cleanup();
}

/* A raw record write (a store written before the URL was sealed). */
typedef struct sinkrec_job {
  const char *tenant, *json;
  bool upgrade;
} sinkrec_job;
static int sinkrec_fn(st_txn *txn, void *arg) {
  sinkrec_job *j = arg;
  if (j->upgrade) return audit_upgrade_sink_urls(txn);
  char k[80];
  k[0] = 's';
  memcpy(k + 1, j->tenant, strlen(j->tenant));
  return st_put(txn, ST_DB_AUDIT, k, strlen(j->tenant) + 1, j->json, strlen(j->json), 0);
}
/* the sink's real URL as the driver reads it, into out ("" when none) */
static int sink_real_url(st_store *st, const char *tenant, char *out, size_t cap) {
  st_txn *t;
  json_t *rec = NULL;
  const char *url = NULL;
  char *sealed = NULL;
  int rc = st_read_begin(st, &t);
  if (!rc) rc = audit_tenant_sink_get(t, tenant, &rec);
  if (!rc) rc = audit_tenant_sink_url(t, tenant, rec, &url, &sealed);
  snprintf(out, cap, "%s", url ? url : "");
  audit_tenant_sink_url_free(sealed);
  json_decref(rec);
  st_txn_end(t);
  return rc;
}
static char *sink_shown_url(st_store *st, const char *tenant) {
  st_txn *t;
  json_t *rec = NULL;
  char *u = NULL;
  if (st_read_begin(st, &t) == 0 && audit_tenant_sink_get(t, tenant, &rec) == 0)
    u = strdup(json_string_value(json_object_get(rec, "url")) ?: "");
  json_decref(rec);
  st_txn_end(t);
  return u;
}

TEST(tenant_sink_url_query_sealed_kept_and_upgraded) {
  tmp_setup();
  char dir[160], key[160], real[4200];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp);
  st_options o = {0};
  st_store *st = NULL;
  o.dir = dir;
  o.map_size = 64u << 20;
  o.master_key_file = key;
  o.log = log_fn;
  o.log_ctx = &g_log;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(audit_register_store(st), 0);
  CHECK_INT(st_purge_add(st, "secrets", st_secret_purge_tenant, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .create_tenant = true}, NULL), 0);
  char err[512];
  /* "…" is accepted in the query only */
  CHECK_INT(parse_doc("{\"url\":\"https://in.example.com/v1?k=\u2026\"}", err, sizeof err), 0);
  CHECK_INT(parse_doc("{\"url\":\"https://in.example.com/\u2026?k=1\"}", err, sizeof err), AUDIT_EINVALID);
  /* sealed, shown masked */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v1?dd-api-key=K1&src=gw"}, NULL), 0);
  char *u = sink_shown_url(st, "acme");
  CHECK_STR(u, "https://in.example.com/v1?dd-api-key=\xe2\x80\xa6&src=\xe2\x80\xa6");
  free(u);
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, "https://in.example.com/v1?dd-api-key=K1&src=gw");
  CHECK_INT(st_check(st, NULL, NULL), 0);
  /* sent back masked: kept, at the same scheme, host, port and path only */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v1?dd-api-key=%e2%80%a6&src=x"}, NULL),
            0);
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, "https://in.example.com/v1?dd-api-key=K1&src=x");
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v2?dd-api-key=\xe2\x80\xa6"}, NULL),
            ST_EMASKED);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com:8443/v1?dd-api-key=\xe2\x80\xa6"},
                  NULL),
            ST_EMASKED);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v1?other=\xe2\x80\xa6"}, NULL),
            ST_EMASKED);
  /* kept values making it longer than any URL given: refused */
  char big[AUDIT_SINK_URL_MAX + 64], back[AUDIT_SINK_URL_MAX + 64];
  snprintf(big, sizeof big, "https://in.example.com/v1?a=%0*d", AUDIT_SINK_URL_MAX - 30, 7);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = big}, NULL), 0);
  snprintf(back, sizeof back, "https://in.example.com/v1?a=\xe2\x80\xa6&b=%040d", 1);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = back}, NULL), ST_EMASKED);
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, big);
  /* a URL without query values is not sealed: the record's own */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v1"}, NULL), 0);
  st_txn *t;
  uint8_t *pt = NULL;
  size_t n = 0;
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_secret_get(t, &(st_aad){"acme", AUDIT_SINK_URL_KIND, ""}, &pt, &n), ST_ENOTFOUND);
  st_txn_end(t);
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, "https://in.example.com/v1");
  /* a record written before (its query in clear): st_check names it, the upgrade seals it */
  sinkrec_job rj = {"acme", "{\"url\":\"https://in.example.com/v1?dd-api-key=OLD\",\"format\":\"ndjson\",\"token_set\":false,"
                        "\"created\":\"2026-01-01T00:00:00Z\",\"updated\":\"2026-01-01T00:00:00Z\",\"rev\":3}",
                false};
  CHECK_INT(st_write_sync(st, sinkrec_fn, &rj), 0);
  CHECK_INT(st_check(st, NULL, NULL), 1);
  rj.upgrade = true;
  CHECK_INT(st_write_sync(st, sinkrec_fn, &rj), 0);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  u = sink_shown_url(st, "acme");
  CHECK_STR(u, "https://in.example.com/v1?dd-api-key=\xe2\x80\xa6");
  free(u);
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, "https://in.example.com/v1?dd-api-key=OLD");
  CHECK_INT(st_write_sync(st, sinkrec_fn, &rj), 0); /* again: nothing more to do */
  CHECK_INT(sink_real_url(st, "acme", real, sizeof real), 0);
  CHECK_STR(real, "https://in.example.com/v1?dd-api-key=OLD");
  /* the delete and the tenant's purge take the sealed URL */
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .del = true}, NULL), 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_secret_get(t, &(st_aad){"acme", AUDIT_SINK_URL_KIND, ""}, &pt, &n), ST_ENOTFOUND);
  st_txn_end(t);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .url = "https://in.example.com/v1?dd-api-key=K2"}, NULL), 0);
  CHECK_INT(tsink(st, (tsink_job){.tenant = "acme", .purge = true}, NULL), 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_secret_get(t, &(st_aad){"acme", AUDIT_SINK_URL_KIND, ""}, &pt, &n), ST_ENOTFOUND);
  st_txn_end(t);
  st_close(st);
  tmp_cleanup();
}

/* audit_submit_block: the record built after the module's header is queued
 * as it is; refused blocks are freed (ASan's leak check) */
/* a block of h + 8 bytes holding n bytes of m after the headroom */
static char *block_of(size_t h, const char *m, size_t n) {
  char *b = malloc(h + 8);
  if (b) memcpy(b + h, m, n);
  return b;
}

TEST(submit_block_queues_in_place) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  size_t h = audit_text_headroom();
  const char *m = "{\"kind\":\"call\",\"time\":1000,\"tool\":\"t\"}";
  char *blk = malloc(h + strlen(m) + 1);
  CHECK(blk);
  memcpy(blk + h, m, strlen(m) + 1);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, blk, strlen(m), h + strlen(m) + 1), 0);
  /* refused: not an object, a NUL inside, a bad uid or tenant, a cap the
   * members do not fit in — each block freed */
  CHECK_INT(audit_submit_block(a, "acme", UID_A, block_of(h, "[1,2]", 6), 5, h + 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, block_of(h, "{\"a\0\"}", 7), 6, h + 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "acme", "no uid!", block_of(h, "{}", 3), 2, h + 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "Acme", UID_A, block_of(h, "{}", 3), 2, h + 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "acme", "", block_of(h, "{}", 3), 2, h + 8), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, block_of(h, "{}", 3), 2, h + 2), AUDIT_EINVAL);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, NULL, 2, 0), AUDIT_EINVAL);
  audit_flush(a);
  json_t *j = rec_json(a, UID_A, 1);
  CHECK(j);
  CHECK_STR(json_string_value(json_object_get(j, "tool")), "t");
  CHECK_INT((int)json_integer_value(json_object_get(j, "time")), 1000);
  CHECK_INT((int)json_integer_value(json_object_get(j, "seq")), 1);
  json_decref(j);
  audit_close(a);
  tmp_cleanup();
}

/* audit_block_get: a committed record's block of AUDIT_BLOCK_BYTES comes
 * back from the pool (no malloc on the loop, no free on the audit thread);
 * a block of another size (one the caller grew) is never handed out: it
 * is freed when it comes up (ASan: no leak, no reuse of a freed block) */
TEST(submit_block_recycles_blocks) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  size_t h = audit_text_headroom();
  const char *m = "{\"kind\":\"call\",\"time\":1000}";
  char *b1 = audit_block_get(a);
  CHECK(b1);
  memcpy(b1 + h, m, strlen(m) + 1);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, b1, strlen(m), AUDIT_BLOCK_BYTES), 0);
  char *big = malloc(AUDIT_BLOCK_BYTES * 2);
  CHECK(big);
  memcpy(big + h, m, strlen(m) + 1);
  CHECK_INT(audit_submit_block(a, "acme", UID_A, big, strlen(m), AUDIT_BLOCK_BYTES * 2), 0);
  audit_flush(a);
  char *again = audit_block_get(a);
  CHECK(again == b1); /* the pool held exactly the one block of its size */
  memset(again, 0xA5, AUDIT_BLOCK_BYTES); /* all of it is the caller's */
  free(again);
  char *fresh = audit_block_get(a); /* the grown block is freed: a new one */
  CHECK(fresh);
  free(fresh);
  char *nolog = audit_block_get(NULL); /* no log: a plain malloc */
  CHECK(nolog);
  free(nolog);
  CHECK_INT(audit_verify(audit_store(a), UID_A, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* n records built in blocks from audit_block_get, queued; 0 or the first error */
static int submit_blocks(audit_log *a, int n) {
  size_t h = audit_text_headroom();
  for (int i = 0; i < n; i++) {
    char *b = audit_block_get(a);
    if (!b) return AUDIT_ENOMEM;
    int len = snprintf(b + h, AUDIT_BLOCK_BYTES - h, "{\"kind\":\"call\",\"n\":%d,\"time\":1000}", i);
    int rc = audit_submit_block(a, "acme", UID_A, b, (size_t)len, AUDIT_BLOCK_BYTES);
    if (rc) return rc;
  }
  return 0;
}

/* Every block of a burst comes back to the pool, not only 2,048 of them:
 * at 45k calls/s a batch is ~2,300 records, and the blocks past the old
 * cap were malloc'd on the loop and freed on the audit thread each batch
 * (glibc returned the heap to the kernel, the loop faulted it in again). */
TEST(pool_keeps_every_block_of_a_burst) {
  tmp_setup();
  audit_options o = opts();
  o.batch_ms = 600000; /* one batch (audit_flush's): every block in flight at once */
  audit_log *a = open_with(&o);
  CHECK(a);
  CHECK_INT(submit_blocks(a, 5000), 0);
  audit_flush(a);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT((int)s.written, 5000);
  CHECK_INT((int)s.pool_blocks, 5000);
  /* the next burst takes them all from the pool, then more are made */
  CHECK_INT(submit_blocks(a, 5001), 0);
  audit_stats_get(a, &s);
  CHECK_INT((int)s.pool_blocks, 0);
  audit_flush(a);
  audit_stats_get(a, &s);
  CHECK_INT((int)s.pool_blocks, 5001);
  CHECK_INT(audit_verify(audit_store(a), UID_A, NULL, NULL), 0);
  audit_close(a); /* frees the pool (ASan: no leak) */
  tmp_cleanup();
}

/* ... and once no record needed them for pool_trim_ms, they are freed
 * (the memory of a burst is not kept for good) */
TEST(pool_frees_blocks_left_unused) {
  tmp_setup();
  audit_options o = opts();
  o.pool_trim_ms = 20;
  audit_log *a = open_with(&o);
  CHECK(a);
  CHECK_INT(submit_blocks(a, 3000), 0);
  audit_flush(a);
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK_INT((int)s.written, 3000);
  /* what is asserted is that it happens, not when: wait (bounded) */
  for (int i = 0; i < 500 && (audit_stats_get(a, &s), s.pool_blocks); i++) usleep(10000);
  CHECK_INT((int)s.pool_blocks, 0);
  /* blocks are still handed out (new ones), and records still committed */
  CHECK_INT(submit_blocks(a, 10), 0);
  audit_flush(a);
  audit_stats_get(a, &s);
  CHECK_INT((int)s.written, 3010);
  CHECK_INT(audit_verify(audit_store(a), UID_A, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* Submits n records in blocks (n may be 0), commits them, trims the pool
 * by hand: what the pool then holds, or -1. */
static int pool_after_trim(audit_log *a, int n) {
  if (n && submit_blocks(a, n) != 0) return -1;
  audit_flush(a);
  audit__pool_trim(a);
  audit_stats s;
  audit_stats_get(a, &s);
  return (int)s.pool_blocks;
}

/* The pool keeps what the traffic of the last interval took and frees the
 * rest: the low-water mark since the previous trim, not everything (the
 * trim driven by hand: no timing) */
TEST(pool_trim_keeps_what_traffic_took) {
  tmp_setup();
  audit_options o = opts();
  o.pool_trim_ms = 3600000; /* the thread's own trims out of the way */
  /* one batch per round (audit_flush's): a batch committed while the
   * round's records are still submitted gives its blocks back to the
   * pool, and the rest of the round takes them again — fewer blocks than
   * records (CI, under ASan on a loaded machine: 921 of 1,000) */
  o.batch_ms = 600000;
  audit_log *a = open_with(&o);
  CHECK(a);
  CHECK_INT(pool_after_trim(a, 1000), 1000); /* no interval measured yet: nothing is freed */
  CHECK_INT(pool_after_trim(a, 100), 100);   /* traffic took 100: 900 were never needed */
  CHECK_INT(pool_after_trim(a, 100), 100);   /* the same traffic: its blocks stay */
  CHECK_INT(pool_after_trim(a, 0), 0);       /* an interval without a record: freed */
  CHECK_INT(audit_verify(audit_store(a), UID_A, NULL, NULL), 0);
  audit_close(a);
  tmp_cleanup();
}

/* The queue's byte cap bounds the memory its records hold: a record in a
 * recycled block holds all AUDIT_BLOCK_BYTES of it (the cap counted only
 * its text: with commits failing, 8 MiB let ~5x that pile up) */
TEST(queue_bytes_bound_the_memory_held) {
  tmp_setup();
  audit_options o = opts();
  o.queue_max = 10000000;
  o.queue_bytes_max = 8u << 20;
  audit_log *a = open_with(&o);
  CHECK(a);
  st__test_fail_commits(audit_store(a), 1 << 30);
  size_t h = audit_text_headroom();
  long queued = 0;
  for (;;) {
    char *b = audit_block_get(a);
    CHECK(b);
    int len = snprintf(b + h, AUDIT_BLOCK_BYTES - h, "{\"kind\":\"call\",\"n\":%ld,\"time\":1000,\"tool\":\"get-sum\"}",
                       queued);
    int rc = audit_submit_block(a, "acme", UID_A, b, (size_t)len, AUDIT_BLOCK_BYTES);
    if (rc == AUDIT_EFULL) break;
    CHECK(rc == 0 || rc == AUDIT_EBROKEN);
    queued++;
  }
  audit_stats s;
  audit_stats_get(a, &s);
  CHECK(queued * (long)AUDIT_BLOCK_BYTES <= (8L << 20));
  CHECK(queued >= (8L << 20) / (long)AUDIT_BLOCK_BYTES - 1);
  CHECK(s.queue_bytes == (uint64_t)queued * AUDIT_BLOCK_BYTES);
  audit_close(a); /* still failing: counted as dropped, freed (ASan) */
  tmp_cleanup();
}

/* A batch the queue's length forced out (the writer is behind) is written
 * without pauses; an ordinary one pauses after every 32 KiB. With a pause
 * after every 32 KiB of a forced batch, one busy CPU left the writer at a
 * third of the calls' rate. */
TEST(a_batch_forced_by_the_queue_takes_no_pause) {
  tmp_setup();
  audit_options o = opts();
  o.batch_ms = 600000;
  o.queue_max = 4000; /* a batch is forced at 1,000 queued records */
  audit_log *a = open_with(&o);
  CHECK(a);
  char pad[301];
  memset(pad, 'p', 300);
  pad[300] = 0;
  for (int i = 0; i < 1000; i++) CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{sssi}", "pad", pad, "n", i)), 0);
  audit_stats s;
  for (int i = 0; i < 1000 && (audit_stats_get(a, &s), s.written < 1000); i++) usleep(10000);
  CHECK_INT((int)s.written, 1000); /* committed without a flush: forced by the queue */
  CHECK_INT((int)s.pauses, 0);
  /* an ordinary batch (audit_flush's, 500 records of ~600 bytes) pauses */
  for (int i = 0; i < 500; i++) CHECK_INT(audit_submit(a, "acme", UID_A, json_pack("{sssi}", "pad", pad, "n", i)), 0);
  audit_flush(a);
  audit_stats_get(a, &s);
  CHECK_INT((int)s.written, 1500);
  CHECK(s.pauses >= 1);
  audit_close(a);
  tmp_cleanup();
}

/* Submitters on two threads, the trim every millisecond, a stats reader,
 * then audit_close while trims run (ASan, TSan: no race, no reuse) */
static audit_log *g_race;
static atomic_int g_race_stop;
static void race_submitter(void *arg) {
  (void)arg;
  while (!atomic_load(&g_race_stop)) {
    (void)submit_blocks(g_race, 50);
    usleep(200);
  }
}
static void race_stats(void *arg) {
  (void)arg;
  audit_stats s;
  while (!atomic_load(&g_race_stop)) audit_stats_get(g_race, &s);
}
TEST(pool_trim_races_with_submitters) {
  tmp_setup();
  audit_options o = opts();
  o.pool_trim_ms = 1;
  o.batch_ms = 1;
  g_race = open_with(&o);
  CHECK(g_race);
  atomic_store(&g_race_stop, 0);
  uv_thread_t t[3];
  CHECK_INT(uv_thread_create(&t[0], race_submitter, NULL), 0);
  CHECK_INT(uv_thread_create(&t[1], race_submitter, NULL), 0);
  CHECK_INT(uv_thread_create(&t[2], race_stats, NULL), 0);
  usleep(500000);
  atomic_store(&g_race_stop, 1);
  for (int i = 0; i < 3; i++) uv_thread_join(&t[i]);
  audit_flush(g_race);
  CHECK_INT(audit_verify(audit_store(g_race), UID_A, NULL, NULL), 0);
  audit_close(g_race);
  tmp_cleanup();
}

TEST(heads_are_logged) {
  tmp_setup();
  audit_log *a = open_default();
  CHECK(a);
  CHECK_INT(submit_n(a, "acme", UID_A, 0, 3), 0);
  audit_close(a);
  a = NULL;
  audit_options o = opts();
  o.head_log_ms = 1;
  log_reset();
  CHECK_INT(audit_open(&a, &o), 0);
  /* the line's content is asserted, not when it comes: wait (bounded) for it */
  char want[200];
  size_t len;
  char hash[65], *last = rec_get(a, UID_A, 3, &len);
  CHECK(last);
  hex_sha(last, len, hash);
  free(last);
  snprintf(want, sizeof want, "audit: chain head tenant=acme uid=" UID_A " seq=3 hash=%s", hash);
  for (int i = 0; i < 500 && !log_has(want); i++) usleep(10000);
  CHECK(log_has(want));
  audit_close(a);
  tmp_cleanup();
}

TEST(open_rules) {
  audit_log *a = (audit_log *)1;
  audit_options o = {0};
  CHECK_INT(audit_open(&a, &o), AUDIT_EINVAL);
  CHECK(a == NULL);
  CHECK_INT(audit_open(NULL, &o), AUDIT_EINVAL);
  o.dir = "/nonexistent-parent/for/sure";
  o.log = log_fn;
  o.log_ctx = &g_log;
  CHECK(audit_open(&a, &o) < 0);
  CHECK(a == NULL);
  audit_close(NULL);
  audit_flush(NULL);
  CHECK(!audit_ok(NULL));
}

int main(void) {
  uv_mutex_init(&g_log.mu);
  RUN(chains_of_two_tenants_interleaved);
  RUN(two_threads_submit_concurrently);
  RUN(many_chains_in_one_batch);
  RUN(submit_rules);
  RUN(submit_text_records);
  RUN(verify_names_an_edited_record);
  RUN(verify_names_an_edited_prev_and_an_edited_last_record);
  RUN(verify_names_a_deleted_record);
  RUN(verify_head_mismatch_and_orphans);
  RUN(store_check_reports_an_edited_record);
  RUN(prune_keeps_the_chain_verifiable);
  RUN(query_filters);
  RUN(query_pages_with_cursors);
  RUN(query_scan_is_bounded);
  RUN(export_chunks);
  RUN(scans_stop_at_the_byte_budget);
  RUN(args_redaction_digest_and_cap);
  RUN(args_redaction_spellings);
  RUN(tenant_redact_check_and_split);
  RUN(queue_full_drops_and_counts);
  RUN(queue_bytes_cap);
  RUN(map_too_small_fails_closed);
  RUN(reopen_continues_the_chains);
  RUN(cursors_move_forward_commit_without_records_and_are_checked);
  RUN(migration_adds_the_cursors_to_a_step_1_environment);
  RUN(tenant_sink_parse_store_purge_and_check);
  RUN(tenant_sink_url_query_sealed_kept_and_upgraded);
  RUN(cursor_drop_forgets_one_sink);
  RUN(submit_block_queues_in_place);
  RUN(submit_block_recycles_blocks);
  RUN(pool_keeps_every_block_of_a_burst);
  RUN(pool_frees_blocks_left_unused);
  RUN(pool_trim_keeps_what_traffic_took);
  RUN(queue_bytes_bound_the_memory_held);
  RUN(a_batch_forced_by_the_queue_takes_no_pause);
  RUN(pool_trim_races_with_submitters);
  RUN(heads_are_logged);
  RUN(open_rules);
  tmp_cleanup();
  uv_mutex_destroy(&g_log.mu);
  return UNIT_DONE();
}
