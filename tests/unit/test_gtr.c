/* tests/unit/test_gtr.c — auth/gtr.h, Okta Universal Logout's receiver
 * parts: the request body (both member names, both subject formats, and
 * every refusal, none of which quotes a value), the JWT's header and claim
 * checks (typ, iss, aud, sub, exp and its lifetime, nbf, iat, jti; the jti
 * hash scoped by tenant and issuer), used jtis on a real LMDB store
 * (replay refused, expired ones swept, bounded), and the subject's user
 * (e-mail as userName, iss_sub through a binding or externalId, the sign-in
 * or the logout issuer, ambiguity, another issuer, users in any state). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/gtr.h"
#include "auth/jose.h"
#include "auth/login.h"
#include "gateway/base/log.h"
#include "scim/scim.h"
#include "store/store.h"
#include "store/store_testing.h"
#include "tests/unit/unit.h"

#define T0 INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define AUD "https://gw.example.com/t/acme/oauth/global-logout"
#define ORG "https://acme.okta.com"

static char g_tmp[64];
static st_store *st;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

/* ---- the body */

static int body(const char *text, auth_gtr_subject *s, char *why) {
  return auth_gtr_parse_body(text, strlen(text), s, why, 300);
}

TEST(body_accepts_both_names_and_both_formats) {
  auth_gtr_subject s;
  char why[300];
  CHECK_INT(body("{\"sub_id\":{\"format\":\"email\",\"email\":\"Alice@Acme.com\"}}", &s, why), 0);
  CHECK_INT(s.format, AUTH_GTR_EMAIL);
  CHECK(s.sub_id);
  CHECK_STR(s.email, "Alice@Acme.com");
  CHECK_INT(body("{\"subject\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com/\",\"sub\":\"00u1\"}}", &s, why), 0);
  CHECK_INT(s.format, AUTH_GTR_ISS_SUB);
  CHECK(!s.sub_id);
  CHECK_STR(s.iss, "https://acme.okta.com/");
  CHECK_STR(s.sub, "00u1");
  CHECK_STR(auth_gtr_format_name(s.format), "iss_sub");
  /* member order and whitespace do not matter */
  CHECK_INT(body(" { \"sub_id\" : { \"sub\":\"x\", \"iss\":\"https://a.b\", \"format\":\"iss_sub\" } } ", &s, why), 0);
}

