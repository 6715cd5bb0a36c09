/* tests/unit/test_browser.c — account linking (auth_link_*, auth/login.h)
 * and browser sessions (auth/browser.h) against a real LMDB store in a
 * mkdtemp dir, with users provisioned through scim_handle inside writer
 * jobs and the modules' hooks, purges and checks registered before the
 * first write the way gateway/modules.c does; then pol_user_summary
 * (policy/policy.h) and gw_settings_get_bool (gateway/core/settings.h).
 *
 * Linking: externalId and userName links, ambiguity, inactive users, the
 * e-mail fallback (verified only, users without an externalId only) and
 * its binding, which outlives a changed e-mail, refuses a second subject
 * and goes with its user, and is not used (at sign-in) and dropped with
 * the user's sessions (by the SCIM write) once an externalId names
 * another subject; Entra's oid. Sessions: create consumes the
 * state, get checks tenant, expiry, idle time and the user, touch, delete,
 * the deactivation and deletion hooks, delete_user, the tenant purge
 * (then `st_check` is clean) and the sweep of expired sessions. */
#include <ftw.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/browser.h"
#include "auth/jose.h"
#include "auth/login.h"
#include "auth/oidc.h"
#include "auth/token_store.h"
#include "gateway/base/log.h"
#include "gateway/core/settings.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/store.h"
#include "store/store_testing.h"
#include "store/tenant.h"
#include "tests/unit/unit.h"

#define ISS "https://acme.okta.com"
#define T0 INT64_C(1767225600) /* 2026-01-01T00:00:00Z */

static char g_tmp[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void tmp_cleanup(void) {
  if (g_tmp[0]) nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = 0;
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

/* A store with every module's hooks, purges and checks registered before
 * the first write (gateway/modules.c's order, plus auth/browser's), and
 * the tenants "acme" and "beta". with_browser false leaves out
 * auth_browser_register. */
static st_store *open_store_with(bool with_browser) {
  tmp_cleanup();
  strcpy(g_tmp, "/tmp/mcpgate-test-browser-XXXXXX");
  if (!mkdtemp(g_tmp)) abort();
  char dir[128], key[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp); /* the OIDC settings seal their client secret */
  st_options o = {0};
  o.dir = dir;
  o.master_key_file = key;
  o.map_size = 64u << 20;
  o.log = gw_store_log;
  st_store *st = NULL;
  if (st_open(&st, &o)) return NULL;
  int rc = scim_register_purge(st);
  scim_register_checks(st);
  if (!rc) rc = auth_register_hooks(st);
  if (!rc) rc = auth_register_checks(st);
  if (!rc) rc = st_check_add(st, auth_tokens_check, NULL);
  if (!rc) rc = auth_register_purge(st);
  if (!rc) rc = auth_oidc_register_purge(st);
  if (!rc && with_browser) rc = auth_browser_register(st);
  if (!rc) rc = pol_register_hooks(st);
  if (!rc) rc = pol_register_purge(st);
  if (!rc) rc = tenant_op(st, "acme", 0);
  if (!rc) rc = tenant_op(st, "beta", 0);
  if (rc) {
    fprintf(stderr, "  store setup: %s\n", st_strerror(rc));
    st_close(st);
    return NULL;
  }
  return st;
}
static st_store *open_store(void) { return open_store_with(true); }

/* ---- SCIM, as the gateway drives it --------------------------------------------- */

typedef struct scim_call {
  scim_req rq;
  scim_resp rs;
} scim_call;
static int scim_fn(st_txn *txn, void *arg) {
  scim_call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}
/* One SCIM request; its status, and the created resource's id into id (a
 * POST creates it with the id force_id when that is not NULL). */
static int scim_as(st_store *st, const char *tenant, const char *method, const char *path, const char *body,
                   const char *force_id, char id[40]) {
  scim_call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = tenant;
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/x/scim/v2";
  c.rq.body = body ? json_loads(body, 0, NULL) : NULL;
  if (force_id) snprintf(c.rq.new_id, sizeof c.rq.new_id, "%s", force_id);
  else scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(st, scim_fn, &c);
  json_decref(c.rq.body);
  if (id) snprintf(id, 40, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  int status = c.rs.status;
  scim_resp_clear(&c.rs);
  return status;
}
static int scim(st_store *st, const char *tenant, const char *method, const char *path, const char *body,
                char id[40]) {
  return scim_as(st, tenant, method, path, body, NULL, id);
}
/* A user (ext NULL: no externalId; force_id NULL: a new id); 201 expected. */
static int user_as(st_store *st, const char *tenant, const char *name, const char *ext, bool active,
                   const char *force_id, char id[40]) {
  json_t *b = json_pack("{s:s, s:b}", "userName", name, "active", active);
  if (ext) json_object_set_new(b, "externalId", json_string(ext));
  char *s = json_dumps(b, 0);
  json_decref(b);
  int status = scim_as(st, tenant, "POST", "/Users", s, force_id, id);
  free(s);
  return status;
}
static int user(st_store *st, const char *tenant, const char *name, const char *ext, bool active, char id[40]) {
  return user_as(st, tenant, name, ext, active, NULL, id);
}
/* Two users sharing an externalId exist only in a store written before
 * SCIM kept it unique (scim/users.c): written here past SCIM's rules. */
typedef struct legacy_ext {
  const char *tenant, *id, *ext;
} legacy_ext;
static int legacy_ext_fn(st_txn *txn, void *arg) {
  legacy_ext *l = arg;
  return st__test_dir_user_set_external(txn, l->tenant, l->id, l->ext);
}
static int set_legacy_ext(st_store *st, const char *tenant, const char *id, const char *ext) {
  legacy_ext l = {tenant, id, ext};
  return st_write_sync(st, legacy_ext_fn, &l);
}
static int set_active(st_store *st, const char *tenant, const char *id, bool active) {
  char path[80], body[200];
  snprintf(path, sizeof path, "/Users/%s", id);
  snprintf(body, sizeof body, "{\"schemas\":[\"%s\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":%s}}]}",
           SCIM_URN_PATCH, active ? "true" : "false");
  return scim(st, tenant, "PATCH", path, body, NULL);
}
static int delete_user(st_store *st, const char *tenant, const char *id) {
  char path[80];
  snprintf(path, sizeof path, "/Users/%s", id);
  return scim(st, tenant, "DELETE", path, NULL, NULL);
}

/* ---- linking helpers ---------------------------------------------------------------- */

static json_t *settings(const char *subject_claim, const char *link_claim, const char *attr) {
  return json_pack("{s:s, s:s, s:s}", "subject_claim", subject_claim, "link_claim", link_claim, "link_attribute",
                   attr);
}

static int resolve(st_store *st, const char *tenant, const json_t *set, const char *claims_text, auth_link *out) {
  json_t *claims = json_loads(claims_text, 0, NULL);
  if (!claims) return -999;
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (!rc) {
    rc = auth_link_resolve(txn, tenant, set, claims, ISS, out);
    st_txn_end(txn);
  }
  json_decref(claims);
  return rc;
}

typedef struct bind_job {
  const char *tenant;
  const auth_link *l;
} bind_job;
static int bind_fn(st_txn *txn, void *arg) {
  bind_job *b = arg;
  return auth_link_bind(txn, b->tenant, b->l);
}
static int link_bind(st_store *st, const char *tenant, const auth_link *l) {
  bind_job b = {tenant, l};
  return st_write_sync(st, bind_fn, &b);
}

typedef struct unbind_job {
  const char *tenant, *user;
} unbind_job;
static int unbind_fn(st_txn *txn, void *arg) {
  unbind_job *u = arg;
  return auth_link_unbind_user(txn, u->tenant, u->user);
}

static void subject_hash(const char *iss, const char *sub, uint8_t out[32]) {
  size_t in = strlen(iss), sn = strlen(sub);
  char buf[600];
  memcpy(buf, iss, in);
  buf[in] = 0;
  memcpy(buf + in + 1, sub, sn);
  SHA256((const unsigned char *)buf, in + 1 + sn, out);
}

/* Whether the auth database holds key type + tenant \0 + tail. */
static bool auth_key_exists(st_store *st, char type, const char *tenant, const void *tail, size_t tn) {
  uint8_t k[200];
  size_t t = strlen(tenant);
  k[0] = (uint8_t)type;
  memcpy(k + 1, tenant, t);
  k[1 + t] = 0;
  memcpy(k + 2 + t, tail, tn);
  st_txn *txn;
  st_val v;
  if (st_read_begin(st, &txn)) return false;
  int rc = st_get(txn, ST_DB_AUTH, k, 2 + t + tn, &v);
  st_txn_end(txn);
  return rc == 0;
}

