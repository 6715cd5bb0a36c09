/* gateway/http/http.h — HTTP/1.1 server connections and the request/response API
 * that every route handler uses.
 *
 * The HTTP layer knows the process only through a host (gw_http_host,
 * filled in by gateway/core/server.c, or by a unit test): its limits, which
 * peers are trusted proxies, request ids, the current TLS context, and
 * notifications when a connection closes or a request ends (metrics, the
 * drain). Per-loop state (connections, counts, the read buffer) lives in a
 * gw_http that the loop owner embeds; everything in it runs on that loop's
 * thread only.
 *
 * A connection (gw_conn, private to http.c) parses with llhttp in strict
 * mode, one request at a time: after a request's message is complete the
 * parser pauses until the response has been queued, so pipelined requests
 * are answered in order, and not started while more than
 * GW_WRITE_HIGH_WATER bytes of responses wait for the client. Limits
 * (header bytes 431, URI 414, body 413, header/body timeouts 408, idle
 * keep-alive) come from the host's limits; routes may raise the body cap.
 *
 * Request lifetime: the connection allocates a gw_req when a message begins
 * and hands it to the route handler once the body is complete. The handler
 * either responds at once or later (async: writer jobs, upstream calls). If
 * the client goes away first, the request is detached (gw_req_alive() turns
 * false, req->on_abort is called) but stays valid until the handler
 * responds or calls gw_req_drop(): the handler always finishes its request.
 * All memory hanging off a request (gw_req_alloc, gw_req_strdup) is freed
 * with it. */
#ifndef MCPGATE_GATEWAY_HTTP_H
#define MCPGATE_GATEWAY_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "gateway/base/buf.h"

struct json_t;
typedef struct gw_loop gw_loop; /* the host's per-loop context, opaque here */
typedef struct gw_conn gw_conn;
typedef struct gw_req gw_req;
typedef struct gw_route gw_route;
typedef struct gw_router gw_router;
typedef struct gw_tls_ctx gw_tls_ctx;
typedef struct gw_tls_conn gw_tls_conn;

/* Listener kinds: plain, TLS, and the operator's private listener
 * (admin_listen), which private routes (router.h) are limited to. */
enum { GW_LISTENER_HTTP = 0, GW_LISTENER_HTTPS = 1, GW_LISTENER_ADMIN = 2 };

#define GW_MAX_HEADERS 100

typedef struct gw_header {
  char *name; /* as received; compare with strcasecmp */
  char *value;
  size_t nlen; /* strlen(name) (request headers: lookups compare it first) */
} gw_header;

struct gw_req {
  gw_loop *lp;          /* the host's loop this request runs on (gw_http.lp) */
  gw_conn *conn;        /* NULL once detached (client gone) */
  const char *method;   /* "GET", ... */
  int method_id;        /* llhttp_method_t */
  char *target;         /* raw request target */
  char *path;           /* target up to '?', not decoded */
  char *query;          /* after '?', or NULL; never logged */
  gw_header headers[GW_MAX_HEADERS];
  int nheaders;
  char *body;           /* NUL-terminated for convenience; body_len bytes */
  size_t body_len;
  size_t body_tree_cost; /* gw_json_tree_cost of the body once a handler estimated it (0 before): the
                            body's parses need not scan it again (gateway/mcp: gw__mcp_body_json) */
  int http_minor;       /* 0 or 1 (major is always 1) */
  bool keep_alive;      /* client allows reuse */
  const gw_route *route;
  char id[17];          /* request id, hex */
  char client[64];      /* client address (X-Forwarded-For when trusted) */
  bool forwarded_https; /* X-Forwarded-Proto: https from a trusted proxy */
  bool tls;             /* arrived over the TLS listener */
  int listener_kind;    /* GW_LISTENER_* */
  char tenant[64];      /* set by handlers for logs, "" when none */
  char tenant_uid[17];  /* the incarnation uid `tenant` had when the request began (the admin API sets it:
                           its writes may outlive the tenant), so the audit log chains the request there and
                           never into a tenant made again with the same id; "" when none: read at the end */
  char actor[48];       /* who authenticated it, set by handlers for the audit log ("operator",
                           "admin-token:<id>", "scim-token:<id>", "user:<id>"), "" when none */
  char audit_note[96];  /* for the audit log: why it was refused (a sign-in's failure), or what was done
                           instead (a SCIM deactivation not written: the user cut in memory); "" when none */
  char *audit_detail;   /* what changed, for the audit log: one JSON object (before → after), in the
                           request's arena (gw_req_strdup), or NULL; never a secret */
  uint64_t start_ns;
  /* Called (once) when the client goes away before the response ended. */
  void (*on_abort)(gw_req *req);
  /* Back-pressure for streams: called after writes complete once fewer
   * than GW_WRITE_LOW_WATER bytes wait for the client. */
  void (*on_drain)(gw_req *req);
  void *handler_data;
  void *limits_slot;    /* a concurrency slot the request holds (gateway/core/limits.c), released when it ends */
  int limits_more;      /* units of that slot it holds beyond its own (an aggregated stream's upstream feeds) */
  /* private to http.c */
  struct gw__req_priv *priv;
};

