/* gateway/api/admin_discover.c — connector PUT with auth
 * {"type":"oauth","discover":true}: the gateway reads what the upstream
 * says about its own authorization and registers itself there, then writes
 * an ordinary oauth connector (admin__connector_write) that also records
 * what was discovered. The pure parts are vault/discover.h.
 *
 * The steps, one fetch each, in order (a failure answers and stores
 * nothing):
 *   probe  POST initialize to the connector URL without credentials (its
 *          head only: an upstream that needs no token may answer with a
 *          stream that never ends): a 401
 *          whose WWW-Authenticate names resource_metadata gives the PRM
 *          URL; anything else falls back to the well-known URL.
 *   prm    GET the protected-resource metadata (resource must match).
 *   asm    GET the AS metadata, trying RFC 8414 then OpenID locations.
 *   dcr    POST an RFC 7591 registration, unless the AS takes Client ID
 *          Metadata Documents (then the gateway serves one: connect.c) or
 *          the stored registration at the same AS can be reused.
 *
 * Rules this file keeps, and why:
 *  - The admin set the connector URL, so discovery runs at the admin egress
 *    level; but every further URL was written by the upstream: each is
 *    checked against the egress policy before it is fetched (a literal
 *    address the policy refuses: 400 egress_refused), and host names are
 *    judged at connect time by the outbound engine. The authorize URL is
 *    only ever the browser's, as in a plain connector PUT.
 *  - Every fetch has timeouts, a body deadline and a 64 KiB body cap
 *    (pages__fetch); redirects are never followed (a 3xx is a failure).
 *    The connector's ca_file applies to every fetch (as to its refresh).
 *  - 502 discovery_failed names the step and the URL (the upstream is
 *    unreachable or its metadata malformed); 400 discovery_refused when the
 *    metadata is well-formed but unusable. No message or log line carries a
 *    document's contents or the registration's secret.
 *  - The request owns the discovery state until it answers; a client that
 *    goes away meanwhile only makes the answer land nowhere. */
#include "gateway/api/admin_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "gateway/api/pages_int.h"
#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/seal.h"
#include "vault/connect.h"
#include "vault/grant.h"
#include "vault/discover.h"
#include "vault/vault.h"

#define WWW_AUTH_MAX 4096

typedef enum { STEP_PROBE, STEP_PRM, STEP_ASM, STEP_DCR } step;

typedef struct disc {
  gw_req *req;
  gw_loop *lp;
  char tenant[64], name[40];
  json_t *body; /* the admin's PUT body */
  step st;
  char url[VAULT_DISCOVER_URL_BUF];
  char prm_url[VAULT_DISCOVER_URL_BUF + 64];
  char prm_via[16]; /* "header" | "well-known" */
  char www_auth[WWW_AUTH_MAX];
  char cand[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF];
  int ncand, icand;
  vault_prm prm;
  vault_asm as;
  char redirect[1200];
  /* the client: from CIMD, the stored registration, or DCR */
  char *client_id, *client_secret;
  char token_auth[24];
  const char *registration; /* "cimd" | "dcr" */
  /* the stored registration (a PUT of the same connector again) */
  char old_issuer[VAULT_DISCOVER_URL_BUF], old_reg[VAULT_DISCOVER_URL_BUF], old_client_id[520], old_auth[24];
  char *old_secret;
  bool old_dcr;
} disc;

static void disc_free(disc *d) {
  json_decref(d->body);
  free(d->client_id);
  vault_wipe(d->client_secret);
  vault_wipe(d->old_secret);
  OPENSSL_cleanse(d, sizeof *d);
  free(d);
}

