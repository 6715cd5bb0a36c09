/* gateway/mcp/mcp_proxy.c — /t/{tenant}/mcp/{connector} (see mcp_proxy.h).
 *
 * One exchange (px) per client request. Its life has two halves — the
 * client side (the gw_req, until we answer or the client goes) and the
 * upstream side (the gw_out transfer, until on_done) — plus a writer job
 * while a session is created or deleted; px is reference counted over
 * those and freed when the last one ends, never under a running callback
 * of the other half.
 *
 * What is checked before anything is forwarded: the employee token and the
 * user's state (every request), the session's owner, Accept, Origin,
 * MCP-Protocol-Version, and the body — parsed fully and strictly (duplicate
 * keys refused), JSON-RPC shape checked, and forwarded byte for byte as
 * checked. The client's Authorization never leaves the gateway; the
 * connector's credential is added instead. Upstream answers: JSON bodies
 * are buffered (capped) and checked, SSE is relayed event by event with
 * back-pressure both ways; an upstream 401/403, failure or garbage becomes
 * a JSON-RPC error naming the connector. */
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/mcp_int.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "store/tenant.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_origin.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/out/outbound.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/token.h"
#include "vault/vault.h"

#define REVOKED_MSG "access revoked: your account, your token, this connector or this tenant was disabled"

static const double buckets[NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
static const char *const versions[] = {"2025-03-26", "2025-06-18", "2025-11-25", NULL};

/* ---------- metrics ---------- */

cmetrics *gw__px_metrics_for(gw_proxy *p, const char *tenant, const char *connector) {
  for (size_t i = 0; i < p->nm; i++)
    if (!strcmp(p->m[i]->tenant, tenant) && !strcmp(p->m[i]->connector, connector)) return p->m[i];
  if (p->nm >= MAX_METRIC_ENTRIES) return NULL;
  cmetrics **nm = realloc(p->m, (p->nm + 1) * sizeof *nm);
  if (!nm) return NULL;
  p->m = nm;
  cmetrics *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  p->m[p->nm++] = e;
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  snprintf(e->connector, sizeof e->connector, "%s", connector);
  return e;
}

void gw_proxy_metrics(gw_server *srv, gw_buf *o) {
  gw_proxy *p = srv->lp ? srv->lp->proxy : NULL;
  if (!p) return;
  gw_buf_appends(o, "# HELP mcpgate_mcp_requests_total Client requests relayed per connector.\n"
                    "# TYPE mcpgate_mcp_requests_total counter\n");
  for (size_t i = 0; i < p->nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_requests_total{tenant=\"%s\",connector=\"%s\"} %llu\n", p->m[i]->tenant,
                  p->m[i]->connector, (unsigned long long)p->m[i]->requests);
  gw_buf_appends(o, "# HELP mcpgate_mcp_upstream_errors_total Relayed requests that failed upstream "
                    "(unreachable, timeout, reset, garbage, refused credential).\n"
                    "# TYPE mcpgate_mcp_upstream_errors_total counter\n");
  for (size_t i = 0; i < p->nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_upstream_errors_total{tenant=\"%s\",connector=\"%s\"} %llu\n",
                  p->m[i]->tenant, p->m[i]->connector, (unsigned long long)p->m[i]->errors);
  gw_buf_appends(o, "# HELP mcpgate_mcp_upstream_seconds Time to the upstream's response head.\n"
                    "# TYPE mcpgate_mcp_upstream_seconds histogram\n");
  for (size_t i = 0; i < p->nm; i++) {
    uint64_t cum = 0, total = 0;
    for (int b = 0; b <= NBUCKETS; b++) total += p->m[i]->hist[b];
    for (int b = 0; b < NBUCKETS; b++) {
      cum += p->m[i]->hist[b];
      gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"%g\"} %llu\n",
                    p->m[i]->tenant, p->m[i]->connector, buckets[b], (unsigned long long)cum);
    }
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_bucket{tenant=\"%s\",connector=\"%s\",le=\"+Inf\"} %llu\n",
                  p->m[i]->tenant, p->m[i]->connector, (unsigned long long)total);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_sum{tenant=\"%s\",connector=\"%s\"} %.6f\n",
                  p->m[i]->tenant, p->m[i]->connector, p->m[i]->sum);
    gw_buf_printf(o, "mcpgate_mcp_upstream_seconds_count{tenant=\"%s\",connector=\"%s\"} %llu\n",
                  p->m[i]->tenant, p->m[i]->connector, (unsigned long long)total);
  }
  gw_buf_appends(o, "# HELP mcpgate_mcp_client_streams_overflowed_total Client streams ended because the client "
                    "did not read (stream_buffer_max).\n"
                    "# TYPE mcpgate_mcp_client_streams_overflowed_total counter\n");
  for (size_t i = 0; i < p->nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_client_streams_overflowed_total{tenant=\"%s\",connector=\"%s\"} %llu\n",
                  p->m[i]->tenant, p->m[i]->connector, (unsigned long long)p->m[i]->overflows);
  gw_buf_printf(o, "# HELP mcpgate_mcp_agg_uri_maps Aggregated client sessions with a resource-URI map in memory.\n"
                   "# TYPE mcpgate_mcp_agg_uri_maps gauge\nmcpgate_mcp_agg_uri_maps %zu\n",
                p->agg_uris ? json_object_size(p->agg_uris) : (size_t)0);
  gw_buf_appends(o, "# HELP mcpgate_mcp_client_streams_open SSE streams open to clients.\n"
                    "# TYPE mcpgate_mcp_client_streams_open gauge\n");
  for (size_t i = 0; i < p->nm; i++)
    gw_buf_printf(o, "mcpgate_mcp_client_streams_open{tenant=\"%s\",connector=\"%s\"} %lld\n",
                  p->m[i]->tenant, p->m[i]->connector, (long long)p->m[i]->streams);
  if (srv->lp->out) {
    gw_out_stats s;
    gw_out_stats_get(srv->lp->out, &s);
    gw_buf_printf(o,
                  "# HELP mcpgate_upstream_transfers_open Outbound HTTP transfers in flight.\n"
                  "# TYPE mcpgate_upstream_transfers_open gauge\nmcpgate_upstream_transfers_open %llu\n"
                  "# HELP mcpgate_upstream_transfer_errors_total Outbound transfers that failed, by kind.\n"
                  "# TYPE mcpgate_upstream_transfer_errors_total counter\n",
                  (unsigned long long)s.open);
    for (int k = 0; k < GW_OUT_NKINDS; k++)
      if (s.failed[k])
        gw_buf_printf(o, "mcpgate_upstream_transfer_errors_total{kind=\"%s\"} %llu\n",
                      gw_out_err_kind(GW_OUT_ERR_FIRST - k), (unsigned long long)s.failed[k]);
  }
}

/* ---------- exchange lifetime ---------- */

/* New exchanges go to the tail, so a walk bounded by the tail it saw
 * never meets one created under it (gw__px_foreach). */
static void px_link(gw_proxy *p, px *x) {
  x->next = NULL;
  x->prev = p->tail;
  if (p->tail) p->tail->next = x;
  else p->list = x;
  p->tail = x;
  x->listed = true;
}

void gw__px_unref(px *x) {
  if (--x->refs > 0) return;
  if (x->listed) {
    if (x->prev) x->prev->next = x->next;
    else x->p->list = x->next;
    if (x->next) x->next->prev = x->prev;
    else x->p->tail = x->prev;
  }
  if (x->parent) gw__px_unref(x->parent);
  json_decref(x->ids);
  json_decref(x->list_ids);
  json_decref(x->agg_state);
  free(x->fwd);
  gw_buf_free(&x->body);
  gw_buf_free(&x->ev);
  free(x);
}

void gw__px_foreach(gw_proxy *p, void (*fn)(px *x, void *arg), void *arg) {
  px *last = p ? p->tail : NULL;
  if (!last) return;
  /* Held, head..last stay listed (and p->list stays their head) for the
   * whole walk, whatever fn does; exchanges fn creates land after last. */
  for (px *x = p->list;; x = x->next) {
    x->refs++;
    if (x == last) break;
  }
  for (px *x = p->list;; x = x->next) {
    fn(x, arg);
    if (x == last) break;
  }
  for (px *x = p->list, *n;; x = n) {
    bool end = x == last;
    n = x->next;
    gw__px_unref(x);
    if (end) break;
  }
}

static void px_stream_closed(px *x) {
  if (x->started && x->m) x->m->streams--;
}

static void abort_feeder(px *o, void *parent) {
  if (o->parent == parent && o->out) gw_out_abort(o->out);
}

/* The client side ends: the request is answered (or dropped). */
void gw__px_client_done(px *x) {
  if (!x->req) return;
  /* the client's stream ends: so do the upstream streams feeding it */
  if (x->agg && x->kind == PX_GET) gw__px_foreach(x->p, abort_feeder, x);
  x->req->on_abort = NULL;
  x->req->on_drain = NULL;
  x->req = NULL;
  px_stream_closed(x);
  gw__px_unref(x);
}

static void add_session_header(px *x) {
  if (x->req && x->sid[0]) gw_resp_header(x->req, "Mcp-Session-Id", x->sid);
}

/* A batch element's reply goes into its parent's array; the parent
 * answers once every element has. */
static void batch_store(px *x, json_t *j) {
  px *p = x->bparent;
  x->bparent = NULL;
  json_t *res = json_object_get(p->agg_state, "results");
  /* the collected array is capped like a request body (counted as the
   * elements' bytes arrive, gw__batch_take): an element past it is
   * answered with an error instead */
  if (j && p->bbytes > (size_t)x->lp->srv->cfg.mcp_max_body) {
    json_t *id = json_incref(json_object_get(j, "id"));
    json_decref(j);
    j = json_pack("{s:s,s:o,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", "code", -32603,
                  "message", "the batch's replies are larger than the gateway collects (mcp_max_body); send these "
                  "requests one by one");
  }
  if (j) json_array_set_new(res, (size_t)x->bindex, j);
  if (--p->bpending == 0) {
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(res, i, e) if (!json_is_null(e)) json_array_append(out, e);
    if (json_array_size(out)) gw__px_reply_json(p, 200, out);
    else {
      json_decref(out);
      gw__px_reply_raw(p, 202, NULL, NULL, 0);
    }
  }
  gw__px_unref(p);
}

static bool client_alive(const px *x) { return x->req || x->bparent; }

bool gw__batch_take(px *x, size_t n) {
  px *p = x->bparent;
  if (!p) return true;
  p->bbytes += n;
  return p->bbytes <= (size_t)x->lp->srv->cfg.mcp_max_body;
}

void gw__px_reply_json(px *x, int status, json_t *j) {
  if (x->bparent) {
    batch_store(x, j);
    return;
  }
  if (!x->req) {
    json_decref(j);
    return;
  }
  gw_req *r = x->req;
  add_session_header(x);
  gw__px_client_done(x);
  gw_respond_json(r, status, j);
}

void gw__px_reply_raw(px *x, int status, const char *ct, const char *body, size_t n) {
  if (x->bparent) {
    batch_store(x, NULL);
    return;
  }
  if (!x->req) return;
  gw_req *r = x->req;
  add_session_header(x);
  gw__px_client_done(x);
  gw_resp_header(r, "Cache-Control", "no-store");
  gw_respond(r, status, ct, body, n);
}

/* JSON-RPC error for every request id of the message (HTTP 200, as an MCP
 * server answers); a message with no request (notifications) gets `status`
 * with a JSON-RPC error body and a null id. */
void gw__px_rpc_error(px *x, int http_status, int code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t n = x->ids ? json_array_size(x->ids) : 0;
  if (n == 0) {
    gw__px_reply_json(x, http_status, json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", "error", "code",
                                         code, "message", msg));
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id",
                                         json_array_get(x->ids, i), "error", "code", code, "message", msg));
  if (n == 1) {
    json_t *one = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    gw__px_reply_json(x, 200, one);
  } else {
    gw__px_reply_json(x, 200, arr);
  }
}

/* Plain protocol refusal before anything was forwarded. */
void gw__mcp_refuse(gw_req *req, int status, int code, const char *msg) {
  gw_respond_json(req, status, json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", "error", "code",
                                         code, "message", msg));
}

