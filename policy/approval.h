/* policy/approval.h — approval requests for tools/call decided "approve",
 * and the grants an approval leaves (issue 23).
 *
 * A call the policy decides "approve" is held by the gateway
 * (gateway/mcp/held.c) while a reviewer decides. What is stored:
 *
 *   request  tenant \0 'r' id → JSON {id, user, session, connector, tool,
 *            arguments (as recorded: redacted, capped), args_sha256,
 *            approvers: [group ids], timeout_s, grant_minutes, created,
 *            expires (ms since the epoch), state, and once decided:
 *            decided_by, decided_at, reason}
 *            state: pending | approved | denied | cancelled; a pending
 *            request past `expires` reads as "expired" (never stored: the
 *            clock decides, nothing has to run).
 *   by user  tenant \0 'u' user \0 id → "" (a user's requests, cancelled
 *            when the user is cut; at most AP_KEEP_PER_USER kept)
 *   by time  tenant \0 'c' (UINT64_MAX - created, 8 bytes big-endian) id
 *            → "" (lists, newest first, without reading the rest)
 *   pending  tenant \0 'p' id → "" (written with the request, deleted by
 *            its decision, and by the user's next request once expired:
 *            the pending list reads only these)
 *   grant    tenant \0 'g' user \0 sha256hex(connector \0 tool \0 args_sha256)
 *            → JSON {request, connector, tool, expires, uses, basis,
 *            in_use?}; uses 1: this call once (grant_minutes 0), 0: any
 *            number of times until expires (grant_minutes N); basis: what
 *            the policy in force asked of the call when it was approved —
 *            {approvers: [group ids, sorted: the matching approve rules'
 *            and, where one names none, the tenant's approver_groups],
 *            grant_minutes} — or null when it asked no approval by then.
 *            A grant is taken (and counted live) only while the policy
 *            asks the same of that user's call now: a membership change
 *            (Okta moving the user to a group whose rule names other
 *            approvers, other minutes, or blocks the tool) or a change of
 *            approver_groups leaves it untaken, and it stands again only
 *            if the same basis comes back before it expires. A grant
 *            without a basis (stored before bases were) is never taken.
 *            An approval's minutes are the request's, at most the
 *            basis's (the user may have moved while it was pending).
 *            A one-call grant taken stays, in_use, until it expires: the
 *            user's cut deletes it like any other, so a give-back can
 *            never outlive the cut.
 *            The user's next request deletes their expired grants.
 *
 * An approval is always a grant: the held call takes it (ap_grant_take)
 * before it goes upstream, and so does a retry by a client that left —
 * one approval, one call (grant_minutes 0). Deciding is done as oneself:
 * the reviewer is an active user of the tenant, a member of one of the
 * request's approver groups, and not its requester (ap_decide checks all
 * three in the deciding transaction). An admin may cancel, never approve.
 *
 * Every decision emits AP_EV_DECIDED in its transaction (the MCP proxy
 * turns it into a message to every loop: the held stream answers). A user
 * cut (deactivated, deleted, signed out everywhere) cancels their pending
 * requests and deletes their grants in the same transaction; so does the
 * end of an MCP session — its client's DELETE, its expiry, its eviction —
 * for the requests made in it (ap_session_gone), and a new policy
 * document or a membership change for the requests of calls it blocks
 * for their requester (ap_cancel_if_blocked, ap_users_recheck).
 *
 * Ids are 32 lower-case hex characters from the CSPRNG: a reviewer's link
 * names one, nothing can be guessed from it. Threads: writes in writer
 * jobs; reads on any thread with a read txn. */
#ifndef MCPGATE_POLICY_APPROVAL_H
#define MCPGATE_POLICY_APPROVAL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "store/store.h"

#define AP_ID_LEN 32
#define AP_REASON_MAX 500

/* Errors (policy's range, see policy.h). */
enum {
  AP_EDECIDED = -30510,    /* the request is no longer pending (decided, cancelled or expired) */
  AP_ESELF = -30511,       /* nobody decides their own request */
  AP_ENOTAPPROVER = -30512, /* the reviewer is in none of the request's approver groups */
  AP_EREVIEWER = -30513,   /* the reviewer is not an active user of the tenant */
  AP_ETOOMANY = -30514,    /* the requester has too many requests pending */
};
/* Requests kept per user: past this, creating one deletes the user's
 * oldest decided or expired ones (the audit log keeps the history). */
#define AP_KEEP_PER_USER 200
/* A list other than "pending" reads at most this many requests, newest
 * first (the pending one reads the pending index, a few per user). */
#define AP_LIST_SCAN_MAX 50000
const char *ap_strerror(int err);

/* What ap_decide does. */
typedef enum ap_action { AP_APPROVE, AP_DENY, AP_CANCEL } ap_action;

