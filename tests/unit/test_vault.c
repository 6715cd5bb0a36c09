/* tests/unit/test_vault.c — vault/grant.h, vault/connect.h and the oauth
 * connector of vault/vault.h, held to their headers' comments, against a
 * real LMDB store in a mkdtemp dir with a master key (every write a writer
 * job through st_write_sync, read back in read txns after the commit).
 *
 * Connectors: auth type "oauth" validated field by field; the client secret
 * only in *secret, never in the record or the admin view; sealed under
 * "connector.oauth_client", and switching the type removes the other kind.
 * Token replies: what is accepted, what is refused, and that no refusal
 * quotes a token. Grants: round trip, no token in the clear in the store,
 * users whose ids are prefixes of each other sharing nothing, drop / cut /
 * connector deletion / tenant purge queueing re-sealed revocation jobs (or
 * a "manual" report), the queue's order, retries and stale results. The
 * single-flight refresh: claim, busy, fresh, lapse; a stale refresher
 * changing nothing. The credential: only the user's own unexpired grant.
 * Connect: the cookie (tenant, tamper, expiry, state, size), the authorize
 * URL's encoding and PKCE, client authentication per RFC 6749 §2.3.1. */
#include <ftw.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/jose.h"
#include "gateway/base/log.h"
#include "scim/scim.h"
#include "store/seal.h"
#include "store/store.h"
#include "store/tenant.h"
#include "store/token.h"
#include "store/url_query.h"
#include "tests/unit/unit.h"
#include "vault/connect.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "vault/vault.h"

#define T0 INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define NOW "2026-01-01T00:00:00Z"
#define SECRET "CLIENT-SECRET-XYZ"
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" /* RFC 7636 appendix B */
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

/* an oauth connector with a confidential client and a revocation endpoint */
#define OAUTH_FULL                                                                                         \
  "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","                                 \
  "\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\"," \
  "\"revocation_url\":\"https://as.example.com/revoke\",\"client_id\":\"cid-1\","                          \
  "\"client_secret\":\"" SECRET "\",\"scopes\":[\"read\",\"write\"]}}"
/* ... without a revocation endpoint, public client */
#define OAUTH_NOREVOKE                                                                                     \
  "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","                                 \
  "\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\"," \
  "\"client_id\":\"cid-2\"}}"

static char g_tmp[64];
static st_store *g_st;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void close_store(void) {
  st_close(g_st);
  g_st = NULL;
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
/* A fresh store with the vault's registrations in gateway/modules.c's order. */
static st_store *open_store(void) {
  close_store();
  strcpy(g_tmp, "/tmp/mcpgate-test-vault-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128], key[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 256u << 20;
  o.master_key_file = key;
  o.log = gw_store_log;
  if (st_open(&g_st, &o)) return NULL;
  int rc = vault_grant_register(g_st);
  if (!rc) rc = vault_register_purge(g_st);
  if (!rc) rc = vault_rediscover_register(g_st);
  if (!rc) rc = vault_register_url_check(g_st);
  if (!rc) rc = st_purge_add(g_st, "secrets", st_secret_purge_tenant, NULL);
  if (rc) {
    fprintf(stderr, "  store setup: %s\n", st_strerror(rc));
    close_store();
    return NULL;
  }
  return g_st;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
#define LATER (wall_ms() + 3600000) /* a now_ms by which every queued job is due */

/* ---- writer jobs ------------------------------------------------------------------ */

typedef struct job job;
struct job {
  int (*fn)(st_txn *, job *);
  const char *t, *u, *c, *s, *s2, *now;
  const char *uid; /* f_refreshed, f_late: the tenant incarnation the request was sent in (NULL: the tenant's now) */
  const vault_tokens *tok;
  const json_t *cfg;
  bool b1, b2;
  int64_t i1;
  uint64_t u1, u2;
  int rv;
};
static int job_run(st_txn *txn, void *arg) {
  job *j = arg;
  if (!j->now) j->now = NOW;
  j->rv = j->fn(txn, j);
  return j->rv < 0 ? j->rv : 0;
}
/* Runs one write; the function's result (positive ones too). */
static int W(int (*fn)(st_txn *, job *), job j) {
  j.fn = fn;
  int rc = st_write_sync(g_st, job_run, &j);
  return rc < 0 ? rc : j.rv;
}
static int f_conn_put(st_txn *x, job *j) {
  vault_put_out out;
  char epoch[ST_TOKEN_ID_BUFSZ];
  if (st_token_id_new(epoch)) return ST_ECRYPTO;
  return vault_connector_put(x, j->t, j->c, j->cfg, j->s, j->now, epoch, &out);
}
static int f_conn_del(st_txn *x, job *j) { return vault_connector_delete(x, j->t, j->c); }
static int f_put(st_txn *x, job *j) { return vault_grant_put(x, j->t, j->u, j->c, j->tok, j->now, j->b1 ? VAULT_PUT_CONNECT | VAULT_PUT_REVOKE_OLD : 0); }
static int f_drop(st_txn *x, job *j) { return vault_grant_drop(x, j->t, j->u, j->c, j->s ? j->s : "disconnect", j->now); }
static int f_cut_user(st_txn *x, job *j) { return vault_grants_cut_user(x, j->t, j->u, "deactivated", j->now); }
static int f_cut_conn(st_txn *x, job *j) { return vault_grants_cut_connector(x, j->t, j->c, "lost_access", j->now); }
static int f_claim(st_txn *x, job *j) { return vault_grant_claim(x, j->t, j->u, j->c, j->i1, j->u1); }
/* cfg: the record the refresh was sent with (its origin), s2 its client
 * secret, uid the tenant incarnation it was sent in — by default the
 * tenant's (made here, with TENANT_UID, when the test made none) */
#define TENANT_UID "0123456789abcdef"
static vault_late g_late;
static const char *origin_uid(st_txn *x, job *j, char uid[ST_TENANT_UID_LEN + 1]) {
  if (j->uid) return j->uid;
  char state[16];
  if (st_tenant_state(x, j->t, state) == ST_ENOTFOUND) st_tenant_create(x, j->t, j->t, NOW, TENANT_UID);
  if (st_tenant_uid_get(x, j->t, uid)) uid[0] = 0;
  return uid;
}
static int f_refreshed(st_txn *x, job *j) {
  char uid[ST_TENANT_UID_LEN + 1];
  vault_token_origin from = {j->cfg, j->s2, origin_uid(x, j, uid)};
  return vault_grant_refreshed(x, j->t, j->u, j->c, j->s, j->tok, &from, j->now, &g_late);
}
/* a connect's tokens refused after the code exchange (as f_refreshed's origin) */
static int f_late(st_txn *x, job *j) {
  char uid[ST_TENANT_UID_LEN + 1];
  vault_token_origin from = {j->cfg, j->s2, origin_uid(x, j, uid)};
  return vault_tokens_revoke(x, j->t, j->u, j->c, j->tok, &from, "late_connect", j->now, &g_late);
}
static int f_refresh_failed(st_txn *x, job *j) {
  return vault_grant_refresh_failed(x, j->t, j->u, j->c, j->s, j->b1, j->now);
}
static int f_result(st_txn *x, job *j) { return vault_revoke_result(x, j->s, j->u1, j->b1, j->b2, j->u2, j->c, j->now); }
static int f_purge(st_txn *x, job *j) { return vault_grant_purge_tenant(x, j->t, (int)j->i1); }

/* ---- fixtures ------------------------------------------------------------------------ */

static json_t *g_body; /* keeps *secret of the last parse alive */
static int parse(const char *text, json_t **cfg, const char **secret, char *err, size_t errlen) {
  json_decref(g_body);
  g_body = json_loads(text, 0, NULL);
  if (!g_body) {
    fprintf(stderr, "  bad fixture: %s\n", text);
    abort();
  }
  return vault_connector_parse(g_body, cfg, secret, err, errlen);
}
/* Parses and puts a connector; 0 or the error. */
static int conn_put(const char *tenant, const char *name, const char *text) {
  json_t *cfg;
  const char *secret;
  char err[1000];
  int rc = parse(text, &cfg, &secret, err, sizeof err);
  if (rc) {
    fprintf(stderr, "  parse: %s\n", err);
    return rc;
  }
  rc = W(f_conn_put, (job){.t = tenant, .c = name, .cfg = cfg, .s = secret});
  json_decref(cfg);
  return rc;
}
static vault_tokens toks(const char *access, const char *refresh, int64_t expires_at) {
  vault_tokens t = {(char *)access, (char *)refresh, expires_at, NULL};
  return t;
}
static int grant(const char *tenant, const char *user, const char *connector, const char *access,
                 const char *refresh, int64_t expires_at) {
  vault_tokens t = toks(access, refresh, expires_at);
  return W(f_put, (job){.t = tenant, .u = user, .c = connector, .tok = &t, .b1 = true});
}

/* ---- reads --------------------------------------------------------------------------- */

static st_txn *rd(void) {
  st_txn *r = NULL;
  if (st_read_begin(g_st, &r)) abort();
  return r;
}
static int get_tokens(const char *t, const char *u, const char *c, vault_tokens *out) {
  st_txn *r = rd();
  int rc = vault_grant_get(r, t, u, c, out);
  st_txn_end(r);
  return rc;
}
/* 1 when the grant's access token is `access` */
static int has_access(const char *t, const char *u, const char *c, const char *access) {
  vault_tokens tk;
  if (get_tokens(t, u, c, &tk)) return 0;
  int same = !strcmp(tk.access, access);
  vault_tokens_free(&tk);
  return same;
}
static json_t *info(const char *t, const char *u, const char *c) {
  st_txn *r = rd();
  json_t *rec = NULL;
  vault_grant_info(r, t, u, c, &rec);
  st_txn_end(r);
  return rec;
}
static json_t *grants_of(const char *t, const char *u) {
  st_txn *r = rd();
  json_t *a = NULL;
  if (vault_grants_of_user(r, t, u, &a)) abort();
  st_txn_end(r);
  return a;
}
static json_t *reports(const char *t) {
  st_txn *r = rd();
  json_t *a = NULL;
  if (vault_revocations_list(r, t, 100, &a)) abort();
  st_txn_end(r);
  return a;
}
static vault_counts counts(void) {
  st_txn *r = rd();
  vault_counts c;
  if (vault_counts_get(r, &c)) abort();
  st_txn_end(r);
  return c;
}
static int next_job(uint64_t now_ms, vault_revoke_job *j, uint64_t *next_due) {
  st_txn *r = rd();
  int rc = vault_revoke_next(r, now_ms, j, next_due);
  st_txn_end(r);
  return rc;
}
static int secret_exists(const char *tenant, const char *kind, const char *owner, const char *expect) {
  st_txn *r = rd();
  char *v = NULL;
  int rc = st_secret_get_str(r, &(st_aad){tenant, kind, owner}, &v);
  st_txn_end(r);
  int ok = rc == 0 && (!expect || !strcmp(v, expect));
  st_secret_str_free(v);
  return rc == ST_ENOTFOUND ? 0 : ok ? 1 : -1;
}
/* 1 when needle occurs in any key or value of db */
static int raw_contains(st_db db, const char *needle) {
  st_txn *r = rd();
  st_cursor *c;
  if (st_cursor_open(r, db, &c)) abort();
  st_val k, v;
  int found = 0;
  while (!found && st_cursor_next(c, &k, &v) == 0)
    found = memmem(k.data, k.len, needle, strlen(needle)) || memmem(v.data, v.len, needle, strlen(needle));
  st_cursor_close(c);
  st_txn_end(r);
  return found;
}
static int cred(const char *t, const char *c, const char *u, int64_t now_s, vault_cred *out) {
  st_txn *r = rd();
  int rc = vault_upstream_cred(r, t, c, u, NULL, now_s, out);
  st_txn_end(r);
  return rc;
}
static const char *sget(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
/* the report of the tenant for (user, connector), borrowed from arr */
static json_t *report_of(json_t *arr, const char *user, const char *connector) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) if (!strcmp(sget(v, "user") ?: "", user) && !strcmp(sget(v, "connector") ?: "", connector)) return v;
  return NULL;
}
/* Drains the queue (done): how many jobs there were. */
static int drain(void) {
  int n = 0;
  vault_revoke_job j;
  while (next_job(LATER, &j, NULL) == 0 && n < 1000) {
    char id[VAULT_REVOKE_ID_LEN + 1];
    memcpy(id, j.id, sizeof id);
    uint64_t due = j.due_ms;
    vault_revoke_job_free(&j);
    if (W(f_result, (job){.s = id, .u1 = due, .b1 = true})) abort();
    n++;
  }
  return n;
}

/* ==== connectors of auth type oauth ================================================ */

TEST(oauth_parse_minimal) {
  json_t *cfg;
  const char *secret = "x";
  char err[1000];
  CHECK_INT(parse(OAUTH_NOREVOKE, &cfg, &secret, err, sizeof err), 0);
  CHECK(secret == NULL);
  json_t *a = json_object_get(cfg, "auth");
  CHECK_STR(sget(a, "type"), "oauth");
  CHECK_STR(sget(a, "authorize_url"), "https://as.example.com/authorize");
  CHECK_STR(sget(a, "token_url"), "https://as.example.com/token");
  CHECK_STR(sget(a, "client_id"), "cid-2");
  CHECK_STR(sget(a, "token_auth"), "none"); /* no secret: a public client */
  CHECK(json_is_array(json_object_get(a, "scopes")) && json_array_size(json_object_get(a, "scopes")) == 0);
  CHECK(!json_object_get(a, "revocation_url"));
  CHECK(!json_object_get(a, "client_secret"));
  CHECK(vault_connector_is_oauth(cfg));
  json_t *view = vault_connector_view(cfg);
  CHECK(!json_is_true(json_object_get(json_object_get(view, "auth"), "sealed"))); /* nothing sealed */
  json_decref(view);
  json_decref(cfg);
}

TEST(oauth_parse_full_secret_only_in_out_param) {
  json_t *cfg;
  const char *secret;
  char err[1000];
  CHECK_INT(parse(OAUTH_FULL, &cfg, &secret, err, sizeof err), 0);
  CHECK_STR(secret, SECRET);
  json_t *a = json_object_get(cfg, "auth");
  CHECK_STR(sget(a, "token_auth"), "client_secret_basic"); /* the default with a secret */
  CHECK_STR(sget(a, "revocation_url"), "https://as.example.com/revoke");
  CHECK_INT(json_array_size(json_object_get(a, "scopes")), 2);
  CHECK_STR(json_string_value(json_array_get(json_object_get(a, "scopes"), 1)), "write");
  char *dump = json_dumps(cfg, 0);
  CHECK(dump);
  int leaked = strstr(dump, SECRET) != NULL || strstr(dump, "client_secret\"") != NULL;
  free(dump);
  CHECK(!leaked);
  json_t *view = vault_connector_view(cfg);
  CHECK(json_is_true(json_object_get(json_object_get(view, "auth"), "sealed")));
  dump = json_dumps(view, 0);
  json_decref(view);
  CHECK(dump);
  leaked = strstr(dump, SECRET) != NULL;
  free(dump);
  CHECK(!leaked);
  json_decref(cfg);

  /* explicit client_secret_post kept */
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":"
                  "\"https://as.example.com/a?x=1\",\"token_url\":\"http://as.example.com/t\",\"client_id\":\"c\","
                  "\"client_secret\":\"s\",\"token_auth\":\"client_secret_post\",\"scopes\":[]}}",
                  &cfg, &secret, err, sizeof err),
            0);
  CHECK_STR(sget(json_object_get(cfg, "auth"), "token_auth"), "client_secret_post");
  CHECK_STR(secret, "s");
  json_decref(cfg);
  /* explicit none without a secret */
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":"
                  "\"https://as.example.com/a\",\"token_url\":\"https://as.example.com/t\",\"client_id\":\"c\","
                  "\"token_auth\":\"none\"}}",
                  &cfg, &secret, err, sizeof err),
            0);
  CHECK(secret == NULL);
  json_decref(cfg);
}

/* Builds an oauth body from OAUTH_FULL's fields with one field replaced
 * (value NULL: removed) and expects a refusal naming `names`. */
static int refused(const char *field, const char *value_json, const char *names) {
  json_t *b = json_loads(OAUTH_FULL, 0, NULL);
  json_t *a = json_object_get(b, "auth");
  if (value_json) {
    json_t *v = json_loads(value_json, JSON_DECODE_ANY, NULL);
    if (!v) abort();
    json_object_set_new(a, field, v);
  } else {
    json_object_del(a, field);
  }
  char *text = json_dumps(b, 0);
  json_decref(b);
  json_t *cfg = (json_t *)1;
  const char *secret = "x";
  char err[1000];
  int rc = parse(text, &cfg, &secret, err, sizeof err);
  free(text);
  int ok = rc == VAULT_EINVALID && cfg == NULL && secret == NULL && strstr(err, names) != NULL &&
           strstr(err, SECRET) == NULL;
  if (!ok) fprintf(stderr, "  %s=%s: rc %d err \"%s\"\n", field, value_json ? value_json : "(removed)", rc, err);
  json_decref(cfg == (json_t *)1 ? NULL : cfg);
  return ok;
}

TEST(oauth_parse_refusals) {
  char big[1200], arr[2000];
  CHECK(refused("authorize_url", NULL, "auth.authorize_url"));
  CHECK(refused("authorize_url", "\"ftp://as.example.com/a\"", "auth.authorize_url"));
  CHECK(refused("authorize_url", "\"https://as.example.com/a#frag\"", "auth.authorize_url"));
  CHECK(refused("authorize_url", "\"https://as.example.com/a b\"", "auth.authorize_url"));
  CHECK(refused("authorize_url", "\"https://a\"", "auth.authorize_url")); /* too short */
  CHECK(refused("authorize_url", "7", "auth.authorize_url"));
  CHECK(refused("token_url", NULL, "auth.token_url"));
  CHECK(refused("token_url", "\"javascript:alert(1)//xx\"", "auth.token_url"));
  CHECK(refused("token_url", "\"https://as.example.com/t\\r\\nX: y\"", "auth.token_url"));
  CHECK(refused("revocation_url", "null", "auth.revocation_url"));
  CHECK(refused("revocation_url", "\"not a url at all\"", "auth.revocation_url"));
  CHECK(refused("client_id", NULL, "auth.client_id"));
  CHECK(refused("client_id", "\"\"", "auth.client_id"));
  CHECK(refused("client_id", "\"a b\"", "auth.client_id"));
  CHECK(refused("client_id", "42", "auth.client_id"));
  big[0] = '"';
  memset(big + 1, 'c', 513);
  big[514] = '"';
  big[515] = 0;
  CHECK(strlen(big) == 515);
  CHECK(refused("client_id", big, "auth.client_id"));
  CHECK(refused("client_secret", "\"\"", "auth.client_secret"));
  CHECK(refused("client_secret", "5", "auth.client_secret"));
  CHECK(refused("client_secret", "\"" SECRET "\\nX\"", "auth.client_secret"));
  CHECK(refused("client_secret", "\"" SECRET " with space\"", "auth.client_secret"));
  CHECK(refused("token_auth", "\"private_key_jwt\"", "auth.token_auth"));
  CHECK(refused("token_auth", "1", "auth.token_auth"));
  CHECK(refused("token_auth", "\"none\"", "auth.token_auth")); /* with a secret */
  CHECK(refused("scopes", "\"read write\"", "auth.scopes"));
  CHECK(refused("scopes", "[1]", "auth.scopes"));
  CHECK(refused("scopes", "[\"a b\"]", "auth.scopes"));
  CHECK(refused("scopes", "[\"a\\\"b\"]", "auth.scopes"));
  CHECK(refused("scopes", "[\"\"]", "auth.scopes"));
  /* 51 scopes */
  size_t n = 0;
  arr[n++] = '[';
  for (int i = 0; i < 51; i++) n += (size_t)snprintf(arr + n, sizeof arr - n, "%s\"s%d\"", i ? "," : "", i);
  arr[n++] = ']';
  arr[n] = 0;
  CHECK(refused("scopes", arr, "auth.scopes"));
  CHECK(refused("extra", "true", "unknown field \"auth.extra\""));
  CHECK(refused("value", "\"Bearer x\"", "unknown field \"auth.value\""));
  /* 50 scopes are fine */
  json_t *b = json_loads(OAUTH_FULL, 0, NULL);
  json_t *s50 = json_array();
  for (int i = 0; i < 50; i++) {
    char s[16];
    snprintf(s, sizeof s, "s%d", i);
    json_array_append_new(s50, json_string(s));
  }
  json_object_set_new(json_object_get(b, "auth"), "scopes", s50);
  char *text = json_dumps(b, 0);
  json_decref(b);
  json_t *cfg;
  const char *secret;
  char err[1000];
  int rc = parse(text, &cfg, &secret, err, sizeof err);
  free(text);
  CHECK_INT(rc, 0);
  json_decref(cfg);
}

