/* store/seal.h — sealing secrets at rest and the master key they are sealed
 * under.
 *
 * A sealed blob is AES-256-GCM with a fresh random 96-bit nonce and
 * additional authenticated data (AAD) that binds it to its record: tenant,
 * kind, owner id and the key id. A blob copied onto another record (other
 * tenant, owner or kind), or relabelled with another key id, fails to
 * unseal. Layout:
 *     version (1 byte, = 1) | key id (u32 BE) | nonce (12) | ciphertext | tag (16)
 * AAD bytes (unambiguous, every field length-prefixed):
 *     "mcpgate-seal" | version | u8 len | tenant | u8 len | kind |
 *     u8 len | owner | key id (u32 BE)
 *
 * ALL sealed secrets live in ST_DB_SECRETS, keyed by their AAD fields
 * (st_secret_*), so key rotation and st_check can find and verify every one.
 * Seal inside the write job (st_secret_put): never seal on a loop thread and
 * store the blob later, or a concurrent rotation could miss it.
 *
 * Master key file: text, one key per line "<key id decimal> <64 hex>", the
 * LAST line is the current sealing key; earlier lines are kept only to
 * unseal while a rotation is in progress. Created 0600 on first start when
 * missing (with a WARN: in production keep it outside the data directory).
 * The store refuses to start if it is readable or writable by group/others,
 * is not a regular file, or is malformed. Key material never appears in logs
 * or error text. */
#ifndef MCPGATE_STORE_SEAL_H
#define MCPGATE_STORE_SEAL_H
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

#define ST_SEAL_VERSION 1
#define ST_SEAL_OVERHEAD (1 + 4 + 12 + 16) /* blob bytes beyond the plaintext */
#define ST_SECRET_MAX (64 * 1024)          /* cap on one secret's plaintext */
#define ST_AAD_TENANT_MAX 63
#define ST_AAD_KIND_MAX 64
#define ST_AAD_OWNER_MAX 255

/* What a blob is bound to. All are NUL-terminated strings, borrowed for the
 * call. tenant may be "" (operator-wide secrets), kind must be non-empty
 * (e.g. "vault.oauth", "connector.apikey"), owner may be "" (e.g. a
 * tenant-wide connector key uses the connector name instead). */
typedef struct st_aad {
  const char *tenant;
  const char *kind;
  const char *owner;
} st_aad;

/* Seals n bytes (n <= ST_SECRET_MAX) under the current master key. *blob is
 * malloc'd and owned by the caller (free()); *bloblen = n + ST_SEAL_OVERHEAD.
 * ST_ENOKEY without a master key, ST_EINVAL for bad AAD fields. Any thread. */
int st_seal(st_store *st, const st_aad *aad, const void *pt, size_t n, uint8_t **blob,
            size_t *bloblen);
/* Authenticates and decrypts. *pt is malloc'd, owned by the caller, and must
 * be released with st_secret_free (which wipes it). Any failure — tag or AAD
 * mismatch, unknown key id, truncated blob, bad version — is ST_ECRYPTO and
 * leaves *pt NULL. Any thread. */
int st_unseal(st_store *st, const st_aad *aad, const uint8_t *blob, size_t bloblen,
              uint8_t **pt, size_t *n);
/* Wipes (OPENSSL_cleanse) and frees a plaintext from st_unseal /
 * st_secret_get. NULL is a no-op. */
void st_secret_free(uint8_t *pt, size_t n);

/* Seals pt under the current key and stores it in ST_DB_SECRETS under the
 * key derived from aad (replacing any previous blob). Write txns only. */
int st_secret_put(st_txn *txn, const st_aad *aad, const void *pt, size_t n);
/* Loads and unseals. ST_ENOTFOUND if absent, ST_ECRYPTO if it does not
 * authenticate. *pt as for st_unseal (free with st_secret_free). */
int st_secret_get(st_txn *txn, const st_aad *aad, uint8_t **pt, size_t *n);
/* st_secret_get as a NUL-terminated string (for secrets that are text:
 * credentials), freed with st_secret_str_free (wipes it; NULL is a no-op).
 * *value is NULL on failure. */
int st_secret_get_str(st_txn *txn, const st_aad *aad, char **value);
void st_secret_str_free(char *value);
/* Deletes. ST_ENOTFOUND if absent. Write txns only. */
int st_secret_del(st_txn *txn, const st_aad *aad);
/* Key prefix of every secret of a tenant in ST_DB_SECRETS, for prefix scans
 * (e.g. tenant deletion). Writes at most cap bytes into buf; returns the
 * prefix length, or ST_EINVAL if the tenant is too long or cap too small. */
int st_secret_tenant_prefix(const char *tenant, uint8_t *buf, size_t cap);

/* Tenant purge of the sealed-secret database (st_purge_fn): deletes up to
 * limit secrets of tenant, returns how many. Register it with
 * st_purge_add (the store does not register it itself: the order of
 * purges is the opener's). */
int st_secret_purge_tenant(st_txn *txn, const char *tenant, int limit);

/* Id of the current sealing key (0 if none). */
uint32_t st_key_current_id(st_store *st);

/* Rotates the master key, crash-safe at every step:
 *   1. generate key N+1; rewrite the key file with the old keys + the new
 *      one last (temp file, fsync, rename, fsync dir). A crash here leaves
 *      either the old file or the new one, both of which unseal everything.
 *   2. make N+1 the current key in memory: every seal from now on uses it.
 *   3. re-seal every blob in ST_DB_SECRETS not under N+1, through the
 *      writer, at most 1000 blobs per transaction. A crash mid-way leaves
 *      blobs under both keys; the file still holds both, so all unseal, and
 *      the next rotation re-seals everything again.
 *   4. only when every blob is under N+1, rewrite the key file with N+1
 *      alone (temp, fsync, rename) and forget the old keys in memory.
 * If any blob fails to unseal during step 3 the old keys are kept and
 * ST_ECRYPTO is returned (run st_check). Blocks the caller (uses
 * st_write_sync): CLI/admin thread only, never a loop or the writer.
 * ST_EBUSY if another rotation is running, ST_ENOKEY without a key file.
 * Run it in the process that serves (admin API) or with the server
 * stopped: another process holding the store open keeps sealing under the
 * key it loaded at start, and those blobs would be lost at step 4. */
int st_key_rotate(st_store *st);

#endif