static void on_client_abort(gw_req *req) {
  px *x = req->handler_data;
  if (x->out) gw_out_abort(x->out);
  if (x->aux) gw_out_abort(x->aux);
  if (x->req) {
    gw_req *r = x->req;
    gw__px_client_done(x);
    gw_req_drop(r);
  }
}

static void resume_feeder(px *o, void *parent) {
  if (o->parent == parent && o->paused && o->out) {
    o->paused = false;
    gw_out_resume(o->out);
  }
}

static void on_client_drain(gw_req *req) {
  px *x = req->handler_data;
  if (x->paused && x->out) {
    x->paused = false;
    gw_out_resume(x->out);
  }
  /* an aggregated stream: the upstream streams feeding it */
  if (x->agg && x->kind == PX_GET) gw__px_foreach(x->p, resume_feeder, x);
}

int gw__stream_pressure(px *x, gw_req *client) {
  if (!client) return GW_STREAM_OK;
  size_t q = gw_req_write_queue(client);
  size_t cap = (size_t)client->lp->srv->cfg.stream_buffer_max;
  if (q > cap) {
    /* the client does not read: its stream ends rather than the gateway's
     * memory growing; it resumes with Last-Event-ID */
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, client->id}),
           "client stream ended: %zu bytes queued for a client that is not reading (stream_buffer_max %zu)", q, cap);
    if (x->m) x->m->overflows++;
    px *owner = client->handler_data;
    gw__px_client_done(owner);
    gw_req_abort(client); /* its queue goes too: nobody will read it */
    return GW_STREAM_OVER;
  }
  size_t pause_at = cap / 2 < GW_WRITE_HIGH_WATER ? cap / 2 : GW_WRITE_HIGH_WATER;
  return q > pause_at ? GW_STREAM_FULL : GW_STREAM_OK;
}

/* ---------- policy ---------- */


/* The caller's effective policy, fresh for this request (cached per
 * loop, keyed by membership generation and policy version). NULL: the
 * store could not be read — callers deny. */
const pol_user *gw__policy_for(gw_loop *lp, const char *tenant, const char *user) {
  st_txn *txn;
  if (st_read_begin(lp->srv->store, &txn) != 0) return NULL;
  int err;
  const pol_user *u = pol_cache_get(lp->pol, txn, tenant, user, &err);
  st_txn_end(txn);
  return u;
}

static bool is_list_reply(px *x, json_t *msg) {
  json_t *id = json_object_get(msg, "id");
  size_t i;
  json_t *e;
  if (!id || !x->list_ids) return false;
  json_array_foreach(x->list_ids, i, e) if (json_equal(e, id)) return true;
  return false;
}

/* Filters a whole JSON reply (object or batch array) in place. */
static bool filter_reply(px *x, json_t *j) {
  if (!x->list_ids || !json_array_size(x->list_ids)) return false;
  const pol_user *u = gw__policy_for(x->lp, x->tenant, x->user);
  bool changed = false;
  if (json_is_array(j)) {
    size_t i;
    json_t *m;
    json_array_foreach(j, i, m) if (is_list_reply(x, m)) changed |= pol_filter_tools(u, x->connector, m);
  } else if (is_list_reply(x, j)) {
    changed = pol_filter_tools(u, x->connector, j);
  }
  return changed;
}

void gw__sse_split(const char *ev, size_t n, gw_buf *data, gw_buf *head, char *id, size_t idcap) {
  const char *p = ev, *end = ev + n;
  if (id && idcap) id[0] = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
    size_t lraw = nl ? ll + 1 : ll;
    if (ll && p[ll - 1] == '\r') ll--;
    if (ll >= 5 && !strncmp(p, "data:", 5)) {
      const char *v = p + 5;
      size_t vl = ll - 5;
      if (vl && *v == ' ') v++, vl--;
      if (data->len) gw_buf_append(data, "\n", 1);
      gw_buf_append(data, v, vl);
    } else if (ll) {
      if (id && ll >= 3 && !strncmp(p, "id:", 3)) {
        const char *v = p + 3;
        size_t vl = ll - 3;
        if (vl && *v == ' ') v++, vl--;
        snprintf(id, idcap, "%.*s", (int)vl, v);
      }
      if (head) {
        gw_buf_append(head, p, ll);
        gw_buf_append(head, "\n", 1);
      }
    }
    p += lraw;
  }
}

/* One SSE event: if its data is a tools/list reply, filter it and rebuild
 * the event (id:/event:/retry: lines kept). Writes the event to out. */
static void relay_one_event(px *x, const char *ev, size_t n, gw_buf *out) {
  if ((x->list_ids && json_array_size(x->list_ids)) || x->agg) {
    gw_buf data, head;
    gw_buf_init(&data, MAX_SSE_EVENT);
    gw_buf_init(&head, MAX_SSE_EVENT);
    char id[512];
    gw__sse_split(ev, n, &data, &head, x->agg ? id : NULL, sizeof id);
    json_t *j = data.len ? json_loadb(data.data, data.len, 0, NULL) : NULL;
    bool changed = j && filter_reply(x, j);
    if (j && x->agg) changed |= gw__agg_rewrite(x, j);
    char *gid = x->agg && id[0] ? gw__agg_event_id(x, id) : NULL;
    if (changed || gid) {
      char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
      if (s || gid) {
        /* aggregated: the upstream's event id becomes a gateway id that a
         * GET with Last-Event-ID resumes on the right upstream */
        const char *h = head.data ? head.data : "";
        for (const char *l = h; *l;) {
          const char *nl = strchr(l, '\n');
          size_t ll = nl ? (size_t)(nl - l) : strlen(l);
          if (!(gid && ll >= 3 && !strncmp(l, "id:", 3))) {
            gw_buf_append(out, l, ll);
            gw_buf_append(out, "\n", 1);
          }
          l += ll + (nl ? 1 : 0);
        }
        if (gid) gw_buf_printf(out, "id: %s\n", gid);
        if (s) {
          gw_buf_appends(out, "data: ");
          gw_buf_appends(out, s);
          gw_buf_appends(out, "\n");
        } else {
          /* the data unchanged (or empty: a priming event) */
          const char *dd = data.data ? data.data : "";
          for (const char *l = dd;;) {
            const char *nl = strchr(l, '\n');
            size_t ll = nl ? (size_t)(nl - l) : strlen(l);
            gw_buf_appends(out, "data: ");
            gw_buf_append(out, l, ll);
            gw_buf_append(out, "\n", 1);
            if (!nl) break;
            l = nl + 1;
          }
        }
        gw_buf_appends(out, "\n");
        free(gid);
        free(s);
        json_decref(j);
        gw_buf_free(&data);
        gw_buf_free(&head);
        return;
      }
    }
    json_decref(j);
    gw_buf_free(&data);
    gw_buf_free(&head);
  }
  gw_buf_append(out, ev, n);
}

