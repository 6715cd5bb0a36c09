/* tests/unit/test_approval.c — policy/approval.c on a real LMDB store:
 * requests, decisions (who may decide), grants (once, for N minutes; only
 * while the rule that gave them holds for the user), expiry, the per-user
 * caps, the user cut, purge and check. The tenant's policy: every user's
 * call of any tool on "db" asks DB Admins (grant_minutes up to a day, so
 * each request's own minutes apply); Night Shift's members are asked of
 * Security too, one call per approval; Frozen's are blocked. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "policy/approval.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/store.h"
#include "store/tenant.h"
#include "unit.h"

static char tmpdir[256];
static st_store *st;
static char alice[40], bob[40], carol[40], admins[40], security[40], night[40], frozen[40];
static int decided_events;
static char last_state[16];

typedef struct call {
  scim_req rq;
  scim_resp rs;
} call;

static int run_scim(st_txn *txn, void *arg) {
  call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}

static const char *scim(const char *method, const char *path, const char *body) {
  static char id[64];
  call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = "acme";
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/acme/scim/v2";
  c.rq.body = body ? json_loads(body, 0, NULL) : NULL;
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-12-05T00:00:00Z");
  st_write_sync(st, run_scim, &c);
  json_decref(c.rq.body);
  snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  scim_resp_clear(&c.rs);
  return id;
}

static int on_decided(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)txn, (void)kind, (void)ctx;
  const ap_event *ev = event;
  decided_events++;
  snprintf(last_state, sizeof last_state, "%s", ev->state);
  return 0;
}

static int put_policy(st_txn *txn, void *arg) {
  (void)arg;
  json_t *doc = json_pack("{s:i, s:s, s:[{s:[s], s:s, s:[s], s:[s], s:i}, {s:[s], s:s, s:[s], s:[s]}, {s:[s], s:s, "
                          "s:[s]}]}",
                          "version", 1, "default", "block", "rules", "groups", "*", "connector", "db", "approve", "*",
                          "approvers", "DB Admins", "grant_minutes", 1440, "groups", "Night Shift", "connector", "db",
                          "approve", "*", "approvers", "Security", "groups", "Frozen", "connector", "db", "block", "*");
  int version = 0;
  json_t *warnings = NULL;
  char err[300];
  int rc = doc ? pol_put(txn, "acme", doc, "2026-12-05T00:00:00Z", &version, &warnings, err, sizeof err) : ST_ENOMEM;
  if (rc) fprintf(stderr, "policy: %s\n", err);
  json_decref(warnings);
  json_decref(doc);
  return rc;
}

static int make_tenant(st_txn *txn, void *arg) {
  (void)arg;
  return st_tenant_create(txn, "acme", "Acme", "2026-12-05T00:00:00Z", "0123456789abcdef");
}

static int setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mcpgate-ap-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/store", tmpdir);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64 << 20;
  o.log = gw_store_log;
  if (st_open(&st, &o) != 0) return -1;
  if (ap_register_store(st) != 0 || pol_register_hooks(st) != 0) return -1; /* as the server: membership moves the generation */
  st_hook_add(st, AP_EV_DECIDED, on_decided, NULL);
  if (st_write_sync(st, make_tenant, NULL) != 0) return -1;
  snprintf(alice, sizeof alice, "%s", scim("POST", "/Users", "{\"userName\":\"alice@acme.com\"}"));
  snprintf(bob, sizeof bob, "%s", scim("POST", "/Users", "{\"userName\":\"bob@acme.com\"}"));
  snprintf(carol, sizeof carol, "%s", scim("POST", "/Users", "{\"userName\":\"carol@acme.com\"}"));
  char body[300];
  snprintf(body, sizeof body, "{\"displayName\":\"DB Admins\",\"members\":[{\"value\":\"%s\"}]}", bob);
  snprintf(admins, sizeof admins, "%s", scim("POST", "/Groups", body));
  snprintf(body, sizeof body, "{\"displayName\":\"Security\",\"members\":[{\"value\":\"%s\"}]}", carol);
  snprintf(security, sizeof security, "%s", scim("POST", "/Groups", body));
  snprintf(night, sizeof night, "%s", scim("POST", "/Groups", "{\"displayName\":\"Night Shift\",\"members\":[]}"));
  snprintf(frozen, sizeof frozen, "%s", scim("POST", "/Groups", "{\"displayName\":\"Frozen\",\"members\":[]}"));
  return st_write_sync(st, put_policy, NULL);
}

/* ---- jobs ---- */

typedef struct mk {
  const char *user, *tool, *hash;
  int timeout_s, grant_minutes, max_pending;
  int64_t now;
  char id[AP_ID_LEN + 1];
} mk;

static int run_create(st_txn *txn, void *arg) {
  mk *m = arg;
  json_t *ap = json_pack("[s]", admins);
  ap_new n = {"acme", m->user, "sess", "db", m->tool, "{\"q\":\"drop\",\"password\":\"[redacted]\"}", m->hash, ap,
              m->timeout_s ? m->timeout_s : 60, m->grant_minutes, m->now};
  int rc = ap_request_create(txn, &n, m->max_pending ? m->max_pending : 10, m->id);
  json_decref(ap);
  return rc;
}

