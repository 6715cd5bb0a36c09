/* store/store.h — the embedded store: LMDB environments, each with its
 * schema (named databases and migrations), read transactions used inline
 * on loop threads, and per environment the single writer thread that owns
 * every write transaction (group commit, nested per-job transactions,
 * in-transaction hooks, post-commit actions), tenant purges, checks.
 *
 * This is the only module that includes lmdb.h; nothing LMDB-specific leaks
 * through this header. It includes nothing of ours above it either: it
 * logs through the opener's callback (st_options.log). Sealing lives in store/seal.h, tokens in
 * store/token.h.
 *
 * Error model: every function returning int returns 0 (or a documented
 * non-negative value) on success and a negative code on failure. The store's
 * own codes are ST_E* in the reserved range [-30099, -30000], disjoint from
 * libuv's negated errno values (> -4096) and from LMDB's (-30799..-30780),
 * which never escape this module. st_strerror() names them.
 *
 * Threads: an st_store is shared by all threads. Read transactions may be
 * used on any thread but a transaction must be used by one thread at a time.
 * Jobs run on the writer thread; done callbacks run on the thread of the
 * port they were submitted with. */
#ifndef MCPGATE_STORE_STORE_H
#define MCPGATE_STORE_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- error codes -------------------------------------------------------- */

#define ST_ERR_FIRST (-30000)
#define ST_ERR_LAST (-30099)
enum {
  ST_ENOTFOUND = -30000, /* key / record absent */
  ST_EEXIST = -30001,    /* key exists (ST_NOOVERWRITE), or backup dest not empty */
  ST_EINVAL = -30002,    /* bad argument or call in the wrong context */
  ST_ENOMEM = -30003,    /* allocation failed */
  ST_EMAPFULL = -30004,  /* map full, or an ordinary write would reach into the reserve
                            (st_options.reserve): raise map_size; nothing was written */
  ST_ETXNFULL = -30005,  /* one job dirtied too many pages for one transaction */
  ST_ETOONEW = -30006,   /* store schema newer than this binary */
  ST_EIO = -30007,       /* I/O error reading/writing the store or a key file */
  ST_ECORRUPT = -30008,  /* LMDB reported corruption / bad file format */
  ST_ECRYPTO = -30009,   /* sealed blob failed authentication, or crypto failure */
  ST_ENOKEY = -30010,    /* no master key loaded (sealing unavailable) */
  ST_ECANCELED = -30011, /* not produced by the store: for jobs whose request went away */
  ST_ECLOSED = -30012,   /* store or port is closing/closed */
  ST_EBUSY = -30013,     /* writer queue full, readers table full, or rotation running */
  ST_EPERM = -30014,     /* insecure permissions on a file we must keep private */
  ST_ETOOOLD = -30015,   /* store schema older than this binary, opened with no_migrate */
  ST_EMASKED = -30016,   /* a URL sends a query value back masked with no stored value to keep
                            (store/url_query.h) */
};

/* Static string for any ST_E* code; "job error (not a store code)" for
 * values outside the store's range (e.g. a job's own code); "ok" for >= 0.
 * Never contains data from the store. */
const char *st_strerror(int err);

/* ---- databases -----------------------------------------------------------
 * An environment's named databases are numbered: an st_db value is an
 * index into the table of the schema the environment was opened with
 * (st_options.schema). The enum below is the MAIN environment's table
 * (st_schema_main, the gateway's store); another environment (the audit
 * log...) defines its own numbers and passes them as (st_db)n.
 *
 * Every named database of the main environment has an enum value here and
 * a name in the table in store/migrate.c (main_db_names). The name is what
 * is stored in the file: never rename one. To add a database:
 *   1. add ST_DB_<X> just before ST_DB__COUNT;
 *   2. add its name to main_db_names[] in store/migrate.c (a static
 *      assert keeps the table and enum the same length);
 *   3. append a migration step in store/migrate.c that calls
 *      st_db_create(txn, ST_DB_<X>).
 * st_open refuses to start (and the unit tests fail) if a table entry has no
 * migration creating it. Databases are plain sorted key/value maps (no
 * DUPSORT): build indexes with composite keys. */
typedef enum st_db {
  ST_DB_META = 0, /* store metadata: schema_version, store_id */
  ST_DB_TENANTS,  /* tenants (owned by the gateway's tenant config) */
  ST_DB_TOKENS,   /* token hash -> token record (auth/, scim/, admin) */
  ST_DB_SECRETS,  /* every sealed blob; key = st_aad fields (store/seal.h) */
  ST_DB_SCIM_RES, /* SCIM users and groups (scim/scim.h has the key layout) */
  ST_DB_SCIM_IDX, /* SCIM unique and lookup indexes, counters */
  ST_DB_SCIM_MEM, /* SCIM group membership, both directions */
  ST_DB_CONNECTORS, /* upstream connectors per tenant (vault/vault.h) */
  ST_DB_SESSIONS, /* MCP sessions and their per-user index (gateway/mcp/mcp_session.h) */
  ST_DB_POLICY,   /* policy documents and generations per tenant (policy/policy.h) */
  ST_DB_AUTH,     /* auth/'s per-tenant login records: OIDC settings (auth/oidc.h) */
  ST_DB_VAULT,    /* per-user upstream grants and the revocation queue (vault/grant.h) */
  ST_DB_AUDIT,    /* audit/'s records in the main store: each tenant's SIEM sink (audit/audit.h) */
  ST_DB_APPROVALS, /* approval requests and the grants they leave (policy/approval.h) */
  ST_DB__COUNT
} st_db;

