/* gateway/mcp/ap_notify.c — the approval webhook (issue 23): when a call
 * is held and its approval request stored, the tenant's
 * approval_webhook_url gets one POST of Slack-compatible incoming-webhook
 * JSON {"text": "…"} naming the requester, the tool, the connector, a
 * short summary of the (redacted) arguments, the request id and the
 * reviewers' page. Private to gateway/mcp/ (declared in decide.h).
 *
 * Rules this file keeps, and why:
 *  - Never on the call's path: held.c hands the text over and goes on; the
 *    POST runs on the loop's outbound engine, and nothing of the call
 *    waits for it, fails with it or learns about it.
 *  - A small per-loop queue (AN_QUEUE_MAX notes alive: waiting, in flight
 *    or backing off; AN_INFLIGHT_MAX POSTs at once, besides each tenant's
 *    first): past it a note is
 *    dropped and counted (mcpgate_approval_webhook_notifications_total
 *    {result="dropped"}), never queued without bound.
 *  - The queue is shared by every tenant, so one tenant gets at most
 *    AN_TENANT_MAX notes alive and AN_TENANT_INFLIGHT POSTs at once, and
 *    when the queue is full the tenant holding the most gives up its
 *    oldest waiting note for a tenant holding fewer (make_room): tenants
 *    whose webhooks hang (their admins' choice, like their approval
 *    timeouts) cannot keep another tenant's reviewers from being told.
 *  - Within a tenant, requesters share alike: a note whose request is no
 *    longer pending when its POST is due (cancelled, decided, expired) is
 *    dropped unsent, and when the tenant's share is full such notes go
 *    first, then the oldest waiting note of the requester holding the most
 *    (if they hold more than the newcomer's requester + 1): found by
 *    review, one employee making held calls and ending their session in a
 *    loop (each DELETE cancels its requests) filled the tenant's queue, and
 *    a colleague's genuine request was never told.
 *  - Retried AN_RETRIES times (1 s, 2 s, 4 s) on a network error, a 5xx or
 *    a 429; any other non-2xx is final (the URL is wrong: retrying will
 *    not fix it). Each POST is cut after AN_POST_MAX_MS whatever it does;
 *    redirects are never followed (the engine's rule); the answer's body
 *    is discarded, and a receiver sending more than AN_ANSWER_MAX is cut.
 *  - Egress at the admin level (GW_OUT_EGRESS_ADMIN), checked on the
 *    connected address like every URL a tenant admin sets.
 *  - The URL is a secret (a Slack webhook URL is its own credential): logs
 *    show scheme://host only, never its path, query or user info
 *    (st_url_origin; user info is refused when the URL is set).
 *  - Lifetime: the notifier is freed when its timer closed and the last
 *    POST's on_done ran (gw_out_close aborts them after the loop stops). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/mcp/audit_log.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/out/outbound.h"
#include "policy/approval.h"
#include "store/url_query.h"

#define AN_QUEUE_MAX 64
#define AN_INFLIGHT_MAX 4
#define AN_TENANT_MAX 16     /* notes alive of one tenant */
#define AN_TENANT_INFLIGHT 2 /* POSTs at once of one tenant */
#define AN_RETRIES 3
#define AN_BACKOFF_FIRST_MS 1000
#define AN_POST_MAX_MS 10000
#define AN_ANSWER_MAX (16 * 1024)

typedef struct an_note {
  struct an_note *next;
  gw_ap_notify *n;
  char *url, *body;
  size_t len;
  char tenant[64], id[40], user[40];
  char tenant_uid[ST_TENANT_UID_LEN + 1]; /* its audit chain ("": none) */
  int attempts;       /* POSTs made */
  uint64_t due;       /* uv_now: not before (a back-off) */
  uint64_t started;   /* uv_now when the POST in flight began */
  gw_out_req *req;    /* the POST in flight, or NULL */
  int status;
  size_t answer;
  bool cut;           /* aborted by us: too long, or too much answer */
} an_note;

struct gw_ap_notify {
  gw_loop *lp;
  gw_mcp_shared *sh;
  uv_timer_t timer;
  an_note *notes; /* every note alive */
  size_t n, inflight;
  int refs;       /* 1 (the timer) + the POSTs in flight */
  bool stopping;
};

/* scheme://host[:port] of url: what logs and the audit may show of it
 * (store/url_query.h: never a part of user information, even one a '?'
 * hides in a URL stored before such URLs were refused) */
static void url_origin(const char *url, char *out, size_t cap) { st_url_origin(url, out, cap); }

static void note_free(an_note *e) {
  free(e->url);
  free(e->body);
  free(e);
}

static void unlink_note(gw_ap_notify *n, an_note *e) {
  for (an_note **pp = &n->notes; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      n->n--;
      return;
    }
}

