/* auth/login.h — the employee's sign-in with the tenant's OpenID provider
 * (authorization code + PKCE S256 + state + nonce), and account linking:
 * which SCIM-provisioned user an ID token's claims are.
 *
 * The flow (gateway/api/login.c drives it; these are its pure parts):
 *   1. /t/{t}/login: auth_login_new draws state, nonce and the PKCE verifier
 *      (32 random bytes each); auth_login_seal seals them, with the issuer,
 *      the return path and an expiry (AUTH_LOGIN_TTL_S), into the login
 *      cookie — AES-256-GCM under the store's master key (store/seal.h),
 *      bound to the tenant. Nothing is written to the store for an
 *      unauthenticated visitor. auth_login_authorize_url builds the
 *      redirect to the provider.
 *   2. /t/{t}/oauth/callback: auth_login_open checks the cookie against the
 *      tenant and the returned state (constant time) and its expiry — a
 *      callback without this browser's cookie (login CSRF, a link someone
 *      sent) is refused; auth_login_token_request builds the code exchange,
 *      auth_login_token_response takes the id_token out of the reply; the
 *      ID token is verified with auth/jose.h.
 *   3. The session-creating write job (auth/browser.h) consumes the state
 *      (a replayed callback is refused even with the cookie kept), runs
 *      auth_link_resolve again inside the transaction (no race with a
 *      deactivation), refuses a sign-in that began before the user's last
 *      cut (a Universal Logout, or a revoke then restore, while the code
 *      exchange was under way: the user is active again by then) and binds
 *      a subject found by the e-mail fallback.
 *
 * Account linking (auth_link_resolve), in order:
 *   a. A subject bound earlier (by the e-mail fallback) is that user —
 *      while the user has no externalId, or has one that this sign-in's
 *      link claim equals (rule b would find the same user). Once SCIM
 *      gives the user an externalId that names someone else, the e-mail
 *      that bound the subject is contradicted by the IdP's own id: the
 *      binding is not used (rule b may still find the subject's own
 *      account; else AUTH_ESTALE), and the SCIM write that set it drops
 *      it and signs the user out everywhere (auth_link_recheck_user,
 *      auth/browser.h's hook): everything the user held came through it.
 *   b. The link claim (settings "link_claim", default "sub") equals the
 *      user's link attribute ("link_attribute": externalId by default —
 *      Okta sends its user id, the ID token's sub, as externalId; or
 *      userName). Several users with that value: refused (ambiguous).
 *   c. Only when (b) finds nobody: the "email" claim equal to a userName
 *      (case-insensitive) of a user WITHOUT an externalId, and only when
 *      "email_verified" is true (boolean true, or the string "true");
 *      then the subject is bound to that user, so it can never move to
 *      another account (and the user can be bound to one subject only).
 *   The user must be active. The subject is the "subject_claim" (default
 *   "sub") — Entra's per-app sub differs from its object id: use "oid".
 *
 * Store layout (ST_DB_AUTH, beside auth/oidc.h's "o" records):
 *   "s" tenant \0 sha256(iss \0 subject) → user id      (a binding)
 *   "S" tenant \0 user id                 → sha256(...)  (its reverse)
 *   "x" u64 BE expiry, sha256(state)      → "": used states, until they
 *                                            expire (expiry order: each
 *                                            consume sweeps a few dead ones)
 * Bindings are deleted with their user (hook) and tenant (purge).
 *
 * Ownership is written at each declaration; no message of this module
 * contains a token, a code, a secret or a claim value. */
#ifndef MCPGATE_AUTH_LOGIN_H
#define MCPGATE_AUTH_LOGIN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/oidc_provider.h"
#include "store/dir.h"
#include "store/store.h"

