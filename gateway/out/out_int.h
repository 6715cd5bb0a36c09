/* gateway/out/out_int.h — what the outbound engine's two halves share
 * (private to gateway/out/): the engine and transfer structures, and the
 * few engine functions the native HTTP/1.1 path (h1.c) calls. outbound.c
 * owns the engine, the transfer lifecycle and libcurl; h1.c owns plain
 * http:// connections. See outbound.h for the contract both keep. */
#ifndef MCPGATE_GATEWAY_OUT_INT_H
#define MCPGATE_GATEWAY_OUT_INT_H
#include <curl/curl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "gateway/base/buf.h"
#include "gateway/out/outbound.h"

/* The fd table grows to the highest fd curl uses; RLIMIT_NOFILE bounds it
 * in practice, this bounds it in any case. */
#define OUT_MAX_FD (1 << 22)

typedef struct h1_conn h1_conn;
typedef struct h1_gai h1_gai;

/* A native transfer's own state (h1.c). */
typedef struct gw_h1_req {
  char *head;                  /* the serialised request head */
  size_t head_len, body_len;
  char key[300];               /* "host:port": which idle connections fit */
  char host[256];              /* to resolve / connect to (no brackets) */
  int port;
  bool head_method;            /* HEAD: the response has no body */
  long connect_ms;             /* lookup + TCP connect */
  h1_conn *conn;               /* the connection carrying it, or NULL */
  h1_gai *gai;                 /* the name lookup in flight, or NULL */
  char fair[64];               /* gw_out_opts.fair_key ("" for none): the lookup gate's key */
  bool gai_waiting;            /* queued for the lookup gate (gai_prev/gai_next link it) */
  gw_out_req *gai_prev, *gai_next;
  struct addrinfo *ai, *ai_next; /* addresses left to try (ai owned) */
  bool ai_literal;             /* ai is ours, not getaddrinfo's */
  bool reused;                 /* on a connection from the idle pool */
  bool got_bytes;              /* a response byte arrived on this connection */
  bool retried;                /* already moved once off a dead reused connection */
  bool interim;                /* the current head is a 1xx */
  char *held;                  /* body bytes held while paused */
  size_t held_len;
} gw_h1_req;

/* A URL as parsed once (curl_url) and remembered by the engine: the same
 * connector URL is parsed on every request otherwise. */
typedef struct out_url {
  char *url;          /* the key; NULL: empty slot */
  bool https;
  char host[256];     /* as curl gives it ("[::1]" for IPv6) */
  char bare[256];     /* without brackets or zone: what to resolve */
  int port;           /* the default applied */
  char hostport[300]; /* the Host header: host, and ":port" when not 80 */
  char *target;       /* path (or "/") and "?query" */
  bool userinfo;      /* user or password in the URL */
} out_url;
#define OUT_URL_SLOTS 8
#define OUT_DNS_SLOTS 16
#define OUT_DNS_TTL_MS 60000 /* as curl's own DNS cache (CURLOPT_DNS_CACHE_TIMEOUT) */

/* The engine's native connections. */
typedef struct gw_h1_pool {
  h1_conn *idle;  /* most recently used first */
  size_t nidle;
  char *rbuf;     /* the read buffer every connection's reads share */
  /* transfers whose name lookup waits for the process's lookup gate
   * (h1.c), oldest first, and the timer that asks again while any does */
  gw_out_req *gai_head, *gai_tail;
  uv_timer_t gai_timer;
} gw_h1_pool;

typedef struct out_sock {
  gw_out *o;
  uv_poll_t poll;
  int fd;
  int events;     /* UV_READABLE|UV_WRITABLE currently started; 0 = stopped */
  int want;       /* what curl last asked for (UV_* bits); 0 after REMOVE */
  bool owned;     /* opened by out_opensocket: we close(2) it */
  bool poll_init; /* poll is initialised (and counted in o->handles) */
} out_sock;



