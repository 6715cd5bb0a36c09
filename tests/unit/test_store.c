/* tests/unit/test_store.c — store/ against a real LMDB env on disk (a
 * mkdtemp dir under /tmp, removed at the end of each test): migrations,
 * data access, long keys, cursors, group commit, hooks, post-commit
 * actions, commit-failure re-runs, MAP_FULL, ports, st_write_sync, backup,
 * stats/readiness, st_check, the purge registry, the log callback and a
 * second environment with its own schema. Loop tests end asserting
 * uv_loop_close(loop) == 0. Set UNIT_VERBOSE=1 to see the store's logs. */
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <dirent.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/log.h"
#include "store/dir.h"
#include "store/store.h"
#include "store/store_testing.h"
#include "store/text.h"
#include "tests/unit/unit.h"

/* ---- fixtures ----------------------------------------------------------- */

static char g_tmp[64];
static char g_dir[128];
static char g_key[128];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void);
static void tmp_setup(void) {
  tmp_cleanup(); /* a failed CHECK skips a test's own cleanup */
  strcpy(g_tmp, "/tmp/mcpgate-test-store-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  snprintf(g_dir, sizeof g_dir, "%s/store", g_tmp);
  snprintf(g_key, sizeof g_key, "%s/master.key", g_tmp);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
/* The upgrades the main schema's migrations name, as the module table
 * gives them; these count their runs and write a marker (the step's txn). */
static int g_upgrade_runs;
static int upgrade_marker(st_txn *txn) {
  g_upgrade_runs++;
  return st_put(txn, ST_DB_META, "upgraded", 8, "yes", 3, 0);
}
static const st_upgrade test_upgrades[] = {
    {ST_UPGRADE_URL_QUERIES, upgrade_marker}, {ST_UPGRADE_SINK_URLS, upgrade_marker}, {NULL, NULL}};
static st_options opts_default(void) {
  st_options o = {0};
  o.dir = g_dir;
  o.master_key_file = g_key;
  o.map_size = 64u << 20;
  o.log = gw_store_log;
  o.upgrades = test_upgrades;
  return o;
}
static st_store *open_default(void) {
  st_options o = opts_default();
  st_store *st = NULL;
  return st_open(&st, &o) == 0 ? st : NULL;
}

/* A generic job: put each (k, v) pair, optionally fail afterwards. */
typedef struct kv_job {
  const char *k[4];
  const char *v[4];
  int fail_with;      /* returned after the puts if != 0 */
} kv_job;
static int kv_job_fn(st_txn *txn, void *arg) {
  kv_job *j = arg;
  for (int i = 0; i < 4 && j->k[i]; i++) {
    int rc = st_put(txn, ST_DB_TENANTS, j->k[i], strlen(j->k[i]), j->v[i], strlen(j->v[i]), 0);
    if (rc < 0) return rc;
  }
  return j->fail_with;
}
static int put1(st_store *st, const char *k, const char *v) {
  kv_job j = {{k}, {v}, 0};
  return st_write_sync(st, kv_job_fn, &j);
}
/* Reads key k from ST_DB_TENANTS into buf (NUL-terminated); returns st_get's rc. */
static int get1(st_store *st, st_db db, const void *k, size_t klen, char *buf, size_t cap) {
  st_txn *t;
  st_val v;
  int rc = st_read_begin(st, &t);
  if (rc < 0) return rc;
  rc = st_get(t, db, k, klen, &v);
  if (rc == 0 && buf) {
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(buf, v.data, n);
    buf[n] = 0;
  }
  st_txn_end(t);
  return rc;
}
static int exists(st_store *st, const char *k) {
  return get1(st, ST_DB_TENANTS, k, strlen(k), NULL, 0) == 0;
}

/* ---- migrations --------------------------------------------------------- */

static int set_version_fn(st_txn *txn, void *arg) {
  uint32_t v = *(uint32_t *)arg;
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  return st_put(txn, ST_DB_META, "schema_version", 14, b, 4, 0);
}

TEST(migrate_fresh_gets_latest) {
  char id1[64], id2[64];
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK(st_schema_latest() >= 2);
  CHECK_INT(st_schema_version(st), st_schema_latest());
  CHECK_INT(get1(st, ST_DB_META, "store_id", 8, id1, sizeof id1), 0);
  CHECK_INT(strlen(id1), 16);
  for (int i = 0; i < ST_DB__COUNT; i++) CHECK(st_db_name((st_db)i));
  st_close(st);
  st = open_default(); /* reopening changes nothing */
  CHECK(st);
  CHECK_INT(st_schema_version(st), st_schema_latest());
  CHECK_INT(get1(st, ST_DB_META, "store_id", 8, id2, sizeof id2), 0);
  CHECK_STR(id1, id2);
  st_close(st);
  tmp_cleanup();
}

TEST(migrate_partial_gets_the_rest) {
  st_options o;
  st_store *st = NULL;
  tmp_setup();
  o = opts_default();
  CHECK_INT(st__open_at(&st, &o, 0), 0); /* an env with no schema at all */
  CHECK_INT(st_schema_version(st), 0);
  st_close(st);
  CHECK_INT(st__open_at(&st, &o, 1), 0); /* step 1 only */
  CHECK_INT(st_schema_version(st), 1);
  CHECK_INT(get1(st, ST_DB_META, "store_id", 8, NULL, 0), ST_ENOTFOUND);
  CHECK_INT(put1(st, "kept", "across migration"), 0);
  st_close(st);
  CHECK_INT(st_open(&st, &o), 0); /* the rest applied */
  CHECK_INT(st_schema_version(st), st_schema_latest());
  CHECK_INT(get1(st, ST_DB_META, "store_id", 8, NULL, 0), 0);
  CHECK(exists(st, "kept"));
  st_close(st);
  tmp_cleanup();
}

/* A step that names an upgrade runs the opener's function in its own
 * transaction; without it an existing store is refused and left at its
 * version (a new store has no data to upgrade: it opens). */
TEST(migrate_upgrade_given_by_the_opener) {
  st_options o;
  st_store *st = NULL;
  tmp_setup();
  o = opts_default();
  CHECK_INT(st__open_at(&st, &o, 10), 0); /* before migration 11 */
  CHECK_INT(put1(st, "kept", "across migration"), 0);
  st_close(st);
  o.upgrades = NULL;
  CHECK_INT(st_open(&st, &o), ST_EINVAL);
  CHECK(st == NULL);
  CHECK_INT(st__open_at(&st, &o, 10), 0); /* still at 10 */
  CHECK_INT(st_schema_version(st), 10);
  st_close(st);
  o = opts_default();
  g_upgrade_runs = 0;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(st_schema_version(st), st_schema_latest());
  CHECK_INT(g_upgrade_runs, 2); /* migrations 11 and 12 */
  CHECK_INT(get1(st, ST_DB_META, "upgraded", 8, NULL, 0), 0);
  CHECK(exists(st, "kept"));
  st_close(st);
  tmp_cleanup();
  /* a store this open creates: nothing to upgrade, none needed */
  tmp_setup();
  o = opts_default();
  o.upgrades = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(st_schema_version(st), st_schema_latest());
  CHECK_INT(get1(st, ST_DB_META, "upgraded", 8, NULL, 0), ST_ENOTFOUND);
  st_close(st);
  tmp_cleanup();
}

/* A populated store whose schema version record was lost (found by the
 * operations review): taken for a new one, every migration ran again over
 * its data, silently. It is refused as damaged, and nothing is written. */
static int drop_version_fn(st_txn *txn, void *arg) {
  (void)arg;
  return st_del(txn, ST_DB_META, "schema_version", 14);
}

TEST(migrate_lost_version_refused) {
  st_options o;
  st_store *st = NULL;
  tmp_setup();
  o = opts_default();
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(put1(st, "kept", "as it was"), 0);
  CHECK_INT(st_write_sync(st, drop_version_fn, NULL), 0);
  st_close(st);
  st = NULL;
  CHECK_INT(st_open(&st, &o), ST_ECORRUPT);
  CHECK(st == NULL);
  CHECK_INT(st_open(&st, &o), ST_ECORRUPT); /* it wrote nothing: still refused */
  /* whatever version the opener aims at */
  CHECK_INT(st__open_at(&st, &o, 0), ST_ECORRUPT);
  tmp_cleanup();
}

TEST(migrate_newer_refused) {
  st_options o;
  st_store *st = NULL;
  tmp_setup();
  o = opts_default();
  CHECK_INT(st_open(&st, &o), 0);
  uint32_t v = st_schema_latest() + 1;
  CHECK_INT(st_write_sync(st, set_version_fn, &v), 0);
  st_close(st);
  st = NULL;
  CHECK_INT(st_open(&st, &o), ST_ETOONEW);
  CHECK(st == NULL);
  CHECK_INT(st_open(&st, &o), ST_ETOONEW); /* and it wrote nothing: still refused */
  tmp_cleanup();
}

/* ---- get / put / del / cursors ------------------------------------------ */

static int crud_fn(st_txn *txn, void *arg) {
  int *step = arg, rc;
  st_val v;
  (*step) = 0;
  if ((rc = st_put(txn, ST_DB_TENANTS, "a", 1, "1", 1, 0)) < 0) return rc;
  (*step)++;
  if (st_put(txn, ST_DB_TENANTS, "a", 1, "2", 1, ST_NOOVERWRITE) != ST_EEXIST) return -1;
  (*step)++;
  if ((rc = st_get(txn, ST_DB_TENANTS, "a", 1, &v)) < 0 || v.len != 1 || *(char *)v.data != '1')
    return -2;
  (*step)++;
  if (st_put(txn, ST_DB_TENANTS, "", 0, "x", 1, 0) != ST_EINVAL) return -3;
  if (st_put(txn, (st_db)99, "a", 1, "x", 1, 0) != ST_EINVAL) return -4;
  if ((rc = st_put(txn, ST_DB_TENANTS, "b", 1, "", 0, 0)) < 0) return rc; /* empty value ok */
  if ((rc = st_del(txn, ST_DB_TENANTS, "b", 1)) < 0) return rc;
  if (st_del(txn, ST_DB_TENANTS, "b", 1) != ST_ENOTFOUND) return -5;
  (*step)++;
  if (st_txn_is_write(txn) != 1 || st_txn_store(txn) == NULL) return -6;
  return 0;
}

/* st_txn_snapshot: two reads with no commit between them see the same
 * snapshot; a commit (even a failed job's does not) moves it. upcall.c
 * skips its identity re-check only when the snapshot is the same. */
TEST(snapshot_ids) {
  st_txn *a, *b;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(put1(st, "s1", "1"), 0);
  CHECK_INT(st_read_begin(st, &a), 0);
  CHECK_INT(st_read_begin(st, &b), 0);
  uint64_t s1 = st_txn_snapshot(a);
  CHECK(s1 != 0);
  CHECK(st_txn_snapshot(b) == s1);
  st_txn_end(b);
  kv_job fail = {{"s2"}, {"2"}, ST_EINVAL};
  CHECK_INT(st_write_sync(st, kv_job_fn, &fail), ST_EINVAL);
  CHECK_INT(st_read_begin(st, &b), 0);
  CHECK(st_txn_snapshot(b) == s1); /* the failed job committed nothing */
  st_txn_end(b);
  CHECK_INT(put1(st, "s3", "3"), 0);
  CHECK_INT(st_read_begin(st, &b), 0);
  CHECK(st_txn_snapshot(b) != s1);
  CHECK(st_txn_snapshot(a) == s1); /* an open snapshot keeps its id */
  st_txn_end(b);
  st_txn_end(a);
  st_close(st);
}

/* Read transactions are reused (reset, then renewed): a reused one must
 * see every write committed before it began, never the snapshot of its
 * previous life; more open at once than the pool keeps all work. */
/* ST_APPEND: ascending keys are appended; a key that does not sort last is
 * put as usual; with ST_NOOVERWRITE an existing key is ST_EEXIST (the last
 * one and one in the middle alike) and the transaction goes on. */
static int append_fn(st_txn *txn, void *arg) {
  int *out = arg;
  char k[16];
  int rc;
  for (int i = 10; i < 60; i++) {
    snprintf(k, sizeof k, "a%02d", i);
    if ((rc = st_put(txn, ST_DB_TENANTS, k, 3, k, 3, ST_NOOVERWRITE | ST_APPEND)) < 0) return rc;
  }
  out[0] = st_put(txn, ST_DB_TENANTS, "a05", 3, "mid", 3, ST_NOOVERWRITE | ST_APPEND); /* before the first */
  out[1] = st_put(txn, ST_DB_TENANTS, "a59", 3, "dup", 3, ST_NOOVERWRITE | ST_APPEND); /* the last, again */
  out[2] = st_put(txn, ST_DB_TENANTS, "a30", 3, "dup", 3, ST_NOOVERWRITE | ST_APPEND); /* in the middle, again */
  out[3] = st_put(txn, ST_DB_TENANTS, "a30", 3, "new", 3, ST_APPEND);                  /* replaced */
  out[4] = st_put(txn, ST_DB_TENANTS, "b00", 3, "end", 3, ST_APPEND);
  return 0;
}

TEST(put_append_is_a_put) {
  char buf[16];
  int out[5];
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_write_sync(st, append_fn, out), 0);
  CHECK_INT(out[0], 0);
  CHECK_INT(out[1], ST_EEXIST);
  CHECK_INT(out[2], ST_EEXIST);
  CHECK_INT(out[3], 0);
  CHECK_INT(out[4], 0);
  CHECK_INT(get1(st, ST_DB_TENANTS, "a05", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "mid");
  CHECK_INT(get1(st, ST_DB_TENANTS, "a59", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "a59");
  CHECK_INT(get1(st, ST_DB_TENANTS, "a30", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "new");
  CHECK_INT(get1(st, ST_DB_TENANTS, "b00", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "end");
  st_close(st);
  tmp_cleanup();
}

/* st_put_reserve: the room is the caller's to fill (appended or put as
 * usual), an existing key under ST_NOOVERWRITE is ST_EEXIST with no room
 * given and the stored value untouched, bad arguments are ST_EINVAL. */
static int reserve_put(st_txn *txn, const char *k, const char *v, unsigned flags) {
  void *p;
  int rc = st_put_reserve(txn, ST_DB_TENANTS, k, strlen(k), strlen(v), flags, &p);
  if (rc == 0) memcpy(p, v, strlen(v));
  else if (p) return -999; /* room given on failure */
  return rc;
}
static int reserve_fn(st_txn *txn, void *arg) {
  int *out = arg;
  void *p = (void *)1;
  out[0] = reserve_put(txn, "r10", "ten", ST_NOOVERWRITE | ST_APPEND);
  out[1] = reserve_put(txn, "r20", "twenty", ST_NOOVERWRITE | ST_APPEND);
  out[2] = reserve_put(txn, "r15", "fifteen", ST_NOOVERWRITE | ST_APPEND); /* not last: a put */
  out[3] = reserve_put(txn, "r20", "dup", ST_NOOVERWRITE | ST_APPEND);     /* the last, again */
  out[4] = reserve_put(txn, "r15", "dup", ST_NOOVERWRITE);                 /* in the middle */
  out[5] = reserve_put(txn, "r10", "TEN!", 0);                             /* replaced */
  out[6] = st_put_reserve(txn, ST_DB_TENANTS, "r30", 3, 0, 0, &p);         /* no room asked */
  out[7] = p == NULL;
  out[8] = st_put_reserve(txn, ST_DB_TENANTS, "r30", 3, 4, 0x80, &p);      /* unknown flag */
  out[9] = st_put_reserve(txn, ST_DB_TENANTS, "r30", 3, 4, 0, NULL);
  return 0;
}

TEST(put_reserve_writes_in_place) {
  char buf[16];
  int out[10];
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_write_sync(st, reserve_fn, out), 0);
  CHECK_INT(out[0], 0);
  CHECK_INT(out[1], 0);
  CHECK_INT(out[2], 0);
  CHECK_INT(out[3], ST_EEXIST);
  CHECK_INT(out[4], ST_EEXIST);
  CHECK_INT(out[5], 0);
  CHECK_INT(out[6], ST_EINVAL);
  CHECK_INT(out[7], 1);
  CHECK_INT(out[8], ST_EINVAL);
  CHECK_INT(out[9], ST_EINVAL);
  CHECK_INT(get1(st, ST_DB_TENANTS, "r10", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "TEN!");
  CHECK_INT(get1(st, ST_DB_TENANTS, "r15", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "fifteen");
  CHECK_INT(get1(st, ST_DB_TENANTS, "r20", 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "twenty");
  CHECK_INT(get1(st, ST_DB_TENANTS, "r30", 3, buf, sizeof buf), ST_ENOTFOUND);
  st_close(st);
  tmp_cleanup();
}

/* writer_nice > 0: the writer is a background thread — its nice value
 * raised and SCHED_BATCH (it never preempts a loop when a commit wakes
 * it). Read back from /proc/self/task/<tid>/stat (fields 19 and 41). */
static int writer_sched(const char *name, long *nice, long *policy) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *de;
  int found = 0;
  while (d && !found && (de = readdir(d))) {
    char path[300], comm[64] = "", stat[1024];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    if (strcmp(comm, name)) continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
    if (!(f = fopen(path, "r"))) continue;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    char *p = strrchr(stat, ')'); /* fields from 3 on follow the comm's ')' */
    for (int field = 3; p && *p; field++) {
      p = strchr(p + 1, ' ');
      if (!p) break;
      if (field == 19) *nice = strtol(p + 1, NULL, 10);
      if (field == 41) {
        *policy = strtol(p + 1, NULL, 10);
        found = 1;
        break;
      }
    }
  }
  if (d) closedir(d);
  return found;
}

TEST(background_writer_is_batch) {
  tmp_setup();
  long nice0 = getpriority(PRIO_PROCESS, 0), nice = -100, policy = -1;
  st_options o = opts_default();
  o.writer_nice = 3;
  st_store *st = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(put1(st, "k", "v"), 0); /* the writer has started and run a job */
  CHECK(writer_sched("mcpgate-writer", &nice, &policy));
  CHECK_INT((int)policy, SCHED_BATCH);
  CHECK_INT((int)nice, (int)(nice0 + 3 > 19 ? 19 : nice0 + 3));
  st_close(st);
  /* writer_nice 0: as the process */
  o.writer_nice = 0;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(put1(st, "k", "v"), 0);
  CHECK(writer_sched("mcpgate-writer", &nice, &policy));
  CHECK_INT((int)policy, SCHED_OTHER);
  CHECK_INT((int)nice, (int)nice0);
  st_close(st);
  tmp_cleanup();
}

TEST(read_txn_reuse_sees_latest) {
  char buf[16], v[16];
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  for (int i = 0; i < 50; i++) {
    snprintf(v, sizeof v, "v%d", i);
    CHECK_INT(put1(st, "k", v), 0);
    CHECK_INT(get1(st, ST_DB_TENANTS, "k", 1, buf, sizeof buf), 0);
    CHECK_STR(buf, v);
  }
  st_txn *many[40];
  for (int i = 0; i < 40; i++) CHECK_INT(st_read_begin(st, &many[i]), 0);
  for (int i = 0; i < 40; i++) st_txn_end(many[i]);
  CHECK_INT(put1(st, "k", "last"), 0);
  for (int i = 0; i < 40; i++) {
    CHECK_INT(st_read_begin(st, &many[i]), 0);
    st_val got;
    CHECK_INT(st_get(many[i], ST_DB_TENANTS, "k", 1, &got), 0);
    CHECK(got.len == 4 && memcmp(got.data, "last", 4) == 0);
  }
  for (int i = 0; i < 40; i++) st_txn_end(many[i]);
  st_close(st); /* closes the pooled ones (ASan: no leak) */
  tmp_cleanup();
}

TEST(get_put_del) {
  char buf[16];
  int step = 0;
  st_txn *t;
  st_val v;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_write_sync(st, crud_fn, &step), 0);
  CHECK_INT(step, 4);
  CHECK_INT(get1(st, ST_DB_TENANTS, "a", 1, buf, sizeof buf), 0);
  CHECK_STR(buf, "1");
  CHECK_INT(get1(st, ST_DB_TENANTS, "zz", 2, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_txn_is_write(t), 0);
  CHECK_INT(st_put(t, ST_DB_TENANTS, "c", 1, "x", 1, 0), ST_EINVAL); /* read txn */
  CHECK_INT(st_del(t, ST_DB_TENANTS, "a", 1), ST_EINVAL);
  CHECK_INT(st_emit(t, 1, NULL), ST_EINVAL);
  CHECK_INT(st_txn_after_commit(t, (void (*)(void *))free, NULL, NULL), ST_EINVAL);
  CHECK_INT(st_get(t, ST_DB_TENANTS, "a", 1, &v), 0);
  st_txn_end(t);
  st_close(st);
  tmp_cleanup();
}

static int cursor_fill_fn(st_txn *txn, void *arg) {
  static const char *keys[] = {"a/1", "a/2", "a/3", "ab", "b/1", "b/2", "c"};
  (void)arg;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    int rc = st_put(txn, ST_DB_TENANTS, keys[i], strlen(keys[i]), keys[i], strlen(keys[i]), 0);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Collects a scan as "k1,k2,..." */
static int scan(st_txn *t, const char *prefix, const char *from, char *out, size_t cap) {
  st_cursor *c;
  st_val k, v;
  int rc = st_cursor_open(t, ST_DB_TENANTS, &c), n = 0;
  out[0] = 0;
  if (rc < 0) return rc;
  if (prefix && (rc = st_cursor_seek(c, prefix, strlen(prefix), from, from ? strlen(from) : 0)) < 0) {
    st_cursor_close(c);
    return rc;
  }
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    size_t len = strlen(out);
    if (k.len != v.len || memcmp(k.data, v.data, k.len) != 0) { rc = -1; break; }
    snprintf(out + len, cap - len, "%s%.*s", n++ ? "," : "", (int)k.len, (const char *)k.data);
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? n : rc;
}

/* The same, backwards (st_cursor_prev) */
static int scan_back(st_txn *t, const char *prefix, char *out, size_t cap) {
  st_cursor *c;
  st_val k;
  int rc = st_cursor_open(t, ST_DB_TENANTS, &c), n = 0;
  out[0] = 0;
  if (rc < 0) return rc;
  if (prefix) st_cursor_seek(c, prefix, strlen(prefix), NULL, 0);
  while ((rc = st_cursor_prev(c, &k, NULL)) == 0) {
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%.*s", n++ ? "," : "", (int)k.len, (const char *)k.data);
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? n : rc;
}

/* Deletes during a scan of the same db inside a job. */
static int cursor_del_fn(st_txn *txn, void *arg) {
  st_cursor *c;
  st_val k;
  int rc, *deleted = arg;
  *deleted = 0;
  if ((rc = st_cursor_open(txn, ST_DB_TENANTS, &c)) < 0) return rc;
  if ((rc = st_cursor_seek(c, "b/", 2, NULL, 0)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    char key[8];
    memcpy(key, k.data, k.len);
    if ((rc = st_del(txn, ST_DB_TENANTS, key, k.len)) < 0) break;
    (*deleted)++;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

TEST(cursor_prefix_scan) {
  char out[256];
  st_txn *t;
  st_cursor *c;
  int deleted = 0;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_write_sync(st, cursor_fill_fn, NULL), 0);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(scan(t, "a/", NULL, out, sizeof out), 3);
  CHECK_STR(out, "a/1,a/2,a/3");
  CHECK_INT(scan(t, "a/", "a/2", out, sizeof out), 2);
  CHECK_STR(out, "a/2,a/3");
  CHECK_INT(scan(t, "b/", "0", out, sizeof out), 2); /* from before the range */
  CHECK_STR(out, "b/1,b/2");
  CHECK_INT(scan(t, "b/", "zz", out, sizeof out), 0); /* from after the range */
  CHECK_INT(scan(t, "a", NULL, out, sizeof out), 4);
  CHECK_STR(out, "a/1,a/2,a/3,ab");
  CHECK_INT(scan(t, "x", NULL, out, sizeof out), 0);
  CHECK_INT(scan(t, NULL, NULL, out, sizeof out), 7); /* no seek: whole db */
  CHECK_INT(scan(t, "", NULL, out, sizeof out), 7);
  /* backwards: from the last key of the range (one in the middle of the
   * db, the db's last, none) */
  CHECK_INT(scan_back(t, "a/", out, sizeof out), 3);
  CHECK_STR(out, "a/3,a/2,a/1");
  CHECK_INT(scan_back(t, "a", out, sizeof out), 4);
  CHECK_STR(out, "ab,a/3,a/2,a/1");
  CHECK_INT(scan_back(t, "b/", out, sizeof out), 2);
  CHECK_STR(out, "b/2,b/1");
  CHECK_INT(scan_back(t, "c", out, sizeof out), 1);
  CHECK_STR(out, "c");
  CHECK_INT(scan_back(t, "bb", out, sizeof out), 0);
  CHECK_INT(scan_back(t, "x", out, sizeof out), 0);
  CHECK_INT(scan_back(t, NULL, out, sizeof out), 7);
  CHECK_STR(out, "c,b/2,b/1,ab,a/3,a/2,a/1");
  CHECK_INT(st_cursor_open(t, ST_DB_TENANTS, &c), 0);
  CHECK_INT(st_cursor_seek(c, "\xff", 1, NULL, 0), ST_EINVAL); /* hashed domain */
  /* c deliberately left open: st_txn_end must close and free it. */
  st_txn_end(t);
  CHECK_INT(st_write_sync(st, cursor_del_fn, &deleted), 0);
  CHECK_INT(deleted, 2);
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(scan(t, NULL, NULL, out, sizeof out), 5);
  CHECK_STR(out, "a/1,a/2,a/3,ab,c");
  st_txn_end(t);
  st_close(st);
  tmp_cleanup();
}

/* ---- long keys ---------------------------------------------------------- */

typedef struct longkey_arg {
  char k600a[600], k600b[600], k511[511], kff[3];
} longkey_arg;
static int longkey_fn(st_txn *txn, void *arg) {
  longkey_arg *a = arg;
  int rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, a->k600a, 600, "A", 1, 0)) < 0) return rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, a->k600b, 600, "B", 1, 0)) < 0) return rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, a->k511, 511, "C", 1, 0)) < 0) return rc;
  if ((rc = st_put(txn, ST_DB_TOKENS, a->kff, 3, "D", 1, 0)) < 0) return rc;
  return 0;
}
static int longkey_del_fn(st_txn *txn, void *arg) {
  longkey_arg *a = arg;
  return st_del(txn, ST_DB_TOKENS, a->k600a, 600);
}

TEST(long_keys_hashed) {
  static longkey_arg a;
  char buf[8];
  st_txn *t;
  st_cursor *c;
  st_val k;
  int hashed = 0, raw511 = 0, n = 0, rc;
  tmp_setup();
  memset(a.k600a, 'x', 600);
  memset(a.k600b, 'x', 600);
  a.k600b[599] = 'y'; /* same first 511 bytes: must still be distinct */
  memset(a.k511, 'z', 511);
  memcpy(a.kff, "\xff\x01\x02", 3);
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_max_key(st), 511);
  CHECK_INT(st_write_sync(st, longkey_fn, &a), 0);
  CHECK_INT(get1(st, ST_DB_TOKENS, a.k600a, 600, buf, sizeof buf), 0);
  CHECK_STR(buf, "A");
  CHECK_INT(get1(st, ST_DB_TOKENS, a.k600b, 600, buf, sizeof buf), 0);
  CHECK_STR(buf, "B");
  CHECK_INT(get1(st, ST_DB_TOKENS, a.k511, 511, buf, sizeof buf), 0);
  CHECK_STR(buf, "C");
  CHECK_INT(get1(st, ST_DB_TOKENS, a.kff, 3, buf, sizeof buf), 0);
  CHECK_STR(buf, "D");
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_cursor_open(t, ST_DB_TOKENS, &c), 0);
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    n++;
    if (k.len == 33 && ((const uint8_t *)k.data)[0] == 0xff) hashed++;
    if (k.len == 511) raw511++;
  }
  st_cursor_close(c);
  st_txn_end(t);
  CHECK_INT(rc, ST_ENOTFOUND);
  CHECK_INT(n, 4);
  CHECK_INT(hashed, 3); /* both 600-byte keys and the 0xFF-led short one */
  CHECK_INT(raw511, 1);
  CHECK_INT(st_write_sync(st, longkey_del_fn, &a), 0);
  CHECK_INT(get1(st, ST_DB_TOKENS, a.k600a, 600, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(get1(st, ST_DB_TOKENS, a.k600b, 600, buf, sizeof buf), 0);
  st_close(st);
  tmp_cleanup();
}

/* ---- group commit -------------------------------------------------------- */

typedef struct gate {
  uv_sem_t started, release;
} gate;
static int gate_job_fn(st_txn *txn, void *arg) {
  gate *g = arg;
  uv_sem_post(&g->started);
  uv_sem_wait(&g->release);
  return st_put(txn, ST_DB_TENANTS, "gate", 4, "1", 1, 0);
}

#define GC_N 50
typedef struct gc_ctx {
  st_store *st;
  st_port *port;
  uv_thread_t loop_thread;
  int statuses[GC_N];
  int delivered;
  int wrong_thread;
  int closed;
} gc_ctx;
typedef struct gc_job {
  gc_ctx *ctx;
  int i;
  char key[16];
} gc_job;

static int gc_job_fn(st_txn *txn, void *arg) {
  gc_job *j = arg;
  int rc = st_put(txn, ST_DB_TENANTS, j->key, strlen(j->key), "v", 1, 0);
  if (rc < 0) return rc;
  return j->i == GC_N / 2 ? -1234 : j->i; /* positive values pass through */
}
static void port_closed(void *arg) { ((gc_ctx *)arg)->closed = 1; }
static void gc_done(int status, void *arg) {
  gc_job *j = arg;
  uv_thread_t self = uv_thread_self();
  if (!uv_thread_equal(&self, &j->ctx->loop_thread)) j->ctx->wrong_thread++;
  j->ctx->statuses[j->i] = status;
  if (++j->ctx->delivered == GC_N) st_port_close(j->ctx->port, port_closed, j->ctx);
}

TEST(group_commit_batches_and_isolates_failures) {
  static gc_ctx ctx;
  static gc_job jobs[GC_N];
  uv_loop_t loop;
  gate g;
  st_stats s0, s1;
  tmp_setup();
  memset(&ctx, 0, sizeof ctx);
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(uv_loop_init(&loop), 0);
  ctx.st = st;
  ctx.loop_thread = uv_thread_self();
  CHECK_INT(st_port_open(st, &loop, &ctx.port), 0);
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  st_stats_get(st, &s0);
  /* Hold the writer inside a first job so the next GC_N queue up behind it
   * and are taken as one batch: deterministic batching. */
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started);
  for (int i = 0; i < GC_N; i++) {
    jobs[i].ctx = &ctx;
    jobs[i].i = i;
    snprintf(jobs[i].key, sizeof jobs[i].key, "gc/%02d", i);
    CHECK_INT(st_submit(st, ctx.port, gc_job_fn, gc_done, &jobs[i]), 0);
  }
  CHECK_INT(st_port_pending(ctx.port), GC_N);
  uv_sem_post(&g.release);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(ctx.closed, 1);
  CHECK_INT(ctx.delivered, GC_N);
  CHECK_INT(ctx.wrong_thread, 0);
  for (int i = 0; i < GC_N; i++) {
    CHECK_INT(ctx.statuses[i], i == GC_N / 2 ? -1234 : i);
    CHECK_INT(exists(st, jobs[i].key), i != GC_N / 2);
  }
  CHECK(exists(st, "gate"));
  st_stats_get(st, &s1);
  CHECK_INT(s1.commits - s0.commits, 2); /* the gate alone, then all 50 */
  CHECK_INT(st__test_batch_fallbacks(st), 1); /* the failure made the batch run again with children */
  CHECK_INT(s1.jobs_committed - s0.jobs_committed, GC_N); /* 49 + gate */
  CHECK_INT(s1.jobs_failed - s0.jobs_failed, 1);
  CHECK(s1.batch_jobs_sum - s0.batch_jobs_sum == GC_N + 1);
  CHECK_INT(s1.queue_depth, 0);
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  CHECK_INT(uv_loop_close(&loop), 0);
  st_close(st);
  tmp_cleanup();
}

