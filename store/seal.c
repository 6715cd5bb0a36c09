/* store/seal.c — see seal.h: AES-256-GCM sealing bound to record AAD, the
 * sealed-secret database, the master key file and key rotation.
 *
 * Key material lives only in st->keys (guarded by st->kmu), in short-lived
 * stack copies wiped after use, in the key file, and in one decryption
 * context per thread that has unsealed (its key schedule and a copy of the
 * key it was made for; wiped when the thread ends: gcm_dec below). Plaintext buffers are
 * wiped before they are freed. No log line or error text carries a key, a
 * plaintext or a blob — only key ids and the record's AAD fields. */
#include "store/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

#define SEAL_DOMAIN "mcpgate-seal" /* AAD domain separation */
#define NONCE_LEN 12
#define TAG_LEN 16
#define HDR_LEN (1 + 4 + NONCE_LEN)
#define AAD_MAX (sizeof SEAL_DOMAIN - 1 + 1 + 1 + ST_AAD_TENANT_MAX + 1 + ST_AAD_KIND_MAX + 1 + \
                 ST_AAD_OWNER_MAX + 4)
#define SKEY_MAX (1 + ST_AAD_TENANT_MAX + 1 + ST_AAD_KIND_MAX + 1 + ST_AAD_OWNER_MAX)
#define KEYFILE_MAX (64 * 1024)
#define KEYLINE_MAX (10 + 1 + 2 * ST__KEY_LEN + 1)
#define ROTATE_BATCH 1000      /* blobs re-sealed per write job */
#define ROTATE_SCAN_MAX 20000  /* entries looked at per job (bounds its time) */

_Static_assert(SKEY_MAX <= 511, "secret keys must never need hashing (rotation scans them)");

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- AAD and secret keys ------------------------------------------------- */

typedef struct aad_lens {
  size_t t, k, o;
} aad_lens;

static int aad_check(const st_aad *a, aad_lens *l) {
  if (!a || !a->tenant || !a->kind || !a->owner) return ST_EINVAL;
  l->t = strnlen(a->tenant, ST_AAD_TENANT_MAX + 1);
  l->k = strnlen(a->kind, ST_AAD_KIND_MAX + 1);
  l->o = strnlen(a->owner, ST_AAD_OWNER_MAX + 1);
  if (l->t > ST_AAD_TENANT_MAX || l->k == 0 || l->k > ST_AAD_KIND_MAX || l->o > ST_AAD_OWNER_MAX)
    return ST_EINVAL;
  return 0;
}

/* Length-prefixed fields: no two distinct (tenant, kind, owner) triples
 * serialise to the same bytes. */
static size_t fields_put(uint8_t *p, const st_aad *a, const aad_lens *l) {
  size_t o = 0;
  p[o++] = (uint8_t)l->t;
  memcpy(p + o, a->tenant, l->t);
  o += l->t;
  p[o++] = (uint8_t)l->k;
  memcpy(p + o, a->kind, l->k);
  o += l->k;
  p[o++] = (uint8_t)l->o;
  memcpy(p + o, a->owner, l->o);
  o += l->o;
  return o;
}

static size_t aad_build(const st_aad *a, const aad_lens *l, uint32_t kid, uint8_t out[AAD_MAX]) {
  size_t o = sizeof SEAL_DOMAIN - 1;
  memcpy(out, SEAL_DOMAIN, o);
  out[o++] = ST_SEAL_VERSION;
  o += fields_put(out + o, a, l);
  put32(out + o, kid);
  return o + 4;
}

int st_secret_tenant_prefix(const char *tenant, uint8_t *buf, size_t cap) {
  size_t n;
  if (!tenant || !buf) return ST_EINVAL;
  n = strnlen(tenant, ST_AAD_TENANT_MAX + 1);
  if (n > ST_AAD_TENANT_MAX || cap < n + 1) return ST_EINVAL;
  buf[0] = (uint8_t)n;
  memcpy(buf + 1, tenant, n);
  return (int)(n + 1);
}

int st_secret_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  uint8_t pk[ST_AAD_TENANT_MAX + 1];
  if (!txn || !st__is_main(txn->st)) return ST_EINVAL;
  int pl = st_secret_tenant_prefix(tenant, pk, sizeof pk);
  if (pl < 0) return pl;
  return st_del_prefix(txn, ST_DB_SECRETS, pk, (size_t)pl, limit);
}

/* Inverse of fields_put for a ST_DB_SECRETS key. Buffers: tenant[64],
 * kind[65], owner[256]. Rejects trailing bytes and embedded NULs. */
