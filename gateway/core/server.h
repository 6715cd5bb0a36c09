/* gateway/core/server.h — the process: listeners, loops, shutdown, reload.
 *
 * gw_server is created by gw_serve, owns the config, the store, the router
 * and every loop. Each gw_loop owns its libuv loop, its listeners, its HTTP
 * state (gw_http, gateway/http) and its per-loop module state; handlers
 * reach everything through req->lp (never through globals). One loop today;
 * the struct is per-loop so N loops (SO_REUSEPORT) need no rewrite.
 *
 * Modules are wired through the module table (gateway/core/module.h) given
 * to gw_serve: server.c knows none of them. A module's process-wide state
 * hangs off gw_server through an opaque pointer it creates in its init.
 *
 * Threading: gw_server is written by the main thread before the loop runs
 * and read-only afterwards, except for what its own comments say. */
#ifndef MCPGATE_GATEWAY_SERVER_H
#define MCPGATE_GATEWAY_SERVER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/core/config.h"
#include "gateway/core/module.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"

typedef struct gw_server gw_server;
typedef struct gw_loop gw_loop;
typedef struct gw_metrics gw_metrics;
typedef struct gw_tls_ctx gw_tls_ctx;
typedef struct st_store st_store;
typedef struct gw_scim_state gw_scim_state;

typedef struct gw_listener {
  uv_tcp_t tcp;
  gw_loop *lp;
  int kind;      /* GW_LISTENER_* */
  char addr[96]; /* bound address, for logs */
  bool open;
} gw_listener;

struct gw_loop {
  uv_loop_t loop;
  gw_server *srv;
  gw_listener listeners[3];
  gw_http http;         /* this loop's connections (gateway/http/http.h) */
  uint64_t rng[2];      /* request-id generator (not for secrets) */
  struct st_port *port; /* store completion port on this loop */
  struct gw_out *out;   /* outbound HTTP engine (gateway/out/outbound.h) */
  struct gw_proxy *proxy; /* live MCP exchanges (gateway/mcp/mcp_proxy.h) */
  struct pol_cache *pol;  /* effective policies per user (policy/policy.h) */
  struct gw_session_purge *sess_purge; /* expired-session purge driver (mcp_session.c) */
  bool draining;        /* SIGTERM seen: background jobs stop rescheduling */
};

struct gw_server {
  gw_config cfg;
  gw_metrics *metrics;
  st_store *store;
  gw_tls_ctx *tls;      /* current TLS context (swapped on SIGHUP) */
  gw_trusted *trusted;  /* trusted_proxies */
  gw_http_host http_host; /* what gateway/http knows of the process */
  gw_router *router;    /* every module's routes (module table) */
  const gw_module *const *modules; /* the module table (gateway/modules.c) */
  gw_loop *lp;          /* the loop (one today) */
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t drain_timer;
  bool shutting_down;
  int exit_code;
  gw_scim_state *scim;  /* SCIM metrics (gateway/api/scim_http.c, its init) */
  struct gw_sessions *sessions; /* session limits (gateway/mcp/mcp_session.c, its init) */
  uint8_t admin_token_hash[32]; /* SHA-256 of the operator token */
  bool have_admin_token;
  /* the operator's egress policies by trust level (GW_OUT_EGRESS_*,
   * gateway/out/outbound.h): egress_allow_untrusted, egress_allow */
  struct gw_egress *egress[2];
};

/* Runs `mcpgate serve`: loads nothing itself (cfg is ready), opens the
 * store, runs the module table (mods, NULL-terminated, borrowed), binds
 * listeners, runs until SIGTERM/SIGINT drain completes. Returns the
 * process exit code. Takes ownership of cfg. */
int gw_serve(gw_config *cfg, const gw_module *const *mods);

/* Takes an exclusive lock on <data>/mcpgate.lock: one server per data
 * directory, and offline commands that must not run beside a server (key
 * rotation) check it. Returns the fd holding the lock, or -1 if another
 * process holds it (or it cannot be created). */
int gw_data_lock(const char *data_dir);

/* True when `authorization` (an Authorization header value, may be NULL)
 * is "Bearer <the operator token>" (compared in constant time). */
bool gw_server_is_operator(const gw_server *srv, const char *authorization);

#endif
