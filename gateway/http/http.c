/* gateway/http/http.c — HTTP/1.1 server connections (see http.h for the API).
 *
 * One gw_conn per accepted socket (or one handed over by gw_http_adopt, the
 * test seam the fuzzer drives through a socketpair). State machine:
 *   IDLE      keep-alive, no byte of the next request yet (idle timer)
 *   HEADERS   request line/headers arriving (header timer from first byte)
 *   BODY      body arriving (body timer from end of headers)
 *   HANDLING  message complete, handler owns the request; parser paused
 *             (send timer while bytes queued for the client wait: a client
 *             that takes less than GW_SEND_MIN_PROGRESS of them — or of
 *             all, when fewer were queued — in a send_timeout_ms is cut,
 *             its handler hears on_abort)
 *   LINGER    final response sent and FIN queued; input discarded until the
 *             client closes or the linger timer fires (so unread request
 *             bytes never turn our close into an RST that eats the reply)
 * Closing is always asynchronous: conn_close() only marks and uv_close()s;
 * the struct is freed in the last close callback, never under a running
 * callback (STYLE: handles freed only in close callbacks).
 *
 * llhttp runs in strict mode (compiled with LLHTTP_STRICT_MODE: the
 * Makefile; no lenient flags set at runtime). We add what it leaves to
 * the server: Host required on HTTP/1.1, obs-fold and whitespace before a
 * header's colon refused, an HTTP/1.0 request with Transfer-Encoding
 * answered and then closed, a transfer coding other than chunked answered
 * 501 (llhttp decodes chunked only, and would pass the rest through as the
 * body), trailer fields dropped (never headers), size caps (a body no
 * handler reads — a 404, a 405, a route that takes none — counted and
 * thrown away, not held), and timeouts.
 * Pipelining: on_message_complete pauses the parser; unparsed bytes wait
 * in conn->in (capped; reading stops when full) until the
 * response has been queued, so responses leave in request order; and while
 * more than GW_WRITE_HIGH_WATER bytes wait for the client, the next request
 * (and reading) waits until it reads (write_wait).
 *
 * The process is reached only through the host (http.h): limits, trusted(),
 * request_id(), tls(), on_conn_*() and on_request_done(). Threading: one
 * gw_http per loop; every function here runs on that loop's thread. */
#include "gateway/http/http.h"

#include <errno.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <uv.h>

#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/base/pool.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/router.h"
#include "gateway/http/tls.h"

enum conn_state { CS_IDLE, CS_HEADERS, CS_BODY, CS_HANDLING, CS_LINGER };

#define LINGER_MS 2000
/* What a lingering connection discards at most before it stops reading (the
 * timer then closes it): a client refused before its body was read (preauth,
 * 413) must not make us read the body anyway, only throw it away. */
#define LINGER_DISCARD_MAX (64 * 1024)
#define IN_CAP (256 * 1024) /* unparsed pipelined bytes held while handling */
#define IN_KEEP (16 * 1024)  /* an empty input buffer larger than this is freed */
#define MAX_RESP_HEADERS 32

/* A request's memory (gw_req_alloc): bump allocation in chunks (1 KiB
 * first: a request held open for hours as a stream keeps its chunk, so it
 * stays small; then doubling), a chunk of its own for anything over
 * ARENA_BIG; all freed with the request. Header names and values, the handler's context
 * and strdup'ed strings land here: one malloc per request instead of one
 * per string. */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN /* every allocation its own block: ASan sees each one's bounds */
#define ARENA_CHUNK 0
#define ARENA_BIG 0
#else
#define ARENA_CHUNK 1024 /* the first chunk; each next one twice the last, up to 8 KiB */
#define ARENA_BIG 2048   /* the MCP handler's context (1.7 KiB) fits the second chunk */
#endif
typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  _Alignas(16) char mem[];
} arena_chunk;

typedef struct gw__req_priv {
  gw_http *h;
  arena_chunk *arena;
  gw_header resp[MAX_RESP_HEADERS];
  int nresp;
  gw_buf body;
  size_t header_bytes;
  int64_t body_limit;
  bool discard;       /* the body is read (within body_limit) and thrown away: no handler reads it */
  size_t discarded;   /* of which so far */
  size_t chunk_ext;   /* bytes of chunk extensions so far (on_chunk_ext) */
  int refs;           /* handler's + pending abort notification */
  bool complete;      /* message fully received */
  bool done;          /* response ended (or dropped) */
  bool settled;       /* the host's on_request_done ran (req_settle) */
  bool streaming;     /* gw_resp_start called */
  bool chunked;       /* streaming with chunked encoding */
  bool head;          /* HEAD: no body bytes */
  bool has_host;
  bool close;         /* this response ends the connection */
  bool cut;           /* a stream dropped before its end: no last chunk (the client sees it incomplete) */
  int status;
  size_t resp_bytes;
} gw__req_priv;

/* Per loop thread: the request, its private part and its first two arena
 * chunks, recycled (each is past malloc's per-thread cache). */
static _Thread_local gw_pool req_pool = GW_POOL(sizeof(gw_req), 256);
static _Thread_local gw_pool priv_pool = GW_POOL(sizeof(gw__req_priv), 256);
static _Thread_local gw_pool chunk_pool[2] = {GW_POOL(sizeof(arena_chunk) + ARENA_CHUNK, 256),
                                              GW_POOL(sizeof(arena_chunk) + 2 * ARENA_CHUNK, 256)};

static gw_pool *chunk_pool_for(size_t cap) {
  if (ARENA_CHUNK && cap == ARENA_CHUNK) return &chunk_pool[0];
  if (ARENA_CHUNK && cap == 2 * ARENA_CHUNK) return &chunk_pool[1];
  return NULL;
}

struct gw_conn {
  gw_buf_meter *wmeter;    /* what queued bytes are charged to (gw_req_meter), or NULL */
  size_t wq_bytes;         /* bytes in write requests not yet done */
  uv_tcp_t tcp;
  uv_timer_t timer;
  gw_http *h;
  int kind;
  llhttp_t parser;
  gw_tls_conn *tls;
  char *in;
  size_t in_len, in_cap; /* unparsed bytes; in_cap: what in holds */
  gw_req *req;          /* request being parsed or handled */
  gw_req *detached;     /* request detached at close, for on_abort */
  int state;
  int error_status;     /* set by callbacks before failing the parse */
  const char *error_msg;
  int open_handles;
  bool closing, reading, eof, close_after, in_parse, rejected, counted;
  bool peer_counted; /* admit counted it against its address (GW_ADMIT_PEER) */
  bool resume_parse;       /* the timer fires at 0 ms to parse pipelined bytes */
  bool send_armed;         /* the timer is the send timeout of bytes queued while handling (send_arm) */
  uint64_t send_queued;    /* bytes ever queued on the socket (sock_queue_owned) */
  uint64_t send_taken;     /* of which the socket had taken when the send timer was last armed */
  uint64_t send_need;      /* what the socket must take before the timer fires (send_arm) */
  bool write_wait;         /* the next request waits until the client reads (see conn_parse) */
  uint64_t deadline;       /* loop time the current state's timeout ends (arm) */
  uint64_t timer_due;      /* loop time the uv timer is set to fire, while active */
  bool tls_closed;
  size_t linger_read;      /* bytes discarded while lingering */
  const char *exec_start;  /* the buffer llhttp is executing, for obs-fold */
  char tail_nonws;         /* last non-SP/HT byte of the previous buffer */
  gw_conn *next, *prev;
  char peer[64];
  /* who last authenticated on it (gw_req_set_owner): a revocation of that
   * user closes the connection (gw_http_close_owner) */
  char owner_tenant[64], owner_user[40];
  /* the request line and header being parsed: scratch kept across the
   * connection's requests (one is parsed at a time), given back when a
   * request made one large */
  gw_buf url, field, value;
  /* A header's name or value that arrived in one piece is not copied into
   * field/value: it is a span of c->in, read by on_header_value_complete
   * in the same llhttp_execute. A second piece, or the end of the
   * execute (c->in moves after it), copies the span into the scratch
   * (span_flush). NULL: no span; the scratch holds what there is. */
  const char *fspan, *vspan;
  size_t fspan_n, vspan_n;
};

