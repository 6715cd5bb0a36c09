/* tests/unit/test_outbound.c — the outbound HTTP engine (gateway/out/outbound.h)
 * against a small HTTP/1.1 server that runs on the same libuv loop, on
 * 127.0.0.1:0. The server picks a canned behaviour by path:
 *
 *   /json            200 JSON with Content-Length (keep-alive)
 *   /close           200 "bye" with Connection: close, then closes
 *   /status?code=N   status N (3xx carries a Location)
 *   /chunked         chunked body in 5 writes, 10 ms apart
 *   /sse?n=N&ms=M    text/event-stream, one event every M ms (20), N events
 *                    (0 = endless), then the final chunk
 *   /silent          reads the request, never answers
 *   /stall           head + one chunk, then nothing
 *   /reset           head (Content-Length 100000) + 1000 bytes, then RST
 *   /bigheaders?n=N  N header lines of ~110 bytes; /bigline: one 120 KB line
 *   /big?n=N         N bytes of a position-dependent pattern, one write
 *   /echo            JSON {method, headers (lower-cased), body, body_len}
 *   /early           a 103 interim head, then 200 with a folded header
 *   /quietclose      200 JSON that allows keep-alive, then the server closes
 *   /extra           200 "hi" (Content-Length 2) followed by bytes nobody asked for
 *   /halves          200 Content-Length 10: "hello" now, "world" 30 ms later
 *   /rawstatus?code=N a status line with the 3-digit code N (000..099 too);
 *                    code=-1: "HTTP/1.1  OK", no code at all (llhttp takes 0)
 *   a TLS ClientHello gets a plaintext 400 (for the TLS failure test)
 *
 * The engine refuses non-public addresses unless its egress policy allows
 * them: env_init allows loopback at every trust level (the test server is
 * on 127.0.0.1); the egress tests set narrower policies.
 *
 * Every loop test ends asserting uv_loop_close(loop) == 0, and a watchdog
 * fails a test that hangs. Set UNIT_VERBOSE=1 to see the engine's logs. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/buf.h"
#include "gateway/out/egress.h"
#include "gateway/base/log.h"
#include "gateway/out/outbound.h"
#include "gateway/out/out_int.h" /* gw__out_parse_head */
#include "tests/unit/unit.h"

/* ---- test server ---------------------------------------------------------- */

typedef struct srv srv;
typedef struct sconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  srv *s;
  struct sconn *prev, *next;
  char *in;
  size_t inlen;
  int nclose; /* handles still to close */
  bool closing, busy;
  int kind, step, nsteps, ms;
} sconn;

struct srv {
  uv_loop_t *loop;
  uv_tcp_t lst;
  int port;
  int accepted;
  int requests; /* complete requests read */
  sconn *conns;
  bool closing;
};

enum { K_CHUNKED = 1, K_SSE, K_RESET, K_HALVES };

static void c_closed(uv_handle_t *h) {
  sconn *c = h->data;
  if (--c->nclose == 0) {
    free(c->in);
    free(c);
  }
}

static void c_close(sconn *c, bool rst) {
  if (c->closing) return;
  c->closing = true;
  if (c->prev) c->prev->next = c->next;
  else c->s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->nclose = 2;
  if (rst) uv_tcp_close_reset(&c->tcp, c_closed);
  else uv_close((uv_handle_t *)&c->tcp, c_closed);
  uv_close((uv_handle_t *)&c->timer, c_closed);
}

typedef struct wreq {
  uv_write_t w;
  sconn *c;
  bool close_after;
  char data[];
} wreq;

static void c_written(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  sconn *c = w->c; /* still valid: write callbacks run before the close callback */
  bool ca = w->close_after;
  free(w);
  if (status == 0 && ca) c_close(c, false);
}

static void c_write(sconn *c, const void *p, size_t n, bool close_after) {
  if (c->closing) return;
  wreq *w = malloc(sizeof *w + n);
  if (!w) abort();
  memcpy(w->data, p, n);
  w->c = c;
  w->close_after = close_after;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, c_written) != 0) {
    free(w);
    c_close(c, false);
  }
}

