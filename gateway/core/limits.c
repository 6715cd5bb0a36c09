/* gateway/core/limits.c — see limits.h. */
#include "gateway/core/limits.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "gateway/base/log.h"
#include "gateway/base/ratelimit.h"
#include "gateway/core/server.h"
#include "gateway/http/forwarded.h"
#include "gateway/http/http.h"
#include "store/store.h"

/* A user's open requests: chained buckets under one mutex (an enter and a
 * release per MCP request; the critical section is a few compares). */
#define SLOT_BUCKETS 4096
/* a slot's key: a user's "tenant/user", or its digest when that does not
 * fit a rate limiter's key (user_key); a discovery's "tenant/\x01discover
 * connector" is never cut */
#define SLOT_KEY_MAX 127
_Static_assert(SLOT_KEY_MAX >= GW_RATELIMIT_KEY_MAX, "a user's key fits a slot's");
typedef struct slot {
  struct slot *next;
  int64_t open;
  uint32_t bucket;
  bool heavy; /* a heavy-read slot: counted in gw_limits.heavy_open too */
  bool write; /* a heavy-write slot: counted in gw_limits.writes_open too */
  struct slot *parent; /* a discovery's connector slot: its tenant's slot, which it holds one unit of */
  char key[SLOT_KEY_MAX + 1];
} slot;

/* A digest key: a byte no tenant id begins with, then 64 hex digits. */
#define DIGEST_KEY_MARK '\x02'
_Static_assert(1 + 64 <= GW_RATELIMIT_KEY_MAX, "a digest key fits a limiter's key");

/* "tenant/user" into out, for the user's rate-limit bucket and
 * concurrency slot: on every MCP request, so no stdio. A tenant id may be
 * 63 bytes and a user id 36, more than a limiter's key holds: such a key
 * is the SHA-256 of the whole "tenant/user" instead, never a cut of it
 * (two users whose ids agreed in the bytes a cut kept once shared one
 * slot: one user's load throttled the other). A digest key cannot equal a
 * key that fits, which begins with the tenant id. Should the digest fail
 * (OpenSSL out of memory), the key is cut as before: a user may then
 * count with another, never escape the limits (fail closed). */
static void user_key(const char *tenant, const char *user, char out[GW_RATELIMIT_KEY_MAX + 1]) {
  char whole[2 * GW_RATELIMIT_KEY_MAX + 2];
  size_t tl = strnlen(tenant, GW_RATELIMIT_KEY_MAX), ul = strnlen(user, GW_RATELIMIT_KEY_MAX);
  memcpy(whole, tenant, tl);
  whole[tl] = '/';
  memcpy(whole + tl + 1, user, ul);
  size_t n = tl + 1 + ul;
  uint8_t d[32];
  if (n <= GW_RATELIMIT_KEY_MAX || st_sha256(whole, n, d) != 0) {
    if (n > GW_RATELIMIT_KEY_MAX) n = GW_RATELIMIT_KEY_MAX;
    memcpy(out, whole, n);
    out[n] = 0;
    return;
  }
  static const char hex[] = "0123456789abcdef";
  out[0] = DIGEST_KEY_MARK;
  for (int i = 0; i < 32; i++) {
    out[1 + 2 * i] = hex[d[i] >> 4];
    out[2 + 2 * i] = hex[d[i] & 15];
  }
  out[65] = 0;
}

typedef struct gw_limits gw_limits;
struct gw_limits {
  gw_ratelimit *auth_fail, *mcp_user, *mcp_tenant;
  gw_ratelimit *json_user, *json_tenant; /* mcp_json_mib_per_*: MiB of JSON tree (gw_limits_mcp_json) */
  _Atomic uint64_t auth_limited, mcp_user_limited, mcp_tenant_limited, mcp_concurrent_limited;
  _Atomic uint64_t json_user_limited, json_tenant_limited, json_reply_limited;
  _Atomic uint64_t heavy_tenant_limited, heavy_process_limited;
  _Atomic uint64_t write_tenant_limited, write_process_limited;
  _Atomic uint64_t conns_address_limited;
  _Atomic uint64_t discover_tenant_limited, discover_connector_limited;
  _Atomic uint64_t scim_body_limited;
  uv_mutex_t mu;
  int64_t writes_open; /* heavy-write slots taken, every tenant (under mu) */
  int64_t heavy_open; /* heavy-read slots taken, every tenant (under mu) */
  int64_t heavy_max;  /* GW_HEAVY_MAX, or fewer: two pool threads always left (gw_limits_init) */
  slot *slots[SLOT_BUCKETS];
};

