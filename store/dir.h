/* store/dir.h — the directory: a tenant's users and groups as scim/ stores
 * them, read by everyone who needs identity and membership without going
 * through SCIM's protocol layer (policy/ resolves group names, auth/ checks
 * users, the gateway shows a user's groups).
 *
 * This file owns the key and index encoding of the directory: scim/ writes
 * every key through the st_dir_key_* encoders below (there is no second
 * encoder), and the lookups here read them. Layout (every key starts with
 * the tenant id and a NUL, so a tenant's data is one prefix per database):
 *   ST_DB_SCIM_RES  t\0 'U' id            → user JSON (the SCIM resource as stored)
 *                   t\0 'G' id            → group JSON (without members)
 *   ST_DB_SCIM_IDX  t\0 'u' fold(userName)           → user id   (unique)
 *                   t\0 'e' 'U'|'G' externalId \0 id → ""        (case-exact)
 *                   t\0 'd' fold(displayName) \0 id  → ""        (groups)
 *                   t\0 'n' 'U'|'G'                  → count (u64 LE)
 *                   t\0 'w' 'U'|'G'                  → list generation (u64 LE): moves with
 *                                                      every create and delete of that type,
 *                                                      so equal values in two snapshots mean
 *                                                      the same ids in the same order (absent: 0)
 *                   t\0 'r' uid           → the user's groups revision (u64 LE + RFC 3339 time)
 *                   t\0 'b' uid           → an admin's block of the user (JSON {at, by, reason})
 *   ST_DB_SCIM_MEM  t\0 'm' gid \0 uid    → ""   group → members
 *                   t\0 'g' uid \0 gid    → ""   user → groups
 * fold() is Unicode's simple case folding (store/text.h st_text_fold:
 * userName and displayName compare case-insensitively); the store records
 * the table's Unicode version in ST_DB_META "text_fold" and re-keys these
 * entries at an open when the binary's differs (st__dir_fold_sync). Index
 * values longer than ST_DIR_IDX_VAL_MAX bytes
 * (or starting with 0xFF) are stored as 0xFF + SHA-256 of the folded value.
 * Ids are SCIM ids: 36-char lower-case UUID text (st_dir_valid_id).
 *
 * The directory's lifecycle events (ST_DIR_EV_*) are emitted by scim/
 * inside the writing transaction; they are defined here so subscribers
 * (auth/, policy/, the gateway) need not include scim/.
 *
 * Signing a user out everywhere (st_dir_user_sign_out: Okta's Universal
 * Logout) writes no key: it emits USER_SIGNED_OUT, after which no
 * credential of the user survives, while the record, its active flag and
 * any block stay as they were — the person may sign in again at once. It
 * is not a SCIM lifecycle event (scim/'s names and counters end at
 * ST_DIR_EV__END) and not a deactivation: policy and everything else that
 * reacts to the user's state rather than to their credentials ignore it.
 * A module that holds credentials of a user subscribes with
 * st_dir_hook_user_cut, so every way of cutting a user reaches it.
 *
 * The block ('b') is the one key written here rather than by scim/: an
 * admin's incident button (POST …/users/{id}/revoke) that takes a user out
 * of service without touching what Okta provisioned. A blocked user is not
 * active to everyone who asks st_dir_user_active / st_dir_user_usable, and
 * blocking a usable user emits USER_DEACTIVATED (via "revoke") so every
 * subscriber cuts exactly as for a SCIM deactivation; unblocking emits
 * USER_REACTIVATED (via "restore") when SCIM has the user active. SCIM
 * never sees or overwrites the block; deleting the user deletes it.
 *
 * Reads take any txn (read snapshot or a job's write txn) and follow the
 * store's rules: short, never held across a callback. JSON returned is a
 * fresh copy owned by the caller (json_decref). Errors: ST_E* codes;
 * ST_ENOTFOUND when the user or group is absent (including malformed ids). */
#ifndef MCPGATE_STORE_DIR_H
#define MCPGATE_STORE_DIR_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

#define ST_DIR_ID_LEN 36          /* UUID text */
#define ST_DIR_IDX_VAL_MAX 200    /* longer index values are hashed */
#define ST_DIR_KEY_MAX 608        /* any directory key fits */
#define ST_DIR_USER 'U'           /* resource type bytes in keys */
#define ST_DIR_GROUP 'G'

