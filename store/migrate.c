/* store/migrate.c — migrations of any environment's schema (the schema
 * version and running the ordered steps), and the MAIN schema: its
 * database name table and its steps (st_schema_main).
 *
 * Database 0 of a schema (ST_DB_META in the main one) holds
 * "schema_version" (u32 big-endian). Step i (1-based) moves
 * the store from version i-1 to i; it runs in one write transaction
 * together with the version bump, so a crash mid-step leaves the previous
 * version and the whole step simply runs again: steps need not be
 * idempotent. A file whose version is newer than the last step here was
 * written by a newer mcpgate and is refused (ST_ETOONEW) before anything is
 * written to it.
 *
 * Adding a main step: append to `main_steps` below. Never edit or reorder
 * a released step — stores in the field have already run it. A step that
 * rewrites records a module above the store owns names an upgrade (store.h
 * st_upgrade) the opener gives; the store never includes that module. */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "store/token.h"

#define SCHEMA_KEY "schema_version"
#define STORE_ID_KEY "store_id"

/* The stored names of the main environment's named databases. Never
 * rename an entry: the name is the database's identity inside the file. */
static const char *const main_db_names[ST_DB__COUNT] = {
    [ST_DB_META] = "meta",
    [ST_DB_TENANTS] = "tenants",
    [ST_DB_TOKENS] = "tokens",
    [ST_DB_SECRETS] = "secrets",
    [ST_DB_SCIM_RES] = "scim.res",
    [ST_DB_SCIM_IDX] = "scim.idx",
    [ST_DB_SCIM_MEM] = "scim.mem",
    [ST_DB_CONNECTORS] = "vault.connectors",
    [ST_DB_SESSIONS] = "sessions",
    [ST_DB_POLICY] = "policy",
    [ST_DB_AUTH] = "auth",
    [ST_DB_VAULT] = "vault",
    [ST_DB_AUDIT] = "audit",
    [ST_DB_APPROVALS] = "approvals",
};
_Static_assert(sizeof main_db_names / sizeof main_db_names[0] == ST_DB__COUNT,
               "main_db_names must name every st_db");
_Static_assert(ST_DB__COUNT <= ST_SCHEMA_DBS_MAX, "raise ST_SCHEMA_DBS_MAX");
_Static_assert(ST_DB_META == 0, "the schema version lives in database 0");

/* 1: the databases the first release uses. */
static int m1_initial_dbs(st_txn *t) {
  static const st_db dbs[] = {ST_DB_META, ST_DB_TENANTS, ST_DB_TOKENS, ST_DB_SECRETS};
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
    int rc = st_db_create(t, dbs[i]);
    if (rc < 0) return rc;
  }
  return 0;
}

/* 2: a stable random identity for the store, reported by backup and check
 * so operators can tell a copy's origin. Not part of any sealing AAD: a
 * restored backup must still unseal. */
static int m2_store_id(st_txn *t) {
  char id[ST_TOKEN_ID_BUFSZ];
  st_val v;
  int rc = st_get(t, ST_DB_META, STORE_ID_KEY, strlen(STORE_ID_KEY), &v);
  if (rc == 0) return 0;
  if (rc != ST_ENOTFOUND) return rc;
  if ((rc = st_token_id_new(id)) < 0) return rc;
  return st_put(t, ST_DB_META, STORE_ID_KEY, strlen(STORE_ID_KEY), id, strlen(id), 0);
}

/* 3: SCIM resources, their indexes and group membership (scim/scim.h). */
static int m3_scim_dbs(st_txn *t) {
  static const st_db dbs[] = {ST_DB_SCIM_RES, ST_DB_SCIM_IDX, ST_DB_SCIM_MEM};
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
    int rc = st_db_create(t, dbs[i]);
    if (rc < 0) return rc;
  }
  return 0;
}

/* 4: connectors (vault/) and MCP sessions (gateway/). */
static int m4_proxy_dbs(st_txn *t) {
  int rc = st_db_create(t, ST_DB_CONNECTORS);
  return rc < 0 ? rc : st_db_create(t, ST_DB_SESSIONS);
}

/* 5: policy documents (policy/). */
static int m5_policy_db(st_txn *t) { return st_db_create(t, ST_DB_POLICY); }

/* 6: an incarnation uid for every tenant (store.h, "tenant incarnations"):
 * caches keyed by it never serve a deleted tenant's state to a new tenant
 * of the same id. Tenants keep the uid they are given here. */
static int m6_tenant_uids(st_txn *t) {
  char ids[256][64];
  for (;;) {
    /* collected first, written after: no write under an open cursor */
    st_cursor *c;
    int n = 0, rc = st_cursor_open(t, ST_DB_TENANTS, &c);
    if (rc < 0) return rc;
    st_cursor_seek(c, "t", 1, NULL, 0);
    st_val k, v;
    char uid[ST_TENANT_UID_LEN + 1];
    while (n < 256 && st_cursor_next(c, &k, &v) == 0) {
      if (k.len < 2 || k.len > 64) continue;
      memcpy(ids[n], (const char *)k.data + 1, k.len - 1);
      ids[n][k.len - 1] = 0;
      if (st_tenant_uid_get(t, ids[n], uid) == ST_ENOTFOUND) n++;
    }
    st_cursor_close(c);
    if (n == 0) return 0;
    for (int i = 0; i < n; i++) {
      char fresh[ST_TOKEN_ID_BUFSZ];
      if ((rc = st_token_id_new(fresh)) < 0 || (rc = st_tenant_uid_put(t, ids[i], fresh)) < 0) return rc;
    }
  }
}

