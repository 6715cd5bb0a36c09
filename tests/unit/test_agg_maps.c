/* Unit tests of the aggregated endpoint's resource routes
 * (gateway/mcp/agg_maps.c) without a server: a bare server, loop and
 * process-wide state, and exchanges that note URIs and templates, route
 * reads (gw__agg_uri_route) and pass an upstream's
 * notifications/resources/updated (gw__agg_rewrite). Both lookups run
 * under the process-wide maps_mu for every message: their cost, counted
 * in sh.uri_steps (keys and nodes visited), must not grow with the
 * session's map — an upstream listing agg_uri_map_max URIs and then
 * flooding updates would make every loop's aggregated traffic wait. And
 * on random notes (prefixes that overlap, split and nest; non-ASCII; long;
 * caps reached) every route and update agrees with a naive walk of every
 * key, the lookup the radix tree replaced. The sweep of dead sessions'
 * maps, on a real store: it reads the store without maps_mu, and drops
 * only the maps of sessions gone or expired, never a live one's nor one
 * made again while it read. */
#include <unistd.h>
#include <uv.h>

#include "gateway/base/log.h"
#include <stdatomic.h>

#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/mcp_session.h"
#include "store/store.h"
#include "unit.h"

static char tmpdir[256];
static st_store *st;

static gw_server srv;
static gw_mcp_shared sh;
static gw_loop lp;

static void setup(void) {
  memset(&srv, 0, sizeof srv);
  memset(&sh, 0, sizeof sh);
  memset(&lp, 0, sizeof lp);
  srv.cfg.agg_uri_map_max = 1000000;
  srv.cfg.agg_uri_map_bytes = (int64_t)1 << 30;
  srv.cfg.sessions_per_user_max = 64;
  uv_mutex_init(&sh.maps_mu);
  srv.mcp = &sh;
  lp.srv = &srv;
}

static void teardown(void) {
  gw__agg_forget_owner(&sh, NULL, NULL);
  uv_mutex_destroy(&sh.maps_mu);
}

/* An exchange of alice's session mcps_t1 with connector. */
static gw_exchange *xch(const char *connector) {
  gw_exchange *x = calloc(1, sizeof *x);
  x->lp = &lp;
  snprintf(x->tenant, sizeof x->tenant, "acme");
  snprintf(x->user, sizeof x->user, "alice");
  snprintf(x->sid, sizeof x->sid, "mcps_t1");
  snprintf(x->connector, sizeof x->connector, "%s", connector);
  x->sess.created_ms = 1;
  return x;
}

/* The steps of routing a read of uri; its result in *rc, out. */
static uint64_t route(gw_exchange *x, const char *uri, int *rc, char *out, size_t outsz) {
  uint64_t before = sh.uri_steps;
  *rc = gw__agg_uri_route(x, uri, out, outsz);
  return sh.uri_steps - before;
}

/* The steps of passing x's notifications/resources/updated of uri; whether it was dropped in *dropped. */
static uint64_t updated(gw_exchange *x, const char *uri, bool *dropped) {
  json_t *m = json_pack("{s:s,s:s,s:{s:s}}", "jsonrpc", "2.0", "method", "notifications/resources/updated", "params",
                        "uri", uri);
  uint64_t before = sh.uri_steps;
  gw__agg_rewrite(x, m);
  uint64_t n = sh.uri_steps - before;
  *dropped = json_object_size(m) == 0;
  json_decref(m);
  return n;
}

