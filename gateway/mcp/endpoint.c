/* gateway/mcp/endpoint.c — what both MCP endpoints do first (see
 * mcp_loop.h): the path, method, Origin/Host, the employee token and the
 * user's state on every request, the session it names, the Accept header
 * and the strictly parsed body; exchanges made for a request; DELETE of a
 * gateway session.
 *
 * Rules this file keeps: preauth runs the opening checks once, before the
 * body is read, and the handler takes their result (gw__mcp_ctx_of) instead
 * of checking again; the time the body takes to arrive opens no gap,
 * because identity and policy are checked again right before anything goes
 * upstream (upcall.c) and session writes check inside their transaction.
 * Those checks compare the token's own expiry (c->ident_expires) too: an
 * OAuth access token's identity is its grant, which outlives it. What the
 * request opens for longer (a stream) carries that expiry and ends at it
 * (exchange.h). A refusal is answered here and the caller only returns. */
#include "gateway/mcp/mcp_loop.h"
#include "gateway/base/json_check.h"
#include "gateway/core/limits.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "auth/oauth_token.h"
#include "gateway/base/buf.h"
#include "gateway/base/clock.h"
#include "policy/approval.h"
#include "store/tenant.h"
#include "store/token.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_origin.h"
#include "gateway/mcp/memo.h"
#include "gateway/mcp/stats.h"
#include "gateway/mcp/upcall.h"
#include "gateway/mcp/usess_end.h"
#include "vault/vault.h"

static const char *const versions[] = {"2025-03-26", "2025-06-18", "2025-11-25", NULL};

gw_proxy *gw__mcp_of(gw_loop *lp) { return lp ? lp->proxy : NULL; }

/* Plain protocol refusal before anything was forwarded. */
void gw__mcp_refuse(gw_req *req, int status, int code, const char *msg) {
  gw_respond_json(req, status, json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", "error", "code",
                                         code, "message", msg));
}

void gw__mcp_refuse_discover(gw_req *req, const json_t *id) {
  gw_respond_json(req, 200, json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                                      "error", "code", GW_RPC_NOT_SUPPORTED, "message",
                                      "Method not found: server/discover (this gateway speaks MCP 2025-03-26 to "
                                      "2025-11-25; use initialize)"));
}

/* The caller's effective policy, fresh for this request (cached per
 * loop, keyed by membership generation and policy version). NULL: the
 * store could not be read — callers deny. */
const pol_user *gw__policy_for(gw_loop *lp, const char *tenant, const char *user) {
  st_txn *txn;
  if (gw__read_begin(lp, &txn) != 0) return NULL;
  int err;
  const pol_user *u = pol_cache_get(lp->pol, txn, tenant, user, &err);
  gw__read_end(lp, txn);
  return u;
}

int gw__read_begin(gw_loop *lp, st_txn **txn) {
  gw_proxy *p = gw__mcp_of(lp);
  if (p && p->pinned) {
    *txn = p->pinned;
    return 0;
  }
  return st_read_begin(lp->srv->store, txn);
}

void gw__read_end(gw_loop *lp, st_txn *txn) {
  gw_proxy *p = gw__mcp_of(lp);
  if (p && p->pinned == txn) return;
  st_txn_end(txn);
}

st_txn *gw__read_pin(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p || p->pinned || st_read_begin(lp->srv->store, &p->pinned) != 0) return NULL; /* nested: the outer owns it */
  return p->pinned;
}

void gw__read_unpin(gw_loop *lp, st_txn *pinned) {
  if (!pinned) return;
  gw_proxy *p = gw__mcp_of(lp);
  if (p && p->pinned == pinned) p->pinned = NULL;
  st_txn_end(pinned);
}

void gw__dispatch_pinned(gw_req *req, void (*handle)(gw_req *req)) {
  gw_loop *lp = req->lp; /* a reply given synchronously frees req */
  st_txn *pinned = gw__read_pin(lp);
  handle(req);
  gw__read_unpin(lp, pinned);
}

int gw__connector_get(gw_loop *lp, st_txn *txn, const char *tenant, const char *connector, json_t **out,
                      vault_conn_facts *facts) {
  gw_proxy *p = gw__mcp_of(lp);
  uint64_t snap = st_txn_snapshot(txn);
  *out = p ? gw_memo_conn_get(p->memo, snap, tenant, connector, facts) : NULL;
  if (*out) return 0;
  int rc = vault_connector_get(txn, tenant, connector, out);
  if (rc == 0 && p) gw_memo_conn_put(p->memo, snap, tenant, connector, *out);
  if (rc == 0 && facts) vault_conn_facts_of(*out, facts);
  return rc;
}

/* ---------- request checks ---------- */

bool gw__accept_has(const char *accept, const char *type) {
  if (!accept) return false;
  const char *p = accept;
  size_t tl = strlen(type);
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ",;");
    size_t m = n;
    while (m && p[m - 1] == ' ') m--;
    if ((m == tl && !strncasecmp(p, type, tl)) || (m == 3 && !strncmp(p, "*/*", 3))) return true;
    p += strcspn(p, ",");
  }
  return false;
}

bool gw__mcp_version_supported(const char *v) {
  for (const char *const *s = versions; *s; s++)
    if (!strcmp(*s, v)) return true;
  return false;
}

bool gw__mcp_version_refused(gw_req *req) {
  const char *pv = gw_req_header(req, "mcp-protocol-version");
  if (!pv || gw__mcp_version_supported(pv)) return false;
  char w[200];
  int n = snprintf(w, sizeof w, "Bad Request: unsupported MCP-Protocol-Version %.40s (supported:", pv);
  for (const char *const *s = versions; *s && n > 0 && (size_t)n < sizeof w; s++)
    n += snprintf(w + n, sizeof w - (size_t)n, "%s %s", s == versions ? "" : ",", *s);
  if (n > 0 && (size_t)n + 1 < sizeof w) memcpy(w + n, ")", 2);
  gw__mcp_refuse(req, 400, -32000, w);
  return true;
}

