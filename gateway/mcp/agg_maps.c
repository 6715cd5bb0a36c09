/* gateway/mcp/agg_maps.c — the aggregated endpoint's per-session state in
 * memory (see agg.h), in two typed indexes by session id: resource routes (URI or template prefix → connector)
 * and outstanding server→client requests (with the client's calls awaited on
 * the GET stream and the progress tokens of its requests), and the rewrite
 * of relayed upstream messages that feeds them (gw__agg_rewrite: server→client
 * request ids; also tool lists filtered by policy, a response on a call's
 * stream delivered only as the answer to that call, one on the GET stream
 * only as the answer to a call of that connector awaiting it there, a
 * URL elicitation's id renamed for its connector, and a notification
 * naming another connector's progress token, question, elicitation or
 * resource dropped).
 *
 * Rules this file keeps, and why: every map is capped — SESSIONS_MAX
 * sessions per map, all tenants together (past it, the oldest entry of
 * the tenant adding one when it holds its share or more, else of the
 * tenant holding the most: one tenant's sessions never push out the maps
 * of a tenant holding less than its share), ASKED_PER_SESSION questions (and as
 * many awaited calls, progress tokens and URL elicitations) per session
 * (one session's upstream cannot push out another's, nor one connector's
 * questions or elicitations the fewer another asked: asked_add), and
 * agg_uri_map_max URIs, agg_uri_map_bytes of them, per session (logged
 * once) — and each session's entry
 * records its owner so it goes with the session: at DELETE, when its user
 * or tenant is revoked, and in the sweep of evicted or expired sessions —
 * and at most the user's session cap of entries per user in each index
 * (min(the tenant's sessions_per_user_max, the operator's) as their newest
 * session was created under: the store applies a lowered cap from the
 * user's next session on; past it, the entries of the sessions the store
 * evicted go: the user's oldest BY CREATION, as the store orders them,
 * never a live session's first used; and a session older than every
 * entry of its user at the cap is the one the store evicted: a late note
 * of it makes no entry and pushes out none), so sessions opened faster
 * than the sweep runs cannot pile up.
 * A URI several connectors offer (exactly, or by templates covering it)
 * is routed to none of them (logged). No lookup a message makes walks a
 * session's map (an upstream lists agg_uri_map_max URIs, then floods
 * updates): a URI is hashed, the templates covering it are found in a
 * radix tree by the URI's own bytes (uri_offers), and evictions walk one
 * user's or one tenant's entries, never the index. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

/* Per-session state in memory, in two process-wide indexes keyed by the
 * gateway session id (sh->agg_uris: resource routes; sh->asked:
 * outstanding server→client requests), under sh->maps_mu: a session's
 * requests reach whichever loop accepted their connection. Each session's
 * entry records its owner so revocations free it; the sweep on the
 * primary's session purge timer frees those of sessions evicted or
 * expired. At most SESSIONS_MAX sessions per index (tenant_to_yield says
 * whose goes past it; MCPGATE_TEST_AGG_SESSIONS_MAX, a test hook read in
 * mcp_loop.c, lowers it). Entries are listed by tenant and by user, so no
 * eviction walks the whole index.
 *
 * Every loop's aggregated requests take maps_mu, so nothing slow runs
 * under it: the sweep reads the store (a session record per session with
 * an entry) without it — it notes the sessions and each entry's stamp
 * (gen) under it, reads, then drops under it, in batches, only the
 * entries still bearing the stamp it checked (not one made again since);
 * and an entry deleted under it (an eviction, a revocation's walk of a
 * tenant's or a user's entries, the sweep) is only unlinked there — its
 * maps, up to agg_uri_map_max URIs, are freed once maps_mu is released
 * (maps_unlock: every release of maps_mu in this file). */
#define SESSIONS_MAX 10000
#define ASKED_PER_SESSION 64
#define BUCKETS 4096 /* a power of two; chains stay short up to SESSIONS_MAX */
#define TENANT_BUCKETS 256 /* a power of two */

/* A tenant's entries in one index (its sessions'). */
typedef struct agg_tenant {
  struct agg_tenant *hnext;          /* bucket chain */
  struct agg_tenant *prev, *next;    /* the index's tenants */
  struct agg_entry *oldest, *newest; /* its entries (older, newer), in insertion order */
  size_t n;
  char tenant[64];
} agg_tenant;

/* A user's entries in one index (their sessions'). */
typedef struct agg_owner {
  struct agg_owner *hnext; /* bucket chain */
  struct agg_entry *first; /* its entries (unext), newest first */
  size_t n;
  char tenant[64], user[40];
} agg_owner;

/* One session's entry in one index. */
typedef struct agg_entry {
  struct agg_entry *hnext;         /* bucket chain */
  struct agg_entry *older, *newer; /* its tenant's entries, in insertion order */
  struct agg_entry *uprev, *unext; /* its owner's entries */
  agg_tenant *ten;
  agg_owner *own;
  char sid[96];
  char tenant[64], user[40];       /* the session's owner */
  int64_t created_ms;              /* the session's, as stored */
  char hex[65];                    /* sha256(sid) in hex: with created_ms, the store's eviction order */
  size_t cap;                      /* the user's session cap the session was created under (user_cap) */
  uint64_t gen;                    /* sh->maps_gen when made: tells a sweep's entry from one made again since */
  size_t sweep_at;                 /* routes: its item in the sweep being taken (gw__agg_sweep_begin only) */
  json_t *map;                     /* routes: "U"uri → connector (templates: tpl); asked: "connector\nid" → true,
                                    * oldest first (a dictionary of strings) */
  json_t *awaited;                 /* asked only: the client's calls whose reply comes on the GET stream,
                                    * "connector\nid" → true, oldest first; or NULL */
  json_t *tokens;                  /* asked only: the progress tokens of the client's requests, token as
                                    * JSON → the connector it went to, oldest first; or NULL */
  json_t *elicits;                 /* asked only: URL elicitations the upstreams asked the client and have
                                    * not completed, "connector\nelicitationId" → true, oldest first; or NULL */
  struct tpl_node *tpl;            /* routes: the templates' literal prefixes (a radix tree), or NULL */
  size_t ntpl;                     /* routes: how many (the "T" keys; the "U" keys are in map) */
  size_t bytes;                    /* routes: the keys' bytes (agg_uri_map_bytes) */
  bool full;                       /* routes: agg_uri_map_max or _bytes reached (logged once) */
} agg_entry;

struct gw_agg_index {
  agg_entry *b[BUCKETS];
  agg_owner *ob[BUCKETS];
  agg_tenant *tb[TENANT_BUCKETS];
  agg_tenant *tenants; /* every tenant with an entry (prev, next) */
  size_t n, ntenants;
  agg_entry *dead;     /* deleted entries (hnext) whose maps maps_unlock frees, after the unlock */
};