/* Header lookup (case-insensitive). Returns the first value or NULL.
 * gw_req_header_n: name is n bytes; the lengths are compared first (most
 * lookups ask for a name the request does not have, or has once among
 * ten: one compare each instead of a strcasecmp each). */
const char *gw_req_header_n(const gw_req *req, const char *name, size_t n);
static inline const char *gw_req_header(const gw_req *req, const char *name) {
  return gw_req_header_n(req, name, __builtin_strlen(name)); /* a literal's length is a constant */
}
/* Is header name `name` `want` (case-insensitive)? (The first letter is
 * compared before strcasecmp: most names differ there, and the hot
 * paths ask for several.) */
bool gw_header_is(const char *name, const char *want);
/* Per-request allocation, freed with the request. */
void *gw_req_alloc(gw_req *req, size_t n);
char *gw_req_strdup(gw_req *req, const char *s);
/* True while the client connection is still attached. */
bool gw_req_alive(const gw_req *req);

/* Adds a response header (copied). Call before responding. */
void gw_resp_header(gw_req *req, const char *name, const char *value);
/* Ends the request with a complete response. `body` is copied. After this
 * call `req` is gone. */
void gw_respond(gw_req *req, int status, const char *content_type, const void *body, size_t len);
/* Steals the reference to `j`. */
void gw_respond_json(gw_req *req, int status, struct json_t *j);
/* `{"error":code,"message":msg}` with the given status. */
void gw_respond_error(gw_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ends a request without a response (client already gone, or handler gave
 * up on a detached request). On a live connection it sends 500 first. */
void gw_req_drop(gw_req *req);
/* Like gw_req_drop, but the connection is cut at once and what is queued
 * for it is discarded (a client that stopped reading must not keep it). */
void gw_req_abort(gw_req *req);

/* Streaming responses (SSE later): start, write chunks, end. Chunked
 * encoding on HTTP/1.1; on HTTP/1.0 the body is close-delimited. */
int gw_resp_start(gw_req *req, int status, const char *content_type);
int gw_resp_write(gw_req *req, const void *data, size_t len);
void gw_resp_end(gw_req *req);

const char *gw_status_text(int status);

/* ---------- the host and the per-loop HTTP state ---------- */

/* What the HTTP layer reads of the configuration. */
typedef struct gw_http_limits {
  int64_t max_connections;  /* over it: 503 and close (per loop unless the host admits) */
  int64_t max_header_bytes; /* 431 */
  int64_t max_uri_bytes;    /* 414 */
  int64_t max_body_bytes;   /* 413, unless the route sets max_body */
  int64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms; /* 408 / close */
  bool access_log;          /* one "access" log line per request */
  int64_t send_timeout_ms;  /* a response the client takes less than GW_SEND_MIN_PROGRESS of (or of all
                               that waits, if less) in this long is cut (0: never) */
} gw_http_limits;

/* Filled in by the owner of the loops; every callback runs on the loop's
 * thread with ctx as given. NULL callbacks are skipped (trusted: no peer is
 * trusted; request_id: ids from a counter; tls: no HTTPS listener). */
typedef struct gw_http_host {
  void *ctx;
  gw_http_limits limits;
  int loop; /* this loop's number in the access log ("loop"), or -1 (one loop: not logged) */
  /* True when ip (textual) is a trusted proxy (X-Forwarded-For/-Proto). */
  bool (*trusted)(void *ctx, const char *ip);
  /* Writes a request id: 16 hex chars + NUL. */
  void (*request_id)(void *ctx, char out[17]);
  /* A new HTTPS connection's TLS state, made from the current context
   * (which another thread may be replacing: the host makes it under its
   * lock; the connection owns the result). NULL: refuse the connection. */
  gw_tls_conn *(*tls_conn)(void *ctx);
  /* Counts a connection from peer (its address, textual) against caps
   * shared by every loop: GW_ADMIT_OK or GW_ADMIT_PEER (admitted; with
   * PEER it was counted against its address too, and on_conn_closed gets
   * peer back to release it), GW_ADMIT_FULL (over max_connections) or
   * GW_ADMIT_PEER_FULL (over the address's share): refused. NULL: the cap
   * is limits.max_connections on this loop alone. */
  int (*admit)(void *ctx, const char *peer);
  /* A connection was accepted (counted against max_connections), or refused
   * over the cap. */
  void (*on_conn_open)(void *ctx);
  void (*on_conn_rejected)(void *ctx);
  /* A connection's memory is gone (counted: it was counted as open; peer:
   * its address when admit counted it there, else NULL). The gw_http's
   * nconns is already updated: the drain finishes on 0. */
  void (*on_conn_closed)(void *ctx, bool counted, const char *peer);
  /* A request ended (response queued, or dropped): route class, status,
   * seconds since its first byte. req is valid during the call only. */
  void (*on_request_done)(void *ctx, const gw_req *req, int rclass, int status, double seconds);
} gw_http_host;

enum { GW_ADMIT_OK = 0, GW_ADMIT_PEER = 1, GW_ADMIT_FULL = -1, GW_ADMIT_PEER_FULL = -2 };

/* Per-loop HTTP state, embedded by the loop's owner (gateway/core's
 * gw_loop). Set the public fields, then gw_http_init. */
typedef struct gw_http {
  uv_loop_t *loop;
  gw_loop *lp;                /* copied into every gw_req */
  const gw_http_host *host;   /* borrowed; outlives every connection */
  const gw_router *router;    /* borrowed; read-only */
  /* private to http.c */
  void *conns;                /* intrusive list of gw_conn */
  int nconns;                 /* every connection, rejected ones included */
  int nactive;                /* connections counted against max_connections */
  bool draining;              /* gw_http_drain was called: no new requests */
  uint64_t refused_logged_at; /* loop ms of the last "refusing" line (one a second at most) */
  uint64_t refused_unlogged;  /* connections refused since that line */
  uint64_t next_id;           /* request ids when the host has none */
  char readbuf[65536];        /* shared read buffer: reads are synchronous */
  char headbuf[2048];         /* a response head being written (gw_respond: written before it returns) */
} gw_http;

void gw_http_init(gw_http *h, uv_loop_t *loop, gw_loop *lp, const gw_http_host *host, const gw_router *router);
/* Accepts one connection from listener (a uv_tcp_t in listen state, after
 * its connection callback fired) of kind GW_LISTENER_*. */
void gw_http_accept(gw_http *h, uv_stream_t *listener, int kind);
/* The same for a socket already connected (a test seam: tests/fuzz/fuzz_http.c
 * drives connections over one end of a socketpair, without a listener).
 * Returns 0 when the connection took fd (it closes fd with itself, also when
 * it refuses it over max_connections), or a negative errno when it could not
 * (fd is still the caller's). */
int gw_http_adopt(gw_http *h, uv_os_sock_t fd, int kind);
/* Shutdown: no new requests; idle connections close now, busy ones after
 * their response (Connection: close). */
void gw_http_drain(gw_http *h);
/* The connection of req now belongs to (tenant, user) — the last identity
 * authenticated on it — until another request names another. */
void gw_req_set_owner(gw_req *req, const char *tenant, const char *user);
/* A revocation of (tenant, user) — user NULL: of everyone in tenant —
 * closes their connections on this loop: idle ones now, busy ones after
 * the response they are writing (a cut stream ends that response first).
 * How many. Loop thread. */
int gw_http_close_owner(gw_http *h, const char *tenant, const char *user);
/* Cuts every connection (drain timeout, second signal). */
void gw_http_close_all(gw_http *h);
/* Connections open on this loop (rejected ones included). */
int gw_http_conns(const gw_http *h);

#define GW_WRITE_HIGH_WATER (1024 * 1024)
#define GW_WRITE_LOW_WATER (256 * 1024)
/* What a client must take of the bytes queued for it in each
 * send_timeout_ms (all of them when fewer are queued): 32 KiB a minute by
 * default, ~550 bytes a second, which no real reader misses. */
#define GW_SEND_MIN_PROGRESS (32 * 1024)
/* Bytes queued to the client and not yet written (0 when detached). */
size_t gw_req_write_queue(const gw_req *req);
/* What the bytes queued for req's client past the first GW_BUF_METER_FREE
 * are charged to from now on (gateway/base/buf.h; NULL: nothing): past
 * the meter's limit the connection is closed instead of queueing more.
 * Called before any of req's body is buffered (a preauth), its body counts
 * too: past the limit the request is 503 and the connection closed. The
 * meter must outlive the connection. Loop thread. */
void gw_req_meter(gw_req *req, gw_buf_meter *m);

#endif
