/* store/dir.c — the directory's key encoding and its read interface (see
 * dir.h for the layout). The encoders are the only place the directory's
 * keys are spelled; scim/ writes through them and every lookup here reads
 * through them, so the two can never disagree.
 *
 * Lookups return what scim/ stored, verified where an index can be stale
 * by construction (a hashed index value): a displayName hit is checked
 * against the group record.
 *
 * Blocks (the admin's revoke/restore) are written here too, with the
 * lifecycle event they imply, so a block means the same thing to every
 * subscriber as a SCIM deactivation; and the sign-out everywhere, an event
 * without a write. */
#include "store/dir.h"
#include "store/store_int.h"
#include "store/store_testing.h"
#include "store/tenant.h"
#include "store/text.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- key encoders ---------------------------------------------------------- */

static void kb_raw(st_dir_key *k, const void *p, size_t n) {
  if (k->overflow || n > sizeof k->b - k->n) {
    k->overflow = true;
    return;
  }
  memcpy(k->b + k->n, p, n);
  k->n += n;
}
static void kb_ch(st_dir_key *k, char c) { kb_raw(k, &c, 1); }
static void kb_str(st_dir_key *k, const char *s) { kb_raw(k, s, strlen(s)); }

/* A (folded) index value as its key bytes: as is, or hashed when long
 * (or when it would start with the hash marker). */
static void kb_val_bytes(st_dir_key *k, const char *v, size_t n) {
  if (n <= ST_DIR_IDX_VAL_MAX && !(n && (unsigned char)v[0] == 0xFF)) {
    kb_raw(k, v, n);
    return;
  }
  unsigned char h[SHA256_DIGEST_LENGTH];
  st_sha256(v, n, h);
  kb_ch(k, (char)0xFF);
  kb_raw(k, h, sizeof h);
}

/* An index value: case-folded unless exact (st_text_fold: Unicode's
 * simple folding; store migration 13 folded the names indexed by ASCII
 * before). */
static void kb_val(st_dir_key *k, const char *s, bool exact) {
  size_t n = strlen(s);
  if (exact) {
    kb_val_bytes(k, s, n);
    return;
  }
  char tmp[ST_TEXT_FOLD_MAX(ST_DIR_IDX_VAL_MAX) + 1];
  char *f = ST_TEXT_FOLD_MAX(n) <= sizeof tmp ? tmp : malloc(ST_TEXT_FOLD_MAX(n));
  if (!f) {
    k->overflow = true;
    return;
  }
  kb_val_bytes(k, f, st_text_fold(s, n, f));
  if (f != tmp) free(f);
}

/* The index value as releases before migration 13 spelled it (ASCII
 * folding): the migration's old key, and nothing else. */
static void kb_val_ascii(st_dir_key *k, const char *s) {
  char *low = strdup(s);
  if (!low) {
    k->overflow = true;
    return;
  }
  for (char *p = low; *p; p++) *p = (char)tolower((unsigned char)*p);
  kb_val_bytes(k, low, strlen(low));
  free(low);
}

/* A user whose folded userName another user's index entry (have: its id)
 * already holds: that one keeps it, and the log names both. */
static void name_taken(st_txn *t, const char *tenant, const st_val *have, const char *id, const char *name) {
  char other[128];
  snprintf(other, sizeof other, "%.*s", (int)(have->len < 100 ? have->len : 100), (const char *)have->data);
  if (strcmp(other, id))
    st__log(t->st, ST_LOG_WARN,
            "tenant %s: users %s and %s have userNames that differ only in case (\"%.200s\"): %s keeps the name "
            "in the userName index (lookups by name find it), %s is found by id and externalId only; "
            "deprovision one of them at the IdP",
            tenant, other, id, name, other, id);
}

/* Store migration 13 (store_int.h): every userName and group displayName
 * index entry keyed by its Unicode folding instead of its ASCII one.
 * Found by review: "ÉMILE@acme.com" and "émile@acme.com" were two users
 * (the second POST 201, not 409), and Okta's lookup before a create missed
 * a user whose name differed in a non-ASCII letter's case. Names whose two
 * foldings agree (every ASCII name) are not touched. Where two users of a
 * store written before now fold alike, the one already indexed under the
 * folded key keeps it (else the first by id), and the other is left
 * without a name entry — still served by id and externalId, never
 * renamed (its name is the IdP's) — and the log names both. */
int st__dir_refold(st_txn *t) {
  st_cursor *c;
  int rc = st_cursor_open(t, ST_DB_SCIM_RES, &c);
  if (rc) return rc;
  json_t *work = json_array(); /* [tenant, type, id, name] of names whose keys change */
  st_val k, v;
  while (work && (rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 >= k.len || (kp[tl + 1] != ST_DIR_USER && kp[tl + 1] != ST_DIR_GROUP)) continue;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *name = json_string_value(json_object_get(r, kp[tl + 1] == ST_DIR_USER ? "userName" : "displayName"));
    if (name) {
      st_dir_key a = {0}, b = {0};
      kb_val_ascii(&a, name);
      kb_val(&b, name, false);
      if (a.n != b.n || memcmp(a.b, b.b, a.n))
        json_array_append_new(work, json_pack("[s%,s%,s%,s]", kp, tl, kp + tl + 1, (size_t)1, kp + tl + 2,
                                              k.len - tl - 2, name));
    }
    json_decref(r);
  }
  st_cursor_close(c);
  if (!work) return ST_ENOMEM;
  if (rc != ST_ENOTFOUND) {
    json_decref(work);
    return rc;
  }
  rc = 0;
  size_t i, moved = 0;
  json_t *w;
  json_array_foreach(work, i, w) {
    const char *tenant = json_string_value(json_array_get(w, 0)), *type = json_string_value(json_array_get(w, 1));
    const char *id = json_string_value(json_array_get(w, 2)), *name = json_string_value(json_array_get(w, 3));
    st_dir_key old = {0}, nu = {0};
    st_dir_key_tenant(&old, tenant);
    st_dir_key_tenant(&nu, tenant);
    if (*type == ST_DIR_GROUP) { /* one entry per group: the key ends with its id */
      kb_ch(&old, 'd'), kb_val_ascii(&old, name), kb_ch(&old, 0), kb_str(&old, id);
      st_dir_key_group_name(&nu, tenant, name, id);
      if (old.overflow || nu.overflow) continue;
      if ((rc = st_del(t, ST_DB_SCIM_IDX, old.b, old.n)) && rc != ST_ENOTFOUND) break;
      if ((rc = st_put(t, ST_DB_SCIM_IDX, nu.b, nu.n, "", 0, 0))) break;
      moved++;
      continue;
    }
    kb_ch(&old, 'u'), kb_val_ascii(&old, name);
    st_dir_key_username(&nu, tenant, name);
    if (old.overflow || nu.overflow) continue;
    st_val have;
    if ((rc = st_get(t, ST_DB_SCIM_IDX, old.b, old.n, &have)) == 0 && have.len == strlen(id) &&
        !memcmp(have.data, id, have.len) && (rc = st_del(t, ST_DB_SCIM_IDX, old.b, old.n)))
      break;
    if (rc && rc != ST_ENOTFOUND) break;
    rc = st_get(t, ST_DB_SCIM_IDX, nu.b, nu.n, &have);
    if (rc == 0) {
      name_taken(t, tenant, &have, id, name);
      continue;
    }
    if (rc != ST_ENOTFOUND) break;
    if ((rc = st_put(t, ST_DB_SCIM_IDX, nu.b, nu.n, id, strlen(id), 0))) break;
    moved++;
  }
  json_decref(work);
  if (!rc && moved) st__log(t->st, ST_LOG_INFO, "%zu userName and displayName index entries folded by Unicode", moved);
  return rc;
}

