/* gateway/core/server.h — the process: listeners, loops, shutdown, reload.
 *
 * gw_server is created by main, owns the config, the store and every loop.
 * Each gw_loop owns its libuv loop, its listeners' connections and its
 * per-loop state; handlers reach everything through req->lp (never through
 * globals). One loop today; the struct is per-loop so N loops (SO_REUSEPORT)
 * need no rewrite. */
#ifndef MCPGATE_GATEWAY_SERVER_H
#define MCPGATE_GATEWAY_SERVER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/core/config.h"
#include "gateway/mcp/mcp_session.h"
#include "gateway/http/router.h"

typedef struct gw_server gw_server;
typedef struct gw_loop gw_loop;
typedef struct gw_metrics gw_metrics;
typedef struct gw_tls_ctx gw_tls_ctx;
typedef struct st_store st_store;
typedef struct gw_scim_state gw_scim_state;

enum { GW_LISTENER_HTTP = 0, GW_LISTENER_HTTPS = 1, GW_LISTENER_ADMIN = 2 };

typedef struct gw_listener {
  uv_tcp_t tcp;
  gw_loop *lp;
  int kind;      /* GW_LISTENER_* */
  char addr[96]; /* bound address, for logs */
  bool open;
} gw_listener;

typedef struct gw_cidr {
  unsigned char addr[16];
  int bits;
  int family; /* 4 or 6 */
} gw_cidr;

struct gw_loop {
  uv_loop_t loop;
  gw_server *srv;
  gw_listener listeners[3];
  void *conns;          /* intrusive list head of gw_conn (http.c) */
  int nconns;           /* every connection, rejected ones included */
  int nactive;          /* connections counted against max_connections */
  char readbuf[65536];  /* shared read buffer: reads are synchronous */
  uint64_t rng[2];      /* request-id generator (not for secrets) */
  struct st_port *port; /* store completion port on this loop */
  struct gw_out *out;   /* outbound HTTP engine (gateway/out/outbound.h) */
  struct gw_proxy *proxy; /* live MCP exchanges (gateway/mcp/mcp_proxy.h) */
  struct pol_cache *pol;  /* effective policies per user (policy/policy.h) */
  struct gw_session_purge *sess_purge; /* expired-session purge driver (mcp_session.c) */
  bool draining;
};

struct gw_server {
  gw_config cfg;
  gw_metrics *metrics;
  st_store *store;
  gw_tls_ctx *tls;      /* current TLS context (swapped on SIGHUP) */
  gw_cidr *trusted;
  int ntrusted;
  gw_loop *lp;          /* the loop (one today) */
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t drain_timer;
  bool shutting_down;
  int exit_code;
  gw_scim_state *scim;  /* SCIM metrics (gateway/api/scim_http.c) */
  gw_route scim_route;  /* body cap from scim_max_body */
  gw_route mcp_route;   /* body cap from mcp_max_body */
  gw_route agg_route;   /* the aggregated endpoint, same cap */
  uint8_t admin_token_hash[32]; /* SHA-256 of the operator token */
  bool have_admin_token;
  /* the operator's egress policies by trust level (GW_OUT_EGRESS_*,
   * gateway/out/outbound.h): egress_allow_untrusted, egress_allow */
  struct gw_egress *egress[2];
  gw_session_limits sess_limits; /* from cfg; the per-user cap hook borrows it */
};

/* Runs `mcpgate serve`: loads nothing itself (cfg is ready), opens the
 * store, binds listeners, runs until SIGTERM/SIGINT drain completes.
 * Returns the process exit code. Takes ownership of cfg. */
int gw_serve(gw_config *cfg);

/* http.c, for server.c: accept one connection on a listener; on shutdown
 * close idle connections and mark busy ones to close after their response;
 * cut every connection (drain timeout). */
void gw__http_accept(gw_listener *ls);
void gw__http_drain(gw_loop *lp);
void gw__http_close_all(gw_loop *lp);

/* Takes an exclusive lock on <data>/mcpgate.lock: one server per data
 * directory, and offline commands that must not run beside a server (key
 * rotation) check it. Returns the fd holding the lock, or -1 if another
 * process holds it (or it cannot be created). */
int gw_data_lock(const char *data_dir);

/* Called by http.c when a connection closes; finishes shutdown when the
 * last one is gone. */
void gw__loop_conn_closed(gw_loop *lp);
/* True when `ip` (textual) is inside a trusted_proxies CIDR. */
bool gw_server_trusted(const gw_server *srv, const char *ip);
/* True when `authorization` (an Authorization header value, may be NULL)
 * is "Bearer <the operator token>" (compared in constant time). */
bool gw_server_is_operator(const gw_server *srv, const char *authorization);
/* Fills `out` with 16 random hex chars + NUL (request ids). */
void gw_loop_request_id(gw_loop *lp, char out[17]);

#endif
