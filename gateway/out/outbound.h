/* gateway/out/outbound.h — the outbound HTTP engine: every HTTP call the
 * gateway makes (proxied MCP requests and streams to upstream servers; OIDC
 * discovery, JWKS, token and RFC 7009 revocation calls) runs here. https://
 * transfers run on one libcurl multi handle driven by the libuv loop
 * through the multi-socket API (CURLMOPT_SOCKETFUNCTION on uv_poll,
 * CURLMOPT_TIMERFUNCTION on uv_timer); plain http:// transfers run on the
 * engine's own HTTP/1.1 client (h1.c: libuv TCP and llhttp, its own
 * keep-alive pool), which costs a reused connection one writev and the
 * reads of the answer. The contract below is the same for both.
 *
 * One engine (gw_out) per loop. Threads: every function here, and every
 * callback it makes, runs on that loop's thread; nothing is thread-safe.
 *
 * What a transfer does and does not do:
 *  - Connections are reused (keep-alive, one connection cache per engine;
 *    a plain connection the peer closed while idle is replaced, and the
 *    request sent again once, as curl does); HTTP/2 is negotiated over TLS
 *    (ALPN), plaintext stays HTTP/1.1. A
 *    burst of https requests to one host waits for the first connection's
 *    ALPN and multiplexes on it when it is HTTP/2.
 *  - TLS verification is always on (peer and host name).
 *  - Redirects are never followed (a 3xx is delivered like any reply), only
 *    http and https URLs are accepted, proxies from the environment
 *    (http_proxy, ...) are ignored, curl never uses signals.
 *  - Egress policy (gateway/out/egress.h): every transfer names a trust level
 *    (gw_out_opts.egress) and may only connect to public addresses plus what
 *    the operator allowed for that level (gw_out_set_egress). The check is
 *    on the address actually connected to — when the socket is opened
 *    (after DNS, so rebinding cannot bypass it; nothing is sent to a refused
 *    address, not even a SYN) and again before each request goes out on a
 *    reused connection (a connection opened for a more trusted transfer is
 *    never lent to a less trusted one). A transfer that could reach no
 *    allowed address fails with GW_OUT_EEGRESS.
 *  - Timeouts: connect (DNS + TCP + TLS), first byte (request handed to the
 *    connection → complete response head) and idle (gap between received
 *    bytes; suspended while the caller has the transfer paused). There is
 *    no total timeout: an SSE stream may live for hours.
 *  - The response body is never buffered: on_data sees bytes as they
 *    arrive. The response head is capped (max_header_bytes).
 *
 * Callback order for one transfer: on_headers (at most once, before any
 * on_data), on_data (zero or more times), on_done (exactly once, always
 * last, also after gw_out_abort and gw_out_close). on_done never runs from
 * inside gw_out_start, gw_out_abort, gw_out_pause, gw_out_resume or
 * gw_out_close: always later, from the loop. on_headers and on_data run
 * from the loop too, never from inside a gw_out_* call.
 *
 * Error model: functions return 0 or a negative GW_OUT_E* code; on_done gets
 * 0 or a GW_OUT_E* code. An HTTP error status (4xx, 5xx) is not an error
 * here: the transfer succeeded and on_headers saw the status. */
#ifndef MCPGATE_GATEWAY_OUTBOUND_H
#define MCPGATE_GATEWAY_OUTBOUND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_out gw_out;         /* one per loop */
typedef struct gw_out_req gw_out_req; /* one transfer */

/* ---- error codes ---------------------------------------------------------
 * Reserved range [-30299, -30200]: disjoint from libuv's negated errno
 * values (> -4096) and from the store's ST_E* (-30099..-30000). Contiguous,
 * so GW_OUT_ERR_FIRST - err indexes gw_out_stats.failed[]. */
