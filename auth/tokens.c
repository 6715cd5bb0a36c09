/* auth/tokens.c — employee access tokens (see auth.h): minting one for an
 * active user, verifying a presented token or an earlier identity against
 * the token, its tenant and its user, the SCIM hooks that delete a
 * user's tokens, and the check for tokens whose user is gone. Records and keys are auth/token_store.c's; users are
 * checked through the directory (store/dir.h), not through scim/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "auth/oauth_token.h"
#include "store/dir.h"
#include "store/tenant.h"

int auth_token_create(st_txn *txn, auth_token_new *t) { return auth_token_create_max(txn, t, 0); }

/* Deletes up to AUTH_TOKEN_SWEEP_MAX of user_id's employee tokens that
 * expired before now (RFC 3339): they grant nothing, and nobody else would
 * ever delete them (the employee page counts only unexpired ones, so
 * without this its tokens piled up without end in the store every tenant
 * shares). Revoked as any token is (the event ends nothing: what a token
 * opened ended when it expired). A token whose expiry does not parse is
 * kept. */
static int sweep_expired(st_txn *txn, const char *tenant, const char *user_id, const char *now) {
  struct tm tm = {0};
  if (!strptime(now, "%Y-%m-%dT%H:%M:%SZ", &tm)) return 0;
  int64_t now_s = (int64_t)timegm(&tm);
  json_t *toks;
  int rc = auth_token_list_user(txn, tenant, user_id, &toks);
  size_t i;
  json_t *x;
  int n = 0;
  if (rc == 0)
    json_array_foreach(toks, i, x) {
      const char *id = json_string_value(json_object_get(x, "id"));
      if (!id || !auth_token_expired_at(x, now_s)) continue;
      if ((rc = auth_token_revoke(txn, tenant, AUTH_KIND_EMPLOYEE, id)) && rc != ST_ENOTFOUND) break;
      rc = 0;
      if (++n >= AUTH_TOKEN_SWEEP_MAX) break;
    }
  json_decref(toks);
  return rc;
}

int auth_token_create_max(st_txn *txn, auth_token_new *t, int64_t max) {
  json_t *u;
  int rc = st_dir_user_find(txn, t->tenant, t->user_ref, &u);
  if (rc) return rc;
  const char *uid = json_string_value(json_object_get(u, "id"));
  const char *un = json_string_value(json_object_get(u, "userName"));
  snprintf(t->user_id, sizeof t->user_id, "%s", uid ? uid : "");
  snprintf(t->user_name, sizeof t->user_name, "%s", un ? un : "");
  bool active = st_dir_user_usable(txn, t->tenant, u);
  json_decref(u);
  if (!active) return AUTH_EINACTIVE;
  if ((rc = sweep_expired(txn, t->tenant, t->user_id, t->now))) return rc;
  if (max > 0) {
    int64_t n = 0;
    if ((rc = auth_token_count_user(txn, t->tenant, t->user_id, max, &n))) return rc;
    if (n >= max) return AUTH_EFULL;
  }
  auth_token_rec r = {.kind = AUTH_KIND_EMPLOYEE, .tenant = t->tenant, .id = t->tokid,
                      .name = t->name[0] ? t->name : "token", .created = t->now, .user = t->user_id,
                      .expires = t->expires, .hash = t->hash, .created_by = t->self ? "self" : "admin"};
  return auth_token_put(txn, &r);
}

/* A token record r (of hash or id lookup) still grants tenant's user:
 * kind, tenant, expiry, tenant active, user present and active. Fills
 * user_id and tokid (either may be NULL). */
static int record_grants(st_txn *txn, json_t *r, const char *tenant, int64_t now, char user_id[40],
                         char tokid[ST_TOKEN_ID_BUFSZ], int64_t *expires) {
  const char *kind = json_string_value(json_object_get(r, "kind"));
  const char *t = json_string_value(json_object_get(r, "tenant"));
  const char *uid = json_string_value(json_object_get(r, "user"));
  const char *id = json_string_value(json_object_get(r, "id"));
  const char *exp = json_string_value(json_object_get(r, "expires"));
  if (!kind || strcmp(kind, "mgw") || !t || strcmp(t, tenant) || !uid || !id) return ST_ENOTFOUND;
  int64_t exp_s = 0;
  if (exp && *exp) {
    struct tm tm = {0};
    if (!strptime(exp, "%Y-%m-%dT%H:%M:%SZ", &tm) || (exp_s = (int64_t)timegm(&tm)) <= now) return ST_ENOTFOUND;
  }
  if (st_tenant_active(txn, tenant) != 0) return ST_ENOTFOUND;
  json_t *u;
  if (st_dir_user_find(txn, tenant, uid, &u) != 0) return ST_ENOTFOUND;
  bool active = st_dir_user_usable(txn, tenant, u) && !strcmp(json_string_value(json_object_get(u, "id")) ?: "", uid);
  json_decref(u);
  if (!active) return ST_ENOTFOUND;
  if (user_id) snprintf(user_id, 40, "%s", uid);
  if (tokid) snprintf(tokid, ST_TOKEN_ID_BUFSZ, "%s", id);
  if (expires) *expires = exp_s;
  return 0;
}

