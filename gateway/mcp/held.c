/* gateway/mcp/held.c — the held-for-approval flow (issue 23; private to
 * gateway/mcp/, declared in decide.h).
 *
 * A tools/call the policy decides "approve" (alone, not in a batch) is not
 * forwarded. One writer job either takes a live grant for exactly this
 * call (policy/approval.h: an earlier approval; then the call goes on as
 * allowed) or stores a pending request whose approvers are the union of
 * the matching rules' groups and, where a rule names none, the tenant's
 * approver_groups setting. The client's answer becomes an SSE stream the
 * gateway opened itself: notifications/progress every
 * approval_progress_interval_ms when the call carried a progressToken
 * (Claude Code aborts a remote call after 300 s without one; SSE comments
 * do not count), SSE comments otherwise.
 *
 * The decision is a store write on any loop; its event (AP_EV_DECIDED)
 * reaches every loop through the fan-out (revoke.c) and the loop holding
 * the call acts: approved → the call takes its grant (one approval, one
 * call) and is forwarded now, its answer relayed on the held stream;
 * denied / cancelled → a JSON-RPC error naming the outcome, the reviewer
 * and the reason; past the request's expiry (the loop's tick) → timed out.
 * Every final answer on a held stream is one SSE event, then the stream's
 * end (exchange.c writes it when x->held is set).
 *
 * Rules this file keeps, and why:
 *  - Fail closed: no approver group resolvable → refused, never allowed;
 *    a store error → refused; a request that cannot be stored → refused;
 *    a connector or tool name too long to keep whole (the grant's key) →
 *    refused, never cut.
 *  - The client leaving ends only the stream: the request stays decidable
 *    until it expires, and an approval then is a grant the agent's retry
 *    takes (the same arguments: canonical JSON, SHA-256). A grant taken
 *    for a call whose client left before it went upstream goes back.
 *  - A grant is taken only while the policy in force asks of the user's
 *    call what it asked when the grant was given (policy/approval.h): a
 *    user Okta moved to a group whose rule names other approvers or other
 *    minutes is held for a new approval, one whose rule blocks the tool is
 *    refused before any grant is looked at.
 *  - A user with HELD_PENDING_MAX requests pending gets no more (each is a
 *    store write and a reviewer's attention).
 *  - The requester's token expiring ends the wait (gw__held_expired, from
 *    the loop's expiry timer, exchange.h): -32011 naming the request, which
 *    stays pending as when the client leaves — the person's access did not
 *    end, one credential of theirs did, and the retry comes with the next.
 *  - The client ending the call's MCP session (DELETE) is not a client
 *    that left: the DELETE's own transaction cancels the requests made in
 *    the session (policy/approval.h), and before its 204 every loop ends
 *    the session's exchanges (revoke.c): a held call is told -32010, its
 *    request cancelled with the session (gw__held_session_ended).
 *  - Nor is the session expiring or being evicted (sessions_per_user_max):
 *    the write that purges or evicts it cancels the requests made in it
 *    (mcp_session.c), whose decision answers a held call -32010 on every
 *    loop; a loop whose purge tick finds the session gone or expired first
 *    answers so itself and cancels the session's requests in a job
 *    (gw__held_session_lost). An approval that reaches a call whose
 *    session ended is never forwarded in it: the call is told to retry.
 *  - A held call whose tool the user's policy now blocks (a new policy
 *    document, an Okta group change; or its connector hidden) ends at
 *    once with -32003, the answer a blocked call gets — from the loops'
 *    recheck (gw__held_mark/gw__held_blocked, revoke.c rule 6) or the
 *    cancel of its request, whichever comes first — and its request is
 *    cancelled (by the policy's own write, or a job here after a group
 *    change), so no reviewer approves what can no longer be made.
 *  - The requester's revocation ends the held stream like any exchange of
 *    theirs (exchange.c), and the same transaction cancels their pending
 *    requests (policy/approval.c). The job checks the identity again in its
 *    own transaction: a call whose body arrived (or whose job waited on the
 *    writer) after the cut — a Universal Logout leaves the person active —
 *    stores no request the cut would have cancelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "gateway/base/buf.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/core/server.h"
#include "gateway/core/settings.h"
#include "gateway/http/http.h"
#include "gateway/mcp/audit_log.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/upcall.h"
#include "policy/approval.h"
#include "store/dir.h"
#include "store/seal.h"
#include "store/tenant.h"
#include "store/text.h"

#define HELD_PENDING_MAX 10
#define HELD_ARGS_MAX 8192 /* bytes of redacted arguments a reviewer sees */

struct gw_held {
  char id[AP_ID_LEN + 1];
  int64_t expires_ms;       /* wall clock */
  int64_t created_ms;       /* wall clock: the request's "created" */
  int timeout_s;
  uint64_t started;         /* loop ms */
  uint64_t next_progress;   /* loop ms */
  json_t *progress_token;   /* NULL: SSE comments keep the stream alive */
  char who[300];            /* the approver groups' names, for messages */
  char connector[40], tool[260]; /* what the request is for (the grant's key) */
  char hash[65];            /* ... with these arguments */
  bool waiting;             /* the stream is open and nothing decided yet */
  bool blocked;             /* the recheck found the user's policy now blocks the call (gw__held_mark) */
  uint8_t lost;             /* 0, or how its session ended (ap_session_end + 1): never forwarded then */
  bool sse;                 /* the client's answer is the gateway's SSE stream */
  void (*forward)(gw_exchange *x);
};

static void stop_waiting(gw_exchange *x);

void gw__held_free(gw_exchange *x) {
  if (!x->held) return;
  stop_waiting(x); /* (the client's end stopped it already: the gauge stays exact either way) */
  json_decref(x->held->progress_token);
  free(x->held);
  x->held = NULL;
}

static void stop_waiting(gw_exchange *x) {
  gw_proxy *p = gw__mcp_of(x->lp);
  if (!x->held || !x->held->waiting) return;
  x->held->waiting = false;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  if (sh) atomic_fetch_sub(&sh->ap_held, 1);
  if (p && p->nheld > 0 && --p->nheld == 0) uv_timer_stop(&p->held_timer);
}

