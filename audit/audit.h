/* audit/audit.h — the audit log: its own LMDB environment (through the
 * store, schema "audit"), a submission queue drained by one audit thread
 * with group commit, a SHA-256 hash chain per tenant incarnation, chain
 * verification, retention, query, export and the redaction of call
 * arguments.
 *
 * Why its own environment: an audit burst must never delay a deactivation
 * on the main store's writer, and audit I/O never sits on a request's
 * path. audit_submit only takes a mutex and appends to a capped queue; the
 * audit thread writes everything queued in one write job (one fsync per
 * batch) every batch_ms.
 *
 * Storage (the audit environment's databases, st_db numbers of its schema):
 *   0 "meta"     the store's metadata (schema_version)
 *   1 "records"  uid ‖ 0x00 ‖ u64 BE seq → the stored record bytes
 *   2 "heads"    uid → {"tenant","seq","hash","first","pruned_hash"}
 *   3 "cursors"  sink ‖ 0x00 ‖ uid → u64 BE seq: the last record of uid a
 *                SIEM sink acknowledged (schema step 2)
 * uid is the tenant incarnation's uid (store.h: st_tenant_uid_get), so a
 * tenant deleted and created again starts a new chain. Keys are at most
 * 73 bytes; big-endian seqs make a cursor walk a chain oldest first.
 *
 * A stored record is the compact JSON object the caller submitted (keys
 * sorted), with members the module owns put first:
 *   {"id":"<uid>-<seq>","prev":"<hex>","seq":<n>,"tenant":"<t>",
 *    "time":<ms>, ...caller's members...}
 * seq counts 1, 2, 3... per chain, consecutive, in submission order; id is
 * stable (SIEM de-duplication); prev is the lowercase hex SHA-256 of the
 * previous record's stored bytes (for seq 1: 64 zeros; for the first
 * record kept after pruning: the head's pruned_hash). The hash of a record
 * is SHA-256 of its stored bytes. The head holds the last seq and hash,
 * the first seq still stored and pruned_hash (hash of the last pruned
 * record, or 64 zeros).
 *
 * Error model: functions returning int return 0 (or a documented
 * non-negative value) on success and a negative code: AUDIT_E* below, or a
 * store code (ST_E*, store/store.h) passed through. audit_strerror names
 * both.
 *
 * Threads: audit_submit, audit_ok, audit_flush, audit_stats_get may be
 * called from any thread, concurrently. audit_open/audit_close from one
 * thread (startup/shutdown, never a loop: they do file I/O). The read-side
 * functions (audit_query, audit_export_chunk, audit_heads, audit_verify)
 * take the caller's transaction or store and run on the caller's thread. */
#ifndef MCPGATE_AUDIT_AUDIT_H
#define MCPGATE_AUDIT_AUDIT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- error codes ---------------------------------------------------------- */

#define AUDIT_ERR_FIRST (-31100)
#define AUDIT_ERR_LAST (-31199)
enum {
  AUDIT_EINVAL = -31100,  /* bad argument: NULL, tenant/uid syntax, rec not an object, cursor */
  AUDIT_ENOMEM = -31101,  /* allocation failed */
  AUDIT_EFULL = -31102,   /* queue at queue_max / queue_bytes_max: the record was dropped */
  AUDIT_EBROKEN = -31103, /* the last commit failed: the record is queued, but audit is failing */
  AUDIT_ECLOSED = -31104, /* audit_close began */
  AUDIT_ETOOBIG = -31105, /* the record serialises over AUDIT_RECORD_MAX: dropped */
  AUDIT_ECORRUPT = -31106,/* a stored head or record is not what this module writes */
};
/* Static string for an AUDIT_E* or ST_E* code; "ok" for >= 0. */
const char *audit_strerror(int err);

/* ---- limits ----------------------------------------------------------------- */

#define AUDIT_TENANT_MAX 63      /* tenant ids: [a-z0-9-]{1,63} */
#define AUDIT_UID_MAX 64         /* tenant uids: [A-Za-z0-9_-]{1,64} */
#define AUDIT_RECORD_MAX (256u * 1024) /* a record's serialised caller members, bytes */
#define AUDIT_HASH_HEX 64        /* lowercase hex SHA-256, without the NUL */
#define AUDIT_SCAN_MAX 10000     /* records one audit_query / audit_export_chunk examines */
/* stored bytes one audit_query / audit_export_chunk examines (then the
 * record that passes it, at most): AUDIT_SCAN_MAX records of up to
 * AUDIT_RECORD_MAX each would be 2.5 GB parsed under one read txn */
