/* gateway/mcp/agg_call.c — routed calls of the aggregated endpoint (one
 * flow, its own typed state): tools/call by its connector__tool name,
 * prompts/get and completions by prefix, resources by the session's URI
 * map, and the client's answers to server→client requests relayed earlier.
 *
 * Rules this file keeps: the name is split at the first "__" and decided
 * by policy (decide.c) before anything is sent, and decided again right
 * before the call's bytes leave (the upstream session may have taken
 * asynchronous steps to open meanwhile); the message is forwarded
 * as checked with only the prefix stripped (or the id restored); the answer
 * (JSON or SSE, progress included) is relayed with server→client request
 * ids rewritten to "mcpgate:{connector}:{original id as JSON}"; an answer
 * goes only to an upstream session that asked, and only while policy shows
 * its connector; a request's progress token is noted for the connector it
 * goes to while it runs (only that connector's progress naming it is
 * relayed, agg_maps.c); an upstream that forgot our session (404/400) gets
 * the call once more on a fresh session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/upcall.h"
#include "vault/vault.h"

/* The call flow's state. */
typedef struct call_state {
  gw_agg_up up; /* first: the upstream steps (agg.h) */
  char *fwd;    /* the rewritten message forwarded upstream */
  size_t fwd_len;
  json_t *token; /* its params._meta.progressToken, or NULL */
  bool noted;    /* the token is noted for x->connector (gw__agg_progress_note) */
  char *tool;    /* a tools/call: the tool's name at x->connector (NULL: a route or an answer) */
  bool approved; /* ... passing under an approval (held.c): "approve" still lets it go */
} call_state;

static call_state *cs(gw_exchange *x) { return x->state; }

static void call_free(void *state) {
  call_state *st = state;
  free(st->fwd);
  free(st->tool);
  json_decref(st->token);
  free(st);
}

/* The client's request is over: its progress token goes — unless its
 * reply is still to come on the GET stream (its stream ended resumable
 * before it: the upstream's progress may come there too). A batch
 * element's token is never noted: its reply is collected, its progress not
 * relayed. */
static void call_end(gw_exchange *x) {
  call_state *st = cs(x);
  if (st->noted && !(x->resumable && json_array_size(x->replied) < json_array_size(x->ids)))
    gw__agg_progress_forget(x, st->token);
  st->noted = false;
}

static const gw_flow_ops call_flow = {.name = "agg-call",
                                      .up_headers = gw__agg_up_headers,
                                      .up_data = gw__agg_up_data,
                                      .up_done = gw__agg_up_done,
                                      .rewrite = gw__agg_rewrite,
                                      .vouch = gw__agg_vouch,
                                      .event_id = gw__agg_event_id,
                                      .client_end = call_end,
                                      .free = call_free};

bool gw__agg_is_call(const gw_exchange *x) { return x->kind == GW_X_POST && x->flow && x->flow->up_done == gw__agg_up_done; }

const json_t *gw__agg_call_token(const gw_exchange *x) {
  return x->flow == &call_flow ? ((const call_state *)x->state)->token : NULL;
}

/* x becomes a call with message fwd (stolen; encoded as forwarded): of
 * tool (copied; NULL for a route or an answer), approved or not. */
