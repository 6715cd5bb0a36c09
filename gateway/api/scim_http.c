/* gateway/api/scim_http.c — /t/{tenant}/scim/v2/…: the HTTP side of SCIM.
 *
 * Authenticates the tenant's SCIM token (Bearer, or Basic with the token as
 * password) — and again, by its id, in the transaction that serves the
 * request (still_authorized: a tenant deleted or a token revoked while the
 * request waited refuses it) —, checks content types, parses bodies strictly (duplicate keys
 * refused) — a body past PARSE_LOOP_MAX on libuv's pool, holding a
 * heavy-read slot as a scan does (a 32 MiB group push of 200,000 members
 * takes ~0.5 s to parse, which every tenant's requests on the loop would
 * wait for) —, then hands a parsed request to scim/: reads in a short read
 * transaction right here — a scan (a filter no index answers) on libuv's
 * pool instead, holding a heavy-read slot (gateway/core/limits.h), waiting
 * up to SCAN_WAIT_MS for one and authenticating again after a wait —,
 * writes as ONE writer job whose reply is sent from its done callback
 * after the commit and the post-commit actions — a group POST's or PUT's
 * members listed then, not in the job (the writer every tenant's
 * deactivations wait for), in a read on the loop or, past its budget, on
 * the pool (members_start) — a large one (a large
 * body, a group's reply with many members) encoded on the pool, where its
 * request's and reply's JSON are also freed (17 MB for a PUT of 100,000
 * members: ~0.2 s to encode).
 *
 * Also owns the SCIM metrics: lifecycle events counted by post-commit
 * actions (only committed events count) and, per tenant, when the last SCIM
 * request arrived — an Okta push that silently stopped is something admins
 * must be able to alert on.
 *
 * An unknown endpoint (404) or a method its endpoint does not take (405,
 * with Allow; scim_allowed_methods) is answered on the loop before
 * anything else — never a job on the store writer. */
#include "gateway/api/scim_http.h"
#include "gateway/base/json_check.h"
#include "gateway/core/limits.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/token_store.h"
#include "gateway/api/admin.h"
#include "store/tenant.h"
#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "scim/scim.h"
#include "store/dir.h"
#include "store/store.h"

#define SEEN_MAX 4096

struct gw_scim_state {
  _Atomic uint64_t events[SCIM_EV_COUNT];
  uv_mutex_t mu;
  struct {
    char tenant[64];
    time_t at;
  } seen[SEEN_MAX];
  int nseen;
  scim_pages *pages; /* list checkpoints (scim.h): one per process, for every loop and the pool */
};

/* ---------- metrics ---------- */

static void count_event(void *arg) { atomic_fetch_add_explicit((_Atomic uint64_t *)arg, 1, memory_order_relaxed); }

static int on_event(st_txn *txn, int kind, const void *event, void *ctx) {
  gw_scim_state *s = ctx;
  (void)event;
  /* counted after commit, so aborted or re-run jobs never count twice */
  return st_txn_after_commit(txn, count_event, NULL, &s->events[kind - SCIM_EV_USER_CREATED]);
}

int gw_scim_init(gw_server *srv) {
  gw_scim_state *s = calloc(1, sizeof *s);
  if (!s || uv_mutex_init(&s->mu) != 0) {
    free(s);
    return -1;
  }
  srv->scim = s;
  s->pages = scim_pages_new();
  if (!s->pages) return -1;
  for (int k = SCIM_EV_USER_CREATED; k < SCIM_EV__END; k++)
    if (st_hook_add(srv->store, k, on_event, s) != 0) return -1;
  scim_register_checks(srv->store);
  const char *pause = getenv("MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE");
  if (pause && *pause)
    GW_LOG(GW_LOG_WARN, "scim", NULL, "MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE is set: large SCIM bodies' parses wait "
           "while %s exists (a test hook; never set it in production)", pause);
  pause = getenv("MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE");
  if (pause && *pause)
    GW_LOG(GW_LOG_WARN, "scim", NULL, "MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE is set: group writes' replies wait "
           "while %s exists (a test hook; never set it in production)", pause);
  return 0;
}

void gw_scim_free(gw_server *srv) {
  if (!srv->scim) return;
  uv_mutex_destroy(&srv->scim->mu);
  scim_pages_free(srv->scim->pages);
  free(srv->scim);
  srv->scim = NULL;
}

static void mark_seen(gw_scim_state *s, const char *tenant) {
  time_t now = time(NULL);
  uv_mutex_lock(&s->mu);
  for (int i = 0; i < s->nseen; i++)
    if (!strcmp(s->seen[i].tenant, tenant)) {
      s->seen[i].at = now;
      uv_mutex_unlock(&s->mu);
      return;
    }
  if (s->nseen < SEEN_MAX) {
    snprintf(s->seen[s->nseen].tenant, sizeof s->seen[0].tenant, "%s", tenant);
    s->seen[s->nseen++].at = now;
  }
  uv_mutex_unlock(&s->mu);
}

