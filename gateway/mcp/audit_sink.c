/* gateway/mcp/audit_sink.c — streaming the audit log to a SIEM (config
 * audit_sink_url): the delivery driver on the primary loop.
 *
 * What it does: every AUDIT_SINK_POLL_MS (at once again while it is
 * behind) it reads the chain heads of the audit environment and, for the
 * first chain whose head is past the sink's cursor, exports up to
 * audit_sink_batch records after the cursor (at most SINK_BODY_MAX bytes)
 * and POSTs them — NDJSON (one record per line) or Splunk HEC envelopes
 * (one {"time","source","sourcetype","event"} per line). A 2xx moves the
 * chain's cursor to the last record sent (audit_cursor_set: written by the
 * audit thread with its next commit); anything else is retried with the
 * same records after a back-off of 1 s doubling to 5 min. Delivery is at
 * least once: records carry a stable "id" for the receiver to drop
 * duplicates (a crash between the 2xx and the cursor's commit re-sends).
 *
 * Rules this file keeps, and why:
 *  - One POST at a time: the receiver sees each chain in order, and a slow
 *    SIEM costs one connection, never a queue in the gateway's memory.
 *  - Tenants' sinks share SINK_INFLIGHT_MAX POSTs at once (bodies in
 *    memory stay bounded), and one tenant's receiver must not hold back
 *    another's: slow POSTs (of sinks not known to answer promptly, or
 *    running long) get half of them at most (tick).
 *  - The export runs on the loop in one short read txn of the audit
 *    environment (at most audit_sink_batch records, SINK_BODY_MAX bytes):
 *    LMDB reads are memory-mapped copies, and nothing is held across the
 *    POST.
 *  - A URL is the operator's (audit_sink_url) or a tenant admin's (the
 *    tenant's sink setting), fetched at the admin egress level
 *    (egress_allow: a tenant admin cannot widen it), checked on the
 *    connected address like every URL; logs name its origin only.
 *  - The token (audit_sink_token_file, or a tenant sink's sealed token)
 *    goes into the Authorization header only: never into a log line, a
 *    metric or an error text; it is wiped at close. So is the URL's query
 *    (a SIEM's API key, ?dd-api-key=…): a tenant sink's real URL is sealed
 *    in the main store and unsealed here only, for the POST; it is kept in
 *    the sink (wiped when freed) and never shown: logs name the origin.
 *  - A tenant sink's cursor is its own (its record's "cursor", named by the
 *    write that made it): a PUT that changes the sink goes on from it, a
 *    sink deleted takes it along (audit_cursor_drop when the driver
 *    retires it), and one made again — also between two ticks — starts
 *    from the chain's first record kept, as a brand-new sink does.
 *  - Stopping aborts the POST in flight and closes the timer; the struct
 *    stays until gw_audit_sink_free after the loops ended (the metrics of
 *    any loop read it until then). */
#include "gateway/mcp/audit_sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "audit/audit.h"
#include "gateway/base/buf.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/out/outbound.h"
#include "store/url_query.h"

#define AUDIT_SINK_POLL_MS 1000
#define SINK_BODY_MAX ((size_t)4 << 20) /* a POST's body stops growing past this */
#define SINK_BODY_SOFT ((size_t)1 << 20) /* ... and takes no further record past this */
#define SINK_BACKOFF_FIRST_MS 1000
#define SINK_BACKOFF_MAX_MS (300 * 1000)
#define SINK_TOKEN_MAX 4096
#define SINK_OPERATOR "operator"
#define SINK_INFLIGHT_MAX 8            /* tenant sinks' POSTs at once: bodies in memory stay bounded */
#define SINK_INFLIGHT_SLOW 4           /* ... of which slow POSTs hold at most this many (see tick) */
#define SINK_PROMPT_MS (10 * 1000)     /* a POST answered within this is prompt; one running longer is slow */
#define SINK_POST_MAX_MS (120 * 1000)  /* a POST still running after this is aborted (a trickling receiver) */
#define SINK_ANSWER_MAX (64 * 1024)    /* a receiver's answer body beyond this is not read */

/* the sink's cursor of one chain, as delivered (mirrors the stored one) */
typedef struct chain_pos {
  char uid[AUDIT_UID_MAX + 1];
  uint64_t seq;       /* last acknowledged */
  bool stored;        /* seq is what audit_cursor_set last accepted */
  uint64_t retry_at;  /* uv_now: the receiver refused this chain's records; not before */
  int64_t backoff_ms; /* its own back-off (0: none) */
  size_t batch;       /* records per POST for this chain (0: the sink's; halved on 413) */
  uint64_t gap_said;  /* the last seq of a pruned gap already logged (a refused POST is retried) */
} chain_pos;

/* One destination: the operator's (every chain) or a tenant's (its
 * current chain only). */
typedef struct sink {
  gw_audit_sink *d;
  char name[AUDIT_SINK_MAX + 1]; /* "operator" | "tenant:<t>" (its state and metrics) */
  char cursor[AUDIT_SINK_MAX + 1]; /* its delivery cursor: "operator" | a tenant sink's ("tenant:<t>:<inc>") */
  char tenant[AUDIT_TENANT_MAX + 1];  /* "" for the operator's */
  char only_uid[AUDIT_UID_MAX + 1];   /* a tenant sink: its tenant's chain */
  char version[48];                   /* a tenant sink: its record's "rev" and "inc" */
  char *url, *ca_file;
  char *auth_header; /* "Authorization: …" or NULL; wiped */
  bool hec, gone;    /* gone: replaced or deleted, freed once its POST ended */
  gw_out_req *req;   /* the POST in flight */
  gw_buf body;
  char uid[AUDIT_UID_MAX + 1]; /* its chain and records */
  uint64_t last, nrec;
  int status;
  int64_t backoff_ms;
  uint64_t next_at; /* uv_now: no round before */
  uint64_t post_at; /* uv_now when the POST in flight began */
  size_t answer;    /* bytes of its answer's body (discarded) */
  bool too_long;    /* aborted: the answer was too big or too slow (after its head) */
  bool preempted;   /* ... cut as a slow POST while every slot was taken (too_long too) */
  bool prompt;      /* its last POST ended with an answer within SINK_PROMPT_MS (a new sink: not yet) */
  bool slow_slot;   /* its POST in flight counts in d->inflight_slow */
  chain_pos *pos;
  size_t npos, cappos;
  audit_sink_state st; /* published to the audit log (admin API, metrics) */
} sink;

