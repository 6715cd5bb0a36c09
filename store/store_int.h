/* store/store_int.h — private to store/: the layout of st_store (one
 * environment and its schema), st_txn, jobs and ports, and the st__
 * helpers the store's .c files share. Nothing
 * outside store/ includes this (it pulls in lmdb.h). */
#ifndef MCPGATE_STORE_STORE_INT_H
#define MCPGATE_STORE_STORE_INT_H
#include <lmdb.h>
#include <stdatomic.h>
#include <uv.h>
#include "store/store.h"
#include "store/dir.h"

#define ST__KEY_LEN 32       /* AES-256 */
#define ST__KEYS_MAX 64      /* lines in a master key file */
#define ST__KEYBUF 512       /* >= LMDB's max key size (511) */

/* A post-commit action registered with st_txn_after_commit. */
typedef struct st__action {
  void (*fn)(void *arg);
  void (*discard)(void *arg);
  void *arg;
  struct st__action *next;
} st__action;

/* An open cursor; listed on its txn so the txn's end can close leftovers. */
struct st_cursor {
  st_txn *txn;
  st_db db;
  MDB_cursor *mc;
  uint8_t prefix[ST__KEYBUF]; /* copied: the caller's buffer may go away */
  size_t plen;
  uint8_t start[ST__KEYBUF];  /* first key to visit after a seek */
  size_t slen;
  int state;           /* 0 fresh, 1 seeked (next does SET_RANGE start), 2 iterating, 3 done */
  struct st_cursor *next_open, *prev_open;
};

/* A transaction: a read snapshot (malloc'd by st_read_begin) or a job's
 * write txn (on the writer's stack: the batch's, or a child of it) or a
 * migration txn. */
struct st_txn {
  st_store *st;
  MDB_txn *txn;
  int write;
  int poison;          /* first fatal LMDB error (ST_E*): the txn must abort */
  int migrating;       /* a migration step's txn: st_db_create allowed */
  int wrote;           /* st_put was called: the job writes (the reserve's mark applies) */
  int use_reserve;     /* st_txn_use_reserve: the job takes access away */
  int ordinary;        /* st_txn_ordinary: the job writes ordinary data too: never the reserve */
  uint64_t cutgen;     /* st->cutgen when the txn began: part of st_txn_snapshot */
  st__action *act_head, *act_tail;
  struct st_cursor *cursors;
};

typedef struct st__sync st__sync;

/* One submitted job; also its completion record on the port's queue. */
typedef struct st__job {
  st_job_fn fn;
  st_done_fn done;
  void *arg;
  st_port *port;       /* holds one port reference while the job lives */
  st__sync *sync;      /* st_write_sync waiter, or NULL */
  int status;
  int poison;          /* fatal LMDB error (ST_E*) of its last run, 0 if none */
  st__action *act_head, *act_tail;
  uint64_t gate_state[2]; /* the port's gate's, for this job */
  struct st__job *next;
} st__job;

struct st_port {
  uv_async_t async;    /* async.data == this */
  uv_mutex_t mu;       /* guards head/tail/refs/closed against the writer */
  st__job *head, *tail;
  st__job *parked, *parked_tail; /* delivered, held by the gate (loop thread only) */
  unsigned refs;       /* 1 for the open handle + 1 per job in flight */
  int closed;
  size_t pending;      /* jobs submitted, done not yet delivered (loop thread reads) */
  void (*close_cb)(void *arg);
  void *close_arg;
  st_gate_fn gate;     /* loop thread: before each done callback */
  st_stamp_fn stamp;   /* loop thread: as each job arrives */
  void *gate_arg;
};

typedef struct st__hook {
  int kind;
  st_hook_fn fn;
  void *ctx;
} st__hook;

typedef struct st__purge {
  const char *name;
  st_purge_fn fn;          /* or: */
  st_purge_ctx_fn fn_ctx;  /* with ctx */
  void *ctx;
} st__purge;

typedef struct st__check {
  st_check_fn fn;
  void *ctx;
} st__check;

typedef struct st__key {
  uint32_t id;
  uint8_t key[ST__KEY_LEN];
} st__key;

#define ST__RPOOL_MAX 16


struct st_store {
  MDB_env *env;
  int writer_nice; /* st_options.writer_nice */
  bool no_migrate; /* st_options.no_migrate (or read_only) */
  bool read_only;  /* st_options.read_only: MDB_RDONLY, no writer, no file made */
  const st_schema *schema;     /* this environment's databases and migrations */
  MDB_dbi dbi[ST_SCHEMA_DBS_MAX];
  int dbi_ok[ST_SCHEMA_DBS_MAX];
  size_t maxkey;
  size_t map_size;
  /* the reserve (st_txn_use_reserve), in pages; 0: none. Ordinary writes may
   * bring the pages in use up to limit_pages; at full_pages and above the
   * store counts as full (store.h) */
  size_t reserve_pages, limit_pages, full_pages;
  uint32_t schema_version;
  char *dir;
  st_log_fn log;               /* st_options.log (may be NULL) */
  void *log_ctx;

