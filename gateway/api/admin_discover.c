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
 *  - The admin set the connector URL, so its probe runs at the admin egress
 *    level; but every further URL was written by the upstream, which may
 *    be compromised: it is fetched at the admin level (egress_allow) only
 *    on a host the admin chose — the connector URL's, or that of the
 *    authorization server the admin named (auth.authorization_server) —
 *    and at the untrusted level (public addresses, egress_allow_untrusted)
 *    anywhere else (vault/discover.h says why: else the upstream aims the
 *    gateway's registration, token and revocation requests at the internal
 *    services the operator opened for admins). Each is checked at its
 *    level before it is fetched (a literal address the policy refuses: 400
 *    egress_refused), and host names are judged at connect time by the
 *    outbound engine; the stored connector keeps the admin's choice, so
 *    its refresh and revocation requests go out at the same levels. The
 *    authorize URL is only ever the browser's, as in a plain connector PUT.
 *  - Every fetch has timeouts, a body deadline and a 64 KiB body cap
 *    (pages__fetch); redirects are never followed (a 3xx is a failure).
 *    The connector's ca_file applies to every fetch (as to its refresh);
 *    a tenant admin's was checked before (admin__ca_file_allowed), and one
 *    the engine cannot use fails as a TLS failure does (no word of the
 *    file: the operator's log has it).
 *  - A connector URL with query values is refused (QUERY_REFUSED): they
 *    are secret (vault.h), and the discovered resource indicator would
 *    carry them to the authorization server and employees' browsers. So
 *    the URLs below never hold a gateway-held secret.
 *  - 502 discovery_failed names the step and the URL (the upstream is
 *    unreachable or its metadata malformed); 400 discovery_refused when the
 *    metadata is well-formed but unusable. No message or log line carries a
 *    document's contents or the registration's secret.
 *  - The request owns the discovery state until it answers; a client that
 *    goes away meanwhile only makes the answer land nowhere.
 *  - The steps may take minutes at servers the tenant admin chose: the
 *    write happens only in the tenant incarnation the PUT began in (its
 *    uid, checked in the writer job), never in a tenant deleted and made
 *    again with the same id meanwhile.
 *
 * Reading a stored connector again (vault/rediscover.h says when): the
 * same steps from the stored record (its URL, the admin's own fields and
 * scopes), run for POST …/connectors/{c}/rediscover (answering it) or by
 * the schedule on the primary loop (no request: outcomes are logged and
 * recorded in the schedule, GET …/connectors/{c} shows them). Its result
 * is written only when something changed — endpoints, issuer, client — and
 * only if nobody wrote the connector since the reading began (the whole
 * record is compared in the writer job); a change of client or
 * authorization server cuts the employees' grants as an admin PUT does
 * (their refresh tokens belong to the old client). When the token endpoint
 * rejected the stored registration (invalid_client) or its secret is about
 * to lapse, the reading registers anew instead of reusing it. One
 * background reading at a time per process.
 *
 * An admin's discoveries (PUTs and POST …/rediscover) each hold a slot of
 * their request (gw_limits_discover_enter): one per connector and
 * GW_DISCOVER_PER_TENANT per tenant at once, else 429 with Retry-After —
 * a tenant admin's script cannot register hundreds of clients at the
 * upstreams at once, nor hold hundreds of transfers. */
#include "gateway/api/admin_int.h"
#include "gateway/base/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "gateway/api/pages_int.h"
#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/seal.h"
#include "store/url_query.h"
#include "vault/connect.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "vault/discover.h"
#include "vault/vault.h"

#define WWW_AUTH_MAX 4096
/* A connector URL whose query holds values: its values are secret (sealed,
 * shown as "…": vault.h), and discovery would copy the URL into the
 * resource indicator (RFC 8707) that goes to the authorization server and,
 * in the authorize URL, to every employee's browser. */
#define QUERY_REFUSED                                                                                              \
  "\"url\" has a query, whose values the gateway keeps secret (sealed, shown as …); discovery would copy them into " \
  "the resource indicator that the authorization server and employees' browsers see: give auth.authorize_url, "     \
  "token_url and client_id without \"discover\", or a URL without query values"

typedef enum { STEP_PROBE, STEP_PRM, STEP_ASM, STEP_DCR } step;

typedef struct disc {
  gw_req *req;
  gw_loop *lp;
  char tenant[64], name[40];
  char uid[ST_TENANT_UID_LEN + 1]; /* the tenant incarnation the PUT began in */
  json_t *body; /* the admin's PUT body */
  bool ca_stored; /* its ca_file is a tenant admin's allowed only as the stored value (admin__ca_file_allowed) */
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
  int64_t secret_expires_at; /* of the DCR registration (unix s; 0 never) */
  int64_t old_expires;       /* the stored registration's */
  /* reading a stored connector again (req NULL: the schedule's) */
  bool again;
  bool fresh;              /* register anew: never reuse the stored registration */
  char reason[16];
  json_t *stored;          /* the stored record */
  struct gw_rediscover *rd; /* the schedule's driver (background only) */
} disc;

/* The schedule's driver on the primary loop (one background reading at a
 * time). Freed when stopped and idle. */
typedef struct gw_rediscover {
  gw_loop *lp;
  uv_timer_t timer;
  bool busy, stopping, timer_open;
} gw_rediscover;

static void rd_idle(gw_rediscover *rd);

static void disc_free(disc *d) {
  json_decref(d->body);
  json_decref(d->stored);
  free(d->client_id);
  vault_wipe(d->client_secret);
  vault_wipe(d->old_secret);
  OPENSSL_cleanse(d, sizeof *d);
  free(d);
}

static void again_finish(disc *d, json_t *config, char *secret, const char *result, const char *error);

static void fail_as(disc *d, int status, const char *code, const char *msg) {
  GW_LOG(GW_LOG_WARN, "admin", &((gw_log_ctx){d->tenant, d->req ? d->req->id : NULL}),
         "connector %s: discovery %s (%d): %s", d->name, d->again ? "again failed" : "refused", status, msg);
  if (d->again) {
    /* recorded in the schedule (backoff), answered by again_finish */
    if (d->req) gw_respond_error(d->req, status, code, "%s", msg);
    d->req = NULL;
    again_finish(d, NULL, NULL, "failed", msg);
    return;
  }
  gw_respond_error(d->req, status, code, "%s", msg);
  disc_free(d);
}

static void failed(disc *d, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void failed(disc *d, int status, const char *fmt, ...) {
  char msg[3000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fail_as(d, status, status == 502 ? "discovery_failed" : status == 400 ? "discovery_refused" : "internal", msg);
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

/* The authorization server the admin named (auth.authorization_server), or NULL. */
static const char *admin_as(const disc *d) {
  return json_string_value(json_object_get(json_object_get(d->body, "auth"), "authorization_server"));
}

/* The egress level url is fetched at (rule above; vault/discover.h). */
static int level_of(const disc *d, const char *url) {
  return vault_discover_url_vouched(d->url, admin_as(d), url) ? GW_OUT_EGRESS_ADMIN : GW_OUT_EGRESS_UNTRUSTED;
}

/* What a refusal at the untrusted level adds: why egress_allow did not apply. */
#define UNTRUSTED_WHY                                                                                             \
  "; the upstream named it on another host than the connector URL, so egress_allow does not apply to it (only " \
  "egress_allow_untrusted, as for URLs outsiders supply): if it is the service's own authorization server, name " \
  "its issuer in auth.authorization_server"

/* The egress check of a URL the gateway is about to fetch: 0, or answered. */
static int egress_ok(disc *d, const char *what, const char *url) {
  char why[400];
  int lv = level_of(d, url);
  if (gw_egress_check_url(d->lp->srv->egress[lv], url, why, sizeof why) == 0) return 0;
  char msg[3000];
  snprintf(msg, sizeof msg, "%s %.2048s: %s%s", what, url, why, lv == GW_OUT_EGRESS_UNTRUSTED ? UNTRUSTED_WHY : "");
  fail_as(d, 400, "egress_refused", msg);
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
                        /* its level (egress_ok checked literal addresses at it): the
                         * admin's on a host the admin chose, else untrusted */
                        .trust = level_of(d, url) == GW_OUT_EGRESS_ADMIN ? url : NULL,
                        .tenant = d->tenant,
                        .req_id = d->req ? d->req->id : NULL,
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
  /* a ca_file the engine cannot use (GW_OUT_ETLS before anything starts)
   * reads as the TLS failure it causes: the admin who reads this learns
   * nothing of the host's files (the operator's log has which) */
  if (rc == GW_OUT_ETLS) failed(d, 502, "%s: %.2048s %s", step_name(s), url, gw_out_strerror(rc));
  else if (rc)
    failed(d, 502, "%s: the request to %.2048s could not start: %s", step_name(s), url, gw_out_strerror(rc));
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
    vault_wipe(sec);
    /* the admin's own fields (url, timeouts, scopes) or the endpoints */
    if (rc == VAULT_EINVALID) fail_as(d, 400, "invalid_request", err);
    else failed(d, 500, "out of memory");
    return;
  }
  char ch[256] = "", ah[256] = "";
  vault_url_host(d->url, ch, sizeof ch);
  vault_url_host(d->prm.authorization_server, ah, sizeof ah);
  json_t *a = json_object_get(config, "auth");
  json_object_set_new(a, "discover", json_true());
  /* the admin's own word: its host keeps the admin egress level */
  if (admin_as(d)) json_object_set_new(a, "authorization_server", json_string(admin_as(d)));
  json_object_set_new(a, "resource", json_string(d->prm.resource));
  json_t *ds = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:b, s:s}", "resource_metadata_url", d->prm_url,
                         "resource_metadata_via", d->prm_via, "authorization_server", d->prm.authorization_server,
                         "issuer", d->as.issuer, "registration", d->registration, "registration_endpoint",
                         d->as.registration_endpoint[0] ? d->as.registration_endpoint : NULL, "as_host_differs",
                         strcmp(ch, ah) != 0, "scopes_from",
                         json_object_get(json_object_get(d->body, "auth"), "scopes") ? "admin" : "resource_metadata");
  if (d->secret_expires_at > 0) /* unix seconds, as RFC 7591 gives it */
    json_object_set_new(ds, "client_secret_expires_at", json_integer(d->secret_expires_at));
  json_object_set_new(a, "discovered", ds);
  if (d->again) {
    /* the same as stored (endpoints, issuer, client and its secret): nothing to write */
    bool same = json_equal(a, json_object_get(d->stored, "auth")) &&
                !strcmp(json_string_value(json_object_get(config, "url")) ?: "",
                        json_string_value(json_object_get(d->stored, "url")) ?: "");
    if (same && d->fresh && d->client_secret) same = false; /* registered anew: a new secret */
    if (same) {
      json_decref(config);
      vault_wipe(sec);
      again_finish(d, NULL, NULL, "unchanged", NULL);
    } else {
      GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){d->tenant, d->req ? d->req->id : NULL}),
             "connector %s: read again (%s): authorization server %s, client by %s — changed", d->name, d->reason,
             d->as.issuer, d->registration);
      again_finish(d, config, sec, "changed", NULL);
    }
    return;
  }
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){d->tenant, d->req->id}),
         "connector %s: discovered authorization server %s (client by %s)", d->name, d->as.issuer, d->registration);
  gw_req *req = d->req;
  char tenant[64], name[40], uid[ST_TENANT_UID_LEN + 1];
  snprintf(tenant, sizeof tenant, "%s", d->tenant);
  snprintf(name, sizeof name, "%s", d->name);
  memcpy(uid, d->uid, sizeof uid);
  bool ca_stored = d->ca_stored;
  disc_free(d);
  admin__connector_write(req, tenant, name, uid, config, sec, ca_stored);
}

