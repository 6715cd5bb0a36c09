/* gateway/core/server.c — `mcpgate serve`: opens the data directory (its
 * owner and mode checked, gw_data_dir_trusted, as the offline commands do;
 * its lock held; <data>/admin.url written once the listeners are bound, for
 * the CLI, and removed at exit) and store
 * (read through once at start, under a guard that turns a SIGBUS/SIGSEGV
 * from a damaged file into a log line before the signal ends the process;
 * refused when older than the data directory's record of it, which it
 * then keeps current: gateway/core/stamp.c),
 * runs the module table (store hooks and checks, module state, routes,
 * metrics, per-loop state), binds listeners, handles signals (SIGTERM/
 * SIGINT drain, SIGHUP TLS reload) and runs the loop until the drain is
 * over. It is the HTTP layer's host (gw_http_host): limits from the
 * config, trusted proxies, request ids, the TLS context, connection and
 * request counts into the metrics. Knows no module by name. And the one
 * reader of the MCPGATE_TEST_* hooks that shorten a wait
 * (gw_test_hook_ms): checked, logged, off unless set.
 *
 * Loops: `workers` of them, all set up on the main thread before any runs
 * (listeners bound, modules started), then loops 1..N-1 run on their own
 * threads (signals blocked there) and the primary (loops[0]) on the main
 * thread, which handles the signals.
 *
 * Shutdown: the primary tells every loop (ctl: an async handle and flags,
 * guarded by ctl_mu against the handle's close) to drain: stop accepting,
 * close idle connections, let in-flight requests finish (their responses
 * carry Connection: close) for up to shutdown_timeout_ms, then cut what is
 * left. A loop with no connection left and nothing owed by its store port
 * stops its modules and closes its handles; the primary goes last (it
 * keeps the signals: a second one cuts every loop), then joins the
 * threads and exits 0. */
#include "gateway/core/limits.h"
#include "gateway/core/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "gateway/base/pool.h"
#include "gateway/core/metrics.h"
#include "gateway/core/module.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/tls.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/store.h"
#include "store/token.h"

/* ---------- the operator token ---------- */

int gw_loop_submit(gw_loop *lp, st_job_fn fn, st_done_fn done, void *arg) {
  return lp->port ? st_submit(lp->srv->store, lp->port, fn, done, arg) : ST_ECLOSED;
}

int gw_loop_submit_bulk(gw_loop *lp, st_job_fn fn, st_done_fn done, void *arg) {
  return lp->port ? st_submit_bulk(lp->srv->store, lp->port, fn, done, arg) : ST_ECLOSED;
}

static int no_write(st_txn *txn, void *arg) {
  (void)txn;
  (void)arg;
  return 0;
}

int gw_loop_after_fanout(gw_loop *lp, st_done_fn done, void *arg) { return gw_loop_submit(lp, no_write, done, arg); }

bool gw_test_hook_ms(const char *name, uint64_t max, const char *what, uint64_t *out) {
  const char *v = getenv(name);
  if (!v || !*v) return false;
  char *end = NULL;
  errno = 0;
  unsigned long long ms = (*v >= '0' && *v <= '9') ? strtoull(v, &end, 10) : 0;
  if (errno || !end || *end || ms == 0 || ms > max) {
    GW_LOG(GW_LOG_WARN, "server", NULL, "%s is ignored: not a whole number of ms from 1 to %llu (a test hook)", name,
           (unsigned long long)max);
    return false;
  }
  *out = ms;
  GW_LOG(GW_LOG_WARN, "server", NULL, "%s is set: %s %llu ms instead of %llu (a test hook; never set it in production)",
         name, what, ms, (unsigned long long)max);
  return true;
}

void gw_test_hold_file(const char *name) {
  const char *pause = getenv(name);
  if (!pause || !*pause) return;
  char held[600];
  snprintf(held, sizeof held, "%s.held", pause);
  for (bool told = false; access(pause, F_OK) == 0; usleep(1000))
    if (!told) {
      FILE *f = fopen(held, "w");
      if (f) fclose(f);
      told = true;
    }
}

bool gw_server_is_operator(const gw_server *srv, const char *auth) {
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !srv->have_admin_token) return false;
  const char *tok = auth + 7;
  while (*tok == ' ') tok++;
  size_t tl = strlen(tok);
  uint8_t h[32];
  return tl >= 16 && tl <= 512 && st_token_hash(tok, tl, h) == 0 && st_ct_equal(h, srv->admin_token_hash, 32);
}

/* ---------- egress ---------- */

_Static_assert(GW_OUT_EGRESS_LEVELS == sizeof ((gw_server *)0)->egress / sizeof ((gw_server *)0)->egress[0],
               "one egress policy per trust level");

/* Both levels always get a parsed policy (possibly empty), so refusals can
 * name the key that would allow the address. */
static int parse_egress(gw_server *srv) {
  char err[300] = "";
  if (gw_egress_parse("egress_allow_untrusted", srv->cfg.egress_allow_untrusted, &srv->egress[GW_OUT_EGRESS_UNTRUSTED],
                      err, sizeof err) != 0 ||
      gw_egress_parse("egress_allow", srv->cfg.egress_allow, &srv->egress[GW_OUT_EGRESS_ADMIN], err, sizeof err) != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "egress policy: %s", err[0] ? err : "out of memory");
    return -1;
  }
  return 0;
}

/* Settings that parse and work but open what the operator most likely
 * did not mean to (found by the operations review: they started without
 * a word). Said at every start, at warn level; the setting stands. */
static void warn_unsafe_config(gw_server *srv) {
  /* addresses no proxy has: a list that holds them trusts everyone */
  static const char *const anyone[] = {"198.51.100.7", "2001:db8::7", "::ffff:198.51.100.7"};
  for (size_t i = 0; i < sizeof anyone / sizeof anyone[0]; i++)
    if (gw_trusted_has(srv->trusted, anyone[i])) {
      GW_LOG(GW_LOG_WARN, "server", NULL,
             "trusted_proxies holds every %s address: any client may then name its own address in "
             "X-Forwarded-For, for the per-address rate limits, the access log and the audit log. List only the "
             "proxies in front of mcpgate",
             i == 1 ? "IPv6" : i == 2 ? "IPv4-mapped IPv6" : "IPv4");
      break;
    }
  /* the cloud metadata services hand out the machine's own credentials */
  static const char *const metadata[] = {"169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200",
                                         "::ffff:169.254.169.254"};
  static const char *const keys[] = {"egress_allow_untrusted", "egress_allow"};
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++)
    for (size_t i = 0; i < sizeof metadata / sizeof metadata[0]; i++)
      if (gw_egress_allows_ip_text(srv->egress[lv], metadata[i])) {
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "%s allows %s, a cloud metadata address that hands out this machine's credentials: %s can "
               "reach it. List the addresses and names needed instead of a range that holds it",
               keys[lv], metadata[i],
               lv == GW_OUT_EGRESS_UNTRUSTED ? "any address a client or a document names (untrusted fetches)"
                                             : "every tenant admin's connector URLs");
        break;
      }
}

/* ---------- the HTTP layer's host ---------- */

