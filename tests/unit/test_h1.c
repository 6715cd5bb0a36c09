/* tests/unit/test_h1.c — the native HTTP/1.1 path (gateway/out/h1.c)
 * where byte timing decides: a scripted blocking server on a thread (one
 * accepted connection per script) answers exactly when and what each test
 * says. Found by review, each failed before its fix:
 *   - an answer that arrives while the request body is still being written
 *     (an early 401/413): the connection must not go back to the pool with
 *     the rest of the body queued from freed buffers (use-after-free, then
 *     a corrupted write queue when the next request took the connection);
 *   - a pause on the last body bytes of a Content-Length answer: resume
 *     must complete it without waiting for another byte;
 *   - 204 and 304 answers announcing a Content-Length have no body;
 *   - a 1xx head announcing a body: never delivered as the final answer's
 *     body (on_data before on_headers). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/buf.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "tests/unit/unit.h"

/* ---- scripted server ------------------------------------------------------ */

typedef struct ssrv ssrv;
struct ssrv {
  int lfd, port;
  pthread_t th;
  void (*script)(ssrv *s, int fd);
  /* results the script records */
  volatile size_t drained;
  volatile bool saw_second;
  volatile int nconns;
};

static void *ssrv_main(void *arg) {
  ssrv *s = arg;
  int fd = accept(s->lfd, NULL, NULL);
  if (fd >= 0) {
    s->nconns++;
    s->script(s, fd);
    close(fd);
  }
  return NULL;
}

static int ssrv_start(ssrv *s, void (*script)(ssrv *, int)) {
  memset(s, 0, sizeof *s);
  s->script = script;
  s->lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 8)) return -1;
  socklen_t al = sizeof a;
  getsockname(s->lfd, (struct sockaddr *)&a, &al);
  s->port = ntohs(a.sin_port);
  return pthread_create(&s->th, NULL, ssrv_main, s);
}

static void ssrv_join(ssrv *s) {
  pthread_join(s->th, NULL);
  close(s->lfd);
}

static void wr(int fd, const char *p) {
  size_t n = strlen(p);
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}

/* reads until the end of a request head; returns false on EOF */
static bool read_head(int fd) {
  char buf[1];
  int st = 0;
  while (read(fd, buf, 1) == 1) {
    if ((st == 0 || st == 2) && buf[0] == '\r') st++;
    else if ((st == 1 || st == 3) && buf[0] == '\n') st++;
    else st = buf[0] == '\r' ? 1 : 0;
    if (st == 4) return true;
  }
  return false;
}

static void ms_sleep(int ms) { usleep((useconds_t)ms * 1000); }

/* ---- client side ---------------------------------------------------------- */

typedef struct tr {
  int status, err, ndata, order_bad, done;
  gw_buf body;
  uint64_t t0, t_done;
  int pause_mode; /* 1: pause on each on_data, resume 30 ms later */
  uv_timer_t rt;
  gw_out_req *r;
  bool aborted;    /* gw_out_abort was called on it */
  int after_abort; /* on_headers/on_data calls after that */
} tr;

static uv_loop_t loop;
static gw_out *eng;
static gw_egress *lb;

static tr *victim;         /* aborted from another transfer's on_headers */
static gw_out_req *victim_r;

static void c_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  (void)r; (void)h; (void)n;
  tr *t = ud;
  if (t->aborted) t->after_abort++;
  t->status = status;
  if (victim && victim != t && !victim->done) {
    victim->aborted = true;
    gw_out_abort(victim_r);
    victim = NULL;
  }
}

static void c_resume(uv_timer_t *tm) {
  tr *t = tm->data;
  if (t->r && !t->done) gw_out_resume(t->r);
}

static int c_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  tr *t = ud;
  if (t->aborted) t->after_abort++;
  if (!t->status) t->order_bad++; /* on_data before on_headers */
  t->ndata++;
  gw_buf_append(&t->body, p, n);
  if (t->pause_mode) {
    t->r = r;
    uv_timer_start(&t->rt, c_resume, 30, 0);
    return GW_OUT_PAUSE;
  }
  return 0;
}

static void (*done_hook)(tr *t);
static void c_done(gw_out_req *r, int err, void *ud) {
  (void)r;
  tr *t = ud;
  t->err = err;
  t->done = 1;
  t->r = NULL;
  t->t_done = uv_hrtime();
  if (done_hook) done_hook(t);
}

static void tr_init(tr *t) {
  memset(t, 0, sizeof *t);
  gw_buf_init(&t->body, 1 << 20);
  uv_timer_init(&loop, &t->rt);
  t->rt.data = t;
  t->t0 = uv_hrtime();
}

static size_t g_max_hdr; /* 0: the default */

