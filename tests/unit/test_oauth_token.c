/* tests/unit/test_oauth_token.c — what the authorization server issues
 * (auth/oauth_token.h) against a real LMDB store in a mkdtemp dir with a
 * master key, users provisioned through scim_handle inside writer jobs and
 * the modules' hooks, purges and checks registered before the first write
 * the way gateway/modules.c does. Every grant operation runs as a writer job
 * that returns the function's result, as the gateway's jobs do (a negative
 * one rolls the job back), and state is read back in read txns after the
 * commit.
 *
 * Codes: the exchange (PKCE S256 with RFC 7636's appendix B pair), every
 * refusal leaving the code usable, a replay revoking what the first use
 * issued, the sweep. Grants: refresh rotation, the grace window returning
 * the same successor pair, reuse after it revoking the family, an older
 * rotation's window, the sign-in age bound, tenants sharing nothing (even
 * a family id), the audience per resource, revocation by token, grant and
 * user, the list of grants, consent, the SCIM hooks (and the read-side user
 * check without them), the tenant purge (more grants than one batch of its
 * scan, records it cannot parse) and st_check. The sealed
 * successor: one blob per family, replaced by the next rotation, gone with
 * the family; token texts never stored in the clear. The read-only
 * checks of the exchange and the refresh (what the token endpoint rate
 * limits on): every job above is compared with its check, and the checks
 * alone tell a grant that works (or a replay with a grant to revoke) from
 * junk. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/oauth_client.h"
#include "auth/oauth_token.h"
#include "auth/oidc.h"
#include "auth/token_store.h"
#include "gateway/base/log.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/seal.h"
#include "store/store.h"
#include "store/tenant.h"
#include "store/token.h"
#include "tests/unit/unit.h"

#define T0 INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  /* RFC 7636 appendix B */
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#define CLIENT "https://claude.ai/oauth/claude-code-client-metadata"
#define CLIENT2 "dcr-0123456789abcdef"
#define REDIRECT "http://127.0.0.1:49152/callback"
#define ACCESS_TTL 3600
#define REFRESH_TTL (30 * 86400)
#define SIGNIN_AGE (8 * 86400)
#define GRACE 60

static char g_tmp[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}

/* ---- ST_EVENT_TOKEN_REVOKED, recorded once its transaction committed ---------- */

typedef struct rec_event {
  char tenant[64], kind[32], tokid[64];
} rec_event;
static rec_event g_ev[64];
static int g_nev;

static void ev_commit(void *arg) {
  if (g_nev < (int)(sizeof g_ev / sizeof g_ev[0])) g_ev[g_nev++] = *(rec_event *)arg;
  free(arg);
}
static int on_revoked(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)kind, (void)ctx;
  const auth_token_event *ev = event;
  rec_event *r = calloc(1, sizeof *r);
  if (!r) return ST_ENOMEM;
  snprintf(r->tenant, sizeof r->tenant, "%s", ev->tenant ? ev->tenant : "");
  snprintf(r->kind, sizeof r->kind, "%s", ev->kind ? ev->kind : "");
  snprintf(r->tokid, sizeof r->tokid, "%s", ev->tokid ? ev->tokid : "");
  int rc = st_txn_after_commit(txn, ev_commit, free, r);
  if (rc) free(r);
  return rc;
}
/* How many committed events name this family (kind "oauth", tenant). */
static int events_for(const char *tenant, const char *family) {
  int n = 0;
  for (int i = 0; i < g_nev; i++)
    if (!strcmp(g_ev[i].tenant, tenant) && !strcmp(g_ev[i].kind, AUTH_KIND_OAUTH) &&
        !strcmp(g_ev[i].tokid, family))
      n++;
  return n;
}

/* ---- the store ------------------------------------------------------------------ */

typedef struct tenant_job {
  const char *id;
  int op; /* 0 create, 1 mark deleting, 2 remove */
} tenant_job;
static int tenant_fn(st_txn *txn, void *arg) {
  tenant_job *j = arg;
  switch (j->op) {
  case 0: return st_tenant_create(txn, j->id, j->id, "2026-01-01T00:00:00Z", "0123456789abcdef");
  case 1: return st_tenant_mark_deleting(txn, j->id);
  default: return st_tenant_remove(txn, j->id);
  }
}
static int tenant_op(st_store *st, const char *id, int op) {
  tenant_job j = {id, op};
  return st_write_sync(st, tenant_fn, &j);
}

/* A store with a master key, the modules' hooks, purges and checks in
 * gateway/modules.c's order (the secrets purge last, as vault's entry has
 * it) and the test's event recorder, all before the first write; tenants
 * "acme", "beta" and "gamma". with_oauth false leaves out
 * auth_oauth_register (no hooks, purge or check of grants). */
static st_store *open_store_with(bool with_oauth) {
  tmp_cleanup();
  g_nev = 0;
  strcpy(g_tmp, "/tmp/mcpgate-test-oauth-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128], key[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64u << 20;
  o.master_key_file = key;
  o.log = gw_store_log;
  st_store *st = NULL;
  if (st_open(&st, &o)) return NULL;
  int rc = scim_register_purge(st);
  scim_register_checks(st);
  if (!rc) rc = auth_register_hooks(st);
  if (!rc) rc = auth_register_checks(st);
  if (!rc) rc = st_check_add(st, auth_tokens_check, NULL);
  if (!rc) rc = auth_register_purge(st);
  if (!rc) rc = st_purge_add(st, "auth.oauth_clients", auth_oauth_clients_purge_tenant, NULL);
  if (!rc && with_oauth) rc = auth_oauth_register(st);
  if (!rc) rc = auth_oidc_register_purge(st);
  if (!rc) rc = pol_register_hooks(st);
  if (!rc) rc = pol_register_purge(st);
  if (!rc) rc = st_purge_add(st, "secrets", st_secret_purge_tenant, NULL);
  if (!rc) rc = st_hook_add(st, ST_EVENT_TOKEN_REVOKED, on_revoked, NULL);
  if (!rc) rc = tenant_op(st, "acme", 0);
  if (!rc) rc = tenant_op(st, "beta", 0);
  if (!rc) rc = tenant_op(st, "gamma", 0);
  if (rc) {
    fprintf(stderr, "  store setup: %s\n", st_strerror(rc));
    st_close(st);
    return NULL;
  }
  return st;
}
static st_store *open_store(void) { return open_store_with(true); }

/* ---- SCIM, as the gateway drives it ------------------------------------------------ */

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
static int scim(st_store *st, const char *tenant, const char *method, const char *path, const char *body,
                char id[40]) {
  scim_call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = tenant;
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/x/scim/v2";
  c.rq.body = body ? json_loads(body, 0, NULL) : NULL;
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(st, scim_fn, &c);
  json_decref(c.rq.body);
  if (id) snprintf(id, 40, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  int status = c.rs.status;
  scim_resp_clear(&c.rs);
  return status;
}
static int user(st_store *st, const char *tenant, const char *name, bool active, char id[40]) {
  char body[200];
  snprintf(body, sizeof body, "{\"userName\":\"%s\",\"active\":%s}", name, active ? "true" : "false");
  return scim(st, tenant, "POST", "/Users", body, id);
}
static int set_active(st_store *st, const char *tenant, const char *id, bool active) {
  char path[80], body[200];
  snprintf(path, sizeof path, "/Users/%s", id);
  snprintf(body, sizeof body, "{\"schemas\":[\"%s\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":%s}}]}",
           SCIM_URN_PATCH, active ? "true" : "false");
  return scim(st, tenant, "PATCH", path, body, NULL);
}
static int delete_user(st_store *st, const char *tenant, const char *id) {
  char path[80];
  snprintf(path, sizeof path, "/Users/%s", id);
  return scim(st, tenant, "DELETE", path, NULL, NULL);
}

/* ---- codes ------------------------------------------------------------------------ */

typedef struct code {
  char text[ST_TOKEN_BUFSZ];
  uint8_t hash[32];
  auth_oauth_code c;
} code;

/* A code of tenant for user, CLIENT, REDIRECT, the RFC challenge, the
 * connector ("" = the whole tenant), signed in at signin_at, expiring at
 * expires. */
static void code_init(code *k, const char *tenant, const char *user_id, const char *connector, int64_t signin_at,
                      int64_t expires) {
  memset(k, 0, sizeof *k);
  if (st_token_new(AUTH_OAUTH_CODE_PREFIX, k->text, sizeof k->text) ||
      st_token_hash(k->text, strlen(k->text), k->hash))
    abort();
  snprintf(k->c.tenant, sizeof k->c.tenant, "%s", tenant);
  snprintf(k->c.client_id, sizeof k->c.client_id, "%s", CLIENT);
  snprintf(k->c.client_name, sizeof k->c.client_name, "Claude Code");
  snprintf(k->c.redirect_uri, sizeof k->c.redirect_uri, "%s", REDIRECT);
  snprintf(k->c.challenge, sizeof k->c.challenge, "%s", CHALLENGE);
  snprintf(k->c.connector, sizeof k->c.connector, "%s", connector);
  snprintf(k->c.user_id, sizeof k->c.user_id, "%s", user_id);
  k->c.signin_at = signin_at;
  k->c.expires = expires;
}

typedef struct code_put_job {
  const code *k;
  int64_t now;
} code_put_job;
static int code_put_fn(st_txn *txn, void *arg) {
  code_put_job *j = arg;
  return auth_oauth_code_put(txn, j->k->hash, &j->k->c, j->now);
}
static int code_put(st_store *st, const code *k, int64_t now) {
  code_put_job j = {k, now};
  return st_write_sync(st, code_put_fn, &j);
}

/* ---- issuing ------------------------------------------------------------------------ */

/* x prepared on "the loop": fresh family id and token texts with their
 * hashes, the test's lifetimes, at now. */
static void prep(auth_oauth_issue *x, const char *tenant, int64_t now) {
  memset(x, 0, sizeof *x);
  snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
  if (st_token_id_new(x->family) || st_token_new(AUTH_OAUTH_ACCESS_PREFIX, x->access, sizeof x->access) ||
      st_token_new(AUTH_OAUTH_REFRESH_PREFIX, x->refresh, sizeof x->refresh) ||
      st_token_hash(x->access, strlen(x->access), x->access_hash) ||
      st_token_hash(x->refresh, strlen(x->refresh), x->refresh_hash))
    abort();
  x->now = now;
  x->access_ttl = ACCESS_TTL;
  x->refresh_ttl = REFRESH_TTL;
  x->max_signin_age = SIGNIN_AGE;
  x->grace = GRACE;
}

/* Every exchange and refresh of this file asks the read-only check
 * (auth_oauth_exchange_check, auth_oauth_refresh_check: what the token
 * endpoint decides its rate limit on) first, in a read txn, and compares
 * it with what the job then did: 0 for a job that issued, the job's own
 * refusal for one that refused; a replayed code or rotated refresh token
 * acts (0) — or, for a code whose grant is gone already, is refused. The
 * last test asserts they never disagreed. */
static int g_compared, g_disagreed;
static void compare(const char *what, int check, int job, const auth_oauth_issue *x) {
  bool same;
  if (job == 0 && !x->reused) same = check == 0;
  else if (job == 0) same = check == 0 || (check == AUTH_EOAUTH_GRANT && !strcmp(what, "exchange"));
  else if (job == AUTH_EOAUTH_GRANT || job == AUTH_EOAUTH_SIGNIN) same = check == job;
  else return; /* a write failed: nothing a read could know */
  g_compared++;
  if (!same) {
    g_disagreed++;
    fprintf(stderr, "  %s: the check said %d, the job %d%s\n", what, check, job, x->reused ? " (reused)" : "");
  }
}

