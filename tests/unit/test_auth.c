/* tests/unit/test_auth.c — auth/token_store (every token kind and its key
 * encoding) and the tenant records it checks (store/tenant), against a real
 * LMDB env in a mkdtemp dir, writes through the writer thread
 * (st_write_sync) as the gateway does: create, lookup by the token's hash,
 * wrong kind/tenant/inactive tenant refused, revoke, list by tenant and
 * kind, the counts the admin API's caps read, deleting a tenant's and a
 * user's tokens, and the index ↔ record
 * agreement that `store check` verifies, the check of employee tokens whose
 * user is gone; auth's and vault's error ranges. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/token_store.h"
#include "gateway/base/log.h"
#include "scim/scim.h"
#include "store/store.h"
#include "store/tenant.h"
#include "store/token.h"
#include "tests/unit/unit.h"
#include "vault/vault.h"

static char g_tmp[64];
static char g_dir[128];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
}
static st_store *open_store(void) {
  tmp_cleanup();
  strcpy(g_tmp, "/tmp/mcpgate-test-auth-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  snprintf(g_dir, sizeof g_dir, "%s/store", g_tmp);
  st_options o = {0};
  o.dir = g_dir;
  o.map_size = 64u << 20;
  st_store *st = NULL;
  return st_open(&st, &o) == 0 ? st : NULL;
}

/* ---- writer jobs -------------------------------------------------------- */

typedef struct tok {
  char text[ST_TOKEN_BUFSZ];
  char id[ST_TOKEN_ID_BUFSZ];
  uint8_t hash[ST_TOKEN_HASH_LEN];
  const char *kind, *tenant, *user;
} tok;

static void tok_new(tok *t, const char *kind, const char *tenant, const char *user) {
  const char *prefix = !strcmp(kind, AUTH_KIND_SCIM) ? "mgs_" : !strcmp(kind, AUTH_KIND_ADMIN) ? "mga_" : "mgw_";
  st_token_new(prefix, t->text, sizeof t->text);
  st_token_id_new(t->id);
  st_token_hash(t->text, strlen(t->text), t->hash);
  t->kind = kind;
  t->tenant = tenant;
  t->user = user;
}

static int put_fn(st_txn *txn, void *arg) {
  tok *t = arg;
  auth_token_rec r = {.kind = t->kind, .tenant = t->tenant, .id = t->id, .name = "n",
                      .created = "2026-01-01T00:00:00Z", .user = t->user, .hash = t->hash};
  return auth_token_put(txn, &r);
}

typedef struct tenant_job {
  const char *id;
  int op; /* 0 create, 1 mark deleting, 2 remove */
} tenant_job;
static int tenant_fn(st_txn *txn, void *arg) {
  tenant_job *j = arg;
  switch (j->op) {
  case 0: return st_tenant_create(txn, j->id, j->id, "2026-01-01T00:00:00Z", "0123456789abcdef");
  case 1: return st_tenant_mark_deleting(txn, j->id);
  default: return st_tenant_remove(txn, j->id);
  }
}
static int tenant_op(st_store *st, const char *id, int op) {
  tenant_job j = {id, op};
  return st_write_sync(st, tenant_fn, &j);
}

typedef struct revoke_job {
  const char *tenant, *kind, *id;
} revoke_job;
static int revoke_fn(st_txn *txn, void *arg) {
  revoke_job *r = arg;
  return auth_token_revoke(txn, r->tenant, r->kind, r->id);
}

typedef struct del_job {
  const char *tenant, *user;
  int limit, n;
} del_job;
static int del_tenant_fn(st_txn *txn, void *arg) {
  del_job *d = arg;
  d->n = auth_tokens_delete_tenant(txn, d->tenant, d->limit);
  return d->n < 0 ? d->n : 0;
}
static int del_user_fn(st_txn *txn, void *arg) {
  del_job *d = arg;
  d->n = auth_tokens_delete_user(txn, d->tenant, d->user);
  return d->n < 0 ? d->n : 0;
}

/* A raw delete of one key, to break the index ↔ record agreement. */
typedef struct raw_del {
  const void *k;
  size_t kl;
} raw_del;
static int raw_del_fn(st_txn *txn, void *arg) {
  raw_del *r = arg;
  return st_del(txn, ST_DB_TOKENS, r->k, r->kl);
}