static int go(tr *t, const char *method, int port, const char *path, const void *body, size_t blen,
              long idle_ms) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  gw_out_opts o = {0};
  o.method = method;
  o.url = url;
  o.body = body;
  o.body_len = blen;
  o.idle_timeout_ms = idle_ms;
  o.first_byte_timeout_ms = 3000;
  o.egress = GW_OUT_EGRESS_UNTRUSTED;
  o.on_headers = c_headers;
  o.on_data = c_data;
  o.on_done = c_done;
  o.ud = t;
  o.max_header_bytes = g_max_hdr;
  return gw_out_start(eng, &o, t == victim ? &victim_r : NULL);
}

static void dog(uv_timer_t *tm) {
  (void)tm;
  fprintf(stderr, "  watchdog: closing the engine\n");
  gw_out_close(eng, NULL, NULL);
  eng = NULL;
}

static void env_up(void) {
  uv_loop_init(&loop);
  gw_out_new(&loop, &eng);
  char err[200];
  if (!lb) gw_egress_parse("egress_allow", "127.0.0.0/8", &lb, err, sizeof err);
  gw_out_set_egress(eng, GW_OUT_EGRESS_UNTRUSTED, lb);
  gw_out_set_egress(eng, GW_OUT_EGRESS_ADMIN, lb);
  done_hook = NULL;
  victim = NULL;
  g_max_hdr = 0;
}