#define AUDIT_SCAN_BYTES_MAX (8u << 20)
#define AUDIT_QUERY_LIMIT_MAX 1000
#define AUDIT_QUERY_LIMIT_DEFAULT 100
#define AUDIT_QUERY_BYTES_MAX (1u << 20) /* stored bytes of the records one audit_query returns */
#define AUDIT_CURSOR_MAX 32      /* buffer for a query cursor, with its NUL */

/* ---- the schema --------------------------------------------------------------
 * The audit environment's databases (pass as (st_db)AUDIT_DB_*) and its
 * schema (named "audit"; its check is audit_verify over every chain, so
 * st_check on the audit store verifies the chains). audit_open uses it;
 * exported for offline tools that open the env with st_open themselves. */
enum { AUDIT_DB_META = 0, AUDIT_DB_RECORDS, AUDIT_DB_HEADS, AUDIT_DB_CURSORS, AUDIT_DB__COUNT };
extern const st_schema audit_schema;

/* ---- opening and closing ------------------------------------------------------ */

typedef struct audit_log audit_log;

/* Zero-initialise and fill what you need; zero fields take the default. */
typedef struct audit_options {
  const char *dir;          /* the audit env's directory (the gateway: <data>/audit); created
                               0700 if missing, its parent must exist. Required. Copied. */
  size_t map_size;          /* bytes; default 4 GiB (LMDB maps lazily) */
  unsigned batch_ms;        /* group-commit interval; default 50 */
  size_t queue_max;         /* records queued and not yet committed; default 100000 */
  size_t queue_bytes_max;   /* the memory they hold (as audit_stats.queue_bytes); default 256 MiB */
  int64_t head_log_ms;      /* interval of the chain-head log lines; default 3600000; < 0: off */
  st_log_fn log;            /* the store's callback type; audit logs with module "audit", the
                               store with "store". NULL: warn/error to stderr */
  void *log_ctx;            /* borrowed; must outlive the audit log */
  int nice;                 /* added to the nice value of the audit thread and of its
                               environment's writer (Linux: per thread); the gateway runs them
                               below its loops: a commit burst then never takes a core from a
                               request. > 0 also makes both SCHED_BATCH (never preempting a
                               running thread on waking; their fair share kept). 0: as the
                               process */
  unsigned pool_trim_ms;    /* blocks for audit_block_get left unused in the log's pool this
                               long are freed; default 10000 */
} audit_options;

/* Opens (creating, migrating) the audit environment and starts the audit
 * thread. On success *out is owned by the caller until audit_close. Returns
 * AUDIT_EINVAL, AUDIT_ENOMEM or the store's error (ST_E*). Off the loop. */
int audit_open(audit_log **out, const audit_options *o);

/* Stops accepting records (audit_submit → AUDIT_ECLOSED), commits
 * everything queued (one last attempt: if it fails the records are counted
 * in dropped and an error is logged), stops the thread, closes the env and
 * frees a. Never hangs on a failing store. No other thread may still call
 * into a, and no read txn on audit_store(a) may be open. NULL: no-op. */
void audit_close(audit_log *a);

/* The audit environment (borrowed, valid until audit_close): for read txns
 * (audit_query, audit_export_chunk, audit_heads), audit_verify, st_check,
 * st_backup. Never write to it except through this module. */
st_store *audit_store(audit_log *a);

/* ---- submission ------------------------------------------------------------------ */