int st__secret_key_parse(const void *k, size_t klen, char *tenant, char *kind, char *owner) {
  const uint8_t *p = k;
  char *outs[3] = {tenant, kind, owner};
  const size_t maxes[3] = {ST_AAD_TENANT_MAX, ST_AAD_KIND_MAX, ST_AAD_OWNER_MAX};
  size_t o = 0;
  for (int f = 0; f < 3; f++) {
    if (o >= klen) return ST_ECORRUPT;
    size_t n = p[o++];
    if (n > maxes[f] || n > klen - o || memchr(p + o, 0, n)) return ST_ECORRUPT;
    memcpy(outs[f], p + o, n);
    outs[f][n] = 0;
    o += n;
  }
  if (o != klen || kind[0] == 0) return ST_ECORRUPT;
  return 0;
}

/* ---- keys ---------------------------------------------------------------- */

/* Copies key kid (0: the current one) out of the key set. ST_ENOKEY when
 * there is no key at all, ST_ECRYPTO when kid is unknown. */
static int key_get(st_store *st, uint32_t kid, st__key *out) {
  int rc = ST_ENOKEY;
  uv_rwlock_rdlock(&st->kmu);
  if (st->nkeys > 0) {
    rc = ST_ECRYPTO;
    if (kid == 0) {
      *out = st->keys[st->nkeys - 1];
      rc = 0;
    } else {
      for (size_t i = 0; i < st->nkeys; i++)
        if (st->keys[i].id == kid) {
          *out = st->keys[i];
          rc = 0;
          break;
        }
    }
  }
  uv_rwlock_rdunlock(&st->kmu);
  return rc;
}

uint32_t st_key_current_id(st_store *st) {
  uint32_t id = 0;
  uv_rwlock_rdlock(&st->kmu);
  if (st->nkeys) id = st->keys[st->nkeys - 1].id;
  uv_rwlock_rdunlock(&st->kmu);
  return id;
}

void st__keys_wipe(st_store *st) {
  OPENSSL_cleanse(st->keys, sizeof st->keys);
  st->nkeys = 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "<id> <64 hex>\n" per line; ids strictly increasing so the last line is
 * the newest key and ids are unique. Reports only line numbers. */
static int keyfile_parse(st_store *st, const char *path, const char *buf, size_t len, st__key *keys,
                         size_t *nkeys) {
  size_t pos = 0, line = 0, n = 0;
  while (pos < len) {
    const char *ln = buf + pos, *nl = memchr(ln, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - ln) : len - pos, i = 0;
    uint64_t id = 0;
    line++;
    pos += ll + (nl ? 1 : 0);
    while (i < ll && ln[i] >= '0' && ln[i] <= '9' && i < 10) id = id * 10 + (uint64_t)(ln[i++] - '0');
    if (i == 0 || ln[0] == '0' || id > UINT32_MAX || i >= ll || ln[i] != ' ' ||
        ll - i - 1 != 2 * ST__KEY_LEN || n >= ST__KEYS_MAX || (n && id <= keys[n - 1].id))
      goto bad;
    i++;
    for (size_t b = 0; b < ST__KEY_LEN; b++) {
      int hi = hexval(ln[i + 2 * b]), lo = hexval(ln[i + 2 * b + 1]);
      if (hi < 0 || lo < 0) goto bad;
      keys[n].key[b] = (uint8_t)(hi << 4 | lo);
    }
    keys[n++].id = (uint32_t)id;
    continue;
  bad:
    st__log(st, ST_LOG_ERROR, "master key file %s line %zu is malformed (expected '<key id> <64 hex chars>', "
           "ids increasing, at most %d keys)",
           path, line, ST__KEYS_MAX);
    OPENSSL_cleanse(keys, sizeof(st__key) * ST__KEYS_MAX);
    return ST_EINVAL;
  }
  if (n == 0) {
    st__log(st, ST_LOG_ERROR, "master key file %s holds no key", path);
    return ST_EINVAL;
  }
  *nkeys = n;
  return 0;
}

static size_t keyfile_format(const st__key *keys, size_t n, char *buf, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; i < n && o + KEYLINE_MAX <= cap; i++) {
    o += (size_t)snprintf(buf + o, cap - o, "%u ", keys[i].id);
    for (size_t b = 0; b < ST__KEY_LEN; b++) {
      buf[o++] = hex[keys[i].key[b] >> 4];
      buf[o++] = hex[keys[i].key[b] & 15];
    }
    buf[o++] = '\n';
  }
  return o;
}

static int keyfile_write(const char *path, const st__key *keys, size_t n, int no_replace) {
  char buf[ST__KEYS_MAX * KEYLINE_MAX];
  size_t len = keyfile_format(keys, n, buf, sizeof buf);
  int rc = st__write_file_atomic(path, buf, len, no_replace);
  OPENSSL_cleanse(buf, sizeof buf);
  return rc;
}

