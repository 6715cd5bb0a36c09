/* policy/policy.h — Okta groups → per-tool allow / block / approve, per
 * connector, evaluated against each user's LIVE group membership.
 *
 * The document (per tenant, admin PUT):
 *   {"version":1, "default":"block",
 *    "connectors":{"github":{"default":"block"}},
 *    "rules":[{"groups":["Senior Engineers"|"id:<scim id>"|"*"], "connector":"github"|"*",
 *              "allow":[globs], "block":[globs], "approve":[globs],
 *              "approvers":["DB Admins"|"id:<scim id>"],   (1..32; not "*")
 *              "approval_timeout_s":300,                   (1..86400)
 *              "grant_minutes":0}]}                        (0..1440)
 * On PUT, group names are resolved to SCIM group ids (case-insensitive;
 * several matches → error, use "id:"); a name that matches no group yet is
 * kept pending (with a warning) and binds when a group of that name is
 * created. Rules are compiled against ids, so a later rename keeps them.
 * When a group a name is bound to is deleted, that name is compiled again
 * as a PUT of the same document would compile it, in the delete's
 * transaction: bound to the one group that has the name now (renamed to
 * it meanwhile), else pending again (none, or several), so a deleted and
 * re-pushed group keeps its rules — block and approve rules included. An
 * "id:" reference stays on its id. "approvers" are resolved the same way. The three approval fields are
 * allowed only on a rule with "approve" patterns; a rule without
 * "approvers" defers to the tenant's approver_groups setting (which
 * policy/ does not read: pol_approval_for says so with tenant_default).
 * A pending approver name approves nothing until it binds (fail closed).
 *
 * Decision for (user, connector, tool): the rules whose groups intersect
 * the user's groups (or "*") and whose connector matches; block beats
 * approve beats allow; when no matching rule names the tool, the
 * connector's default, else the document's default (block if absent). A
 * user with no matching rule for a connector does not see it at all. No
 * policy document at all: everything is hidden (fail closed).
 *
 * Store layout (ST_DB_POLICY):
 *   tenant \0 'p'  → {"version", "document", "compiled", "warnings", "updated"}
 *   tenant \0 'g'  → u64 generation: bumped in the same transaction by
 *                    every membership change, group rename/create/delete and
 *                    user deactivation, so cached decisions keyed by
 *                    (generation, version) are never stale.
 *
 * Threads: parsing/compiling runs in writer jobs; pol_user_* and pol_decide
 * on loop threads (read txns) and are pure functions of their inputs. */
#ifndef MCPGATE_POLICY_POLICY_H
#define MCPGATE_POLICY_POLICY_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Error codes: policy's own range (outside libuv's errno values and the
 * store's); a negative return of pol_* is one of these or an ST_E*. */
#define POL_ERR_FIRST (-30500)
#define POL_ERR_LAST (-30599)
enum {
  POL_EINVALID = -30500,   /* the document fails validation; err lists every problem */
  POL_EAMBIGUOUS = -30501, /* a group name matches several groups; err says which */
};
/* Static string for a POL_E* or ST_E* code; "ok" for >= 0. */
const char *pol_strerror(int err);

typedef enum pol_decision {
  POL_HIDDEN = 0, /* no rule for this connector: the user does not see it */
  POL_BLOCK = 1,
  POL_APPROVE = 2,
  POL_ALLOW = 3,
} pol_decision;

const char *pol_decision_name(pol_decision d);

/* Glob match: '*' any run, '?' one character; case-sensitive (tool names
 * are). */
bool pol_glob(const char *pattern, const char *s);

/* Validates a document. On failure returns negative and writes EVERY
 * problem, "; "-separated, into err. */
int pol_validate(const json_t *doc, char *err, size_t errlen);

/* What ST_EVENT_POLICY_PUT carries (borrowed for the emit). */
typedef struct pol_event {
  const char *tenant;
  int version;  /* the document's new version */
  bool narrows; /* the new document may hide a connector from someone the
                   previous one showed it to (pol_narrows); false when it
                   only widens or changes tool decisions */
} pol_event;

/* Writer job body for PUT: validate, resolve names, store as version+1.
 * *version_out gets the new version; *warnings (owned) lists unresolved
 * names. Ambiguous names fail with POL_EAMBIGUOUS and err says which.
 * Emits ST_EVENT_POLICY_PUT once stored. */
int pol_put(st_txn *txn, const char *tenant, const json_t *doc, const char *now, int *version_out,
            json_t **warnings, char *err, size_t errlen);
