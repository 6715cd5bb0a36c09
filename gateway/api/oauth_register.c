/* gateway/api/oauth_register.c — dynamic client registration (RFC 7591)
 * at POST /t/{tenant}/oauth/register: public clients only (PKCE, no
 * secret), metadata checked by auth_oauth_client_validate, stored as a
 * "dcr" client record of the tenant.
 *
 * Rules this file keeps, and why:
 *  - Anyone can register: the endpoint is rate-limited per address with
 *    the sign-in's bucket and per tenant with a budget of its own
 *    (dcr_rate_per_tenant: a flood of registrations from many addresses
 *    must not spend the tenant's sign-ins), the body is capped at
 *    AUTH_OAUTH_METADATA_MAX (413 beyond, before it is buffered), a tenant
 *    holds at most dcr_clients_max registrations, and registrations unused
 *    for dcr_client_idle_ms are unknown at once (oauth_cimd.c) and deleted
 *    by the sweep each registration runs (O(OAUTH_SWEEP_SCAN), whatever the
 *    tenant holds). A registration grants nothing by itself: the consent
 *    page names the client as unverified.
 *  - The body is parsed strictly (duplicate keys and NUL bytes refused);
 *    errors never quote it (jansson's error text quotes the input), only
 *    name the member at fault (RFC 7591 §3.2.2 codes).
 *  - The client id is random (32 bytes from the CSPRNG), made on the loop
 *    before the writer job, which is a pure function of (store, job): it
 *    checks the tenant, sweeps, checks the cap and writes. A refusal for
 *    the cap still commits the sweep, so the next one goes on from there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "auth/jose.h"
#include "auth/oauth_client.h"
#include "gateway/api/admin.h"
#include "gateway/api/oauth_int.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "store/tenant.h"

#define CLIENT_ID_PREFIX "mcpc_"

typedef struct reg_job {
  gw_req *req;
  char tenant[64];
  char client_id[64];
  json_t *clean; /* read-only in the job */
  char now[32];
  int64_t now_s, cap, dcr_before, cimd_before;
  bool full;     /* out: the cap was reached */
} reg_job;

static void reg_free(reg_job *j) {
  json_decref(j->clean);
  free(j);
}

static int job_register(st_txn *txn, void *arg) {
  reg_job *j = arg;
  j->full = false;
  int rc = st_tenant_active(txn, j->tenant);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  rc = auth_oauth_clients_sweep(txn, j->tenant, j->dcr_before, j->cimd_before, OAUTH_SWEEP_SCAN);
  if (rc < 0) return rc;
  int64_t n = auth_oauth_clients_count(txn, j->tenant, AUTH_OAUTH_KIND_DCR);
  if (n < 0) return (int)n;
  if (n >= j->cap) {
    j->full = true;
    return 0; /* the sweep's work is kept */
  }
  return auth_oauth_client_put(txn, j->tenant, j->client_id, AUTH_OAUTH_KIND_DCR, j->clean, j->now, j->now_s);
}

static void count(gw_req *req, int what) {
  gw_oauth *o = req->lp->srv->oauth;
  if (o) atomic_fetch_add_explicit(&o->registrations[what], 1, memory_order_relaxed);
}

static void done_register(int status, void *arg) {
  reg_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == GW_API_ENOTENANT) {
    oauth__error(req, 404, "not_found", "no such organisation on this gateway");
  } else if (status == ST_EMAPFULL) {
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "client registration not stored: the store is full");
    oauth__error(req, 507, "server_error",
                 "the gateway's store is full: the registration was not stored (an operator must make room)");
  } else if (status < 0) {
    GW_LOG(GW_LOG_ERROR, "oauth", &lc, "client registration not stored: %s", gw_api_strerror(status));
    oauth__error(req, status == ST_EBUSY ? 503 : 500, status == ST_EBUSY ? "temporarily_unavailable" : "server_error",
                 "the gateway could not store the registration; try again later");
  } else if (j->full) {
    count(req, OAUTH_REG_FULL);
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "client registration refused: the tenant holds dcr_clients_max (%lld) clients",
           (long long)j->cap);
    oauth__error(req, 400, "invalid_client_metadata",
                 "too many registered clients: this organisation's limit of registrations on the gateway is reached; "
                 "try again later, or use a client metadata document (an https client_id)");
  } else {
    count(req, OAUTH_REG_CREATED);
    GW_LOG(GW_LOG_INFO, "oauth", &lc, "client registered: %s", j->client_id);
    json_t *r = json_pack("{s:s,s:I}", "client_id", j->client_id, "client_id_issued_at", (json_int_t)j->now_s);
    json_t *v;
    if ((v = json_object_get(j->clean, "client_name"))) json_object_set(r, "client_name", v);
    json_object_set(r, "redirect_uris", json_object_get(j->clean, "redirect_uris"));
    if ((v = json_object_get(j->clean, "client_uri"))) json_object_set(r, "client_uri", v);
    if ((v = json_object_get(j->clean, "logo_uri"))) json_object_set(r, "logo_uri", v);
    json_object_set_new(r, "token_endpoint_auth_method", json_string("none"));
    json_object_set_new(r, "grant_types", json_pack("[s,s]", "authorization_code", "refresh_token"));
    json_object_set_new(r, "response_types", json_pack("[s]", "code"));
    gw_respond_json(req, 201, r);
  }
  reg_free(j);
}

