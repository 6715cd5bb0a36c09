/* gateway/api/admin.h — the admin REST API under /admin/v1 (tenants, SCIM
 * tokens, tenant-scoped admin tokens) and the records it keeps in the store.
 *
 * Callers authenticate with the operator token (full reach) or a tenant
 * admin token (its own tenant only). Reads run inline in short read
 * transactions; every write is one writer job whose reply waits for the
 * commit. Errors are JSON {"error": code, "message": text}.
 *
 * Store layout (ST_DB_TENANTS, ST_DB_TOKENS):
 *   TENANTS  "t" id                      → tenant JSON {id,name,created,state}
 *   TOKENS   "h" sha256(token)           → token JSON {id,kind,tenant,name,created,…}
 *            "i" tenant \0 kind \0 tokid → sha256(token)   (listing, revoking)
 * Token kinds: "scim" (mgs_), "admin" (mga_, tenant-scoped). */
#ifndef MCPGATE_GATEWAY_ADMIN_H
#define MCPGATE_GATEWAY_ADMIN_H
#include <jansson.h>
#include <stdint.h>

#include "gateway/http/http.h"

typedef struct gw_loop gw_loop;
typedef struct st_txn st_txn;
typedef struct st_store st_store;

void gw_admin_dispatch(gw_req *req);
/* Route preauth (gateway/http/router.h): the operator or a tenant admin token,
 * before the body is read; answers 401 otherwise. */
int gw_admin_preauth(gw_req *req);
/* Per-loop setup/teardown (timers for background purges). */
int gw_admin_loop_start(gw_loop *lp);
void gw_admin_loop_stop(gw_loop *lp);

/* Registers the admin records' consistency check with st_check (token
 * index ↔ token records, tokens ↔ tenants). Call before the first write. */
void gw_admin_register_checks(st_store *st);

/* The module table's entry (gateway/core/module.h): checks, per-loop purge
 * resumption, the /admin/v1 routes (private listener when there is one). */
extern const struct gw_module gw_mod_admin;

/* Looks a bearer token of `kind` up for `tenant`: 0 and *rec (caller
 * json_decref) when the token exists, is of that kind and tenant, and the
 * tenant is active; negative otherwise. Constant-time where it matters:
 * the lookup is by hash, never by comparing token text. */
int gw_token_lookup(st_txn *txn, const char *token, const char *kind, const char *tenant,
                    json_t **rec);
/* Records a token's last use (at most once a minute; fire and forget). */
void gw_token_touch(gw_loop *lp, const char *token, json_t *rec);
/* Loads the tenant record; ST_ENOTFOUND when absent or deleted. */
int gw_tenant_get(st_txn *txn, const char *id, json_t **rec);
/* [a-z0-9-]{1,63} */
int gw_tenant_id_valid(const char *id);

#endif