/* ---- member names a case-insensitive reader takes for another ----
 *
 * JSON-RPC and MCP names are case-sensitive, and so is every check here.
 * Go's encoding/json is not: it gives a struct field tagged "name" the
 * value of "Name", "NAME" or "nAme" too — the last such member wins — and
 * folds ſ (U+017F) to s and K (U+212A) to k, the only characters outside
 * ASCII that fold to an ASCII letter (Go 1.21's encoding/json upper-cases
 * instead, which takes ı, U+0131, for i too: found by review, "ıd" was an
 * id to such an upstream and none to the gateway). An upstream built on it (mark3labs/
 * mcp-go, the official go-sdk before v1.3.1: CVE-2026-27896) would run
 * {"name":"echo","Name":"slow"} as slow, read a message whose only method
 * member is "Method" as a request where the gateway reads a response, or
 * take "Arguments" an approval never hashed — and the gateway forwards the
 * bytes it checked. So in the message and in its params, two members equal
 * under that folding, or a member folding to a name the gateway reads
 * without being it, are refused. Deeper objects (a tool's arguments) are
 * the tool's own: not judged. The fold of other non-ASCII letters is not
 * modelled: no MCP member name has one. */

/* The next character of a name at *p (before e), folded as above. */
static int fold_next(const unsigned char **p, const unsigned char *e) {
  const unsigned char *s = *p;
  if (e - s >= 2 && s[0] == 0xC5 && s[1] == 0xBF) {
    *p += 2;
    return 's';
  }
  if (e - s >= 2 && s[0] == 0xC4 && s[1] == 0xB1) { /* ı: Go 1.21's fold upper-cases it to I */
    *p += 2;
    return 'i';
  }
  if (e - s >= 3 && s[0] == 0xE2 && s[1] == 0x84 && s[2] == 0xAA) {
    *p += 3;
    return 'k';
  }
  *p += 1;
  return s[0] >= 'A' && s[0] <= 'Z' ? s[0] + ('a' - 'A') : s[0];
}

static int fold_cmp(const char *a, const char *b) {
  const unsigned char *p = (const unsigned char *)a, *pe = p + strlen(a);
  const unsigned char *q = (const unsigned char *)b, *qe = q + strlen(b);
  while (p < pe && q < qe) {
    int x = fold_next(&p, pe), y = fold_next(&q, qe);
    if (x != y) return x - y;
  }
  return (p < pe) - (q < qe);
}

static int fold_sort(const void *a, const void *b) { return fold_cmp(*(const char *const *)a, *(const char *const *)b); }

/* true when object o has two members equal under the fold, or one that
 * folds to one of names (NULL-terminated) without being it. */
static bool case_clash(const json_t *o, const char *const *names) {
  size_t n = json_object_size(o);
  if (n < 1) return false;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    for (const char *const *nm = names; *nm; nm++)
      if (strcmp(k, *nm) && !fold_cmp(k, *nm)) return true;
  }
  if (n < 2) return false;
  const char **keys = malloc(n * sizeof *keys);
  if (!keys) return true; /* fail closed */
  size_t i = 0;
  json_object_foreach((json_t *)o, k, v) keys[i++] = k;
  qsort(keys, n, sizeof *keys, fold_sort);
  bool clash = false;
  for (i = 1; i < n && !clash; i++) clash = !fold_cmp(keys[i - 1], keys[i]);
  free(keys);
  return clash;
}

static const char *const message_names[] = {"jsonrpc", "id", "method", "params", "result", "error", NULL};
static const char *const params_names[] = {"name", "arguments", "_meta", "uri", "ref", NULL};

/* Method VALUES likewise. The gateway decides on, rewrites or answers
 * itself the MCP methods a client sends (tools/call decided, tools/list
 * filtered, prompts/get, resources/read and completion/complete routed,
 * tasks refused, ...), comparing them exactly, and forwards any other
 * method as it is. An upstream that matches method names ignoring case (no
 * official SDK does; a hand-written server may, Go's strings.EqualFold
 * with the same two folds above) would run "Tools/Call" of a blocked tool,
 * or answer "TOOLS/LIST" unfiltered. So a method equal to one of these
 * under the fold without being it is refused, as is one whose first part
 * folds to "tasks/". Every method a client sends in MCP is listed: none is
 * sent in another case by a conforming client. */
static const char *const mcp_methods[] = {
    "tools/call",          "tools/list", /* the most frequent first: an exact match ends the search */
    "initialize",          "ping",
    "prompts/list",        "prompts/get",
    "resources/list",      "resources/templates/list",
    "resources/read",      "resources/subscribe",
    "resources/unsubscribe", "completion/complete",
    "logging/setLevel",    "server/discover",
    "notifications/initialized", "notifications/cancelled",
    "notifications/progress",    "notifications/roots/list_changed",
    NULL};

/* true when method m is an MCP method in another letter case. */
static bool method_clash(const char *m) {
  /* one of them exactly: no clash (no two of them fold alike) — a call's
   * method is found at the first compare, not folded against every one */
  for (const char *const *k = mcp_methods; *k; k++)
    if (!strcmp(m, *k)) return false;
  for (const char *const *k = mcp_methods; *k; k++)
    if (!fold_cmp(m, *k)) return true;
  const unsigned char *p = (const unsigned char *)m, *pe = p + strlen(m);
  const char *t = "tasks/";
  for (; *t && p < pe; t++)
    if (fold_next(&p, pe) != *t) return false;
  return !*t && strncmp(m, "tasks/", 6);
}

