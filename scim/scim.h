/* scim/scim.h — SCIM 2.0 (RFC 7643/7644) Users and Groups for one tenant,
 * as Okta and Entra drive them (see ../shared/okta-scim.md).
 *
 * No sockets here: a parsed request in, status + JSON out. The gateway
 * authenticates, parses the body (strict JSON) and then calls scim_handle:
 *   - reads (GET) inside a short read transaction on the loop;
 *   - writes inside ONE writer job: read, validate, uniqueness, apply, index
 *     maintenance and the lifecycle hooks all commit together or not at all.
 * scim_handle is a pure function of (store, request) — the writer may run a
 * job twice — so everything random (new ids) and the clock are prepared by
 * the caller in scim_req before submitting. A group POST's or PUT's reply
 * may leave its members to a read after the commit (members_later,
 * scim_reply_members), so the writer does not render them.
 *
 * Store layout: the directory's databases (ST_DB_SCIM_RES/IDX/MEM); their
 * keys and indexes are defined and encoded by store/dir.h, which is also
 * how other modules read users and groups. Every index hit a SCIM read
 * uses is verified against the resource.
 *
 * Lifecycle events: scim/ emits the directory's events (store/dir.h,
 * ST_DIR_EV_*, struct st_dir_event) inside the write transaction; the
 * SCIM_EV_* names and scim_event below are the same values and type. */
#ifndef MCPGATE_SCIM_SCIM_H
#define MCPGATE_SCIM_SCIM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/dir.h"
#include "store/store.h"

#define SCIM_URN_USER "urn:ietf:params:scim:schemas:core:2.0:User"
#define SCIM_URN_GROUP "urn:ietf:params:scim:schemas:core:2.0:Group"
#define SCIM_URN_ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#define SCIM_URN_LIST "urn:ietf:params:scim:api:messages:2.0:ListResponse"
#define SCIM_URN_PATCH "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#define SCIM_URN_ERROR "urn:ietf:params:scim:api:messages:2.0:Error"

#define SCIM_ID_LEN 36 /* UUID text */
#define SCIM_DEFAULT_COUNT 100

/* ---- error codes ----
 * scim/'s own range, outside libuv's errno values and the store's: a
 * negative return of scim_* is one of these or an ST_E* passed up. */
#define SCIM_ERR_FIRST (-30400)
#define SCIM_ERR_LAST (-30499)
enum {
  SCIM_EABORT = -30400,  /* the request failed: its job aborts; the scim_resp holds the SCIM error reply */
  SCIM_ERANDOM = -30401, /* the CSPRNG failed (new resource id) */
};
/* Static string for a SCIM_E* or ST_E* code; "ok" for >= 0. */
const char *scim_strerror(int err);

/* ---- lifecycle events, emitted inside the write transaction ----
 * Aliases of the directory's events (store/dir.h), under SCIM's names. */
enum {
  SCIM_EV_USER_CREATED = ST_DIR_EV_USER_CREATED,
  SCIM_EV_USER_CHANGED = ST_DIR_EV_USER_CHANGED,
  SCIM_EV_USER_DEACTIVATED = ST_DIR_EV_USER_DEACTIVATED,
  SCIM_EV_USER_REACTIVATED = ST_DIR_EV_USER_REACTIVATED,
  SCIM_EV_USER_DELETED = ST_DIR_EV_USER_DELETED,
  SCIM_EV_MEMBERSHIP_CHANGED = ST_DIR_EV_MEMBERSHIP_CHANGED,
  SCIM_EV_GROUP_CREATED = ST_DIR_EV_GROUP_CREATED,
  SCIM_EV_GROUP_RENAMED = ST_DIR_EV_GROUP_RENAMED,
  SCIM_EV_GROUP_DELETED = ST_DIR_EV_GROUP_DELETED,
  SCIM_EV__END = ST_DIR_EV__END
};
#define SCIM_EV_COUNT (SCIM_EV__END - SCIM_EV_USER_CREATED)
/* "user_created", … for metrics labels. */
const char *scim_event_name(int kind);

/* Everything borrowed for the duration of the hook call (store/dir.h). */
typedef st_dir_event scim_event;

/* ---- requests ---- */

/* What a read may do on the event loop, in directory entries visited:
 * resources examined, and members or groups rendered (each with the user
 * or group read behind it, ~10 µs). A read an index answers (cheap, by
 * scim_read_is_cheap) still renders what it finds: a group's GET walks
 * every member, Okta's GET /Groups?count=100 every member of 100 groups, a
 * members[value eq "…"] filter every member of every group of that user.
 * Given a budget, a read stops once it would pass it and sets `over`; its
 * reply is then incomplete and the caller discards it and runs the read
 * again on a worker thread, without a budget (as a scan). */
#define SCIM_LOOP_BUDGET 2500 /* ~25 ms */
/* An unfiltered list's page skips the resources before startIndex one
 * cursor step each (~0.1 µs: 0.1 s at startIndex 1,000,000): this many
 * skipped cost one entry of the budget. A page that must skip more than
 * the whole budget buys (SCIM_LOOP_BUDGET × this: startIndex past
 * 250,000) is not cheap (scim_read_is_cheap) and goes to the pool at
 * once; a shallower one stops at the budget like any other read. */
