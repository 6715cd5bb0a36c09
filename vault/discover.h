/* vault/discover.h — the pure parts of connector auth
 * {"type":"oauth","discover":true}: reading what an upstream MCP server
 * says about its own authorization (MCP authorization 2025-11-25).
 *
 *   1. The connector URL answers an unauthenticated initialize with 401
 *      and `WWW-Authenticate: Bearer resource_metadata="…"` (RFC 9728
 *      §5.1: vault_www_auth_resource_metadata), else the metadata is at the
 *      well-known URL (§3.1, path insertion: vault_prm_well_known).
 *   2. The protected-resource metadata (vault_prm_parse): its `resource`
 *      must be the connector URL's (§3.3) and it names the authorization
 *      server (the first of `authorization_servers`).
 *   3. The authorization server's metadata (RFC 8414, else OpenID
 *      discovery: vault_asm_candidates; vault_asm_parse): `issuer` must be
 *      the AS URL exactly (§3.3), PKCE S256 must be supported.
 *   4. The gateway's client identity there: a Client ID Metadata Document
 *      it serves itself (vault_cimd_document) when the AS supports them,
 *      else RFC 7591 registration (vault_dcr_request, vault_dcr_reply).
 *
 * Every input here was written by the upstream, which the admin chose but
 * which may be compromised: bodies are parsed strictly (one JSON object,
 * no duplicate keys), every URL is checked for shape and length, and no
 * error message quotes a document's contents beyond a member's name (a
 * client secret is never named). The caller (gateway/api/admin_discover.c)
 * fetches, checks each URL against the egress policy, and caps bodies at
 * VAULT_DISCOVER_BODY_MAX. */
#ifndef MCPGATE_VAULT_DISCOVER_H
#define MCPGATE_VAULT_DISCOVER_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAULT_EDISCOVER (-31020) /* a metadata document or reply is malformed or contradicts itself (502) */
#define VAULT_EUNUSABLE (-31021) /* well-formed, but says something the gateway cannot use (400) */

#define VAULT_DISCOVER_BODY_MAX (64 * 1024)
#define VAULT_DISCOVER_URL_MAX 2048
#define VAULT_DISCOVER_URL_BUF (VAULT_DISCOVER_URL_MAX + 1)
#define VAULT_ASM_CANDIDATES 3

/* 1 when u is an absolute http(s) URL of at most VAULT_DISCOVER_URL_MAX
 * printable ASCII characters without spaces, fragment or characters that
 * need quoting; else 0. */
int vault_discover_url_ok(const char *u);

/* The resource_metadata parameter of a Bearer challenge in a
 * WWW-Authenticate value (several challenges, comma-separated, as when
 * header fields are combined; token or quoted-string values). 0 and the
 * URL in out (a vault_discover_url_ok URL), or -1 (none, malformed, or
 * longer than cap - 1). */
int vault_www_auth_resource_metadata(const char *value, char *out, size_t cap);

/* RFC 9728 §3.1: scheme://authority/.well-known/oauth-protected-resource
 * followed by the resource's path (a terminating '/' removed) and query.
 * 0, or -1 when resource is not a vault_discover_url_ok URL or out is too
 * small. */
int vault_prm_well_known(const char *resource, char *out, size_t cap);

/* 1 when two resource identifiers name the same resource: equal after
 * lower-casing scheme and host, dropping a default port and one
 * terminating '/' of the path; else 0. */
int vault_same_resource(const char *a, const char *b);

/* The host (lower-cased, without port) of an http(s) URL into out: 0 or -1. */
int vault_url_host(const char *url, char *out, size_t cap);

/* The metadata URLs to try for an authorization server, in order: RFC 8414
 * path insertion (…/.well-known/oauth-authorization-server/path), OpenID
 * Connect with path insertion, and OpenID Connect appended
 * (issuer/.well-known/openid-configuration), without duplicates. Returns
 * how many (1..VAULT_ASM_CANDIDATES), or -1 for an unusable issuer. */
int vault_asm_candidates(const char *issuer, char out[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF]);

/* What protected-resource metadata says (RFC 9728 §2). */
typedef struct vault_prm {
  char resource[VAULT_DISCOVER_URL_BUF];
  char authorization_server[VAULT_DISCOVER_URL_BUF]; /* authorization_servers[0] */
  /* scopes_supported, space-separated ("" when absent, or when there are
   * more than 50, one is not printable, holds '"' or is longer than 200:
   * then the admin names the scopes) */
  char scopes[VAULT_DISCOVER_URL_BUF];
} vault_prm;
/* Parses a PRM document fetched for the connector whose URL is `url`. 0;
 * VAULT_EDISCOVER (not a JSON object, duplicate keys, a member of the
 * wrong type — scopes_supported not an array of strings —, a malformed
 * URL); VAULT_EUNUSABLE (`resource` is another
 * resource's, or no authorization server). err: one sentence. */