static uint32_t fnv(uint32_t h, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

static size_t bucket_of(const char *sid) { return fnv(2166136261u, sid) & (BUCKETS - 1); }

static size_t owner_bucket(const char *tenant, const char *user) {
  return fnv(fnv(2166136261u, tenant) * 16777619u, user) & (BUCKETS - 1); /* a \0 between them */
}

static agg_entry *entry_get(const gw_agg_index *ix, const char *sid) {
  if (!ix) return NULL;
  for (agg_entry *e = ix->b[bucket_of(sid)]; e; e = e->hnext)
    if (!strcmp(e->sid, sid)) return e;
  return NULL;
}

/* The tenant's entries in ix, made (empty) when create; NULL: none, or no memory. */
static agg_tenant *tenant_get(gw_agg_index *ix, const char *tenant, bool create) {
  agg_tenant **head = &ix->tb[fnv(2166136261u, tenant) & (TENANT_BUCKETS - 1)];
  for (agg_tenant *t = *head; t; t = t->hnext)
    if (!strcmp(t->tenant, tenant)) return t;
  agg_tenant *t = create ? calloc(1, sizeof *t) : NULL;
  if (!t) return NULL;
  gw_strlcpy(t->tenant, tenant, sizeof t->tenant);
  t->hnext = *head;
  *head = t;
  t->next = ix->tenants;
  if (ix->tenants) ix->tenants->prev = t;
  ix->tenants = t;
  ix->ntenants++;
  return t;
}

/* t (without entries) leaves ix. */
static void tenant_drop(gw_agg_index *ix, agg_tenant *t) {
  agg_tenant **tp = &ix->tb[fnv(2166136261u, t->tenant) & (TENANT_BUCKETS - 1)];
  while (*tp != t) tp = &(*tp)->hnext;
  *tp = t->hnext;
  if (t->prev) t->prev->next = t->next;
  else ix->tenants = t->next;
  if (t->next) t->next->prev = t->prev;
  ix->ntenants--;
  free(t);
}

/* The user's entries in ix, made (empty) when create; NULL: none, or no memory. */
static agg_owner *owner_get(gw_agg_index *ix, const char *tenant, const char *user, bool create) {
  agg_owner **head = &ix->ob[owner_bucket(tenant, user)];
  for (agg_owner *o = *head; o; o = o->hnext)
    if (!strcmp(o->user, user) && !strcmp(o->tenant, tenant)) return o;
  agg_owner *o = create ? calloc(1, sizeof *o) : NULL;
  if (!o) return NULL;
  gw_strlcpy(o->tenant, tenant, sizeof o->tenant);
  gw_strlcpy(o->user, user, sizeof o->user);
  o->hnext = *head;
  *head = o;
  return o;
}

/* o (without entries) leaves ix. */
static void owner_drop(gw_agg_index *ix, agg_owner *o) {
  agg_owner **op = &ix->ob[owner_bucket(o->tenant, o->user)];
  while (*op != o) op = &(*op)->hnext;
  *op = o->hnext;
  free(o);
}

static void tpl_free(struct tpl_node *root);

static void entry_del(gw_agg_index *ix, agg_entry *e) {
  agg_entry **pp = &ix->b[bucket_of(e->sid)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  agg_tenant *t = e->ten;
  if (e->older) e->older->newer = e->newer;
  else t->oldest = e->newer;
  if (e->newer) e->newer->older = e->older;
  else t->newest = e->older;
  if (!--t->n) tenant_drop(ix, t);
  ix->n--;
  agg_owner *o = e->own;
  if (e->uprev) e->uprev->unext = e->unext;
  else o->first = e->unext;
  if (e->unext) e->unext->uprev = e->uprev;
  if (!--o->n) owner_drop(ix, o); /* the owner's last: it goes too */
  /* its maps (up to agg_uri_map_max URIs, and their tree) are freed after
   * maps_mu is released: nothing reaches them once unlinked */
  e->hnext = ix->dead;
  ix->dead = e;
}

static void entries_free(agg_entry *e) {
  for (agg_entry *n; e; e = n) {
    n = e->hnext;
    json_decref(e->map);
    json_decref(e->awaited);
    json_decref(e->tokens);
    json_decref(e->elicits);
    tpl_free(e->tpl);
    free(e);
  }
}

/* Releases maps_mu, then frees what was deleted under it. */
static void maps_unlock(gw_mcp_shared *sh) {
  agg_entry *a = sh->asked ? sh->asked->dead : NULL, *u = sh->agg_uris ? sh->agg_uris->dead : NULL;
  if (a) sh->asked->dead = NULL;
  if (u) sh->agg_uris->dead = NULL;
  uv_mutex_unlock(&sh->maps_mu);
  entries_free(a);
  entries_free(u);
}

/* Whether a's session was created before b's in the store's eviction
 * order (created_ms, then the hash: mcp_session.c's on_session_created). */
static bool created_before(int64_t a_ms, const char *a_hex, int64_t b_ms, const char *b_hex) {
  return a_ms < b_ms || (a_ms == b_ms && strcmp(a_hex, b_hex) < 0);
}

/* The entry of the session the store evicts first among o's: the oldest
 * created. */
static agg_entry *owner_first_created(const agg_owner *o) {
  agg_entry *v = o->first;
  for (agg_entry *e = v ? v->unext : NULL; e; e = e->unext)
    if (created_before(e->created_ms, e->hex, v->created_ms, v->hex)) v = e;
  return v;
}

/* The entry of o's session created last. */
static agg_entry *owner_last_created(const agg_owner *o) {
  agg_entry *v = o->first;
  for (agg_entry *e = v ? v->unext : NULL; e; e = e->unext)
    if (created_before(v->created_ms, v->hex, e->created_ms, e->hex)) v = e;
  return v;
}

/* The per-user session cap x's session was created under: min(the
 * tenant's then, the operator's), as the store's eviction at its creation
 * applied it (mcp_session.h: a record without the tenant's, the
 * operator's). */
static size_t user_cap(const gw_exchange *x) {
  int64_t op = x->lp->srv->cfg.sessions_per_user_max, t = x->sess.user_max;
  return (size_t)(t > 0 && t < op ? t : op);
}

static size_t sessions_max(const gw_mcp_shared *sh) {
  return sh->agg_sessions_max ? sh->agg_sessions_max : SESSIONS_MAX;
}

/* ix is full and tenant adds an entry: the tenant whose oldest entry goes.
 * Tenant itself when it holds its share or more (the index's entries over
 * its tenants, tenant counted), else the one holding the most: a tenant
 * holding less than its share never loses an entry to another's sessions.
 * Walks the tenants only when tenant is under its share. */
static agg_tenant *tenant_to_yield(gw_agg_index *ix, const char *tenant) {
  agg_tenant *mine = tenant_get(ix, tenant, false);
  if (mine && mine->n * ix->ntenants >= ix->n) return mine;
  agg_tenant *top = ix->tenants;
  for (agg_tenant *t = top; t; t = t->next)
    if (t->n > top->n) top = t;
  return top;
}

/* x's session entry in *ixp, made (with its owner) when create. */
static agg_entry *session_entry(gw_agg_index **ixp, const gw_exchange *x, bool create) {
  if (!*ixp) {
    if (!create || !(*ixp = calloc(1, sizeof **ixp))) return NULL;
  }
  gw_agg_index *ix = *ixp;
  agg_entry *e = entry_get(ix, x->sid);
  if (e || !create) return e;
  /* a user holds at most their session cap: past that many entries of
   * theirs, the oldest belong to sessions the store evicted (or that
   * expired) and the sweep has not freed yet — they go now, so a user who
   * keeps opening sessions cannot fill the index (and memory) until the
   * next sweep. Which ones: the store evicts a user's oldest sessions BY
   * CREATION, so the oldest created here (and not the one first used: a
   * live session used before one that is gone would lose its maps). Which
   * cap: the one the user's newest session here was created under — the
   * store evicted by it then, and a cap lowered since applies only from
   * the user's next session on (the tenant's, when lower than the
   * operator's: mcp_session.h) */
  char hex[65];
  gw_session_hex(x->sid, hex);
  size_t cap = user_cap(x);
  agg_owner *mine = owner_get(ix, x->tenant, x->user, false);
  agg_entry *last = mine ? owner_last_created(mine) : NULL;
  if (last && created_before(x->sess.created_ms, hex, last->created_ms, last->hex)) cap = last->cap;
  /* at the cap with every entry of the user's created after x's session,
   * x's is the one the store evicted (a request that loaded it before the
   * eviction, noting now): not made again — it would push out the user's
   * oldest LIVE session's maps */
  if (mine && mine->n >= cap) {
    agg_entry *first = owner_first_created(mine);
    if (created_before(x->sess.created_ms, hex, first->created_ms, first->hex)) return NULL;
  }
  while (mine && mine->n >= cap) {
    bool lastone = mine->n == 1; /* its delete frees mine */
    entry_del(ix, owner_first_created(mine));
    if (lastone) mine = NULL;
  }
  if (ix->n >= sessions_max(x->lp->srv->mcp)) entry_del(ix, tenant_to_yield(ix, x->tenant)->oldest);
  agg_tenant *t = tenant_get(ix, x->tenant, true);
  agg_owner *o = t ? owner_get(ix, x->tenant, x->user, true) : NULL;
  if (!o || !(e = calloc(1, sizeof *e)) || !(e->map = json_object())) {
    free(e);
    if (o && !o->n) owner_drop(ix, o); /* made for nothing */
    if (t && !t->n) tenant_drop(ix, t);
    return NULL;
  }
  gw_strlcpy(e->sid, x->sid, sizeof e->sid);
  gw_strlcpy(e->tenant, x->tenant, sizeof e->tenant);
  gw_strlcpy(e->user, x->user, sizeof e->user);
  e->created_ms = x->sess.created_ms;
  memcpy(e->hex, hex, sizeof e->hex);
  e->cap = user_cap(x);
  e->gen = ++x->lp->srv->mcp->maps_gen;
  size_t h = bucket_of(e->sid);
  e->hnext = ix->b[h];
  ix->b[h] = e;
  e->ten = t;
  e->older = t->newest;
  if (t->newest) t->newest->newer = e;
  else t->oldest = e;
  t->newest = e;
  t->n++;
  ix->n++;
  e->own = o;
  e->unext = o->first;
  if (o->first) o->first->uprev = e;
  o->first = e;
  o->n++;
  return e;
}

/* ix (taken out of sh under maps_mu: nobody else reaches it) and its entries go. */
static void index_free(gw_agg_index *ix) {
  if (!ix) return;
  while (ix->tenants) entry_del(ix, ix->tenants->oldest);
  entries_free(ix->dead);
  free(ix);
}

size_t gw__agg_uri_maps(gw_mcp_shared *sh) {
  uv_mutex_lock(&sh->maps_mu);
  size_t n = sh->agg_uris ? sh->agg_uris->n : 0;
  maps_unlock(sh);
  return n;
}

/* Resource URIs (and template prefixes) seen in lists and results, per
 * client session: resources keep their URIs, so reads route by this map.
 * A key offered by several connectors holds all their names (an array):
 * such a URI is not routed at all — any one of them could be the upstream
 * that listed another's URIs to receive its reads (fails closed; each
 * connector's own endpoint still reads it).
 *
 * Both lookups (a read's route; whether an upstream's resources/updated
 * names its own resource) run under maps_mu for every such message, and
 * an upstream may list agg_uri_map_max URIs and then flood updates: they
 * never walk the map. A URI is looked up exactly in e->map (a hash), and
 * the templates covering it are found in e->tpl, a radix tree of the
 * templates' literal prefixes, by walking the URI's own bytes down from
 * the root: the work is bounded by the URI's length (sh->uri_steps counts
 * it for the tests), however many URIs and templates the session noted. */
#define URI_OFFERS_MAX 8

/* A node of a session's template tree: the path from the root spells a
 * literal prefix; offers, where a template's prefix ends. */
typedef struct tpl_node {
  struct tpl_node *all;   /* the tree's nodes after the root, for freeing */
  struct tpl_node **kids; /* sorted by their label's first byte (all differ) */
  unsigned nkids, capkids;
  json_t *offers;         /* a template's prefix ends here: its connector's name, or an array of names; or NULL */
  size_t len;
  char label[];           /* the bytes from the parent to here (not terminated) */
} tpl_node;

static tpl_node *tpl_new(tpl_node *root, const char *p, size_t n) {
  tpl_node *t = calloc(1, sizeof *t + n);
  if (!t) return NULL;
  memcpy(t->label, p, n);
  t->len = n;
  if (root) {
    t->all = root->all;
    root->all = t;
  }
  return t;
}

static void tpl_free(tpl_node *root) {
  for (tpl_node *t = root, *n; t; t = n) {
    n = t->all;
    json_decref(t->offers);
    free(t->kids);
    free(t);
  }
}

/* t's child whose label starts with c, or NULL; *at: where it is or would go. */
static tpl_node *tpl_kid(const tpl_node *t, unsigned char c, unsigned *at, uint64_t *steps) {
  unsigned lo = 0, hi = t->nkids;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    unsigned char m = (unsigned char)t->kids[mid]->label[0];
    (*steps)++;
    if (m == c) {
      *at = mid;
      return t->kids[mid];
    }
    if (m < c) lo = mid + 1;
    else hi = mid;
  }
  *at = lo;
  return NULL;
}

static int tpl_add_kid(tpl_node *t, tpl_node *k, unsigned at) {
  if (t->nkids == t->capkids) {
    unsigned cap = t->capkids ? t->capkids * 2 : 2;
    tpl_node **nk = realloc(t->kids, cap * sizeof *nk);
    if (!nk) return -1;
    t->kids = nk;
    t->capkids = cap;
  }
  memmove(t->kids + at + 1, t->kids + at, (t->nkids - at) * sizeof *t->kids);
  t->kids[at] = k;
  t->nkids++;
  return 0;
}

/* The node where prefix p (n bytes) ends, made when create; NULL: none (or
 * no memory: the tree is left as it was, whole). */
static tpl_node *tpl_at(tpl_node *root, const char *p, size_t n, bool create) {
  uint64_t steps = 0;
  tpl_node *t = root;
  for (size_t pos = 0; pos < n;) {
    unsigned at;
    tpl_node *k = tpl_kid(t, (unsigned char)p[pos], &at, &steps);
    if (!k) {
      tpl_node *leaf = create ? tpl_new(NULL, p + pos, n - pos) : NULL;
      if (!leaf || tpl_add_kid(t, leaf, at)) {
        free(leaf);
        return NULL;
      }
      leaf->all = root->all;
      root->all = leaf;
      return leaf;
    }
    size_t c = 1, lim = k->len < n - pos ? k->len : n - pos;
    while (c < lim && k->label[c] == p[pos + c]) c++;
    if (c < k->len) {
      /* p leaves (or ends inside) k's label: k is split after c bytes */
      if (!create) return NULL;
      tpl_node *mid = tpl_new(NULL, k->label, c);
      if (!mid || !(mid->kids = malloc(2 * sizeof *mid->kids))) {
        free(mid);
        return NULL;
      }
      mid->all = root->all;
      root->all = mid;
      mid->capkids = 2;
      mid->kids[0] = k;
      mid->nkids = 1;
      memmove(k->label, k->label + c, k->len - c);
      k->len -= c;
      t->kids[at] = mid; /* the same first byte: the same place */
      k = mid;
    }
    t = k;
    pos += c;
  }
  return t;
}

/* visit(offers, ctx) for the exact key of uri in e and for each template
 * of e whose literal prefix uri starts with. */
static void uri_offers(gw_mcp_shared *sh, const agg_entry *e, const char *uri,
                       void (*visit)(const json_t *offers, void *ctx), void *ctx) {
  if (!e) return;
  char key[2100];
  snprintf(key, sizeof key, "U%.2000s", uri);
  sh->uri_steps++;
  json_t *v = json_object_get(e->map, key);
  if (v) visit(v, ctx);
  size_t n = strlen(uri);
  const tpl_node *t = e->tpl;
  for (size_t pos = 0; t;) {
    sh->uri_steps++;
    if (t->offers) visit(t->offers, ctx);
    unsigned at;
    const tpl_node *k = pos < n ? tpl_kid(t, (unsigned char)uri[pos], &at, &sh->uri_steps) : NULL;
    if (!k || k->len > n - pos || memcmp(k->label, uri + pos, k->len)) break;
    pos += k->len;
    t = k;
  }
}

static void uri_note(gw_mcp_shared *sh, gw_exchange *x, const char *uri, bool is_template);

void gw__agg_uri_note(gw_exchange *x, const char *uri, bool is_template) {
  if (!uri || !*uri || !x->connector[0]) return;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  uri_note(sh, x, uri, is_template);
  maps_unlock(sh);
}

/* Whether map value v (a name, or an array of names) names connector. */
static bool offers_has(const json_t *v, const char *connector) {
  if (json_is_string(v)) return !strcmp(json_string_value(v), connector);
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e) if (!strcmp(json_string_value(e) ?: "", connector)) return true;
  return false;
}