/* A batch's jobs run in its own txn first; the first failure aborts it and
 * the batch runs again with a child txn per job: the jobs before the
 * failure run twice (the job contract allows it), their post-commit
 * actions of the aborted run are discarded and those of the run that
 * commits run once; the failed job's writes and action never stay. A batch
 * without a failure runs once. */
#define OB_N 6
typedef struct ob_job {
  int i, fail_at;
  atomic_int runs, action_runs, discards, status, done;
  uv_sem_t *all_done;
  atomic_int *ndone;
  int total;
} ob_job;
static void ob_action(void *arg) { atomic_fetch_add(&((ob_job *)arg)->action_runs, 1); }
static void ob_discard(void *arg) { atomic_fetch_add(&((ob_job *)arg)->discards, 1); }
static int ob_job_fn(st_txn *txn, void *arg) {
  ob_job *j = arg;
  char key[32];
  atomic_fetch_add(&j->runs, 1); /* the test's own count of runs */
  snprintf(key, sizeof key, "ob/%d/%d", j->fail_at, j->i);
  int rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), "v", 1, 0);
  if (rc < 0) return rc;
  if ((rc = st_txn_after_commit(txn, ob_action, ob_discard, j)) < 0) return rc;
  return j->i == j->fail_at ? -4321 : 0; /* fails after its write and its action */
}
static void ob_done(int status, void *arg) {
  ob_job *j = arg;
  atomic_store(&j->status, status);
  atomic_store(&j->done, 1);
  if (atomic_fetch_add(j->ndone, 1) + 1 == j->total) uv_sem_post(j->all_done);
}

