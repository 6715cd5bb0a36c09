/* tests/bench/bench_agg_sweep.c — how long the aggregated maps' sweep and
 * a tenant's revocation hold maps_mu, the mutex every loop's aggregated
 * request takes (gateway/mcp/agg_maps.c).
 *
 *   make bench BENCH=sweep   (or: make build/bench/bench_agg_sweep && build/bench/bench_agg_sweep [sessions] [rounds])
 *
 * A real store on disk with one tenant and `sessions` (10,000: the maps'
 * bound) aggregated sessions of 1,000 users, each with a URI map of 20
 * URIs and a progress token (an entry in both indexes); half the sessions
 * are then deleted from the store. Each round measures, while a second
 * thread takes and releases maps_mu every 20 µs as requests do:
 *   - sweep: gw__agg_sweep (reads every session with maps in the store,
 *     drops the dead half's maps);
 *   - revoke: gw__agg_forget_owner of the tenant (drops the live half's);
 * each one's wall time, and the longest the other thread waited for
 * maps_mu meanwhile. Prints numbers; asserts nothing. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/mcp_session.h"
#include "store/store.h"
#include "store/tenant.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static gw_server srv;
static gw_mcp_shared sh;
static gw_loop lp;
static st_store *st;
static int nsessions = 10000;

static void sid_of(int i, char sid[96]) { snprintf(sid, 96, "mcps_bench%038d", i); }

typedef struct seed {
  int from, to; /* sessions [from, to) */
  bool del;
} seed;

static int job_seed(st_txn *txn, void *arg) {
  seed *s = arg;
  if (!s->del && s->from == 0) {
    int rc = st_tenant_create(txn, "acme", "Acme", "2026-12-06T00:00:00Z", "0123456789abcdef");
    if (rc && rc != ST_EEXIST) return rc;
  }
  for (int i = s->from; i < s->to; i++) {
    char sid[96];
    sid_of(i, sid);
    if (s->del) {
      int rc = gw_session_delete(txn, sid);
      if (rc && rc != ST_ENOTFOUND) return rc;
      continue;
    }
    gw_session g = {0};
    snprintf(g.tenant, sizeof g.tenant, "acme");
    snprintf(g.user, sizeof g.user, "user%d", i % 1000);
    snprintf(g.version, sizeof g.version, "2025-11-25");
    g.created_ms = gw_session_now_ms() + i; /* creation order */
    int rc = gw_session_put(txn, sid, &g, "2026-12-06T00:00:00Z");
    if (rc) return rc;
  }
  return 0;
}

static void store_sessions(int from, int to, bool del) {
  for (int i = from; i < to; i += 1000) {
    seed s = {i, i + 1000 < to ? i + 1000 : to, del};
    if (st_write_sync(st, job_seed, &s) != 0) {
      fprintf(stderr, "seed failed\n");
      exit(1);
    }
  }
}

/* every session's maps: 20 URIs, a progress token */
static void fill_maps(void) {
  gw_exchange *x = calloc(1, sizeof *x);
  json_t *tok = json_integer(7);
  x->lp = &lp;
  snprintf(x->tenant, sizeof x->tenant, "acme");
  snprintf(x->connector, sizeof x->connector, "ra");
  for (int i = 0; i < nsessions; i++) {
    sid_of(i, x->sid);
    snprintf(x->user, sizeof x->user, "user%d", i % 1000);
    x->sess.created_ms = gw_session_now_ms() + i;
    for (int k = 0; k < 20; k++) {
      char uri[64];
      snprintf(uri, sizeof uri, "ra://bench/%d/%d", i, k);
      gw__agg_uri_note(x, uri, false);
    }
    gw__agg_progress_note(x, tok);
  }
  json_decref(tok);
  free(x);
}

/* the other loops: take maps_mu every 20 µs, note the longest wait */
static atomic_bool stop;
static _Atomic uint64_t longest_ns, takes;

static void *contender(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    double t0 = now_s();
    uv_mutex_lock(&sh.maps_mu);
    double t1 = now_s();
    uv_mutex_unlock(&sh.maps_mu);
    uint64_t w = (uint64_t)((t1 - t0) * 1e9);
    if (w > atomic_load(&longest_ns)) atomic_store(&longest_ns, w);
    atomic_fetch_add(&takes, 1);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void measure(const char *what, void (*fn)(void)) {
  atomic_store(&stop, false);
  atomic_store(&longest_ns, 0);
  atomic_store(&takes, 0);
  pthread_t th;
  pthread_create(&th, NULL, contender, NULL);
  usleep(20000);
  atomic_store(&longest_ns, 0);
  double t0 = now_s();
  fn();
  double t1 = now_s();
  atomic_store(&stop, true);
  pthread_join(th, NULL);
  printf("  %-7s %8.2f ms   longest wait for maps_mu %8.2f ms   (maps left: %zu)\n", what, (t1 - t0) * 1e3,
         (double)atomic_load(&longest_ns) / 1e6, gw__agg_uri_maps(&sh));
}

static gw_session_limits lim = {86400000, 7 * 86400000LL, 64, 60000};

static void do_sweep(void) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return;
  gw__agg_sweep(&sh, &lim, txn, gw_session_now_ms());
  st_txn_end(txn);
}

static void do_revoke(void) { gw__agg_forget_owner(&sh, "acme", NULL); }

int main(int argc, char **argv) {
  int rounds = 3;
  if (argc > 1) nsessions = atoi(argv[1]);
  if (argc > 2) rounds = atoi(argv[2]);
  gw_log_set_level(GW_LOG_ERROR);
  char tmpdir[] = "/tmp/mcpgate-bench-sweep-XXXXXX";
  if (!mkdtemp(tmpdir)) return 1;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/store", tmpdir);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 256 << 20;
  o.log = gw_store_log;
  if (st_open(&st, &o) != 0) return 1;
  srv.cfg.agg_uri_map_max = 10000;
  srv.cfg.agg_uri_map_bytes = 1 << 20;
  srv.cfg.sessions_per_user_max = 64;
  uv_mutex_init(&sh.maps_mu);
  srv.mcp = &sh;
  lp.srv = &srv;
  printf("bench_agg_sweep: %d sessions (maps in both indexes), half of them gone from the store\n", nsessions);
  for (int r = 0; r < rounds; r++) {
    store_sessions(0, nsessions, false);
    fill_maps();
    store_sessions(nsessions / 2, nsessions, true);
    printf("round %d\n", r + 1);
    measure("sweep", do_sweep);
    measure("revoke", do_revoke);
  }
  gw__agg_forget_owner(&sh, NULL, NULL);
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return 0;
}