/* ---- the folding's version (st__dir_fold_sync) ---------------------------- */

#define FOLD_META_KEY "text_fold"

int st__dir_fold_version(st_txn *t, char out[32]) {
  st_val v;
  out[0] = 0;
  int rc = st_get(t, ST_DB_META, FOLD_META_KEY, strlen(FOLD_META_KEY), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  snprintf(out, 32, "%.*s", (int)(v.len < 31 ? v.len : 31), (const char *)v.data);
  return 0;
}

/* Keys collected under a cursor, written after it is closed: each is
 * [u16 key length][key][u8 id length][id]. */
typedef struct {
  char *b;
  size_t n, cap, count;
} keylist;

static int keylist_add(keylist *l, const void *k, size_t kn, const char *id) {
  size_t il = id ? strlen(id) : 0, need = 2 + kn + 1 + il;
  if (kn > 0xFFFF || il > 0xFF) return ST_EINVAL;
  if (l->n + need > l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4096;
    while (cap < l->n + need) cap *= 2;
    char *b = realloc(l->b, cap);
    if (!b) return ST_ENOMEM;
    l->b = b, l->cap = cap;
  }
  unsigned char *p = (unsigned char *)l->b + l->n;
  p[0] = (unsigned char)(kn >> 8), p[1] = (unsigned char)kn;
  memcpy(p + 2, k, kn);
  p[2 + kn] = (unsigned char)il;
  if (il) memcpy(p + 3 + kn, id, il);
  l->n += need;
  l->count++;
  return 0;
}

/* The entry at *off (advanced past it): key and id (not NUL-terminated). */
static bool keylist_next(const keylist *l, size_t *off, st_val *k, st_val *id) {
  if (*off >= l->n) return false;
  const unsigned char *p = (const unsigned char *)l->b + *off;
  k->len = (size_t)p[0] << 8 | p[1];
  k->data = p + 2;
  id->len = p[2 + k->len];
  id->data = p + 3 + k->len;
  *off += 3 + k->len + id->len;
  return true;
}

/* The key the record (kind 'u' or 'd') wants in the index, from its
 * stored name; false when there is no such record. */
static bool want_key(st_txn *t, const char *tenant, char kind, const char *id, st_dir_key *want) {
  json_t *r = NULL;
  if ((kind == 'u' ? st_dir_user_get(t, tenant, id, &r) : st_dir_group_get(t, tenant, id, &r)) != 0) return false;
  const char *name = json_string_value(json_object_get(r, kind == 'u' ? "userName" : "displayName"));
  if (kind == 'u') st_dir_key_username(want, tenant, name ? name : "");
  else st_dir_key_group_name(want, tenant, name ? name : "", id);
  json_decref(r);
  return !want->overflow;
}

/* Every userName ('u') and displayName ('d') index entry that is not the
 * key its record's name folds to now (or names no record) goes. */
static int fold_sync_stale(st_txn *t, keylist *dels) {
  st_cursor *c;
  st_val k, v;
  int rc = st_cursor_open(t, ST_DB_SCIM_IDX, &c);
  if (rc) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 > k.len || tl >= 64 || (kp[tl + 1] != 'u' && kp[tl + 1] != 'd')) continue;
    char tenant[64], id[ST_DIR_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (kp[tl + 1] == 'u') {
      snprintf(id, sizeof id, "%.*s", (int)(v.len < ST_DIR_ID_LEN ? v.len : ST_DIR_ID_LEN), (const char *)v.data);
    } else {
      if (k.len < tl + 3 + ST_DIR_ID_LEN) id[0] = 0;
      else snprintf(id, sizeof id, "%.*s", ST_DIR_ID_LEN, kp + k.len - ST_DIR_ID_LEN);
    }
    st_dir_key want;
    if (want_key(t, tenant, kp[tl + 1], id, &want) && want.n == k.len && !memcmp(want.b, k.data, k.len)) continue;
    if ((rc = keylist_add(dels, k.data, k.len, NULL)) < 0) break;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* Every user and group whose name's key is not in the index (as its own):
 * the key and the id to write. */
static int fold_sync_missing(st_txn *t, keylist *puts) {
  st_cursor *c;
  st_val k, v;
  int rc = st_cursor_open(t, ST_DB_SCIM_RES, &c);
  if (rc) return rc;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl >= 64 || k.len != tl + 2 + ST_DIR_ID_LEN || (kp[tl + 1] != ST_DIR_USER && kp[tl + 1] != ST_DIR_GROUP))
      continue;
    char tenant[64], id[ST_DIR_ID_LEN + 1], kind = kp[tl + 1] == ST_DIR_USER ? 'u' : 'd';
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    snprintf(id, sizeof id, "%.*s", ST_DIR_ID_LEN, kp + tl + 2);
    st_dir_key want;
    if (!want_key(t, tenant, kind, id, &want)) continue;
    int g = st_get(t, ST_DB_SCIM_IDX, want.b, want.n, &v);
    if (g == 0 && (kind == 'd' || (v.len == strlen(id) && !memcmp(v.data, id, v.len)))) continue;
    if (g && g != ST_ENOTFOUND) {
      rc = g;
      break;
    }
    if ((rc = keylist_add(puts, want.b, want.n, id)) < 0) break;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* The directory's name keys depend on the folding table (store/text.h),
 * which comes from the build machine's Unicode data: a binary built with
 * a newer one folds some names differently (a new case pair), and would
 * no longer find — or no longer see as taken — the names stored under the
 * old keys. So the store records the version beside the keys and, when a
 * binary's differs (or the store has none: written before it recorded
 * one), rewrites every key that differs, in this one transaction: stale
 * keys go first, then each record's key is written unless another user's
 * entry holds it (that one keeps the name; the log names both, as
 * migration 13). Entries that already agree are not touched, so a store
 * whose names are all ASCII costs a scan and nothing else. */
int st__dir_fold_sync(st_txn *t) {
  const char *now = st_text_fold_version();
  char was[32];
  int rc = st__dir_fold_version(t, was);
  if (rc < 0 || !strcmp(was, now)) return rc;
  keylist dels = {0}, puts = {0};
  size_t off = 0, moved = 0;
  st_val k, id, have;
  if ((rc = fold_sync_stale(t, &dels)) < 0) goto out;
  while (keylist_next(&dels, &off, &k, &id))
    if ((rc = st_del(t, ST_DB_SCIM_IDX, k.data, k.len)) < 0 && rc != ST_ENOTFOUND) goto out;
  if ((rc = fold_sync_missing(t, &puts)) < 0) goto out;
  for (off = 0; keylist_next(&puts, &off, &k, &id);) {
    const char *kp = k.data;
    char tenant[64], sid[ST_DIR_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%s", kp);
    snprintf(sid, sizeof sid, "%.*s", (int)id.len, (const char *)id.data);
    if (kp[strlen(tenant) + 1] == 'd') {
      rc = st_put(t, ST_DB_SCIM_IDX, k.data, k.len, "", 0, 0);
    } else if ((rc = st_get(t, ST_DB_SCIM_IDX, k.data, k.len, &have)) == 0) {
      json_t *u = NULL;
      st_dir_user_get(t, tenant, sid, &u);
      name_taken(t, tenant, &have, sid, json_string_value(json_object_get(u, "userName")) ?: "");
      json_decref(u);
      continue;
    } else if (rc == ST_ENOTFOUND) {
      rc = st_put(t, ST_DB_SCIM_IDX, k.data, k.len, sid, strlen(sid), 0);
    }
    if (rc < 0) goto out;
    moved++;
  }
  rc = st_put(t, ST_DB_META, FOLD_META_KEY, strlen(FOLD_META_KEY), now, strlen(now), 0);
  if (rc == 0 && (dels.count || moved))
    st__log(t->st, ST_LOG_INFO,
            "userName and displayName keys folded by Unicode %s (the store's were by %s): %zu stale removed, %zu "
            "written",
            now, was[0] ? was : "an unrecorded version", dels.count, moved);
out:
  free(dels.b);
  free(puts.b);
  return rc;
}

void st_dir_key_tenant(st_dir_key *k, const char *tenant) {
  k->n = 0;
  k->overflow = false;
  kb_raw(k, tenant, strlen(tenant) + 1);
}

void st_dir_key_res(st_dir_key *k, const char *tenant, char type, const char *id) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, type);
  kb_str(k, id);
}