/* Checks one JSON-RPC message; collects request ids. NULL when fine, else
 * a reason. */
const char *gw__check_message(const json_t *m, json_t *ids, const char **method_out) {
  if (!json_is_object(m)) return "a JSON-RPC message must be an object";
  if (case_clash(m, message_names) || case_clash(json_object_get(m, "params"), params_names))
    return "member names of a JSON-RPC message and of its params must not differ from one another, or from a "
           "JSON-RPC or MCP name, only by letter case (names are case-sensitive)";
  if (strcmp(json_string_value(json_object_get(m, "jsonrpc")) ?: "", "2.0")) return "\"jsonrpc\" must be \"2.0\"";
  json_t *id = json_object_get(m, "id");
  json_t *method = json_object_get(m, "method");
  if (id && !json_is_string(id) && !json_is_integer(id)) return "\"id\" must be a string or an integer";
  if (method) {
    if (!json_is_string(method)) return "\"method\" must be a string";
    if (method_clash(json_string_value(method)))
      return "\"method\" differs from an MCP method only by letter case (method names are case-sensitive: "
             "\"tools/call\", not \"Tools/Call\")";
    json_t *params = json_object_get(m, "params");
    if (params && !json_is_object(params) && !json_is_array(params)) return "\"params\" must be an object";
    if (id) json_array_append(ids, id);
    if (method_out) *method_out = json_string_value(method);
    return NULL;
  }
  /* a response to a server→client request */
  if (!id || (!json_object_get(m, "result") && !json_object_get(m, "error")))
    return "a message needs a method (request/notification) or result/error (response)";
  return NULL;
}


/* The 401 of both MCP endpoints. The challenge names the protected
 * resource metadata of this very resource (RFC 9728 §5.1), which is how an
 * MCP client finds the gateway's authorization server; an error code only
 * when a token was presented (RFC 6750 §3.1). Tenant and connector names
 * are [a-z0-9-] (checked before): nothing to escape in the quoted strings. */
void gw__mcp_unauthorized(gw_req *req, const gw_mcp_ctx *c, bool presented, const char *msg) {
  /* a credential that did not verify, from an address past its budget
   * (gateway/core/limits.h): 429, nothing more to learn here */
  if (presented && gw_limits_auth_failed(req)) {
    gw_respond_error(req, 429, "too_many_failures",
                     "too many failed authentications from your address; wait for Retry-After seconds");
    return;
  }
  char hdr[1200];
  int n = snprintf(hdr, sizeof hdr, "Bearer resource_metadata=\"%s/.well-known/oauth-protected-resource/t/%s/mcp%s%s\"",
                   req->lp->srv->cfg.public_url, c->tenant, c->connector[0] ? "/" : "", c->connector);
  if (presented && n > 0 && (size_t)n < sizeof hdr)
    snprintf(hdr + n, sizeof hdr - (size_t)n, ", error=\"invalid_token\", error_description=\"%s\"", msg);
  gw_resp_header(req, "WWW-Authenticate", hdr);
  gw_respond_error(req, 401, "invalid_token", "%s", msg);
}

typedef struct del_job {
  gw_exchange *x;
  gw_mcp_del_read_fn read;
  void (*deleted)(gw_exchange *x, json_t *got);
  gw_server *srv;
  char tenant[64], user[40], sid[96];
  json_t *got; /* read's, in the txn that deleted (every run overwrites it) */
} del_job;

/* The session ends everywhere before the 204 (both endpoints): its
 * requests waiting for approval are cancelled in this transaction (as a
 * user cut cancels theirs: the client ended the session the call was
 * made in), and after the commit every loop ends the session's live
 * exchanges — GET streams, calls in flight, calls held for approval
 * (revoke.c) — while the gate holds the 204 until every loop did. Not
 * left to the purge tick: an approval arriving after the DELETE would
 * find a call whose session is gone. */
static int job_session_del(st_txn *txn, void *arg) {
  del_job *j = arg;
  json_decref(j->got);
  j->got = j->read ? j->read(txn, j->tenant, j->user, j->sid) : NULL;
  int rc = gw_session_delete(txn, j->sid);
  if (rc < 0 && rc != ST_ENOTFOUND) return rc;
  if (rc == ST_ENOTFOUND) { /* gone already: nothing was taken here */
    json_decref(j->got);
    j->got = NULL;
  } else {
    char hex[65];
    gw_session_hex(j->sid, hex);
    if ((rc = ap_session_gone(txn, j->tenant, j->user, hex, AP_SESSION_DELETED, gw_wall_ms())) < 0) return rc;
  }
  gw_revocation m;
  memset(&m, 0, sizeof m);
  m.session_gone = true;
  gw_strlcpy(m.tenant, j->tenant, sizeof m.tenant);
  gw_strlcpy(m.sid, j->sid, sizeof m.sid);
  rc = gw__fanout_on_commit(txn, j->srv, &m);
  return rc < 0 ? rc : 0;
}

static void done_session_del(int status, void *arg) {
  del_job *j = arg;
  gw_exchange *x = j->x;
  if (status < 0) gw__x_rpc_error(x, 503, -32603, "the session could not be deleted: %s", st_strerror(status));
  else {
    if (j->deleted) j->deleted(x, j->got);
    x->sid[0] = 0;
    gw__x_reply_raw(x, 204, NULL, NULL, 0);
  }
  /* tell the upstream too (its answer goes nowhere) */
  if (x->sess.upstream[0]) {
    gw_upcall u = {.method = "DELETE", .accept = "application/json, text/event-stream",
                   .protocol_version = x->sess.version, .upstream_sid = x->sess.upstream};
    x->start_ns = uv_hrtime();
    if (gw__x_upcall(x, &u) != 0) GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "upstream DELETE not sent");
  }
  json_decref(j->got);
  free(j);
  gw__x_unref(x);
}

