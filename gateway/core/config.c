/* gateway/core/config.c — the configuration table and its three sources.
 * Adding a key: one field in gw_config, one row in keys[] (and the README
 * table is regenerated from it: `mcpgate config-doc`). CIDR lists are
 * checked with gateway/base/cidr.h, the parser their users run; CA files
 * (CFG_FILE) with gateway/out's loader check, at start (tenant_ca_dir: a
 * directory; gw_config_tenant_ca_path says what a tenant may name in it).
 * Main thread only (loaded before anything else starts), but for
 * gw_config_tenant_ca_path: any thread, on the loaded config. */
#include "gateway/core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gateway/base/cidr.h"
#include "gateway/base/log.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/url_query.h"

/* CFG_FILE: a string naming a file its user reads later (a CA file, or
 * the directory of tenants' CA files): parsed and printed as CFG_STR, its
 * `check` run at start. */
typedef enum { CFG_STR, CFG_INT, CFG_BOOL, CFG_SIZE, CFG_FILE } cfg_type;

typedef struct cfg_key {
  const char *name;
  cfg_type type;
  const char *def; /* NULL: derived or empty */
  int64_t min, max;
  size_t off;
  const char *help;
  /* CFG_STR: each source's value as it is set. CFG_FILE: the file a
   * non-empty value names, once at start (gw_config_check_files), on the
   * value the sources merged into: a flag may override a config file's
   * path, and --print-config shows a configuration whose files live
   * elsewhere. */
  int (*check)(const char *v, char *err, size_t errlen);
} cfg_key;

#define OFF(f) offsetof(gw_config, f)
#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

static int check_hostport(const char *v, char *err, size_t errlen);
static int check_hostport_opt(const char *v, char *err, size_t errlen);
static int check_level(const char *v, char *err, size_t errlen);
static int check_url(const char *v, char *err, size_t errlen);
static int check_cidrs(const char *v, char *err, size_t errlen);
static int check_egress(const char *v, char *err, size_t errlen);
static int check_audit_failure(const char *v, char *err, size_t errlen);
static int check_audit_args(const char *v, char *err, size_t errlen);
static int check_audit_redact(const char *v, char *err, size_t errlen);
static int check_sink_url(const char *v, char *err, size_t errlen);
static int check_sink_format(const char *v, char *err, size_t errlen);
static int check_dir(const char *v, char *err, size_t errlen);