/* Name of a main-environment database as stored in the file, or NULL if
 * out of range. */
const char *st_db_name(st_db db);

/* ---- schemas: one per environment ---------------------------------------
 * A schema is what an environment holds: its named databases and the
 * ordered migration steps that create and evolve them. Each open st_store
 * is one LMDB environment (its own directory, map, writer thread, hooks,
 * checks and purges) with one schema; a process may open several (the
 * gateway's main store, the audit log's own environment), each with its
 * own schema. The schema version lives in the environment's database 0
 * under "schema_version" (u32 big-endian), so database 0 of every schema
 * is its metadata database (the store creates it before step 1; the
 * schema may keep other keys in it).
 *
 * A migration step runs in one write transaction together with the
 * version bump (a crash mid-step leaves the previous version, and the step
 * runs again): steps need not be idempotent. Never edit or reorder a
 * released step; append new ones.
 *
 * A step may move data whose format belongs to a module above the store
 * (a connector record is vault's): the step names an upgrade, and the
 * opener gives the function under that name (st_options.upgrades; the
 * gateway's module table lists each module's). The store never includes
 * the module; the module's function runs in the step's transaction. */
#define ST_SCHEMA_DBS_MAX 32
typedef struct st_store st_store; /* one open environment */
typedef struct st_txn st_txn;

typedef struct st_migration {
  const char *what;        /* logged when it runs: "create the policy database" */
  int (*fn)(st_txn *txn);  /* creates databases with st_db_create, moves data; 0 or ST_E*; or NULL */
  const char *upgrade;     /* or NULL: the st_upgrade (by name) that moves this step's data, run after fn */
} st_migration;

/* A migration step's data work given by a module above the store: it knows
 * the format of the records it rewrites. fn runs in the step's write
 * transaction (the same rules as st_migration.fn); 0 or ST_E*. */
typedef struct st_upgrade {
  const char *name; /* what st_migration.upgrade names */
  int (*fn)(st_txn *txn);
} st_upgrade;
/* The upgrades the main schema's migrations name, and whose they are. */
#define ST_UPGRADE_URL_QUERIES "vault.url_queries" /* migration 11: vault_upgrade_url_queries (vault.h) */
#define ST_UPGRADE_SINK_URLS "audit.sink_urls"     /* migration 12: audit_upgrade_sink_urls (audit.h) */

typedef struct st_schema {
  const char *name;               /* names the environment in logs and checks: "store", "audit" */
  const char *const *db_names;    /* stored names, indexed by st_db; never rename one */
  size_t ndbs;                    /* 1..ST_SCHEMA_DBS_MAX */
  const st_migration *steps;      /* step i (1-based) brings version i-1 to i */
  size_t nsteps;
  /* Extra consistency checks st_check runs for this schema before the
   * registered module checks (NULL: none). Returns problems found or ST_E*. */
  int (*check)(st_txn *txn, void (*report)(void *ctx, const char *area, const char *msg), void *ctx);
  /* Runs at every open that may migrate, after the last step, in the write
   * transaction that finds the schema current (NULL: none): brings data
   * that depends on this binary rather than on the schema up to date (the
   * main schema: the directory's name keys, folded by this binary's
   * Unicode table). Cheap when there is nothing to do; 0 or ST_E*. It runs
   * in a nested transaction: one that fails (a store too full for it) is
   * undone and logged and the store opens as it was — the next open tries
   * again (found by review: a full store stopped starting at all). At an
   * open that does not migrate it is not run (st_check reports it). */
  int (*sync)(st_txn *txn);
} st_schema;

/* The gateway's main environment: ST_DB_* above, the store's migrations. */
extern const st_schema st_schema_main;

/* Opens (creating if needed) a database of the txn's schema. Only inside a
 * migration step (the top-level write txn st_open runs it in); ST_EINVAL
 * elsewhere or for an index outside the schema. */
int st_db_create(st_txn *txn, st_db db);

/* ---- logging --------------------------------------------------------------
 * The store includes nothing of the gateway: it reports through a callback
 * the opener gives it (st_options.log). level is ST_LOG_DEBUG..ST_LOG_ERROR
 * (the same numbers as gateway/base/log.h's levels), module is "store", msg
 * one line without a trailing newline, secret-free; both strings are valid
 * only during the call. Called from any thread the store runs on (opener,
 * writer, loops ending read txns): the callback must be thread-safe. It
 * receives every level; filtering by level is the callback's job. With no
 * callback, debug and info are dropped and warn/error go to stderr as one
 * plain line ("mcpgate store: warn: ..."), so offline tools still see
 * warnings. */
enum { ST_LOG_DEBUG = 0, ST_LOG_INFO = 1, ST_LOG_WARN = 2, ST_LOG_ERROR = 3 };
typedef void (*st_log_fn)(void *ctx, int level, const char *module, const char *msg);

/* ---- environment -------------------------------------------------------- */