TEST(uri_lookups_cost_the_same_with_ten_or_ten_thousand_uris) {
  setup();
  gw_exchange *ra = xch("ra"), *rb = xch("rb");
  gw__agg_uri_note(ra, "ra://t/{id}", true);
  gw__agg_uri_note(rb, "rb://x/{id}", true);
  for (int i = 0; i < 10; i++) {
    char u[64];
    snprintf(u, sizeof u, "ra://r/%d", i);
    gw__agg_uri_note(ra, u, false);
  }
  int rc;
  char out[200];
  bool dropped;
  uint64_t r0 = route(ra, "ra://r/3", &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  CHECK_STR(out, "ra");
  uint64_t u0 = updated(rb, "ra://t/5", &dropped);
  CHECK(dropped); /* ra's by its template: not rb's to announce */
  uint64_t m0 = updated(ra, "ra://t/5", &dropped);
  CHECK(!dropped);

  /* the upstreams list 10,000 more URIs */
  for (int i = 0; i < 10000; i++) {
    char u[64];
    snprintf(u, sizeof u, "r%c://big/%d", i % 2 ? 'a' : 'b', i);
    gw__agg_uri_note(i % 2 ? ra : rb, u, false);
  }
  uint64_t r1 = route(ra, "ra://r/3", &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  uint64_t u1 = updated(rb, "ra://t/5", &dropped);
  CHECK(dropped);
  uint64_t m1 = updated(ra, "ra://t/5", &dropped);
  CHECK(!dropped);
  CHECK_INT(r1, r0);
  CHECK_INT(u1, u0);
  CHECK_INT(m1, m0);

  /* and 1,000 templates of another scheme: a lookup walks its own URI's
   * prefixes, not the templates */
  for (int i = 0; i < 1000; i++) {
    char u[64];
    snprintf(u, sizeof u, "rc://p%d/{x}", i);
    gw__agg_uri_note(rb, u, true);
  }
  uint64_t r2 = route(ra, "ra://r/3", &rc, out, sizeof out);
  uint64_t u2 = updated(rb, "ra://t/5", &dropped);
  CHECK(dropped);
  CHECK(r2 <= 10 * (strlen("ra://r/3") + 1));
  CHECK(u2 <= 10 * (strlen("ra://t/5") + 1));
  CHECK_INT(route(rb, "rc://p7/abc", &rc, out, sizeof out) <= 10 * (strlen("rc://p7/abc") + 1), 1);
  CHECK_INT(rc, 1);
  CHECK_STR(out, "rb");
  free(ra);
  free(rb);
  teardown();
}

TEST(templates_nested_in_a_uri_cost_at_most_its_length) {
  setup();
  gw_exchange *ra = xch("ra"), *rb = xch("rb");
  /* ra lists 200 templates, each a prefix of the next: a URI under all of
   * them meets each once */
  char t[300] = "ra:";
  for (int i = 0; i < 200; i++) {
    size_t n = strlen(t);
    t[n] = 'a';
    t[n + 1] = 0;
    char tpl[320];
    snprintf(tpl, sizeof tpl, "%s{x}", t);
    gw__agg_uri_note(ra, tpl, true);
  }
  char uri[320];
  snprintf(uri, sizeof uri, "%sz", t);
  int rc;
  char out[200];
  bool dropped;
  uint64_t r = route(ra, uri, &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  CHECK_STR(out, "ra");
  CHECK(r <= 10 * (strlen(uri) + 1));
  uint64_t u = updated(rb, uri, &dropped);
  CHECK(dropped);
  CHECK(u <= 10 * (strlen(uri) + 1));
  free(ra);
  free(rb);
  teardown();
}

TEST(routes_keep_their_rules) {
  setup();
  gw_exchange *ra = xch("ra"), *rb = xch("rb"), *rc_ = xch("rc");
  int rc;
  char out[200];
  bool dropped;
  gw__agg_uri_note(ra, "file:///a/{p}", true);
  gw__agg_uri_note(ra, "{x}", true);          /* no scheme in its prefix: kept out */
  gw__agg_uri_note(rb, "{scheme}://x", true); /* likewise */
  gw__agg_uri_note(rb, "file:///a/b.txt", false);
  gw__agg_uri_note(rb, "file:///z/only-b", false);
  route(ra, "file:///a/b.txt", &rc, out, sizeof out); /* exact for rb, ra's template covers it */
  CHECK_INT(rc, -1);
  CHECK(strstr(out, "ra") && strstr(out, "rb"));
  route(ra, "file:///a/c.txt", &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  CHECK_STR(out, "ra");
  route(ra, "file:///z/only-b", &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  CHECK_STR(out, "rb");
  route(ra, "https://nobody/", &rc, out, sizeof out);
  CHECK_INT(rc, 0);
  /* an exact URI several connectors list */
  gw__agg_uri_note(ra, "file:///z/only-b", false);
  route(rb, "file:///z/only-b", &rc, out, sizeof out);
  CHECK_INT(rc, -1);
  /* updates: one's own (exact or by template), or one nobody else offers */
  updated(ra, "file:///a/c.txt", &dropped);
  CHECK(!dropped);
  updated(rb, "file:///a/c.txt", &dropped);
  CHECK(dropped);
  updated(rb, "file:///a/b.txt", &dropped); /* rb's exactly, though ra's template covers it */
  CHECK(!dropped);
  updated(rc_, "https://nobody/", &dropped);
  CHECK(!dropped);
  updated(rc_, "file:///z/only-b", &dropped);
  CHECK(dropped);
  /* the same template again, from another connector: both */
  gw__agg_uri_note(rc_, "file:///a/{p}", true);
  route(ra, "file:///a/c.txt", &rc, out, sizeof out);
  CHECK_INT(rc, -1);
  updated(rc_, "file:///a/c.txt", &dropped);
  CHECK(!dropped);
  /* another session has its own map */
  gw_exchange *other = xch("rb");
  snprintf(other->sid, sizeof other->sid, "mcps_t2");
  route(other, "file:///a/c.txt", &rc, out, sizeof out);
  CHECK_INT(rc, 0);
  free(ra);
  free(rb);
  free(rc_);
  free(other);
  teardown();
}

TEST(uri_map_caps_count_templates_and_uris) {
  setup();
  srv.cfg.agg_uri_map_max = 16;
  gw_exchange *ra = xch("ra");
  for (int i = 0; i < 10; i++) {
    char u[64];
    snprintf(u, sizeof u, "ra://t%d/{x}", i);
    gw__agg_uri_note(ra, u, true);
  }
  for (int i = 0; i < 10; i++) {
    char u[64];
    snprintf(u, sizeof u, "ra://r/%d", i);
    gw__agg_uri_note(ra, u, false);
  }
  int rc;
  char out[200];
  route(ra, "ra://t9/a", &rc, out, sizeof out);
  CHECK_INT(rc, 1);
  route(ra, "ra://r/4", &rc, out, sizeof out); /* the 15th key: the entry counts as one */
  CHECK_INT(rc, 1);
  route(ra, "ra://r/5", &rc, out, sizeof out); /* past the cap: not noted */
  CHECK_INT(rc, 0);
  free(ra);
  teardown();
}


/* A naive model of the routes, the walk the radix tree replaced: keys
 * "U"uri and "T"prefix, each with the connectors that noted it (at most
 * 8), the same caps; a URI is routed by its exact key and by every "T"
 * key it starts with. One difference, kept: a "U" key cut at 2,000 bytes
 * inside a character is no JSON key and is not noted, while a template's
 * prefix so cut is (the tree takes bytes; the old map refused it too). */
typedef struct {
  char key[2100];
  char who[8][8];
  int n;
} model_key;

typedef struct {
  model_key *k;
  size_t n, cap, bytes;
  bool full;
} model;

static model_key *model_find(model *m, const char *key) {
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->k[i].key, key)) return &m->k[i];
  return NULL;
}

static void model_note(model *m, const char *connector, const char *uri, bool is_template) {
  char key[2100];
  if (!*uri) return;
  if (is_template) {
    size_t n = strcspn(uri, "{");
    if (!memchr(uri, ':', n)) return;
    snprintf(key, sizeof key, "T%.*s", (int)(n < 2000 ? n : 2000), uri);
  } else {
    snprintf(key, sizeof key, "U%.2000s", uri);
  }
  model_key *k = model_find(m, key);
  if (k) {
    for (int i = 0; i < k->n; i++)
      if (!strcmp(k->who[i], connector)) return;
    if (k->n < 8) snprintf(k->who[k->n++], 8, "%.7s", connector);
    return;
  }
  size_t klen = strlen(key);
  if (1 + m->n + m->full >= (size_t)srv.cfg.agg_uri_map_max || m->bytes + klen > (size_t)srv.cfg.agg_uri_map_bytes) {
    m->full = true;
    return;
  }
  json_t *valid = json_string(key);
  json_decref(valid);
  if (!is_template && !valid) return; /* cut inside a character: no JSON key (the map's) */
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 64;
    m->k = realloc(m->k, m->cap * sizeof *m->k);
  }
  k = &m->k[m->n++];
  memset(k, 0, sizeof *k);
  snprintf(k->key, sizeof k->key, "%s", key);
  snprintf(k->who[0], 8, "%.7s", connector);
  k->n = 1;
  m->bytes += klen;
}

/* The connectors offering uri, sorted and joined into out; how many. */
static int model_route(model *m, const char *uri, char *out) {
  char key[2100];
  snprintf(key, sizeof key, "U%.2000s", uri);
  bool has[3] = {false, false, false};
  for (size_t i = 0; i < m->n; i++) {
    const char *k = m->k[i].key;
    bool hit = k[0] == 'U' ? !strcmp(k, key) : !strncmp(uri, k + 1, strlen(k + 1));
    if (hit)
      for (int j = 0; j < m->k[i].n; j++) has[m->k[i].who[j][1] - 'a'] = true;
  }
  int n = 0;
  out[0] = 0;
  for (int j = 0; j < 3; j++)
    if (has[j]) {
      strcat(out, n ? ",r" : "r");
      size_t l = strlen(out);
      out[l] = (char)('a' + j);
      out[l + 1] = 0;
      n++;
    }
  return n;
}

/* The route's connectors as the model prints them (sorted, no spaces). */
static void sorted_names(const char *in, char *out) {
  bool has[3] = {false, false, false};
  for (const char *p = in; (p = strchr(p, 'r')); p++)
    if (p[1] >= 'a' && p[1] <= 'c') has[p[1] - 'a'] = true;
  out[0] = 0;
  int n = 0;
  for (int j = 0; j < 3; j++)
    if (has[j]) {
      size_t l = strlen(out);
      snprintf(out + l, 8, "%sr%c", n++ ? "," : "", 'a' + j);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* A random string (valid UTF-8, as JSON strings are) over few
 * characters: overlapping prefixes, splits, ':' and '{' where they
 * matter, two characters sharing their first byte; sometimes long. */
static void rnd_str(char *s, size_t cap) {
  static const char *const alpha[] = {"a", "b", ":", "/", "{", "\xc3\xa9", "\xc3\xa8", "a", "b", ":"};
  size_t n = rnd(10) == 0 ? 1990 + rnd(30) : rnd(12), i = 0;
  if (n + 2 >= cap) n = cap - 3;
  if (rnd(2)) { /* a common prefix, so many keys share nodes */
    static const char *const pre[] = {"a:", "a:b", "ab:", "a:/", "a"};
    const char *p = pre[rnd(5)];
    for (; *p && i < n; p++) s[i++] = *p;
  }
  while (i < n) {
    const char *c = alpha[rnd(sizeof alpha / sizeof *alpha)];
    while (*c) s[i++] = *c++;
  }
  s[i] = 0;
}

TEST(routes_match_a_walk_of_every_key_on_random_input) {
  gw_log_level was = gw_log_get_level();
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1)); /* a warning per shared URI */
  for (int round = 0; round < 300; round++) {
    setup();
    srv.cfg.agg_uri_map_max = round % 3 == 0 ? 1 + rnd(40) : 1000000;
    srv.cfg.agg_uri_map_bytes = round % 4 == 0 ? rnd(6000) : (int64_t)1 << 30;
    gw_exchange *x[3] = {xch("ra"), xch("rb"), xch("rc")};
    model m = {0};
    static char s[2100], out[200], want[64], got[64];
    for (int op = 0; op < 400; op++) {
      rnd_str(s, sizeof s);
      int c = (int)rnd(3);
      if (rnd(3)) {
        bool tpl = rnd(2);
        gw__agg_uri_note(x[c], s, tpl);
        model_note(&m, x[c]->connector, s, tpl);
        continue;
      }
      int n = model_route(&m, s, want);
      int rc = gw__agg_uri_route(x[c], s, out, sizeof out);
      sorted_names(out, got);
      if (rc != (n > 1 ? -1 : n) || strcmp(got, n ? want : "")) {
        fprintf(stderr, "  round %d op %d: uri \"%.40s\" (%zu bytes): route %d \"%s\", the walk %d \"%s\"\n", round,
                op, s, strlen(s), rc, got, n, want);
        CHECK(0);
      }
      bool dropped;
      updated(x[c], s, &dropped);
      bool mine = strstr(want, x[c]->connector) != NULL; /* its own, or nobody's: passed */
      CHECK_INT(dropped, !(mine || n == 0));
    }
    free(m.k);
    for (int i = 0; i < 3; i++) free(x[i]);
    teardown();
  }
  gw_log_set_level(was);
}

/* ---- the sweep ---- */

#define NOW_MS 1800000000000LL
static const gw_session_limits lim = {86400000, 7 * 86400000LL, 64, 60000};

/* Sessions of alice in the store: "mcps_old" created past the max age. */
static int job_sessions(st_txn *txn, void *arg) {
  for (const char *const *id = arg; *id; id++) {
    gw_session s = {0};
    snprintf(s.tenant, sizeof s.tenant, "acme");
    snprintf(s.user, sizeof s.user, "alice");
    snprintf(s.version, sizeof s.version, "2025-11-25");
    s.created_ms = strcmp(*id, "mcps_old") ? NOW_MS - 1000 : NOW_MS - 8 * 86400000LL;
    int rc = gw_session_put(txn, *id, &s, "2026-12-06T00:00:00Z");
    if (rc) return rc;
  }
  return 0;
}

/* Session sid's maps: a route for ra://<sid>, progress token 7. */
static void note_maps(const char *sid) {
  gw_exchange *x = xch("ra");
  char uri[120];
  snprintf(x->sid, sizeof x->sid, "%s", sid);
  snprintf(uri, sizeof uri, "ra://%s", sid);
  gw__agg_uri_note(x, uri, false);
  json_t *tok = json_integer(7);
  gw__agg_progress_note(x, tok);
  json_decref(tok);
  free(x);
}

/* Whether session sid's route for ra://<sid> and its progress token are kept. */
static bool routes(const char *sid) {
  gw_exchange *x = xch("ra");
  char uri[120], out[100];
  snprintf(x->sid, sizeof x->sid, "%s", sid);
  snprintf(uri, sizeof uri, "ra://%s", sid);
  bool r = gw__agg_uri_route(x, uri, out, sizeof out) == 1;
  free(x);
  return r;
}

static bool has_token(const char *sid) {
  gw_exchange *x = xch("ra");
  snprintf(x->sid, sizeof x->sid, "%s", sid);
  json_t *m = json_pack("{s:s,s:s,s:{s:i,s:i}}", "jsonrpc", "2.0", "method", "notifications/progress", "params",
                        "progressToken", 7, "progress", 1);
  gw__agg_rewrite(x, m);
  bool kept = json_object_size(m) != 0;
  json_decref(m);
  free(x);
  return kept;
}

static void sweep_now(void) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return;
  gw__agg_sweep(&sh, &lim, txn, NOW_MS);
  st_txn_end(txn);
}

/* The store holds mcps_live (and mcps_old, past its max age); the others
 * are gone. Between the sweep's look at the maps and its drop: mcps_again
 * is deleted and its maps made again (a request of the gone session that
 * was under way), mcps_meanwhile's maps go (a revocation), mcps_late's
 * are made. The drop takes exactly the maps it checked: gone's and
 * old's; the next sweep judges those made meanwhile. */
TEST(the_sweep_drops_the_maps_it_found_dead_only) {
  setup();
  const char *stored[] = {"mcps_live", "mcps_old", NULL};
  CHECK_INT(st_write_sync(st, job_sessions, (void *)stored), 0);
  const char *noted[] = {"mcps_live", "mcps_old", "mcps_gone", "mcps_again", "mcps_meanwhile"};
  for (size_t i = 0; i < 5; i++) note_maps(noted[i]);
  CHECK_INT(gw__agg_uri_maps(&sh), 5);

  gw_agg_sweep *sw = gw__agg_sweep_begin(&sh);
  CHECK(sw != NULL);
  gw__agg_forget_session(&sh, "mcps_again");
  note_maps("mcps_again");
  gw__agg_forget_session(&sh, "mcps_meanwhile");
  note_maps("mcps_late");
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  gw__agg_sweep_check(sw, &lim, txn, NOW_MS);
  st_txn_end(txn);
  CHECK_INT(gw__agg_sweep_end(&sh, sw), 4); /* gone's and old's, in both indexes */

  CHECK(routes("mcps_live") && has_token("mcps_live"));
  CHECK(routes("mcps_again") && has_token("mcps_again"));
  CHECK(routes("mcps_late") && has_token("mcps_late"));
  CHECK(!routes("mcps_gone") && !has_token("mcps_gone"));
  CHECK(!routes("mcps_old") && !has_token("mcps_old"));
  CHECK(!routes("mcps_meanwhile"));
  CHECK_INT(gw__agg_uri_maps(&sh), 3);
  sweep_now();
  CHECK_INT(gw__agg_uri_maps(&sh), 1);
  CHECK(routes("mcps_live") && has_token("mcps_live"));
  /* nothing to sweep: no store read, nothing dropped */
  gw__agg_forget_owner(&sh, "acme", NULL);
  CHECK(gw__agg_sweep_begin(&sh) == NULL);
  teardown();
}

/* More sessions than one hold of maps_mu judges (SWEEP_BATCH), entries in
 * one index or both: every dead one's go, every live one's stay. */
TEST(a_long_sweep_drops_every_dead_session_and_no_live_one) {
  setup();
  enum { N = 3000 };
  static char ids[N][32];
  static const char *stored[N / 2 + 1];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "mcps_s%04d", i);
    if (i % 2 == 0) stored[i / 2] = ids[i];
  }
  stored[N / 2] = NULL;
  srv.cfg.sessions_per_user_max = N;
  CHECK_INT(st_write_sync(st, job_sessions, (void *)stored), 0);
  for (int i = 0; i < N; i++) {
    gw_exchange *x = xch("ra");
    snprintf(x->sid, sizeof x->sid, "%.31s", ids[i]);
    char uri[64];
    snprintf(uri, sizeof uri, "ra://%.31s", ids[i]);
    if (i % 3) gw__agg_uri_note(x, uri, false); /* every third: questions only */
    json_t *tok = json_integer(7);
    if (i % 5) gw__agg_progress_note(x, tok); /* every fifth: routes only */
    json_decref(tok);
    free(x);
  }
  sweep_now();
  for (int i = 0; i < N; i++) {
    bool live = i % 2 == 0;
    CHECK_INT(routes(ids[i]), live && i % 3);
    CHECK_INT(has_token(ids[i]), live && i % 5);
  }
  teardown();
}

