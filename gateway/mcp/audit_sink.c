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
 *  - The export runs on the loop in one short read txn of the audit
 *    environment (at most audit_sink_batch records, SINK_BODY_MAX bytes):
 *    LMDB reads are memory-mapped copies, and nothing is held across the
 *    POST.
 *  - The URL is the operator's and is fetched at the admin egress level
 *    (egress_allow), checked on the connected address like every URL.
 *  - The token (audit_sink_token_file) goes into the Authorization header
 *    only: never into a log line, a metric or an error text; it is wiped
 *    at close.
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
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/out/outbound.h"

#define AUDIT_SINK_POLL_MS 1000
#define SINK_BODY_MAX ((size_t)4 << 20) /* a POST's body stops growing past this */
#define SINK_BODY_SOFT ((size_t)1 << 20) /* ... and takes no further record past this */
#define SINK_BACKOFF_FIRST_MS 1000
#define SINK_BACKOFF_MAX_MS (300 * 1000)
#define SINK_TOKEN_MAX 4096
#define SINK_NAME "operator"

/* the sink's cursor of one chain, as delivered (mirrors the stored one) */
typedef struct chain_pos {
  char uid[AUDIT_UID_MAX + 1];
  uint64_t seq;  /* last acknowledged */
  bool stored;   /* seq is what audit_cursor_set last accepted */
} chain_pos;

struct gw_audit_sink {
  gw_loop *lp;
  audit_log *log;
  char *url, *ca_file;
  char *auth_header; /* "Authorization: …" or NULL; wiped */
  bool hec;
  size_t batch;

  uv_timer_t timer;
  bool timer_open, stopping;
  gw_out_req *req; /* the POST in flight */
  gw_buf body;
  char uid[AUDIT_UID_MAX + 1]; /* its chain and records */
  uint64_t first, last, nrec;
  int status;
  int64_t backoff_ms;

  chain_pos *pos;
  size_t npos, cappos;

  _Atomic uint64_t delivered, posts_ok, posts_failed, lag;
  _Atomic int failing;
  _Atomic int64_t last_ok_ms;
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

static void sink_free(gw_audit_sink *s) {
  if (!s) return;
  if (s->auth_header) {
    OPENSSL_cleanse(s->auth_header, strlen(s->auth_header));
    free(s->auth_header);
  }
  free(s->url);
  free(s->ca_file);
  free(s->pos);
  gw_buf_free(&s->body);
  free(s);
}

int gw_audit_sink_new(gw_server *srv, audit_log *log, gw_audit_sink **out) {
  *out = NULL;
  const gw_config *c = &srv->cfg;
  if (!c->audit_sink_url || !*c->audit_sink_url) return 0;
  gw_audit_sink *s = calloc(1, sizeof *s);
  if (!s) return -1;
  s->log = log;
  s->hec = !strcmp(c->audit_sink_format, "splunk_hec");
  s->batch = (size_t)c->audit_sink_batch;
  s->backoff_ms = SINK_BACKOFF_FIRST_MS;
  gw_buf_init(&s->body, SINK_BODY_MAX);
  if (!(s->url = strdup(c->audit_sink_url)) ||
      (c->audit_sink_ca_file && *c->audit_sink_ca_file && !(s->ca_file = strdup(c->audit_sink_ca_file)))) {
    sink_free(s);
    return -1;
  }
  if (c->audit_sink_token_file && *c->audit_sink_token_file) {
    char err[512];
    char *tok = read_token(c->audit_sink_token_file, err, sizeof err);
    if (!tok) {
      GW_LOG(GW_LOG_ERROR, "audit", NULL, "%s", err);
      sink_free(s);
      return -1;
    }
    size_t n = strlen(tok) + 32;
    if ((s->auth_header = malloc(n)))
      snprintf(s->auth_header, n, "Authorization: %s %s", s->hec ? "Splunk" : "Bearer", tok);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    if (!s->auth_header) {
      sink_free(s);
      return -1;
    }
  }
  *out = s;
  return 0;
}

void gw_audit_sink_free(gw_audit_sink *s) {
  /* after the loops ended: the POST's on_done and the timer's close ran */
  sink_free(s);
}

/* ---- cursors ------------------------------------------------------------------------ */

static chain_pos *pos_find(gw_audit_sink *s, const char *uid) {
  for (size_t i = 0; i < s->npos; i++)
    if (!strcmp(s->pos[i].uid, uid)) return &s->pos[i];
  return NULL;
}

static chain_pos *pos_add(gw_audit_sink *s, const char *uid, uint64_t seq) {
  if (s->npos == s->cappos) {
    size_t cap = s->cappos ? s->cappos * 2 : 16;
    chain_pos *n = realloc(s->pos, cap * sizeof *n);
    if (!n) return NULL;
    s->pos = n;
    s->cappos = cap;
  }
  chain_pos *p = &s->pos[s->npos++];
  snprintf(p->uid, sizeof p->uid, "%s", uid);
  p->seq = seq;
  p->stored = true;
  return p;
}

/* the acknowledged position, handed to the audit thread (again, when its
 * pending table was full last time) */
static void pos_store(gw_audit_sink *s, chain_pos *p) {
  p->stored = audit_cursor_set(s->log, SINK_NAME, p->uid, p->seq) == 0;
}

/* ---- one round ------------------------------------------------------------------------ */

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
  gw_audit_sink *s;
  uint64_t last, n;
} emit_ctx;