static void unref(gw_ap_notify *n) {
  if (--n->refs == 0) free(n);
}

static void pump(gw_ap_notify *n);

/* The notes of tenant alive, and how many of them are in flight. */
static size_t tenant_notes(const gw_ap_notify *n, const char *tenant, size_t *inflight) {
  size_t alive = 0;
  *inflight = 0;
  for (const an_note *e = n->notes; e; e = e->next)
    if (!strcmp(e->tenant, tenant)) {
      alive++;
      if (e->req) (*inflight)++;
    }
  return alive;
}

/* The notes of tenant's requester user alive. */
static size_t user_notes(const gw_ap_notify *n, const char *tenant, const char *user) {
  size_t k = 0;
  for (const an_note *e = n->notes; e; e = e->next) k += !strcmp(e->tenant, tenant) && !strcmp(e->user, user);
  return k;
}

/* Whether e's request is still pending (an unreadable store: yes, sent). */
static bool still_pending(gw_ap_notify *n, const an_note *e) {
  st_txn *txn;
  if (gw__read_begin(n->lp, &txn) != 0) return true;
  json_t *rec = NULL;
  int rc = ap_request_get(txn, e->tenant, e->id, gw_wall_ms(), &rec);
  bool pending = rc != 0 || !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending");
  json_decref(rec);
  gw__read_end(n->lp, txn);
  return rc == ST_ENOTFOUND ? false : pending;
}

static void on_headers(gw_out_req *r, int status, const gw_out_header *h, size_t nh, void *ud) {
  (void)r, (void)h, (void)nh;
  ((an_note *)ud)->status = status;
}

static int on_data(gw_out_req *r, const char *p, size_t len, void *ud) {
  (void)p;
  an_note *e = ud;
  e->answer += len;
  if (e->answer > AN_ANSWER_MAX && !e->cut) {
    e->cut = true;
    gw_out_abort(r);
  }
  return 0;
}

static void on_done(gw_out_req *r, int err, void *ud) {
  an_note *e = ud;
  gw_ap_notify *n = e->n;
  e->req = NULL;
  n->inflight--;
  if (n->stopping) { /* unlinked at stop */
    note_free(e);
    unref(n);
    return;
  }
  /* cut after a 2xx head (a receiver that talks too much): delivered */
  if (e->cut && err == GW_OUT_EABORTED && e->status >= 200 && e->status <= 299) err = 0;
  char origin[300];
  url_origin(e->url, origin, sizeof origin);
  gw_log_ctx lc = {e->tenant, NULL};
  if (!err && e->status >= 200 && e->status <= 299) {
    atomic_fetch_add(&n->sh->hook_ok, 1);
    GW_LOG(GW_LOG_DEBUG, "approvals", &lc, "approval request %s: webhook %s notified", e->id, origin);
  } else {
    char why[300];
    if (err && e->cut) snprintf(why, sizeof why, "no answer within %d s", AN_POST_MAX_MS / 1000);
    else if (err) {
      const char *det = gw_out_detail(r);
      snprintf(why, sizeof why, "%s%s%.200s", gw_out_strerror(err), *det ? ": " : "", det);
    } else snprintf(why, sizeof why, "HTTP %d", e->status);
    bool again = (err || e->status >= 500 || e->status == 429) && e->attempts <= AN_RETRIES;
    if (again) {
      uint64_t wait = (uint64_t)AN_BACKOFF_FIRST_MS << (e->attempts - 1);
      e->due = uv_now(&n->lp->loop) + wait;
      e->status = 0;
      e->answer = 0;
      e->cut = false;
      atomic_fetch_add(&n->sh->hook_retried, 1);
      GW_LOG(GW_LOG_WARN, "approvals", &lc, "approval request %s: webhook %s failed (%s); retrying in %llu s", e->id,
             origin, why, (unsigned long long)(wait / 1000));
      unref(n);
      pump(n);
      return;
    }
    atomic_fetch_add(&n->sh->hook_failed, 1);
    GW_LOG(GW_LOG_WARN, "approvals", &lc, "approval request %s: webhook %s failed (%s) after %d attempt(s); the "
           "reviewers were not notified", e->id, origin, why, e->attempts);
  }
  /* the step in the tenant's audit chain: reviewers told, or not */
  if (n->lp->srv->audit && e->tenant_uid[0]) {
    bool ok = !err && e->status >= 200 && e->status <= 299;
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:i}", "kind", "approval", "event", ok ? "notified" : "notify_failed",
                            "request", e->id, "webhook", origin, "attempts", e->attempts);
    if (rec) gw_audit_submit(n->lp->srv, e->tenant, e->tenant_uid, rec);
  }
  unlink_note(n, e);
  note_free(e);
  unref(n);
  pump(n);
}