static void ob_batch(st_store *st, ob_job *jobs, int fail_at) {
  gate g;
  uv_sem_t all;
  atomic_int ndone = 0;
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  uv_sem_init(&all, 0);
  /* the writer held in a first job: the next OB_N are taken as one batch */
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started);
  for (int i = 0; i < OB_N; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].i = i;
    jobs[i].fail_at = fail_at;
    jobs[i].all_done = &all;
    jobs[i].ndone = &ndone;
    jobs[i].total = OB_N;
    CHECK_INT(st_submit(st, NULL, ob_job_fn, ob_done, &jobs[i]), 0);
  }
  uv_sem_post(&g.release);
  uv_sem_wait(&all);
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  uv_sem_destroy(&all);
}

TEST(batch_runs_in_its_txn_then_children_after_a_failure) {
  static ob_job jobs[OB_N];
  st_stats s0, s1;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  int fb0 = st__test_batch_fallbacks(st);
  st_stats_get(st, &s0);
  ob_batch(st, jobs, 3);
  st_stats_get(st, &s1);
  CHECK_INT(st__test_batch_fallbacks(st) - fb0, 1);
  CHECK_INT((int)(s1.commits - s0.commits), 2); /* the gate, then the batch once */
  for (int i = 0; i < OB_N; i++) {
    char key[32];
    snprintf(key, sizeof key, "ob/3/%d", i);
    CHECK_INT(atomic_load(&jobs[i].status), i == 3 ? -4321 : 0);
    CHECK_INT(exists(st, key), i != 3);
    /* before the failure: the batch's own txn, then a child; from it on:
     * a child only once the failure was met (the failed one: twice) */
    CHECK_INT(atomic_load(&jobs[i].runs), i <= 3 ? 2 : 1);
    CHECK_INT(atomic_load(&jobs[i].action_runs), i == 3 ? 0 : 1);
    CHECK_INT(atomic_load(&jobs[i].discards), i < 3 ? 1 : i == 3 ? 2 : 0);
  }
  /* no failure: every job once, in the batch's txn, no fallback */
  fb0 = st__test_batch_fallbacks(st);
  ob_batch(st, jobs, -1);
  CHECK_INT(st__test_batch_fallbacks(st) - fb0, 0);
  for (int i = 0; i < OB_N; i++) {
    char key[32];
    snprintf(key, sizeof key, "ob/-1/%d", i);
    CHECK_INT(atomic_load(&jobs[i].status), 0);
    CHECK(exists(st, key));
    CHECK_INT(atomic_load(&jobs[i].runs), 1);
    CHECK_INT(atomic_load(&jobs[i].action_runs), 1);
    CHECK_INT(atomic_load(&jobs[i].discards), 0);
  }
  /* a failure in the first job: nothing ran before it twice */
  ob_batch(st, jobs, 0);
  for (int i = 0; i < OB_N; i++) {
    CHECK_INT(atomic_load(&jobs[i].status), i == 0 ? -4321 : 0);
    CHECK_INT(atomic_load(&jobs[i].runs), i == 0 ? 2 : 1);
    CHECK_INT(atomic_load(&jobs[i].action_runs), i == 0 ? 0 : 1);
  }
  st_close(st);
  tmp_cleanup();
}