static const cfg_key keys[] = {
    {"listen", CFG_STR, "127.0.0.1:8080", 0, 0, OFF(listen),
     "HTTP listen address HOST:PORT ([v6]:PORT for IPv6; port 0 picks a free port)", check_hostport},
    {"public_url", CFG_STR, NULL, 0, 0, OFF(public_url),
     "external base URL put in every URL the gateway hands out: scheme://host[:port], no path (the OAuth discovery "
     "documents must sit at the host's root) (default http://<listen>; from a wildcard listen such as 0.0.0.0:8080 "
     "that points nowhere, and the gateway warns at start: set it)",
     check_url},
    {"data", CFG_STR, "./data", 0, 0, OFF(data), "data directory (store, master key, admin token)", NULL},
    {"log_level", CFG_STR, "info", 0, 0, OFF(log_level), "debug, info, warn or error", check_level},
    {"access_log", CFG_BOOL, "true", 0, 1, OFF(access_log), "one JSON log line per request", NULL},
    {"max_connections", CFG_INT, "0", 0, 1000000, OFF(max_connections),
     "open client connections; excess get 503 and are closed (0: from the descriptor limit, raised to its "
     "hard maximum at start: three quarters of it, the rest kept for upstream connections and the store; "
     "the start log says what was chosen)",
     NULL},
    {"connections_per_address", CFG_INT, "0", 0, 1000000, OFF(connections_per_address),
     "open client connections one client address (IPv6: its /64) may hold, on every loop together; past it a new "
     "one gets 503 and is closed, so one address cannot take every connection. Connections from trusted_proxies are "
     "not counted: behind a proxy, list it there (0: a quarter of max_connections, at least 16)",
     NULL},
    {"upstream_connections", CFG_INT, "0", 0, 1000000, OFF(upstream_connections),
     "upstream calls and streams in flight at once (each may hold a connection), on every loop together; one tenant "
     "holds at most a quarter of them while fewer than half are taken, else a sixteenth, so that one tenant (or a few) "
     "cannot take the descriptors everyone needs. Past it a call is answered at once with a JSON-RPC error saying so "
     "and Retry-After: 1, nothing sent upstream. The gateway's own work for a tenant (revocations, webhooks, audit "
     "sinks, ending upstream sessions), its employees' GET streams, sign-in and client metadata fetches each count "
     "apart from its calls, and the gateway's own work may go a quarter past it (0: half of the descriptors max_connections leaves, less a reserve for "
     "the store and listeners; the start log says what was chosen)",
     NULL},
    {"workers", CFG_INT, "0", 0, 256, OFF(workers),
     "event loops serving requests, each on its own thread and core, sharing the listening ports (SO_REUSEPORT); "
     "0: one per CPU the process may use. Revocations and list_changed reach every loop before the SCIM or admin "
     "reply that caused them",
     NULL},
    {"revocation_fanout_timeout_ms", CFG_INT, "1000", 1, 60000, OFF(revocation_fanout_timeout_ms),
     "how long a SCIM or admin reply waits for every other loop to apply the revocations its write caused; past "
     "it the reply goes out anyway (the store already refuses the revoked user, token or connector), logged and "
     "counted in mcpgate_revocation_fanout_timeouts_total",
     NULL},
    {"max_header_bytes", CFG_SIZE, "16384", 256, 1 * MIB, OFF(max_header_bytes),
     "request line + headers size cap (431 beyond)", NULL},
    {"max_uri_bytes", CFG_SIZE, "8192", 64, 1 * MIB, OFF(max_uri_bytes),
     "request target size cap (414 beyond)", NULL},
    {"max_body_bytes", CFG_SIZE, "1048576", 0, 1 * GIB, OFF(max_body_bytes),
     "default request body cap (413 beyond); routes may set their own", NULL},
    {"header_timeout_ms", CFG_INT, "10000", 10, 3600000, OFF(header_timeout_ms),
     "time from a request's first byte to the end of its headers (408 beyond)", NULL},
    {"body_timeout_ms", CFG_INT, "60000", 10, 3600000, OFF(body_timeout_ms),
     "time from the end of headers to the end of the body (408 beyond)", NULL},
    {"idle_timeout_ms", CFG_INT, "60000", 10, 3600000, OFF(idle_timeout_ms),
     "idle keep-alive connections are closed after this; one whose client is still taking a response queued "
     "for it (32 KiB of it, or all, in this long) is not idle",
     NULL},
    {"send_timeout_ms", CFG_INT, "60000", 1000, 3600000, OFF(send_timeout_ms),
     "a response (an audit export, an SSE stream) whose client takes less than 32 KiB of the bytes queued for it "
     "(all of them, when fewer wait) in this long is cut, and what it holds (a heavy-read slot, a stream) goes "
     "back: a client that stops reading, or trickles, cannot keep it",
     NULL},
    {"shutdown_timeout_ms", CFG_INT, "10000", 0, 3600000, OFF(shutdown_timeout_ms),
     "on SIGTERM/SIGINT, how long in-flight requests may drain before connections are cut", NULL},
    {"tls_listen", CFG_STR, "", 0, 0, OFF(tls_listen),
     "HTTPS listen address (needs tls_cert_file and tls_key_file; reloaded on SIGHUP)", check_hostport_opt},
    {"tls_cert_file", CFG_STR, "", 0, 0, OFF(tls_cert_file), "PEM certificate chain for tls_listen", NULL},
    {"tls_key_file", CFG_STR, "", 0, 0, OFF(tls_key_file), "PEM private key for tls_listen", NULL},
    {"admin_listen", CFG_STR, "", 0, 0, OFF(admin_listen),
     "separate listener for /admin and /metrics (then not served on listen)", check_hostport_opt},
    {"trusted_proxies", CFG_STR, "", 0, 0, OFF(trusted_proxies),
     "comma-separated CIDRs whose X-Forwarded-For/-Proto are believed (every X-Forwarded-For header, one list read from the right: the client is the first address not in these)", check_cidrs},
    {"store_map_size", CFG_SIZE, "8G", 1 * MIB, 1024 * GIB, OFF(store_map_size),
     "LMDB map size (address space; the file grows lazily)", NULL},
    {"store_reserve", CFG_SIZE, "16M", 0, 64 * GIB, OFF(store_reserve),
     "room at the end of the store's map kept for writes that take access away (SCIM deactivations and "
     "deletes, revocations, sign-outs, tenant deletes): other writes answer 507 before reaching it; at most a "
     "quarter of store_map_size (a larger value is lowered to that, and the start log says what is used: a "
     "warning when store_reserve was set); 0: none",
     NULL},
    {"master_key_file", CFG_STR, NULL, 0, 0, OFF(master_key_file),
     "sealing key file (default <data>/master.key; keep it outside data in production)", NULL},
    {"admin_token_file", CFG_STR, NULL, 0, 0, OFF(admin_token_file),
     "operator token file (default <data>/admin.token; MCPGATE_ADMIN_TOKEN overrides)", NULL},
    {"scim_max_body", CFG_SIZE, "32M", 1024, 1 * GIB, OFF(scim_max_body),
     "request body cap on SCIM routes (a Group PUT with every member can be large)", NULL},
    {"scim_max_count", CFG_INT, "1000", 1, 100000, OFF(scim_max_count),
     "largest page a SCIM list returns (count is capped to it)", NULL},
    {"scim_users_per_tenant_max", CFG_INT, "1000000", 1, 1000000000, OFF(scim_users_per_tenant_max),
     "SCIM users one tenant may hold (active or not): the store is shared by every tenant, so one tenant's SCIM "
     "token must not fill it; past it POST /Users is 507 with a detail naming this key (nothing written; updates, "
     "deactivations and deletes still work; a tenant over it after the value was lowered keeps its users)",
     NULL},
    {"scim_groups_per_tenant_max", CFG_INT, "100000", 1, 100000000, OFF(scim_groups_per_tenant_max),
     "SCIM groups one tenant may hold; past it POST /Groups is 507 with a detail naming this key (as "
     "scim_users_per_tenant_max)",
     NULL},
    {"mcp_max_body", CFG_SIZE, "4M", 1024, 1 * GIB, OFF(mcp_max_body),
     "request body cap on MCP endpoints (one JSON-RPC message or batch)", NULL},
    {"mcp_buffered_max", CFG_SIZE, "1G", 0, 1024 * GIB, OFF(mcp_buffered_max),
     "bytes of upstream replies the MCP endpoints hold at once while they arrive (a JSON reply is checked whole, an SSE "
     "event too) and queued for clients that have not read them yet, counting each one's bytes past its first 64 KiB, "
     "on every loop together; one tenant holds at most a quarter of it, a sixteenth once it is half used. A reply that "
     "would pass it is not kept: the call is answered with a JSON-RPC error saying so and Retry-After: 1, and a client "
     "whose unread replies would pass it is disconnected (0: no limit but each reply's own cap)",
     NULL},
    {"stream_buffer_max", CFG_SIZE, "1M", 64 * 1024, 1 * GIB, OFF(stream_buffer_max),
     "bytes one client SSE stream may have queued (a client that does not read); upstreams feeding it pause at half "
     "of it, and past it the stream is ended (the client resumes with Last-Event-ID)",
     NULL},
    {"upstream_event_timeout_ms", CFG_INT, "60000", 100, 86400000, OFF(upstream_event_timeout_ms),
     "once the first byte of an upstream's SSE event (or of its JSON reply) arrived, the rest must arrive within "
     "this long, or the call fails (the client gets a JSON-RPC error naming the connector) and a stream ends: an "
     "upstream that trickles bytes never trips a connector's idle timeout. A connector's timeouts.event_ms "
     "overrides it",
     NULL},
    {"agg_uri_map_max", CFG_INT, "10000", 16, 1000000, OFF(agg_uri_map_max),
     "resource URIs (and template prefixes) the aggregated endpoint remembers per client session to route reads; "
     "past it, further URIs are not routed by name (logged)",
     NULL},
    {"agg_uri_map_bytes", CFG_SIZE, "1M", 64 * 1024, 1 * GIB, OFF(agg_uri_map_bytes),
     "bytes of resource URIs (and template prefixes) one such session's map holds, however few they are (a URI "
     "may be 2,000 bytes): past it, as past agg_uri_map_max. A user's maps hold at most sessions_per_user_max "
     "(or their tenant's lower setting) times this",
     NULL},
    {"allowed_origins", CFG_STR, "", 0, 0, OFF(allowed_origins),
     "comma-separated Origin values allowed on MCP endpoints besides public_url's own (\"*\" = any); requests with "
     "another Origin get 403. When public_url is loopback, loopback origins (any port) are allowed too and a "
     "non-loopback Host is refused (DNS-rebinding protection)",
     NULL},
    {"egress_allow", CFG_STR, "", 0, 0, OFF(egress_allow),
     "comma-separated CIDRs and host names (*.name for subdomains) that URLs set by tenant admins (connectors) may "
     "reach besides public addresses; loopback, private, link-local and metadata addresses are refused otherwise. "
     "Operator-only: tenants cannot change it",
     check_egress},
    {"egress_allow_untrusted", CFG_STR, "", 0, 0, OFF(egress_allow_untrusted),
     "the same for URLs that outside callers supply (e.g. OAuth client metadata documents): public addresses only "
     "unless listed here (meant for tests; egress_allow does not apply to them)",
     check_egress},
    {"tenant_ca_dir", CFG_FILE, "", 0, 0, OFF(tenant_ca_dir),
     "where tenant admins may name CA files: a connector's ca_file set with a tenant admin token must be a file in "
     "{tenant_ca_dir}/{tenant id}/ (resolved inside that folder when set and at every use: a symbolic link out of "
     "it is refused); keep it writable by the operator only. Empty: tenant admins may not set ca_file (they may "
     "send the stored value back unchanged); the operator token names any file. Checked at start: an absolute path "
     "to a directory",
     check_dir},
    {"session_idle_timeout_ms", CFG_INT, "86400000", 100, 365LL * 86400000, OFF(session_idle_timeout_ms),
     "an MCP session unused for longer than this is gone (404 \"Session not found\", as an unknown one) and purged "
     "from the store; use is recorded at most once a minute, so it may end up to a minute early (a quarter of the "
     "timeout when that is shorter)",
     NULL},
    {"session_max_age_ms", CFG_INT, "604800000", 100, 3650LL * 86400000, OFF(session_max_age_ms),
     "an MCP session older than this is gone however much it is used (purged like an idle one)", NULL},
    {"auth_failures_per_address", CFG_INT, "60", 0, 1000000, OFF(auth_failures_per_address),
     "failed authentications (a SCIM, admin, employee or OAuth credential that does not verify) one client address "
     "may make a minute; past it they are answered 429 with Retry-After instead of 401 (a valid credential is always "
     "served, so clients sharing a proxy's address are not locked out; 0: no limit)",
     NULL},
    {"mcp_rate_per_user", CFG_INT, "0", 0, 100000000, OFF(mcp_rate_per_user),
     "MCP requests (both endpoints) one user may make a minute (bursts up to the same number); past it 429 with "
     "Retry-After and a JSON-RPC error (0: no limit)",
     NULL},
    {"mcp_rate_per_tenant", CFG_INT, "0", 0, 1000000000, OFF(mcp_rate_per_tenant),
     "the same for all users of one tenant together (0: no limit)", NULL},
    {"mcp_json_mib_per_user", CFG_INT, "256", 0, 1000000, OFF(mcp_json_mib_per_user),
     "MiB of JSON tree one user's MCP request bodies may make the gateway build a minute (bursts up to the same), "
     "estimated from each body before it is parsed: a body costs a MiB for each whole MiB of its tree (most "
     "cost nothing; a 4 MiB body of small values, ~60); past it 429 with Retry-After, so no employee keeps a loop "
     "parsing. The upstream replies and events the gateway parses for the user (a list it builds, a GET stream's "
     "event) pay the same way, what each takes short of a whole MiB carried to the exchange's next: past it they are left unparsed (the connector's items left out of a list, or an "
     "error naming the key) (0: no limit)",
     NULL},
    {"mcp_json_mib_per_tenant", CFG_INT, "2048", 0, 100000000, OFF(mcp_json_mib_per_tenant),
     "the same for all users of one tenant together, their upstream replies and events included (0: no limit)",
     NULL},
    {"mcp_concurrent_per_user", CFG_INT, "256", 0, 1000000, OFF(mcp_concurrent_per_user),
     "MCP requests one user may have open at once (both endpoints, every loop: GET streams, calls in flight, held "
     "calls; an aggregated GET stream also counts each upstream GET stream feeding it, a batch each of its "
     "messages, a notification each upstream it is forwarded to); one more is answered 429 with Retry-After (0: "
     "no limit)",
     NULL},
    {"approval_progress_interval_ms", CFG_INT, "15000", 100, 600000, OFF(approval_progress_interval_ms),
     "while a tools/call waits for approval, how often its client gets notifications/progress (when the call "
     "carried a progressToken; an SSE comment otherwise): Claude Code gives up on a remote call after 300 s without "
     "one",
     NULL},
    {"sessions_per_user_max", CFG_INT, "64", 1, 100000, OFF(sessions_per_user_max),
     "MCP sessions one user may hold (both endpoints together); creating one more ends that user's oldest (by "
     "creation) in the same transaction",
     NULL},
    {"auth_rate_per_address", CFG_INT, "60", 0, 1000000, OFF(auth_rate_per_address),
     "sign-in and OAuth requests (/t/{tenant}/login and its callback, /t/{tenant}/oauth/register, authorize, token, revoke) "
     "one client address (an IPv6 client: its /64) may make a minute, with bursts of as many; past it 429 with "
     "Retry-After (0: no limit)",
     NULL},
    {"auth_rate_per_tenant", CFG_INT, "1200", 0, 10000000, OFF(auth_rate_per_tenant),
     "the same for all clients of one tenant together, registrations apart (dcr_rate_per_tenant); a token request "
     "counts only when its grant does not work (a code exchange or refresh that works is never refused by it), a "
     "revocation only when it revokes nothing, an "
     "authorize request or an employee's connect page only from a browser not signed in to the tenant, so junk from "
     "many addresses cannot hold off "
     "the MCP clients and the signed-in employees (0: no limit)",
     NULL},
    {"dcr_rate_per_tenant", CFG_INT, "300", 0, 10000000, OFF(dcr_rate_per_tenant),
     "dynamic client registrations (POST /t/{tenant}/oauth/register) of all clients of one tenant together a "
     "minute, with bursts of as many; past it 429 with Retry-After (0: no limit). Apart from auth_rate_per_tenant, "
     "so a flood of registrations (anyone may send them) cannot hold off the employees' sign-ins; per address they "
     "count with auth_rate_per_address",
     NULL},
    {"logout_rate_per_address", CFG_INT, "1200", 0, 10000000, OFF(logout_rate_per_address),
     "Universal Logout requests (POST /t/{tenant}/oauth/global-logout) one client address may make a minute, with "
     "bursts of as many, before any check; past it 429 with Retry-After (0: no limit). Apart from the sign-in's "
     "limits, so a flood of sign-ins cannot hold off a logout",
     NULL},
    {"logout_rate_per_tenant", CFG_INT, "1200", 0, 10000000, OFF(logout_rate_per_tenant),
     "Universal Logout requests of one tenant a minute whose Okta-signed token verified (each costs a store "
     "write); past it 429 with Retry-After (0: no limit). Junk tokens never count against it",
     NULL},
    {"revocation_grace_ms", CFG_INT, "300000", 0, 7LL * 86400000, OFF(revocation_grace_ms),
     "an employee's upstream grant (oauth connector) whose connector their policy no longer shows is revoked at the "
     "upstream only after this long without it, so a transient bad Group Push or a policy typo does not mass-revoke; "
     "the connector is refused to them at once meanwhile. Deactivation, disconnect and connector deletion revoke at "
     "once",
     NULL},
    {"revocation_give_up_ms", CFG_INT, "86400000", 60000, 30LL * 86400000, OFF(revocation_give_up_ms),
     "how long the gateway keeps retrying an upstream revocation (RFC 7009) that fails with a network error or a 5xx "
     "before reporting it failed in GET /admin/v1/tenants/{id}/revocations",
     NULL},
    {"audit", CFG_BOOL, "true", 0, 1, OFF(audit),
     "the audit log (<data>/audit, its own LMDB environment): every tools/call decision, hash-chained per tenant "
     "(GET /admin/v1/tenants/{id}/audit, mcpgate audit verify|export)",
     NULL},
    {"audit_on_failure", CFG_STR, "deny", 0, 0, OFF(audit_on_failure),
     "when the audit log cannot record (its queue full, its environment full or failing): deny (tools/call is "
     "refused with a clear error until it recovers; SCIM deactivations are never refused) or serve (calls go on "
     "unrecorded; metrics and logs alert)",
     check_audit_failure},
    {"audit_args", CFG_STR, "full", 0, 0, OFF(audit_args),
     "a tools/call's arguments in its record: full (keys matching audit_redact masked), digest (SHA-256 and size "
     "only) or none",
     check_audit_args},
    {"audit_redact", CFG_STR, "", 0, 0, OFF(audit_redact),
     "comma-separated argument key patterns masked in records (case-insensitive substrings, '_' and '-' ignored on "
     "both sides: api_key also masks apiKey and X-Api-Key), added to password, passwd, secret, token, "
     "authorization, api_key, private_key, credential, cookie; each tenant may add its own (tenant setting audit_redact)",
     check_audit_redact},
    {"audit_args_max", CFG_SIZE, "8192", 256, 262144, OFF(audit_args_max),
     "bytes of a call's (redacted) arguments kept in its record; larger ones (or more than the record's 256 KiB "
     "cap leaves) are kept as a digest",
     NULL},
    {"audit_map_size", CFG_SIZE, "4294967296", 65536, 1LL << 40, OFF(audit_map_size),
     "the audit environment's LMDB map size in bytes (its file grows as used): when full, audit_on_failure applies",
     NULL},
    {"audit_batch_ms", CFG_INT, "50", 1, 1000, OFF(audit_batch_ms),
     "the audit log's group-commit interval: records of a crash's last interval may be lost", NULL},
    {"audit_queue_max", CFG_INT, "100000", 1000, 10000000, OFF(audit_queue_max),
     "audit records queued and not yet committed before audit counts as unable to record (audit_on_failure): a "
     "burst or a slow disk the writer has not caught up with waits here; each holds at least 2 KiB (100,000: "
     "~200 MiB; the queue never holds more than 256 MiB)",
     NULL},
    {"audit_retention_days", CFG_INT, "0", 0, 36500, OFF(audit_retention_days),
     "records older than this are pruned (the chain stays verifiable); 0 keeps them", NULL},
    {"audit_sink_url", CFG_STR, "", 0, 0, OFF(audit_sink_url),
     "a SIEM's http(s) URL every tenant's audit records are POSTed to, in order and at least once (each record's "
     "id is stable: drop duplicates by it), with retries and a durable cursor; fetched at the egress_allow level "
     "(empty: off)",
     check_sink_url},
    {"audit_sink_format", CFG_STR, "ndjson", 0, 0, OFF(audit_sink_format),
     "ndjson (application/x-ndjson, one record per line, Authorization: Bearer <token>) or splunk_hec (Splunk HTTP "
     "Event Collector envelopes, Authorization: Splunk <token>; audit_sink_url is then .../services/collector/event)",
     check_sink_format},
    {"audit_sink_token_file", CFG_STR, "", 0, 0, OFF(audit_sink_token_file),
     "file holding the SIEM sink's token (one line; never logged); empty: no Authorization header", NULL},
    {"audit_sink_batch", CFG_INT, "500", 1, 10000, OFF(audit_sink_batch),
     "audit records in one POST to the SIEM sink at most (and at most 1 MiB of them)", NULL},
    {"audit_sink_ca_file", CFG_FILE, "", 0, 0, OFF(audit_sink_ca_file),
     "PEM trust anchors for an https audit_sink_url instead of the system CA bundle file (checked at start: a "
     "file that is missing, unreadable or holds no certificate refuses the start)",
     gw_out_ca_file_check},
    {"discovery_refresh_s", CFG_INT, "86400", 0, 30LL * 86400, OFF(discovery_refresh_s),
     "a connector with auth {\"type\":\"oauth\",\"discover\":true} has its upstream's authorization metadata read "
     "again this long after the last reading, and the connector updated when it changed (0: only when the token "
     "endpoint rejects the gateway's registration, before a registration's secret expires, and on POST "
     "/admin/v1/tenants/{id}/connectors/{name}/rediscover)",
     NULL},
    {"oauth_code_ttl_ms", CFG_INT, "60000", 1000, 600000, OFF(oauth_code_ttl_ms),
     "how long an authorization code of the gateway's OAuth server may wait for its token request", NULL},
    {"access_token_ttl_ms", CFG_INT, "3600000", 60000, 86400000, OFF(access_token_ttl_ms),
     "lifetime of the access tokens the gateway's OAuth server issues to MCP clients (never past the sign-in's "
     "signin_max_age_ms)",
     NULL},
    {"refresh_token_ttl_ms", CFG_INT, "2592000000", 3600000, 365LL * 86400000, OFF(refresh_token_ttl_ms),
     "lifetime of a refresh token (each refresh rotates it; never past the sign-in's signin_max_age_ms)", NULL},
    {"refresh_reuse_grace_ms", CFG_INT, "30000", 0, 300000, OFF(refresh_reuse_grace_ms),
     "a just-rotated refresh token presented again within this window gets the same new pair (several processes of "
     "one client refreshing at once); any later reuse revokes the whole grant",
     NULL},
    {"browser_session_idle_ms", CFG_INT, "1800000", 60000, 30LL * 86400000, OFF(browser_session_idle_ms),
     "an employee's browser session (the page at /t/{tenant}/) unused this long is signed out", NULL},
    {"browser_session_max_ms", CFG_INT, "43200000", 60000, 90LL * 86400000, OFF(browser_session_max_ms),
     "an employee's browser session ends this long after its sign-in with the identity provider, however much it "
     "is used",
     NULL},
    {"connectors_per_tenant_max", CFG_INT, "200", 1, 10000 /* VAULT_CONNECTORS_MAX */, OFF(connectors_per_tenant_max),
     "connectors one tenant may hold; past it a PUT of a new connector is 409 too_many_connectors (a tenant over "
     "it after the value was lowered keeps every connector, which still work and may be changed or deleted, but "
     "cannot add one; its admin list shows the first this many, with \"truncated\": true)",
     NULL},
    {"dcr_clients_max", CFG_INT, "10000", 1, 10000000, OFF(dcr_clients_max),
     "OAuth clients one tenant may hold registered through dynamic client registration (/t/{tenant}/oauth/register); "
     "past it a registration gets 400 invalid_client_metadata until idle ones expire",
     NULL},
    {"pinned_clients_max", CFG_INT, "1000", 1, 100000, OFF(pinned_clients_max),
     "client metadata documents one tenant's admins may pin (PUT /admin/v1/tenants/{id}/oauth-clients); past it a "
     "new pin is 409 too_many_clients (replacing a pinned one, or deleting one, is always allowed)",
     NULL},
    {"blocked_clients_max", CFG_INT, "1000", 1, 100000, OFF(blocked_clients_max),
     "client metadata document URLs one tenant's admins may keep blocked (PUT "
     "/admin/v1/tenants/{id}/oauth-clients/{client_id}/block, or the DELETE of a document URL); past it a new block "
     "is 409 too_many_clients (blocking a blocked URL again, lifting a block, and deleting a client are always "
     "allowed: past it a delete is carried out without leaving a block, and says so)",
     NULL},
    {"scim_tokens_per_tenant_max", CFG_INT, "20", 1, 1000, OFF(scim_tokens_per_tenant_max),
     "SCIM tokens one tenant may hold (its first one, made with the tenant, included); past it POST "
     "/admin/v1/tenants/{id}/scim-tokens is 409 too_many_tokens (revoke one first: a tenant over it after the value "
     "was lowered keeps every token, which still work)",
     NULL},
    {"admin_tokens_per_tenant_max", CFG_INT, "20", 1, 1000, OFF(admin_tokens_per_tenant_max),
     "tenant admin tokens (mga_) one tenant may hold; past it POST /admin/v1/tenants/{id}/admin-tokens is 409 "
     "too_many_tokens (as scim_tokens_per_tenant_max)",
     NULL},
    {"employee_tokens_per_user_max", CFG_INT, "100", 1, 10000, OFF(employee_tokens_per_user_max),
     "employee tokens (mgw_) one person may hold, of every origin, for an admin to mint another for them (every "
     "mint, the employee page's too, first deletes the person's expired tokens): past it POST "
     "/admin/v1/tenants/{id}/tokens is 409 too_many_tokens naming the person (the employee page keeps its own limit "
     "of 50 unexpired tokens). Tokens held over it after the value was lowered still work",
     NULL},
    {"dcr_client_idle_ms", CFG_INT, "2592000000", 60000, 3650LL * 86400000, OFF(dcr_client_idle_ms),
     "a dynamically registered OAuth client unused for this long is unknown (the client registers again) and is "
     "deleted by the sweep that runs with later registrations",
     NULL},
    {"cimd_cache_ms", CFG_INT, "3600000", 0, 7LL * 86400000, OFF(cimd_cache_ms),
     "how long a fetched OAuth client metadata document (an https client_id) is used before it is fetched again "
     "(0: fetched at every use)",
     NULL},
    {"cimd_cache_max", CFG_INT, "10000", 1, 10000000, OFF(cimd_cache_max),
     "fetched client metadata documents one tenant keeps cached; past it (after evicting ones unused for "
     "cimd_cache_ms) a fetched document is used without being cached",
     NULL},
    {"cimd_ca_file", CFG_FILE, "", 0, 0, OFF(cimd_ca_file),
     "PEM trust anchors for fetching client metadata documents instead of the system CA bundle file (tests, or a "
     "private CA; the address is still checked against egress_allow_untrusted; checked at start like "
     "audit_sink_ca_file)",
     gw_out_ca_file_check},
    {"session_purge_interval_ms", CFG_INT, "60000", 10, 86400000, OFF(session_purge_interval_ms),
     "how often expired MCP sessions are purged from the store (in bounded background transactions); requests "
     "never see an expired session whatever this is",
     NULL},
};
#define NKEYS (sizeof keys / sizeof keys[0])
_Static_assert(NKEYS <= 64 * sizeof ((gw_config *)0)->given_ / sizeof ((gw_config *)0)->given_[0],
               "one bit per key in gw_config.given_");

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