#define EMIT_FULL (-1)

/* "seq" of a stored record: the module writes {"id":…,"prev":…,"seq":N,… */
static uint64_t rec_seq(const char *p, size_t n) {
  const char *k = memmem(p, n < 256 ? n : 256, "\"seq\":", 6);
  uint64_t v = 0;
  if (!k) return 0;
  for (k += 6; k < p + n && *k >= '0' && *k <= '9'; k++) v = v * 10 + (uint64_t)(*k - '0');
  return v;
}

static int emit(void *ctx, const char *bytes, size_t len) {
  emit_ctx *e = ctx;
  gw_audit_sink *s = e->s;
  size_t before = s->body.len;
  int rc;
  if (s->hec) {
    /* {"time":<seconds.millis>,"source":"mcpgate","sourcetype":"mcpgate:audit","event":<record>} */
    json_t *r = json_loadb(bytes, len, 0, NULL);
    json_int_t ms = json_integer_value(json_object_get(r, "time"));
    json_decref(r);
    char head[96];
    snprintf(head, sizeof head, "{\"time\":%lld.%03lld,", (long long)(ms / 1000), (long long)(ms % 1000));
    rc = gw_buf_appendv(&s->body, head, "\"source\":\"mcpgate\",\"sourcetype\":\"mcpgate:audit\",\"event\":", NULL);
    if (!rc) rc = gw_buf_append(&s->body, bytes, len);
    if (!rc) rc = gw_buf_append(&s->body, "}\n", 2);
  } else {
    rc = gw_buf_append(&s->body, bytes, len);
    if (!rc) rc = gw_buf_append(&s->body, "\n", 1);
  }
  if (rc) { /* past SINK_BODY_MAX: this record goes in the next POST, whole */
    s->body.len = before;
    if (s->body.data) s->body.data[before] = 0;
    return EMIT_FULL;
  }
  e->last = rec_seq(bytes, len);
  e->n++;
  return e->n >= s->batch || s->body.len >= SINK_BODY_SOFT ? EMIT_FULL : 0;
}

static void sink_tick(uv_timer_t *t);
static void post_done(gw_out_req *r, int err, void *ud);

static void post_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  (void)r;
  (void)h;
  (void)n;
  ((gw_audit_sink *)ud)->status = status;
}

static void again_in(gw_audit_sink *s, uint64_t ms) {
  if (!s->stopping && s->timer_open) uv_timer_start(&s->timer, sink_tick, ms, 0);
}

