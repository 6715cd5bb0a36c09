/* gateway/api/admin_oidc.c — /admin/v1/tenants/{t}/oidc: a tenant's OIDC
 * settings (auth/oidc.h): GET (without the secret), PUT (validated by
 * auth/, the issuer checked against the operator's egress policy), DELETE.
 *
 * The client secret is in the request body of a PUT: it is copied into the
 * job (wiped and freed with it), the body is wiped once parsed, and no
 * reply, log line or error text of this file ever contains it — not even a
 * JSON syntax error, which here names the position only (jansson's text
 * quotes the input near the error). */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/oidc.h"
#include "auth/oidc_provider.h"
#include "gateway/api/pages_int.h"
#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"

typedef struct oidc_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  gw_loop *lp;
  char tenant[64];
  json_t *config; /* from auth_oidc_parse; read-only in the job */
  char *secret;   /* NULL: keep the stored one; wiped and freed */
  char now[32];
  int created;    /* out */
  bool del;
  json_t *before; /* out: the settings' admin view before the write (the audit's change), or NULL */
} oidc_job;

static void oidc_job_free(oidc_job *j) {
  json_decref(j->config);
  json_decref(j->before);
  if (j->secret) {
    OPENSSL_cleanse(j->secret, strlen(j->secret));
    free(j->secret);
  }
  free(j);
}

static int job_oidc(st_txn *txn, void *arg) {
  oidc_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_t *t;
  int rc = st_tenant_get(txn, j->tenant, &t);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  json_decref(t);
  /* what it was, for the audit record's change (the view: no secret) */
  json_decref(j->before);
  j->before = NULL;
  json_t *was = NULL;
  if (auth_oidc_get(txn, j->tenant, &was) == 0) j->before = auth_oidc_view(was);
  json_decref(was);
  if (j->del) return auth_oidc_delete(txn, j->tenant);
  if (!j->secret) {
    /* the stored client secret goes only to the issuer it was given for
     * (its token endpoint): a PUT moving "issuer" to another origin gives
     * it again — else an admin token could have it sent to a server of its
     * holder's at the next sign-in */
    json_t *old = NULL;
    bool moved = auth_oidc_get(txn, j->tenant, &old) == 0 &&
                 !gw_egress_same_origin(json_string_value(json_object_get(old, "issuer")),
                                        json_string_value(json_object_get(j->config, "issuer")));
    json_decref(old);
    if (moved) return GW_API_EMOVED;
  }
  return auth_oidc_put(txn, j->tenant, j->config, j->secret, j->now, &j->created);
}

static void done_oidc(int status, void *arg) {
  oidc_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == GW_API_ENOTENANT) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else if (status == GW_API_EMOVED) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"client_secret\" is required: \"issuer\" moves to another origin (scheme, host or port), and "
                     "the stored secret is only sent to the issuer it was given for");
  } else if (status == AUTH_ENOSECRET) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"client_secret\" is required: this tenant has no OIDC client secret stored yet");
  } else if (!admin__job_error(req, status, "OIDC settings")) {
    /* the providers' cache keeps nothing of the old settings: discovery,
     * keys and a failure hold are fetched afresh at the next sign-in */
    if (j->lp->srv->pages) {
      auth_oidc_cache_forget(j->lp->srv->pages->oidc, j->tenant);
      auth_oidc_cache_forget(j->lp->srv->pages->oidc_logout, j->tenant);
    }
    if (j->del) {
      admin__audit_change(req, j->before, NULL);
      GW_LOG(GW_LOG_INFO, "admin", &lc, "OIDC settings deleted");
      gw_respond(req, 204, NULL, NULL, 0);
    } else {
      st_txn *txn;
      json_t *rec = NULL;
      if (st_read_begin(j->lp->srv->store, &txn) == 0) {
        auth_oidc_get(txn, j->tenant, &rec);
        st_txn_end(txn);
      }
      GW_LOG(GW_LOG_INFO, "admin", &lc, "OIDC settings %s (issuer %s)%s", j->created ? "created" : "updated",
             json_string_value(json_object_get(j->config, "issuer")),
             j->secret ? ", client secret sealed" : ", client secret kept");
      if (!rec) gw_respond_error(req, 500, "internal", "the OIDC settings were written but cannot be read back");
      else {
        admin__audit_change(req, j->before, auth_oidc_view(rec));
        gw_respond_json(req, j->created ? 201 : 200, auth_oidc_view(rec));
        json_decref(rec);
      }
    }
  }
  oidc_job_free(j);
}


void admin__oidc(gw_req *req, const admin_caller *who, const char *tenant) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (admin__read_tenant(req, tenant, &txn) != 0) return;
    json_t *rec;
    int rc = auth_oidc_get(txn, tenant, &rec);
    st_txn_end(txn);
    if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "this tenant has no OIDC settings");
    else if (rc) gw_respond_error(req, 500, "store_error", "the OIDC settings cannot be read: %s", auth_strerror(rc));
    else {
      gw_respond_json(req, 200, auth_oidc_view(rec));
      json_decref(rec);
    }
    return;
  }
  if (strcmp(req->method, "PUT") && strcmp(req->method, "DELETE")) {
    gw_resp_header(req, "Allow", "GET, PUT, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  oidc_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  j->lp = req->lp;
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  admin__now_rfc3339(j->now);
  if (!strcmp(req->method, "DELETE")) {
    j->del = true;
  } else {
    json_t *b = admin__parse_secret_body(req); /* wipes the request body */
    if (!b) {
      oidc_job_free(j);
      return;
    }
    char err[1024];
    const char *secret;
    int rc = auth_oidc_parse(b, &j->config, &secret, err, sizeof err);
    if (rc != 0) {
      json_decref(b);
      oidc_job_free(j);
      gw_respond_error(req, rc == AUTH_EINVALID ? 400 : 500, rc == AUTH_EINVALID ? "invalid_request" : "internal",
                       "%s", err);
      return;
    }
    /* an issuer on an address the egress policy refuses (loopback for
     * http://, any literal private address for https://) is refused now,
     * naming the operator's key; host names are judged at connect time */
    if (gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], json_string_value(json_object_get(j->config, "issuer")),
                            err, sizeof err) != 0) {
      json_decref(b);
      oidc_job_free(j);
      gw_respond_error(req, 400, "egress_refused", "\"issuer\": %s", err);
      return;
    }
    /* the logout issuer (Universal Logout's keys) is fetched the same way */
    const char *logout = json_string_value(json_object_get(j->config, "logout_issuer"));
    if (logout && gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], logout, err, sizeof err) != 0) {
      json_decref(b);
      oidc_job_free(j);
      gw_respond_error(req, 400, "egress_refused", "\"logout_issuer\": %s", err);
      return;
    }
    if (secret && !(j->secret = strdup(secret))) {
      json_decref(b);
      oidc_job_free(j);
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    /* jansson's copy of the secret: wipe it before the body is released */
    json_t *sv = json_object_get(b, "client_secret");
    if (json_is_string(sv)) OPENSSL_cleanse((char *)json_string_value(sv), json_string_length(sv));
    json_decref(b);
  }
  int rc = gw_loop_submit(req->lp, job_oidc, done_oidc, j);
  if (rc) {
    oidc_job_free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}
