/* tests/fuzz/fuzz_out_h1.c — libFuzzer driver: an upstream's raw response
 * bytes through the outbound engine's native HTTP/1.1 client
 * (gateway/out/h1.c, under outbound.c's transfer lifecycle), and the
 * response-head splitter both paths share (outbound.c parse_head).
 *
 * One uv loop, one gw_out engine and one loopback listener (127.0.0.1:0,
 * egress allows loopback) per process, made once. Each input runs one
 * transfer (A), or two back to back (B after A's on_done, so a connection
 * A left kept alive is lent again: rules 1 and 3 of h1.c). The listener's
 * side parses each request it gets (llhttp, request mode) and answers the
 * first with RA, later ones with RB, written in chunks a seed chooses,
 * stepping the loop between chunks; after each answer it closes, half-closes,
 * resets or keeps the connection. A transfer that hangs ends by the short
 * timeouts (flag 0x10) or, once nothing moves, by the driver's gw_out_abort.
 *
 * Input: byte 0 flags, byte 1 chunk seed, byte 2 knobs, then RA; with
 * flag 0x20 RA is cut at the first "<<B>>" and what follows is RB (no
 * marker: RB is a canned 200 "ok"). Flags:
 *   0x03 method: GET, POST (small JSON body), HEAD, POST with a 256 KiB body
 *        (the listener's receive window is small: the request is still being
 *        written when the answer comes)
 *   0x0c after each answer: 0 close, 1 half-close (shutdown), 2 keep open,
 *        3 reset (RST)
 *   0x10 first-byte and idle timeouts of 2 ms (else 60 s, never reached)
 *   0x20 a second transfer B after A
 *   0x40 pause: on_data answers GW_OUT_PAUSE at its k-th call (k: knobs
 *        0x07; 0: gw_out_pause from on_headers), resumed a few loop steps
 *        later (knobs 0x18)
 *   0x80 abort: gw_out_abort at on_data's k-th call (0: from on_headers)
 * Seed: low 7 bits the splitter (0: each answer in one write); 0x80 a
 * response-head cap of 256 bytes. Knobs 0x20: B pauses/aborts like A.
 *
 * Properties beyond no crash, leak or UB:
 *   - on_done exactly once per transfer, last; on_headers at most once and
 *     before any on_data; nothing after on_done, none after an abort; no
 *     on_data while paused;
 *   - a delivered status is a final one (200..999), header names are
 *     non-empty and carry no ':', values no surrounding blanks;
 *   - A's body bytes are a prefix of what llhttp frames from RA (parsed as
 *     h1.c does: 1xx heads skipped, no body for HEAD/204/304, a
 *     close-delimited body ended by the close); when A succeeds they are
 *     all of it, and exactly Content-Length bytes when it framed the body;
 *   - B's body bytes never exceed what was written on its connections;
 *   - after each input no transfer is open (gw_out_stats), and once the
 *     listener has closed its side every socket of the engine (its idle
 *     pool included) and of the listener is closed;
 *   - parse_head (the libcurl path's splitter) on RA's head: every pair
 *     points into the buffer, names non-empty without ':', values trimmed.
 * FUZZ_OUT_H1_VERBOSE=1 prints each input's outcome; FUZZ_OUT_H1_LOG=1 also
 * the listener's reads and writes and the engine's debug log. */
#include <arpa/inet.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <uv.h>

#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/out_int.h"
#include "gateway/out/outbound.h"

#define FZ_MAX_INPUT (64 * 1024)
#define FZ_MAX_CONNS 8
#define FZ_MAX_SPANS 4
#define FZ_BIG_BODY (256 * 1024)
#define FZ_STEPS 20000

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "fuzz_out_h1: " __VA_ARGS__);  \
    fputc('\n', stderr);                           \
    abort();                                       \
  } while (0)

enum { END_CLOSE, END_SHUT, END_KEEP, END_RESET };

/* One accepted connection on the listener's side. */
typedef struct sconn {
  uv_tcp_t tcp;
  uv_shutdown_t sreq;
  llhttp_t p;
  bool used, open, closing, shut;
  struct {
    const char *at;
    size_t len;
  } q[FZ_MAX_SPANS]; /* answers still to write, in order */
  int nq;
  size_t written;     /* bytes written on it */
} sconn;

