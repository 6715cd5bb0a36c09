/* gateway/mcp/grants.c — per-user upstream grants on the data path
 * (vault/grant.h holds them): the gate every aggregated upstream session
 * passes, and the refresh of an expired access token.
 *
 * Rules this file keeps, and why:
 *  1. The gate runs before an oauth connector's upstream session is used
 *     (gw__agg_ensure_upstream): no grant → GW_MCP_ECONNECT (the flows
 *     answer with the connect link, or list the {connector}__connect tool);
 *     a grant expiring within 10 s → refresh first, then the gate again —
 *     unless the refresh brought back a token expiring within 10 s itself
 *     (the gate would refresh again, without end): then the call fails
 *     (GW_MCP_EREFRESH), one refresh spent.
 *     The gateway's own calls (no user) never carry anyone's grant.
 *  2. One refresh per grant across all loops: the claim is a write job
 *     (vault_grant_claim). The claimant alone calls the token endpoint; a
 *     loop that finds the claim held waits (REFRESH_POLL_MS) and passes the
 *     gate again, so it reads the refreshed grant. The result is written
 *     only if the grant still holds the refresh token that was used
 *     (vault_grant_refreshed / _refresh_failed), so a slow or duplicated
 *     refresh never replaces a newer grant, and invalid_grant deletes only
 *     the grant it was said about. Tokens that come back after their grant
 *     was cut are revoked at the authorization server they came from: the
 *     connector record and client secret the request went out with are
 *     kept for the outcome (a move meanwhile names another server), and
 *     the tenant incarnation it went out in: a tenant deleted meanwhile
 *     (maybe made again with the same id: another tenant) has nothing
 *     written under its id, the tokens are revoked all the same, and the
 *     operator's log alone says so.
 *  3. The token endpoint: the admin egress level when the admin set it or
 *     vouched for its host, the untrusted one when a discovered upstream
 *     named it elsewhere (vault_connector_url_admin_set); the connector's
 *     timeouts and CA file, a body cap; the reply is wiped.
 *     And a deadline for the whole request, VAULT_REFRESH_DEADLINE_MS after
 *     the claim was taken (vault/grant.h ties it to the claim's life; a
 *     test hook, MCPGATE_TEST_REFRESH_DEADLINE_MS, may only lower it): a
 *     request still open when the claim lapses would let another loop send
 *     the same rotating refresh token. The deadline aborts the transfer;
 *     that is a transient failure like a 5xx (the claim ends, the grant
 *     stays, this call fails with "try again shortly").
 *  4. The exchange is referenced while a claim, a wait or a refresh is
 *     pending; a client gone meanwhile ends it at the next step (the flows
 *     check gw__x_wanted).
 * Threading: the loop's thread; jobs run on the writer and report back on
 * this loop's port. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/base/buf.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/out/outbound.h"
#include "store/seal.h"
#include "vault/connect.h"
#include "vault/discover.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "vault/vault.h"

#define REFRESH_POLL_MS 100
#define REFRESH_WAITS_MAX 250 /* 25 s: past any claim's lapse */
#define REFRESH_BODY_MAX (64 * 1024)

void gw__connect_link(const gw_loop *lp, const char *tenant, const char *connector, char *out, size_t cap) {
  const char *pub = lp->srv->cfg.public_url ? lp->srv->cfg.public_url : "";
  size_t n = strlen(pub);
  while (n && pub[n - 1] == '/') n--;
  snprintf(out, cap, "%.*s/t/%s/connect/%s", (int)n, pub, tenant, connector);
}

