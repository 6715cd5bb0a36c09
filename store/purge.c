/* store/purge.c — the tenant purge registry (store.h, "tenant purges"):
 * modules register how to delete their keys of a tenant, and the tenant
 * deletion job runs them in bounded steps without a hard-coded list of
 * modules. The table is written at startup only and read by the writer
 * without locks, so registration is refused once the first job was
 * submitted (the same rule as hooks). */
#include <string.h>

#include "store/store_int.h"

static int purge_add(st_store *st, const char *name, st__purge p) {
  if (!st || !name || (!p.fn && !p.fn_ctx)) return ST_EINVAL;
  if (atomic_load(&st->serving)) {
    st__log(st, ST_LOG_ERROR, "st_purge_add for '%s' after the first write: register purges at startup",
            name);
    return ST_EINVAL;
  }
  for (size_t i = 0; i < st->npurges; i++)
    if (!strcmp(st->purges[i].name, name)) return ST_EEXIST;
  if (st->npurges >= ST_PURGES_MAX) return ST_ENOMEM;
  st->purges[st->npurges++] = p;
  return 0;
}

int st_purge_add(st_store *st, const char *name, st_purge_fn fn, void *unused) {
  (void)unused;
  return purge_add(st, name, (st__purge){name, fn, NULL, NULL});
}

int st_purge_add_ctx(st_store *st, const char *name, st_purge_ctx_fn fn, void *ctx) {
  return purge_add(st, name, (st__purge){name, NULL, fn, ctx});
}

int st_purge_tenant_step(st_txn *txn, const char *tenant, int limit) {
  int n = 0;
  if (!txn || !txn->write || !tenant || limit < 1) return ST_EINVAL;
  const st_store *st = txn->st;
  /* a deleted tenant's purge frees space and revokes what it held (a
   * module may queue upstream revocations as it goes): a full store must
   * not stall it (store.h, "the reserve") */
  st_txn_use_reserve(txn);
  for (size_t i = 0; i < st->npurges && n < limit; i++) {
    const st__purge *p = &st->purges[i];
    int m = p->fn ? p->fn(txn, tenant, limit - n) : p->fn_ctx(txn, tenant, limit - n, p->ctx);
    if (m < 0) return m;
    if (m > limit - n) m = limit - n; /* a purge that over-reports must not make us loop */
    n += m;
  }
  return n;
}