/* One transfer's view. */
typedef struct xfer {
  gw_out_req *r;
  bool started, pause, abort, paused_now, aborted;
  int k;               /* pause/abort at on_data's k-th call (0: on_headers) */
  int resume_in;       /* loop steps until gw_out_resume */
  int nheaders, ndata, ndone, err, status;
  long clen;           /* the one Content-Length, -1 none or unusable */
  bool te;             /* a Transfer-Encoding header */
  char *body;
  size_t body_len, body_cap;
} xfer;

static struct {
  bool ready, verbose, log;
  uv_loop_t loop;
  gw_out *o;
  gw_egress *loopback;
  uv_tcp_t lst;
  int port;
  char url[64];
  sconn conns[FZ_MAX_CONNS];
  int nopen;             /* listener-side handles not yet closed */
  int requests;          /* requests the listener parsed, this input */
  const char *ra, *rb;
  size_t ra_len, rb_len;
  int end;
  uint32_t seed;
  int knobs;
  xfer a, b;
  int progress;          /* anything happened: callbacks, writes, accepts */
  char *big;             /* the 256 KiB request body */
} F;

static llhttp_settings_t srv_settings;

/* ---- the listener's side ------------------------------------------------- */

static void s_closed(uv_handle_t *h) {
  sconn *c = h->data;
  c->used = false;
  F.nopen--;
}

static void s_close(sconn *c, bool reset) {
  if (c->closing) return;
  c->closing = true;
  c->open = false;
  F.progress++;
  if (reset && uv_tcp_close_reset(&c->tcp, s_closed) == 0) return;
  uv_close((uv_handle_t *)&c->tcp, s_closed);
}

static int s_request_done(llhttp_t *p) {
  sconn *c = p->data;
  bool first = F.requests++ == 0;
  if (F.log) fprintf(stderr, "listener conn %d: request %d\n", (int)(c - F.conns), F.requests);
  if (c->nq < FZ_MAX_SPANS) {
    c->q[c->nq].at = first ? F.ra : F.rb;
    c->q[c->nq].len = first ? F.ra_len : F.rb_len;
    c->nq++;
  }
  return 0;
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char buf[64 * 1024];
  (void)h;
  (void)hint;
  *b = uv_buf_init(buf, sizeof buf);
}

static void s_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  sconn *c = s->data;
  if (nread == 0 || c->closing) return;
  F.progress++;
  if (F.log) fprintf(stderr, "listener conn %d read %zd\n", (int)(c - F.conns), nread);
  if (nread < 0) { /* the engine closed it */
    s_close(c, false);
    return;
  }
  if (llhttp_get_errno(&c->p) == HPE_OK) llhttp_execute(&c->p, b->base, (size_t)nread);
  if (c->shut && c->nq) s_close(c, false); /* cannot answer after a half-close */
}

static void s_accept(uv_stream_t *l, int status) {
  if (status != 0) return;
  sconn *c = NULL;
  for (int i = 0; i < FZ_MAX_CONNS && !c; i++)
    if (!F.conns[i].used) c = &F.conns[i];
  /* an input needs at most three at once (A's, B's, B's retry) */
  if (!c) FAIL("the engine opened more than %d connections", FZ_MAX_CONNS);
  uv_tcp_t *t = &c->tcp;
  memset(c, 0, sizeof *c);
  c->used = true;
  if (uv_tcp_init(&F.loop, t) != 0) FAIL("uv_tcp_init");
  c->tcp.data = c;
  F.nopen++;
  if (uv_accept(l, (uv_stream_t *)t) != 0) {
    s_close(c, false);
    return;
  }
  c->open = true;
  F.progress++;
  /* no Nagle: each chunk reaches the engine in the step it is written (a
   * small write after another waits for the engine's delayed ACK else,
   * and a quiet loop would be taken for a hang) */
  uv_tcp_nodelay(t, 1);
  llhttp_init(&c->p, HTTP_REQUEST, &srv_settings);
  c->p.data = c;
  uv_read_start((uv_stream_t *)t, s_alloc, s_read);
}

static void s_shut_done(uv_shutdown_t *q, int status) { (void)q, (void)status; }

/* One chunk of each connection's pending answer; the end action once an
 * answer is all written. */