/* Queues one record of tenant (incarnation tenant_uid). Any thread; never
 * blocks on I/O (a mutex and an append). Takes ownership of rec in every
 * case (also on error). rec is a JSON object of the caller's members
 * (kind, user, connector, tool, decision, args...); the module sets "seq",
 * "id", "prev" and "tenant" (replacing any the caller put there) and
 * "time" (ms since the epoch) unless rec has an integer "time", which is
 * kept. The caller's members are serialised here, on the caller's thread
 * (JSON_COMPACT | JSON_SORT_KEYS); records of one uid get consecutive seqs
 * in the order their audit_submit calls took the queue mutex. A uid
 * belongs to the tenant of its chain's first record: "tenant" in every
 * later record of that uid is that tenant.
 * Returns:
 *   0              queued;
 *   AUDIT_EBROKEN  queued, but the last commit failed (the gateway denies
 *                  calls it cannot audit while this lasts);
 *   AUDIT_EFULL    dropped: the queue is at queue_max or queue_bytes_max
 *                  (counted in stats.dropped; audit_ok false);
 *   AUDIT_ETOOBIG  dropped: over AUDIT_RECORD_MAX (counted in dropped);
 *   AUDIT_EINVAL   not queued: bad tenant/uid syntax or rec not an object;
 *   AUDIT_ECLOSED  not queued: audit_close began;
 *   AUDIT_ENOMEM. */
int audit_submit(audit_log *a, const char *tenant, const char *tenant_uid, json_t *rec);

/* The same for members the caller serialised itself (the data path's
 * records: no tree built, no parse): members/len is ONE compact JSON
 * object "{...}" that the caller vouches for — valid JSON (escaped
 * strings, valid UTF-8), no member named "seq", "id", "prev" or "tenant",
 * and an integer "time" (ms since the epoch): the module does not parse
 * it. Copied; the same returns as audit_submit (AUDIT_EINVAL also for a
 * text that is not "{...}" or holds a NUL byte). */
int audit_submit_text(audit_log *a, const char *tenant, const char *tenant_uid, const char *members, size_t len);

/* The data path's records built in place (no copy): a malloc'd block whose
 * first audit_text_headroom() bytes are the module's, then the members as
 * for audit_submit_text (len bytes, then a NUL). cap is the block's size
 * (at least headroom + len + 1). Takes ownership of block in every case
 * (it is freed, or kept for audit_block_get when cap is
 * AUDIT_BLOCK_BYTES); the same returns as audit_submit_text. */
size_t audit_text_headroom(void);
int audit_submit_block(audit_log *a, const char *tenant, const char *tenant_uid, char *block, size_t len,
                       size_t cap);

/* A block of AUDIT_BLOCK_BYTES for audit_submit_block: one the log
 * recycled from a committed record (the audit thread keeps up to 32768:
 * what the records of the last pool_trim_ms needed),
 * else a new one; NULL when out of memory. An ordinary malloc'd block:
 * the caller may realloc it (then its cap is the new size) or free it.
 * Any thread. Records are built on a loop and freed on the audit thread;
 * recycling them spares both a malloc and free from glibc's shared arena
 * per record (blocks this size miss the per-thread caches). */
#define AUDIT_BLOCK_BYTES 2048u
char *audit_block_get(audit_log *a);

/* false while the last commit failed (until a commit succeeds) or since a
 * record was refused for lack of room (until the next successful commit).
 * Any thread; atomics only. */
bool audit_ok(const audit_log *a);

/* Blocks until a commit attempt that began after this call has ended, so
 * every record submitted before the call is committed, or its commit
 * failed (then it is still queued: see audit_ok). Returns at once when
 * nothing is queued. Tests, shutdown, CLI: never on a loop thread, nor
 * from the log callback (the audit thread logs through it). */
void audit_flush(audit_log *a);

/* ---- verification --------------------------------------------------------------- */

/* report(ctx, uid, seq, msg): one problem; seq names the record at fault
 * (0 when the problem is the chain head itself); strings valid during the
 * call only. */
typedef void (*audit_report_fn)(void *ctx, const char *uid, uint64_t seq, const char *msg);

/* Verifies the chain of tenant_uid (NULL: every chain, and records with no
 * head) in one read snapshot of aud: every record's "prev" against the
 * hash of the record before it (the first one kept: the head's
 * pruned_hash), consecutive seqs from the head's first to its last, each
 * record's stored "seq" and "id" against its key, its "tenant" against the
 * head's, and the head's last seq and hash against the last record. Names
 * the record at fault: an edited record k is reported as seq k ("does not
 * hash to what record k+1 (or the chain head) recorded"), an edited "prev"
 * of record k as seq k, a deleted record by its missing seq. With
 * tenant_uid NULL also the SIEM sinks' delivery cursors (as st_check):
 * one past its chain's head, or of a chain that does not exist, witnesses
 * records cut from the end of a delivered chain or a delivered chain
 * deleted whole (reported with uid "" and seq 0). What no cursor covers — the newest
 * records cut off with the head moved back, a chain deleted whole — keeps
 * every link intact: only the chain heads anchored elsewhere (the log's
 * "chain head" lines) show it. Returns the
 * number of problems (0: intact) or a negative error (ST_E*). report may
 * be NULL. Holds a read txn for the whole walk: offline / admin thread. */
