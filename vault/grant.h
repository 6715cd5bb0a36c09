/* vault/grant.h — per-user upstream OAuth grants, and the durable queue that
 * revokes them at the upstream (RFC 7009) after they leave the live tables.
 *
 * A grant is what an employee's connect flow (gateway/api/connect.c) got
 * from a connector's authorization server: access token, refresh token,
 * expiry, scope. The gateway injects the access token on that employee's
 * calls to that connector (vault_upstream_cred) and nobody else's.
 *
 * Store layout (ST_DB_VAULT; tenant, user and connector are bounded ids
 * without NUL):
 *   "g" tenant \0 user \0 connector  → {"created","updated","expires_at",
 *                                       "scope","refreshes","bind"?}  (no secret)
 *   "c" tenant \0 connector \0 user  → ""   (grants of a connector)
 *   "q" u64 BE due (ms) ‖ id(16)     → revocation job (below)
 *   "r" tenant \0 id(16)             → {"id","connector","user","reason",
 *        "state":"pending|done|failed|manual","created","updated",
 *        "attempts","last_error"?}   (the admin's revocations report;
 *        really "r" tenant \0 u64 BE (UINT64_MAX - created ms) id(16):
 *        newest first)
 *   "R" tenant                       → u64 BE: how many "r" keys the tenant
 *        has (missing in a store written before it: counted on first use)
 *   "x" ‖ a queue key                → {"at" (ms), "why", "id"?, "tenant"?,
 *        "entry" (the value as it was, hex, at most 4 KiB of it)}
 *        — a queue entry set aside as corrupt (vault_revoke_set_aside)
 * Sealed (ST_DB_SECRETS, store/seal.h):
 *   {tenant, "vault.grant", user "/" connector} → {"access_token",
 *        "refresh_token"?, "expires_at"}
 *   {"", "vault.revoke", id}  → {"access_token"?, "refresh_token"?,
 *        "client_secret"?}   — operator-wide, so a tenant's deletion (whose
 *        purge removes its secrets) still revokes at the upstream.
 *
 * "bind" (a decimal string) is new with every connect (a new key, a
 * reconnect) and kept by refreshes: with the connector's binding it says
 * which upstream sessions are still the user's (vault_upstream_bind) — an
 * upstream knows a session as whoever opened it, so one opened with the
 * person's old key or old account must not go on under the new one. It is
 * the number of the write transaction that connected (store.h's
 * st_txn_snapshot: a pure function of the store, never the same for two
 * commits), so it never comes back to a value it had, even across a
 * disconnect and a connect; a record written before it existed has none
 * (its "created" stands in). Views leave it out.
 *
 * Leaving the live tables (vault_grant_drop, vault_grants_cut_user,
 * vault_grants_cut_connector): in the caller's write transaction the grant
 * and its sealed tokens are deleted and, when the connector names a
 * revocation_url, a revocation job is queued with the tokens re-sealed
 * under its id, the connector's client authentication and the URL copied
 * in (the connector may be deleted before the job runs); without one the
 * report says "manual" (revoke at the upstream by hand). The worker
 * (vault_revoke_next / vault_revoke_result, driven from a loop in
 * gateway/mcp/vault_worker.c) sends the requests and records the outcome.
 *
 * Threading: pure functions of a transaction; writes in writer jobs only.
 * No message of this module contains a token or a secret. */
#ifndef MCPGATE_VAULT_GRANT_H
#define MCPGATE_VAULT_GRANT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define VAULT_GRANT_KIND "vault.grant"
#define VAULT_REVOKE_KIND "vault.revoke"
#define VAULT_CLIENT_KIND "connector.oauth_client"
#define VAULT_TOKEN_MAX 8192 /* an access or refresh token, bytes */
#define VAULT_REVOKE_ID_LEN 16

/* What ST_EVENT_GRANT_CHANGED carries (borrowed for the emit): a grant
 * created by a connect, or dropped — the user's tool list changes. */
