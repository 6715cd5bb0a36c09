/* tests/unit/test_limits.c — gateway/core/limits.c's slots.
 *
 * A user's slot is the user's own: the concurrency slot (and the rate
 * limiter's bucket, of the same key) of a user. A tenant id may be 63
 * bytes and a user id 36, so "tenant/user" does not always fit a
 * limiter's key (95 bytes): it once was cut there, and two users of a
 * long-named tenant whose ids agree in the bytes kept shared one slot (one
 * user's load throttled the other). Keys that do not fit are now a digest
 * of the whole "tenant/user".
 *
 * A request holds one slot (limits.h): every enter once began "if the
 * request holds a slot, pass" — a request holding a slot of one kind (a
 * heavy read, a heavy write, a user's MCP slot, a discovery) went through
 * the next limit of another kind unlimited. Now it passes only when the
 * slot it holds is the very one it asks for (SCIM's large body parse then
 * its scan take the same heavy-read slot twice), and is refused as over
 * the limit otherwise; releasing the request leaves every count at zero.
 *
 * limits.c is included (its counts are looked at) and gw_resp_header is
 * this file's: a refusal sets Retry-After, which needs a live request
 * otherwise; here the header is recorded. */
#include "unit.h"

#include <string.h>

#include "gateway/base/log.h"
#include "gateway/core/limits.c"

/* the response headers the code under test set (gw_resp_header) */
static int hdr_n;
static char hdr_name[32], hdr_value[32];
void gw_resp_header(gw_req *req, const char *name, const char *value) {
  (void)req;
  hdr_n++;
  snprintf(hdr_name, sizeof hdr_name, "%s", name);
  snprintf(hdr_value, sizeof hdr_value, "%s", value);
}

/* a tenant id of the longest kind: 63 bytes of [a-z0-9-] */
static const char long_tenant[] = "a-tenant-with-the-longest-id-a-tenant-may-have-63-bytes-of-it-x";

static void enter(gw_req *r, gw_loop *lp, const char *tenant, const char *user) {
  memset(r, 0, sizeof *r);
  r->lp = lp;
  CHECK_INT(gw_limits_mcp_enter(r, tenant, user), 0);
  CHECK(r->limits_slot != NULL);
}

TEST(users_whose_key_does_not_fit_have_their_own_slot) {
  CHECK_INT(strlen(long_tenant), 63);
  static gw_server srv;
  static gw_loop lp;
  srv.cfg.mcp_concurrent_per_user = 8;
  lp.srv = &srv;
  CHECK_INT(gw_limits_init(&srv), 0);
  /* two user ids that differ only in their last bytes (past byte 95 of
   * "tenant/user") */
  const char *u1 = "0b1e5c7a-1111-4222-8333-000000000001", *u2 = "0b1e5c7a-1111-4222-8333-000000000002";
  gw_req a, b, a2, c, d;
  enter(&a, &lp, long_tenant, u1);
  enter(&b, &lp, long_tenant, u2);
  CHECK(a.limits_slot != b.limits_slot);
  /* the same user again: the same slot (the key is stable) */
  enter(&a2, &lp, long_tenant, u1);
  CHECK(a.limits_slot == a2.limits_slot);
  /* a short tenant's users, whose keys fit, are still told apart, and
   * from the long tenant's */
  enter(&c, &lp, "acme", u1);
  enter(&d, &lp, "acme", u2);
  CHECK(c.limits_slot != d.limits_slot);
  CHECK(c.limits_slot != a.limits_slot && d.limits_slot != b.limits_slot);
  gw_limits_request_done(&srv, &a);
  gw_limits_request_done(&srv, &a2);
  gw_limits_request_done(&srv, &b);
  gw_limits_request_done(&srv, &c);
  gw_limits_request_done(&srv, &d);
  gw_limits_free(&srv);
}

/* ---- one slot per request */

static const char *const u1 = "0b1e5c7a-1111-4222-8333-000000000001", *const u2 = "0b1e5c7a-1111-4222-8333-000000000002";

static void fresh(gw_req *r, gw_loop *lp) {
  memset(r, 0, sizeof *r);
  r->lp = lp;
}

/* entries in the slot table: 0 once nothing is held */
static int slots_held(const gw_limits *l) {
  int n = 0;
  for (int i = 0; i < SLOT_BUCKETS; i++)
    for (const slot *s = l->slots[i]; s; s = s->next) n++;
  return n;
}

