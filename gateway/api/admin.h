/* gateway/api/admin.h — the admin REST API under /admin/v1 (tenants, SCIM
 * tokens, tenant-scoped admin tokens) and the records it keeps in the store.
 *
 * Callers authenticate with the operator token (full reach) or a tenant
 * admin token (its own tenant only). Reads run inline in short read
 * transactions; every write is one writer job whose reply waits for the
 * commit. Errors are JSON {"error": code, "message": text}.
 *
 * Tenant records are store/tenant.h's (st_tenant_*), tokens of every kind
 * auth/token_store.h's (auth_token_*): this API validates, mints and
 * answers.
 *
 * The implementation is split by resource (admin.c dispatches; see
 * admin_int.h for which file owns what). */
#ifndef MCPGATE_GATEWAY_ADMIN_H
#define MCPGATE_GATEWAY_ADMIN_H
#include <jansson.h>
#include <stdint.h>

#include "gateway/http/http.h"

typedef struct gw_loop gw_loop;
typedef struct st_txn st_txn;
typedef struct st_store st_store;

/* ---- errors: the admin API's (and gateway/api's) job results, range -31200..-31299 (outside
 * libuv's errno range and LMDB's); jobs also return ST_E*, AUTH_E*, VAULT_E*. */
#define GW_API_ERR_FIRST (-31200)
#define GW_API_ERR_LAST (-31299)
#define GW_API_EEXISTS (-31200)     /* the tenant id is taken */
#define GW_API_EDELETING (-31201)   /* the tenant id is still being purged */
#define GW_API_ENOTENANT (-31202)   /* the job's tenant is gone (where not-found means something else) */
#define GW_API_EFULL (-31203)       /* a per-tenant cap is reached (dcr_clients_max) */
#define GW_API_EMOVED (-31204)      /* a stored secret would follow settings to another origin */
#define GW_API_ECAFILE (-31205)     /* a tenant admin's ca_file is neither in its folder nor the stored value */
#define GW_API_EREVOKED (-31206)    /* the request's admin token was revoked (or its tenant deleted) while it waited */
/* Names a code of this range, or of auth, vault or the store; static string. */
const char *gw_api_strerror(int err);

void gw_admin_dispatch(gw_req *req);
/* Route preauth (gateway/http/router.h): the operator or a tenant admin token,
 * before the body is read; answers 401 otherwise. */
int gw_admin_preauth(gw_req *req);
/* Per-loop setup/teardown (timers for background purges). */
int gw_admin_loop_start(gw_loop *lp);
void gw_admin_loop_stop(gw_loop *lp);

/* The module table's entry (gateway/core/module.h): checks, per-loop purge
 * resumption, the /admin/v1 routes (private listener when there is one). */
extern const struct gw_module gw_mod_admin;

/* Records a token's last use (at most once a minute; fire and forget). */
void gw_token_touch(gw_loop *lp, const char *token, json_t *rec);

#endif
