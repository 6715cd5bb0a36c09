/* gateway/mcp/mcp_int.h — private to the MCP proxy files (mcp_proxy.c: the
 * exchange machinery and the single-connector endpoint; mcp_agg.c: the
 * aggregated endpoint). One exchange (px) per client request; see
 * mcp_proxy.c for its lifetime rules. */
#ifndef MCPGATE_GATEWAY_MCP_INT_H
#define MCPGATE_GATEWAY_MCP_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/base/buf.h"
#include "gateway/http/http.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/out/outbound.h"
#include "gateway/core/server.h"
#include "policy/policy.h"
#include "store/token.h"

#define GW_RPC_REVOKED (-32004)
#define MAX_JSON_BODY (16 * 1024 * 1024)
#define MAX_SSE_EVENT (8 * 1024 * 1024)
#define MAX_METRIC_ENTRIES 4096
#define NBUCKETS 10


typedef struct cmetrics {
  char tenant[64], connector[40];
  uint64_t requests, errors, auth_failures, overflows;
  uint64_t hist[NBUCKETS + 1];
  double sum;
  int64_t streams;
} cmetrics;

/* What a revocation ends: the exchanges of a tenant matching ALL the
 * fields that are set (user, connector, token id); none set: every
 * exchange of the tenant (tenant deleted: its caches go too). */
typedef struct revocation {
  struct revocation *next;
  char tenant[64], user[40], connector[40], tokid[ST_TOKEN_ID_BUFSZ];
  bool notify;      /* tools/list_changed instead of ending exchanges */
  bool tenant_gone; /* the tenant was deleted: drop its cached policy */
} revocation;

struct gw_proxy {
  gw_loop *lp;
  struct px *list, *tail; /* new exchanges are appended: see gw__px_foreach */
  uv_async_t async;
  uv_mutex_t mu;
  revocation *queue; /* under mu */
  cmetrics **m; /* entries never move: exchanges keep pointers to them */
  json_t *agg_uris; /* aggregated sessions: {sid: {"U"uri|"T"prefix: connector}} (mcp_agg.c) */
  size_t nm;
  json_t *asked;    /* aggregated sessions: {sid: {"!o": owner, "connector\nid": true}} (mcp_agg.c) */
  bool closing;
};

enum { PX_POST, PX_GET, PX_DELETE };

typedef struct px {
  struct px *next, *prev;
  gw_proxy *p;
  gw_loop *lp;
  gw_req *req;           /* NULL once the client side is finished */
  gw_out_req *out;       /* NULL once the upstream side is done */
  int refs;
  int kind;
  char tenant[64], connector[40], user[40];
  char tokid[ST_TOKEN_ID_BUFSZ]; /* the employee token it acts with: its revocation ends it */
  char sid[96];          /* the gateway's session id for this exchange */
  gw_session sess;
  bool initialize, started, paused, listed;
  bool revoked;          /* ended by a revocation: nothing more is forwarded */
  bool lost;             /* its session is gone (evicted, expired): ended by the next sweep */
  json_t *ids;           /* ids of the requests in the POSTed message */
  int status;
  char up_sid[256];
  char up_ct[128];
  gw_buf body;           /* buffered JSON / initialize reply */
  gw_buf ev;             /* SSE bytes not yet forming a complete event */
  size_t ev_scanned;     /* bytes of ev already searched for an event end */
  uint64_t start_ns;
  cmetrics *m;
  json_t *list_ids;      /* ids of tools/list requests: their results are filtered */
  /* aggregated endpoint (gateway/mcp/mcp_agg.c) */
  bool agg;              /* /t/{tenant}/mcp: connector is the current upstream */
  char *fwd;             /* rewritten body forwarded upstream (owned) */
  size_t fwd_len;
  void (*cont)(struct px *x, int err); /* next step after a buffered upstream call */
  void (*after)(struct px *x, int err); /* what runs once the upstream session is open */
  json_t *agg_state;     /* per-flow state (tools/list paging, …) */
  gw_out_req *aux;       /* fire-and-forget upstream calls have their own refs */
  struct px *parent;     /* aggregated GET: the client's stream this upstream feeds (a ref) */
  bool fresh_session;    /* aggregated: open a new upstream session (the stored one is stale) */
  bool retried;          /* aggregated: already retried once with a fresh session */
  bool stale;            /* aggregated: the upstream said 404 to our session id */
  bool probe;            /* no client, but the upstream's answer is wanted */
  struct px *bparent;    /* aggregated batch (2025-03-26): the exchange collecting replies (a ref) */
  int bindex;            /* this element's slot in the batch reply */
  int bpending;          /* batch parent: elements still to answer */
  size_t bbytes;         /* batch parent: bytes of the replies collected so far */
} px;


#define GW_RPC_BLOCKED (-32003)
#define GW_RPC_APPROVAL (-32005)