void gw_scim_metrics(gw_server *srv, gw_buf *o) {
  gw_scim_state *s = srv->scim;
  if (!s) return;
  gw_buf_appends(o, "# HELP mcpgate_scim_events_total SCIM lifecycle events committed.\n"
                    "# TYPE mcpgate_scim_events_total counter\n");
  for (int i = 0; i < SCIM_EV_COUNT; i++)
    gw_buf_printf(o, "mcpgate_scim_events_total{event=\"%s\"} %llu\n",
                  scim_event_name(SCIM_EV_USER_CREATED + i),
                  (unsigned long long)atomic_load_explicit(&s->events[i], memory_order_relaxed));
  scim_pages_stats ps;
  scim_pages_stats_get(s->pages, &ps);
  gw_buf_printf(o, "# HELP mcpgate_scim_list_steps_total Resources walked by unfiltered SCIM list pages "
                   "(skipped to reach startIndex, and listed).\n"
                   "# TYPE mcpgate_scim_list_steps_total counter\n"
                   "mcpgate_scim_list_steps_total %llu\n"
                   "# HELP mcpgate_scim_list_checkpoints_total Unfiltered SCIM list pages past startIndex 1, "
                   "by whether they began at a list checkpoint (hit) or walked from the first resource (miss).\n"
                   "# TYPE mcpgate_scim_list_checkpoints_total counter\n"
                   "mcpgate_scim_list_checkpoints_total{result=\"hit\"} %llu\n"
                   "mcpgate_scim_list_checkpoints_total{result=\"miss\"} %llu\n",
                (unsigned long long)ps.steps, (unsigned long long)ps.hits, (unsigned long long)ps.misses);
  gw_buf_appends(o, "# HELP mcpgate_scim_last_request_age_seconds Seconds since the tenant's last "
                    "authenticated SCIM request (since this process started).\n"
                    "# TYPE mcpgate_scim_last_request_age_seconds gauge\n");
  time_t now = time(NULL);
  uv_mutex_lock(&s->mu);
  for (int i = 0; i < s->nseen; i++)
    gw_buf_printf(o, "mcpgate_scim_last_request_age_seconds{tenant=\"%s\"} %lld\n", s->seen[i].tenant,
                  (long long)(now - s->seen[i].at));
  uv_mutex_unlock(&s->mu);
}

/* ---------- replies ---------- */

/* The reply's body as sent (NULL for none, or when it cannot be encoded). */
static char *encode_scim(const scim_resp *rs) {
  if (rs->status == 204 || rs->status == 304 || !rs->body) return NULL;
  return json_dumps(rs->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* s: the body encode_scim made beforehand (owned; a worker thread's, so a
 * large list is not encoded on the loop; rs->body may be freed already),
 * or NULL to encode it here. */
static void send_scim_encoded(gw_req *req, scim_resp *rs, char *s) {
  if (rs->etag[0]) gw_resp_header(req, "ETag", rs->etag);
  if (rs->location[0]) gw_resp_header(req, "Location", rs->location);
  if (rs->status == 204 || rs->status == 304 || (!rs->body && !s)) {
    free(s);
    gw_respond(req, rs->status ? rs->status : 204, NULL, NULL, 0);
    return;
  }
  if (!s) s = encode_scim(rs);
  if (!s) {
    gw_respond_error(req, 500, "internal", "could not encode the reply");
    return;
  }
  gw_resp_header(req, "Cache-Control", "no-store");
  gw_respond(req, rs->status, "application/scim+json", s, strlen(s));
  free(s);
}

static void send_scim(gw_req *req, scim_resp *rs) { send_scim_encoded(req, rs, NULL); }

static void scim_fail(gw_req *req, int status, const char *type, const char *msg) {
  scim_resp rs = {0};
  scim_error(&rs, status, type, "%s", msg);
  send_scim(req, &rs);
  scim_resp_clear(&rs);
}

/* ---------- authentication ---------- */

/* Extracts the presented token: Bearer X, or Basic base64(user:X). */
static int presented_token(const char *auth, char *out, size_t cap) {
  if (!auth) return -1;
  if (!strncasecmp(auth, "Bearer ", 7)) {
    const char *t = auth + 7;
    while (*t == ' ') t++;
    if (strlen(t) >= cap) return -1;
    strcpy(out, t);
    return 0;
  }
  if (!strncasecmp(auth, "Basic ", 6)) {
    const char *b = auth + 6;
    while (*b == ' ') b++;
    size_t n = strlen(b);
    if (n == 0 || n > 2048 || n % 4) return -1;
    /* the decoded credentials are wiped on every way out: a refused
     * header (no colon, an empty or oversized password, a NUL in it, bad
     * base64 decoded part-way) holds a password as much as an accepted one */
    unsigned char dec[1600];
    int rc = -1;
    int dl = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)n);
    if (dl >= 0) {
      while (n && b[n - 1] == '=') {
        n--;
        dl--;
      }
      char *colon = dl > 0 ? memchr(dec, ':', (size_t)dl) : NULL;
      size_t pl = colon ? (size_t)dl - (size_t)(colon + 1 - (char *)dec) : 0;
      if (colon && pl > 0 && pl < cap && !memchr(colon + 1, 0, pl)) {
        memcpy(out, colon + 1, pl);
        out[pl] = 0;
        rc = 0;
      }
    }
    OPENSSL_cleanse(dec, sizeof dec);
    return rc;
  }
  return -1;
}

/* tokid (NULL: not wanted): the id of the token that authenticated, for
 * still_authorized. */
