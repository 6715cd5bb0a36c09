/* store/env.c — an LMDB environment: opening one with its schema
 * (directory, master key — created only for a store that holds no sealed
 * secret —, reader check, migrations, named databases, writer start), closing, error mapping, the store's log callback (st__log:
 * the store never includes the gateway's logger), saying a data file is
 * damaged (st__damaged: an empty or short file, a page LMDB reports or
 * asserts on), stats, readiness, hot backup, and the small durable-file
 * helpers the key file and backup share. */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_testing.h"

#define ST__DEFAULT_MAP_SIZE ((size_t)8 << 30)
#define ST__DEFAULT_QUEUE_MAX 65536u

const double st_stats_bucket_le[ST_STATS_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  INFINITY};

const char *st_db_name(st_db db) {
  if ((int)db < 0 || (size_t)db >= st_schema_main.ndbs) return NULL;
  return st_schema_main.db_names[db];
}

int st__is_main(const st_store *st) { return st->schema == &st_schema_main; }

const char *st_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case ST_ENOTFOUND: return "not found";
  case ST_EEXIST: return "already exists";
  case ST_EINVAL: return "invalid argument";
  case ST_ENOMEM: return "out of memory";
  case ST_EMAPFULL: return "store map full (increase map_size)";
  case ST_ETXNFULL: return "transaction too large";
  case ST_ETOONEW: return "store schema is newer than this binary supports";
  case ST_EIO: return "store I/O error";
  case ST_ECORRUPT: return "store file corrupted or incompatible";
  case ST_ECRYPTO: return "sealed data failed authentication";
  case ST_ENOKEY: return "no master key loaded";
  case ST_ECANCELED: return "canceled";
  case ST_ECLOSED: return "store closed";
  case ST_EBUSY: return "store busy";
  case ST_EPERM: return "insecure file permissions";
  case ST_ETOOOLD: return "store schema is older than this binary (mcpgate serve migrates it)";
  case ST_EMASKED: return "a masked URL query value has no stored value to keep";
  default: break;
  }
  if (err <= ST_ERR_FIRST && err >= ST_ERR_LAST) return "unknown store error";
  return "job error (not a store code)";
}

int st__err(int rc) {
  switch (rc) {
  case 0: return 0;
  case MDB_NOTFOUND: return ST_ENOTFOUND;
  case MDB_KEYEXIST: return ST_EEXIST;
  case MDB_MAP_FULL: return ST_EMAPFULL;
  case MDB_TXN_FULL: return ST_ETXNFULL;
  case MDB_READERS_FULL: return ST_EBUSY;
  case MDB_PAGE_NOTFOUND:
  case MDB_CORRUPTED:
  case MDB_PANIC:
  case MDB_VERSION_MISMATCH:
  case MDB_INVALID:
  case MDB_INCOMPATIBLE:
  case MDB_CURSOR_FULL:
  case MDB_PAGE_FULL: return ST_ECORRUPT;
  case MDB_BAD_VALSIZE:
  case MDB_BAD_DBI:
  case MDB_BAD_TXN:
  case MDB_BAD_RSLOT:
  case MDB_DBS_FULL:
  case EINVAL: return ST_EINVAL;
  case ENOMEM: return ST_ENOMEM;
  default: return ST_EIO; /* errno values (EIO, ENOSPC, EACCES...) and MAP_RESIZED */
  }
}

int st__is_resource(int err) { return err == ST_EMAPFULL || err == ST_ETXNFULL; }

size_t st_max_key(const st_store *st) { return st->maxkey; }
uint32_t st_schema_version(const st_store *st) { return st->schema_version; }

void st__test_fail_commits(st_store *st, int n) { atomic_store(&st->test_fail_commits, n); }
int st__test_batch_fallbacks(st_store *st) { return atomic_load(&st->batch_fallbacks); }

/* ---- logging ------------------------------------------------------------ */

