/* gateway/out/outbound.c — the outbound HTTP engine (see outbound.h).
 *
 * Owns: one CURLM per engine, its uv_timer (curl's timeout) and uv_idle (our
 * deferred work), one uv_poll per socket curl asks us to watch, and per
 * transfer an easy handle, its copied headers/body and one uv_timer for the
 * connect (native path), first-byte and idle timeouts. The transfer
 * lifecycle (start, pause, resume, abort, finish, the deferred-work runner,
 * timeouts, egress decisions, head delivery) is this file's for both paths;
 * plain http:// connections are h1.c's (shared structures: out_int.h).
 *
 * Rules this file keeps, and why:
 *
 *  1. No curl_multi_* call (nor curl_easy_pause) from inside a curl callback:
 *     curl is not re-entrant (it answers CURLM_RECURSIVE_API_CALL or, worse,
 *     corrupts its state). User callbacks run inside curl's write/header
 *     callbacks, so every API entry that needs curl (abort, resume, close,
 *     and start while inside curl) only records the wish and queues the
 *     transfer on `pending`; the uv_idle handle runs that queue from the
 *     loop, outside any curl call. `in_curl` counts our own calls into curl
 *     so gw_out_start knows whether it may add the handle at once.
 *
 *  2. Sockets are ours. curl opens them through CURLOPT_OPENSOCKETFUNCTION
 *     and closes them through CURLOPT_CLOSESOCKETFUNCTION; on close we
 *     uv_close the poll and close(2) the fd only in the poll's close
 *     callback. Until then the fd number stays allocated, so the kernel
 *     cannot hand the same number to a new socket while a uv_poll for the
 *     old one still exists (the classic multi-socket fd-reuse bug: a stale
 *     watcher on a recycled fd, or uv_poll_init failing with EEXIST). The
 *     few fds curl opens itself (the threaded resolver's socketpair — its
 *     resolver no longer runs: names are looked up here, "https names"
 *     below) are watched but never closed by us; curl reports CURL_POLL_REMOVE before
 *     closing them, and we drop their poll at once.
 *
 *  3. Handles are freed only in close callbacks; the engine itself is freed
 *     when its last handle's close callback ran (`handles` counts them).
 *
 *  4. on_done runs exactly once, from out_finish, which is only reached from
 *     the loop (a poll/timer/idle callback), never from a curl callback or
 *     from inside a gw_out_* call.
 *
 *  5. The egress policy is checked on addresses, never on names: a name is
 *     whatever DNS says at that moment (rebinding), an address is where the
 *     bytes go. out_opensocket refuses to create a socket for a refused
 *     address (curl then tries the host's next address, so a name with one
 *     public and one private address still works, on the public one);
 *     out_prereq_cb checks the connected address again before every request,
 *     because curl reuses a cached connection by host name and port without
 *     opening a socket, and the connection may have been opened by a
 *     transfer of a more trusted level. Proxies are off (CURLOPT_PROXY ""),
 *     so the connected address is the destination. The socket callback's
 *     data is the transfer (CURLOPT_OPENSOCKETDATA is per easy handle and
 *     only used while that transfer connects); the close callback's stays
 *     the engine, since curl may close a cached connection after the
 *     transfer that opened it is gone.
 *
 * Pause. curl's own semantics are "a write callback that returns
 * CURL_WRITEFUNC_PAUSE did not take the bytes; they come again after
 * unpause". We hide that: when on_data answers GW_OUT_PAUSE it has taken
 * the bytes, we return CURL_WRITEFUNC_PAUSE and remember how many bytes of
 * the redelivery to drop (`skip`). gw_out_pause from outside on_data just
 * sets a flag: the next write callback pauses curl without delivering.
 * Resume is deferred to the idle runner because curl_easy_pause(CONT)
 * calls the write callback synchronously.
 *
 * Timeouts. Connect: CURLOPT_CONNECTTIMEOUT_MS. First byte: our timer,
 * armed by CURLOPT_PREREQFUNCTION (connection ready, request about to be
 * sent) and disarmed at the end of the response head. Idle: the same timer,
 * re-armed lazily — each byte only stamps `last_rx` and the timer, when it
 * fires, re-arms itself for the remainder, so a fast stream costs no timer
 * heap operations per chunk. Partial message: the same timer again — while
 * the caller holds part of a message (gw_out_partial), the timer is due no
 * later than partial_ms after that part began, so a peer that trickles a
 * byte now and then (never idle) cannot hold a transfer for ever either.
 * Never CURLOPT_TIMEOUT: streams live for hours. */
#include "gateway/out/outbound.h"
#include "gateway/out/out_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/buf.h"
#include "gateway/out/egress.h"
#include "gateway/base/log.h"
#include "gateway/base/pool.h"

#define MOD "outbound"
/* The fd table grows to the highest fd curl uses; RLIMIT_NOFILE bounds it
 * in practice, this bounds it in any case. */
#define OUT_MAX_FD (1 << 22)

/* ---- errors --------------------------------------------------------------- */

static const struct {
  const char *text, *kind;
} out_errs[GW_OUT_NKINDS] = {
    {"invalid outbound request options", "invalid"},
    {"out of memory", "nomem"},
    {"outbound engine closing", "closed"},
    {"upstream host name did not resolve", "resolve"},
    {"could not connect to upstream", "connect"},
    {"TLS handshake or certificate verification with upstream failed", "tls"},
    {"connect to upstream timed out", "connect_timeout"},
    {"upstream did not answer in time (first byte)", "first_byte_timeout"},
    {"upstream went silent (idle timeout)", "idle_timeout"},
    {"upstream connection reset or closed mid-response", "reset"},
    {"malformed upstream response", "protocol"},
    {"upstream response headers too large", "headers_too_large"},
    {"outbound transfer aborted", "aborted"},
    {"outbound transfer failed", "io"},
    {"the upstream's address is not allowed by the gateway's egress policy", "egress"},
    {"upstream sent a message too slowly (message timeout)", "message_timeout"},
    {"the gateway has as many upstream connections open as it allows right now (for this tenant, or in all); "
     "try again in a moment",
     "busy"},
};

static int err_index(int err) {
  return (err <= GW_OUT_ERR_FIRST && err >= GW_OUT_ERR_LAST) ? GW_OUT_ERR_FIRST - err : -1;
}

/* The same reader libcurl's CURLOPT_CAINFO ends in with OpenSSL
 * (X509_load_cert_crl_file: PEM_X509_INFO_read_bio), so what passes here
 * loads there. */