typedef struct vault_grant_event {
  const char *tenant, *user, *connector;
  bool connected;
  /* the credential the user's upstream sessions with the connector were
   * opened with, if any, is no longer theirs: a connect (another key, a
   * reconnect, maybe as another upstream account; also a first connect,
   * after a grant dropped without ending them) or a grant dropped on its
   * own (a disconnect, an admin's disconnect, lost_access) — not
   * invalid_grant (the authorization server ended the grant: the call that
   * found out answers "connect again"), nor within a cut of every grant of
   * the user, the connector or the tenant, whose trigger ends those
   * sessions itself. gateway/mcp ends them. Such a write first emits
   * ST_EVENT_CREDENTIAL_ENDING (vault.h's vault_ending_event, for the
   * user), while the old grant can still be read: a connect, and a drop
   * of a grant that exists. */
  bool superseded;
} vault_grant_event;

/* The tokens of a grant (owned strings, wiped by vault_tokens_free). */
typedef struct vault_tokens {
  char *access;
  char *refresh;      /* NULL: none issued */
  int64_t expires_at; /* unix seconds; 0: the AS did not say */
  char *scope;        /* NULL: not said */
} vault_tokens;
void vault_tokens_free(vault_tokens *t);

/* Takes the tokens out of a token endpoint's JSON reply (RFC 6749 §5.1):
 * access_token (required, printable ASCII, ≤ VAULT_TOKEN_MAX), token_type
 * (Bearer, any case), expires_in (optional number of seconds, relative to
 * now_s), refresh_token, scope. 0, or VAULT_EINVALID with a message (which
 * never quotes a token) in err. On a refresh reply without refresh_token
 * the caller keeps the old one. */
int vault_tokens_from_reply(const char *body, size_t len, int64_t now_s, vault_tokens *out, char *err,
                            size_t errlen);

/* Write txn: stores (or replaces) the grant of (tenant, user, connector).
 * `now` RFC 3339. flags: VAULT_PUT_CONNECT — the person connected (or saved
 * a key): the tool list changes (ST_EVENT_GRANT_CHANGED, superseded),
 * "created" restarts and "bind" is new;
 * VAULT_PUT_REVOKE_OLD — a replaced grant's old tokens are queued
 * for revocation (a reconnect; a refresh's rotation retires them at the AS
 * itself, and a replaced API key is the person's to revoke). */
#define VAULT_PUT_CONNECT 0x1
#define VAULT_PUT_REVOKE_OLD 0x2
int vault_grant_put(st_txn *txn, const char *tenant, const char *user, const char *connector,
                    const vault_tokens *t, const char *now, int flags);
/* The grant's tokens (ST_ENOTFOUND: none). Any txn. */
int vault_grant_get(st_txn *txn, const char *tenant, const char *user, const char *connector,
                    vault_tokens *out);
/* The grant's record without secrets (caller decref), ST_ENOTFOUND. */
int vault_grant_info(st_txn *txn, const char *tenant, const char *user, const char *connector,
                     json_t **rec);
/* Every grant of a user: [{"connector", "created", "updated", "expires_at",
 * "scope"}] in connector order (never a token, nor its "bind"). */
int vault_grants_of_user(st_txn *txn, const char *tenant, const char *user, json_t **arr);

/* Write txn: the grant leaves the live tables and is queued for revocation
 * (see the header). reason: a short literal ("disconnect", "deactivated",
 * "connector_deleted", "lost_access", "tenant_deleted", "reconnect",
 * "invalid_grant"). ST_ENOTFOUND when there is none. */
int vault_grant_drop(st_txn *txn, const char *tenant, const char *user, const char *connector,
                     const char *reason, const char *now);
/* Write txn: every grant of the user / of the connector / of the tenant. */
int vault_grants_cut_user(st_txn *txn, const char *tenant, const char *user, const char *reason,
                          const char *now);
int vault_grants_cut_connector(st_txn *txn, const char *tenant, const char *connector,
                               const char *reason, const char *now);

