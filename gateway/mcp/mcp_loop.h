/* gateway/mcp/mcp_loop.h — the MCP proxy's per-loop state and what its two
 * endpoints share (private to gateway/mcp/): the request context preauth
 * establishes, the common request checks and refusals, the caller's
 * policy, and exchanges made for a request.
 *
 * Per-loop state is reached only through gw__mcp_of(lp), so where it hangs
 * (today gw_loop.proxy) can change in one place. What every loop shares
 * (the fan-out, the aggregated sessions' maps) is gw_mcp_shared (srv->mcp),
 * each part under its own mutex; a loop touches another loop's state only
 * through the fan-out (revoke.c) and the metrics render (mcp_loop.c). */
#ifndef MCPGATE_GATEWAY_MCP_LOOP_H
#define MCPGATE_GATEWAY_MCP_LOOP_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/base/json_check.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"
#include "gateway/mcp/exchange.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/mcp/memo.h"
#include "gateway/mcp/stats.h"
#include "policy/policy.h"
#include "store/token.h"

/* Per-session maps of the aggregated endpoint, by session id (agg_maps.c). */
typedef struct gw_agg_index gw_agg_index;

/* One loop's MCP state. */
struct gw_proxy {
  gw_loop *lp;
  struct vault_worker *vault_worker; /* loop 0 only: the revocation queue's worker (vault_worker.c) */
  gw_xreg reg;              /* the live exchanges */
  uv_async_t async;         /* fan-out messages queued from other threads */
  uv_timer_t gate_timer;    /* a writer reply held at the gate: its deadline */
  uv_timer_t delay_timer;   /* tests only: MCPGATE_TEST_FANOUT_DELAY_MS (mcp_loop.c) */
  uint64_t delay_ms;
  int handles;              /* open handles; the state is freed with the last */
  gw_revocation *queue, *queue_tail; /* under the shared fan_mu */
  struct gw_proxy *fan_next;         /* the fan-out's list of loops (under fan_mu) */
  _Atomic uint64_t applied; /* the last fan-out message this loop applied */
  _Atomic uint64_t missed;  /* a message that could not be queued here (out of memory), or 0 */
  _Atomic bool parked;      /* a writer reply waits at this loop's gate */
  uint64_t passed_fence;    /* a fence a reply gave up waiting for: later ones up to it pass */
  uint64_t warned_at, warn_suppressed;        /* the gate's timeout warnings (rate-limited) */
  uint64_t unfenced_window, unfenced_sent;    /* gw__fanout_allow_unfenced */
  gw_mcp_stats_table stats; /* per (tenant, connector) */
  gw_memo *memo;          /* store reads per snapshot (memo.h) */
  st_txn *pinned;         /* the read txn of the request being dispatched (gw__read_begin) */
  uv_timer_t held_timer;  /* while calls are held for approval: progress and expiry (held.c) */
  uv_timer_t expiry_timer; /* the earliest token expiry of a watched client stream (reg's heap, exchange.h) */
  int nheld;              /* calls held (waiting) on this loop */
  struct gw_ap_notify *notify; /* the approval webhook's queue (ap_notify.c) */
  struct gw_usess_ender *ender; /* DELETEs of upstream sessions no longer used (usess_end.c) */
  struct gw_usess_end *ends_in; /* ... batches the writer's after-commits posted here (under the shared fan_mu) */
  struct {                      /* gw__mcp_meter's: the tenants' meters this loop used last, by hash */
    char tenant[64];
    gw_buf_meter *m;
  } meters[16];
};

/* What caused a revocation (gw_revocation.trigger), for
 * mcpgate_revocations_total{trigger}. */
enum {
  GW_REV_NONE,
  GW_REV_SCIM_PATCH,   /* SCIM PATCH active=false (with or without path) */
  GW_REV_SCIM_PUT,     /* SCIM PUT active=false */
  GW_REV_SCIM_DELETE,  /* SCIM DELETE of an active user */
  GW_REV_ADMIN,        /* POST …/users/{id}/revoke */
  GW_REV_TENANT,       /* tenant deleted */
  GW_REV_TOKEN,        /* an employee token or an OAuth grant revoked (by itself, or with its user) */
  GW_REV_CONNECTOR,    /* connector deleted, moved to another server or given another credential */
  GW_REV_UNIVERSAL_LOGOUT, /* Okta's Universal Logout signed the user out everywhere */
  GW_REV_USER_CREDENTIAL,  /* an employee's own credential for a connector replaced or removed (their sessions there) */
  GW_REV_N
};
extern const char *const gw_rev_trigger_names[GW_REV_N];
/* Buckets (seconds) of mcpgate_revocation_fanout_seconds. */
#define GW_FAN_NBUCKETS 9
extern const double gw_fan_bucket_le[GW_FAN_NBUCKETS];