int gw_out_ca_file_check(const char *path, char *err, size_t errlen) {
  /* O_NONBLOCK: a FIFO named by mistake is refused below, not waited on */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  if (!S_ISREG(sb.st_mode)) {
    snprintf(err, errlen, "cannot read %s: %s", path, S_ISDIR(sb.st_mode) ? strerror(EISDIR) : "not a regular file");
    close(fd);
    return -1;
  }
  BIO *b = BIO_new_fd(fd, BIO_CLOSE);
  if (!b) {
    close(fd);
    snprintf(err, errlen, "cannot read %s: out of memory", path);
    return -1;
  }
  STACK_OF(X509_INFO) *inf = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
  unsigned long e = ERR_peek_last_error();
  BIO_free(b);
  int certs = 0;
  for (int i = 0; inf && i < sk_X509_INFO_num(inf); i++)
    if (sk_X509_INFO_value(inf, i)->x509) certs++;
  sk_X509_INFO_pop_free(inf, X509_INFO_free);
  ERR_clear_error();
  if (!inf) {
    char why[256];
    ERR_error_string_n(e, why, sizeof why);
    snprintf(err, errlen, "%s is not a readable PEM file (%s)", path, e ? why : "unknown error");
    return -1;
  }
  if (!certs) {
    snprintf(err, errlen, "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path);
    return -1;
  }
  return 0;
}

const char *gw_out_strerror(int err) {
  if (err >= 0) return "ok";
  int i = err_index(err);
  return i < 0 ? "unknown error" : out_errs[i].text;
}

const char *gw_out_err_kind(int err) {
  if (err >= 0) return "ok";
  int i = err_index(err);
  return i < 0 ? "unknown" : out_errs[i].kind;
}

/* The connect-phase timeout is the only curl timeout we set, so
 * CURLE_OPERATION_TIMEDOUT before PREREQ means exactly that. curl (7.88)
 * reports a response-head line over its own 100 KiB line limit as
 * CURLE_OUT_OF_MEMORY from its capped buffer: before the head is complete
 * that is the header cap, not memory. */
static int out_map(const gw_out_req *r, CURLcode rc) {
  if (r->fail) return r->fail;
  /* no connection, and at least one address refused by policy: that is the
   * reason, whatever curl says about the others (refused, unreachable) */
  if (rc != CURLE_OK && r->egress_refused && !r->connected) return GW_OUT_EEGRESS;
  switch (rc) {
  case CURLE_OK: return 0;
  case CURLE_COULDNT_RESOLVE_HOST: return GW_OUT_ERESOLVE;
  case CURLE_COULDNT_CONNECT: return GW_OUT_ECONNECT;
  case CURLE_OPERATION_TIMEDOUT: return r->connected ? GW_OUT_EIO : GW_OUT_ECONNTIMEOUT;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CLIENTCERT:
  case CURLE_USE_SSL_FAILED:
    return GW_OUT_ETLS;
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_GOT_NOTHING:
    return GW_OUT_ERESET;
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_BAD_CONTENT_ENCODING:
    return GW_OUT_EPROTO;
  case CURLE_OUT_OF_MEMORY: return r->headers_done ? GW_OUT_ENOMEM : GW_OUT_EHEADERS;
  default: return GW_OUT_EIO;
  }
}

/* ---- lists ---------------------------------------------------------------- */

static void out_idle_cb(uv_idle_t *h);

static void pend_push(gw_out_req *r) {
  gw_out *o = r->o;
  if (r->queued) return;
  r->queued = true;
  r->pnext = NULL;
  r->pprev = o->pend_tail;
  if (o->pend_tail) o->pend_tail->pnext = r;
  else o->pend_head = r;
  o->pend_tail = r;
  o->npend++;
  if (!o->torn_down) uv_idle_start(&o->idle, out_idle_cb);
}

static void pend_unlink(gw_out_req *r) {
  gw_out *o = r->o;
  if (!r->queued) return;
  if (r->pprev) r->pprev->pnext = r->pnext;
  else o->pend_head = r->pnext;
  if (r->pnext) r->pnext->pprev = r->pprev;
  else o->pend_tail = r->pprev;
  r->pprev = r->pnext = NULL;
  r->queued = false;
  o->npend--;
}

static void url_clear(out_url *e);

/* ---- engine teardown ------------------------------------------------------ */

static void out_maybe_free(gw_out *o) {
  if (!o->torn_down || o->handles > 0) return;
  void (*cb)(void *) = o->close_cb;
  void *arg = o->close_arg;
  free(o->h1.rbuf);
  for (int i = 0; i < OUT_URL_SLOTS; i++) url_clear(&o->urls[i]);
  for (int i = 0; i < OUT_DNS_SLOTS; i++) free(o->dns[i].entry);
  free(o);
  curl_global_cleanup();
  if (cb) cb(arg);
}

static void out_handle_closed(uv_handle_t *h) {
  gw_out *o = h->data;
  o->handles--;
  out_maybe_free(o);
}

/* ---- sockets -------------------------------------------------------------- */

static out_sock *sock_get(gw_out *o, int fd) {
  return (fd >= 0 && (size_t)fd < o->nsocks) ? o->socks[fd] : NULL;
}

static int sock_put(gw_out *o, int fd, out_sock *s) {
  if (fd < 0 || fd >= OUT_MAX_FD) return GW_OUT_EIO;
  if ((size_t)fd >= o->nsocks) {
    size_t n = o->nsocks ? o->nsocks : 64;
    while (n <= (size_t)fd) n *= 2;
    out_sock **t = realloc(o->socks, n * sizeof *t);
    if (!t) return GW_OUT_ENOMEM;
    memset(t + o->nsocks, 0, (n - o->nsocks) * sizeof *t);
    o->socks = t;
    o->nsocks = n;
  }
  o->socks[fd] = s;
  return 0;
}

static void sock_closed(uv_handle_t *h) {
  out_sock *s = h->data;
  gw_out *o = s->o;
  /* Only now may the fd number be recycled: the poll is gone. */
  if (s->owned) close(s->fd);
  free(s);
  o->handles--;
  out_maybe_free(o);
}

/* Takes s out of the table and releases it: its poll (if any) is closed,
 * an owned fd is closed after the poll's close callback. */
static void sock_release(gw_out *o, out_sock *s) {
  if (sock_get(o, s->fd) == s) o->socks[s->fd] = NULL;
  if (s->owned) OUT_STAT(o->st.sockets, -1);
  if (s->poll_init) {
    uv_close((uv_handle_t *)&s->poll, sock_closed);
  } else {
    if (s->owned) close(s->fd);
    free(s);
  }
}

/* Rule 5: may transfer r talk to this address? Records the refusal. */
static bool egress_ok(gw_out_req *r, const struct sockaddr *sa, const char *ip_text) {
  const gw_egress *pol = r->o->egress[r->egress];
  bool ok = r->host_listed || (sa ? gw_egress_allows_sockaddr(pol, sa) : gw_egress_allows_ip_text(pol, ip_text));
  if (!ok) {
    r->egress_refused = true;
    if (sa) {
      const void *ad = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                 : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
      if (!inet_ntop(sa->sa_family, ad, r->refused_ip, sizeof r->refused_ip)) snprintf(r->refused_ip, sizeof r->refused_ip, "?");
    } else {
      gw_strlcpy(r->refused_ip, ip_text ? ip_text : "?", sizeof r->refused_ip);
    }
  }
  return ok;
}

static curl_socket_t out_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
  gw_out_req *r = arg;
  gw_out *o = r->o;
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  /* copied out: curl's struct declares a struct sockaddr but holds a
   * sockaddr_in6 for IPv6 */
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, &a->addr, a->addrlen < sizeof ss ? a->addrlen : sizeof ss);
  if (a->family != AF_INET && a->family != AF_INET6) return CURL_SOCKET_BAD;
  if (!egress_ok(r, (const struct sockaddr *)&ss, NULL)) return CURL_SOCKET_BAD; /* curl tries the next address */
  int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  /* A leftover entry is of an fd closed without out_closesocket: a
   * curl-owned one (its resolver's socketpair), or one of ours — curl 7.88
   * closes a socket whose connect timed out without calling
   * CURLOPT_CLOSESOCKETFUNCTION. Its number is the new socket's now: the
   * stale entry goes (its watcher closed) without closing anything. Found
   * by review: the entry was taken for a live socket and this one refused,
   * so after one connect timeout the next transfer given that number —
   * any tenant's — failed at once ("could not connect ... after 0 ms"). */
  out_sock *old = sock_get(o, fd);
  if (old) {
    if (old->owned) OUT_STAT(o->st.sockets, -1);
    old->owned = false; /* (sock_closed must not close the new socket) */
    sock_release(o, old);
  }
  out_sock *s = calloc(1, sizeof *s);
  if (!s || sock_put(o, fd, s) != 0) {
    free(s);
    close(fd);
    return CURL_SOCKET_BAD;
  }
  s->o = o;
  s->fd = fd;
  s->owned = true;
  OUT_STAT(o->st.sockets, 1);
  return fd;
}

static int out_closesocket(void *arg, curl_socket_t fd) {
  gw_out *o = arg;
  out_sock *s = sock_get(o, fd);
  if (!s || !s->owned) { /* not one of ours: nothing watches it through us */
    if (s) sock_release(o, s);
    return close(fd);
  }
  sock_release(o, s);
  return 0;
}

static void out_action(gw_out *o, curl_socket_t fd, int ev);

