/* gateway/mcp/usess_end.c — upstream sessions the gateway stops using,
 * ended at their server with an HTTP DELETE (see usess_end.h).
 *
 * Rules this file keeps, and why:
 *
 *  1. A DELETE carries the credential the session was opened with, to the
 *     URL that credential was given for, and nothing else. An upstream
 *     knows a session as whoever initialized it: a DELETE under another
 *     credential would be refused, or — another upstream account after a
 *     reconnect — speak for someone else. So what a change retires is read
 *     before the change, in its own write (ST_EVENT_CREDENTIAL_ENDING,
 *     vault.h): the connector's record, real URL and shared credential, or
 *     the person's grant, as they were.
 *  2. Never at another origin. A connector moved to another scheme, host or
 *     port (vault_ending_event.elsewhere) gets nothing more sent to its old
 *     server — the admin moved it away from there (it may be gone, or was
 *     never the right one) —, not even a DELETE, and the new server never
 *     hears an old id. Its sessions are left to expire there. A move within
 *     the origin (another path, another query key) is ended at the old URL
 *     with the old credential, as a rekey is.
 *  3. A credential already gone is not replaced. A session whose
 *     credential cannot be read at the change — an OAuth access token
 *     expired (or within 10 s of it), a grant the authorization server
 *     ended earlier (invalid_grant drops it without ending its sessions),
 *     a shared secret that does not unseal — is left to expire at the
 *     upstream: a DELETE without it would be refused, and the person's new
 *     credential may be another upstream account, which has no business
 *     ending (or learning the ids of) the old one's sessions. Counted as
 *     dropped.
 *  4. After the commit, never inside it: the write only collects (bounded:
 *     GW_USESS_END_MAX per trigger; the walk is the one the cut does
 *     anyway), and its after-commit hands the batch to a loop; a rolled
 *     back write discards it (wiped). The DELETEs are fire and forget: at
 *     most INFLIGHT_MAX at once per loop, GW_USESS_END_QUEUE waiting; the
 *     answer's head is all that is read (its status, for the metrics), and
 *     its body is never waited for.
 *  5. Secrets (the credential lines, a URL with its sealed query) live in
 *     the batch only, are wiped when it goes, and are never logged: logs
 *     name the connector, the tenant and the URL's origin.
 *  6. A session the gateway has just opened and cannot keep (the write
 *     storing it refused it: the binding changed meanwhile, the connector
 *     was cut or deleted; or its opening could not be completed) is ended
 *     the same way, with what its opening transfer kept (x->opening: the
 *     credential and URL it went with) — checked against the connector's
 *     origin now (rule 2).
 * Threading: the hook on the writer thread; everything else on the loop
 * that holds the batch. */
#include "gateway/mcp/usess_end.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

#define INFLIGHT_MAX 8

typedef struct end_item {
  char upstream[256];
  char version[32];
  int cred;
} end_item;

struct gw_usess_end {
  gw_usess_end *next; /* a loop's queue */
  gw_server *srv;     /* a store hook's batch: where its after-commit posts it */
  int refs;           /* the holder (queue or creator) + DELETEs in flight */
  char tenant[64], connector[40];
  char *url;          /* the real URL: wiped */
  char *ca_file;
  long connect_ms, first_byte_ms;
  char **lines;       /* credential header lines, NULL: none sent; wiped */
  size_t nlines;
  end_item *items;
  size_t n, cap, sent;
  size_t dropped;     /* not added: past the cap, no memory, no credential */
};

typedef struct gw_usess_ender {
  gw_loop *lp;
  gw_mcp_shared *sh;
  gw_usess_end *head, *tail; /* batches with DELETEs not started */
  size_t queued;             /* their DELETEs not started */
  size_t inflight;
  int refs;                  /* 1 (the loop) + DELETEs in flight */
  bool stopping;
} gw_usess_ender;

typedef struct end_req {
  gw_usess_ender *n;
  gw_usess_end *b;
  int status;
} end_req;

