/* Unit tests of the MCP exchange lifecycle (gateway/mcp/exchange.c) without
 * a server: a bare uv loop, a registry, and test flows that count what
 * happens to them. Walks run from a timer callback, as revocations and
 * sweeps do from the loop; each test ends asserting the loop closes clean. */
#include <uv.h>

#include "gateway/mcp/exchange.h"
#include "unit.h"

typedef struct counters {
  int revoked, freed, visited, collected, last_slot, ended;
} counters;

/* A flow state: which counters to bump, and a tag. */
typedef struct tstate {
  counters *c;
  int tag;
} tstate;

static void t_on_revoke(gw_exchange *x, const gw_revocation *r) {
  (void)r;
  ((tstate *)x->state)->c->revoked++;
}

static void t_free(void *state) {
  tstate *st = state;
  st->c->freed++;
  free(st);
}

static void t_collect(gw_exchange *x, int slot, json_t *j) {
  tstate *st = x->state;
  st->c->collected++;
  st->c->last_slot = slot;
  json_decref(j);
}

static const gw_flow_ops test_flow = {.name = "test", .on_revoke = t_on_revoke, .collect = t_collect, .free = t_free};

static gw_exchange *mk(gw_xreg *reg, counters *c, int tag, const char *tenant, const char *user, const char *conn,
                       const char *tokid) {
  tstate *st = calloc(1, sizeof *st);
  st->c = c;
  st->tag = tag;
  return gw__x_new(reg, NULL, tenant, conn, user, tokid, &test_flow, st);
}

static int listed(const gw_xreg *reg) {
  int n = 0;
  for (gw_exchange *x = reg->list; x; x = x->next) n++;
  return n;
}

/* Runs fn(arg) once from a timer callback, then closes the timer and checks
 * the loop closes clean. */
typedef struct on_loop {
  uv_timer_t t;
  void (*fn)(void *arg);
  void *arg;
} on_loop;

static void fire(uv_timer_t *t) {
  on_loop *o = t->data;
  o->fn(o->arg);
  uv_close((uv_handle_t *)t, NULL);
}

static int run_on_loop(void (*fn)(void *arg), void *arg) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return -1;
  on_loop o = {.fn = fn, .arg = arg};
  uv_timer_init(&loop, &o.t);
  o.t.data = &o;
  uv_timer_start(&o.t, fire, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop);
}

/* ---------- foreach keeps what it walks alive ---------- */

typedef struct walk {
  gw_xreg *reg;
  counters *c;
  gw_exchange *a, *b, *created;
  int visits[8];
} walk;

/* Visiting a: b's last outside reference goes (it is freed only after the
 * walk) and a new exchange is created (appended: not visited). */
static void walk_fn(gw_exchange *x, void *arg) {
  walk *w = arg;
  tstate *st = x->state;
  w->c->visited++;
  if (st->tag >= 0 && st->tag < 8) w->visits[st->tag]++;
  if (x == w->a) {
    gw__x_unref(w->b);
    w->created = mk(w->reg, w->c, 7, "t1", "u1", "c1", "k1");
  }
}

typedef struct foreach_case {
  int ok;
  counters c;
  walk w;
} foreach_case;

static void foreach_body(void *arg) {
  foreach_case *fc = arg;
  gw_xreg reg = {0};
  fc->w.reg = &reg;
  fc->w.c = &fc->c;
  fc->w.a = mk(&reg, &fc->c, 0, "t1", "u1", "c1", "k1");
  fc->w.b = mk(&reg, &fc->c, 1, "t1", "u1", "c1", "k1");
  gw_exchange *d = mk(&reg, &fc->c, 2, "t1", "u1", "c1", "k1");
  gw__x_foreach(&reg, walk_fn, &fc->w);
  /* a, b, d visited once each; the created one not; b freed after the walk */
  fc->ok = fc->c.visited == 3 && fc->w.visits[0] == 1 && fc->w.visits[1] == 1 && fc->w.visits[2] == 1 &&
           fc->w.visits[7] == 0 && fc->c.freed == 1 && listed(&reg) == 3 && reg.tail == fc->w.created;
  gw__x_unref(fc->w.a);
  gw__x_unref(d);
  gw__x_unref(fc->w.created);
  fc->ok = fc->ok && fc->c.freed == 4 && reg.list == NULL && reg.tail == NULL;
}