static void out_poll_cb(uv_poll_t *h, int status, int events) {
  out_sock *s = h->data;
  gw_out *o = s->o;
  curl_socket_t fd = s->fd;
  int flags = 0;
  if (status < 0) {
    /* libuv stopped the watcher (POLLERR). Let curl do real I/O on it so it
     * sees the actual error (reset, refused) instead of a bare "select
     * error". */
    s->events = 0;
    flags = CURL_CSELECT_ERR | CURL_CSELECT_IN | CURL_CSELECT_OUT;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  out_action(o, fd, flags);
  /* s is still allocated (only its close callback frees it). If curl kept
   * the socket and still wants events it will not tell us again (its wish
   * did not change): re-arm what libuv stopped. */
  if (status < 0 && sock_get(o, fd) == s && s->want && !s->events &&
      uv_poll_start(&s->poll, s->want, out_poll_cb) == 0)
    s->events = s->want;
}

static void out_fail(gw_out_req *r, int err);

static int out_socket_cb(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp) {
  gw_out *o = arg;
  (void)sockp;
  out_sock *s = sock_get(o, fd);
  if (what == CURL_POLL_REMOVE) {
    if (!s) return 0;
    if (s->owned) { /* keep the poll: curl may watch it again when it reuses the connection */
      if (s->events) uv_poll_stop(&s->poll);
      s->events = s->want = 0;
    } else {
      sock_release(o, s); /* curl closes this fd right after telling us */
    }
    return 0;
  }
  int rc = 0;
  if (!s) { /* a curl-owned fd (resolver socketpair) */
    s = calloc(1, sizeof *s);
    if (!s) { rc = GW_OUT_ENOMEM; goto fail; }
    s->o = o;
    s->fd = fd;
    if ((rc = sock_put(o, fd, s)) != 0) { free(s); goto fail; }
  }
  if (!s->poll_init) {
    if ((rc = uv_poll_init_socket(o->loop, &s->poll, fd)) != 0) goto fail;
    s->poll.data = s;
    s->poll_init = true;
    o->handles++;
  }
  int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
  s->want = ev;
  if (ev != s->events) {
    if ((rc = uv_poll_start(&s->poll, ev, out_poll_cb)) != 0) goto fail;
    s->events = ev;
  }
  return 0;
fail:
  /* curl 7.88 ignores our return value: fail the transfer ourselves. */
  GW_LOG(GW_LOG_WARN, MOD, NULL, "cannot watch socket %d: %s", (int)fd,
         rc <= GW_OUT_ERR_FIRST ? gw_out_strerror(rc) : uv_strerror(rc));
  gw_out_req *r = NULL;
  if (e && curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r) == CURLE_OK && r) out_fail(r, GW_OUT_EIO);
  return -1;
}

/* ---- the upstream connection budget (outbound.h: gw_out_budget_set) -------
 * Found by review: nothing bounded the transfers in flight but each user's
 * own limit, and a few users of one tenant (an aggregated batch is a
 * transfer per message) held every descriptor the process had left: other
 * tenants' clients were reset and /healthz failed. So a place in this
 * budget is taken before anything of a transfer goes out, every engine
 * together (a mutex: the places are the process's), and given back when the
 * transfer finishes. A key is a class (gw_out_opts.budget_class) and the
 * fair_key: found by the review of this budget, the gateway's own work
 * (revocations, ending upstream sessions), sign-in and unauthenticated
 * fetches of client metadata shared the tenant's key with its employees'
 * calls, and either side could hold the other out. Keys are counted in a
 * small chained table; an entry whose count falls to 0 is kept for reuse
 * while fewer than BUDGET_KEEP are kept (no allocation per call for a
 * tenant that calls again), freed past that. */
#define BUDGET_BUCKETS 1024
#define BUDGET_KEEP 1024

typedef struct out_budget_key {
  struct out_budget_key *next;
  int n;
  char key[66];
} out_budget_key;

static uv_once_t budget_once = UV_ONCE_INIT;
static uv_mutex_t budget_mu;
static int budget_max, budget_total, budget_nkeys;
static size_t budget_idle = 256;
static out_budget_key *budget_tab[BUDGET_BUCKETS];

static void budget_init(void) { uv_mutex_init(&budget_mu); }

void gw_out_budget_set(int transfers, int idle) {
  uv_once(&budget_once, budget_init);
  uv_mutex_lock(&budget_mu);
  budget_max = transfers > 0 ? transfers : 0;
  budget_idle = idle > 0 ? (size_t)idle : 256;
  uv_mutex_unlock(&budget_mu);
}

int gw_out_budget_max(void) {
  uv_once(&budget_once, budget_init);
  uv_mutex_lock(&budget_mu);
  int max = budget_max;
  uv_mutex_unlock(&budget_mu);
  return max;
}

size_t gw__out_idle_max(void) { return budget_idle; }

static unsigned budget_hash(const char *k) {
  unsigned h = 2166136261u;
  for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
  return h % BUDGET_BUCKETS;
}

/* A place for a transfer of `key`: true and r->bkey set (NULL when there
 * is no budget), or false: the budget or the key's share is spent. */
static bool budget_take(gw_out_req *r, const char *key, int cls) {
  char k[66]; /* the class, then the key (at most 63 bytes, as fair_key) */
  k[0] = (char)('0' + cls);
  gw_strlcpy(k + 1, key ? key : "", 64);
  uv_once(&budget_once, budget_init);
  uv_mutex_lock(&budget_mu);
  bool ok = true;
  if (budget_max) {
    unsigned b = budget_hash(k);
    out_budget_key *e = budget_tab[b];
    while (e && strcmp(e->key, k)) e = e->next;
    int hi = budget_max / 4, lo = budget_max / 16;
    int share = budget_total < budget_max / 2 ? (hi > 0 ? hi : 1) : (lo > 0 ? lo : 1);
    int max = cls == GW_OUT_BUDGET_GATEWAY ? budget_max + budget_max / 4 : budget_max;
    if (budget_total >= max || (e && e->n >= share)) {
      ok = false;
    } else {
      if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        gw_strlcpy(e->key, k, sizeof e->key);
        e->next = budget_tab[b];
        budget_tab[b] = e;
        budget_nkeys++;
      }
      if (!e) {
        ok = false; /* no memory: as refused */
      } else {
        e->n++;
        budget_total++;
        r->bkey = e;
      }
    }
  }
  uv_mutex_unlock(&budget_mu);
  return ok;
}

static void budget_release(gw_out_req *r) {
  out_budget_key *e = r->bkey;
  if (!e) return;
  r->bkey = NULL;
  uv_mutex_lock(&budget_mu);
  budget_total--;
  if (--e->n == 0 && budget_nkeys > BUDGET_KEEP) {
    out_budget_key **pp = &budget_tab[budget_hash(e->key)];
    while (*pp != e) pp = &(*pp)->next;
    *pp = e->next;
    budget_nkeys--;
    free(e);
  }
  uv_mutex_unlock(&budget_mu);
}

/* ---- driving curl --------------------------------------------------------- */

static void out_finish(gw_out_req *r, int err);
static void out_lookup(gw_out_req *r);