/* ---- read helpers ------------------------------------------------------- */

static int lookup(st_store *st, const char *text, const char *kind, const char *tenant) {
  st_txn *txn;
  json_t *rec = NULL;
  if (st_read_begin(st, &txn) != 0) return -1;
  int rc = auth_token_lookup(txn, text, kind, tenant, &rec);
  st_txn_end(txn);
  json_decref(rec);
  return rc;
}

static json_t *list(st_store *st, const char *tenant, const char *kind) {
  st_txn *txn;
  json_t *arr = NULL;
  if (st_read_begin(st, &txn) != 0) return NULL;
  auth_token_list(txn, tenant, kind, &arr);
  st_txn_end(txn);
  return arr;
}

static int g_reports;
static void count_report(void *ctx, const char *area, const char *msg) {
  (void)ctx; (void)area; (void)msg;
  g_reports++;
}
static int check(st_store *st) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return -1;
  g_reports = 0;
  int n = auth_tokens_check(txn, count_report, NULL, NULL);
  st_txn_end(txn);
  return n;
}

/* ---- tests -------------------------------------------------------------- */

TEST(tenant_records) {
  st_store *st = open_store();
  CHECK(st);
  CHECK(st_tenant_id_valid("acme-1"));
  CHECK(!st_tenant_id_valid("Acme"));
  CHECK(!st_tenant_id_valid(""));
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  CHECK_INT(tenant_op(st, "acme", 0), ST_EEXIST);
  st_txn *txn;
  char state[16];
  json_t *rec;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(st_tenant_get(txn, "acme", &rec), 0);
  CHECK_STR(json_string_value(json_object_get(rec, "state")), "active");
  json_decref(rec);
  CHECK_INT(st_tenant_active(txn, "nope"), ST_ENOTFOUND);
  st_txn_end(txn);
  CHECK_INT(tenant_op(st, "acme", 1), 0);
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(st_tenant_active(txn, "acme"), ST_ENOTFOUND);
  CHECK_INT(st_tenant_state(txn, "acme", state), 0);
  CHECK_STR(state, "deleting");
  st_txn_end(txn);
  CHECK_INT(tenant_op(st, "acme", 0), ST_EEXIST); /* not until purged */
  CHECK_INT(tenant_op(st, "acme", 2), 0);
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(st_tenant_state(txn, "acme", state), ST_ENOTFOUND);
  char uid[ST_TENANT_UID_LEN + 1];
  CHECK_INT(st_tenant_uid_get(txn, "acme", uid), ST_ENOTFOUND);
  st_txn_end(txn);
  st_close(st);
  tmp_cleanup();
}

TEST(create_and_lookup) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  CHECK_INT(tenant_op(st, "beta", 0), 0);
  tok s, a, e;
  tok_new(&s, AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&a, AUTH_KIND_ADMIN, "acme", NULL);
  tok_new(&e, AUTH_KIND_EMPLOYEE, "acme", "user-1");
  CHECK_INT(st_write_sync(st, put_fn, &s), 0);
  CHECK_INT(st_write_sync(st, put_fn, &a), 0);
  CHECK_INT(st_write_sync(st, put_fn, &e), 0);
  /* found by its text (hash), for its kind and tenant */
  CHECK_INT(lookup(st, s.text, AUTH_KIND_SCIM, "acme"), 0);
  CHECK_INT(lookup(st, a.text, AUTH_KIND_ADMIN, NULL), 0);
  /* wrong kind, wrong tenant, unknown text, implausible text: refused */
  CHECK_INT(lookup(st, s.text, AUTH_KIND_ADMIN, "acme"), ST_ENOTFOUND);
  CHECK_INT(lookup(st, a.text, AUTH_KIND_SCIM, NULL), ST_ENOTFOUND);
  CHECK_INT(lookup(st, s.text, AUTH_KIND_SCIM, "beta"), ST_ENOTFOUND);
  CHECK_INT(lookup(st, "mgs_thisisnotatokenatallbutlongenough", AUTH_KIND_SCIM, "acme"), ST_ENOTFOUND);
  CHECK_INT(lookup(st, "short", AUTH_KIND_SCIM, "acme"), ST_ENOTFOUND);
  /* the record says what was put */
  st_txn *txn;
  json_t *rec;
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(auth_token_get_by_id(txn, "acme", AUTH_KIND_EMPLOYEE, e.id, &rec), 0);
  CHECK_STR(json_string_value(json_object_get(rec, "user")), "user-1");
  CHECK_STR(json_string_value(json_object_get(rec, "kind")), "mgw");
  json_decref(rec);
  CHECK_INT(auth_token_get_by_id(txn, "acme", AUTH_KIND_SCIM, e.id, &rec), ST_ENOTFOUND);
  CHECK_INT(auth_token_get_by_id(txn, "beta", AUTH_KIND_EMPLOYEE, e.id, &rec), ST_ENOTFOUND);
  st_txn_end(txn);
  /* a tenant being deleted authenticates nothing */
  CHECK_INT(tenant_op(st, "acme", 1), 0);
  CHECK_INT(lookup(st, s.text, AUTH_KIND_SCIM, "acme"), ST_ENOTFOUND);
  CHECK_INT(check(st), 0);
  st_close(st);
  tmp_cleanup();
}