/* Session sid's maps (note_maps), the session created at created_ms. */
static void note_maps_at(const char *sid, int64_t created_ms) {
  gw_exchange *x = xch("ra");
  char uri[120];
  snprintf(x->sid, sizeof x->sid, "%s", sid);
  snprintf(uri, sizeof uri, "ra://%s", sid);
  x->sess.created_ms = created_ms;
  gw__agg_uri_note(x, uri, false);
  json_t *tok = json_integer(7);
  gw__agg_progress_note(x, tok);
  json_decref(tok);
  free(x);
}

/* A request that loaded its session before the store evicted it notes
 * into the maps after: at the user's cap, with every entry of theirs
 * created after it, its session is the one the store evicted — its entry
 * is not made again, and no live session's maps are pushed out for it. */
TEST(a_late_note_of_the_evicted_session_pushes_out_no_live_one) {
  setup();
  srv.cfg.sessions_per_user_max = 2;
  note_maps_at("mcps_one", 1000);
  note_maps_at("mcps_two", 2000);
  note_maps_at("mcps_three", 3000); /* the store evicted one: its maps go */
  CHECK(!routes("mcps_one") && !has_token("mcps_one"));
  note_maps_at("mcps_one", 1000); /* its late request */
  CHECK(routes("mcps_two") && has_token("mcps_two"));
  CHECK(routes("mcps_three") && has_token("mcps_three"));
  CHECK(!routes("mcps_one") && !has_token("mcps_one"));
  CHECK_INT(gw__agg_uri_maps(&sh), 2);
  /* one created after the oldest still pushes it out: the store kept it */
  note_maps_at("mcps_four", 4000);
  CHECK(!routes("mcps_two") && routes("mcps_three") && routes("mcps_four"));
  teardown();
}