/* ---- lifecycle events (emitted by scim/, inside the write txn) ---------- */
enum {
  ST_DIR_EV_USER_CREATED = ST_EVENT_BASE_SCIM,
  ST_DIR_EV_USER_CHANGED,      /* any stored attribute changed */
  ST_DIR_EV_USER_DEACTIVATED,  /* usable → not: SCIM active true→false (PATCH with/without path, PUT,
                                  DELETE) or an admin block (via "revoke") */
  ST_DIR_EV_USER_REACTIVATED,  /* not usable → usable: SCIM active false→true, or unblocked ("restore") */
  ST_DIR_EV_USER_DELETED,      /* after DEACTIVATED when the user was active */
  ST_DIR_EV_MEMBERSHIP_CHANGED,/* one group; added/removed user ids */
  ST_DIR_EV_GROUP_CREATED,
  ST_DIR_EV_GROUP_RENAMED,
  ST_DIR_EV_GROUP_DELETED,
  ST_DIR_EV__END               /* the end of SCIM's lifecycle events (scim.h aliases them) */
};
/* Emitted by st_dir_user_sign_out (not by scim/): every credential of the
 * user goes, the user stays (usable or not, as before). Numbered apart from
 * the lifecycle events so scim/'s tables never meet it. */
enum { ST_DIR_EV_USER_SIGNED_OUT = ST_EVENT_BASE_SCIM + 50 };

/* The event passed to hooks; everything borrowed for the hook call. */
typedef struct st_dir_event {
  const char *tenant;
  const char *id;          /* user id (user events) or group id */
  const char *name;        /* userName or displayName (new one on rename) */
  const char *old_name;    /* GROUP_RENAMED */
  const char *via;         /* "post", "put", "patch", "delete"; "revoke", "restore" (blocks);
                              "universal_logout", "put"/"patch": a SCIM write that
                              contradicted an e-mail binding (USER_SIGNED_OUT) */
  const char *const *added;   /* MEMBERSHIP_CHANGED: user ids */
  size_t nadded;
  const char *const *removed;
  size_t nremoved;
} st_dir_event;

/* ---- key encoders (the one encoding; scim/ writes through these) -------- */

/* A key being built. Encoders never write past b: a key that would not fit
 * sets overflow (the key is then unusable; lookups treat it as absent). */
typedef struct st_dir_key {
  char b[ST_DIR_KEY_MAX];
  size_t n;
  bool overflow;
} st_dir_key;

/* 1 for a well-formed SCIM id (36-char lower-case UUID text), else 0. */
int st_dir_valid_id(const char *id);

/* t\0 — every directory key of the tenant starts with it (purges). */
void st_dir_key_tenant(st_dir_key *k, const char *tenant);
/* ST_DB_SCIM_RES: t\0 type id (type ST_DIR_USER or ST_DIR_GROUP). */
void st_dir_key_res(st_dir_key *k, const char *tenant, char type, const char *id);
/* ST_DB_SCIM_IDX: t\0 'u' fold(userName). */
void st_dir_key_username(st_dir_key *k, const char *tenant, const char *username);
/* ST_DB_SCIM_IDX: t\0 'e' type externalId \0 [id]; id NULL: the prefix of
 * every resource with that externalId. */
void st_dir_key_external(st_dir_key *k, const char *tenant, char type, const char *external_id,
                         const char *id);
/* ST_DB_SCIM_IDX: t\0 'd' fold(displayName) \0 [id]; id NULL: prefix. */
void st_dir_key_group_name(st_dir_key *k, const char *tenant, const char *display_name,
                           const char *id);
/* ST_DB_SCIM_IDX: t\0 'n' type (resource count). */
void st_dir_key_count(st_dir_key *k, const char *tenant, char type);
/* ST_DB_SCIM_IDX: t\0 'w' type (list generation: scim/ bumps it with the
 * count, in the transaction that creates or deletes a resource). */
void st_dir_key_list_gen(st_dir_key *k, const char *tenant, char type);
/* ST_DB_SCIM_IDX: t\0 'r' uid (groups revision of a user). */
void st_dir_key_groups_rev(st_dir_key *k, const char *tenant, const char *uid);
/* ST_DB_SCIM_IDX: t\0 'b' uid (an admin's block of the user). */
void st_dir_key_block(st_dir_key *k, const char *tenant, const char *uid);
/* ST_DB_SCIM_MEM: t\0 'm' gid \0 [uid]; uid NULL: prefix of the members. */
void st_dir_key_member(st_dir_key *k, const char *tenant, const char *gid, const char *uid);
/* ST_DB_SCIM_MEM: t\0 'g' uid \0 [gid]; gid NULL: prefix of the user's groups. */
void st_dir_key_user_group(st_dir_key *k, const char *tenant, const char *uid, const char *gid);

