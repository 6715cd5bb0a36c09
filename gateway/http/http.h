/* gateway/http/http.h — HTTP/1.1 server connections and the request/response API
 * that every route handler uses.
 *
 * A connection (gw_conn, private to http.c) parses with llhttp in strict
 * mode, one request at a time: after a request's message is complete the
 * parser pauses until the response has been queued, so pipelined requests
 * are answered in order. Limits (header bytes 431, URI 414, body 413,
 * header/body timeouts 408, idle keep-alive) come from the config; routes
 * may raise the body cap.
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

struct json_t;
typedef struct gw_loop gw_loop;
typedef struct gw_conn gw_conn;
typedef struct gw_req gw_req;
typedef struct gw_route gw_route;

#define GW_MAX_HEADERS 100

typedef struct gw_header {
  char *name; /* as received; compare with strcasecmp */
  char *value;
} gw_header;

struct gw_req {
  gw_loop *lp;          /* the loop this request runs on */
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
  int http_minor;       /* 0 or 1 (major is always 1) */
  bool keep_alive;      /* client allows reuse */
  const gw_route *route;
  char id[17];          /* request id, hex */
  char client[64];      /* client address (X-Forwarded-For when trusted) */
  bool forwarded_https; /* X-Forwarded-Proto: https from a trusted proxy */
  bool tls;             /* arrived over the TLS listener */
  int listener_kind;    /* GW_LISTENER_* */
  char tenant[64];      /* set by handlers for logs, "" when none */
  uint64_t start_ns;
  /* Called (once) when the client goes away before the response ended. */
  void (*on_abort)(gw_req *req);
  /* Back-pressure for streams: called after writes complete once fewer
   * than GW_WRITE_LOW_WATER bytes wait for the client. */
  void (*on_drain)(gw_req *req);
  void *handler_data;
  /* private to http.c */
  struct gw__req_priv *priv;
};

/* Header lookup (case-insensitive). Returns the first value or NULL. */
const char *gw_req_header(const gw_req *req, const char *name);
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

#define GW_WRITE_HIGH_WATER (1024 * 1024)
#define GW_WRITE_LOW_WATER (256 * 1024)
/* Bytes queued to the client and not yet written (0 when detached). */
size_t gw_req_write_queue(const gw_req *req);

#endif