static void on_timer(uv_timer_t *t) { pump(t->data); }

/* Starts what is due, cuts what ran too long, and sets the timer for the
 * next of either. */
static void pump(gw_ap_notify *n) {
  if (n->stopping || !n->lp->out) return;
  uint64_t now = uv_now(&n->lp->loop), next = UINT64_MAX;
  for (an_note *e = n->notes; e; e = e->next) {
    if (e->req) {
      uint64_t end = e->started + AN_POST_MAX_MS;
      if (now >= end && !e->cut) {
        e->cut = true;
        gw_out_abort(e->req); /* on_done later */
      } else if (end < next) next = end;
      continue;
    }
    if (e->due > now) {
      if (e->due < next) next = e->due;
      continue;
    }
    size_t busy;
    tenant_notes(n, e->tenant, &busy);
    if (busy >= AN_TENANT_INFLIGHT) continue; /* its tenant's next on_done pumps again */
    /* a tenant's first POST always starts (at most one per tenant with a
     * note alive: AN_QUEUE_MAX): two tenants whose webhooks hang would
     * otherwise hold every slot for AN_POST_MAX_MS at a time */
    if (busy > 0 && n->inflight >= AN_INFLIGHT_MAX) continue; /* the next on_done pumps again */
    if (!still_pending(n, e)) { /* decided, cancelled or expired meanwhile: nobody needs telling */
      atomic_fetch_add(&n->sh->hook_dropped, 1);
      GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){e->tenant, NULL}),
             "approval request %s is no longer pending: its webhook notification is not sent", e->id);
      e->due = UINT64_MAX; /* swept below */
      continue;
    }
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    gw_out_opts o = {.method = "POST",
                     .url = e->url,
                     .headers = headers,
                     .body = e->body,
                     .body_len = e->len,
                     .connect_timeout_ms = AN_POST_MAX_MS,
                     .first_byte_timeout_ms = AN_POST_MAX_MS,
                     .idle_timeout_ms = AN_POST_MAX_MS,
                     .max_header_bytes = 16384,
                     .egress = GW_OUT_EGRESS_ADMIN,
                     .fair_key = e->tenant,
                     .budget_class = GW_OUT_BUDGET_GATEWAY,
                     .on_headers = on_headers,
                     .on_data = on_data,
                     .on_done = on_done,
                     .ud = e};
    e->attempts++;
    e->started = now;
    int rc = gw_out_start(n->lp->out, &o, &e->req);
    if (rc) { /* a URL the engine refuses (or no memory): final */
      char origin[300];
      url_origin(e->url, origin, sizeof origin);
      e->req = NULL;
      atomic_fetch_add(&n->sh->hook_failed, 1);
      GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){e->tenant, NULL}),
             "approval request %s: webhook %s cannot be called: %s", e->id, origin, gw_out_strerror(rc));
      e->due = UINT64_MAX; /* swept below */
      continue;
    }
    n->inflight++;
    n->refs++;
    uint64_t end = now + AN_POST_MAX_MS;
    if (end < next) next = end;
  }
  /* notes that could not start: gone */
  for (an_note **pp = &n->notes; *pp;) {
    an_note *e = *pp;
    if (!e->req && e->due == UINT64_MAX) {
      *pp = e->next;
      n->n--;
      note_free(e);
    } else pp = &e->next;
  }
  if (next == UINT64_MAX) uv_timer_stop(&n->timer);
  else uv_timer_start(&n->timer, on_timer, next > now ? next - now : 0, 0);
}

/* Drops the oldest note not in flight of tenant (of its requester user,
 * when not NULL), who holds `most`, to make room for another tenant's (or
 * requester's). Whether one was dropped (not when all are in flight). */
static bool drop_oldest(gw_ap_notify *n, const char *tenant, const char *user, size_t most) {
  for (an_note *e = n->notes; e; e = e->next) {
    if (e->req || strcmp(e->tenant, tenant) || (user && strcmp(e->user, user))) continue;
    atomic_fetch_add(&n->sh->hook_dropped, 1);
    GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){e->tenant, NULL}),
           "approval request %s: its webhook notification is dropped to make room for another %s's (this %s holds "
           "%zu of the %s's %d)", e->id, user ? "requester" : "tenant", user ? "requester" : "tenant", most,
           user ? "tenant" : "loop", user ? AN_TENANT_MAX : AN_QUEUE_MAX);
    unlink_note(n, e);
    note_free(e);
    return true;
  }
  return false;
}