typedef struct exchange_job {
  const uint8_t *hash;
  const char *client, *redirect, *verifier;
  auth_oauth_issue *x;
} exchange_job;
static int exchange_fn(st_txn *txn, void *arg) {
  exchange_job *j = arg;
  return auth_oauth_exchange_code(txn, j->hash, j->client, j->redirect, j->verifier, j->x);
}
static int exchange_as(st_store *st, const code *k, const char *client, const char *redirect, const char *verifier,
                       auth_oauth_issue *x) {
  exchange_job j = {k->hash, client, redirect, verifier, x};
  st_txn *txn;
  int check = -999;
  if (st_read_begin(st, &txn) == 0) {
    check = auth_oauth_exchange_check(txn, k->hash, client, redirect, verifier, x);
    st_txn_end(txn);
  }
  int rc = st_write_sync(st, exchange_fn, &j);
  compare("exchange", check, rc, x);
  return rc;
}
/* The right inputs, prepared for the code's tenant at now. */
static int exchange(st_store *st, const code *k, int64_t now, auth_oauth_issue *x) {
  prep(x, k->c.tenant, now);
  return exchange_as(st, k, CLIENT, REDIRECT, VERIFIER, x);
}

typedef struct refresh_job {
  const uint8_t *hash;
  const char *client;
  auth_oauth_issue *x;
} refresh_job;
static int refresh_fn(st_txn *txn, void *arg) {
  refresh_job *j = arg;
  return auth_oauth_refresh(txn, j->hash, j->client, j->x);
}
/* The job j, compared with the check first (above). */
static int refresh_run(st_store *st, refresh_job *j) {
  st_txn *txn;
  int check = -999;
  if (st_read_begin(st, &txn) == 0) {
    check = auth_oauth_refresh_check(txn, j->hash, j->client, j->x);
    st_txn_end(txn);
  }
  int rc = st_write_sync(st, refresh_fn, j);
  compare("refresh", check, rc, j->x);
  return rc;
}
/* Refreshes with the refresh token text rt as client, prepared for tenant
 * at now. */
static int refresh_as(st_store *st, const char *tenant, const char *rt, const char *client, int64_t now,
                      auth_oauth_issue *x) {
  uint8_t h[32];
  if (st_token_hash(rt, strlen(rt), h)) return -999;
  prep(x, tenant, now);
  refresh_job j = {h, client, x};
  return refresh_run(st, &j);
}
static int refresh(st_store *st, const char *rt, int64_t now, auth_oauth_issue *x) {
  return refresh_as(st, "acme", rt, CLIENT, now, x);
}
/* The same with another max_signin_age (the operator changed it). */
static int refresh_aged(st_store *st, const char *rt, int64_t now, int64_t max_age, auth_oauth_issue *x) {
  uint8_t h[32];
  if (st_token_hash(rt, strlen(rt), h)) return -999;
  prep(x, "acme", now);
  x->max_signin_age = max_age;
  refresh_job j = {h, CLIENT, x};
  return refresh_run(st, &j);
}

/* A grant for user through a fresh code (connector, signed in at
 * signin_at) exchanged at now; 0 or the failing step's code. */
static int grant(st_store *st, const char *tenant, const char *user_id, const char *connector, int64_t signin_at,
                 int64_t now, auth_oauth_issue *x) {
  code k;
  code_init(&k, tenant, user_id, connector, signin_at, now + 60);
  int rc = code_put(st, &k, now);
  return rc ? rc : exchange(st, &k, now, x);
}

/* auth_oauth_verify of the token text in a read txn; user and family out
 * when given. */
static int verify_full(st_store *st, const char *tenant, const char *token, const char *connector, int64_t now,
                       char user_out[40], char fam_out[ST_TOKEN_ID_BUFSZ], int64_t *expires) {
  uint8_t h[32];
  char u[40], f[ST_TOKEN_ID_BUFSZ];
  if (st_token_hash(token, strlen(token), h)) return -999;
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_oauth_verify(txn, tenant, h, connector, now, user_out ? user_out : u, fam_out ? fam_out : f, expires);
  st_txn_end(txn);
  return rc;
}
static int verify(st_store *st, const char *token, const char *connector, int64_t now) {
  return verify_full(st, "acme", token, connector, now, NULL, NULL, NULL);
}

/* ---- revocation, grants, consent ------------------------------------------------------ */

typedef struct revoke_job {
  const char *tenant, *client, *family, *user;
  const uint8_t *hash;
  int op; /* 0 by token, 1 a family, 2 a user */
  int n;
} revoke_job;
static int revoke_fn(st_txn *txn, void *arg) {
  revoke_job *j = arg;
  switch (j->op) {
  case 0: return auth_oauth_revoke_token(txn, j->tenant, j->hash, j->client);
  case 1: return auth_oauth_family_revoke(txn, j->tenant, j->family);
  case 3: return auth_oauth_disconnect(txn, j->tenant, j->user, j->family);
  case 4: j->n = auth_oauth_disconnect_user(txn, j->tenant, j->user); return j->n < 0 ? j->n : 0;
  default: j->n = auth_oauth_revoke_user(txn, j->tenant, j->user); return j->n < 0 ? j->n : 0;
  }
}
static int revoke_token(st_store *st, const char *tenant, const char *token, const char *client) {
  uint8_t h[32];
  if (st_token_hash(token, strlen(token), h)) return -999;
  revoke_job j = {.tenant = tenant, .client = client, .hash = h, .op = 0};
  return st_write_sync(st, revoke_fn, &j);
}
static int revoke_family(st_store *st, const char *tenant, const char *family) {
  revoke_job j = {.tenant = tenant, .family = family, .op = 1};
  return st_write_sync(st, revoke_fn, &j);
}
/* How many grants auth_oauth_revoke_user revoked, or the job's error. */
static int revoke_user(st_store *st, const char *tenant, const char *user_id) {
  revoke_job j = {.tenant = tenant, .user = user_id, .op = 2, .n = -1};
  int rc = st_write_sync(st, revoke_fn, &j);
  return rc ? rc : j.n;
}

/* The user's grants (caller json_decref); NULL on an error. */
static json_t *grants(st_store *st, const char *tenant, const char *user_id) {
  st_txn *txn;
  json_t *a = NULL;
  if (st_read_begin(st, &txn)) return NULL;
  int rc = auth_oauth_grants(txn, tenant, user_id, &a);
  st_txn_end(txn);
  if (rc) {
    json_decref(a);
    return NULL;
  }
  return a;
}
static int ngrants(st_store *st, const char *tenant, const char *user_id) {
  json_t *a = grants(st, tenant, user_id);
  int n = a ? (int)json_array_size(a) : -1;
  json_decref(a);
  return n;
}

typedef struct consent_job {
  const char *tenant, *user, *client, *connector;
  int64_t now;
} consent_job;
static int consent_fn(st_txn *txn, void *arg) {
  consent_job *j = arg;
  return auth_oauth_consent_put(txn, j->tenant, j->user, j->client, j->connector, j->now);
}
/* consent for connector ("" the aggregated endpoint) */
static int consent_put_for(st_store *st, const char *tenant, const char *user_id, const char *client,
                           const char *connector) {
  consent_job j = {tenant, user_id, client, connector, T0};
  return st_write_sync(st, consent_fn, &j);
}
static int consent_get_for(st_store *st, const char *tenant, const char *user_id, const char *client,
                           const char *connector) {
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_oauth_consent_get(txn, tenant, user_id, client, connector);
  st_txn_end(txn);
  return rc;
}
static int consent_put(st_store *st, const char *tenant, const char *user_id, const char *client) {
  return consent_put_for(st, tenant, user_id, client, "");
}
static int consent_get(st_store *st, const char *tenant, const char *user_id, const char *client) {
  return consent_get_for(st, tenant, user_id, client, "");
}

/* ---- raw views of the store ------------------------------------------------------------- */

/* Keys of ST_DB_AUTH that belong to tenant's grants: "f", "F", "g", "a" +
 * tenant \0 ..., and "t" records naming the tenant. kinds limits which
 * ("fFgat"). */
static int oauth_keys(st_store *st, const char *tenant, const char *kinds) {
  st_txn *txn;
  st_cursor *c;
  if (st_read_begin(st, &txn)) return -1;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) {
    st_txn_end(txn);
    return -1;
  }
  size_t t = strlen(tenant);
  int n = 0;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *p = k.data;
    if (!strchr(kinds, p[0])) continue;
    if (strchr("fFgaK", p[0]) && k.len > t + 1 && !memcmp(p + 1, tenant, t) && p[1 + t] == 0) n++;
    if (p[0] == 't' && k.len == 33) {
      json_t *r = json_loadb(v.data, v.len, 0, NULL);
      const char *rt = json_string_value(json_object_get(r, "tenant"));
      if (rt && !strcmp(rt, tenant)) n++;
      json_decref(r);
    }
  }
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

