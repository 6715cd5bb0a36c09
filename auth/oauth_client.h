/* auth/oauth_client.h — the MCP clients of the gateway's OAuth
 * authorization server (issue 17): their metadata, checked the same way
 * whether it arrives by dynamic registration (RFC 7591), as a Client ID
 * Metadata Document fetched from the client_id URL, or pinned by an admin;
 * redirect URI matching (RFC 8252 §7.3: a loopback redirect matches on any
 * port); and the PKCE S256 check of authorization codes.
 *
 * This is the part of the authorization server with no tokens in it; the
 * endpoints (gateway/api) and the token families come with the rest of the
 * issue. No I/O here.
 *
 * What client metadata must satisfy (auth_oauth_client_validate), in the
 * spirit of "public clients only, nothing we do not use":
 *   - redirect_uris: 1..AUTH_OAUTH_REDIRECTS_MAX strings, each at most
 *     AUTH_OAUTH_URI_MAX bytes, printable ASCII, no fragment, no userinfo:
 *     https://host[:port]/path, or a loopback http URI —
 *     http://127.0.0.1, http://[::1] or http://localhost, any port or none;
 *   - token_endpoint_auth_method absent or "none" (public clients: Claude
 *     Code has no secret to keep); grant_types within authorization_code and
 *     refresh_token; response_types within "code";
 *   - client_name (optional) at most AUTH_OAUTH_NAME_MAX bytes of printable
 *     UTF-8 without control characters; client_uri and logo_uri (optional)
 *     https URLs — kept, shown as unverified;
 *   - a document fetched from a URL (CIMD) must name that URL as its
 *     client_id; a DCR body must not carry a client_id;
 *   - JSON is parsed strictly by the caller (duplicate keys refused);
 *     unknown members are ignored (RFC 7591 §2), and never stored.
 *
 * Store layout (ST_DB_AUTH):
 *   "c" tenant \0 client_id → JSON {client_id, kind, client_name?,
 *        client_uri?, logo_uri?, redirect_uris, created, last_used,
 *        fetched? (cimd: unix s of the fetch)}
 *   kind: "dcr" (registered here), "cimd" (a fetched document, cached),
 *   "pinned" (an admin's copy of a document; wins over a fetch),
 *   "blocked" (an admin refused this document URL: {client_id, kind,
 *   created, last_used} only; it is neither fetched nor given anything
 *   until the admin lifts the block or pins a document; never swept).
 *   "c" tenant \0 (the empty client_id: the first key of the tenant's
 *        range) → JSON {dcr, cimd, pinned, blocked, sweep}: how many records of
 *        each kind the tenant holds (kept by put and delete, so a cap is
 *        checked without a scan), and where the idle sweep stopped. Deleted
 *        with the rest by the tenant purge; a store whose records predate
 *        it counts from 0 (never below).
 * Ownership: json_t out parameters are the caller's. */
#ifndef MCPGATE_AUTH_OAUTH_CLIENT_H
#define MCPGATE_AUTH_OAUTH_CLIENT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define AUTH_OAUTH_REDIRECTS_MAX 10
#define AUTH_OAUTH_URI_MAX 512
#define AUTH_OAUTH_NAME_MAX 200
#define AUTH_OAUTH_CLIENT_ID_MAX 255   /* a CIMD URL is the id: at most this */
#define AUTH_OAUTH_METADATA_MAX (16 * 1024) /* bytes of a metadata document or DCR body */
#define AUTH_OAUTH_CHALLENGE_LEN 43    /* base64url(SHA-256) */
#define AUTH_OAUTH_VERIFIER_MIN 43     /* RFC 7636 §4.1 */
#define AUTH_OAUTH_VERIFIER_MAX 128

#define AUTH_OAUTH_KIND_DCR "dcr"
#define AUTH_OAUTH_KIND_CIMD "cimd"
#define AUTH_OAUTH_KIND_PINNED "pinned"
#define AUTH_OAUTH_KIND_BLOCKED "blocked"

/* ---- errors (auth.h's range) */
#define AUTH_EOAUTH_METADATA (-30660) /* client metadata refused (invalid_client_metadata) */
#define AUTH_EOAUTH_REDIRECT (-30661) /* a redirect URI refused (invalid_redirect_uri) */
#define AUTH_EOAUTH_CLIENT_GONE (-30667) /* the registered client was deleted since the request was checked */

/* Checks client metadata (a parsed JSON object, borrowed). cimd_url: the
 * URL the document was fetched from (its client_id must equal it), or NULL
 * for a DCR body (which must not carry a client_id). On success *clean is a
 * new object with only what is kept: {client_name?, client_uri?, logo_uri?,
 * redirect_uris} (strings copied). On failure AUTH_EOAUTH_METADATA or
 * AUTH_EOAUTH_REDIRECT and one sentence naming the member in err; never
 * quotes more than the member's name. */
int auth_oauth_client_validate(const json_t *meta, const char *cimd_url, json_t **clean, char *err, size_t errlen);

/* Whether a URL is acceptable as a CIMD client_id: https, a host, a path
 * other than "/", no query, fragment, userinfo or dot segments, at most
 * AUTH_OAUTH_CLIENT_ID_MAX bytes (draft-ietf-oauth-client-id-metadata-
 * document §3). The egress policy is the fetcher's to apply. */
bool auth_oauth_cimd_url_ok(const char *url);