static int keys_create(st_store *st, const char *path) {
  st__key k = {.id = 1};
  int rc;
  if (RAND_bytes(k.key, sizeof k.key) != 1) return ST_ECRYPTO;
  rc = keyfile_write(path, &k, 1, 1);
  if (rc == 0) {
    st->keys[0] = k;
    st->nkeys = 1;
    st->key_created = 1;
    st__log(st, ST_LOG_WARN, "created master key file %s (mode 0600). In production keep the master key outside "
           "the data directory, and back it up separately: store backups do not contain it",
           path);
  } else if (rc != ST_EEXIST) {
    st__log(st, ST_LOG_ERROR, "cannot create master key file %s: %s", path,
           st_strerror(rc));
  }
  OPENSSL_cleanse(&k, sizeof k);
  return rc;
}

int st__keys_load(st_store *st, const char *path) {
  struct stat sb;
  char *buf = NULL;
  size_t len = 0;
  int fd = -1, rc;
  if (!(st->key_file = strdup(path))) return ST_ENOMEM;
  for (int attempt = 0;; attempt++) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT || attempt > 0) break;
    /* ST_EEXIST: another process created it between our open and link. */
    if ((rc = keys_create(st, path)) != ST_EEXIST) return rc;
  }
  if (fd < 0) {
    st__log(st, ST_LOG_ERROR, "cannot open master key file %s: %s", path,
           strerror(errno));
    return ST_EIO;
  }
  if (fstat(fd, &sb) != 0) { rc = ST_EIO; goto fail; }
  if (!S_ISREG(sb.st_mode)) {
    st__log(st, ST_LOG_ERROR, "master key file %s is not a regular file", path);
    rc = ST_EPERM;
    goto fail;
  }
  if (sb.st_uid != geteuid() && sb.st_uid != 0) {
    /* its owner could put a key of theirs in it: every secret sealed
     * from then on would be theirs to open */
    st__log(st, ST_LOG_ERROR, "master key file %s belongs to uid %u, neither root nor uid %u that opens it; "
           "refusing to use it. Run: chown %u %s",
           path, (unsigned)sb.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
    rc = ST_EPERM;
    goto fail;
  }
  if (sb.st_mode & 077) {
    st__log(st, ST_LOG_ERROR, "master key file %s is accessible by group/others (mode %03o); refusing to start. "
           "Run: chmod 600 %s",
           path, (unsigned)(sb.st_mode & 0777), path);
    rc = ST_EPERM;
    goto fail;
  }
  if (sb.st_size > KEYFILE_MAX) {
    st__log(st, ST_LOG_ERROR, "master key file %s is too large", path);
    rc = ST_EINVAL;
    goto fail;
  }
  if (!(buf = malloc(KEYFILE_MAX + 1))) { rc = ST_ENOMEM; goto fail; }
  for (;;) {
    ssize_t r = read(fd, buf + len, KEYFILE_MAX + 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { rc = ST_EIO; goto fail; }
    if (r == 0) break;
    len += (size_t)r;
    if (len > KEYFILE_MAX) { rc = ST_EINVAL; goto fail; }
  }
  if ((rc = keyfile_parse(st, path, buf, len, st->keys, &st->nkeys)) < 0) goto fail;
  if (st->nkeys > 1)
    st__log(st, ST_LOG_WARN, "master key file %s holds %zu keys: a key rotation did not finish; run it again",
           path, st->nkeys);
  else
    st__log(st, ST_LOG_INFO, "master key loaded from %s (key id %u)", path,
           st->keys[0].id);
fail:
  if (buf) {
    OPENSSL_cleanse(buf, KEYFILE_MAX + 1);
    free(buf);
  }
  close(fd);
  return rc;
}

/* ---- seal / unseal ------------------------------------------------------- */

/* AES-256-GCM fetched from the default provider once: EVP_aes_256_gcm()
 * makes every EVP_*Init_ex fetch it again (OpenSSL 3's implicit fetch,
 * ~0.35 us of a ~1 us unseal — and a call through a connector with a
 * sealed key or grant unseals once). Kept for the process's life. */
static EVP_CIPHER *gcm_fetched;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
static void gcm_fetch(void) { gcm_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL); }
static const EVP_CIPHER *gcm(void) {
  pthread_once(&gcm_once, gcm_fetch);
  return gcm_fetched ? gcm_fetched : EVP_aes_256_gcm();
}

