/* store/tenant.c — tenant incarnation uids (see store.h). The tenant
 * record itself ("t" + id, JSON) is written by the admin API; the uid sits
 * beside it under "u" + id so the store can create and read it without
 * parsing JSON, and so a read costs one lookup. */
#include <string.h>

#include "store/store_int.h"

static size_t uid_key(const char *tenant, char k[80]) {
  size_t n = strlen(tenant);
  if (n > 63) n = 63;
  k[0] = 'u';
  memcpy(k + 1, tenant, n);
  return n + 1;
}

int st_tenant_uid_get(st_txn *txn, const char *tenant, char uid[ST_TENANT_UID_LEN + 1]) {
  char k[80];
  st_val v;
  uid[0] = 0;
  int rc = st_get(txn, ST_DB_TENANTS, k, uid_key(tenant, k), &v);
  if (rc) return rc;
  if (v.len != ST_TENANT_UID_LEN) return ST_ECORRUPT;
  memcpy(uid, v.data, ST_TENANT_UID_LEN);
  uid[ST_TENANT_UID_LEN] = 0;
  return 0;
}

int st_tenant_uid_put(st_txn *txn, const char *tenant, const char *uid) {
  char k[80];
  if (strlen(uid) != ST_TENANT_UID_LEN) return ST_EINVAL;
  return st_put(txn, ST_DB_TENANTS, k, uid_key(tenant, k), uid, ST_TENANT_UID_LEN, 0);
}

int st_tenant_uid_del(st_txn *txn, const char *tenant) {
  char k[80];
  int rc = st_del(txn, ST_DB_TENANTS, k, uid_key(tenant, k));
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* store check: every tenant record has a well-formed uid, and every uid a
 * tenant record. Returns the number of problems (or a negative error). */
int st__check_tenant_uids(st_txn *txn, st_check_report_fn report, void *ctx) {
  st_cursor *c;
  st_val k, v;
  char msg[160], id[64], other[80];
  int problems = 0, rc = st_cursor_open(txn, ST_DB_TENANTS, &c);
  if (rc < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *kp = k.data;
    if (k.len < 2 || k.len > 64 || (kp[0] != 't' && kp[0] != 'u')) continue;
    memcpy(id, kp + 1, k.len - 1);
    id[k.len - 1] = 0;
    if (strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != k.len - 1) continue; /* not a tenant key */
    st_val o;
    other[0] = kp[0] == 't' ? 'u' : 't';
    memcpy(other + 1, id, k.len - 1);
    if (kp[0] == 'u' && v.len != ST_TENANT_UID_LEN) {
      snprintf(msg, sizeof msg, "tenant %.63s has a malformed incarnation uid", id);
    } else if (st_get(txn, ST_DB_TENANTS, other, k.len, &o) != 0) {
      snprintf(msg, sizeof msg, kp[0] == 't' ? "tenant %.63s has no incarnation uid"
                                             : "incarnation uid of %.63s has no tenant record", id);
    } else {
      continue;
    }
    if (report) report(ctx, "tenants", msg);
    problems++;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? problems : rc;
}