/* pol_put, also handing over (when not NULL; the caller json_decrefs)
 * the record in force before (*before, NULL when none) and the compiled
 * rules it stored (*compiled): a large document's record is read and
 * parsed once per PUT, on the writer every tenant's deactivations share. */
int pol_put_ex(st_txn *txn, const char *tenant, const json_t *doc, const char *now, int *version_out,
               json_t **warnings, json_t **before, json_t **compiled, char *err, size_t errlen);
/* Whether replacing compiled rules `before` with `after` (the "compiled"
 * arrays of two policy records; before NULL: there was no policy, which
 * showed nothing) can hide a connector from a user who saw it: true when
 * some connector (or every connector, through rules for "*") loses a group
 * that made it visible — a group id, or "*" (every active user) — with no
 * rule of `after` giving that group the connector. Conservative: what it
 * cannot read counts as narrowing. Membership is not looked at, so a true
 * answer means "someone may have lost it", never "someone did".
 * O(rules x groups) of both. */
bool pol_narrows(const json_t *before, const json_t *after);
/* The footgun check after a PUT: a connector is shown only to users a
 * matching rule covers, whatever "default" says. For each connector in
 * `connectors` (a JSON array of names, or of objects with "name") that the
 * stored policy shows to nobody — no rule names it (or "*"), or the rules
 * that do only list groups that do not exist — appends a sentence naming it
 * and why to `warnings`. The semantics stay fail-closed: this only warns.
 * Any txn (a writer job sees the document it just stored). 0 or ST_E*. */
int pol_visibility_warnings(st_txn *txn, const char *tenant, const json_t *connectors, json_t *warnings);
/* The same for compiled rules the caller holds (pol_put_ex's): no second
 * read and parse of the record. */
int pol_visibility_warnings_of(st_txn *txn, const char *tenant, const json_t *compiled, const json_t *connectors,
                               json_t *warnings);
/* The stored policy record (caller decref); ST_ENOTFOUND when none. The
 * view for admins: the document with current group names and notes. */
int pol_get(st_txn *txn, const char *tenant, json_t **rec);
json_t *pol_view(st_txn *txn, const char *tenant, const json_t *rec);

/* Generation of a tenant's membership-derived state. */
uint64_t pol_generation(st_txn *txn, const char *tenant);
/* The revision of the tenant's stored policy document (0: none); a store
 * error reads as -1. With pol_generation, st_txn_cut_generation and the
 * tenant's uid it stamps everything a user's decisions are built from:
 * equal stamps in two txns, equal decisions. */
int pol_version(st_txn *txn, const char *tenant);
int pol_generation_bump(st_txn *txn, const char *tenant);
int pol_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers pol_purge_tenant as the "policy" tenant purge (st_purge_add);
 * at startup, with the other store registrations. 0 or ST_E*. */
int pol_register_purge(st_store *st);

/* A user's effective policy: their groups intersected with the rules,
 * per connector. Built from a read txn; immutable afterwards. */
typedef struct pol_user pol_user;
int pol_user_load(st_txn *txn, const char *tenant, const char *user_id, pol_user **out);
void pol_user_free(pol_user *u);
/* Many users' policies in one transaction (a sweep over sessions): the
 * tenant's document is read and compiled once, by pol_batch_open, and
 * each pol_batch_user gives what pol_user_load would in that txn. The
 * batch belongs to the txn it was opened in (ST_ENOTFOUND is never
 * returned: no policy gives users who see nothing). */
typedef struct pol_batch pol_batch;
int pol_batch_open(st_txn *txn, const char *tenant, pol_batch **out);
int pol_batch_user(const pol_batch *b, st_txn *txn, const char *user_id, pol_user **out);
void pol_batch_free(pol_batch *b);
int pol_user_version(const pol_user *u);
/* The stored revision of the policy document it was built from: what
 * pol_version answered then (pol_user_version is the document's own
 * "version" member). */
int pol_user_rev(const pol_user *u);
uint64_t pol_user_generation(const pol_user *u);

/* The longest tool name a decision judges, in bytes. A longer name is
 * blocked whatever the rules say (fail closed): a glob costs up to its
 * length times the name's, and a name comes from an employee's call (up to
 * mcp_max_body) or an upstream's list — a tenant admin's glob against a
 * 4 MB name held a loop every tenant shares for seconds. MCP asks for
 * names of at most 128 characters; explain takes at most 1024 bytes too. */
#define POL_TOOL_NAME_MAX 1024

/* The decision. O(rules matching the user and connector × patterns); a
 * tool name over POL_TOOL_NAME_MAX bytes is POL_BLOCK (POL_HIDDEN still
 * when no rule shows the connector). */