static uint32_t key_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

int gw_limits_init(gw_server *srv) {
  gw_limits *l = calloc(1, sizeof *l);
  if (!l) return -1;
  const gw_config *c = &srv->cfg;
  l->auth_fail = gw_ratelimit_new(c->auth_failures_per_address, c->auth_failures_per_address, 65536);
  l->mcp_user = gw_ratelimit_new(c->mcp_rate_per_user, c->mcp_rate_per_user, 65536);
  l->mcp_tenant = gw_ratelimit_new(c->mcp_rate_per_tenant, c->mcp_rate_per_tenant, 4096);
  l->json_user = gw_ratelimit_new(c->mcp_json_mib_per_user, c->mcp_json_mib_per_user, 65536);
  l->json_tenant = gw_ratelimit_new(c->mcp_json_mib_per_tenant, c->mcp_json_mib_per_tenant, 4096);
  if (uv_mutex_init(&l->mu) != 0) {
    gw_ratelimit_free(l->auth_fail);
    gw_ratelimit_free(l->mcp_user);
    gw_ratelimit_free(l->mcp_tenant);
    gw_ratelimit_free(l->json_user);
    gw_ratelimit_free(l->json_tenant);
    free(l);
    return -1;
  }
  /* the pool's size (gw_serve set it, or the operator did): heavy reads
   * never hold its last two threads, whatever UV_THREADPOOL_SIZE says */
  const char *ps = getenv("UV_THREADPOOL_SIZE");
  long pool = ps ? strtol(ps, NULL, 10) : 4;
  if (pool < 1) pool = 1;
  l->heavy_max = pool - 2 < 1 ? 1 : pool - 2 > GW_HEAVY_MAX ? GW_HEAVY_MAX : pool - 2;
  srv->limits = l;
  if (!l->auth_fail || !l->mcp_user || !l->mcp_tenant) return -1;
  return 0;
}

void gw_limits_free(gw_server *srv) {
  gw_limits *l = srv->limits;
  if (!l) return;
  gw_ratelimit_free(l->auth_fail);
  gw_ratelimit_free(l->mcp_user);
  gw_ratelimit_free(l->mcp_tenant);
  gw_ratelimit_free(l->json_user);
  gw_ratelimit_free(l->json_tenant);
  for (int i = 0; i < SLOT_BUCKETS; i++)
    for (slot *s = l->slots[i], *n; s; s = n) {
      n = s->next;
      free(s);
    }
  uv_mutex_destroy(&l->mu);
  free(l);
  srv->limits = NULL;
}

static int64_t now_ms(void) { return (int64_t)(uv_hrtime() / 1000000); }

static void retry_after(gw_req *req, int64_t s) {
  char ra[24];
  snprintf(ra, sizeof ra, "%lld", (long long)s);
  gw_resp_header(req, "Retry-After", ra);
}

int64_t gw_limits_auth_failed(gw_req *req) {
  gw_limits *l = req->lp->srv->limits;
  if (!l || !l->auth_fail) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key(req->client, key);
  int64_t wait = gw_ratelimit_take(l->auth_fail, key, now_ms());
  if (wait) {
    retry_after(req, wait);
    atomic_fetch_add_explicit(&l->auth_limited, 1, memory_order_relaxed);
  }
  return wait;
}