static void failed(disc *d, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void failed(disc *d, int status, const char *fmt, ...) {
  char msg[3000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  GW_LOG(GW_LOG_WARN, "admin", &((gw_log_ctx){d->tenant, d->req->id}), "connector %s: discovery refused (%d): %s",
         d->name, status, msg);
  gw_respond_error(d->req, status,
                   status == 502 ? "discovery_failed" : status == 400 ? "discovery_refused" : "internal", "%s", msg);
  disc_free(d);
}

/* answers, frees d and leaves the calling function */
#define FAIL(...)         \
  do {                    \
    failed(__VA_ARGS__);  \
    return;               \
  } while (0)

static const char *step_name(step s) {
  switch (s) {
  case STEP_PROBE: return "probing the connector URL";
  case STEP_PRM: return "reading the protected-resource metadata";
  case STEP_ASM: return "reading the authorization server metadata";
  default: return "registering the gateway as a client (RFC 7591)";
  }
}

/* The egress check of a URL the gateway is about to fetch: 0, or answered. */
static int egress_ok(disc *d, const char *what, const char *url) {
  char why[400];
  if (gw_egress_check_url(d->lp->srv->egress[GW_OUT_EGRESS_ADMIN], url, why, sizeof why) == 0) return 0;
  GW_LOG(GW_LOG_WARN, "admin", &((gw_log_ctx){d->tenant, d->req->id}), "connector %s: discovery refused: %s %s",
         d->name, what, why);
  gw_respond_error(d->req, 400, "egress_refused", "%s %.2048s: %s", what, url, why);
  disc_free(d);
  return -1;
}

static void got(void *ud, int err, int status, const char *body, size_t len);

static void start(disc *d, step s, const char *method, const char *url, const char *const *hdr, const char *body) {
  d->st = s;
  pages_fetch_req rq = {.method = method,
                        .url = url,
                        .headers = hdr,
                        .body = body,
                        .cap = VAULT_DISCOVER_BODY_MAX,
                        .trust = url, /* admin level; literal addresses checked before */
                        .tenant = d->tenant,
                        .req_id = d->req->id,
                        .module = "vault",
                        /* the connector's own trust anchors, as its refresh uses them */
                        .ca_file = json_string_value(json_object_get(d->body, "ca_file"))};
  if (s == STEP_PROBE) {
    rq.hdr_name = "WWW-Authenticate";
    rq.hdr_out = d->www_auth;
    rq.hdr_cap = sizeof d->www_auth;
    rq.head_only = true;
  }
  int rc = pages__fetch(d->lp, &rq, got, d);
  if (rc) failed(d, 502, "%s: the request to %.2048s could not start: %s", step_name(s), url, gw_out_strerror(rc));
}

static void fetch_prm(disc *d) {
  static const char *const hdr[] = {"Accept: application/json", NULL};
  if (egress_ok(d, "the protected-resource metadata URL", d->prm_url)) return;
  start(d, STEP_PRM, "GET", d->prm_url, hdr, NULL);
}

static void fetch_asm(disc *d) {
  static const char *const hdr[] = {"Accept: application/json", NULL};
  start(d, STEP_ASM, "GET", d->cand[d->icand], hdr, NULL);
}

/* ---- the end: an ordinary oauth connector plus what was discovered ---- */

/* Without scopes from the admin: the PRM's scopes_supported (MCP
 * authorization's scope selection), as an array. */
static json_t *prm_scopes(const disc *d) {
  json_t *a = json_array();
  const char *p = d->prm.scopes;
  while (*p) {
    size_t n = strcspn(p, " ");
    json_array_append_new(a, json_stringn(p, n));
    p += n;
    while (*p == ' ') p++;
  }
  return a;
}

static void write_connector(disc *d) {
  json_t *auth = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "oauth", "authorize_url",
                           d->as.authorization_endpoint, "token_url", d->as.token_endpoint, "client_id", d->client_id,
                           "token_auth", d->token_auth);
  if (d->as.revocation_endpoint[0])
    json_object_set_new(auth, "revocation_url", json_string(d->as.revocation_endpoint));
  if (d->client_secret) json_object_set_new(auth, "client_secret", json_string(d->client_secret));
  json_t *scopes = json_object_get(json_object_get(d->body, "auth"), "scopes");
  if (scopes) json_object_set(auth, "scopes", scopes);
  else json_object_set_new(auth, "scopes", prm_scopes(d));
  json_t *b = json_deep_copy(d->body);
  json_object_set_new(b, "auth", auth);
  json_t *config = NULL;
  const char *secret = NULL;
  char err[1024];
  int rc = vault_connector_parse(b, &config, &secret, err, sizeof err);
  char *sec = NULL;
  if (!rc && secret && !(sec = strdup(secret))) rc = ST_ENOMEM;
  /* the copy held the secret: wipe jansson's buffer in place before it goes */
  json_t *cs = json_object_get(auth, "client_secret");
  if (json_is_string(cs)) OPENSSL_cleanse((char *)json_string_value(cs), json_string_length(cs));
  json_decref(b);
  if (rc) {
    json_decref(config);
    /* the admin's own fields (url, timeouts, scopes) or the endpoints */
    if (rc == VAULT_EINVALID) {
      gw_respond_error(d->req, 400, "invalid_request", "%s", err);
      disc_free(d);
    } else {
      failed(d, 500, "out of memory");
    }
    return;
  }
  char ch[256] = "", ah[256] = "";
  vault_url_host(d->url, ch, sizeof ch);
  vault_url_host(d->prm.authorization_server, ah, sizeof ah);
  json_t *a = json_object_get(config, "auth");
  json_object_set_new(a, "discover", json_true());
  json_object_set_new(a, "resource", json_string(d->prm.resource));
  json_object_set_new(a, "discovered",
                      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:b, s:s}", "resource_metadata_url", d->prm_url,
                                "resource_metadata_via", d->prm_via, "authorization_server",
                                d->prm.authorization_server, "issuer", d->as.issuer, "registration", d->registration,
                                "registration_endpoint", d->as.registration_endpoint[0] ? d->as.registration_endpoint : NULL,
                                "as_host_differs", strcmp(ch, ah) != 0, "scopes_from",
                                json_object_get(json_object_get(d->body, "auth"), "scopes") ? "admin"
                                                                                            : "resource_metadata"));
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){d->tenant, d->req->id}),
         "connector %s: discovered authorization server %s (client by %s)", d->name, d->as.issuer, d->registration);
  gw_req *req = d->req;
  char tenant[64], name[40];
  snprintf(tenant, sizeof tenant, "%s", d->tenant);
  snprintf(name, sizeof name, "%s", d->name);
  disc_free(d);
  admin__connector_write(req, tenant, name, config, sec);
}

