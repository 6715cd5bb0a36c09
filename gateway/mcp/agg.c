/* gateway/mcp/agg.c — /t/{tenant}/mcp: the one URL employees paste. The
 * gateway is itself the MCP server here and merges every connector the
 * user's policy shows them.
 *
 * - initialize is answered by the gateway (no upstream is contacted); the
 *   client's capabilities and clientInfo are kept in the session record
 *   and replayed when an upstream session is opened — lazily, per
 *   (client session, connector), the first time a connector is needed.
 * - tools/list walks the visible connectors in name order, one upstream
 *   page per client page; tools are named {connector}__{tool} and filtered
 *   by policy. Cursors are opaque (base64url of {"c":connector,"u":cursor});
 *   a bad cursor is -32602. A connector that fails is skipped with a
 *   warning: its tools disappear until it recovers.
 * - tools/call splits the name at the first "__", decides by policy, and
 *   forwards with the prefix stripped; the answer (JSON or SSE, progress
 *   included) is relayed. Server→client requests inside that stream get
 *   ids "mcpgate:{connector}:{original id as JSON}" so the client's answer
 *   routes back to the right upstream with the original id.
 * - GET multiplexes the upstreams' GET streams (of every upstream session
 *   of the client session, including ones opened later) into one stream,
 *   with server→client request ids rewritten as above; event ids encode
 *   every upstream's last event id, so Last-Event-ID resumes each one.
 *   list_changed from policy/membership changes is injected there too.
 *   DELETE ends the gateway session.
 * - Client notifications: notifications/cancelled goes to the upstream
 *   running that request; others (roots/list_changed, …) to every upstream
 *   session of the client session. The client's 202 (logging/setLevel's
 *   {} too) comes once the upstreams took it: each forward holds one of the
 *   user's mcp_concurrent_per_user units until then, and the client
 *   leaving ends them.
 * - Upstream notifications (on a call's stream or the GET stream) that name
 *   something of the client's reach it only when they name that
 *   connector's own: a progress token the client gave a request to it, a
 *   question it asked (the requestId renamed as the question's id was), a
 *   URL elicitation it asked and has not completed (an elicitationId an
 *   upstream gives reaches the client as "mcpgate:{connector}:{id}"), a
 *   resource no other connector offers in the session; any other is
 *   dropped (agg_maps.c).
 * - Prompts are named {connector}__{prompt} like tools; resources keep
 *   their URIs and are routed by a per-session URI→connector map built from
 *   resource lists, templates (by literal prefix), resource links in
 *   results and the connector a subscription went to (a URI several
 *   connectors offer is routed to none, logged);
 *   completion refs route the same way. prompts/resources/completions/
 *   logging are advertised when a connector the user sees announced them
 *   (learned at the connector's PUT and at every upstream initialize).
 * - JSON-RPC batches (protocol 2025-03-26 only): each element runs as its
 *   own exchange; replies are collected into one array (streams inside a
 *   batch are collected, not relayed) — agg_batch.c.
 *
 * This file: dispatch, initialize (answered by the gateway), client
 * notifications and DELETE. Elsewhere: the upstream steps and lazily opened
 * upstream sessions every flow shares (agg_up.c), the per-session maps
 * (agg_maps.c), capabilities and probes (probe.c), and the flows:
 * agg_list.c, agg_call.c, agg_mux.c, agg_batch.c.
 *
 * Rules this file keeps: every aggregated exchange starts with the
 * flow-less gw__agg_local_flow and a handler switches it to its own flow
 * with its own typed state (agg.h: gw_agg_up first when it calls
 * upstream); initialize writes the session in a writer job that checks the
 * identity again inside its transaction; a session's upstream sessions and
 * in-memory maps go with it at DELETE. */
#include "gateway/mcp/agg.h"
#include "gateway/mcp/decide.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/core/limits.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/out/outbound.h"
#include "store/token.h"
#include "vault/vault.h"

/* ---------- small helpers ---------- */

char *gw__agg_b64url(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (!out) return NULL;
  int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = 0;
  for (char *p = out; *p; p++) *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  return out;
}