struct gw_audit_sink {
  gw_loop *lp;
  gw_server *srv;
  audit_log *log;
  size_t batch;
  sink *op;        /* audit_sink_url, or NULL */
  sink **tenants;  /* tenants' own sinks */
  size_t nt, capt;
  sink **dying;    /* gone with a POST in flight */
  size_t nd, capd;
  unsigned inflight; /* tenant sinks' POSTs in flight (at most SINK_INFLIGHT_MAX; the operator's
                        has its own: tenants' slow receivers never hold it up) */
  unsigned inflight_slow; /* ... of them slow: of a sink not known to answer promptly, or running
                             past SINK_PROMPT_MS (see tick) */
  uint64_t prompt_ms; /* SINK_PROMPT_MS (MCPGATE_TEST_SINK_PROMPT_MS, a test hook, lowers it) */
  size_t rr;         /* the tenant sink the next tick starts with */
  char (*drops)[AUDIT_SINK_MAX + 1]; /* cursors of deleted sinks the audit log could not take yet (full) */
  size_t ndrops, capdrops;
  uv_timer_t timer;
  bool timer_open, started, stopping;
};

/* ---- configuration --------------------------------------------------------------- */

/* The token from its file: one line, trailing CR/LF and spaces trimmed. */
static char *read_token(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read audit_sink_token_file %s: %s", path, strerror(errno));
    return NULL;
  }
  char *t = calloc(1, SINK_TOKEN_MAX + 2);
  size_t n = t ? fread(t, 1, SINK_TOKEN_MAX + 1, f) : 0;
  fclose(f);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t')) t[--n] = 0;
  bool ok = n > 0 && n <= SINK_TOKEN_MAX;
  for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)t[i] > 0x20 && (unsigned char)t[i] < 0x7f;
  if (!ok) {
    OPENSSL_cleanse(t, SINK_TOKEN_MAX + 2);
    free(t);
    snprintf(err, errlen, "audit_sink_token_file %s must hold one token of 1 to %d printable characters", path,
             SINK_TOKEN_MAX);
    return NULL;
  }
  return t;
}

static void sink_free(sink *k) {
  if (!k) return;
  if (k->auth_header) {
    OPENSSL_cleanse(k->auth_header, strlen(k->auth_header));
    free(k->auth_header);
  }
  if (k->url) { /* its query may hold the receiver's key */
    OPENSSL_cleanse(k->url, strlen(k->url));
    free(k->url);
  }
  free(k->ca_file);
  free(k->pos);
  gw_buf_free(&k->body);
  free(k);
}

/* A destination; token (may be NULL) is copied into the header. */
static sink *sink_new(gw_audit_sink *d, const char *name, const char *url, const char *format, const char *token,
                      const char *ca_file) {
  sink *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->d = d;
  snprintf(k->name, sizeof k->name, "%s", name);
  snprintf(k->cursor, sizeof k->cursor, "%s", name);
  k->hec = !strcmp(format, "splunk_hec");
  k->backoff_ms = SINK_BACKOFF_FIRST_MS;
  gw_buf_init(&k->body, SINK_BODY_MAX);
  if (!(k->url = strdup(url)) || (ca_file && *ca_file && !(k->ca_file = strdup(ca_file)))) {
    sink_free(k);
    return NULL;
  }
  if (token) {
    size_t n = strlen(token) + 32;
    if (!(k->auth_header = malloc(n))) {
      sink_free(k);
      return NULL;
    }
    snprintf(k->auth_header, n, "Authorization: %s %s", k->hec ? "Splunk" : "Bearer", token);
  }
  return k;
}

int gw_audit_sink_new(gw_server *srv, audit_log *log, gw_audit_sink **out) {
  *out = NULL;
  const gw_config *c = &srv->cfg;
  gw_audit_sink *d = calloc(1, sizeof *d);
  if (!d) return -1;
  d->srv = srv;
  d->log = log;
  d->batch = (size_t)c->audit_sink_batch;
  /* MCPGATE_TEST_SINK_PROMPT_MS (a test hook): a POST turns slow sooner,
   * so the test of receivers that answer and then hang does not wait 10 s
   * for the cut */
  d->prompt_ms = SINK_PROMPT_MS;
  gw_test_hook_ms("MCPGATE_TEST_SINK_PROMPT_MS", SINK_PROMPT_MS, "a tenant sink's POST is slow after", &d->prompt_ms);
  if (c->audit_sink_url && *c->audit_sink_url) {
    char *tok = NULL;
    if (c->audit_sink_token_file && *c->audit_sink_token_file) {
      char err[512];
      if (!(tok = read_token(c->audit_sink_token_file, err, sizeof err))) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "%s", err);
        free(d);
        return -1;
      }
    }
    d->op = sink_new(d, SINK_OPERATOR, c->audit_sink_url, c->audit_sink_format, tok, c->audit_sink_ca_file);
    if (tok) {
      OPENSSL_cleanse(tok, strlen(tok));
      free(tok);
    }
    if (!d->op) {
      free(d);
      return -1;
    }
  }
  *out = d;
  return 0;
}

void gw_audit_sink_free(gw_audit_sink *d) {
  /* after the loops ended: every POST's on_done and the timer's close ran */
  if (!d) return;
  sink_free(d->op);
  for (size_t i = 0; i < d->nt; i++) sink_free(d->tenants[i]);
  for (size_t i = 0; i < d->nd; i++) sink_free(d->dying[i]);
  free(d->tenants);
  free(d->dying);
  free(d->drops);
  free(d);
}

/* ---- cursors ------------------------------------------------------------------------ */