int gw_parse_hostport(const char *s, char *host, size_t hostlen, int *port) {
  const char *colon;
  size_t hl;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':') return -EINVAL;
    hl = (size_t)(close - s - 1);
    if (hl == 0 || hl >= hostlen) return -EINVAL;
    memcpy(host, s + 1, hl);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return -EINVAL;
    hl = (size_t)(colon - s);
    if (hl == 0 || hl >= hostlen || memchr(s, ':', hl)) return -EINVAL;
    memcpy(host, s, hl);
  }
  host[hl] = 0;
  /* a host name or address: nothing else (a space or a quote here would
   * also end up in the public_url derived from it) */
  for (const char *c = host; *c; c++)
    if (!isalnum((unsigned char)*c) && !strchr(s[0] == '[' ? ".:-_%" : ".-_", *c)) return -EINVAL;
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || p < 0 || p > 65535) return -EINVAL;
  *port = (int)p;
  return 0;
}

static int check_hostport(const char *v, char *err, size_t errlen) {
  char host[256];
  int port;
  if (gw_parse_hostport(v, host, sizeof host, &port) != 0) {
    errf(err, errlen, "expected HOST:PORT (or [v6]:PORT), got \"%s\"", v);
    return -1;
  }
  return 0;
}
static int check_hostport_opt(const char *v, char *err, size_t errlen) {
  return *v ? check_hostport(v, err, errlen) : 0;
}
static int check_level(const char *v, char *err, size_t errlen) {
  if (gw_log_level_parse(v) < 0) {
    errf(err, errlen, "expected debug, info, warn or error, got \"%s\"", v);
    return -1;
  }
  return 0;
}
/* v is one of the NULL-terminated words; else "expected a, b or c" */
static int one_of(const char *v, char *err, size_t errlen, const char *const *words) {
  char list[128] = "";
  size_t n = 0;
  for (const char *const *w = words; *w; w++) {
    if (!strcmp(v, *w)) return 0;
    n++;
  }
  for (size_t i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
             words[i]);
  errf(err, errlen, "expected %s, got \"%s\"", list, v);
  return -1;
}
static int check_audit_failure(const char *v, char *err, size_t errlen) {
  return one_of(v, err, errlen, (const char *const[]){"deny", "serve", NULL});
}
static int check_audit_args(const char *v, char *err, size_t errlen) {
  return one_of(v, err, errlen, (const char *const[]){"full", "digest", "none", NULL});
}
static int check_audit_redact(const char *v, char *err, size_t errlen) {
  /* printable patterns of at most 64 bytes, at most 32 of them */
  int n = 0;
  for (const char *p = v; *p;) {
    size_t l = strcspn(p, ",");
    if (l > 64 || ++n > 32) {
      errf(err, errlen, "expected at most 32 comma-separated patterns of at most 64 characters");
      return -1;
    }
    for (size_t i = 0; i < l; i++)
      if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) {
        errf(err, errlen, "patterns are printable ASCII without spaces");
        return -1;
      }
    p += l;
    if (*p == ',') p++;
  }
  return 0;
}
static int check_sink_url(const char *v, char *err, size_t errlen) {
  if (!*v) return 0;
  if ((strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) || strlen(v) > 2048 || strpbrk(v, " \t\r\n#")) {
    /* its query may hold the SIEM's key (?dd-api-key=…): shown masked */
    char *shown = st_url_shown(v);
    size_t n = shown ? strlen(shown) : 0;
    if (n > 80) /* cut on a character's first byte */
      for (n = 80; n && ((unsigned char)shown[n] & 0xc0) == 0x80; n--) {}
    errf(err, errlen, "expected an absolute http:// or https:// URL without fragment, got \"%.*s\"", (int)n,
         shown ? shown : "");
    free(shown);
    return -1;
  }
  return 0;
}
static int check_sink_format(const char *v, char *err, size_t errlen) {
  return one_of(v, err, errlen, (const char *const[]){"ndjson", "splunk_hec", NULL});
}
/* tenant_ca_dir: an absolute path to a directory (it may be a symbolic
 * link to one), of a length that leaves room for a tenant id and a file
 * name within PATH_MAX. */
