/* tests/unit/test_oauth_client.c — auth/oauth_client.c: client metadata as
 * DCR bodies and CIMD documents (what is kept, what is refused and named),
 * redirect URIs (https, loopback http on any port per RFC 8252 §7.3, and
 * the look-alikes that must not match), CIMD client_id URLs, PKCE S256
 * (RFC 7636 Appendix B's vector), and the client records in a real store
 * (put/get/touch/expire/purge), their counts, the idle sweep and the
 * listing. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth/auth.h"
#include "auth/oauth_client.h"
#include "store/store.h"
#include "tests/unit/unit.h"

static int validate(const char *js, const char *cimd, json_t **clean, char *err) {
  json_t *m = json_loads(js, JSON_REJECT_DUPLICATES, NULL);
  if (!m) return 99;
  int rc = auth_oauth_client_validate(m, cimd, clean, err, 300);
  json_decref(m);
  return rc;
}

TEST(dcr_body_kept_and_unknown_dropped) {
  json_t *c;
  char err[300];
  CHECK_INT(validate("{\"client_name\":\"Claude Code\",\"redirect_uris\":[\"http://localhost:33418/callback\"],"
                     "\"grant_types\":[\"authorization_code\",\"refresh_token\"],\"response_types\":[\"code\"],"
                     "\"token_endpoint_auth_method\":\"none\",\"software_id\":\"x\",\"scope\":\"mcp\"}",
                     NULL, &c, err),
            0);
  CHECK_STR(json_string_value(json_object_get(c, "client_name")), "Claude Code");
  CHECK_INT(json_array_size(json_object_get(c, "redirect_uris")), 1);
  CHECK(json_object_get(c, "software_id") == NULL);
  CHECK(json_object_get(c, "grant_types") == NULL);
  CHECK_INT(json_object_size(c), 2);
  json_decref(c);
}

TEST(metadata_refused_naming_the_member) {
  json_t *c = NULL;
  char err[300];
  struct { const char *js; int rc; const char *member; } bad[] = {
      {"[]", AUTH_EOAUTH_METADATA, "object"},
      {"{}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":\"https://a.example/cb\"}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"http://evil.example/cb\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"https://a.example/cb#f\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"https://u:p@a.example/cb\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"javascript:alert(1)\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"http://localhost:0/cb\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"http://localhost.evil.example/cb\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"http://127.0.0.1.evil.example/cb\"]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[1]}", AUTH_EOAUTH_REDIRECT, "redirect_uris"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"client_id\":\"x\"}", AUTH_EOAUTH_METADATA, "client_id"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"token_endpoint_auth_method\":\"client_secret_basic\"}",
       AUTH_EOAUTH_METADATA, "token_endpoint_auth_method"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"grant_types\":[\"client_credentials\"]}", AUTH_EOAUTH_METADATA,
       "grant_types"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"response_types\":[\"token\"]}", AUTH_EOAUTH_METADATA,
       "response_types"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"client_name\":\"a\\u0007b\"}", AUTH_EOAUTH_METADATA,
       "client_name"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"client_name\":\"line\\nbreak\"}", AUTH_EOAUTH_METADATA,
       "client_name"},
      /* C1 controls (U+0080..U+009F) are control characters too: CSI, NEL */
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"client_name\":\"a\\u009b31mb\"}", AUTH_EOAUTH_METADATA,
       "client_name"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"client_name\":\"a\\u0085b\"}", AUTH_EOAUTH_METADATA,
       "client_name"},
      {"{\"redirect_uris\":[\"https://a.example/cb\"],\"logo_uri\":\"http://a.example/l.png\"}", AUTH_EOAUTH_METADATA,
       "logo_uri"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = validate(bad[i].js, NULL, &c, err);
    if (rc != bad[i].rc) fprintf(stderr, "  %s: %d %s\n", bad[i].js, rc, err);
    CHECK_INT(rc, bad[i].rc);
    CHECK(c == NULL);
    CHECK(strstr(err, bad[i].member) != NULL);
  }
  /* 11 redirect URIs */
  char many[1024] = "{\"redirect_uris\":[";
  for (int i = 0; i < 11; i++) strcat(many, i ? ",\"https://a.example/cb\"" : "\"https://a.example/cb\"");
  strcat(many, "]}");
  CHECK_INT(validate(many, NULL, &c, err), AUTH_EOAUTH_REDIRECT);
}