/* After the AS metadata: the client identity. */
static void register_client(disc *d) {
  /* every endpoint the gateway will call, checked now */
  struct {
    const char *what, *url;
  } eps[] = {{"the token endpoint", d->as.token_endpoint},
             {"the revocation endpoint", d->as.revocation_endpoint},
             {"the registration endpoint", d->as.registration_endpoint}};
  for (size_t i = 0; i < sizeof eps / sizeof *eps; i++)
    if (eps[i].url[0] && egress_ok(d, eps[i].what, eps[i].url)) return;
  gw_server *srv = d->lp->srv;
  if (d->as.cimd) {
    const char *pub = srv->cfg.public_url ? srv->cfg.public_url : "";
    size_t n = strlen(pub);
    while (n && pub[n - 1] == '/') n--;
    char id[1300];
    snprintf(id, sizeof id, "%.*s/t/%s/oauth/upstream-client/%s.json", (int)n, pub, d->tenant, d->name);
    if (!(d->client_id = strdup(id))) FAIL(d, 500, "out of memory");
    snprintf(d->token_auth, sizeof d->token_auth, "none");
    d->registration = "cimd";
    write_connector(d);
    return;
  }
  if (!d->as.registration_endpoint[0]) {
    failed(d, 400,
           "the authorization server %s supports neither Client ID Metadata Documents nor dynamic client "
           "registration: register the gateway there yourself (redirect URI %s) and give auth.authorize_url, "
           "token_url, client_id and client_secret without \"discover\"",
           d->as.issuer, d->redirect);
    return;
  }
  /* the stored registration at the same AS, still usable */
  if (d->old_dcr && !strcmp(d->old_issuer, d->as.issuer) && !strcmp(d->old_reg, d->as.registration_endpoint) &&
      (d->old_secret || !strcmp(d->old_auth, "none"))) {
    if (!(d->client_id = strdup(d->old_client_id))) FAIL(d, 500, "out of memory");
    d->client_secret = d->old_secret;
    d->old_secret = NULL;
    snprintf(d->token_auth, sizeof d->token_auth, "%s", d->old_auth);
    d->registration = "dcr";
    write_connector(d);
    return;
  }
  char name[100];
  snprintf(name, sizeof name, "mcpgate for %s", d->tenant);
  char *body = NULL;
  json_t *sc = json_object_get(json_object_get(d->body, "auth"), "scopes");
  json_t *own = sc ? NULL : prm_scopes(d);
  int rc = vault_dcr_request(name, d->redirect, sc ? sc : own, d->as.dcr_auth, &body);
  json_decref(own);
  if (rc) FAIL(d, 500, "out of memory");
  static const char *const hdr[] = {"Content-Type: application/json", "Accept: application/json", NULL};
  start(d, STEP_DCR, "POST", d->as.registration_endpoint, hdr, body);
  free(body);
}