/* The tokens ("g" keys) of a family. */
static int family_tokens(st_store *st, const char *tenant, const char *family) {
  char pre[128];
  int pn = snprintf(pre, sizeof pre, "g%s%c%s%c", tenant, 0, family, 0);
  st_txn *txn;
  st_cursor *c;
  if (st_read_begin(st, &txn)) return -1;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) {
    st_txn_end(txn);
    return -1;
  }
  int n = 0;
  st_val k;
  st_cursor_seek(c, pre, (size_t)pn, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

/* The stored expiry of a token ("t" record, raw); -1 when absent. */
static int64_t token_expires(st_store *st, const char *token) {
  uint8_t k[33];
  k[0] = 't';
  if (st_token_hash(token, strlen(token), k + 1)) return -1;
  st_txn *txn;
  st_val v;
  int64_t e = -1;
  if (st_read_begin(st, &txn)) return -1;
  if (st_get(txn, ST_DB_AUTH, k, sizeof k, &v) == 0) {
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (json_is_integer(json_object_get(r, "expires"))) e = json_integer_value(json_object_get(r, "expires"));
    json_decref(r);
  }
  st_txn_end(txn);
  return e;
}

/* Sealed secrets of tenant (ST_DB_SECRETS). */
static int tenant_secrets(st_store *st, const char *tenant) {
  uint8_t pre[128];
  int pn = st_secret_tenant_prefix(tenant, pre, sizeof pre);
  if (pn < 0) return pn;
  st_txn *txn;
  st_cursor *c;
  if (st_read_begin(st, &txn)) return -1;
  if (st_cursor_open(txn, ST_DB_SECRETS, &c)) {
    st_txn_end(txn);
    return -1;
  }
  int n = 0;
  st_cursor_seek(c, pre, (size_t)pn, NULL, 0);
  while (st_cursor_next(c, NULL, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

/* The family's sealed successor pair as text (caller frees), or NULL with
 * *rc the store's answer. */
static char *successor(st_store *st, const char *tenant, const char *family, int *rc) {
  st_txn *txn;
  char *s = NULL, *out = NULL;
  *rc = st_read_begin(st, &txn);
  if (*rc) return NULL;
  st_aad aad = {tenant, AUTH_OAUTH_SUCCESSOR_KIND, family};
  *rc = st_secret_get_str(txn, &aad, &s);
  st_txn_end(txn);
  if (!*rc) out = strdup(s);
  st_secret_str_free(s);
  return out;
}

/* Whether any key or value of ST_DB_AUTH or ST_DB_SECRETS holds the bytes
 * of s (a token text must never be stored in the clear). */
static bool stored_anywhere(st_store *st, const char *s) {
  size_t sl = strlen(s);
  bool found = false;
  st_txn *txn;
  if (st_read_begin(st, &txn)) return true;
  st_db dbs[2] = {ST_DB_AUTH, ST_DB_SECRETS};
  for (int d = 0; d < 2 && !found; d++) {
    st_cursor *c;
    if (st_cursor_open(txn, dbs[d], &c)) {
      found = true;
      break;
    }
    st_val k, v;
    while (!found && st_cursor_next(c, &k, &v) == 0)
      found = (k.len >= sl && memmem(k.data, k.len, s, sl)) || (v.len >= sl && memmem(v.data, v.len, s, sl));
    st_cursor_close(c);
  }
  st_txn_end(txn);
  return found;
}

typedef struct raw_put {
  const void *k, *v;
  size_t kl, vl;
} raw_put;
static int raw_put_fn(st_txn *txn, void *arg) {
  raw_put *r = arg;
  return st_put(txn, ST_DB_AUTH, r->k, r->kl, r->v, r->vl, 0);
}
/* Puts "f" tenant \0 family → value, bypassing the module. */
static int raw_grant(st_store *st, const char *tenant, const char *family, const char *value) {
  char k[600];
  int kn = snprintf(k, sizeof k, "f%s%c%s", tenant, 0, family);
  raw_put r = {k, value, (size_t)kn, strlen(value)};
  return st_write_sync(st, raw_put_fn, &r);
}

static int g_reports;
static char g_report[300];
static void count_report(void *ctx, const char *area, const char *msg) {
  (void)ctx;
  g_reports++;
  snprintf(g_report, sizeof g_report, "%s: %s", area, msg);
}

/* ---- code exchange --------------------------------------------------------------------- */

TEST(token_hash_shapes) {
  char at[ST_TOKEN_BUFSZ], rt[ST_TOKEN_BUFSZ];
  uint8_t h[32], want[32];
  CHECK_INT(st_token_new(AUTH_OAUTH_ACCESS_PREFIX, at, sizeof at), 0);
  CHECK_INT(st_token_new(AUTH_OAUTH_REFRESH_PREFIX, rt, sizeof rt), 0);
  CHECK_INT(auth_oauth_token_hash(at, AUTH_OAUTH_ACCESS_PREFIX, h), 0);
  CHECK_INT(st_token_hash(at, strlen(at), want), 0);
  CHECK(memcmp(h, want, 32) == 0);
  CHECK_INT(auth_oauth_token_hash(rt, AUTH_OAUTH_REFRESH_PREFIX, h), 0);
  CHECK_INT(st_token_hash(rt, strlen(rt), want), 0);
  CHECK(memcmp(h, want, 32) == 0);
  /* the other kind's prefix, a cut or grown body, a bad character, NULL */
  CHECK_INT(auth_oauth_token_hash(rt, AUTH_OAUTH_ACCESS_PREFIX, h), ST_ENOTFOUND);
  CHECK_INT(auth_oauth_token_hash(at, AUTH_OAUTH_REFRESH_PREFIX, h), ST_ENOTFOUND);
  char bad[ST_TOKEN_BUFSZ + 2];
  snprintf(bad, sizeof bad, "%.*s", (int)strlen(at) - 1, at);
  CHECK_INT(auth_oauth_token_hash(bad, AUTH_OAUTH_ACCESS_PREFIX, h), ST_ENOTFOUND);
  snprintf(bad, sizeof bad, "%sA", at);
  CHECK_INT(auth_oauth_token_hash(bad, AUTH_OAUTH_ACCESS_PREFIX, h), ST_ENOTFOUND);
  snprintf(bad, sizeof bad, "%s", at);
  bad[10] = '+';
  CHECK_INT(auth_oauth_token_hash(bad, AUTH_OAUTH_ACCESS_PREFIX, h), ST_ENOTFOUND);
  CHECK_INT(auth_oauth_token_hash(NULL, AUTH_OAUTH_ACCESS_PREFIX, h), ST_ENOTFOUND);
}

TEST(code_exchange_issues_a_grant) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  code k;
  code_init(&k, "acme", alice, "github", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  auth_oauth_issue x;
  prep(&x, "acme", T0 + 5);
  char family[ST_TOKEN_ID_BUFSZ];
  snprintf(family, sizeof family, "%s", x.family);
  CHECK_INT(exchange_as(st, &k, CLIENT, REDIRECT, VERIFIER, &x), 0);
  CHECK(!x.reused && !x.replayed);
  CHECK_STR(x.family_out, family);
  CHECK_STR(x.user_id, alice);
  CHECK_STR(x.client_id, CLIENT);
  CHECK_STR(x.connector, "github");
  /* signed in 100 s ago: the access token lives its full TTL */
  CHECK_INT(x.access_expires, T0 + 5 + ACCESS_TTL);
  char u[40], f[ST_TOKEN_ID_BUFSZ];
  int64_t exp = 0;
  CHECK_INT(verify_full(st, "acme", x.access, "github", T0 + 6, u, f, &exp), 0);
  CHECK_STR(u, alice);
  CHECK_STR(f, family);
  CHECK_INT(exp, T0 + 5 + ACCESS_TTL);
  /* until it expires, and only the access token */
  CHECK_INT(verify(st, x.access, "github", T0 + 5 + ACCESS_TTL - 1), 0);
  CHECK_INT(verify(st, x.access, "github", T0 + 5 + ACCESS_TTL), ST_ENOTFOUND);
  CHECK_INT(verify(st, x.refresh, "github", T0 + 6), ST_ENOTFOUND);
  CHECK_INT(verify_full(st, "beta", x.access, "github", T0 + 6, NULL, NULL, NULL), ST_ENOTFOUND);
  CHECK_INT(family_tokens(st, "acme", family), 2);
  CHECK_INT(token_expires(st, x.access), T0 + 5 + ACCESS_TTL);
  CHECK_INT(token_expires(st, x.refresh), T0 - 100 + SIGNIN_AGE); /* the sign-in bound, before the TTL */
  /* the grant is listed */
  json_t *a = grants(st, "acme", alice);
  CHECK(a && json_array_size(a) == 1);
  json_t *g = json_array_get(a, 0);
  CHECK_STR(json_string_value(json_object_get(g, "id")), family);
  CHECK_STR(json_string_value(json_object_get(g, "client_id")), CLIENT);
  CHECK_STR(json_string_value(json_object_get(g, "client_name")), "Claude Code");
  CHECK_STR(json_string_value(json_object_get(g, "resource")), "github");
  CHECK_INT(json_integer_value(json_object_get(g, "created")), T0 + 5);
  CHECK_INT(json_integer_value(json_object_get(g, "last_used")), T0 + 5);
  CHECK_INT(json_integer_value(json_object_get(g, "signin_at")), T0 - 100);
  json_decref(a);
  /* tokens and the code are stored as hashes only */
  CHECK(!stored_anywhere(st, x.access + strlen(AUTH_OAUTH_ACCESS_PREFIX)));
  CHECK(!stored_anywhere(st, x.refresh + strlen(AUTH_OAUTH_REFRESH_PREFIX)));
  CHECK(!stored_anywhere(st, k.text + strlen(AUTH_OAUTH_CODE_PREFIX)));
  CHECK_INT(tenant_secrets(st, "acme"), 0);

  /* a sign-in close to its age bound: the access token ends with it, and
   * so does the refresh token */
  code k2;
  code_init(&k2, "acme", alice, "", T0 - SIGNIN_AGE + 600, T0 + 60);
  CHECK_INT(code_put(st, &k2, T0), 0);
  auth_oauth_issue y;
  CHECK_INT(exchange(st, &k2, T0, &y), 0);
  CHECK_INT(y.access_expires, T0 + 600);
  CHECK_STR(y.connector, "");
  CHECK_INT(verify_full(st, "acme", y.access, NULL, T0 + 1, NULL, NULL, &exp), 0);
  CHECK_INT(exp, T0 + 600);
  CHECK_INT(verify(st, y.access, NULL, T0 + 600), ST_ENOTFOUND);
  CHECK_INT(token_expires(st, y.refresh), T0 + 600);
  CHECK_INT(ngrants(st, "acme", alice), 2);
  auth_oauth_issue z;
  CHECK_INT(refresh(st, y.refresh, T0 + 600, &z), AUTH_EOAUTH_SIGNIN); /* "sign in again" */
  CHECK_INT(refresh(st, y.refresh, T0 + 599, &z), 0);
  CHECK_INT(z.access_expires, T0 + 600);
  CHECK_INT(token_expires(st, z.refresh), T0 + 600);
  st_close(st);
  tmp_cleanup();
}

/* Exchanges k with the given inputs at now: 1 when refused with `want`
 * (refused: AUTH_EOAUTH_GRANT), nothing issued and nothing flagged. */
static int refused_with(st_store *st, const code *k, const char *tenant, const char *client, const char *redirect,
                        const char *verifier, int64_t now, int want) {
  auth_oauth_issue x;
  prep(&x, tenant, now);
  int rc = exchange_as(st, k, client, redirect, verifier, &x);
  int ok = rc == want && !x.reused && !x.replayed && !x.family_out[0] &&
           verify_full(st, tenant, x.access, NULL, now, NULL, NULL, NULL) == ST_ENOTFOUND &&
           oauth_keys(st, tenant, "fFgt") == 0;
  if (!ok) fprintf(stderr, "  refused: rc %d, reused %d, family_out \"%s\"\n", rc, x.reused, x.family_out);
  return ok;
}
static int refused(st_store *st, const code *k, const char *tenant, const char *client, const char *redirect,
                   const char *verifier, int64_t now) {
  return refused_with(st, k, tenant, client, redirect, verifier, now, AUTH_EOAUTH_GRANT);
}

TEST(code_exchange_refusals) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], ina[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "ina@acme.com", true, ina), 201);
  code k;
  code_init(&k, "acme", alice, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  /* another client, another redirect URI (the same loopback host on another
   * port, a trailing slash, another path), a wrong or missing verifier, the
   * challenge itself as verifier, another tenant's endpoint */
  CHECK(refused(st, &k, "acme", CLIENT2, REDIRECT, VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT "/", REDIRECT, VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, "http://127.0.0.1:49153/callback", VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, "http://127.0.0.1/callback", VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, "http://localhost:49152/callback", VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT "/", VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, "", VERIFIER, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK", T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, CHALLENGE, T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, "", T0 + 1));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, NULL, T0 + 1));
  CHECK(refused(st, &k, "beta", CLIENT, REDIRECT, VERIFIER, T0 + 1));
  /* expired */
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, VERIFIER, T0 + 60));
  CHECK(refused(st, &k, "acme", CLIENT, REDIRECT, VERIFIER, T0 + 3600));
  /* an unknown code */
  code u;
  code_init(&u, "acme", alice, "", T0 - 100, T0 + 60);
  CHECK(refused(st, &u, "acme", CLIENT, REDIRECT, VERIFIER, T0 + 1));
  /* a user that is gone */
  code kd;
  code_init(&kd, "acme", "00000000-0000-4000-8000-000000000000", "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &kd, T0), 0);
  CHECK(refused(st, &kd, "acme", CLIENT, REDIRECT, VERIFIER, T0 + 1));
  /* none of that spent the code */
  auth_oauth_issue x;
  CHECK_INT(exchange(st, &k, T0 + 59, &x), 0);
  CHECK_INT(verify(st, x.access, NULL, T0 + 59), 0);

  /* an inactive user: refused, and the deactivation deleted the code:
   * active again, it stays refused (reactivation revives nothing) */
  code ki;
  code_init(&ki, "acme", ina, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &ki, T0), 0);
  CHECK_INT(set_active(st, "acme", ina, false), 200);
  prep(&x, "acme", T0 + 1);
  CHECK_INT(exchange_as(st, &ki, CLIENT, REDIRECT, VERIFIER, &x), AUTH_EOAUTH_GRANT);
  CHECK(!x.reused);
  CHECK_INT(ngrants(st, "acme", ina), 0);
  CHECK_INT(set_active(st, "acme", ina, true), 200);
  CHECK_INT(exchange(st, &ki, T0 + 2, &x), AUTH_EOAUTH_GRANT);
  CHECK_INT(ngrants(st, "acme", ina), 0);
  code_init(&ki, "acme", ina, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &ki, T0 + 2), 0);
  CHECK_INT(exchange(st, &ki, T0 + 3, &x), 0);
  CHECK_STR(x.user_id, ina);
  CHECK_INT(ngrants(st, "acme", ina), 1);
  /* a tenant that is no longer active */
  char gus[40];
  CHECK_INT(user(st, "gamma", "gus@gamma.com", true, gus), 201);
  code kg;
  code_init(&kg, "gamma", gus, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &kg, T0), 0);
  CHECK_INT(tenant_op(st, "gamma", 1), 0);
  CHECK(refused(st, &kg, "gamma", CLIENT, REDIRECT, VERIFIER, T0 + 1));

  /* a sign-in older than max_signin_age: refused from its bound on, issued
   * (up to the bound) a second before it */
  code ko;
  code_init(&ko, "beta", "", "", T0 - SIGNIN_AGE, T0 + 60);
  char bea[40];
  CHECK_INT(user(st, "beta", "bea@beta.com", true, bea), 201);
  snprintf(ko.c.user_id, sizeof ko.c.user_id, "%s", bea);
  CHECK_INT(code_put(st, &ko, T0 - 10), 0);
  CHECK(refused_with(st, &ko, "beta", CLIENT, REDIRECT, VERIFIER, T0, AUTH_EOAUTH_SIGNIN));
  CHECK(refused_with(st, &ko, "beta", CLIENT, REDIRECT, VERIFIER, T0 + 30, AUTH_EOAUTH_SIGNIN));
  CHECK_INT(exchange(st, &ko, T0 - 1, &x), 0);
  CHECK_INT(x.access_expires, T0);
  CHECK_INT(verify_full(st, "beta", x.access, NULL, T0 - 1, NULL, NULL, NULL), 0);
  CHECK_INT(verify_full(st, "beta", x.access, NULL, T0, NULL, NULL, NULL), ST_ENOTFOUND);
  st_close(st);
  tmp_cleanup();
}