void gw__held_client_gone(gw_exchange *x) { stop_waiting(x); }

bool gw__held_stream(const gw_exchange *x) { return x->held && x->held->sse; }

/* An audit record of a step of x's approval (kind "approval"): event,
 * the request, the requester, connector and tool, and extra's members
 * (taken). The decisions themselves are recorded where they commit
 * (revoke.c's hook). */
static void audit_step(gw_exchange *x, const char *event, const char *id, json_t *extra) {
  if (!x->lp->srv->audit) {
    json_decref(extra);
    return;
  }
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kind", "approval", "event", event, "request", id ? id : "",
                          "user", x->user, "connector", x->held ? x->held->connector : x->connector, "tool",
                          x->held ? x->held->tool : "");
  if (rec && extra) json_object_update(rec, extra);
  json_decref(extra);
  if (rec && x->sid[0]) json_object_set_new(rec, "session", json_string(x->sid));
  if (rec) gw_audit_submit(x->lp->srv, x->tenant, x->tenant_uid, rec);
}

/* ---- the job: a grant, or a new request ---- */

enum { HOLD_GRANTED, HOLD_HELD, HOLD_NOBODY, HOLD_TOOMANY, HOLD_SESSION_GONE };

typedef struct hold_job {
  gw_exchange *x; /* a reference */
  char tenant[64], user[40], session[96], connector[40], tool[260];
  char tokid[ST_TOKEN_ID_BUFSZ]; /* what the request authenticated with */
  int64_t expires;               /* ... and its expiry (unix s, 0: none) */
  char hash[65];
  char *arguments;
  json_t *approvers; /* the rules' group ids */
  ap_hint hint;      /* the loop's decision for the grant's take (approval.h) */
  bool tenant_default;
  int timeout_s, grant_minutes;
  int64_t now_ms;
  int outcome;
  char id[AP_ID_LEN + 1];
  char who[300];
  char user_name[300]; /* the requester's userName (the webhook's text) */
  char *hook_url;      /* the tenant's approval_webhook_url, or NULL */
} hold_job;

static void hold_job_free(hold_job *j) {
  free(j->arguments);
  free(j->hook_url);
  json_decref(j->approvers);
  free(j);
}

/* What the webhook's text needs, read in the job that stored the
 * request: the tenant's approval_webhook_url and the requester's
 * userName. */
