/* store/txn.c — transactions as the rest of the gateway sees them: read
 * snapshots, get/put/del with transparent hashing of long keys, cursors for
 * prefix scans, in-transaction hooks (st_emit) and post-commit actions.
 *
 * A write txn here is always a job's (the batch txn it runs in, or its
 * child of the batch txn once a job of the batch failed) or a migration
 * txn; it is
 * begun and ended by the writer (writer.c). Any LMDB failure other than
 * not-found / key-exists "poisons" the txn: LMDB itself refuses further use
 * of a txn after such an error, and the writer aborts a poisoned job
 * whatever the job returns, so a job that ignores an error can never commit
 * half its writes. */
#include "store/store_int.h"
#include "store/dir.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


void st__txn_init(st_txn *t, st_store *st, MDB_txn *txn, int write) {
  memset(t, 0, sizeof *t);
  t->st = st;
  t->txn = txn;
  t->write = write;
  t->cutgen = atomic_load(&st->cutgen);
}

st_store *st_txn_store(st_txn *txn) { return txn ? txn->st : NULL; }
int st_txn_is_write(const st_txn *txn) { return txn && txn->write; }

/* Records a fatal LMDB error on t and returns it as ST_E*. */
static int txn_fail(st_txn *t, int mdb_rc) {
  int err = st__err(mdb_rc);
  if (mdb_rc != MDB_NOTFOUND && mdb_rc != MDB_KEYEXIST && !t->poison) t->poison = err;
  return err;
}

static int dbi_of(st_txn *t, st_db db, MDB_dbi *out) {
  if ((int)db < 0 || (size_t)db >= t->st->schema->ndbs || !t->st->dbi_ok[db]) return ST_EINVAL;
  *out = t->st->dbi[db];
  return 0;
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha256_key; /* each thread's reusable digest context */
static bool sha256_key_ok;
static void sha256_ctx_free(void *c) { EVP_MD_CTX_free(c); }
static void sha256_fetch(void) {
  sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  sha256_key_ok = pthread_key_create(&sha256_key, sha256_ctx_free) == 0;
}

/* One digest context per thread, reused (freed when the thread exits):
 * EVP_Digest allocates and frees one per call, and every MCP request
 * hashes its token. */
int st_sha256(const void *p, size_t n, uint8_t out[32]) {
  pthread_once(&sha256_once, sha256_fetch);
  const EVP_MD *md = sha256_md ? sha256_md : EVP_sha256();
  EVP_MD_CTX *ctx = sha256_key_ok ? pthread_getspecific(sha256_key) : NULL;
  if (!ctx && sha256_key_ok && (ctx = EVP_MD_CTX_new()) && pthread_setspecific(sha256_key, ctx) != 0) {
    EVP_MD_CTX_free(ctx);
    ctx = NULL;
  }
  if (!ctx) return EVP_Digest(p, n, out, NULL, md, NULL) == 1 ? 0 : ST_ECRYPTO;
  bool ok = EVP_DigestInit_ex2(ctx, md, NULL) == 1 && EVP_DigestUpdate(ctx, p, n) == 1 &&
            EVP_DigestFinal_ex(ctx, out, NULL) == 1;
  return ok ? 0 : ST_ECRYPTO;
}

/* Keys LMDB cannot hold (too long) or that could collide with a hashed key
 * (first byte is the marker) become marker || SHA-256(key). Hashing the
 * marker-prefixed short keys too keeps the two domains disjoint without
 * forbidding any key. */
static int map_key(st_txn *t, const void *k, size_t klen, uint8_t hbuf[33], MDB_val *out) {
  const uint8_t *p = k;
  if (!k || klen == 0 || klen > ST_KEY_INPUT_MAX) return ST_EINVAL;
  if (klen <= t->st->maxkey && p[0] != ST_KEY_HASHED_MARKER) {
    out->mv_data = (void *)k;
    out->mv_size = klen;
    return 0;
  }
  hbuf[0] = ST_KEY_HASHED_MARKER;
  if (st_sha256(k, klen, hbuf + 1) != 0) return ST_ECRYPTO;
  out->mv_data = hbuf;
  out->mv_size = 33;
  return 0;
}

int st_read_begin(st_store *st, st_txn **out) {
  MDB_txn *txn = NULL;
  st_txn *t = NULL;
  int rc;
  if (!st || !out) return ST_EINVAL;
  *out = NULL;
  /* a reset transaction from the pool, renewed on the newest snapshot */
  uv_mutex_lock(&st->rmu);
  if (st->nrpool) t = st->rpool[--st->nrpool];
  uv_mutex_unlock(&st->rmu);
  if (t) {
    if (mdb_txn_renew(t->txn) == 0) {
      st__txn_init(t, st, t->txn, 0);
      *out = t;
      return 0;
    }
    mdb_txn_abort(t->txn); /* e.g. the map grew: begin afresh */
    free(t);
  }
  if (!(t = malloc(sizeof *t))) return ST_ENOMEM;
  if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0) {
    free(t);
    return st__err(rc);
  }
  st__txn_init(t, st, txn, 0);
  *out = t;
  return 0;
}

