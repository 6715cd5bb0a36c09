/* gateway/mcp/exchange.h — the lifetime of one MCP exchange, whatever flow
 * it runs (private to gateway/mcp/).
 *
 * An exchange is one unit of proxied work: a client request and what the
 * gateway does upstream for it (or an upstream call with no client: a
 * capability probe, a notification, an upstream stream feeding a client
 * stream). It has
 *   - references (gw__x_ref/gw__x_unref): freed when the last one goes,
 *     never under a running callback of either half;
 *   - a registry (gw_xreg, one per loop) that lists it while it lives, so
 *     revocation, shutdown and session sweeps can find it (gw__x_foreach);
 *   - an identity: tenant, user, the employee token id, the connector it
 *     talks to now, the gateway session;
 *   - a client half: the gw_req it answers (attach/detach, replies, abort
 *     and drain), or a slot in another exchange's collected reply (a batch
 *     element: `into`);
 *   - an upstream half: at most one transfer at a time (`out`), started by
 *     gw__x_upcall (gateway/mcp/upcall.c) whose callbacks go to the flow;
 *   - a flow: a const operations table plus a typed state pointer owned by
 *     the flow (freed by its `free`). What the exchange does is the flow's
 *     business; the exchange only keeps it alive and reachable.
 *
 *   - an expiry: a client stream it opens (a GET stream, an SSE answer, a
 *     call held for approval) is watched (gw__x_expiry_watch) and ends when
 *     the token the request came with expires, as a revocation would end
 *     it; the client comes back with its refreshed token.
 *
 * The lifecycle functions (new, ref/unref, foreach, the identity match of
 * a revocation, the expiry heap) need no server: tests/unit/test_exchange.c
 * runs them on a bare uv loop. */
#ifndef MCPGATE_GATEWAY_MCP_EXCHANGE_H
#define MCPGATE_GATEWAY_MCP_EXCHANGE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/base/buf.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/mcp/tool_error.h"
#include "store/token.h"

typedef struct gw_req gw_req;
typedef struct gw_loop gw_loop;
typedef struct gw_out_req gw_out_req;
typedef struct gw_out_header gw_out_header;
typedef struct gw_exchange gw_exchange;
typedef struct gw_mcp_stats gw_mcp_stats;
typedef struct gw_held gw_held;
/* an open audit record of a tools/call (audit_call.c): a block for audit_submit_block */
typedef struct gw_call_rec {
  char *data;
  size_t len, cap;
  size_t dec; /* the offset of its decision's value (its opening quote) */
} gw_call_rec;

/* What a client is told (GW_RPC_TOKEN_EXPIRED) when the token its request
 * came with expired before the request was done. */
#define GW_X_EXPIRED_MSG                                                                                              \
  "your access token expired while this request was open: refresh it (your MCP client does, or sign in again) and " \
  "call again"

/* What a client is told when an upstream reply passed the buffered-bytes
 * budget (mcp_buffered_max). */
#define GW_X_BUDGET_MSG                                                                                               \
  "the gateway holds as many large replies as it allows right now (for your organisation, or in all); try again in " \
  "a moment"

#define GW_MCP_MAX_JSON_BODY (16 * 1024 * 1024)
#define GW_MCP_MAX_SSE_EVENT (8 * 1024 * 1024)

/* A message to every loop's MCP state, queued after a commit or by
 * another loop (revoke.c). What a revocation ends: the exchanges of a
 * tenant matching ALL the fields that are set (user, connector, token id);
 * none set: every exchange of the tenant (tenant deleted: its caches go
 * too). */
enum { GW_X_LOST_GONE = 1, GW_X_LOST_EXPIRED = 2 };