static int hook_inputs(st_txn *txn, hold_job *j) {
  json_t *u = NULL;
  free(j->hook_url); /* a re-run of the job (store.h) starts afresh */
  j->hook_url = NULL;
  j->user_name[0] = 0;
  char *url = NULL; /* sealed (a webhook URL carries its own token) */
  int rc = gw_settings_secret(txn, j->tenant, "approval_webhook_url", &url);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  if (*url && !(j->hook_url = strdup(url))) rc = ST_ENOMEM;
  st_secret_str_free(url);
  if (rc || !j->hook_url) return rc;
  rc = st_dir_user_get(txn, j->tenant, j->user, &u);
  const char *name = rc ? NULL : json_string_value(json_object_get(u, "userName"));
  snprintf(j->user_name, sizeof j->user_name, "%s", name ? name : j->user);
  json_decref(u);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* The tenant's approver_groups setting, resolved to the groups that exist
 * (policy/approval.h's ap_groups_resolve), appended to ids. */
static int tenant_approvers(st_txn *txn, const char *tenant, json_t *ids) {
  json_t *t = NULL;
  int rc = st_tenant_get(txn, tenant, &t);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  rc = ap_groups_resolve(txn, tenant, gw_settings_string(json_object_get(t, "settings"), "approver_groups"), ids);
  json_decref(t);
  return rc;
}

/* A take's hint (policy/approval.h): the loop's cached decision of the
 * call and its stamp, read in one txn, so that the writer loads the
 * user's policy only when something moved since. */
static void take_hint(gw_loop *lp, const char *tenant, const char *user, const char *connector, const char *tool,
                      ap_hint *h) {
  memset(h, 0, sizeof *h);
  st_txn *txn;
  if (gw__read_begin(lp, &txn) != 0) return;
  int err;
  const pol_user *pu = pol_cache_get(lp->pol, txn, tenant, user, &err);
  if (pu) ap_hint_fill(txn, tenant, pu, connector, tool, h);
  gw__read_end(lp, txn);
}

static int job_hold(st_txn *txn, void *arg) {
  hold_job *j = arg;
  /* the requester as the request authenticated, still live in this
   * transaction: a cut committed since cancelled their requests */
  if ((j->expires && j->now_ms / 1000 >= j->expires) ||
      auth_identity_check(txn, j->tenant, j->user, j->tokid, j->now_ms / 1000) != 0)
    return GW_UP_EREVOKED;
  /* the session it is made in, still there: its DELETE, committed since,
   * cancelled what the session had and ended its calls (found by review:
   * a request stored after that stayed pending, its approval a grant for
   * the user's next call; and no grant is taken for a call that ended) */
  if (j->session[0]) {
    gw_session s;
    int src = gw_session_get(txn, j->session, &s);
    if (src == ST_ENOTFOUND) {
      j->outcome = HOLD_SESSION_GONE;
      return 0;
    }
    if (src < 0) return src;
  }
  int rc = ap_grant_take(txn, j->tenant, j->user, j->connector, j->tool, j->hash, j->now_ms, j->id, &j->hint);
  if (rc == 0) {
    j->outcome = HOLD_GRANTED;
    return 0;
  }
  if (rc != ST_ENOTFOUND) return rc;
  json_t *ids = json_array();
  size_t i;
  json_t *g;
  json_array_foreach(j->approvers, i, g) json_array_append(ids, g);
  if (j->tenant_default && (rc = tenant_approvers(txn, j->tenant, ids)) < 0) {
    json_decref(ids);
    return rc;
  }
  /* the union, once each, of groups that exist */
  json_t *uniq = json_array();
  json_array_foreach(ids, i, g) {
    bool seen = false;
    size_t k;
    json_t *u;
    json_array_foreach(uniq, k, u) seen = seen || json_equal(u, g);
    if (!seen && json_is_string(g) && st_dir_group_exists(txn, j->tenant, json_string_value(g)) == 0)
      json_array_append(uniq, g);
  }
  json_decref(ids);
  if (!json_array_size(uniq)) {
    json_decref(uniq);
    j->outcome = HOLD_NOBODY;
    return 0;
  }
  ap_new an = {j->tenant, j->user, j->session, j->connector, j->tool, j->arguments, j->hash, uniq,
               j->timeout_s, j->grant_minutes, j->now_ms};
  rc = ap_request_create(txn, &an, HELD_PENDING_MAX, j->id);
  if (rc == AP_ETOOMANY) {
    json_decref(uniq);
    j->outcome = HOLD_TOOMANY;
    return 0;
  }
  if (!rc) {
    size_t w = 0;
    json_array_foreach(uniq, i, g) {
      json_t *rec = NULL;
      const char *name = json_string_value(g);
      if (st_dir_group_get(txn, j->tenant, json_string_value(g), &rec) == 0 &&
          json_is_string(json_object_get(rec, "displayName")))
        name = json_string_value(json_object_get(rec, "displayName"));
      int k = snprintf(j->who + w, sizeof j->who - w, "%s%s", w ? ", " : "", name);
      json_decref(rec);
      if (k < 0 || (size_t)k >= sizeof j->who - w) break;
      w += (size_t)k;
    }
    j->outcome = HOLD_HELD;
    rc = hook_inputs(txn, j);
  }
  json_decref(uniq);
  return rc;
}

static void held_tick(uv_timer_t *t);

const double gw_ap_bucket_le[GW_AP_NBUCKETS] = {1, 10, 30, 60, 300, 900, 3600, 14400};

/* The outcome a waiting held call learned (mcpgate_approvals_decided_total)
 * and, for a reviewer's or an admin's decision, the time since the
 * request's creation (mcpgate_approval_decision_seconds). */
static void count_outcome(gw_exchange *x, int outcome) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  if (!sh) return;
  atomic_fetch_add(&sh->ap_decided[outcome], 1);
  if (outcome == GW_AP_OUT_TIMED_OUT) return;
  int64_t ms = gw_wall_ms() - x->held->created_ms;
  if (ms < 0) ms = 0;
  int b = 0;
  while (b < GW_AP_NBUCKETS && (double)ms / 1000.0 > gw_ap_bucket_le[b]) b++;
  atomic_fetch_add(&sh->ap_bucket[b], 1);
  atomic_fetch_add(&sh->ap_dec_count, 1);
  atomic_fetch_add(&sh->ap_dec_sum_ms, (uint64_t)ms);
}

static uint64_t interval_ms(gw_exchange *x) {
  int64_t v = x->lp->srv->cfg.approval_progress_interval_ms;
  return v > 0 ? (uint64_t)v : 15000;
}

static void send_sse(gw_exchange *x, const char *s, size_t n) {
  if (x->req) gw_resp_write(x->req, s, n);
}

static void send_progress(gw_exchange *x) {
  gw_held *h = x->held;
  uint64_t now = uv_now(&x->lp->loop);
  int64_t left = (h->expires_ms - gw_wall_ms()) / 1000;
  if (left < 0) left = 0;
  char msg[600];
  snprintf(msg, sizeof msg, "waiting for approval by %s (request %s), %lld:%02lld left", h->who, h->id,
           (long long)(left / 60), (long long)(left % 60));
  if (!h->progress_token) {
    char c[700];
    int n = snprintf(c, sizeof c, ": %s\n\n", msg);
    send_sse(x, c, (size_t)n);
    return;
  }
  double elapsed = (double)(now - h->started) / 1000.0;
  json_t *j = json_pack("{s:s, s:s, s:{s:O, s:f, s:i, s:s}}", "jsonrpc", "2.0", "method", "notifications/progress",
                        "params", "progressToken", h->progress_token, "progress", elapsed + 0.001, "total",
                        h->timeout_s, "message", msg);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s) return;
  gw_buf b;
  gw_buf_init(&b, 64 * 1024);
  if (!gw_buf_appends(&b, "event: message\ndata: ") && !gw_buf_appends(&b, s) && !gw_buf_appends(&b, "\n\n"))
    send_sse(x, b.data, b.len);
  gw_buf_free(&b);
  free(s);
}

static void decided_one(gw_exchange *x, void *arg);
typedef struct decided_arg {
  const char *id, *state, *by, *reason;
} decided_arg;

static void decided_since(gw_exchange *x) {
  st_txn *txn;
  json_t *rec = NULL;
  if (gw__read_begin(x->lp, &txn) != 0) return; /* the expiry still ends it */
  int rc = ap_request_get(txn, x->tenant, x->held->id, gw_wall_ms(), &rec);
  gw__read_end(x->lp, txn);
  const char *state = rc ? NULL : json_string_value(json_object_get(rec, "state"));
  if (state && (!strcmp(state, "approved") || !strcmp(state, "denied") || !strcmp(state, "cancelled"))) {
    decided_arg d = {x->held->id, state, json_string_value(json_object_get(rec, "decided_by")) ?: "a reviewer",
                     json_string_value(json_object_get(rec, "reason")) ?: ""};
    decided_one(x, &d);
  }
  json_decref(rec);
}

/* s appended to b for Slack's mrkdwn: &, < and > escaped (so an argument
 * cannot mention @channel or forge a link), ` as a look-alike, control
 * characters (U+0000..001F, U+007F: a tool name is the client's, and a
 * line break in it would start a line of the gateway's message the
 * client writes) and hidden characters (store/text.h) as \uXXXX, or
 * \u{XXXXX} past the BMP as the page writes them, at most max bytes of s
 * (cut at a character boundary, "…" after a cut) */