typedef struct refresh {
  gw_exchange *x;
  gw_agg_step_fn after;
  char tenant[64], user[40], connector[40];
  int status;
  int waits;
  uint64_t claim_ms; /* wall time the claim was taken (the writer's) */
  char *used;     /* the refresh token sent (wiped) */
  gw_buf body;    /* the token endpoint's reply (wiped) */
  vault_tokens fresh;
  bool ok, invalid;
  bool rejected;  /* invalid_client: the AS no longer knows the gateway's registration */
  bool timed_out; /* the deadline aborted the request */
  /* the connector as the request was sent, and its client secret (wiped):
   * a late answer's tokens are revoked there (vault_token_origin) */
  json_t *sent_to;
  char *sent_secret;
  char sent_uid[ST_TENANT_UID_LEN + 1]; /* the tenant incarnation it was sent in ("": none) */
  vault_late late;                      /* the outcome's, when that tenant is gone (rule 2) */
  uv_timer_t timer;    /* the wait between two claims */
  uv_timer_t deadline; /* the claimant's request (rule 3); open while req is */
  gw_out_req *req;
} refresh;

static void refresh_free(refresh *r) {
  vault_wipe(r->used);
  json_decref(r->sent_to);
  st_secret_str_free(r->sent_secret);
  if (r->body.data) OPENSSL_cleanse(r->body.data, r->body.len);
  gw_buf_free(&r->body);
  vault_tokens_free(&r->fresh);
  free(r);
}

/* the gate again (rule 1), or the flow's continuation with err */
static void refresh_finish(refresh *r, int err) {
  gw_exchange *x = r->x;
  gw_agg_step_fn after = r->after;
  refresh_free(r);
  if (gw__x_wanted(x)) {
    if (err) after(x, err);
    else gw__agg_ensure_upstream(x, after);
  }
  gw__x_unref(x);
}

static void refresh_timer_closed(uv_handle_t *h) { refresh_finish(h->data, 0); }
static void refresh_waited(uv_timer_t *t) { uv_close((uv_handle_t *)t, refresh_timer_closed); }

static uint64_t wall_ms(void) { return (uint64_t)gw_wall_ms(); }

/* ---- the outcome, written ---------------------------------------------------- */

static int job_outcome(st_txn *txn, void *arg) {
  refresh *r = arg;
  char now[32];
  vault_rfc3339(0, now);
  if (r->ok) {
    vault_token_origin from = {r->sent_to, r->sent_secret, r->sent_uid};
    return vault_grant_refreshed(txn, r->tenant, r->user, r->connector, r->used, &r->fresh, &from, now, &r->late);
  }
  int rc = vault_grant_refresh_failed(txn, r->tenant, r->user, r->connector, r->used, r->invalid, now);
  /* a discovered connector registers anew (gateway/api/admin_discover.c) */
  if (!rc && r->rejected) rc = vault_rediscover_rejected(txn, r->tenant, r->connector, (int64_t)wall_ms());
  return rc;
}

static void done_outcome(int status, void *arg) {
  refresh *r = arg;
  gw_mcp_shared *sh = r->x->lp->srv->mcp;
  if (sh)
    atomic_fetch_add_explicit(r->ok ? &sh->refreshes_ok : r->invalid ? &sh->refreshes_invalid : &sh->refreshes_failed, 1,
                              memory_order_relaxed);
  if (status)
    GW_LOG(GW_LOG_ERROR, "vault", &((gw_log_ctx){r->tenant, NULL}), "connector %s: storing a refreshed grant failed: %s",
           r->connector, st_strerror(status));
  else if (r->ok && r->late.elsewhere)
    /* the operator's log is the only record: the tenant's id is another
     * tenant's now, or being purged (vault/grant.h) */
    GW_LOG(GW_LOG_WARN, "vault", &((gw_log_ctx){r->tenant, NULL}),
           "connector %s: user %s's refresh was answered after the tenant was deleted (and maybe created again): %s%s%s",
           r->connector, r->user,
           r->late.id[0] ? "the fresh tokens are queued for revocation at the authorization server (revocation "
                         : "the connector names no revocation endpoint: the fresh tokens stay live at the upstream "
                           "until they expire or are revoked there by hand",
           r->late.id, r->late.id[0] ? "), reported here only" : "");
  /* a fresh token that expires within the gate's margin already (an AS
   * issuing tokens of a few seconds): the gate would refresh again at once,
   * and again — one refresh per call, then this call fails like a failure
   * of the AS (rule 1); the grant keeps the token */
  bool short_lived = r->ok && r->fresh.expires_at && (int64_t)time(NULL) + 10 >= r->fresh.expires_at;
  if (short_lived)
    GW_LOG(GW_LOG_WARN, "vault", &((gw_log_ctx){r->tenant, NULL}),
           "connector %s: the authorization server renewed user %s's access with a token that expires within 10 s: "
           "the call is not sent",
           r->connector, r->user);
  /* refreshed, or dropped (invalid_grant: the gate now says "connect"); a
   * failure of the AS itself fails this call, the next one tries again */
  refresh_finish(r, (r->ok && !short_lived) || r->invalid ? 0 : GW_MCP_EREFRESH);
}