TEST(code_replay_revokes_what_it_issued) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  code k;
  code_init(&k, "acme", alice, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  auth_oauth_issue x, y;
  CHECK_INT(exchange(st, &k, T0 + 1, &x), 0);
  CHECK_INT(verify(st, x.access, NULL, T0 + 2), 0);
  CHECK_INT(g_nev, 0);
  /* presented on another tenant's endpoint: not this tenant's code, and
   * nothing revoked */
  prep(&y, "beta", T0 + 2);
  CHECK_INT(exchange_as(st, &k, CLIENT, REDIRECT, VERIFIER, &y), AUTH_EOAUTH_GRANT);
  CHECK(!y.reused);
  CHECK_INT(verify(st, x.access, NULL, T0 + 2), 0);
  /* the second use: nothing issued, the first grant revoked, and that
   * committed although the answer is invalid_grant */
  prep(&y, "acme", T0 + 3);
  CHECK_INT(exchange_as(st, &k, CLIENT, REDIRECT, VERIFIER, &y), 0);
  CHECK(y.reused);
  CHECK(!y.replayed);
  CHECK_INT(verify(st, y.access, NULL, T0 + 3), ST_ENOTFOUND);
  CHECK_INT(family_tokens(st, "acme", y.family), 0);
  CHECK_INT(verify(st, x.access, NULL, T0 + 3), ST_ENOTFOUND);
  auth_oauth_issue z;
  CHECK_INT(refresh(st, x.refresh, T0 + 3, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  CHECK_INT(family_tokens(st, "acme", x.family_out), 0);
  CHECK_INT(oauth_keys(st, "acme", "fFgt"), 0);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(g_nev, 1);
  CHECK_INT(events_for("acme", x.family_out), 1);
  /* a third use, past the code's expiry (the used code is kept a while): still
   * a replay, nothing more to revoke */
  prep(&y, "acme", T0 + 100);
  CHECK_INT(exchange_as(st, &k, CLIENT2, "http://x/", "", &y), 0);
  CHECK(y.reused);
  CHECK_INT(g_nev, 1);
  st_close(st);
  tmp_cleanup();
}

/* Whether the code record ("k" + hash) is in the store. */
static bool code_stored(st_store *st, const code *k) {
  uint8_t key[33];
  key[0] = 'k';
  memcpy(key + 1, k->hash, 32);
  st_txn *txn;
  st_val v;
  if (st_read_begin(st, &txn)) return true;
  int rc = st_get(txn, ST_DB_AUTH, key, sizeof key, &v);
  st_txn_end(txn);
  return rc == 0;
}

TEST(code_put_sweeps_expired_codes) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  code a, b, c;
  code_init(&a, "acme", alice, "", T0 - 100, T0 + 60);
  code_init(&b, "acme", alice, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &a, T0), 0);
  CHECK_INT(code_put(st, &b, T0), 0);
  auth_oauth_issue x;
  CHECK_INT(exchange(st, &b, T0 + 1, &x), 0);
  /* a later code at the used one's expiry + 59: both are kept */
  code_init(&c, "acme", alice, "", T0 - 100, T0 + 300);
  CHECK_INT(code_put(st, &c, T0 + 119), 0);
  CHECK(code_stored(st, &a));
  CHECK(code_stored(st, &b));
  prep(&x, "acme", T0 + 119);
  CHECK_INT(exchange_as(st, &b, CLIENT, REDIRECT, VERIFIER, &x), 0);
  CHECK(x.reused);
  /* and at + 60 both go: a replay is then an unknown code */
  code_init(&c, "acme", alice, "", T0 - 100, T0 + 300);
  CHECK_INT(code_put(st, &c, T0 + 120), 0);
  prep(&x, "acme", T0 + 121);
  CHECK_INT(exchange_as(st, &b, CLIENT, REDIRECT, VERIFIER, &x), AUTH_EOAUTH_GRANT);
  CHECK(!x.reused);
  CHECK(!code_stored(st, &a));
  CHECK(!code_stored(st, &b));
  /* the fresh ones are kept; the user index follows the codes */
  CHECK(code_stored(st, &c));
  CHECK_INT(oauth_keys(st, "acme", "K"), 2);
  CHECK_INT(exchange(st, &c, T0 + 121, &x), 0);
  st_close(st);
  tmp_cleanup();
}

static int delete_tenant(st_store *st, const char *tenant, int limit);

/* A deactivation leaves no code of the user behind (issue 18: every
 * credential the gateway issued goes in the SCIM transaction), used or
 * not; another user's codes stay; a tenant's purge takes its codes. */
TEST(codes_go_with_their_user) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  code a, b, c;
  code_init(&a, "acme", alice, "", T0 - 100, T0 + 60);
  code_init(&b, "acme", alice, "github", T0 - 100, T0 + 60);
  code_init(&c, "acme", bob, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &a, T0), 0);
  CHECK_INT(code_put(st, &b, T0), 0);
  CHECK_INT(code_put(st, &c, T0), 0);
  auth_oauth_issue x;
  CHECK_INT(exchange(st, &b, T0 + 1, &x), 0); /* used: kept to recognise a replay */
  CHECK_INT(oauth_keys(st, "acme", "K"), 3);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK(!code_stored(st, &a));
  CHECK(!code_stored(st, &b));
  CHECK(code_stored(st, &c));
  CHECK_INT(oauth_keys(st, "acme", "K"), 1);
  /* reactivated: the code she had is no code */
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(exchange(st, &a, T0 + 2, &x), AUTH_EOAUTH_GRANT);
  /* the tenant's purge takes bob's */
  CHECK(delete_tenant(st, "acme", 1) > 0);
  CHECK(!code_stored(st, &c));
  CHECK_INT(oauth_keys(st, "acme", "K"), 0);
  st_close(st);
  tmp_cleanup();
}

/* ---- refresh ------------------------------------------------------------------------------ */

TEST(refresh_rotation_grace_and_reuse) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g1, r2, rp, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g1), 0);
  const char *fam = g1.family_out;
  /* rotation: a new pair of the same family */
  CHECK_INT(refresh(st, g1.refresh, T0 + 1000, &r2), 0);
  CHECK(!r2.replayed && !r2.reused);
  CHECK_STR(r2.family_out, fam);
  CHECK_STR(r2.user_id, alice);
  CHECK_STR(r2.client_id, CLIENT);
  CHECK_STR(r2.connector, "");
  CHECK_INT(r2.access_expires, T0 + 1000 + ACCESS_TTL);
  char f[ST_TOKEN_ID_BUFSZ];
  int64_t exp;
  CHECK_INT(verify_full(st, "acme", r2.access, NULL, T0 + 1001, NULL, f, &exp), 0);
  CHECK_STR(f, fam);
  CHECK_INT(exp, T0 + 1000 + ACCESS_TTL);
  /* the old access token lives to its own expiry */
  CHECK_INT(verify(st, g1.access, NULL, T0 + ACCESS_TTL - 1), 0);
  CHECK_INT(verify(st, g1.access, NULL, T0 + ACCESS_TTL), ST_ENOTFOUND);
  CHECK_INT(family_tokens(st, "acme", fam), 4);
  json_t *a = grants(st, "acme", alice);
  CHECK(a && json_array_size(a) == 1);
  CHECK_INT(json_integer_value(json_object_get(json_array_get(a, 0), "last_used")), T0 + 1000);
  CHECK_INT(json_integer_value(json_object_get(json_array_get(a, 0), "created")), T0);
  json_decref(a);

  /* the same old refresh token again within grace (another process of the
   * client): the SAME successor pair, nothing new issued */
  CHECK_INT(refresh(st, g1.refresh, T0 + 1000 + GRACE - 1, &rp), 0);
  CHECK(rp.replayed);
  CHECK(!rp.reused);
  CHECK_STR(rp.access, r2.access);
  CHECK_STR(rp.refresh, r2.refresh);
  CHECK_INT(rp.access_expires, r2.access_expires);
  CHECK_STR(rp.family_out, fam);
  CHECK_STR(rp.user_id, alice);
  CHECK_STR(rp.client_id, CLIENT);
  CHECK_INT(family_tokens(st, "acme", fam), 4);
  CHECK_INT(g_nev, 0);
  /* ... but not for another client or on another tenant's endpoint */
  CHECK_INT(refresh_as(st, "acme", g1.refresh, CLIENT2, T0 + 1001, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.replayed && !z.reused);
  CHECK_INT(refresh_as(st, "beta", g1.refresh, CLIENT, T0 + 1001, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.replayed && !z.reused);

  /* after the window: a stolen token came back; the whole family goes */
  CHECK_INT(refresh(st, g1.refresh, T0 + 1000 + GRACE, &z), 0);
  CHECK(z.reused);
  CHECK(!z.replayed);
  CHECK_INT(verify(st, z.access, NULL, T0 + 1000 + GRACE), ST_ENOTFOUND);
  CHECK_INT(verify(st, g1.access, NULL, T0 + 1000 + GRACE), ST_ENOTFOUND);
  CHECK_INT(verify(st, r2.access, NULL, T0 + 1000 + GRACE), ST_ENOTFOUND);
  CHECK_INT(refresh(st, r2.refresh, T0 + 1000 + GRACE + 1, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  CHECK_INT(family_tokens(st, "acme", fam), 0);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(oauth_keys(st, "acme", "fFgt"), 0);
  CHECK_INT(g_nev, 1);
  CHECK_INT(events_for("acme", fam), 1);
  st_close(st);
  tmp_cleanup();
}

/* The grace window is kept to the millisecond: rotated at 0.999 s into a
 * second with 1,500 ms of grace, the client's second refresh 11 ms later
 * (across the second's edge) gets the same pair. Kept in whole seconds
 * (grace 1 s from 1,500 ms) it was taken for a stolen token and the grant
 * revoked; past the 1,500 ms it is. */
static int refresh_ms(st_store *st, const char *rt, int64_t now_ms, int64_t grace_ms, auth_oauth_issue *x) {
  uint8_t h[32];
  if (st_token_hash(rt, strlen(rt), h)) return -999;
  prep(x, "acme", now_ms / 1000);
  x->now_ms = now_ms;
  x->grace = grace_ms / 1000;
  x->grace_ms = grace_ms;
  refresh_job j = {h, CLIENT, x};
  return refresh_run(st, &j);
}

TEST(refresh_grace_in_milliseconds) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g1, r2, rp, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g1), 0);
  int64_t rot = (T0 + 10) * 1000 + 999;
  CHECK_INT(refresh_ms(st, g1.refresh, rot, 1500, &r2), 0);
  CHECK(!r2.replayed && !r2.reused);
  CHECK_INT(refresh_ms(st, g1.refresh, rot + 11, 1500, &rp), 0); /* the next second */
  CHECK(rp.replayed);
  CHECK(!rp.reused);
  CHECK_STR(rp.refresh, r2.refresh);
  CHECK_INT(refresh_ms(st, g1.refresh, rot + 1499, 1500, &rp), 0);
  CHECK(rp.replayed);
  /* a build that keeps only seconds still reads the window (rounded up) */
  CHECK_INT(refresh(st, g1.refresh, (rot + 1499) / 1000, &rp), 0);
  CHECK(rp.replayed);
  CHECK_INT(refresh_ms(st, g1.refresh, rot + 1500, 1500, &z), 0);
  CHECK(z.reused);
  CHECK(!z.replayed);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  st_close(st);
  tmp_cleanup();
}