#define GW_OUT_ERR_FIRST (-30200)
enum {
  GW_OUT_EINVAL = -30200,      /* bad options (method, URL, scheme, header line) */
  GW_OUT_ENOMEM = -30201,      /* allocation failed */
  GW_OUT_ECLOSED = -30202,     /* the engine is closing */
  GW_OUT_ERESOLVE = -30203,    /* host name did not resolve */
  GW_OUT_ECONNECT = -30204,    /* TCP connect failed (refused, unreachable) */
  GW_OUT_ETLS = -30205,        /* TLS handshake or certificate verification failed */
  GW_OUT_ECONNTIMEOUT = -30206,/* connect (DNS+TCP+TLS) not done within connect_timeout_ms */
  GW_OUT_EFIRSTBYTE = -30207,  /* no complete response head within first_byte_timeout_ms */
  GW_OUT_EIDLE = -30208,       /* no byte for idle_timeout_ms (not counted while paused) */
  GW_OUT_ERESET = -30209,      /* connection reset or closed before the response ended */
  GW_OUT_EPROTO = -30210,      /* malformed response, HTTP/2 stream error */
  GW_OUT_EHEADERS = -30211,    /* response head larger than max_header_bytes */
  GW_OUT_EABORTED = -30212,    /* gw_out_abort or gw_out_close */
  GW_OUT_EIO = -30213,         /* any other failure (see gw_out_detail) */
  GW_OUT_EEGRESS = -30214,     /* every address of the host is refused by the egress policy */
  GW_OUT_ESLOW = -30215,       /* a message the caller holds part of not complete within partial_timeout_ms */
  GW_OUT_EBUSY = -30216,       /* the upstream connection budget is spent (gw_out_budget_set): not started */
};
#define GW_OUT_ERR_LAST GW_OUT_EBUSY
#define GW_OUT_NKINDS (GW_OUT_ERR_FIRST - GW_OUT_ERR_LAST + 1)

/* Static text for any GW_OUT_E* code, "ok" for 0, "unknown error" else. */
const char *gw_out_strerror(int err);
/* Short stable label for metrics ("connect", "tls", "idle_timeout", ...);
 * "ok" for 0, "unknown" outside the range. */
const char *gw_out_err_kind(int err);

/* Checks a file meant for gw_out_opts.ca_file the way libcurl will load
 * it (OpenSSL's PEM reader): readable, a regular file, parsable, at least
 * one certificate in it. Main thread, at start (a CA file is otherwise
 * read only at the first transfer that uses it). 0, or -1 with a message
 * naming the path and the cause (errno text, or what is wrong with the
 * contents) in err. */
int gw_out_ca_file_check(const char *path, char *err, size_t errlen);
/* Whether gw_out_start would take path as gw_out_opts.ca_file with root as
 * gw_out_opts.ca_root (root may be NULL): resolved (symbolic links
 * followed), a regular file of 1 to GW_OUT_CA_FILE_MAX bytes outside /proc
 * and /sys, inside root's resolved path. Only stat(2)s: never opens it.
 * 0 or -1, and nothing about why: its callers answer people who must not
 * learn what is on the host. Any thread. */
int gw_out_ca_file_usable(const char *path, const char *root);

/* Returned by on_data to pause (see gw_out_opts.on_data). */
#define GW_OUT_PAUSE 1

/* One response header as received. Both strings are NUL-terminated, value
 * has surrounding whitespace removed; obs-fold continuation lines are
 * joined with one space. Valid only during on_headers: copy what you keep. */
typedef struct gw_out_header {
  const char *name;
  const char *value;
} gw_out_header;

/* Defaults used for a 0 in the matching option. */
#define GW_OUT_CONNECT_TIMEOUT_MS 10000L
#define GW_OUT_FIRST_BYTE_TIMEOUT_MS 30000L
#define GW_OUT_IDLE_TIMEOUT_MS 300000L
#define GW_OUT_MAX_HEADER_BYTES ((size_t)64 * 1024)
/* Request-side caps checked by gw_out_start (GW_OUT_EINVAL past them). */
#define GW_OUT_MAX_REQ_HEADERS 128
#define GW_OUT_MAX_REQ_HEADER_LINE 16384
#define GW_OUT_MAX_URL 8192
/* Cap on a ca_file's size (gw_out_opts.ca_file). */
#define GW_OUT_CA_FILE_MAX (4 * 1024 * 1024)