static void out_drain_done(gw_out *o) {
  CURLMsg *m;
  int left;
  while (o->multi && (m = curl_multi_info_read(o->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURLcode rc = m->data.result;
    gw_out_req *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r && !r->finished && r->lookup_wanted && !r->fail) { /* m is invalid after this */
      out_lookup(r); /* curl needed the name's addresses: ours to find ("https names") */
      continue;
    }
    if (r && !r->finished) out_finish(r, out_map(r, rc)); /* m is invalid after this */
  }
}

/* Once closing, curl is not driven any more: every live transfer ends with
 * GW_OUT_EABORTED in the teardown, whatever the network does meanwhile. */
static void out_action(gw_out *o, curl_socket_t fd, int ev) {
  if (o->closing || !o->multi) return;
  int running;
  o->in_curl++;
  curl_multi_socket_action(o->multi, fd, ev, &running);
  o->in_curl--;
  out_drain_done(o);
}

static void out_timer_fire(uv_timer_t *t) { out_action(t->data, CURL_SOCKET_TIMEOUT, 0); }

static int out_curl_timer_cb(CURLM *m, long ms, void *arg) {
  gw_out *o = arg;
  (void)m;
  if (o->torn_down) return 0;
  /* ms == 0 means "now", but we are inside curl: the 0 ms uv timer runs it
   * on the next loop iteration, outside curl. */
  if (ms < 0) uv_timer_stop(&o->timer);
  else uv_timer_start(&o->timer, out_timer_fire, (uint64_t)ms, 0);
  return 0;
}

/* ---- per-transfer timers -------------------------------------------------- */

static void req_timer_cb(uv_timer_t *t) {
  gw_out_req *r = t->data;
  if (r->finished || r->fail) return;
  if (r->tmode == TM_CONNECT) {
    gw__h1_connect_timeout_why(r); /* the lookup, when that is what did not finish */
    out_fail(r, GW_OUT_ECONNTIMEOUT);
  } else if (r->tmode == TM_FIRST_BYTE) {
    out_fail(r, GW_OUT_EFIRSTBYTE);
  } else if (r->tmode == TM_IDLE && !r->paused) {
    uint64_t now = uv_now(r->o->loop);
    uint64_t el = now - r->last_rx;
    if (el >= (uint64_t)r->idle_ms) {
      out_fail(r, GW_OUT_EIDLE);
      return;
    }
    uint64_t left = (uint64_t)r->idle_ms - el;
    if (r->partial_since && r->partial_ms) {
      uint64_t pel = now - r->partial_since;
      if (pel >= (uint64_t)r->partial_ms) {
        out_fail(r, GW_OUT_ESLOW);
        return;
      }
      if ((uint64_t)r->partial_ms - pel < left) left = (uint64_t)r->partial_ms - pel;
    }
    uv_timer_start(&r->timer, req_timer_cb, left, 0);
  }
}

/* The idle timer's due time from now: idle_ms, or what is left of a
 * pending message's partial_ms when that is sooner. */
static uint64_t idle_due(const gw_out_req *r, uint64_t now) {
  uint64_t due = (uint64_t)r->idle_ms;
  if (r->partial_since && r->partial_ms) {
    uint64_t pel = now - r->partial_since;
    uint64_t pleft = pel >= (uint64_t)r->partial_ms ? 0 : (uint64_t)r->partial_ms - pel;
    if (pleft < due) due = pleft;
  }
  return due;
}

void gw__out_arm_first_byte(gw_out_req *r) {
  r->tmode = TM_FIRST_BYTE;
  uv_timer_start(&r->timer, req_timer_cb, (uint64_t)r->first_byte_ms, 0);
}

static void req_arm_idle(gw_out_req *r) {
  r->tmode = TM_IDLE;
  r->last_rx = uv_now(r->o->loop);
  if (r->partial_since) r->partial_since = r->last_rx; /* a pause does not count against a message either */
  if (r->paused) return;
  /* a pending first-byte timer due no later than the idle deadline is
   * kept: it finds TM_IDLE and re-arms for what is left of the idle time
   * (req_timer_cb). A small reply is over before either fires, and one
   * timer-heap operation per transfer is saved. */
  uint64_t due = idle_due(r, r->last_rx);
  if (uv_is_active((uv_handle_t *)&r->timer) && uv_timer_get_due_in(&r->timer) <= due) return;
  uv_timer_start(&r->timer, req_timer_cb, due, 0);
}

/* Records the transfer's error and queues its finish. Callable from
 * anywhere (curl callbacks included): nothing is torn down here. */
static void out_fail(gw_out_req *r, int err) {
  if (r->finished || r->fail) return;
  r->fail = err;
  uv_timer_stop(&r->timer);
  pend_push(r);
}

/* ---- curl callbacks (never call curl_multi_* from these) ------------------ */

static int out_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                         int conn_local_port) {
  gw_out_req *r = ud;
  (void)conn_local_ip; (void)conn_primary_port; (void)conn_local_port;
  if (r->fail) return CURL_PREREQFUNC_ABORT;
  /* rule 5: a reused connection was opened without asking this transfer */
  if (!egress_ok(r, NULL, conn_primary_ip)) {
    out_fail(r, GW_OUT_EEGRESS);
    return CURL_PREREQFUNC_ABORT;
  }
  r->connected = true;
  /* Also runs again when curl retries the request on a fresh connection
   * (a reused keep-alive connection turned out dead): restart the clock. */
  r->tmode = TM_FIRST_BYTE;
  uv_timer_start(&r->timer, req_timer_cb, (uint64_t)r->first_byte_ms, 0);
  return CURL_PREREQFUNC_OK;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* Splits the buffered head (status line + header lines, each ending in
 * CRLF or LF) in place into name/value pairs. Returns the count, or -1 on
 * allocation failure; *out is malloc'ed (may be NULL when n == 0). */
static int parse_head(char *p, size_t len, gw_out_header **out) {
  size_t cap = 1;
  for (size_t i = 0; i < len; i++) cap += p[i] == '\n';
  gw_out_header *h = malloc(cap * sizeof *h);
  if (!h) return -1;
  size_t n = 0;
  bool first = true;
  char *end = p + len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *le = nl ? nl : end;
    char *next = nl ? nl + 1 : end;
    if (le > p && le[-1] == '\r') le--;
    *le = '\0';
    if (first) { /* status line */
      first = false;
    } else if (is_ows(*p)) {
      /* obs-fold: append to the previous value (same buffer, in place,
       * values only ever shrink so this fits), trimmed like any value:
       * no blanks kept at its end, no joining space onto an empty value. */
      while (is_ows(*p)) p++;
      char *pe = p + strlen(p);
      while (pe > p && is_ows(pe[-1])) *--pe = '\0';
      if (n > 0 && *p) {
        char *v = (char *)h[n - 1].value;
        size_t vl = strlen(v), pl = (size_t)(pe - p);
        if (vl) v[vl++] = ' ';
        memmove(v + vl, p, pl + 1);
      }
    } else {
      char *colon = strchr(p, ':');
      if (colon && colon > p) {
        *colon = '\0';
        char *v = colon + 1;
        while (is_ows(*v)) v++;
        char *ve = v + strlen(v);
        while (ve > v && is_ows(ve[-1])) *--ve = '\0';
        h[n].name = p;
        h[n].value = v;
        n++;
      }
    }
    p = next;
  }
  *out = h;
  return (int)n;
}

static void deliver_headers(gw_out_req *r, long code) {
  r->headers_done = true;
  req_arm_idle(r); /* replaces the first-byte timer, or keeps it when it is due first */
  if (r->on_headers) {
    gw_out_header *h = NULL;
    int n = parse_head(r->hbuf.data ? r->hbuf.data : (char *)"", r->hbuf.len, &h);
    if (n < 0) {
      out_fail(r, GW_OUT_ENOMEM);
    } else {
      r->on_headers(r, (int)code, h, (size_t)n, r->ud);
    }
    free(h);
  }
  gw_buf_free(&r->hbuf); /* a stream may live for hours: don't keep the head */
}

int gw__out_parse_head(char *p, size_t len, gw_out_header **out) { return parse_head(p, len, out); }
bool gw__out_deliver_head(gw_out_req *r, int status) {
  deliver_headers(r, status);
  return !r->fail;
}
void gw__out_fail(gw_out_req *r, int err) { out_fail(r, err); }
void gw__out_finish(gw_out_req *r, int err) {
  if (!r->finished) out_finish(r, r->fail ? r->fail : err);
}
void gw__out_timer_cb(uv_timer_t *t) { req_timer_cb(t); }
void gw__out_handle_gone(gw_out *o) {
  o->handles--;
  out_maybe_free(o);
}
bool gw__out_egress_ok(gw_out_req *r, const struct sockaddr *sa) { return egress_ok(r, sa, NULL); }
bool gw__out_egress_allows(const gw_out_req *r, const struct sockaddr *sa) {
  return r->host_listed || gw_egress_allows_sockaddr(r->o->egress[r->egress], sa);
}
void gw__out_arm_idle(gw_out_req *r) { req_arm_idle(r); }

static size_t out_header_cb(char *p, size_t size, size_t nmemb, void *ud) {
  gw_out_req *r = ud;
  size_t len = size * nmemb;
  if (r->fail) return CURL_WRITEFUNC_ERROR;
  if (r->headers_done) return len; /* trailers: not delivered */
  r->last_rx = uv_now(r->o->loop);
  r->hbytes += len;
  if (r->hbytes > r->max_hdr) {
    out_fail(r, GW_OUT_EHEADERS);
    return CURL_WRITEFUNC_ERROR;
  }
  bool blank = (len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n');
  if (!blank) {
    int rc = gw_buf_append(&r->hbuf, p, len);
    if (rc != 0) {
      out_fail(r, rc == GW_E2BIG ? GW_OUT_EHEADERS : GW_OUT_ENOMEM);
      return CURL_WRITEFUNC_ERROR;
    }
    return len;
  }
  long code = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 100 && code < 200) { /* interim head (100 Continue, 103): wait for the final one */
    gw_buf_reset(&r->hbuf);
    return len;
  }
  deliver_headers(r, code);
  return r->fail ? CURL_WRITEFUNC_ERROR : len;
}