void st_dir_key_username(st_dir_key *k, const char *tenant, const char *username) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'u');
  kb_val(k, username, false);
}

void st_dir_key_external(st_dir_key *k, const char *tenant, char type, const char *external_id,
                         const char *id) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'e');
  kb_ch(k, type);
  kb_val(k, external_id, true);
  kb_ch(k, 0);
  if (id) kb_str(k, id);
}

void st_dir_key_group_name(st_dir_key *k, const char *tenant, const char *display_name,
                           const char *id) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'd');
  kb_val(k, display_name, false);
  kb_ch(k, 0);
  if (id) kb_str(k, id);
}

void st_dir_key_count(st_dir_key *k, const char *tenant, char type) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'n');
  kb_ch(k, type);
}

void st_dir_key_list_gen(st_dir_key *k, const char *tenant, char type) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'w');
  kb_ch(k, type);
}

void st_dir_key_groups_rev(st_dir_key *k, const char *tenant, const char *uid) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'r');
  kb_str(k, uid);
}

void st_dir_key_block(st_dir_key *k, const char *tenant, const char *uid) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, 'b');
  kb_str(k, uid);
}

static void pair_key(st_dir_key *k, const char *tenant, char dir, const char *a, const char *b) {
  st_dir_key_tenant(k, tenant);
  kb_ch(k, dir);
  kb_str(k, a);
  kb_ch(k, 0);
  if (b) kb_str(k, b);
}

void st_dir_key_member(st_dir_key *k, const char *tenant, const char *gid, const char *uid) {
  pair_key(k, tenant, 'm', gid, uid);
}

void st_dir_key_user_group(st_dir_key *k, const char *tenant, const char *uid, const char *gid) {
  pair_key(k, tenant, 'g', uid, gid);
}

int st_dir_valid_id(const char *id) {
  if (!id || strlen(id) != ST_DIR_ID_LEN) return 0;
  for (int i = 0; i < ST_DIR_ID_LEN; i++) {
    char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return 0;
    } else if (!isxdigit((unsigned char)c) || isupper((unsigned char)c)) {
      return 0;
    }
  }
  return 1;
}

int st_dir_ids_under(st_txn *txn, st_db db, const st_dir_key *prefix, json_t *out, size_t limit) {
  st_cursor *c;
  if (prefix->overflow) return 0;
  int rc = st_cursor_open(txn, db, &c);
  if (rc) return rc;
  st_cursor_seek(c, prefix->b, prefix->n, NULL, 0);
  st_val k;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len < prefix->n + ST_DIR_ID_LEN) continue;
    json_array_append_new(out, json_stringn((const char *)k.data + k.len - ST_DIR_ID_LEN, ST_DIR_ID_LEN));
    if (limit && json_array_size(out) >= limit) break;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || rc == 0 ? 0 : rc;
}

/* ---- lookups ----------------------------------------------------------------- */

static int res_get(st_txn *txn, const char *tenant, char type, const char *id, json_t **out) {
  st_dir_key k;
  st_val v;
  *out = NULL;
  if (!st_dir_valid_id(id)) return ST_ENOTFOUND;
  st_dir_key_res(&k, tenant, type, id);
  if (k.overflow) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_SCIM_RES, k.b, k.n, &v);
  if (rc) return rc;
  *out = json_loadb(v.data, v.len, 0, NULL);
  return *out ? 0 : ST_ECORRUPT;
}

int st_dir_user_get(st_txn *txn, const char *tenant, const char *id, json_t **out) {
  return res_get(txn, tenant, ST_DIR_USER, id, out);
}

int st_dir_group_get(st_txn *txn, const char *tenant, const char *id, json_t **out) {
  return res_get(txn, tenant, ST_DIR_GROUP, id, out);
}

int st_dir_group_exists(st_txn *txn, const char *tenant, const char *id) {
  json_t *g;
  int rc = res_get(txn, tenant, ST_DIR_GROUP, id, &g);
  json_decref(g);
  return rc;
}