static int seal_with(const st__key *k, const st_aad *a, const aad_lens *l, const void *pt,
                     size_t n, uint8_t **blob, size_t *bloblen) {
  EVP_CIPHER_CTX *ctx = NULL;
  uint8_t aad[AAD_MAX], *b = NULL;
  size_t aadlen = aad_build(a, l, k->id, aad);
  int outl = 0, finl = 0, rc = ST_ECRYPTO;
  if (!(b = malloc(n + ST_SEAL_OVERHEAD))) return ST_ENOMEM;
  b[0] = ST_SEAL_VERSION;
  put32(b + 1, k->id);
  /* 96-bit random nonces: with far fewer than 2^32 seals per key the
   * collision probability stays negligible, and rotation resets the count. */
  if (RAND_bytes(b + 5, NONCE_LEN) != 1) goto fail;
  if (!(ctx = EVP_CIPHER_CTX_new()) ||
      EVP_EncryptInit_ex(ctx, gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
      EVP_EncryptInit_ex(ctx, NULL, NULL, k->key, b + 5) != 1 ||
      EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aadlen) != 1)
    goto fail;
  outl = 0; /* the AAD update reported the AAD length: not output */
  if (n > 0 && EVP_EncryptUpdate(ctx, b + HDR_LEN, &outl, pt, (int)n) != 1) goto fail;
  if (EVP_EncryptFinal_ex(ctx, b + HDR_LEN + outl, &finl) != 1 ||
      (size_t)(outl + finl) != n ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, b + HDR_LEN + n) != 1)
    goto fail;
  EVP_CIPHER_CTX_free(ctx);
  *blob = b;
  *bloblen = n + ST_SEAL_OVERHEAD;
  return 0;
fail:
  EVP_CIPHER_CTX_free(ctx);
  if (b) {
    OPENSSL_cleanse(b, n + ST_SEAL_OVERHEAD);
    free(b);
  }
  return rc;
}

int st_seal(st_store *st, const st_aad *aad, const void *pt, size_t n, uint8_t **blob,
            size_t *bloblen) {
  st__key k;
  aad_lens l;
  int rc;
  if (!st || !blob || !bloblen || (n && !pt) || n > ST_SECRET_MAX) return ST_EINVAL;
  *blob = NULL;
  *bloblen = 0;
  if ((rc = aad_check(aad, &l)) < 0) return rc;
  if ((rc = key_get(st, 0, &k)) < 0) return rc;
  rc = seal_with(&k, aad, &l, pt, n, blob, bloblen);
  OPENSSL_cleanse(&k, sizeof k);
  return rc;
}

/* Every thread keeps one decryption context with the key schedule of the
 * key it last unsealed under (AES-256-GCM's key expansion and GHASH table:
 * ~0.3 us of a ~0.55 us unseal, and a call through a connector with a
 * sealed key or grant unseals once). The next unseal under the same key
 * (compared by its bytes: a key id reused by another key file, a store
 * opened again, is a different key) only sets the nonce. The context, and
 * the key copy it is compared with, live until the thread ends (freed and
 * wiped by the key's destructor; the master key itself lives as long in
 * st->keys) or until a failed unseal, which drops it. */
typedef struct gcm_dec {
  EVP_CIPHER_CTX *ctx;
  st__key key;
} gcm_dec;
static pthread_key_t gcm_dec_key;
static pthread_once_t gcm_dec_once = PTHREAD_ONCE_INIT;
static int gcm_dec_ok;

static void gcm_dec_free(void *p) {
  gcm_dec *d = p;
  if (!d) return;
  EVP_CIPHER_CTX_free(d->ctx);
  OPENSSL_cleanse(d, sizeof *d);
  free(d);
}
static void gcm_dec_init(void) { gcm_dec_ok = pthread_key_create(&gcm_dec_key, gcm_dec_free) == 0; }

/* This thread's context, initialised for key k and nonce iv; NULL when
 * none can be made (the caller then uses a context of its own). */
