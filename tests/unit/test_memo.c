/* Unit tests of the per-loop memo of store reads (gateway/mcp/memo.c): an
 * entry answers only its own snapshot and its own full key, a hit carries
 * the token expiry the caller must still compare with the clock, and the
 * connector table hands out references. */
#include "gateway/mcp/memo.h"
#include "unit.h"

static gw_memo_ident ident(const char *user, int64_t expires) {
  gw_memo_ident v;
  memset(&v, 0, sizeof v);
  snprintf(v.user, sizeof v.user, "%s", user);
  snprintf(v.tokid, sizeof v.tokid, "tok1");
  v.expires = expires;
  v.sess_rc = -1;
  return v;
}

TEST(ident_hit_only_in_its_snapshot) {
  gw_memo *m = gw_memo_new();
  uint8_t h[ST_TOKEN_HASH_LEN] = {1, 2, 3};
  gw_memo_key k = {.tok_hash = h, .tenant = "acme", .connector = "gh", .sid = NULL};
  gw_memo_ident v = ident("u1", 0);
  CHECK(gw_memo_ident_get(m, 7, &k) == NULL);
  gw_memo_ident_put(m, 7, &k, &v);
  const gw_memo_ident *hit = gw_memo_ident_get(m, 7, &k);
  CHECK(hit != NULL);
  CHECK_STR(hit->user, "u1");
  CHECK(gw_memo_ident_get(m, 8, &k) == NULL); /* a write committed since */
  CHECK(gw_memo_ident_get(m, 0, &k) == NULL);
  gw_memo_stats st;
  gw_memo_stats_get(m, &st);
  CHECK_INT(st.ident_hits, 1);
  CHECK_INT(st.ident_misses, 2); /* snapshot 0 (unknown) is not a lookup */
  gw_memo_free(m);
}

TEST(ident_every_key_part_must_match) {
  gw_memo *m = gw_memo_new();
  uint8_t h[ST_TOKEN_HASH_LEN] = {9, 9, 9}, h2[ST_TOKEN_HASH_LEN] = {9, 9, 9};
  h2[31] = 1; /* differs only in the last byte */
  gw_memo_key k = {.tok_hash = h, .tenant = "acme", .connector = "gh", .sid = "s1"};
  gw_memo_ident v = ident("u1", 0);
  gw_memo_ident_put(m, 5, &k, &v);
  CHECK(gw_memo_ident_get(m, 5, &k) != NULL);
  gw_memo_key other = k;
  other.tok_hash = h2;
  CHECK(gw_memo_ident_get(m, 5, &other) == NULL);
  other = k;
  other.tenant = "acme2";
  CHECK(gw_memo_ident_get(m, 5, &other) == NULL);
  other = k;
  other.connector = "";
  CHECK(gw_memo_ident_get(m, 5, &other) == NULL);
  other = k;
  other.sid = NULL; /* no session header is not "session s1" */
  CHECK(gw_memo_ident_get(m, 5, &other) == NULL);
  other = k;
  other.sid = "s2";
  CHECK(gw_memo_ident_get(m, 5, &other) == NULL);
  gw_memo_free(m);
}

TEST(ident_too_long_key_is_not_remembered) {
  gw_memo *m = gw_memo_new();
  uint8_t h[ST_TOKEN_HASH_LEN] = {4};
  char sid[400];
  memset(sid, 'a', sizeof sid - 1);
  sid[sizeof sid - 1] = 0;
  gw_memo_key k = {.tok_hash = h, .tenant = "acme", .connector = "gh", .sid = sid};
  gw_memo_ident v = ident("u1", 0);
  gw_memo_ident_put(m, 5, &k, &v);
  CHECK(gw_memo_ident_get(m, 5, &k) == NULL);
  /* a prefix of it must not match a stored truncated key either */
  sid[127] = 0;
  CHECK(gw_memo_ident_get(m, 5, &k) == NULL);
  gw_memo_free(m);
}