json_t *gw__agg_unb64url(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 4096) return NULL;
  char *in = malloc(n + 4);
  if (!in) return NULL;
  size_t i = 0;
  for (; i < n; i++) {
    char c = s[i];
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      free(in);
      return NULL;
    }
    in[i] = c;
  }
  while (i % 4) in[i++] = '=';
  in[i] = 0;
  unsigned char *out = malloc(i);
  int len = out ? EVP_DecodeBlock(out, (unsigned char *)in, (int)i) : -1;
  free(in);
  if (len < 0) {
    free(out);
    return NULL;
  }
  while (len > 0 && out[len - 1] == 0) len--; /* padding bytes */
  json_t *j = json_loadb((char *)out, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
  free(out);
  return j;
}

json_t *gw__agg_rpc_result(const json_t *id, json_t *result) {
  return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result", result);
}

/* The connectors the user may see, in name order; with `cap`, only those
 * whose learned capabilities include it (or are not learned yet). */
json_t *gw__agg_visible(gw_exchange *x, const pol_user *pu, const char *cap) {
  st_txn *txn;
  json_t *all = NULL, *out = json_array();
  if (st_read_begin(x->lp->srv->store, &txn) != 0) return out;
  vault_connector_list(txn, x->tenant, &all);
  st_txn_end(txn);
  size_t i;
  json_t *c;
  json_array_foreach(all, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *caps = json_object_get(c, "capabilities");
    if (cap && json_is_object(caps) && !json_object_get(caps, cap)) continue;
    if (name && pu && pol_connector_visible(pu, name)) json_array_append_new(out, json_string(name));
  }
  json_decref(all);
  return out;
}

/* ---------- client notifications ---------- */

/* The binding of each connector of ups ({connector: upstream id}, the
 * upstream sessions of `user`'s session) read in the same txn: the server
 * and credential each id belongs to (vault_upstream_bind; a move, a rekey
 * or the user's new key or account drops the ids in the write that
 * changes it). A connector without one is left out. */
static json_t *upstream_binds(st_txn *txn, const char *tenant, const char *user, json_t *ups) {
  json_t *out = json_object();
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) {
    json_t *rec = NULL;
    json_t *b = vault_connector_get(txn, tenant, conn, &rec) == 0 ? vault_upstream_bind(txn, tenant, conn, user, rec)
                                                                  : NULL;
    if (b) json_object_set_new(out, conn, b);
    json_decref(rec);
  }
  return out;
}

/* ---------- forwards a client message waits for ---------- */

/* A client message the gateway forwards without an answer of the
 * upstreams' to relay (a notification, logging/setLevel) is answered once
 * every upstream it went to answered its forward (or failed): each forward
 * is collected into it (gw__x_collect_into), and its client leaving ends
 * the forwards still running. The forwards hold one of the user's
 * mcp_concurrent_per_user units each on its request meanwhile (the
 * request's own covers the first; a batch counts them before anything
 * runs, agg_batch.c): answered at once while its forwards ran on, a
 * client repeating notifications to a slow upstream held any number of
 * upstream connections on no unit at all. */
typedef struct fan_state {
  gw_exchange **kids; /* the forwards (references), n of cap */
  size_t n, cap;
  int pending;        /* forwards not answered yet */
  bool sent;          /* every forward is made: the last answer answers the client */
  json_t *answer;     /* the client's answer when done, or NULL: 202 */
} fan_state;

static void fan_free(void *state) {
  fan_state *st = state;
  for (size_t i = 0; i < st->n; i++) gw__x_unref(st->kids[i]);
  free(st->kids);
  json_decref(st->answer);
  free(st);
}

/* Every forward answered: the client gets its answer (once). */
static void fan_finish(gw_exchange *x) {
  fan_state *st = x->state;
  if (!st->sent || st->pending > 0) return;
  st->sent = false;
  json_t *a = st->answer;
  st->answer = NULL;
  if (a) gw__x_reply_json(x, 200, a);
  else gw__x_reply_raw(x, 202, NULL, NULL, 0);
}

static void fan_collect(gw_exchange *x, int slot, json_t *j) {
  (void)slot;
  json_decref(j); /* what the upstream said to a notification goes nowhere */
  ((fan_state *)x->state)->pending--;
  fan_finish(x);
}

/* The client left (or was answered: nothing runs then): the forwards
 * still running end. Neither uncollect nor an abort calls back
 * synchronously. */