/* ---------- SSE relay ---------- */

/* Forwards every complete event in x->ev (events end with a blank line;
 * "\r\n" and "\n" both end lines). Policy inspection of events plugs in
 * here later; today events pass unchanged. */
int gw__sse_each(px *x, int (*fn)(px *x, const char *ev, size_t n)) {
  size_t start = 0, i = x->ev_scanned;
  char *d = x->ev.data;
  int rc = 0;
  for (; i + 1 < x->ev.len; i++) {
    size_t end = 0;
    if (d[i] == '\n' && d[i + 1] == '\n') end = i + 2;
    else if (i + 3 < x->ev.len && !memcmp(d + i, "\r\n\r\n", 4)) end = i + 4;
    if (!end) continue;
    if ((rc = fn(x, d + start, end - start)) != 0) break;
    start = end;
    i = end - 1;
  }
  /* resume after what was searched, less the 3 bytes a terminator split
   * across two chunks may have begun with */
  size_t scanned = i > 3 ? i - 3 : 0;
  x->ev_scanned = scanned > start ? scanned - start : 0;
  if (start) {
    memmove(d, d + start, x->ev.len - start);
    x->ev.len -= start;
    d[x->ev.len] = 0;
  }
  return rc;
}

static int relay_event(px *x, const char *ev, size_t n) {
  gw_buf out;
  gw_buf_init(&out, 2 * MAX_SSE_EVENT);
  relay_one_event(x, ev, n, &out);
  int wr = x->req && out.len ? gw_resp_write(x->req, out.data, out.len) : 0;
  gw_buf_free(&out);
  return wr != 0 ? -1 : 0;
}

static int relay_events(px *x) { return gw__sse_each(x, relay_event); }

/* ---------- upstream callbacks ---------- */

static void finish_initialize(px *x);

static void up_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  px *x = ud;
  x->status = status;
  double secs = (double)(uv_hrtime() - x->start_ns) / 1e9;
  if (x->m) {
    int b = 0;
    while (b < NBUCKETS && secs > buckets[b]) b++;
    x->m->hist[b]++;
    x->m->sum += secs;
  }
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, "content-type")) snprintf(x->up_ct, sizeof x->up_ct, "%s", h[i].value);
    else if (!strcasecmp(h[i].name, "mcp-session-id")) snprintf(x->up_sid, sizeof x->up_sid, "%s", h[i].value);
  }
  if (!client_alive(x)) {
    gw_out_abort(r);
    return;
  }
  if (status == 401 || status == 403) {
    /* never hand the upstream's challenge to the client: the client's
     * credential is the gateway's, not the upstream's */
    if (x->m) x->m->auth_failures++, x->m->errors++;
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s refused the gateway's credential (HTTP %d)", x->connector, status);
    gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_AUTH,
              "connector \"%s\" refused the gateway's credential (HTTP %d); ask your admin to check the "
              "connector's credential",
              x->connector, status);
    gw_out_abort(r);
    return;
  }
  if (status >= 300 && status < 400) {
    /* the engine follows no redirect and the client gets none either: its
     * Location (and body) could send the client anywhere or reveal an
     * internal address */
    if (x->m) x->m->errors++;
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s answered with a redirect (HTTP %d): not followed, not relayed", x->connector, status);
    gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN,
                     "connector \"%s\" answered with a redirect (HTTP %d), which the gateway does not follow; ask your "
                     "admin to set the connector's final URL",
                     x->connector, status);
    gw_out_abort(r);
    return;
  }
  if (x->agg && (status == 404 || status == 400) && x->sess.upstream[0] && !x->retried) {
    /* the upstream forgot our session (restart): mcp_agg.c reopens it */
    x->stale = true;
    gw_out_abort(r);
    return;
  }
  bool sse = !strncasecmp(x->up_ct, "text/event-stream", 17);
  if (!x->initialize && status == 200 && sse && x->req) {
    x->started = true;
    if (x->m) x->m->streams++;
    add_session_header(x);
    gw_resp_header(x->req, "Cache-Control", "no-cache");
    gw_resp_start(x->req, 200, "text/event-stream");
  }
}

static int up_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  px *x = ud;
  if (!client_alive(x)) {
    gw_out_abort(r);
    return 0;
  }
  if (x->started) {
    if (gw_buf_append(&x->ev, p, n) != 0 || relay_events(x) != 0) {
      gw_out_abort(r);
      return 0;
    }
    switch (gw__stream_pressure(x, x->req)) {
    case GW_STREAM_OVER:
      gw_out_abort(r);
      return 0;
    case GW_STREAM_FULL:
      x->paused = true;
      return GW_OUT_PAUSE;
    default:
      return 0;
    }
  }
  /* over the cap (or a batch's budget): fails in up_done */
  if (!gw__batch_take(x, n) || gw_buf_append(&x->body, p, n) != 0) gw_out_abort(r);
  return 0;
}

/* The JSON-RPC message with `id` in a buffered reply: the JSON body, or
 * the SSE event carrying it (notifications before it are skipped). */
json_t *gw__find_reply(const char *s, size_t n, const char *ct, const json_t *id) {
  if (strncasecmp(ct ? ct : "", "text/event-stream", 17)) {
    json_t *j = n ? json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    return j;
  }
  gw_buf data;
  gw_buf_init(&data, MAX_JSON_BODY);
  const char *p = s, *end = s + n;
  json_t *found = NULL;
  while (p <= end && !found) {
    const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
    size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (ll && p[ll - 1] == '\r') ll--;
    if (ll == 0) {
      if (data.len) {
        json_t *j = json_loadb(data.data, data.len, 0, NULL);
        if (j && (!id || json_equal(json_object_get(j, "id"), (json_t *)id)) &&
            (json_object_get(j, "result") || json_object_get(j, "error")))
          found = j;
        else
          json_decref(j);
        gw_buf_reset(&data);
      }
    } else if (ll >= 5 && !strncmp(p, "data:", 5)) {
      const char *v = p + 5;
      size_t vl = ll - 5;
      if (vl && *v == ' ') v++, vl--;
      if (data.len) gw_buf_append(&data, "\n", 1);
      gw_buf_append(&data, v, vl);
    }
    if (!nl) break;
    p = nl + 1;
  }
  if (!found && data.len) {
    json_t *j = json_loadb(data.data, data.len, 0, NULL);
    if (j && (!id || json_equal(json_object_get(j, "id"), (json_t *)id))) found = j;
    else json_decref(j);
  }
  gw_buf_free(&data);
  return found;
}


/* Policy filtering and aggregated id rewriting of a JSON reply; both run. */
static bool reply_changed(px *x, json_t *j) {
  bool a = filter_reply(x, j);
  bool b = x->agg && gw__agg_rewrite(x, j);
  return a || b;
}

