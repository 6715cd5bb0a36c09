/* tests/bench/bench_policy.c — what a policy decision costs.
 *
 *   make bench   (or: make build/bench/bench_policy && build/bench/bench_policy)
 *
 * A real store on disk with a tenant of 50 groups (the user is in all 50)
 * and a 1,000-rule policy over them; then:
 *   - cached decision: pol_decide on the per-user compiled policy (what
 *     every tools/call pays once the cache is warm);
 *   - cold decision: pol_user_load (read txn, membership, compile) + decide
 *     (what the first request after a SCIM change pays);
 *   - tools/list filtering: a 500-tool result under a 200-rule policy,
 *     parse + filter + serialize (what a tools/list reply pays).
 * Baselines in the same run: a strcmp against one name (the floor of any
 * decision) and parse + serialize of the same 500-tool list without
 * filtering. Prints numbers; asserts nothing. Goals (issue): cached
 * decision < 1 µs, 500-tool filtering < 200 µs. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "policy/policy.h"
#include "scim/scim.h"
#include "store/store.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct call {
  scim_req rq;
  scim_resp rs;
} call;

static int run_scim(st_txn *txn, void *arg) {
  call *c = arg;
  int rc = scim_handle(txn, &c->rq, &c->rs);
  return rc < 0 ? rc : 0;
}

static void scim(st_store *st, const char *method, const char *path, json_t *body, char *id_out) {
  call c;
  memset(&c, 0, sizeof c);
  c.rq.tenant = "acme";
  c.rq.method = method;
  c.rq.path = path;
  c.rq.base_url = "http://gw/t/acme/scim/v2";
  c.rq.body = body;
  scim_new_id(c.rq.new_id);
  snprintf(c.rq.now, sizeof c.rq.now, "2026-11-22T00:00:00Z");
  st_write_sync(st, run_scim, &c);
  if (id_out) snprintf(id_out, 64, "%s", json_string_value(json_object_get(c.rs.body, "id")) ?: "");
  scim_resp_clear(&c.rs);
}

typedef struct put {
  json_t *doc;
  int version;
  json_t *warnings;
  char err[4096];
} put;

static int run_put(st_txn *txn, void *arg) {
  put *p = arg;
  json_decref(p->warnings);
  p->warnings = NULL;
  return pol_put(txn, "acme", p->doc, "2026-11-22T00:00:00Z", &p->version, &p->warnings, p->err, sizeof p->err);
}

static int run_bump(st_txn *txn, void *arg) {
  (void)arg;
  return pol_generation_bump(txn, "acme");
}

static json_t *make_policy(int nrules, int ngroups) {
  json_t *rules = json_array();
  for (int i = 0; i < nrules; i++) {
    char g[32], pat[64], blk[64];
    snprintf(g, sizeof g, "group-%d", i % ngroups);
    snprintf(pat, sizeof pat, "tool_%d_*", i);
    snprintf(blk, sizeof blk, "tool_%d_delete", i);
    json_array_append_new(rules, json_pack("{s:[s],s:s,s:[s,s],s:[s]}", "groups", g, "connector", "github", "allow",
                                           pat, "list_*", "block", blk));
  }
  return json_pack("{s:i,s:s,s:o}", "version", 1, "default", "block", "rules", rules);
}

int main(void) {
  gw_log_set_level(GW_LOG_ERROR);
  char dir[] = "/tmp/mcpgate-bench-pol-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char sdir[300];
  snprintf(sdir, sizeof sdir, "%s/store", dir);
  st_options o = {0};
  o.dir = sdir;
  o.map_size = (size_t)1 << 30;
  o.log = gw_store_log;
  st_store *st;
  if (st_open(&st, &o) != 0) return 1;
  pol_register_hooks(st);
  char uid[64];
  scim(st, "POST", "/Users", json_pack("{s:s}", "userName", "alice@acme.com"), uid);
  for (int g = 0; g < 50; g++) {
    char name[32];
    snprintf(name, sizeof name, "group-%d", g);
    scim(st, "POST", "/Groups", json_pack("{s:s,s:[{s:s}]}", "displayName", name, "members", "value", uid), NULL);
  }
  put p = {0};
  p.doc = make_policy(1000, 50);
  if (st_write_sync(st, run_put, &p) != 0) {
    fprintf(stderr, "policy: %s\n", p.err);
    return 1;
  }
  json_decref(p.doc);
  json_decref(p.warnings);

  /* cached decisions */
  st_txn *txn;
  pol_user *u;
  st_read_begin(st, &txn);
  pol_user_load(txn, "acme", uid, &u);
  st_txn_end(txn);
  const int N = 200000;
  static const char *tools[] = {"tool_999_read", "list_repos", "tool_5_delete", "merge_pull_request"};
  volatile int sink = 0;
  double t0 = now_s();
  for (int i = 0; i < N; i++) sink += pol_decide(u, "github", tools[i & 3]);
  double cached = (now_s() - t0) / N;
  t0 = now_s();
  for (int i = 0; i < N; i++) sink += strcmp(tools[i & 3], "list_repos") == 0;
  double floor_ = (now_s() - t0) / N;
  pol_user_free(u);

  /* cold: after a membership change the loop's cache rebuilds the user
   * from the (already parsed) policy and their groups; after a policy
   * change it also parses the new version once per loop */
  const int C = 300;
  pol_cache *cache = pol_cache_new(16);
  int err;
  double cold = 0, first_after_put = 0;
  for (int i = 0; i < C; i++) {
    st_write_sync(st, run_bump, NULL); /* what a SCIM membership change does */
    t0 = now_s();
    st_read_begin(st, &txn);
    const pol_user *cu = pol_cache_get(cache, txn, "acme", uid, &err);
    st_txn_end(txn);
    sink += pol_decide(cu, "github", tools[i & 3]);
    cold += now_s() - t0;
  }
  cold /= C;
  {
    p.doc = make_policy(1000, 50);
    p.warnings = NULL;
    st_write_sync(st, run_put, &p);
    json_decref(p.doc);
    json_decref(p.warnings);
    t0 = now_s();
    st_read_begin(st, &txn);
    const pol_user *cu = pol_cache_get(cache, txn, "acme", uid, &err);
    st_txn_end(txn);
    sink += pol_decide(cu, "github", tools[0]);
    first_after_put = now_s() - t0;
  }
  pol_cache_free(cache);

  /* tools/list filtering: 500 tools, 200-rule policy */
  p.doc = make_policy(200, 50);
  p.warnings = NULL;
  st_write_sync(st, run_put, &p);
  json_decref(p.doc);
  json_decref(p.warnings);
  st_read_begin(st, &txn);
  pol_user_load(txn, "acme", uid, &u);
  st_txn_end(txn);
  json_t *list = json_array();
  for (int i = 0; i < 500; i++) {
    char name[64];
    snprintf(name, sizeof name, i % 3 ? "tool_%d_read" : "tool_%d_delete", i);
    json_array_append_new(list, json_pack("{s:s,s:s,s:{s:s,s:{s:{s:s}}}}", "name", name, "description",
                                          "Does a thing with the repository and returns the result", "inputSchema",
                                          "type", "object", "properties", "arg", "type", "string"));
  }
  json_t *msg = json_pack("{s:s,s:i,s:{s:o}}", "jsonrpc", "2.0", "id", 7, "result", "tools", list);
  char *text = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  size_t tl = strlen(text);
  const int F = 300;
  size_t kept = 0;
  double filter_only = 0;
  t0 = now_s();
  for (int i = 0; i < F; i++) {
    json_t *m = json_loadb(text, tl, 0, NULL);
    double f0 = now_s();
    pol_filter_tools(u, "github", m);
    filter_only += now_s() - f0;
    kept = json_array_size(json_object_get(json_object_get(m, "result"), "tools"));
    char *out = json_dumps(m, JSON_COMPACT);
    free(out);
    json_decref(m);
  }
  double filt = (now_s() - t0) / F;
  filter_only /= F;
  t0 = now_s();
  for (int i = 0; i < F; i++) {
    json_t *m = json_loadb(text, tl, 0, NULL);
    char *out = json_dumps(m, JSON_COMPACT);
    free(out);
    json_decref(m);
  }
  double base = (now_s() - t0) / F;
  /* the same 500 decisions on a fresh (unmemoized) user: a cold list */
  double decisions500 = 0;
  for (int i = 0; i < 20; i++) {
    pol_user *fresh;
    st_read_begin(st, &txn);
    pol_user_load(txn, "acme", uid, &fresh);
    st_txn_end(txn);
    t0 = now_s();
    for (int k = 0; k < 500; k++) {
      char name[64];
      snprintf(name, sizeof name, k % 3 ? "tool_%d_read" : "tool_%d_delete", k);
      sink += pol_decide(fresh, "github", name);
    }
    decisions500 += now_s() - t0;
    pol_user_free(fresh);
  }
  decisions500 /= 20;
  double warm500 = 0;
  t0 = now_s();
  for (int i = 0; i < F; i++)
    for (int k = 0; k < 500; k++) {
      char name[64];
      snprintf(name, sizeof name, k % 3 ? "tool_%d_read" : "tool_%d_delete", k);
      sink += pol_decide(u, "github", name);
    }
  warm500 = (now_s() - t0) / F;
  pol_user_free(u);
  free(text);
  st_close(st);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");

  printf("policy bench (1,000 rules over 50 groups; user in all 50)\n");
  printf("  cached decision                          %9.1f ns  (floor: one strcmp %.1f ns)   goal < 1000 ns\n",
         cached * 1e9, floor_ * 1e9);
  printf("  cold decision after a membership change  %9.1f us  (user rebuilt from the cached policy)\n", cold * 1e6);
  printf("  first decision after a policy PUT        %9.1f us  (parses the new version once per loop)\n",
         first_after_put * 1e6);
  printf("tools/list of 500 tools under a 200-rule policy (kept %zu)\n", kept);
  printf("  500 decisions, warm user                 %9.1f us   goal < 200 us\n", warm500 * 1e6);
  printf("  500 decisions, cold user                 %9.1f us\n", decisions500 * 1e6);
  printf("  pol_filter_tools (decisions + removing 367 tools, their frees included) %.1f us\n", filter_only * 1e6);
  printf("  parse + filter + serialize               %9.1f us   baseline parse + serialize %.1f us (ratio %.2f)\n",
         filt * 1e6, base * 1e6, filt / base);
  return sink == 42 ? 1 : 0;
}
