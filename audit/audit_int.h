/* audit/audit_int.h — private to audit/: the chain head, key layout and
 * the audit__ helpers the module's .c files share (chain.c owns them). */
#ifndef MCPGATE_AUDIT_AUDIT_INT_H
#define MCPGATE_AUDIT_AUDIT_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"

#define AUDIT__KEY_MAX (AUDIT_UID_MAX + 1 + 8) /* uid ‖ 0x00 ‖ u64 BE seq */
#define AUDIT__HEAD_MAX 512                     /* a head's JSON, bytes */

/* A chain head as stored in AUDIT_DB_HEADS (JSON), decoded. */
typedef struct audit__head {
  char tenant[AUDIT_TENANT_MAX + 1];
  uint64_t seq;   /* last seq written (0: none yet) */
  uint64_t first; /* first seq still stored (seq + 1 when none is) */
  char hash[AUDIT_HASH_HEX + 1];   /* hash of record seq (zeros when seq == 0) */
  char pruned[AUDIT_HASH_HEX + 1]; /* hash of record first - 1 (zeros when first == 1) */
} audit__head;

extern const char audit__zero_hash[AUDIT_HASH_HEX + 1];

bool audit__tenant_ok(const char *t);
bool audit__uid_ok(const char *u);
/* Record key of (uid, seq) into k (AUDIT__KEY_MAX); returns its length. */
size_t audit__rec_key(const char *uid, uint64_t seq, uint8_t *k);
/* seq of a record key of uid (0 if k is not one). */
uint64_t audit__key_seq(const void *k, size_t klen, size_t uidlen);
/* hex SHA-256 of n bytes; 0 or ST_ECRYPTO. */
int audit__hash_hex(const void *p, size_t n, char out[AUDIT_HASH_HEX + 1]);
/* A head: 0, ST_ENOTFOUND, AUDIT_ECORRUPT or a store error. */
int audit__head_get(st_txn *txn, const char *uid, audit__head *h);
int audit__head_decode(const void *p, size_t n, audit__head *h);
int audit__head_put(st_txn *txn, const char *uid, const audit__head *h);
/* A fresh chain's head for tenant. */
void audit__head_init(audit__head *h, const char *tenant);
/* sink name syntax: [a-z0-9:_-]{1,AUDIT_SINK_MAX} */
bool audit__sink_ok(const char *s);
/* Writes one cursor (sink, uid) = seq unless the stored one is larger. */
int audit__cursor_put(st_txn *txn, const char *sink, const char *uid, uint64_t seq);
/* Deletes every cursor of sink. 0 or ST_E*. */
int audit__cursor_drop(st_txn *txn, const char *sink);
/* st_check's part: every cursor well-formed, of an existing chain, not past its head. */
int audit__cursors_check(st_txn *txn, void (*report)(void *ctx, const char *area, const char *msg), void *ctx);
/* log.c: frees the pool's blocks no record took since the last call (the
 * audit thread calls it every pool_trim_ms; tests call it directly). */
void audit__pool_trim(audit_log *a);
/* "time" of stored record bytes into *t; false if unparsable or absent. */
bool audit__rec_time(const void *p, size_t n, int64_t *t);

#endif