static int check_dir(const char *v, char *err, size_t errlen) {
  struct stat sb;
  if (v[0] != '/' || strlen(v) > GW_TENANT_CA_DIR_MAX) {
    errf(err, errlen, "expected an absolute path of at most %d bytes, got \"%.200s\"", GW_TENANT_CA_DIR_MAX, v);
    return -1;
  }
  if (stat(v, &sb) != 0) {
    errf(err, errlen, "cannot use %s: %s", v, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(sb.st_mode)) {
    errf(err, errlen, "cannot use %s: %s", v, strerror(ENOTDIR));
    return -1;
  }
  return 0;
}

bool gw_config_tenant_ca_path(const gw_config *cfg, const char *tenant, const char *path, char *root,
                              size_t rootlen) {
  const char *d = cfg->tenant_ca_dir;
  if (!d || !*d || !path || !tenant || !*tenant || strchr(tenant, '/') || strlen(path) >= PATH_MAX) return false;
  size_t dl = strlen(d);
  while (dl && d[dl - 1] == '/') dl--; /* "/srv/ca/" is "/srv/ca"; "/" is "" */
  size_t tl = strlen(tenant);
  if (strncmp(path, d, dl) || path[dl] != '/' || strncmp(path + dl + 1, tenant, tl) || path[dl + 1 + tl] != '/')
    return false;
  /* the rest: one or more components, none empty, "." or "..", nothing
   * that is not printable (a path in log lines and answers) */
  const char *p = path + dl + 1 + tl + 1;
  for (;;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return false;
    if (!p[n]) break;
    p += n + 1;
  }
  int w = snprintf(root, rootlen, "%.*s/%s", (int)dl, d, tenant);
  return w > 0 && (size_t)w < rootlen;
}

/* public_url, as set or as derived from listen. Port 0 passes: a listen
 * on port 0 (any free port) derives it, the server puts the bound port in
 * its place, and --print-config's output must load again as it is
 * (fuzz_config found that refusing it broke that). */
static int url_check(const char *v, char *err, size_t errlen) {
  if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
    errf(err, errlen, "expected an http:// or https:// URL, got \"%s\"", v);
    return -1;
  }
  size_t n = strlen(v);
  if (n > 512 || strpbrk(v, " \t\r\n\"<>") || v[n - 1] == '/') {
    errf(err, errlen, "expected a base URL without trailing slash, got \"%s\"", v);
    return -1;
  }
  /* The OAuth discovery documents (RFC 8414, RFC 9728) are found at
   * <origin>/.well-known/…/<path of the issuer or resource>: at the root of
   * the host, whatever prefix a proxy puts in front. The gateway's routes
   * have no prefix either, so a public_url with a path would hand out URLs
   * nothing answers. */
  const char *auth = strstr(v, "://") + 3;
  size_t an = strcspn(auth, "/?#");
  if (auth[an]) {
    errf(err, errlen,
         "a path or query is not supported: it must be scheme://host[:port], because OAuth clients look for the "
         "gateway's discovery documents at the host's root (/.well-known/…, RFC 8414 and RFC 9728) and its routes "
         "have no prefix; serve it at the root of a host name of its own");
    return -1;
  }
  if (an == 0) {
    errf(err, errlen, "expected a host after the scheme, got \"%s\"", v);
    return -1;
  }
  /* user:password@ would be written into every page, discovery document
   * and start log line, and is no part of an origin browsers send */
  if (memchr(auth, '@', an)) {
    errf(err, errlen, "no user name or password (\"…@\") in it: it is the origin shown to browsers and clients and "
         "written to the log; got a URL with one");
    return -1;
  }
  /* a backslash is a slash to browsers (the host would end there), and
   * '%' escapes no host the gateway can be reached at */
  if (memchr(auth, '\\', an) || memchr(auth, '%', an)) {
    errf(err, errlen, "a host with '\\' or '%%' is not one browsers send as an origin, got \"%s\"", v);
    return -1;
  }
  /* the port, when given: 1-65535 in digits ([v6]:port or host:port) */
  const char *close = auth[0] == '[' ? memchr(auth, ']', an) : NULL;
  if (auth[0] == '[' && (!close || close == auth + 1)) {
    errf(err, errlen, "an IPv6 host needs an address and its closing ']', got \"%s\"", v);
    return -1;
  }
  const char *hend = close ? close + 1 : auth;
  const char *colon = memchr(hend, ':', an - (size_t)(hend - auth));
  if (close && hend != auth + an && *hend != ':') {
    errf(err, errlen, "expected [v6]:port after an IPv6 host, got \"%s\"", v);
    return -1;
  }
  if (colon) {
    size_t pl = an - (size_t)(colon + 1 - auth);
    long port = 0;
    for (size_t i = 0; i < pl && port <= 65535; i++)
      port = colon[1 + i] >= '0' && colon[1 + i] <= '9' ? port * 10 + (colon[1 + i] - '0') : 70000;
    /* no leading zero: browsers send ":8080", never ":08080" (nor ":0443"
     * for the default port the rule above drops) */
    if (pl == 0 || pl > 5 || port > 65535 || colon == auth || (pl > 1 && colon[1] == '0')) {
      errf(err, errlen, "expected scheme://host[:port] with the port in digits, at most 65535 and without a leading "
           "zero, got \"%s\"", v);
      return -1;
    }
  }
  /* browsers send Origin as scheme://host[:port] with the host in lower
   * case and no default port: public_url is compared with it, so another
   * spelling of the same origin would refuse every page's form */
  bool https = v[4] == 's';
  const char *dflt = https ? ":443" : ":80";
  size_t dl = strlen(dflt);
  if (an > dl && !memcmp(auth + an - dl, dflt, dl)) {
    errf(err, errlen, "drop the default port %s: \"%.*s%.*s\" is the origin browsers send (and it is compared "
         "with theirs), got \"%s\"", dflt, (int)(auth - v), v, (int)(an - dl), auth, v);
    return -1;
  }
  for (size_t i = 0; i < an; i++)
    if (auth[i] >= 'A' && auth[i] <= 'Z') {
      errf(err, errlen, "write the host in lower case (browsers send the origin so, and it is compared with theirs), "
           "got \"%s\"", v);
      return -1;
    }
  return 0;
}

