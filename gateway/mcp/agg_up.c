/* gateway/mcp/agg_up.c — the upstream side every aggregated flow shares
 * (see agg.h): buffered steps (one upstream call whose reply lands in
 * x->body, then the flow's continuation), the switch to relaying, and the
 * upstream session of a (client session, connector), opened lazily with the
 * client's initialize parameters replayed.
 *
 * Rules this file keeps, and why:
 *  1. The continuation lives in the flow's typed state (gw_agg_up, first
 *     member), never in the exchange: the exchange does not know flows.
 *  2. A step's reply is wanted only while the client half is (or the flow
 *     is clientless, a probe): otherwise the transfer is aborted early.
 *  3. 401/403 is GW_MCP_EAUTH, a 3xx or worse GW_MCP_EHTTP, and a 404/400
 *     to our session id GW_MCP_ESTALE: the flow retries once on a fresh
 *     upstream session (the official SDK's servers answer 400 "No valid
 *     session ID" where the spec says 404).
 *  4. A new upstream session is stored in a writer job before the flow goes
 *     on, and open client GET streams of that session start its feed. One
 *     that is not stored — job_usess refuses it (the binding changed while
 *     it was opened, the connector was cut or deleted) or its opening or
 *     its write fails — is ended at the upstream, with the credential and
 *     at the URL its initialize went with (x->opening, usess_end.c): no
 *     one would ever use it, and the upstream would keep it open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/memo.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

/* ---------- buffered upstream calls (steps of a flow) ---------- */


gw_agg_up *gw__agg_up(gw_exchange *x) { return x->state; }

static void step_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  x->status = status;
  x->up_ct[0] = 0;
  x->up_sid[0] = 0;
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, "content-type")) gw_strlcpy(x->up_ct, h[i].value, sizeof x->up_ct);
    else if (!strcasecmp(h[i].name, "mcp-session-id")) gw_strlcpy(x->up_sid, h[i].value, sizeof x->up_sid);
  }
  if (!gw__x_wanted(x)) gw_out_abort(r);
}

static int step_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n) {
  int arc = 0;
  if (!gw__x_wanted(x) || !gw__x_take(x, n) || (arc = gw_buf_append(&x->body, p, n)) != 0) {
    x->too_big = arc != 0;
    x->over_budget = arc == GW_EBUDGET; /* the step's own error text says so (agg_list.c) */
    gw_out_abort(r);
  } else if (!gw__sse_is(x->up_ct)) {
    gw_out_partial(r, true); /* a JSON reply: one message (upstream_event_timeout_ms) */
  }
  return 0;
}

static void step_done(gw_exchange *x, gw_out_req *r, int err) {
  gw_agg_up *up = gw__agg_up(x);
  (void)r;
  if (!err && (x->status == 401 || x->status == 403)) err = GW_MCP_EAUTH;
  /* 404 is what the spec says for an unknown session; the official SDK's
   * servers answer 400 "No valid session ID" — either way, retried once on
   * a fresh session (a genuine 400 fails the same way again) */
  if (!err && (x->status == 404 || x->status == 400) && x->sess.upstream[0]) err = GW_MCP_ESTALE;
  /* a 3xx is a failure too: redirects are neither followed nor relayed */
  if (gw__x_wanted(x) && up->cont) up->cont(x, err ? err : (x->status >= 300 ? GW_MCP_EHTTP : 0));
}

/* The relayed call's answer: the upstream forgot our session (restart)? */
static bool relay_stale(gw_exchange *x, int status) {
  gw_agg_up *up = gw__agg_up(x);
  if ((status == 404 || status == 400) && x->sess.upstream[0] && !up->retried) {
    up->stale = true;
    return true;
  }
  return false;
}

void gw__agg_up_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  if (gw__agg_up(x)->relaying) gw__relay_headers(x, r, status, h, n, true, relay_stale);
  else step_headers(x, r, status, h, n);
}

int gw__agg_up_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n) {
  return gw__agg_up(x)->relaying ? gw__relay_data(x, r, p, n) : step_data(x, r, p, n);
}

void gw__agg_up_done(gw_exchange *x, gw_out_req *r, int err) {
  gw_agg_up *up = gw__agg_up(x);
  if (!up->relaying) {
    step_done(x, r, err);
  } else if (up->stale && gw__x_client_alive(x) && up->cont) {
    /* retry on a fresh upstream session */
    up->stale = false;
    up->retried = true;
    up->cont(x, 0);
  } else {
    /* a call's stream ending before its reply, resumable: the reply comes
     * on the GET stream, from this connector only (agg_maps.c) */
    if (x->resumable && gw__agg_is_call(x) && gw__x_client_alive(x) &&
        json_array_size(x->replied) < json_array_size(x->ids))
      gw__agg_awaited_note(x);
    gw__relay_done(x, r, err, NULL);
  }
}