static void failed(gw_audit_sink *s, const char *why) {
  atomic_fetch_add(&s->posts_failed, 1);
  int was = atomic_exchange(&s->failing, 1);
  /* every failure while the back-off is short, then once per doubling */
  GW_LOG(was && s->backoff_ms >= SINK_BACKOFF_MAX_MS ? GW_LOG_DEBUG : GW_LOG_WARN, "audit", NULL,
         "audit sink: delivering %" PRIu64 " records of chain %s failed: %s; retrying in %lld s", s->nrec, s->uid,
         why, (long long)(s->backoff_ms / 1000));
  again_in(s, (uint64_t)s->backoff_ms);
  s->backoff_ms = s->backoff_ms * 2 > SINK_BACKOFF_MAX_MS ? SINK_BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void post_done(gw_out_req *r, int err, void *ud) {
  gw_audit_sink *s = ud;
  s->req = NULL;
  if (s->stopping) return;
  if (err || s->status < 200 || s->status > 299) {
    char why[300];
    if (err) {
      const char *d = gw_out_detail(r);
      snprintf(why, sizeof why, "%s%s%s", gw_out_strerror(err), *d ? ": " : "", d);
    } else {
      snprintf(why, sizeof why, "the receiver answered HTTP %d", s->status);
    }
    failed(s, why);
    return;
  }
  chain_pos *p = pos_find(s, s->uid);
  if (!p) p = pos_add(s, s->uid, 0);
  if (p) {
    p->seq = s->last;
    pos_store(s, p);
  }
  atomic_fetch_add(&s->delivered, s->nrec);
  atomic_fetch_add(&s->posts_ok, 1);
  atomic_store(&s->last_ok_ms, gw_wall_ms());
  if (atomic_exchange(&s->failing, 0))
    GW_LOG(GW_LOG_INFO, "audit", NULL, "audit sink: delivering again (%" PRIu64 " records of chain %s accepted)",
           s->nrec, s->uid);
  s->backoff_ms = SINK_BACKOFF_FIRST_MS;
  again_in(s, 0); /* more may wait: the next round looks at once */
}

static void sink_tick(uv_timer_t *t) {
  gw_audit_sink *s = t->data;
  if (s->stopping || s->req) return;
  st_txn *txn = NULL;
  head_list hl = {0};
  int rc = st_read_begin(audit_store(s->log), &txn);
  if (rc == 0) rc = audit_heads(txn, head_cb, &hl);
  if (rc < 0 || hl.oom) {
    if (txn) st_txn_end(txn);
    free(hl.v);
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "audit sink: cannot read the chain heads: %s",
           hl.oom ? "out of memory" : audit_strerror(rc));
    again_in(s, AUDIT_SINK_POLL_MS);
    return;
  }
  uint64_t lag = 0;
  size_t pick = hl.n;
  for (size_t i = 0; i < hl.n; i++) {
    chain_pos *p = pos_find(s, hl.v[i].uid);
    if (!p) {
      uint64_t seq = 0;
      if (audit_cursor_get(txn, SINK_NAME, hl.v[i].uid, &seq) < 0) seq = 0;
      if (!(p = pos_add(s, hl.v[i].uid, seq))) continue;
    }
    if (!p->stored) pos_store(s, p);
    if (hl.v[i].seq > p->seq) {
      lag += hl.v[i].seq - p->seq;
      if (pick == hl.n) pick = i;
    }
  }
  atomic_store(&s->lag, lag);
  if (pick == hl.n) {
    st_txn_end(txn);
    free(hl.v);
    again_in(s, AUDIT_SINK_POLL_MS);
    return;
  }
  chain_pos *p = pos_find(s, hl.v[pick].uid);
  if (!p) { /* picked only with a position: never */
    st_txn_end(txn);
    free(hl.v);
    again_in(s, AUDIT_SINK_POLL_MS);
    return;
  }
  snprintf(s->uid, sizeof s->uid, "%s", p->uid);
  gw_buf_reset(&s->body);
  emit_ctx e = {s, 0, 0};
  uint64_t after = p->seq;
  rc = audit_export_chunk(txn, s->uid, 0, 0, &after, s->batch, emit, &e);
  st_txn_end(txn);
  uint64_t head_seq = hl.v[pick].seq;
  free(hl.v);
  if (rc < 0 && rc != EMIT_FULL) {
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "audit sink: cannot read chain %s: %s", s->uid, audit_strerror(rc));
    again_in(s, AUDIT_SINK_POLL_MS);
    return;
  }
  if (!e.n) {
    /* nothing left after the cursor: retention pruned what was never
     * delivered (logged), or a scan stopped early; move on */
    if (rc == 0) {
      GW_LOG(GW_LOG_WARN, "audit", NULL,
             "audit sink: records %" PRIu64 "..%" PRIu64 " of chain %s were pruned before they were delivered",
             p->seq + 1, head_seq, s->uid);
      p->seq = head_seq;
    } else {
      p->seq = after;
    }
    pos_store(s, p);
    again_in(s, 0);
    return;
  }
  s->first = p->seq + 1;
  s->last = e.last;
  s->nrec = e.n;
  s->status = 0;
  const char *headers[4];
  size_t nh = 0;
  headers[nh++] = s->hec ? "Content-Type: application/json" : "Content-Type: application/x-ndjson";
  if (s->auth_header) headers[nh++] = s->auth_header;
  headers[nh] = NULL;
  gw_out_opts o = {.method = "POST",
                   .url = s->url,
                   .headers = headers,
                   .body = s->body.data,
                   .body_len = s->body.len,
                   .connect_timeout_ms = 10000,
                   .first_byte_timeout_ms = 30000,
                   .idle_timeout_ms = 30000,
                   .ca_file = s->ca_file,
                   .max_header_bytes = 16384,
                   .egress = GW_OUT_EGRESS_ADMIN,
                   .on_headers = post_headers,
                   .on_done = post_done,
                   .ud = s};
  rc = gw_out_start(s->lp->out, &o, &s->req);
  if (rc) {
    s->req = NULL;
    failed(s, gw_out_strerror(rc));
  }
}