/* A writer job may run more than once (store.h: its batch failed, or it
 * is re-run at the head of a fresh one), against the store as it was: it
 * must not change its inputs. A replay wrote the successor pair over the
 * drawn token texts; when the run was rolled back together with the
 * rotation it had replayed, the job's next run rotated the token itself and
 * answered with those old texts while it stored the hashes of the drawn
 * ones: the client got a pair that did not work, and that broken pair was
 * sealed for the grace window. */
typedef struct rerun_job {
  refresh_job first, second;
} rerun_job;
static int rotate_replay_abort_fn(st_txn *txn, void *arg) {
  rerun_job *j = arg;
  if (refresh_fn(txn, &j->first) || !j->first.x->family_out[0] || j->first.x->replayed) return -998;
  if (refresh_fn(txn, &j->second) || !j->second.x->replayed) return -997;
  return -1; /* rolled back: neither happened */
}

TEST(refresh_job_runs_again_alike) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g, x1, x2;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  uint8_t h[32];
  CHECK_INT(st_token_hash(g.refresh, strlen(g.refresh), h), 0);
  prep(&x1, "acme", T0 + 100);
  prep(&x2, "acme", T0 + 100);
  rerun_job j = {{h, CLIENT, &x1}, {h, CLIENT, &x2}};
  /* a batch where another job rotated the token and this one replayed it,
   * rolled back */
  CHECK_INT(st_write_sync(st, rotate_replay_abort_fn, &j), -1);
  CHECK(x2.replayed);
  CHECK_INT(verify(st, x1.access, NULL, T0 + 101), ST_ENOTFOUND);
  /* this job again, alone (its flags reset, as the token endpoint's job
   * does): it rotates, and answers with what it stored */
  x2.replayed = x2.reused = false;
  CHECK_INT(st_write_sync(st, refresh_fn, &j.second), 0);
  CHECK(!x2.replayed && !x2.reused);
  CHECK_INT(verify(st, x2.access, NULL, T0 + 101), 0);
  auth_oauth_issue n;
  CHECK_INT(refresh(st, x2.refresh, T0 + 102, &n), 0);
  CHECK(!n.replayed && !n.reused);
  CHECK_INT(verify(st, n.access, NULL, T0 + 103), 0);
  st_close(st);
  tmp_cleanup();
}

/* A person holds at most AUTH_OAUTH_USER_GRANTS_MAX grants. Each
 * authorization makes a new one and nothing ever removed an old one (a
 * grant past its sign-in age stays until its person goes): an employee
 * whose browser is signed in gets a code without a click for a client
 * allowed before, so a script of theirs made 60 grants a minute (the
 * authorize rate), every one a record kept for good, listed whole on their
 * page, and all revoked in the one write transaction of their deactivation.
 * The least recently used goes when the cap is passed. */
TEST(a_person_holds_at_most_max_grants) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  enum { N = AUTH_OAUTH_USER_GRANTS_MAX };
  static auth_oauth_issue g[N + 3];
  auth_oauth_issue b, r;
  CHECK_INT(grant(st, "acme", bob, "", T0 - 100, T0, &b), 0);
  /* and a grant of hers whose record cannot be read: it goes first, bare,
   * and never stops an exchange */
  CHECK_INT(raw_grant(st, "acme", "broken0000000000", "not json"), 0);
  char ik[200];
  int ikn = snprintf(ik, sizeof ik, "Facme%c%s%cbroken0000000000", 0, alice, 0);
  raw_put ip = {ik, "", (size_t)ikn, 0};
  CHECK_INT(st_write_sync(st, raw_put_fn, &ip), 0);
  for (int i = 0; i < N; i++) CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0 + i, &g[i]), 0);
  CHECK_INT(ngrants(st, "acme", alice), N);
  CHECK_INT(oauth_keys(st, "acme", "f"), N + 1); /* hers and bob's: the broken one went */
  CHECK_INT(g_nev, 0);
  /* the oldest is used (refreshed) now: the next least recently used goes */
  CHECK_INT(refresh(st, g[0].refresh, T0 + N, &r), 0);
  for (int i = N; i < N + 3; i++) CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0 + N + i, &g[i]), 0);
  CHECK_INT(ngrants(st, "acme", alice), N);
  CHECK_INT(g_nev, 3);
  for (int i = 1; i <= 3; i++) {
    CHECK_INT(events_for("acme", g[i].family_out), 1);
    CHECK_INT(verify(st, g[i].access, NULL, T0 + 2 * N + 3), ST_ENOTFOUND);
  }
  CHECK_INT(verify(st, r.access, NULL, T0 + 2 * N + 3), 0);
  CHECK_INT(verify(st, g[4].access, NULL, T0 + 2 * N + 3), 0);
  CHECK_INT(verify(st, g[N + 2].access, NULL, T0 + 2 * N + 3), 0);
  /* another person's grants are not counted, nor touched */
  CHECK_INT(ngrants(st, "acme", bob), 1);
  CHECK_INT(verify(st, b.access, NULL, T0 + 2 * N + 3), 0);
  st_close(st);
  tmp_cleanup();
}

/* A person holds at most AUTH_OAUTH_USER_CONSENTS_MAX consents (one per
 * client: document URLs are anyone's to make up): past it the least
 * recently used go in the same write, never another person's. */
static int nconsents(st_store *st, const char *tenant, const char *user_id) {
  char pre[200];
  int pn = snprintf(pre, sizeof pre, "a%s%c%s%c", tenant, 0, user_id, 0);
  st_txn *txn;
  st_cursor *c;
  st_val k;
  int n = 0;
  if (st_read_begin(st, &txn) || st_cursor_open(txn, ST_DB_AUTH, &c)) return -1;
  st_cursor_seek(c, pre, (size_t)pn, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

typedef struct use_job {
  const char *user, *client;
  int64_t now;
} use_job;
static int use_fn(st_txn *txn, void *arg) {
  use_job *j = arg;
  return auth_oauth_consent_use(txn, "acme", j->user, j->client, j->now);
}

TEST(a_person_holds_at_most_max_consents) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40], id[80];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  enum { N = AUTH_OAUTH_USER_CONSENTS_MAX };
  consent_job j = {"acme", bob, "https://c.example/bob.json", "", T0};
  CHECK_INT(st_write_sync(st, consent_fn, &j), 0);
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "https://c.example/%03d.json", i);
    consent_job a = {"acme", alice, id, "", T0 + i};
    CHECK_INT(st_write_sync(st, consent_fn, &a), 0);
  }
  CHECK_INT(nconsents(st, "acme", alice), N);
  /* the oldest is given again (another resource): used now, it stays */
  consent_job again = {"acme", alice, "https://c.example/000.json", "docs", T0 + N};
  CHECK_INT(st_write_sync(st, consent_fn, &again), 0);
  for (int i = N; i < N + 3; i++) {
    snprintf(id, sizeof id, "https://c.example/%03d.json", i);
    consent_job a = {"acme", alice, id, "", T0 + N + i};
    CHECK_INT(st_write_sync(st, consent_fn, &a), 0);
  }
  CHECK_INT(nconsents(st, "acme", alice), N);
  CHECK_INT(consent_get_for(st, "acme", alice, "https://c.example/000.json", ""), 0);
  for (int i = 1; i <= 3; i++) {
    snprintf(id, sizeof id, "https://c.example/%03d.json", i);
    CHECK_INT(consent_get_for(st, "acme", alice, id, ""), ST_ENOTFOUND);
  }
  CHECK_INT(consent_get_for(st, "acme", alice, "https://c.example/004.json", ""), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, "https://c.example/052.json", ""), 0);
  /* a consent relied on (a code without asking) is used too: 005 goes, not 004 */
  use_job u = {alice, "https://c.example/004.json", T0 + 3 * N};
  CHECK_INT(st_write_sync(st, use_fn, &u), 0);
  use_job none = {alice, "https://c.example/nope.json", T0 + 3 * N};
  CHECK_INT(st_write_sync(st, use_fn, &none), 0);
  consent_job more = {"acme", alice, "https://c.example/999.json", "", T0 + 3 * N + 1};
  CHECK_INT(st_write_sync(st, consent_fn, &more), 0);
  CHECK_INT(nconsents(st, "acme", alice), N);
  CHECK_INT(consent_get_for(st, "acme", alice, "https://c.example/004.json", ""), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, "https://c.example/005.json", ""), ST_ENOTFOUND);
  /* another person's consents are not counted, nor touched */
  CHECK_INT(nconsents(st, "acme", bob), 1);
  st_close(st);
  tmp_cleanup();
}