/* ---- refresh, single-flight across loops ---------------------------------
 * Two loops refreshing a rotating refresh token at once would make one get
 * invalid_grant and delete a good grant: refreshes are serialised through
 * the store. A loop whose grant expires claims the refresh (a write job);
 * only the claimant calls the token endpoint; the others wait and re-read.
 * A claim lapses after VAULT_REFRESH_CLAIM_MS (a claimant that died).
 *
 * So the claimant's token request must be over before its claim can lapse:
 * it ends, answered or aborted, VAULT_REFRESH_DEADLINE_MS after the claim
 * was taken — connect, first byte and the whole body together, whatever
 * the connector's own timeouts say (an AS that sends its head and then
 * trickles the body is never idle). The rest of the claim's life is slack
 * for a loop that runs its timer late. An aborted request is a transient
 * failure: the claim ends, the grant stays, a later call tries again. */
#define VAULT_REFRESH_CLAIM_MS 20000
#define VAULT_REFRESH_DEADLINE_MS 15000
_Static_assert(VAULT_REFRESH_DEADLINE_MS + 5000 <= VAULT_REFRESH_CLAIM_MS,
               "a refresh request must end well before its claim can lapse");
enum { VAULT_CLAIMED = 0, VAULT_CLAIM_BUSY = 1, VAULT_CLAIM_FRESH = 2 };
/* Write txn: VAULT_CLAIMED (go), VAULT_CLAIM_BUSY (another holds a live
 * claim: wait), VAULT_CLAIM_FRESH (the grant no longer expires within
 * 10 s: someone refreshed it — read it again), ST_ENOTFOUND (no grant). */
int vault_grant_claim(st_txn *txn, const char *tenant, const char *user, const char *connector, int64_t now_s,
                      uint64_t now_ms);
/* Where tokens came from: the connector record as read when the request
 * that got them (a refresh, a connect's code exchange) was sent, the
 * client secret sent with it (NULL: none), both borrowed, and the tenant
 * incarnation it was sent in (st_tenant_uid_get, read with the record;
 * NULL or "": unknown, which no incarnation matches). */
typedef struct vault_token_origin {
  const json_t *rec;
  const char *client_secret;
  const char *tenant_uid;
} vault_token_origin;
/* What became of tokens nobody holds (vault_tokens_revoke and
 * vault_grant_refreshed fill it; may be NULL). */
typedef struct vault_late {
  /* the tenant is no longer the incarnation the request was sent in (its
   * purge runs, or it was deleted and its id made again: another tenant):
   * nothing was written under its id — no grant, no report */
  bool elsewhere;
  /* then: the revocation job queued for the tokens (for the operator's
   * log, their only record), "" when none could be (the connector as sent
   * names no revocation endpoint, or origin no record) */
  char id[VAULT_REVOKE_ID_LEN + 1];
} vault_late;
/* Write txn: a refresh that used `used_refresh` succeeded: the new tokens
 * replace the grant (the old refresh token kept when none was issued) and
 * the claim ends. When the grant's refresh token is no longer used_refresh
 * the grant is left as it is: dropped meanwhile (the user cut, a
 * disconnect, the connector moved to another authorization server or
 * deleted), the new tokens, live at the AS and held by nobody, are queued
 * for revocation (reason "late_refresh") toward origin — the revocation_url
 * and client of the connector as the refresh was sent, the authorization
 * server that issued them, never the one the connector names now (origin
 * without rec: the connector as stored now); replaced (a reconnect), they
 * are ignored. A tenant that is no longer the incarnation the refresh was
 * sent in (origin->tenant_uid) has nothing of it read or written: the
 * tokens are revoked as vault_tokens_revoke says (late->elsewhere). */
int vault_grant_refreshed(st_txn *txn, const char *tenant, const char *user, const char *connector,
                          const char *used_refresh, const vault_tokens *fresh, const vault_token_origin *origin,
                          const char *now, vault_late *late);
