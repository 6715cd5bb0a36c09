/* tests/bench/rate.c — an open-loop HTTP/1.1 load generator: requests are
 * scheduled at a fixed rate whatever the server does (a 1 ms timer
 * releases the ones due), and each latency is measured from the tick that
 * released it — a slow answer delays the requests behind it, and they are
 * charged for the wait (no coordinated omission). For latency at a given
 * load, where wrk measures at saturation.
 *
 *   build/bench/rate --port P --path /p --rps R [--secs 5] [--conns 16]
 *                    [--header "Name: value"]... --body 'text with {ID}'
 *
 * Every request is a POST of --body with each "{ID}" replaced by a
 * counter. One request in flight per connection (keep-alive, no
 * pipelining); requests due while every connection is busy wait in a
 * queue. Prints one JSON line: {"sent","done","errors","rps","p50","p99",
 * "p999"} with latencies in microseconds. A non-2xx answer counts as an
 * error (and its latency is still recorded). */
#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct rconn {
  uv_tcp_t tcp;
  llhttp_t parser;
  int busy;
  uint64_t sched_ns; /* the scheduled time of the request in flight */
  char *wbuf;
} rconn;

static llhttp_settings_t settings;
static uv_loop_t *loop;
static rconn *conns;
static int nconns, port;
static const char *path = "/";
static char headers[8192];
static const char *body = "";
static double rps = 1000;
static uint64_t start_ns, end_ns, deadline_ns, next_k, total;
static double secs = 5;
static uint64_t *queue; /* scheduled times waiting for a connection */
static size_t qhead, qtail, qcap;
static uint64_t *lat; /* ns */
static size_t nlat, sent, errors;
static uv_timer_t tick;

static void send_req(rconn *c, uint64_t sched) {
  static uint64_t id;
  char idbuf[32];
  int il = snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)++id);
  size_t bl = strlen(body), n = 0;
  char *b = malloc(bl + 64 + 1);
  for (const char *p = body; *p;) {
    if (!strncmp(p, "{ID}", 4)) {
      memcpy(b + n, idbuf, (size_t)il);
      n += (size_t)il;
      p += 4;
    } else {
      b[n++] = *p++;
    }
  }
  size_t cap = n + strlen(headers) + strlen(path) + 256;
  free(c->wbuf);
  c->wbuf = malloc(cap);
  int h = snprintf(c->wbuf, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: %zu\r\n\r\n", path, port,
                   headers, n);
  memcpy(c->wbuf + h, b, n);
  free(b);
  uv_buf_t ub = uv_buf_init(c->wbuf, (unsigned)(h + (int)n));
  c->busy = 1;
  c->sched_ns = sched;
  sent++;
  if (uv_try_write((uv_stream_t *)&c->tcp, &ub, 1) != (int)ub.len) {
    fprintf(stderr, "rate: write failed (a partial write is not handled: raise the socket buffer)\n");
    exit(1);
  }
}

static rconn *idle_conn(void) {
  for (int i = 0; i < nconns; i++)
    if (!conns[i].busy) return &conns[i];
  return NULL;
}

static void dispatch(void) {
  rconn *c;
  while (qhead < qtail && (c = idle_conn())) send_req(c, queue[qhead++]);
}

static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  while (next_k < total) {
    uint64_t due = start_ns + (uint64_t)((double)next_k * 1e9 / rps);
    if (due > now) break;
    if (qtail == qcap) {
      memmove(queue, queue + qhead, (qtail - qhead) * sizeof *queue);
      qtail -= qhead;
      qhead = 0;
    }
    /* charged from this tick, when the generator could first send it:
     * the timer's millisecond granularity is the generator's, not the
     * server's; waiting for a busy connection is the server's */
    queue[qtail++] = now;
    next_k++;
  }
  dispatch();
  if (next_k >= total && qhead == qtail && nlat == sent) uv_stop(loop);
  if (now > deadline_ns) uv_stop(loop); /* answers that never came */
  (void)t;
}

static int on_complete(llhttp_t *p) {
  rconn *c = p->data;
  lat[nlat++] = uv_hrtime() - c->sched_ns;
  int st = llhttp_get_status_code(p);
  if (st < 200 || st >= 300) errors++;
  c->busy = 0;
  dispatch();
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char buf[1 << 16];
  (void)h;
  (void)hint;
  *b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  rconn *c = s->data;
  if (n < 0) {
    fprintf(stderr, "rate: a connection closed (%s)\n", uv_strerror((int)n));
    exit(1);
  }
  if (n > 0 && llhttp_execute(&c->parser, b->base, (size_t)n) != HPE_OK) {
    fprintf(stderr, "rate: bad response: %s\n", llhttp_get_error_reason(&c->parser));
    exit(1);
  }
}

static int connected;
static void on_connect(uv_connect_t *req, int status) {
  rconn *c = req->data;
  free(req);
  if (status < 0) {
    fprintf(stderr, "rate: connect: %s\n", uv_strerror(status));
    exit(1);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (++connected == nconns) {
    start_ns = uv_hrtime();
    deadline_ns = start_ns + (uint64_t)(secs * 1e9) + 10ull * 1000000000ull;
    uv_timer_start(&tick, on_tick, 0, 1);
  }
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  nconns = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--path")) path = argv[i + 1];
    else if (!strcmp(argv[i], "--rps")) rps = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--secs")) secs = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--conns")) nconns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--body")) body = argv[i + 1];
    else if (!strcmp(argv[i], "--header")) {
      size_t l = strlen(headers);
      snprintf(headers + l, sizeof headers - l, "%s\r\n", argv[i + 1]);
    } else {
      fprintf(stderr, "usage: rate --port P --path /p --rps R [--secs S] [--conns C] [--header H]... --body B\n");
      return 2;
    }
  }
  if (!port || rps <= 0 || nconns < 1) return 2;
  total = (uint64_t)(rps * secs);
  qcap = total + 1;
  queue = calloc(qcap, sizeof *queue);
  lat = calloc(total + 1, sizeof *lat);
  conns = calloc((size_t)nconns, sizeof *conns);
  loop = uv_default_loop();
  llhttp_settings_init(&settings);
  settings.on_message_complete = on_complete;
  uv_timer_init(loop, &tick);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  for (int i = 0; i < nconns; i++) {
    rconn *c = &conns[i];
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
    uv_connect_t *r = malloc(sizeof *r);
    r->data = c;
    uv_tcp_connect(r, &c->tcp, (const struct sockaddr *)&addr, on_connect);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  end_ns = uv_hrtime();
  qsort(lat, nlat, sizeof *lat, cmp);
  double took = (double)(end_ns - start_ns) / 1e9;
#define PCT(p) (nlat ? (double)lat[(size_t)((double)(nlat - 1) * (p))] / 1e3 : 0.0)
  printf("{\"sent\":%zu,\"done\":%zu,\"errors\":%zu,\"rps\":%.0f,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f}\n", sent, nlat,
         errors + (sent - nlat), (double)nlat / took, PCT(0.50), PCT(0.99), PCT(0.999));
  return 0;
}
