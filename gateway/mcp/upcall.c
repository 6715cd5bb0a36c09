/* gateway/mcp/upcall.c — the upstream half (see upcall.h).
 *
 * Rules this file keeps, and why:
 *
 *  1. Credential, then transfer. The credential comes from the vault
 *     (vault_upstream_cred) in the read transaction that re-checks the
 *     identity and loads the connector; the transfer starts only with it.
 *     Today the vault answers at once; when a credential needs a refresh
 *     (per-user OAuth), credential() will finish in a callback that runs
 *     transfer() — gw__x_upcall then copies u, keeps the pending phase on
 *     the exchange for gw__x_abort_upstream to cancel, and reports a late
 *     failure through up_done. The flows see only gw__x_upcall's return,
 *     up_headers/up_data/up_done and gw__x_abort_upstream, so they do not
 *     change.
 *  2. The secret lives only in this call: the header line, and the real
 *     URL when its query is sealed (vault.h: the record's "url" shows the
 *     values as "…" and is never sent then), are wiped and freed right
 *     after the engine copied them (gw_out_start copies). A URL without
 *     query values is the record's own string: nothing unsealed or copied.
 *     One exception: a transfer that opens an aggregated upstream session
 *     (gw_upcall.keep_opener) leaves a copy of both with the exchange
 *     (x->opening, wiped when it goes) until the session is stored — so a
 *     session the store refuses is ended with the credential it was opened
 *     with, at that URL (usess_end.c), not left open at the upstream.
 *  3. The exchange is referenced for the transfer: taken before start,
 *     dropped after the flow's up_done (which runs once, from the loop).
 *     x->out is set while the transfer runs and cleared before up_done. */
#include "gateway/mcp/upcall.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "gateway/base/buf.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

#define REVOKED_MSG "access revoked: your account, your token, this connector or this tenant was disabled"

static void on_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  gw_exchange *x = ud;
  if (x->flow->up_headers) x->flow->up_headers(x, r, status, h, n);
}

static int on_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  gw_exchange *x = ud;
  return x->flow->up_data ? x->flow->up_data(x, r, p, n) : 0;
}

static void on_done(gw_out_req *r, int err, void *ud) {
  gw_exchange *x = ud;
  x->out = NULL;
  if (x->flow->up_done) x->flow->up_done(x, r, err);
  gw__x_unref(x);
}

/* What the transfer needs from the connector record and the vault. */
typedef struct upcred {
  json_t *conn;  /* the connector record */
  vault_conn_facts f; /* conn taken apart (borrowed from it) */
  json_t *bind;  /* what a session opened with cred belongs to (vault_upstream_bind) */
  vault_cred cred;
  const char *url; /* the real URL: the record's, or url_sealed unsealed */
  char *url_sealed; /* the unsealed URL when its query is sealed (vault_connector_url); wiped */
} upcred;

/* Phase 1: identity, policy, connector and credential, in one read txn
 * (the dispatch's, when the transfer starts within it). */