static int authenticate(gw_req *req, const char *tenant, bool touch, char tokid[32]) {
  char tok[600];
  if (presented_token(gw_req_header(req, "authorization"), tok, sizeof tok) != 0) {
    OPENSSL_cleanse(tok, sizeof tok);
    gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-scim\"");
    scim_fail(req, 401, NULL,
              "authentication required: send the tenant's SCIM token as Authorization: Bearer <token>");
    return -1;
  }
  st_txn *txn;
  if (st_read_begin(req->lp->srv->store, &txn) != 0) {
    OPENSSL_cleanse(tok, sizeof tok);
    scim_fail(req, 503, NULL, "the store cannot be read right now");
    return -1;
  }
  json_t *rec = NULL;
  int rc = auth_token_lookup(txn, tok, AUTH_KIND_SCIM, tenant, &rec);
  st_txn_end(txn);
  if (rc != 0) {
    OPENSSL_cleanse(tok, sizeof tok);
    if (gw_limits_auth_failed(req)) { /* this address failed too often (gateway/core/limits.h) */
      scim_fail(req, 429, NULL, "too many failed authentications from this address; retry after Retry-After seconds");
      return -1;
    }
    gw_resp_header(req, "WWW-Authenticate", "Bearer realm=\"mcpgate-scim\", error=\"invalid_token\"");
    scim_fail(req, 401, NULL, "invalid SCIM token for this tenant");
    return -1;
  }
  if (touch) gw_token_touch(req->lp, tok, rec);
  OPENSSL_cleanse(tok, sizeof tok);
  if (tokid) snprintf(tokid, 32, "%s", json_string_value(json_object_get(rec, "id")) ?: "");
  snprintf(req->actor, sizeof req->actor, "scim-token:%.24s", json_string_value(json_object_get(rec, "id")) ?: "?");
  json_decref(rec);
  return 0;
}

/* ---------- requests ---------- */

typedef struct scim_job {
  gw_req *req;
  scim_req rq;
  scim_resp rs;
  char tenant[64];
  char *path, *query, *base_url, *if_match, *if_none_match;
  uv_work_t work;   /* reads that scan, large bodies' parses, large replies: on libuv's worker pool */
  st_store *store;
  char *encoded;    /* a pool read's reply body, encoded there */
  const char *body; /* the request's body (req->body: valid until the request ends) */
  size_t body_len;
  bool parse_bad;   /* the pool's parse refused it: parse_err says why */
  char parse_err[300];
  bool finish_send; /* job_finish: answer the request on the loop (else: its client is gone, drop it) */
  char token_id[32]; /* the SCIM token that authenticated the request (its id) */
  bool gone;         /* still_authorized said no: the reply is a 401 */
  int cut_status;    /* the write's status while its reply waits for a cut in memory to fan out */
} scim_job;

static void job_free(scim_job *j) {
  json_decref(j->rq.body);
  scim_resp_clear(&j->rs);
  free(j->path);
  free(j->query);
  free(j->base_url);
  free(j->if_match);
  free(j->if_none_match);
  free(j->encoded);
  free(j);
}

/* The request was authenticated when its headers arrived; it may run much
 * later (a large body's parse on the pool, a wait for a heavy-read slot,
 * the writer's queue). In the transaction that reads or writes for it,
 * its tenant must still be active and its SCIM token still exist: a
 * tenant deleted meanwhile — and maybe created again under the same id,
 * a new incarnation the old token must never reach — or a token revoked
 * meanwhile refuses it (401, as authenticate would now). True when it
 * may go on; else j->rs holds the refusal. */
static bool still_authorized(st_txn *txn, scim_job *j) {
  json_t *rec = NULL;
  int rc = st_tenant_active(txn, j->tenant);
  if (rc == 0) rc = auth_token_get_by_id(txn, j->tenant, AUTH_KIND_SCIM, j->token_id, &rec);
  json_decref(rec);
  if (rc == 0) return true;
  scim_resp_clear(&j->rs);
  if (rc == ST_ENOTFOUND || rc == ST_ECORRUPT) {
    j->gone = true;
    scim_error(&j->rs, 401, NULL, "invalid SCIM token for this tenant (revoked, or its tenant deleted, while the "
               "request waited); nothing was done");
  } else {
    scim_error(&j->rs, 503, NULL, "the store cannot be read right now");
  }
  return false;
}

/* Answers j's request with j->rs (s: its body encoded already, or NULL);
 * a refusal by still_authorized carries the challenge authenticate's does. */
static void send_scim_job_encoded(scim_job *j, char *s) {
  if (j->gone && j->rs.status == 401)
    gw_resp_header(j->req, "WWW-Authenticate", "Bearer realm=\"mcpgate-scim\", error=\"invalid_token\"");
  send_scim_encoded(j->req, &j->rs, s);
}
static void send_scim_job(scim_job *j) { send_scim_job_encoded(j, NULL); }

/* A filter no index answers is evaluated on every resource of the tenant:
 * that walk happens on a worker thread with its own read snapshot, never
 * on the loop (STYLE: long scans off the loop). */
static void scan_work(uv_work_t *w) {
  scim_job *j = w->data;
  st_txn *txn;
  if (st_read_begin(j->store, &txn) != 0) {
    scim_error(&j->rs, 503, NULL, "the store cannot be read right now");
    return;
  }
  if (still_authorized(txn, j)) scim_handle(txn, &j->rq, &j->rs);
  st_txn_end(txn);
  j->encoded = encode_scim(&j->rs);
  if (j->encoded) { /* and freed here too: a list of thousands is not freed on the loop either */
    json_decref(j->rs.body);
    j->rs.body = NULL;
  }
}

typedef void (*scan_then)(scim_job *j);
static int scan_wait(scim_job *j, const char *tenant, scan_then then);
static void scan_refuse(scim_job *j, int busy);
static void scan_pool(scim_job *j);