/* The queue is full and the sender's tenant holds `mine` notes: the tenant holding the
 * most gives up its oldest note not in flight, if it holds more than
 * mine + 1 (four tenants whose webhooks hang would otherwise fill the
 * queue, AN_TENANT_MAX each, and every other tenant's notes would be
 * dropped). Whether room was made. */
static bool make_room(gw_ap_notify *n, size_t mine) {
  const an_note *big = NULL;
  size_t most = 0, busy;
  for (const an_note *e = n->notes; e; e = e->next) {
    size_t k = tenant_notes(n, e->tenant, &busy);
    if (k > most) most = k, big = e;
  }
  if (!big || most <= mine + 1) return false;
  return drop_oldest(n, big->tenant, NULL, most);
}

/* The tenant's share is full: its waiting notes of requests no longer
 * pending go; if none did, the requester holding the most gives up their
 * oldest waiting note, when they hold more than user + 1. Whether room
 * was made. */
static bool tenant_room(gw_ap_notify *n, const char *tenant, const char *user) {
  bool made = false;
  for (an_note **pp = &n->notes; *pp;) {
    an_note *e = *pp;
    if (!e->req && !strcmp(e->tenant, tenant) && !still_pending(n, e)) {
      *pp = e->next;
      n->n--;
      atomic_fetch_add(&n->sh->hook_dropped, 1);
      note_free(e);
      made = true;
    } else pp = &e->next;
  }
  if (made) return true;
  const an_note *big = NULL;
  size_t most = 0;
  for (const an_note *e = n->notes; e; e = e->next) {
    if (strcmp(e->tenant, tenant)) continue;
    size_t k = user_notes(n, tenant, e->user);
    if (k > most) most = k, big = e;
  }
  if (!big || most <= user_notes(n, tenant, user) + 1) return false;
  return drop_oldest(n, tenant, big->user, most);
}

void gw__ap_notify_send(gw_loop *lp, const char *tenant, const char *tenant_uid, const char *user, const char *id,
                        const char *url, const char *text) {
  gw_proxy *p = gw__mcp_of(lp);
  gw_ap_notify *n = p ? p->notify : NULL;
  if (!n || n->stopping || !url || !*url) return;
  gw_log_ctx lc = {tenant, NULL};
  size_t busy, mine = tenant_notes(n, tenant, &busy);
  if (mine >= AN_TENANT_MAX && tenant_room(n, tenant, user)) mine = tenant_notes(n, tenant, &busy);
  if (mine >= AN_TENANT_MAX || (n->n >= AN_QUEUE_MAX && !make_room(n, mine))) {
    atomic_fetch_add(&n->sh->hook_dropped, 1);
    GW_LOG(GW_LOG_WARN, "approvals", &lc, "approval request %s: the webhook queue of this loop is full (%d, %d of "
           "one tenant); this notification is dropped", id, AN_QUEUE_MAX, AN_TENANT_MAX);
    return;
  }
  an_note *e = calloc(1, sizeof *e);
  json_t *j = json_pack("{s:s}", "text", text);
  if (e) {
    e->n = n;
    e->url = strdup(url);
    e->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  }
  json_decref(j);
  if (!e || !e->url || !e->body) {
    if (e) note_free(e);
    atomic_fetch_add(&n->sh->hook_dropped, 1);
    return;
  }
  e->len = strlen(e->body);
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  snprintf(e->tenant_uid, sizeof e->tenant_uid, "%s", tenant_uid ? tenant_uid : "");
  snprintf(e->id, sizeof e->id, "%s", id);
  snprintf(e->user, sizeof e->user, "%s", user);
  /* at the end: first come, first sent */
  an_note **pp = &n->notes;
  while (*pp) pp = &(*pp)->next;
  *pp = e;
  n->n++;
  pump(n);
}

int gw__ap_notify_start(gw_proxy *p) {
  gw_ap_notify *n = calloc(1, sizeof *n);
  if (!n) return -1;
  n->lp = p->lp;
  n->sh = p->lp->srv->mcp;
  if (uv_timer_init(&p->lp->loop, &n->timer) != 0) {
    free(n);
    return -1;
  }
  n->timer.data = n;
  n->refs = 1;
  p->notify = n;
  return 0;
}

static void timer_closed(uv_handle_t *h) { unref(h->data); }

void gw__ap_notify_stop(gw_proxy *p) {
  gw_ap_notify *n = p->notify;
  if (!n) return;
  p->notify = NULL;
  n->stopping = true;
  /* waiting notes go now; those in flight when their on_done runs (the
   * engine's close aborts them) */
  for (an_note *e = n->notes, *next; e; e = next) {
    next = e->next;
    if (e->req) gw_out_abort(e->req);
    else note_free(e);
  }
  n->notes = NULL;
  n->n = 0;
  uv_close((uv_handle_t *)&n->timer, timer_closed);
}