/* A credential in a URL's authority (user:password@host) is refused in
 * every URL of a connector: the record is kept and shown in clear (the
 * GET view, the audit log's before → after, log lines) and curl would
 * send it as Basic auth; an '@' in the path or query is no user info. */
TEST(connector_urls_refuse_user_info) {
  json_t *cfg = NULL;
  const char *secret;
  char err[1000];
  CHECK_INT(parse("{\"url\":\"https://alice:pw-in-url@mcp.example.com/mcp\"}", &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(strstr(err, "\"url\" must not carry user information") != NULL);
  CHECK(strstr(err, "pw-in-url") == NULL);
  CHECK_INT(parse("{\"url\":\"http://token@127.0.0.1:8080/mcp\",\"auth\":{\"type\":\"header\",\"name\":\"X-Key\","
                  "\"value\":\"k\"}}",
                  &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(refused("authorize_url", "\"https://u:p@as.example.com/a\"", "auth.authorize_url"));
  CHECK(refused("token_url", "\"https://u:p@as.example.com/t\"", "auth.token_url"));
  CHECK(refused("revocation_url", "\"https://u@as.example.com/r\"", "auth.revocation_url"));
  /* '@' after the authority is a path or a query */
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/users/@me?by=a@b\"}", &cfg, &secret, err, sizeof err), 0);
  json_decref(cfg);
  cfg = NULL;
  /* a password with a '?', '#' or '/' in it: curl reads host "alice" (and a
   * query), but an origin cut there would show "alice:pw" */
  CHECK_INT(parse("{\"url\":\"https://alice:pw?in-url@mcp.example.com/mcp\"}", &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(strstr(err, "\"url\" must not carry user information") != NULL);
  CHECK(strstr(err, "in-url") == NULL && strstr(err, "alice") == NULL);
  CHECK_INT(parse("{\"url\":\"https://alice:pw/in-url@mcp.example.com/mcp\"}", &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(refused("token_url", "\"https://u:p?q@as.example.com/t\"", "auth.token_url"));
}

/* store/url_query.h's rule on user information, and the origin logs show */
TEST(url_authority_and_origin) {
  char why[300], o[300];
  static const char *const ok[] = {"https://h.example", "http://h.example:8080/x?by=a@b", "https://[::1]:443/p",
                                   "HTTPS://H.example/users/@me", "http://127.0.0.1:9/mcp#f", "https://h?x=1"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) CHECK_INT(st_url_authority_check(ok[i], why, sizeof why), 0);
  static const char *const bad[] = {
      "https://user:pa?ss@host.example/x", "https://user:pa#ss@host.example/x", "https://user:pa/ss@host.example/x",
      "https://user:pass@host.example/x",  "https://@host.example/",            "https://host.example?q=a@b",
      "https://host.example:0/",           "https://host.example:65536/",       "https://host.example:8a/",
      "https://:443/",                     "https:///x",                        "https://[::1/",
      "ftp://host.example/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why[0] = 0;
    CHECK_INT(st_url_authority_check(bad[i], why, sizeof why), -1);
    CHECK(why[0] && !strstr(why, "ss@") && !strstr(why, "host.example"));
  }
  CHECK(strstr((st_url_authority_check(bad[0], why, sizeof why), why), "user information") != NULL);
  CHECK_INT(st_url_authority_check(NULL, NULL, 0), -1);
  /* the origin: never a part of user information, even of a URL stored
   * before the check */
  st_url_origin("https://hooks.example.com/services/T0/B0/secret", o, sizeof o);
  CHECK_STR(o, "https://hooks.example.com");
  st_url_origin("http://127.0.0.1:9/x?y", o, sizeof o);
  CHECK_STR(o, "http://127.0.0.1:9");
  st_url_origin("https://u:p@hooks.example.com:8443/x", o, sizeof o);
  CHECK_STR(o, "https://hooks.example.com:8443");
  st_url_origin("https://user:pa?ss@host.example/x", o, sizeof o);
  CHECK_STR(o, "https://(withheld)");
  st_url_origin("https://user:pa#ss@host.example/x", o, sizeof o);
  CHECK_STR(o, "https://(withheld)");
  st_url_origin("https://user:pa/ss@host.example/x", o, sizeof o);
  CHECK_STR(o, "https://(withheld)");
  st_url_origin("https://host.example?token=abc@def", o, sizeof o);
  CHECK_STR(o, "https://(withheld)");
  st_url_origin("https://[::1]:8443/x", o, sizeof o);
  CHECK_STR(o, "https://[::1]:8443");
  st_url_origin("no-scheme", o, sizeof o);
  CHECK_STR(o, "(withheld)");
  st_url_origin("https://a-very-long-host.example.com/x", o, 12);
  CHECK_STR(o, "https://a-v");
}

TEST(oauth_parse_secret_needs_confidential_auth) {
  json_t *cfg;
  const char *secret = "x";
  char err[1000];
  /* client_secret_post / _basic without a secret */
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":"
                  "\"https://as.example.com/a\",\"token_url\":\"https://as.example.com/t\",\"client_id\":\"c\","
                  "\"token_auth\":\"client_secret_post\"}}",
                  &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(strstr(err, "auth.client_secret"));
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":"
                  "\"https://as.example.com/a\",\"token_url\":\"https://as.example.com/t\",\"client_id\":\"c\","
                  "\"token_auth\":\"client_secret_basic\"}}",
                  &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  /* a later error (timeouts) after a valid oauth part: no secret handed out */
  secret = "x";
  CHECK_INT(parse("{\"url\":\"https://mcp.example.com/mcp\",\"timeouts\":{\"connect_ms\":1},\"auth\":{\"type\":"
                  "\"oauth\",\"authorize_url\":\"https://as.example.com/a\",\"token_url\":\"https://as.example.com/t\","
                  "\"client_id\":\"c\",\"client_secret\":\"" SECRET "\"}}",
                  &cfg, &secret, err, sizeof err),
            VAULT_EINVALID);
  CHECK(secret == NULL && cfg == NULL);
  CHECK(!strstr(err, SECRET));
}

TEST(oauth_put_seals_client_secret_and_switching_type_removes_it) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", SECRET), 1);
  CHECK_INT(secret_exists("acme", VAULT_SECRET_KIND, "docs", NULL), 0);
  CHECK(!raw_contains(ST_DB_CONNECTORS, SECRET));
  CHECK(!raw_contains(ST_DB_SECRETS, SECRET));
  /* the stored record and the list view: no secret */
  st_txn *r = rd();
  json_t *arr = NULL;
  vault_connector_list(r, "acme", &arr);
  st_txn_end(r);
  char *dump = json_dumps(arr, 0);
  json_decref(arr);
  CHECK(dump);
  int leaked = strstr(dump, SECRET) != NULL;
  free(dump);
  CHECK(!leaked);
  /* → header: the header value sealed, the client secret gone */
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"header\",\"name\":\"Authorization\","
                     "\"value\":\"Bearer HDR-VALUE\"}}"),
            0);
  CHECK_INT(secret_exists("acme", VAULT_SECRET_KIND, "docs", "Bearer HDR-VALUE"), 1);
  CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", NULL), 0);
  /* → oauth again: the header value gone */
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", SECRET), 1);
  CHECK_INT(secret_exists("acme", VAULT_SECRET_KIND, "docs", NULL), 0);
  /* → public oauth client: no secret of either kind */
  CHECK_INT(conn_put("acme", "docs", OAUTH_NOREVOKE), 0);
  CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", NULL), 0);
  CHECK_INT(secret_exists("acme", VAULT_SECRET_KIND, "docs", NULL), 0);
  /* deleting an oauth connector removes its client secret */
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", NULL), 0);
  close_store();
}

/* What a connector PUT tells the rest (ST_EVENT_CONNECTOR_PUT): "rekeyed"
 * (approvals end) when the upstream sees another credential — other auth
 * settings, or another shared header value; not the same document again,
 * and not an oauth client secret rotated for the same client (the calls
 * run with each employee's own tokens). */
static int last_rekeyed = -1, last_moved = -1;
static int on_put_ev(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)txn, (void)kind, (void)ctx;
  const vault_connector_event *ev = event;
  last_rekeyed = ev->rekeyed;
  last_moved = ev->moved;
  return 0;
}
#define HDR(v) "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"header\",\"name\":\"Authorization\",\"value\":\"" v "\"}}"
TEST(connector_put_says_when_the_credential_changed) {
  CHECK(open_store());
  CHECK_INT(st_hook_add(g_st, ST_EVENT_CONNECTOR_PUT, on_put_ev, NULL), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(last_rekeyed, 0); /* new */
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(last_rekeyed, 0); /* the same document again */
  const char *rotated = "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","
                        "\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\","
                        "\"revocation_url\":\"https://as.example.com/revoke\",\"client_id\":\"cid-1\","
                        "\"client_secret\":\"ROTATED-SECRET\",\"scopes\":[\"read\",\"write\"]}}";
  CHECK_INT(conn_put("acme", "docs", rotated), 0);
  CHECK_INT(last_rekeyed, 0); /* the same client's secret rotated */
  CHECK_INT(conn_put("acme", "docs", HDR("Bearer A")), 0);
  CHECK_INT(last_rekeyed, 1); /* another auth type */
  CHECK_INT(conn_put("acme", "docs", HDR("Bearer A")), 0);
  CHECK_INT(last_rekeyed, 0);
  CHECK_INT(conn_put("acme", "docs", HDR("Bearer B")), 0);
  CHECK_INT(last_rekeyed, 1); /* another shared credential */
  CHECK_INT(last_moved, 0);
  close_store();
}

/* The connector's binding (vault_connector_bind): what its upstream
 * sessions belong to. It changes with a move and with a rekey, never with
 * anything else, and never comes back to a value it had — not even for a
 * connector deleted and made again under its name; the admin view does
 * not show it. */
static char *bind_of(const char *tenant, const char *name) {
  st_txn *r = rd();
  json_t *rec = NULL;
  char *b = NULL;
  if (vault_connector_get(r, tenant, name, &rec) == 0 && vault_connector_bind(rec))
    b = strdup(json_string_value(vault_connector_bind(rec)));
  json_t *v = rec ? vault_connector_view(rec) : NULL;
  if (v && json_object_get(v, "epoch")) {
    free(b);
    b = strdup("(shown)");
  }
  json_decref(v);
  json_decref(rec);
  st_txn_end(r);
  return b;
}
#define AT_URL(u, v) "{\"url\":\"" u "\",\"description\":\"" v "\",\"auth\":{\"type\":\"header\",\"name\":\"X-Key\",\"value\":\"k-" v "\"}}"
TEST(connector_bind_changes_with_a_move_or_a_rekey_only) {
  CHECK(open_store());
  char *seen[8] = {0};
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "1")), 0);
  seen[0] = bind_of("acme", "docs");
  CHECK(seen[0] && strcmp(seen[0], "(shown)") && strncmp(seen[0], "http", 4)); /* its own epoch, not its url */
  /* the same credential again, another description: the same binding */
  CHECK_INT(conn_put("acme", "docs", "{\"url\":\"https://a.example.com/mcp\",\"description\":\"other\","
                                     "\"auth\":{\"type\":\"header\",\"name\":\"X-Key\",\"value\":\"k-1\"}}"), 0);
  char *b = bind_of("acme", "docs");
  CHECK(b && !strcmp(b, seen[0]));
  free(b);
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "2")), 0); /* rekeyed */
  seen[1] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://b.example.com/mcp", "2")), 0); /* moved */
  seen[2] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "1")), 0); /* back to the first settings */
  seen[3] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "1")), 0); /* unchanged */
  seen[4] = bind_of("acme", "docs");
  for (int i = 1; i < 4; i++) {
    CHECK(seen[i] && strcmp(seen[i], "(shown)"));
    for (int k = 0; k < i; k++) CHECK(seen[k] && seen[i] && strcmp(seen[k], seen[i]));
  }
  CHECK(seen[4] && !strcmp(seen[4], seen[3]));
  /* deleted and made again under the same name (an admin rotating a key by
   * delete and re-create): a new connector, whose binding is none the old
   * one had — neither made at the same URL, nor rekeyed or moved again
   * (an upstream session or a key form of the old one never passes for
   * the new one's) */
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "1")), 0); /* made again */
  seen[5] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "2")), 0); /* rekeyed */
  seen[6] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://b.example.com/mcp", "2")), 0); /* moved */
  seen[7] = bind_of("acme", "docs");
  for (int i = 5; i < 8; i++) {
    CHECK(seen[i] && strcmp(seen[i], "(shown)"));
    for (int k = 0; k < i; k++) CHECK(seen[k] && seen[i] && strcmp(seen[k], seen[i]));
  }
  for (int i = 0; i < 8; i++) free(seen[i]);
  close_store();
}
/* Nor across a delete: a connector deleted and made again under its
 * name is another one, whose binding is none its predecessor had — a key
 * form or a connect begun for the old one, or an upstream session it
 * opened, must not pass for the new one's (the new one moved as many
 * times, or its URL shown alike with another query key). */
TEST(connector_bind_never_comes_back_after_a_delete) {
  CHECK(open_store());
  char *seen[6] = {0};
  int n = 0;
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://a.example.com/mcp", "1")), 0);
  seen[n++] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://b.example.com/mcp", "1")), 0); /* moved once */
  seen[n++] = bind_of("acme", "docs");
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://c.example.com/mcp", "1")), 0); /* another one */
  seen[n++] = bind_of("acme", "docs");
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://d.example.com/mcp", "1")), 0); /* moved once too */
  seen[n++] = bind_of("acme", "docs");
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  /* a key in the query: two of them show alike */
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://q.example.com/mcp?api_key=OLD-KEY", "1")), 0);
  seen[n++] = bind_of("acme", "docs");
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(conn_put("acme", "docs", AT_URL("https://q.example.com/mcp?api_key=NEW-KEY", "1")), 0);
  seen[n++] = bind_of("acme", "docs");
  for (int i = 0; i < n; i++) {
    CHECK(seen[i] && strcmp(seen[i], "(shown)"));
    for (int k = 0; k < i; k++)
      if (!strcmp(seen[k], seen[i])) {
        fprintf(stderr, "  binding %d is binding %d's: %s\n", i, k, seen[i]);
        CHECK(0);
      }
  }
  for (int i = 0; i < n; i++) free(seen[i]);
  close_store();
}
#undef AT_URL
#undef HDR

/* ==== a connector URL's query (vault/connector_url.c) ================================= */

#define QKEY "QUERY-KEY-7f3a9c"
#define QURL "https://mcp.example.com/mcp?api_key=" QKEY "&region=eu"
#define QSHOWN "https://mcp.example.com/mcp?api_key=\xe2\x80\xa6&region=\xe2\x80\xa6"

static int shown_is(const char *url, const char *want) {
  char *s = vault_url_shown(url);
  int ok = s && !strcmp(s, want);
  if (!ok) fprintf(stderr, "  shown(%s) = %s, want %s\n", url, s ? s : "(null)", want);
  free(s);
  return ok;
}
static int kept_is(const char *url, const char *stored, int want_rc, const char *want) {
  char *out = NULL;
  int rc = vault_url_keep_masked(url, stored, &out);
  int ok = rc == want_rc && (want ? out && !strcmp(out, want) : out == NULL);
  if (!ok) fprintf(stderr, "  keep(%s, %s) = %d %s\n", url, stored ? stored : "(null)", rc, out ? out : "(null)");
  vault_secret_free(out);
  return ok;
}

/* Every query value is shown as "…", the names kept; a component without
 * '=' is all value; nothing else of the URL changes. */
TEST(url_shown_masks_every_query_value) {
  CHECK(shown_is("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"));
  CHECK(shown_is("https://mcp.example.com/mcp?", "https://mcp.example.com/mcp?"));
  CHECK(shown_is(QURL, QSHOWN));
  CHECK(shown_is("http://h/p?a=&b", "http://h/p?a=&\xe2\x80\xa6"));
  CHECK(shown_is("http://h/p?a=1&&b=x=y", "http://h/p?a=\xe2\x80\xa6&&b=\xe2\x80\xa6"));
  CHECK(shown_is("http://h/mcp/zap-path-secret", "http://h/mcp/zap-path-secret")); /* a path is shown as is */
  CHECK_INT(vault_url_has_secret(QURL), 1);
  CHECK_INT(vault_url_has_secret("https://mcp.example.com/mcp?a="), 0);
  CHECK_INT(vault_url_has_secret("https://mcp.example.com/mcp"), 0);
  /* a value sent masked in its encoded form shows as "…": it counts */
  CHECK_INT(vault_url_has_secret("https://mcp.example.com/mcp?api_key=%E2%80%A6"), 1);
}

/* A value sent back masked keeps the stored one of that name (by rank
 * among its name), at the stored scheme, host and path only. */
TEST(url_keep_masked_values) {
  const char *M = "\xe2\x80\xa6";
  char u[300], w[300];
  CHECK(kept_is(QURL, NULL, 0, QURL)); /* nothing masked: itself */
  CHECK(kept_is(QSHOWN, QURL, 0, QURL));
  snprintf(u, sizeof u, "https://mcp.example.com/mcp?api_key=%%e2%%80%%a6&region=us");
  CHECK(kept_is(u, QURL, 0, "https://mcp.example.com/mcp?api_key=" QKEY "&region=us"));
  /* another path, host, scheme or port: nothing kept */
  CHECK(kept_is("https://mcp.example.com/other?api_key=\xe2\x80\xa6", QURL, VAULT_EMASKED, NULL));
  CHECK(kept_is("https://evil.example/mcp?api_key=\xe2\x80\xa6", QURL, VAULT_EMASKED, NULL));
  CHECK(kept_is("http://mcp.example.com/mcp?api_key=\xe2\x80\xa6", QURL, VAULT_EMASKED, NULL));
  CHECK(kept_is("https://mcp.example.com:444/mcp?api_key=\xe2\x80\xa6", QURL, VAULT_EMASKED, NULL));
  /* nothing stored, or not that name */
  CHECK(kept_is(QSHOWN, NULL, VAULT_EMASKED, NULL));
  CHECK(kept_is("https://mcp.example.com/mcp?token=\xe2\x80\xa6", QURL, VAULT_EMASKED, NULL));
  CHECK(kept_is("https://mcp.example.com/mcp?api_key=\xe2\x80\xa6", "https://mcp.example.com/mcp", VAULT_EMASKED, NULL));
  CHECK(kept_is("https://mcp.example.com/mcp?a=\xe2\x80\xa6", "https://mcp.example.com/mcp?a=", VAULT_EMASKED, NULL));
  /* repeated names by rank, bare components among bare ones */
  snprintf(u, sizeof u, "http://h/p?a=%s&b=2&a=%s", M, M);
  CHECK(kept_is(u, "http://h/p?a=1&a=9&b=7", 0, "http://h/p?a=1&b=2&a=9"));
  snprintf(u, sizeof u, "http://h/p?a=x&a=%s", M);
  CHECK(kept_is(u, "http://h/p?a=1&a=9", 0, "http://h/p?a=x&a=9"));
  snprintf(u, sizeof u, "http://h/p?a=%s&a=%s&a=%s", M, M, M);
  CHECK(kept_is(u, "http://h/p?a=1&a=9", VAULT_EMASKED, NULL));
  snprintf(u, sizeof u, "http://h/p?%s&v=1", M);
  snprintf(w, sizeof w, "http://h/p?zapkey&v=1");
  CHECK(kept_is(u, "http://h/p?zapkey&v=2", 0, w));
  /* what is kept may not make the URL longer than any URL given */
  static char big[VAULT_URL_MAX + 64], longer[2 * VAULT_URL_MAX];
  snprintf(big, sizeof big, "http://h/p?a=%0*d", VAULT_URL_MAX - 20, 7);
  snprintf(longer, sizeof longer, "http://h/p?a=%s&b=%0*d", M, 40, 1);
  CHECK(kept_is(longer, big, VAULT_EMASKED, NULL));
}

static json_t *conn_rec(const char *t, const char *c) {
  st_txn *r = rd();
  json_t *rec = NULL;
  vault_connector_get(r, t, c, &rec);
  st_txn_end(r);
  return rec;
}
/* the real URL (a copy), and whether it came unsealed or as the record's own string */
static char *conn_url(const char *t, const char *c, int *was_sealed) {
  json_t *rec = conn_rec(t, c);
  st_txn *r = rd();
  const char *u = NULL;
  char *sealed = NULL, *out = NULL;
  if (rec && vault_connector_url(r, t, c, rec, &u, &sealed) == 0 && u) {
    out = strdup(u);
    if (was_sealed) *was_sealed = sealed != NULL;
    if (!sealed && u != json_string_value(json_object_get(rec, "url"))) {
      free(out); /* a plain URL must be the record's own string, not a copy */
      out = NULL;
    }
  }
  vault_secret_free(sealed);
  st_txn_end(r);
  json_decref(rec);
  return out;
}
static int url_is(const char *t, const char *c, const char *want) {
  char *u = conn_url(t, c, NULL);
  int ok = u && !strcmp(u, want);
  if (!ok) fprintf(stderr, "  url of %s/%s: %s\n", t, c, u ? u : "(null)");
  free(u);
  return ok;
}