int gw__agg_step(gw_exchange *x, const char *method, json_t *body, gw_agg_step_fn cont) {
  gw_agg_up *up = gw__agg_up(x);
  char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  gw_buf_reset(&x->body);
  up->cont = cont;
  up->relaying = false;
  gw_upcall u = {0};
  u.method = method;
  u.body = s;
  u.len = s ? strlen(s) : 0;
  u.accept = "application/json, text/event-stream";
  u.protocol_version = x->sess.version;
  u.upstream_sid = x->sess.upstream;
  u.keep_opener = up->opening;
  up->opening = false;
  int rc = gw__x_upcall(x, &u);
  free(s);
  /* revoked or hidden: the client hears why; the caller's own error
   * answer then finds the exchange answered */
  if (rc == GW_UP_EREVOKED || rc == GW_UP_EHIDDEN) gw__x_start_failed(x, rc);
  return rc;
}

/* Fire-and-forget calls (notifications, upstream DELETEs) and capability
 * probes: a gw_agg_up is all their state. */
static void up_free(void *state) { free(state); }
const gw_flow_ops gw__agg_note_flow = {.name = "agg-note", .up_headers = gw__agg_up_headers,
                                      .up_data = gw__agg_up_data, .up_done = gw__agg_up_done, .free = up_free};
const gw_flow_ops gw__agg_local_flow = {.name = "agg-local"};

/* ---------- lazily opened upstream sessions ---------- */

typedef struct usess_job {
  gw_exchange *x;
  gw_server *srv;
  gw_vis_stamp vis;
  char tenant[64], user[40], sid[96], connector[40], upstream[256];
  char *bind; /* the server and credential that opened it (vault_upstream_bind then) */
  uint64_t stale_hash; /* the stale id it replaces (gw_agg_up's), or 0 */
  char adopted[256];   /* out: the session's id another exchange stored meanwhile ("" none) */
} usess_job;

/* FNV-1a of an upstream session id (0 is never returned) */
static uint64_t id_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h ? h : 1;
}

/* The session's client streams, on every loop, attach to the new upstream
 * session before the exchange goes on: the news goes out after the commit
 * and this loop's gate holds done_usess until every loop applied it (an
 * upstream may send on its GET stream as soon as it is initialized); then
 * the exchange waits until the upstream answered those streams' GETs
 * (feeds_wait). */
static int job_usess(st_txn *txn, void *arg) {
  usess_job *j = arg;
  /* only while the connector is the user's: an id stored after the
   * connector cut (revoke.c) would be used again once it is granted back */
  int rc = gw__visible_in(txn, &j->vis, j->tenant, j->user, j->connector);
  /* ... and only while the connector still points at the server that
   * issued it, with the credential it was opened with: a PUT to a new URL
   * or with another credential that committed while the session was being
   * opened dropped the connector's ids before this one exists, and an
   * upstream session id must never reach another server, nor go on under
   * another credential (an admin rotating a leaked key) — nor the user's
   * own key or account replaced meanwhile (revoke.c end_user_connector
   * dropped their ids) */
  json_t *rec = NULL, *now = NULL;
  if (rc == 0 && (rc = vault_connector_get(txn, j->tenant, j->connector, &rec)) == 0 &&
      (!j->bind || !(now = vault_upstream_bind(txn, j->tenant, j->connector, j->user, rec)) ||
       strcmp(j->bind, json_string_value(now))))
    rc = GW_MCP_ESTALE;
  json_decref(now);
  json_decref(rec);
  /* Opened twice at once (a client's first requests to a connector arrive
   * together: Claude Code lists tools, prompts and resources at start,
   * each opening the session): the first stored wins and this one adopts
   * it — its own upstream session is ended (done_usess), not left open
   * at the upstream for ever. An id stored by another exchange than the
   * stale one this replaces is such a winner. */
  j->adopted[0] = 0;
  if (rc == 0) {
    char cur[256];
    int g = gw_session_upstream_get(txn, j->sid, j->connector, cur);
    if (g < 0 && g != ST_ENOTFOUND) return g;
    if (g == 0 && cur[0] && strcmp(cur, j->upstream) && id_hash(cur) != j->stale_hash) {
      gw_strlcpy(j->adopted, cur, sizeof j->adopted);
      return 0;
    }
    rc = gw_session_upstream_put(txn, j->sid, j->connector, j->upstream);
  }
  if (rc < 0) return rc;
  gw_revocation m;
  memset(&m, 0, sizeof m);
  m.session_opened = true;
  gw_strlcpy(m.tenant, j->tenant, sizeof m.tenant);
  gw_strlcpy(m.sid, j->sid, sizeof m.sid);
  gw_strlcpy(m.connector, j->connector, sizeof m.connector);
  gw_strlcpy(m.upstream, j->upstream, sizeof m.upstream);
  return gw__fanout_on_commit(txn, j->srv, &m);
}

