/* gateway/mcp/vault_worker.c — the revocation queue's worker (vault/grant.h
 * keeps the queue): sends RFC 7009 revocation requests for grants that left
 * the live tables, on the first loop of the process.
 *
 * Rules this file keeps, and why:
 *  1. The queue is in the store, written in the transaction that cut the
 *     grant: a crash between that commit and the upstream's answer loses
 *     nothing — after a restart the job is still due and is sent again
 *     (revoking twice is harmless: RFC 7009 §2.2 answers 200 for a token
 *     already invalid).
 *  2. Oldest due first, REVOKE_SLOTS jobs at a time, at most one of a
 *     tenant: a due job whose tenant has one in flight waits for a later
 *     turn, so one tenant's slow endpoints (its admin's choice, or its
 *     upstream's) hold one slot, never the others' revocations. Per job one
 *     request at a time: the refresh token first (at most authorization
 *     servers that ends the whole grant), then the access token. 200 is done; a network error or a 5xx is retried with backoff
 *     (1 s doubling to 5 min); 4xx (unsupported_token_type, invalid_client)
 *     is final and reported as failed; past REVOKE_GIVE_UP_MS after the job
 *     was queued it is failed ("gave up").
 *  3. The URL is the connector's revocation_url, set by a tenant admin
 *     (admin egress level) or named by a discovered upstream (the
 *     untrusted level off the hosts the admin chose, decided when the job
 *     was queued: vault_connector_url_admin_set); the connector's timeouts
 *     and CA file, a small body cap (the answer is only read for its error
 *     code). And a
 *     deadline for each request, REVOKE_DEADLINE_MS from its start,
 *     whatever the connector's timeouts say: an endpoint that answers its
 *     head and then trickles a byte now and then is never idle (nor one
 *     the admin gave a first_byte_ms of a day ever late) — without it one
 *     such endpoint held its slot (once, the whole queue) for as long as it
 *     liked. Running out is a transient failure like a 5xx (retried with
 *     backoff, then given up on).
 *  4. The queue is polled (REVOKE_POLL_MS): one cursor seek when empty.
 *     An entry that cannot be a job never stops it (vault/grant.h): the
 *     pick passes over it, and one whose record is corrupt is set aside by
 *     a writer job (vault_revoke_set_aside, one at a time) — logged once,
 *     at error level, its tenant's report "failed" saying why, counted by
 *     mcpgate_vault_revocations{state="corrupt"} and named by `mcpgate
 *     store check` until the sweep (rule 6) drops it revocation_give_up_ms
 *     later. Before, one such entry at the head of the queue held every
 *     tenant's revocations for good.
 *  5. Nothing of a token or secret is logged; outcomes are counted
 *     (gw_mcp_shared) for /metrics.
 *  6. Loss of access: a sweep (a writer job every quarter of
 *     revocation_grace_ms, between 0.5 and 10 s, SWEEP_BATCH grants a
 *     time) marks grants whose connector the user's policy no longer shows
 *     and drops those still hidden revocation_grace_ms later (reason
 *     lost_access) — a transient bad Group Push does not mass-revoke; the
 *     connector is refused to the user at once meanwhile (policy).
 * Threading: loop 0's thread; each slot's result is written by a writer
 * job that reports back on that loop's port. */
#include <limits.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/base/buf.h"
#include "gateway/base/clock.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/out/outbound.h"
#include "vault/connect.h"
#include "policy/policy.h"
#include "vault/grant.h"
#include "vault/vault.h"

#define REVOKE_POLL_MS 500
#define REVOKE_BODY_MAX 4096
#define REVOKE_BACKOFF_MAX_MS (5 * 60 * 1000)
#define REVOKE_DEADLINE_MS 15000 /* one request, start to end (rule 3) */
#define REVOKE_SLOTS 4           /* requests in flight at once, of as many tenants (rule 2) */
#define SWEEP_MAX_MS 10000 /* the loss-of-access sweep: at most this apart ... */
#define SWEEP_MIN_MS 500   /* ... and at least this (a quarter of the grace in between) */
#define SWEEP_BATCH 200    /* grants one sweep job looks at */