void st__read_pool_drain(st_store *st) {
  uv_mutex_lock(&st->rmu);
  while (st->nrpool) {
    st_txn *t = st->rpool[--st->nrpool];
    mdb_txn_abort(t->txn);
    free(t);
  }
  uv_mutex_unlock(&st->rmu);
}

void st__txn_close_cursors(st_txn *t) {
  while (t->cursors) {
    st__log(t->st, ST_LOG_ERROR, "cursor on '%s' left open at transaction end",
           t->st->schema->db_names[t->cursors->db]);
    st_cursor_close(t->cursors);
  }
}

/* LMDB's txn id (far below 2^40), and above it the generation of the
 * users cut in memory (dir.c): either changing changes what the store
 * answers */
uint64_t st_txn_snapshot(const st_txn *t) { return ((uint64_t)mdb_txn_id(t->txn) + 1) + (t->cutgen << 40); }

uint64_t st_txn_cut_generation(const st_txn *t) { return t ? t->cutgen : 0; }
uint64_t st_cut_generation_now(st_store *st) {
  uv_mutex_lock(&st->cutmu);
  uint64_t g = atomic_load(&st->cutgen);
  uv_mutex_unlock(&st->cutmu);
  return g;
}

void st_txn_end(st_txn *t) {
  if (!t) return;
  if (t->write) {
    st__log(t->st, ST_LOG_ERROR, "st_txn_end called on a job transaction; the writer ends those (ignored)");
    return;
  }
  st__txn_close_cursors(t);
  /* back to the pool reset (its reader slot kept), or gone */
  st_store *st = t->st;
  mdb_txn_reset(t->txn);
  uv_mutex_lock(&st->rmu);
  bool kept = !atomic_load(&st->closed) && st->nrpool < ST__RPOOL_MAX;
  if (kept) st->rpool[st->nrpool++] = t;
  uv_mutex_unlock(&st->rmu);
  if (kept) return;
  mdb_txn_abort(t->txn);
  free(t);
}

int st_get(st_txn *t, st_db db, const void *k, size_t klen, st_val *out) {
  MDB_dbi dbi;
  MDB_val key, val;
  uint8_t hbuf[33];
  int rc;
  if (!t || !out) return ST_EINVAL;
  if (t->poison) return t->poison;
  if ((rc = dbi_of(t, db, &dbi)) < 0 || (rc = map_key(t, k, klen, hbuf, &key)) < 0) return rc;
  if ((rc = mdb_get(t->txn, dbi, &key, &val)) != 0) return txn_fail(t, rc);
  out->data = val.mv_data;
  out->len = val.mv_size;
  return 0;
}

/* st_put and st_put_reserve: val holds the value (or, with MDB_RESERVE in
 * mf, only its size; LMDB points it at the room made) */
static int put(st_txn *t, st_db db, const void *k, size_t klen, MDB_val *val, unsigned flags, unsigned mf) {
  MDB_dbi dbi;
  MDB_val key;
  uint8_t hbuf[33];
  int rc;
  if (t->poison) return t->poison;
  if ((rc = dbi_of(t, db, &dbi)) < 0 || (rc = map_key(t, k, klen, hbuf, &key)) < 0) return rc;
  if (flags & ST_NOOVERWRITE) mf |= MDB_NOOVERWRITE;
  t->wrote = 1;
  /* LMDB answers MDB_KEYEXIST, changing nothing, when the key does not
   * sort after the last one: then the ordinary put decides */
  if ((flags & ST_APPEND) && klen == key.mv_size) {
    MDB_val v = *val;
    rc = mdb_put(t->txn, dbi, &key, &v, mf | MDB_APPEND);
    if (rc != MDB_KEYEXIST) {
      *val = v;
      return rc ? txn_fail(t, rc) : 0;
    }
  }
  rc = mdb_put(t->txn, dbi, &key, val, mf);
  return rc ? txn_fail(t, rc) : 0;
}