/* The feeds the new upstream session's news attached (on every loop,
 * applied by now) are awaited until the upstream answered their GETs —
 * only by the exchange that opened it, polling (rare: once per upstream
 * session that can push, with a client stream open), at most
 * revocation_fanout_timeout_ms; a client gone ends the wait. */
#define FEEDS_POLL_MS 5

typedef struct feeds_wait {
  uv_timer_t t;
  gw_exchange *x; /* a reference */
  uint64_t until;
} feeds_wait;

static void feeds_waited(uv_handle_t *h) {
  feeds_wait *w = h->data;
  gw_exchange *x = w->x;
  gw_agg_step_fn after = gw__agg_up(x)->cont;
  free(w);
  if (gw__x_client_alive(x) && after) after(x, 0);
  gw__x_unref(x);
}

static void feeds_tick(uv_timer_t *t) {
  feeds_wait *w = t->data;
  gw_exchange *x = w->x;
  if (gw__x_client_alive(x) && uv_now(t->loop) < w->until && gw__agg_feeds_awaited(x->lp->srv, x->sid, x->connector))
    return;
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, feeds_waited);
}

static void done_usess(int status, void *arg) {
  usess_job *j = arg;
  gw_exchange *x = j->x;
  gw_agg_step_fn after = gw__agg_up(x)->cont;
  if (status < 0) {
    /* not stored — the binding changed meanwhile (another URL, key or
     * account: job_usess refused it), the connector was cut or deleted, or
     * the write failed: nothing will use the session just opened, so it
     * is ended at the upstream, with the credential that opened it */
    gw__usess_end_opened(x);
  } else if (j->adopted[0]) {
    /* another exchange's session is the client session's: this one's goes */
    gw__usess_forget_opener(x);
    gw__agg_end_upstream(x, x->connector, x->sess.upstream, x->sess_bind);
    gw_strlcpy(x->sess.upstream, j->adopted, sizeof x->sess.upstream);
  } else {
    gw__usess_forget_opener(x);
  }
  free(j->bind);
  free(j);
  if (status >= 0 && gw__x_client_alive(x) && after && gw__agg_feeds_awaited(x->lp->srv, x->sid, x->connector)) {
    feeds_wait *w = calloc(1, sizeof *w);
    if (w && uv_timer_init(&x->lp->loop, &w->t) == 0) {
      w->t.data = w;
      w->x = x; /* the job's reference */
      w->until = uv_now(&x->lp->loop) + (uint64_t)x->lp->srv->cfg.revocation_fanout_timeout_ms;
      uv_timer_start(&w->t, feeds_tick, FEEDS_POLL_MS, FEEDS_POLL_MS);
      return;
    }
    free(w);
  }
  if (gw__x_client_alive(x) && after) after(x, status < 0 ? status : 0);
  gw__x_unref(x);
}

static void usess_initialized(gw_exchange *x, int err) {
  (void)err; /* a server may answer the notification oddly: the session stands */
  usess_job *j = calloc(1, sizeof *j);
  gw_agg_step_fn after = gw__agg_up(x)->after;
  gw__agg_up(x)->cont = after;
  if (!j) {
    gw__usess_end_opened(x);
    after(x, ST_ENOMEM);
    return;
  }
  j->x = x;
  j->srv = x->lp->srv;
  gw_strlcpy(j->tenant, x->tenant, sizeof j->tenant);
  gw_strlcpy(j->user, x->user, sizeof j->user);
  gw_strlcpy(j->sid, x->sid, sizeof j->sid);
  gw_strlcpy(j->connector, x->connector, sizeof j->connector);
  gw_strlcpy(j->upstream, x->sess.upstream, sizeof j->upstream);
  j->bind = x->sess_bind ? strdup(json_string_value(x->sess_bind)) : NULL;
  j->stale_hash = gw__agg_up(x)->stale_hash;
  gw__visible_stamp(x->lp, j->tenant, j->user, j->connector, &j->vis);
  x->refs++;
  if (gw_loop_submit_bulk(x->lp, job_usess, done_usess, j) != 0) {
    x->refs--;
    free(j->bind);
    free(j);
    gw__usess_end_opened(x);
    after(x, ST_EBUSY);
  }
}