int vault_prm_parse(const char *body, size_t len, const char *url, vault_prm *out, char *err, size_t errlen);
/* The same, with the authorization server the admin named (want, NULL:
 * none — then the first listed): it must be among authorization_servers,
 * exactly as written (RFC 8414 §3.3's simple comparison), else
 * VAULT_EUNUSABLE; it is the one used. */
int vault_prm_parse_for(const char *body, size_t len, const char *url, const char *want, vault_prm *out, char *err,
                        size_t errlen);

/* ---- whose word a URL is: the egress level it is fetched at ----
 * The upstream writes every URL its metadata names; fetched at the admin
 * egress level (egress_allow: internal services the operator opened for
 * the admins' connectors) they let a compromised upstream aim the
 * gateway's metadata, registration, token and revocation requests — the
 * last three with the gateway's client credentials — at those services.
 * So a URL a discovered connector's metadata named gets the admin level
 * only on a host the admin chose: the connector URL's (the upstream
 * reaches its own host anyway) or that of the authorization server the
 * admin named (auth.authorization_server: an internal MCP server whose
 * authorization server is internal too). Any other — the authorization
 * server the upstream alone named included: its word is what is in
 * doubt — gets the untrusted level (public addresses, and what
 * egress_allow_untrusted lists). Hosts are compared lower-cased, port and
 * scheme aside, as written (vault_url_host): another spelling of a host is
 * another host (fail closed). */
/* 1 when url is on connector_url's host or on admin_as's (NULL: none). */
int vault_discover_url_vouched(const char *connector_url, const char *admin_as, const char *url);
/* For a stored connector record: 1 when url, fetched for it, gets the
 * admin level — every URL of a connector whose endpoints the admin wrote
 * (no auth.discover), and for a discovered one what
 * vault_discover_url_vouched says of its url and auth.authorization_server;
 * else 0 (the untrusted level), also for a NULL url or record. */
int vault_connector_url_admin_set(const json_t *rec, const char *url);

/* What authorization server metadata says (RFC 8414 §2). */
typedef struct vault_asm {
  char issuer[VAULT_DISCOVER_URL_BUF];
  char authorization_endpoint[VAULT_DISCOVER_URL_BUF];
  char token_endpoint[VAULT_DISCOVER_URL_BUF];
  char revocation_endpoint[VAULT_DISCOVER_URL_BUF];   /* "" when none */
  char registration_endpoint[VAULT_DISCOVER_URL_BUF]; /* "" when none */
  bool cimd;                                          /* client_id_metadata_document_supported */
  /* the client authentication to register with (client_secret_basic when
   * the AS lists it or lists none; else client_secret_post; else none) */
  char dcr_auth[24];
} vault_asm;
/* Parses AS metadata fetched for the authorization server `issuer`. 0;
 * VAULT_EDISCOVER (malformed, `issuer` not exactly the AS URL, a required
 * endpoint missing or malformed); VAULT_EUNUSABLE (no PKCE S256, no
 * client authentication the gateway speaks). err: one sentence. */
int vault_asm_parse(const char *body, size_t len, const char *issuer, vault_asm *out, char *err, size_t errlen);

/* The RFC 7591 registration request (JSON text, *body malloc'd): client_name,
 * redirect_uris [redirect_uri], grant_types [authorization_code,
 * refresh_token], response_types [code], token_endpoint_auth_method
 * (auth), scope (scopes joined, when any). 0 or ST_ENOMEM. */
int vault_dcr_request(const char *client_name, const char *redirect_uri, const json_t *scopes, const char *auth,
                      char **body);
/* A registration reply (RFC 7591 §3.2.1) for a request with method `auth`:
 * client_id (printable, at most 512), client_secret (printable, at most
 * 1024; required unless the method is "none"), and the method the AS
 * settled on (*method: one of client_secret_basic, client_secret_post,
 * none), and when the secret lapses (*secret_expires_at: client_secret_
 * expires_at, unix seconds; 0 never or no secret). *client_id and
 * *client_secret malloc'd (the secret: free with vault_wipe; NULL for
 * "none"). VAULT_EDISCOVER otherwise; err never quotes the reply. */
int vault_dcr_reply(const char *body, size_t len, const char *auth, char **client_id, char **client_secret,
                    char method[24], int64_t *secret_expires_at, char *err, size_t errlen);

/* The gateway's Client ID Metadata Document toward an upstream AS (a
 * public client; new reference). */
json_t *vault_cimd_document(const char *client_id, const char *tenant, const char *redirect_uri);

/* The PUT body of a discover connector: {url, description?, ca_file?,
 * timeouts?, auth:{type:"oauth", discover:true, scopes?,
 * authorization_server?}} — authorization_server an issuer URL (a
 * vault_discover_url_ok URL without query). 1 when
 * body.auth asks for discovery (then its other members are checked: 0
 * answers VAULT_EINVALID with err), else 0. Returns 1, 0 or
 * VAULT_EINVALID. */
int vault_discover_wanted(const json_t *body, char *err, size_t errlen);

#endif
