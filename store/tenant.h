/* store/tenant.h — tenant records and ids: the one owner of ST_DB_TENANTS'
 * "t" + id → tenant record (JSON {id, name, created, state[, settings]}).
 * The incarnation uid beside it ("u" + id) is declared in store.h
 * (st_tenant_uid_*) and implemented in store/tenant.c too.
 *
 * A tenant is "active" or "deleting" (marked by the delete job, gone when
 * its purge finishes, st_tenant_remove). Readers that grant anything
 * (tokens, admin calls, MCP) ask st_tenant_get / st_tenant_active, which
 * see only active tenants. Ids are [a-z0-9-]{1,63}.
 *
 * Ownership: a json_t returned through an out parameter is the caller's
 * (json_decref); strings passed in are copied into the record. Write
 * functions need a write txn (ST_EINVAL otherwise, from st_put). */
#ifndef MCPGATE_STORE_TENANT_H
#define MCPGATE_STORE_TENANT_H
#include <jansson.h>

#include <stdbool.h>

#include "store/store.h"

#define ST_TENANT_ID_MAX 63

/* 1 when id is a valid tenant id ([a-z0-9-]{1,63}), else 0. */
int st_tenant_id_valid(const char *id);

/* Loads an active tenant's record (caller json_decref); ST_ENOTFOUND when
 * absent, deleting or the id is invalid; ST_ECORRUPT when not JSON. */
int st_tenant_get(st_txn *txn, const char *id, json_t **rec);
/* 0 when the tenant exists and is active, else ST_ENOTFOUND (or a store
 * error). */
int st_tenant_active(st_txn *txn, const char *id);
/* The tenant's state ("active", "deleting") in any state, into state[16];
 * ST_ENOTFOUND when there is no record. */
int st_tenant_state(st_txn *txn, const char *id, char state[16]);

/* True when the tenant's record says "deleting": its data is being purged
 * in bounded steps (resumed at the next start after a stop), so its
 * records may be half gone. Consistency checks skip such tenants. */
bool st_tenant_purging(st_txn *txn, const char *id);

/* Visits every tenant record in id order (any state). rec is borrowed for
 * the call only; fn returns nonzero to stop (that value is returned).
 * Records that are not JSON are skipped. */
typedef int (*st_tenant_fn)(void *ctx, const char *id, const char *state, json_t *rec);
int st_tenant_foreach(st_txn *txn, st_tenant_fn fn, void *ctx);

/* Creates an active tenant with its incarnation uid (ST_TENANT_UID_LEN
 * chars, chosen by the caller: jobs are pure). ST_EEXIST when the id has a
 * record in any state (st_tenant_state tells which). */
int st_tenant_create(st_txn *txn, const char *id, const char *name, const char *created,
                     const char *uid);
/* Renames an active tenant; ST_ENOTFOUND otherwise. */
int st_tenant_rename(st_txn *txn, const char *id, const char *name);
/* Replaces an active tenant's "settings" object (NULL or empty: removed);
 * the caller validated it (gateway/core/settings). ST_ENOTFOUND otherwise. */
int st_tenant_set_settings(st_txn *txn, const char *id, json_t *settings);
/* Marks an active tenant "deleting" (nothing of it may authenticate from
 * this commit on); ST_ENOTFOUND otherwise. */
int st_tenant_mark_deleting(st_txn *txn, const char *id);
/* What ST_EVENT_TENANT_DELETING carries (borrowed for the emit), emitted
 * by st_tenant_mark_deleting once the record says "deleting". */
typedef struct st_tenant_event {
  const char *tenant;
} st_tenant_event;
/* Removes the record and the incarnation uid: the last step of a purge.
 * Absent keys are not an error. */
int st_tenant_remove(st_txn *txn, const char *id);

#endif