typedef struct gw_revocation {
  struct gw_revocation *next;
  uint64_t seq;     /* its place in the fan-out (revoke.c) */
  int origin;       /* the loop that sent it and applied it itself, or -1 */
  char tenant[64], user[40], connector[40], tokid[ST_TOKEN_ID_BUFSZ];
  /* tools/list_changed instead of ending exchanges — and a recheck
   * (revoke.c): an exchange toward a connector its user may no longer see
   * gets `hidden` instead */
  bool notify;
  bool hidden;      /* set by the recheck on the copy it hands one exchange:
                       x->connector is hidden from x->user now; x ends (a
                       GET stream told list_changed first) */
  bool tenant_gone; /* the tenant was deleted: drop its cached policy */
  bool probe;       /* not a revocation: learn connector's capabilities (after a PUT; primary loop) */
  /* not revocations: a session's news from the loop that served it, for
   * its exchanges on the others (sid) */
  bool session_gone;   /* DELETEd (either endpoint): every live exchange of it ends (revoke.c) */
  bool session_opened; /* it opened an upstream session (connector, upstream): streams attach to it */
  bool approval;       /* approval request sid (its id) left pending: note {"state","by","reason"} (held.c) */
  bool cancel;         /* notifications/cancelled (note) for a call in flight on another loop */
  char sid[96], upstream[256];
  char note[1024];
  bool unfenced;    /* replies need not wait for it (sent by a loop, not after a commit) */
  uint8_t trigger;  /* what caused it (GW_REV_*, revoke.c; 0: not a revocation), for the metrics */
  uint64_t queued_ns; /* uv_hrtime() when queued: the fan-out latency */
} gw_revocation;

/* A flow's operations. Every pointer may be NULL (then: nothing to do, or
 * the default named). They run on the loop, with the exchange referenced. */
typedef struct gw_flow_ops {
  const char *name;
  /* The upstream half (the transfer gw__x_upcall started): as
   * gw_out_opts' callbacks; r is x->out. up_done runs once, after which
   * x->out is NULL; the exchange drops the transfer's reference after it. */
  void (*up_headers)(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n);
  int (*up_data)(gw_exchange *x, gw_out_req *r, const char *p, size_t n);
  void (*up_done)(gw_exchange *x, gw_out_req *r, int err);
  /* Rewrites one upstream JSON-RPC message relayed to the client (policy
   * filtering, id rewriting); true when changed. NULL: relayed as is. A
   * message it empties (gw__x_msg_dropped) is not relayed: an SSE event
   * keeps only its id, a JSON reply becomes "no reply". */
  bool (*rewrite)(gw_exchange *x, json_t *msg);
  /* rewrite touches only messages that carry a tool list: an SSE event
   * whose data cannot hold the key "tools" (no literal "tools" and no \u
   * escape that could spell it) is relayed without being parsed. */
  bool rewrite_tool_lists_only;
  /* A JSON message (a whole reply, or one SSE event's data: body, n
   * bytes) that rewrite would leave unchanged and that jansson would
   * accept, vouched for without a parse: true relays it as is (an event
   * still gets its gateway id). false: it is parsed (and rewritten, or
   * refused as invalid). NULL: always parsed. */
  bool (*vouch)(gw_exchange *x, const char *body, size_t n);
  /* rewrite done on a JSON message's bytes (a whole reply, or one SSE
   * event's data), when the flow can do it without a parse: 1 (out holds
   * the rewritten message), 0 (unchanged, and a text jansson accepts:
   * relayed as is), -1 (undecided: parsed, then rewrite). Tried before
   * vouch and the parse. NULL: never. */
  int (*rewrite_bytes)(gw_exchange *x, const char *body, size_t n, gw_buf *out);
  /* The client's id for an upstream SSE event id (malloc'd, or NULL to
   * keep the upstream's). */
  char *(*event_id)(gw_exchange *x, const char *upstream_id);
  /* A revocation whose identity matches x (gw__x_matches). NULL: the
   * default, gw__x_on_revoke. */
  void (*on_revoke)(gw_exchange *x, const gw_revocation *r);
  /* The client half ended (answered, dropped, or gone) / drained its
   * write queue (a paused feed may resume). */
  void (*client_end)(gw_exchange *x);
  void (*client_drain)(gw_exchange *x);
  /* Collector flows (a batch): an element's reply j (stolen; NULL: no
   * reply) for slot; and n more reply bytes against the budget (false once
   * it is spent). */
  void (*collect)(gw_exchange *x, int slot, json_t *j);
  bool (*take)(gw_exchange *x, size_t n);
  /* Frees the flow's state (once, when the exchange is freed). */
  void (*free)(void *state);
  /* The upstream's answer is wanted even without a client (probes). */
  bool clientless;
} gw_flow_ops;

