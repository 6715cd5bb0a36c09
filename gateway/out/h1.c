/* gateway/out/h1.c — the outbound engine's native HTTP/1.1 path: every
 * plain http:// transfer runs here, on libuv TCP handles and llhttp, with
 * its own keep-alive pool; https:// stays with libcurl (TLS, HTTP/2). The
 * contract is outbound.h's, unchanged: the same callbacks in the same
 * order, the same timeouts, the same egress rules, the same errors.
 *
 * Why: libcurl's multi-socket API costs a poll(2) and several epoll_ctl
 * calls per transfer on a reused connection, plus its own bookkeeping — on
 * the gateway's hot path (one small tools/call) that was more CPU than the
 * rest of the upstream hop. Here a reused connection costs one writev and
 * the reads of the answer: the connection keeps reading while it is idle
 * (which is also how a peer's close is noticed), so nothing is re-armed
 * per request.
 *
 * Rules this file keeps, and why:
 *
 *  1. One connection carries one transfer at a time; a connection returns
 *     to the idle pool only after a complete response that allows
 *     keep-alive, with no byte beyond it and its request fully written.
 *     Anything else (an error, an abort, a pause the transfer ended in,
 *     extra bytes, an answer that overtook its request) closes it.
 *  2. Egress (outbound.h, rule 5 of outbound.c) is checked on addresses:
 *     each address a name resolves to before a socket is created for it,
 *     and the peer of an idle connection before it is lent to a transfer
 *     (a connection opened for a more trusted transfer is not lent to a
 *     less trusted one).
 *  3. A reused connection that dies before any byte of the answer (the peer
 *     closed it while idle) is replaced once by a fresh one and the request
 *     sent again, as curl does; a fresh connection is never retried.
 *  4. on_done runs only through gw__out_finish / gw__out_fail: from a read
 *     or connect callback after llhttp has returned (never from inside the
 *     parser, whose connection may already be lent again by on_done), or
 *     from the engine's idle runner.
 *  5. Pause. on_data answering GW_OUT_PAUSE (or gw_out_pause) pauses llhttp
 *     (HPE_PAUSED from the body callback) and stops reading; the unparsed
 *     rest of that read is kept on the connection, and the body span that
 *     arrived while paused from outside is held on the transfer. Resume
 *     (from the idle runner) delivers the held span, then parses the rest,
 *     then reads again. At most one read buffer is held per paused
 *     transfer: back-pressure reaches the upstream's socket.
 *  6. Reads of every connection share one buffer per engine (a read is
 *     parsed before the next read happens); bytes kept across a pause are
 *     copied. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/out/out_int.h"

#define H1_RBUF (64 * 1024)
#define H1_MAX_AGE_MS 118000 /* curl's default CURLOPT_MAXAGE_CONN */

struct h1_conn {
  gw_out *o;
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t p;
  gw_out_req *r;          /* the transfer it carries; NULL when idle */
  h1_conn *prev, *next;   /* the idle list */
  char key[300];
  struct sockaddr_storage peer;
  uint64_t idle_since;
  char *rest;             /* unparsed bytes kept while paused (rule 5) */
  size_t rest_len;
  bool idle, closing, reading, msg_done, broken, writing;
};

struct h1_gai {
  uv_getaddrinfo_t req;
  gw_out_req *r; /* NULL once the transfer no longer waits for it */
  char key[64];  /* the gate's key it holds a place of, given back by on_gai */
};

/* ---- the lookup gate ------------------------------------------------------
 * Name lookups run on libuv's pool (uv_getaddrinfo), which the heavy reads
 * share (gateway/core/limits.h: 16 threads), and a lookup that runs cannot
 * be taken back: a slow DNS server holds its thread until the resolver
 * gives up, 20 s and more, whatever the transfer's connect timeout did.
 * libuv runs at most half its pool's threads ((n + 1) / 2) of such "slow
 * I/O" work at once, whatever is queued: found by review, one tenant's
 * connector at a slowly resolving name (a dozen calls) took every one of
 * those places, and every other tenant's fresh upstream connection timed
 * out behind it (and the review of the first fix: two such tenants did,
 * when each key could hold two). So, process-wide (every loop's engine):
 * at most gate_max lookups on the pool at once — libuv's own limit, so a
 * lookup never queues inside libuv where nothing can order it — and one
 * key (gw_out_opts.fair_key: the tenant) holds at most 2 of them while
 * fewer than half are taken, else 1. It takes as many tenants with slow
 * names as half those places to hold them all (4 with the gateway's 16
 * threads: limits.h). A lookup past the gate waits in its engine's queue,
 * and the queue is asked again (oldest first, skipping keys at their
 * share) when one of the engine's own lookups ends and every
 * H1_GAI_RETRY_MS while any waits; a transfer still waiting at its
 * connect timeout fails as any connect that took too long, its error
 * saying the lookup did not get its turn. */