static void uri_note(gw_mcp_shared *sh, gw_exchange *x, const char *uri, bool is_template) {
  /* keys and their bytes as they always were: "U"uri, "T"prefix */
  char key[2100];
  if (is_template) {
    /* a template routes every URI that starts with its literal prefix — one
     * with no scheme in it ("{x}", "{scheme}://…") would route every URI
     * nobody listed: not kept */
    size_t n = strcspn(uri, "{");
    if (!memchr(uri, ':', n)) return;
    snprintf(key, sizeof key, "T%.*s", (int)(n < 2000 ? n : 2000), uri);
  } else {
    snprintf(key, sizeof key, "U%.2000s", uri);
  }
  agg_entry *e = session_entry(&sh->agg_uris, x, true);
  if (!e) return;
  size_t klen = strlen(key);
  if (is_template && !e->tpl && !(e->tpl = tpl_new(NULL, "", 0))) return;
  tpl_node *t = is_template ? tpl_at(e->tpl, key + 1, klen - 1, false) : NULL;
  json_t *have = is_template ? (t ? t->offers : NULL) : json_object_get(e->map, key);
  if (have && offers_has(have, x->connector)) return;
  /* the cap counts the entry itself as one, as it always has */
  if (!have && (1 + json_object_size(e->map) + e->ntpl + e->full >= (size_t)x->lp->srv->cfg.agg_uri_map_max ||
                e->bytes + klen > (size_t)x->lp->srv->cfg.agg_uri_map_bytes)) {
    if (!e->full) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
             "a client session noted agg_uri_map_max resource URIs (or agg_uri_map_bytes of them); further ones are "
             "not routed by name");
      e->full = true;
    }
    return;
  }
  if (!have) {
    if (!is_template) {
      if (!json_object_set_new(e->map, key, json_string(x->connector))) e->bytes += klen;
    } else if ((t = tpl_at(e->tpl, key + 1, klen - 1, true)) && (t->offers = json_string(x->connector))) {
      e->bytes += klen;
      e->ntpl++;
    }
    return;
  }
  if (json_is_string(have)) {
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
           "resource %s%.200s is offered by connectors %s and %s: not routed on the aggregated endpoint (each "
           "connector's own endpoint reads it)",
           is_template ? "template " : "", uri, json_string_value(have), x->connector);
    json_t *a = json_pack("[O]", have);
    if (!a) return;
    if (is_template) {
      json_decref(t->offers);
      t->offers = a;
    } else {
      json_object_set_new(e->map, key, a);
    }
    have = a;
  }
  if (json_array_size(have) < URI_OFFERS_MAX) json_array_append_new(have, json_string(x->connector));
}