int st_dir_user_by_name(st_txn *txn, const char *tenant, const char *username,
                        char id[ST_DIR_ID_LEN + 1]) {
  st_dir_key k;
  st_val v;
  id[0] = 0;
  st_dir_key_username(&k, tenant, username);
  if (k.overflow) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v);
  if (rc) return rc;
  size_t n = v.len < ST_DIR_ID_LEN ? v.len : ST_DIR_ID_LEN;
  memcpy(id, v.data, n);
  id[n] = 0;
  return 0;
}

int st_dir_user_by_external(st_txn *txn, const char *tenant, const char *external_id,
                            char id[ST_DIR_ID_LEN + 1]) {
  st_dir_key k;
  id[0] = 0;
  st_dir_key_external(&k, tenant, ST_DIR_USER, external_id, NULL);
  json_t *ids = json_array();
  if (!ids) return ST_ENOMEM;
  int rc = st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, 1);
  if (rc == 0 && json_array_size(ids) == 0) rc = ST_ENOTFOUND;
  if (rc == 0) {
    memcpy(id, json_string_value(json_array_get(ids, 0)), ST_DIR_ID_LEN);
    id[ST_DIR_ID_LEN] = 0;
  }
  json_decref(ids);
  return rc;
}

int st_dir_user_external_other(st_txn *txn, const char *tenant, const char *external_id, const char *self,
                               char id[ST_DIR_ID_LEN + 1]) {
  st_dir_key k;
  id[0] = 0;
  st_dir_key_external(&k, tenant, ST_DIR_USER, external_id, NULL);
  if (k.overflow) return ST_ENOTFOUND;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_SCIM_IDX, &c);
  if (rc) return rc;
  st_cursor_seek(c, k.b, k.n, NULL, 0);
  st_val kv;
  /* ids under the prefix, in order; self's own entry and stale ones (a
   * record that no longer has this externalId) are passed over */
  while ((rc = st_cursor_next(c, &kv, NULL)) == 0) {
    if (kv.len != k.n + ST_DIR_ID_LEN) continue;
    char cand[ST_DIR_ID_LEN + 1];
    memcpy(cand, (const char *)kv.data + k.n, ST_DIR_ID_LEN);
    cand[ST_DIR_ID_LEN] = 0;
    if (self && !strcmp(cand, self)) continue;
    json_t *u;
    int r = res_get(txn, tenant, ST_DIR_USER, cand, &u);
    if (r == ST_ENOTFOUND) continue;
    if (r) {
      rc = r;
      break;
    }
    const char *ext = json_string_value(json_object_get(u, "externalId"));
    bool same = ext && !strcmp(ext, external_id);
    json_decref(u);
    if (same) {
      memcpy(id, cand, sizeof cand);
      break;
    }
  }
  st_cursor_close(c);
  return rc;
}

int st__test_dir_user_set_external(st_txn *txn, const char *tenant, const char *id, const char *ext) {
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, id, &u);
  if (rc) return rc;
  st_dir_key k;
  const char *old = json_string_value(json_object_get(u, "externalId"));
  if (old) {
    st_dir_key_external(&k, tenant, ST_DIR_USER, old, id);
    if ((rc = st_del(txn, ST_DB_SCIM_IDX, k.b, k.n)) && rc != ST_ENOTFOUND) goto out;
  }
  json_object_set_new(u, "externalId", json_string(ext));
  char *s = json_dumps(u, JSON_COMPACT | JSON_PRESERVE_ORDER);
  st_dir_key_res(&k, tenant, ST_DIR_USER, id);
  rc = s ? st_put(txn, ST_DB_SCIM_RES, k.b, k.n, s, strlen(s), 0) : ST_ENOMEM;
  free(s);
  if (rc) goto out;
  st_dir_key_external(&k, tenant, ST_DIR_USER, ext, id);
  rc = st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, "", 0, 0);
out:
  json_decref(u);
  return rc;
}

int st_dir_user_find(st_txn *txn, const char *tenant, const char *ref, json_t **out) {
  *out = NULL;
  if (st_dir_valid_id(ref)) {
    int rc = res_get(txn, tenant, ST_DIR_USER, ref, out);
    if (rc != ST_ENOTFOUND) return rc;
  }
  char owner[ST_DIR_ID_LEN + 1];
  int rc = st_dir_user_by_name(txn, tenant, ref, owner);
  if (rc) return rc;
  return res_get(txn, tenant, ST_DIR_USER, owner, out);
}

bool st_dir_user_record_active(const json_t *user) {
  json_t *a = json_object_get(user, "active");
  return !a || json_is_true(a);
}

int st_dir_user_active(st_txn *txn, const char *tenant, const char *id) {
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, id, &u);
  if (rc) return rc;
  rc = st_dir_user_record_active(u) && !st_dir_user_cut_marked(txn->st, tenant, id) ? 1 : 0;
  json_decref(u);
  if (rc == 1) {
    int b = st_dir_user_block_get(txn, tenant, id, NULL);
    if (b == 0) rc = 0;
    else if (b != ST_ENOTFOUND) rc = b;
  }
  return rc;
}

bool st_dir_user_usable(st_txn *txn, const char *tenant, const json_t *user) {
  if (!st_dir_user_record_active(user)) return false;
  const char *id = json_string_value(json_object_get(user, "id"));
  return id && !st_dir_user_cut_marked(txn->st, tenant, id) &&
         st_dir_user_block_get(txn, tenant, id, NULL) == ST_ENOTFOUND;
}

/* ---- users cut in memory ------------------------------------------------------ */

/* The marks live in a dense array (st->cut, st->ncut entries) indexed by
 * an open-addressing hash of (tenant, id) (st->cutidx: entry index + 1, 0
 * empty; linear probing, deletion by backward shift), so a check costs
 * the same with one mark or 65,536. Each tenant with marks also has a
 * counter entry (id "") holding how many it has: the per-tenant cap is
 * one lookup. Everything under cutmu; ncut (entries, counters included)
 * and nusers are atomics so the usual empty set costs one load. */
struct st__cut {
  char tenant[ST_TENANT_ID_MAX + 1];
  char id[ST_DIR_ID_LEN + 1]; /* "": the tenant's counter entry */
  uint32_t hash;
  uint32_t count; /* counter entry: the tenant's marks */
  uint8_t kinds;  /* CUT_K_*: who made it, so which commits end it */
};

/* Who made a mark, which decides what ends it (a mark may have several:
 * it ends when none is left):
 *   IDP     an IdP's deactivation or deletion ("put", "patch", "delete"):
 *           ended by the IdP's next word on active (st_dir_user_cut_end)
 *           or a reactivation, never by the admin's restore;
 *   ADMIN   an admin's revoke ("revoke"): ended by the admin's block or
 *           restore, never by the IdP's writes;
 *   LOGOUT  Okta's Universal Logout ("logout"): ended by a sign-out of
 *           the user that commits (Okta's retry; the user's next sign-in
 *           or the admin's restore, which sign them out first; a block):
 *           whatever ends it must
 *           have deleted the credentials the logout could not, or they
 *           would work again.
 * So must whatever ends an IDP or ADMIN mark while the user is active
 * (cut_sign_out_first): the cut deleted nothing either.
 * A committed deactivation or deletion, a block and the tenant's deletion
 * end every kind: their transactions deleted every credential. */
