/* tests/unit/test_seal.c — sealing (AES-256-GCM, record-bound AAD), the
 * sealed-secret database, the master key file (creation, permissions,
 * format) and key rotation, against a real store in a mkdtemp dir. */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "store/seal.h"
#include "store/store.h"
#include "tests/unit/unit.h"

static char g_tmp[64], g_dir[128], g_key[128];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
static void tmp_setup(void) {
  tmp_cleanup();
  strcpy(g_tmp, "/tmp/mcpgate-test-seal-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  snprintf(g_dir, sizeof g_dir, "%s/store", g_tmp);
  snprintf(g_key, sizeof g_key, "%s/master.key", g_tmp);
}
static int open_store(st_store **st) {
  st_options o = {0};
  o.dir = g_dir;
  o.master_key_file = g_key;
  o.map_size = 64u << 20;
  o.log = gw_store_log;
  return st_open(st, &o);
}
static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) abort();
  fchmod(fd, mode);
  close(fd);
}
static size_t read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, cap - 1);
  if (fd >= 0) close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n > 0 ? (size_t)n : 0;
}
static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

#define KEY1 "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
#define KEY2 "2 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\n"

/* ---- key file ------------------------------------------------------------ */

TEST(key_file_created_0600) {
  struct stat sb;
  char buf[256];
  st_store *st = NULL;
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(stat(g_key, &sb), 0);
  CHECK_INT(sb.st_mode & 0777, 0600);
  read_file(g_key, buf, sizeof buf);
  CHECK_INT(strlen(buf), 2 + 64 + 1);
  CHECK(strncmp(buf, "1 ", 2) == 0);
  CHECK_INT(st_key_current_id(st), 1);
  st_close(st);
  /* Reopen: the same key is loaded, not regenerated. */
  char again[256];
  CHECK_INT(open_store(&st), 0);
  read_file(g_key, again, sizeof again);
  CHECK_STR(again, buf);
  st_close(st);
  tmp_cleanup();
}

TEST(key_file_permissions_refused) {
  st_store *st = NULL;
  tmp_setup();
  write_file(g_key, KEY1, 0640);
  CHECK_INT(open_store(&st), ST_EPERM);
  CHECK(st == NULL);
  chmod(g_key, 0604);
  CHECK_INT(open_store(&st), ST_EPERM);
  chmod(g_key, 0600);
  CHECK_INT(open_store(&st), 0);
  st_close(st);
  tmp_cleanup();
}

TEST(key_file_malformed_refused) {
  static const char *bad[] = {
      "",                                                    /* empty */
      "1 0001\n",                                            /* short key */
      "x 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", /* id 0 */
      "1  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n", /* not hex */
      KEY2 KEY1,                                             /* ids decreasing */
      KEY1 KEY1,                                             /* duplicate id */
      KEY1 "\n",                                             /* blank line */
      "4294967296 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    st_store *st = NULL;
    tmp_setup();
    write_file(g_key, bad[i], 0600);
    int rc = open_store(&st);
    if (rc != ST_EINVAL) fprintf(stderr, "  case %zu\n", i);
    CHECK_INT(rc, ST_EINVAL);
  }
  /* No trailing newline is fine. */
  st_store *st = NULL;
  tmp_setup();
  write_file(g_key, "7 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 0600);
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_key_current_id(st), 7);
  st_close(st);
  tmp_cleanup();
}

/* ---- seal / unseal ------------------------------------------------------- */

