/* gateway/api/oauth_cimd.c — the client lookup of the authorization
 * server (oauth_int.h says what it answers): stored registrations, pinned
 * documents, and Client ID Metadata Documents fetched from their https
 * client_id and cached.
 *
 * Rules this file keeps, and why:
 *  - The URL of a document is chosen by whoever sends an authorization
 *    request: it is fetched at the outbound engine's untrusted egress level
 *    (public addresses only unless the operator's egress_allow_untrusted
 *    says more, checked on the connected address), with TLS verified,
 *    without redirects, with a body cap, per-phase timeouts and a total
 *    deadline, and at most OAUTH_CIMD_INFLIGHT_MAX fetches at once, of
 *    which one tenant's hold at most OAUTH_CIMD_TENANT_MAX (_LATE once
 *    half are taken) and one client address's OAUTH_CIMD_ADDRESS_MAX:
 *    fetches at one tenant, or from a few addresses (anyone can start them,
 *    and hold each up to OAUTH_CIMD_TOTAL_MS with a server that never
 *    answers) never take every slot from the others.
 *  - A document is parsed strictly and checked like a registration, plus
 *    its client_id must be its URL. Failures say what went wrong in words,
 *    never quoting the document (a fetch can be pointed at anything).
 *  - Only what was checked is cached (auth_oauth_client_validate's clean
 *    object), for cimd_cache_ms; a failed fetch is never cached and a stale
 *    document never used in its place. A pinned document (an admin's copy)
 *    always wins, also over a fetch that completes after it was pinned;
 *    a blocked document URL (an admin's block) is refused without a fetch,
 *    also when a fetch in flight completes after it was blocked.
 *    At most cimd_cache_max documents are cached per tenant; each cache
 *    write runs a step of the idle sweep first, and past the cap the
 *    document is used without being cached.
 *
 * Lifetime: a lookup owns a uv_timer_t (the deferral of an answer known at
 * once, then the fetch's deadline) and is freed in its close callback,
 * after cb ran. Its transfer's on_done and its writer job's done are the
 * only other callbacks that touch it, one at a time. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/oauth_client.h"
#include "gateway/api/oauth_int.h"
#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/out/outbound.h"
#include "store/tenant.h"

#define FETCH_PHASE_MS 5000

typedef struct lookup {
  gw_req *req;
  gw_loop *lp;
  char tenant[64];
  char addr[GW_RATELIMIT_KEY_MAX + 1]; /* the client's address key (its /64 for IPv6) */
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  gw_oauth_client_cb cb;
  void *arg;
  uv_timer_t timer;
  /* the answer */
  json_t *client;
  int status;
  const char *error;
  char why[400];
  /* the fetch */
  gw_out_req *xfer;
  gw_buf body;
  int http_status;
  bool too_big, timed_out, inflight;
  /* the cache job (clean and the stamps read-only in the job) */
  json_t *clean;
  char now[32];
  int64_t now_s, cap, dcr_before, cimd_before;
  json_t *out; /* out: the record to answer with (NULL: not cached) */
} lookup;

static void on_closed(uv_handle_t *h) {
  lookup *l = h->data;
  json_decref(l->client);
  json_decref(l->clean);
  json_decref(l->out);
  gw_buf_free(&l->body);
  free(l);
}

/* Calls back (once) and lets the lookup go. From a loop callback only. */
static void deliver(lookup *l) {
  uv_timer_stop(&l->timer);
  json_t *c = l->client;
  l->client = NULL;
  l->cb(l->req, c, l->status, l->error, l->why, l->arg);
  uv_close((uv_handle_t *)&l->timer, on_closed);
}

static void on_deferred(uv_timer_t *t) { deliver(t->data); }

static void set_ok(lookup *l, json_t *client, const char *source) {
  l->client = client;
  l->status = 200;
  l->error = NULL;
  snprintf(l->why, sizeof l->why, "%s", source);
}

static void set_fail(lookup *l, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_fail(lookup *l, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->why, sizeof l->why, fmt, ap);
  va_end(ap);
  json_decref(l->client);
  l->client = NULL;
  l->status = status;
  l->error = status == 404 ? "not_found" : status == 503 ? "temporarily_unavailable" : "invalid_client";
}

/* The answer is known now: deliver on the next turn of the loop. */
static void defer(lookup *l) { uv_timer_start(&l->timer, on_deferred, 0, 0); }