static void outcome_submit(refresh *r) {
  if (gw_loop_submit(r->x->lp, job_outcome, done_outcome, r) != 0) done_outcome(ST_EBUSY, r);
}

/* ---- the deadline (rule 3) --------------------------------------------------- */

/* ms left of the request's deadline, which runs from the claim (0: over) */
static uint64_t deadline_left(const refresh *r) {
  uint64_t dl = r->x->lp->srv->mcp->refresh_deadline_ms; /* (a test hook may lower it) */
  uint64_t end = r->claim_ms + dl, now = wall_ms();
  return now < end ? (end - now > dl ? dl : end - now) : 0;
}

static void refresh_deadline(uv_timer_t *t) {
  refresh *r = t->data;
  r->timed_out = true;
  gw_out_abort(r->req); /* tok_done follows, from the loop */
}

static void deadline_closed(uv_handle_t *h) { outcome_submit(h->data); }

/* ---- the token endpoint ------------------------------------------------------ */

static void tok_headers(gw_out_req *o, int status, const gw_out_header *h, size_t n, void *ud) {
  (void)o, (void)h, (void)n;
  ((refresh *)ud)->status = status;
}

static int tok_data(gw_out_req *o, const char *p, size_t n, void *ud) {
  refresh *r = ud;
  if (r->body.len + n > REFRESH_BODY_MAX || gw_buf_append(&r->body, p, n) != 0) gw_out_abort(o);
  return 0;
}

static void tok_done(gw_out_req *o, int err, void *ud) {
  refresh *r = ud;
  (void)o;
  r->req = NULL;
  char why[200] = "";
  if (err && r->timed_out) {
    /* (a reply that was complete when the deadline fired has err 0: used) */
    snprintf(why, sizeof why, "the token endpoint did not answer within %.3g s (the refresh's deadline)",
             (double)r->x->lp->srv->mcp->refresh_deadline_ms / 1000);
  } else if (!err && r->status == 200) {
    r->ok = vault_tokens_from_reply(r->body.data ? r->body.data : "", r->body.len, (int64_t)time(NULL), &r->fresh, why,
                                    sizeof why) == 0;
  } else if (!err && r->status >= 400 && r->status < 500) {
    /* RFC 6749 §5.2: only invalid_grant says the grant itself is dead */
    json_t *j = gw_json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    r->invalid = e && !strcmp(e, "invalid_grant");
    r->rejected = e && !strcmp(e, "invalid_client");
    snprintf(why, sizeof why, "the token endpoint answered %d %.40s", r->status, e && strlen(e) < 40 ? e : "");
    json_decref(j);
  } else {
    snprintf(why, sizeof why, "%s", err ? gw_out_strerror(err) : "the token endpoint answered with a server error");
  }
  if (!r->ok)
    GW_LOG(GW_LOG_WARN, "vault", &((gw_log_ctx){r->tenant, NULL}), "connector %s: refreshing user %s's grant failed: %s%s",
           r->connector, r->user, why, r->invalid ? " (the grant is deleted; the user must connect again)" : "");
  /* the outcome is written once the deadline's timer is closed: r is then
   * free to go with the outcome's answer */
  uv_close((uv_handle_t *)&r->deadline, deadline_closed);
}