/* ---- linking -------------------------------------------------------------------------- */

TEST(link_external_id_and_user_name) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], twin1[40], twin2[40], carol[40], ina[40], other[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "twin1@acme.com", "00u-twin", true, twin1), 201);
  /* SCIM refuses a second user with one externalId (409); a store written
   * before that rule may hold two */
  CHECK_INT(user(st, "acme", "twin2@acme.com", "00u-twin", true, twin2), 409);
  CHECK_INT(user(st, "acme", "twin2@acme.com", "00u-twin2", true, twin2), 201);
  CHECK_INT(set_legacy_ext(st, "acme", twin2, "00u-twin"), 0);
  CHECK_INT(user(st, "acme", "Carol@Acme.com", NULL, true, carol), 201);
  CHECK_INT(user(st, "acme", "ina@acme.com", "00u-ina", false, ina), 201);
  CHECK_INT(user(st, "beta", "alice@acme.com", "00u-alice-beta", true, other), 201);
  json_t *s = settings("sub", "sub", "externalId");
  auth_link l;
  uint8_t h[32];

  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-alice\",\"email\":\"x@y.z\"}", &l), 0);
  CHECK_STR(l.user_id, alice);
  CHECK_STR(l.user_name, "alice@acme.com");
  CHECK_STR(l.subject, "00u-alice");
  CHECK(!l.bind);
  subject_hash(ISS, "00u-alice", h);
  CHECK(memcmp(l.subject_hash, h, 32) == 0);
  /* externalId is case-exact; another tenant's users are not this one's */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00U-ALICE\"}", &l), AUTH_ENOTLINKED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-alice-beta\"}", &l), AUTH_ENOTLINKED);
  CHECK_INT(resolve(st, "beta", s, "{\"sub\":\"00u-alice-beta\"}", &l), 0);
  CHECK_STR(l.user_id, other);

  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-twin\"}", &l), AUTH_EAMBIGUOUS);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-ina\"}", &l), AUTH_EINACTIVE);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-nobody\"}", &l), AUTH_ENOTLINKED);
  CHECK_STR(l.user_id, "");
  /* the subject claim missing, not a string, empty, with a control character */
  CHECK_INT(resolve(st, "acme", s, "{\"email\":\"alice@acme.com\",\"email_verified\":true}", &l), AUTH_ECLAIM);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":12}", &l), AUTH_ECLAIM);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":[\"00u-alice\"]}", &l), AUTH_ECLAIM);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"\"}", &l), AUTH_ECLAIM);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-alice\\n\"}", &l), AUTH_ECLAIM);
  json_decref(s);

  /* defaults (no settings): sub ↔ externalId */
  json_t *none = json_object();
  CHECK_INT(resolve(st, "acme", none, "{\"sub\":\"00u-alice\"}", &l), 0);
  CHECK_STR(l.user_id, alice);
  json_decref(none);

  /* link_attribute userName with link_claim email (case-insensitive) */
  s = settings("sub", "email", "userName");
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":\"carol@ACME.com\",\"email_verified\":true}", &l), 0);
  CHECK_STR(l.user_id, carol);
  CHECK_STR(l.subject, "opaque-1");
  CHECK(!l.bind);
  /* only a verified e-mail links (found by review: an unverified one named
   * another person and signed in as them) */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":\"carol@ACME.com\"}", &l), AUTH_EUNVERIFIED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":\"carol@ACME.com\",\"email_verified\":false}", &l),
            AUTH_EUNVERIFIED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":\"carol@ACME.com\",\"email_verified\":\"true\"}", &l), 0);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":\"00u-alice\",\"email_verified\":true}", &l),
            AUTH_ENOTLINKED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"opaque-1\",\"email\":7}", &l), AUTH_ECLAIM);
  json_decref(s);

  /* a link claim other than the subject, malformed */
  s = settings("sub", "oid", "externalId");
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"s\",\"oid\":{\"x\":1}}", &l), AUTH_ECLAIM);
  json_decref(s);
  st_close(st);
  tmp_cleanup();
}

TEST(link_entra_oid) {
  st_store *st = open_store();
  CHECK(st);
  char frank[40];
  CHECK_INT(user(st, "acme", "frank@acme.com", "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab", true, frank), 201);
  json_t *s = settings("oid", "oid", "externalId");
  auth_link l;
  CHECK_INT(resolve(st, "acme", s,
                    "{\"sub\":\"pairwise-AbCdEf\",\"oid\":\"6f1c2d3e-aaaa-bbbb-cccc-0123456789ab\",\"tid\":\"t\"}", &l),
            0);
  CHECK_STR(l.user_id, frank);
  CHECK_STR(l.subject, "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab");
  uint8_t h[32];
  subject_hash(ISS, "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab", h);
  CHECK(memcmp(l.subject_hash, h, 32) == 0);
  /* without oid: no subject */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"6f1c2d3e-aaaa-bbbb-cccc-0123456789ab\"}", &l), AUTH_ECLAIM);
  json_decref(s);
  /* with the default subject claim, sub is Entra's pairwise id: no match */
  s = settings("sub", "sub", "externalId");
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"pairwise-AbCdEf\",\"oid\":\"6f1c2d3e-aaaa-bbbb-cccc-0123456789ab\"}", &l),
            AUTH_ENOTLINKED);
  json_decref(s);
  st_close(st);
  tmp_cleanup();
}

TEST(link_email_fallback_and_binding) {
  st_store *st = open_store();
  CHECK(st);
  char dave[40], erin[40], gina[40];
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  CHECK_INT(user(st, "acme", "erin@acme.com", "00u-erin", true, erin), 201);
  CHECK_INT(user(st, "acme", "gina@acme.com", NULL, false, gina), 201);
  json_t *s = settings("sub", "sub", "externalId");
  auth_link l;
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"DAVE@Acme.COM\",\"email_verified\":true}", &l), 0);
  CHECK_STR(l.user_id, dave);
  CHECK_STR(l.subject, "x1");
  CHECK(l.bind);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":\"true\"}", &l), 0);
  CHECK(l.bind);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":false}", &l),
            AUTH_EUNVERIFIED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\"}", &l), AUTH_EUNVERIFIED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":\"false\"}", &l),
            AUTH_EUNVERIFIED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":1}", &l),
            AUTH_EUNVERIFIED);
  /* a user WITH an externalId is linked by it only: no fallback */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"other\",\"email\":\"erin@acme.com\",\"email_verified\":true}", &l),
            AUTH_ENOTLINKED);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-erin\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_STR(l.user_id, erin);
  CHECK(!l.bind);
  /* an inactive user is not found by the fallback either */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x9\",\"email\":\"gina@acme.com\",\"email_verified\":true}", &l),
            AUTH_EINACTIVE);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x9\",\"email\":\"nobody@acme.com\",\"email_verified\":true}", &l),
            AUTH_ENOTLINKED);

  /* bind x1 → dave */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_INT(link_bind(st, "acme", &l), 0);
  CHECK_INT(link_bind(st, "acme", &l), 0); /* the same binding again */
  CHECK(auth_key_exists(st, 's', "acme", l.subject_hash, 32));
  CHECK(auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  auth_link bound = l;
  /* the bound subject is dave whatever its e-mail now says */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave.new@elsewhere.example\"}", &l), 0);
  CHECK_STR(l.user_id, dave);
  CHECK(!l.bind);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\"}", &l), 0);
  CHECK_STR(l.user_id, dave);
  /* the same subject of another issuer is not bound */
  json_t *claims = json_pack("{s:s}", "sub", "x1");
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  int rc = auth_link_resolve(txn, "acme", s, claims, "https://other.okta.com", &l);
  st_txn_end(txn);
  json_decref(claims);
  CHECK_INT(rc, AUTH_ENOTLINKED);
  /* another subject with dave's verified e-mail: dave is bound already */
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x2\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l),
            AUTH_EBOUND);
  /* binding either side to another */
  auth_link x2 = bound;
  snprintf(x2.subject, sizeof x2.subject, "x2");
  subject_hash(ISS, "x2", x2.subject_hash);
  CHECK_INT(link_bind(st, "acme", &x2), AUTH_EBOUND);
  auth_link to_erin = bound;
  snprintf(to_erin.user_id, sizeof to_erin.user_id, "%s", erin);
  CHECK_INT(link_bind(st, "acme", &to_erin), AUTH_EBOUND);
  /* the bound user deactivated */
  CHECK_INT(set_active(st, "acme", dave, false), 200);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\"}", &l), AUTH_EINACTIVE);
  CHECK_INT(set_active(st, "acme", dave, true), 200);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\"}", &l), 0);

  /* deleting the user removes the binding (both keys) */
  CHECK_INT(delete_user(st, "acme", dave), 204);
  CHECK(!auth_key_exists(st, 's', "acme", bound.subject_hash, 32));
  CHECK(!auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  /* a new dave: x1 is free to be bound to them */
  char dave2[40];
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave2), 201);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_STR(l.user_id, dave2);
  CHECK(l.bind);
  /* unbinding: a user without a binding is fine; a bound one loses both keys */
  CHECK_INT(link_bind(st, "acme", &l), 0);
  CHECK(auth_key_exists(st, 'S', "acme", dave2, strlen(dave2)));
  unbind_job u = {"acme", erin};
  CHECK_INT(st_write_sync(st, unbind_fn, &u), 0);
  u.user = dave2;
  CHECK_INT(st_write_sync(st, unbind_fn, &u), 0);
  CHECK(!auth_key_exists(st, 'S', "acme", dave2, strlen(dave2)));
  CHECK(!auth_key_exists(st, 's', "acme", l.subject_hash, 32));
  json_decref(s);
  st_close(st);
  tmp_cleanup();
}

