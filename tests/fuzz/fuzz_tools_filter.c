/* tests/fuzz/fuzz_tools_filter.c — libFuzzer driver: an upstream's
 * tools/list reply through the policy filter (policy/policy.c
 * pol_filter_tools), as the proxy applies it to whatever a connector's
 * server sends. The user's effective policy is real: a store in a temp
 * directory with a SCIM user in group "eng" and a policy for connector
 * "github" (allow *, block delete_*, approve merge_* and deploy*), loaded
 * with pol_user_load once. Properties:
 *   - what remains is only tools the user may call or ask approval for,
 *     named by strings; everything removed was blocked or nameless;
 *   - every approve tool that remains says so at the start of its
 *     description (the only place a client shows it before calling);
 *   - the result is valid JSON (it is relayed), and a user without a
 *     policy (NULL) sees no tool at all;
 *   - the filter by bytes (gateway/mcp/tool_list.c) agrees with it: when
 *     it decides (1 or 0), jansson accepts the input and the bytes it
 *     gives (or the input, for 0) decode to the tree pol_filter_tools
 *     left; with aggregated names, to that tree's tools renamed
 *     github__{name}. */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/mcp/tool_list.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/store.h"

#define PREFIX "[requires approval:"

static st_store *st;
static pol_user *alice;
static char dir[64] = "/tmp/mcpgate-fuzz-filter-XXXXXX";

