/* tests/unit/test_scim.c — scim/ against a real LMDB store on disk:
 * the filter grammar (operators, literals, precedence, value paths, URN
 * paths, case rules, error positions), and lifecycle hooks seeing every
 * deactivation form inside the write transaction. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "gateway/base/log.h"
#include "scim/scim.h"
#include "store/dir.h"
#include "scim/scim_int.h"
#include "store/store.h"
#include "store/store_testing.h"
#include "store/tenant.h"
#include "unit.h"

/* ---------- filters ---------- */

static json_t *user(void) {
  return json_loads(
      "{\"id\":\"2819c223-7f76-453a-919d-413861904646\",\"userName\":\"Bjensen@Example.com\","
      "\"externalId\":\"Ext-1\",\"active\":true,\"title\":\"Tour Guide\",\"logins\":5,"
      "\"name\":{\"givenName\":\"Barbara\",\"familyName\":\"Jensen\"},"
      "\"emails\":[{\"type\":\"work\",\"value\":\"bjensen@example.com\",\"primary\":true},"
      "{\"type\":\"home\",\"value\":\"babs@jensen.org\"}],"
      "\"meta\":{\"lastModified\":\"2026-05-13T04:42:34Z\"},"
      "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{\"employeeNumber\":\"701984\","
      "\"manager\":{\"value\":\"26118915-6090-4610-87e4-49d8ca9f808d\"}}}",
      0, NULL);
}

static int match(const char *f) {
  scim__filter *ft;
  char err[200];
  if (scim__filter_parse(f, &ft, err, sizeof err) != 0) {
    fprintf(stderr, "  parse failed: %s: %s\n", f, err);
    return -1;
  }
  json_t *u = user();
  int r = scim__filter_match(ft, u, NULL);
  json_decref(u);
  scim__filter_free(ft);
  return r;
}

TEST(filter_operators) {
  CHECK_INT(match("userName eq \"bjensen@example.com\""), 1); /* caseExact false */
  CHECK_INT(match("USERNAME EQ \"BJENSEN@EXAMPLE.COM\""), 1); /* names and ops case-insensitive */
  CHECK_INT(match("externalId eq \"ext-1\""), 0);              /* externalId is caseExact */
  CHECK_INT(match("externalId eq \"Ext-1\""), 1);
  CHECK_INT(match("userName ne \"x\""), 1);
  CHECK_INT(match("title co \"our\""), 1);
  CHECK_INT(match("title sw \"tour\""), 1);
  CHECK_INT(match("title ew \"GUIDE\""), 1);
  CHECK_INT(match("title sw \"guide\""), 0);
  CHECK_INT(match("logins gt 4"), 1);
  CHECK_INT(match("logins ge 5"), 1);
  CHECK_INT(match("logins lt 5"), 0);
  CHECK_INT(match("logins le 5"), 1);
  CHECK_INT(match("active eq true"), 1);
  CHECK_INT(match("active eq false"), 0);
  CHECK_INT(match("title pr"), 1);
  CHECK_INT(match("nickName pr"), 0);
  CHECK_INT(match("meta.lastModified gt \"2026-01-01T00:00:00Z\""), 1);
  CHECK_INT(match("meta.lastModified lt \"2026-01-01T00:00:00Z\""), 0);
  /* dateTime: chronological across precision and offsets (stored 04:42:34Z) */
  CHECK_INT(match("meta.lastModified eq \"2026-05-13T04:42:34.000Z\""), 1);
  CHECK_INT(match("meta.lastModified eq \"2026-05-13T06:42:34+02:00\""), 1);
  CHECK_INT(match("meta.lastModified gt \"2026-05-13T05:00:00+01:00\""), 1); /* 04:00Z */
  CHECK_INT(match("meta.lastModified lt \"2026-05-13T04:42:34.5Z\""), 1);
  /* null: unassigned */
  CHECK_INT(match("nickName eq null"), 1);
  CHECK_INT(match("title eq null"), 0);
  CHECK_INT(match("title ne null"), 1);
}

TEST(filter_logic_and_precedence) {
  /* and binds tighter than or: true or (false and false) */
  CHECK_INT(match("title pr or nickName pr and userName eq \"no\""), 1);
  /* (true or false) and false */
  CHECK_INT(match("(title pr or nickName pr) and userName eq \"no\""), 0);
  CHECK_INT(match("not (nickName pr)"), 1);
  CHECK_INT(match("not(title pr) or active eq true"), 1);
  CHECK_INT(match("not (title pr) and active eq true"), 0);
}

TEST(filter_value_paths_and_urns) {
  CHECK_INT(match("emails[type eq \"work\" and value co \"@example.com\"]"), 1);
  CHECK_INT(match("emails[type eq \"home\" and value co \"@example.com\"]"), 0);
  CHECK_INT(match("emails[type eq \"work\"].value eq \"BJENSEN@example.com\""), 1);
  CHECK_INT(match("emails.value eq \"babs@jensen.org\""), 1);
  CHECK_INT(match("emails eq \"babs@jensen.org\""), 1); /* complex multi-valued: compares value */
  CHECK_INT(match("name.givenName sw \"barb\""), 1);
  CHECK_INT(match("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\""), 1);
  CHECK_INT(
      match("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "
            "\"26118915-6090-4610-87e4-49d8ca9f808d\""),
      1);
  CHECK_INT(match("urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bjensen@example.com\""), 1);
}

static void expect_error(const char *f, const char *needle, int *ok) {
  scim__filter *ft = NULL;
  char err[200] = "";
  int rc = scim__filter_parse(f, &ft, err, sizeof err);
  scim__filter_free(ft);
  *ok = rc != 0 && strstr(err, needle) != NULL;
  if (!*ok) fprintf(stderr, "  filter %s: rc=%d err=%s (want %s)\n", f, rc, err, needle);
}

TEST(filter_errors_have_positions) {
  int ok;
  expect_error("userName xx \"a\"", "position 10", &ok);
  CHECK(ok);
  expect_error("userName eq", "position 12", &ok);
  CHECK(ok);
  expect_error("userName eq \"unterminated", "unterminated", &ok);
  CHECK(ok);
  expect_error("(userName eq \"a\"", "expected ')'", &ok);
  CHECK(ok);
  expect_error("emails[type eq \"work\"", "expected ']'", &ok);
  CHECK(ok);
  expect_error("userName eq \"a\" junk", "unexpected text", &ok);
  CHECK(ok);
  expect_error("", "position 1", &ok);
  CHECK(ok);
  char deep[400] = "";
  for (int i = 0; i < 40; i++) strcat(deep, "(");
  strcat(deep, "title pr");
  for (int i = 0; i < 40; i++) strcat(deep, ")");
  expect_error(deep, "nested too deeply", &ok);
  CHECK(ok);
}

/* Found by review: a filter's cost is not one unit a resource. A `co`
 * ran a strncasecmp at every offset (value x literal), and a filter of
 * hundreds of nodes runs each over the resource: tens of milliseconds a
 * resource, on the loop or the writer. A meter charges every comparison
 * its bytes; past its limit a match answers false and says so. */