/* Trust levels of a URL (gw_out_opts.egress): who chose it decides what it
 * may reach. 0, the zero value, is the strictest. */
enum {
  /* supplied by an outside caller (e.g. an OAuth client metadata document
   * URL): public addresses only, plus the operator's list for untrusted
   * URLs (egress_allow_untrusted; meant for tests). */
  GW_OUT_EGRESS_UNTRUSTED = 0,
  /* set by a tenant admin (connectors; later OIDC issuers, webhooks, SIEM
   * sinks): public addresses, plus the operator's egress_allow. */
  GW_OUT_EGRESS_ADMIN = 1,
};
#define GW_OUT_EGRESS_LEVELS 2

/* Classes of transfers in the budget (gw_out_opts.budget_class). */
enum {
  /* employees' calls and streams (and what a call needs on its way, such
   * as a grant's refresh): the default */
  GW_OUT_BUDGET_CALLS = 0,
  /* the gateway's own work for a tenant: revocations, approval webhooks,
   * audit sinks, ending upstream sessions. Its own key, and
   * a reserve of a quarter of the budget past it that calls cannot take:
   * one tenant's users filling the process leave every tenant its
   * revocations. */
  GW_OUT_BUDGET_GATEWAY = 1,
  /* started by unauthenticated requests (client metadata documents): its
   * own key, within the budget */
  GW_OUT_BUDGET_PUBLIC = 2,
  /* sign-in with the tenant's IdP (OIDC discovery, keys, the code
   * exchange): anyone may start one, so its own key, apart from both the
   * revocations and the calls; within the budget */
  GW_OUT_BUDGET_SIGNIN = 3,
  /* employees' long-lived GET streams (an idle agent holds one per
   * connector that can push, for hours): their own key, so that a tenant's
   * idle clients never take the places its calls need; within the budget */
  GW_OUT_BUDGET_STREAMS = 4,
};
#define GW_OUT_BUDGET_CLASSES 5

typedef struct gw_egress gw_egress;

