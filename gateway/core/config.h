/* gateway/core/config.h — the configuration: one declarative table.
 *
 * Every key is declared once in gateway/core/config.c (name, type, default,
 * bounds, help). From the name follow its flag (`--public-url`) and its
 * environment variable (`MCPGATE_PUBLIC_URL`). Sources, lowest first:
 * defaults < config file (`key = value`, --config) < MCPGATE_* env < flags.
 * `mcpgate serve --help` and the README's table are generated from the same
 * table (`mcpgate config-doc`). An unknown key or a value outside its bounds
 * refuses the start, naming the key; so does a CA file key naming a file
 * that cannot be used, or tenant_ca_dir naming no directory
 * (gw_config_check_files, at start).
 *
 * Ownership: gw_config owns its strings; gw_config_free releases them. */
#ifndef MCPGATE_GATEWAY_CONFIG_H
#define MCPGATE_GATEWAY_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gw_config {
  char *listen;
  char *public_url;
  char *data;
  char *log_level;
  bool access_log;
  int64_t max_connections;
  int64_t workers;                      /* event loops (0: one per CPU) */
  int64_t revocation_fanout_timeout_ms; /* gateway/mcp/revoke.c: how long a reply waits for every loop */
  int64_t max_header_bytes;
  int64_t max_uri_bytes;
  int64_t max_body_bytes;
  int64_t header_timeout_ms;
  int64_t body_timeout_ms;
  int64_t idle_timeout_ms;
  int64_t send_timeout_ms;
  int64_t shutdown_timeout_ms;
  char *tls_listen;
  char *tls_cert_file;
  char *tls_key_file;
  char *admin_listen;
  char *trusted_proxies;
  int64_t store_map_size;
  int64_t store_reserve;
  char *master_key_file;
  char *admin_token_file;
  int64_t scim_max_body;
  int64_t scim_max_count;
  int64_t scim_users_per_tenant_max, scim_groups_per_tenant_max; /* scim/users.c, scim/groups.c */
  int64_t mcp_max_body;
  int64_t stream_buffer_max;
  int64_t upstream_event_timeout_ms; /* gateway/mcp/upcall.c: gw_out_opts.partial_timeout_ms */
  int64_t agg_uri_map_max;
  int64_t agg_uri_map_bytes;
  char *allowed_origins;
  int64_t auth_rate_per_address;  /* gateway/api/login.c: sign-in rate limits (a minute) */
  int64_t auth_rate_per_tenant;
  int64_t dcr_rate_per_tenant;    /* gateway/api/oauth_register.c: registrations, apart from the sign-in's */
  int64_t logout_rate_per_address; /* gateway/api/global_logout.c: Universal Logout (a minute) */
  int64_t logout_rate_per_tenant;
  int64_t revocation_grace_ms, revocation_give_up_ms; /* vault grants (gateway/mcp/vault_worker.c) */
  int64_t discovery_refresh_s;
  /* the audit log (audit/, gateway/core/audit_log.c) */
  bool audit;
  char *audit_on_failure, *audit_args, *audit_redact;
  size_t audit_args_max, audit_map_size;
  int64_t audit_batch_ms, audit_retention_days, audit_queue_max;
  char *audit_sink_url, *audit_sink_format, *audit_sink_token_file, *audit_sink_ca_file; /* gateway/mcp/audit_sink.c */
  int64_t audit_sink_batch; /* discovered connectors read again (gateway/api/admin_discover.c) */
  int64_t oauth_code_ttl_ms;       /* gateway/api/oauth_flow.c: the OAuth server's lifetimes */
  int64_t access_token_ttl_ms;
  int64_t refresh_token_ttl_ms;
  int64_t refresh_reuse_grace_ms;
  int64_t browser_session_idle_ms; /* gateway/api/pages.c: employee page sessions */
  int64_t browser_session_max_ms;
  char *egress_allow;           /* gateway/out/egress.h: what admin-set URLs may reach */
  char *egress_allow_untrusted; /* the same for URLs outside callers supply */
  int64_t session_idle_timeout_ms;   /* gateway/mcp/mcp_session.h: expiry and caps */
  int64_t session_max_age_ms;
  int64_t auth_failures_per_address; /* gateway/core/limits.h: abuse limits */
  int64_t connections_per_address;   /* ... 0 in the file: a quarter of max_connections, at least 16 (gw_serve) */
  int64_t mcp_buffered_max;          /* bytes of upstream replies buffered at once past each one's first 64 KiB (0: no limit) */
  int64_t upstream_connections;      /* upstream transfers at once, every loop; 0 in the file: from the descriptor limit (gw_serve) */
  int64_t mcp_rate_per_user, mcp_rate_per_tenant;
  int64_t mcp_json_mib_per_user, mcp_json_mib_per_tenant;
  int64_t mcp_concurrent_per_user;
  int64_t approval_progress_interval_ms; /* gateway/mcp/held.c: a held call's progress notifications */
  int64_t sessions_per_user_max;
  int64_t session_purge_interval_ms;
  int64_t connectors_per_tenant_max; /* gateway/api/admin_connectors.c */
  int64_t dcr_clients_max;    /* gateway/api/oauth_register.c: dynamic client registration */
  int64_t dcr_client_idle_ms;
  int64_t pinned_clients_max; /* gateway/api/admin_oauth.c: pinned client metadata documents */
  int64_t blocked_clients_max; /* gateway/api/admin_oauth.c: blocked client metadata document URLs */
  int64_t scim_tokens_per_tenant_max;   /* gateway/api/admin_tokens.c */
  int64_t admin_tokens_per_tenant_max;  /* gateway/api/admin_tokens.c */
  int64_t employee_tokens_per_user_max; /* gateway/api/admin_tokens.c: tokens an admin mints */
  int64_t cimd_cache_ms;      /* gateway/api/oauth_cimd.c: client metadata documents */
  int64_t cimd_cache_max;
  char *cimd_ca_file;
  char *tenant_ca_dir; /* where tenant admins may name CA files: gw_config_tenant_ca_path */
  bool public_url_derived; /* not set by any source: follows the bound listen address */
  uint64_t given_[2];      /* keys set by a source, not their default: gw_config_given */
} gw_config;

