/* gateway/api/admin.c — the admin REST API's front (see admin.h, and
 * admin_int.h for how the handlers are split by resource):
 * authentication (the operator token or a tenant admin token), the route
 * preauth, dispatch by path, and the request helpers every resource
 * handler shares (strict JSON bodies, unknown keys refused, tenant reach).
 *
 * Flow of a write: the handler authenticates and validates on the loop
 * (strict JSON, no duplicate keys, unknown keys refused), prepares
 * everything random (tokens, ids, timestamps) so the writer job is a pure
 * function of (store, arg), submits the job, and answers from its done
 * callback once the batch has committed. */
#include "gateway/api/admin_int.h"
#include "gateway/base/json_check.h"
#include "gateway/core/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "gateway/base/log.h"
#include "auth/token_store.h"
#include "gateway/core/module.h"
#include "vault/vault.h"
#include "store/dir.h"
#include "store/tenant.h"
#include "store/token.h"

void admin__now_rfc3339(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---------- request helpers ---------- */

static void unauthorized(gw_req *req, const char *msg) {
  gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-admin\"");
  gw_respond_error(req, 401, "unauthorized", "%s", msg);
}

/* Returns 0 with *who filled, or responds 401/503 and returns -1. For a
 * tenant admin token, *token_rec (when not NULL) receives its record
 * (caller json_decref; NULL for the operator). */
static int authenticate(gw_req *req, admin_caller *who, json_t **token_rec) {
  gw_server *srv = req->lp->srv;
  memset(who, 0, sizeof *who);
  if (token_rec) *token_rec = NULL;
  const char *auth = gw_req_header(req, "authorization");
  if (!auth || !*auth) {
    unauthorized(req, "missing Authorization: Bearer <admin token>");
    return -1;
  }
  if (strncasecmp(auth, "Bearer ", 7) != 0) {
    unauthorized(req, "the admin API takes a Bearer token");
    return -1;
  }
  const char *tok = auth + 7;
  while (*tok == ' ') tok++;
  size_t tl = strlen(tok);
  uint8_t h[32];
  if (tl >= 16 && tl <= 512 && st_token_hash(tok, tl, h) == 0 && srv->have_admin_token &&
      st_ct_equal(h, srv->admin_token_hash, 32)) {
    who->op = true;
    return 0;
  }
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  json_t *rec = NULL;
  int rc = auth_token_lookup(txn, tok, AUTH_KIND_ADMIN, NULL, &rec);
  st_txn_end(txn);
  if (rc != 0) {
    if (gw_limits_auth_failed(req)) /* this address failed too often (gateway/core/limits.h) */
      gw_respond_error(req, 429, "too_many_failures",
                       "too many failed authentications from your address; retry after Retry-After seconds");
    else
      unauthorized(req, "invalid admin token");
    return -1;
  }
  snprintf(who->tenant, sizeof who->tenant, "%s", json_string_value(json_object_get(rec, "tenant")));
  snprintf(who->token_id, sizeof who->token_id, "%s", json_string_value(json_object_get(rec, "id")) ?: "");
  if (token_rec) *token_rec = rec;
  else json_decref(rec);
  return 0;
}

/* Tenant reach: the operator reaches every tenant; a tenant token only its
 * own. The answer is the same whether the other tenant exists or not. */
void admin__audit_change(gw_req *req, json_t *before, json_t *after) {
  json_t *c = json_object();
  if (before) json_object_set(c, "before", before);
  if (after) json_object_set_new(c, "after", after);
  char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
  if (s && strlen(s) > 64 * 1024) {
    /* a large policy: its size and digest stand for it */
    json_t *d = json_object();
    const char *side[] = {"before", "after"};
    for (int i = 0; i < 2; i++) {
      json_t *v = json_object_get(c, side[i]);
      if (!v) continue;
      char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
      unsigned char md[32];
      char hex[65];
      if (t && st_sha256(t, strlen(t), md) == 0) {
        for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", md[k]);
        json_object_set_new(d, side[i], json_pack("{s:I, s:s+}", "bytes", (json_int_t)strlen(t), "digest", "sha256:", hex));
      }
      free(t);
    }
    free(s);
    s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
  }
  json_decref(c);
  if (s) req->audit_detail = gw_req_strdup(req, s);
  free(s);
}

int admin__reach(gw_req *req, const admin_caller *who, const char *tenant) {
  if (who->op || strcmp(who->tenant, tenant) == 0) return 0;
  gw_respond_error(req, 403, "forbidden", "this admin token is scoped to another tenant");
  return -1;
}