static size_t out_write_cb(char *p, size_t size, size_t nmemb, void *ud) {
  gw_out_req *r = ud;
  size_t len = size * nmemb;
  if (r->fail) return CURL_WRITEFUNC_ERROR;
  if (!r->headers_done) { /* body before a head cannot happen over HTTP */
    out_fail(r, GW_OUT_EPROTO);
    return CURL_WRITEFUNC_ERROR;
  }
  r->last_rx = uv_now(r->o->loop);
  /* Redelivery after a pause: the first `skip` bytes were taken already. */
  if (r->skip >= len) {
    r->skip -= len;
    return len;
  }
  if (r->paused) {
    /* Paused from outside on_data: curl keeps the whole chunk (skip
     * unchanged still describes its start) and pauses receiving. */
    r->curl_paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  size_t s0 = r->skip;
  r->skip = 0;
  int rc = 0;
  if (r->on_data) rc = r->on_data(r, p + s0, len - s0, r->ud);
  if (r->fail) return CURL_WRITEFUNC_ERROR;
  if (rc == GW_OUT_PAUSE) gw_out_pause(r);
  if (r->paused) {
    /* on_data took every byte of this chunk; curl will hand it back. */
    r->skip = len;
    r->curl_paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  return len;
}

/* ---- finishing a transfer ------------------------------------------------- */

/* Transfers (1.3 KiB) are recycled per loop thread: past malloc's cache. */
static _Thread_local gw_pool req_pool = GW_POOL(sizeof(gw_out_req), 256);

static void req_closed(uv_handle_t *h) {
  gw_out_req *r = h->data;
  gw_out *o = r->o;
  gw_pool_put(&req_pool, r);
  o->handles--;
  out_maybe_free(o);
}

/* The request's copies (header lines, serialised head, body) are wiped
 * before they are freed: a header line may carry the upstream credential
 * (upcall.c wipes its own copy the moment the engine has taken it). */
static void req_free_request(gw_out_req *r) {
  for (struct curl_slist *l = r->hdrs; l; l = l->next)
    if (l->data) OPENSSL_cleanse(l->data, strlen(l->data));
  curl_slist_free_all(r->hdrs);
  r->hdrs = NULL;
  if (r->h1.head) OPENSSL_cleanse(r->h1.head, r->h1.head_len);
  free(r->h1.head);
  r->h1.head = NULL;
  free(r->body);
  r->body = NULL;
  curl_slist_free_all(r->resolve);
  r->resolve = NULL;
}

static void out_finish(gw_out_req *r, int err) {
  gw_out *o = r->o;
  r->finished = true;
  pend_unlink(r);
  if (r->prev) r->prev->next = r->next;
  else o->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  uv_timer_stop(&r->timer);
  budget_release(r);
  gw__h1_release(r); /* https: its lookup, if any */
  if (r->added) {
    o->in_curl++;
    curl_multi_remove_handle(o->multi, r->easy);
    o->in_curl--;
    r->added = false;
  }
  if (err == 0 && !r->headers_done) err = GW_OUT_EPROTO;
  if (err == GW_OUT_EEGRESS) /* say which address, and what would allow it */
    snprintf(r->errbuf, sizeof r->errbuf, "address %s refused (not public; allowed only if listed in %s)",
             r->refused_ip, gw_egress_key(o->egress[r->egress]));
  OUT_STAT(o->st.open, -1);
  if (err == 0) {
    OUT_STAT(o->st.ok, 1);
  } else {
    int i = err_index(err);
    OUT_STAT(o->st.failed[i >= 0 ? i : err_index(GW_OUT_EIO)], 1);
    /* Debug only: the caller logs with tenant and request context. */
    if (err != GW_OUT_EABORTED)
      GW_LOG(GW_LOG_DEBUG, MOD, NULL, "outbound transfer failed: %s%s%s", gw_out_err_kind(err),
             r->errbuf[0] ? ": " : "", r->errbuf);
  }
  r->on_done(r, err, r->ud);
  o->in_curl++;
  curl_easy_cleanup(r->easy);
  o->in_curl--;
  r->easy = NULL;
  req_free_request(r);
  gw_buf_free(&r->hbuf);
  uv_close((uv_handle_t *)&r->timer, req_closed);
}

static void out_teardown(gw_out *o) {
  o->torn_down = true;
  while (o->reqs) out_finish(o->reqs, o->reqs->fail ? o->reqs->fail : GW_OUT_EABORTED);
  gw__h1_teardown(o);
  o->in_curl++;
  curl_multi_cleanup(o->multi); /* closes the cached connections via out_closesocket */
  o->in_curl--;
  o->multi = NULL;
  for (size_t fd = 0; fd < o->nsocks; fd++) /* normally empty by now */
    if (o->socks[fd]) sock_release(o, o->socks[fd]);
  free(o->socks);
  o->socks = NULL;
  o->nsocks = 0;
  uv_close((uv_handle_t *)&o->timer, out_handle_closed);
  uv_close((uv_handle_t *)&o->idle, out_handle_closed);
}

/* The deferred-work runner: everything the API or a curl callback could not
 * do in place. Only the transfers queued when it starts are handled, so a
 * callback that re-queues (pause/resume ping-pong) cannot starve the loop. */
static void out_idle_cb(uv_idle_t *h) {
  gw_out *o = h->data;
  size_t budget = o->npend;
  gw_out_req *r;
  while (budget-- > 0 && (r = o->pend_head) != NULL) {
    pend_unlink(r);
    if (r->fail) {
      out_finish(r, r->fail);
      continue;
    }
    if (o->closing) continue; /* the teardown finishes it */
    if (r->add_wanted) {
      r->add_wanted = false;
      o->in_curl++;
      CURLMcode mc = curl_multi_add_handle(o->multi, r->easy);
      o->in_curl--;
      if (mc != CURLM_OK) {
        out_finish(r, mc == CURLM_OUT_OF_MEMORY ? GW_OUT_ENOMEM : GW_OUT_EIO);
        continue;
      }
      r->added = true;
    }
    if (r->resume_wanted && !r->paused && r->native) {
      r->resume_wanted = false;
      gw__h1_resume(r);
    } else if (r->resume_wanted && !r->paused) {
      r->resume_wanted = false;
      r->curl_paused = false;
      o->in_curl++;
      CURLcode rc = curl_easy_pause(r->easy, CURLPAUSE_CONT); /* may run on_data now */
      o->in_curl--;
      if (rc != CURLE_OK) out_fail(r, out_map(r, rc));
    }
  }
  if (o->closing && !o->torn_down) out_teardown(o);
  if (!o->pend_head && !o->torn_down) uv_idle_stop(&o->idle);
}

/* ---- API ------------------------------------------------------------------ */

int gw_out_new(uv_loop_t *loop, gw_out **out) {
  *out = NULL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return GW_OUT_EIO;
  gw_out *o = calloc(1, sizeof *o);
  if (!o) goto fail;
  o->loop = loop;
  o->multi = curl_multi_init();
  if (!o->multi) goto fail;
  curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, out_socket_cb);
  curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
  curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, out_curl_timer_cb);
  curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
  /* its cache of idle connections: the process's budget (gw_out_budget_set) */
  curl_multi_setopt(o->multi, CURLMOPT_MAXCONNECTS, (long)gw__out_idle_max());
  /* Cannot fail on unix once the loop exists; done last so the failure
   * path above has no handle to close. */
  uv_timer_init(loop, &o->timer);
  uv_idle_init(loop, &o->idle);
  o->timer.data = o;
  o->idle.data = o;
  o->handles = 2;
  gw__h1_init(o);
  *out = o;
  return 0;
fail:
  if (o && o->multi) curl_multi_cleanup(o->multi);
  free(o);
  curl_global_cleanup();
  return GW_OUT_ENOMEM;
}

void gw_out_close(gw_out *o, void (*cb)(void *arg), void *arg) {
  if (!o || o->closing) return;
  o->closing = true;
  o->close_cb = cb;
  o->close_arg = arg;
  for (gw_out_req *r = o->reqs; r; r = r->next) out_fail(r, GW_OUT_EABORTED);
  uv_idle_start(&o->idle, out_idle_cb);
}

/* RFC 9110 token characters: ALPHA, DIGIT and !#$%&'*+-.^_`|~ (a bitmap
 * by byte value: every header line of every call is checked). */
static bool is_tchar(unsigned char c) {
  static const uint32_t map[8] = {0x00000000u, 0x03ff6cfau, 0xc7fffffeu, 0x57ffffffu, 0, 0, 0, 0};
  return (map[c >> 5] >> (c & 31)) & 1;
}

/* Headers curl frames or that are hop-by-hop: a caller setting them would
 * desynchronise framing (request smuggling) or break HTTP/2. */
static bool hdr_is(const char *name, size_t n, const char *want, size_t wl) {
  /* want is lower case: the first letter before the call (names of the
   * same length mostly differ there: content-length, mcp-session-id) */
  return wl == n && ((unsigned char)name[0] | 0x20) == (unsigned char)want[0] && strncasecmp(name, want, n) == 0;
}
/* want: a string literal (its length known at compile time: every header
 * line of every call is checked against ten names) */
#define HDR_IS(name, n, want) hdr_is(name, n, want, sizeof want - 1)

static bool hdr_forbidden(const char *name, size_t n) {
  return HDR_IS(name, n, "content-length") || HDR_IS(name, n, "transfer-encoding") ||
         HDR_IS(name, n, "connection") || HDR_IS(name, n, "keep-alive") || HDR_IS(name, n, "proxy-connection") ||
         HDR_IS(name, n, "te") || HDR_IS(name, n, "upgrade");
}