/* The record shows the URL masked and says it is sealed; the real URL is
 * only in ST_DB_SECRETS (sealed), and is what vault_connector_url gives
 * (a plain URL: the record's own, nothing unsealed). A PUT of the shown URL
 * keeps it (no move); another value is a move, and the binding the
 * sessions compare (vault_connector_bind) changes though the shown URL
 * does not. */
TEST(connector_put_seals_the_url_query) {
  CHECK(open_store());
  CHECK_INT(st_hook_add(g_st, ST_EVENT_CONNECTOR_PUT, on_put_ev, NULL), 0);
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"" QURL "\"}"), 0);
  json_t *rec = conn_rec("acme", "q");
  CHECK(rec);
  CHECK_STR(sget(rec, "url"), QSHOWN);
  CHECK(json_is_true(json_object_get(rec, "url_sealed")));
  json_t *view = vault_connector_view(rec);
  CHECK_STR(sget(view, "url"), QSHOWN);
  json_decref(view);
  json_decref(rec);
  CHECK(!raw_contains(ST_DB_CONNECTORS, QKEY));
  CHECK(!raw_contains(ST_DB_SECRETS, QKEY));
  CHECK_INT(secret_exists("acme", VAULT_URL_KIND, "q", QURL), 1);
  int was_sealed = 0;
  char *u0 = conn_url("acme", "q", &was_sealed);
  CHECK(u0 && !strcmp(u0, QURL) && was_sealed);
  free(u0);
  char *s1 = bind_of("acme", "q");
  /* the shown URL sent back: kept, no move */
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"" QSHOWN "\",\"description\":\"d\"}"), 0);
  CHECK_INT(last_moved, 0);
  CHECK(url_is("acme", "q", QURL));
  char *s2 = bind_of("acme", "q");
  CHECK(s1 && s2 && !strcmp(s1, s2));
  /* to another server with a kept value: refused, nothing changed */
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"https://evil.example/mcp?api_key=\xe2\x80\xa6&region=\xe2\x80\xa6\"}"),
            VAULT_EMASKED);
  CHECK(url_is("acme", "q", QURL));
  /* another key: a move, though it shows alike */
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"https://mcp.example.com/mcp?api_key=OTHER-KEY&region=eu\"}"), 0);
  CHECK_INT(last_moved, 1);
  char *s3 = bind_of("acme", "q");
  CHECK(s3 && strcmp(s2, s3));
  rec = conn_rec("acme", "q");
  CHECK_STR(sget(rec, "url"), QSHOWN);
  json_decref(rec);
  /* a URL without query values: nothing sealed */
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"https://mcp.example.com/mcp\"}"), 0);
  CHECK_INT(last_moved, 1);
  CHECK_INT(secret_exists("acme", VAULT_URL_KIND, "q", NULL), 0);
  rec = conn_rec("acme", "q");
  CHECK(json_object_get(rec, "url_sealed") == NULL);
  json_decref(rec);
  CHECK(url_is("acme", "q", "https://mcp.example.com/mcp"));
  u0 = conn_url("acme", "q", &was_sealed);
  CHECK(u0 && !was_sealed);
  free(u0);
  /* deleting removes the sealed URL */
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"" QURL "\"}"), 0);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "q"}), 0);
  CHECK_INT(secret_exists("acme", VAULT_URL_KIND, "q", NULL), 0);
  free(s1);
  free(s2);
  free(s3);
  close_store();
}

static int f_raw_conn(st_txn *x, job *j) {
  char k[80];
  size_t tl = strlen(j->t), cl = strlen(j->c);
  memcpy(k, j->t, tl + 1);
  memcpy(k + tl + 1, j->c, cl);
  return st_put(x, ST_DB_CONNECTORS, k, tl + 1 + cl, j->s, strlen(j->s), 0);
}
static int f_secret_del(st_txn *x, job *j) { return st_secret_del(x, &(st_aad){j->t, j->s, j->c}); }
static int f_upgrade(st_txn *x, job *j) {
  (void)j;
  return vault_upgrade_url_queries(x);
}

/* store check: a record saying its URL is sealed without a sealed URL, or
 * one keeping a query value in clear (not migrated), is a problem. */
TEST(store_check_finds_connector_urls_in_clear_or_unsealable) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "q", "{\"url\":\"" QURL "\"}"), 0);
  CHECK_INT(conn_put("acme", "plain", "{\"url\":\"https://mcp.example.com/mcp\"}"), 0);
  CHECK_INT(st_check(g_st, NULL, NULL), 0);
  CHECK_INT(W(f_secret_del, (job){.t = "acme", .c = "q", .s = VAULT_URL_KIND}), 0);
  CHECK_INT(st_check(g_st, NULL, NULL), 1);
  CHECK_INT(W(f_raw_conn, (job){.t = "acme", .c = "old", .s = "{\"url\":\"" QURL "\",\"auth\":{\"type\":\"none\"}}"}), 0);
  CHECK_INT(st_check(g_st, NULL, NULL), 2);
  close_store();
}

/* Migration 11's step: a record written before URLs were sealed (its
 * query in clear) is sealed and masked; one without query values, and one
 * already sealed, are left as they are. */
TEST(upgrade_seals_stored_url_queries) {
  CHECK(open_store());
  CHECK_INT(W(f_raw_conn, (job){.t = "acme", .c = "q", .s = "{\"url\":\"" QURL "\",\"description\":\"\",\"auth\":{"
                                                              "\"type\":\"none\"},\"timeouts\":{},\"name\":\"q\"}"}),
            0);
  CHECK_INT(W(f_raw_conn, (job){.t = "acme", .c = "plain", .s = "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{"
                                                                  "\"type\":\"none\"},\"name\":\"plain\"}"}),
            0);
  CHECK_INT(W(f_raw_conn,
              (job){.t = "acme", .c = "disc",
                    .s = "{\"url\":\"https://d.example.com/mcp?k=" QKEY "\",\"auth\":{\"type\":\"oauth\",\"resource\":"
                         "\"https://d.example.com/mcp?k=" QKEY "\",\"discovered\":{\"resource_metadata_url\":"
                         "\"https://d.example.com/.well-known/oauth-protected-resource/mcp?k=" QKEY "\"}},\"name\":\"disc\"}"}),
            0);
  CHECK(raw_contains(ST_DB_CONNECTORS, QKEY));
  CHECK_INT(W(f_upgrade, (job){0}), 0);
  CHECK(!raw_contains(ST_DB_CONNECTORS, QKEY));
  CHECK(!raw_contains(ST_DB_SECRETS, QKEY));
  json_t *rec = conn_rec("acme", "q");
  CHECK_STR(sget(rec, "url"), QSHOWN);
  CHECK(json_is_true(json_object_get(rec, "url_sealed")));
  json_decref(rec);
  CHECK(url_is("acme", "q", QURL));
  CHECK(url_is("acme", "disc", "https://d.example.com/mcp?k=" QKEY));
  json_t *drec = conn_rec("acme", "disc");
  json_t *dauth = json_object_get(drec, "auth");
  CHECK_STR(sget(dauth, "resource"), "https://d.example.com/mcp?k=\xe2\x80\xa6");
  CHECK_STR(sget(json_object_get(dauth, "discovered"), "resource_metadata_url"),
            "https://d.example.com/.well-known/oauth-protected-resource/mcp?k=\xe2\x80\xa6");
  json_decref(drec);
  rec = conn_rec("acme", "plain");
  CHECK_STR(sget(rec, "url"), "https://mcp.example.com/mcp");
  CHECK(json_object_get(rec, "url_sealed") == NULL);
  json_decref(rec);
  CHECK_INT(secret_exists("acme", VAULT_URL_KIND, "plain", NULL), 0);
  /* run again (as on a store migrated already): nothing changes */
  CHECK_INT(W(f_upgrade, (job){0}), 0);
  CHECK(url_is("acme", "q", QURL));
  CHECK_INT(st_check(g_st, NULL, NULL), 0);
  close_store();
}

/* ==== token endpoint replies ========================================================== */

#define AT "SECRETACCESSTOKEN0123456789"
#define RT "SECRETREFRESHTOKEN0123456789"

static int reply(const char *body, vault_tokens *t, char *err, size_t errlen) {
  return vault_tokens_from_reply(body, strlen(body), T0, t, err, errlen);
}
/* refused, with a message that does not quote AT or RT */
static int reply_refused(const char *body) {
  vault_tokens t;
  char err[300];
  int rc = reply(body, &t, err, sizeof err);
  int ok = rc == VAULT_EINVALID && err[0] && !strstr(err, AT) && !strstr(err, RT) && !strstr(err, "SECRET") &&
           t.access == NULL && t.refresh == NULL;
  if (!ok) fprintf(stderr, "  %s: rc %d err \"%s\"\n", body, rc, err);
  if (rc == 0) vault_tokens_free(&t);
  return ok;
}

TEST(tokens_from_reply_accepts) {
  vault_tokens t;
  char err[300];
  /* GitHub's shape: lower-case bearer, no expiry */
  CHECK_INT(reply("{\"access_token\":\"gho_" AT "\",\"token_type\":\"bearer\",\"scope\":\"repo,gist\"}", &t, err,
                  sizeof err),
            0);
  CHECK_STR(t.access, "gho_" AT);
  CHECK(t.refresh == NULL);
  CHECK_INT(t.expires_at, 0);
  CHECK_STR(t.scope, "repo,gist");
  vault_tokens_free(&t);
  /* Okta's shape */
  CHECK_INT(reply("{\"token_type\":\"Bearer\",\"expires_in\":3600,\"access_token\":\"" AT "\",\"scope\":"
                  "\"openid offline_access\",\"refresh_token\":\"" RT "\",\"id_token\":\"x.y.z\"}",
                  &t, err, sizeof err),
            0);
  CHECK_STR(t.refresh, RT);
  CHECK_INT(t.expires_at, T0 + 3600);
  vault_tokens_free(&t);
  CHECK_INT(reply("{\"access_token\":\"a\",\"token_type\":\"BEARER\",\"expires_in\":3600.9}", &t, err, sizeof err), 0);
  CHECK_INT(t.expires_at, T0 + 3600);
  CHECK(t.scope == NULL);
  vault_tokens_free(&t);
  CHECK_INT(reply("{\"access_token\":\"a\",\"token_type\":\"bEaReR\",\"expires_in\":0}", &t, err, sizeof err), 0);
  CHECK_INT(t.expires_at, T0);
  vault_tokens_free(&t);
  /* a token of VAULT_TOKEN_MAX bytes */
  char *big = malloc(VAULT_TOKEN_MAX + 100);
  CHECK(big);
  int n = snprintf(big, 100, "{\"token_type\":\"Bearer\",\"access_token\":\"");
  memset(big + n, 'A', VAULT_TOKEN_MAX);
  strcpy(big + n + VAULT_TOKEN_MAX, "\"}");
  int rc = reply(big, &t, err, sizeof err);
  free(big);
  CHECK_INT(rc, 0);
  CHECK_INT(strlen(t.access), VAULT_TOKEN_MAX);
  vault_tokens_free(&t);
}

TEST(tokens_from_reply_refuses) {
  CHECK(reply_refused(""));
  CHECK(reply_refused("not json " AT));
  CHECK(reply_refused("[\"" AT "\"]"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":null}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":12345678901}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT " " AT "\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\\u0001\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\\u00e9\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\\u0000x\"}"));
  CHECK(reply_refused("{\"access_token\":\"" AT "\"}"));
  CHECK(reply_refused("{\"token_type\":\"mac\",\"access_token\":\"" AT "\"}"));
  CHECK(reply_refused("{\"token_type\":\"DPoP\",\"access_token\":\"" AT "\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearerx\",\"access_token\":\"" AT "\"}"));
  CHECK(reply_refused("{\"token_type\":7,\"access_token\":\"" AT "\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":-1}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":-0.5}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":1e300}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":9223372036854775807}"));
  /* Azure AD v1 sends expires_in as a string of digits: taken; anything else in a string is not */
  {
    vault_tokens az;
    char e2[300];
    CHECK_INT(reply("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":\"3600\"}", &az, e2, sizeof e2), 0);
    CHECK(az.expires_at == T0 + 3600);
    vault_tokens_free(&az);
  }
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":\"36x0\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":\"-3600\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":\"\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":\"99999999999\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":null}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"expires_in\":true}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":\"" RT " x\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":\"" RT "\\n\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":\"" RT "\\u007f\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":\"\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":5}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"scope\":[\"a\"]}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"scope\":5}"));
  /* duplicate keys: which token would win is the parser's choice */
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"access_token\":\"other-token\"}"));
  CHECK(reply_refused("{\"token_type\":\"Bearer\",\"access_token\":\"" AT "\",\"refresh_token\":\"" RT
                      "\",\"refresh_token\":\"x\"}"));
  /* over-long tokens */
  char *big = malloc(2 * VAULT_TOKEN_MAX + 200);
  CHECK(big);
  int n = snprintf(big, 200, "{\"token_type\":\"Bearer\",\"access_token\":\"");
  memset(big + n, 'A', VAULT_TOKEN_MAX + 1);
  strcpy(big + n + VAULT_TOKEN_MAX + 1, "\"}");
  int ok1 = reply_refused(big);
  n = snprintf(big, 200, "{\"token_type\":\"Bearer\",\"access_token\":\"a\",\"refresh_token\":\"");
  memset(big + n, 'R', VAULT_TOKEN_MAX + 1);
  strcpy(big + n + VAULT_TOKEN_MAX + 1, "\"}");
  int ok2 = reply_refused(big);
  n = snprintf(big, 200, "{\"token_type\":\"Bearer\",\"access_token\":\"a\",\"scope\":\"");
  memset(big + n, 's', 2001);
  strcpy(big + n + 2001, "\"}");
  int ok3 = reply_refused(big);
  free(big);
  CHECK(ok1);
  CHECK(ok2);
  CHECK(ok3);
}

/* ==== grants =========================================================================== */

TEST(grant_round_trip_and_nothing_in_the_clear) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  vault_tokens t = toks("at-" AT, "rt-" RT, T0 + 3600);
  t.scope = "read write";
  CHECK_INT(W(f_put, (job){.t = "acme", .u = "u1", .c = "docs", .tok = &t, .b1 = true}), 0);
  vault_tokens g;
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), 0);
  CHECK_STR(g.access, "at-" AT);
  CHECK_STR(g.refresh, "rt-" RT);
  CHECK_INT(g.expires_at, T0 + 3600);
  vault_tokens_free(&g);
  json_t *rec = info("acme", "u1", "docs");
  CHECK(rec);
  CHECK_STR(sget(rec, "connector"), "docs");
  CHECK_STR(sget(rec, "scope"), "read write");
  CHECK_INT(json_integer_value(json_object_get(rec, "expires_at")), T0 + 3600);
  CHECK_STR(sget(rec, "created"), NOW);
  char *dump = json_dumps(rec, 0);
  json_decref(rec);
  int leaked = strstr(dump, AT) || strstr(dump, RT);
  free(dump);
  CHECK(!leaked);
  CHECK(!raw_contains(ST_DB_VAULT, AT));
  CHECK(!raw_contains(ST_DB_VAULT, RT));
  CHECK(!raw_contains(ST_DB_SECRETS, AT));
  CHECK(!raw_contains(ST_DB_SECRETS, RT));
  /* other tenant, user, connector: nothing */
  CHECK_INT(get_tokens("beta", "u1", "docs", &g), ST_ENOTFOUND);
  CHECK_INT(get_tokens("acme", "u2", "docs", &g), ST_ENOTFOUND);
  CHECK_INT(get_tokens("acme", "u1", "wiki", &g), ST_ENOTFOUND);
  CHECK(info("acme", "u1", "wiki") == NULL);
  /* a token without its access part is refused */
  vault_tokens bad = toks(NULL, "x", 0);
  CHECK(W(f_put, (job){.t = "acme", .u = "u1", .c = "docs", .tok = &bad, .b1 = true}) < 0);
  CHECK(has_access("acme", "u1", "docs", "at-" AT));
  close_store();
}

/* ST_EVENT_GRANT_CHANGED's "superseded" (grant.h): the credential the
 * user's upstream sessions were opened with, if any, is no longer theirs —
 * every connect, a drop on its own — and not for a refresh (no event), an
 * invalid_grant (the authorization server's doing), nor within a cut of
 * all the user's or the connector's grants (their triggers end the
 * sessions). */
