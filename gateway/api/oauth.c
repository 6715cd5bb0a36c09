/* gateway/api/oauth.c — the OAuth authorization server's module entry
 * (routes, process-wide state, metrics) and its discovery documents:
 *
 *   GET /.well-known/oauth-protected-resource/t/{t}/mcp[/{c}]  (RFC 9728)
 *       one document per MCP resource: the aggregated endpoint and each
 *       connector's; each names the tenant's authorization server.
 *   GET /.well-known/oauth-authorization-server/t/{t}           (RFC 8414)
 *       the tenant's authorization server: issuer <public_url>/t/{t}, its
 *       endpoints under /t/{t}/oauth/ (global_token_revocation_endpoint:
 *       Okta's Universal Logout, global_logout.c). No OpenID configuration: the gateway
 *       is not an OpenID provider.
 *
 * Rules this file keeps, and why:
 *  - Every URL in a document is built from public_url, which has no path
 *    (config.c refuses one): RFC 8414 §3 and RFC 9728 §3 insert the
 *    well-known segment between the host and the issuer's or resource's
 *    path, so the documents must be served at the host's root.
 *  - The documents are public and read by browser-based MCP clients too:
 *    Access-Control-Allow-Origin: * on every answer (errors included, so a
 *    browser can read the 404), and a preflight (OPTIONS) is answered —
 *    the MCP SDK sends MCP-Protocol-Version with its discovery requests.
 *    Nothing secret is in them and no credential is read.
 *  - An unknown (or deleting) tenant or connector is a 404, so a client is
 *    never pointed at an authorization server that would not know it. */
#include "gateway/api/oauth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/oauth_client.h"
#include "auth/oauth_token.h"
#include "gateway/api/oauth_int.h"
#include "gateway/base/log.h"
#include "gateway/core/module.h"
#include "gateway/http/router.h"
#include "store/tenant.h"
#include "vault/vault.h"

#define PRM_PREFIX "/.well-known/oauth-protected-resource"
#define ASM_PREFIX "/.well-known/oauth-authorization-server"

/* ---- helpers */

void oauth__error(gw_req *req, int status, const char *code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  gw_respond_json(req, status, json_pack("{s:s,s:s}", "error", code, "error_description", msg));
}

int64_t oauth__now(void) { return (int64_t)time(NULL); }

