/* tests/fuzz/fuzz_scim_resource.c — libFuzzer driver: SCIM resource
 * validation (POST and PUT bodies of /Users and /Groups, scim/) on a real
 * LMDB store in a temp directory, as anyone holding a SCIM token can send
 * them. Each input runs in one writer job that is rolled back, so the
 * store stays as set up (one user, one group). Properties:
 *   - never a 5xx: bad input is the client's error (4xx), never ours;
 *   - a resource that was created renders, and PUTting back exactly what
 *     was rendered is accepted (200) and renders the same again (meta
 *     aside): what the gateway says it stored is something it accepts.
 * Input: byte 0 picks Users or Groups; the rest is the JSON body. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "scim/scim.h"
#include "store/store.h"

static st_store *st;
static char uid[SCIM_ID_LEN + 1];

typedef struct run {
  const char *type; /* "Users" or "Groups" */
  json_t *body;
  int status, put_status;
  json_t *rendered, *again;
} run;

static int call(st_txn *txn, const char *method, const char *path, json_t *body, scim_resp *rs, const char *id) {
  scim_req rq;
  memset(&rq, 0, sizeof rq);
  rq.tenant = "fuzz";
  rq.method = method;
  rq.path = path;
  rq.body = body;
  rq.base_url = "https://gw.example.com/t/fuzz/scim/v2";
  rq.max_count = 100;
  snprintf(rq.new_id, sizeof rq.new_id, "%s", id ? id : "11111111-2222-4333-8444-555555555555");
  snprintf(rq.now, sizeof rq.now, "2026-12-04T00:00:00Z");
  return scim_handle(txn, &rq, rs);
}

static int job(st_txn *txn, void *arg) {
  run *r = arg;
  scim_resp rs = {0};
  char path[128];
  snprintf(path, sizeof path, "/%s", r->type);
  call(txn, "POST", path, r->body, &rs, NULL);
  r->status = rs.status;
  if (rs.status == 201 && rs.body) {
    r->rendered = json_deep_copy(rs.body);
    const char *id = json_string_value(json_object_get(rs.body, "id"));
    snprintf(path, sizeof path, "/%s/%s", r->type, id ? id : "");
    scim_resp_clear(&rs);
    json_t *put = json_deep_copy(r->rendered);
    json_object_del(put, "meta");
    call(txn, "PUT", path, put, &rs, NULL);
    json_decref(put);
    r->put_status = rs.status;
    if (rs.body) r->again = json_deep_copy(rs.body);
  }
  scim_resp_clear(&rs);
  return -1; /* roll back: every input sees the same store */
}

static int setup_job(st_txn *txn, void *arg) {
  (void)arg;
  scim_resp rs = {0};
  json_t *u = json_pack("{s:s}", "userName", "alice@example.com");
  call(txn, "POST", "/Users", u, &rs, "aaaaaaaa-2222-4333-8444-555555555555");
  json_decref(u);
  if (rs.status != 201) return -1;
  snprintf(uid, sizeof uid, "%s", json_string_value(json_object_get(rs.body, "id")));
  scim_resp_clear(&rs);
  json_t *g = json_pack("{s:s,s:[{s:s}]}", "displayName", "Engineering", "members", "value", uid);
  call(txn, "POST", "/Groups", g, &rs, "bbbbbbbb-2222-4333-8444-555555555555");
  json_decref(g);
  int ok = rs.status == 201;
  scim_resp_clear(&rs);
  return ok ? 0 : -1;
}

static char dir[64] = "/tmp/mcpgate-fuzz-scim-XXXXXX";

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void cleanup(void) {
  if (st) st_close(st);
  st = NULL;
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void strip_meta(json_t *j) {
  json_object_del(j, "meta");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!st) {
    gw_log_set_level(GW_LOG_ERROR);
    if (!mkdtemp(dir)) abort();
    atexit(cleanup);
    st_options o = {0};
    o.dir = dir;
    o.map_size = 256 << 20;
    o.log = gw_store_log;
    if (st_open(&st, &o) != 0 || st_write_sync(st, setup_job, NULL) != 0) abort();
  }
  if (size < 1 || size > 32768) return 0;
  run r = {data[0] & 1 ? "Groups" : "Users", NULL, 0, 0, NULL, NULL};
  r.body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
  if (!r.body) return 0; /* the HTTP layer answers 400 before scim/ sees it */
  st_write_sync(st, job, &r);
  if (r.status >= 500 || r.status == 0) {
    fprintf(stderr, "POST /%s answered %d\n", r.type, r.status);
    abort();
  }
  if (r.rendered) {
    if (r.put_status != 200) {
      char *s = json_dumps(r.rendered, JSON_COMPACT);
      fprintf(stderr, "PUT of what POST rendered answered %d: %s\n", r.put_status, s ? s : "");
      abort();
    }
    strip_meta(r.rendered);
    strip_meta(r.again);
    if (!json_equal(r.rendered, r.again)) {
      char *a = json_dumps(r.rendered, JSON_COMPACT | JSON_SORT_KEYS), *b = json_dumps(r.again, JSON_COMPACT | JSON_SORT_KEYS);
      fprintf(stderr, "PUT of the rendered resource renders another:\n%s\n%s\n", a ? a : "", b ? b : "");
      abort();
    }
  }
  json_decref(r.body);
  json_decref(r.rendered);
  json_decref(r.again);
  return 0;
}