static int ev_count, ev_connected = -1, ev_superseded = -1;
static int on_grant_ev(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)txn, (void)kind, (void)ctx;
  const vault_grant_event *ev = event;
  ev_count++;
  ev_connected = ev->connected;
  ev_superseded = ev->superseded;
  return 0;
}
TEST(grant_event_says_when_the_old_credential_is_gone) {
  CHECK(open_store());
  CHECK_INT(st_hook_add(g_st, ST_EVENT_GRANT_CHANGED, on_grant_ev, NULL), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  ev_count = 0;
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 3600), 0); /* first connect */
  CHECK_INT(ev_count, 1);
  CHECK_INT(ev_connected, 1);
  CHECK_INT(ev_superseded, 1);
  vault_tokens f = toks("a2", "r2", T0 + 7200);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f}), 0);
  CHECK_INT(ev_count, 1); /* a refresh: the same grant */
  CHECK_INT(grant("acme", "u1", "docs", "a3", "r3", T0 + 3600), 0); /* a reconnect */
  CHECK_INT(ev_count, 2);
  CHECK_INT(ev_connected, 1);
  CHECK_INT(ev_superseded, 1);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0); /* a disconnect */
  CHECK_INT(ev_count, 3);
  CHECK_INT(ev_connected, 0);
  CHECK_INT(ev_superseded, 1);
  CHECK_INT(grant("acme", "u1", "docs", "a4", "r4", T0 + 3600), 0);
  CHECK_INT(ev_superseded, 1);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r4", .b1 = true}), 0);
  CHECK_INT(ev_count, 5);
  CHECK_INT(ev_connected, 0);
  CHECK_INT(ev_superseded, 0); /* invalid_grant */
  CHECK(info("acme", "u1", "docs") == NULL);
  CHECK_INT(grant("acme", "u1", "docs", "a4", "r4", T0 + 3600), 0);
  CHECK_INT(W(f_cut_user, (job){.t = "acme", .u = "u1"}), 0);
  CHECK_INT(ev_count, 7);
  CHECK_INT(ev_connected, 0);
  CHECK_INT(ev_superseded, 0); /* the user's cut ends their sessions */
  CHECK_INT(grant("acme", "u1", "docs", "a5", "r5", T0 + 3600), 0);
  CHECK_INT(W(f_cut_conn, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(ev_count, 9);
  CHECK_INT(ev_superseded, 0); /* the connector's cut ends its sessions */
  close_store();
}

/* ST_EVENT_CREDENTIAL_ENDING: emitted by every write that retires what
 * upstream sessions were opened with — a connector's rekey, move or
 * delete, a person's connect, new key or disconnect — BEFORE anything
 * changes, so a hook reads, in that transaction, the old credential and
 * the old real URL (gateway/mcp ends the sessions with them). A move to
 * another origin says "elsewhere" (nothing is to reach the old server);
 * nothing else emits it: a PUT changing neither, a refresh, invalid_grant,
 * the cuts of a user's grants. */
static int end_count;
static int end_elsewhere = -1;
static char end_user[64], end_cred[64], end_url[128];
static int on_ending_ev(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)kind, (void)ctx;
  const vault_ending_event *ev = event;
  end_count++;
  end_elsewhere = ev->elsewhere;
  snprintf(end_user, sizeof end_user, "%s", ev->user ? ev->user : "");
  json_t *rec = NULL;
  vault_cred c = {0};
  const char *url = NULL;
  char *sealed = NULL;
  end_cred[0] = end_url[0] = 0;
  if (vault_connector_get(txn, ev->tenant, ev->connector, &rec) == 0) {
    if (vault_upstream_cred(txn, ev->tenant, ev->connector, ev->user, rec, T0, &c) == 0)
      snprintf(end_cred, sizeof end_cred, "%s", c.value ? c.value : "(none)");
    if (vault_connector_url(txn, ev->tenant, ev->connector, rec, &url, &sealed) == 0) snprintf(end_url, sizeof end_url, "%s", url);
  }
  vault_cred_free(&c);
  vault_secret_free(sealed);
  json_decref(rec);
  return 0;
}
#define HDR_AT(u, v) "{\"url\":\"" u "\",\"auth\":{\"type\":\"header\",\"name\":\"Authorization\",\"value\":\"" v "\"}}"
TEST(credential_ending_event_reads_the_old_credential) {
  CHECK(open_store());
  CHECK_INT(st_hook_add(g_st, ST_EVENT_CREDENTIAL_ENDING, on_ending_ev, NULL), 0);
  end_count = 0;
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://mcp.example.com/mcp?k=q1", "Bearer A")), 0);
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://mcp.example.com/mcp?k=q1", "Bearer A")), 0);
  CHECK_INT(end_count, 0); /* new, then the same again: nothing retired */
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://mcp.example.com/mcp?k=q1", "Bearer B")), 0);
  CHECK_INT(end_count, 1); /* a rekey: the old key, the URL */
  CHECK_STR(end_cred, "Bearer A");
  CHECK_STR(end_url, "https://mcp.example.com/mcp?k=q1");
  CHECK_STR(end_user, "");
  CHECK_INT(end_elsewhere, 0);
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://MCP.example.com/v2?k=q2", "Bearer B")), 0);
  CHECK_INT(end_count, 2); /* a move within the origin: the old real URL, query key and all */
  CHECK_STR(end_url, "https://mcp.example.com/mcp?k=q1");
  CHECK_STR(end_cred, "Bearer B");
  CHECK_INT(end_elsewhere, 0);
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://mcp.example.com:8443/v2?k=q2", "Bearer B")), 0);
  CHECK_INT(end_count, 3); /* another port: another origin */
  CHECK_INT(end_elsewhere, 1);
  CHECK_INT(conn_put("acme", "docs", HDR_AT("https://other.example.com/mcp", "Bearer C")), 0);
  CHECK_INT(end_count, 4);
  CHECK_INT(end_elsewhere, 1);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(end_count, 5); /* a delete: still readable */
  CHECK_STR(end_cred, "Bearer C");
  CHECK_STR(end_url, "https://other.example.com/mcp");
  CHECK_INT(end_elsewhere, 0);

  /* a person's own key */
  CHECK_INT(conn_put("acme", "keys", "{\"url\":\"https://k.example.com/mcp\",\"auth\":{\"type\":\"user_header\",\"name\":\"X-Key\"}}"), 0);
  end_count = 0;
  CHECK_INT(grant("acme", "u1", "keys", "k1", NULL, 0), 0);
  CHECK_INT(end_count, 1); /* a first connect: nothing of theirs to read */
  CHECK_STR(end_user, "u1");
  CHECK_STR(end_cred, "");
  CHECK_INT(grant("acme", "u1", "keys", "k2", NULL, 0), 0);
  CHECK_INT(end_count, 2);
  CHECK_STR(end_cred, "k1"); /* the key being replaced */
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "keys"}), 0);
  CHECK_INT(end_count, 3);
  CHECK_STR(end_cred, "k2"); /* the key being removed */
  CHECK(W(f_drop, (job){.t = "acme", .u = "u1", .c = "keys"}) != 0);
  CHECK_INT(end_count, 3); /* nothing to remove */

  /* an oauth grant: a refresh keeps it, invalid_grant and a user's cut are not the person's doing */
  CHECK_INT(conn_put("acme", "oa", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "oa", "a1", "r1", T0 + 3600), 0);
  end_count = 0;
  vault_tokens f = toks("a2", "r2", T0 + 7200);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "oa", .s = "r1", .tok = &f}), 0);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "oa", .s = "r2", .b1 = true}), 0);
  CHECK(info("acme", "u1", "oa") == NULL);
  CHECK_INT(grant("acme", "u1", "oa", "a3", "r3", T0 + 3600), 0);
  CHECK_INT(end_count, 1); /* only the connect */
  CHECK_INT(W(f_cut_user, (job){.t = "acme", .u = "u1"}), 0);
  CHECK_INT(end_count, 1);

  CHECK(vault_url_same_origin("https://a.example/x", "HTTPS://A.example/y?z"));
  CHECK(!vault_url_same_origin("https://a.example/x", "http://a.example/x"));
  CHECK(!vault_url_same_origin("https://a.example/x", "https://a.example:443/x"));
  CHECK(!vault_url_same_origin("https://a.example/x", "https://a.example.evil/x"));
  CHECK(!vault_url_same_origin("https://a.example", NULL));
  close_store();
}

/* vault_upstream_bind: what an upstream session belongs to. For a
 * connector where each employee brings their own credential it follows
 * the user's grant: another value after every connect (never one it had
 * before, a disconnect and a connect in between too), the same across a
 * refresh, nobody else's changed by it; for a shared credential it is the
 * connector's. The grant's views do not show it. */
static char *ubind(const char *tenant, const char *connector, const char *user) {
  st_txn *r = rd();
  json_t *rec = NULL, *b = NULL;
  if (vault_connector_get(r, tenant, connector, &rec) == 0) b = vault_upstream_bind(r, tenant, connector, user, rec);
  char *out = b ? strdup(json_string_value(b)) : NULL;
  json_decref(b);
  json_decref(rec);
  st_txn_end(r);
  return out;
}
TEST(upstream_bind_follows_the_users_own_credential) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "keys", "{\"url\":\"https://k.example.com/mcp\",\"auth\":{\"type\":\"user_header\",\"name\":\"X-Key\"}}"), 0);
  CHECK_INT(conn_put("acme", "shared", "{\"url\":\"https://s.example.com/mcp\",\"auth\":{\"type\":\"header\",\"name\":\"X-Key\",\"value\":\"k\"}}"), 0);
  char *b[8] = {0};
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 3600), 0);
  CHECK_INT(grant("acme", "u2", "docs", "b1", "s1", T0 + 3600), 0);
  b[0] = ubind("acme", "docs", "u1");
  char *other = ubind("acme", "docs", "u2");
  CHECK(b[0] && other && strcmp(b[0], other));
  vault_tokens f = toks("a2", "r2", T0 + 7200);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f}), 0);
  b[1] = ubind("acme", "docs", "u1");
  CHECK(b[1] && !strcmp(b[1], b[0])); /* a refresh: the same grant */
  CHECK_INT(grant("acme", "u1", "docs", "a3", "r3", T0 + 3600), 0); /* a reconnect */
  b[2] = ubind("acme", "docs", "u1");
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0);
  b[3] = ubind("acme", "docs", "u1"); /* none */
  CHECK_INT(grant("acme", "u1", "docs", "a3", "r3", T0 + 3600), 0); /* the same tokens again, the same second */
  b[4] = ubind("acme", "docs", "u1");
  vault_tokens k = toks("key-1", NULL, 0);
  CHECK_INT(W(f_put, (job){.t = "acme", .u = "u1", .c = "keys", .tok = &k, .b1 = true}), 0);
  b[5] = ubind("acme", "keys", "u1");
  CHECK_INT(W(f_put, (job){.t = "acme", .u = "u1", .c = "keys", .tok = &k, .b1 = true}), 0); /* saved again */
  b[6] = ubind("acme", "keys", "u1");
  for (int i = 2; i < 7; i++) {
    CHECK(b[i] != NULL);
    for (int j = 0; j < i; j++)
      if (j != 1) CHECK(b[i] && b[j] && strcmp(b[i], b[j]));
  }
  char *o2 = ubind("acme", "docs", "u2");
  CHECK(o2 && !strcmp(o2, other)); /* u2's is u2's */
  /* a shared credential: the connector's, whoever calls */
  char *s1 = ubind("acme", "shared", "u1"), *s2 = ubind("acme", "shared", NULL);
  CHECK(s1 && s2 && !strcmp(s1, s2));
  json_t *g = grants_of("acme", "u1");
  char *dump = json_dumps(g, 0);
  json_decref(g);
  CHECK(dump && !strstr(dump, "bind"));
  free(dump);
  json_t *rec = info("acme", "u1", "docs");
  CHECK(json_is_string(json_object_get(rec, "bind")));
  json_decref(rec);
  for (int i = 0; i < 8; i++) free(b[i]);
  free(other);
  free(o2);
  free(s1);
  free(s2);
  close_store();
}

TEST(grants_of_user_prefix_users_share_nothing) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "wiki", OAUTH_NOREVOKE), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a-u1-docs", "r-u1-docs", 0), 0);
  CHECK_INT(grant("acme", "u1", "wiki", "a-u1-wiki", NULL, 0), 0);
  CHECK_INT(grant("acme", "u10", "docs", "a-u10-docs", "r-u10-docs", 0), 0);
  CHECK_INT(grant("acme", "u1x", "wiki", "a-u1x-wiki", NULL, 0), 0);
  CHECK_INT(grant("acme1", "u1", "docs", "a-acme1-u1", NULL, 0), 0);
  json_t *a = grants_of("acme", "u1");
  CHECK_INT(json_array_size(a), 2);
  CHECK_STR(sget(json_array_get(a, 0), "connector"), "docs");
  CHECK_STR(sget(json_array_get(a, 1), "connector"), "wiki");
  char *dump = json_dumps(a, 0);
  json_decref(a);
  int leaked = strstr(dump, "a-u1") != NULL || strstr(dump, "r-u1") != NULL;
  free(dump);
  CHECK(!leaked);
  a = grants_of("acme", "u10");
  CHECK_INT(json_array_size(a), 1);
  json_decref(a);
  a = grants_of("acme", "u");
  CHECK_INT(json_array_size(a), 0);
  json_decref(a);
  a = grants_of("acm", "u1");
  CHECK_INT(json_array_size(a), 0);
  json_decref(a);
  a = grants_of("acme1", "u1");
  CHECK_INT(json_array_size(a), 1);
  json_decref(a);
  CHECK_INT(counts().grants, 5);
  close_store();
}

TEST(drop_queues_resealed_revocation) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "at-" AT, "rt-" RT, T0 + 60), 0);
  CHECK_INT(grant("acme", "u2", "docs", "at-u2", NULL, 0), 0);
  vault_revoke_job j;
  uint64_t next = 99;
  CHECK_INT(next_job(LATER, &j, &next), ST_ENOTFOUND);
  CHECK_INT(next, 0);
  uint64_t before = wall_ms();
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs", .s = "disconnect"}), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs", .s = "disconnect"}), ST_ENOTFOUND);
  vault_tokens g;
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), ST_ENOTFOUND);
  CHECK(info("acme", "u1", "docs") == NULL);
  CHECK(has_access("acme", "u2", "docs", "at-u2"));
  /* the grant's sealed tokens are gone from their tenant slot */
  CHECK_INT(secret_exists("acme", VAULT_GRANT_KIND, "u1/docs", NULL), 0);
  /* nothing in the clear */
  CHECK(!raw_contains(ST_DB_VAULT, AT));
  CHECK(!raw_contains(ST_DB_VAULT, RT));
  CHECK(!raw_contains(ST_DB_VAULT, SECRET));
  CHECK(!raw_contains(ST_DB_SECRETS, AT));
  /* not due before it was queued */
  CHECK_INT(next_job(before - 1000, &j, &next), ST_ENOTFOUND);
  CHECK(next >= before && next <= wall_ms());
  CHECK_INT(next_job(LATER, &j, &next), 0);
  CHECK_STR(j.tenant, "acme");
  CHECK_STR(j.url, "https://as.example.com/revoke");
  CHECK_STR(j.client_id, "cid-1");
  CHECK_STR(j.client_secret, SECRET);
  CHECK_STR(j.access, "at-" AT);
  CHECK_STR(j.refresh, "rt-" RT);
  CHECK(!j.auth_post);
  CHECK_INT(j.attempts, 0);
  CHECK_INT(strlen(j.id), VAULT_REVOKE_ID_LEN);
  CHECK_INT(j.due_ms, next);
  CHECK_INT(secret_exists("", VAULT_REVOKE_KIND, j.id, NULL), 1);
  json_t *r = reports("acme");
  json_t *rep = report_of(r, "u1", "docs");
  int ok = rep && !strcmp(sget(rep, "state") ?: "", "pending") && !strcmp(sget(rep, "reason") ?: "", "disconnect") &&
           !strcmp(sget(rep, "id") ?: "", j.id);
  json_decref(r);
  vault_revoke_job_free(&j);
  CHECK(ok);
  vault_counts c = counts();
  CHECK_INT(c.grants, 1);
  CHECK_INT(c.pending, 1);
  CHECK_INT(c.manual, 0);
  r = reports("beta");
  CHECK_INT(json_array_size(r), 0);
  json_decref(r);
  close_store();
}

TEST(drop_without_revocation_url_is_manual) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "wiki", OAUTH_NOREVOKE), 0);
  CHECK_INT(grant("acme", "u1", "wiki", "at-" AT, "rt-" RT, 0), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "wiki", .s = "disconnect"}), 0);
  vault_revoke_job j;
  uint64_t next = 99;
  CHECK_INT(next_job(LATER, &j, &next), ST_ENOTFOUND);
  CHECK_INT(next, 0);
  json_t *r = reports("acme");
  json_t *rep = report_of(r, "u1", "wiki");
  int ok = rep && !strcmp(sget(rep, "state") ?: "", "manual");
  json_decref(r);
  CHECK(ok);
  vault_counts c = counts();
  CHECK_INT(c.manual, 1);
  CHECK_INT(c.pending, 0);
  CHECK_INT(c.grants, 0);
  CHECK(!raw_contains(ST_DB_VAULT, AT));
  CHECK(!raw_contains(ST_DB_SECRETS, AT)); /* (sealed or gone) */
  close_store();
}

/* A tenant's reports are bounded (grant.h, VAULT_REPORTS_MAX): an employee
 * who connects and disconnects at request rate adds one each time, and
 * past the bound each new one deletes the tenant's oldest finished ones —
 * never a pending one (its revocation is still queued), never another
 * tenant's; the tenant's purge deletes the count with the reports. */
static int f_churn(st_txn *x, job *j) {
  for (int64_t i = 0; i < j->i1; i++) {
    vault_tokens t = toks("at-" AT, "rt-" RT, 0);
    int rc = vault_grant_put(x, j->t, j->u, j->c, &t, j->now, VAULT_PUT_CONNECT | VAULT_PUT_REVOKE_OLD);
    if (!rc) rc = vault_grant_drop(x, j->t, j->u, j->c, "disconnect", j->now);
    if (rc) return rc;
  }
  return 0;
}
static int f_del_count(st_txn *x, job *j) {
  char k[80];
  k[0] = 'R';
  memcpy(k + 1, j->t, strlen(j->t));
  return st_del(x, ST_DB_VAULT, k, 1 + strlen(j->t));
}
static size_t report_count(const char *t) {
  st_txn *r = rd();
  json_t *a = NULL;
  if (vault_revocations_list(r, t, 0, &a)) abort();
  st_txn_end(r);
  size_t n = json_array_size(a);
  json_decref(a);
  return n;
}
TEST(reports_per_tenant_are_bounded_and_pending_ones_kept) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "full", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "wiki", OAUTH_NOREVOKE), 0);
  CHECK_INT(conn_put("beta", "wiki", OAUTH_NOREVOKE), 0);
  /* the oldest three are pending */
  const char *users[] = {"p1", "p2", "p3"};
  for (int i = 0; i < 3; i++)
    CHECK_INT(W(f_churn, (job){.t = "acme", .u = users[i], .c = "full", .i1 = 1, .now = "2025-12-01T00:00:00Z"}), 0);
  CHECK_INT(W(f_churn, (job){.t = "beta", .u = "b1", .c = "wiki", .i1 = 5, .now = "2025-12-01T00:00:00Z"}), 0);
  /* then the bound and more, manual (finished) ones */
  int total = VAULT_REPORTS_MAX + 3 * VAULT_REPORTS_TRIM + 5;
  for (int done = 0; done < total; done += 200)
    CHECK_INT(W(f_churn, (job){.t = "acme", .u = "e1", .c = "wiki", .i1 = total - done < 200 ? total - done : 200}), 0);
  CHECK_INT((int)report_count("acme"), VAULT_REPORTS_MAX);
  CHECK_INT((int)report_count("beta"), 5);
  json_t *r = NULL;
  st_txn *rt = rd();
  CHECK_INT(vault_revocations_list(rt, "acme", 0, &r), 0);
  st_txn_end(rt);
  int pending = 0;
  for (int i = 0; i < 3; i++) {
    json_t *rep = report_of(r, users[i], "full");
    pending += rep && !strcmp(sget(rep, "state") ?: "", "pending");
  }
  json_decref(r);
  CHECK_INT(pending, 3);
  CHECK_INT(counts().pending, 3); /* their queue entries too */
  /* finished, they may go like any other */
  CHECK_INT(drain(), 3);
  CHECK_INT(W(f_churn, (job){.t = "acme", .u = "e1", .c = "wiki", .i1 = 8}), 0);
  CHECK_INT((int)report_count("acme"), VAULT_REPORTS_MAX);
  /* a store written before the count: the reports are counted once */
  CHECK_INT(W(f_del_count, (job){.t = "acme"}), 0);
  CHECK(!raw_contains(ST_DB_VAULT, "Racme"));
  CHECK_INT(W(f_churn, (job){.t = "acme", .u = "e1", .c = "wiki", .i1 = 8}), 0);
  CHECK_INT((int)report_count("acme"), VAULT_REPORTS_MAX);
  /* the purge takes the count with the reports */
  while (W(f_purge, (job){.t = "acme", .i1 = 1000}) > 0) {
  }
  CHECK_INT((int)report_count("acme"), 0);
  CHECK(!raw_contains(ST_DB_VAULT, "Racme"));
  CHECK_INT((int)report_count("beta"), 5);
  close_store();
}

/* The worker's pick: a due job of a tenant it skips is passed over for the
 * next due one (another tenant's), in due order; none it takes is
 * ST_ENOTFOUND, and next_due still says when the first is due. */