int st_put(st_txn *t, st_db db, const void *k, size_t klen, const void *v, size_t vlen,
           unsigned flags) {
  if (!t || !t->write || (flags & ~(ST_NOOVERWRITE | ST_APPEND)) || vlen > ST_VAL_MAX || (!v && vlen))
    return ST_EINVAL;
  MDB_val val = {.mv_size = vlen, .mv_data = (void *)(v ? v : "")};
  return put(t, db, k, klen, &val, flags, 0);
}

int st_put_reserve(st_txn *t, st_db db, const void *k, size_t klen, size_t vlen, unsigned flags, void **out) {
  if (out) *out = NULL;
  if (!t || !t->write || !out || (flags & ~(ST_NOOVERWRITE | ST_APPEND)) || vlen == 0 || vlen > ST_VAL_MAX)
    return ST_EINVAL;
  MDB_val val = {.mv_size = vlen, .mv_data = NULL};
  int rc = put(t, db, k, klen, &val, flags, MDB_RESERVE);
  if (rc == 0) *out = val.mv_data;
  return rc;
}

int st_del(st_txn *t, st_db db, const void *k, size_t klen) {
  MDB_dbi dbi;
  MDB_val key;
  uint8_t hbuf[33];
  int rc;
  if (!t || !t->write) return ST_EINVAL;
  if (t->poison) return t->poison;
  if ((rc = dbi_of(t, db, &dbi)) < 0 || (rc = map_key(t, k, klen, hbuf, &key)) < 0) return rc;
  rc = mdb_del(t->txn, dbi, &key, NULL);
  return rc ? txn_fail(t, rc) : 0;
}

void st_txn_use_reserve(st_txn *t) {
  if (t && t->write) t->use_reserve = 1;
}

void st_txn_ordinary(st_txn *t) {
  if (t && t->write) t->ordinary = 1;
}

size_t st__pages_used(st_store *st, MDB_txn *txn) {
  MDB_stat ms;
  size_t n = 2; /* the meta pages */
  /* 0 and 1 are LMDB's free and main databases; the schema's named
   * databases hold their own trees */
  for (MDB_dbi d = 0; d < 2; d++)
    if (mdb_stat(txn, d, &ms) == 0) n += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
  for (size_t i = 0; i < st->schema->ndbs; i++)
    if (st->dbi_ok[i] && mdb_stat(txn, st->dbi[i], &ms) == 0)
      n += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
  return n;
}

/* ---- cursors ------------------------------------------------------------ */

int st_cursor_open(st_txn *t, st_db db, st_cursor **out) {
  MDB_dbi dbi;
  st_cursor *c;
  int rc;
  if (!t || !out) return ST_EINVAL;
  *out = NULL;
  if (t->poison) return t->poison;
  if ((rc = dbi_of(t, db, &dbi)) < 0) return rc;
  if (!(c = calloc(1, sizeof *c))) return ST_ENOMEM;
  if ((rc = mdb_cursor_open(t->txn, dbi, &c->mc)) != 0) {
    free(c);
    return txn_fail(t, rc);
  }
  c->txn = t;
  c->db = db;
  c->next_open = t->cursors;
  if (t->cursors) t->cursors->prev_open = c;
  t->cursors = c;
  *out = c;
  return 0;
}

void st_cursor_close(st_cursor *c) {
  if (!c) return;
  st_txn *t = c->txn;
  if (c->prev_open) c->prev_open->next_open = c->next_open;
  else t->cursors = c->next_open;
  if (c->next_open) c->next_open->prev_open = c->prev_open;
  mdb_cursor_close(c->mc);
  free(c);
}

/* LMDB's default key order: memcmp, then shorter first. */
static int key_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  int r = memcmp(a, b, alen < blen ? alen : blen);
  if (r) return r;
  return alen < blen ? -1 : alen > blen;
}

