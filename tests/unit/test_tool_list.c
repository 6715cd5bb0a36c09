/* tests/unit/test_tool_list.c — the tool list filtered by bytes
 * (gateway/mcp/tool_list.h) against pol_filter_tools on jansson's tree,
 * for a real user's policy in a real store: allowed tools kept byte for
 * byte, blocked and nameless ones left out with the commas right,
 * approval notes spliced into (or added as) descriptions, aggregated
 * names, and what the scan must leave to jansson (escapes in keys and
 * names, duplicate keys). Also held to it by tests/fuzz/fuzz_tools_filter.c. */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/tool_list.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/store.h"
#include "unit.h"

static char tmpdir[64] = "/tmp/mcpgate-toollist-XXXXXX";
static st_store *st;
static pol_user *alice;

static int scim(st_txn *txn, const char *path, json_t *body, char *out_id) {
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "acme";
  rq.method = "POST";
  rq.path = path;
  rq.body = body;
  rq.base_url = "https://gw.example.com/t/acme/scim/v2";
  scim_new_id(rq.new_id);
  snprintf(rq.now, sizeof rq.now, "2026-12-06T00:00:00Z");
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  int status = rs.status;
  if (out_id && rs.body) snprintf(out_id, 40, "%s", json_string_value(json_object_get(rs.body, "id")));
  scim_resp_clear(&rs);
  json_decref(body);
  return status == 201 ? 0 : -1;
}

static int setup_job(st_txn *txn, void *arg) {
  char *uid = arg;
  if (scim(txn, "/Users", json_pack("{s:s}", "userName", "alice@acme.com"), uid) ||
      scim(txn, "/Groups", json_pack("{s:s,s:[{s:s}]}", "displayName", "eng", "members", "value", uid), NULL))
    return -1;
  json_t *doc = json_loads("{\"version\":1,\"default\":\"block\",\"rules\":[{\"groups\":[\"eng\"],\"connector\":\"gh\","
                           "\"allow\":[\"*\"],\"block\":[\"delete_*\"],\"approve\":[\"merge_*\"]}]}",
                           0, NULL);
  int version;
  json_t *warnings = NULL;
  char err[512];
  int rc = pol_put(txn, "acme", doc, "2026-12-06T00:00:00Z", &version, &warnings, err, sizeof err);
  json_decref(doc);
  json_decref(warnings);
  return rc;
}

static int setup(void) {
  gw_log_set_level(GW_LOG_ERROR);
  if (!mkdtemp(tmpdir)) return -1;
  st_options o = {0};
  o.dir = tmpdir;
  o.map_size = 64 << 20;
  o.log = gw_store_log;
  char uid[40] = "";
  if (st_open(&st, &o) != 0 || st_write_sync(st, setup_job, uid) != 0) return -1;
  st_txn *txn;
  if (st_read_begin(st, &txn)) return -1;
  int rc = pol_user_load(txn, "acme", uid, &alice);
  st_txn_end(txn);
  return rc;
}

/* The byte filter's answer for text; *out (malloc'd) its bytes on 1. */
static int by_bytes(const char *text, char **out) {
  gw_buf b;
  gw_buf_init(&b, 1 << 20);
  int rc = gw__tool_list_filter_msg(alice, "gh", text, strlen(text), &b);
  *out = rc == 1 ? strdup(b.data) : NULL;
  gw_buf_free(&b);
  return rc;
}

/* text through both filters: the byte filter decides (want_rc) and
 * agrees with jansson's tree. */
static bool agrees(const char *text, int want_rc) {
  char *got = NULL;
  int rc = by_bytes(text, &got);
  json_t *tree = json_loads(text, 0, NULL);
  bool changed = tree && pol_filter_tools(alice, "gh", tree);
  bool ok = rc == want_rc;
  if (ok && rc == 1) {
    json_t *g = json_loads(got, 0, NULL);
    ok = g && json_equal(g, tree);
    json_decref(g);
  }
  if (ok && rc == 0) ok = !changed;
  if (!ok) fprintf(stderr, "  input %s\n  rc %d (want %d), bytes %s\n", text, rc, want_rc, got ? got : "(none)");
  free(got);
  json_decref(tree);
  return ok;
}