static int check_url(const char *v, char *err, size_t errlen) { return url_check(v, err, errlen); }

/* The trusted_proxies syntax (gateway/base/cidr.h): a.b.c.d[/n] or v6[/n]. */
static int check_cidrs(const char *v, char *err, size_t errlen) {
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    size_t n = strcspn(p, ", ");
    gw_cidr c;
    if (gw_cidr_parse(p, n, &c) != 0) {
      errf(err, errlen, "bad CIDR \"%.*s\"", (int)n, p);
      return -1;
    }
    p += n;
  }
  return 0;
}

static int check_egress(const char *v, char *err, size_t errlen) {
  gw_egress *e = NULL;
  int rc = gw_egress_parse(NULL, v, &e, err, errlen);
  gw_egress_free(e);
  if (rc == -ENOMEM) errf(err, errlen, "out of memory");
  return rc ? -1 : 0;
}

static const cfg_key *find_key(const char *name, size_t n) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strlen(keys[i].name) == n && strncmp(keys[i].name, name, n) == 0) return &keys[i];
  return NULL;
}

static int parse_size(const char *v, int64_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*v)) return -1;
  long long x = strtoll(v, &end, 10);
  if (errno) return -1;
  long long mul = 1;
  if (*end) {
    if (!strcasecmp(end, "k") || !strcasecmp(end, "kib") || !strcasecmp(end, "kb")) mul = KIB;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib") || !strcasecmp(end, "mb")) mul = MIB;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib") || !strcasecmp(end, "gb")) mul = GIB;
    else return -1;
  }
  if (x > INT64_MAX / mul) return -1;
  *out = x * mul;
  return 0;
}

