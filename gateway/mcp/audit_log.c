/* gateway/mcp/audit_log.c — the process's audit log (see audit_log.h):
 * opening <data>/audit with the config, the failure stance, arguments
 * under the redaction settings, metrics.
 *
 * Rules this file keeps, and why:
 *  - Submission never waits: audit_submit takes a mutex and appends; a
 *    record that cannot be queued is counted (audit's stats) and logged
 *    at most once a minute per process, so a failing log cannot flood the
 *    log it reports to.
 *  - The redaction list is parsed once at open (audit_redact, plus the
 *    defaults) and read-only afterwards: every loop uses it unlocked. A
 *    tenant's additions (its setting audit_redact) come with each call
 *    (audit_call.c reads them, memoised per loop and store snapshot) and
 *    are appended on the stack: they only ever mask more. */
#include "gateway/mcp/audit_log.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/mcp/audit_sink.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "audit/audit.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/core/settings.h"
#include "gateway/http/http.h"
#include "store/store.h"

#define REDACT_MAX 48
#define AUDIT_NICE 5 /* the audit thread and its writer below the loops (audit_options.nice) */
#define PRUNE_FIRST_MS (60 * 1000)
#define PRUNE_EVERY_MS (3600 * 1000)
#define PRUNE_BATCH 10000

/* the retention driver (primary loop); freed when stopped and idle */
typedef struct gw_audit_prune {
  uv_timer_t timer;
  uv_work_t work;
  gw_audit *g;
  int64_t before_ms;
  size_t pruned;
  int rc;
  bool busy, stopping, timer_open;
} gw_audit_prune;

struct gw_audit {
  audit_log *log;
  int64_t retention_ms;               /* 0: keep */
  gw_audit_prune *prune;
  gw_audit_sink *sink;                /* audit_sink_url, or NULL; freed at close */
  bool sink_started;
  audit_args_mode args;
  size_t args_max;
  bool deny;
  char *redact_buf;                    /* audit_redact, split in place */
  const char *redact[REDACT_MAX + 1];  /* the defaults, then the operator's */
  _Atomic int64_t last_warn_s;         /* the last "cannot record" line */
  _Atomic uint64_t no_uid;             /* records without a tenant uid (dropped) */
};

