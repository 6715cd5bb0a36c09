/* auth/oidc_provider.h — what the gateway knows of a tenant's OpenID
 * provider: its discovery document (OpenID Connect Discovery 1.0 §3/§4),
 * checked, and its signing keys (auth/jose.h), cached process-wide.
 *
 * No I/O and no clock here: the login flow (gateway/api/login.c) fetches
 * issuer + "/.well-known/openid-configuration" and the jwks_uri with the
 * outbound engine, under the operator's egress policy, and hands the bytes
 * and the time to these functions.
 *
 * What a discovery document must satisfy (else the tenant cannot sign in,
 * and the reason is logged and shown to the admin-facing error):
 *   - at most AUTH_OIDC_DISCOVERY_MAX bytes of strict JSON (duplicate keys
 *     refused), an object;
 *   - "issuer" equal to the configured issuer (both normalised: auth/oidc.h)
 *     — a mix-up or a rebinding of the provider must not go unnoticed; the
 *     document's own spelling is what ID tokens' "iss" must equal;
 *   - authorization_endpoint, token_endpoint, jwks_uri: absolute URLs of the
 *     issuer's scheme (https; http only when the issuer itself is http on a
 *     loopback address), without fragment, at most AUTH_OIDC_URL_MAX bytes;
 *   - when listed: response_types_supported has "code",
 *     id_token_signing_alg_values_supported has RS256 or ES256,
 *     code_challenge_methods_supported has "S256" (PKCE is always sent);
 *   - token_endpoint_auth_methods_supported (when listed) decides between
 *     client_secret_basic (preferred, the default) and client_secret_post.
 *
 * The cache: one entry per tenant, holding an immutable, reference-counted
 * auth_oidc_provider (its metadata plus its key set). An entry is used
 * only while the tenant's settings name the same issuer and client, and
 * only until AUTH_OIDC_META_TTL_MS after it was fetched. A token whose kid
 * the key set lacks (the provider rotated its keys) may trigger one JWKS
 * refetch per tenant per AUTH_OIDC_JWKS_REFETCH_MS — callers claim that
 * slot with auth_oidc_cache_claim_refetch, so a flood of forged kids cannot
 * turn the gateway into a JWKS fetch amplifier.
 *
 * Threads: the cache is guarded by its own mutex and may be used from every
 * loop; providers are immutable once made and may be read from any thread.
 * Ownership is written at each declaration. */
#ifndef MCPGATE_AUTH_OIDC_PROVIDER_H
#define MCPGATE_AUTH_OIDC_PROVIDER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/jose.h"

#define AUTH_OIDC_DISCOVERY_MAX (64 * 1024)  /* bytes of a discovery document */
#define AUTH_OIDC_URL_MAX 2048               /* bytes of one endpoint URL */
#define AUTH_OIDC_META_TTL_MS (3600 * 1000LL) /* metadata and keys refreshed after an hour */
#define AUTH_OIDC_JWKS_REFETCH_MS (60 * 1000LL) /* at most one unknown-kid refetch a minute */

typedef struct auth_oidc_provider {
  /* the tenant's settings this was fetched for */
  char tenant[64];
  char issuer[1025];    /* configured (normalised) */
  char client_id[256];
  /* from the discovery document */
  char doc_issuer[1025]; /* the document's spelling: ID tokens' iss must equal it */
  char authorization_endpoint[AUTH_OIDC_URL_MAX + 1];
  char token_endpoint[AUTH_OIDC_URL_MAX + 1];
  char jwks_uri[AUTH_OIDC_URL_MAX + 1];
  char end_session_endpoint[AUTH_OIDC_URL_MAX + 1]; /* "" when none */
  bool token_auth_post;  /* client_secret_post instead of client_secret_basic */
  /* the key set (NULL until fetched) */
  auth_jwks *jwks;
  int64_t fetched_ms;    /* when the discovery document was fetched */
  int64_t jwks_fetched_ms;
  /* private: reference count */
  int refs;
} auth_oidc_provider;