/* ---- hooks and post-commit actions -------------------------------------- */

#define EV_TEST (ST_EVENT_BASE_STORE + 7)
typedef struct hook_state {
  atomic_int seq;
  atomic_int action_ran_at, done_at, discarded, action_runs;
  int fail;       /* the hook returns this if != 0 */
  int in_txn;     /* the hook saw a write txn */
} hook_state;

static void action_run(void *arg) {
  hook_state *h = arg;
  atomic_store(&h->action_ran_at, atomic_fetch_add(&h->seq, 1) + 1);
  atomic_fetch_add(&h->action_runs, 1);
}
static void action_discard(void *arg) { atomic_fetch_add(&((hook_state *)arg)->discarded, 1); }

static int test_hook(st_txn *txn, int kind, const void *event, void *ctx) {
  hook_state *h = ctx;
  const char *user = event;
  char key[32];
  int rc;
  h->in_txn = st_txn_is_write(txn) && kind == EV_TEST;
  snprintf(key, sizeof key, "hooked/%s", user);
  if ((rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), "1", 1, 0)) < 0) return rc;
  if ((rc = st_txn_after_commit(txn, action_run, action_discard, h)) < 0) return rc;
  return h->fail;
}
static int second_hook(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)kind; (void)event; (void)ctx;
  st_val v; /* runs after test_hook: sees its write inside the same txn */
  return st_get(txn, ST_DB_TENANTS, "hooked/u1", 9, &v) == 0 || st_get(txn, ST_DB_TENANTS, "hooked/u2", 9, &v) == 0 ? 0 : -77;
}
static int other_kind_hook(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)txn; (void)kind; (void)event; (void)ctx;
  return -999; /* registered for another kind: must never run */
}

typedef struct hk_loop hk_loop;
typedef struct emit_job {
  const char *user;
  hk_loop *loop; /* for hk_done */
} emit_job;
static int emit_job_fn(st_txn *txn, void *arg) {
  emit_job *e = arg;
  char key[32];
  int rc;
  snprintf(key, sizeof key, "user/%s", e->user);
  if ((rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), "x", 1, 0)) < 0) return rc;
  return st_emit(txn, EV_TEST, e->user);
}

struct hk_loop {
  hook_state *h;
  st_port *port;
  int status;
};
static void hk_done(int status, void *arg) {
  hk_loop *l = ((emit_job *)arg)->loop;
  l->status = status;
  atomic_store(&l->h->done_at, atomic_fetch_add(&l->h->seq, 1) + 1);
  st_port_close(l->port, NULL, NULL);
}

TEST(hooks_atomic_with_job_and_actions_before_done) {
  static hook_state h;
  uv_loop_t loop;
  hk_loop l = {&h, NULL, 1};
  emit_job e1 = {"u1", &l}, e2 = {"u2", NULL};
  tmp_setup();
  memset(&h, 0, sizeof h);
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_hook_add(st, EV_TEST, test_hook, &h), 0);
  CHECK_INT(st_hook_add(st, EV_TEST, second_hook, &h), 0);
  CHECK_INT(st_hook_add(st, EV_TEST + 1, other_kind_hook, &h), 0);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &l.port), 0);
  CHECK_INT(st_submit(st, l.port, emit_job_fn, hk_done, &e1), 0);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(uv_loop_close(&loop), 0);
  CHECK_INT(l.status, 0);
  CHECK(h.in_txn);
  CHECK(exists(st, "user/u1"));
  CHECK(exists(st, "hooked/u1"));
  CHECK_INT(atomic_load(&h.action_runs), 1);
  CHECK_INT(atomic_load(&h.discarded), 0);
  CHECK(atomic_load(&h.action_ran_at) > 0);
  CHECK(atomic_load(&h.action_ran_at) < atomic_load(&h.done_at)); /* action before done */

  /* A failing hook aborts the job: neither its write nor the hook's stay,
   * and its post-commit action is discarded, never run. */
  h.fail = -4242;
  CHECK_INT(st_write_sync(st, emit_job_fn, &e2), -4242);
  CHECK(!exists(st, "user/u2"));
  CHECK(!exists(st, "hooked/u2"));
  CHECK_INT(atomic_load(&h.action_runs), 1);
  CHECK_INT(atomic_load(&h.discarded), 1);
  /* Registration after serving started is refused. */
  CHECK_INT(st_hook_add(st, EV_TEST, test_hook, &h), ST_EINVAL);
  st_close(st);
  tmp_cleanup();
}

/* ---- the port's gate ------------------------------------------------------ */

typedef struct gate_ctx {
  st_port *port;
  atomic_int allow;
  int calls, seen_state, reruns, stamped, order[4], ndone, close_after;
  uint64_t next_mark;
} gate_ctx;
typedef struct gate_job {
  gate_ctx *g;
  int i;
} gate_job;
static void test_stamp(void *arg, uint64_t state[2]) {
  gate_ctx *g = arg;
  g->stamped++;
  state[0] = ++g->next_mark; /* in arrival order */
}
static bool test_gate(void *arg, uint64_t state[2]) {
  gate_ctx *g = arg;
  g->calls++;
  if (state[0]) g->seen_state++; /* stamped on arrival, kept across runs */
  if (state[1]) g->reruns++;
  state[1] = 1;
  return atomic_load(&g->allow) != 0;
}
static int gate_put(st_txn *txn, void *arg) {
  gate_job *j = arg;
  char key[16];
  snprintf(key, sizeof key, "gate/%d", j->i);
  return st_put(txn, ST_DB_TENANTS, key, strlen(key), "v", 1, 0);
}
static void gate_done(int status, void *arg) {
  gate_job *j = arg;
  CHECK_INT(status, 0);
  j->g->order[j->g->ndone++] = j->i;
  if (j->g->ndone == j->g->close_after) st_port_close(j->g->port, NULL, NULL);
}
static void gate_kicker(void *arg) {
  gate_ctx *g = arg;
  atomic_store(&g->allow, 1);
  st_port_kick(g->port); /* from another thread, as another loop does */
}

TEST(port_gate_parks_dones_in_order_until_kicked) {
  static gate_ctx g;
  gate_job jobs[3] = {{&g, 0}, {&g, 1}, {&g, 2}}, late = {&g, 3};
  uv_loop_t loop;
  tmp_setup();
  memset(&g, 0, sizeof g);
  g.close_after = 3;
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &g.port), 0);
  st_port_gate(g.port, test_gate, test_stamp, &g);
  for (int i = 0; i < 3; i++) CHECK_INT(st_submit(st, g.port, gate_put, gate_done, &jobs[i]), 0);
  /* the writer commits and delivers; the gate says no: nothing is done */
  while (g.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK_INT(g.ndone, 0);
  CHECK_INT((int)st_port_pending(g.port), 3); /* parked dones still count as pending */
  CHECK(exists(st, "gate/0")); /* the write of the job held at the gate committed */
  /* the other two arrive behind it (maybe in a later batch): still held */
  while (g.stamped < 3) uv_run(&loop, UV_RUN_ONCE);
  CHECK_INT(g.ndone, 0);
  CHECK(exists(st, "gate/2"));
  int calls_parked = g.calls;
  /* another thread opens the gate and kicks: all three, in order */
  uv_thread_t t;
  CHECK_INT(uv_thread_create(&t, gate_kicker, &g), 0);
  uv_thread_join(&t);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(g.ndone, 3);
  CHECK_INT(g.order[0], 0);
  CHECK_INT(g.order[1], 1);
  CHECK_INT(g.order[2], 2);
  CHECK(g.calls > calls_parked);
  CHECK_INT(g.stamped, 3); /* every job stamped once, as it arrived, parked behind the first or not */
  CHECK_INT(g.seen_state, g.calls);
  CHECK(g.reruns >= 1); /* the parked job's gate state survived to its next run */
  CHECK_INT(uv_loop_close(&loop), 0);

  /* closing a port with a parked done: it is never called, nothing leaks */
  memset(&g, 0, sizeof g);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &g.port), 0);
  st_port_gate(g.port, test_gate, test_stamp, &g);
  CHECK_INT(st_submit(st, g.port, gate_put, gate_done, &late), 0);
  while (g.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  st_port_close(g.port, NULL, NULL);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(g.ndone, 0);
  CHECK_INT(uv_loop_close(&loop), 0);
  st_close(st);
  tmp_cleanup();
}

/* ---- commit failure: re-run each job alone ------------------------------- */

typedef struct rerun_ctx {
  st_store *st;
  atomic_int runs[3], discards[3], actions[3];
  int fail_next; /* commits the gate's done makes fail */
} rerun_ctx;
typedef struct rerun_job {
  rerun_ctx *c;
  int i;
} rerun_job;
static void rr_action(void *arg) {
  rerun_job *j = arg;
  atomic_fetch_add(&j->c->actions[j->i], 1);
}
static void rr_discard(void *arg) {
  rerun_job *j = arg;
  atomic_fetch_add(&j->c->discards[j->i], 1);
}
static int rerun_fn(st_txn *txn, void *arg) {
  rerun_job *j = arg;
  char key[16];
  atomic_fetch_add(&j->c->runs[j->i], 1);
  snprintf(key, sizeof key, "rr/%d", j->i);
  int rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), "v", 1, 0);
  if (rc < 0) return rc;
  return st_txn_after_commit(txn, rr_action, rr_discard, j);
}
/* Runs on the writer thread right after the gate's batch committed and
 * before the next batch is taken. */
static void gate_done_arm(int status, void *arg) {
  rerun_ctx *c = arg;
  (void)status;
  st__test_fail_commits(c->st, c->fail_next);
}
typedef struct sync_submit {
  st_store *st;
  rerun_job *job;
  int status;
} sync_submit;
static void sync_submit_thread(void *arg) {
  sync_submit *s = arg;
  s->status = st_write_sync(s->st, rerun_fn, s->job);
}

typedef struct gate2 {
  gate g;
  rerun_ctx *c;
} gate2;
static int gate2_fn(st_txn *txn, void *arg) { return gate_job_fn(txn, &((gate2 *)arg)->g); }
static void gate2_done(int status, void *arg) { gate_done_arm(status, ((gate2 *)arg)->c); }

static void rerun_case(int fail_next, int expect[3], int *ok) {
  static rerun_ctx c;
  rerun_job jobs[3];
  sync_submit subs[3];
  uv_thread_t th[3];
  gate2 g;
  *ok = 0;
  tmp_setup();
  memset(&c, 0, sizeof c);
  c.st = open_default();
  if (!c.st) return;
  c.fail_next = fail_next;
  g.c = &c;
  uv_sem_init(&g.g.started, 0);
  uv_sem_init(&g.g.release, 0);
  if (st_submit(c.st, NULL, gate2_fn, gate2_done, &g) < 0) return;
  uv_sem_wait(&g.g.started);
  for (int i = 0; i < 3; i++) {
    jobs[i] = (rerun_job){&c, i};
    subs[i] = (sync_submit){c.st, &jobs[i], 1};
    uv_thread_create(&th[i], sync_submit_thread, &subs[i]);
  }
  /* Wait until all three are queued behind the gate. */
  for (;;) {
    st_stats s;
    st_stats_get(c.st, &s);
    if (s.queue_depth == 3) break;
    uv_sleep(1);
  }
  uv_sem_post(&g.g.release);
  for (int i = 0; i < 3; i++) uv_thread_join(&th[i]);
  for (int i = 0; i < 3; i++) expect[i] = subs[i].status;
  /* Every job: run twice (batch, then alone), discarded once, run its
   * action exactly once iff it finally committed. */
  int good = 1;
  for (int i = 0; i < 3; i++) {
    char key[16];
    snprintf(key, sizeof key, "rr/%d", i);
    int committed = subs[i].status == 0;
    good &= atomic_load(&c.runs[i]) == 2;
    good &= atomic_load(&c.discards[i]) == 1 + !committed;
    good &= atomic_load(&c.actions[i]) == committed;
    good &= exists(c.st, key) == committed;
  }
  uv_sem_destroy(&g.g.started);
  uv_sem_destroy(&g.g.release);
  st_close(c.st);
  tmp_cleanup();
  *ok = good;
}