enum { CUT_K_IDP = 1, CUT_K_ADMIN = 2, CUT_K_LOGOUT = 4, CUT_K_ALL = 7 };
static const char cut_k_letter[] = {'i', 'a', 'l'}; /* in the log, by bit */

static uint8_t cut_k_of_via(const char *via) {
  return !strcmp(via, "revoke") ? CUT_K_ADMIN : !strcmp(via, "logout") ? CUT_K_LOGOUT : CUT_K_IDP;
}

/* "ial" order letters of kinds into out (4 bytes) */
static void cut_k_letters(uint8_t kinds, char out[4]) {
  size_t n = 0;
  for (int b = 0; b < 3; b++)
    if (kinds & (1u << b)) out[n++] = cut_k_letter[b];
  out[n] = 0;
}

/* letters back to kinds; 0 when any is not a kind */
static uint8_t cut_k_parse(const char *s) {
  uint8_t k = 0;
  for (; *s; s++) {
    const char *at = memchr(cut_k_letter, *s, sizeof cut_k_letter);
    if (!at) return 0;
    k |= (uint8_t)(1u << (at - cut_k_letter));
  }
  return k;
}

#define CUT_ENTRIES_MAX (2 * ST_DIR_CUT_MAX) /* every mark of its own tenant: as many counters */

