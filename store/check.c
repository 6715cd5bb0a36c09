/* store/check.c — the read-through at start (st_verify) and the offline
 * consistency check (`mcpgate store check`) of one environment. Both read
 * every entry of every named database of its schema so LMDB touches every
 * page; the check also flags databases the schema does not know,
 * verifies the schema version, runs the schema's own checks (the main one:
 * every sealed secret, tenant uids), then the checks other modules
 * registered (SCIM indexes etc.). Reports go through the caller's callback; nothing secret
 * is ever put in a message. */
#include "store/store_int.h"
#include "store/text.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>


int st_check_add(st_store *st, st_check_fn fn, void *ctx) {
  if (!st || !fn) return ST_EINVAL;
  if (st->nchecks >= ST_CHECKS_MAX) return ST_ENOMEM;
  st->checks[st->nchecks++] = (st__check){fn, ctx};
  return 0;
}

static void say(st_check_report_fn report, void *ctx, const char *area, const char *msg) {
  if (report) report(ctx, area, msg);
}

/* Named databases live as keys of LMDB's unnamed main database. */
static int check_unknown_dbs(st_txn *t, st_check_report_fn report, void *ctx) {
  MDB_cursor *mc;
  MDB_dbi main_dbi;
  MDB_val k, v;
  char msg[160];
  int problems = 0, rc;
  /* The NULL name is the main database (dbi 0 is the freelist). */
  if ((rc = mdb_dbi_open(t->txn, NULL, 0, &main_dbi)) != 0) return st__err(rc);
  if ((rc = mdb_cursor_open(t->txn, main_dbi, &mc)) != 0) return st__err(rc);
  for (rc = mdb_cursor_get(mc, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
    int known = 0, printable = k.mv_size <= 64;
    const st_schema *sc = t->st->schema;
    for (size_t i = 0; i < sc->ndbs && !known; i++)
      known = strlen(sc->db_names[i]) == k.mv_size &&
              memcmp(sc->db_names[i], k.mv_data, k.mv_size) == 0;
    if (known) continue;
    for (size_t i = 0; i < k.mv_size && printable; i++)
      printable = isprint(((const unsigned char *)k.mv_data)[i]);
    if (printable)
      snprintf(msg, sizeof msg, "unknown database '%.*s' in the store file", (int)k.mv_size,
               (const char *)k.mv_data);
    else
      snprintf(msg, sizeof msg, "unknown database (unprintable name, %zu bytes)", k.mv_size);
    say(report, ctx, "store", msg);
    problems++;
  }
  mdb_cursor_close(mc);
  return rc == MDB_NOTFOUND ? problems : st__err(rc);
}

/* The main schema's own checks: every sealed secret unseals with the AAD
 * its key encodes, and tenant records and incarnation uids pair up. */
int st__check_main(st_txn *t, st_check_report_fn report, void *ctx) {
  char msg[256];
  int problems = 0, rc;
  if ((rc = st__check_secrets(t->st, t, report, ctx)) < 0) {
    snprintf(msg, sizeof msg, "cannot scan secrets: %s", st_strerror(rc));
    say(report, ctx, "secrets", msg);
    problems++;
  } else {
    problems += rc;
  }

  if ((rc = st__check_tenant_uids(t, report, ctx)) < 0) {
    snprintf(msg, sizeof msg, "cannot scan tenants: %s", st_strerror(rc));
    say(report, ctx, "tenants", msg);
    problems++;
  } else {
    problems += rc;
  }

  /* the directory's name keys as this binary folds them (dir.h) */
  char was[32];
  if ((rc = st__dir_fold_version(t, was)) < 0 || strcmp(was, st_text_fold_version())) {
    if (rc < 0) snprintf(msg, sizeof msg, "cannot read the names' folding version: %s", st_strerror(rc));
    else
      snprintf(msg, sizeof msg,
               "userName and displayName keys were folded by Unicode %s, this binary folds by %s (name lookups "
               "may miss): `mcpgate serve` with this binary re-keys them at start",
               was[0] ? was : "(unrecorded)", st_text_fold_version());
    say(report, ctx, "scim", msg);
    problems++;
  }
  return problems;
}

/* Reads every entry of db, touching the first and last byte of each key
 * and value so every branch, leaf and overflow page is read. An entry
 * larger than the whole file (file_bytes; 0: unknown) or a key longer than
 * LMDB allows is a damaged page LMDB did not notice: ST_ECORRUPT, *why
 * says which, before anything reads it. */
static int walk_db(st_txn *t, st_db db, size_t file_bytes, size_t *entries, const char **why) {
  st_cursor *c;
  st_val k, v;
  volatile uint8_t sink = 0;
  int rc = st_cursor_open(t, db, &c);
  *entries = 0;
  *why = NULL;
  if (rc < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    if (k.len > t->st->maxkey || (file_bytes && v.len > file_bytes)) {
      *why = k.len > t->st->maxkey ? "a key longer than LMDB allows" : "a value larger than the whole file";
      rc = ST_ECORRUPT;
      break;
    }
    if (k.len) sink ^= ((const uint8_t *)k.data)[0] ^ ((const uint8_t *)k.data)[k.len - 1];
    if (v.len) sink ^= ((const uint8_t *)v.data)[0] ^ ((const uint8_t *)v.data)[v.len - 1];
    (*entries)++;
  }
  (void)sink;
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int st_verify(st_store *st) {
  st_txn *t = NULL;
  size_t total = 0, file_bytes = st__file_bytes(st);
  int rc;
  if (!st) return ST_EINVAL;
  if ((rc = st_read_begin(st, &t)) < 0) return rc;
  const st_schema *sc = st->schema;
  for (size_t i = 0; i < sc->ndbs; i++) {
    size_t entries;
    const char *why;
    if ((rc = walk_db(t, (st_db)i, file_bytes, &entries, &why)) < 0) {
      if (rc == ST_ECORRUPT)
        st__damaged(st, "database '%s', after %zu entries: %s", sc->db_names[i], entries,
                    why ? why : "LMDB cannot read its next page");
      else
        st__log(st, ST_LOG_ERROR, "cannot read the %s's database '%s' through: %s", sc->name, sc->db_names[i],
                st_strerror(rc));
      st_txn_end(t);
      return rc;
    }
    total += entries;
  }
  st_txn_end(t);
  st__log(st, ST_LOG_INFO, "%s verified: %zu entries in %zu databases read through", sc->name, total, sc->ndbs);
  return 0;
}

int st_check(st_store *st, st_check_report_fn report, void *ctx) {
  st_txn *t = NULL;
  char msg[256];
  uint32_t v = 0;
  int problems = 0, rc;
  if (!st) return ST_EINVAL;
  if ((rc = st_read_begin(st, &t)) < 0) return rc;

  if ((rc = check_unknown_dbs(t, report, ctx)) < 0) {
    snprintf(msg, sizeof msg, "cannot list databases: %s", st_strerror(rc));
    say(report, ctx, "store", msg);
    problems++;
  } else {
    problems += rc;
  }

  const st_schema *sc = st->schema;
  size_t file_bytes = st__file_bytes(st);
  for (size_t i = 0; i < sc->ndbs; i++) {
    size_t entries;
    const char *why;
    if ((rc = walk_db(t, (st_db)i, file_bytes, &entries, &why)) < 0) {
      snprintf(msg, sizeof msg, "read error after %zu entries: %s", entries, why ? why : st_strerror(rc));
      say(report, ctx, sc->db_names[i], msg);
      problems++;
    }
  }

  if ((rc = st__schema_read(t, &v)) < 0 || v != sc->nsteps) {
    snprintf(msg, sizeof msg, "schema_version is %s%u, expected %zu",
             rc < 0 ? "unreadable: " : "", v, sc->nsteps);
    say(report, ctx, sc->db_names[0], msg);
    problems++;
  }

  if (sc->check) {
    rc = sc->check(t, report, ctx);
    problems += rc < 0 ? 1 : rc;
  }

  for (size_t i = 0; i < st->nchecks; i++) {
    rc = st->checks[i].fn(t, report, ctx, st->checks[i].ctx);
    if (rc < 0) {
      snprintf(msg, sizeof msg, "module check %zu failed to run: %s", i, st_strerror(rc));
      say(report, ctx, "store", msg);
      problems++;
    } else {
      problems += rc;
    }
  }
  st_txn_end(t);
  st__log(st, problems ? ST_LOG_WARN : ST_LOG_INFO, "store check: %d problem(s)",
         problems);
  return problems;
}