#define H1_GAI_KEYS 64
#define H1_GAI_RETRY_MS 10

static uv_mutex_t gate_mu;
static int gate_total, gate_max;
static struct {
  char key[64];
  int n;
} gate_keys[H1_GAI_KEYS];

static bool gate_take(const char *key) {
  bool ok = false;
  uv_mutex_lock(&gate_mu);
  if (gate_total < gate_max) {
    int i, room = -1;
    for (i = 0; i < gate_max; i++) {
      if (gate_keys[i].n && !strcmp(gate_keys[i].key, key)) break;
      if (!gate_keys[i].n && room < 0) room = i;
    }
    if (i < gate_max) {
      ok = gate_keys[i].n < (2 * gate_total < gate_max ? 2 : 1);
      if (ok) gate_keys[i].n++;
    } else if (room >= 0) { /* always, below gate_max in flight */
      snprintf(gate_keys[room].key, sizeof gate_keys[room].key, "%s", key);
      gate_keys[room].n = 1;
      ok = true;
    }
    if (ok) gate_total++;
  }
  uv_mutex_unlock(&gate_mu);
  return ok;
}

static void gate_give(const char *key) {
  uv_mutex_lock(&gate_mu);
  for (int i = 0; i < gate_max; i++)
    if (gate_keys[i].n && !strcmp(gate_keys[i].key, key)) {
      gate_keys[i].n--;
      gate_total--;
      break;
    }
  uv_mutex_unlock(&gate_mu);
}

static llhttp_settings_t h1_settings;
static uv_once_t h1_once = UV_ONCE_INIT;
static void h1_init_settings(void);

/* ---- connections ---------------------------------------------------------- */

static void conn_closed(uv_handle_t *h) {
  h1_conn *c = h->data;
  gw_out *o = c->o;
  free(c->rest);
  free(c);
  OUT_STAT(o->st.sockets, -1);
  gw__out_handle_gone(o);
}

static void idle_unlink(h1_conn *c) {
  gw_out *o = c->o;
  if (!c->idle) return;
  if (c->prev) c->prev->next = c->next;
  else o->h1.idle = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->idle = false;
  o->h1.nidle--;
}

