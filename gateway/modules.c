/* gateway/modules.c — the module table: the only file that knows every
 * module. `mcpgate serve` (gw_serve) and the offline CLI (gateway/cli.c)
 * both run it (gateway/core/module.h).
 *
 * The order is a contract. store_init registers in-transaction hooks in
 * this order, and a SCIM deactivation runs them in it:
 *   scim      counts the lifecycle event (after commit), registers the SCIM
 *             index checks
 *   auth      deletes the user's employee tokens          (same txn);
 *             purges a deleted tenant's tokens and OIDC settings;
 *             checks employee tokens against their users
 *   sessions  deletes the user's MCP sessions; the per-user session cap
 *             (same txn); checks sessions against tenants and users; the
 *             upstream sessions those held are collected in that txn and
 *             ended upstream after the commit (usess_end.c) — before
 *             vault's hook and purges below drop the grants and
 *             credentials that opened them
 *   policy    drops the user's cached effective policy    (after commit);
 *             cancels the user's pending approval requests and deletes
 *             their approval grants                      (same txn)
 *   vault     (no hooks yet) connectors and sealed secrets
 *   mcp       ends the user's live exchanges and streams after the commit,
 *             before the SCIM reply is released
 *   admin     resumes tenant purges (the /admin/v1 routes)
 *   pages     the employee page, sign-in; the rate limiter oauth shares
 *   approvals the reviewers' decisions (/t/{tenant}/approvals/…)
 *   oauth     the OAuth authorization server for MCP clients: discovery
 *             documents, client registration, the client lookup (after
 *             pages, whose init makes the rate limiter it uses)
 *   ops       /healthz, /readyz, /metrics
 * Metrics render in the same order after the process's own (HTTP, store):
 * SCIM, then MCP. loop_start runs in order (sessions' purge timer, then the
 * proxy with its outbound engine, then admin's purges, which may call into
 * it); loop_stop and fini in reverse.
 *
 * auth and policy are domain modules below gateway/ (they may not include
 * gateway/core/module.h), so their entries live here. */
#include "gateway/modules.h"

#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_client.h"
#include "auth/oauth_token.h"
#include "auth/oidc.h"
#include "auth/token_store.h"
#include "gateway/api/admin.h"
#include "gateway/api/approvals.h"
#include "gateway/api/oauth.h"
#include "gateway/api/ops.h"
#include "gateway/api/pages.h"
#include "gateway/api/scim_http.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/mcp_session.h"
#include "policy/approval.h"
#include "policy/policy.h"
#include "store/seal.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "audit/audit.h"
#include "gateway/mcp/audit_log.h"
#include "vault/vault.h"

static int auth_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  int rc = auth_register_hooks(st);
  if (!rc) rc = auth_register_checks(st);
  if (!rc) rc = st_check_add(st, auth_tokens_check, NULL);
  if (!rc) rc = auth_register_purge(st);
  if (!rc) rc = st_purge_add(st, "auth.oauth_clients", auth_oauth_clients_purge_tenant, NULL);
  if (!rc) rc = auth_oauth_register(st);
  return rc ? rc : auth_oidc_register_purge(st);
}

static int policy_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  int rc = pol_register_hooks(st);
  if (!rc) rc = ap_register_store(st); /* approval requests: purge, check, a user cut cancels theirs */
  return rc ? rc : pol_register_purge(st);
}

/* vault: connectors and their sealed credentials (the secrets purge is
 * the store's, run for the vault's records) */
static int vault_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  int rc = vault_grant_register(st); /* first: its purge copies connectors and secrets */
  if (!rc) rc = vault_register_purge(st);
  if (!rc) rc = vault_rediscover_register(st);
  if (!rc) rc = vault_register_url_check(st);
  return rc ? rc : st_purge_add(st, "secrets", st_secret_purge_tenant, NULL);
}

/* audit: its own environment (<data>/audit), opened before the loops run
 * and closed after they stopped (everything queued is committed) */
static int audit_init(gw_server *srv) { return gw_audit_open(srv); }
/* the tenants' SIEM sinks live in the main store (purged with the tenant) */
static int audit_store_init(st_store *st, gw_server *srv) {
  (void)srv;
  return audit_register_store(st);
}
static void audit_fini(gw_server *srv) { gw_audit_close(srv); }

/* every write of the admin API and of SCIM, in its tenant's audit chain
 * (reads are not recorded; nor are requests no tenant was named for) */
static void audit_request_done(gw_loop *lp, const gw_req *req, int rclass, int status) {
  if (!lp->srv->audit || !req->tenant[0] || rclass == GW_RC_MCP) return; /* calls: gateway/mcp/audit_call.c */
  bool write = strcmp(req->method, "GET") && strcmp(req->method, "HEAD");
  const char *p = req->path ? req->path : "";
  size_t n = strlen(p);
#define ENDS(s) (n >= sizeof(s) - 1 && !strcmp(p + n - (sizeof(s) - 1), s))
  const char *kind = NULL;
  if (rclass == GW_RC_ADMIN && write) kind = "admin";
  else if (rclass == GW_RC_SCIM && write) kind = "scim";
  else if (rclass == GW_RC_OAUTH && ENDS("/oauth/callback")) kind = "signin"; /* "Sign in with Okta" */
  else if (rclass == GW_RC_OAUTH && write) kind = "oauth"; /* tokens issued or refused, revocations, logout */
  else if (rclass == GW_RC_WEB && ENDS("/callback")) kind = "connect"; /* an upstream account connected */
  else if (rclass == GW_RC_WEB && write) kind = "employee";            /* the employee page's writes */
#undef ENDS
  if (kind) gw_audit_request(lp->srv, req, kind, status);
}

/* the data steps of the store's migrations that rewrite audit's records */
static const st_upgrade audit_upgrades[] = {{ST_UPGRADE_SINK_URLS, audit_upgrade_sink_urls}, {NULL, NULL}};
static const gw_module gw_mod_audit = {.name = "audit",
                                      .upgrades = audit_upgrades,
                                      .store_init = audit_store_init,
                                      .init = audit_init,
                                      .fini = audit_fini,
                                      .loop_start = gw_audit_loop_start,
                                      .loop_stop = gw_audit_loop_stop,
                                      .metrics = gw_audit_metrics,
                                      .request_done = audit_request_done,
                                      .settings = gw_audit_settings};
static const gw_module gw_mod_auth = {.name = "auth", .store_init = auth_store_init};
static const gw_module gw_mod_policy = {.name = "policy", .store_init = policy_store_init};
/* the data steps of the store's migrations that rewrite vault's records */
static const st_upgrade vault_upgrades[] = {{ST_UPGRADE_URL_QUERIES, vault_upgrade_url_queries}, {NULL, NULL}};
static const gw_module gw_mod_vault = {.name = "vault", .store_init = vault_store_init, .upgrades = vault_upgrades};

const gw_module *const gw_modules[] = {
    &gw_mod_audit, &gw_mod_scim, &gw_mod_auth, &gw_mod_sessions, &gw_mod_policy, &gw_mod_vault, &gw_mod_mcp, &gw_mod_admin,
    &gw_mod_pages, &gw_mod_approvals, &gw_mod_oauth, &gw_mod_ops, NULL,
};
