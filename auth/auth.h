/* auth/auth.h — who the caller is. Today: employee access tokens (mgw_),
 * minted by an admin for a SCIM-provisioned user and pasted into Claude
 * Code as `--header "Authorization: Bearer mgw_…"`.
 *
 * Records and their keys are auth/token_store.h's (kind "mgw", with the
 * user's id and an optional expiry).
 * Every request re-checks the token AND the user's state in the store, so
 * a deactivated user fails closed even before the hook below ran. The hook
 * on user deactivation/deletion/sign-out everywhere (st_dir_hook_user_cut)
 * deletes the user's tokens in the SCIM (or admin, or Universal Logout)
 * transaction itself: reactivation never revives them. */
#ifndef MCPGATE_AUTH_AUTH_H
#define MCPGATE_AUTH_AUTH_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "store/token.h"
#include "auth/token_store.h"

#define AUTH_TOKEN_PREFIX "mgw_"

typedef struct auth_token_new {
  /* in (prepared on the loop: random and clock) */
  char tenant[64];
  char user_ref[300];   /* userName or id */
  char name[201];
  char now[32];
  char expires[32];     /* "" = never */
  bool self;            /* made by the user on their own page (else by an admin, who saw its text) */
  char tokid[ST_TOKEN_ID_BUFSZ];
  uint8_t hash[ST_TOKEN_HASH_LEN];
  /* out (overwritten on every run) */
  char user_id[40];
  char user_name[300];
} auth_token_new;

/* ---- errors: auth's range is -30600..-30699 (outside libuv's errno range
 * and LMDB's); auth functions also pass ST_E* through. -30610..-30659 are
 * auth/jose.h's (JWKS, JWS, ID-token claims). */
#define AUTH_ERR_FIRST (-30600)
#define AUTH_ERR_LAST (-30699)
#define AUTH_EINACTIVE (-30600) /* the user is not active (deactivated in the IdP) */
#define AUTH_EINVALID (-30601)  /* settings failed validation (auth/oidc.h) */
#define AUTH_ENOSECRET (-30602) /* OIDC settings without a client secret, none stored */
#define AUTH_EFULL (-30669)     /* the user holds as many tokens as allowed (auth_token_create_max) */
/* Names an auth code, or a store code (st_strerror); static string. */
const char *auth_strerror(int err);

/* Writer job body: creates the token for an existing, active user, and
 * first deletes (revokes) up to AUTH_TOKEN_SWEEP_MAX of the user's tokens
 * that expired before t->now: nothing else deletes an expired token.
 * ST_ENOTFOUND (no such user), AUTH_EINACTIVE (user not active). */
#define AUTH_TOKEN_SWEEP_MAX 64
int auth_token_create(st_txn *txn, auth_token_new *t);
/* The same, refused with AUTH_EFULL when the user still holds max
 * employee tokens after that sweep (of every origin; counted on keys, no
 * further than max). max <= 0: no cap. user_id and user_name are filled
 * before the count. */
int auth_token_create_max(st_txn *txn, auth_token_new *t, int64_t max);

/* Verifies a presented token for tenant: hash lookup, kind, tenant,
 * expiry (now = unix seconds), tenant active, user present and active.
 * On success fills user_id (37 bytes) and tokid (the token's id, so what
 * was opened with it can be found when it is revoked; may be NULL) and
 * returns 0. */
int auth_token_verify(st_txn *txn, const char *tenant, const char *token, int64_t now,
                      char user_id[40], char tokid[ST_TOKEN_ID_BUFSZ]);
/* The two halves of auth_token_verify, for a caller that keys on the
 * token's hash (gateway/mcp/memo.h): the hash of a well-formed employee
 * token (ST_ENOTFOUND for anything else), and the checks given the hash;
 * *expires (may be NULL) gets the token's expiry in unix seconds, 0 for
 * none — the only input of the verdict that is not in the store. */
int auth_token_hash(const char *token, uint8_t h[ST_TOKEN_HASH_LEN]);
int auth_token_verify_hash(st_txn *txn, const char *tenant, const uint8_t h[ST_TOKEN_HASH_LEN], int64_t now,
                           char user_id[40], char tokid[ST_TOKEN_ID_BUFSZ], int64_t *expires);
/* The same checks for an identity verified earlier, by token id: the token
 * still exists (not revoked, not deleted with its user or tenant), has not
 * expired, belongs to user_id, and tenant and user are still active. For
 * re-checks after every asynchronous step (and inside write jobs that act
 * for the user). 0 or ST_ENOTFOUND (or a store error). */
int auth_identity_check(st_txn *txn, const char *tenant, const char *user_id, const char *tokid, int64_t now);

/* st_check_fn: employee tokens whose user is gone (registered by
 * auth_register_checks below; callable directly by tests). */
int auth_check_employee_tokens(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx);

/* Registers the hooks (deactivated, deleted, signed out → tokens deleted). */
int auth_register_hooks(st_store *st);
/* Registers the employee tokens' check with st_check: a token whose user
 * is gone (the user's deletion deletes its tokens in the same txn). Tokens
 * whose tenant is gone are the admin records' check (every kind). */
int auth_register_checks(st_store *st);

#endif
