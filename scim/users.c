/* scim/users.c — SCIM user writes: create, replace (PUT), patch, delete,
 * with the uniqueness rules (userName, case-insensitive; externalId,
 * case-exact, among the tenant's users), the user indexes (userName,
 * externalId) kept in the same transaction, and the lifecycle events a
 * change implies (changed, deactivated, reactivated, deleted; a delete
 * also leaves every group). See resource.c for the shared parts. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"
#include "store/text.h"

static int index_user(st_txn *txn, const char *tenant, const json_t *u, bool add) {
  const char *id = scim__jstr(u, "id"), *un = scim__jstr(u, "userName"), *ext = scim__jstr(u, "externalId");
  st_dir_key k;
  int rc;
  st_dir_key_username(&k, tenant, un);
  /* Only its own entry, added or removed: a user a store written before
   * migration 13 left without one (its name folds as another user's:
   * store/dir.c st__dir_refold) must neither take the other's entry at its
   * next write nor remove it at its deletion (found by review: a PATCH of
   * its displayName moved the name to it, and the other user's sign-in by
   * email with it). */
  st_val have;
  rc = st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &have);
  bool own = rc == 0 && have.len == strlen(id) && !memcmp(have.data, id, have.len);
  if (rc == 0 && !own) rc = 0; /* another user's: left as it is */
  else if (add && !own) rc = st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, id, strlen(id), 0);
  else if (!add && own) rc = st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (ext) {
    st_dir_key_external(&k, tenant, 'U', ext, id);
    rc = add ? st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, "", 0, 0) : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

/* externalId is the IdP's id of the person (Okta's user id, the `sub` a
 * sign-in links by — two matches fail closed there): a write that would
 * give user `self` (NULL: a new one) an externalId another user of the
 * tenant has is refused, 409 uniqueness, case-exact (RFC 7643 §3.1), in
 * the write's own transaction so two racing writes cannot both pass. A
 * user that already holds the value (a store written before this rule
 * may have duplicates) keeps it through later writes: the callers ask only
 * when the value changes. 0, or SCIM_EABORT with the reply in rs. */
static int external_id_free(st_txn *txn, const scim_req *rq, const char *ext, const char *self, scim_resp *rs) {
  if (!ext) return 0;
  char other[SCIM_ID_LEN + 1];
  int rc = st_dir_user_external_other(txn, rq->tenant, ext, self, other);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return scim__fail_store(rs, rc);
  scim_error(rs, 409, "uniqueness", "externalId \"%.200s\" is already another user's", ext);
  return SCIM_EABORT;
}

int scim__user_create(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  json_t *u = scim__normalize(rq->body, false, rs);
  if (!u) return SCIM_EABORT;
  if (scim__grew_too_large(NULL, u, rs)) { /* what is stored, whatever the body weighed */
    json_decref(u);
    return SCIM_EABORT;
  }
  char owner[SCIM_ID_LEN + 1];
  int rc = st_dir_user_by_name(txn, rq->tenant, scim__jstr(u, "userName"), owner);
  if (rc == 0) {
    scim_error(rs, 409, "uniqueness", "userName \"%.200s\" is already taken", scim__jstr(u, "userName"));
    json_decref(u);
    return SCIM_EABORT;
  }
  if (rc != ST_ENOTFOUND) goto store;
  if ((rc = external_id_free(txn, rq, scim__jstr(u, "externalId"), NULL, rs))) goto out;
  if ((rc = scim__count_cap(txn, rq, 'U', rs))) goto out;
  if (!json_object_get(u, "active")) json_object_set_new(u, "active", json_true());
  json_object_set_new(u, "id", json_string(rq->new_id));
  scim__set_meta(u, "User", rq->now, rq->now, 1);
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'U', rq->new_id);
  if ((rc = st_put(txn, ST_DB_SCIM_RES, k.b, k.n, "", 0, ST_NOOVERWRITE)) != 0) goto store;
  if ((rc = scim__put_json(txn, ST_DB_SCIM_RES, &k, u)) || (rc = index_user(txn, rq->tenant, u, true)) ||
      (rc = scim__count_add(txn, rq->tenant, 'U', 1)))
    goto store;
  if ((rc = scim__emit(txn, SCIM_EV_USER_CREATED, rq, rq->new_id, scim__jstr(u, "userName"), NULL, NULL, NULL, rs)))
    goto out;
  scim__reply_resource(rs, 201, scim__render_user(txn, rq, rq->tenant, u, NULL), rq, "Users");
  json_decref(u);
  return 0;
store:
  rc = scim__fail_store(rs, rc);
out:
  json_decref(u);
  return rc;
}

/* Writes `nu` over `old` (same id), fixing indexes and emitting events.
 * says_active: the request itself sets "active" (not a write that keeps
 * what is stored). */