static int64_t units(const gw_req *r) { return ((const slot *)r->limits_slot)->open; }

/* The enter answered as over its limit: Retry-After set (once) to want. */
#define CHECK_RETRY_AFTER(n_before, want)                                                                    \
  do {                                                                                                       \
    CHECK_INT(hdr_n, (n_before) + 1);                                                                        \
    CHECK_STR(hdr_name, "Retry-After");                                                                      \
    CHECK_STR(hdr_value, want);                                                                              \
  } while (0)

static void init(gw_server *srv, gw_loop *lp) {
  memset(srv, 0, sizeof *srv);
  srv->cfg.mcp_concurrent_per_user = 8;
  lp->srv = srv;
}

/* Before the fix every one of these refusals was 0: the request held a
 * slot, of whatever kind, and went through. Each refusal leaves the slot
 * the request holds as it was and takes nothing; a request holding no
 * slot is given each of them (it was the held slot that refused). */
TEST(a_slot_of_another_kind_is_refused) {
  static gw_server srv;
  static gw_loop lp;
  init(&srv, &lp);
  CHECK_INT(gw_limits_init(&srv), 0);
  gw_limits *l = srv.limits;
  l->heavy_max = GW_HEAVY_MAX; /* whatever the pool's size: the per-tenant limit is the one in play */
  gw_req w, h, m, d, x;
  int n;

  /* a heavy write of acme's (a policy PUT, an OAuth client's DELETE) */
  fresh(&w, &lp);
  CHECK_INT(gw_limits_write_enter(&w, "acme"), 0);
  void *held = w.limits_slot;
  CHECK(held != NULL);
  hdr_n = 0;
  CHECK_INT(gw_limits_heavy_take(&w, "acme", GW_HEAVY_SCIM), 429);
  CHECK_INT(hdr_n, 0); /* take changes nothing: its caller counts and answers */
  CHECK_INT(gw_limits_heavy_enter(&w, "acme", GW_HEAVY_AUDIT), 429);
  CHECK_RETRY_AFTER(0, "1");
  CHECK_INT(atomic_load(&l->heavy_tenant_limited), 1);
  CHECK_INT(gw_limits_mcp_enter(&w, "acme", u1), 1);
  CHECK_RETRY_AFTER(1, "1");
  CHECK_INT(atomic_load(&l->mcp_concurrent_limited), 1);
  CHECK_INT(gw_limits_discover_enter(&w, "acme", "github"), GW_DISCOVER_TENANT);
  CHECK_RETRY_AFTER(2, "5");
  CHECK_INT(atomic_load(&l->discover_tenant_limited), 1);
  CHECK_INT(gw_limits_write_enter(&w, "other"), 429); /* another tenant's write slot is another slot */
  CHECK_RETRY_AFTER(3, "1");
  CHECK_INT(atomic_load(&l->write_tenant_limited), 1);
  CHECK(w.limits_slot == held);
  CHECK_INT(units(&w), 1);
  CHECK_INT(l->writes_open, 1);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(slots_held(l), 1);
  fresh(&x, &lp);
  CHECK_INT(gw_limits_heavy_enter(&x, "acme", GW_HEAVY_AUDIT), 0);
  gw_limits_request_done(&srv, &x);
  gw_limits_request_done(&srv, &w);
  CHECK_INT(l->writes_open, 0);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(slots_held(l), 0);

  /* a heavy read (a SCIM scan): not another kind's read, not another
   * tenant's, not a write, a user's slot or a discovery */
  fresh(&h, &lp);
  CHECK_INT(gw_limits_heavy_take(&h, "acme", GW_HEAVY_SCIM), 0);
  held = h.limits_slot;
  CHECK_INT(gw_limits_heavy_take(&h, "acme", GW_HEAVY_AUDIT), 429);
  CHECK_INT(gw_limits_heavy_take(&h, "other", GW_HEAVY_SCIM), 429);
  n = hdr_n;
  CHECK_INT(gw_limits_write_enter(&h, "acme"), 429);
  CHECK_RETRY_AFTER(n, "1");
  CHECK_INT(atomic_load(&l->write_tenant_limited), 2);
  CHECK_INT(gw_limits_mcp_enter(&h, "acme", u1), 1);
  CHECK_RETRY_AFTER(n + 1, "1");
  CHECK_INT(gw_limits_discover_enter(&h, "acme", "github"), GW_DISCOVER_TENANT);
  CHECK_RETRY_AFTER(n + 2, "5");
  CHECK(h.limits_slot == held);
  CHECK_INT(units(&h), 1);
  CHECK_INT(l->heavy_open, 1);
  CHECK_INT(l->writes_open, 0);
  CHECK_INT(slots_held(l), 1);
  fresh(&x, &lp);
  CHECK_INT(gw_limits_write_enter(&x, "acme"), 0);
  gw_limits_request_done(&srv, &x);
  gw_limits_request_done(&srv, &h);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(slots_held(l), 0);

  /* a user's MCP slot: not another user's, not a heavy read or write */
  fresh(&m, &lp);
  CHECK_INT(gw_limits_mcp_enter(&m, "acme", u1), 0);
  held = m.limits_slot;
  n = hdr_n;
  CHECK_INT(gw_limits_mcp_enter(&m, "acme", u2), 1);
  CHECK_RETRY_AFTER(n, "1");
  CHECK_INT(atomic_load(&l->mcp_concurrent_limited), 3);
  CHECK_INT(gw_limits_heavy_enter(&m, "acme", GW_HEAVY_LISTS), 429);
  CHECK_INT(gw_limits_write_enter(&m, "acme"), 429);
  CHECK(m.limits_slot == held);
  CHECK_INT(units(&m), 1);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(l->writes_open, 0);
  CHECK_INT(slots_held(l), 1);
  fresh(&x, &lp);
  CHECK_INT(gw_limits_mcp_enter(&x, "acme", u2), 0);
  gw_limits_request_done(&srv, &x);
  gw_limits_request_done(&srv, &m);
  CHECK_INT(slots_held(l), 0);

  /* a discovery of one connector: not another connector's, nor any other kind */
  fresh(&d, &lp);
  CHECK_INT(gw_limits_discover_enter(&d, "acme", "github"), 0);
  held = d.limits_slot;
  n = hdr_n;
  CHECK_INT(gw_limits_discover_enter(&d, "acme", "jira"), GW_DISCOVER_TENANT);
  CHECK_RETRY_AFTER(n, "5");
  CHECK_INT(gw_limits_heavy_take(&d, "acme", GW_HEAVY_POLICY), 429);
  CHECK_INT(gw_limits_write_enter(&d, "acme"), 429);
  CHECK_INT(gw_limits_mcp_enter(&d, "acme", u1), 1);
  CHECK(d.limits_slot == held);
  CHECK_INT(units(&d), 1);
  CHECK_INT(((slot *)held)->parent->open, 1);
  CHECK_INT(slots_held(l), 2); /* the connector's and the tenant's */
  gw_limits_request_done(&srv, &d);
  CHECK_INT(slots_held(l), 0);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(l->writes_open, 0);
  gw_limits_free(&srv);
}