static void up_done(gw_out_req *r, int err, void *ud) {
  px *x = ud;
  x->out = NULL;
  if (x->stale && client_alive(x) && x->cont) {
    /* aggregated: retry on a fresh upstream session */
    x->stale = false;
    x->retried = true;
    x->cont(x, 0);
    gw__px_unref(x);
    return;
  }
  if (client_alive(x)) {
    if (err && err != GW_OUT_EABORTED) {
      if (x->m) x->m->errors++;
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}), "connector %s: %s (%s)",
             x->connector, gw_out_strerror(err), gw_out_detail(r));
    }
    if (x->started) {
      /* the stream ends (clean chunked end: the client may resume with
       * Last-Event-ID); a partial event is dropped */
      gw_req *cr = x->req;
      gw__px_client_done(x);
      gw_resp_end(cr);
    } else if (err) {
      if (x->body.len >= x->body.max)
        gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent a response larger than the gateway accepts",
                  x->connector);
      else
        gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" is unavailable: %s", x->connector,
                  gw_out_strerror(err));
    } else if (x->initialize) {
      finish_initialize(x);
    } else if (x->status == 202 || x->status == 204) {
      gw__px_reply_raw(x, x->status, NULL, NULL, 0);
    } else if (x->status >= 500) {
      if (x->m) x->m->errors++;
      gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" failed (HTTP %d)", x->connector, x->status);
    } else if (x->bparent && !strncasecmp(x->up_ct, "text/event-stream", 17)) {
      /* a batch element answered over SSE: its reply goes into the array */
      json_t *m = gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, json_array_get(x->ids, 0));
      if (m) {
        if (x->agg) gw__agg_rewrite(x, m);
        gw__px_reply_json(x, 200, m);
      } else {
        gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent no reply", x->connector);
      }
    } else {
      /* a JSON reply: check it is JSON before relaying it unchanged */
      bool is_json = !strncasecmp(x->up_ct, "application/json", 16);
      json_t *j = is_json && x->body.len ? json_loadb(x->body.data, x->body.len, 0, NULL) : NULL;
      if (is_json && x->body.len && !j) {
        if (x->m) x->m->errors++;
        gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an invalid response", x->connector);
      } else if (!is_json && x->status == 200) {
        if (x->m) x->m->errors++;
        gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an unexpected content type",
                  x->connector);
      } else if (j && (reply_changed(x, j) || x->bparent)) {
        gw__px_reply_json(x, x->status, json_incref(j));
      } else {
        gw__px_reply_raw(x, x->status, is_json ? "application/json" : NULL, x->body.data, x->body.len);
      }
      json_decref(j);
    }
  }
  gw__px_unref(x);
}

/* ---------- initialize → a gateway session ---------- */

typedef struct init_job {
  px *x;
  char sid[96];
  gw_session s;
  char now[32];
  char tokid[ST_TOKEN_ID_BUFSZ];
  int64_t unix_now;
} init_job;

static int job_session_put(st_txn *txn, void *arg) {
  init_job *j = arg;
  /* the user may have been deactivated (or the token revoked) since the
   * request was checked: a session is never written for them */
  if (auth_identity_check(txn, j->s.tenant, j->s.user, j->tokid, j->unix_now) != 0) return GW_UP_EREVOKED;
  return gw_session_put(txn, j->sid, &j->s, j->now);
}

static void done_session_put(int status, void *arg) {
  init_job *j = arg;
  px *x = j->x;
  if (status == GW_UP_EREVOKED) {
    gw__px_start_failed(x, status);
  } else if (status < 0) {
    gw__px_rpc_error(x, 503, -32603, "the gateway could not store the session: %s", st_strerror(status));
  } else if (x->req) {
    snprintf(x->sid, sizeof x->sid, "%s", j->sid);
    json_t *msg = json_loadb(x->body.data, x->body.len, 0, NULL);
    gw__px_reply_json(x, 200, msg);
  }
  OPENSSL_cleanse(j->sid, sizeof j->sid);
  free(j);
  gw__px_unref(x);
}

static void finish_initialize(px *x) {
  json_t *msg = gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, json_array_get(x->ids, 0));
  if (x->status != 200) {
    /* the upstream refused (e.g. an unsupported version): relay its answer */
    if (msg) gw__px_reply_json(x, x->status, msg);
    else gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" failed to initialize (HTTP %d)", x->connector, x->status);
    return;
  }
  json_t *result = json_object_get(msg, "result");
  if (!json_is_object(result)) {
    if (msg && json_object_get(msg, "error")) {
      gw__px_reply_json(x, 200, msg);
      return;
    }
    json_decref(msg);
    gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an invalid initialize result", x->connector);
    return;
  }
  /* tasks are not governed by policy yet: not offered */
  json_t *caps = json_object_get(result, "capabilities");
  if (json_is_object(caps)) json_object_del(caps, "tasks");
  char ver[32];
  snprintf(ver, sizeof ver, "%s", json_string_value(json_object_get(result, "protocolVersion")) ?: "");
  init_job *j = calloc(1, sizeof *j);
  char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(msg);
  if (!j || !s || st_token_new(GW_SESSION_PREFIX, j->sid, sizeof j->sid) != 0) {
    free(j);
    free(s);
    gw__px_rpc_error(x, 500, -32603, "the gateway could not create a session");
    return;
  }
  gw_buf_reset(&x->body);
  gw_buf_append(&x->body, s, strlen(s));
  free(s);
  j->x = x;
  snprintf(j->s.tenant, sizeof j->s.tenant, "%s", x->tenant);
  snprintf(j->s.user, sizeof j->s.user, "%s", x->user);
  snprintf(j->s.connector, sizeof j->s.connector, "%s", x->connector);
  snprintf(j->s.version, sizeof j->s.version, "%s", ver);
  snprintf(j->s.upstream, sizeof j->s.upstream, "%s", x->up_sid);
  snprintf(j->tokid, sizeof j->tokid, "%s", x->tokid);
  j->s.created_ms = gw_session_now_ms();
  time_t now = time(NULL);
  j->unix_now = (int64_t)now;
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(j->now, sizeof j->now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  x->refs++;
  if (st_submit(x->lp->srv->store, x->lp->port, job_session_put, done_session_put, j) != 0) {
    x->refs--;
    free(j);
    gw__px_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}

/* ---------- forwarding ---------- */

int gw_upstream_start(gw_loop *lp, const gw_upstream_opts *u, gw_out_req **out) {
  gw_server *srv = lp->srv;
  st_txn *txn;
  json_t *conn = NULL;
  char *secret = NULL;
  if (st_read_begin(srv->store, &txn) != 0) return ST_EIO;
  int rc = 0;
  if (u->user) {
    /* the last check before bytes leave for the upstream: whatever
     * asynchronous steps came before, the identity and the policy hold now */
    if (auth_identity_check(txn, u->tenant, u->user, u->tokid ? u->tokid : "", (int64_t)time(NULL)) != 0) {
      rc = GW_UP_EREVOKED;
    } else {
      int perr;
      const pol_user *pu = pol_cache_get(lp->pol, txn, u->tenant, u->user, &perr);
      if (!pu || !pol_connector_visible(pu, u->connector)) rc = pu ? GW_UP_EHIDDEN : ST_EIO;
    }
    if (rc) {
      st_txn_end(txn);
      return rc;
    }
  }
  rc = vault_connector_get(txn, u->tenant, u->connector, &conn);
  if (rc == 0 && !strcmp(json_string_value(json_object_get(json_object_get(conn, "auth"), "type")) ?: "", "header"))
    rc = vault_connector_secret(txn, u->tenant, u->connector, &secret);
  st_txn_end(txn);
  if (rc) {
    json_decref(conn);
    return rc;
  }
  const char *hname = json_string_value(json_object_get(json_object_get(conn, "auth"), "name"));
  char *lines[12];
  int nl = 0;
  char buf[4][600];
  if (u->body) lines[nl++] = "Content-Type: application/json";
  snprintf(buf[0], sizeof buf[0], "Accept: %s", u->accept);
  lines[nl++] = buf[0];
  if (u->protocol_version && *u->protocol_version) {
    snprintf(buf[1], sizeof buf[1], "MCP-Protocol-Version: %.64s", u->protocol_version);
    lines[nl++] = buf[1];
  }
  if (u->upstream_sid && *u->upstream_sid) {
    snprintf(buf[2], sizeof buf[2], "Mcp-Session-Id: %.500s", u->upstream_sid);
    lines[nl++] = buf[2];
  }
  if (u->last_event_id && strlen(u->last_event_id) < 500 && !strpbrk(u->last_event_id, "\r\n")) {
    snprintf(buf[3], sizeof buf[3], "Last-Event-ID: %s", u->last_event_id);
    lines[nl++] = buf[3];
  }
  lines[nl++] = "User-Agent: mcpgate";
  char *secret_line = NULL;
  if (secret && hname) {
    size_t sl = strlen(hname) + strlen(secret) + 3;
    secret_line = malloc(sl);
    if (secret_line) {
      snprintf(secret_line, sl, "%s: %s", hname, secret);
      lines[nl++] = secret_line;
    }
  }
  lines[nl] = NULL;
  json_t *to = json_object_get(conn, "timeouts");
  gw_out_opts o = {0};
  o.method = u->method;
  o.url = json_string_value(json_object_get(conn, "url"));
  o.headers = (const char *const *)lines;
  o.body = u->body;
  o.body_len = u->len;
  o.connect_timeout_ms = (long)json_integer_value(json_object_get(to, "connect_ms"));
  o.first_byte_timeout_ms = (long)json_integer_value(json_object_get(to, "first_byte_ms"));
  o.idle_timeout_ms = (long)json_integer_value(json_object_get(to, "idle_ms"));
  o.ca_file = json_string_value(json_object_get(conn, "ca_file"));
  o.egress = GW_OUT_EGRESS_ADMIN; /* a tenant admin chose this URL: egress_allow applies */
  o.http1 = u->stream;
  o.on_headers = u->on_headers;
  o.on_data = u->on_data;
  o.on_done = u->on_done;
  o.ud = u->ud;
  rc = gw_out_start(lp->out, &o, out);
  if (secret_line) {
    OPENSSL_cleanse(secret_line, strlen(secret_line));
    free(secret_line);
  }
  vault_secret_free(secret);
  json_decref(conn);
  return rc;
}

int gw__px_start_upstream(px *x, const char *method, const void *body, size_t len, const char *accept) {
  const char *pv = x->req ? gw_req_header(x->req, "mcp-protocol-version") : NULL;
  gw_upstream_opts u = {0};
  u.tenant = x->tenant;
  u.connector = x->connector;
  u.method = method;
  u.body = body;
  u.len = len;
  u.accept = accept;
  u.protocol_version = pv ? pv : x->sess.version;
  u.upstream_sid = x->sess.upstream;
  u.last_event_id = x->req ? gw_req_header(x->req, "last-event-id") : NULL;
  u.stream = !strcmp(method, "GET");
  u.on_headers = up_headers;
  u.on_data = up_data;
  u.on_done = up_done;
  u.ud = x;
  gw__px_upstream_identity(x, &u);
  x->start_ns = uv_hrtime();
  x->refs++;
  int rc = x->revoked ? GW_UP_EREVOKED : gw_upstream_start(x->lp, &u, &x->out);
  if (rc) x->refs--;
  return rc;
}

void gw__px_upstream_identity(const px *x, gw_upstream_opts *o) {
  if (!x->user[0]) return; /* the gateway's own call (capability probe) */
  o->user = x->user;
  o->tokid = x->tokid;
}

void gw__px_start_failed(px *x, int rc) {
  if (rc == GW_UP_EREVOKED) {
    x->revoked = true;
    gw__px_rpc_error(x, 403, GW_RPC_REVOKED, "%s", REVOKED_MSG);
  } else if (rc == GW_UP_EHIDDEN) {
    gw__px_rpc_error(x, 200, -32602, "connector \"%s\" is not available to you under your organisation's policy",
                     x->connector);
  } else {
    if (x->m) x->m->errors++;
    gw__px_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" could not be reached", x->connector);
  }
}