/* Whether one redirect URI is acceptable for registration (see above). */
bool auth_oauth_redirect_uri_ok(const char *uri);

/* Whether a redirect URI is a loopback http one (127.0.0.1, [::1] or
 * localhost, any port): the authorization server always asks consent for
 * any other. */
bool auth_oauth_redirect_is_loopback(const char *uri);

/* Whether `uri` (from an authorization request) matches one of
 * redirect_uris (a JSON array of registered URIs): exactly, or — for a
 * loopback http URI — with the same scheme, host, path and query on any
 * port (RFC 8252 §7.3). */
bool auth_oauth_redirect_match(const json_t *redirect_uris, const char *uri);

/* PKCE S256 (RFC 7636 §4.6): whether base64url(SHA-256(verifier)) equals
 * challenge, in constant time; the verifier must be 43..128 characters of
 * [A-Za-z0-9-._~]. */
bool auth_oauth_pkce_ok(const char *verifier, const char *challenge);
/* Whether a code_verifier is well-formed: 43..128 characters of
 * [A-Za-z0-9-._~] (RFC 7636 §4.1). */
bool auth_oauth_verifier_ok(const char *verifier);
/* Whether a code_challenge is well-formed for S256 (43 base64url chars). */
bool auth_oauth_challenge_ok(const char *challenge);

/* ---- the client records */

/* Write txn: stores a client record for tenant: clean (from
 * auth_oauth_client_validate, plus "fetched" for a CIMD document) plus
 * client_id, kind, created (RFC 3339 now) and last_used (unix s). Replaces
 * a record of the same id (the counts follow a change of kind). */
int auth_oauth_client_put(st_txn *txn, const char *tenant, const char *client_id, const char *kind,
                          const json_t *clean, const char *now, int64_t now_s);
/* The record of tenant's client (caller json_decref). ST_ENOTFOUND. */
int auth_oauth_client_get(st_txn *txn, const char *tenant, const char *client_id, json_t **rec);
/* Whether rec (a client record) is an admin's block. */
bool auth_oauth_client_blocked(const json_t *rec);
/* Whether a code may still be issued to client_id of tenant, read in the
 * write job that issues it: a client_id that is no client metadata
 * document URL is a registration, and must still be stored — an admin may
 * have deleted it (with its codes) since the authorization request was
 * checked, and a consent page stays open for minutes. A document URL may
 * have no record (never cached, or evicted): it is fetched, not
 * registered, so it passes — unless its record is a block. 0, AUTH_EOAUTH_CLIENT_GONE, or a store error.
 * Any txn. */
int auth_oauth_client_still(st_txn *txn, const char *tenant, const char *client_id);
/* auth_oauth_client_still, and redirect_uri still one the client's record
 * allows (auth_oauth_redirect_match), read in the write job that issues a
 * code: a consent page stays open for minutes, and meanwhile a document
 * may be fetched again or pinned anew without the redirect URI the page
 * was opened for. A document URL without a record passes (nothing newer
 * than what the page was opened with is known); a block is
 * AUTH_EOAUTH_CLIENT_GONE. 0,
 * AUTH_EOAUTH_CLIENT_GONE, AUTH_EOAUTH_REDIRECT, or a store error. Any
 * txn. */
int auth_oauth_client_redirect_still(st_txn *txn, const char *tenant, const char *client_id, const char *redirect_uri);
/* Write txn: deletes it (and counts it out). ST_ENOTFOUND when absent. */
int auth_oauth_client_delete(st_txn *txn, const char *tenant, const char *client_id);
/* Write txn: records a use (at most once a minute is the caller's). */
int auth_oauth_client_touch(st_txn *txn, const char *tenant, const char *client_id, int64_t now_s);
/* Write txn: deletes up to `limit` DCR clients of tenant unused since
 * before `idle_before` (unix s); returns how many. */
int auth_oauth_clients_expire(st_txn *txn, const char *tenant, int64_t idle_before, int limit);
/* How many records of `kind` tenant holds (from the counts record: no
 * scan), or a negative store error. */
int64_t auth_oauth_clients_count(st_txn *txn, const char *tenant, const char *kind);
/* Write txn: one step of tenant's idle sweep. Looks at up to `scan` client
 * records after the one the previous step stopped at (wrapping around to
 * the first), deletes the DCR clients unused since before dcr_idle_before
 * and the cached CIMD documents unused since before cimd_idle_before (unix
 * s; pinned documents never), and remembers where it stopped. Returns how
 * many it deleted. O(scan) whatever the tenant holds: callers run a step
 * with each write that adds a record, so every record is looked at again
 * after about (records / scan) additions. */
int auth_oauth_clients_sweep(st_txn *txn, const char *tenant, int64_t dcr_idle_before, int64_t cimd_idle_before,
                             int scan);
/* Up to `limit` client records of tenant in client_id order, after `after`
 * (exclusive; NULL or "" from the first), of `kind` only when not NULL:
 * *out a new array of the records (caller json_decref); *more true when
 * records follow (go on after the last one's client_id). */
int auth_oauth_clients_list(st_txn *txn, const char *tenant, const char *kind, const char *after, int limit,
                            json_t **out, bool *more);
/* Tenant purge (st_purge_fn): every client record; keys deleted. */
int auth_oauth_clients_purge_tenant(st_txn *txn, const char *tenant, int limit);

#endif