TEST(list_and_revoke) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  CHECK_INT(tenant_op(st, "acme2", 0), 0); /* a prefix-sharing tenant id */
  tok t[5];
  tok_new(&t[0], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[1], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[2], AUTH_KIND_ADMIN, "acme", NULL);
  tok_new(&t[3], AUTH_KIND_EMPLOYEE, "acme", "u1");
  tok_new(&t[4], AUTH_KIND_SCIM, "acme2", NULL);
  for (int i = 0; i < 5; i++) CHECK_INT(st_write_sync(st, put_fn, &t[i]), 0);
  json_t *l = list(st, "acme", AUTH_KIND_SCIM);
  CHECK_INT(json_array_size(l), 2);
  CHECK(json_object_get(json_array_get(l, 0), "user") == NULL);
  CHECK(json_is_null(json_object_get(json_array_get(l, 0), "last_used")));
  json_decref(l);
  l = list(st, "acme", AUTH_KIND_ADMIN);
  CHECK_INT(json_array_size(l), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "id")), t[2].id);
  json_decref(l);
  l = list(st, "acme", AUTH_KIND_EMPLOYEE);
  CHECK_INT(json_array_size(l), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "user")), "u1");
  CHECK(json_is_null(json_object_get(json_array_get(l, 0), "expires")));
  json_decref(l);
  l = list(st, "acme2", AUTH_KIND_SCIM);
  CHECK_INT(json_array_size(l), 1);
  json_decref(l);
  /* revoke: by tenant, kind and id; the wrong kind or tenant finds nothing */
  revoke_job bad_kind = {"acme", AUTH_KIND_ADMIN, t[0].id}, bad_tenant = {"acme2", AUTH_KIND_SCIM, t[0].id};
  CHECK_INT(st_write_sync(st, revoke_fn, &bad_kind), ST_ENOTFOUND);
  CHECK_INT(st_write_sync(st, revoke_fn, &bad_tenant), ST_ENOTFOUND);
  revoke_job ok = {"acme", AUTH_KIND_SCIM, t[0].id}, emp = {"acme", AUTH_KIND_EMPLOYEE, t[3].id};
  CHECK_INT(st_write_sync(st, revoke_fn, &ok), 0);
  CHECK_INT(st_write_sync(st, revoke_fn, &ok), ST_ENOTFOUND);
  CHECK_INT(st_write_sync(st, revoke_fn, &emp), 0);
  CHECK_INT(lookup(st, t[0].text, AUTH_KIND_SCIM, "acme"), ST_ENOTFOUND);
  CHECK_INT(lookup(st, t[1].text, AUTH_KIND_SCIM, "acme"), 0);
  l = list(st, "acme", AUTH_KIND_SCIM);
  CHECK_INT(json_array_size(l), 1);
  json_decref(l);
  /* record, "i" and "u" entries all went: nothing dangles */
  CHECK_INT(check(st), 0);
  st_close(st);
  tmp_cleanup();
}

static int64_t count(st_store *st, const char *tenant, const char *kind, const char *user, int64_t stop_at) {
  st_txn *txn;
  int64_t n = -1;
  if (st_read_begin(st, &txn) != 0) return -1;
  int rc = user ? auth_token_count_user(txn, tenant, user, stop_at, &n) : auth_token_count(txn, tenant, kind, stop_at, &n);
  st_txn_end(txn);
  return rc ? rc : n;
}