TEST(cimd_document_names_its_url) {
  json_t *c;
  char err[300];
  const char *url = "https://claude.ai/oauth/claude-code-client-metadata";
  CHECK_INT(validate("{\"client_id\":\"https://claude.ai/oauth/claude-code-client-metadata\",\"client_name\":\"Claude "
                     "Code\",\"redirect_uris\":[\"http://localhost/callback\",\"http://127.0.0.1/callback\"]}",
                     url, &c, err),
            0);
  json_decref(c);
  CHECK_INT(validate("{\"client_id\":\"https://evil.example/meta\",\"redirect_uris\":[\"http://localhost/cb\"]}", url, &c,
                     err),
            AUTH_EOAUTH_METADATA);
  CHECK(strstr(err, "client_id") != NULL);
  CHECK_INT(validate("{\"redirect_uris\":[\"http://localhost/cb\"]}", url, &c, err), AUTH_EOAUTH_METADATA);
}

TEST(cimd_urls) {
  CHECK(auth_oauth_cimd_url_ok("https://claude.ai/oauth/claude-code-client-metadata"));
  CHECK(auth_oauth_cimd_url_ok("https://127.0.0.1:8443/client.json"));
  static const char *const bad[] = {"http://claude.ai/x", "https://claude.ai", "https://claude.ai/",
                                    "https://claude.ai/x?y=1", "https://claude.ai/x#f", "https://u@claude.ai/x",
                                    "https://claude.ai/a/../b", "https://claude.ai/./b", "https://claude.ai/a/..",
                                    "ftp://claude.ai/x", "", NULL};
  for (const char *const *p = bad; *p; p++) {
    if (auth_oauth_cimd_url_ok(*p)) fprintf(stderr, "  accepted %s\n", *p);
    CHECK(!auth_oauth_cimd_url_ok(*p));
  }
  char longu[400] = "https://a.example/";
  memset(longu + 18, 'x', 300);
  longu[318] = 0;
  CHECK(!auth_oauth_cimd_url_ok(longu));
}

TEST(redirect_matching_loopback_any_port) {
  json_t *r = json_pack("[s,s,s]", "http://localhost/callback", "http://127.0.0.1:3000/cb?x=1", "https://app.example/cb");
  CHECK(auth_oauth_redirect_match(r, "http://localhost:49152/callback"));
  CHECK(auth_oauth_redirect_match(r, "http://localhost/callback"));
  CHECK(auth_oauth_redirect_match(r, "http://127.0.0.1:9/cb?x=1"));
  CHECK(auth_oauth_redirect_match(r, "https://app.example/cb"));
  /* host, path, query exact; https never port-agnostic; no cross-loopback-host */
  CHECK(!auth_oauth_redirect_match(r, "http://localhost:49152/callback2"));
  CHECK(!auth_oauth_redirect_match(r, "http://localhost:49152/callback?x=1"));
  CHECK(!auth_oauth_redirect_match(r, "http://127.0.0.1:49152/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://[::1]:49152/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://127.0.0.1:9/cb"));
  CHECK(!auth_oauth_redirect_match(r, "https://app.example:8443/cb"));
  CHECK(!auth_oauth_redirect_match(r, "https://app.example/cb/"));
  CHECK(!auth_oauth_redirect_match(r, "http://localhost.evil.example/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://localhost:49152@evil.example/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://evil.example/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://localhost:99999/callback"));
  CHECK(!auth_oauth_redirect_match(r, "http://localhost:49152/callback#x"));
  /* loopback or not (consent is always asked off this computer) */
  CHECK(auth_oauth_redirect_is_loopback("http://localhost:49152/callback"));
  CHECK(auth_oauth_redirect_is_loopback("http://[::1]/cb"));
  CHECK(auth_oauth_redirect_is_loopback("http://127.0.0.1:9/cb"));
  CHECK(!auth_oauth_redirect_is_loopback("http://localhost.evil.example/cb"));
  CHECK(!auth_oauth_redirect_is_loopback("http://127.0.0.1.evil.example/cb"));
  CHECK(!auth_oauth_redirect_is_loopback("https://localhost/cb"));
  CHECK(!auth_oauth_redirect_is_loopback("https://app.example/cb"));
  json_decref(r);
}

