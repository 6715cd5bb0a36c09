/* gateway/base/ratelimit.c — bounded token buckets (see ratelimit.h): an
 * open-addressing table of buckets, evicting the longest idle when full.
 *
 * The buckets are also on a list in order of last use (head: idle
 * longest), so that eviction is O(1): a scan of the table for the idlest
 * would cost every new key (a new client address, which an attacker with
 * an IPv6 prefix has without end) a walk over 2 * max_keys buckets under
 * the mutex every loop shares. Moving an entry in the table (deletion with
 * backward shift) relinks its list neighbours.
 *
 * The table starts small and doubles as keys arrive (at half full), up to
 * its bound (a power of two >= 2 * max_keys): a limiter sized for 65,536
 * addresses is 17 MB at full size, and most gateways see a few hundred.
 * A doubling re-inserts the keys in use order (the list is rebuilt as it
 * was); when it cannot get the memory the table evicts as if it were full
 * (the bound is on memory: an evicted key only starts full again). */
#include "gateway/base/ratelimit.h"
#include "gateway/base/cidr.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define NIL SIZE_MAX

typedef struct bucket {
  char key[GW_RATELIMIT_KEY_MAX + 1];
  bool used;
  double tokens;
  int64_t at;        /* last refill, ms */
  size_t prev, next; /* the use-order list (slot indexes, NIL at the ends) */
} bucket;

struct gw_ratelimit {
  uv_mutex_t mu;
  int64_t per_min, burst;
  size_t max, n, cap; /* cap: a power of two, at most max_cap */
  size_t max_cap;     /* the smallest power of two >= 2 * max */
  size_t head, tail;  /* idlest, most recently used */
  bucket *b;
};

gw_ratelimit *gw_ratelimit_new(int64_t per_min, int64_t burst, size_t max_keys) {
  if (max_keys < 1) max_keys = 1;
  gw_ratelimit *rl = calloc(1, sizeof *rl);
  if (!rl) return NULL;
  rl->per_min = per_min < 0 ? 0 : per_min;
  rl->burst = burst < 1 ? 1 : burst;
  rl->max = max_keys;
  rl->head = rl->tail = NIL;
  rl->max_cap = 16;
  while (rl->max_cap < 2 * max_keys) rl->max_cap *= 2;
  rl->cap = rl->max_cap < 64 ? rl->max_cap : 64;
  rl->b = calloc(rl->cap, sizeof *rl->b);
  if (!rl->b || uv_mutex_init(&rl->mu)) {
    free(rl->b);
    free(rl);
    return NULL;
  }
  return rl;
}

void gw_ratelimit_free(gw_ratelimit *rl) {
  if (!rl) return;
  uv_mutex_destroy(&rl->mu);
  free(rl->b);
  free(rl);
}

size_t gw_ratelimit_slots(gw_ratelimit *rl) {
  if (!rl) return 0;
  uv_mutex_lock(&rl->mu);
  size_t n = rl->cap;
  uv_mutex_unlock(&rl->mu);
  return n;
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* ---- the use-order list */
static void unlink_slot(gw_ratelimit *rl, size_t i) {
  bucket *b = &rl->b[i];
  if (b->prev != NIL) rl->b[b->prev].next = b->next;
  else rl->head = b->next;
  if (b->next != NIL) rl->b[b->next].prev = b->prev;
  else rl->tail = b->prev;
  b->prev = b->next = NIL;
}

static void append_slot(gw_ratelimit *rl, size_t i) {
  bucket *b = &rl->b[i];
  b->prev = rl->tail;
  b->next = NIL;
  if (rl->tail != NIL) rl->b[rl->tail].next = i;
  else rl->head = i;
  rl->tail = i;
}

/* Moves the entry of slot `from` to the empty slot `to`, list links too. */
static void move_slot(gw_ratelimit *rl, size_t from, size_t to) {
  bucket *b = &rl->b[from];
  if (b->prev != NIL) rl->b[b->prev].next = to;
  else rl->head = to;
  if (b->next != NIL) rl->b[b->next].prev = to;
  else rl->tail = to;
  rl->b[to] = *b;
  b->used = false;
}

/* Removes slot i, moving later entries of its probe run back (linear
 * probing keeps no tombstones). */
static void remove_at(gw_ratelimit *rl, size_t i) {
  size_t mask = rl->cap - 1;
  unlink_slot(rl, i);
  rl->b[i].used = false;
  rl->n--;
  for (size_t j = (i + 1) & mask; rl->b[j].used; j = (j + 1) & mask) {
    size_t home = hash(rl->b[j].key) & mask;
    /* j's entry may move to i when i lies on its probe path (home .. j) */
    bool between = i <= j ? (home <= i || home > j) : (home <= i && home > j);
    if (between) {
      move_slot(rl, j, i);
      i = j;
    }
  }
}

/* The idlest bucket is the head of the use-order list: O(1). */
static void evict_idlest(gw_ratelimit *rl) {
  if (rl->head != NIL) remove_at(rl, rl->head);
}

/* Doubles the table, the keys re-inserted from idlest to most recent so
 * the use-order list comes out the same. -1 (nothing changed) without
 * memory. */
static int grow(gw_ratelimit *rl) {
  size_t cap = rl->cap * 2, mask = cap - 1;
  bucket *nb = calloc(cap, sizeof *nb);
  if (!nb) return -1;
  size_t prev = NIL;
  for (size_t i = rl->head; i != NIL; i = rl->b[i].next) {
    size_t j = hash(rl->b[i].key) & mask;
    while (nb[j].used) j = (j + 1) & mask;
    nb[j] = rl->b[i];
    nb[j].prev = prev;
    nb[j].next = NIL;
    if (prev != NIL) nb[prev].next = j;
    else rl->head = j;
    prev = j;
  }
  rl->tail = prev;
  free(rl->b);
  rl->b = nb;
  rl->cap = cap;
  return 0;
}

int64_t gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms) {
  return gw_ratelimit_take_n(rl, key, 1, now_ms);
}

