/* vault/vault.h — credentials the gateway holds for upstreams.
 *
 * Today: connectors (an upstream MCP server of a tenant) and their shared
 * credential (a header such as "Authorization: Bearer …" that the gateway
 * injects; employees never see it). The credential is sealed at rest with
 * AES-256-GCM in ST_DB_SECRETS, bound to (tenant, "connector.header",
 * connector name); the connector record only says that one exists.
 *
 * Store layout: ST_DB_CONNECTORS  tenant \0 name → connector JSON
 *   {name, url, description, auth:{type, name}, ca_file, timeouts:{…},
 *    created, updated, warnings:[…], epoch?}
 * "epoch" (a decimal string, absent until the first) counts the PUTs that
 * moved or rekeyed the connector: with the url it says which upstream
 * sessions are still the connector's (vault_connector_bind); the admin
 * view leaves it out.
 * No sockets here; writes happen inside writer jobs (pure functions of
 * store + arguments). */
#ifndef MCPGATE_VAULT_VAULT_H
#define MCPGATE_VAULT_VAULT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- errors: vault's range is -31000..-31099 (outside libuv's errno range
 * and LMDB's); vault functions also pass ST_E* through. */
#define VAULT_ERR_FIRST (-31000)
#define VAULT_ERR_LAST (-31099)
#define VAULT_EINVALID (-31000) /* a connector definition failed validation */
#define VAULT_ENOGRANT (-31001) /* an oauth connector: this user has not connected it (or no user) */
#define VAULT_EEXPIRED (-31002) /* an oauth connector: the user's access token expired (refresh it) */
/* Names a vault code, or a store code (st_strerror); static string. */
const char *vault_strerror(int err);

#define VAULT_NAME_MAX 32
#define VAULT_SECRET_KIND "connector.header"

/* [a-z0-9-]{1,32} (no '_': aggregated tool names split at "__"). */
int vault_connector_name_valid(const char *name);

/* Validates an admin PUT body. On success returns 0, *config (owned) is the
 * record to store (without created/updated and without the secret) and
 * *secret points into `body` (borrowed; NULL for auth type none). On error
 * returns VAULT_EINVALID and writes every problem, '; '-separated, into err. */
int vault_connector_parse(const json_t *body, json_t **config, const char **secret, char *err,
                          size_t errlen);

/* What ST_EVENT_CONNECTOR_PUT / _DELETE carry (borrowed for the emit). */
typedef struct vault_connector_event {
  const char *tenant, *name;
  bool created; /* put: the connector is new */
  bool moved;   /* put: its URL changed (upstream sessions belong to the old server) */
  bool rekeyed; /* put: same URL, another credential (auth settings or secret value) */
} vault_connector_event;

/* What a put did (overwritten on every run: writer jobs may run twice). */
typedef struct vault_put_out {
  int created;  /* 1: the connector is new */
  bool moved;   /* its URL changed */
  bool rekeyed; /* same URL, another credential (vault_connector_event) */
} vault_put_out;
/* Writes a connector (config from vault_connector_parse) and seals its
 * secret, replacing any previous one. `now` is RFC 3339. Fills *out.
 * Emits ST_EVENT_CONNECTOR_PUT (a hook's failure fails the put): a moved
 * or rekeyed connector's upstream sessions and live exchanges end with
 * it (gateway/mcp/revoke.c). Write txns only. */
int vault_connector_put(st_txn *txn, const char *tenant, const char *name, const json_t *config,
                        const char *secret, const char *now, vault_put_out *out);
/* Records the capabilities the upstream announced at initialize (the
 * aggregated endpoint advertises prompts/resources only when some visible
 * connector has them). ST_ENOTFOUND if the connector is gone. */