void oauth__rfc3339(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *oauth__grants_view(st_txn *txn, const char *tenant, const char *user_id) {
  json_t *grants = NULL, *out = json_array(), *g;
  size_t i;
  if (!out || auth_oauth_grants(txn, tenant, user_id, &grants) != 0) {
    json_decref(grants);
    json_decref(out);
    return NULL;
  }
  json_array_foreach(grants, i, g) {
    char c1[32], c2[32];
    oauth__rfc3339((int64_t)json_integer_value(json_object_get(g, "created")), c1);
    oauth__rfc3339((int64_t)json_integer_value(json_object_get(g, "last_used")), c2);
    json_array_append_new(out, json_pack("{s:O,s:O,s:O,s:O,s:s,s:s}", "id", json_object_get(g, "id"), "client_id",
                                         json_object_get(g, "client_id"), "client_name",
                                         json_object_get(g, "client_name"), "resource", json_object_get(g, "resource"),
                                         "created", c1, "last_used", c2));
  }
  json_decref(grants);
  return out;
}

const char *oauth__split_tenant(const char *p, char tenant[64]) {
  if (strncmp(p, "/t/", 3)) return NULL;
  p += 3;
  size_t n = strcspn(p, "/");
  if (n == 0 || n > 63) return NULL;
  memcpy(tenant, p, n);
  tenant[n] = 0;
  return st_tenant_id_valid(tenant) ? p + n : NULL;
}

/* ---- the documents */

/* GET and HEAD go on; OPTIONS (a CORS preflight) and other methods are
 * answered here. */
static bool doc_method(gw_req *req) {
  gw_resp_header(req, "Access-Control-Allow-Origin", "*");
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) return true;
  if (!strcmp(req->method, "OPTIONS")) {
    gw_resp_header(req, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
    gw_resp_header(req, "Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version");
    gw_resp_header(req, "Access-Control-Max-Age", "86400");
    gw_respond(req, 204, NULL, NULL, 0);
    return false;
  }
  gw_resp_header(req, "Allow", "GET, HEAD, OPTIONS");
  oauth__error(req, 405, "method_not_allowed", "%s is not allowed here: GET this document", req->method);
  return false;
}

static void send_doc(gw_req *req, json_t *doc) {
  char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(doc);
  if (!s) {
    oauth__error(req, 500, "server_error", "out of memory");
    return;
  }
  gw_resp_header(req, "Cache-Control", "public, max-age=300");
  gw_resp_header(req, "X-Content-Type-Options", "nosniff");
  gw_respond(req, 200, "application/json", s, strlen(s));
  free(s);
}

/* The tenant's display name (its id when it has none), or the store's
 * error (ST_ENOTFOUND: no such active tenant); with connector, the
 * connector must exist too. */
static int tenant_lookup(gw_server *srv, const char *tenant, const char *connector, char name[256]) {
  st_txn *txn;
  int rc = st_read_begin(srv->store, &txn);
  if (rc) return rc;
  json_t *t = NULL, *c = NULL;
  rc = st_tenant_get(txn, tenant, &t);
  if (!rc && connector) rc = vault_connector_get(txn, tenant, connector, &c);
  st_txn_end(txn);
  const char *nm = json_string_value(json_object_get(t, "name"));
  snprintf(name, 256, "%s", nm && nm[0] ? nm : tenant);
  json_decref(t);
  json_decref(c);
  return rc;
}

static void not_found(gw_req *req, int rc, const char *what) {
  if (rc == ST_ENOTFOUND) oauth__error(req, 404, "not_found", "%s", what);
  else oauth__error(req, 503, "temporarily_unavailable", "the gateway's store cannot be read right now");
}

/* /.well-known/oauth-protected-resource/t/{t}/mcp[/{c}] */
static void prm(gw_req *req) {
  gw_server *srv = req->lp->srv;
  if (!doc_method(req)) return;
  char tenant[64], name[256];
  const char *rest = oauth__split_tenant(req->path + strlen(PRM_PREFIX), tenant);
  const char *conn = NULL;
  if (rest && !strcmp(rest, "/mcp")) conn = NULL;
  else if (rest && !strncmp(rest, "/mcp/", 5) && vault_connector_name_valid(rest + 5)) conn = rest + 5;
  else {
    oauth__error(req, 404, "not_found", "no such MCP resource");
    return;
  }
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  int rc = tenant_lookup(srv, tenant, conn, name);
  if (rc) {
    not_found(req, rc, "no such MCP resource on this gateway");
    return;
  }
  const char *pub = srv->cfg.public_url;
  char resource[1024], as[1024], rname[300];
  snprintf(resource, sizeof resource, "%s/t/%s/mcp%s%s", pub, tenant, conn ? "/" : "", conn ? conn : "");
  snprintf(as, sizeof as, "%s/t/%s", pub, tenant);
  snprintf(rname, sizeof rname, "%s via mcpgate", name);
  send_doc(req, json_pack("{s:s,s:[s],s:[s],s:s}", "resource", resource, "authorization_servers", as,
                          "bearer_methods_supported", "header", "resource_name", rname));
}

/* /.well-known/oauth-authorization-server/t/{t} */
static void as_metadata(gw_req *req) {
  gw_server *srv = req->lp->srv;
  if (!doc_method(req)) return;
  char tenant[64], name[256];
  const char *rest = oauth__split_tenant(req->path + strlen(ASM_PREFIX), tenant);
  if (!rest || rest[0]) {
    oauth__error(req, 404, "not_found", "no such authorization server");
    return;
  }
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  int rc = tenant_lookup(srv, tenant, NULL, name);
  if (rc) {
    not_found(req, rc, "no such authorization server on this gateway");
    return;
  }
  char iss[1024], authz[1100], token[1100], reg[1100], rev[1100], gtr[1100];
  snprintf(iss, sizeof iss, "%s/t/%s", srv->cfg.public_url, tenant);
  snprintf(authz, sizeof authz, "%s/oauth/authorize", iss);
  snprintf(token, sizeof token, "%s/oauth/token", iss);
  snprintf(reg, sizeof reg, "%s/oauth/register", iss);
  snprintf(rev, sizeof rev, "%s/oauth/revoke", iss);
  snprintf(gtr, sizeof gtr, "%s/oauth/global-logout", iss);
  send_doc(req, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:[s],s:[s],s:[s,s],s:[s],s:[s],s:[s],s:b,s:b}", "issuer", iss,
                          "authorization_endpoint", authz, "token_endpoint", token, "registration_endpoint", reg,
                          "revocation_endpoint", rev,
                          /* Okta's Universal Logout (draft-parecki-oauth-global-token-revocation) */
                          "global_token_revocation_endpoint", gtr, "response_types_supported", "code",
                          "response_modes_supported", "query", "grant_types_supported", "authorization_code",
                          "refresh_token", "code_challenge_methods_supported", "S256",
                          "token_endpoint_auth_methods_supported", "none",
                          "revocation_endpoint_auth_methods_supported", "none",
                          "client_id_metadata_document_supported", 1,
                          /* the authorization response carries iss (RFC 9207): mix-up defence */
                          "authorization_response_iss_parameter_supported", 1));
}

