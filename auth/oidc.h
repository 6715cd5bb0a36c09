/* auth/oidc.h — a tenant's OIDC relying-party settings: which OpenID
 * provider (the tenant's Okta org) employees sign in with, the gateway's
 * client there, and how an ID token's claims link to a SCIM user.
 *
 * This is step 1 of the Okta login (issue 16): the settings only. Discovery,
 * JWKS and the login flow read them later.
 *
 * Store layout: ST_DB_AUTH  "o" tenant \0 → JSON
 *   {issuer, client_id, scopes:[…], subject_claim, link_claim,
 *    link_attribute, logout_issuer?, created, updated}
 * The client secret is never in the record: it is sealed (AES-256-GCM,
 * store/seal.h) in ST_DB_SECRETS bound to (tenant, AUTH_OIDC_SECRET_KIND,
 * ""), and written and deleted in the same transaction as the record, so a
 * record always has its secret.
 *
 * The logout issuer is the authorization server whose keys sign Okta's
 * Universal Logout requests (auth/gtr.h): Okta signs them with its org
 * authorization server, whose issuer is the org URL, even when employees
 * sign in through a custom authorization server
 * (https://acme.okta.com/oauth2/default). Unless set ("logout_issuer",
 * validated and normalised like the issuer), it is the origin of the
 * issuer (auth_oidc_logout_issuer): https://acme.okta.com for both.
 *
 * The issuer is kept normalised: scheme and host lower-cased, trailing
 * slashes of the path removed ("https://acme.okta.com/" and
 * "https://ACME.okta.com" are both "https://acme.okta.com"), so discovery
 * is always issuer + "/.well-known/openid-configuration". Only https://
 * issuers, or http:// on a loopback IP literal (127.0.0.0/8, [::1]) — the
 * caller must still check the operator's egress policy (gateway/out), which
 * this module cannot see.
 *
 * Ownership: json_t out parameters are the caller's (json_decref); strings
 * passed in are borrowed for the call. No message this module writes ever
 * contains the client secret. */
#ifndef MCPGATE_AUTH_OIDC_H
#define MCPGATE_AUTH_OIDC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

#define AUTH_OIDC_SECRET_KIND "oidc.client_secret"
#define AUTH_OIDC_ISSUER_MAX 1024
#define AUTH_OIDC_CLIENT_ID_MAX 255
#define AUTH_OIDC_SECRET_MAX 1024
#define AUTH_OIDC_SCOPES_MAX 32  /* entries */
#define AUTH_OIDC_SCOPE_MAX 128  /* characters of one scope */
#define AUTH_OIDC_CLAIM_MAX 64

/* Validates an admin PUT body. On success returns 0, *config (owned) is the
 * record to store (defaults filled in, issuer normalised; without
 * created/updated and without the secret) and *secret points into `body`
 * (borrowed; NULL when the body has no client_secret: the caller keeps the
 * stored one, or refuses). On error returns AUTH_EINVALID and writes every
 * problem, '; '-separated, each naming its field, into err. */
int auth_oidc_parse(const json_t *body, json_t **config, const char **secret, char *err, size_t errlen);

/* Normalises an issuer URL into out (see above). 0, or -1 with a sentence
 * about "issuer" in why. */
int auth_oidc_issuer_normalise(const char *in, char *out, size_t outlen, char *why, size_t whylen);

/* The logout issuer of a record (or of auth_oidc_parse's config): its
 * "logout_issuer", else the issuer's scheme://host[:port]. 0, or -1 when
 * the record has no usable issuer (out empty). */
int auth_oidc_logout_issuer(const json_t *rec, char *out, size_t cap);

/* Writes the tenant's settings (config from auth_oidc_parse) and seals
 * secret, replacing the previous one; secret NULL keeps the stored secret,
 * and is AUTH_ENOSECRET when there is none. `now` is RFC 3339. *created is
 * 1 when the tenant had no settings. Write txns only. */
int auth_oidc_put(st_txn *txn, const char *tenant, const json_t *config, const char *secret,
                  const char *now, int *created);
/* The tenant's record (caller json_decref). ST_ENOTFOUND if none. */
int auth_oidc_get(st_txn *txn, const char *tenant, json_t **rec);
/* The record as admins see it: the secret is never in it, only
 * "client_secret_set": true; "logout_issuer" is always shown (the derived
 * one when none is set). */
json_t *auth_oidc_view(const json_t *rec);
/* Unseals the client secret. *value is malloc'd, NUL-terminated; release
 * with auth_oidc_secret_free (wipes it). ST_ENOTFOUND if none. */
int auth_oidc_secret(st_txn *txn, const char *tenant, char **value);
void auth_oidc_secret_free(char *value);
/* Deletes the settings and the sealed secret. ST_ENOTFOUND if none. Write
 * txns only. */
int auth_oidc_delete(st_txn *txn, const char *tenant);
/* Tenant purge (st_purge_fn): the record and its secret; returns how many
 * keys were deleted. */
int auth_oidc_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers auth_oidc_purge_tenant as the "auth.oidc" purge; at startup. */
int auth_oidc_register_purge(st_store *st);

#endif