static llhttp_settings_t parser_settings;
static void conn_parse(gw_conn *c);
static void conn_close(gw_conn *c);
static void conn_linger(gw_conn *c);
static void conn_end_request(gw_conn *c, gw_req *req);
static void req_finish(gw_req *req);
static void send_error_and_close(gw_conn *c, int status, const char *msg);
static void read_start(gw_conn *c);
static void arm(gw_conn *c, int64_t ms);
static void send_arm(gw_conn *c);
static bool send_window(gw_conn *c);
/* The socket took the window's need since its baseline (q: still queued). */
static bool send_need_met(const gw_conn *c, size_t q) { return c->send_queued - q - c->send_taken >= c->send_need; }
static void resume_later(gw_conn *c);

/* ---------- list of connections per loop ---------- */

static void list_add(gw_http *h, gw_conn *c) {
  c->next = h->conns;
  c->prev = NULL;
  if (c->next) c->next->prev = c;
  h->conns = c;
  h->nconns++;
}
static void list_del(gw_http *h, gw_conn *c) {
  if (c->prev) c->prev->next = c->next;
  else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  h->nconns--;
}

static const gw_http_limits *limits(const gw_http *h) { return &h->host->limits; }

static void request_id(gw_http *h, char out[17]) {
  if (h->host->request_id) h->host->request_id(h->host->ctx, out);
  else gw_hex16((unsigned long long)++h->next_id, out);
}

/* ---------- request memory ---------- */

void *gw_req_alloc(gw_req *req, size_t n) {
  gw__req_priv *p = req->priv;
  size_t need = (n + 1 + 15) & ~(size_t)15; /* +1: room for a NUL, as before; 16-aligned */
  arena_chunk *a = p->arena;
  if (a && a->cap - a->used >= need) {
    void *m = a->mem + a->used;
    a->used += need;
    return m;
  }
  size_t grow = a ? (a->cap < 4096 ? a->cap * 2 : 8192) : ARENA_CHUNK;
  size_t cap = need > ARENA_BIG ? need : grow;
  while (cap < need) cap *= 2; /* a context larger than the first chunk: the next size up */
  gw_pool *pool = chunk_pool_for(cap);
  arena_chunk *b = pool ? gw_pool_get(pool) : malloc(sizeof *b + cap);
  if (!b) return NULL;
  b->cap = cap;
  b->used = need;
  if (need > ARENA_BIG && a) { /* a big one: keep carving the current chunk */
    b->next = a->next;
    a->next = b;
  } else {
    b->next = a;
    p->arena = b;
  }
  return b->mem;
}

char *gw_req_strdup(gw_req *req, const char *s) {
  size_t n = strlen(s);
  char *p = gw_req_alloc(req, n + 1);
  if (p) memcpy(p, s, n + 1);
  return p;
}

#define SCRATCH_KEEP 4096 /* a larger scratch buffer is freed, not kept */

static void scratch_reset(gw_buf *b, size_t max) {
  if (b->cap > SCRATCH_KEEP) gw_buf_free(b);
  gw_buf_reset(b);
  b->max = max;
}

/* A request from the pool, zeroed but for its header table: only the
 * first nheaders entries are ever read, each written first (on_header_
 * value_complete), and the table is 1,600 of its 2,080 bytes — zeroing it
 * too made every request's memset cross glibc's rep stosb threshold. */
static gw_req *req_get(void) {
  gw_req *r = gw_pool_get(&req_pool);
  if (r) {
    memset(r, 0, offsetof(gw_req, headers));
    memset((char *)r + offsetof(gw_req, nheaders), 0, sizeof *r - offsetof(gw_req, nheaders));
  }
  return r;
}

static gw_req *req_new(gw_conn *c) {
  gw_req *r = req_get();
  gw__req_priv *p = gw_pool_zget(&priv_pool);
  if (!r || !p) {
    gw_pool_put(&req_pool, r);
    gw_pool_put(&priv_pool, p);
    return NULL;
  }
  const gw_http_limits *cfg = limits(c->h);
  r->priv = p;
  p->h = c->h;
  r->lp = c->h->lp;
  r->conn = c;
  r->listener_kind = c->kind;
  r->tls = c->kind == GW_LISTENER_HTTPS;
  p->refs = 1;
  scratch_reset(&c->url, (size_t)cfg->max_uri_bytes);
  scratch_reset(&c->field, (size_t)cfg->max_header_bytes);
  scratch_reset(&c->value, (size_t)cfg->max_header_bytes);
  c->fspan = c->vspan = NULL;
  gw_buf_init(&p->body, (size_t)cfg->max_body_bytes);
  p->body_limit = cfg->max_body_bytes;
  r->start_ns = uv_hrtime();
  request_id(c->h, r->id);
  size_t pl = strnlen(c->peer, sizeof r->client - 1);
  memcpy(r->client, c->peer, pl);
  r->client[pl] = '\0';
  return r;
}

/* A request header's name is the literal want (case-insensitive; the
 * lengths first). */
#define REQ_HDR_IS(h, want) ((h)->nlen == sizeof want - 1 && strcasecmp((h)->name, want) == 0)

static void req_free(gw_req *r) {
  gw__req_priv *p = r->priv;
  /* the arena's chunks are reused: the credential copied into it is wiped */
  for (int i = 0; i < r->nheaders; i++)
    if (REQ_HDR_IS(&r->headers[i], "authorization"))
      OPENSSL_cleanse(r->headers[i].value, strlen(r->headers[i].value));
  for (arena_chunk *a = p->arena, *n; a; a = n) {
    n = a->next;
    gw_pool *pool = chunk_pool_for(a->cap);
    if (pool) gw_pool_put(pool, a);
    else free(a);
  }
  gw_buf_free(&p->body);
  gw_pool_put(&priv_pool, p);
  gw_pool_put(&req_pool, r);
}

static void req_unref(gw_req *r) {
  if (--r->priv->refs == 0) req_free(r);
}

bool gw_req_alive(const gw_req *req) { return req->conn != NULL; }

bool gw_header_is(const char *name, const char *want) {
  return (name[0] | 0x20) == (want[0] | 0x20) && strcasecmp(name, want) == 0;
}