int64_t gw_limits_mcp(gw_req *req, const char *tenant, const char *user) {
  gw_limits *l = req->lp->srv->limits;
  if (!l || (!req->lp->srv->cfg.mcp_rate_per_user && !req->lp->srv->cfg.mcp_rate_per_tenant)) return 0;
  int64_t now = now_ms(), wait = 0;
  if (req->lp->srv->cfg.mcp_rate_per_user) {
    char key[GW_RATELIMIT_KEY_MAX + 1];
    user_key(tenant, user, key);
    if ((wait = gw_ratelimit_take(l->mcp_user, key, now)))
      atomic_fetch_add_explicit(&l->mcp_user_limited, 1, memory_order_relaxed);
  }
  if (!wait && req->lp->srv->cfg.mcp_rate_per_tenant &&
      (wait = gw_ratelimit_take(l->mcp_tenant, tenant, now))) {
    atomic_fetch_add_explicit(&l->mcp_tenant_limited, 1, memory_order_relaxed);
    /* refused for the tenant: the user's token is given back, or a client
     * retrying while its tenant is out would spend its own budget on
     * requests that never ran, and stay refused after the tenant's refilled */
    if (req->lp->srv->cfg.mcp_rate_per_user) {
      char key[GW_RATELIMIT_KEY_MAX + 1];
      user_key(tenant, user, key);
      gw_ratelimit_give_n(l->mcp_user, key, 1);
    }
  }
  if (wait) retry_after(req, wait);
  return wait;
}

int64_t gw_limits_mcp_json(gw_req *req, const char *tenant, const char *user, int64_t mib) {
  gw_limits *l = req->lp->srv->limits;
  if (!l || mib <= 0) return 0;
  int64_t now = now_ms(), wait;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key(tenant, user, key);
  if ((wait = gw_ratelimit_take_n(l->json_user, key, mib, now))) {
    atomic_fetch_add_explicit(&l->json_user_limited, 1, memory_order_relaxed);
  } else if ((wait = gw_ratelimit_take_n(l->json_tenant, tenant, mib, now))) {
    atomic_fetch_add_explicit(&l->json_tenant_limited, 1, memory_order_relaxed);
    gw_ratelimit_give_n(l->json_user, key, mib); /* not parsed: the user's MiBs back (gw_limits_mcp) */
  }
  if (wait) retry_after(req, wait);
  return wait;
}

int64_t gw_limits_mcp_reply_json(gw_server *srv, const char *tenant, const char *user, int64_t mib) {
  gw_limits *l = srv->limits;
  if (!l || mib <= 0) return 0;
  int64_t now = now_ms(), wait = 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  if (user && *user) {
    user_key(tenant, user, key);
    wait = gw_ratelimit_take_n(l->json_user, key, mib, now);
  }
  if (!wait && (wait = gw_ratelimit_take_n(l->json_tenant, tenant, mib, now)) && user && *user)
    gw_ratelimit_give_n(l->json_user, key, mib); /* not parsed: the user's MiBs back */
  if (wait) atomic_fetch_add_explicit(&l->json_reply_limited, 1, memory_order_relaxed);
  return wait;
}

/* The slot of key, made when absent (NULL: out of memory). Under l->mu. */
static slot *slot_of(gw_limits *l, const char *key, bool heavy) {
  uint32_t b = key_hash(key) % SLOT_BUCKETS;
  slot *s = l->slots[b];
  while (s && strcmp(s->key, key)) s = s->next;
  if (!s && (s = calloc(1, sizeof *s))) {
    memcpy(s->key, key, strnlen(key, SLOT_KEY_MAX)); /* calloc'd: NUL-terminated */
    s->bucket = b;
    s->heavy = heavy;
    s->next = l->slots[b];
    l->slots[b] = s;
  }
  return s;
}

static void conn_key(const char *peer, char out[GW_RATELIMIT_KEY_MAX + 1]) {
  char a[GW_RATELIMIT_KEY_MAX + 1];
  gw_ratelimit_addr_key(peer, a);
  size_t n = strnlen(a, GW_RATELIMIT_KEY_MAX - 3); /* an address key is short: never cut */
  memcpy(out, "ip ", 3); /* a user's key is "tenant/user": no space */
  memcpy(out + 3, a, n);
  out[3 + n] = 0;
}