int st_cursor_seek(st_cursor *c, const void *prefix, size_t plen, const void *from, size_t flen) {
  size_t maxkey;
  if (!c || (plen && !prefix) || (flen && !from)) return ST_EINVAL;
  maxkey = c->txn->st->maxkey;
  if (plen > maxkey || flen > maxkey) return ST_EINVAL;
  if (plen && ((const uint8_t *)prefix)[0] == ST_KEY_HASHED_MARKER) return ST_EINVAL;
  memcpy(c->prefix, prefix ? prefix : "", plen);
  c->plen = plen;
  /* Start at the later of prefix and from: a `from` before the prefix
   * range must not make the scan stop on the first out-of-range key. */
  if (from && flen && key_cmp(from, flen, prefix ? prefix : "", plen) > 0) {
    memcpy(c->start, from, flen);
    c->slen = flen;
  } else {
    memcpy(c->start, c->prefix, plen);
    c->slen = plen;
  }
  c->state = 1;
  return 0;
}

int st_cursor_next(st_cursor *c, st_val *key, st_val *val) {
  MDB_val k = {0, NULL}, v = {0, NULL};
  int rc;
  if (!c) return ST_EINVAL;
  if (c->txn->poison) return c->txn->poison;
  switch (c->state) {
  case 0: rc = mdb_cursor_get(c->mc, &k, &v, MDB_FIRST); break;
  case 1:
    /* Positioning is deferred to here (not done in seek) so writes between
     * seek and next cannot leave the cursor on a stale page. */
    if (c->slen == 0) {
      rc = mdb_cursor_get(c->mc, &k, &v, MDB_FIRST);
    } else {
      k.mv_data = c->start;
      k.mv_size = c->slen;
      rc = mdb_cursor_get(c->mc, &k, &v, MDB_SET_RANGE);
    }
    break;
  case 2: rc = mdb_cursor_get(c->mc, &k, &v, MDB_NEXT); break;
  default: return ST_ENOTFOUND;
  }
  if (rc == MDB_NOTFOUND) {
    c->state = 3;
    return ST_ENOTFOUND;
  }
  if (rc != 0) return txn_fail(c->txn, rc);
  c->state = 2;
  if (c->plen && (k.mv_size < c->plen || memcmp(k.mv_data, c->prefix, c->plen) != 0)) {
    c->state = 3;
    return ST_ENOTFOUND;
  }
  if (key) { key->data = k.mv_data; key->len = k.mv_size; }
  if (val) { val->data = v.mv_data; val->len = v.mv_size; }
  return 0;
}

int st_cursor_prev(st_cursor *c, st_val *key, st_val *val) {
  MDB_val k = {0, NULL}, v = {0, NULL};
  int rc;
  if (!c) return ST_EINVAL;
  if (c->txn->poison) return c->txn->poison;
  if (c->state == 1 || c->state == 0) {
    /* the last key of the range: the one before the first key past it
     * (the prefix with its last byte below 0xFF raised by one) */
    uint8_t past[ST__KEYBUF];
    size_t pl = c->plen;
    memcpy(past, c->prefix, pl);
    while (pl && past[pl - 1] == 0xFF) pl--;
    if (pl) {
      past[pl - 1]++;
      k.mv_data = past;
      k.mv_size = pl;
      rc = mdb_cursor_get(c->mc, &k, &v, MDB_SET_RANGE);
      rc = rc == MDB_NOTFOUND ? mdb_cursor_get(c->mc, &k, &v, MDB_LAST)
           : rc == 0          ? mdb_cursor_get(c->mc, &k, &v, MDB_PREV)
                              : rc;
    } else {
      rc = mdb_cursor_get(c->mc, &k, &v, MDB_LAST);
    }
  } else if (c->state == 2) {
    rc = mdb_cursor_get(c->mc, &k, &v, MDB_PREV);
  } else {
    return ST_ENOTFOUND;
  }
  if (rc == MDB_NOTFOUND) {
    c->state = 3;
    return ST_ENOTFOUND;
  }
  if (rc != 0) return txn_fail(c->txn, rc);
  c->state = 2;
  if (c->plen && (k.mv_size < c->plen || memcmp(k.mv_data, c->prefix, c->plen) != 0)) {
    c->state = 3;
    return ST_ENOTFOUND;
  }
  if (key) { key->data = k.mv_data; key->len = k.mv_size; }
  if (val) { val->data = v.mv_data; val->len = v.mv_size; }
  return 0;
}

/* ---- hooks and post-commit actions ------------------------------------- */