/* The MCP proxy's process-wide state (srv->mcp, made by the module's
 * init; freed by its fini after every loop stopped). */
typedef struct gw_mcp_shared {
  /* the fan-out (revoke.c): every started loop, and the messages queued
   * to them; a writer reply waits at its loop's gate until every loop
   * applied the messages queued before it (revocation_fanout_timeout_ms) */
  uv_mutex_t fan_mu;
  gw_proxy *loops;
  _Atomic uint64_t seq;           /* messages queued so far (written under fan_mu) */
  _Atomic uint64_t fence_seq;     /* the last one replies must wait for (not a loop's own news) */
  _Atomic int nloops;             /* loops in the list */
  _Atomic int parked;             /* loops with a reply at their gate */
  _Atomic uint64_t fan_timeouts;  /* replies that went out past the timeout */
  /* metrics: revocations queued, by trigger (GW_REV_*), and the time from
   * queueing to each loop applying one (a histogram, GW_FAN_BUCKETS) */
  _Atomic uint64_t revocations[GW_REV_N];
  _Atomic uint64_t fan_bucket[GW_FAN_NBUCKETS + 1], fan_count, fan_sum_ns;
  /* per-user upstream grants (grants.c, vault_worker.c): refreshes by
   * outcome, revocation requests by outcome */
  _Atomic uint64_t refreshes_ok, refreshes_failed, refreshes_invalid;
  _Atomic uint64_t revoke_sent_ok, revoke_sent_retry, revoke_sent_failed;
  /* approvals (held.c, ap_notify.c): calls held now, requests stored,
   * outcomes the held calls learned (GW_AP_OUT_*), time from a request's
   * creation to its decision (GW_AP_NBUCKETS), webhook POSTs by outcome */
  _Atomic int64_t ap_held;
  _Atomic uint64_t ap_requests, ap_decided[4];
  _Atomic uint64_t ap_bucket[8 + 1], ap_dec_count, ap_dec_sum_ms;
  _Atomic uint64_t hook_ok, hook_failed, hook_retried, hook_dropped;
  /* upstream sessions the gateway stopped using, DELETEd (usess_end.c):
   * ended (2xx, or 404: unknown there), refused (another status), failed
   * (no answer), dropped (not sent) */
  _Atomic uint64_t usess_ended, usess_refused, usess_failed, usess_dropped;
  /* the connector cut (revoke.c; set with the hooks, read on the writer
   * thread): session index records a trigger's txn reads itself, and one
   * sweep step */
  int cut_inline, cut_step;
  /* aggregated sessions' maps (agg_maps.c): a session's requests may
   * reach any loop, so its resource routes and outstanding questions are
   * the process's, under maps_mu */
  uv_mutex_t maps_mu;
  gw_agg_index *agg_uris; /* resource routes */
  gw_agg_index *asked;    /* outstanding server→client requests */
  size_t agg_sessions_max; /* sessions per index; 0: agg_maps.c's SESSIONS_MAX (set by a test hook) */
  /* a per-user grant's refresh request ends this long after its claim
   * (grants.c): VAULT_REFRESH_DEADLINE_MS, or less by a test hook */
  uint64_t refresh_deadline_ms;
  uint64_t maps_gen;       /* the last entry's stamp (agg_maps.c: a sweep drops only the entries it checked) */
  uint64_t uri_steps;      /* keys and nodes the URI lookups visited (under maps_mu): their cost, for the tests */
  json_t *heads;          /* feeds of new upstream sessions awaiting their GET's answer (agg_mux.c), or NULL */
  /* upstream replies buffered by exchanges (x->body, x->ev), past each
   * buffer's first GW_BUF_METER_FREE bytes (mcp_buffered_max): the
   * process's meter, and one per tenant chained to it, made on first use
   * under meter_mu and kept until the process state goes (a buffer on any
   * loop may hold one) */
  uv_mutex_t meter_mu;
  gw_buf_meter buf_meter;
  struct gw_tenant_meter *tenant_meters[64];
} gw_mcp_shared;

