/* store/stamp.c — telling a store that went back in time: the store's
 * generation (META "generation", u64 big-endian, absent = 0) and its
 * record outside the store directory (a small file the opener names:
 * serve's <data>/store.generation).
 *
 * Why: a restore of an older backup brings back every token, session and
 * grant that existed when the backup was taken — users deactivated and
 * tokens revoked since are live again — and the store itself cannot know
 * it is a copy (found by the operations review). The file outside it
 * survives the restore of store/ and says how far the store had come.
 *
 * The order that makes a crash harmless: the generation is committed in
 * the store first, then the file is written (atomically, fsynced). A crash
 * between leaves the store one ahead of its record, which is accepted; the
 * other order would take a crash for a restore.
 *
 * The file: "mcpgate store generation 1\nstore_id <id>\ngeneration <n>\n".
 * A file naming another store_id is a new or different store put in the
 * directory (not a restore of this one): said by st_stamp_check, replaced
 * by the next st_stamp_advance. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/token.h"

#define GEN_KEY "generation"
#define ID_KEY "store_id"
#define FILE_MAGIC "mcpgate store generation 1\n"

static int read_store(st_txn *t, char id[ST_STAMP_ID_BUFSZ], uint64_t *gen) {
  st_val v;
  int rc = st_get(t, ST_DB_META, ID_KEY, strlen(ID_KEY), &v);
  if (rc == ST_ENOTFOUND) id[0] = 0;
  else if (rc < 0) return rc;
  else {
    if (v.len == 0 || v.len >= ST_STAMP_ID_BUFSZ) return ST_ECORRUPT;
    memcpy(id, v.data, v.len);
    id[v.len] = 0;
  }
  *gen = 0;
  rc = st_get(t, ST_DB_META, GEN_KEY, strlen(GEN_KEY), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc < 0) return rc;
  if (v.len != 8) return ST_ECORRUPT;
  const uint8_t *p = v.data;
  for (int i = 0; i < 8; i++) *gen = (*gen << 8) | p[i];
  return 0;
}

/* 1 read, 0 no file, ST_ECORRUPT a file that does not parse, ST_EIO. */
static int read_file(const char *path, char id[ST_STAMP_ID_BUFSZ], uint64_t *gen) {
  char buf[256];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : ST_EIO;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return ST_EIO;
  buf[n] = 0;
  size_t ml = strlen(FILE_MAGIC);
  if ((size_t)n == sizeof buf - 1 || strncmp(buf, FILE_MAGIC, ml)) return ST_ECORRUPT;
  const char *p = buf + ml;
  if (strncmp(p, "store_id ", 9)) return ST_ECORRUPT;
  p += 9;
  size_t il = strcspn(p, "\n");
  if (il == 0 || il >= ST_STAMP_ID_BUFSZ || p[il] != '\n') return ST_ECORRUPT;
  memcpy(id, p, il);
  id[il] = 0;
  p += il + 1;
  if (strncmp(p, "generation ", 11)) return ST_ECORRUPT;
  p += 11;
  if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '\n')) return ST_ECORRUPT;
  uint64_t g = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (g > (UINT64_MAX - 9) / 10) return ST_ECORRUPT;
    g = g * 10 + (uint64_t)(*p - '0');
  }
  if (strcmp(p, "\n")) return ST_ECORRUPT;
  *gen = g;
  return 1;
}

static int write_file(const char *path, const char *id, uint64_t gen) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, FILE_MAGIC "store_id %s\ngeneration %" PRIu64 "\n", id, gen);
  if (n < 0 || n >= (int)sizeof buf) return ST_EINVAL;
  return st__write_file_atomic(path, buf, (size_t)n, 0);
}

int st_stamp_check(st_store *st, const char *path, st_stamp_info *out) {
  if (!st || !path || !out) return ST_EINVAL;
  memset(out, 0, sizeof *out);
  /* The record first, then the store: an advance commits before it writes
   * the record, so a record read first is never ahead of the store read
   * after it, even beside a running server (`store check`). The other order
   * took a healthy store for an older one when an advance fell between the
   * two reads (found by review). */
  int frc = read_file(path, out->file_id, &out->file_gen);
  st_txn *t;
  int rc = st_read_begin(st, &t);
  if (rc < 0) return rc;
  rc = read_store(t, out->store_id, &out->store_gen);
  st_txn_end(t);
  if (rc < 0) return rc;
  rc = frc;
  if (rc < 0) {
    out->state = rc == ST_ECORRUPT ? ST_STAMP_BAD_FILE : ST_STAMP_UNREADABLE;
    return 0;
  }
  if (rc == 0) out->state = ST_STAMP_NO_FILE;
  else if (out->store_id[0] && strcmp(out->store_id, out->file_id)) out->state = ST_STAMP_OTHER_STORE;
  else if (out->store_gen < out->file_gen) out->state = ST_STAMP_OLDER;
  else out->state = ST_STAMP_OK;
  return 0;
}

typedef struct advance_job {
  char id[ST_STAMP_ID_BUFSZ];
  uint64_t gen;
} advance_job;

/* Pure: the store's id (assigned by migration 2; a store without one gets
 * one here, from the caller's randomness) and generation + 1. A re-run
 * reads its own txn afresh. */
static int advance_fn(st_txn *t, void *arg) {
  advance_job *j = arg;
  /* it keeps what was taken away from coming back with a restore: it may
   * use the reserve (a full store still records it) */
  st_txn_use_reserve(t);
  char fresh[ST_STAMP_ID_BUFSZ];
  memcpy(fresh, j->id, sizeof fresh);
  int rc = read_store(t, j->id, &j->gen);
  if (rc < 0) return rc;
  if (!j->id[0]) {
    memcpy(j->id, fresh, sizeof fresh);
    if ((rc = st_put(t, ST_DB_META, ID_KEY, strlen(ID_KEY), j->id, strlen(j->id), 0)) < 0) return rc;
  }
  if (j->gen == UINT64_MAX) return ST_ECORRUPT;
  j->gen++;
  uint8_t be[8];
  for (int i = 0; i < 8; i++) be[i] = (uint8_t)(j->gen >> (56 - 8 * i));
  return st_put(t, ST_DB_META, GEN_KEY, strlen(GEN_KEY), be, sizeof be, 0);
}

int st_stamp_advance(st_store *st, const char *path, uint64_t *gen_out) {
  if (!st || !path || st->read_only) return ST_EINVAL;
  advance_job j;
  memset(&j, 0, sizeof j);
  int rc = st_token_id_new(j.id); /* used only by a store that has none */
  if (rc < 0) return rc;
  if ((rc = st_write_sync(st, advance_fn, &j)) < 0) return rc;
  if ((rc = write_file(path, j.id, j.gen)) < 0) return rc;
  if (gen_out) *gen_out = j.gen;
  return 0;
}

const char *st_stamp_state_str(int state) {
  switch (state) {
  case ST_STAMP_OK: return "ok";
  case ST_STAMP_NO_FILE: return "no record";
  case ST_STAMP_OTHER_STORE: return "another store";
  case ST_STAMP_OLDER: return "older than its record";
  case ST_STAMP_BAD_FILE: return "the record does not parse";
  case ST_STAMP_UNREADABLE: return "the record cannot be read";
  default: return "?";
  }
}