int admin__need_operator(gw_req *req, const admin_caller *who) {
  if (who->op) return 0;
  gw_respond_error(req, 403, "forbidden", "this action needs the operator token");
  return -1;
}

/* Strict JSON object body. Responds and returns NULL on any problem. With
 * `secret` (a body carrying a credential: connectors, OIDC settings) a
 * syntax error names only its position — jansson's text quotes the input
 * near it, which could be the secret — and the body is wiped as soon as it
 * is parsed, before anything answers (an answer may release req). */
static json_t *parse_body(gw_req *req, bool secret) {
  const char *ct = gw_req_header(req, "content-type");
  if (!ct || (strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';' && ct[16] != ' '))) {
    if (secret && req->body) OPENSSL_cleanse(req->body, req->body_len);
    gw_respond_error(req, 415, "unsupported_media_type", "send the body as application/json");
    return NULL;
  }
  json_error_t e;
  json_t *j = gw_json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
  if (secret && req->body) OPENSSL_cleanse(req->body, req->body_len);
  if (!j) {
    if (secret)
      gw_respond_error(req, 400, "invalid_json", "invalid JSON at line %d column %d (or a duplicate key)", e.line,
                       e.column);
    else
      gw_respond_error(req, 400, "invalid_json", "invalid JSON at line %d column %d: %s", e.line, e.column, e.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    gw_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
    return NULL;
  }
  return j;
}

/* A path segment, percent-decoded (no '+' rule: this is a path). False for
 * a malformed escape, %00, or more than cap - 1 bytes. */
static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool admin__seg_decode(const char *in, char *out, size_t cap) {
  size_t o = 0;
  for (const char *p = in; *p; p++) {
    int c = (unsigned char)*p;
    if (c == '%') {
      int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
      if (hi < 0 || lo < 0 || (c = hi * 16 + lo) == 0) return false;
      p += 2;
    }
    if (o + 1 >= cap) return false;
    out[o++] = (char)c;
  }
  out[o] = 0;
  return true;
}

json_t *admin__parse_body(gw_req *req) { return parse_body(req, false); }
json_t *admin__parse_secret_body(gw_req *req) { return parse_body(req, true); }

/* Refuses keys outside `allowed` (NULL-terminated), naming them all. */
int admin__only_keys(gw_req *req, json_t *j, const char *const *allowed) {
  char bad[512] = "";
  const char *key;
  json_t *v;
  json_object_foreach(j, key, v) {
    int ok = 0;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, key) == 0) ok = 1;
    if (!ok) {
      size_t l = strlen(bad);
      snprintf(bad + l, sizeof bad - l, "%s\"%.60s\"", l ? ", " : "", key);
    }
  }
  if (!*bad) return 0;
  gw_respond_error(req, 400, "invalid_request", "unknown field(s): %s", bad);
  return -1;
}

/* Optional string field with length bounds. Returns 0 (absent: *out NULL). */
int admin__opt_string(gw_req *req, json_t *j, const char *key, size_t maxlen, const char **out) {
  json_t *v = json_object_get(j, key);
  *out = NULL;
  if (!v) return 0;
  if (!json_is_string(v)) {
    gw_respond_error(req, 400, "invalid_request", "\"%s\" must be a string", key);
    return -1;
  }
  size_t n = json_string_length(v);
  const unsigned char *sv = (const unsigned char *)json_string_value(v);
  bool ctl = false;
  for (size_t i = 0; i < n; i++)
    if (sv[i] < 0x20 || sv[i] == 0x7f) ctl = true;
  if (n < 1 || n > maxlen || ctl) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"%s\" must be 1 to %zu characters, without control characters", key, maxlen);
    return -1;
  }
  *out = json_string_value(v);
  return 0;
}

/* Opens a read transaction for an existing, active tenant; otherwise
 * answers 503 (store unreadable) or 404 and returns -1. */