/* A scheduled reading (no admin present) whose upstream now names an
 * authorization server on another host than before and than its own:
 * employees would be sent to sign in there. An admin accepts that (POST
 * …/rediscover or a PUT), not the schedule: refused before anything is
 * fetched from or registered at that server. 1 when refused (answered). */
static int moved_elsewhere(disc *d) {
  if (!d->again || d->req) return 0;
  char oh[256] = "", nh[256] = "", ch[256] = "";
  vault_url_host(json_string_value(json_object_get(json_object_get(json_object_get(d->stored, "auth"), "discovered"),
                                                   "authorization_server")) ?: "",
                 oh, sizeof oh);
  vault_url_host(d->prm.authorization_server, nh, sizeof nh);
  vault_url_host(d->url, ch, sizeof ch);
  if (!strcmp(oh, nh) || !strcmp(ch, nh)) return 0;
  failed(d, 400,
         "the upstream now names an authorization server on another host (%.255s, was %.255s): check that it "
         "belongs to the same service, then POST /admin/v1/tenants/%s/connectors/%s/rediscover to accept it (one "
         "on an internal address: PUT the connector naming its issuer in auth.authorization_server)",
         nh, oh[0] ? oh : "none", d->tenant, d->name);
  return 1;
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
  if (d->old_dcr && !d->fresh && !strcmp(d->old_issuer, d->as.issuer) && !strcmp(d->old_reg, d->as.registration_endpoint) &&
      (d->old_secret || !strcmp(d->old_auth, "none"))) {
    if (!(d->client_id = strdup(d->old_client_id))) FAIL(d, 500, "out of memory");
    d->client_secret = d->old_secret;
    d->old_secret = NULL;
    d->secret_expires_at = d->old_expires;
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
    char msg[3000];
    bool untrusted = level_of(d, url) == GW_OUT_EGRESS_UNTRUSTED;
    snprintf(msg, sizeof msg, "%s: %.2048s is at an address the operator's egress policy (%s) does not allow%s",
             step_name(d->st), url, untrusted ? "egress_allow_untrusted" : "egress_allow",
             untrusted ? UNTRUSTED_WHY : "");
    fail_as(d, 400, "egress_refused", msg);
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
    int rc = vault_prm_parse_for(body, len, d->url, admin_as(d), &d->prm, why, sizeof why);
    if (rc) FAIL(d, rc == VAULT_EUNUSABLE ? 400 : 502, "%s at %.2048s: %s", step_name(d->st), url, why);
    d->ncand = vault_asm_candidates(d->prm.authorization_server, d->cand);
    if (d->ncand <= 0) FAIL(d, 502, "the authorization server URL is not usable");
    d->icand = 0;
    if (moved_elsewhere(d)) return;
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
    int rc = vault_dcr_reply(body, len, d->as.dcr_auth, &d->client_id, &d->client_secret, d->token_auth,
                             &d->secret_expires_at, why, sizeof why);
    if (rc) FAIL(d, 502, "%s at %.2048s: %s", step_name(d->st), url, why);
    d->registration = "dcr";
    write_connector(d);
    return;
  }
  }
}