static const char *H1 = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *H2 = "2222222222222222222222222222222222222222222222222222222222222222";
static const char *H3 = "3333333333333333333333333333333333333333333333333333333333333333";

static int create(mk *m) { return st_write_sync(st, run_create, m); }

typedef struct dec {
  const char *id, *reviewer, *reason;
  ap_action what;
  int64_t now;
} dec;

static int run_decide(st_txn *txn, void *arg) {
  dec *d = arg;
  return ap_decide(txn, "acme", d->id, d->what, d->reviewer, d->reviewer ? NULL : "operator", d->reason, d->now, NULL);
}

static int decide(const char *id, ap_action what, const char *reviewer, int64_t now) {
  dec d = {id, reviewer, "ok", what, now};
  return st_write_sync(st, run_decide, &d);
}

typedef struct take {
  const char *user, *tool, *hash;
  int64_t now;
  const ap_hint *hint;
} take;

static int run_take(st_txn *txn, void *arg) {
  take *t = arg;
  return ap_grant_take(txn, "acme", t->user, "db", t->tool, t->hash, t->now, NULL, t->hint);
}

static int take_grant(const char *user, const char *tool, const char *hash, int64_t now) {
  take t = {user, tool, hash, now, NULL};
  return st_write_sync(st, run_take, &t);
}

static int take_hinted(const char *user, const char *tool, const char *hash, int64_t now, const ap_hint *h) {
  take t = {user, tool, hash, now, h};
  return st_write_sync(st, run_take, &t);
}

/* the hint a loop would send for (user, db, tool), from its own read */
static void hint_for(const char *user, const char *tool, ap_hint *h) {
  st_txn *txn;
  pol_user *u = NULL;
  memset(h, 0, sizeof *h);
  if (st_read_begin(st, &txn) != 0) return;
  if (pol_user_load(txn, "acme", user, &u) == 0) ap_hint_fill(txn, "acme", u, "db", tool, h);
  pol_user_free(u);
  st_txn_end(txn);
}

static json_t *get(const char *id, int64_t now) {
  st_txn *txn;
  json_t *rec = NULL;
  if (st_read_begin(st, &txn) != 0) return NULL;
  ap_request_get(txn, "acme", id, now, &rec);
  st_txn_end(txn);
  return rec;
}

static const char *state_of(const char *id, int64_t now) {
  static char s[16];
  json_t *r = get(id, now);
  snprintf(s, sizeof s, "%s", r ? json_string_value(json_object_get(r, "state")) ?: "?" : "(none)");
  json_decref(r);
  return s;
}

#define T0 1800000000000LL

/* ---- tests ---- */

TEST(args_hash_is_canonical) {
  char a[65], b[65], c[65], e[65];
  json_t *x = json_loads("{\"b\":1,\"a\":[1,2]}", 0, NULL), *y = json_loads("{\"a\":[1,2],\"b\":1}", 0, NULL),
         *z = json_loads("{\"a\":[2,1],\"b\":1}", 0, NULL);
  CHECK_INT(ap_args_hash(x, a), 0);
  CHECK_INT(ap_args_hash(y, b), 0);
  CHECK_INT(ap_args_hash(z, c), 0);
  CHECK_INT(ap_args_hash(NULL, e), 0);
  CHECK_STR(a, b);
  CHECK(strcmp(a, c) != 0);
  CHECK_INT(strlen(e), 64);
  json_decref(x), json_decref(y), json_decref(z);
}

TEST(who_may_decide) {
  mk m = {alice, "drop_table", H1, 60, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(strlen(m.id), AP_ID_LEN);
  CHECK_STR(state_of(m.id, T0), "pending");
  CHECK_INT(decide(m.id, AP_APPROVE, alice, T0), AP_ESELF);        /* nobody decides their own */
  CHECK_INT(decide(m.id, AP_APPROVE, carol, T0), AP_ENOTAPPROVER); /* not in DB Admins */
  CHECK_INT(decide(m.id, AP_APPROVE, "00000000-0000-4000-8000-000000000000", T0), AP_EREVIEWER);
  CHECK_INT(decide("ffffffffffffffffffffffffffffffff", AP_APPROVE, bob, T0), ST_ENOTFOUND);
  CHECK_INT(decide("../../etc", AP_APPROVE, bob, T0), ST_ENOTFOUND);
  CHECK_STR(state_of(m.id, T0), "pending");
  int before = decided_events;
  CHECK_INT(decide(m.id, AP_DENY, bob, T0 + 1000), 0);
  CHECK_INT(decided_events, before + 1);
  CHECK_STR(last_state, "denied");
  json_t *r = get(m.id, T0 + 2000);
  CHECK_STR(json_string_value(json_object_get(r, "state")), "denied");
  CHECK_STR(json_string_value(json_object_get(r, "decided_by")), "bob@acme.com");
  CHECK_STR(json_string_value(json_object_get(r, "reason")), "ok");
  json_decref(r);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0 + 2000), AP_EDECIDED); /* decided once */
  CHECK_INT(take_grant(alice, "drop_table", H1, T0 + 2000), ST_ENOTFOUND); /* a denial grants nothing */
}