/* Zero-initialise and fill what you need; zero fields take the default. */
typedef struct st_options {
  const char *dir;             /* LMDB env directory; created 0700 if missing (its parent
                                  must exist). Required. One st_store per dir per process:
                                  LMDB forbids opening an env twice in one process. */
  size_t map_size;             /* bytes; default 8 GiB (LMDB maps lazily; file grows as used) */
  const char *master_key_file; /* NULL: no sealing (st_seal etc. return ST_ENOKEY) */
  unsigned max_readers;        /* concurrent read txns; default 126 */
  unsigned queue_max;          /* writer queue cap; st_submit → ST_EBUSY beyond; default 65536 */
  const st_schema *schema;     /* NULL: st_schema_main. Borrowed: must outlive the store */
  st_log_fn log;               /* NULL: warn/error as plain lines on stderr (see above) */
  void *log_ctx;               /* passed to log; borrowed, must outlive the store */
  int writer_nice;             /* added to the writer thread's nice value (Linux: per thread;
                                  0: as the process). An environment whose writes never hold
                                  up a request (the audit log's) runs below the loops; > 0
                                  also makes it SCHED_BATCH (it never preempts a running
                                  thread when it wakes; its fair share is kept). */
  size_t reserve;              /* bytes of the map kept for writes that take access away
                                  (st_txn_use_reserve); 0: none. At most a quarter of the
                                  map: larger values are lowered to that (st_stats.map_reserve
                                  says what is in force; logged at debug level). */
  const st_upgrade *upgrades;  /* the data steps of migrations (st_migration.upgrade), ended by a
                                  NULL name; borrowed for st_open only. A migration whose upgrade is
                                  not here fails the open (ST_EINVAL, logged) — unless this open
                                  creates the store: a new store has no data to upgrade */
  bool no_migrate;             /* a command that only reads (store check, audit export):
                                  an older schema is refused (ST_ETOOOLD, logged with what
                                  to do), never migrated under the server that may be
                                  serving it */
  bool read_only;              /* a command that only reads (store check, audit verify and
                                  export): the environment is opened MDB_RDONLY, no writer
                                  is started (st_submit → ST_ECLOSED), no file is created
                                  (LMDB's lock file only where the filesystem can take it:
                                  on a read-only one LMDB goes without) — a store on a
                                  read-only snapshot or mount can be checked. Implies
                                  no_migrate */
  bool key_check;              /* a command that may seal (serve, key rotate): the key file
                                  must be the store's — every key id its sealed secrets
                                  carry is in it and unseals them — or the open is refused
                                  (ST_ECRYPTO, logged) before any migration writes (a
                                  migration may seal under it, and what it sealed would be
                                  lost with the wrong key) */
} st_options;

/* Opens (creating if needed) one environment with its schema (opts->schema,
 * default the main one): loads/creates the master key file, opens the env
 * with MDB_NOTLS, clears stale reader slots (logged), runs pending
 * migrations (refusing with ST_ETOONEW if the file's schema is newer than
 * this binary), opens every named database and starts the writer
 * thread. A key file it had to create for a main store that already holds
 * sealed secrets is removed again and the open refused (ST_ENOKEY,
 * logged): that store lost its key, and a new one would unseal nothing;
 * with key_check, a key file the secrets do not unseal under is refused
 * (ST_ECRYPTO). Both before any migration runs. Call at startup, off the
 * loop (it does file I/O and fsyncs).
 * On success *out is owned by the caller; release with st_close. Strings in
 * opts are copied. */
int st_open(st_store **out, const st_options *opts);

/* Stops accepting jobs (st_submit → ST_ECLOSED), lets the writer drain and
 * commit everything already queued (done callbacks are delivered to their
 * ports as usual), joins the writer, and closes the env. No read txn may be
 * open and no other thread may still be calling into st. Ports may be
 * closed before or after. NULL is a no-op. Must not run on the writer. */
void st_close(st_store *st);

/* Schema version of the open store (== its schema's nsteps after st_open). */
uint32_t st_schema_version(const st_store *st);
/* Newest main-schema version this binary knows (st_schema_main.nsteps). */
uint32_t st_schema_latest(void);

/* ---- transactions and data access ---------------------------------------
 * Read transactions are short and used inline on the loop: begin, a few
 * gets, end. Never hold one across a callback or an await — it pins old
 * pages and grows the file. Write transactions exist only inside jobs on
 * the writer thread (st_submit / st_write_sync). */

/* A value or key handed out by the store. data points into the LMDB map:
 * valid only until the transaction ends, or until the next st_put/st_del in
 * that same transaction (writes may move pages). Copy what you keep. */
typedef struct st_val {
  const void *data;
  size_t len;
} st_val;

/* Keys longer than st_max_key() bytes — or whose first byte is 0xFF — are
 * stored as the marker byte 0xFF followed by SHA-256(key) (33 bytes), so any
 * length works with get/put/del. Such keys do NOT keep prefix order: a
 * cursor returns their hashed form and prefix scans cannot find them by
 * prefix. Keep scannable (index) keys short and not starting with 0xFF. */
#define ST_KEY_HASHED_MARKER 0xFF
#define ST_KEY_INPUT_MAX (64 * 1024)        /* cap on any key given to the store */
#define ST_VAL_MAX (16u * 1024 * 1024)      /* cap on any value */
size_t st_max_key(const st_store *st);      /* 511 with the stock liblmdb */

/* Begins a read-only snapshot. *out owned by the caller until st_txn_end.
 * ST_EBUSY if the readers table is full. */
int st_read_begin(st_store *st, st_txn **out);
/* Ends a read txn from st_read_begin, closing any cursor still open on it
 * (that is a bug in the caller and is logged). Job txns are ended by the
 * writer; passing one here is logged and ignored. NULL is a no-op. */
void st_txn_end(st_txn *txn);
/* The store a transaction belongs to (handy inside jobs and hooks). */
st_store *st_txn_store(st_txn *txn);
/* The snapshot a read txn sees: the id of the last write committed before
 * it began (LMDB's txn id), with the generation of the users cut in memory
 * (dir.h) above bit 40. Two read txns with the same value see the same
 * data and the same answers; any commit or cut in between changes it.
 * Compare for equality only. Never 0. */