/* Builds the curl header list. Returns 0 or GW_OUT_EINVAL/ENOMEM. */
static int build_headers(gw_out_req *r, const gw_out_opts *op, bool make_list) {
  bool have_accept = false, have_ctype = false, have_expect = false;
  size_t count = 0;
  char tmp[GW_OUT_MAX_REQ_HEADER_LINE + 2];
  for (const char *const *hp = op->headers; hp && *hp; hp++) {
    const char *line = *hp;
    if (++count > GW_OUT_MAX_REQ_HEADERS) return GW_OUT_EINVAL;
    /* name: one or more token characters, then the colon */
    size_t nl = 0;
    while (is_tchar((unsigned char)line[nl])) nl++;
    if (!nl || line[nl] != ':') return GW_OUT_EINVAL;
    const char *colon = line + nl;
    size_t vl = strcspn(colon + 1, "\r\n");
    if (colon[1 + vl] || nl + 1 + vl > GW_OUT_MAX_REQ_HEADER_LINE) return GW_OUT_EINVAL;
    if (hdr_forbidden(line, nl)) return GW_OUT_EINVAL;
    have_accept |= HDR_IS(line, nl, "accept");
    have_ctype |= HDR_IS(line, nl, "content-type");
    have_expect |= HDR_IS(line, nl, "expect");
    const char *v = colon + 1;
    while (is_ows(*v)) v++;
    if (!make_list) continue;
    const char *add = line;
    if (!*v) { /* curl reads "Name:" as "remove Name"; "Name;" sends it empty */
      memcpy(tmp, line, nl);
      tmp[nl] = ';';
      tmp[nl + 1] = '\0';
      add = tmp;
    }
    struct curl_slist *l = curl_slist_append(r->hdrs, add);
    if (!l) return GW_OUT_ENOMEM;
    r->hdrs = l;
  }
  /* Suppress curl's defaults: a proxy sends what it was given. "Expect:"
   * also avoids curl's 100-continue wait on large bodies. */
  if (!make_list) return 0;
  const char *sup[3];
  int ns = 0;
  if (!have_accept) sup[ns++] = "Accept:";
  if (!have_ctype) sup[ns++] = "Content-Type:";
  if (!have_expect) sup[ns++] = "Expect:";
  for (int i = 0; i < ns; i++) {
    struct curl_slist *l = curl_slist_append(r->hdrs, sup[i]);
    if (!l) return GW_OUT_ENOMEM;
    r->hdrs = l;
  }
  return 0;
}

static void url_clear(out_url *e) {
  free(e->url);
  free(e->target);
  memset(e, 0, sizeof *e);
}

static int url_parse(const char *url, out_url *e) {
  CURLU *u = curl_url();
  if (!u) return GW_OUT_ENOMEM;
  char *scheme = NULL, *host = NULL, *port = NULL, *dport = NULL, *path = NULL, *query = NULL, *user = NULL,
       *pass = NULL;
  int rc = GW_OUT_EINVAL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0] ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
      curl_url_get(u, CURLUPART_PORT, &dport, CURLU_DEFAULT_PORT) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK || strlen(host) >= sizeof e->host)
    goto out;
  curl_url_get(u, CURLUPART_PORT, &port, 0);   /* absent: the default */
  curl_url_get(u, CURLUPART_QUERY, &query, 0); /* absent: none */
  e->userinfo = curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
                curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK;
  e->https = scheme[4] == 's';
  gw_strlcpy(e->host, host, sizeof e->host);
  /* an IPv6 literal: without its brackets (and zone) for connecting */
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[') snprintf(e->bare, sizeof e->bare, "%.*s", (int)strcspn(host + 1, "%]"), host + 1);
  else gw_strlcpy(e->bare, host, sizeof e->bare);
  e->port = atoi(dport);
  if (e->port <= 0 || e->port > 65535) goto out;
  if (port && e->port != 80) snprintf(e->hostport, sizeof e->hostport, "%s:%s", host, port);
  else gw_strlcpy(e->hostport, host, sizeof e->hostport);
  rc = GW_OUT_ENOMEM;
  size_t tl = strlen(path[0] ? path : "/") + (query ? strlen(query) + 1 : 0) + 1;
  if (!(e->target = malloc(tl))) goto out;
  snprintf(e->target, tl, "%s%s%s", path[0] ? path : "/", query ? "?" : "", query ? query : "");
  if (!(e->url = strdup(url))) goto out;
  rc = 0;
out:
  if (rc) url_clear(e);
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(dport);
  curl_free(path);
  curl_free(query);
  curl_free(user);
  curl_free(pass);
  curl_url_cleanup(u);
  return rc;
}

const out_url *gw__out_url(gw_out *o, const char *url, bool *nomem) {
  *nomem = false;
  if (!url || !*url || strlen(url) > GW_OUT_MAX_URL) return NULL;
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) return NULL;
  for (int i = 0; i < OUT_URL_SLOTS; i++)
    if (o->urls[i].url && strcmp(o->urls[i].url, url) == 0) return &o->urls[i];
  out_url *e = &o->urls[o->url_next++ % OUT_URL_SLOTS];
  url_clear(e);
  int rc = url_parse(url, e);
  if (rc) {
    *nomem = rc == GW_OUT_ENOMEM;
    return NULL;
  }
  return e;
}

/* A setopt failure is an option curl rejects (bad value) or memory. */
#define SETOPT(opt, val) do { CURLcode sc_ = curl_easy_setopt(e, opt, val); \
    if (sc_ != CURLE_OK) { rc = sc_ == CURLE_OUT_OF_MEMORY ? GW_OUT_ENOMEM : GW_OUT_EINVAL; goto fail; } \
  } while (0)

/* The trust anchors a transfer may name (gw_out_opts.ca_file): OpenSSL
 * opens and reads the file on this loop's thread when a TLS connection
 * starts, and a connector's file is a path an admin chose (a tenant
 * admin's only in its folder of tenant_ca_dir: `root`). Anything
 * but a regular file of 1 to GW_OUT_CA_FILE_MAX bytes outside /proc and
 * /sys — a FIFO, the gateway's own pipes (/proc/self/fd/N), a device,
 * /proc/kmsg — could block the loop in open(2) or read(2) for ever, or
 * stall it parsing; so the path is resolved (realpath: no symlink left to
 * swap, /proc/self/fd/N of a pipe resolves to nothing) and only stat(2)ed
 * (opening a device can act), and curl gets the resolved path. With a
 * root, the resolved path must lie inside root's resolved path: checked
 * here at every start, so a link made in a tenant's folder after its admin
 * named the file leads nowhere else. Not defended: the resolved file
 * itself replaced by a link between this check and the TLS library's
 * open (at connect time) — only who can write that directory can, and
 * tenant_ca_dir is documented as the operator's to write (reading the
 * file here and handing curl a blob would close it, at the cost of
 * reading up to 4 MiB per transfer and of curl's CA cache). 0 with
 * `resolved` filled, or -1. */