/* What every MCP request passes first (both endpoints): the path's tenant
 * (and connector), the method, Origin, the employee token and the user's
 * state — on every request — and the session it names, if any. On a
 * refusal it has answered and returns -1. */
int gw__mcp_begin(gw_req *req, bool agg, gw_mcp_ctx *c) {
  gw_server *srv = req->lp->srv;
  memset(c, 0, sizeof *c);
  /* /t/{tenant}/mcp[/{connector}] — the router guarantees the shape */
  const char *p = req->path + 3;
  size_t tl = strcspn(p, "/");
  const char *cn = agg ? "" : p + tl + 5;
  if (!tl || tl >= sizeof c->tenant || strlen(cn) >= sizeof c->connector) {
    gw_respond_error(req, 404, "not_found", "no such MCP endpoint");
    return -1;
  }
  memcpy(c->tenant, p, tl);
  gw_strlcpy(c->connector, cn, sizeof c->connector);
  gw_strlcpy(req->tenant, c->tenant, sizeof req->tenant);
  if (!st_tenant_id_valid(c->tenant) || (!agg && !vault_connector_name_valid(c->connector))) {
    gw_respond_error(req, 404, "not_found", "no such MCP endpoint");
    return -1;
  }
  const char *m = req->method;
  if (strcmp(m, "POST") && strcmp(m, "GET") && strcmp(m, "DELETE")) {
    gw_resp_header(req, "Allow", "GET, POST, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed on an MCP endpoint", m);
    return -1;
  }
  /* Origin and Host: DNS-rebinding protection (gateway/mcp/mcp_origin.c) */
  const char *ocode;
  char owhy[400];
  int ost = gw_mcp_origin_check(req, &ocode, owhy, sizeof owhy);
  if (ost) {
    gw_respond_error(req, ost, ocode, "%s", owhy);
    return -1;
  }
  /* who: the employee token, and the user's state, on every request */
  const char *auth = gw_req_header(req, "authorization");
  if (!auth || strncasecmp(auth, "Bearer ", 7)) {
    gw__mcp_unauthorized(req, c, false, "missing Authorization: Bearer <mgw_ token>");
    return -1;
  }
  const char *tok = auth + 7;
  while (*tok == ' ') tok++;
  if (!*tok) {
    gw__mcp_unauthorized(req, c, false, "missing Authorization: Bearer <mgw_ token>");
    return -1;
  }
  uint8_t th[ST_TOKEN_HASH_LEN];
  /* an employee token (mgw_), or an access token of the gateway's OAuth
   * authorization server (mgo_, auth/oauth_token.h: bound to its resource) */
  bool oauth = !strncmp(tok, AUTH_OAUTH_ACCESS_PREFIX, sizeof AUTH_OAUTH_ACCESS_PREFIX - 1);
  int rc = oauth ? auth_oauth_token_hash(tok, AUTH_OAUTH_ACCESS_PREFIX, th) : auth_token_hash(tok, th);
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  int64_t now_s = (int64_t)time(NULL);
  c->sid = gw_req_header(req, "mcp-session-id");
  /* The same reads in the same snapshot find the same records (memo.h);
   * only the token's expiry depends on the clock. */
  uint64_t snap = st_txn_snapshot(txn);
  gw_proxy *px = gw__mcp_of(req->lp);
  gw_memo *memo = px ? px->memo : NULL;
  gw_memo_key mk = {.tok_hash = th, .tenant = c->tenant, .connector = c->connector, .sid = c->sid};
  const gw_memo_ident *hit = rc == 0 ? gw_memo_ident_get(memo, snap, &mk) : NULL;
  gw_memo_ident v;
  int crc = 0, src = ST_ENOTFOUND;
  if (hit && gw_memo_ident_live(hit, now_s)) {
    memcpy(c->user, hit->user, sizeof c->user);
    memcpy(c->tokid, hit->tokid, sizeof c->tokid);
    c->ident_expires = hit->expires;
    memcpy(c->tenant_uid, hit->tenant_uid, sizeof c->tenant_uid);
    crc = hit->conn_rc;
    src = hit->sess_rc;
    if (src == 0) c->sess = hit->sess;
  } else if (hit) {
    rc = ST_ENOTFOUND; /* expired since it was remembered */
  } else if (rc == 0) {
    rc = oauth ? auth_oauth_verify(txn, c->tenant, th, agg ? NULL : c->connector, now_s, c->user, c->tokid,
                                   &c->ident_expires)
               : auth_token_verify_hash(txn, c->tenant, th, now_s, c->user, c->tokid, &c->ident_expires);
    json_t *conn = NULL;
    crc = rc == 0 && !agg ? gw__connector_get(req->lp, txn, c->tenant, c->connector, &conn, NULL) : 0;
    json_decref(conn);
    src = rc == 0 && crc == 0 && c->sid ? gw_session_get(txn, c->sid, &c->sess) : ST_ENOTFOUND;
    if (rc == 0 && st_tenant_uid_get(txn, c->tenant, c->tenant_uid) != 0) c->tenant_uid[0] = 0;
    if (rc == 0 && (crc == 0 || crc == ST_ENOTFOUND) && (src == 0 || src == ST_ENOTFOUND)) {
      memcpy(v.user, c->user, sizeof v.user);
      memcpy(v.tenant_uid, c->tenant_uid, sizeof v.tenant_uid);
      memcpy(v.tokid, c->tokid, sizeof v.tokid);
      v.expires = c->ident_expires;
      v.conn_rc = crc;
      v.sess_rc = src;
      if (src == 0) v.sess = c->sess;
      gw_memo_ident_put(memo, snap, &mk, &v);
    }
  }
  c->ident_snapshot = rc == 0 ? snap : 0;
  st_txn_end(txn);
  /* an expired session is an unknown one, from its stored stamps: the
   * purge may not have run yet (gateway/mcp/mcp_session.h) */
  int64_t now_ms = gw_session_now_ms();
  if (src == 0 && gw_session_expired(&c->sess, now_ms, gw_sessions_limits(srv))) src = ST_ENOTFOUND;
  if (rc != 0) {
    gw__mcp_unauthorized(req, c, true, "invalid, expired or revoked token");
    return -1;
  }
  if (crc != 0) {
    gw_respond_error(req, 404, "not_found", "no connector \"%s\" in this tenant", c->connector);
    return -1;
  }
  if (gw_limits_mcp(req, c->tenant, c->user) || gw_limits_mcp_enter(req, c->tenant, c->user)) {
    gw_respond_error(req, 429, "rate_limited",
                     "too many MCP requests (mcp_rate_per_user, mcp_rate_per_tenant or mcp_concurrent_per_user); retry after "
                     "Retry-After seconds");
    return -1;
  }
  gw_req_set_owner(req, c->tenant, c->user); /* a revocation of the user closes this connection */
  c->sess_ok = src == 0 && !strcmp(c->sess.tenant, c->tenant) && !strcmp(c->sess.user, c->user) &&
               !strcmp(c->sess.connector, c->connector);
  if (c->sess_ok) gw_session_touch(req->lp, c->sid, &c->sess, now_ms);
  return 0;
}