uint64_t st_txn_snapshot(const st_txn *txn);
/* That generation alone (users and memberships cut in memory, dir.h): a
 * cache that outlives snapshots (the policy's, kept while the stored
 * revisions it read are unchanged) compares it too, because a cut changes
 * answers without a write. */
uint64_t st_txn_cut_generation(const st_txn *txn);
/* The cut generation now (not when txn began): read under the cuts' lock,
 * so a mark in place is always counted. */
uint64_t st_cut_generation_now(st_store *st);

/* SHA-256 of n bytes at p into out (32 bytes); 0 or ST_ECRYPTO. The digest
 * is fetched from OpenSSL once per process (an implicit fetch per call
 * cost more than the hash of a short key). Any thread. */
int st_sha256(const void *p, size_t n, uint8_t out[32]);
/* 1 for a job (write) transaction, 0 for a read transaction. */
int st_txn_is_write(const st_txn *txn);

/* Adds inc to the calling thread's nice value (Linux: per thread; best
 * effort, no privilege needed); inc > 0 also makes it SCHED_BATCH (a
 * background thread: its fair share kept, never preempting a running
 * thread when it wakes). The writers of st_options.writer_nice, and the
 * audit log's thread. */
void st_thread_nice(int inc);

/* Looks a key up. ST_ENOTFOUND if absent. out: see st_val lifetime. */
int st_get(st_txn *txn, st_db db, const void *k, size_t klen, st_val *out);

#define ST_NOOVERWRITE 0x1u /* st_put: fail with ST_EEXIST if the key exists */
/* st_put: the key likely sorts after every key of the database (a log's
 * next record): tried as an append first (no search, pages filled instead
 * of split in half), else put as usual. The same result either way. */
#define ST_APPEND 0x2u
/* Inserts or replaces. Write txns only (ST_EINVAL otherwise). klen >= 1,
 * vlen <= ST_VAL_MAX. On ST_EMAPFULL / ST_ETXNFULL / ST_EIO the job's
 * transaction is poisoned: later operations fail and the job is aborted
 * whatever it returns. */
int st_put(st_txn *txn, st_db db, const void *k, size_t klen, const void *v, size_t vlen,
           unsigned flags);
/* st_put for a value the caller writes in place (LMDB's MDB_RESERVE): room
 * for vlen (>= 1) bytes is made under the key and *out points at it; the
 * caller fills all vlen bytes before the next operation on txn (the room
 * is in a page LMDB may move or split then). Same flags and errors as
 * st_put. Saves the copy of a value built only to be stored (the audit
 * log's records). */
int st_put_reserve(st_txn *txn, st_db db, const void *k, size_t klen, size_t vlen, unsigned flags, void **out);
/* Deletes a key. ST_ENOTFOUND if absent. Write txns only. */
int st_del(st_txn *txn, st_db db, const void *k, size_t klen);

/* ---- the reserve: room kept for taking access away -----------------------
 * A full store must still let an IdP disable a user. With st_options.reserve
 * set, the last `reserve` bytes of the map are kept for jobs that take
 * access away; every other job that writes is refused with ST_EMAPFULL
 * (nothing written) when, measured in its own transaction after it ran,
 *   - the pages in use would pass map size minus reserve, or
 *   - the store is already full — pages in use within an eighth of the
 *     reserve of that limit — and the job does not shrink what is in use.
 * So once full, every ordinary write is refused alike (not only large
 * ones) until deletes bring the store back under the mark. "In use" is the
 * pages of every database's tree (LMDB's page counts in the job's txn) plus
 * the meta pages: freed pages LMDB will reuse do not count, so deleting
 * data makes room again even though the file never shrinks. A job that only
 * deletes is never refused by the mark (deleting cannot grow the trees).
 * Jobs that take access away are bounded only by the map itself: st_emit
 * marks a job that emits USER_DEACTIVATED, USER_DELETED, GROUP_DELETED,
 * USER_SIGNED_OUT (store/dir.h), a MEMBERSHIP_CHANGED that removes members,
 * TENANT_DELETING, TOKEN_REVOKED or CONNECTOR_DELETE, and a tenant purge
 * step (st_purge_tenant_step); another such job calls st_txn_use_reserve
 * itself (a session delete only deletes). Limits: pages
 * freed but still pinned by an old reader, and a freelist too fragmented
 * for a multi-page value, are not reusable at that moment, so such a job
 * can still meet the real MDB_MAP_FULL (ST_EMAPFULL) inside the reserve. */

/* Marks the txn's job as one that takes access away: it may use the
 * reserve. Call from the job or from a hook it triggers (sticky for the
 * job's run). Write txns only; a no-op otherwise. */
void st_txn_use_reserve(st_txn *txn);
/* Marks the txn's job as an ordinary write whatever it emits: it never
 * uses the reserve (a sign-in that signs a user out first still creates a
 * session). Sticky for the job's run, and wins over st_txn_use_reserve. */
void st_txn_ordinary(st_txn *txn);

/* Cursors: ordered scans over one database.
 *   st_cursor *c; st_cursor_open(txn, ST_DB_TOKENS, &c);
 *   st_cursor_seek(c, "t\0acme\0", 7, NULL, 0);
 *   while ((rc = st_cursor_next(c, &k, &v)) == 0) { ... }
 *   st_cursor_close(c);   // rc == ST_ENOTFOUND at the end of the range
 * A cursor belongs to its txn and must be closed before the txn ends (any
 * left open are closed by the txn's end and logged; the handle is then
 * dangling). In a write txn, st_put/st_del on the same db are allowed while
 * a cursor is open; the cursor continues after its current key. */
