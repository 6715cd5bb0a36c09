/* gateway/mcp/agg.h — what the aggregated endpoint's flows share (private
 * to gateway/mcp/agg*.c): buffered upstream steps, lazily opened upstream
 * sessions, per-session maps, and each flow's entry point.
 *
 * Every aggregated flow that calls upstream keeps a gw_agg_up as the FIRST
 * member of its typed state: gw__agg_up(x) reaches it, and the flow's ops
 * use gw__agg_up_headers/_data/_done, which run either a buffered step
 * (gw__agg_step: the reply lands in x->body, then up->cont) or, once a flow
 * relays (up->relaying), the relay of relay.h with the stale-session retry. */
#ifndef MCPGATE_GATEWAY_MCP_AGG_H
#define MCPGATE_GATEWAY_MCP_AGG_H
#include <jansson.h>
#include <stdbool.h>

#include "gateway/mcp/mcp_loop.h"

#define GW_AGG_LATEST_VERSION "2025-11-25"
#define GW_AGG_ID_PREFIX "mcpgate:"

typedef void (*gw_agg_step_fn)(gw_exchange *x, int err);

/* grants.c: an oauth connector's gate (rule 1 there). 0: go on now; 1:
 * `after` was or will be called (GW_MCP_ECONNECT without a grant,
 * GW_MCP_EREFRESH when a refresh failed), or the gate runs again once the
 * grant is refreshed. */
int gw__agg_vault_gate(gw_exchange *x, gw_agg_step_fn after);
/* True when connector is an oauth connector x's user has not connected. */
bool gw__agg_connect_pending(gw_exchange *x, const char *connector);
/* The {connector}__connect tool listed instead of the connector's tools. */
json_t *gw__agg_connect_tool(gw_exchange *x, const char *connector);
/* Answers x (its connector: x->connector) with the connect link: as the
 * connect tool's result, or as an error (URL-mode elicitation -32042 when
 * the client declared it, else GW_RPC_CONNECT with data.url). */
void gw__agg_answer_connect(gw_exchange *x, bool as_result);
/* <public_url>/t/{tenant}/connect/{connector}: where an employee connects. */
void gw__connect_link(const gw_loop *lp, const char *tenant, const char *connector, char *out, size_t cap);

typedef struct gw_agg_up {
  gw_agg_step_fn cont;  /* next step after a buffered upstream call */
  gw_agg_step_fn after; /* what runs once the upstream session is open */
  bool fresh_session;   /* open a new upstream session (the stored one is stale) */
  bool retried;         /* already retried once with a fresh session */
  bool stale;           /* the upstream said 404/400 to our session id */
  bool relaying;        /* the current transfer is relayed to the client */
  uint64_t stale_hash;  /* with fresh_session: a hash of the stale id it replaces (agg_up.c's job_usess) */
  bool opening;         /* the next step opens the upstream session: it keeps what it goes with (x->opening) */
} gw_agg_up;

gw_agg_up *gw__agg_up(gw_exchange *x);
/* DELETEs x's connector's upstream session `upstream` (a child exchange,
 * fire and forget), while bind is the binding it was opened under; NULL
 * or "" upstream: nothing. */
void gw__agg_end_upstream(gw_exchange *x, const char *connector, const char *upstream, json_t *bind);
void gw__agg_up_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n);
int gw__agg_up_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n);
void gw__agg_up_done(gw_exchange *x, gw_out_req *r, int err);
/* The flow's rewrite (server→client request ids and URL elicitation ids,
 * resource URIs, tool lists filtered by policy, notifications that name
 * another connector's progress tokens, questions, elicitations or resources
 * dropped: emptied, exchange.h) and event ids, for relayed aggregated
 * answers. */
bool gw__agg_rewrite(gw_exchange *x, json_t *msg);
/* A call's JSON message (a whole reply, or one SSE event's data) that
 * gw__agg_rewrite would leave as it is (a notification, or a response to
 * the call's id; nothing it renames, filters or notes), and that jansson
 * would accept: relayed without a parse. */
bool gw__agg_vouch(gw_exchange *x, const char *body, size_t n);
char *gw__agg_event_id(gw_exchange *x, const char *upstream_id);

/* Sends body (stolen; NULL: none) to x->connector within its upstream
 * session and calls cont(x, err) with the reply buffered in x->body (cont
 * NULL: fire and forget). 0, or an upcall error (revoked/hidden already
 * answered). */
int gw__agg_step(gw_exchange *x, const char *method, json_t *body, gw_agg_step_fn cont);
/* Makes sure x->sess.upstream is the upstream session of x->connector
 * (opening one if needed), then after(x, err). */
void gw__agg_ensure_upstream(gw_exchange *x, gw_agg_step_fn after);

/* agg_up.c: fire-and-forget calls (notifications, upstream DELETEs): a
 * calloc'd gw_agg_up is their state. */
extern const gw_flow_ops gw__agg_note_flow;
/* probe.c: keeps what the gateway acts on of what an upstream announced at
 * initialize (which of tools, prompts, resources, completions and logging,
 * and their listChanged/subscribe flags), unless the connector's record
 * already says so. */