static void s_pump(void) {
  for (int i = 0; i < FZ_MAX_CONNS; i++) {
    sconn *c = &F.conns[i];
    if (!c->used || !c->open || !c->nq || c->shut) continue;
    size_t left = c->q[0].len;
    size_t chunk = left;
    if (F.seed) {
      F.seed = F.seed * 1103515245u + 12345u;
      uint32_t r = F.seed >> 16;
      chunk = (r & 3) == 0 ? 1 + r % 512 : 1 + r % 24;
      if (chunk > left) chunk = left;
    }
    if (chunk) {
      uv_buf_t b = uv_buf_init((char *)c->q[0].at, (unsigned)chunk);
      int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
      if (n == UV_EAGAIN) continue;
      if (n < 0) {
        s_close(c, false);
        continue;
      }
      F.progress++;
      if (F.log) fprintf(stderr, "listener conn %d wrote %d\n", i, n);
      c->q[0].at += n;
      c->q[0].len -= (size_t)n;
      c->written += (size_t)n;
      if (c->q[0].len) continue;
    }
    memmove(&c->q[0], &c->q[1], (size_t)(c->nq - 1) * sizeof c->q[0]);
    c->nq--;
    F.progress++;
    switch (F.end) {
    case END_CLOSE: s_close(c, false); break;
    case END_RESET: s_close(c, true); break;
    case END_SHUT:
      c->shut = true;
      if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, s_shut_done) != 0) s_close(c, false);
      break;
    default: break;
    }
  }
}

static size_t s_written(void) {
  size_t n = 0;
  for (int i = 0; i < FZ_MAX_CONNS; i++) n += F.conns[i].written;
  return n;
}

/* ---- the reference framing of RA ------------------------------------------ */

static struct {
  bool head, interim, done;
  char *body;
  size_t len;
} ref;

static int ref_headers(llhttp_t *p) {
  int st = p->status_code;
  if (st == 101 || st < 100) return -1; /* h1.c refuses both */
  if (st >= 100 && st < 200) {
    ref.interim = true;
    return 1;
  }
  ref.interim = false;
  if (ref.head || st == 204 || st == 304) return 1;
  return 0;
}
static int ref_begin(llhttp_t *p) {
  (void)p;
  ref.interim = false;
  return 0;
}
static int ref_body(llhttp_t *p, const char *at, size_t len) {
  (void)p;
  memcpy(ref.body + ref.len, at, len); /* body ⊆ input: fits */
  ref.len += len;
  return 0;
}
static int ref_complete(llhttp_t *p) {
  (void)p;
  if (ref.interim) return 0;
  ref.done = true;
  return HPE_PAUSED;
}

/* llhttp's framing of RA, as h1.c asks for it; `eof`: the listener ended
 * the connection (a close-delimited body ends there). */
static void ref_frame(const char *d, size_t n, bool head, bool eof, char *bodybuf) {
  static llhttp_settings_t s;
  static bool init;
  if (!init) {
    llhttp_settings_init(&s);
    s.on_message_begin = ref_begin;
    s.on_headers_complete = ref_headers;
    s.on_body = ref_body;
    s.on_message_complete = ref_complete;
    init = true;
  }
  ref.head = head;
  ref.interim = ref.done = false;
  ref.body = bodybuf;
  ref.len = 0;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &s);
  llhttp_errno_t e = llhttp_execute(&p, d, n);
  if (e == HPE_OK && eof) llhttp_finish(&p);
}

/* ---- the transfers --------------------------------------------------------- */

static bool ows(char c) { return c == ' ' || c == '\t'; }

static void check_pairs(const gw_out_header *h, size_t n, const char *lo, const char *hi) {
  for (size_t i = 0; i < n; i++) {
    if (lo && (h[i].name < lo || h[i].name >= hi || h[i].value < lo || h[i].value > hi))
      FAIL("header %zu points outside the head", i);
    size_t nl = strlen(h[i].name), vl = strlen(h[i].value);
    if (nl == 0) FAIL("empty header name");
    if (memchr(h[i].name, ':', nl)) FAIL("':' in header name \"%s\"", h[i].name);
    if (vl && (ows(h[i].value[0]) || ows(h[i].value[vl - 1]))) FAIL("untrimmed value of %s", h[i].name);
  }
}

static void x_pause(xfer *x, gw_out_req *r) {
  gw_out_pause(r);
  x->paused_now = true;
  x->resume_in = 1 + ((F.knobs >> 3) & 3);
}