static void count(lookup *l, int what) {
  gw_oauth *o = l->lp->srv->oauth;
  if (o) atomic_fetch_add_explicit(&o->cimd_fetches[what], 1, memory_order_relaxed);
}

/* key's entry in a table of holders, or -1 (*free_at: a free entry, or
 * -1). Under cimd_mu. */
static int held_find(gw_oauth_held *t, const char *key, int *free_at) {
  *free_at = -1;
  for (int i = 0; i < OAUTH_CIMD_INFLIGHT_MAX; i++) {
    if (t[i].n && !strcmp(t[i].key, key)) return i;
    if (*free_at < 0 && !t[i].n) *free_at = i;
  }
  return -1;
}

static void held_drop(gw_oauth_held *t, const char *key) {
  int free_at, i = held_find(t, key, &free_at);
  if (i >= 0 && --t[i].n == 0) t[i].key[0] = 0;
}

/* A slot for l's fetch: 0, or 1 when every slot is taken, 2 when its
 * tenant holds its share (OAUTH_CIMD_TENANT_MAX, or _LATE once half the
 * slots are taken), 3 when its client address does
 * (OAUTH_CIMD_ADDRESS_MAX). */
static int take_slot(lookup *l) {
  gw_oauth *o = l->lp->srv->oauth;
  int rc = 1;
  uv_mutex_lock(&o->cimd_mu);
  if (o->cimd_inflight < OAUTH_CIMD_INFLIGHT_MAX) {
    /* fewer than OAUTH_CIMD_INFLIGHT_MAX fetches: a key without an entry
     * finds a free one in either table */
    int tfree, afree;
    int t = held_find(o->cimd_held, l->tenant, &tfree), a = held_find(o->cimd_addr, l->addr, &afree);
    int share = o->cimd_inflight < OAUTH_CIMD_INFLIGHT_MAX / 2 ? OAUTH_CIMD_TENANT_MAX : OAUTH_CIMD_TENANT_LATE;
    if (t >= 0 && o->cimd_held[t].n >= share) {
      rc = 2;
    } else if (a >= 0 && o->cimd_addr[a].n >= OAUTH_CIMD_ADDRESS_MAX) {
      rc = 3;
    } else {
      if (t < 0) gw_strlcpy(o->cimd_held[t = tfree].key, l->tenant, sizeof o->cimd_held[0].key);
      if (a < 0) gw_strlcpy(o->cimd_addr[a = afree].key, l->addr, sizeof o->cimd_addr[0].key);
      o->cimd_held[t].n++;
      o->cimd_addr[a].n++;
      o->cimd_inflight++;
      l->inflight = true;
      rc = 0;
    }
  }
  uv_mutex_unlock(&o->cimd_mu);
  return rc;
}

static void release_slot(lookup *l) {
  gw_oauth *o = l->lp->srv->oauth;
  if (!l->inflight || !o) return;
  l->inflight = false;
  uv_mutex_lock(&o->cimd_mu);
  o->cimd_inflight--;
  held_drop(o->cimd_held, l->tenant);
  held_drop(o->cimd_addr, l->addr);
  uv_mutex_unlock(&o->cimd_mu);
}

/* ---- the cache write */

static int job_cache(st_txn *txn, void *arg) {
  lookup *l = arg;
  json_decref(l->out);
  l->out = NULL;
  int rc = st_tenant_active(txn, l->tenant);
  if (rc) return rc;
  json_t *have = NULL;
  rc = auth_oauth_client_get(txn, l->tenant, l->client_id, &have);
  if (rc && rc != ST_ENOTFOUND) return rc;
  const char *kind = json_string_value(json_object_get(have, "kind"));
  if (have && kind && strcmp(kind, AUTH_OAUTH_KIND_CIMD)) {
    l->out = have; /* pinned or blocked meanwhile: it wins */
    return 0;
  }
  bool replaces = have != NULL;
  json_decref(have);
  rc = auth_oauth_clients_sweep(txn, l->tenant, l->dcr_before, l->cimd_before, OAUTH_SWEEP_SCAN);
  if (rc < 0) return rc;
  int64_t n = auth_oauth_clients_count(txn, l->tenant, AUTH_OAUTH_KIND_CIMD);
  if (n < 0) return (int)n;
  if (!replaces && n >= l->cap) return 0; /* full: used, not cached */
  rc = auth_oauth_client_put(txn, l->tenant, l->client_id, AUTH_OAUTH_KIND_CIMD, l->clean, l->now, l->now_s);
  if (rc) return rc;
  return auth_oauth_client_get(txn, l->tenant, l->client_id, &l->out);
}