typedef struct gw_out_opts {
  /* Request method, an HTTP token of at most 32 chars ("GET", "POST",
   * "DELETE", ...). HEAD must not have a body. Required. */
  const char *method;
  /* Absolute http:// or https:// URL, at most GW_OUT_MAX_URL bytes. Required. */
  const char *url;
  /* NULL-terminated array of "Name: value" lines (may be NULL); copied.
   * Sent as given; an empty value is sent as an empty header. Rejected
   * (GW_OUT_EINVAL): no colon, a non-token name, CR/LF in the line, and the
   * framing/hop-by-hop headers curl owns (Content-Length,
   * Transfer-Encoding, Connection, Keep-Alive, Proxy-Connection, TE,
   * Upgrade). curl's own defaults for Accept, Content-Type and Expect are
   * suppressed (no "Expect: 100-continue" stall); Host, Content-Length and
   * the body framing come from curl unless Host is given. */
  const char *const *headers;
  /* Request body (may be NULL when body_len is 0); copied. A POST always
   * sends Content-Length (0 for no body). */
  const void *body;
  size_t body_len;
  /* Milliseconds; 0 = the GW_OUT_*_MS default; negative is EINVAL. */
  long connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms;
  /* Milliseconds a message may take once the caller holds part of it
   * (gw_out_partial): a peer trickling bytes never goes idle, so the idle
   * timeout alone would let it hold a transfer for ever. 0 = no limit;
   * negative is EINVAL. What a message is, is the caller's business (an
   * SSE event, a whole JSON reply). */
  long partial_timeout_ms;
  /* PEM file of trust anchors used instead of the system CA bundle file
   * (the system CA directory stays in use), or NULL. Copied by curl.
   * Verification is never turned off. For an https URL it must be a
   * regular file of 1 to GW_OUT_CA_FILE_MAX bytes outside /proc and /sys
   * (the TLS library reads it on the loop): else gw_out_start fails with
   * GW_OUT_ETLS. */
  const char *ca_file;
  /* A directory the ca_file must resolve inside (symbolic links followed
   * to the end, both sides), or NULL: a tenant's folder of tenant_ca_dir
   * (gateway/core/config.h), so that a link placed there after the admin
   * set the path leads nowhere else. Outside it: as an unusable ca_file
   * (GW_OUT_ETLS). Checked at every start, like the rest of ca_file. */
  const char *ca_root;
  /* Cap on the response head, interim (1xx) heads included; 0 = 64 KiB. */
  size_t max_header_bytes;
  /* GW_OUT_EGRESS_*: which of the engine's egress policies applies. Any
   * other value is EINVAL. */
  int egress;
  /* Whom the transfer is for (a tenant id), or NULL (one key shared by
   * every transfer without one): a transfer's name lookup (http:// and
   * https:// alike) waits while this key has its share of the process's lookups in flight
   * (h1.c: one key's slow names never take every lookup, nor every thread
   * of libuv's pool). Copied (at most 63 bytes count). */
  const char *fair_key;
  /* GW_OUT_BUDGET_*: whose work this is, for the budget (gw_out_budget_set):
   * each class counts under its own key per fair_key, so employees' calls
   * holding their tenant's share leave it its own work and its sign-ins,
   * and unauthenticated requests never take the employees' share. Any
   * other value is EINVAL. */
  int budget_class;
  /* Speak HTTP/1.1 even where HTTP/2 is offered: for long-lived streams
   * that get paused, whose HTTP/2 window would let the peer push up to
   * 32 MB more into curl's buffers while paused. */
  bool http1;

  /* Called once with the final status and headers, before any on_data.
   * Not called when the transfer fails before a complete head. May call
   * gw_out_pause/resume/abort on r, or start/abort other transfers.
   * Optional. */
  void (*on_headers)(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud);
  /* Body bytes as they arrive (chunked framing removed; content encodings
   * NOT decoded). p is valid during the call only. Return 0 when the bytes
   * were taken, or GW_OUT_PAUSE: the bytes were taken too (they are never
   * delivered again) and no more arrive until gw_out_resume(r). Optional
   * (the body is discarded). */
  int (*on_data)(gw_out_req *r, const char *p, size_t n, void *ud);
  /* Exactly once, last: err 0 (the whole response arrived) or a GW_OUT_E*
   * code. r is freed when it returns: never use it again. May start new
   * transfers or call gw_out_close. Required. */
  void (*on_done)(gw_out_req *r, int err, void *ud);
  void *ud; /* passed to the callbacks; not owned */
} gw_out_opts;

/* Creates an engine on `loop` (borrowed: it must outlive the engine, i.e.
 * run until gw_out_close's callback). 0, GW_OUT_ENOMEM, or GW_OUT_EIO when
 * libcurl cannot initialise. *out is owned by the caller; release it only
 * with gw_out_close. */
int gw_out_new(uv_loop_t *loop, gw_out **out);

/* Sets the operator's allow list for one trust level (GW_OUT_EGRESS_*).
 * `allow` is borrowed and must outlive the engine; NULL (the default for
 * every level) means public addresses only. Applies to transfers started
 * afterwards. */
void gw_out_set_egress(gw_out *o, int level, const gw_egress *allow);

/* Closes the engine: every live transfer is aborted (its on_done runs with
 * GW_OUT_EABORTED), the connection cache is closed, every handle is
 * closed; then cb(arg) runs once (cb may be NULL) and the engine's memory
 * is gone. Never calls back before returning; safe from any callback of
 * this engine. gw_out_start fails with GW_OUT_ECLOSED from now on; a
 * second call is ignored. */
void gw_out_close(gw_out *o, void (*cb)(void *arg), void *arg);