static void c_writef(sconn *c, bool close_after, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void c_writef(sconn *c, bool close_after, const char *fmt, ...) {
  char tmp[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  c_write(c, tmp, (size_t)n, close_after);
}

static void c_chunk(sconn *c, const char *s) { c_writef(c, false, "%zx\r\n%s\r\n", strlen(s), s); }

static void reply(sconn *c, int code, const char *ctype, const void *body, size_t n, const char *extra,
                  bool close_after) {
  c_writef(c, false, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", code, ctype, n,
           extra ? extra : "");
  if (n) c_write(c, body, n, close_after);
  else if (close_after) c_write(c, "", 0, true);
}

static long qparam(const char *target, const char *name, long def) {
  const char *q = strchr(target, '?');
  size_t nl = strlen(name);
  while (q) {
    q++;
    if (strncmp(q, name, nl) == 0 && q[nl] == '=') return strtol(q + nl + 1, NULL, 10);
    q = strchr(q, '&');
  }
  return def;
}

static unsigned char pattern(size_t i) { return (unsigned char)('a' + (i * 7 + i / 251) % 26); }

static void c_process(sconn *c);

static void c_tick(uv_timer_t *t) {
  sconn *c = t->data;
  if (c->kind == K_RESET) {
    c_close(c, true);
    return;
  }
  if (c->kind == K_HALVES) {
    c_writef(c, false, "world");
    uv_timer_stop(&c->timer);
    c->busy = false;
    c_process(c);
    return;
  }
  char ev[128];
  if (c->kind == K_CHUNKED) snprintf(ev, sizeof ev, "part%d-", c->step);
  else snprintf(ev, sizeof ev, "id: %d\ndata: {\"i\":%d}\n\n", c->step, c->step);
  c_chunk(c, ev);
  c->step++;
  if (c->nsteps > 0 && c->step >= c->nsteps) {
    c_writef(c, false, "0\r\n\r\n");
    uv_timer_stop(&c->timer);
    c->busy = false;
    c_process(c);
  }
}

static void start_stream(sconn *c, int kind, int n, int ms) {
  c->kind = kind;
  c->step = 0;
  c->nsteps = n;
  c->busy = true;
  c_writef(c, false, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
           kind == K_SSE ? "text/event-stream" : "text/plain");
  uv_timer_start(&c->timer, c_tick, (uint64_t)ms, (uint64_t)ms);
}

static void echo(sconn *c, const char *method, const char *target, const char *head, size_t headlen,
                 const char *body, size_t blen) {
  json_t *j = json_object(), *h = json_object();
  const char *p = (const char *)memchr(head, '\n', headlen) + 1, *end = head + headlen;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl;
    if (le > p && le[-1] == '\r') le--;
    const char *colon = memchr(p, ':', (size_t)(le - p));
    if (colon) {
      char name[256];
      size_t n = (size_t)(colon - p) < sizeof name - 1 ? (size_t)(colon - p) : sizeof name - 1;
      for (size_t i = 0; i < n; i++) name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
      name[n] = 0;
      const char *v = colon + 1;
      while (v < le && (*v == ' ' || *v == '\t')) v++;
      json_t *old = json_object_get(h, name);
      if (old) {
        char *cat = NULL;
        if (asprintf(&cat, "%s, %.*s", json_string_value(old), (int)(le - v), v) < 0) abort();
        json_object_set_new(h, name, json_string(cat));
        free(cat);
      } else {
        json_object_set_new(h, name, json_stringn(v, (size_t)(le - v)));
      }
    }
    p = nl + 1;
  }
  json_object_set_new(j, "method", json_string(method));
  json_object_set_new(j, "target", json_string(target));
  json_object_set_new(j, "headers", h);
  json_object_set_new(j, "body", json_stringn(body, blen));
  json_object_set_new(j, "body_len", json_integer((json_int_t)blen));
  char *s = json_dumps(j, JSON_COMPACT);
  reply(c, 200, "application/json", s, strlen(s), NULL, false);
  free(s);
  json_decref(j);
}

static void handle(sconn *c, const char *method, const char *target, const char *head, size_t headlen,
                   const char *body, size_t blen) {
  char path[256];
  c->s->requests++;
  size_t pl = strcspn(target, "?");
  if (pl >= sizeof path) pl = sizeof path - 1;
  memcpy(path, target, pl);
  path[pl] = 0;
  if (strcmp(path, "/json") == 0) {
    reply(c, 200, "application/json", "{\"ok\":true}", 11, NULL, false);
  } else if (strcmp(path, "/quietclose") == 0) {
    reply(c, 200, "application/json", "{\"ok\":true}", 11, NULL, true);
    c->busy = true;
  } else if (strcmp(path, "/extra") == 0) {
    c_writef(c, false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n");
  } else if (strcmp(path, "/halves") == 0) {
    c_writef(c, false, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    c->kind = K_HALVES;
    c->busy = true;
    uv_timer_start(&c->timer, c_tick, 30, 0);
  } else if (strcmp(path, "/rawstatus") == 0) {
    long code = qparam(target, "code", 200);
    if (code < 0) c_writef(c, false, "HTTP/1.1  OK\r\nContent-Length: 2\r\n\r\nhi");
    else c_writef(c, false, "HTTP/1.1 %03ld Odd\r\nContent-Length: 2\r\n\r\nhi", code);
  } else if (strcmp(path, "/close") == 0) {
    reply(c, 200, "text/plain", "bye", 3, "Connection: close\r\n", true);
    c->busy = true;
  } else if (strcmp(path, "/status") == 0) {
    int code = (int)qparam(target, "code", 200);
    reply(c, code, "text/plain", "st", 2, code / 100 == 3 ? "Location: /json\r\n" : NULL, false);
  } else if (strcmp(path, "/early") == 0) {
    c_writef(c, false, "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Fold: a\r\n  b\r\nX-Trim:   v  \r\n\r\nhi");
  } else if (strcmp(path, "/chunked") == 0) {
    start_stream(c, K_CHUNKED, 5, 10);
  } else if (strcmp(path, "/sse") == 0) {
    start_stream(c, K_SSE, (int)qparam(target, "n", 0), (int)qparam(target, "ms", 20));
  } else if (strcmp(path, "/silent") == 0) {
    c->busy = true;
  } else if (strcmp(path, "/stall") == 0) {
    c_writef(c, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    c_chunk(c, "x");
    c->busy = true;
  } else if (strcmp(path, "/reset") == 0) {
    c_writef(c, false, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    char b[1000];
    memset(b, 'r', sizeof b);
    c_write(c, b, sizeof b, false);
    c->busy = true;
    c->kind = K_RESET;
    uv_timer_start(&c->timer, c_tick, 50, 0);
  } else if (strcmp(path, "/bigheaders") == 0 || strcmp(path, "/bigline") == 0) {
    long n = qparam(target, "n", 10);
    gw_buf b;
    gw_buf_init(&b, 1 << 20);
    gw_buf_appends(&b, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    if (strcmp(path, "/bigline") == 0) {
      gw_buf_appends(&b, "X-Big: ");
      for (int i = 0; i < 120000; i++) gw_buf_append(&b, "b", 1);
      gw_buf_appends(&b, "\r\n");
    } else {
      for (long i = 0; i < n; i++)
        gw_buf_printf(&b, "X-Pad-%ld: %0100ld\r\n", i, i);
    }
    gw_buf_appends(&b, "\r\nok");
    c_write(c, b.data, b.len, false);
    gw_buf_free(&b);
  } else if (strcmp(path, "/big") == 0) {
    size_t n = (size_t)qparam(target, "n", 1000);
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (char)pattern(i);
    reply(c, 200, "application/octet-stream", b, n, NULL, false);
    free(b);
  } else if (strcmp(path, "/echo") == 0) {
    echo(c, method, target, head, headlen, body, blen);
  } else {
    reply(c, 404, "text/plain", "nf", 2, NULL, false);
  }
}

static void c_process(sconn *c) {
  while (!c->busy && !c->closing && c->inlen > 0) {
    if ((unsigned char)c->in[0] == 0x16) { /* TLS ClientHello on a plaintext port */
      c->busy = true;
      c_writef(c, true, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) return;
    size_t headlen = (size_t)(end + 4 - c->in);
    size_t cl = 0;
    for (const char *p = c->in; p < end; p++) {
      if (*p == '\n' && strncasecmp(p + 1, "content-length:", 15) == 0) cl = strtoul(p + 16, NULL, 10);
    }
    if (c->inlen < headlen + cl) return;
    char method[16] = "", target[1024] = "";
    if (sscanf(c->in, "%15s %1023s", method, target) != 2) {
      c_close(c, false);
      return;
    }
    handle(c, method, target, c->in, headlen, c->in + headlen, cl);
    memmove(c->in, c->in + headlen + cl, c->inlen - headlen - cl);
    c->inlen -= headlen + cl;
  }
}

static void c_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = b->base ? sz : 0;
}

static void c_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  sconn *c = st->data;
  if (n < 0) {
    free(b->base);
    c_close(c, false);
    return;
  }
  if (n > 0 && !c->closing) {
    char *p = realloc(c->in, c->inlen + (size_t)n);
    if (!p || c->inlen + (size_t)n > (8u << 20)) abort();
    memcpy(p + c->inlen, b->base, (size_t)n);
    c->in = p;
    c->inlen += (size_t)n;
  }
  free(b->base);
  c_process(c);
}

static void s_accept(uv_stream_t *l, int status) {
  srv *s = l->data;
  if (status < 0) return;
  sconn *c = calloc(1, sizeof *c);
  c->s = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || s->closing) {
    c_close(c, false);
    return;
  }
  s->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, c_alloc, c_read);
}

static int srv_start(srv *s, uv_loop_t *loop) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(loop, &s->lst);
  s->lst.data = s;
  if (uv_tcp_bind(&s->lst, (struct sockaddr *)&a, 0) != 0) return -1;
  if (uv_listen((uv_stream_t *)&s->lst, 512, s_accept) != 0) return -1;
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(&s->lst, (struct sockaddr *)&got, &len);
  s->port = ntohs(got.sin_port);
  return 0;
}

static void srv_close(srv *s) {
  if (s->closing) return;
  s->closing = true;
  uv_close((uv_handle_t *)&s->lst, NULL);
  while (s->conns) c_close(s->conns, false);
}

/* ---- client fixture ------------------------------------------------------- */

typedef struct env {
  uv_loop_t loop;
  srv s;
  gw_out *o;
  uv_timer_t dog;
  int pending;   /* transfers started, on_done not yet seen */
  bool finished, timed_out;
  int out_closed; /* gw_out_close callbacks seen */
  char base[64];
  gw_out_stats st; /* snapshot taken by env_finish */
  /* for the chained tests */
  int launched, completed, bad, total, width;
  struct tr *pool;
} env;

static void env_closed_cb(void *arg) { ((env *)arg)->out_closed++; }

static void env_finish(env *e) {
  if (e->finished) return;
  e->finished = true;
  gw_out_stats_get(e->o, &e->st); /* the engine is gone after the run */
  gw_out_close(e->o, env_closed_cb, e);
  srv_close(&e->s);
  uv_close((uv_handle_t *)&e->dog, NULL);
}

static void env_dog(uv_timer_t *t) {
  env *e = t->data;
  fprintf(stderr, "  watchdog: test hung (%d transfers pending)\n", e->pending);
  e->timed_out = true;
  env_finish(e);
}

/* Loopback allowed (the test server), for every trust level. */
static gw_egress *loopback_policy;

static int env_init(env *e) {
  memset(e, 0, sizeof *e);
  if (uv_loop_init(&e->loop) != 0) return -1;
  if (srv_start(&e->s, &e->loop) != 0) return -1;
  snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->s.port);
  if (gw_out_new(&e->loop, &e->o) != 0) return -1;
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++) gw_out_set_egress(e->o, lv, loopback_policy);
  uv_timer_init(&e->loop, &e->dog);
  e->dog.data = e;
  uv_timer_start(&e->dog, env_dog, 8000, 0);
  return 0;
}

/* Runs the loop to the end; returns uv_loop_close's result. */
static int env_run(env *e) {
  uv_run(&e->loop, UV_RUN_DEFAULT);
  return uv_loop_close(&e->loop);
}

enum {
  M_PLAIN = 0,
  M_ABORT_IN_HEADERS,
  M_ABORT_IN_DATA,
  M_PAUSE_EVERY3,     /* on_data returns GW_OUT_PAUSE every 3rd call, resume after 5 ms */
  M_PAUSE_FIRST,      /* on_data returns GW_OUT_PAUSE at its first call, resume after 5 ms */
  M_PAUSE_IN_HEADERS, /* gw_out_pause from on_headers, resume after 300 ms */
  M_START_IN_DATA,    /* starts a child transfer from on_data */
  M_CLOSE_IN_DATA,    /* gw_out_close from on_data once enough streams have data */
  M_PARTIAL,          /* every on_data says a message is pending (gw_out_partial true), never done */
  M_PARTIAL_DONE,     /* every on_data says a message began and ended (true, then false) */
};

typedef struct tr {
  env *e;
  gw_out_req *r;
  int mode;
  int status, nheaders, ndata, ndone, err;
  bool in_cb, reentered, data_before_headers, aborted, data_after_abort, paused_now, data_while_paused;
  int empty_data; /* on_data calls with no byte */
  int pauses;
  char hdrs[8192];
  size_t hlen;
  gw_buf body;
  uint64_t t0, t_done;
  uv_timer_t tm;
  bool tm_init;
  struct tr *child;
  int start_rc_in_done; /* gw_out_start result tried from on_done (close test) */
  void (*hook)(struct tr *);
  char detail[256];     /* gw_out_detail in on_done */
  gw_out_opts next;     /* egress tests: started from on_done when next.url is set */
  struct tr *next_tr;
} tr;

static void t_resume(uv_timer_t *t) {
  tr *x = t->data;
  x->paused_now = false;
  gw_out_resume(x->r);
}