int admin__read_tenant(gw_req *req, const char *tenant, st_txn **txn) {
  if (st_read_begin(req->lp->srv->store, txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  json_t *t;
  if (st_tenant_get(*txn, tenant, &t) != 0) {
    st_txn_end(*txn);
    gw_respond_error(req, 404, "not_found", "no such tenant");
    return -1;
  }
  json_decref(t);
  return 0;
}

int admin__heavy_enter(gw_req *req, const char *tenant, gw_heavy_kind kind, const char *what) {
  int busy = gw_limits_heavy_enter(req, tenant, kind);
  if (!busy) return 0;
  if (busy == 429)
    gw_respond_error(req, 429, "too_many_reads",
                     "this tenant already has %d %s running: retry after Retry-After seconds", GW_HEAVY_PER_TENANT, what);
  else
    gw_respond_error(req, 503, "busy", "the gateway is running its most heavy reads at once: retry after Retry-After seconds");
  return -1;
}

typedef struct pool_read {
  uv_work_t work;
  gw_req *req;
  void (*read)(void *ctx);
  void (*answer)(gw_req *req, void *ctx);
  void *ctx;
} pool_read;

static void pool_read_work(uv_work_t *w) {
  pool_read *p = w->data;
  gw_test_hold_file("MCPGATE_TEST_ADMIN_READ_PAUSE_FILE"); /* a test hook (server.h) */
  p->read(p->ctx);
}

/* The request stays valid until answered or dropped, even if its client
 * left (http.h). */
static void pool_read_done(uv_work_t *w, int status) {
  pool_read *p = w->data;
  gw_req *req = p->req;
  if (!gw_req_alive(req)) { /* its client left */
    gw_req_drop(req);
    req = NULL;
  } else if (status != 0) {
    gw_respond_error(req, 503, "busy", "the read was cancelled; retry");
    req = NULL;
  }
  p->answer(req, p->ctx);
  free(p);
}

int admin__pool_read(gw_req *req, const char *tenant, gw_heavy_kind kind, const char *what, void (*read)(void *ctx),
                     void (*answer)(gw_req *req, void *ctx), void *ctx) {
  if (admin__heavy_enter(req, tenant, kind, what)) return -1;
  pool_read *p = calloc(1, sizeof *p);
  if (p) {
    *p = (pool_read){.req = req, .read = read, .answer = answer, .ctx = ctx};
    p->work.data = p;
    if (uv_queue_work(&req->lp->loop, &p->work, pool_read_work, pool_read_done) == 0) return 0;
    free(p);
  }
  gw_respond_error(req, 503, "busy", "the gateway cannot start this read now; retry");
  return -1;
}

char *admin__scim_base_url(gw_server *srv, const char *tenant) {
  size_t n = strlen(srv->cfg.public_url) + strlen(tenant) + 32;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/t/%s/scim/v2", srv->cfg.public_url, tenant);
  return s;
}
int gw_admin_preauth(gw_req *req) {
  if (!req->lp->srv->store) return 0; /* the handler answers 503 */
  admin_caller who;
  return authenticate(req, &who, NULL) ? -1 : 0;
}

void gw_admin_dispatch(gw_req *req) {
  if (!req->lp->srv->store) {
    gw_respond_error(req, 503, "store_unavailable", "the store is not open");
    return;
  }
  admin_caller who;
  json_t *token_rec;
  if (authenticate(req, &who, &token_rec)) return;
  if (who.op) snprintf(req->actor, sizeof req->actor, "operator");
  else snprintf(req->actor, sizeof req->actor, "admin-token:%.24s", who.token_id);
  if (token_rec) {
    /* a tenant token proves itself: note its use */
    const char *auth = gw_req_header(req, "authorization") + 7;
    while (*auth == ' ') auth++;
    gw_token_touch(req->lp, auth, token_rec);
    json_decref(token_rec);
  }
  /* /admin/v1/tenants[/{id}[/{scim-tokens|admin-tokens}[/{tokid}]]] */
  char path[512];
  if (strlen(req->path) >= sizeof path) {
    gw_respond_error(req, 404, "not_found", "no such admin endpoint");
    return;
  }
  snprintf(path, sizeof path, "%s", req->path + strlen("/admin/v1"));
  char *seg[7] = {0}; /* one more than the deepest route: a longer path matches none */
  int n = 0;
  for (char *save = NULL, *s = strtok_r(path, "/", &save); s && n < 7; s = strtok_r(NULL, "/", &save))
    seg[n++] = s;
  if (n >= 1 && !strcmp(seg[0], "tenants")) {
    if (n == 1) {
      if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) admin__tenants_list(req, &who);
      else if (!strcmp(req->method, "POST")) admin__tenants_create(req, &who);
      else {
        gw_resp_header(req, "Allow", "GET, POST");
        gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
      }
      return;
    }
    if (!st_tenant_id_valid(seg[1])) {
      if (who.op) gw_respond_error(req, 404, "not_found", "no such tenant");
      else gw_respond_error(req, 403, "forbidden", "this admin token is scoped to another tenant");
      return;
    }
    /* the incarnation this request begins in, for its audit record: a
     * write that outlives the tenant (a discovery) is never chained into a
     * tenant made again with the same id (a tenant without one: read at
     * the end, as for a create) */
    st_txn *utxn;
    if (st_read_begin(req->lp->srv->store, &utxn) == 0) {
      char uid[ST_TENANT_UID_LEN + 1];
      _Static_assert(sizeof req->tenant_uid == sizeof uid, "gw_req.tenant_uid holds a tenant uid");
      if (st_tenant_uid_get(utxn, seg[1], uid) == 0) memcpy(req->tenant_uid, uid, sizeof uid);
      st_txn_end(utxn);
    }
    if (n == 2) {
      admin__tenant_one(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "policy")) {
      admin__policy(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "oidc")) {
      admin__oidc(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "revocations")) {
      admin__revocations(req, &who, seg[1]);
      return;
    }
    if (n == 3 && !strcmp(seg[2], "explain")) {
      admin__explain(req, &who, seg[1]);
      return;
    }
    if (n >= 3 && n <= 5 && !strcmp(seg[2], "approvals")) {
      admin__approvals(req, &who, seg[1], n >= 4 ? seg[3] : NULL, n == 5 ? seg[4] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && !strcmp(seg[2], "audit")) {
      admin__audit(req, &who, seg[1], n == 4 ? seg[3] : NULL);
      return;
    }
    if (n == 5 && !strcmp(seg[2], "connectors") && !strcmp(seg[4], "rediscover")) {
      if (admin__reach(req, &who, seg[1])) return;
      snprintf(req->tenant, sizeof req->tenant, "%s", seg[1]);
      if (strcmp(req->method, "POST")) {
        gw_resp_header(req, "Allow", "POST");
        gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
        return;
      }
      if (!vault_connector_name_valid(seg[3])) {
        gw_respond_error(req, 404, "not_found", "no such connector");
        return;
      }
      admin__connector_rediscover(req, seg[1], seg[3]);
      return;
    }
    if ((n == 3 || n == 4) && !strcmp(seg[2], "connectors")) {
      admin__connectors(req, &who, seg[1], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && !strcmp(seg[2], "tokens")) {
      admin__employee_tokens(req, &who, seg[1], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 3 || n == 4 || (n == 5 && !strcmp(seg[4], "block"))) && !strcmp(seg[2], "oauth-clients")) {
      admin__oauth_clients(req, &who, seg[1], n >= 4 ? seg[3] : NULL, n == 5);
      return;
    }
    if ((n == 3 || n == 4) && (!strcmp(seg[2], "users") || !strcmp(seg[2], "groups"))) {
      admin__directory(req, &who, seg[1], seg[2], n == 4 ? seg[3] : NULL);
      return;
    }
    if ((n == 5 || n == 6) && !strcmp(seg[2], "users")) {
      char ref[ST_DIR_IDX_VAL_MAX + 1];
      if (!admin__seg_decode(seg[3], ref, sizeof ref)) {
        gw_respond_error(req, 404, "not_found", "no user with this id or userName in this tenant");
        return;
      }
      admin__user_actions(req, &who, seg[1], ref, seg[4], n == 6 ? seg[5] : NULL);
      return;
    }
    if ((n == 3 || n == 4) && (!strcmp(seg[2], "scim-tokens") || !strcmp(seg[2], "admin-tokens"))) {
      admin__tokens(req, &who, seg[1], seg[2][0] == 's' ? "scim" : "admin", n == 4 ? seg[3] : NULL);
      return;
    }
  }
  gw_respond_error(req, 404, "not_found", "no such admin endpoint: %s", req->path);
}

/* ---------- module table entry (gateway/core/module.h) ---------- */

static int mod_init(gw_server *srv) {
  (void)srv;
  const char *pause = getenv("MCPGATE_TEST_ADMIN_READ_PAUSE_FILE");
  if (pause && *pause)
    GW_LOG(GW_LOG_WARN, "admin", NULL, "MCPGATE_TEST_ADMIN_READ_PAUSE_FILE is set: admin reads on the pool wait "
           "while %s exists (a test hook; never set it in production)", pause);
  return 0;
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  gw_route r = {GW_RC_ADMIN, gw_admin_dispatch, NULL, 0, NULL, gw_admin_preauth};
  return gw_router_add(rt, "/admin/v1/...", &r, GW_ROUTE_PRIVATE);
}

const gw_module gw_mod_admin = {
    .name = "admin",
    .init = mod_init,
    .loop_start = gw_admin_loop_start,
    .loop_stop = gw_admin_loop_stop,
    .routes = mod_routes,
};