static void slack_append(gw_buf *b, const char *s, size_t max) {
  size_t n = strlen(s);
  bool cut = n > max;
  if (cut) {
    n = max;
    while (n && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* not inside a UTF-8 sequence */
  }
  for (size_t i = 0; i < n; i++) {
    size_t hl = 0;
    unsigned cp = (unsigned char)s[i] >= 0xC0 ? st_text_hidden_at((const unsigned char *)s + i, n - i, &hl) : 0;
    if (cp) {
      if (cp > 0xFFFF) gw_buf_printf(b, "\\u{%x}", cp);
      else gw_buf_printf(b, "\\u%04x", cp);
      i += hl - 1;
      continue;
    }
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      gw_buf_printf(b, "\\u%04x", (unsigned)(unsigned char)s[i]);
      continue;
    }
    /* a backtick would close the template's code span and let the rest be
     * formatted or linked as if the gateway said it: a look-alike instead */
    const char *e = s[i] == '&'   ? "&amp;"
                    : s[i] == '<' ? "&lt;"
                    : s[i] == '>' ? "&gt;"
                    : s[i] == '`' ? "\xcb\x8b" /* U+02CB */
                                  : NULL;
    if (e) gw_buf_appends(b, e);
    else gw_buf_append(b, s + i, 1);
  }
  if (cut) gw_buf_appends(b, "…");
}

#define HOOK_ARGS_SHOWN 200 /* bytes of the redacted arguments in the webhook's text */

/* The webhook's text for a stored request (Slack incoming-webhook
 * mrkdwn): who, what, a short argument summary, the page and the id. */
static void notify_held(gw_loop *lp, const hold_job *j) {
  const char *pub = lp->srv->cfg.public_url ? lp->srv->cfg.public_url : "";
  size_t pl = strlen(pub);
  while (pl && pub[pl - 1] == '/') pl--;
  gw_buf b;
  gw_buf_init(&b, 8192);
  gw_buf_appends(&b, "Approval needed: ");
  slack_append(&b, j->user_name, 200);
  gw_buf_appends(&b, " asks to call `");
  slack_append(&b, j->tool, 200);
  gw_buf_appends(&b, "` on `");
  slack_append(&b, j->connector, 64);
  gw_buf_appends(&b, "` with arguments `");
  slack_append(&b, j->arguments ? j->arguments : "{}", HOOK_ARGS_SHOWN);
  gw_buf_printf(&b, "`.\nDecide within %d s: %.*s/t/%s/approvals (request %s)", j->timeout_s, (int)pl, pub,
                j->tenant, j->id);
  if (b.data) gw__ap_notify_send(lp, j->tenant, j->x->tenant_uid, j->user, j->id, j->hook_url, b.data);
  gw_buf_free(&b);
}

/* A grant taken for a call whose client left before it could go upstream
 * goes back (policy/approval.h): the agent's retry still passes. */
typedef struct back_job {
  char tenant[64], user[40], connector[40], tool[260], hash[65], id[AP_ID_LEN + 1];
  int64_t now_ms;
} back_job;

static int job_back(st_txn *txn, void *arg) {
  back_job *b = arg;
  return ap_grant_give_back(txn, b->tenant, b->user, b->connector, b->tool, b->hash, b->id, b->now_ms);
}

static void done_back(int status, void *arg) {
  back_job *b = arg;
  if (status)
    GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){b->tenant, NULL}),
           "the approval of request %s could not be given back after its client left: %s", b->id, ap_strerror(status));
  free(b);
}

static void give_back(gw_loop *lp, const char *tenant, const char *user, const gw_held *h, const char *id) {
  back_job *b = calloc(1, sizeof *b);
  if (!b) return;
  snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
  snprintf(b->user, sizeof b->user, "%s", user);
  snprintf(b->connector, sizeof b->connector, "%s", h->connector);
  snprintf(b->tool, sizeof b->tool, "%s", h->tool);
  memcpy(b->hash, h->hash, sizeof b->hash);
  snprintf(b->id, sizeof b->id, "%s", id ? id : "");
  b->now_ms = gw_wall_ms();
  if (gw_loop_submit(lp, job_back, done_back, b) != 0) free(b);
}

/* A call that passes under its approval goes upstream — unless the audit
 * log cannot record it by now (audit_on_failure deny: it may have broken
 * while the call was held): refused like any call then, and the approval
 * it took is given back for the retry (the call was not made). */
static void pass(gw_exchange *x, const char *id) {
  if (x->audit && gw__audit_refuse(x)) {
    give_back(x->lp, x->tenant, x->user, x->held, id);
    return;
  }
  audit_step(x, "grant_used", id, NULL);
  x->held->forward(x);
}