TEST(foreach_holds_references_and_skips_created) {
  foreach_case fc = {0};
  CHECK_INT(run_on_loop(foreach_body, &fc), 0);
  CHECK(fc.ok);
}

/* The callback ends every exchange it visits (drops their last outside
 * reference): all are visited, all are freed exactly once after the walk. */
static void end_all_fn(gw_exchange *x, void *arg) {
  counters *c = arg;
  c->visited++;
  gw__x_unref(x);
}

typedef struct end_case {
  int ok;
  counters c;
} end_case;

static void end_all_body(void *arg) {
  end_case *ec = arg;
  gw_xreg reg = {0};
  for (int i = 0; i < 5; i++) mk(&reg, &ec->c, i, "t1", "u1", "c1", "k1");
  gw__x_foreach(&reg, end_all_fn, &ec->c);
  ec->ok = ec->c.visited == 5 && ec->c.freed == 5 && reg.list == NULL && reg.tail == NULL;
  gw__x_foreach(&reg, end_all_fn, &ec->c); /* an empty registry: nothing */
  ec->ok = ec->ok && ec->c.visited == 5;
}

TEST(foreach_callback_may_free_everything) {
  end_case ec = {0};
  CHECK_INT(run_on_loop(end_all_body, &ec), 0);
  CHECK(ec.ok);
}

/* ---------- revocation: AND-matched identity, on_revoke once ---------- */

static gw_revocation rev(const char *tenant, const char *user, const char *conn, const char *tokid) {
  gw_revocation r;
  memset(&r, 0, sizeof r);
  snprintf(r.tenant, sizeof r.tenant, "%s", tenant);
  snprintf(r.user, sizeof r.user, "%s", user ? user : "");
  snprintf(r.connector, sizeof r.connector, "%s", conn ? conn : "");
  snprintf(r.tokid, sizeof r.tokid, "%s", tokid ? tokid : "");
  return r;
}

typedef struct revoke_case {
  int ok;
  counters c[4];
} revoke_case;

static void revoke_body(void *arg) {
  revoke_case *rc = arg;
  gw_xreg reg = {0};
  gw_exchange *x[4];
  x[0] = mk(&reg, &rc->c[0], 0, "acme", "alice", "github", "tokA");
  x[1] = mk(&reg, &rc->c[1], 1, "acme", "alice", "jira", "tokB");
  x[2] = mk(&reg, &rc->c[2], 2, "acme", "bob", "github", "tokC");
  x[3] = mk(&reg, &rc->c[3], 3, "other", "alice", "github", "tokA");
  int ok = 1;
  gw_revocation r = rev("acme", "alice", NULL, NULL); /* user: 0 and 1 */
  gw__x_revoke(&reg, &r);
  ok &= rc->c[0].revoked == 1 && rc->c[1].revoked == 1 && rc->c[2].revoked == 0 && rc->c[3].revoked == 0;
  r = rev("acme", NULL, "github", NULL); /* connector: 0 and 2 */
  gw__x_revoke(&reg, &r);
  ok &= rc->c[0].revoked == 2 && rc->c[1].revoked == 1 && rc->c[2].revoked == 1 && rc->c[3].revoked == 0;
  r = rev("acme", "alice", "github", "tokB"); /* all set, AND: nobody (x[1] is jira) */
  gw__x_revoke(&reg, &r);
  ok &= rc->c[0].revoked == 2 && rc->c[1].revoked == 1 && rc->c[2].revoked == 1 && rc->c[3].revoked == 0;
  r = rev("acme", NULL, NULL, "tokB"); /* token: 1 */
  gw__x_revoke(&reg, &r);
  ok &= rc->c[1].revoked == 2;
  r = rev("other", NULL, NULL, NULL); /* tenant: 3 only */
  gw__x_revoke(&reg, &r);
  ok &= rc->c[3].revoked == 1 && rc->c[0].revoked == 2 && rc->c[2].revoked == 1;
  ok &= gw__x_matches(x[0], &(gw_revocation){.tenant = "acme"}) && !gw__x_matches(x[3], &(gw_revocation){.tenant = "acme"});
  for (int i = 0; i < 4; i++) gw__x_unref(x[i]);
  for (int i = 0; i < 4; i++) ok &= rc->c[i].freed == 1;
  rc->ok = ok && reg.list == NULL;
}