  /* read transactions kept reset for reuse (txn.c): renewing one costs a
   * fraction of mdb_txn_begin and allocates nothing */
  uv_mutex_t rmu;
  st_txn *rpool[ST__RPOOL_MAX];
  size_t nrpool;

  /* writer queue */
  uv_thread_t writer;
  int writer_started;
  uv_mutex_t qmu;
  uv_cond_t qcond;
  st__job *qhead, *qtail;
  st__job *bhead, *btail;      /* the second lane (st_submit_bulk) */
  size_t qlen, qmax;           /* qlen: both lanes */
  int stopping;                /* under qmu */
  atomic_int writer_alive;
  atomic_int serving;          /* set by the first st_submit: hook table frozen */
  atomic_int closed;

  st__hook hooks[ST_HOOKS_MAX];
  size_t nhooks;
  st__check checks[ST_CHECKS_MAX];
  size_t nchecks;
  st__purge purges[ST_PURGES_MAX]; /* read by the writer without locks: frozen like hooks */
  size_t npurges;

  /* stats: written by the writer once per batch, read by /metrics */
  uv_mutex_t smu;
  st_stats stats;
  atomic_int health;           /* 0 or the ST_E* making st_ready fail */

  /* sealing keys: read by any thread, replaced only by rotation */
  uv_rwlock_t kmu;
  st__key keys[ST__KEYS_MAX];
  size_t nkeys;                /* 0: no master key */
  char *key_file;
  int key_created;             /* st_open created key_file: a first start (env.c checks) */
  int key_check;               /* st_options.key_check */
  uv_mutex_t rotmu;            /* one rotation at a time */

  atomic_int test_fail_commits; /* unit tests: fail the next N batch commits */
  atomic_int batch_fallbacks;   /* batches whose jobs ran again in child txns after one failed (writer.c) */
  int test_rerun;               /* MCPGATE_TEST_JOB_RERUN: every batch runs once aborted first (writer thread only) */

  /* users whose removal of access could not be written (dir.c,
   * st_dir_user_cut_unwritten): inactive to st_dir_user_active/usable
   * until the IdP's next word on their "active" commits (dir.h). ncut
   * lets the usual empty set cost one atomic load; every change bumps
   * cutgen, which st_txn_snapshot includes (caches keyed on it miss) */
  uv_mutex_t cutmu;
  struct st__cut *cut;         /* marks and per-tenant counters, dense */
  size_t cutcap;
  uint32_t *cutidx;            /* their hash index (dir.c) */
  size_t cutidxcap;
  atomic_size_t ncut;          /* entries in cut, counters included */
  atomic_size_t nusers;        /* users marked */
  int cutfd;                   /* <dir>/unwritten-cuts, appended (main store only; -1: none) */
  size_t cutlines;             /* lines in it */
  atomic_uint_fast64_t cutgen;
  st_dir_cut_fn cutfn[4];      /* st_dir_hook_cut_unwritten: frozen like hooks */
  void *cutctx[4];
  size_t ncutfn;

  /* memberships whose removal could not be written (dir_mcut.c,
   * st_dir_membership_cut_unwritten): st_dir_user_groups leaves those
   * groups out; sorted, under cutmu; every change bumps cutgen too */
  struct st__mcut *mcut;
  size_t mcutcap;
  atomic_size_t nmcut;
  int mcutfd;                  /* <dir>/unwritten-memberships (main store only; -1: none) */
  size_t mcutlines;
  st_dir_mcut_fn mcutfn[4];    /* st_dir_hook_membership_cut: frozen like hooks */
  void *mcutctx[4];
  size_t nmcutfn;
};

/* Formats one line and hands it to st->log (module "store"), or, with no
 * callback, writes warn/error as a plain stderr line. st may be NULL (no
 * callback then). Never pass secrets. */
void st__log(const st_store *st, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Says, at error level, that the environment's data.mdb is damaged (the
 * detail from fmt) and what to do: restore it from a backup, or move it
 * away for a new, empty one. */