TEST(batch_commit_failure_reruns_each_job_alone) {
  int status[3], ok;
  /* One failed commit: the batch of 3 fails, each re-run alone succeeds. */
  rerun_case(1, status, &ok);
  CHECK_INT(status[0], 0);
  CHECK_INT(status[1], 0);
  CHECK_INT(status[2], 0);
  CHECK(ok);
  /* Two: the batch and the first lone re-run fail; that job gets the honest
   * commit error, the others still commit. Order among the three threads'
   * submissions is not fixed, so count. */
  rerun_case(2, status, &ok);
  int failed = 0, okc = 0;
  for (int i = 0; i < 3; i++) {
    failed += status[i] == ST_EMAPFULL;
    okc += status[i] == 0;
  }
  CHECK_INT(failed, 1);
  CHECK_INT(okc, 2);
  CHECK(ok);
}

/* ---- MAP_FULL ------------------------------------------------------------ */

typedef struct big_job {
  int i;
  size_t size;
  int with_small; /* also write a small key first: must vanish with the job */
  int status;     /* filled by mf_batch_done */
} big_job;
static int big_job_fn(st_txn *txn, void *arg) {
  big_job *b = arg;
  char key[32];
  static char buf[64 * 1024];
  int rc;
  memset(buf, 'b', sizeof buf);
  if (b->with_small) {
    snprintf(key, sizeof key, "small/%d", b->i);
    if ((rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), "s", 1, 0)) < 0) return rc;
  }
  snprintf(key, sizeof key, "big/%d", b->i);
  rc = st_put(txn, ST_DB_TENANTS, key, strlen(key), buf, b->size, 0);
  (void)rc;
  return 0; /* ignores the error on purpose: the poison must still abort */
}

TEST(map_full_fails_only_that_job) {
  st_options o;
  st_store *st = NULL;
  big_job b;
  int i, rc = 0;
  char buf[8];
  tmp_setup();
  o = opts_default();
  o.map_size = 256 * 1024;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(st_ready(st), 0);
  for (i = 0; i < 1000; i++) {
    b = (big_job){i, 16 * 1024, 1, 0};
    if ((rc = st_write_sync(st, big_job_fn, &b)) < 0) break;
  }
  CHECK_INT(rc, ST_EMAPFULL);
  CHECK(i > 0);
  char key[32];
  snprintf(key, sizeof key, "small/%d", i);
  CHECK(!exists(st, key)); /* nothing half-written */
  CHECK_INT(st_ready(st), ST_EMAPFULL);
  CHECK(strstr(st_ready_reason(st), "map full") != NULL);
  for (int j = 0; j < i; j++) { /* earlier data intact */
    snprintf(key, sizeof key, "big/%d", j);
    CHECK_INT(get1(st, ST_DB_TENANTS, key, strlen(key), buf, sizeof buf), 0);
    CHECK_STR(buf, "bbbbbbb");
  }
  /* Still usable: a small write commits, and readiness recovers. */
  CHECK_INT(put1(st, "after", "full"), 0);
  CHECK(exists(st, "after"));
  CHECK_INT(st_ready(st), 0);
  CHECK_STR(st_ready_reason(st), "ok");
  st_stats s;
  st_stats_get(st, &s);
  CHECK(s.map_used > 0 && s.map_used <= s.map_size);
  CHECK_INT(s.map_size, 256 * 1024);
  st_close(st);
  tmp_cleanup();
}

/* ---- the reserve ----------------------------------------------------------
 * With st_options.reserve the end of the map is kept for jobs that take
 * access away: once ordinary writes fill the rest, every ordinary write is
 * refused (not only large ones), while a job marked with
 * st_txn_use_reserve — or emitting a deactivation — still commits, a job
 * that only deletes is never refused, and nothing is lost or corrupt. */
typedef struct rs_job {
  const char *k;
  size_t vlen;
  int use_reserve;      /* st_txn_use_reserve */
  int emit;             /* st_emit this event kind (0: none) */
  const char *del[4];   /* keys deleted first */
} rs_job;
static int rs_job_fn(st_txn *txn, void *arg) {
  rs_job *j = arg;
  static char buf[8 * 1024];
  int rc;
  memset(buf, 'r', sizeof buf);
  for (int i = 0; i < 4 && j->del[i]; i++)
    if ((rc = st_del(txn, ST_DB_TENANTS, j->del[i], strlen(j->del[i]))) < 0) return rc;
  if (j->use_reserve) st_txn_use_reserve(txn);
  if (j->emit) {
    st_dir_event ev = {"acme", "u1", "u1@acme", NULL, "patch", NULL, 0, NULL, 0};
    if ((rc = st_emit(txn, j->emit, &ev)) < 0) return rc;
  }
  if (j->k && (rc = st_put(txn, ST_DB_TENANTS, j->k, strlen(j->k), buf, j->vlen, 0)) < 0) return rc;
  return 0;
}
static int rs1(st_store *st, rs_job j) { return st_write_sync(st, rs_job_fn, &j); }
/* a module's purge that queues something as it deletes (vault: upstream revocations) */
static int rs_purge(st_txn *txn, const char *tenant, int limit) {
  int rc = st_put(txn, ST_DB_TENANTS, "purged", 6, tenant, strlen(tenant), 0);
  return rc < 0 ? rc : 0;
}
static int rs_purge_job(st_txn *txn, void *arg) {
  int n = st_purge_tenant_step(txn, "gone", 16);
  return n < 0 ? n : 0;
}

TEST(reserve_keeps_room_for_taking_access_away) {
  st_options o;
  st_store *st = NULL;
  char key[32];
  int i, rc = 0;
  tmp_setup();
  o = opts_default();
  o.map_size = 512 * 1024;
  o.reserve = 1024 * 1024; /* more than a quarter: lowered to 128 KiB */
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(st_purge_add(st, "rs", rs_purge, NULL), 0);
  st_stats s;
  st_stats_get(st, &s);
  CHECK_INT(s.map_reserve, 128 * 1024);
  CHECK(s.map_live > 0 && s.map_live < 64 * 1024);
  /* ordinary writes until one is refused */
  for (i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "fill/%03d", i);
    if ((rc = rs1(st, (rs_job){key, 6000, 0, 0, {0}})) < 0) break;
  }
  CHECK_INT(rc, ST_EMAPFULL);
  CHECK(i > 10);
  CHECK(!exists(st, key)); /* the refused one wrote nothing */
  /* then smaller ones, until the store is full for any size */
  for (int n = 0; n < 1000 && rc == 0; n++) {
    snprintf(key, sizeof key, "small/%03d", n);
    rc = rs1(st, (rs_job){key, 100, 0, 0, {0}});
  }
  for (int n = 0; n < 1000; n++) {
    snprintf(key, sizeof key, "small/%03d", n);
    if ((rc = rs1(st, (rs_job){key, 100, 0, 0, {0}})) < 0) break;
  }
  CHECK_INT(rc, ST_EMAPFULL);
  /* full: even a one-byte write is refused, and readiness says so */
  CHECK_INT(rs1(st, (rs_job){"tiny", 1, 0, 0, {0}}), ST_EMAPFULL);
  CHECK_INT(rs1(st, (rs_job){"tiny", 1, 0, 0, {0}}), ST_EMAPFULL);
  CHECK(!exists(st, "tiny"));
  CHECK_INT(st_ready(st), ST_EMAPFULL);
  st_stats_get(st, &s);
  CHECK(s.map_live <= s.map_size - s.map_reserve);
  CHECK(s.map_live + s.map_reserve / 8 + 8 * 1024 >= s.map_size - s.map_reserve);
  /* a job that takes access away uses the reserve: marked, or by its event */
  CHECK_INT(rs1(st, (rs_job){"revoked/1", 6000, 1, 0, {0}}), 0);
  CHECK_INT(rs1(st, (rs_job){"revoked/2", 200, 0, ST_DIR_EV_USER_DEACTIVATED, {0}}), 0);
  CHECK_INT(rs1(st, (rs_job){"revoked/3", 200, 0, ST_EVENT_TOKEN_REVOKED, {0}}), 0);
  CHECK(exists(st, "revoked/1") && exists(st, "revoked/2") && exists(st, "revoked/3"));
  /* a deleted tenant's purge step too, though its module writes */
  CHECK_INT(st_write_sync(st, rs_purge_job, NULL), 0);
  CHECK(exists(st, "purged"));
  /* an event that gives access is no pass */
  CHECK_INT(rs1(st, (rs_job){"created", 200, 0, ST_DIR_EV_USER_CREATED, {0}}), ST_EMAPFULL);
  /* deleting alone is never refused; a write that shrinks the store is
   * allowed; once below the mark again ordinary writes commit */
  CHECK_INT(rs1(st, (rs_job){NULL, 0, 0, 0, {"fill/000", "fill/001"}}), 0);
  CHECK_INT(rs1(st, (rs_job){"swap", 10, 0, 0, {"fill/002", "fill/003", "fill/004", "fill/005"}}), 0);
  CHECK(exists(st, "swap") && !exists(st, "fill/005"));
  for (int n = 6; n < 14; n++) {
    snprintf(key, sizeof key, "fill/%03d", n);
    CHECK_INT(rs1(st, (rs_job){NULL, 0, 0, 0, {key}}), 0);
  }
  CHECK_INT(rs1(st, (rs_job){"after", 6000, 0, 0, {0}}), 0);
  CHECK_INT(st_ready(st), 0);
  /* nothing lost, nothing corrupt */
  snprintf(key, sizeof key, "fill/%03d", i - 1);
  CHECK(exists(st, key));
  CHECK_INT(st_check(st, NULL, NULL), 0);
  st_close(st);
  /* a store without a reserve takes ordinary writes to the map's end */
  o.reserve = 0;
  CHECK_INT(st_open(&st, &o), 0);
  st_stats_get(st, &s);
  CHECK_INT(s.map_reserve, 0);
  CHECK_INT(rs1(st, (rs_job){"tiny", 1, 0, 0, {0}}), 0);
  st_close(st);
  tmp_cleanup();
}

/* Several big jobs in one batch on an almost full map: whatever each job's
 * status, its writes are present iff it succeeded. */
static void mf_batch_done(int status, void *arg) {
  ((big_job *)arg)->status = status;
}
TEST(map_full_in_batch_is_honest) {
  st_options o;
  st_store *st = NULL;
  static big_job jobs[6];
  gate g;
  tmp_setup();
  o = opts_default();
  o.map_size = 256 * 1024;
  CHECK_INT(st_open(&st, &o), 0);
  for (int i = 0; i < 5; i++) { /* fill most of the map */
    big_job b = {100 + i, 16 * 1024, 0, 0};
    CHECK_INT(st_write_sync(st, big_job_fn, &b), 0);
  }
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started);
  for (int i = 0; i < 6; i++) {
    jobs[i] = (big_job){i, 24 * 1024, 0, 1};
    CHECK_INT(st_submit(st, NULL, big_job_fn, mf_batch_done, &jobs[i]), 0);
  }
  uv_sem_post(&g.release);
  CHECK_INT(put1(st, "fence", "1"), 0); /* FIFO: everything before is delivered */
  int ok = 0, full = 0;
  for (int i = 0; i < 6; i++) {
    char key[32];
    snprintf(key, sizeof key, "big/%d", i);
    if (jobs[i].status == 0) ok++;
    if (jobs[i].status == ST_EMAPFULL) full++;
    CHECK_INT(exists(st, key), jobs[i].status == 0);
  }
  CHECK_INT(ok + full, 6);
  CHECK(full > 0);
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  st_close(st);
  tmp_cleanup();
}

/* ---- ports --------------------------------------------------------------- */

typedef struct pc_ctx {
  int dones;
  int closed;
} pc_ctx;
static void pc_done(int status, void *arg) {
  (void)status;
  ((pc_ctx *)arg)->dones++;
}
static void pc_closed(void *arg) { ((pc_ctx *)arg)->closed++; }
static int noop_fn(st_txn *txn, void *arg) {
  (void)arg;
  return st_put(txn, ST_DB_TENANTS, "noop", 4, "1", 1, 0);
}

TEST(port_close_discards_pending_completions) {
  uv_loop_t loop;
  st_port *port;
  pc_ctx pc = {0, 0};
  gate g;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &port), 0);
  /* Case 1: completions already queued on the port when it closes. */
  for (int i = 0; i < 5; i++) CHECK_INT(st_submit(st, port, noop_fn, pc_done, &pc), 0);
  CHECK_INT(put1(st, "fence", "1"), 0); /* all 5 delivered to the port's queue */
  CHECK_INT(st_port_pending(port), 5);
  /* Case 2: a job still inside the writer when the port closes. */
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  CHECK_INT(st_submit(st, port, gate_job_fn, pc_done, &g), 0);
  uv_sem_wait(&g.started);
  st_port_close(port, pc_closed, &pc);
  CHECK_INT(st_submit(st, port, noop_fn, pc_done, &pc), ST_ECLOSED);
  uv_sem_post(&g.release);
  CHECK_INT(put1(st, "fence2", "1"), 0); /* the gate job committed and was dropped */
  CHECK(exists(st, "gate"));             /* its write still committed */
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(pc.dones, 0);
  CHECK_INT(pc.closed, 1);
  CHECK_INT(uv_loop_close(&loop), 0);
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  st_close(st);
  tmp_cleanup();
}