/* The record a fetched document makes when it could not be cached. */
static json_t *uncached(lookup *l) {
  json_t *r = json_pack("{s:s,s:s}", "client_id", l->client_id, "kind", AUTH_OAUTH_KIND_CIMD);
  if (!r) return NULL;
  json_object_update(r, l->clean);
  json_object_set_new(r, "created", json_string(l->now));
  json_object_set_new(r, "last_used", json_integer(l->now_s));
  return r;
}

static void done_cache(int status, void *arg) {
  lookup *l = arg;
  gw_log_ctx lc = {l->tenant, l->req->id};
  if (status == ST_ENOTFOUND) {
    set_fail(l, 404, "no such organisation on this gateway");
  } else if (status < 0 || !l->out) {
    if (status < 0)
      GW_LOG(GW_LOG_WARN, "oauth", &lc, "client metadata document %s used without caching: %s", l->client_id,
             st_strerror(status));
    else
      GW_LOG(GW_LOG_WARN, "oauth", &lc,
             "client metadata document %s used without caching: the tenant caches cimd_cache_max (%lld) documents",
             l->client_id, (long long)l->cap);
    json_t *r = uncached(l);
    if (r) set_ok(l, r, "fetched");
    else set_fail(l, 503, "out of memory");
  } else if (auth_oauth_client_blocked(l->out)) {
    set_fail(l, 403, "client blocked by this organisation's administrator");
  } else {
    const char *kind = json_string_value(json_object_get(l->out, "kind"));
    bool pinned = kind && !strcmp(kind, AUTH_OAUTH_KIND_PINNED);
    set_ok(l, l->out, pinned ? "pinned" : "fetched");
    l->out = NULL;
  }
  deliver(l);
}

/* ---- the fetch */

static void fetch_failed(lookup *l, int what, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fetch_failed(lookup *l, int what, int status, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  count(l, what);
  gw_log_ctx lc = {l->tenant, l->req->id};
  GW_LOG(GW_LOG_WARN, "oauth", &lc, "client metadata document %s: %s", l->client_id, msg);
  set_fail(l, status, "%s", msg);
}

static void on_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  lookup *l = ud;
  l->http_status = status;
  if (status != 200) {
    gw_out_abort(r);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (!strcasecmp(h[i].name, "Content-Length") && strtoll(h[i].value, NULL, 10) > AUTH_OAUTH_METADATA_MAX) {
      l->too_big = true;
      gw_out_abort(r);
      return;
    }
}

static int on_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  lookup *l = ud;
  if (!l->too_big && gw_buf_append(&l->body, p, n)) {
    l->too_big = true;
    gw_out_abort(r);
  }
  return 0;
}

static void on_deadline(uv_timer_t *t) {
  lookup *l = t->data;
  l->timed_out = true;
  if (l->xfer) gw_out_abort(l->xfer);
}

static void got_document(lookup *l) {
  json_error_t je;
  const char *text = l->body.data ? l->body.data : "";
  if (memchr(text, 0, l->body.len)) { /* jansson would stop there */
    fetch_failed(l, OAUTH_CIMD_REFUSED, 400, "document refused: it contains a NUL byte");
    deliver(l);
    return;
  }
  json_t *doc = gw_json_loadb(text, l->body.len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(doc)) {
    if (doc) fetch_failed(l, OAUTH_CIMD_REFUSED, 400, "document refused: it is JSON but not an object");
    else
      fetch_failed(l, OAUTH_CIMD_REFUSED, 400,
                   "document refused: it is not valid JSON (near line %d, column %d), or a member is repeated",
                   je.line, je.column);
    json_decref(doc);
    deliver(l);
    return;
  }
  char err[300];
  int rc = auth_oauth_client_validate(doc, l->client_id, &l->clean, err, sizeof err);
  json_decref(doc);
  if (rc) {
    fetch_failed(l, OAUTH_CIMD_REFUSED, rc == ST_ENOMEM ? 503 : 400, "document refused: %s",
                 rc == ST_ENOMEM ? "out of memory" : err);
    deliver(l);
    return;
  }
  count(l, OAUTH_CIMD_OK);
  gw_server *srv = l->lp->srv;
  l->now_s = oauth__now();
  oauth__rfc3339(l->now_s, l->now);
  json_object_set_new(l->clean, "fetched", json_integer(l->now_s));
  l->cap = srv->cfg.cimd_cache_max;
  l->dcr_before = l->now_s - srv->cfg.dcr_client_idle_ms / 1000;
  l->cimd_before = l->now_s - srv->cfg.cimd_cache_ms / 1000;
  gw_log_ctx lc = {l->tenant, l->req->id};
  GW_LOG(GW_LOG_INFO, "oauth", &lc, "client metadata document %s fetched", l->client_id);
  if (gw_loop_submit(l->lp, job_cache, done_cache, l)) done_cache(ST_EBUSY, l);
}