#define AUTH_LOGIN_TTL_S 600       /* a sign-in must finish within 10 minutes */
#define AUTH_LOGIN_RAND_LEN 43     /* 32 random bytes, base64url */
#define AUTH_LOGIN_RETURN_MAX 2048 /* bytes of the path (and query) to return to: an OAuth authorize request fits */
#define AUTH_LOGIN_COOKIE_MAX 4096 /* bytes of the sealed login cookie */
#define AUTH_LOGIN_TOKEN_RESPONSE_MAX (64 * 1024)
#define AUTH_SUBJECT_MAX 255

/* ---- errors (auth.h's range) */
#define AUTH_ELOGIN (-30603)     /* login cookie missing, forged, expired, other tenant or state */
#define AUTH_ENOTLINKED (-30604) /* no provisioned user for these claims */
#define AUTH_EUNVERIFIED (-30605) /* e-mail fallback refused: email_verified is not true */
#define AUTH_EAMBIGUOUS (-30606) /* several users have the link value */
#define AUTH_EBOUND (-30607)     /* the subject or the user is bound to another */
#define AUTH_ECLAIM (-30608)     /* the subject or link claim is missing or malformed */
#define AUTH_EREPLAY (-30609)    /* this state was used already */
#define AUTH_ECUT (-30666)       /* the sign-in began before the user's last cut (auth/browser.h): start again */
#define AUTH_ESTALE (-30668)     /* the subject is bound by e-mail to a user whose externalId now names another */

typedef struct auth_login {
  char state[AUTH_LOGIN_RAND_LEN + 1];
  char nonce[AUTH_LOGIN_RAND_LEN + 1];
  char verifier[AUTH_LOGIN_RAND_LEN + 1];
  char issuer[1025];                       /* the configured issuer at the start */
  char return_to[AUTH_LOGIN_RETURN_MAX + 1]; /* a path, or "" */
  int64_t expires;                         /* unix seconds */
  int64_t started_ms;                      /* when the sign-in began (ms since the epoch; 0: unknown, then
                                              expires - AUTH_LOGIN_TTL_S): a cut after it refuses it */
} auth_login;

/* Fresh random state, nonce and verifier (OpenSSL's CSPRNG), expiring
 * AUTH_LOGIN_TTL_S after now. return_to must be "" or a path starting with
 * "/" (not "//"), at most AUTH_LOGIN_RETURN_MAX bytes, else ST_EINVAL.
 * 0, ST_EINVAL, or ST_ECRYPTO when the CSPRNG fails. */
int auth_login_new(auth_login *l, const char *issuer, const char *return_to, int64_t now);
/* Seals l for tenant into cookie text (base64url; *out malloc'd, caller
 * frees). Any thread. 0 or an ST_E* code. */
int auth_login_seal(st_store *st, const char *tenant, const auth_login *l, char **out);
/* Opens a login cookie: sealed for tenant by this store's key, not expired
 * at now, its state equal to `state` (the callback's query). 0 and *out,
 * or AUTH_ELOGIN (any refusal; *out zeroed). */
int auth_login_open(st_store *st, const char *tenant, const char *cookie, const char *state, int64_t now,
                    auth_login *out);

/* The authorization request URL (response_type=code, client_id,
 * redirect_uri, scope from settings "scopes", state, nonce,
 * code_challenge=S256(verifier), code_challenge_method=S256), every value
 * percent-encoded. *url malloc'd (caller frees). 0 or ST_ENOMEM/ST_EINVAL. */
int auth_login_authorize_url(const auth_oidc_provider *p, const json_t *settings, const char *redirect_uri,
                             const auth_login *l, char **url);
/* The code exchange: a form body (grant_type=authorization_code, code,
 * redirect_uri, code_verifier, and client_id — plus client_secret when the
 * provider wants client_secret_post) and, for client_secret_basic, the
 * Authorization header value (RFC 6749 2.3.1: id and secret form-encoded,
 * then base64). *body and *authz (NULL for post) malloc'd; wipe and free
 * them with auth_login_wipe. */
int auth_login_token_request(const auth_oidc_provider *p, const char *client_secret, const char *code,
                             const char *redirect_uri, const char *verifier, char **body, char **authz);