static void x_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  xfer *x = ud;
  F.progress++;
  if (x->ndone) FAIL("on_headers after on_done");
  if (x->aborted) FAIL("on_headers after gw_out_abort");
  if (x->nheaders++) FAIL("on_headers twice");
  if (x->ndata) FAIL("on_headers after on_data");
  if (status < 200 || status > 999) FAIL("status %d delivered", status);
  x->status = status;
  check_pairs(h, n, NULL, NULL);
  int ncl = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcasecmp(h[i].name, "transfer-encoding") == 0) x->te = true;
    if (strcasecmp(h[i].name, "content-length") == 0) {
      ncl++;
      const char *v = h[i].value;
      long cl = 0;
      bool ok = *v != '\0';
      for (; *v && ok; v++) {
        ok = *v >= '0' && *v <= '9' && cl < 100000000;
        cl = cl * 10 + (*v - '0');
      }
      x->clen = ok ? cl : -1;
    }
  }
  if (ncl != 1) x->clen = -1;
  if (x->abort && x->k == 0) {
    gw_out_abort(r);
    gw_out_abort(r);
    x->aborted = true;
  } else if (x->pause && x->k == 0) {
    x_pause(x, r);
  }
}

static int x_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  xfer *x = ud;
  F.progress++;
  if (x->ndone) FAIL("on_data after on_done");
  if (x->aborted) FAIL("on_data after gw_out_abort");
  if (!x->nheaders) FAIL("on_data before on_headers");
  if (x->paused_now) FAIL("on_data while paused");
  if (n == 0) FAIL("empty on_data");
  if (x->body_len + n > FZ_MAX_INPUT * 2) FAIL("more body than input");
  if (x->body_len + n > x->body_cap) {
    size_t cap = x->body_cap ? x->body_cap : 1024;
    while (cap < x->body_len + n) cap *= 2;
    char *nb = realloc(x->body, cap);
    if (!nb) abort();
    x->body = nb;
    x->body_cap = cap;
  }
  memcpy(x->body + x->body_len, p, n);
  x->body_len += n;
  x->ndata++;
  if (x->abort && x->k == x->ndata) {
    gw_out_abort(r);
    x->aborted = true;
  } else if (x->pause && x->k == x->ndata) {
    x->paused_now = true;
    x->resume_in = 1 + ((F.knobs >> 3) & 3);
    return GW_OUT_PAUSE;
  }
  return 0;
}

static void x_done(gw_out_req *r, int err, void *ud) {
  xfer *x = ud;
  F.progress++;
  if (x->ndone++) FAIL("on_done twice");
  if (x->aborted && err == 0) FAIL("aborted transfer succeeded");
  if (err == 0 && !x->nheaders) FAIL("success without a head");
  if (err > 0 || (err < 0 && (err > GW_OUT_ERR_FIRST || err < GW_OUT_ERR_LAST))) FAIL("on_done(%d)", err);
  (void)gw_out_detail(r);
  x->err = err;
  x->r = NULL;
}

static void x_start(xfer *x, uint8_t flags, bool act, uint8_t knobs, bool small_cap) {
  static const char json[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}";
  static const char *const hdrs[] = {"Accept: application/json, text/event-stream",
                                     "Content-Type: application/json", NULL};
  memset(x, 0, sizeof *x);
  x->clen = -1;
  x->pause = act && (flags & 0x40);
  x->abort = act && (flags & 0x80);
  x->k = knobs & 7;
  long to = (flags & 0x10) ? 2 : 60000;
  gw_out_opts op = {
      .url = F.url,
      .headers = hdrs,
      .first_byte_timeout_ms = to,
      .idle_timeout_ms = to,
      .connect_timeout_ms = 60000,
      .max_header_bytes = small_cap ? 256 : 0,
      .egress = GW_OUT_EGRESS_UNTRUSTED,
      .http1 = true,
      .on_headers = x_headers,
      .on_data = x_data,
      .on_done = x_done,
      .ud = x,
  };
  switch (flags & 3) {
  case 0: op.method = "GET"; break;
  case 1: op.method = "POST", op.body = json, op.body_len = sizeof json - 1; break;
  case 2: op.method = "HEAD"; break;
  default: op.method = "POST", op.body = F.big, op.body_len = FZ_BIG_BODY; break;
  }
  int rc = gw_out_start(F.o, &op, &x->r);
  if (rc != 0) FAIL("gw_out_start: %d", rc);
  x->started = true;
}