static void wipe(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

/* ---------- batches ---------- */

gw_usess_end *gw__usess_end_new(const char *tenant, const char *connector, const char *url, const json_t *rec) {
  gw_usess_end *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->refs = 1;
  gw_strlcpy(b->tenant, tenant, sizeof b->tenant);
  gw_strlcpy(b->connector, connector, sizeof b->connector);
  b->url = url ? strdup(url) : NULL;
  const char *ca = json_string_value(json_object_get(rec, "ca_file"));
  b->ca_file = ca ? strdup(ca) : NULL;
  json_t *to = json_object_get(rec, "timeouts");
  b->connect_ms = (long)json_integer_value(json_object_get(to, "connect_ms"));
  b->first_byte_ms = (long)json_integer_value(json_object_get(to, "first_byte_ms"));
  if (!b->url || (ca && !b->ca_file)) {
    gw__usess_end_free(b);
    return NULL;
  }
  return b;
}

int gw__usess_end_cred(gw_usess_end *b, const vault_cred *c) {
  char **l = realloc(b->lines, (b->nlines + 1) * sizeof *l);
  if (!l) return -1;
  b->lines = l;
  char *line = NULL;
  if (c && c->name && c->value) {
    size_t n = strlen(c->name) + strlen(c->value) + 3;
    if (!(line = malloc(n))) return -1;
    gw_strjoin(line, n, c->name, ": ", c->value, NULL);
  }
  b->lines[b->nlines] = line;
  return (int)b->nlines++;
}

bool gw__usess_end_add(gw_usess_end *b, const char *upstream, const char *version, int cred) {
  if (!upstream || !upstream[0] || cred < 0 || (size_t)cred >= b->nlines || strlen(upstream) >= sizeof b->items->upstream ||
      b->n >= GW_USESS_END_MAX) {
    b->dropped++;
    return false;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 4;
    end_item *it = realloc(b->items, cap * sizeof *it);
    if (!it) {
      b->dropped++;
      return false;
    }
    b->items = it;
    b->cap = cap;
  }
  end_item *e = &b->items[b->n++];
  gw_strlcpy(e->upstream, upstream, sizeof e->upstream);
  gw_strlcpy(e->version, version ? version : "", sizeof e->version);
  e->cred = cred;
  return true;
}

gw_usess_end *gw__usess_end_next(const gw_usess_end *b) { return b->next; }

void gw__usess_end_free(gw_usess_end *b) {
  if (!b) return;
  wipe(b->url);
  for (size_t i = 0; i < b->nlines; i++) wipe(b->lines[i]);
  free(b->lines);
  free(b->ca_file);
  free(b->items);
  free(b);
}

static void batch_unref(gw_usess_end *b) {
  if (--b->refs == 0) gw__usess_end_free(b);
}

/* scheme://host[:port] of url: what logs may show of it */
static void url_origin(const char *url, char *out, size_t cap) {
  const char *host = strstr(url, "://");
  size_t scheme = host ? (size_t)(host + 3 - url) : 0;
  host = host ? host + 3 : url;
  snprintf(out, cap, "%.*s%.*s", (int)scheme, url, (int)strcspn(host, "/?#"), host);
}

/* ---------- the sender (one per loop) ---------- */

static void ender_unref(gw_usess_ender *n) {
  if (--n->refs == 0) free(n);
}

static void count(_Atomic uint64_t *c, size_t k) {
  if (k) atomic_fetch_add_explicit(c, k, memory_order_relaxed);
}

static void pump(gw_usess_ender *n);

static void on_headers(gw_out_req *r, int status, const gw_out_header *h, size_t nh, void *ud) {
  (void)h, (void)nh;
  ((end_req *)ud)->status = status;
  gw_out_abort(r); /* the status is all we read */
}

static void on_done(gw_out_req *r, int err, void *ud) {
  end_req *q = ud;
  gw_usess_ender *n = q->n;
  (void)r;
  (void)err;
  /* 404: the upstream no longer knows it — ended all the same */
  if (q->status >= 200 && q->status < 300) count(&n->sh->usess_ended, 1);
  else if (q->status == 404) count(&n->sh->usess_ended, 1);
  else if (q->status > 0) count(&n->sh->usess_refused, 1);
  else count(&n->sh->usess_failed, 1);
  if (q->status > 0 && q->status != 404 && (q->status < 200 || q->status >= 300)) {
    char origin[300];
    url_origin(q->b->url, origin, sizeof origin);
    GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){q->b->tenant, NULL}),
           "connector %s: %s answered HTTP %d to the DELETE of an upstream session the gateway no longer uses",
           q->b->connector, origin, q->status);
  }
  batch_unref(q->b);
  free(q);
  n->inflight--;
  pump(n);
  ender_unref(n);
}