TEST(an_approval_is_one_call) {
  mk m = {alice, "truncate", H1, 60, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(take_grant(alice, "truncate", H1, T0), ST_ENOTFOUND);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0 + 10), 0);
  CHECK_STR(last_state, "approved");
  CHECK_INT(take_grant(alice, "truncate", H2, T0 + 20), ST_ENOTFOUND); /* other arguments */
  CHECK_INT(take_grant(bob, "truncate", H1, T0 + 20), ST_ENOTFOUND);   /* another user */
  CHECK_INT(take_grant(alice, "truncate", H1, T0 + 20), 0);
  CHECK_INT(take_grant(alice, "truncate", H1, T0 + 30), ST_ENOTFOUND); /* once */
}

typedef struct back {
  const char *user, *tool, *hash;
  int64_t now;
  const char *request; /* the approved request the grant came from */
} back;

static int run_back(st_txn *txn, void *arg) {
  back *b = arg;
  return ap_grant_give_back(txn, "acme", b->user, "db", b->tool, b->hash, b->request, b->now);
}

TEST(a_grant_taken_for_a_call_that_was_not_made_goes_back_once) {
  mk m = {alice, "rebuild", H2, 60, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(take_grant(alice, "rebuild", H2, T0 + 1), 0);
  back b = {alice, "rebuild", H2, T0 + 2, m.id};
  CHECK_INT(st_write_sync(st, run_back, &b), 0);               /* its client left: back */
  CHECK_INT(st_write_sync(st, run_back, &b), 0);               /* twice is still one call */
  CHECK_INT(take_grant(alice, "rebuild", H2, T0 + 3), 0);       /* the retry passes */
  CHECK_INT(take_grant(alice, "rebuild", H2, T0 + 4), ST_ENOTFOUND); /* once */
}

static int problems;
static void report(void *ctx, const char *area, const char *msg) {
  (void)ctx, (void)area;
  fprintf(stderr, "check: %s\n", msg);
  problems++;
}

static json_t *list(const char *state, int64_t now, size_t limit) {
  st_txn *txn;
  json_t *out = NULL;
  if (st_read_begin(st, &txn) != 0) return NULL;
  ap_request_list(txn, "acme", state, now, limit, &out);
  st_txn_end(txn);
  return out;
}

/* the lists read indexes: newest first by time, pending from its own set */
TEST(lists_come_newest_first_and_pending_from_its_index) {
  const int64_t T = T0 + 500000000; /* after every other test's requests */
  char ids[3][AP_ID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    mk m = {bob, "idx", H1, i == 2 ? 1 : 60, 0, 0, T + i, ""};
    CHECK_INT(create(&m), 0);
    memcpy(ids[i], m.id, sizeof ids[i]);
  }
  json_t *l = list(NULL, T + 10, 2);
  CHECK_INT(json_array_size(l), 2);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "id")), ids[2]);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 1), "id")), ids[1]);
  json_decref(l);
  CHECK_INT(decide(ids[1], AP_CANCEL, NULL, T + 20), 0);
  /* at T + 2000 the third (1 s) has expired: pending is the first only */
  l = list("pending", T + 2000, 100);
  size_t mine = 0, i;
  json_t *r;
  json_array_foreach(l, i, r) if (!strcmp(json_string_value(json_object_get(r, "tool")), "idx")) mine++;
  CHECK_INT(mine, 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "id")), ids[0]);
  json_decref(l);
  l = list("expired", T + 2000, 1);
  CHECK_INT(json_array_size(l), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "id")), ids[2]);
  json_decref(l);
  l = list("cancelled", T + 2000, 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "id")), ids[1]);
  json_decref(l);
  /* out of the way of the later tests (their clocks are earlier) */
  CHECK_INT(decide(ids[0], AP_CANCEL, NULL, T + 3000), 0);
  CHECK_INT(decide(ids[2], AP_CANCEL, NULL, T), 0);
  problems = 0;
  CHECK(st_check(st, report, NULL) >= 0);
  CHECK_INT(problems, 0);
}

TEST(grant_minutes_cover_repeats_until_they_end) {
  mk m = {alice, "vacuum", H1, 60, 5, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0), 0);
  for (int i = 0; i < 3; i++) CHECK_INT(take_grant(alice, "vacuum", H1, T0 + 1000 * i), 0);
  CHECK_INT(take_grant(alice, "vacuum", H1, T0 + 5 * 60000 + 1), ST_ENOTFOUND); /* ended */
}

