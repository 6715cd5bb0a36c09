/* tests/fuzz/fuzz_http.c — libFuzzer driver: raw request bytes through the
 * real HTTP/1.1 connection handler (gateway/http/http.c), not only llhttp.
 *
 * One uv loop, gw_http, host and router per process (made once). Each input
 * is one connection: gw_http_adopt takes one end of a socketpair (no
 * listener, no TCP), the driver writes the input into the other end in
 * chunks the second byte seeds (pipelining, partial reads), stepping the
 * loop between chunks and reading what the gateway answers; then lets it
 * settle, checks the answer, cuts the connection and frees everything.
 *
 * Routes (the real router):
 *   /now         200 at once (GET, HEAD, POST)
 *   /body        POST/PUT with its own body cap (4 KiB), a preauth that
 *                refuses "X-Deny", and an early_error of its own format
 *   /async       200 from a later step (the parser stays paused meanwhile)
 *   /stream      a streamed response (chunked on 1.1, close-delimited on
 *                1.0): head now, a chunk a step later, the end after that
 *   /drop        gw_req_drop (500);   /abort   gw_req_abort (cut)
 *   /cut         names the connection's owner and revokes it (closes after)
 *   /big         200 with a 48 KiB body (writes that queue: see 0x80)
 *   /t/{}/x      a pattern route;     /admin/... private (GW_ROUTE_PRIVATE)
 * Limits are small so they are hit: header 1 KiB, URI 256, body 512 (16
 * with flag 0x40).
 *
 * Input: byte 0 flags, byte 1 chunk seed (its low 7 bits; 0: everything in
 * one write; its top bit: a slow client, below), the rest is what the
 * client sends. Flags:
 *   0x01 the private (admin) listener     0x02 EOF after the last byte
 *   0x04 header/body timeouts of 2 ms      0x08 idle timeout of 2 ms
 *   0x10 the peer is a trusted proxy       0x20 the client hangs up while
 *        asynchronous handlers still run (they finish detached)
 *   0x40 max_body_bytes 16
 *   seed 0x80: a slow client — small socket buffers, and the client reads
 *        nothing until all its bytes are sent (responses queue in libuv:
 *        uv_write, on_write, on_drain, a FIN after queued bytes)
 * Timeouts are otherwise 60 s and never fire; with 0x04/0x08 the driver
 * waits at most ~10 ms of real time for them. FUZZ_HTTP_VERBOSE=1 prints
 * what the gateway wrote for each input.
 *
 * Properties beyond no crash, leak or UB:
 *   - everything written to the client is a sequence of HTTP/1.1 responses:
 *     a status line, well-formed headers, an X-Request-Id, and a body framed
 *     by Content-Length or chunked encoding (close-delimited only for a
 *     Connection: close stream); none for 1xx and for responses to HEAD;
 *     nothing after a Connection: close response; an unfinished tail only
 *     while a handler is still streaming (0x20) or when the 2 ms idle
 *     timeout (0x08) cut what was still queued, or — a known defect, see
 *     below — the client half-closed (0x02);
 *   - there are never more final responses than requests llhttp could have
 *     begun on the same bytes (one more only for a 408 on bytes that began
 *     none: a timeout on leading CRLFs);
 *   - every request a handler received is finished and every connection is
 *     gone once the input is done (the loop holds no connection handle). */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/log.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"

#define FZ_MAX_INPUT (64 * 1024)
#define FZ_MAX_OUT (1 << 20)
#define FZ_MAX_IDS 8192
#define FZ_MAX_PENDING 64

enum { P_ASYNC, P_STREAM };

typedef struct pending {
  gw_req *req;
  int kind, stage;
} pending;