/* Port close from inside a done callback stops the rest of the sweep. */
typedef struct pc2 {
  st_port *port;
  int dones;
} pc2;
static void pc2_done(int status, void *arg) {
  pc2 *p = arg;
  (void)status;
  if (p->dones++ == 0) st_port_close(p->port, NULL, NULL);
}
TEST(port_close_inside_done) {
  uv_loop_t loop;
  pc2 p = {NULL, 0};
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &p.port), 0);
  for (int i = 0; i < 4; i++) CHECK_INT(st_submit(st, p.port, noop_fn, pc2_done, &p), 0);
  CHECK_INT(put1(st, "fence", "1"), 0); /* all 4 queued: one async sweep */
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(p.dones, 1);
  CHECK_INT(uv_loop_close(&loop), 0);
  st_close(st);
  tmp_cleanup();
}

/* Ports outliving the store and vice versa: st_close first, port after. */
TEST(store_close_before_port_close) {
  uv_loop_t loop;
  st_port *port;
  pc_ctx pc = {0, 0};
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(st_port_open(st, &loop, &port), 0);
  for (int i = 0; i < 3; i++) CHECK_INT(st_submit(st, port, noop_fn, pc_done, &pc), 0);
  st_close(st); /* drains: all three committed and queued on the port */
  CHECK_INT(uv_run(&loop, UV_RUN_NOWAIT), 1); /* the port's handle is still open */
  CHECK_INT(pc.dones, 3);
  st_port_close(port, pc_closed, &pc);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(pc.closed, 1);
  CHECK_INT(uv_loop_close(&loop), 0);
  st = open_default();
  CHECK(st);
  CHECK(exists(st, "noop"));
  st_close(st);
  tmp_cleanup();
}

/* ---- st_write_sync ------------------------------------------------------- */

static int nested_sync_fn(st_txn *txn, void *arg) {
  st_store *st = st_txn_store(txn);
  (void)arg;
  return st_write_sync(st, noop_fn, NULL); /* on the writer: must refuse */
}
static void writer_done(int status, void *arg) {
  /* port == NULL: done runs on the writer thread, after the commit. */
  *(int *)arg = status + 1000;
}
TEST(write_sync_and_writer_thread_done) {
  int seen = 0;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_write_sync(st, nested_sync_fn, NULL), ST_EINVAL);
  CHECK_INT(st_submit(st, NULL, noop_fn, writer_done, &seen), 0);
  CHECK_INT(put1(st, "k", "v"), 0);
  CHECK_INT(seen, 1000);
  CHECK_INT(st_write_sync(NULL, noop_fn, NULL), ST_EINVAL);
  CHECK_INT(st_write_sync(st, NULL, NULL), ST_EINVAL);
  st_close(st);
  tmp_cleanup();
}

/* ---- backup, stats, check ------------------------------------------------ */

/* Keys not starting with 't' or 'u': those are tenant records and
 * incarnation uids, which st_check pairs up (a lone one is a problem). */
TEST(backup_then_open_copy) {
  char dest[160], buf[32];
  st_options o;
  st_store *st, *copy = NULL;
  tmp_setup();
  st = open_default();
  CHECK(st);
  CHECK_INT(put1(st, "rec/acme", "Acme Inc"), 0);
  snprintf(dest, sizeof dest, "%s/backup", g_tmp);
  CHECK_INT(st_backup(st, dest), 0);
  CHECK_INT(st_backup(st, dest), ST_EEXIST); /* not empty any more */
  CHECK_INT(put1(st, "rec/later", "x"), 0);
  st_close(st);
  o = opts_default();
  o.dir = dest;
  CHECK_INT(st_open(&copy, &o), 0);
  CHECK_INT(get1(copy, ST_DB_TENANTS, "rec/acme", 8, buf, sizeof buf), 0);
  CHECK_STR(buf, "Acme Inc");
  CHECK_INT(get1(copy, ST_DB_TENANTS, "rec/later", 9, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(st_check(copy, NULL, NULL), 0);
  st_close(copy);
  tmp_cleanup();
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

/* The store's generation and its record outside the store (store/stamp.c):
 * a backup restored over the store after the store moved on is older than
 * its record; a crash between the generation's commit and the record's
 * write leaves the store ahead, which is fine; another store, or a record
 * that does not parse, is said as such. */
TEST(stamp_tells_a_restored_older_store) {
  char rec[200], dest[160], text[300];
  st_stamp_info si;
  uint64_t gen = 0;
  tmp_setup();
  snprintf(rec, sizeof rec, "%s/store.generation", g_tmp);
  snprintf(dest, sizeof dest, "%s/backup", g_tmp);
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_NO_FILE);
  CHECK_INT((int)si.store_gen, 0);
  CHECK(si.store_id[0] != 0); /* migration 2's */
  CHECK_INT(st_stamp_advance(st, rec, &gen), 0);
  CHECK_INT((int)gen, 1);
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OK);
  CHECK_INT((int)si.file_gen, 1);
  CHECK_STR(si.file_id, si.store_id);
  CHECK_INT(st_backup(st, dest), 0); /* at generation 1 */
  CHECK_INT(st_stamp_advance(st, rec, &gen), 0);
  CHECK_INT((int)gen, 2);
  char id[ST_STAMP_ID_BUFSZ];
  snprintf(id, sizeof id, "%s", si.store_id);
  st_close(st);

  /* the copy, put where the store was: older than its record */
  st_options o = opts_default();
  o.dir = dest;
  st_store *copy = NULL;
  CHECK_INT(st_open(&copy, &o), 0);
  CHECK_INT(st_stamp_check(copy, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OLDER);
  CHECK_INT((int)si.store_gen, 1);
  CHECK_INT((int)si.file_gen, 2);
  CHECK_STR(si.store_id, id);
  st_close(copy);

  /* a crash after the commit, before the record: the store is ahead */
  st = open_default();
  CHECK(st);
  snprintf(text, sizeof text, "mcpgate store generation 1\nstore_id %s\ngeneration 1\n", id);
  write_text(rec, text);
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OK);
  /* another store's record */
  write_text(rec, "mcpgate store generation 1\nstore_id 00000000deadbeef\ngeneration 99\n");
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OTHER_STORE);
  CHECK_INT(st_stamp_advance(st, rec, &gen), 0); /* replaced by this store's */
  CHECK_INT((int)gen, 3);
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OK);
  /* records that do not parse */
  static const char *const bad[] = {
      "",
      "mcpgate store generation 2\nstore_id a\ngeneration 1\n",
      "mcpgate store generation 1\nstore_id \ngeneration 1\n",
      "mcpgate store generation 1\nstore_id a\ngeneration \n",
      "mcpgate store generation 1\nstore_id a\ngeneration 01\n",
      "mcpgate store generation 1\nstore_id a\ngeneration -1\n",
      "mcpgate store generation 1\nstore_id a\ngeneration 1",
      "mcpgate store generation 1\nstore_id a\ngeneration 1\nmore\n",
      "mcpgate store generation 1\nstore_id a\ngeneration 99999999999999999999\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_text(rec, bad[i]);
    CHECK_INT(st_stamp_check(st, rec, &si), 0);
    CHECK_INT(si.state, ST_STAMP_BAD_FILE);
  }
  CHECK_INT(st_stamp_advance(st, rec, &gen), 0);
  CHECK_INT(st_stamp_check(st, rec, &si), 0);
  CHECK_INT(si.state, ST_STAMP_OK);
  st_close(st);
  tmp_cleanup();
}

/* st_backup_dir copies the env as it is: a store of an older schema is
 * neither migrated nor written (the copy is the way back before an
 * upgrade), beside a store open in this process or not; the copy opens
 * and migrates like the original would. */
TEST(backup_dir_copies_as_is_without_migrating) {
  char dest[160], dest2[160], file[200];
  st_options o;
  st_store *st = NULL, *copy = NULL;
  tmp_setup();
  o = opts_default();
  CHECK_INT(st__open_at(&st, &o, 1), 0); /* an older schema: step 1 only */
  CHECK_INT(put1(st, "rec/acme", "Acme Inc"), 0);
  st_close(st);
  snprintf(file, sizeof file, "%s/data.mdb", o.dir);
  struct stat before, after;
  CHECK_INT(stat(file, &before), 0);
  FILE *f = fopen(file, "rb");
  CHECK(f != NULL);
  static char a[1 << 20], b[1 << 20];
  size_t na = fread(a, 1, sizeof a, f);
  fclose(f);
  snprintf(dest, sizeof dest, "%s/backup", g_tmp);
  CHECK_INT(st_backup_dir(&o, dest), 0);
  CHECK_INT(st_backup_dir(&o, dest), ST_EEXIST);
  CHECK_INT(stat(file, &after), 0);
  f = fopen(file, "rb");
  CHECK(f != NULL);
  size_t nb = fread(b, 1, sizeof b, f);
  fclose(f);
  CHECK(na > 0 && na < sizeof a && na == nb && memcmp(a, b, na) == 0); /* not a byte written */
  CHECK(before.st_mtime == after.st_mtime);
  /* the copy has the old schema; opened, it migrates */
  st_options oc = opts_default();
  oc.dir = dest;
  CHECK_INT(st__open_at(&copy, &oc, 1), 0);
  CHECK_INT(st_schema_version(copy), 1);
  st_close(copy);
  CHECK_INT(st_open(&copy, &oc), 0);
  CHECK_INT(st_schema_version(copy), st_schema_latest());
  char buf[32];
  CHECK_INT(get1(copy, ST_DB_TENANTS, "rec/acme", 8, buf, sizeof buf), 0);
  CHECK_STR(buf, "Acme Inc");
  st_close(copy);
  /* beside the store open in this process (LMDB: one env per process is
   * the rule for st_open; a read-only copy of another directory is fine) */
  CHECK_INT(st_open(&st, &o), 0);
  snprintf(dest2, sizeof dest2, "%s/backup2", g_tmp);
  o.dir = dest; /* the migrated copy, not open here */
  CHECK_INT(st_backup_dir(&o, dest2), 0);
  st_close(st);
  /* no store there: refused */
  snprintf(dest2, sizeof dest2, "%s/backup3", g_tmp);
  st_options none = opts_default();
  char nodir[200];
  snprintf(nodir, sizeof nodir, "%s/nothing", g_tmp);
  none.dir = nodir;
  CHECK_INT(st_backup_dir(&none, dest2), ST_ENOTFOUND);
  CHECK_INT(st_backup_dir(NULL, dest2), ST_EINVAL);
  tmp_cleanup();
}

TEST(stats_histogram) {
  st_stats s;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  for (int i = 0; i < 5; i++) CHECK_INT(put1(st, "k", "v"), 0);
  st_stats_get(st, &s);
  CHECK_INT(s.commits, 5);
  CHECK_INT(s.commit_seconds_count, 5);
  CHECK_INT(s.commit_seconds_bucket[ST_STATS_NBUCKETS - 1], 5); /* +Inf holds all */
  for (int i = 1; i < ST_STATS_NBUCKETS; i++)
    CHECK(s.commit_seconds_bucket[i] >= s.commit_seconds_bucket[i - 1]);
  CHECK(s.commit_seconds_sum > 0);
  CHECK_INT(s.batch_jobs_sum, 5);
  CHECK_INT(s.last_commit_error, 0);
  CHECK_INT(s.map_size, 64u << 20);
  CHECK(s.map_used > 0);
  st_close(st);
  tmp_cleanup();
}