typedef struct st_cursor st_cursor;
int st_cursor_open(st_txn *txn, st_db db, st_cursor **out);
/* Limits the scan to keys starting with prefix (plen 0: whole db) and
 * positions it before the first such key >= from (from NULL: the prefix
 * itself). Prefixes must be <= st_max_key() and not start with 0xFF. */
int st_cursor_seek(st_cursor *c, const void *prefix, size_t plen, const void *from, size_t flen);
/* Steps to the next key in range. 0 with key/val filled (st_val lifetime,
 * either may be NULL), ST_ENOTFOUND past the end. Without a prior seek the
 * whole db is scanned from its first key. */
int st_cursor_next(st_cursor *c, st_val *key, st_val *val);
/* Steps backwards: the first call after a seek goes to the LAST key in the
 * prefix range (the seek's `from` is ignored), later calls to the previous
 * key. 0 with key/val filled, ST_ENOTFOUND before the start of the range.
 * Do not mix with st_cursor_next on one seek. Used to trim a newest-first
 * range from its oldest end without reading all of it. */
int st_cursor_prev(st_cursor *c, st_val *key, st_val *val);
void st_cursor_close(st_cursor *c);

/* Deletes the keys that start with prefix, at most `limit` of them (0: no
 * limit), in key order; returns how many were deleted or a negative error.
 * Write txns only. Bounded purges (tenant deletion) are built on it. */
int st_del_prefix(st_txn *txn, st_db db, const void *prefix, size_t plen, int limit);

/* ---- the writer: jobs, ports, group commit ------------------------------
 * A job is a function run on the writer thread inside a write transaction.
 * The writer takes up to ST_BATCH_MAX queued jobs, runs them one after the
 * other in the batch's transaction, and commits the batch once (one fsync
 * for all). A job returning < 0 affects no other job: the batch's txn is
 * aborted at once and the batch runs again with each job in its OWN nested
 * (child) txn, where a failing job's child is aborted alone. (A child costs
 * LMDB ~2.5 MB of buffers and a merge per job; jobs seldom fail, so the
 * children are paid only by a batch that holds a failure. A batch of one
 * job stops at its own txn: its failure aborts it, the same outcome.)
 *
 * !!! CONTRACT: a job must be a pure function of (store state, arg). !!!
 * The writer may run a job MORE THAN ONCE: every job before a failing one
 * in its batch runs again (above), as often as jobs fail; if the batch
 * commit fails (e.g. map full while writing the freelist) every job of the
 * batch is re-run alone in its own transaction so each gets an honest
 * result; and a job that hits ST_EMAPFULL/ST_ETXNFULL behind other jobs in
 * a batch is re-run at the head of a fresh batch. So a job must not mutate arg's inputs, must
 * not have side effects outside the txn (send, free, signal...) — put those
 * in st_txn_after_commit or the done callback — and must write its outputs
 * into arg idempotently (every run overwrites them).
 *
 * Return value: any value >= 0 commits the job's writes; any negative value
 * (a ST_E* code or the job's own code, e.g. a libuv or module code) aborts
 * the job's child txn and is passed to done unchanged. */
#define ST_BATCH_MAX 256
typedef int (*st_job_fn)(st_txn *txn, void *arg);
/* status: the job's return value once its batch COMMITTED and the batch's
 * post-commit actions ran; the job's negative return if it aborted; or the
 * commit error (e.g. ST_EMAPFULL, ST_EIO) if its writes could not be
 * committed. */
typedef void (*st_done_fn)(int status, void *arg);

/* Completion ports deliver done callbacks onto a libuv loop: a
 * mutex-protected queue plus a uv_async_t on that loop (uv_async_send
 * coalesces wake-ups, so the queue carries the messages). The port's handle
 * keeps the loop alive until st_port_close. */
typedef struct st_port st_port;
/* Creates a port on loop. Must be called on the loop's thread. *out is
 * valid until st_port_close. */
int st_port_open(st_store *st, uv_loop_t *loop, st_port **out);
/* Closes a port. Loop thread only. From this call on, done is NEVER called
 * for jobs submitted on this port — neither for completions already queued
 * nor for jobs still in the writer (their writes still commit). If done is
 * where you free arg, close the port only once st_port_pending() is 0 (or
 * keep arg reachable elsewhere). cb(arg) runs on the loop once the handle
 * is closed (cb may be NULL); the port's memory is released internally once
 * the handle is closed and the writer holds no reference. Safe to call from
 * inside a done callback of this port. Call it exactly once. */
void st_port_close(st_port *port, void (*cb)(void *arg), void *arg);
/* The port's gate: gate(arg, state) runs on the port's loop before every
 * done callback it delivers. By then the job's batch committed and its
 * post-commit actions ran, so this is where the loop applies what those
 * actions queued for it (the gateway ends revoked exchanges there, so a
 * reply never leaves before the revocation it caused). Returning false
 * parks the job — and every later one: dones keep their order — until
 * st_port_kick, when the gate runs again for it. state is the job's own
 * (zeroed at submit; the gate's to keep across runs, e.g. what it waits
 * for and since when). The writer thread never waits on a gate. Loop
 * thread; set once, right after opening. */