/* Appends to `out` (a JSON array) the ids at the end of the keys under
 * prefix in db (keys ending in a 36-char id), at most limit (0: all) in
 * total in out. 0 or an ST_E* code. */
int st_dir_ids_under(st_txn *txn, st_db db, const st_dir_key *prefix, json_t *out, size_t limit);

/* ---- lookups -------------------------------------------------------------- */

/* The stored JSON of a user / group by id. *out owned by the caller. */
int st_dir_user_get(st_txn *txn, const char *tenant, const char *id, json_t **out);
int st_dir_group_get(st_txn *txn, const char *tenant, const char *id, json_t **out);
/* 0 if the group exists, ST_ENOTFOUND if not (or another ST_E*). */
int st_dir_group_exists(st_txn *txn, const char *tenant, const char *id);

/* The id of the user whose userName equals username ignoring ASCII case
 * (as SCIM's uniqueness rule has it). id is NUL-terminated. */
int st_dir_user_by_name(st_txn *txn, const char *tenant, const char *username,
                        char id[ST_DIR_ID_LEN + 1]);
/* The id of a user with this externalId (case-exact). New writes keep
 * externalId unique among a tenant's users (scim/ asks
 * st_dir_user_external_other in the write), but a store written before
 * may hold several: then the smallest id. */
int st_dir_user_by_external(st_txn *txn, const char *tenant, const char *external_id,
                            char id[ST_DIR_ID_LEN + 1]);
/* Another user than `self` (NULL: any user) whose externalId is exactly
 * external_id, each index hit verified against the user's record: 0 and
 * its id, ST_ENOTFOUND when there is none, or another ST_E*. What a write
 * that would give a user that externalId asks, in its own transaction. */
int st_dir_user_external_other(st_txn *txn, const char *tenant, const char *external_id, const char *self,
                               char id[ST_DIR_ID_LEN + 1]);
/* A user by id, or else by userName (case-insensitive): what a token, an
 * admin or a policy explanation names a user by. *out owned by the caller. */
int st_dir_user_find(st_txn *txn, const char *tenant, const char *id_or_username, json_t **out);
/* Whether a stored user record is active (SCIM: a missing "active" is
 * true). A predicate on the JSON st_dir_user_get/find returned. */
bool st_dir_user_record_active(const json_t *user);
/* 1 if the user exists, is active and not blocked, 0 if it exists and is
 * inactive or blocked, ST_ENOTFOUND if there is no such user (by id), or
 * another ST_E*. */
int st_dir_user_active(st_txn *txn, const char *tenant, const char *id);
/* The same question of a record already read (st_dir_user_get/find): SCIM
 * active and not blocked. A store error reads as not usable (fail closed). */
bool st_dir_user_usable(st_txn *txn, const char *tenant, const json_t *user);

/* ---- users cut in memory -------------------------------------------------------
 * A deactivation that cannot be written (the store full even for the
 * reserve, a failing disk) must still take access away: the caller names
 * the user here and, until the gateway stops, st_dir_user_active and
 * st_dir_user_usable answer "not active" for them, whatever the stored
 * record says — every check of a token, session, grant or sign-in asks
 * those two. The mark ends when the IdP's next word on "active" for the
 * user commits (a deactivation or deletion: the store then says it
 * itself; a write that sets active: the IdP's latest word — scim/ calls
 * st_dir_user_cut_end, which signs an active user out in that
 * transaction, since the cut deleted nothing; a write of other attributes
 * does not end it), an admin's block of them commits, or the tenant is
 * marked deleting (every mark of it). A restart keeps it: the main store logs
 * every change to <dir>/unwritten-cuts and reads it back at open (no
 * fsync: a process restart, not a host crash). The
 * snapshot (st_txn_snapshot) changes with every mark, so caches keyed on
 * it read afresh. At most ST_DIR_CUT_MAX marks, ST_DIR_CUT_TENANT_MAX of
 * one tenant: past that ST_ENOMEM, and
 * the caller must say so (logged). Any thread. */