/* tenant's meter of buffered upstream replies (mcp_buffered_max: a quarter
 * of it, a sixteenth once it is half used), or NULL (no loop, as a unit
 * test's exchange; out of memory: the buffers go unmetered, capped as
 * ever). A meter lives as long as the server, so the loop keeps the ones
 * it used last (gw_proxy.meters) and takes the shared table's mutex only
 * for a tenant it has not. lp's thread. */
gw_buf_meter *gw__mcp_meter(gw_loop *lp, const char *tenant);

/* The loop's MCP state, or NULL (not started, or stopped). */
gw_proxy *gw__mcp_of(gw_loop *lp);

/* Store reads while a request is dispatched share one read transaction:
 * gw__read_pin opens it for the synchronous handling of one request (the
 * policy checks, the connector and the credential before the transfer),
 * gw__read_unpin ends it. Outside a pin gw__read_begin/end are
 * st_read_begin/st_txn_end. A revocation committed meanwhile reaches the
 * loop after the dispatch returns, and ends what it started. */
int gw__read_begin(gw_loop *lp, st_txn **txn);
/* vault_worker.c: the revocation queue's worker on loop 0 (start after the
 * outbound engine exists; stop before it closes). */
int gw__vault_worker_start(gw_loop *lp);
void gw__vault_worker_stop(gw_loop *lp);
void gw__read_end(gw_loop *lp, st_txn *txn);
st_txn *gw__read_pin(gw_loop *lp);                 /* NULL: none pinned by this call */
void gw__read_unpin(gw_loop *lp, st_txn *pinned); /* what gw__read_pin returned */
/* handle(req) with the read transaction pinned around it. */
void gw__dispatch_pinned(gw_req *req, void (*handle)(gw_req *req));

/* What preauth established about a request. */
typedef struct gw_mcp_ctx {
  char tenant[64], connector[40], user[40];
  char tokid[ST_TOKEN_ID_BUFSZ];
  const char *sid; /* the Mcp-Session-Id header, or NULL */
  gw_session sess;
  bool sess_ok;    /* the session exists and is this caller's, on this endpoint */
  /* the store snapshot the token was checked in, and the token's expiry
   * (unix s, 0: none): the check before the upstream transfer, reading the
   * same snapshot with the token unexpired, could only get the same answer
   * (upcall.c skips it then) */
  uint64_t ident_snapshot;
  int64_t ident_expires;
  char tenant_uid[ST_TENANT_UID_LEN + 1]; /* the tenant's incarnation: its audit chain */
} gw_mcp_ctx;
int gw__mcp_begin(gw_req *req, bool agg, gw_mcp_ctx *c);
/* The handlers' entry: the context preauth already established for a
 * request with a body, or gw__mcp_begin now. */
int gw__mcp_ctx_of(gw_req *req, bool agg, gw_mcp_ctx *c);
/* GET and DELETE: an MCP-Protocol-Version, when sent, that is supported
 * (400), the caller's session (400 without one, 404 another's or gone),
 * the identity still as preauth found it, and GET's Accept. 0, or -1:
 * answered. */
int gw__mcp_session_checks(gw_req *req, const gw_mcp_ctx *c);
/* POST: Accept checked, the body parsed fully and strictly; NULL: answered. */
json_t *gw__mcp_parse_post(gw_req *req);
/* The request's body parsed (gw_json_loadb), its tree's estimate made
 * once for all the parses of a request (req->body_tree_cost). */
json_t *gw__mcp_body_json(gw_req *req, size_t flags, json_error_t *err);
/* The common POST read without a tree: one request (not a batch, not
 * initialize, server/discover or a tasks/ method) whose jsonrpc, id, method and —
 * for tools/call — params.name are plain (no escapes), in a body the scan
 * accepts exactly as the strict parse would (gw_json_pick). false: read
 * it with gw__mcp_parse_post, which decides everything else (and words
 * the errors). */