const char *gw_req_header_n(const gw_req *req, const char *name, size_t n) {
  for (int i = 0; i < req->nheaders; i++)
    if (req->headers[i].nlen == n && strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}

/* ---------- timers ---------- */

static void on_timer(uv_timer_t *t) {
  gw_conn *c = t->data;
  if (c->resume_parse) {
    /* a later loop turn than the reply that ended the previous request */
    c->resume_parse = false;
    arm(c, limits(c->h)->idle_timeout_ms);
    conn_parse(c);
    return;
  }
  uint64_t now = uv_now(t->loop);
  if (now < c->deadline) { /* fired for an earlier deadline that arm() moved on */
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    return;
  }
  switch (c->state) {
  case CS_IDLE:
    /* a response still queued that the client is taking (send_window):
     * not idle — a new window, as a stream's send timeout would give */
    if (send_window(c)) arm(c, limits(c->h)->idle_timeout_ms);
    else conn_close(c);
    break;
  case CS_HEADERS:
  case CS_BODY:
    send_error_and_close(c, 408, c->state == CS_HEADERS ? "request headers not received in time"
                                                         : "request body not received in time");
    break;
  case CS_LINGER:
    /* the final response still queued before the FIN (uv_shutdown
     * pending): the same rule as idle */
    if (send_window(c)) arm(c, limits(c->h)->idle_timeout_ms);
    else conn_close(c);
    break;
  case CS_HANDLING:
    /* send_timeout_ms passed and the client took less of what is queued
     * for it than the window needs: a reader that stopped (a stalled
     * export, a dead SSE client) or trickles must not hold its request,
     * and what the request holds, for good. The handler hears on_abort. */
    if (c->send_armed) {
      size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
      if (q > 0 && !send_need_met(c, q)) conn_close(c);
      else send_arm(c); /* it took enough (a large write drains in many reads): again */
    }
    break;
  default: break;
  }
}

/* The window's baseline: what the socket took so far, and what it must
 * take of what is queued now (GW_SEND_MIN_PROGRESS, or all if less). */
static void send_baseline(gw_conn *c) {
  size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  c->send_taken = c->send_queued - q;
  c->send_need = q < GW_SEND_MIN_PROGRESS ? q : GW_SEND_MIN_PROGRESS;
}

/* After a response was queued (IDLE, LINGER), its bytes may still wait for
 * the client when the state's timer fires: one that took the window's need
 * since the baseline is reading, not idle (the steady reader of a large
 * response must not lose its tail; one that stopped is still cut). true:
 * a new window began (the caller re-arms). */
static bool send_window(gw_conn *c) {
  size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  if (q == 0 || !send_need_met(c, q)) return false;
  send_baseline(c);
  return true;
}

/* While a request is handled, bytes queued for the client start the send
 * timeout: a window of send_timeout_ms in which the socket must take
 * GW_SEND_MIN_PROGRESS bytes, or all that is queued now if less (a byte a
 * window would hold the request for good); once it has, the next window
 * begins. Nothing queued: nothing to time. */
static void send_arm(gw_conn *c) {
  int64_t ms = limits(c->h)->send_timeout_ms;
  if (ms <= 0 || c->state != CS_HANDLING || c->closing) return;
  size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  if (q == 0) {
    c->send_armed = false;
    return;
  }
  /* progress is what the socket took (queued minus still queued), not a
   * write request's completion: one large write drains in many reads */
  send_baseline(c);
  c->send_armed = true;
  arm(c, ms);
}

/* The timeout of the connection's state, ms from now. A keep-alive call
 * moves it three times (header, body, idle timeout): only a deadline
 * earlier than the timer's moves the timer; a later one is recorded, and
 * the timer, when it fires early, re-arms for what is left (on_timer). A
 * connection then costs about one timer-heap operation per header timeout
 * instead of three per request; every timeout still ends at its deadline. */
static void arm(gw_conn *c, int64_t ms) {
  if (c->closing) return;
  c->resume_parse = false;
  uint64_t now = uv_now(c->timer.loop);
  c->deadline = now + (uint64_t)ms;
  if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline) return;
  c->timer_due = c->deadline;
  uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---------- writing ---------- */

typedef struct write_req {
  uv_write_t w;
  gw_conn *c;
  char *buf;
  size_t len;            /* bytes queued by it */
  gw_buf_meter *meter;   /* what `charged` of them are charged to (gw_req_meter), or NULL */
  size_t charged;
} write_req;

static void on_write(uv_write_t *w, int status) {
  write_req *wr = (write_req *)w;
  gw_conn *c = wr->c;
  /* also when cancelled: the close callback that frees c runs after */
  c->wq_bytes -= wr->len;
  gw_buf_meter_uncharge(wr->meter, (long long)wr->charged);
  free(wr->buf);
  free(wr);
  if (status < 0) {
    if (status != UV_ECANCELED) conn_close(c);
    return;
  }
  if (c->send_armed) { /* the client took these bytes: a new window once this one's need is met */
    size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (q == 0 || send_need_met(c, q)) send_arm(c);
  }
  if (!c->closing && c->write_wait && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < GW_WRITE_LOW_WATER) {
    /* the client read its responses: the pipelined requests go on */
    c->write_wait = false;
    read_start(c);
    if (c->in_len) resume_later(c);
    return;
  }
  if (!c->closing && c->req && c->req->on_drain &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < GW_WRITE_LOW_WATER)
    c->req->on_drain(c->req);
}

void gw_req_meter(gw_req *req, gw_buf_meter *m) {
  if (req->conn) req->conn->wmeter = m;
  /* its body too, when none of it is buffered yet (a preauth's call) */
  if (!req->priv->body.cap) gw_buf_meter_attach(&req->priv->body, m);
}

size_t gw_req_write_queue(const gw_req *req) {
  if (!req->conn || req->conn->closing) return 0;
  return uv_stream_get_write_queue_size((uv_stream_t *)&req->conn->tcp);
}

/* Writes what the socket takes now, without a request (uv_try_write: no
 * write request, and none of the epoll_ctl libuv 1.44 issues after every
 * queued write); returns the bytes written, or a negative error. Only when
 * nothing is queued before it, so bytes never overtake each other. */
static ssize_t sock_try_write(gw_conn *c, const uv_buf_t *bufs, unsigned nbufs) {
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0) return 0;
  int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
  return n == UV_EAGAIN ? 0 : n;
}

/* Queues raw bytes (ciphertext on TLS) on the socket; takes ownership of
 * buf (len bytes), of which the first `off` are already written. */
static int sock_queue_owned(gw_conn *c, char *buf, size_t off, size_t len) {
  write_req *wr = malloc(sizeof *wr);
  if (!wr) {
    free(buf);
    return -ENOMEM;
  }
  wr->c = c;
  wr->buf = buf;
  /* what the queue holds past its first GW_BUF_METER_FREE bytes counts
   * against the request's meter (gw_req_meter): found by review, a client
   * that asks for large replies and never reads them moved the bytes the
   * budget of buffered replies counts into this queue, where nothing did.
   * Past the budget the client is cut: it is not reading, and the bytes
   * are not kept for it. */
  size_t n = len - off, line = c->wq_bytes > GW_BUF_METER_FREE ? c->wq_bytes : GW_BUF_METER_FREE;
  wr->len = n;
  wr->charged = c->wq_bytes + n > line ? c->wq_bytes + n - line : 0;
  wr->meter = wr->charged ? c->wmeter : NULL;
  if (!gw_buf_meter_charge(wr->meter, (long long)wr->charged)) {
    free(buf);
    free(wr);
    conn_close(c);
    return GW_EBUDGET;
  }
  c->wq_bytes += n;
  uv_buf_t b = uv_buf_init(buf + off, (unsigned)(len - off));
  int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    c->wq_bytes -= n;
    gw_buf_meter_uncharge(wr->meter, (long long)wr->charged);
    free(buf);
    free(wr);
    conn_close(c);
    return rc;
  }
  c->send_queued += len - off;
  if (!c->send_armed) send_arm(c);
  return 0;
}

static int sock_write_owned(gw_conn *c, char *buf, size_t len) {
  if (c->closing) {
    free(buf);
    return -1;
  }
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  ssize_t n = sock_try_write(c, &b, 1);
  if (n < 0) {
    free(buf);
    conn_close(c);
    return (int)n;
  }
  if ((size_t)n == len) {
    free(buf);
    return 0;
  }
  return sock_queue_owned(c, buf, (size_t)n, len);
}

static int tls_flush(gw_conn *c) {
  char *out;
  size_t n = gw_tls_take(c->tls, &out);
  return n ? sock_write_owned(c, out, n) : 0;
}

/* a then b (b may be NULL): one writev when the socket takes them now,
 * else what it did not take is copied and queued. */
static int conn_write2(gw_conn *c, const void *a, size_t an, const void *b, size_t bn) {
  if (c->closing) return -1;
  size_t len = an + bn;
  if (!len) return 0;
  if (c->tls) {
    if ((an && gw_tls_encrypt(c->tls, a, an) != 0) || (bn && gw_tls_encrypt(c->tls, b, bn) != 0)) {
      conn_close(c);
      return -1;
    }
    return tls_flush(c);
  }
  /* what the socket takes now needs no copy */
  uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)an), uv_buf_init((char *)b, (unsigned)bn)};
  ssize_t n = an ? sock_try_write(c, bufs, bn ? 2 : 1) : sock_try_write(c, bufs + 1, 1);
  if (n < 0) {
    conn_close(c);
    return (int)n;
  }
  size_t off = (size_t)n;
  if (off == len) return 0;
  char *copy = malloc(len - off);
  if (!copy) return -ENOMEM;
  if (off < an) {
    memcpy(copy, (const char *)a + off, an - off);
    if (bn) memcpy(copy + (an - off), b, bn);
  } else {
    memcpy(copy, (const char *)b + (off - an), len - off);
  }
  return sock_queue_owned(c, copy, 0, len - off);
}

static int conn_write(gw_conn *c, const void *data, size_t len) { return conn_write2(c, data, len, NULL, 0); }

/* ---------- closing ---------- */

static void on_handle_closed(uv_handle_t *h) {
  gw_conn *c = h->data;
  if (--c->open_handles > 0) return;
  gw_req *d = c->detached;
  if (d) {
    /* Deliver on_abort outside any handler stack: close callbacks run in
     * their own loop phase. */
    if (!d->priv->done && d->on_abort) d->on_abort(d);
    req_unref(d);
  }
  gw_tls_conn_free(c->tls);
  free(c->in);
  gw_buf_free(&c->url);
  gw_buf_free(&c->field);
  gw_buf_free(&c->value);
  gw_http *ht = c->h;
  bool counted = c->counted;
  char peer[sizeof c->peer];
  if (c->peer_counted) memcpy(peer, c->peer, sizeof peer);
  bool peer_counted = c->peer_counted;
  free(c);
  if (counted) ht->nactive--;
  if (ht->host->on_conn_closed) ht->host->on_conn_closed(ht->host->ctx, counted, peer_counted ? peer : NULL);
}