#define SCIM_LOOP_SKIPS_PER_ENTRY 100
typedef struct scim_budget {
  size_t left;
  bool over;
} scim_budget;

/* List checkpoints: what makes paging an unfiltered list linear. An
 * unfiltered page has no index that counts positions, so reaching
 * startIndex N walks the N-1 resources before it; an IdP importing a
 * tenant pages from 1 to totalResults (Okta: by 100), which would walk
 * O(n²/100) resources. After each unfiltered page the key at the last
 * position it walked is remembered, keyed by (tenant, its incarnation
 * uid, type, the type's list generation — moved by every create and
 * delete of that type, in the writing transaction); a page that starts
 * after a checkpoint with the same key seeks to it and walks only the
 * difference. The page is exactly what a walk from the first resource of
 * the same snapshot gives (RFC 7644 §3.4.2.4): same resources, order and
 * totalResults — a checkpoint of another generation, incarnation or
 * tenant is never used. Bounded: SCIM_PAGES_SLOTS checkpoints in all, at
 * most SCIM_PAGES_TENANT_MAX of one tenant (least recently used goes
 * first), ~40 KB. One per process, shared by the loops and the pool
 * (thread-safe). A tenant without an incarnation uid (a store no tenant
 * record was made in: tests) gets no checkpoints. */
#define SCIM_PAGES_SLOTS 256
#define SCIM_PAGES_TENANT_MAX 16
typedef struct scim_pages scim_pages;
/* NULL on ENOMEM (lists then walk from the first resource, as before). */
scim_pages *scim_pages_new(void);
void scim_pages_free(scim_pages *p); /* NULL is a no-op; no read may be using it */
typedef struct scim_pages_stats {
  uint64_t steps;  /* cursor steps of unfiltered list walks (skipped and listed) */
  uint64_t hits;   /* pages that began at a checkpoint */
  uint64_t misses; /* pages past startIndex 1 with none to begin at (or a key that changed) */
} scim_pages_stats;
void scim_pages_stats_get(scim_pages *p, scim_pages_stats *out);

typedef struct scim_req {
  const char *tenant;
  const char *method;      /* "GET", "POST", "PUT", "PATCH", "DELETE" */
  const char *path;        /* after ".../scim/v2", e.g. "/Users/<id>" */
  const char *query;       /* raw query string or NULL */
  json_t *body;            /* parsed strictly by the caller; borrowed, never modified */
  const char *base_url;    /* "<public_url>/t/<tenant>/scim/v2" */
  const char *if_match;    /* header or NULL */
  const char *if_none_match; /* header or NULL (GET of one resource → 304) */
  char new_id[SCIM_ID_LEN + 1]; /* id for a POST, prepared by the caller */
  char now[32];            /* RFC 3339 timestamp, prepared by the caller */
  size_t max_count;        /* cap on `count` (scim_max_count) */
  /* Creates: the tenant's users and groups at most (scim_users_per_tenant_max,
   * scim_groups_per_tenant_max), checked against the directory's count in
   * the create's transaction; past it a POST is 507 naming the key. 0: no
   * cap. */
  uint64_t users_max, groups_max;
  scim_budget *budget;     /* reads: the loop's (borrowed), or NULL: unbounded */
  /* Group writes (POST, PUT): the reply's members are left out and the
   * group named in rs->members_of; the caller lists them after the commit
   * with scim_reply_members, off the store writer (rendering 100,000 of
   * them is ~0.6 s, which every tenant's deactivations would wait for).
   * false: rendered inside the write, as before. */
  bool members_later;
  /* Reads: the process's list checkpoints (borrowed), or NULL: every
   * unfiltered page walks from the first resource. */
  scim_pages *pages;
} scim_req;

typedef struct scim_resp {
  int status;
  json_t *body;            /* owned; NULL for 204 */
  char location[600];      /* "" when none */
  char etag[48];           /* "" when none */
  /* The user this request takes access away from (an active user
   * deactivated or deleted), set once the request is found valid and
   * before its writes: when they cannot be committed the caller cuts the
   * user anyway (st_dir_user_cut_unwritten: fail closed). "" otherwise. */
  char cut_user[SCIM_ID_LEN + 1];
  /* The group whose memberships this request takes away (a group PATCH or
   * PUT that removes members, a DELETE), set as it removes them: when the
   * store fails them (store_failed, or the commit) the caller cuts those
   * memberships anyway (st_dir_membership_cut_unwritten). cut_members: the
   * user ids removed (owned; NULL: none); cut_group_all: every member (a
   * DELETE, or a removal the store cut short: who else it removes is not
   * known). A request refused for another reason (400, 412) cuts nothing. */
  char cut_group[SCIM_ID_LEN + 1];
  json_t *cut_members;
  bool cut_group_all;
  bool store_failed; /* the write failed, not the request: a store error or a
                        lifecycle hook's failure ended the handler */
  /* A group write's reply whose members were left out (rq->members_later):
   * the group's id, for scim_reply_members; "" otherwise. */
  char members_of[SCIM_ID_LEN + 1];
} scim_resp;

