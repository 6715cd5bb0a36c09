/* gateway/mcp/mcp_loop.c — the MCP proxy's per-loop state: start, drain
 * (SIGTERM), stop, and the metrics of the loop (see mcp_proxy.h).
 *
 * Rules this file keeps: the state is freed only in the close callback of
 * its async handle (the last handle it owns); at stop every exchange is
 * unlinked before any is ended, so upstream halves still finishing later
 * (their up_done runs from gw_out_close) touch neither the registry nor
 * the metrics table. One timer per loop ends the client streams whose
 * token expired (the registry's heap, exchange.h): set for the earliest
 * deadline, at most EXPIRY_RECHECK_MS ahead, so a wall clock stepped
 * forward is caught within that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/clock.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_loop.h"
#include "vault/grant.h"
#include "gateway/base/log.h"
#include "gateway/core/module.h"
#include "gateway/mcp/upcall.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"

#define LDA(f) atomic_load_explicit(&(f), memory_order_relaxed)

/* Approvals (held.c, ap_notify.c): process-wide atomics every loop adds
 * to. decided_total counts the outcomes held calls learned while waiting
 * (a decision on a request whose client had left is not counted: the
 * admin list and the audit log have it). */
static void approvals_metrics(gw_mcp_shared *sh, gw_buf *o) {
  static const char *const outcome[] = {"approved", "denied", "cancelled", "timed_out"};
  int64_t held = LDA(sh->ap_held);
  gw_buf_printf(o,
                "# HELP mcpgate_approvals_held Tool calls held for approval now (a client waiting on its stream).\n"
                "# TYPE mcpgate_approvals_held gauge\nmcpgate_approvals_held %lld\n"
                "# HELP mcpgate_approval_requests_total Approval requests stored (calls held).\n"
                "# TYPE mcpgate_approval_requests_total counter\nmcpgate_approval_requests_total %llu\n"
                "# HELP mcpgate_approvals_decided_total Outcomes held calls learned while their client waited.\n"
                "# TYPE mcpgate_approvals_decided_total counter\n",
                (long long)(held > 0 ? held : 0), (unsigned long long)LDA(sh->ap_requests));
  for (int k = 0; k < 4; k++)
    gw_buf_printf(o, "mcpgate_approvals_decided_total{outcome=\"%s\"} %llu\n", outcome[k],
                  (unsigned long long)LDA(sh->ap_decided[k]));
  gw_buf_printf(o, "# HELP mcpgate_approval_decision_seconds From an approval request's creation to the decision "
                   "(approved, denied, cancelled) reaching its waiting call.\n"
                   "# TYPE mcpgate_approval_decision_seconds histogram\n");
  uint64_t cum = 0;
  for (int b = 0; b <= GW_AP_NBUCKETS; b++) {
    cum += LDA(sh->ap_bucket[b]);
    if (b < GW_AP_NBUCKETS)
      gw_buf_printf(o, "mcpgate_approval_decision_seconds_bucket{le=\"%g\"} %llu\n", gw_ap_bucket_le[b],
                    (unsigned long long)cum);
    else gw_buf_printf(o, "mcpgate_approval_decision_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  }
  gw_buf_printf(o,
                "mcpgate_approval_decision_seconds_sum %.3f\nmcpgate_approval_decision_seconds_count %llu\n"
                "# HELP mcpgate_approval_webhook_notifications_total Approval webhook notifications by outcome "
                "(retried: a POST that failed and was tried again; dropped: the loop's queue was full).\n"
                "# TYPE mcpgate_approval_webhook_notifications_total counter\n"
                "mcpgate_approval_webhook_notifications_total{result=\"ok\"} %llu\n"
                "mcpgate_approval_webhook_notifications_total{result=\"failed\"} %llu\n"
                "mcpgate_approval_webhook_notifications_total{result=\"retried\"} %llu\n"
                "mcpgate_approval_webhook_notifications_total{result=\"dropped\"} %llu\n",
                (double)LDA(sh->ap_dec_sum_ms) / 1000.0, (unsigned long long)LDA(sh->ap_dec_count),
                (unsigned long long)LDA(sh->hook_ok), (unsigned long long)LDA(sh->hook_failed),
                (unsigned long long)LDA(sh->hook_retried), (unsigned long long)LDA(sh->hook_dropped));
}

/* Every loop's numbers, summed. Copied under fan_mu (no loop leaves and
 * frees its state meanwhile), formatted after: the writer's fan-out never
 * waits on a scrape's formatting. */
void gw_proxy_metrics(gw_server *srv, gw_buf *o) {
  gw_mcp_shared *sh = srv->mcp;
  if (!sh) return;
  gw_mcp_stat_row *rows = NULL;
  size_t nrows = 0, cap = 0;
  gw_memo_stats ms = {0};
  gw_out_stats os = {0};
  int nloops = 0;
  uv_mutex_lock(&sh->fan_mu);
  for (gw_proxy *p = sh->loops; p; p = p->fan_next) {
    nloops++;
    gw__mcp_stats_copy(&p->stats, &rows, &nrows, &cap);
    gw_memo_stats m;
    gw_memo_stats_get(p->memo, &m);
    ms.ident_hits += m.ident_hits;
    ms.ident_misses += m.ident_misses;
    ms.conn_hits += m.conn_hits;
    ms.conn_misses += m.conn_misses;
    ms.settings_hits += m.settings_hits;
    ms.settings_misses += m.settings_misses;
    ms.upstream_hits += m.upstream_hits;
    ms.upstream_misses += m.upstream_misses;
    if (p->lp->out) {
      gw_out_stats s;
      gw_out_stats_get(p->lp->out, &s);
      os.open += s.open;
      for (int k = 0; k < GW_OUT_NKINDS; k++) os.failed[k] += s.failed[k];
    }
  }
  uv_mutex_unlock(&sh->fan_mu);
  gw__mcp_stats_render(rows, nrows, gw__agg_uri_maps(sh), o);
  free(rows);
  /* per-user upstream grants: counts read from the store (one scan of the
   * vault database), outcomes counted as they happen */
  vault_counts vc = {0};
  st_txn *vt;
  if (st_read_begin(srv->store, &vt) == 0) {
    vault_counts_get(vt, &vc);
    st_txn_end(vt);
  }
  gw_buf_printf(o,
                "# HELP mcpgate_vault_grants Per-user upstream grants held (employees' connections to oauth "
                "connectors).\n# TYPE mcpgate_vault_grants gauge\nmcpgate_vault_grants %ld\n"
                "# HELP mcpgate_vault_refreshes_total Refreshes of employees' upstream access tokens, by result "
                "(invalid: the authorization server said invalid_grant; the grant was deleted).\n"
                "# TYPE mcpgate_vault_refreshes_total counter\n"
                "mcpgate_vault_refreshes_total{result=\"ok\"} %llu\nmcpgate_vault_refreshes_total{result=\"failed\"} "
                "%llu\nmcpgate_vault_refreshes_total{result=\"invalid\"} %llu\n"
                "# HELP mcpgate_vault_revocations Upstream revocations (RFC 7009) of grants that left the gateway, by "
                "state (manual: the upstream has no revocation endpoint; revoke there by hand; corrupt: a queue entry "
                "the gateway could not read, set aside; revoke by hand).\n"
                "# TYPE mcpgate_vault_revocations gauge\n"
                "mcpgate_vault_revocations{state=\"pending\"} %ld\nmcpgate_vault_revocations{state=\"done\"} %ld\n"
                "mcpgate_vault_revocations{state=\"failed\"} %ld\nmcpgate_vault_revocations{state=\"manual\"} %ld\n"
                "mcpgate_vault_revocations{state=\"corrupt\"} %ld\n"
                "# HELP mcpgate_vault_revocation_attempts_total Revocation jobs sent, by outcome.\n"
                "# TYPE mcpgate_vault_revocation_attempts_total counter\n"
                "mcpgate_vault_revocation_attempts_total{outcome=\"done\"} %llu\n"
                "mcpgate_vault_revocation_attempts_total{outcome=\"retry\"} %llu\n"
                "mcpgate_vault_revocation_attempts_total{outcome=\"failed\"} %llu\n",
                vc.grants, (unsigned long long)atomic_load(&sh->refreshes_ok),
                (unsigned long long)atomic_load(&sh->refreshes_failed),
                (unsigned long long)atomic_load(&sh->refreshes_invalid), vc.pending, vc.done, vc.failed, vc.manual, vc.corrupt,
                (unsigned long long)atomic_load(&sh->revoke_sent_ok), (unsigned long long)atomic_load(&sh->revoke_sent_retry),
                (unsigned long long)atomic_load(&sh->revoke_sent_failed));
  gw_buf_printf(o,
                "# HELP mcpgate_memo_lookups_total Store reads of MCP requests answered from the per-snapshot memo (hit) "
                "or read afresh (miss), by table.\n"
                "# TYPE mcpgate_memo_lookups_total counter\n"
                "mcpgate_memo_lookups_total{table=\"identity\",result=\"hit\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"identity\",result=\"miss\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"connector\",result=\"hit\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"connector\",result=\"miss\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"settings\",result=\"hit\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"settings\",result=\"miss\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"upstream_session\",result=\"hit\"} %llu\n"
                "mcpgate_memo_lookups_total{table=\"upstream_session\",result=\"miss\"} %llu\n",
                (unsigned long long)ms.ident_hits, (unsigned long long)ms.ident_misses,
                (unsigned long long)ms.conn_hits, (unsigned long long)ms.conn_misses,
                (unsigned long long)ms.settings_hits, (unsigned long long)ms.settings_misses,
                (unsigned long long)ms.upstream_hits, (unsigned long long)ms.upstream_misses);
  gw_buf_printf(o,
                "# HELP mcpgate_upstream_transfers_open Outbound HTTP transfers in flight.\n"
                "# TYPE mcpgate_upstream_transfers_open gauge\nmcpgate_upstream_transfers_open %llu\n"
                "# HELP mcpgate_upstream_transfers_max Outbound HTTP transfers allowed in flight at once "
                "(upstream_connections); past it, or past a tenant's share, a call fails with kind \"busy\".\n"
                "# TYPE mcpgate_upstream_transfers_max gauge\nmcpgate_upstream_transfers_max %d\n"
                "# HELP mcpgate_mcp_buffered_bytes Bytes of upstream replies held while they arrive, past each one's "
                "first 64 KiB (mcp_buffered_max).\n"
                "# TYPE mcpgate_mcp_buffered_bytes gauge\nmcpgate_mcp_buffered_bytes %lld\n"
                "# HELP mcpgate_upstream_transfer_errors_total Outbound transfers that failed, by kind.\n"
                "# TYPE mcpgate_upstream_transfer_errors_total counter\n",
                (unsigned long long)os.open, gw_out_budget_max(), sh ? gw_buf_meter_used(&sh->buf_meter) : 0LL);
  for (int k = 0; k < GW_OUT_NKINDS; k++)
    if (os.failed[k])
      gw_buf_printf(o, "mcpgate_upstream_transfer_errors_total{kind=\"%s\"} %llu\n",
                    gw_out_err_kind(GW_OUT_ERR_FIRST - k), (unsigned long long)os.failed[k]);
  gw_buf_printf(o,
                "# HELP mcpgate_loops Event loops serving (workers).\n"
                "# TYPE mcpgate_loops gauge\nmcpgate_loops %d\n"
                "# HELP mcpgate_revocation_fanout_timeouts_total Writer replies (SCIM, admin) sent before every loop "
                "confirmed the revocations they caused (revocation_fanout_timeout_ms).\n"
                "# TYPE mcpgate_revocation_fanout_timeouts_total counter\n"
                "mcpgate_revocation_fanout_timeouts_total %llu\n"
                "# HELP mcpgate_revocations_total Revocations that ended live exchanges on every loop, by what "
                "caused them (a deactivation also revokes each OAuth grant: token_revoke).\n"
                "# TYPE mcpgate_revocations_total counter\n",
                nloops, (unsigned long long)atomic_load(&sh->fan_timeouts));
  for (int t = 1; t < GW_REV_N; t++)
    gw_buf_printf(o, "mcpgate_revocations_total{trigger=\"%s\"} %llu\n", gw_rev_trigger_names[t],
                  (unsigned long long)atomic_load_explicit(&sh->revocations[t], memory_order_relaxed));
  gw_buf_printf(o, "# HELP mcpgate_revocation_fanout_seconds From a revocation's commit to one loop having ended "
                   "what it covers (one observation per loop).\n"
                   "# TYPE mcpgate_revocation_fanout_seconds histogram\n");
  uint64_t cum = 0;
  for (int b = 0; b <= GW_FAN_NBUCKETS; b++) {
    cum += atomic_load_explicit(&sh->fan_bucket[b], memory_order_relaxed);
    if (b < GW_FAN_NBUCKETS)
      gw_buf_printf(o, "mcpgate_revocation_fanout_seconds_bucket{le=\"%g\"} %llu\n", gw_fan_bucket_le[b],
                    (unsigned long long)cum);
    else gw_buf_printf(o, "mcpgate_revocation_fanout_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  }
  gw_buf_printf(o, "mcpgate_revocation_fanout_seconds_sum %.6f\nmcpgate_revocation_fanout_seconds_count %llu\n",
                (double)atomic_load_explicit(&sh->fan_sum_ns, memory_order_relaxed) / 1e9,
                (unsigned long long)atomic_load_explicit(&sh->fan_count, memory_order_relaxed));
  approvals_metrics(sh, o);
  gw_buf_printf(o,
                "# HELP mcpgate_upstream_session_deletes_total DELETEs of upstream sessions the gateway stopped using "
                "(the connector moved within its origin, rekeyed or deleted; a person's own credential replaced or "
                "removed; a session just opened and not kept, or the capability probe's; the sessions of a person "
                "cut off, of a connector hidden from them, pushed out past the per-user cap, expired, or of a "
                "deleted tenant), by outcome: ended (2xx, or 404: unknown there), "
                "refused (another status), failed (no answer), dropped (not sent: no credential to end it with, "
                "or too many).\n"
                "# TYPE mcpgate_upstream_session_deletes_total counter\n"
                "mcpgate_upstream_session_deletes_total{result=\"ended\"} %llu\n"
                "mcpgate_upstream_session_deletes_total{result=\"refused\"} %llu\n"
                "mcpgate_upstream_session_deletes_total{result=\"failed\"} %llu\n"
                "mcpgate_upstream_session_deletes_total{result=\"dropped\"} %llu\n",
                (unsigned long long)LDA(sh->usess_ended), (unsigned long long)LDA(sh->usess_refused),
                (unsigned long long)LDA(sh->usess_failed), (unsigned long long)LDA(sh->usess_dropped));
}

/* SIGTERM: streams end now, cleanly (a chunked end: clients reconnect,
 * with Last-Event-ID, to another instance); plain requests finish. */
static void drain_one(gw_exchange *x, void *arg) {
  (void)arg;
  if (gw__held_drain(x)) return;
  if (x->kind != GW_X_GET && !x->started) return;
  gw__x_abort_upstream(x);
  if (x->req) {
    gw_req *r = x->req;
    bool started = x->started;
    gw__x_client_done(x);
    if (started) gw_resp_end(r);
    else gw_respond_error(r, 503, "shutting_down", "the gateway is restarting; reconnect");
  }
}

void gw_proxy_drain(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  if (p) gw__x_foreach(&p->reg, drain_one, NULL);
}

/* ---------- the tokens' expiry ---------- */

#define EXPIRY_RECHECK_MS 60000

static void on_expiry(uv_timer_t *t) {
  gw_proxy *p = t->data;
  gw__x_expiry_fire(&p->reg, gw_wall_ms() / 1000, gw__x_expired);
}

static void expiry_arm(gw_xreg *reg, int64_t at) {
  gw_proxy *p = reg->arm_data;
  int64_t ms = at * 1000 - gw_wall_ms();
  if (ms < 0) ms = 0;
  if (ms > EXPIRY_RECHECK_MS) ms = EXPIRY_RECHECK_MS;
  uv_timer_start(&p->expiry_timer, on_expiry, (uint64_t)ms, 0);
}

static void on_delay(uv_timer_t *t) { gw_proxy_revocations_drain(((gw_proxy *)t->data)->lp); }

/* Fan-out messages from another thread. MCPGATE_TEST_FANOUT_DELAY_MS (a
 * test hook, read at start) makes every loop apply them that much later —
 * a loop too busy to answer — except through its own gate, which applies
 * at once: the tests see the reply wait for the other loops. */
static void on_async(uv_async_t *a) {
  gw_proxy *p = a->data;
  if (!p->delay_ms) gw_proxy_revocations_drain(p->lp);
  else if (!uv_is_active((uv_handle_t *)&p->delay_timer)) uv_timer_start(&p->delay_timer, on_delay, p->delay_ms, 0);
}

/* ---------- loop setup ---------- */

int gw_proxy_loop_start(gw_loop *lp) {
  gw_proxy *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->lp = lp;
  if (uv_mutex_init(&p->stats.mu) != 0) {
    free(p);
    return -1;
  }
  if (uv_async_init(&lp->loop, &p->async, on_async) != 0) {
    uv_mutex_destroy(&p->stats.mu);
    free(p);
    return -1;
  }
  uv_timer_init(&lp->loop, &p->gate_timer);
  uv_timer_init(&lp->loop, &p->delay_timer);
  uv_timer_init(&lp->loop, &p->held_timer);
  uv_timer_init(&lp->loop, &p->expiry_timer);
  p->async.data = p->gate_timer.data = p->delay_timer.data = p->held_timer.data = p->expiry_timer.data = p;
  p->handles = 5;
  p->reg.arm = expiry_arm;
  p->reg.arm_data = p;
  const char *d = getenv("MCPGATE_TEST_FANOUT_DELAY_MS");
  p->delay_ms = d ? strtoull(d, NULL, 10) : 0;
  if (p->delay_ms && lp->index == 0)
    GW_LOG(GW_LOG_WARN, "mcp", NULL, "MCPGATE_TEST_FANOUT_DELAY_MS is set: revocations reach other loops %llu ms late "
           "(a test hook; never set it in production)", (unsigned long long)p->delay_ms);
  lp->proxy = p;
  gw__fanout_join(p);
  if (!(p->memo = gw_memo_new())) return -1;
  if (!(lp->pol = pol_cache_new(4096))) return -1;
  if (gw_out_new(&lp->loop, &lp->out) != 0) return -1;
  if (gw__ap_notify_start(p) != 0) return -1;
  if (gw__usess_ender_start(lp) != 0) return -1;
  if (lp->index == 0 && gw__vault_worker_start(lp) != 0) return -1; /* once per process */
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  gw_proxy *p = h->data;
  if (--p->handles > 0) return;
  /* nobody queues to p any more (it left the fan-out) */
  for (gw_revocation *q = p->queue, *n; q; q = n) {
    n = q->next;
    free(q);
  }
  for (gw_usess_end *b = p->ends_in, *n; b; b = n) { /* not sent: left to expire upstream */
    n = gw__usess_end_next(b);
    gw__usess_end_free(b);
  }
  gw__mcp_stats_free(&p->stats);
  uv_mutex_destroy(&p->stats.mu);
  gw_memo_free(p->memo);
  free(p);
}

void gw_proxy_loop_stop(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p) return;
  /* Unlink every exchange first: upstream halves still finishing after
   * this point (their on_done runs from gw_out_close) must not touch p,
   * and their metrics entries go with p. */
  gw__x_reg_close(&p->reg);
  gw__fanout_leave(p); /* before the async handle closes: nobody sends to it after */
  gw__vault_worker_stop(lp); /* before the engine: its transfer ends with it */
  gw__ap_notify_stop(p);     /* the same: its POSTs end with the engine */
  gw__usess_ender_stop(lp);  /* the same: its DELETEs end with the engine */
  if (lp->out) {
    gw_out_close(lp->out, NULL, NULL);
    lp->out = NULL;
  }
  lp->proxy = NULL;
  pol_cache_free(lp->pol);
  lp->pol = NULL;
  uv_close((uv_handle_t *)&p->gate_timer, on_handle_closed);
  uv_close((uv_handle_t *)&p->delay_timer, on_handle_closed);
  uv_close((uv_handle_t *)&p->held_timer, on_handle_closed);
  uv_close((uv_handle_t *)&p->expiry_timer, on_handle_closed);
  uv_close((uv_handle_t *)&p->async, on_handle_closed);
}

/* ---------- process-wide state ---------- */

struct gw_tenant_meter {
  struct gw_tenant_meter *next;
  gw_buf_meter m;
  char tenant[64];
};


static int mod_init(gw_server *srv) {
  gw_mcp_shared *sh = calloc(1, sizeof *sh);
  if (!sh) return -1;
  if (uv_mutex_init(&sh->fan_mu) != 0) {
    free(sh);
    return -1;
  }
  if (uv_mutex_init(&sh->maps_mu) != 0) {
    uv_mutex_destroy(&sh->fan_mu);
    free(sh);
    return -1;
  }
  if (uv_mutex_init(&sh->meter_mu) != 0) {
    uv_mutex_destroy(&sh->maps_mu);
    uv_mutex_destroy(&sh->fan_mu);
    free(sh);
    return -1;
  }
  sh->buf_meter.max = (long long)srv->cfg.mcp_buffered_max;
  /* MCPGATE_TEST_AGG_SESSIONS_MAX (a test hook): fewer sessions in each
   * of the aggregated endpoint's maps (agg_maps.c; else SESSIONS_MAX), so
   * the tests fill them */
  const char *am = getenv("MCPGATE_TEST_AGG_SESSIONS_MAX");
  if (am && atoi(am) > 0) {
    sh->agg_sessions_max = (size_t)atoi(am);
    GW_LOG(GW_LOG_WARN, "mcp", NULL, "MCPGATE_TEST_AGG_SESSIONS_MAX is set: the aggregated endpoint keeps the maps of "
           "%zu sessions at most (a test hook; never set it in production)", sh->agg_sessions_max);
  }
  /* MCPGATE_TEST_REFRESH_DEADLINE_MS (a test hook): a shorter deadline for
   * a grant's refresh request (grants.c), so the test of a token endpoint
   * that trickles its answer does not wait 15 s */
  sh->refresh_deadline_ms = VAULT_REFRESH_DEADLINE_MS;
  gw_test_hook_ms("MCPGATE_TEST_REFRESH_DEADLINE_MS", VAULT_REFRESH_DEADLINE_MS,
                  "a grant's refresh request ends after", &sh->refresh_deadline_ms);
  srv->mcp = sh;
  return 0;
}

static void mod_fini(gw_server *srv) {
  gw_mcp_shared *sh = srv->mcp;
  if (!sh) return;
  gw__agg_forget_owner(sh, NULL, NULL);
  json_decref(sh->heads);
  uv_mutex_destroy(&sh->fan_mu);
  uv_mutex_destroy(&sh->maps_mu);
  uv_mutex_destroy(&sh->meter_mu);
  for (size_t i = 0; i < sizeof sh->tenant_meters / sizeof sh->tenant_meters[0]; i++)
    for (struct gw_tenant_meter *m = sh->tenant_meters[i], *next; m; m = next) {
      next = m->next;
      free(m);
    }
  free(sh);
  srv->mcp = NULL;
}

gw_buf_meter *gw__mcp_meter(gw_loop *lp, const char *tenant) {
  gw_mcp_shared *sh = lp ? lp->srv->mcp : NULL;
  if (!sh || !sh->buf_meter.max) return NULL;
  unsigned h = 2166136261u;
  for (const char *c = tenant; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
  gw_proxy *p = lp->proxy;
  size_t slot = h % (sizeof p->meters / sizeof p->meters[0]);
  if (p && p->meters[slot].m && !strcmp(p->meters[slot].tenant, tenant)) return p->meters[slot].m;
  h %= sizeof sh->tenant_meters / sizeof sh->tenant_meters[0];
  uv_mutex_lock(&sh->meter_mu);
  struct gw_tenant_meter *m = sh->tenant_meters[h];
  while (m && strcmp(m->tenant, tenant)) m = m->next;
  if (!m && (m = calloc(1, sizeof *m)) != NULL) {
    gw_strlcpy(m->tenant, tenant, sizeof m->tenant);
    m->m.max = sh->buf_meter.max / 4;
    m->m.late_max = sh->buf_meter.max / 16;
    m->m.parent = &sh->buf_meter;
    m->next = sh->tenant_meters[h];
    sh->tenant_meters[h] = m;
  }
  uv_mutex_unlock(&sh->meter_mu);
  if (m && p && strlen(tenant) < sizeof p->meters[slot].tenant) {
    memcpy(p->meters[slot].tenant, tenant, strlen(tenant) + 1);
    p->meters[slot].m = &m->m;
  }
  return m ? &m->m : NULL;
}

/* ---------- module table entry (gateway/core/module.h) ---------- */

static int mod_store_init(st_store *st, gw_server *srv) {
  (void)st;
  return srv ? gw_proxy_register_hooks(srv) : 0; /* offline: no live exchanges */
}

static int mod_loop_start(gw_loop *lp) {
  if (gw_proxy_loop_start(lp) != 0) return -1;
  /* every reply of a write waits until every loop applied the
   * revocations its commit queued */
  st_port_gate(lp->port, gw__fanout_gate, gw__fanout_stamp, lp);
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
    .init = mod_init,
    .fini = mod_fini,
    .loop_start = mod_loop_start,
    .loop_stop = gw_proxy_loop_stop,
    .metrics = gw_proxy_metrics,
    .routes = mod_routes,
    .drain = gw_proxy_drain,
};