typedef struct report_log {
  int n;
  char last[256];
} report_log;
static void report_cb(void *ctx, const char *area, const char *msg) {
  report_log *r = ctx;
  r->n++;
  snprintf(r->last, sizeof r->last, "%s: %s", area, msg);
}
static int module_check(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  st_val v;
  (void)ctx;
  if (st_get(txn, ST_DB_TENANTS, "dangling", 8, &v) == 0) {
    report(rctx, "scim", "index entry 'dangling' has no record");
    return 1;
  }
  return 0;
}
TEST(check_runs_module_checks) {
  report_log r = {0, ""};
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  CHECK_INT(st_check_add(st, module_check, NULL), 0);
  int problems = st_check(st, report_cb, &r);
  if (problems) fprintf(stderr, "  unexpected: %s\n", r.last);
  CHECK_INT(problems, 0);
  CHECK_INT(r.n, 0);
  CHECK_INT(put1(st, "dangling", "1"), 0);
  CHECK_INT(st_check(st, report_cb, &r), 1);
  CHECK_INT(r.n, 1);
  CHECK_STR(r.last, "scim: index entry 'dangling' has no record");
  st_close(st);
  tmp_cleanup();
}

/* The writer's two lanes (st_submit_bulk): queued behind 100 jobs of the
 * second lane, a job of the first runs in the very next batch; the second
 * lane's jobs go ST_BULK_BATCH a batch; behind a long first lane, the
 * second still gets its share of the first batch. Jobs record the order
 * they ran in (the writer thread alone runs them). Alone, the second lane
 * fills whole batches. */
typedef struct lane_job {
  int *seq, ran;
} lane_job;
static int lane_fn(st_txn *txn, void *arg) {
  (void)txn;
  lane_job *j = arg;
  if (!j->ran) j->ran = ++*j->seq; /* a batch re-run would run it again: the first counts */
  return 0;
}

static void lane_last(int status, void *arg) {
  (void)status;
  uv_sem_post(arg); /* the second lane's last: every job queued before it ran */
}

TEST(writer_lanes_first_lane_is_not_queued_behind_the_second) {
  static lane_job bulk[300], first[300];
  int seq = 0;
  gate g;
  uv_sem_t last;
  uv_sem_init(&last, 0);
  st_stats s0, s1;
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  st_stats_get(st, &s0);
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started);
  for (int i = 0; i < 100; i++) {
    bulk[i] = (lane_job){&seq, 0};
    CHECK_INT(st_submit_bulk(st, NULL, lane_fn, NULL, &bulk[i]), 0);
  }
  first[0] = (lane_job){&seq, 0};
  CHECK_INT(st_submit(st, NULL, lane_fn, NULL, &first[0]), 0);
  CHECK_INT(st_submit_bulk(st, NULL, noop_fn, lane_last, &last), 0);
  uv_sem_post(&g.release);
  uv_sem_wait(&last);
  CHECK_INT(first[0].ran, 1); /* the first job of the batch after the gate */
  for (int i = 0; i < 100; i++) CHECK_INT(bulk[i].ran, i + 2); /* in their order */
  st_stats_get(st, &s1);
  /* the gate; 1 + 32; then the second lane alone: the other 69 at once */
  CHECK_INT(s1.commits - s0.commits, 3);

  /* behind 300 of the first lane, 40 of the second: 32 of them in the first batch */
  seq = 0;
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started);
  for (int i = 0; i < 300; i++) {
    first[i] = (lane_job){&seq, 0};
    CHECK_INT(st_submit(st, NULL, lane_fn, NULL, &first[i]), 0);
  }
  for (int i = 0; i < 40; i++) {
    bulk[i] = (lane_job){&seq, 0};
    CHECK_INT(st_submit_bulk(st, NULL, lane_fn, NULL, &bulk[i]), 0);
  }
  CHECK_INT(st_submit_bulk(st, NULL, noop_fn, lane_last, &last), 0);
  uv_sem_post(&g.release);
  uv_sem_wait(&last);
  CHECK_INT(first[299].ran, 300 + ST_BULK_BATCH);
  CHECK_INT(first[ST_BATCH_MAX - ST_BULK_BATCH - 1].ran, ST_BATCH_MAX - ST_BULK_BATCH);
  CHECK_INT(bulk[0].ran, ST_BATCH_MAX - ST_BULK_BATCH + 1);
  CHECK_INT(bulk[ST_BULK_BATCH - 1].ran, ST_BATCH_MAX); /* the first batch's last */
  CHECK_INT(first[ST_BATCH_MAX - ST_BULK_BATCH].ran, ST_BATCH_MAX + 1);
  uv_sem_destroy(&last);
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  st_close(st);
  tmp_cleanup();
}

TEST(queue_cap_refuses_with_ebusy) {
  st_options o;
  st_store *st = NULL;
  gate g;
  tmp_setup();
  o = opts_default();
  o.queue_max = 2;
  CHECK_INT(st_open(&st, &o), 0);
  uv_sem_init(&g.started, 0);
  uv_sem_init(&g.release, 0);
  CHECK_INT(st_submit(st, NULL, gate_job_fn, NULL, &g), 0);
  uv_sem_wait(&g.started); /* taken by the writer: the queue is empty again */
  CHECK_INT(st_submit(st, NULL, noop_fn, NULL, NULL), 0);
  CHECK_INT(st_submit(st, NULL, noop_fn, NULL, NULL), 0);
  CHECK_INT(st_submit(st, NULL, noop_fn, NULL, NULL), ST_EBUSY);
  uv_sem_post(&g.release);
  st_close(st); /* drains the two queued jobs */
  uv_sem_destroy(&g.started);
  uv_sem_destroy(&g.release);
  tmp_cleanup();
}

typedef struct delp {
  const char *prefix;
  int limit, n;
} delp;
static int delp_fn(st_txn *txn, void *arg) {
  delp *d = arg;
  d->n = st_del_prefix(txn, ST_DB_TENANTS, d->prefix, strlen(d->prefix), d->limit);
  return d->n < 0 ? d->n : 0;
}

TEST(del_prefix_bounded) {
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  char k[32];
  for (int i = 0; i < 7; i++) {
    snprintf(k, sizeof k, "acme\x01%d", i);
    CHECK_INT(put1(st, k, "v"), 0);
  }
  CHECK_INT(put1(st, "acme2", "other tenant"), 0);
  CHECK_INT(put1(st, "acmd", "before"), 0);
  delp d = {"acme\x01", 3, 0};
  CHECK_INT(st_write_sync(st, delp_fn, &d), 0);
  CHECK_INT(d.n, 3); /* bounded */
  CHECK(!exists(st, "acme\x01" "0"));
  CHECK(exists(st, "acme\x01" "3"));
  d.limit = 0;
  CHECK_INT(st_write_sync(st, delp_fn, &d), 0);
  CHECK_INT(d.n, 4); /* the rest */
  CHECK(!exists(st, "acme\x01" "6"));
  CHECK(exists(st, "acme2")); /* neighbours untouched */
  CHECK(exists(st, "acmd"));
  CHECK_INT(st_write_sync(st, delp_fn, &d), 0);
  CHECK_INT(d.n, 0);
  st_close(st);
  tmp_cleanup();
}

TEST(errors_and_strings) {
  CHECK_STR(st_strerror(0), "ok");
  CHECK_STR(st_strerror(ST_EMAPFULL), "store map full (increase map_size)");
  CHECK_STR(st_strerror(-1234), "job error (not a store code)");
  CHECK_STR(st_strerror(ST_ERR_LAST), "unknown store error");
  CHECK(st_db_name(ST_DB__COUNT) == NULL);
  CHECK_STR(st_db_name(ST_DB_SECRETS), "secrets");
  st_store *st = NULL;
  st_options o = {0};
  CHECK_INT(st_open(&st, &o), ST_EINVAL);
  CHECK_INT(st_open(&st, NULL), ST_EINVAL);
}

/* ---- a second environment with its own schema ---------------------------- */

/* What an audit log's environment would declare: its own database numbers,
 * names and migrations, opened beside the main store. */
enum { AUD_DB_META = 0, AUD_DB_EVENTS, AUD_DB_SEQ, AUD_DB__COUNT };
static const char *const aud_names[AUD_DB__COUNT] = {"meta", "events", "seq"};
static int aud_m1(st_txn *t) {
  int rc = st_db_create(t, (st_db)AUD_DB_EVENTS);
  return rc < 0 ? rc : st_db_create(t, (st_db)AUD_DB_SEQ);
}
static const st_migration aud_steps[] = {{"create the audit databases", aud_m1, NULL}};
static const st_schema aud_schema = {.name = "audit", .db_names = aud_names, .ndbs = AUD_DB__COUNT, .steps = aud_steps,
                                     .nsteps = 1};

typedef struct aud_put {
  const char *k, *v;
  int create_rc;
} aud_put;
static int aud_put_fn(st_txn *txn, void *arg) {
  aud_put *a = arg;
  a->create_rc = st_db_create(txn, (st_db)AUD_DB_EVENTS); /* only migrations may */
  int rc = st_put(txn, (st_db)AUD_DB_EVENTS, a->k, strlen(a->k), a->v, strlen(a->v), 0);
  return rc < 0 ? rc : st_put(txn, (st_db)AUD_DB_SEQ, "n", 1, "1", 1, 0);
}

typedef struct log_lines {
  int audit_migration, store_migration;
} log_lines;
static void log_lines_fn(void *ctx, int level, const char *module, const char *msg) {
  log_lines *l = ctx;
  (void)level; (void)module;
  if (strstr(msg, "migrating audit schema 0 -> 1: create the audit databases")) l->audit_migration++;
  if (strstr(msg, "migrating store schema")) l->store_migration++;
}

TEST(second_environment_with_its_own_schema) {
  char adir[160], buf[32];
  st_store *main_st, *aud = NULL;
  log_lines lines = {0};
  tmp_setup();
  main_st = open_default();
  CHECK(main_st);
  snprintf(adir, sizeof adir, "%s/audit", g_tmp);
  st_options o = {0};
  o.dir = adir;
  o.map_size = 16u << 20;
  o.schema = &aud_schema;
  o.log = log_lines_fn;
  o.log_ctx = &lines;
  CHECK_INT(st_open(&aud, &o), 0);
  CHECK_INT(lines.audit_migration, 1);
  CHECK_INT(lines.store_migration, 0); /* the main schema's steps never ran there */
  CHECK_INT(st_schema_version(aud), 1);
  CHECK_INT(st_schema_version(main_st), st_schema_latest());

  /* writes go through the audit env's own writer */
  aud_put a = {"evt/1", "login", 0};
  CHECK_INT(st_write_sync(aud, aud_put_fn, &a), 0);
  CHECK_INT(a.create_rc, ST_EINVAL);
  CHECK_INT(put1(main_st, "evt/1", "main"), 0);
  CHECK_INT(get1(aud, (st_db)AUD_DB_EVENTS, "evt/1", 5, buf, sizeof buf), 0);
  CHECK_STR(buf, "login");
  CHECK_INT(get1(main_st, ST_DB_TENANTS, "evt/1", 5, buf, sizeof buf), 0);
  CHECK_STR(buf, "main"); /* two environments, two files */
  CHECK_INT(get1(aud, (st_db)AUD_DB_SEQ, "n", 1, buf, sizeof buf), 0);
  /* database numbers outside the audit schema do not exist there */
  CHECK_INT(get1(aud, (st_db)AUD_DB__COUNT, "evt/1", 5, NULL, 0), ST_EINVAL);
  CHECK_INT(get1(aud, ST_DB_SECRETS, "x", 1, NULL, 0), ST_EINVAL);
  /* each env checks clean against its own schema */
  CHECK_INT(st_check(aud, NULL, NULL), 0);
  CHECK_INT(st_check(main_st, NULL, NULL), 0);
  st_close(aud);
  st_close(main_st);

  /* reopened: no migration runs again, the data is there */
  lines.audit_migration = 0;
  CHECK_INT(st_open(&aud, &o), 0);
  CHECK_INT(lines.audit_migration, 0);
  CHECK_INT(st_schema_version(aud), 1);
  CHECK_INT(get1(aud, (st_db)AUD_DB_EVENTS, "evt/1", 5, buf, sizeof buf), 0);
  CHECK_STR(buf, "login");
  st_close(aud);

  /* a schema the store cannot run is refused */
  st_schema bad = aud_schema;
  bad.ndbs = 0;
  o.schema = &bad;
  CHECK_INT(st_open(&aud, &o), ST_EINVAL);
  bad = aud_schema;
  bad.nsteps = 0;
  CHECK_INT(st_open(&aud, &o), ST_EINVAL);
  tmp_cleanup();
}

/* ---- the tenant purge registry ------------------------------------------- */