/* Applies one value to its key; `src` names the source for the message. */
static int set_key(gw_config *cfg, const cfg_key *k, const char *v, const char *src, char *err,
                   size_t errlen) {
  char why[300] = "";
  void *field = (char *)cfg + k->off;
  size_t ki = (size_t)(k - keys);
  if (strcmp(src, "default") != 0) cfg->given_[ki / 64] |= 1ull << (ki % 64);
  switch (k->type) {
  case CFG_STR:
  case CFG_FILE: {
    if (k->type == CFG_STR && k->check && k->check(v, why, sizeof why) != 0) goto bad;
    char *dup = strdup(v);
    if (!dup) return -ENOMEM;
    free(*(char **)field);
    *(char **)field = dup;
    return 0;
  }
  case CFG_BOOL: {
    bool b;
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) b = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) b = false;
    else {
      snprintf(why, sizeof why, "expected true or false, got \"%s\"", v);
      goto bad;
    }
    *(bool *)field = b;
    return 0;
  }
  case CFG_INT:
  case CFG_SIZE: {
    int64_t x;
    if (k->type == CFG_SIZE) {
      if (parse_size(v, &x) != 0) {
        snprintf(why, sizeof why, "expected a byte size (e.g. 16384, 64K, 32M, 8G), got \"%s\"", v);
        goto bad;
      }
    } else {
      char *end;
      errno = 0;
      long long ll = strtoll(v, &end, 10);
      if (errno || end == v || *end) {
        snprintf(why, sizeof why, "expected an integer, got \"%s\"", v);
        goto bad;
      }
      x = ll;
    }
    if (x < k->min || x > k->max) {
      snprintf(why, sizeof why, "%lld is out of range [%lld, %lld]", (long long)x, (long long)k->min,
               (long long)k->max);
      goto bad;
    }
    *(int64_t *)field = x;
    return 0;
  }
  }