/* Reads on the loop (cheap, or the pool refused the job), or queues the
 * scan on the pool; answers and frees j. A cheap read runs on the loop
 * within SCIM_LOOP_BUDGET (scim.h): one that would pass it (a group of
 * thousands of members, a filter whose candidates are many) is run again
 * as a scan — on the pool, holding a heavy-read slot, waiting for one. */
static void scan_done(uv_work_t *w, int status);
static void scan_start(scim_job *j, bool pool) {
  gw_req *req = j->req;
  j->work.data = j;
  if (pool && uv_queue_work(&req->lp->loop, &j->work, scan_work, scan_done) == 0) return;
  st_txn *txn;
  if (st_read_begin(j->store, &txn) != 0) {
    job_free(j);
    scim_fail(req, 503, NULL, "the store cannot be read right now");
    return;
  }
  scim_budget budget = {SCIM_LOOP_BUDGET, false};
  if (!pool) j->rq.budget = &budget; /* a pool that refused the job: the loop it is, whole */
  if (still_authorized(txn, j)) scim_handle(txn, &j->rq, &j->rs);
  st_txn_end(txn);
  j->rq.budget = NULL;
  if (budget.over) {
    scim_resp_clear(&j->rs); /* incomplete */
    int busy = gw_limits_heavy_take(req, j->tenant, GW_HEAVY_SCIM);
    if (busy && scan_wait(j, j->tenant, scan_pool) == 0) return;
    if (busy) scan_refuse(j, busy);
    else scan_start(j, true);
    return;
  }
  send_scim_job(j);
  job_free(j);
}

static void scan_pool(scim_job *j) { scan_start(j, true); }

static void scan_refuse(scim_job *j, int busy) {
  gw_req *req = j->req;
  gw_limits_heavy_refused(req, busy); /* Okta honours 429's Retry-After */
  job_free(j);
  scim_fail(req, 429, NULL,
            busy == 429 ? "too many scans of this tenant's directory at once: retry in a second"
                        : "the gateway is running its most heavy reads at once: retry in a second");
}

/* A scan past the heavy-read limit waits for a slot, asking again after
 * 10 ms, doubling to 200 ms, for at most SCAN_WAIT_MS; then 429. The
 * request stays valid until answered (http.h), its client gone or not. */
#define SCAN_WAIT_MS 10000
typedef struct scan_waiter {
  uv_timer_t timer;
  scim_job *j;
  scan_then then; /* what runs once it holds a slot: the scan, or a large body's parse */
  char tenant[64];
  uint64_t until, delay;
} scan_waiter;

static void scan_waiter_closed(uv_handle_t *h) { free(h->data); }

static void scan_wait_tick(uv_timer_t *t) {
  scan_waiter *w = t->data;
  scim_job *j = w->j;
  gw_req *req = j->req;
  if (!gw_req_alive(req)) { /* its client left: nobody waits for it */
    uv_close((uv_handle_t *)t, scan_waiter_closed);
    job_free(j);
    gw_req_drop(req);
    return;
  }
  int busy = gw_limits_heavy_take(req, w->tenant, GW_HEAVY_SCIM);
  if (busy && uv_now(t->loop) < w->until) {
    w->delay = w->delay * 2 > 200 ? 200 : w->delay * 2;
    uv_timer_start(t, scan_wait_tick, w->delay, 0);
    return;
  }
  uv_close((uv_handle_t *)t, scan_waiter_closed);
  if (busy) {
    scan_refuse(j, busy);
    return;
  }
  /* it waited: its token (revoked meanwhile?) and tenant (deleted?) are
   * asked again; authenticate answers the refusal */
  if (authenticate(req, w->tenant, false, j->token_id) != 0) {
    job_free(j);
    return;
  }
  w->then(j);
}

/* 0: j waits (scan_wait_tick answers it); -1: no memory to wait */
static int scan_wait(scim_job *j, const char *tenant, scan_then then) {
  scan_waiter *w = calloc(1, sizeof *w);
  if (!w || uv_timer_init(&j->req->lp->loop, &w->timer) != 0) {
    free(w);
    return -1;
  }
  w->j = j;
  w->then = then;
  w->timer.data = w;
  snprintf(w->tenant, sizeof w->tenant, "%s", tenant);
  w->until = uv_now(&j->req->lp->loop) + SCAN_WAIT_MS;
  w->delay = 10;
  uv_timer_start(&w->timer, scan_wait_tick, w->delay, 0);
  return 0;
}

static void scan_done(uv_work_t *w, int status) {
  scim_job *j = w->data;
  if (status != 0) {
    scim_error(&j->rs, 503, NULL, "the search was cancelled");
    free(j->encoded);
    j->encoded = NULL;
  }
  send_scim_job_encoded(j, j->encoded);
  j->encoded = NULL; /* sent (and freed) */
  job_free(j);
}

/* ---------- large bodies and replies: on the pool ----------
 *
 * jansson parses ~60 MB/s here: a 32 MiB Okta push of a 200,000-member
 * group is ~0.5 s of parsing, and its JSON ~50 ms to free; a PUT's reply
 * of 100,000 members is 17 MB, ~0.2 s to encode. On the loop every
 * tenant's requests there would wait for it. A body past PARSE_LOOP_MAX
 * is parsed on libuv's pool — holding a heavy-read slot of the tenant's,
 * as a scan does (the pool is shared with DNS lookups and scans), waiting
 * for one (scan_wait) — and such a request's JSON, or a reply of more than
 * REPLY_LOOP_MEMBERS members, is encoded and freed there too. The request
 * stays valid until answered or dropped (http.h), its client gone or not:
 * parse_done looks whether it still is before going on. */