const gw_setting gw_audit_settings[] = {
    {"audit_redact", GW_SETTING_STRING, 0, AUDIT_REDACT_VALUE_MAX, 0,
     "key patterns masked in this tenant's call records in addition to the operator's audit_redact and the "
     "defaults (never instead of them): comma-separated, each 1 to 64 characters of A-Z a-z 0-9 _ -, at most "
     "32; a member whose key contains one (case-insensitive, '_' and '-' ignored on both sides: card_number also "
     "masks cardNumber) is recorded as \"[redacted]\"; applies from the next call",
     0, audit_redact_check, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

int gw_audit_open(gw_server *srv) {
  srv->audit = NULL;
  if (!srv->cfg.audit) {
    GW_LOG(GW_LOG_WARN, "audit", NULL, "the audit log is off (audit = false): tool calls are not recorded");
    return 0;
  }
  gw_audit *g = calloc(1, sizeof *g);
  if (!g) return -1;
  g->args = !strcmp(srv->cfg.audit_args, "none")     ? AUDIT_ARGS_NONE
            : !strcmp(srv->cfg.audit_args, "digest") ? AUDIT_ARGS_DIGEST
                                                     : AUDIT_ARGS_FULL;
  g->args_max = srv->cfg.audit_args_max;
  g->retention_ms = srv->cfg.audit_retention_days * 86400000LL;
  g->deny = strcmp(srv->cfg.audit_on_failure, "serve") != 0;
  size_t n = 0;
  for (const char *const *d = audit_redact_default; *d && n < REDACT_MAX; d++) g->redact[n++] = *d;
  if (srv->cfg.audit_redact && *srv->cfg.audit_redact) {
    if (!(g->redact_buf = strdup(srv->cfg.audit_redact))) {
      free(g);
      return -1;
    }
    for (char *p = g->redact_buf, *save = NULL, *t; (t = strtok_r(p, ",", &save)) && n < REDACT_MAX; p = NULL)
      if (*t) g->redact[n++] = t;
  }
  g->redact[n] = NULL;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/audit", srv->cfg.data);
  audit_options o = {0};
  o.dir = dir;
  o.batch_ms = (unsigned)srv->cfg.audit_batch_ms;
  o.queue_max = (size_t)srv->cfg.audit_queue_max;
  o.map_size = srv->cfg.audit_map_size;
  o.log = gw_store_log;
  o.nice = AUDIT_NICE;
  int rc = audit_open(&g->log, &o);
  if (rc) {
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "cannot open the audit log in %s: %s", dir, audit_strerror(rc));
    free(g->redact_buf);
    free(g);
    return -1;
  }
  if (gw_audit_sink_new(srv, g->log, &g->sink) != 0) {
    audit_close(g->log);
    free(g->redact_buf);
    free(g);
    return -1;
  }
  srv->audit = g;
  srv->audit_log = g->log;
  return 0;
}

void gw_audit_close(gw_server *srv) {
  gw_audit *g = srv->audit;
  if (!g) return;
  srv->audit = NULL;
  srv->audit_log = NULL;
  gw_audit_sink_free(g->sink);
  audit_close(g->log);
  free(g->redact_buf);
  free(g);
}

audit_log *gw_audit_log(const gw_server *srv) { return srv->audit ? srv->audit->log : NULL; }

bool gw_audit_refuses(const gw_server *srv) {
  const gw_audit *g = srv->audit;
  return g && g->deny && !audit_ok(g->log);
}

/* one line a minute at most while records cannot be queued */
static void warn_once(gw_audit *g, const char *tenant, const char *why) {
  int64_t now = (int64_t)time(NULL), last = atomic_load_explicit(&g->last_warn_s, memory_order_relaxed);
  if (now - last < 60 ||
      !atomic_compare_exchange_strong_explicit(&g->last_warn_s, &last, now, memory_order_relaxed, memory_order_relaxed))
    return;
  GW_LOG(GW_LOG_ERROR, "audit", &((gw_log_ctx){tenant, NULL}), "the audit log cannot record: %s%s", why,
         g->deny ? " (audit_on_failure = deny: tool calls are refused until it recovers)"
                 : " (audit_on_failure = serve: calls go on unrecorded)");
}

/* false (counted, said) for a record without its tenant's incarnation */
static bool has_uid(gw_audit *g, const char *tenant, const char *tenant_uid) {
  if (tenant_uid && *tenant_uid) return true;
  atomic_fetch_add_explicit(&g->no_uid, 1, memory_order_relaxed);
  warn_once(g, tenant, "a record without its tenant's incarnation");
  return false;
}

/* what audit_submit* answered: anything but queued is said (at most once a minute) */
static void submitted(gw_audit *g, const char *tenant, int rc) {
  if (rc) warn_once(g, tenant, audit_strerror(rc));
}

void gw_audit_submit(gw_server *srv, const char *tenant, const char *tenant_uid, json_t *rec) {
  gw_audit *g = srv->audit;
  if (!g || !has_uid(g, tenant, tenant_uid)) {
    json_decref(rec);
    return;
  }
  submitted(g, tenant, audit_submit(g->log, tenant, tenant_uid, rec));
}

void gw_audit_request(gw_server *srv, const gw_req *req, const char *kind, int status) {
  if (!srv->audit || !srv->store) return;
  char uid[ST_TENANT_UID_LEN + 1];
  _Static_assert(sizeof req->tenant_uid == sizeof uid, "gw_req.tenant_uid holds a tenant uid");
  if (req->tenant_uid[0]) {
    /* the incarnation the request began in (a long admin write may end
     * after its tenant was deleted and made again with the same id) */
    memcpy(uid, req->tenant_uid, sizeof uid);
  } else {
    st_txn *txn;
    if (st_read_begin(srv->store, &txn) != 0) return;
    int rc = st_tenant_uid_get(txn, req->tenant, uid);
    st_txn_end(txn);
    if (rc) return; /* no such tenant (any more): nothing to chain to */
  }
  /* the raw path as printable ASCII: a byte outside it would make the
   * record's JSON invalid (and every query of the log fail) or be refused */
  char path[1024];
  const char *p = req->path ? req->path : "";
  size_t n = 0;
  for (; p[n] && n < sizeof path - 1; n++)
    path[n] = (unsigned char)p[n] >= 0x20 && (unsigned char)p[n] < 0x7f ? p[n] : '?';
  path[n] = 0;
  json_t *r = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "kind", kind, "method", req->method, "path", path,
                        "status", status, "client", req->client, "request_id", req->id);
  if (!r) return;
  if (req->actor[0]) json_object_set_new(r, "actor", json_string(req->actor));
  if (req->audit_note[0]) json_object_set_new(r, "note", json_string(req->audit_note));
  json_t *change = req->audit_detail ? json_loads(req->audit_detail, 0, NULL) : NULL;
  if (change) json_object_set_new(r, "change", change);
  gw_audit_submit(srv, req->tenant, uid, r);
}