struct gw_out_req {
  gw_out *o;
  CURL *easy;
  struct curl_slist *hdrs;
  char *body;
  uv_timer_t timer; /* first-byte / idle */
  gw_out_req *prev, *next;   /* o->reqs: live transfers */
  gw_out_req *pprev, *pnext; /* o->pend: deferred work */
  bool queued;
  void (*on_headers)(gw_out_req *, int, const gw_out_header *, size_t, void *);
  int (*on_data)(gw_out_req *, const char *, size_t, void *);
  void (*on_done)(gw_out_req *, int, void *);
  void *ud;
  long first_byte_ms, idle_ms;
  long partial_ms;        /* gw_out_opts.partial_timeout_ms (0: none) */
  uint64_t partial_since; /* uv_now() when the caller's pending message began (gw_out_partial), 0: none */
  size_t max_hdr, hbytes;
  gw_buf hbuf;      /* raw lines of the current response head */
  uint64_t last_rx; /* uv_now() of the last received byte */
  size_t skip;      /* bytes curl will deliver again that on_data already took */
  int fail;         /* first error decided by us (abort, timeouts, caps) */
  int tmode;        /* TM_* */
  bool added;       /* in the multi */
  bool add_wanted;  /* gw_out_start ran inside curl: the idle runner adds it */
  bool connected;   /* PREREQFUNCTION ran: a connection was ready */
  bool headers_done;
  bool paused;      /* the caller wants no data */
  bool curl_paused; /* curl holds data for us (we returned CURL_WRITEFUNC_PAUSE) */
  bool resume_wanted;
  bool finished;    /* on_done has been called (or is running) */
  int egress;       /* GW_OUT_EGRESS_* */
  bool host_listed; /* the URL's host is allowed by name for this level */
  bool egress_refused; /* an address was refused (rule 5) */
  char refused_ip[64];
  char errbuf[CURL_ERROR_SIZE];
  struct out_budget_key *bkey; /* its place in the process's budget (gw_out_budget_set), or NULL */
  struct curl_slist *resolve;  /* https: the addresses of its host curl connects to (CURLOPT_RESOLVE) */
  bool lookup_wanted;          /* https: curl needed its name's addresses (outbound.c "https names") */
  bool looked_up;              /* ... and was given them */
  /* the native HTTP/1.1 path (h1.c), for http:// URLs */
  bool native;
  gw_h1_req h1;
};

struct gw_out {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer; /* curl's timeout */
  uv_idle_t idle;   /* deferred work runner */
  gw_out_req *reqs;
  gw_out_req *pend_head, *pend_tail;
  size_t npend;
  out_sock **socks; /* by fd */
  size_t nsocks;
  int handles;      /* open uv handles, ours and the transfers' */
  int in_curl;      /* > 0 while we are inside a curl call */
  bool closing, torn_down;
  void (*close_cb)(void *);
  void *close_arg;
  const gw_egress *egress[GW_OUT_EGRESS_LEVELS]; /* borrowed; NULL: public only */
  /* gw_out_stats' fields, written by this loop only, read by /metrics on
   * any loop (gw_out_stats_get): relaxed atomics, bumped with OUT_STAT */
  struct {
    _Atomic uint64_t open, started, ok, failed[GW_OUT_NKINDS], sockets;
  } st;
  gw_h1_pool h1; /* the native path's idle connections and read buffer */
  out_url urls[OUT_URL_SLOTS];
  unsigned url_next;
  /* https names this engine looked up (gw__out_resolved): "host:port" and
   * curl's "+host:port:addr,addr" for CURLOPT_RESOLVE, until expires */
  struct {
    char key[300];
    char *entry;
    uint64_t expires;
  } dns[OUT_DNS_SLOTS];
  unsigned dns_next;
};


enum { TM_NONE = 0, TM_FIRST_BYTE, TM_IDLE, TM_CONNECT };