/* Adds the names of map value v to set (an object used as a set). */
static void offers_add(const json_t *v, void *set) {
  if (json_is_string(v)) json_object_set_new(set, json_string_value(v), json_true());
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e) if (json_is_string(e)) json_object_set_new(set, json_string_value(e), json_true());
}

int gw__agg_uri_route(gw_exchange *x, const char *uri, char *out, size_t outsz) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  json_t *set = json_object();
  if (!set) return 0;
  /* the exact key, and every template covering it: a connector listing the
   * URI exactly does not take it from another whose template covers it */
  uv_mutex_lock(&sh->maps_mu);
  uri_offers(sh, entry_get(sh->agg_uris, x->sid), uri, offers_add, set);
  maps_unlock(sh);
  int rc = (int)json_object_size(set) > 1 ? -1 : (int)json_object_size(set);
  if (outsz) out[0] = 0;
  size_t n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(set, k, v) {
    int w = snprintf(out + n, outsz - n, "%s%s", n ? ", " : "", k);
    if (w < 0 || (size_t)w >= outsz - n) break;
    n += (size_t)w;
  }
  json_decref(set);
  return rc;
}

typedef struct whose {
  const char *connector;
  bool mine, others; /* a key naming the connector covers it; one naming others and not it does */
} whose;