static void start_one(gw_usess_ender *n, gw_usess_end *b, const end_item *e) {
  const char *lines[6];
  int nl = 0;
  char sid[16 + 256], ver[22 + 32];
  lines[nl++] = "Accept: application/json, text/event-stream";
  gw_strjoin(sid, sizeof sid, "Mcp-Session-Id: ", e->upstream, NULL);
  lines[nl++] = sid;
  if (e->version[0]) {
    gw_strjoin(ver, sizeof ver, "MCP-Protocol-Version: ", e->version, NULL);
    lines[nl++] = ver;
  }
  lines[nl++] = "User-Agent: mcpgate";
  if (b->lines[e->cred]) lines[nl++] = b->lines[e->cred];
  lines[nl] = NULL;
  end_req *q = calloc(1, sizeof *q);
  if (!q) {
    count(&n->sh->usess_dropped, 1);
    return;
  }
  q->n = n;
  q->b = b;
  /* a ca_file in the tenant's folder of tenant_ca_dir stays inside it, as
   * for every transfer of the connector (upcall.c) */
  char ca_root[PATH_MAX];
  bool in_root = b->ca_file && gw_config_tenant_ca_path(&n->lp->srv->cfg, b->tenant, b->ca_file, ca_root, sizeof ca_root);
  gw_out_opts o = {.method = "DELETE",
                   .url = b->url,
                   .headers = lines,
                   .connect_timeout_ms = b->connect_ms,
                   .first_byte_timeout_ms = b->first_byte_ms,
                   .ca_file = b->ca_file,
                   .ca_root = in_root ? ca_root : NULL,
                   .egress = GW_OUT_EGRESS_ADMIN, /* a tenant admin chose this URL: egress_allow applies */
                   .on_headers = on_headers,
                   .on_done = on_done,
                   .ud = q};
  gw_out_req *r = NULL;
  int rc = gw_out_start(n->lp->out, &o, &r);
  if (rc) {
    count(&n->sh->usess_failed, 1);
    free(q);
    return;
  }
  b->refs++;
  n->refs++;
  n->inflight++;
}

static void pump(gw_usess_ender *n) {
  while (!n->stopping && n->lp->out && n->inflight < INFLIGHT_MAX && n->head) {
    gw_usess_end *b = n->head;
    if (b->sent < b->n) {
      n->queued--;
      start_one(n, b, &b->items[b->sent++]);
    }
    if (b->sent >= b->n) { /* all started: the queue's hold goes */
      n->head = b->next;
      if (!n->head) n->tail = NULL;
      batch_unref(b);
    }
  }
}

void gw__usess_end_send(gw_loop *lp, gw_usess_end *b) {
  if (!b) return;
  gw_proxy *p = gw__mcp_of(lp);
  gw_usess_ender *n = p ? p->ender : NULL;
  gw_mcp_shared *sh = lp->srv->mcp;
  count(&sh->usess_dropped, b->dropped);
  if (!n || n->stopping) { /* the loop is stopping: left to expire */
    count(&sh->usess_dropped, b->n);
    batch_unref(b);
    return;
  }
  size_t keep = b->n;
  if (n->queued + keep > GW_USESS_END_QUEUE) keep = GW_USESS_END_QUEUE - n->queued;
  if (keep < b->n) {
    count(&sh->usess_dropped, b->n - keep);
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){b->tenant, NULL}),
           "connector %s: %zu upstream session(s) the gateway no longer uses are left to expire at the upstream "
           "(this loop already has %d DELETEs waiting)",
           b->connector, b->n - keep, GW_USESS_END_QUEUE);
    b->n = keep;
  }
  if (!b->n) {
    batch_unref(b);
    return;
  }
  b->next = NULL;
  if (n->tail) n->tail->next = b;
  else n->head = b;
  n->tail = b;
  n->queued += b->n;
  pump(n);
}