/* ---------- request checks ---------- */

bool gw__accept_has(const char *accept, const char *type) {
  if (!accept) return false;
  const char *p = accept;
  size_t tl = strlen(type);
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ",;");
    size_t m = n;
    while (m && p[m - 1] == ' ') m--;
    if ((m == tl && !strncasecmp(p, type, tl)) || (m == 3 && !strncmp(p, "*/*", 3))) return true;
    p += strcspn(p, ",");
  }
  return false;
}

bool gw__mcp_version_supported(const char *v) {
  for (const char *const *s = versions; *s; s++)
    if (!strcmp(*s, v)) return true;
  return false;
}

/* Checks one JSON-RPC message; collects request ids. NULL when fine, else
 * a reason. */
const char *gw__check_message(const json_t *m, json_t *ids, const char **method_out) {
  if (!json_is_object(m)) return "a JSON-RPC message must be an object";
  if (strcmp(json_string_value(json_object_get(m, "jsonrpc")) ?: "", "2.0")) return "\"jsonrpc\" must be \"2.0\"";
  json_t *id = json_object_get(m, "id");
  json_t *method = json_object_get(m, "method");
  if (id && !json_is_string(id) && !json_is_integer(id)) return "\"id\" must be a string or an integer";
  if (method) {
    if (!json_is_string(method)) return "\"method\" must be a string";
    json_t *params = json_object_get(m, "params");
    if (params && !json_is_object(params) && !json_is_array(params)) return "\"params\" must be an object";
    if (id) json_array_append(ids, id);
    if (method_out) *method_out = json_string_value(method);
    return NULL;
  }
  /* a response to a server→client request */
  if (!id || (!json_object_get(m, "result") && !json_object_get(m, "error")))
    return "a message needs a method (request/notification) or result/error (response)";
  return NULL;
}

/* ---------- entry points ---------- */

px *gw__px_new(gw_req *req, int kind, const gw_mcp_ctx *c) {
  const char *tenant = c->tenant, *connector = c->connector;
  gw_proxy *p = req->lp->proxy;
  px *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->p = p;
  x->lp = req->lp;
  x->req = req;
  x->kind = kind;
  x->refs = 1;
  x->ids = json_array();
  snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
  snprintf(x->connector, sizeof x->connector, "%s", connector);
  snprintf(x->user, sizeof x->user, "%s", c->user);
  snprintf(x->tokid, sizeof x->tokid, "%s", c->tokid);
  gw_buf_init(&x->body, MAX_JSON_BODY);
  gw_buf_init(&x->ev, MAX_SSE_EVENT);
  x->m = gw__px_metrics_for(p, tenant, *connector ? connector : "(all)");
  if (x->m) x->m->requests++;
  req->handler_data = x;
  req->on_abort = on_client_abort;
  req->on_drain = on_client_drain;
  px_link(p, x);
  return x;
}

/* An exchange with no client side (fire-and-forget upstream calls, and
 * the upstream halves of an aggregated stream): listed, so revocation
 * and shutdown end it like any other. */
px *gw__px_bare(gw_loop *lp, const char *tenant, const char *connector) {
  gw_proxy *p = lp->proxy;
  if (!p) return NULL;
  px *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->p = p;
  x->lp = lp;
  x->refs = 1;
  x->agg = true;
  x->ids = json_array();
  snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
  snprintf(x->connector, sizeof x->connector, "%s", connector);
  gw_buf_init(&x->body, MAX_JSON_BODY);
  gw_buf_init(&x->ev, MAX_SSE_EVENT);
  px_link(p, x);
  return x;
}

px *gw__px_child(px *parent, const char *connector) {
  gw_proxy *p = parent->p;
  px *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->p = p;
  x->lp = parent->lp;
  x->kind = parent->kind;
  x->refs = 1;
  x->agg = parent->agg;
  x->ids = json_array();
  snprintf(x->tenant, sizeof x->tenant, "%s", parent->tenant);
  snprintf(x->connector, sizeof x->connector, "%s", connector);
  snprintf(x->user, sizeof x->user, "%s", parent->user);
  snprintf(x->tokid, sizeof x->tokid, "%s", parent->tokid);
  snprintf(x->sid, sizeof x->sid, "%s", parent->sid);
  x->sess = parent->sess;
  x->revoked = parent->revoked;
  gw_buf_init(&x->body, MAX_JSON_BODY);
  gw_buf_init(&x->ev, MAX_SSE_EVENT);
  x->m = gw__px_metrics_for(p, x->tenant, connector);
  px_link(p, x);
  return x;
}

void gw__mcp_unauthorized(gw_req *req, const char *msg) {
  char hdr[600];
  gw_server *srv = req->lp->srv;
  snprintf(hdr, sizeof hdr, "Bearer realm=\"mcpgate\", error=\"invalid_token\", error_description=\"%s\"", msg);
  (void)srv;
  gw_resp_header(req, "WWW-Authenticate", hdr);
  gw_respond_error(req, 401, "invalid_token", "%s", msg);
}

static void end_exchange(px *x);

typedef struct del_job {
  px *x;
  char sid[96];
} del_job;