/* The stored record's registration (reused by a PUT of the same
 * connector, unless registering anew) and, to read it again, the record. */
static void load_stored(disc *d, st_txn *txn) {
  json_t *old = NULL;
  if (vault_connector_get(txn, d->tenant, d->name, &old) != 0) return;
  json_t *a = json_object_get(old, "auth");
  json_t *ds = json_object_get(a, "discovered");
  const char *reg = json_string_value(json_object_get(ds, "registration"));
  if (reg && !strcmp(reg, "dcr")) {
    d->old_dcr = true;
    snprintf(d->old_issuer, sizeof d->old_issuer, "%s", json_string_value(json_object_get(ds, "issuer")) ?: "");
    snprintf(d->old_reg, sizeof d->old_reg, "%s", json_string_value(json_object_get(ds, "registration_endpoint")) ?: "");
    snprintf(d->old_client_id, sizeof d->old_client_id, "%s", json_string_value(json_object_get(a, "client_id")) ?: "");
    snprintf(d->old_auth, sizeof d->old_auth, "%s", json_string_value(json_object_get(a, "token_auth")) ?: "");
    d->old_expires = json_integer_value(json_object_get(ds, "client_secret_expires_at"));
    char *sec = NULL;
    if (st_secret_get_str(txn, &(st_aad){d->tenant, VAULT_CLIENT_KIND, d->name}, &sec) == 0 && sec) {
      /* st_secret_get_str's buffer: keep a copy we free with vault_wipe */
      d->old_secret = strdup(sec);
      st_secret_str_free(sec);
    }
    if (!d->old_client_id[0]) d->old_dcr = false;
  }
  if (d->again) {
    d->stored = old;
  } else {
    json_decref(old);
  }
}