static void t_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  tr *t = ud;
  if (t->in_cb) t->reentered = true;
  t->in_cb = true;
  t->nheaders++;
  t->status = status;
  if (t->ndata) t->data_before_headers = true;
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(t->hdrs + t->hlen, sizeof t->hdrs - t->hlen, "%s: %s\n", h[i].name, h[i].value);
    if (w > 0 && (size_t)w < sizeof t->hdrs - t->hlen) t->hlen += (size_t)w;
  }
  if (t->mode == M_ABORT_IN_HEADERS) {
    gw_out_abort(r);
    gw_out_abort(r);
    t->aborted = true;
  } else if (t->mode == M_PAUSE_IN_HEADERS) {
    gw_out_pause(r);
    t->paused_now = true;
    t->pauses++;
    uv_timer_start(&t->tm, t_resume, 300, 0);
  }
  t->in_cb = false;
}

static int tr_go(env *e, tr *t, gw_out_opts op, const char *path);

static void t_close_engine(tr *t);

static int t_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  tr *t = ud;
  int ret = 0;
  if (t->in_cb) t->reentered = true;
  t->in_cb = true;
  if (!t->nheaders) t->data_before_headers = true;
  if (t->aborted) t->data_after_abort = true;
  if (t->paused_now) t->data_while_paused = true;
  if (n == 0) t->empty_data++;
  if (gw_buf_append(&t->body, p, n) != 0) abort();
  t->ndata++;
  switch (t->mode) {
  case M_ABORT_IN_DATA:
    gw_out_abort(r);
    gw_out_abort(r);
    t->aborted = true;
    break;
  case M_PAUSE_FIRST:
    if (t->ndata == 1) {
      t->paused_now = true;
      t->pauses++;
      uv_timer_start(&t->tm, t_resume, 5, 0);
      ret = GW_OUT_PAUSE;
    }
    break;
  case M_PAUSE_EVERY3:
    if (t->ndata % 3 == 0) {
      t->paused_now = true;
      t->pauses++;
      uv_timer_start(&t->tm, t_resume, 5, 0);
      ret = GW_OUT_PAUSE;
    }
    break;
  case M_START_IN_DATA:
    if (t->child && t->ndata == 1) tr_go(t->e, t->child, (gw_out_opts){0}, "/json");
    break;
  case M_CLOSE_IN_DATA:
    t_close_engine(t);
    break;
  case M_PARTIAL:
    gw_out_partial(r, true);
    break;
  case M_PARTIAL_DONE:
    gw_out_partial(r, true);
    gw_out_partial(r, false);
    break;
  }
  t->in_cb = false;
  return ret;
}

static void t_done(gw_out_req *r, int err, void *ud) {
  tr *t = ud;
  if (t->in_cb) t->reentered = true;
  t->ndone++;
  t->err = err;
  snprintf(t->detail, sizeof t->detail, "%s", gw_out_detail(r));
  t->t_done = uv_hrtime();
  if (t->tm_init) uv_close((uv_handle_t *)&t->tm, NULL);
  t->tm_init = false;
  if (t->hook) t->hook(t);
  if (--t->e->pending == 0 && !t->e->finished) env_finish(t->e);
}

static void tr_init(tr *t, env *e, int mode) {
  memset(t, 0, sizeof *t);
  t->e = e;
  t->mode = mode;
  t->start_rc_in_done = 1;
  gw_buf_init(&t->body, 8u << 20);
}

/* Starts GET (or op.method) base+path with the test callbacks. */
static int tr_go(env *e, tr *t, gw_out_opts op, const char *path) {
  char url[512];
  if (strncmp(path, "http", 4) == 0) snprintf(url, sizeof url, "%s", path);
  else snprintf(url, sizeof url, "%s%s", e->base, path);
  if (!op.method) op.method = "GET";
  op.url = url;
  op.on_headers = t_headers;
  op.on_data = t_data;
  op.on_done = t_done;
  op.ud = t;
  t->t0 = uv_hrtime();
  int rc = gw_out_start(e->o, &op, &t->r);
  if (rc == 0) {
    e->pending++;
    uv_timer_init(&e->loop, &t->tm);
    t->tm.data = t;
    t->tm_init = true;
  }
  return rc;
}

static const char *tbody(tr *t) { return t->body.data ? t->body.data : ""; }
static double tms(tr *t) { return (double)(t->t_done - t->t0) / 1e6; }

static gw_out_stats stats(env *e) {
  gw_out_stats s;
  gw_out_stats_get(e->o, &s);
  return s;
}

#define FAILED(s, err) ((s).failed[GW_OUT_ERR_FIRST - (err)])

/* Open fds of the process: equal before and after a test means the engine
 * closed every socket it opened (and closed none twice, or the server's
 * sockets would have broken). */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

/* ---- tests ---------------------------------------------------------------- */

TEST(error_names) {
  CHECK_STR(gw_out_strerror(0), "ok");
  CHECK_STR(gw_out_err_kind(0), "ok");
  CHECK_STR(gw_out_strerror(-1), "unknown error");
  CHECK_STR(gw_out_err_kind(GW_OUT_ERR_FIRST + 1), "unknown");
  CHECK_INT(GW_OUT_NKINDS, 17);
  for (int a = GW_OUT_ERR_FIRST; a >= GW_OUT_ERR_LAST; a--) {
    CHECK(strcmp(gw_out_strerror(a), "unknown error") != 0);
    for (int b = a - 1; b >= GW_OUT_ERR_LAST; b--) CHECK(strcmp(gw_out_err_kind(a), gw_out_err_kind(b)) != 0);
  }
  CHECK_STR(gw_out_err_kind(GW_OUT_EIDLE), "idle_timeout");
  CHECK_STR(gw_out_err_kind(GW_OUT_EABORTED), "aborted");
  CHECK_STR(gw_out_err_kind(GW_OUT_EEGRESS), "egress");
  CHECK_STR(gw_out_err_kind(GW_OUT_ESLOW), "message_timeout");
  CHECK_STR(gw_out_err_kind(GW_OUT_EBUSY), "busy");
}

/* The head splitter both paths deliver through: a value is trimmed also
 * when an obs-fold line ends in blanks, and a fold onto an empty value
 * adds no leading space (outbound.h: "value has surrounding whitespace
 * removed"). Found by fuzz_out_h1 (corpus: parse_head_fold_blanks). */
TEST(parse_head_folds_keep_values_trimmed) {
  char head[] = "HTTP/1.1 200 OK\r\nX-A: a\r\n  b  \r\nX-E:\r\n\tc\t\r\nX-T: v \t\r\n   \r\nX-N: n\n";
  gw_out_header *h = NULL;
  int n = gw__out_parse_head(head, sizeof head - 1, &h);
  CHECK_INT(n, 4);
  CHECK_STR(h[0].name, "X-A");
  CHECK_STR(h[0].value, "a b");
  CHECK_STR(h[1].name, "X-E");
  CHECK_STR(h[1].value, "c");
  CHECK_STR(h[2].name, "X-T");
  CHECK_STR(h[2].value, "v");
  CHECK_STR(h[3].name, "X-N");
  CHECK_STR(h[3].value, "n");
  free(h);
}

TEST(json_content_length) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/json"), 0);
  CHECK_INT(stats(&e).open, 1);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.out_closed, 1);
  CHECK_INT(t.err, 0);
  CHECK_INT(t.ndone, 1);
  CHECK_INT(t.nheaders, 1);
  CHECK_INT(t.status, 200);
  CHECK(!t.reentered && !t.data_before_headers);
  CHECK(strstr(t.hdrs, "Content-Type: application/json\n") != NULL);
  CHECK(strstr(t.hdrs, "Content-Length: 11\n") != NULL);
  CHECK_STR(tbody(&t), "{\"ok\":true}");
  CHECK_INT(e.st.started, 1);
  CHECK_INT(e.st.ok, 1);
  CHECK_INT(e.st.open, 0);
  CHECK_INT(e.st.sockets, 1); /* kept alive in curl's cache until close */
  gw_buf_free(&t.body);
}

TEST(status_head_interim_no_redirect) {
  env e;
  tr a, b, c, d;
  CHECK_INT(env_init(&e), 0);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  tr_init(&c, &e, M_PLAIN);
  tr_init(&d, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){0}, "/status?code=404"), 0);
  CHECK_INT(tr_go(&e, &b, (gw_out_opts){0}, "/status?code=302"), 0);
  CHECK_INT(tr_go(&e, &c, (gw_out_opts){.method = "HEAD"}, "/json"), 0);
  CHECK_INT(tr_go(&e, &d, (gw_out_opts){0}, "/early"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, 0); /* an HTTP error status is a successful transfer */
  CHECK_INT(a.status, 404);
  CHECK_INT(b.err, 0);
  CHECK_INT(b.status, 302); /* not followed */
  CHECK(strstr(b.hdrs, "Location: /json\n") != NULL);
  CHECK_STR(tbody(&b), "st");
  CHECK_INT(c.err, 0);
  CHECK_INT(c.status, 200);
  CHECK_INT(c.ndata, 0);
  CHECK(strstr(c.hdrs, "Content-Length: 11\n") != NULL);
  CHECK_INT(d.err, 0);
  CHECK_INT(d.nheaders, 1); /* the 103 head is not delivered */
  CHECK_INT(d.status, 200);
  CHECK(strstr(d.hdrs, "Link:") == NULL);
  /* obs-fold unfolded: RFC 9112 5.2 allows one or more SP for the fold */
  CHECK(strstr(d.hdrs, "X-Fold: a b\n") != NULL || strstr(d.hdrs, "X-Fold: a  b\n") != NULL);
  CHECK(strstr(d.hdrs, "\r") == NULL);
  CHECK(strstr(d.hdrs, "X-Trim: v\n") != NULL);
  CHECK_STR(tbody(&d), "hi");
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
  gw_buf_free(&c.body);
  gw_buf_free(&d.body);
}