TEST(a_filter_is_metered_by_the_bytes_it_compares) {
  json_t *u = user();
  size_t big = 200 * 1024;
  char *note = malloc(big + 2);
  memset(note, 'a', big);
  note[big] = 'b';
  note[big + 1] = 0;
  json_object_set_new(u, "note", json_string(note));
  free(note);
  /* 200 nodes of co over 200 kB: ~40 MB compared */
  char f[4096] = "note co \"c\"";
  for (int i = 1; i < 200; i++) strcat(f, " or note co \"c\"");
  scim__filter *ft, *hit, *ci;
  char err[200];
  CHECK_INT(scim__filter_parse(f, &ft, err, sizeof err), 0);
  CHECK_INT(scim__filter_parse("userName eq \"x\" or note co \"AB\"", &hit, err, sizeof err), 0);
  CHECK_INT(scim__filter_parse("note co \"AAAB\"", &ci, err, sizeof err), 0);
  /* unmetered: the answers (co stays case-insensitive for a non-caseExact attribute) */
  CHECK(!scim__filter_match(ft, u, NULL));
  CHECK(scim__filter_match(hit, u, NULL));
  CHECK(scim__filter_match(ci, u, NULL));
  /* under the limit: the same answers, and the work counted */
  scim__meter m = {0, (size_t)64 << 20};
  CHECK(!scim__filter_match(ft, u, &m));
  CHECK(!scim__meter_over(&m));
  CHECK(m.used >= 200 * big);
  size_t one = m.used;
  m.used = 0;
  CHECK(scim__filter_match(hit, u, &m));
  CHECK(m.used >= big && m.used < one / 100);
  /* past it: false, and over */
  scim__meter small = {0, 10 * big};
  CHECK(!scim__filter_match(ft, u, &small));
  CHECK(scim__meter_over(&small));
  CHECK(small.used < 12 * big); /* it stopped there */
  scim__meter tiny = {0, 8};
  CHECK(!scim__filter_match(hit, u, &tiny));
  CHECK(scim__meter_over(&tiny));
  /* a not above the node that spent it does not turn its false into true */
  scim__filter *neg;
  CHECK_INT(scim__filter_parse("not (note co \"c\")", &neg, err, sizeof err), 0);
  CHECK(scim__filter_match(neg, u, NULL));
  scim__meter few = {0, 1024};
  CHECK(!scim__filter_match(neg, u, &few));
  CHECK(scim__meter_over(&few));
  scim__filter_free(neg);
  scim__filter_free(ft);
  scim__filter_free(hit);
  scim__filter_free(ci);
  json_decref(u);
  /* a PATCH path's value filter is capped like a query's */
  char *longp = malloc(5000);
  strcpy(longp, "emails[value co \"");
  memset(longp + strlen(longp), 'x', 4100);
  strcpy(longp + 17 + 4100, "\"]");
  scim__path p;
  CHECK(scim__path_parse(longp, &p, err, sizeof err) != 0);
  CHECK(strstr(err, "longer than 4096") != NULL);
  free(longp);
}

TEST(patch_paths) {
  scim__path p;
  char err[200];
  CHECK_INT(scim__path_parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", &p, err,
                             sizeof err),
            0);
  CHECK_STR(p.ap.urn, SCIM_URN_ENTERPRISE);
  CHECK_STR(p.ap.attr, "manager");
  CHECK_STR(p.ap.sub, "value");
  scim__path_free(&p);
  CHECK_INT(scim__path_parse("members[value eq \"abc\"]", &p, err, sizeof err), 0);
  CHECK_STR(p.ap.attr, "members");
  CHECK(p.filter != NULL);
  scim__path_free(&p);
  CHECK_INT(scim__path_parse("emails[type eq \"work\"].value", &p, err, sizeof err), 0);
  CHECK_STR(p.ap.sub, "value");
  scim__path_free(&p);
  CHECK_INT(scim__path_parse(SCIM_URN_ENTERPRISE, &p, err, sizeof err), 0);
  CHECK(p.urn_only);
  scim__path_free(&p);
  CHECK(scim__path_parse("a.b.c", &p, err, sizeof err) != 0);
  CHECK(scim__path_parse("emails[type eq]", &p, err, sizeof err) != 0);
}

/* ---------- lifecycle hooks inside the write ---------- */

typedef struct seen {
  int deactivated, reactivated, deleted, created;
  char via[8][16];
  int nvia;
  int inside_ok;
  int fail_next;
  int fail_rc;    /* what the failing hook returns (0: -5, not a store code) */
} seen;

static int hook(st_txn *txn, int kind, const void *event, void *ctx) {
  seen *s = ctx;
  const scim_event *ev = event;
  if (s->fail_next) {
    s->fail_next = 0;
    return s->fail_rc ? s->fail_rc : -5;
  }
  /* inside the transaction: it is a write txn and the change is visible */
  if (st_txn_is_write(txn)) {
    char key[128];
    size_t tl = strlen(ev->tenant);
    memcpy(key, ev->tenant, tl + 1);
    key[tl + 1] = 'U';
    memcpy(key + tl + 2, ev->id, SCIM_ID_LEN);
    st_val v;
    int rc = st_get(txn, ST_DB_SCIM_RES, key, tl + 2 + SCIM_ID_LEN, &v);
    if (kind == SCIM_EV_USER_DEACTIVATED) {
      /* DELETE: already gone; other forms: stored with active false */
      if (!strcmp(ev->via, "delete")) s->inside_ok += rc == ST_ENOTFOUND;
      else s->inside_ok += rc == 0 && memmem(v.data, v.len, "\"active\":false", 14) != NULL;
    }
  }
  switch (kind) {
  case SCIM_EV_USER_DEACTIVATED:
    s->deactivated++;
    if (s->nvia < 8) snprintf(s->via[s->nvia++], 16, "%s", ev->via);
    break;
  case SCIM_EV_USER_REACTIVATED: s->reactivated++; break;
  case SCIM_EV_USER_DELETED: s->deleted++; break;
  case SCIM_EV_USER_CREATED: s->created++; break;
  }
  return 0;
}

typedef struct call {
  scim_req rq;
  scim_resp rs;
  int rc;
} call;

static int run_job(st_txn *txn, void *arg) {
  call *c = arg;
  c->rc = scim_handle(txn, &c->rq, &c->rs);
  return c->rc < 0 ? c->rc : 0;
}

static uint64_t g_users_max, g_groups_max; /* do_req's caps (scim_req.users_max, groups_max) */
static int do_req(st_store *st, const char *method, const char *path, const char *body, scim_resp *out,
                  const char *new_id) {
  call c;
  memset(&c, 0, sizeof c);
  c.rq.users_max = g_users_max;
  c.rq.groups_max = g_groups_max;
  c.rq.tenant = "acme";
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/acme/scim/v2";
  c.rq.body = body ? json_loads(body, JSON_REJECT_DUPLICATES, NULL) : NULL;
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  if (new_id) snprintf(c.rq.new_id, sizeof c.rq.new_id, "%s", new_id);
  int rc = st_write_sync(st, run_job, &c);
  json_decref(c.rq.body);
  *out = c.rs;
  return rc;
}

static char tmpdir[256];
static st_store *open_store(seen *s) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mcpgate-scim-XXXXXX");
  if (!mkdtemp(tmpdir)) return NULL;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/store", tmpdir);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64 << 20;
  o.log = gw_store_log;
  st_store *st = NULL;
  if (st_open(&st, &o) != 0) return NULL;
  for (int k = SCIM_EV_USER_CREATED; k < SCIM_EV__END; k++) st_hook_add(st, k, hook, s);
  return st;
}

static void close_store(st_store *st) {
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "  cleanup failed\n");
}

#define UID "11111111-2222-4333-8444-555555555555"

TEST(every_deactivation_form_reaches_the_hook_inside_the_txn) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_resp rs;
  CHECK_INT(do_req(st, "POST", "/Users", "{\"userName\":\"alice@acme.com\"}", &rs, UID), 0);
  CHECK_INT(rs.status, 201);
  scim_resp_clear(&rs);
  CHECK_INT(s.created, 1);
  /* 1: Okta's path-less PATCH */
  do_req(st, "PATCH", "/Users/" UID,
         "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
         &rs, NULL);
  CHECK_INT(rs.status, 200);
  scim_resp_clear(&rs);
  /* reactivate, then 2: PATCH with a path, capitalised op and Entra's string */
  do_req(st, "PATCH", "/Users/" UID,
         "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":true}}]}",
         &rs, NULL);
  scim_resp_clear(&rs);
  CHECK_INT(s.reactivated, 1);
  do_req(st, "PATCH", "/Users/" UID,
         "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"Replace\",\"path\":\"active\",\"value\":\"False\"}]}",
         &rs, NULL);
  CHECK_INT(rs.status, 200);
  scim_resp_clear(&rs);
  /* reactivate by PUT, then 3: PUT active:false */
  do_req(st, "PUT", "/Users/" UID, "{\"userName\":\"alice@acme.com\",\"active\":true}", &rs, NULL);
  scim_resp_clear(&rs);
  CHECK_INT(s.reactivated, 2);
  do_req(st, "PUT", "/Users/" UID, "{\"userName\":\"alice@acme.com\",\"active\":false}", &rs, NULL);
  CHECK_INT(rs.status, 200);
  scim_resp_clear(&rs);
  /* reactivate, then 4: DELETE */
  do_req(st, "PUT", "/Users/" UID, "{\"userName\":\"alice@acme.com\",\"active\":true}", &rs, NULL);
  scim_resp_clear(&rs);
  do_req(st, "DELETE", "/Users/" UID, NULL, &rs, NULL);
  CHECK_INT(rs.status, 204);
  scim_resp_clear(&rs);
  CHECK_INT(s.deactivated, 4);
  CHECK_INT(s.deleted, 1);
  CHECK_INT(s.inside_ok, 4);
  CHECK_STR(s.via[0], "patch");
  CHECK_STR(s.via[1], "patch");
  CHECK_STR(s.via[2], "put");
  CHECK_STR(s.via[3], "delete");
  close_store(st);
}