/* Closes c; the transfer it carried (if any) is detached, not failed. */
static void conn_close(h1_conn *c) {
  if (c->closing) return;
  c->closing = true;
  idle_unlink(c);
  if (c->r) {
    c->r->h1.conn = NULL;
    c->r = NULL;
  }
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  h1_conn *c = h->data;
  gw_out *o = c->o;
  (void)hint;
  if (!o->h1.rbuf) o->h1.rbuf = malloc(H1_RBUF);
  *b = uv_buf_init(o->h1.rbuf, o->h1.rbuf ? H1_RBUF : 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void read_on(h1_conn *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void read_off(h1_conn *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static void pool_put(h1_conn *c) {
  gw_out *o = c->o;
  c->idle = true;
  c->idle_since = uv_now(o->loop);
  c->prev = NULL;
  c->next = o->h1.idle;
  if (o->h1.idle) o->h1.idle->prev = c;
  o->h1.idle = c;
  o->h1.nidle++;
  read_on(c); /* an idle connection still reads: that is how a close is seen */
  if (o->h1.nidle > gw__out_idle_max()) {
    h1_conn *old = o->h1.idle;
    while (old->next) old = old->next;
    conn_close(old);
  }
}

/* An idle connection to r's host and port whose peer r may talk to. */
static h1_conn *pool_take(gw_out_req *r) {
  gw_out *o = r->o;
  uint64_t now = uv_now(o->loop);
  for (h1_conn *c = o->h1.idle, *next; c; c = next) {
    next = c->next;
    if (strcmp(c->key, r->h1.key) != 0) continue;
    if (now - c->idle_since > H1_MAX_AGE_MS) {
      conn_close(c);
      continue;
    }
    if (!gw__out_egress_allows(r, (const struct sockaddr *)&c->peer)) continue;
    idle_unlink(c);
    return c;
  }
  return NULL;
}

/* ---- sending -------------------------------------------------------------- */

static void start_fresh(gw_out_req *r);

static void fail_now(gw_out_req *r, int err) {
  if (r->h1.conn) conn_close(r->h1.conn);
  gw__out_fail(r, err);
}

/* The connection died under r (rule 3 decides: again, or fail). */
static void conn_died(h1_conn *c, int uverr) {
  gw_out_req *r = c->r;
  if (!r) {
    conn_close(c);
    return;
  }
  if (r->h1.reused && !r->h1.got_bytes && !r->h1.retried && !r->fail) {
    r->h1.retried = true;
    r->h1.reused = false;
    conn_close(c);
    start_fresh(r);
    return;
  }
  snprintf(r->errbuf, sizeof r->errbuf, "connection to %.200s %s: %s", r->h1.key,
           r->headers_done ? "closed mid-response" : "closed before a response", uv_strerror(uverr));
  fail_now(r, GW_OUT_ERESET);
}

static void on_write(uv_write_t *w, int status) {
  h1_conn *c = w->data;
  c->writing = false;
  if (status == 0 || c->closing) return;
  conn_died(c, status);
}

/* Hands r's request to c (connected, carrying r). */
static void send_req(h1_conn *c) {
  gw_out_req *r = c->r;
  r->connected = true;
  r->h1.got_bytes = false;
  gw__out_arm_first_byte(r);
  llhttp_init(&c->p, HTTP_RESPONSE, &h1_settings);
  c->p.data = c;
  c->msg_done = false;
  c->broken = false;
  uv_buf_t b[2] = {uv_buf_init(r->h1.head, (unsigned)r->h1.head_len),
                   uv_buf_init(r->body, (unsigned)r->h1.body_len)};
  unsigned nb = r->h1.body_len ? 2 : 1;
  /* Written at once as a rule (one writev, no write request: libuv 1.44
   * re-arms epoll after every queued write); the rest, if any, queued. */
  int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
  if (n < 0 && n != UV_EAGAIN) {
    conn_died(c, n);
    return;
  }
  size_t done = n > 0 ? (size_t)n : 0;
  uv_buf_t *rest = b;
  for (; nb && done >= rest->len; done -= rest->len, rest++, nb--) {}
  if (nb) {
    rest->base += done;
    rest->len -= done;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, rest, nb, on_write);
    if (rc != 0) {
      conn_died(c, rc);
      return;
    }
    c->writing = true;
  }
  read_on(c);
}

static void attach(h1_conn *c, gw_out_req *r) {
  c->r = r;
  r->h1.conn = c;
}

/* ---- connecting ----------------------------------------------------------- */

static void try_next(gw_out_req *r);

static void on_connect(uv_connect_t *cr, int status) {
  h1_conn *c = cr->data;
  if (c->closing) return;
  gw_out_req *r = c->r;
  if (status != 0) {
    if (r) snprintf(r->errbuf, sizeof r->errbuf, "could not connect to %.200s: %s", r->h1.key, uv_strerror(status));
    conn_close(c);
    if (r) try_next(r);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 60); /* hours-long streams: notice a vanished peer */
  send_req(c);
}

/* Connects to the next address r may reach, or fails r. */
static void try_next(gw_out_req *r) {
  gw_out *o = r->o;
  for (struct addrinfo *a = r->h1.ai_next; a; a = a->ai_next) {
    r->h1.ai_next = a->ai_next;
    if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > sizeof(struct sockaddr_storage))
      continue;
    if (!gw__out_egress_ok(r, a->ai_addr)) continue; /* nothing is sent to it, not even a SYN */
    h1_conn *c = calloc(1, sizeof *c);
    if (!c) {
      gw__out_fail(r, GW_OUT_ENOMEM);
      return;
    }
    c->o = o;
    if (uv_tcp_init(o->loop, &c->tcp) != 0) {
      free(c);
      gw__out_fail(r, GW_OUT_EIO);
      return;
    }
    c->tcp.data = c;
    o->handles++;
    OUT_STAT(o->st.sockets, 1);
    gw_strlcpy(c->key, r->h1.key, sizeof c->key);
    memcpy(&c->peer, a->ai_addr, a->ai_addrlen);
    attach(c, r);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, a->ai_addr, on_connect);
    if (rc == 0) return;
    snprintf(r->errbuf, sizeof r->errbuf, "could not connect to %.200s: %s", r->h1.key, uv_strerror(rc));
    conn_close(c);
  }
  /* no address left: refused by policy (the detail is written at the
   * finish), or none answered */
  gw__out_fail(r, r->egress_refused ? GW_OUT_EEGRESS : GW_OUT_ECONNECT);
}

static void free_addrs(gw_out_req *r) {
  if (!r->h1.ai) return;
  if (r->h1.ai_literal) {
    free(r->h1.ai->ai_addr);
    free(r->h1.ai);
  } else {
    uv_freeaddrinfo(r->h1.ai);
  }
  r->h1.ai = r->h1.ai_next = NULL;
}

static void gai_pump(gw_out *o);

static void on_gai(uv_getaddrinfo_t *q, int status, struct addrinfo *res) {
  h1_gai *g = q->data;
  gw_out_req *r = g->r;
  gate_give(g->key);
  free(g);
  if (!r) { /* the transfer ended meanwhile (its engine may be gone too: the waiters' timer asks again) */
    if (res) uv_freeaddrinfo(res);
    return;
  }
  gai_pump(r->o); /* a place is free: the engine's waiters first (they touch nothing of r) */
  r->h1.gai = NULL;
  if (status != 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    snprintf(r->errbuf, sizeof r->errbuf, "could not resolve host %.200s: %s", r->h1.host, uv_strerror(status));
    gw__out_fail(r, GW_OUT_ERESOLVE);
    return;
  }
  if (!r->native) { /* an https transfer: curl connects to what was found */
    gw__out_resolved(r, res);
    return;
  }
  free_addrs(r);
  r->h1.ai = r->h1.ai_next = res;
  r->h1.ai_literal = false;
  try_next(r);
}

/* A literal address needs no lookup: one addrinfo of our own. */
static bool literal_addr(gw_out_req *r) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  int fam;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, r->h1.host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)r->h1.port);
    len = sizeof *v4;
    fam = AF_INET;
  } else if (inet_pton(AF_INET6, r->h1.host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)r->h1.port);
    len = sizeof *v6;
    fam = AF_INET6;
  } else {
    return false;
  }
  struct addrinfo *ai = calloc(1, sizeof *ai);
  void *sa = malloc(len);
  if (!ai || !sa) {
    free(ai);
    free(sa);
    return false; /* the resolver will do it */
  }
  memcpy(sa, &ss, len);
  ai->ai_family = fam;
  ai->ai_socktype = SOCK_STREAM;
  ai->ai_addr = sa;
  ai->ai_addrlen = len;
  free_addrs(r);
  r->h1.ai = r->h1.ai_next = ai;
  r->h1.ai_literal = true;
  return true;
}

