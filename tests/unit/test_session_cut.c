/* tests/unit/test_session_cut.c — the per-connector cut's store half
 * (gw_sessions_cut_step, gateway/mcp/mcp_session.h) against a real store:
 * single-connector sessions of a hidden connector go, aggregated sessions
 * keep everything but their upstream id for it, nothing of another user or
 * tenant is touched, a step reads no more than its budget, and steps
 * resumed from where the last one stopped do what one big step does. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "gateway/mcp/mcp_session.h"
#include "store/store.h"
#include "unit.h"

static char tmpdir[256];
static st_store *st;

/* The judge: user "alice" no longer sees connector "a"; calls counted. */
static int judged;
static bool alice_lost_a(void *ctx, st_txn *txn, const char *user, const char *connector) {
  (void)ctx;
  (void)txn;
  judged++;
  return !strcmp(user, "alice") && !strcmp(connector, "a");
}

typedef struct seed {
  const char *tenant, *user, *id, *connector; /* connector "": aggregated, with upstream ids for a and b */
} seed;

static const seed seeds[] = {
    {"t", "alice", "mcps_alice_a", "a"}, {"t", "alice", "mcps_alice_b", "b"}, {"t", "alice", "mcps_alice_agg", ""},
    {"t", "bob", "mcps_bob_a", "a"},     {"t", "bob", "mcps_bob_agg", ""},    {"t2", "alice", "mcps_t2_alice_a", "a"},
};
#define NSEEDS (sizeof seeds / sizeof seeds[0])

static int job_seed(st_txn *txn, void *arg) {
  (void)arg;
  for (size_t i = 0; i < NSEEDS; i++) {
    gw_session s = {0};
    snprintf(s.tenant, sizeof s.tenant, "%s", seeds[i].tenant);
    snprintf(s.user, sizeof s.user, "%s", seeds[i].user);
    snprintf(s.connector, sizeof s.connector, "%s", seeds[i].connector);
    snprintf(s.version, sizeof s.version, "2025-11-25");
    if (seeds[i].connector[0]) snprintf(s.upstream, sizeof s.upstream, "%s-up", seeds[i].id);
    int rc = gw_session_put(txn, seeds[i].id, &s, "2026-11-22T00:00:00Z");
    if (!rc && !seeds[i].connector[0]) rc = gw_session_upstream_put(txn, seeds[i].id, "a", "up-a");
    if (!rc && !seeds[i].connector[0]) rc = gw_session_upstream_put(txn, seeds[i].id, "b", "up-b");
    if (rc) return rc;
  }
  return 0;
}

static int job_wipe(st_txn *txn, void *arg) {
  (void)arg;
  return st_del_prefix(txn, ST_DB_SESSIONS, NULL, 0, 0) < 0 ? -1 : 0;
}

static int reseed(void) {
  if (st_write_sync(st, job_wipe, NULL) != 0) return -1;
  return st_write_sync(st, job_seed, NULL);
}

typedef struct step {
  gw_session_cut c;
  int rc;
} step;

static int job_step(st_txn *txn, void *arg) {
  step *s = arg;
  s->rc = gw_sessions_cut_step(txn, &s->c);
  return s->rc;
}

/* What is left: does session id exist, and its upstream ids as "a,b". */
static bool exists(const char *id) {
  st_txn *txn;
  gw_session s;
  if (st_read_begin(st, &txn) != 0) return false;
  bool ok = gw_session_get(txn, id, &s) == 0;
  st_txn_end(txn);
  return ok;
}

static void upstreams(const char *id, char *out, size_t n) {
  st_txn *txn;
  out[0] = 0;
  if (st_read_begin(st, &txn) != 0) return;
  json_t *u = gw_session_upstreams(txn, id);
  st_txn_end(txn);
  const char *k;
  json_t *v;
  json_object_foreach(u, k, v) {
    size_t l = strlen(out);
    snprintf(out + l, n - l, "%s%s", l ? "," : "", k);
  }
  json_decref(u);
}

/* The state every complete cut leaves. */
static int check_after(void) {
  char ups[64];
  if (exists("mcps_alice_a")) return 1;     /* hers, on a: gone */
  if (!exists("mcps_alice_b")) return 2;    /* hers, on b: stays */
  if (!exists("mcps_alice_agg")) return 3;  /* her aggregated session stays ... */
  upstreams("mcps_alice_agg", ups, sizeof ups);
  if (strcmp(ups, "b")) return 4;           /* ... without its upstream id for a */
  if (!exists("mcps_bob_a")) return 5;      /* bob keeps a */
  upstreams("mcps_bob_agg", ups, sizeof ups);
  if (strcmp(ups, "a,b")) return 6;
  if (!exists("mcps_t2_alice_a")) return 7; /* another tenant's alice: not read */
  return 0;
}