TEST(revoke_matches_all_set_fields_once) {
  revoke_case rc = {0};
  CHECK_INT(run_on_loop(revoke_body, &rc), 0);
  CHECK(rc.ok);
}

/* ---------- the recheck's `hidden` (issue 18) ---------- */

/* A collector that keeps the last reply's error message and code. */
typedef struct hidden_case {
  int ok;
  counters coll, elem;
  char msg[300];
  long long code;
} hidden_case;

static hidden_case *hc_now;

static void h_collect(gw_exchange *x, int slot, json_t *j) {
  (void)x;
  (void)slot;
  json_t *err = json_object_get(j, "error");
  snprintf(hc_now->msg, sizeof hc_now->msg, "%s", json_string_value(json_object_get(err, "message")) ?: "");
  hc_now->code = json_integer_value(json_object_get(err, "code"));
  hc_now->coll.collected++;
  json_decref(j);
}

static const gw_flow_ops recording_flow = {.name = "recording", .collect = h_collect, .free = t_free};
static const gw_flow_ops plain_flow = {.name = "plain", .free = t_free}; /* the default on_revoke */

static void hidden_body(void *arg) {
  hidden_case *hc = hc_now = arg;
  gw_xreg reg = {0};
  tstate *cs = calloc(1, sizeof *cs), *es = calloc(1, sizeof *es);
  cs->c = &hc->coll;
  es->c = &hc->elem;
  gw_exchange *c = gw__x_new(&reg, NULL, "t", "", "u", "k", &recording_flow, cs);
  gw_exchange *e = gw__x_new(&reg, NULL, "t", "gh", "u", "k", &plain_flow, es);
  gw__x_collect_into(e, c, 0);
  /* list_changed only: nothing ends */
  gw__x_revoke_one(e, &(gw_revocation){.tenant = "t", .user = "u", .notify = true});
  int ok = !e->revoked && hc->coll.collected == 0 && gw__x_client_alive(e);
  /* hidden: it ends, and the client hears which connector went */
  gw__x_revoke_one(e, &(gw_revocation){.tenant = "t", .user = "u", .hidden = true});
  ok &= e->revoked && hc->coll.collected == 1 && !gw__x_client_alive(e) && hc->code == -32004 &&
        strstr(hc->msg, "connector \"gh\" is no longer available to you") != NULL;
  gw__x_unref(e);
  gw__x_unref(c);
  hc->ok = ok && hc->coll.freed == 1 && hc->elem.freed == 1 && reg.list == NULL;
}

TEST(hidden_ends_naming_the_connector) {
  hidden_case hc = {0};
  CHECK_INT(run_on_loop(hidden_body, &hc), 0);
  if (!hc.ok) fprintf(stderr, "  message: \"%s\" code %lld\n", hc.msg, hc.code);
  CHECK(hc.ok);
}

/* ---------- batch slots and registry close ---------- */

typedef struct collect_case {
  int ok;
  counters coll, elem;
} collect_case;

static void collect_body(void *arg) {
  collect_case *cc = arg;
  gw_xreg reg = {0};
  gw_exchange *c = mk(&reg, &cc->coll, 0, "t", "u", "", "k");
  gw_exchange *e = mk(&reg, &cc->elem, 1, "t", "u", "c", "k");
  gw__x_collect_into(e, c, 3);
  gw__x_unref(c); /* the element's slot keeps the collector alive */
  int ok = cc->coll.freed == 0 && gw__x_client_alive(e) && gw__x_take(e, 10);
  gw__x_reply_json(e, 200, json_object());
  ok &= cc->coll.collected == 1 && cc->coll.last_slot == 3 && cc->coll.freed == 1 && !gw__x_client_alive(e);
  gw__x_reply_json(e, 200, json_object()); /* answered already: dropped */
  ok &= cc->coll.collected == 1;
  gw__x_unref(e);
  cc->ok = ok && cc->elem.freed == 1 && reg.list == NULL;
}

