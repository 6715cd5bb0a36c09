/* gateway/api/admin_users.c — what an admin does to one person, beyond
 * reading what SCIM provisioned (admin_directory.c):
 *   POST   …/users/{id}/revoke  {"reason"?}  the incident button: the user
 *          is blocked (store/dir.h) and, in the same transaction, every
 *          credential the gateway issued them is deleted by the hooks a
 *          SCIM deactivation runs (tokens, OAuth grants and codes, browser
 *          and MCP sessions); the reply waits for every loop to have ended
 *          their streams and calls (the fan-out gate, gateway/mcp/revoke.c).
 *          Okta's data is untouched. Revoking a blocked user keeps the
 *          first block (200, "already_blocked": true).
 *   POST   …/users/{id}/restore  lifts the block: the person may sign in
 *          again; nothing the block deleted comes back.
 *   GET    …/users/{id}/grants   the applications connected as the person
 *          (OAuth grants of the gateway's authorization server)
 *   DELETE …/users/{id}/grants[/{grant}]  disconnects one, or all (the
 *          person's consent to each client goes too: it asks again).
 * {id} is the SCIM id or the userName (as tokens and explain name users).
 * The caller's identity is written into the block ("operator" or the
 * tenant admin token's id), never a token. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_token.h"
#include "gateway/api/oauth_int.h"
#include "gateway/base/log.h"
#include "vault/grant.h"
#include "vault/vault.h"
#include "store/dir.h"

#define REASON_MAX 500

enum { OP_REVOKE, OP_RESTORE, OP_GRANT_REVOKE, OP_GRANTS_REVOKE, OP_CONN_DROP, OP_CONNS_DROP };

typedef struct user_job {
  gw_req *req;
  char actor[48]; /* req->actor: checked again in the write (admin__actor_still) */
  int op;
  char tenant[64];
  char ref[ST_DIR_IDX_VAL_MAX + 1]; /* id or userName as given */
  char grant[ST_TOKEN_ID_BUFSZ];
  char connector[40]; /* OP_CONN_DROP: its name (up to 32 bytes: never in grant) */
  json_t *info;   /* OP_REVOKE: the block to write (read-only in the job) */
  /* out */
  char uid[ST_DIR_ID_LEN + 1];
  char user_name[ST_DIR_IDX_VAL_MAX + 1];
  bool flag;      /* revoke: already blocked; restore: was blocked */
  int count;      /* grants revoked */
  json_t *block;  /* the block in force after a revoke */
  int status;     /* a revoke that could not be written: its status while the answer waits */
} user_job;

static void job_free(user_job *j) {
  json_decref(j->info);
  json_decref(j->block);
  free(j);
}

/* The user of ref in txn: fills uid and user_name. */
static int find_user(st_txn *txn, user_job *j) {
  json_t *u;
  int rc = st_dir_user_find(txn, j->tenant, j->ref, &u);
  if (rc) return rc;
  gw_strlcpy(j->uid, json_string_value(json_object_get(u, "id")) ?: "", sizeof j->uid);
  gw_strlcpy(j->user_name, json_string_value(json_object_get(u, "userName")) ?: "", sizeof j->user_name);
  json_decref(u);
  return 0;
}