typedef struct gw_rpc_lite {
  char method[64];
  json_t *id;         /* a new reference; NULL for a notification */
  char name[256];     /* params.name of a tools/call, else "" */
  gw_json_span name_at; /* params.name's value in the body, quotes included */
  gw_json_span args_at; /* params.arguments' value of a tools/call ({p NULL}: none) */
  gw_json_span meta_at; /* params._meta's value ({p NULL}: none) */
} gw_rpc_lite;
bool gw__mcp_post_lite(gw_req *req, gw_rpc_lite *out);
void gw__mcp_refuse(gw_req *req, int status, int code, const char *msg);
/* A 2026-07-28 client probes with server/discover first: "method not
 * found" (answering the request's id) makes it fall back to initialize. */
void gw__mcp_refuse_discover(gw_req *req, const json_t *id);
bool gw__accept_has(const char *accept, const char *type);
bool gw__mcp_version_supported(const char *v);
/* A request (but initialize, whose body names its version) whose
 * MCP-Protocol-Version header names a version the gateway does not speak:
 * answered 400 naming the ones it does; true when refused. */
bool gw__mcp_version_refused(gw_req *req);
/* Checks one JSON-RPC message and appends its request id (if any) to ids;
 * NULL when fine, else a reason (static). */
const char *gw__check_message(const json_t *m, json_t *ids, const char **method_out);
/* Answers 401 with WWW-Authenticate: Bearer resource_metadata="<the PRM
 * of c's resource>", plus error="invalid_token" when a token was presented. */
void gw__mcp_unauthorized(gw_req *req, const gw_mcp_ctx *c, bool presented, const char *msg);
/* The connector record of (tenant, connector) in txn's snapshot, through
 * the loop's memo (memo.h): a new reference the caller must not modify,
 * or a store error (ST_ENOTFOUND: no such connector). facts (may be NULL):
 * the record taken apart (vault_conn_facts; borrowed from *out). */
int gw__connector_get(gw_loop *lp, st_txn *txn, const char *tenant, const char *connector, json_t **out,
                      vault_conn_facts *facts);
/* The caller's effective policy, fresh for this request (cached per loop,
 * keyed by membership generation and policy version). NULL: the store
 * could not be read — callers deny. */
const pol_user *gw__policy_for(gw_loop *lp, const char *tenant, const char *user);

/* Writer side (a job's txn): 0 when policy in txn shows connector to
 * user, GW_UP_EHIDDEN when not, or a store error. Session writes for one
 * connector check it inside their transaction, so none lands after the
 * connector cut (revoke.c) that would come back with the grant.
 * Building the user's decisions compiles the tenant's whole policy (~5 ms
 * for 1,000 rules, on the writer that every deactivation waits for), so
 * the loop stamps what its own decision was built from (gw__visible_stamp,
 * before submitting) and the job builds them again only when any of it
 * moved since — the policy's revision, the membership generation, the cuts
 * in memory, the tenant's incarnation: equal stamps, equal decisions. */
typedef struct gw_vis_stamp {
  bool visible;     /* the loop's decision; false: no stamp, the job decides */
  int rev;
  uint64_t gen, cutgen;
  char uid[ST_TENANT_UID_LEN + 1];
} gw_vis_stamp;
void gw__visible_stamp(gw_loop *lp, const char *tenant, const char *user, const char *connector, gw_vis_stamp *out);
int gw__visible_in(st_txn *txn, const gw_vis_stamp *stamp, const char *tenant, const char *user,
                   const char *connector);

/* An exchange answering req (attached, counted as a request of ctx's
 * connector, "(all)" for the aggregated endpoint), with the flow given;
 * NULL: out of memory (state freed). */
gw_exchange *gw__mcp_exchange(gw_req *req, int kind, const gw_mcp_ctx *c, const gw_flow_ops *flow, void *state);
/* An exchange acting for parent's identity and session toward connector,
 * with no client half (a batch element gets one with gw__x_collect_into). */
gw_exchange *gw__mcp_child(gw_exchange *parent, const char *connector, const gw_flow_ops *flow, void *state);
/* An exchange with neither client nor identity (the gateway's own calls:
 * capability probes). */
gw_exchange *gw__mcp_bare(gw_loop *lp, const char *tenant, const char *connector, const gw_flow_ops *flow,
                          void *state);
/* Points x's metrics at connector (the aggregated flows change connector). */
void gw__mcp_count(gw_exchange *x, const char *connector);