static int credential(gw_exchange *x, const gw_upcall *u, upcred *c) {
  gw_loop *lp = x->lp;
  st_txn *txn;
  const char *user = x->user[0] ? x->user : NULL;
  if (gw__read_begin(lp, &txn) != 0) return ST_EIO;
  int rc = 0;
  if (user) {
    /* the last check before bytes leave for the upstream: whatever
     * asynchronous steps came before, the identity and the policy hold now.
     * Read from the snapshot the request's token was checked in, the
     * check would find what that one found (same records); the clock is
     * its only other input, so with the token still unexpired it is not
     * repeated (memo.h). */
    int64_t now_s = (int64_t)time(NULL);
    bool same = x->ident_snapshot && st_txn_snapshot(txn) == x->ident_snapshot &&
                (!x->ident_expires || now_s < x->ident_expires);
    /* the token's own expiry first: an OAuth access token's identity is
     * its grant (tokid), which outlives each access token it issues */
    if ((x->ident_expires && now_s >= x->ident_expires) ||
        (!same && auth_identity_check(txn, x->tenant, user, x->tokid, now_s) != 0)) {
      rc = GW_UP_EREVOKED;
    } else {
      int perr;
      const pol_user *pu = pol_cache_get(lp->pol, txn, x->tenant, user, &perr);
      if (!pu || !pol_connector_visible(pu, x->connector)) rc = pu ? GW_UP_EHIDDEN : ST_EIO;
    }
  }
  if (!rc) rc = gw__connector_get(lp, txn, x->tenant, x->connector, &c->conn, &c->f);
  /* read with the credential, in the same txn: the server and the
   * credential (the connector's, or the user's own grant) a session this
   * transfer opens belongs to */
  if (!rc && !(c->bind = vault_upstream_bind_facts(txn, x->tenant, x->connector, user, &c->f))) rc = ST_EIO;
  /* an upstream session id goes only to the server that issued it, with
   * the credential it was opened with: the connector may have moved or
   * been rekeyed since the id was read (or opened), or the user replaced
   * their own key or account */
  if (!rc && u->upstream_sid && *u->upstream_sid && x->sess_bind &&
      strcmp(json_string_value(x->sess_bind) ?: "", json_string_value(c->bind)))
    rc = GW_MCP_ESTALE;
  /* the same for an id read with the gateway session (the direct
   * endpoint's, in the snapshot its token was checked in): a move or a
   * rekey deletes the session in the write that changes the url or the
   * credential (the user's own too: revoke.c end_user_connector), so a
   * session that no longer carries this id is one whose server or
   * credential changed */
  if (!rc && u->upstream_sid && *u->upstream_sid && !x->sess_bind && x->sid[0] &&
      st_txn_snapshot(txn) != x->ident_snapshot) {
    gw_session now;
    if (gw_session_get(txn, x->sid, &now) != 0 || strcmp(now.upstream, u->upstream_sid)) rc = GW_MCP_ESTALE;
  }
  if (!rc) rc = vault_upstream_cred_facts(txn, x->tenant, x->connector, user, &c->f, (int64_t)time(NULL), &c->cred);
  if (!rc) rc = vault_connector_url_facts(txn, x->tenant, x->connector, &c->f, &c->url, &c->url_sealed);
  if (!rc) x->grant_used = c->f.per_user;
  gw__read_end(lp, txn);
  return rc;
}

/* Phase 2: the transfer. */
static int transfer(gw_exchange *x, const gw_upcall *u, upcred *c) {
  json_t *conn = c->conn;
  const char *lines[12];
  int nl = 0;
  char buf[4][600];
  if (u->body) lines[nl++] = "Content-Type: application/json";
  gw_strjoin(buf[0], sizeof buf[0], "Accept: ", u->accept, NULL);
  lines[nl++] = buf[0];
  if (u->protocol_version && *u->protocol_version) {
    gw_strjoin(buf[1], 22 + 64 + 1, "MCP-Protocol-Version: ", u->protocol_version, NULL); /* at most 64 bytes of it */
    lines[nl++] = buf[1];
  }
  if (u->upstream_sid && *u->upstream_sid) {
    gw_strjoin(buf[2], 16 + 500 + 1, "Mcp-Session-Id: ", u->upstream_sid, NULL); /* at most 500 bytes of it */
    lines[nl++] = buf[2];
  }
  if (u->last_event_id && strlen(u->last_event_id) < 500 && !strpbrk(u->last_event_id, "\r\n")) {
    gw_strjoin(buf[3], sizeof buf[3], "Last-Event-ID: ", u->last_event_id, NULL);
    lines[nl++] = buf[3];
  }
  lines[nl++] = "User-Agent: mcpgate";
  char *secret_line = NULL;
  if (c->cred.value && c->cred.name) {
    size_t sl = strlen(c->cred.name) + strlen(c->cred.value) + 3;
    secret_line = malloc(sl);
    if (secret_line) {
      gw_strjoin(secret_line, sl, c->cred.name, ": ", c->cred.value, NULL);
      lines[nl++] = secret_line;
    }
  }
  lines[nl] = NULL;
  gw_out_opts o = {0};
  o.method = u->method;
  o.url = c->url;
  if (!u->upstream_sid || !*u->upstream_sid) {
    /* no session yet: one this transfer opens belongs to this server and
     * this credential */
    json_decref(x->sess_bind);
    x->sess_bind = json_incref(c->bind);
    /* ... and, when the flow asks, what it went with is kept to end it
     * with, should it not be kept (rule 2's one exception) */
    if (u->keep_opener) gw__usess_keep_opener(x, c->url, conn, &c->cred);
  }
  o.headers = lines;
  o.body = u->body;
  o.body_len = u->len;
  o.connect_timeout_ms = c->f.connect_ms;
  o.first_byte_timeout_ms = c->f.first_byte_ms;
  o.idle_timeout_ms = c->f.idle_ms;
  o.partial_timeout_ms = c->f.event_ms;
  if (!o.partial_timeout_ms) o.partial_timeout_ms = (long)x->lp->srv->cfg.upstream_event_timeout_ms;
  o.ca_file = c->f.ca_file;
  char ca_root[PATH_MAX]; /* a ca_file in the tenant's folder of tenant_ca_dir stays inside it */
  if (o.ca_file && gw_config_tenant_ca_path(&x->lp->srv->cfg, x->tenant, o.ca_file, ca_root, sizeof ca_root))
    o.ca_root = ca_root;
  o.egress = GW_OUT_EGRESS_ADMIN; /* a tenant admin chose this URL: egress_allow applies */
  o.fair_key = x->tenant;
  /* ending an upstream session is the gateway's housekeeping: it is not
   * refused because the tenant's calls hold their share */
  if (!strcmp(u->method, "DELETE")) o.budget_class = GW_OUT_BUDGET_GATEWAY;
  /* a GET stream lives as long as its client is idle: apart from the
   * calls, which a tenant's many idle agents must not crowd out */
  else if (u->stream) o.budget_class = GW_OUT_BUDGET_STREAMS;
  o.http1 = u->stream;
  o.on_headers = on_headers;
  o.on_data = on_data;
  o.on_done = on_done;
  o.ud = x;
  x->refs++;
  int rc = gw_out_start(x->lp->out, &o, &x->out);
  if (rc) x->refs--;
  if (secret_line) {
    OPENSSL_cleanse(secret_line, strlen(secret_line));
    free(secret_line);
  }
  return rc;
}