#define ST_DIR_CUT_MAX 65536 /* 64 tenants' full shares; ~14 MB at most, nothing when none */
#define ST_DIR_CUT_TENANT_MAX 1024 /* of one tenant */
/* via as in st_dir_event ("patch", "put", "delete"; "revoke": an admin's
 * revoke that could not be written — that mark outlives the IdP's writes
 * and ends when the admin's block or restore commits (a restore signs the
 * user out first); "logout": Okta's
 * Universal Logout that could not be written — the user's credentials
 * are still stored, so only a sign-out of them that commits ends it
 * (Okta's retry; the user's next sign-in or the admin's restore, each
 * of which signs the user out first; a block, deactivation or deletion),
 * never the IdP's word on active). A user
 * marked by several keeps the mark until each has ended; tenant, id and via
 * are passed on to the st_dir_hook_cut_unwritten subscribers, on the
 * caller's thread, after the mark. 0, ST_EINVAL or ST_ENOMEM (not
 * marked: nothing was called). */
int st_dir_user_cut_unwritten(st_store *st, const char *tenant, const char *id, const char *via);
/* A subscriber to those marks (the MCP proxy ends the user's live
 * exchanges, as it does after a committed deactivation). At most 4; at
 * startup, like st_hook_add. Borrowed strings, valid for the call. */
typedef void (*st_dir_cut_fn)(void *ctx, const char *tenant, const char *id, const char *via);
int st_dir_hook_cut_unwritten(st_store *st, st_dir_cut_fn fn, void *ctx);
/* ---- memberships cut in memory ----------------------------------------------
 * The same answer for a removal of members from a group, or a group's
 * deletion, that cannot be written: scim/'s caller names the group and the
 * members the request removed (or, for a deletion or a removal cut short
 * by the store, the whole group: uids NULL), and until a write that
 * settles it commits, st_dir_user_groups leaves the group out for them —
 * so the policy, the reviewers' checks and everything else that asks a
 * user's groups see the membership gone. A mark ends when a membership
 * change of that user in that group commits (the removal written, or the
 * IdP adding them again: its latest word), when the group or the user is
 * deleted, or the tenant marked deleting; a whole-group mark also ends
 * with a committed PUT that changes the group (the IdP restating all of
 * it; a PATCH retried from before the failed DELETE must not end it).
 * Kept across a restart in <dir>/unwritten-memberships
 * (as the users' marks: no fsync). Every change moves st_txn_snapshot and
 * st_txn_cut_generation. At most ST_DIR_MCUT_MAX marks, ST_DIR_MCUT_TENANT_MAX
 * of one tenant, of which the last 256 (and the last 1,024 of all) are
 * for whole groups only: when the members do not all fit, the whole group
 * is marked instead (one mark; fail closed: one tenant's failures never
 * leave another's members unmarked); ST_ENOMEM only when not even that
 * fits (a tenant with 1,024 marks, or more than 64 tenants full at once). An add of a member the store still holds
 * (Okta adding back a member whose removal was never written) ends that
 * member's mark too (st_dir_membership_cut_end). The subscribers
 * (st_dir_hook_membership_cut) are then called once per user named, or
 * once with uid NULL for a whole group (or more than 64 users), on the
 * caller's thread. 0,
 * ST_EINVAL (a tenant or an id malformed: nothing marked) or ST_ENOMEM.
 * Any thread. */
#define ST_DIR_MCUT_MAX 65536        /* 64 tenants' full shares; ~9 MB at most, nothing when none */
#define ST_DIR_MCUT_TENANT_MAX 1024  /* of one tenant, the last 256 for whole groups */
int st_dir_membership_cut_unwritten(st_store *st, const char *tenant, const char *gid, const char *const *uids,
                                    size_t n);
/* A write that says uid is a member of gid (scim/: an add of someone the
 * store already holds as a member — an unwritten removal's member —
 * changes nothing stored, so no event says it): after txn commits, the
 * mark of that membership ends (the IdP's latest word). 0 (no mark: nothing
 * to do), ST_EINVAL or ST_ENOMEM. */
int st_dir_membership_cut_end(st_txn *txn, const char *tenant, const char *gid, const char *uid);
/* Whether uid's membership of gid in tenant is cut in memory (by its own
 * mark or the group's). */
bool st_dir_membership_cut_marked(st_store *st, const char *tenant, const char *uid, const char *gid);
/* How many marks there are (whole-group marks count one). */
size_t st_dir_memberships_cut_count(st_store *st);
typedef void (*st_dir_mcut_fn)(void *ctx, const char *tenant, const char *gid, const char *uid);
/* A subscriber (the MCP proxy tells the users' open sessions their tools
 * changed). At most 4; at startup. Borrowed strings, valid for the call. */
