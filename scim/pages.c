/* scim/pages.c — list checkpoints (scim.h, scim_pages): where an
 * unfiltered page may begin its walk instead of at the first resource.
 *
 * Rules this file keeps, and why:
 *   - A checkpoint is only a fact about one list generation of one
 *     incarnation of one tenant: find matches tenant id, uid, type and
 *     generation exactly. The generation lives in the store and moves in
 *     the transaction that adds or removes a resource, so a reader whose
 *     snapshot has that generation sees the same ids at the same positions
 *     as the reader that took the checkpoint; no invalidation is needed
 *     and none can race a commit.
 *   - Bounded: a fixed table of SCIM_PAGES_SLOTS. A tenant never holds
 *     more than SCIM_PAGES_TENANT_MAX of them, so one tenant paging (or an
 *     attacker's token) cannot evict every other tenant's import; within a
 *     tenant, a checkpoint of the same type under an older key goes first,
 *     then the least recently used.
 *   - One mutex, held for a scan of the table (256 entries) and never
 *     across anything else: loops and pool threads alike call in. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "scim/scim_int.h"

typedef struct cp {
  char tenant[64]; /* "" : empty slot */
  char uid[ST_TENANT_UID_LEN + 1];
  char type;
  uint64_t gen;
  size_t pos;
  char id[SCIM_ID_LEN + 1];
  uint64_t used; /* LRU clock */
} cp;

struct scim_pages {
  uv_mutex_t mu;
  uint64_t clock;
  scim_pages_stats stats;
  cp slot[SCIM_PAGES_SLOTS];
};

scim_pages *scim_pages_new(void) {
  scim_pages *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  if (uv_mutex_init(&p->mu) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

void scim_pages_free(scim_pages *p) {
  if (!p) return;
  uv_mutex_destroy(&p->mu);
  free(p);
}

void scim_pages_stats_get(scim_pages *p, scim_pages_stats *out) {
  memset(out, 0, sizeof *out);
  if (!p) return;
  uv_mutex_lock(&p->mu);
  *out = p->stats;
  uv_mutex_unlock(&p->mu);
}

void scim__pages_count(scim_pages *p, size_t steps, bool hit, bool miss) {
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->stats.steps += steps;
  p->stats.hits += hit;
  p->stats.misses += miss;
  uv_mutex_unlock(&p->mu);
}

static bool same_list(const cp *c, const char *tenant, const char *uid, char type, uint64_t gen) {
  return c->tenant[0] && c->type == type && c->gen == gen && !strcmp(c->tenant, tenant) && !strcmp(c->uid, uid);
}

bool scim__pages_find(scim_pages *p, const char *tenant, const char *uid, char type, uint64_t gen, size_t start,
                      size_t *pos, char id[SCIM_ID_LEN + 1]) {
  if (!p) return false;
  uv_mutex_lock(&p->mu);
  cp *best = NULL;
  for (size_t i = 0; i < SCIM_PAGES_SLOTS; i++) {
    cp *c = &p->slot[i];
    if (same_list(c, tenant, uid, type, gen) && c->pos < start && (!best || c->pos > best->pos)) best = c;
  }
  if (best) {
    best->used = ++p->clock;
    *pos = best->pos;
    memcpy(id, best->id, SCIM_ID_LEN + 1);
  }
  uv_mutex_unlock(&p->mu);
  return best != NULL;
}

void scim__pages_put(scim_pages *p, const char *tenant, const char *uid, char type, uint64_t gen, size_t pos,
                     const char *id) {
  if (!p || !pos || strlen(tenant) >= sizeof p->slot[0].tenant || strlen(uid) != ST_TENANT_UID_LEN ||
      strlen(id) != SCIM_ID_LEN)
    return;
  uv_mutex_lock(&p->mu);
  cp *victim = NULL, *stale = NULL, *mine = NULL, *any = NULL;
  size_t held = 0;
  for (size_t i = 0; i < SCIM_PAGES_SLOTS; i++) {
    cp *c = &p->slot[i];
    if (!c->tenant[0]) {
      if (!any || any->tenant[0]) any = c; /* an empty slot first */
      continue;
    }
    if (!any || (any->tenant[0] && c->used < any->used)) any = c;
    if (strcmp(c->tenant, tenant)) continue;
    held++;
    if (same_list(c, tenant, uid, type, gen) && c->pos == pos) {
      victim = c; /* already known: refresh it */
      break;
    }
    if (c->type == type && (c->gen != gen || strcmp(c->uid, uid)) && (!stale || c->used < stale->used)) stale = c;
    if (!mine || c->used < mine->used) mine = c;
  }
  if (!victim) victim = stale ? stale : held >= SCIM_PAGES_TENANT_MAX ? mine : any;
  snprintf(victim->tenant, sizeof victim->tenant, "%s", tenant);
  memcpy(victim->uid, uid, ST_TENANT_UID_LEN + 1);
  victim->type = type;
  victim->gen = gen;
  victim->pos = pos;
  memcpy(victim->id, id, SCIM_ID_LEN + 1);
  victim->used = ++p->clock;
  uv_mutex_unlock(&p->mu);
}

bool scim__pages_near(scim_pages *p, const char *tenant, char type, size_t start, size_t within) {
  if (!p) return false;
  bool near = false;
  uv_mutex_lock(&p->mu);
  for (size_t i = 0; i < SCIM_PAGES_SLOTS && !near; i++) {
    const cp *c = &p->slot[i];
    near = c->tenant[0] && c->type == type && c->pos < start && start - c->pos <= within && !strcmp(c->tenant, tenant);
  }
  uv_mutex_unlock(&p->mu);
  return near;
}