/* positions sorted by uid: binary search (a sink may cover thousands of chains) */
static size_t pos_at(const sink *k, const char *uid) {
  size_t lo = 0, hi = k->npos;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(k->pos[mid].uid, uid) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static chain_pos *pos_find(sink *k, const char *uid) {
  size_t i = pos_at(k, uid);
  return i < k->npos && !strcmp(k->pos[i].uid, uid) ? &k->pos[i] : NULL;
}

static chain_pos *pos_add(sink *k, const char *uid, uint64_t seq) {
  if (k->npos == k->cappos) {
    size_t cap = k->cappos ? k->cappos * 2 : 16;
    chain_pos *n = realloc(k->pos, cap * sizeof *n);
    if (!n) return NULL;
    k->pos = n;
    k->cappos = cap;
  }
  size_t i = pos_at(k, uid);
  memmove(&k->pos[i + 1], &k->pos[i], (k->npos - i) * sizeof k->pos[0]);
  k->npos++;
  chain_pos *p = &k->pos[i];
  memset(p, 0, sizeof *p);
  snprintf(p->uid, sizeof p->uid, "%s", uid);
  p->seq = seq;
  p->stored = true;
  return p;
}

/* the acknowledged position, handed to the audit thread (again, when its
 * pending table was full last time) */
static void pos_store(sink *k, chain_pos *p) {
  p->stored = audit_cursor_set(k->d->log, k->cursor, p->uid, p->seq) == 0;
}

static void publish(sink *k) { audit_sink_state_put(k->d->log, k->name, &k->st); }

/* ---- one round of one sink ------------------------------------------------------------- */

typedef struct head_list {
  struct {
    char uid[AUDIT_UID_MAX + 1];
    uint64_t seq;
  } *v;
  size_t n, cap;
  bool oom;
} head_list;

static void head_cb(void *ctx, const char *tenant, const char *uid, uint64_t seq, const char *hash) {
  (void)tenant;
  (void)hash;
  head_list *h = ctx;
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    void *n = realloc(h->v, cap * sizeof *h->v);
    if (!n) {
      h->oom = true;
      return;
    }
    h->v = n;
    h->cap = cap;
  }
  snprintf(h->v[h->n].uid, sizeof h->v[0].uid, "%s", uid);
  h->v[h->n++].seq = seq;
}

typedef struct emit_ctx {
  sink *k;
  uint64_t first, last, n; /* first: the seq of the first record emitted */
  size_t limit; /* records in this POST at most */
} emit_ctx;

#define EMIT_FULL (-1)

/* "seq" of a stored record: the module writes {"id":…,"prev":…,"seq":N,… */
static uint64_t rec_seq(const char *p, size_t n) {
  const char *key = memmem(p, n < 256 ? n : 256, "\"seq\":", 6);
  uint64_t v = 0;
  if (!key) return 0;
  for (key += 6; key < p + n && *key >= '0' && *key <= '9'; key++) v = v * 10 + (uint64_t)(*key - '0');
  return v;
}

static int emit(void *ctx, const char *bytes, size_t len) {
  emit_ctx *e = ctx;
  sink *k = e->k;
  size_t before = k->body.len;
  int rc;
  if (k->hec) {
    /* {"time":<seconds.millis>,"source":"mcpgate","sourcetype":"mcpgate:audit","event":<record>} */
    json_t *r = gw_json_loadb(bytes, len, 0, NULL);
    json_int_t ms = json_integer_value(json_object_get(r, "time"));
    json_decref(r);
    char head[96];
    snprintf(head, sizeof head, "{\"time\":%lld.%03lld,", (long long)(ms / 1000), (long long)(ms % 1000));
    rc = gw_buf_appendv(&k->body, head, "\"source\":\"mcpgate\",\"sourcetype\":\"mcpgate:audit\",\"event\":", NULL);
    if (!rc) rc = gw_buf_append(&k->body, bytes, len);
    if (!rc) rc = gw_buf_append(&k->body, "}\n", 2);
  } else {
    rc = gw_buf_append(&k->body, bytes, len);
    if (!rc) rc = gw_buf_append(&k->body, "\n", 1);
  }
  if (rc) { /* past SINK_BODY_MAX: this record goes in the next POST, whole */
    k->body.len = before;
    if (k->body.data) k->body.data[before] = 0;
    return EMIT_FULL;
  }
  e->last = rec_seq(bytes, len);
  if (!e->n) e->first = e->last;
  e->n++;
  return e->n >= e->limit || k->body.len >= SINK_BODY_SOFT ? EMIT_FULL : 0;
}

static void post_done(gw_out_req *r, int err, void *ud);

static void post_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  (void)r;
  (void)h;
  (void)n;
  ((sink *)ud)->status = status;
}

/* the answer's body is not needed: counted and dropped; a receiver that
 * sends more than SINK_ANSWER_MAX is cut (its 2xx head still counts) */
static int post_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  (void)p;
  sink *k = ud;
  k->answer += n;
  if (k->answer > SINK_ANSWER_MAX && !k->too_long) {
    k->too_long = true;
    gw_out_abort(r);
  }
  return 0;
}

static void kick(gw_audit_sink *d, uint64_t ms);

/* why: the failure as the sink's state keeps it (a tenant admin reads it:
 * last_error); detail: what only the operator's log gets besides, or "" */
static void failed(sink *k, const char *why, const char *detail) {
  k->st.posts_failed++;
  k->st.last_failure_ms = gw_wall_ms();
  snprintf(k->st.last_error, sizeof k->st.last_error, "%s", why);
  bool was = k->st.failing;
  k->st.failing = true;
  publish(k);
  /* every failure while the back-off is short, then once per doubling */
  GW_LOG(was && k->backoff_ms >= SINK_BACKOFF_MAX_MS ? GW_LOG_DEBUG : GW_LOG_WARN, "audit",
         &((gw_log_ctx){k->tenant[0] ? k->tenant : NULL, NULL}),
         "audit sink %s: delivering %" PRIu64 " records of chain %s failed: %s%s%s%s; retrying in %lld s", k->name,
         k->nrec, k->uid, why, *detail ? " (" : "", detail, *detail ? ")" : "", (long long)(k->backoff_ms / 1000));
  k->next_at = uv_now(&k->d->lp->loop) + (uint64_t)k->backoff_ms;
  k->backoff_ms = k->backoff_ms * 2 > SINK_BACKOFF_MAX_MS ? SINK_BACKOFF_MAX_MS : k->backoff_ms * 2;
  kick(k->d, AUDIT_SINK_POLL_MS);
}