/* The claimant's refresh: the token endpoint, with the grant's refresh token. */
static void refresh_send(refresh *r) {
  gw_loop *lp = r->x->lp;
  st_txn *txn;
  json_t *conn = NULL;
  vault_tokens t = {0};
  char *secret = NULL;
  int rc = gw__read_begin(lp, &txn);
  if (!rc) {
    rc = vault_connector_get(txn, r->tenant, r->connector, &conn);
    if (!rc) rc = vault_grant_get(txn, r->tenant, r->user, r->connector, &t);
    if (!rc && st_tenant_uid_get(txn, r->tenant, r->sent_uid) != 0) r->sent_uid[0] = 0;
    if (!rc && st_secret_get_str(txn, &(st_aad){r->tenant, VAULT_CLIENT_KIND, r->connector}, &secret) == ST_ENOTFOUND)
      secret = NULL;
    gw__read_end(lp, txn);
  }
  if (rc || !t.refresh) {
    vault_tokens_free(&t);
    json_decref(conn);
    st_secret_str_free(secret);
    if (rc) {
      /* unreadable now: the claim lapses, the next call tries again */
      refresh_finish(r, GW_MCP_EREFRESH);
      return;
    }
    /* no refresh token: the grant cannot be renewed — it is dropped (the
     * claim with it) and the person connects again */
    r->used = NULL;
    r->invalid = true;
    outcome_submit(r);
    return;
  }
  r->used = strdup(t.refresh);
  uint64_t left = deadline_left(r);
  if (r->used && !left) {
    /* the claim's answer came too late to send anything in time: the
     * claim ends (refresh_failed, as for a network error) */
    vault_tokens_free(&t);
    json_decref(conn);
    st_secret_str_free(secret);
    GW_LOG(GW_LOG_WARN, "vault", &((gw_log_ctx){r->tenant, NULL}),
           "connector %s: the refresh of user %s's grant was not sent: its deadline passed before it could start",
           r->connector, r->user);
    outcome_submit(r);
    return;
  }
  json_t *auth = json_object_get(conn, "auth");
  char *body = NULL, *authz = NULL;
  rc = r->used ? vault_refresh_request(auth, secret, t.refresh, &body, &authz) : ST_ENOMEM;
  vault_tokens_free(&t);
  /* kept for the outcome: where the tokens that come back are from */
  r->sent_to = json_incref(conn);
  r->sent_secret = secret;
  char *authz_line = NULL;
  if (!rc && authz) {
    size_t n = strlen(authz) + 16;
    authz_line = malloc(n);
    if (authz_line) snprintf(authz_line, n, "Authorization: %s", authz);
    else rc = ST_ENOMEM;
  }
  const char *lines[4] = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", authz_line,
                          NULL};
  json_t *to = json_object_get(conn, "timeouts");
  gw_out_opts o = {0};
  o.method = "POST";
  o.url = json_string_value(json_object_get(auth, "token_url"));
  o.headers = lines;
  o.body = body;
  o.body_len = body ? strlen(body) : 0;
  o.connect_timeout_ms = (long)json_integer_value(json_object_get(to, "connect_ms"));
  o.first_byte_timeout_ms = (long)json_integer_value(json_object_get(to, "first_byte_ms"));
  o.idle_timeout_ms = 10000;
  o.ca_file = json_string_value(json_object_get(conn, "ca_file"));
  char ca_root[PATH_MAX]; /* a ca_file in the tenant's folder of tenant_ca_dir stays inside it */
  if (o.ca_file && gw_config_tenant_ca_path(&lp->srv->cfg, r->tenant, o.ca_file, ca_root, sizeof ca_root))
    o.ca_root = ca_root;
  o.egress = vault_connector_url_admin_set(conn, o.url) ? GW_OUT_EGRESS_ADMIN : GW_OUT_EGRESS_UNTRUSTED;
  o.fair_key = r->tenant;
  o.on_headers = tok_headers;
  o.on_data = tok_data;
  o.on_done = tok_done;
  o.ud = r;
  if (!rc && o.url) rc = gw_out_start(lp->out, &o, &r->req);
  else if (!rc) rc = ST_EINVAL;
  if (!rc) { /* tok_done runs later, never from inside gw_out_start */
    uv_timer_init(&lp->loop, &r->deadline);
    r->deadline.data = r;
    uv_timer_start(&r->deadline, refresh_deadline, left, 0);
  }
  vault_wipe(body);
  vault_wipe(authz);
  vault_wipe(authz_line);
  json_decref(conn);
  if (rc) {
    GW_LOG(GW_LOG_WARN, "vault", &((gw_log_ctx){r->tenant, NULL}), "connector %s: the refresh could not start: %s",
           r->connector, gw_out_strerror(rc));
    outcome_submit(r); /* ends the claim */
  }
}