/* The first fetch: the probe of the connector URL. */
static void begin(disc *d) {
  if (egress_ok(d, "the connector URL", d->url)) return;
  static const char *const hdr[] = {"Content-Type: application/json", "Accept: application/json, text/event-stream",
                                    NULL};
  static const char init[] =
      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\","
      "\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpgate-discovery\",\"version\":\"1\"}}}";
  start(d, STEP_PROBE, "POST", d->url, hdr, init);
}

void admin__connector_discover(gw_req *req, const char *tenant, const char *name, json_t *body, bool ca_stored) {
  gw_server *srv = req->lp->srv;
  const char *u = json_string_value(json_object_get(body, "url"));
  char why[300];
  if (!vault_discover_url_ok(u)) {
    json_decref(body);
    gw_respond_error(req, 400, "invalid_request",
                     "\"url\" must be an http:// or https:// URL without spaces (the upstream MCP endpoint)");
    return;
  }
  /* before anything is fetched: user information would go out as Basic
   * auth to every URL of the discovery (store/url_query.h's rule) */
  if (st_url_authority_check(u, why, sizeof why)) {
    json_decref(body);
    gw_respond_error(req, 400, "invalid_request", "\"url\": %s", why);
    return;
  }
  if (vault_url_has_secret(u)) {
    json_decref(body);
    gw_respond_error(req, 400, "invalid_request", "%s", QUERY_REFUSED);
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
  d->ca_stored = ca_stored;
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
  if (st_tenant_uid_get(txn, tenant, d->uid) != 0) {
    st_txn_end(txn);
    disc_free(d);
    gw_respond_error(req, 404, "not_found", "no such tenant");
    return;
  }
  load_stored(d, txn);
  st_txn_end(txn);
  begin(d);
}

/* ---- reading a stored connector again ----------------------------------------- */

#define REDISCOVER_POLL_MS 2000
#define REDISCOVER_FAIL_CAP_MS (6LL * 3600 * 1000)

int64_t admin__discover_next_due(const gw_server *srv, const json_t *config, int64_t now, const char **reason) {
  int64_t due = srv->cfg.discovery_refresh_s > 0 ? now + srv->cfg.discovery_refresh_s * 1000 : 0;
  *reason = "scheduled";
  /* a registration's secret that lapses: register anew an hour before (or
   * half-way there when less is left) */
  json_int_t exp = json_integer_value(
      json_object_get(json_object_get(json_object_get(config, "auth"), "discovered"), "client_secret_expires_at"));
  if (exp > 0) {
    int64_t e = (int64_t)exp * 1000, lead = 3600 * 1000;
    if (e - now < 2 * lead) lead = (e - now) / 2;
    int64_t x = e - (lead > 0 ? lead : 0);
    if (x < now) x = now;
    if (!due || x < due) {
      due = x;
      *reason = "expiring";
    }
  }
  return due;
}

typedef struct again_job {
  char actor[48]; /* the request's caller (req->actor), checked again in the write; "" for the schedule */
  gw_loop *lp;
  gw_req *req;             /* POST …/rediscover, or NULL */
  gw_rediscover *rd;       /* the schedule's driver, or NULL */
  char tenant[64], name[40], now[32], reason[16];
  json_t *stored;          /* the record the reading began from: the write applies only if it is still so */
  json_t *config;          /* to write, or NULL (unchanged, failed) */
  char *secret;            /* wiped */
  const char *result;      /* "changed" | "unchanged" | "failed" */
  char error[VAULT_REDISCOVER_ERROR_MAX + 1];
  int64_t now_ms, next_due;
  const char *next_reason;
  bool fresh;              /* the reading registered anew (or tried to) */
  bool superseded, gone;   /* out: the connector was written or deleted meanwhile */
  vault_put_out put;       /* out: what the write did */
  char epoch[ST_TOKEN_ID_BUFSZ]; /* the connector's epoch if the write moves or rekeys it (drawn here: jobs are pure) */
} again_job;

static void again_job_free(again_job *j) {
  json_decref(j->stored);
  json_decref(j->config);
  vault_wipe(j->secret);
  free(j);
}

static int job_again(st_txn *txn, void *arg) {
  again_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  j->superseded = j->gone = false;
  memset(&j->put, 0, sizeof j->put);
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, j->tenant, j->name, &rec);
  if (rc == ST_ENOTFOUND) {
    j->gone = true;
    return vault_rediscover_cancel(txn, j->tenant, j->name);
  }
  if (rc) return rc;
  /* the whole record, not its "updated" (seconds: two writes in one
   * second would look alike) */
  bool same = j->stored && json_equal(rec, j->stored);
  json_decref(rec);
  if (!same) {
    j->superseded = true; /* the admin's write scheduled its own reading */
    return 0;
  }
  if (j->config && (rc = vault_connector_put(txn, j->tenant, j->name, j->config, j->secret, j->now, j->epoch, &j->put)))
    return rc;
  rc = vault_rediscover_done(txn, j->tenant, j->name, j->now_ms, j->result, j->result[0] == 'f' ? j->error : NULL,
                             j->next_due, j->next_reason, j->fresh);
  if (rc == ST_ENOTFOUND) {
    rc = vault_rediscover_schedule(txn, j->tenant, j->name, j->next_due, j->next_reason, false);
    if (!rc)
      rc = vault_rediscover_done(txn, j->tenant, j->name, j->now_ms, j->result, j->result[0] == 'f' ? j->error : NULL,
                                 j->next_due, j->next_reason, j->fresh);
  }
  return rc;
}