bad:
  errf(err, errlen, "config key %s (%s): %s", k->name, src, why);
  return -EINVAL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
  return s;
}

static int load_file(gw_config *cfg, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    errf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
    return -EINVAL;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t ll = strlen(line);
    if (ll == sizeof line - 1 && line[ll - 1] != '\n' && !feof(f)) {
      /* not split into two "lines" of which the second could parse */
      errf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
      rc = -EINVAL;
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      errf(err, errlen, "%s:%d: expected \"key = value\"", path, lineno);
      rc = -EINVAL;
      break;
    }
    *eq = 0;
    char *name = trim(s), *val = trim(eq + 1);
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
      val[vl - 1] = 0;
      val++;
    }
    const cfg_key *k = find_key(name, strlen(name));
    if (!k) {
      errf(err, errlen, "%s:%d: unknown config key \"%s\"", path, lineno, name);
      rc = -EINVAL;
      break;
    }
    char src[300];
    snprintf(src, sizeof src, "%s:%d", path, lineno);
    if ((rc = set_key(cfg, k, val, src, err, errlen)) != 0) break;
  }
  fclose(f);
  return rc;
}

static void env_name(const cfg_key *k, char *out, size_t n) {
  size_t i = (size_t)snprintf(out, n, "MCPGATE_");
  for (const char *p = k->name; *p && i + 1 < n; p++) out[i++] = (char)toupper((unsigned char)*p);
  out[i] = 0;
}
static void flag_name(const cfg_key *k, char *out, size_t n) {
  size_t i = (size_t)snprintf(out, n, "--");
  for (const char *p = k->name; *p && i + 1 < n; p++) out[i++] = *p == '_' ? '-' : *p;
  out[i] = 0;
}

/* Matches "--flag" or "--flag=value" against the table (dashes or
 * underscores accepted). */
static const cfg_key *match_flag(const char *arg, const char **inline_val) {
  if (strncmp(arg, "--", 2) != 0) return NULL;
  const char *name = arg + 2;
  const char *eq = strchr(name, '=');
  size_t n = eq ? (size_t)(eq - name) : strlen(name);
  char buf[64];
  if (n >= sizeof buf) return NULL;
  for (size_t i = 0; i < n; i++) buf[i] = name[i] == '-' ? '_' : name[i];
  *inline_val = eq ? eq + 1 : NULL;
  return find_key(buf, n);
}