char *gw_audit_block_get(gw_server *srv) { return audit_block_get(srv->audit ? srv->audit->log : NULL); }

void gw_audit_submit_block(gw_server *srv, const char *tenant, const char *tenant_uid, char *block, size_t len,
                           size_t cap) {
  gw_audit *g = srv->audit;
  if (!g || !has_uid(g, tenant, tenant_uid)) {
    free(block);
    return;
  }
  submitted(g, tenant, audit_submit_block(g->log, tenant, tenant_uid, block, len, cap));
}

bool gw_audit_records_args(const gw_server *srv) { return srv->audit && srv->audit->args != AUDIT_ARGS_NONE; }

/* Every pattern that masks a call's arguments: the defaults and the
 * operator's (the open log's list; with the log off, the same list built
 * here in op), then the tenant's (split into split). The patterns point
 * into those buffers and the log's; all holds NULL after them. */
typedef struct redact_list {
  const char *all[REDACT_MAX + AUDIT_REDACT_TENANT_MAX + 1];
  char op[AUDIT_REDACT_VALUE_MAX + 1], split[AUDIT_REDACT_VALUE_MAX + 1];
} redact_list;

static const char *const *redact_patterns(const gw_server *srv, const char *tenant_redact, redact_list *l) {
  size_t k = 0;
  if (srv->audit) {
    if (!tenant_redact || !*tenant_redact) return srv->audit->redact; /* nothing to add: no copy */
    for (; srv->audit->redact[k]; k++) l->all[k] = srv->audit->redact[k];
  } else {
    for (const char *const *d = audit_redact_default; *d && k < REDACT_MAX; d++) l->all[k++] = *d;
    audit_redact_split(srv->cfg.audit_redact, l->op, sizeof l->op, l->all, &k, REDACT_MAX);
  }
  l->all[k] = NULL;
  if (tenant_redact && *tenant_redact)
    audit_redact_split(tenant_redact, l->split, sizeof l->split, l->all, &k, REDACT_MAX + AUDIT_REDACT_TENANT_MAX);
  return l->all;
}

json_t *gw_audit_args_masked(const gw_server *srv, const json_t *args, const char *tenant_redact, size_t cap_bytes) {
  redact_list l;
  return audit_args(args, AUDIT_ARGS_FULL, redact_patterns(srv, tenant_redact, &l), cap_bytes);
}