int vault_connector_set_caps(st_txn *txn, const char *tenant, const char *name, const json_t *caps);
/* What an upstream session opened under rec belongs to: the server it
 * went to and the credential it went with. It changes with every PUT that
 * moves the connector or rekeys it (vault_connector_event), and with
 * nothing else: an upstream session id read (or opened) with one value
 * may be sent, or stored, only while the record still has that value
 * (gateway/mcp). rec is a record (vault_connector_get), never an admin
 * view (which leaves the epoch out). A string of rec (borrowed; compare
 * with strcmp): its
 * "epoch", or its "url" for a record never moved nor rekeyed (the two
 * never look alike: a url begins with "http"); NULL without either. */
json_t *vault_connector_bind(const json_t *rec);
/* What an upstream session that `user` (NULL: the gateway's own call)
 * opens under connector record rec belongs to: vault_connector_bind, and
 * for a connector where every employee brings their own credential
 * (vault_connector_is_per_user) the user's grant too — its "bind"
 * (vault/grant.h), new with every connect: another key, a reconnect (maybe
 * as another upstream account), a disconnect and a connect again each make
 * it another value, a refresh does not. An upstream session id read (or
 * opened) with one value may be sent, or stored, only while it is still
 * the value (gateway/mcp). A new string (caller json_decref), or NULL when
 * the grant cannot be read (fail closed: a NULL matches nothing). */
json_t *vault_upstream_bind(st_txn *txn, const char *tenant, const char *connector, const char *user,
                            const json_t *rec);
/* Loads a connector record (caller json_decref). ST_ENOTFOUND if absent. */
int vault_connector_get(st_txn *txn, const char *tenant, const char *name, json_t **rec);
/* The record as shown to admins: the secret is never in it. */
json_t *vault_connector_view(const json_t *rec);
/* Unseals the connector's header value. *value is malloc'd, NUL-terminated
 * and must be released with vault_secret_free (wipes it). */
int vault_connector_secret(st_txn *txn, const char *tenant, const char *name, char **value);
void vault_secret_free(char *value);

/* The credential the gateway presents to a connector's upstream for `user`
 * (NULL: the gateway's own call, e.g. a capability probe): the connector's
 * shared header (auth type "header"), or the user's grant (auth type
 * "oauth": "Authorization: Bearer <access token>"; VAULT_ENOGRANT without
 * one or without a user, VAULT_EEXPIRED when it expires within 10 s —
 * the caller refreshes, vault/grant.h).
 * On success the line to send is "<name>: <value>" (both NULL: the
 * connector needs none). rec: the connector's record when the caller has
 * already read it in txn (NULL: read here). Release with vault_cred_free
 * (wipes the value). now_s: unix seconds (expiry). */
typedef struct vault_cred {
  char *name;  /* header name (malloc'd) or NULL */
  char *value; /* header value (malloc'd, wiped on free) or NULL */
} vault_cred;
int vault_upstream_cred(st_txn *txn, const char *tenant, const char *connector, const char *user,
                        const json_t *rec, int64_t now_s, vault_cred *out);
/* 1 when the connector record's auth type is "oauth" (per-user grants). */
int vault_connector_is_oauth(const json_t *rec);
/* 1 for "oauth" and "user_header": every employee brings their own
 * credential (vault/grant.h holds both; a key is a grant without expiry or
 * refresh token). */
int vault_connector_is_per_user(const json_t *rec);
void vault_cred_free(vault_cred *c);
/* UTC time t (unix seconds; 0: now) as RFC 3339 "YYYY-MM-DDTHH:MM:SSZ". */
void vault_rfc3339(int64_t t, char out[32]);
/* Deletes the connector and its sealed secret; emits
 * ST_EVENT_CONNECTOR_DELETE. Write txns only. */
int vault_connector_delete(st_txn *txn, const char *tenant, const char *name);
/* Every connector of a tenant, as admin views, in name order. */
int vault_connector_list(st_txn *txn, const char *tenant, json_t **arr);
/* Purge step for tenant deletion: up to limit keys; returns the count. */
int vault_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers vault_purge_tenant as the "vault" tenant purge (st_purge_add);
 * at startup, with the other store registrations. 0 or ST_E*. */
int vault_register_purge(st_store *st);

#endif