static void done_hold(int status, void *arg) {
  hold_job *j = arg;
  gw_exchange *x = j->x;
  gw_log_ctx lc = {x->tenant, x->req ? x->req->id : NULL};
  if (!status && j->outcome == HOLD_HELD) {
    gw_mcp_shared *sh = x->lp->srv->mcp;
    if (sh) atomic_fetch_add(&sh->ap_requests, 1);
    if (j->hook_url) notify_held(x->lp, j);
  }
  if (!gw__x_client_alive(x)) {
    if (!status && j->outcome == HOLD_HELD)
      GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s stored; its client left before the stream opened",
             j->id);
    if (!status && j->outcome == HOLD_GRANTED && !x->revoked) give_back(x->lp, x->tenant, x->user, x->held, j->id);
  } else if (status == GW_UP_EREVOKED) {
    gw__x_start_failed(x, status);
  } else if (status) {
    GW_LOG(GW_LOG_WARN, "approvals", &lc, "an approval request could not be stored: %s", ap_strerror(status));
    gw__x_rpc_error(x, 503, -32603, "tool \"%s\" requires approval, and the gateway cannot store the request right "
                    "now (%s); try again shortly",
                    j->tool, status == ST_EMAPFULL ? "its store is full" : "store error");
  } else if (j->outcome == HOLD_SESSION_GONE) {
    gw__x_end_why(x, "your MCP session was ended (DELETE): this request ended with it (the call was not made)");
  } else if (j->outcome == HOLD_GRANTED) {
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "tools/call %s on %s passes under the approval of request %s", j->tool,
           j->connector, j->id);
    pass(x, j->id);
  } else if (j->outcome == HOLD_NOBODY) {
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" on \"%s\" requires approval under your organisation's policy, and no approver group "
                    "is set up for it; ask your admin (the call was not made)",
                    j->tool, j->connector);
  } else if (j->outcome == HOLD_TOOMANY) {
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" requires approval, and you already have %d approval requests pending; wait for "
                    "them to be decided (the call was not made)",
                    j->tool, HELD_PENDING_MAX);
  } else if (gw__x_expiry_watch(x) != 0) {
    /* its wait could not be watched for the token's expiry: not held
     * (fail closed; the request stored stays pending, like a client's that
     * left) */
    gw__x_rpc_error(x, 503, -32603, "tool \"%s\" requires approval, and the gateway cannot hold the call right now "
                    "(out of memory); request %s stays pending: once it is approved, call again", j->tool, j->id);
  } else {
    /* held: the answer is the gateway's own stream from now on; it ends
     * when the requester's token expires (gw__held_expired) */
    gw_held *h = x->held;
    gw_proxy *p = gw__mcp_of(x->lp);
    snprintf(h->id, sizeof h->id, "%s", j->id);
    snprintf(h->who, sizeof h->who, "%s", j->who);
    h->expires_ms = j->now_ms + (int64_t)j->timeout_s * 1000;
    h->created_ms = j->now_ms;
    h->timeout_s = j->timeout_s;
    h->started = uv_now(&x->lp->loop);
    h->next_progress = h->started + interval_ms(x);
    h->sse = h->waiting = true;
    if (x->lp->srv->mcp) atomic_fetch_add(&((gw_mcp_shared *)x->lp->srv->mcp)->ap_held, 1);
    if (x->sid[0]) gw_resp_header(x->req, "Mcp-Session-Id", x->sid);
    gw_resp_header(x->req, "Cache-Control", "no-cache");
    gw_resp_start(x->req, 200, "text/event-stream");
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "tools/call %s on %s held: approval request %s for %s, %d s", j->tool,
           j->connector, j->id, j->who, j->timeout_s);
    audit_step(x, "requested", j->id,
               json_pack("{s:s, s:i, s:i}", "approvers", j->who, "timeout_s", j->timeout_s, "grant_minutes",
                         j->grant_minutes));
    send_progress(x);
    if (p && p->nheld++ == 0) {
      uint64_t tick = interval_ms(x) / 2;
      tick = tick < 50 ? 50 : tick > 1000 ? 1000 : tick;
      uv_timer_start(&p->held_timer, held_tick, tick, tick);
    }
    /* a decision committed between the request's commit and now (a bot
     * reviewer polling the list) reached this loop before the call was
     * waiting: read it back */
    decided_since(x);
  }
  gw__x_unref(x);
  hold_job_free(j);
}

bool gw__held_start(gw_exchange *x, const pol_user *pu, const char *connector, const char *tool, const char *body,
                    size_t len, void (*forward)(gw_exchange *x)) {
  gw_server *srv = x->lp->srv;
  pol_approval pa;
  if (!x->req || !tool || pol_approval_for(pu, connector, tool, &pa) != 0) return false;
  /* the names are the grant's key: one that would be cut here is refused,
   * never held (a cut name would be another tool's grant too) — saying
   * so (found by review: the caller's refusal spoke of a batch) */
  if (strlen(connector) >= sizeof x->held->connector || strlen(tool) >= sizeof x->held->tool) {
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "this tool on \"%s\" requires approval, and its name is too long for an approval to name it "
                    "(at most %zu bytes): the call was not made",
                    connector, sizeof x->held->tool - 1);
    return true;
  }
  /* the grant's key hashes the arguments as jansson decoded them: a real
   * a double cannot hold exactly (1.0000000000000001 decodes as 1.0), or
   * the integer -0 (decoded as 0), would use another call's approval while
   * the upstream gets the bytes as sent */
  static const char *const args_path[] = {"params.arguments"};
  gw_json_span args_raw;
  if (gw_json_pick(body, len, args_path, 1, &args_raw) != 1) /* undecided: every number in the body */
    args_raw = (gw_json_span){body, len};
  if (args_raw.p && !gw_json_numbers_exact(args_raw.p, args_raw.n)) {
    GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
           "tools/call %s on %s refused: a number in its arguments is past what an approval can name exactly", tool,
           connector);
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                    "tool \"%s\" on \"%s\" requires approval, and a number in its arguments has more than 15 "
                    "significant digits, lies outside 1e-307..1e308 or is the integer -0, which an approval cannot "
                    "name exactly: send it rounded (0 for -0), or as a string (the call was not made)",
                    tool, connector);
    return true;
  }
  json_t *msg = gw_json_loadb(body, len, 0, NULL);
  json_t *params = json_object_get(msg, "params");
  json_t *args = json_object_get(params, "arguments");
  hold_job *j = calloc(1, sizeof *j);
  gw_held *h = calloc(1, sizeof *h);
  if (!msg || !j || !h || ap_args_hash(args, j->hash) != 0 || !(j->approvers = json_array())) {
    json_decref(msg);
    free(h);
    if (j) hold_job_free(j);
    gw__x_rpc_error(x, 503, -32603, "tool \"%s\" requires approval, and the gateway cannot ask for it right now "
                    "(out of memory): try again (the call was not made)", tool);
    return true;
  }
  for (size_t i = 0; i < pa.napprovers; i++) json_array_append_new(j->approvers, json_string(pa.approvers[i]));
  /* what reviewers (and the webhook) see: masked as the audit log masks
   * them, the tenant's own patterns included (none known: refused) */
  char tred[AUDIT_REDACT_VALUE_MAX + 1];
  if (args && gw__audit_tenant_redact(x, tred, sizeof tred) != 0) {
    json_decref(msg);
    free(h);
    hold_job_free(j);
    gw__x_rpc_error(x, 503, -32603, "tool \"%s\" requires approval, and the gateway cannot read how to mask its "
                    "arguments for the reviewers right now: try again (the call was not made)", tool);
    return true;
  }
  json_t *shown = args ? gw_audit_args_masked(srv, args, tred, HELD_ARGS_MAX) : NULL;
  j->arguments = shown ? json_dumps(shown, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(shown);
  h->progress_token = json_incref(json_object_get(json_object_get(params, "_meta"), "progressToken"));
  h->forward = forward;
  snprintf(h->connector, sizeof h->connector, "%s", connector);
  snprintf(h->tool, sizeof h->tool, "%s", tool);
  memcpy(h->hash, j->hash, sizeof h->hash);
  json_decref(msg);
  j->x = x;
  snprintf(j->tenant, sizeof j->tenant, "%s", x->tenant);
  snprintf(j->user, sizeof j->user, "%s", x->user);
  snprintf(j->tokid, sizeof j->tokid, "%s", x->tokid);
  j->expires = x->ident_expires;
  snprintf(j->session, sizeof j->session, "%s", x->sid);
  snprintf(j->connector, sizeof j->connector, "%s", connector);
  snprintf(j->tool, sizeof j->tool, "%s", tool);
  j->tenant_default = pa.tenant_default;
  j->timeout_s = pa.timeout_s > 0 ? pa.timeout_s : 300;
  j->grant_minutes = pa.grant_minutes;
  j->now_ms = gw_wall_ms();
  take_hint(x->lp, j->tenant, j->user, connector, tool, &j->hint);
  gw__held_free(x);
  x->held = h;
  gw__x_ref(x);
  if (gw_loop_submit(x->lp, job_hold, done_hold, j) != 0) {
    gw__x_unref(x);
    hold_job_free(j);
    gw__x_rpc_error(x, 503, -32603, "tool \"%s\" requires approval, and the gateway cannot store the request right "
                    "now; try again shortly", tool);
  }
  return true;
}

