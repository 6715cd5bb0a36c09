/* gateway/api/admin_int.h — private to the admin API (gateway/api/admin*.c):
 * the caller of a request, the request helpers every resource handler uses,
 * the shared writer-job plumbing, and one handler per resource.
 *
 * Files: admin.c (authentication, preauth, dispatch, request helpers),
 * admin_tenants.c, admin_tokens.c (SCIM/admin tokens, employee tokens, the
 * last-use job), admin_connectors.c, admin_oidc.c (tenant OIDC settings),
 * admin_policy.c (policy and explain), admin_directory.c (users/groups
 * views), admin_users.c (revoke/restore a person, their grants), admin_approvals.c (held calls'
 * requests: list, cancel), admin_oauth.c (the OAuth clients), admin_jobs.c (submit, the generic done callback, job errors, the
 * tenant purge driver).
 *
 * Every request helper that answers (returns -1 / NULL after it responded)
 * says so; the caller then only cleans up. Nothing here outlives a request
 * except a job, which its done callback frees. */
#ifndef MCPGATE_GATEWAY_API_ADMIN_INT_H
#define MCPGATE_GATEWAY_API_ADMIN_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/api/admin.h"
#include "gateway/core/limits.h"
#include "gateway/core/server.h"
#include "store/store.h"
#include "store/tenant.h"
#include "store/token.h"

#define PURGE_BATCH 500
#define NAME_MAX_LEN 200


/* Who authenticated the request (admin.c). */
typedef struct admin_caller {
  bool op;            /* operator token */
  char tenant[64];    /* tenant of a tenant admin token */
  char token_id[17];
} admin_caller;

/* ---- request helpers (admin.c) ---- */
/* What a write changed, for its audit record (req->audit_detail):
 * {"before": before, "after": after} (borrowed before, stolen after; NULL:
 * absent — created or deleted). Over 64 KiB of text: only "bytes" and
 * "digest" of each side. Call before answering. */
void admin__audit_change(gw_req *req, json_t *before, json_t *after);
/* RFC 3339 UTC timestamp of now. */
void admin__now_rfc3339(char out[32]);
/* Tenant reach: 0, or answers 403 and returns -1. */
int admin__reach(gw_req *req, const admin_caller *who, const char *tenant);
/* 0 for the operator, or answers 403 and returns -1. */
int admin__need_operator(gw_req *req, const admin_caller *who);
/* Strict JSON object body (caller json_decref), or answers and returns NULL. */
json_t *admin__parse_body(gw_req *req);
/* The same for a body carrying a credential: errors never quote it, and
 * the body is wiped once parsed. */
json_t *admin__parse_secret_body(gw_req *req);
/* Refuses keys outside `allowed` (NULL-terminated): answers 400, returns -1. */
int admin__only_keys(gw_req *req, json_t *j, const char *const *allowed);
/* Optional string field with length bounds; *out borrowed from j (NULL when
 * absent). Answers 400 and returns -1 when invalid. */
int admin__opt_string(gw_req *req, json_t *j, const char *key, size_t maxlen, const char **out);
/* A path segment, percent-decoded into out (no '+' rule: a path). False
 * for a malformed escape, %00, or more than cap - 1 bytes. */
bool admin__seg_decode(const char *in, char *out, size_t cap);
/* Read txn on an existing, active tenant (caller st_txn_end), or answers
 * 503/404 and returns -1. */
int admin__read_tenant(gw_req *req, const char *tenant, st_txn **txn);
/* The tenant's SCIM base URL; caller frees (NULL on allocation failure). */
char *admin__scim_base_url(gw_server *srv, const char *tenant);

/* ---- heavy reads (admin.c) ----
 * A read too long for the loop (an audit query, a directory scan, a policy
 * view, a list of approval requests, tokens or OAuth clients) runs on libuv's thread pool, which the outbound DNS lookups share,
 * holding one of the tenant's heavy-read slots of its kind (limits.h).
 * admin__heavy_enter takes the slot: 0, or answers 429 too_many_reads
 * ("this tenant already has 2 <what> running") or 503 busy and returns -1.
 * admin__pool_read takes it too, then runs read(ctx) on a pool thread (it
 * opens its own read txn) and answer(req, ctx) on the loop afterwards;
 * answer gets req NULL when there is nothing to answer (the client left,
 * or the pool cancelled the read, answered 503 here) and then only frees
 * ctx. 0: queued (ctx is answer's from now on); -1: answered (ctx still
 * the caller's). MCPGATE_TEST_ADMIN_READ_PAUSE_FILE (a test hook) holds
 * every such read on its thread while the file exists. */