/* A status below 100 is no HTTP status (curl refuses it: "Unsupported
 * response code"); llhttp 8 parses "HTTP/1.1 099" and even a missing code
 * as such. The native path must not deliver one (found by fuzz_out_h1:
 * tests/fuzz/corpus/out_h1/status_0_no_code). */
TEST(status_below_100_is_a_protocol_error) {
  env e;
  tr a, b, c, d;
  CHECK_INT(env_init(&e), 0);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  tr_init(&c, &e, M_PLAIN);
  tr_init(&d, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){0}, "/rawstatus?code=-1"), 0);
  CHECK_INT(tr_go(&e, &b, (gw_out_opts){0}, "/rawstatus?code=0"), 0);
  CHECK_INT(tr_go(&e, &c, (gw_out_opts){0}, "/rawstatus?code=99"), 0);
  CHECK_INT(tr_go(&e, &d, (gw_out_opts){0}, "/rawstatus?code=599"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, GW_OUT_EPROTO);
  CHECK_INT(a.nheaders, 0);
  CHECK_INT(b.err, GW_OUT_EPROTO);
  CHECK_INT(b.nheaders, 0);
  CHECK_INT(c.err, GW_OUT_EPROTO);
  CHECK_INT(c.nheaders, 0);
  CHECK_INT(c.ndata, 0);
  CHECK_INT(d.err, 0);
  CHECK_INT(d.status, 599);
  CHECK_STR(tbody(&d), "hi");
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
  gw_buf_free(&c.body);
  gw_buf_free(&d.body);
}

TEST(chunked_spaced_writes) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/chunked"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK_STR(tbody(&t), "part0-part1-part2-part3-part4-");
  CHECK(t.ndata >= 3); /* delivered as it arrived, not buffered to the end */
  gw_buf_free(&t.body);
}

TEST(sse_stream_idle_resets) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  /* 30 events 50 ms apart (~1.45 s) with a 600 ms idle timeout: every byte
   * resets the idle clock, or the stream would end before half of it. The
   * server shares the client's loop, so a stall of the whole process (CI
   * runs this under ASan beside two fuzzers on two cores) makes the idle
   * timer and the server's next write due in the same turn, timers first:
   * with 100 ms and 20 ms gaps a 100 ms stall failed it with GW_OUT_EIDLE. */
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 600}, "/sse?n=30&ms=50"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK(strstr(t.hdrs, "Content-Type: text/event-stream\n") != NULL);
  CHECK(t.ndata >= 15);
  char want[2048] = "";
  for (int i = 0; i < 30; i++)
    snprintf(want + strlen(want), sizeof want - strlen(want), "id: %d\ndata: {\"i\":%d}\n\n", i, i);
  CHECK_STR(tbody(&t), want);
  CHECK(tms(&t) >= 1200); /* twice the idle timeout */
  gw_buf_free(&t.body);
}

TEST(first_byte_timeout) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.first_byte_timeout_ms = 150}, "/silent"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_EFIRSTBYTE);
  CHECK_INT(FAILED(e.st, GW_OUT_EFIRSTBYTE), 1);
  CHECK_INT(e.st.ok, 0);
  CHECK_INT(t.ndone, 1);
  CHECK_INT(t.nheaders, 0);
  CHECK(tms(&t) >= 140 && tms(&t) < 2000);
  gw_buf_free(&t.body);
}

TEST(idle_timeout) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 150}, "/stall"), 0);
  gw_out_stats s0 = stats(&e);
  CHECK_INT(s0.started, 1);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_EIDLE);
  CHECK_INT(FAILED(e.st, GW_OUT_EIDLE), 1);
  CHECK_INT(t.status, 200);
  CHECK_STR(tbody(&t), "x");
  CHECK(tms(&t) >= 140 && tms(&t) < 2000);
  gw_buf_free(&t.body);
}

/* A peer that sends a byte every 20 ms is never idle; a message the caller
 * holds part of must still end within partial_timeout_ms. */
TEST(partial_timeout) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PARTIAL);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 2000, .partial_timeout_ms = 150}, "/sse?n=0&ms=20"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_ESLOW);
  CHECK_INT(FAILED(e.st, GW_OUT_ESLOW), 1);
  CHECK(t.ndata >= 3);
  CHECK(tms(&t) >= 140 && tms(&t) < 2000);
  gw_buf_free(&t.body);
}

/* Messages that end (partial false) restart the clock: a stream longer
 * than partial_timeout_ms in total completes. */
TEST(partial_timeout_restarts) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PARTIAL_DONE);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 2000, .partial_timeout_ms = 100}, "/sse?n=12&ms=20"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK(tms(&t) >= 200);
  gw_buf_free(&t.body);
}

TEST(reset_mid_body) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/reset"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_ERESET);
  CHECK_INT(t.ndone, 1);
  CHECK_INT(t.status, 200);
  CHECK(t.body.len <= 1000);
  gw_buf_free(&t.body);
}

TEST(header_cap) {
  env e;
  tr a, b, c, d;
  CHECK_INT(env_init(&e), 0);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  tr_init(&c, &e, M_PLAIN);
  tr_init(&d, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){.max_header_bytes = 4096}, "/bigheaders?n=60"), 0); /* ~6.6 KB */
  CHECK_INT(tr_go(&e, &b, (gw_out_opts){.max_header_bytes = 4096}, "/bigheaders?n=20"), 0); /* ~2.2 KB */
  CHECK_INT(tr_go(&e, &c, (gw_out_opts){0}, "/bigheaders?n=700"), 0); /* ~77 KB > 64 KiB default */
  CHECK_INT(tr_go(&e, &d, (gw_out_opts){0}, "/bigline"), 0);          /* one 120 KB line */
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, GW_OUT_EHEADERS);
  CHECK_INT(a.nheaders, 0);
  CHECK_INT(b.err, 0);
  CHECK_INT(b.nheaders, 1);
  CHECK(strstr(b.hdrs, "X-Pad-19: ") != NULL);
  CHECK_STR(tbody(&b), "ok");
  CHECK_INT(c.err, GW_OUT_EHEADERS);
  CHECK_INT(d.err, GW_OUT_EHEADERS);
  CHECK_INT(d.nheaders, 0);
  CHECK_INT(FAILED(e.st, GW_OUT_EHEADERS), 3);
  CHECK_INT(e.st.ok, 1);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
  gw_buf_free(&c.body);
  gw_buf_free(&d.body);
}

static void chain_hook(tr *t) {
  env *e = t->e;
  e->completed++;
  if (t->err != 0 || strcmp(tbody(t), "{\"ok\":true}") != 0) e->bad++;
  if (e->launched < e->total) {
    tr *n = &e->pool[e->launched++];
    if (tr_go(e, n, (gw_out_opts){0}, "/json") != 0) e->bad++;
  } else {
    gw_out_stats s = stats(e);
    if (s.sockets != 1) e->bad += 100; /* the one connection sits in curl's cache */
  }
}

TEST(keepalive_reuse) {
  env e;
  tr pool[3];
  CHECK_INT(env_init(&e), 0);
  for (int i = 0; i < 3; i++) {
    tr_init(&pool[i], &e, M_PLAIN);
    pool[i].hook = chain_hook;
  }
  e.pool = pool;
  e.total = 3;
  e.launched = 1;
  CHECK_INT(tr_go(&e, &pool[0], (gw_out_opts){0}, "/json"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.completed, 3);
  CHECK_INT(e.bad, 0);
  CHECK_INT(e.s.accepted, 1);
  for (int i = 0; i < 3; i++) gw_buf_free(&pool[i].body);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0)
    abort();
  close(fd);
  return ntohs(a.sin_port);
}

TEST(connect_refused_and_tls_failure) {
  env e;
  tr a, b;
  char url[128], url2[128];
  CHECK_INT(env_init(&e), 0);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/json", free_port());
  snprintf(url2, sizeof url2, "https://127.0.0.1:%d/json", e.s.port);
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){0}, url), 0);
  CHECK_INT(tr_go(&e, &b, (gw_out_opts){0}, url2), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, GW_OUT_ECONNECT);
  CHECK_INT(a.nheaders, 0);
  CHECK_INT(b.err, GW_OUT_ETLS);
  CHECK_INT(b.nheaders, 0);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
}

/* Host names go through curl's threaded resolver, whose socketpair is a
 * curl-owned fd we watch but never close. Uses this machine's host name
 * when it resolves to 127.0.0.1 (skipped otherwise), and a .invalid name
 * when the resolver answers it quickly (skipped otherwise). */
static bool resolves_fast(const char *name, bool *to_loopback) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  uint64_t t0 = uv_hrtime();
  int rc = getaddrinfo(name, NULL, &hints, &ai);
  bool fast = uv_hrtime() - t0 < 300000000ull;
  *to_loopback = rc == 0 && ai && ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  if (ai) freeaddrinfo(ai);
  return fast;
}

static void many_hook(tr *t);