/* A status that refuses what was sent, not the sink: the receiver is up
 * and took the request, it does not want these records (too large, a
 * format it rejects). Only that chain waits; the others go on. Anything
 * else (5xx, 401, 403, 404, 408, 429, no answer) is the receiver's and
 * backs the whole sink off. */
static bool refused_content(int status) {
  return status == 400 || status == 413 || status == 415 || status == 422;
}

static void chain_refused(sink *k, chain_pos *p, const char *why) {
  k->st.posts_failed++;
  k->st.last_failure_ms = gw_wall_ms();
  snprintf(k->st.last_error, sizeof k->st.last_error, "chain %.64s: %.160s", p->uid, why);
  k->st.failing = true;
  publish(k);
  size_t was = p->batch ? p->batch : k->d->batch;
  if (k->status == 413 && was > 1) p->batch = was / 2; /* smaller POSTs for this chain */
  p->backoff_ms = p->backoff_ms ? (p->backoff_ms * 2 > SINK_BACKOFF_MAX_MS ? SINK_BACKOFF_MAX_MS : p->backoff_ms * 2)
                                : SINK_BACKOFF_FIRST_MS;
  bool smaller = p->batch && p->batch < was;
  if (smaller) p->backoff_ms = 0; /* a smaller POST may pass at once */
  p->retry_at = uv_now(&k->d->lp->loop) + (uint64_t)p->backoff_ms;
  GW_LOG(p->backoff_ms >= SINK_BACKOFF_MAX_MS ? GW_LOG_DEBUG : GW_LOG_WARN, "audit",
         &((gw_log_ctx){k->tenant[0] ? k->tenant : NULL, NULL}),
         "audit sink %s: the receiver refused %" PRIu64 " records of chain %s (%s); %s", k->name, k->nrec, p->uid, why,
         smaller ? "sending fewer at a time" : "that chain waits, the others go on");
  k->next_at = 0;
  kick(k->d, 0);
}

/* a gone sink whose POST ended: out of the dying list, freed */
static void bury(sink *k) {
  gw_audit_sink *d = k->d;
  for (size_t i = 0; i < d->nd; i++)
    if (d->dying[i] == k) {
      d->dying[i] = d->dying[--d->nd];
      break;
    }
  sink_free(k);
}

static void post_done(gw_out_req *r, int err, void *ud) {
  sink *k = ud;
  k->req = NULL;
  if (k->tenant[0]) k->d->inflight--;
  if (k->slow_slot) k->d->inflight_slow--;
  k->slow_slot = false;
  /* a receiver that answered (any status: it is up and says so) in time
   * keeps its place among the prompt sinks; no answer, a slow one, one cut */
  k->prompt = k->status != 0 && !k->too_long && uv_now(&k->d->lp->loop) - k->post_at <= k->d->prompt_ms;
  /* cut after a 2xx head (an endless answer): the records were accepted */
  if (k->too_long && err == GW_OUT_EABORTED && k->status >= 200 && k->status <= 299) err = 0;
  if (k->gone) {
    bury(k);
    return;
  }
  if (k->d->stopping) return;
  if (err || k->status < 200 || k->status > 299) {
    char why[300];
    const char *detail = "";
    if (err && k->tenant[0]) {
      /* A tenant admin reads last_error: the transfer's own words (curl's
       * error text, the refused address) may name internal hosts and
       * addresses — what a host name resolves to, which ports answer — so
       * a tenant's sink keeps the category and a fixed explanation, and
       * the operator's log the detail. */
      detail = gw_out_detail(r);
      snprintf(why, sizeof why, "%s: %s", gw_out_strerror(err),
               err == GW_OUT_EEGRESS ? "the sink's host resolved to an address the operator's egress policy refuses"
                                     : "the gateway's operator has the details in its log");
    } else if (err) {
      const char *det = gw_out_detail(r);
      snprintf(why, sizeof why, "%s%s%s", gw_out_strerror(err), *det ? ": " : "", det);
    } else {
      snprintf(why, sizeof why, "the receiver answered HTTP %d", k->status);
    }
    if (k->preempted && !k->status)
      snprintf(why, sizeof why,
               "no answer within %.3g s while every delivery slot was taken: cut to let other sinks deliver",
               (double)k->d->prompt_ms / 1000);
    else if (k->too_long && !k->status)
      snprintf(why, sizeof why, "no answer within %d s", SINK_POST_MAX_MS / 1000);
    chain_pos *p = pos_find(k, k->uid);
    if (!err && p && refused_content(k->status)) {
      chain_refused(k, p, why);
      return;
    }
    failed(k, why, detail);
    return;
  }
  chain_pos *p = pos_find(k, k->uid);
  if (!p) p = pos_add(k, k->uid, 0);
  if (p) {
    p->seq = k->last;
    p->retry_at = 0;
    p->backoff_ms = 0;
    if (p->batch) p->batch = p->batch * 2 >= k->d->batch ? 0 : p->batch * 2; /* back to the sink's */
    pos_store(k, p);
  }
  k->st.delivered += k->nrec;
  k->st.posts_ok++;
  k->st.last_ok_ms = gw_wall_ms();
  k->st.lag = k->st.lag > k->nrec ? k->st.lag - k->nrec : 0;
  if (k->st.failing) {
    k->st.failing = false;
    GW_LOG(GW_LOG_INFO, "audit", &((gw_log_ctx){k->tenant[0] ? k->tenant : NULL, NULL}),
           "audit sink %s: delivering again (%" PRIu64 " records of chain %s accepted)", k->name, k->nrec, k->uid);
  }
  publish(k);
  k->backoff_ms = SINK_BACKOFF_FIRST_MS;
  k->next_at = 0;
  kick(k->d, 0); /* more may wait: the next round looks at once */
}