/* The counts the admin API's caps read (gateway/api/admin_tokens.c): a
 * tenant's tokens of one kind, a person's employee tokens; no further than
 * stop_at; a prefix-sharing tenant id, another kind or person never
 * counted. */
TEST(counts_for_caps) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  CHECK_INT(tenant_op(st, "acme2", 0), 0);
  tok t[7];
  tok_new(&t[0], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[1], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[2], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[3], AUTH_KIND_ADMIN, "acme", NULL);
  tok_new(&t[4], AUTH_KIND_EMPLOYEE, "acme", "u1");
  tok_new(&t[5], AUTH_KIND_EMPLOYEE, "acme", "u1");
  tok_new(&t[6], AUTH_KIND_SCIM, "acme2", NULL);
  for (int i = 0; i < 7; i++) CHECK_INT(st_write_sync(st, put_fn, &t[i]), 0);
  CHECK_INT(count(st, "acme", AUTH_KIND_SCIM, NULL, 100), 3);
  CHECK_INT(count(st, "acme", AUTH_KIND_SCIM, NULL, 2), 2); /* stops at the cap */
  CHECK_INT(count(st, "acme", AUTH_KIND_ADMIN, NULL, 100), 1);
  CHECK_INT(count(st, "acme", AUTH_KIND_EMPLOYEE, NULL, 100), 2);
  CHECK_INT(count(st, "acme2", AUTH_KIND_SCIM, NULL, 100), 1);
  CHECK_INT(count(st, "acm", AUTH_KIND_SCIM, NULL, 100), 0);
  CHECK_INT(count(st, "acme", NULL, "u1", 100), 2);
  CHECK_INT(count(st, "acme", NULL, "u1", 1), 1);
  CHECK_INT(count(st, "acme", NULL, "u", 100), 0);
  CHECK_INT(count(st, "acme2", NULL, "u1", 100), 0);
  revoke_job r = {"acme", AUTH_KIND_EMPLOYEE, t[4].id};
  CHECK_INT(st_write_sync(st, revoke_fn, &r), 0);
  CHECK_INT(count(st, "acme", NULL, "u1", 100), 1);
  st_close(st);
  tmp_cleanup();
}

TEST(delete_tenant_and_user) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  CHECK_INT(tenant_op(st, "acme2", 0), 0);
  tok t[6];
  tok_new(&t[0], AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&t[1], AUTH_KIND_ADMIN, "acme", NULL);
  tok_new(&t[2], AUTH_KIND_EMPLOYEE, "acme", "u1");
  tok_new(&t[3], AUTH_KIND_EMPLOYEE, "acme", "u1");
  tok_new(&t[4], AUTH_KIND_EMPLOYEE, "acme", "u2");
  tok_new(&t[5], AUTH_KIND_SCIM, "acme2", NULL);
  for (int i = 0; i < 6; i++) CHECK_INT(st_write_sync(st, put_fn, &t[i]), 0);
  del_job u = {"acme", "u1", 0, 0};
  CHECK_INT(st_write_sync(st, del_user_fn, &u), 0);
  CHECK_INT(u.n, 2);
  json_t *l = list(st, "acme", AUTH_KIND_EMPLOYEE);
  CHECK_INT(json_array_size(l), 1);
  json_decref(l);
  CHECK_INT(check(st), 0);
  /* bounded: 2 of the 3 left, then the rest */
  del_job d = {"acme", NULL, 2, 0};
  CHECK_INT(st_write_sync(st, del_tenant_fn, &d), 0);
  CHECK_INT(d.n, 2);
  CHECK_INT(st_write_sync(st, del_tenant_fn, &d), 0);
  CHECK_INT(d.n, 1);
  CHECK_INT(st_write_sync(st, del_tenant_fn, &d), 0);
  CHECK_INT(d.n, 0);
  for (int i = 0; i < 2; i++) CHECK_INT(lookup(st, t[i].text, t[i].kind, "acme"), ST_ENOTFOUND);
  /* the prefix-sharing tenant keeps its token */
  CHECK_INT(lookup(st, t[5].text, AUTH_KIND_SCIM, "acme2"), 0);
  st_close(st);
  tmp_cleanup();
}