/* ---- sessions ---------------------------------------------------------------------------- */

typedef struct sess {
  char cookie[AUTH_LOGIN_RAND_LEN + 1];
  auth_browser_new n;
  json_t *settings, *claims;
} sess;

static void rand_text(char out[AUTH_LOGIN_RAND_LEN + 1]) {
  uint8_t r[32];
  RAND_bytes(r, sizeof r);
  auth_b64url_encode(r, sizeof r, out, AUTH_LOGIN_RAND_LEN + 1);
}

/* A session to create in tenant for claims_text, at now, max_s long. */
static void sess_init(sess *s, const char *tenant, const char *claims_text, int64_t now, int64_t max_s) {
  memset(s, 0, sizeof *s);
  rand_text(s->cookie);
  snprintf(s->n.tenant, sizeof s->n.tenant, "%s", tenant);
  st_sha256(s->cookie, strlen(s->cookie), s->n.hash);
  rand_text(s->n.csrf);
  snprintf(s->n.iss, sizeof s->n.iss, "%s", ISS);
  rand_text(s->n.state);
  s->n.state_expires = now + AUTH_LOGIN_TTL_S;
  struct timespec ts; /* the sign-in begins now (the cuts are stamped with the real clock) */
  clock_gettime(CLOCK_REALTIME, &ts);
  s->n.started_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  s->n.now = now;
  s->n.max_s = max_s;
  s->settings = settings("sub", "sub", "externalId");
  s->claims = json_loads(claims_text, 0, NULL);
  s->n.settings = s->settings;
  s->n.claims = s->claims;
}
static void sess_done(sess *s) {
  json_decref(s->settings);
  json_decref(s->claims);
}
static int create_fn(st_txn *txn, void *arg) { return auth_browser_create(txn, arg); }
static int create(st_store *st, sess *s) { return st_write_sync(st, create_fn, &s->n); }

static int get(st_store *st, const char *tenant, const char *cookie, int64_t now, int64_t idle, auth_browser *out) {
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_browser_get(txn, tenant, cookie, now, idle, out);
  st_txn_end(txn);
  return rc;
}
static int count(st_store *st, const char *tenant, const char *uid) {
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = auth_browser_count_user(txn, tenant, uid);
  st_txn_end(txn);
  return rc;
}

typedef struct hash_job {
  const uint8_t *hash;
  int64_t now;
  int op; /* 0 touch, 1 delete */
} hash_job;
static int hash_fn(st_txn *txn, void *arg) {
  hash_job *j = arg;
  return j->op ? auth_browser_delete(txn, j->hash) : auth_browser_touch(txn, j->hash, j->now);
}
static int touch(st_store *st, const uint8_t *hash, int64_t now) {
  hash_job j = {hash, now, 0};
  return st_write_sync(st, hash_fn, &j);
}
static int del(st_store *st, const uint8_t *hash) {
  hash_job j = {hash, 0, 1};
  return st_write_sync(st, hash_fn, &j);
}

typedef struct user_job {
  const char *tenant, *user;
  int limit, n;
} user_job;
static int delete_user_fn(st_txn *txn, void *arg) {
  user_job *j = arg;
  j->n = auth_browser_delete_user(txn, j->tenant, j->user);
  return j->n < 0 ? j->n : 0;
}
static int purge_fn(st_txn *txn, void *arg) {
  user_job *j = arg;
  j->n = auth_browser_purge_tenant(txn, j->tenant, j->limit);
  return j->n < 0 ? j->n : 0;
}

/* The session record, raw ("b" + hash): 0 or ST_ENOTFOUND. */
static int raw_record(st_store *st, const uint8_t hash[32]) {
  uint8_t k[33];
  k[0] = 'b';
  memcpy(k + 1, hash, 32);
  st_txn *txn;
  st_val v;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = st_get(txn, ST_DB_AUTH, k, sizeof k, &v);
  st_txn_end(txn);
  return rc;
}

/* ---- an e-mail binding against a later externalId ----------------------------------------- */

static int set_attr(st_store *st, const char *tenant, const char *id, const char *attr, const char *value) {
  char path[80];
  snprintf(path, sizeof path, "/Users/%s", id);
  json_t *b = json_pack("{s:[s], s:[{s:s, s:s, s:s}]}", "schemas", SCIM_URN_PATCH, "Operations", "op", "replace",
                        "path", attr, "value", value);
  char *txt = json_dumps(b, 0);
  json_decref(b);
  int status = scim(st, tenant, "PATCH", path, txt, NULL);
  free(txt);
  return status;
}

typedef struct oidc_job {
  const char *tenant;
  json_t *cfg;
} oidc_job;
static int oidc_fn(st_txn *txn, void *arg) {
  oidc_job *j = arg;
  int created;
  return auth_oidc_put(txn, j->tenant, j->cfg, "s3cret", "2026-01-01T00:00:00Z", &created);
}
/* The tenant's OIDC settings: issuer ISS, claims as given. */
static int oidc_settings(st_store *st, const char *tenant, const char *subject_claim, const char *link_claim) {
  oidc_job j = {tenant, json_pack("{s:s, s:s, s:[s], s:s, s:s, s:s}", "issuer", ISS, "client_id", "c1", "scopes",
                                  "openid", "subject_claim", subject_claim, "link_claim", link_claim,
                                  "link_attribute", "externalId")};
  int rc = st_write_sync(st, oidc_fn, &j);
  json_decref(j.cfg);
  return rc;
}

/* Without the hook (a binding left from before it, or an externalId the
 * hook could not see): the sign-in itself does not use a binding whose
 * user's externalId names another subject. */
TEST(link_binding_contradicted_at_sign_in) {
  st_store *st = open_store_with(false);
  CHECK(st);
  char dave[40], eve[40], own[40];
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  CHECK_INT(user(st, "acme", "eve@acme.com", NULL, true, eve), 201);
  json_t *s = settings("sub", "sub", "externalId");
  auth_link l;
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_INT(link_bind(st, "acme", &l), 0);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"y1\",\"email\":\"eve@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_INT(link_bind(st, "acme", &l), 0);
  /* SCIM names dave's real subject */
  CHECK_INT(set_attr(st, "acme", dave, "externalId", "00u-dave"), 200);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l),
            AUTH_ESTALE);
  CHECK_STR(l.user_id, "");
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"00u-dave\"}", &l), 0);
  CHECK_STR(l.user_id, dave);
  /* the bound subject's own account, by its externalId, is still found */
  CHECK_INT(user(st, "acme", "x1@acme.com", "x1", true, own), 201);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK_STR(l.user_id, own);
  CHECK(!l.bind);
  /* an externalId naming the bound subject confirms the binding */
  CHECK_INT(set_attr(st, "acme", eve, "externalId", "y1"), 200);
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"y1\"}", &l), 0);
  CHECK_STR(l.user_id, eve);
  json_decref(s);
  /* linked by userName, an externalId cannot be compared: not used */
  s = settings("sub", "email", "userName");
  CHECK_INT(resolve(st, "acme", s, "{\"sub\":\"y1\"}", &l), AUTH_ESTALE);
  json_decref(s);
  CHECK_STR(auth_strerror(AUTH_ESTALE), "this sign-in was bound by e-mail to a user whose externalId now names another subject");
  st_close(st);
  tmp_cleanup();
}