static uint32_t cut_hash(const char *tenant, const char *id) {
  uint32_t h = 2166136261u;
  for (const char *p = tenant; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  h = (h ^ 0xffu) * 16777619u; /* a byte no tenant id holds: "ab"+"c" is not "a"+"bc" */
  for (const char *p = id; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  return h ^ (h >> 15);
}

/* the slot of tenant/id, or of the empty slot where it would go */
static size_t cut_slot(const st_store *st, const char *tenant, const char *id, uint32_t h) {
  size_t mask = st->cutidxcap - 1;
  for (size_t s = h & mask;; s = (s + 1) & mask) {
    uint32_t v = st->cutidx[s];
    if (!v) return s;
    const struct st__cut *c = &st->cut[v - 1];
    if (c->hash == h && !strcmp(c->id, id) && !strcmp(c->tenant, tenant)) return s;
  }
}

/* index of tenant/id in st->cut, or -1; under cutmu */
static long cut_find(const st_store *st, const char *tenant, const char *id) {
  if (!st->cutidxcap) return -1;
  uint32_t v = st->cutidx[cut_slot(st, tenant, id, cut_hash(tenant, id))];
  return v ? (long)v - 1 : -1;
}

/* room for two more entries (a mark and its tenant's counter): the array
 * doubles, the index is rebuilt at twice the array's size (at most half
 * full) */
static int cut_reserve(st_store *st) {
  size_t n = atomic_load(&st->ncut);
  if (n + 2 <= st->cutcap) return 0;
  size_t cap = st->cutcap ? st->cutcap * 2 : 16;
  if (cap > CUT_ENTRIES_MAX) return ST_ENOMEM;
  struct st__cut *c = realloc(st->cut, cap * sizeof *c);
  if (!c) return ST_ENOMEM;
  st->cut = c;
  uint32_t *idx = calloc(2 * cap, sizeof *idx);
  if (!idx) return ST_ENOMEM; /* the array grew; the old index still serves */
  free(st->cutidx);
  st->cutidx = idx;
  st->cutidxcap = 2 * cap;
  st->cutcap = cap;
  for (size_t i = 0; i < n; i++) st->cutidx[cut_slot(st, c[i].tenant, c[i].id, c[i].hash)] = (uint32_t)(i + 1);
  return 0;
}

static void cut_add(st_store *st, const char *tenant, const char *id, uint32_t h, uint32_t count, uint8_t kinds) {
  size_t n = atomic_load(&st->ncut);
  struct st__cut *c = &st->cut[n];
  snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
  snprintf(c->id, sizeof c->id, "%s", id);
  c->hash = h;
  c->count = count;
  c->kinds = kinds;
  st->cutidx[cut_slot(st, tenant, id, h)] = (uint32_t)(n + 1);
  atomic_store(&st->ncut, n + 1);
}

/* removes entry i: its slot by backward shift, then the last entry moves
 * into i (its slot follows) */
static void cut_remove(st_store *st, size_t i) {
  size_t mask = st->cutidxcap - 1, n = atomic_load(&st->ncut);
  size_t s = cut_slot(st, st->cut[i].tenant, st->cut[i].id, st->cut[i].hash);
  for (;;) {
    st->cutidx[s] = 0;
    size_t t = s;
    for (;;) {
      t = (t + 1) & mask;
      uint32_t v = st->cutidx[t];
      if (!v) goto shifted;
      size_t home = st->cut[v - 1].hash & mask;
      /* v may move back to s unless its home lies cyclically in (s, t] */
      bool stays = s <= t ? (home > s && home <= t) : (home > s || home <= t);
      if (!stays) {
        st->cutidx[s] = v;
        s = t;
        break;
      }
    }
  }
shifted:
  if (i != n - 1) {
    st->cutidx[cut_slot(st, st->cut[n - 1].tenant, st->cut[n - 1].id, st->cut[n - 1].hash)] = (uint32_t)(i + 1);
    st->cut[i] = st->cut[n - 1];
  }
  atomic_store(&st->ncut, n - 1);
}

/* the kinds `ends` of tenant/id's mark go (under cutmu); the mark ends
 * when none is left. *left (may be NULL) = the kinds it keeps. Whether
 * anything changed. */
static bool cut_unmark(st_store *st, const char *tenant, const char *id, uint8_t ends, uint8_t *left) {
  long i = cut_find(st, tenant, id);
  if (left) *left = 0;
  if (i < 0 || !(st->cut[i].kinds & ends)) {
    if (left && i >= 0) *left = st->cut[i].kinds;
    return false;
  }
  st->cut[i].kinds &= (uint8_t)~ends;
  if (st->cut[i].kinds) {
    if (left) *left = st->cut[i].kinds;
    return true;
  }
  cut_remove(st, (size_t)i);
  atomic_fetch_sub(&st->nusers, 1);
  long k = cut_find(st, tenant, "");
  if (k >= 0 && --st->cut[k].count == 0) cut_remove(st, (size_t)k);
  return true;
}

/* every mark of tenant ends, its counter too (under cutmu); whether any did */
static bool cut_unmark_tenant(st_store *st, const char *tenant) {
  bool ended = false;
  /* backwards: cut_remove moves the last entry (already seen) into i */
  for (size_t i = atomic_load(&st->ncut); i-- > 0;) {
    if (strcmp(st->cut[i].tenant, tenant)) continue;
    if (st->cut[i].id[0]) atomic_fetch_sub(&st->nusers, 1);
    cut_remove(st, i);
    ended = true;
  }
  return ended;
}

/* a new mark of tenant/id (under cutmu; not marked yet): 0, or ST_ENOMEM
 * past a cap (one tenant never uses up the others' room) */
static int cut_mark(st_store *st, const char *tenant, const char *id, uint8_t kinds) {
  long k = cut_find(st, tenant, "");
  if ((k >= 0 && st->cut[k].count >= ST_DIR_CUT_TENANT_MAX) || atomic_load(&st->nusers) >= ST_DIR_CUT_MAX)
    return ST_ENOMEM;
  int rc = cut_reserve(st);
  if (rc) return rc;
  if (k < 0) cut_add(st, tenant, "", cut_hash(tenant, ""), 0, 0);
  st->cut[cut_find(st, tenant, "")].count++;
  cut_add(st, tenant, id, cut_hash(tenant, id), 0, kinds);
  atomic_fetch_add(&st->nusers, 1);
  return 0;
}

/* ---- the marks' log: <dir>/unwritten-cuts ----
 * A restart must not hand access back: the usual remedy for a full store
 * (raise store_map_size) is one, and the IdP does not retry a failed task
 * by itself. So the main store appends every change of the marks to a
 * small text file beside data.mdb ("+ tenant id KINDS": the kinds added,
 * letters of "ial"; "- tenant id KINDS": those gone; "- tenant id": the
 * mark gone; "- tenant *": the tenant's), read back at open. No fsync: it is written on the loop
 * and must survive a process restart, which the page cache does (not a
 * host crash). Rewritten whole (tmp + rename) when it holds far more lines
 * than marks. Under cutmu. */
#define CUT_LOG ST__CUT_LOG

static void cut_log_compact(st_store *st);

static void cut_log(st_store *st, const char *op, const char *tenant, const char *id, uint8_t kinds) {
  if (st->cutfd < 0) return;
  char line[ST_TENANT_ID_MAX + ST_DIR_ID_LEN + 16], kl[4];
  cut_k_letters(kinds, kl);
  int n = kinds ? snprintf(line, sizeof line, "%s %s %s %s\n", op, tenant, id, kl)
                : snprintf(line, sizeof line, "%s %s %s\n", op, tenant, id);
  if (n <= 0 || (size_t)n >= sizeof line || write(st->cutfd, line, (size_t)n) != n) {
    st__log(st, ST_LOG_ERROR, "cannot append to %s/" CUT_LOG " (%s): users cut in memory would not stay cut "
            "across a restart", st->dir, strerror(errno));
    return;
  }
  if (++st->cutlines > 2 * atomic_load(&st->nusers) + 1024) cut_log_compact(st);
}

static void cut_log_compact(st_store *st) {
  size_t n = atomic_load(&st->ncut), len = 0, lines = 0;
  char *buf = malloc(n * (ST_TENANT_ID_MAX + ST_DIR_ID_LEN + 8) + 1);
  if (!buf) return;
  for (size_t i = 0; i < n; i++) {
    const struct st__cut *c = &st->cut[i];
    if (!c->id[0]) continue;
    char kl[4];
    cut_k_letters(c->kinds, kl);
    len += (size_t)sprintf(buf + len, "+ %s %s %s\n", c->tenant, c->id, kl);
    lines++;
  }
  if (st__marks_file_replace(st, CUT_LOG, buf, len, &st->cutfd) == 0) st->cutlines = lines;
  free(buf);
}

int st__marks_file_replace(st_store *st, const char *name, const char *buf, size_t len, int *fd) {
  char path[4096], tmp[4096 + 8];
  snprintf(path, sizeof path, "%s/%s", st->dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  /* the new file is appended to through the descriptor that wrote it: no
   * reopen after the rename that could fail and leave the lines that
   * follow going to the replaced file */
  int t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (t < 0) return -1;
  if (write(t, buf, len) != (ssize_t)len || rename(tmp, path) != 0) {
    close(t);
    unlink(tmp);
    return -1; /* the long file still says the same */
  }
  close(*fd);
  *fd = t;
  return 0;
}

void st__dir_cut_load(st_store *st) {
  char path[4096];
  snprintf(path, sizeof path, "%s/" CUT_LOG, st->dir);
  /* read_only: read what is there (none: nothing cut), make nothing */
  int fd = st->read_only ? open(path, O_RDONLY | O_CLOEXEC) : open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 && st->read_only && errno == ENOENT) return;
  if (fd < 0) {
    st__log(st, ST_LOG_ERROR, "cannot open %s (%s): users cut in memory will not stay cut across a restart", path,
            strerror(errno));
    return;
  }
  FILE *f = fdopen(dup(fd), "r");
  size_t lines = 0, bad = 0;
  char line[256];
  uv_mutex_lock(&st->cutmu);
  while (f && fgets(line, sizeof line, f)) {
    char op, kl[5] = "", tenant[65], id[41]; /* one more than a valid one holds: too long is refused */
    _Static_assert(ST_TENANT_ID_MAX < 64 && ST_DIR_ID_LEN < 40, "the widths below");
    lines++;
    int k = sscanf(line, "%c %64s %40s %4s", &op, tenant, id, kl);
    uint8_t kinds = k == 4 ? cut_k_parse(kl) : 0;
    if (k < 3 || strlen(tenant) > ST_TENANT_ID_MAX || strlen(id) > ST_DIR_ID_LEN || !st_tenant_id_valid(tenant) ||
        (k == 4 && (strlen(kl) > 3 || !kinds)) || (op == '+' && k < 4) || (op != '+' && op != '-')) {
      bad++;
      continue;
    }
    if (op == '-') {
      if (strcmp(id, "*")) cut_unmark(st, tenant, id, k == 4 ? kinds : CUT_K_ALL, NULL);
      else cut_unmark_tenant(st, tenant);
      continue;
    }
    long have = cut_find(st, tenant, id);
    if (have >= 0) st->cut[have].kinds |= kinds;
    else if (cut_mark(st, tenant, id, kinds) != 0) bad++;
  }
  if (f) fclose(f);
  st->cutfd = fd;
  st->cutlines = lines;
  size_t users = atomic_load(&st->nusers);
  if (users) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  if (users)
    st__log(st, ST_LOG_ERROR, "%zu user(s) whose removal of access could not be written before the restart stay cut "
            "in memory (%s): retry their deactivation or Universal Logout in the IdP now that the store has room (an "
            "admin's restore ends an admin's revoke or a logout)", users, path);
  if (bad) st__log(st, ST_LOG_WARN, "%s: %zu line(s) not understood, skipped", path, bad);
}

int st_dir_hook_cut_unwritten(st_store *st, st_dir_cut_fn fn, void *ctx) {
  if (!st || !fn || atomic_load(&st->serving)) return ST_EINVAL;
  if (st->ncutfn >= sizeof st->cutfn / sizeof st->cutfn[0]) return ST_ENOMEM;
  st->cutfn[st->ncutfn] = fn;
  st->cutctx[st->ncutfn++] = ctx;
  return 0;
}

int st_dir_user_cut_unwritten(st_store *st, const char *tenant, const char *id, const char *via) {
  if (!st || !tenant || !id || !via || !tenant[0] || !id[0] || strlen(tenant) > ST_TENANT_ID_MAX ||
      strlen(id) > ST_DIR_ID_LEN)
    return ST_EINVAL;
  int rc = 0;
  bool added = false;
  uint8_t kind = cut_k_of_via(via);
  uv_mutex_lock(&st->cutmu);
  long have = cut_find(st, tenant, id);
  if (have >= 0) {
    /* a kind it lacks: ended only by what ends that kind too (an admin's
     * revoke outlives the IdP's writes, a logout needs a sign-out). In
     * memory first: the line may make the log rewrite itself from memory */
    bool more = !(st->cut[have].kinds & kind);
    st->cut[have].kinds |= kind;
    if (more) cut_log(st, "+", tenant, id, kind);
  } else if (!(rc = cut_mark(st, tenant, id, kind))) {
    added = true;
    cut_log(st, "+", tenant, id, kind);
  }
  /* only a new mark changes the snapshot: the IdP retrying a failing
   * deactivation must neither empty every loop's caches each time nor walk
   * the generation (24 bits of the snapshot) back to an earlier value */
  if (added) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  for (size_t i = 0; !rc && i < st->ncutfn; i++) st->cutfn[i](st->cutctx[i], tenant, id, via);
  return rc;
}

size_t st_dir_users_cut_count(st_store *st) { return st ? atomic_load(&st->nusers) : 0; }

/* the kinds of tenant/id's mark (0: none) */
static uint8_t cut_kinds(st_store *st, const char *tenant, const char *id) {
  if (atomic_load(&st->ncut) == 0) return 0;
  uv_mutex_lock(&st->cutmu);
  long i = cut_find(st, tenant, id);
  uint8_t kinds = i >= 0 ? st->cut[i].kinds : 0;
  uv_mutex_unlock(&st->cutmu);
  return kinds;
}

bool st_dir_user_usable_once_signed_out(st_txn *txn, const char *tenant, const json_t *user) {
  const char *id = json_string_value(json_object_get(user, "id"));
  return txn && tenant && id && st_dir_user_record_active(user) && cut_kinds(txn->st, tenant, id) == CUT_K_LOGOUT &&
         st_dir_user_block_get(txn, tenant, id, NULL) == ST_ENOTFOUND;
}

bool st_dir_user_cut_marked(st_store *st, const char *tenant, const char *id) {
  if (!st || !tenant || !id || !id[0] || atomic_load(&st->ncut) == 0) return false;
  uv_mutex_lock(&st->cutmu);
  bool marked = cut_find(st, tenant, id) >= 0;
  uv_mutex_unlock(&st->cutmu);
  return marked;
}

typedef struct cut_end {
  st_store *st;
  char tenant[ST_TENANT_ID_MAX + 1];
  char id[ST_DIR_ID_LEN + 1]; /* "": every mark of the tenant */
  uint8_t ends;                /* the kinds this commit ends (CUT_K_*) */
} cut_end;

static void cut_end_run(void *arg) {
  cut_end *c = arg;
  st_store *st = c->st;
  bool ended = false;
  uv_mutex_lock(&st->cutmu);
  if (c->id[0]) {
    uint8_t left = 0;
    ended = cut_unmark(st, c->tenant, c->id, c->ends, &left);
    if (ended) cut_log(st, "-", c->tenant, c->id, left ? c->ends : 0);
  } else {
    ended = cut_unmark_tenant(st, c->tenant);
    if (ended) cut_log(st, "-", c->tenant, "*", 0);
  }
  if (ended) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  free(c);
}

/* id "": every mark of the tenant (its counter entry says it has some) */
static int cut_end_after(st_txn *t, const char *tenant, const char *id, uint8_t ends) {
  st_store *st = t->st;
  if (atomic_load(&st->ncut) == 0) return 0;
  uv_mutex_lock(&st->cutmu);
  bool any = cut_find(st, tenant, id) >= 0;
  uv_mutex_unlock(&st->cutmu);
  if (!any) return 0;
  cut_end *c = calloc(1, sizeof *c);
  if (!c) return ST_ENOMEM;
  c->st = st;
  snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
  snprintf(c->id, sizeof c->id, "%s", id);
  c->ends = ends;
  int rc = st_txn_after_commit(t, cut_end_run, free, c);
  if (rc) free(c);
  return rc;
}

/* A cut that could not be written left the user's credentials stored
 * (only the mark refuses them): whatever ends the mark while the user is
 * active signs them out in the same transaction first — deleting what the
 * cut would have, the upstream grants' revocation queued — or the stolen
 * laptop's token, session and upstream grants would work again (found by
 * review). Nothing when the user has none of those marks, or is inactive
 * (its deactivation deleted them). */
static int user_emit(st_txn *txn, int kind, const char *tenant, const char *uid, const json_t *user,
                     const char *via);
static int cut_sign_out_first(st_txn *txn, const char *tenant, const char *uid, uint8_t kinds, const char *via) {
  if (!(cut_kinds(txn->st, tenant, uid) & kinds)) return 0;
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, uid, &u);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  if (st_dir_user_record_active(u)) rc = user_emit(txn, ST_DIR_EV_USER_SIGNED_OUT, tenant, uid, u, via);
  json_decref(u);
  return rc;
}

int st_dir_user_cut_end(st_txn *t, const char *tenant, const char *id) {
  if (!t || !t->write || !tenant || !id || !id[0]) return ST_EINVAL;
  int rc = cut_sign_out_first(t, tenant, id, CUT_K_IDP, "settle");
  return rc ? rc : cut_end_after(t, tenant, id, CUT_K_IDP);
}

int st__dir_cut_settle(st_txn *t, int kind, const void *event) {
  if (!event) return 0;
  if (kind == ST_EVENT_TENANT_DELETING) { /* nothing of it is served any more */
    const st_tenant_event *te = event;
    return te->tenant ? cut_end_after(t, te->tenant, "", CUT_K_ALL) : 0;
  }
  const st_dir_event *ev = event;
  if ((kind != ST_DIR_EV_USER_DEACTIVATED && kind != ST_DIR_EV_USER_REACTIVATED && kind != ST_DIR_EV_USER_DELETED &&
       kind != ST_DIR_EV_USER_SIGNED_OUT) ||
      !ev->tenant || !ev->id || !ev->id[0])
    return 0;
  /* a deactivation or deletion: the store now says the user is inactive
   * or gone, and its hooks deleted every credential. A reactivation ends
   * the IdP's mark, an admin's only when it is the admin's restore. A
   * sign-out deleted the credentials a logout could not. */
  uint8_t ends = kind == ST_DIR_EV_USER_SIGNED_OUT ? CUT_K_LOGOUT
                 : kind != ST_DIR_EV_USER_REACTIVATED ? CUT_K_ALL
                 : ev->via && !strcmp(ev->via, "restore") ? CUT_K_ADMIN
                                                          : CUT_K_IDP;
  return cut_end_after(t, ev->tenant, ev->id, ends);
}

/* ---- blocks ------------------------------------------------------------------ */

int st_dir_user_block_get(st_txn *txn, const char *tenant, const char *uid, json_t **info) {
  if (info) *info = NULL;
  if (!st_dir_valid_id(uid)) return ST_ENOTFOUND;
  st_dir_key k;
  st_dir_key_block(&k, tenant, uid);
  if (k.overflow) return ST_ENOTFOUND;
  st_val v;
  int rc = st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v);
  if (rc || !info) return rc;
  *info = json_loadb(v.data, v.len, 0, NULL);
  return *info ? 0 : ST_ECORRUPT;
}