/* AP_EV_DECIDED: a request left "pending" (borrowed for the hook call). */
enum { AP_EV_DECIDED = ST_EVENT_BASE_POLICY + 10 };
typedef struct ap_event {
  const char *tenant, *id, *user; /* user: the requester */
  const char *state;              /* approved | denied | cancelled */
  const char *by;                 /* reviewer's userName, or "admin" */
  const char *reason;             /* may be "" */
} ap_event;

/* A request to store (every string borrowed). */
typedef struct ap_new {
  const char *tenant, *user, *session, *connector, *tool;
  const char *arguments; /* JSON text as the audit records it, or NULL */
  const char *args_sha256; /* 64 hex: SHA-256 of the canonical arguments */
  const json_t *approvers; /* array of group ids (may be empty: nobody can approve) */
  int timeout_s, grant_minutes;
  int64_t now_ms;
} ap_new;

/* 64 hex of SHA-256 over args' canonical JSON (sorted keys, compact;
 * NULL args as {}), the identity of "the same arguments". 0 or ST_E*. */
int ap_args_hash(const json_t *args, char out[65]);

/* The groups a comma-separated list of group names (case-insensitive) or
 * id:<scim id> names — the tenant's approver_groups setting — appended to
 * ids: those resolving to exactly one existing group (a name matching
 * none or several adds nobody: fail closed). list NULL adds nothing.
 * 0 or ST_E*. Any txn. */
int ap_groups_resolve(st_txn *txn, const char *tenant, const char *list, json_t *ids);

/* Write txn: stores a pending request; id_out gets its id. AP_ETOOMANY
 * when the user has max_pending requests pending already. The user's
 * requests beyond AP_KEEP_PER_USER go, oldest decided first. */
int ap_request_create(st_txn *txn, const ap_new *n, int max_pending, char id_out[AP_ID_LEN + 1]);
/* The request (its state "expired" when pending past expires at now_ms).
 * ST_ENOTFOUND for no such id in tenant. *out the caller's. */
int ap_request_get(st_txn *txn, const char *tenant, const char *id, int64_t now_ms, json_t **out);
/* Newest first (ids are random: by "created"), at most limit, those whose
 * state is `state` (NULL: all). *out a new array. */
int ap_request_list(st_txn *txn, const char *tenant, const char *state, int64_t now_ms, size_t limit,
                    json_t **out);
/* Whether a reviewer whose groups are gids (an array of group ids) may
 * decide rec as far as membership goes: not its requester, and in one of
 * its approver groups (ap_decide checks this, and that the reviewer is
 * active, in its transaction). */
bool ap_reviewer_in(const json_t *rec, const char *reviewer, const json_t *gids);
/* What a reviewer's page shows (gids: the reviewer's group ids): *pending
 * the pending requests they may decide now — ap_reviewer_in, and the
 * policy in force where it still asks approval for the call (as
 * ap_decide) — newest first; *history (history NULL: not read) the ended
 * ones (approved, denied, cancelled, expired) ap_reviewer_in would have
 * let them decide, the most recently ended first; at most limit each.
 * Nothing else: never the reviewer's own requests. New arrays (NULL on a
 * failure). Walks the tenant's requests. 0 or ST_E*. */
int ap_request_list_reviewer(st_txn *txn, const char *tenant, const char *reviewer, const json_t *gids,
                             int64_t now_ms, size_t limit, json_t **pending, json_t **history);
/* What a loop's cached policy said of one call, and the stamp of what it
 * was built from (the policy's revision, the membership generation, the
 * cut generation, the tenant's uid): a take (ap_grant_take) uses it for
 * the grant's basis instead of loading the user's policy in the writer's
 * transaction — 7 ms for a 1,000-rule policy, on the thread every
 * deactivation waits for, per call an employee makes on a standing
 * grant — when the same stamp holds there (equal stamps, equal
 * decisions: policy.h's pol_version). A stamp that moved, or a tenant
 * no longer active (a deleted tenant's purge moves none of the stamp):
 * the policy is loaded, as without a hint. */
typedef struct ap_hint {
  bool set;     /* false: no hint */
  bool approve; /* the decision was POL_APPROVE, and pa is its approval */
  pol_approval pa;
  int rev;
  uint64_t gen, cutgen;
  char uid[ST_TENANT_UID_LEN + 1];
} ap_hint;
/* Fills h for (connector, tool) from u, a policy that is current in txn
 * (pol_cache_get's answer in that txn); h->set stays false on a store
 * error. */
void ap_hint_fill(st_txn *txn, const char *tenant, const pol_user *u, const char *connector, const char *tool,
                  ap_hint *h);

/* Write txn: decides a pending request. reviewer: the deciding user's SCIM
 * id (AP_APPROVE/AP_DENY), NULL for AP_CANCEL (admin_name names who). An
 * approval stores the grant, with the basis the policy in force gives.
 * *out (may be NULL) gets the updated record. */
int ap_decide(st_txn *txn, const char *tenant, const char *id, ap_action what, const char *reviewer,
              const char *admin_name, const char *reason, int64_t now_ms, json_t **out);