int audit_verify(st_store *aud, const char *tenant_uid, audit_report_fn report, void *ctx);

/* What the verification saw of one chain (strings valid during the call):
 * its head's first seq still stored and last seq written, the records it
 * read and checked (last - first + 1 when intact: records retention pruned
 * are not among them; first - 1 of them were pruned, the first kept
 * linking to the head's pruned_hash), and the head's hash. */
typedef struct audit_chain_summary {
  const char *tenant, *uid;
  uint64_t first, last;
  uint64_t checked;
  const char *hash;
} audit_chain_summary;
typedef void (*audit_chain_fn)(void *ctx, const audit_chain_summary *c);

/* audit_verify, and chain(ctx, …) (may be NULL) once per chain with a
 * readable head, after its walk, in the same read snapshot: what was
 * verified, not what a later read would find. */
int audit_verify_chains(st_store *aud, const char *tenant_uid, audit_report_fn report, audit_chain_fn chain,
                        void *ctx);

/* ---- retention -------------------------------------------------------------------- */

/* Deletes, chain by chain (in uid order), the oldest records whose "time"
 * is < before_ms, stopping in each chain at the first record that is not
 * (times are not assumed monotonic), at most max_records (>= 1) in total,
 * in one write job on the audit env; each touched head gets the new first
 * seq and pruned_hash (the hash of the last record deleted), so
 * audit_verify still passes. *pruned (may be NULL) = how many were deleted;
 * == max_records means call again. Blocks the caller until committed:
 * never on a loop thread. */
int audit_prune(audit_log *a, int64_t before_ms, size_t max_records, size_t *pruned);

/* ---- query and export (read side: the caller's short read txn) ------------------- */

typedef struct audit_filter {
  /* exact string matches against the record's member of the same name;
   * NULL: any (a record lacking the member never matches a non-NULL one) */
  const char *user, *connector, *tool, *decision, *kind;
  int64_t since_ms;   /* "time" >= since_ms; 0: no lower bound */
  int64_t until_ms;   /* "time" <  until_ms; 0: no upper bound */
  const char *cursor; /* NULL/"": newest first from the chain's last record; else a
                         next_cursor from a previous answer for the same uid */
  unsigned limit;     /* 1..AUDIT_QUERY_LIMIT_MAX; 0: AUDIT_QUERY_LIMIT_DEFAULT */
} audit_filter;

/* Records of tenant_uid matching f, newest first (descending seq), at most
 * f->limit. Examines at most AUDIT_SCAN_MAX records per call, and stops
 * before the next record once those examined hold AUDIT_SCAN_BYTES_MAX
 * stored bytes (each is parsed), so a selective filter never holds txn
 * long: the answer may then hold fewer than limit matches (even none) and
 * a next_cursor. It also stops after the
 * record that brings what it holds to AUDIT_QUERY_BYTES_MAX stored bytes
 * (at least one record, then a next_cursor): records of up to
 * AUDIT_RECORD_MAX each, parsed, take many times their size, so limit
 * alone does not bound the answer's memory. *out_array: a new JSON
 * array of the parsed records, owned by the caller (json_decref).
 * next_cursor: "" when nothing older is left to examine, else an opaque
 * string to pass as f->cursor (it encodes the next seq to examine, so
 * paging returns every match exactly once while records are only added).
 * A chain with no head answers an empty array. AUDIT_EINVAL for a bad
 * uid, limit over the max, negative times, since > until, or a malformed
 * cursor (the format is checked strictly). */
int audit_query(st_txn *txn, const char *tenant_uid, const audit_filter *f, json_t **out_array,
                char next_cursor[AUDIT_CURSOR_MAX]);

/* Called once per exported record with its stored bytes (a copy, valid
 * during the call; one JSON object without a newline). Non-zero stops the
 * export and is returned by audit_export_chunk (use a negative value). */
typedef int (*audit_emit_fn)(void *ctx, const char *bytes, size_t len);