static void fan_end(gw_exchange *x) {
  fan_state *st = x->state;
  for (size_t i = 0; i < st->n; i++)
    if (st->kids[i]->into == x) gw__x_uncollect(st->kids[i]);
}

static const gw_flow_ops fan_flow = {
    .name = "agg-fan", .collect = fan_collect, .client_end = fan_end, .free = fan_free};

/* x waits for its forwards from now on (answer: its answer when they are
 * done, stolen; NULL: 202). false: out of memory (x was answered). */
static bool fan_begin(gw_exchange *x, json_t *answer) {
  fan_state *st = calloc(1, sizeof *st);
  if (!st) {
    json_decref(answer);
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return false;
  }
  st->answer = answer;
  gw__x_set_flow(x, &fan_flow, st);
  return true;
}

/* The forwards are all made: x answers when the last is. */
static void fan_sent(gw_exchange *x) {
  ((fan_state *)x->state)->sent = true;
  fan_finish(x);
}

/* The forward c answered (or failed): collected into the message it
 * forwards. */
static void forward_done(gw_exchange *c, int err) {
  (void)err;
  gw__x_reply_raw(c, 202, NULL, NULL, 0);
}

/* msg (stolen) to one connector's upstream session, which belongs to the
 * server and credential bind names (vault_connector_bind; borrowed; NULL:
 * none known, not sent). The forward is
 * parent's child (its identity: revocable with it); into: the message
 * waiting for it (fan_begin), or NULL: fire and forget (another loop's
 * news). */
static void forward_note(gw_exchange *into, gw_exchange *parent, const char *connector, const char *upstream,
                         json_t *bind, json_t *msg) {
  if (!bind) {
    json_decref(msg);
    return;
  }
  fan_state *st = into ? into->state : NULL;
  if (st && st->n == st->cap) {
    size_t cap = st->cap ? 2 * st->cap : 4;
    gw_exchange **k = realloc(st->kids, cap * sizeof *k);
    if (!k) {
      json_decref(msg);
      return;
    }
    st->kids = k;
    st->cap = cap;
  }
  gw_exchange *c = gw__mcp_child(parent, connector, &gw__agg_note_flow, calloc(1, sizeof(gw_agg_up)));
  if (c && !c->state) {
    gw__x_unref(c);
    c = NULL;
  }
  if (!c) {
    json_decref(msg);
    return;
  }
  if (st) {
    gw__x_collect_into(c, into, (int)st->n);
    st->kids[st->n++] = c;
    gw__x_ref(c);
    st->pending++;
  }
  gw_strlcpy(c->sess.upstream, upstream, sizeof c->sess.upstream);
  c->sess_bind = json_incref(bind);
  if (gw__agg_step(c, "POST", msg, st ? forward_done : NULL) != 0) {
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "notification to connector %s not sent", connector);
    if (c->into) gw__x_reply_raw(c, 202, NULL, NULL, 0); /* not sent: nothing to wait for */
  }
  gw__x_unref(c);
}

void gw__agg_end_upstream(gw_exchange *x, const char *connector, const char *upstream, json_t *bind) {
  if (!bind || !upstream || !upstream[0]) return;
  gw_exchange *c = gw__mcp_child(x, connector, &gw__agg_note_flow, calloc(1, sizeof(gw_agg_up)));
  if (c && !c->state) {
    gw__x_unref(c);
    c = NULL;
  }
  if (!c) return;
  gw_strlcpy(c->sess.upstream, upstream, sizeof c->sess.upstream);
  c->sess_bind = json_incref(bind);
  gw__agg_step(c, "DELETE", NULL, NULL);
  gw__x_unref(c);
}

/* DELETE each upstream session of {connector: upstream id}, while binds
 * names for it the server and credential it still belongs to. */
static void end_upstreams(gw_exchange *x, json_t *ups, json_t *binds) {
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) gw__agg_end_upstream(x, conn, json_string_value(up), json_object_get(binds, conn));
}