/* DELETE: the session record goes in a writer job, with the user's
 * approval requests made in it that are still pending (cancelled); after
 * its commit every loop ends the session's live exchanges (streams, calls
 * in flight, held calls) before the 204; deleted(x, got) runs after it
 * went (before the 204), then the upstream session
 * (x->sess.upstream, if any) is told. read, when given, runs in the
 * deleting transaction just before the delete (on the writer thread: the
 * store only, a pure function of it), so what it reads is exactly what
 * the delete took; its result is handed to deleted as `got` (borrowed;
 * NULL when the session was already gone, or read gave nothing). */
typedef json_t *(*gw_mcp_del_read_fn)(st_txn *txn, const char *tenant, const char *user, const char *sid);
void gw__mcp_delete_session(gw_exchange *x, gw_mcp_del_read_fn read, void (*deleted)(gw_exchange *x, json_t *got));
/* Opens the gateway session s (tenant, user, version, …; the id is made
 * here) for x's initialize, in one writer job that checks x's identity
 * again inside the write: a user deactivated or a token revoked since the
 * request's check gets no session. A connector endpoint's session with an
 * upstream session id is stored only while the connector's binding (and
 * the user's own credential's) is still x->sess_bind, the one its
 * initialize went with: a move or rekey that committed while it was
 * opened deleted the connector's sessions before this one existed. On
 * success x->sid is set and reply(x, result) answers the client; on
 * failure the client gets the refusal (revoked, or 503) and the upstream
 * session x's initialize opened (x->opening, usess_end.h) is ended there.
 * result (may be NULL) is stolen and released after reply. */
void gw__mcp_session_create(gw_exchange *x, const gw_session *s, json_t *result,
                            void (*reply)(gw_exchange *x, json_t *result));

/* agg_maps.c (process-wide maps, any thread): drops the in-memory state
 * of a client session (resource map, outstanding server→client requests). */
void gw__agg_forget_session(gw_mcp_shared *sh, const char *sid);
/* ... of every session of a user (user NULL: of the tenant; tenant NULL:
 * everything, at exit). */
void gw__agg_forget_owner(gw_mcp_shared *sh, const char *tenant, const char *user);
/* Drops the in-memory state of sessions no longer stored (or expired):
 * evicted by sessions_per_user_max, purged. Inside a read txn; touches
 * memory only. The three steps below, so that maps_mu (which every
 * loop's aggregated requests take) is not held while the store is read:
 * begin notes under it the sessions with state and a stamp of each
 * entry (NULL: none, or no memory); check reads the store without it;
 * end drops under it the state of the sessions found gone, where it is
 * still the entry that was checked (not one made again since), frees sw
 * and returns how many entries went. */
void gw__agg_sweep(gw_mcp_shared *sh, const gw_session_limits *lim, st_txn *txn, int64_t now_ms);
typedef struct gw_agg_sweep gw_agg_sweep;
gw_agg_sweep *gw__agg_sweep_begin(gw_mcp_shared *sh);
void gw__agg_sweep_check(gw_agg_sweep *sw, const gw_session_limits *lim, st_txn *txn, int64_t now_ms);
size_t gw__agg_sweep_end(gw_mcp_shared *sh, gw_agg_sweep *sw);
/* How many sessions have a resource-URI map (a gauge). */
size_t gw__agg_uri_maps(gw_mcp_shared *sh);
/* The process-wide state (srv->mcp). */
gw_mcp_shared *gw__mcp_shared(const gw_server *srv);

/* revoke.c: the fan-out. A started loop joins (its proxy made, before it
 * runs) and leaves (at stop, before its async handle closes). */
void gw__fanout_join(gw_proxy *p);
void gw__fanout_leave(gw_proxy *p);
/* Queues a copy of m to every loop once txn commits (nothing if it rolls
 * back). Writer thread, inside a job or hook. */
int gw__fanout_on_commit(st_txn *txn, gw_server *srv, const gw_revocation *m);
/* Queues m to every loop; `except` (NULL: none) applied it already and
 * skips it. Any thread. */
void gw__fanout_send(gw_server *srv, const gw_revocation *m, const gw_proxy *except);
/* The store port's gate and stamp (st_port_gate; arg: the gw_loop). */
bool gw__fanout_gate(void *lp, uint64_t state[2]);
void gw__fanout_stamp(void *lp, uint64_t state[2]);
/* True while loop p may still send unfenced news this second (bounded). */
bool gw__fanout_allow_unfenced(gw_proxy *p);

#endif