static void whose_visit(const json_t *v, void *ctx) {
  whose *w = ctx;
  if (offers_has(v, w->connector)) w->mine = true;
  else w->others = true;
}

/* uri is x's connector's in x's session, or nobody's: no other connector
 * noted it (exactly or by a template covering it) unless x's did too. */
static bool uri_not_others(gw_exchange *x, const char *uri) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  whose w = {.connector = x->connector};
  uv_mutex_lock(&sh->maps_mu);
  uri_offers(sh, entry_get(sh->agg_uris, x->sid), uri, whose_visit, &w);
  maps_unlock(sh);
  return w.mine || !w.others;
}

/* URIs inside results (resource_link / embedded resources) join the map. */
static void note_result_uris(gw_exchange *x, const json_t *result) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(result, "content"), i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type) continue;
    if (!strcmp(type, "resource_link")) gw__agg_uri_note(x, json_string_value(json_object_get(e, "uri")), false);
    else if (!strcmp(type, "resource"))
      gw__agg_uri_note(x, json_string_value(json_object_get(json_object_get(e, "resource"), "uri")), false);
  }
}

/* Adds key ("connector\n…", new to m) to m, a session's map of what its
 * upstreams asked the client (questions, URL elicitations), oldest first.
 * Past ASKED_PER_SESSION the oldest entry of the connector holding the
 * most goes: a connector that asks many at once pushes out its own, never
 * the fewer another connector asked (its answer or completion would be
 * dropped, as if it never asked). At most ASKED_PER_SESSION entries are
 * tallied, so the walk is bounded. Under maps_mu. */
static void asked_add(json_t *m, const char *key) {
  if (json_object_size(m) >= ASKED_PER_SESSION) {
    struct {
      const char *first; /* its oldest key */
      size_t len, n;     /* its connector's length in the key; its entries */
    } t[ASKED_PER_SESSION];
    size_t nt = 0, top = 0;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
      size_t len = strcspn(k, "\n"), i = 0;
      while (i < nt && !(t[i].len == len && !memcmp(t[i].first, k, len))) i++;
      if (i == nt) {
        if (nt == ASKED_PER_SESSION) break;
        t[nt].first = k;
        t[nt].len = len;
        t[nt++].n = 0;
      }
      if (++t[i].n > t[top].n) top = i; /* a tie: the one whose oldest is older */
    }
    if (nt) json_object_del(m, t[top].first);
  }
  json_object_set_new(m, key, json_true());
}

/* Outstanding server→client requests: noted when relayed, taken once by
 * the client's answer. Past ASKED_PER_SESSION the oldest question of the
 * connector that asked the most is forgotten (its late answer is dropped,
 * as an unknown one is; asked_add): one upstream cannot push out another's
 * questions, nor one session's another session's. */
static void asked_note(gw_exchange *x, const char *enc) {
  if (!x->sid[0]) return;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = session_entry(&sh->asked, x, true);
  if (e && !json_object_get(e->map, key)) asked_add(e->map, key);
  maps_unlock(sh);
}

bool gw__agg_asked_take(gw_exchange *x, const char *connector, const char *enc) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", connector, enc);
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = entry_get(sh->asked, x->sid);
  bool taken = e && json_object_del(e->map, key) == 0;
  maps_unlock(sh);
  return taken;
}

/* The client's calls whose stream ended before their reply with an event
 * id to resume from (2025-11-25 polling): the reply comes on the session's
 * GET stream, and only from the connector the call went to. Past
 * ASKED_PER_SESSION the session's oldest is forgotten (its late reply goes
 * on as a foreign one). */
void gw__agg_awaited_note(gw_exchange *x) {
  if (!x->sid[0] || !x->connector[0]) return;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  size_t i, k;
  json_t *id, *v;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = session_entry(&sh->asked, x, true);
  if (e && !e->awaited) e->awaited = json_object();
  json_array_foreach(x->ids, i, id) {
    bool done = !e || !e->awaited;
    json_array_foreach(x->replied, k, v) done |= json_equal(v, id);
    char *enc = done ? NULL : json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
    if (enc && strlen(enc) < 500) { /* longer: its reply could not be told apart */
      char key[600];
      snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
      if (json_object_size(e->awaited) >= ASKED_PER_SESSION) {
        void *it = json_object_iter(e->awaited); /* the oldest */
        if (it) json_object_del(e->awaited, json_object_iter_key(it));
      }
      json_object_set_new(e->awaited, key, json_true());
    }
    free(enc);
  }
  maps_unlock(sh);
}

/* A response on x's GET feed answers a call awaited from its connector. */
static bool awaited_take(gw_exchange *x, const json_t *id) {
  char *enc = x->sid[0] ? json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  if (!enc || strlen(enc) >= 500) {
    free(enc);
    return false;
  }
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
  free(enc);
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = entry_get(sh->asked, x->sid);
  bool taken = e && e->awaited && json_object_del(e->awaited, key) == 0;
  maps_unlock(sh);
  return taken;
}

/* Progress tokens of the client's requests, noted when a request goes to
 * its connector (agg_call.c): a notifications/progress reaches the client
 * only from the connector its token was given to (clients hand a progress
 * to the request whose id its token names: the SDK's by Number(token)). A
 * token names the connector it was given to last; past ASKED_PER_SESSION
 * the session's oldest is forgotten (its progress is dropped from then
 * on). */