/* The process's budget of upstream connections, every engine together
 * (each transfer in flight may hold a descriptor, and so may each idle
 * connection kept for reuse): descriptors past it are those the client
 * connections, the store and the listeners need, and one tenant's (or a
 * few tenants') calls must never take them all.
 *
 *   transfers   at most this many transfers in flight at once, every
 *               engine together (0: no limit, the default); transfers of
 *               GW_OUT_BUDGET_GATEWAY may go a quarter past it. A
 *               transfer's gw_out_opts.fair_key (its tenant) with its
 *               budget_class holds at most a quarter of them while fewer
 *               than half are taken, else at most a sixteenth (at least 1
 *               either way): it takes two keys to fill half, and ten to
 *               fill it all. A start past either
 *               limit is not refused at the call: its on_done runs later
 *               with GW_OUT_EBUSY, nothing having been sent, so every
 *               caller's usual failure path (and a stream's retry with
 *               its back-off) handles it.
 *   idle        idle connections each engine keeps for reuse, on each of
 *               its two paths (plain http:// and libcurl's cache; 0: the
 *               default, 256). The oldest goes past it.
 *
 * Call before any engine starts a transfer (gw_serve, at start); engines
 * made afterwards take the idle cap. Any thread. */
void gw_out_budget_set(int transfers, int idle);
/* The transfers of the budget (0: none); for the metrics. Any thread. */
int gw_out_budget_max(void);

/* Starts a transfer. Everything in opts is copied or borrowed only for the
 * call, except opts->ud. On 0, *out (if out is not NULL) is the transfer,
 * valid until its on_done returns; on error nothing was started and no
 * callback will run. Errors: GW_OUT_EINVAL, GW_OUT_ENOMEM, GW_OUT_ECLOSED.
 * Past the budget (gw_out_budget_set) the start succeeds and on_done runs
 * with GW_OUT_EBUSY from the loop. Safe from any callback of this
 * engine. */
int gw_out_start(gw_out *o, const gw_out_opts *opts, gw_out_req **out);

/* Stops body delivery until gw_out_resume; the idle timeout is suspended
 * meanwhile (the first-byte timeout is not). Bytes already read are kept
 * and delivered after resume, in order. Idempotent; safe from any callback.
 * Headers are still delivered while paused. */
void gw_out_pause(gw_out_req *r);
/* Lifts a pause (gw_out_pause or GW_OUT_PAUSE). Delivery restarts from the
 * loop, never from inside this call. Idempotent; safe from any callback. */
void gw_out_resume(gw_out_req *r);
/* Tells the engine whether the caller holds part of a message now (true:
 * some of it arrived, the rest has not; false: nothing pending). From the
 * first true, the rest must arrive within partial_timeout_ms or the
 * transfer fails with GW_OUT_ESLOW; time paused does not count (the clock
 * restarts at resume). Cheap (no timer operation when nothing changes);
 * safe from any callback, on_data included. Ignored when
 * partial_timeout_ms is 0. */
void gw_out_partial(gw_out_req *r, bool partial);
/* Cancels the transfer: no further on_headers/on_data; on_done runs later
 * with GW_OUT_EABORTED (or with the error that had already ended the
 * transfer). Idempotent; safe from any callback, including r's own. */
void gw_out_abort(gw_out_req *r);

/* The error text for a failed transfer (curl's, or the native path's) (no URL query, no header values;
 * may name the host), or for GW_OUT_EEGRESS which address was refused and
 * which config key would allow it; "" when none. Valid during on_done only. */
const char *gw_out_detail(const gw_out_req *r);

typedef struct gw_out_stats {
  uint64_t open;                   /* transfers started and not yet done */
  uint64_t started;                /* since gw_out_new */
  uint64_t ok;                     /* on_done(0) */
  uint64_t failed[GW_OUT_NKINDS];  /* on_done(err): [GW_OUT_ERR_FIRST - err] */
  uint64_t sockets;                /* sockets open now (live and cached) */
} gw_out_stats;

/* Snapshot of the engine's counters (for /metrics). */
void gw_out_stats_get(const gw_out *o, gw_out_stats *s);

#endif