/* r's lookup, its place at the gate taken. */
static void gai_launch(gw_out_req *r) {
  h1_gai *g = calloc(1, sizeof *g);
  if (!g) {
    gate_give(r->h1.fair);
    gw__out_fail(r, GW_OUT_ENOMEM);
    return;
  }
  g->r = r;
  g->req.data = g;
  memcpy(g->key, r->h1.fair, sizeof g->key);
  char port[8];
  snprintf(port, sizeof port, "%d", r->h1.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(r->o->loop, &g->req, on_gai, r->h1.host, port, &hints);
  if (rc != 0) {
    gate_give(g->key);
    free(g);
    snprintf(r->errbuf, sizeof r->errbuf, "could not resolve host %.200s: %s", r->h1.host, uv_strerror(rc));
    gw__out_fail(r, GW_OUT_ERESOLVE);
    return;
  }
  r->h1.gai = g;
}

static void gai_unlink(gw_out_req *r) {
  gw_h1_pool *p = &r->o->h1;
  if (r->h1.gai_prev) r->h1.gai_prev->h1.gai_next = r->h1.gai_next;
  else p->gai_head = r->h1.gai_next;
  if (r->h1.gai_next) r->h1.gai_next->h1.gai_prev = r->h1.gai_prev;
  else p->gai_tail = r->h1.gai_prev;
  r->h1.gai_prev = r->h1.gai_next = NULL;
  r->h1.gai_waiting = false;
  if (!p->gai_head) uv_timer_stop(&p->gai_timer);
}

/* The engine's waiters, oldest first, each whose key has room. */
static void gai_pump(gw_out *o) {
  for (gw_out_req *r = o->h1.gai_head, *next; r; r = next) {
    next = r->h1.gai_next;
    if (r->fail) continue; /* timed out or aborted: finished from the idle runner, never started */
    if (!r->native && gw__out_resolved_before(r)) { /* a lookup of the same name ended meanwhile */
      gai_unlink(r);
      continue;
    }
    if (!gate_take(r->h1.fair)) continue;
    gai_unlink(r);
    gai_launch(r); /* a failure is finished later, from the idle runner: the list stays as it is */
  }
}

static void gai_retry(uv_timer_t *t) { gai_pump(t->data); }

static void lookup(gw_out_req *r) {
  gw_h1_pool *p = &r->o->h1;
  if (p->gai_head) gai_pump(r->o); /* those who waited go first */
  if (gate_take(r->h1.fair)) {
    gai_launch(r);
    return;
  }
  r->h1.gai_waiting = true;
  r->h1.gai_prev = p->gai_tail;
  r->h1.gai_next = NULL;
  if (p->gai_tail) p->gai_tail->h1.gai_next = r;
  else p->gai_head = r;
  p->gai_tail = r;
  if (!uv_is_active((uv_handle_t *)&p->gai_timer))
    uv_timer_start(&p->gai_timer, gai_retry, H1_GAI_RETRY_MS, H1_GAI_RETRY_MS);
}

void gw__h1_lookup(gw_out_req *r) {
  uv_once(&h1_once, h1_init_settings); /* the gate's size (an engine may carry only https) */
  /* an https transfer's connect timer runs from its start (outbound.c) */
  if (r->tmode != TM_CONNECT || !uv_is_active((uv_handle_t *)&r->timer)) {
    r->tmode = TM_CONNECT;
    uv_timer_start(&r->timer, gw__out_timer_cb, (uint64_t)r->h1.connect_ms, 0);
  }
  lookup(r);
}

/* A new connection for r: lookup (unless literal), then connect. The
 * connect timeout covers both (the wait at the lookup gate included). */
static void start_fresh(gw_out_req *r) {
  r->tmode = TM_CONNECT;
  uv_timer_start(&r->timer, gw__out_timer_cb, (uint64_t)r->h1.connect_ms, 0);
  r->connected = false;
  if (r->h1.ai) { /* a retry: the addresses are known */
    r->h1.ai_next = r->h1.ai;
    try_next(r);
    return;
  }
  if (literal_addr(r)) {
    try_next(r);
    return;
  }
  lookup(r);
}

/* ---- the response --------------------------------------------------------- */

static gw_out_req *req_of(llhttp_t *p) { return ((h1_conn *)p->data)->r; }

/* Bytes of the response's heads (interim ones included), its trailers and
 * its chunk extensions, against max_header_bytes: none of them is held
 * past its head, but each keeps a transfer alive, so each is bounded. */
static int head_count(gw_out_req *r, size_t len) {
  if (r->fail) return HPE_USER; /* aborted: nothing more is read for it */
  r->hbytes += len;
  if (r->hbytes <= r->max_hdr) return 0;
  gw__out_fail(r, GW_OUT_EHEADERS);
  return HPE_USER;
}

static int head_add(gw_out_req *r, const char *at, size_t len) {
  if (head_count(r, len) != 0) return HPE_USER;
  if (r->headers_done) return 0; /* trailers: counted, not delivered */
  if (gw_buf_append(&r->hbuf, at, len) == 0) return 0;
  gw__out_fail(r, GW_OUT_ENOMEM);
  return HPE_USER;
}

static int cb_message_begin(llhttp_t *p) {
  gw_out_req *r = req_of(p);
  if (r->headers_done) return HPE_USER; /* a second response to one request */
  /* the status line's fixed part and the head's last CRLF ("HTTP/1.1 100
   * \r\n" … "\r\n"): a flood of reason-less interim heads counts too */
  if (head_count(r, 16) != 0) return HPE_USER;
  gw_buf_reset(&r->hbuf);
  r->h1.interim = false;
  return gw_buf_append(&r->hbuf, "HTTP/1.1\r\n", 10) == 0 ? 0 : HPE_USER; /* parse_head skips the first line */
}

static int cb_field(llhttp_t *p, const char *at, size_t len) { return head_add(req_of(p), at, len); }
static int cb_field_done(llhttp_t *p) { return head_add(req_of(p), ": ", 2); }
static int cb_value(llhttp_t *p, const char *at, size_t len) { return head_add(req_of(p), at, len); }
static int cb_value_done(llhttp_t *p) { return head_add(req_of(p), "\r\n", 2); }
static int cb_status(llhttp_t *p, const char *at, size_t len) { return head_count(req_of(p), len); }
static int cb_chunk_ext(llhttp_t *p, const char *at, size_t len) { return head_count(req_of(p), len); }

static int cb_headers_complete(llhttp_t *p) {
  gw_out_req *r = req_of(p);
  /* aborted from another callback of this loop turn (outbound.h: no
   * callback after gw_out_abort), its head already read */
  if (r->fail) return HPE_USER;
  int status = p->status_code;
  /* 101: we never ask to switch. Below 100: no HTTP status — llhttp 8
   * takes "HTTP/1.1 099" and even a status line without a code (as 0);
   * curl refuses both ("Unsupported response code"), so does this path. */
  if (status == 101 || status < 100) {
    snprintf(r->errbuf, sizeof r->errbuf, "malformed response from %.200s: status %d", r->h1.key, status);
    gw__out_fail(r, GW_OUT_EPROTO);
    return HPE_USER;
  }
  if (status >= 100 && status < 200) {
    /* 100 Continue, 103 Early Hints: the final head follows. A 1xx never
     * has a body, whatever it announces (bytes after it are the next
     * head, so a "body" there is a protocol error, never data). */
    r->h1.interim = true;
    return 1;
  }
  if (!gw__out_deliver_head(r, status)) return HPE_USER;
  /* HEAD, 204 and 304 answers have no body, whatever they announce
   * (llhttp 8.1 reads a Content-Length body after a 204/304 otherwise) */
  if (r->h1.head_method || status == 204 || status == 304) return 1;
  return r->paused ? HPE_PAUSED : 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len) {
  gw_out_req *r = req_of(p);
  if (r->fail) return HPE_USER;
  /* llhttp keeps a body span open across calls and flushes it at the end
   * of each: resumed on no input (gw__h1_resume), it reports 0 bytes.
   * Nothing arrived: not a delivery (nor a held span). */
  if (len == 0) return 0;
  if (r->paused) { /* paused from outside: hold the span (rule 5) */
    char *h = realloc(r->h1.held, r->h1.held_len + len);
    if (!h) {
      gw__out_fail(r, GW_OUT_ENOMEM);
      return HPE_USER;
    }
    memcpy(h + r->h1.held_len, at, len);
    r->h1.held = h;
    r->h1.held_len += len;
    return HPE_PAUSED;
  }
  int rc = r->on_data ? r->on_data(r, at, len, r->ud) : 0;
  if (r->fail) return HPE_USER;
  if (rc == GW_OUT_PAUSE) gw_out_pause(r);
  return r->paused ? HPE_PAUSED : 0;
}

static int cb_message_complete(llhttp_t *p) {
  h1_conn *c = p->data;
  if (c->r && c->r->h1.interim) return 0;
  c->msg_done = true;
  return HPE_PAUSED; /* stop here: the rest is not this response's */
}

static void h1_init_settings(void) {
  if (uv_mutex_init(&gate_mu) != 0) abort(); /* cannot fail on Linux */
  /* libuv's own limit of slow I/O work: half its pool (4 threads unless
   * UV_THREADPOOL_SIZE says, as serve sets it before the pool starts) */
  const char *ps = getenv("UV_THREADPOOL_SIZE");
  long threads = ps && *ps ? atol(ps) : 4;
  if (threads < 1) threads = 1;
  gate_max = (int)((threads + 1) / 2);
  if (gate_max > H1_GAI_KEYS) gate_max = H1_GAI_KEYS;
  llhttp_settings_init(&h1_settings);
  h1_settings.on_message_begin = cb_message_begin;
  h1_settings.on_status = cb_status;
  h1_settings.on_header_field = cb_field;
  h1_settings.on_header_field_complete = cb_field_done;
  h1_settings.on_header_value = cb_value;
  h1_settings.on_header_value_complete = cb_value_done;
  h1_settings.on_headers_complete = cb_headers_complete;
  h1_settings.on_body = cb_body;
  h1_settings.on_chunk_extension_name = cb_chunk_ext;
  h1_settings.on_chunk_extension_value = cb_chunk_ext;
  h1_settings.on_message_complete = cb_message_complete;
}

/* The response is complete: the connection goes back to the pool (rule 1)
 * or closes, then r finishes. */
static void complete(h1_conn *c) {
  gw_out_req *r = c->r;
  /* an answer that came before the request was fully written (an early
   * 401/413): the rest of the request is still queued, from buffers r
   * frees now — the connection closes, which cancels that write */
  bool keep = !c->broken && !c->writing && llhttp_should_keep_alive(&c->p) && !r->o->closing;
  c->r = NULL;
  r->h1.conn = NULL;
  if (keep) pool_put(c);
  else conn_close(c);
  gw__out_finish(r, 0);
}

/* Parses bytes of c's transfer. After it returns, neither c nor its
 * transfer may be touched: either may be gone. */
static void feed(h1_conn *c, const char *data, size_t len) {
  gw_out_req *r = c->r;
  llhttp_errno_t e = llhttp_execute(&c->p, data, len);
  if (e == HPE_OK) return;
  if (r->fail) { /* a callback failed it, or on_headers/on_data aborted it */
    conn_close(c);
    return;
  }
  if (e == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&c->p);
    size_t left = pos && pos >= data && pos <= data + len ? (size_t)(data + len - pos) : 0;
    if (c->msg_done) {
      if (left) c->broken = true; /* bytes nobody asked for: not reusable */
      complete(c);
      return;
    }
    read_off(c); /* paused (rule 5) */
    if (left) {
      char *k = malloc(left);
      if (!k) {
        fail_now(r, GW_OUT_ENOMEM);
        return;
      }
      memcpy(k, pos, left);
      free(c->rest);
      c->rest = k;
      c->rest_len = left;
    }
    return;
  }
  snprintf(r->errbuf, sizeof r->errbuf, "malformed response from %.200s: %s", r->h1.key, llhttp_errno_name(e));
  fail_now(r, GW_OUT_EPROTO);
}

