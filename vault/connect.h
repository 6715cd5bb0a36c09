/* vault/connect.h — the pure parts of an employee's connect flow toward a
 * connector's authorization server (authorization code + PKCE S256 +
 * state); gateway/api/connect.c drives it.
 *
 *   1. GET /t/{t}/connect/{connector} (signed in): vault_connect_new draws
 *      state and verifier (32 random bytes each), vault_connect_bind notes
 *      the connector as it is (a digest of its binding, authorization
 *      server and client), vault_connect_seal seals them with the user,
 *      the connector and an expiry into the connect cookie (AES-256-GCM
 *      under the store's key, bound to the tenant and the kind
 *      "vault.connect"); nothing is written to the store.
 *      vault_connect_authorize_url builds the redirect.
 *   2. GET /t/{t}/connect/callback: vault_connect_open checks the cookie
 *      (tenant, expiry, state in constant time); the caller checks that the
 *      signed-in user is the cookie's user and that the connector is still
 *      the one the flow began with (vault_connect_matches: the code was
 *      issued by the authorization server the connector named then, for
 *      its upstream then — a move or rekey while the person signed in at
 *      the service refuses it, before any code exchange);
 *      vault_connect_token_request builds the code exchange with the
 *      connector's client authentication; vault_tokens_from_reply
 *      (grant.h) reads the reply; a writer job stores the grant
 *      (vault_grant_put) after checking the user is still active and the
 *      connector still the same oauth connector (vault_connect_matches
 *      again).
 * Refresh (vault_refresh_request) uses the same client authentication.
 * No message contains a code, token, verifier or secret. */
#ifndef MCPGATE_VAULT_CONNECT_H
#define MCPGATE_VAULT_CONNECT_H
#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

#define VAULT_CONNECT_TTL_S 600
#define VAULT_CONNECT_RAND_LEN 43 /* 32 random bytes, base64url */
#define VAULT_CONNECT_COOKIE_MAX 2048
#define VAULT_ECONNECT (-31010)   /* connect cookie missing, forged, expired, other tenant or state */

typedef struct vault_connect {
  char state[VAULT_CONNECT_RAND_LEN + 1];
  char verifier[VAULT_CONNECT_RAND_LEN + 1];
  char user[65];
  char connector[33];
  int64_t expires; /* unix seconds */
  char bind[VAULT_CONNECT_RAND_LEN + 1]; /* the connector when it began (vault_connect_bind); "" : none */
} vault_connect;

/* Fresh state and verifier for (user, connector), expiring
 * VAULT_CONNECT_TTL_S after now. 0, ST_EINVAL or ST_ECRYPTO. */
int vault_connect_new(vault_connect *c, const char *user, const char *connector, int64_t now);
/* Notes in c the connector the flow begins with (its record rec): a digest
 * of its binding (vault_connector_bind: URL, credential settings, epoch)
 * and of its authorization server and client. 0, ST_EINVAL (rec has no
 * binding), ST_ENOMEM or ST_ECRYPTO. */
int vault_connect_bind(vault_connect *c, const json_t *rec);
/* 1 when rec (the connector as it is now) is still the one c began with;
 * 0 otherwise (also without a noted connector, or when it cannot be
 * computed: fail closed). */
int vault_connect_matches(const vault_connect *c, const json_t *rec);
/* Seals c for tenant into cookie text (*out malloc'd). Any thread. */
int vault_connect_seal(st_store *st, const char *tenant, const vault_connect *c, char **out);
/* Opens a connect cookie of tenant whose state equals `state` and that has
 * not expired at now. 0 and *out, or VAULT_ECONNECT. */
int vault_connect_open(st_store *st, const char *tenant, const char *cookie, const char *state, int64_t now,
                       vault_connect *out);

/* The key form (auth type user_header): an employee's own key is saved
 * from their page for the connector as the page showed it. The page's
 * data (api/me) gives each such connector a key state: the user, the
 * connector and a digest of its binding then (vault_connector_bind: its
 * URL and credential settings), sealed like the connect cookie (kind
 * "vault.key"). The PUT that saves the key sends it back, and the writer
 * job stores the key only while the connector's binding is still that one
 * (vault_key_state_matches): a key typed for the old upstream is never
 * stored for the one the connector was moved to meanwhile. Nothing secret
 * is in it; sealing keeps the page from learning the upstream's URL. */
#define VAULT_KEY_STATE_MAX 512
typedef struct vault_key_state {
  char bind[VAULT_CONNECT_RAND_LEN + 1]; /* base64url(SHA-256(binding)) */
} vault_key_state;
/* The key state for user and connector record rec (*out malloc'd): 0,
 * ST_EINVAL (rec has no binding), ST_ENOMEM or a sealing error. Any thread. */
int vault_key_state_seal(st_store *st, const char *tenant, const char *user, const char *connector, const json_t *rec,
                         char **out);
/* Opens a key state of tenant made for (user, connector): 0 and *out, or
 * VAULT_ECONNECT (missing, forged, another tenant, user or connector). */
int vault_key_state_open(st_store *st, const char *tenant, const char *text, const char *user, const char *connector,
                         vault_key_state *out);
/* 1 when rec (the connector as it is now) still has the binding s was made
 * for; 0 otherwise (also when it cannot be computed: fail closed). */
int vault_key_state_matches(const vault_key_state *s, const json_t *rec);

/* The authorization request URL for the connector's auth record (type
 * oauth): response_type=code, client_id, redirect_uri, scope (the
 * record's scopes joined by spaces, when any), state,
 * code_challenge=S256(verifier), code_challenge_method=S256, and
 * resource (RFC 8707) when the record has auth.resource — every value
 * percent-encoded, appended with '&' when authorize_url has a query.
 * *url malloc'd. */
int vault_connect_authorize_url(const json_t *auth, const char *redirect_uri, const vault_connect *c, char **url);
/* The code exchange (grant_type=authorization_code, code, redirect_uri,
 * code_verifier, resource when auth.resource is set, client_id;
 * client_secret for client_secret_post) and, for
 * client_secret_basic, the Authorization header value (RFC 6749 §2.3.1).
 * *body, *authz (NULL unless basic) malloc'd: wipe with vault_wipe. */
int vault_connect_token_request(const json_t *auth, const char *client_secret, const char *code,
                                const char *redirect_uri, const char *verifier, char **body, char **authz);
/* The refresh (grant_type=refresh_token, refresh_token, resource when
 * auth.resource is set, client_id, client auth as above). */
int vault_refresh_request(const json_t *auth, const char *client_secret, const char *refresh, char **body,
                          char **authz);
/* An RFC 7009 revocation request for one token (token, token_type_hint,
 * client auth as above; client_id always in the body for public clients). */
int vault_revoke_request(const char *client_id, const char *client_secret, int auth_post, const char *token,
                         const char *hint, char **body, char **authz);
void vault_wipe(char *s);

#endif