TEST(pkce_s256) {
  /* RFC 7636 Appendix B */
  const char *v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  const char *c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
  CHECK(auth_oauth_challenge_ok(c));
  CHECK(auth_oauth_pkce_ok(v, c));
  CHECK(!auth_oauth_pkce_ok("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj", c));
  CHECK(!auth_oauth_pkce_ok(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
  CHECK(!auth_oauth_pkce_ok("short", c));
  CHECK(!auth_oauth_pkce_ok("dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk", c)); /* not the unreserved set */
  CHECK(!auth_oauth_challenge_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
  CHECK(!auth_oauth_challenge_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="));
  CHECK(!auth_oauth_challenge_ok(NULL));
  CHECK(!auth_oauth_pkce_ok(NULL, c));
}

/* ---- records in a real store */

static char g_tmp[64];
static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

typedef struct job {
  const char *tenant, *id, *kind;
  json_t *clean;
  int op, n;
  int64_t at, at2;
  int scan;
} job;

static int job_fn(st_txn *txn, void *arg) {
  job *j = arg;
  switch (j->op) {
  case 0: return auth_oauth_client_put(txn, j->tenant, j->id, j->kind, j->clean, "2026-01-01T00:00:00Z", j->at);
  case 1: return auth_oauth_client_touch(txn, j->tenant, j->id, j->at);
  case 2: j->n = auth_oauth_clients_expire(txn, j->tenant, j->at, 10); return j->n < 0 ? j->n : 0;
  case 3: j->n = auth_oauth_clients_purge_tenant(txn, j->tenant, 100); return j->n < 0 ? j->n : 0;
  case 5: j->n = auth_oauth_clients_sweep(txn, j->tenant, j->at, j->at2, j->scan); return j->n < 0 ? j->n : 0;
  default: return auth_oauth_client_delete(txn, j->tenant, j->id);
  }
}

static int64_t count(st_store *st, const char *tenant, const char *kind) {
  st_txn *txn;
  if (st_read_begin(st, &txn)) return -1;
  int64_t n = auth_oauth_clients_count(txn, tenant, kind);
  st_txn_end(txn);
  return n;
}

static int has(st_store *st, const char *tenant, const char *id) {
  st_txn *txn;
  json_t *r = NULL;
  if (st_read_begin(st, &txn)) return -1;
  int rc = auth_oauth_client_get(txn, tenant, id, &r);
  st_txn_end(txn);
  json_decref(r);
  return rc == 0;
}

TEST(client_records) {
  strcpy(g_tmp, "/tmp/mcpgate-test-oauthc-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64u << 20;
  st_store *st = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  if (!st) return;
  json_t *clean = json_pack("{s:s,s:[s]}", "client_name", "Claude Code", "redirect_uris", "http://localhost/cb");
  job j = {"acme", "mcpc_1", AUTH_OAUTH_KIND_DCR, clean, 0, 0, 1000, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &j), 0);
  j.id = "mcpc_2", j.at = 5000;
  CHECK_INT(st_write_sync(st, job_fn, &j), 0);
  j.id = "https://claude.ai/meta", j.kind = AUTH_OAUTH_KIND_CIMD, j.at = 1000;
  CHECK_INT(st_write_sync(st, job_fn, &j), 0);
  job other = {"beta", "mcpc_1", AUTH_OAUTH_KIND_DCR, clean, 0, 0, 1000, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &other), 0);
  CHECK_INT(has(st, "acme", "mcpc_1"), 1);
  CHECK_INT(has(st, "acme", "nope"), 0);
  CHECK_INT(has(st, "gamma", "mcpc_1"), 0);
  st_txn *txn;
  json_t *r = NULL;
  st_read_begin(st, &txn);
  CHECK_INT(auth_oauth_client_get(txn, "acme", "mcpc_1", &r), 0);
  st_txn_end(txn);
  CHECK_STR(json_string_value(json_object_get(r, "kind")), "dcr");
  CHECK_STR(json_string_value(json_object_get(r, "client_name")), "Claude Code");
  CHECK_INT(json_integer_value(json_object_get(r, "last_used")), 1000);
  json_decref(r);
  /* a code may still be issued: to a stored registration, to any document
   * URL (cached or not), never to a registration that is gone */
  st_read_begin(st, &txn);
  CHECK_INT(auth_oauth_client_still(txn, "acme", "mcpc_1"), 0);
  CHECK_INT(auth_oauth_client_still(txn, "acme", "mcpc_9"), AUTH_EOAUTH_CLIENT_GONE);
  CHECK_INT(auth_oauth_client_still(txn, "gamma", "mcpc_1"), AUTH_EOAUTH_CLIENT_GONE);
  CHECK_INT(auth_oauth_client_still(txn, "acme", "https://claude.ai/meta"), 0);
  CHECK_INT(auth_oauth_client_still(txn, "acme", "https://other.example/meta"), 0);
  /* and to a redirect URI its record lists now (loopback: any port) */
  CHECK_INT(auth_oauth_client_redirect_still(txn, "acme", "mcpc_1", "http://localhost:4711/cb"), 0);
  CHECK_INT(auth_oauth_client_redirect_still(txn, "acme", "mcpc_1", "https://evil.example/cb"), AUTH_EOAUTH_REDIRECT);
  CHECK_INT(auth_oauth_client_redirect_still(txn, "acme", "mcpc_9", "http://localhost/cb"), AUTH_EOAUTH_CLIENT_GONE);
  CHECK_INT(auth_oauth_client_redirect_still(txn, "acme", "https://claude.ai/meta", "https://evil.example/cb"),
            AUTH_EOAUTH_REDIRECT);
  CHECK_INT(auth_oauth_client_redirect_still(txn, "acme", "https://other.example/meta", "https://x.example/cb"), 0);
  st_txn_end(txn);
  /* mcpc_1 used at 4000: only nothing older than 3000 expires; DCR only */
  job t = {"acme", "mcpc_1", NULL, NULL, 1, 0, 4000, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &t), 0);
  job e = {"acme", NULL, NULL, NULL, 2, 0, 3000, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &e), 0);
  CHECK_INT(e.n, 0);
  e.at = 4500;
  CHECK_INT(st_write_sync(st, job_fn, &e), 0);
  CHECK_INT(e.n, 1);
  CHECK_INT(has(st, "acme", "mcpc_1"), 0);
  CHECK_INT(has(st, "acme", "mcpc_2"), 1);
  CHECK_INT(has(st, "acme", "https://claude.ai/meta"), 1); /* a cached document is not a registration */
  CHECK_INT(has(st, "beta", "mcpc_1"), 1);                 /* other tenant untouched */
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_DCR), 1);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_CIMD), 1);
  CHECK_INT(count(st, "beta", AUTH_OAUTH_KIND_DCR), 1);
  job p = {"acme", NULL, NULL, NULL, 3, 0, 0, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &p), 0);
  CHECK_INT(p.n, 3); /* two clients and the counts record */
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_DCR), 0);
  CHECK_INT(has(st, "acme", "mcpc_2"), 0);
  CHECK_INT(has(st, "beta", "mcpc_1"), 1);
  job d = {"beta", "mcpc_1", NULL, NULL, 4, 0, 0, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &d), 0);
  CHECK_INT(st_write_sync(st, job_fn, &d), ST_ENOTFOUND);
  json_decref(clean);
  st_close(st);
  nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Counts follow puts (also a change of kind) and deletes; the sweep looks
 * at `scan` records a step, round the tenant's range, and deletes only idle
 * DCR and CIMD records; the listing pages in id order and filters by kind. */