/* Checks a discovery document against the configured (normalised) issuer.
 * On success *out is a new provider (one reference; no keys yet) for
 * (tenant, issuer, client_id), fetched at now_ms. On failure returns
 * AUTH_EINVALID with one sentence in why (no document contents beyond the
 * name of the failing member); *out NULL. ST_ENOMEM when out of memory. */
int auth_oidc_discovery_parse(const char *doc, size_t len, const char *tenant, const char *issuer,
                              const char *client_id, int64_t now_ms, auth_oidc_provider **out, char *why,
                              size_t whylen);

/* A copy of p with its key set replaced by ks (one more reference taken on
 * ks), fetched at now_ms: a new provider with one reference. NULL when out
 * of memory. */
auth_oidc_provider *auth_oidc_provider_with_keys(const auth_oidc_provider *p, auth_jwks *ks, int64_t now_ms);
/* Another reference (returned). */
auth_oidc_provider *auth_oidc_provider_ref(auth_oidc_provider *p);
/* Drops one reference; the last frees it (and its reference on the keys).
 * NULL is fine. */
void auth_oidc_provider_free(auth_oidc_provider *p);

typedef struct auth_oidc_cache auth_oidc_cache;

/* A new empty cache; NULL when out of memory. */
auth_oidc_cache *auth_oidc_cache_new(void);
/* Frees the cache and its references (providers held elsewhere live on). */
void auth_oidc_cache_free(auth_oidc_cache *c);

/* The tenant's cached provider, when it was made for this issuer and
 * client, has keys, and is younger than AUTH_OIDC_META_TTL_MS at now_ms:
 * *out gets a new reference (release with auth_oidc_provider_free).
 * Returns 0, or -1 with *out NULL (fetch it). */
int auth_oidc_cache_get(auth_oidc_cache *c, const char *tenant, const char *issuer, const char *client_id,
                        int64_t now_ms, auth_oidc_provider **out);
/* Makes p (which must have keys) the tenant's entry, replacing any older
 * one; takes its own reference. 0 or ST_ENOMEM. */
int auth_oidc_cache_put(auth_oidc_cache *c, auth_oidc_provider *p);
/* Claims the tenant's unknown-kid refetch slot: true (and the slot is
 * taken until now_ms + AUTH_OIDC_JWKS_REFETCH_MS) when it was free, false
 * when a refetch happened within the interval. */
bool auth_oidc_cache_claim_refetch(auth_oidc_cache *c, const char *tenant, int64_t now_ms);
/* Admission of a metadata fetch for the tenant (discovery + keys), so a
 * burst of sign-ins against a cold or failing provider costs a bounded
 * number of fetches: AUTH_OIDC_FETCH_GO — fetch, then call
 * auth_oidc_cache_fetch_end exactly once; AUTH_OIDC_FETCH_BUSY —
 * AUTH_OIDC_FETCH_MAX fetches are in flight; AUTH_OIDC_FETCH_FAILED — one
 * failed less than AUTH_OIDC_FAIL_HOLD_MS ago, and why gets its reason. */
#define AUTH_OIDC_FETCH_MAX 4
#define AUTH_OIDC_FAIL_HOLD_MS 5000
enum { AUTH_OIDC_FETCH_GO = 0, AUTH_OIDC_FETCH_BUSY = 1, AUTH_OIDC_FETCH_FAILED = 2 };
int auth_oidc_cache_fetch_begin(auth_oidc_cache *c, const char *tenant, int64_t now_ms, char *why, size_t whylen);
/* Ends a fetch admitted by auth_oidc_cache_fetch_begin: fail_why NULL on
 * success, else the reason later callers get during the hold. */
void auth_oidc_cache_fetch_end(auth_oidc_cache *c, const char *tenant, int64_t now_ms, const char *fail_why);
/* Forgets the tenant's entry (its settings changed or were deleted). */
void auth_oidc_cache_forget(auth_oidc_cache *c, const char *tenant);

#endif