#define AUDIT_EXPORT_MORE 1
/* Exports records of tenant_uid with seq > *after_seq whose "time" is in
 * [since_ms, until_ms) (0: unbounded, as in audit_filter), oldest first,
 * through emit. Stops after max_records (>= 1) emitted, AUDIT_SCAN_MAX
 * examined, or the record that brings the stored bytes examined to
 * AUDIT_SCAN_BYTES_MAX (at least one record a call), and sets *after_seq to the last seq examined: call again with
 * a new short read txn to continue (every record exactly once, in order).
 * Start with *after_seq = 0. Returns AUDIT_EXPORT_MORE when it stopped
 * early, 0 when the chain has nothing more after *after_seq, emit's
 * non-zero value, or a negative error. */
int audit_export_chunk(st_txn *txn, const char *tenant_uid, int64_t since_ms, int64_t until_ms,
                       uint64_t *after_seq, size_t max_records, audit_emit_fn emit, void *ctx);

/* Calls cb once per chain head (uid order) with copies valid during the
 * call: tenant, uid, the last seq written and the hash (hex) of that record
 * (also when retention has pruned it). Returns the number of heads, or a
 * negative error (AUDIT_ECORRUPT: an unreadable head). */
int audit_heads(st_txn *txn,
                void (*cb)(void *ctx, const char *tenant, const char *uid, uint64_t seq,
                           const char *hash_hex),
                void *ctx);

/* ---- delivery cursors of SIEM sinks -----------------------------------------------
 * A sink (the gateway's: "operator", a tenant's "tenant:<t>:<inc>" —
 * audit_tenant_sink_cursor) delivers each chain oldest first and
 * remembers, per chain, the last seq its receiver acknowledged. The cursor only moves forward and is written by the audit
 * thread with its next commit: a crash may forget the last batch_ms of
 * acknowledgements, so delivery is at least once (records carry a stable
 * id for the receiver to drop duplicates). */

#define AUDIT_SINK_MAX 96          /* a sink name: [a-z0-9:_-]{1,96} ("tenant:" 63 ":" 16 fits) */
#define AUDIT_CURSORS_PENDING 64   /* cursor updates queued between two commits */

/* The cursor of (sink, uid): *seq = the last seq acknowledged, 0 when the
 * sink never acknowledged one of uid. 0 or AUDIT_EINVAL, AUDIT_ECORRUPT,
 * ST_E*. The caller's read txn. */
int audit_cursor_get(st_txn *txn, const char *sink, const char *uid, uint64_t *seq);

/* Queues "sink acknowledged uid up to seq" for the next commit (which
 * comes within batch_ms even with no record queued). A cursor never moves
 * back (a smaller seq than stored or queued is ignored). Any thread; a
 * mutex, no I/O. 0, AUDIT_EINVAL, AUDIT_ECLOSED, or AUDIT_EFULL when
 * AUDIT_CURSORS_PENDING other (sink, uid) pairs wait for the commit (the
 * caller keeps its cursor in memory and sets it again later). */
int audit_cursor_set(audit_log *a, const char *sink, const char *uid, uint64_t seq);

/* Queues "forget every cursor of sink" for the next commit (a tenant's sink
 * deleted: its cursor goes with it, and a sink made later starts its own).
 * Updates of that sink still pending are dropped. Any thread; a mutex, no
 * I/O. 0, AUDIT_EINVAL, AUDIT_ECLOSED, or AUDIT_EFULL as audit_cursor_set
 * (the caller tries again later). */
int audit_cursor_drop(audit_log *a, const char *sink);

/* What a sink's deliverer last said about it (for the admin API and
 * metrics of another thread). Kept in the audit log, in memory. */
typedef struct audit_sink_state {
  bool failing;            /* the last POST failed */
  uint64_t delivered;      /* records the receiver accepted since the start */
  uint64_t posts_ok, posts_failed;
  uint64_t lag;            /* records written and not yet delivered, at the last look */
  uint64_t pruned;         /* records retention pruned before they were delivered, since the start */
  int64_t last_ok_ms;      /* 0: never since the start */
  int64_t last_failure_ms; /* 0: never since the start */
  char last_error[256];    /* the last failure in one secret-free sentence, or "" */
} audit_sink_state;
/* Sets (or, with st NULL, forgets) sink's state; any thread. 0 or AUDIT_ENOMEM. */
int audit_sink_state_put(audit_log *a, const char *sink, const audit_sink_state *st);
/* Copies sink's state: false when none was put. Any thread. */
bool audit_sink_state_get(audit_log *a, const char *sink, audit_sink_state *out);
/* cb for every sink's state, in the order they were first put, under the
 * log's mutex: cb must be short and must not call into a. */