/* Between the sweep's look and its drop, every map is forgotten at once
 * (what shutdown does) and the same sessions' maps are made again, in new
 * indexes: the drop finds none of the entries it checked and takes
 * nothing; the next sweep judges the new ones. */
TEST(the_sweep_after_everything_was_forgotten_takes_nothing) {
  setup();
  const char *stored[] = {"mcps_live", NULL};
  CHECK_INT(st_write_sync(st, job_sessions, (void *)stored), 0);
  note_maps("mcps_live");
  note_maps("mcps_gone");
  gw_agg_sweep *sw = gw__agg_sweep_begin(&sh);
  CHECK(sw != NULL);
  gw__agg_forget_owner(&sh, NULL, NULL);
  note_maps("mcps_gone");
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  gw__agg_sweep_check(sw, &lim, txn, NOW_MS);
  st_txn_end(txn);
  CHECK_INT(gw__agg_sweep_end(&sh, sw), 0);
  CHECK(routes("mcps_gone") && has_token("mcps_gone"));
  sweep_now();
  CHECK(!routes("mcps_gone") && !has_token("mcps_gone"));
  /* forgotten with nothing made again: the drop meets no index at all */
  note_maps("mcps_gone");
  sw = gw__agg_sweep_begin(&sh);
  CHECK(sw != NULL);
  gw__agg_forget_owner(&sh, NULL, NULL);
  CHECK_INT(st_read_begin(st, &txn), 0);
  gw__agg_sweep_check(sw, &lim, txn, NOW_MS);
  st_txn_end(txn);
  CHECK_INT(gw__agg_sweep_end(&sh, sw), 0);
  teardown();
}