/* The hook: the SCIM write that gives a bound user an externalId naming
 * another subject drops the binding and signs the user out; one naming
 * the bound subject changes nothing; without settings to compare by, it
 * fails closed. */
TEST(link_binding_dropped_by_the_scim_write) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(oidc_settings(st, "acme", "sub", "sub"), 0);
  char dave[40], eve[40], fay[40], gil[40];
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  CHECK_INT(user(st, "acme", "eve@acme.com", NULL, true, eve), 201);
  CHECK_INT(user(st, "beta", "fay@acme.com", NULL, true, fay), 201);
  CHECK_INT(user(st, "acme", "gil@acme.com", NULL, true, gil), 201);
  sess a, b, c;
  sess_init(&a, "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  sess_init(&b, "acme", "{\"sub\":\"y1\",\"email\":\"eve@acme.com\",\"email_verified\":true}", T0, 3600);
  sess_init(&c, "beta", "{\"sub\":\"z1\",\"email\":\"fay@acme.com\",\"email_verified\":true}", T0, 3600);
  CHECK_INT(create(st, &a), 0);
  CHECK(a.n.link.bind);
  CHECK_INT(create(st, &b), 0);
  CHECK_INT(create(st, &c), 0);
  CHECK_INT(count(st, "acme", dave), 1);
  /* another attribute: nothing happens */
  CHECK_INT(set_attr(st, "acme", dave, "displayName", "Dave"), 200);
  CHECK_INT(count(st, "acme", dave), 1);
  CHECK(auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  /* an externalId naming another subject: the binding and the session go */
  CHECK_INT(set_attr(st, "acme", dave, "externalId", "00u-dave"), 200);
  CHECK(!auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  CHECK(!auth_key_exists(st, 's', "acme", a.n.link.subject_hash, 32));
  CHECK_INT(count(st, "acme", dave), 0);
  auth_link l;
  CHECK_INT(resolve(st, "acme", a.settings, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l),
            AUTH_ENOTLINKED);
  /* an externalId naming the bound subject: kept */
  CHECK_INT(set_attr(st, "acme", eve, "externalId", "y1"), 200);
  CHECK(auth_key_exists(st, 'S', "acme", eve, strlen(eve)));
  CHECK_INT(count(st, "acme", eve), 1);
  /* a tenant without OIDC settings: cannot compare, dropped */
  CHECK_INT(set_attr(st, "beta", fay, "externalId", "z1"), 200);
  CHECK(!auth_key_exists(st, 'S', "beta", fay, strlen(fay)));
  CHECK_INT(count(st, "beta", fay), 0);
  /* settings whose bound claim is not the linked one: cannot compare, dropped */
  sess d;
  sess_init(&d, "acme", "{\"sub\":\"w1\",\"email\":\"gil@acme.com\",\"email_verified\":true}", T0, 3600);
  CHECK_INT(create(st, &d), 0);
  CHECK_INT(oidc_settings(st, "acme", "sub", "oid"), 0);
  CHECK_INT(set_attr(st, "acme", gil, "externalId", "w1"), 200);
  CHECK(!auth_key_exists(st, 'S', "acme", gil, strlen(gil)));
  CHECK_INT(count(st, "acme", gil), 0);
  CHECK_INT(count(st, "acme", eve), 1);
  sess_done(&a);
  sess_done(&b);
  sess_done(&c);
  sess_done(&d);
  st_close(st);
  tmp_cleanup();
}

TEST(session_create_get_touch_delete) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  sess a;
  sess_init(&a, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  CHECK_INT(create(st, &a), 0);
  CHECK_STR(a.n.link.user_id, alice);
  CHECK_INT(a.n.expires, T0 + 3600);
  CHECK_INT(count(st, "acme", alice), 1);

  /* the state is consumed: the same callback again is refused */
  sess r;
  sess_init(&r, "acme", "{\"sub\":\"00u-alice\"}", T0 + 5, 3600);
  memcpy(r.n.state, a.n.state, sizeof r.n.state);
  r.n.state_expires = a.n.state_expires; /* sealed with the state in the same login cookie */
  CHECK_INT(create(st, &r), AUTH_EREPLAY);
  CHECK_INT(count(st, "acme", alice), 1);
  CHECK_INT(raw_record(st, r.n.hash), ST_ENOTFOUND);
  sess_done(&r);
  /* a failed sign-in does not consume its state */
  sess u;
  sess_init(&u, "acme", "{\"sub\":\"00u-nobody\"}", T0, 3600);
  CHECK_INT(create(st, &u), AUTH_ENOTLINKED);
  json_decref(u.claims);
  u.claims = json_loads("{\"sub\":\"00u-alice\"}", 0, NULL);
  u.n.claims = u.claims;
  CHECK_INT(create(st, &u), 0);
  CHECK_INT(count(st, "acme", alice), 2);
  sess_done(&u);

  auth_browser b;
  CHECK_INT(get(st, "acme", a.cookie, T0 + 10, 900, &b), 0);
  CHECK_STR(b.user_id, alice);
  CHECK_STR(b.csrf, a.n.csrf);
  CHECK_STR(b.tenant, "acme");
  CHECK_STR(b.subject, "00u-alice");
  CHECK(memcmp(b.hash, a.n.hash, 32) == 0);
  CHECK_INT(b.created, T0);
  CHECK_INT(b.signin_at, T0);
  CHECK_INT(b.last_seen, T0);
  CHECK_INT(b.expires, T0 + 3600);
  CHECK(!b.touch_due);
  CHECK_INT(get(st, "acme", a.cookie, T0 + AUTH_BROWSER_TOUCH_S - 1, 900, &b), 0);
  CHECK(!b.touch_due);
  CHECK_INT(get(st, "acme", a.cookie, T0 + AUTH_BROWSER_TOUCH_S, 900, &b), 0);
  CHECK(b.touch_due);

  /* refusals: another tenant, even one with a user of the same id */
  CHECK_INT(get(st, "beta", a.cookie, T0 + 10, 900, &b), ST_ENOTFOUND);
  char twin[40];
  CHECK_INT(user_as(st, "beta", "alice@beta.com", "00u-alice", true, alice, twin), 201);
  CHECK_STR(twin, alice);
  CHECK_INT(get(st, "beta", a.cookie, T0 + 10, 900, &b), ST_ENOTFOUND);
  CHECK_STR(b.user_id, "");
  CHECK_STR(b.csrf, "");
  char other[AUTH_LOGIN_RAND_LEN + 1];
  rand_text(other);
  CHECK_INT(get(st, "acme", other, T0 + 10, 900, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", a.n.csrf, T0 + 10, 900, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", "", T0 + 10, 900, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", NULL, T0 + 10, 900, &b), ST_ENOTFOUND);
  char longer[AUTH_LOGIN_RAND_LEN + 2];
  snprintf(longer, sizeof longer, "%sA", a.cookie);
  CHECK_INT(get(st, "acme", longer, T0 + 10, 900, &b), ST_ENOTFOUND);
  /* maximum age: expires at T0 + 3600 whatever the use */
  CHECK_INT(get(st, "acme", a.cookie, T0 + 3599, 100000, &b), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 3600, 100000, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 9999, 100000, &b), ST_ENOTFOUND);
  /* idle */
  CHECK_INT(get(st, "acme", a.cookie, T0 + 899, 900, &b), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 900, 900, &b), ST_ENOTFOUND);
  /* touch moves last_seen: idle counts from there */
  CHECK_INT(touch(st, a.n.hash, T0 + 500), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 900, 900, &b), 0);
  CHECK_INT(b.last_seen, T0 + 500);
  CHECK_INT(b.created, T0);
  CHECK_INT(b.expires, T0 + 3600);
  CHECK(b.touch_due); /* 400 s since the touch */
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1399, 900, &b), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1400, 900, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 500 + AUTH_BROWSER_TOUCH_S - 1, 900, &b), 0);
  CHECK(!b.touch_due);
  uint8_t gone[32] = {1, 2, 3};
  CHECK_INT(touch(st, gone, T0), 0); /* gone: not an error */
  CHECK_INT(raw_record(st, gone), ST_ENOTFOUND);

  /* sign out */
  CHECK_INT(del(st, a.n.hash), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 10, 900, &b), ST_ENOTFOUND);
  CHECK_INT(raw_record(st, a.n.hash), ST_ENOTFOUND);
  CHECK_INT(count(st, "acme", alice), 1);
  CHECK_INT(del(st, a.n.hash), ST_ENOTFOUND);
  sess_done(&a);
  st_close(st);
  tmp_cleanup();
}