void st__log(const st_store *st, int level, const char *fmt, ...) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char msg[2048];
  va_list ap;
  if (level < ST_LOG_DEBUG) level = ST_LOG_DEBUG;
  if (level > ST_LOG_ERROR) level = ST_LOG_ERROR;
  if ((!st || !st->log) && level < ST_LOG_WARN) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (st && st->log) st->log(st->log_ctx, level, "store", msg);
  else fprintf(stderr, "mcpgate store: %s: %s\n", names[level], msg);
}

/* ---- a damaged file ------------------------------------------------------ */

void st__damaged(const st_store *st, const char *fmt, ...) {
  char detail[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  const char *name = st->schema->name;
  st__log(st, ST_LOG_ERROR,
          "the %s's LMDB file %s/data.mdb is damaged (%s): restore it from a backup (mcpgate backup writes one), "
          "or move it away to start a new, empty %s",
          name, st->dir, detail, name);
}

size_t st__file_bytes(const st_store *st) {
  mdb_filehandle_t fd;
  struct stat sb;
  if (!st || !st->env || mdb_env_get_fd(st->env, &fd) != 0 || fstat(fd, &sb) != 0 || sb.st_size < 0) return 0;
  return (size_t)sb.st_size;
}

/* LMDB checks a page's kind where it expects one (a leaf where its cursor
 * moves on) and calls abort() when it is wrong: the process ends whatever
 * this does. Say why first, in the log (any thread: st__log is
 * thread-safe); LMDB prints its own line and aborts after. */
static void on_mdb_assert(MDB_env *env, const char *msg) {
  const st_store *st = mdb_env_get_userctx(env);
  if (st) st__damaged(st, "LMDB stopped the process on one of its checks: %s", msg);
}

/* The meta page says how far the pages run; a file shorter than that (a
 * copy or restore cut short) makes LMDB read past its end, which the
 * kernel answers with SIGBUS. Checked before anything reads a page. */
static int check_file_length(st_store *st) {
  MDB_envinfo info;
  MDB_stat ms;
  size_t have = st__file_bytes(st);
  if (mdb_env_info(st->env, &info) != 0 || mdb_env_stat(st->env, &ms) != 0 || !have) return 0;
  uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
  if (have >= need) return 0;
  st__damaged(st, "it is shorter than its pages: %zu bytes, its last page ends at byte %llu; a copy or restore cut "
              "short?",
              have, (unsigned long long)need);
  return ST_ECORRUPT;
}

/* ---- small durable-file helpers ---------------------------------------- */

int st__fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ST_EIO;
  int rc = fsync(fd) == 0 ? 0 : ST_EIO;
  close(fd);
  return rc;
}

/* Directory part of path into buf ("." if none). */
static int parent_dir(const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    if (cap < 2) return ST_EINVAL;
    strcpy(buf, ".");
    return 0;
  }
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  if (n + 1 > cap) return ST_EINVAL;
  memcpy(buf, path, n);
  buf[n] = 0;
  return 0;
}

/* Write to "<path>.tmp", fsync, rename over path, fsync the directory: a
 * crash at any point leaves either the old file or the complete new one.
 * no_replace: link() instead of rename(), so an existing path (e.g. a key
 * file another process just created) is never clobbered: ST_EEXIST. */
int st__write_file_atomic(const char *path, const void *data, size_t n, int no_replace) {
  char tmp[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
  int fd = -1, rc;
  struct stat lsb;
  /* A symlink (a key kept on a secrets volume, linked from where the
   * config names it) is written through: the file it names is replaced,
   * in its own directory, and the link stays. Renamed over, the link
   * would become a regular file here, the volume would keep the old key,
   * and the next start with the link put back would refuse the store. */
  if (!no_replace && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode)) {
    if (!realpath(path, real)) return ST_EIO;
    path = real;
  }
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return ST_EINVAL;
  if ((rc = parent_dir(path, dir, sizeof dir)) < 0) return rc;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) { rc = ST_EIO; goto fail; }
  /* O_CREAT's mode is ignored for a pre-existing temp file: force 0600. */
  if (fchmod(fd, 0600) != 0) { rc = ST_EIO; goto fail; }
  const uint8_t *p = data;
  size_t left = n;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { rc = ST_EIO; goto fail; }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0) { rc = ST_EIO; goto fail; }
  if (close(fd) != 0) { fd = -1; rc = ST_EIO; goto fail; }
  fd = -1;
  if (no_replace) {
    if (link(tmp, path) != 0) { rc = errno == EEXIST ? ST_EEXIST : ST_EIO; goto fail; }
    unlink(tmp);
  } else if (rename(tmp, path) != 0) {
    rc = ST_EIO;
    goto fail;
  }
  return st__fsync_dir(dir);