static void closed_walk(uv_handle_t *h, void *a) {
  (void)a;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void env_down(uv_timer_t *d, tr **ts, int n) {
  if (eng) gw_out_close(eng, NULL, NULL);
  eng = NULL;
  uv_close((uv_handle_t *)d, NULL);
  for (int i = 0; i < n; i++) uv_close((uv_handle_t *)&ts[i]->rt, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_walk(&loop, closed_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop); /* bodies stay for the checks; each test frees them */
}

/* Runs the loop until every transfer is done or the watchdog fires. */
static void run_until(tr **ts, int n, uv_timer_t *d, int dog_ms) {
  uv_timer_init(&loop, d);
  uv_timer_start(d, dog, (uint64_t)dog_ms, 0);
  for (;;) {
    uv_run(&loop, UV_RUN_ONCE);
    bool all = true;
    for (int i = 0; i < n; i++) all &= ts[i]->done != 0;
    if (all || !eng) break;
  }
}

/* ---- 1. a response that arrives before the request body is written ------- */

#define BIG_BODY ((size_t)64 << 20)

static void script_early(ssrv *s, int fd) {
  if (!read_head(fd)) return;
  /* answer at once, keep-alive, without reading the body */
  wr(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ms_sleep(300); /* the client finishes transfer 1 and starts transfer 2 */
  /* now drain whatever comes: the rest of body 1, then maybe request 2 */
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static char buf[1 << 16];
  char tail[64] = {0};
  for (;;) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k <= 0) break;
    s->drained += (size_t)k;
    /* look for request 2's line across reads */
    char win[64 + sizeof buf];
    size_t tl = strlen(tail);
    memcpy(win, tail, tl);
    memcpy(win + tl, buf, (size_t)k);
    if (memmem(win, tl + (size_t)k, "GET /second", 11)) {
      s->saw_second = true;
      wr(fd, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond");
    }
    size_t keep = (size_t)k < 20 ? (size_t)k : 20;
    memcpy(tail, buf + k - keep, keep);
    tail[keep] = 0;
  }
}

static ssrv *g_srv;
static tr *g_t2;
static void start_second(tr *t) {
  (void)t;
  done_hook = NULL;
  if (go(g_t2, "GET", g_srv->port, "/second", NULL, 0, 0) != 0) g_t2->done = 1;
}

TEST(early_response_while_body_is_written) {
  ssrv s;
  CHECK_INT(ssrv_start(&s, script_early), 0);
  env_up();
  tr t1, t2;
  tr_init(&t1);
  tr_init(&t2);
  char *body = malloc(BIG_BODY);
  memset(body, 'B', BIG_BODY);
  g_srv = &s;
  g_t2 = &t2;
  done_hook = start_second;
  CHECK_INT(go(&t1, "POST", s.port, "/first", body, BIG_BODY, 0), 0);
  free(body); /* copied by gw_out_start */
  uv_timer_t d;
  tr *ts[] = {&t1, &t2};
  run_until(ts, 2, &d, 15000); /* a watchdog against a hang, not a deadline: t2 ends at its 3 s first-byte timeout */
  env_down(&d, ts, 2);
  ssrv_join(&s);
  CHECK_INT(t1.err, 0);
  CHECK_INT(t1.status, 200);
  /* the connection carried an unfinished request write: it must not be
   * lent to transfer 2 (which then needs a second connection: this script
   * accepts only one, so t2 may fail, but it must not go out behind the
   * remains of body 1 on the same connection) */
  CHECK(!s.saw_second);
  gw_buf_free(&t1.body);
  gw_buf_free(&t2.body);
}

/* 1b. the same without a second transfer: the pooled connection goes on
 * writing transfer 1's body after on_done freed it */
TEST(early_response_body_written_after_free) {
  ssrv s;
  CHECK_INT(ssrv_start(&s, script_early), 0);
  env_up();
  tr t1;
  tr_init(&t1);
  char *body = malloc(BIG_BODY);
  memset(body, 'B', BIG_BODY);
  CHECK_INT(go(&t1, "POST", s.port, "/first", body, BIG_BODY, 0), 0);
  free(body);
  uv_timer_t d;
  tr *ts[] = {&t1};
  run_until(ts, 1, &d, 15000);
  /* keep the loop turning while the server drains the rest */
  uv_timer_t w;
  uv_timer_init(&loop, &w);
  uv_timer_start(&w, dog, 1500, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w, NULL);
  env_down(&d, ts, 1);
  ssrv_join(&s);
  CHECK_INT(t1.err, 0);
  /* a connection with request bytes still queued must not be kept: nothing
   * of body 1 may be sent after transfer 1 ended (its memory is freed) */
  CHECK(s.drained < BIG_BODY / 2);
  gw_buf_free(&t1.body);
}

/* ---- 2. pause on the last body bytes of a Content-Length response --------- */

static void script_cl_then_wait(ssrv *s, int fd) {
  (void)s;
  if (!read_head(fd)) return;
  wr(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  ms_sleep(1200); /* keep-alive, nothing more, past the 1 s idle timeout: a hang ends in an error */
}

TEST(pause_on_last_body_bytes_then_resume) {
  ssrv s;
  CHECK_INT(ssrv_start(&s, script_cl_then_wait), 0);
  env_up();
  tr t;
  tr_init(&t);
  t.pause_mode = 1;
  CHECK_INT(go(&t, "GET", s.port, "/x", NULL, 0, 1000), 0);
  uv_timer_t d;
  tr *ts[] = {&t};
  run_until(ts, 1, &d, 5000);
  env_down(&d, ts, 1);
  ssrv_join(&s);
  CHECK_INT(t.status, 200);
  CHECK_INT(t.err, 0);
  gw_buf_free(&t.body);
}

/* ---- 3. 204 / 304 answers that carry Content-Length ---------------------- */

static const char *g_resp;
static void script_canned(ssrv *s, int fd) {
  (void)s;
  if (!read_head(fd)) return;
  wr(fd, g_resp);
  ms_sleep(1200); /* past the transfer's 1 s idle timeout: a hang ends in an error */
}

/* One GET against a server running script, max_hdr the head cap (0: the
 * default); t holds the outcome (its body is the caller's to free). */
static void one_get(void (*script)(ssrv *, int), size_t max_hdr, tr *t) {
  ssrv s;
  CHECK_INT(ssrv_start(&s, script), 0);
  env_up();
  g_max_hdr = max_hdr;
  tr_init(t);
  CHECK_INT(go(t, "GET", s.port, "/x", NULL, 0, 1000), 0);
  uv_timer_t d;
  tr *ts[] = {t};
  run_until(ts, 1, &d, 5000);
  env_down(&d, ts, 1);
  ssrv_join(&s);
}

static void no_body_status(const char *resp, int want) {
  g_resp = resp;
  tr t;
  one_get(script_canned, 0, &t);
  CHECK_INT(t.status, want);
  CHECK_INT(t.err, 0);
  gw_buf_free(&t.body);
}

TEST(status_304_with_content_length_has_no_body) {
  no_body_status("HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\nETag: \"x\"\r\n\r\n", 304);
}
TEST(status_204_with_content_length_has_no_body) {
  no_body_status("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204);
}

/* ---- 4. a 1xx head that announces a body ---------------------------------- */

TEST(interim_head_body_not_delivered) {
  g_resp = "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nEVIL!"
           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  tr t;
  one_get(script_canned, 0, &t);
  CHECK_INT(t.order_bad, 0); /* outbound.h: on_headers before any on_data */
  /* a 1xx has no body (RFC 9110 15.2): "EVIL!" is garbage before the
   * final head, so EPROTO is right; what must not happen is "EVIL!" being
   * delivered as (part of) the final response's body */
  CHECK(t.err == GW_OUT_EPROTO || (t.status == 200 && t.body.len == 2 && !memcmp(t.body.data, "ok", 2)));
  gw_buf_free(&t.body);
}

/* ---- 5. what an upstream's head bytes may cost ----------------------------- */

/* Interim heads, trailers and chunk extensions are never held, but each
 * keeps the transfer going: they count against max_header_bytes with the
 * final head. A reason-less "HTTP/1.1 100" head counted nothing (only a
 * reason phrase was counted), so any number of them passed a 1 KiB cap;
 * trailers and chunk extensions were not counted at all. */
static char g_flood[64 * 1024];
static void script_flood(ssrv *s, int fd) {
  (void)s;
  if (read_head(fd)) wr(fd, g_flood);
  ms_sleep(50); /* then the end: every answer here is whole before it */
}

static void cap_case(const char *what, int want_err, int want_status) {
  tr t;
  one_get(script_flood, 1024, &t);
  if (t.err != want_err || t.status != want_status)
    fprintf(stderr, "  %s: err %d status %d, want %d / %d\n", what, t.err, t.status, want_err, want_status);
  CHECK_INT(t.err, want_err);
  CHECK_INT(t.status, want_status);
  gw_buf_free(&t.body);
}

static void flood(const char *head, const char *unit, int n, const char *tail) {
  size_t at = (size_t)snprintf(g_flood, sizeof g_flood, "%s", head);
  for (int i = 0; i < n; i++) at += (size_t)snprintf(g_flood + at, sizeof g_flood - at, "%s", unit);
  snprintf(g_flood + at, sizeof g_flood - at, "%s", tail);
}

TEST(interim_heads_trailers_and_chunk_extensions_count_against_the_head_cap) {
  const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  flood("", "HTTP/1.1 100\r\n\r\n", 3, ok); /* a few: fine */
  cap_case("three interim heads", 0, 200);
  flood("", "HTTP/1.1 100\r\n\r\n", 200, ok);
  cap_case("200 reason-less interim heads", GW_OUT_EHEADERS, 0);
  flood("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n", "X-Trailer: aaaaaaaaaaaaaaaaaaaa\r\n", 100,
        "\r\n");
  cap_case("3 KiB of trailers", GW_OUT_EHEADERS, 200);
  flood("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=", "aaaaaaaaaaaaaaaaaaaa", 100, "\r\nok\r\n0\r\n\r\n");
  cap_case("a 2 KiB chunk extension", GW_OUT_EHEADERS, 200);
}

/* ---- 6. an abort from another transfer's callback, same loop turn -------- */

/* outbound.h: after gw_out_abort no on_headers/on_data. When B's answer was
 * read in the same epoll batch as A's and A's on_headers aborted B, B's
 * parser still ran over its head and delivered it (cb_headers_complete did
 * not look at r->fail). */
static volatile int srv_go;
static void script_answer_when_told(ssrv *s, int fd) {
  (void)s;
  if (!read_head(fd)) return;
  while (!srv_go) ms_sleep(1);
  if (s->saw_second) ms_sleep(20); /* B after A */
  wr(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ms_sleep(300);
}
static void hold_the_loop(uv_timer_t *t) {
  (void)t;
  srv_go = 1;
  ms_sleep(200); /* both answers arrive while the loop is busy: one batch */
}

TEST(no_callback_after_an_abort_from_the_same_loop_turn) {
  ssrv sa, sb;
  srv_go = 0;
  CHECK_INT(ssrv_start(&sa, script_answer_when_told), 0);
  CHECK_INT(ssrv_start(&sb, script_answer_when_told), 0);
  sb.saw_second = true; /* (this script's flag: answer second) */
  env_up();
  tr a, b;
  tr_init(&a);
  tr_init(&b);
  victim = &b;
  CHECK_INT(go(&a, "GET", sa.port, "/a", NULL, 0, 2000), 0);
  CHECK_INT(go(&b, "GET", sb.port, "/b", NULL, 0, 2000), 0);
  uv_timer_t hold;
  uv_timer_init(&loop, &hold);
  uv_timer_start(&hold, hold_the_loop, 150, 0);
  uv_timer_t d;
  tr *ts[] = {&a, &b};
  run_until(ts, 2, &d, 5000);
  uv_close((uv_handle_t *)&hold, NULL);
  env_down(&d, ts, 2);
  ssrv_join(&sa);
  ssrv_join(&sb);
  CHECK_INT(a.status, 200);
  CHECK(b.aborted);
  CHECK_INT(b.after_abort, 0);
  CHECK_INT(b.done, 1);
  gw_buf_free(&a.body);
  gw_buf_free(&b.body);
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
#define MAYBE(n) if (!only || !strcmp(only, #n)) RUN(n)
  MAYBE(early_response_while_body_is_written);
  MAYBE(early_response_body_written_after_free);
  MAYBE(pause_on_last_body_bytes_then_resume);
  MAYBE(status_304_with_content_length_has_no_body);
  MAYBE(status_204_with_content_length_has_no_body);
  MAYBE(interim_head_body_not_delivered);
  MAYBE(interim_heads_trailers_and_chunk_extensions_count_against_the_head_cap);
  MAYBE(no_callback_after_an_abort_from_the_same_loop_turn);
  gw_egress_free(lb);
  return UNIT_DONE();
}