TEST(a_failing_hook_aborts_the_whole_write) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_resp rs;
  do_req(st, "POST", "/Users", "{\"userName\":\"bob@acme.com\"}", &rs, UID);
  CHECK_INT(rs.status, 201);
  scim_resp_clear(&rs);
  s.fail_next = 1; /* the USER_CHANGED hook fails */
  int rc = do_req(st, "PATCH", "/Users/" UID,
                  "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
                  &rs, NULL);
  CHECK(rc < 0);
  CHECK_INT(rs.status, 500);
  scim_resp_clear(&rs);
  /* nothing was written: still active */
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  scim_req rq = {0};
  rq.tenant = "acme";
  rq.method = "GET";
  rq.path = "/Users/" UID;
  rq.base_url = "http://gw/t/acme/scim/v2";
  scim_resp g = {0};
  scim_handle(txn, &rq, &g);
  st_txn_end(txn);
  CHECK_INT(g.status, 200);
  CHECK(json_is_true(json_object_get(g.body, "active")));
  scim_resp_clear(&g);
  CHECK_INT(s.deactivated, 0);
  close_store(st);
}

/* A hook that runs out of store (the map's real end: a deactivation's token
 * and session deletes cannot be written) is the store being full: 507 with
 * the SCIM error, like the record's own write — not a 500 naming the hook. */
TEST(a_hook_out_of_store_answers_507) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_resp rs;
  do_req(st, "POST", "/Users", "{\"userName\":\"bob@acme.com\"}", &rs, UID);
  CHECK_INT(rs.status, 201);
  scim_resp_clear(&rs);
  s.fail_next = 1;
  s.fail_rc = ST_EMAPFULL;
  int rc = do_req(st, "PATCH", "/Users/" UID,
                  "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
                  &rs, NULL);
  CHECK(rc < 0);
  CHECK_INT(rs.status, 507);
  CHECK(strstr(json_string_value(json_object_get(rs.body, "detail")), "store is full") != NULL);
  scim_resp_clear(&rs);
  CHECK_INT(s.deactivated, 0);
  close_store(st);
}

/* scim's codes sit in their own range, outside libuv's errno values and
 * the store's, and have names. */
static int check_problems;
static char check_last[400];
static void check_report(void *ctx, const char *area, const char *msg) {
  (void)ctx, (void)area;
  check_problems++;
  snprintf(check_last, sizeof check_last, "%s", msg);
}

typedef struct raw_put {
  st_db db;
  const char *k, *v;
  size_t kl, vl;
  bool del;
} raw_put;

static int run_raw(st_txn *txn, void *arg) {
  raw_put *p = arg;
  return p->del ? st_del(txn, p->db, p->k, p->kl) : st_put(txn, p->db, p->k, p->kl, p->v, p->vl, 0);
}

#define GID "22222222-3333-4444-8555-666666666666"

/* store check: every index entry names a record whose attribute it
 * indexes, counts equal the records, memberships name what exists */
TEST(store_check_sees_indexes_out_of_step_with_records) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_register_checks(st);
  scim_resp rs;
  CHECK_INT(do_req(st, "POST", "/Users", "{\"userName\":\"alice@acme.com\",\"externalId\":\"00u1\"}", &rs, UID), 0);
  scim_resp_clear(&rs);
  CHECK_INT(do_req(st, "POST", "/Groups", "{\"displayName\":\"Eng\",\"members\":[{\"value\":\"" UID "\"}]}", &rs, GID), 0);
  scim_resp_clear(&rs);
  check_problems = 0;
  CHECK_INT(st_check(st, check_report, NULL), 0);
  CHECK_INT(check_problems, 0);
  /* a stale userName entry (a write that updated the record, not the index) */
  st_dir_key k;
  st_dir_key_username(&k, "acme", "mallory@acme.com");
  raw_put p = {ST_DB_SCIM_IDX, k.b, UID, k.n, 36, false};
  CHECK_INT(st_write_sync(st, run_raw, &p), 0);
  check_problems = 0;
  CHECK(st_check(st, check_report, NULL) > 0);
  CHECK(strstr(check_last, "userName index entry does not match") != NULL);
  p.del = true;
  CHECK_INT(st_write_sync(st, run_raw, &p), 0);
  /* a displayName entry of a group that does not exist */
  st_dir_key_group_name(&k, "acme", "ghosts", "33333333-3333-4444-8555-666666666666");
  raw_put g = {ST_DB_SCIM_IDX, k.b, "", k.n, 0, false};
  CHECK_INT(st_write_sync(st, run_raw, &g), 0);
  check_problems = 0;
  CHECK(st_check(st, check_report, NULL) > 0);
  CHECK(strstr(check_last, "names no group") != NULL);
  g.del = true;
  CHECK_INT(st_write_sync(st, run_raw, &g), 0);
  /* a count that disagrees with the records */
  st_dir_key_count(&k, "acme", 'U');
  static const char five[8] = {5, 0, 0, 0, 0, 0, 0, 0};
  raw_put n = {ST_DB_SCIM_IDX, k.b, five, k.n, 8, false};
  CHECK_INT(st_write_sync(st, run_raw, &n), 0);
  check_problems = 0;
  CHECK(st_check(st, check_report, NULL) > 0);
  CHECK(strstr(check_last, "user count says 5, 1 records exist") != NULL);
  static const char one[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  n.v = one;
  CHECK_INT(st_write_sync(st, run_raw, &n), 0);
  /* a membership of a user that does not exist (both directions written) */
  st_dir_key_member(&k, "acme", GID, "44444444-3333-4444-8555-666666666666");
  raw_put m = {ST_DB_SCIM_MEM, k.b, "", k.n, 0, false};
  CHECK_INT(st_write_sync(st, run_raw, &m), 0);
  st_dir_key u;
  st_dir_key_user_group(&u, "acme", "44444444-3333-4444-8555-666666666666", GID);
  raw_put m2 = {ST_DB_SCIM_MEM, u.b, "", u.n, 0, false};
  CHECK_INT(st_write_sync(st, run_raw, &m2), 0);
  check_problems = 0;
  CHECK(st_check(st, check_report, NULL) > 0);
  CHECK(strstr(check_last, "names one that does not exist") != NULL);
  m.del = m2.del = true;
  CHECK_INT(st_write_sync(st, run_raw, &m), 0);
  CHECK_INT(st_write_sync(st, run_raw, &m2), 0);
  check_problems = 0;
  CHECK_INT(st_check(st, check_report, NULL), 0);
  CHECK_INT(check_problems, 0);
  close_store(st);
}

/* A full push of a large group (Okta's replace of members, a Group PUT)
 * costs about what creating the group did: linear in the members. Found
 * by review: replace compared every current member with every new one,
 * and the net changes were arrays scanned per member, so a PUT of 30,000
 * members held the writer — which every tenant's deactivations wait for —
 * for seconds (minutes at 100,000). */
#define BIG_N 30000
typedef struct big {
  int step;
  int status;
  double cpu; /* the job's CPU seconds on the writer thread */
} big;

static void big_id(int i, char out[SCIM_ID_LEN + 1]) { snprintf(out, SCIM_ID_LEN + 1, "%08x-2222-4333-8444-555555555555", i); }
#define BIG_GID "99999999-2222-4333-8444-555555555555"

static json_t *big_members(int from, int n) {
  json_t *a = json_array();
  char id[SCIM_ID_LEN + 1];
  for (int i = from; i < from + n; i++) {
    big_id(i, id);
    json_array_append_new(a, json_pack("{s:s}", "value", id));
  }
  return a;
}

static int big_call(st_txn *txn, const char *method, const char *path, json_t *body, const char *new_id) {
  scim_req rq;
  scim_resp rs = {0};
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = method;
  rq.path = path;
  rq.body = body;
  rq.base_url = "http://gw/t/acme/scim/v2";
  snprintf(rq.now, sizeof rq.now, "2026-11-22T00:00:00Z");
  if (new_id) snprintf(rq.new_id, sizeof rq.new_id, "%s", new_id);
  scim_handle(txn, &rq, &rs);
  int status = rs.status;
  scim_resp_clear(&rs);
  json_decref(body);
  return status;
}

