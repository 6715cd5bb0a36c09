/* auth/oauth_token.h — what the gateway's OAuth authorization server issues
 * to MCP clients (issue 17): authorization codes, and grants ("families")
 * of access and refresh tokens, with refresh rotation, reuse detection,
 * consent records, and revocation by token, by grant, by user.
 *
 * The rules, and why:
 *   - Codes are single-use and short-lived, bound to client, redirect URI,
 *     PKCE challenge (S256), resource and user. A code presented twice is
 *     an attack or a bug: the second use fails and revokes what the first
 *     issued (OAuth 2.1 §4.1.3).
 *   - A grant is one family: every access and refresh token descends from
 *     one code exchange. Each refresh rotates the refresh token. Several
 *     Claude Code processes may refresh the same token at once: a reuse of
 *     the just-rotated refresh token within `grace` seconds returns the SAME
 *     successor pair (sealed at rest for that window only — tokens are
 *     otherwise stored as hashes); any other reuse revokes the family.
 *   - Tokens are opaque (mgo_ access, mgr_ refresh: 32 random bytes), stored
 *     as SHA-256, bound to tenant, user, client and resource: a grant for
 *     /t/{t}/mcp is good on the tenant's aggregated and connector endpoints,
 *     one for /t/{t}/mcp/{c} only on that connector.
 *   - A grant lives at most `max_signin_age` after the Okta sign-in it came
 *     from: no access token outlives it and no refresh passes it (a broken
 *     SCIM feed cannot keep a leaver working for a month). A deactivated,
 *     deleted or signed-out (Universal Logout) user's grants are deleted in
 *     the triggering transaction (hooks), and
 *     every check also reads the user.
 *   - A person holds at most AUTH_OAUTH_USER_GRANTS_MAX grants: an exchange
 *     past it revokes the least recently used (each authorization makes a
 *     grant, and a signed-in person gets codes without a click for a client
 *     allowed before: without the cap one person's grants had no bound).
 *   - Revoking a grant deletes its tokens and emits ST_EVENT_TOKEN_REVOKED
 *     with kind AUTH_KIND_OAUTH and the family id as token id, so the MCP
 *     proxy ends what was opened with it (the family id is the identity's
 *     token id there).
 *
 * Store layout (ST_DB_AUTH):
 *   "k" sha256(code)                   → JSON code record
 *   "K" tenant \0 user \0 sha256(code)  → ""   (a user's codes: deleted with
 *                                        the user's grants, so a deactivation
 *                                        leaves no code behind)
 *   "t" sha256(token)                  → JSON {k:"at"|"rt", tenant, family,
 *                                        expires[, rotated, grace_until,
 *                                        grace_until_ms]}
 *   "f" tenant \0 family               → JSON {user, client_id, client_name,
 *                                        connector, created, last_used,
 *                                        signin_at[, sealed]}
 *   "F" tenant \0 user \0 family       → ""   (a user's grants)
 *   "g" tenant \0 family \0 sha256     → ""   (a grant's tokens)
 *   "a" tenant \0 user \0 client_id    → JSON {approved, used, resources: ["" | connector]}
 *                                        (consent given, per resource; at most
 *                                        AUTH_OAUTH_USER_CONSENTS_MAX a person)
 * The successor pair of the latest rotation is sealed in ST_DB_SECRETS
 * (tenant, AUTH_OAUTH_SUCCESSOR_KIND, family) and replaced by the next.
 *
 * Writer-job purity: random values (token texts, family ids) are prepared
 * by the caller before the job; a job may run twice (group commit) and
 * must do the same both times. */
#ifndef MCPGATE_AUTH_OAUTH_TOKEN_H
#define MCPGATE_AUTH_OAUTH_TOKEN_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/oauth_client.h"
#include "store/store.h"
#include "store/token.h"

#define AUTH_OAUTH_ACCESS_PREFIX "mgo_"
#define AUTH_OAUTH_REFRESH_PREFIX "mgr_"
#define AUTH_OAUTH_CODE_PREFIX "mgc_"
#define AUTH_KIND_OAUTH "oauth" /* ST_EVENT_TOKEN_REVOKED's kind for a grant */
#define AUTH_OAUTH_SUCCESSOR_KIND "oauth.successor"
#define AUTH_OAUTH_CONNECTOR_MAX 32
#define AUTH_OAUTH_USER_GRANTS_MAX 50 /* grants one person holds; the least recently used goes past it */
#define AUTH_OAUTH_USER_CONSENTS_MAX 50 /* consents (clients allowed) one person holds; likewise */

/* ---- errors (auth.h's range) */
#define AUTH_EOAUTH_GRANT (-30662)   /* invalid_grant: code/refresh token unknown, used, expired, wrong client,
                                        redirect or verifier; the user not active */
#define AUTH_EOAUTH_SIGNIN (-30663)  /* invalid_grant too, but a valid code or refresh token of this client
                                        whose Okta sign-in is older than max_signin_age: the person must sign
                                        in again (said so, since nothing else will help) */