/* The live exchanges of one loop. New exchanges are appended, so a walk
 * bounded by the tail it saw never meets one created under it.
 *
 * The watched ones (gw__x_expiry_watch: a client stream whose token
 * expires) are also in a binary min-heap on their ident_expires, so one
 * timer per loop serves every stream: `arm` (set by the loop; NULL in unit
 * tests) sets it for the earliest deadline when a new one is earlier than
 * `armed`; a watch ending never moves it (the timer firing early finds
 * nothing due and is set again for the next). Watching and unwatching are
 * O(log n) and happen only when a stream opens and ends, never for a
 * request answered with one JSON reply. */
typedef struct gw_xreg {
  gw_exchange *list, *tail;
  gw_exchange **due;     /* the heap (due[0]: the earliest) */
  size_t ndue, capdue;
  int64_t armed;         /* the deadline (unix s) the loop's timer is set for; 0: none */
  void (*arm)(struct gw_xreg *reg, int64_t at); /* sets the loop's timer to fire at `at` (unix s) */
  void *arm_data;
} gw_xreg;

enum { GW_X_POST, GW_X_GET, GW_X_DELETE };

struct gw_exchange {
  /* lifetime */
  gw_exchange *next, *prev;
  gw_xreg *reg;
  int refs;
  bool listed;
  gw_loop *lp; /* NULL only in unit tests of the lifecycle */
  /* identity */
  char tenant[64], connector[40], user[40];
  char tokid[ST_TOKEN_ID_BUFSZ]; /* the employee token it acts with: its revocation ends it */
  char sid[96];                  /* the gateway's session id for this exchange */
  char tenant_uid[ST_TENANT_UID_LEN + 1]; /* the tenant's incarnation (its audit chain), "" if unknown */
  char *audit;                   /* a tools/call's audit record (JSON text, open), submitted when the exchange ends
                                    (audit_call.c) */
  size_t audit_len, audit_cap;
  size_t audit_dec;              /* ... the offset of its decision's value (its opening quote) */
  gw_call_rec *audit_batch; /* the records of a batch's earlier calls (open, as audit), completed with
                                        the batch's one upstream answer when the exchange ends */
  size_t audit_nbatch;
  uint64_t audit_start_ns;       /* ... the call's decision */
  size_t audit_bytes_out;        /* ... upstream bytes relayed */
  gw_tool_error_scan audit_scan; /* ... whether a relayed result said "isError": true (tool_error.h) */
  bool audit_scan_on;            /* ... audit_scan begun (on the answer's first relayed byte) */
  bool audit_scan_fed;           /* ... the answer named "isError" or had a \u escape: scanned from then on */
  gw_session sess;
  uint64_t ident_snapshot;       /* where the identity was checked (gw_mcp_ctx), 0: unknown */
  int64_t ident_expires;         /* the token's expiry (unix s), 0: none */
  size_t due_at;                 /* its place in reg's expiry heap + 1; 0: not watched */
  gw_exchange *due_next;         /* the expiry's list of exchanges due (gw__x_expiry_fire) */
  /* client half */
  gw_req *req;         /* NULL once the client side is finished */
  gw_exchange *into;   /* a batch element: the collecting exchange (a ref), else NULL */
  int slot;            /* ... and this element's slot there */
  int kind;            /* GW_X_POST, GW_X_GET, GW_X_DELETE */
  json_t *ids;         /* ids of the requests in the client's message */
  bool started;        /* an SSE stream to the client is open */
  bool paused;         /* the upstream transfer is paused for the client */
  bool revoked;        /* ended by a revocation: nothing more is forwarded */
  uint8_t lost;        /* its session is gone (GW_X_LOST_GONE: evicted, purged) or expired (GW_X_LOST_EXPIRED,
                          still stored): ended by the sweep that marked it (revoke.c) */
  bool grant_used;     /* the transfer carries the user's own upstream grant (an oauth connector) */
  bool shared_cred;    /* its connector, as read by this request's decision, takes no per-user credential:
                          the vault gate has nothing to check (agg_call.c; the upcall reads it again) */
  bool cut;            /* its connector is hidden from its user now: ended by the recheck's second pass */
  gw_held *held;       /* a call held for approval (held.c), else NULL; while its SSE stream is open, the
                          final answer is one event on it (gw__x_reply_*) */
  bool too_big;        /* the upstream's reply (or one SSE event of it) passed its cap: the transfer was aborted */
  bool over_budget;    /* ... not its cap: the buffered-bytes budget of its tenant or the process (mcp_buffered_max) */
  bool resumable;      /* a relayed SSE event carried an id: the client can resume the stream (Last-Event-ID) */
  bool bad_event;      /* an upstream SSE event the relay had to parse was not valid JSON: dropped */
  size_t json_owed;    /* bytes of tree its parsed upstream texts took short of a whole MiB, not charged yet
                          (gw__x_json) */
  bool json_refused;   /* an upstream JSON text was left unparsed: its tree's MiBs did not fit the user's or
                          the tenant's JSON budget (gw__x_json; logged the first time) */
  uint32_t json_refusals; /* ... how many (a caller asking whether its own text was refused compares) */
  bool cancel_sent;    /* a client's notifications/cancelled for it went upstream (once: agg.c) */
  bool foreign_note;   /* an upstream notification naming another connector's progress token, question,
                          elicitation or resource was dropped (agg_maps.c; logged at info once per exchange) */
  json_t *replied;     /* ids (of ids) whose reply was relayed on the client's SSE stream, or NULL */
  /* upstream half */
  gw_out_req *out;     /* NULL when no transfer runs */
  int status;
  char up_sid[256];
  char up_ct[128];
  json_t *sess_bind;   /* the server and credential sess.upstream belongs to: vault_upstream_bind (the
                          connector's binding and, for a per-user connector, the user's grant's) as read
                          with that id, or as this exchange's session-opening transfer went with; NULL:
                          unknown. An upcall carrying sess.upstream refuses another one (upcall.c) */
  struct gw_usess_end *opening; /* what the upstream session this exchange is opening was opened with (URL,
                          credential), kept until it is stored or ended (usess_end.h); NULL: none */
  gw_buf body;         /* buffered JSON / SSE reply (capped) */
  gw_buf ev;           /* SSE bytes not yet forming a complete event */
  size_t ev_scanned;   /* bytes of ev already searched for an event end */
  uint64_t start_ns;
  gw_mcp_stats *m;     /* this exchange's metrics entry, or NULL */
  /* flow */
  const gw_flow_ops *flow;
  void *state;         /* owned by the flow; flow->free frees it */
};

