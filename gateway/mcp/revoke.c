/* gateway/mcp/revoke.c — the fan-out to every loop's live exchanges (see
 * mcp_proxy.h): store hooks and events queue what ends (or is notified)
 * after their transaction commits, every loop applies its queue, and a
 * writer reply waits at its loop's store-port gate until every loop has.
 *
 * Rules this file keeps, and why:
 *
 *  1. Nothing is ended inside a write transaction: hooks only register an
 *     after-commit action, so a rolled-back write revokes nothing.
 *  2. After the commit the message is queued on every loop, numbered
 *     (seq) in commit order under one mutex (fan_mu, which also covers
 *     uv_async_send: a loop leaves the list before its async handle
 *     closes). Each loop applies its queue in its async callback and
 *     records the last number it applied.
 *  3. The gate: before any writer reply is delivered on a loop, that loop
 *     applies its own queue, then the reply waits until every loop has
 *     applied what was queued before it — when SCIM's "active: false"
 *     gets its 200, the user's streams are cut on every loop. The writer
 *     thread never waits; a loop that applies kicks the gates that wait.
 *     Past revocation_fanout_timeout_ms the reply goes anyway (the store
 *     already refuses everything revoked), logged and counted.
 *  4. Exchanges are walked only with gw__x_foreach (references held) and
 *     matched on identity by gw__x_revoke; what a match does is the flow's
 *     on_revoke.
 *  5. Sessions that vanished (evicted, expired) are found in one read txn
 *     that only marks; the exchanges are ended after the txn is over,
 *     told why. A call held for approval in such a session ends as one
 *     whose session its client DELETEd does: -32010 naming the session's
 *     end, its request cancelled (held.c's gw__held_session_lost; the
 *     write that evicts or purges a session cancels the requests made in
 *     it too, mcp_session.c, so every loop hears it as a decision).
 *  6. The per-connector cut, live half: a membership change (SCIM PATCH,
 *     PUT, group DELETE: its members are removed first) and a policy PUT
 *     send `notify` — to the users added and removed, or to the whole
 *     tenant — and every loop applying it RECHECKS: in one read txn it
 *     marks the matching exchanges whose connector their user's live
 *     policy no longer shows (fail closed: an unreadable policy shows
 *     nothing), then hands those `hidden` and the others `notify`. What
 *     `hidden` does is the flow's: a single-connector GET stream gets
 *     list_changed and is cut, a call in flight ends with "access revoked"
 *     naming the connector, an aggregated feed ends, an aggregated list
 *     skips that connector; the aggregated client stream (no connector)
 *     stays and gets list_changed. It is a fenced message, so the
 *     triggering reply waits at its gate for every loop (rule 3), and it
 *     is queued after the commit (rule 1): a rolled-back write ends
 *     nothing. A loop evaluates policy only for its own live exchanges.
 *     A call held for approval is decided again there too: one whose tool
 *     the user's policy now blocks (or whose connector it hides) ends at
 *     once with -32003, as a blocked call is answered (held.c; a new
 *     policy document cancelled its request in its own transaction,
 *     policy/approval.h).
 *  7. The per-connector cut, store half: the single-connector sessions of
 *     a connector the user no longer sees are deleted and the aggregated
 *     sessions forget their upstream session id for it (mcp_session.h,
 *     gw_sessions_cut_step), so putting the grant back revives nothing
 *     old. The writer transaction stays bounded whatever the tenant's
 *     size: a membership change cuts its removed users' sessions itself
 *     (work proportional to the change: one index seek per removed user,
 *     one policy evaluation and at most sessions_per_user_max records per
 *     user who holds sessions), a policy PUT only when pol_event.narrows
 *     (O(rules) to know), and either stops after CUT_INLINE index records:
 *     the rest is a sweep of the tenant in jobs of CUT_STEP records,
 *     chained on the writer thread and queued after the commit, before
 *     the reply is released — so the trigger's client's next write (the
 *     grant put back) runs after the first step. Until the sweep reaches a
 *     session the live check refuses its connector anyway. Session writes
 *     for a connector check visibility inside their own transaction
 *     (gw__visible_in), so none lands after a cut. A cut that fails inside
 *     the trigger does not fail it (the removal of access must commit): a
 *     sweep follows. The upstream sessions a cut drops (the trigger's, each
 *     sweep step's) are collected as they go and ended at the upstream
 *     after that write's commit (cut_ctx's collector, usess_end.c rule 7);
 *     end_user_connector's cut collects nothing: its trigger's
 *     ST_EVENT_CREDENTIAL_ENDING did, with the credential being replaced.
 *  8. A user cut (deactivated, deleted, blocked, signed out everywhere) or
 *     a tenant deleted also closes the connections their last request
 *     authenticated on (gw_req_set_owner, gw_http_close_owner): an idle
 *     keep-alive connection closes when the loop applies the message, a
 *     busy one after the response it is writing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/clock.h"
#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/usess_end.h"
#include "auth/auth.h"
#include "auth/oauth_token.h"
#include "gateway/mcp/audit_log.h"
#include "gateway/mcp/decide.h"
#include "policy/approval.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/tenant.h"
#include "vault/grant.h"
#include "vault/vault.h"

gw_mcp_shared *gw__mcp_shared(const gw_server *srv) { return srv->mcp; }

const char *const gw_rev_trigger_names[GW_REV_N] = {
    "none",         "scim_patch",   "scim_put",  "scim_delete",     "admin_revoke",
    "tenant_delete", "token_revoke", "connector", "universal_logout", "user_credential"};
const double gw_fan_bucket_le[GW_FAN_NBUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1};

/* One loop applied revocation q: the time since it was queued. */
static void observe_fanout(gw_mcp_shared *sh, const gw_revocation *q) {
  uint64_t ns = uv_hrtime() - q->queued_ns;
  double s = (double)ns / 1e9;
  int b = 0;
  while (b < GW_FAN_NBUCKETS && s > gw_fan_bucket_le[b]) b++;
  atomic_fetch_add_explicit(&sh->fan_bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&sh->fan_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&sh->fan_sum_ns, ns, memory_order_relaxed);
}