/* gw_sessions_upstreams_of: the upstream sessions a cut of a connector
 * takes away (revoke.c, usess_end.c end them): a single-connector
 * session's id, an aggregated session's id for it — of the tenant or of
 * one user, nothing of another connector or tenant; the callback can stop
 * the walk. Collected as sorted "user:id@version" lines. */
typedef struct ups_seen {
  json_t *lines;
  int stop_after; /* 0: never */
} ups_seen;
static bool on_ups(void *ctx, const char *user, const char *upstream, const char *version) {
  ups_seen *u = ctx;
  json_array_append_new(u->lines, json_sprintf("%s:%s@%s", user, upstream, version));
  return !u->stop_after || (int)json_array_size(u->lines) < u->stop_after;
}
static int by_text(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}
static char *ups_of(const char *tenant, const char *user, const char *connector, int stop_after) {
  st_txn *txn;
  ups_seen u = {json_array(), stop_after};
  if (st_read_begin(st, &txn) != 0) return NULL;
  int rc = gw_sessions_upstreams_of(txn, tenant, user, connector, on_ups, &u);
  st_txn_end(txn);
  size_t n = json_array_size(u.lines);
  json_t **v = calloc(n + 1, sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = json_array_get(u.lines, i);
  qsort(v, n, sizeof *v, by_text);
  char *out = calloc(1, 1024);
  if (rc) snprintf(out, 1024, "error %d", rc);
  for (size_t i = 0; i < n && !rc; i++) {
    size_t l = strlen(out);
    snprintf(out + l, 1024 - l, "%s%s", l ? " " : "", json_string_value(v[i]));
  }
  free(v);
  json_decref(u.lines);
  return out;
}

TEST(upstreams_of_a_connector) {
  CHECK_INT(reseed(), 0);
  char *s = ups_of("t", NULL, "a", 0);
  CHECK_STR(s, "alice:mcps_alice_a-up@2025-11-25 alice:up-a@2025-11-25 bob:mcps_bob_a-up@2025-11-25 bob:up-a@2025-11-25");
  free(s);
  s = ups_of("t", "alice", "a", 0);
  CHECK_STR(s, "alice:mcps_alice_a-up@2025-11-25 alice:up-a@2025-11-25");
  free(s);
  s = ups_of("t", NULL, "b", 0);
  CHECK_STR(s, "alice:mcps_alice_b-up@2025-11-25 alice:up-b@2025-11-25 bob:up-b@2025-11-25");
  free(s);
  s = ups_of("t", "carol", "a", 0);
  CHECK_STR(s, "");
  free(s);
  s = ups_of("t", NULL, "a", 1);
  CHECK(s && strlen(s) > 0 && !strchr(s, ' ')); /* stopped after one */
  free(s);
}

TEST(one_user_in_one_step) {
  CHECK_INT(reseed(), 0);
  step s = {.c = {.tenant = "t", .user = "alice", .hidden = alice_lost_a, .budget = 100}};
  judged = 0;
  CHECK_INT(st_write_sync(st, job_step, &s), 0);
  CHECK_INT(s.c.read, 3);
  CHECK_INT(s.c.cut, 2); /* her a session, her aggregated session's id for a */
  CHECK(!s.c.more);
  CHECK_INT(check_after(), 0);
  CHECK(judged <= 4);
  /* again: nothing more to cut */
  CHECK_INT(st_write_sync(st, job_step, &s), 0);
  CHECK_INT(s.c.cut, 0);
  CHECK_INT(s.c.read, 2);
}

TEST(a_tenant_in_steps_of_one) {
  CHECK_INT(reseed(), 0);
  step s = {.c = {.tenant = "t", .hidden = alice_lost_a, .budget = 1}};
  int steps = 0, cut = 0, read = 0;
  do {
    CHECK_INT(st_write_sync(st, job_step, &s), 0);
    CHECK(s.c.read <= 1);
    steps++;
    cut += s.c.cut;
    read += s.c.read;
    memcpy(s.c.from, s.c.next, s.c.nlen);
    s.c.flen = s.c.nlen;
  } while (s.c.more && steps < 50);
  CHECK_INT(cut, 2);
  /* five records of tenant t (one deleted behind the walk, read before it went), and a step finding the end */
  CHECK_INT(read, 5);
  CHECK_INT(steps, 6);
  CHECK_INT(check_after(), 0);
}

/* What the deletes that pass a gw_session_obs tell it (usess_end.c ends
 * those upstream sessions): each upstream session id that goes with them,
 * with its tenant, user, connector and version — a single-connector
 * session's own, an aggregated session's for each connector —, and
 * nothing that stays. Collected as sorted "tenant/user/connector:id@version". */
typedef struct told_arg {
  json_t *lines;
  int which; /* the job: 0 a user's, 1 a cut step, 2 a tenant's purge, 3 the expiry purge */
  int rc;
} told_arg;
static void on_gone(void *ctx, st_txn *txn, const char *tenant, const char *user, const char *connector,
                    const char *upstream, const char *version) {
  (void)txn;
  json_array_append_new(((told_arg *)ctx)->lines, json_sprintf("%s/%s/%s:%s@%s", tenant, user, connector, upstream, version));
}
static int job_told(st_txn *txn, void *arg) {
  told_arg *a = arg;
  json_array_clear(a->lines); /* a job may run twice */
  gw_session_obs obs = {on_gone, a};
  if (a->which == 0) a->rc = gw_sessions_delete_user(txn, "t", "alice", &obs);
  if (a->which == 1) {
    gw_session_cut c = {.tenant = "t", .hidden = alice_lost_a, .budget = 100, .obs = &obs};
    a->rc = gw_sessions_cut_step(txn, &c);
  }
  if (a->which == 2) a->rc = gw_sessions_purge_tenant_obs(txn, "t2", 10, &obs);
  if (a->which == 3) {
    static const gw_session_limits lim = {1000, 1000, 64, 60000};
    uint8_t next[33];
    bool more;
    a->rc = gw_sessions_purge_expired(txn, NULL, 0, INT64_MAX / 2, &lim, 100, 100, next, &more, &obs);
  }
  return a->rc < 0 ? a->rc : 0;
}
static char *told(int which) {
  told_arg a = {json_array(), which, 0};
  char *out = calloc(1, 1024);
  if (st_write_sync(st, job_told, &a) != 0 || a.rc < 0) snprintf(out, 1024, "error %d", a.rc);
  size_t n = json_array_size(a.lines);
  json_t **v = calloc(n + 1, sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = json_array_get(a.lines, i);
  qsort(v, n, sizeof *v, by_text);
  for (size_t i = 0; i < n && strncmp(out, "error", 5); i++) {
    size_t l = strlen(out);
    snprintf(out + l, 1024 - l, "%s%s", i ? " " : "", json_string_value(v[i]));
  }
  free(v);
  json_decref(a.lines);
  return out;
}

TEST(deletes_tell_what_goes_upstream) {
  CHECK_INT(reseed(), 0);
  char *s = told(0);
  CHECK_STR(s, "t/alice/a:mcps_alice_a-up@2025-11-25 t/alice/a:up-a@2025-11-25 t/alice/b:mcps_alice_b-up@2025-11-25 "
               "t/alice/b:up-b@2025-11-25");
  free(s);
  CHECK(!exists("mcps_alice_agg") && exists("mcps_bob_agg"));
  CHECK_INT(reseed(), 0);
  s = told(1); /* alice lost a: what goes, and only that */
  CHECK_STR(s, "t/alice/a:mcps_alice_a-up@2025-11-25 t/alice/a:up-a@2025-11-25");
  free(s);
  CHECK_INT(check_after(), 0);
  CHECK_INT(reseed(), 0);
  s = told(2);
  CHECK_STR(s, "t2/alice/a:mcps_t2_alice_a-up@2025-11-25");
  free(s);
  CHECK(exists("mcps_alice_a"));
  CHECK_INT(reseed(), 0);
  s = told(3); /* every session expired */
  CHECK_STR(s, "t/alice/a:mcps_alice_a-up@2025-11-25 t/alice/a:up-a@2025-11-25 t/alice/b:mcps_alice_b-up@2025-11-25 "
               "t/alice/b:up-b@2025-11-25 t/bob/a:mcps_bob_a-up@2025-11-25 t/bob/a:up-a@2025-11-25 "
               "t/bob/b:up-b@2025-11-25 t2/alice/a:mcps_t2_alice_a-up@2025-11-25");
  free(s);
  CHECK(!exists("mcps_bob_agg"));
}

TEST(bad_input_is_refused) {
  step s = {.c = {.tenant = "t", .hidden = alice_lost_a, .budget = 0}};
  CHECK_INT(st_write_sync(st, job_step, &s), ST_EINVAL);
}

int main(void) {
  gw_log_set_level(GW_LOG_WARN);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mcpgate-cut-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/store", tmpdir);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64 << 20;
  o.log = gw_store_log;
  if (st_open(&st, &o) != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  RUN(upstreams_of_a_connector);
  RUN(one_user_in_one_step);
  RUN(a_tenant_in_steps_of_one);
  RUN(deletes_tell_what_goes_upstream);
  RUN(bad_input_is_refused);
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return UNIT_DONE();
}