TEST(refresh_refusals) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  /* another client, another tenant's endpoint, an access token, an unknown
   * token: refused, and nothing changes */
  CHECK_INT(refresh_as(st, "acme", g.refresh, CLIENT2, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused && !z.replayed);
  CHECK_INT(refresh_as(st, "beta", g.refresh, CLIENT, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(refresh(st, g.access, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  char unknown[ST_TOKEN_BUFSZ];
  CHECK_INT(st_token_new(AUTH_OAUTH_REFRESH_PREFIX, unknown, sizeof unknown), 0);
  CHECK_INT(refresh(st, unknown, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(family_tokens(st, "acme", g.family_out), 2);
  CHECK_INT(verify(st, g.access, NULL, T0 + 10), 0);
  CHECK_INT(verify(st, z.access, NULL, T0 + 10), ST_ENOTFOUND);
  /* the token was not rotated by any of that: a plain rotation follows */
  CHECK_INT(refresh(st, g.refresh, T0 + 20, &z), 0);
  CHECK(!z.replayed && !z.reused);
  CHECK_INT(verify(st, z.access, NULL, T0 + 21), 0);

  /* an expired refresh token */
  auth_oauth_issue e;
  code k;
  code_init(&k, "acme", alice, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  prep(&e, "acme", T0);
  e.refresh_ttl = 7200;
  CHECK_INT(exchange_as(st, &k, CLIENT, REDIRECT, VERIFIER, &e), 0);
  CHECK_INT(refresh(st, e.refresh, T0 + 7200, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  CHECK_INT(refresh(st, e.refresh, T0 + 7199, &z), 0);
  /* the rotation swept the grant's expired access token; the rotated
   * refresh token stays (a reuse must still be recognised) */
  CHECK_INT(family_tokens(st, "acme", e.family_out), 3);
  CHECK_INT(verify(st, z.access, NULL, T0 + 7200), 0);

  /* past max_signin_age (the sign-in was at T0 - 100): the refresh token
   * itself ends there; and an age lowered since the grant is applied to
   * the next refresh */
  auth_oauth_issue s;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &s), 0);
  CHECK_INT(refresh(st, s.refresh, T0 - 100 + SIGNIN_AGE, &z), AUTH_EOAUTH_SIGNIN);
  CHECK(!z.reused);
  CHECK_INT(refresh(st, s.refresh, T0 - 100 + SIGNIN_AGE + 86400, &z), AUTH_EOAUTH_SIGNIN);
  CHECK_INT(refresh_aged(st, s.refresh, T0 + 900, 1000, &z), AUTH_EOAUTH_SIGNIN);
  CHECK_INT(refresh_aged(st, s.refresh, T0 + 1900, 1000, &z), AUTH_EOAUTH_SIGNIN);
  CHECK(!z.reused);
  CHECK_INT(refresh_aged(st, s.refresh, T0 + 899, 1000, &z), 0);
  CHECK_INT(z.access_expires, T0 + 900);
  CHECK_INT(verify(st, z.access, NULL, T0 + 900), ST_ENOTFOUND);
  auth_oauth_issue s2;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &s2), 0);
  CHECK_INT(refresh(st, s2.refresh, T0 - 100 + SIGNIN_AGE - 1, &z), 0);
  CHECK_INT(z.access_expires, T0 - 100 + SIGNIN_AGE);

  /* a deactivated user (the hook revokes the grants) */
  auth_oauth_issue d;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &d), 0);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(refresh(st, d.refresh, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(refresh(st, d.refresh, T0 + 10, &z), AUTH_EOAUTH_GRANT);
  st_close(st);
  tmp_cleanup();
}

/* Without the hooks a deactivation leaves the grant in the store: every
 * check still reads the user (and the tenant). */
TEST(checks_read_the_user_without_hooks) {
  st_store *st = open_store_with(false);
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g, r, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  CHECK_INT(refresh(st, g.refresh, T0 + 10, &r), 0);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(ngrants(st, "acme", alice), 1);
  CHECK_INT(verify(st, r.access, NULL, T0 + 11), ST_ENOTFOUND);
  CHECK_INT(refresh(st, r.refresh, T0 + 11, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused && !z.replayed);
  /* a replay within grace hands nothing out either */
  CHECK_INT(refresh(st, g.refresh, T0 + 11, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused);
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(verify(st, r.access, NULL, T0 + 12), 0);
  CHECK_INT(refresh(st, g.refresh, T0 + 12, &z), 0);
  CHECK(z.replayed);
  CHECK_STR(z.access, r.access);
  /* a deleted user */
  CHECK_INT(delete_user(st, "acme", alice), 204);
  CHECK_INT(verify(st, r.access, NULL, T0 + 13), ST_ENOTFOUND);
  CHECK_INT(refresh(st, r.refresh, T0 + 13, &z), AUTH_EOAUTH_GRANT);
  /* a tenant that is no longer active */
  char bea[40];
  CHECK_INT(user(st, "beta", "bea@beta.com", true, bea), 201);
  auth_oauth_issue b;
  CHECK_INT(grant(st, "beta", bea, "", T0 - 100, T0, &b), 0);
  CHECK_INT(verify_full(st, "beta", b.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  CHECK_INT(tenant_op(st, "beta", 1), 0);
  CHECK_INT(verify_full(st, "beta", b.access, NULL, T0 + 1, NULL, NULL, NULL), ST_ENOTFOUND);
  CHECK_INT(refresh_as(st, "beta", b.refresh, CLIENT, T0 + 1, &z), AUTH_EOAUTH_GRANT);
  st_close(st);
  tmp_cleanup();
}

/* Tenants share nothing, not even when a family id comes up in two (ids
 * are the caller's): a token is good only in the tenant named in it. */
TEST(tenants_share_nothing) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bea[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "beta", "bea@beta.com", true, bea), 201);
  auth_oauth_issue a, b, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &a), 0);
  code k;
  code_init(&k, "beta", bea, "", T0 - 100, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  prep(&b, "beta", T0);
  snprintf(b.family, sizeof b.family, "%s", a.family_out);
  CHECK_INT(exchange_as(st, &k, CLIENT, REDIRECT, VERIFIER, &b), 0);
  CHECK_STR(b.family_out, a.family_out);
  CHECK_INT(verify_full(st, "beta", b.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  CHECK_INT(verify_full(st, "acme", a.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  /* each tenant's token on the other's endpoint */
  CHECK_INT(verify_full(st, "beta", a.access, NULL, T0 + 1, NULL, NULL, NULL), ST_ENOTFOUND);
  CHECK_INT(verify_full(st, "acme", b.access, NULL, T0 + 1, NULL, NULL, NULL), ST_ENOTFOUND);
  CHECK_INT(refresh_as(st, "beta", a.refresh, CLIENT, T0 + 1, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(refresh_as(st, "acme", b.refresh, CLIENT, T0 + 1, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(revoke_token(st, "beta", a.access, CLIENT), 0);
  CHECK_INT(revoke_token(st, "acme", b.refresh, CLIENT), 0);
  CHECK_INT(g_nev, 0);
  CHECK_INT(verify_full(st, "beta", b.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  CHECK_INT(verify_full(st, "acme", a.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  /* revoking one tenant's grant leaves the other's */
  CHECK_INT(revoke_token(st, "beta", b.access, CLIENT), 0);
  CHECK_INT(verify_full(st, "beta", b.access, NULL, T0 + 1, NULL, NULL, NULL), ST_ENOTFOUND);
  CHECK_INT(verify_full(st, "acme", a.access, NULL, T0 + 1, NULL, NULL, NULL), 0);
  CHECK_INT(family_tokens(st, "acme", a.family_out), 2);
  CHECK_INT(events_for("beta", a.family_out), 1);
  CHECK_INT(events_for("acme", a.family_out), 0);
  st_close(st);
  tmp_cleanup();
}

/* ---- audience -------------------------------------------------------------------------------- */

TEST(audience_per_resource) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue gh, all, r;
  CHECK_INT(grant(st, "acme", alice, "github", T0 - 100, T0, &gh), 0);
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &all), 0);
  /* a connector's grant: that connector only */
  CHECK_INT(verify(st, gh.access, "github", T0 + 1), 0);
  CHECK_INT(verify(st, gh.access, "jira", T0 + 1), ST_ENOTFOUND);
  CHECK_INT(verify(st, gh.access, "githu", T0 + 1), ST_ENOTFOUND);
  CHECK_INT(verify(st, gh.access, "github2", T0 + 1), ST_ENOTFOUND);
  CHECK_INT(verify(st, gh.access, "", T0 + 1), ST_ENOTFOUND);
  CHECK_INT(verify(st, gh.access, NULL, T0 + 1), ST_ENOTFOUND);
  /* the tenant's: the aggregated endpoint and every connector */
  CHECK_INT(verify(st, all.access, NULL, T0 + 1), 0);
  CHECK_INT(verify(st, all.access, "github", T0 + 1), 0);
  CHECK_INT(verify(st, all.access, "jira", T0 + 1), 0);
  /* a refresh keeps the audience */
  CHECK_INT(refresh(st, gh.refresh, T0 + 10, &r), 0);
  CHECK_STR(r.connector, "github");
  CHECK_INT(verify(st, r.access, "github", T0 + 11), 0);
  CHECK_INT(verify(st, r.access, NULL, T0 + 11), ST_ENOTFOUND);
  CHECK_INT(verify(st, r.access, "jira", T0 + 11), ST_ENOTFOUND);
  st_close(st);
  tmp_cleanup();
}

/* ---- revocation, grants, consent, hooks ----------------------------------------------------- */

TEST(revoke_by_token_family_and_user) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  auth_oauth_issue a1, a2, b1;
  CHECK_INT(grant(st, "acme", alice, "github", T0 - 100, T0, &a1), 0);
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &a2), 0);
  CHECK_INT(grant(st, "acme", bob, "", T0 - 100, T0, &b1), 0);
  /* RFC 7009: another client's revocation, an unknown token, another
   * tenant: 0 and nothing revoked */
  CHECK_INT(revoke_token(st, "acme", a1.access, CLIENT2), 0);
  CHECK_INT(revoke_token(st, "acme", a1.refresh, CLIENT2), 0);
  char unknown[ST_TOKEN_BUFSZ];
  CHECK_INT(st_token_new(AUTH_OAUTH_ACCESS_PREFIX, unknown, sizeof unknown), 0);
  CHECK_INT(revoke_token(st, "acme", unknown, CLIENT), 0);
  CHECK_INT(revoke_token(st, "beta", a1.access, CLIENT), 0);
  CHECK_INT(verify(st, a1.access, "github", T0 + 1), 0);
  CHECK_INT(family_tokens(st, "acme", a1.family_out), 2);
  CHECK_INT(g_nev, 0);
  /* the owner, with the refresh token: the whole grant */
  CHECK_INT(revoke_token(st, "acme", a1.refresh, CLIENT), 0);
  CHECK_INT(verify(st, a1.access, "github", T0 + 1), ST_ENOTFOUND);
  auth_oauth_issue z;
  CHECK_INT(refresh(st, a1.refresh, T0 + 1, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(family_tokens(st, "acme", a1.family_out), 0);
  CHECK_INT(events_for("acme", a1.family_out), 1);
  CHECK_INT(ngrants(st, "acme", alice), 1);
  /* again: unknown now, still 0 */
  CHECK_INT(revoke_token(st, "acme", a1.refresh, CLIENT), 0);
  CHECK_INT(g_nev, 1);
  /* with the access token */
  CHECK_INT(revoke_token(st, "acme", a2.access, CLIENT), 0);
  CHECK_INT(refresh(st, a2.refresh, T0 + 1, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(events_for("acme", a2.family_out), 1);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(verify(st, b1.access, NULL, T0 + 1), 0);
  /* one grant by id; an absent one */
  CHECK_INT(revoke_family(st, "acme", b1.family_out), 0);
  CHECK_INT(verify(st, b1.access, NULL, T0 + 1), ST_ENOTFOUND);
  CHECK_INT(events_for("acme", b1.family_out), 1);
  CHECK_INT(revoke_family(st, "acme", b1.family_out), ST_ENOTFOUND);
  CHECK_INT(g_nev, 3);

  /* every grant of a user, counted; the other user's stay */
  auth_oauth_issue c1, c2, c3, d1;
  CHECK_INT(grant(st, "acme", alice, "github", T0 - 100, T0, &c1), 0);
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &c2), 0);
  CHECK_INT(grant(st, "acme", alice, "jira", T0 - 100, T0, &c3), 0);
  CHECK_INT(refresh(st, c3.refresh, T0 + 5, &z), 0);
  CHECK_INT(grant(st, "acme", bob, "", T0 - 100, T0, &d1), 0);
  CHECK_INT(ngrants(st, "acme", alice), 3);
  CHECK_INT(revoke_user(st, "beta", alice), 0);
  CHECK_INT(ngrants(st, "acme", alice), 3);
  CHECK_INT(revoke_user(st, "acme", alice), 3);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(verify(st, c1.access, "github", T0 + 6), ST_ENOTFOUND);
  CHECK_INT(verify(st, c2.access, NULL, T0 + 6), ST_ENOTFOUND);
  CHECK_INT(verify(st, z.access, "jira", T0 + 6), ST_ENOTFOUND);
  CHECK_INT(family_tokens(st, "acme", c3.family_out), 0);
  CHECK_INT(tenant_secrets(st, "acme"), 0);
  CHECK_INT(events_for("acme", c1.family_out) + events_for("acme", c2.family_out) +
                events_for("acme", c3.family_out), 3);
  CHECK_INT(verify(st, d1.access, NULL, T0 + 6), 0);
  CHECK_INT(ngrants(st, "acme", bob), 1);
  CHECK_INT(revoke_user(st, "acme", alice), 0);
  st_close(st);
  tmp_cleanup();
}

/* A disconnect (the person's, or an admin's for them) revokes the grant
 * and withdraws the consent to its client, every resource of it: the next
 * authorization asks again. Another client's consent, another person's,
 * and another person's grant id are not touched. */
TEST(disconnect_withdraws_consent) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  auth_oauth_issue a1, a2, b1;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &a1), 0);
  CHECK_INT(grant(st, "acme", bob, "", T0 - 100, T0, &b1), 0);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, ""), 0);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, "crm"), 0);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT2, ""), 0);
  CHECK_INT(consent_put_for(st, "acme", bob, CLIENT, ""), 0);
  revoke_job d = {.tenant = "acme", .user = bob, .family = a1.family_out, .op = 3};
  CHECK_INT(st_write_sync(st, revoke_fn, &d), ST_ENOTFOUND); /* not bob's */
  CHECK_INT(verify(st, a1.access, NULL, T0 + 1), 0);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT), 0);
  d.user = alice;
  CHECK_INT(st_write_sync(st, revoke_fn, &d), 0);
  CHECK_INT(verify(st, a1.access, NULL, T0 + 1), ST_ENOTFOUND);
  CHECK_INT(events_for("acme", a1.family_out), 1);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, ""), ST_ENOTFOUND);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "crm"), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT2), 0);
  CHECK_INT(consent_get(st, "acme", bob, CLIENT), 0);
  CHECK_INT(st_write_sync(st, revoke_fn, &d), ST_ENOTFOUND); /* gone already */
  /* every application of the person: grants and consents; bob's stay */
  CHECK_INT(grant(st, "acme", alice, "crm", T0 - 100, T0, &a2), 0);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, "crm"), 0);
  revoke_job all = {.tenant = "acme", .user = alice, .op = 4, .n = -1};
  CHECK_INT(st_write_sync(st, revoke_fn, &all), 0);
  CHECK_INT(all.n, 1);
  CHECK_INT(verify(st, a2.access, "crm", T0 + 1), ST_ENOTFOUND);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "crm"), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT2), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", bob, CLIENT), 0);
  CHECK_INT(verify(st, b1.access, NULL, T0 + 1), 0);
  st_close(st);
  tmp_cleanup();
}