/* 7: auth/'s database (tenant OIDC settings; later browser sessions). */
static int m7_auth_db(st_txn *t) { return st_db_create(t, ST_DB_AUTH); }

/* 8: vault/'s per-user grants and revocation queue. */
static int m8_vault_db(st_txn *t) { return st_db_create(t, ST_DB_VAULT); }

/* 9: audit/'s tenant settings that live with the tenant (its SIEM sink). */
static int m9_audit_db(st_txn *t) { return st_db_create(t, ST_DB_AUDIT); }

/* 10: policy/'s approval requests and grants. */
static int m10_approvals_db(st_txn *t) { return st_db_create(t, ST_DB_APPROVALS); }


static const st_migration main_steps[] = {
    {"create initial databases", m1_initial_dbs, NULL},
    {"assign store id", m2_store_id, NULL},
    {"create SCIM databases", m3_scim_dbs, NULL},
    {"create connector and session databases", m4_proxy_dbs, NULL},
    {"create the policy database", m5_policy_db, NULL},
    {"give every tenant an incarnation uid", m6_tenant_uids, NULL},
    {"create the auth database", m7_auth_db, NULL},
    {"create the vault grants database", m8_vault_db, NULL},
    {"create the audit database", m9_audit_db, NULL},
    {"create the approvals database", m10_approvals_db, NULL},
    /* 11: a connector URL's query is sealed (vault.h): the records'
     * format is vault's, so is the upgrade */
    {"seal the query of connector URLs", NULL, ST_UPGRADE_URL_QUERIES},
    /* 12: a tenant SIEM sink URL's query is sealed (audit.h): the records'
     * format is audit's, so is the upgrade */
    {"seal the query of tenant SIEM sink URLs", NULL, ST_UPGRADE_SINK_URLS},
    /* 13: userName and displayName compare by Unicode's case folding
     * (store/text.h), no longer by ASCII's (store/dir.c) */
    {"fold userName and displayName index keys by Unicode", st__dir_refold, NULL},
};

const st_schema st_schema_main = {
    .name = "store",
    .db_names = main_db_names,
    .ndbs = ST_DB__COUNT,
    .steps = main_steps,
    .nsteps = sizeof main_steps / sizeof main_steps[0],
    .check = st__check_main,
    .sync = st__dir_fold_sync,
};

uint32_t st_schema_latest(void) { return (uint32_t)st_schema_main.nsteps; }

/* No version record: version 0 only in an environment with no database
 * at all (a fresh file; the first step writes the record with the
 * databases it creates, in one transaction). One that holds databases has
 * lost its record: taken for version 0, every step would run again over
 * the data — a damaged store migrated silently rather than refused. */
static int schema_absent(st_txn *t) {
  MDB_stat ms;
  int rc = mdb_stat(t->txn, 1 /* LMDB's main database: one entry per named one */, &ms);
  if (rc != 0) return st__err(rc);
  if (ms.ms_entries == 0) return 0;
  st__log(t->st, ST_LOG_ERROR,
          "%s holds %zu database(s) but no schema version record: it is damaged, not new; refusing to migrate or "
          "open it. Restore the latest backup (mcpgate backup) or ask for help; `mcpgate store check` says more",
          t->st->schema->name, (size_t)ms.ms_entries);
  return ST_ECORRUPT;
}

int st__schema_read(st_txn *t, uint32_t *out) {
  st_val v;
  int rc;
  *out = 0;
  if (!t->st->dbi_ok[ST__DB_SCHEMA_META]) return schema_absent(t); /* fresh file: version 0 */
  rc = st_get(t, ST__DB_SCHEMA_META, SCHEMA_KEY, strlen(SCHEMA_KEY), &v);
  if (rc == ST_ENOTFOUND) return schema_absent(t);
  if (rc < 0) return rc;
  if (v.len != 4) return ST_ECORRUPT;
  const uint8_t *p = v.data;
  *out = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
  return 0;
}

static int schema_write(st_txn *t, uint32_t version) {
  uint8_t b[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16), (uint8_t)(version >> 8),
                  (uint8_t)version};
  return st_put(t, ST__DB_SCHEMA_META, SCHEMA_KEY, strlen(SCHEMA_KEY), b, sizeof b, 0);
}

/* The upgrade named `name` among the opener's, or NULL. */
static const st_upgrade *upgrade_of(const st_upgrade *ups, const char *name) {
  for (; ups && ups->name; ups++)
    if (!strcmp(ups->name, name)) return ups;
  return NULL;
}

/* Runs step v (0-based) in t: its own work, then the module's upgrade.
 * fresh: this open created the store (version 0 at start): no data. */