/* A session its client DELETEd (either endpoint): every live exchange of
 * it ends on every loop, as end_lost ends an evicted one's — but the
 * DELETE itself, answered once every loop did. A call held for approval
 * is told its request was cancelled with the session (held.c). */
static void end_session(gw_exchange *x, void *arg) {
  const gw_revocation *q = arg;
  if (!x->req || x->kind == GW_X_DELETE || strcmp(x->tenant, q->tenant) || strcmp(x->sid, q->sid)) return;
  if (gw__held_session_ended(x)) return;
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req->id}),
         "ending a live exchange of a session its client ended (DELETE)");
  gw__x_end_why(x, "your MCP session was ended (DELETE): this request ended with it");
}

/* ---------- the recheck (rule 6) ---------- */

typedef struct recheck_arg {
  const gw_revocation *q; /* as sent: list_changed */
  gw_revocation hidden;   /* the copy an exchange whose connector is hidden gets */
} recheck_arg;

/* First pass, inside one read txn: mark; nothing is ended under the txn.
 * Only exchanges with both a user and a connector can lose one (not the
 * aggregated client stream, not the gateway's own probes). Fails closed: a
 * policy that cannot be read hides every connector. */
static void mark_hidden(gw_exchange *x, void *arg) {
  recheck_arg *a = arg;
  x->cut = false;
  if (!x->user[0] || !gw__x_matches(x, a->q)) return;
  bool held = gw__held_waiting(x);
  if (!held && !x->connector[0]) return;
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  /* a call held for approval whose tool the user may no longer call
   * (either endpoint: the held call names its connector and tool) */
  if (held) gw__held_mark(x, pu);
  if (!x->connector[0]) return;
  x->cut = !pu || !pol_connector_visible(pu, x->connector);
}

static void act_recheck(gw_exchange *x, void *arg) {
  recheck_arg *a = arg;
  if (!gw__x_matches(x, a->q)) return;
  bool cut = x->cut;
  x->cut = false;
  if (gw__held_blocked(x)) return; /* answered -32003: blocked now */
  gw__x_revoke_one(x, cut ? &a->hidden : a->q);
}

/* The tool sets of q's users (or of the whole tenant) may have changed:
 * what they hold toward a connector they no longer see ends, the rest is
 * told list_changed. */
static void recheck(gw_loop *lp, gw_proxy *p, const gw_revocation *q) {
  recheck_arg a;
  a.q = q;
  a.hidden = *q;
  a.hidden.notify = false;
  a.hidden.hidden = true;
  st_txn *pin = gw__read_pin(lp);
  gw__x_foreach(&p->reg, mark_hidden, &a);
  gw__read_unpin(lp, pin);
  gw__x_foreach(&p->reg, act_recheck, &a);
}

/* Applies one message on this loop. */
static void apply(gw_loop *lp, gw_proxy *p, gw_revocation *q) {
  if (q->origin == lp->index) return; /* it applied it when it sent it */
  if (q->probe) {
    if (lp->index == 0) gw_agg_probe_connector(lp, q->tenant, q->connector); /* once per process */
    return;
  }
  if (q->session_gone) {
    gw__x_foreach(&p->reg, end_session, q);
    return;
  }
  if (q->cancel) {
    json_t *msg = json_loads(q->note, 0, NULL);
    if (msg) gw__agg_cancel_local(lp, q->sid, msg, NULL);
    json_decref(msg);
    return;
  }
  if (q->session_opened) {
    gw__agg_session_opened(lp, q->tenant, q->sid, q->connector, q->upstream);
    return;
  }
  if (q->approval) {
    gw__held_decided(lp, q);
    return;
  }
  if (q->notify) {
    recheck(lp, p, q);
    return;
  }
  if (q->tenant_gone && lp->pol) pol_cache_drop_tenant(lp->pol, q->tenant);
  gw__x_revoke(&p->reg, q);
  /* a user cut (or a tenant deleted): their keep-alive connections close
   * too, not only what is streaming on them (rule 8) */
  if (!q->notify && !q->connector[0] && !q->tokid[0] && (q->tenant_gone || q->user[0]))
    gw_http_close_owner(&lp->http, q->tenant, q->tenant_gone ? NULL : q->user);
  /* the sessions of a deactivated user or a deleted tenant are gone from
   * the store: their in-memory state goes too (process-wide: the primary) */
  if (lp->index == 0 && (q->tenant_gone || (!q->notify && q->user[0] && !q->connector[0] && !q->tokid[0])))
    gw__agg_forget_owner(lp->srv->mcp, q->tenant, q->tenant_gone ? NULL : q->user);
}

/* Wakes the gates of other loops holding a reply (fan_mu held). */
static void kick_parked(gw_mcp_shared *sh, const gw_proxy *self) {
  for (gw_proxy *o = sh->loops; o; o = o->fan_next)
    if (o != self && atomic_load(&o->parked) && o->lp->port) st_port_kick(o->lp->port);
}

static void end_any(gw_exchange *x, void *arg) {
  (void)arg;
  gw__x_end(x);
}