/* Retention pruned records from..to of k's current chain before k
 * delivered them: logged (with the tenant, for a tenant's sink: its admins
 * see their log lines) and counted in the sink's state (a tenant admin's
 * GET view shows "pruned"). */
static void said_pruned(sink *k, uint64_t from, uint64_t to) {
  k->st.pruned += to - from + 1;
  publish(k);
  GW_LOG(GW_LOG_WARN, "audit", &((gw_log_ctx){k->tenant[0] ? k->tenant : NULL, NULL}),
         "audit sink %s: records %" PRIu64 "..%" PRIu64 " of chain %s were pruned before they were delivered",
         k->name, from, to, k->uid);
}

/* One round of k over the heads read in txn: the first chain it has not
 * delivered, one POST. */
static void sink_round(sink *k, st_txn *txn, const head_list *hl) {
  uint64_t lag = 0;
  size_t pick = hl->n;
  size_t from = 0, to = hl->n;
  if (k->only_uid[0]) { /* a tenant's sink: its chain only (heads come in uid order) */
    size_t lo = 0, hi = hl->n;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (strcmp(hl->v[mid].uid, k->only_uid) < 0) lo = mid + 1;
      else hi = mid;
    }
    from = lo;
    to = lo < hl->n && !strcmp(hl->v[lo].uid, k->only_uid) ? lo + 1 : lo;
  }
  /* the first chain behind after the one this sink served last (heads
   * come in uid order; wrapping to the first behind): a busy chain that
   * sorts first cannot keep every other chain waiting */
  size_t next = hl->n;
  for (size_t i = from; i < to; i++) {
    chain_pos *p = pos_find(k, hl->v[i].uid);
    if (!p) {
      uint64_t seq = 0;
      if (audit_cursor_get(txn, k->cursor, hl->v[i].uid, &seq) < 0) seq = 0;
      if (!(p = pos_add(k, hl->v[i].uid, seq))) continue;
    }
    if (!p->stored) pos_store(k, p);
    if (hl->v[i].seq > p->seq) {
      lag += hl->v[i].seq - p->seq;
      if (p->retry_at > uv_now(&k->d->lp->loop)) continue; /* refused: its own back-off */
      if (pick == hl->n) pick = i;
      if (next == hl->n && k->uid[0] && strcmp(hl->v[i].uid, k->uid) > 0) next = i;
    }
  }
  if (next != hl->n) pick = next;
  if (k->st.lag != lag) {
    k->st.lag = lag;
    publish(k);
  }
  if (pick == hl->n) return;
  chain_pos *p = pos_find(k, hl->v[pick].uid);
  if (!p) return; /* picked only with a position: never */
  snprintf(k->uid, sizeof k->uid, "%s", p->uid);
  gw_buf_reset(&k->body);
  emit_ctx e = {k, 0, 0, 0, p->batch ? p->batch : k->d->batch};
  uint64_t after = p->seq;
  int rc = audit_export_chunk(txn, k->uid, 0, 0, &after, e.limit, emit, &e);
  if (rc < 0 && rc != EMIT_FULL) {
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "audit sink %s: cannot read chain %s: %s", k->name, k->uid,
           audit_strerror(rc));
    return;
  }
  if (!e.n) {
    /* nothing left after the cursor: retention pruned what was never
     * delivered (logged), or a scan stopped early; move on */
    uint64_t upto = rc == 0 ? hl->v[pick].seq : after;
    if (rc == 0 && upto > p->seq) said_pruned(k, p->seq + 1, upto);
    p->seq = upto;
    pos_store(k, p);
    kick(k->d, 0);
    return;
  }
  /* retention pruned some of what was never delivered; the rest goes
   * (said once per gap, not once per retry of the same POST) */
  if (e.first > p->seq + 1 && e.first - 1 > p->gap_said) {
    p->gap_said = e.first - 1;
    said_pruned(k, p->seq + 1, e.first - 1);
  }
  k->last = e.last;
  k->nrec = e.n;
  k->status = 0;
  k->answer = 0;
  k->too_long = false;
  k->preempted = false;
  const char *headers[4];
  size_t nh = 0;
  headers[nh++] = k->hec ? "Content-Type: application/json" : "Content-Type: application/x-ndjson";
  if (k->auth_header) headers[nh++] = k->auth_header;
  headers[nh] = NULL;
  gw_out_opts o = {.method = "POST",
                   .url = k->url,
                   .headers = headers,
                   .body = k->body.data,
                   .body_len = k->body.len,
                   .connect_timeout_ms = 10000,
                   .first_byte_timeout_ms = 30000,
                   .idle_timeout_ms = 30000,
                   .ca_file = k->ca_file,
                   .max_header_bytes = 16384,
                   .egress = GW_OUT_EGRESS_ADMIN,
                   .fair_key = k->tenant,
                   .budget_class = GW_OUT_BUDGET_GATEWAY,
                   .on_headers = post_headers,
                   .on_data = post_data,
                   .on_done = post_done,
                   .ud = k};
  rc = gw_out_start(k->d->lp->out, &o, &k->req);
  /* the engine copied the body: ours is not kept between POSTs */
  gw_buf_free(&k->body);
  gw_buf_init(&k->body, SINK_BODY_MAX);
  if (rc) {
    k->req = NULL;
    failed(k, gw_out_strerror(rc), "");
    return;
  }
  if (k->tenant[0]) {
    k->d->inflight++;
    k->slow_slot = !k->prompt; /* not known to answer promptly: in the slow share from the start */
    if (k->slow_slot) k->d->inflight_slow++;
  }
  k->post_at = uv_now(&k->d->lp->loop);
}

/* The URL as logs may show it: its origin, "/…" for the rest (user info,
 * path and query may each hold a credential: ?token=, a collector code). */
static void url_for_log(const char *url, char *out, size_t cap) {
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  const char *end = host + strcspn(host, "/?#");
  /* the origin only: some collectors carry their credential in the path
   * (a Sumo Logic HTTP source's collector code), others in the query; and
   * never a part of user information (st_url_origin: the operator's
   * sink_url is not refused for it, a '?' may hide it) */
  char origin[300];
  st_url_origin(url, origin, sizeof origin);
  snprintf(out, cap, "%s%s", origin, *end ? "/…" : "");
}