static char *token_key(const json_t *token) {
  char *enc = token ? json_dumps(token, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  if (enc && strlen(enc) >= 500) { /* as a question's id: longer ones are not told apart */
    free(enc);
    return NULL;
  }
  return enc;
}

void gw__agg_progress_note(gw_exchange *x, const json_t *token) {
  char *enc = x->sid[0] && x->connector[0] ? token_key(token) : NULL;
  if (!enc) return;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = session_entry(&sh->asked, x, true);
  if (e && !e->tokens) e->tokens = json_object();
  if (e && e->tokens) {
    json_object_del(e->tokens, enc); /* given again: now the newest */
    if (json_object_size(e->tokens) >= ASKED_PER_SESSION) {
      void *it = json_object_iter(e->tokens); /* the oldest */
      if (it) json_object_del(e->tokens, json_object_iter_key(it));
    }
    json_object_set_new(e->tokens, enc, json_string(x->connector));
  }
  maps_unlock(sh);
  free(enc);
}

/* The session's progress token enc, when it was last given to x's connector. */
static bool token_is_mine(gw_exchange *x, const char *enc, bool forget) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = entry_get(sh->asked, x->sid);
  const char *c = e ? json_string_value(json_object_get(e->tokens, enc)) : NULL;
  bool mine = c && !strcmp(c, x->connector);
  if (mine && forget) json_object_del(e->tokens, enc);
  maps_unlock(sh);
  return mine;
}

void gw__agg_progress_forget(gw_exchange *x, const json_t *token) {
  char *enc = x->sid[0] ? token_key(token) : NULL;
  if (enc) token_is_mine(x, enc, true);
  free(enc);
}

/* A question x's connector asked on this session, still unanswered. */
static bool asked_has(gw_exchange *x, const char *enc) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = entry_get(sh->asked, x->sid);
  bool has = e && json_object_get(e->map, key);
  maps_unlock(sh);
  return has;
}

/* URL elicitations (MCP 2025-11-25). An elicitationId is unique only
 * within the server that issued it, and a client takes any
 * notifications/elicitation/complete naming an id it knows for the end of
 * that elicitation (it ignores only unknown and completed ones). So an id
 * an upstream gives the client — in an elicitation/create in URL mode, or
 * among a -32042 error's elicitations — reaches it as
 * "mcpgate:{connector}:{id}": two connectors' ids never meet, and none is
 * ever one of the gateway's own (grants.c's connect link: no prefix). It
 * is noted for the connector in the session, and a completion is relayed
 * only from that connector, for an id it gave and has not completed yet
 * (taken: once), renamed the same way; any other is dropped. Past
 * ASKED_PER_SESSION the oldest of the connector that gave the most is
 * forgotten (asked_add; its completion is dropped: clients keep a manual
 * way on, as the spec asks); an id of
 * ELICIT_ID_MAX bytes or more, or with a NUL, is renamed but not noted. */
#define ELICIT_ID_MAX 500

/* The key of elicitation id v (a JSON string) of x's connector, or NULL
 * (not a string, too long, a NUL in it). */
static char *elicit_key(const gw_exchange *x, const json_t *v) {
  const char *id = json_string_value(v);
  size_t n = id ? json_string_length(v) : 0;
  if (!id || n >= ELICIT_ID_MAX || memchr(id, 0, n)) return NULL;
  size_t cn = strlen(x->connector);
  char *k = malloc(cn + 1 + n + 1);
  if (!k) return NULL;
  memcpy(k, x->connector, cn);
  k[cn] = '\n';
  memcpy(k + cn + 1, id, n + 1);
  return k;
}

static void elicit_note(gw_exchange *x, const char *key) {
  if (!x->sid[0]) return;
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = session_entry(&sh->asked, x, true);
  if (e && !e->elicits) e->elicits = json_object();
  if (e && e->elicits) {
    json_object_del(e->elicits, key); /* given again: now the newest */
    asked_add(e->elicits, key);
  }
  maps_unlock(sh);
}

static bool elicit_take(gw_exchange *x, const char *key) {
  gw_mcp_shared *sh = x->lp->srv->mcp;
  uv_mutex_lock(&sh->maps_mu);
  agg_entry *e = x->sid[0] ? entry_get(sh->asked, x->sid) : NULL;
  bool taken = e && e->elicits && json_object_del(e->elicits, key) == 0;
  maps_unlock(sh);
  return taken;
}

/* holder's string elicitationId becomes "mcpgate:{connector}:{id}"; with
 * note, it is noted for x's connector. true: renamed. */
static bool elicit_rename(gw_exchange *x, json_t *holder, bool note) {
  json_t *v = json_object_get(holder, "elicitationId");
  if (!json_is_string(v)) return false;
  char *key = note ? elicit_key(x, v) : NULL;
  if (key) elicit_note(x, key);
  free(key);
  size_t cn = strlen(x->connector), pn = strlen(GW_AGG_ID_PREFIX), n = json_string_length(v);
  char *id = malloc(pn + cn + 1 + n);
  if (!id) {
    json_object_set_new(holder, "elicitationId", json_string(GW_AGG_ID_PREFIX "?")); /* fails closed */
    return true;
  }
  memcpy(id, GW_AGG_ID_PREFIX, pn);
  memcpy(id + pn, x->connector, cn);
  id[pn + cn] = ':';
  memcpy(id + pn + cn + 1, json_string_value(v), n);
  json_object_set_new(holder, "elicitationId", json_stringn(id, pn + cn + 1 + n));
  free(id);
  return true;
}

/* A response that is an answer of x's connector: a -32042 error's
 * elicitations are its own. true: renamed. */
static bool elicit_required(gw_exchange *x, json_t *msg) {
  json_t *err = json_object_get(msg, "error");
  json_t *list = json_object_get(json_object_get(err, "data"), "elicitations");
  if (json_number_value(json_object_get(err, "code")) != -32042 || !json_is_array(list)) return false;
  bool changed = false;
  size_t i;
  json_t *el;
  json_array_foreach(list, i, el) changed |= elicit_rename(x, el, true);
  return changed;
}

void gw__agg_forget_session(gw_mcp_shared *sh, const char *sid) {
  agg_entry *e;
  uv_mutex_lock(&sh->maps_mu);
  if ((e = entry_get(sh->asked, sid))) entry_del(sh->asked, e);
  if ((e = entry_get(sh->agg_uris, sid))) entry_del(sh->agg_uris, e);
  maps_unlock(sh);
}

static void forget_in(gw_agg_index *ix, const char *tenant, const char *user) {
  /* an owner or tenant is there while it has an entry (the last one's
   * delete frees it) */
  agg_owner *o;
  agg_tenant *t;
  if (!ix) return;
  if (user)
    while ((o = owner_get(ix, tenant, user, false))) entry_del(ix, o->first);
  else
    while ((t = tenant_get(ix, tenant, false))) entry_del(ix, t->oldest);
}