static int ca_file_usable(const char *path, const char *root, char resolved[PATH_MAX]) {
  struct stat sb;
  if (!path[0] || !realpath(path, resolved)) return -1;
  static const char *const special[] = {"/proc/", "/sys/", NULL}; /* their "regular" files may block */
  for (const char *const *p = special; *p; p++)
    if (!strncmp(resolved, *p, strlen(*p))) return -1;
  if (root) {
    /* a tenant's folder: where the path leads, not how it is spelled */
    char rr[PATH_MAX];
    if (!realpath(root, rr)) return -1;
    size_t n = strlen(rr);
    if (!(n == 1 || (!strncmp(resolved, rr, n) && resolved[n] == '/'))) return -1;
  }
  if (stat(resolved, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 1 || sb.st_size > GW_OUT_CA_FILE_MAX) return -1;
  return 0;
}

int gw_out_ca_file_usable(const char *path, const char *root) {
  char resolved[PATH_MAX];
  return path ? ca_file_usable(path, root, resolved) : -1;
}

/* A transfer that starts: its timer, the live list, the counters. */
static void req_register(gw_out *o, gw_out_req *r) {
  uv_timer_init(o->loop, &r->timer);
  r->timer.data = r;
  o->handles++;
  r->next = o->reqs;
  if (o->reqs) o->reqs->prev = r;
  o->reqs = r;
  OUT_STAT(o->st.open, 1);
  OUT_STAT(o->st.started, 1);
}

/* ---- https names: looked up at the gate, handed to curl ------------------
 * curl's threaded resolver runs a thread per lookup, outside the lookup
 * gate (h1.c), and — found by review — when a transfer still resolving is
 * removed (its connect timeout, an abort, a client gone), curl 7.88 *joins*
 * that thread: the loop stood still for as long as the name's DNS server
 * took, 8 s a call with a slow one, for every tenant on the loop, and each
 * call left a thread behind. So curl never looks a name up: an https
 * transfer goes to curl as before, and when curl needs the name's
 * addresses — no connection to reuse, the name not in its cache, which is
 * exactly when CURLOPT_RESOLVER_START_FUNCTION is called — the callback
 * refuses, the transfer comes back (nothing was sent) and is looked up the
 * way the native path's is (uv_getaddrinfo through the gate, the tenant's
 * share of it, cancellable by walking away); then it goes to curl again
 * with the addresses (CURLOPT_RESOLVE, "+": they expire from curl's cache
 * as its own lookups do). A call on a live connection costs no lookup, and
 * a DNS server that fails or is slow does not stop those calls, as before.
 * The engine remembers a name's addresses for OUT_DNS_TTL_MS, so the
 * transfers that waited at the gate behind the first lookup of a name need
 * none of their own. */

static bool host_literal(const char *h) {
  unsigned char b[16];
  return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static bool host_ascii(const char *h) {
  for (; *h; h++)
    if ((unsigned char)*h >= 0x80) return false;
  return true;
}

static int out_resolver_start(void *state, void *reserved, void *userdata) {
  gw_out_req *r = userdata;
  (void)state;
  (void)reserved;
  if (!r->looked_up) r->lookup_wanted = true; /* out_drain_done looks it up */
  else
    snprintf(r->errbuf, sizeof r->errbuf, "curl would look %.120s up itself (outside the gateway's lookup gate): refused",
             r->h1.host);
  return 1;
}

/* r (looked up, or its name's addresses known) handed to curl. */
static void out_curl_add(gw_out_req *r, const char *entry) {
  r->looked_up = true;
  curl_slist_free_all(r->resolve);
  r->resolve = curl_slist_append(NULL, entry);
  if (!r->resolve || curl_easy_setopt(r->easy, CURLOPT_RESOLVE, r->resolve) != CURLE_OK) {
    gw__out_fail(r, GW_OUT_ENOMEM);
    return;
  }
  if (r->tmode == TM_CONNECT) { /* curl's connect timeout gets what the lookup left of it */
    uint64_t left = uv_timer_get_due_in(&r->timer);
    if (curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(left ? left : 1)) != CURLE_OK) {
      gw__out_fail(r, GW_OUT_ENOMEM);
      return;
    }
  }
  /* (the engine's connect timer runs on: it bounds the wait for another
   * transfer's connection too, gw_out_start) */
  r->add_wanted = true; /* from the idle runner: never inside a curl call */
  pend_push(r);
}

static int dns_slot(gw_out *o, const char *key) {
  uint64_t now = uv_now(o->loop);
  for (int i = 0; i < OUT_DNS_SLOTS; i++)
    if (o->dns[i].entry && o->dns[i].expires > now && !strcmp(o->dns[i].key, key)) return i;
  return -1;
}

static void dns_key(const gw_out_req *r, char key[300]) { snprintf(key, 300, "%s:%d", r->h1.host, r->h1.port); }

bool gw__out_resolved_before(gw_out_req *r) {
  char key[300];
  dns_key(r, key);
  int i = dns_slot(r->o, key);
  if (i < 0) return false;
  out_curl_add(r, r->o->dns[i].entry);
  return true;
}

/* From out_drain_done: r came back from curl before anything was sent,
 * for the addresses of its name. */
static void out_lookup(gw_out_req *r) {
  gw_out *o = r->o;
  r->lookup_wanted = false;
  r->errbuf[0] = 0;
  o->in_curl++;
  curl_multi_remove_handle(o->multi, r->easy);
  o->in_curl--;
  r->added = false;
  if (!gw__out_resolved_before(r)) gw__h1_lookup(r);
}

void gw__out_resolved(gw_out_req *r, struct addrinfo *res) {
  gw_out *o = r->o;
  gw_buf e;
  gw_buf_init(&e, 4096);
  int n = 0;
  char seen[16][INET6_ADDRSTRLEN]; /* the addresses written: getaddrinfo repeats each (a socket type each) */
  int rc = gw_buf_printf(&e, "+%s:%d:", r->h1.host, r->h1.port);
  for (struct addrinfo *a = res; a && rc == 0 && n < 16; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    bool dup = false;
    if (a->ai_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
    else if (a->ai_family == AF_INET6)
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof ip);
    else
      continue;
    for (int j = 0; j < n && !dup; j++) dup = !strcmp(seen[j], ip);
    if (dup) continue; /* an exact repeat, not a substring of the name or of another address */
    memcpy(seen[n], ip, sizeof ip);
    rc = gw_buf_printf(&e, a->ai_family == AF_INET6 ? "%s[%s]" : "%s%s", n ? "," : "", ip);
    n++;
  }
  uv_freeaddrinfo(res);
  if (rc != 0 || n == 0) {
    gw_buf_free(&e);
    snprintf(r->errbuf, sizeof r->errbuf, "host %.200s resolved to no usable address", r->h1.host);
    gw__out_fail(r, n ? GW_OUT_ENOMEM : GW_OUT_ERESOLVE);
    return;
  }
  char key[300];
  dns_key(r, key);
  int i = dns_slot(o, key);
  if (i < 0) i = (int)(o->dns_next++ % OUT_DNS_SLOTS);
  free(o->dns[i].entry);
  memcpy(o->dns[i].key, key, sizeof key);
  o->dns[i].entry = gw_buf_take(&e, NULL);
  o->dns[i].expires = uv_now(o->loop) + OUT_DNS_TTL_MS;
  out_curl_add(r, o->dns[i].entry);
}

int gw_out_start(gw_out *o, const gw_out_opts *op, gw_out_req **out) {
  if (out) *out = NULL;
  if (!o || !op || !op->on_done) return GW_OUT_EINVAL;
  if (o->closing) return GW_OUT_ECLOSED;
  const char *m = op->method;
  size_t ml = m ? strlen(m) : 0;
  if (ml == 0 || ml > 32) return GW_OUT_EINVAL;
  for (size_t i = 0; i < ml; i++)
    if (!is_tchar((unsigned char)m[i])) return GW_OUT_EINVAL;
  if (op->body_len && !op->body) return GW_OUT_EINVAL;
  if (op->body_len && strcmp(m, "HEAD") == 0) return GW_OUT_EINVAL;
  if (op->connect_timeout_ms < 0 || op->first_byte_timeout_ms < 0 || op->idle_timeout_ms < 0 ||
      op->partial_timeout_ms < 0)
    return GW_OUT_EINVAL;
  if (op->egress < 0 || op->egress >= GW_OUT_EGRESS_LEVELS) return GW_OUT_EINVAL;
  if (op->budget_class < 0 || op->budget_class >= GW_OUT_BUDGET_CLASSES) return GW_OUT_EINVAL;
  bool nomem;
  const out_url *url = gw__out_url(o, op->url, &nomem);
  if (!url) return nomem ? GW_OUT_ENOMEM : GW_OUT_EINVAL;
  bool https = url->https;
  int rc;
  char ca_path[PATH_MAX];
  if (https && op->ca_file && ca_file_usable(op->ca_file, op->ca_root, ca_path) != 0) {
    GW_LOG(GW_LOG_WARN, MOD, NULL,
           "ca_file %.200s is not a regular file of at most %d bytes%s%.200s: the transfer is refused", op->ca_file,
           GW_OUT_CA_FILE_MAX, op->ca_root ? " inside " : "", op->ca_root ? op->ca_root : "");
    return GW_OUT_ETLS;
  }

  gw_out_req *r = gw_pool_zget(&req_pool);
  if (!r) return GW_OUT_ENOMEM;
  r->o = o;
  r->on_headers = op->on_headers;
  r->on_data = op->on_data;
  r->on_done = op->on_done;
  r->ud = op->ud;
  r->first_byte_ms = op->first_byte_timeout_ms ? op->first_byte_timeout_ms : GW_OUT_FIRST_BYTE_TIMEOUT_MS;
  r->idle_ms = op->idle_timeout_ms ? op->idle_timeout_ms : GW_OUT_IDLE_TIMEOUT_MS;
  r->partial_ms = op->partial_timeout_ms;
  r->max_hdr = op->max_header_bytes ? op->max_header_bytes : GW_OUT_MAX_HEADER_BYTES;
  r->egress = op->egress;
  r->host_listed = gw_egress_allows_host(o->egress[r->egress], url->host);
  gw_buf_init(&r->hbuf, r->max_hdr);
  r->native = gw__h1_accepts(url);
  if ((rc = build_headers(r, op, !r->native)) != 0) goto fail;
  rc = GW_OUT_ENOMEM;
  if (op->body_len || strcmp(m, "POST") == 0) {
    r->body = malloc(op->body_len ? op->body_len : 1);
    if (!r->body) goto fail;
    if (op->body_len) memcpy(r->body, op->body, op->body_len);
  }
  if (r->native) { /* plain http: the native HTTP/1.1 path (h1.c) */
    r->h1.body_len = op->body_len;
    if ((rc = gw__h1_prepare(r, op, url)) != 0) goto fail;
    req_register(o, r);
    if (budget_take(r, op->fair_key, op->budget_class)) gw__h1_begin(r);
    else out_fail(r, GW_OUT_EBUSY); /* on_done from the loop, nothing sent */
    if (out) *out = r;
    return 0;
  }
  CURL *e = r->easy = curl_easy_init();
  if (!e) goto fail;
  SETOPT(CURLOPT_PRIVATE, r);
  SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
  SETOPT(CURLOPT_URL, op->url);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_PROXY, ""); /* ignore http_proxy & co: egress is explicit config */
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_HTTP_VERSION, op->http1 ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
  /* A burst of requests to one https upstream waits for the first
   * connection's ALPN and multiplexes on it instead of opening one TLS
   * connection each (an HTTP/1.1 answer releases the others at once). Not
   * for http://: curl 7.88 then waits for the first *response* to learn the
   * version, and a first request that is a long SSE stream blocks the rest. */
  if (https && !op->http1) SETOPT(CURLOPT_PIPEWAIT, 1L);
  /* ... but a transfer waiting so has no connect timeout of curl's running
   * (curl starts it when the wait ends), and the waiters behind a connect
   * that hangs took turns: the n-th failed after n connect timeouts (found
   * by review: 6 calls at once to an upstream whose connects hang, 1 s
   * each, failed at 1, 2, ... 6 s). The engine's own connect timer bounds
   * the whole of it — the wait, the lookup, the connect and the TLS
   * handshake — from the start until curl has a connection for it
   * (out_prereq_cb); curl's CONNECTTIMEOUT stays, for its message. */
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  if (https && op->ca_file) SETOPT(CURLOPT_CAINFO, ca_path); /* resolved and checked above (TLS only) */
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, op->connect_timeout_ms ? op->connect_timeout_ms : GW_OUT_CONNECT_TIMEOUT_MS);
  /* Hours-long streams: let the kernel notice a vanished peer. */
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_TCP_KEEPIDLE, 60L);
  SETOPT(CURLOPT_TCP_KEEPINTVL, 20L);
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, out_opensocket);
  SETOPT(CURLOPT_OPENSOCKETDATA, r); /* rule 5: the transfer's policy */
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, out_closesocket);
  SETOPT(CURLOPT_CLOSESOCKETDATA, o);
  SETOPT(CURLOPT_PREREQFUNCTION, out_prereq_cb);
  SETOPT(CURLOPT_PREREQDATA, r);
  SETOPT(CURLOPT_HEADERFUNCTION, out_header_cb);
  SETOPT(CURLOPT_HEADERDATA, r);
  SETOPT(CURLOPT_WRITEFUNCTION, out_write_cb);
  SETOPT(CURLOPT_WRITEDATA, r);
  SETOPT(CURLOPT_HTTPHEADER, r->hdrs);
  bool lookup = !host_literal(url->bare);
  if (lookup) { /* a name: ours to look up when curl needs it (above), never curl's */
    snprintf(r->h1.host, sizeof r->h1.host, "%s", url->bare);
    r->h1.port = url->port;
    snprintf(r->h1.fair, sizeof r->h1.fair, "%s", op->fair_key ? op->fair_key : "");
    r->h1.connect_ms = op->connect_timeout_ms ? op->connect_timeout_ms : GW_OUT_CONNECT_TIMEOUT_MS;
    SETOPT(CURLOPT_RESOLVER_START_FUNCTION, out_resolver_start);
    SETOPT(CURLOPT_RESOLVER_START_DATA, r);
  }
  if (strcmp(m, "GET") == 0 && !r->body) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(m, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else {
    if (r->body) {
      SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)op->body_len);
      SETOPT(CURLOPT_POSTFIELDS, r->body);
    }
    if (strcmp(m, "POST") != 0) SETOPT(CURLOPT_CUSTOMREQUEST, m);
  }

  req_register(o, r);
  r->tmode = TM_CONNECT;
  uv_timer_start(&r->timer, req_timer_cb,
                 (uint64_t)(op->connect_timeout_ms ? op->connect_timeout_ms : GW_OUT_CONNECT_TIMEOUT_MS), 0);
  if (!budget_take(r, op->fair_key, op->budget_class)) {
    out_fail(r, GW_OUT_EBUSY); /* on_done from the loop, never added to curl */
  } else if (lookup && !host_ascii(url->bare)) {
    /* found by review: an internationalised name, which curl's own lookup
     * converted (IDNA), is not looked up here; said, not guessed */
    snprintf(r->errbuf, sizeof r->errbuf,
             "host name %.120s is not ASCII: write it in its punycode form (xn--...)", url->bare);
    out_fail(r, GW_OUT_ERESOLVE);
  } else if (o->in_curl > 0) { /* inside a curl callback: curl_multi_add_handle would recurse */
    r->add_wanted = true;
    pend_push(r);
  } else {
    o->in_curl++;
    CURLMcode mc = curl_multi_add_handle(o->multi, e);
    o->in_curl--;
    if (mc != CURLM_OK) {
      /* Undo as if it never started: no callback runs. */
      o->reqs = r->next;
      if (r->next) r->next->prev = NULL;
      OUT_STAT(o->st.open, -1);
      OUT_STAT(o->st.started, -1);
      budget_release(r);
      r->finished = true;
      curl_easy_cleanup(e);
      req_free_request(r);
      gw_buf_free(&r->hbuf);
      uv_close((uv_handle_t *)&r->timer, req_closed);
      return mc == CURLM_OUT_OF_MEMORY ? GW_OUT_ENOMEM : GW_OUT_EIO;
    }
    r->added = true;
  }
  if (out) *out = r;
  return 0;