/* ---- the tenants' sinks, as the main store says ------------------------------------- */

typedef char cursor_name[AUDIT_SINK_MAX + 1];

static bool name_in(const cursor_name *v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i], name)) return true;
  return false;
}

/* Hands the audit log the drop of a deleted sink's cursor; kept for the
 * next tick when its table of pending updates is full. A cursor left
 * behind (no memory to keep it, a crash before the tick) is never read
 * again: the sink made next has its own. */
static void drop_cursor(gw_audit_sink *d, const char *cursor) {
  if (audit_cursor_drop(d->log, cursor) != AUDIT_EFULL || name_in(d->drops, d->ndrops, cursor)) return;
  if (d->ndrops == d->capdrops) {
    size_t cap = d->capdrops ? d->capdrops * 2 : 8;
    cursor_name *n = realloc(d->drops, cap * sizeof *n);
    if (!n) return;
    d->drops = n;
    d->capdrops = cap;
  }
  snprintf(d->drops[d->ndrops++], sizeof d->drops[0], "%s", cursor);
}

static void drops_retry(gw_audit_sink *d) {
  size_t w = 0;
  for (size_t i = 0; i < d->ndrops; i++)
    if (audit_cursor_drop(d->log, d->drops[i]) == AUDIT_EFULL) memmove(d->drops[w++], d->drops[i], sizeof d->drops[0]);
  d->ndrops = w;
}

/* k is out of the running list; its state goes unless a new sink of the
 * same name (in now, the list that replaces the old one) carries it on,
 * and its cursor goes unless a sink stored now has it (cursors: the names
 * of those, a record that could not start included): a tenant's sink that
 * is deleted takes its cursor with it */
static void retire(gw_audit_sink *d, sink *k, sink *const *now, size_t nnow, const cursor_name *cursors,
                   size_t ncursors) {
  bool replaced = false;
  for (size_t i = 0; i < nnow && !replaced; i++) replaced = now[i] != k && !strcmp(now[i]->name, k->name);
  if (!replaced) audit_sink_state_put(d->log, k->name, NULL);
  if (k->tenant[0] && !name_in(cursors, ncursors, k->cursor)) drop_cursor(d, k->cursor);
  if (!k->req) {
    sink_free(k);
    return;
  }
  k->gone = true;
  gw_out_abort(k->req); /* its on_done frees it */
  if (d->nd == d->capd) {
    size_t cap = d->capd ? d->capd * 2 : 8;
    sink **n = realloc(d->dying, cap * sizeof *n);
    if (!n) return; /* freed by nobody: a leak on an allocation failure beats a use after free */
    d->dying = n;
    d->capd = cap;
  }
  d->dying[d->nd++] = k;
}

typedef struct sync_ctx {
  gw_audit_sink *d;
  st_txn *txn;
  sink **keep; /* the new list */
  size_t n, cap;
  cursor_name *cursors; /* the cursors of the sinks stored now, of tenants not being purged */
  size_t ncursors, capcursors;
  bool oom;
} sync_ctx;

static sink *tenant_sink_find(gw_audit_sink *d, const char *tenant) {
  for (size_t i = 0; i < d->nt; i++)
    if (!strcmp(d->tenants[i]->tenant, tenant)) return d->tenants[i];
  return NULL;
}

static bool in_list(sink *const *v, size_t n, const sink *k) {
  for (size_t i = 0; i < n; i++)
    if (v[i] == k) return true;
  return false;
}

/* the list being built: the running sink when its settings are the same,
 * else a new one (made from the record and its unsealed token) */
static int sync_one(void *ctx, const char *tenant, const json_t *rec) {
  sync_ctx *c = ctx;
  gw_audit_sink *d = c->d;
  /* the write the record is from: rev alone starts at 1 again when the sink
   * is deleted and made again between two ticks, and the running sink
   * (the deleted one's URL and token) was kept */
  char version[48];
  const char *inc = json_string_value(json_object_get(rec, "inc"));
  snprintf(version, sizeof version, "%" PRId64 ".%.24s", (int64_t)json_integer_value(json_object_get(rec, "rev")),
           inc ? inc : "");
  char uid[ST_TENANT_UID_LEN + 1];
  if (st_tenant_uid_get(c->txn, tenant, uid) != 0) return 0; /* a tenant being purged */
  /* the sink's cursor: its own since it was made (a sink deleted and made
   * again between two ticks has another) */
  if (c->ncursors == c->capcursors) {
    size_t cap = c->capcursors ? c->capcursors * 2 : 8;
    cursor_name *nc = realloc(c->cursors, cap * sizeof *nc);
    if (!nc) {
      c->oom = true;
      return 1;
    }
    c->cursors = nc;
    c->capcursors = cap;
  }
  char *cursor = c->cursors[c->ncursors++];
  audit_tenant_sink_cursor(tenant, rec, cursor);
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    sink **n = realloc(c->keep, cap * sizeof *n);
    if (!n) {
      c->oom = true;
      return 1;
    }
    c->keep = n;
    c->cap = cap;
  }
  sink *k = tenant_sink_find(d, tenant);
  if (k && !strcmp(k->version, version) && !strcmp(k->only_uid, uid)) {
    c->keep[c->n++] = k;
    return 0;
  }
  /* a sink made since (deleted and made again at once): a new sink, with
   * nothing of the running one's */
  if (k && strcmp(k->cursor, cursor)) k = NULL;
  char *tok = NULL;
  if (json_is_true(json_object_get(rec, "token_set")) && audit_tenant_sink_token(c->txn, tenant, &tok) != 0) {
    GW_LOG(GW_LOG_ERROR, "audit", &((gw_log_ctx){tenant, NULL}),
           "audit sink of tenant %s: its token cannot be unsealed; nothing is sent until it is set again", tenant);
    return 0;
  }
  /* the real URL: its query (a key) is sealed when it has values */
  const char *url = NULL;
  char *sealed_url = NULL;
  if (audit_tenant_sink_url(c->txn, tenant, rec, &url, &sealed_url) != 0) {
    audit_tenant_sink_token_free(tok);
    GW_LOG(GW_LOG_ERROR, "audit", &((gw_log_ctx){tenant, NULL}),
           "audit sink of tenant %s: its URL cannot be unsealed; nothing is sent until it is set again", tenant);
    return 0;
  }
  char name[AUDIT_SINK_MAX + 1];
  snprintf(name, sizeof name, "tenant:%s", tenant);
  sink *n = sink_new(d, name, url, json_string_value(json_object_get(rec, "format")) ?: "ndjson", tok, NULL);
  audit_tenant_sink_token_free(tok);
  audit_tenant_sink_url_free(sealed_url);
  if (!n) {
    c->oom = true;
    return 1;
  }
  snprintf(n->tenant, sizeof n->tenant, "%s", tenant);
  snprintf(n->cursor, sizeof n->cursor, "%s", cursor);
  snprintf(n->only_uid, sizeof n->only_uid, "%s", uid);
  snprintf(n->version, sizeof n->version, "%s", version);
  if (k) {
    /* changed settings: the counters go on, and so does the position of
     * its chain. The old sink's in memory, not the stored one: a 2xx's
     * cursor reaches the audit environment with the audit log's next
     * commit (up to audit_batch_ms later, or later still when its pending
     * table was full: stored false, set again by the new sink's round), and
     * a new sink reading the stored cursor before that sent the batch just
     * accepted again — to the new URL, or twice to the same receiver. A
     * POST of the old sink still in flight is aborted (retire) and never
     * moved the position: its records go to the new sink. The chain's
     * back-off and smaller batch were the old receiver's: not copied. */
    chain_pos *op = pos_find(k, uid);
    chain_pos *np = op ? pos_add(n, uid, op->seq) : NULL;
    if (op && !np) {
      sink_free(n);
      c->oom = true;
      return 1;
    }
    if (np) {
      np->stored = op->stored;
      np->gap_said = op->gap_said;
    }
    n->st.delivered = k->st.delivered;
    n->st.posts_ok = k->st.posts_ok;
    n->st.posts_failed = k->st.posts_failed;
    n->st.pruned = k->st.pruned;
  } else {
    char shown[512];
    url_for_log(n->url, shown, sizeof shown);
    GW_LOG(GW_LOG_INFO, "audit", &((gw_log_ctx){tenant, NULL}), "audit sink %s: streaming to %s (%s)", name, shown,
           n->hec ? "Splunk HEC" : "NDJSON");
  }
  publish(n);
  c->keep[c->n++] = n;
  return 0;
}