TEST(allowed_lists_are_relayed_as_they_are) {
  CHECK(agrees("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\",\"x\":[1,\"]\"]}]}}", 0));
  CHECK(agrees("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}", 0));
  CHECK(agrees("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 0));           /* no list */
  CHECK(agrees("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{}}}", 0)); /* not a list */
  CHECK(agrees("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}", 0));
}

TEST(blocked_and_nameless_tools_are_left_out) {
  /* first, middle, last, all; the commas stay right */
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_x\"},{\"name\":\"a\"},{\"name\":\"b\"}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"delete_x\"},{\"name\":\"b\"}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"delete_x\"}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_a\"},{\"name\":\"delete_b\"}]}}", 1));
  /* not objects, no name, a name that is not a string */
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[1,\"a\",null,[],{},{\"title\":\"t\"},{\"name\":7},{\"name\":\"ok\"}]}}", 1));
  /* whitespace and newlines of the upstream's text kept around the rest */
  CHECK(agrees("{ \"id\" : 1 ,\n \"result\" : { \"tools\" : [ { \"name\" : \"delete_x\" } ,\r\n\t{ \"name\" : \"keep\" , "
               "\"description\" : \"a \\\"quoted\\\" ] } , [ thing\" } ] , \"nextCursor\" : \"c\" } }",
               1));
}

TEST(approval_tools_get_the_note) {
  /* a string description (before or after the name), none, one that is not a string */
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"description\":\"Merges \\u00e9 \\\"x\\\"\"}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"description\":\"Merges\",\"name\":\"merge_pr\",\"inputSchema\":{}}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"inputSchema\":{\"type\":\"object\"}}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"description\":{\"a\":1}}]}}", 1));
  CHECK(agrees("{\"id\":1,\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"description\":null},{\"name\":\"a\"}]}}", 1));
  char *got = NULL;
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"description\":\"Merges\"}]}}", &got), 1);
  CHECK_STR(got, "{\"result\":{\"tools\":[{\"name\":\"merge_pr\",\"description\":\"[requires approval: your "
                 "organisation's policy must approve each call] Merges\"}]}}");
  free(got);
}

TEST(what_jansson_must_judge_is_left_to_it) {
  char *got = NULL;
  /* an escape in a name or in a key, a duplicate key at any level, a batch, invalid text */
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"name\":\"delete\\u005fx\"}]}}", &got), -1);
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"n\\u0061me\":\"delete_x\",\"name\":\"a\"}]}}", &got), -1);
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"name\":\"a\",\"name\":\"delete_x\"}]}}", &got), -1);
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"name\":\"a\"}],\"tools\":[{\"name\":\"delete_x\"}]}}", &got), -1);
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[]},\"result\":{\"tools\":[{\"name\":\"delete_x\"}]}}", &got), -1);
  CHECK_INT(by_bytes("[{\"result\":{\"tools\":[{\"name\":\"delete_x\"}]}}]", &got), -1);
  CHECK_INT(by_bytes("{\"result\":{\"tools\":[{\"name\":\"a\"}]}", &got), -1);
  CHECK(got == NULL);
  /* a name longer than the aggregated name's buffer takes */
  char big[700];
  memset(big, 'x', 300);
  big[300] = 0;
  char text[800];
  snprintf(text, sizeof text, "{\"result\":{\"tools\":[{\"name\":\"%s\"}]}}", big);
  CHECK_INT(by_bytes(text, &got), -1);
}