TEST(resolver_names) {
  char host[256] = "";
  bool lo = false, lo2 = false;
  gethostname(host, sizeof host - 1);
  bool host_ok = host[0] && resolves_fast(host, &lo) && lo;
  bool invalid_ok = resolves_fast("no-such-host.invalid", &lo2) && !lo2;
  if (!host_ok) fprintf(stderr, "  (host name %s does not resolve to 127.0.0.1: skipped)\n", host);
  if (!invalid_ok) fprintf(stderr, "  (resolver slow for .invalid: skipped)\n");
  int fds0 = count_fds();
  env e;
  tr t[8], bad;
  char url[512];
  CHECK_INT(env_init(&e), 0);
  int n = host_ok ? 8 : 0;
  for (int i = 0; i < n; i++) {
    tr_init(&t[i], &e, M_PLAIN);
    t[i].hook = many_hook;
    snprintf(url, sizeof url, "http://%s:%d/chunked", host, e.s.port);
    CHECK_INT(tr_go(&e, &t[i], (gw_out_opts){0}, url), 0);
  }
  tr_init(&bad, &e, M_PLAIN);
  if (invalid_ok) CHECK_INT(tr_go(&e, &bad, (gw_out_opts){0}, "http://no-such-host.invalid/x"), 0);
  if (!e.pending) env_finish(&e);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.completed, n);
  CHECK_INT(e.bad, 0);
  if (invalid_ok) CHECK_INT(bad.err, GW_OUT_ERESOLVE);
  for (int i = 0; i < n; i++) gw_buf_free(&t[i].body);
  gw_buf_free(&bad.body);
  CHECK_INT(count_fds(), fds0);
}

/* A listener with backlog 0 whose accept queue is already full: Linux
 * drops further SYNs, so a connect hangs until the connect timeout. */
TEST(connect_timeout) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(lfd, 0) == 0);
  CHECK(getsockname(lfd, (struct sockaddr *)&a, &l) == 0);
  int fill[4];
  for (int i = 0; i < 4; i++) {
    fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fill[i], (struct sockaddr *)&a, sizeof a);
    usleep(20000);
  }
  env e;
  tr t;
  char url[128];
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PLAIN);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/json", ntohs(a.sin_port));
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.connect_timeout_ms = 200}, url), 0);
  CHECK_INT(env_run(&e), 0);
  for (int i = 0; i < 4; i++) close(fill[i]);
  close(lfd);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_ECONNTIMEOUT);
  CHECK(tms(&t) >= 190 && tms(&t) < 2000);
  gw_buf_free(&t.body);
}

TEST(post_echo_and_methods) {
  env e;
  tr p, d, u;
  CHECK_INT(env_init(&e), 0);
  tr_init(&p, &e, M_PLAIN);
  tr_init(&d, &e, M_PLAIN);
  tr_init(&u, &e, M_PLAIN);
  /* 300 KB body: big enough that curl would add Expect: 100-continue and
   * stall if we did not suppress it. */
  size_t blen = 300000;
  char *body = malloc(blen);
  for (size_t i = 0; i < blen; i++) body[i] = (char)pattern(i);
  const char *hdrs[] = {"Content-Type: application/json", "Mcp-Session-Id: s-123",
                        "MCP-Protocol-Version: 2025-06-18", "X-Empty:", "X-Multi: a", "X-Multi: b",
                        "Authorization: Bearer up-tok", NULL};
  CHECK_INT(tr_go(&e, &p, (gw_out_opts){.method = "POST", .headers = hdrs, .body = body, .body_len = blen},
                  "/echo"), 0);
  free(body); /* copied */
  CHECK_INT(tr_go(&e, &d, (gw_out_opts){.method = "DELETE", .headers = (const char *const[]){"Mcp-Session-Id: s-9", NULL}},
                  "/echo"), 0);
  CHECK_INT(tr_go(&e, &u, (gw_out_opts){.method = "PUT", .body = "{}", .body_len = 2}, "/echo?a=1&b=%2F#frag"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(p.err, 0);
  CHECK(tms(&p) < 900); /* no 1 s Expect wait */
  json_error_t je;
  json_t *j = json_loads(tbody(&p), 0, &je);
  CHECK(j != NULL);
  json_t *h = json_object_get(j, "headers");
  CHECK_STR(json_string_value(json_object_get(j, "method")), "POST");
  CHECK_STR(json_string_value(json_object_get(h, "content-type")), "application/json");
  CHECK_STR(json_string_value(json_object_get(h, "mcp-session-id")), "s-123");
  CHECK_STR(json_string_value(json_object_get(h, "mcp-protocol-version")), "2025-06-18");
  CHECK_STR(json_string_value(json_object_get(h, "x-empty")), "");
  CHECK_STR(json_string_value(json_object_get(h, "x-multi")), "a, b");
  CHECK_STR(json_string_value(json_object_get(h, "authorization")), "Bearer up-tok");
  CHECK_STR(json_string_value(json_object_get(h, "content-length")), "300000");
  CHECK(json_object_get(h, "expect") == NULL);
  CHECK(json_object_get(h, "accept") == NULL);
  CHECK_INT(json_integer_value(json_object_get(j, "body_len")), (long long)blen);
  const char *got = json_string_value(json_object_get(j, "body"));
  CHECK(got != NULL && strlen(got) == blen);
  for (size_t i = 0; i < blen; i++) CHECK(got[i] == (char)pattern(i));
  json_decref(j);

  CHECK_INT(d.err, 0);
  j = json_loads(tbody(&d), 0, &je);
  CHECK(j != NULL);
  h = json_object_get(j, "headers");
  CHECK_STR(json_string_value(json_object_get(j, "method")), "DELETE");
  CHECK_STR(json_string_value(json_object_get(h, "mcp-session-id")), "s-9");
  CHECK(json_object_get(h, "content-type") == NULL); /* curl's form default suppressed */
  CHECK_INT(json_integer_value(json_object_get(j, "body_len")), 0);
  json_decref(j);

  CHECK_INT(u.err, 0);
  j = json_loads(tbody(&u), 0, &je);
  CHECK(j != NULL);
  CHECK_STR(json_string_value(json_object_get(j, "method")), "PUT");
  CHECK_STR(json_string_value(json_object_get(j, "target")), "/echo?a=1&b=%2F"); /* query kept, fragment not sent */
  char hostport[64];
  snprintf(hostport, sizeof hostport, "127.0.0.1:%d", e.s.port);
  CHECK_STR(json_string_value(json_object_get(json_object_get(j, "headers"), "host")), hostport);
  CHECK_STR(json_string_value(json_object_get(j, "body")), "{}");
  CHECK(json_object_get(json_object_get(j, "headers"), "content-type") == NULL);
  json_decref(j);
  gw_buf_free(&p.body);
  gw_buf_free(&d.body);
  gw_buf_free(&u.body);
}

static void noop_done(gw_out_req *r, int err, void *ud) { (void)r; (void)err; (void)ud; }

TEST(invalid_options) {
  uv_loop_t loop;
  gw_out *o;
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(gw_out_new(&loop, &o), 0);
  gw_out_opts ok = {.method = "GET", .url = "http://127.0.0.1:1/x", .on_done = noop_done};
  gw_out_opts op;
#define BAD(...) do { op = ok; __VA_ARGS__; CHECK_INT(gw_out_start(o, &op, NULL), GW_OUT_EINVAL); } while (0)
  BAD(op.url = NULL);
  BAD(op.url = "");
  BAD(op.url = "ftp://example.com/x");
  BAD(op.url = "file:///etc/passwd");
  BAD(op.url = "http://");
  BAD(op.url = "http://exa mple.com/");
  BAD(op.url = "http://example.com/\r\nX: y");
  BAD(op.url = "example.com/x");
  BAD(op.method = NULL);
  BAD(op.method = "GE T");
  BAD(op.method = "GET\r\n");
  BAD(op.method = "HEAD"; op.body = "x"; op.body_len = 1);
  BAD(op.body_len = 3);
  BAD(op.on_done = NULL);
  BAD(op.idle_timeout_ms = -1);
  BAD(op.partial_timeout_ms = -1);
  BAD(op.headers = (const char *const[]){"X-Inject: a\r\nX-Evil: b", NULL});
  BAD(op.headers = (const char *const[]){"NoColon", NULL});
  BAD(op.headers = (const char *const[]){": novalue", NULL});
  BAD(op.headers = (const char *const[]){"Bad Name: v", NULL});
  BAD(op.headers = (const char *const[]){"Content-Length: 5", NULL});
  BAD(op.headers = (const char *const[]){"transfer-encoding: chunked", NULL});
  BAD(op.headers = (const char *const[]){"Connection: close", NULL});
#undef BAD
  static const char *many[GW_OUT_MAX_REQ_HEADERS + 2];
  for (int i = 0; i <= GW_OUT_MAX_REQ_HEADERS; i++) many[i] = "X-A: b";
  op = ok;
  op.headers = many;
  CHECK_INT(gw_out_start(o, &op, NULL), GW_OUT_EINVAL);
  gw_out_stats s;
  gw_out_stats_get(o, &s);
  CHECK_INT(s.started, 0);
  CHECK_INT(s.open, 0);
  /* After close: ECLOSED, and nothing runs. */
  gw_out_close(o, NULL, NULL);
  CHECK_INT(gw_out_start(o, &ok, NULL), GW_OUT_ECLOSED);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* A ca_file the TLS library could block the loop on (a FIFO, a pipe under
 * /proc/self/fd, a device, a procfs file, an empty or missing file) is
 * refused before anything starts; a regular PEM file is not. */
TEST(ca_file_must_be_a_regular_file) {
  uv_loop_t loop;
  gw_out *o;
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(gw_out_new(&loop, &o), 0);
  char dir[] = "/tmp/mcpgate-ca-XXXXXX", fifo[64], empty[64], pem[64], link_[64];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  snprintf(empty, sizeof empty, "%s/empty", dir);
  snprintf(pem, sizeof pem, "%s/ca.pem", dir);
  snprintf(link_, sizeof link_, "%s/link", dir);
  CHECK_INT(mkfifo(fifo, 0600), 0);
  FILE *f = fopen(empty, "w");
  CHECK(f != NULL);
  fclose(f);
  f = fopen(pem, "w");
  CHECK(f != NULL);
  fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  CHECK_INT(symlink(fifo, link_), 0);
  int pfd[2];
  CHECK_INT(pipe(pfd), 0);
  char selfpipe[64];
  snprintf(selfpipe, sizeof selfpipe, "/proc/self/fd/%d", pfd[0]);
  const char *bad[] = {fifo, link_, selfpipe, "/dev/zero", "/proc/self/environ", "/proc/kmsg", empty,
                       "/nonexistent/ca.pem", "", dir};
  gw_out_opts op = {.method = "GET", .url = "https://127.0.0.1:1/x", .on_done = noop_done};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    op.ca_file = bad[i];
    CHECK_INT(gw_out_start(o, &op, NULL), GW_OUT_ETLS);
  }
  gw_out_stats s;
  gw_out_stats_get(o, &s);
  CHECK_INT(s.started, 0);
  /* a regular file starts (the port refuses: that is the transfer's own
   * failure, reported by on_done); over plain http a ca_file is not read */
  op.ca_file = pem;
  CHECK_INT(gw_out_start(o, &op, NULL), 0);
  op.url = "http://127.0.0.1:1/x";
  op.ca_file = fifo;
  CHECK_INT(gw_out_start(o, &op, NULL), 0);
  gw_out_close(o, NULL, NULL);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(uv_loop_close(&loop), 0);
  close(pfd[0]);
  close(pfd[1]);
  unlink(link_);
  unlink(fifo);
  unlink(empty);
  unlink(pem);
  rmdir(dir);
}

/* ca_root (a tenant's folder of tenant_ca_dir): the file must resolve
 * inside it, whatever the path says — a link in the folder that leads out
 * of it is refused, one that stays in it is not — and gw_out_start refuses
 * such a transfer before anything starts. */
TEST(ca_root_keeps_the_file_inside) {
  char dir[] = "/tmp/mcpgate-caroot-XXXXXX", root[96], pem[128], out[128], in_link[128], out_link[128], sib[96],
      sibpem[128];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(root, sizeof root, "%s/acme", dir);
  snprintf(sib, sizeof sib, "%s/acme2", dir); /* a prefix of the folder's name is not the folder */
  snprintf(pem, sizeof pem, "%s/ca.pem", root);
  snprintf(sibpem, sizeof sibpem, "%s/ca.pem", sib);
  snprintf(out, sizeof out, "%s/outside.pem", dir);
  snprintf(in_link, sizeof in_link, "%s/in.pem", root);
  snprintf(out_link, sizeof out_link, "%s/out.pem", root);
  CHECK_INT(mkdir(root, 0700), 0);
  CHECK_INT(mkdir(sib, 0700), 0);
  const char *files[] = {pem, out, sibpem};
  for (size_t i = 0; i < 3; i++) {
    FILE *f = fopen(files[i], "w");
    CHECK(f != NULL);
    fputs("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", f);
    fclose(f);
  }
  CHECK_INT(symlink(pem, in_link), 0);
  CHECK_INT(symlink(out, out_link), 0);
  CHECK_INT(gw_out_ca_file_usable(pem, root), 0);
  CHECK_INT(gw_out_ca_file_usable(in_link, root), 0);
  CHECK_INT(gw_out_ca_file_usable(out_link, root), -1);
  CHECK_INT(gw_out_ca_file_usable(out_link, NULL), 0); /* no folder: any regular file */
  CHECK_INT(gw_out_ca_file_usable(out, root), -1);
  CHECK_INT(gw_out_ca_file_usable(sibpem, root), -1);
  CHECK_INT(gw_out_ca_file_usable(root, root), -1); /* the folder itself is no file */
  CHECK_INT(gw_out_ca_file_usable(pem, "/nonexistent/acme"), -1);
  CHECK_INT(gw_out_ca_file_usable(NULL, root), -1);

  uv_loop_t loop;
  gw_out *o;
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(gw_out_new(&loop, &o), 0);
  gw_out_opts op = {.method = "GET", .url = "https://127.0.0.1:1/x", .on_done = noop_done, .ca_root = root};
  op.ca_file = out_link;
  CHECK_INT(gw_out_start(o, &op, NULL), GW_OUT_ETLS);
  op.ca_file = in_link; /* starts (the port refuses: the transfer's own failure) */
  CHECK_INT(gw_out_start(o, &op, NULL), 0);
  gw_out_close(o, NULL, NULL);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(uv_loop_close(&loop), 0);
  unlink(in_link);
  unlink(out_link);
  unlink(pem);
  unlink(sibpem);
  unlink(out);
  rmdir(root);
  rmdir(sib);
  rmdir(dir);
}

TEST(pause_resume_in_on_data) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PAUSE_EVERY3);
  size_t n = 1000000;
  char path[64];
  snprintf(path, sizeof path, "/big?n=%zu", n);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 2000}, path), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK(!t.reentered);
  CHECK(!t.data_while_paused);
  CHECK(t.pauses >= 5);
  CHECK_INT(t.body.len, n); /* every byte once ... */
  for (size_t i = 0; i < n; i++) CHECK((unsigned char)t.body.data[i] == pattern(i)); /* ... in order */
  gw_buf_free(&t.body);
}

