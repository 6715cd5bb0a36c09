/* Unit tests of the aggregated endpoint's resource routes
 * (gateway/mcp/agg_maps.c) without a server: a bare server, loop and
 * process-wide state, and exchanges that note URIs and templates, route
 * reads (gw__agg_uri_route) and pass an upstream's
 * notifications/resources/updated (gw__agg_rewrite). Both lookups run
 * under the process-wide maps_mu for every message: their cost, counted
 * in sh.uri_steps (keys and nodes visited), must not grow with the
 * session's map — an upstream listing agg_uri_map_max URIs and then
 * flooding updates would make every loop's aggregated traffic wait. */
#include <uv.h>

#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "unit.h"

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

int main(void) {
  RUN(uri_lookups_cost_the_same_with_ten_or_ten_thousand_uris);
  RUN(templates_nested_in_a_uri_cost_at_most_its_length);
  RUN(routes_keep_their_rules);
  RUN(uri_map_caps_count_templates_and_uris);
  return UNIT_DONE();
}