static int job_session_del(st_txn *txn, void *arg) {
  del_job *j = arg;
  int rc = gw_session_delete(txn, j->sid);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static void end_session_stream(px *o, void *arg) {
  px *x = arg;
  if (o != x && o->agg && o->kind == PX_GET && !o->parent && !strcmp(o->sid, x->sid)) end_exchange(o);
}

static void done_session_del(int status, void *arg) {
  del_job *j = arg;
  px *x = j->x;
  if (status < 0) gw__px_rpc_error(x, 503, -32603, "the session could not be deleted: %s", st_strerror(status));
  else {
    if (x->agg) {
      /* its open GET streams end, and its upstream sessions */
      gw__px_foreach(x->p, end_session_stream, x);
      gw__agg_end_upstreams(x, json_object_get(x->agg_state, "ups"));
      gw__agg_forget_session(x->p, x->sid);
    }
    x->sid[0] = 0;
    gw__px_reply_raw(x, 204, NULL, NULL, 0);
  }
  /* tell the upstream too (its answer goes nowhere) */
  if (x->sess.upstream[0] && gw__px_start_upstream(x, "DELETE", NULL, 0, "application/json, text/event-stream") != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "upstream DELETE not sent");
  free(j);
  gw__px_unref(x);
}

/* What every MCP request passes first (both endpoints): the path's tenant
 * (and connector), the method, Origin, the employee token and the user's
 * state — on every request — and the session it names, if any. On a
 * refusal it has answered and returns -1. */
int gw__mcp_begin(gw_req *req, bool agg, gw_mcp_ctx *c) {
  gw_server *srv = req->lp->srv;
  memset(c, 0, sizeof *c);
  /* /t/{tenant}/mcp[/{connector}] — the router guarantees the shape */
  const char *p = req->path + 3;
  size_t tl = strcspn(p, "/");
  const char *cn = agg ? "" : p + tl + 5;
  if (!tl || tl >= sizeof c->tenant || strlen(cn) >= sizeof c->connector) {
    gw_respond_error(req, 404, "not_found", "no such MCP endpoint");
    return -1;
  }
  memcpy(c->tenant, p, tl);
  snprintf(c->connector, sizeof c->connector, "%s", cn);
  snprintf(req->tenant, sizeof req->tenant, "%s", c->tenant);
  if (!st_tenant_id_valid(c->tenant) || (!agg && !vault_connector_name_valid(c->connector))) {
    gw_respond_error(req, 404, "not_found", "no such MCP endpoint");
    return -1;
  }
  const char *m = req->method;
  if (strcmp(m, "POST") && strcmp(m, "GET") && strcmp(m, "DELETE")) {
    gw_resp_header(req, "Allow", "GET, POST, DELETE");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed on an MCP endpoint", m);
    return -1;
  }
  /* Origin and Host: DNS-rebinding protection (gateway/mcp/mcp_origin.c) */
  const char *ocode;
  char owhy[400];
  int ost = gw_mcp_origin_check(req, &ocode, owhy, sizeof owhy);
  if (ost) {
    gw_respond_error(req, ost, ocode, "%s", owhy);
    return -1;
  }
  /* who: the employee token, and the user's state, on every request */
  const char *auth = gw_req_header(req, "authorization");
  if (!auth || strncasecmp(auth, "Bearer ", 7)) {
    gw__mcp_unauthorized(req, "missing Authorization: Bearer <mgw_ token>");
    return -1;
  }
  const char *tok = auth + 7;
  while (*tok == ' ') tok++;
  st_txn *txn;
  if (st_read_begin(srv->store, &txn) != 0) {
    gw_respond_error(req, 503, "store_unavailable", "the store cannot be read right now");
    return -1;
  }
  int rc = auth_token_verify(txn, c->tenant, tok, (int64_t)time(NULL), c->user, c->tokid);
  json_t *conn = NULL;
  int crc = rc == 0 && !agg ? vault_connector_get(txn, c->tenant, c->connector, &conn) : 0;
  json_decref(conn);
  c->sid = gw_req_header(req, "mcp-session-id");
  int src = rc == 0 && crc == 0 && c->sid ? gw_session_get(txn, c->sid, &c->sess) : ST_ENOTFOUND;
  st_txn_end(txn);
  /* an expired session is an unknown one, from its stored stamps: the
   * purge may not have run yet (gateway/mcp/mcp_session.h) */
  int64_t now_ms = gw_session_now_ms();
  if (src == 0 && gw_session_expired(&c->sess, now_ms, gw_sessions_limits(srv))) src = ST_ENOTFOUND;
  if (rc != 0) {
    gw__mcp_unauthorized(req, "invalid, expired or revoked token");
    return -1;
  }
  if (crc != 0) {
    gw_respond_error(req, 404, "not_found", "no connector \"%s\" in this tenant", c->connector);
    return -1;
  }
  c->sess_ok = src == 0 && !strcmp(c->sess.tenant, c->tenant) && !strcmp(c->sess.user, c->user) &&
               !strcmp(c->sess.connector, c->connector);
  if (c->sess_ok) gw_session_touch(req->lp, c->sid, &c->sess, now_ms);
  return 0;
}

/* Before the body is read: the same first checks (and answers) as the
 * handlers, which run them again on what is let through. */
/* Preauth runs the handler's opening checks once, before the body; the
 * handler takes their result (gw__mcp_ctx_of) instead of checking again.
 * The time the body takes to arrive opens no gap: identity and policy are
 * checked again right before anything goes upstream, and session writes
 * check inside their transaction. */
static int mcp_preauth(gw_req *req, bool agg) {
  gw_mcp_ctx *c = gw_req_alloc(req, sizeof *c);
  if (!c) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return -1;
  }
  if (gw__mcp_begin(req, agg, c) != 0) return -1;
  req->handler_data = c;
  return 0;
}
int gw_proxy_preauth(gw_req *req) { return mcp_preauth(req, false); }
int gw_agg_preauth(gw_req *req) { return mcp_preauth(req, true); }

int gw__mcp_ctx_of(gw_req *req, bool agg, gw_mcp_ctx *c) {
  if (req->handler_data) {
    *c = *(const gw_mcp_ctx *)req->handler_data; /* checked at preauth */
    req->handler_data = NULL;
    return 0;
  }
  return gw__mcp_begin(req, agg, c);
}

/* GET and DELETE need a session of this caller (and GET an SSE Accept). */
int gw__mcp_session_checks(gw_req *req, const gw_mcp_ctx *c) {
  if (!c->sid) {
    gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
    return -1;
  }
  if (!c->sess_ok) {
    gw__mcp_refuse(req, 404, -32001, "Session not found");
    return -1;
  }
  if (!strcmp(req->method, "GET") && !gw__accept_has(gw_req_header(req, "accept"), "text/event-stream")) {
    gw_respond_error(req, 406, "not_acceptable", "a GET stream needs Accept: text/event-stream");
    return -1;
  }
  return 0;
}

/* POST: the Accept header, then the body parsed fully and strictly. */
json_t *gw__mcp_parse_post(gw_req *req) {
  const char *accept = gw_req_header(req, "accept");
  if (!gw__accept_has(accept, "application/json") || !gw__accept_has(accept, "text/event-stream")) {
    gw_respond_error(req, 406, "not_acceptable",
                     "POST needs Accept: application/json, text/event-stream (Streamable HTTP)");
    return NULL;
  }
  json_error_t je;
  json_t *msg = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
  if (!msg) {
    char why[300];
    snprintf(why, sizeof why, "Parse error: %s (line %d column %d)", je.text, je.line, je.column);
    gw__mcp_refuse(req, 400, -32700, why);
  }
  return msg;
}

