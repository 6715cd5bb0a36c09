/* vault/vault.h — credentials the gateway holds for upstreams.
 *
 * Today: connectors (an upstream MCP server of a tenant) and their shared
 * credential (a header such as "Authorization: Bearer …" that the gateway
 * injects; employees never see it). The credential is sealed at rest with
 * AES-256-GCM in ST_DB_SECRETS, bound to (tenant, "connector.header",
 * connector name); the connector record only says that one exists.
 *
 * A connector URL's query is secret material too (hosted MCP servers take
 * their API key there): the record keeps the URL as shown, every query
 * value replaced by "…", and the real URL is sealed beside the credential
 * (VAULT_URL_KIND); vault/connector_url.c says how.
 *
 * Store layout: ST_DB_CONNECTORS  tenant \0 name → connector JSON
 *   {name, url (as shown), url_sealed?, description, auth:{type, name},
 *    ca_file, timeouts:{…}, created, updated, warnings:[…], epoch?}
 * "epoch" is drawn at random (by the caller of vault_connector_put) by the
 * write that makes the connector and by every one that moves or rekeys it
 * (absent, or a decimal count, on a record stored before, until its next
 * move or rekey): with the url it says which upstream sessions and key
 * forms are still the connector's (vault_connector_bind) — a connector
 * deleted and made again under the same name is another one. The admin
 * view leaves it out. A move is a change of the real URL, its sealed
 * query included: two real URLs may show alike, their epochs do not.
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
#define VAULT_EMASKED (-31003)  /* a PUT's URL sends a query value back masked ("…") with no stored value to
                                 * keep: none stored for that name, the URL's scheme, host or path changed, or
                                 * the URL with the kept values is over VAULT_URL_MAX */
/* Names a vault code, or a store code (st_strerror); static string. */
const char *vault_strerror(int err);

#define VAULT_NAME_MAX 32
#define VAULT_SECRET_KIND "connector.header"
#define VAULT_URL_KIND "connector.url" /* the real URL, when its query holds values */

/* [a-z0-9-]{1,32} (no '_': aggregated tool names split at "__"). */
int vault_connector_name_valid(const char *name);

/* Validates an admin PUT body. On success returns 0, *config (owned) is the
 * record to store (without created/updated and without the secret) and
 * *secret points into `body` (borrowed; NULL for auth type none). On error
 * returns VAULT_EINVALID and writes every problem, '; '-separated, into err.
 * "ca_file" is only checked to be an absolute path: which files an admin
 * may name is the caller's (gateway/api/admin_connectors.c: the operator
 * any, a tenant admin its folder of tenant_ca_dir or the stored value). */
int vault_connector_parse(const json_t *body, json_t **config, const char **secret, char *err,
                          size_t errlen);

/* What ST_EVENT_CONNECTOR_PUT / _DELETE carry (borrowed for the emit). */
typedef struct vault_connector_event {
  const char *tenant, *name;
  bool created; /* put: the connector is new */
  bool moved;   /* put: its real URL changed, a sealed query value too (upstream sessions belong to the old
                 * server, or were opened with the old key) */
  bool rekeyed; /* put: same URL, another credential (auth settings or secret value) */
} vault_connector_event;

/* What ST_EVENT_CREDENTIAL_ENDING carries (borrowed for the emit). It is
 * emitted inside a write that changes what a connector's upstream sessions
 * were opened with, BEFORE anything of it changes — so the transaction
 * still reads the old record, real URL, shared credential and grants:
 *   - user NULL: a PUT that moves or rekeys the connector, or its delete —
 *     every upstream session of the connector (each opened with the shared
 *     credential, or with its person's own);
 *   - user set: that person's own credential replaced or removed (a connect,
 *     another key, a disconnect: vault_grant_event's superseded) — theirs.
 * gateway/mcp ends those sessions at the upstream once the write commits:
 * an HTTP DELETE carrying the session id and the credential that opened
 * it, to the URL it was given for. */
typedef struct vault_ending_event {
  const char *tenant, *connector;
  const char *user;
  /* the connector moves to another origin (scheme, host or port), or its
   * old URL cannot be read: the old server gets nothing more, not even a
   * DELETE (vault_url_same_origin) */
  bool elsewhere;
} vault_ending_event;