int gw_config_load(gw_config *cfg, int argc, char **argv, char *err, size_t errlen) {
  int rc;
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < NKEYS; i++)
    if (keys[i].def && (rc = set_key(cfg, &keys[i], keys[i].def, "default", err, errlen)) != 0)
      return rc;
  /* --config first (wherever it appears), so flags override it. */
  for (int i = 0; i < argc; i++) {
    const char *file = NULL;
    if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        errf(err, errlen, "--config needs a FILE");
        return -EINVAL;
      }
      file = argv[i + 1];
    } else if (!strncmp(argv[i], "--config=", 9)) {
      file = argv[i] + 9;
    }
    if (file && (rc = load_file(cfg, file, err, errlen)) != 0) return rc;
  }
  for (size_t i = 0; i < NKEYS; i++) {
    char name[80];
    env_name(&keys[i], name, sizeof name);
    const char *v = getenv(name);
    if (v && (rc = set_key(cfg, &keys[i], v, name, err, errlen)) != 0) return rc;
  }
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--config")) {
      i++;
      continue;
    }
    if (!strncmp(argv[i], "--config=", 9)) continue;
    const char *val = NULL;
    const cfg_key *k = match_flag(argv[i], &val);
    if (!k) {
      errf(err, errlen, "unknown option \"%s\" (see mcpgate serve --help)", argv[i]);
      return -EINVAL;
    }
    if (!val) {
      if (i + 1 >= argc) {
        errf(err, errlen, "config key %s: %s needs a value", k->name, argv[i]);
        return -EINVAL;
      }
      val = argv[++i];
    }
    if ((rc = set_key(cfg, k, val, "flag", err, errlen)) != 0) return rc;
  }
  /* Derived defaults. */
  char buf[4096];
  if (!cfg->public_url) {
    cfg->public_url_derived = true;
    snprintf(buf, sizeof buf, "http://%s", cfg->listen);
    size_t bl = strlen(buf);
    if (bl > 3 + 7 && !strcmp(buf + bl - 3, ":80")) buf[bl - 3] = 0; /* the origin browsers send */
    char why[600];
    if (url_check(buf, why, sizeof why) != 0) {
      errf(err, errlen, "config key public_url: not set, and the one derived from listen is unusable (%s); set it",
           why);
      return -EINVAL;
    }
    cfg->public_url = strdup(buf);
  }
  if (!cfg->master_key_file) {
    snprintf(buf, sizeof buf, "%s/master.key", cfg->data);
    cfg->master_key_file = strdup(buf);
  }
  if (!cfg->admin_token_file) {
    snprintf(buf, sizeof buf, "%s/admin.token", cfg->data);
    cfg->admin_token_file = strdup(buf);
  }
  if (!cfg->public_url || !cfg->master_key_file || !cfg->admin_token_file) return -ENOMEM;
  if (*cfg->tls_listen && (!*cfg->tls_cert_file || !*cfg->tls_key_file)) {
    errf(err, errlen, "config key tls_listen: needs tls_cert_file and tls_key_file");
    return -EINVAL;
  }
  return 0;
}

bool gw_config_given(const gw_config *cfg, const char *key) {
  const cfg_key *k = find_key(key, strlen(key));
  if (!k) return false;
  size_t ki = (size_t)(k - keys);
  return (cfg->given_[ki / 64] >> (ki % 64)) & 1;
}

int gw_config_check_files(const gw_config *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < NKEYS; i++) {
    const char *v = keys[i].type == CFG_FILE ? *(char *const *)((const char *)cfg + keys[i].off) : NULL;
    char why[600];
    if (v && *v && keys[i].check && keys[i].check(v, why, sizeof why) != 0) {
      errf(err, errlen, "config key %s: %s", keys[i].name, why);
      return -EINVAL;
    }
  }
  return 0;
}

void gw_config_free(gw_config *cfg) {
  for (size_t i = 0; i < NKEYS; i++)
    if (keys[i].type == CFG_STR || keys[i].type == CFG_FILE) {
      char **p = (char **)((char *)cfg + keys[i].off);
      free(*p);
      *p = NULL;
    }
}

static void value_str(const gw_config *cfg, const cfg_key *k, char *out, size_t n) {
  const void *field = (const char *)cfg + k->off;
  switch (k->type) {
  case CFG_STR:
  case CFG_FILE: snprintf(out, n, "%s", *(char *const *)field ? *(char *const *)field : ""); break;
  case CFG_BOOL: snprintf(out, n, "%s", *(const bool *)field ? "true" : "false"); break;
  default: snprintf(out, n, "%lld", (long long)*(const int64_t *)field); break;
  }
}

void gw_config_print(const gw_config *cfg, FILE *out) {
  char v[4200];
  for (size_t i = 0; i < NKEYS; i++) {
    value_str(cfg, &keys[i], v, sizeof v);
    /* quoted where the file syntax would otherwise change it (trimmed
     * blanks, a quoted value's quotes): what is printed loads as is */
    size_t n = strlen(v);
    bool quote = n && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1]) ||
                       (n >= 2 && v[0] == '"' && v[n - 1] == '"'));
    fprintf(out, quote ? "%s = \"%s\"\n" : "%s = %s\n", keys[i].name, v);
  }
}

static const char *type_name(cfg_type t) {
  switch (t) {
  case CFG_STR:
  case CFG_FILE: return "string";
  case CFG_INT: return "integer";
  case CFG_BOOL: return "bool";
  default: return "size";
  }
}

void gw_config_help(FILE *out) {
  fprintf(out,
          "usage: mcpgate serve [--listen HOST:PORT] [--data DIR] [--config FILE] [--<key> VALUE]...\n"
          "       mcpgate serve --print-config [...]   print the effective configuration and exit\n\n"
          "Configuration keys (defaults < --config file < MCPGATE_* env < flags):\n\n");
  for (size_t i = 0; i < NKEYS; i++) {
    char flag[80], env[80];
    flag_name(&keys[i], flag, sizeof flag);
    env_name(&keys[i], env, sizeof env);
    fprintf(out, "  %-24s %-8s %s\n", flag, type_name(keys[i].type), keys[i].help);
    fprintf(out, "  %-24s %-8s env %s, key %s, default %s\n", "", "", env, keys[i].name,
            keys[i].def ? (*keys[i].def ? keys[i].def : "(empty)") : "(derived)");
  }
}

void gw_config_markdown(FILE *out) {
  fprintf(out, "| key | flag | env | type | default | meaning |\n|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < NKEYS; i++) {
    char flag[80], env[80];
    flag_name(&keys[i], flag, sizeof flag);
    env_name(&keys[i], env, sizeof env);
    fprintf(out, "| `%s` | `%s` | `%s` | %s | %s | %s |\n", keys[i].name, flag, env,
            type_name(keys[i].type),
            keys[i].def ? (*keys[i].def ? keys[i].def : "(empty)") : "(derived)", keys[i].help);
  }
}