static int user_commit(st_txn *txn, const scim_req *rq, json_t *old, json_t *nu, bool says_active, scim_resp *rs) {
  const char *id = scim__jstr(old, "id");
  char owner[SCIM_ID_LEN + 1];
  int rc;
  if (!st_text_fold_eq(scim__jstr(old, "userName"), scim__jstr(nu, "userName"))) {
    rc = st_dir_user_by_name(txn, rq->tenant, scim__jstr(nu, "userName"), owner);
    if (rc == 0 && strcmp(owner, id) != 0) {
      scim_error(rs, 409, "uniqueness", "userName \"%.200s\" is already taken", scim__jstr(nu, "userName"));
      return SCIM_EABORT;
    }
  }
  const char *old_ext = scim__jstr(old, "externalId"), *new_ext = scim__jstr(nu, "externalId");
  if (new_ext && (!old_ext || strcmp(old_ext, new_ext)) && (rc = external_id_free(txn, rq, new_ext, id, rs)))
    return rc;
  json_object_set_new(nu, "id", json_string(id));
  /* compare without meta to decide whether anything changed */
  json_t *a = json_deep_copy(old);
  json_object_del(a, "meta");
  bool changed = !json_equal(a, nu);
  json_decref(a);
  bool was = st_dir_user_record_active(old), now = st_dir_user_record_active(nu);
  if (was && !now) snprintf(rs->cut_user, sizeof rs->cut_user, "%s", id);
  if (changed) {
    const char *created = json_string_value(json_object_get(json_object_get(old, "meta"), "created"));
    scim__set_meta(nu, "User", created ? created : rq->now, rq->now, scim__version_of(old) + 1);
    st_dir_key k;
    st_dir_key_res(&k, rq->tenant, 'U', id);
    if ((rc = index_user(txn, rq->tenant, old, false)) || (rc = scim__put_json(txn, ST_DB_SCIM_RES, &k, nu)) ||
        (rc = index_user(txn, rq->tenant, nu, true)))
      return scim__fail_store(rs, rc);
    if ((rc = scim__emit(txn, SCIM_EV_USER_CHANGED, rq, id, scim__jstr(nu, "userName"), NULL, NULL, NULL, rs))) return rc;
    if (was && !now &&
        (rc = scim__emit(txn, SCIM_EV_USER_DEACTIVATED, rq, id, scim__jstr(nu, "userName"), NULL, NULL, NULL, rs)))
      return rc;
    if (!was && now &&
        (rc = scim__emit(txn, SCIM_EV_USER_REACTIVATED, rq, id, scim__jstr(nu, "userName"), NULL, NULL, NULL, rs)))
      return rc;
  } else {
    json_object_set(nu, "meta", json_object_get(old, "meta"));
  }
  /* a user cut in memory (a deactivation that could not be written): a
   * write that sets "active", once committed, is the IdP's latest word on
   * it (store/dir.h); one that only changes a profile attribute is not —
   * the deactivation it may follow never landed */
  if (says_active && (rc = st_dir_user_cut_end(txn, rq->tenant, id))) return scim__fail_store(rs, rc);
  scim__reply_resource(rs, 200, scim__render_user(txn, rq, rq->tenant, nu, NULL), rq, "Users");
  return 0;
}

int scim__user_replace(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = scim__res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return SCIM_EABORT;
  }
  if (rc) return scim__fail_store(rs, rc);
  if ((rc = scim__if_match_ok(txn, rq, old, rs))) goto out;
  json_t *nu = scim__normalize(rq->body, false, rs);
  if (!nu || scim__grew_too_large(old, nu, rs)) {
    json_decref(nu);
    rc = SCIM_EABORT;
    goto out;
  }
  /* a PUT that omits active leaves it unchanged */
  bool says_active = json_object_get(nu, "active") != NULL;
  if (!says_active) json_object_set(nu, "active", json_object_get(old, "active") ?: json_true());
  rc = user_commit(txn, rq, old, nu, says_active, rs);
  json_decref(nu);
out:
  json_decref(old);
  return rc;
}

/* Whether the PATCH body sets "active" (with or without a path, any
 * case): applied once more to the user without it. Only asked for a user
 * cut in memory (the one reader of the answer); an error says no. */
static bool patch_sets_active(st_txn *txn, const scim_req *rq, const json_t *old) {
  const char *id = scim__jstr(old, "id");
  if (!st_dir_user_cut_marked(st_txn_store(txn), rq->tenant, id)) return false;
  json_t *probe = json_deep_copy(old);
  if (!probe) return false;
  json_object_del(probe, "meta");
  json_object_del(probe, "active");
  scim_resp scratch;
  memset(&scratch, 0, sizeof scratch);
  bool sets = scim__patch_apply(probe, rq->body, false, NULL, scim__validate_types, NULL, &scratch) == 0 &&
              scim__oget(probe, "active", NULL) != NULL;
  scim_resp_clear(&scratch);
  json_decref(probe);
  return sets;
}