/* ---- the claim --------------------------------------------------------------- */

static int job_claim(st_txn *txn, void *arg) {
  refresh *r = arg;
  r->claim_ms = wall_ms(); /* read on the loop after done_claim: the port orders it */
  int rc = vault_grant_claim(txn, r->tenant, r->user, r->connector, (int64_t)time(NULL), r->claim_ms);
  r->status = rc; /* the claim's answer (the job itself succeeds) */
  return rc < 0 && rc != ST_ENOTFOUND ? rc : 0;
}

static void done_claim(int status, void *arg) {
  refresh *r = arg;
  int c = status ? status : r->status;
  r->status = 0;
  if (!gw__x_wanted(r->x)) {
    /* nobody waits: a claim taken lapses (VAULT_REFRESH_CLAIM_MS) */
    refresh_finish(r, GW_MCP_ENOTSENT);
    return;
  }
  switch (c) {
  case VAULT_CLAIMED: refresh_send(r); return;
  case VAULT_CLAIM_FRESH: refresh_finish(r, 0); return;
  case VAULT_CLAIM_BUSY:
    if (++r->waits <= REFRESH_WAITS_MAX && uv_timer_init(&r->x->lp->loop, &r->timer) == 0) {
      r->timer.data = r;
      uv_timer_start(&r->timer, refresh_waited, REFRESH_POLL_MS, 0);
      return;
    }
    refresh_finish(r, GW_MCP_EREFRESH);
    return;
  case ST_ENOTFOUND: refresh_finish(r, GW_MCP_ECONNECT); return;
  default: refresh_finish(r, GW_MCP_EREFRESH); return;
  }
}

/* ---- the gate ---------------------------------------------------------------- */

int gw__agg_vault_gate(gw_exchange *x, gw_agg_step_fn after) {
  if (x->shared_cred) return 0; /* the call's decision read the connector: nothing per user */
  st_txn *txn;
  if (gw__read_begin(x->lp, &txn) != 0) return 0; /* the upcall's own read fails it */
  json_t *rec = NULL;
  int rc = gw__connector_get(x->lp, txn, x->tenant, x->connector, &rec, NULL);
  if (rc || !vault_connector_is_per_user(rec)) {
    json_decref(rec);
    gw__read_end(x->lp, txn);
    return 0;
  }
  json_decref(rec);
  vault_tokens t = {0};
  rc = x->user[0] ? vault_grant_get(txn, x->tenant, x->user, x->connector, &t) : ST_ENOTFOUND;
  gw__read_end(x->lp, txn);
  int64_t exp = t.expires_at;
  vault_tokens_free(&t);
  if (rc == ST_ENOTFOUND) {
    after(x, GW_MCP_ECONNECT);
    return 1;
  }
  if (rc) {
    after(x, GW_MCP_ENOTSENT);
    return 1;
  }
  if (!exp || (int64_t)time(NULL) + 10 < exp) return 0;
  refresh *r = calloc(1, sizeof *r);
  if (!r) {
    after(x, GW_MCP_ENOTSENT);
    return 1;
  }
  r->x = x;
  r->after = after;
  gw_strlcpy(r->tenant, x->tenant, sizeof r->tenant);
  gw_strlcpy(r->user, x->user, sizeof r->user);
  gw_strlcpy(r->connector, x->connector, sizeof r->connector);
  gw_buf_init(&r->body, REFRESH_BODY_MAX);
  x->refs++;
  if (gw_loop_submit(x->lp, job_claim, done_claim, r) != 0) done_claim(ST_EBUSY, r);
  return 1;
}