static ap_grant_summary live(const char *user, const char *tool, int64_t now) {
  ap_grant_summary g;
  memset(&g, 0xAB, sizeof g);
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return g;
  int rc = ap_grants_live(txn, "acme", user, "db", tool, now, &g);
  st_txn_end(txn);
  if (rc) g.count = 999;
  return g;
}

/* explain's view: the user's live grants for (connector, tool), any
 * arguments — how many argument sets, the latest expiry and its request */
TEST(live_grants_are_counted_per_tool_and_user) {
  CHECK_INT((int)live(alice, "explain_me", T0).count, 0);
  mk a = {alice, "explain_me", H1, 60, 5, 0, T0, ""}, b = {alice, "explain_me", H2, 60, 10, 0, T0, ""};
  mk other = {alice, "explain_more", H1, 60, 30, 0, T0, ""}, theirs = {carol, "explain_me", H1, 60, 30, 0, T0, ""};
  CHECK_INT(create(&a), 0);
  CHECK_INT(create(&b), 0);
  CHECK_INT(create(&other), 0);
  CHECK_INT(create(&theirs), 0);
  CHECK_INT((int)live(alice, "explain_me", T0).count, 0); /* pending grants nothing */
  CHECK_INT(decide(a.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(decide(b.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(decide(other.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(decide(theirs.id, AP_APPROVE, bob, T0), 0);
  ap_grant_summary g = live(alice, "explain_me", T0 + 1000);
  CHECK_INT((int)g.count, 2); /* not another tool's, not another user's */
  CHECK_INT(g.expires_max == T0 + 10 * 60000, 1);
  CHECK_STR(g.request, b.id);
  g = live(alice, "explain_me", T0 + 6 * 60000); /* the 5-minute one ended */
  CHECK_INT((int)g.count, 1);
  CHECK_STR(g.request, b.id);
  g = live(alice, "explain_me", T0 + 10 * 60000);
  CHECK_INT((int)g.count, 0);
  CHECK_INT(g.expires_max == 0, 1);
  CHECK_STR(g.request, "");
  /* a one-call grant taken is no longer live */
  mk once = {alice, "explain_me", H1, 60, 0, 0, T0 + 20 * 60000, ""};
  CHECK_INT(create(&once), 0);
  CHECK_INT(decide(once.id, AP_APPROVE, bob, T0 + 20 * 60000), 0);
  CHECK_INT((int)live(alice, "explain_me", T0 + 20 * 60000).count, 1);
  CHECK_INT(take_grant(alice, "explain_me", H1, T0 + 20 * 60000), 0);
  CHECK_INT((int)live(alice, "explain_me", T0 + 20 * 60000).count, 0);
}

TEST(expiry_is_read_from_the_clock) {
  mk m = {alice, "reindex", H2, 2, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_STR(state_of(m.id, T0 + 1999), "pending");
  CHECK_STR(state_of(m.id, T0 + 2000), "expired");
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0 + 2000), AP_EDECIDED);
  CHECK_INT(decide(m.id, AP_CANCEL, NULL, T0 + 2000), AP_EDECIDED);
}

TEST(admin_cancel) {
  mk m = {alice, "analyze", H2, 60, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_CANCEL, NULL, T0), 0);
  json_t *r = get(m.id, T0);
  CHECK_STR(json_string_value(json_object_get(r, "state")), "cancelled");
  CHECK_STR(json_string_value(json_object_get(r, "decided_by")), "operator");
  json_decref(r);
  CHECK_INT(take_grant(alice, "analyze", H2, T0), ST_ENOTFOUND);
}

static bool has_id(const json_t *list, const char *id) {
  size_t i;
  json_t *r;
  json_array_foreach(list, i, r) if (!strcmp(json_string_value(json_object_get(r, "id")) ?: "", id)) return true;
  return false;
}

typedef struct rl {
  const char *who;
  json_t *gids;
  size_t limit;
  json_t *pending, *history;
} rl;

static int reviewer_list(rl *l, int64_t now) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return -1;
  int rc = ap_request_list_reviewer(txn, "acme", l->who, l->gids, now, l->limit, &l->pending, &l->history);
  st_txn_end(txn);
  return rc;
}

static void rl_clear(rl *l) {
  json_decref(l->gids);
  json_decref(l->pending);
  json_decref(l->history);
}

/* The page's list: what the reviewer may decide by membership, never
 * their own; history ended, the latest first; the limit holds. */
TEST(a_reviewers_list_is_what_they_may_decide) {
  const int64_t t1 = T0 + 100000;
  mk x = {alice, "export", H1, 60, 0, 0, t1, ""}, y = {bob, "export", H2, 60, 0, 0, t1 + 1, ""};
  CHECK_INT(create(&x), 0);
  CHECK_INT(create(&y), 0);
  rl b = {bob, json_pack("[s]", admins), 100, NULL, NULL};
  CHECK_INT(reviewer_list(&b, t1 + 2), 0);
  CHECK(has_id(b.pending, x.id));
  CHECK(!has_id(b.pending, y.id) && !has_id(b.history, y.id)); /* never their own */
  size_t i;
  json_t *r;
  json_array_foreach(b.pending, i, r) {
    CHECK_STR(json_string_value(json_object_get(r, "state")), "pending");
    CHECK(strcmp(json_string_value(json_object_get(r, "user")), bob) != 0);
  }
  CHECK(json_array_size(b.history) >= 3); /* the earlier tests' ended requests of alice */
  json_int_t prev = INT64_MAX;
  json_array_foreach(b.history, i, r) {
    CHECK(strcmp(json_string_value(json_object_get(r, "state")), "pending") != 0);
    json_t *d = json_object_get(r, "decided_at");
    json_int_t e = json_is_integer(d) ? json_integer_value(d) : json_integer_value(json_object_get(r, "expires"));
    CHECK(e <= prev);
    prev = e;
  }
  rl_clear(&b);
  rl c = {carol, json_array(), 100, NULL, NULL}; /* in no approver group */
  CHECK_INT(reviewer_list(&c, t1 + 2), 0);
  CHECK_INT(json_array_size(c.pending), 0);
  CHECK_INT(json_array_size(c.history), 0);
  rl_clear(&c);
  rl a = {alice, json_pack("[s]", admins), 1, NULL, NULL}; /* as if alice were a DB Admin */
  CHECK_INT(reviewer_list(&a, t1 + 2), 0);
  CHECK(has_id(a.pending, y.id) && !has_id(a.pending, x.id));
  CHECK_INT(json_array_size(a.pending), 1);
  CHECK(json_array_size(a.history) <= 1);
  rl_clear(&a);
  CHECK_INT(decide(x.id, AP_CANCEL, NULL, t1 + 3), 0);
  CHECK_INT(decide(y.id, AP_CANCEL, NULL, t1 + 3), 0);
}

static int resolve_n(const char *list, const char *want) {
  st_txn *txn;
  json_t *ids = json_array();
  if (st_read_begin(st, &txn) != 0) return -1;
  int rc = ap_groups_resolve(txn, "acme", list, ids);
  st_txn_end(txn);
  int n = rc ? rc : (int)json_array_size(ids);
  if (!rc && want && n == 1 && strcmp(json_string_value(json_array_get(ids, 0)), want)) n = -2;
  json_decref(ids);
  return n;
}

TEST(approver_groups_resolve_to_existing_groups_only) {
  char idref[60];
  snprintf(idref, sizeof idref, " id:%s ", admins);
  CHECK_INT(resolve_n("DB Admins", admins), 1);
  CHECK_INT(resolve_n(" db admins ,", admins), 1); /* case, spaces, an empty item */
  CHECK_INT(resolve_n(idref, admins), 1);
  CHECK_INT(resolve_n("Nobody, id:00000000-0000-4000-8000-000000000000", NULL), 0);
  CHECK_INT(resolve_n(NULL, NULL), 0);
}

TEST(pending_cap_and_kept_history) {
  /* carol: 3 pending at most */
  char ids[3][AP_ID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    mk m = {carol, "t", H1, 60, 0, 3, T0 + i, ""};
    CHECK_INT(create(&m), 0);
    memcpy(ids[i], m.id, sizeof ids[i]);
  }
  mk over = {carol, "t", H1, 60, 0, 3, T0 + 10, ""};
  CHECK_INT(create(&over), AP_ETOOMANY);
  CHECK_INT(decide(ids[0], AP_CANCEL, NULL, T0 + 11), 0);
  mk again = {carol, "t", H1, 60, 0, 3, T0 + 12, ""};
  CHECK_INT(create(&again), 0);
  /* at most AP_KEEP_PER_USER kept: the oldest decided ones go */
  int made = 0;
  for (int i = 0; i < AP_KEEP_PER_USER + 5; i++) {
    mk m = {carol, "t", H2, 60, 0, 1000, T0 + 100 + i, ""};
    if (create(&m) == 0 && decide(m.id, AP_CANCEL, NULL, T0 + 100 + i) == 0) made++;
  }
  CHECK_INT(made, AP_KEEP_PER_USER + 5);
  st_txn *txn;
  json_t *all = NULL;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(ap_request_list(txn, "acme", NULL, T0 + 1000, 100000, &all), 0);
  st_txn_end(txn);
  size_t n = 0, i;
  json_t *r;
  json_array_foreach(all, i, r) if (!strcmp(json_string_value(json_object_get(r, "user")), carol)) n++;
  CHECK(n <= AP_KEEP_PER_USER);
  CHECK_STR(state_of(ids[0], T0 + 1000), "(none)"); /* the oldest decided one went */
  CHECK_STR(state_of(ids[1], T0 + 20), "pending");   /* pending ones stay */
  json_decref(all);
}


TEST(user_cut_cancels_and_check_is_clean) {
  mk m = {alice, "drop_db", H2, 600, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  mk g = {alice, "vacuum_full", H2, 600, 30, 0, T0, ""};
  CHECK_INT(create(&g), 0);
  CHECK_INT(decide(g.id, AP_APPROVE, bob, T0), 0);
  problems = 0;
  CHECK(st_check(st, report, NULL) >= 0);
  CHECK_INT(problems, 0);
  /* Okta deactivates alice: her pending request is cancelled, her grants go */
  char path[80], body[200];
  snprintf(path, sizeof path, "/Users/%s", alice);
  snprintf(body, sizeof body,
           "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":\"replace\","
           "\"value\":{\"active\":false}}]}");
  scim("PATCH", path, body);
  CHECK_STR(state_of(m.id, T0 + 1), "cancelled");
  CHECK_INT(take_grant(alice, "vacuum_full", H2, T0 + 2), ST_ENOTFOUND);
  problems = 0;
  CHECK(st_check(st, report, NULL) >= 0);
  CHECK_INT(problems, 0);
}

static int run_purge(st_txn *txn, void *arg) {
  int *n = arg;
  *n = st_purge_tenant_step(txn, "acme", 100000);
  return *n < 0 ? *n : 0;
}

TEST(purge_takes_everything_of_the_tenant) {
  int n = 0;
  CHECK_INT(st_write_sync(st, run_purge, &n), 0);
  st_txn *txn;
  json_t *all = NULL;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(ap_request_list(txn, "acme", NULL, T0, 100000, &all), 0);
  st_txn_end(txn);
  CHECK_INT(json_array_size(all), 0);
  json_decref(all);
}

/* Found by review: a one-call grant given back after the requester was cut
 * (the client left while the deactivation committed) came back to life for
 * the deactivated user, and outlived a reactivation */
TEST(give_back_after_cut_revives_a_grant) {
  char dan[40];
  snprintf(dan, sizeof dan, "%s", scim("POST", "/Users", "{\"userName\":\"dan@acme.com\"}"));
  mk m = {dan, "reindex", H1, 600, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(take_grant(dan, "reindex", H1, T0 + 1), 0);          /* the held call took it (job_take) */
  char path[80];
  snprintf(path, sizeof path, "/Users/%s", dan);
  scim("PATCH", path, "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":"
                      "\"replace\",\"value\":{\"active\":false}}]}"); /* Okta deactivates dan: grants deleted */
  back b = {dan, "reindex", H1, T0 + 2, m.id};                          /* done_take ran before the fan-out: client gone, */
  CHECK_INT(st_write_sync(st, run_back, &b), 0);                  /* x->revoked still false -> give_back */
  scim("PATCH", path, "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":"
                      "\"replace\",\"value\":{\"active\":true}}]}"); /* "reactivation revives nothing" */
  CHECK_INT(take_grant(dan, "reindex", H1, T0 + 3), ST_ENOTFOUND); /* it was: 0, the grant was back */
}

/* Found by review: a deactivation and a reactivation both committing
 * between the held call's take and its give-back (a sub-second window)
 * let the give-back revive a grant the deactivation had deleted: it
 * checked only that the user was active and the request approved. A taken
 * one-call grant now stays stored, in use, until the call is made; a cut
 * deletes it, and a give-back restores only what is still there. */
TEST(give_back_after_cut_and_reactivation_revives_nothing) {
  char eve[40];
  snprintf(eve, sizeof eve, "%s", scim("POST", "/Users", "{\"userName\":\"eve@acme.com\"}"));
  mk m = {eve, "reindex", H2, 600, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(take_grant(eve, "reindex", H2, T0 + 1), 0); /* the held call took it */
  char path[80];
  snprintf(path, sizeof path, "/Users/%s", eve);
  scim("PATCH", path, "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":"
                      "\"replace\",\"value\":{\"active\":false}}]}");
  scim("PATCH", path, "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":"
                      "\"replace\",\"value\":{\"active\":true}}]}");
  back b = {eve, "reindex", H2, T0 + 2, m.id}; /* then the client's leaving is noticed */
  CHECK_INT(st_write_sync(st, run_back, &b), 0);
  CHECK_INT(take_grant(eve, "reindex", H2, T0 + 3), ST_ENOTFOUND); /* was 0: the grant came back */
}

/* A taken one-call grant is in use: a second call with the same arguments
 * meanwhile gets nothing, and it is not counted as live */
TEST(a_grant_in_use_is_not_taken_twice_nor_counted) {
  mk m = {alice, "rotate", H1, 60, 0, 0, T0, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, T0), 0);
  st_txn *txn;
  ap_grant_summary s;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(ap_grants_live(txn, "acme", alice, "db", "rotate", T0 + 1, &s), 0);
  st_txn_end(txn);
  CHECK_INT((int)s.count, 1);
  CHECK_INT(take_grant(alice, "rotate", H1, T0 + 1), 0);
  CHECK_INT(take_grant(alice, "rotate", H1, T0 + 2), ST_ENOTFOUND);
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(ap_grants_live(txn, "acme", alice, "db", "rotate", T0 + 2, &s), 0);
  st_txn_end(txn);
  CHECK_INT((int)s.count, 0);
  back b = {alice, "rotate", H1, T0 + 3, m.id};
  CHECK_INT(st_write_sync(st, run_back, &b), 0);
  CHECK_INT(take_grant(alice, "rotate", H1, T0 + 4), 0);
}

/* Okta's Group Push: a PATCH adding the user to gid (with display), or
 * removing them (members[value eq "…"]) */
static void membership(const char *gid, const char *user, bool add) {
  char path[80], body[400];
  snprintf(path, sizeof path, "/Groups/%s", gid);
  if (add)
    snprintf(body, sizeof body,
             "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":\"add\","
             "\"path\":\"members\",\"value\":[{\"value\":\"%s\",\"display\":\"someone@acme.com\"}]}]}",
             user);
  else
    snprintf(body, sizeof body,
             "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":\"remove\","
             "\"path\":\"members[value eq \\\"%s\\\"]\"}]}",
             user);
  scim("PATCH", path, body);
}

/* Found by review: a policy PUT ended standing grants, a membership change
 * did not — a user Okta moved to a group whose rule names other approvers
 * (one call per approval) or blocks the tool kept passing on the old
 * approval. A grant now records what the policy asked of the call (its
 * approver groups, its minutes) and is taken only while that still holds
 * for the user. */
TEST(a_grant_stands_only_while_the_rule_that_gave_it_holds) {
  const int64_t t = T0 + 40 * 60000;
  mk m = {alice, "migrate", H1, 60, 30, 0, t, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, t), 0);
  CHECK_INT(take_grant(alice, "migrate", H1, t + 1), 0);
  CHECK_INT((int)live(alice, "migrate", t + 1).count, 1);
  /* Night Shift: Security approves too, one call per approval */
  membership(night, alice, true);
  CHECK_INT(take_grant(alice, "migrate", H1, t + 2), ST_ENOTFOUND);
  CHECK_INT((int)live(alice, "migrate", t + 2).count, 0); /* explain says so too */
  membership(night, alice, false);
  CHECK_INT(take_grant(alice, "migrate", H1, t + 3), 0); /* the same rule again, within its minutes */
  /* Frozen: blocked */
  membership(frozen, alice, true);
  CHECK_INT(take_grant(alice, "migrate", H1, t + 4), ST_ENOTFOUND);
  membership(frozen, alice, false);
  /* moved while a request was pending: the approval grants what the rule
   * in force gives (its approvers decide, its minutes bound the grant) */
  mk p = {alice, "migrate", H2, 60, 30, 0, t + 5, ""};
  CHECK_INT(create(&p), 0);
  membership(night, alice, true);
  CHECK_INT(decide(p.id, AP_APPROVE, bob, t + 6), 0);
  CHECK_INT(take_grant(alice, "migrate", H2, t + 7), 0);
  CHECK_INT(take_grant(alice, "migrate", H2, t + 8), ST_ENOTFOUND); /* one call, as Night Shift's rule says */
  membership(night, alice, false);
  CHECK_INT(take_grant(alice, "migrate", H2, t + 9), ST_ENOTFOUND); /* nor a window under the other rule */
}

/* A take with the loop's hint uses the hint's decision while its stamp
 * holds in the writer's txn (no policy load there), and loads the policy
 * as without one as soon as anything moved: a hint saying "no approval"
 * (as if from another rule) refuses the take while nothing moved, and is
 * ignored once Okta moved the user, the grant standing on the rule in
 * force. */
TEST(a_take_uses_the_loops_hint_only_while_its_stamp_holds) {
  const int64_t t = T0 + 50 * 60000;
  mk m = {alice, "migrate", H3, 60, 30, 0, t, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, t), 0);
  ap_hint h;
  hint_for(alice, "migrate", &h);
  CHECK(h.set && h.approve);
  CHECK_INT(take_hinted(alice, "migrate", H3, t + 1, &h), 0); /* the true hint: taken */
  ap_hint wrong = h;
  wrong.approve = false; /* what another rule would say */
  CHECK_INT(take_hinted(alice, "migrate", H3, t + 2, &wrong), ST_ENOTFOUND); /* the stamp holds: the hint decides */
  membership(night, alice, true);
  membership(night, alice, false); /* back to the same rule; the generation moved */
  CHECK_INT(take_hinted(alice, "migrate", H3, t + 3, &wrong), 0); /* stale: the policy in force decides */
  hint_for(alice, "migrate", &h);
  membership(night, alice, true); /* moved after the hint was read */
  CHECK_INT(take_hinted(alice, "migrate", H3, t + 4, &h), ST_ENOTFOUND);
  membership(night, alice, false);
}

static int run_mark_deleting(st_txn *txn, void *arg) {
  (void)arg;
  return st_tenant_mark_deleting(txn, "acme");
}

static int run_purge_directory(st_txn *txn, void *arg) {
  (void)arg;
  int n = scim_purge_tenant(txn, "acme", 100000);
  return n < 0 ? n : 0;
}

/* Found by review: nothing of a hint's stamp (the policy's revision, the
 * membership generation, the cuts, the tenant's uid) moves when a tenant
 * is deleted, and its purge goes module by module — the directory first
 * (gateway/modules.c) — without moving the generation either. A hint read
 * before the delete held in a take after the directory was purged, and
 * took the grant of a user the store no longer has; without the hint the
 * take loads the policy and finds no such user. Marks acme deleting: the
 * last test before the purge. */
TEST(a_hint_holds_only_while_the_tenant_is_active) {
  const int64_t t = T0 + 70 * 60000;
  char gil[40];
  snprintf(gil, sizeof gil, "%s", scim("POST", "/Users", "{\"userName\":\"gil@acme.com\"}"));
  mk m = {gil, "reindex", H1, 60, 30, 0, t, ""};
  CHECK_INT(create(&m), 0);
  CHECK_INT(decide(m.id, AP_APPROVE, bob, t), 0);
  ap_hint h;
  hint_for(gil, "reindex", &h);
  CHECK(h.set && h.approve);
  CHECK_INT(take_hinted(gil, "reindex", H1, t + 1, &h), 0); /* a 30-minute grant: taken again and again */
  CHECK_INT(st_write_sync(st, run_mark_deleting, NULL), 0);
  CHECK_INT(st_write_sync(st, run_purge_directory, NULL), 0);
  CHECK_INT(take_grant(gil, "reindex", H1, t + 2), ST_ENOTFOUND); /* the store: no such user */
  CHECK_INT(take_hinted(gil, "reindex", H1, t + 3, &h), ST_ENOTFOUND);
}

/* the user's stored grants (any state) */
static int grants_stored(const char *user) {
  char p[200];
  size_t n = strlen("acme") + 1;
  memcpy(p, "acme", n);
  p[n++] = 'g';
  memcpy(p + n, user, strlen(user));
  n += strlen(user);
  p[n++] = 0;
  st_txn *txn;
  st_cursor *c;
  st_val k, v;
  int count = 0;
  if (st_read_begin(st, &txn) != 0) return -1;
  if (st_cursor_open(txn, ST_DB_APPROVALS, &c) == 0) {
    st_cursor_seek(c, p, n, NULL, 0);
    while (st_cursor_next(c, &k, &v) == 0) count++;
    st_cursor_close(c);
  }
  st_txn_end(txn);
  return count;
}

/* A used one-call grant stays stored, in use, until it expires: the
 * user's next request sweeps their expired grants, used or not, so none
 * pile up */
TEST(expired_grants_go_with_the_users_next_request) {
  char fay[40];
  snprintf(fay, sizeof fay, "%s", scim("POST", "/Users", "{\"userName\":\"fay@acme.com\"}"));
  mk a = {fay, "used", H1, 60, 0, 0, T0, ""};
  CHECK_INT(create(&a), 0);
  CHECK_INT(decide(a.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(take_grant(fay, "used", H1, T0 + 1), 0);
  mk b = {fay, "never_used", H1, 60, 0, 0, T0, ""};
  CHECK_INT(create(&b), 0);
  CHECK_INT(decide(b.id, AP_APPROVE, bob, T0), 0);
  CHECK_INT(grants_stored(fay), 2);
  const int64_t later = T0 + 2LL * 60 * 60 * 1000; /* past both (timeout 60 s + an hour) */
  mk c = {fay, "next", H2, 60, 0, 0, later, ""};
  CHECK_INT(create(&c), 0);
  CHECK_INT(grants_stored(fay), 0);
  CHECK_INT(decide(c.id, AP_CANCEL, NULL, later), 0); /* nothing left pending for the later tests */
}

int main(void) {
  gw_log_set_level(GW_LOG_ERROR);
  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  RUN(args_hash_is_canonical);
  RUN(who_may_decide);
  RUN(an_approval_is_one_call);
  RUN(grant_minutes_cover_repeats_until_they_end);
  RUN(a_grant_taken_for_a_call_that_was_not_made_goes_back_once);
  RUN(give_back_after_cut_revives_a_grant);
  RUN(give_back_after_cut_and_reactivation_revives_nothing);
  RUN(a_grant_in_use_is_not_taken_twice_nor_counted);
  RUN(a_grant_stands_only_while_the_rule_that_gave_it_holds);
  RUN(a_take_uses_the_loops_hint_only_while_its_stamp_holds);
  RUN(expired_grants_go_with_the_users_next_request);
  RUN(lists_come_newest_first_and_pending_from_its_index);
  RUN(live_grants_are_counted_per_tool_and_user);
  RUN(expiry_is_read_from_the_clock);
  RUN(admin_cancel);
  RUN(a_reviewers_list_is_what_they_may_decide);
  RUN(approver_groups_resolve_to_existing_groups_only);
  RUN(pending_cap_and_kept_history);
  RUN(user_cut_cancels_and_check_is_clean);
  RUN(a_hint_holds_only_while_the_tenant_is_active);
  RUN(purge_takes_everything_of_the_tenant);
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return UNIT_DONE();
}
