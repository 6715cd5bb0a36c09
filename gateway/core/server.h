/* gateway/core/server.h — the process: listeners, loops, shutdown, reload.
 *
 * gw_server is created by gw_serve, owns the config, the store, the router
 * and every loop. Each gw_loop owns its libuv loop, its listeners, its HTTP
 * state (gw_http, gateway/http) and its per-loop module state; handlers
 * reach everything through req->lp (never through globals). `workers`
 * loops, each on its own thread (the primary, loops[0], on the main
 * thread), each with its own listening sockets on the same addresses
 * (SO_REUSEPORT: the kernel spreads connections over them).
 *
 * Modules are wired through the module table (gateway/core/module.h) given
 * to gw_serve: server.c knows none of them. A module's process-wide state
 * hangs off gw_server through an opaque pointer it creates in its init.
 *
 * Threading: gw_server is written by the main thread before the loops run
 * and read-only afterwards, except for what its own comments say (atomics,
 * or guarded by a named mutex). Every loop is set up on the main thread
 * before any runs; from then on a loop's state is touched by its own
 * thread only, and loops talk through uv_async_t (ctl here, the fan-out in
 * gateway/mcp/revoke.c, store ports). Signals are handled on the primary,
 * which tells the others (ctl) to drain; it finishes last. */
#ifndef MCPGATE_GATEWAY_SERVER_H
#define MCPGATE_GATEWAY_SERVER_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "gateway/core/config.h"
#include "gateway/core/module.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"
#include "store/store.h"

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
  struct sockaddr_storage sa; /* bound address (port resolved) */
  bool open;
} gw_listener;

struct gw_loop {
  uv_loop_t loop;
  gw_server *srv;
  int index;            /* 0: the primary loop (signals, once-per-process jobs) */
  gw_listener listeners[3];
  gw_http http;         /* this loop's connections (gateway/http/http.h) */
  gw_http_host host;    /* what gateway/http knows of the process; ctx = this loop */
  uint64_t rng[2];      /* request-id generator (not for secrets) */
  struct st_port *port; /* store completion port on this loop */
  struct gw_out *out;   /* outbound HTTP engine (gateway/out/outbound.h) */
  struct gw_proxy *proxy; /* live MCP exchanges (gateway/mcp/mcp_proxy.h) */
  struct pol_cache *pol;  /* effective policies per user (policy/policy.h) */
  struct gw_session_purge *sess_purge; /* expired-session purge driver (mcp_session.c) */
  struct gw_rediscover *rediscover;    /* discovered connectors read again (api/admin_discover.c; loop 0) */
  bool draining;        /* SIGTERM seen: background jobs stop rescheduling */
  /* private to server.c */
  uv_thread_t thread;   /* loops 1..N-1 run on their own thread */
  uv_async_t ctl;       /* control messages (ctl_flags) from the primary loop */
  _Atomic int ctl_flags;
  bool ctl_open;        /* guarded by srv->ctl_mu: ctl may be sent to */
  uv_timer_t drain_timer;
  bool finished;
};