TEST(batch_slot_refs_its_collector) {
  collect_case cc = {0};
  CHECK_INT(run_on_loop(collect_body, &cc), 0);
  CHECK(cc.ok);
}

/* The collector's client left: an element uncollected answers nowhere,
 * and its reference on the collector goes. */
static void uncollect_body(void *arg) {
  collect_case *cc = arg;
  gw_xreg reg = {0};
  gw_exchange *c = mk(&reg, &cc->coll, 0, "t", "u", "", "k");
  gw_exchange *e = mk(&reg, &cc->elem, 1, "t", "u", "c", "k");
  gw__x_collect_into(e, c, 2);
  gw__x_unref(c);
  gw__x_uncollect(e);
  int ok = cc->coll.freed == 1 && !gw__x_client_alive(e) && !gw__x_wanted(e);
  gw__x_uncollect(e); /* once only */
  gw__x_reply_json(e, 200, json_object()); /* nowhere to go: dropped */
  ok &= cc->coll.collected == 0 && cc->coll.freed == 1;
  gw__x_unref(e);
  cc->ok = ok && cc->elem.freed == 1 && reg.list == NULL;
}

TEST(batch_slot_uncollected_answers_nowhere) {
  collect_case cc = {0};
  CHECK_INT(run_on_loop(uncollect_body, &cc), 0);
  CHECK(cc.ok);
}

/* An element uncollected ends like an exchange whose client left: its
 * flow's client_end runs (a notification's forwards end with it), once. */
static void t_client_end(gw_exchange *x) { ((tstate *)x->state)->c->ended++; }

static const gw_flow_ops ending_flow = {.name = "ending", .client_end = t_client_end, .free = t_free};

static void uncollect_end_body(void *arg) {
  collect_case *cc = arg;
  gw_xreg reg = {0};
  gw_exchange *c = mk(&reg, &cc->coll, 0, "t", "u", "", "k");
  tstate *st = calloc(1, sizeof *st);
  st->c = &cc->elem;
  gw_exchange *e = gw__x_new(&reg, NULL, "t", "c", "u", "k", &ending_flow, st);
  gw__x_collect_into(e, c, 0);
  gw__x_unref(c);
  gw__x_uncollect(e);
  gw__x_uncollect(e);
  int ok = cc->elem.ended == 1 && cc->coll.freed == 1;
  gw__x_unref(e);
  cc->ok = ok && cc->elem.freed == 1 && reg.list == NULL;
}

TEST(batch_slot_uncollected_ends_its_flow) {
  collect_case cc = {0};
  CHECK_INT(run_on_loop(uncollect_end_body, &cc), 0);
  CHECK(cc.ok);
}

typedef struct close_case {
  int ok;
  counters c;
} close_case;

static void close_body(void *arg) {
  close_case *cl = arg;
  gw_xreg reg = {0};
  gw_exchange *a = mk(&reg, &cl->c, 0, "t", "u", "c", "k");
  gw_exchange *b = mk(&reg, &cl->c, 1, "t", "u", "c", "k");
  gw__x_reg_close(&reg);
  /* unlinked and ended (revoked), still alive through their own refs */
  int ok = reg.list == NULL && reg.tail == NULL && !a->listed && a->revoked && b->revoked && cl->c.freed == 0;
  gw__x_unref(a);
  gw__x_unref(b);
  cl->ok = ok && cl->c.freed == 2;
}

TEST(registry_close_unlinks_and_ends) {
  close_case cl = {0};
  CHECK_INT(run_on_loop(close_body, &cl), 0);
  CHECK(cl.ok);
}

/* A flow replaced mid-life frees the old state once; the new one goes at
 * the end. */