bool gw__agg_cancel_local(gw_loop *lp, const char *sid, json_t *msg, gw_exchange *into) {
  json_t *rid = json_object_get(json_object_get(msg, "params"), "requestId");
  gw_proxy *p = gw__mcp_of(lp);
  if (gw__held_cancel_local(lp, sid, rid)) return true; /* a call held for approval (held.c) */
  /* no callback runs in this walk: it returns after creating (appending)
   * one exchange, a child of the call (its identity: revocable with it) */
  for (gw_exchange *o = p ? p->reg.list : NULL; rid && o; o = o->next) {
    if (!gw__agg_is_call(o) || !o->connector[0] || strcmp(o->sid, sid) || !o->out) continue;
    size_t i;
    json_t *id;
    json_array_foreach(o->ids, i, id) if (json_equal(id, rid)) {
      /* once per call: a repeated cancel says nothing more, and each would
       * be an upstream connection of its own (fire and forget when it came
       * from another loop) */
      if (!o->cancel_sent) forward_note(into, o, o->connector, o->sess.upstream, o->sess_bind, json_incref(msg));
      o->cancel_sent = true;
      return true;
    }
  }
  return false;
}

/* What gw__agg_message sends to every upstream session (keep the two in
 * step: a batch counts its units by this before anything runs). */
bool gw__agg_fans_out(const char *method, bool has_id) {
  if (!method) return false;
  if (!strcmp(method, "logging/setLevel")) return true;
  static const char *const own[] = {"initialize", "tools/list", "prompts/list", "resources/list",
                                    "resources/templates/list", "prompts/get", "resources/read",
                                    "resources/subscribe", "resources/unsubscribe", "completion/complete",
                                    "tools/call", "ping", "notifications/initialized", "notifications/cancelled"};
  if (has_id) return false;
  for (size_t i = 0; i < sizeof own / sizeof *own; i++)
    if (!strcmp(method, own[i])) return false;
  return true;
}

/* The upstream sessions of client session sid, {connector: id}, and the
 * binding each belongs to in *binds (upstream_binds), read in one snapshot
 * (a move or a rekey drops the ids in the write that changes it); NULL when
 * the store cannot be read. */
static json_t *session_upstreams(gw_loop *lp, const char *tenant, const char *user, const char *sid,
                                 json_t **binds) {
  st_txn *txn;
  *binds = NULL;
  if (st_read_begin(lp->srv->store, &txn) != 0) return NULL;
  json_t *ups = gw_session_upstreams(txn, sid);
  *binds = upstream_binds(txn, tenant, user, ups);
  st_txn_end(txn);
  return ups;
}

size_t gw__agg_fanout_width(gw_loop *lp, const char *tenant, const char *user, const char *sid) {
  json_t *binds, *ups = session_upstreams(lp, tenant, user, sid, &binds);
  size_t n = json_object_size(binds);
  json_decref(ups);
  json_decref(binds);
  return n;
}

/* notifications/cancelled goes to the upstream that runs the request;
 * anything else (roots/list_changed, …, and logging/setLevel) to every
 * upstream session of the client session. x is answered (answer, stolen:
 * its answer; NULL: 202) once they took it (fan_begin). */
void gw__agg_notify_upstreams(gw_exchange *x, const char *method, json_t *msg, json_t *answer) {
  if (!fan_begin(x, answer)) return;
  if (!strcmp(method, "notifications/initialized")) {
    /* the gateway's own: nothing to forward */
  } else if (!strcmp(method, "notifications/cancelled")) {
    /* the call may be in flight on another loop (its client used another
     * connection): that loop looks for it in its own exchanges */
    if (!gw__agg_cancel_local(x->lp, x->sid, msg, x) && x->lp->srv->nloops >= 2) {
      gw_proxy *p = gw__mcp_of(x->lp);
      char *note = json_dumps(msg, JSON_COMPACT);
      gw_revocation m;
      memset(&m, 0, sizeof m);
      if (!note || strlen(note) >= sizeof m.note || !gw__fanout_allow_unfenced(p)) {
        GW_LOG(GW_LOG_DEBUG, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
               "notifications/cancelled not passed to the other loops (%s)",
               !note ? "out of memory" : strlen(note) >= sizeof m.note ? "over 1 KiB" : "over the per-second bound");
      } else {
        gw_strlcpy(m.tenant, x->tenant, sizeof m.tenant);
        gw_strlcpy(m.sid, x->sid, sizeof m.sid);
        gw_strlcpy(m.note, note, sizeof m.note);
        m.cancel = true;
        m.unfenced = true; /* no reply waits for it */
        gw__fanout_send(x->lp->srv, &m, p);
      }
      free(note);
    }
  } else {
    json_t *binds, *ups = session_upstreams(x->lp, x->tenant, x->user, x->sid, &binds);
    size_t n = json_object_size(binds);
    /* one unit per forward, the request's own for the first (a batch's
     * element: counted by the batch) */
    if (n > 1 && x->req && !gw_limits_mcp_more(x->req, (int)n - 1)) {
      json_decref(ups);
      json_decref(binds);
      gw_req *r = x->req;
      gw__x_client_done(x); /* nothing forwarded: nothing to end */
      gw_resp_header(r, "Retry-After", "1");
      gw__mcp_refuse(r, 429, -32000,
                     "too many MCP requests (mcp_concurrent_per_user): a notification counts once for each upstream "
                     "it goes to; retry after Retry-After seconds");
      return;
    }
    const char *conn;
    json_t *up;
    json_object_foreach(ups, conn, up)
        forward_note(x, x, conn, json_string_value(up), json_object_get(binds, conn), json_incref(msg));
    json_decref(binds);
    json_decref(ups);
  }
  fan_sent(x);
}