static int become_call(gw_exchange *x, json_t *fwd, const char *tool, bool approved) {
  call_state *st = calloc(1, sizeof *st);
  if (st) st->fwd = json_dumps(fwd, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (st && tool) st->tool = strdup(tool);
  if (st) st->approved = approved;
  json_t *meta = json_object_get(json_object_get(fwd, "params"), "_meta");
  if (st) st->token = json_incref(json_object_get(meta, "progressToken"));
  json_decref(fwd);
  if (!st || !st->fwd || (tool && !st->tool)) {
    if (st) {
      json_decref(st->token);
      free(st->fwd);
      free(st->tool);
    }
    free(st);
    return -1;
  }
  st->fwd_len = strlen(st->fwd);
  gw__x_set_flow(x, &call_flow, st);
  return 0;
}

static void call_session_ready(gw_exchange *x, int err);

/* A tools/call is decided when it arrives, and decided again right before
 * its bytes leave: opening the upstream session, renewing the user's
 * grant or retrying on a fresh session took asynchronous steps, and a
 * policy PUT or a membership change committed meanwhile may have taken the
 * tool back while the connector stays shown (the upcall re-checks the
 * identity and the connector, not the tool). A call that passes under an
 * approval goes on while the tool is allowed or still asks approval, as
 * agg_forward decided. true: it may go; false: x was answered. */
static bool call_still_allowed(gw_exchange *x) {
  call_state *st = cs(x);
  if (!st->tool) return true;
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now; refusing (fail closed)");
    return false;
  }
  pol_decision d = gw__decide_call(pu, x->connector, st->tool);
  if (d == POL_ALLOW || (d == POL_APPROVE && st->approved)) return true;
  gw__audit_call_redecide(x, pol_decision_name(d));
  char full[40 + 2 + 260];
  snprintf(full, sizeof full, "%s__%s", x->connector, st->tool);
  if (d == POL_HIDDEN)
    gw__x_rpc_error(x, 200, -32602, "Unknown tool: %.200s", full);
  else if (d == POL_APPROVE)
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" requires approval under your organisation's policy, which changed while the call "
                    "was being started: call it again to ask for approval (the call was not made)",
                    full);
  else
    gw__decide_refuse(x, pu, POL_BLOCK, full, NULL);
  return false;
}

/* gw__agg_up_done (agg.c) calls this when the upstream answered 404 to our
 * session: open a fresh one and send the call again, once. */
static void call_retry(gw_exchange *x, int err) {
  (void)err;
  cs(x)->up.fresh_session = true;
  gw_buf_reset(&x->body);
  gw__agg_ensure_upstream(x, call_session_ready);
}

static void call_session_ready(gw_exchange *x, int err) {
  if (err == GW_MCP_ECONNECT) {
    gw__agg_answer_connect(x, false);
    return;
  }
  if (err) {
    if (x->m) GW_STAT_ADD(x->m->errors, 1);
    if (err == GW_MCP_EREFRESH)
      gw__x_rpc_error(x, 200, GW_RPC_UPSTREAM_DOWN,
                       "connector \"%s\": your access could not be renewed right now (its authorization server failed); "
                       "try again shortly",
                       x->connector);
    else if (err == GW_MCP_EAUTH && x->grant_used)
      gw__x_reconnect_error(x, x->status);
    else if (err == GW_MCP_EAUTH)
      gw__x_rpc_error(x, 200, GW_RPC_UPSTREAM_AUTH,
                       "connector \"%s\" refused the gateway's credential; ask your admin to check the connector's credential",
                       x->connector);
    else
      gw__x_rpc_error(x, 200, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" is unavailable", x->connector);
    return;
  }
  if (!call_still_allowed(x)) return;
  call_state *st = cs(x);
  st->up.cont = st->up.retried ? NULL : call_retry;
  st->up.relaying = true;
  gw_buf_reset(&x->body);
  int rc = gw__relay_start(x, "POST", st->fwd, st->fwd_len, "application/json, text/event-stream");
  if (rc != 0) gw__x_start_failed(x, rc);
}

/* Sends the call state's message to connector conn within its upstream
 * session, relaying the answer. */
static void send_to(gw_exchange *x, const char *conn) {
  gw_strlcpy(x->connector, conn, sizeof x->connector);
  call_state *st = cs(x);
  if (st->token && x->req) { /* progress naming it comes from conn only */
    gw__agg_progress_note(x, st->token);
    st->noted = true;
  }
  gw__mcp_count(x, conn);
  if (x->m) GW_STAT_ADD(x->m->requests, 1);
  gw__agg_ensure_upstream(x, call_session_ready);
}

/* The same with the rewritten message fwd (stolen), a call of tool (NULL:
 * none), approved or not. */
