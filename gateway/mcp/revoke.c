/* gateway/mcp/revoke.c — gw_revocation fan-out to the live exchanges (see
 * mcp_proxy.h): store hooks and events queue what ends (or is notified)
 * after their transaction commits, every loop applies its queue, and the
 * loop's store port drains it before any writer reply is delivered.
 *
 * Rules this file keeps, and why:
 *
 *  1. Nothing is ended inside a write transaction: hooks only register an
 *     after-commit action, so a rolled-back write revokes nothing.
 *  2. After the commit the gw_revocation is queued on every loop (mutex +
 *     uv_async_send, which coalesces wake-ups: the queue carries the
 *     messages) in commit order, and gw_proxy_before_done applies the
 *     queue before the originating reply is released: when SCIM's
 *     "active: false" gets its 200, the user's streams are already cut.
 *  3. Exchanges are walked only with gw__x_foreach (references held) and
 *     matched on identity by gw__x_revoke; what a match does is the flow's
 *     on_revoke.
 *  4. Sessions that vanished (evicted, expired) are found in one read txn
 *     that only marks; the exchanges are ended after the txn is over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/log.h"
#include "gateway/mcp/mcp_loop.h"
#include "auth/auth.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/tenant.h"
#include "vault/vault.h"

void gw_proxy_revocations_drain(gw_loop *lp) {
  gw_proxy *p = gw__mcp_of(lp);
  if (!p) return;
  uv_mutex_lock(&p->mu);
  gw_revocation *q = p->queue;
  p->queue = NULL;
  uv_mutex_unlock(&p->mu);
  while (q) {
    gw_revocation *n = q->next;
    if (q->probe) {
      gw_agg_probe_connector(lp, q->tenant, q->connector);
      free(q);
      q = n;
      continue;
    }
    if (q->tenant_gone && lp->pol) pol_cache_drop_tenant(lp->pol, q->tenant);
    gw__x_revoke(&p->reg, q);
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
static void mark_lost(gw_exchange *x, void *arg) {
  lost_arg *a = arg;
  gw_session s;
  if (!x->req || !x->sid[0]) return;
  x->lost = gw_session_get(a->txn, x->sid, &s) != 0 ||
            gw_session_expired(&s, a->now_ms, gw_sessions_limits(x->lp->srv));
}

static void end_lost(gw_exchange *x, void *arg) {
  (void)arg;
  if (!x->lost) return;
  x->lost = false;
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
         "ending a live exchange of an evicted or expired session");
  gw__x_end(x);
}

void gw_proxy_end_lost_sessions(gw_loop *lp) {
  lost_arg a = {NULL, gw_session_now_ms()};
  gw_proxy *p = gw__mcp_of(lp);
  if (!p || st_read_begin(lp->srv->store, &a.txn) != 0) return;
  gw__x_foreach(&p->reg, mark_lost, &a);
  gw__agg_sweep(p, a.txn, a.now_ms);
  st_txn_end(a.txn);
  gw__x_foreach(&p->reg, end_lost, NULL);
}


typedef struct revoke_arg {
  gw_server *srv;
  gw_revocation r; /* the template queued on every loop (next unused) */
} revoke_arg;

/* Queues a copy of r on every loop (one today). Any thread. */
static void enqueue(gw_server *srv, const gw_revocation *tmpl) {
  gw_proxy *p = gw__mcp_of(srv->lp);
  if (!p) return;
  gw_revocation *r = malloc(sizeof *r);
  if (!r) return;
  *r = *tmpl;
  uv_mutex_lock(&p->mu);
  /* appended: gw_revocations apply in the order they were committed */
  gw_revocation **tail = &p->queue;
  while (*tail) tail = &(*tail)->next;
  r->next = NULL;
  *tail = r;
  bool closing = p->closing;
  uv_mutex_unlock(&p->mu);
  if (!closing) uv_async_send(&p->async);
}

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
static int revoke_on_commit(st_txn *txn, gw_server *srv, const gw_revocation *r) {
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
  gw_revocation r;
  fill(&r, ev->tenant, ev->id, NULL, NULL);
  return revoke_on_commit(txn, ctx, &r);
}

/* A tenant being deleted: every live exchange of it ends and every loop
 * drops its cached policy. */
static int on_tenant_deleting(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_tenant_event *ev = event;
  (void)kind;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, NULL, NULL);
  r.tenant_gone = true;
  return revoke_on_commit(txn, ctx, &r);
}

/* An employee token revoked: what was opened with it (streams, calls in
 * flight) ends. */
static int on_token_revoked(st_txn *txn, int kind, const void *event, void *ctx) {
  const auth_token_event *ev = event;
  (void)kind;
  if (strcmp(ev->kind, AUTH_KIND_EMPLOYEE) || !ev->tokid[0]) return 0;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, NULL, ev->tokid);
  return revoke_on_commit(txn, ctx, &r);
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
  return notify_after(txn, ctx, ev->tenant, users);
}

/* ---------- connectors and policy (store events of vault/ and policy/) ---------- */

/* The connector's upstream sessions end with it (deleted) or with its old
 * server (a PUT to a new URL): an upstream session id must never reach
 * another server. Its sessions on the single-connector endpoint go (the
 * client gets 404 and starts over), aggregated sessions forget their
 * upstream id for it, and its live exchanges end after the commit. */
static int end_connector(st_txn *txn, gw_server *srv, const char *tenant, const char *connector) {
  int rc = gw_sessions_delete_connector(txn, tenant, connector);
  if (rc >= 0) rc = gw_sessions_drop_upstream_connector(txn, tenant, connector);
  if (rc < 0) return rc;
  gw_revocation r;
  fill(&r, tenant, NULL, connector, NULL);
  return revoke_on_commit(txn, srv, &r);
}

static int on_connector_deleted(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_connector_event *ev = event;
  (void)kind;
  return end_connector(txn, ctx, ev->tenant, ev->name);
}

/* A PUT: a moved connector ends like a deleted one; then the loop learns
 * the connector's capabilities (a probe, fire and forget). */
static int on_connector_put(st_txn *txn, int kind, const void *event, void *ctx) {
  const vault_connector_event *ev = event;
  (void)kind;
  int rc = ev->moved ? end_connector(txn, ctx, ev->tenant, ev->name) : 0;
  if (rc) return rc;
  gw_revocation r;
  fill(&r, ev->tenant, NULL, ev->name, NULL);
  r.probe = true;
  return revoke_on_commit(txn, ctx, &r);
}

/* Every open stream of the tenant learns its tool list may have changed. */
static int on_policy_put(st_txn *txn, int kind, const void *event, void *ctx) {
  const pol_event *ev = event;
  (void)kind;
  return notify_after(txn, ctx, ev->tenant, NULL);
}

int gw_proxy_register_hooks(gw_server *srv) {
  int rc = st_hook_add(srv->store, SCIM_EV_USER_DEACTIVATED, on_user_gone, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_USER_DELETED, on_user_gone, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_MEMBERSHIP_CHANGED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, SCIM_EV_GROUP_CREATED, on_tools_changed, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_CONNECTOR_PUT, on_connector_put, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_CONNECTOR_DELETE, on_connector_deleted, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_POLICY_PUT, on_policy_put, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_TENANT_DELETING, on_tenant_deleting, srv);
  if (!rc) rc = st_hook_add(srv->store, ST_EVENT_TOKEN_REVOKED, on_token_revoked, srv);
  return rc;
}