/* Runs the loop until x's on_done: the listener writes, paused transfers
 * resume; when nothing moves the short timeouts are waited for (a guard
 * aborts past them), or the driver aborts. */
static void guard_fire(uv_timer_t *t) {
  xfer *x = t->data;
  if (x->r && !x->ndone) {
    gw_out_abort(x->r);
    x->aborted = true;
  }
}

static void x_run(xfer *x, bool short_to) {
  static uv_timer_t guard;
  static bool guard_init;
  if (!guard_init) {
    uv_timer_init(&F.loop, &guard);
    uv_unref((uv_handle_t *)&guard);
    guard_init = true;
  }
  guard.data = x;
  int quiet = 0;
  for (int steps = 0; !x->ndone; steps++) {
    if (steps > FZ_STEPS) FAIL("transfer never ended");
    int before = F.progress;
    s_pump();
    if (x->paused_now && --x->resume_in <= 0) {
      x->paused_now = false;
      gw_out_resume(x->r);
      F.progress++;
    }
    uv_run(&F.loop, UV_RUN_NOWAIT);
    quiet = F.progress == before ? quiet + 1 : 0;
    if (quiet < 3 || x->ndone) continue;
    quiet = 0;
    if (short_to && !x->aborted) {
      /* the 2 ms timers: block for them, at most 50 ms */
      uv_timer_start(&guard, guard_fire, 50, 0);
      uv_run(&F.loop, UV_RUN_ONCE);
      uv_timer_stop(&guard);
    } else if (!x->aborted) {
      gw_out_abort(x->r);
      x->aborted = true;
    }
  }
}

/* ---- parse_head ------------------------------------------------------------ */

static void fuzz_parse_head(const char *d, size_t n) {
  const char *e = NULL;
  for (size_t i = 0; i + 3 < n && !e; i++)
    if (memcmp(d + i, "\r\n\r\n", 4) == 0) e = d + i + 2;
  size_t len = e ? (size_t)(e - d) : n;
  char *buf = malloc(len + 1);
  if (!buf) abort();
  memcpy(buf, d, len);
  buf[len] = '\0';
  gw_out_header *h = NULL;
  int k = gw__out_parse_head(buf, len, &h);
  if (k < 0) FAIL("parse_head: no memory");
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += d[i] == '\n';
  if ((size_t)k > lines) FAIL("parse_head: %d pairs from %zu lines", k, lines);
  check_pairs(h, (size_t)k, buf, buf + len + 1);
  free(h);
  free(buf);
}

/* ---- setup and one input ----------------------------------------------------- */

static void setup(void) {
  F.log = getenv("FUZZ_OUT_H1_LOG") != NULL;
  F.verbose = F.log || getenv("FUZZ_OUT_H1_VERBOSE") != NULL;
  if (!F.log) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  if (uv_loop_init(&F.loop) != 0) FAIL("uv_loop_init");
  char err[200];
  if (gw_egress_parse("egress_allow_untrusted", "127.0.0.0/8", &F.loopback, err, sizeof err) != 0)
    FAIL("egress: %s", err);
  if (gw_out_new(&F.loop, &F.o) != 0) FAIL("gw_out_new");
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++) gw_out_set_egress(F.o, lv, F.loopback);
  llhttp_settings_init(&srv_settings);
  srv_settings.on_message_complete = s_request_done;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_init(&F.loop, &F.lst) != 0 || uv_tcp_bind(&F.lst, (const struct sockaddr *)&a, 0) != 0)
    FAIL("listener");
  /* a small receive window (inherited by accepted sockets): the 256 KiB
   * request body cannot be written at once */
  uv_os_fd_t fd;
  uv_fileno((uv_handle_t *)&F.lst, &fd);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  if (uv_listen((uv_stream_t *)&F.lst, 64, s_accept) != 0) FAIL("listen");
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  uv_tcp_getsockname(&F.lst, (struct sockaddr *)&ss, &sl);
  F.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  snprintf(F.url, sizeof F.url, "http://127.0.0.1:%d/mcp", F.port);
  F.big = malloc(FZ_BIG_BODY);
  if (!F.big) abort();
  memset(F.big, 'x', FZ_BIG_BODY);
  F.ready = true;
}