TEST(seal_roundtrip_and_aad_binding) {
  st_store *st = NULL;
  uint8_t *blob = NULL, *pt = NULL, *b2 = NULL;
  size_t bloblen, n, b2len;
  const char secret[] = "xoxb-upstream-token";
  st_aad aad = {"acme", "vault.oauth", "user-1"};
  tmp_setup();
  write_file(g_key, KEY1 KEY2, 0600); /* key 2 current, key 1 still loaded */
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_key_current_id(st), 2);
  CHECK_INT(st_seal(st, &aad, secret, sizeof secret, &blob, &bloblen), 0);
  CHECK_INT(bloblen, sizeof secret + ST_SEAL_OVERHEAD);
  CHECK_INT(blob[0], ST_SEAL_VERSION);
  CHECK_INT(blob[4], 2); /* key id, big-endian */
  CHECK(memmem(blob, bloblen, secret, sizeof secret - 1) == NULL);
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), 0);
  CHECK_INT(n, sizeof secret);
  CHECK(memcmp(pt, secret, n) == 0);
  st_secret_free(pt, n);
  pt = NULL;
  /* Same plaintext sealed twice: different nonces, different blobs. */
  CHECK_INT(st_seal(st, &aad, secret, sizeof secret, &b2, &b2len), 0);
  CHECK(memcmp(blob + 5, b2 + 5, 12) != 0);
  free(b2);

  st_aad other_owner = {"acme", "vault.oauth", "user-2"};
  st_aad other_tenant = {"evil", "vault.oauth", "user-1"};
  st_aad other_kind = {"acme", "vault.apikey", "user-1"};
  /* Field boundaries matter: ("acme","vault.oauth","user-1") must differ
   * from a shifted split of the same characters. */
  st_aad shifted = {"acmev", "ault.oauth", "user-1"};
  CHECK_INT(st_unseal(st, &other_owner, blob, bloblen, &pt, &n), ST_ECRYPTO);
  CHECK(pt == NULL);
  CHECK_INT(st_unseal(st, &other_tenant, blob, bloblen, &pt, &n), ST_ECRYPTO);
  CHECK_INT(st_unseal(st, &other_kind, blob, bloblen, &pt, &n), ST_ECRYPTO);
  CHECK_INT(st_unseal(st, &shifted, blob, bloblen, &pt, &n), ST_ECRYPTO);
  /* Any flipped byte: header, nonce, ciphertext, tag. */
  for (size_t i = 0; i < bloblen; i++) {
    blob[i] ^= 0x01;
    int rc = st_unseal(st, &aad, blob, bloblen, &pt, &n);
    blob[i] ^= 0x01;
    if (rc != ST_ECRYPTO) fprintf(stderr, "  byte %zu\n", i);
    CHECK_INT(rc, ST_ECRYPTO);
  }
  /* Wrong key id: relabelled to key 1 (which exists), unknown 99, or 0. */
  blob[4] = 1;
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), ST_ECRYPTO);
  blob[4] = 99;
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), ST_ECRYPTO);
  blob[4] = 0; /* 0 is no key's id (key_get's "current"): not an alias */
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), ST_ECRYPTO);
  blob[4] = 2;
  CHECK_INT(st_unseal(st, &aad, blob, bloblen - 1, &pt, &n), ST_ECRYPTO); /* truncated */
  CHECK_INT(st_unseal(st, &aad, blob, 10, &pt, &n), ST_ECRYPTO);
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), 0);
  st_secret_free(pt, n);
  free(blob);
  st_close(st);
  tmp_cleanup();
}

TEST(seal_limits) {
  st_store *st = NULL;
  uint8_t *blob = NULL, *pt = NULL;
  size_t bloblen, n;
  static uint8_t big[ST_SECRET_MAX + 1];
  char long_tenant[ST_AAD_TENANT_MAX + 2];
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  st_aad aad = {"", "k", ""}; /* empty tenant/owner allowed */
  CHECK_INT(st_seal(st, &aad, NULL, 0, &blob, &bloblen), 0);
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), 0);
  CHECK_INT(n, 0);
  st_secret_free(pt, n);
  free(blob);
  CHECK_INT(st_seal(st, &aad, big, ST_SECRET_MAX, &blob, &bloblen), 0);
  CHECK_INT(st_unseal(st, &aad, blob, bloblen, &pt, &n), 0);
  CHECK_INT(n, ST_SECRET_MAX);
  st_secret_free(pt, n);
  free(blob);
  CHECK_INT(st_seal(st, &aad, big, ST_SECRET_MAX + 1, &blob, &bloblen), ST_EINVAL);
  st_aad nokind = {"acme", "", "u"};
  CHECK_INT(st_seal(st, &nokind, "x", 1, &blob, &bloblen), ST_EINVAL);
  memset(long_tenant, 'a', sizeof long_tenant - 1);
  long_tenant[sizeof long_tenant - 1] = 0;
  st_aad longt = {long_tenant, "k", "u"};
  CHECK_INT(st_seal(st, &longt, "x", 1, &blob, &bloblen), ST_EINVAL);
  st_close(st);
  /* Without a master key sealing is unavailable, not silently plaintext. */
  st_options o = {0};
  o.dir = g_dir;
  o.log = gw_store_log;
  CHECK_INT(st_open(&st, &o), 0);
  CHECK_INT(st_seal(st, &aad, "x", 1, &blob, &bloblen), ST_ENOKEY);
  CHECK_INT(st_key_rotate(st), ST_ENOKEY);
  st_close(st);
  tmp_cleanup();
}