/* The admin's view of a connector after it was read again. */
static void answer_again(again_job *j) {
  gw_req *req = j->req;
  st_txn *txn;
  json_t *rec = NULL, *v = NULL;
  if (st_read_begin(j->lp->srv->store, &txn) == 0) {
    vault_connector_get(txn, j->tenant, j->name, &rec);
    if (rec) v = admin__connector_view(j->lp->srv, txn, j->tenant, rec);
    st_txn_end(txn);
  }
  json_decref(rec);
  if (!v) {
    gw_respond_error(req, 404, "not_found", "no such connector");
    return;
  }
  json_object_set_new(json_object_get(v, "rediscovery"), "result", json_string(j->result));
  gw_respond_json(req, 200, v);
}

static void done_again(int status, void *arg) {
  again_job *j = arg;
  gw_log_ctx lc = {j->tenant, j->req ? j->req->id : NULL};
  if (status) {
    GW_LOG(GW_LOG_WARN, "admin", &lc, "connector %s: recording its reading again failed: %s", j->name,
           gw_api_strerror(status));
    if (j->req && !admin__job_error(j->req, status, "connector"))
      gw_respond_error(j->req, 500, "internal", "the store refused the write");
  } else if (j->gone) {
    GW_LOG(GW_LOG_INFO, "admin", &lc, "connector %s was deleted while it was read again", j->name);
    if (j->req) gw_respond_error(j->req, 404, "not_found", "the connector was deleted meanwhile");
  } else if (j->superseded) {
    GW_LOG(GW_LOG_INFO, "admin", &lc, "connector %s was written while it was read again: that reading is dropped",
           j->name);
    if (j->req)
      gw_respond_error(j->req, 409, "conflict", "the connector was changed while it was read again; read it again");
  } else {
    if (j->result[0] != 'f')
      GW_LOG(GW_LOG_INFO, "admin", &lc, "connector %s read again (%s): %s%s", j->name, j->reason, j->result,
             j->put.moved || j->put.rekeyed ? "; its upstream sessions and live exchanges ended" : "");
    if (j->req) answer_again(j);
  }
  gw_rediscover *rd = j->rd;
  again_job_free(j);
  if (rd) rd_idle(rd);
}