static void got(void *ud, int err, int status, const char *body, size_t len) {
  disc *d = ud;
  const char *url = d->st == STEP_PROBE  ? d->url
                    : d->st == STEP_PRM  ? d->prm_url
                    : d->st == STEP_ASM  ? d->cand[d->icand]
                                         : d->as.registration_endpoint;
  char why[600] = "";
  if (err == GW_OUT_EEGRESS) {
    GW_LOG(GW_LOG_WARN, "admin", &((gw_log_ctx){d->tenant, d->req->id}),
           "connector %s: discovery refused: %.200s is at an address the egress policy refuses", d->name, url);
    gw_respond_error(d->req, 400, "egress_refused",
                     "%s: %.2048s is at an address the operator's egress policy (egress_allow) does not allow",
                     step_name(d->st), url);
    disc_free(d);
    return;
  }
  if (err) {
    failed(d, 502, "%s: %.2048s %s", step_name(d->st), url,
           err == GW_OUT_EHEADERS && status == -1 ? "answered more than 64 KiB"
           : err == GW_OUT_EIDLE && status == -1  ? "sent its reply too slowly"
                                                  : gw_out_strerror(err));
    return;
  }
  switch (d->st) {
  case STEP_PROBE: {
    if (err || status != 401 || vault_www_auth_resource_metadata(d->www_auth, d->prm_url, sizeof d->prm_url)) {
      /* no challenge naming the metadata: the well-known location */
      if (vault_prm_well_known(d->url, d->prm_url, sizeof d->prm_url))
        FAIL(d, 400, "the connector URL cannot be turned into a metadata URL");
      snprintf(d->prm_via, sizeof d->prm_via, "well-known");
    } else {
      snprintf(d->prm_via, sizeof d->prm_via, "header");
    }
    fetch_prm(d);
    return;
  }
  case STEP_PRM: {
    if (status != 200)
      FAIL(d, status == 404 && !strcmp(d->prm_via, "well-known") ? 400 : 502,
                    "%s: %.2048s answered HTTP %d%s", step_name(d->st), url, status,
                    status == 404 ? " (does the connector do its own OAuth? the 401 named no resource_metadata and "
                                    "there is none at the well-known URL)"
                                  : "");
    int rc = vault_prm_parse(body, len, d->url, &d->prm, why, sizeof why);
    if (rc) FAIL(d, rc == VAULT_EUNUSABLE ? 400 : 502, "%s at %.2048s: %s", step_name(d->st), url, why);
    d->ncand = vault_asm_candidates(d->prm.authorization_server, d->cand);
    if (d->ncand <= 0) FAIL(d, 502, "the authorization server URL is not usable");
    d->icand = 0;
    if (egress_ok(d, "the authorization server", d->prm.authorization_server)) return;
    fetch_asm(d);
    return;
  }
  case STEP_ASM: {
    if (status != 200) {
      if (status == 404 || status == 410 || status == 400 || status == 405) {
        if (++d->icand < d->ncand) {
          fetch_asm(d);
          return;
        }
        FAIL(d, 502, "%s: no metadata for %.2048s at %s (RFC 8414) nor the OpenID locations", step_name(d->st),
                      d->prm.authorization_server, d->cand[0]);
      }
      FAIL(d, 502, "%s: %.2048s answered HTTP %d", step_name(d->st), url, status);
    }
    int rc = vault_asm_parse(body, len, d->prm.authorization_server, &d->as, why, sizeof why);
    if (rc) FAIL(d, rc == VAULT_EUNUSABLE ? 400 : 502, "%s at %.2048s: %s", step_name(d->st), url, why);
    register_client(d);
    return;
  }
  case STEP_DCR: {
    if (status != 201 && status != 200)
      FAIL(d, 502, "%s: %.2048s answered HTTP %d", step_name(d->st), url, status);
    int rc = vault_dcr_reply(body, len, d->as.dcr_auth, &d->client_id, &d->client_secret, d->token_auth, why,
                             sizeof why);
    if (rc) FAIL(d, 502, "%s at %.2048s: %s", step_name(d->st), url, why);
    d->registration = "dcr";
    write_connector(d);
    return;
  }
  }
}