int admin__heavy_enter(gw_req *req, const char *tenant, gw_heavy_kind kind, const char *what);
int admin__pool_read(gw_req *req, const char *tenant, gw_heavy_kind kind, const char *what, void (*read)(void *ctx),
                     void (*answer)(gw_req *req, void *ctx), void *ctx);

/* ---- the tenant and token jobs (admin_jobs.c) ---- */
/* One job struct for tenant and SCIM/admin token writes (the fields each
 * kind of job fills); the reply is the resource's own function. */
typedef struct admin_job admin_job;
/* Answers a committed job (status 0): the resource's reply. */
typedef void (*admin_reply_fn)(admin_job *j);
struct admin_job {
  gw_req *req;
  char actor[48];             /* req->actor: checked again in the write (admin__submit) */
  st_job_fn inner;            /* admin__submit: the job it runs once the caller checks out */
  gw_loop *lp;
  const char *what;           /* named in the shared errors: "no such <what>" */
  admin_reply_fn reply;
  char tenant[64];
  char name[NAME_MAX_LEN + 1];
  char name_out[NAME_MAX_LEN + 1]; /* tenant PATCH, out: the name stored after it (name stays its input) */
  char created[32];
  char kind[8];
  char tokid[ST_TOKEN_ID_BUFSZ];
  char uid[ST_TOKEN_ID_BUFSZ]; /* tenant create: the new incarnation's uid */
  uint8_t hash[32];
  char token[ST_TOKEN_BUFSZ]; /* shown once in the reply, wiped after */
  int more;                   /* purge: keys remain */
  int64_t max;                /* SCIM or admin token create: the operator's cap of the kind */
  json_t *settings;           /* tenant PATCH: the validated settings patch (read-only in the job) */
  json_t *view;               /* tenant PATCH, out: the settings in force after it */
  json_t *before;             /* tenant PATCH, out: the name and settings view before it (the audit's change) */
};

/* Wipes the token and frees j (and its settings). */
void admin__job_free(admin_job *j);
/* Answers the store errors every job shares (404, 409, 507, 500) and
 * returns 1, or returns 0 when status is not one of them. */
int admin__job_error(gw_req *req, int status, const char *what);
/* The caller of a write, again, inside its transaction (a request is
 * authenticated when its headers arrive; a discovery, a pool read or the
 * writer's queue may run it much later): 0 for the operator, or a tenant
 * admin token (actor "admin-token:<id>", req->actor) that still exists in
 * an active tenant; GW_API_EREVOKED when it was revoked or its tenant
 * deleted meanwhile (admin__job_error: 401, nothing written), or a store
 * error. Every admin write job calls it first (found by review: a
 * connector discovered for a minute after its admin's token was revoked
 * was still written). */
int admin__actor_still(st_txn *txn, const char *tenant, const char *actor);
/* Submits fn; once committed, the shared errors (admin__job_error with
 * `what`) or reply(j) answer, then j is freed. On failure to submit frees j
 * and answers 503. */
void admin__submit(gw_req *req, admin_job *j, st_job_fn fn, const char *what, admin_reply_fn reply);
/* Starts the bounded purge of a tenant marked deleting (fire and forget). */
void admin__start_purge(gw_loop *lp, const char *tenant);

/* ---- record writes shared across resources ---- */
/* admin_tenants.c: one bounded purge step (a writer job on an admin_job). */
int admin__job_tenant_purge(st_txn *txn, void *arg);
/* admin_tokens.c: writes the record and index of j's SCIM/admin token. */
int admin__write_token(st_txn *txn, admin_job *j, const char *name);

/* ---- one handler per resource; each answers the request ---- */
void admin__tenants_list(gw_req *req, const admin_caller *who);
void admin__tenants_create(gw_req *req, const admin_caller *who);
void admin__tenant_one(gw_req *req, const admin_caller *who, const char *id);
void admin__tokens(gw_req *req, const admin_caller *who, const char *tenant, const char *kind,
                   const char *tokid);
void admin__employee_tokens(gw_req *req, const admin_caller *who, const char *tenant, const char *tokid);
void admin__connectors(gw_req *req, const admin_caller *who, const char *tenant, const char *name);
void admin__policy(gw_req *req, const admin_caller *who, const char *tenant);
void admin__oidc(gw_req *req, const admin_caller *who, const char *tenant);
void admin__explain(gw_req *req, const admin_caller *who, const char *tenant);
/* seg: the client_id's segment (NULL: the collection); block_seg: the
 * path goes on with /block (seg is then not NULL). */