/* Another loop's requests run while the primary sweeps: they make, read
 * and forget maps of live and gone sessions (their frees after maps_mu,
 * the sweep's drops in batches). Run under ASan (and TSan): no entry is
 * reached after it is freed, and a live session's maps stay. */
enum { RACE_N = 1500 };
static char race_ids[RACE_N][32];
static atomic_int race_stop;

static void race_other_loop(void *arg) {
  (void)arg;
  for (unsigned round = 0; !atomic_load(&race_stop); round++) {
    for (int i = 0; i < RACE_N; i += 7) {
      const char *sid = race_ids[(i + round) % RACE_N];
      note_maps(sid);
      (void)routes(sid);
      (void)has_token(sid);
      if ((i + round) % 3 == 1) gw__agg_forget_session(&sh, sid);
    }
  }
}

TEST(the_sweep_and_other_loops_requests_together) {
  setup();
  static const char *stored[RACE_N / 2 + 2];
  for (int i = 0; i < RACE_N; i++) {
    snprintf(race_ids[i], sizeof race_ids[i], "mcps_r%04d", i);
    if (i % 2 == 0) stored[i / 2] = race_ids[i];
  }
  stored[RACE_N / 2] = "mcps_keep";
  stored[RACE_N / 2 + 1] = NULL;
  srv.cfg.sessions_per_user_max = 4 * RACE_N;
  CHECK_INT(st_write_sync(st, job_sessions, (void *)stored), 0);
  for (int i = 0; i < RACE_N; i++) note_maps(race_ids[i]);
  note_maps("mcps_keep");
  atomic_store(&race_stop, 0);
  uv_thread_t th;
  CHECK_INT(uv_thread_create(&th, race_other_loop, NULL), 0);
  for (int k = 0; k < 30; k++) sweep_now();
  atomic_store(&race_stop, 1);
  uv_thread_join(&th);
  CHECK(routes("mcps_keep") && has_token("mcps_keep"));
  sweep_now();
  for (int i = 1; i < RACE_N; i += 2) CHECK(!routes(race_ids[i]) && !has_token(race_ids[i]));
  teardown();
}

int main(void) {
  gw_log_set_level(GW_LOG_WARN); /* the dropped progress of gone sessions is logged (info) */
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mcpgate-aggmaps-XXXXXX");
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
  RUN(uri_lookups_cost_the_same_with_ten_or_ten_thousand_uris);
  RUN(templates_nested_in_a_uri_cost_at_most_its_length);
  RUN(routes_keep_their_rules);
  RUN(uri_map_caps_count_templates_and_uris);
  RUN(routes_match_a_walk_of_every_key_on_random_input);
  RUN(the_sweep_drops_the_maps_it_found_dead_only);
  RUN(a_long_sweep_drops_every_dead_session_and_no_live_one);
  RUN(a_late_note_of_the_evicted_session_pushes_out_no_live_one);
  RUN(the_sweep_after_everything_was_forgotten_takes_nothing);
  RUN(the_sweep_and_other_loops_requests_together);
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return UNIT_DONE();
}