/* Write txn: tokens the gateway got for (user, connector) and stores for
 * nobody — a connect refused after its code exchange (the person cut or
 * signed out meanwhile, the connector changed, deleted or no longer shown
 * to them, the tenant deleted) — are queued for revocation with reason (a
 * short literal: "late_connect") toward origin, as vault_grant_refreshed's
 * late tokens are, and reported in the tenant's revocations.
 * Only while the tenant is still the active incarnation the request was
 * sent in (origin->tenant_uid). Otherwise — its purge under way, or the id
 * deleted and made again meanwhile: another tenant, whose admins must
 * never see the old one's people — the tokens are still live at the
 * authorization server, so they are queued all the same, toward
 * origin->rec (none without it: where to send them is not known), but
 * nothing is written under the tenant's id: no report, as for the
 * revocations a tenant's purge queues once its reports are gone; late
 * says so, for the operator's log. 0 or a store error. */
int vault_tokens_revoke(st_txn *txn, const char *tenant, const char *user, const char *connector,
                        const vault_tokens *t, const vault_token_origin *origin, const char *reason,
                        const char *now, vault_late *late);
/* Write txn: it failed. invalid (the AS said invalid_grant): the grant is
 * dropped — only if its refresh token is still used_refresh; otherwise the
 * claim just ends (a network error, a 5xx: the next call tries again). */
int vault_grant_refresh_failed(st_txn *txn, const char *tenant, const char *user, const char *connector,
                               const char *used_refresh, bool invalid, const char *now);

/* ---- loss of access, after a grace period --------------------------------
 * A grant whose connector the user's policy no longer shows (or whose
 * connector is no longer an oauth connector) is marked "hidden_since" by a
 * sweep; one still hidden grace_ms later is dropped (reason "lost_access");
 * one visible again is unmarked. visible() answers for one grant (the
 * gateway's policy, which vault does not include). */
typedef bool (*vault_visible_fn)(void *ctx, st_txn *txn, const char *tenant, const char *user, const char *connector);
/* Write txn: sweeps up to limit grants after the 'g' key *cursor (a
 * caller-owned buffer of VAULT_SWEEP_CURSOR bytes, "" at first; "" again
 * when the sweep went round). Returns the grants dropped, or an error. */
#define VAULT_SWEEP_CURSOR 300
int vault_grants_sweep(st_txn *txn, uint64_t now_ms, uint64_t grace_ms, vault_visible_fn visible, void *ctx,
                       char *cursor, int limit);

/* ---- the revocation queue ---------------------------------------------- */

/* A revocation job as the worker sees it (owned; vault_revoke_job_free). */
typedef struct vault_revoke_job {
  char id[VAULT_REVOKE_ID_LEN + 1];
  char tenant[64];
  uint64_t due_ms;
  int attempts;
  int64_t created_ms;
  char *url;           /* revocation endpoint */
  char *client_id;
  char *client_secret; /* NULL: public client; wiped */
  bool auth_post;      /* client_secret_post (else HTTP Basic) */
  char *refresh;       /* tokens still to revoke (wiped); NULL when done */
  char *access;
  long connect_ms, first_byte_ms;
  char *ca_file;
  /* the URL was named by a discovered upstream off the hosts the admin
   * chose (vault_connector_url_admin_set, when it was queued): fetched at
   * the untrusted egress level */
  bool untrusted;
} vault_revoke_job;
void vault_revoke_job_free(vault_revoke_job *j);

/* Any txn: the first job due at or before now_ms (0 with *job filled),
 * ST_ENOTFOUND when none is due; *next_due_ms (when not NULL) is the due
 * time of the first job at all (0: the queue is empty). */
int vault_revoke_next(st_txn *txn, uint64_t now_ms, vault_revoke_job *job,
                      uint64_t *next_due_ms);
/* Whether the worker takes a due job of tenant (id: the job's) now; false
 * skips it for a later one (its tenant has a request in flight). */
typedef bool (*vault_revoke_pick_fn)(void *ctx, const char *tenant, const char *id);
/* The same, the first due job that pick takes (pick NULL: the first due),
 * looking at most VAULT_REVOKE_SCAN entries of the queue.
 * An entry that cannot be a job is passed over, never taken and never a
 * stop (one such entry at the head once held every tenant's revocations):
 *  - a corrupt record — a key of another shape, a value that is not a JSON
 *    object, an id, tenant or url missing or malformed, an id that is not
 *    its key's (the outcome could never be written: it would be sent
 *    again without end) — is counted in *corrupt (when not NULL): the
 *    caller sets it aside (vault_revoke_set_aside);
 *  - sealed tokens that do not unseal (ST_ECRYPTO: a damaged blob, or the
 *    wrong master key) stay queued, as they may unseal again once the
 *    operator restores the key; st_check names them. */
