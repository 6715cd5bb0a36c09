/* vault/rediscover.h — when a discovered connector
 * ({"type":"oauth","discover":true}) is read again from its upstream.
 *
 * What an upstream says about its authorization (its protected-resource
 * metadata, its authorization server's metadata, the gateway's
 * registration there) can change after the admin's PUT: the vendor moves
 * its authorization server, rotates endpoints, or forgets the gateway's
 * dynamic registration. So the gateway reads it again:
 *   - "scheduled": every discovery_refresh_s after the last successful
 *     discovery (gateway config);
 *   - "rejected": the token endpoint answered invalid_client to the stored
 *     registration (a code exchange or a refresh): register anew now;
 *   - "expiring": the registration's client_secret_expires_at is near:
 *     register anew before it lapses;
 *   - "admin": POST …/connectors/{c}/rediscover.
 * The reading itself is the admin PUT's discovery, run by the gateway
 * (gateway/api/admin_discover.c); this file keeps the durable schedule so
 * a restart loses nothing.
 *
 * Store layout (ST_DB_VAULT, beside grant.h's keys):
 *   "e" tenant \0 connector          → {"due": ms, "reason", "attempts",
 *        "last_at"?: ms, "last_error"?, "last_result"?,
 *        "last_rejected_at"?: ms (the last reading for "rejected")}
 *   "d" u64 BE due (ms) tenant \0 connector → ""   (the due index)
 * Every "e" has exactly one "d" at its due time; st_check verifies it.
 *
 * Threading: pure functions of a transaction; writes in writer jobs only. */
#ifndef MCPGATE_VAULT_REDISCOVER_H
#define MCPGATE_VAULT_REDISCOVER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

#define VAULT_REDISCOVER_REJECTED_MIN_MS (60 * 1000) /* "rejected" at most this often per connector */
#define VAULT_REDISCOVER_ERROR_MAX 300                /* last_error kept, bytes */
#define VAULT_REDISCOVER_NEVER INT64_MAX              /* the due of an entry kept only for its outcome */

/* Schedules (tenant, connector) at due_ms for reason ("scheduled",
 * "rejected", "expiring", "admin"), replacing its entry. With sooner_only,
 * an existing entry due earlier is kept (its reason too). attempts and
 * last_* of an existing entry are kept. 0 or ST_E*. */
int vault_rediscover_schedule(st_txn *txn, const char *tenant, const char *connector, int64_t due_ms,
                              const char *reason, bool sooner_only);

/* "rejected": due now, unless a reading for "rejected" ended less than
 * VAULT_REDISCOVER_REJECTED_MIN_MS ago (then at that bound) — a token
 * endpoint that keeps refusing even new registrations does not make the
 * gateway register in a loop. Only for a discovered connector registered
 * by DCR (else 0, nothing scheduled: a CIMD or admin-set client cannot be
 * registered anew). */
int vault_rediscover_rejected(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms);

/* Records an attempt's outcome and schedules the next: result "unchanged"
 * | "changed" | "failed" (error: one secret-free sentence, or NULL), the
 * next reading at next_due_ms (0: none — the entry stays for its outcome)
 * for next_reason. A failure counts attempts (reset by a success).
 * fresh: the reading registered anew (or tried to). A reading that did not
 * leaves a "rejected" entry as it is — a rejection that arrived while it
 * ran (vault_rediscover_rejected) is still owed its new registration, and
 * its floor is not moved. 0, ST_ENOTFOUND (no entry: schedule one first)
 * or ST_E*. */
int vault_rediscover_done(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms,
                          const char *result, const char *error, int64_t next_due_ms, const char *next_reason,
                          bool fresh);

/* Removes the entry (the connector was deleted or is no longer discovered). 0 or ST_E*. */
int vault_rediscover_cancel(st_txn *txn, const char *tenant, const char *connector);

/* The entry due first if due at now_ms: 0 with tenant, connector, reason
 * (NUL-terminated, fit 64 / 40 / 16 bytes) and its attempts; ST_ENOTFOUND
 * when nothing is due. */
int vault_rediscover_next(st_txn *txn, int64_t now_ms, char tenant[64], char connector[40], char reason[16],
                          int *attempts);

/* The entry as the admin sees it (owned): {"next_check_at","reason",
 * "attempts","last_checked_at"?,"last_result"?,"last_error"?} with RFC 3339
 * times (no next_check_at: none planned); NULL when there is none. */
json_t *vault_rediscover_status(st_txn *txn, const char *tenant, const char *connector);

/* Backoff after n failed attempts (1 → 1 min, doubling, at most cap_ms). */
int64_t vault_rediscover_backoff_ms(int attempts, int64_t cap_ms);

/* st_check of the schedule and the tenant purge of its entries. */
int vault_rediscover_register(st_store *st);
int vault_rediscover_purge_tenant(st_txn *txn, const char *tenant, int limit);

#endif