TEST(body_refusals_say_why_without_quoting) {
  static const struct {
    const char *text;
    int rc;
    const char *why;
  } cases[] = {
      {"", AUTH_EGTR_BODY, "empty"},
      {"not json secret-person@x.com", AUTH_EGTR_BODY, "not valid JSON"},
      {"[\"secret-person@x.com\"]", AUTH_EGTR_BODY, "JSON object"},
      {"{}", AUTH_EGTR_BODY, "lacks \"sub_id\""},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"a@b\"},\"subject\":{\"format\":\"email\",\"email\":\"a@b\"}}",
       AUTH_EGTR_BODY, "twice"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"a@b\"},\"extra\":1}", AUTH_EGTR_BODY, "besides"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"a@b\"},\"sub_id\":{\"format\":\"email\",\"email\":\"c@d\"}}",
       AUTH_EGTR_BODY, "repeats a key"},
      {"{\"sub_id\":\"secret-person@x.com\"}", AUTH_EGTR_BODY, "must be an object"},
      {"{\"sub_id\":{\"email\":\"secret-person@x.com\"}}", AUTH_EGTR_BODY, "\"format\""},
      {"{\"sub_id\":{\"format\":7}}", AUTH_EGTR_BODY, "\"format\""},
      {"{\"sub_id\":{\"format\":\"opaque\",\"id\":\"secret-person\"}}", AUTH_EGTR_FORMAT, "not supported"},
      {"{\"sub_id\":{\"format\":\"account\",\"uri\":\"acct:secret-person@x.com\"}}", AUTH_EGTR_FORMAT, "not supported"},
      {"{\"sub_id\":{\"format\":\"email\"}}", AUTH_EGTR_BODY, "lacks \"email\""},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"\"}}", AUTH_EGTR_BODY, "non-empty"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":7}}", AUTH_EGTR_BODY, "non-empty"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"secret-person\"}}", AUTH_EGTR_BODY, "e-mail address"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"secret\\tperson@x.com\"}}", AUTH_EGTR_BODY, "control"},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"secret\\u0000person@x.com\"}}", AUTH_EGTR_BODY, ""},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"secret-person@x.com\",\"iss\":\"x\"}}", AUTH_EGTR_BODY,
       "unknown member \"iss\""},
      {"{\"sub_id\":{\"format\":\"email\",\"email\":\"a@b\",\"secret-person@x.com\":1}}", AUTH_EGTR_BODY,
       "unknown member"},
      {"{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://a\"}}", AUTH_EGTR_BODY, "lacks \"sub\""},
      {"{\"sub_id\":{\"format\":\"iss_sub\",\"sub\":\"secret-person\"}}", AUTH_EGTR_BODY, "lacks \"iss\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    auth_gtr_subject s;
    char why[300];
    int rc = body(cases[i].text, &s, why);
    if (rc != cases[i].rc || !strstr(why, cases[i].why) || strstr(why, "secret")) {
      fprintf(stderr, "  case %zu: rc %d why \"%s\"\n", i, rc, why);
      CHECK(0);
    }
    CHECK_INT(s.format, 0); /* zeroed on refusal */
  }
  /* caps: the body, and each value */
  char big[AUTH_GTR_BODY_MAX + 64], why[300];
  auth_gtr_subject s;
  snprintf(big, sizeof big, "{\"sub_id\":{\"format\":\"email\",\"email\":\"a@%0*d\"}}", AUTH_GTR_BODY_MAX, 0);
  CHECK_INT(body(big, &s, why), AUTH_EGTR_BODY);
  CHECK(strstr(why, "larger than"));
  snprintf(big, sizeof big, "{\"sub_id\":{\"format\":\"email\",\"email\":\"a@%0*d\"}}", AUTH_GTR_EMAIL_MAX - 1, 0);
  CHECK_INT(body(big, &s, why), AUTH_EGTR_BODY);
  snprintf(big, sizeof big, "{\"sub_id\":{\"format\":\"email\",\"email\":\"a@%0*d\"}}", AUTH_GTR_EMAIL_MAX - 2, 0);
  CHECK_INT(body(big, &s, why), 0);
  snprintf(big, sizeof big, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://a\",\"sub\":\"%0*d\"}}",
           AUTH_SUBJECT_MAX + 1, 0);
  CHECK_INT(body(big, &s, why), AUTH_EGTR_BODY);
  /* a raw NUL byte inside the body */
  static const char nul[] = "{\"sub_id\":{\"format\":\"email\",\"email\":\"a@b\0\"}}";
  CHECK_INT(auth_gtr_parse_body(nul, sizeof nul - 1, &s, why, sizeof why), AUTH_EGTR_BODY);
}

/* ---- the JWT */

static json_t *good_claims(void) {
  return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "iss", ORG, "aud", AUD, "sub", "0oa-client", "iat", (json_int_t)T0,
                   "nbf", (json_int_t)(T0 - 300), "exp", (json_int_t)(T0 + 300), "jti", "jti-1");
}

static int check_with(json_t *hdr, json_t *claims, const char *tenant, auth_gtr_token *t) {
  auth_gtr_expect w = {tenant, ORG, AUD, "0oa-client", T0, AUTH_GTR_SKEW_S};
  int rc = auth_gtr_check(hdr, claims, &w, t);
  json_decref(hdr);
  json_decref(claims);
  return rc;
}

static json_t *hdr(const char *typ) { return typ ? json_pack("{s:s,s:s}", "alg", "RS256", "typ", typ) : json_pack("{s:s}", "alg", "RS256"); }

/* One claim changed (value NULL: removed). */
static int check_claim(const char *name, json_t *value) {
  json_t *c = good_claims();
  if (value) json_object_set_new(c, name, value);
  else json_object_del(c, name);
  auth_gtr_token t;
  return check_with(hdr(AUTH_GTR_TYP), c, "acme", &t);
}