static EVP_CIPHER_CTX *gcm_dec_get(const st__key *k, const uint8_t *iv) {
  pthread_once(&gcm_dec_once, gcm_dec_init);
  if (!gcm_dec_ok) return NULL;
  gcm_dec *d = pthread_getspecific(gcm_dec_key);
  if (d && d->key.id == k->id && CRYPTO_memcmp(d->key.key, k->key, sizeof k->key) == 0)
    return EVP_DecryptInit_ex(d->ctx, NULL, NULL, NULL, iv) == 1 ? d->ctx : NULL;
  if (!d) {
    if (!(d = calloc(1, sizeof *d))) return NULL;
    if (!(d->ctx = EVP_CIPHER_CTX_new()) || pthread_setspecific(gcm_dec_key, d) != 0) {
      gcm_dec_free(d);
      return NULL;
    }
  }
  d->key.id = 0; /* no key until this one is set */
  if (EVP_DecryptInit_ex(d->ctx, gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
      EVP_DecryptInit_ex(d->ctx, NULL, NULL, k->key, iv) != 1)
    return NULL;
  d->key = *k;
  return d->ctx;
}

/* after a failed unseal: the next one starts from a fresh context */
static void gcm_dec_drop(void) {
  if (!gcm_dec_ok) return;
  gcm_dec *d = pthread_getspecific(gcm_dec_key);
  if (!d) return;
  pthread_setspecific(gcm_dec_key, NULL);
  gcm_dec_free(d);
}

int st_unseal(st_store *st, const st_aad *aad, const uint8_t *blob, size_t bloblen,
              uint8_t **pt, size_t *n) {
  EVP_CIPHER_CTX *ctx = NULL, *own = NULL;
  st__key k;
  aad_lens l;
  uint8_t aadb[AAD_MAX], tag[TAG_LEN], *out = NULL;
  size_t ctlen, aadlen;
  int outl = 0, finl = 0, rc;
  if (!st || !pt || !n) return ST_EINVAL;
  *pt = NULL;
  *n = 0;
  if ((rc = aad_check(aad, &l)) < 0) return rc;
  if (!blob || bloblen < ST_SEAL_OVERHEAD || bloblen - ST_SEAL_OVERHEAD > ST_SECRET_MAX ||
      blob[0] != ST_SEAL_VERSION)
    return ST_ECRYPTO;
  ctlen = bloblen - ST_SEAL_OVERHEAD;
  /* Unknown key id: same answer as a bad tag (fail closed, no oracle). Id 0
   * is key_get's alias for the current key, never a stored key's id: a blob
   * relabelled to 0 must not unseal (the AAD below carries the resolved id). */
  uint32_t kid = get32(blob + 1);
  if ((rc = key_get(st, kid, &k)) == 0 && kid == 0) rc = ST_ECRYPTO;
  if (rc < 0) {
    OPENSSL_cleanse(&k, sizeof k);
    return rc == ST_ENOKEY ? rc : ST_ECRYPTO;
  }
  aadlen = aad_build(aad, &l, k.id, aadb);
  memcpy(tag, blob + HDR_LEN + ctlen, TAG_LEN);
  rc = ST_ECRYPTO;
  if (!(out = malloc(ctlen ? ctlen : 1))) { rc = ST_ENOMEM; goto fail; }
  if (!(ctx = gcm_dec_get(&k, blob + 5)) &&
      (!(ctx = own = EVP_CIPHER_CTX_new()) ||
       EVP_DecryptInit_ex(ctx, gcm(), NULL, NULL, NULL) != 1 ||
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
       EVP_DecryptInit_ex(ctx, NULL, NULL, k.key, blob + 5) != 1))
    goto fail;
  if (EVP_DecryptUpdate(ctx, NULL, &outl, aadb, (int)aadlen) != 1) goto fail;
  outl = 0;
  if (ctlen > 0 && EVP_DecryptUpdate(ctx, out, &outl, blob + HDR_LEN, (int)ctlen) != 1) goto fail;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1 ||
      EVP_DecryptFinal_ex(ctx, out + outl, &finl) != 1 || (size_t)(outl + finl) != ctlen)
    goto fail;
  EVP_CIPHER_CTX_free(own);
  OPENSSL_cleanse(&k, sizeof k);
  *pt = out;
  *n = ctlen;
  return 0;
fail:
  if (own) EVP_CIPHER_CTX_free(own);
  else gcm_dec_drop();
  OPENSSL_cleanse(&k, sizeof k);
  if (out) st_secret_free(out, ctlen ? ctlen : 1);
  return rc;
}

void st_secret_free(uint8_t *pt, size_t n) {
  if (!pt) return;
  OPENSSL_cleanse(pt, n);
  free(pt);
}

/* ---- the secrets database ------------------------------------------------ */

static int secret_key(const st_aad *a, uint8_t out[SKEY_MAX], size_t *len) {
  aad_lens l;
  int rc = aad_check(a, &l);
  if (rc < 0) return rc;
  *len = fields_put(out, a, &l);
  return 0;
}

int st_secret_put(st_txn *txn, const st_aad *aad, const void *pt, size_t n) {
  uint8_t k[SKEY_MAX], *blob = NULL;
  size_t klen, bloblen;
  int rc;
  if (!txn || !st_txn_is_write(txn) || !st__is_main(txn->st)) return ST_EINVAL;
  if ((rc = secret_key(aad, k, &klen)) < 0) return rc;
  if ((rc = st_seal(st_txn_store(txn), aad, pt, n, &blob, &bloblen)) < 0) return rc;
  rc = st_put(txn, ST_DB_SECRETS, k, klen, blob, bloblen, 0);
  free(blob); /* ciphertext: no need to wipe */
  return rc;
}

int st_secret_get(st_txn *txn, const st_aad *aad, uint8_t **pt, size_t *n) {
  uint8_t k[SKEY_MAX];
  size_t klen;
  st_val v;
  int rc;
  if (!txn || !pt || !n) return ST_EINVAL;
  *pt = NULL;
  if (!st__is_main(txn->st)) return ST_EINVAL;
  *n = 0;
  if ((rc = secret_key(aad, k, &klen)) < 0) return rc;
  if ((rc = st_get(txn, ST_DB_SECRETS, k, klen, &v)) < 0) return rc;
  return st_unseal(st_txn_store(txn), aad, v.data, v.len, pt, n);
}