/* The tenants' sinks as the main store holds them now: new ones made,
 * changed ones replaced (the old one's POST aborted), deleted ones retired.
 * On a failure nothing changes. */
static void sync_tenants(gw_audit_sink *d) {
  st_txn *txn;
  if (!d->srv->store || st_read_begin(d->srv->store, &txn) != 0) return;
  sync_ctx c = {.d = d, .txn = txn};
  int rc = audit_tenant_sinks_each(txn, sync_one, &c);
  st_txn_end(txn);
  if (rc < 0 || c.oom) {
    for (size_t i = 0; i < c.n; i++)
      if (!in_list(d->tenants, d->nt, c.keep[i])) {
        audit_sink_state_put(d->log, c.keep[i]->name, NULL);
        sink_free(c.keep[i]);
      }
    free(c.keep);
    free(c.cursors);
    return;
  }
  for (size_t i = 0; i < d->nt; i++)
    if (!in_list(c.keep, c.n, d->tenants[i])) retire(d, d->tenants[i], c.keep, c.n, c.cursors, c.ncursors);
  free(c.cursors);
  free(d->tenants);
  d->tenants = c.keep;
  d->nt = c.n;
  d->capt = c.cap;
}

/* ---- the driver ------------------------------------------------------------------------ */

static void tick(uv_timer_t *t) {
  gw_audit_sink *d = t->data;
  if (d->stopping) return;
  if (d->ndrops) drops_retry(d);
  sync_tenants(d);
  if (!d->op && !d->nt) { /* no sink (the usual case): nothing to read */
    kick(d, AUDIT_SINK_POLL_MS);
    return;
  }
  st_txn *txn = NULL;
  head_list hl = {0};
  int rc = st_read_begin(audit_store(d->log), &txn);
  if (rc == 0) rc = audit_heads(txn, head_cb, &hl);
  if (rc < 0 || hl.oom) {
    if (txn) st_txn_end(txn);
    free(hl.v);
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "audit sinks: cannot read the chain heads: %s",
           hl.oom ? "out of memory" : audit_strerror(rc));
    kick(d, AUDIT_SINK_POLL_MS);
    return;
  }
  uint64_t now = uv_now(&d->lp->loop);
  /* a POST that runs too long is cut (its on_done retries it later) */
  if (d->op && d->op->req && now - d->op->post_at > SINK_POST_MAX_MS && !d->op->too_long) {
    d->op->too_long = true;
    gw_out_abort(d->op->req);
  }
  sink *slow[SINK_INFLIGHT_MAX]; /* the tenants' slow POSTs not being cut, oldest first */
  size_t nslow = 0;
  for (size_t i = 0; i < d->nt; i++) {
    sink *k = d->tenants[i];
    if (!k->req || k->too_long) continue;
    if (now - k->post_at > SINK_POST_MAX_MS) {
      k->too_long = true;
      gw_out_abort(k->req);
      continue;
    }
    if (!k->slow_slot && now - k->post_at > d->prompt_ms) { /* a prompt sink's POST that turned slow */
      k->slow_slot = true;
      d->inflight_slow++;
    }
    if (!k->slow_slot || nslow == SINK_INFLIGHT_MAX) continue; /* (never full: each holds a slot) */
    size_t at = nslow++;
    for (; at > 0 && slow[at - 1]->post_at > k->post_at; at--) slow[at] = slow[at - 1];
    slow[at] = k;
  }
  /* Slots are shared so that one tenant's receiver never holds back
   * another's: slow POSTs — of a sink whose last POST got no answer within
   * SINK_PROMPT_MS (a new sink too), or running past it — hold at most
   * SINK_INFLIGHT_SLOW slots, the rest are for sinks that answer. A sink
   * not known to answer promptly starts only while the slow share has
   * room; when prompt sinks' POSTs turn slow and every slot is taken, the
   * oldest slow ones beyond the share are cut (retried after back-off): a
   * receiver that answers once and then hangs gains one slow POST by it,
   * not a slot for as long as it hangs. Receivers that hang — down,
   * blackholed, or made to — then hold half the slots at most (after
   * SINK_PROMPT_MS), and a tenant whose SIEM answers waits for none of
   * them. */
  for (size_t i = 0; d->inflight >= SINK_INFLIGHT_MAX && nslow > SINK_INFLIGHT_SLOW + i; i++) {
    slow[i]->too_long = slow[i]->preempted = true;
    gw_out_abort(slow[i]->req);
  }
  /* the operator's first, then the tenants' from where the last tick
   * stopped: a cap on POSTs in flight never starves the later ones */
  if (d->op && !d->op->req && now >= d->op->next_at) sink_round(d->op, txn, &hl);
  for (size_t j = 0; j < d->nt && d->inflight < SINK_INFLIGHT_MAX; j++) {
    sink *k = d->tenants[(d->rr + j) % d->nt];
    if (k->req || now < k->next_at) continue;
    if (!k->prompt && d->inflight_slow >= SINK_INFLIGHT_SLOW) continue; /* the slow share is full */
    sink_round(k, txn, &hl);
  }
  if (d->nt) d->rr = (d->rr + 1) % d->nt;
  st_txn_end(txn);
  free(hl.v);
  if (!uv_is_active((uv_handle_t *)&d->timer)) kick(d, AUDIT_SINK_POLL_MS);
}