struct gw_server {
  gw_config cfg;
  gw_metrics *metrics;
  st_store *store;
  gw_tls_ctx *tls;      /* current TLS context (swapped on SIGHUP, under tls_mu) */
  uv_mutex_t tls_mu;
  gw_trusted *trusted;  /* trusted_proxies */
  gw_router *router;    /* every module's routes (module table) */
  const gw_module *const *modules; /* the module table (gateway/modules.c) */
  /* the table's request_done hooks, gathered once: every request ends
   * through them, so the table is not walked per request */
  void (*request_done[GW_REQUEST_DONE_MAX])(gw_loop *lp, const struct gw_req *req, int rclass, int status);
  int nrequest_done;
  gw_loop **loops;      /* `workers` loops, each on its thread */
  int nloops;
  gw_loop *lp;          /* loops[0], the primary: signals and once-per-process jobs */
  uv_signal_t sig_term, sig_int, sig_hup; /* on the primary loop */
  _Atomic bool shutting_down;
  _Atomic int loops_finished; /* loops other than the primary that finished draining */
  uv_mutex_t ctl_mu;    /* guards every loop's ctl_open against its close */
  _Atomic int64_t conns_active; /* client connections counted against max_connections */
  int exit_code;
  gw_scim_state *scim;  /* SCIM metrics (gateway/api/scim_http.c, its init) */
  struct gw_sessions *sessions; /* session limits (gateway/mcp/mcp_session.c, its init) */
  struct gw_pages *pages;       /* employee pages and sign-in: the providers' cache (gateway/api/pages.c, its init) */
  struct gw_oauth *oauth;       /* the OAuth authorization server: counters, CIMD fetches in flight (gateway/api/oauth.c, its init) */
  struct gw_mcp_shared *mcp;    /* the MCP proxy's process-wide state: fan-out, session maps (gateway/mcp, its init) */
  struct gw_audit *audit;       /* the audit log's wiring, or NULL when off (gateway/mcp/audit_log.c) */
  struct audit_log *audit_log;  /* the open audit log (audit/audit.h), or NULL: for its readers (api) */
  uint8_t admin_token_hash[32]; /* SHA-256 of the operator token */
  bool have_admin_token;
  /* the operator's egress policies by trust level (GW_OUT_EGRESS_*,
   * gateway/out/outbound.h): egress_allow_untrusted, egress_allow */
  struct gw_egress *egress[2];
  struct gw_limits *limits;     /* abuse limits every front door shares (gateway/core/limits.h) */
  /* the store's generation and its record (gateway/core/stamp.c): the
   * primary loop's timer and pool work, the main thread at start and exit */
  uv_timer_t stamp_timer;
  uv_work_t stamp_work;
  bool stamp_timer_on, stamp_busy, stamp_failing, stamp_started;
  int stamp_rc;
  uint64_t stamp_seen, stamp_from; /* the store's committed-job count at the last record, and at the one under way */
};

/* Runs `mcpgate serve`: loads nothing itself (cfg is ready), opens the
 * store, runs the module table (mods, NULL-terminated, borrowed), binds
 * listeners, runs until SIGTERM/SIGINT drain completes. Returns the
 * process exit code. Takes ownership of cfg. */
int gw_serve(gw_config *cfg, const gw_module *const *mods);

/* Takes an exclusive lock on <data>/mcpgate.lock: one server per data
 * directory, and offline commands that must not run beside a server (key
 * rotation) check it. Returns the fd holding the lock, -EWOULDBLOCK if
 * another process holds it, or another -errno when the lock file cannot be
 * opened (an unwritable directory: EACCES, EROFS…). */
int gw_data_lock(const char *data_dir);
/* 1 when a process holds <data>/mcpgate.lock (a server, or an offline
 * command that takes it), 0 when none does (or there is none), -errno when
 * it cannot be told (the file unreadable). Takes no lock that lasts. */
int gw_data_locked(const char *data_dir);

/* Whether the data directory (and its store/ and audit/, where they
 * exist) may be trusted with what it holds: the operator token, the
 * store, the audit log, often the master key. Refused (-1, err says why
 * and what to run): a directory every user may write to (anyone could
 * replace the operator token or the store), or one owned by another user
 * than the one running — except a root-owned one for a non-root user (a
 * volume mounted by the platform with a group for the service). Root
 * running any command on a directory another user owns is refused too:
 * the files it would create (lock files, a key, a token) would be root's,
 * and the server, run as that user, could not open them. A directory
 * that does not exist yet is fine (serve creates it 0700). 0 when
 * trusted; err then holds a warning (group-writable) or "". */
int gw_data_dir_trusted(const char *data_dir, char *err, size_t cap);

/* Where the mcpgate running on data_dir answers its admin API
 * (<data>/admin.url, written by serve once its listeners are bound:
 * admin_listen's address, else listen's, a wildcard host as loopback),
 * for the CLI: 0 with url set, or -1 with why saying what is missing —
 * the data directory's lock not held (no server runs there: its port may
 * be anyone's, and the operator token is not sent to whoever took it),
 * or no file. */
int gw_data_admin_url(const char *data_dir, char *url, size_t cap, char *why, size_t whycap);