/* ---- the loop's tick: progress and expiry ---- */

static void tick_one(gw_exchange *x, void *arg) {
  (void)arg;
  gw_held *h = x->held;
  if (!h || !h->waiting || !x->req) return;
  if (gw_wall_ms() >= h->expires_ms) {
    stop_waiting(x);
    count_outcome(x, GW_AP_OUT_TIMED_OUT);
    GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}), "approval request %s timed out", h->id);
    audit_step(x, "timed_out", h->id, NULL);
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_TIMEOUT,
                    "approval timed out: nobody of %s decided request %s within %d s, so the call was not made", h->who,
                    h->id, h->timeout_s);
    return;
  }
  uint64_t now = uv_now(&x->lp->loop);
  if (now >= h->next_progress) {
    h->next_progress = now + interval_ms(x);
    send_progress(x);
  }
}

static void held_tick(uv_timer_t *t) {
  gw_proxy *p = t->data;
  gw__x_foreach(&p->reg, tick_one, NULL);
}

/* ---- the decision, on every loop ---- */

typedef struct take_job {
  gw_exchange *x;
  char tenant[64], user[40], connector[40], tool[260], hash[65];
  int64_t now_ms;
  ap_hint hint;
} take_job;

static int job_take(st_txn *txn, void *arg) {
  take_job *j = arg;
  return ap_grant_take(txn, j->tenant, j->user, j->connector, j->tool, j->hash, j->now_ms, NULL, &j->hint);
}

static void done_take(int status, void *arg) {
  take_job *j = arg;
  gw_exchange *x = j->x;
  if (gw__x_client_alive(x) && !x->revoked) {
    if (status == 0)
      pass(x, x->held->id);
    else
      gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                      "the approval of this call was already used (one approval, one call), or no longer stands "
                      "under your organisation's policy for it (your groups or its rule changed); call again to ask "
                      "anew");
  } else if (status == 0 && !x->revoked) {
    give_back(x->lp, x->tenant, x->user, x->held, x->held->id); /* the client left while the grant was taken */
  }
  gw__x_unref(x);
  free(j);
}

/* ---- the policy blocks the held call now ---- */

/* The request of a held call ended because the policy blocks it: cancelled
 * in a writer job if it is still pending and the policy in force there
 * still blocks it (a membership change: a new policy document cancelled it
 * in its own transaction already), so a reviewer sees it is no longer
 * decidable. */
typedef struct unblock_job {
  char tenant[64], id[AP_ID_LEN + 1];
  int64_t now_ms;
} unblock_job;

static int job_cancel_blocked(st_txn *txn, void *arg) {
  unblock_job *u = arg;
  int rc = ap_cancel_if_blocked(txn, u->tenant, u->id, u->now_ms);
  return rc < 0 ? rc : 0;
}

static void done_cancel_blocked(int status, void *arg) {
  unblock_job *u = arg;
  if (status)
    GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){u->tenant, NULL}),
           "approval request %s, of a call the policy now blocks, could not be cancelled: %s (a reviewer's approval "
           "of it lets nothing through while the policy blocks the call)",
           u->id, ap_strerror(status));
  free(u);
}

/* x, waiting, is answered as a blocked call is (-32003): the policy in
 * force blocks its tool for its user now (or hides its connector). cancel:
 * its request is cancelled too (when it is still pending). */
static void block_answer(gw_exchange *x, bool cancel) {
  gw_held *h = x->held;
  stop_waiting(x);
  count_outcome(x, GW_AP_OUT_CANCELLED);
  GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
         "tools/call %s on %s held for approval request %s refused: the policy now blocks it", h->tool, h->connector,
         h->id);
  gw__audit_call_redecide(x, pol_decision_name(POL_BLOCK));
  audit_step(x, "blocked", h->id, NULL);
  if (cancel) {
    unblock_job *u = calloc(1, sizeof *u);
    if (u) {
      snprintf(u->tenant, sizeof u->tenant, "%s", x->tenant);
      snprintf(u->id, sizeof u->id, "%s", h->id);
      u->now_ms = gw_wall_ms();
      if (gw_loop_submit(x->lp, job_cancel_blocked, done_cancel_blocked, u) != 0) done_cancel_blocked(ST_ENOMEM, u);
    }
  }
  gw__x_rpc_error(x, 200, GW_RPC_BLOCKED,
                  "tool \"%s\" on \"%s\" is blocked by your organisation's policy (it changed while the call waited "
                  "for approval: request %s is withdrawn, and the call was not made)",
                  h->tool, h->connector, h->id);
}