int auth_token_hash(const char *token, uint8_t h[ST_TOKEN_HASH_LEN]) {
  size_t tl = strlen(token);
  if (st_token_check(token, tl, AUTH_TOKEN_PREFIX) != 0) return ST_ENOTFOUND;
  return st_token_hash(token, tl, h) != 0 ? ST_ENOTFOUND : 0;
}

int auth_token_verify_hash(st_txn *txn, const char *tenant, const uint8_t h[ST_TOKEN_HASH_LEN], int64_t now,
                           char user_id[40], char tokid[ST_TOKEN_ID_BUFSZ], int64_t *expires) {
  json_t *r;
  int rc = auth_token_get_by_hash(txn, h, &r);
  if (rc) return rc;
  rc = record_grants(txn, r, tenant, now, user_id, tokid, expires);
  json_decref(r);
  return rc;
}

int auth_token_verify(st_txn *txn, const char *tenant, const char *token, int64_t now, char user_id[40],
                      char tokid[ST_TOKEN_ID_BUFSZ]) {
  uint8_t h[ST_TOKEN_HASH_LEN];
  int rc = auth_token_hash(token, h);
  return rc ? rc : auth_token_verify_hash(txn, tenant, h, now, user_id, tokid, NULL);
}

int auth_identity_check(st_txn *txn, const char *tenant, const char *user_id, const char *tokid, int64_t now) {
  json_t *r;
  if (strlen(tokid) != ST_TOKEN_ID_LEN || strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = auth_token_get_by_id(txn, tenant, AUTH_KIND_EMPLOYEE, tokid, &r);
  /* not an employee token: an OAuth grant (auth/oauth_token.h), whose id
   * stands in for the token id of identities verified with its access
   * tokens */
  if (rc == ST_ENOTFOUND) return auth_oauth_identity_check(txn, tenant, user_id, tokid);
  if (rc) return rc;
  char uid[40];
  rc = record_grants(txn, r, tenant, now, uid, NULL, NULL);
  json_decref(r);
  return rc ? rc : strcmp(uid, user_id) ? ST_ENOTFOUND : 0;
}

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)kind;
  (void)ctx;
  int n = auth_tokens_delete_user(txn, ev->tenant, ev->id);
  return n < 0 ? n : 0;
}

int auth_register_hooks(st_store *st) { return st_dir_hook_user_cut(st, on_user_gone, NULL); }

/* st_check: employee tokens of users that no longer exist. A token of a
 * gone tenant is reported once, by auth_tokens_check. */
typedef struct user_check {
  st_txn *txn;
  st_check_report_fn report;
  void *rctx;
  int problems;
} user_check;

static int check_one(void *ctx, json_t *r) {
  user_check *uc = ctx;
  char uidbuf[ST_TENANT_UID_LEN + 1], msg[300];
  const char *kind = json_string_value(json_object_get(r, "kind"));
  const char *tenant = json_string_value(json_object_get(r, "tenant"));
  const char *user = json_string_value(json_object_get(r, "user"));
  const char *id = json_string_value(json_object_get(r, "id"));
  if (!kind || strcmp(kind, AUTH_KIND_EMPLOYEE) || !tenant || st_tenant_uid_get(uc->txn, tenant, uidbuf) != 0)
    return 0;
  json_t *u = NULL;
  if (!user || st_dir_user_find(uc->txn, tenant, user, &u) == ST_ENOTFOUND) {
    snprintf(msg, sizeof msg, "employee token %s of tenant %s belongs to unknown user %s", id ? id : "?", tenant,
             user ? user : "(none)");
    if (uc->report) uc->report(uc->rctx, "tokens", msg);
    uc->problems++;
  }
  json_decref(u);
  return 0;
}

int auth_check_employee_tokens(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  user_check uc = {txn, report, rctx, 0};
  int rc = auth_tokens_foreach(txn, check_one, &uc);
  return rc < 0 ? rc : uc.problems;
}

int auth_register_checks(st_store *st) { return st_check_add(st, auth_check_employee_tokens, NULL); }