static void conn_close(gw_conn *c) {
  if (c->closing) return;
  c->closing = true;
  list_del(c->h, c);
  if (c->req) {
    gw_req *r = c->req;
    c->req = NULL;
    if (c->state == CS_HANDLING && !r->priv->done) {
      /* The handler keeps its reference; one more for on_abort delivery. */
      r->conn = NULL;
      r->priv->refs++;
      c->detached = r;
    } else if (!r->priv->done && r->limits_slot) {
      /* begun for the host (its preauth took a concurrency slot) and cut
       * before its body was in: it ends as nginx's "client closed
       * request", through req_finish, so the host's request-done gives
       * the slot back (else one slot per dropped upload, for good) */
      r->conn = NULL;
      r->priv->status = 499;
      req_finish(r);
    } else {
      req_free(r);
    }
  }
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *s, int status) {
  gw_conn *c = s->data;
  free(s);
  if (c->closing) return;
  if (status < 0 || c->eof) {
    conn_close(c);
    return;
  }
  arm(c, LINGER_MS);
}

/* The final response is queued: send FIN after it and discard input until
 * the client closes.
 *
 * When every byte already left (the usual case: replies go out with
 * uv_try_write), the FIN is sent here, before this returns: uv_shutdown
 * only queues it for the loop's next turn, and by then a revocation's
 * fan-out may have released the triggering reply (a SCIM 200, from this
 * loop or another) — the client would get that reply while the stream it
 * ended still looked open. libuv is not told (it would shut down again);
 * nothing writes on a lingering connection. */
static void conn_linger(gw_conn *c) {
  if (c->closing || c->state == CS_LINGER) return;
  c->state = CS_LINGER;
  if (c->tls) {
    gw_tls_close_notify(c->tls);
    tls_flush(c);
  }
  uv_os_fd_t fd;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0 && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
    if (shutdown(fd, SHUT_WR) != 0 || c->eof) {
      conn_close(c);
      return;
    }
    arm(c, LINGER_MS);
    read_start(c);
    return;
  }
  uv_shutdown_t *s = malloc(sizeof *s);
  if (!s) {
    conn_close(c);
    return;
  }
  s->data = c;
  if (uv_shutdown(s, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    free(s);
    conn_close(c);
    return;
  }
  /* queued bytes get idle_timeout_ms windows to reach the client, each
   * needing send_window's progress; a client that stopped reading is then
   * cut (on_shutdown re-arms for the FIN) */
  send_baseline(c);
  arm(c, limits(c->h)->idle_timeout_ms);
  read_start(c); /* keep draining input so the close is a FIN, not an RST */
}

/* ---------- responses ---------- */

const char *gw_status_text(int s) {
  switch (s) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  default: return "Unknown";
  }
}

void gw_resp_header(gw_req *req, const char *name, const char *value) {
  gw__req_priv *p = req->priv;
  if (p->nresp >= MAX_RESP_HEADERS) return;
  /* Refuse CR/LF in header values: response splitting. */
  if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return;
  /* in the request's arena: freed with it */
  p->resp[p->nresp].name = gw_req_strdup(req, name);
  p->resp[p->nresp].value = gw_req_strdup(req, value);
  if (!p->resp[p->nresp].name || !p->resp[p->nresp].value) return;
  p->resp[p->nresp].nlen = strlen(name);
  p->nresp++;
}

/* Decides whether the connection survives this response. */
static bool resp_closes(gw_req *req) {
  gw_conn *c = req->conn;
  return !req->keep_alive || c->close_after || c->h->draining || c->eof || req->priv->close;
}

/* literals with their length known at compile time: every response */
#define APPEND_LIT(b, s) gw_buf_append(b, s, sizeof s - 1)

/* 0, or the first append's error (the head is then incomplete). */
static int head_block(gw_req *req, gw_buf *b, int status, const char *ctype, long long clen) {
  gw__req_priv *p = req->priv;
  bool close = resp_closes(req);
  p->close = close;
  int rc = 0;
#define PUT(x) (rc = rc ? rc : (x))
  /* no stdio: this runs for every response */
  PUT(APPEND_LIT(b, "HTTP/1.1 "));
  PUT(gw_buf_append_int(b, status));
  PUT(APPEND_LIT(b, " "));
  PUT(gw_buf_appends(b, gw_status_text(status)));
  PUT(APPEND_LIT(b, "\r\n"));
  if (ctype) {
    PUT(APPEND_LIT(b, "Content-Type: "));
    PUT(gw_buf_appends(b, ctype));
    PUT(APPEND_LIT(b, "\r\n"));
  }
  /* a 204 carries none (RFC 9110 §8.6), and a 304's would have to be the
   * full response's: a cache would record 0 (found by review); neither
   * has a body, so the framing needs none */
  if (clen >= 0 && status != 204 && status != 304) {
    PUT(APPEND_LIT(b, "Content-Length: "));
    PUT(gw_buf_append_int(b, clen));
    PUT(APPEND_LIT(b, "\r\n"));
  } else if (p->chunked) {
    PUT(APPEND_LIT(b, "Transfer-Encoding: chunked\r\n"));
  }
  if (close) PUT(APPEND_LIT(b, "Connection: close\r\n"));
  else if (req->http_minor == 0) PUT(APPEND_LIT(b, "Connection: keep-alive\r\n"));
  PUT(APPEND_LIT(b, "X-Request-Id: "));
  PUT(gw_buf_appends(b, req->id));
  PUT(APPEND_LIT(b, "\r\n"));
  for (int i = 0; i < p->nresp; i++) PUT(gw_buf_appendv(b, p->resp[i].name, ": ", p->resp[i].value, "\r\n", NULL));
  PUT(APPEND_LIT(b, "\r\n"));
#undef PUT
  return rc;
}

static void access_log(gw_req *req) {
  if (!limits(req->priv->h)->access_log || gw_log_get_level() > GW_LOG_INFO) return;
  double ms = (double)(uv_hrtime() - req->start_ns) / 1e6;
  json_t *f = json_object();
  json_object_set_new(f, "method", json_string(req->method ? req->method : "-"));
  /* The path only: query strings may carry secrets (codes, tokens). */
  json_t *path = req->path ? json_string(req->path) : NULL;
  json_object_set_new(f, "path", path ? path : json_string("-"));
  json_object_set_new(f, "route", json_string(req->route ? gw_route_class_name(req->route->rclass)
                                                          : "other"));
  json_object_set_new(f, "status", json_integer(req->priv->status));
  json_object_set_new(f, "duration_ms", json_real((double)((long long)(ms * 1000)) / 1000.0));
  json_object_set_new(f, "bytes", json_integer((json_int_t)req->priv->resp_bytes));
  json_object_set_new(f, "client", json_string(req->client));
  if (req->priv->h->host->loop >= 0) json_object_set_new(f, "loop", json_integer(req->priv->h->host->loop));
  gw_log_ctx ctx = {req->tenant[0] ? req->tenant : NULL, req->id};
  gw_log_fields(GW_LOG_INFO, "access", &ctx, f, "access");
  json_decref(f);
}

/* The host hears the request ended (its slots go back, its metrics and
 * audit are counted) before the response's last bytes are written: a
 * client that reads them and sends its next request at once — on another
 * connection, served by another loop — must find the slots this one held
 * free (a policy PUT's tenant slot: the next PUT was 429
 * policy_change_in_progress under ASan with two loops). Once. */
static void req_settle(gw_req *req) {
  gw__req_priv *p = req->priv;
  if (p->settled) return;
  p->settled = true;
  double secs = (double)(uv_hrtime() - req->start_ns) / 1e9;
  const gw_http_host *host = p->h->host;
  if (host->on_request_done)
    host->on_request_done(host->ctx, req, req->route ? req->route->rclass : GW_RC_OTHER, p->status, secs);
}

static void req_finish(gw_req *req) {
  gw__req_priv *p = req->priv;
  p->done = true;
  req_settle(req);
  access_log(req);
  gw_conn *c = req->conn;
  if (c) {
    c->req = NULL;
    conn_end_request(c, req);
  }
  req_unref(req);
}