/* Loads defaults, then --config FILE, then env, then flags from argv
 * (argv[0] is the first flag, not the program name). Stops at the first
 * problem: returns a negative code and writes a one-line message naming the
 * key into err. `--help` and `--print-config` are not handled here (main
 * strips them). Derived defaults (public_url from listen, master_key_file
 * and admin_token_file under data) are filled in at the end. */
int gw_config_load(gw_config *cfg, int argc, char **argv, char *err, size_t errlen);
void gw_config_free(gw_config *cfg);
/* Checks the files that file keys (the CA files, tenant_ca_dir) name, as
 * their users will read them: `serve` calls it at start, so a wrong path
 * refuses the start instead of failing the first fetch hours later. 0, or
 * a negative code and a message naming the key, the path and the cause. */
int gw_config_check_files(const gw_config *cfg, char *err, size_t errlen);

/* tenant_ca_dir's longest value: room for "/<tenant id>/<file>" in PATH_MAX. */
#define GW_TENANT_CA_DIR_MAX 2048
/* Whether `path` names a file in tenant's folder of tenant_ca_dir —
 * "<tenant_ca_dir>/<tenant>/" followed by one or more components, none of
 * them empty, "." or ".." (nor holding a control character) — judged on
 * the text alone (no file system access; the file may not exist, and
 * symbolic links are the caller's: gw_out_ca_file_usable with the folder).
 * True with the folder, "<tenant_ca_dir>/<tenant>", in root; false when
 * it does not, when tenant_ca_dir is empty, or when root is too small.
 * What a tenant admin may set as a connector's ca_file (besides the value
 * stored), and at every use the folder such a ca_file must resolve in. */
bool gw_config_tenant_ca_path(const gw_config *cfg, const char *tenant, const char *path, char *root,
                              size_t rootlen);

/* Whether a source (file, env, flag) set key, rather than its default:
 * a limit the gateway cannot honour is a warning when the operator asked
 * for it, information when it came with the defaults. */
bool gw_config_given(const gw_config *cfg, const char *key);

/* Writes `key = value` for every key (effective values). */
void gw_config_print(const gw_config *cfg, FILE *out);
/* Writes the help text for every key (flag, env var, default, help). */
void gw_config_help(FILE *out);
/* Writes the configuration reference as a Markdown table (for README). */
void gw_config_markdown(FILE *out);

/* Parses "HOST:PORT" / "[v6]:PORT" into host (caller buffer) and port. */
int gw_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