static struct {
  bool ready;
  uv_loop_t loop;
  gw_http http;
  gw_http_host host;
  gw_router *router;
  bool trusted;
  bool hold;              /* 0x20: pending handlers wait for the hang-up */
  pending pend[FZ_MAX_PENDING];
  int npend;
  uint64_t next_id;       /* request ids: a counter, so responses map back */
  bool id_head[FZ_MAX_IDS];  /* the request with this id was a HEAD */
  int done;               /* requests ended (host hook) */
  bool slow;              /* seed 0x80: the client does not read while sending */
  bool reading;           /* the client reads what arrives */
  int drained;            /* on_drain calls */
  bool overflow;          /* more than FZ_MAX_OUT came back: not checked */
  char out[FZ_MAX_OUT];
  size_t out_len;
  int peer;               /* the client's end of the socketpair, -1: closed */
} F;

/* ---- host ---- */

static bool host_trusted(void *ctx, const char *ip) { return F.trusted; }

static void host_request_id(void *ctx, char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)++F.next_id);
}

static void host_done(void *ctx, const gw_req *req, int rclass, int status, double secs) {
  F.done++;
  uint64_t id = strtoull(req->id, NULL, 16);
  if (id < FZ_MAX_IDS) F.id_head[id] = req->method && strcmp(req->method, "HEAD") == 0;
  if (status < 100 || status > 599) abort();
}

/* ---- routes ---- */

static void on_abort_noted(gw_req *req) { (void)req; }

static void add_pending(gw_req *req, int kind) {
  if (F.npend == FZ_MAX_PENDING) { /* cannot happen: one request at a time per connection */
    fprintf(stderr, "too many pending handlers\n");
    abort();
  }
  req->on_abort = on_abort_noted;
  F.pend[F.npend++] = (pending){req, kind, 0};
}

/* A client that does not read its responses must not make the gateway
 * queue them without bound: when a request is handed to its handler, what
 * waits for the client stays under the high-water mark plus one response
 * (the largest here is /big's 48 KiB, its head included). */
static void check_queue(gw_req *req) {
  size_t q = gw_req_write_queue(req);
  if (q > GW_WRITE_HIGH_WATER + 64 * 1024) {
    fprintf(stderr, "fuzz_http: %zu bytes queued for a client that does not read\n", q);
    abort();
  }
}

static void h_now(gw_req *req) {
  check_queue(req);
  char body[160];
  int n = snprintf(body, sizeof body, "%s %.64s %s body=%zu", req->method, req->path, req->client, req->body_len);
  gw_respond(req, 200, "text/plain", body, (size_t)n);
}

static void h_body(gw_req *req) {
  gw_resp_header(req, "X-Body", req->body_len > 32 ? "long" : req->body);
  gw_respond(req, 201, "application/octet-stream", req->body, req->body_len);
}

static int preauth_body(gw_req *req) {
  if (!gw_req_header(req, "x-deny")) return 0;
  gw_resp_header(req, "WWW-Authenticate", "Bearer");
  gw_respond_error(req, 401, "unauthorized", "denied");
  return 1;
}

static void early_body(gw_req *req, int status, const char *msg) {
  gw_respond(req, status, "text/plain", msg, strlen(msg));
}

static void h_async(gw_req *req) { add_pending(req, P_ASYNC); }

static void on_drained(gw_req *req) {
  (void)req;
  F.drained++;
}

static void h_stream(gw_req *req) {
  gw_resp_start(req, 200, "text/event-stream");
  gw_resp_write(req, ": open\n\n", 8);
  add_pending(req, P_STREAM);
  req->on_drain = on_drained;
}

static void h_drop(gw_req *req) { gw_req_drop(req); }
static void h_abort(gw_req *req) { gw_req_abort(req); }

static void h_cut(gw_req *req) {
  gw_req_set_owner(req, "t1", req->query ? req->query : "u");
  gw_http_close_owner(&F.http, "t1", NULL);
  gw_respond(req, 200, "text/plain", "cut", 3);
}

static void h_big(gw_req *req) {
  check_queue(req);
  static char big[48 * 1024];
  if (!big[0]) memset(big, 'b', sizeof big);
  gw_respond(req, 200, "application/octet-stream", big, sizeof big);
}

static void h_admin(gw_req *req) { gw_respond(req, 200, "text/plain", "admin", 5); }