/* ---- what the employee sees without a grant ------------------------------------ */

bool gw__agg_connect_pending(gw_exchange *x, const char *connector) {
  if (!x->user[0]) return false;
  st_txn *txn;
  if (gw__read_begin(x->lp, &txn) != 0) return false;
  json_t *rec = NULL;
  bool pending = false;
  if (gw__connector_get(x->lp, txn, x->tenant, connector, &rec, NULL) == 0 && vault_connector_is_per_user(rec)) {
    json_t *info = NULL;
    pending = vault_grant_info(txn, x->tenant, x->user, connector, &info) == ST_ENOTFOUND;
    json_decref(info);
  }
  json_decref(rec);
  gw__read_end(x->lp, txn);
  return pending;
}

json_t *gw__agg_connect_tool(gw_exchange *x, const char *connector) {
  char link[1200], desc[1600], name[80];
  gw__connect_link(x->lp, x->tenant, connector, link, sizeof link);
  snprintf(name, sizeof name, "%s__connect", connector);
  snprintf(desc, sizeof desc,
           "Connect %s to your account. %s's tools need your own sign-in at %s: open %s in your browser, sign in and "
           "approve; its tools then appear here. Call this tool to get the link.",
           connector, connector, connector, link);
  return json_pack("{s:s,s:s,s:{s:s,s:{}}}", "name", name, "description", desc, "inputSchema", "type", "object",
                   "properties");
}

/* the client declared URL-mode elicitation (MCP 2025-11-25) at initialize */
static bool client_takes_url_elicitation(const gw_exchange *x) {
  json_t *c = json_loads(x->sess.client[0] ? x->sess.client : "{}", 0, NULL);
  bool yes = json_is_object(json_object_get(json_object_get(json_object_get(c, "capabilities"), "elicitation"), "url"));
  json_decref(c);
  return yes;
}

void gw__agg_answer_connect(gw_exchange *x, bool as_result) {
  char link[1200], msg[1600];
  gw__connect_link(x->lp, x->tenant, x->connector, link, sizeof link);
  json_t *id = json_array_get(x->ids, 0);
  if (as_result) {
    snprintf(msg, sizeof msg,
             "To use %s, open this link in your browser and sign in: %s — once you approve, %s's tools appear in your "
             "tool list.",
             x->connector, link, x->connector);
    gw__x_reply_json(x, 200,
                     gw__agg_rpc_result(id, json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", msg)));
    return;
  }
  snprintf(msg, sizeof msg,
           "%s is not connected to your account yet: open %s in your browser, sign in and approve, then try again",
           x->connector, link);
  json_t *data;
  int code;
  /* URLElicitationRequiredError: the client offers the link itself. The
   * elicitationId names this one answer (a client takes a completion
   * naming it for the end of the elicitation): 128 random bits, never
   * anything the link or the clock would give (two answers in one
   * millisecond got the same id). No randomness: the error below (the
   * link, no id) */
  uint8_t r[16];
  if (client_takes_url_elicitation(x) && RAND_bytes(r, sizeof r) == 1) {
    char eid[40];
    for (int i = 0; i < 16; i++) snprintf(eid + 2 * i, 3, "%02x", r[i]);
    code = -32042;
    data = json_pack("{s:[{s:s,s:s,s:s,s:s}]}", "elicitations", "mode", "url", "elicitationId", eid, "url", link,
                     "message", msg);
  } else {
    code = GW_RPC_CONNECT;
    data = json_pack("{s:s,s:s}", "connector", x->connector, "url", link);
  }
  gw__x_reply_json(x, 200,
                   json_pack("{s:s,s:O*,s:{s:i,s:s,s:o}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error",
                             "code", code, "message", msg, "data", data));
}