/* The very slot a request holds, asked for again, passes and takes
 * nothing more (SCIM: a body past 256 KiB is parsed in a heavy-read slot,
 * then the scan asks for it; an audit query: chain_of, then its pool
 * read); released once, the request leaves every count at zero. */
TEST(the_same_slot_again_passes_and_release_leaves_nothing) {
  static gw_server srv;
  static gw_loop lp;
  init(&srv, &lp);
  CHECK_INT(gw_limits_init(&srv), 0);
  gw_limits *l = srv.limits;
  l->heavy_max = GW_HEAVY_MAX;
  gw_req h, h2, h3, w, w2, m, d;
  fresh(&h, &lp);
  CHECK_INT(gw_limits_heavy_take(&h, "acme", GW_HEAVY_SCIM), 0);
  void *held = h.limits_slot;
  CHECK_INT(gw_limits_heavy_take(&h, "acme", GW_HEAVY_SCIM), 0);
  CHECK_INT(gw_limits_heavy_enter(&h, "acme", GW_HEAVY_SCIM), 0);
  CHECK(h.limits_slot == held);
  CHECK_INT(units(&h), 1);
  CHECK_INT(l->heavy_open, 1);
  /* one unit: the tenant's second scan still fits, its third does not */
  fresh(&h2, &lp);
  CHECK_INT(gw_limits_heavy_take(&h2, "acme", GW_HEAVY_SCIM), 0);
  CHECK(h2.limits_slot == held);
  CHECK_INT(units(&h), GW_HEAVY_PER_TENANT);
  fresh(&h3, &lp);
  CHECK_INT(gw_limits_heavy_take(&h3, "acme", GW_HEAVY_SCIM), 429);
  CHECK(h3.limits_slot == NULL);

  fresh(&w, &lp);
  CHECK_INT(gw_limits_write_enter(&w, "acme"), 0);
  CHECK_INT(gw_limits_write_enter(&w, "acme"), 0);
  CHECK_INT(units(&w), 1);
  CHECK_INT(l->writes_open, 1);
  fresh(&w2, &lp);
  CHECK_INT(gw_limits_write_enter(&w2, "acme"), 429); /* one per tenant: w holds it */

  fresh(&m, &lp);
  CHECK_INT(gw_limits_mcp_enter(&m, "acme", u1), 0);
  CHECK_INT(gw_limits_mcp_enter(&m, "acme", u1), 0);
  CHECK_INT(units(&m), 1);

  fresh(&d, &lp);
  CHECK_INT(gw_limits_discover_enter(&d, "acme", "github"), 0);
  CHECK_INT(gw_limits_discover_enter(&d, "acme", "github"), 0);
  CHECK_INT(units(&d), 1);
  CHECK_INT(((slot *)d.limits_slot)->parent->open, 1);

  CHECK_INT(slots_held(l), 5); /* acme's scans, its write, u1's, its discovery's tenant and connector */
  gw_req *all[] = {&h, &h2, &h3, &w, &w2, &m, &d};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    gw_limits_request_done(&srv, all[i]);
    CHECK(all[i]->limits_slot == NULL);
  }
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(l->writes_open, 0);
  CHECK_INT(slots_held(l), 0);
  gw_limits_free(&srv);
}