void audit_sink_states_each(audit_log *a, void (*cb)(void *ctx, const char *sink, const audit_sink_state *st),
                            void *ctx);

/* Blocks until queued records and cursor updates are committed (or their
 * commit failed): audit_flush for the cursors too. Tests and the CLI. */
void audit_flush_all(audit_log *a);

/* ---- a tenant's own SIEM sink (main store) ---------------------------------------
 * A tenant may stream its own records to its own SIEM, besides the
 * operator's sink. The record lives in the MAIN store (ST_DB_AUDIT, key
 * "s" ‖ tenant → {"url","url_sealed"?,"format","token_set","created","updated","rev","inc","cursor"?}:
 * rev counts the writes of one sink, inc is random and set when the sink is
 * made (a sink deleted and made again starts at rev 1 again: inc tells the
 * two apart; a record written before inc existed gets one with its next
 * write), so (rev, inc) tells any two writes apart), its
 * token sealed in ST_DB_SECRETS bound to (tenant, AUDIT_SINK_SECRET_KIND,
 * ""); all go with the tenant (audit_register_store: purge and check).
 *
 * The URL's query is secret material too (Datadog's intake takes its API
 * key as ?dd-api-key=…), as a connector URL's is (store/url_query.h): the
 * record's "url" is the URL as shown, every query value replaced by "…" —
 * what GET, the audit record of the change and log lines show — and the
 * real URL, when it shows otherwise, is sealed beside the token (tenant,
 * AUDIT_SINK_URL_KIND, "") with "url_sealed": true. Only the sink driver
 * unseals it (audit_tenant_sink_url), for the POST.
 * The gateway's sink driver delivers the tenant's current chain to it with
 * its own cursor, named by "cursor" ("tenant:<t>:<inc>"), set by the write
 * that makes the sink and kept by updates: a sink deleted and made again
 * has another, so it starts as the first one did (from the chain's oldest
 * record kept), never from where the deleted one stopped. A record made
 * before "cursor" existed has none: its cursor is "tenant:<t>" (the name
 * every tenant sink's had), kept until the sink is deleted. */

#define AUDIT_SINK_URL_MAX 2048
#define AUDIT_SINK_TOKEN_MAX 4096
#define AUDIT_SINK_SECRET_KIND "audit.sink_token"
#define AUDIT_SINK_URL_KIND "audit.sink_url" /* the real URL, when its query holds values */
#define AUDIT_EINVALID (-31107) /* a sink document that does not validate (err says why) */

/* Validates a PUT body {"url","format"?,"token"?}: url an absolute http://
 * or https:// URL of at most AUDIT_SINK_URL_MAX bytes, no user info, no
 * fragment, no control characters or spaces (a query value may be "…", sent
 * back as shown: audit_tenant_sink_put keeps the stored one); format "ndjson" (default) or
 * "splunk_hec"; token (optional) 1..AUDIT_SINK_TOKEN_MAX printable ASCII
 * characters without spaces, or null to remove the stored one. Unknown
 * members are refused. 0 with *url, *format (borrowed from doc) and
 * *token (borrowed; NULL: absent, keep the stored one) and *drop_token
 * (true for "token": null); AUDIT_EINVALID with one sentence in err naming
 * the member (never quoting the token). Whether the URL's address may be
 * reached is the egress policy's, the caller's to check. */
int audit_tenant_sink_parse(const json_t *doc, const char **url, const char **format, const char **token,
                            bool *drop_token, char *err, size_t errlen);

/* Writes tenant's sink (token NULL and !drop_token: the stored token is
 * kept). url may send query values back masked ("…" or %E2%80%A6): each
 * keeps the stored URL's value of that name, only when everything before
 * the query (scheme, host, port, path) is the stored URL's — ST_EMASKED
 * otherwise (store/url_query.h), nothing written. A URL whose query holds
 * values is sealed and stored shown masked. inc: a fresh random id from
 * the caller (jobs are pure), stored when the sink is made, ignored when
 * one exists. *created: 1 when there was none. 0 or ST_E*. Write txn. */