int gw__usess_ender_start(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  gw_usess_ender *n = calloc(1, sizeof *n);
  if (!p || !n) {
    free(n);
    return -1;
  }
  n->lp = lp;
  n->sh = lp->srv->mcp;
  n->refs = 1;
  p->ender = n;
  return 0;
}

void gw__usess_ender_stop(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  gw_usess_ender *n = p ? p->ender : NULL;
  if (!n) return;
  p->ender = NULL;
  n->stopping = true;
  /* waiting DELETEs are not sent (the upstream expires those sessions);
   * those in flight end with the engine (their on_done) */
  count(&n->sh->usess_dropped, n->queued);
  for (gw_usess_end *b = n->head, *next; b; b = next) {
    next = b->next;
    batch_unref(b);
  }
  n->head = n->tail = NULL;
  n->queued = 0;
  ender_unref(n);
}

/* ---------- from the writer: after the commit, to a loop ---------- */

void gw__usess_end_post(gw_server *srv, gw_usess_end *b) {
  if (!b) return;
  gw_mcp_shared *sh = srv ? srv->mcp : NULL;
  char origin[300];
  url_origin(b->url, origin, sizeof origin);
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){b->tenant, NULL}),
         "connector %s: ending %zu upstream session(s) the gateway no longer uses at %s, with the credentials that "
         "opened them; %zu left to expire there (no credential left to end them with, or too many)",
         b->connector, b->n, origin, b->dropped);
  if (!sh) {
    gw__usess_end_free(b);
    return;
  }
  uv_mutex_lock(&sh->fan_mu);
  gw_proxy *p = sh->loops; /* any loop will do */
  if (p) {
    b->next = p->ends_in;
    p->ends_in = b;
    uv_async_send(&p->async);
  }
  uv_mutex_unlock(&sh->fan_mu);
  if (!p) {
    count(&sh->usess_dropped, b->n + b->dropped);
    gw__usess_end_free(b);
  }
}

void gw__usess_end_take(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  gw_mcp_shared *sh = lp->srv->mcp;
  if (!p || !sh) return;
  uv_mutex_lock(&sh->fan_mu);
  gw_usess_end *list = p->ends_in;
  p->ends_in = NULL;
  uv_mutex_unlock(&sh->fan_mu);
  /* pushed at the head: sent in the order they came */
  gw_usess_end *rev = NULL;
  while (list) {
    gw_usess_end *next = list->next;
    list->next = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    gw_usess_end *next = rev->next;
    gw__usess_end_send(lp, rev);
    rev = next;
  }
}

/* ---------- the store hook: what a change retires (rules 1-4) ---------- */

typedef struct ending_walk {
  st_txn *txn;
  const vault_ending_event *ev;
  const json_t *rec;
  gw_usess_end *b;
  bool per_user;
  int shared;       /* the shared credential's index (not per-user), or -1 */
  char user[40];    /* the last user whose credential was read (per-user) */
  int user_cred;    /* ... its index, or -1: none to end with */
  bool have_user;
  int64_t now_s;
} ending_walk;

static bool on_upstream(void *ctx, const char *user, const char *upstream, const char *version) {
  ending_walk *w = ctx;
  int cred = w->shared;
  if (w->per_user) {
    /* the "u" index is in user order: one read per person */
    if (!w->have_user || strcmp(w->user, user)) {
      vault_cred c = {0};
      int rc = vault_upstream_cred(w->txn, w->ev->tenant, w->ev->connector, user, w->rec, w->now_s, &c);
      w->user_cred = rc ? -1 : gw__usess_end_cred(w->b, &c);
      vault_cred_free(&c);
      gw_strlcpy(w->user, user, sizeof w->user);
      w->have_user = true;
    }
    cred = w->user_cred;
  }
  gw__usess_end_add(w->b, upstream, version, cred); /* past the cap or without a credential: counted */
  return true;
}