int scim__user_patch(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = scim__res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return SCIM_EABORT;
  }
  if (rc) return scim__fail_store(rs, rc);
  if ((rc = scim__if_match_ok(txn, rq, old, rs))) goto out;
  json_t *work = json_deep_copy(old);
  json_object_del(work, "meta");
  if (scim__patch_apply(work, rq->body, false, NULL, scim__validate_types, NULL, rs) != 0) {
    json_decref(work);
    rc = SCIM_EABORT;
    goto out;
  }
  json_t *nu = scim__normalize(work, false, rs);
  json_decref(work);
  if (!nu || scim__grew_too_large(old, nu, rs)) {
    json_decref(nu);
    rc = SCIM_EABORT;
    goto out;
  }
  /* "active" removed: an unassigned active reads as active (store/dir.h),
   * so a remove would reactivate a deactivated user by a side door */
  if (!json_object_get(nu, "active") && json_object_get(old, "active")) {
    json_decref(nu);
    scim_error(rs, 400, "invalidValue", "\"active\" cannot be removed: replace it with false to deactivate the user");
    rc = SCIM_EABORT;
    goto out;
  }
  rc = user_commit(txn, rq, old, nu, patch_sets_active(txn, rq, old), rs);
  json_decref(nu);
out:
  json_decref(old);
  return rc;
}

/* A group that loses a member changes (members are part of the group):
 * its version moves, so an ETag read before the loss no longer matches. */
static int group_touch(st_txn *txn, const scim_req *rq, const char *gid) {
  json_t *g;
  int rc = scim__res_get(txn, rq->tenant, 'G', gid, &g);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *meta = json_incref(json_object_get(g, "meta")); /* created lives in it */
  const char *created = json_string_value(json_object_get(meta, "created"));
  scim__set_meta(g, "Group", created ? created : rq->now, rq->now, scim__version_of(g) + 1);
  json_decref(meta);
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'G', gid);
  rc = scim__put_json(txn, ST_DB_SCIM_RES, &k, g);
  json_decref(g);
  return rc;
}

int scim__user_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = scim__res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return SCIM_EABORT;
  }
  if (rc) return scim__fail_store(rs, rc);
  if ((rc = scim__if_match_ok(txn, rq, old, rs))) goto out;
  if (st_dir_user_record_active(old)) snprintf(rs->cut_user, sizeof rs->cut_user, "%s", id);
  /* memberships: both directions, one event per group */
  st_dir_key p;
  st_dir_key_user_group(&p, rq->tenant, id, NULL);
  json_t *gids = json_array();
  if ((rc = st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, gids, 0))) goto store;
  json_t *removed = json_pack("[s]", id);
  size_t i;
  json_t *g;
  json_array_foreach(gids, i, g) {
    st_dir_key k;
    st_dir_key_user_group(&k, rq->tenant, id, json_string_value(g));
    if ((rc = st_del(txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) break;
    st_dir_key_member(&k, rq->tenant, json_string_value(g), id);
    if ((rc = st_del(txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) break;
    if ((rc = group_touch(txn, rq, json_string_value(g)))) break;
    if ((rc = scim__emit(txn, SCIM_EV_MEMBERSHIP_CHANGED, rq, json_string_value(g), NULL, NULL, NULL, removed, rs)))
      break;
  }
  json_decref(removed);
  json_decref(gids);
  if (rc == SCIM_EABORT) goto out;
  if (rc) goto store;
  st_dir_key k;
  st_dir_key_groups_rev(&k, rq->tenant, id);
  if ((rc = st_del(txn, ST_DB_SCIM_IDX, k.b, k.n)) && rc != ST_ENOTFOUND) goto store;
  if ((rc = st_dir_user_block_forget(txn, rq->tenant, id))) goto store;
  st_dir_key_res(&k, rq->tenant, 'U', id);
  if ((rc = index_user(txn, rq->tenant, old, false)) || (rc = st_del(txn, ST_DB_SCIM_RES, k.b, k.n)) ||
      (rc = scim__count_add(txn, rq->tenant, 'U', -1)))
    goto store;
  if (st_dir_user_record_active(old) &&
      (rc = scim__emit(txn, SCIM_EV_USER_DEACTIVATED, rq, id, scim__jstr(old, "userName"), NULL, NULL, NULL, rs)))
    goto out;
  if ((rc = scim__emit(txn, SCIM_EV_USER_DELETED, rq, id, scim__jstr(old, "userName"), NULL, NULL, NULL, rs))) goto out;
  rs->status = 204;
  json_decref(old);
  return 0;
store:
  rc = scim__fail_store(rs, rc);
out:
  json_decref(old);
  return rc;
}