#define VAULT_REVOKE_SCAN 256
int vault_revoke_next_pick(st_txn *txn, uint64_t now_ms, vault_revoke_pick_fn pick, void *ctx, vault_revoke_job *job,
                           uint64_t *next_due_ms, int *corrupt);

/* A queue entry set aside: what the operator's log says of it. */
typedef struct vault_set_aside {
  char id[VAULT_REVOKE_ID_LEN + 1]; /* "" when its key holds none */
  char tenant[64];                  /* "" when neither the entry nor a report names one */
  char why[120];
} vault_set_aside;
#define VAULT_SET_ASIDE_MAX 16
/* Write txn: the due entries that vault_revoke_next_pick counts as
 * corrupt (among the first VAULT_REVOKE_SCAN of the queue), at most
 * VAULT_SET_ASIDE_MAX, leave the queue for "x" (the layout above), and the
 * report of each, when it can be found (the tenant and report time the
 * entry names, else its id among the reports), says "failed" with a
 * last_error saying so: the tokens it was to revoke may still be live at
 * the upstream, to be revoked there by hand. Returns how many, each
 * described in out[] (out may be NULL, else VAULT_SET_ASIDE_MAX long). */
int vault_revoke_set_aside(st_txn *txn, uint64_t now_ms, const char *now, vault_set_aside *out);
/* Write txn: entries set aside before before_ms (or whose time cannot be
 * read) are dropped with their sealed tokens, at most limit of them; st_check
 * names each until then. Returns how many. */
int vault_revoke_set_aside_drop(st_txn *txn, uint64_t before_ms, int limit);

/* Write txn: the worker's outcome for job id (due_ms as read). done: every
 * token revoked (or the AS said the token is unknown: RFC 7009 §2.2 200);
 * final: a 4xx or give-up — the report says "failed" with err; otherwise
 * the job is re-queued at retry_ms with attempts+1 and err kept as
 * last_error. A job no longer queued (already finished elsewhere) is
 * ignored (0). */
int vault_revoke_result(st_txn *txn, const char *id, uint64_t due_ms, bool done, bool final, uint64_t retry_ms,
                        const char *err, const char *now);

/* A tenant's reports are bounded: every write that adds one to a tenant
 * holding more than VAULT_REPORTS_MAX deletes that tenant's oldest
 * FINISHED ones (done, failed, manual) — at most VAULT_REPORTS_TRIM of
 * them among the VAULT_REPORTS_TRIM_LOOK oldest — so an employee who
 * reconnects or disconnects at request rate cannot fill the store every
 * tenant shares. A pending report is never deleted (its revocation is
 * still queued): the bound holds while fewer than VAULT_REPORTS_MAX are
 * pending. The listing shows the newest 1000 only, so nothing shown is
 * lost. */
#define VAULT_REPORTS_MAX 4096
#define VAULT_REPORTS_TRIM 4
#define VAULT_REPORTS_TRIM_LOOK 64
/* The tenant's revocations report, newest first, at most limit. */
int vault_revocations_list(st_txn *txn, const char *tenant, int limit, json_t **arr);
/* Counts for metrics: pending jobs, and reports by state. */
typedef struct vault_counts {
  long grants, pending, done, failed, manual;
  long corrupt; /* queue entries set aside (vault_revoke_set_aside), not yet dropped */
} vault_counts;
int vault_counts_get(st_txn *txn, vault_counts *out);

/* Purge step for tenant deletion: queues every grant of the tenant for
 * revocation and deletes its reports. Up to limit keys; returns the count. */
int vault_grant_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers the grant hook (a cut user's grants are revoked) and the
 * purge — before the connectors' and the secrets' purges, which remove
 * what a revocation job copies. At startup. (A deleted connector's grants
 * are revoked by vault_connector_delete itself, before its record goes.) */
int vault_grant_register(st_store *st);

#endif