TEST(jwt_checks) {
  auth_gtr_token t, t2;
  CHECK_INT(check_with(hdr(AUTH_GTR_TYP), good_claims(), "acme", &t), 0);
  CHECK_INT(t.keep_until, T0 + 300 + AUTH_GTR_SKEW_S);
  /* typ: explicit, case-insensitive, "application/" allowed */
  CHECK_INT(check_with(hdr("application/Global-Token-Revocation+JWT"), good_claims(), "acme", &t2), 0);
  CHECK(!memcmp(t.jti_hash, t2.jti_hash, 32));
  CHECK_INT(check_with(hdr(NULL), good_claims(), "acme", &t2), AUTH_EGTR_TYP);
  CHECK_INT(check_with(hdr("JWT"), good_claims(), "acme", &t2), AUTH_EGTR_TYP);
  CHECK_INT(check_with(hdr("logout+jwt"), good_claims(), "acme", &t2), AUTH_EGTR_TYP);
  /* the jti is scoped by tenant */
  CHECK_INT(check_with(hdr(AUTH_GTR_TYP), good_claims(), "beta", &t2), 0);
  CHECK(memcmp(t.jti_hash, t2.jti_hash, 32) != 0);
  /* iss */
  CHECK_INT(check_claim("iss", json_string(ORG "/")), AUTH_EGTR_ISS);
  CHECK_INT(check_claim("iss", json_string(ORG "/oauth2/default")), AUTH_EGTR_ISS);
  CHECK_INT(check_claim("iss", NULL), AUTH_EGTR_ISS);
  CHECK_INT(check_claim("iss", json_integer(1)), AUTH_EGTR_ISS);
  /* aud: this endpoint, as a string or in an array */
  CHECK_INT(check_claim("aud", json_pack("[s,s]", "https://other", AUD)), 0);
  CHECK_INT(check_claim("aud", json_string(AUD "/")), AUTH_EGTR_AUD);
  CHECK_INT(check_claim("aud", json_string("https://gw.example.com/t/beta/oauth/global-logout")), AUTH_EGTR_AUD);
  CHECK_INT(check_claim("aud", json_string("0oa-client")), AUTH_EGTR_AUD); /* an ID token's aud */
  CHECK_INT(check_claim("aud", json_pack("[s,i]", AUD, 1)), AUTH_EGTR_AUD);
  CHECK_INT(check_claim("aud", json_array()), AUTH_EGTR_AUD);
  CHECK_INT(check_claim("aud", NULL), AUTH_EGTR_AUD);
  /* sub: the tenant's app */
  CHECK_INT(check_claim("sub", json_string("0oa-other")), AUTH_EGTR_CLIENT);
  CHECK_INT(check_claim("sub", NULL), AUTH_EGTR_CLIENT);
  /* exp: required, not passed (skew), not too far ahead */
  CHECK_INT(check_claim("exp", NULL), AUTH_EGTR_EXP);
  CHECK_INT(check_claim("exp", json_string("1767225900")), AUTH_EGTR_EXP);
  CHECK_INT(check_claim("exp", json_integer(T0 - AUTH_GTR_SKEW_S)), AUTH_EGTR_EXP);
  CHECK_INT(check_claim("exp", json_integer(T0 - AUTH_GTR_SKEW_S + 1)), 0);
  CHECK_INT(check_claim("exp", json_integer(T0 + AUTH_GTR_LIFETIME_MAX + AUTH_GTR_SKEW_S)), 0);
  CHECK_INT(check_claim("exp", json_integer(T0 + AUTH_GTR_LIFETIME_MAX + AUTH_GTR_SKEW_S + 1)), AUTH_EGTR_LIFETIME);
  CHECK_INT(check_claim("exp", json_integer(-1)), AUTH_EGTR_EXP);
  /* nbf: optional, passed */
  CHECK_INT(check_claim("nbf", NULL), 0);
  CHECK_INT(check_claim("nbf", json_integer(T0 + AUTH_GTR_SKEW_S + 1)), AUTH_EGTR_NBF);
  CHECK_INT(check_claim("nbf", json_string("x")), AUTH_EGTR_NBF);
  /* iat: required, not in the future */
  CHECK_INT(check_claim("iat", NULL), AUTH_EGTR_IAT);
  CHECK_INT(check_claim("iat", json_integer(T0 + AUTH_GTR_SKEW_S + 1)), AUTH_EGTR_IAT);
  CHECK_INT(check_claim("iat", json_real((double)T0 + AUTH_GTR_SKEW_S + 0.5)), AUTH_EGTR_IAT);
  /* jti */
  CHECK_INT(check_claim("jti", NULL), AUTH_EGTR_JTI);
  CHECK_INT(check_claim("jti", json_string("")), AUTH_EGTR_JTI);
  CHECK_INT(check_claim("jti", json_integer(5)), AUTH_EGTR_JTI);
  char long_jti[AUTH_GTR_JTI_MAX + 2];
  memset(long_jti, 'j', sizeof long_jti - 1);
  long_jti[sizeof long_jti - 1] = 0;
  CHECK_INT(check_claim("jti", json_string(long_jti)), AUTH_EGTR_JTI);
  long_jti[AUTH_GTR_JTI_MAX] = 0;
  CHECK_INT(check_claim("jti", json_string(long_jti)), 0);
  /* bad arguments */
  auth_gtr_expect w = {"acme", ORG, AUD, "0oa-client", T0, AUTH_JOSE_SKEW_MAX + 1};
  json_t *h = hdr(AUTH_GTR_TYP), *c = good_claims();
  CHECK_INT(auth_gtr_check(h, c, &w, &t), AUTH_JOSE_EINVAL);
  json_decref(h);
  json_decref(c);
  /* every code has a name */
  for (int e = AUTH_EGTR_BODY; e >= AUTH_EGTR_SUBJECT_ISS; e--) CHECK(strstr(auth_strerror(e), "universal logout"));
}