static int big_steps(st_txn *txn, big *b);

/* The writer thread's own CPU time, not the wall clock: a loaded machine
 * (a sanitizer run beside other tests) stretches the wall clock of one
 * step more than another's, and the checks below compare steps. */
static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int big_job(st_txn *txn, void *arg) {
  big *b = arg;
  double t0 = thread_cpu_s();
  int rc = big_steps(txn, b);
  b->cpu = thread_cpu_s() - t0;
  return rc;
}

static int big_steps(st_txn *txn, big *b) {
  char id[SCIM_ID_LEN + 1], un[32];
  switch (b->step) {
  case 0: /* 2 × BIG_N users */
    for (int i = 0; i < 2 * BIG_N; i++) {
      big_id(i, id);
      snprintf(un, sizeof un, "u%d@big.test", i);
      if ((b->status = big_call(txn, "POST", "/Users", json_pack("{s:s}", "userName", un), id)) != 201) return -1;
    }
    return 0;
  case 1: /* the group with the first BIG_N */
    b->status = big_call(txn, "POST", "/Groups", json_pack("{s:s,s:o}", "displayName", "all", "members", big_members(0, BIG_N)),
                         BIG_GID);
    return b->status == 201 ? 0 : -1;
  case 2: /* PUT: the same members */
    b->status = big_call(txn, "PUT", "/Groups/" BIG_GID,
                         json_pack("{s:s,s:o}", "displayName", "all", "members", big_members(0, BIG_N)), NULL);
    return b->status == 200 ? 0 : -1;
  case 3: /* PATCH: every member out, every member back, then the other half swapped in */
    b->status = big_call(txn, "PATCH", "/Groups/" BIG_GID,
                         json_pack("{s:[s],s:[{s:s,s:s},{s:s,s:s,s:o},{s:s,s:s,s:o}]}", "schemas", SCIM_URN_PATCH,
                                   "Operations", "op", "remove", "path", "members", "op", "add", "path", "members",
                                   "value", big_members(0, BIG_N), "op", "replace", "path", "members", "value",
                                   big_members(BIG_N, BIG_N)),
                         NULL);
    return b->status == 200 ? 0 : -1;
  case 4: { /* PATCH: 200 filtered removals that match nobody, each a walk of the members */
    json_t *ops = json_array();
    for (int i = 0; i < 200; i++)
      json_array_append_new(ops, json_pack("{s:s,s:s}", "op", "remove", "path", "members[value sw \"zzz\"]"));
    b->status = big_call(txn, "PATCH", "/Groups/" BIG_GID,
                         json_pack("{s:[s],s:o}", "schemas", SCIM_URN_PATCH, "Operations", ops), NULL);
    return b->status == 200 ? 0 : -1;
  }
  }
  return -1;
}

static double big_run(st_store *st, big *b, int step) {
  b->step = step;
  st_write_sync(st, big_job, b);
  return b->cpu;
}

TEST(a_full_push_of_a_large_group_is_linear) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mcpgate-scim-XXXXXX");
  CHECK(mkdtemp(tmpdir) != NULL);
  char dir[300];
  snprintf(dir, sizeof dir, "%s/store", tmpdir);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 1024 << 20;
  o.log = gw_store_log;
  st_store *st = NULL;
  CHECK_INT(st_open(&st, &o), 0);
  big b = {0};
  big_run(st, &b, 0);
  CHECK_INT(b.status, 201);
  double create = big_run(st, &b, 1);
  CHECK_INT(b.status, 201);
  double put = big_run(st, &b, 2);
  CHECK_INT(b.status, 200);
  double patch = big_run(st, &b, 3);
  CHECK_INT(b.status, 200);
  fprintf(stderr, "  %d members: create %.2fs, PUT %.2fs, PATCH %.2fs (writer CPU)\n", BIG_N, create, put, patch);
  /* linear: a small multiple of the create (quadratic was ~25× and ~60×) */
  CHECK(put < 4 * create + 0.5);
  CHECK(patch < 8 * create + 0.5);
  /* many walks of a big group in one request: refused, not minutes of
   * the writer (found by review: 200 walks of 30,000 members took ~3 s,
   * 10,000 of them would take minutes) */
  double walks = big_run(st, &b, 4);
  fprintf(stderr, "  200 filtered removals: %.2fs, %d\n", walks, b.status);
  CHECK_INT(b.status, 400);
  /* ASan makes the walks' memory traffic dearer than the create's: 1.4x
   * plain, 3-5x under ASan on a loaded 2-core machine (it failed once at
   * 4.7x); the defect was ~10x plain */
#if defined(__SANITIZE_ADDRESS__)
  CHECK(walks < 8 * create + 0.5);
#else
  CHECK(walks < 4 * create + 0.5);
#endif
  close_store(st);
}

/* scim_read_is_cheap says which reads the loop answers itself; every
 * other read (a scan of the tenant's directory) goes to the pool under
 * the heavy-read limits. Found by review: a value path with a non-string
 * value (members[value eq 5]) was called cheap, while no index answers it:
 * the whole directory was scanned on the loop, every tenant's requests
 * waiting behind it, past the limits on scans. */
static bool cheap(const char *query) {
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = "GET";
  rq.path = "/Groups";
  rq.query = query;
  return scim_read_is_cheap(&rq);
}

TEST(only_reads_an_index_answers_are_cheap) {
  CHECK(cheap("filter=members%5Bvalue%20eq%20%2211111111-2222-4333-8444-555555555555%22%5D"));
  CHECK(cheap("filter=members.value%20eq%20%2211111111-2222-4333-8444-555555555555%22"));
  CHECK(cheap("filter=displayName%20eq%20%22x%22"));
  CHECK(!cheap("filter=displayName%20co%20%22x%22"));
  CHECK(!cheap("filter=members.value%20eq%205"));
  CHECK(!cheap("filter=members%5Bvalue%20eq%205%5D"));
  CHECK(!cheap("filter=members%5Bvalue%20eq%20true%5D"));
  CHECK(!cheap("filter=members%5Bvalue%20eq%20null%5D"));
  /* an unfiltered page deeper than the loop's budget can skip to
   * (SCIM_LOOP_BUDGET x SCIM_LOOP_SKIPS_PER_ENTRY = 250,000) goes to the
   * pool; an indexed filter spends per candidate, not per position */
  CHECK(cheap("startIndex=250001&count=100"));
  CHECK(!cheap("startIndex=250002&count=100"));
  CHECK(!cheap("count=2&startIndex=1000000"));
  CHECK(cheap("startIndex=abc")); /* a 400, cheaply */
  CHECK(cheap("startIndex=-5"));
  CHECK(cheap("filter=displayName%20eq%20%22x%22&startIndex=1000000"));
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.method = "POST";
  rq.path = "/Users/.search";
  rq.body = json_pack("{s:I}", "StartIndex", (json_int_t)1000000);
  CHECK(!scim_read_is_cheap(&rq));
  rq.path = "/.search";
  CHECK(!scim_read_is_cheap(&rq));
  json_object_set_new(rq.body, "StartIndex", json_integer(2));
  CHECK(scim_read_is_cheap(&rq));
  json_decref(rq.body);
}

/* A read on the loop has SCIM_LOOP_BUDGET (scim.h): a group's GET spends
 * one per member it renders, a list one per resource it examines, and a
 * read that would pass the budget says so (over) instead of answering —
 * its caller runs it again on the pool. Exactly at the budget it answers. */
static int budget_read(st_store *st, const char *path, const char *query, size_t left, bool *over, json_t **body) {
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return -1;
  scim_budget b = {left, false};
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = "GET";
  rq.path = path;
  rq.query = query;
  rq.base_url = "http://gw/t/acme/scim/v2";
  rq.budget = &b;
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  st_txn_end(txn);
  *over = b.over;
  *body = json_incref(rs.body);
  int status = rs.status;
  scim_resp_clear(&rs);
  return status;
}

/* Gives a user an externalId past SCIM's rules: a store written before
 * externalIds were kept unique among a tenant's users may hold two. */
typedef struct legacy {
  const char *id, *ext;
} legacy;
static int legacy_fn(st_txn *txn, void *arg) {
  legacy *l = arg;
  return st__test_dir_user_set_external(txn, "acme", l->id, l->ext);
}
static int legacy_ext(st_store *st, const char *id, const char *ext) {
  legacy l = {id, ext};
  return st_write_sync(st, legacy_fn, &l);
}