void admin__oauth_clients(gw_req *req, const admin_caller *who, const char *tenant, const char *seg, bool block_seg);
void admin__directory(gw_req *req, const admin_caller *who, const char *tenant, const char *what,
                      const char *id);
/* admin_users.c: …/users/{ref}/{action}[/{arg}] (revoke, restore, grants). */
/* GET …/audit[/export] (admin_audit.c): the tenant's audit records. */
/* /admin/v1/tenants/{t}/approvals[/{id}[/cancel]] (admin_approvals.c) */
void admin__approvals(gw_req *req, const admin_caller *who, const char *tenant, const char *id, const char *action);
/* /admin/v1/tenants/{t}/audit/sink (admin_audit_sink.c) */
void admin__audit_sink(gw_req *req, const admin_caller *who, const char *tenant);
void admin__audit(gw_req *req, const admin_caller *who, const char *tenant, const char *sub);
/* GET …/revocations (admin_users.c): the tenant's upstream revocations and their state. */
void admin__revocations(gw_req *req, const admin_caller *who, const char *tenant);
void admin__user_actions(gw_req *req, const admin_caller *who, const char *tenant, const char *ref,
                         const char *action, const char *arg);

/* ---- connectors (admin_connectors.c, admin_discover.c) ---- */
/* Whether who may PUT body's "ca_file" into connector (tenant, name)
 * (admin_connectors.c's file comment): 0 yes (the operator; no ca_file, or
 * not a path; a file in the tenant's folder of tenant_ca_dir); 1 only as
 * the value the connector stores now (the write must check it again:
 * ca_stored); -1 answered (403, or the tenant's 404/503). Reads the store
 * (a short read txn) and stats the file: on the loop, before anything is
 * fetched with it. */
int admin__ca_file_allowed(gw_req *req, const admin_caller *who, const char *tenant, const char *name,
                           const json_t *body);
/* Answers the 403 of a refused ca_file (one text for every reason). */
void admin__ca_file_refused(gw_req *req, const char *tenant);
/* Writes a validated connector (vault_connector_parse's config, owned;
 * secret malloc'd or NULL, owned, wiped) in a writer job and answers as a
 * connector PUT does (201/200 with the admin view). uid: the tenant
 * incarnation the request began in — written only while the tenant is
 * still that one (404 "no such tenant" else); "" checks nothing.
 * ca_stored: config's ca_file is written only if the connector stores
 * that value now (403 as admin__ca_file_refused else). */
void admin__connector_write(gw_req *req, const char *tenant, const char *name, const char *uid, json_t *config,
                            char *secret, bool ca_stored);
/* A PUT with auth {"type":"oauth","discover":true}: reads the upstream's
 * authorization metadata, registers the gateway as a client (CIMD or DCR),
 * then admin__connector_write (passing ca_stored, admin__ca_file_allowed's
 * verdict, which the caller has asked before). Takes body
 * (json_decref'd). Answers. */
void admin__connector_discover(gw_req *req, const char *tenant, const char *name, json_t *body, bool ca_stored);
/* Takes req's discovery slot for connector (tenant, name)
 * (gw_limits_discover_enter): 0, or answers 429 discovery_in_progress /
 * too_many_discoveries with Retry-After and returns -1. */
int admin__discover_slot(gw_req *req, const char *tenant, const char *name);
/* The admin's view of a stored connector (owned): vault's view, the
 * redirect URI of an oauth connector, a discovered one's "rediscovery"
 * schedule (read in txn when not NULL). */
json_t *admin__connector_view(const gw_server *srv, st_txn *txn, const char *tenant, const json_t *rec);
/* POST …/connectors/{name}/rediscover (optional body {"register":"new"}):
 * reads a discovered connector's authorization again now, writes it if it
 * changed, answers 200 with the admin view and "rediscovery" (its outcome
 * and the next reading). Answers. */
void admin__connector_rediscover(gw_req *req, const char *tenant, const char *name);
/* When a discovered connector's config should be read again (ms; 0: never
 * by schedule) and why ("scheduled", or "expiring" for a registration's
 * secret that lapses first). */
int64_t admin__discover_next_due(const gw_server *srv, const json_t *config, int64_t now_ms, const char **reason);
/* The schedule's driver on the primary loop (loop_start / loop_stop). */
int admin__rediscover_start(gw_loop *lp);
void admin__rediscover_stop(gw_loop *lp);

#endif