static void on_done(gw_out_req *r, int err, void *ud) {
  lookup *l = ud;
  char detail[200];
  snprintf(detail, sizeof detail, "%s", err ? gw_out_detail(r) : "");
  l->xfer = NULL;
  uv_timer_stop(&l->timer);
  release_slot(l);
  int st = l->http_status;
  if (l->timed_out)
    fetch_failed(l, OAUTH_CIMD_FAILED, 502, "fetch failed: no complete answer within %d s", OAUTH_CIMD_TOTAL_MS / 1000);
  else if (l->too_big)
    fetch_failed(l, OAUTH_CIMD_REFUSED, 400, "document refused: larger than %d bytes", AUTH_OAUTH_METADATA_MAX);
  else if (st >= 300 && st < 400)
    fetch_failed(l, OAUTH_CIMD_FAILED, 502,
                 "fetch failed: the server answered with a redirect (HTTP %d), and redirects are not followed", st);
  else if (st && st != 200)
    fetch_failed(l, OAUTH_CIMD_FAILED, 502, "fetch failed: the server answered HTTP %d", st);
  else if (err == GW_OUT_EEGRESS) {
    /* which address the name resolved to stays in the operator's log: a
     * client_id URL is anyone's to choose, and the answer would map the
     * operator's internal DNS */
    GW_LOG(GW_LOG_WARN, "oauth", NULL, "client metadata document: %s", detail);
    fetch_failed(l, OAUTH_CIMD_FAILED, 400, "fetch failed: %s",
                 "its address is not allowed (only public addresses, unless the operator lists more in "
                 "egress_allow_untrusted)");
  }
  else if (err == GW_OUT_ECONNTIMEOUT || err == GW_OUT_EFIRSTBYTE || err == GW_OUT_EIDLE)
    fetch_failed(l, OAUTH_CIMD_FAILED, 502, "fetch failed: the server did not answer within %d s (%s)",
                 FETCH_PHASE_MS / 1000, gw_out_err_kind(err));
  else if (err)
    fetch_failed(l, OAUTH_CIMD_FAILED, 502, "fetch failed: %s%s%s", gw_out_strerror(err), detail[0] ? ": " : "",
                 detail);
  else {
    got_document(l);
    return;
  }
  deliver(l);
}

static void fetch(lookup *l) {
  gw_server *srv = l->lp->srv;
  gw_oauth *o = srv->oauth;
  int busy = o ? take_slot(l) : 0;
  if (busy) {
    gw_log_ctx lc = {l->tenant, l->req->id};
    GW_LOG(GW_LOG_WARN, "oauth", &lc, "client metadata document %s not fetched: %s", l->client_id,
           busy == 2   ? "the tenant's share of fetches at once is taken"
           : busy == 3 ? "the client address's share of fetches at once is taken"
                       : "every fetch slot is taken");
    set_fail(l, 503, "too many client metadata documents are being fetched%s right now; try again in a moment",
             busy == 2 ? " for this organisation" : busy == 3 ? " from your address" : "");
    defer(l);
    return;
  }
  gw_buf_init(&l->body, AUTH_OAUTH_METADATA_MAX);
  static const char *const hdr[] = {"Accept: application/json", NULL};
  gw_out_opts opt = {0};
  opt.method = "GET";
  opt.url = l->client_id;
  opt.headers = hdr;
  opt.connect_timeout_ms = FETCH_PHASE_MS;
  opt.first_byte_timeout_ms = FETCH_PHASE_MS;
  opt.idle_timeout_ms = FETCH_PHASE_MS;
  opt.ca_file = srv->cfg.cimd_ca_file && srv->cfg.cimd_ca_file[0] ? srv->cfg.cimd_ca_file : NULL;
  opt.max_header_bytes = 16 * 1024;
  opt.egress = GW_OUT_EGRESS_UNTRUSTED;
  opt.fair_key = l->tenant;
  opt.budget_class = GW_OUT_BUDGET_PUBLIC; /* anyone's to start: never the employees' share */
  opt.on_headers = on_headers;
  opt.on_data = on_data;
  opt.on_done = on_done;
  opt.ud = l;
  int rc = gw_out_start(l->lp->out, &opt, &l->xfer);
  if (rc) {
    release_slot(l);
    count(l, OAUTH_CIMD_FAILED);
    set_fail(l, rc == GW_OUT_EINVAL ? 400 : 503, "fetch failed: %s", gw_out_strerror(rc));
    defer(l);
    return;
  }
  uv_timer_start(&l->timer, on_deadline, OAUTH_CIMD_TOTAL_MS, 0);
}