TEST(a_read_on_the_loop_stops_at_its_budget) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_resp r;
  char uid[3][SCIM_ID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    char body[200], id[SCIM_ID_LEN + 1];
    snprintf(id, sizeof id, "1111111%c-2222-4333-8444-555555555555", (char)('0' + i));
    snprintf(uid[i], sizeof uid[i], "%s", id);
    snprintf(body, sizeof body, "{\"userName\":\"u%d@b.test\",\"externalId\":\"same-%d\"}", i, i);
    CHECK_INT(do_req(st, "POST", "/Users", body, &r, id), 0);
    CHECK_INT(r.status, 201);
    scim_resp_clear(&r);
    CHECK_INT(legacy_ext(st, id, "same"), 0); /* one externalId, three users: a store from before the rule */
  }
  char gbody[400];
  snprintf(gbody, sizeof gbody, "{\"displayName\":\"G\",\"members\":[{\"value\":\"%s\"},{\"value\":\"%s\"},{\"value\":\"%s\"}]}",
           uid[0], uid[1], uid[2]);
  CHECK_INT(do_req(st, "POST", "/Groups", gbody, &r, "22222222-2222-4333-8444-555555555555"), 0);
  CHECK_INT(r.status, 201);
  scim_resp_clear(&r);
  bool over;
  json_t *b;
  /* the group's three members: two is past the budget, three is not */
  budget_read(st, "/Groups/22222222-2222-4333-8444-555555555555", NULL, 2, &over, &b);
  CHECK(over);
  json_decref(b);
  CHECK_INT(budget_read(st, "/Groups/22222222-2222-4333-8444-555555555555", NULL, 3, &over, &b), 200);
  CHECK(!over);
  CHECK_INT((int)json_array_size(json_object_get(b, "members")), 3);
  json_decref(b);
  /* excludedAttributes=members reads none of them */
  CHECK_INT(budget_read(st, "/Groups/22222222-2222-4333-8444-555555555555", "excludedAttributes=members", 0, &over, &b), 200);
  CHECK(!over);
  json_decref(b);
  /* an index that answers with many candidates (externalId is not unique):
   * each examined is spent, each match's one group too */
  budget_read(st, "/Users", "filter=externalId%20eq%20%22same%22", 5, &over, &b);
  CHECK(over);
  json_decref(b);
  CHECK_INT(budget_read(st, "/Users", "filter=externalId%20eq%20%22same%22&excludedAttributes=groups", 3, &over, &b), 200);
  CHECK(!over);
  CHECK_INT((int)json_integer_value(json_object_get(b, "totalResults")), 3);
  json_decref(b);
  /* an unfiltered page: one per resource and its relations */
  budget_read(st, "/Groups", NULL, 3, &over, &b);
  CHECK(over);
  json_decref(b);
  CHECK_INT(budget_read(st, "/Groups", NULL, 4, &over, &b), 200);
  CHECK(!over);
  json_decref(b);
  close_store(st);
}

/* Found by review: an unfiltered page skipped the resources before its
 * startIndex without spending the loop's budget — at a million users
 * ~0.1 s on the loop every tenant shares, per page. The skip is spent
 * now (one entry per SCIM_LOOP_SKIPS_PER_ENTRY), and the page is exactly
 * the one an unbounded read answers (RFC 7644 §3.4.2.4). */
TEST(a_deep_page_spends_its_skip) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_resp r;
  for (int i = 0; i < 250; i++) {
    char body[100], id[SCIM_ID_LEN + 1];
    snprintf(id, sizeof id, "%08x-2222-4333-8444-555555555555", 0x30000000u + (unsigned)i * 7919u % 250u);
    snprintf(body, sizeof body, "{\"userName\":\"deep%d@b.test\"}", i);
    CHECK_INT(do_req(st, "POST", "/Users", body, &r, id), 0);
    CHECK_INT(r.status, 201);
    scim_resp_clear(&r);
  }
  bool over;
  json_t *all, *b;
  /* unbounded (as on the pool): the reference order */
  st_txn *txn;
  CHECK_INT(st_read_begin(st, &txn), 0);
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = "GET";
  rq.path = "/Users";
  rq.query = "count=250&excludedAttributes=groups";
  rq.base_url = "http://gw/t/acme/scim/v2";
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  st_txn_end(txn);
  all = json_incref(json_object_get(rs.body, "Resources"));
  scim_resp_clear(&rs);
  CHECK_INT((int)json_array_size(all), 250);
  /* 200 skipped cost 2, the one rendered 1: 2 is past the budget, 3 is not */
  budget_read(st, "/Users", "startIndex=201&count=1&excludedAttributes=groups", 2, &over, &b);
  CHECK(over);
  json_decref(b);
  CHECK_INT(budget_read(st, "/Users", "startIndex=201&count=1&excludedAttributes=groups", 3, &over, &b), 200);
  CHECK(!over);
  CHECK_INT((int)json_integer_value(json_object_get(b, "totalResults")), 250);
  CHECK_INT((int)json_integer_value(json_object_get(b, "startIndex")), 201);
  CHECK_INT((int)json_integer_value(json_object_get(b, "itemsPerPage")), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(b, "Resources"), 0), "id")),
            json_string_value(json_object_get(json_array_get(all, 200), "id")));
  json_decref(b);
  /* the last page, and one past the end: empty, the total still told */
  CHECK_INT(budget_read(st, "/Users", "startIndex=250&count=100&excludedAttributes=groups", 10, &over, &b), 200);
  CHECK(!over);
  CHECK_INT((int)json_array_size(json_object_get(b, "Resources")), 1);
  CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(b, "Resources"), 0), "id")),
            json_string_value(json_object_get(json_array_get(all, 249), "id")));
  json_decref(b);
  CHECK_INT(budget_read(st, "/Users", "startIndex=251&count=100&excludedAttributes=groups", 10, &over, &b), 200);
  CHECK_INT((int)json_array_size(json_object_get(b, "Resources")), 0);
  CHECK_INT((int)json_integer_value(json_object_get(b, "totalResults")), 250);
  json_decref(b);
  json_decref(all);
  close_store(st);
}

/* externalId is the IdP's id of the person (Okta's user id, the `sub` a
 * sign-in links by, failing closed when two users match): found by review,
 * a tenant's SCIM token could create, PUT or PATCH a second user with an
 * externalId another user has, and that person's sign-in stopped (or,
 * with the first user deleted later, landed on the second). Now 409
 * uniqueness, case-exact, in the write's transaction; a store that holds
 * duplicates from before keeps serving them. */
#define U1 "aaaaaaa1-2222-4333-8444-555555555555"
#define U2 "aaaaaaa2-2222-4333-8444-555555555555"
#define U3 "aaaaaaa3-2222-4333-8444-555555555555"
#define U4 "aaaaaaa4-2222-4333-8444-555555555555"
static int req_status(st_store *st, const char *method, const char *path, const char *body, const char *new_id,
                      const char **scim_type) {
  static char type[32];
  scim_resp r;
  memset(&r, 0, sizeof r);
  do_req(st, method, path, body, &r, new_id);
  int status = r.status;
  snprintf(type, sizeof type, "%s", json_string_value(json_object_get(r.body, "scimType")) ?: "");
  if (scim_type) *scim_type = type;
  scim_resp_clear(&r);
  return status;
}
/* A tenant's users and groups are capped (scim_users_per_tenant_max,
 * scim_groups_per_tenant_max): past the cap a create is 507 naming the
 * key, nothing written; a duplicate is still 409 uniqueness; updates and
 * deletes go on, and a delete makes room. */