/* What a put did (overwritten on every run: writer jobs may run twice). */
typedef struct vault_put_out {
  int created;  /* 1: the connector is new */
  bool moved;   /* its real URL changed (vault_connector_event) */
  bool rekeyed; /* same URL, another credential (vault_connector_event) */
} vault_put_out;
/* Writes a connector (config from vault_connector_parse) and seals its
 * secret, replacing any previous one. The config's URL may send query
 * values back masked: the stored ones are kept (vault_url_keep_masked;
 * VAULT_EMASKED when it cannot). A URL whose query holds values is sealed
 * and stored as shown. `now` is RFC 3339. epoch: a fresh random id from
 * the caller (st_token_id_new: writer jobs are pure), the record's epoch
 * when this write makes, moves or rekeys the connector (else the stored
 * one stays). Fills *out: moved when the real URL changed (a new query
 * value too). Emits ST_EVENT_CONNECTOR_PUT (a hook's failure fails the
 * put): a moved or rekeyed connector's upstream sessions and live
 * exchanges end with it (gateway/mcp/revoke.c); before anything changes,
 * such a put emits ST_EVENT_CREDENTIAL_ENDING (vault_ending_event). Write
 * txns only.
 * ST_EINVAL without an epoch. */
int vault_connector_put(st_txn *txn, const char *tenant, const char *name, const json_t *config,
                        const char *secret, const char *now, const char *epoch, vault_put_out *out);
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
 * with strcmp): its "epoch", or its "url" (as shown) for a record stored
 * before epochs were drawn and never moved nor rekeyed since (the two never
 * look alike: a url begins with "http", an epoch is hex or decimal digits);
 * NULL without either. No two connectors of a tenant, nor a connector
 * deleted and made again under the same name, share a value. A move of
 * the real URL draws a new epoch, so a new sealed query value changes the
 * binding though the url shows alike. */
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
/* The record as shown to admins: the secret is never in it, nor the
 * URL's query values (vault_url_shown). */
json_t *vault_connector_view(const json_t *rec);
/* Unseals the connector's header value. *value is malloc'd, NUL-terminated
 * and must be released with vault_secret_free (wipes it). */
int vault_connector_secret(st_txn *txn, const char *tenant, const char *name, char **value);
void vault_secret_free(char *value);

/* The credential the gateway presents to a connector's upstream for `user`
 * (NULL: the gateway's own call, e.g. a capability probe): the connector's
 * shared header (auth type "header"), or the user's grant (auth type
 * "oauth": "Authorization: Bearer <access token>"; VAULT_ENOGRANT without
 * one or without a user, VAULT_EEXPIRED when it expires within 5 s —
 * the caller refreshes, vault/grant.h; the aggregated gate refreshes at
 * 10 s, so what it passed is not refused here a moment later).
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
/* What every upstream call reads of a connector record, taken apart once
 * (vault_conn_facts_of): the gateway keeps it beside the record it
 * remembers per store snapshot, so a call does not look up a dozen members
 * by name. Every pointer is borrowed from the record (valid while a
 * reference to it is held); nothing in it is secret. */
enum { VAULT_AUTH_NONE, VAULT_AUTH_HEADER, VAULT_AUTH_OAUTH, VAULT_AUTH_USER_HEADER, VAULT_AUTH_OTHER };
typedef struct vault_conn_facts {
  const json_t *rec;
  int auth;                 /* VAULT_AUTH_*: the record's auth.type */
  bool per_user;            /* vault_connector_is_per_user */
  const char *auth_name;    /* auth.name (the header a credential goes in), or NULL */
  const char *auth_prefix;  /* auth.prefix, or NULL */
  json_t *bind;             /* vault_connector_bind(rec) */
  const char *url;          /* the record's "url" (as shown when url_sealed) */
  bool url_sealed;
  long connect_ms, first_byte_ms, idle_ms, event_ms; /* timeouts.*: 0 when not set */
  const char *ca_file;      /* or NULL */
} vault_conn_facts;
void vault_conn_facts_of(const json_t *rec, vault_conn_facts *out);
/* vault_upstream_bind, vault_upstream_cred (with the record known) and
 * vault_connector_url from the facts of the record read in txn. */
json_t *vault_upstream_bind_facts(st_txn *txn, const char *tenant, const char *connector, const char *user,
                                  const vault_conn_facts *f);
int vault_upstream_cred_facts(st_txn *txn, const char *tenant, const char *connector, const char *user,
                              const vault_conn_facts *f, int64_t now_s, vault_cred *out);
int vault_connector_url_facts(st_txn *txn, const char *tenant, const char *name, const vault_conn_facts *f,
                              const char **url, char **sealed);
