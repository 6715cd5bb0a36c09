/* gateway/api/admin_audit.c — GET /admin/v1/tenants/{t}/audit (query,
 * newest first, cursor paging) and …/audit/export (NDJSON, oldest first,
 * streamed): the tenant's current incarnation's chain in the audit log
 * (audit/audit.h; the log is opened by gateway/mcp/audit_log.c).
 *
 * Rules this file keeps, and why:
 *  - The query is bounded by audit_query itself (AUDIT_SCAN_MAX records
 *    and AUDIT_SCAN_BYTES_MAX stored bytes examined — each is parsed —,
 *    at most 1,000 and AUDIT_QUERY_BYTES_MAX of them returned:
 *    their parsed tree, and its serialisation on the loop, stay small): one
 *    read transaction on libuv's thread pool (query_job), not the loop.
 *  - A query or an export holds one of the tenant's heavy-read slots
 *    until its request ends (gateway/core/limits.h: 2 per tenant, 6 in
 *    the process): the pool also runs every tenant's outbound DNS, and an
 *    export buffers up to a chunk of records for its client.
 *  - The export walks the whole chain: each chunk (EXPORT_CHUNK records,
 *    fewer once they pass AUDIT_SCAN_BYTES_MAX: records are up to 256 KiB)
 *    is read on libuv's pool (long scans off the loop) with its own short
 *    read transaction, written to the client, and the next chunk is read
 *    only once the client has taken the last one (the write queue under
 *    GW_WRITE_LOW_WATER): a slow reader never makes the gateway hold the
 *    chain in memory. A client gone stops it.
 *  - Times are RFC 3339 UTC ("2026-12-04T10:00:00Z", fractions allowed) or
 *    milliseconds since the epoch; anything else is 400. until is
 *    exclusive: at the epoch itself it selects nothing (audit_filter's 0
 *    means no bound, so it is answered here). */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "gateway/base/log.h"
#include "gateway/core/limits.h"
#include "gateway/http/query.h"
#include "store/tenant.h"

#define EXPORT_CHUNK 256
#define AUDIT_READS "audit queries or exports" /* named in the heavy-read refusal */

/* "ms since the epoch" or RFC 3339 UTC → ms; -1 when malformed. */
static int64_t parse_time(const char *s) {
  size_t n = strlen(s);
  if (n && n <= 15 && strspn(s, "0123456789") == n) return strtoll(s, NULL, 10);
  int Y, M, D, h, m, sec;
  char rest[16] = "";
  /* every field its digits (sscanf's %d alone takes a sign or a space) */
  static const char shape[] = "dddd-dd-ddTdd:dd:dd";
  if (n < 20 || n > 30) return -1;
  for (size_t i = 0; i < sizeof shape - 1; i++)
    if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : shape[i] == 'T' ? s[i] != 'T' && s[i] != 't' : s[i] != shape[i])
      return -1;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%15s", &Y, &M, &D, &h, &m, &sec, rest) != 7) return -1;
  int ms = 0;
  const char *r = rest;
  if (*r == '.') {
    r++;
    int digits = 0;
    while (*r >= '0' && *r <= '9') {
      if (digits < 3) ms = ms * 10 + (*r - '0');
      digits++;
      r++;
    }
    if (!digits) return -1;
    while (digits < 3) ms *= 10, digits++;
  }
  if (strcmp(r, "Z") && strcmp(r, "z")) return -1;
  /* a day the month does not have is refused (timegm would roll it over) */
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || m > 59 || sec > 60 || Y < 1970) return -1;
  if (M == 2 && D == 29 && (Y % 4 || (Y % 100 == 0 && Y % 400))) return -1;
  struct tm tm = {0};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  return t < 0 ? -1 : (int64_t)t * 1000 + ms;
}

/* since and until of the query string (0: unbounded); answers 400 and returns -1.
 * *none: an until at the epoch itself (0, 1970-01-01T00:00:00Z) — nothing
 * is before it, where audit_filter's until 0 would mean no bound. */
static int time_params(gw_req *req, int64_t *since, int64_t *until, bool *none) {
  char v[40];
  *since = *until = 0;
  *none = false;
  static const char *const names[] = {"since", "until"};
  for (int i = 0; i < 2; i++) {
    if (!req->query || gw_query_get(req->query, names[i], v, sizeof v) != 1) continue;
    int64_t t = parse_time(v);
    if (t < 0) {
      gw_respond_error(req, 400, "invalid_request",
                       "\"%s\" must be an RFC 3339 UTC time (2026-12-04T10:00:00Z) or milliseconds since the epoch",
                       names[i]);
      return -1;
    }
    *(i ? until : since) = t;
    if (i && t == 0) *none = true;
  }
  if (*since && *until && *since > *until) {
    gw_respond_error(req, 400, "invalid_request", "\"since\" is after \"until\"");
    return -1;
  }
  return 0;
}