TEST(set_flow_frees_old_state_once) {
  counters c1 = {0}, c2 = {0};
  gw_xreg reg = {0};
  gw_exchange *x = mk(&reg, &c1, 0, "t", "u", "c", "k");
  tstate *st = calloc(1, sizeof *st);
  st->c = &c2;
  gw__x_set_flow(x, &test_flow, st);
  CHECK_INT(c1.freed, 1);
  gw__x_unref(x);
  CHECK_INT(c1.freed, 1);
  CHECK_INT(c2.freed, 1);
}

/* ---------- the token's expiry: one heap per registry ---------- */

/* A stand-in for the client half: the heap only needs it set (nothing
 * here touches it). */
static char fake_req;

typedef struct expiry_case {
  int ok;
  counters c;
  int64_t armed_at[64];
  int narms;
  int64_t ended_at[64]; /* ident_expires of each exchange ended, in order */
  int nended;
  gw_exchange *kill; /* the end callback drops this one's outside reference (once) */
  gw_exchange *spare; /* ... and unwatches this one (its client half ended meanwhile) */
} expiry_case;

static expiry_case *ec_now;

static void e_arm(gw_xreg *reg, int64_t at) {
  (void)reg;
  if (ec_now->narms < 64) ec_now->armed_at[ec_now->narms++] = at;
}

static void e_end(gw_exchange *x) {
  expiry_case *e = ec_now;
  if (e->nended < 64) e->ended_at[e->nended++] = x->ident_expires;
  x->req = NULL; /* its client half ends */
  if (e->kill) {
    gw_exchange *k = e->kill;
    e->kill = NULL;
    gw__x_unref(k); /* still referenced by the walk: freed after it */
  }
  if (e->spare) {
    e->spare->req = NULL;
    gw__x_expiry_unwatch(e->spare);
    e->spare = NULL;
  }
}

static gw_exchange *watched(gw_xreg *reg, counters *c, int64_t expires) {
  gw_exchange *x = mk(reg, c, 0, "t", "u", "c", "k");
  x->ident_expires = expires;
  x->req = (gw_req *)&fake_req;
  return gw__x_expiry_watch(x) == 0 ? x : NULL;
}

static void expiry_order_body(void *arg) {
  expiry_case *e = ec_now = arg;
  gw_xreg reg = {0};
  reg.arm = e_arm;
  static const int64_t when[] = {50, 20, 90, 20, 70, 10, 60, 30, 80, 40, 100, 15, 55, 5, 95};
  enum { N = sizeof when / sizeof when[0] };
  gw_exchange *x[N];
  int ok = 1;
  for (int i = 0; i < N; i++) ok &= (x[i] = watched(&reg, &e->c, when[i])) != NULL;
  /* the timer moved only for an earlier deadline: 50, 20, 10, 5 */
  ok &= e->narms == 4 && e->armed_at[0] == 50 && e->armed_at[1] == 20 && e->armed_at[2] == 10 &&
        e->armed_at[3] == 5 && reg.armed == 5 && gw__x_expiry_next(&reg) == 5;
  /* watched again: nothing; no expiry or no client: never watched */
  ok &= gw__x_expiry_watch(x[0]) == 0 && reg.ndue == N;
  gw_exchange *forever = mk(&reg, &e->c, 0, "t", "u", "c", "k");
  forever->req = (gw_req *)&fake_req;
  gw_exchange *clientless = mk(&reg, &e->c, 0, "t", "u", "c", "k");
  clientless->ident_expires = 1;
  ok &= gw__x_expiry_watch(forever) == 0 && gw__x_expiry_watch(clientless) == 0 && reg.ndue == N &&
        !forever->due_at && !clientless->due_at;
  /* leaving from the middle, the top and the end keeps the order */
  gw__x_expiry_unwatch(x[4]);  /* 70 */
  gw__x_expiry_unwatch(x[13]); /* 5, the earliest */
  gw__x_expiry_unwatch(x[10]); /* 100 */
  gw__x_expiry_unwatch(x[10]); /* twice: nothing */
  ok &= reg.ndue == N - 3 && gw__x_expiry_next(&reg) == 10;
  /* freed while watched: it leaves the heap */
  gw__x_unref(x[7]); /* 30 */
  x[7] = NULL;
  ok &= reg.ndue == N - 4;
  /* fired at 40: 10, 15, 20, 20, 40 end, in that order; then armed for 50 */
  e->narms = 0;
  gw__x_expiry_fire(&reg, 40, e_end);
  ok &= e->nended == 5 && e->ended_at[0] == 10 && e->ended_at[1] == 15 && e->ended_at[2] == 20 &&
        e->ended_at[3] == 20 && e->ended_at[4] == 40;
  ok &= reg.ndue == N - 9 && gw__x_expiry_next(&reg) == 50 && e->narms == 1 && e->armed_at[0] == 50 && reg.armed == 50;
  /* fired early (a capped timer): nothing ends, the timer is set again */
  gw__x_expiry_fire(&reg, 49, e_end);
  ok &= e->nended == 5 && e->narms == 2 && e->armed_at[1] == 50;
  /* the rest at once: 50 55 60 80 90 95 (70 and 100 left the heap) */
  gw__x_expiry_fire(&reg, 1000, e_end);
  ok &= e->nended == 11 && e->ended_at[5] == 50 && e->ended_at[10] == 95 && reg.ndue == 0 && reg.armed == 0 &&
        e->narms == 2;
  for (int i = 0; i < N; i++)
    if (x[i]) gw__x_unref(x[i]);
  gw__x_unref(forever);
  gw__x_unref(clientless);
  gw__x_reg_close(&reg); /* the heap's memory */
  e->ok = ok && e->c.freed == N + 2 && reg.due == NULL;
}

