/* tests/unit/test_limits.c — gateway/core/limits.c's per-user slots: the
 * concurrency slot (and the rate limiter's bucket, of the same key) of a
 * user is the user's own. A tenant id may be 63 bytes and a user id 36, so
 * "tenant/user" does not always fit a limiter's key (95 bytes): it once was
 * cut there, and two users of a long-named tenant whose ids agree in the
 * bytes kept shared one slot (one user's load throttled the other). Keys
 * that do not fit are now a digest of the whole "tenant/user". Only
 * accepted requests are taken here (a refusal writes a response header,
 * which needs a live request). */
#include "unit.h"

#include <string.h>

#include "gateway/core/limits.h"
#include "gateway/core/server.h"

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

int main(void) {
  RUN(users_whose_key_does_not_fit_have_their_own_slot);
  return UNIT_DONE();
}