typedef struct gw_mcp_ctx {
  char tenant[64], connector[40], user[40];
  char tokid[ST_TOKEN_ID_BUFSZ];
  const char *sid; /* the Mcp-Session-Id header, or NULL */
  gw_session sess;
  bool sess_ok;    /* the session exists and is this caller's, on this endpoint */
} gw_mcp_ctx;
int gw__mcp_begin(gw_req *req, bool agg, gw_mcp_ctx *c);
/* The handlers' entry: the context preauth already established for a
 * request with a body, or gw__mcp_begin now. */
int gw__mcp_ctx_of(gw_req *req, bool agg, gw_mcp_ctx *c);
int gw__mcp_session_checks(gw_req *req, const gw_mcp_ctx *c);
json_t *gw__mcp_parse_post(gw_req *req);
void gw__mcp_delete_session(px *x);

px *gw__px_new(gw_req *req, int kind, const gw_mcp_ctx *c);
void gw__px_unref(px *x);
/* Calls fn(x, arg) on every exchange listed when the call starts, holding
 * a reference on each until the walk is over: fn may reply, end, free or
 * create exchanges (created ones are appended after the walk's last and
 * not visited). The one way to walk the list when fn can trigger
 * callbacks. */
void gw__px_foreach(gw_proxy *p, void (*fn)(px *x, void *arg), void *arg);
/* Fills o's identity (user, token id) from x so gw_upstream_start re-checks
 * it (token, user, tenant, and that policy shows the connector) right
 * before the transfer starts. */
void gw__px_upstream_identity(const px *x, gw_upstream_opts *o);
/* A failed upstream start: answers the client (revoked, hidden, or
 * unreachable) unless it is gone. */
void gw__px_start_failed(px *x, int rc);
px *gw__px_child(px *parent, const char *connector);
/* An exchange with neither client nor parent (capability probes). */
px *gw__px_bare(gw_loop *lp, const char *tenant, const char *connector);
void gw__px_client_done(px *x);
void gw__px_reply_json(px *x, int status, json_t *j);
void gw__px_reply_raw(px *x, int status, const char *ct, const char *body, size_t n);
void gw__px_rpc_error(px *x, int http_status, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void gw__mcp_refuse(gw_req *req, int status, int code, const char *msg);
void gw__mcp_unauthorized(gw_req *req, const char *msg);
/* Back-pressure of a client SSE stream fed by x (client: the stream's
 * request): OK, FULL (pause the feeding transfer; on_drain resumes it), or
 * OVER (past stream_buffer_max: the stream was ended, logged and counted;
 * abort the feeding transfer). */
enum { GW_STREAM_OK, GW_STREAM_FULL, GW_STREAM_OVER };
/* A batch element receiving n more reply bytes: counts them against the
 * batch's budget (mcp_max_body for all elements together); false once it
 * is spent (abort the transfer). Always true outside batches. */
bool gw__batch_take(px *x, size_t n);
int gw__stream_pressure(px *x, gw_req *client);
/* Relays the upstream's answer to the client (the single-connector path). */
int gw__px_start_upstream(px *x, const char *method, const void *body, size_t len, const char *accept);
const pol_user *gw__policy_for(gw_loop *lp, const char *tenant, const char *user);
cmetrics *gw__px_metrics_for(gw_proxy *p, const char *tenant, const char *connector);
/* mcp_agg.c: rewrites server→client request ids in an upstream message
 * relayed on an aggregated exchange; true when changed. */
bool gw__agg_rewrite(px *x, json_t *msg);
/* mcp_agg.c: the gateway event id for an upstream event id of x's
 * connector (malloc'd; NULL on failure). */
char *gw__agg_event_id(px *x, const char *upstream_id);
/* mcp_agg.c: drops the in-memory state of a client session (resource
 * map, outstanding server→client requests). */
void gw__agg_forget_session(gw_proxy *p, const char *sid);
/* ... of every session of a user (user NULL: of the tenant; tenant NULL:
 * everything, at loop stop). */
void gw__agg_forget_owner(gw_proxy *p, const char *tenant, const char *user);
/* mcp_agg.c: drops the in-memory state of sessions no longer stored (or
 * expired): evicted by sessions_per_user_max, purged. Inside a read txn;
 * touches memory only. */
void gw__agg_sweep(gw_proxy *p, st_txn *txn, int64_t now_ms);
/* mcp_agg.c: DELETE each upstream session of {connector: upstream id}. */
void gw__agg_end_upstreams(px *x, json_t *ups);
/* Calls fn for every complete SSE event in x->ev (ended by a blank line,
 * "\n\n" or "\r\n\r\n") and keeps the incomplete rest; the search resumes
 * where the last call stopped, so an event arriving in many chunks costs
 * O(its size). Stops at (and returns) fn's first non-zero return. */
int gw__sse_each(px *x, int (*fn)(px *x, const char *ev, size_t n));
/* Splits one SSE event: data lines joined into data; other lines into
 * head (may be NULL); the id: line's value into id (may be NULL). */
void gw__sse_split(const char *ev, size_t n, gw_buf *data, gw_buf *head, char *id, size_t idcap);
/* The JSON-RPC message with `id` in a buffered reply (JSON or SSE). */
json_t *gw__find_reply(const char *body, size_t n, const char *ct, const json_t *id);

#endif