/* Queues a store job whose done runs on lp's loop (st_submit with lp's
 * port): 0, or st_submit's error — and ST_ECLOSED once the loop finished
 * and closed its port. (st_submit with a NULL port would run done on the
 * writer thread instead: a transfer's last callback during the loop's
 * close would then touch loop state from another thread.) Loop thread. */
int gw_loop_submit(gw_loop *lp, st_job_fn fn, st_done_fn done, void *arg);
/* The same in the writer's second lane (st_submit_bulk): the writes any
 * employee's client causes at a high rate (MCP sessions), which must not
 * queue ahead of SCIM, admin and revocation writes. */
int gw_loop_submit_bulk(gw_loop *lp, st_job_fn fn, st_done_fn done, void *arg);
/* done(status, arg) on lp's loop once what every loop was told to end
 * before this call has ended (revocations fanned out: the port's gate
 * holds every done until every loop applied them, or until
 * revocation_fanout_timeout_ms; st_port_gate) — a job that writes
 * nothing, through lp's port. For a reply whose cause did not commit (a
 * cut the store could not write: st_dir_user_cut_unwritten), so it leaves
 * after the streams it ended, as a committed cut's reply does. 0, or
 * gw_loop_submit's error (done is then not called: reply at once). */
int gw_loop_after_fanout(gw_loop *lp, st_done_fn done, void *arg);

/* A store that went back in time (gateway/core/stamp.c). gw_stamp_check:
 * at start, once the store opened: refuses (-1, logged with what to do) a
 * store older than <data>/store.generation, or a record that does not
 * parse. gw_stamp_record: once the modules registered their hooks and
 * purges (the store takes none after its first write): records the
 * store's next generation; one it cannot record (a store at the end of
 * its map) is a warning, retried by the timer. The timer (the primary
 * loop) records it again every 10 s while the store was written to; it is
 * stopped in the primary's finish. gw_stamp_exit: after the loops ended,
 * before the store closes. Main thread. */
#define GW_STAMP_FILE "store.generation" /* in the data directory */
int gw_stamp_check(gw_server *srv);
void gw_stamp_record(gw_server *srv);
void gw_stamp_timer_start(gw_server *srv, uv_loop_t *loop);
void gw_stamp_timer_stop(gw_server *srv);
void gw_stamp_exit(gw_server *srv);

/* Between begin and end, a SIGBUS or SIGSEGV (a damaged page sending LMDB
 * outside the file of the store in store_dir) writes one error log line
 * saying the store is most likely damaged and what to do, then ends the
 * process with that signal's default action (core dump kept). Around
 * opening and reading a store through only: serve's start, the offline
 * commands. Main thread, not nested; end is idempotent. */
void gw_store_guard_begin(const char *store_dir);
void gw_store_guard_end(void);

/* True when `authorization` (an Authorization header value, may be NULL)
 * is "Bearer <the operator token>" (compared in constant time). */
bool gw_server_is_operator(const gw_server *srv, const char *authorization);

/* A test hook that shortens one of the gateway's waits (a deadline, a
 * threshold), so a test of what happens when it runs out does not sit
 * through the real one: the environment variable `name` (MCPGATE_TEST_*)
 * holding a whole number of ms from 1 to `max` (the wait it replaces: a
 * hook only shortens) sets *out and returns true, logged at warn level as
 * a test hook (`what` says what it shortens). Unset or empty: false, *out
 * untouched. Anything else (not a number, trailing bytes, 0, past max):
 * ignored with a warning, false. Read once, when the state it sets up is
 * made; production never sets these. */
bool gw_test_hook_ms(const char *name, uint64_t max, const char *what, uint64_t *out);

/* A test hook that holds work on a pool thread: while the file the
 * environment variable `name` (MCPGATE_TEST_*_PAUSE_FILE) names exists,
 * the calling thread waits, having made "<file>.held" — a test sees the
 * work in flight and the loop (or the writer) free. Unset or empty: returns
 * at once. Never on a loop thread. */
void gw_test_hold_file(const char *name);

#endif