static void loop_finish(gw_loop *lp);

/* One host per loop (lp->host), every callback on that loop's thread. */
static void host_request_id(void *ctx, char out[17]) {
  gw_loop *lp = ctx;
  /* xorshift128+: ids only need to be unique-ish, not secret */
  uint64_t s1 = lp->rng[0];
  const uint64_t s0 = lp->rng[1];
  lp->rng[0] = s0;
  s1 ^= s1 << 23;
  lp->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  gw_hex16((unsigned long long)(lp->rng[1] + s0), out);
}

static bool host_trusted(void *ctx, const char *ip) {
  gw_loop *lp = ctx;
  return gw_trusted_has(lp->srv->trusted, ip);
}

/* SIGHUP swaps srv->tls on the primary while other loops accept: the
 * connection's SSL (which holds its own reference to the context) is made
 * under the lock the swap takes. */
static gw_tls_conn *host_tls_conn(void *ctx) {
  gw_server *srv = ((gw_loop *)ctx)->srv;
  uv_mutex_lock(&srv->tls_mu);
  gw_tls_conn *c = srv->tls ? gw_tls_conn_new(srv->tls) : NULL;
  uv_mutex_unlock(&srv->tls_mu);
  return c;
}

/* max_connections and connections_per_address count the connections of
 * every loop. */
static int host_admit(void *ctx, const char *peer) {
  gw_server *srv = ((gw_loop *)ctx)->srv;
  int per = gw_limits_conn_open(srv, peer);
  if (per < 0) return GW_ADMIT_PEER_FULL;
  if (atomic_fetch_add_explicit(&srv->conns_active, 1, memory_order_relaxed) < srv->cfg.max_connections)
    return per ? GW_ADMIT_PEER : GW_ADMIT_OK;
  atomic_fetch_sub_explicit(&srv->conns_active, 1, memory_order_relaxed);
  if (per) gw_limits_conn_closed(srv, peer);
  return GW_ADMIT_FULL;
}

static void host_conn_open(void *ctx) {
  gw_loop *lp = ctx;
  gw_metrics_conn(lp->srv->metrics, +1);
}

static void host_conn_rejected(void *ctx) {
  gw_loop *lp = ctx;
  gw_metrics_conn_rejected(lp->srv->metrics);
}

/* Finishes the loop's drain when its last connection is gone. */
static void host_conn_closed(void *ctx, bool counted, const char *peer) {
  gw_loop *lp = ctx;
  if (peer) gw_limits_conn_closed(lp->srv, peer);
  if (counted) {
    gw_metrics_conn(lp->srv->metrics, -1);
    atomic_fetch_sub_explicit(&lp->srv->conns_active, 1, memory_order_relaxed);
  }
  if (lp->draining && gw_http_conns(&lp->http) == 0) loop_finish(lp);
}

static void host_request_done(void *ctx, const gw_req *req, int rclass, int status, double secs) {
  if (req->limits_slot) gw_limits_request_done(((gw_loop *)ctx)->srv, (gw_req *)req);
  gw_loop *lp = ctx;
  gw_metrics_request(lp->srv->metrics, rclass, status, secs);
  for (int i = 0; i < lp->srv->nrequest_done; i++) lp->srv->request_done[i](lp, req, rclass, status);
}

static void host_fill(gw_loop *lp) {
  const gw_config *c = &lp->srv->cfg;
  lp->host = (gw_http_host){
      .ctx = lp,
      .loop = lp->srv->nloops > 1 ? lp->index : -1,
      .limits = {c->max_connections, c->max_header_bytes, c->max_uri_bytes, c->max_body_bytes,
                 c->header_timeout_ms, c->body_timeout_ms, c->idle_timeout_ms, c->access_log, c->send_timeout_ms},
      .trusted = host_trusted,
      .request_id = host_request_id,
      .tls_conn = host_tls_conn,
      .admit = host_admit,
      .on_conn_open = host_conn_open,
      .on_conn_rejected = host_conn_rejected,
      .on_conn_closed = host_conn_closed,
      .on_request_done = host_request_done,
  };
}

/* ---------- listeners ---------- */

static const char *listener_name(int kind) {
  return kind == GW_LISTENER_HTTPS ? "https" : kind == GW_LISTENER_ADMIN ? "admin" : "http";
}

static void on_connection(uv_stream_t *s, int status) {
  gw_listener *ls = s->data;
  if (status < 0) {
    GW_LOG(GW_LOG_WARN, "http", NULL, "accept on %s failed: %s", ls->addr, uv_strerror(status));
    return;
  }
  if (ls->lp->draining) return;
  gw_http_accept(&ls->lp->http, (uv_stream_t *)&ls->tcp, ls->kind);
}

static socklen_t sa_len(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A socket bound to ss with SO_REUSEADDR (and SO_REUSEPORT when shared),
 * or -errno. */
static int bind_socket(const struct sockaddr_storage *ss, bool shared) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
  if (fd < 0) return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      bind(fd, (const struct sockaddr *)ss, sa_len(ss)) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Opens lp's listener of `kind`. With several loops every loop has its
 * own socket on the same address, all with SO_REUSEPORT (the kernel
 * spreads connections over them); the primary resolves the address: it
 * first binds it without SO_REUSEPORT, so an address another process
 * listens on is refused rather than silently shared, and port 0 becomes
 * the kernel's pick, which the other loops then bind. One loop sets no
 * SO_REUSEPORT at all (nobody can join its ports). */
static int listener_open(gw_loop *lp, int kind, const char *hostport) {
  gw_listener *ls = &lp->listeners[kind];
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (lp->index == 0) {
    char host[256];
    int port;
    if (gw_parse_hostport(hostport, host, sizeof host, &port) != 0) return -EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot parse %s address %s (use an IP address)", listener_name(kind),
             hostport);
      return -EINVAL;
    }
    if (port != 0 && lp->srv->nloops > 1) {
      int probe = bind_socket(&ss, false);
      if (probe < 0) {
        GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot listen on %s (%s): %s%s", hostport, listener_name(kind),
               strerror(-probe),
               probe == -EADDRINUSE ? " (another process listens there: a second mcpgate serve?)" : "");
        return probe;
      }
      close(probe);
    }
  } else {
    ss = lp->srv->lp->listeners[kind].sa; /* the primary's, port resolved */
  }
  int fd = bind_socket(&ss, lp->srv->nloops > 1);
  if (fd < 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot listen on %s (%s): %s%s", hostport, listener_name(kind),
           strerror(-fd), fd == -EADDRINUSE ? " (another process listens there: a second mcpgate serve?)" : "");
    return fd;
  }
  socklen_t len = sizeof ls->sa;
  if (getsockname(fd, (struct sockaddr *)&ls->sa, &len) != 0) ls->sa = ss;
  ls->lp = lp;
  ls->kind = kind;
  uv_tcp_init(&lp->loop, &ls->tcp);
  ls->tcp.data = ls;
  ls->open = true;
  int rc = uv_tcp_open(&ls->tcp, fd);
  if (rc != 0) close(fd);
  else rc = uv_listen((uv_stream_t *)&ls->tcp, 1024, on_connection);
  if (rc != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot listen on %s (%s): %s", hostport, listener_name(kind),
           uv_strerror(rc));
    return rc;
  }
  char ip[64] = "?";
  if (ls->sa.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&ls->sa, ip, sizeof ip);
    snprintf(ls->addr, sizeof ls->addr, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ls->sa)->sin_port));
  } else {
    uv_ip6_name((struct sockaddr_in6 *)&ls->sa, ip, sizeof ip);
    snprintf(ls->addr, sizeof ls->addr, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ls->sa)->sin6_port));
  }
  if (lp->index == 0) {
    json_t *f = json_pack("{s:s,s:s,s:i}", "addr", ls->addr, "listener", listener_name(kind), "workers",
                          lp->srv->nloops);
    gw_log_fields(GW_LOG_INFO, "server", NULL, f, "listening");
    json_decref(f);
  }
  return 0;
}