void gw_proxy_revocations_drain(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p) return;
  gw_mcp_shared *sh = lp->srv->mcp;
  gw__usess_end_take(lp); /* DELETEs the writer's after-commits posted here */
  uv_mutex_lock(&sh->fan_mu);
  gw_revocation *q = p->queue;
  p->queue = p->queue_tail = NULL;
  uv_mutex_unlock(&sh->fan_mu);
  uint64_t last = 0, missed = atomic_exchange(&p->missed, 0);
  if (!q && !missed) return;
  if (missed) {
    /* a message could not be queued here (out of memory): which exchanges
     * it would have ended is unknown, so every one of this loop ends —
     * clients reconnect, and the store refuses whatever was revoked */
    GW_LOG(GW_LOG_ERROR, "mcp", NULL, "loop %d missed a revocation (out of memory); ending its %s", lp->index,
           "live exchanges");
    gw__x_foreach(&p->reg, end_any, NULL);
    last = missed;
  }
  while (q) {
    gw_revocation *n = q->next;
    if (q->trigger) observe_fanout(sh, q);
    apply(lp, p, q);
    if (q->seq > last) last = q->seq;
    free(q);
    q = n;
  }
  if (last > atomic_load(&p->applied)) atomic_store(&p->applied, last);
  /* Dekker with the gate: it parks, then reads `applied`; we store
   * `applied`, then read `parked` (both seq_cst): one of us sees the other */
  if (atomic_load(&sh->parked) > 0) {
    uv_mutex_lock(&sh->fan_mu);
    kick_parked(sh, p);
    uv_mutex_unlock(&sh->fan_mu);
  }
}

void gw__fanout_send(gw_server *srv, const gw_revocation *m, const gw_proxy *except) {
  gw_mcp_shared *sh = srv->mcp;
  if (!sh) return;
  uv_mutex_lock(&sh->fan_mu);
  uint64_t seq = atomic_load(&sh->seq) + 1, now = uv_hrtime();
  if (m->trigger) atomic_fetch_add_explicit(&sh->revocations[m->trigger], 1, memory_order_relaxed);
  /* every loop gets every message (the origin skips its own): what each
   * loop applied is then one number */
  for (gw_proxy *p = sh->loops; p; p = p->fan_next) {
    gw_revocation *r = malloc(sizeof *r);
    if (!r) {
      atomic_store(&p->missed, seq); /* the loop ends everything it holds (drain) */
    } else {
      *r = *m;
      r->seq = seq;
      r->queued_ns = now;
      r->origin = except ? except->lp->index : -1;
      r->next = NULL;
      if (p->queue_tail) p->queue_tail->next = r;
      else p->queue = r;
      p->queue_tail = r;
    }
    uv_async_send(&p->async);
  }
  atomic_store(&sh->seq, seq);
  /* replies wait for what followed a commit, not for a loop's own news */
  if (!m->unfenced) atomic_store(&sh->fence_seq, seq);
  uv_mutex_unlock(&sh->fan_mu);
}

/* A loop's own unfenced news (a cancel for another loop's call) is
 * bounded: at most UNFENCED_PER_SEC per loop, so a client cannot keep
 * every loop busy with them. */
#define UNFENCED_PER_SEC 200

bool gw__fanout_allow_unfenced(gw_proxy *p) {
  uint64_t now = uv_now(&p->lp->loop);
  if (now - p->unfenced_window >= 1000) {
    p->unfenced_window = now;
    p->unfenced_sent = 0;
  }
  return ++p->unfenced_sent <= UNFENCED_PER_SEC;
}

void gw__fanout_join(gw_proxy *p) {
  gw_mcp_shared *sh = p->lp->srv->mcp;
  uv_mutex_lock(&sh->fan_mu);
  atomic_store(&p->applied, atomic_load(&sh->seq));
  p->fan_next = sh->loops;
  sh->loops = p;
  atomic_fetch_add(&sh->nloops, 1);
  uv_mutex_unlock(&sh->fan_mu);
}

void gw__fanout_leave(gw_proxy *p) {
  gw_mcp_shared *sh = p->lp->srv->mcp;
  uv_mutex_lock(&sh->fan_mu);
  for (gw_proxy **pp = &sh->loops; *pp; pp = &(*pp)->fan_next)
    if (*pp == p) {
      *pp = p->fan_next;
      atomic_fetch_sub(&sh->nloops, 1);
      break;
    }
  if (atomic_exchange(&p->parked, false)) atomic_fetch_sub(&sh->parked, 1);
  /* gates waiting for this loop need not any more */
  if (atomic_load(&sh->parked) > 0) kick_parked(sh, p);
  uv_mutex_unlock(&sh->fan_mu);
}

static void on_gate_timer(uv_timer_t *t) {
  gw_proxy *p = t->data;
  if (p->lp->port) st_port_kick(p->lp->port);
}

static void unpark(gw_proxy *p, gw_mcp_shared *sh) {
  if (atomic_load(&p->parked) && atomic_exchange(&p->parked, false)) {
    atomic_fetch_sub(&sh->parked, 1);
    uv_timer_stop(&p->gate_timer);
  }
}

/* state[0]: the fence, the last fenced message queued before the reply
 * reached the port (its own revocations were queued before it was
 * delivered); state[1]: the loop time it arrived + 1. */
void gw__fanout_stamp(void *arg, uint64_t state[2]) {
  gw_loop *lp = arg;
  state[0] = atomic_load(&lp->srv->mcp->fence_seq);
  state[1] = uv_now(&lp->loop) + 1;
}

/* One warning per 10 s per loop, with how many went unsaid. */
static void warn_timeout(gw_proxy *p, int behind, int first_behind, uint64_t limit, uint64_t now) {
  if (p->warned_at && now - p->warned_at < 10000) {
    p->warn_suppressed++;
    return;
  }
  GW_LOG(GW_LOG_WARN, "mcp", NULL,
         "revocation fan-out: %d loop(s) (loop %d first) did not apply within revocation_fanout_timeout_ms (%llu "
         "ms); replying anyway, the store already refuses what was revoked (%llu more such replies on loop %d "
         "since the last warning)",
         behind, first_behind, (unsigned long long)limit, (unsigned long long)p->warn_suppressed, p->lp->index);
  p->warned_at = now;
  p->warn_suppressed = 0;
}