/* ---- the module */

static int mod_init(gw_server *srv) {
  gw_oauth *o = calloc(1, sizeof *o);
  if (!o) return ST_ENOMEM;
  if (uv_mutex_init(&o->cimd_mu)) {
    free(o);
    return ST_ENOMEM;
  }
  srv->oauth = o;
  return 0;
}

static void mod_fini(gw_server *srv) {
  if (srv->oauth) uv_mutex_destroy(&srv->oauth->cimd_mu);
  free(srv->oauth);
  srv->oauth = NULL;
}

static void mod_metrics(gw_server *srv, gw_buf *o) {
  static const char *const reg[OAUTH_REG_N] = {"created", "refused", "full"};
  static const char *const cimd[OAUTH_CIMD_N] = {"ok", "refused", "failed"};
  gw_oauth *st = srv->oauth;
  if (!st) return;
  gw_buf_appends(o, "# HELP mcpgate_oauth_registrations_total OAuth dynamic client registrations, by result "
                    "(refused: invalid metadata; full: the tenant holds dcr_clients_max clients).\n"
                    "# TYPE mcpgate_oauth_registrations_total counter\n");
  for (int i = 0; i < OAUTH_REG_N; i++)
    gw_buf_printf(o, "mcpgate_oauth_registrations_total{result=\"%s\"} %llu\n", reg[i],
                  (unsigned long long)atomic_load_explicit(&st->registrations[i], memory_order_relaxed));
  gw_buf_appends(o, "# HELP mcpgate_oauth_cimd_fetches_total Fetches of OAuth client metadata documents, by result "
                    "(refused: the document failed a check; failed: no usable answer — address refused, "
                    "connection, TLS, timeout, HTTP status, redirect).\n"
                    "# TYPE mcpgate_oauth_cimd_fetches_total counter\n");
  for (int i = 0; i < OAUTH_CIMD_N; i++)
    gw_buf_printf(o, "mcpgate_oauth_cimd_fetches_total{result=\"%s\"} %llu\n", cimd[i],
                  (unsigned long long)atomic_load_explicit(&st->cimd_fetches[i], memory_order_relaxed));
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  (void)srv;
  static const gw_route prm_r = {GW_RC_OAUTH, prm, NULL, GW_ROUTE_NO_BODY, NULL, NULL};
  static const gw_route as_r = {GW_RC_OAUTH, as_metadata, NULL, GW_ROUTE_NO_BODY, NULL, NULL};
  static const gw_route reg_r = {GW_RC_OAUTH, oauth__register, NULL, AUTH_OAUTH_METADATA_MAX,
                                 oauth__register_early_error, NULL};
  /* the whole well-known subtrees: their 404s are JSON with CORS too */
  int rc = gw_router_add(rt, PRM_PREFIX "/...", &prm_r, 0);
  if (!rc) rc = gw_router_add(rt, ASM_PREFIX "/...", &as_r, 0);
  if (!rc) rc = gw_router_add(rt, "/t/{}/oauth/register", &reg_r, 0);
  return rc;
}

const gw_module gw_mod_oauth = {
    .name = "oauth",
    .init = mod_init,
    .fini = mod_fini,
    .routes = mod_routes,
    .metrics = mod_metrics,
};
