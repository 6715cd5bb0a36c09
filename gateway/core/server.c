/* gateway/core/server.c — `mcpgate serve`: opens the data directory and store,
 * runs the module table (store hooks and checks, module state, routes,
 * metrics, per-loop state), binds listeners, handles signals (SIGTERM/
 * SIGINT drain, SIGHUP TLS reload) and runs the loop until the drain is
 * over. It is the HTTP layer's host (gw_http_host): limits from the
 * config, trusted proxies, request ids, the TLS context, connection and
 * request counts into the metrics. Knows no module by name.
 *
 * Shutdown: stop accepting, close idle connections, let in-flight requests
 * finish (their responses carry Connection: close) for up to
 * shutdown_timeout_ms, then cut what is left and exit 0. */
#include "gateway/core/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "gateway/core/metrics.h"
#include "gateway/core/module.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/tls.h"
#include "gateway/out/egress.h"
#include "gateway/out/outbound.h"
#include "store/store.h"
#include "store/token.h"

/* ---------- the operator token ---------- */

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

/* ---------- the HTTP layer's host ---------- */

static void finish(gw_server *srv);

/* One host per process; ctx is the loop (one today; with N loops each
 * loop's gw_http gets the same host and its own ctx). */
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

static gw_tls_ctx *host_tls(void *ctx) {
  gw_loop *lp = ctx;
  return lp->srv->tls;
}

static void host_conn_open(void *ctx) {
  gw_loop *lp = ctx;
  gw_metrics_conn(lp->srv->metrics, +1);
}

static void host_conn_rejected(void *ctx) {
  gw_loop *lp = ctx;
  gw_metrics_conn_rejected(lp->srv->metrics);
}

/* Finishes shutdown when the last connection is gone. */
static void host_conn_closed(void *ctx, bool counted) {
  gw_loop *lp = ctx;
  if (counted) gw_metrics_conn(lp->srv->metrics, -1);
  if (lp->srv->shutting_down && gw_http_conns(&lp->http) == 0) finish(lp->srv);
}

static void host_request_done(void *ctx, const gw_req *req, int rclass, int status, double secs) {
  gw_loop *lp = ctx;
  (void)req;
  gw_metrics_request(lp->srv->metrics, rclass, status, secs);
}