typedef bool (*st_gate_fn)(void *arg, uint64_t state[2]);
/* stamp(arg, state) runs once per job as it reaches the port (before any
 * gate run for it): what the job waits for, and since when, is set by
 * when it arrived, not by when the jobs ahead of it let it through. */
typedef void (*st_stamp_fn)(void *arg, uint64_t state[2]);
void st_port_gate(st_port *port, st_gate_fn gate, st_stamp_fn stamp, void *arg);
/* Runs the gate again for the parked job (if any), on the port's loop.
 * Any thread; the caller keeps the port from being closed meanwhile (or
 * knows it is open): after st_port_close it does nothing. */
void st_port_kick(st_port *port);
/* Jobs submitted on this port whose done has not been delivered. Loop thread. */
size_t st_port_pending(const st_port *port);

/* Queues a job. Any thread. done may be NULL. port == NULL: done runs on the
 * writer thread (keep it short and never call st_write_sync from it); else
 * done runs on port's loop thread. Returns ST_ECLOSED once st_close began,
 * ST_EBUSY if the queue is at queue_max, ST_ENOMEM; on error nothing was
 * queued and done will not be called. */
int st_submit(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg);

/* st_submit into the writer's second lane: jobs that many clients can
 * cause at a high rate (an MCP session's creation, use, deletion). A batch
 * takes the first lane's queued jobs first, up to ST_BATCH_MAX less
 * ST_BULK_BATCH, then at most ST_BULK_BATCH of these (a whole batch of
 * them when the first lane has none): found by review, an
 * employee's flood of initialize requests queued ahead of every tenant's
 * SCIM writes (~45x slower); now such a flood delays a SCIM or admin write
 * by the batch running at most, and a long SCIM import still leaves these
 * jobs a share of every batch. The queue cap (queue_max) counts both lanes.
 * Jobs of the two lanes may commit in either order: a job must re-check in
 * its own transaction what it relies on (store.h's job contract). */
#define ST_BULK_BATCH 32
int st_submit_bulk(st_store *st, st_port *port, st_job_fn fn, st_done_fn done, void *arg);

/* Submits fn and blocks the calling thread until its batch committed (or it
 * failed); returns the job's status as st_done_fn would see it. For CLI /
 * offline commands and tests: never call it on a loop thread (it blocks) or
 * on the writer thread (ST_EINVAL: it would deadlock). */
int st_write_sync(st_store *st, st_job_fn fn, void *arg);

/* ---- hooks: dependent writes atomic with the triggering job --------------
 * Event kinds are ints owned by the emitting module, which defines them in
 * its own header. To keep them distinct each module takes a block: */
enum {
  ST_EVENT_BASE_STORE = 0,
  ST_EVENT_BASE_SCIM = 100,
  ST_EVENT_BASE_AUTH = 200,
  ST_EVENT_BASE_VAULT = 300,
  ST_EVENT_BASE_POLICY = 400,
  ST_EVENT_BASE_GATEWAY = 500,
};
/* Records other modules react to, emitted by the domain function that
 * writes them (the payload type belongs to the emitting module):
 * vault_connector_put / vault_connector_delete emit CONNECTOR_PUT / _DELETE
 * with a vault_connector_event (vault/vault.h), and they and the grant
 * writes of vault/grant.h emit CREDENTIAL_ENDING (vault_ending_event)
 * before they change anything; pol_put emits POLICY_PUT
 * with a pol_event (policy/policy.h); st_tenant_mark_deleting emits
 * TENANT_DELETING with an st_tenant_event (store/tenant.h);
 * auth_token_revoke emits TOKEN_REVOKED with an auth_token_event
 * (auth/token_store.h). */
enum {
  ST_EVENT_TENANT_DELETING = ST_EVENT_BASE_STORE + 1,
  ST_EVENT_TOKEN_REVOKED = ST_EVENT_BASE_AUTH + 1,
  ST_EVENT_CONNECTOR_PUT = ST_EVENT_BASE_VAULT + 1,
  ST_EVENT_CONNECTOR_DELETE = ST_EVENT_BASE_VAULT + 2,
  ST_EVENT_GRANT_CHANGED = ST_EVENT_BASE_VAULT + 3, /* a user connected or lost an upstream grant (vault/grant.h) */
  ST_EVENT_CREDENTIAL_ENDING = ST_EVENT_BASE_VAULT + 4, /* upstream sessions' server or credential about to change
                                                          (vault_ending_event, vault/vault.h) */
  ST_EVENT_POLICY_PUT = ST_EVENT_BASE_POLICY + 1,
};
/* Called inside the emitting job's transaction, on the writer thread. May
 * read/write through txn and register post-commit actions. Same purity
 * contract as jobs (it may run more than once). Negative return fails the
 * emit. */
typedef int (*st_hook_fn)(st_txn *txn, int event_kind, const void *event, void *ctx);
#define ST_HOOKS_MAX 256
/* Registers fn for event_kind; hooks of a kind run in registration order.
 * Register everything at startup BEFORE the first st_submit: the hook table
 * is read by the writer without locks, so later registration is refused
 * with ST_EINVAL. ctx is borrowed and must outlive st. */
int st_hook_add(st_store *st, int event_kind, st_hook_fn fn, void *ctx);
/* Calls every hook registered for event_kind, in order, inside txn (write
 * txns only). Stops at and returns the first negative hook return; the job
 * decides what to do (typically return it, aborting its writes and the
 * hooks'). event is borrowed for the call. */
int st_emit(st_txn *txn, int event_kind, const void *event);