static void on_eof(h1_conn *c, ssize_t nread) {
  gw_out_req *r = c->r;
  if (nread == UV_EOF && r->h1.got_bytes && !c->rest) {
    /* a body delimited by the close ends here */
    c->broken = true;
    llhttp_finish(&c->p);
    if (c->msg_done && !r->fail) {
      complete(c);
      return;
    }
  }
  conn_died(c, (int)nread);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  h1_conn *c = s->data;
  if (c->closing || nread == 0) return;
  gw_out_req *r = c->r;
  if (!r) { /* idle: a close, an error or bytes nobody asked for all end it */
    conn_close(c);
    return;
  }
  if (nread < 0) {
    on_eof(c, nread);
    return;
  }
  r->last_rx = uv_now(c->o->loop);
  r->h1.got_bytes = true;
  feed(c, b->base, (size_t)nread);
}

/* ---- the engine's entry points ------------------------------------------- */

bool gw__h1_accepts(const out_url *u) { return !u->https && !u->userinfo; } /* userinfo: curl's Basic auth */

int gw__h1_prepare(gw_out_req *r, const gw_out_opts *op, const out_url *u) {
  uv_once(&h1_once, h1_init_settings);
  r->h1.connect_ms = op->connect_timeout_ms ? op->connect_timeout_ms : GW_OUT_CONNECT_TIMEOUT_MS;
  gw_strlcpy(r->h1.fair, op->fair_key ? op->fair_key : "", sizeof r->h1.fair); /* no stdio on the hot path */
  r->h1.head_method = strcmp(op->method, "HEAD") == 0;
  if (strlen(u->bare) >= sizeof r->h1.host) return GW_OUT_EINVAL;
  memcpy(r->h1.host, u->bare, strlen(u->bare) + 1);
  r->h1.port = u->port;
  char port[24];
  gw_utoa((unsigned)r->h1.port, port);
  gw_strjoin(r->h1.key, sizeof r->h1.key, r->h1.host, ":", port, NULL);
  /* sized first and written once: no realloc leaves a copy of a header
   * line (the upstream credential) behind in freed memory; each length
   * taken once (build_headers checked the lines and their count) */
  bool have_host = false;
  size_t hl[GW_OUT_MAX_REQ_HEADERS];
  int nh = 0;
  for (const char *const *hp = op->headers; hp && *hp && nh < GW_OUT_MAX_REQ_HEADERS; hp++) {
    if (strncasecmp(*hp, "host:", 5) == 0) have_host = true;
    hl[nh++] = strlen(*hp);
  }
  if (op->headers && op->headers[nh]) return GW_OUT_EINVAL; /* cannot happen: counted before */
  bool cl = op->body_len || strcmp(op->method, "POST") == 0;
  char cls[24];
  size_t cll = gw_utoa(op->body_len, cls);
  size_t ml = strlen(op->method), tl = strlen(u->target), hpl = have_host ? 0 : strlen(u->hostport);
  size_t n = ml + 1 + tl + 11 + (have_host ? 0 : 6 + hpl + 2) + (cl ? 16 + cll + 2 : 0) + 2;
  for (int i = 0; i < nh; i++) n += hl[i] + 2;
  char *head = malloc(n + 1), *w = head;
  if (!head) return GW_OUT_ENOMEM;
#define PUT(s, l) (memcpy(w, (s), (l)), w += (l))
#define PUT_LIT(s) PUT(s, sizeof s - 1)
  PUT(op->method, ml);
  PUT_LIT(" ");
  PUT(u->target, tl);
  PUT_LIT(" HTTP/1.1\r\n");
  /* as curl writes it: the URL's host, its port unless the default */
  if (!have_host) {
    PUT_LIT("Host: ");
    PUT(u->hostport, hpl);
    PUT_LIT("\r\n");
  }
  for (int i = 0; i < nh; i++) {
    PUT(op->headers[i], hl[i]);
    PUT_LIT("\r\n");
  }
  if (cl) {
    PUT_LIT("Content-Length: ");
    PUT(cls, cll);
    PUT_LIT("\r\n");
  }
  PUT_LIT("\r\n");
#undef PUT_LIT
#undef PUT
  *w = '\0';
  r->h1.head = head;
  r->h1.head_len = n;
  return 0;
}

