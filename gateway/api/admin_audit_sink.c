/* gateway/api/admin_audit_sink.c — /admin/v1/tenants/{t}/audit/sink: a
 * tenant's own SIEM sink (audit/audit.h, "a tenant's own SIEM sink"): GET
 * (the settings without the token, and how delivery goes), PUT (validated
 * by audit/, the URL checked against the operator's egress policy at the
 * admin level, the token sealed), DELETE. The sink driver
 * (gateway/mcp/audit_sink.c) picks a change up within a second.
 *
 * The token is in the request body of a PUT: it is copied into the job
 * (wiped and freed with it), the body is wiped once parsed, and no reply,
 * log line or error text of this file ever contains it. So is the URL's
 * query (a SIEM's API key, ?dd-api-key=…): audit/ seals it and keeps the
 * URL shown with each value as "…", the only form the replies, the audit
 * record of the change (before → after) and the log show; a PUT may send
 * that form back to keep the stored values (at the same scheme, host,
 * port and path only: 400 otherwise). */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "audit/audit.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"

typedef struct sink_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  gw_loop *lp;
  char tenant[64];
  char *url, *format;
  char *token; /* NULL: keep (or drop, with drop_token); wiped and freed */
  bool drop_token, del;
  char now[32];
  char inc[ST_TOKEN_ID_BUFSZ]; /* the sink's incarnation, if this PUT makes it (random: made here, jobs are pure) */
  int created; /* out */
  json_t *before; /* out: the settings before the write (change_view), or NULL (none) */
} sink_job;

static void job_free(sink_job *j) {
  json_decref(j->before);
  free(j->url);
  free(j->format);
  if (j->token) {
    OPENSSL_cleanse(j->token, strlen(j->token));
    free(j->token);
  }
  free(j);
}

/* The settings as the audit record of a change (and GET, which adds the
 * delivery) shows them: the record's (its url already shown masked),
 * without the driver's bookkeeping (rev, inc, cursor). */
static json_t *change_view(const json_t *rec) {
  json_t *v = json_deep_copy(rec);
  json_object_del(v, "rev");
  json_object_del(v, "inc");
  json_object_del(v, "cursor");
  return v;
}

/* url up to its query (malloc'd): the origin and the address are there,
 * and a query value sent back as "…" is nothing curl's parser should see */
static char *before_query(const char *url) { return url ? strndup(url, strcspn(url, "?")) : NULL; }

static bool same_origin(const char *a, const char *b) {
  char *pa = before_query(a), *pb = before_query(b);
  bool same = pa && pb && gw_egress_same_origin(pa, pb);
  free(pa);
  free(pb);
  return same;
}

static int job_sink(st_txn *txn, void *arg) {
  sink_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_t *t, *old = NULL;
  json_decref(j->before); /* a job may run again */
  j->before = NULL;
  int rc = st_tenant_get(txn, j->tenant, &t);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  json_decref(t);
  if ((rc = audit_tenant_sink_get(txn, j->tenant, &old)) != 0 && rc != ST_ENOTFOUND) return rc;
  if (old) j->before = change_view(old);
  if (j->del) {
    json_decref(old);
    return audit_tenant_sink_del(txn, j->tenant);
  }
  /* the stored token goes only where it was given for: a PUT that moves
   * the sink to another origin gives it again (or null) — else whoever
   * holds an admin token could have it sent to a server of theirs */
  bool moved = !j->token && !j->drop_token && old && json_is_true(json_object_get(old, "token_set")) &&
               !same_origin(json_string_value(json_object_get(old, "url")), j->url);
  json_decref(old);
  if (moved) return GW_API_EMOVED;
  return audit_tenant_sink_put(txn, j->tenant, j->url, j->format, j->token, j->drop_token, j->now, j->inc,
                               &j->created);
}

/* The admin's view: the record (token_set, never the token) and, when the
 * driver has looked at it, "delivery". */
static json_t *view(gw_server *srv, const char *tenant, json_t *rec) {
  json_t *v = change_view(rec);
  audit_sink_state st;
  char name[AUDIT_SINK_MAX + 1], t[32];
  snprintf(name, sizeof name, "tenant:%s", tenant);
  if (v && srv->audit_log && audit_sink_state_get(srv->audit_log, name, &st)) {
    json_t *d = json_pack("{s:s, s:I, s:I}", "state", st.failing ? "failing" : st.lag ? "behind" : "ok", "delivered",
                          (json_int_t)st.delivered, "lag", (json_int_t)st.lag);
    if (d && st.pruned) json_object_set_new(d, "pruned", json_integer((json_int_t)st.pruned));
    if (d && st.last_ok_ms) {
      gw_rfc3339_ms(st.last_ok_ms, t);
      json_object_set_new(d, "last_success_at", json_string(t));
    }
    if (d && st.last_failure_ms) {
      gw_rfc3339_ms(st.last_failure_ms, t);
      json_object_set_new(d, "last_failure_at", json_string(t));
      json_object_set_new(d, "last_error", json_string(st.last_error));
    }
    if (d) json_object_set_new(v, "delivery", d);
  } else if (v) {
    json_object_set_new(v, "delivery", json_pack("{s:s}", "state", "starting"));
  }
  return v;
}