void gw_respond(gw_req *req, int status, const char *ctype, const void *body, size_t len) {
  gw__req_priv *p = req->priv;
  if (p->done || p->streaming) return;
  p->status = status;
  p->resp_bytes = len;
  if (req->conn) req_settle(req); /* before the bytes leave (req_settle) */
  if (req->conn) {
    /* the head in the loop's scratch (nothing runs between its making and
     * its write) and the body where it is: one writev, no copy of either
     * unless the socket leaves some queued */
    gw_http *h = req->conn->h;
    gw_buf hb = {h->headbuf, 0, sizeof h->headbuf, sizeof h->headbuf - 1, NULL};
    const void *bb = !p->head && len ? body : NULL;
    size_t bl = bb ? len : 0;
    bool big = head_block(req, &hb, status, ctype, (long long)len) != 0; /* past the scratch: many headers */
    if (big) {
      gw_buf_init(&hb, SIZE_MAX / 2);
      head_block(req, &hb, status, ctype, (long long)len);
    }
    conn_write2(req->conn, hb.data, hb.len, bb, bl);
    if (big) gw_buf_free(&hb);
  }
  req_finish(req);
}

void gw_respond_json(gw_req *req, int status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(j);
  if (!s) {
    static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
    gw_respond(req, 500, "application/json", oom, sizeof oom - 1);
    return;
  }
  gw_resp_header(req, "Cache-Control", "no-store");
  gw_respond(req, status, "application/json", s, strlen(s));
  free(s);
}

static bool resp_has(const gw__req_priv *p, const char *name) {
  for (int i = 0; i < p->nresp; i++)
    if (!strcasecmp(p->resp[i].name, name)) return true;
  return false;
}

/* The gateway's own error bodies are JSON that nothing needs to run, frame
 * or sniff: whatever the route (a page's path, an unknown one), they say
 * so, unless the handler chose its own headers (found by review: a page
 * path's 404/405/308 carried none of the pages' headers). */
static void error_headers(gw_req *req) {
  if (!resp_has(req->priv, "X-Content-Type-Options")) gw_resp_header(req, "X-Content-Type-Options", "nosniff");
  if (!resp_has(req->priv, "Content-Security-Policy"))
    gw_resp_header(req, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
}

void gw_respond_error(gw_req *req, int status, const char *code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *j = json_object();
  json_object_set_new(j, "error", json_string(code));
  json_t *m = json_string(msg);
  json_object_set_new(j, "message", m ? m : json_string("(invalid message)"));
  error_headers(req);
  gw_respond_json(req, status, j);
}

void gw_req_drop(gw_req *req) {
  if (req->priv->done) return;
  if (req->priv->streaming) {
    /* Cut the stream: the client sees an incomplete chunked body. */
    if (req->conn) req->priv->close = req->priv->cut = true;
    gw_resp_end(req);
    return;
  }
  if (req->conn) {
    gw_respond_error(req, 500, "internal", "the request could not be completed");
    return;
  }
  req->priv->status = 499; /* nginx's "client closed request" */
  req_finish(req);
}

void gw_req_abort(gw_req *req) {
  if (req->priv->done) return;
  if (req->conn) conn_close(req->conn); /* queued writes are cancelled and freed */
  gw_req_drop(req);
}

int gw_resp_start(gw_req *req, int status, const char *ctype) {
  gw__req_priv *p = req->priv;
  if (p->done || p->streaming) return -EINVAL;
  p->streaming = true;
  p->status = status;
  if (!req->conn) return -EPIPE;
  p->chunked = req->http_minor == 1;
  if (!p->chunked) p->close = true;
  gw_buf b;
  gw_buf_init(&b, SIZE_MAX / 2);
  head_block(req, &b, status, ctype, -1);
  int rc = conn_write(req->conn, b.data, b.len);
  gw_buf_free(&b);
  return rc;
}

int gw_resp_write(gw_req *req, const void *data, size_t len) {
  gw__req_priv *p = req->priv;
  if (!p->streaming || p->done) return -EINVAL;
  if (!req->conn) return -EPIPE;
  if (!len || p->head) return 0;
  p->resp_bytes += len;
  if (!p->chunked) return conn_write(req->conn, data, len);
  char hdr[32];
  int hn = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
  gw_buf b;
  gw_buf_init(&b, SIZE_MAX / 2);
  gw_buf_append(&b, hdr, (size_t)hn);
  gw_buf_append(&b, data, len);
  gw_buf_append(&b, "\r\n", 2);
  int rc = conn_write(req->conn, b.data, b.len);
  gw_buf_free(&b);
  return rc;
}

void gw_resp_end(gw_req *req) {
  gw__req_priv *p = req->priv;
  if (!p->streaming || p->done) return;
  /* complete, also when the connection closes after it (Connection: close) */
  req_settle(req);
  if (req->conn && p->chunked && !p->cut && !p->head) conn_write(req->conn, "0\r\n\r\n", 5);
  req_finish(req);
}

/* ---------- the connection between requests ---------- */

/* Called once the response of `req` is queued (req still valid). */
static void conn_end_request(gw_conn *c, gw_req *req) {
  /* a response whose head went out before the drain began (a stream)
   * said keep-alive; once it is complete the connection still closes */
  bool close = req->priv->close || !req->priv->complete || c->close_after || c->h->draining;
  c->state = CS_IDLE;
  c->send_armed = false; /* the idle, linger or next request's timeout takes the timer */
  send_baseline(c);      /* ... and spares a client still taking this response (send_window) */
  if (close) {
    conn_linger(c);
    return;
  }
  llhttp_reset(&c->parser);
  arm(c, limits(c->h)->idle_timeout_ms);
  if (!c->in_parse) {
    read_start(c);
    /* Pipelined bytes wait for a later loop turn: this runs inside the
     * reply path of the previous request (possibly from a revocation walk
     * or an upstream callback), which must not see a new request start
     * under it (h2o and nginx resume parsing the same way). */
    if (c->in_len && !c->closing) resume_later(c);
  }
}

static void resume_later(gw_conn *c) {
  c->timer_due = uv_now(c->timer.loop);
  uv_timer_start(&c->timer, on_timer, 0, 0);
  c->resume_parse = true;
}

static void send_error_and_close(gw_conn *c, int status, const char *msg) {
  if (c->closing || c->state == CS_LINGER) return;
  gw_req *r = c->req;
  if (!r) {
    r = req_new(c);
    if (!r) {
      conn_close(c);
      return;
    }
    c->req = r;
  }
  if (c->state == CS_HANDLING) {
    /* a handler owns the request: only cut the connection */
    conn_close(c);
    return;
  }
  c->state = CS_HANDLING; /* so req_finish → conn_end_request takes over */
  r->priv->close = true;
  r->priv->complete = false;
  if (!r->http_minor) r->http_minor = 1;
  if (r->route && r->route->early_error) {
    r->route->early_error(r, status, msg);
    return;
  }
  gw_respond_error(r, status, status == 408   ? "request_timeout"
                              : status == 413 ? "body_too_large"
                              : status == 414 ? "uri_too_long"
                              : status == 431 ? "headers_too_large"
                              : status == 503 ? "unavailable"
                              : status == 417 ? "expectation_failed"
                              : status == 501 ? "not_implemented"
                                              : "bad_request",
                   "%s", msg);
}

/* ---------- llhttp callbacks ---------- */

static int fail(gw_conn *c, int status, const char *msg) {
  c->error_status = status;
  c->error_msg = msg;
  return -1;
}

static int on_message_begin(llhttp_t *p) {
  gw_conn *c = p->data;
  if (!c->req) {
    c->req = req_new(c);
    if (!c->req) return fail(c, 503, "out of memory");
  }
  return 0;
}

/* The method is known from here on: an error raised later in the request
 * (431, 414, 400 for a missing Host, 408 …) answers a HEAD without a body
 * too (RFC 9110 §9.3.2), or the client would read the body as the next
 * response. */
static int on_method_complete(llhttp_t *p) {
  gw_conn *c = p->data;
  gw_req *r = c->req;
  r->method_id = p->method;
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->priv->head = p->method == HTTP_HEAD;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  gw_conn *c = p->data;
  if (gw_buf_append(&c->url, at, n) != 0)
    return fail(c, 414, "request target too long");
  return 0;
}

static int count_header_bytes(gw_conn *c, size_t n) {
  gw__req_priv *r = c->req->priv;
  r->header_bytes += n + 4; /* ": " and CRLF */
  if (r->header_bytes > (size_t)limits(c->h)->max_header_bytes)
    return fail(c, 431, "request headers too large");
  return 0;
}

/* A piece of a header's name or value: a span of c->in while it is the
 * first (gw_conn's fspan/vspan), else appended to the scratch. The caps are
 * the same either way: count_header_bytes bounds every piece by
 * max_header_bytes, the scratch's max. */
static inline int piece(gw_buf *b, const char **span, size_t *span_n, const char *at, size_t n) {
  if (!b->len && !*span) {
    *span = at;
    *span_n = n;
    return 0;
  }
  if (*span) {
    const char *s = *span;
    *span = NULL;
    if (gw_buf_append(b, s, *span_n) != 0) return -1;
  }
  return gw_buf_append(b, at, n);
}

/* Before c->in moves (after every llhttp_execute): a header cut by the
 * end of the bytes read so far keeps its first piece in the scratch. */
static int span_flush(gw_conn *c) {
  int rc = 0;
  if (c->fspan && gw_buf_append(&c->field, c->fspan, c->fspan_n) != 0) rc = -1;
  if (c->vspan && gw_buf_append(&c->value, c->vspan, c->vspan_n) != 0) rc = -1;
  c->fspan = c->vspan = NULL;
  return rc;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  gw_conn *c = p->data;
  if (count_header_bytes(c, n) != 0) return -1;
  if (piece(&c->field, &c->fspan, &c->fspan_n, at, n) != 0) return fail(c, 431, "request headers too large");
  return 0;
}

/* In a header value's piece: 1 for a CR or LF, else 2 for a NUL, else 0.
 * Eight bytes at a time: a byte below 0x0E flags its lane (or one above a
 * flagged lane, as a borrow carries), and only then are the bytes read. */
static int value_ctl(const char *at, size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  size_t i = 0;
  int nul = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, at + i, 8);
    if (!((x - ones * 0x0E) & ~x & highs)) continue;
    for (size_t k = i; k < i + 8; k++) {
      unsigned char ch = (unsigned char)at[k];
      if (ch == '\n' || ch == '\r') return 1;
      if (!ch) nul = 2;
    }
  }
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)at[i];
    if (ch == '\n' || ch == '\r') return 1;
    if (!ch) nul = 2;
  }
  return nul;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  gw_conn *c = p->data;
  if (count_header_bytes(c, n) != 0) return -1;
  /* obs-fold (RFC 9112 §5.2): llhttp accepts a line starting with SP/HT
   * as the continuation of the previous value. We reject it (the RFC lets
   * a server do so, and ambiguous headers are what request smuggling is
   * made of): a value span preceded, across whitespace, by LF is a fold. */
  const char *b = at;
  while (b > c->exec_start && (b[-1] == ' ' || b[-1] == '\t')) b--;
  char before = b > c->exec_start ? b[-1] : c->tail_nonws;
  int ctl = value_ctl(at, n);
  if ((n && before == '\n') || ctl == 1) return fail(c, 400, "obsolete line folding in headers is not accepted");
  if (ctl == 2) return fail(c, 400, "NUL byte in header value");
  if (piece(&c->value, &c->vspan, &c->vspan_n, at, n) != 0) return fail(c, 431, "request headers too large");
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  gw_conn *c = p->data;
  gw_req *r = c->req;
  gw__req_priv *pr = r->priv;
  /* the name and the value: spans of c->in, or the scratch's */
  const char *f = c->fspan ? c->fspan : c->field.data ? c->field.data : "";
  size_t fl = c->fspan ? c->fspan_n : c->field.len;
  const char *v = c->vspan ? c->vspan : c->value.data ? c->value.data : "";
  size_t vl = c->vspan ? c->vspan_n : c->value.len;
  c->fspan = c->vspan = NULL;
  /* the scratch outlives the request (it is the connection's): a bearer
   * token does not stay behind in it (a span's bytes are c->in's) */
  bool authz = fl == sizeof "authorization" - 1 && strncasecmp(f, "authorization", fl) == 0;
  if (c->state == CS_BODY) {
    /* A trailer field (after a chunked body): not a header (RFC 9110
     * §6.5.1). The route, the body cap, preauth and the client address
     * were decided on the header section; a handler must not read, as a
     * header, a field that arrived after them. Read within the header
     * byte cap, then dropped. */
    goto done;
  }
  if (r->nheaders >= GW_MAX_HEADERS) return fail(c, 431, "too many request headers");
  /* RFC 9112 §5.1: whitespace between the name and the colon is a 400.
   * llhttp refuses it only for Content-Length and Transfer-Encoding and
   * hands any other name over with the space ("Host " is not Host here,
   * where a lenient proxy in front may trim it to Host). */
  if (fl && (f[fl - 1] == ' ' || f[fl - 1] == '\t'))
    return fail(c, 400, "whitespace between a header name and its colon is not accepted");
  /* trim trailing OWS (llhttp strips leading) */
  while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