static void listeners_close(gw_loop *lp) {
  for (int i = 0; i < 3; i++)
    if (lp->listeners[i].open) {
      lp->listeners[i].open = false;
      uv_close((uv_handle_t *)&lp->listeners[i].tcp, NULL);
    }
}

/* ---------- shutdown ---------- */

enum { CTL_DRAIN = 1, CTL_CLOSE_ALL = 2, CTL_CHECK = 4 };

/* Any thread: posts flags to lp's control handle (dropped once the loop
 * finished: it has nothing left to drain or close). */
static void ctl_send(gw_loop *lp, int flags) {
  gw_server *srv = lp->srv;
  uv_mutex_lock(&srv->ctl_mu);
  if (lp->ctl_open) {
    atomic_fetch_or(&lp->ctl_flags, flags);
    uv_async_send(&lp->ctl);
  }
  uv_mutex_unlock(&srv->ctl_mu);
}

/* Writer jobs still owe this loop a done callback (fire-and-forget writes
 * such as token last-use or a purge step): closing the port now would drop
 * them and leak their state. They are short; poll until they are in. */
static void on_port_wait(uv_timer_t *t) { loop_finish(t->data); }

/* The loop's drain is over (no connection left): once its store port owes
 * nothing, it stops its modules and closes its handles, and its uv_run
 * returns. The primary goes last: it holds the signal handlers (a second
 * SIGTERM still cuts every loop) and the process-wide jobs. */
static void loop_finish(gw_loop *lp) {
  gw_server *srv = lp->srv;
  if (lp->finished) return;
  if (lp->port && st_port_pending(lp->port) > 0) {
    uv_timer_start(&lp->drain_timer, on_port_wait, 5, 0);
    return;
  }
  if (lp->index == 0 && atomic_load(&srv->loops_finished) < srv->nloops - 1) {
    uv_timer_stop(&lp->drain_timer); /* the others' CTL_CHECK brings us back */
    return;
  }
  lp->finished = true;
  uv_mutex_lock(&srv->ctl_mu);
  lp->ctl_open = false;
  uv_mutex_unlock(&srv->ctl_mu);
  uv_close((uv_handle_t *)&lp->ctl, NULL);
  uv_close((uv_handle_t *)&lp->drain_timer, NULL);
  if (lp->index == 0) {
    /* closing the handlers restores the default action: a further signal
     * while the process closes its store would kill it instead of letting
     * it exit 0; blocked, it waits and goes with the process */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    gw_stamp_timer_stop(srv);
  }
  gw_modules_loop_stop(srv->modules, lp);
  if (lp->port) {
    st_port_close(lp->port, NULL, NULL);
    lp->port = NULL;
  }
  if (lp->index == 0) {
    GW_LOG(GW_LOG_INFO, "server", NULL, "drained; exiting");
  } else {
    atomic_fetch_add(&srv->loops_finished, 1);
    ctl_send(srv->lp, CTL_CHECK);
  }
}

static void on_drain_timeout(uv_timer_t *t) {
  gw_loop *lp = t->data;
  GW_LOG(GW_LOG_WARN, "server", NULL, "shutdown_timeout_ms reached with %d connection(s) open on loop %d; closing them",
         gw_http_conns(&lp->http), lp->index);
  gw_http_close_all(&lp->http);
}

/* SIGTERM reached this loop: stop accepting, close idle connections, let
 * the busy ones finish for up to shutdown_timeout_ms. */
static void loop_drain(gw_loop *lp) {
  gw_server *srv = lp->srv;
  if (lp->draining) return;
  lp->draining = true;
  listeners_close(lp);
  gw_http_drain(&lp->http);
  gw_modules_drain(srv->modules, lp);
  if (gw_http_conns(&lp->http) == 0) loop_finish(lp);
  else uv_timer_start(&lp->drain_timer, on_drain_timeout, (uint64_t)srv->cfg.shutdown_timeout_ms, 0);
}

static void on_ctl(uv_async_t *a) {
  gw_loop *lp = a->data;
  int f = atomic_exchange(&lp->ctl_flags, 0);
  if (f & CTL_DRAIN) loop_drain(lp);
  if (f & CTL_CLOSE_ALL) gw_http_close_all(&lp->http);
  if ((f & CTL_CHECK) && lp->draining && gw_http_conns(&lp->http) == 0) loop_finish(lp);
}

static void on_stop_signal(uv_signal_t *s, int signum) {
  gw_server *srv = s->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (atomic_exchange(&srv->shutting_down, true)) {
    GW_LOG(GW_LOG_WARN, "server", NULL, "second %s: closing every connection now", name);
    for (int i = 1; i < srv->nloops; i++) ctl_send(srv->loops[i], CTL_CLOSE_ALL);
    gw_http_close_all(&srv->lp->http);
    return;
  }
  int64_t open = atomic_load_explicit(&srv->conns_active, memory_order_relaxed);
  GW_LOG(GW_LOG_INFO, "server", NULL, "%s: draining %lld connection(s) on %d loop(s), up to %lld ms", name,
         (long long)open, srv->nloops, (long long)srv->cfg.shutdown_timeout_ms);
  for (int i = 1; i < srv->nloops; i++) ctl_send(srv->loops[i], CTL_DRAIN);
  loop_drain(srv->lp);
}

static void on_hup(uv_signal_t *s, int signum) {
  gw_server *srv = s->data;
  (void)signum;
  if (!*srv->cfg.tls_listen) {
    GW_LOG(GW_LOG_INFO, "server", NULL, "SIGHUP: nothing to reload (no tls_listen)");
    return;
  }
  gw_tls_ctx *n = NULL, *old;
  char err[512];
  if (gw_tls_ctx_load(srv->cfg.tls_cert_file, srv->cfg.tls_key_file, &n, err, sizeof err) != 0) {
    GW_LOG(GW_LOG_ERROR, "tls", NULL, "SIGHUP: %s; keeping the current certificate", err);
    return;
  }
  uv_mutex_lock(&srv->tls_mu);
  old = srv->tls;
  srv->tls = n;
  uv_mutex_unlock(&srv->tls_mu);
  gw_tls_ctx_free(old); /* live connections hold their own reference */
  GW_LOG(GW_LOG_INFO, "tls", NULL, "SIGHUP: reloaded certificate %s", srv->cfg.tls_cert_file);
}