int gw_limits_conn_open(gw_server *srv, const char *peer) {
  gw_limits *l = srv->limits;
  int64_t max = srv->cfg.connections_per_address;
  if (!l || max <= 0 || !peer || !*peer || strcmp(peer, "-") == 0) return 0;
  if (srv->trusted && gw_trusted_has(srv->trusted, peer)) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  conn_key(peer, key);
  uv_mutex_lock(&l->mu);
  slot *s = slot_of(l, key, false);
  bool over = !s || s->open >= max;
  if (!over) s->open++;
  uv_mutex_unlock(&l->mu);
  if (over) {
    atomic_fetch_add_explicit(&l->conns_address_limited, 1, memory_order_relaxed);
    return -1;
  }
  return 1;
}

void gw_limits_conn_closed(gw_server *srv, const char *peer) {
  gw_limits *l = srv->limits;
  if (!l || !peer) return;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  conn_key(peer, key);
  uint32_t b = key_hash(key) % SLOT_BUCKETS;
  uv_mutex_lock(&l->mu);
  slot **pp = &l->slots[b];
  while (*pp && strcmp((*pp)->key, key)) pp = &(*pp)->next;
  slot *s = *pp;
  if (s && --s->open <= 0) { /* the address has nothing open: the entry goes */
    *pp = s->next;
    free(s);
  }
  uv_mutex_unlock(&l->mu);
}

/* req holds a slot already (req->limits_slot): whether it is the slot of
 * key, the one the caller would take — one request holds one unit of it
 * (SCIM's large body parse, then its scan; an audit query's two steps),
 * and passes. Any other slot: false, and the caller refuses as over its
 * limit (limits.h: a request holds one slot; fail closed). A slot's key
 * never changes while a request holds it: read without the mutex. */
static bool holds_same(gw_req *req, const char *key) {
  const slot *s = req->limits_slot;
  if (!strcmp(s->key, key)) return true;
  gw_log_ctx lc = {req->tenant[0] ? req->tenant : NULL, req->id};
  GW_LOG(GW_LOG_ERROR, "limits", &lc, "a request that holds a concurrency slot asked for another one (one per request: "
         "gateway/core/limits.h): refused");
  return false;
}

int64_t gw_limits_mcp_enter(gw_req *req, const char *tenant, const char *user) {
  gw_server *srv = req->lp->srv;
  gw_limits *l = srv->limits;
  int64_t max = srv->cfg.mcp_concurrent_per_user;
  if (!l || max <= 0) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key(tenant, user, key);
  bool over = true;
  slot *s = NULL;
  if (req->limits_slot) {
    if (holds_same(req, key)) return 0;
  } else {
    uv_mutex_lock(&l->mu);
    s = slot_of(l, key, false);
    over = !s || s->open >= max; /* out of memory: refused (fail closed) */
    if (!over) s->open++;
    uv_mutex_unlock(&l->mu);
  }
  if (over) {
    atomic_fetch_add_explicit(&l->mcp_concurrent_limited, 1, memory_order_relaxed);
    retry_after(req, 1);
    return 1;
  }
  req->limits_slot = s;
  return 0;
}

bool gw_limits_mcp_more(gw_req *req, int n) {
  gw_server *srv = req->lp->srv;
  gw_limits *l = srv->limits;
  slot *s = req->limits_slot;
  if (!l || !s || n <= 0) return true;
  if (s->heavy || s->write || s->parent) return false; /* not a user's slot: never asked */
  int64_t max = srv->cfg.mcp_concurrent_per_user;
  uv_mutex_lock(&l->mu);
  bool over = max > 0 && s->open + n > max;
  if (!over) s->open += n;
  uv_mutex_unlock(&l->mu);
  if (over) {
    atomic_fetch_add_explicit(&l->mcp_concurrent_limited, 1, memory_order_relaxed);
    return false;
  }
  req->limits_more += n;
  return true;
}

void gw_limits_mcp_less(gw_req *req, int n) {
  gw_limits *l = req->lp->srv->limits;
  slot *s = req->limits_slot;
  if (!l || !s || n <= 0) return;
  if (n > req->limits_more) n = req->limits_more;
  req->limits_more -= n;
  uv_mutex_lock(&l->mu);
  s->open -= n; /* the request's own unit keeps the entry */
  uv_mutex_unlock(&l->mu);
}