pol_decision pol_decide(const pol_user *u, const char *connector, const char *tool);
/* Whether any matching rule mentions the connector (else it is hidden). */
bool pol_connector_visible(const pol_user *u, const char *connector);

/* What a held call asks of its reviewers. */
#define POL_APPROVERS_MAX 32
typedef struct pol_approval {
  int timeout_s;        /* smallest approval_timeout_s of the matching approve rules (default 300) */
  int grant_minutes;    /* smallest grant_minutes (default 0) */
  bool tenant_default;  /* some matching approve rule names no approvers: the tenant's approver_groups apply too */
  size_t napprovers;    /* union of the matching rules' approver group ids (deduplicated, at most POL_APPROVERS_MAX) */
  char approvers[POL_APPROVERS_MAX][64]; /* SCIM group ids */
} pol_approval;
/* For a call pol_decide answers POL_APPROVE: what the approve rules matching (u's groups, connector, tool) ask.
 * 0, or POL_EINVALID when the decision is not POL_APPROVE.
 * The matching approve rules are those that apply to the user (their
 * groups intersect u's, or "*") and the connector ("*" or equal), and
 * whose "approve" patterns match the tool. Approvers are group ids in
 * document order, first rule first; past POL_APPROVERS_MAX the rest are
 * dropped (fewer approvers, never more). Pending (unbound) names
 * contribute nothing: napprovers 0 with tenant_default false means nobody
 * can approve. A deleted group's id stays listed only where the document
 * named it "id:" (it has no members); a name goes back to pending. Pure
 * function of u; loop threads. */
int pol_approval_for(const pol_user *u, const char *connector, const char *tool, pol_approval *out);

/* Every approver group the stored policy's approve rules name (the bound
 * ids, appended to ids; the same id may appear twice), and in
 * *tenant_default whether some approve rule names none (the tenant's
 * approver_groups decide there; policy/ does not read settings). No policy:
 * nothing appended, false, 0. The reviewers' page asks this to tell an
 * approver from someone who can approve nothing. 0 or ST_E*. Any txn. */
int pol_approver_groups(st_txn *txn, const char *tenant, json_t *ids, bool *tenant_default);

/* Filters a tools/list result message in place: tools the user may not
 * call are removed; approve tools stay, their description prefixed with a
 * "requires approval" note. u NULL removes every tool (fail closed).
 * Returns true when the message changed. */
bool pol_filter_tools(const pol_user *u, const char *connector, json_t *msg);

/* What a user may use, for the employee page: for each connector name of
 * `connectors` (an array of strings, borrowed) that a rule matching the
 * user's groups names (or "*"), {name, allow:[…], block:[…], approve:[…]}
 * with the patterns of those rules merged (decisions follow pol_decide:
 * block beats approve beats allow). Connectors no rule shows are left
 * out; an unknown or inactive user, or no policy, gives []. A new array
 * (caller json_decref), NULL when out of memory. */
json_t *pol_user_summary(st_txn *txn, const char *tenant, const char *user_id, const json_t *connectors);

/* Explanation for admins: decision, matching rules (index, pattern, which
 * group), the user's groups, the policy version. An approve decision adds
 * "approval": {rules (indexes of the matching approve rules), approvers
 * ([{id, displayName|null}], pol_approval_for's), pending_approvers (names
 * not bound yet), tenant_default, timeout_s, grant_minutes, note (when the
 * tenant setting applies, or nobody can approve)}. */
json_t *pol_explain(st_txn *txn, const char *tenant, const char *user_id, const char *connector,
                    const char *tool);

/* Registers the SCIM hooks that bump generations, bind pending names and
 * put the names bound to a deleted group back to pending (or rebind them). */
int pol_register_hooks(st_store *st);

/* Per-loop cache of pol_user keyed by (tenant, tenant incarnation uid,
 * user), valid while (generation, version) are unchanged. Loop thread
 * only. */
typedef struct pol_cache pol_cache;
pol_cache *pol_cache_new(size_t max_entries);
void pol_cache_free(pol_cache *c);
/* Returns a borrowed pol_user valid until the next pol_cache_get/free on
 * this cache, or NULL with *err set (store unreadable: fail closed). */
const pol_user *pol_cache_get(pol_cache *c, st_txn *txn, const char *tenant, const char *user_id,
                              int *err);
/* Forgets everything cached for a tenant (it was deleted). */
void pol_cache_drop_tenant(pol_cache *c, const char *tenant);

#endif