int st_hook_add(st_store *st, int event_kind, st_hook_fn fn, void *ctx) {
  if (!st || !fn) return ST_EINVAL;
  if (atomic_load(&st->serving)) {
    st__log(st, ST_LOG_ERROR, "st_hook_add for event %d after the first write: register hooks at startup",
           event_kind);
    return ST_EINVAL;
  }
  if (st->nhooks >= ST_HOOKS_MAX) return ST_ENOMEM;
  st->hooks[st->nhooks++] = (st__hook){event_kind, fn, ctx};
  return 0;
}

/* Events that take access away: the job emitting one may use the reserve
 * (store.h), so a full store still lets an IdP disable a user. */
static bool takes_access_away(int kind, const void *event) {
  switch (kind) {
  case ST_DIR_EV_USER_DEACTIVATED:
  case ST_DIR_EV_USER_DELETED:
  case ST_DIR_EV_GROUP_DELETED:
  case ST_DIR_EV_USER_SIGNED_OUT:
  case ST_EVENT_TENANT_DELETING:
  case ST_EVENT_TOKEN_REVOKED:
  case ST_EVENT_CONNECTOR_DELETE: return true;
  case ST_DIR_EV_MEMBERSHIP_CHANGED: return event && ((const st_dir_event *)event)->nremoved > 0;
  default: return false;
  }
}

int st_emit(st_txn *t, int event_kind, const void *event) {
  if (!t || !t->write) return ST_EINVAL;
  if (t->poison) return t->poison;
  if (takes_access_away(event_kind, event)) t->use_reserve = 1;
  int rc0 = st__dir_cut_settle(t, event_kind, event);
  if (rc0 >= 0) rc0 = st__dir_mcut_settle(t, event_kind, event);
  if (rc0 < 0) return rc0;
  for (size_t i = 0; i < t->st->nhooks; i++) {
    const st__hook *h = &t->st->hooks[i];
    if (h->kind != event_kind) continue;
    int rc = h->fn(t, event_kind, event, h->ctx);
    if (rc < 0) return rc;
    /* A hook that swallowed a poisoning error must not let the emit look
     * successful. */
    if (t->poison) return t->poison;
  }
  return 0;
}

int st_txn_after_commit(st_txn *t, void (*fn)(void *arg), void (*discard)(void *arg),
                        void *arg) {
  st__action *a;
  if (!t || !t->write || !fn) return ST_EINVAL;
  if (!(a = malloc(sizeof *a))) return ST_ENOMEM;
  *a = (st__action){fn, discard, arg, NULL};
  if (t->act_tail) t->act_tail->next = a;
  else t->act_head = a;
  t->act_tail = a;
  return 0;
}

void st__actions_run(st__action *a) {
  while (a) {
    st__action *next = a->next;
    a->fn(a->arg);
    free(a);
    a = next;
  }
}

void st__actions_discard(st__action *a) {
  while (a) {
    st__action *next = a->next;
    if (a->discard) a->discard(a->arg);
    free(a);
    a = next;
  }
}

int st_db_create(st_txn *t, st_db db) {
  MDB_dbi dbi;
  int rc;
  if (!t || !t->write || !t->migrating || (int)db < 0 || (size_t)db >= t->st->schema->ndbs) return ST_EINVAL;
  if ((rc = mdb_dbi_open(t->txn, t->st->schema->db_names[db], MDB_CREATE, &dbi)) != 0)
    return txn_fail(t, rc);
  t->st->dbi[db] = dbi;
  t->st->dbi_ok[db] = 1;
  return 0;
}

int st_del_prefix(st_txn *txn, st_db db, const void *prefix, size_t plen, int limit) {
  int n = 0, rc;
  while (!limit || n < limit) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, db, &c)) != 0) return rc;
    st_cursor_seek(c, prefix, plen, NULL, 0);
    st_val k;
    rc = st_cursor_next(c, &k, NULL);
    uint8_t key[ST__KEYBUF];
    size_t kl = 0;
    if (rc == 0) {
      if (k.len > sizeof key) rc = ST_ECORRUPT;
      else {
        kl = k.len;
        memcpy(key, k.data, kl);
      }
    }
    st_cursor_close(c);
    if (rc == ST_ENOTFOUND) break;
    if (rc) return rc;
    if ((rc = st_del(txn, db, key, kl)) != 0) return rc;
    n++;
  }
  return n;
}