int gw__x_upcall(gw_exchange *x, const gw_upcall *u) {
  if (x->revoked) return GW_UP_EREVOKED;
  upcred c = {0};
  int rc = credential(x, u, &c);
  if (!rc) rc = transfer(x, u, &c);
  vault_cred_free(&c.cred);
  json_decref(c.bind);
  vault_secret_free(c.url_sealed);
  json_decref(c.conn);
  return rc;
}

void gw__x_reconnect_error(gw_exchange *x, int status) {
  char link[1200];
  gw__connect_link(x->lp, x->tenant, x->connector, link, sizeof link);
  gw__x_rpc_error(x, 200, GW_RPC_CONNECT,
                   "%s refused your connection (HTTP %d): it may have been revoked there. Connect again at %s, then "
                   "try again",
                   x->connector, status, link);
}

void gw__x_start_failed(gw_exchange *x, int rc) {
  if (rc == GW_UP_EREVOKED) {
    x->revoked = true;
    /* the token expired on the way (its user and grant may be fine): the
     * client refreshes it, rather than hear of a revocation */
    if (x->ident_expires && (int64_t)time(NULL) >= x->ident_expires)
      gw__x_rpc_error(x, 200, GW_RPC_TOKEN_EXPIRED, "%s", GW_X_EXPIRED_MSG);
    else
      gw__x_rpc_error(x, 403, GW_RPC_REVOKED, "%s", REVOKED_MSG);
  } else if (rc == VAULT_ENOGRANT || rc == VAULT_EEXPIRED) {
    /* an oauth connector on a path without the aggregated gate (the direct
     * endpoint): the link, or the renewal the aggregated endpoint does */
    char link[1200];
    gw__connect_link(x->lp, x->tenant, x->connector, link, sizeof link);
    if (rc == VAULT_ENOGRANT)
      gw__x_rpc_error(x, 200, GW_RPC_CONNECT,
                       "%s is not connected to your account yet: open %s in your browser, sign in and approve, then "
                       "try again",
                       x->connector, link);
    else
      gw__x_rpc_error(x, 200, GW_RPC_CONNECT,
                       "your access to %s has expired; use the gateway's aggregated endpoint (it renews it), or "
                       "connect again at %s",
                       x->connector, link);
  } else if (rc == GW_MCP_ESTALE && !x->sess_bind) {
    /* the connector endpoint's session went with its connector's move or
     * rekey (credential): a 404, as for any unknown session, and the
     * client initializes again, with the new server or credential */
    char msg[256];
    snprintf(msg, sizeof msg,
             "Session not found: connector \"%s\" was moved to another server or given another credential "
             "(yours, or the gateway's); initialize again",
             x->connector);
    json_t *id = x->ids && json_array_size(x->ids) == 1 ? json_incref(json_array_get(x->ids, 0)) : json_null();
    gw__x_reply_json(x, 404, json_pack("{s:s,s:o,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", -32001,
                                       "message", msg));
  } else if (rc == GW_UP_EHIDDEN) {
    gw__x_rpc_error(x, 200, -32602, "connector \"%s\" is not available to you under your organisation's policy",
                    x->connector);
  } else {
    if (x->m) GW_STAT_ADD(x->m->errors, 1);
    gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" could not be reached", x->connector);
  }
}