/* Preauth runs the handler's opening checks once, before the body; the
 * handler takes their result (gw__mcp_ctx_of) instead of checking again.
 * The time the body takes to arrive opens no gap: identity and policy are
 * checked again right before anything goes upstream, and session writes
 * check inside their transaction. */
static int mcp_preauth(gw_req *req, bool agg) {
  gw_mcp_ctx *c = gw_req_alloc(req, sizeof *c);
  if (!c) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return -1;
  }
  if (gw__mcp_begin(req, agg, c) != 0) return -1;
  req->handler_data = c;
  /* its body, as it arrives, counts against its tenant's budget of
   * buffered bytes (mcp_buffered_max): up to mcp_max_body a request, for
   * each of a user's mcp_concurrent_per_user requests */
  gw_req_meter(req, gw__mcp_meter(req->lp, c->tenant));
  return 0;
}
int gw_proxy_preauth(gw_req *req) { return mcp_preauth(req, false); }
int gw_agg_preauth(gw_req *req) { return mcp_preauth(req, true); }

int gw__mcp_ctx_of(gw_req *req, bool agg, gw_mcp_ctx *c) {
  int rc = 0;
  if (req->handler_data) {
    *c = *(const gw_mcp_ctx *)req->handler_data; /* checked at preauth */
    req->handler_data = NULL;
  } else {
    rc = gw__mcp_begin(req, agg, c);
  }
  /* the replies queued for this client count against its tenant's budget
   * of buffered bytes (mcp_buffered_max), as they did while they arrived */
  if (rc == 0) gw_req_meter(req, gw__mcp_meter(req->lp, c->tenant));
  /* a body whose tree takes MiBs costs the loop its parse (any of the
   * parses that may follow: the message, a batch, the audit's arguments):
   * charged before any (gateway/core/limits.h mcp_json_mib_per_user). A
   * body past GW_JSON_TREE_MAX is refused by the estimate alone, unparsed:
   * it costs the MiBs of its bytes (what the estimates read). */
  if (rc == 0 && req->body_len > GW_JSON_FREE_BYTES) {
    size_t cost = req->body_tree_cost = gw_json_tree_cost(req->body, req->body_len);
    size_t mib = (cost <= GW_JSON_TREE_MAX ? cost : req->body_len) >> 20;
    if (mib && gw_limits_mcp_json(req, c->tenant, c->user, (int64_t)mib)) {
      gw_respond_error(req, 429, "rate_limited",
                       "this user's MCP requests carried more JSON than mcp_json_mib_per_user or "
                       "mcp_json_mib_per_tenant allow a minute (this body: %zu MiB); retry after "
                       "Retry-After seconds",
                       mib);
      return -1;
    }
  }
  return rc;
}

/* What c established (the token, its user, the session) as it is in the
 * store now: 0, 1 when the identity no longer holds, 2 when the session is
 * gone (or expired), -1 when the store cannot be read. Read again only
 * when the store changed since (or the token may have expired). */
static int still_holds(gw_req *req, const gw_mcp_ctx *c) {
  st_txn *txn;
  if (gw__read_begin(req->lp, &txn) != 0) return -1;
  int64_t now_s = (int64_t)time(NULL);
  if (c->ident_snapshot && st_txn_snapshot(txn) == c->ident_snapshot && (!c->ident_expires || now_s < c->ident_expires)) {
    gw__read_end(req->lp, txn);
    return 0;
  }
  /* the token's own expiry too: an OAuth access token's identity is its
   * grant (tokid), which outlives each access token */
  bool expired = c->ident_expires && now_s >= c->ident_expires;
  int ic = expired ? 0 : auth_identity_check(txn, c->tenant, c->user, c->tokid, now_s);
  int rc = expired || ic != 0 ? 1 : 0;
  if (rc)
    /* which check refused (a 403 on a GET or DELETE whose cause the client
     * cannot see): the token's expiry, or the identity read again */
    GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){c->tenant, req->id}), "%s %s refused: %s (user %s, token %s)",
           req->method, c->connector[0] ? "connector endpoint" : "aggregated endpoint",
           expired ? "the token expired" : auth_strerror(ic), c->user, c->tokid);
  gw_session s;
  if (!rc && (gw_session_get(txn, c->sid, &s) != 0 || strcmp(s.tenant, c->tenant) || strcmp(s.user, c->user) ||
              strcmp(s.connector, c->connector)))
    rc = 2;
  gw__read_end(req->lp, txn);
  if (!rc && gw_session_expired(&s, gw_session_now_ms(), gw_sessions_limits(req->lp->srv))) rc = 2;
  return rc;
}