/* Write txn: takes a live grant for this exact call, given under what the
 * policy in force asks of the user's call now (its basis, above): 0 (a
 * one-call grant is marked in use), ST_ENOTFOUND when there is none
 * (expired ones go; one of another basis stays, untaken). *request
 * (may be NULL, AP_ID_LEN + 1) gets the approving request's id. */
int ap_grant_take(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                  const char *args_sha256, int64_t now_ms, char *request, const ap_hint *hint);
/* Write txn: a one-call grant taken for a call that then could not be
 * made (its client left in between) goes back — one call, valid an hour
 * from now_ms — when it is still stored and in use for `request`; not when
 * it is gone (a cut, a new policy, the connector's change or expiry ended
 * it meanwhile), the user may no longer call (inactive, blocked, cut) or
 * the request is no longer approved: then nothing. 0 or ST_E*. */
int ap_grant_give_back(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                       const char *args_sha256, const char *request, int64_t now_ms);

/* Read: the user's live grants for (connector, tool) that a call would
 * take now (of the basis the policy in force gives), any arguments (a
 * grant is per argument hash: explain can say only how many argument sets
 * are granted and until when). count 0 when none; request: the grant
 * expiring last's approving request. 0 or ST_E*. */
typedef struct ap_grant_summary {
  size_t count;
  int64_t expires_max; /* ms since the epoch; 0 when count is 0 */
  char request[AP_ID_LEN + 1];
} ap_grant_summary;
int ap_grants_live(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                   int64_t now_ms, ap_grant_summary *out);

/* Write txn: connector of tenant was deleted or now points elsewhere: its
 * grants go and its pending requests are cancelled (an approval was for
 * the tools of the old upstream, never for what the name points to now).
 * 0 or ST_E*. */
int ap_connector_gone(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms);

/* Who and why a request cancelled because the policy in force blocks its
 * call for its requester reads (decided_by, reason). */
#define AP_BLOCKED_BY "the tenant's policy"
#define AP_BLOCKED_REASON "the policy in force blocks this call for its requester"
/* Write txn: request id is cancelled (AP_BLOCKED_BY, AP_BLOCKED_REASON)
 * when it is pending and the policy in force decides its call below
 * approve for its requester (blocked, or its connector hidden): 1, else 0
 * (not pending, unknown, still asked or allowed), or ST_E*. A new policy
 * document does this itself for every pending request (the hook below),
 * a membership change for its users' (ap_users_recheck); the loop that
 * ends a held call blocked calls it too (a membership cut in memory,
 * st_dir_membership_cut_unwritten, writes nothing). */
int ap_cancel_if_blocked(st_txn *txn, const char *tenant, const char *id, int64_t now_ms);
/* How an MCP session ended, for ap_session_gone. */
typedef enum ap_session_end {
  AP_SESSION_DELETED, /* its client's DELETE ("the requester") */
  AP_SESSION_EXPIRED, /* idle past its timeout, or past its maximum age (AP_SESSION_BY) */
  AP_SESSION_EVICTED, /* a newer session of its user past sessions_per_user_max (AP_SESSION_BY) */
  AP_SESSION_ENDED,   /* gone, the loop that saw it does not know why (AP_SESSION_BY) */
} ap_session_end;
/* Who cancelled a request whose session expired, was evicted or ended. */
#define AP_SESSION_BY "the gateway"
/* Write txn: the requester's MCP session whose id hashes to
 * session_sha256 (64 hex of SHA-256 of the id: the key the session store
 * keeps, gateway/mcp/mcp_session.h — an expiry purge or an eviction knows
 * no more) ended, `why`: their requests made in it that are pending are
 * cancelled (by "the requester" for a DELETE, else AP_SESSION_BY, the
 * reason naming the end), each emitting AP_EV_DECIDED, as a user cut
 * cancels theirs — a reviewer cannot approve what belonged to a session
 * that is gone. Bounded: the user's requests (AP_KEEP_PER_USER) keys, and
 * only the pending ones read. 0 or ST_E*. */
int ap_session_gone(st_txn *txn, const char *tenant, const char *user, const char *session_sha256,
                    ap_session_end why, int64_t now_ms);
/* Write txn: the groups of these users changed (an Okta membership
 * change): their pending requests whose call the policy in force now
 * decides below approve for them (blocked, or its connector hidden) are
 * cancelled (AP_BLOCKED_BY, AP_BLOCKED_REASON), held or not — a request
 * whose client left is cancelled as one whose call is held is. The
 * document compiled once, one membership read per user with a pending
 * request; bounded as ap_session_gone per user. 0 or ST_E*. */
int ap_users_recheck(st_txn *txn, const char *tenant, const char *const *users, size_t n, int64_t now_ms);

/* Registers the purge, the check, the user-cut hook and the policy PUT's
 * (its standing grants end; its pending requests of blocked calls are
 * cancelled). At startup. */
int ap_register_store(st_store *st);

#endif