#define PARSE_LOOP_MAX (256 * 1024) /* bytes: ~4 ms of parsing */
#define REPLY_LOOP_MEMBERS 1000     /* a group reply's members: ~2 ms of encoding */

static bool job_is_large(const scim_job *j) {
  return j->body_len > PARSE_LOOP_MAX || json_array_size(json_object_get(j->rs.body, "members")) > REPLY_LOOP_MEMBERS;
}

static void finish_work(uv_work_t *w) {
  scim_job *j = w->data;
  bool send = j->finish_send;
  if (send && !j->encoded) j->encoded = encode_scim(&j->rs);
  json_decref(j->rq.body);
  j->rq.body = NULL;
  json_decref(j->rs.cut_members);
  j->rs.cut_members = NULL;
  /* the reply's JSON goes once encoded (or not wanted); one that could not
   * be encoded stays for send_scim_encoded to answer 500 */
  if (!send || j->encoded) {
    json_decref(j->rs.body);
    j->rs.body = NULL;
  }
}

static void finish_done(uv_work_t *w, int status) {
  scim_job *j = w->data;
  gw_req *req = j->req;
  (void)status; /* never cancelled; if it were, the loop encodes and frees what is left */
  if (j->finish_send) send_scim_job_encoded(j, j->encoded);
  else gw_req_drop(req);
  j->encoded = NULL; /* sent (and freed) */
  job_free(j);
}

/* Answers j's request with j->rs (send) or ends it without an answer (its
 * client is gone), and frees j: a large one's encoding and JSON on the
 * pool. */
static void job_finish(scim_job *j, bool send) {
  gw_req *req = j->req;
  if (job_is_large(j)) {
    j->finish_send = send;
    j->work.data = j;
    if (uv_queue_work(&req->lp->loop, &j->work, finish_work, finish_done) == 0) return;
  }
  if (send) send_scim_job(j);
  else gw_req_drop(req);
  job_free(j);
}

/* Parses j's body into j->rq.body (a JSON object), or sets parse_bad and
 * parse_err. Any thread. */
static void parse_body(scim_job *j) {
  json_error_t e;
  /* the IdP's: a full push of a large group is ~11 times its text in a
   * tree; 16 times the body (within scim_max_body) still refuses the ~80
   * times of a body built to inflate */
  j->rq.body = gw_json_loadb_within(j->body, j->body_len, JSON_REJECT_DUPLICATES, &e, 16 * j->body_len);
  if (!j->rq.body) {
    j->parse_bad = true;
    snprintf(j->parse_err, sizeof j->parse_err, "invalid JSON at line %d column %d: %s", e.line, e.column, e.text);
  } else if (!json_is_object(j->rq.body)) {
    json_decref(j->rq.body);
    j->rq.body = NULL;
    j->parse_bad = true;
    snprintf(j->parse_err, sizeof j->parse_err, "the body must be a JSON object");
  }
}

/* Test hooks (gw_test_hold_file, server.h): MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE
 * holds a large body's parse; MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE a group
 * write's members listed on the pool after its commit. */

static void parse_work(uv_work_t *w) {
  gw_test_hold_file("MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE");
  parse_body(w->data);
}

static void dispatch_parsed(scim_job *j);
static void parse_done(uv_work_t *w, int status) {
  scim_job *j = w->data;
  gw_req *req = j->req;
  if (!gw_req_alive(req)) { /* its client left: nobody waits for it; its JSON is freed on the pool */
    job_finish(j, false);
    return;
  }
  if (status != 0) {
    job_free(j);
    scim_fail(req, 503, NULL, "the request was cancelled");
    return;
  }
  if (j->parse_bad) {
    scim_fail(req, 400, "invalidSyntax", j->parse_err);
    job_free(j);
    return;
  }
  j->parse_bad = false;
  dispatch_parsed(j);
}

/* j holds a heavy-read slot (or the process has no limits): the parse
 * goes to the pool — or, when the pool refuses it, runs here, whole. */
static void parse_start(scim_job *j) {
  j->work.data = j;
  if (uv_queue_work(&j->req->lp->loop, &j->work, parse_work, parse_done) == 0) return;
  parse_body(j);
  parse_done(&j->work, 0);
}

static int job_run(st_txn *txn, void *arg) {
  scim_job *j = arg;
  j->gone = false; /* a re-run asks again */
  if (!still_authorized(txn, j)) return SCIM_EABORT;
  int rc = scim_handle(txn, &j->rq, &j->rs);
  return rc < 0 ? rc : 0;
}

/* A group's removal of members (or its deletion) that could not be
 * written: those memberships go anyway, in memory, until a write that
 * settles them commits (fail closed; store/dir.h). */