/* UTC time t (unix seconds; 0: now) as RFC 3339 "YYYY-MM-DDTHH:MM:SSZ". */
void vault_rfc3339(int64_t t, char out[32]);
/* ---- the URL's query (vault/connector_url.c) ---- */
#define VAULT_URL_MAX 2048 /* bytes of a connector's real URL */
#define VAULT_URL_SHOWN_MAX (3 * VAULT_URL_MAX) /* as shown: a one-byte value is "…", three bytes */
/* The URL as it may be shown (records, GET, audit, logs, messages): every
 * query value replaced by "…", names kept ("?api_key=…&region=…"); a
 * query component without '=' is all value ("?…"). malloc'd (free()), NULL
 * without memory. */
char *vault_url_shown(const char *url);
/* 1 when url shows otherwise than it is (its query holds a value); 1 also
 * without memory (fail closed). */
int vault_url_has_secret(const char *url);
/* The real URL an admin PUT means: url itself, or url with every query
 * value sent back masked ("…" or %E2%80%A6) replaced by the stored URL's
 * value of the same name (the n-th of that name for the n-th). Only when
 * the scheme, host and path are exactly the stored URL's: a kept key goes
 * to no other server. *out is malloc'd (free with vault_secret_free);
 * VAULT_EMASKED (stored NULL, another server, nothing stored to keep, or
 * the URL with what is kept over VAULT_URL_MAX), ST_ENOMEM. */
int vault_url_keep_masked(const char *url, const char *stored, char **out);
/* 1 when URLs a and b have the same scheme and authority (host and port,
 * as written, letter case aside): the same server. A missing port and the
 * scheme's default one differ here, so two spellings of one server count
 * as two (fail closed). 0 for NULL. */
int vault_url_same_origin(const char *a, const char *b);
/* The connector's real URL, where its upstream requests go. rec is the
 * record read in txn. A record whose URL is not sealed (no query values:
 * most connectors) gives its own "url": *url borrowed from rec, *sealed
 * NULL, nothing unsealed nor copied. One that says "url_sealed" gives the
 * unsealed URL in *sealed (malloc'd; free with vault_secret_free, which
 * wipes it; vault_secret_free(NULL) is a no-op) and *url = *sealed.
 * ST_ENOTFOUND / ST_ECRYPTO when the sealed URL is missing or does not
 * unseal, ST_ECORRUPT without a "url"; then both are NULL. */
int vault_connector_url(st_txn *txn, const char *tenant, const char *name, const json_t *rec, const char **url,
                        char **sealed);
/* Migration 11's data step (store.h "upgrades", registered by the module
 * table): every stored connector whose URL has a query value gets it
 * sealed and shown masked (and a discovered resource or metadata URL with
 * its query masked). Needs the master key (ST_ENOKEY without one, when
 * there is anything to seal). */
int vault_upgrade_url_queries(st_txn *txn);
/* Registers the st_check of connector URLs: a record saying "url_sealed"
 * whose sealed URL does not unseal, or one showing a query value in clear.
 * At startup, with the other store registrations. 0 or ST_E*. */
int vault_register_url_check(st_store *st);

/* Deletes the connector and its sealed secret; emits
 * ST_EVENT_CREDENTIAL_ENDING first (vault_ending_event: nothing is
 * deleted yet), then ST_EVENT_CONNECTOR_DELETE. Write txns only. */
int vault_connector_delete(st_txn *txn, const char *tenant, const char *name);
/* The most connectors any list reads (the ceiling of the operator's
 * connectors_per_tenant_max, gateway/core/config.c): no tenant can hold
 * more, so a list parses at most this many records. */
#define VAULT_CONNECTORS_MAX 10000
/* The first `max` connectors of a tenant (at most VAULT_CONNECTORS_MAX;
 * negative: that many), as admin views, in name order: *arr a new array
 * (caller json_decref; empty on error); *more (may be NULL) true when
 * more are stored (a tenant over a cap the operator lowered keeps them).
 * 0 or ST_E*. */
int vault_connector_list_max(st_txn *txn, const char *tenant, int64_t max, json_t **arr, bool *more);
/* Every connector of a tenant (up to VAULT_CONNECTORS_MAX), as admin
 * views, in name order. */
int vault_connector_list(st_txn *txn, const char *tenant, json_t **arr);
/* How many connectors tenant holds, counting no further than stop_at
 * (keys only, nothing parsed: a cap check does bounded work). 0 or ST_E*. */
int vault_connector_count(st_txn *txn, const char *tenant, int64_t stop_at, int64_t *n);
/* Purge step for tenant deletion: up to limit keys; returns the count. */
int vault_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers vault_purge_tenant as the "vault" tenant purge (st_purge_add);
 * at startup, with the other store registrations. 0 or ST_E*. */
int vault_register_purge(st_store *st);

#endif