/* SCIM bodies coming in (scim_http.c's preauth): GW_SCIM_BODIES_PER_TENANT
 * of a tenant's at once, of which GW_SCIM_LARGE_BODIES_PER_TENANT large;
 * another tenant's are its own; released, the place is free again and the
 * request may take the heavy-read slot of its parse. */
TEST(scim_bodies_are_counted_per_tenant_and_released_before_the_parse) {
  static gw_server srv;
  static gw_loop lp;
  init(&srv, &lp);
  CHECK_INT(gw_limits_init(&srv), 0);
  gw_limits *l = srv.limits;
  l->heavy_max = GW_HEAVY_MAX;
  static gw_req small[GW_SCIM_BODIES_PER_TENANT + 1], large[GW_SCIM_LARGE_BODIES_PER_TENANT + 1];
  gw_req other;
  for (int i = 0; i < GW_SCIM_BODIES_PER_TENANT; i++) {
    fresh(&small[i], &lp);
    CHECK_INT(gw_limits_scim_body_enter(&small[i], "acme", false), 0);
  }
  fresh(&small[GW_SCIM_BODIES_PER_TENANT], &lp);
  int n = hdr_n;
  CHECK_INT(gw_limits_scim_body_enter(&small[GW_SCIM_BODIES_PER_TENANT], "acme", false), 429);
  CHECK_RETRY_AFTER(n, "1");
  CHECK(small[GW_SCIM_BODIES_PER_TENANT].limits_slot == NULL);
  /* the large ones count apart */
  for (int i = 0; i < GW_SCIM_LARGE_BODIES_PER_TENANT; i++) {
    fresh(&large[i], &lp);
    CHECK_INT(gw_limits_scim_body_enter(&large[i], "acme", true), 0);
  }
  fresh(&large[GW_SCIM_LARGE_BODIES_PER_TENANT], &lp);
  CHECK_INT(gw_limits_scim_body_enter(&large[GW_SCIM_LARGE_BODIES_PER_TENANT], "acme", true), 429);
  CHECK_INT(atomic_load(&l->scim_body_limited), 2);
  /* another tenant's */
  fresh(&other, &lp);
  CHECK_INT(gw_limits_scim_body_enter(&other, "globex", true), 0);
  /* the body is in: released, the parse's heavy slot is taken; the place is free */
  gw_limits_release(&large[0]);
  CHECK(large[0].limits_slot == NULL);
  CHECK_INT(gw_limits_heavy_take(&large[0], "acme", GW_HEAVY_SCIM), 0);
  CHECK_INT(gw_limits_scim_body_enter(&large[GW_SCIM_LARGE_BODIES_PER_TENANT], "acme", true), 0);
  /* a request that holds a body slot takes no other kind */
  CHECK_INT(gw_limits_heavy_take(&small[0], "acme", GW_HEAVY_SCIM), 429);
  CHECK_INT(gw_limits_scim_body_enter(&small[0], "acme", false), 0); /* the very slot it holds */
  CHECK_INT(units(&small[0]), GW_SCIM_BODIES_PER_TENANT);
  for (int i = 0; i <= GW_SCIM_BODIES_PER_TENANT; i++) gw_limits_request_done(&srv, &small[i]);
  for (int i = 0; i <= GW_SCIM_LARGE_BODIES_PER_TENANT; i++) gw_limits_request_done(&srv, &large[i]);
  gw_limits_request_done(&srv, &other);
  CHECK_INT(l->heavy_open, 0);
  CHECK_INT(slots_held(l), 0);
  gw_limits_free(&srv);
}