/* ---------- the data directory and operator token ---------- */

static int ensure_dir(const char *path) {
  if (mkdir(path, 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  }
  GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot create data directory %s: %s", path, strerror(errno));
  return -1;
}

static int dir_trusted(const char *path, uid_t me, char *err, size_t cap) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno == ENOENT) return 0;
    snprintf(err, cap, "cannot stat %s: %s", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(sb.st_mode)) {
    snprintf(err, cap, "%s is not a directory", path);
    return -1;
  }
  if (sb.st_mode & S_IWOTH) {
    snprintf(err, cap,
             "%s is writable by every user (mode %03o): anyone could replace the operator token, the key or the "
             "store in it; refusing to use it. Run: chmod o-w %s, or give --data a directory inside it (mcpgate "
             "creates it 0700: a tmpfs or an emptyDir volume)",
             path, (unsigned)(sb.st_mode & 0777), path);
    return -1;
  }
  if (sb.st_uid != me && !(sb.st_uid == 0 && me != 0)) {
    if (me == 0)
      snprintf(err, cap,
               "%s belongs to uid %u, and this runs as root: files root made in it (lock files, a key, a token) "
               "would be root's, and mcpgate run as uid %u could not open them. Run it as that user (sudo -u "
               "'#%u' mcpgate ...)",
               path, (unsigned)sb.st_uid, (unsigned)sb.st_uid, (unsigned)sb.st_uid);
    else
      snprintf(err, cap,
               "%s belongs to uid %u, not to uid %u that runs mcpgate: its owner could replace what mcpgate keeps "
               "in it; refusing to use it. Run mcpgate as its owner (uid %u), or, if the directory is meant to be "
               "this user's, chown it",
               path, (unsigned)sb.st_uid, (unsigned)me, (unsigned)sb.st_uid);
    return -1;
  }
  if ((sb.st_mode & S_IWGRP) && !err[0])
    snprintf(err, cap,
             "%s is writable by its group (mode %03o): every member could replace what mcpgate keeps in it; chmod "
             "g-w it unless that group is the service's own",
             path, (unsigned)(sb.st_mode & 0777));
  return 0;
}

int gw_data_dir_trusted(const char *data_dir, char *err, size_t cap) {
  err[0] = 0;
  uid_t me = geteuid();
  char sub[4096];
  if (dir_trusted(data_dir, me, err, cap)) return -1;
  snprintf(sub, sizeof sub, "%s/store", data_dir);
  if (dir_trusted(sub, me, err, cap)) return -1;
  snprintf(sub, sizeof sub, "%s/audit", data_dir);
  return dir_trusted(sub, me, err, cap);
}

/* The operator token: MCPGATE_ADMIN_TOKEN, else admin_token_file (created
 * 0600 with a fresh token on first start). Only its hash stays in memory. */
static int load_admin_token(gw_server *srv) {
  const char *env = getenv("MCPGATE_ADMIN_TOKEN");
  char tok[256];
  if (env && *env) {
    if (strlen(env) < 16) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "MCPGATE_ADMIN_TOKEN is too short (16 characters minimum)");
      return -1;
    }
    st_token_hash(env, strlen(env), srv->admin_token_hash);
    srv->have_admin_token = true;
    GW_LOG(GW_LOG_INFO, "server", NULL, "operator token: from MCPGATE_ADMIN_TOKEN");
    return 0;
  }
  const char *path = srv->cfg.admin_token_file;
  FILE *f = fopen(path, "r");
  if (!f && errno != ENOENT) {
    /* there but not readable (permissions, a directory on the way): not
     * a missing file to create, which would fail with "File exists" */
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot read operator token file %s: %s", path, strerror(errno));
    return -1;
  }
  if (f) {
    /* The token is every tenant's admin: a file any local user may read
     * gives it away (as the master key's would; that one is refused too).
     * Group access is allowed, with a warning: a Prometheus in the file's
     * group scrapes /metrics with it (credentials_file). */
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot stat operator token file %s: %s", path, strerror(errno));
      fclose(f);
      return -1;
    }
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
      /* its owner could write another token into it */
      GW_LOG(GW_LOG_ERROR, "server", NULL,
             "operator token file %s belongs to uid %u, neither root nor uid %u that runs mcpgate; refusing to "
             "start. Run: chown %u %s",
             path, (unsigned)sb.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
      fclose(f);
      return -1;
    }
    if (sb.st_mode & 007) {
      GW_LOG(GW_LOG_ERROR, "server", NULL,
             "operator token file %s is accessible by others (mode %03o); refusing to start. Run: chmod 600 %s", path,
             (unsigned)(sb.st_mode & 0777), path);
      fclose(f);
      return -1;
    }
    if (sb.st_mode & 070)
      GW_LOG(GW_LOG_WARN, "server", NULL,
             "operator token file %s is accessible by its group (mode %03o): every member can administer every "
             "tenant; chmod 600 it unless that group is meant to (a Prometheus scraping /metrics)",
             path, (unsigned)(sb.st_mode & 0777));
    size_t n = fread(tok, 1, sizeof tok - 1, f);
    fclose(f);
    tok[n] = 0;
    while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ')) tok[--n] = 0;
    if (n < 16) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "operator token file %s is empty or too short", path);
      return -1;
    }
  } else {
    if (st_token_new("mga_", tok, sizeof tok) != 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot create operator token file %s: %s", path,
             strerror(errno));
      return -1;
    }
    size_t n = strlen(tok);
    int ok = write(fd, tok, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot write operator token file %s", path);
      unlink(path);
      return -1;
    }
    GW_LOG(GW_LOG_INFO, "server", NULL, "generated operator token in %s (mode 0600)", path);
  }
  st_token_hash(tok, strlen(tok), srv->admin_token_hash);
  OPENSSL_cleanse(tok, sizeof tok);
  srv->have_admin_token = true;
  GW_LOG(GW_LOG_INFO, "server", NULL, "operator token: %s", path);
  return 0;
}

int gw_data_lock(const char *data_dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/mcpgate.lock", data_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
  }
  /* whoever held the lock before is gone: an admin.url it left (killed:
   * no exit to remove it) names a port that may be anyone's now, and the
   * CLI believes the file while the lock is held — by this process from
   * now on, which writes its own once bound (serve) or none (key rotate,
   * audit prune) */
  snprintf(path, sizeof path, "%s/admin.url", data_dir);
  unlink(path);
  return fd;
}

int gw_data_locked(const char *data_dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/mcpgate.lock", data_dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  /* the holder has it exclusively: a shared lock we get means none does */
  int held = flock(fd, LOCK_SH | LOCK_NB) != 0;
  int e = errno;
  close(fd);
  if (held && e != EWOULDBLOCK) return -e;
  return held;
}

/* <data>/admin.url: where this server answers /admin/v1, for the CLI on
 * the same machine (gw_data_admin_url). Written once the listeners are
 * bound (the port resolved), removed at exit. Not a secret; the data
 * directory is the server's own. */