TEST(pause_suspends_idle_timeout) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PAUSE_IN_HEADERS);
  /* Paused from on_headers for 300 ms with a 100 ms idle timeout: the
   * server sends its 5 events meanwhile; none is delivered while paused
   * and the idle timer does not fire. */
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){.idle_timeout_ms = 100}, "/sse?n=5&ms=10"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK(!t.data_while_paused);
  CHECK(tms(&t) >= 290);
  char want[512] = "";
  for (int i = 0; i < 5; i++)
    snprintf(want + strlen(want), sizeof want - strlen(want), "id: %d\ndata: {\"i\":%d}\n\n", i, i);
  CHECK_STR(tbody(&t), want);
  gw_buf_free(&t.body);
}

TEST(abort_in_on_data) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_ABORT_IN_DATA);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/sse?n=50&ms=5"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_EABORTED);
  CHECK_INT(t.ndone, 1);
  CHECK_INT(t.ndata, 1);
  CHECK(!t.reentered);
  CHECK(!t.data_after_abort);
  CHECK_INT(FAILED(e.st, GW_OUT_EABORTED), 1);
  CHECK_INT(e.st.open, 0);
  CHECK_INT(e.st.started, 1);
  gw_buf_free(&t.body);
}

TEST(abort_in_on_headers_and_before_start) {
  env e;
  tr t, u;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_ABORT_IN_HEADERS);
  tr_init(&u, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/sse?n=50&ms=5"), 0);
  CHECK_INT(tr_go(&e, &u, (gw_out_opts){0}, "/json"), 0);
  gw_out_abort(u.r); /* before the loop ever ran: on_done must still come later */
  CHECK_INT(u.ndone, 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, GW_OUT_EABORTED);
  CHECK_INT(t.ndone, 1);
  CHECK_INT(t.nheaders, 1);
  CHECK_INT(t.ndata, 0);
  CHECK(!t.reentered);
  CHECK_INT(u.err, GW_OUT_EABORTED);
  CHECK_INT(u.ndone, 1);
  CHECK_INT(u.nheaders, 0);
  gw_buf_free(&t.body);
  gw_buf_free(&u.body);
}

TEST(start_from_inside_on_data) {
  env e;
  tr t, child;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_START_IN_DATA);
  tr_init(&child, &e, M_PLAIN);
  t.child = &child;
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/chunked"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK_INT(child.ndone, 1);
  CHECK_INT(child.err, 0);
  CHECK_STR(tbody(&child), "{\"ok\":true}");
  gw_buf_free(&t.body);
  gw_buf_free(&child.body);
}

/* gw_out_close from inside on_data once all three streams have data; the
 * silent request is still waiting for its head. */
static tr *g_close_set[4];
static void t_close_engine(tr *t) {
  for (int i = 0; i < 3; i++)
    if (g_close_set[i]->ndata == 0) return;
  if (!t->e->finished) env_finish(t->e);
}

static void close_done_hook(tr *t) {
  gw_out_opts op = {.method = "GET", .url = "http://127.0.0.1:1/", .on_done = noop_done};
  t->start_rc_in_done = gw_out_start(t->e->o, &op, NULL);
}