/* One request at a time per slot (rule 2). */
typedef struct vault_worker vault_worker;
typedef struct rv_slot {
  vault_worker *w;
  vault_revoke_job job;
  bool busy; /* a job is being sent or its result written */
  int step;  /* 0: refresh token, 1: access token */
  int status;
  bool done, final;
  bool refused; /* the refresh token's revocation was refused (4xx): err says how; the access token's is still sent */
  /* the request in flight and its deadline (rule 3) */
  gw_out_req *req;
  uv_timer_t deadline;
  bool deadline_open, timed_out;
  char err[160];
  gw_buf body;
} rv_slot;

struct vault_worker {
  gw_loop *lp;
  uint64_t deadline_ms; /* REVOKE_DEADLINE_MS (MCPGATE_TEST_REVOKE_DEADLINE_MS, a test hook, lowers it) */
  uv_timer_t timer;
  rv_slot slot[REVOKE_SLOTS];
  bool stopping;
  bool timer_open;
  /* the loss-of-access sweep (rule 6) */
  uv_timer_t sweep_timer;
  bool sweep_open, sweeping;
  bool setting_aside; /* a job setting corrupt entries aside is out (rule 4) */
  char sweep_cursor[VAULT_SWEEP_CURSOR];
};

static uint64_t wall_ms(void) { return (uint64_t)gw_wall_ms(); }

static void worker_maybe_free(vault_worker *w) {
  if (!w->stopping || w->timer_open || w->sweep_open || w->sweeping || w->setting_aside) return;
  for (int i = 0; i < REVOKE_SLOTS; i++)
    if (w->slot[i].busy || w->slot[i].deadline_open) return;
  for (int i = 0; i < REVOKE_SLOTS; i++) {
    vault_revoke_job_free(&w->slot[i].job);
    gw_buf_free(&w->slot[i].body);
  }
  free(w);
}

static void tick(uv_timer_t *t);

static void rearm(vault_worker *w, uint64_t ms) {
  if (!w->stopping && w->timer_open) uv_timer_start(&w->timer, tick, ms, 0);
}

/* ---- the outcome, written ---------------------------------------------------- */

static int job_result(st_txn *txn, void *arg) {
  rv_slot *sl = arg;
  char now[32];
  vault_rfc3339(0, now);
  int attempts = sl->job.attempts + 1;
  uint64_t backoff = 1000ull << (attempts < 9 ? attempts - 1 : 8);
  if (backoff > REVOKE_BACKOFF_MAX_MS) backoff = REVOKE_BACKOFF_MAX_MS;
  return vault_revoke_result(txn, sl->job.id, sl->job.due_ms, sl->done, sl->final, wall_ms() + backoff, sl->err, now);
}

static void done_result(int status, void *arg) {
  rv_slot *sl = arg;
  vault_worker *w = sl->w;
  if (status)
    GW_LOG(GW_LOG_ERROR, "vault", &((gw_log_ctx){sl->job.tenant, NULL}), "revocation %s: recording the outcome failed: %s",
           sl->job.id, st_strerror(status));
  sl->busy = false;
  vault_revoke_job_free(&sl->job);
  if (w->stopping) {
    worker_maybe_free(w);
    return;
  }
  rearm(w, status ? REVOKE_POLL_MS : 0); /* the next due job at once */
}

static void finish(rv_slot *sl) {
  gw_log_ctx lc = {sl->job.tenant, NULL};
  gw_mcp_shared *sh = sl->w->lp->srv->mcp;
  if (sh)
    atomic_fetch_add_explicit(sl->done ? &sh->revoke_sent_ok : sl->final ? &sh->revoke_sent_failed : &sh->revoke_sent_retry,
                              1, memory_order_relaxed);
  if (sl->done) GW_LOG(GW_LOG_INFO, "vault", &lc, "revocation %s: done at the upstream", sl->job.id);
  else if (sl->final) GW_LOG(GW_LOG_WARN, "vault", &lc, "revocation %s failed for good: %s", sl->job.id, sl->err);
  else GW_LOG(GW_LOG_INFO, "vault", &lc, "revocation %s: will retry (%s)", sl->job.id, sl->err);
  if (gw_loop_submit(sl->w->lp, job_result, done_result, sl) != 0) done_result(ST_EBUSY, sl);
}

/* ---- one request ------------------------------------------------------------- */

static void send_next(rv_slot *sl);