#ifdef ARENA_ASAN /* a block each: ASan sees the name's bounds */
  char *name = gw_req_alloc(r, fl + 1), *val = gw_req_alloc(r, vl + 1);
  if (!name || !val) return fail(c, 503, "out of memory");
#else
  char *name = gw_req_alloc(r, fl + vl + 2); /* one block: the name, NUL, the value, NUL */
  if (!name) return fail(c, 503, "out of memory");
  char *val = name + fl + 1;
#endif
  memcpy(name, f, fl);
  name[fl] = 0;
  memcpy(val, v, vl);
  val[vl] = 0;
  gw_header *h = &r->headers[r->nheaders++];
  h->name = name;
  h->value = val;
  h->nlen = fl;
  if (REQ_HDR_IS(h, "host")) {
    if (pr->has_host) return fail(c, 400, "more than one Host header");
    pr->has_host = true;
  }
done:
  if (authz && c->value.len) OPENSSL_cleanse(c->value.data, c->value.len);
  if (c->field.len) gw_buf_reset(&c->field);
  if (c->value.len) gw_buf_reset(&c->value);
  return 0;
}

static void resolve_client(gw_conn *c, gw_req *r) {
  const gw_http_host *host = c->h->host;
  if (!host->trusted || !host->trusted(host->ctx, c->peer)) return;
  /* every X-Forwarded-For header, in order: one list (RFC 9110 §5.3); the
   * nearest proxy's part is the last, not the first a client may send */
  const char *xff[GW_MAX_HEADERS];
  const char *proto = NULL;
  int n = 0;
  for (int i = 0; i < r->nheaders; i++) {
    if (REQ_HDR_IS(&r->headers[i], "x-forwarded-for")) xff[n++] = r->headers[i].value;
    else if (REQ_HDR_IS(&r->headers[i], "x-forwarded-proto")) proto = r->headers[i].value;
  }
  if (n) gw_forwarded_client(xff, n, host->trusted, host->ctx, r->client, sizeof r->client);
  /* the nearest proxy's word: the last entry of the last header */
  if (proto) {
    const char *comma = strrchr(proto, ',');
    const char *e = comma ? comma + 1 : proto;
    while (*e == ' ' || *e == '\t') e++;
    if (strcasecmp(e, "https") == 0) r->forwarded_https = true;
  }
}

/* RFC 9112 §6.1 for a body llhttp frames as chunked (chunked the final
 * coding): llhttp decodes that one coding and says nothing of the others,
 * so a handler would take "gzip, chunked" bytes, still compressed, for the
 * body. True when every Transfer-Encoding header, read as one list, names
 * chunked only (llhttp itself refuses chunked twice, and chunked not last). */
static bool te_chunked_only(const gw_req *r) {
  for (int i = 0; i < r->nheaders; i++) {
    if (!REQ_HDR_IS(&r->headers[i], "transfer-encoding")) continue;
    for (const char *s = r->headers[i].value; *s;) {
      while (*s == ' ' || *s == '\t' || *s == ',') s++; /* OWS and empty list elements */
      if (!*s) break;
      size_t n = strcspn(s, ","), m = n;
      while (m && (s[m - 1] == ' ' || s[m - 1] == '\t')) m--;
      if (m != 7 || strncasecmp(s, "chunked", 7) != 0) return false;
      s += n;
    }
  }
  return true;
}