#define AUTH_EOAUTH_CONSENT_GONE (-30690) /* a code issued without asking relied on a consent withdrawn since */

typedef struct auth_oauth_code {
  char tenant[64];
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  char client_name[AUTH_OAUTH_NAME_MAX + 1];
  char redirect_uri[AUTH_OAUTH_URI_MAX + 1];
  char challenge[AUTH_OAUTH_CHALLENGE_LEN + 1];
  char connector[AUTH_OAUTH_CONNECTOR_MAX + 1]; /* "" = the tenant's aggregated resource (and all connectors) */
  char user_id[40];
  int64_t signin_at, expires;                   /* unix s */
} auth_oauth_code;

/* Write txn: stores a code by the hash of its text (and in its user's
 * index); sweeps up to 16 expired codes. */
int auth_oauth_code_put(st_txn *txn, const uint8_t hash[32], const auth_oauth_code *c, int64_t now);

/* A grant being issued or refreshed. */
typedef struct auth_oauth_issue {
  /* in: prepared on the loop */
  char tenant[64];
  char family[ST_TOKEN_ID_BUFSZ];  /* a new family id (code exchange only) */
  char access[ST_TOKEN_BUFSZ], refresh[ST_TOKEN_BUFSZ];
  uint8_t access_hash[32], refresh_hash[32];
  int64_t now, access_ttl, refresh_ttl, max_signin_age, grace; /* unix s / seconds */
  int64_t now_ms, grace_ms; /* the same moment in ms since the epoch, and the refresh reuse grace in ms:
                               the window is kept to the millisecond (0: whole seconds, now + grace) */
  /* out */
  char user_id[40];
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  char connector[AUTH_OAUTH_CONNECTOR_MAX + 1];
  char family_out[ST_TOKEN_ID_BUFSZ];
  int64_t access_expires;
  bool replayed;                   /* a reuse within grace: access/refresh now hold that successor pair */
  bool reused;                     /* a used code or rotated refresh token came back: the grant it issued was
                                      revoked in this transaction (the job returned 0 so that it commits);
                                      nothing was issued: answer invalid_grant */
  /* private to auth_oauth_refresh (zero it with the rest): the drawn pair,
   * kept at its first run, so that a run of the same job again starts from
   * it, not from the successor pair a replay wrote into access/refresh */
  bool drawn_kept_;
  char drawn_access_[ST_TOKEN_BUFSZ], drawn_refresh_[ST_TOKEN_BUFSZ];
} auth_oauth_issue;

/* Write job body: the authorization_code grant. Checks the code (exists,
 * not expired, this client, this redirect URI, PKCE S256 of verifier), the
 * tenant and the user (active), the sign-in age; marks the code used and
 * issues a new family with an access and a refresh token, revoking the
 * person's least recently used grants past AUTH_OAUTH_USER_GRANTS_MAX (at
 * most 64 per exchange) (AUTH_EOAUTH_SIGNIN
 * when the sign-in is too old; nothing written). A code used
 * before: returns 0 with x->reused set, the family it issued revoked (a
 * job must commit the revocation: an error return would roll it back). */
int auth_oauth_exchange_code(st_txn *txn, const uint8_t code_hash[32], const char *client_id,
                             const char *redirect_uri, const char *verifier, auth_oauth_issue *x);
/* Write job body: the refresh_token grant (see the rules above); a reuse
 * outside the grace window: 0 with x->reused set, the family revoked.
 * Within it, x->access and x->refresh are set to the successor pair (and
 * x->replayed): x must start zeroed, and the same x may run again (a job
 * re-run by the writer starts from the pair drawn for it, whatever an
 * earlier run answered). A
 * live refresh token of a grant whose sign-in is max_signin_age old or
 * older: AUTH_EOAUTH_SIGNIN, nothing written (the token stays usable should
 * the tenant allow a longer age again). */
int auth_oauth_refresh(st_txn *txn, const uint8_t refresh_hash[32], const char *client_id, auth_oauth_issue *x);

/* Any txn: the checks of the two jobs above without their writes (the same
 * code decides both), so that the token endpoint can tell a grant that
 * works from junk before it spends the tenant's budget of failed requests
 * on it (gateway/api/oauth_flow.c). 0 when the job would act: issue tokens,
 * give the successor pair again within the grace window, or revoke a grant
 * that is still there (a used code or a rotated refresh token came back);
 * AUTH_EOAUTH_GRANT or AUTH_EOAUTH_SIGNIN when it would refuse and write
 * nothing; ST_E* when the store could not be read. x as for the job: tenant,
 * now, now_ms and max_signin_age are read (nothing needs to be drawn yet). */
int auth_oauth_exchange_check(st_txn *txn, const uint8_t code_hash[32], const char *client_id,
                              const char *redirect_uri, const char *verifier, const auth_oauth_issue *x);