static void cut_memberships(scim_job *j) {
  gw_log_ctx lc = {j->rq.tenant, NULL};
  size_t n = j->rs.cut_group_all ? 0 : json_array_size(j->rs.cut_members);
  const char **uids = n ? calloc(n, sizeof *uids) : NULL;
  if (n && !uids) n = 0, j->rs.cut_group_all = true; /* no room to name them: the whole group */
  for (size_t i = 0; i < n; i++) uids[i] = json_string_value(json_array_get(j->rs.cut_members, i));
  int rc = st_dir_membership_cut_unwritten(j->store, j->rq.tenant, j->rs.cut_group, n ? uids : NULL, n);
  free(uids);
  char who[32];
  if (n) snprintf(who, sizeof who, "%zu member(s)", n);
  else snprintf(who, sizeof who, "every member");
  snprintf(j->req->audit_note, sizeof j->req->audit_note, "not written; group %.36s, %.15s: %s", j->rs.cut_group, who,
           rc == 0 ? "cut in memory" : "NOT cut");
  if (rc == 0)
    GW_LOG(GW_LOG_ERROR, "scim", &lc, "group %s: the removal of %s could not be written; %s lost the group in memory "
           "(across restarts) until a write of the group's membership commits", j->rs.cut_group, who,
           n ? "they" : "its members");
  else
    GW_LOG(GW_LOG_ERROR, "scim", &lc, "group %s: the removal of %s could not be written, nor cut in memory (%s): "
           "they keep the group until a retry succeeds", j->rs.cut_group, who, st_strerror(rc));
}

/* ---------- a group write's members: after its commit, off the writer ----------
 *
 * A group POST's or PUT's reply lists every member (RFC 7644 §3.5.1: a
 * PUT returns the resource): 100,000 of them are ~0.6 s of rendering,
 * which inside the writer job held every tenant's deactivations. The job
 * renders the group without them (scim_req.members_later); once committed
 * they are listed in a read transaction — on the loop within
 * SCIM_LOOP_BUDGET, else on the pool, where the reply is then encoded and
 * freed too — and used only if the group's version is still the one the
 * write made; otherwise the reply is the newer version whole, as a GET
 * would answer (scim_reply_members). The write is done: no heavy-read
 * slot is asked (a 429 cannot undo it). */
static void members_list(scim_job *j) {
  st_txn *txn;
  if (st_read_begin(j->store, &txn) != 0) return; /* the reply goes without its members */
  scim_reply_members(txn, &j->rq, &j->rs);
  st_txn_end(txn);
}

static void members_work(uv_work_t *w) {
  gw_test_hold_file("MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE");
  members_list(w->data);
  finish_work(w);
}

static void members_start(scim_job *j) {
  st_txn *txn;
  if (st_read_begin(j->store, &txn) == 0) {
    scim_budget budget = {SCIM_LOOP_BUDGET, false};
    j->rq.budget = &budget;
    scim_reply_members(txn, &j->rq, &j->rs);
    st_txn_end(txn);
    j->rq.budget = NULL;
    if (budget.over) { /* too many for the loop: the pool lists them, encodes and frees the reply */
      j->finish_send = true;
      j->work.data = j;
      if (uv_queue_work(&j->req->lp->loop, &j->work, members_work, finish_done) == 0) return;
      members_list(j); /* the pool refused it: here, whole */
    }
  }
  job_finish(j, true);
}

static void job_reply(int status, scim_job *j);

/* The cuts in memory below fanned out to every loop: the reply waits until
 * each ended what they cut (gw_loop_after_fanout), as a committed cut's
 * reply does (found by review: the 507 left first) */
static void cut_settled(int ignored, void *arg) {
  (void)ignored;
  scim_job *j = arg;
  job_reply(j->cut_status, j);
}

static void job_done(int status, void *arg) {
  scim_job *j = arg;
  bool cut = false;
  /* revocations queued by this commit ended live exchanges already: the
   * loop's port drains them before every done callback (server.c) */
  if (status < 0 && j->rs.cut_user[0]) {
    /* a valid deactivation (or delete) of an active user that could not be
     * written: access goes anyway, in memory, until one commits (fail
     * closed; store/dir.h) */
    gw_log_ctx lc = {j->rq.tenant, NULL};
    int rc = st_dir_user_cut_unwritten(j->store, j->rq.tenant, j->rs.cut_user, scim_via(&j->rq));
    cut = cut || rc == 0;
    snprintf(j->req->audit_note, sizeof j->req->audit_note, "not written; user %s %s", j->rs.cut_user,
             rc == 0 ? "cut in memory" : "NOT cut (no room in memory)");
    if (rc == 0)
      GW_LOG(GW_LOG_ERROR, "scim", &lc, "user %s: the deactivation could not be written (%s); the user is cut in "
             "memory (across restarts) until the IdP's next word on their active commits", j->rs.cut_user,
             status >= ST_ERR_LAST && status <= ST_ERR_FIRST ? st_strerror(status) : "the request failed");
    else
      GW_LOG(GW_LOG_ERROR, "scim", &lc, "user %s: the deactivation could not be written, nor the user cut in memory "
             "(%s): they keep access until a retry succeeds", j->rs.cut_user, st_strerror(rc));
  }
  bool commit_failed = status < 0 && status >= ST_ERR_LAST && status <= ST_ERR_FIRST;
  if ((commit_failed || (status < 0 && j->rs.store_failed)) && j->rs.cut_group[0] &&
      (j->rs.cut_group_all || json_array_size(j->rs.cut_members))) {
    cut_memberships(j);
    cut = true;
  }
  if (cut) {
    j->cut_status = status;
    if (gw_loop_after_fanout(j->req->lp, cut_settled, j) == 0) return;
  }
  job_reply(status, j);
}