void auth_login_wipe(char *s);
/* Takes the id_token out of a token endpoint reply (status 200, JSON
 * object, at most AUTH_LOGIN_TOKEN_RESPONSE_MAX bytes). *id_token malloc'd
 * (caller frees). On an OAuth error reply (any status) why gets its
 * "error" code (never its description, which may echo input). 0 or
 * AUTH_ELOGIN with why set. */
int auth_login_token_response(int status, const char *body, size_t len, char **id_token, char *why,
                              size_t whylen);

/* SHA-256 of a login state (in the "x" key). */
void auth_login_state_hash(const char *state, uint8_t out[32]);
/* 1 when the state (with its sealed expiry, auth_login.expires) was used
 * already (a replayed callback: refuse it before the code exchange), 0 when
 * not, or a store error. Any txn. */
int auth_login_state_used(st_txn *txn, const char *state, int64_t expires);
/* Write txn: records the state as used until `expires` (unix s, the login
 * cookie's); also deletes up to 16 used states that expired by now.
 * AUTH_EREPLAY when it was used already. */
int auth_login_state_consume(st_txn *txn, const char *state, int64_t expires, int64_t now);

/* ---- account linking */
typedef struct auth_link {
  char user_id[40];
  char user_name[300];
  char subject[AUTH_SUBJECT_MAX + 1];
  bool bind;                    /* found by the e-mail fallback: bind subject → user */
  bool sign_out_first;          /* cut only by an unwritten Universal Logout: sign them out in the sign-in's txn */
  uint8_t subject_hash[32];     /* sha256(iss \0 subject) */
} auth_link;

/* Resolves verified, checked claims (iss is the provider's issuer) to the
 * tenant's user, by the rules above, reading settings (the tenant's OIDC
 * record). 0 and *out; AUTH_ECLAIM, AUTH_ENOTLINKED, AUTH_EINACTIVE,
 * AUTH_EUNVERIFIED, AUTH_EAMBIGUOUS, AUTH_EBOUND, AUTH_ESTALE, or a store error. Any
 * txn. */
int auth_link_resolve(st_txn *txn, const char *tenant, const json_t *settings, const json_t *claims,
                      const char *iss, auth_link *out);
/* Which user a subject of the provider (issuer iss, e.g. Okta's user id) is,
 * whatever the user's state, reading settings: the user bound to it at an
 * earlier sign-in (rule a; when the subject claim is "sub"), else the one
 * user whose link attribute equals it (rule b; when the link claim is
 * "sub"). No e-mail fallback: there is no e-mail. 0 and user_id,
 * ST_ENOTFOUND, AUTH_EAMBIGUOUS, or a store error. Any txn. */
int auth_link_find(st_txn *txn, const char *tenant, const json_t *settings, const char *iss, const char *subject,
                   char user_id[ST_DIR_ID_LEN + 1]);
/* Write txn: binds out->subject_hash to out->user_id (both directions).
 * AUTH_EBOUND when either side is bound to another already. */
int auth_link_bind(st_txn *txn, const char *tenant, const auth_link *l);
/* Write txn: deletes the user's binding (user deleted). 0 when none. */
int auth_link_unbind_user(st_txn *txn, const char *tenant, const char *user_id);
/* Write txn, in the transaction of a SCIM write that changed the user (a
 * hook): when the user is bound to a subject and now has an externalId,
 * keeps the binding only when it is the same subject — the tenant's OIDC
 * settings link sub-like claims to externalId (link_attribute externalId,
 * subject_claim equal to link_claim) and sha256(issuer \0 externalId) is
 * the bound hash; otherwise (another subject, or settings under which the
 * two cannot be compared, or no settings: fail closed) deletes the
 * binding and sets *dropped. 0 or a store error. */
int auth_link_recheck_user(st_txn *txn, const char *tenant, const char *user_id, bool *dropped);

#endif