/* A new exchange with one reference, listed in reg, with no client half
 * yet. lp may be NULL (unit tests). The identity strings may be NULL
 * (empty). state is taken (flow->free frees it, also on failure: NULL
 * returned). */
gw_exchange *gw__x_new(gw_xreg *reg, gw_loop *lp, const char *tenant, const char *connector, const char *user,
                       const char *tokid, const gw_flow_ops *flow, void *state);
/* Replaces the flow (the old state freed by the old flow's free). */
void gw__x_set_flow(gw_exchange *x, const gw_flow_ops *flow, void *state);
void gw__x_ref(gw_exchange *x);
void gw__x_unref(gw_exchange *x);
/* Calls fn(x, arg) on every exchange listed when the call starts, holding
 * a reference on each until the walk is over: fn may reply, end, free or
 * create exchanges (created ones are appended after the walk's last and
 * not visited). The one way to walk the list when fn can trigger
 * callbacks. */
void gw__x_foreach(gw_xreg *reg, void (*fn)(gw_exchange *x, void *arg), void *arg);
/* Unlinks every exchange (shutdown), then ends each (gw__x_end) and drops
 * the registry's hold: transfers still finishing after this do not touch
 * the registry. Metrics pointers are cleared (their table goes too). */
void gw__x_reg_close(gw_xreg *reg);