/* A consent is for the resource the person saw on the consent page: one
 * connector's does not cover another or the aggregated endpoint (every
 * connector); the aggregated endpoint's covers each connector. */
TEST(consent_is_per_resource) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, "crm"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "crm"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, ""), ST_ENOTFOUND);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "github"), ST_ENOTFOUND);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, "github"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "crm"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "github"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, ""), ST_ENOTFOUND);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT, ""), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT, "jira"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT2, "crm"), ST_ENOTFOUND);
  CHECK_INT(oauth_keys(st, "acme", "a"), 1);
  /* a consent stored before resources were kept (the time alone) is asked again */
  char k[200];
  size_t kn = (size_t)snprintf(k, sizeof k, "a%s%c%s%c%s", "acme", 0, alice, 0, CLIENT2);
  raw_put rp = {k, "1700000000", kn, 10};
  CHECK_INT(st_write_sync(st, raw_put_fn, &rp), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT2, "crm"), ST_ENOTFOUND);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT2, ""), ST_ENOTFOUND);
  CHECK_INT(consent_put_for(st, "acme", alice, CLIENT2, "crm"), 0);
  CHECK_INT(consent_get_for(st, "acme", alice, CLIENT2, "crm"), 0);
  st_close(st);
}

TEST(scim_hooks_and_consent) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", true, bob), 201);
  /* consent */
  CHECK_INT(consent_get(st, "acme", alice, CLIENT), ST_ENOTFOUND);
  CHECK_INT(consent_put(st, "acme", alice, CLIENT), 0);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT), 0);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT2), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", bob, CLIENT), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "beta", alice, CLIENT), ST_ENOTFOUND);
  CHECK_INT(consent_put(st, "acme", alice, CLIENT), 0);
  CHECK_INT(consent_put(st, "acme", bob, CLIENT2), 0);
  CHECK_INT(oauth_keys(st, "acme", "a"), 2);

  /* deactivation: the grants go in the SCIM transaction; consent stays */
  auth_oauth_issue a1, a2, b1, z;
  CHECK_INT(grant(st, "acme", alice, "github", T0 - 100, T0, &a1), 0);
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &a2), 0);
  CHECK_INT(refresh(st, a2.refresh, T0 + 5, &z), 0);
  CHECK_INT(tenant_secrets(st, "acme"), 1);
  CHECK_INT(grant(st, "acme", bob, "", T0 - 100, T0, &b1), 0);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(verify(st, a1.access, "github", T0 + 6), ST_ENOTFOUND);
  CHECK_INT(verify(st, z.access, NULL, T0 + 6), ST_ENOTFOUND);
  CHECK_INT(family_tokens(st, "acme", a1.family_out), 0);
  CHECK_INT(family_tokens(st, "acme", a2.family_out), 0);
  CHECK_INT(tenant_secrets(st, "acme"), 0);
  CHECK_INT(events_for("acme", a1.family_out), 1);
  CHECK_INT(events_for("acme", a2.family_out), 1);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT), 0);
  /* reactivated: the grants stay gone */
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(verify(st, a1.access, "github", T0 + 7), ST_ENOTFOUND);
  CHECK_INT(refresh(st, z.refresh, T0 + 7, &z), AUTH_EOAUTH_GRANT);
  CHECK_INT(verify(st, b1.access, NULL, T0 + 7), 0);

  /* deletion: grants and consents */
  auth_oauth_issue a3;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0 + 10, &a3), 0);
  CHECK_INT(delete_user(st, "acme", alice), 204);
  CHECK_INT(ngrants(st, "acme", alice), 0);
  CHECK_INT(verify(st, a3.access, NULL, T0 + 11), ST_ENOTFOUND);
  CHECK_INT(events_for("acme", a3.family_out), 1);
  CHECK_INT(consent_get(st, "acme", alice, CLIENT), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", bob, CLIENT2), 0);
  CHECK_INT(oauth_keys(st, "acme", "a"), 1);
  /* bob's grant untouched throughout */
  CHECK_INT(verify(st, b1.access, NULL, T0 + 11), 0);
  CHECK_INT(ngrants(st, "acme", bob), 1);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  CHECK_INT(g_reports, 0);
  st_close(st);
  tmp_cleanup();
}

/* ---- tenant purge, check ------------------------------------------------------------------------ */

typedef struct purge_job {
  const char *tenant;
  int limit, n;
} purge_job;
static int purge_step_fn(st_txn *txn, void *arg) {
  purge_job *p = arg;
  p->n = st_purge_tenant_step(txn, p->tenant, p->limit);
  return p->n < 0 ? p->n : 0;
}
/* The admin's tenant deletion: marked deleting, purge steps of `limit`
 * until one deletes fewer, then the record; how many steps, or -1. */
static int delete_tenant(st_store *st, const char *tenant, int limit) {
  if (tenant_op(st, tenant, 1)) return -1;
  purge_job p = {tenant, limit, 0};
  int steps = 0;
  do {
    if (st_write_sync(st, purge_step_fn, &p) || ++steps > 1000) return -1;
  } while (p.n >= limit);
  return tenant_op(st, tenant, 2) ? -1 : steps;
}

/* A tenant with n grants of one user (one of them rotated: a sealed
 * successor) and two consents. */
static int populate(st_store *st, const char *tenant, int n, auth_oauth_issue *last) {
  char u[40], name[64];
  snprintf(name, sizeof name, "user@%s.com", tenant);
  if (user(st, tenant, name, true, u) != 201) return -1;
  for (int i = 0; i < n; i++)
    if (grant(st, tenant, u, i % 2 ? "" : "github", T0 - 100, T0, last)) return -1;
  auth_oauth_issue r;
  if (refresh_as(st, tenant, last->refresh, CLIENT, T0 + 1, &r) || consent_put(st, tenant, u, CLIENT) ||
      consent_put(st, tenant, u, CLIENT2))
    return -1;
  *last = r;
  return 0;
}

TEST(tenant_purge_removes_grants_tokens_consents) {
  /* gateway-sized steps (admin's PURGE_BATCH) and tiny ones; more grants
   * than one batch of the purge's scan */
  static const int limits[] = {500, 50, 7, 1};
  for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
    st_store *st = open_store();
    CHECK(st);
    auth_oauth_issue acme_last, beta_last;
    CHECK_INT(populate(st, "acme", 20, &acme_last), 0);
    CHECK_INT(populate(st, "beta", 2, &beta_last), 0);
    /* 20 grants × (f, F, 2 g, 2 t) + the rotation's 2 g, 2 t + 2 consents */
    CHECK_INT(oauth_keys(st, "acme", "fFgat"), 20 * 6 + 4 + 2);
    CHECK_INT(tenant_secrets(st, "acme"), 1);
    CHECK_INT(verify_full(st, "beta", beta_last.access, NULL, T0 + 2, NULL, NULL, NULL), 0);
    CHECK_INT(verify_full(st, "acme", acme_last.access, NULL, T0 + 2, NULL, NULL, NULL), 0);
    g_reports = 0;
    CHECK_INT(st_check(st, count_report, NULL), 0);
    int steps = delete_tenant(st, "acme", limits[li]);
    if (steps < 0 || oauth_keys(st, "acme", "fFgat") != 0)
      fprintf(stderr, "  limit %d: %d steps, %d keys left (f %d, F %d, g %d, t %d)\n", limits[li], steps,
              oauth_keys(st, "acme", "fFgat"), oauth_keys(st, "acme", "f"), oauth_keys(st, "acme", "F"),
              oauth_keys(st, "acme", "g"), oauth_keys(st, "acme", "t"));
    CHECK(steps > 0);
    CHECK_INT(oauth_keys(st, "acme", "fFgat"), 0);
    CHECK_INT(tenant_secrets(st, "acme"), 0);
    CHECK_INT(verify_full(st, "acme", acme_last.access, NULL, T0 + 2, NULL, NULL, NULL), ST_ENOTFOUND);
    /* the other tenant keeps everything */
    CHECK_INT(oauth_keys(st, "beta", "fFgat"), 2 * 6 + 4 + 2);
    CHECK_INT(tenant_secrets(st, "beta"), 1);
    CHECK_INT(verify_full(st, "beta", beta_last.access, NULL, T0 + 2, NULL, NULL, NULL), 0);
    g_reports = 0;
    CHECK_INT(st_check(st, count_report, NULL), 0);
    if (g_reports) fprintf(stderr, "  limit %d: %s\n", limits[li], g_report);
    CHECK_INT(g_reports, 0);
    st_close(st);
    tmp_cleanup();
  }
}

/* Grant records the purge cannot revoke (not JSON; a family id too long for
 * a key) must not stall or outlive the tenant's purge. */
TEST(tenant_purge_gets_past_broken_grants) {
  st_store *st = open_store();
  CHECK(st);
  auth_oauth_issue last;
  CHECK_INT(populate(st, "acme", 3, &last), 0);
  CHECK_INT(raw_grant(st, "acme", "broken0000000000", "not json"), 0);
  char longfam[301];
  memset(longfam, 'x', 300);
  longfam[300] = 0;
  CHECK_INT(raw_grant(st, "acme", longfam, "{\"user\":\"nobody\"}"), 0);
  CHECK_INT(delete_tenant(st, "acme", 500) > 0, 1);
  CHECK_INT(oauth_keys(st, "acme", "fFgat"), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  CHECK_INT(g_reports, 0);
  st_close(st);
  tmp_cleanup();
}

TEST(check_reports_grants_of_unknown_users) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  CHECK_INT(g_reports, 0);
  /* a grant whose user does not exist */
  CHECK_INT(raw_grant(st, "acme", "fam0000000000000", "{\"user\":\"00000000-0000-4000-8000-000000000000\"}"), 0);
  g_reports = 0;
  g_report[0] = 0;
  CHECK_INT(st_check(st, count_report, NULL), 1);
  CHECK_INT(g_reports, 1);
  CHECK(strstr(g_report, "acme") && strstr(g_report, "00000000-0000-4000-8000-000000000000"));
  /* and one without a user at all */
  CHECK_INT(raw_grant(st, "beta", "fam0000000000001", "{}"), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 2);
  CHECK_INT(g_reports, 2);
  /* revoked, the first is no longer reported */
  CHECK_INT(revoke_family(st, "acme", "fam0000000000000"), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 1);
  st_close(st);
  tmp_cleanup();
}

/* ---- the sealed successor ------------------------------------------------------------------------ */