bool gw__fanout_gate(void *arg, uint64_t state[2]) {
  gw_loop *lp = arg;
  gw_proxy *p = gw__mcp_of(lp);
  if (!p) return true;
  gw_mcp_shared *sh = lp->srv->mcp;
  gw_proxy_revocations_drain(lp);
  uint64_t now = uv_now(&lp->loop);
  if (!state[1]) gw__fanout_stamp(arg, state);
  /* one loop (it just applied its queue), or a fence a reply before this
   * one already gave up on */
  if (atomic_load(&sh->nloops) <= 1 || state[0] <= p->passed_fence) {
    unpark(p, sh);
    return true;
  }
  if (!atomic_exchange(&p->parked, true)) atomic_fetch_add(&sh->parked, 1);
  int behind = 0, first_behind = -1;
  uv_mutex_lock(&sh->fan_mu);
  for (gw_proxy *o = sh->loops; o; o = o->fan_next)
    if (atomic_load(&o->applied) < state[0]) {
      if (!behind++) first_behind = o->lp->index;
    }
  uv_mutex_unlock(&sh->fan_mu);
  if (!behind) {
    unpark(p, sh);
    return true;
  }
  uint64_t waited = now - (state[1] - 1), limit = (uint64_t)lp->srv->cfg.revocation_fanout_timeout_ms;
  if (waited >= limit) {
    unpark(p, sh);
    atomic_fetch_add(&sh->fan_timeouts, 1);
    if (state[0] > p->passed_fence) p->passed_fence = state[0];
    warn_timeout(p, behind, first_behind, limit, now);
    return true;
  }
  uv_timer_start(&p->gate_timer, on_gate_timer, limit - waited, 0);
  return false;
}

typedef struct lost_arg {
  st_txn *txn;
  int64_t now_ms;
} lost_arg;

/* First pass, inside one read txn: mark; nothing is ended under the txn. */
static void mark_lost(gw_exchange *x, void *arg) {
  lost_arg *a = arg;
  gw_session s;
  /* a DELETE is the session's end itself: between its job's commit and
   * its 204 (held at the gate for the other loops) the session is gone,
   * and its answer is still the 204 (as end_session spares it) */
  if (!x->req || !x->sid[0] || x->kind == GW_X_DELETE) return;
  x->lost = gw_session_get(a->txn, x->sid, &s) != 0                                 ? GW_X_LOST_GONE
            : gw_session_expired(&s, a->now_ms, gw_sessions_limits(x->lp->srv)) ? GW_X_LOST_EXPIRED
                                                                                 : 0;
}

/* A call held for approval is told its session's end and its request is
 * cancelled (held.c), as a DELETE's are (end_session); the others end. */
static void end_lost(gw_exchange *x, void *arg) {
  (void)arg;
  if (!x->lost) return;
  bool expired = x->lost == GW_X_LOST_EXPIRED;
  x->lost = 0;
  if (gw__held_session_lost(x, expired)) return;
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
         "ending a live exchange of an evicted or expired session");
  gw__x_end_why(x, expired ? "your MCP session expired (unused past the session idle timeout, or past its maximum "
                             "age): this request ended with it; start a new session"
                           : "your MCP session ended (it expired, or a newer session of yours evicted it past "
                             "sessions_per_user_max): this request ended with it; start a new session");
}

void gw_proxy_end_lost_sessions(gw_loop *lp) {
  lost_arg a = {NULL, gw_session_now_ms()};
  gw_proxy *p = gw__mcp_of(lp);
  if (!p || st_read_begin(lp->srv->store, &a.txn) != 0) return;
  gw__x_foreach(&p->reg, mark_lost, &a);
  /* the maps are the process's: swept once, by the primary */
  if (lp->index == 0) gw__agg_sweep(lp->srv->mcp, gw_sessions_limits(lp->srv), a.txn, a.now_ms);
  st_txn_end(a.txn);
  gw__x_foreach(&p->reg, end_lost, NULL);
}


typedef struct revoke_arg {
  gw_server *srv;
  gw_revocation r; /* the template queued on every loop (next unused) */
} revoke_arg;

/* Queues a copy of r on every loop. Any thread. */
static void enqueue(gw_server *srv, const gw_revocation *tmpl) { gw__fanout_send(srv, tmpl, NULL); }

static void fill(gw_revocation *r, const char *tenant, const char *user, const char *connector, const char *tokid) {
  memset(r, 0, sizeof *r);
  snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
  snprintf(r->user, sizeof r->user, "%s", user ? user : "");
  snprintf(r->connector, sizeof r->connector, "%s", connector ? connector : "");
  snprintf(r->tokid, sizeof r->tokid, "%s", tokid ? tokid : "");
}

void gw_proxy_notify_tools_changed(gw_server *srv, const char *tenant, const char *user) {
  gw_revocation r;
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
int gw__fanout_on_commit(st_txn *txn, gw_server *srv, const gw_revocation *r) {
  revoke_arg *a = malloc(sizeof *a);
  if (!a) return ST_ENOMEM;
  a->srv = srv;
  a->r = *r;
  int rc = st_txn_after_commit(txn, revoke_after_commit, free, a);
  if (rc) free(a);
  return rc;
}

/* what cut a user, by the event's via */
static int user_trigger(const char *via) {
  return !strcmp(via, "revoke")   ? GW_REV_ADMIN
         : !strcmp(via, "logout") ? GW_REV_UNIVERSAL_LOGOUT
         : !strcmp(via, "put")    ? GW_REV_SCIM_PUT
         : !strcmp(via, "delete") ? GW_REV_SCIM_DELETE
                                  : GW_REV_SCIM_PATCH;
}

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  gw_revocation r;
  fill(&r, ev->tenant, ev->id, NULL, NULL);
  /* a DELETE of an active user deactivates first: counted there; the one
   * sign-out everywhere there is, Okta's Universal Logout */
  /* a sign-out by the admin's restore or the user's sign-in completes a
   * logout that could not be written, counted when it came; by the IdP's
   * word that ends a deactivation that could not be written ("settle",
   * store/dir.h), that deactivation, counted alike */
  /* a SCIM write that contradicted the e-mail binding the user was reached
   * by signs them out (auth/login.h rule a): counted as that write */
  if (kind == ST_DIR_EV_USER_SIGNED_OUT)
    r.trigger = ev->via && (!strcmp(ev->via, "restore") || !strcmp(ev->via, "signin") || !strcmp(ev->via, "settle"))
                    ? GW_REV_NONE
                : ev->via && (!strcmp(ev->via, "put") || !strcmp(ev->via, "patch")) ? user_trigger(ev->via)
                                                                                      : GW_REV_UNIVERSAL_LOGOUT;
  else if (kind == SCIM_EV_USER_DEACTIVATED && ev->via) r.trigger = user_trigger(ev->via);
  return gw__fanout_on_commit(txn, ctx, &r);
}