/* ---- secrets database ---------------------------------------------------- */

typedef struct sec_job {
  st_aad aad;
  const char *value;
} sec_job;
static int sec_put_fn(st_txn *txn, void *arg) {
  sec_job *s = arg;
  return st_secret_put(txn, &s->aad, s->value, strlen(s->value));
}
static int sec_del_fn(st_txn *txn, void *arg) { return st_secret_del(txn, &((sec_job *)arg)->aad); }
static int sec_get(st_store *st, const st_aad *aad, char *buf, size_t cap) {
  st_txn *t;
  uint8_t *pt = NULL;
  size_t n = 0;
  int rc = st_read_begin(st, &t);
  if (rc < 0) return rc;
  rc = st_secret_get(t, aad, &pt, &n);
  st_txn_end(t);
  if (rc == 0) {
    snprintf(buf, cap, "%.*s", (int)n, (const char *)pt);
    st_secret_free(pt, n);
  }
  return rc;
}
/* Copies the raw blob of `from` onto the record key of `to`. */
typedef struct move_job {
  st_aad from, to;
} move_job;
static int move_fn(st_txn *txn, void *arg) {
  move_job *m = arg;
  uint8_t kf[400], kt[400];
  size_t lf = 0, lt = 0;
  st_val v;
  const st_aad *as[2] = {&m->from, &m->to};
  uint8_t *ks[2] = {kf, kt};
  size_t *ls[2] = {&lf, &lt};
  for (int i = 0; i < 2; i++) { /* same layout as seal.c: u8-len fields */
    const char *f[3] = {as[i]->tenant, as[i]->kind, as[i]->owner};
    for (int j = 0; j < 3; j++) {
      size_t n = strlen(f[j]);
      ks[i][(*ls[i])++] = (uint8_t)n;
      memcpy(ks[i] + *ls[i], f[j], n);
      *ls[i] += n;
    }
  }
  int rc = st_get(txn, ST_DB_SECRETS, kf, lf, &v);
  if (rc < 0) return rc;
  uint8_t copy[512];
  memcpy(copy, v.data, v.len);
  return st_put(txn, ST_DB_SECRETS, kt, lt, copy, v.len, 0);
}