static int user_emit(st_txn *txn, int kind, const char *tenant, const char *uid, const json_t *user,
                      const char *via) {
  st_dir_event ev = {tenant, uid, json_string_value(json_object_get(user, "userName")), NULL, via, NULL, 0, NULL, 0};
  int rc = st_emit(txn, kind, &ev);
  return rc < 0 ? rc : 0;
}

int st_dir_user_block(st_txn *txn, const char *tenant, const char *uid, const json_t *info, bool *already) {
  *already = false;
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, uid, &u);
  if (rc) return rc;
  rc = st_dir_user_block_get(txn, tenant, uid, NULL);
  if (rc == 0) *already = true;
  if (rc == 0 || rc != ST_ENOTFOUND) {
    json_decref(u);
    return rc;
  }
  char *text = json_dumps(info, JSON_COMPACT);
  st_dir_key k;
  st_dir_key_block(&k, tenant, uid);
  rc = text ? (k.overflow ? ST_EINVAL : st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, text, strlen(text), 0)) : ST_ENOMEM;
  free(text);
  if (!rc && st_dir_user_record_active(u)) rc = user_emit(txn, ST_DIR_EV_USER_DEACTIVATED, tenant, uid, u, "revoke");
  if (!rc) rc = cut_end_after(txn, tenant, uid, CUT_K_ALL); /* the block is stored: the mark's work is done */
  json_decref(u);
  return rc;
}