/* A deactivation that could not be written (store.h's dir: the user is
 * marked cut in memory): the user's live exchanges end now, as after a
 * commit. On the thread that marked (a loop, in the write's done). */
static void on_cut_unwritten(void *ctx, const char *tenant, const char *id, const char *via) {
  gw_revocation r;
  fill(&r, tenant, id, NULL, NULL);
  r.trigger = user_trigger(via);
  enqueue(ctx, &r);
}

/* A membership removal (or a group's deletion) that could not be written:
 * the users' groups now leave that group out (store/dir.h), so their
 * tool sets may have shrunk — the same recheck as after a committed
 * membership change (rule 6): what they hold toward a connector they no
 * longer see ends, the rest is told list_changed. A whole group (uid
 * NULL): the whole tenant is rechecked. On the thread that marked. */
static void on_membership_cut(void *ctx, const char *tenant, const char *gid, const char *uid) {
  (void)gid;
  gw_proxy_notify_tools_changed(ctx, tenant, uid);
}

/* A tenant being deleted: every live exchange of it ends and every loop
 * drops its cached policy. */
static int on_tenant_deleting(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_tenant_event *ev = event;
  (void)kind;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, NULL, NULL);
  r.tenant_gone = true;
  r.trigger = GW_REV_TENANT;
  return gw__fanout_on_commit(txn, ctx, &r);
}

/* An employee token revoked: what was opened with it (streams, calls in
 * flight) ends. */
static int on_token_revoked(st_txn *txn, int kind, const void *event, void *ctx) {
  const auth_token_event *ev = event;
  (void)kind;
  /* an employee token, or an OAuth grant (its id is the identity's token id) */
  if ((strcmp(ev->kind, AUTH_KIND_EMPLOYEE) && strcmp(ev->kind, AUTH_KIND_OAUTH)) || !ev->tokid[0]) return 0;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, NULL, ev->tokid);
  r.trigger = GW_REV_TOKEN;
  return gw__fanout_on_commit(txn, ctx, &r);
}

typedef struct notify_arg {
  gw_server *srv;
  char tenant[64];
  json_t *users; /* NULL: everyone in the tenant */
} notify_arg;

/* Past this many users a change is told to the whole tenant in one
 * message: every message makes every loop walk all its exchanges (and
 * recheck them), so a 50,000-member group deleted costs one walk, not
 * 50,000. Users it did not concern get a list_changed too: harmless. */
#define NOTIFY_USERS_MAX 64

static void notify_after_commit(void *arg) {
  notify_arg *a = arg;
  if (json_array_size(a->users) > NOTIFY_USERS_MAX) {
    json_decref(a->users);
    a->users = NULL;
  }
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

/* After txn commits: list_changed to users (a JSON array of user ids,
 * stolen) or, with NULL, to the whole tenant. */
static int notify_after(st_txn *txn, gw_server *srv, const char *tenant, json_t *users) {
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

/* ---------- the per-connector cut, store half (rule 7) ---------- */

#define CUT_INLINE 512 /* session index records a triggering transaction reads itself */
#define CUT_STEP 1000  /* ... that one follow-up job reads */

/* gw_session_hidden_fn over a pol_batch, opened (the tenant's policy read
 * and compiled) only when a first session is found — a removed user with
 * no session costs one index seek — and shared by every step of one
 * transaction; the last user's policy is kept (the "u" index is in user
 * order). A policy that cannot be built leaves the session alone and
 * marks the walk failed: a sweep then runs it again (the live check
 * refuses the connector meanwhile). */
typedef struct cut_ctx {
  const char *tenant;
  pol_batch *b;
  char user[40];
  pol_user *pu;
  bool failed;
  /* what the cut takes away upstream, ended there after the commit
   * (usess_end.c rule 7): made at the first step with srv */
  gw_server *srv;
  gw_usess_col *col;
  gw_session_obs obs;
} cut_ctx;

static bool cut_hidden(void *arg, st_txn *txn, const char *user, const char *connector) {
  cut_ctx *c = arg;
  if (!c->b && pol_batch_open(txn, c->tenant, &c->b) != 0) {
    c->failed = true;
    return false;
  }
  if (!c->pu || strcmp(c->user, user)) {
    pol_user_free(c->pu);
    c->pu = NULL;
    snprintf(c->user, sizeof c->user, "%s", user);
    if (pol_batch_user(c->b, txn, user, &c->pu) != 0) {
      c->failed = true;
      return false;
    }
  }
  return !pol_connector_visible(c->pu, connector);
}

/* txn: the transaction the steps ran in, where what they collected is
 * handed on (a rolled back one discards it). */
static void cut_ctx_done(cut_ctx *c, st_txn *txn) {
  pol_user_free(c->pu);
  pol_batch_free(c->b);
  gw__usess_col_done(c->col, txn);
  c->col = NULL;
}

/* One step of the cut over cut->tenant (and cut->user) with c's policy
 * (budget and start are the caller's). */
static int cut_step(st_txn *txn, gw_session_cut *cut, cut_ctx *c) {
  c->tenant = cut->tenant;
  cut->hidden = cut_hidden;
  cut->ctx = c;
  if (!c->col && c->srv && (c->col = gw__usess_col_new(c->srv))) c->obs = (gw_session_obs){gw__usess_col_add, c->col};
  cut->obs = c->col ? &c->obs : NULL;
  return gw_sessions_cut_step(txn, cut);
}

/* A cut that failed inside a trigger's transaction does not fail the
 * trigger (a membership removal refused would keep the access it
 * removes): it is logged and a sweep does it after the commit. If the
 * failure poisoned the transaction (map full, I/O), the trigger aborts on
 * its own, and nothing was cut. */
static bool cut_failed(const char *tenant, int rc) {
  if (!rc) return false;
  GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){tenant, NULL}),
         "connector cut: the sessions could not be cut in the triggering write (%s); a sweep follows it if it commits",
         st_strerror(rc));
  return true;
}