static int req_detail(st_store *st, const char *method, const char *path, const char *body, const char *new_id,
                      const char *needle) {
  scim_resp r;
  memset(&r, 0, sizeof r);
  do_req(st, method, path, body, &r, new_id);
  const char *d = json_string_value(json_object_get(r.body, "detail"));
  int status = d && strstr(d, needle) ? r.status : -r.status;
  scim_resp_clear(&r);
  return status;
}
#define G1 "bbbbbbb1-2222-4333-8444-555555555555"
#define G2 "bbbbbbb2-2222-4333-8444-555555555555"
#define DEACT "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}"
TEST(creates_stop_at_the_tenants_cap) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  g_users_max = 2;
  g_groups_max = 1;
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u1@e.test\"}", U1, NULL), 201);
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u2@e.test\"}", U2, NULL), 201);
  CHECK_INT(req_detail(st, "POST", "/Users", "{\"userName\":\"u3@e.test\"}", U3, "scim_users_per_tenant_max"), 507);
  CHECK_INT(req_status(st, "GET", "/Users/" U3, NULL, NULL, NULL), 404);
  const char *type;
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"U1@e.test\"}", U3, &type), 409);
  CHECK_STR(type, "uniqueness");
  CHECK_INT(req_status(st, "PATCH", "/Users/" U1, DEACT, NULL, NULL), 200);
  CHECK_INT(req_status(st, "DELETE", "/Users/" U2, NULL, NULL, NULL), 204);
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u3@e.test\"}", U3, NULL), 201);
  CHECK_INT(req_status(st, "POST", "/Groups", "{\"displayName\":\"g1\"}", G1, NULL), 201);
  CHECK_INT(req_detail(st, "POST", "/Groups", "{\"displayName\":\"g2\"}", G2, "scim_groups_per_tenant_max"), 507);
  CHECK_INT(req_status(st, "GET", "/Groups/" G2, NULL, NULL, NULL), 404);
  CHECK_INT(req_status(st, "PATCH", "/Groups/" G1,
                       "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"add\",\"path\":\"members\","
                       "\"value\":[{\"value\":\"" U1 "\"}]}]}",
                       NULL, NULL) / 100, 2);
  g_users_max = g_groups_max = 0;
  close_store(st);
}
#define PATCH_EXT(v) "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"path\":\"externalId\",\"value\":\"" v "\"}]}"

TEST(external_id_is_unique_among_a_tenants_users) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  const char *type;
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u1@e.test\",\"externalId\":\"00u-1\"}", U1, NULL), 201);
  /* create */
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u2@e.test\",\"externalId\":\"00u-1\"}", U2, &type), 409);
  CHECK_STR(type, "uniqueness");
  /* case-exact: another value */
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u2@e.test\",\"externalId\":\"00U-1\"}", U2, NULL), 201);
  /* replace, patch by path, path-less patch, URN-qualified patch */
  CHECK_INT(req_status(st, "PUT", "/Users/" U2, "{\"userName\":\"u2@e.test\",\"externalId\":\"00u-1\"}", NULL, &type), 409);
  CHECK_STR(type, "uniqueness");
  CHECK_INT(req_status(st, "PATCH", "/Users/" U2, PATCH_EXT("00u-1"), NULL, &type), 409);
  CHECK_STR(type, "uniqueness");
  CHECK_INT(req_status(st, "PATCH", "/Users/" U2,
                       "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"externalId\":\"00u-1\"}}]}",
                       NULL, NULL), 409);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U2,
                       "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"add\",\"value\":{\"" SCIM_URN_USER
                       ":externalId\":\"00u-1\"}}]}",
                       NULL, NULL), 409);
  /* nothing was written: u2 keeps its own, and 00u-1 names u1 alone */
  st_txn *txn;
  char id[SCIM_ID_LEN + 1];
  CHECK_INT(st_read_begin(st, &txn), 0);
  CHECK_INT(st_dir_user_by_external(txn, "acme", "00U-1", id), 0);
  CHECK_STR(id, U2);
  CHECK_INT(st_dir_user_external_other(txn, "acme", "00u-1", U1, id), ST_ENOTFOUND);
  CHECK_INT(st_dir_user_external_other(txn, "acme", "00u-1", NULL, id), 0);
  CHECK_STR(id, U1);
  st_txn_end(txn);
  /* a user's own externalId is no conflict; once u1 lets it go, u2 may take it */
  CHECK_INT(req_status(st, "PUT", "/Users/" U1, "{\"userName\":\"u1@e.test\",\"externalId\":\"00u-1\",\"title\":\"x\"}", NULL, NULL), 200);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U1, PATCH_EXT("00u-9"), NULL, NULL), 200);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U2, PATCH_EXT("00u-1"), NULL, NULL), 200);
  /* a deleted user's externalId is free */
  CHECK_INT(req_status(st, "DELETE", "/Users/" U1, NULL, NULL, NULL), 204);
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u1@e.test\",\"externalId\":\"00u-9\"}", U1, NULL), 201);
  /* duplicates a store already holds keep working: each keeps its value
   * through writes (a deactivation, a PUT), a third is refused, and one
   * may leave the value */
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u3@e.test\",\"externalId\":\"dup\"}", U3, NULL), 201);
  CHECK_INT(req_status(st, "POST", "/Users", "{\"userName\":\"u4@e.test\",\"externalId\":\"dup-4\"}", U4, NULL), 201);
  CHECK_INT(legacy_ext(st, U4, "dup"), 0);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U3,
                       "{\"schemas\":[\"" SCIM_URN_PATCH "\"],\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
                       NULL, NULL), 200);
  CHECK_INT(req_status(st, "PUT", "/Users/" U4, "{\"userName\":\"u4@e.test\",\"externalId\":\"dup\",\"active\":false}", NULL, NULL), 200);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U2, PATCH_EXT("dup"), NULL, NULL), 409);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U4, PATCH_EXT("dup-4"), NULL, NULL), 200);
  CHECK_INT(req_status(st, "PATCH", "/Users/" U4, PATCH_EXT("dup"), NULL, NULL), 409);
  /* groups' externalIds are not users': no conflict */
  CHECK_INT(req_status(st, "POST", "/Groups", "{\"displayName\":\"G\",\"externalId\":\"00u-1\"}",
                       "bbbbbbb1-2222-4333-8444-555555555555", NULL), 201);
  close_store(st);
}

/* The gateway answers 404 and 405 from this, on the loop, before the
 * writer: it must agree with scim_handle's routing. */
TEST(allowed_methods_follow_the_routes) {
  CHECK_STR(scim_allowed_methods("/Users"), "GET, HEAD, POST");
  CHECK_STR(scim_allowed_methods("/Groups/" UID), "GET, HEAD, PUT, PATCH, DELETE");
  CHECK_STR(scim_allowed_methods("/Groups/.search"), "POST");
  CHECK_STR(scim_allowed_methods("/.search"), "POST");
  CHECK_STR(scim_allowed_methods("/Schemas/" SCIM_URN_USER), "GET, HEAD");
  CHECK_STR(scim_allowed_methods("/ServiceProviderConfig"), "GET, HEAD");
  CHECK(scim_allowed_methods("/Users/") == NULL);
  CHECK(scim_allowed_methods("/Users/a/b") == NULL);
  CHECK(scim_allowed_methods("/Usersx") == NULL);
  CHECK(scim_allowed_methods("/Bulk") == NULL);
  CHECK(scim_allowed_methods("/ServiceProviderConfig/x") == NULL);
  CHECK(scim_method_allowed("/Users", "POST"));
  CHECK(scim_method_allowed("/Users", "HEAD"));
  CHECK(!scim_method_allowed("/Users", "OPTIONS"));
  CHECK(!scim_method_allowed("/Users", "DELETE"));
  CHECK(!scim_method_allowed("/Users", "POS"));
  CHECK(scim_method_allowed("/Users/" UID, "DELETE"));
  CHECK(!scim_method_allowed("/Users/" UID, "POST"));
  CHECK(!scim_method_allowed("/nope", "GET"));
}

/* The weighing before the writer (scim_write_too_large) skips only what
 * the record never holds: the attribute itself, not a key that only
 * begins like it — "groups.x", or "urn:…:User:groups" (an extension to
 * normalize) are stored, so they are weighed (found by review: 201 with
 * 20,000 values). A PATCH value's URN-qualified members still are not. */
static bool too_large_with(const char *method, const char *path, const char *key, bool wrap) {
  json_t *many = json_array();
  for (int i = 0; i < 20000; i++) json_array_append_new(many, json_integer(1));
  json_t *v = wrap ? json_pack("{s:o}", "a", many) : many;
  json_t *attrs = json_pack("{s:o}", key, v);
  json_t *body = !strcmp(method, "PATCH")
                     ? json_pack("{s:[{s:s, s:o}]}", "Operations", "op", "add", "value", attrs)
                     : attrs;
  scim_req rq = {0};
  scim_resp rs = {0};
  rq.method = method;
  rq.path = path;
  rq.body = body;
  bool r = scim_write_too_large(&rq, &rs);
  scim_resp_clear(&rs);
  json_decref(body);
  return r;
}