/* True when r's identity fields that are set all equal x's. */
bool gw__x_matches(const gw_exchange *x, const gw_revocation *r);
/* Walks reg and calls the flow's on_revoke (or gw__x_on_revoke) once for
 * every exchange r matches. */
void gw__x_revoke(gw_xreg *reg, const gw_revocation *r);
/* Calls x's flow's on_revoke (or gw__x_on_revoke) with r, whose identity
 * the caller matched. */
void gw__x_revoke_one(gw_exchange *x, const gw_revocation *r);
/* The default on_revoke: an ending revocation ends x; a notification
 * writes tools/list_changed on a client GET stream; `hidden` does both
 * (list_changed, then the stream is cut; a waiting request gets "access
 * revoked" naming the connector). */
void gw__x_on_revoke(gw_exchange *x, const gw_revocation *r);
/* Ends x for a revocation (or shutdown): nothing more goes upstream, a
 * stream is cut, a waiting request (or batch element) gets "access
 * revoked". */
void gw__x_end(gw_exchange *x);
/* The same, a waiting request told why (GW_RPC_REVOKED, why). */
void gw__x_end_why(gw_exchange *x, const char *why);

/* ---- the token's expiry ---- */
/* x's client half became a stream (a GET stream, an SSE answer, a call
 * held for approval: what a client keeps open): it ends when
 * x->ident_expires passes (gw__x_expired). Nothing for an identity
 * without expiry, an exchange without registry or client, or one watched
 * already. 0, or -1 when the heap cannot grow (out of memory): the caller
 * refuses the stream rather than let it outlive the token (fail closed). */
int gw__x_expiry_watch(gw_exchange *x);
/* x no longer needs ending at expiry (its client half ended; it is
 * freed). Nothing when it is not watched. */
void gw__x_expiry_unwatch(gw_exchange *x);
/* The earliest deadline watched (unix s), 0: none. */
int64_t gw__x_expiry_next(const gw_xreg *reg);
/* The loop's timer fired (now_s: the wall clock, unix s): every watched
 * exchange whose token expired by now_s leaves the heap and is ended with
 * end (the loop's: gw__x_expired), each referenced until all are (an
 * ending may free, create or end exchanges, its own included), then the
 * timer is set for the next deadline. */
void gw__x_expiry_fire(gw_xreg *reg, int64_t now_s, void (*end)(gw_exchange *x));
/* Ends x because its token expired: nothing more goes upstream, a GET
 * stream ends cleanly (the client reconnects and, with its expired token,
 * is refused 401 and refreshes), an SSE answer ends too — with a JSON-RPC
 * error (GW_RPC_TOKEN_EXPIRED) for each request it had not answered unless
 * an event id lets the client resume it —, a call held for approval gets
 * that error as its answer (the approval request stays pending). Nothing
 * when its client half ended already (a revocation came first: no double
 * close). */
void gw__x_expired(gw_exchange *x);
/* Writes on x's SSE stream (x->req, started) a JSON-RPC error event
 * (code, msg) for each request id of x no relayed event answered
 * (x->replied); true when it wrote one. */
bool gw__x_sse_errors(gw_exchange *x, int code, const char *msg);