TEST(close_with_live_transfers) {
  env e;
  tr t[4];
  int fds0 = count_fds();
  CHECK_INT(env_init(&e), 0);
  for (int i = 0; i < 4; i++) {
    tr_init(&t[i], &e, i < 3 ? M_CLOSE_IN_DATA : M_PLAIN);
    t[i].hook = close_done_hook;
    g_close_set[i] = &t[i];
  }
  for (int i = 0; i < 3; i++) CHECK_INT(tr_go(&e, &t[i], (gw_out_opts){0}, "/sse?n=0&ms=10"), 0);
  CHECK_INT(tr_go(&e, &t[3], (gw_out_opts){0}, "/silent"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.out_closed, 1);
  for (int i = 0; i < 4; i++) {
    CHECK_INT(t[i].ndone, 1);
    CHECK_INT(t[i].err, GW_OUT_EABORTED);
    CHECK_INT(t[i].start_rc_in_done, GW_OUT_ECLOSED);
    CHECK(!t[i].reentered);
    gw_buf_free(&t[i].body);
  }
  CHECK_INT(t[3].nheaders, 0);
  CHECK_INT(count_fds(), fds0);
}

static void many_hook(tr *t) {
  if (t->err != 0 || strcmp(tbody(t), "part0-part1-part2-part3-part4-") != 0) t->e->bad++;
  t->e->completed++;
}

TEST(many_concurrent) {
  enum { N = 50 };
  env e;
  tr *t = calloc(N, sizeof *t);
  CHECK_INT(env_init(&e), 0);
  for (int i = 0; i < N; i++) {
    tr_init(&t[i], &e, M_PLAIN);
    t[i].hook = many_hook;
    CHECK_INT(tr_go(&e, &t[i], (gw_out_opts){0}, "/chunked"), 0);
  }
  CHECK_INT(stats(&e).open, N);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.completed, N);
  CHECK_INT(e.bad, 0);
  for (int i = 0; i < N; i++) gw_buf_free(&t[i].body);
  free(t);
}

/* Hundreds of short connections, half closed by the server after each
 * response (Connection: close), half kept alive, 25 in flight: closed fds
 * are recycled at once for new sockets (server and client share the
 * process's fd table), which trips an engine that closes an fd while a
 * uv_poll still watches it. */
static void reuse_hook(tr *t) {
  env *e = t->e;
  e->completed++;
  bool close_path = strcmp(tbody(t), "bye") == 0;
  if (t->err != 0 || (!close_path && strcmp(tbody(t), "{\"ok\":true}") != 0)) e->bad++;
  gw_buf_free(&t->body);
  if (e->launched < e->total) {
    int i = e->launched++;
    if (tr_go(e, &e->pool[i], (gw_out_opts){0}, i % 2 ? "/json" : "/close") != 0) e->bad++;
  }
}

TEST(fd_reuse_many_short_connections) {
  env e;
  int fds0 = count_fds();
  CHECK_INT(env_init(&e), 0);
  e.total = 400;
  e.pool = calloc((size_t)e.total, sizeof(tr));
  for (int i = 0; i < e.total; i++) {
    tr_init(&e.pool[i], &e, M_PLAIN);
    e.pool[i].hook = reuse_hook;
  }
  for (e.launched = 0; e.launched < 25;) {
    int i = e.launched++;
    CHECK_INT(tr_go(&e, &e.pool[i], (gw_out_opts){0}, i % 2 ? "/json" : "/close"), 0);
  }
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.completed, e.total);
  CHECK_INT(e.bad, 0);
  CHECK(e.s.accepted > 200); /* every /close costs a connection */
  CHECK_INT(count_fds(), fds0);
  free(e.pool);
}

/* ---- egress policy ---------------------------------------------------------- */

/* Public only (no policy): 127.0.0.1, localhost (127.0.0.1 and ::1) and the
 * IPv4-mapped form of 127.0.0.1 are all refused before a socket exists —
 * the server never sees a connection — with the distinct error kind and a
 * detail naming the address and the config key. */
TEST(egress_refuses_before_connecting) {
  env e;
  tr a, b, c, d;
  char url[128];
  gw_egress *named = NULL;
  char err[200];
  CHECK_INT(gw_egress_parse("egress_allow", "", &named, err, sizeof err), 0);
  CHECK_INT(env_init(&e), 0);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_UNTRUSTED, NULL);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_ADMIN, named);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  tr_init(&c, &e, M_PLAIN);
  tr_init(&d, &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){0}, "/json"), 0);
  snprintf(url, sizeof url, "http://localhost:%d/json", e.s.port);
  CHECK_INT(tr_go(&e, &b, (gw_out_opts){.egress = GW_OUT_EGRESS_ADMIN}, url), 0);
  snprintf(url, sizeof url, "http://[::ffff:127.0.0.1]:%d/json", e.s.port);
  CHECK_INT(tr_go(&e, &c, (gw_out_opts){.egress = GW_OUT_EGRESS_ADMIN}, url), 0);
  CHECK_INT(tr_go(&e, &d, (gw_out_opts){.egress = 7}, "/json"), GW_OUT_EINVAL);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, GW_OUT_EEGRESS);
  CHECK_INT(b.err, GW_OUT_EEGRESS);
  CHECK_INT(c.err, GW_OUT_EEGRESS);
  CHECK_INT(a.nheaders + b.nheaders + c.nheaders, 0);
  CHECK_INT(e.s.accepted, 0);
  CHECK_INT(FAILED(e.st, GW_OUT_EEGRESS), 3);
  CHECK(strstr(a.detail, "127.0.0.1") != NULL);
  CHECK(strstr(b.detail, "egress_allow") != NULL);
  CHECK(strstr(c.detail, "127.0.0.1") != NULL);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
  gw_buf_free(&c.body);
  gw_buf_free(&d.body);
  gw_egress_free(named);
}

static void next_hook(tr *t) {
  if (t->next.url && t->next_tr && tr_go(t->e, t->next_tr, t->next, t->next.url) != 0) t->e->bad++;
}

/* Trust levels: the admin level (loopback allowed) fetches, and keeps the
 * connection in curl's cache; an untrusted transfer to the same host and
 * port would reuse it without opening a socket — the check before the
 * request refuses it, and no second request reaches the server. A host
 * name entry allows that name wherever it resolves. */
TEST(egress_levels_and_connection_reuse) {
  env e;
  tr a, b, c;
  char url[128], url2[128];
  gw_egress *admin = NULL, *byname = NULL;
  char err[200];
  CHECK_INT(gw_egress_parse("egress_allow", "127.0.0.0/8", &admin, err, sizeof err), 0);
  CHECK_INT(gw_egress_parse("egress_allow", "LocalHost", &byname, err, sizeof err), 0);
  CHECK_INT(env_init(&e), 0);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_UNTRUSTED, NULL);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_ADMIN, admin);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  a.hook = next_hook;
  a.next_tr = &b;
  snprintf(url, sizeof url, "%s/json", e.base);
  a.next = (gw_out_opts){.egress = GW_OUT_EGRESS_UNTRUSTED, .url = url};
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){.egress = GW_OUT_EGRESS_ADMIN}, "/json"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.bad, 0);
  CHECK_INT(a.err, 0);
  CHECK_INT(a.status, 200);
  CHECK_INT(b.ndone, 1);
  CHECK_INT(b.err, GW_OUT_EEGRESS);
  CHECK_INT(b.nheaders, 0);
  CHECK_INT(e.s.accepted, 1);
  CHECK_INT(e.s.requests, 1);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);

  CHECK_INT(env_init(&e), 0);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_UNTRUSTED, NULL);
  gw_out_set_egress(e.o, GW_OUT_EGRESS_ADMIN, byname);
  tr_init(&c, &e, M_PLAIN);
  snprintf(url2, sizeof url2, "http://localhost:%d/json", e.s.port);
  CHECK_INT(tr_go(&e, &c, (gw_out_opts){.egress = GW_OUT_EGRESS_ADMIN}, url2), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(c.err, 0);
  CHECK_INT(c.status, 200);
  gw_buf_free(&c.body);
  gw_egress_free(admin);
  gw_egress_free(byname);
}

/* A connection the server closes after an answer that allowed keep-alive:
 * the next request must not fail on it — either the close was seen while
 * it sat idle, or the request goes again on a fresh connection (once). */
static void quiet_hook(tr *t) {
  env *e = t->e;
  e->completed++;
  if (t->err != 0 || strcmp(tbody(t), "{\"ok\":true}") != 0) e->bad++;
  if (e->launched < e->total) {
    tr *n = &e->pool[e->launched++];
    n->hook = quiet_hook;
    if (tr_go(e, n, (gw_out_opts){0}, "/quietclose") != 0) e->bad++;
  }
}