void gw__agg_learn_caps(gw_exchange *x, json_t *caps);

/* Flows. A flow-less aggregated exchange (answered by the gateway) has
 * gw__agg_local_flow; the handlers below switch it to their own. */
extern const gw_flow_ops gw__agg_local_flow;
void gw__agg_list(gw_exchange *x, json_t *msg, int kind); /* agg_list.c: 0 tools, 1 prompts, 2 resources, 3 templates */
void gw__agg_tools_call(gw_exchange *x, json_t *msg);     /* agg_call.c */
/* The same for a request the scan read: body forwarded with params.name's
 * value (lite->name_at) replaced by the tool's own name. */
void gw__agg_tools_call_lite(gw_exchange *x, const char *body, size_t len, const gw_rpc_lite *lite);
void gw__agg_route(gw_exchange *x, json_t *msg, const char *method);
bool gw__agg_route_answer(gw_exchange *x, json_t *msg);    /* false: not an answer we relayed */
void gw__agg_stream(gw_exchange *x, const char *last_event_id); /* agg_mux.c: the client's GET stream */
bool gw__agg_is_stream(const gw_exchange *x, const char *sid);  /* an open client GET stream of sid */
bool gw__agg_is_call(const gw_exchange *x);                     /* a relayed call in flight */
/* agg_mux.c, on each loop (the fan-out's session_opened, agg_up.c): client
 * session sid opened upstream session `upstream` of connector; its open
 * client streams on this loop attach to it, when the upstream can push. */
void gw__agg_session_opened(gw_loop *lp, const char *tenant, const char *sid, const char *connector,
                            const char *upstream);
/* agg_mux.c: a feed attached for sid's new upstream session with
 * connector (on any loop) still awaits its GET's answer. Any loop. */
bool gw__agg_feeds_awaited(gw_server *srv, const char *sid, const char *connector);
/* agg.c: notifications/cancelled (msg) of client session sid to the
 * upstream running the call it names, when that call is in flight on this
 * loop (once per call: a repeated cancel is not sent again); false when it
 * is not. into: the client's message that waits for
 * that forward (agg.c's fan), or NULL (another loop's news: fire and
 * forget). */
bool gw__agg_cancel_local(gw_loop *lp, const char *sid, json_t *msg, gw_exchange *into);
/* agg_batch.c: a batch POST whose header and session agg.c checked */
void gw__agg_batch(gw_req *req, const gw_mcp_ctx *ctx, json_t *msg);
/* agg.c: one message of an established session (alone or in a batch). */
void gw__agg_message(gw_exchange *x, json_t *msg, const char *method);
/* agg.c: notification (or logging/setLevel) msg (borrowed) to the
 * upstreams concerned; x is answered (answer, stolen; NULL: 202) once
 * they took it, its forwards holding the request's units meanwhile. */
void gw__agg_notify_upstreams(gw_exchange *x, const char *method, json_t *msg, json_t *answer);
/* agg.c: a client message (method, with an id or not) that goes to every
 * upstream session of its session (gw__agg_notify_upstreams), and how
 * many those are for session sid now (one unit each: a batch counts them
 * before it runs). */
bool gw__agg_fans_out(const char *method, bool has_id);
size_t gw__agg_fanout_width(gw_loop *lp, const char *tenant, const char *user, const char *sid);
/* agg.c: the connectors the user may see, in name order; with cap, only
 * those whose learned capabilities include it (or are not learned yet). */
json_t *gw__agg_visible(gw_exchange *x, const pol_user *pu, const char *cap);
/* agg.c: routing names and per-session maps. */
json_t *gw__agg_rpc_result(const json_t *id, json_t *result);
char *gw__agg_b64url(const char *s);
json_t *gw__agg_unb64url(const char *s);
void gw__agg_uri_note(gw_exchange *x, const char *uri, bool is_template);
/* The connector a read of uri goes to in x's client session: 1 and its
 * name in out; 0 when none noted it; -1 when several did (exactly, or by a
 * template covering it), their names joined in out: the read is refused. */
int gw__agg_uri_route(gw_exchange *x, const char *uri, char *out, size_t outsz);
bool gw__agg_asked_take(gw_exchange *x, const char *connector, const char *enc);
/* agg_maps.c: progress tokens. x (its connector set) forwards a request
 * of the client carrying progress token `token` (borrowed): progress
 * naming it is relayed from that connector only (the latest it went to).
 * forget: x's request is over (its reply relayed), the token goes unless
 * another connector was given it since. */
void gw__agg_progress_note(gw_exchange *x, const json_t *token);
void gw__agg_progress_forget(gw_exchange *x, const json_t *token);
/* agg_call.c: the progress token of x's forwarded request when x is a
 * routed call (borrowed, valid while x's flow is), else NULL. */
const json_t *gw__agg_call_token(const gw_exchange *x);
/* agg_maps.c: a call whose stream ends resumable before its reply (x, a
 * call): each request of it still unanswered is awaited from its connector
 * on the session's GET stream, where only that connector's feed may answer
 * it, once. */
void gw__agg_awaited_note(gw_exchange *x);

#endif