int audit_tenant_sink_put(st_txn *txn, const char *tenant, const char *url, const char *format, const char *token,
                          bool drop_token, const char *now, const char *inc, int *created);
/* The stored record (owned by the caller) or ST_ENOTFOUND. */
int audit_tenant_sink_get(st_txn *txn, const char *tenant, json_t **rec);
/* The name of the delivery cursor of tenant's sink, rec its record: its
 * "cursor", or "tenant:<t>" for a record made before sinks had their own. */
void audit_tenant_sink_cursor(const char *tenant, const json_t *rec, char out[AUDIT_SINK_MAX + 1]);
/* The unsealed token (free with audit_tenant_sink_token_free: wiped), or
 * ST_ENOTFOUND when the sink has none; ST_ECRYPTO when it does not unseal. */
int audit_tenant_sink_token(st_txn *txn, const char *tenant, char **token);
void audit_tenant_sink_token_free(char *token);
/* The sink's real URL, where its records are POSTed. rec is the record
 * read in txn. One not sealed gives its own "url" (*url borrowed from rec,
 * *sealed NULL); one saying "url_sealed" the unsealed URL in *sealed (free
 * with audit_tenant_sink_url_free: wiped) and *url = *sealed.
 * ST_ENOTFOUND / ST_ECRYPTO when the sealed URL is missing or does not
 * unseal, ST_ECORRUPT without a "url"; then both are NULL. */
int audit_tenant_sink_url(st_txn *txn, const char *tenant, const json_t *rec, const char **url, char **sealed);
void audit_tenant_sink_url_free(char *sealed);
/* Deletes the sink, its token and its sealed URL: 0 or ST_ENOTFOUND or ST_E*. */
int audit_tenant_sink_del(st_txn *txn, const char *tenant);
/* Calls cb for every tenant sink (tenant order) with the record
 * (borrowed, valid during the call); cb's non-zero stops and is returned. */
int audit_tenant_sinks_each(st_txn *txn, int (*cb)(void *ctx, const char *tenant, const json_t *rec), void *ctx);
/* Registers on the MAIN store: the tenant purge of sink records, tokens
 * and sealed URLs, and st_check's part (records well-formed, of existing
 * tenants, token_set agreeing with a token that unseals, url_sealed with a
 * URL that unseals, no query value in clear). */
int audit_register_store(st_store *main_store);
/* Migration 12's data step (store.h "upgrades", given by the module
 * table): every tenant sink whose URL has a query value in clear gets it
 * sealed and shown masked. Needs the master key (ST_ENOKEY without one,
 * when there is anything to seal). Write txn of the migration. */
int audit_upgrade_sink_urls(st_txn *txn);

/* ---- call arguments in records ---------------------------------------------------- */

typedef enum audit_args_mode {
  AUDIT_ARGS_NONE = 0, /* no arguments in records */
  AUDIT_ARGS_DIGEST,   /* {"digest":"sha256:<hex>","bytes":N} of the redacted arguments */
  AUDIT_ARGS_FULL,     /* the redacted arguments (or the digest form if over the cap) */
} audit_args_mode;

/* password, passwd, secret, token, authorization, api_key, private_key,
 * credential, cookie; NULL-terminated. */
extern const char *const audit_redact_default[];

#define AUDIT_ARGS_DEPTH_MAX 64 /* deeper values become the string "[too deep]" */

/* Whether the text at p (n bytes) begins with pattern pat, ASCII case
 * folded and every '_' and '-' skipped on both sides after its first
 * character (the text's first byte must be pat's first that is not one:
 * audit_redact_lead), so "api_key" is at "apiKey", "api-key" and
 * "APIKEY". A pattern of separators only ("_") is compared as it is. A
 * key "contains" a pattern when it is at one of its bytes. */
bool audit_redact_at(const char *p, size_t n, const char *pat);
/* pat's first character that is not a separator (pat itself when it has
 * none): the byte a text must have where audit_redact_at can match. */
const char *audit_redact_lead(const char *pat);

