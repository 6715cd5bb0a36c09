/* auth/token_store.h — every bearer token the gateway mints, of every kind,
 * and the one encoding of their keys in ST_DB_TOKENS. Nothing else reads or
 * writes that database.
 *
 * Kinds (the record's "kind"; the text's prefix says the audience):
 *   AUTH_KIND_SCIM     "scim"  mgs_  Okta's SCIM client, per tenant
 *   AUTH_KIND_ADMIN    "admin" mga_  a tenant-scoped admin API token
 *   AUTH_KIND_EMPLOYEE "mgw"   mgw_  an employee's gateway token (auth.h)
 *
 * Store layout (ST_DB_TOKENS):
 *   "h" sha256(token)                → JSON {id, kind, tenant[, user], name,
 *                                       created[, expires][, last_used]}
 *   "i" tenant \0 kind \0 tokid      → sha256(token)   (listing, revoking)
 *   "u" tenant \0 user id \0 tokid   → sha256(token)   (employee tokens:
 *                                       deleting a user's tokens)
 * Only the hash of a token is stored; lookups are by hash, never by
 * comparing token text. Record and index entries are written and deleted
 * together; auth_tokens_check (for `mcpgate store check`) verifies that.
 *
 * Ownership: a json_t returned through an out parameter is the caller's
 * (json_decref). Functions taking a write txn say so (st_put/st_del refuse a
 * read txn with ST_EINVAL). Errors: ST_E* from the store. */
#ifndef MCPGATE_AUTH_TOKEN_STORE_H
#define MCPGATE_AUTH_TOKEN_STORE_H
#include <jansson.h>
#include <stdint.h>

#include "store/store.h"
#include "store/token.h"

#define AUTH_KIND_SCIM "scim"
#define AUTH_KIND_ADMIN "admin"
#define AUTH_KIND_EMPLOYEE "mgw"

/* Last use is recorded at most this often per token. */
#define AUTH_TOUCH_INTERVAL_S 60

/* A token to store. Every string is borrowed for the call. */
typedef struct auth_token_rec {
  const char *kind;      /* AUTH_KIND_* */
  const char *tenant;
  const char *id;        /* ST_TOKEN_ID_LEN chars */
  const char *name;
  const char *created;   /* RFC 3339 */
  const char *user;      /* employee tokens: the user's SCIM id; NULL otherwise */
  const char *expires;   /* RFC 3339; NULL or "" = never */
  const uint8_t *hash;   /* ST_TOKEN_HASH_LEN bytes: st_token_hash(token) */
  const char *created_by; /* employee tokens: "self" (the user's page) or "admin"; NULL: not recorded */
} auth_token_rec;

/* Write txn: stores the record and its index entries ("u" too when user is
 * set). Replaces a record of the same hash. */
int auth_token_put(st_txn *txn, const auth_token_rec *r);

/* The record of a token by the hash of its text, any kind and tenant. */
int auth_token_get_by_hash(st_txn *txn, const uint8_t hash[ST_TOKEN_HASH_LEN], json_t **rec);
/* The record of tenant's token of kind by its id. ST_ENOTFOUND when
 * absent; ST_ECORRUPT when the index and the record disagree in shape. */
int auth_token_get_by_id(st_txn *txn, const char *tenant, const char *kind, const char *tokid,
                         json_t **rec);

/* Looks presented token text up: 0 and *rec when it exists, is of kind,
 * belongs to tenant (any tenant when NULL) and that tenant is active;
 * ST_ENOTFOUND otherwise (also for text of implausible length). */
int auth_token_lookup(st_txn *txn, const char *token, const char *kind, const char *tenant,
                      json_t **rec);

/* What ST_EVENT_TOKEN_REVOKED carries (borrowed for the emit). */
typedef struct auth_token_event {
  const char *tenant, *kind, *tokid;
} auth_token_event;