static void rv_headers(gw_out_req *o, int status, const gw_out_header *h, size_t n, void *ud) {
  (void)o, (void)h, (void)n;
  ((rv_slot *)ud)->status = status;
}

static int rv_data(gw_out_req *o, const char *p, size_t n, void *ud) {
  rv_slot *sl = ud;
  if (sl->body.len + n <= REVOKE_BODY_MAX) gw_buf_append(&sl->body, p, n);
  (void)o;
  return 0;
}

static void rv_deadline(uv_timer_t *t) {
  rv_slot *sl = t->data;
  if (!sl->req) return;
  sl->timed_out = true;
  gw_out_abort(sl->req); /* rv_done follows, from the loop */
}

static void rv_done(gw_out_req *o, int err, void *ud) {
  rv_slot *sl = ud;
  vault_worker *w = sl->w;
  (void)o;
  sl->req = NULL;
  if (sl->deadline_open && !w->stopping) uv_timer_stop(&sl->deadline);
  if (w->stopping) {
    /* shutdown: the job stays queued, sent again after the restart */
    sl->busy = false;
    worker_maybe_free(w);
    return;
  }
  if (err || sl->status >= 500 || sl->status == 429) {
    snprintf(sl->err, sizeof sl->err, "%s", err ? gw_out_strerror(err) : "the revocation endpoint answered a server error");
    if (err && sl->timed_out)
      snprintf(sl->err, sizeof sl->err, "the revocation endpoint did not answer within %.3g s (the request's deadline)",
               (double)w->deadline_ms / 1000);
    if (sl->status && !err) snprintf(sl->err, sizeof sl->err, "the revocation endpoint answered %d", sl->status);
    int64_t give_up = w->lp->srv->cfg.revocation_give_up_ms;
    sl->final = (int64_t)wall_ms() - sl->job.created_ms > give_up;
    if (sl->final) {
      size_t l = strlen(sl->err);
      snprintf(sl->err + l, sizeof sl->err - l, "; gave up after %lld s (revocation_give_up_ms)",
               (long long)(give_up / 1000));
    }
    finish(sl);
    return;
  }
  if (sl->status < 200 || sl->status > 299) { /* RFC 7009 answers 200; any 2xx is taken as done */
    json_t *j = gw_json_loadb(sl->body.data ? sl->body.data : "", sl->body.len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    snprintf(sl->err, sizeof sl->err, "the revocation endpoint answered %d%s%.40s%s", sl->status, e ? " " : "",
             e && strlen(e) < 40 ? e : "", sl->step == 0 ? " for the refresh token" : "");
    json_decref(j);
    if (sl->step == 0) {
      /* a server that does not revoke refresh tokens (unsupported_token_type,
       * RFC 7009 §2.2.1) or refuses this one may still revoke the access
       * token: sent all the same (found by review: it was never sent, and
       * stayed valid upstream until it expired); the job fails after it */
      sl->refused = true;
      sl->step++;
      send_next(sl);
      return;
    }
    sl->final = true;
    finish(sl);
    return;
  }
  /* this token is revoked: the next one, or done */
  sl->step++;
  send_next(sl);
}

static void send_next(rv_slot *sl) {
  vault_worker *w = sl->w;
  const char *token = NULL, *hint = NULL;
  while (sl->step < 2 && !token) {
    token = sl->step == 0 ? sl->job.refresh : sl->job.access;
    hint = sl->step == 0 ? "refresh_token" : "access_token";
    if (!token) sl->step++;
  }
  if (!token) {
    if (sl->refused) { /* the access token's done (or there was none): the refusal is the job's outcome */
      sl->final = true;
      finish(sl);
      return;
    }
    sl->done = true;
    sl->err[0] = 0;
    finish(sl);
    return;
  }
  char *body = NULL, *authz = NULL, *authz_line = NULL;
  int rc = vault_revoke_request(sl->job.client_id, sl->job.client_secret, sl->job.auth_post, token, hint, &body, &authz);
  if (!rc && authz) {
    size_t n = strlen(authz) + 16;
    authz_line = malloc(n);
    if (authz_line) snprintf(authz_line, n, "Authorization: %s", authz);
    else rc = ST_ENOMEM;
  }
  const char *lines[4] = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", authz_line,
                          NULL};
  gw_out_opts o = {0};
  o.method = "POST";
  o.url = sl->job.url;
  o.headers = lines;
  o.body = body;
  o.body_len = body ? strlen(body) : 0;
  o.connect_timeout_ms = sl->job.connect_ms;
  o.first_byte_timeout_ms = sl->job.first_byte_ms ? sl->job.first_byte_ms : 15000;
  o.idle_timeout_ms = 15000;
  o.ca_file = sl->job.ca_file;
  char ca_root[PATH_MAX]; /* a ca_file in the tenant's folder of tenant_ca_dir stays inside it */
  if (o.ca_file && gw_config_tenant_ca_path(&w->lp->srv->cfg, sl->job.tenant, o.ca_file, ca_root, sizeof ca_root))
    o.ca_root = ca_root;
  o.egress = sl->job.untrusted ? GW_OUT_EGRESS_UNTRUSTED : GW_OUT_EGRESS_ADMIN;
  o.fair_key = sl->job.tenant;
  o.budget_class = GW_OUT_BUDGET_GATEWAY; /* a revocation: never behind the tenant's calls */
  o.on_headers = rv_headers;
  o.on_data = rv_data;
  o.on_done = rv_done;
  o.ud = sl;
  sl->status = 0;
  sl->timed_out = false;
  gw_buf_reset(&sl->body);
  if (!rc) rc = gw_out_start(w->lp->out, &o, &sl->req);
  if (!rc && sl->deadline_open) uv_timer_start(&sl->deadline, rv_deadline, w->deadline_ms, 0);
  vault_wipe(body);
  vault_wipe(authz);
  vault_wipe(authz_line);
  if (rc) {
    sl->req = NULL;
    /* a ca_file the engine cannot use (GW_OUT_ETLS) reads as the TLS
     * failure it causes: a tenant admin reads this (last_error), the
     * operator's log says which file */
    if (rc == GW_OUT_ETLS) snprintf(sl->err, sizeof sl->err, "%s", gw_out_strerror(rc));
    else snprintf(sl->err, sizeof sl->err, "the request could not start: %s", gw_out_strerror(rc));
    sl->final = rc == GW_OUT_EINVAL || rc == GW_OUT_EEGRESS;
    finish(sl);
  }
}