static void admin_url_path(const gw_server *srv, char *out, size_t cap) {
  snprintf(out, cap, "%s/admin.url", srv->cfg.data);
}

static void admin_url_write(gw_server *srv) {
  const gw_listener *l = &srv->lp->listeners[*srv->cfg.admin_listen ? GW_LISTENER_ADMIN : GW_LISTENER_HTTP];
  const char *a = l->addr;
  char url[160], path[4200], tmp[4300];
  /* a wildcard address is where it listens: reach it over loopback */
  if (!strncmp(a, "0.0.0.0:", 8)) snprintf(url, sizeof url, "http://127.0.0.1:%s\n", a + 8);
  else if (!strncmp(a, "[::]:", 5)) snprintf(url, sizeof url, "http://[::1]:%s\n", a + 5);
  else snprintf(url, sizeof url, "http://%s\n", a);
  admin_url_path(srv, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write(fd, url, strlen(url)) == (ssize_t)strlen(url);
  if (fd >= 0) close(fd);
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    GW_LOG(GW_LOG_WARN, "server", NULL, "cannot write %s: the CLI on this machine needs --server to find the admin API",
           path);
  }
}

/* Whether what is in data_dir may be believed by this user: nobody but
 * its owner (or root) could have written it. The directory is not
 * writable by its group or others, and is this user's or root's — or,
 * another user's (root running the CLI on the service user's
 * directory), one that only root or this user could have put there:
 * every directory above it theirs and writable by no one else (a
 * directory someone made in /tmp, or in their own home, is refused). */
static int dir_believed(const char *data_dir, uid_t me, struct stat *dsb, char *why, size_t whycap) {
  if (stat(data_dir, dsb) != 0 || !S_ISDIR(dsb->st_mode)) {
    snprintf(why, whycap, "%s is not a directory", data_dir);
    return -1;
  }
  if (dsb->st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(why, whycap, "%s is writable by others than its owner (mode %03o): where its server answers cannot be "
             "believed", data_dir, (unsigned)(dsb->st_mode & 0777));
    return -1;
  }
  if (dsb->st_uid == me || dsb->st_uid == 0) return 0;
  char *real = realpath(data_dir, NULL);
  if (!real) {
    snprintf(why, whycap, "cannot resolve %s: %s", data_dir, strerror(errno));
    return -1;
  }
  int rc = 0;
  for (char *slash = strrchr(real, '/'); slash; slash = strrchr(real, '/')) {
    if (slash == real) slash[1] = 0; /* "/" itself, last */
    else *slash = 0;
    struct stat sb;
    if (stat(real, &sb) != 0 || (sb.st_uid != 0 && sb.st_uid != me) || (sb.st_mode & (S_IWGRP | S_IWOTH))) {
      snprintf(why, whycap, "%s belongs to uid %u and sits in %s, which others than root may write to: where its "
               "server answers cannot be believed", data_dir, (unsigned)dsb->st_uid, real);
      rc = -1;
      break;
    }
    if (!strcmp(real, "/")) break;
  }
  free(real);
  return rc;
}

int gw_data_admin_url(const char *data_dir, char *url, size_t cap, char *why, size_t whycap) {
  char path[4200];
  int held = gw_data_locked(data_dir);
  if (held < 0) {
    snprintf(why, whycap, "cannot tell whether an mcpgate runs on %s (%s/mcpgate.lock: %s)", data_dir, data_dir,
             strerror(-held));
    return -1;
  }
  if (!held) {
    snprintf(why, whycap, "no mcpgate is running on %s (its lock is free)", data_dir);
    return -1;
  }
  /* a lock anyone could hold, in a directory anyone could fill, proves
   * nothing: the file is believed only from a directory only its owner
   * could write, and only when that owner wrote it */
  struct stat dsb, fsb;
  if (dir_believed(data_dir, geteuid(), &dsb, why, whycap) != 0) return -1;
  snprintf(path, sizeof path, "%s/admin.url", data_dir);
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    snprintf(why, whycap, "the process holding %s's lock has not said where it answers (%s: %s; a server still "
             "starting, or an offline command)", data_dir, path, strerror(errno));
    return -1;
  }
  ssize_t n = -1;
  if (fstat(fd, &fsb) == 0 && S_ISREG(fsb.st_mode) && fsb.st_uid == dsb.st_uid && !(fsb.st_mode & 022))
    n = read(fd, url, cap - 1);
  close(fd);
  if (n < 0) {
    snprintf(why, whycap, "%s is not the server's (its owner or mode): where it answers cannot be believed", path);
    return -1;
  }
  url[n] = 0;
  while (n && (url[n - 1] == '\n' || url[n - 1] == '\r' || url[n - 1] == ' ')) url[--n] = 0;
  if (!n || strncmp(url, "http://", 7) || strpbrk(url, " \t\r\n")) {
    snprintf(why, whycap, "the mcpgate running on %s left no usable %s", data_dir, path);
    return -1;
  }
  return 0;
}

/* ---------- a damaged store at start ---------- */

/* st_open and st_verify read every page of the store at start. A page
 * that sends LMDB outside the file (garbage where a size or an offset
 * was) ends in SIGBUS or SIGSEGV inside LMDB, which killed the process
 * without a word. While they run — and only then: a fault anywhere else
 * is not a damaged store — a handler writes one log line prepared before
 * (write(2) alone: async-signal-safe), puts the default action back and
 * raises the signal again: the process still dies of it, and dumps core
 * where that is enabled. A signal's disposition is the process's: these
 * statics are set on the main thread at start, never nested. */
static const int fault_sigs[2] = {SIGBUS, SIGSEGV};
static char fault_line[2][2048];
static size_t fault_len[2];
static struct sigaction fault_was[2];
static bool fault_guarded;

static void on_store_fault(int sig) {
  int i = sig == SIGBUS ? 0 : 1;
  if (fault_len[i]) {
    ssize_t w = write(STDERR_FILENO, fault_line[i], fault_len[i]);
    (void)w;
  }
  signal(sig, SIG_DFL); /* SA_RESETHAND did already; a second fault must not loop */
  raise(sig);           /* pending until this returns: then the default action */
}