static int job_user(st_txn *txn, void *arg) {
  user_job *j = arg;
  int actor_rc = admin__actor_still(txn, j->tenant, j->actor); /* the caller, again, in the write */
  if (actor_rc) return actor_rc;
  json_decref(j->block);
  j->block = NULL;
  j->flag = false;
  j->count = 0;
  int rc = st_tenant_active(txn, j->tenant);
  if (rc) return rc == ST_ENOTFOUND ? GW_API_ENOTENANT : rc;
  if ((rc = find_user(txn, j))) return rc;
  switch (j->op) {
  case OP_REVOKE:
    if ((rc = st_dir_user_block(txn, j->tenant, j->uid, j->info, &j->flag))) return rc;
    return st_dir_user_block_get(txn, j->tenant, j->uid, &j->block);
  case OP_RESTORE: return st_dir_user_unblock(txn, j->tenant, j->uid, &j->flag);
  case OP_GRANTS_REVOKE: /* every application disconnected: their consents go too */
    rc = auth_oauth_disconnect_user(txn, j->tenant, j->uid);
    if (rc < 0) return rc;
    j->count = rc;
    return 0;
  case OP_CONN_DROP:
  case OP_CONNS_DROP: {
    /* upstream grants: out of the live tables now, revoked at the
     * upstream by the queue (vault/grant.h) */
    char now[32];
    admin__now_rfc3339(now);
    json_t *gs = NULL;
    if ((rc = vault_grants_of_user(txn, j->tenant, j->uid, &gs))) {
      json_decref(gs);
      return rc;
    }
    size_t i;
    json_t *g;
    json_array_foreach(gs, i, g) {
      const char *c = json_string_value(json_object_get(g, "connector")) ?: "";
      if (j->op == OP_CONN_DROP && strcmp(c, j->connector)) continue;
      if ((rc = vault_grant_drop(txn, j->tenant, j->uid, c, "admin_disconnect", now))) break;
      j->count++;
    }
    json_decref(gs);
    if (rc) return rc;
    return j->op == OP_CONN_DROP && !j->count ? VAULT_ENOGRANT : 0;
  }
  default: {
    /* only a grant of this person: the URL names both */
    json_t *gs = NULL, *g;
    size_t i;
    bool theirs = false;
    if ((rc = auth_oauth_grants(txn, j->tenant, j->uid, &gs))) {
      json_decref(gs);
      return rc;
    }
    json_array_foreach(gs, i, g) theirs = theirs || !strcmp(json_string_value(json_object_get(g, "id")) ?: "", j->grant);
    json_decref(gs);
    if (!theirs) return AUTH_EOAUTH_GRANT;
    j->count = 1;
    return auth_oauth_disconnect(txn, j->tenant, j->uid, j->grant); /* and the consent to its client */
  }
  }
}

/* The incident button's block could not be written (the store full even
 * for the reserve, a failed commit): access goes anyway, in memory, until
 * the admin's block or restore commits (a restart keeps it) (fail
 * closed; store/dir.h). The answer is still the write's error, saying so. */
static void revoke_unwritten_reply(gw_req *req, int status, int cut) {
  const char *what = cut == 0 ? "the user's access is cut in memory (across restarts) until you restore them; "
                                "revoke again once the store has room"
                              : "nor could the user be cut in memory: they keep access until a revoke succeeds";
  if (status == ST_EMAPFULL)
    gw_respond_error(req, 507, "store_full", "the store is full (raise store_map_size); nothing was written — %s", what);
  else
    gw_respond_error(req, 500, "store_error", "the write failed: %s; nothing was written — %s", st_strerror(status), what);
}

/* the answer once every loop ended what the cut in memory took away
 * (gw_loop_after_fanout), as a committed revoke's (found by review: the
 * 507 left first) */
static void revoke_cut_settled(int ignored, void *arg) {
  (void)ignored;
  user_job *j = arg;
  revoke_unwritten_reply(j->req, j->status, 0);
  job_free(j);
}

/* true when the answer waits for the cut to fan out (j is then freed there) */
static bool revoke_unwritten(gw_req *req, user_job *j, int status) {
  gw_log_ctx lc = {j->tenant, req->id};
  int rc = st_dir_user_cut_unwritten(req->lp->srv->store, j->tenant, j->uid, "revoke");
  snprintf(req->audit_note, sizeof req->audit_note, "not written; user %s %s", j->uid,
           rc == 0 ? "cut in memory" : "NOT cut (no room in memory)");
  GW_LOG(GW_LOG_ERROR, "admin", &lc, "user %s: the revoke could not be written (%s); %s", j->uid, st_strerror(status),
         rc == 0 ? "the user's access is cut in memory (across restarts) until an admin restores them"
                 : "nor could the user be cut in memory: they keep access until a revoke succeeds");
  j->status = status;
  if (rc == 0 && gw_loop_after_fanout(req->lp, revoke_cut_settled, j) == 0) return true;
  revoke_unwritten_reply(req, status, rc);
  return false;
}

