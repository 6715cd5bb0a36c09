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
 *     origin now (rule 2). So is the connector endpoint's (its initialize
 *     refused by job_session_create, endpoint.c, for the same reasons, or
 *     never stored: its client gone), and the capability probe's (probe.c),
 *     which ends its own as soon as it has the answer.
 *  7. A session the gateway deletes on its own ends what it holds upstream: a
 *     user cut (deactivated or deleted over SCIM, blocked by an admin, signed
 *     out everywhere), a connector a policy PUT or a membership change hides
 *     from its person (revoke.c's cut, and each step of its sweep), the
 *     per-user cap's eviction, the expiry purge, a deleted tenant's purge. The
 *     deleting write passes a collector (gw_usess_col, a gw_session_gone_fn of
 *     mcp_session.h) told of each upstream session id as it goes; it reads, in
 *     that write, the connector's record, real URL and credential — the shared
 *     one, or the session's person's own — as they are now, once per connector
 *     and person. That is what opened the session: a change of server or
 *     credential cuts, in its own write, every id opened before it (rule 1),
 *     and no id opened with an older binding is stored after it (job_usess;
 *     job_session_create, rule 6). Sent after the commit as rule 4 says; a
 *     rolled back write discards it. Bounded on top of the write's own bound
 *     (a user's sessions, a cut step, a purge step): GW_USESS_END_MAX DELETEs
 *     and GW_USESS_END_READS credential reads per write, the rest counted as
 *     dropped. A change that rule 1's hook collects (a move, rekey or delete;
 *     a person's new or removed credential) deletes without a collector: the
 *     credential read then would be the new one.
 *  8. A deactivation is never slowed nor refused by it: nothing the
 *     collector meets fails the write (no record, URL, credential or
 *     memory: that session is dropped), its reads are the few above, and
 *     the DELETEs go after the commit, which the SCIM reply does not wait
 *     for. A person's own OAuth grant is revoked by the same cut (vault's
 *     durable queue, RFC 7009): the sessions' hook runs before vault's
 *     (gateway/modules.c), so the access token is read before the grant
 *     goes, and the DELETE goes regardless of the revocation — neither
 *     waits for the other. An upstream that took the revocation first
 *     refuses it (counted refused) and expires the session; the token goes
 *     nowhere else (rule 1) and is wiped with the batch (rule 5). A deleted
 *     tenant's grants are purged after its sessions: the same.
 * Not ended here, and why:
 *  - a client's DELETE of its gateway session: the flows end its upstream
 *    sessions themselves (agg.c's end_upstreams, each checked against its
 *    binding by the upcall; endpoint.c forwards the connector endpoint's),
 *    so collecting them too would end them twice;
 *  - what the offline CLI deletes (no loop to send from: no collector);
 *  - an upstream session whose id the gateway never learned (its opening
 *    transfer cut before the answer: a revocation ending the exchange);
 *  - past the caps above, or with DELETEs waiting when a loop stops.
 * Threading: the hooks and the collector on the writer thread; everything
 * else on the loop that holds the batch. */
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

size_t gw__usess_end_count(const gw_usess_end *b) { return b->n; }

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
                   .fair_key = b->tenant,
                   .budget_class = GW_OUT_BUDGET_GATEWAY,
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
  size_t reads;     /* the people's credentials read (at most GW_USESS_END_READS) */
  int64_t now_s;
} ending_walk;

static bool on_upstream(void *ctx, const char *user, const char *upstream, const char *version) {
  ending_walk *w = ctx;
  int cred = w->shared;
  if (w->per_user) {
    /* the "u" index is in user order: one read per person */
    if (!w->have_user || strcmp(w->user, user)) {
      /* bounded as a collector is (rule 7): past GW_USESS_END_MAX DELETEs
       * or GW_USESS_END_READS people nothing more is unsealed in the
       * writer's txn nor kept in memory — those sessions expire upstream
       * (counted as dropped by gw__usess_end_add: no credential) */
      w->user_cred = -1;
      if (w->reads < GW_USESS_END_READS && gw__usess_end_count(w->b) < GW_USESS_END_MAX) {
        vault_cred c = {0};
        w->reads++;
        int rc = vault_upstream_cred(w->txn, w->ev->tenant, w->ev->connector, user, w->rec, w->now_s, &c);
        w->user_cred = rc ? -1 : gw__usess_end_cred(w->b, &c);
        vault_cred_free(&c);
      }
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

void gw__usess_end_opened(gw_exchange *x) { gw__usess_end_opened_id(x, x->sess.upstream, x->sess.version); }

void gw__usess_end_opened_id(gw_exchange *x, const char *upstream, const char *version) {
  gw_usess_end *b = x->opening;
  x->opening = NULL;
  if (!b || !upstream || !upstream[0] || !x->lp) {
    gw__usess_end_free(b);
    return;
  }
  /* still the connector's origin (or the connector is gone: a deleted
   * one's sessions end too) — never another server's (rule 2) */
  bool there = false;
  st_txn *txn;
  if (gw__read_begin(x->lp, &txn) == 0) {
    json_t *rec = NULL;
    int rc = gw__connector_get(x->lp, txn, x->tenant, x->connector, &rec, NULL);
    there = rc == ST_ENOTFOUND || (rc == 0 && vault_url_same_origin(b->url, json_string_value(json_object_get(rec, "url"))));
    json_decref(rec);
    gw__read_end(x->lp, txn);
  }
  if (!there || !gw__usess_end_add(b, upstream, version, 0)) {
    gw__usess_end_free(b);
    return;
  }
  gw__usess_end_send(x->lp, b);
}

/* ---------- what a write deletes (rules 7 and 8) ---------- */

typedef struct col_user {
  char user[40];
  int cred; /* index in the batch, -1: none to end with */
} col_user;

/* One connector of one tenant: its batch, and what was read for it. */
typedef struct col_conn {
  char tenant[64], connector[40];
  gw_usess_end *b; /* NULL: nothing of it can be ended (no record or URL) */
  json_t *rec;     /* the record read, for the persons' credentials */
  bool per_user;
  int shared;      /* the shared credential's index, -1: none */
  col_user *users; /* per-user: each person's credential, read once */
  size_t nusers, capusers;
} col_conn;

struct gw_usess_col {
  gw_server *srv;
  col_conn *v;
  size_t n, cap;
  size_t items, reads;
  size_t dropped; /* not in any batch: no connector to end them at, past a cap, no memory */
  int64_t now_s;
};

gw_usess_col *gw__usess_col_new(gw_server *srv) {
  if (!srv) return NULL;
  gw_usess_col *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->srv = srv;
  c->now_s = (int64_t)time(NULL);
  return c;
}

static void col_free(gw_usess_col *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) {
    gw__usess_end_free(c->v[i].b);
    json_decref(c->v[i].rec);
    free(c->v[i].users);
  }
  free(c->v);
  free(c);
}

static col_conn *col_find(gw_usess_col *c, const char *tenant, const char *connector) {
  for (size_t i = 0; i < c->n; i++)
    if (!strcmp(c->v[i].connector, connector) && !strcmp(c->v[i].tenant, tenant)) return &c->v[i];
  return NULL;
}

/* A new entry for the connector, read in txn (its record, real URL and
 * shared credential); NULL without memory. */
static col_conn *col_conn_new(gw_usess_col *c, st_txn *txn, const char *tenant, const char *connector) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 4;
    col_conn *v = realloc(c->v, cap * sizeof *v);
    if (!v) return NULL;
    c->v = v;
    c->cap = cap;
  }
  col_conn *e = &c->v[c->n++];
  memset(e, 0, sizeof *e);
  gw_strlcpy(e->tenant, tenant, sizeof e->tenant);
  gw_strlcpy(e->connector, connector, sizeof e->connector);
  e->shared = -1;
  const char *url = NULL;
  char *sealed = NULL;
  c->reads++;
  /* a connector that cannot be read ends nothing (its sessions expire
   * upstream), and fails nothing */
  if (vault_connector_get(txn, tenant, connector, &e->rec) == 0 &&
      vault_connector_url(txn, tenant, connector, e->rec, &url, &sealed) == 0)
    e->b = gw__usess_end_new(tenant, connector, url, e->rec);
  vault_secret_free(sealed);
  if (!e->b) return e;
  e->per_user = vault_connector_is_per_user(e->rec);
  if (!e->per_user) {
    vault_cred cr = {0};
    if (vault_upstream_cred(txn, tenant, connector, NULL, e->rec, c->now_s, &cr) == 0) e->shared = gw__usess_end_cred(e->b, &cr);
    vault_cred_free(&cr);
  }
  return e;
}

/* The person's own credential for e, read once (rule 3: none, none sent). */
static int col_user_cred(gw_usess_col *c, col_conn *e, st_txn *txn, const char *user) {
  for (size_t i = 0; i < e->nusers; i++)
    if (!strcmp(e->users[i].user, user)) return e->users[i].cred;
  if (c->reads >= GW_USESS_END_READS) return -1;
  if (e->nusers == e->capusers) {
    size_t cap = e->capusers ? 2 * e->capusers : 4;
    col_user *u = realloc(e->users, cap * sizeof *u);
    if (!u) return -1;
    e->users = u;
    e->capusers = cap;
  }
  col_user *u = &e->users[e->nusers++];
  gw_strlcpy(u->user, user, sizeof u->user);
  vault_cred cr = {0};
  c->reads++;
  u->cred = vault_upstream_cred(txn, e->tenant, e->connector, user, e->rec, c->now_s, &cr) == 0 ? gw__usess_end_cred(e->b, &cr) : -1;
  vault_cred_free(&cr);
  return u->cred;
}

void gw__usess_col_add(void *col, st_txn *txn, const char *tenant, const char *user, const char *connector,
                       const char *upstream, const char *version) {
  gw_usess_col *c = col;
  if (!c || !upstream || !upstream[0]) return;
  /* past a cap nothing more is read: left to expire upstream */
  col_conn *e = c->items < GW_USESS_END_MAX ? col_find(c, tenant, connector) : NULL;
  if (!e && c->items < GW_USESS_END_MAX && c->reads < GW_USESS_END_READS) e = col_conn_new(c, txn, tenant, connector);
  if (!e || !e->b) {
    c->dropped++;
    return;
  }
  int cred = e->per_user ? col_user_cred(c, e, txn, user) : e->shared;
  if (gw__usess_end_add(e->b, upstream, version, cred)) c->items++; /* else counted as dropped by the batch */
}

static void col_after_commit(void *arg) {
  gw_usess_col *c = arg;
  gw_mcp_shared *sh = c->srv->mcp;
  if (sh) count(&sh->usess_dropped, c->dropped);
  for (size_t i = 0; i < c->n; i++) {
    gw_usess_end *b = c->v[i].b;
    c->v[i].b = NULL;
    if (b && (b->n || b->dropped)) gw__usess_end_post(c->srv, b);
    else gw__usess_end_free(b);
  }
  col_free(c);
}

static void col_discard(void *arg) { col_free(arg); }

void gw__usess_col_done(gw_usess_col *c, st_txn *txn) {
  if (!c) return;
  bool any = c->dropped > 0;
  for (size_t i = 0; i < c->n && !any; i++) any = c->v[i].b && (c->v[i].b->n || c->v[i].b->dropped);
  if (!any || st_txn_after_commit(txn, col_after_commit, col_discard, c) != 0) col_free(c);
}