/* ---- life on the primary loop ------------------------------------------------------- */

/* The URL as logs may show it: no user info, no query (either may hold a
 * credential, as some collectors take ?token=). */
static void url_for_log(const char *url, char *out, size_t cap) {
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  const char *end = host + strcspn(host, "/?#");
  const char *at = memchr(host, '@', (size_t)(end - host));
  size_t scheme = (size_t)(host - url);
  const char *from = at ? at + 1 : host;
  size_t rest = strcspn(from, "?#");
  snprintf(out, cap, "%.*s%.*s%s", (int)scheme, url, (int)rest, from, from[rest] == '?' ? "?…" : "");
}

int gw_audit_sink_start(gw_audit_sink *s, gw_loop *lp) {
  s->lp = lp;
  if (uv_timer_init(&lp->loop, &s->timer)) return -1;
  s->timer.data = s;
  s->timer_open = true;
  uv_timer_start(&s->timer, sink_tick, 0, 0);
  char shown[512];
  url_for_log(s->url, shown, sizeof shown);
  GW_LOG(GW_LOG_INFO, "audit", NULL, "audit sink: streaming every tenant's records to %s (%s)", shown,
         s->hec ? "Splunk HEC" : "NDJSON");
  return 0;
}

static void sink_closed(uv_handle_t *h) {
  gw_audit_sink *s = h->data;
  s->timer_open = false;
}

void gw_audit_sink_stop(gw_audit_sink *s) {
  s->stopping = true;
  if (s->req) gw_out_abort(s->req);
  uv_close((uv_handle_t *)&s->timer, sink_closed);
}

void gw_audit_sink_metrics(gw_audit_sink *s, gw_buf *out) {
  char line[1536];
  bool on = s != NULL;
  snprintf(line, sizeof line,
           "# HELP mcpgate_audit_sink_records_delivered_total Audit records a SIEM sink (audit_sink_url) accepted.\n"
           "# TYPE mcpgate_audit_sink_records_delivered_total counter\nmcpgate_audit_sink_records_delivered_total "
           "%" PRIu64 "\n"
           "# HELP mcpgate_audit_sink_posts_total POSTs to the SIEM sink, by outcome (2xx or not).\n"
           "# TYPE mcpgate_audit_sink_posts_total counter\n"
           "mcpgate_audit_sink_posts_total{result=\"ok\"} %" PRIu64 "\n"
           "mcpgate_audit_sink_posts_total{result=\"failed\"} %" PRIu64 "\n"
           "# HELP mcpgate_audit_sink_failing 1 while the last delivery to the SIEM sink failed.\n"
           "# TYPE mcpgate_audit_sink_failing gauge\nmcpgate_audit_sink_failing %d\n"
           "# HELP mcpgate_audit_sink_lag_records Audit records written and not yet delivered (at the last look).\n"
           "# TYPE mcpgate_audit_sink_lag_records gauge\nmcpgate_audit_sink_lag_records %" PRIu64 "\n"
           "# HELP mcpgate_audit_sink_last_success_timestamp_seconds When the SIEM sink last accepted a POST.\n"
           "# TYPE mcpgate_audit_sink_last_success_timestamp_seconds gauge\n"
           "mcpgate_audit_sink_last_success_timestamp_seconds %.3f\n",
           on ? atomic_load(&s->delivered) : 0, on ? atomic_load(&s->posts_ok) : 0,
           on ? atomic_load(&s->posts_failed) : 0, on ? atomic_load(&s->failing) : 0, on ? atomic_load(&s->lag) : 0,
           on ? (double)atomic_load(&s->last_ok_ms) / 1000.0 : 0.0);
  gw_buf_append(out, line, strlen(line));
}
