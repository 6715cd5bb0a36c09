/* auth/oauth_params.h — the request parameters of the gateway's OAuth
 * authorization server (issue 17): the query of /t/{t}/oauth/authorize, the
 * form bodies of /t/{t}/oauth/token and /oauth/revoke. Parsed and checked
 * here, as pure functions (no I/O, no store, any thread), so the endpoints
 * (gateway/api/oauth_flow.c) only act on the result and a fuzzer can drive
 * the same code.
 *
 * The rules, and why:
 *  - application/x-www-form-urlencoded, strictly: pairs split at '&', name
 *    and value at the first '=', '+' is a space, %XX a byte; a '%' without
 *    two hex digits makes the whole request invalid_request (a lenient
 *    decoder and a strict one reading the same bytes differently is how
 *    parameter smuggling starts). Names are decoded too: "client%5Fid" is
 *    client_id.
 *  - A parameter given more than once is refused (RFC 6749 §3.1), a
 *    duplicated resource included (RFC 8707 allows several; the gateway
 *    issues a grant for one: invalid_target). A parameter with an empty
 *    value counts as absent (§3.1 again); unknown parameters are ignored.
 *  - Every value is capped and never cut: a verifier, redirect URI or
 *    client_id longer than its cap is refused, not truncated (a truncated
 *    value would be checked while another was sent). Values must be
 *    printable ASCII (%x20-7E: RFC 6749 Appendix A's VSCHAR; %00 never
 *    reaches a C string).
 *  - Required parameters by endpoint and grant type; PKCE S256 only, a
 *    43-character challenge; a code_verifier of 43..128 unreserved
 *    characters (RFC 7636 §4.1); codes and refresh tokens of this
 *    gateway's shape only (anything else is invalid_grant: not ours).
 *  - Errors carry the RFC's code (a static string) and one sentence naming
 *    the parameter; a value is never quoted back (it may be a secret).
 *  - Secrets (code, refresh token, verifier) are wiped from the scratch
 *    buffers; a code or refresh token leaves only as its SHA-256 (what the
 *    store is keyed by). The verifier is the caller's to wipe. */
#ifndef MCPGATE_AUTH_OAUTH_PARAMS_H
#define MCPGATE_AUTH_OAUTH_PARAMS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/oauth_client.h"
#include "auth/oauth_token.h"

#define AUTH_OAUTH_PARAMS_MAX 16384  /* bytes of a query or form body */
#define AUTH_OAUTH_STATE_MAX 1024    /* bytes of state */
#define AUTH_OAUTH_RESOURCE_MAX 1024 /* bytes of resource (public_url is at most 512) */
#define AUTH_OAUTH_WHY_MAX 200       /* bytes of an error sentence, NUL included */

/* ---- errors (auth.h's range) */
#define AUTH_EOAUTH_CLIENT_ID (-30664) /* authorize: client_id missing or malformed: an error page, no redirect */
#define AUTH_EOAUTH_REQUEST (-30665)   /* a refused request: RFC code in ->error, a sentence in ->why */
/* (authorize's redirect_uri missing or malformed: AUTH_EOAUTH_REDIRECT, an
 * error page, no redirect) */

/* /t/{t}/oauth/authorize. */
typedef struct auth_oauth_authz_params {
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];  /* "" when absent or refused */
  char redirect_uri[AUTH_OAUTH_URI_MAX + 1];     /* "" when absent or refused */
  char state[AUTH_OAUTH_STATE_MAX + 1];          /* "" when absent or refused */
  char challenge[AUTH_OAUTH_CHALLENGE_LEN + 1];  /* S256 */
  char resource[AUTH_OAUTH_RESOURCE_MAX + 1];    /* whether it is this tenant's is the caller's to say */
  const char *error;                             /* NULL, or the RFC 6749/8707 error code */
  char why[AUTH_OAUTH_WHY_MAX];
} auth_oauth_authz_params;

/* Parses and checks an authorization request's query (len bytes, need not
 * be NUL-terminated). 0 when every parameter is usable. Else the first
 * problem, in the order RFC 6749 §4.1.2.1 needs: AUTH_EOAUTH_CLIENT_ID
 * (client_id: tell the person, never redirect), AUTH_EOAUTH_REDIRECT
 * (redirect_uri: the same), AUTH_EOAUTH_REQUEST (the rest: once the caller
 * has verified client and redirect URI, the error goes back to the client
 * with state — p->state is "" when state itself was the problem). ->error
 * and ->why are set for every refusal. */
int auth_oauth_authorize_parse(const char *q, size_t len, auth_oauth_authz_params *p);

/* /t/{t}/oauth/token. */
typedef struct auth_oauth_token_params {
  bool refresh;                                  /* grant_type=refresh_token; else authorization_code */
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  char redirect_uri[AUTH_OAUTH_URI_MAX + 1];     /* authorization_code */
  char verifier[AUTH_OAUTH_VERIFIER_MAX + 1];    /* authorization_code; a secret: wipe it */
  uint8_t hash[32];                              /* SHA-256 of the code or of the refresh token */
  const char *error;
  char why[AUTH_OAUTH_WHY_MAX];
} auth_oauth_token_params;

/* Parses and checks a token request's form body. 0, or AUTH_EOAUTH_REQUEST
 * with ->error one of invalid_request, unsupported_grant_type (400) and
 * invalid_grant (a code or refresh token not of this gateway's shape). */
int auth_oauth_token_parse(const char *form, size_t len, auth_oauth_token_params *p);

/* /t/{t}/oauth/revoke (RFC 7009). */
typedef struct auth_oauth_revoke_params {
  char client_id[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  bool ours;                                     /* token has an access or refresh token's shape */
  uint8_t hash[32];                              /* its SHA-256 when ours */
  const char *error;
  char why[AUTH_OAUTH_WHY_MAX];
} auth_oauth_revoke_params;

/* Parses and checks a revocation request's form body: token and client_id
 * required (token_type_hint is only a hint: ignored). 0, or
 * AUTH_EOAUTH_REQUEST with ->error invalid_request. A token that is not
 * one of ours is not an error (RFC 7009 §2.2: nothing to revoke): ours is
 * false. */
int auth_oauth_revoke_parse(const char *form, size_t len, auth_oauth_revoke_params *p);

#endif