static int sign_out_fn(st_txn *txn, void *arg) { return st_dir_user_sign_out(txn, "acme", arg, "universal_logout"); }

/* A Universal Logout that could not be written cut the user in memory
 * and left their sessions stored: their next sign-in signs them out in its
 * own transaction (the old sessions go), is let in, and its commit ends
 * the cut. Any other kind of cut still refuses the sign-in. */
TEST(sign_in_after_an_unwritten_logout) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", "00u-bob", true, bob), 201);
  sess old, fresh, b1;
  sess_init(&old, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&fresh, "acme", "{\"sub\":\"00u-alice\"}", T0 + 5, 3600);
  sess_init(&b1, "acme", "{\"sub\":\"00u-bob\"}", T0 + 5, 3600);
  CHECK_INT(create(st, &old), 0);
  CHECK_INT(st_dir_user_cut_unwritten(st, "acme", alice, "logout"), 0);
  CHECK_INT(create(st, &fresh), 0);
  CHECK(fresh.n.link.sign_out_first);
  CHECK(!st_dir_user_cut_marked(st, "acme", alice));
  auth_browser b;
  CHECK_INT(get(st, "acme", old.cookie, T0 + 6, 900, &b), ST_ENOTFOUND); /* the logout's work done */
  CHECK_INT(get(st, "acme", fresh.cookie, T0 + 6, 900, &b), 0);
  CHECK_INT(count(st, "acme", alice), 1);
  /* an IdP's unwritten deactivation (or an admin's revoke) is not a logout */
  CHECK_INT(st_dir_user_cut_unwritten(st, "acme", bob, "patch"), 0);
  CHECK_INT(create(st, &b1), AUTH_EINACTIVE);
  CHECK(st_dir_user_cut_marked(st, "acme", bob));
  sess_done(&old);
  sess_done(&fresh);
  sess_done(&b1);
  st_close(st);
  tmp_cleanup();
}

/* Found by review: the store's reserve (store.h) is kept for writes that
 * take access away; once ordinary writes fill the rest, every ordinary
 * write is refused alike. A sign-in is an ordinary write (bob's is refused)
 * — but the sign-in of a user cut by an unwritten Universal Logout emits
 * USER_SIGNED_OUT, which marks the whole job as taking access away, so its
 * new session, state and binding go into the reserve. */