static bool skip_tenant(void *ctx, const char *tenant, const char *id) {
  (void)id;
  return strcmp(tenant, (const char *)ctx) != 0;
}
static bool take_none(void *ctx, const char *tenant, const char *id) {
  (void)ctx, (void)tenant, (void)id;
  return false;
}
TEST(revoke_next_pick_passes_over_a_busy_tenant) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("globex", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", 0), 0);
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", 0), 0);
  CHECK_INT(grant("globex", "u3", "docs", "a3", "r3", 0), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u2", .c = "docs"}), 0);
  CHECK_INT(W(f_drop, (job){.t = "globex", .u = "u3", .c = "docs"}), 0);
  st_txn *r = rd();
  vault_revoke_job j;
  uint64_t next = 0;
  /* acme busy: globex's, though queued last */
  CHECK_INT(vault_revoke_next_pick(r, LATER, skip_tenant, "acme", &j, &next, NULL), 0);
  CHECK_STR(j.tenant, "globex");
  CHECK(j.access && !strcmp(j.access, "a3"));
  CHECK(next > 0);
  vault_revoke_job_free(&j);
  /* nobody busy: the oldest due, as vault_revoke_next takes it (the three
   * may share a millisecond, and then the queue's own order decides: not
   * necessarily acme's first) */
  vault_revoke_job first;
  CHECK_INT(vault_revoke_next(r, LATER, &first, NULL), 0);
  CHECK_INT(vault_revoke_next_pick(r, LATER, NULL, NULL, &j, NULL, NULL), 0);
  CHECK_STR(j.tenant, first.tenant);
  CHECK(j.access && first.access && !strcmp(j.access, first.access));
  vault_revoke_job_free(&first);
  vault_revoke_job_free(&j);
  /* every due one skipped */
  CHECK_INT(vault_revoke_next_pick(r, LATER, take_none, NULL, &j, &next, NULL), ST_ENOTFOUND);
  CHECK(next > 0);
  st_txn_end(r);
  close_store();
}

/* A queue entry that cannot be a job — its value not JSON, a member
 * missing, a key of another shape — never stops the queue: the pick passes
 * over it and counts it (before, the first such entry due held every
 * tenant's revocations, for good), vault_revoke_set_aside moves it out of
 * the queue and marks its report failed (found through the tenant the
 * entry names, or by its id alone when nothing of it reads), st_check
 * names it and vault_counts counts it until it is dropped. */
static int tenant_fn(st_txn *txn, void *arg);
static int check_problems(void);
static int reports_with_reason(const char *t, const char *user, const char *reason);
static int f_raw_set(st_txn *x, job *j) {
  return st_put(x, ST_DB_VAULT, j->s, (size_t)j->i1, j->s2, strlen(j->s2), 0);
}
static int f_raw_del(st_txn *x, job *j) { return st_del(x, ST_DB_VAULT, j->s, (size_t)j->i1); }
static vault_set_aside g_aside[VAULT_SET_ASIDE_MAX];
static int f_set_aside(st_txn *x, job *j) { return vault_revoke_set_aside(x, j->u1, j->now, g_aside); }
static int f_aside_drop(st_txn *x, job *j) { return vault_revoke_set_aside_drop(x, j->u1, 100); }
/* the queue entry of revocation id moved to due `due` with value `value` (NULL: as it was, without "url") */
static int requeue_as(const char *id, uint64_t due, const char *value) {
  st_txn *r = rd();
  st_cursor *c;
  if (st_cursor_open(r, ST_DB_VAULT, &c)) abort();
  st_cursor_seek(c, "q", 1, NULL, 0);
  st_val k, v;
  char key[9 + VAULT_REVOKE_ID_LEN], *val = NULL;
  bool found = false;
  while (!found && st_cursor_next(c, &k, &v) == 0)
    if (k.len == sizeof key && !memcmp((const char *)k.data + 9, id, VAULT_REVOKE_ID_LEN)) {
      memcpy(key, k.data, sizeof key);
      json_t *e = json_loadb(v.data, v.len, 0, NULL);
      json_object_del(e, "url");
      val = json_dumps(e, JSON_COMPACT);
      json_decref(e);
      found = true;
    }
  st_cursor_close(c);
  st_txn_end(r);
  if (!found) return ST_ENOTFOUND;
  int rc = W(f_raw_del, (job){.s = key, .i1 = sizeof key});
  char nk[sizeof key];
  nk[0] = 'q';
  for (int i = 0; i < 8; i++) nk[1 + i] = (char)(due >> (56 - 8 * i));
  memcpy(nk + 9, id, VAULT_REVOKE_ID_LEN);
  if (!rc) rc = W(f_raw_set, (job){.s = nk, .i1 = sizeof nk, .s2 = value ? value : val});
  free(val);
  return rc;
}
static const char *report_state(const char *t, const char *user, char *err, size_t errlen) {
  static char state[16];
  json_t *r = reports(t);
  json_t *rep = report_of(r, user, "docs");
  snprintf(state, sizeof state, "%s", rep ? sget(rep, "state") ?: "?" : "none");
  snprintf(err, errlen, "%s", rep ? sget(rep, "last_error") ?: "" : "");
  json_decref(r);
  return state;
}
TEST(corrupt_queue_entries_are_passed_over_and_set_aside) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  CHECK_INT(st_write_sync(g_st, tenant_fn, "globex"), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("globex", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", 0), 0);
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", 0), 0);
  CHECK_INT(grant("acme", "u3", "docs", "a3", "r3", 0), 0);
  CHECK_INT(grant("globex", "u4", "docs", "a4", "r4", 0), 0);
  const char *who[] = {"u1", "u2", "u3"};
  for (int i = 0; i < 3; i++) CHECK_INT(W(f_drop, (job){.t = "acme", .u = who[i], .c = "docs"}), 0);
  CHECK_INT(W(f_drop, (job){.t = "globex", .u = "u4", .c = "docs"}), 0);
  CHECK_INT(check_problems(), 0);
  char id1[VAULT_REVOKE_ID_LEN + 1], id2[VAULT_REVOKE_ID_LEN + 1];
  json_t *r = reports("acme");
  snprintf(id1, sizeof id1, "%s", sget(report_of(r, "u1", "docs"), "id") ?: "");
  snprintf(id2, sizeof id2, "%s", sget(report_of(r, "u2", "docs"), "id") ?: "");
  json_decref(r);
  /* the head of the queue: u1's entry no longer JSON, then u2's without
   * its url, then a key of another shape */
  CHECK_INT(requeue_as(id1, 1, "{\"id\":\"trunc"), 0);
  CHECK_INT(requeue_as(id2, 2, NULL), 0);
  static const char odd[] = "q\0\0\0\x07";
  CHECK_INT(W(f_raw_set, (job){.s = odd, .i1 = sizeof odd - 1, .s2 = "x"}), 0);
  CHECK_INT(check_problems(), 3);
  /* passed over: the others' jobs go on */
  st_txn *t = rd();
  vault_revoke_job j;
  uint64_t next = 0;
  int corrupt = 0;
  CHECK_INT(vault_revoke_next_pick(t, LATER, NULL, NULL, &j, &next, &corrupt), 0);
  CHECK(j.access && (!strcmp(j.access, "a3") || !strcmp(j.access, "a4")));
  CHECK_INT(next, 1);
  CHECK_INT(corrupt, 3);
  vault_revoke_job_free(&j);
  CHECK_INT(vault_revoke_next_pick(t, LATER, skip_tenant, "acme", &j, NULL, &corrupt), 0);
  CHECK_STR(j.tenant, "globex");
  vault_revoke_job_free(&j);
  CHECK_INT(vault_revoke_next(t, LATER, &j, NULL), 0);
  vault_revoke_job_free(&j);
  st_txn_end(t);
  /* set aside: out of the queue, reports failed, counted, named by st_check */
  uint64_t at = LATER;
  CHECK_INT(W(f_set_aside, (job){.u1 = at}), 3);
  int named = 0;
  for (int i = 0; i < 3; i++) named += !strcmp(g_aside[i].id, id1) && !strcmp(g_aside[i].tenant, "acme");
  CHECK_INT(named, 1);
  CHECK_INT(W(f_set_aside, (job){.u1 = at}), 0);
  t = rd();
  CHECK_INT(vault_revoke_next_pick(t, LATER, NULL, NULL, &j, &next, &corrupt), 0);
  CHECK_INT(corrupt, 0);
  vault_revoke_job_free(&j);
  st_txn_end(t);
  vault_counts c = counts();
  CHECK_INT(c.pending, 2);
  CHECK_INT(c.corrupt, 3);
  char err[400];
  CHECK_STR(report_state("acme", "u1", err, sizeof err), "failed");
  CHECK(strstr(err, "corrupt") && strstr(err, "by hand"));
  CHECK_STR(report_state("acme", "u2", err, sizeof err), "failed");
  CHECK_STR(report_state("acme", "u3", err, sizeof err), "pending");
  CHECK_INT(reports_with_reason("globex", "u1", "disconnect"), 0);
  CHECK_INT(check_problems(), 3);
  /* dropped once old enough, with their sealed tokens */
  CHECK_INT(W(f_aside_drop, (job){.u1 = at}), 0);
  CHECK_INT(W(f_aside_drop, (job){.u1 = at + 1}), 3);
  CHECK_INT(counts().corrupt, 0);
  CHECK_INT(check_problems(), 0);
  CHECK_INT(secret_exists("", VAULT_REVOKE_KIND, id1, NULL), 0);
  CHECK_INT(drain(), 2);
  close_store();
}

TEST(reconnect_revokes_old_tokens) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "old-access", "old-refresh", 0), 0);
  CHECK_INT(grant("acme", "u1", "docs", "new-access", "new-refresh", 0), 0);
  CHECK(has_access("acme", "u1", "docs", "new-access"));
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  int ok = j.access && !strcmp(j.access, "old-access") && j.refresh && !strcmp(j.refresh, "old-refresh");
  vault_revoke_job_free(&j);
  CHECK(ok);
  json_t *r = reports("acme");
  ok = json_array_size(r) == 1 && !strcmp(sget(json_array_get(r, 0), "reason") ?: "", "reconnect");
  json_decref(r);
  CHECK(ok);
  CHECK_INT(counts().grants, 1);
  close_store();
}

TEST(cut_user_and_cut_connector_drop_exactly_theirs) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "wiki", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "docs2", OAUTH_FULL), 0);
  CHECK_INT(conn_put("beta", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", NULL, 0), 0);
  CHECK_INT(grant("acme", "u1", "wiki", "a2", NULL, 0), 0);
  CHECK_INT(grant("acme", "u10", "docs", "a3", NULL, 0), 0);
  CHECK_INT(grant("acme", "u10", "docs2", "a4", NULL, 0), 0);
  CHECK_INT(grant("beta", "u1", "docs", "a5", NULL, 0), 0);
  CHECK_INT(W(f_cut_user, (job){.t = "acme", .u = "u1"}), 0);
  CHECK(!has_access("acme", "u1", "docs", "a1"));
  CHECK(!has_access("acme", "u1", "wiki", "a2"));
  CHECK(has_access("acme", "u10", "docs", "a3"));
  CHECK(has_access("acme", "u10", "docs2", "a4"));
  CHECK(has_access("beta", "u1", "docs", "a5"));
  CHECK_INT(counts().pending, 2);
  CHECK_INT(W(f_cut_user, (job){.t = "acme", .u = "nobody"}), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", NULL, 0), 0);
  CHECK_INT(W(f_cut_conn, (job){.t = "acme", .c = "docs"}), 0);
  CHECK(!has_access("acme", "u1", "docs", "a1"));
  CHECK(!has_access("acme", "u10", "docs", "a3"));
  CHECK(has_access("acme", "u10", "docs2", "a4")); /* a connector whose name extends "docs" */
  CHECK(has_access("beta", "u1", "docs", "a5"));
  json_t *r = reports("acme");
  json_t *rep = report_of(r, "u10", "docs");
  int ok = rep && !strcmp(sget(rep, "reason") ?: "", "lost_access");
  json_decref(r);
  CHECK(ok);
  CHECK_INT(counts().grants, 2);
  CHECK_INT(counts().pending, 4);
  close_store();
}

TEST(connector_delete_revokes_with_its_data) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("acme", "wiki", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", 0), 0);
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", 0), 0);
  CHECK_INT(grant("acme", "u1", "wiki", "a3", "r3", 0), 0);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  st_txn *r0 = rd();
  json_t *rec = NULL;
  int grc = vault_connector_get(r0, "acme", "docs", &rec);
  st_txn_end(r0);
  CHECK_INT(grc, ST_ENOTFOUND);
  CHECK(!has_access("acme", "u1", "docs", "a1"));
  CHECK(!has_access("acme", "u2", "docs", "a2"));
  CHECK(has_access("acme", "u1", "wiki", "a3"));
  int n = 0;
  vault_revoke_job j;
  while (next_job(LATER, &j, NULL) == 0 && n < 5) {
    int ok = !strcmp(j.url, "https://as.example.com/revoke") && !strcmp(j.client_id, "cid-1") && j.client_secret &&
             !strcmp(j.client_secret, SECRET) && j.access && (!strcmp(j.access, "a1") || !strcmp(j.access, "a2"));
    char id[VAULT_REVOKE_ID_LEN + 1];
    memcpy(id, j.id, sizeof id);
    uint64_t due = j.due_ms;
    vault_revoke_job_free(&j);
    CHECK(ok);
    CHECK_INT(W(f_result, (job){.s = id, .u1 = due, .b1 = true}), 0);
    n++;
  }
  CHECK_INT(n, 2);
  json_t *r = reports("acme");
  json_t *rep = report_of(r, "u2", "docs");
  int ok = rep && !strcmp(sget(rep, "reason") ?: "", "connector_deleted") && !strcmp(sget(rep, "state") ?: "", "done");
  json_decref(r);
  CHECK(ok);
  close_store();
}

TEST(purge_tenant_queues_grants_and_deletes_reports) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(conn_put("beta", "docs", OAUTH_FULL), 0);
  char u[16];
  for (int i = 0; i < 5; i++) {
    snprintf(u, sizeof u, "u%d", i);
    CHECK_INT(grant("acme", u, "docs", "acme-at", "acme-rt", 0), 0);
  }
  CHECK_INT(grant("beta", "u1", "docs", "beta-at", NULL, 0), 0);
  CHECK_INT(W(f_drop, (job){.t = "beta", .u = "u1", .c = "docs"}), 0); /* a beta report */
  CHECK_INT(grant("beta", "u1", "docs", "beta-at", NULL, 0), 0);
  CHECK_INT(drain(), 1);
  /* in batches of 2, until a batch does nothing */
  int total = 0, rounds = 0, rc;
  while ((rc = W(f_purge, (job){.t = "acme", .i1 = 2})) > 0 && rounds < 50) {
    CHECK(rc <= 2);
    total += rc;
    rounds++;
  }
  CHECK_INT(rc, 0);
  CHECK(total >= 5);
  json_t *a = grants_of("acme", "u3");
  CHECK_INT(json_array_size(a), 0);
  json_decref(a);
  json_t *r = reports("acme");
  CHECK_INT(json_array_size(r), 0);
  json_decref(r);
  r = reports("beta");
  CHECK_INT(json_array_size(r), 1);
  json_decref(r);
  CHECK(has_access("beta", "u1", "docs", "beta-at"));
  vault_counts c = counts();
  CHECK_INT(c.grants, 1);
  CHECK_INT(c.pending, 5);
  /* every acme job carries the tokens and the client */
  int n = 0;
  vault_revoke_job j;
  while (next_job(LATER, &j, NULL) == 0 && n < 10) {
    int ok = !strcmp(j.tenant, "acme") && j.access && !strcmp(j.access, "acme-at") && j.refresh &&
             !strcmp(j.refresh, "acme-rt") && j.client_secret && !strcmp(j.client_secret, SECRET);
    char id[VAULT_REVOKE_ID_LEN + 1];
    memcpy(id, j.id, sizeof id);
    uint64_t due = j.due_ms;
    vault_revoke_job_free(&j);
    CHECK(ok);
    /* the report is gone: the result still finishes the job */
    CHECK_INT(W(f_result, (job){.s = id, .u1 = due, .b1 = true}), 0);
    n++;
  }
  CHECK_INT(n, 5);
  CHECK_INT(counts().pending, 0);
  close_store();
}

/* ==== the queue ============================================================================ */

TEST(queue_order_retry_final_and_stale_results) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", 0), 0);
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", 0), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u2", .c = "docs"}), 0);
  uint64_t base = wall_ms() + 100000;
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  char id1[VAULT_REVOKE_ID_LEN + 1];
  memcpy(id1, j.id, sizeof id1);
  uint64_t due1 = j.due_ms;
  /* queued in the same millisecond, the two come in id order (random):
   * the other one's access token is what the second job must carry */
  const char *other_access = j.access && !strcmp(j.access, "a1") ? "a2" : "a1";
  const char *second_user = !strcmp(other_access, "a2") ? "u2" : "u1", *first_user = !strcmp(other_access, "a2") ? "u1" : "u2";
  vault_revoke_job_free(&j);
  /* stale results: another due time, another id: nothing changes */
  CHECK_INT(W(f_result, (job){.s = id1, .u1 = due1 + 1, .b1 = true}), 0);
  CHECK_INT(W(f_result, (job){.s = "AAAAAAAAAAAAAAAA", .u1 = due1, .b1 = true}), 0);
  CHECK_INT(W(f_result, (job){.s = "short", .u1 = due1, .b1 = true}), 0);
  CHECK_INT(counts().pending, 2);
  /* retry the first far later: the second comes next */
  CHECK_INT(W(f_result, (job){.s = id1, .u1 = due1, .u2 = base + 2000, .c = "HTTP 503"}), 0);
  CHECK_INT(counts().pending, 2);
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  char id2[VAULT_REVOKE_ID_LEN + 1];
  memcpy(id2, j.id, sizeof id2);
  uint64_t due2 = j.due_ms;
  vault_revoke_job_free(&j);
  CHECK(strcmp(id1, id2) != 0);
  /* the old key of the first is stale now */
  CHECK_INT(W(f_result, (job){.s = id1, .u1 = due1, .b1 = true}), 0);
  /* retry the second earlier than the first */
  CHECK_INT(W(f_result, (job){.s = id2, .u1 = due2, .u2 = base + 1000, .c = "timeout"}), 0);
  uint64_t next = 0;
  CHECK_INT(next_job(base + 999, &j, &next), ST_ENOTFOUND);
  CHECK_INT(next, base + 1000);
  CHECK_INT(next_job(base + 1000, &j, &next), 0);
  CHECK_STR(j.id, id2);
  CHECK_INT(j.due_ms, base + 1000);
  CHECK_INT(j.attempts, 1);
  CHECK(j.access && !strcmp(j.access, other_access)); /* the sealed tokens survive a retry */
  vault_revoke_job_free(&j);
  json_t *r = reports("acme");
  json_t *rep = report_of(r, second_user, "docs");
  int ok = rep && !strcmp(sget(rep, "state") ?: "", "pending") && json_integer_value(json_object_get(rep, "attempts")) == 1 &&
           !strcmp(sget(rep, "last_error") ?: "", "timeout");
  json_decref(r);
  CHECK(ok);
  /* the second: final failure */
  CHECK_INT(W(f_result, (job){.s = id2, .u1 = base + 1000, .b2 = true, .c = "HTTP 400 unsupported_token_type"}), 0);
  CHECK_INT(secret_exists("", VAULT_REVOKE_KIND, id2, NULL), 0);
  r = reports("acme");
  rep = report_of(r, second_user, "docs");
  ok = rep && !strcmp(sget(rep, "state") ?: "", "failed") && json_integer_value(json_object_get(rep, "attempts")) == 2 &&
       !strcmp(sget(rep, "last_error") ?: "", "HTTP 400 unsupported_token_type");
  json_decref(r);
  CHECK(ok);
  /* the first: not due before base+2000, then done */
  CHECK_INT(next_job(base + 1999, &j, &next), ST_ENOTFOUND);
  CHECK_INT(next, base + 2000);
  CHECK_INT(next_job(base + 2000, &j, &next), 0);
  CHECK_STR(j.id, id1);
  CHECK_INT(j.attempts, 1);
  vault_revoke_job_free(&j);
  CHECK_INT(secret_exists("", VAULT_REVOKE_KIND, id1, NULL), 1);
  CHECK_INT(W(f_result, (job){.s = id1, .u1 = base + 2000, .b1 = true}), 0);
  CHECK_INT(secret_exists("", VAULT_REVOKE_KIND, id1, NULL), 0);
  r = reports("acme");
  rep = report_of(r, first_user, "docs");
  ok = rep && !strcmp(sget(rep, "state") ?: "", "done") && json_integer_value(json_object_get(rep, "attempts")) == 2 &&
       !json_object_get(rep, "last_error");
  json_decref(r);
  CHECK(ok);
  /* a finished job's result again: ignored */
  CHECK_INT(W(f_result, (job){.s = id1, .u1 = base + 2000, .b2 = true, .c = "late"}), 0);
  r = reports("acme");
  rep = report_of(r, first_user, "docs");
  ok = rep && !strcmp(sget(rep, "state") ?: "", "done");
  json_decref(r);
  CHECK(ok);
  CHECK_INT(next_job(LATER, &j, &next), ST_ENOTFOUND);
  CHECK_INT(next, 0);
  vault_counts c = counts();
  CHECK_INT(c.pending, 0);
  CHECK_INT(c.done, 1);
  CHECK_INT(c.failed, 1);
  close_store();
}

TEST(queue_copies_client_secret_post_auth) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":"
                     "\"https://as.example.com/a\",\"token_url\":\"https://as.example.com/t\",\"revocation_url\":"
                     "\"https://as.example.com/r\",\"client_id\":\"c\",\"client_secret\":\"s\",\"token_auth\":"
                     "\"client_secret_post\"},\"timeouts\":{\"connect_ms\":1500}}"),
            0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", NULL, 0), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0);
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  int ok = j.auth_post && j.refresh == NULL && j.access && !strcmp(j.access, "a1") && j.client_secret &&
           !strcmp(j.client_secret, "s") && j.connect_ms == 1500;
  vault_revoke_job_free(&j);
  CHECK(ok);
  close_store();
}

/* ==== single-flight refresh ============================================================= */

TEST(refresh_claim_busy_fresh_lapse) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  uint64_t ms = (uint64_t)T0 * 1000;
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms}), ST_ENOTFOUND);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", T0 + 3600), 0);
  CHECK_INT(grant("acme", "u3", "docs", "a3", "r3", 0), 0);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u2", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIM_FRESH);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u3", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIM_FRESH);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIMED);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms + 1}), VAULT_CLAIM_BUSY);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0 + 19, .u1 = ms + VAULT_REFRESH_CLAIM_MS - 1}),
            VAULT_CLAIM_BUSY);
  /* the claimant died: the claim lapses */
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0 + 21, .u1 = ms + VAULT_REFRESH_CLAIM_MS + 1}),
            VAULT_CLAIMED);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0 + 21, .u1 = ms + VAULT_REFRESH_CLAIM_MS + 2}),
            VAULT_CLAIM_BUSY);
  /* a claim is no grant change: the tokens are intact */
  CHECK(has_access("acme", "u1", "docs", "a1"));
  /* another user's claim is independent */
  CHECK_INT(grant("acme", "u4", "docs", "a4", "r4", T0 + 5), 0);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u4", .c = "docs", .i1 = T0, .u1 = ms + 2}), VAULT_CLAIMED);
  close_store();
}