/* A follow-up sweep of a whole tenant, in jobs of CUT_STEP records chained
 * on the writer thread (port NULL): queued after the trigger's commit,
 * before its reply is released, so a write the trigger's client sends
 * after the reply (putting a grant back) queues behind its first step. */
typedef struct sweep {
  st_store *st;
  gw_server *srv;
  int step; /* records per job */
  char tenant[64];
  gw_session_cut cut; /* from/flen: where the next step starts */
  int total, steps;
  bool failed;
} sweep;

static int job_sweep(st_txn *txn, void *arg) {
  sweep *w = arg;
  w->cut.tenant = w->tenant;
  w->cut.user = NULL;
  w->cut.budget = w->step;
  cut_ctx c = {.srv = w->srv};
  int rc = cut_step(txn, &w->cut, &c);
  w->failed = c.failed;
  cut_ctx_done(&c, txn);
  return rc;
}

static void sweep_done(int status, void *arg) {
  sweep *w = arg;
  if (status < 0) {
    GW_LOG(GW_LOG_ERROR, "mcp", &((gw_log_ctx){w->tenant, NULL}),
           "connector cut: a sweep step failed (%s); the sessions it did not reach stay until a later membership "
           "change or policy PUT (their connector is refused meanwhile)",
           st_strerror(status));
    free(w);
    return;
  }
  w->total += w->cut.cut;
  w->steps++;
  if (w->failed)
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){w->tenant, NULL}),
           "connector cut: a user's policy could not be read; their sessions stay (their connector is refused)");
  if (w->cut.more && w->cut.nlen) {
    memcpy(w->cut.from, w->cut.next, w->cut.nlen);
    w->cut.flen = w->cut.nlen;
    w->failed = false;
    int rc = st_submit(w->st, NULL, job_sweep, sweep_done, w);
    if (rc == 0) return;
    GW_LOG(GW_LOG_ERROR, "mcp", &((gw_log_ctx){w->tenant, NULL}), "connector cut: the sweep stopped (%s)",
           st_strerror(rc));
  }
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){w->tenant, NULL}),
         "connector cut: sweep over, %d session(s) or upstream session id(s) gone in %d step(s)", w->total, w->steps);
  free(w);
}

static void sweep_after_commit(void *arg) {
  sweep *w = arg;
  int rc = st_submit(w->st, NULL, job_sweep, sweep_done, w);
  if (rc == 0) return;
  GW_LOG(GW_LOG_ERROR, "mcp", &((gw_log_ctx){w->tenant, NULL}), "connector cut: the sweep could not start (%s)",
         st_strerror(rc));
  free(w);
}

/* After txn commits: a sweep of the tenant's sessions from `from` (flen 0:
 * the start). */
static int sweep_after(st_txn *txn, gw_server *srv, const char *tenant, const uint8_t *from, size_t flen) {
  sweep *w = calloc(1, sizeof *w);
  if (!w) return ST_ENOMEM;
  w->st = srv->store;
  w->srv = srv;
  w->step = srv->mcp->cut_step;
  snprintf(w->tenant, sizeof w->tenant, "%s", tenant);
  if (flen) memcpy(w->cut.from, from, flen);
  w->cut.flen = flen;
  int rc = st_txn_after_commit(txn, sweep_after_commit, free, w);
  if (rc) free(w);
  return rc;
}

/* Membership changes: the added and removed users' tool lists changed
 * (their loops recheck); a removed user may have lost connectors: their
 * sessions are cut in this transaction, CUT_INLINE records at most, the
 * rest by a sweep. A new group may bind a pending policy name: everyone
 * is told (it can only show more). So is everyone when a group is deleted:
 * a policy name bound to it binds another group of that name, if one has
 * it (policy's hook, in the same txn), and that group's members' lists
 * change though their membership did not (its own members are told, and
 * cut, through the membership change the delete emits first). The added
 * and removed users' pending approval requests of calls now blocked for
 * them are cancelled in this transaction. */