fail:
  if (fd >= 0) close(fd);
  unlink(tmp);
  return rc;
}

/* ---- open / close ------------------------------------------------------ */

static int ensure_dir(st_store *st, const char *dir) {
  struct stat sb;
  if (mkdir(dir, 0700) == 0) return 0;
  if (errno != EEXIST) {
    st__log(st, ST_LOG_ERROR, "cannot create store directory %s: %s", dir,
           strerror(errno));
    return ST_EIO;
  }
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    st__log(st, ST_LOG_ERROR, "store path %s is not a directory", dir);
    return ST_EIO;
  }
  if (sb.st_mode & 077)
    st__log(st, ST_LOG_WARN, "store directory %s is accessible by group/others (mode %03o); chmod 700 it", dir,
           (unsigned)(sb.st_mode & 0777));
  return 0;
}

int st__db_open_all(st_store *st, MDB_txn *txn, int require_all) {
  for (size_t i = 0; i < st->schema->ndbs; i++) {
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn, st->schema->db_names[i], 0, &dbi);
    if (rc == MDB_NOTFOUND && !require_all) continue;
    if (rc == MDB_NOTFOUND) {
      st__log(st, ST_LOG_ERROR, "database '%s' is missing after migrations: add a migration step that creates it",
             st->schema->db_names[i]);
      return ST_ECORRUPT;
    }
    if (rc != 0) return st__err(rc);
    st->dbi[i] = dbi;
    st->dbi_ok[i] = 1;
  }
  return 0;
}

static void store_free(st_store *st, int sync_inited) {
  if (!st) return;
  if (st->writer_started) st__writer_stop(st);
  st__read_pool_drain(st);
  if (st->env) mdb_env_close(st->env);
  st__keys_wipe(st);
  if (sync_inited) {
    uv_mutex_destroy(&st->qmu);
    uv_cond_destroy(&st->qcond);
    uv_mutex_destroy(&st->smu);
    uv_rwlock_destroy(&st->kmu);
    uv_mutex_destroy(&st->rotmu);
    uv_mutex_destroy(&st->rmu);
    uv_mutex_destroy(&st->cutmu);
  }
  if (st->cutfd >= 0) close(st->cutfd);
  if (st->mcutfd >= 0) close(st->mcutfd);
  free(st->mcut);
  free(st->cut);
  free(st->cutidx);
  free(st->key_file);
  free(st->dir);
  free(st);
}

/* A schema the store can run: a metadata database 0, names for every
 * database, at least one step. */
static int schema_ok(const st_schema *sc) {
  if (!sc->db_names || sc->ndbs < 1 || sc->ndbs > ST_SCHEMA_DBS_MAX || !sc->steps || sc->nsteps < 1 ||
      sc->nsteps > UINT32_MAX)
    return 0;
  for (size_t i = 0; i < sc->ndbs; i++)
    if (!sc->db_names[i] || !sc->db_names[i][0]) return 0;
  return 1;
}

/* The reserve in pages (store.h): at most a quarter of the map, so a small
 * map still takes ordinary writes. */