TEST(refresh_applies_only_for_the_current_refresh_token) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  uint64_t ms = (uint64_t)T0 * 1000;
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIMED);
  vault_tokens f2 = toks("a2", "r2", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2}), 0);
  vault_tokens g;
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), 0);
  int ok = !strcmp(g.access, "a2") && g.refresh && !strcmp(g.refresh, "r2") && g.expires_at == T0 + 3600;
  vault_tokens_free(&g);
  CHECK(ok);
  /* a stale refresher (used r1 too) must not overwrite the newer grant */
  vault_tokens stale = toks("a-stale", "r-stale", T0 + 7200);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &stale}), 0);
  CHECK(has_access("acme", "u1", "docs", "a2"));
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r", .tok = &stale}), 0);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r22", .tok = &stale}), 0);
  CHECK(has_access("acme", "u1", "docs", "a2"));
  /* the refresh ended the claim; the new expiry makes it fresh */
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms + 1}), VAULT_CLAIM_FRESH);
  /* a reply without refresh_token keeps the old one */
  vault_tokens f3 = toks("a3", NULL, T0 + 5);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r2", .tok = &f3}), 0);
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), 0);
  ok = !strcmp(g.access, "a3") && g.refresh && !strcmp(g.refresh, "r2");
  vault_tokens_free(&g);
  CHECK(ok);
  json_t *rec = info("acme", "u1", "docs");
  CHECK(rec);
  json_int_t refreshes = json_integer_value(json_object_get(rec, "refreshes"));
  json_decref(rec);
  CHECK_INT(refreshes, 2);
  /* a refresh is no revocation */
  CHECK_INT(counts().pending, 0);
  /* a dropped grant is not resurrected by a late refresher */
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = "docs"}), 0);
  vault_tokens late = toks("a-late", "r-late", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r2", .tok = &late}), 0);
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), ST_ENOTFOUND);
  CHECK(info("acme", "u1", "docs") == NULL);
  close_store();
}

static int tenant_fn(st_txn *txn, void *arg);
/* Drains the queue: how many jobs held exactly (access, refresh) (refresh NULL: none). */
static int drain_count(const char *access, const char *refresh) {
  int n = 0, guard = 0;
  vault_revoke_job j;
  while (next_job(LATER, &j, NULL) == 0 && guard++ < 1000) {
    char id[VAULT_REVOKE_ID_LEN + 1];
    memcpy(id, j.id, sizeof id);
    uint64_t due = j.due_ms;
    if (j.access && !strcmp(j.access, access) && (refresh ? j.refresh && !strcmp(j.refresh, refresh) : !j.refresh)) n++;
    vault_revoke_job_free(&j);
    if (W(f_result, (job){.s = id, .u1 = due, .b1 = true})) abort();
  }
  return n;
}
static int reports_with_reason(const char *t, const char *user, const char *reason) {
  json_t *r = reports(t);
  size_t i;
  json_t *v;
  int n = 0;
  json_array_foreach(r, i, v) n += !strcmp(sget(v, "user") ?: "", user) && !strcmp(sget(v, "reason") ?: "", reason);
  json_decref(r);
  return n;
}

TEST(refresh_answered_after_the_grant_left_revokes_the_fresh_tokens) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  uint64_t ms = (uint64_t)T0 * 1000;
  /* cut while the refresh is out: the old tokens, then the fresh ones, are revoked */
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIMED);
  CHECK_INT(W(f_cut_user, (job){.t = "acme", .u = "u1"}), 0);
  vault_tokens f2 = toks("a2", "r2", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2}), 0);
  CHECK(info("acme", "u1", "docs") == NULL); /* not resurrected */
  CHECK_INT(counts().pending, 2);
  CHECK_INT(reports_with_reason("acme", "u1", "deactivated"), 1);
  CHECK_INT(reports_with_reason("acme", "u1", "late_refresh"), 1);
  CHECK_INT(drain_count("a2", "r2"), 1);
  /* a reply without refresh_token: its access token alone */
  CHECK_INT(grant("acme", "u2", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u2", .c = "docs"}), 0);
  vault_tokens f3 = toks("a3", NULL, T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u2", .c = "docs", .s = "r1", .tok = &f3}), 0);
  CHECK_INT(drain_count("a3", NULL), 1);
  /* replaced meanwhile (a reconnect): the new grant stands, nothing more is queued */
  CHECK_INT(grant("acme", "u3", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(grant("acme", "u3", "docs", "b1", "s1", T0 + 3600), 0);
  CHECK_INT(counts().pending, 1); /* the reconnect's */
  vault_tokens f4 = toks("a4", "r4", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u3", .c = "docs", .s = "r1", .tok = &f4}), 0);
  CHECK(has_access("acme", "u3", "docs", "b1"));
  CHECK_INT(counts().pending, 1);
  CHECK_INT(reports_with_reason("acme", "u3", "late_refresh"), 0);
  CHECK_INT(drain_count("a4", "r4"), 0);
  /* a tenant that is no longer there, and no record of where the refresh
   * went: nothing to queue, nowhere to send it */
  CHECK_INT(conn_put("gone", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("gone", "u1", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(W(f_drop, (job){.t = "gone", .u = "u1", .c = "docs"}), 0);
  CHECK_INT(drain(), 1);
  CHECK_INT(W(f_refreshed, (job){.t = "gone", .u = "u1", .c = "docs", .s = "r1", .tok = &f2, .uid = TENANT_UID}), 0);
  CHECK_INT(counts().pending, 0);
  CHECK(g_late.elsewhere && !g_late.id[0]);
  close_store();
}

/* A refresh sent to the connector's authorization server, answered after
 * an admin moved the connector to another one (the move cut the grant):
 * the fresh tokens are revoked where the refresh went — the old
 * revocation endpoint, with the old client — not at the server the
 * connector names now (before, they and the new client's secret went
 * there together). Deleted meanwhile: the same. */
TEST(late_refresh_is_revoked_where_the_refresh_went) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  /* the refresh goes out with the connector as it is */
  st_txn *r = rd();
  json_t *sent = NULL;
  CHECK_INT(vault_connector_get(r, "acme", "docs", &sent), 0);
  st_txn_end(r);
  /* the admin moves it: the grant is cut, its own tokens revoked at the old endpoint */
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","
                     "\"authorize_url\":\"https://as2.example.net/authorize\",\"token_url\":\"https://as2.example.net/token\","
                     "\"revocation_url\":\"https://as2.example.net/revoke\",\"client_id\":\"cid-9\","
                     "\"client_secret\":\"OTHER-SECRET\"}}"),
            0);
  CHECK_INT(drain(), 1);
  vault_tokens f2 = toks("a2", "r2", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2, .cfg = sent, .s2 = SECRET}),
            0);
  CHECK(info("acme", "u1", "docs") == NULL);
  CHECK_INT(reports_with_reason("acme", "u1", "late_refresh"), 1);
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  CHECK_STR(j.url, "https://as.example.com/revoke");
  CHECK_STR(j.client_id, "cid-1");
  CHECK(j.client_secret && !strcmp(j.client_secret, SECRET));
  CHECK(j.refresh && !strcmp(j.refresh, "r2") && j.access && !strcmp(j.access, "a2"));
  vault_revoke_job_free(&j);
  CHECK_INT(drain(), 1);
  /* the connector deleted while the refresh was out: still revoked where it went */
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "docs"}), 0);
  CHECK_INT(drain(), 1);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2, .cfg = sent, .s2 = SECRET}),
            0);
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  CHECK_STR(j.url, "https://as.example.com/revoke");
  vault_revoke_job_free(&j);
  json_decref(sent);
  close_store();
}

/* A refresh or a connect's code exchange answered after its tenant was
 * deleted — its purge under way, or done and the id made again: another
 * tenant. The tokens are live at the AS: revoked where the request went,
 * with its client; but nothing is written under the tenant's id — before,
 * the late_refresh / late_connect report landed in the new tenant's
 * revocations (and a late refresh read, and could keep, the new tenant's
 * grant of a person under the same id). */
static int f_recreate(st_txn *x, job *j) {
  int rc = st_tenant_remove(x, j->t);
  return rc ? rc : st_tenant_create(x, j->t, j->t, NOW, j->s);
}
static int f_mark_deleting(st_txn *x, job *j) { return st_tenant_mark_deleting(x, j->t); }
TEST(late_tokens_of_a_deleted_or_recreated_tenant_are_revoked_unreported) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  st_txn *r = rd();
  json_t *sent = NULL;
  CHECK_INT(vault_connector_get(r, "acme", "docs", &sent), 0);
  st_txn_end(r);
  /* deleted while the refresh was out, and made again: another tenant, with
   * its own connector of that name and a grant of a person of that id */
  CHECK(W(f_purge, (job){.t = "acme", .i1 = 1000}) > 0);
  CHECK_INT(drain(), 1);
  CHECK_INT(W(f_recreate, (job){.t = "acme", .s = "fedcba9876543210"}), 0);
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","
                     "\"authorize_url\":\"https://as2.example.net/authorize\",\"token_url\":\"https://as2.example.net/token\","
                     "\"revocation_url\":\"https://as2.example.net/revoke\",\"client_id\":\"cid-9\","
                     "\"client_secret\":\"OTHER-SECRET\"}}"),
            0);
  CHECK_INT(grant("acme", "u1", "docs", "n1", "r1", T0 + 5), 0);
  vault_tokens f2 = toks("a2", "r2", T0 + 3600);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2, .cfg = sent, .s2 = SECRET,
                                 .uid = TENANT_UID}),
            0);
  /* the new tenant's grant untouched, nothing in its report */
  CHECK(has_access("acme", "u1", "docs", "n1"));
  json_t *rep = reports("acme");
  CHECK_INT(json_array_size(rep), 0);
  json_decref(rep);
  /* the fresh tokens go where the refresh went, with its client */
  CHECK(g_late.elsewhere && strlen(g_late.id) == VAULT_REVOKE_ID_LEN);
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  CHECK_STR(j.id, g_late.id);
  CHECK_STR(j.tenant, "acme");
  CHECK_STR(j.url, "https://as.example.com/revoke");
  CHECK_STR(j.client_id, "cid-1");
  CHECK(j.client_secret && !strcmp(j.client_secret, SECRET));
  CHECK(j.refresh && !strcmp(j.refresh, "r2") && j.access && !strcmp(j.access, "a2"));
  vault_revoke_job_free(&j);
  CHECK_INT(drain(), 1);
  /* a connect's code exchange: the same */
  vault_tokens f3 = toks("a3", "r3", T0 + 3600);
  CHECK_INT(W(f_late, (job){.t = "acme", .u = "u2", .c = "docs", .tok = &f3, .cfg = sent, .s2 = SECRET, .uid = TENANT_UID}),
            0);
  rep = reports("acme");
  CHECK_INT(json_array_size(rep), 0);
  json_decref(rep);
  CHECK(g_late.elsewhere && g_late.id[0]);
  CHECK_INT(drain_count("a3", "r3"), 1);
  /* the same incarnation, active: reported as ever */
  CHECK_INT(W(f_late, (job){.t = "acme", .u = "u2", .c = "docs", .tok = &f3, .cfg = sent, .s2 = SECRET}), 0);
  CHECK(!g_late.elsewhere);
  CHECK_INT(reports_with_reason("acme", "u2", "late_connect"), 1);
  CHECK_INT(drain_count("a3", "r3"), 1);
  /* its purge under way (the same incarnation, "deleting"): revoked, not reported */
  CHECK_INT(W(f_mark_deleting, (job){.t = "acme"}), 0);
  CHECK_INT(W(f_late, (job){.t = "acme", .u = "u3", .c = "docs", .tok = &f3, .cfg = sent, .s2 = SECRET,
                            .uid = "fedcba9876543210"}),
            0);
  CHECK(g_late.elsewhere && g_late.id[0]);
  CHECK_INT(reports_with_reason("acme", "u3", "late_connect"), 0);
  CHECK_INT(drain_count("a3", "r3"), 1);
  json_decref(sent);
  close_store();
}

TEST(refresh_failed_drops_only_for_the_current_refresh_token) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  uint64_t ms = (uint64_t)T0 * 1000;
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", T0 + 5), 0);
  /* a network error: the claim ends, the grant stays */
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms}), VAULT_CLAIMED);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .b1 = false}), 0);
  CHECK(has_access("acme", "u1", "docs", "a1"));
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms + 1}), VAULT_CLAIMED);
  /* invalid_grant for a stale refresh token: the grant stays */
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r0", .b1 = true}), 0);
  CHECK(has_access("acme", "u1", "docs", "a1"));
  CHECK_INT(counts().pending, 0);
  /* a refresh by someone else, then the stale invalid_grant: still there */
  vault_tokens f2 = toks("a2", "r2", T0 + 5);
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &f2}), 0);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .b1 = true}), 0);
  CHECK(has_access("acme", "u1", "docs", "a2"));
  CHECK_INT(W(f_claim, (job){.t = "acme", .u = "u1", .c = "docs", .i1 = T0, .u1 = ms + 2}), VAULT_CLAIMED);
  /* invalid_grant for the current one: dropped and queued (reason invalid_grant) */
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r2", .b1 = true}), 0);
  vault_tokens g;
  CHECK_INT(get_tokens("acme", "u1", "docs", &g), ST_ENOTFOUND);
  json_t *r = reports("acme");
  json_t *rep = report_of(r, "u1", "docs");
  int ok = rep && !strcmp(sget(rep, "reason") ?: "", "invalid_grant");
  json_decref(r);
  CHECK(ok);
  CHECK_INT(counts().pending, 1);
  close_store();
}

/* ==== the upstream credential ============================================================ */

TEST(upstream_cred_is_the_users_own_unexpired_grant) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  vault_cred c = {(char *)1, (char *)1};
  CHECK_INT(cred("acme", "docs", NULL, T0, &c), VAULT_ENOGRANT);
  CHECK(c.name == NULL && c.value == NULL);
  CHECK_INT(cred("acme", "docs", "u1", T0, &c), VAULT_ENOGRANT);
  CHECK_INT(grant("acme", "uA", "docs", "access-of-A", "r", T0 + 100), 0);
  CHECK_INT(cred("acme", "docs", "uB", T0, &c), VAULT_ENOGRANT);
  CHECK_INT(cred("acme", "docs", "", T0, &c), VAULT_ENOGRANT);
  CHECK_INT(cred("acme", "docs", "u", T0, &c), VAULT_ENOGRANT);
  CHECK_INT(cred("acme", "docs", "uAx", T0, &c), VAULT_ENOGRANT);
  CHECK_INT(cred("beta", "docs", "uA", T0, &c), ST_ENOTFOUND); /* no such connector in beta */
  CHECK_INT(cred("acme", "docs", "uA", T0, &c), 0);
  CHECK_STR(c.name, "Authorization");
  CHECK_STR(c.value, "Bearer access-of-A");
  vault_cred_free(&c);
  CHECK_INT(cred("acme", "docs", "uA", T0 + 89, &c), 0);
  vault_cred_free(&c);
  /* within the aggregated gate's 10 s but more than 5 s left: usable (the
   * gate passed it a moment before; refusing it here answered "expired") */
  CHECK_INT(cred("acme", "docs", "uA", T0 + 94, &c), 0);
  vault_cred_free(&c);
  CHECK_INT(cred("acme", "docs", "uA", T0 + 95, &c), VAULT_EEXPIRED); /* within 5 s */
  CHECK(c.name == NULL && c.value == NULL);
  CHECK_INT(cred("acme", "docs", "uA", T0 + 1000, &c), VAULT_EEXPIRED);
  /* no expiry said: never expires here */
  CHECK_INT(grant("acme", "uC", "docs", "access-of-C", NULL, 0), 0);
  CHECK_INT(cred("acme", "docs", "uC", T0 + 100000000, &c), 0);
  CHECK_STR(c.value, "Bearer access-of-C");
  vault_cred_free(&c);
  close_store();
}

/* ==== connect ============================================================================= */

/* The key form's state (vault/connect.h): opens only for the tenant, user
 * and connector it was made for, untampered; matches the connector only
 * while its binding is the one the page showed (a move or another header
 * ends that; a new description does not). */
static json_t *rec_of(const char *tenant, const char *name) {
  st_txn *r = rd();
  json_t *rec = NULL;
  vault_connector_get(r, tenant, name, &rec);
  st_txn_end(r);
  return rec;
}
#define UKEY(u, h, d) "{\"url\":\"" u "\",\"description\":\"" d "\",\"auth\":{\"type\":\"user_header\",\"name\":\"" h "\"}}"
TEST(key_state_binds_the_form_to_the_connector_as_shown) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", UKEY("https://a.example.com/mcp", "X-Api-Key", "one")), 0);
  json_t *rec = rec_of("acme", "docs");
  char *st = NULL;
  CHECK_INT(vault_key_state_seal(g_st, "acme", "user-1", "docs", rec, &st), 0);
  json_decref(rec);
  CHECK(st && strlen(st) < VAULT_KEY_STATE_MAX && !strstr(st, "example"));
  vault_key_state k;
  CHECK_INT(vault_key_state_open(g_st, "acme", st, "user-1", "docs", &k), 0);
  int r[6];
  vault_key_state o;
  r[0] = vault_key_state_open(g_st, "beta", st, "user-1", "docs", &o);
  r[1] = vault_key_state_open(g_st, "acme", st, "user-2", "docs", &o);
  r[2] = vault_key_state_open(g_st, "acme", st, "user-1", "wiki", &o);
  r[3] = vault_key_state_open(g_st, "acme", NULL, "user-1", "docs", &o);
  r[4] = vault_key_state_open(g_st, "acme", "", "user-1", "docs", &o);
  size_t n = strlen(st);
  st[n / 2] = st[n / 2] == 'A' ? 'B' : 'A';
  r[5] = vault_key_state_open(g_st, "acme", st, "user-1", "docs", &o);
  free(st);
  for (int i = 0; i < 6; i++) CHECK_INT(r[i], VAULT_ECONNECT);
  /* another description: still the connector the page showed */
  CHECK_INT(conn_put("acme", "docs", UKEY("https://a.example.com/mcp", "X-Api-Key", "two")), 0);
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&k, rec), 1);
  json_decref(rec);
  /* moved, then back: neither is the connector as shown */
  CHECK_INT(conn_put("acme", "docs", UKEY("https://b.example.com/mcp", "X-Api-Key", "two")), 0);
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&k, rec), 0);
  json_decref(rec);
  CHECK_INT(conn_put("acme", "docs", UKEY("https://a.example.com/mcp", "X-Api-Key", "two")), 0);
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&k, rec), 0);
  /* a state made now matches now, and not after another header */
  CHECK_INT(vault_key_state_seal(g_st, "acme", "user-1", "docs", rec, &st), 0);
  json_decref(rec);
  CHECK_INT(vault_key_state_open(g_st, "acme", st, "user-1", "docs", &k), 0);
  free(st);
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&k, rec), 1);
  json_decref(rec);
  CHECK_INT(conn_put("acme", "docs", UKEY("https://a.example.com/mcp", "X-Other", "two")), 0);
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&k, rec), 0);
  json_decref(rec);
  vault_key_state empty = {{0}};
  rec = rec_of("acme", "docs");
  CHECK_INT(vault_key_state_matches(&empty, rec), 0);
  json_decref(rec);
  close_store();
}
#undef UKEY

/* The connect cookie carries the connector as the flow began
 * (vault_connect_bind): the callback goes on only with that connector —
 * not after a move, a rekey (another client), nor for one deleted and made
 * again with another authorization server; a description changes nothing. */