TEST(ident_expiry_is_checked_on_every_hit) {
  gw_memo_ident v = ident("u1", 1000);
  CHECK(gw_memo_ident_live(&v, 999));
  CHECK(!gw_memo_ident_live(&v, 1000));
  CHECK(!gw_memo_ident_live(&v, 5000));
  v.expires = 0; /* a token without expiry */
  CHECK(gw_memo_ident_live(&v, 5000));
}

TEST(ident_collision_replaces_older) {
  gw_memo *m = gw_memo_new();
  /* more keys than slots: every put stays retrievable until replaced, and
   * a replaced one misses rather than answering for another key */
  static uint8_t hs[2 * GW_MEMO_IDENT_SLOTS][ST_TOKEN_HASH_LEN];
  char users[2 * GW_MEMO_IDENT_SLOTS][16];
  for (int i = 0; i < 2 * GW_MEMO_IDENT_SLOTS; i++) {
    memcpy(hs[i], &i, sizeof i);
    snprintf(users[i], sizeof users[i], "u%d", i);
    gw_memo_key k = {.tok_hash = hs[i], .tenant = "acme", .connector = "gh"};
    gw_memo_ident v = ident(users[i], 0);
    gw_memo_ident_put(m, 3, &k, &v);
  }
  int hits = 0;
  for (int i = 0; i < 2 * GW_MEMO_IDENT_SLOTS; i++) {
    gw_memo_key k = {.tok_hash = hs[i], .tenant = "acme", .connector = "gh"};
    const gw_memo_ident *hit = gw_memo_ident_get(m, 3, &k);
    if (hit) {
      CHECK_STR(hit->user, users[i]);
      hits++;
    }
  }
  CHECK(hits > 0 && hits <= GW_MEMO_IDENT_SLOTS);
  gw_memo_free(m);
}

TEST(conn_hands_out_references) {
  gw_memo *m = gw_memo_new();
  json_t *rec = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:i}}", "url", "http://x/mcp", "epoch", "42", "auth", "type",
                          "oauth", "name", "Authorization", "timeouts", "idle_ms", 5000);
  gw_memo_conn_put(m, 4, "acme", "gh", rec);
  json_decref(rec); /* the memo holds its own */
  vault_conn_facts f;
  json_t *got = gw_memo_conn_get(m, 4, "acme", "gh", &f);
  CHECK(got != NULL);
  CHECK_STR(json_string_value(json_object_get(got, "url")), "http://x/mcp");
  /* the record taken apart when it was remembered, pointing into it */
  CHECK(f.rec == got);
  CHECK_INT(f.auth, VAULT_AUTH_OAUTH);
  CHECK(f.per_user);
  CHECK_STR(f.url, "http://x/mcp");
  CHECK_STR(json_string_value(f.bind), "42");
  CHECK_INT(f.idle_ms, 5000);
  CHECK_INT(f.connect_ms, 0);
  CHECK(f.ca_file == NULL && !f.url_sealed);
  CHECK(gw_memo_conn_get(m, 5, "acme", "gh", NULL) == NULL);
  CHECK(gw_memo_conn_get(m, 4, "acme", "jira", NULL) == NULL);
  CHECK(gw_memo_conn_get(m, 4, "acme2", "gh", &f) == NULL);
  gw_memo_free(m);
  /* still valid after the memo is gone: the caller's reference */
  CHECK_STR(json_string_value(json_object_get(got, "url")), "http://x/mcp");
  json_decref(got);
}