TEST(a_body_is_weighed_as_it_is_stored) {
  /* not stored: skipped */
  CHECK(!too_large_with("POST", "/Users", "groups", false));
  CHECK(!too_large_with("PUT", "/Users/x", "Groups", false));
  CHECK(!too_large_with("POST", "/Groups", "members", false));
  CHECK(!too_large_with("PATCH", "/Groups/x", SCIM_URN_GROUP ":members", false));
  /* stored: weighed */
  CHECK(too_large_with("POST", "/Users", "groups.x", false));
  CHECK(too_large_with("POST", "/Users", "groups[type eq \"x\"]", false));
  CHECK(too_large_with("PUT", "/Users/x", SCIM_URN_USER ":groups", true));
  CHECK(too_large_with("POST", "/Groups", "members.x", false));
  CHECK(too_large_with("POST", "/Groups", SCIM_URN_GROUP ":members", true));
  CHECK(too_large_with("PATCH", "/Groups/x", "members.value", false));
}

TEST(error_codes_in_their_range) {
  CHECK(SCIM_EABORT <= SCIM_ERR_FIRST && SCIM_EABORT >= SCIM_ERR_LAST);
  CHECK(SCIM_ERANDOM <= SCIM_ERR_FIRST && SCIM_ERANDOM >= SCIM_ERR_LAST);
  CHECK(SCIM_ERR_LAST > ST_ERR_FIRST || SCIM_ERR_FIRST < ST_ERR_LAST);
  CHECK(SCIM_ERR_FIRST < -4095);
  CHECK_STR(scim_strerror(SCIM_ERANDOM), "random number generator failed");
  CHECK_STR(scim_strerror(ST_EMAPFULL), st_strerror(ST_EMAPFULL));
  CHECK_STR(scim_strerror(0), "ok");
}

/* ---------- list checkpoints (scim.h, scim_pages) ----------
 * Okta imports a tenant by paging GET /Users?startIndex=N&count=100 from 1
 * to totalResults. Without checkpoints each page walked every resource
 * before its startIndex (O(n²/100) for the import); with them a page
 * begins where the last one ended — the same page, exactly, as a walk from
 * the first resource of the same snapshot. */

/* Creates the users named by ids (JSON strings) in tenant, in one job; with
 * uid, creates the tenant record (that incarnation) first. */
typedef struct bulk {
  const char *tenant, *uid;
  json_t *ids;
} bulk;
static int bulk_fn(st_txn *txn, void *arg) {
  bulk *b = arg;
  int rc;
  if (b->uid && (rc = st_tenant_create(txn, b->tenant, b->tenant, "2026-11-22T00:00:00Z", b->uid)) != 0) return rc;
  size_t i;
  json_t *id;
  json_array_foreach(b->ids, i, id) {
    char name[120], base[100];
    snprintf(name, sizeof name, "u-%s@%s.test", json_string_value(id), b->tenant);
    snprintf(base, sizeof base, "http://gw/t/%s/scim/v2", b->tenant);
    scim_req rq;
    memset(&rq, 0, sizeof rq);
    rq.tenant = b->tenant;
    rq.method = "POST";
    rq.path = "/Users";
    rq.base_url = base;
    rq.body = json_pack("{s:s}", "userName", name);
    snprintf(rq.now, sizeof rq.now, "2026-11-22T00:00:00Z");
    snprintf(rq.new_id, sizeof rq.new_id, "%s", json_string_value(id));
    scim_resp rs = {0};
    rc = scim_handle(txn, &rq, &rs);
    int status = rs.status;
    scim_resp_clear(&rs);
    json_decref(rq.body);
    if (rc < 0) return rc;
    if (status != 201) return -1;
  }
  return 0;
}
static int bulk_create(st_store *st, const char *tenant, const char *uid, json_t *ids) {
  bulk b = {tenant, uid, ids};
  return st_write_sync(st, bulk_fn, &b);
}
/* n ids in no particular order (a bijection of i), from salt. */
static json_t *some_ids(int from, int n, unsigned salt) {
  json_t *a = json_array();
  for (int i = from; i < from + n; i++) {
    char id[SCIM_ID_LEN + 1];
    snprintf(id, sizeof id, "%08x-2222-4333-8444-555555555555", ((unsigned)i * 2654435761u) ^ salt);
    json_array_append_new(a, json_string(id));
  }
  return a;
}
/* One GET /Users page of tenant (ids in order, a new array), with the
 * checkpoints pages (NULL: none). */
static json_t *page_of(st_store *st, scim_pages *pages, const char *tenant, size_t start, size_t count, size_t *total) {
  char q[100], base[100];
  snprintf(q, sizeof q, "startIndex=%zu&count=%zu&excludedAttributes=groups", start, count);
  snprintf(base, sizeof base, "http://gw/t/%s/scim/v2", tenant);
  st_txn *txn;
  if (st_read_begin(st, &txn) != 0) return NULL;
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = tenant;
  rq.method = "GET";
  rq.path = "/Users";
  rq.query = q;
  rq.base_url = base;
  rq.max_count = 100000;
  rq.pages = pages;
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  st_txn_end(txn);
  json_t *ids = NULL;
  if (rs.status == 200) {
    ids = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rs.body, "Resources"), i, r) json_array_append(ids, json_object_get(r, "id"));
    *total = (size_t)json_integer_value(json_object_get(rs.body, "totalResults"));
  }
  scim_resp_clear(&rs);
  return ids;
}
/* Every id of tenant, walked from the first without checkpoints. */
static json_t *full_walk(st_store *st, const char *tenant) {
  size_t total;
  return page_of(st, NULL, tenant, 1, 100000, &total);
}
/* page is all[start-1 .. start-1+count) (as much of it as exists). */
static bool is_slice(const json_t *page, const json_t *all, size_t start, size_t count) {
  size_t n = json_array_size(all);
  size_t want = start > n ? 0 : n - (start - 1) < count ? n - (start - 1) : count;
  if (!page || json_array_size(page) != want) return false;
  for (size_t i = 0; i < want; i++)
    if (!json_equal(json_array_get(page, i), json_array_get(all, start - 1 + i))) return false;
  return true;
}
/* Pages tenant by count from start up to (not including) end, checking
 * each against all; 0 or the failing page's startIndex. */
static size_t page_through(st_store *st, scim_pages *pages, const char *tenant, const json_t *all, size_t start,
                           size_t end, size_t count) {
  for (; start < end; start += count) {
    size_t total = 0;
    json_t *p = page_of(st, pages, tenant, start, count, &total);
    bool ok = is_slice(p, all, start, count) && total == json_array_size(all);
    json_decref(p);
    if (!ok) return start;
  }
  return 0;
}

TEST(paging_through_a_tenant_walks_each_resource_once) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_pages *pages = scim_pages_new();
  CHECK(pages != NULL);
  json_t *ids = some_ids(0, 2000, 0);
  CHECK_INT(bulk_create(st, "acme", "a1a1a1a1a1a1a1a1", ids), 0);
  json_decref(ids);
  json_t *all = full_walk(st, "acme");
  CHECK_INT((int)json_array_size(all), 2000);
  /* (a) Okta's import: every page is the full walk's slice */
  CHECK_INT(page_through(st, pages, "acme", all, 1, 2001, 100), 0);
  scim_pages_stats ps;
  scim_pages_stats_get(pages, &ps);
  /* (b) each page began where the last ended: ~2,000 steps (100 per page
   * and one to check the checkpoint's key), not the ~21,000 that walking
   * from the first resource takes (sum of 100k for k = 1..20) */
  if (ps.steps > 2000 + 2 * 20) fprintf(stderr, "  %llu cursor steps for 20 pages of 2,000\n", (unsigned long long)ps.steps);
  CHECK(ps.steps <= 2000 + 2 * 20);
  CHECK_INT((int)ps.hits, 19);
  CHECK_INT((int)ps.misses, 0);
  /* a page asked again (Okta retries), one past the end, odd boundaries:
   * still the full walk's */
  CHECK_INT(page_through(st, pages, "acme", all, 1801, 1802, 100), 0);
  CHECK_INT(page_through(st, pages, "acme", all, 2001, 2002, 100), 0);
  CHECK_INT(page_through(st, pages, "acme", all, 37, 2001, 7), 0);
  CHECK_INT(page_through(st, pages, "acme", all, 1, 2001, 1000), 0);
  scim_pages_stats_get(pages, &ps);
  CHECK_INT((int)ps.misses, 1); /* startIndex 37: no page had ended before it */
  json_decref(all);
  scim_pages_free(pages);
  close_store(st);
}