static void reserve_init(st_store *st, size_t reserve) {
  MDB_envinfo info;
  MDB_stat ms;
  if (!reserve || mdb_env_info(st->env, &info) != 0 || mdb_env_stat(st->env, &ms) != 0 || !ms.ms_psize) return;
  size_t map_pages = info.me_mapsize / ms.ms_psize;
  size_t pages = (reserve + ms.ms_psize - 1) / ms.ms_psize;
  if (pages > map_pages / 4) {
    /* the caller says it, in its own terms (st_stats.map_reserve) */
    st__log(st, ST_LOG_DEBUG, "the store's reserve of %zu bytes is more than a quarter of its map; using %zu",
            reserve, map_pages / 4 * ms.ms_psize);
    pages = map_pages / 4;
  }
  if (!pages) return;
  st->reserve_pages = pages;
  st->limit_pages = map_pages - pages;
  st->full_pages = st->limit_pages - (pages / 8 ? pages / 8 : 1);
}

/* A master key is created only for a store that needs one made: the
 * first start. A store that already holds sealed secrets and finds no key
 * file was restored without its key, or is pointed at the wrong file (a
 * volume mounted elsewhere): a new key unseals none of them, and every
 * secret would fail at its first use. Refused, naming the file, and the
 * key just created is removed so the next start says the same. The data
 * directory's lock (serve) keeps another process from having read it.
 * A key file that is there is checked with key_check (st__keys_fit).
 * Both before the migrations: a migration may seal (11 and 12 seal URL
 * queries), and what it sealed under a key that is then removed, or that
 * is not the store's, could never be unsealed again — nor read in clear
 * any more, as the migration took it out of the record. */
static int keys_fit(st_store *st) {
  if (!st__is_main(st) || !st->nkeys || (!st->key_created && !st->key_check)) return 0;
  MDB_txn *txn;
  st_txn t;
  MDB_stat ms;
  int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) return st__err(rc);
  st__txn_init(&t, st, txn, 0);
  /* the handles opened here stay valid once it commits (as st__migrate's) */
  if ((rc = st__db_open_all(st, txn, 0)) < 0 || !st->dbi_ok[ST_DB_SECRETS]) goto out; /* a new store */
  if (!st->key_created) {
    rc = st__keys_fit(st, &t);
    goto out;
  }
  if ((rc = mdb_stat(txn, st->dbi[ST_DB_SECRETS], &ms)) != 0) {
    rc = st__err(rc);
    goto out;
  }
  if (ms.ms_entries == 0) goto out;
  st__log(st, ST_LOG_ERROR,
          "master key file %s is missing, but the store in %s holds %zu sealed secret(s), sealed under the key that "
          "was there: restore that file (or point master_key_file at it); a new key would unseal none of them, "
          "so none is kept",
          st->key_file, st->dir, (size_t)ms.ms_entries);
  if (unlink(st->key_file) != 0)
    st__log(st, ST_LOG_ERROR, "cannot remove the new master key file %s: %s; remove it by hand", st->key_file,
            strerror(errno));
  rc = ST_ENOKEY;
out:
  st__txn_close_cursors(&t);
  if (rc < 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  return (rc = mdb_txn_commit(txn)) != 0 ? st__err(rc) : 0;
}