/* Ends a reading again: records its outcome (and writes the changed
 * connector) in a writer job; the request, if any, is answered from there
 * (a failure was answered already: d->req is NULL then). Frees d. */
static void again_finish(disc *d, json_t *config, char *secret, const char *result, const char *error) {
  gw_rediscover *rd = d->rd;
  again_job *j = calloc(1, sizeof *j);
  if (!j || (rd && rd->stopping)) {
    json_decref(config);
    vault_wipe(secret);
    if (d->req) gw_respond_error(d->req, 500, "internal", "out of memory");
    disc_free(d);
    free(j);
    if (rd) rd_idle(rd);
    return;
  }
  j->lp = d->lp;
  j->req = d->req;
  if (d->req) snprintf(j->actor, sizeof j->actor, "%s", d->req->actor);
  j->rd = rd;
  snprintf(j->tenant, sizeof j->tenant, "%s", d->tenant);
  snprintf(j->name, sizeof j->name, "%s", d->name);
  j->stored = d->stored ? json_incref(d->stored) : NULL;
  snprintf(j->reason, sizeof j->reason, "%s", d->reason);
  j->fresh = d->fresh;
  admin__now_rfc3339(j->now);
  j->config = config;
  j->secret = secret;
  j->result = result;
  snprintf(j->error, sizeof j->error, "%s", error ? error : "");
  j->now_ms = gw_wall_ms();
  if (config && st_token_id_new(j->epoch) != 0) {
    /* no epoch, no write (the put refuses one without): as a failed store */
    if (j->req) gw_respond_error(j->req, 500, "internal", "no random bytes for the connector's epoch");
    disc_free(d);
    again_job_free(j);
    if (rd) rd_idle(rd);
    return;
  }
  if (!strcmp(result, "failed")) {
    /* retried with backoff, for the same reason (a registration that must
     * be made anew stays so) */
    int attempts = 0;
    st_txn *txn;
    if (st_read_begin(d->lp->srv->store, &txn) == 0) {
      json_t *st = vault_rediscover_status(txn, d->tenant, d->name);
      attempts = (int)json_integer_value(json_object_get(st, "attempts"));
      json_decref(st);
      st_txn_end(txn);
    }
    int64_t per = d->lp->srv->cfg.discovery_refresh_s * 1000;
    int64_t cap = per > 0 && per < REDISCOVER_FAIL_CAP_MS ? per : REDISCOVER_FAIL_CAP_MS;
    j->next_due = j->now_ms + vault_rediscover_backoff_ms(attempts + 1, cap);
    j->next_reason = !strcmp(d->reason, "rejected") ? "rejected" : !strcmp(d->reason, "expiring") ? "expiring"
                                                                                                   : "scheduled";
  } else {
    j->next_due = admin__discover_next_due(d->lp->srv, config ? config : d->stored, j->now_ms, &j->next_reason);
  }
  disc_free(d);
  if (gw_loop_submit(j->lp, job_again, done_again, j) != 0) {
    if (j->req) gw_respond_error(j->req, 503, "store_busy", "the store cannot take writes right now");
    again_job_free(j);
    if (rd) rd_idle(rd);
  }
}