/* One step of each pending handler: an async one answers; a stream writes
 * a chunk, then ends. Detached ones finish the same way. */
static void run_pending(void) {
  for (int i = 0; i < F.npend;) {
    pending *p = &F.pend[i];
    if (p->kind == P_STREAM && p->stage == 0 && gw_req_alive(p->req)) {
      static char ev[16 * 1024];
      if (!ev[0]) {
        memcpy(ev, "data: ", 6);
        memset(ev + 6, 'x', sizeof ev - 8);
        memcpy(ev + sizeof ev - 2, "\n\n", 2);
      }
      /* a big event when the client is slow: the write queues */
      if (F.slow) gw_resp_write(p->req, ev, sizeof ev);
      else gw_resp_write(p->req, "data: x\n\n", 9);
      if (gw_req_write_queue(p->req) > GW_WRITE_HIGH_WATER) abort(); /* 16 KiB at most here */
      p->stage++;
      i++;
      continue;
    }
    gw_req *r = p->req;
    int kind = p->kind;
    F.pend[i] = F.pend[--F.npend];
    if (kind == P_ASYNC) gw_respond(r, 200, "text/plain", "later", 5);
    else gw_resp_end(r);
  }
}

static void setup(void) {
  signal(SIGPIPE, SIG_IGN); /* as the gateway's main does: a write to a gone peer is EPIPE */
  gw_log_set_level(GW_LOG_ERROR);
  if (uv_loop_init(&F.loop) != 0) abort();
  F.host = (gw_http_host){
      .ctx = &F,
      .loop = -1,
      .trusted = host_trusted,
      .request_id = host_request_id,
      .on_request_done = host_done,
  };
  if (gw_router_new(true, &F.router) != 0) abort();
  gw_route now = {GW_RC_OTHER, h_now, "GET, HEAD, POST", 0, NULL, NULL};
  gw_route body = {GW_RC_OTHER, h_body, "POST, PUT", 4096, early_body, preauth_body};
  gw_route async = {GW_RC_OTHER, h_async, NULL, 0, NULL, NULL};
  gw_route stream = {GW_RC_OTHER, h_stream, "GET, HEAD", 0, NULL, NULL};
  gw_route drop = {GW_RC_OTHER, h_drop, NULL, 0, NULL, NULL};
  gw_route abrt = {GW_RC_OTHER, h_abort, NULL, 0, NULL, NULL};
  gw_route cut = {GW_RC_OTHER, h_cut, NULL, 0, NULL, NULL};
  gw_route tenant = {GW_RC_SCIM, h_now, "GET", 0, NULL, NULL};
  gw_route admin = {GW_RC_ADMIN, h_admin, "GET", 0, NULL, NULL};
  gw_route bigr = {GW_RC_OTHER, h_big, "GET, HEAD", 0, NULL, NULL};
  if (gw_router_add(F.router, "/now", &now, 0) || gw_router_add(F.router, "/body", &body, 0) ||
      gw_router_add(F.router, "/async", &async, 0) || gw_router_add(F.router, "/stream", &stream, 0) ||
      gw_router_add(F.router, "/drop", &drop, 0) || gw_router_add(F.router, "/abort", &abrt, 0) ||
      gw_router_add(F.router, "/cut", &cut, 0) || gw_router_add(F.router, "/t/{}/x", &tenant, 0) ||
      gw_router_add(F.router, "/big", &bigr, 0) || gw_router_add(F.router, "/admin/...", &admin, GW_ROUTE_PRIVATE))
    abort();
  gw_http_init(&F.http, &F.loop, NULL, &F.host, F.router);
  F.ready = true;
}

/* ---- the client's end ---- */