void gw_store_guard_begin(const char *dir) {
  for (int i = 0; i < 2; i++) {
    char msg[1500];
    snprintf(msg, sizeof msg,
             "the store's LMDB file %.1024s/data.mdb is most likely damaged (reading it through crashed the process "
             "with %s: a damaged page sent LMDB outside the file): restore it from a backup (mcpgate backup writes "
             "one), or move it away to start a new, empty store. The process ends with that signal (a core dump, "
             "where enabled, shows where)",
             dir, fault_sigs[i] == SIGBUS ? "SIGBUS" : "SIGSEGV");
    fault_len[i] = gw_log_prepare(GW_LOG_ERROR, "store", msg, fault_line[i], sizeof fault_line[i]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_store_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(fault_sigs[i], &sa, &fault_was[i]);
  }
  fault_guarded = true;
}

void gw_store_guard_end(void) {
  if (!fault_guarded) return;
  for (int i = 0; i < 2; i++) sigaction(fault_sigs[i], &fault_was[i], NULL);
  fault_guarded = false;
}

/* ---------- serve ---------- */

/* max_connections 0 ("auto"): raise the soft descriptor limit to the hard
 * one and take three quarters of it for client connections; the rest is
 * for upstream connections (in-flight calls, upstream streams), the store,
 * listeners and the log. An explicit value is kept as given, but the limit
 * is still raised (a value over it would fail at accept with EMFILE). */
static void descriptor_budget(gw_config *c) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    if (c->max_connections == 0) c->max_connections = 1024;
    return;
  }
  rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
  }
  if (c->max_connections == 0) {
    rlim_t n = rl.rlim_cur == RLIM_INFINITY ? 1000000 : rl.rlim_cur;
    int64_t auto_max = (int64_t)(n - n / 4);
    if (auto_max > 1000000) auto_max = 1000000;
    if (auto_max < 16) auto_max = 16;
    c->max_connections = auto_max;
    GW_LOG(GW_LOG_INFO, "server", NULL,
           "max_connections %lld: three quarters of the descriptor limit %llu (the rest for upstream "
           "connections and the store)",
           (long long)auto_max, (unsigned long long)n);
  } else if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)c->max_connections > rl.rlim_cur - rl.rlim_cur / 4) {
    GW_LOG(GW_LOG_WARN, "server", NULL,
           "max_connections %lld leaves few of the %llu descriptors for upstream connections and the store; "
           "raise the limit (ulimit -n) or lower max_connections",
           (long long)c->max_connections, (unsigned long long)rl.rlim_cur);
  }
}

/* The upstream connection budget (gateway/out/outbound.h
 * gw_out_budget_set): what the descriptor limit leaves past max_connections
 * and a reserve (the store's environments, listeners, each loop's own
 * descriptors, the log), half of it for transfers in flight and a quarter
 * for idle connections kept for reuse, spread over the loops' two paths;
 * the last quarter is slack (libcurl's resolver pipes, connections closing).
 * upstream_connections set: that many transfers, the idle cap as for auto. */
static void upstream_budget(gw_config *c, int nloops) {
  struct rlimit rl;
  int64_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) n = rl.rlim_cur == RLIM_INFINITY ? 1000000 : (int64_t)rl.rlim_cur;
  int64_t left = n - c->max_connections - 64 - 8 * (int64_t)nloops;
  if (left < 32) left = 32;
  int64_t idle = left / 4 / (2 * (int64_t)nloops);
  if (idle < 1) idle = 1;
  if (idle > 256) idle = 256;
  bool auto_set = c->upstream_connections == 0;
  if (auto_set) c->upstream_connections = left / 2 < 16 ? 16 : left / 2;
  gw_out_budget_set((int)c->upstream_connections, (int)idle);
  GW_LOG(GW_LOG_INFO, "server", NULL,
         "upstream_connections %lld%s (one tenant: at most %lld, or %lld once half are taken); %lld idle upstream "
         "connections kept per loop and path",
         (long long)c->upstream_connections,
         auto_set ? ": half of the descriptors max_connections leaves, less a reserve" : "",
         (long long)(c->upstream_connections / 4 > 0 ? c->upstream_connections / 4 : 1),
         (long long)(c->upstream_connections / 16 > 0 ? c->upstream_connections / 16 : 1), (long long)idle);
}

/* connections_per_address 0: a quarter of max_connections (at least 16),
 * so that no one address takes every connection. */
static void address_share(gw_config *c) {
  if (c->connections_per_address) return;
  int64_t q = c->max_connections / 4;
  c->connections_per_address = q < 16 ? 16 : q;
  GW_LOG(GW_LOG_INFO, "server", NULL,
         "connections_per_address %lld: a quarter of max_connections (trusted_proxies are not counted)",
         (long long)c->connections_per_address);
}

/* The store keeps its reserve to a quarter of its map (store.h), so a
 * small map still takes ordinary writes. Lowered, it is said as
 * max_connections says what it chose: a warning when the operator set
 * store_reserve, information when the default met a small map. */
/* LMDB opens a file larger than the map asked for with a map exactly as
 * large as the file: a store_map_size lowered below what the store's file
 * already holds started "ready" with no room to grow (writes answered 507
 * once the free pages were used), and the setting said something else.
 * Refused, saying what to set (found by the operations review). A store
 * that filled its map (the file as large as the map, not larger) is not
 * this: it starts, and serves what a full store serves. Checked on the
 * file before the store is opened: the open may migrate (write). The file
 * grows page by page as LMDB uses them (no MDB_WRITEMAP): its size is
 * what the store holds. */
static int map_fits(gw_server *srv, const char *dir) {
  char file[4200];
  struct stat sb;
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  if (stat(file, &sb) != 0 || (uint64_t)sb.st_size <= (uint64_t)srv->cfg.store_map_size) return 0;
  GW_LOG(GW_LOG_ERROR, "store", NULL,
         "store_map_size (%lld bytes) is smaller than the store's file (%llu bytes), and a map cannot be smaller "
         "than its file: set store_map_size to at least %llu bytes (twice the file leaves room to grow), or "
         "compact the store first (mcpgate backup, then restore the copy)",
         (long long)srv->cfg.store_map_size, (unsigned long long)sb.st_size, (unsigned long long)sb.st_size * 2);
  return -1;
}

static void reserve_said(gw_server *srv) {
  st_stats s;
  st_stats_get(srv->store, &s);
  if (srv->cfg.store_reserve <= 0 || s.map_reserve >= (uint64_t)srv->cfg.store_reserve) return;
  bool given = gw_config_given(&srv->cfg, "store_reserve");
  GW_LOG(given ? GW_LOG_WARN : GW_LOG_INFO, "store", NULL,
         "store_reserve (%lld bytes%s) is more than a quarter of the store's map (store_map_size, %llu bytes): "
         "using %llu bytes, so that ordinary writes keep three quarters of the map; raise store_map_size%s",
         (long long)srv->cfg.store_reserve, given ? "" : ", the default", (unsigned long long)s.map_size,
         (unsigned long long)s.map_reserve, given ? " or lower store_reserve" : " to keep the default");
}

/* A master key inside the data directory travels with every copy of it
 * (a volume snapshot, a disk backup) beside the secrets it seals: said at
 * every start while it sits there, not only at the start that created it
 * (the store says that one itself: existed is false then). Paths are
 * compared resolved, so "./data" and a symlink into it count. */
static void master_key_place_said(const gw_server *srv, bool existed) {
  if (!existed) return;
  char *key = realpath(srv->cfg.master_key_file, NULL), *data = realpath(srv->cfg.data, NULL);
  size_t dl = data ? strlen(data) : 0;
  if (key && data && !strncmp(key, data, dl) && (dl == 1 || key[dl] == '/'))
    GW_LOG(GW_LOG_WARN, "store", NULL,
           "master key file %s is inside the data directory %s: every copy of the data directory holds the key "
           "beside the secrets it seals; in production keep it elsewhere (master_key_file) and back it up "
           "separately",
           srv->cfg.master_key_file, srv->cfg.data);
  free(key);
  free(data);
}