static int scim(st_txn *txn, const char *path, json_t *body, const char *id, char *out_id) {
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "fuzz";
  rq.method = "POST";
  rq.path = path;
  rq.body = body;
  rq.base_url = "https://gw.example.com/t/fuzz/scim/v2";
  snprintf(rq.new_id, sizeof rq.new_id, "%s", id);
  snprintf(rq.now, sizeof rq.now, "2026-12-04T00:00:00Z");
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
  if (scim(txn, "/Users", json_pack("{s:s}", "userName", "alice@example.com"), "aaaaaaaa-2222-4333-8444-555555555555",
           uid) ||
      scim(txn, "/Groups", json_pack("{s:s,s:[{s:s}]}", "displayName", "eng", "members", "value", uid),
           "bbbbbbbb-2222-4333-8444-555555555555", NULL))
    return -1;
  json_t *doc = json_loads("{\"version\":1,\"default\":\"block\",\"rules\":[{\"groups\":[\"eng\"],\"connector\":\"github\","
                           "\"allow\":[\"*\"],\"block\":[\"delete_*\"],\"approve\":[\"merge_*\",\"deploy*\"]}]}",
                           0, NULL);
  int version;
  json_t *warnings = NULL;
  char err[512];
  int rc = pol_put(txn, "fuzz", doc, "2026-12-04T00:00:00Z", &version, &warnings, err, sizeof err);
  json_decref(doc);
  json_decref(warnings);
  return rc;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void cleanup(void) {
  pol_user_free(alice);
  if (st) st_close(st);
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void init(void) {
  gw_log_set_level(GW_LOG_ERROR);
  if (!mkdtemp(dir)) abort();
  atexit(cleanup);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 64 << 20;
  o.log = gw_store_log;
  char uid[40] = "";
  if (st_open(&st, &o) != 0 || st_write_sync(st, setup_job, uid) != 0) abort();
  st_txn *txn;
  if (st_read_begin(st, &txn) || pol_user_load(txn, "fuzz", uid, &alice) || !alice) abort();
  st_txn_end(txn);
}

/* the filter by bytes against the tree's (expected: msg after
 * pol_filter_tools; changed: what it returned) */
static void by_bytes(const char *data, size_t size, const json_t *msg, const json_t *expected, bool changed) {
  gw_buf out;
  gw_buf_init(&out, 64 << 20);
  int rc = gw__tool_list_filter_msg(alice, "github", data, size, &out);
  if (rc >= 0 && !msg) {
    fprintf(stderr, "the byte filter decided (%d) on a text jansson refuses\n", rc);
    abort();
  }
  if (rc == 0 && (changed || !json_equal(msg, (json_t *)expected))) {
    fprintf(stderr, "the byte filter kept as is a list the policy changes\n");
    abort();
  }
  if (rc == 1) {
    json_t *got = json_loadb(out.data, out.len, 0, NULL);
    if (!got || !json_equal(got, (json_t *)expected)) {
      fprintf(stderr, "the byte filter's list differs: %.*s\n", (int)out.len, out.data);
      abort();
    }
    json_decref(got);
  }
  /* the aggregated endpoint's: the tools array alone, renamed */
  static const char *const paths[] = {"result.tools"};
  gw_json_span tools;
  bool ch;
  gw_buf_reset(&out);
  if (gw_json_pick(data, size, paths, 1, &tools) == 1 && tools.p && tools.p[0] == '[' &&
      gw__tool_list_filter(alice, "github", true, tools.p, tools.n, &out, &ch) == 1) {
    json_t *want = json_deep_copy(json_object_get(json_object_get(expected, "result"), "tools"));
    size_t i;
    json_t *t;
    json_array_foreach(want, i, t) {
      char full[400];
      snprintf(full, sizeof full, "github__%s", json_string_value(json_object_get(t, "name")));
      json_object_set_new(t, "name", json_string(full));
    }
    json_t *got = json_loadb(out.data, out.len, 0, NULL);
    if (!got || !json_equal(got, want)) {
      fprintf(stderr, "the byte filter's aggregated list differs: %.*s\n", (int)out.len, out.data);
      abort();
    }
    json_decref(got);
    json_decref(want);
  }
  gw_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!st) init();
  json_t *msg = json_loadb((const char *)data, size, 0, NULL);
  {
    json_t *expected = msg ? json_deep_copy(msg) : NULL;
    bool changed = expected && pol_filter_tools(alice, "github", expected);
    by_bytes((const char *)data, size, msg, expected, changed);
    json_decref(expected);
  }
  if (!msg) return 0;
  json_t *before = json_deep_copy(json_object_get(json_object_get(msg, "result"), "tools"));
  size_t n0 = json_array_size(before);
  (void)pol_filter_tools(alice, "github", msg);
  json_t *tools = json_object_get(json_object_get(msg, "result"), "tools");
  size_t kept = 0, i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *name = json_string_value(json_object_get(t, "name"));
    pol_decision d = name ? pol_decide(alice, "github", name) : POL_BLOCK;
    if (!name || (d != POL_ALLOW && d != POL_APPROVE)) {
      fprintf(stderr, "a tool the user may not call was kept: %s\n", name ? name : "(no name)");
      abort();
    }
    const char *desc = json_string_value(json_object_get(t, "description"));
    if (d == POL_APPROVE && (!desc || strncmp(desc, PREFIX, strlen(PREFIX)))) {
      fprintf(stderr, "an approve tool kept without the approval note: %s\n", name);
      abort();
    }
    kept++;
  }
  /* nothing callable was dropped */
  size_t callable = 0;
  json_array_foreach(before, i, t) {
    const char *name = json_string_value(json_object_get(t, "name"));
    pol_decision d = name ? pol_decide(alice, "github", name) : POL_BLOCK;
    if (json_is_array(tools) && (d == POL_ALLOW || d == POL_APPROVE)) callable++;
  }
  if (json_is_array(tools) && kept != callable) {
    fprintf(stderr, "%zu of %zu tools callable, %zu kept\n", callable, n0, kept);
    abort();
  }
  char *out = json_dumps(msg, JSON_COMPACT);
  if (!out) abort();
  free(out);
  /* no policy: nothing at all */
  if (json_is_array(tools)) {
    pol_filter_tools(NULL, "github", msg);
    if (json_array_size(json_object_get(json_object_get(msg, "result"), "tools")) != 0) abort();
  }
  json_decref(before);
  json_decref(msg);
  return 0;
}