static void usess_initialize_done(gw_exchange *x, int err) {
  gw_agg_step_fn after = gw__agg_up(x)->after;
  json_t *id = json_string("mcpgate-init");
  json_t *msg = err ? NULL : gw__x_find_reply(x, id);
  json_decref(id);
  if (!msg || !json_is_object(json_object_get(msg, "result"))) {
    json_decref(msg);
    gw__usess_forget_opener(x); /* no session was opened */
    after(x, err ? err : GW_MCP_EREPLY); /* GW_MCP_EAUTH stays: the caller names it */
    return;
  }
  gw__agg_learn_caps(x, json_object_get(json_object_get(msg, "result"), "capabilities"));
  json_decref(msg);
  gw_strlcpy(x->sess.upstream, x->up_sid, sizeof x->sess.upstream);
  json_t *note = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", "notifications/initialized");
  if (gw__agg_step(x, "POST", note, usess_initialized) != 0) {
    gw__usess_end_opened(x); /* refused (the binding changed since, revoked, hidden) or not sent */
    after(x, GW_MCP_ENOTSENT);
  }
}

void gw__agg_ensure_upstream(gw_exchange *x, gw_agg_step_fn after) {
  gw_agg_up *u = gw__agg_up(x);
  st_txn *txn;
  char up[256] = "";
  if (gw__agg_vault_gate(x, after)) return; /* no grant, or refreshing it first */
  if (!u->fresh_session && gw__read_begin(x->lp, &txn) == 0) {
    /* every call reads it: from the loop's memo while the store has not
     * changed (memo.h), else a hash of the session id and a lookup */
    gw_proxy *p = gw__mcp_of(x->lp);
    uint64_t snap = st_txn_snapshot(txn);
    int rc = 0;
    if (!gw_memo_upstream_get(p ? p->memo : NULL, snap, x->sid, x->connector, up) &&
        (rc = gw_session_upstream_get(txn, x->sid, x->connector, up)) == 0)
      gw_memo_upstream_put(p ? p->memo : NULL, snap, x->sid, x->connector, up);
    /* the server and credential the id belongs to: the binding in this
     * very snapshot (a move, a rekey or the user's new key or account
     * drops the ids in the same write, job_usess stores one only for the
     * binding it was opened under); the upcall sends the id only while it
     * holds */
    json_t *conn = NULL;
    vault_conn_facts cf;
    if (rc == 0 && (rc = gw__connector_get(x->lp, txn, x->tenant, x->connector, &conn, &cf)) == 0) {
      json_decref(x->sess_bind);
      x->sess_bind = vault_upstream_bind_facts(txn, x->tenant, x->connector, x->user, &cf);
      if (!x->sess_bind) rc = ST_EIO; /* unknown: a fresh upstream session */
    }
    json_decref(conn);
    gw__read_end(x->lp, txn);
    if (rc == 0) {
      gw_strlcpy(x->sess.upstream, up, sizeof x->sess.upstream);
      after(x, 0);
      return;
    }
  }
  u->stale_hash = u->fresh_session && x->sess.upstream[0] ? id_hash(x->sess.upstream) : 0;
  x->sess.upstream[0] = 0;
  u->fresh_session = false;
  u->after = after;
  /* the client's own, or (a record without them: too large to keep) the
   * defaults — new references, which the pack takes ("o") */
  json_t *client = json_loads(x->sess.client[0] ? x->sess.client : "{}", 0, NULL);
  json_t *caps = json_incref(json_object_get(client, "capabilities"));
  json_t *info = json_incref(json_object_get(client, "clientInfo"));
  json_decref(client);
  json_t *params = json_pack("{s:s,s:o,s:o}", "protocolVersion", x->sess.version[0] ? x->sess.version : GW_AGG_LATEST_VERSION,
                             "capabilities", caps ? caps : json_object(), "clientInfo",
                             info ? info : json_pack("{s:s,s:s}", "name", "mcpgate", "version", "0.1.0"));
  json_t *init = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", "mcpgate-init", "method", "initialize",
                           "params", params);
  u->opening = true; /* what it goes with is kept to end it with, should it not be stored */
  if (gw__agg_step(x, "POST", init, usess_initialize_done) != 0) after(x, GW_MCP_ENOTSENT);
}