/* GET and DELETE need a supported MCP-Protocol-Version when they carry
 * one (as a POST does: the connector endpoint copies it into the upstream
 * request), a session of this caller (and GET an SSE Accept).
 * Sent with a body, such a request passed its checks at preauth, before
 * the body was read: a GET stream (the aggregated endpoint's is the
 * gateway's own) goes nowhere the identity is checked again, so what
 * preauth found is read again here — a deactivation, a token revoked or
 * the session deleted while the body came must not open a stream the
 * revocation's walk could not see. */
int gw__mcp_session_checks(gw_req *req, const gw_mcp_ctx *c) {
  if (gw__mcp_version_refused(req)) return -1;
  if (!c->sid) {
    gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
    return -1;
  }
  if (!c->sess_ok) {
    gw__mcp_refuse(req, 404, -32001, "Session not found");
    return -1;
  }
  switch (still_holds(req, c)) {
  case 0: break;
  case 1:
    gw__mcp_refuse(req, 403, GW_RPC_REVOKED,
                   "access revoked: your account, your token, this connector or this tenant was disabled");
    return -1;
  case 2:
    gw__mcp_refuse(req, 404, -32001, "Session not found");
    return -1;
  default:
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  if (!strcmp(req->method, "GET") && !gw__accept_has(gw_req_header(req, "accept"), "text/event-stream")) {
    gw_respond_error(req, 406, "not_acceptable", "a GET stream needs Accept: text/event-stream");
    return -1;
  }
  return 0;
}

json_t *gw__mcp_body_json(gw_req *req, size_t flags, json_error_t *err) {
  if (!req->body_tree_cost) req->body_tree_cost = gw_json_tree_cost(req->body, req->body_len);
  return gw_json_loadb_costed(req->body, req->body_len, flags, err, req->body_tree_cost);
}

/* POST: the Accept header, then the body parsed fully and strictly. */
json_t *gw__mcp_parse_post(gw_req *req) {
  const char *accept = gw_req_header(req, "accept");
  if (!gw__accept_has(accept, "application/json") || !gw__accept_has(accept, "text/event-stream")) {
    gw_respond_error(req, 406, "not_acceptable",
                     "POST needs Accept: application/json, text/event-stream (Streamable HTTP)");
    return NULL;
  }
  /* jansson skips a raw NUL after a value; the scan, the upstream and the
   * gateway's own checks would not agree on such a text: refused */
  if (req->body_len && memchr(req->body, 0, req->body_len)) {
    gw__mcp_refuse(req, 400, -32700, "Parse error: a NUL byte in the body");
    return NULL;
  }
  json_error_t je;
  json_t *msg = gw__mcp_body_json(req, JSON_REJECT_DUPLICATES, &je);
  if (!msg) {
    char why[300];
    snprintf(why, sizeof why, "Parse error: %s (line %d column %d)", je.text, je.line, je.column);
    gw__mcp_refuse(req, 400, -32700, why);
  }
  return msg;
}

static bool plain_string(gw_json_span v) { return v.p && v.n >= 2 && v.p[0] == '"' && !memchr(v.p, '\\', v.n); }

bool gw__mcp_post_lite(gw_req *req, gw_rpc_lite *out) {
  static const char *const paths[] = {"jsonrpc", "id", "method", "params", "params.name", "params.arguments",
                                      "params._meta"};
  gw_json_span v[7];
  out->id = NULL;
  out->name[0] = '\0';
  out->name_at = (gw_json_span){0};
  out->args_at = (gw_json_span){0};
  out->meta_at = (gw_json_span){0};
  const char *accept = gw_req_header(req, "accept");
  if (!gw__accept_has(accept, "application/json") || !gw__accept_has(accept, "text/event-stream")) return false;
  if (gw_json_pick_request(req->body, req->body_len, paths, 7, v) != 1) return false;
  if (!v[0].p || v[0].n != 5 || memcmp(v[0].p, "\"2.0\"", 5) != 0) return false;
  gw_json_span m = v[2];
  if (!plain_string(m) || m.n - 2 >= sizeof out->method) return false;
  memcpy(out->method, m.p + 1, m.n - 2);
  out->method[m.n - 2] = '\0';
  if (method_clash(out->method)) return false; /* the parse refuses it (gw__check_message) */
  if (!strcmp(out->method, "initialize") || !strcmp(out->method, "server/discover") ||
      !strncmp(out->method, "tasks/", 6))
    return false;
  if (v[3].p && v[3].p[0] != '{' && v[3].p[0] != '[') return false; /* the parse words the error */
  bool call = !strcmp(out->method, "tools/call");
  if (call) {
    gw_json_span nm = v[4];
    if (!plain_string(nm) || nm.n - 2 >= sizeof out->name || memchr(nm.p + 1, '\0', nm.n - 2)) return false;
    memcpy(out->name, nm.p + 1, nm.n - 2);
    out->name[nm.n - 2] = '\0';
    out->name_at = nm;
    out->args_at = v[5]; /* its audit record's arguments (audit_call.c) */
    out->meta_at = v[6]; /* its progress token (agg_call.c) */
  }
  gw_json_span id = v[1];
  if (id.p) {
    if (plain_string(id)) {
      out->id = json_stringn(id.p + 1, id.n - 2);
    } else if (id.p[0] == '-' || (id.p[0] >= '0' && id.p[0] <= '9')) {
      for (size_t i = 0; i < id.n; i++)
        if (id.p[i] == '.' || id.p[i] == 'e' || id.p[i] == 'E') return false; /* a real: the parse refuses it */
      char t[24];
      if (id.n >= sizeof t) return false;
      memcpy(t, id.p, id.n);
      t[id.n] = '\0';
      out->id = json_integer(strtoll(t, NULL, 10)); /* within 64 bits: the scan checked */
    } else {
      return false;
    }
    if (!out->id) return false;
  }
  return true;
}

/* DELETE: the session record goes in a writer job; then 204. */
void gw__mcp_delete_session(gw_exchange *x, gw_mcp_del_read_fn read, void (*deleted)(gw_exchange *x, json_t *got)) {
  del_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  j->x = x;
  j->read = read;
  j->deleted = deleted;
  j->srv = x->lp->srv;
  gw_strlcpy(j->tenant, x->tenant, sizeof j->tenant);
  gw_strlcpy(j->user, x->user, sizeof j->user);
  gw_strlcpy(j->sid, x->sid, sizeof j->sid);
  x->refs++;
  if (gw_loop_submit_bulk(x->lp, job_session_del, done_session_del, j) != 0) {
    x->refs--;
    free(j);
    gw__x_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}

/* ---------- exchanges for requests ---------- */

gw_exchange *gw__mcp_exchange(gw_req *req, int kind, const gw_mcp_ctx *c, const gw_flow_ops *flow, void *state) {
  gw_proxy *p = gw__mcp_of(req->lp);
  gw_exchange *x = gw__x_new(&p->reg, req->lp, c->tenant, c->connector, c->user, c->tokid, flow, state);
  if (!x) return NULL;
  x->ident_snapshot = c->ident_snapshot;
  x->ident_expires = c->ident_expires;
  memcpy(x->tenant_uid, c->tenant_uid, sizeof x->tenant_uid);
  x->m = gw__mcp_stats_for(&p->stats, c->tenant, c->connector[0] ? c->connector : "(all)");
  if (x->m) GW_STAT_ADD(x->m->requests, 1);
  gw__x_attach(x, req, kind);
  return x;
}

gw_exchange *gw__mcp_child(gw_exchange *parent, const char *connector, const gw_flow_ops *flow, void *state) {
  gw_proxy *p = gw__mcp_of(parent->lp);
  gw_exchange *x = gw__x_new(&p->reg, parent->lp, parent->tenant, connector, parent->user, parent->tokid, flow, state);
  if (!x) return NULL;
  x->kind = parent->kind;
  x->ident_snapshot = parent->ident_snapshot;
  x->ident_expires = parent->ident_expires;
  memcpy(x->tenant_uid, parent->tenant_uid, sizeof x->tenant_uid);
  gw_strlcpy(x->sid, parent->sid, sizeof x->sid);
  x->sess = parent->sess;
  x->revoked = parent->revoked;
  x->m = gw__mcp_stats_for(&p->stats, x->tenant, connector);
  return x;
}

gw_exchange *gw__mcp_bare(gw_loop *lp, const char *tenant, const char *connector, const gw_flow_ops *flow,
                          void *state) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p) {
    if (flow && flow->free && state) flow->free(state);
    return NULL;
  }
  return gw__x_new(&p->reg, lp, tenant, connector, NULL, NULL, flow, state);
}