/* Registers a post-commit action from a job or hook. fn(arg) runs on the
 * writer thread after the batch committed and BEFORE any done callback of
 * that batch is delivered (all actions of the batch run first, in job order
 * then registration order). If the job's child txn aborts, or the batch
 * commit fails, the action is discarded: discard(arg) (if non-NULL) is
 * called on the writer thread instead and fn never runs (a re-run of the
 * job registers it again). Keep fn bounded in time: it delays every reply
 * of the batch. Write txns only. On error nothing is registered and discard
 * is not called (arg is still yours). */
int st_txn_after_commit(st_txn *txn, void (*fn)(void *arg), void (*discard)(void *arg),
                        void *arg);

/* ---- tenant purges ---------------------------------------------------------
 * Deleting a tenant's data is a series of bounded steps (one write job
 * each, so no transaction grows with the tenant). Every module that keeps
 * per-tenant keys registers one purge function at startup; the tenant
 * deletion job calls st_purge_tenant_step until it reports nothing left,
 * without knowing which modules exist. */
#define ST_PURGES_MAX 32
/* A purge: deletes up to `limit` (>= 1) keys of tenant from the module's
 * databases inside txn and returns how many it deleted (fewer than limit:
 * the module holds nothing more of the tenant), or a negative error. Same
 * purity contract as jobs. */
typedef int (*st_purge_fn)(st_txn *txn, const char *tenant, int limit);
/* Registers a purge under name (borrowed: a string literal).
 * Same registration rule as hooks: at startup, before the first
 * st_submit (ST_EINVAL afterwards). ST_EEXIST if name is already
 * registered (registering twice is harmless), ST_ENOMEM beyond
 * ST_PURGES_MAX. Purges run in registration order. `unused` is reserved
 * (pass NULL). */
int st_purge_add(st_store *st, const char *name, st_purge_fn fn, void *unused);
/* st_purge_add for a purge that needs its module's context: fn(txn,
 * tenant, limit, ctx), ctx borrowed (it must outlive st). The same rules,
 * the same order (one registry). */
typedef int (*st_purge_ctx_fn)(st_txn *txn, const char *tenant, int limit, void *ctx);
int st_purge_add_ctx(st_store *st, const char *name, st_purge_ctx_fn fn, void *ctx);
/* Runs the registered purges for tenant in registration order, deleting
 * up to `limit` (>= 1) keys in total; a purge is asked for what is left of
 * the limit and the next one runs only once it deleted fewer than it was
 * asked for. Returns how many keys were deleted: fewer than limit (in
 * particular 0) means every registered purge has finished with the tenant
 * (the caller may delete the tenant record in the same txn); limit means
 * call again in a new job. Write txns only; a negative return is the first
 * failing purge's error (abort the job). */
int st_purge_tenant_step(st_txn *txn, const char *tenant, int limit);

/* ---- tenant incarnations -------------------------------------------------
 * A tenant id can be deleted, purged and created again. Each incarnation
 * gets a random uid (ST_DB_TENANTS "u" + id → 16 hex chars), written in the
 * tenant-create transaction and deleted with the tenant record, so state
 * cached per tenant (compiled policy, decisions) is keyed by the uid and
 * never served to the next incarnation. Migration 6 gives tenants created
 * before it one. */
#define ST_TENANT_UID_LEN 16
/* The tenant's uid (NUL-terminated); ST_ENOTFOUND when it has none. */
int st_tenant_uid_get(st_txn *txn, const char *tenant, char uid[ST_TENANT_UID_LEN + 1]);
/* Write txns. uid: ST_TENANT_UID_LEN chars, chosen by the caller (jobs are
 * pure: randomness comes from outside). */
int st_tenant_uid_put(st_txn *txn, const char *tenant, const char *uid);
int st_tenant_uid_del(st_txn *txn, const char *tenant);

/* ---- stats and readiness ------------------------------------------------ */

#define ST_STATS_NBUCKETS 11
/* Upper bounds (seconds) of the commit latency histogram; the last is +Inf. */
extern const double st_stats_bucket_le[ST_STATS_NBUCKETS];

typedef struct st_stats {
  uint64_t queue_depth;          /* jobs queued, not yet taken by the writer */
  uint64_t jobs_committed;       /* jobs whose writes were committed (status >= 0) */
  uint64_t jobs_failed;          /* jobs delivered with a negative status */
  uint64_t commits;              /* successful batch commits */
  uint64_t commit_errors;        /* failed batch commits */
  double commit_seconds_sum;     /* time inside mdb_txn_commit of the batch (incl. fsync) */
  uint64_t commit_seconds_count; /* == commits + commit_errors */
  uint64_t commit_seconds_bucket[ST_STATS_NBUCKETS]; /* cumulative: <= le[i] */
  uint64_t batch_jobs_sum;       /* jobs per commit attempt: sum / count */
  uint64_t batch_jobs_count;
  uint64_t map_size;             /* configured map size, bytes */
  uint64_t map_used;             /* high-water mark of pages in the file, bytes */
  uint64_t map_live;             /* pages in use by the trees (freed pages excluded), bytes:
                                    what the reserve's mark compares */
  uint64_t map_reserve;          /* the reserve in effect (st_options.reserve, capped), bytes */
  int last_commit_error;         /* 0, or the ST_E* of the last failed batch commit */
} st_stats;
/* Snapshot for /metrics. Any thread. */
void st_stats_get(st_store *st, st_stats *out);