/* outbound.c, for h1.c */
void gw__out_fail(gw_out_req *r, int err);   /* records err, finishes from the loop */
void gw__out_finish(gw_out_req *r, int err); /* finishes now (loop context only) */
bool gw__out_egress_ok(gw_out_req *r, const struct sockaddr *sa);
bool gw__out_egress_allows(const gw_out_req *r, const struct sockaddr *sa); /* no record */
void gw__out_arm_first_byte(gw_out_req *r);
void gw__out_timer_cb(uv_timer_t *t);        /* the transfer timer (TM_* modes) */
void gw__out_handle_gone(gw_out *o);         /* a handle of the engine closed */
void gw__out_arm_idle(gw_out_req *r);
/* Delivers a complete response head (raw "Name: value" lines after a status
 * line) to on_headers; false if the transfer failed meanwhile. */
bool gw__out_deliver_head(gw_out_req *r, int status);
/* Splits a buffered head (a first line, then "Name: value" lines, each
 * ending in CRLF or LF) in place into pairs, as both paths deliver them;
 * writes a NUL at p[len] when the last line has no LF (p needs len + 1
 * bytes). Returns the count or -1 (no memory); *out is malloc'ed. (A test
 * seam: tests/fuzz/fuzz_out_h1.c; the engine calls the static original.) */
int gw__out_parse_head(char *p, size_t len, gw_out_header **out);

/* The parsed form of an absolute http(s) URL with a host (cached per
 * engine; valid until the next call), or NULL: not one, or no memory
 * (*nomem says which). */
const out_url *gw__out_url(gw_out *o, const char *url, bool *nomem);

/* The name lookup of an https transfer (h1.c's gated lookup, for
 * r->h1.host and port) found res (owned: freed here): curl gets the
 * addresses (CURLOPT_RESOLVE, remembered by the engine) and the transfer
 * is added to curl again. */
void gw__out_resolved(gw_out_req *r, struct addrinfo *res);
/* Whether the engine still knows the addresses of r's name (an https
 * transfer waiting at the lookup gate): if so they are applied as by
 * gw__out_resolved and true is returned (r no longer needs a lookup). */
bool gw__out_resolved_before(gw_out_req *r);

/* Idle connections an engine keeps on each path (gw_out_budget_set). */
size_t gw__out_idle_max(void);

/* h1.c, for outbound.c */
/* Is u one the native path carries (http://, no userinfo)? */
bool gw__h1_accepts(const out_url *u);
/* Serialises the request head; 0 or GW_OUT_ENOMEM. */
int gw__h1_prepare(gw_out_req *r, const gw_out_opts *op, const out_url *u);
/* Starts the transfer: an idle connection, or a lookup and a connect. */
void gw__h1_begin(gw_out_req *r);
/* An https transfer's name lookup through the process's lookup gate (the
 * same places and shares as the native path's; r->h1.host, port, fair and
 * connect_ms set), the connect timeout armed for it; ends in
 * gw__out_resolved or a failure. */
void gw__h1_lookup(gw_out_req *r);
/* The transfer is finishing: its connection (if any) is closed — never
 * reused, its response was not read to the end — and its lookup cancelled. */
void gw__h1_release(gw_out_req *r);
void gw__h1_pause(gw_out_req *r);
void gw__h1_resume(gw_out_req *r); /* from the idle runner */
/* Closes every idle connection (engine teardown). */
void gw__h1_teardown(gw_out *o);
void gw__h1_init(gw_out *o); /* the engine's h1 handles (one more in o->handles) */
void gw__h1_connect_timeout_why(gw_out_req *r); /* errbuf, when the lookup is what did not finish */
/* The loop's own update of one gw_out.st counter (it is the only writer). */
#define OUT_STAT(f, d) \
  atomic_store_explicit(&(f), atomic_load_explicit(&(f), memory_order_relaxed) + (d), memory_order_relaxed)

#endif