bool gw__held_waiting(const gw_exchange *x) { return x->held && x->held->waiting && x->req; }

void gw__held_mark(gw_exchange *x, const pol_user *pu) {
  if (!gw__held_waiting(x)) return;
  /* fail closed: a policy that cannot be read allows nothing */
  x->held->blocked = !pu || gw__decide_call(pu, x->held->connector, x->held->tool) < POL_APPROVE;
}

bool gw__held_blocked(gw_exchange *x) {
  if (!x->held || !x->held->blocked) return false;
  x->held->blocked = false;
  if (!gw__held_waiting(x)) return false;
  block_answer(x, true);
  return true;
}

/* Whether the policy in force (this loop's read) blocks x's held call. */
static bool blocked_now(gw_exchange *x) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user); /* unreadable: the request's own outcome is told */
  return pu && gw__decide_call(pu, x->held->connector, x->held->tool) < POL_APPROVE;
}

bool gw__held_session_ended(gw_exchange *x) {
  if (!gw__held_waiting(x)) return false;
  gw_held *h = x->held;
  stop_waiting(x);
  count_outcome(x, GW_AP_OUT_CANCELLED);
  GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
         "the client ended the MCP session of its call held for approval request %s (the request is cancelled)",
         h->id);
  gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_CANCELLED,
                  "your MCP session was ended (DELETE) while this call waited for approval: request %s is cancelled "
                  "(the call was not made)",
                  h->id);
  return true;
}

/* ---- the session expired or was evicted ---- */

/* What happened to the session, for the client (h->lost: 0 when an
 * approval found it gone or expired before any sweep did). */
static const char *lost_words(uint8_t lost) {
  return lost == AP_SESSION_EXPIRED + 1 ? "expired (unused past the session idle timeout, or past its maximum age)"
         : lost == AP_SESSION_EVICTED + 1 ? "was evicted (you opened more MCP sessions than sessions_per_user_max allows)"
                                          : "ended (it expired, or a newer session of yours evicted it)";
}

/* x's session still exists and has not expired (a read); a session-less
 * call (no id) is live. A store that cannot be read: not live (fail
 * closed: nothing is forwarded in a session that may be gone). */
static bool session_live(gw_exchange *x) {
  if (!x->sid[0]) return true;
  st_txn *txn;
  gw_session s;
  if (gw__read_begin(x->lp, &txn) != 0) return false;
  bool live = gw_session_get(txn, x->sid, &s) == 0 &&
              !gw_session_expired(&s, gw_session_now_ms(), gw_sessions_limits(x->lp->srv));
  gw__read_end(x->lp, txn);
  return live;
}

/* x, waiting, whose session ended (h->lost): told so; its request was
 * cancelled, or is about to be (lost_job). */
static void lost_answer(gw_exchange *x) {
  gw_held *h = x->held;
  stop_waiting(x);
  count_outcome(x, GW_AP_OUT_CANCELLED);
  GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
         "the MCP session of a call held for approval request %s ended (the request is cancelled)", h->id);
  gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_CANCELLED,
                  "your MCP session %s while this call waited for approval: request %s is cancelled (the call was "
                  "not made)",
                  lost_words(h->lost), h->id);
}

typedef struct lost_job {
  gw_exchange *x; /* a reference */
  char tenant[64], user[40], hex[65];
  ap_session_end why;
  int64_t now_ms;
} lost_job;

static int job_session_lost(st_txn *txn, void *arg) {
  lost_job *j = arg;
  int rc = ap_session_gone(txn, j->tenant, j->user, j->hex, j->why, j->now_ms);
  return rc < 0 ? rc : 0;
}

static void done_session_lost(int status, void *arg) {
  lost_job *j = arg;
  gw_exchange *x = j->x;
  if (status)
    GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){j->tenant, NULL}),
           "the approval requests of an MCP session that ended could not be cancelled now: %s (the session purge "
           "cancels them when it deletes the session)",
           ap_strerror(status));
  /* the cancel's decision reached this loop before this reply (the
   * fan-out's gate) and answered the call: still waiting means the job
   * failed, or the request was no longer pending */
  if (gw__held_waiting(x)) lost_answer(x);
  gw__x_unref(x);
  free(j);
}

bool gw__held_session_lost(gw_exchange *x, bool expired) {
  if (!gw__held_waiting(x)) return false;
  gw_held *h = x->held;
  if (h->lost) return true; /* its job is with the writer */
  ap_session_end why = expired ? AP_SESSION_EXPIRED : AP_SESSION_ENDED;
  h->lost = (uint8_t)(why + 1);
  /* the write that evicted or purged the session cancelled its requests:
   * told as that decision says (it names the end), if it did */
  decided_since(x);
  if (!gw__held_waiting(x)) return true;
  lost_job *j = calloc(1, sizeof *j);
  if (j) {
    j->x = x;
    snprintf(j->tenant, sizeof j->tenant, "%s", x->tenant);
    snprintf(j->user, sizeof j->user, "%s", x->user);
    gw_session_hex(x->sid, j->hex);
    j->why = why;
    j->now_ms = gw_wall_ms();
    gw__x_ref(x);
    if (gw_loop_submit(x->lp, job_session_lost, done_session_lost, j) == 0) return true;
    gw__x_unref(x);
    free(j);
  }
  lost_answer(x);
  return true;
}