typedef struct fill_job { char k[32]; } fill_job;
static int fill_fn(st_txn *txn, void *arg) {
  fill_job *j = arg;
  static char buf[6000];
  memset(buf, 'f', sizeof buf);
  return st_put(txn, ST_DB_TENANTS, j->k, strlen(j->k), buf, sizeof buf, 0);
}
TEST(sign_in_after_an_unwritten_logout_does_not_write_into_the_reserve) {
  tmp_cleanup();
  strcpy(g_tmp, "/tmp/mcpgate-test-browser-XXXXXX");
  CHECK(mkdtemp(g_tmp) != NULL);
  char dir[128], key[128];
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  snprintf(key, sizeof key, "%s/master.key", g_tmp); /* the OIDC settings seal their client secret */
  st_options o = {0};
  o.dir = dir;
  o.master_key_file = key;
  o.map_size = 1024 * 1024;
  o.reserve = 256 * 1024;
  o.log = gw_store_log;
  st_store *st = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  int rc = scim_register_purge(st);
  scim_register_checks(st);
  if (!rc) rc = auth_register_hooks(st);
  if (!rc) rc = auth_register_purge(st);
  if (!rc) rc = auth_browser_register(st);
  if (!rc) rc = tenant_op(st, "acme", 0);
  CHECK_INT(rc, 0);
  char alice[40], bob[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", "00u-bob", true, bob), 201);
  /* ordinary writes until the store is full */
  fill_job fj;
  for (int i = 0; i < 1000; i++) {
    snprintf(fj.k, sizeof fj.k, "fill/%04d", i);
    if ((rc = st_write_sync(st, fill_fn, &fj)) < 0) break;
  }
  CHECK_INT(rc, ST_EMAPFULL);
  sess a, b;
  sess_init(&a, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&b, "acme", "{\"sub\":\"00u-bob\"}", T0, 3600);
  CHECK_INT(create(st, &b), ST_EMAPFULL); /* an ordinary sign-in: refused */
  CHECK_INT(st_dir_user_cut_unwritten(st, "acme", alice, "logout"), 0);
  rc = create(st, &a);
  CHECK_INT(rc, ST_EMAPFULL); /* hers is a sign-in too: it must not take the room kept for taking access away */
  sess_done(&a);
  sess_done(&b);
  st_close(st);
  tmp_cleanup();
}

TEST(session_deactivation_and_deletion) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40], dave[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", "00u-bob", true, bob), 201);
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  sess a1, a2, b1, d1;
  sess_init(&a1, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&a2, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&b1, "acme", "{\"sub\":\"00u-bob\"}", T0, 3600);
  sess_init(&d1, "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  CHECK_INT(create(st, &a1), 0);
  CHECK_INT(create(st, &a2), 0);
  CHECK_INT(create(st, &b1), 0);
  CHECK_INT(create(st, &d1), 0);
  CHECK(d1.n.link.bind);
  CHECK(auth_key_exists(st, 'S', "acme", dave, strlen(dave))); /* the create bound x1 → dave */
  CHECK_INT(count(st, "acme", alice), 2);
  auth_browser b;
  CHECK_INT(get(st, "acme", a1.cookie, T0 + 1, 900, &b), 0);

  /* deactivation through SCIM deletes the sessions in the same txn */
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(count(st, "acme", alice), 0);
  CHECK_INT(get(st, "acme", a1.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  CHECK_INT(get(st, "acme", a2.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  CHECK_INT(raw_record(st, a1.n.hash), ST_ENOTFOUND);
  CHECK_INT(raw_record(st, a2.n.hash), ST_ENOTFOUND);
  /* reactivation revives nothing */
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(get(st, "acme", a1.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  /* bob untouched */
  CHECK_INT(count(st, "acme", bob), 1);
  CHECK_INT(get(st, "acme", b1.cookie, T0 + 1, 900, &b), 0);
  CHECK_STR(b.user_id, bob);

  /* signed out everywhere (Universal Logout): the sessions go, the binding
   * stays (signing in again finds the same account), the user stays usable */
  CHECK_INT(get(st, "acme", d1.cookie, T0 + 1, 900, &b), 0);
  sess early; /* a sign-in under way (its code exchange at the provider) during the logout */
  sess_init(&early, "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  early.n.started_ms -= 1000;
  CHECK_INT(st_write_sync(st, sign_out_fn, dave), 0);
  CHECK_INT(create(st, &early), AUTH_ECUT); /* from before the cut: refused, though dave is active */
  CHECK_INT(count(st, "acme", dave), 0);
  sess_done(&early);
  CHECK_INT(count(st, "acme", dave), 0);
  CHECK_INT(get(st, "acme", d1.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  CHECK(auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  CHECK(auth_key_exists(st, 's', "acme", d1.n.link.subject_hash, 32));
  sess d2;
  sess_init(&d2, "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  CHECK_INT(create(st, &d2), 0);
  CHECK(!d2.n.link.bind); /* found through the binding */
  CHECK_STR(d2.n.link.user_id, dave);
  sess_done(&d2);
  CHECK_INT(count(st, "acme", bob), 1); /* bob untouched */

  /* deleting a user: sessions and the binding */
  sess_done(&d1);
  sess_init(&d1, "acme", "{\"sub\":\"x1\"}", T0, 3600);
  CHECK_INT(create(st, &d1), 0);
  CHECK_INT(get(st, "acme", d1.cookie, T0 + 1, 900, &b), 0);
  CHECK_INT(delete_user(st, "acme", dave), 204);
  CHECK_INT(count(st, "acme", dave), 0);
  CHECK_INT(raw_record(st, d1.n.hash), ST_ENOTFOUND);
  CHECK(!auth_key_exists(st, 'S', "acme", dave, strlen(dave)));
  CHECK(!auth_key_exists(st, 's', "acme", d1.n.link.subject_hash, 32));

  /* delete_user returns how many it deleted */
  sess b2, b3;
  sess_init(&b2, "acme", "{\"sub\":\"00u-bob\"}", T0, 3600);
  sess_init(&b3, "acme", "{\"sub\":\"00u-bob\"}", T0, 3600);
  CHECK_INT(create(st, &b2), 0);
  CHECK_INT(create(st, &b3), 0);
  user_job j = {"acme", bob, 0, -1};
  CHECK_INT(st_write_sync(st, delete_user_fn, &j), 0);
  CHECK_INT(j.n, 3);
  CHECK_INT(count(st, "acme", bob), 0);
  CHECK_INT(get(st, "acme", b1.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  CHECK_INT(raw_record(st, b3.n.hash), ST_ENOTFOUND);
  CHECK_INT(st_write_sync(st, delete_user_fn, &j), 0);
  CHECK_INT(j.n, 0);
  CHECK_INT(st_check(st, NULL, NULL), 0);
  sess_done(&a1), sess_done(&a2), sess_done(&b1), sess_done(&b2), sess_done(&b3), sess_done(&d1);
  st_close(st);
  tmp_cleanup();
}

TEST(session_read_checks_the_user_itself) {
  /* without auth_browser_register (no hook): the session outlives the
   * deactivation in the store, yet every read fails closed */
  st_store *st = open_store_with(false);
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  sess a;
  sess_init(&a, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  CHECK_INT(create(st, &a), 0);
  auth_browser b;
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1, 900, &b), 0);
  CHECK_INT(set_active(st, "acme", alice, false), 200);
  CHECK_INT(count(st, "acme", alice), 1);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  CHECK_INT(set_active(st, "acme", alice, true), 200);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1, 900, &b), 0);
  /* the tenant going away */
  CHECK_INT(tenant_op(st, "acme", 1), 0);
  CHECK_INT(get(st, "acme", a.cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  sess_done(&a);
  st_close(st);
  tmp_cleanup();
}

/* Every key of the auth database that belongs to tenant's sessions or
 * bindings: "B"/"s"/"S" + tenant \0, "b" records and "E" keys of it. */
static int tenant_keys(st_store *st, const char *tenant) {
  st_txn *txn;
  if (st_read_begin(st, &txn)) return -1;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) {
    st_txn_end(txn);
    return -1;
  }
  size_t t = strlen(tenant);
  int n = 0;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *p = k.data;
    if (k.len > t + 1 && strchr("BsS", p[0]) && !memcmp(p + 1, tenant, t) && p[1 + t] == 0) n++;
    if (p[0] == 'E' && k.len == 41 && v.len == t && !memcmp(v.data, tenant, t)) n++;
    if (p[0] == 'b' && k.len == 33) {
      json_t *r = json_loadb(v.data, v.len, 0, NULL);
      const char *rt = json_string_value(json_object_get(r, "tenant"));
      if (rt && !strcmp(rt, tenant)) n++;
      json_decref(r);
    }
  }
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

static int g_reports;
static void count_report(void *ctx, const char *area, const char *msg) {
  (void)ctx, (void)area, (void)msg;
  g_reports++;
}

TEST(session_purge_tenant) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], dave[40], bea[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  CHECK_INT(user(st, "beta", "bea@beta.com", "00u-bea", true, bea), 201);
  sess s[5];
  sess_init(&s[0], "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&s[1], "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&s[2], "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&s[3], "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  sess_init(&s[4], "beta", "{\"sub\":\"00u-bea\"}", T0, 3600);
  for (int i = 0; i < 5; i++) CHECK_INT(create(st, &s[i]), 0);
  /* 4 sessions × (b, B, E) + the binding's s and S */
  CHECK_INT(tenant_keys(st, "acme"), 14);
  CHECK_INT(tenant_keys(st, "beta"), 3);
  /* bounded steps: each deletes at most `limit`, fewer means done */
  user_job j = {"acme", NULL, 2, -1};
  int steps = 0;
  do {
    CHECK_INT(st_write_sync(st, purge_fn, &j), 0);
    CHECK(j.n >= 0 && j.n <= 2);
    CHECK(++steps < 20);
  } while (j.n == 2);
  CHECK(steps >= 3);
  CHECK_INT(tenant_keys(st, "acme"), 0);
  CHECK_INT(count(st, "acme", alice), 0);
  auth_browser b;
  CHECK_INT(get(st, "acme", s[0].cookie, T0 + 1, 900, &b), ST_ENOTFOUND);
  /* the other tenant keeps its session */
  CHECK_INT(tenant_keys(st, "beta"), 3);
  CHECK_INT(get(st, "beta", s[4].cookie, T0 + 1, 900, &b), 0);
  j.limit = 100;
  CHECK_INT(st_write_sync(st, purge_fn, &j), 0);
  CHECK_INT(j.n, 0);
  /* x1 is no longer bound: dave is found by the fallback again */
  auth_link l;
  json_t *set = settings("sub", "sub", "externalId");
  CHECK_INT(resolve(st, "acme", set, "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", &l), 0);
  CHECK(l.bind);
  json_decref(set);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  CHECK_INT(g_reports, 0);
  for (int i = 0; i < 5; i++) sess_done(&s[i]);
  st_close(st);
  tmp_cleanup();
}

typedef struct tenant_purge {
  const char *tenant;
  int n;
} tenant_purge;
static int purge_step_fn(st_txn *txn, void *arg) {
  tenant_purge *p = arg;
  p->n = st_purge_tenant_step(txn, p->tenant, 50);
  return p->n < 0 ? p->n : 0;
}

TEST(tenant_deletion_removes_sessions_and_check_is_clean) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], dave[40], bea[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  CHECK_INT(user(st, "acme", "dave@acme.com", NULL, true, dave), 201);
  CHECK_INT(user(st, "beta", "bea@beta.com", "00u-bea", true, bea), 201);
  sess s[3];
  sess_init(&s[0], "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  sess_init(&s[1], "acme", "{\"sub\":\"x1\",\"email\":\"dave@acme.com\",\"email_verified\":true}", T0, 3600);
  sess_init(&s[2], "beta", "{\"sub\":\"00u-bea\"}", T0, 3600);
  for (int i = 0; i < 3; i++) CHECK_INT(create(st, &s[i]), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  /* the tenant deletion job: every registered purge, in bounded steps */
  CHECK_INT(tenant_op(st, "acme", 1), 0);
  tenant_purge p = {"acme", 0};
  int steps = 0;
  do {
    CHECK_INT(st_write_sync(st, purge_step_fn, &p), 0);
    CHECK(++steps < 100);
  } while (p.n == 50);
  CHECK_INT(tenant_op(st, "acme", 2), 0);
  CHECK_INT(tenant_keys(st, "acme"), 0);
  CHECK_INT(st_check(st, count_report, NULL), 0);
  CHECK_INT(g_reports, 0);
  auth_browser b;
  CHECK_INT(get(st, "beta", s[2].cookie, T0 + 1, 900, &b), 0);
  for (int i = 0; i < 3; i++) sess_done(&s[i]);
  st_close(st);
  tmp_cleanup();
}

typedef struct raw_put {
  const void *k;
  size_t kl;
} raw_put;
static int raw_put_fn(st_txn *txn, void *arg) {
  raw_put *r = arg;
  return st_put(txn, ST_DB_AUTH, r->k, r->kl, "", 0, 0);
}

TEST(check_reports_sessions_of_unknown_users) {
  st_store *st = open_store();
  CHECK(st);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 0);
  /* a "B" index entry of a user that does not exist */
  uint8_t k[1 + 4 + 1 + 36 + 1 + 32];
  size_t o = 0;
  k[o++] = 'B';
  memcpy(k + o, "acme", 5), o += 5;
  memcpy(k + o, "00000000-0000-4000-8000-000000000000", 37), o += 37;
  memset(k + o, 7, 32), o += 32;
  raw_put r = {k, o};
  CHECK_INT(st_write_sync(st, raw_put_fn, &r), 0);
  g_reports = 0;
  CHECK_INT(st_check(st, count_report, NULL), 1);
  CHECK_INT(g_reports, 1);
  st_close(st);
  tmp_cleanup();
}

/* Index keys without their session record (what delete_user already
 * tolerates): the purge must still make progress and finish, and the
 * sweep must drop an expiry key whose record is gone rather than stall on
 * it. */
TEST(orphan_index_keys_do_not_stall_purge_or_sweep) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  uint8_t k[1 + 4 + 1 + 36 + 1 + 32];
  size_t o = 0;
  k[o++] = 'B';
  memcpy(k + o, "acme", 5), o += 5;
  memcpy(k + o, alice, 37), o += 37;
  memset(k + o, 0, 32), o += 32; /* sorts before any real session's hash */
  raw_put r = {k, o};
  CHECK_INT(st_write_sync(st, raw_put_fn, &r), 0);
  sess a;
  sess_init(&a, "acme", "{\"sub\":\"00u-alice\"}", T0, 3600);
  CHECK_INT(create(st, &a), 0);
  CHECK_INT(tenant_keys(st, "acme"), 4);
  user_job j = {"acme", NULL, 1, -1};
  int steps = 0;
  do {
    CHECK_INT(st_write_sync(st, purge_fn, &j), 0);
    CHECK(++steps < 10); /* each step must delete something */
  } while (j.n == 1);
  CHECK_INT(tenant_keys(st, "acme"), 0);

  /* 16 expired expiry keys of gone sessions in front of a real one */
  sess b, c;
  sess_init(&b, "acme", "{\"sub\":\"00u-alice\"}", T0, 50);
  CHECK_INT(create(st, &b), 0);
  for (int i = 0; i < 16; i++) {
    uint8_t e[41];
    e[0] = 'E';
    for (int x = 0; x < 8; x++) e[1 + x] = (uint8_t)((uint64_t)(T0 + 10) >> (56 - 8 * x));
    memset(e + 9, i + 1, 32);
    raw_put re = {e, sizeof e};
    CHECK_INT(st_write_sync(st, raw_put_fn, &re), 0);
  }
  /* later sign-ins sweep the dead keys and, in a bounded number, b */
  for (int i = 0; i < 3; i++) {
    sess_init(&c, "acme", "{\"sub\":\"00u-alice\"}", T0 + 100 + i, 3600);
    CHECK_INT(create(st, &c), 0);
    sess_done(&c);
  }
  CHECK_INT(raw_record(st, b.n.hash), ST_ENOTFOUND);
  CHECK_INT(count(st, "acme", alice), 3);
  sess_done(&a), sess_done(&b);
  st_close(st);
  tmp_cleanup();
}

TEST(session_sweep_of_expired) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40];
  CHECK_INT(user(st, "acme", "alice@acme.com", "00u-alice", true, alice), 201);
  sess a, c, d;
  sess_init(&a, "acme", "{\"sub\":\"00u-alice\"}", T0, 100);    /* expires T0 + 100 */
  sess_init(&c, "acme", "{\"sub\":\"00u-alice\"}", T0, 1000);   /* expires T0 + 1000 */
  sess_init(&d, "acme", "{\"sub\":\"00u-alice\"}", T0 + 100, 3600);
  CHECK_INT(create(st, &a), 0);
  CHECK_INT(create(st, &c), 0);
  CHECK_INT(count(st, "acme", alice), 2);
  CHECK_INT(tenant_keys(st, "acme"), 6);
  /* a later sign-in at a's expiry sweeps a (record, index and expiry key) */
  CHECK_INT(create(st, &d), 0);
  CHECK_INT(raw_record(st, a.n.hash), ST_ENOTFOUND);
  CHECK_INT(raw_record(st, c.n.hash), 0);
  CHECK_INT(count(st, "acme", alice), 2);
  CHECK_INT(tenant_keys(st, "acme"), 6);
  auth_browser b;
  CHECK_INT(get(st, "acme", c.cookie, T0 + 101, 900, &b), 0);
  sess_done(&a), sess_done(&c), sess_done(&d);
  st_close(st);
  tmp_cleanup();
}

typedef struct consume_job {
  const char *state;
  int64_t expires, now;
} consume_job;
static int consume_fn(st_txn *txn, void *arg) {
  consume_job *j = arg;
  return auth_login_state_consume(txn, j->state, j->expires, j->now);
}
static int consume(st_store *st, const char *state, int64_t expires, int64_t now) {
  consume_job j = {state, expires, now};
  return st_write_sync(st, consume_fn, &j);
}
/* 0 when the used state is recorded ("x" expiry sha256), ST_ENOTFOUND not. */
static int raw_state(st_store *st, const char *state, int64_t expires) {
  uint8_t k[41];
  k[0] = 'x';
  for (int i = 0; i < 8; i++) k[1 + i] = (uint8_t)((uint64_t)expires >> (56 - 8 * i));
  auth_login_state_hash(state, k + 9);
  st_txn *txn;
  st_val v;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = st_get(txn, ST_DB_AUTH, k, sizeof k, &v);
  int used = auth_login_state_used(txn, state, expires);
  st_txn_end(txn);
  if (rc == 0 && used != 1) return -998; /* auth_login_state_used disagrees */
  if (rc == ST_ENOTFOUND && used != 0) return -997;
  return rc;
}

TEST(used_states_until_they_expire) {
  st_store *st = open_store();
  CHECK(st);
  char a[AUTH_LOGIN_RAND_LEN + 1], b[AUTH_LOGIN_RAND_LEN + 1];
  rand_text(a);
  rand_text(b);
  uint8_t h[32], want[32];
  auth_login_state_hash(a, h);
  SHA256((const unsigned char *)a, strlen(a), want);
  CHECK(memcmp(h, want, 32) == 0);
  CHECK_INT(consume(st, a, T0 + 10, T0), 0);
  CHECK_INT(consume(st, a, T0 + 10, T0 + 1), AUTH_EREPLAY);
  CHECK_INT(raw_state(st, a, T0 + 10), 0);
  /* a later consume sweeps the states that expired by its time */
  CHECK_INT(consume(st, b, T0 + 1000, T0 + 9), 0);
  CHECK_INT(raw_state(st, a, T0 + 10), 0);
  CHECK_INT(consume(st, "another-state", T0 + 1000, T0 + 10), 0);
  CHECK_INT(raw_state(st, a, T0 + 10), ST_ENOTFOUND);
  CHECK_INT(raw_state(st, b, T0 + 1000), 0);
  CHECK_INT(consume(st, b, T0 + 1000, T0 + 11), AUTH_EREPLAY);
  st_close(st);
  tmp_cleanup();
}

/* One sign-in a second for 90 minutes, each state used once and live for
 * AUTH_LOGIN_TTL_S: the used states stay about as many as are live. (With
 * the states keyed by hash alone the sweep saw only the lowest hashes and
 * ~4700 of the 5400 stayed, growing without end.) */
static int many_fn(st_txn *txn, void *arg) {
  (void)arg;
  for (int i = 0; i < 5400; i++) {
    char s[64];
    snprintf(s, sizeof s, "state-%06d", i);
    int rc = auth_login_state_consume(txn, s, T0 + i + AUTH_LOGIN_TTL_S, T0 + i);
    if (rc) return rc;
  }
  return 0;
}

TEST(used_states_stay_bounded) {
  st_store *st = open_store();
  CHECK(st);
  CHECK_INT(st_write_sync(st, many_fn, NULL), 0);
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  st_cursor *c;
  CHECK_INT(st_cursor_open(txn, ST_DB_AUTH, &c), 0);
  st_cursor_seek(c, "x", 1, NULL, 0);
  int n = 0;
  while (st_cursor_next(c, NULL, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(txn);
  fprintf(stderr, "  used states kept after 5400 sign-ins: %d\n", n);
  CHECK(n <= AUTH_LOGIN_TTL_S + 1 + 16);
  st_close(st);
  tmp_cleanup();
}

/* ---- pol_user_summary ---------------------------------------------------------------- */

typedef struct put {
  json_t *doc;
  int version, rc;
  json_t *warnings;
  char err[1024];
} put;
static int put_fn(st_txn *txn, void *arg) {
  put *p = arg;
  json_decref(p->warnings);
  p->warnings = NULL;
  p->rc = pol_put(txn, "acme", p->doc, "2026-11-22T00:00:00Z", &p->version, &p->warnings, p->err, sizeof p->err);
  return p->rc;
}
static int put_policy(st_store *st, const char *text) {
  put p;
  memset(&p, 0, sizeof p);
  p.doc = json_loads(text, 0, NULL);
  if (!p.doc) return -999;
  st_write_sync(st, put_fn, &p);
  json_decref(p.doc);
  json_decref(p.warnings);
  if (p.rc) fprintf(stderr, "  policy: %s\n", p.err);
  return p.rc;
}
static json_t *summary(st_store *st, const char *uid, const char *connectors) {
  json_t *cs = json_loads(connectors, 0, NULL);
  st_txn *txn;
  if (st_read_begin(st, &txn)) return NULL;
  json_t *out = pol_user_summary(txn, "acme", uid, cs);
  st_txn_end(txn);
  json_decref(cs);
  return out;
}
/* 1 when out equals the JSON text want. */
static int same(json_t *out, const char *want) {
  json_t *w = json_loads(want, 0, NULL);
  int ok = w && out && json_equal(out, w);
  if (!ok) {
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    fprintf(stderr, "  got %s\n  expected %s\n", s ? s : "NULL", want);
    free(s);
  }
  json_decref(w);
  json_decref(out);
  return ok;
}

TEST(policy_summary) {
  st_store *st = open_store();
  CHECK(st);
  char alice[40], bob[40], ina[40], g[40], body[300];
  CHECK_INT(user(st, "acme", "alice@acme.com", NULL, true, alice), 201);
  CHECK_INT(user(st, "acme", "bob@acme.com", NULL, true, bob), 201);
  CHECK_INT(user(st, "acme", "ina@acme.com", NULL, true, ina), 201);
  snprintf(body, sizeof body, "{\"displayName\":\"Eng\",\"members\":[{\"value\":\"%s\"},{\"value\":\"%s\"}]}", alice,
           ina);
  CHECK_INT(scim(st, "acme", "POST", "/Groups", body, g), 201);
  snprintf(body, sizeof body, "{\"displayName\":\"Ops\",\"members\":[{\"value\":\"%s\"},{\"value\":\"%s\"}]}", alice,
           bob);
  CHECK_INT(scim(st, "acme", "POST", "/Groups", body, g), 201);
  const char *cs = "[\"github\",\"docs\",\"jira\"]";
  /* no policy yet */
  CHECK(same(summary(st, alice, cs), "[]"));
  CHECK_INT(put_policy(st, "{\"version\":1,\"default\":\"block\",\"rules\":["
                           "{\"groups\":[\"Eng\"],\"connector\":\"github\",\"allow\":[\"list_*\",\"get_file\"],"
                           "\"block\":[\"delete_*\"]},"
                           "{\"groups\":[\"Ops\"],\"connector\":\"github\",\"allow\":[\"list_*\",\"create_issue\"],"
                           "\"block\":[\"delete_*\"],\"approve\":[\"merge_*\"]},"
                           "{\"groups\":[\"Ops\"],\"connector\":\"jira\",\"allow\":[\"search\"]}]}"),
            0);
  /* alice (Eng + Ops): github merged without duplicates, jira; docs absent */
  CHECK(same(summary(st, alice, cs),
             "[{\"name\":\"github\",\"allow\":[\"list_*\",\"get_file\",\"create_issue\"],\"block\":[\"delete_*\"],"
             "\"approve\":[\"merge_*\"]},{\"name\":\"jira\",\"allow\":[\"search\"],\"block\":[],\"approve\":[]}]"));
  /* only the listed connectors, in their order */
  CHECK(same(summary(st, alice, "[\"jira\",\"docs\"]"),
             "[{\"name\":\"jira\",\"allow\":[\"search\"],\"block\":[],\"approve\":[]}]"));
  /* ina (Eng only) */
  CHECK(same(summary(st, ina, cs),
             "[{\"name\":\"github\",\"allow\":[\"list_*\",\"get_file\"],\"block\":[\"delete_*\"],\"approve\":[]}]"));
  /* unknown user, inactive user */
  CHECK(same(summary(st, "00000000-0000-4000-8000-000000000000", cs), "[]"));
  CHECK_INT(set_active(st, "acme", ina, false), 200);
  CHECK(same(summary(st, ina, cs), "[]"));

  /* a "*" connector rule applies to every listed connector */
  CHECK_INT(put_policy(st, "{\"version\":1,\"default\":\"block\",\"rules\":["
                           "{\"groups\":[\"Ops\"],\"connector\":\"github\",\"allow\":[\"list_*\"]},"
                           "{\"groups\":[\"*\"],\"connector\":\"*\",\"block\":[\"admin_*\"]}]}"),
            0);
  CHECK(same(summary(st, bob, cs),
             "[{\"name\":\"github\",\"allow\":[\"list_*\"],\"block\":[\"admin_*\"],\"approve\":[]},"
             "{\"name\":\"docs\",\"allow\":[],\"block\":[\"admin_*\"],\"approve\":[]},"
             "{\"name\":\"jira\",\"allow\":[],\"block\":[\"admin_*\"],\"approve\":[]}]"));
  CHECK(same(summary(st, ina, cs), "[]")); /* "*" is every ACTIVE user */
  st_close(st);
  tmp_cleanup();
}

/* ---- gw_settings_get_bool -------------------------------------------------------------- */

static const gw_setting t_bool[] = {{"test_flag_on", GW_SETTING_BOOL, 0, 1, 1, "defaults to true", 0, NULL, false, false},
                                    {"test_flag_off", GW_SETTING_BOOL, 0, 1, 0, "defaults to false", 0, NULL, false, false},
                                    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

typedef struct set_job {
  const char *tenant;
  json_t *settings;
} set_job;
static int set_fn(st_txn *txn, void *arg) {
  set_job *j = arg;
  return st_tenant_set_settings(txn, j->tenant, j->settings);
}

static int get_bool(st_store *st, const char *tenant, const char *name, bool *out) {
  st_txn *txn;
  int rc = st_read_begin(st, &txn);
  if (rc) return rc;
  rc = gw_settings_get_bool(txn, tenant, name, out);
  st_txn_end(txn);
  return rc;
}

TEST(settings_get_bool) {
  CHECK_INT(gw_settings_register(t_bool), 0);
  st_store *st = open_store();
  CHECK(st);
  bool v = false;
  CHECK_INT(get_bool(st, "acme", "test_flag_on", &v), 0);
  CHECK(v);
  v = true;
  CHECK_INT(get_bool(st, "acme", "test_flag_off", &v), 0);
  CHECK(!v);
  set_job j = {"acme", json_pack("{s:b, s:b}", "test_flag_on", 0, "test_flag_off", 1)};
  CHECK_INT(st_write_sync(st, set_fn, &j), 0);
  json_decref(j.settings);
  CHECK_INT(get_bool(st, "acme", "test_flag_on", &v), 0);
  CHECK(!v);
  CHECK_INT(get_bool(st, "acme", "test_flag_off", &v), 0);
  CHECK(v);
  /* another tenant, an unknown tenant, an unknown key: defaults */
  CHECK_INT(get_bool(st, "beta", "test_flag_on", &v), 0);
  CHECK(v);
  CHECK_INT(get_bool(st, "nope", "test_flag_off", &v), 0);
  CHECK(!v);
  v = true;
  CHECK_INT(get_bool(st, "acme", "no_such_flag", &v), 0);
  CHECK(!v);
  /* a stored value of the wrong type acts as the default */
  j.settings = json_pack("{s:i, s:s}", "test_flag_on", 0, "test_flag_off", "true");
  CHECK_INT(st_write_sync(st, set_fn, &j), 0);
  json_decref(j.settings);
  CHECK_INT(get_bool(st, "acme", "test_flag_on", &v), 0);
  CHECK(v);
  CHECK_INT(get_bool(st, "acme", "test_flag_off", &v), 0);
  CHECK(!v);
  /* a tenant that is not active: defaults */
  j.settings = json_pack("{s:b}", "test_flag_off", 1);
  j.tenant = "beta";
  CHECK_INT(st_write_sync(st, set_fn, &j), 0);
  json_decref(j.settings);
  CHECK_INT(get_bool(st, "beta", "test_flag_off", &v), 0);
  CHECK(v);
  CHECK_INT(tenant_op(st, "beta", 1), 0);
  CHECK_INT(get_bool(st, "beta", "test_flag_off", &v), 0);
  CHECK(!v);
  st_close(st);
  tmp_cleanup();
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level((gw_log_level)(GW_LOG_ERROR + 1));
  RUN(link_external_id_and_user_name);
  RUN(link_entra_oid);
  RUN(link_email_fallback_and_binding);
  RUN(link_binding_contradicted_at_sign_in);
  RUN(link_binding_dropped_by_the_scim_write);
  RUN(session_create_get_touch_delete);
  RUN(session_deactivation_and_deletion);
  RUN(sign_in_after_an_unwritten_logout);
  RUN(sign_in_after_an_unwritten_logout_does_not_write_into_the_reserve);
  RUN(session_read_checks_the_user_itself);
  RUN(session_purge_tenant);
  RUN(tenant_deletion_removes_sessions_and_check_is_clean);
  RUN(check_reports_sessions_of_unknown_users);
  RUN(session_sweep_of_expired);
  RUN(orphan_index_keys_do_not_stall_purge_or_sweep);
  RUN(used_states_until_they_expire);
  RUN(used_states_stay_bounded);
  RUN(policy_summary);
  RUN(settings_get_bool);
  tmp_cleanup();
  return UNIT_DONE();
}