/* The "via" of the lifecycle events a write request emits (st_dir_event):
 * "post", "put", "patch" or "delete", by its method. Static. */
const char *scim_via(const scim_req *rq);
/* The methods a SCIM path takes, as an Allow header's value ("GET, HEAD,
 * POST" for /Users, "POST" for a .search, …), or NULL when the path names
 * no SCIM endpoint (404). Static. scim_handle answers the same 404 and
 * 405s; the gateway asks this first, so that neither reaches the store
 * writer (a 405 on the writer every tenant's deactivations share). */
const char *scim_allowed_methods(const char *path);
/* Whether method is one of scim_allowed_methods(path)'s. */
bool scim_method_allowed(const char *path, const char *method);
/* True for methods that must run in a writer job. */
bool scim_is_write(const char *method);
/* True when the request writes (POST …/.search is a read). */
bool scim_is_write_request(const scim_req *rq);
/* True when a read is answered from indexes or one key (fine on the loop
 * thread, within a scim_budget); false when it must evaluate a filter on
 * every resource, or skip more resources than the loop's budget buys to
 * reach its startIndex (SCIM_LOOP_SKIPS_PER_ENTRY): run it on a worker
 * thread. */
bool scim_read_is_cheap(const scim_req *rq);
/* The most one user or group may hold, its members aside (they live in
 * the membership index): every write of it runs on the store writer that
 * every tenant's deactivations share, and costs in proportion (~0.4 s for
 * a million JSON values). */
#define SCIM_RES_VALUES_MAX 10000        /* JSON values */
#define SCIM_RES_BYTES_MAX (256 * 1024)  /* bytes of member names and strings */
/* A write whose body (a group's members aside: the top level's "members",
 * a PATCH operation's on members; of a PATCH, the operations' values)
 * holds more than that: fills rs with a
 * 413 and returns true. Counting stops at the bound, so it is cheap enough
 * for the loop, where it runs before the request reaches the writer. */
bool scim_write_too_large(const scim_req *rq, scim_resp *rs);
/* Handles one request. Reads need any txn; writes need the job's write txn.
 * Returns 0 when the writes (if any) should commit, or a negative value
 * (SCIM_EABORT, or an ST_E* passed up) when the job must abort (rs then
 * holds the error reply). rs is reset at
 * entry, so a re-run overwrites it. */
int scim_handle(st_txn *txn, const scim_req *rq, scim_resp *rs);
void scim_resp_clear(scim_resp *rs);
/* After a group write's commit (rs->members_of set, rq->members_later):
 * in any read transaction, completes rs's reply. When the group's
 * meta.version still is the one the write made, its members are added to
 * the write's reply where a render in the write would have put them (the
 * same bytes); when it changed since, the reply becomes the newer version
 * whole, as a GET would answer it (ETag too); when the group is gone, the
 * reply stays without members. Within rq->budget when set: past it rs is
 * left as it was (budget->over) and the caller runs it again without one.
 * Clears members_of once done. 0, or an ST_E* read error (rs unchanged). */
int scim_reply_members(st_txn *txn, const scim_req *rq, scim_resp *rs);
/* Fills rs with a SCIM Error (status, scimType may be NULL, detail). */
void scim_error(scim_resp *rs, int status, const char *scim_type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* New random UUIDv4 text (CSPRNG). 0 or SCIM_ERANDOM. */
int scim_new_id(char out[SCIM_ID_LEN + 1]);

/* Admin views (gateway/api/admin.c): a user with its groups, lists with an
 * optional SCIM filter. Same response conventions. */
int scim_admin_list(st_txn *txn, const char *tenant, const char *what /* "Users"|"Groups" */,
                    const char *filter, size_t start, size_t count, const char *base_url,
                    scim_resp *rs);

/* Finds a user by id or (case-insensitive) userName. *user is the stored
 * JSON (caller json_decref). ST_ENOTFOUND if absent. Same as
 * st_dir_user_find (store/dir.h), which modules below the gateway use. */
int scim_user_lookup(st_txn *txn, const char *tenant, const char *id_or_username, json_t **user);
/* The user's group ids (array of strings, caller json_decref); same as
 * st_dir_user_groups. */
int scim_user_groups(st_txn *txn, const char *tenant, const char *user_id, json_t **gids);

/* Deletes up to `limit` keys of a tenant across the SCIM databases; returns
 * how many were deleted (< limit means done) or a negative error. */
int scim_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers scim_purge_tenant as the "scim" tenant purge (st_purge_add);
 * at startup, with the other store registrations. 0 or ST_E*. */
int scim_register_purge(st_store *st);

/* Registers the SCIM index consistency check with st_check. */
void scim_register_checks(st_store *st);

#endif