static void after_commit(void *arg) {
  gw_usess_end *b = arg;
  gw__usess_end_post(b->srv, b);
}

static void discard(void *arg) { gw__usess_end_free(arg); }

int gw__usess_on_ending(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_ending_event *ev = event;
  (void)kind;
  if (ev->elsewhere) return 0; /* rule 2 */
  json_t *rec = NULL;
  const char *url = NULL;
  char *sealed = NULL;
  gw_usess_end *b = NULL;
  /* what cannot be read ends nothing, and fails nothing: the change must
   * commit (its cut is what stops the old sessions being used) */
  int rc = vault_connector_get(txn, ev->tenant, ev->connector, &rec);
  if (rc == 0) rc = vault_connector_url(txn, ev->tenant, ev->connector, rec, &url, &sealed);
  if (rc == 0 && !(b = gw__usess_end_new(ev->tenant, ev->connector, url, rec))) rc = ST_ENOMEM;
  vault_secret_free(sealed);
  if (rc) {
    json_decref(rec);
    return 0;
  }
  ending_walk w = {.txn = txn, .ev = ev, .rec = rec, .b = b, .shared = -1, .user_cred = -1,
                   .now_s = (int64_t)time(NULL)};
  w.per_user = vault_connector_is_per_user(rec);
  if (!w.per_user) {
    vault_cred c = {0};
    if (vault_upstream_cred(txn, ev->tenant, ev->connector, NULL, rec, w.now_s, &c) == 0)
      w.shared = gw__usess_end_cred(b, &c);
    vault_cred_free(&c);
  }
  rc = gw_sessions_upstreams_of(txn, ev->tenant, ev->user, ev->connector, on_upstream, &w);
  json_decref(rec);
  if (rc || (!b->n && !b->dropped)) {
    gw__usess_end_free(b);
    return 0;
  }
  b->srv = ctx;
  if (st_txn_after_commit(txn, after_commit, discard, b) != 0) gw__usess_end_free(b);
  return 0;
}

/* ---------- a session just opened and not kept (rule 6) ---------- */

void gw__usess_keep_opener(gw_exchange *x, const char *url, const json_t *rec, const vault_cred *c) {
  gw__usess_end_free(x->opening);
  x->opening = gw__usess_end_new(x->tenant, x->connector, url, rec);
  if (x->opening && gw__usess_end_cred(x->opening, c) != 0) {
    gw__usess_end_free(x->opening);
    x->opening = NULL;
  }
}

void gw__usess_forget_opener(gw_exchange *x) {
  gw__usess_end_free(x->opening);
  x->opening = NULL;
}

void gw__usess_end_opened(gw_exchange *x) {
  gw_usess_end *b = x->opening;
  x->opening = NULL;
  if (!b || !x->sess.upstream[0] || !x->lp) {
    gw__usess_end_free(b);
    return;
  }
  /* still the connector's origin (or the connector is gone: a deleted
   * one's sessions end too) — never another server's (rule 2) */
  bool there = false;
  st_txn *txn;
  if (gw__read_begin(x->lp, &txn) == 0) {
    json_t *rec = NULL;
    int rc = gw__connector_get(x->lp, txn, x->tenant, x->connector, &rec);
    there = rc == ST_ENOTFOUND || (rc == 0 && vault_url_same_origin(b->url, json_string_value(json_object_get(rec, "url"))));
    json_decref(rec);
    gw__read_end(x->lp, txn);
  }
  if (!there || !gw__usess_end_add(b, x->sess.upstream, x->sess.version, 0)) {
    gw__usess_end_free(b);
    return;
  }
  gw__usess_end_send(x->lp, b);
}