static int on_tools_changed(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  json_t *users = NULL;
  int rc = 0;
  if (kind == SCIM_EV_MEMBERSHIP_CHANGED) {
    users = json_array();
    for (size_t i = 0; i < ev->nadded; i++) json_array_append_new(users, json_string(ev->added[i]));
    for (size_t i = 0; i < ev->nremoved; i++) json_array_append_new(users, json_string(ev->removed[i]));
    int budget = ((gw_server *)ctx)->mcp->cut_inline;
    bool rest = false;
    cut_ctx c = {.srv = ctx};
    for (size_t i = 0; i < ev->nremoved && !rest; i++) {
      if (budget <= 0) { /* bounded: the others go to the sweep */
        rest = true;
        break;
      }
      gw_session_cut cut = {.tenant = ev->tenant, .user = ev->removed[i], .budget = budget};
      rest = cut_failed(ev->tenant, cut_step(txn, &cut, &c)) || cut.more;
      budget -= cut.read + 1; /* a user with no session still costs a seek */
    }
    rest |= c.failed;
    cut_ctx_done(&c, txn);
    if (rest) rc = sweep_after(txn, ctx, ev->tenant, NULL, 0);
    /* their pending requests of calls the policy now blocks for them are
     * cancelled here, held or not (policy/approval.h): a reviewer cannot
     * approve what its requester can no longer call. Failing does not fail
     * the change (the removal of access must commit): a held call's loop
     * cancels its own request on the recheck (held.c). */
    int ar = rc ? 0 : ap_users_recheck(txn, ev->tenant, (const char *const *)ev->added, ev->nadded, gw_wall_ms());
    if (!ar && !rc)
      ar = ap_users_recheck(txn, ev->tenant, (const char *const *)ev->removed, ev->nremoved, gw_wall_ms());
    if (ar)
      GW_LOG(GW_LOG_WARN, "approvals", &((gw_log_ctx){ev->tenant, NULL}),
             "a membership change could not cancel the pending requests it blocks: %s", ap_strerror(ar));
  }
  if (rc) {
    json_decref(users);
    return rc;
  }
  return notify_after(txn, ctx, ev->tenant, users);
}

/* ---------- connectors and policy (store events of vault/ and policy/) ---------- */

/* The connector's upstream sessions end with it (deleted), with its old
 * server (a PUT to a new URL: an upstream session id must never reach
 * another server) and with its old credential (a PUT that rekeys it: the
 * upstream knows those sessions, and the GET streams opened on them, as
 * whoever the old key or auth type made the gateway; an admin rotating a
 * leaked key expects nothing to go on under it once the PUT answered).
 * Its sessions on the single-connector endpoint go (the client gets 404
 * and starts over), aggregated sessions forget their upstream id for it
 * (the next call opens a fresh one, with the new credential), and its live
 * exchanges — calls in flight, upstream GET streams — end after the
 * commit, before the PUT's reply (the fan-out's gate). The upstream
 * sessions whose ids go here are not only forgotten: the same write,
 * before the change, collected them with the credential that opened each
 * (ST_EVENT_CREDENTIAL_ENDING, usess_end.c), and they are DELETEd at the
 * upstream after the commit — but at an origin the connector left. */
static int end_connector(st_txn *txn, gw_server *srv, const char *tenant, const char *connector) {
  int rc = gw_sessions_delete_connector(txn, tenant, connector);
  if (rc >= 0) rc = gw_sessions_drop_upstream_connector(txn, tenant, connector);
  if (rc < 0) return rc;
  gw_revocation r;
  fill(&r, tenant, NULL, connector, NULL);
  r.trigger = GW_REV_CONNECTOR;
  return gw__fanout_on_commit(txn, srv, &r);
}

/* approvals were for the old upstream's tools: its grants go, its pending
 * requests are cancelled (policy/approval.h) */
static int approvals_gone(st_txn *txn, const char *tenant, const char *connector) {
  return ap_connector_gone(txn, tenant, connector, gw_wall_ms());
}

static int on_connector_deleted(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_connector_event *ev = event;
  (void)kind;
  int rc = approvals_gone(txn, ev->tenant, ev->name);
  return rc ? rc : end_connector(txn, ctx, ev->tenant, ev->name);
}

static bool is_the_connector(void *ctx, st_txn *txn, const char *user, const char *connector) {
  (void)txn;
  (void)user;
  return !strcmp(ctx, connector);
}

/* The per-person version of end_connector: the credential a user's
 * upstream sessions with a connector were opened with is no longer theirs
 * (another key, a reconnect — maybe as another upstream account —, a
 * disconnect). The upstream knows those sessions, and the GET streams
 * opened on them, as whoever that credential made the gateway: the user's
 * single-connector sessions of it go (404: initialize again), their
 * aggregated sessions forget its upstream id (the next call opens a fresh
 * one with the new credential), and their live exchanges with it end
 * after the commit, before the write's reply (the fan-out's gate). Nobody
 * else's. Bounded: the user's sessions (sessions_per_user_max). As for
 * end_connector, the upstream sessions are DELETEd at the upstream after
 * the commit, with the old credential read before the change (usess_end.c). */
static int end_user_connector(st_txn *txn, gw_server *srv, const char *tenant, const char *user,
                              const char *connector) {
  gw_session_cut cut = {.tenant = tenant, .user = user, .hidden = is_the_connector, .ctx = (void *)connector,
                        .budget = CUT_STEP};
  for (;;) {
    int rc = gw_sessions_cut_step(txn, &cut);
    if (rc) return rc;
    if (!cut.more || !cut.nlen) break;
    memcpy(cut.from, cut.next, cut.nlen);
    cut.flen = cut.nlen;
  }
  gw_revocation r;
  fill(&r, tenant, user, connector, NULL);
  r.trigger = GW_REV_USER_CREDENTIAL;
  return gw__fanout_on_commit(txn, srv, &r);
}

/* A user connected a connector (or lost the grant): their open streams
 * hear list_changed once it commits (the connect tool gives way to the
 * connector's tools, or comes back). What the old credential opened
 * upstream ends (end_user_connector), unless a cut of all the user's, the
 * connector's or the tenant's grants ends it itself. */
static int on_grant_changed(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_grant_event *ev = event;
  (void)kind;
  int rc = ev->superseded ? end_user_connector(txn, ctx, ev->tenant, ev->user, ev->connector) : 0;
  return rc ? rc : notify_after(txn, ctx, ev->tenant, json_pack("[s]", ev->user));
}

/* A PUT: a moved or rekeyed connector's upstream sessions end as a
 * deleted one's do (end_connector); then the loop learns the connector's
 * capabilities (a probe, fire and forget). */