int gw_audit_args_append(const gw_server *srv, gw_buf *out, const json_t *args, const char *raw, size_t n,
                         const char *tenant_redact, size_t room) {
  const gw_audit *g = srv->audit;
  if (!g || g->args == AUDIT_ARGS_NONE || (!args && (!raw || !n))) return 0;
  size_t cap = g->args_max < room ? g->args_max : room; /* the record's own cap first */
  static const char key[] = ",\"arguments\":";
  /* the process's patterns, then the tenant's (on the stack: the value is
   * at most AUDIT_REDACT_VALUE_MAX bytes) */
  redact_list l;
  const char *const *pats = redact_patterns(srv, tenant_redact, &l);
  /* a line break between the client's tokens would split the record over
   * NDJSON lines (export, sink) and let a line pass for a record of its
   * own: such text is parsed and written compactly like any other */
  if (!args && g->args == AUDIT_ARGS_FULL && n <= cap && !memchr(raw, '\\', n) && !memchr(raw, '\n', n) &&
      !memchr(raw, '\r', n)) {
    /* one pass: only a byte that starts some pattern (either case) is
     * looked at further — matched as a key is (audit_redact_at: with or
     * without separators, so "apiKey" is no clean text for "api_key") */
    unsigned char first[256] = {0};
    for (const char *const *r = pats; *r; r++) {
      unsigned char c = (unsigned char)*audit_redact_lead(*r);
      if (c) first[c | 0x20] = first[c & ~0x20] = 1;
    }
    bool clean = true;
    for (size_t i = 0; i < n && clean; i++)
      if (first[(unsigned char)raw[i]])
        for (const char *const *r = pats; *r && clean; r++) clean = !(**r && audit_redact_at(raw + i, n - i, *r));
    if (clean) return gw_buf_append(out, key, sizeof key - 1) || gw_buf_append(out, raw, n) ? -1 : 0;
  }
  json_t *parsed = NULL;
  if (!args && !(args = parsed = gw_json_loadb(raw, n, JSON_DECODE_ANY, NULL))) return 0;
  json_t *a = audit_args(args, g->args, pats, cap);
  json_decref(parsed);
  if (!a) return 0;
  char *s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(a);
  if (!s) return -1;
  int rc = gw_buf_append(out, key, sizeof key - 1) || gw_buf_append(out, s, strlen(s)) ? -1 : 0;
  free(s);
  return rc;
}

static void prune_tick(uv_timer_t *t);

static void prune_work(uv_work_t *w) {
  gw_audit_prune *p = w->data;
  size_t n = 0;
  p->pruned = 0;
  do {
    p->rc = audit_prune(p->g->log, p->before_ms, PRUNE_BATCH, &n);
    p->pruned += n;
  } while (!p->rc && n == PRUNE_BATCH);
}

static void prune_closed(uv_handle_t *h) {
  gw_audit_prune *p = h->data;
  p->timer_open = false;
  if (!p->busy) free(p);
}

static void prune_done(uv_work_t *w, int status) {
  gw_audit_prune *p = w->data;
  p->busy = false;
  if (p->stopping) {
    if (!p->timer_open) free(p);
    return;
  }
  if (status || p->rc)
    GW_LOG(GW_LOG_ERROR, "audit", NULL, "audit retention failed: %s",
           status ? uv_strerror(status) : audit_strerror(p->rc));
  else if (p->pruned)
    GW_LOG(GW_LOG_INFO, "audit", NULL, "audit retention: %zu records older than %lld days pruned", p->pruned,
           (long long)(p->g->retention_ms / 86400000LL));
  uv_timer_start(&p->timer, prune_tick, PRUNE_EVERY_MS, 0);
}

static void prune_tick(uv_timer_t *t) {
  gw_audit_prune *p = t->data;
  if (p->busy || p->stopping) return;
  p->before_ms = gw_wall_ms() - p->g->retention_ms;
  p->work.data = p;
  p->busy = true;
  if (uv_queue_work(t->loop, &p->work, prune_work, prune_done) != 0) {
    p->busy = false;
    uv_timer_start(&p->timer, prune_tick, PRUNE_EVERY_MS, 0);
  }
}

int gw_audit_loop_start(gw_loop *lp) {
  gw_audit *g = lp->srv->audit;
  if (lp->index != 0 || !g) return 0;
  if (g->sink) {
    if (gw_audit_sink_start(g->sink, lp) != 0) return -1;
    g->sink_started = true;
  }
  if (!g->retention_ms) return 0;
  gw_audit_prune *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->g = g;
  if (uv_timer_init(&lp->loop, &p->timer)) {
    free(p);
    return -1;
  }
  p->timer.data = p;
  p->timer_open = true;
  uv_timer_start(&p->timer, prune_tick, PRUNE_FIRST_MS, 0);
  g->prune = p;
  return 0;
}