void admin__connector_discover(gw_req *req, const char *tenant, const char *name, json_t *body) {
  gw_server *srv = req->lp->srv;
  const char *u = json_string_value(json_object_get(body, "url"));
  if (!vault_discover_url_ok(u)) {
    json_decref(body);
    gw_respond_error(req, 400, "invalid_request",
                     "\"url\" must be an http:// or https:// URL without spaces (the upstream MCP endpoint)");
    return;
  }
  /* the admin's own fields (description, timeouts, ca_file, scopes) are
   * checked now, before anything is registered anywhere: the same
   * validation with placeholder endpoints */
  {
    json_t *probe = json_deep_copy(body);
    json_t *pa = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "oauth", "authorize_url", "https://placeholder.invalid/a",
                           "token_url", "https://placeholder.invalid/t", "client_id", "placeholder", "token_auth", "none");
    json_t *sc = json_object_get(json_object_get(body, "auth"), "scopes");
    if (sc) json_object_set(pa, "scopes", sc);
    json_object_set_new(probe, "auth", pa);
    json_t *cfg = NULL;
    const char *sec = NULL;
    char err[1024];
    int rc = vault_connector_parse(probe, &cfg, &sec, err, sizeof err);
    json_decref(probe);
    json_decref(cfg);
    if (rc) {
      json_decref(body);
      gw_respond_error(req, 400, "invalid_request", "%s", err);
      return;
    }
  }
  if (!srv->cfg.public_url || !srv->cfg.public_url[0]) {
    json_decref(body);
    gw_respond_error(req, 400, "invalid_request",
                     "\"discover\" needs the gateway's public_url: the redirect URI and the client identity at the "
                     "upstream's authorization server are made from it");
    return;
  }
  disc *d = calloc(1, sizeof *d);
  if (!d) {
    json_decref(body);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  d->req = req;
  d->lp = req->lp;
  d->body = body;
  snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
  snprintf(d->name, sizeof d->name, "%s", name);
  snprintf(d->url, sizeof d->url, "%s", u);
  pages__connect_redirect_uri(srv, tenant, name, d->redirect, sizeof d->redirect);
  /* the stored registration, for a PUT of the same connector again */
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) {
    disc_free(d);
    return;
  }
  json_t *old = NULL;
  if (vault_connector_get(txn, tenant, name, &old) == 0) {
    json_t *a = json_object_get(old, "auth");
    json_t *ds = json_object_get(a, "discovered");
    const char *reg = json_string_value(json_object_get(ds, "registration"));
    if (reg && !strcmp(reg, "dcr")) {
      d->old_dcr = true;
      snprintf(d->old_issuer, sizeof d->old_issuer, "%s", json_string_value(json_object_get(ds, "issuer")) ?: "");
      snprintf(d->old_reg, sizeof d->old_reg, "%s",
               json_string_value(json_object_get(ds, "registration_endpoint")) ?: "");
      snprintf(d->old_client_id, sizeof d->old_client_id, "%s",
               json_string_value(json_object_get(a, "client_id")) ?: "");
      snprintf(d->old_auth, sizeof d->old_auth, "%s", json_string_value(json_object_get(a, "token_auth")) ?: "");
      if (st_secret_get_str(txn, &(st_aad){tenant, VAULT_CLIENT_KIND, name}, &d->old_secret) != 0)
        d->old_secret = NULL;
      if (!d->old_client_id[0]) d->old_dcr = false;
    }
    json_decref(old);
  }
  st_txn_end(txn);
  if (d->old_secret) {
    /* st_secret_get_str's buffer: keep a copy we free with vault_wipe */
    char *c = strdup(d->old_secret);
    st_secret_str_free(d->old_secret);
    d->old_secret = c;
  }
  if (egress_ok(d, "the connector URL", d->url)) return;
  static const char *const hdr[] = {"Content-Type: application/json", "Accept: application/json, text/event-stream",
                                    NULL};
  static const char init[] =
      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\","
      "\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpgate-discovery\",\"version\":\"1\"}}}";
  start(d, STEP_PROBE, "POST", d->url, hdr, init);
}