static void done_sink(int status, void *arg) {
  sink_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == GW_API_ENOTENANT) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else if (status == ST_ENOTFOUND && j->del) {
    gw_respond_error(req, 404, "not_found", "this tenant has no SIEM sink");
  } else if (status == GW_API_EMOVED) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"token\" is required: \"url\" moves the sink to another origin (scheme, host or port), and the "
                     "stored token is only sent where it was given for; send it again, or \"token\": null to drop it");
  } else if (status == ST_EMASKED) {
    gw_respond_error(req, 400, "invalid_request",
                     "\"url\" sends a query value back masked (…), which keeps the stored value of that parameter "
                     "only at the stored URL's scheme, host, port and path, and only one that is stored (the URL with "
                     "what is kept at most %d bytes): give the value itself",
                     AUDIT_SINK_URL_MAX);
  } else if (!admin__job_error(req, status, "SIEM sink")) {
    if (j->del) {
      GW_LOG(GW_LOG_INFO, "admin", &lc, "SIEM sink deleted");
      admin__audit_change(req, j->before, NULL);
      gw_respond(req, 204, NULL, NULL, 0);
    } else {
      st_txn *txn;
      json_t *rec = NULL;
      if (st_read_begin(j->lp->srv->store, &txn) == 0) {
        audit_tenant_sink_get(txn, j->tenant, &rec);
        st_txn_end(txn);
      }
      GW_LOG(GW_LOG_INFO, "admin", &lc, "SIEM sink %s (%s)%s", j->created ? "created" : "updated", j->format,
             j->token ? ", token sealed" : j->drop_token ? ", token removed" : "");
      if (!rec) {
        gw_respond_error(req, 500, "internal", "the SIEM sink was written but cannot be read back");
      } else {
        admin__audit_change(req, j->before, change_view(rec));
        gw_respond_json(req, j->created ? 201 : 200, view(j->lp->srv, j->tenant, rec));
        json_decref(rec);
      }
    }
  }
  job_free(j);
}

void admin__audit_sink(gw_req *req, const admin_caller *who, const char *tenant) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!srv->audit_log) {
    gw_respond_error(req, 404, "audit_off", "the audit log is off on this gateway (config audit = false)");
    return;
  }
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    st_txn *txn;
    if (admin__read_tenant(req, tenant, &txn) != 0) return;
    json_t *rec;
    int rc = audit_tenant_sink_get(txn, tenant, &rec);
    st_txn_end(txn);
    if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "this tenant has no SIEM sink");
    else if (rc) gw_respond_error(req, 500, "store_error", "the SIEM sink cannot be read: %s", st_strerror(rc));
    else {
      gw_respond_json(req, 200, view(srv, tenant, rec));
      json_decref(rec);
    }
    return;
  }
  if (strcmp(req->method, "PUT") && strcmp(req->method, "DELETE")) {
    gw_resp_header(req, "Allow", "GET, PUT, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  sink_job *j = calloc(1, sizeof *j);
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
  } else if (st_token_id_new(j->inc) != 0) {
    job_free(j);
    gw_respond_error(req, 500, "internal", "no random bytes for the sink's id");
    return;
  } else {
    json_t *b = admin__parse_secret_body(req); /* wipes the request body */
    if (!b) {
      job_free(j);
      return;
    }
    char err[512];
    const char *url, *format, *token;
    int rc = audit_tenant_sink_parse(b, &url, &format, &token, &j->drop_token, err, sizeof err);
    /* the URL's address: refused now when the egress policy refuses it
     * (a literal loopback or private address), host names at connect */
    char why[400];
    char *base = rc ? NULL : before_query(url);
    if (!rc && !base) rc = AUDIT_ENOMEM;
    if (!rc && gw_egress_check_url(srv->egress[GW_OUT_EGRESS_ADMIN], base, why, sizeof why) != 0) {
      snprintf(err, sizeof err, "\"url\": %s", why);
      rc = 1;
    }
    free(base);
    if (!rc && (!(j->url = strdup(url)) || !(j->format = strdup(format)) || (token && !(j->token = strdup(token)))))
      rc = AUDIT_ENOMEM;
    json_t *tv = json_object_get(b, "token");
    if (json_is_string(tv)) OPENSSL_cleanse((char *)json_string_value(tv), json_string_length(tv));
    json_decref(b);
    if (rc) {
      job_free(j);
      if (rc == AUDIT_ENOMEM) gw_respond_error(req, 500, "internal", "out of memory");
      else gw_respond_error(req, 400, rc == 1 ? "egress_refused" : "invalid_request", "%s", err);
      return;
    }
  }
  int rc = gw_loop_submit(req->lp, job_sink, done_sink, j);
  if (rc) {
    job_free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}