int st__open_at(st_store **out, const st_options *opts, uint32_t target) {
  st_store *st = NULL;
  MDB_txn *txn = NULL;
  int rc, sync_inited = 0, opened = 0;
  if (!out) return ST_EINVAL;
  *out = NULL;
  if (!opts || !opts->dir || !opts->dir[0]) return ST_EINVAL;
  const st_schema *schema = opts->schema ? opts->schema : &st_schema_main;
  if (!schema_ok(schema) || target > schema->nsteps) return ST_EINVAL;
  st = calloc(1, sizeof *st);
  if (!st) return ST_ENOMEM;
  if (uv_mutex_init(&st->qmu) || uv_cond_init(&st->qcond) || uv_mutex_init(&st->smu) ||
      uv_rwlock_init(&st->kmu) || uv_mutex_init(&st->rotmu) || uv_mutex_init(&st->rmu) ||
      uv_mutex_init(&st->cutmu)) {
    /* Partially initialised primitives cannot be told apart; leaking them
     * on this practically impossible path beats destroying garbage. */
    free(st);
    return ST_ENOMEM;
  }
  sync_inited = 1;
  st->cutfd = -1;
  st->mcutfd = -1;
  st->schema = schema;
  st->log = opts->log;
  st->log_ctx = opts->log_ctx;
  st->map_size = opts->map_size ? opts->map_size : ST__DEFAULT_MAP_SIZE;
  st->qmax = opts->queue_max ? opts->queue_max : ST__DEFAULT_QUEUE_MAX;
  st->writer_nice = opts->writer_nice;
  st->read_only = opts->read_only;
  st->no_migrate = opts->no_migrate || opts->read_only;
  st->key_check = opts->key_check;
  st->dir = strdup(opts->dir);
  if (!st->dir) { rc = ST_ENOMEM; goto fail; }
  if ((rc = ensure_dir(st, opts->dir)) < 0) goto fail;
  /* An empty data file is no store: a copy or restore that failed, not a
   * first start (LMDB creates the file with its meta pages at once).
   * Opened, it would silently become a new, empty store. */
  char dfile[4200];
  struct stat dsb;
  if (snprintf(dfile, sizeof dfile, "%s/data.mdb", opts->dir) < (int)sizeof dfile && stat(dfile, &dsb) == 0 &&
      S_ISREG(dsb.st_mode) && dsb.st_size == 0) {
    st__log(st, ST_LOG_ERROR,
            "store file %s is empty (0 bytes): a failed copy or restore? Restore it from a backup, or remove it "
            "to start a new, empty store",
            dfile);
    rc = ST_ECORRUPT;
    goto fail;
  }
  /* The key is checked before the env is touched so a bad key file stops
   * startup before any migration writes (and after the empty-file check:
   * no key is made for a store that is refused). */
  if (opts->master_key_file && (rc = st__keys_load(st, opts->master_key_file)) < 0) goto fail;

  if ((rc = mdb_env_create(&st->env)) != 0) { st->env = NULL; rc = st__err(rc); goto fail; }
  mdb_env_set_userctx(st->env, st);
  mdb_env_set_assert(st->env, on_mdb_assert);
  /* A little headroom over the table so an older binary's extra handle
   * needs (none today) never hit MDB_DBS_FULL. */
  if ((rc = mdb_env_set_maxdbs(st->env, (MDB_dbi)schema->ndbs + 4)) != 0 ||
      (rc = mdb_env_set_mapsize(st->env, st->map_size)) != 0 ||
      (opts->max_readers && (rc = mdb_env_set_maxreaders(st->env, opts->max_readers)) != 0)) {
    rc = st__err(rc);
    goto fail;
  }
  /* MDB_NOTLS: read txns are not bound to the thread that began them and
   * reader slots are per-txn, which is what a libuv loop doing short reads
   * (and a writer thread) needs. */
  if ((rc = mdb_env_open(st->env, opts->dir, MDB_NOTLS | (st->read_only ? MDB_RDONLY : 0), 0600)) != 0) {
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED) {
      st__damaged(st, "%s", mdb_strerror(rc));
    } else {
      st__log(st, ST_LOG_ERROR, "cannot open store in %s: %s", opts->dir, mdb_strerror(rc));
    }
    rc = st__err(rc);
    goto fail;
  }
  if ((rc = check_file_length(st)) < 0) goto fail;
  opened = 1;
  st->maxkey = (size_t)mdb_env_get_maxkeysize(st->env);
  if (st->maxkey > ST__KEYBUF) st->maxkey = ST__KEYBUF; /* never with stock LMDB (511) */

  int dead = 0;
  if ((rc = mdb_reader_check(st->env, &dead)) != 0) { rc = st__err(rc); goto fail; }
  if (dead > 0)
    st__log(st, ST_LOG_INFO, "cleared %d stale reader slot(s) left by dead processes",
           dead);

  if ((rc = keys_fit(st)) < 0) goto fail;
  if ((rc = st__migrate(st, target, opts->upgrades)) < 0) goto fail;

  /* Final handle set, in its own committed txn so the handles are valid
   * for every later txn. With the full schema every table entry must exist. */
  if ((rc = mdb_txn_begin(st->env, NULL, st->read_only ? MDB_RDONLY : 0, &txn)) != 0) { rc = st__err(rc); goto fail; }
  if ((rc = st__db_open_all(st, txn, target == schema->nsteps)) < 0) goto fail;
  rc = mdb_txn_commit(txn);
  txn = NULL;
  if (rc != 0) { rc = st__err(rc); goto fail; }

  reserve_init(st, opts->reserve);
  if (schema == &st_schema_main) { /* users and memberships cut in memory before a restart */
    st__dir_cut_load(st);
    st__dir_mcut_load(st);
  }
  if (!st->read_only && (rc = st__writer_start(st)) < 0) goto fail;
  *out = st;
  return 0;