static void peer_read(void) {
  if (F.peer < 0 || !F.reading) return;
  for (;;) {
    static char spill[65536];
    bool full = F.out_len == FZ_MAX_OUT; /* past it: read on, check nothing */
    ssize_t n = full ? read(F.peer, spill, sizeof spill) : read(F.peer, F.out + F.out_len, FZ_MAX_OUT - F.out_len);
    if (full && n > 0) {
      F.overflow = true;
      continue;
    }
    if (n > 0) {
      F.out_len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return; /* EAGAIN, EOF, or reset */
  }
}

static void step(void) {
  uv_run(&F.loop, UV_RUN_NOWAIT);
  peer_read();
}

/* Writes all of p (the gateway may read slowly: step between tries). False
 * when it stopped taking bytes (lingering, closed). */
static bool peer_write(const uint8_t *p, size_t n) {
  int stuck = 0;
  while (n) {
    ssize_t w = write(F.peer, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      stuck = 0;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) return false;
    if (++stuck > 64) return false;
    step();
  }
  return true;
}

/* ---- what the gateway wrote ---- */

static bool is_tchar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Parses one line ending in CRLF at *pos; false when there is none. */
static bool line(const char *b, size_t len, size_t *pos, const char **ls, size_t *ll) {
  for (size_t i = *pos; i + 1 < len; i++)
    if (b[i] == '\r' || b[i] == '\n') {
      if (b[i] != '\r' || b[i + 1] != '\n') return false;
      *ls = b + *pos;
      *ll = i - *pos;
      *pos = i + 2;
      return true;
    }
  return false;
}

static void bad(const char *why, size_t at) {
  fprintf(stderr, "fuzz_http: response stream invalid at byte %zu: %s\n", at, why);
  fwrite(F.out, 1, F.out_len, stderr);
  fputc('\n', stderr);
  abort();
}

/* Checks F.out; returns the number of final (non-1xx) responses. tail_ok:
 * a handler still streams, so the last response may be unfinished. */
static int check_output(bool tail_ok, int *last_status) {
  const char *b = F.out;
  size_t len = F.out_len, pos = 0;
  int finals = 0;
  bool closed = false;
  while (pos < len) {
    if (closed) bad("bytes after a Connection: close response", pos);
    size_t start = pos;
    const char *l;
    size_t ll;
    if (!line(b, len, &pos, &l, &ll)) {
      if (tail_ok) return finals;
      bad("unfinished status line", start);
    }
    if (ll < 13 || memcmp(l, "HTTP/1.1 ", 9) != 0 || l[9] < '1' || l[9] > '5' || l[10] < '0' ||
        l[10] > '9' || l[11] < '0' || l[11] > '9' || l[12] != ' ' || ll == 13)
      bad("bad status line", start);
    int status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    long long clen = -1;
    bool chunked = false, conn_close = false, has_id = false;
    uint64_t id = 0;
    for (;;) {
      size_t hs = pos;
      if (!line(b, len, &pos, &l, &ll)) {
        if (tail_ok) return finals;
        bad("unfinished header block", hs);
      }
      if (ll == 0) break;
      const char *colon = memchr(l, ':', ll);
      if (!colon || colon == l) bad("header line without a name", hs);
      for (const char *q = l; q < colon; q++)
        if (!is_tchar(*q)) bad("bad header name", hs);
      size_t nl = (size_t)(colon - l);
      const char *v = colon + 1;
      size_t vl = ll - nl - 1;
      if (vl == 0 || v[0] != ' ') bad("header value not after ': '", hs);
      v++, vl--;
      for (size_t i = 0; i < vl; i++)
        if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n') bad("control byte in header value", hs);
#define IS(n) (nl == sizeof n - 1 && strncasecmp(l, n, nl) == 0)
      if (IS("content-length")) {
        if (clen >= 0 || vl == 0 || vl > 9) bad("bad or repeated Content-Length", hs);
        clen = 0;
        for (size_t i = 0; i < vl; i++) {
          if (v[i] < '0' || v[i] > '9') bad("bad Content-Length", hs);
          clen = clen * 10 + (v[i] - '0');
        }
      } else if (IS("transfer-encoding")) {
        if (chunked || vl != 7 || strncmp(v, "chunked", 7) != 0) bad("bad Transfer-Encoding", hs);
        chunked = true;
      } else if (IS("connection")) {
        if (vl == 5 && strncmp(v, "close", 5) == 0) conn_close = true;
      } else if (IS("x-request-id")) {
        if (has_id || vl != 16) bad("bad X-Request-Id", hs);
        has_id = true;
        char tmp[17];
        memcpy(tmp, v, 16);
        tmp[16] = 0;
        id = strtoull(tmp, NULL, 16);
      }
#undef IS
    }
    if (status < 200) { /* an interim response: no body, no id */
      if (status != 100 || clen >= 0 || chunked || has_id) bad("bad interim response", start);
      continue;
    }
    finals++;
    *last_status = status;
    if (!has_id) bad("no X-Request-Id", start);
    if (clen >= 0 && chunked) bad("both Content-Length and chunked", start);
    closed = conn_close;
    bool head = id < FZ_MAX_IDS && F.id_head[id];
    if (head || status == 204 || status == 304) continue;
    if (clen >= 0) {
      if ((size_t)clen > len - pos) {
        if (tail_ok) return finals;
        bad("body shorter than its Content-Length", start);
      }
      pos += (size_t)clen;
    } else if (chunked) {
      for (;;) {
        size_t cs = pos;
        if (!line(b, len, &pos, &l, &ll)) {
          if (tail_ok) return finals;
          bad("unfinished chunk size", cs);
        }
        if (ll == 0 || ll > 8) bad("bad chunk size line", cs);
        size_t n = 0;
        for (size_t i = 0; i < ll; i++) {
          char ch = l[i];
          int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
          if (d < 0) bad("bad chunk size", cs);
          n = n * 16 + (size_t)d;
        }
        if (n > len - pos || len - pos - n < 2) {
          if (tail_ok) return finals;
          bad("unfinished chunk", cs);
        }
        pos += n;
        if (b[pos] != '\r' || b[pos + 1] != '\n') bad("chunk not followed by CRLF", pos);
        pos += 2;
        if (n == 0) break;
      }
    } else {
      if (!conn_close) bad("neither Content-Length nor chunked on a kept connection", start);
      return finals; /* close-delimited: the rest is the body */
    }
  }
  return finals;
}

/* How many requests llhttp begins on these bytes, parsed as the gateway
 * does (strict; paused after each message, then reset for the next one when
 * the connection stays open: an Upgrade is ignored, not taken). */
static int begun;
static int count_begin(llhttp_t *p) {
  (void)p;
  begun++;
  return 0;
}
static int pause_at_end(llhttp_t *p) {
  (void)p;
  return HPE_PAUSED;
}

static int requests_begun(const uint8_t *d, size_t n) {
  static llhttp_settings_t s;
  static bool init;
  if (!init) {
    llhttp_settings_init(&s);
    s.on_message_begin = count_begin;
    s.on_message_complete = pause_at_end;
    init = true;
  }
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &s);
  begun = 0;
  const char *at = (const char *)d, *end = at + n;
  while (at < end) {
    llhttp_errno_t err = llhttp_execute(&p, at, (size_t)(end - at));
    if (err != HPE_PAUSED) break;
    const char *pos = llhttp_get_error_pos(&p);
    bool again = llhttp_should_keep_alive(&p);
    llhttp_resume(&p);
    if (!again || !pos) break;
    llhttp_reset(&p);
    at = pos;
  }
  return begun;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > FZ_MAX_INPUT) return 0;
  if (!F.ready) setup();
  uint8_t flags = data[0];
  uint32_t seed = data[1] & 0x7f;
  const uint8_t *in = data + 2;
  size_t n = size - 2;
  bool short_to = flags & 0x04, short_idle = flags & 0x08;
  F.host.limits = (gw_http_limits){
      .max_connections = 4,
      .max_header_bytes = 1024,
      .max_uri_bytes = 256,
      .max_body_bytes = (flags & 0x40) ? 16 : 512,
      .header_timeout_ms = short_to ? 2 : 60000,
      .body_timeout_ms = short_to ? 2 : 60000,
      .idle_timeout_ms = short_idle ? 2 : 60000,
  };
  F.trusted = flags & 0x10;
  F.hold = flags & 0x20;
  F.npend = 0;
  F.next_id = 0;
  F.done = 0;
  F.out_len = 0;
  F.slow = data[1] & 0x80;
  F.reading = !F.slow;
  F.drained = 0;
  F.overflow = false;
  memset(F.id_head, 0, sizeof F.id_head);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
  F.peer = sv[1];
  if (F.slow) {
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  fcntl(F.peer, F_SETFL, fcntl(F.peer, F_GETFL) | O_NONBLOCK);
  if (gw_http_adopt(&F.http, sv[0], (flags & 0x01) ? GW_LISTENER_ADMIN : GW_LISTENER_HTTP) != 0) abort();

  /* the client's bytes, in chunks */
  size_t off = 0;
  bool open = true;
  while (off < n && open) {
    size_t chunk = n - off;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      uint32_t r = seed >> 16;
      chunk = (r & 3) == 0 ? 1 + r % 512 : 1 + r % 24;
      if (chunk > n - off) chunk = n - off;
    }
    open = peer_write(in + off, chunk);
    off += chunk;
    step();
    if (!F.hold) run_pending();
  }
  if (open && (flags & 0x02)) shutdown(F.peer, SHUT_WR);
  F.reading = true;

  /* settle: until nothing moves (and, with short timeouts, until they fire) */
  uint64_t until = uv_now(&F.loop) + ((short_to || short_idle) ? 10 : 0);
  for (int quiet = 0, rounds = 0; rounds < 10000 && gw_http_conns(&F.http) > 0; rounds++) {
    size_t before = F.out_len;
    int pend = F.npend;
    if (!F.hold) run_pending();
    step();
    /* quiet: nothing written, no handler left to run (or held on purpose) */
    quiet = F.out_len == before && F.npend == pend && (pend == 0 || F.hold) ? quiet + 1 : 0;
    uv_update_time(&F.loop);
    if (quiet >= 4 && uv_now(&F.loop) >= until) break;
  }

  static int verbose = -1;
  if (verbose < 0) verbose = getenv("FUZZ_HTTP_VERBOSE") != NULL;
  if (verbose) {
    fprintf(stderr, "---- flags %02x seed %u: %zu bytes in, %zu out, %d pending\n", flags, data[1], n, F.out_len,
            F.npend);
    fwrite(F.out, 1, F.out_len, stderr);
    fputc('\n', stderr);
  }
  int last = 0;
  /* an unfinished last response: a handler still streams (held), or the
   * 2 ms idle timeout cut responses still on their way (by design, queued
   * bytes get idle_timeout_ms to reach the client) */
  /* a client's half-close (0x02) is not a reset: what was queued for it
   * arrives whole (it was cut, tests/unit/test_http.c
   * half_closed_client_gets_its_queued_replies) */
  int finals = F.overflow ? 0 : check_output((F.hold && F.npend > 0) || short_idle, &last);
  int most = requests_begun(in, n);
  if (finals > most + (last == 408 ? 1 : 0)) {
    fprintf(stderr, "fuzz_http: %d responses to %d requests\n", finals, most);
    abort();
  }

  /* the end: the client hangs up; detached handlers finish; every
   * connection closes and is freed */
  close(F.peer);
  F.peer = -1;
  for (int i = 0; i < 8; i++) step();
  for (int i = 0; F.npend > 0 && i < 8; i++) {
    run_pending();
    step();
  }
  if (F.npend) abort();
  gw_http_close_all(&F.http);
  for (int i = 0; gw_http_conns(&F.http) > 0 && i < 100; i++) step();
  if (gw_http_conns(&F.http) != 0) {
    fprintf(stderr, "fuzz_http: a connection outlived the input\n");
    abort();
  }
  /* no handle of the connection is left on the loop */
  uv_run(&F.loop, UV_RUN_NOWAIT);
  if (uv_loop_alive(&F.loop)) {
    fprintf(stderr, "fuzz_http: the loop still has active handles\n");
    abort();
  }
  return 0;
}