TEST(a_write_between_pages_is_seen_as_a_fresh_walk_sees_it) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_pages *pages = scim_pages_new();
  json_t *ids = some_ids(0, 2000, 0);
  CHECK_INT(bulk_create(st, "acme", "a1a1a1a1a1a1a1a1", ids), 0);
  json_decref(ids);
  json_t *all = full_walk(st, "acme");
  CHECK_INT(page_through(st, pages, "acme", all, 1, 501, 100), 0);
  scim_pages_stats ps, ps2;
  scim_pages_stats_get(pages, &ps);
  /* a user created before the next page's position: that page is the
   * new snapshot's (a checkpoint of the old one would repeat a user) */
  scim_resp r;
  CHECK_INT(do_req(st, "POST", "/Users", "{\"userName\":\"first@acme.test\"}", &r, "00000000-0000-4000-8000-000000000000"), 0);
  CHECK_INT(r.status, 201);
  scim_resp_clear(&r);
  json_t *all2 = full_walk(st, "acme");
  CHECK_INT((int)json_array_size(all2), 2001);
  CHECK_INT(page_through(st, pages, "acme", all2, 501, 502, 100), 0);
  scim_pages_stats_get(pages, &ps2);
  CHECK_INT((int)(ps2.hits - ps.hits), 0);
  CHECK_INT((int)(ps2.misses - ps.misses), 1);
  /* paging on under the new generation finds its checkpoints again */
  CHECK_INT(page_through(st, pages, "acme", all2, 601, 801, 100), 0);
  scim_pages_stats_get(pages, &ps);
  CHECK_INT((int)(ps.hits - ps2.hits), 2);
  /* a change that moves no position (a PUT) keeps them */
  char path[80], body[200];
  snprintf(path, sizeof path, "/Users/%s", json_string_value(json_array_get(all2, 4)));
  snprintf(body, sizeof body, "{\"userName\":\"renamed@acme.test\",\"displayName\":\"R\"}");
  CHECK_INT(do_req(st, "PUT", path, body, &r, NULL), 0);
  CHECK_INT(r.status, 200);
  scim_resp_clear(&r);
  CHECK_INT(page_through(st, pages, "acme", all2, 801, 901, 100), 0);
  scim_pages_stats_get(pages, &ps2);
  CHECK_INT((int)(ps2.hits - ps.hits), 1);
  /* a user deleted before the next page's position: no user is skipped
   * that a fresh walk would list */
  snprintf(path, sizeof path, "/Users/%s", json_string_value(json_array_get(all2, 9)));
  CHECK_INT(do_req(st, "DELETE", path, NULL, &r, NULL), 0);
  CHECK_INT(r.status, 204);
  scim_resp_clear(&r);
  json_t *all3 = full_walk(st, "acme");
  CHECK_INT((int)json_array_size(all3), 2000);
  CHECK_INT(page_through(st, pages, "acme", all3, 901, 1001, 100), 0);
  scim_pages_stats_get(pages, &ps);
  CHECK_INT((int)(ps.hits - ps2.hits), 0);
  CHECK_INT(page_through(st, pages, "acme", all3, 1001, 2001, 100), 0);
  json_decref(all);
  json_decref(all2);
  json_decref(all3);
  scim_pages_free(pages);
  close_store(st);
}

static int new_incarnation_fn(st_txn *txn, void *arg) {
  int rc;
  while ((rc = scim_purge_tenant(txn, "acme", 1000)) == 1000) {}
  if (rc < 0) return rc;
  if ((rc = st_tenant_uid_del(txn, "acme"))) return rc;
  return st_tenant_uid_put(txn, "acme", (const char *)arg);
}

TEST(checkpoints_never_cross_tenants_or_incarnations) {
  seen s;
  memset(&s, 0, sizeof s);
  st_store *st = open_store(&s);
  CHECK(st != NULL);
  scim_pages *pages = scim_pages_new();
  /* beta holds acme's ids but the first, and one more that sorts last:
   * every id of acme's sits one position earlier in beta — a checkpoint
   * of acme's used for beta would shift beta's page by one. beta even
   * shares acme's incarnation uid: the tenant id alone keeps them apart. */
  json_t *a = some_ids(0, 300, 0);
  CHECK_INT(bulk_create(st, "acme", "a1a1a1a1a1a1a1a1", a), 0);
  json_t *all_a = full_walk(st, "acme");
  json_t *b = json_copy(all_a);
  json_array_remove(b, 0);
  json_array_append_new(b, json_string("ffffffff-0000-4000-8000-000000000000"));
  CHECK_INT(bulk_create(st, "beta", "a1a1a1a1a1a1a1a1", b), 0);
  json_t *all_b = full_walk(st, "beta");
  CHECK_INT(page_through(st, pages, "acme", all_a, 1, 301, 100), 0);
  scim_pages_stats ps, ps2;
  scim_pages_stats_get(pages, &ps);
  CHECK_INT(page_through(st, pages, "beta", all_b, 201, 202, 100), 0);
  scim_pages_stats_get(pages, &ps2);
  CHECK_INT((int)(ps2.hits - ps.hits), 0);
  /* acme deleted and created again (a new incarnation) with beta's ids:
   * as many writes, so the same list generation — only the uid differs */
  char uid2[] = "b2b2b2b2b2b2b2b2";
  CHECK_INT(st_write_sync(st, new_incarnation_fn, uid2), 0);
  CHECK_INT(bulk_create(st, "acme", NULL, b), 0);
  json_t *all_a2 = full_walk(st, "acme");
  CHECK(json_equal(all_a2, all_b));
  scim_pages_stats_get(pages, &ps);
  CHECK_INT(page_through(st, pages, "acme", all_a2, 201, 202, 100), 0);
  scim_pages_stats_get(pages, &ps2);
  CHECK_INT((int)(ps2.hits - ps.hits), 0);
  /* whether a deep page may run on the loop (scim_read_is_cheap): only a
   * page just past a checkpoint of its own tenant and type is cheap */
  scim__pages_put(pages, "acme", "b2b2b2b2b2b2b2b2", 'U', 300, 400000, "00000001-2222-4333-8444-555555555555");
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = "GET";
  rq.path = "/Users";
  rq.query = "startIndex=400101&count=100";
  CHECK(!scim_read_is_cheap(&rq)); /* no checkpoints at all */
  rq.pages = pages;
  CHECK(scim_read_is_cheap(&rq));
  rq.tenant = "beta";
  CHECK(!scim_read_is_cheap(&rq));
  rq.tenant = "acme";
  rq.path = "/Groups";
  CHECK(!scim_read_is_cheap(&rq));
  rq.path = "/Users";
  rq.query = "startIndex=600000&count=100"; /* too far past it */
  CHECK(!scim_read_is_cheap(&rq));
  rq.query = "startIndex=300000&count=100"; /* before it */
  CHECK(!scim_read_is_cheap(&rq));
  json_decref(a);
  json_decref(b);
  json_decref(all_a);
  json_decref(all_b);
  json_decref(all_a2);
  scim_pages_free(pages);
  close_store(st);
}

int main(void) {
  gw_log_set_level(GW_LOG_WARN);
  RUN(filter_operators);
  RUN(filter_logic_and_precedence);
  RUN(filter_value_paths_and_urns);
  RUN(filter_errors_have_positions);
  RUN(a_filter_is_metered_by_the_bytes_it_compares);
  RUN(patch_paths);
  RUN(every_deactivation_form_reaches_the_hook_inside_the_txn);
  RUN(a_failing_hook_aborts_the_whole_write);
  RUN(a_hook_out_of_store_answers_507);
  RUN(store_check_sees_indexes_out_of_step_with_records);
  RUN(a_full_push_of_a_large_group_is_linear);
  RUN(only_reads_an_index_answers_are_cheap);
  RUN(a_read_on_the_loop_stops_at_its_budget);
  RUN(a_deep_page_spends_its_skip);
  RUN(paging_through_a_tenant_walks_each_resource_once);
  RUN(a_write_between_pages_is_seen_as_a_fresh_walk_sees_it);
  RUN(checkpoints_never_cross_tenants_or_incarnations);
  RUN(external_id_is_unique_among_a_tenants_users);
  RUN(creates_stop_at_the_tenants_cap);
  RUN(allowed_methods_follow_the_routes);
  RUN(a_body_is_weighed_as_it_is_stored);
  RUN(error_codes_in_their_range);
  return UNIT_DONE();
}