void gw__mcp_count(gw_exchange *x, const char *connector) {
  x->m = gw__mcp_stats_for(&gw__mcp_of(x->lp)->stats, x->tenant, connector);
}

const char *gw_mcp_strerror(int code) {
  switch (code) {
  case GW_UP_EREVOKED: return "access revoked";
  case GW_UP_EHIDDEN: return "connector hidden by policy";
  case GW_MCP_EAUTH: return "upstream refused the gateway's credential";
  case GW_MCP_EHTTP: return "upstream answered with a failure status";
  case GW_MCP_EREPLY: return "upstream sent no valid reply";
  case GW_MCP_ENOTSENT: return "upstream call not started";
  case GW_MCP_ESTALE: return "upstream session unknown to the upstream";
  case GW_MCP_ECONNECT: return "the user has not connected this connector";
  case GW_MCP_EREFRESH: return "the user's grant could not be refreshed";
  default: return "upstream unavailable";
  }
}

/* ---------- initialize: the gateway session (both endpoints) ---------- */

typedef struct session_job {
  gw_exchange *x;
  gw_vis_stamp vis;
  char *bind; /* the binding the upstream session in s was opened with; NULL: unknown */
  char sid[96];
  gw_session s;
  char now[32];
  int64_t unix_now;
  json_t *result;
  void (*reply)(gw_exchange *x, json_t *result);
} session_job;

void gw__visible_stamp(gw_loop *lp, const char *tenant, const char *user, const char *connector, gw_vis_stamp *out) {
  memset(out, 0, sizeof *out);
  st_txn *txn;
  if (gw__read_begin(lp, &txn) != 0) return;
  int err;
  /* one txn for the decision and the stamp: the cache's entry is current
   * in it (pol_cache_get checked generation, revision, cuts and uid) */
  const pol_user *pu = pol_cache_get(lp->pol, txn, tenant, user, &err);
  if (pu && pol_connector_visible(pu, connector) && st_tenant_uid_get(txn, tenant, out->uid) == 0) {
    out->gen = pol_user_generation(pu);
    out->rev = pol_user_rev(pu);
    out->cutgen = st_txn_cut_generation(txn);
    out->visible = true;
  }
  gw__read_end(lp, txn);
}

