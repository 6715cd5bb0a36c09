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
 * the caller in scim_req before submitting.
 *
 * Store layout (every key starts with the tenant id and a NUL, so a tenant's
 * data is one prefix per database):
 *   ST_DB_SCIM_RES  t\0 'U' id            → user JSON (the resource as stored)
 *                   t\0 'G' id            → group JSON (without members)
 *   ST_DB_SCIM_IDX  t\0 'u' lower(userName)          → user id   (unique)
 *                   t\0 'e' 'U'|'G' externalId \0 id → ""
 *                   t\0 'd' lower(displayName) \0 id → ""        (groups)
 *                   t\0 'n' 'U'|'G'                  → count (u64 LE)
 *   ST_DB_SCIM_MEM  t\0 'm' gid \0 uid    → ""   group → members
 *                   t\0 'g' uid \0 gid    → ""   user → groups
 * Index values longer than SCIM__IDX_VAL_MAX are replaced by 0xFF + SHA-256;
 * every index hit is verified against the resource. */
#ifndef MCPGATE_SCIM_SCIM_H
#define MCPGATE_SCIM_SCIM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

#define SCIM_URN_USER "urn:ietf:params:scim:schemas:core:2.0:User"
#define SCIM_URN_GROUP "urn:ietf:params:scim:schemas:core:2.0:Group"
#define SCIM_URN_ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#define SCIM_URN_LIST "urn:ietf:params:scim:api:messages:2.0:ListResponse"
#define SCIM_URN_PATCH "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#define SCIM_URN_ERROR "urn:ietf:params:scim:api:messages:2.0:Error"

#define SCIM_ID_LEN 36 /* UUID text */
#define SCIM_DEFAULT_COUNT 100

/* ---- lifecycle events, emitted inside the write transaction ---- */
enum {
  SCIM_EV_USER_CREATED = ST_EVENT_BASE_SCIM,
  SCIM_EV_USER_CHANGED,      /* any stored attribute changed */
  SCIM_EV_USER_DEACTIVATED,  /* active true→false: PATCH (with/without path), PUT, DELETE */
  SCIM_EV_USER_REACTIVATED,  /* active false→true */
  SCIM_EV_USER_DELETED,      /* after DEACTIVATED when the user was active */
  SCIM_EV_MEMBERSHIP_CHANGED,/* one group; added/removed user ids */
  SCIM_EV_GROUP_CREATED,
  SCIM_EV_GROUP_RENAMED,
  SCIM_EV_GROUP_DELETED,
  SCIM_EV__END
};
#define SCIM_EV_COUNT (SCIM_EV__END - SCIM_EV_USER_CREATED)
/* "user_created", … for metrics labels. */
const char *scim_event_name(int kind);

/* Everything borrowed for the duration of the hook call. */
typedef struct scim_event {
  const char *tenant;
  const char *id;          /* user id (user events) or group id */
  const char *name;        /* userName or displayName (new one on rename) */
  const char *old_name;    /* GROUP_RENAMED */
  const char *via;         /* "post", "put", "patch", "delete" */
  const char *const *added;   /* MEMBERSHIP_CHANGED: user ids */
  size_t nadded;
  const char *const *removed;
  size_t nremoved;
} scim_event;

/* ---- requests ---- */

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
} scim_req;

typedef struct scim_resp {
  int status;
  json_t *body;            /* owned; NULL for 204 */
  char location[600];      /* "" when none */
  char etag[48];           /* "" when none */
} scim_resp;

/* True for methods that must run in a writer job. */
bool scim_is_write(const char *method);
/* True when the request writes (POST …/.search is a read). */
bool scim_is_write_request(const scim_req *rq);
/* True when a read is answered from indexes or one key (fine on the loop
 * thread); false when it must evaluate a filter on every resource (run it
 * on a worker thread). */
bool scim_read_is_cheap(const scim_req *rq);
/* Handles one request. Reads need any txn; writes need the job's write txn.
 * Returns 0 when the writes (if any) should commit, or a negative value
 * when the job must abort (rs then holds the error reply). rs is reset at
 * entry, so a re-run overwrites it. */
int scim_handle(st_txn *txn, const scim_req *rq, scim_resp *rs);
void scim_resp_clear(scim_resp *rs);
/* Fills rs with a SCIM Error (status, scimType may be NULL, detail). */
void scim_error(scim_resp *rs, int status, const char *scim_type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* New random UUIDv4 text (CSPRNG). 0 or negative. */
int scim_new_id(char out[SCIM_ID_LEN + 1]);

/* Admin views (gateway/api/admin.c): a user with its groups, lists with an
 * optional SCIM filter. Same response conventions. */
int scim_admin_list(st_txn *txn, const char *tenant, const char *what /* "Users"|"Groups" */,
                    const char *filter, size_t start, size_t count, const char *base_url,
                    scim_resp *rs);

/* Finds a user by id or (case-insensitive) userName. *user is the stored
 * JSON (caller json_decref). ST_ENOTFOUND if absent. */
int scim_user_lookup(st_txn *txn, const char *tenant, const char *id_or_username, json_t **user);
/* The user's group ids (array of strings, caller json_decref). */
int scim_user_groups(st_txn *txn, const char *tenant, const char *user_id, json_t **gids);

/* Deletes up to `limit` keys of a tenant across the SCIM databases; returns
 * how many were deleted (< limit means done) or a negative error. */
int scim_purge_tenant(st_txn *txn, const char *tenant, int limit);

/* Registers the SCIM index consistency check with st_check. */
void scim_register_checks(st_store *st);

#endif