fail:
  if (txn) mdb_txn_abort(txn);
  /* a page LMDB could not read while migrating or opening the databases */
  if (opened && rc == ST_ECORRUPT) st__damaged(st, "LMDB reported a damaged page while opening it");
  store_free(st, sync_inited);
  return rc;
}

int st_open(st_store **out, const st_options *opts) {
  const st_schema *sc = opts && opts->schema ? opts->schema : &st_schema_main;
  return st__open_at(out, opts, (uint32_t)sc->nsteps);
}

void st_close(st_store *st) {
  if (!st) return;
  if (st__on_writer(st)) {
    /* Joining ourselves would deadlock and freeing st under the running
     * batch would be worse: refuse loudly and leave the store open. */
    st__log(st, ST_LOG_ERROR, "st_close called on the writer thread; ignored");
    return;
  }
  atomic_store(&st->closed, 1);
  store_free(st, 1);
}

/* ---- stats and readiness ------------------------------------------------ */

void st_stats_get(st_store *st, st_stats *out) {
  uv_mutex_lock(&st->smu);
  *out = st->stats;
  uv_mutex_unlock(&st->smu);
  uv_mutex_lock(&st->qmu);
  out->queue_depth = st->qlen;
  uv_mutex_unlock(&st->qmu);
  MDB_envinfo info;
  MDB_stat ms;
  out->map_size = st->map_size;
  out->map_used = 0;
  if (mdb_env_info(st->env, &info) == 0 && mdb_env_stat(st->env, &ms) == 0) {
    out->map_size = info.me_mapsize;
    out->map_used = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    out->map_reserve = (uint64_t)st->reserve_pages * ms.ms_psize;
    st_txn *t;
    if (st_read_begin(st, &t) == 0) {
      out->map_live = (uint64_t)st__pages_used(st, t->txn) * ms.ms_psize;
      st_txn_end(t);
    }
  }
}

int st_ready(st_store *st) {
  if (!st || atomic_load(&st->closed)) return ST_ECLOSED;
  if (!atomic_load(&st->writer_alive)) return ST_EIO;
  return atomic_load(&st->health);
}

const char *st_ready_reason(st_store *st) {
  if (!st || atomic_load(&st->closed)) return "store closed";
  if (!atomic_load(&st->writer_alive)) return "store writer thread not running";
  switch (atomic_load(&st->health)) {
  case 0: return "ok";
  case ST_EMAPFULL: return "store map full: writes are failing (increase map_size)";
  case ST_ECORRUPT: return "store reported corruption on the last write";
  case ST_ETXNFULL: return "last write transaction too large";
  default: return "last store write failed with an I/O error";
  }
}

/* ---- backup ------------------------------------------------------------- */

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *e;
  int empty = 1;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) { empty = 0; break; }
  }
  closedir(d);
  return empty;
}

/* Copies src/name to dest/name (0600, fsynced) when src has one: a small
 * text file of the store beside data.mdb. */