int gw_limits_heavy_take(gw_req *req, const char *tenant, gw_heavy_kind kind) {
  gw_limits *l = req->lp->srv->limits;
  if (!l) return 0;
  /* "tenant/" and a byte no user id has: never a user's slot */
  static const char *const kinds[] = {"\x01audit", "\x01reviewers", "\x01scim", "\x01policy", "\x01lists"};
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key(tenant, kinds[kind], key);
  if (req->limits_slot) return holds_same(req, key) ? 0 : 429;
  uv_mutex_lock(&l->mu);
  int status = 0;
  slot *s = NULL;
  if (l->heavy_open >= l->heavy_max) status = 503;
  else if (!(s = slot_of(l, key, true)) || s->open >= GW_HEAVY_PER_TENANT) status = 429;
  if (!status) {
    s->open++;
    l->heavy_open++;
    req->limits_slot = s;
  }
  uv_mutex_unlock(&l->mu);
  return status;
}

void gw_limits_heavy_refused(gw_req *req, int status) {
  gw_limits *l = req->lp->srv->limits;
  if (!l) return;
  atomic_fetch_add_explicit(status == 503 ? &l->heavy_process_limited : &l->heavy_tenant_limited, 1,
                            memory_order_relaxed);
  retry_after(req, 1);
}

int gw_limits_heavy_enter(gw_req *req, const char *tenant, gw_heavy_kind kind) {
  int status = gw_limits_heavy_take(req, tenant, kind);
  if (status) gw_limits_heavy_refused(req, status);
  return status;
}

int gw_limits_write_enter(gw_req *req, const char *tenant) {
  gw_limits *l = req->lp->srv->limits;
  if (!l) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key(tenant, "\x01write", key);
  int status = 0;
  if (req->limits_slot) {
    if (holds_same(req, key)) return 0;
    status = 429;
  } else {
    uv_mutex_lock(&l->mu);
    slot *s = NULL;
    if (l->writes_open >= GW_HEAVY_WRITES_MAX) status = 503;
    else if (!(s = slot_of(l, key, false)) || s->open >= 1) status = 429;
    if (!status) {
      s->open++;
      s->write = true;
      l->writes_open++;
      req->limits_slot = s;
    }
    uv_mutex_unlock(&l->mu);
  }
  if (status) {
    atomic_fetch_add_explicit(status == 503 ? &l->write_process_limited : &l->write_tenant_limited, 1,
                              memory_order_relaxed);
    retry_after(req, 1);
  }
  return status;
}

int gw_limits_scim_body_enter(gw_req *req, const char *tenant, bool large) {
  gw_limits *l = req->lp->srv->limits;
  if (!l) return 0;
  char key[GW_RATELIMIT_KEY_MAX + 1];
  user_key(tenant, large ? "\x01scim-body-large" : "\x01scim-body", key);
  int64_t max = large ? GW_SCIM_LARGE_BODIES_PER_TENANT : GW_SCIM_BODIES_PER_TENANT;
  int status = 0;
  if (req->limits_slot) {
    if (holds_same(req, key)) return 0;
    status = 429;
  } else {
    uv_mutex_lock(&l->mu);
    slot *s = slot_of(l, key, false);
    if (!s || s->open >= max) status = 429;
    else {
      s->open++;
      req->limits_slot = s;
    }
    uv_mutex_unlock(&l->mu);
  }
  if (status) {
    atomic_fetch_add_explicit(&l->scim_body_limited, 1, memory_order_relaxed);
    retry_after(req, 1);
  }
  return status;
}

/* Drops s from its bucket and frees it. Under l->mu. */
static void slot_drop(gw_limits *l, slot *s) {
  slot **pp = &l->slots[s->bucket];
  while (*pp && *pp != s) pp = &(*pp)->next;
  if (*pp) *pp = s->next;
  free(s);
}