/* 0 when the env is open, the writer thread is running, and the most recent
 * batch neither failed to commit nor had a job fail with ST_EMAPFULL /
 * ST_EIO / ST_ECORRUPT (i.e. the store currently accepts writes). The state
 * clears on the next clean batch, so a single oversized job makes the store
 * briefly not-ready until any smaller write commits. Negative otherwise.
 * Any thread; cheap (atomics only). */
int st_ready(st_store *st);
/* Static, secret-free reason for the current st_ready state ("ok" when ready). */
const char *st_ready_reason(st_store *st);

/* ---- offline tools ------------------------------------------------------ */

/* Consistent hot copy (compacted) of the env into dest_dir, which must not
 * exist or be empty (ST_EEXIST otherwise); created 0700, file fsynced.
 * Runs a long read txn: call from a CLI/admin thread, never a loop. The
 * master key is NOT in the backup (only sealed blobs are): back it up
 * separately, or the copy's secrets are unrecoverable. The marks' logs
 * beside data.mdb (users and memberships cut in memory whose removal could
 * not be written) are copied into dest_dir too, 0600, before the snapshot:
 * a restored copy keeps those users cut. */
int st_backup(st_store *st, const char *dest_dir);
/* The same copy of the environment in opts->dir (opts->log/log_ctx for
 * messages; the other fields are unused) without opening a store: the env
 * is opened read-only, so nothing is migrated, written or created — the
 * copy is the store as it is, whatever its schema and whichever mcpgate
 * is serving it (a backup taken before an upgrade, beside the old server,
 * is the way back). ST_ENOTFOUND without a data file, ST_ECORRUPT for an
 * empty one, else as st_backup. */
int st_backup_dir(const st_options *opts, const char *dest_dir);

/* ---- a store that went back in time (store/stamp.c) ---------------------
 * The store counts generations (META "generation"); a record of the last
 * one, with the store's id, is kept in a file outside the store directory
 * (path: the opener's; serve uses <data>/store.generation), written after
 * the generation's commit. A store below its record went back in time: an
 * older backup restored over it, which brings back every token, session
 * and grant revoked since. */
#define ST_STAMP_ID_BUFSZ 64
enum {
  ST_STAMP_OK = 0,      /* the store is at or past its record */
  ST_STAMP_NO_FILE,     /* no record: a first start, or the record was removed */
  ST_STAMP_OTHER_STORE, /* the record names another store id: a new or different store put there */
  ST_STAMP_OLDER,       /* the store's generation is below its record's */
  ST_STAMP_BAD_FILE,    /* the record does not parse */
  ST_STAMP_UNREADABLE,  /* the record cannot be read (permissions, I/O) */
};
typedef struct st_stamp_info {
  int state;                          /* ST_STAMP_* */
  char store_id[ST_STAMP_ID_BUFSZ];   /* "" for a store that has none yet */
  char file_id[ST_STAMP_ID_BUFSZ];    /* the record's, when it parsed */
  uint64_t store_gen, file_gen;
} st_stamp_info;
/* Compares the store with the record at path. 0 with out filled (state
 * says what was found), or a store error. Any thread but the writer's;
 * one short read txn. */
int st_stamp_check(st_store *st, const char *path, st_stamp_info *out);
/* Commits generation + 1 (and a store id, for a store without one), then
 * writes the record (atomically, fsynced). Blocks (st_write_sync and
 * fsync): never on a loop thread. *gen_out (may be NULL): the new one. */
int st_stamp_advance(st_store *st, const char *path, uint64_t *gen_out);
/* Static words for a ST_STAMP_* state. */
const char *st_stamp_state_str(int state);

/* Reads the environment through once, as a start-up check: every entry of
 * every database of the schema, the first and last byte of each key and
 * value, so every page LMDB would follow is followed now, at a known
 * point, not under a request hours later. Returns 0 (logged at info: how
 * many entries), ST_ECORRUPT when LMDB reports a damaged page or an entry
 * cannot be right (a value larger than the file, a key longer than LMDB
 * allows) — logged as a damaged file with what to do — or another ST_E*.
 * A page that sends LMDB outside the file can still end the process
 * (SIGBUS, SIGSEGV; an LMDB assertion aborts it, logged the same way
 * first): a caller that wants a word for that guards the call
 * (gateway/core/server.c). One read snapshot for the whole walk: at start,
 * before the store is in use. */
int st_verify(st_store *st);

/* st_check reports each problem through report(ctx, area, msg): area is a
 * database or module name, msg a short secret-free description (may name
 * tenants, kinds and owner ids). Both strings valid only during the call. */
typedef void (*st_check_report_fn)(void *ctx, const char *area, const char *msg);
/* A module's consistency check, run inside st_check's read txn. Returns the
 * number of problems it reported, or a negative error (counted as one). */
typedef int (*st_check_fn)(st_txn *txn, st_check_report_fn report, void *report_ctx,
                           void *ctx);
#define ST_CHECKS_MAX 64
/* Registers a module check (same registration rule as hooks: at startup,
 * single-threaded). ctx borrowed. */
int st_check_add(st_store *st, st_check_fn fn, void *ctx);
/* Walks every named database (reads every entry), flags databases in the
 * file that this binary does not know, verifies the meta schema version,
 * verifies every blob in ST_DB_SECRETS unseals with the AAD its key
 * encodes, then runs the registered module checks. Returns the number of
 * problems found (0 = healthy), or a negative error if it could not run.
 * Holds one read snapshot for its whole duration: offline/CLI use. report
 * may be NULL. */
int st_check(st_store *st, st_check_report_fn report, void *ctx);

#endif