TEST(keepalive_peer_closes_idle_connection) {
  env e;
  tr pool[6];
  CHECK_INT(env_init(&e), 0);
  for (int i = 0; i < 6; i++) tr_init(&pool[i], &e, M_PLAIN);
  pool[0].hook = quiet_hook;
  e.pool = pool;
  e.total = 6;
  e.launched = 1;
  CHECK_INT(tr_go(&e, &pool[0], (gw_out_opts){0}, "/quietclose"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(e.completed, 6);
  CHECK_INT(e.bad, 0);
  CHECK_INT(e.s.requests, 6); /* each request reached the server once */
  CHECK_INT(e.s.accepted, 6);
  for (int i = 0; i < 6; i++) gw_buf_free(&pool[i].body);
}

/* Bytes after a complete answer: the answer is delivered, the connection
 * is not lent to the next request (its stream is out of step). */
TEST(bytes_after_response_not_reused) {
  env e;
  tr a, b;
  CHECK_INT(env_init(&e), 0);
  tr_init(&a, &e, M_PLAIN);
  tr_init(&b, &e, M_PLAIN);
  a.hook = next_hook;
  a.next_tr = &b;
  char url[128];
  snprintf(url, sizeof url, "%s/json", e.base);
  a.next = (gw_out_opts){.url = url};
  CHECK_INT(tr_go(&e, &a, (gw_out_opts){0}, "/extra"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(a.err, 0);
  CHECK_STR(tbody(&a), "hi");
  CHECK_INT(b.err, 0);
  CHECK_STR(tbody(&b), "{\"ok\":true}");
  CHECK_INT(e.s.accepted, 2);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
}

/* Paused by on_data on the last byte of a read while the body goes on:
 * the resume must not hand on_data an empty span (llhttp flushes its open
 * body span, 0 bytes long, when the parser resumes on no input). Found by
 * fuzz_out_h1 (corpus: pause_at_read_end_empty_span). */
TEST(pause_at_read_end_no_empty_data) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PAUSE_FIRST);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, "/halves"), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK_INT(t.pauses, 1);
  CHECK_INT(t.empty_data, 0);
  CHECK_STR(tbody(&t), "helloworld");
  gw_buf_free(&t.body);
}

/* Paused from on_headers while a large body streams in: nothing is
 * delivered while paused, then every byte once, in order. */
TEST(pause_in_headers_large_body) {
  env e;
  tr t;
  CHECK_INT(env_init(&e), 0);
  tr_init(&t, &e, M_PAUSE_IN_HEADERS);
  size_t n = 1000000;
  char path[64];
  snprintf(path, sizeof path, "/big?n=%zu", n);
  CHECK_INT(tr_go(&e, &t, (gw_out_opts){0}, path), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  CHECK_INT(t.err, 0);
  CHECK(!t.data_while_paused);
  CHECK_INT(t.body.len, n);
  for (size_t i = 0; i < n; i++) CHECK((unsigned char)t.body.data[i] == pattern(i));
  gw_buf_free(&t.body);
}

/* The process's upstream budget (gw_out_budget_set): 16 transfers, a key
 * holds 4 while fewer than 8 are taken, then 1. A start past it returns 0
 * and its on_done runs later, from the loop, with GW_OUT_EBUSY, on both
 * paths (an https:// start is refused before curl sees it); every place
 * comes back when its transfer ends. */
TEST(upstream_budget_shares) {
  env e;
  tr t[20];
  CHECK_INT(env_init(&e), 0);
  gw_out_budget_set(16, 0);
  CHECK_INT(gw_out_budget_max(), 16);
  const char *keys[] = {"a", "a", "a", "a", "a", "a", "b", "b", "b", "b", "b", "b", "c", "c", "c"};
  for (int i = 0; i < 15; i++) {
    tr_init(&t[i], &e, M_PLAIN);
    CHECK_INT(tr_go(&e, &t[i], (gw_out_opts){.first_byte_timeout_ms = 300, .fair_key = keys[i]}, "/silent"), 0);
    CHECK_INT(t[i].ndone, 0); /* never from inside gw_out_start */
  }
  char tls[256];
  snprintf(tls, sizeof tls, "https://127.0.0.1:%d/json", e.s.port);
  tr_init(&t[15], &e, M_PLAIN);
  CHECK_INT(tr_go(&e, &t[15], (gw_out_opts){.fair_key = "a"}, tls), 0);
  CHECK_INT(env_run(&e), 0);
  CHECK(!e.timed_out);
  int want_busy[16] = {0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1};
  for (int i = 0; i < 16; i++) {
    CHECK_INT(t[i].ndone, 1);
    CHECK_INT(t[i].err, want_busy[i] ? GW_OUT_EBUSY : GW_OUT_EFIRSTBYTE);
    gw_buf_free(&t[i].body);
  }
  CHECK_INT(FAILED(e.st, GW_OUT_EBUSY), 7);
  CHECK(strstr(gw_out_strerror(GW_OUT_EBUSY), "upstream connections") != NULL);
  CHECK_STR(gw_out_err_kind(GW_OUT_EBUSY), "busy");

  /* every place came back: one key takes its four again */
  env e2;
  CHECK_INT(env_init(&e2), 0);
  for (int i = 0; i < 5; i++) {
    tr_init(&t[i], &e2, M_PLAIN);
    CHECK_INT(tr_go(&e2, &t[i], (gw_out_opts){.first_byte_timeout_ms = 200, .fair_key = "c"}, "/silent"), 0);
  }
  CHECK_INT(env_run(&e2), 0);
  for (int i = 0; i < 5; i++) {
    CHECK_INT(t[i].err, i < 4 ? GW_OUT_EFIRSTBYTE : GW_OUT_EBUSY);
    gw_buf_free(&t[i].body);
  }

  /* classes: each its own key; the gateway's own work has a reserve of a
   * quarter past the budget, unauthenticated work has none */
  env e3;
  CHECK_INT(env_init(&e3), 0);
  gw_out_budget_set(8, 0); /* a key: 2, then 1 once 4 are taken; the reserve: 2 */
  struct {
    const char *key;
    int cls, busy;
  } c3[] = {
      {"k1", GW_OUT_BUDGET_CALLS, 0},   {"k2", GW_OUT_BUDGET_CALLS, 0},   {"k3", GW_OUT_BUDGET_CALLS, 0},
      {"k4", GW_OUT_BUDGET_CALLS, 0},   {"k5", GW_OUT_BUDGET_CALLS, 0},   {"k6", GW_OUT_BUDGET_CALLS, 0},
      {"k7", GW_OUT_BUDGET_CALLS, 0},   {"k8", GW_OUT_BUDGET_CALLS, 0},   {"k9", GW_OUT_BUDGET_CALLS, 1},
      {"k1", GW_OUT_BUDGET_PUBLIC, 1},  {"k1", GW_OUT_BUDGET_GATEWAY, 0}, {"k1", GW_OUT_BUDGET_GATEWAY, 1},
      {"k2", GW_OUT_BUDGET_GATEWAY, 0}, {"k3", GW_OUT_BUDGET_GATEWAY, 1},
  };
  for (int i = 0; i < 14; i++) {
    tr_init(&t[i], &e3, M_PLAIN);
    CHECK_INT(tr_go(&e3, &t[i], (gw_out_opts){.first_byte_timeout_ms = 200, .fair_key = c3[i].key,
                                              .budget_class = c3[i].cls}, "/silent"), 0);
  }
  tr_init(&t[14], &e3, M_PLAIN);
  CHECK_INT(tr_go(&e3, &t[14], (gw_out_opts){.budget_class = GW_OUT_BUDGET_CLASSES}, "/silent"), GW_OUT_EINVAL);
  CHECK_INT(env_run(&e3), 0);
  for (int i = 0; i < 14; i++) {
    CHECK_INT(t[i].err, c3[i].busy ? GW_OUT_EBUSY : GW_OUT_EFIRSTBYTE);
    gw_buf_free(&t[i].body);
  }
  gw_buf_free(&t[14].body);
  gw_out_budget_set(0, 0); /* the other tests run without one */
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  char perr[200];
  if (gw_egress_parse("egress_allow", "127.0.0.0/8, ::1", &loopback_policy, perr, sizeof perr) != 0) {
    fprintf(stderr, "egress policy: %s\n", perr);
    return 1;
  }
  RUN(error_names);
  RUN(parse_head_folds_keep_values_trimmed);
  RUN(json_content_length);
  RUN(status_head_interim_no_redirect);
  RUN(status_below_100_is_a_protocol_error);
  RUN(chunked_spaced_writes);
  RUN(sse_stream_idle_resets);
  RUN(first_byte_timeout);
  RUN(idle_timeout);
  RUN(partial_timeout);
  RUN(partial_timeout_restarts);
  RUN(reset_mid_body);
  RUN(header_cap);
  RUN(keepalive_reuse);
  RUN(connect_refused_and_tls_failure);
  RUN(connect_timeout);
  RUN(resolver_names);
  RUN(post_echo_and_methods);
  RUN(invalid_options);
  RUN(ca_file_must_be_a_regular_file);
  RUN(ca_root_keeps_the_file_inside);
  RUN(pause_resume_in_on_data);
  RUN(pause_suspends_idle_timeout);
  RUN(abort_in_on_data);
  RUN(abort_in_on_headers_and_before_start);
  RUN(start_from_inside_on_data);
  RUN(close_with_live_transfers);
  RUN(many_concurrent);
  RUN(fd_reuse_many_short_connections);
  RUN(egress_refuses_before_connecting);
  RUN(egress_levels_and_connection_reuse);
  RUN(keepalive_peer_closes_idle_connection);
  RUN(bytes_after_response_not_reused);
  RUN(pause_in_headers_large_body);
  RUN(pause_at_read_end_no_empty_data);
  RUN(upstream_budget_shares);
  gw_egress_free(loopback_policy);
  return UNIT_DONE();
}