static int on_headers_complete(llhttp_t *p) {
  gw_conn *c = p->data;
  gw_req *r = c->req;
  gw__req_priv *pr = r->priv;
  if (p->http_major != 1) return fail(c, 505, "only HTTP/1.x is supported");
  if (!r->method) on_method_complete(p); /* llhttp always reports it; cheap to be sure */
  r->http_minor = p->http_minor;
  r->keep_alive = llhttp_should_keep_alive(p);
  /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty
   * framing (a 1.0 hop in front does not know chunked, and reads the body
   * otherwise): answered, then the connection closes, so nothing after it
   * is taken for a request of its own */
  if (p->http_minor == 0 && (p->flags & F_TRANSFER_ENCODING)) r->keep_alive = false;
  if (p->http_minor == 1 && !pr->has_host) return fail(c, 400, "missing Host header");
  /* a coding we do not implement (§6.1 SHOULD: 501); chunked not final
   * (F_TRANSFER_ENCODING alone) is llhttp's 400 after this returns (§6.3) */
  if ((p->flags & F_CHUNKED) && !te_chunked_only(r))
    return fail(c, 501, "transfer codings other than chunked are not supported");
  /* target → path + query (kept apart so the query is never logged) */
  const char *t = c->url.data ? c->url.data : "";
  r->target = gw_req_strdup(r, t);
  if (!r->target) return fail(c, 503, "out of memory");
  if (r->target[0] != '/' && strcmp(r->method, "OPTIONS") != 0)
    return fail(c, 400, "request target must be an absolute path");
  r->path = gw_req_strdup(r, t);
  char *q = r->path ? strchr(r->path, '?') : NULL;
  if (q) {
    *q = 0;
    r->query = q + 1;
  }
  resolve_client(c, r);
  r->route = c->h->router ? gw_router_find(c->h->router, c->kind, r->path, strlen(r->path)) : NULL;
  if (r->route && r->route->max_body > 0) pr->body_limit = r->route->max_body;
  pr->body.max = (size_t)pr->body_limit;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)pr->body_limit)
    return fail(c, 413, "request body too large");
  /* A body no handler reads — no route (404), a method the route does
   * not allow (405), a route whose requests carry none (GW_ROUTE_NO_BODY:
   * health, the well-known documents) — is read and thrown away, never
   * held: anyone could make us hold max_body_bytes per connection for a
   * 404. (Read, not refused from the headers: the framing, 100 Continue
   * and keep-alive stay what they are for any answer.) */
  pr->discard = !r->route || r->route->max_body == GW_ROUTE_NO_BODY ||
                (r->route->allow && !gw_route_allows(r->route, r->method));
  /* The credential before any body byte (and before a 100 Continue): an
   * unauthenticated client must not make us buffer up to the body cap.
   * Bodiless requests go straight to the handler, which checks the same. A
   * refusal has been answered (the route's format, WWW-Authenticate) and
   * ends the connection: the body is never read, only a little of it
   * discarded while lingering. */
  if (r->route && r->route->preauth && ((p->flags & F_CHUNKED) || p->content_length > 0)) {
    pr->close = true;
    if (r->route->preauth(r) != 0) return fail(c, 401, "refused before the body was read");
    pr->close = false;
  }
  const char *expect = gw_req_header(r, "expect");
  if (expect) {
    if (strcasecmp(expect, "100-continue") != 0) return fail(c, 417, "unsupported Expect value");
    if (r->http_minor == 1 && ((p->flags & F_CHUNKED) || p->content_length > 0)) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      conn_write(c, cont, sizeof cont - 1);
      /* a client already gone: the failed write closed the connection
       * and freed the request; llhttp must not go on to its body */
      if (c->closing) return fail(c, 400, "the client is gone");
    }
  }
  c->state = CS_BODY;
  arm(c, limits(c->h)->body_timeout_ms);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  gw_conn *c = p->data;
  if (!c->req) return -1; /* closed inside the parse (see on_headers_complete) */
  gw__req_priv *pr = c->req->priv;
  if (pr->discard) {
    pr->discarded += n;
    return pr->discarded > (size_t)pr->body_limit ? fail(c, 413, "request body too large") : 0;
  }
  int rc = gw_buf_append(&pr->body, at, n);
  if (rc == GW_EBUDGET) /* the budget its meter counts against (gw_req_meter) */
    return fail(c, 503, "the gateway holds as many large requests as it allows right now; try again in a moment");
  if (rc != 0) return fail(c, 413, "request body too large");
  return 0;
}

/* Chunk extensions (";name=value" after a chunk's size) carry nothing the
 * gateway uses, and no body byte counts them: uncounted, a client could
 * stream them for body_timeout_ms whatever max_body_bytes says (found by
 * review). A request's are capped, as a head's fields are. */
#define CHUNK_EXT_MAX 4096
static int on_chunk_ext(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  gw_conn *c = p->data;
  if (!c->req) return -1;
  gw__req_priv *pr = c->req->priv;
  pr->chunk_ext += n;
  return pr->chunk_ext > CHUNK_EXT_MAX ? fail(c, 400, "chunk extensions too long") : 0;
}

static int on_message_complete(llhttp_t *p) {
  gw_conn *c = p->data;
  if (!c->req) return -1;
  c->req->priv->complete = true;
  return HPE_PAUSED;
}

/* Once per process (uv_once): every loop's thread reads the same table. */
static uv_once_t settings_once = UV_ONCE_INIT;

static void init_settings_once(void) {
  llhttp_settings_init(&parser_settings);
  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_method_complete = on_method_complete;
  parser_settings.on_url = on_url;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_header_value_complete = on_header_value_complete;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_chunk_extension_name = on_chunk_ext;
  parser_settings.on_chunk_extension_value = on_chunk_ext;
  parser_settings.on_message_complete = on_message_complete;
}

static void init_settings(void) { uv_once(&settings_once, init_settings_once); }

/* ---------- dispatch ---------- */

static void dispatch(gw_conn *c) {
  gw_req *r = c->req;
  gw__req_priv *p = r->priv;
  c->state = CS_HANDLING;
  c->send_armed = false;
  /* the header/body timer is left to run out: firing in CS_HANDLING does
   * nothing unless bytes queued for the client armed the send timeout
   * (send_arm), and the reply's arm() replaces it (one timer-heap
   * operation per request fewer) */
  if (p->body.data) {
    r->body = p->body.data;
    r->body_len = p->body.len;
  } else {
    r->body = (char *)"";
    r->body_len = 0;
  }
  if (!r->route) {
    gw_respond_error(r, 404, "not_found", "no such endpoint: %s", r->path);
    return;
  }
  if (r->route->allow && !gw_route_allows(r->route, r->method)) {
    gw_resp_header(r, "Allow", r->route->allow);
    gw_respond_error(r, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)", r->method,
                     r->route->allow);
    return;
  }
  r->route->handler(r);
}

static void conn_parse(gw_conn *c) {
  if (c->in_parse) return;
  c->in_parse = true;
  while (!c->closing && c->in_len > 0 && (c->state == CS_IDLE || c->state == CS_HEADERS ||
                                          c->state == CS_BODY)) {
    if (c->state == CS_IDLE) {
      /* A client that pipelines requests and does not read the responses
       * must not make us queue them without bound: past the high-water
       * mark the next request (and reading) waits until on_write sees the
       * queue under the low-water mark; idle_timeout_ms still runs. */
      if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > GW_WRITE_HIGH_WATER) {
        c->write_wait = true;
        if (c->reading) {
          uv_read_stop((uv_stream_t *)&c->tcp);
          c->reading = false;
        }
        break;
      }
      if (c->h->draining) {
        /* no new requests after SIGTERM */
        c->in_len = 0;
        conn_close(c);
        break;
      }
      c->state = CS_HEADERS;
      arm(c, limits(c->h)->header_timeout_ms);
    }
    c->exec_start = c->in;
    llhttp_errno_t err = llhttp_execute(&c->parser, c->in, c->in_len);
    if (span_flush(c) != 0 && err == HPE_OK) { /* within the caps: only out of memory */
      c->in_len = 0;
      send_error_and_close(c, 503, "out of memory");
      break;
    }
    size_t used = c->in_len;
    if (err != HPE_OK) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      used = pos ? (size_t)(pos - c->in) : c->in_len;
      if (used > c->in_len) used = c->in_len;
    }
    for (size_t i = used; i > 0; i--)
      if (c->in[i - 1] != ' ' && c->in[i - 1] != '\t') {
        c->tail_nonws = c->in[i - 1];
        break;
      }
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (err == HPE_OK) break; /* need more bytes */
    if (err == HPE_PAUSED) {
      llhttp_resume(&c->parser);
      dispatch(c);
      continue;
    }
    int status = c->error_status ? c->error_status : 400;
    const char *msg = c->error_msg;
    char why[200];
    if (!msg) {
      snprintf(why, sizeof why, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
      msg = why;
    }
    GW_LOG(GW_LOG_DEBUG, "http", NULL, "parse error %d from %s: %s", status, c->peer, msg);
    c->in_len = 0;
    send_error_and_close(c, status, msg);
    break;
  }
  c->in_parse = false;
  if (c->in_len == 0 && c->in_cap > IN_KEEP) { /* a large upload's buffer is not kept */
    free(c->in);
    c->in = NULL;
    c->in_cap = 0;
  }
  /* Back-pressure: while a handler runs, hold at most IN_CAP unparsed bytes. */
  if (!c->closing && c->state == CS_HANDLING && c->in_len >= IN_CAP && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
  /* The client half-closed and nothing more will be parsed (or a request
   * it began will never end): what is queued still reaches it, then FIN,
   * then the close (conn_linger; cutting now would lose queued replies). */
  if (!c->closing && c->eof && c->in_len == 0 &&
      (c->state == CS_IDLE || c->state == CS_HEADERS || c->state == CS_BODY))
    conn_linger(c);
}