TEST(aggregated_names_and_no_policy) {
  const char *arr = "[{\"name\":\"a\",\"description\":\"d\"},{\"name\":\"delete_x\"},{\"description\":\"m\",\"name\":\"merge_y\"}]";
  gw_buf b;
  gw_buf_init(&b, 1 << 20);
  bool changed = false;
  CHECK_INT(gw__tool_list_filter(alice, "gh", true, arr, strlen(arr), &b, &changed), 1);
  CHECK(changed);
  CHECK_STR(b.data, "[{\"name\":\"gh__a\",\"description\":\"d\"},{\"description\":\"[requires approval: your "
                    "organisation's policy must approve each call] m\",\"name\":\"gh__merge_y\"}]");
  gw_buf_reset(&b);
  CHECK_INT(gw__tool_list_filter(NULL, "gh", false, arr, strlen(arr), &b, &changed), 1);
  CHECK_STR(b.data, "[]"); /* fails closed */
  /* undecided leaves what out held */
  gw_buf_reset(&b);
  gw_buf_appends(&b, "keep");
  const char *esc = "[{\"name\":\"a\\u0062\"}]";
  CHECK_INT(gw__tool_list_filter(alice, "gh", true, esc, strlen(esc), &b, &changed), -1);
  CHECK_STR(b.data, "keep");
  gw_buf_free(&b);
}

TEST(value_len_walks_what_the_scan_accepted) {
  const char *arr = "[ 1 , \"a]\\\"\" ,{\"k\":[1,{\"x\":\"}\"}]} ,-2.5e3,true,null,[] ]";
  const char *q = arr + 1, *end = arr + strlen(arr);
  const char *want[] = {"1", "\"a]\\\"\"", "{\"k\":[1,{\"x\":\"}\"}]}", "-2.5e3", "true", "null", "[]"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    while (*q == ' ' || *q == ',') q++;
    size_t n = gw_json_value_len(q, (size_t)(end - q));
    CHECK_INT(n, strlen(want[i]));
    CHECK(!memcmp(q, want[i], n));
    q += n;
  }
  while (*q == ' ') q++;
  CHECK(*q == ']');
}

TEST(realistic) {
  CHECK(agrees("{\"result\":{\"tools\":[{\"name\":\"echo\",\"title\":\"Echo Tool\",\"description\":\"Echoes back\",\"inputSchema\":{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\",\"description\":\"Message to echo\"}},\"required\":[\"message\"]},\"annotations\":{\"readOnlyHint\":true},\"execution\":{\"taskSupport\":\"forbidden\"}},{\"name\":\"delete_annotated\",\"title\":\"Get\",\"description\":\"Demo\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"messageType\":{\"type\":\"string\",\"enum\":[\"error\",\"success\"],\"description\":\"Type\"}},\"required\":[\"messageType\"]}}]},\"jsonrpc\":\"2.0\",\"id\":1}", 1));
}
TEST(next_member_walks_an_object_the_scan_accepted) {
  const char *o = "{ \"a\" : 1 , \"b\":{\"x\":\"}\"} ,\"c\":[1,\"]\"] } tail";
  size_t at = 0;
  gw_json_span k, v;
  const char *keys[] = {"\"a\"", "\"b\"", "\"c\""}, *vals[] = {"1", "{\"x\":\"}\"}", "[1,\"]\"]"};
  for (int i = 0; i < 3; i++) {
    CHECK(gw_json_next_member(o, strlen(o), &at, &k, &v));
    CHECK_INT(k.n, strlen(keys[i]));
    CHECK(!memcmp(k.p, keys[i], k.n));
    CHECK_INT(v.n, strlen(vals[i]));
    CHECK(!memcmp(v.p, vals[i], v.n));
  }
  CHECK(!gw_json_next_member(o, strlen(o), &at, &k, &v));
  CHECK_INT(at, strlen(o) - strlen(" tail")); /* just past the '}' */
  at = 0;
  CHECK(!gw_json_next_member("{ }", 3, &at, &k, &v));
  CHECK_INT(at, 3);
  CHECK_INT(gw_json_value_len("\"a]\" ,", 6), 4);
  CHECK_INT(gw_json_value_len("-1.5e3]", 7), 6);
}

int main(void) {
  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  RUN(allowed_lists_are_relayed_as_they_are);
  RUN(blocked_and_nameless_tools_are_left_out);
  RUN(approval_tools_get_the_note);
  RUN(what_jansson_must_judge_is_left_to_it);
  RUN(aggregated_names_and_no_policy);
  RUN(value_len_walks_what_the_scan_accepted);
  RUN(realistic);
  RUN(next_member_walks_an_object_the_scan_accepted);
  pol_user_free(alice);
  st_close(st);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return UNIT_DONE();
}