static void job_reply(int status, scim_job *j) {
  bool commit_failed = status < 0 && status >= ST_ERR_LAST && status <= ST_ERR_FIRST;
  if (commit_failed) {
    /* the commit itself failed: nothing was written */
    scim_resp_clear(&j->rs);
    if (status == ST_EMAPFULL) scim_error(&j->rs, 507, NULL, "the gateway's store is full; nothing was written");
    else scim_error(&j->rs, 500, NULL, "the write could not be committed (%s); nothing was written", st_strerror(status));
  }
  if (status >= 0 && j->rs.members_of[0] && j->rs.body) {
    members_start(j);
    return;
  }
  job_finish(j, true);
}

static bool scim_content_type(const char *ct) {
  if (!ct) return false;
  size_t n = strcspn(ct, "; ");
  return (n == 16 && !strncasecmp(ct, "application/json", 16)) ||
         (n == 21 && !strncasecmp(ct, "application/scim+json", 21));
}

void gw_scim_early_error(gw_req *req, int status, const char *msg) { scim_fail(req, status, NULL, msg); }

int gw_scim_preauth(gw_req *req) {
  /* /t/{tenant}/scim/v2{rest}: the same tenant checks as the handler, then
   * the token; last use is noted by the handler, once */
  const char *p = req->path + 3;
  size_t tl = strcspn(p, "/");
  char tenant[64];
  if (tl == 0 || tl >= sizeof tenant) {
    scim_fail(req, 404, NULL, "no such tenant");
    return -1;
  }
  memcpy(tenant, p, tl);
  tenant[tl] = 0;
  if (!st_tenant_id_valid(tenant)) {
    scim_fail(req, 404, NULL, "no such tenant");
    return -1;
  }
  if (!req->lp->srv->store) return 0;
  if (authenticate(req, tenant, false, NULL)) return -1;
  /* (called for a request with a body only) the tenant's bodies coming in
   * at once are bounded before a byte of this one is buffered (limits.h);
   * the handler gives the slot back once the body is in */
  const char *cl = gw_req_header(req, "content-length");
  bool large = !cl || strtoull(cl, NULL, 10) > PARSE_LOOP_MAX; /* none: chunked, of any size */
  if (gw_limits_scim_body_enter(req, tenant, large)) {
    snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
    scim_fail(req, 429, NULL,
              large ? "this tenant has the most large SCIM request bodies (past 256 KiB) coming in at once; retry"
                    : "this tenant has the most SCIM request bodies coming in at once; retry");
    return -1;
  }
  return 0;
}

void gw_scim_dispatch(gw_req *req) {
  gw_server *srv = req->lp->srv;
  /* /t/{tenant}/scim/v2{rest} — the router guarantees the shape */
  const char *p = req->path + 3;
  const char *slash = strchr(p, '/');
  size_t tl = slash ? (size_t)(slash - p) : strlen(p);
  char tenant[64];
  if (tl == 0 || tl >= sizeof tenant) {
    scim_fail(req, 404, NULL, "no such tenant");
    return;
  }
  memcpy(tenant, p, tl);
  tenant[tl] = 0;
  const char *rest = p + tl + strlen("/scim/v2");
  if (!st_tenant_id_valid(tenant)) {
    scim_fail(req, 404, NULL, "no such tenant");
    return;
  }
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (!srv->store) {
    scim_fail(req, 503, NULL, "the store is not open");
    return;
  }
  /* the body is in: its slot (preauth's, limits.h) goes back; a large one
   * is parsed in a heavy-read slot */
  gw_limits_release(req);
  char tokid[32];
  if (authenticate(req, tenant, true, tokid) != 0) return;
  mark_seen(srv->scim, tenant);

  scim_job *j = calloc(1, sizeof *j);
  if (!j) {
    scim_fail(req, 500, NULL, "out of memory");
    return;
  }
  snprintf(j->token_id, sizeof j->token_id, "%s", tokid);
  snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
  size_t bl = strlen(srv->cfg.public_url) + strlen(tenant) + 16;
  j->base_url = malloc(bl);
  j->path = strdup(*rest ? rest : "/");
  j->query = req->query ? strdup(req->query) : NULL;
  const char *im = gw_req_header(req, "if-match");
  j->if_match = im ? strdup(im) : NULL;
  const char *inm = gw_req_header(req, "if-none-match");
  j->if_none_match = inm ? strdup(inm) : NULL;
  if (!j->base_url || !j->path) {
    job_free(j);
    scim_fail(req, 500, NULL, "out of memory");
    return;
  }
  snprintf(j->base_url, bl, "%s/t/%s/scim/v2", srv->cfg.public_url, tenant);
  /* percent-decoding (/Schemas/urn%3A…); %2F and %00 stay encoded so a
   * decoded byte can never add a path segment or end the string */
  for (char *r = j->path, *w = j->path;; r++, w++) {
    if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
      char hex[3] = {r[1], r[2], 0};
      int c = (int)strtol(hex, NULL, 16);
      if (c != '/' && c != 0) {
        *w = (char)c;
        r += 2;
        continue;
      }
    }
    *w = *r;
    if (!*r) break;
  }
  /* trailing slash on collections is harmless */
  size_t pl = strlen(j->path);
  if (pl > 1 && j->path[pl - 1] == '/') j->path[pl - 1] = 0;
  j->req = req;
  j->rq.tenant = j->tenant;
  j->rq.method = req->method;
  j->rq.path = j->path;
  j->rq.query = j->query;
  j->rq.base_url = j->base_url;
  j->rq.if_match = j->if_match;
  j->rq.if_none_match = j->if_none_match;
  j->rq.max_count = (size_t)srv->cfg.scim_max_count;
  j->rq.users_max = (uint64_t)srv->cfg.scim_users_per_tenant_max;
  j->rq.groups_max = (uint64_t)srv->cfg.scim_groups_per_tenant_max;
  j->rq.pages = srv->scim ? srv->scim->pages : NULL;

  /* an unknown endpoint or a method it does not take (OPTIONS, DELETE on
   * /Users, …) is answered here, on the loop: before a body is parsed,
   * and never as a job on the store writer every tenant's deactivations
   * share */
  const char *allow = scim_allowed_methods(j->path);
  if (!allow || !scim_method_allowed(j->path, req->method)) {
    char msg[200];
    if (!allow) {
      snprintf(msg, sizeof msg, "no such SCIM endpoint: %.100s", j->path);
    } else {
      snprintf(msg, sizeof msg, "%.16s is not supported here; this endpoint takes %s", req->method, allow);
      gw_resp_header(req, "Allow", allow);
    }
    job_free(j);
    scim_fail(req, allow ? 405 : 404, NULL, msg);
    return;
  }

  bool has_body = !strcmp(req->method, "POST") || !strcmp(req->method, "PUT") || !strcmp(req->method, "PATCH");
  if (has_body) {
    if (!scim_content_type(gw_req_header(req, "content-type"))) {
      job_free(j);
      scim_fail(req, 415, NULL, "send application/scim+json (or application/json)");
      return;
    }
    j->body = req->body;
    j->body_len = req->body_len;
    j->store = srv->store;
    if (j->body_len > PARSE_LOOP_MAX) {
      /* on the pool, in a heavy-read slot (waiting for one), as a scan */
      int busy = gw_limits_heavy_take(req, tenant, GW_HEAVY_SCIM);
      if (busy && scan_wait(j, tenant, parse_start) == 0) return;
      if (busy) scan_refuse(j, busy);
      else parse_start(j);
      return;
    }
    parse_body(j);
    if (j->parse_bad) {
      scim_fail(req, 400, "invalidSyntax", j->parse_err);
      job_free(j);
      return;
    }
  }
  dispatch_parsed(j);
}