TEST(secrets_db_put_get_del) {
  st_store *st = NULL;
  char buf[64];
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  sec_job a = {{"acme", "vault.oauth", "alice"}, "refresh-token-a"};
  sec_job b = {{"acme", "vault.oauth", "bob"}, "refresh-token-b"};
  CHECK_INT(st_write_sync(st, sec_put_fn, &a), 0);
  CHECK_INT(st_write_sync(st, sec_put_fn, &b), 0);
  CHECK_INT(sec_get(st, &a.aad, buf, sizeof buf), 0);
  CHECK_STR(buf, "refresh-token-a");
  st_aad carol = {"acme", "vault.oauth", "carol"};
  CHECK_INT(sec_get(st, &carol, buf, sizeof buf), ST_ENOTFOUND);
  /* A blob moved onto another record does not unseal there. */
  move_job m = {a.aad, carol};
  CHECK_INT(st_write_sync(st, move_fn, &m), 0);
  CHECK_INT(sec_get(st, &carol, buf, sizeof buf), ST_ECRYPTO);
  /* st_check sees exactly that one bad blob. */
  CHECK_INT(st_check(st, NULL, NULL), 1);
  CHECK_INT(st_write_sync(st, sec_del_fn, &(sec_job){carol, ""}), 0);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  CHECK_INT(st_write_sync(st, sec_del_fn, &a), 0);
  CHECK_INT(st_write_sync(st, sec_del_fn, &a), ST_ENOTFOUND);
  CHECK_INT(sec_get(st, &a.aad, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(sec_get(st, &b.aad, buf, sizeof buf), 0);
  /* Tenant prefix scan finds the tenant's secrets. */
  uint8_t prefix[64];
  int plen = st_secret_tenant_prefix("acme", prefix, sizeof prefix);
  CHECK_INT(plen, 5);
  st_txn *t;
  st_cursor *c;
  int n = 0;
  CHECK_INT(st_read_begin(st, &t), 0);
  CHECK_INT(st_cursor_open(t, ST_DB_SECRETS, &c), 0);
  CHECK_INT(st_cursor_seek(c, prefix, (size_t)plen, NULL, 0), 0);
  while (st_cursor_next(c, NULL, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(t);
  CHECK_INT(n, 1);
  st_close(st);
  tmp_cleanup();
}

/* ---- rotation ------------------------------------------------------------ */

#define ROT_N 2500 /* > 2 re-seal batches */
typedef struct many_job {
  int from, to;
} many_job;
static int many_put_fn(st_txn *txn, void *arg) {
  many_job *m = arg;
  for (int i = m->from; i < m->to; i++) {
    char owner[16], val[32];
    snprintf(owner, sizeof owner, "u%05d", i);
    snprintf(val, sizeof val, "secret-%d", i);
    st_aad aad = {"acme", "vault.oauth", owner};
    int rc = st_secret_put(txn, &aad, val, strlen(val));
    if (rc < 0) return rc;
  }
  return 0;
}
static int blob_key_ids(st_store *st, int counts[4]) {
  st_txn *t;
  st_cursor *c;
  st_val v;
  memset(counts, 0, 4 * sizeof counts[0]);
  if (st_read_begin(st, &t) < 0 || st_cursor_open(t, ST_DB_SECRETS, &c) < 0) return -1;
  while (st_cursor_next(c, NULL, &v) == 0) {
    int id = ((const uint8_t *)v.data)[4];
    counts[id < 4 ? id : 0]++;
  }
  st_cursor_close(c);
  st_txn_end(t);
  return 0;
}

typedef struct sec_purge {
  const char *tenant;
  int limit, n;
} sec_purge;
static int sec_purge_fn(st_txn *txn, void *arg) {
  sec_purge *p = arg;
  p->n = st_secret_purge_tenant(txn, p->tenant, p->limit);
  return p->n < 0 ? p->n : 0;
}

/* The secrets' tenant purge (a st_purge_fn): bounded, one tenant only. */
TEST(secret_purge_tenant_bounded) {
  st_store *st = NULL;
  char buf[64];
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  sec_job a = {{"acme", "vault.oauth", "alice"}, "a"};
  sec_job b = {{"acme", "vault.api", "github"}, "b"};
  sec_job c = {{"acme", "vault.oauth", "carol"}, "c"};
  sec_job o = {{"acme2", "vault.oauth", "alice"}, "other tenant"};
  CHECK_INT(st_write_sync(st, sec_put_fn, &a), 0);
  CHECK_INT(st_write_sync(st, sec_put_fn, &b), 0);
  CHECK_INT(st_write_sync(st, sec_put_fn, &c), 0);
  CHECK_INT(st_write_sync(st, sec_put_fn, &o), 0);
  sec_purge p = {"acme", 2, -1};
  CHECK_INT(st_write_sync(st, sec_purge_fn, &p), 0);
  CHECK_INT(p.n, 2);
  CHECK_INT(st_write_sync(st, sec_purge_fn, &p), 0);
  CHECK_INT(p.n, 1);
  CHECK_INT(st_write_sync(st, sec_purge_fn, &p), 0);
  CHECK_INT(p.n, 0);
  CHECK_INT(sec_get(st, &a.aad, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(sec_get(st, &b.aad, buf, sizeof buf), ST_ENOTFOUND);
  CHECK_INT(sec_get(st, &o.aad, buf, sizeof buf), 0);
  CHECK_STR(buf, "other tenant");
  st_close(st);
  tmp_cleanup();
}

TEST(rotation_reseals_everything) {
  st_store *st = NULL;
  char buf[64], file[512];
  int ids[4];
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_key_current_id(st), 1);
  CHECK_INT(st_write_sync(st, many_put_fn, &(many_job){0, ROT_N}), 0);
  CHECK_INT(blob_key_ids(st, ids), 0);
  CHECK_INT(ids[1], ROT_N);
  CHECK_INT(st_key_rotate(st), 0);
  CHECK_INT(st_key_current_id(st), 2);
  CHECK_INT(blob_key_ids(st, ids), 0);
  CHECK_INT(ids[1], 0);
  CHECK_INT(ids[2], ROT_N);
  st_aad aad = {"acme", "vault.oauth", "u01234"};
  CHECK_INT(sec_get(st, &aad, buf, sizeof buf), 0);
  CHECK_STR(buf, "secret-1234");
  read_file(g_key, file, sizeof file);
  CHECK_INT(count_lines(file), 1);
  CHECK(strncmp(file, "2 ", 2) == 0);
  struct stat sb;
  CHECK_INT(stat(g_key, &sb), 0);
  CHECK_INT(sb.st_mode & 0777, 0600);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  st_close(st);
  /* The rotated file alone opens the store and unseals. */
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(sec_get(st, &aad, buf, sizeof buf), 0);
  CHECK_STR(buf, "secret-1234");
  st_close(st);
  tmp_cleanup();
}

static int put_garbage_fn(st_txn *txn, void *arg) {
  (void)arg;
  /* A well-formed record key ("acme","vault.oauth","zz") whose blob claims
   * key 1 but does not authenticate. */
  static const uint8_t key[] = {4, 'a', 'c', 'm', 'e', 11, 'v', 'a', 'u', 'l', 't', '.',
                                'o', 'a', 'u', 't', 'h', 2,   'z', 'z'};
  uint8_t blob[ST_SEAL_OVERHEAD + 4] = {ST_SEAL_VERSION, 0, 0, 0, 1};
  return st_put(txn, ST_DB_SECRETS, key, sizeof key, blob, sizeof blob, 0);
}

TEST(rotation_keeps_old_keys_when_a_blob_is_bad) {
  st_store *st = NULL;
  char buf[64], file[512];
  int ids[4];
  tmp_setup();
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_write_sync(st, many_put_fn, &(many_job){0, 10}), 0);
  CHECK_INT(st_write_sync(st, put_garbage_fn, NULL), 0);
  CHECK_INT(st_check(st, NULL, NULL), 1);
  CHECK_INT(st_key_rotate(st), ST_ECRYPTO);
  read_file(g_key, file, sizeof file);
  CHECK_INT(count_lines(file), 2); /* old key kept */
  CHECK_INT(blob_key_ids(st, ids), 0);
  CHECK_INT(ids[2], 10); /* the good ones were re-sealed anyway */
  CHECK_INT(ids[1], 1);  /* the bad one left as it was */
  st_aad aad = {"acme", "vault.oauth", "u00003"};
  CHECK_INT(sec_get(st, &aad, buf, sizeof buf), 0);
  CHECK_STR(buf, "secret-3");
  st_close(st);
  /* The two-key file reopens (rotation unfinished) and still unseals. */
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_key_current_id(st), 2);
  CHECK_INT(sec_get(st, &aad, buf, sizeof buf), 0);
  st_close(st);
  tmp_cleanup();
}

/* Each thread keeps the key schedule of the key it last unsealed under
 * (seal.c, gcm_dec). A key id names another key in another key file: the
 * kept context must never unseal with the key it was made for. */
#define KEY1_OTHER "1 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f\n"

TEST(unseal_never_reuses_another_key_under_its_id) {
  st_store *st = NULL;
  uint8_t *a = NULL, *b = NULL, *pt = NULL;
  size_t al, bl, n;
  st_aad aad = {"acme", "vault.oauth", "user-1"};
  tmp_setup();
  write_file(g_key, KEY1, 0600);
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_seal(st, &aad, "under-a", 7, &a, &al), 0);
  CHECK_INT(st_unseal(st, &aad, a, al, &pt, &n), 0); /* this thread keeps key 1 (a) */
  st_secret_free(pt, n);
  pt = NULL;
  st_close(st);
  /* another key file, its key also numbered 1 (no secret in the store:
   * it opens) */
  write_file(g_key, KEY1_OTHER, 0600);
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_unseal(st, &aad, a, al, &pt, &n), ST_ECRYPTO);
  CHECK(pt == NULL);
  CHECK_INT(st_seal(st, &aad, "under-b", 7, &b, &bl), 0);
  CHECK_INT(st_unseal(st, &aad, b, bl, &pt, &n), 0);
  CHECK(n == 7 && memcmp(pt, "under-b", 7) == 0);
  st_secret_free(pt, n);
  pt = NULL;
  /* the other way round: the kept key is b's now, a still does not open */
  CHECK_INT(st_unseal(st, &aad, a, al, &pt, &n), ST_ECRYPTO);
  CHECK_INT(st_unseal(st, &aad, b, bl, &pt, &n), 0);
  st_secret_free(pt, n);
  st_close(st);
  free(a);
  free(b);
  tmp_cleanup();
}

typedef struct unseal_run {
  st_store *st;
  const uint8_t *blob[2];
  size_t len[2];
  int bad;
} unseal_run;

static void *unseal_many(void *arg) {
  unseal_run *r = arg;
  st_aad aad = {"acme", "vault.oauth", "user-1"};
  static const char *want[2] = {"sealed-under-1", "sealed-under-2"};
  for (int i = 0; i < 2000; i++) {
    uint8_t *pt = NULL;
    size_t n = 0;
    int w = (i * 7 / 3) & 1; /* runs of both keys, switching often */
    if (st_unseal(r->st, &aad, r->blob[w], r->len[w], &pt, &n) != 0 || n != 14 || memcmp(pt, want[w], 14) != 0)
      r->bad++;
    st_secret_free(pt, n);
    if (i % 97 == 0) { /* a failed unseal in between drops the kept context */
      uint8_t bad[64];
      memcpy(bad, r->blob[w], r->len[w]);
      bad[r->len[w] - 1] ^= 1;
      if (st_unseal(r->st, &aad, bad, r->len[w], &pt, &n) != ST_ECRYPTO) r->bad++;
    }
  }
  return NULL;
}

TEST(unseal_on_many_threads_under_two_keys) {
  st_store *st = NULL;
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t l1, l2;
  st_aad aad = {"acme", "vault.oauth", "user-1"};
  tmp_setup();
  write_file(g_key, KEY1, 0600);
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_seal(st, &aad, "sealed-under-1", 14, &b1, &l1), 0);
  st_close(st);
  write_file(g_key, KEY1 KEY2, 0600);
  CHECK_INT(open_store(&st), 0);
  CHECK_INT(st_seal(st, &aad, "sealed-under-2", 14, &b2, &l2), 0);
  CHECK_INT(b1[4], 1);
  CHECK_INT(b2[4], 2);
  unseal_run runs[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    runs[t] = (unseal_run){st, {b1, b2}, {l1, l2}, 0};
    CHECK_INT(pthread_create(&th[t], NULL, unseal_many, &runs[t]), 0);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    CHECK_INT(runs[t].bad, 0);
  }
  st_close(st);
  free(b1);
  free(b2);
  tmp_cleanup();
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(key_file_created_0600);
  RUN(key_file_permissions_refused);
  RUN(key_file_malformed_refused);
  RUN(seal_roundtrip_and_aad_binding);
  RUN(seal_limits);
  RUN(secrets_db_put_get_del);
  RUN(secret_purge_tenant_bounded);
  RUN(rotation_reseals_everything);
  RUN(rotation_keeps_old_keys_when_a_blob_is_bad);
  RUN(unseal_never_reuses_another_key_under_its_id);
  RUN(unseal_on_many_threads_under_two_keys);
  tmp_cleanup();
  return UNIT_DONE();
}