TEST(check_finds_disagreement) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  tok a, b;
  tok_new(&a, AUTH_KIND_SCIM, "acme", NULL);
  tok_new(&b, AUTH_KIND_EMPLOYEE, "gone", "u1"); /* a tenant that does not exist */
  CHECK_INT(st_write_sync(st, put_fn, &a), 0);
  CHECK_INT(check(st), 0);
  CHECK_INT(st_write_sync(st, put_fn, &b), 0);
  CHECK_INT(check(st), 1);
  /* a record without its index entry, and an index entry without its record */
  char ik[128];
  size_t n = 0;
  ik[n++] = 'i';
  memcpy(ik + n, "acme", 5), n += 5;
  memcpy(ik + n, "scim", 5), n += 5;
  memcpy(ik + n, a.id, ST_TOKEN_ID_LEN), n += ST_TOKEN_ID_LEN;
  raw_del r = {ik, n};
  CHECK_INT(st_write_sync(st, raw_del_fn, &r), 0);
  CHECK_INT(check(st), 2);
  char hk[1 + ST_TOKEN_HASH_LEN];
  hk[0] = 'h';
  memcpy(hk + 1, b.hash, ST_TOKEN_HASH_LEN);
  raw_del r2 = {hk, sizeof hk};
  CHECK_INT(st_write_sync(st, raw_del_fn, &r2), 0);
  CHECK_INT(check(st), 3); /* b's "i" and "u" now point to nothing */
  CHECK_INT(g_reports, 3);
  st_close(st);
  tmp_cleanup();
}

/* A SCIM user created through scim_handle, as the gateway does; its id into id. */
typedef struct scim_call {
  scim_req rq;
  scim_resp rs;
} scim_call;
static int scim_fn(st_txn *txn, void *arg) {
  scim_call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}
static int scim_user(st_store *st, const char *tenant, const char *user_name, char id[40]) {
  scim_call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = tenant;
  c.rq.method = "POST";
  c.rq.path = "/Users";
  c.rq.base_url = "http://gw/t/x/scim/v2";
  c.rq.body = json_pack("{s:s}", "userName", user_name);
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(st, scim_fn, &c);
  json_decref(c.rq.body);
  snprintf(id, 40, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  int status = c.rs.status;
  scim_resp_clear(&c.rs);
  return status;
}

static int user_check(st_store *st) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return -1;
  int n = auth_check_employee_tokens(txn, count_report, NULL, NULL);
  st_txn_end(txn);
  return n;
}

TEST(check_employee_token_users) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  char uid[40];
  CHECK_INT(scim_user(st, "acme", "alice@acme.com", uid), 201);
  tok a, b, c, s;
  tok_new(&a, AUTH_KIND_EMPLOYEE, "acme", uid);
  tok_new(&b, AUTH_KIND_EMPLOYEE, "acme", "0000-no-such-user");
  tok_new(&c, AUTH_KIND_EMPLOYEE, "gone", "someone"); /* the tenant check's, not this one's */
  tok_new(&s, AUTH_KIND_SCIM, "acme", NULL);
  CHECK_INT(st_write_sync(st, put_fn, &a), 0);
  CHECK_INT(st_write_sync(st, put_fn, &s), 0);
  CHECK_INT(user_check(st), 0);
  CHECK_INT(st_write_sync(st, put_fn, &b), 0);
  CHECK_INT(st_write_sync(st, put_fn, &c), 0);
  CHECK_INT(user_check(st), 1);
  st_close(st);
  tmp_cleanup();
}

/* An employee token of uid that expired (or not) at "expires". */
typedef struct exp_tok {
  tok t;
  const char *expires;
} exp_tok;
static int put_exp_fn(st_txn *txn, void *arg) {
  exp_tok *e = arg;
  auth_token_rec r = {.kind = AUTH_KIND_EMPLOYEE, .tenant = e->t.tenant, .id = e->t.id, .name = "n",
                      .created = "2020-01-01T00:00:00Z", .user = e->t.user, .expires = e->expires,
                      .hash = e->t.hash, .created_by = "self"};
  return auth_token_put(txn, &r);
}
static int create_fn(st_txn *txn, void *arg) { return auth_token_create(txn, arg); }

/* Found by review: expired employee tokens stayed stored until someone
 * revoked them, and the employee page counts only unexpired ones — an
 * employee could mint tokens that expire (50 a day) without end into the
 * store every tenant shares. Minting one now deletes the person's expired
 * ones first (in the same transaction). Before the fix the count below was
 * 7 (the four expired ones kept). */