/* workers 0: one loop per CPU the process may run on. */
static int worker_count(const gw_config *c) {
  if (c->workers > 0) return (int)c->workers;
  unsigned n = uv_available_parallelism();
  return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* Sets up loop lp (on the main thread, before any loop runs): its libuv
 * loop, HTTP state, store port, module state, listeners, control handle. */
static int loop_open(gw_server *srv, gw_loop *lp) {
  if (RAND_bytes((unsigned char *)lp->rng, sizeof lp->rng) != 1) return -1;
  if (uv_loop_init(&lp->loop) != 0) return -1;
  lp->loop.data = lp;
  host_fill(lp);
  gw_http_init(&lp->http, &lp->loop, lp, &lp->host, srv->router);
  uv_async_init(&lp->loop, &lp->ctl, on_ctl);
  lp->ctl.data = lp;
  lp->ctl_open = true;
  uv_timer_init(&lp->loop, &lp->drain_timer);
  lp->drain_timer.data = lp;
  if (st_port_open(srv->store, &lp->loop, &lp->port) != 0) return -1;
  if (gw_modules_loop_start(srv->modules, lp) != 0) return -1;
  if (listener_open(lp, GW_LISTENER_HTTP, srv->cfg.listen) != 0) return -1;
  if (*srv->cfg.tls_listen && listener_open(lp, GW_LISTENER_HTTPS, srv->cfg.tls_listen) != 0) return -1;
  if (*srv->cfg.admin_listen && listener_open(lp, GW_LISTENER_ADMIN, srv->cfg.admin_listen) != 0) return -1;
  return 0;
}

/* A loop that was (partly) opened and never ran, or ran and finished:
 * close what is left and let its close callbacks run. Main thread. */
static void loop_close(gw_server *srv, gw_loop *lp) {
  if (!lp->loop.data) return; /* never initialised */
  if (!lp->finished) {
    listeners_close(lp);
    gw_modules_loop_stop(srv->modules, lp);
    if (lp->port) st_port_close(lp->port, NULL, NULL);
    lp->port = NULL;
    uv_mutex_lock(&srv->ctl_mu);
    lp->ctl_open = false;
    uv_mutex_unlock(&srv->ctl_mu);
    if (!uv_is_closing((uv_handle_t *)&lp->ctl)) uv_close((uv_handle_t *)&lp->ctl, NULL);
    if (!uv_is_closing((uv_handle_t *)&lp->drain_timer)) uv_close((uv_handle_t *)&lp->drain_timer, NULL);
    if (lp->index == 0) gw_stamp_timer_stop(srv);
    lp->finished = true;
  }
  uv_run(&lp->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&lp->loop) != 0)
    GW_LOG(GW_LOG_WARN, "server", NULL, "loop %d closed with handles still open", lp->index);
}

/* Loops 1..N-1: run until drained; what the thread's pools kept goes
 * with it. */
static void loop_thread(void *arg) {
  gw_loop *lp = arg;
  /* named for top -H, perf and the benches' per-thread CPU (15 chars max) */
  char name[16];
  snprintf(name, sizeof name, "mcpgate-loop%d", lp->index);
  pthread_setname_np(pthread_self(), name);
  uv_run(&lp->loop, UV_RUN_DEFAULT);
  gw_pool_thread_drain();
}