TEST(expiry_heap_ends_the_due_in_order) {
  expiry_case e = {0};
  CHECK_INT(run_on_loop(expiry_order_body, &e), 0);
  CHECK(e.ok);
}

/* Ending one due exchange frees another due one (its last outside
 * reference) and ends a third's client half: the walk holds the due ones
 * until every ending ran, the one unwatched meanwhile is not ended, and
 * an exchange ended earlier (a revocation first) is not in the heap. */
static void expiry_walk_body(void *arg) {
  expiry_case *e = ec_now = arg;
  gw_xreg reg = {0};
  gw_exchange *a = watched(&reg, &e->c, 10), *b = watched(&reg, &e->c, 11), *d = watched(&reg, &e->c, 12);
  gw_exchange *revoked = watched(&reg, &e->c, 9);
  gw_exchange *later = watched(&reg, &e->c, 50);
  /* a revocation ended revoked's client half first */
  revoked->req = NULL;
  gw__x_expiry_unwatch(revoked);
  e->kill = b;
  e->spare = later;
  gw__x_expiry_fire(&reg, 20, e_end);
  /* a, b, d ended once each (b freed after the walk); revoked and later not */
  int ok = e->nended == 3 && e->c.freed == 1 && reg.ndue == 0;
  gw__x_expiry_fire(&reg, 100, e_end);
  ok &= e->nended == 3;
  gw__x_unref(a);
  gw__x_unref(d);
  gw__x_unref(revoked);
  gw__x_unref(later);
  gw__x_reg_close(&reg);
  e->ok = ok && e->c.freed == 5;
}

TEST(expiry_walk_holds_what_it_ends) {
  expiry_case e = {0};
  CHECK_INT(run_on_loop(expiry_walk_body, &e), 0);
  CHECK(e.ok);
}


/* 10,000 streams: the heap grows past its first capacity, keeps its order
 * and every exchange's place through removals from anywhere, and a walk
 * whose endings unwatch others still in the heap (their client halves
 * ending), free due ones and watch new ones (due at once: the next fire
 * ends them) leaves a heap that is still one. */
#define BIG 10000

static bool heap_ok(const gw_xreg *reg) {
  for (size_t i = 0; i < reg->ndue; i++) {
    if (reg->due[i]->due_at != i + 1) return false;
    if (i && reg->due[(i - 1) / 2]->ident_expires > reg->due[i]->ident_expires) return false;
  }
  return true;
}