/* ---- used jtis */

typedef struct jti_job {
  auth_gtr_token t;
  int64_t now;
} jti_job;
static int consume_fn(st_txn *txn, void *arg) {
  jti_job *j = arg;
  return auth_gtr_jti_consume(txn, &j->t, j->now);
}
static int used(const uint8_t h[32]) {
  st_txn *txn;
  if (st_read_begin(st, &txn)) return -1;
  int rc = auth_gtr_jti_used(txn, h);
  st_txn_end(txn);
  return rc;
}
static int count_prefix(char p) {
  st_txn *txn;
  st_cursor *c;
  int n = 0;
  if (st_read_begin(st, &txn) || st_cursor_open(txn, ST_DB_AUTH, &c)) return -1;
  st_val k;
  st_cursor_seek(c, &p, 1, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) n++;
  st_cursor_close(c);
  st_txn_end(txn);
  return n;
}

TEST(jti_single_use_and_swept) {
  jti_job a = {{{1}, T0 + 360}, T0};
  CHECK_INT(used(a.t.jti_hash), 0);
  CHECK_INT(st_write_sync(st, consume_fn, &a), 0);
  CHECK_INT(used(a.t.jti_hash), 1);
  CHECK_INT(st_write_sync(st, consume_fn, &a), AUTH_EGTR_REPLAY);
  a.now = T0 + 359; /* still kept */
  CHECK_INT(st_write_sync(st, consume_fn, &a), AUTH_EGTR_REPLAY);
  /* 40 more, each a second apart */
  for (int i = 0; i < 40; i++) {
    jti_job b = {{{2, (uint8_t)i}, T0 + 360 + i}, T0};
    CHECK_INT(st_write_sync(st, consume_fn, &b), 0);
  }
  CHECK_INT(count_prefix('j'), 41);
  CHECK_INT(count_prefix('J'), 41);
  /* later consumes sweep what expired, 16 at a time, both keys */
  jti_job late = {{{3}, T0 + 2000}, T0 + 1000};
  CHECK_INT(st_write_sync(st, consume_fn, &late), 0);
  CHECK_INT(count_prefix('j'), 41 + 1 - 16);
  CHECK_INT(used(a.t.jti_hash), 0); /* the oldest went first */
  late.t.jti_hash[1] = 1;
  CHECK_INT(st_write_sync(st, consume_fn, &late), 0);
  late.t.jti_hash[1] = 2;
  CHECK_INT(st_write_sync(st, consume_fn, &late), 0);
  CHECK_INT(count_prefix('j'), 3); /* the three live ones */
  CHECK_INT(count_prefix('J'), 3);
}

/* ---- the subject's user */

typedef struct scim_call {
  scim_req rq;
  scim_resp rs;
} scim_call;
static int scim_fn(st_txn *txn, void *arg) {
  scim_call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}