/* DELETE: the session record goes in a writer job; then 204. */
void gw__mcp_delete_session(px *x) {
  if (x->agg) {
    /* the upstream sessions it opened: ended after the record goes */
    st_txn *txn;
    if (st_read_begin(x->lp->srv->store, &txn) == 0) {
      json_decref(x->agg_state);
      x->agg_state = json_pack("{s:o}", "ups", gw_session_upstreams(txn, x->sid));
      st_txn_end(txn);
    }
  }
  del_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw__px_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  j->x = x;
  snprintf(j->sid, sizeof j->sid, "%s", x->sid);
  x->refs++;
  if (st_submit(x->lp->srv->store, x->lp->port, job_session_del, done_session_del, j) != 0) {
    x->refs--;
    free(j);
    gw__px_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}

void gw_proxy_dispatch(gw_req *req) {
  gw_server *srv = req->lp->srv;
  gw_mcp_ctx ctx;
  if (gw__mcp_ctx_of(req, false, &ctx) != 0) return;
  const char *tenant = ctx.tenant, *connector = ctx.connector, *user = ctx.user, *sid = ctx.sid;
  const char *m = req->method;
  gw_session sess = ctx.sess;
  bool sess_ok = ctx.sess_ok;
  (void)srv;
  {
    /* a connector no rule gives the user does not exist for them */
    const pol_user *pu = gw__policy_for(req->lp, tenant, user);
    if (!pu) {
      gw_respond_error(req, 503, "policy_unavailable", "the gateway cannot read its policy right now (fail closed)");
      return;
    }
    if (!pol_connector_visible(pu, connector)) {
      gw_respond_error(req, 404, "not_found", "no connector \"%s\" in this tenant", connector);
      return;
    }
  }

  if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
    if (gw__mcp_session_checks(req, &ctx) != 0) return;
    px *x = gw__px_new(req, !strcmp(m, "GET") ? PX_GET : PX_DELETE, &ctx);
    if (!x) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    x->sess = sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
    if (x->kind == PX_GET) {
      int rc = gw__px_start_upstream(x, "GET", NULL, 0, "text/event-stream");
      if (rc != 0) gw__px_start_failed(x, rc);
      return;
    }
    gw__mcp_delete_session(x);
    return;
  }

  /* POST */
  json_t *msg = gw__mcp_parse_post(req);
  if (!msg) return;
  json_t *ids = json_array();
  const char *why = NULL, *method = NULL;
  bool batch = json_is_array(msg);
  bool initialize = false, discover = false, tasks = false;
  if (batch) {
    if (!json_array_size(msg)) why = "an empty batch";
    size_t i;
    json_t *e;
    json_array_foreach(msg, i, e) {
      const char *mm = NULL;
      if (!why) why = gw__check_message(e, ids, &mm);
      if (mm && (!strcmp(mm, "initialize") || !strncmp(mm, "tasks/", 6))) why = "initialize and tasks/* cannot be batched";
    }
  } else {
    why = gw__check_message(msg, ids, &method);
    if (method) {
      initialize = !strcmp(method, "initialize");
      discover = !strcmp(method, "server/discover");
      tasks = !strncmp(method, "tasks/", 6);
    }
  }
  if (why) {
    json_decref(ids);
    json_decref(msg);
    gw__mcp_refuse(req, 400, -32600, why);
    return;
  }
  /* a 2026-07-28 client probes with server/discover first: answering
   * "method not found" makes it fall back to initialize */
  if (discover) {
    json_t *id = json_array_get(ids, 0);
    gw_respond_json(req, 200, json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                                        "error", "code", GW_RPC_NOT_SUPPORTED, "message",
                                        "Method not found: server/discover (this gateway speaks MCP "
                                        "2025-03-26 to 2025-11-25; use initialize)"));
    json_decref(ids);
    json_decref(msg);
    return;
  }
  const char *pv = gw_req_header(req, "mcp-protocol-version");
  if (pv && !initialize && !gw__mcp_version_supported(pv)) {
    json_decref(ids);
    json_decref(msg);
    char w[200];
    snprintf(w, sizeof w, "Bad Request: unsupported MCP-Protocol-Version %.40s (supported: 2025-03-26, 2025-06-18, 2025-11-25)", pv);
    gw__mcp_refuse(req, 400, -32000, w);
    return;
  }
  if (!initialize) {
    if (!sid) {
      json_decref(ids);
      json_decref(msg);
      gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)");
      return;
    }
    if (!sess_ok) {
      json_decref(ids);
      json_decref(msg);
      gw__mcp_refuse(req, 404, -32001, "Session not found");
      return;
    }
    if (batch && strcmp(sess.version, "2025-03-26") != 0) {
      json_decref(ids);
      json_decref(msg);
      gw__mcp_refuse(req, 400, -32600, "JSON-RPC batches are only allowed with protocol version 2025-03-26");
      return;
    }
  }
  json_t *parsed = msg;
  px *x = gw__px_new(req, PX_POST, &ctx);
  if (!x) {
    json_decref(parsed);
    json_decref(ids);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  json_decref(x->ids);
  x->ids = ids;
  x->initialize = initialize;
  if (!initialize) {
    x->sess = sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
  }
  if (tasks) {
    gw__px_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "tasks are not supported through the gateway yet");
    json_decref(parsed);
    return;
  }
  /* policy: the decision uses the tool name from the strictly parsed
   * message that is forwarded, nothing else */
  {
    const pol_user *pu = gw__policy_for(req->lp, tenant, user);
    if (!pu) {
      json_decref(parsed);
      gw__px_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now; refusing (fail closed)");
      return;
    }
    x->list_ids = json_array();
    size_t n = batch ? json_array_size(parsed) : 1;
    char refused_buf[300];
    const char *refused = NULL;
    pol_decision worst = POL_ALLOW;
    for (size_t i = 0; i < n; i++) {
      json_t *e = batch ? json_array_get(parsed, i) : parsed;
      const char *mm = json_string_value(json_object_get(e, "method"));
      if (!mm) continue;
      if (!strcmp(mm, "tools/list") && json_object_get(e, "id")) json_array_append(x->list_ids, json_object_get(e, "id"));
      if (strcmp(mm, "tools/call")) continue;
      const char *tool = json_string_value(json_object_get(json_object_get(e, "params"), "name"));
      pol_decision d = tool ? pol_decide(pu, connector, tool) : POL_BLOCK;
      if (d != POL_ALLOW && (worst == POL_ALLOW || d < worst)) {
        worst = d;
        snprintf(refused_buf, sizeof refused_buf, "%s", tool ? tool : "(no name)");
        refused = refused_buf; /* parsed is released before the reply */
      }
    }
    if (refused) {
      json_decref(parsed);
      GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){tenant, req->id}), "tools/call %s on %s refused: %s (policy v%d)",
             refused, connector, pol_decision_name(worst), pol_user_version(pu));
      if (worst == POL_APPROVE)
        gw__px_rpc_error(x, 200, GW_RPC_APPROVAL,
                  "tool \"%s\" on \"%s\" requires approval under your organisation's policy; approvals are "
                  "not available yet, so the call was not made",
                  refused, connector);
      else
        gw__px_rpc_error(x, 200, GW_RPC_BLOCKED, "tool \"%s\" on \"%s\" is blocked by your organisation's policy",
                  refused, connector);
      return;
    }
  }
  json_decref(parsed);
  /* forwarded exactly as checked (the bytes received, not a re-encoding) */
  int rc = gw__px_start_upstream(x, "POST", req->body, req->body_len, "application/json, text/event-stream");
  if (rc != 0) gw__px_start_failed(x, rc);
}

/* ---------- revocation ---------- */

/* Ends one exchange for a revocation: nothing more goes upstream, a stream
 * is cut, a waiting request (or batch element) gets "access revoked". */
static void end_exchange(px *x) {
  x->revoked = true;
  if (x->out) gw_out_abort(x->out);
  if (x->aux) gw_out_abort(x->aux);
  if (x->req && x->started) {
    gw_req *r = x->req;
    gw__px_client_done(x);
    gw_req_drop(r); /* cuts the stream */
  } else if (client_alive(x)) {
    gw__px_rpc_error(x, 403, GW_RPC_REVOKED, "%s", REVOKED_MSG);
  }
}

static bool revocation_hits(const revocation *q, const px *x) {
  if (strcmp(x->tenant, q->tenant)) return false;
  if (q->user[0] && strcmp(x->user, q->user)) return false;
  if (q->connector[0] && strcmp(x->connector, q->connector)) return false;
  if (q->tokid[0] && strcmp(x->tokid, q->tokid)) return false;
  return true;
}

static void apply_revocation(px *x, void *arg) {
  const revocation *q = arg;
  if (!revocation_hits(q, x)) return;
  if (!q->notify) {
    end_exchange(x);
  } else if (x->kind == PX_GET && x->started && x->req) {
    /* the client's GET stream learns that its tool list changed */
    static const char ev[] =
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
    gw_resp_write(x->req, ev, sizeof ev - 1);
  } else if (x->parent && x->out && x->user[0]) {
    /* an upstream GET stream feeding an aggregated stream: it stops when
     * policy no longer shows its connector to the user */
    const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
    if (!pu || !pol_connector_visible(pu, x->connector)) gw_out_abort(x->out);
  }
}

void gw_proxy_revocations_drain(gw_loop *lp) {
  gw_proxy *p = lp->proxy;
  if (!p) return;
  uv_mutex_lock(&p->mu);
  revocation *q = p->queue;
  p->queue = NULL;
  uv_mutex_unlock(&p->mu);
  while (q) {
    revocation *n = q->next;
    if (q->tenant_gone && lp->pol) pol_cache_drop_tenant(lp->pol, q->tenant);
    gw__px_foreach(p, apply_revocation, q);
    /* the sessions of a deactivated user or a deleted tenant are gone from
     * the store: their in-memory state goes too */
    if (q->tenant_gone || (!q->notify && q->user[0] && !q->connector[0] && !q->tokid[0]))
      gw__agg_forget_owner(p, q->tenant, q->tenant_gone ? NULL : q->user);
    free(q);
    q = n;
  }
}

void gw_proxy_before_done(void *lp) { gw_proxy_revocations_drain(lp); }

typedef struct lost_arg {
  st_txn *txn;
  int64_t now_ms;
} lost_arg;

/* First pass, inside one read txn: mark; nothing is ended under the txn. */
static void mark_lost(px *x, void *arg) {
  lost_arg *a = arg;
  gw_session s;
  if (!x->req || !x->sid[0] || x->parent) return;
  x->lost = gw_session_get(a->txn, x->sid, &s) != 0 ||
            gw_session_expired(&s, a->now_ms, gw_sessions_limits(x->lp->srv));
}

static void end_lost(px *x, void *arg) {
  (void)arg;
  if (!x->lost) return;
  x->lost = false;
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
         "ending a live exchange of an evicted or expired session");
  end_exchange(x);
}

void gw_proxy_end_lost_sessions(gw_loop *lp) {
  lost_arg a = {NULL, gw_session_now_ms()};
  if (!lp->proxy || st_read_begin(lp->srv->store, &a.txn) != 0) return;
  gw__px_foreach(lp->proxy, mark_lost, &a);
  gw__agg_sweep(lp->proxy, a.txn, a.now_ms);
  st_txn_end(a.txn);
  gw__px_foreach(lp->proxy, end_lost, NULL);
}

static void on_async(uv_async_t *a) { gw_proxy_revocations_drain(((gw_proxy *)a->data)->lp); }

typedef struct revoke_arg {
  gw_server *srv;
  revocation r; /* the template queued on every loop (next unused) */
} revoke_arg;

/* Queues a copy of r on every loop (one today). Any thread. */
static void enqueue(gw_server *srv, const revocation *tmpl) {
  gw_loop *lp = srv->lp;
  gw_proxy *p = lp ? lp->proxy : NULL;
  if (!p) return;
  revocation *r = malloc(sizeof *r);
  if (!r) return;
  *r = *tmpl;
  uv_mutex_lock(&p->mu);
  /* appended: revocations apply in the order they were committed */
  revocation **tail = &p->queue;
  while (*tail) tail = &(*tail)->next;
  r->next = NULL;
  *tail = r;
  bool closing = p->closing;
  uv_mutex_unlock(&p->mu);
  if (!closing) uv_async_send(&p->async);
}