/* ---- corrupt entries, set aside (rule 4) ------------------------------------- */

typedef struct aside_job {
  vault_worker *w;
  uint64_t now_ms;
  int n;
  vault_set_aside out[VAULT_SET_ASIDE_MAX];
} aside_job;

static int job_aside(st_txn *txn, void *arg) {
  aside_job *j = arg;
  char now[32];
  vault_rfc3339((int64_t)(j->now_ms / 1000), now);
  int n = vault_revoke_set_aside(txn, j->now_ms, now, j->out);
  if (n < 0) return n;
  j->n = n;
  return 0;
}

static void done_aside(int status, void *arg) {
  aside_job *j = arg;
  vault_worker *w = j->w;
  w->setting_aside = false;
  if (status) GW_LOG(GW_LOG_ERROR, "vault", NULL, "setting corrupt revocation queue entries aside failed: %s", st_strerror(status));
  for (int i = 0; !status && i < j->n; i++)
    GW_LOG(GW_LOG_ERROR, "vault", &((gw_log_ctx){j->out[i].tenant[0] ? j->out[i].tenant : NULL, NULL}),
           "revocation %s set aside: its queue entry is corrupt (%s); nothing was sent, and the tokens it was to revoke "
           "may still be live at the upstream — revoke them there by hand (mcpgate store check lists it)",
           j->out[i].id[0] ? j->out[i].id : "(id unreadable)", j->out[i].why);
  free(j);
  if (w->stopping) worker_maybe_free(w);
}

static void set_aside(vault_worker *w) {
  if (w->setting_aside || w->stopping) return;
  aside_job *j = calloc(1, sizeof *j);
  if (!j) return; /* the next poll tries again */
  j->w = w;
  j->now_ms = wall_ms();
  w->setting_aside = true;
  if (gw_loop_submit(w->lp, job_aside, done_aside, j) != 0) {
    w->setting_aside = false;
    free(j);
  }
}

/* ---- the poll ---------------------------------------------------------------- */