/* Two modules' purges over ST_DB_TENANTS: "a:<tenant>:" and "b:<tenant>:". */
static int purge_prefix(st_txn *txn, char mod, const char *tenant, int limit) {
  char p[80];
  int n = snprintf(p, sizeof p, "%c:%s:", mod, tenant);
  return st_del_prefix(txn, ST_DB_TENANTS, p, (size_t)n, limit);
}
static int purge_a(st_txn *txn, const char *tenant, int limit) { return purge_prefix(txn, 'a', tenant, limit); }
static int purge_b(st_txn *txn, const char *tenant, int limit) { return purge_prefix(txn, 'b', tenant, limit); }
/* b registered with a context (st_purge_add_ctx): it counts its calls */
static int purge_b_ctx(st_txn *txn, const char *tenant, int limit, void *ctx) {
  ++*(int *)ctx;
  return purge_prefix(txn, 'b', tenant, limit);
}

typedef struct purge_step {
  const char *tenant;
  int limit, n;
} purge_step;
static int purge_step_fn(st_txn *txn, void *arg) {
  purge_step *p = arg;
  p->n = st_purge_tenant_step(txn, p->tenant, p->limit);
  return p->n < 0 ? p->n : 0;
}
static int read_purge_step(st_store *st) {
  st_txn *t;
  int rc = st_read_begin(st, &t);
  if (rc) return rc;
  rc = st_purge_tenant_step(t, "acme", 5);
  st_txn_end(t);
  return rc;
}

TEST(purge_registry_order_and_limits) {
  char k[32];
  tmp_setup();
  st_store *st = open_default();
  CHECK(st);
  static int b_calls;
  CHECK_INT(st_purge_add(st, "a", purge_a, NULL), 0);
  CHECK_INT(st_purge_add_ctx(st, "b", purge_b_ctx, &b_calls), 0); /* one registry, one order */
  CHECK_INT(st_purge_add(st, "a", purge_b, NULL), ST_EEXIST); /* one purge per name */
  CHECK_INT(st_purge_add(st, "b", purge_b, NULL), ST_EEXIST);
  CHECK_INT(st_purge_add(st, "c", NULL, NULL), ST_EINVAL);
  CHECK_INT(st_purge_add_ctx(st, "c", NULL, NULL), ST_EINVAL);
  for (int i = 0; i < 5; i++) {
    snprintf(k, sizeof k, "a:acme:%d", i);
    CHECK_INT(put1(st, k, "v"), 0);
  }
  for (int i = 0; i < 2; i++) {
    snprintf(k, sizeof k, "b:acme:%d", i);
    CHECK_INT(put1(st, k, "v"), 0);
  }
  CHECK_INT(put1(st, "a:acme2:0", "another tenant"), 0);
  CHECK_INT(put1(st, "b:acme2:0", "another tenant"), 0);
  /* registration is frozen once writes began */
  CHECK_INT(st_purge_add(st, "late", purge_a, NULL), ST_EINVAL);

  purge_step p = {"acme", 3, -1};
  CHECK_INT(st_write_sync(st, purge_step_fn, &p), 0);
  CHECK_INT(p.n, 3); /* the limit, all from "a": b waits for a */
  CHECK_INT(b_calls, 0);
  CHECK(!exists(st, "a:acme:2") && exists(st, "a:acme:3"));
  CHECK(exists(st, "b:acme:0") && exists(st, "b:acme:1"));
  CHECK_INT(st_write_sync(st, purge_step_fn, &p), 0);
  CHECK_INT(p.n, 3); /* a's last two, then b asked for what is left of the limit */
  CHECK(b_calls >= 1); /* with its context */
  CHECK(!exists(st, "a:acme:4") && !exists(st, "b:acme:0") && exists(st, "b:acme:1"));
  CHECK_INT(st_write_sync(st, purge_step_fn, &p), 0);
  CHECK_INT(p.n, 1); /* fewer than the limit: every purge finished */
  CHECK_INT(st_write_sync(st, purge_step_fn, &p), 0);
  CHECK_INT(p.n, 0); /* nothing of the tenant left */
  CHECK(exists(st, "a:acme2:0") && exists(st, "b:acme2:0")); /* neighbours untouched */
  /* bad calls */
  p.limit = 0;
  CHECK_INT(st_write_sync(st, purge_step_fn, &p), ST_EINVAL);
  CHECK_INT(read_purge_step(st), ST_EINVAL); /* write txns only */
  st_close(st);
  tmp_cleanup();
}

/* ---- logging through st_options.log ------------------------------------ */

typedef struct log_seen {
  int warn_dir;    /* the group-accessible directory warning, as WARN from "store" */
  int info;        /* any info line */
  int bad_module;  /* a line whose module is not "store" */
} log_seen;
static void log_capture(void *ctx, int level, const char *module, const char *msg) {
  log_seen *s = ctx;
  if (strcmp(module, "store") != 0) s->bad_module++;
  if (level == ST_LOG_WARN && strstr(msg, "accessible by group/others")) s->warn_dir++;
  if (level == ST_LOG_INFO) s->info++;
}

TEST(log_callback_and_stderr_fallback) {
  st_store *st = NULL;
  log_seen seen = {0};
  char path[160], text[4096];
  tmp_setup();
  CHECK_INT(mkdir(g_dir, 0755), 0); /* group/others can read it: the store warns */
  st_options o = opts_default();
  o.log = log_capture;
  o.log_ctx = &seen;
  CHECK_INT(st_open(&st, &o), 0);
  st_close(st);
  CHECK_INT(seen.warn_dir, 1);
  CHECK(seen.info >= 1); /* "master key loaded", migrations: every level reaches the callback */
  CHECK_INT(seen.bad_module, 0);

  /* No callback: warn/error still reach stderr as plain lines, info does not. */
  snprintf(path, sizeof path, "%s/stderr.txt", g_tmp);
  fflush(stderr);
  int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  o.log = NULL;
  o.log_ctx = NULL;
  int rc = st_open(&st, &o);
  if (rc == 0) st_close(st);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  CHECK_INT(rc, 0);
  FILE *f = fopen(path, "r");
  CHECK(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  CHECK(strstr(text, "mcpgate store: warn: store directory ") != NULL);
  CHECK(strstr(text, "accessible by group/others") != NULL);
  CHECK(strstr(text, "master key loaded") == NULL); /* info is dropped */
  CHECK(strchr(text, '{') == NULL);                 /* plain lines, not JSON */
  tmp_cleanup();
}

/* store/text.h: the code points that hide or reorder text, shown as
 * escapes; the bidi controls among them */
/* Case folding (store/text.h): Unicode's simple foldings from the table
 * generated at build time, ASCII as tolower, bytes that are no UTF-8 left
 * alone, the one fold that lengthens (U+023A, 2 bytes → U+2C65, 3) within
 * ST_TEXT_FOLD_MAX. */
TEST(text_fold_is_unicode_simple_case_folding) {
  char out[64];
  CHECK_INT((int)st_text_fold("ABC xyz 09@", 11, out), 11);
  CHECK_STR(out, "abc xyz 09@");
  st_text_fold("\xC3\x89MILE", 6, out); /* ÉMILE */
  CHECK_STR(out, "\xC3\xA9mile");   /* émile */
  st_text_fold("\xE2\x84\xAA", 3, out); /* KELVIN SIGN */
  CHECK_STR(out, "k");
  st_text_fold("\xCE\xA3\xCF\x82", 4, out); /* Σς: both σ */
  CHECK_STR(out, "\xCF\x83\xCF\x83");
  st_text_fold("\xC3\x9F", 2, out); /* ß: its full folding (ss) is not simple */
  CHECK_STR(out, "\xC3\x9F");
  st_text_fold("\xF0\x90\x90\x80", 4, out); /* DESERET CAPITAL LONG I → small (4 bytes) */
  CHECK_STR(out, "\xF0\x90\x90\xA8");
  CHECK_INT((int)st_text_fold("\xC8\xBA", 2, out), 3); /* Ⱥ → ⱥ */
  CHECK(3 <= ST_TEXT_FOLD_MAX(2));
  CHECK_STR(out, "\xE2\xB1\xA5");
  /* overlong forms, surrogates: no UTF-8, kept as they are (found by
   * review: "A" written in two bytes folded to "a") */
  CHECK_INT((int)st_text_fold("\xC1\x81lice", 6, out), 6);
  CHECK(memcmp(out, "\xC1\x81lice", 6) == 0);
  CHECK(!st_text_fold_eq("\xC1\x81lice", "alice"));
  CHECK(!st_text_fold_eq("\xE0\x81\x81lice", "alice"));
  CHECK_INT((int)st_text_fold("\xED\xA0\x80", 3, out), 3); /* U+D800 */
  CHECK(memcmp(out, "\xED\xA0\x80", 3) == 0);
  CHECK_INT((int)st_text_fold("a\xFF\xC3Z", 4, out), 4); /* not UTF-8: kept */
  CHECK(memcmp(out, "a\xFF\xC3z", 4) == 0);
  CHECK(st_text_fold_eq("\xC3\x9CNAL@x", "\xC3\xBCnal@X"));
  CHECK(!st_text_fold_eq("stra\xC3\x9F" "e", "strasse"));
  char *d = st_text_fold_dup("\xC3\x89QUIPE");
  CHECK_STR(d, "\xC3\xA9quipe");
  free(d);
}

TEST(text_hidden_and_reordering_code_points) {
  char *s = st_text_shown("Claude Code\xe2\x81\xa9\xe2\x80\xae x\xe2\x80\x8by \xf3\xa0\x81\x81 \xc2\xad caf\xc3\xa9 \xe4\xb8\xad");
  CHECK(s != NULL);
  CHECK_STR(s, "Claude Code\\u2069\\u202e x\\u200by \\u{e0041} \\u00ad caf\xc3\xa9 \xe4\xb8\xad");
  free(s);
  s = st_text_shown("");
  CHECK_STR(s, "");
  free(s);
  size_t len = 0;
  CHECK_INT((int)st_text_hidden_at((const unsigned char *)"\xe2\x80\xae", 3, &len), 0x202E);
  CHECK_INT((int)len, 3);
  CHECK_INT((int)st_text_hidden_at((const unsigned char *)"\xe2\x80\xae", 2, &len), 0); /* cut short */
  CHECK_INT((int)st_text_hidden_at((const unsigned char *)"\xc3\xa9", 2, &len), 0);
  unsigned bidi[] = {0x61C, 0x200E, 0x200F, 0x202A, 0x202E, 0x2066, 0x2069};
  for (size_t i = 0; i < sizeof bidi / sizeof bidi[0]; i++) CHECK(st_text_reorders(bidi[i]));
  CHECK(!st_text_reorders(0x200B)); /* hides, does not reorder */
  CHECK(!st_text_reorders(0xE0041));
  CHECK(!st_text_reorders('a'));
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(migrate_fresh_gets_latest);
  RUN(put_append_is_a_put);
  RUN(put_reserve_writes_in_place);
  RUN(background_writer_is_batch);
  RUN(del_prefix_bounded);
  RUN(migrate_partial_gets_the_rest);
  RUN(migrate_upgrade_given_by_the_opener);
  RUN(migrate_newer_refused);
  RUN(migrate_lost_version_refused);
  RUN(read_txn_reuse_sees_latest);
  RUN(get_put_del);
  RUN(cursor_prefix_scan);
  RUN(long_keys_hashed);
  RUN(group_commit_batches_and_isolates_failures);
  RUN(hooks_atomic_with_job_and_actions_before_done);
  RUN(port_gate_parks_dones_in_order_until_kicked);
  RUN(batch_commit_failure_reruns_each_job_alone);
  RUN(batch_runs_in_its_txn_then_children_after_a_failure);
  RUN(map_full_fails_only_that_job);
  RUN(map_full_in_batch_is_honest);
  RUN(reserve_keeps_room_for_taking_access_away);
  RUN(port_close_discards_pending_completions);
  RUN(port_close_inside_done);
  RUN(store_close_before_port_close);
  RUN(write_sync_and_writer_thread_done);
  RUN(backup_then_open_copy);
  RUN(backup_dir_copies_as_is_without_migrating);
  RUN(stamp_tells_a_restored_older_store);
  RUN(stats_histogram);
  RUN(check_runs_module_checks);
  RUN(queue_cap_refuses_with_ebusy);
  RUN(writer_lanes_first_lane_is_not_queued_behind_the_second);
  RUN(errors_and_strings);
  RUN(log_callback_and_stderr_fallback);
  RUN(purge_registry_order_and_limits);
  RUN(second_environment_with_its_own_schema);
  RUN(snapshot_ids);
  RUN(text_hidden_and_reordering_code_points);
  RUN(text_fold_is_unicode_simple_case_folding);
  tmp_cleanup();
  return UNIT_DONE();
}