static void done_user(int status, void *arg) {
  user_job *j = arg;
  gw_req *req = j->req;
  gw_log_ctx lc = {j->tenant, req->id};
  if (status == GW_API_ENOTENANT) {
    gw_respond_error(req, 404, "not_found", "no such tenant");
  } else if (status == AUTH_EOAUTH_GRANT) {
    gw_respond_error(req, 404, "not_found", "this user has no such application grant");
  } else if (status == VAULT_ENOGRANT) {
    gw_respond_error(req, 404, "not_found", "this user has not connected that connector");
  } else if (status == ST_ENOTFOUND) {
    gw_respond_error(req, 404, "not_found", "no user with this id or userName in this tenant");
  } else if (j->op == OP_REVOKE && j->uid[0] && status >= ST_ERR_LAST && status <= ST_ERR_FIRST) {
    if (revoke_unwritten(req, j, status)) return;
  } else if (!admin__job_error(req, status, "user")) {
    json_t *user = json_pack("{s:s,s:s}", "id", j->uid, "userName", j->user_name);
    switch (j->op) {
    case OP_REVOKE:
      if (!j->flag) GW_LOG(GW_LOG_WARN, "admin", &lc, "access of user %s revoked by an admin", j->uid);
      gw_respond_json(req, 200, json_pack("{s:o,s:O,s:b}", "user", user, "blocked", j->block ? j->block : json_null(),
                                          "already_blocked", j->flag));
      break;
    case OP_RESTORE:
      if (j->flag) GW_LOG(GW_LOG_WARN, "admin", &lc, "user %s restored by an admin: they may sign in again", j->uid);
      gw_respond_json(req, 200, json_pack("{s:o,s:n,s:b}", "user", user, "blocked", "was_blocked", j->flag));
      break;
    case OP_CONN_DROP:
    case OP_CONNS_DROP:
      GW_LOG(GW_LOG_INFO, "admin", &lc, "%d upstream connection(s) of user %s disconnected by an admin", j->count,
             j->uid);
      if (j->op == OP_CONN_DROP) {
        json_decref(user);
        gw_respond(req, 204, NULL, NULL, 0);
      } else {
        gw_respond_json(req, 200, json_pack("{s:o,s:i}", "user", user, "disconnected", j->count));
      }
      break;
    default:
      GW_LOG(GW_LOG_INFO, "admin", &lc, "%d application grant(s) of user %s revoked by an admin", j->count, j->uid);
      if (j->op == OP_GRANT_REVOKE) {
        json_decref(user);
        gw_respond(req, 204, NULL, NULL, 0);
      } else {
        gw_respond_json(req, 200, json_pack("{s:o,s:i}", "user", user, "revoked", j->count));
      }
    }
  }
  job_free(j);
}

static void submit(gw_req *req, user_job *j) {
  j->req = req;
  snprintf(j->actor, sizeof j->actor, "%s", req->actor);
  if (gw_loop_submit(req->lp, job_user, done_user, j)) {
    job_free(j);
    gw_resp_header(req, "Retry-After", "1");
    gw_respond_error(req, 503, "store_busy", "the store cannot take writes right now");
  }
}

static user_job *job_new(gw_req *req, const char *tenant, const char *ref, int op) {
  user_job *j = calloc(1, sizeof *j);
  if (!j) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return NULL;
  }
  j->op = op;
  gw_strlcpy(j->tenant, tenant, sizeof j->tenant);
  gw_strlcpy(j->ref, ref, sizeof j->ref);
  return j;
}

/* POST …/revoke: the optional body {"reason": "…"}. */
static void block_user(gw_req *req, const admin_caller *who, const char *tenant, const char *ref) {
  const char *reason = NULL;
  json_t *b = NULL;
  if (req->body_len) {
    if (!(b = admin__parse_body(req))) return;
    static const char *const keys[] = {"reason", NULL};
    if (admin__only_keys(req, b, keys) || admin__opt_string(req, b, "reason", REASON_MAX, &reason)) {
      json_decref(b);
      return;
    }
  }
  user_job *j = job_new(req, tenant, ref, OP_REVOKE);
  if (!j) {
    json_decref(b);
    return;
  }
  char at[32], by[64];
  admin__now_rfc3339(at);
  if (who->op) snprintf(by, sizeof by, "operator");
  else snprintf(by, sizeof by, "admin token %s", who->token_id);
  j->info = json_pack("{s:s,s:s,s:s?}", "at", at, "by", by, "reason", reason);
  json_decref(b);
  if (!j->info) {
    job_free(j);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  submit(req, j);
}

static void grants_list(gw_req *req, const char *tenant, const char *ref) {
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  json_t *u = NULL;
  int rc = st_dir_user_find(txn, tenant, ref, &u);
  json_t *gv = rc ? NULL : oauth__grants_view(txn, tenant, json_string_value(json_object_get(u, "id")));
  st_txn_end(txn);
  if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "no user with this id or userName in this tenant");
  else if (rc || !gv) gw_respond_error(req, 500, "store_error", "the grants cannot be read");
  else
    gw_respond_json(req, 200, json_pack("{s:{s:O,s:O},s:o}", "user", "id", json_object_get(u, "id"), "userName",
                                        json_object_get(u, "userName"), "grants", gv));
  json_decref(u);
}