void gw__h1_begin(gw_out_req *r) {
  h1_conn *c = pool_take(r);
  if (!c) {
    start_fresh(r);
    return;
  }
  r->h1.reused = true;
  attach(c, r);
  send_req(c);
}

void gw__h1_connect_timeout_why(gw_out_req *r) {
  if (r->h1.gai_waiting)
    snprintf(r->errbuf, sizeof r->errbuf,
             "the name lookup of %.100s never got its turn: the gateway's %d lookups were all taken (slow DNS "
             "servers of upstreams)", r->h1.host, gate_max);
  else if (r->h1.gai)
    snprintf(r->errbuf, sizeof r->errbuf, "the name lookup of %.100s did not finish in time (a slow DNS server)",
             r->h1.host);
}

void gw__h1_release(gw_out_req *r) {
  if (r->h1.gai_waiting) gai_unlink(r);
  if (r->h1.gai) {
    r->h1.gai->r = NULL; /* its callback frees it */
    uv_cancel((uv_req_t *)&r->h1.gai->req);
    r->h1.gai = NULL;
  }
  if (r->h1.conn) conn_close(r->h1.conn);
  free_addrs(r);
  free(r->h1.held);
  r->h1.held = NULL;
  r->h1.held_len = 0;
}

void gw__h1_pause(gw_out_req *r) {
  /* Until the head is in, reading goes on (heads are delivered while
   * paused); the body callback then holds and pauses the parser. */
  if (r->h1.conn && r->headers_done) read_off(r->h1.conn);
}