static void fill(revocation *r, const char *tenant, const char *user, const char *connector, const char *tokid) {
  memset(r, 0, sizeof *r);
  snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
  snprintf(r->user, sizeof r->user, "%s", user ? user : "");
  snprintf(r->connector, sizeof r->connector, "%s", connector ? connector : "");
  snprintf(r->tokid, sizeof r->tokid, "%s", tokid ? tokid : "");
}

void gw_proxy_notify_tools_changed(gw_server *srv, const char *tenant, const char *user) {
  revocation r;
  fill(&r, tenant, user, NULL, NULL);
  r.notify = true;
  enqueue(srv, &r);
}

static void revoke_after_commit(void *arg) {
  revoke_arg *a = arg;
  enqueue(a->srv, &a->r);
  free(a);
}

/* Registers the fan-out of r after txn commits. */
static int revoke_on_commit(st_txn *txn, gw_server *srv, const revocation *r) {
  revoke_arg *a = malloc(sizeof *a);
  if (!a) return ST_ENOMEM;
  a->srv = srv;
  a->r = *r;
  int rc = st_txn_after_commit(txn, revoke_after_commit, free, a);
  if (rc) free(a);
  return rc;
}

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  (void)kind;
  revocation r;
  fill(&r, ev->tenant, ev->id, NULL, NULL);
  return revoke_on_commit(txn, ctx, &r);
}

int gw_proxy_revoke_tenant_after_commit(st_txn *txn, gw_server *srv, const char *tenant) {
  revocation r;
  fill(&r, tenant, NULL, NULL, NULL);
  r.tenant_gone = true;
  return revoke_on_commit(txn, srv, &r);
}

int gw_proxy_revoke_token_after_commit(st_txn *txn, gw_server *srv, const char *tenant, const char *tokid) {
  revocation r;
  if (!tokid || !*tokid) return ST_EINVAL;
  fill(&r, tenant, NULL, NULL, tokid);
  return revoke_on_commit(txn, srv, &r);
}

typedef struct notify_arg {
  gw_server *srv;
  char tenant[64];
  json_t *users; /* NULL: everyone in the tenant */
} notify_arg;

static void notify_after_commit(void *arg) {
  notify_arg *a = arg;
  if (!a->users) gw_proxy_notify_tools_changed(a->srv, a->tenant, NULL);
  size_t i;
  json_t *u;
  json_array_foreach(a->users, i, u) gw_proxy_notify_tools_changed(a->srv, a->tenant, json_string_value(u));
  json_decref(a->users);
  free(a);
}

static void notify_discard(void *arg) {
  notify_arg *a = arg;
  json_decref(a->users);
  free(a);
}

int gw_proxy_notify_after_commit(st_txn *txn, gw_server *srv, const char *tenant, json_t *users) {
  notify_arg *a = calloc(1, sizeof *a);
  if (!a) {
    json_decref(users);
    return ST_ENOMEM;
  }
  a->srv = srv;
  a->users = users;
  snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
  int rc = st_txn_after_commit(txn, notify_after_commit, notify_discard, a);
  if (rc) notify_discard(a);
  return rc;
}

/* Membership changes: the added and removed users' tool lists changed;
 * a new group may bind a pending policy name: everyone. */
static int on_tools_changed(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  json_t *users = NULL;
  if (kind == SCIM_EV_MEMBERSHIP_CHANGED) {
    users = json_array();
    for (size_t i = 0; i < ev->nadded; i++) json_array_append_new(users, json_string(ev->added[i]));
    for (size_t i = 0; i < ev->nremoved; i++) json_array_append_new(users, json_string(ev->removed[i]));
  }
  return gw_proxy_notify_after_commit(txn, ctx, ev->tenant, users);
}

int gw_proxy_register_hooks(gw_server *srv) {
  int rc = st_hook_add(srv->store, SCIM_EV_USER_DEACTIVATED, on_user_gone, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_USER_DELETED, on_user_gone, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_MEMBERSHIP_CHANGED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_GROUP_CREATED, on_tools_changed, srv);
  return rc;
}

/* Called by the connector delete job: after commit, live uses end. */
int gw_proxy_revoke_connector_after_commit(st_txn *txn, gw_server *srv, const char *tenant, const char *connector) {
  revocation r;
  fill(&r, tenant, NULL, connector, NULL);
  return revoke_on_commit(txn, srv, &r);
}

/* SIGTERM: streams end now, cleanly (a chunked end: clients reconnect,
 * with Last-Event-ID, to another instance); plain requests finish. */
static void drain_one(px *x, void *arg) {
  (void)arg;
  if (x->kind != PX_GET && !x->started) return;
  if (x->out) gw_out_abort(x->out);
  if (x->req) {
    gw_req *r = x->req;
    bool started = x->started;
    gw__px_client_done(x);
    if (started) gw_resp_end(r);
    else gw_respond_error(r, 503, "shutting_down", "the gateway is restarting; reconnect");
  }
}

void gw_proxy_drain(gw_loop *lp) { gw__px_foreach(lp->proxy, drain_one, NULL); }

/* ---------- loop setup ---------- */

int gw_proxy_loop_start(gw_loop *lp) {
  gw_proxy *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->lp = lp;
  if (uv_mutex_init(&p->mu) != 0) {
    free(p);
    return -1;
  }
  if (uv_async_init(&lp->loop, &p->async, on_async) != 0) {
    uv_mutex_destroy(&p->mu);
    free(p);
    return -1;
  }
  p->async.data = p;
  lp->proxy = p;
  if (!(lp->pol = pol_cache_new(4096))) return -1;
  if (gw_out_new(&lp->loop, &lp->out) != 0) return -1;
  return 0;
}

static void on_async_closed(uv_handle_t *h) {
  gw_proxy *p = h->data;
  uv_mutex_lock(&p->mu);
  revocation *q = p->queue;
  p->queue = NULL;
  uv_mutex_unlock(&p->mu);
  while (q) {
    revocation *n = q->next;
    free(q);
    q = n;
  }
  uv_mutex_destroy(&p->mu);
  gw__agg_forget_owner(p, NULL, NULL);
  for (size_t i = 0; i < p->nm; i++) free(p->m[i]);
  free(p->m);
  free(p);
}

void gw_proxy_loop_stop(gw_loop *lp) {
  gw_proxy *p = lp->proxy;
  if (!p) return;
  /* Unlink every exchange first: upstream halves still finishing after
   * this point (their on_done runs from gw_out_close) must not touch p,
   * and their metrics entries go with p. */
  px *list = p->list;
  p->list = p->tail = NULL;
  for (px *x = list; x; x = x->next) {
    x->refs++;
    x->listed = false;
    x->m = NULL;
  }
  for (px *x = list; x; x = x->next) end_exchange(x);
  for (px *x = list, *n; x; x = n) {
    n = x->next;
    gw__px_unref(x);
  }
  uv_mutex_lock(&p->mu);
  p->closing = true;
  uv_mutex_unlock(&p->mu);
  if (lp->out) {
    gw_out_close(lp->out, NULL, NULL);
    lp->out = NULL;
  }
  lp->proxy = NULL;
  pol_cache_free(lp->pol);
  lp->pol = NULL;
  uv_close((uv_handle_t *)&p->async, on_async_closed);
}

/* ---------- module table entry (gateway/core/module.h) ---------- */

static int mod_store_init(st_store *st, gw_server *srv) {
  (void)st;
  return srv ? gw_proxy_register_hooks(srv) : 0; /* offline: no live exchanges */
}

static int mod_loop_start(gw_loop *lp) {
  if (gw_proxy_loop_start(lp) != 0) return -1;
  /* every reply of a write waits for the revocations its commit queued */
  st_port_before_done(lp->port, gw_proxy_before_done, lp);
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++) gw_out_set_egress(lp->out, lv, lp->srv->egress[lv]);
  return 0;
}

static int mod_routes(gw_server *srv, gw_router *rt) {
  gw_route agg = {GW_RC_MCP, gw_agg_dispatch, NULL, srv->cfg.mcp_max_body, NULL, gw_agg_preauth};
  gw_route one = {GW_RC_MCP, gw_proxy_dispatch, NULL, srv->cfg.mcp_max_body, NULL, gw_proxy_preauth};
  int rc = gw_router_add(rt, "/t/{}/mcp", &agg, 0);
  return rc ? rc : gw_router_add(rt, "/t/{}/mcp/{}", &one, 0);
}

const gw_module gw_mod_mcp = {
    .name = "mcp",
    .store_init = mod_store_init,
    .loop_start = mod_loop_start,
    .loop_stop = gw_proxy_loop_stop,
    .metrics = gw_proxy_metrics,
    .routes = mod_routes,
    .drain = gw_proxy_drain,
};