void oauth__register_early_error(gw_req *req, int status, const char *msg) {
  if (status == 413)
    oauth__error(req, 413, "invalid_client_metadata", "the client metadata is larger than %d bytes",
                 AUTH_OAUTH_METADATA_MAX);
  else oauth__error(req, status, "invalid_request", "%s", msg);
}

static bool json_content(const char *ct) {
  return ct && !strncasecmp(ct, "application/json", 16) && (ct[16] == 0 || ct[16] == ';' || ct[16] == ' ');
}

void oauth__register(gw_req *req) {
  gw_server *srv = req->lp->srv;
  char tenant[64];
  const char *rest = oauth__split_tenant(req->path, tenant);
  if (!rest || strcmp(rest, "/oauth/register")) {
    oauth__error(req, 404, "not_found", "no such endpoint");
    return;
  }
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  if (strcmp(req->method, "POST")) {
    gw_resp_header(req, "Allow", "POST");
    oauth__error(req, 405, "invalid_request", "register a client with POST");
    return;
  }
  st_txn *txn;
  int rc = st_read_begin(srv->store, &txn);
  if (rc == 0) {
    rc = st_tenant_active(txn, tenant);
    st_txn_end(txn);
  }
  if (rc) {
    if (rc == ST_ENOTFOUND) oauth__error(req, 404, "not_found", "no such organisation on this gateway");
    else oauth__error(req, 503, "temporarily_unavailable", "the gateway's store cannot be read right now");
    return;
  }
  int64_t wait = pages__rate_wait_register(req, tenant);
  if (wait) {
    oauth__error(req, 429, "rate_limited", "too many requests from this address; try again in %lld s",
                 (long long)wait);
    return;
  }
  if (!json_content(gw_req_header(req, "Content-Type"))) {
    count(req, OAUTH_REG_REFUSED);
    oauth__error(req, 400, "invalid_client_metadata", "send the client metadata as Content-Type: application/json");
    return;
  }
  json_error_t je;
  json_t *meta = req->body_len && memchr(req->body, 0, req->body_len)
                     ? NULL
                     : gw_json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(meta)) {
    bool parsed = meta != NULL;
    json_decref(meta);
    count(req, OAUTH_REG_REFUSED);
    if (parsed) oauth__error(req, 400, "invalid_client_metadata", "the client metadata must be a JSON object");
    else
      oauth__error(req, 400, "invalid_client_metadata",
                   "the body is not valid JSON (near line %d, column %d), or repeats a member", je.line, je.column);
    return;
  }
  char err[300];
  json_t *clean = NULL;
  rc = auth_oauth_client_validate(meta, NULL, &clean, err, sizeof err);
  json_decref(meta);
  if (rc) {
    count(req, OAUTH_REG_REFUSED);
    if (rc == AUTH_EOAUTH_REDIRECT) oauth__error(req, 400, "invalid_redirect_uri", "%s", err);
    else if (rc == AUTH_EOAUTH_METADATA) oauth__error(req, 400, "invalid_client_metadata", "%s", err);
    else oauth__error(req, 500, "server_error", "out of memory");
    return;
  }
  reg_job *j = calloc(1, sizeof *j);
  uint8_t rnd[32];
  if (!j || RAND_bytes(rnd, sizeof rnd) != 1) {
    free(j);
    json_decref(clean);
    oauth__error(req, 500, "server_error", "the gateway could not make a client id");
    return;
  }
  j->req = req;
  j->clean = clean;
  gw_strlcpy(j->tenant, tenant, sizeof j->tenant);
  memcpy(j->client_id, CLIENT_ID_PREFIX, sizeof CLIENT_ID_PREFIX - 1);
  auth_b64url_encode(rnd, sizeof rnd, j->client_id + sizeof CLIENT_ID_PREFIX - 1,
                     sizeof j->client_id - (sizeof CLIENT_ID_PREFIX - 1));
  j->now_s = oauth__now();
  oauth__rfc3339(j->now_s, j->now);
  j->cap = srv->cfg.dcr_clients_max;
  j->dcr_before = j->now_s - srv->cfg.dcr_client_idle_ms / 1000;
  j->cimd_before = j->now_s - srv->cfg.cimd_cache_ms / 1000;
  rc = gw_loop_submit(req->lp, job_register, done_register, j);
  if (rc) {
    reg_free(j);
    gw_resp_header(req, "Retry-After", "1");
    oauth__error(req, 503, "temporarily_unavailable", "the gateway's store cannot take writes right now");
  }
}