/* A request the tenant's bucket refuses never ran: what the user's own
 * bucket paid for it is given back (requests and JSON MiBs alike) — a
 * client retrying while its tenant was out once spent its own budget on
 * those refusals and stayed refused after the tenant's had refilled. */
TEST(a_tenant_refusal_gives_the_user_budget_back) {
  static gw_server srv;
  static gw_loop lp;
  init(&srv, &lp);
  srv.cfg.mcp_rate_per_user = 5;
  srv.cfg.mcp_rate_per_tenant = 3;
  srv.cfg.mcp_json_mib_per_user = 50;
  srv.cfg.mcp_json_mib_per_tenant = 30;
  CHECK_INT(gw_limits_init(&srv), 0);
  gw_limits *l = srv.limits;
  gw_req r;
  fresh(&r, &lp);
  for (int i = 0; i < 3; i++) CHECK_INT(gw_limits_mcp(&r, "acme", "u1"), 0);
  /* the tenant's 3 spent: u2's requests are refused for the tenant ... */
  for (int i = 0; i < 10; i++) CHECK(gw_limits_mcp(&r, "acme", "u2") > 0);
  CHECK_INT(atomic_load(&l->mcp_tenant_limited), 10);
  CHECK_INT(atomic_load(&l->mcp_user_limited), 0);
  /* ... and u2's own 5 are whole (one take per refusal, given back) */
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key("acme", "u2", key);
  CHECK_INT(gw_ratelimit_take_n(l->mcp_user, key, 5, now_ms()), 0);
  /* JSON MiBs: 25 of u1's pass; u2's 10 are refused for the tenant, twice, and u2 keeps its 50 */
  CHECK_INT(gw_limits_mcp_json(&r, "acme", "u1", 25), 0);
  CHECK(gw_limits_mcp_json(&r, "acme", "u2", 10) > 0);
  CHECK(gw_limits_mcp_json(&r, "acme", "u2", 10) > 0);
  CHECK_INT(atomic_load(&l->json_tenant_limited), 2);
  CHECK_INT(atomic_load(&l->json_user_limited), 0);
  user_key("acme", "u2", key);
  CHECK_INT(gw_ratelimit_take_n(l->json_user, key, 50, now_ms()), 0);
  /* an upstream reply parsed for u3: the same, counted as json_reply; the
   * gateway's own exchanges ("" user) pay the tenant's alone */
  CHECK(gw_limits_mcp_reply_json(&srv, "acme", "u3", 10) > 0); /* acme has 5 left */
  CHECK_INT(atomic_load(&l->json_reply_limited), 1);
  user_key("acme", "u3", key);
  CHECK_INT(gw_ratelimit_take_n(l->json_user, key, 50, now_ms()), 0);
  CHECK_INT(gw_limits_mcp_reply_json(&srv, "acme", "", 5), 0);
  CHECK(gw_limits_mcp_reply_json(&srv, "acme", "", 1) > 0);
  CHECK_INT(gw_limits_mcp_reply_json(&srv, "globex", "u1", 20), 0);
  CHECK_INT(atomic_load(&l->json_reply_limited), 2);
  gw_limits_free(&srv);
}

int main(void) {
  gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1)); /* the refusals' error lines are expected here */
  RUN(users_whose_key_does_not_fit_have_their_own_slot);
  RUN(a_slot_of_another_kind_is_refused);
  RUN(the_same_slot_again_passes_and_release_leaves_nothing);
  RUN(scim_bodies_are_counted_per_tenant_and_released_before_the_parse);
  RUN(a_tenant_refusal_gives_the_user_budget_back);
  return UNIT_DONE();
}