/* The PUT body the admin gave, rebuilt from a stored discovered connector. */
static json_t *stored_body(const json_t *rec) {
  json_t *b = json_object();
  static const char *const keep[] = {"url", "description", "ca_file", "timeouts", NULL};
  for (const char *const *k = keep; *k; k++)
    if (json_object_get(rec, *k)) json_object_set(b, *k, json_object_get(rec, *k));
  json_t *a = json_object_get(rec, "auth");
  json_t *auth = json_pack("{s:s, s:b}", "type", "oauth", "discover", 1);
  if (!strcmp(json_string_value(json_object_get(json_object_get(a, "discovered"), "scopes_from")) ?: "", "admin") &&
      json_object_get(a, "scopes"))
    json_object_set(auth, "scopes", json_object_get(a, "scopes"));
  if (json_is_string(json_object_get(a, "authorization_server")))
    json_object_set(auth, "authorization_server", json_object_get(a, "authorization_server"));
  json_object_set_new(b, "auth", auth);
  return b;
}

/* Starts reading (tenant, name) again. 0: started (d answers req, or tells
 * rd); ST_ENOTFOUND: no such discovered connector; GW_API_* / ST_E* else
 * (nothing started). */
static int start_again(gw_loop *lp, gw_req *req, gw_rediscover *rd, const char *tenant, const char *name,
                       const char *reason, bool fresh) {
  gw_server *srv = lp->srv;
  disc *d = calloc(1, sizeof *d);
  if (!d) return ST_ENOMEM;
  d->req = req;
  d->lp = lp;
  d->rd = rd;
  d->again = true;
  d->fresh = fresh;
  snprintf(d->reason, sizeof d->reason, "%s", reason);
  snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
  snprintf(d->name, sizeof d->name, "%s", name);
  st_txn *txn;
  int rc = st_read_begin(srv->store, &txn);
  if (rc) {
    free(d);
    return rc;
  }
  load_stored(d, txn);
  st_txn_end(txn);
  if (!d->stored || !json_is_true(json_object_get(json_object_get(d->stored, "auth"), "discover"))) {
    d->rd = NULL;
    d->req = NULL;
    disc_free(d);
    return ST_ENOTFOUND;
  }
  d->body = stored_body(d->stored);
  snprintf(d->url, sizeof d->url, "%s", json_string_value(json_object_get(d->stored, "url")) ?: "");
  pages__connect_redirect_uri(srv, tenant, name, d->redirect, sizeof d->redirect);
  if (json_is_true(json_object_get(d->stored, "url_sealed")) || vault_url_has_secret(d->url)) {
    failed(d, 400, "%s", QUERY_REFUSED); /* stored before discovery refused such URLs */
    return 0;
  }
  if (!srv->cfg.public_url || !srv->cfg.public_url[0]) {
    failed(d, 400, "the gateway's public_url is not set: a discovered connector cannot be read again without it");
    return 0;
  }
  if (rd) rd->busy = true;
  begin(d);
  return 0;
}

int admin__discover_slot(gw_req *req, const char *tenant, const char *name) {
  int busy = gw_limits_discover_enter(req, tenant, name);
  if (busy == GW_DISCOVER_CONNECTOR)
    gw_respond_error(req, 429, "discovery_in_progress",
                     "connector \"%s\" is being discovered (or read again) already: one at a time per connector; "
                     "retry after Retry-After seconds",
                     name);
  else if (busy)
    gw_respond_error(req, 429, "too_many_discoveries",
                     "this tenant has %d connector discoveries (PUTs with \"discover\":true, POST …/rediscover) "
                     "running, the most at once: retry after Retry-After seconds",
                     GW_DISCOVER_PER_TENANT);
  return busy ? -1 : 0;
}

void admin__connector_rediscover(gw_req *req, const char *tenant, const char *name) {
  /* an optional body: {"register":"new"} registers the gateway anew even
   * when the stored registration would do */
  bool fresh = false;
  if (req->body_len) {
    /* a body is application/json like every admin body (415 otherwise) */
    json_t *b = admin__parse_body(req);
    if (!b) return;
    const char *k;
    json_t *v;
    bool ok = true;
    json_object_foreach(b, k, v) {
        if (strcmp(k, "register")) ok = false;
      }
    const char *r = json_string_value(json_object_get(b, "register"));
    if (ok && json_object_get(b, "register") && (!r || (strcmp(r, "new") && strcmp(r, "reuse")))) ok = false;
    fresh = r && !strcmp(r, "new");
    json_decref(b);
    if (!ok) {
      gw_respond_error(req, 400, "invalid_request",
                       "the body is optional; if given: {\"register\": \"new\"} (register the gateway anew at the "
                       "authorization server) or {\"register\": \"reuse\"}");
      return;
    }
  }
  /* each may register a new client at the upstream: a few at once (the
   * slot is the request's; it answers once the reading ended) */
  if (admin__discover_slot(req, tenant, name)) return;
  int rc = start_again(req->lp, req, NULL, tenant, name, "admin", fresh);
  if (rc == ST_ENOTFOUND)
    gw_respond_error(req, 404, "not_found",
                     "no connector \"%s\" with auth {\"type\":\"oauth\",\"discover\":true} in this tenant", name);
  else if (rc)
    gw_respond_error(req, 503, "store_busy", "the store cannot be read right now");
}