int st_secret_get_str(st_txn *txn, const st_aad *aad, char **value) {
  uint8_t *pt;
  size_t n;
  *value = NULL;
  int rc = st_secret_get(txn, aad, &pt, &n);
  if (rc) return rc;
  char *v = malloc(n + 1);
  if (!v) {
    st_secret_free(pt, n);
    return ST_ENOMEM;
  }
  memcpy(v, pt, n);
  v[n] = 0;
  st_secret_free(pt, n);
  *value = v;
  return 0;
}

void st_secret_str_free(char *value) {
  if (value) st_secret_free((uint8_t *)value, strlen(value) + 1);
}

int st_secret_del(st_txn *txn, const st_aad *aad) {
  uint8_t k[SKEY_MAX];
  size_t klen;
  int rc;
  if (!txn || !st_txn_is_write(txn) || !st__is_main(txn->st)) return ST_EINVAL;
  if ((rc = secret_key(aad, k, &klen)) < 0) return rc;
  return st_del(txn, ST_DB_SECRETS, k, klen);
}

/* ---- check --------------------------------------------------------------- */

int st__check_secrets(st_store *st, st_txn *txn, st_check_report_fn report, void *ctx) {
  char tenant[ST_AAD_TENANT_MAX + 1], kind[ST_AAD_KIND_MAX + 1], owner[ST_AAD_OWNER_MAX + 1];
  char msg[512];
  st_cursor *c = NULL;
  st_val k, v;
  size_t unverified = 0;
  int problems = 0, rc, have_key = st_key_current_id(st) != 0;
  if ((rc = st_cursor_open(txn, ST_DB_SECRETS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    uint8_t *pt = NULL;
    size_t n = 0;
    if (st__secret_key_parse(k.data, k.len, tenant, kind, owner) < 0) {
      snprintf(msg, sizeof msg, "malformed secret key (%zu bytes)", k.len);
      if (report) report(ctx, "secrets", msg);
      problems++;
      continue;
    }
    if (!have_key) {
      unverified++;
      continue;
    }
    st_aad a = {tenant, kind, owner};
    if (st_unseal(st, &a, v.data, v.len, &pt, &n) < 0) {
      snprintf(msg, sizeof msg,
               "secret tenant='%s' kind='%s' owner='%s' (key id %u) does not unseal", tenant,
               kind, owner, v.len >= 5 ? get32((const uint8_t *)v.data + 1) : 0);
      if (report) report(ctx, "secrets", msg);
      problems++;
      continue;
    }
    st_secret_free(pt, n);
  }
  st_cursor_close(c);
  if (rc != ST_ENOTFOUND) return rc;
  if (unverified) {
    snprintf(msg, sizeof msg, "no master key loaded: %zu secret(s) not verified", unverified);
    if (report) report(ctx, "secrets", msg);
    problems++;
  }
  return problems;
}

/* ---- the key file fits the store ----------------------------------------- */

#define FIT_GROUPS 64 /* distinct key ids followed (more: a damaged store; st_check lists them) */
#define FIT_TRIES 4   /* blobs of one key id tried before it is judged */

typedef struct fit_group {
  uint32_t kid;
  size_t n, tried;
  int ok; /* one of its blobs unsealed */
} fit_group;

/* Whether kid is in the key set (under kmu). */
static int key_held(st_store *st, uint32_t kid) {
  st__key k;
  int rc = kid ? key_get(st, kid, &k) : ST_ECRYPTO;
  OPENSSL_cleanse(&k, sizeof k);
  return rc == 0;
}

/* The key ids of the key set, "1, 2" (for the log). */
static void held_ids(st_store *st, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = 0;
  uv_rwlock_rdlock(&st->kmu);
  for (size_t i = 0; i < st->nkeys && o < cap; i++) {
    int w = snprintf(buf + o, cap - o, "%s%u", i ? ", " : "", st->keys[i].id);
    if (w < 0) break;
    o += (size_t)w;
  }
  uv_rwlock_rdunlock(&st->kmu);
}

int st__keys_fit(st_store *st, st_txn *txn) {
  char tenant[ST_AAD_TENANT_MAX + 1], kind[ST_AAD_KIND_MAX + 1], owner[ST_AAD_OWNER_MAX + 1], ids[128];
  fit_group g[FIT_GROUPS];
  size_t ng = 0, lost = 0;
  st_cursor *c = NULL;
  st_val k, v;
  int rc;
  if (!st__is_main(st) || st_key_current_id(st) == 0 || !st->dbi_ok[ST_DB_SECRETS]) return 0;
  if ((rc = st_cursor_open(txn, ST_DB_SECRETS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const uint8_t *b = v.data;
    /* a blob of another format, or a key that does not parse: st_check's */
    if (v.len < ST_SEAL_OVERHEAD || b[0] != ST_SEAL_VERSION ||
        st__secret_key_parse(k.data, k.len, tenant, kind, owner) < 0)
      continue;
    uint32_t kid = get32(b + 1);
    size_t i = 0;
    while (i < ng && g[i].kid != kid) i++;
    if (i == ng) {
      if (ng == FIT_GROUPS) {
        lost++;
        continue;
      }
      g[ng++] = (fit_group){kid, 0, 0, 0};
    }
    g[i].n++;
    if (g[i].ok || g[i].tried == FIT_TRIES) continue;
    g[i].tried++;
    uint8_t *pt = NULL;
    size_t n = 0;
    st_aad a = {tenant, kind, owner};
    if (st_unseal(st, &a, v.data, v.len, &pt, &n) == 0) g[i].ok = 1;
    st_secret_free(pt, n);
  }
  st_cursor_close(c);
  if (rc != ST_ENOTFOUND) return rc;
  rc = 0;
  size_t fits = 0;
  for (size_t i = 0; i < ng; i++) fits += (size_t)g[i].ok;
  held_ids(st, ids, sizeof ids);
  for (size_t i = 0; i < ng; i++) {
    if (g[i].ok) continue;
    if (g[i].n == 1 && fits) {
      /* one blob alone, beside others that unseal: that blob is damaged,
       * not the key; the check names it */
      st__log(st, ST_LOG_WARN,
              "one sealed secret (key id %u) does not unseal under master key file %s while the others do: "
              "run `mcpgate store check` to name it",
              g[i].kid, st->key_file);
      continue;
    }
    if (key_held(st, g[i].kid))
      st__log(st, ST_LOG_ERROR,
              "master key file %s: its key id %u does not unseal the %zu sealed secret(s) of the store in %s "
              "sealed under key id %u, so it is not the key they were sealed under (another deployment's key "
              "file, or a damaged one?): put the store's own key file back (or point master_key_file at it); "
              "nothing was written under this one",
              st->key_file, g[i].kid, g[i].n, st->dir, g[i].kid);
    else
      st__log(st, ST_LOG_ERROR,
              "%zu sealed secret(s) of the store in %s are sealed under key id %u, which master key file %s does "
              "not hold (it holds key id %s): a backup from before `key rotate` restored beside a later key "
              "file? Use the key file of the backup's time (or point master_key_file at it); nothing was written "
              "under this one",
              g[i].n, st->dir, g[i].kid, st->key_file, ids);
    rc = ST_ECRYPTO;
  }
  if (lost)
    st__log(st, ST_LOG_WARN,
            "%zu sealed secret(s) carry more distinct key ids than the start checks: run `mcpgate store check`",
            lost);
  return rc;
}

/* ---- rotation ------------------------------------------------------------ */

/* One bounded re-seal pass, run as a job. Inputs (from, new_kid) are never
 * modified by the job; outputs are overwritten on every run, so a re-run by
 * the writer gives the same result (store.h purity contract). */
typedef struct rot_job {
  uint32_t new_kid;
  uint8_t from[SKEY_MAX];
  size_t flen;
  uint8_t next[SKEY_MAX];
  size_t nlen;
  int more;
  size_t resealed, failed;
  uint8_t (*keys)[SKEY_MAX]; /* scratch for ROTATE_BATCH keys */
  size_t *klens;
} rot_job;

static int rot_job_fn(st_txn *txn, void *arg) {
  rot_job *r = arg;
  st_store *st = st_txn_store(txn);
  char tenant[ST_AAD_TENANT_MAX + 1], kind[ST_AAD_KIND_MAX + 1], owner[ST_AAD_OWNER_MAX + 1];
  st_cursor *c = NULL;
  st_val k, v;
  size_t nk = 0, scanned = 0;
  st__key key;
  int rc;
  r->more = 0;
  r->nlen = 0;
  r->resealed = r->failed = 0;
  if ((rc = key_get(st, r->new_kid, &key)) < 0) return rc;
  /* Collect the keys first and write after closing the cursor: no reliance
   * on cursor fix-ups across value-size-changing puts. */
  if ((rc = st_cursor_open(txn, ST_DB_SECRETS, &c)) < 0) goto out;
  if ((rc = st_cursor_seek(c, NULL, 0, r->flen ? r->from : NULL, r->flen)) < 0) goto out;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    if (k.len > SKEY_MAX) continue; /* malformed; st_check reports it */
    if (nk == ROTATE_BATCH || scanned == ROTATE_SCAN_MAX) {
      memcpy(r->next, k.data, k.len); /* resume here (inclusive) next pass */
      r->nlen = k.len;
      r->more = 1;
      break;
    }
    scanned++;
    if (v.len >= 5 && get32((const uint8_t *)v.data + 1) == r->new_kid) continue;
    memcpy(r->keys[nk], k.data, k.len);
    r->klens[nk++] = k.len;
  }
  st_cursor_close(c);
  c = NULL;
  if (rc < 0 && rc != ST_ENOTFOUND) goto out;
  rc = 0;
  for (size_t i = 0; i < nk; i++) {
    uint8_t *pt = NULL, *blob = NULL;
    size_t n = 0, bloblen = 0;
    aad_lens l;
    if (st__secret_key_parse(r->keys[i], r->klens[i], tenant, kind, owner) < 0) {
      r->failed++;
      continue;
    }
    st_aad a = {tenant, kind, owner};
    if ((rc = st_get(txn, ST_DB_SECRETS, r->keys[i], r->klens[i], &v)) < 0) goto out;
    if (st_unseal(st, &a, v.data, v.len, &pt, &n) < 0) {
      r->failed++;
      continue;
    }
    aad_check(&a, &l);
    rc = seal_with(&key, &a, &l, pt, n, &blob, &bloblen);
    st_secret_free(pt, n);
    if (rc < 0) goto out;
    rc = st_put(txn, ST_DB_SECRETS, r->keys[i], r->klens[i], blob, bloblen, 0);
    free(blob);
    if (rc < 0) goto out;
    r->resealed++;
  }
out:
  if (c) st_cursor_close(c);
  OPENSSL_cleanse(&key, sizeof key);
  return rc;
}

int st_key_rotate(st_store *st) {
  st__key keys[ST__KEYS_MAX + 1], newk;
  rot_job *r = NULL;
  size_t n, total = 0, failed = 0;
  int rc;
  if (!st) return ST_EINVAL;
  if (!st->key_file || st_key_current_id(st) == 0) return ST_ENOKEY;
  if (uv_mutex_trylock(&st->rotmu) != 0) return ST_EBUSY;

  /* 1. New key appended to the file (old keys kept for unsealing). */
  uv_rwlock_rdlock(&st->kmu);
  n = st->nkeys;
  memcpy(keys, st->keys, n * sizeof keys[0]);
  uv_rwlock_rdunlock(&st->kmu);
  if (n >= ST__KEYS_MAX || keys[n - 1].id == UINT32_MAX) {
    st__log(st, ST_LOG_ERROR, "master key file %s holds too many keys to rotate",
           st->key_file);
    rc = ST_EINVAL;
    goto out;
  }
  newk.id = keys[n - 1].id + 1;
  if (RAND_bytes(newk.key, sizeof newk.key) != 1) { rc = ST_ECRYPTO; goto out; }
  keys[n] = newk;
  if ((rc = keyfile_write(st->key_file, keys, n + 1, 0)) < 0) {
    st__log(st, ST_LOG_ERROR, "key rotation: cannot write %s: %s", st->key_file,
           st_strerror(rc));
    goto out;
  }

  /* 2. Every seal from now on uses the new key. */
  uv_rwlock_wrlock(&st->kmu);
  st->keys[st->nkeys++] = newk;
  uv_rwlock_wrunlock(&st->kmu);
  st__log(st, ST_LOG_INFO, "key rotation: sealing key is now id %u; re-sealing secrets",
         newk.id);

  /* 3. Re-seal everything, ROTATE_BATCH blobs per job. */
  if (!(r = calloc(1, sizeof *r)) || !(r->keys = malloc(ROTATE_BATCH * sizeof *r->keys)) ||
      !(r->klens = malloc(ROTATE_BATCH * sizeof *r->klens))) {
    rc = ST_ENOMEM;
    goto out;
  }
  r->new_kid = newk.id;
  do {
    if ((rc = st_write_sync(st, rot_job_fn, r)) < 0) {
      st__log(st, ST_LOG_ERROR, "key rotation interrupted (%s); all keys kept, run it again", st_strerror(rc));
      goto out;
    }
    total += r->resealed;
    failed += r->failed;
    memcpy(r->from, r->next, r->nlen);
    r->flen = r->nlen;
  } while (r->more);
  if (failed) {
    st__log(st, ST_LOG_ERROR, "key rotation: %zu secret(s) could not be unsealed and were left as they are; old "
           "keys kept in %s. Run the store check to list them",
           failed, st->key_file);
    rc = ST_ECRYPTO;
    goto out;
  }

  /* 4. Nothing is sealed under an old key any more: drop them. */
  if ((rc = keyfile_write(st->key_file, &newk, 1, 0)) < 0) {
    st__log(st, ST_LOG_ERROR, "key rotation: secrets re-sealed but %s could not be rewritten (%s); run it again",
           st->key_file, st_strerror(rc));
    goto out;
  }
  uv_rwlock_wrlock(&st->kmu);
  OPENSSL_cleanse(st->keys, sizeof st->keys);
  st->keys[0] = newk;
  st->nkeys = 1;
  uv_rwlock_wrunlock(&st->kmu);
  st__log(st, ST_LOG_INFO, "key rotation finished: %zu secret(s) re-sealed under key id %u",
         total, newk.id);
out:
  if (r) {
    free(r->keys);
    free(r->klens);
    free(r);
  }
  OPENSSL_cleanse(keys, sizeof keys);
  OPENSSL_cleanse(&newk, sizeof newk);
  uv_mutex_unlock(&st->rotmu);
  return rc;
}