void gw_audit_loop_stop(gw_loop *lp) {
  gw_audit *g = lp->srv->audit;
  if (lp->index != 0 || !g) return;
  if (g->sink_started) {
    gw_audit_sink_stop(g->sink);
    g->sink_started = false;
  }
  if (!g->prune) return;
  gw_audit_prune *p = g->prune;
  g->prune = NULL;
  p->stopping = true;
  uv_close((uv_handle_t *)&p->timer, prune_closed);
}

void gw_audit_metrics(gw_server *srv, gw_buf *out) {
  gw_audit *g = srv->audit;
  char line[512];
  snprintf(line, sizeof line,
           "# HELP mcpgate_audit_enabled Whether the audit log is on (config audit).\n"
           "# TYPE mcpgate_audit_enabled gauge\nmcpgate_audit_enabled %d\n",
           g ? 1 : 0);
  gw_buf_append(out, line, strlen(line));
  if (!g) return;
  audit_stats s;
  audit_stats_get(g->log, &s);
  snprintf(line, sizeof line,
           "# HELP mcpgate_audit_records_written_total Audit records committed.\n"
           "# TYPE mcpgate_audit_records_written_total counter\nmcpgate_audit_records_written_total %llu\n"
           "# HELP mcpgate_audit_records_dropped_total Audit records that could not be kept (must stay 0).\n"
           "# TYPE mcpgate_audit_records_dropped_total counter\nmcpgate_audit_records_dropped_total %llu\n",
           (unsigned long long)s.written,
           (unsigned long long)(s.dropped + atomic_load_explicit(&g->no_uid, memory_order_relaxed)));
  gw_buf_append(out, line, strlen(line));
  snprintf(line, sizeof line,
           "# HELP mcpgate_audit_queue_records Audit records queued, not yet committed.\n"
           "# TYPE mcpgate_audit_queue_records gauge\nmcpgate_audit_queue_records %llu\n"
           "# HELP mcpgate_audit_queue_bytes Memory held by the queued audit records (at least 2 KiB each).\n"
           "# TYPE mcpgate_audit_queue_bytes gauge\nmcpgate_audit_queue_bytes %llu\n"
           "# HELP mcpgate_audit_failing 1 while the audit log cannot record (last commit failed or queue full).\n"
           "# TYPE mcpgate_audit_failing gauge\nmcpgate_audit_failing %d\n",
           (unsigned long long)s.queue_records, (unsigned long long)s.queue_bytes, audit_ok(g->log) ? 0 : 1);
  gw_buf_append(out, line, strlen(line));
  snprintf(line, sizeof line,
           "# HELP mcpgate_audit_commits_total Audit batch commits, by outcome.\n"
           "# TYPE mcpgate_audit_commits_total counter\n"
           "mcpgate_audit_commits_total{result=\"ok\"} %llu\nmcpgate_audit_commits_total{result=\"failed\"} %llu\n"
           "# HELP mcpgate_audit_commit_seconds Audit batch commit latency (queued to committed, fsync included).\n"
           "# TYPE mcpgate_audit_commit_seconds histogram\n",
           (unsigned long long)s.commits, (unsigned long long)s.commit_failures);
  gw_buf_append(out, line, strlen(line));
  for (int i = 0; i < AUDIT_STATS_NBUCKETS; i++) {
    if (i == AUDIT_STATS_NBUCKETS - 1)
      snprintf(line, sizeof line, "mcpgate_audit_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
               (unsigned long long)s.commit_ms_bucket[i]);
    else
      snprintf(line, sizeof line, "mcpgate_audit_commit_seconds_bucket{le=\"%g\"} %llu\n",
               audit_stats_bucket_le_ms[i] / 1000.0, (unsigned long long)s.commit_ms_bucket[i]);
    gw_buf_append(out, line, strlen(line));
  }
  snprintf(line, sizeof line, "mcpgate_audit_commit_seconds_sum %.6f\nmcpgate_audit_commit_seconds_count %llu\n",
           s.commit_ms_sum / 1000.0, (unsigned long long)s.commit_ms_count);
  gw_buf_append(out, line, strlen(line));
  gw_audit_sink_metrics(g->log, out);
}