/* The person's upstream connections (vault grants): never a token. */
static void connections_list(gw_req *req, const char *tenant, const char *ref) {
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  json_t *u = NULL, *gs = NULL;
  int rc = st_dir_user_find(txn, tenant, ref, &u);
  if (!rc) rc = vault_grants_of_user(txn, tenant, json_string_value(json_object_get(u, "id")), &gs);
  st_txn_end(txn);
  if (rc == ST_ENOTFOUND) gw_respond_error(req, 404, "not_found", "no user with this id or userName in this tenant");
  else if (rc) gw_respond_error(req, 500, "store_error", "the connections cannot be read");
  else
    gw_respond_json(req, 200, json_pack("{s:{s:O,s:O},s:O}", "user", "id", json_object_get(u, "id"), "userName",
                                        json_object_get(u, "userName"), "connections", gs));
  json_decref(gs);
  json_decref(u);
}

static void not_allowed(gw_req *req, const char *allow) {
  gw_resp_header(req, "Allow", allow);
  gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
}

void admin__user_actions(gw_req *req, const admin_caller *who, const char *tenant, const char *ref,
                         const char *action, const char *arg) {
  if (admin__reach(req, who, tenant)) return;
  gw_strlcpy(req->tenant, tenant, sizeof req->tenant);
  if (strlen(ref) > ST_DIR_IDX_VAL_MAX) {
    gw_respond_error(req, 404, "not_found", "no user with this id or userName in this tenant");
    return;
  }
  bool post = !strcmp(req->method, "POST");
  if (!arg && (!strcmp(action, "revoke") || !strcmp(action, "restore"))) {
    if (!post) {
      not_allowed(req, "POST");
      return;
    }
    if (action[2] == 'v') {
      block_user(req, who, tenant, ref);
    } else {
      user_job *j = job_new(req, tenant, ref, OP_RESTORE);
      if (j) submit(req, j);
    }
    return;
  }
  if (!strcmp(action, "grants")) {
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    if (get && !arg) {
      grants_list(req, tenant, ref);
    } else if (!strcmp(req->method, "DELETE")) {
      if (arg && strlen(arg) >= ST_TOKEN_ID_BUFSZ) {
        gw_respond_error(req, 404, "not_found", "this user has no such application grant");
        return;
      }
      user_job *j = job_new(req, tenant, ref, arg ? OP_GRANT_REVOKE : OP_GRANTS_REVOKE);
      if (!j) return;
      if (arg) gw_strlcpy(j->grant, arg, sizeof j->grant);
      submit(req, j);
    } else {
      not_allowed(req, arg ? "DELETE" : "GET, DELETE");
    }
    return;
  }
  if (!strcmp(action, "connections")) {
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    if (get && !arg) {
      connections_list(req, tenant, ref);
    } else if (!strcmp(req->method, "DELETE")) {
      if (arg && !vault_connector_name_valid(arg)) {
        gw_respond_error(req, 404, "not_found", "this user has not connected that connector");
        return;
      }
      user_job *j = job_new(req, tenant, ref, arg ? OP_CONN_DROP : OP_CONNS_DROP);
      if (!j) return;
      if (arg) gw_strlcpy(j->connector, arg, sizeof j->connector);
      submit(req, j);
    } else {
      not_allowed(req, arg ? "DELETE" : "GET, DELETE");
    }
    return;
  }
  gw_respond_error(req, 404, "not_found", "no such admin endpoint: %s", req->path);
}

/* GET …/revocations: every upstream revocation of the tenant's grants,
 * newest first, with its state (pending, done, failed, manual). */
void admin__revocations(gw_req *req, const admin_caller *who, const char *tenant) {
  if (admin__reach(req, who, tenant)) return;
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    not_allowed(req, "GET");
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  json_t *arr = NULL;
  int rc = vault_revocations_list(txn, tenant, 1000, &arr);
  st_txn_end(txn);
  if (rc) {
    json_decref(arr);
    gw_respond_error(req, 500, "store_error", "the revocations cannot be read");
    return;
  }
  gw_respond_json(req, 200, json_pack("{s:o}", "revocations", arr));
}