int gw_limits_discover_enter(gw_req *req, const char *tenant, const char *connector) {
  gw_limits *l = req->lp->srv->limits;
  if (!l) return 0;
  /* "tenant/" and a byte no user id has: never a user's slot; whole (a
   * 63-byte tenant id and a 32-byte connector name fit: no two connectors
   * share one) */
  char tkey[SLOT_KEY_MAX + 1], ckey[SLOT_KEY_MAX + 1];
  snprintf(tkey, sizeof tkey, "%.63s/\x01discover", tenant);
  snprintf(ckey, sizeof ckey, "%.63s/\x01discover %.40s", tenant, connector);
  if (req->limits_slot) {
    if (holds_same(req, ckey)) return 0; /* the request's own connector slot */
    atomic_fetch_add_explicit(&l->discover_tenant_limited, 1, memory_order_relaxed);
    retry_after(req, GW_DISCOVER_RETRY_S);
    return GW_DISCOVER_TENANT;
  }
  uv_mutex_lock(&l->mu);
  int status = 0;
  slot *t = slot_of(l, tkey, false), *c = t ? slot_of(l, ckey, false) : NULL;
  if (!t || !c) status = GW_DISCOVER_TENANT; /* out of memory: refused (fail closed) */
  else if (c->open >= 1) status = GW_DISCOVER_CONNECTOR;
  else if (t->open >= GW_DISCOVER_PER_TENANT) status = GW_DISCOVER_TENANT;
  if (!status) {
    c->open++;
    c->parent = t;
    t->open++;
    req->limits_slot = c;
  } else {
    /* entries made only for this question go again */
    if (c && c->open <= 0) slot_drop(l, c);
    if (t && t->open <= 0) slot_drop(l, t);
  }
  uv_mutex_unlock(&l->mu);
  if (status) {
    atomic_fetch_add_explicit(status == GW_DISCOVER_CONNECTOR ? &l->discover_connector_limited
                                                              : &l->discover_tenant_limited,
                              1, memory_order_relaxed);
    retry_after(req, GW_DISCOVER_RETRY_S);
  }
  return status;
}

void gw_limits_request_done(gw_server *srv, gw_req *req) {
  gw_limits *l = srv->limits;
  slot *s = req->limits_slot;
  if (!l || !s) return;
  req->limits_slot = NULL;
  int64_t units = 1 + req->limits_more;
  req->limits_more = 0;
  uv_mutex_lock(&l->mu);
  if (s->heavy) l->heavy_open--;
  if (s->write) l->writes_open--;
  slot *parent = s->parent; /* a discovery's tenant slot: one unit is this request's */
  if ((s->open -= units) <= 0) slot_drop(l, s); /* the user has nothing open: the entry goes */
  if (parent && --parent->open <= 0) slot_drop(l, parent);
  uv_mutex_unlock(&l->mu);
}

void gw_limits_release(gw_req *req) { gw_limits_request_done(req->lp->srv, req); }