int gw_serve(gw_config *cfg, const gw_module *const *mods) {
  gw_server *srv = calloc(1, sizeof *srv);
  int code = 1, lockfd = -1, started = 0, nalloc = 0;
  bool inited = false;
  if (!srv) {
    gw_config_free(cfg);
    return 1;
  }
  srv->cfg = *cfg;
  memset(cfg, 0, sizeof *cfg);
  srv->modules = mods;
  srv->nrequest_done = gw_modules_request_done_hooks(mods, srv->request_done, GW_REQUEST_DONE_MAX);
  uv_mutex_init(&srv->tls_mu);
  uv_mutex_init(&srv->ctl_mu);
  gw_log_set_level((gw_log_level)gw_log_level_parse(srv->cfg.log_level));
  signal(SIGPIPE, SIG_IGN);
  /* SIGTERM, SIGINT and SIGHUP stay blocked until their handlers run: one
   * that arrives while the store opens or once "listening" is logged (a
   * supervisor stopping what it just started) waits for them instead of
   * killing the process by its default action. The threads started
   * meanwhile (store writer, audit) inherit the mask, so the primary loop
   * is the one that takes them. */
  sigset_t stop_sigs, sigs_was;
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGTERM);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, &sigs_was);
  descriptor_budget(&srv->cfg);
  address_share(&srv->cfg);
  /* libuv's thread pool runs the outbound DNS lookups and the heavy reads
   * (limits.h): more threads than heavy reads may hold, before the first
   * use fixes its size. The operator's UV_THREADPOOL_SIZE wins. */
  if (!getenv("UV_THREADPOOL_SIZE")) {
    char n[16];
    snprintf(n, sizeof n, "%d", GW_POOL_THREADS);
    setenv("UV_THREADPOOL_SIZE", n, 0);
  }
  srv->nloops = worker_count(&srv->cfg);
  upstream_budget(&srv->cfg, srv->nloops);
  if (!(srv->loops = calloc((size_t)srv->nloops, sizeof *srv->loops))) goto out;
  for (int i = 0; i < srv->nloops; i++, nalloc++) {
    if (!(srv->loops[i] = calloc(1, sizeof *srv->loops[i]))) goto out;
    srv->loops[i]->srv = srv;
    srv->loops[i]->index = i;
  }
  srv->lp = srv->loops[0];
  if (gw_trusted_parse(srv->cfg.trusted_proxies, &srv->trusted) != 0) goto out;
  if (parse_egress(srv) != 0) goto out;
  warn_unsafe_config(srv);
  {
    char err[1024];
    if (gw_config_check_files(&srv->cfg, err, sizeof err) != 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "%s", err);
      goto out;
    }
  }
  if (gw_limits_init(srv) != 0) goto out;
  if (!(srv->metrics = gw_metrics_new())) goto out;
  /* checked once it exists (made 0700 here when it did not): a check of
   * a path not yet there, then a creation that takes one found there,
   * would leave a window for someone else's directory */
  if (ensure_dir(srv->cfg.data) != 0) goto out;
  {
    char why[1024];
    if (gw_data_dir_trusted(srv->cfg.data, why, sizeof why) != 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "data directory: %s", why);
      goto out;
    }
    if (why[0]) GW_LOG(GW_LOG_WARN, "server", NULL, "data directory: %s", why);
  }
  if ((lockfd = gw_data_lock(srv->cfg.data)) < 0) {
    /* an unwritable directory is not "another process": say which */
    if (lockfd == -EWOULDBLOCK)
      GW_LOG(GW_LOG_ERROR, "server", NULL, "data directory %s is in use by another mcpgate process", srv->cfg.data);
    else
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot create %s/mcpgate.lock: %s (the data directory must be writable)",
             srv->cfg.data, strerror(-lockfd));
    goto out;
  }
  if (load_admin_token(srv) != 0) goto out;
  if (*srv->cfg.tls_listen) {
    char err[512];
    if (gw_tls_ctx_load(srv->cfg.tls_cert_file, srv->cfg.tls_key_file, &srv->tls, err, sizeof err) != 0) {
      GW_LOG(GW_LOG_ERROR, "tls", NULL, "%s", err);
      goto out;
    }
  }
  {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/store", srv->cfg.data);
    st_options so = {0};
    so.dir = dir;
    so.map_size = (size_t)srv->cfg.store_map_size;
    so.reserve = (size_t)srv->cfg.store_reserve;
    so.master_key_file = srv->cfg.master_key_file;
    so.key_check = true; /* a key file the store's secrets do not unseal under is refused */
    /* read transactions are per request, not per thread (MDB_NOTLS): each
     * loop holds a few at once, libuv's pool and the writer some more */
    so.max_readers = (unsigned)(126 + 8 * srv->nloops);
    so.log = gw_store_log;
    so.log_ctx = NULL;
    /* the modules' data steps of migrations (a module's records are its own) */
    st_upgrade ups[GW_UPGRADES_MAX];
    if (gw_modules_upgrades(mods, ups, GW_UPGRADES_MAX) < 0) {
      GW_LOG(GW_LOG_ERROR, "store", NULL, "more store upgrades than GW_UPGRADES_MAX");
      goto out;
    }
    so.upgrades = ups;
    /* opened and read through at once (st_verify), under the guard: a
     * damaged file is refused here with a word, not met by a request */
    bool key_existed = access(srv->cfg.master_key_file, F_OK) == 0;
    if (map_fits(srv, dir) != 0) goto out;
    gw_store_guard_begin(dir);
    int rc = st_open(&srv->store, &so);
    if (rc == 0) rc = st_verify(srv->store);
    gw_store_guard_end();
    if (rc != 0) {
      GW_LOG(GW_LOG_ERROR, "store", NULL, "cannot open the store in %s: %s", dir, st_strerror(rc));
      goto out;
    }
    reserve_said(srv);
    master_key_place_said(srv, key_existed);
    /* an older backup restored over the store brings back what was
     * revoked since: refused here, before anything serves it */
    if (gw_stamp_check(srv) != 0) goto out;
    /* module state first (hooks borrow it), then hooks, checks and purges
     * in the table's order: the order they run inside one transaction */
    inited = true;
    if (gw_modules_init(mods, srv) != 0 || gw_modules_store_init(mods, srv->store, srv) != 0) goto out;
    gw_stamp_record(srv);
  }
  for (int i = 0; mods[i]; i++)
    if (mods[i]->metrics && gw_metrics_add_render(srv->metrics, mods[i]->metrics) != 0) goto out;
  if (gw_router_new(*srv->cfg.admin_listen != 0, &srv->router) != 0) goto out;
  if (gw_modules_routes(mods, srv, srv->router) != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot set up the routes");
    goto out;
  }
  for (started = 0; started < srv->nloops; started++)
    if (loop_open(srv, srv->loops[started]) != 0) {
      started++; /* the failed one is closed with the others */
      goto out_loops;
    }
  if (srv->cfg.public_url_derived) {
    /* "http://<listen>" with port 0 would point nowhere: use the bound one */
    char *u = malloc(strlen(srv->lp->listeners[GW_LISTENER_HTTP].addr) + 8);
    if (u) {
      sprintf(u, "http://%s", srv->lp->listeners[GW_LISTENER_HTTP].addr);
      free(srv->cfg.public_url);
      srv->cfg.public_url = u;
    }
    /* a wildcard address is where the gateway listens, not where anyone
     * reaches it: every URL handed out would point nowhere */
    const char *host = srv->cfg.public_url + strlen("http://");
    if (!strncmp(host, "0.0.0.0:", 8) || !strncmp(host, "[::]:", 5))
      GW_LOG(GW_LOG_WARN, "server", NULL,
             "public_url is not set and listen is a wildcard address: the URLs the gateway hands out (OAuth "
             "discovery, sign-in, connect links, resource metadata) say %s, which no client can reach; set "
             "public_url (MCPGATE_PUBLIC_URL) to the address clients use",
             srv->cfg.public_url);
  }
  admin_url_write(srv);
  uv_loop_t *main_loop = &srv->lp->loop;
  uv_signal_init(main_loop, &srv->sig_term);
  uv_signal_init(main_loop, &srv->sig_int);
  uv_signal_init(main_loop, &srv->sig_hup);
  srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
  uv_signal_start(&srv->sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&srv->sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&srv->sig_hup, on_hup, SIGHUP);
  gw_stamp_timer_start(srv, main_loop);
  pthread_sigmask(SIG_SETMASK, &sigs_was, NULL); /* a signal that waited is taken now */
  /* the other loops' threads block the signals the primary handles */
  int running = 1;
  for (int i = 1; i < srv->nloops; i++) {
    gw_loop *lp = srv->loops[i];
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &was);
    int rc = uv_thread_create(&lp->thread, loop_thread, lp);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (rc != 0) {
      GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot start loop %d: %s", i, uv_strerror(rc));
      break;
    }
    running++;
  }
  if (running < srv->nloops) {
    /* the loops without a thread never ran: close them here and count
     * them finished (srv->nloops stays: running loops read it); the
     * running ones drain what they may have accepted meanwhile */
    for (int i = running; i < srv->nloops; i++) {
      loop_close(srv, srv->loops[i]);
      atomic_fetch_add(&srv->loops_finished, 1);
    }
    raise(SIGTERM);
  } else {
    GW_LOG(GW_LOG_INFO, "server", NULL, "mcpgate serving %s (data %s, %d loop%s)", srv->cfg.public_url,
           srv->cfg.data, srv->nloops, srv->nloops == 1 ? "" : "s");
    code = 0;
  }
  uv_run(main_loop, UV_RUN_DEFAULT);
  for (int i = 1; i < running; i++) uv_thread_join(&srv->loops[i]->thread);
  for (int i = 0; i < running; i++) loop_close(srv, srv->loops[i]);
  started = 0;
  gw_stamp_exit(srv); /* what the last interval wrote, recorded */
  {
    char path[4200];
    admin_url_path(srv, path, sizeof path);
    unlink(path); /* before the lock goes: while the file is there, this server answers at it */
  }
out_loops:
  /* a failed start: nothing ran; close what was opened */
  for (int i = 0; i < started; i++) loop_close(srv, srv->loops[i]);
out:
  if (srv->store) st_close(srv->store);
  if (inited) gw_modules_fini(mods, srv);
  gw_pool_thread_drain();
  gw_router_free(srv->router);
  gw_tls_ctx_free(srv->tls);
  gw_metrics_free(srv->metrics);
  gw_trusted_free(srv->trusted);
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++) gw_egress_free(srv->egress[lv]);
  gw_limits_free(srv);
  if (lockfd >= 0) close(lockfd);
  gw_config_free(&srv->cfg);
  for (int i = 0; i < nalloc; i++) free(srv->loops[i]);
  free(srv->loops);
  uv_mutex_destroy(&srv->tls_mu);
  uv_mutex_destroy(&srv->ctl_mu);
  free(srv);
  return code;
}