static void forward_to(gw_exchange *x, json_t *fwd, const char *conn, const char *tool, bool approved) {
  if (become_call(x, fwd, tool, approved) != 0) {
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  send_to(x, conn);
}

static bool split_name(const char *full, char conn[40], const char **tool) {
  const char *sep = strstr(full, "__");
  if (!sep || sep == full || (size_t)(sep - full) >= 40 || !sep[2]) return false;
  memcpy(conn, full, (size_t)(sep - full));
  conn[sep - full] = 0;
  *tool = sep + 2;
  return vault_connector_name_valid(conn);
}

/* A held call goes upstream after its approval (held.c): the policy
 * decides again (it may block the tool by now), then the client's message
 * goes on as an allowed call would, its name's prefix stripped. */
static void agg_forward(gw_exchange *x) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  json_t *msg = pu ? gw__mcp_body_json(x->req, 0, NULL) : NULL;
  const char *full = json_string_value(json_object_get(json_object_get(msg, "params"), "name"));
  char conn[40];
  const char *tool;
  pol_decision d = full && split_name(full, conn, &tool) ? gw__decide_call(pu, conn, tool) : POL_BLOCK;
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now; refusing (fail closed)");
  } else if (d != POL_ALLOW && d != POL_APPROVE) {
    gw__x_rpc_error(x, 200, GW_RPC_BLOCKED,
                    "the call was approved, but your organisation's policy no longer lets you call it; it was not made");
  } else {
    json_t *fwd = json_deep_copy(msg);
    json_object_set_new(json_object_get(fwd, "params"), "name", json_string(tool));
    forward_to(x, fwd, conn, tool, true);
  }
  json_decref(msg);
}

/* The decision for a tools/call named full ("connector__tool"): true
 * when it may go to conn as tool; false when x was answered. */
static bool call_allowed(gw_exchange *x, const char *full, char conn[40], const char **tool, const json_t *args,
                         const char *args_raw, size_t args_len) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return false;
  }
  if (!full || !split_name(full, conn, tool)) {
    gw__audit_call_begin(x, "", full ? full : "(no name)", "hidden", pol_user_version(pu), args, args_raw, args_len);
    gw__x_rpc_error(x, 200, -32602, "Unknown tool: %.200s", full ? full : "(no name)");
    return false;
  }
  /* the gateway's own {connector}__connect tool, listed while the user has
   * no grant: it only gives the link (no policy on a tool of the gateway's) */
  if (!strcmp(*tool, "connect") && pol_connector_visible(pu, conn) && gw__agg_connect_pending(x, conn)) {
    gw_strlcpy(x->connector, conn, sizeof x->connector);
    gw__agg_answer_connect(x, true);
    return false;
  }
  pol_decision d = gw__decide_call(pu, conn, *tool);
  json_t *crec = NULL;
  vault_conn_facts cf;
  st_txn *txn;
  if (d != POL_HIDDEN && gw__read_begin(x->lp, &txn) == 0) {
    if (gw__connector_get(x->lp, txn, x->tenant, conn, &crec, &cf) != 0) d = POL_HIDDEN; /* no such connector */
    gw__read_end(x->lp, txn);
  }
  /* read in this snapshot: the vault gate need not read it again for a
   * connector without per-user credentials (should it become one before
   * the transfer, the upcall's own read finds no grant and fails closed) */
  x->shared_cred = crec && !cf.per_user;
  json_decref(crec);
  gw__audit_call_begin(x, conn, *tool, pol_decision_name(d), pol_user_version(pu), args, args_raw, args_len);
  if (d == POL_HIDDEN) {
    gw__x_rpc_error(x, 200, -32602, "Unknown tool: %.200s", full);
    return false;
  }
  if (d == POL_APPROVE && x->req && !x->into) {
    /* held until a reviewer decides (held.c) — if it can be recorded */
    if (x->audit && gw__audit_refuse(x)) return false;
    gw_strlcpy(x->connector, conn, sizeof x->connector);
    if (gw__held_start(x, pu, conn, *tool, x->req->body, x->req->body_len, agg_forward)) return false;
  }
  if (d == POL_BLOCK || d == POL_APPROVE) {
    gw__decide_refuse(x, pu, d, full, NULL);
    return false;
  }
  if (x->audit && gw__audit_refuse(x)) return false; /* cannot be recorded: fail closed (audit_on_failure) */
  return true;
}

void gw__agg_tools_call(gw_exchange *x, json_t *msg) {
  const char *full = json_string_value(json_object_get(json_object_get(msg, "params"), "name"));
  const char *tool;
  char conn[40];
  if (!call_allowed(x, full, conn, &tool, json_object_get(json_object_get(msg, "params"), "arguments"), NULL, 0))
    return;
  /* forward with the prefix stripped: the rest of the message as checked */
  json_t *fwd = json_deep_copy(msg);
  json_object_set_new(json_object_get(fwd, "params"), "name", json_string(tool));
  forward_to(x, fwd, conn, tool, false);
}