/* ---------- initialize and sessions ---------- */

static void reply_initialize(gw_exchange *x, json_t *result) {
  gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(x->ids, 0), result));
}

static void initialize(gw_exchange *x, json_t *msg) {
  json_t *params = json_object_get(msg, "params");
  const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
  const char *ver = asked && gw__mcp_version_supported(asked) ? asked : GW_AGG_LATEST_VERSION;
  gw_session sess = {0};
  json_t *client = json_pack("{s:O?,s:O?}", "capabilities", json_object_get(params, "capabilities"), "clientInfo",
                             json_object_get(params, "clientInfo"));
  char *cs = json_dumps(client, JSON_COMPACT);
  json_decref(client);
  if (!cs || strlen(cs) >= sizeof sess.client) {
    free(cs);
    cs = strdup("{}");
  }
  gw_strlcpy(sess.client, cs ? cs : "{}", sizeof sess.client);
  free(cs);
  gw_strlcpy(sess.tenant, x->tenant, sizeof sess.tenant);
  gw_strlcpy(sess.user, x->user, sizeof sess.user);
  gw_strlcpy(sess.version, ver, sizeof sess.version);
  /* to the millisecond, as the connector endpoint's (direct.c): the
   * per-user cap evicts by it, across both endpoints (to the second, this
   * session was the newer of any made in its second) */
  sess.created_ms = gw_session_now_ms();
  json_t *caps = json_pack("{s:{s:b}}", "tools", "listChanged", 1);
  {
    /* prompts/resources when a connector the user sees offers them */
    const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
    st_txn *txn;
    json_t *all = NULL;
    if (pu && st_read_begin(x->lp->srv->store, &txn) == 0) {
      vault_connector_list(txn, x->tenant, &all);
      st_txn_end(txn);
    }
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
      const char *name = json_string_value(json_object_get(c, "name"));
      json_t *uc = json_object_get(c, "capabilities");
      if (!name || !pol_connector_visible(pu, name) || !json_is_object(uc)) continue;
      if (json_object_get(uc, "prompts")) json_object_set_new(caps, "prompts", json_pack("{s:b}", "listChanged", 1));
      json_t *r = json_object_get(uc, "resources");
      if (r) {
        json_t *have = json_object_get(caps, "resources");
        bool sub = json_is_true(json_object_get(r, "subscribe")) || json_is_true(json_object_get(have, "subscribe"));
        json_object_set_new(caps, "resources", json_pack("{s:b,s:b}", "subscribe", sub, "listChanged", 1));
      }
      if (json_object_get(uc, "completions")) json_object_set_new(caps, "completions", json_object());
      if (json_object_get(uc, "logging")) json_object_set_new(caps, "logging", json_object());
    }
    json_decref(all);
  }
  json_t *result = json_pack("{s:s,s:o,s:{s:s,s:s,s:s},s:s}", "protocolVersion", ver, "capabilities", caps, "serverInfo", "name", "mcpgate", "title", "mcpgate", "version", "0.1.0",
                        "instructions",
                        "Tools of every service your organisation connected, named <service>__<tool>. Your "
                        "organisation's policy decides which tools you see.");
  gw__mcp_session_create(x, &sess, result, reply_initialize);
}