TEST(settings_only_in_their_snapshot_and_tenant) {
  gw_memo *m = gw_memo_new();
  json_t *doc = json_pack("{s:s}", "audit_redact", "ssn");
  CHECK(gw_memo_settings_get(m, 3, "acme") == NULL);
  gw_memo_settings_put(m, 3, "acme", doc);
  json_decref(doc); /* the memo holds its own */
  const json_t *got = gw_memo_settings_get(m, 3, "acme");
  CHECK(got != NULL);
  CHECK_STR(json_string_value(json_object_get(got, "audit_redact")), "ssn");
  CHECK(gw_memo_settings_get(m, 4, "acme") == NULL); /* a write committed since: read again */
  CHECK(gw_memo_settings_get(m, 3, "globex") == NULL);
  CHECK(gw_memo_settings_get(m, 0, "acme") == NULL);
  /* a newer snapshot replaces it; not an object, or no snapshot: not kept */
  json_t *empty = json_object();
  gw_memo_settings_put(m, 4, "acme", empty);
  CHECK(gw_memo_settings_get(m, 3, "acme") == NULL);
  CHECK(gw_memo_settings_get(m, 4, "acme") == empty);
  json_t *str = json_string("x");
  gw_memo_settings_put(m, 5, "acme", str);
  gw_memo_settings_put(m, 0, "acme", empty);
  CHECK(gw_memo_settings_get(m, 5, "acme") == NULL);
  CHECK(gw_memo_settings_get(m, 4, "acme") == empty);
  json_decref(str);
  json_decref(empty);
  gw_memo_stats st;
  gw_memo_stats_get(m, &st);
  CHECK_INT(st.settings_hits, 3);
  CHECK_INT(st.settings_misses, 5);
  gw_memo_free(m);
}

TEST(upstream_session_only_in_its_snapshot_session_and_connector) {
  gw_memo *m = gw_memo_new();
  char out[GW_MEMO_UPSTREAM_MAX];
  const char *sid = "mcpgate-s-0123456789abcdef";
  CHECK(!gw_memo_upstream_get(m, 7, sid, "gh", out));
  gw_memo_upstream_put(m, 7, sid, "gh", "up-gh-1");
  gw_memo_upstream_put(m, 7, sid, "jira", "up-jira-1");
  CHECK(gw_memo_upstream_get(m, 7, sid, "gh", out));
  CHECK_STR(out, "up-gh-1");
  CHECK(gw_memo_upstream_get(m, 7, sid, "jira", out));
  CHECK_STR(out, "up-jira-1");
  CHECK(!gw_memo_upstream_get(m, 8, sid, "gh", out)); /* a write since (a connector PUT forgets it) */
  CHECK(!gw_memo_upstream_get(m, 7, "mcpgate-s-0123456789abcdeX", "gh", out));
  CHECK(!gw_memo_upstream_get(m, 7, sid, "g", out));
  CHECK(!gw_memo_upstream_get(m, 0, sid, "gh", out));
  /* a newer read replaces it */
  gw_memo_upstream_put(m, 9, sid, "gh", "up-gh-2");
  CHECK(!gw_memo_upstream_get(m, 7, sid, "gh", out));
  CHECK(gw_memo_upstream_get(m, 9, sid, "gh", out));
  CHECK_STR(out, "up-gh-2");
  /* what does not fit is not remembered: never cut */
  char longup[GW_MEMO_UPSTREAM_MAX + 1];
  memset(longup, 'u', GW_MEMO_UPSTREAM_MAX);
  longup[GW_MEMO_UPSTREAM_MAX] = 0;
  gw_memo_upstream_put(m, 10, sid, "gh", longup);
  CHECK(!gw_memo_upstream_get(m, 10, sid, "gh", out));
  char longsid[200];
  memset(longsid, 's', sizeof longsid - 1);
  longsid[sizeof longsid - 1] = 0;
  gw_memo_upstream_put(m, 10, longsid, "gh", "x");
  CHECK(!gw_memo_upstream_get(m, 10, longsid, "gh", out));
  gw_memo_stats st;
  gw_memo_stats_get(m, &st);
  CHECK_INT(st.upstream_hits, 3);
  CHECK_INT(st.upstream_misses, 7);
  gw_memo_free(m);
}

int main(void) {
  RUN(ident_hit_only_in_its_snapshot);
  RUN(ident_every_key_part_must_match);
  RUN(ident_too_long_key_is_not_remembered);
  RUN(ident_expiry_is_checked_on_every_hit);
  RUN(ident_collision_replaces_older);
  RUN(conn_hands_out_references);
  RUN(settings_only_in_their_snapshot_and_tenant);
  RUN(upstream_session_only_in_its_snapshot_session_and_connector);
  return UNIT_DONE();
}