typedef struct big_case {
  int ok;
  counters c;
  gw_xreg *reg;
  gw_exchange **x;
  int64_t last; /* the deadline ended last: never more than the next */
  int ended, made, spared;
  gw_exchange *news[64];
} big_case;

static big_case *bc_now;

static void big_end(gw_exchange *x) {
  big_case *b = bc_now;
  if (!x->req) return; /* its client half ended in an earlier ending of this walk */
  if (x->ident_expires < b->last) b->ok = 0;
  b->last = x->ident_expires;
  x->req = NULL;
  b->ended++;
  gw__x_expiry_unwatch(x); /* nothing (popped already) */
  /* every 7th ending: another stream's client leaves (still in the heap,
   * or popped with this one); every 11th: a new stream opens, due already */
  if (b->ended % 7 == 0) {
    gw_exchange *o = b->x[(b->ended * 7919) % BIG];
    if (o->req) b->spared++; /* not ended yet: it never will be */
    o->req = NULL;
    gw__x_expiry_unwatch(o);
  }
  if (b->ended % 11 == 0 && b->made < 64) {
    gw_exchange *n = watched(b->reg, &b->c, x->ident_expires);
    if (n) b->news[b->made++] = n;
    else b->ok = 0;
  }
}

static void big_body(void *arg) {
  big_case *b = bc_now = arg;
  gw_xreg reg = {0};
  b->reg = &reg;
  b->x = calloc(BIG, sizeof *b->x);
  int ok = b->x != NULL;
  uint32_t seed = 12345;
  for (int i = 0; ok && i < BIG; i++) {
    seed = seed * 1103515245u + 12345u;
    ok &= (b->x[i] = watched(&reg, &b->c, 1 + (int64_t)(seed >> 8) % 5000)) != NULL;
  }
  ok &= reg.ndue == BIG && reg.capdue >= BIG && heap_ok(&reg);
  /* a third leave from anywhere (their clients left) */
  for (int i = 0; ok && i < BIG; i += 3) {
    b->x[i]->req = NULL;
    gw__x_expiry_unwatch(b->x[i]);
  }
  ok &= heap_ok(&reg) && reg.ndue == BIG - (BIG + 2) / 3;
  /* the walk, in ten steps */
  for (int64_t t = 500; ok && t <= 5000; t += 500) {
    b->last = 0;
    gw__x_expiry_fire(&reg, t, big_end);
    ok &= heap_ok(&reg);
  }
  gw__x_expiry_fire(&reg, 5000, big_end); /* the new ones opened by the last step */
  ok &= reg.ndue == 0 && b->made > 0 && b->ended == BIG - (BIG + 2) / 3 - b->spared + b->made;
  for (int i = 0; i < BIG; i++)
    if (b->x[i]) gw__x_unref(b->x[i]);
  for (int i = 0; i < b->made; i++) gw__x_unref(b->news[i]);
  free(b->x);
  gw__x_reg_close(&reg);
  b->ok = b->ok && ok && b->c.freed == BIG + b->made && reg.due == NULL;
}

TEST(expiry_heap_of_ten_thousand_streams) {
  big_case b = {.ok = 1};
  CHECK_INT(run_on_loop(big_body, &b), 0);
  CHECK(b.ok);
}

int main(void) {
  RUN(foreach_holds_references_and_skips_created);
  RUN(foreach_callback_may_free_everything);
  RUN(revoke_matches_all_set_fields_once);
  RUN(batch_slot_refs_its_collector);
  RUN(batch_slot_uncollected_answers_nowhere);
  RUN(batch_slot_uncollected_ends_its_flow);
  RUN(registry_close_unlinks_and_ends);
  RUN(set_flow_frees_old_state_once);
  RUN(hidden_ends_naming_the_connector);
  RUN(expiry_heap_ends_the_due_in_order);
  RUN(expiry_walk_holds_what_it_ends);
  RUN(expiry_heap_of_ten_thousand_streams);
  return UNIT_DONE();
}