static void host_fill(gw_server *srv) {
  const gw_config *c = &srv->cfg;
  srv->http_host = (gw_http_host){
      .ctx = srv->lp,
      .limits = {c->max_connections, c->max_header_bytes, c->max_uri_bytes, c->max_body_bytes,
                 c->header_timeout_ms, c->body_timeout_ms, c->idle_timeout_ms, c->access_log},
      .trusted = host_trusted,
      .request_id = host_request_id,
      .tls = host_tls,
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

static int listener_open(gw_loop *lp, int kind, const char *hostport) {
  gw_listener *ls = &lp->listeners[kind];
  char host[256];
  int port;
  struct sockaddr_storage ss;
  if (gw_parse_hostport(hostport, host, sizeof host, &port) != 0) return -EINVAL;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot parse %s address %s (use an IP address)",
           listener_name(kind), hostport);
    return -EINVAL;
  }
  ls->lp = lp;
  ls->kind = kind;
  uv_tcp_init(&lp->loop, &ls->tcp);
  ls->tcp.data = ls;
  ls->open = true;
  int rc = uv_tcp_bind(&ls->tcp, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&ls->tcp, 1024, on_connection);
  if (rc != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot listen on %s (%s): %s", hostport,
           listener_name(kind), uv_strerror(rc));
    return rc;
  }
  int len = sizeof ss;
  uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&ss, &len);
  char ip[64] = "?";
  if (ss.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
    snprintf(ls->addr, sizeof ls->addr, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  } else {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
    snprintf(ls->addr, sizeof ls->addr, "[%s]:%d", ip,
             ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  }
  json_t *f = json_pack("{s:s,s:s}", "addr", ls->addr, "listener", listener_name(kind));
  gw_log_fields(GW_LOG_INFO, "server", NULL, f, "listening");
  json_decref(f);
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

/* Writer jobs still owe this loop a done callback (fire-and-forget writes
 * such as token last-use or a purge step): closing the port now would drop
 * them and leak their state. They are short; poll until they are in. */
static void on_port_wait(uv_timer_t *t) {
  gw_server *srv = t->data;
  if (st_port_pending(srv->lp->port) == 0) finish(srv);
}

static void finish(gw_server *srv) {
  gw_loop *lp = srv->lp;
  if (uv_is_closing((uv_handle_t *)&srv->drain_timer)) return;
  if (lp->port && st_port_pending(lp->port) > 0) {
    uv_timer_start(&srv->drain_timer, on_port_wait, 5, 5);
    return;
  }
  uv_close((uv_handle_t *)&srv->drain_timer, NULL);
  uv_close((uv_handle_t *)&srv->sig_term, NULL);
  uv_close((uv_handle_t *)&srv->sig_int, NULL);
  uv_close((uv_handle_t *)&srv->sig_hup, NULL);
  gw_modules_loop_stop(srv->modules, lp);
  if (lp->port) {
    st_port_close(lp->port, NULL, NULL);
    lp->port = NULL;
  }
  GW_LOG(GW_LOG_INFO, "server", NULL, "drained; exiting");
}

static void on_drain_timeout(uv_timer_t *t) {
  gw_server *srv = t->data;
  GW_LOG(GW_LOG_WARN, "server", NULL, "shutdown_timeout_ms reached with %d connection(s) open; closing them",
         gw_http_conns(&srv->lp->http));
  gw_http_close_all(&srv->lp->http);
}

static void on_stop_signal(uv_signal_t *s, int signum) {
  gw_server *srv = s->data;
  if (srv->shutting_down) {
    GW_LOG(GW_LOG_WARN, "server", NULL, "second %s: closing every connection now",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
    gw_http_close_all(&srv->lp->http);
    return;
  }
  srv->shutting_down = true;
  gw_loop *lp = srv->lp;
  lp->draining = true;
  GW_LOG(GW_LOG_INFO, "server", NULL, "%s: draining %d connection(s), up to %lld ms",
         signum == SIGINT ? "SIGINT" : "SIGTERM", gw_http_conns(&lp->http), (long long)srv->cfg.shutdown_timeout_ms);
  listeners_close(lp);
  gw_http_drain(&lp->http);
  gw_modules_drain(srv->modules, lp);
  if (gw_http_conns(&lp->http) == 0) {
    finish(srv);
    return;
  }
  uv_timer_start(&srv->drain_timer, on_drain_timeout, (uint64_t)srv->cfg.shutdown_timeout_ms, 0);
}

static void on_hup(uv_signal_t *s, int signum) {
  gw_server *srv = s->data;
  if (!*srv->cfg.tls_listen) {
    GW_LOG(GW_LOG_INFO, "server", NULL, "SIGHUP: nothing to reload (no tls_listen)");
    return;
  }
  gw_tls_ctx *n = NULL;
  char err[512];
  if (gw_tls_ctx_load(srv->cfg.tls_cert_file, srv->cfg.tls_key_file, &n, err, sizeof err) != 0) {
    GW_LOG(GW_LOG_ERROR, "tls", NULL, "SIGHUP: %s; keeping the current certificate", err);
    return;
  }
  gw_tls_ctx_free(srv->tls); /* live connections hold their own reference */
  srv->tls = n;
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
  if (f) {
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
  if (fd < 0) return -1;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return -1;
  }
  return fd;
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

int gw_serve(gw_config *cfg, const gw_module *const *mods) {
  gw_server *srv = calloc(1, sizeof *srv);
  gw_loop *lp = calloc(1, sizeof *lp);
  int code = 1, lockfd = -1;
  bool inited = false;
  if (!srv || !lp) {
    free(srv);
    free(lp);
    gw_config_free(cfg);
    return 1;
  }
  srv->cfg = *cfg;
  memset(cfg, 0, sizeof *cfg);
  srv->modules = mods;
  srv->lp = lp;
  lp->srv = srv;
  gw_log_set_level((gw_log_level)gw_log_level_parse(srv->cfg.log_level));
  signal(SIGPIPE, SIG_IGN);
  descriptor_budget(&srv->cfg);
  if (RAND_bytes((unsigned char *)lp->rng, sizeof lp->rng) != 1) goto out;
  if (gw_trusted_parse(srv->cfg.trusted_proxies, &srv->trusted) != 0) goto out;
  if (parse_egress(srv) != 0) goto out;
  if (!(srv->metrics = gw_metrics_new())) goto out;
  if (ensure_dir(srv->cfg.data) != 0) goto out;
  if ((lockfd = gw_data_lock(srv->cfg.data)) < 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL,
           "data directory %s is in use by another mcpgate process (or %s/mcpgate.lock cannot be created)",
           srv->cfg.data, srv->cfg.data);
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
    so.master_key_file = srv->cfg.master_key_file;
    so.log = gw_store_log;
    so.log_ctx = NULL;
    int rc = st_open(&srv->store, &so);
    if (rc != 0) {
      GW_LOG(GW_LOG_ERROR, "store", NULL, "cannot open the store in %s: %s", dir, st_strerror(rc));
      goto out;
    }
    /* module state first (hooks borrow it), then hooks, checks and purges
     * in the table's order: the order they run inside one transaction */
    inited = true;
    if (gw_modules_init(mods, srv) != 0 || gw_modules_store_init(mods, srv->store, srv) != 0) goto out;
  }
  for (int i = 0; mods[i]; i++)
    if (mods[i]->metrics && gw_metrics_add_render(srv->metrics, mods[i]->metrics) != 0) goto out;
  if (gw_router_new(*srv->cfg.admin_listen != 0, &srv->router) != 0) goto out;
  if (gw_modules_routes(mods, srv, srv->router) != 0) {
    GW_LOG(GW_LOG_ERROR, "server", NULL, "cannot set up the routes");
    goto out;
  }
  if (uv_loop_init(&lp->loop) != 0) goto out;
  host_fill(srv);
  gw_http_init(&lp->http, &lp->loop, lp, &srv->http_host, srv->router);
  if (st_port_open(srv->store, &lp->loop, &lp->port) != 0) goto out_loop;
  if (gw_modules_loop_start(mods, lp) != 0) goto out_loop;
  if (listener_open(lp, GW_LISTENER_HTTP, srv->cfg.listen) != 0) goto out_loop;
  if (srv->cfg.public_url_derived) {
    /* "http://<listen>" with port 0 would point nowhere: use the bound one */
    char *u = malloc(strlen(lp->listeners[GW_LISTENER_HTTP].addr) + 8);
    if (u) {
      sprintf(u, "http://%s", lp->listeners[GW_LISTENER_HTTP].addr);
      free(srv->cfg.public_url);
      srv->cfg.public_url = u;
    }
  }
  if (*srv->cfg.tls_listen && listener_open(lp, GW_LISTENER_HTTPS, srv->cfg.tls_listen) != 0)
    goto out_loop;
  if (*srv->cfg.admin_listen && listener_open(lp, GW_LISTENER_ADMIN, srv->cfg.admin_listen) != 0)
    goto out_loop;
  uv_signal_init(&lp->loop, &srv->sig_term);
  uv_signal_init(&lp->loop, &srv->sig_int);
  uv_signal_init(&lp->loop, &srv->sig_hup);
  uv_timer_init(&lp->loop, &srv->drain_timer);
  srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv->drain_timer.data = srv;
  uv_signal_start(&srv->sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&srv->sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&srv->sig_hup, on_hup, SIGHUP);
  GW_LOG(GW_LOG_INFO, "server", NULL, "mcpgate serving %s (data %s)", srv->cfg.public_url, srv->cfg.data);
  uv_run(&lp->loop, UV_RUN_DEFAULT);
  code = 0;
out_loop:
  if (code != 0) {
    /* failed start: close what was opened, then let the loop finish */
    listeners_close(lp);
    gw_modules_loop_stop(mods, lp);
    if (lp->port) st_port_close(lp->port, NULL, NULL);
    lp->port = NULL;
    uv_run(&lp->loop, UV_RUN_DEFAULT);
  }
  if (uv_loop_close(&lp->loop) != 0)
    GW_LOG(GW_LOG_WARN, "server", NULL, "loop closed with handles still open");
out:
  if (srv->store) st_close(srv->store);
  if (inited) gw_modules_fini(mods, srv);
  gw_router_free(srv->router);
  gw_tls_ctx_free(srv->tls);
  gw_metrics_free(srv->metrics);
  gw_trusted_free(srv->trusted);
  for (int lv = 0; lv < GW_OUT_EGRESS_LEVELS; lv++) gw_egress_free(srv->egress[lv]);
  if (lockfd >= 0) close(lockfd);
  gw_config_free(&srv->cfg);
  free(lp);
  free(srv);
  return code;
}