#define OAC(u, c, d) "{\"url\":\"" u "\",\"description\":\"" d "\",\"auth\":{\"type\":\"oauth\",\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\",\"client_id\":\"" c "\"}}"
TEST(connect_cookie_carries_the_connector_as_it_began) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "crm", OAC("https://a.example.com/mcp", "cid", "one")), 0);
  vault_connect c, o;
  CHECK_INT(vault_connect_new(&c, "user-1", "crm", T0), 0);
  CHECK_INT(vault_connect_matches(&c, NULL), 0); /* nothing noted: fail closed */
  json_t *rec = rec_of("acme", "crm");
  CHECK_INT(vault_connect_bind(&c, rec), 0);
  json_decref(rec);
  CHECK_INT(strlen(c.bind), VAULT_CONNECT_RAND_LEN);
  char *ck = NULL;
  CHECK_INT(vault_connect_seal(g_st, "acme", &c, &ck), 0);
  CHECK(ck && !strstr(ck, "example"));
  int rc = vault_connect_open(g_st, "acme", ck, c.state, T0 + 1, &o);
  free(ck);
  CHECK_INT(rc, 0);
  CHECK_STR(o.bind, c.bind);
  int m[5];
  CHECK_INT(conn_put("acme", "crm", OAC("https://a.example.com/mcp", "cid", "two")), 0);
  rec = rec_of("acme", "crm");
  m[0] = vault_connect_matches(&o, rec); /* a description */
  json_decref(rec);
  CHECK_INT(conn_put("acme", "crm", OAC("https://b.example.com/mcp", "cid", "two")), 0);
  rec = rec_of("acme", "crm");
  m[1] = vault_connect_matches(&o, rec); /* moved */
  json_decref(rec);
  CHECK_INT(conn_put("acme", "crm", OAC("https://a.example.com/mcp", "cid", "two")), 0);
  rec = rec_of("acme", "crm");
  m[2] = vault_connect_matches(&o, rec); /* and back */
  json_decref(rec);
  /* deleted, made again with another client: its binding starts over */
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "crm"}), 0);
  CHECK_INT(conn_put("acme", "crm", OAC("https://a.example.com/mcp", "cid-2", "one")), 0);
  rec = rec_of("acme", "crm");
  m[3] = vault_connect_matches(&o, rec);
  json_decref(rec);
  /* ... with the same settings: still another connector (its epoch is
   * drawn afresh: a flow begun before a delete never lands on the one
   * made again in its name) */
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "crm"}), 0);
  CHECK_INT(conn_put("acme", "crm", OAC("https://a.example.com/mcp", "cid", "one")), 0);
  rec = rec_of("acme", "crm");
  m[4] = vault_connect_matches(&o, rec);
  json_decref(rec);
  CHECK_INT(m[0], 1);
  CHECK_INT(m[1], 0);
  CHECK_INT(m[2], 0);
  CHECK_INT(m[3], 0);
  CHECK_INT(m[4], 0);
  close_store();
}
#undef OAC

TEST(connect_cookie_round_trip_and_attacks) {
  CHECK(open_store());
  vault_connect c, o;
  CHECK_INT(vault_connect_new(&c, "user-1", "docs", T0), 0);
  CHECK_INT(strlen(c.state), VAULT_CONNECT_RAND_LEN);
  CHECK_INT(strlen(c.verifier), VAULT_CONNECT_RAND_LEN);
  CHECK(strcmp(c.state, c.verifier) != 0);
  CHECK_INT(c.expires, T0 + VAULT_CONNECT_TTL_S);
  vault_connect c2;
  CHECK_INT(vault_connect_new(&c2, "user-1", "docs", T0), 0);
  CHECK(strcmp(c.state, c2.state) != 0);
  CHECK_INT(vault_connect_new(&c2, "", "docs", T0), ST_EINVAL);
  CHECK_INT(vault_connect_new(&c2, "u", "Docs", T0), ST_EINVAL);
  CHECK_INT(vault_connect_new(&c2, "u", "a_b", T0), ST_EINVAL);
  char u65[66];
  memset(u65, 'u', 65);
  u65[65] = 0;
  CHECK_INT(vault_connect_new(&c2, u65, "docs", T0), ST_EINVAL);
  u65[64] = 0;
  CHECK_INT(vault_connect_new(&c2, u65, "docs", T0), 0);

  char *ck = NULL;
  CHECK_INT(vault_connect_seal(g_st, "acme", &c, &ck), 0);
  CHECK(ck && strlen(ck) <= VAULT_CONNECT_COOKIE_MAX);
  CHECK(!strstr(ck, c.state) && !strstr(ck, c.verifier) && !strstr(ck, "user-1"));
  int rc = vault_connect_open(g_st, "acme", ck, c.state, T0 + 1, &o);
  if (rc) free(ck);
  CHECK_INT(rc, 0);
  CHECK_STR(o.state, c.state);
  CHECK_STR(o.verifier, c.verifier);
  CHECK_STR(o.user, "user-1");
  CHECK_STR(o.connector, "docs");
  CHECK_INT(o.expires, c.expires);
  int r[12];
  r[0] = vault_connect_open(g_st, "beta", ck, c.state, T0 + 1, &o);
  r[1] = vault_connect_open(g_st, "acme", ck, c.state, c.expires, &o);     /* expired */
  r[2] = vault_connect_open(g_st, "acme", ck, c.state, c.expires - 1, &o); /* last second */
  r[3] = vault_connect_open(g_st, "acme", ck, c2.state, T0 + 1, &o);       /* another state, same length */
  char st2[VAULT_CONNECT_RAND_LEN + 1];
  memcpy(st2, c.state, sizeof st2);
  st2[VAULT_CONNECT_RAND_LEN - 1] ^= 1;
  r[4] = vault_connect_open(g_st, "acme", ck, st2, T0 + 1, &o);
  st2[VAULT_CONNECT_RAND_LEN - 1] = 0;
  r[5] = vault_connect_open(g_st, "acme", ck, st2, T0 + 1, &o); /* a prefix of the state */
  r[6] = vault_connect_open(g_st, "acme", ck, "", T0 + 1, &o);
  /* tampered: one character of the cookie changed */
  size_t n = strlen(ck);
  ck[n / 2] = ck[n / 2] == 'A' ? 'B' : 'A';
  r[7] = vault_connect_open(g_st, "acme", ck, c.state, T0 + 1, &o);
  ck[n - 2] = 0; /* truncated */
  r[8] = vault_connect_open(g_st, "acme", ck, c.state, T0 + 1, &o);
  free(ck);
  /* over-long cookie */
  char *big = malloc(VAULT_CONNECT_COOKIE_MAX + 2);
  memset(big, 'A', VAULT_CONNECT_COOKIE_MAX + 1);
  big[VAULT_CONNECT_COOKIE_MAX + 1] = 0;
  r[9] = vault_connect_open(g_st, "acme", big, c.state, T0 + 1, &o);
  free(big);
  r[10] = vault_connect_open(g_st, "acme", NULL, c.state, T0 + 1, &o);
  /* the same plaintext sealed under another kind is no connect cookie */
  char pt[400];
  snprintf(pt, sizeof pt, "{\"s\":\"%s\",\"v\":\"%s\",\"u\":\"user-1\",\"c\":\"docs\",\"e\":%lld}", c.state,
           c.verifier, (long long)c.expires);
  uint8_t *blob = NULL;
  size_t bl = 0;
  CHECK_INT(st_seal(g_st, &(st_aad){"acme", "vault.grant", ""}, pt, strlen(pt), &blob, &bl), 0);
  char enc[1024];
  auth_b64url_encode(blob, bl, enc, sizeof enc);
  free(blob);
  r[11] = vault_connect_open(g_st, "acme", enc, c.state, T0 + 1, &o);
  CHECK_INT(r[0], VAULT_ECONNECT);
  CHECK_INT(r[1], VAULT_ECONNECT);
  CHECK_INT(r[2], 0);
  CHECK_INT(r[3], VAULT_ECONNECT);
  CHECK_INT(r[4], VAULT_ECONNECT);
  CHECK_INT(r[5], VAULT_ECONNECT);
  CHECK_INT(r[6], VAULT_ECONNECT);
  CHECK_INT(r[7], VAULT_ECONNECT);
  CHECK_INT(r[8], VAULT_ECONNECT);
  CHECK_INT(r[9], VAULT_ECONNECT);
  CHECK_INT(r[10], VAULT_ECONNECT);
  CHECK_INT(r[11], VAULT_ECONNECT);
  /* a failed open leaves nothing in *out */
  CHECK(o.state[0] == 0 && o.verifier[0] == 0);
  close_store();
}

static json_t *authrec(const char *az, const char *cid, const char *token_auth, const char *scopes_json) {
  json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "type", "oauth", "authorize_url", az, "token_url",
                        "https://as.example.com/token", "client_id", cid);
  if (token_auth) json_object_set_new(a, "token_auth", json_string(token_auth));
  json_object_set_new(a, "scopes", scopes_json ? json_loads(scopes_json, 0, NULL) : json_array());
  return a;
}

TEST(authorize_url_encodes_every_value) {
  vault_connect c;
  memset(&c, 0, sizeof c);
  strcpy(c.state, "st4te-_~.0123456789012345678901234567890123");
  strcpy(c.verifier, VERIFIER);
  strcpy(c.user, "u1");
  strcpy(c.connector, "docs");
  json_t *a = authrec("https://as.example.com/authorize?tenant=x", "cid 1&x=y",
                      NULL, "[\"openid\",\"offline_access\",\"read:jira-work\"]");
  char *url = NULL;
  int rc = vault_connect_authorize_url(a, "https://gw.example.com/t/acme/connect/callback?a=1&b=2 x", &c, &url);
  json_decref(a);
  CHECK_INT(rc, 0);
  const char *want =
      "https://as.example.com/authorize?tenant=x&response_type=code&client_id=cid%201%26x%3Dy"
      "&redirect_uri=https%3A%2F%2Fgw.example.com%2Ft%2Facme%2Fconnect%2Fcallback%3Fa%3D1%26b%3D2%20x"
      "&scope=openid%20offline_access%20read%3Ajira-work&state=st4te-_~.0123456789012345678901234567890123"
      "&code_challenge=" CHALLENGE "&code_challenge_method=S256";
  int same = !strcmp(url, want);
  if (!same) fprintf(stderr, "  got  %s\n  want %s\n", url, want);
  free(url);
  CHECK(same);
  /* no query yet: '?'; no scopes: no scope parameter */
  a = authrec("https://as.example.com/authorize", "cid", NULL, NULL);
  rc = vault_connect_authorize_url(a, "http://127.0.0.1:8080/cb", &c, &url);
  json_decref(a);
  CHECK_INT(rc, 0);
  want = "https://as.example.com/authorize?response_type=code&client_id=cid&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb"
         "&state=st4te-_~.0123456789012345678901234567890123&code_challenge=" CHALLENGE "&code_challenge_method=S256";
  same = !strcmp(url, want);
  if (!same) fprintf(stderr, "  got  %s\n  want %s\n", url, want);
  free(url);
  CHECK(same);
  /* a record without client_id: refused */
  a = json_pack("{s:s}", "authorize_url", "https://as.example.com/authorize");
  rc = vault_connect_authorize_url(a, "http://127.0.0.1/cb", &c, &url);
  json_decref(a);
  CHECK(rc < 0 && url == NULL);
}

#define BASIC_ODD "Basic aWQlM0F3aXRoJTI1OnNlJTNBY3IlMjVldA==" /* base64("id%3Awith%25:se%3Acr%25et") */

TEST(token_request_client_authentication) {
  char *body = NULL, *authz = NULL;
  /* client_secret_basic: RFC 6749 §2.3.1, both parts form-encoded */
  json_t *a = authrec("https://as.example.com/a", "id:with%", "client_secret_basic", NULL);
  int rc = vault_connect_token_request(a, "se:cr%et", "co de&x", "https://gw/cb?a=b", VERIFIER, &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  int ok_body = !strcmp(body, "grant_type=authorization_code&code=co%20de%26x&redirect_uri=https%3A%2F%2Fgw%2Fcb%3Fa%3Db"
                              "&code_verifier=" VERIFIER "&client_id=id%3Awith%25");
  int ok_authz = authz && !strcmp(authz, BASIC_ODD);
  if (!ok_body || !ok_authz) fprintf(stderr, "  body %s\n  authz %s\n", body, authz ? authz : "(null)");
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  /* no token_auth in the record and a secret: basic */
  a = authrec("https://as.example.com/a", "cid-1", NULL, NULL);
  rc = vault_connect_token_request(a, SECRET, "c", "r", "v", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  ok_authz = authz && !strcmp(authz, "Basic Y2lkLTE6Q0xJRU5ULVNFQ1JFVC1YWVo=");
  ok_body = !strstr(body, SECRET) && !strstr(body, "client_secret");
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_authz);
  CHECK(ok_body);
  /* client_secret_post: both in the body, no header */
  a = authrec("https://as.example.com/a", "id:with%", "client_secret_post", NULL);
  rc = vault_connect_token_request(a, "se:cr%et", "c", "r", "v", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "grant_type=authorization_code&code=c&redirect_uri=r&code_verifier=v&client_id=id%3Awith%25"
                          "&client_secret=se%3Acr%25et");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  /* public client */
  a = authrec("https://as.example.com/a", "pub", "none", NULL);
  rc = vault_connect_token_request(a, NULL, "c", "r", "v", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "grant_type=authorization_code&code=c&redirect_uri=r&code_verifier=v&client_id=pub");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  /* no client_id */
  a = json_object();
  rc = vault_connect_token_request(a, NULL, "c", "r", "v", &body, &authz);
  json_decref(a);
  CHECK(rc < 0 && body == NULL && authz == NULL);
}

TEST(refresh_and_revoke_requests) {
  char *body = NULL, *authz = NULL;
  json_t *a = authrec("https://as.example.com/a", "id:with%", "client_secret_basic", NULL);
  int rc = vault_refresh_request(a, "se:cr%et", "rt+/=&x", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  int ok_body = !strcmp(body, "grant_type=refresh_token&refresh_token=rt%2B%2F%3D%26x&client_id=id%3Awith%25");
  int ok_authz = authz && !strcmp(authz, BASIC_ODD);
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  a = authrec("https://as.example.com/a", "c", "client_secret_post", NULL);
  rc = vault_refresh_request(a, "s", "rt", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "grant_type=refresh_token&refresh_token=rt&client_id=c&client_secret=s");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  a = authrec("https://as.example.com/a", "c", "none", NULL);
  rc = vault_refresh_request(a, NULL, "rt", &body, &authz);
  json_decref(a);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "grant_type=refresh_token&refresh_token=rt&client_id=c");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  /* revocation (RFC 7009) */
  rc = vault_revoke_request("id:with%", "se:cr%et", 0, "to ken", "refresh_token", &body, &authz);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "token=to%20ken&token_type_hint=refresh_token&client_id=id%3Awith%25");
  ok_authz = authz && !strcmp(authz, BASIC_ODD);
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  rc = vault_revoke_request("c", "s&", 1, "t", "access_token", &body, &authz);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "token=t&token_type_hint=access_token&client_id=c&client_secret=s%26");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
  rc = vault_revoke_request("pub", NULL, 0, "t", NULL, &body, &authz);
  CHECK_INT(rc, 0);
  ok_body = !strcmp(body, "token=t&client_id=pub");
  ok_authz = authz == NULL;
  vault_wipe(body);
  vault_wipe(authz);
  CHECK(ok_body);
  CHECK(ok_authz);
}


/* ==== the user-cut hook and the tenant's deletion, as the gateway drives them ============ */

static int tenant_fn(st_txn *txn, void *arg) {
  return st_tenant_create(txn, arg, arg, "2026-01-01T00:00:00Z", "0123456789abcdef");
}
typedef struct scim_call {
  scim_req rq;
  scim_resp rs;
} scim_call;
static int scim_fn(st_txn *txn, void *arg) {
  scim_call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}
/* One SCIM request; its status, and the created resource's id into id. */
static int scim(const char *tenant, const char *method, const char *path, const char *body, char id[40]) {
  scim_call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = tenant;
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/x/scim/v2";
  c.rq.body = body ? json_loads(body, 0, NULL) : NULL;
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(g_st, scim_fn, &c);
  json_decref(c.rq.body);
  if (id) snprintf(id, 40, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  int status = c.rs.status;
  scim_resp_clear(&c.rs);
  return status;
}

TEST(scim_deactivation_and_deletion_revoke_the_users_grants) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  char alice[40], bob[40], path[80], body[300];
  CHECK_INT(scim("acme", "POST", "/Users", "{\"userName\":\"alice@acme.com\",\"active\":true}", alice), 201);
  CHECK_INT(scim("acme", "POST", "/Users", "{\"userName\":\"bob@acme.com\",\"active\":true}", bob), 201);
  CHECK_INT(grant("acme", alice, "docs", "alice-at", "alice-rt", 0), 0);
  CHECK_INT(grant("acme", bob, "docs", "bob-at", NULL, 0), 0);
  snprintf(path, sizeof path, "/Users/%s", alice);
  snprintf(body, sizeof body, "{\"schemas\":[\"%s\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
           SCIM_URN_PATCH);
  CHECK_INT(scim("acme", "PATCH", path, body, NULL), 200);
  CHECK(!has_access("acme", alice, "docs", "alice-at"));
  CHECK(has_access("acme", bob, "docs", "bob-at"));
  json_t *r = reports("acme");
  json_t *rep = report_of(r, alice, "docs");
  int ok = rep && !strcmp(sget(rep, "reason") ?: "", "deactivated") && !strcmp(sget(rep, "state") ?: "", "pending");
  json_decref(r);
  CHECK(ok);
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  ok = j.access && !strcmp(j.access, "alice-at") && j.refresh && !strcmp(j.refresh, "alice-rt");
  vault_revoke_job_free(&j);
  CHECK(ok);
  snprintf(path, sizeof path, "/Users/%s", bob);
  CHECK_INT(scim("acme", "DELETE", path, NULL, NULL), 204);
  CHECK(!has_access("acme", bob, "docs", "bob-at"));
  CHECK_INT(counts().grants, 0);
  CHECK_INT(counts().pending, 2);
  close_store();
}

typedef struct purge_job {
  const char *tenant;
  int limit, n;
} purge_job;
static int purge_step_fn(st_txn *txn, void *arg) {
  purge_job *p = arg;
  p->n = st_purge_tenant_step(txn, p->tenant, p->limit);
  return p->n < 0 ? p->n : 0;
}

TEST(tenant_deletion_still_revokes_at_the_upstream) {
  static const int limits[] = {1, 3, 500};
  for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
    CHECK(open_store());
    CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
    CHECK_INT(conn_put("acme", "wiki", OAUTH_NOREVOKE), 0);
    CHECK_INT(conn_put("beta", "docs", OAUTH_FULL), 0);
    char u[16];
    for (int i = 0; i < 7; i++) {
      snprintf(u, sizeof u, "u%d", i);
      CHECK_INT(grant("acme", u, "docs", "acme-at", "acme-rt", 0), 0);
      CHECK_INT(grant("acme", u, "wiki", "acme-wiki-at", NULL, 0), 0);
    }
    CHECK_INT(grant("beta", "u1", "docs", "beta-at", "beta-rt", 0), 0);
    purge_job p = {"acme", limits[li], 0};
    int steps = 0;
    do {
      CHECK_INT(st_write_sync(g_st, purge_step_fn, &p), 0);
      CHECK(++steps < 2000);
    } while (p.n >= p.limit);
    /* nothing of acme left but the operator-wide revocation jobs */
    CHECK_INT(counts().grants, 1);
    json_t *r = reports("acme");
    CHECK_INT(json_array_size(r), 0);
    json_decref(r);
    st_txn *t = rd();
    json_t *rec = NULL;
    int grc = vault_connector_get(t, "acme", "docs", &rec);
    st_txn_end(t);
    CHECK_INT(grc, ST_ENOTFOUND);
    CHECK_INT(secret_exists("acme", VAULT_CLIENT_KIND, "docs", NULL), 0);
    CHECK_INT(secret_exists("acme", VAULT_GRANT_KIND, "u1/docs", NULL), 0);
    CHECK(has_access("beta", "u1", "docs", "beta-at"));
    CHECK_INT(secret_exists("beta", VAULT_CLIENT_KIND, "docs", SECRET), 1);
    /* the seven docs grants are queued with what revoking them takes */
    int n = 0;
    vault_revoke_job j;
    while (next_job(LATER, &j, NULL) == 0 && n < 20) {
      int ok = !strcmp(j.tenant, "acme") && !strcmp(j.url, "https://as.example.com/revoke") && j.access &&
               !strcmp(j.access, "acme-at") && j.refresh && !strcmp(j.refresh, "acme-rt") && j.client_secret &&
               !strcmp(j.client_secret, SECRET) && !strcmp(j.client_id, "cid-1");
      char id[VAULT_REVOKE_ID_LEN + 1];
      memcpy(id, j.id, sizeof id);
      uint64_t due = j.due_ms;
      vault_revoke_job_free(&j);
      CHECK(ok);
      CHECK_INT(W(f_result, (job){.s = id, .u1 = due, .b1 = true}), 0);
      n++;
    }
    CHECK_INT(n, 7);
  }
  close_store();
}

/* ==== the admin's revocations report at scale ============================================== */

/* n grants of "wiki" (no revocation endpoint) connected and dropped in one
 * job, each at its own time, so each leaves a "manual" report */
static int f_many_reports(st_txn *x, job *j) {
  vault_tokens t = toks("a", "r", 0);
  for (int i = 0; i < (int)j->i1; i++) {
    char u[32], now[40];
    int s = (int)j->u1 + i;
    snprintf(now, sizeof now, "2026-%02d-%02dT%02d:%02d:%02dZ", 1 + s / 2419200 % 12, 1 + s / 86400 % 28, s / 3600 % 24,
             s / 60 % 60, s % 60);
    snprintf(u, sizeof u, "user%d", s);
    int rc = vault_grant_put(x, "acme", u, "wiki", &t, now, 0);
    if (!rc) rc = vault_grant_drop(x, "acme", u, "wiki", "disconnect", now);
    if (rc) return rc;
  }
  return 0;
}