static const char canned[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3 || size > FZ_MAX_INPUT) return 0;
  if (!F.ready) setup();
  uint8_t flags = data[0], seed = data[1], knobs = data[2];
  const char *in = (const char *)data + 3;
  size_t n = size - 3;
  F.ra = in;
  F.ra_len = n;
  F.rb = canned;
  F.rb_len = sizeof canned - 1;
  bool two = flags & 0x20;
  if (two) {
    const char *m = memmem(in, n, "<<B>>", 5);
    if (m) {
      F.ra_len = (size_t)(m - in);
      F.rb = m + 5;
      F.rb_len = n - F.ra_len - 5;
    }
  }
  F.end = (flags >> 2) & 3;
  F.seed = seed & 0x7f;
  F.knobs = knobs;
  F.requests = 0;
  memset(F.conns, 0, sizeof F.conns); /* all closed (the last input waited for it) */
  bool short_to = flags & 0x10;

  fuzz_parse_head(F.ra, F.ra_len);

  x_start(&F.a, flags, true, knobs, seed & 0x80);
  x_run(&F.a, short_to);
  size_t after_a = s_written();
  if (F.log) fprintf(stderr, "after A: %zu written\n", after_a);
  if (two) {
    x_start(&F.b, flags, knobs & 0x20, knobs, seed & 0x80);
    x_run(&F.b, short_to);
  }

  /* A's body against llhttp's framing of RA */
  /* a reset ends the stream too: Linux may report the RST that follows
   * the last bytes as a plain EOF (recv returns 0), so a close-delimited
   * body can end there as well as at a FIN */
  bool eof = F.end != END_KEEP;
  char *rb = malloc(F.ra_len + 1);
  if (!rb) abort();
  ref_frame(F.ra, F.ra_len, (flags & 3) == 2, eof, rb);
  xfer *a = &F.a;
  if (a->body_len > ref.len || (a->body_len && memcmp(a->body, ref.body, a->body_len) != 0))
    FAIL("A's body (%zu bytes) is not a prefix of llhttp's framing (%zu bytes)", a->body_len, ref.len);
  if (a->err == 0) {
    if (!ref.done) FAIL("A succeeded on a response llhttp does not complete");
    if (a->body_len != ref.len) FAIL("A succeeded with %zu of %zu body bytes", a->body_len, ref.len);
    bool bodiless = (flags & 3) == 2 || a->status == 204 || a->status == 304;
    if (!bodiless && !a->te && a->clen >= 0 && a->body_len != (size_t)a->clen)
      FAIL("A succeeded with %zu bytes for Content-Length %ld", a->body_len, a->clen);
  }
  if (F.verbose)
    fprintf(stderr, "flags %02x seed %02x knobs %02x: A %s status %d body %zu (llhttp %zu%s)%s; B %s %zu; %d requests\n",
            flags, seed, knobs, gw_out_err_kind(a->err), a->status, a->body_len, ref.len, ref.done ? ", complete" : "",
            a->aborted ? " aborted" : "", two ? gw_out_err_kind(F.b.err) : "-", F.b.body_len, F.requests);
  free(rb);
  if (two && F.b.body_len > s_written() - after_a + F.ra_len)
    FAIL("B got %zu body bytes, at most %zu were written for it", F.b.body_len, s_written() - after_a + F.ra_len);

  gw_out_stats st;
  gw_out_stats_get(F.o, &st);
  if (st.open != 0) FAIL("%llu transfers still open", (unsigned long long)st.open);

  /* the end: the listener closes every connection; the engine's idle ones
   * see it and close */
  for (int i = 0; i < FZ_MAX_CONNS; i++)
    if (F.conns[i].used) s_close(&F.conns[i], false);
  for (int i = 0; i < 1000 && (F.nopen > 0 || (gw_out_stats_get(F.o, &st), st.sockets > 0)); i++)
    uv_run(&F.loop, UV_RUN_NOWAIT);
  if (F.nopen) FAIL("%d listener connections never closed", F.nopen);
  gw_out_stats_get(F.o, &st);
  if (st.sockets) FAIL("%llu engine sockets outlived the input", (unsigned long long)st.sockets);
  free(F.a.body);
  free(F.b.body);
  memset(&F.a, 0, sizeof F.a);
  memset(&F.b, 0, sizeof F.b);
  return 0;
}