static int scim(const char *method, const char *path, const char *text, char id[40]) {
  scim_call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = "acme";
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/acme/scim/v2";
  c.rq.body = text ? json_loads(text, 0, NULL) : NULL;
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(st, scim_fn, &c);
  json_decref(c.rq.body);
  if (id) snprintf(id, 40, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  int status = c.rs.status;
  scim_resp_clear(&c.rs);
  return status;
}

static int bind_fn(st_txn *txn, void *arg) { return auth_link_bind(txn, "acme", arg); }
/* gives user arg the externalId 00u-dave past SCIM's rules (a store written before them) */
static int legacy_ext_fn(st_txn *txn, void *arg) { return st__test_dir_user_set_external(txn, "acme", arg, "00u-dave"); }

static int resolve(const json_t *settings, const char *text, char id[ST_DIR_ID_LEN + 1]) {
  auth_gtr_subject s;
  char why[300];
  int rc = auth_gtr_parse_body(text, strlen(text), &s, why, sizeof why);
  if (rc) return rc;
  st_txn *txn;
  if ((rc = st_read_begin(st, &txn))) return rc;
  rc = auth_gtr_resolve(txn, "acme", settings, &s, id);
  st_txn_end(txn);
  return rc;
}

TEST(subject_to_user) {
  char alice[40], bob[40], carol[40], dave1[40], dave2[40], id[ST_DIR_ID_LEN + 1];
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"alice@acme.com\",\"externalId\":\"00u-alice\"}", alice), 201);
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"bob@acme.com\",\"externalId\":\"00u-bob\",\"active\":false}", bob), 201);
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"carol@acme.com\"}", carol), 201);
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"dave1@acme.com\",\"externalId\":\"00u-dave\"}", dave1), 201);
  /* two users with one externalId: SCIM refuses it now (409), a store
   * written before may hold them */
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"dave2@acme.com\",\"externalId\":\"00u-dave\"}", dave2), 409);
  CHECK_INT(scim("POST", "/Users", "{\"userName\":\"dave2@acme.com\",\"externalId\":\"00u-dave2\"}", dave2), 201);
  CHECK_INT(st_write_sync(st, legacy_ext_fn, dave2), 0);
  /* employees sign in through a custom authorization server */
  json_t *set = json_pack("{s:s,s:s,s:s,s:s,s:s}", "issuer", ORG "/oauth2/default", "client_id", "0oa-client",
                          "subject_claim", "sub", "link_claim", "sub", "link_attribute", "externalId");
  /* email: the userName, case-insensitively; any state */
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"email\",\"email\":\"ALICE@acme.com\"}}", id), 0);
  CHECK_STR(id, alice);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"email\",\"email\":\"bob@acme.com\"}}", id), 0);
  CHECK_STR(id, bob);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"email\",\"email\":\"nobody@acme.com\"}}", id), ST_ENOTFOUND);
  CHECK_STR(id, "");
  /* iss_sub: the org (logout issuer, derived) or the sign-in issuer, normalised */
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00u-alice\"}}", id), 0);
  CHECK_STR(id, alice);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://ACME.okta.com/\",\"sub\":\"00u-bob\"}}", id), 0);
  CHECK_STR(id, bob);
  CHECK_INT(resolve(set, "{\"subject\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com/oauth2/default\",\"sub\":\"00u-alice\"}}", id), 0);
  CHECK_STR(id, alice);
  /* case-exact subject; unknown; another issuer */
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00U-ALICE\"}}", id), ST_ENOTFOUND);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00u-nobody\"}}", id), ST_ENOTFOUND);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://evil.okta.com\",\"sub\":\"00u-alice\"}}", id), AUTH_EGTR_SUBJECT_ISS);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com/oauth2/other\",\"sub\":\"00u-alice\"}}", id), AUTH_EGTR_SUBJECT_ISS);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"not a url\",\"sub\":\"00u-alice\"}}", id), AUTH_EGTR_SUBJECT_ISS);
  /* two users with one externalId: ambiguous */
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00u-dave\"}}", id), AUTH_EAMBIGUOUS);
  /* carol was linked by her verified e-mail at a sign-in: her binding names her */
  auth_link l;
  memset(&l, 0, sizeof l);
  snprintf(l.user_id, sizeof l.user_id, "%s", carol);
  uint8_t buf[200];
  size_t n = strlen(ORG "/oauth2/default");
  memcpy(buf, ORG "/oauth2/default", n + 1);
  memcpy(buf + n + 1, "00u-carol", 9);
  st_sha256(buf, n + 1 + 9, l.subject_hash);
  CHECK_INT(st_write_sync(st, bind_fn, &l), 0);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00u-carol\"}}", id), 0);
  CHECK_STR(id, carol);
  /* an explicit logout issuer replaces the derived one */
  json_object_set_new(set, "logout_issuer", json_string("https://login.acme.com"));
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://login.acme.com\",\"sub\":\"00u-alice\"}}", id), 0);
  CHECK_STR(id, alice);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://acme.okta.com\",\"sub\":\"00u-alice\"}}", id), AUTH_EGTR_SUBJECT_ISS);
  /* links by userName: the subject is compared with userName */
  json_object_set_new(set, "link_attribute", json_string("userName"));
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://login.acme.com\",\"sub\":\"00u-alice\"}}", id), ST_ENOTFOUND);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://login.acme.com\",\"sub\":\"alice@acme.com\"}}", id), 0);
  CHECK_STR(id, alice);
  /* another link claim: only a binding can name the user */
  json_object_set_new(set, "link_claim", json_string("email"));
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://login.acme.com\",\"sub\":\"alice@acme.com\"}}", id), ST_ENOTFOUND);
  CHECK_INT(resolve(set, "{\"sub_id\":{\"format\":\"iss_sub\",\"iss\":\"https://login.acme.com\",\"sub\":\"00u-carol\"}}", id), 0);
  CHECK_STR(id, carol);
  json_decref(set);
}