/* ---- the lookup */

void gw_oauth_client_lookup(gw_req *req, const char *tenant, const char *client_id, gw_oauth_client_cb cb,
                            void *arg) {
  gw_server *srv = req->lp->srv;
  lookup *l = calloc(1, sizeof *l);
  if (!l) {
    /* no memory for the deferral either: the one synchronous answer */
    cb(req, NULL, 503, "temporarily_unavailable", "out of memory", arg);
    return;
  }
  l->req = req;
  l->lp = req->lp;
  l->cb = cb;
  l->arg = arg;
  gw_strlcpy(l->tenant, tenant, sizeof l->tenant);
  gw_ratelimit_addr_key(req->client, l->addr);
  uv_timer_init(&req->lp->loop, &l->timer);
  l->timer.data = l;
  gw_buf_init(&l->body, 0);
  size_t idn = client_id ? strlen(client_id) : 0;
  if (idn == 0 || idn > AUTH_OAUTH_CLIENT_ID_MAX) {
    set_fail(l, 400, "unknown client: the client_id is %s", idn ? "longer than 255 characters" : "missing");
    defer(l);
    return;
  }
  memcpy(l->client_id, client_id, idn + 1);
  bool cimd = auth_oauth_cimd_url_ok(client_id);
  st_txn *txn;
  json_t *rec = NULL;
  int rc = st_read_begin(srv->store, &txn);
  if (rc == 0) {
    rc = st_tenant_active(txn, tenant);
    if (rc == 0) {
      rc = auth_oauth_client_get(txn, tenant, client_id, &rec);
      if (rc == ST_ENOTFOUND) rc = 1; /* no record */
    } else if (rc == ST_ENOTFOUND) {
      rc = 404;
    }
    st_txn_end(txn);
  }
  int64_t now = oauth__now();
  const char *kind = json_string_value(json_object_get(rec, "kind"));
  int64_t last_used = json_integer_value(json_object_get(rec, "last_used"));
  int64_t fetched = json_integer_value(json_object_get(rec, "fetched"));
  if (rc == 404) {
    set_fail(l, 404, "no such organisation on this gateway");
  } else if (rc < 0) {
    set_fail(l, 503, "the gateway's store cannot be read right now");
  } else if (rc == 0 && kind && !strcmp(kind, AUTH_OAUTH_KIND_BLOCKED)) {
    /* an admin's block: not fetched, whatever the document says now */
    set_fail(l, 403, "client blocked by this organisation's administrator");
  } else if (rc == 0 && kind && !strcmp(kind, AUTH_OAUTH_KIND_PINNED)) {
    set_ok(l, rec, "pinned");
    rec = NULL;
  } else if (rc == 0 && kind && !strcmp(kind, AUTH_OAUTH_KIND_DCR)) {
    if (last_used < now - srv->cfg.dcr_client_idle_ms / 1000)
      set_fail(l, 400, "unknown client: its registration expired (unused for too long); the client must register "
                       "again");
    else {
      set_ok(l, rec, "registered");
      rec = NULL;
    }
  } else if (cimd && rc == 0 && kind && !strcmp(kind, AUTH_OAUTH_KIND_CIMD) &&
             fetched >= now - srv->cfg.cimd_cache_ms / 1000 && fetched <= now + 60) {
    set_ok(l, rec, "cached");
    rec = NULL;
  } else if (cimd) {
    json_decref(rec);
    fetch(l);
    return;
  } else if (!strncasecmp(client_id, "https://", 8) || !strncasecmp(client_id, "http://", 7)) {
    set_fail(l, 400,
             "unknown client: a client_id URL must be an https URL with a path, without query, fragment, user info or "
             "dot segments, of at most 255 characters (a client metadata document)");
  } else {
    set_fail(l, 400, "unknown client: no client with this client_id is registered here");
  }
  json_decref(rec);
  defer(l);
}