/* The rest of gw_scim_dispatch, once the body (if any) is parsed: a read
 * on the loop or as a scan, or a write as a writer job. */
static void dispatch_parsed(scim_job *j) {
  gw_req *req = j->req;
  gw_server *srv = req->lp->srv;
  const char *tenant = j->tenant;
  if (!scim_is_write_request(&j->rq)) {
    j->store = srv->store;
    if (!scim_read_is_cheap(&j->rq)) {
      /* a scan runs on the thread pool the outbound DNS lookups share: a
       * few per tenant and process at once (limits.h). Okta sends several
       * at once: past the limit a scan waits its turn (scan_wait) */
      int busy = gw_limits_heavy_take(req, tenant, GW_HEAVY_SCIM);
      if (busy && scan_wait(j, tenant, scan_pool) == 0) return;
      if (busy) {
        scan_refuse(j, busy);
        return;
      }
    }
    scan_start(j, !scim_read_is_cheap(&j->rq));
    return;
  }
  /* a resource's size bounds every job of it on the writer, which every
   * tenant's deactivations share (scim.h): past them 413 here, before the
   * writer sees the request */
  if (j->rq.body && scim_write_too_large(&j->rq, &j->rs)) {
    job_finish(j, true);
    return;
  }
  if (!strcmp(req->method, "POST") && scim_new_id(j->rq.new_id) != 0) {
    scim_error(&j->rs, 500, NULL, "could not generate an id");
    job_finish(j, true);
    return;
  }
  char now[32];
  gw_rfc3339_ms(gw_wall_ms(), now);
  memcpy(j->rq.now, now, sizeof j->rq.now - 1);
  j->store = srv->store;
  j->rq.members_later = true; /* a group's members: listed after the commit, off the writer */
  int rc = gw_loop_submit(req->lp, job_run, job_done, j);
  if (rc != 0) {
    /* Okta honours Retry-After (integer seconds) on 429 */
    gw_resp_header(req, "Retry-After", "1");
    scim_error(&j->rs, rc == ST_EBUSY ? 429 : 503, NULL, "the gateway is busy; retry shortly");
    job_finish(j, true);
  }
}

/* ---------- module table entry (gateway/core/module.h) ---------- */

/* Serving: metrics state, hooks and checks; offline (CLI): the checks. */
/* Serving: the lifecycle counters' hooks and the checks (gw_scim_init);
 * offline: the checks. Both: the tenant purge of users and groups. */
static int mod_store_init(st_store *st, gw_server *srv) {
  int rc = scim_register_purge(st);
  if (rc) return rc;
  if (srv) return gw_scim_init(srv);
  scim_register_checks(st);
  return 0;
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  gw_route r = {GW_RC_SCIM, gw_scim_dispatch, NULL, srv->cfg.scim_max_body, gw_scim_early_error, gw_scim_preauth};
  return gw_router_add(rt, "/t/{}/scim/v2/...", &r, 0);
}

const gw_module gw_mod_scim = {
    .name = "scim",
    .store_init = mod_store_init,
    .fini = gw_scim_free,
    .metrics = gw_scim_metrics,
    .routes = mod_routes,
};