int auth_oauth_refresh_check(st_txn *txn, const uint8_t refresh_hash[32], const char *client_id,
                             const auth_oauth_issue *x);

/* SHA-256 of a presented token of the given prefix and the right shape;
 * ST_ENOTFOUND for anything else. */
int auth_oauth_token_hash(const char *token, const char *prefix, uint8_t out[32]);

/* An access token presented on an MCP endpoint of tenant: for `connector`
 * (NULL: the aggregated endpoint) at now. 0 and user_id, family (the
 * identity's token id) and *expires; ST_ENOTFOUND otherwise (unknown,
 * expired, other tenant, other audience, grant revoked, user or tenant not
 * active). Any txn. */
int auth_oauth_verify(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *connector, int64_t now,
                      char user_id[40], char family[ST_TOKEN_ID_BUFSZ], int64_t *expires);

/* The re-check of an identity verified earlier with an access token (the
 * MCP proxy re-checks after every asynchronous step): the grant `family`
 * still exists, belongs to user_id, and tenant and user are active. 0 or
 * ST_ENOTFOUND. */
int auth_oauth_identity_check(st_txn *txn, const char *tenant, const char *user_id, const char *family);

/* Write txn: RFC 7009 — the token (access or refresh) of client_id in
 * tenant: its whole grant is revoked. Unknown tokens are not an error
 * (returns 0), as the RFC asks. */
int auth_oauth_revoke_token(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *client_id);
/* Any txn: whether auth_oauth_revoke_token would revoke something (true
 * too on a store error: the write job decides). Lets the endpoint answer a
 * token that is not one it could revoke without a job on the writer. */
bool auth_oauth_token_revocable(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *client_id);
/* Write txn: revokes one grant (tokens, record, sealed successor) and emits
 * ST_EVENT_TOKEN_REVOKED. ST_ENOTFOUND when absent. */
int auth_oauth_family_revoke(st_txn *txn, const char *tenant, const char *family);
/* Write txn: revokes every grant of a user and deletes every code issued
 * to them (exchanged or not); returns how many grants. */
int auth_oauth_revoke_user(st_txn *txn, const char *tenant, const char *user_id);
/* Write txn: the person (or an admin for them) disconnects an application:
 * grant `family` of user_id is revoked and the consent user_id gave its
 * client goes with it (every resource), so the next authorization of that
 * client asks the person again — a disconnect a loopback client could undo
 * without a click would be none. ST_ENOTFOUND when the grant is not
 * user_id's. auth_oauth_disconnect_user does it for every grant and every
 * consent of the person (and their codes, as auth_oauth_revoke_user);
 * returns how many grants. A deactivation or sign-out keeps the consents:
 * those are about the person's access, not their applications. */
int auth_oauth_disconnect(st_txn *txn, const char *tenant, const char *user_id, const char *family);
int auth_oauth_disconnect_user(st_txn *txn, const char *tenant, const char *user_id);
/* Write txn: an admin removed client_id from the tenant: every grant of
 * it is revoked (its live exchanges end through the token event, as for
 * RFC 7009), every consent given to it goes (the next authorization asks
 * again) and every code issued to it and not exchanged yet. A scan of the
 * tenant's grants, consents and codes (the values are matched as bytes
 * before any is parsed). The number of grants revoked, or ST_E*;
 * *removed (when not NULL): how many grants, consents and codes went in
 * all (a client swept as idle may hold consents and codes but no grant). */
int auth_oauth_client_revoke_all(st_txn *txn, const char *tenant, const char *client_id, int *removed);
/* A user's grants: [{id, client_id, client_name, resource ("" or a
 * connector), created, last_used, signin_at}] (caller json_decref). */
int auth_oauth_grants(st_txn *txn, const char *tenant, const char *user_id, json_t **arr);

/* Consent, per resource: 0 when the user approved the client before for
 * connector ("": the aggregated endpoint, which covers every connector),
 * ST_ENOTFOUND when not. put adds connector to what the user approved
 * (write txn) and, in the same write, deletes the person's least recently
 * used consents (used or approved) past AUTH_OAUTH_USER_CONSENTS_MAX (at
 * most 64 a call; never the one just put): their next authorization of
 * that client asks again. use records that a consent was relied on (a code
 * issued without asking), at most once a minute; 0 when there is none. */
int auth_oauth_consent_get(st_txn *txn, const char *tenant, const char *user_id, const char *client_id,
                           const char *connector);
int auth_oauth_consent_put(st_txn *txn, const char *tenant, const char *user_id, const char *client_id,
                           const char *connector, int64_t now);
int auth_oauth_consent_use(st_txn *txn, const char *tenant, const char *user_id, const char *client_id, int64_t now);

/* Registers the hooks (user deactivated, deleted or signed out everywhere: every grant and code revoked;
 * deleted: consents too), the tenant purge ("auth.oauth") and the check
 * (grants whose user is gone); at startup. */
int auth_oauth_register(st_store *st);

#endif