/* What a record keeps of a call's arguments. redact: NULL-terminated key
 * patterns (NULL: audit_redact_default); an object member whose key
 * contains a pattern (audit_redact_at: any case, with or without the
 * separators '_' and '-'), has its value replaced by
 * "[redacted]", at any depth, also inside arrays. N and the digest are the
 * byte length and SHA-256 of the redacted copy serialised with
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY, so they do not depend
 * on the order of keys. FULL: the redacted copy, or when N > cap_bytes
 * {"truncated":true,"bytes":N,"digest":"sha256:<hex>"}. DIGEST:
 * {"digest":"sha256:<hex>","bytes":N}. NONE, args NULL or an allocation
 * failure: NULL. Returns a new reference owned by the caller (put it in
 * the record with json_object_set_new). Never modifies args. */
json_t *audit_args(const json_t *args, audit_args_mode mode, const char *const *redact,
                   size_t cap_bytes);

/* A tenant's additions to the redaction patterns (the tenant setting
 * audit_redact): comma-separated patterns, each 1..AUDIT_REDACT_PATTERN_MAX
 * characters of [A-Za-z0-9_-], at most AUDIT_REDACT_TENANT_MAX of them;
 * "" is none. A pattern outside the grammar would still only mask more,
 * but a typo (a space, a quote) would then silently mask nothing the admin
 * meant: refusing it says so. */
#define AUDIT_REDACT_TENANT_MAX 32
#define AUDIT_REDACT_PATTERN_MAX 64
/* the longest valid value: every pattern at its longest, with the commas */
#define AUDIT_REDACT_VALUE_MAX (AUDIT_REDACT_TENANT_MAX * (AUDIT_REDACT_PATTERN_MAX + 1) - 1)

/* 0 when s (NUL-terminated) is a valid value; AUDIT_EINVAL with a message
 * in err (what is wrong, and where: "pattern 3 ...") otherwise. */
int audit_redact_check(const char *s, char *err, size_t errlen);

/* Splits s (a comma-separated list, NULL: none; copied into buf, cap
 * bytes) into NUL-terminated patterns appended at pats[*n] (pats has room
 * for max patterns and the NULL after them: max + 1 slots), and leaves
 * pats[*n] NULL. Empty pieces are skipped; pieces past max or past buf's
 * end are dropped. The patterns point into buf (valid while buf is). For a
 * value audit_redact_check accepted, with cap > AUDIT_REDACT_VALUE_MAX and
 * room for AUDIT_REDACT_TENANT_MAX more, nothing is dropped. */
void audit_redact_split(const char *s, char *buf, size_t cap, const char **pats, size_t *n, size_t max);

/* ---- chain heads in the log, stats ----------------------------------------------- */
/* Every head_log_ms the audit thread logs one info line per chain (module
 * "audit"): "chain head tenant=<t> uid=<u> seq=<n> hash=<hex>", so an
 * external system can anchor the chains. */

#define AUDIT_STATS_NBUCKETS 12
/* Upper bounds (ms) of the commit latency histogram; the last is +Inf. */
extern const double audit_stats_bucket_le_ms[AUDIT_STATS_NBUCKETS];

typedef struct audit_stats {
  uint64_t written;         /* records committed */
  uint64_t dropped;         /* records refused (EFULL, ETOOBIG) or lost at close */
  uint64_t queue_records;   /* queued, not yet committed (incl. the batch being written) */
  uint64_t queue_bytes;     /* the memory they hold: a record's block (at least
                               AUDIT_BLOCK_BYTES), or its bytes and the entry's header */
  uint64_t commits;         /* successful batch commits */
  uint64_t commit_failures; /* failed batch commits */
  double last_commit_ms;    /* duration of the last attempt (job queued → committed, fsync incl.) */
  double commit_ms_sum;     /* over every attempt */
  uint64_t commit_ms_count;
  uint64_t commit_ms_bucket[AUDIT_STATS_NBUCKETS]; /* cumulative: <= le[i] */
  bool broken;              /* the last commit failed */
  uint64_t pool_blocks;     /* blocks of AUDIT_BLOCK_BYTES kept for audit_block_get */
  uint64_t pauses;          /* commit jobs' steps off the CPU (after every 32 KiB of a
                               batch, in its first half batch interval, at most 25 ms;
                               none in a batch the queue's length forced out) */
} audit_stats;
/* Snapshot. Any thread. */
void audit_stats_get(audit_log *a, audit_stats *out);

#endif