void st__damaged(const st_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The size of the environment's data file now (0 when unknown). */
size_t st__file_bytes(const st_store *st);

/* LMDB / errno code → ST_E*. */
int st__err(int mdb_rc);
/* 1 if an ST_E* means the job ran out of map or txn space. */
int st__is_resource(int err);

/* Initialises t as a transaction of st over an MDB txn. */
void st__txn_init(st_txn *t, st_store *st, MDB_txn *txn, int write);
/* dir.c, from st_emit: a committed deactivation, reactivation or deletion
 * of a user ends an in-memory cut of them (st_dir_user_cut_end). 0 or
 * ST_ENOMEM. */
int st__dir_cut_settle(st_txn *t, int kind, const void *event);
/* dir_mcut.c, from st_emit: a committed membership change, group or user
 * deletion, or the tenant's deletion ends the in-memory cuts of the
 * memberships it settles. 0 or ST_ENOMEM. */
int st__dir_mcut_settle(st_txn *t, int kind, const void *event);
/* dir.c: store migration 13, the userName and displayName index keys
 * folded by Unicode (store/text.h) where they were by ASCII. */
int st__dir_refold(st_txn *t);
/* dir.c: st_schema_main's sync (store.h): the directory's userName and
 * displayName keys folded by this binary's Unicode table; when the store
 * records another version (or none: written before it was recorded),
 * every key that differs is rewritten and the version recorded. */
int st__dir_fold_sync(st_txn *t);
/* dir.c, for st__check_main: the folding version the store records in
 * *out (NUL-terminated; "" when none), 0 or ST_E*. */
int st__dir_fold_version(st_txn *t, char out[32]);
/* Rewrites <dir>/name (a marks log, dir.c and dir_mcut.c) as buf (tmp +
 * rename) and reopens it for appending into *fd (closing the old one). 0,
 * or -1 (the old file, still open, says the same). Under cutmu. */
int st__marks_file_replace(st_store *st, const char *name, const char *buf, size_t len, int *fd);
/* Reads <dir>/unwritten-memberships into the marks and keeps it open for
 * appending (as st__dir_cut_load). */
void st__dir_mcut_load(st_store *st);
/* Removes from gids (a JSON array of group ids) the groups whose
 * membership of uid in tenant is cut in memory. 0 or ST_ENOMEM. */
int st__dir_mcut_filter(st_store *st, const char *tenant, const char *uid, json_t *gids);
/* Reads <dir>/unwritten-cuts (the marks the last process held) into the
 * marks and keeps it open for appending; logs what it found. Best effort:
 * a file that cannot be read or written is logged, never fatal. */
void st__dir_cut_load(st_store *st);
/* Aborts the reset read transactions kept for reuse (before the env closes). */
void st__read_pool_drain(st_store *st);
/* Closes leftover cursors of t (logging them). Before commit/abort. */
void st__txn_close_cursors(st_txn *t);
/* Runs (fn) or discards (discard) an action list and frees it. */
void st__actions_run(st__action *head);
void st__actions_discard(st__action *head);

/* Pages in use by every tree of the environment as txn sees it (the two
 * meta pages, the free and main databases, every database of the schema). */
size_t st__pages_used(st_store *st, MDB_txn *txn);

/* Opens every db of st's schema that exists (require_all = 0), or fails
 * if one is missing (require_all = 1). */
int st__db_open_all(st_store *st, MDB_txn *txn, int require_all);
/* The database holding "schema_version" in every schema. */
#define ST__DB_SCHEMA_META ((st_db)0)
/* 1 if st was opened with the main schema (sealed secrets, tenants). */
int st__is_main(const st_store *st);

/* Migrations (migrate.c): brings the store from its version up to target
 * (each step + version bump in one write txn). */
int st__migrate(st_store *st, uint32_t target, const st_upgrade *upgrades);
int st__schema_read(st_txn *txn, uint32_t *out);

/* Writer (writer.c). */
int st__writer_start(st_store *st);
void st__writer_stop(st_store *st);
/* 1 if the calling thread is st's writer. */
int st__on_writer(st_store *st);

/* The marks' logs beside data.mdb (dir.c, dir_mcut.c): users and
 * memberships cut in memory whose removal could not be written. A backup
 * copies them with data.mdb (env.c). */
#define ST__CUT_LOG "unwritten-cuts"
#define ST__MCUT_LOG "unwritten-memberships"

/* Keys (seal.c). */
int st__keys_load(st_store *st, const char *path);
void st__keys_wipe(st_store *st);
int st__secret_key_parse(const void *k, size_t klen, char *tenant, char *kind, char *owner);
int st__check_secrets(st_store *st, st_txn *txn, st_check_report_fn report, void *ctx);
/* Whether the loaded key file is the store's (st_options.key_check): every
 * key id the sealed secrets carry is in it and opens them (up to a few
 * blobs of each id are tried, to the first that unseals). 0 when it fits,
 * when no key is loaded or there is no secrets database yet; ST_ECRYPTO,
 * logged with the file, the key id and what to do, when a key id's secrets
 * do not unseal (another deployment's key file, a damaged one, a backup
 * from before a rotation beside the rotated file). A lone blob that does
 * not, beside others that do, is a damaged blob: warned, not refused.
 * Reads every secret once, in txn. */
int st__keys_fit(st_store *st, st_txn *txn);

/* Durable small-file write: temp file 0600, fsync, rename (or link when
 * no_replace, ST_EEXIST if path exists), fsync dir. */
int st__write_file_atomic(const char *path, const void *data, size_t n, int no_replace);
/* fsync a directory (after rename/create inside it). */
int st__fsync_dir(const char *dir);

/* store/tenant.c, for st_check. */
int st__check_tenant_uids(st_txn *txn, st_check_report_fn report, void *ctx);
/* check.c: the main schema's own checks (secrets, tenant uids). */
int st__check_main(st_txn *txn, st_check_report_fn report, void *ctx);

#endif