/* GET /admin/…/revocations (gateway/api/admin_users.c) calls
 * vault_revocations_list(txn, tenant, 1000, …) on a loop thread inside a
 * read txn, and a tenant keeps up to VAULT_REPORTS_MAX reports (one per
 * disconnect, reconnect, deactivation, invalid_grant). The newest-first order is an insertion sort
 * over every report of the tenant: O(n²) in the tenant's history, not
 * bounded by limit. 8000 reports took 2.0 s here, 12000 7.8 s, 16000 16.5 s; a
 * bounded listing takes milliseconds. */
TEST(revocations_list_work_is_bounded_by_limit_not_history) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "wiki", OAUTH_NOREVOKE), 0);
  for (int i = 0; i < 8; i++) CHECK_INT(W(f_many_reports, (job){.i1 = 1000, .u1 = (uint64_t)i * 1000}), 0);
  CHECK_INT(counts().manual, VAULT_REPORTS_MAX); /* the older ones trimmed (grant.h) */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  st_txn *r = rd();
  json_t *a = NULL;
  int rc = vault_revocations_list(r, "acme", 1000, &a);
  st_txn_end(r);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  size_t n = json_array_size(a);
  /* newest first */
  int ordered = 1;
  for (size_t i = 1; i < n; i++)
    if (strcmp(sget(json_array_get(a, i - 1), "created") ?: "", sget(json_array_get(a, i), "created") ?: "") < 0) ordered = 0;
  json_decref(a);
  CHECK_INT(rc, 0);
  CHECK_INT(n, 1000);
  CHECK(ordered);
  if (secs >= 1.0) fprintf(stderr, "  listing 1000 of 8000 reports took %.2f s on the loop thread\n", secs);
  CHECK(secs < 1.0);
  close_store();
}

/* ==== found in review: grants must not outlive their upstream's identity ============== */

/* A connector PUT that changes its URL, its authorization server or client
 * (or its type) cut the employees' grants: before, vault_upstream_cred kept
 * sending their old Bearer tokens to the new URL. The revocation job copies
 * the OLD endpoint and client (the grants were made there). */
TEST(connector_change_cuts_grants_to_the_old_upstream) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", "r1", 0), 0);
  /* the same identity (description only): the grant stays */
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://mcp.example.com/mcp\",\"description\":\"x\",\"auth\":{\"type\":\"oauth\","
                     "\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\","
                     "\"revocation_url\":\"https://as.example.com/revoke\",\"client_id\":\"cid-1\","
                     "\"client_secret\":\"" SECRET "\",\"scopes\":[\"read\",\"write\"]}}"),
            0);
  CHECK_INT(counts().grants, 1);
  CHECK_INT(counts().pending, 0);
  /* another URL: cut, and the job names the old revocation endpoint */
  CHECK_INT(conn_put("acme", "docs",
                     "{\"url\":\"https://evil.example.net/mcp\",\"auth\":{\"type\":\"oauth\","
                     "\"authorize_url\":\"https://as2.example.net/authorize\",\"token_url\":\"https://as2.example.net/token\","
                     "\"revocation_url\":\"https://as2.example.net/revoke\",\"client_id\":\"cid-9\"}}"),
            0);
  CHECK_INT(counts().grants, 0);
  CHECK_INT(counts().pending, 1);
  vault_revoke_job j;
  CHECK_INT(next_job(LATER, &j, NULL), 0);
  CHECK_STR(j.url, "https://as.example.com/revoke");
  CHECK_STR(j.client_id, "cid-1");
  CHECK(j.client_secret && !strcmp(j.client_secret, SECRET));
  CHECK(j.access && !strcmp(j.access, "a1"));
  vault_revoke_job_free(&j);
  /* and nothing is presented to the new upstream */
  st_txn *r = rd();
  vault_cred c;
  CHECK_INT(vault_upstream_cred(r, "acme", "docs", "u1", NULL, T0, &c), VAULT_ENOGRANT);
  st_txn_end(r);
  close_store();
}

/* A refresh reply without "scope" keeps the scope granted before (RFC 6749
 * §5.1); it was dropped. */
TEST(refresh_without_scope_keeps_the_granted_scope) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  vault_tokens t = {"a1", "r1", T0 + 5, "read write"};
  CHECK_INT(W(f_put, (job){.t = "acme", .u = "u1", .c = "docs", .tok = &t, .b1 = true}), 0);
  vault_tokens fresh = {"a2", "r2", T0 + 3600, NULL};
  CHECK_INT(W(f_refreshed, (job){.t = "acme", .u = "u1", .c = "docs", .s = "r1", .tok = &fresh}), 0);
  st_txn *r = rd();
  json_t *info = NULL;
  CHECK_INT(vault_grant_info(r, "acme", "u1", "docs", &info), 0);
  st_txn_end(r);
  CHECK(info && json_string_value(json_object_get(info, "scope")) &&
        !strcmp(json_string_value(json_object_get(info, "scope")), "read write"));
  json_decref(info);
  close_store();
}

/* An expired grant without a refresh token cannot be renewed: the failed
 * refresh (used_refresh NULL, invalid) drops it — before, the claim was
 * never ended and every call waited for it to lapse. */
TEST(expired_grant_without_refresh_token_is_dropped) {
  CHECK(open_store());
  CHECK_INT(conn_put("acme", "docs", OAUTH_FULL), 0);
  CHECK_INT(grant("acme", "u1", "docs", "a1", NULL, T0 + 5), 0);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u1", .c = "docs", .s = NULL, .b1 = true}), 0);
  CHECK_INT(counts().grants, 0);
  /* one with a refresh token is not dropped by a caller that had none */
  CHECK_INT(grant("acme", "u2", "docs", "a2", "r2", T0 + 5), 0);
  CHECK_INT(W(f_refresh_failed, (job){.t = "acme", .u = "u2", .c = "docs", .s = NULL, .b1 = true}), 0);
  CHECK_INT(counts().grants, 1);
  close_store();
}


/* ==== the rediscovery schedule (vault/rediscover.h) ============================== */

/* A discovered connector as admin_discover.c stores it (registered by DCR). */
static json_t *discovered_cfg(const char *registration) {
  char t[1200];
  snprintf(t, sizeof t,
           "{\"url\":\"https://mcp.example.com/mcp\",\"description\":\"\",\"timeouts\":{},\"auth\":{\"type\":\"oauth\","
           "\"authorize_url\":\"https://as.example.com/authorize\",\"token_url\":\"https://as.example.com/token\","
           "\"client_id\":\"dcr-1\",\"token_auth\":\"client_secret_basic\",\"scopes\":[],\"discover\":true,"
           "\"resource\":\"https://mcp.example.com/mcp\",\"discovered\":{\"issuer\":\"https://as.example.com\","
           "\"registration\":\"%s\"}}}",
           registration);
  return json_loads(t, 0, NULL);
}
static int f_resched(st_txn *x, job *j) {
  return vault_rediscover_schedule(x, j->t, j->c, j->i1, j->s, j->b1);
}
static int f_rejected(st_txn *x, job *j) { return vault_rediscover_rejected(x, j->t, j->c, j->i1); }
static int f_rdone(st_txn *x, job *j) {
  return vault_rediscover_done(x, j->t, j->c, (int64_t)j->u1, j->s, j->b1 ? "the AS is down" : NULL, j->i1,
                               j->now, j->b2);
}
static int next_due(int64_t now, char conn[40], char reason[16]) {
  char tenant[64];
  int attempts;
  st_txn *t = rd();
  int rc = vault_rediscover_next(t, now, tenant, conn, reason, &attempts);
  st_txn_end(t);
  return rc;
}
static int check_problems(void) {
  int n = st_check(g_st, NULL, NULL);
  return n;
}

TEST(rediscovery_schedule_orders_backs_off_and_is_cleaned_up) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  json_t *dcr = discovered_cfg("dcr"), *cimd = discovered_cfg("cimd");
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "crm", .cfg = dcr, .s = "sec"}), 0);
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "wiki", .cfg = cimd}), 0);
  int64_t t0 = 1900000000000LL;
  char conn[40], reason[16];
  /* nothing scheduled yet */
  CHECK_INT(next_due(t0, conn, reason), ST_ENOTFOUND);
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "crm", .i1 = t0 + 5000, .s = "scheduled"}), 0);
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "wiki", .i1 = t0 + 1000, .s = "scheduled"}), 0);
  CHECK_INT(next_due(t0, conn, reason), ST_ENOTFOUND); /* not due yet */
  CHECK_INT(next_due(t0 + 1000, conn, reason), 0);
  CHECK_STR(conn, "wiki");
  /* sooner_only keeps an earlier entry; a replacement moves the index */
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "wiki", .i1 = t0 + 9000, .s = "scheduled", .b1 = true}), 0);
  CHECK_INT(next_due(t0 + 1000, conn, reason), 0);
  CHECK_STR(conn, "wiki");
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "wiki", .i1 = t0 + 900000000, .s = "scheduled"}), 0);
  CHECK_INT(next_due(t0 + 5000, conn, reason), 0);
  CHECK_STR(conn, "crm");
  CHECK_INT(check_problems(), 0);

  /* invalid_client: a DCR connector is due now, for "rejected"; a CIMD one is not touched */
  CHECK_INT(W(f_rejected, (job){.t = "acme", .c = "crm", .i1 = t0}), 0);
  CHECK_INT(next_due(t0, conn, reason), 0);
  CHECK_STR(conn, "crm");
  CHECK_STR(reason, "rejected");
  CHECK_INT(W(f_rejected, (job){.t = "acme", .c = "wiki", .i1 = t0}), 0);
  CHECK_INT(next_due(t0 + 8999, conn, reason), 0);
  CHECK_STR(conn, "crm");
  /* a scheduled reading that was under way when the rejection came ends:
   * the rejection is still owed its new registration, due as it was */
  CHECK_INT(W(f_rdone, (job){.t = "acme", .c = "crm", .u1 = (uint64_t)t0, .s = "unchanged", .i1 = t0 + 86400000,
                             .now = "scheduled"}),
            0);
  CHECK_INT(next_due(t0, conn, reason), 0);
  CHECK_STR(conn, "crm");
  CHECK_STR(reason, "rejected");
  /* the reading for "rejected" ends; another rejection soon after waits for the floor */
  CHECK_INT(W(f_rdone, (job){.t = "acme", .c = "crm", .u1 = (uint64_t)t0, .s = "changed", .i1 = t0 + 86400000,
                             .now = "scheduled", .b2 = true}),
            0);
  CHECK_INT(W(f_rejected, (job){.t = "acme", .c = "crm", .i1 = t0 + 1000}), 0);
  CHECK_INT(next_due(t0 + 1000, conn, reason), ST_ENOTFOUND);
  CHECK_INT(next_due(t0 + VAULT_REDISCOVER_REJECTED_MIN_MS, conn, reason), 0);
  CHECK_STR(conn, "crm");
  CHECK_STR(reason, "rejected");

  /* failures count attempts and keep the error; a success resets them */
  CHECK_INT(W(f_rdone, (job){.t = "acme", .c = "crm", .u1 = (uint64_t)t0 + 2000, .s = "failed", .b1 = true,
                             .i1 = t0 + 62000, .now = "rejected", .b2 = true}),
            0);
  CHECK_INT(W(f_rdone, (job){.t = "acme", .c = "crm", .u1 = (uint64_t)t0 + 3000, .s = "failed", .b1 = true,
                             .i1 = t0 + 63000, .now = "rejected", .b2 = true}),
            0);
  st_txn *t = rd();
  json_t *st = vault_rediscover_status(t, "acme", "crm");
  st_txn_end(t);
  CHECK(st != NULL);
  CHECK_INT(json_integer_value(json_object_get(st, "attempts")), 2);
  CHECK_STR(json_string_value(json_object_get(st, "last_error")), "the AS is down");
  CHECK_STR(json_string_value(json_object_get(st, "last_result")), "failed");
  CHECK_STR(json_string_value(json_object_get(st, "reason")), "rejected");
  CHECK(json_object_get(st, "next_check_at") != NULL);
  json_decref(st);
  CHECK_INT(W(f_rdone, (job){.t = "acme", .c = "crm", .u1 = (uint64_t)t0 + 4000, .s = "unchanged", .i1 = 0,
                             .now = "scheduled", .b2 = true}),
            0);
  t = rd();
  st = vault_rediscover_status(t, "acme", "crm");
  st_txn_end(t);
  CHECK_INT(json_integer_value(json_object_get(st, "attempts")), 0);
  CHECK(json_object_get(st, "last_error") == NULL);
  CHECK(json_object_get(st, "next_check_at") == NULL); /* 0: none planned */
  json_decref(st);
  CHECK_INT(check_problems(), 0);
  CHECK(vault_rediscover_backoff_ms(1, 3600000) == 60000);
  CHECK(vault_rediscover_backoff_ms(3, 3600000) == 240000);
  CHECK(vault_rediscover_backoff_ms(30, 3600000) == 3600000);

  /* a connector no longer discovered, or deleted, leaves no entry */
  json_t *plain = json_loads("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"none\"}}", 0, NULL);
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "wiki", .cfg = plain}), 0);
  t = rd();
  st = vault_rediscover_status(t, "acme", "wiki");
  st_txn_end(t);
  CHECK(st == NULL);
  CHECK_INT(W(f_conn_del, (job){.t = "acme", .c = "crm"}), 0);
  CHECK_INT(next_due(INT64_MAX - 1, conn, reason), ST_ENOTFOUND);
  CHECK_INT(check_problems(), 0);

  /* the tenant's purge removes its entries, one key at a time if asked */
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "crm", .cfg = dcr, .s = "sec"}), 0);
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "crm", .i1 = t0, .s = "scheduled"}), 0);
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "docs", .cfg = dcr, .s = "sec"}), 0);
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "docs", .i1 = t0 + 1, .s = "scheduled"}), 0);
  purge_job p = {"acme", 1, 0};
  int steps = 0;
  do {
    CHECK_INT(st_write_sync(g_st, purge_step_fn, &p), 0);
    CHECK(++steps < 200);
  } while (p.n >= p.limit);
  CHECK_INT(next_due(INT64_MAX - 1, conn, reason), ST_ENOTFOUND);
  json_decref(dcr);
  json_decref(cimd);
  json_decref(plain);
  close_store();
}

static int f_raw_put(st_txn *x, job *j) { return st_put(x, ST_DB_VAULT, j->s, (size_t)j->i1, "", 0, 0); }

TEST(rediscovery_store_check_finds_a_broken_schedule) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  json_t *dcr = discovered_cfg("dcr");
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "crm", .cfg = dcr, .s = "sec"}), 0);
  CHECK_INT(W(f_resched, (job){.t = "acme", .c = "crm", .i1 = 1000, .s = "scheduled"}), 0);
  CHECK_INT(check_problems(), 0);
  /* an index entry without its entry (due 5, acme/gone) */
  static const char k[] = "d\0\0\0\0\0\0\0\x05" "acme\0gone";
  CHECK_INT(W(f_raw_put, (job){.s = k, .i1 = (int64_t)sizeof k - 1}), 0);
  CHECK_INT(check_problems(), 1);
  json_decref(dcr);
  close_store();
}

/* A revocation job remembers whose word its URL is (vault/discover.h): a
 * discovered connector's revocation endpoint on another host than the
 * connector URL's, and not the admin's authorization server's, is sent at
 * the untrusted egress level — decided when it is queued, since the
 * connector may be gone when it is sent. */
TEST(revocation_job_of_an_upstream_named_endpoint_is_untrusted) {
  CHECK(open_store());
  CHECK_INT(st_write_sync(g_st, tenant_fn, "acme"), 0);
  json_t *d = discovered_cfg("cimd");
  json_t *a = json_object_get(d, "auth");
  json_object_set_new(a, "revocation_url", json_string("https://as.example.com/revoke"));
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "disc", .cfg = d}), 0);
  json_object_set_new(a, "revocation_url", json_string("https://mcp.example.com/oauth/revoke"));
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "same", .cfg = d}), 0);
  json_object_set_new(a, "revocation_url", json_string("https://as.example.com/revoke"));
  json_object_set_new(a, "authorization_server", json_string("https://as.example.com"));
  CHECK_INT(W(f_conn_put, (job){.t = "acme", .c = "named", .cfg = d}), 0);
  CHECK_INT(conn_put("acme", "manual", OAUTH_FULL), 0);
  const char *names[] = {"disc", "same", "named", "manual"};
  const bool untrusted[] = {true, false, false, false};
  for (int i = 0; i < 4; i++) {
    CHECK_INT(grant("acme", "u1", names[i], "a1", "r1", 0), 0);
    CHECK_INT(W(f_drop, (job){.t = "acme", .u = "u1", .c = names[i]}), 0);
    vault_revoke_job j;
    CHECK_INT(next_job(LATER, &j, NULL), 0);
    CHECK_INT(j.untrusted, untrusted[i]);
    vault_revoke_job_free(&j);
    CHECK_INT(drain(), 1);
  }
  json_decref(d);
  close_store();
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(oauth_parse_minimal);
  RUN(oauth_parse_full_secret_only_in_out_param);
  RUN(oauth_parse_refusals);
  RUN(connector_urls_refuse_user_info);
  RUN(oauth_parse_secret_needs_confidential_auth);
  RUN(oauth_put_seals_client_secret_and_switching_type_removes_it);
  RUN(connector_put_says_when_the_credential_changed);
  RUN(connector_bind_changes_with_a_move_or_a_rekey_only);
  RUN(connector_bind_never_comes_back_after_a_delete);
  RUN(url_authority_and_origin);
  RUN(url_shown_masks_every_query_value);
  RUN(url_keep_masked_values);
  RUN(connector_put_seals_the_url_query);
  RUN(upgrade_seals_stored_url_queries);
  RUN(store_check_finds_connector_urls_in_clear_or_unsealable);
  RUN(tokens_from_reply_accepts);
  RUN(tokens_from_reply_refuses);
  RUN(grant_round_trip_and_nothing_in_the_clear);
  RUN(grant_event_says_when_the_old_credential_is_gone);
  RUN(credential_ending_event_reads_the_old_credential);
  RUN(upstream_bind_follows_the_users_own_credential);
  RUN(grants_of_user_prefix_users_share_nothing);
  RUN(drop_queues_resealed_revocation);
  RUN(drop_without_revocation_url_is_manual);
  RUN(reports_per_tenant_are_bounded_and_pending_ones_kept);
  RUN(revoke_next_pick_passes_over_a_busy_tenant);
  RUN(corrupt_queue_entries_are_passed_over_and_set_aside);
  RUN(reconnect_revokes_old_tokens);
  RUN(cut_user_and_cut_connector_drop_exactly_theirs);
  RUN(connector_delete_revokes_with_its_data);
  RUN(purge_tenant_queues_grants_and_deletes_reports);
  RUN(queue_order_retry_final_and_stale_results);
  RUN(queue_copies_client_secret_post_auth);
  RUN(refresh_claim_busy_fresh_lapse);
  RUN(refresh_applies_only_for_the_current_refresh_token);
  RUN(refresh_answered_after_the_grant_left_revokes_the_fresh_tokens);
  RUN(late_refresh_is_revoked_where_the_refresh_went);
  RUN(late_tokens_of_a_deleted_or_recreated_tenant_are_revoked_unreported);
  RUN(refresh_failed_drops_only_for_the_current_refresh_token);
  RUN(upstream_cred_is_the_users_own_unexpired_grant);
  RUN(connect_cookie_round_trip_and_attacks);
  RUN(connect_cookie_carries_the_connector_as_it_began);
  RUN(key_state_binds_the_form_to_the_connector_as_shown);
  RUN(authorize_url_encodes_every_value);
  RUN(token_request_client_authentication);
  RUN(refresh_and_revoke_requests);
  RUN(scim_deactivation_and_deletion_revoke_the_users_grants);
  RUN(tenant_deletion_still_revokes_at_the_upstream);
  RUN(revocations_list_work_is_bounded_by_limit_not_history);
  RUN(connector_change_cuts_grants_to_the_old_upstream);
  RUN(refresh_without_scope_keeps_the_granted_scope);
  RUN(expired_grant_without_refresh_token_is_dropped);
  RUN(rediscovery_schedule_orders_backs_off_and_is_cleaned_up);
  RUN(rediscovery_store_check_finds_a_broken_schedule);
  RUN(revocation_job_of_an_upstream_named_endpoint_is_untrusted);
  close_store();
  json_decref(g_body);
  return UNIT_DONE();
}