/* Write txn: revokes tenant's token of kind by id (record and every index
 * entry) and emits ST_EVENT_TOKEN_REVOKED. ST_ENOTFOUND when there is none. */
int auth_token_revoke(st_txn *txn, const char *tenant, const char *kind, const char *tokid);

/* Lists tenant's tokens of kind, never the token: an array (caller
 * json_decref) of {id[, user], name, created[, expires], last_used} — user
 * and expires for employee tokens; last_used and expires null when unset. */
int auth_token_list(st_txn *txn, const char *tenant, const char *kind, json_t **arr);
/* One user's employee tokens, through the "u" index (not a walk over the
 * tenant's): an array (caller json_decref) of {id, name, created, expires,
 * last_used}, in token id order. */
int auth_token_list_user(st_txn *txn, const char *tenant, const char *user_id, json_t **arr);
/* Whether tok (an entry of those lists) expired at or before now_s (Unix
 * seconds): its "expires" parses (RFC 3339, Z) and is not later. One
 * without an expiry, or with one that does not parse, has not. */
bool auth_token_expired_at(const json_t *tok, int64_t now_s);

/* How many tokens of kind tenant holds (its "i" entries), and how many
 * employee tokens user_id of tenant holds (its "u" entries, expired ones
 * too: a mint deletes them, auth/auth.h), counting no further than stop_at:
 * keys only, nothing parsed, so a cap check does bounded work. 0 or ST_E*. */
int auth_token_count(st_txn *txn, const char *tenant, const char *kind, int64_t stop_at, int64_t *n);
int auth_token_count_user(st_txn *txn, const char *tenant, const char *user_id, int64_t stop_at, int64_t *n);

/* Write txn: deletes tenant's tokens of every kind (record and "i" entry),
 * at most limit (0: all). Returns how many, or a negative error. The "u"
 * entries of employee tokens go with auth_purge_tenant. */
int auth_tokens_delete_tenant(st_txn *txn, const char *tenant, int limit);
/* Write txn: deletes every token of a user; returns how many. */
int auth_tokens_delete_user(st_txn *txn, const char *tenant, const char *user_id);
/* Write txn: revokes every employee token of a user (self-service or made
 * by an admin for them, at most employee_tokens_per_user_max) as
 * auth_token_revoke does, each with ST_EVENT_TOKEN_REVOKED, so the
 * gateway closes what was opened with them; the user stays. Returns how
 * many. (auth_tokens_delete_user is the cut user's: no events, their
 * sessions go by the cut's own.) */
int auth_tokens_revoke_user(st_txn *txn, const char *tenant, const char *user_id);
/* Write txn: purge step for tenant deletion (st_purge_fn): the tenant's
 * tokens of every kind, then the "u" index entries, at most limit (>= 1)
 * keys; returns how many it deleted (fewer than limit = done). */
int auth_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers auth_purge_tenant as the "auth" tenant purge (st_purge_add):
 * at startup, before the first write. */
int auth_register_purge(st_store *st);

/* 1 when rec's last use is unset or at least AUTH_TOUCH_INTERVAL_S before
 * now (unix seconds), else 0. */
int auth_token_touch_due(const json_t *rec, int64_t now);
/* Write txn (a writer job body): records `when` as the last use of the token
 * of that hash. A token gone meanwhile is not an error. */
int auth_token_touch(st_txn *txn, const uint8_t hash[ST_TOKEN_HASH_LEN], const char *when);

/* Visits every token record (any kind, tenant), in hash order; rec is
 * borrowed for the call. fn returns nonzero to stop (that value is
 * returned). Records that are not JSON are skipped (auth_tokens_check
 * reports them). */
int auth_tokens_foreach(st_txn *txn, int (*fn)(void *ctx, json_t *rec), void *ctx);

/* st_check_fn: index ↔ record agreement, records well-formed, tokens of
 * unknown tenants. Returns the number of problems. */
int auth_tokens_check(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx);

#endif