int st_dir_user_unblock(st_txn *txn, const char *tenant, const char *uid, bool *was) {
  *was = false;
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, uid, &u);
  if (rc) return rc;
  st_dir_key k;
  st_dir_key_block(&k, tenant, uid);
  rc = k.overflow ? ST_ENOTFOUND : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
  if (rc == 0) {
    *was = true;
    if (st_dir_user_record_active(u)) rc = user_emit(txn, ST_DIR_EV_USER_REACTIVATED, tenant, uid, u, "restore");
  } else if (rc == ST_ENOTFOUND) {
    rc = 0;
  }
  /* the admin's restore lifts the admin's cut in memory too (a revoke
   * that could not be written left no block to delete) and a logout's; not
   * the IdP's, which only the IdP's word ends (a written deactivation
   * stays too). Those cuts left the user's credentials: the restore signs
   * them out first (its commit ends a logout's mark), so they sign in
   * afresh. */
  if (!rc) rc = cut_sign_out_first(txn, tenant, uid, CUT_K_LOGOUT | CUT_K_ADMIN, "restore");
  if (!rc) rc = cut_end_after(txn, tenant, uid, CUT_K_ADMIN);
  json_decref(u);
  return rc;
}

int st_dir_user_block_forget(st_txn *txn, const char *tenant, const char *uid) {
  st_dir_key k;
  st_dir_key_block(&k, tenant, uid);
  if (k.overflow) return 0;
  int rc = st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* ---- signing out everywhere ------------------------------------------------------ */

int st_dir_user_sign_out(st_txn *txn, const char *tenant, const char *uid, const char *via) {
  json_t *u;
  int rc = res_get(txn, tenant, ST_DIR_USER, uid, &u);
  if (rc) return rc;
  rc = user_emit(txn, ST_DIR_EV_USER_SIGNED_OUT, tenant, uid, u, via);
  json_decref(u);
  return rc;
}

int st_dir_hook_user_cut(st_store *st, st_hook_fn fn, void *ctx) {
  static const int kinds[] = {ST_DIR_EV_USER_DEACTIVATED, ST_DIR_EV_USER_DELETED, ST_DIR_EV_USER_SIGNED_OUT};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    int rc = st_hook_add(st, kinds[i], fn, ctx);
    if (rc) return rc;
  }
  return 0;
}

int st_dir_user_groups(st_txn *txn, const char *tenant, const char *uid, json_t **gids) {
  st_dir_key p;
  if (!(*gids = json_array())) return ST_ENOMEM;
  if (!st_dir_valid_id(uid)) return 0;
  st_dir_key_user_group(&p, tenant, uid, NULL);
  int rc = st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, *gids, 0);
  return rc ? rc : st__dir_mcut_filter(txn->st, tenant, uid, *gids);
}

int st_dir_groups_by_name(st_txn *txn, const char *tenant, const char *name, json_t *ids,
                          size_t limit) {
  st_dir_key p;
  json_t *cands = json_array();
  if (!cands) return ST_ENOMEM;
  st_dir_key_group_name(&p, tenant, name, NULL);
  int rc = st_dir_ids_under(txn, ST_DB_SCIM_IDX, &p, cands, 0);
  size_t i;
  json_t *id;
  json_array_foreach(cands, i, id) {
    if (rc || (limit && json_array_size(ids) >= limit)) break;
    json_t *g;
    int grc = res_get(txn, tenant, ST_DIR_GROUP, json_string_value(id), &g);
    if (grc == ST_ENOTFOUND) continue; /* index ahead of a record: not a hit */
    if (grc) {
      rc = grc;
      break;
    }
    const char *dn = json_string_value(json_object_get(g, "displayName"));
    if (dn && st_text_fold_eq(dn, name)) json_array_append(ids, id);
    json_decref(g);
  }
  json_decref(cands);
  return rc;
}