void gw__h1_resume(gw_out_req *r) {
  if (r->h1.held) { /* what arrived while paused from outside */
    char *h = r->h1.held;
    size_t n = r->h1.held_len;
    r->h1.held = NULL;
    r->h1.held_len = 0;
    int rc = r->on_data ? r->on_data(r, h, n, r->ud) : 0;
    free(h);
    if (r->fail) return;
    if (rc == GW_OUT_PAUSE) gw_out_pause(r);
    if (r->paused) return;
  }
  h1_conn *c = r->h1.conn;
  if (!c) return; /* not connected yet */
  read_on(c);
  if (llhttp_get_errno(&c->p) != HPE_PAUSED) return;
  llhttp_resume(&c->p);
  if (c->rest) {
    char *k = c->rest;
    size_t n = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    feed(c, k, n); /* c and r may be gone after this */
    free(k);
  } else {
    /* paused on the body's last bytes: the completion is still to run,
     * and no other byte may ever come */
    feed(c, "", 0);
  }
}

static void gai_timer_closed(uv_handle_t *h) { gw__out_handle_gone(h->data); }

void gw__h1_init(gw_out *o) {
  uv_timer_init(o->loop, &o->h1.gai_timer);
  o->h1.gai_timer.data = o;
  o->handles++;
}

void gw__h1_teardown(gw_out *o) {
  while (o->h1.idle) conn_close(o->h1.idle);
  uv_close((uv_handle_t *)&o->h1.gai_timer, gai_timer_closed); /* the transfers ended: no waiter is left */
}