static int run_step(st_txn *t, const st_migration *m, const st_upgrade *ups, bool fresh) {
  int rc = m->fn ? m->fn(t) : 0;
  if (rc < 0 || !m->upgrade) return rc;
  const st_upgrade *u = upgrade_of(ups, m->upgrade);
  if (u) return u->fn(t);
  if (fresh) return 0;
  st__log(t->st, ST_LOG_ERROR, "migration \"%s\" needs the upgrade %s, which this program does not give", m->what,
          m->upgrade);
  return ST_EINVAL;
}

int st__migrate(st_store *st, uint32_t target, const st_upgrade *upgrades) {
  const st_schema *sc = st->schema;
  const uint32_t latest = (uint32_t)sc->nsteps;
  int first = 1;
  bool fresh = false;
  for (;;) {
    MDB_txn *txn = NULL;
    st_txn t;
    uint32_t v;
    /* read_only: a read transaction, committed (its handles stay valid);
     * no_migrate (implied) refuses before anything would be written */
    int rc = mdb_txn_begin(st->env, NULL, st->read_only ? MDB_RDONLY : 0, &txn);
    if (rc != 0) return st__err(rc);
    st__txn_init(&t, st, txn, !st->read_only);
    t.migrating = 1;
    if ((rc = st__db_open_all(st, txn, 0)) < 0 || (rc = st__schema_read(&t, &v)) < 0) goto fail;
    if (first && v > latest) {
      st__log(st, ST_LOG_ERROR, "%s schema version %u is newer than this binary supports (%u); upgrade mcpgate",
             sc->name, v, latest);
      rc = ST_ETOONEW;
      goto fail;
    }
    if (first) fresh = v == 0;
    first = 0;
    if (v < target && st->no_migrate) {
      /* a reading command (store check, audit export) beside a server that
       * may be an older mcpgate: its store is not migrated under it */
      st__log(st, ST_LOG_ERROR,
              "%s schema %u is older than this binary's (%u): this command does not migrate it; start `mcpgate "
              "serve` with this binary to migrate it (take `mcpgate backup` first), then run it again",
              sc->name, v, latest);
      rc = ST_ETOOOLD;
      goto fail;
    }
    if (v >= target) {
      if (v == latest && sc->sync && !st->no_migrate) {
        /* in a nested txn: a sync that cannot finish (a full map) is
         * undone and logged, the open goes on as before the sync existed
         * (st_check reports it; the next open tries again) */
        MDB_txn *sub = NULL;
        st_txn s;
        int src = mdb_txn_begin(st->env, txn, 0, &sub);
        if (src == 0) {
          st__txn_init(&s, st, sub, 1);
          s.migrating = 1;
          src = sc->sync(&s);
          if (src >= 0 && s.poison) src = s.poison;
          st__txn_close_cursors(&s);
          st__actions_discard(s.act_head); /* (a sync queues none) */
          if (src < 0) mdb_txn_abort(sub);
          else if ((src = mdb_txn_commit(sub)) != 0) src = st__err(src); /* (LMDB ended it) */
        } else {
          src = st__err(src);
        }
        if (src < 0)
          st__log(st, ST_LOG_ERROR, "%s: data this binary keys differently was not brought up to date (%s); the "
                  "store opens as it was (`mcpgate store check` says what differs)", sc->name, st_strerror(src));
      }
      /* Commit (not abort) so the db handles opened here stay valid. */
      if ((rc = mdb_txn_commit(txn)) != 0) {
        st__actions_discard(t.act_head);
        return st__err(rc);
      }
      st__actions_run(t.act_head);
      st->schema_version = v;
      return 0;
    }
    st__log(st, ST_LOG_INFO, "migrating %s schema %u -> %u: %s", sc->name, v, v + 1,
           sc->steps[v].what);
    if (!t.st->dbi_ok[ST__DB_SCHEMA_META] && v == 0 && (rc = st_db_create(&t, ST__DB_SCHEMA_META)) < 0) goto fail;
    if ((rc = run_step(&t, &sc->steps[v], upgrades, fresh)) < 0 || (rc = schema_write(&t, v + 1)) < 0) goto fail;
    if (t.poison) { rc = t.poison; goto fail; }
    st__txn_close_cursors(&t);
    if ((rc = mdb_txn_commit(txn)) != 0) {
      st__actions_discard(t.act_head);
      /* the main store's line is the one operators know: unchanged */
      st__log(st, ST_LOG_ERROR, "migration to %s%sschema %u failed to commit: %s", st__is_main(st) ? "" : sc->name,
              st__is_main(st) ? "" : " ", v + 1, mdb_strerror(rc));
      return st__err(rc);
    }
    st__actions_run(t.act_head);
    continue;
  fail:
    st__txn_close_cursors(&t);
    st__actions_discard(t.act_head);
    mdb_txn_abort(txn);
    if (rc != ST_ETOONEW && rc != ST_ETOOOLD)
      st__log(st, ST_LOG_ERROR, "%s migration failed: %s", sc->name, st_strerror(rc));
    return rc;
  }
}