static int copy_small(const st_store *st, const char *src, const char *dest, const char *name) {
  char from[PATH_MAX], to[PATH_MAX];
  if (snprintf(from, sizeof from, "%s/%s", src, name) >= (int)sizeof from ||
      snprintf(to, sizeof to, "%s/%s", dest, name) >= (int)sizeof to)
    return ST_EINVAL;
  int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1, rc = 0;
  if (in < 0) return errno == ENOENT ? 0 : ST_EIO;
  if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
    rc = errno == EEXIST ? ST_EEXIST : ST_EIO;
    goto out;
  }
  char buf[65536];
  for (;;) {
    ssize_t r = read(in, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { rc = ST_EIO; goto out; }
    if (r == 0) break;
    for (ssize_t o = 0; o < r;) {
      ssize_t w = write(out, buf + o, (size_t)(r - o));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) { rc = ST_EIO; goto out; }
      o += w;
    }
  }
  if (fsync(out) != 0) rc = ST_EIO;
out:
  if (rc) st__log(st, ST_LOG_ERROR, "backup to %s failed: cannot copy %s", dest, from);
  if (out >= 0) close(out);
  close(in);
  return rc;
}

/* The copy itself: a compacted snapshot of env into dest (st_backup's
 * contract) and the marks' logs of src (its directory) beside it; st
 * names the store in log lines.
 * The marks' logs hold users and memberships cut in memory because their
 * removal could not be written (a full store: exactly when an operator
 * backs the store up to move it to a larger volume): without them the
 * restored copy hands those users their access back. They are copied
 * BEFORE the snapshot: a mark older than the snapshot whose write has
 * landed since only cuts what the snapshot has cut already, while one
 * read after it could miss a cut the snapshot does not hold. */
static int copy_env(const st_store *st, MDB_env *env, const char *src, const char *dest) {
  char file[PATH_MAX], parent[PATH_MAX];
  int rc, fd;
  if (!dest || !dest[0]) return ST_EINVAL;
  if (snprintf(file, sizeof file, "%s/data.mdb", dest) >= (int)sizeof file) return ST_EINVAL;
  if ((rc = parent_dir(dest, parent, sizeof parent)) < 0) return rc;
  if (mkdir(dest, 0700) != 0) {
    if (errno != EEXIST) return ST_EIO;
    if (!dir_is_empty(dest)) {
      st__log(st, ST_LOG_ERROR, "backup destination %s exists and is not empty", dest);
      return ST_EEXIST;
    }
    /* a directory someone else may write to: they could replace the copy
     * with a store of theirs before it is restored (found by the
     * operations review). Ours or root's, and not every user's. */
    struct stat sb;
    if (stat(dest, &sb) != 0 || !S_ISDIR(sb.st_mode)) return ST_EIO;
    if ((sb.st_uid != geteuid() && sb.st_uid != 0) || (sb.st_mode & S_IWOTH)) {
      st__log(st, ST_LOG_ERROR,
              "backup destination %s %s: they could replace the copy before it is restored; give a directory of "
              "yours (or a new path: it is created 0700)",
              dest, (sb.st_mode & S_IWOTH) ? "is writable by every user" : "belongs to another user");
      return ST_EPERM;
    }
  }
  if ((rc = copy_small(st, src, dest, ST__CUT_LOG)) < 0 || (rc = copy_small(st, src, dest, ST__MCUT_LOG)) < 0)
    return rc;
  /* The copy holds what the data directory keeps 0600 (the directory, the
   * sealed secrets, the audit log): created 0600 here, never with LMDB's
   * mdb_env_copy2 mode (0666 less the umask), whatever DEST's own mode. */
  if ((fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
    st__log(st, ST_LOG_ERROR, "backup to %s failed: cannot create %s", dest, file);
    return errno == EEXIST ? ST_EEXIST : ST_EIO;
  }
  /* MDB_CP_COMPACT walks a read snapshot and writes only live pages:
   * consistent while the writer keeps committing, and smaller. */
  if ((rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT)) != 0) {
    close(fd);
    st__log(st, ST_LOG_ERROR, "backup to %s failed: %s", dest, mdb_strerror(rc));
    return st__err(rc);
  }
  /* LMDB's copy does not fsync; a backup that a crash can truncate is not
   * a backup. */
  rc = fsync(fd) == 0 ? 0 : ST_EIO;
  close(fd);
  if (rc == 0) rc = st__fsync_dir(dest);
  if (rc == 0) rc = st__fsync_dir(parent);
  if (rc == 0)
    st__log(st, ST_LOG_INFO, "backup written to %s; the master key is not in it: back it up separately", dest);
  return rc;
}