int gw__visible_in(st_txn *txn, const gw_vis_stamp *stamp, const char *tenant, const char *user,
                   const char *connector) {
  /* the cuts as they are now (the full check reads the marks now, not as
   * they were when the txn began), and only an active tenant: a purge
   * deletes the directory without moving the generation */
  char state[16];
  if (stamp && stamp->visible && st_cut_generation_now(st_txn_store(txn)) == stamp->cutgen &&
      pol_generation(txn, tenant) == stamp->gen && pol_version(txn, tenant) == stamp->rev &&
      st_tenant_state(txn, tenant, state) == 0 && !strcmp(state, "active")) {
    char uid[ST_TENANT_UID_LEN + 1];
    if (st_tenant_uid_get(txn, tenant, uid) == 0 && !strcmp(uid, stamp->uid)) return 0; /* nothing moved */
  }
  pol_user *pu;
  int rc = pol_user_load(txn, tenant, user, &pu);
  if (rc) return rc;
  bool visible = pol_connector_visible(pu, connector);
  pol_user_free(pu);
  return visible ? 0 : GW_UP_EHIDDEN;
}

static int job_session_create(st_txn *txn, void *arg) {
  session_job *j = arg;
  if ((j->x->ident_expires && j->unix_now >= j->x->ident_expires) ||
      auth_identity_check(txn, j->s.tenant, j->s.user, j->x->tokid, j->unix_now) != 0)
    return GW_UP_EREVOKED;
  /* a single-connector session only while the connector is the user's:
   * one written after a cut would come back with the grant */
  int rc = j->s.connector[0] ? gw__visible_in(txn, &j->vis, j->s.tenant, j->s.user, j->s.connector) : 0;
  /* ... and, holding an upstream session id, only while the connector
   * still points at the server that issued it, with the credential it
   * was opened with: a move or a rekey (or the user's own new key or
   * account) that committed while it was being opened deleted the
   * connector's sessions before this one existed — stored now, it would
   * outlive them with an id of the old server or credential (agg_up.c's
   * job_usess keeps the same rule) */
  if (!rc && j->s.connector[0] && j->s.upstream[0]) {
    json_t *rec = NULL, *now = NULL;
    int g = vault_connector_get(txn, j->s.tenant, j->s.connector, &rec);
    if (g == ST_ENOTFOUND) rc = GW_MCP_ESTALE;
    else if (g) rc = g;
    else if (!j->bind || !(now = vault_upstream_bind(txn, j->s.tenant, j->s.connector, j->s.user, rec)) ||
             strcmp(j->bind, json_string_value(now)))
      rc = GW_MCP_ESTALE;
    json_decref(now);
    json_decref(rec);
  }
  return rc ? rc : gw_session_put(txn, j->sid, &j->s, j->now);
}

static void session_job_free(session_job *j) {
  json_decref(j->result);
  free(j->bind);
  OPENSSL_cleanse(j->sid, sizeof j->sid);
  free(j);
}

static void done_session_create(int status, void *arg) {
  session_job *j = arg;
  gw_exchange *x = j->x;
  /* not stored: the upstream session the connector endpoint's initialize
   * opened is ended there (usess_end.c rule 6); stored, it is the
   * session's (and ended with it) */
  if (status < 0) gw__usess_end_opened_id(x, j->s.upstream, j->s.version);
  else gw__usess_forget_opener(x);
  if (status == GW_UP_EREVOKED || status == GW_UP_EHIDDEN) {
    gw__x_start_failed(x, status);
  } else if (status == GW_MCP_ESTALE) {
    gw__x_rpc_error(x, 503, -32603,
                    "connector \"%s\" was moved to another server or given another credential (yours, or the "
                    "gateway's) while the session was being opened; initialize again",
                    x->connector);
  } else if (status == ST_EMAPFULL) {
    /* not transient: the store stays full until an operator makes room */
    gw__x_rpc_error(x, 507, -32603,
                    "the gateway's store is full: no new session can be stored (an operator must raise "
                    "store_map_size or free space); sessions already open keep working");
  } else if (status < 0) {
    gw__x_rpc_error(x, 503, -32603, "the gateway could not store the session: %s", st_strerror(status));
  } else if (x->req) {
    gw_strlcpy(x->sid, j->sid, sizeof x->sid);
    j->reply(x, j->result);
    j->result = NULL;
  }
  session_job_free(j);
  gw__x_unref(x);
}

void gw__mcp_session_create(gw_exchange *x, const gw_session *s, json_t *result,
                            void (*reply)(gw_exchange *x, json_t *result)) {
  session_job *j = calloc(1, sizeof *j);
  if (!j || st_token_new(GW_SESSION_PREFIX, j->sid, sizeof j->sid) != 0) {
    free(j);
    gw__usess_end_opened_id(x, s->upstream, s->version);
    json_decref(result);
    gw__x_rpc_error(x, 500, -32603, "the gateway could not create a session");
    return;
  }
  j->x = x;
  j->s = *s;
  j->result = result;
  j->reply = reply;
  if (s->connector[0] && s->upstream[0] && x->sess_bind && !(j->bind = strdup(json_string_value(x->sess_bind) ?: ""))) {
    session_job_free(j);
    gw__usess_end_opened_id(x, s->upstream, s->version);
    gw__x_rpc_error(x, 500, -32603, "the gateway could not create a session");
    return;
  }
  if (s->connector[0]) gw__visible_stamp(x->lp, s->tenant, s->user, s->connector, &j->vis);
  time_t now = time(NULL);
  struct tm tm;
  j->unix_now = (int64_t)now;
  gmtime_r(&now, &tm);
  strftime(j->now, sizeof j->now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  x->refs++;
  if (gw_loop_submit_bulk(x->lp, job_session_create, done_session_create, j) != 0) {
    x->refs--;
    gw__usess_end_opened_id(x, s->upstream, s->version);
    session_job_free(j);
    gw__x_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}