/* ---------- DELETE ---------- */

/* The session's upstream sessions, read in the write that deletes the
 * record (delete_read): ended after it went. Read before that write, an
 * id stored in between (a call's upstream session, its write queued
 * first) was deleted with the record and never ended. */
typedef struct delete_state {
  json_t *ups;  /* {connector: upstream session id} */
  json_t *binds; /* {connector: the binding each belongs to}, read with them */
} delete_state;

static void delete_free(void *state) {
  delete_state *d = state;
  json_decref(d->ups);
  json_decref(d->binds);
  free(d);
}

static const gw_flow_ops delete_flow = {.name = "agg-delete", .free = delete_free};

static void end_session_stream(gw_exchange *o, void *arg) {
  gw_exchange *x = arg;
  if (o != x && gw__agg_is_stream(o, x->sid)) gw__x_end(o);
}

/* {ups, binds}: the session's upstream sessions and the binding each
 * belongs to, in the deleting txn (gw__mcp_delete_session's read). */
static json_t *delete_read(st_txn *txn, const char *tenant, const char *user, const char *sid) {
  json_t *ups = gw_session_upstreams(txn, sid);
  json_t *binds = upstream_binds(txn, tenant, user, ups);
  return json_pack("{s:o,s:o}", "ups", ups ? ups : json_object(), "binds", binds ? binds : json_object());
}

static void session_deleted(gw_exchange *x, json_t *got) {
  delete_state *d = x->state;
  d->ups = json_incref(json_object_get(got, "ups"));
  d->binds = json_incref(json_object_get(got, "binds"));
  /* its open GET streams end, and its upstream sessions */
  /* (every loop's ended already: the delete job's fan-out, before this) */
  gw__x_foreach(&gw__mcp_of(x->lp)->reg, end_session_stream, x);
  end_upstreams(x, d->ups, d->binds);
  gw__agg_forget_session(x->lp->srv->mcp, x->sid);
}

/* ---------- dispatch ---------- */

/* A tools/call the scan read (gw__mcp_post_lite): the checks the parsed
 * path makes for it, then agg_call.c. */
/* A POST's checks after its message was read (both readings): the
 * protocol version, then (but for initialize) the session. true: refused,
 * answered. */
static bool post_refused(gw_req *req, const gw_mcp_ctx *ctx, bool is_init) {
  if (!is_init && gw__mcp_version_refused(req)) return true;
  if (is_init || (ctx->sid && ctx->sess_ok)) return false;
  if (!ctx->sid) gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)");
  else gw__mcp_refuse(req, 404, -32001, "Session not found");
  return true;
}