/* key cut to GW_RATELIMIT_KEY_MAX into k (its length in *kn), and its
 * hash */
static uint64_t key_of(const char *key, char k[GW_RATELIMIT_KEY_MAX + 1], size_t *kn) {
  *kn = strlen(key);
  if (*kn > GW_RATELIMIT_KEY_MAX) *kn = GW_RATELIMIT_KEY_MAX;
  memcpy(k, key, *kn);
  k[*kn] = 0;
  return hash(k);
}

/* k's slot, or the free slot where it would go. Under rl->mu. */
static size_t probe(const gw_ratelimit *rl, const char *k, uint64_t h) {
  size_t mask = rl->cap - 1, i = h & mask;
  while (rl->b[i].used && strcmp(rl->b[i].key, k)) i = (i + 1) & mask;
  return i;
}

int64_t gw_ratelimit_take_n(gw_ratelimit *rl, const char *key, int64_t n, int64_t now_ms) {
  if (!rl || rl->per_min == 0 || n <= 0) return 0;
  if (n > rl->burst) n = rl->burst; /* a full bucket always pays for one */
  char k[GW_RATELIMIT_KEY_MAX + 1];
  size_t kn;
  uint64_t h = key_of(key, k, &kn);
  uv_mutex_lock(&rl->mu);
  size_t i = probe(rl, k, h);
  if (!rl->b[i].used) {
    /* a new key: the table grows while under its bound (kept at most half
     * full); at the bound, or without the memory to grow, the idlest key
     * makes room */
    if (rl->n < rl->max && 2 * (rl->n + 1) > rl->cap && rl->cap < rl->max_cap) (void)grow(rl);
    if (rl->n >= rl->max || 2 * (rl->n + 1) > rl->cap) evict_idlest(rl);
    i = probe(rl, k, h); /* (k is not in the table: its free slot) */
    memcpy(rl->b[i].key, k, kn + 1);
    rl->b[i].used = true;
    rl->b[i].tokens = (double)rl->burst;
    rl->b[i].at = now_ms;
    rl->b[i].prev = rl->b[i].next = NIL;
    rl->n++;
  } else {
    unlink_slot(rl, i);
  }
  append_slot(rl, i); /* the most recently used */
  bucket *b = &rl->b[i];
  if (now_ms > b->at) {
    b->tokens += (double)(now_ms - b->at) * (double)rl->per_min / 60000.0;
    if (b->tokens > (double)rl->burst) b->tokens = (double)rl->burst;
    b->at = now_ms;
  }
  int64_t wait = 0;
  if (b->tokens >= (double)n) {
    b->tokens -= (double)n;
  } else {
    double ms = ((double)n - b->tokens) * 60000.0 / (double)rl->per_min;
    wait = (int64_t)((ms + 999.0) / 1000.0); /* whole seconds, rounded up */
    if (wait < 1) wait = 1;
  }
  uv_mutex_unlock(&rl->mu);
  return wait;
}

void gw_ratelimit_give_n(gw_ratelimit *rl, const char *key, int64_t n) {
  if (!rl || rl->per_min == 0 || n <= 0) return;
  if (n > rl->burst) n = rl->burst; /* what take_n took at most */
  char k[GW_RATELIMIT_KEY_MAX + 1];
  size_t kn;
  uint64_t h = key_of(key, k, &kn);
  uv_mutex_lock(&rl->mu);
  size_t i = probe(rl, k, h);
  if (rl->b[i].used) {
    rl->b[i].tokens += (double)n;
    if (rl->b[i].tokens > (double)rl->burst) rl->b[i].tokens = (double)rl->burst;
  }
  uv_mutex_unlock(&rl->mu);
}

void gw_ratelimit_addr_key(const char *addr, char out[GW_RATELIMIT_KEY_MAX + 1]) {
  unsigned char a[16];
  if (addr && strchr(addr, ':') && inet_pton(AF_INET6, addr, a) == 1) {
    if (gw_ip_v4_mapped(a)) {
      inet_ntop(AF_INET, a + 12, out, GW_RATELIMIT_KEY_MAX + 1);
      return;
    }
    memset(a + 8, 0, 8);
    char t[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a, t, sizeof t);
    snprintf(out, GW_RATELIMIT_KEY_MAX + 1, "%s/64", t);
    return;
  }
  snprintf(out, GW_RATELIMIT_KEY_MAX + 1, "%s", addr ? addr : "");
}