/* ---------- reading ---------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gw_conn *c = h->data;
  buf->base = c->h->readbuf;
  buf->len = sizeof c->h->readbuf;
}

static int append_in(void *arg, const char *p, size_t n) {
  gw_conn *c = arg;
  if (c->state == CS_LINGER) return 0;
  if (c->in_len + n > c->in_cap) { /* grown, never shrunk: a realloc per read was the common case */
    size_t cap = c->in_cap ? c->in_cap : 1024;
    while (cap < c->in_len + n) cap *= 2;
    char *ni = realloc(c->in, cap);
    if (!ni) return -1;
    c->in = ni;
    c->in_cap = cap;
  }
  memcpy(c->in + c->in_len, p, n);
  c->in_len += n;
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  gw_conn *c = s->data;
  if (c->closing) return;
  if (nread == 0) return;
  if (nread < 0) {
    c->eof = true;
    uv_read_stop(s);
    c->reading = false;
    /* lingering with replies still queued (uv_shutdown pending): a
     * half-close is not a reset — on_shutdown closes once they are out */
    if (nread == UV_EOF && c->state == CS_LINGER && uv_stream_get_write_queue_size(s) > 0) return;
    if (nread != UV_EOF || c->state == CS_LINGER || (c->req && c->req->priv->streaming)) {
      conn_close(c);
      return;
    }
    if (c->state == CS_IDLE && c->in_len) return; /* pipelined requests wait their turn (resume
                                                   * timer or write_wait); conn_parse ends it */
    if (c->state == CS_IDLE || c->state == CS_HEADERS || c->state == CS_BODY) {
      /* nothing (more) to answer — the client stopped between or in the
       * middle of requests — but replies already queued still go out: a
       * half-close is not a reset */
      conn_linger(c);
      return;
    }
    /* HANDLING: a handler that can abort (a proxied exchange, a stream)
     * learns now that its client is gone; a plain request finishes its
     * response, then the connection closes (resp_closes sees eof) */
    if (c->req && c->req->on_abort) conn_close(c);
    return;
  }
  if (c->state == CS_LINGER) {
    /* discard, up to a cap: past it the bytes stay in the kernel */
    c->linger_read += (size_t)nread;
    if (c->linger_read > LINGER_DISCARD_MAX && c->reading) {
      uv_read_stop(s);
      c->reading = false;
    }
    return;
  }
  int rc;
  if (c->tls) {
    rc = gw_tls_feed(c->tls, buf->base, (size_t)nread, append_in, c);
    tls_flush(c);
    if (rc < 0) {
      GW_LOG(GW_LOG_DEBUG, "tls", NULL, "TLS error from %s; closing", c->peer);
      conn_close(c);
      return;
    }
  } else {
    rc = append_in(c, buf->base, (size_t)nread);
    if (rc < 0) {
      conn_close(c);
      return;
    }
  }
  conn_parse(c);
}

static void read_start(gw_conn *c) {
  if (c->closing || c->reading || c->eof || c->write_wait) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

/* ---------- accepting ---------- */

static void peer_name(gw_conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  strcpy(c->peer, "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
}

void gw_http_init(gw_http *h, uv_loop_t *loop, gw_loop *lp, const gw_http_host *host, const gw_router *router) {
  memset(h, 0, sizeof *h);
  h->loop = loop;
  h->lp = lp;
  h->host = host;
  h->router = router;
}

int gw_http_conns(const gw_http *h) { return h->nconns; }

/* A new connection on the socket accepted from listener, or (listener NULL)
 * on fd, already connected (gw_http_adopt). Returns -errno when fd could not
 * be taken (fd is still the caller's), else 0: the connection owns the
 * socket, and closes it with itself, refused or not. */
static int conn_open(gw_http *h, uv_stream_t *listener, uv_os_sock_t fd, int kind) {
  const gw_http_host *host = h->host;
  init_settings();
  gw_conn *c = calloc(1, sizeof *c);
  if (!c) return listener ? 0 : -ENOMEM;
  c->h = h;
  c->kind = kind;
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  list_add(h, c);
  int rc = listener ? uv_accept(listener, (uv_stream_t *)&c->tcp) : uv_tcp_open(&c->tcp, fd);
  if (rc != 0) {
    conn_close(c);
    return listener ? 0 : rc;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  if (kind == GW_LISTENER_HTTPS) {
    c->tls = host->tls_conn ? host->tls_conn(host->ctx) : NULL;
    if (!c->tls) {
      conn_close(c);
      return 0;
    }
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  int adm = host->admit ? host->admit(host->ctx, c->peer)
                        : h->nactive >= host->limits.max_connections ? GW_ADMIT_FULL : GW_ADMIT_OK;
  if (adm < 0) {
    /* Over a cap: say so and hang up, without reading a request. */
    if (host->on_conn_rejected) host->on_conn_rejected(host->ctx);
    /* one line a second at most, saying how many went unsaid: a flood of
     * refused connections must not become a flood of log lines (the
     * metric counts every one) */
    uint64_t now = uv_now(h->loop);
    if (h->refused_logged_at && now - h->refused_logged_at < 1000) {
      h->refused_unlogged++;
    } else {
      unsigned long long more = (unsigned long long)h->refused_unlogged;
      h->refused_logged_at = now ? now : 1;
      h->refused_unlogged = 0;
      if (adm == GW_ADMIT_PEER_FULL)
        GW_LOG(GW_LOG_WARN, "http", NULL,
               "connections_per_address reached for %s; refusing a connection (a proxy in front? list it in "
               "trusted_proxies); %llu more refused since the last such line",
               c->peer, more);
      else
        GW_LOG(GW_LOG_WARN, "http", NULL, "max_connections (%lld) reached; refusing %s; %llu more refused since the last "
               "such line", (long long)host->limits.max_connections, c->peer, more);
    }
    c->rejected = true;
    c->state = CS_HEADERS;
    read_start(c);
    send_error_and_close(c, 503, adm == GW_ADMIT_PEER_FULL ? "too many connections from this address; try again later"
                                                            : "too many connections; try again later");
    return 0;
  }
  c->peer_counted = adm == GW_ADMIT_PEER;
  c->counted = true;
  h->nactive++;
  if (host->on_conn_open) host->on_conn_open(host->ctx);
  arm(c, host->limits.idle_timeout_ms);
  read_start(c);
  return 0;
}

void gw_http_accept(gw_http *h, uv_stream_t *listener, int kind) { conn_open(h, listener, -1, kind); }

int gw_http_adopt(gw_http *h, uv_os_sock_t fd, int kind) { return conn_open(h, NULL, fd, kind); }

void gw_req_set_owner(gw_req *req, const char *tenant, const char *user) {
  gw_conn *c = req->conn;
  if (!c) return;
  gw_strlcpy(c->owner_tenant, tenant ? tenant : "", sizeof c->owner_tenant);
  gw_strlcpy(c->owner_user, user ? user : "", sizeof c->owner_user);
}

int gw_http_close_owner(gw_http *h, const char *tenant, const char *user) {
  int n = 0;
  for (gw_conn *c = h->conns, *next; c; c = next) {
    next = c->next;
    if (c->closing || !c->owner_tenant[0] || strcmp(c->owner_tenant, tenant) ||
        (user && strcmp(c->owner_user, user)))
      continue;
    n++;
    if (c->state == CS_IDLE) conn_close(c);
    else c->close_after = true; /* after the response it is writing */
  }
  return n;
}

/* Shutdown: idle connections close now; busy ones close after their
 * response (resp_closes sees h->draining). */
void gw_http_drain(gw_http *h) {
  h->draining = true;
  for (gw_conn *c = h->conns, *n; c; c = n) {
    n = c->next;
    if (c->state == CS_IDLE) conn_close(c);
    else c->close_after = true;
  }
}

void gw_http_close_all(gw_http *h) {
  for (gw_conn *c = h->conns, *n; c; c = n) {
    n = c->next;
    conn_close(c);
  }
}