void gw__agg_tools_call_lite(gw_exchange *x, const char *body, size_t len, const gw_rpc_lite *lite) {
  const char *tool;
  char conn[40];
  if (!call_allowed(x, lite->name, conn, &tool, NULL, lite->args_at.p, lite->args_at.n)) return;
  /* the bytes received with the name's value spliced: the tool's name is
   * the tail of a value the scan found free of escapes, so it needs none */
  size_t head = (size_t)(lite->name_at.p - body), tl = strlen(tool);
  size_t tail = len - head - lite->name_at.n;
  call_state *st = calloc(1, sizeof *st);
  char *fwd = st ? malloc(head + tl + 2 + tail + 1) : NULL;
  if (fwd && !(st->tool = strdup(tool))) {
    free(fwd);
    fwd = NULL;
  }
  if (!fwd) {
    free(st);
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  memcpy(fwd, body, head);
  fwd[head] = '"';
  memcpy(fwd + head + 1, tool, tl);
  fwd[head + 1 + tl] = '"';
  memcpy(fwd + head + tl + 2, body + head + lite->name_at.n, tail);
  fwd[head + tl + 2 + tail] = '\0';
  st->fwd = fwd;
  st->fwd_len = head + tl + 2 + tail;
  /* params._meta.progressToken, as the scan found _meta (an object whose
   * keys have no escape: the scan refuses those) */
  static const char *const tp[] = {"progressToken"};
  gw_json_span tv;
  const gw_json_span *ms = &lite->meta_at;
  int picked = ms->p && ms->p[0] == '{' ? gw_json_pick(ms->p, ms->n, tp, 1, &tv) : 0;
  if (picked == 1 && tv.p) {
    st->token = gw_json_loadb(tv.p, tv.n, JSON_DECODE_ANY, NULL);
  } else if (picked < 0) { /* undecided (many keys): parsed */
    json_t *meta = gw_json_loadb(ms->p, ms->n, 0, NULL);
    st->token = json_incref(json_object_get(meta, "progressToken"));
    json_decref(meta);
  }
  gw__x_set_flow(x, &call_flow, st);
  send_to(x, conn);
}

/* prompts/get, resources/read|subscribe|unsubscribe, completion/complete:
 * routed by the prompt's prefix or the resource's URI. */
void gw__agg_route(gw_exchange *x, json_t *msg, const char *method) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return;
  }
  json_t *fwd = json_deep_copy(msg);
  json_t *params = json_object_get(fwd, "params");
  json_t *ref = json_object_get(params, "ref");
  const char *reftype = json_string_value(json_object_get(ref, "type"));
  const char *name = NULL, *uri = NULL;
  json_t *name_holder = NULL;
  if (!strcmp(method, "prompts/get")) {
    name_holder = params;
  } else if (!strcmp(method, "completion/complete") && reftype && !strcmp(reftype, "ref/prompt")) {
    name_holder = ref;
  } else if (!strcmp(method, "completion/complete")) {
    uri = json_string_value(json_object_get(ref, "uri"));
  } else {
    uri = json_string_value(json_object_get(params, "uri"));
  }
  char conn[40] = "";
  char *name_buf = NULL;
  if (name_holder) {
    /* copied: the name in fwd is replaced below */
    const char *nv = json_string_value(json_object_get(name_holder, "name"));
    name = nv ? (name_buf = strdup(nv)) : NULL;
    const char *rest;
    if (!name || !split_name(name, conn, &rest)) {
      gw__x_rpc_error(x, 200, -32602, "Unknown prompt: %.200s", name ? name : "(no name)");
      json_decref(fwd);
      free(name_buf);
      return;
    }
    json_object_set_new(name_holder, "name", json_string(rest));
  } else {
    char offers[200];
    int routed = uri ? gw__agg_uri_route(x, uri, offers, sizeof offers) : 0;
    if (routed < 0) {
      /* several connectors offer it: none of them is trusted with it */
      gw__x_rpc_error(x, 200, -32602,
                      "Resource %.200s is offered by several connectors (%s): read it on one connector's own "
                      "endpoint (/t/%s/mcp/{connector})",
                      uri, offers, x->tenant);
      json_decref(fwd);
      free(name_buf);
      return;
    }
    if (routed > 0) gw_strlcpy(conn, offers, sizeof conn);
    else {
      /* not seen in a list yet: the one connector offering resources, if one */
      json_t *vis = gw__agg_visible(x, pu, "resources");
      const char *c = json_array_size(vis) == 1 ? json_string_value(json_array_get(vis, 0)) : NULL;
      if (c) gw_strlcpy(conn, c, sizeof conn);
      json_decref(vis);
    }
    if (!conn[0]) {
      gw__x_rpc_error(x, 200, -32602, "Unknown resource: %.200s (list resources first)", uri ? uri : "(no uri)");
      json_decref(fwd); /* after: uri points into it */
      free(name_buf);
      return;
    }
  }
  json_t *crec = NULL;
  st_txn *txn;
  bool ok = pol_connector_visible(pu, conn);
  if (ok && gw__read_begin(x->lp, &txn) == 0) {
    ok = gw__connector_get(x->lp, txn, x->tenant, conn, &crec, NULL) == 0;
    gw__read_end(x->lp, txn);
  }
  json_decref(crec);
  if (!ok) {
    gw__x_rpc_error(x, 200, -32602, "Unknown %s: %.200s", name ? "prompt" : "resource",
                     name ? name : uri ? uri : "(none)");
    json_decref(fwd);
    free(name_buf);
    return;
  }
  free(name_buf);
  if (uri && !strcmp(method, "resources/subscribe")) {
    /* the URI routes to conn from now on (also when it was routed to the
     * one connector offering resources): its resources/updated pass */
    gw_strlcpy(x->connector, conn, sizeof x->connector);
    gw__agg_uri_note(x, uri, false);
  }
  forward_to(x, fwd, conn, NULL, false);
}