/* The log and the tenant's chain: 0, or answered. */
static int chain_of(gw_req *req, const char *tenant, audit_log **log, char uid[ST_TENANT_UID_LEN + 1]) {
  *log = req->lp->srv->audit_log;
  if (!*log) {
    gw_respond_error(req, 404, "audit_off", "the audit log is off on this gateway (config audit = false)");
    return -1;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return -1;
  /* a query or export runs on the thread pool the outbound DNS lookups
   * share: a few per tenant and process at once (limits.h) */
  if (admin__heavy_enter(req, tenant, GW_HEAVY_AUDIT, AUDIT_READS)) {
    st_txn_end(txn);
    return -1;
  }
  int rc = st_tenant_uid_get(txn, tenant, uid);
  st_txn_end(txn);
  if (rc) {
    gw_respond_error(req, 503, "store_unavailable", "the tenant's incarnation cannot be read right now");
    return -1;
  }
  return 0;
}

/* A query reads up to AUDIT_SCAN_MAX records and parses each: on
 * libuv's thread pool, not the loop (a filter matching nothing reads the
 * whole window; review: ~80 MB of JSON with large arguments). */
typedef struct query_job {
  audit_log *log;
  char uid[ST_TENANT_UID_LEN + 1];
  char user[80], connector[40], tool[260], decision[16], kind[16], cursor[AUDIT_CURSOR_MAX];
  audit_filter f;
  int rc;          /* out */
  json_t *recs;    /* out */
  char next[AUDIT_CURSOR_MAX];
} query_job;

static void query_work(void *ctx) {
  query_job *j = ctx;
  st_txn *txn;
  if ((j->rc = st_read_begin(audit_store(j->log), &txn)) != 0) {
    j->rc = AUDIT_ECLOSED; /* answered as "cannot be read" */
    return;
  }
  j->rc = audit_query(txn, j->uid, &j->f, &j->recs, j->next);
  st_txn_end(txn);
}

static void query_done(gw_req *req, void *ctx) {
  query_job *j = ctx;
  if (!req) {
    /* nothing to answer (admin__pool_read) */
  } else if (j->rc == AUDIT_EINVAL) {
    gw_respond_error(req, 400, "invalid_request", "\"cursor\" is not one this endpoint gave");
  } else if (j->rc) {
    gw_respond_error(req, 503, "audit_unavailable", "the audit log cannot be read right now: %s", audit_strerror(j->rc));
  } else {
    json_t *out = json_pack("{s:o}", "records", j->recs);
    j->recs = NULL;
    json_object_set_new(out, "next_cursor", j->next[0] ? json_string(j->next) : json_null());
    gw_respond_json(req, 200, out);
  }
  json_decref(j->recs);
  free(j);
}

static void query(gw_req *req, const char *tenant) {
  audit_log *log;
  char uid[ST_TENANT_UID_LEN + 1];
  int64_t since, until;
  bool none;
  if (time_params(req, &since, &until, &none)) return;
  char user[80] = "", connector[40] = "", tool[260] = "", decision[16] = "", kind[16] = "", cursor[AUDIT_CURSOR_MAX] = "",
       limit[8] = "";
  struct {
    const char *name;
    char *out;
    size_t cap;
  } ps[] = {{"user", user, sizeof user},         {"connector", connector, sizeof connector},
            {"tool", tool, sizeof tool},         {"decision", decision, sizeof decision},
            {"kind", kind, sizeof kind},         {"cursor", cursor, sizeof cursor},
            {"limit", limit, sizeof limit}};
  for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
    char big[600];
    if (!req->query || gw_query_get(req->query, ps[i].name, big, sizeof big) != 1) continue;
    if (strlen(big) >= ps[i].cap) {
      gw_respond_error(req, 400, "invalid_request", "\"%s\" is too long", ps[i].name);
      return;
    }
    memcpy(ps[i].out, big, strlen(big) + 1);
  }
  unsigned lim = 0;
  if (limit[0]) {
    char *end;
    long l = strtol(limit, &end, 10);
    if (*end || l < 1 || l > AUDIT_QUERY_LIMIT_MAX) {
      gw_respond_error(req, 400, "invalid_request", "\"limit\" must be an integer from 1 to %d", AUDIT_QUERY_LIMIT_MAX);
      return;
    }
    lim = (unsigned)l;
  }
  if (chain_of(req, tenant, &log, uid)) return;
  if (none) {
    gw_respond_json(req, 200, json_pack("{s:[],s:n}", "records", "next_cursor"));
    return;
  }
  query_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  j->log = log;
  memcpy(j->uid, uid, sizeof j->uid);
  memcpy(j->user, user, sizeof user);
  memcpy(j->connector, connector, sizeof connector);
  memcpy(j->tool, tool, sizeof tool);
  memcpy(j->decision, decision, sizeof decision);
  memcpy(j->kind, kind, sizeof kind);
  memcpy(j->cursor, cursor, sizeof cursor);
  j->f = (audit_filter){.user = j->user[0] ? j->user : NULL,
                        .connector = j->connector[0] ? j->connector : NULL,
                        .tool = j->tool[0] ? j->tool : NULL,
                        .decision = j->decision[0] ? j->decision : NULL,
                        .kind = j->kind[0] ? j->kind : NULL,
                        .since_ms = since,
                        .until_ms = until,
                        .cursor = j->cursor[0] ? j->cursor : NULL,
                        .limit = lim};
  /* the slot is chain_of's */
  if (admin__pool_read(req, tenant, GW_HEAVY_AUDIT, AUDIT_READS, query_work, query_done, j)) free(j);
}