/* rule 2: a due job whose tenant has one in a slot waits for a later turn */
static bool pick_job(void *ctx, const char *tenant, const char *id) {
  vault_worker *w = ctx;
  (void)id;
  for (int i = 0; i < REVOKE_SLOTS; i++)
    if (w->slot[i].busy && !strcmp(w->slot[i].job.tenant, tenant)) return false;
  return true;
}

static void tick(uv_timer_t *t) {
  vault_worker *w = t->data;
  if (w->stopping) return;
  /* every free slot takes the next due job it may */
  for (int i = 0; i < REVOKE_SLOTS; i++) {
    rv_slot *sl = &w->slot[i];
    if (sl->busy) continue;
    st_txn *txn;
    if (st_read_begin(w->lp->srv->store, &txn) != 0) {
      rearm(w, REVOKE_POLL_MS);
      return;
    }
    uint64_t next = 0;
    int corrupt = 0;
    int rc = vault_revoke_next_pick(txn, wall_ms(), pick_job, w, &sl->job, &next, &corrupt);
    st_txn_end(txn);
    if (corrupt) set_aside(w); /* passed over meanwhile */
    if (rc) {
      if (rc != ST_ENOTFOUND)
        GW_LOG(GW_LOG_ERROR, "vault", NULL, "the revocation queue could not be read: %s", st_strerror(rc));
      rearm(w, REVOKE_POLL_MS);
      return;
    }
    sl->busy = true;
    sl->step = 0;
    sl->done = sl->final = sl->refused = false;
    sl->err[0] = 0;
    send_next(sl);
    if (w->stopping || !sl->busy) return; /* ended at once (its store write refused): rearmed */
  }
  /* every slot busy: a slot's end rearms */
}

/* ---- the loss-of-access sweep (rule 6) ---------------------------------------- */

static bool grant_visible(void *ctx, st_txn *txn, const char *tenant, const char *user, const char *connector) {
  (void)ctx;
  json_t *rec = NULL;
  bool ok = vault_connector_get(txn, tenant, connector, &rec) == 0 && vault_connector_is_per_user(rec);
  json_decref(rec);
  if (!ok) return false;
  pol_user *pu = NULL;
  int rc = pol_user_load(txn, tenant, user, &pu);
  /* a policy that cannot be read is no evidence of lost access */
  bool vis = rc != 0 || pol_connector_visible(pu, connector);
  pol_user_free(pu);
  return vis;
}

typedef struct sweep_job {
  vault_worker *w;
  uint64_t now_ms, grace_ms;
  uint64_t aside_before_ms; /* entries set aside before it are dropped (rule 4) */
  char from[VAULT_SWEEP_CURSOR];   /* where this step starts (input) */
  char cursor[VAULT_SWEEP_CURSOR]; /* where the next one starts (output) */
  int dropped;
} sweep_job;

static int job_sweep(st_txn *txn, void *arg) {
  sweep_job *j = arg;
  /* the sweep moves the cursor it is given: a run again (store.h: a job of
   * the batch failed) starts where this step starts, not past the grants
   * the aborted run looked at */
  memcpy(j->cursor, j->from, sizeof j->cursor);
  int n = vault_grants_sweep(txn, j->now_ms, j->grace_ms, grant_visible, NULL, j->cursor, SWEEP_BATCH);
  if (n < 0) return n;
  j->dropped = n;
  n = vault_revoke_set_aside_drop(txn, j->aside_before_ms, SWEEP_BATCH);
  return n < 0 ? n : 0;
}

static uint64_t sweep_every(const vault_worker *w) {
  uint64_t q = (uint64_t)w->lp->srv->cfg.revocation_grace_ms / 4;
  return q < SWEEP_MIN_MS ? SWEEP_MIN_MS : q > SWEEP_MAX_MS ? SWEEP_MAX_MS : q;
}

static void sweep_tick(uv_timer_t *t);