void gw__agg_forget_owner(gw_mcp_shared *sh, const char *tenant, const char *user) {
  gw_agg_index *asked = NULL, *uris = NULL;
  uv_mutex_lock(&sh->maps_mu);
  if (!tenant) {
    asked = sh->asked;
    uris = sh->agg_uris;
    sh->asked = sh->agg_uris = NULL;
  } else {
    forget_in(sh->asked, tenant, user);
    forget_in(sh->agg_uris, tenant, user);
  }
  maps_unlock(sh);
  index_free(asked);
  index_free(uris);
}

/* The sweep reads every session with an entry in the store (up to
 * SESSIONS_MAX, both indexes together): not under maps_mu, which every
 * loop's aggregated requests take. Its items: the sessions with an entry
 * when it began, each entry's stamp, and (once checked) whether the store
 * still holds the session, unexpired. */
typedef struct sweep_item {
  char sid[96];
  uint64_t gen[2]; /* the stamps of its entries in agg_uris and asked; 0: none there */
  bool dead;
} sweep_item;

struct gw_agg_sweep {
  size_t n;
  sweep_item v[];
};

#define SWEEP_BATCH 1024 /* items the sweep's end judges per hold of maps_mu */

/* How many entries sh's indexes hold. Under maps_mu. */
static size_t entries_n(const gw_mcp_shared *sh) {
  return (sh->agg_uris ? sh->agg_uris->n : 0) + (sh->asked ? sh->asked->n : 0);
}

gw_agg_sweep *gw__agg_sweep_begin(gw_mcp_shared *sh) {
  /* the items' memory is taken (and touched) before maps_mu: at most one
   * item per entry, SESSIONS_MAX of them in each index */
  gw_agg_sweep *sw = NULL;
  for (size_t cap = 0;;) {
    uv_mutex_lock(&sh->maps_mu);
    size_t need = entries_n(sh);
    if (need <= cap) break;
    uv_mutex_unlock(&sh->maps_mu);
    free(sw);
    cap = need + need / 8;
    if (!(sw = malloc(sizeof *sw + cap * sizeof sw->v[0]))) return NULL;
    memset(sw->v, 0, cap * sizeof sw->v[0]);
  }
  gw_agg_index *ix[2] = {sh->agg_uris, sh->asked};
  if (!sw) {
    uv_mutex_unlock(&sh->maps_mu);
    return NULL;
  }
  sw->n = 0;
  /* a session with an entry in both is one item (one store read): a
   * routes entry notes its item, an asked entry finds it through it */
  for (int i = 0; i < 2; i++)
    for (agg_tenant *t = ix[i] ? ix[i]->tenants : NULL; t; t = t->next)
      for (agg_entry *e = t->oldest; e; e = e->newer) {
        agg_entry *r = i ? entry_get(ix[0], e->sid) : NULL;
        sweep_item *it = r ? &sw->v[r->sweep_at] : &sw->v[sw->n];
        if (!r) {
          memcpy(it->sid, e->sid, sizeof it->sid);
          it->gen[0] = it->gen[1] = 0;
          it->dead = false;
          if (!i) e->sweep_at = sw->n;
          sw->n++;
        }
        it->gen[i] = e->gen;
      }
  uv_mutex_unlock(&sh->maps_mu);
  return sw;
}

void gw__agg_sweep_check(gw_agg_sweep *sw, const gw_session_limits *lim, st_txn *txn, int64_t now_ms) {
  gw_session s;
  for (size_t i = 0; sw && i < sw->n; i++)
    sw->v[i].dead = gw_session_get(txn, sw->v[i].sid, &s) != 0 || gw_session_expired(&s, now_ms, lim);
}

size_t gw__agg_sweep_end(gw_mcp_shared *sh, gw_agg_sweep *sw) {
  size_t gone = 0;
  if (!sw) return 0;
  uv_mutex_lock(&sh->maps_mu);
  for (size_t i = 0; i < sw->n; i++) {
    if (i && !(i % SWEEP_BATCH)) { /* the others' requests go in between */
      maps_unlock(sh);
      uv_mutex_lock(&sh->maps_mu);
    }
    if (!sw->v[i].dead) continue;
    gw_agg_index *ix[2] = {sh->agg_uris, sh->asked};
    for (int k = 0; k < 2; k++) {
      /* gone meanwhile (a DELETE, a revocation, pushed out), or made again
       * since (its session judged by a later sweep): not the one checked */
      agg_entry *e = sw->v[i].gen[k] ? entry_get(ix[k], sw->v[i].sid) : NULL;
      if (e && e->gen == sw->v[i].gen[k]) {
        entry_del(ix[k], e);
        gone++;
      }
    }
  }
  maps_unlock(sh);
  free(sw);
  return gone;
}

void gw__agg_sweep(gw_mcp_shared *sh, const gw_session_limits *lim, st_txn *txn, int64_t now_ms) {
  gw_agg_sweep *sw = gw__agg_sweep_begin(sh);
  gw__agg_sweep_check(sw, lim, txn, now_ms);
  gw__agg_sweep_end(sh, sw);
}

/* Span v (a JSON value's text) is the value of id (a string or an
 * integer; a string's span without an escape). */
static bool span_is(const gw_json_span *v, const json_t *id) {
  if (!v->p) return false;
  if (json_is_integer(id)) {
    char t[24];
    size_t tn = gw_itoa(json_integer_value(id), t);
    return v->n == tn && !memcmp(v->p, t, tn);
  }
  if (json_is_string(id)) {
    size_t l = json_string_length(id);
    return v->n == l + 2 && v->p[0] == '"' && !memchr(v->p, '\\', v->n) && !memcmp(v->p + 1, json_string_value(id), l);
  }
  return false;
}

static bool span_eq(const gw_json_span *v, const char *lit) {
  size_t l = strlen(lit);
  return v->p && v->n == l && !memcmp(v->p, lit, l);
}

bool gw__agg_vouch(gw_exchange *x, const char *body, size_t n) {
  /* what gw__agg_rewrite acts on, none of it spellable without these
   * bytes (\u is the only escape that makes letters) */
  if (!gw__agg_is_call(x) || json_array_size(x->ids) != 1 || gw_memmem(body, n, "\\u", 2) ||
      gw_memmem(body, n, "\"tools\"", 7) || gw_memmem(body, n, "\"resource", 9) ||
      gw_memmem(body, n, "elicitation", 11)) /* a completion's method, a -32042's elicitations */
    return false;
  static const char *const paths[] = {"id", "method", "result", "error", "params.progressToken"};
  gw_json_span v[5];
  if (gw_json_pick(body, n, paths, 5, v) != 1) return false;
  if (v[1].p) {
    if (v[0].p) return false;
    /* a notification: the ones check_note looks into are parsed — but
     * progress for the call's own token, which may come often; a method
     * with an escape (\/) could spell any of them */
    if (memchr(v[1].p, '\\', v[1].n)) return false;
    if (span_eq(&v[1], "\"notifications/progress\"")) return span_is(&v[4], gw__agg_call_token(x));
    return !span_eq(&v[1], "\"notifications/cancelled\"") && !span_eq(&v[1], "\"notifications/resources/updated\"");
  }
  /* a response (no server→client request to rename) to the call's own id */
  if (!v[0].p || (!v[2].p && !v[3].p)) return false;
  return span_is(&v[0], json_array_get(x->ids, 0));
}