int st_backup(st_store *st, const char *dest) {
  if (!st) return ST_EINVAL;
  return copy_env(st, st->env, st->dir, dest);
}

/* LMDB creates its lock file when it is missing (a restored store has
 * none), read-only open or not. Root taking a backup of the service
 * user's store would leave a root-owned lock.mdb that the server, started
 * as that user, cannot open (found by review). Made first, the
 * directory's owner's: LMDB then opens the file that is there. */
static int lock_file_for_owner(const st_store *st, const char *dir) {
  char path[PATH_MAX];
  struct stat sb;
  if (geteuid() != 0 || stat(dir, &sb) != 0 || sb.st_uid == 0) return 0;
  if (snprintf(path, sizeof path, "%s/lock.mdb", dir) >= (int)sizeof path) return ST_EINVAL;
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return 0; /* there already (or it cannot be made: a read-only filesystem): LMDB's to open */
  int rc = fchown(fd, sb.st_uid, sb.st_gid) == 0 ? 0 : ST_EIO;
  close(fd);
  if (rc) {
    unlink(path);
    st__log(st, ST_LOG_ERROR, "cannot give %s to the store's owner (uid %u): %s", path, (unsigned)sb.st_uid,
            strerror(errno));
  }
  return rc;
}

int st_backup_dir(const st_options *opts, const char *dest) {
  if (!opts || !opts->dir || !opts->dir[0] || !dest || !dest[0]) return ST_EINVAL;
  /* only what st__log reads: the copy opens no store of its own */
  st_store *st = calloc(1, sizeof *st);
  if (!st) return ST_ENOMEM;
  st->log = opts->log;
  st->log_ctx = opts->log_ctx;
  MDB_env *env = NULL;
  char dfile[PATH_MAX];
  struct stat dsb;
  int rc;
  if (snprintf(dfile, sizeof dfile, "%s/data.mdb", opts->dir) >= (int)sizeof dfile) {
    rc = ST_EINVAL;
  } else if (stat(dfile, &dsb) != 0 || !S_ISREG(dsb.st_mode)) {
    st__log(st, ST_LOG_ERROR, "no store file %s to back up", dfile);
    rc = ST_ENOTFOUND;
  } else if (dsb.st_size == 0) {
    st__log(st, ST_LOG_ERROR, "store file %s is empty (0 bytes): nothing to back up", dfile);
    rc = ST_ECORRUPT;
  } else if ((rc = lock_file_for_owner(st, opts->dir)) < 0) {
    /* said */
  } else if ((rc = mdb_env_create(&env)) != 0) {
    env = NULL;
    rc = st__err(rc);
  } else if ((rc = mdb_env_open(env, opts->dir, MDB_RDONLY | MDB_NOTLS, 0600)) != 0) {
    /* read-only: no migration, no writer, no file of ours created — the
     * store is copied as it is, whichever mcpgate is serving it */
    st__log(st, ST_LOG_ERROR, "cannot open store in %s: %s", opts->dir, mdb_strerror(rc));
    rc = st__err(rc);
  } else {
    /* a file shorter than its pages (a copy cut short) ended the copy in
     * SIGBUS half-way, leaving a partial data.mdb in DEST: refused first */
    st->env = env;
    st->dir = (char *)opts->dir;
    st->schema = opts->schema ? opts->schema : &st_schema_main;
    if ((rc = check_file_length(st)) == 0) rc = copy_env(st, env, opts->dir, dest);
  }
  if (env) mdb_env_close(env);
  free(st);
  return rc;
}