static void done_sweep(int status, void *arg) {
  sweep_job *j = arg;
  vault_worker *w = j->w;
  w->sweeping = false;
  if (status) GW_LOG(GW_LOG_ERROR, "vault", NULL, "the loss-of-access sweep failed: %s", st_strerror(status));
  else if (j->dropped)
    GW_LOG(GW_LOG_INFO, "vault", NULL, "%d upstream grant(s) revoked: their connector stayed hidden from the user for "
           "revocation_grace_ms", j->dropped);
  if (!status) memcpy(w->sweep_cursor, j->cursor, sizeof w->sweep_cursor);
  bool more = !status && j->cursor[0]; /* not round yet: go on soon */
  free(j);
  if (w->stopping) {
    worker_maybe_free(w);
    return;
  }
  if (w->sweep_open) uv_timer_start(&w->sweep_timer, sweep_tick, more ? 50 : sweep_every(w), 0);
}

static void sweep_tick(uv_timer_t *t) {
  vault_worker *w = t->data;
  if (w->stopping || w->sweeping) return;
  sweep_job *j = calloc(1, sizeof *j);
  if (!j) {
    uv_timer_start(&w->sweep_timer, sweep_tick, sweep_every(w), 0);
    return;
  }
  j->w = w;
  j->now_ms = wall_ms();
  j->grace_ms = (uint64_t)w->lp->srv->cfg.revocation_grace_ms;
  uint64_t keep = (uint64_t)w->lp->srv->cfg.revocation_give_up_ms;
  j->aside_before_ms = j->now_ms > keep ? j->now_ms - keep : 0;
  memcpy(j->from, w->sweep_cursor, sizeof j->from);
  w->sweeping = true;
  if (gw_loop_submit(w->lp, job_sweep, done_sweep, j) != 0) done_sweep(ST_EBUSY, j);
}

static void sweep_closed(uv_handle_t *h) {
  vault_worker *w = h->data;
  w->sweep_open = false;
  worker_maybe_free(w);
}

static void timer_closed(uv_handle_t *h) {
  vault_worker *w = h->data;
  w->timer_open = false;
  worker_maybe_free(w);
}

static void deadline_closed(uv_handle_t *h) {
  rv_slot *sl = h->data;
  sl->deadline_open = false;
  worker_maybe_free(sl->w);
}

int gw__vault_worker_start(gw_loop *lp) {
  vault_worker *w = calloc(1, sizeof *w);
  if (!w) return -1;
  w->lp = lp;
  w->deadline_ms = REVOKE_DEADLINE_MS;
  /* MCPGATE_TEST_REVOKE_DEADLINE_MS (a test hook): a shorter deadline, so
   * the tests of an endpoint that never finishes do not wait 15 s */
  gw_test_hook_ms("MCPGATE_TEST_REVOKE_DEADLINE_MS", REVOKE_DEADLINE_MS, "a revocation request ends after",
                  &w->deadline_ms);
  if (uv_timer_init(&lp->loop, &w->timer) != 0) {
    free(w);
    return -1;
  }
  w->timer.data = w;
  w->timer_open = true;
  for (int i = 0; i < REVOKE_SLOTS; i++) {
    rv_slot *sl = &w->slot[i];
    sl->w = w;
    gw_buf_init(&sl->body, REVOKE_BODY_MAX);
    if (uv_timer_init(&lp->loop, &sl->deadline) == 0) { /* (libuv's timer init cannot fail) */
      sl->deadline.data = sl;
      sl->deadline_open = true;
    }
  }
  if (uv_timer_init(&lp->loop, &w->sweep_timer) == 0) {
    w->sweep_timer.data = w;
    w->sweep_open = true;
    uv_timer_start(&w->sweep_timer, sweep_tick, sweep_every(w), 0);
  }
  gw__mcp_of(lp)->vault_worker = w;
  uv_timer_start(&w->timer, tick, 0, 0);
  return 0;
}

/* Before the loop's outbound engine closes (which ends a transfer in
 * flight: the job stays queued). */
void gw__vault_worker_stop(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  vault_worker *w = p ? p->vault_worker : NULL;
  if (!w) return;
  p->vault_worker = NULL;
  w->stopping = true;
  uv_close((uv_handle_t *)&w->timer, timer_closed);
  for (int i = 0; i < REVOKE_SLOTS; i++)
    if (w->slot[i].deadline_open) uv_close((uv_handle_t *)&w->slot[i].deadline, deadline_closed);
  if (w->sweep_open) uv_close((uv_handle_t *)&w->sweep_timer, sweep_closed);
}