TEST(minting_deletes_the_persons_expired_tokens) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(tenant_op(st, "acme", 0), 0);
  char uid[40], bob[40];
  CHECK_INT(scim_user(st, "acme", "alice@acme.com", uid), 201);
  CHECK_INT(scim_user(st, "acme", "bob@acme.com", bob), 201);
  exp_tok e[7];
  for (int i = 0; i < 7; i++) {
    tok_new(&e[i].t, AUTH_KIND_EMPLOYEE, "acme", i == 6 ? bob : uid);
    /* alice: four expired, one live, one that never expires; bob: expired */
    e[i].expires = i < 4 || i == 6 ? "2020-06-01T00:00:00Z" : i == 4 ? "2999-01-01T00:00:00Z" : NULL;
    CHECK_INT(st_write_sync(st, put_exp_fn, &e[i]), 0);
  }
  CHECK_INT(count(st, "acme", NULL, uid, 100), 6);
  auth_token_new n;
  memset(&n, 0, sizeof n);
  snprintf(n.tenant, sizeof n.tenant, "acme");
  snprintf(n.user_ref, sizeof n.user_ref, "alice@acme.com");
  snprintf(n.now, sizeof n.now, "2026-11-22T00:00:00Z");
  n.self = true;
  tok fresh;
  tok_new(&fresh, AUTH_KIND_EMPLOYEE, "acme", uid);
  memcpy(n.tokid, fresh.id, sizeof n.tokid);
  memcpy(n.hash, fresh.hash, sizeof n.hash);
  CHECK_INT(st_write_sync(st, create_fn, &n), 0);
  /* the live one, the one without expiry and the new one */
  CHECK_INT(count(st, "acme", NULL, uid, 100), 3);
  for (int i = 0; i < 4; i++) CHECK_INT(lookup(st, e[i].t.text, AUTH_KIND_EMPLOYEE, "acme"), ST_ENOTFOUND);
  CHECK_INT(lookup(st, e[4].t.text, AUTH_KIND_EMPLOYEE, "acme"), 0);
  CHECK_INT(lookup(st, e[5].t.text, AUTH_KIND_EMPLOYEE, "acme"), 0);
  CHECK_INT(lookup(st, fresh.text, AUTH_KIND_EMPLOYEE, "acme"), 0);
  /* another person's expired token is theirs to keep until their next mint */
  CHECK_INT(count(st, "acme", NULL, bob, 100), 1);
  CHECK_INT(check(st), 0);
  st_close(st);
  tmp_cleanup();
}

TEST(error_ranges) {
  /* outside libuv's errno range (-1..-4095) and LMDB's (-30799..-30780) */
  CHECK(AUTH_EINACTIVE < -4095 && AUTH_EINACTIVE <= AUTH_ERR_FIRST && AUTH_EINACTIVE >= AUTH_ERR_LAST);
  CHECK(AUTH_ERR_LAST > -30780 || AUTH_ERR_FIRST < -30799);
  CHECK(VAULT_EINVALID <= VAULT_ERR_FIRST && VAULT_EINVALID >= VAULT_ERR_LAST && VAULT_ERR_LAST > -31100);
  CHECK_STR(auth_strerror(AUTH_EINACTIVE), "the user is not active");
  CHECK_STR(auth_strerror(ST_ENOTFOUND), st_strerror(ST_ENOTFOUND));
  CHECK_STR(vault_strerror(VAULT_EINVALID), "invalid connector definition");
  CHECK_STR(vault_strerror(ST_EMAPFULL), st_strerror(ST_EMAPFULL));
  json_t *cfg = NULL;
  const char *secret;
  char err[256];
  json_t *body = json_pack("{s:i}", "url", 1);
  CHECK_INT(vault_connector_parse(body, &cfg, &secret, err, sizeof err), VAULT_EINVALID);
  json_decref(body);
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(tenant_records);
  RUN(create_and_lookup);
  RUN(list_and_revoke);
  RUN(counts_for_caps);
  RUN(delete_tenant_and_user);
  RUN(check_finds_disagreement);
  RUN(check_employee_token_users);
  RUN(minting_deletes_the_persons_expired_tokens);
  RUN(error_ranges);
  tmp_cleanup();
  return UNIT_DONE();
}