/* "mcpgate:{connector}:{json id}" ↔ (connector, original id). */
static void answer_done(gw_exchange *x, int err) {
  (void)err;
  gw__x_reply_raw(x, 202, NULL, NULL, 0);
}

static void answer_ready(gw_exchange *x, int err) {
  if (err) {
    gw__x_reply_raw(x, 202, NULL, NULL, 0); /* the upstream is gone: nothing to deliver */
    return;
  }
  json_t *msg = gw_json_loadb(cs(x)->fwd, cs(x)->fwd_len, 0, NULL);
  if (gw__agg_step(x, "POST", msg, answer_done) != 0) gw__x_reply_raw(x, 202, NULL, NULL, 0);
}

/* A client's response to a relayed server→client request. */
bool gw__agg_route_answer(gw_exchange *x, json_t *msg) {
  const char *id = json_string_value(json_object_get(msg, "id"));
  if (!id || strncmp(id, GW_AGG_ID_PREFIX, strlen(GW_AGG_ID_PREFIX))) return false;
  const char *c = id + strlen(GW_AGG_ID_PREFIX);
  const char *colon = strchr(c, ':');
  if (!colon || colon == c || (size_t)(colon - c) >= 40) return false;
  char conn[40];
  memcpy(conn, c, (size_t)(colon - c));
  conn[colon - c] = 0;
  json_t *orig = json_loads(colon + 1, JSON_DECODE_ANY, NULL);
  if (!orig || !vault_connector_name_valid(conn)) {
    json_decref(orig);
    return false;
  }
  /* Only to an upstream session that really asked, and only while policy
   * shows its connector: a forged id must not open a session to (or post
   * to) a connector the user may not use. */
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  bool visible = pu && pol_connector_visible(pu, conn);
  if (!visible || !gw__agg_asked_take(x, conn, colon + 1)) {
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "dropped a client answer to %s request %.100s that %s", conn, colon + 1,
           visible ? "no upstream session of this client session is waiting for" : "policy does not show to the user");
    json_decref(orig);
    return false;
  }
  json_t *fwd = json_deep_copy(msg);
  json_object_set_new(fwd, "id", orig);
  if (become_call(x, fwd, NULL, false) != 0) return false;
  gw_strlcpy(x->connector, conn, sizeof x->connector);
  gw__agg_ensure_upstream(x, answer_ready);
  return true;
}