/* ---- the schedule's driver (primary loop) --------------------------------------- */

static void rd_tick(uv_timer_t *t);

static void rd_on_closed(uv_handle_t *h) {
  gw_rediscover *rd = h->data;
  rd->timer_open = false;
  if (!rd->busy) free(rd);
}

/* a reading ended (or never started) */
static void rd_idle(gw_rediscover *rd) {
  rd->busy = false;
  if (rd->stopping) {
    if (!rd->timer_open) free(rd);
    return;
  }
  /* the next due one soon after, not a whole poll later */
  uv_timer_start(&rd->timer, rd_tick, 50, 0);
}

/* one job: drop the entry of a connector that is gone or no longer discovered */
typedef struct cancel_job {
  gw_rediscover *rd;
  char tenant[64], name[40];
} cancel_job;
static int job_cancel(st_txn *txn, void *arg) {
  cancel_job *c = arg;
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, c->tenant, c->name, &rec);
  bool discovered = !rc && json_is_true(json_object_get(json_object_get(rec, "auth"), "discover"));
  json_decref(rec);
  if (rc && rc != ST_ENOTFOUND) return rc;
  return discovered ? 0 : vault_rediscover_cancel(txn, c->tenant, c->name);
}
static void done_cancel(int status, void *arg) {
  cancel_job *c = arg;
  (void)status;
  gw_rediscover *rd = c->rd;
  free(c);
  rd_idle(rd);
}

static void rd_tick(uv_timer_t *t) {
  gw_rediscover *rd = t->data;
  gw_loop *lp = rd->lp;
  if (rd->busy || rd->stopping) return;
  if (lp->draining) return;
  char tenant[64], name[40], reason[16];
  int attempts = 0;
  st_txn *txn;
  int found = ST_ENOTFOUND;
  if (st_read_begin(lp->srv->store, &txn) == 0) {
    found = vault_rediscover_next(txn, gw_wall_ms(), tenant, name, reason, &attempts);
    st_txn_end(txn);
  }
  if (found != 0) {
    uv_timer_start(&rd->timer, rd_tick, REDISCOVER_POLL_MS, 0);
    return;
  }
  bool fresh = !strcmp(reason, "rejected") || !strcmp(reason, "expiring");
  GW_LOG(GW_LOG_INFO, "admin", &((gw_log_ctx){tenant, NULL}), "connector %s: reading its authorization again (%s%s)",
         name, reason, attempts ? ", after a failure" : "");
  rd->busy = true;
  int rc = start_again(lp, NULL, rd, tenant, name, reason, fresh);
  if (rc == ST_ENOTFOUND) {
    cancel_job *c = calloc(1, sizeof *c);
    if (c) {
      c->rd = rd;
      snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
      snprintf(c->name, sizeof c->name, "%s", name);
      if (gw_loop_submit(lp, job_cancel, done_cancel, c) == 0) return;
      free(c);
    }
    rd->busy = false;
    uv_timer_start(&rd->timer, rd_tick, REDISCOVER_POLL_MS, 0);
  } else if (rc) {
    rd->busy = false;
    uv_timer_start(&rd->timer, rd_tick, REDISCOVER_POLL_MS, 0);
  }
}

int admin__rediscover_start(gw_loop *lp) {
  if (lp->index != 0) return 0;
  gw_rediscover *rd = calloc(1, sizeof *rd);
  if (!rd) return -1;
  rd->lp = lp;
  if (uv_timer_init(&lp->loop, &rd->timer)) {
    free(rd);
    return -1;
  }
  rd->timer.data = rd;
  rd->timer_open = true;
  uv_timer_start(&rd->timer, rd_tick, REDISCOVER_POLL_MS, 0);
  lp->rediscover = rd;
  return 0;
}

void admin__rediscover_stop(gw_loop *lp) {
  gw_rediscover *rd = lp->rediscover;
  if (!rd) return;
  lp->rediscover = NULL;
  rd->stopping = true;
  uv_close((uv_handle_t *)&rd->timer, rd_on_closed);
}