TEST(counts_sweep_list) {
  strcpy(g_tmp, "/tmp/mcpgate-test-oauthc-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64u << 20;
  st_store *st = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  if (!st) return;
  json_t *clean = json_pack("{s:[s]}", "redirect_uris", "http://localhost/cb");
  char ids[10][32];
  for (int i = 0; i < 10; i++) { /* mcpc_0..9 unused since 100+i */
    snprintf(ids[i], sizeof ids[i], "mcpc_%d", i);
    job j = {"acme", ids[i], AUTH_OAUTH_KIND_DCR, clean, 0, 0, 100 + i, 0, 0};
    CHECK_INT(st_write_sync(st, job_fn, &j), 0);
  }
  job c = {"acme", "https://a.example/c", AUTH_OAUTH_KIND_CIMD, clean, 0, 0, 100, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &c), 0);
  job pin = {"acme", "https://a.example/p", AUTH_OAUTH_KIND_PINNED, clean, 0, 0, 1, 0, 0};
  CHECK_INT(st_write_sync(st, job_fn, &pin), 0);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_DCR), 10);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_CIMD), 1);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_PINNED), 1);
  /* a replacement of the same kind counts once; a change of kind moves it */
  CHECK_INT(st_write_sync(st, job_fn, &c), 0);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_CIMD), 1);
  job cp = c;
  cp.kind = AUTH_OAUTH_KIND_PINNED;
  CHECK_INT(st_write_sync(st, job_fn, &cp), 0);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_CIMD), 0);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_PINNED), 2);
  CHECK_INT(st_write_sync(st, job_fn, &c), 0); /* back to cimd */
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_PINNED), 1);

  /* listing: 12 records in id order (https… before mcpc_…), by pages */
  st_txn *txn;
  json_t *arr = NULL;
  bool more = false;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(auth_oauth_clients_list(txn, "acme", NULL, NULL, 5, &arr, &more), 0);
  CHECK_INT(json_array_size(arr), 5);
  CHECK(more);
  CHECK_STR(json_string_value(json_object_get(json_array_get(arr, 0), "client_id")), "https://a.example/c");
  CHECK_STR(json_string_value(json_object_get(json_array_get(arr, 2), "client_id")), "mcpc_0");
  json_decref(arr);
  CHECK_INT(auth_oauth_clients_list(txn, "acme", NULL, "mcpc_2", 50, &arr, &more), 0);
  CHECK_INT(json_array_size(arr), 7);
  CHECK(!more);
  CHECK_STR(json_string_value(json_object_get(json_array_get(arr, 0), "client_id")), "mcpc_3");
  json_decref(arr);
  CHECK_INT(auth_oauth_clients_list(txn, "acme", AUTH_OAUTH_KIND_PINNED, NULL, 50, &arr, &more), 0);
  CHECK_INT(json_array_size(arr), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(arr, 0), "client_id")), "https://a.example/p");
  json_decref(arr);
  CHECK_INT(auth_oauth_clients_list(txn, "nobody", NULL, NULL, 50, &arr, &more), 0);
  CHECK_INT(json_array_size(arr), 0);
  json_decref(arr);
  st_txn_end(txn);

  /* sweep: DCR idle before 105 (mcpc_0..4), CIMD idle before 101 (the
   * cached one), never the pinned one; 4 records a step */
  job sw = {"acme", NULL, NULL, NULL, 5, 0, 105, 101, 4};
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 3); /* https…c (cimd), https…p (pinned: kept), mcpc_0, mcpc_1 */
  CHECK_INT(has(st, "acme", "https://a.example/p"), 1);
  CHECK_INT(has(st, "acme", "https://a.example/c"), 0);
  CHECK_INT(has(st, "acme", "mcpc_1"), 0);
  CHECK_INT(has(st, "acme", "mcpc_2"), 1);
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 3); /* mcpc_2..4 (idle), mcpc_5 (not) */
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 0); /* mcpc_6..9 */
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_DCR), 5);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_CIMD), 0);
  /* round the end: https…p, mcpc_5, mcpc_6, mcpc_7 with everything idle */
  sw.at = 1000;
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 3);
  CHECK_INT(has(st, "acme", "mcpc_8"), 1);
  CHECK_INT(has(st, "acme", "mcpc_7"), 0);
  /* a step larger than the range sees each record once */
  sw.scan = 100;
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 2);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_DCR), 0);
  CHECK_INT(count(st, "acme", AUTH_OAUTH_KIND_PINNED), 1);
  CHECK_INT(st_write_sync(st, job_fn, &sw), 0);
  CHECK_INT(sw.n, 0);
  job none = {"empty", NULL, NULL, NULL, 5, 0, 1000, 1000, 4};
  CHECK_INT(st_write_sync(st, job_fn, &none), 0);
  CHECK_INT(none.n, 0);
  json_decref(clean);
  st_close(st);
  nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  RUN(dcr_body_kept_and_unknown_dropped);
  RUN(metadata_refused_naming_the_member);
  RUN(cimd_document_names_its_url);
  RUN(cimd_urls);
  RUN(redirect_matching_loopback_any_port);
  RUN(pkce_s256);
  RUN(client_records);
  RUN(counts_sweep_list);
  return UNIT_DONE();
}