static bool rewrite_one(gw_exchange *x, json_t *msg);

/* A JSON-RPC batch (an array) is rewritten message by message: clients
 * (the official SDK among them) take each element of an array reply as a
 * message of its own, so it must not carry what a lone message could not.
 * A message to drop is emptied ({}; exchange.h): an element, removed. */
bool gw__agg_rewrite(gw_exchange *x, json_t *msg) {
  if (!json_is_array(msg)) return rewrite_one(x, msg);
  bool changed = false;
  for (size_t i = 0; i < json_array_size(msg);) {
    json_t *m = json_array_get(msg, i);
    bool ch = rewrite_one(x, m);
    changed |= ch;
    if (ch && gw__x_msg_dropped(m)) json_array_remove(msg, i);
    else i++;
  }
  return changed;
}

/* An upstream's notification that names something of the client's must
 * name something of its own connector's: notifications/progress a
 * progress token the client gave a request to it (the call's own, or one
 * noted for it in the session), notifications/cancelled a question it
 * asked the client that is still unanswered (its id renamed as the
 * question's was: the client knows no other), notifications/resources/
 * updated a resource it offers or one no other connector does (as the
 * session's lists, templates, links and subscriptions tell), notifications/
 * elicitation/complete a URL elicitation it asked the client and has not
 * completed (its id renamed as it was given). Else one upstream could
 * report progress for, cancel the questions of, complete the elicitations
 * of (or the gateway's own), or announce changes to another connector's
 * work. 0: relay as is; 1: rewritten; -1: drop. */
static int check_note(gw_exchange *x, json_t *msg, const char *method) {
  json_t *params = json_object_get(msg, "params");
  if (!strcmp(method, "notifications/progress")) {
    json_t *tok = json_object_get(params, "progressToken");
    const json_t *own = gw__agg_call_token(x);
    if (own && json_equal(own, tok)) return 0;
    char *enc = token_key(tok);
    bool mine = enc && token_is_mine(x, enc, false);
    free(enc);
    return mine ? 0 : -1;
  }
  if (!strcmp(method, "notifications/cancelled")) {
    json_t *rid = json_object_get(params, "requestId");
    char *enc = rid && json_is_object(params) ? json_dumps(rid, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    int rc = -1;
    if (enc && strlen(enc) < 500 && asked_has(x, enc)) {
      char buf[600];
      snprintf(buf, sizeof buf, GW_AGG_ID_PREFIX "%s:%s", x->connector, enc);
      json_object_set_new(params, "requestId", json_string(buf));
      rc = 1;
    }
    free(enc);
    return rc;
  }
  if (!strcmp(method, "notifications/resources/updated")) {
    const char *uri = json_string_value(json_object_get(params, "uri"));
    return uri && uri_not_others(x, uri) ? 0 : -1;
  }
  if (!strcmp(method, "notifications/elicitation/complete")) {
    char *key = elicit_key(x, json_object_get(params, "elicitationId"));
    bool mine = key && elicit_take(x, key);
    free(key);
    return mine && elicit_rename(x, params, false) ? 1 : -1;
  }
  return 0;
}

static bool rewrite_one(gw_exchange *x, json_t *msg) {
  if (json_is_object(msg) && json_is_object(json_object_get(msg, "result")))
    note_result_uris(x, json_object_get(msg, "result"));
  /* A relayed tool list: MCP clients take a response for the answer to
   * their request by id alone (the SDK by Number(id)), so an upstream could
   * answer the client's tools/list through a call or a stream; it shows no
   * tool policy hides (fails closed: no policy, no tools). */
  bool filtered = json_is_object(msg) && json_is_array(json_object_get(json_object_get(msg, "result"), "tools")) &&
                  pol_filter_tools(gw__policy_for(x->lp, x->tenant, x->user), x->connector, msg);
  /* A response on a call's stream answers that call only, and one on the
   * GET stream only a call of that connector that awaits its reply there:
   * one upstream never answers the client's request to another (clients
   * match by id alone, on any stream). Any other goes on under an id the
   * client never used. A "method" that is not a string makes no request:
   * clients whose schemas allow extra members take such a message for a
   * response. */
  json_t *rid = json_object_get(msg, "id");
  if (json_is_object(msg) && rid && !json_is_string(json_object_get(msg, "method")) &&
      (json_object_get(msg, "result") || json_object_get(msg, "error"))) {
    size_t i;
    json_t *e;
    bool ours = false;
    if (gw__agg_is_call(x)) json_array_foreach(x->ids, i, e) ours |= json_equal(e, rid);
    else ours = awaited_take(x, rid);
    if (!ours) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
             "connector %s sent a response to a request it was not asked on this stream: not delivered as one",
             x->connector);
      json_object_set_new(msg, "id", json_string(GW_AGG_ID_PREFIX "foreign-response"));
      return true;
    }
    filtered |= elicit_required(x, msg);
  }
  if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) return filtered;
  json_t *id = json_object_get(msg, "id");
  if (!id) {
    /* a notification */
    const char *method = json_string_value(json_object_get(msg, "method"));
    int rc = check_note(x, msg, method);
    if (rc >= 0) return filtered || rc > 0;
    if (x->m) GW_STAT_ADD(x->m->errors, 1);
    GW_LOG(x->foreign_note ? GW_LOG_DEBUG : GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s sent %.60s naming a %s that is not its own in this session: dropped", x->connector, method,
           !strcmp(method, "notifications/progress")               ? "progress token"
           : !strcmp(method, "notifications/cancelled")            ? "request"
           : !strcmp(method, "notifications/elicitation/complete") ? "elicitation"
                                                                   : "resource");
    x->foreign_note = true;
    json_object_clear(msg);
    return true;
  }
  /* a server→client request: a URL elicitation's id is its connector's */
  json_t *params = json_object_get(msg, "params");
  if (!strcmp(json_string_value(json_object_get(msg, "method")), "elicitation/create") &&
      !strcmp(json_string_value(json_object_get(params, "mode")) ?: "", "url"))
    filtered |= elicit_rename(x, params, true);
  char *enc = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!enc) return filtered;
  char buf[600];
  snprintf(buf, sizeof buf, GW_AGG_ID_PREFIX "%s:%s", x->connector, enc);
  if (strlen(enc) < 500) asked_note(x, enc); /* longer: its answer could not route back anyway */
  free(enc);
  json_object_set_new(msg, "id", json_string(buf));
  return true;
}