static void decided_one(gw_exchange *x, void *arg) {
  const decided_arg *d = arg;
  gw_held *h = x->held;
  if (!h || !h->waiting || strcmp(h->id, d->id) || !x->req) return;
  /* cancelled because the policy now blocks the call (a new document
   * cancels such requests in its own transaction): answered as a blocked
   * call is, whichever of the cancel and the recheck comes first */
  if (!strcmp(d->state, "cancelled") && blocked_now(x)) {
    block_answer(x, false);
    return;
  }
  stop_waiting(x);
  gw_log_ctx lc = {x->tenant, x->req->id};
  const char *reason = d->reason && *d->reason ? d->reason : "no reason given";
  count_outcome(x, !strcmp(d->state, "approved") ? GW_AP_OUT_APPROVED
                  : !strcmp(d->state, "denied") ? GW_AP_OUT_DENIED
                                                 : GW_AP_OUT_CANCELLED);
  if (!strcmp(d->state, "approved") && (h->lost || !session_live(x))) {
    /* approved as its session ended: the call is not made in a session
     * that is gone; the approval stays the retry's grant */
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s approved by %s after its MCP session ended", h->id,
           d->by);
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_CANCELLED,
                    "your MCP session %s while this call waited for approval, and request %s was approved by %s "
                    "meanwhile: call the tool again with the same arguments (in a new session) to use the approval "
                    "(the call was not made)",
                    lost_words(h->lost), h->id, d->by);
  } else if (!strcmp(d->state, "approved")) {
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s approved by %s: forwarding the call", h->id, d->by);
    /* the grant the approval stored: taken (one approval, one call) */
    take_job *j = calloc(1, sizeof *j);
    if (!j) {
      gw__x_rpc_error(x, 503, -32603, "the approval arrived, but the gateway could not act on it; call again");
      return;
    }
    j->x = x;
    snprintf(j->tenant, sizeof j->tenant, "%s", x->tenant);
    snprintf(j->user, sizeof j->user, "%s", x->user);
    snprintf(j->connector, sizeof j->connector, "%s", h->connector);
    snprintf(j->tool, sizeof j->tool, "%s", h->tool);
    memcpy(j->hash, h->hash, sizeof j->hash);
    j->now_ms = gw_wall_ms();
    take_hint(x->lp, j->tenant, j->user, j->connector, j->tool, &j->hint);
    gw__x_ref(x);
    if (gw_loop_submit(x->lp, job_take, done_take, j) != 0) {
      gw__x_unref(x);
      free(j);
      gw__x_rpc_error(x, 503, -32603, "the approval arrived, but the gateway's store is busy; call again");
    }
  } else if (!strcmp(d->state, "denied")) {
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s denied by %s", h->id, d->by);
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_DENIED, "approval denied by %s: %s (request %s; the call was not made)",
                    d->by, reason, h->id);
  } else {
    GW_LOG(GW_LOG_INFO, "approvals", &lc, "approval request %s cancelled by %s", h->id, d->by);
    gw__x_rpc_error(x, 200, GW_RPC_APPROVAL_CANCELLED,
                    "approval request %s was cancelled by %s: %s (the call was not made)", h->id, d->by, reason);
  }
}

void gw__held_decided(gw_loop *lp, const gw_revocation *q) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p || !p->nheld) return;
  json_t *n = json_loads(q->note, 0, NULL);
  decided_arg d = {q->sid, json_string_value(json_object_get(n, "state")) ?: "cancelled",
                   json_string_value(json_object_get(n, "by")) ?: "someone",
                   json_string_value(json_object_get(n, "reason")) ?: ""};
  gw__x_foreach(&p->reg, decided_one, &d);
  json_decref(n);
}

/* ---- the client's cancel, the gateway's shutdown ---- */

/* The held call of session sid whose JSON-RPC id is rid, waiting: its
 * stream ends (no answer: the client cancelled it). The request stays
 * decidable (an approval becomes the retry's grant). */
bool gw__held_cancel_local(gw_loop *lp, const char *sid, const json_t *rid) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p || !p->nheld || !rid || !sid) return false;
  /* no callback runs in this walk: it returns after ending one stream */
  for (gw_exchange *x = p->reg.list; x; x = x->next) {
    if (!x->held || !x->held->waiting || !x->req || strcmp(x->sid, sid)) continue;
    size_t i;
    json_t *id;
    json_array_foreach(x->ids, i, id) if (json_equal(id, rid)) {
      GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
             "the client cancelled its call held for approval request %s (the request stays pending)", x->held->id);
      gw_req *r = x->req;
      gw__x_client_done(x); /* stops waiting */
      gw_resp_end(r);
      return true;
    }
  }
  return false;
}

bool gw__held_cancel(gw_loop *lp, const char *tenant, const char *sid, json_t *msg) {
  json_t *rid = json_object_get(json_object_get(msg, "params"), "requestId");
  if (gw__held_cancel_local(lp, sid, rid)) return true;
  /* the call may be held on another loop (the client's other connection) */
  gw_proxy *p = gw__mcp_of(lp);
  if (lp->srv->nloops < 2 || !p || !rid) return false;
  char *note = json_dumps(msg, JSON_COMPACT);
  gw_revocation m;
  memset(&m, 0, sizeof m);
  if (note && strlen(note) < sizeof m.note && gw__fanout_allow_unfenced(p)) {
    snprintf(m.tenant, sizeof m.tenant, "%s", tenant);
    snprintf(m.sid, sizeof m.sid, "%s", sid);
    snprintf(m.note, sizeof m.note, "%s", note);
    m.cancel = true;
    m.unfenced = true;
    gw__fanout_send(lp->srv, &m, p);
  }
  free(note);
  return false;
}

bool gw__held_expired(gw_exchange *x) {
  if (!x->held || !x->held->waiting || !x->req) return false;
  char id[AP_ID_LEN + 1];
  snprintf(id, sizeof id, "%s", x->held->id);
  stop_waiting(x);
  GW_LOG(GW_LOG_INFO, "approvals", &((gw_log_ctx){x->tenant, x->req->id}),
         "the requester's token expired while their call waited for approval request %s (it stays pending)", id);
  gw__x_rpc_error(x, 200, GW_RPC_TOKEN_EXPIRED,
                  "your access token expired while this call waited for approval: request %s stays pending; once it "
                  "is approved, call the tool again with the same arguments (your client refreshes its token, or "
                  "sign in again)",
                  id);
  return true;
}

bool gw__held_drain(gw_exchange *x) {
  if (!x->held || !x->held->waiting || !x->req) return false;
  char id[AP_ID_LEN + 1];
  snprintf(id, sizeof id, "%s", x->held->id);
  stop_waiting(x);
  gw__x_rpc_error(x, 200, GW_RPC_APPROVAL,
                  "the gateway is restarting: approval request %s stays pending; once it is approved, call the tool "
                  "again with the same arguments",
                  id);
  return true;
}