TEST(sealed_successor_lives_one_rotation) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  auth_oauth_issue g, r2, r3, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  const char *fam = g.family_out;
  int rc;
  char *s = successor(st, "acme", fam, &rc);
  CHECK(!s && rc == ST_ENOTFOUND);
  CHECK_INT(tenant_secrets(st, "acme"), 0);
  /* the first rotation seals its pair, "access\nrefresh" */
  CHECK_INT(refresh(st, g.refresh, T0 + 100, &r2), 0);
  char want[2 * ST_TOKEN_BUFSZ + 2];
  snprintf(want, sizeof want, "%s\n%s", r2.access, r2.refresh);
  s = successor(st, "acme", fam, &rc);
  CHECK_INT(rc, 0);
  CHECK_STR(s, want);
  free(s);
  CHECK_INT(tenant_secrets(st, "acme"), 1);
  CHECK(!stored_anywhere(st, r2.access + strlen(AUTH_OAUTH_ACCESS_PREFIX)));
  CHECK(!stored_anywhere(st, r2.refresh + strlen(AUTH_OAUTH_REFRESH_PREFIX)));
  /* the second replaces it */
  CHECK_INT(refresh(st, r2.refresh, T0 + 110, &r3), 0);
  CHECK(!r3.replayed);
  snprintf(want, sizeof want, "%s\n%s", r3.access, r3.refresh);
  s = successor(st, "acme", fam, &rc);
  CHECK_INT(rc, 0);
  CHECK_STR(s, want);
  free(s);
  CHECK_INT(tenant_secrets(st, "acme"), 1);
  /* the first rotated token within its own window: an older rotation's
   * window — refused, and the grant is kept */
  CHECK_INT(refresh(st, g.refresh, T0 + 120, &z), AUTH_EOAUTH_GRANT);
  CHECK(!z.reused && !z.replayed);
  CHECK_INT(verify(st, r3.access, NULL, T0 + 121), 0);
  CHECK_INT(verify(st, r2.access, NULL, T0 + 121), 0);
  CHECK_INT(g_nev, 0);
  /* the latest rotated token still replays its successor */
  CHECK_INT(refresh(st, r2.refresh, T0 + 121, &z), 0);
  CHECK(z.replayed);
  CHECK_STR(z.access, r3.access);
  CHECK_STR(z.refresh, r3.refresh);
  /* the first rotated token after its window: the grant ends, with its blob */
  CHECK_INT(refresh(st, g.refresh, T0 + 100 + GRACE, &z), 0);
  CHECK(z.reused);
  CHECK_INT(verify(st, r3.access, NULL, T0 + 100 + GRACE), ST_ENOTFOUND);
  s = successor(st, "acme", fam, &rc);
  CHECK(!s && rc == ST_ENOTFOUND);
  CHECK_INT(tenant_secrets(st, "acme"), 0);
  CHECK_INT(events_for("acme", fam), 1);
  /* a grant revoked by its owner also takes its blob */
  auth_oauth_issue h, hr;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &h), 0);
  CHECK_INT(refresh(st, h.refresh, T0 + 5, &hr), 0);
  CHECK_INT(tenant_secrets(st, "acme"), 1);
  CHECK_INT(revoke_token(st, "acme", hr.access, CLIENT), 0);
  CHECK_INT(tenant_secrets(st, "acme"), 0);
  st_close(st);
  tmp_cleanup();
}


/* Deleting an OAuth client revokes its grants, consents and codes past
 * one batch of keys (64): 70 of each kind for one client, one of each
 * for another client that stays. */
typedef struct revoke_all_job {
  const char *client;
  int n;
} revoke_all_job;
static int revoke_all_fn(st_txn *txn, void *arg) {
  revoke_all_job *j = arg;
  j->n = auth_oauth_client_revoke_all(txn, "acme", j->client, NULL);
  return j->n < 0 ? j->n : 0;
}

static int codes_of(st_store *st, const char *client) {
  st_txn *txn;
  st_cursor *c;
  st_val k, v;
  int n = 0;
  if (st_read_begin(st, &txn) || st_cursor_open(txn, ST_DB_AUTH, &c)) return -1;
  while (st_cursor_next(c, &k, &v) == 0)
    if (k.len == 33 && ((const char *)k.data)[0] == 'k' && v.len && memmem(v.data, v.len, client, strlen(client)))
      n++;
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

TEST(client_revoke_all_goes_past_one_batch) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  static const char *const OTHER = "https://other.example.com/client.json";
  char last_access[256] = "", other_access[256] = "";
  /* 70 people, a grant each (one person holds at most
   * AUTH_OAUTH_USER_GRANTS_MAX), and each has allowed the client */
  char uids[70][40];
  for (int i = 0; i < 70; i++) {
    char name[64];
    snprintf(name, sizeof name, "u%d@acme.com", i);
    CHECK_INT(user(st, "acme", name, true, uids[i]), 201);
    CHECK_INT(consent_put(st, "acme", uids[i], CLIENT), 0);
  }
  for (int i = 0; i < 71; i++) {
    bool other = i == 70;
    const char *who = other ? alice : uids[i];
    code k;
    code_init(&k, "acme", who, "github", T0 - 100, T0 + 600);
    if (other) snprintf(k.c.client_id, sizeof k.c.client_id, "%s", OTHER);
    CHECK_INT(code_put(st, &k, T0), 0);
    auth_oauth_issue x;
    prep(&x, "acme", T0 + 1);
    CHECK_INT(exchange_as(st, &k, other ? OTHER : CLIENT, REDIRECT, VERIFIER, &x), 0);
    snprintf(other ? other_access : last_access, 256, "%s", x.access);
    code unused; /* and a code never exchanged */
    code_init(&unused, "acme", who, "github", T0 - 100, T0 + 600);
    if (other) snprintf(unused.c.client_id, sizeof unused.c.client_id, "%s", OTHER);
    CHECK_INT(code_put(st, &unused, T0), 0);
  }
  CHECK_INT(consent_put(st, "acme", alice, OTHER), 0);
  CHECK(codes_of(st, CLIENT) >= 70); /* exchanged ones are kept (replays), unused ones too */
  revoke_all_job j = {CLIENT, 0};
  CHECK_INT(st_write_sync(st, revoke_all_fn, &j), 0);
  CHECK_INT(j.n, 70); /* every grant */
  CHECK_INT(verify(st, last_access, "github", T0 + 2), ST_ENOTFOUND);
  CHECK_INT(codes_of(st, CLIENT), 0);
  CHECK_INT(consent_get(st, "acme", uids[0], CLIENT), ST_ENOTFOUND);
  CHECK_INT(consent_get(st, "acme", uids[69], CLIENT), ST_ENOTFOUND);
  /* the other client's are untouched */
  CHECK_INT(verify(st, other_access, "github", T0 + 2), 0);
  CHECK_INT(codes_of(st, OTHER), 2); /* its exchanged code (kept for replays) and its unused one */
  CHECK_INT(consent_get(st, "acme", alice, OTHER), 0);
  st_close(st);
}

/* The checks alone (auth_oauth_exchange_check, auth_oauth_refresh_check),
 * read-only: the token endpoint spends the tenant's budget of failed
 * requests on what they refuse, and never on a grant that works. A replay
 * (a used code, a rotated refresh token) counts as working while there is
 * a grant to revoke, so a drained budget never holds off reuse detection;
 * once the grant is gone it is junk. */
static int check_code(st_store *st, const code *k, const char *verifier, int64_t now) {
  auth_oauth_issue x;
  prep(&x, k->c.tenant, now);
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_oauth_exchange_check(txn, k->hash, CLIENT, REDIRECT, verifier, &x);
  st_txn_end(txn);
  return rc;
}
static int check_refresh(st_store *st, const char *tenant, const char *rt, int64_t now) {
  auth_oauth_issue x;
  uint8_t h[32];
  if (st_token_hash(rt, strlen(rt), h)) return -999;
  prep(&x, tenant, now);
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_oauth_refresh_check(txn, h, CLIENT, &x);
  st_txn_end(txn);
  return rc;
}

TEST(checks_tell_working_grants_from_junk) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", true, alice), 201);
  /* codes: unknown, a wrong verifier, another tenant's, expired, a sign-in too old: refused; the right one works
   * and the checks changed nothing (it still does, once) */
  code k, unknown, old;
  code_init(&k, "acme", alice, "", T0 - 100, T0 + 60);
  code_init(&unknown, "acme", alice, "", T0 - 100, T0 + 60);
  code_init(&old, "acme", alice, "", T0 - SIGNIN_AGE, T0 + 60);
  CHECK_INT(code_put(st, &k, T0), 0);
  CHECK_INT(code_put(st, &old, T0), 0);
  CHECK_INT(check_code(st, &unknown, VERIFIER, T0 + 1), AUTH_EOAUTH_GRANT);
  CHECK_INT(check_code(st, &k, "x" VERIFIER, T0 + 1), AUTH_EOAUTH_GRANT);
  CHECK_INT(check_code(st, &k, VERIFIER, T0 + 60), AUTH_EOAUTH_GRANT);
  CHECK_INT(check_code(st, &old, VERIFIER, T0 + 1), AUTH_EOAUTH_SIGNIN);
  auth_oauth_issue x;
  prep(&x, "beta", T0 + 1);
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  int rc = auth_oauth_exchange_check(txn, k.hash, CLIENT, REDIRECT, VERIFIER, &x);
  st_txn_end(txn);
  CHECK_INT(rc, AUTH_EOAUTH_GRANT);
  CHECK_INT(check_code(st, &k, VERIFIER, T0 + 1), 0);
  CHECK_INT(check_code(st, &k, VERIFIER, T0 + 1), 0);
  CHECK_INT(exchange(st, &k, T0 + 1, &x), 0);
  CHECK(!x.reused);
  char fam[ST_TOKEN_ID_BUFSZ];
  snprintf(fam, sizeof fam, "%s", x.family_out);
  /* the used code again: it acts (revokes) while its grant is there, then it is junk */
  CHECK_INT(check_code(st, &k, VERIFIER, T0 + 2), 0);
  CHECK_INT(revoke_family(st, "acme", fam), 0);
  CHECK_INT(check_code(st, &k, VERIFIER, T0 + 2), AUTH_EOAUTH_GRANT);

  /* refresh tokens: unknown, another tenant's, expired, a sign-in too old: refused; a live one works */
  auth_oauth_issue g, r, z;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &g), 0);
  CHECK_INT(check_refresh(st, "acme", g.access, T0 + 1), AUTH_EOAUTH_GRANT); /* an access token is no refresh token */
  CHECK_INT(check_refresh(st, "beta", g.refresh, T0 + 1), AUTH_EOAUTH_GRANT);
  CHECK_INT(check_refresh(st, "acme", g.refresh, T0 - 100 + SIGNIN_AGE), AUTH_EOAUTH_SIGNIN);
  CHECK_INT(check_refresh(st, "acme", g.refresh, T0 + 1), 0);
  CHECK_INT(refresh(st, g.refresh, T0 + 10, &r), 0);
  /* the rotated one: within grace the same pair, after it the grant is revoked: both act; then junk */
  CHECK_INT(check_refresh(st, "acme", g.refresh, T0 + 10 + GRACE - 1), 0);
  CHECK_INT(check_refresh(st, "acme", g.refresh, T0 + 10 + GRACE), 0);
  CHECK_INT(check_refresh(st, "acme", r.refresh, T0 + 11), 0);
  CHECK_INT(refresh(st, g.refresh, T0 + 10 + GRACE, &z), 0);
  CHECK(z.reused);
  CHECK_INT(check_refresh(st, "acme", g.refresh, T0 + 11 + GRACE), AUTH_EOAUTH_GRANT);
  CHECK_INT(check_refresh(st, "acme", r.refresh, T0 + 11 + GRACE), AUTH_EOAUTH_GRANT);
  /* a user no longer active: refused */
  auth_oauth_issue h;
  CHECK_INT(grant(st, "acme", alice, "", T0 - 100, T0, &h), 0);
  CHECK_INT(check_refresh(st, "acme", h.refresh, T0 + 1), 0);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(check_refresh(st, "acme", h.refresh, T0 + 1), AUTH_EOAUTH_GRANT);
  st_close(st);
  tmp_cleanup();
}

/* Every exchange and refresh of the tests above: the check agreed with the job. */
TEST(checks_agree_with_the_jobs) {
  CHECK(g_compared > 50);
  CHECK_INT(g_disagreed, 0);
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(token_hash_shapes);
  RUN(code_exchange_issues_a_grant);
  RUN(code_exchange_refusals);
  RUN(code_replay_revokes_what_it_issued);
  RUN(code_put_sweeps_expired_codes);
  RUN(codes_go_with_their_user);
  RUN(refresh_rotation_grace_and_reuse);
  RUN(refresh_grace_in_milliseconds);
  RUN(refresh_job_runs_again_alike);
  RUN(a_person_holds_at_most_max_grants);
  RUN(a_person_holds_at_most_max_consents);
  RUN(refresh_refusals);
  RUN(checks_read_the_user_without_hooks);
  RUN(tenants_share_nothing);
  RUN(audience_per_resource);
  RUN(revoke_by_token_family_and_user);
  RUN(disconnect_withdraws_consent);
  RUN(consent_is_per_resource);
  RUN(scim_hooks_and_consent);
  RUN(tenant_purge_removes_grants_tokens_consents);
  RUN(tenant_purge_gets_past_broken_grants);
  RUN(check_reports_grants_of_unknown_users);
  RUN(sealed_successor_lives_one_rotation);
  RUN(client_revoke_all_goes_past_one_batch);
  RUN(checks_tell_working_grants_from_junk);
  RUN(checks_agree_with_the_jobs);
  tmp_cleanup();
  return UNIT_DONE();
}