static int on_connector_put(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_connector_event *ev = event;
  (void)kind;
  /* what reviewers approved was for that server with that credential */
  int rc = ev->moved || ev->rekeyed ? approvals_gone(txn, ev->tenant, ev->name) : 0;
  if (!rc && (ev->moved || ev->rekeyed)) rc = end_connector(txn, ctx, ev->tenant, ev->name);
  if (rc) return rc;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, ev->name, NULL);
  r.probe = true;
  return gw__fanout_on_commit(txn, ctx, &r);
}

/* Every open stream of the tenant learns its tool list may have changed
 * (every loop rechecks the tenant's exchanges). A document that may hide
 * a connector from someone (pol_event.narrows: O(rules) to know) cuts the
 * tenant's sessions: CUT_INLINE records in this transaction, whatever the
 * tenant's size, then a sweep from where it stopped. */
static int on_policy_put(st_txn *txn, int kind, const void *event, void *ctx) {
  const pol_event *ev = event;
  (void)kind;
  int rc = 0;
  if (ev->narrows) {
    gw_session_cut cut = {.tenant = ev->tenant, .budget = ((gw_server *)ctx)->mcp->cut_inline};
    cut_ctx c = {.srv = ctx};
    bool failed = cut_failed(ev->tenant, cut_step(txn, &cut, &c)) || c.failed;
    cut_ctx_done(&c, txn);
    if (failed) rc = sweep_after(txn, ctx, ev->tenant, NULL, 0);
    else if (cut.more) rc = sweep_after(txn, ctx, ev->tenant, cut.next, cut.nlen);
  }
  return rc ? rc : notify_after(txn, ctx, ev->tenant, NULL);
}

/* The decision's audit record, queued once it committed. */
typedef struct decided_rec {
  gw_server *srv;
  char tenant[64], uid[ST_TENANT_UID_LEN + 1];
  json_t *rec;
} decided_rec;

static void decided_rec_free(void *arg) {
  decided_rec *d = arg;
  json_decref(d->rec);
  free(d);
}

static void decided_rec_submit(void *arg) {
  decided_rec *d = arg;
  gw_audit_submit(d->srv, d->tenant, d->uid, d->rec); /* takes it */
  free(d);
}

/* An approval request left "pending": the loop holding its call acts
 * (held.c), after the commit; the audit log records who decided and why. */
static int on_approval_decided(st_txn *txn, int kind, const void *event, void *ctx) {
  const ap_event *ev = event;
  gw_server *srv = ctx;
  (void)kind;
  if (srv->audit) {
    decided_rec *d = calloc(1, sizeof *d);
    if (!d) return ST_ENOMEM;
    d->srv = srv;
    snprintf(d->tenant, sizeof d->tenant, "%s", ev->tenant);
    if (st_tenant_uid_get(txn, ev->tenant, d->uid) != 0) d->uid[0] = 0;
    d->rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kind", "approval", "event", ev->state, "request", ev->id,
                       "user", ev->user, "by", ev->by, "reason", ev->reason);
    int rc = d->rec ? st_txn_after_commit(txn, decided_rec_submit, decided_rec_free, d) : ST_ENOMEM;
    if (rc) {
      decided_rec_free(d);
      return rc;
    }
  }
  gw_revocation r;
  fill(&r, ev->tenant, NULL, NULL, NULL);
  r.approval = true;
  snprintf(r.sid, sizeof r.sid, "%s", ev->id);
  json_t *n = json_pack("{s:s, s:s, s:s}", "state", ev->state, "by", ev->by, "reason", ev->reason);
  char *s = n ? json_dumps(n, JSON_COMPACT) : NULL;
  json_decref(n);
  if (!s || strlen(s) >= sizeof r.note) {
    free(s);
    n = json_pack("{s:s, s:s, s:s}", "state", ev->state, "by", "a reviewer", "reason", "");
    s = n ? json_dumps(n, JSON_COMPACT) : NULL;
    json_decref(n);
  }
  if (!s) return ST_ENOMEM;
  snprintf(r.note, sizeof r.note, "%s", s);
  free(s);
  return gw__fanout_on_commit(txn, ctx, &r);
}

int gw_proxy_register_hooks(gw_server *srv) {
  /* MCPGATE_TEST_CUT_BUDGET (a test hook): a smaller in-transaction cut
   * and sweep step, so the tests see a sweep of several steps do the rest */
  const char *cb = getenv("MCPGATE_TEST_CUT_BUDGET");
  int budget = cb ? atoi(cb) : 0;
  srv->mcp->cut_inline = budget > 0 ? budget : CUT_INLINE;
  srv->mcp->cut_step = budget > 0 ? budget : CUT_STEP;
  if (budget > 0)
    GW_LOG(GW_LOG_WARN, "mcp", NULL, "MCPGATE_TEST_CUT_BUDGET is set: a trigger cuts %d session record(s) itself, "
           "a sweep the rest in steps of as many (a test hook; never set it in production)", budget);
  int rc = st_dir_hook_user_cut(srv->store, on_user_gone, srv);
  if (!rc) rc = st_dir_hook_cut_unwritten(srv->store, on_cut_unwritten, srv);
  if (!rc) rc = st_dir_hook_membership_cut(srv->store, on_membership_cut, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_MEMBERSHIP_CHANGED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_GROUP_CREATED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_GROUP_DELETED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_CONNECTOR_PUT, on_connector_put, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_CONNECTOR_DELETE, on_connector_deleted, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_GRANT_CHANGED, on_grant_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_CREDENTIAL_ENDING, gw__usess_on_ending, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_POLICY_PUT, on_policy_put, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_TENANT_DELETING, on_tenant_deleting, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_TOKEN_REVOKED, on_token_revoked, srv);
  if (!rc) rc = st_hook_add(srv->store, AP_EV_DECIDED, on_approval_decided, srv);
  return rc;
}