static void tools_call_lite(gw_req *req, const gw_mcp_ctx *ctx, gw_rpc_lite *lite) {
  if (post_refused(req, ctx, false)) {
    json_decref(lite->id);
    return;
  }
  gw_exchange *x = gw__mcp_exchange(req, GW_X_POST, ctx, &gw__agg_local_flow, NULL);
  if (!x) {
    json_decref(lite->id);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  if (lite->id) json_array_append_new(x->ids, lite->id);
  x->sess = ctx->sess;
  gw_strlcpy(x->sid, ctx->sid, sizeof x->sid);
  gw__agg_tools_call_lite(x, req->body, req->body_len, lite);
}

static void agg_dispatch_pinned(gw_req *req) {
  gw_mcp_ctx ctx;
  if (gw__mcp_ctx_of(req, true, &ctx) != 0) return;
  const char *sid = ctx.sid;
  const char *m = req->method;
  if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
    if (gw__mcp_session_checks(req, &ctx) != 0) return;
    bool get = !strcmp(m, "GET");
    gw_exchange *x = gw__mcp_exchange(req, get ? GW_X_GET : GW_X_DELETE, &ctx, &gw__agg_local_flow, NULL);
    if (!x) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    x->sess = ctx.sess;
    gw_strlcpy(x->sid, sid, sizeof x->sid);
    if (get) {
      gw__agg_stream(x, gw_req_header(req, "last-event-id"));
      return;
    }
    /* the upstream sessions it opened: read as the record goes, ended
     * after it went */
    delete_state *d = calloc(1, sizeof *d);
    if (d) gw__x_set_flow(x, &delete_flow, d);
    gw__mcp_delete_session(x, d ? delete_read : NULL, d ? session_deleted : NULL);
    return;
  }

  /* POST: a plain tools/call read by the scan and forwarded with the name
   * spliced; anything else parsed */
  gw_rpc_lite lite;
  if (gw__mcp_post_lite(req, &lite)) {
    if (!strcmp(lite.method, "tools/call")) {
      tools_call_lite(req, &ctx, &lite);
      return;
    }
    json_decref(lite.id);
  }
  json_t *msg = gw__mcp_parse_post(req);
  if (!msg) return;
  if (json_is_array(msg)) {
    /* a batch answers to the same header and session checks as one message */
    if (!post_refused(req, &ctx, false)) gw__agg_batch(req, &ctx, msg);
    json_decref(msg);
    return;
  }
  json_t *ids = json_array();
  const char *method = NULL;
  const char *why = gw__check_message(msg, ids, &method);
  if (why) {
    json_decref(ids);
    json_decref(msg);
    gw__mcp_refuse(req, 400, -32600, why);
    return;
  }
  bool is_init = method && !strcmp(method, "initialize");
  if (method && !strcmp(method, "server/discover")) {
    gw__mcp_refuse_discover(req, json_array_get(ids, 0));
    json_decref(ids);
    json_decref(msg);
    return;
  }
  if (post_refused(req, &ctx, is_init)) {
    json_decref(ids);
    json_decref(msg);
    return;
  }
  gw_exchange *x = gw__mcp_exchange(req, GW_X_POST, &ctx, &gw__agg_local_flow, NULL);
  if (!x) {
    json_decref(ids);
    json_decref(msg);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  json_decref(x->ids);
  x->ids = ids;
  if (!is_init) {
    x->sess = ctx.sess;
    gw_strlcpy(x->sid, sid, sizeof x->sid);
  }
  if (is_init) initialize(x, msg);
  else gw__agg_message(x, msg, method);
  json_decref(msg);
}

/* One read transaction for everything the dispatch reads (mcp_loop.h). */
void gw_agg_dispatch(gw_req *req) { gw__dispatch_pinned(req, agg_dispatch_pinned); }

void gw__agg_message(gw_exchange *x, json_t *msg, const char *method) {
  json_t *ids = x->ids;
  if (!method) {
    /* a response to a server→client request we relayed */
    if (!gw__agg_route_answer(x, msg)) gw__x_reply_raw(x, 202, NULL, NULL, 0);
  } else if (!strcmp(method, "tools/list")) {
    gw__agg_list(x, msg, 0);
  } else if (!strcmp(method, "prompts/list")) {
    gw__agg_list(x, msg, 1);
  } else if (!strcmp(method, "resources/list")) {
    gw__agg_list(x, msg, 2);
  } else if (!strcmp(method, "resources/templates/list")) {
    gw__agg_list(x, msg, 3);
  } else if (!strcmp(method, "prompts/get") || !strcmp(method, "resources/read") ||
             !strcmp(method, "resources/subscribe") || !strcmp(method, "resources/unsubscribe") ||
             !strcmp(method, "completion/complete")) {
    gw__agg_route(x, msg, method);
  } else if (!strcmp(method, "logging/setLevel")) {
    /* every upstream session gets the level; the client gets {} */
    gw__agg_notify_upstreams(x, method, msg, gw__agg_rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!strcmp(method, "tools/call")) {
    gw__agg_tools_call(x, msg);
  } else if (!strcmp(method, "ping")) {
    gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!strncmp(method, "tasks/", 6)) {
    /* not relayed until policy governs tasks — sent as a notification
     * (no id) neither: it would reach every upstream session of the
     * session (as the connector endpoint, answered -32601) */
    gw__x_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "Method not found: %.100s (tasks are not supported through the gateway yet)",
                    method);
  } else if (!json_array_size(ids)) {
    /* notifications: routed to the upstreams concerned, answered 202 */
    gw__agg_notify_upstreams(x, method, msg, NULL);
  } else {
    gw__x_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "Method not found: %.100s", method);
  }
}