/* Aborts x's upstream call, if one runs (its up_done follows, from the
 * loop). The one way to stop the upstream half from outside its own
 * callbacks: when the credential phase of an upcall becomes asynchronous,
 * cancelling a pending credential hooks in here. */
void gw__x_abort_upstream(gw_exchange *x);

/* The client half. attach: req answers through x (req->handler_data is
 * x; aborts and drains reach the exchange). done: the client side ends
 * (the request is answered or dropped; the reference it held goes). */
void gw__x_attach(gw_exchange *x, gw_req *req, int kind);
void gw__x_client_done(gw_exchange *x);
/* The client half is still there to answer (a request, or a batch slot). */
bool gw__x_client_alive(const gw_exchange *x);
/* ... or, for clientless flows, the upstream's answer is wanted anyway. */
bool gw__x_wanted(const gw_exchange *x);
/* Puts x's client half into slot of collector c (a reference on c). */
void gw__x_collect_into(gw_exchange *x, gw_exchange *c, int slot);
/* The collector's client left before x answered: x answers nowhere now,
 * like an exchange whose client left (its transfer is aborted, its flow's
 * client_end runs; the reference on the collector goes). Nothing when x
 * has answered. */
void gw__x_uncollect(gw_exchange *x);
/* n more reply bytes for a batch element: false once the batch's budget
 * is spent (abort the transfer). Always true outside batches. */
bool gw__x_take(gw_exchange *x, size_t n);
void gw__x_reply_json(gw_exchange *x, int status, json_t *j);
/* An upstream's JSON text (a reply, an event's data) parsed for x
 * (gw_json_loadb): its tree's whole MiBs — with what x's earlier texts
 * took short of a MiB (x->json_owed) — charged to x's user's and tenant's JSON budgets first
 * (gw_limits_mcp_reply_json) — the buckets its clients' bodies pay into:
 * a tenant admin's upstream whose replies cost the loop ~200 ms to parse
 * each takes the loop from that tenant's budget, not every tenant's. NULL (and x->json_refused, logged
 * once per exchange) when it does not fit: the caller answers as for an
 * invalid text, gw__x_json_refused_msg saying why. */
json_t *gw__x_json(gw_exchange *x, const char *p, size_t n, size_t flags);
/* gw__find_reply over x's buffered reply (x->body, x->up_ct), its parses
 * gw__x_json's. */
json_t *gw__x_find_reply(gw_exchange *x, const json_t *id);
/* x's answer when its upstream's was left unparsed (x->json_refused):
 * the JSON-RPC error GW_X_JSON_REFUSED_MSG says (429 for a message
 * without requests). */
void gw__x_json_refused_error(gw_exchange *x);
/* (the upstream has answered: a call may have run, and a client must not
 * take the error for "not done" and repeat a call that is not idempotent) */
#define GW_X_JSON_REFUSED_MSG                                                                                       \
  "its answer was not relayed: it would take more JSON to check than your or this tenant's budget has left "  \
  "this minute (mcp_json_mib_per_user, mcp_json_mib_per_tenant); the request reached the connector and may "   \
  "have run"
void gw__x_reply_raw(gw_exchange *x, int status, const char *ct, const char *body, size_t n);
/* JSON-RPC error for every request id of the message (HTTP 200, as an MCP
 * server answers); a message with no request (notifications) gets
 * http_status with a JSON-RPC error body and a null id. */
void gw__x_rpc_error(gw_exchange *x, int http_status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A message a flow's rewrite emptied to drop it: an object without
 * members, or an array without elements. */
bool gw__x_msg_dropped(const json_t *j);

/* Back-pressure of a client SSE stream fed by x (client: the stream's
 * request): OK, FULL (pause the feeding transfer; on_drain resumes it), or
 * OVER (past stream_buffer_max: the stream was ended, logged and counted;
 * abort the feeding transfer). */
enum { GW_STREAM_OK, GW_STREAM_FULL, GW_STREAM_OVER };
int gw__x_stream_pressure(gw_exchange *x, gw_req *client);

#endif