/* ---- the export ---------------------------------------------------------------- */

typedef struct export_state {
  uv_work_t work;
  gw_req *req;
  audit_log *log;
  char uid[ST_TENANT_UID_LEN + 1], tenant[64];
  int64_t since, until;
  uint64_t after;
  gw_buf chunk;
  int rc;               /* the last chunk's audit_export_chunk result */
  uint64_t sent;
  bool busy, aborted, waiting;
} export_state;

static void export_free(export_state *e) {
  gw_buf_free(&e->chunk);
  free(e);
}

static int emit(void *ctx, const char *bytes, size_t len) {
  export_state *e = ctx;
  if (gw_buf_append(&e->chunk, bytes, len) || gw_buf_append(&e->chunk, "\n", 1)) return AUDIT_ENOMEM;
  return 0;
}

static void export_work(uv_work_t *w) {
  export_state *e = w->data;
  st_txn *txn;
  e->rc = st_read_begin(audit_store(e->log), &txn);
  if (e->rc) return;
  e->rc = audit_export_chunk(txn, e->uid, e->since, e->until, &e->after, EXPORT_CHUNK, emit, e);
  st_txn_end(txn);
}

static void export_next(export_state *e);

static void export_done(uv_work_t *w, int status) {
  export_state *e = w->data;
  gw_req *req = e->req;
  e->busy = false;
  if (e->aborted || status) {
    gw_req_drop(req);
    export_free(e);
    return;
  }
  if (e->rc < 0) {
    GW_LOG(GW_LOG_ERROR, "admin", &((gw_log_ctx){e->tenant, req->id}), "audit export cut after %llu records: %s",
           (unsigned long long)e->sent, audit_strerror(e->rc));
    gw_req_drop(req); /* the client sees the stream end without its last chunk: incomplete */
    export_free(e);
    return;
  }
  if (e->chunk.len && gw_resp_write(req, e->chunk.data, e->chunk.len) != 0) {
    gw_req_drop(req);
    export_free(e);
    return;
  }
  for (size_t i = 0; i < e->chunk.len; i++) e->sent += e->chunk.data[i] == '\n';
  e->chunk.len = 0;
  if (e->rc == 0) {
    gw_resp_end(req);
    export_free(e);
    return;
  }
  /* more: read the next chunk once the client has taken this one */
  if (gw_req_write_queue(req) >= GW_WRITE_LOW_WATER) e->waiting = true;
  else export_next(e);
}

static void export_next(export_state *e) {
  e->waiting = false;
  e->busy = true;
  e->work.data = e;
  if (uv_queue_work(&e->req->lp->loop, &e->work, export_work, export_done) != 0) {
    e->busy = false;
    gw_req_drop(e->req);
    export_free(e);
  }
}

static void export_on_drain(gw_req *req) {
  export_state *e = req->handler_data;
  if (e && e->waiting && !e->busy) export_next(e);
}

static void export_on_abort(gw_req *req) {
  export_state *e = req->handler_data;
  if (!e) return;
  if (e->busy) {
    e->aborted = true; /* export_done ends it */
    return;
  }
  gw_req_drop(req);
  export_free(e);
}

static void export(gw_req *req, const char *tenant) {
  int64_t since, until;
  bool none;
  if (time_params(req, &since, &until, &none)) return;
  export_state *e = calloc(1, sizeof *e);
  if (!e) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  if (chain_of(req, tenant, &e->log, e->uid)) {
    free(e);
    return;
  }
  e->req = req;
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  e->since = since;
  e->until = until;
  if (none) e->after = UINT64_MAX; /* nothing before the epoch: the export ends at once */
  gw_buf_init(&e->chunk, 64u * 1024 * 1024);
  gw_resp_header(req, "Cache-Control", "no-store");
  if (gw_resp_start(req, 200, "application/x-ndjson") != 0) {
    export_free(e);
    gw_req_drop(req);
    return;
  }
  req->handler_data = e;
  req->on_abort = export_on_abort;
  req->on_drain = export_on_drain;
  export_next(e);
}

void admin__audit(gw_req *req, const admin_caller *who, const char *tenant, const char *sub) {
  if (sub && !strcmp(sub, "sink")) {
    admin__audit_sink(req, who, tenant);
    return;
  }
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  if (!sub) query(req, tenant);
  else if (!strcmp(sub, "export")) export(req, tenant);
  else gw_respond_error(req, 404, "not_found", "no such admin endpoint: %s", req->path);
}