fail:
  if (r->easy) curl_easy_cleanup(r->easy);
  req_free_request(r);
  gw_buf_free(&r->hbuf);
  gw_pool_put(&req_pool, r);
  return rc;
}

void gw_out_pause(gw_out_req *r) {
  if (!r || r->finished || r->paused) return;
  r->paused = true;
  r->resume_wanted = false;
  if (r->tmode == TM_IDLE) uv_timer_stop(&r->timer);
  if (r->native) gw__h1_pause(r);
}

void gw_out_resume(gw_out_req *r) {
  if (!r || r->finished || !r->paused) return;
  r->paused = false;
  if (r->tmode == TM_IDLE && !r->fail) req_arm_idle(r); /* the pause does not count as silence */
  if (r->curl_paused || r->native) {
    r->resume_wanted = true;
    pend_push(r);
  }
}

void gw_out_partial(gw_out_req *r, bool partial) {
  if (!r || r->finished || !r->partial_ms) return;
  if (!partial) {
    r->partial_since = 0;
    return;
  }
  if (r->partial_since) return;
  uint64_t now = uv_now(r->o->loop);
  r->partial_since = now ? now : 1;
  /* the timer must be due by the message's deadline; an earlier one
   * re-arms itself for what is left (req_timer_cb) */
  if (r->tmode != TM_IDLE || r->paused || r->fail) return;
  if (uv_is_active((uv_handle_t *)&r->timer) && uv_timer_get_due_in(&r->timer) <= (uint64_t)r->partial_ms) return;
  uv_timer_start(&r->timer, req_timer_cb, (uint64_t)r->partial_ms, 0);
}

void gw_out_abort(gw_out_req *r) {
  if (!r || r->finished) return;
  out_fail(r, GW_OUT_EABORTED);
}

const char *gw_out_detail(const gw_out_req *r) { return r ? r->errbuf : ""; }

void gw_out_set_egress(gw_out *o, int level, const gw_egress *allow) {
  if (o && level >= 0 && level < GW_OUT_EGRESS_LEVELS) o->egress[level] = allow;
}

void gw_out_stats_get(const gw_out *o, gw_out_stats *s) {
  gw_out *m = (gw_out *)o; /* relaxed loads of counters another loop writes */
  s->open = atomic_load_explicit(&m->st.open, memory_order_relaxed);
  s->started = atomic_load_explicit(&m->st.started, memory_order_relaxed);
  s->ok = atomic_load_explicit(&m->st.ok, memory_order_relaxed);
  for (int k = 0; k < GW_OUT_NKINDS; k++) s->failed[k] = atomic_load_explicit(&m->st.failed[k], memory_order_relaxed);
  s->sockets = atomic_load_explicit(&m->st.sockets, memory_order_relaxed);
}