int st_dir_hook_membership_cut(st_store *st, st_dir_mcut_fn fn, void *ctx);

/* The IdP's word on the user's "active": after txn (a write) commits, the
 * mark of tenant/id ends, if there is one then and an admin's revoke did
 * not make it; an active user with such a mark is signed out in txn
 * (USER_SIGNED_OUT, via "settle": the unwritten deactivation deleted
 * none of their credentials). scim/ calls it for every committed write that sets active
 * (a reactivation of a user the store never saw deactivated changes
 * nothing stored). The store itself ends marks, an admin's too, on every
 * committed deactivation or deletion, an admin's block or restore, and
 * the tenant's deletion. Re-marking a marked user changes nothing (not
 * the snapshot either). 0, ST_EINVAL or ST_ENOMEM. */
int st_dir_user_cut_end(st_txn *txn, const char *tenant, const char *id);
/* Whether the user (a record st_dir_user_get read) is unusable only
 * because a Universal Logout that could not be written marked them: the
 * record active, no block, a mark of that kind alone. A sign-in may then
 * go ahead if its own transaction signs the user out first
 * (st_dir_user_sign_out: the credentials the logout could not delete go,
 * and its commit ends the mark) — as after a written logout, the person
 * may sign in again at once. */
bool st_dir_user_usable_once_signed_out(st_txn *txn, const char *tenant, const json_t *user);
/* How many users are marked so (/metrics). */
size_t st_dir_users_cut_count(st_store *st);
/* Whether tenant/id is marked so (a lock only when any mark exists). */
bool st_dir_user_cut_marked(st_store *st, const char *tenant, const char *id);

/* ---- blocks (admin revoke / restore) ---------------------------------------- */

/* The block of a user: 0 and *info ({at, by, reason}; caller json_decref,
 * info may be NULL to ask only), ST_ENOTFOUND when not blocked. */
int st_dir_user_block_get(st_txn *txn, const char *tenant, const char *uid, json_t **info);
/* Write txn: blocks an existing user (ST_ENOTFOUND if there is none) with
 * info (an object, copied); a user already blocked keeps its first block
 * (*already set). Emits USER_DEACTIVATED (via "revoke") when the user was
 * usable; a negative hook return is returned (the job must roll back). */
int st_dir_user_block(st_txn *txn, const char *tenant, const char *uid, const json_t *info, bool *already);
/* Write txn: lifts the block (*was: whether there was one) and emits
 * USER_REACTIVATED (via "restore") when SCIM has the user active. Nothing
 * that the block deleted comes back. Ends an admin's or a logout's mark
 * (above), signing an active user out first (USER_SIGNED_OUT, via
 * "restore"); not the IdP's. ST_ENOTFOUND for no such user. */
int st_dir_user_unblock(st_txn *txn, const char *tenant, const char *uid, bool *was);
/* Write txn: deletes the block key if any (scim/ when it deletes the user). */
int st_dir_user_block_forget(st_txn *txn, const char *tenant, const char *uid);

/* ---- signing out everywhere ------------------------------------------------- */

/* Write txn: emits USER_SIGNED_OUT (via, a string literal naming the cause:
 * "universal_logout"; "put"/"patch": a SCIM write, auth/login.h rule a) for an existing user, whatever their state: the
 * hooks delete whatever credentials the user still holds. Nothing of the
 * directory is written. ST_ENOTFOUND for no such user; a negative hook
 * return is returned (the job must roll back). */
int st_dir_user_sign_out(st_txn *txn, const char *tenant, const char *uid, const char *via);

/* Registers fn for every event after which none of a user's credentials may
 * survive: USER_DEACTIVATED, USER_DELETED and USER_SIGNED_OUT (fn tells them
 * apart by kind; only DELETED means the user is gone for good). At startup,
 * like st_hook_add; 0 or its error. */
int st_dir_hook_user_cut(st_store *st, st_hook_fn fn, void *ctx);

/* The user's group ids, in id order: *gids a new JSON array of strings
 * owned by the caller (empty for an unknown or malformed user id). */
int st_dir_user_groups(st_txn *txn, const char *tenant, const char *uid, json_t **gids);
/* Appends to `ids` (a JSON array) the ids of the groups whose displayName
 * folds like name (st_text_fold), in id order, at most limit (0: all) in
 * total. Policy uses limit 2 to tell a unique name from an ambiguous one. */
int st_dir_groups_by_name(st_txn *txn, const char *tenant, const char *name, json_t *ids,
                          size_t limit);

#endif