TEST(logout_issuer_setting) {
  char out[1100];
  json_t *rec = json_pack("{s:s}", "issuer", "https://acme.okta.com/oauth2/default");
  CHECK_INT(auth_oidc_logout_issuer(rec, out, sizeof out), 0);
  CHECK_STR(out, "https://acme.okta.com");
  json_object_set_new(rec, "issuer", json_string("http://127.0.0.1:8080"));
  CHECK_INT(auth_oidc_logout_issuer(rec, out, sizeof out), 0);
  CHECK_STR(out, "http://127.0.0.1:8080");
  json_object_set_new(rec, "logout_issuer", json_string("https://login.acme.com"));
  CHECK_INT(auth_oidc_logout_issuer(rec, out, sizeof out), 0);
  CHECK_STR(out, "https://login.acme.com");
  json_decref(rec);
  /* validated and normalised like the issuer */
  json_t *body = json_pack("{s:s,s:s,s:s}", "issuer", "https://acme.okta.com/oauth2/default", "client_id", "c",
                           "logout_issuer", "https://ACME.okta.com/");
  json_t *cfg = NULL;
  const char *secret;
  char err[600];
  CHECK_INT(auth_oidc_parse(body, &cfg, &secret, err, sizeof err), 0);
  CHECK_STR(json_string_value(json_object_get(cfg, "logout_issuer")), "https://acme.okta.com");
  json_decref(cfg);
  json_object_set_new(body, "logout_issuer", json_string("ftp://acme"));
  CHECK_INT(auth_oidc_parse(body, &cfg, &secret, err, sizeof err), AUTH_EINVALID);
  CHECK(strstr(err, "logout_issuer"));
  json_object_set_new(body, "logout_issuer", json_null()); /* null: the default */
  CHECK_INT(auth_oidc_parse(body, &cfg, &secret, err, sizeof err), 0);
  CHECK(!json_object_get(cfg, "logout_issuer"));
  json_t *view = auth_oidc_view(cfg);
  CHECK_STR(json_string_value(json_object_get(view, "logout_issuer")), "https://acme.okta.com");
  json_decref(view);
  json_decref(cfg);
  json_decref(body);
}

int main(void) {
  if (!getenv("UNIT_VERBOSE")) gw_log_set_level(GW_LOG_WARN);
  strcpy(g_tmp, "/tmp/mcpgate-test-gtr-XXXXXX");
  char dir[128];
  st_options o = {0};
  if (!mkdtemp(g_tmp)) return 1;
  snprintf(dir, sizeof dir, "%s/store", g_tmp);
  o.dir = dir;
  o.map_size = 64u << 20;
  o.log = gw_store_log;
  if (st_open(&st, &o) != 0) {
    printf("not ok 1 setup\n# unit %s: 0 passed, 1 failed\n", __FILE__);
    return 1;
  }
  RUN(body_accepts_both_names_and_both_formats);
  RUN(body_refusals_say_why_without_quoting);
  RUN(jwt_checks);
  RUN(jti_single_use_and_swept);
  RUN(subject_to_user);
  RUN(logout_issuer_setting);
  st_close(st);
  nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return UNIT_DONE();
}