void gw_limits_metrics(gw_server *srv, gw_buf *out) {
  gw_limits *l = srv->limits;
  if (!l) return;
  uv_mutex_lock(&l->mu);
  long long heavy_open = (long long)l->heavy_open;
  uv_mutex_unlock(&l->mu);
  gw_buf_printf(out,
                "# HELP mcpgate_heavy_writes_limited_total Policy PUTs and OAuth client deletes refused because their tenant (429) or the "
                "process (503) had the most on the store writer at once.\n"
                "# TYPE mcpgate_heavy_writes_limited_total counter\n"
                "mcpgate_heavy_writes_limited_total{limit=\"tenant\"} %llu\n"
                "mcpgate_heavy_writes_limited_total{limit=\"process\"} %llu\n",
                (unsigned long long)atomic_load(&l->write_tenant_limited),
                (unsigned long long)atomic_load(&l->write_process_limited));
  gw_buf_printf(out,
                "# HELP mcpgate_discoveries_limited_total Connector discoveries (a discovering PUT, POST "
                "…/rediscover) refused (429) because their connector (connector) or their tenant (tenant) had the "
                "most running at once.\n"
                "# TYPE mcpgate_discoveries_limited_total counter\n"
                "mcpgate_discoveries_limited_total{limit=\"tenant\"} %llu\n"
                "mcpgate_discoveries_limited_total{limit=\"connector\"} %llu\n",
                (unsigned long long)atomic_load(&l->discover_tenant_limited),
                (unsigned long long)atomic_load(&l->discover_connector_limited));
  gw_buf_printf(out,
                "# HELP mcpgate_scim_bodies_limited_total SCIM requests refused (429) before their body was read because "
                "their tenant had the most bodies coming in at once (GW_SCIM_BODIES_PER_TENANT, or "
                "GW_SCIM_LARGE_BODIES_PER_TENANT past 256 KiB).\n"
                "# TYPE mcpgate_scim_bodies_limited_total counter\nmcpgate_scim_bodies_limited_total %llu\n",
                (unsigned long long)atomic_load(&l->scim_body_limited));
  gw_buf_printf(out,
                "# HELP mcpgate_heavy_reads_open Audit queries and exports, reviewers' lists, SCIM scans, policy views and "
                "admin lists running now (every tenant).\n# TYPE mcpgate_heavy_reads_open gauge\nmcpgate_heavy_reads_open %lld\n",
                heavy_open);
  gw_buf_printf(out,
                "# HELP mcpgate_connections_address_limited_total Client connections refused (503, closed) because "
                "their address held connections_per_address already.\n"
                "# TYPE mcpgate_connections_address_limited_total counter\nmcpgate_connections_address_limited_total %llu\n"
                "# HELP mcpgate_auth_failures_limited_total Requests with a credential that did not verify, answered "
                "429 because their address passed auth_failures_per_address.\n"
                "# TYPE mcpgate_auth_failures_limited_total counter\nmcpgate_auth_failures_limited_total %llu\n"
                "# HELP mcpgate_mcp_rate_limited_total MCP requests refused (429) by mcp_rate_per_user or "
                "mcp_rate_per_tenant, mcp_concurrent_per_user, mcp_json_mib_per_user or mcp_json_mib_per_tenant; "
                "json_reply: upstream replies and events left unparsed by mcp_json_mib_per_user or mcp_json_mib_per_tenant.\n"
                "# TYPE mcpgate_mcp_rate_limited_total counter\n"
                "mcpgate_mcp_rate_limited_total{limit=\"user\"} %llu\nmcpgate_mcp_rate_limited_total{limit=\"tenant\"} %llu\n"
                "mcpgate_mcp_rate_limited_total{limit=\"concurrent\"} %llu\n"
                "mcpgate_mcp_rate_limited_total{limit=\"json_user\"} %llu\n"
                "mcpgate_mcp_rate_limited_total{limit=\"json_tenant\"} %llu\n"
                "mcpgate_mcp_rate_limited_total{limit=\"json_reply\"} %llu\n"
                "# HELP mcpgate_heavy_reads_limited_total Audit queries and exports, reviewers' lists, SCIM scans, policy views "
                "and admin lists refused because their tenant (429) or the process (503) had the most open at once.\n"
                "# TYPE mcpgate_heavy_reads_limited_total counter\n"
                "mcpgate_heavy_reads_limited_total{limit=\"tenant\"} %llu\n"
                "mcpgate_heavy_reads_limited_total{limit=\"process\"} %llu\n",
                (unsigned long long)atomic_load(&l->conns_address_limited),
                (unsigned long long)atomic_load(&l->auth_limited), (unsigned long long)atomic_load(&l->mcp_user_limited),
                (unsigned long long)atomic_load(&l->mcp_tenant_limited),
                (unsigned long long)atomic_load(&l->mcp_concurrent_limited),
                (unsigned long long)atomic_load(&l->json_user_limited),
                (unsigned long long)atomic_load(&l->json_tenant_limited),
                (unsigned long long)atomic_load(&l->json_reply_limited),
                (unsigned long long)atomic_load(&l->heavy_tenant_limited),
                (unsigned long long)atomic_load(&l->heavy_process_limited));
}