/* the next tick in ms at the latest (a sooner one stays) */
static void kick(gw_audit_sink *d, uint64_t ms) {
  if (d->stopping || !d->timer_open) return;
  if (uv_is_active((uv_handle_t *)&d->timer) && uv_timer_get_due_in(&d->timer) <= ms) return;
  uv_timer_start(&d->timer, tick, ms, 0);
}

/* ---- life on the primary loop ------------------------------------------------------- */

int gw_audit_sink_start(gw_audit_sink *d, gw_loop *lp) {
  d->lp = lp;
  if (uv_timer_init(&lp->loop, &d->timer)) return -1;
  d->timer.data = d;
  d->timer_open = true;
  d->started = true;
  uv_timer_start(&d->timer, tick, 0, 0);
  if (d->op) {
    char shown[512];
    url_for_log(d->op->url, shown, sizeof shown);
    GW_LOG(GW_LOG_INFO, "audit", NULL, "audit sink %s: streaming every tenant's records to %s (%s)", d->op->name,
           shown, d->op->hec ? "Splunk HEC" : "NDJSON");
    publish(d->op);
  }
  return 0;
}

static void timer_closed(uv_handle_t *h) {
  gw_audit_sink *d = h->data;
  d->timer_open = false;
}

void gw_audit_sink_stop(gw_audit_sink *d) {
  d->stopping = true;
  if (d->op && d->op->req) gw_out_abort(d->op->req);
  for (size_t i = 0; i < d->nt; i++)
    if (d->tenants[i]->req) gw_out_abort(d->tenants[i]->req);
  uv_close((uv_handle_t *)&d->timer, timer_closed);
}

typedef struct metrics_ctx {
  gw_buf *out;
  int part;
} metrics_ctx;

static void metrics_one(void *ctx, const char *name, const audit_sink_state *st) {
  metrics_ctx *m = ctx;
  char line[512];
  switch (m->part) {
  case 0:
    snprintf(line, sizeof line, "mcpgate_audit_sink_records_delivered_total{sink=\"%s\"} %" PRIu64 "\n", name,
             st->delivered);
    break;
  case 1:
    snprintf(line, sizeof line,
             "mcpgate_audit_sink_posts_total{sink=\"%s\",result=\"ok\"} %" PRIu64 "\n"
             "mcpgate_audit_sink_posts_total{sink=\"%s\",result=\"failed\"} %" PRIu64 "\n",
             name, st->posts_ok, name, st->posts_failed);
    break;
  case 2: snprintf(line, sizeof line, "mcpgate_audit_sink_failing{sink=\"%s\"} %d\n", name, st->failing ? 1 : 0); break;
  case 3:
    snprintf(line, sizeof line, "mcpgate_audit_sink_lag_records{sink=\"%s\"} %" PRIu64 "\n", name, st->lag);
    break;
  default:
    snprintf(line, sizeof line, "mcpgate_audit_sink_last_success_timestamp_seconds{sink=\"%s\"} %.3f\n", name,
             (double)st->last_ok_ms / 1000.0);
  }
  gw_buf_append(m->out, line, strlen(line));
}

void gw_audit_sink_metrics(audit_log *log, gw_buf *out) {
  static const char *const head[] = {
      "# HELP mcpgate_audit_sink_records_delivered_total Audit records a SIEM sink accepted (sink: operator, or "
      "tenant:<id>).\n# TYPE mcpgate_audit_sink_records_delivered_total counter\n",
      "# HELP mcpgate_audit_sink_posts_total POSTs to a SIEM sink, by outcome (2xx or not).\n"
      "# TYPE mcpgate_audit_sink_posts_total counter\n",
      "# HELP mcpgate_audit_sink_failing 1 while the last delivery to a SIEM sink failed.\n"
      "# TYPE mcpgate_audit_sink_failing gauge\n",
      "# HELP mcpgate_audit_sink_lag_records Audit records written and not yet delivered to a SIEM sink.\n"
      "# TYPE mcpgate_audit_sink_lag_records gauge\n",
      "# HELP mcpgate_audit_sink_last_success_timestamp_seconds When a SIEM sink last accepted a POST (0: not yet).\n"
      "# TYPE mcpgate_audit_sink_last_success_timestamp_seconds gauge\n",
  };
  for (int part = 0; part < 5; part++) {
    gw_buf_appends(out, head[part]);
    metrics_ctx m = {out, part};
    audit_sink_states_each(log, metrics_one, &m);
  }
}
