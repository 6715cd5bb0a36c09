/* gateway/mcp/mcp_agg.c — /t/{tenant}/mcp: the one URL employees paste. The
 * gateway is itself the MCP server here and merges every connector the
 * user's policy shows them.
 *
 * - initialize is answered by the gateway (no upstream is contacted); the
 *   client's capabilities and clientInfo are kept in the session record
 *   and replayed when an upstream session is opened — lazily, per
 *   (client session, connector), the first time a connector is needed.
 * - tools/list walks the visible connectors in name order, one upstream
 *   page per client page; tools are named {connector}__{tool} and filtered
 *   by policy. Cursors are opaque (base64url of {"c":connector,"u":cursor});
 *   a bad cursor is -32602. A connector that fails is skipped with a
 *   warning: its tools disappear until it recovers.
 * - tools/call splits the name at the first "__", decides by policy, and
 *   forwards with the prefix stripped; the answer (JSON or SSE, progress
 *   included) is relayed. Server→client requests inside that stream get
 *   ids "mcpgate:{connector}:{original id as JSON}" so the client's answer
 *   routes back to the right upstream with the original id.
 * - GET multiplexes the upstreams' GET streams (of every upstream session
 *   of the client session, including ones opened later) into one stream,
 *   with server→client request ids rewritten as above; event ids encode
 *   every upstream's last event id, so Last-Event-ID resumes each one.
 *   list_changed from policy/membership changes is injected there too.
 *   DELETE ends the gateway session.
 * - Client notifications: notifications/cancelled goes to the upstream
 *   running that request; others (roots/list_changed, …) to every upstream
 *   session of the client session.
 * - Prompts are named {connector}__{prompt} like tools; resources keep
 *   their URIs and are routed by a per-session URI→connector map built from
 *   resource lists, templates (by literal prefix) and resource links in
 *   results (first connector in name order wins a collision, logged);
 *   completion refs route the same way. prompts/resources/completions/
 *   logging are advertised when a connector the user sees announced them
 *   (learned at the connector's PUT and at every upstream initialize).
 * - JSON-RPC batches (protocol 2025-03-26 only): each element runs as its
 *   own exchange; replies are collected into one array (streams inside a
 *   batch are collected, not relayed). */
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "gateway/base/log.h"
#include "gateway/mcp/mcp_int.h"
#include "store/token.h"
#include "vault/vault.h"

#define LATEST_VERSION "2025-11-25"
#define ID_PREFIX "mcpgate:"

/* ---------- small helpers ---------- */

static void now_rfc3339(char out[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *b64url(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (!out) return NULL;
  int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = 0;
  for (char *p = out; *p; p++) *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  return out;
}

static json_t *unb64url(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 4096) return NULL;
  char *in = malloc(n + 4);
  if (!in) return NULL;
  size_t i = 0;
  for (; i < n; i++) {
    char c = s[i];
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      free(in);
      return NULL;
    }
    in[i] = c;
  }
  while (i % 4) in[i++] = '=';
  in[i] = 0;
  unsigned char *out = malloc(i);
  int len = out ? EVP_DecodeBlock(out, (unsigned char *)in, (int)i) : -1;
  free(in);
  if (len < 0) {
    free(out);
    return NULL;
  }
  while (len > 0 && out[len - 1] == 0) len--; /* padding bytes */
  json_t *j = json_loadb((char *)out, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
  free(out);
  return j;
}

static json_t *rpc_result(const json_t *id, json_t *result) {
  return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result", result);
}

/* The connectors the user may see, in name order; with `cap`, only those
 * whose learned capabilities include it (or are not learned yet). */
static json_t *visible_connectors(px *x, const pol_user *pu, const char *cap) {
  st_txn *txn;
  json_t *all = NULL, *out = json_array();
  if (st_read_begin(x->lp->srv->store, &txn) != 0) return out;
  vault_connector_list(txn, x->tenant, &all);
  st_txn_end(txn);
  size_t i;
  json_t *c;
  json_array_foreach(all, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *caps = json_object_get(c, "capabilities");
    if (cap && json_is_object(caps) && !json_object_get(caps, cap)) continue;
    if (name && pu && pol_connector_visible(pu, name)) json_array_append_new(out, json_string(name));
  }
  json_decref(all);
  return out;
}

/* ---------- buffered upstream calls (steps of a flow) ---------- */

static void learn_caps(px *x, json_t *caps);

static void step_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  px *x = ud;
  x->status = status;
  x->up_ct[0] = 0;
  x->up_sid[0] = 0;
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, "content-type")) snprintf(x->up_ct, sizeof x->up_ct, "%s", h[i].value);
    else if (!strcasecmp(h[i].name, "mcp-session-id")) snprintf(x->up_sid, sizeof x->up_sid, "%s", h[i].value);
  }
  if (!x->req && !x->probe && !x->bparent) gw_out_abort(r);
}

static int step_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  px *x = ud;
  if ((!x->req && !x->probe && !x->bparent) || !gw__batch_take(x, n) || gw_buf_append(&x->body, p, n) != 0)
    gw_out_abort(r);
  return 0;
}

#define E_AUTH (-1)  /* the upstream refused the gateway's credential */
#define E_STALE (-5) /* the upstream does not know our session id */

static void step_done(gw_out_req *r, int err, void *ud) {
  px *x = ud;
  (void)r;
  x->out = NULL;
  if (!err && (x->status == 401 || x->status == 403)) err = E_AUTH;
  /* 404 is what the spec says for an unknown session; the official SDK's
   * servers answer 400 "No valid session ID" — either way, retried once on
   * a fresh session (a genuine 400 fails the same way again) */
  if (!err && (x->status == 404 || x->status == 400) && x->sess.upstream[0]) err = E_STALE;
  /* a 3xx is a failure too: redirects are neither followed nor relayed */
  if ((x->req || x->probe || x->bparent) && x->cont) x->cont(x, err ? err : (x->status >= 300 ? -2 : 0));
  gw__px_unref(x);
}

/* Sends `body` to connector x->connector within its upstream session and
 * calls cont(x, err) with the reply buffered in x->body. */
static int step(px *x, const char *method, json_t *body, void (*cont)(px *, int)) {
  char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  gw_buf_reset(&x->body);
  x->cont = cont;
  gw_upstream_opts u = {0};
  u.tenant = x->tenant;
  u.connector = x->connector;
  u.method = method;
  u.body = s;
  u.len = s ? strlen(s) : 0;
  u.accept = "application/json, text/event-stream";
  u.protocol_version = x->sess.version;
  u.upstream_sid = x->sess.upstream;
  u.on_headers = step_headers;
  u.on_data = step_data;
  u.on_done = step_done;
  u.ud = x;
  gw__px_upstream_identity(x, &u);
  x->refs++;
  int rc = x->revoked ? GW_UP_EREVOKED : gw_upstream_start(x->lp, &u, &x->out);
  if (rc) x->refs--;
  free(s);
  /* revoked or hidden: the client hears why; the caller's own error
   * answer then finds the exchange answered */
  if (rc == GW_UP_EREVOKED || rc == GW_UP_EHIDDEN) gw__px_start_failed(x, rc);
  return rc;
}

/* ---------- lazily opened upstream sessions ---------- */

typedef struct usess_job {
  px *x;
  char sid[96], connector[40], upstream[256];
} usess_job;

static int job_usess(st_txn *txn, void *arg) {
  usess_job *j = arg;
  return gw_session_upstream_put(txn, j->sid, j->connector, j->upstream);
}

static void agg_session_opened(px *from, const char *connector, const char *upstream);

static void done_usess(int status, void *arg) {
  usess_job *j = arg;
  px *x = j->x;
  if (status >= 0) agg_session_opened(x, j->connector, j->upstream);
  void (*after)(px *, int) = x->cont;
  free(j);
  if ((x->req || x->bparent) && after) after(x, status < 0 ? status : 0);
  gw__px_unref(x);
}

static void usess_initialized(px *x, int err) {
  (void)err; /* a server may answer the notification oddly: the session stands */
  usess_job *j = calloc(1, sizeof *j);
  void (*after)(px *, int) = x->after;
  x->cont = after;
  if (!j) {
    after(x, ST_ENOMEM);
    return;
  }
  j->x = x;
  snprintf(j->sid, sizeof j->sid, "%s", x->sid);
  snprintf(j->connector, sizeof j->connector, "%s", x->connector);
  snprintf(j->upstream, sizeof j->upstream, "%s", x->sess.upstream);
  x->refs++;
  if (st_submit(x->lp->srv->store, x->lp->port, job_usess, done_usess, j) != 0) {
    x->refs--;
    free(j);
    after(x, ST_EBUSY);
  }
}

static void usess_initialize_done(px *x, int err) {
  void (*after)(px *, int) = x->after;
  json_t *id = json_string("mcpgate-init");
  json_t *msg = err ? NULL : gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, id);
  json_decref(id);
  if (!msg || !json_is_object(json_object_get(msg, "result"))) {
    json_decref(msg);
    after(x, err ? err : -3); /* E_AUTH stays E_AUTH: the caller names it */
    return;
  }
  learn_caps(x, json_object_get(json_object_get(msg, "result"), "capabilities"));
  json_decref(msg);
  snprintf(x->sess.upstream, sizeof x->sess.upstream, "%s", x->up_sid);
  json_t *note = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", "notifications/initialized");
  if (step(x, "POST", note, usess_initialized) != 0) after(x, -4);
}

/* ---------- upstream capabilities ---------- */

typedef struct caps_job {
  char tenant[64], connector[40];
  json_t *caps;
} caps_job;

static int job_caps(st_txn *txn, void *arg) {
  caps_job *j = arg;
  int rc = vault_connector_set_caps(txn, j->tenant, j->connector, j->caps);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static void done_caps(int status, void *arg) {
  caps_job *j = arg;
  (void)status;
  json_decref(j->caps);
  free(j);
}

/* Keeps what an upstream announced, unless the record already says so. */
static void learn_caps(px *x, json_t *caps) {
  if (!json_is_object(caps)) return;
  st_txn *txn;
  json_t *rec = NULL;
  if (st_read_begin(x->lp->srv->store, &txn) == 0) {
    vault_connector_get(txn, x->tenant, x->connector, &rec);
    st_txn_end(txn);
  }
  bool same = rec && json_equal(json_object_get(rec, "capabilities"), caps);
  json_decref(rec);
  if (same) return;
  caps_job *j = calloc(1, sizeof *j);
  if (!j) return;
  snprintf(j->tenant, sizeof j->tenant, "%s", x->tenant);
  snprintf(j->connector, sizeof j->connector, "%s", x->connector);
  j->caps = json_deep_copy(caps);
  if (st_submit(x->lp->srv->store, x->lp->port, job_caps, done_caps, j) != 0) done_caps(0, j);
}

static void probe_init_done(px *x, int err);

/* Learns a connector's capabilities right after an admin PUT: initialize
 * and note the capabilities. Fire and forget. */
void gw_agg_probe_connector(gw_loop *lp, const char *tenant, const char *connector) {
  px *x = gw__px_bare(lp, tenant, connector);
  if (!x) return;
  json_t *init = json_pack("{s:s,s:s,s:s,s:{s:s,s:{},s:{s:s,s:s}}}", "jsonrpc", "2.0", "id", "mcpgate-init", "method",
                           "initialize", "params", "protocolVersion", LATEST_VERSION, "capabilities", "clientInfo",
                           "name", "mcpgate", "version", "0.1.0");
  x->probe = true;
  if (step(x, "POST", init, probe_init_done) != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "capability probe of %s not sent", connector);
  gw__px_unref(x);
}

static void probe_init_done(px *x, int err) {
  json_t *id = json_string("mcpgate-init");
  json_t *msg = err ? NULL : gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, id);
  json_decref(id);
  learn_caps(x, json_object_get(json_object_get(msg, "result"), "capabilities"));
  json_decref(msg);
  /* the probe's upstream session is left to expire: a DELETE racing a
   * second PUT could go out with the replaced connector's credential */
}

/* Makes sure x->sess.upstream is the upstream session of x->connector
 * (opening one if needed), then after(x, err). */
static void ensure_upstream(px *x, void (*after)(px *, int)) {
  st_txn *txn;
  char up[256] = "";
  if (!x->fresh_session && st_read_begin(x->lp->srv->store, &txn) == 0) {
    int rc = gw_session_upstream_get(txn, x->sid, x->connector, up);
    st_txn_end(txn);
    if (rc == 0) {
      snprintf(x->sess.upstream, sizeof x->sess.upstream, "%s", up);
      after(x, 0);
      return;
    }
  }
  x->sess.upstream[0] = 0;
  x->fresh_session = false;
  x->after = after;
  json_t *client = json_loads(x->sess.client[0] ? x->sess.client : "{}", 0, NULL);
  json_t *params = json_pack("{s:s,s:O,s:O}", "protocolVersion", x->sess.version[0] ? x->sess.version : LATEST_VERSION,
                             "capabilities", json_object_get(client, "capabilities") ?: json_object(), "clientInfo",
                             json_object_get(client, "clientInfo") ?: json_pack("{s:s,s:s}", "name", "mcpgate", "version", "0.1.0"));
  json_decref(client);
  json_t *init = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", "mcpgate-init", "method", "initialize",
                           "params", params);
  if (step(x, "POST", init, usess_initialize_done) != 0) after(x, -4);
}

/* ---------- lists across connectors (tools, prompts, resources) ---------- */

/* Which list: the method, the result key, and how items are rewritten. */
typedef struct list_kind {
  const char *method, *key, *cap;
} list_kind;

static const list_kind kinds[] = {
    {"tools/list", "tools", "tools"},
    {"prompts/list", "prompts", "prompts"},
    {"resources/list", "resources", "resources"},
    {"resources/templates/list", "resourceTemplates", "resources"},
};

static const list_kind *kind_of(px *x) {
  return &kinds[json_integer_value(json_object_get(x->agg_state, "kind"))];
}

/* Resource URIs (and template prefixes) seen in lists and results, per
 * client session: resources keep their URIs, so reads route by this map.
 * The first connector in name order wins a collision (logged). */

static json_t *session_obj(json_t **map, const px *x, bool create);

static void uri_note(px *x, const char *uri, bool is_template) {
  if (!uri || !*uri || !x->connector[0]) return;
  json_t *m = session_obj(&x->p->agg_uris, x, true);
  if (!m) return;
  if (json_object_size(m) >= (size_t)x->lp->srv->cfg.agg_uri_map_max) {
    if (!json_object_get(m, "!full")) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
             "a client session noted agg_uri_map_max resource URIs; further ones are not routed by name");
      json_object_set_new(m, "!full", json_true());
    }
    return;
  }
  char key[2100];
  if (is_template) {
    /* a template routes every URI that starts with its literal prefix */
    size_t n = strcspn(uri, "{");
    snprintf(key, sizeof key, "T%.*s", (int)(n < 2000 ? n : 2000), uri);
  } else {
    snprintf(key, sizeof key, "U%.2000s", uri);
  }
  const char *have = json_string_value(json_object_get(m, key));
  if (have && strcmp(have, x->connector)) {
    if (strcmp(have, x->connector) < 0) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
             "resource %.200s is offered by connectors %s and %s; %s serves it", uri, have, x->connector, have);
      return;
    }
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
           "resource %.200s is offered by connectors %s and %s; %s serves it", uri, have, x->connector, x->connector);
  }
  json_object_set_new(m, key, json_string(x->connector));
}

/* The connector serving uri in this client session, or NULL. */
static const char *uri_route(px *x, const char *uri) {
  json_t *m = x->p->agg_uris ? json_object_get(x->p->agg_uris, x->sid) : NULL;
  char key[2100];
  snprintf(key, sizeof key, "U%.2000s", uri);
  const char *c = json_string_value(json_object_get(m, key));
  if (c) return c;
  const char *k;
  json_t *v;
  size_t best = 0;
  json_object_foreach(m, k, v) {
    size_t n = strlen(k + 1);
    if (k[0] == 'T' && n >= best && !strncmp(uri, k + 1, n)) {
      best = n;
      c = json_string_value(v);
    }
  }
  return c;
}

/* URIs inside results (resource_link / embedded resources) join the map. */
static void note_result_uris(px *x, const json_t *result) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(result, "content"), i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type) continue;
    if (!strcmp(type, "resource_link")) uri_note(x, json_string_value(json_object_get(e, "uri")), false);
    else if (!strcmp(type, "resource"))
      uri_note(x, json_string_value(json_object_get(json_object_get(e, "resource"), "uri")), false);
  }
}

static void list_fetch(px *x);

static void list_reply(px *x, json_t *items, const char *next_c, const char *next_u) {
  json_t *result = json_object();
  json_object_set_new(result, kind_of(x)->key, items);
  if (next_c) {
    json_t *cur = json_pack("{s:s,s:s?}", "c", next_c, "u", next_u);
    char *s = json_dumps(cur, JSON_COMPACT);
    json_decref(cur);
    char *b = s ? b64url(s) : NULL;
    free(s);
    if (b) json_object_set_new(result, "nextCursor", json_string(b));
    free(b);
  }
  gw__px_reply_json(x, 200, rpc_result(json_array_get(x->ids, 0), result));
}

/* The page after connector index ci: the next connector, from its start. */
static void list_advance(px *x, json_t *items) {
  json_t *vis = json_object_get(x->agg_state, "visible");
  size_t ci = (size_t)json_integer_value(json_object_get(x->agg_state, "ci"));
  const char *next = json_string_value(json_array_get(vis, ci + 1));
  list_reply(x, items, next, NULL);
}

static void list_session_ready(px *x, int err);

/* One item of an upstream page, as the client sees it; NULL to leave out. */
static json_t *list_item(px *x, const pol_user *pu, json_t *it) {
  const list_kind *k = kind_of(x);
  if (!strcmp(k->key, "tools")) {
    const char *name = json_string_value(json_object_get(it, "name"));
    if (!name || !pu) return NULL;
    json_t *one = json_pack("{s:{s:[O]}}", "result", "tools", it);
    pol_filter_tools(pu, x->connector, one);
    json_t *kept = json_array_get(json_object_get(json_object_get(one, "result"), "tools"), 0);
    json_t *copy = kept ? json_deep_copy(kept) : NULL;
    json_decref(one);
    if (copy) {
      char full[400];
      snprintf(full, sizeof full, "%s__%s", x->connector, name);
      json_object_set_new(copy, "name", json_string(full));
    }
    return copy;
  }
  if (!strcmp(k->key, "prompts")) {
    const char *name = json_string_value(json_object_get(it, "name"));
    if (!name) return NULL;
    json_t *copy = json_deep_copy(it);
    char full[400];
    snprintf(full, sizeof full, "%s__%s", x->connector, name);
    json_object_set_new(copy, "name", json_string(full));
    return copy;
  }
  if (!strcmp(k->key, "resources")) uri_note(x, json_string_value(json_object_get(it, "uri")), false);
  else uri_note(x, json_string_value(json_object_get(it, "uriTemplate")), true);
  return json_incref(it);
}

static void list_page_done(px *x, int err) {
  if (err == E_STALE && !x->retried) {
    x->retried = true;
    x->fresh_session = true;
    ensure_upstream(x, list_session_ready);
    return;
  }
  const list_kind *k = kind_of(x);
  json_t *id = json_string("mcpgate-list");
  json_t *msg = err ? NULL : gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, id);
  json_decref(id);
  json_t *res = json_object_get(msg, "result");
  json_t *items = json_object_get(res, k->key);
  if (!json_is_array(items)) {
    /* one upstream failing does not take the others down; a connector
     * without prompts/resources simply has none */
    bool unsupported = json_integer_value(json_object_get(json_object_get(msg, "error"), "code")) == -32601;
    if (!unsupported) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
             "connector %s: %s failed (%s); its items are left out", x->connector, k->method,
             err == E_AUTH ? "credential refused" : err ? "unavailable" : "invalid reply");
      if (x->m) x->m->errors++;
    }
    json_decref(msg);
    list_advance(x, json_array());
    return;
  }
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  json_t *out = json_array();
  size_t i;
  json_t *t;
  json_array_foreach(items, i, t) {
    json_t *it = list_item(x, pu, t);
    if (it) json_array_append_new(out, it);
  }
  const char *ucur = json_string_value(json_object_get(res, "nextCursor"));
  if (ucur) list_reply(x, out, x->connector, ucur);
  else list_advance(x, out);
  json_decref(msg);
}

static void list_session_ready(px *x, int err) {
  if (err) {
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s: no upstream session (%d); its items are left out", x->connector, err);
    list_advance(x, json_array());
    return;
  }
  json_t *params = json_object();
  const char *u = json_string_value(json_object_get(x->agg_state, "u"));
  if (u) json_object_set_new(params, "cursor", json_string(u));
  json_t *req = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", "mcpgate-list", "method", kind_of(x)->method,
                          "params", params);
  json_object_del(x->agg_state, "u"); /* only the first page of this connector resumes */
  if (step(x, "POST", req, list_page_done) != 0) list_advance(x, json_array());
}

static void list_fetch(px *x) {
  json_t *vis = json_object_get(x->agg_state, "visible");
  size_t ci = (size_t)json_integer_value(json_object_get(x->agg_state, "ci"));
  const char *c = json_string_value(json_array_get(vis, ci));
  if (!c) {
    list_reply(x, json_array(), NULL, NULL);
    return;
  }
  snprintf(x->connector, sizeof x->connector, "%s", c);
  x->m = gw__px_metrics_for(x->p, x->tenant, c);
  ensure_upstream(x, list_session_ready);
}

static void agg_list(px *x, json_t *msg, int kind) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__px_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return;
  }
  json_t *vis = visible_connectors(x, pu, kinds[kind].cap);
  x->agg_state = json_pack("{s:o,s:i,s:i}", "visible", vis, "ci", 0, "kind", kind);
  const char *cursor = json_string_value(json_object_get(json_object_get(msg, "params"), "cursor"));
  if (cursor) {
    json_t *cur = unb64url(cursor);
    const char *c = json_string_value(json_object_get(cur, "c"));
    json_t *u = json_object_get(cur, "u");
    size_t i;
    json_t *v;
    int found = -1;
    if (c) json_array_foreach(vis, i, v) if (!strcmp(json_string_value(v), c)) found = (int)i;
    if (found < 0 || (u && !json_is_string(u) && !json_is_null(u))) {
      json_decref(cur);
      gw__px_rpc_error(x, 200, -32602, "Invalid params: unknown or expired cursor");
      return;
    }
    json_object_set_new(x->agg_state, "ci", json_integer(found));
    if (json_is_string(u)) json_object_set(x->agg_state, "u", u);
    json_decref(cur);
  }
  list_fetch(x);
}

/* ---------- tools/call and answers to server→client requests ---------- */

static void call_session_ready(px *x, int err);

/* up_done (mcp_proxy.c) calls this when the upstream answered 404 to our
 * session: open a fresh one and send the call again, once. */
static void call_retry(px *x, int err) {
  (void)err;
  x->fresh_session = true;
  gw_buf_reset(&x->body);
  ensure_upstream(x, call_session_ready);
}

static void call_session_ready(px *x, int err) {
  if (err) {
    if (x->m) x->m->errors++;
    if (err == E_AUTH)
      gw__px_rpc_error(x, 200, GW_RPC_UPSTREAM_AUTH,
                       "connector \"%s\" refused the gateway's credential; ask your admin to check the connector's credential",
                       x->connector);
    else
      gw__px_rpc_error(x, 200, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" is unavailable", x->connector);
    return;
  }
  x->cont = x->retried ? NULL : call_retry;
  gw_buf_reset(&x->body);
  int rc = gw__px_start_upstream(x, "POST", x->fwd, x->fwd_len, "application/json, text/event-stream");
  if (rc != 0) gw__px_start_failed(x, rc);
}

/* Sends the rewritten message fwd (stolen) to connector conn within its
 * upstream session, relaying the answer. */
static void forward_to(px *x, json_t *fwd, const char *conn) {
  x->fwd = json_dumps(fwd, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(fwd);
  if (!x->fwd) {
    gw__px_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  x->fwd_len = strlen(x->fwd);
  snprintf(x->connector, sizeof x->connector, "%s", conn);
  x->m = gw__px_metrics_for(x->p, x->tenant, conn);
  if (x->m) x->m->requests++;
  ensure_upstream(x, call_session_ready);
}

static bool split_name(const char *full, char conn[40], const char **tool) {
  const char *sep = strstr(full, "__");
  if (!sep || sep == full || (size_t)(sep - full) >= 40 || !sep[2]) return false;
  memcpy(conn, full, (size_t)(sep - full));
  conn[sep - full] = 0;
  *tool = sep + 2;
  return vault_connector_name_valid(conn);
}

static void tools_call(px *x, json_t *msg) {
  json_t *params = json_object_get(msg, "params");
  const char *full = json_string_value(json_object_get(params, "name"));
  const char *tool;
  char conn[40];
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__px_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return;
  }
  if (!full || !split_name(full, conn, &tool)) {
    gw__px_rpc_error(x, 200, -32602, "Unknown tool: %.200s", full ? full : "(no name)");
    return;
  }
  pol_decision d = pol_decide(pu, conn, tool);
  json_t *crec = NULL;
  st_txn *txn;
  if (d != POL_HIDDEN && st_read_begin(x->lp->srv->store, &txn) == 0) {
    if (vault_connector_get(txn, x->tenant, conn, &crec) != 0) d = POL_HIDDEN; /* no such connector */
    st_txn_end(txn);
  }
  json_decref(crec);
  if (d == POL_HIDDEN) {
    gw__px_rpc_error(x, 200, -32602, "Unknown tool: %.200s", full);
    return;
  }
  if (d == POL_BLOCK || d == POL_APPROVE) {
    GW_LOG(GW_LOG_INFO, "policy", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}), "tools/call %s refused: %s (policy v%d)", full,
           pol_decision_name(d), pol_user_version(pu));
    if (d == POL_APPROVE)
      gw__px_rpc_error(x, 200, GW_RPC_APPROVAL,
                       "tool \"%s\" requires approval under your organisation's policy; approvals are not available "
                       "yet, so the call was not made",
                       full);
    else
      gw__px_rpc_error(x, 200, GW_RPC_BLOCKED, "tool \"%s\" is blocked by your organisation's policy", full);
    return;
  }
  /* forward with the prefix stripped: the rest of the message as checked */
  json_t *fwd = json_deep_copy(msg);
  json_object_set_new(json_object_get(fwd, "params"), "name", json_string(tool));
  forward_to(x, fwd, conn);
}

/* prompts/get, resources/read|subscribe|unsubscribe, completion/complete:
 * routed by the prompt's prefix or the resource's URI. */
static void agg_route(px *x, json_t *msg, const char *method) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__px_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return;
  }
  json_t *fwd = json_deep_copy(msg);
  json_t *params = json_object_get(fwd, "params");
  json_t *ref = json_object_get(params, "ref");
  const char *reftype = json_string_value(json_object_get(ref, "type"));
  const char *name = NULL, *uri = NULL;
  json_t *name_holder = NULL;
  if (!strcmp(method, "prompts/get")) {
    name_holder = params;
  } else if (!strcmp(method, "completion/complete") && reftype && !strcmp(reftype, "ref/prompt")) {
    name_holder = ref;
  } else if (!strcmp(method, "completion/complete")) {
    uri = json_string_value(json_object_get(ref, "uri"));
  } else {
    uri = json_string_value(json_object_get(params, "uri"));
  }
  char conn[40] = "";
  char *name_buf = NULL;
  if (name_holder) {
    /* copied: the name in fwd is replaced below */
    const char *nv = json_string_value(json_object_get(name_holder, "name"));
    name = nv ? (name_buf = strdup(nv)) : NULL;
    const char *rest;
    if (!name || !split_name(name, conn, &rest)) {
      gw__px_rpc_error(x, 200, -32602, "Unknown prompt: %.200s", name ? name : "(no name)");
      json_decref(fwd);
      free(name_buf);
      return;
    }
    json_object_set_new(name_holder, "name", json_string(rest));
  } else {
    const char *c = uri ? uri_route(x, uri) : NULL;
    if (!c) {
      /* not seen in a list yet: the one connector offering resources, if one */
      json_t *vis = visible_connectors(x, pu, "resources");
      if (json_array_size(vis) == 1) c = json_string_value(json_array_get(vis, 0));
      if (c) snprintf(conn, sizeof conn, "%s", c);
      json_decref(vis);
    } else {
      snprintf(conn, sizeof conn, "%s", c);
    }
    if (!conn[0]) {
      gw__px_rpc_error(x, 200, -32602, "Unknown resource: %.200s (list resources first)", uri ? uri : "(no uri)");
      json_decref(fwd); /* after: uri points into it */
      free(name_buf);
      return;
    }
  }
  json_t *crec = NULL;
  st_txn *txn;
  bool ok = pol_connector_visible(pu, conn);
  if (ok && st_read_begin(x->lp->srv->store, &txn) == 0) {
    ok = vault_connector_get(txn, x->tenant, conn, &crec) == 0;
    st_txn_end(txn);
  }
  json_decref(crec);
  if (!ok) {
    gw__px_rpc_error(x, 200, -32602, "Unknown %s: %.200s", name ? "prompt" : "resource",
                     name ? name : uri ? uri : "(none)");
    json_decref(fwd);
    free(name_buf);
    return;
  }
  free(name_buf);
  forward_to(x, fwd, conn);
}

/* "mcpgate:{connector}:{json id}" ↔ (connector, original id). */
static void note_result_uris(px *x, const json_t *result);

/* Per-session state in memory, in two maps keyed by the gateway session
 * id (p->agg_uris: resource routes; p->asked: outstanding server→client
 * requests). Each session's object records its owner under "!o"
 * ("tenant\nuser") so revocations free it; the sweep on the session purge
 * timer frees those of sessions evicted or expired. At most SESSIONS_MAX
 * sessions per map (the oldest goes). */
#define SESSIONS_MAX 10000
#define ASKED_PER_SESSION 64

static json_t *session_obj(json_t **map, const px *x, bool create) {
  if (!*map) {
    if (!create || !(*map = json_object())) return NULL;
  }
  json_t *m = json_object_get(*map, x->sid);
  if (m || !create) return m;
  if (json_object_size(*map) >= SESSIONS_MAX) {
    void *it = json_object_iter(*map);
    if (it) json_object_del(*map, json_object_iter_key(it));
  }
  char owner[120];
  snprintf(owner, sizeof owner, "%s\n%s", x->tenant, x->user);
  m = json_pack("{s:s}", "!o", owner);
  if (m) json_object_set_new(*map, x->sid, m);
  return m;
}

/* Outstanding server→client requests: noted when relayed, taken once by
 * the client's answer. Past ASKED_PER_SESSION the session's oldest is
 * forgotten (its late answer is dropped, as an unknown one is): one
 * session's upstream cannot push out another session's questions. */
static void asked_note(px *x, const char *enc) {
  if (!x->sid[0]) return;
  json_t *m = session_obj(&x->p->asked, x, true);
  if (!m) return;
  if (json_object_size(m) > ASKED_PER_SESSION) {
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) if (k[0] != '!') {
      json_object_del(m, k);
      break;
    }
  }
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
  json_object_set_new(m, key, json_true());
}

static bool asked_take(px *x, const char *connector, const char *enc) {
  json_t *m = session_obj(&x->p->asked, x, false);
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", connector, enc);
  return m && json_object_del(m, key) == 0;
}

void gw__agg_forget_session(gw_proxy *p, const char *sid) {
  if (p->asked) json_object_del(p->asked, sid);
  if (p->agg_uris) json_object_del(p->agg_uris, sid);
}

static bool owned_by(json_t *m, const char *tenant, const char *user) {
  const char *o = json_string_value(json_object_get(m, "!o"));
  size_t tl = strlen(tenant);
  if (!o || strncmp(o, tenant, tl) || o[tl] != '\n') return false;
  return !user || !strcmp(o + tl + 1, user);
}

static void forget_in(json_t *map, const char *tenant, const char *user) {
  const char *sid;
  json_t *m;
  void *tmp;
  if (map) json_object_foreach_safe(map, tmp, sid, m) if (owned_by(m, tenant, user)) json_object_del(map, sid);
}

void gw__agg_forget_owner(gw_proxy *p, const char *tenant, const char *user) {
  if (!tenant) {
    json_decref(p->asked);
    json_decref(p->agg_uris);
    p->asked = p->agg_uris = NULL;
    return;
  }
  forget_in(p->asked, tenant, user);
  forget_in(p->agg_uris, tenant, user);
}

static void sweep_in(json_t *map, st_txn *txn, int64_t now_ms, const gw_session_limits *lim) {
  const char *sid;
  json_t *m;
  void *tmp;
  gw_session s;
  if (map)
    json_object_foreach_safe(map, tmp, sid, m) if (gw_session_get(txn, sid, &s) != 0 || gw_session_expired(&s, now_ms, lim))
        json_object_del(map, sid);
}

void gw__agg_sweep(gw_proxy *p, st_txn *txn, int64_t now_ms) {
  sweep_in(p->asked, txn, now_ms, gw_sessions_limits(p->lp->srv));
  sweep_in(p->agg_uris, txn, now_ms, gw_sessions_limits(p->lp->srv));
}

bool gw__agg_rewrite(px *x, json_t *msg) {
  if (json_is_object(msg) && json_is_object(json_object_get(msg, "result")))
    note_result_uris(x, json_object_get(msg, "result"));
  if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) return false;
  json_t *id = json_object_get(msg, "id");
  if (!id) return false; /* a notification: relayed as is */
  char *enc = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!enc) return false;
  char buf[600];
  snprintf(buf, sizeof buf, ID_PREFIX "%s:%s", x->connector, enc);
  if (strlen(enc) < 500) asked_note(x, enc); /* longer: its answer could not route back anyway */
  free(enc);
  json_object_set_new(msg, "id", json_string(buf));
  return true;
}

static void answer_done(px *x, int err) {
  (void)err;
  gw__px_reply_raw(x, 202, NULL, NULL, 0);
}

static void answer_ready(px *x, int err) {
  if (err) {
    gw__px_reply_raw(x, 202, NULL, NULL, 0); /* the upstream is gone: nothing to deliver */
    return;
  }
  json_t *msg = json_loadb(x->fwd, x->fwd_len, 0, NULL);
  if (step(x, "POST", msg, answer_done) != 0) gw__px_reply_raw(x, 202, NULL, NULL, 0);
}

/* A client's response to a relayed server→client request. */
static bool route_answer(px *x, json_t *msg) {
  const char *id = json_string_value(json_object_get(msg, "id"));
  if (!id || strncmp(id, ID_PREFIX, strlen(ID_PREFIX))) return false;
  const char *c = id + strlen(ID_PREFIX);
  const char *colon = strchr(c, ':');
  if (!colon || colon == c || (size_t)(colon - c) >= 40) return false;
  char conn[40];
  memcpy(conn, c, (size_t)(colon - c));
  conn[colon - c] = 0;
  json_t *orig = json_loads(colon + 1, JSON_DECODE_ANY, NULL);
  if (!orig || !vault_connector_name_valid(conn)) {
    json_decref(orig);
    return false;
  }
  /* Only to an upstream session that really asked, and only while policy
   * shows its connector: a forged id must not open a session to (or post
   * to) a connector the user may not use. */
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  bool visible = pu && pol_connector_visible(pu, conn);
  if (!visible || !asked_take(x, conn, colon + 1)) {
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "dropped a client answer to %s request %.100s that %s", conn, colon + 1,
           visible ? "no upstream session of this client session is waiting for" : "policy does not show to the user");
    json_decref(orig);
    return false;
  }
  json_t *fwd = json_deep_copy(msg);
  json_object_set_new(fwd, "id", orig);
  x->fwd = json_dumps(fwd, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(fwd);
  x->fwd_len = x->fwd ? strlen(x->fwd) : 0;
  snprintf(x->connector, sizeof x->connector, "%s", conn);
  ensure_upstream(x, answer_ready);
  return true;
}

/* ---------- the GET stream: upstream GET streams multiplexed ---------- */

char *gw__agg_event_id(px *x, const char *upstream_id) {
  json_t *m = json_pack("{s:s}", x->connector, upstream_id);
  char *s = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(m);
  char *b = s ? b64url(s) : NULL;
  free(s);
  return b;
}

/* Event ids sent to the client encode the last event id of every upstream
 * (b64url of {"connector": "upstream event id"}), so one Last-Event-ID
 * resumes each upstream where it was. */
static void mux_emit(px *c, const char *upstream_id, json_t *msg) {
  px *x = c->parent;
  if (!x || !x->req) return;
  if (!x->agg_state) x->agg_state = json_object();
  json_t *last = json_object_get(x->agg_state, "last");
  if (!last) {
    last = json_object();
    json_object_set_new(x->agg_state, "last", last);
  }
  if (upstream_id) json_object_set_new(last, c->connector, json_string(upstream_id));
  gw__agg_rewrite(c, msg);
  char *data = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char *lj = json_dumps(last, JSON_COMPACT | JSON_SORT_KEYS);
  char *eid = lj ? b64url(lj) : NULL;
  free(lj);
  gw_buf out;
  gw_buf_init(&out, 2 * 8 * 1024 * 1024);
  gw_buf_appends(&out, "event: message\n");
  if (eid && upstream_id) gw_buf_printf(&out, "id: %s\n", eid);
  gw_buf_printf(&out, "data: %s\n\n", data ? data : "{}");
  gw_resp_write(x->req, out.data, out.len);
  gw_buf_free(&out);
  free(eid);
  free(data);
}

static int mux_event(px *c, const char *ev, size_t n) {
  char id[512];
  gw_buf data;
  gw_buf_init(&data, 8 * 1024 * 1024);
  gw__sse_split(ev, n, &data, NULL, id, sizeof id);
  json_t *msg = data.len ? json_loadb(data.data, data.len, 0, NULL) : NULL;
  if (msg) mux_emit(c, id[0] ? id : NULL, msg);
  json_decref(msg);
  gw_buf_free(&data);
  return 0;
}

static void mux_headers(gw_out_req *r, int status, const gw_out_header *h, size_t n, void *ud) {
  px *c = ud;
  c->status = status;
  bool sse = false;
  for (size_t i = 0; i < n; i++)
    if (!strcasecmp(h[i].name, "content-type") && !strncasecmp(h[i].value, "text/event-stream", 17)) sse = true;
  /* an upstream without a GET stream (405) or that refuses: nothing to relay */
  if (status != 200 || !sse || !c->parent || !c->parent->req) gw_out_abort(r);
}

static int mux_data(gw_out_req *r, const char *p, size_t n, void *ud) {
  px *c = ud;
  if (!c->parent || !c->parent->req || gw_buf_append(&c->ev, p, n) != 0) {
    gw_out_abort(r);
    return 0;
  }
  gw__sse_each(c, mux_event);
  /* the client's stream is fed by several upstreams: each pauses on its
   * own when the client falls behind; the client's drain resumes them */
  switch (c->parent && c->parent->req ? gw__stream_pressure(c, c->parent->req) : GW_STREAM_OK) {
  case GW_STREAM_OVER:
    gw_out_abort(r);
    return 0;
  case GW_STREAM_FULL:
    c->paused = true;
    return GW_OUT_PAUSE;
  default:
    return 0;
  }
}

static void mux_attach(px *x, const char *connector, const char *upstream, const char *last_id);

/* An upstream may end its GET stream at any time (2025-11-25 servers
 * close streams and expect clients to come back): while the client's
 * stream is open, the gateway reconnects, resuming after the last event. */
typedef struct mux_retry {
  uv_timer_t t;
  px *parent; /* a ref */
  char connector[40], upstream[256], last[512];
} mux_retry;

static void mux_retry_closed(uv_handle_t *h) {
  mux_retry *m = h->data;
  gw__px_unref(m->parent);
  free(m);
}

static void mux_retry_fire(uv_timer_t *t) {
  mux_retry *m = t->data;
  px *x = m->parent;
  if (x->listed && x->req) mux_attach(x, m->connector, m->upstream, m->last[0] ? m->last : NULL);
  uv_close((uv_handle_t *)&m->t, mux_retry_closed);
}

static void mux_done(gw_out_req *r, int err, void *ud) {
  px *c = ud;
  (void)r;
  c->out = NULL;
  if (err && err != GW_OUT_EABORTED)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "connector %s: GET stream ended (%s)", c->connector, gw_out_strerror(err));
  px *x = c->parent;
  bool refused = c->status != 200; /* 405: the upstream has no GET stream */
  if (x && x->req && x->listed && !refused && err != GW_OUT_EABORTED) {
    mux_retry *m = calloc(1, sizeof *m);
    if (m && uv_timer_init(&x->lp->loop, &m->t) == 0) {
      m->t.data = m;
      m->parent = x;
      x->refs++;
      snprintf(m->connector, sizeof m->connector, "%s", c->connector);
      snprintf(m->upstream, sizeof m->upstream, "%s", c->sess.upstream);
      const char *last = json_string_value(json_object_get(json_object_get(x->agg_state, "last"), c->connector));
      snprintf(m->last, sizeof m->last, "%s", last ? last : "");
      uv_timer_start(&m->t, mux_retry_fire, err ? 1000 : 100, 0);
    } else {
      free(m);
    }
  }
  gw__px_unref(c);
}

/* Starts the upstream GET stream of one connector for the client stream x. */
static void mux_attach(px *x, const char *connector, const char *upstream, const char *last_id) {
  px *c = gw__px_child(x, connector);
  if (!c) return;
  c->kind = 1; /* PX_GET */
  c->parent = x;
  x->refs++;
  snprintf(c->sess.upstream, sizeof c->sess.upstream, "%s", upstream);
  gw_upstream_opts u = {0};
  u.tenant = c->tenant;
  u.connector = connector;
  u.method = "GET";
  u.accept = "text/event-stream";
  u.protocol_version = c->sess.version;
  u.upstream_sid = upstream;
  u.last_event_id = last_id;
  u.stream = true;
  u.on_headers = mux_headers;
  u.on_data = mux_data;
  u.on_done = mux_done;
  u.ud = c;
  gw__px_upstream_identity(c, &u);
  if (gw_upstream_start(c->lp, &u, &c->out) != 0) gw__px_unref(c);
}

/* The client's GET stream: every connector with an upstream session now,
 * and (via agg_session_opened) every one opened later. */
static void mux_start(px *x, const char *last_event_id) {
  json_t *resume = last_event_id ? unb64url(last_event_id) : NULL;
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  st_txn *txn;
  if (!pu || st_read_begin(x->lp->srv->store, &txn) != 0) {
    json_decref(resume);
    return;
  }
  json_t *ups = gw_session_upstreams(txn, x->sid);
  st_txn_end(txn);
  if (json_is_object(resume)) {
    x->agg_state = json_pack("{s:O}", "last", resume);
  }
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) if (pol_connector_visible(pu, conn))
      mux_attach(x, conn, json_string_value(up), json_string_value(json_object_get(resume, conn)));
  json_decref(ups);
  json_decref(resume);
}

/* A new upstream session exists: open client streams of that session get
 * its GET stream too. */
typedef struct opened_arg {
  const px *from;
  const char *connector, *upstream;
} opened_arg;

static void attach_if_stream(px *x, void *arg) {
  opened_arg *a = arg;
  if (x->agg && x->kind == 1 && x->started && x->req && !x->parent && !strcmp(x->sid, a->from->sid))
    mux_attach(x, a->connector, a->upstream, NULL);
}

static void agg_session_opened(px *from, const char *connector, const char *upstream) {
  opened_arg a = {from, connector, upstream};
  gw__px_foreach(from->p, attach_if_stream, &a);
}

/* ---------- client notifications ---------- */

/* Fire and forget: msg (stolen) to one connector's upstream session. */
static void forward_note(px *parent, const char *connector, const char *upstream, json_t *msg) {
  px *c = gw__px_child(parent, connector);
  if (!c) {
    json_decref(msg);
    return;
  }
  snprintf(c->sess.upstream, sizeof c->sess.upstream, "%s", upstream);
  if (step(c, "POST", msg, NULL) != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "notification to connector %s not sent", connector);
  gw__px_unref(c);
}

void gw__agg_end_upstreams(px *x, json_t *ups) {
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) {
    px *c = gw__px_child(x, conn);
    if (!c) continue;
    snprintf(c->sess.upstream, sizeof c->sess.upstream, "%s", json_string_value(up));
    step(c, "DELETE", NULL, NULL);
    gw__px_unref(c);
  }
}

/* notifications/cancelled goes to the upstream that runs the request;
 * anything else (roots/list_changed, …) to every upstream session of the
 * client session. Answered 202 either way. */
static void client_notification(px *x, const char *method, json_t *msg) {
  if (!strcmp(method, "notifications/initialized")) return;
  if (!strcmp(method, "notifications/cancelled")) {
    json_t *rid = json_object_get(json_object_get(msg, "params"), "requestId");
    for (px *o = x->p->list; rid && o; o = o->next) {
      if (o == x || !o->agg || o->kind != 0 || !o->connector[0] || strcmp(o->sid, x->sid) || !o->out) continue;
      size_t i;
      json_t *id;
      json_array_foreach(o->ids, i, id) if (json_equal(id, rid)) {
        forward_note(x, o->connector, o->sess.upstream, json_incref(msg));
        return;
      }
    }
    return;
  }
  st_txn *txn;
  if (st_read_begin(x->lp->srv->store, &txn) != 0) return;
  json_t *ups = gw_session_upstreams(txn, x->sid);
  st_txn_end(txn);
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) forward_note(x, conn, json_string_value(up), json_incref(msg));
  json_decref(ups);
}

/* ---------- initialize and sessions ---------- */

typedef struct init_job {
  px *x;
  char sid[96];
  gw_session s;
  char now[32];
  char tokid[ST_TOKEN_ID_BUFSZ];
  int64_t unix_now;
  json_t *result;
} init_job;

static int job_init(st_txn *txn, void *arg) {
  init_job *j = arg;
  /* checked again inside the write: a user deactivated (or a token
   * revoked) after the request's check gets no session */
  if (auth_identity_check(txn, j->s.tenant, j->s.user, j->tokid, j->unix_now) != 0) return GW_UP_EREVOKED;
  return gw_session_put(txn, j->sid, &j->s, j->now);
}

static void done_init(int status, void *arg) {
  init_job *j = arg;
  px *x = j->x;
  if (status == GW_UP_EREVOKED) {
    gw__px_start_failed(x, status);
  } else if (status < 0) {
    gw__px_rpc_error(x, 503, -32603, "the gateway could not store the session: %s", st_strerror(status));
  } else {
    snprintf(x->sid, sizeof x->sid, "%s", j->sid);
    gw__px_reply_json(x, 200, rpc_result(json_array_get(x->ids, 0), json_incref(j->result)));
  }
  json_decref(j->result);
  OPENSSL_cleanse(j->sid, sizeof j->sid);
  free(j);
  gw__px_unref(x);
}

static void initialize(px *x, json_t *msg) {
  json_t *params = json_object_get(msg, "params");
  const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
  const char *ver = asked && gw__mcp_version_supported(asked) ? asked : LATEST_VERSION;
  init_job *j = calloc(1, sizeof *j);
  if (!j || st_token_new(GW_SESSION_PREFIX, j->sid, sizeof j->sid) != 0) {
    free(j);
    gw__px_rpc_error(x, 500, -32603, "the gateway could not create a session");
    return;
  }
  json_t *client = json_pack("{s:O?,s:O?}", "capabilities", json_object_get(params, "capabilities"), "clientInfo",
                             json_object_get(params, "clientInfo"));
  char *cs = json_dumps(client, JSON_COMPACT);
  json_decref(client);
  if (!cs || strlen(cs) >= sizeof j->s.client) {
    free(cs);
    cs = strdup("{}");
  }
  snprintf(j->s.client, sizeof j->s.client, "%s", cs ? cs : "{}");
  free(cs);
  j->x = x;
  snprintf(j->s.tenant, sizeof j->s.tenant, "%s", x->tenant);
  snprintf(j->s.user, sizeof j->s.user, "%s", x->user);
  snprintf(j->s.version, sizeof j->s.version, "%s", ver);
  snprintf(j->tokid, sizeof j->tokid, "%s", x->tokid);
  j->unix_now = (int64_t)time(NULL);
  now_rfc3339(j->now);
  json_t *caps = json_pack("{s:{s:b}}", "tools", "listChanged", 1);
  {
    /* prompts/resources when a connector the user sees offers them */
    const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
    st_txn *txn;
    json_t *all = NULL;
    if (pu && st_read_begin(x->lp->srv->store, &txn) == 0) {
      vault_connector_list(txn, x->tenant, &all);
      st_txn_end(txn);
    }
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
      const char *name = json_string_value(json_object_get(c, "name"));
      json_t *uc = json_object_get(c, "capabilities");
      if (!name || !pol_connector_visible(pu, name) || !json_is_object(uc)) continue;
      if (json_object_get(uc, "prompts")) json_object_set_new(caps, "prompts", json_pack("{s:b}", "listChanged", 1));
      json_t *r = json_object_get(uc, "resources");
      if (r) {
        json_t *have = json_object_get(caps, "resources");
        bool sub = json_is_true(json_object_get(r, "subscribe")) || json_is_true(json_object_get(have, "subscribe"));
        json_object_set_new(caps, "resources", json_pack("{s:b,s:b}", "subscribe", sub, "listChanged", 1));
      }
      if (json_object_get(uc, "completions")) json_object_set_new(caps, "completions", json_object());
      if (json_object_get(uc, "logging")) json_object_set_new(caps, "logging", json_object());
    }
    json_decref(all);
  }
  j->result = json_pack("{s:s,s:o,s:{s:s,s:s,s:s},s:s}", "protocolVersion", ver, "capabilities", caps, "serverInfo", "name", "mcpgate", "title", "mcpgate", "version", "0.1.0",
                        "instructions",
                        "Tools of every service your organisation connected, named <service>__<tool>. Your "
                        "organisation's policy decides which tools you see.");
  x->refs++;
  if (st_submit(x->lp->srv->store, x->lp->port, job_init, done_init, j) != 0) {
    x->refs--;
    json_decref(j->result);
    free(j);
    gw__px_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}

/* ---------- dispatch ---------- */

static void agg_batch(gw_req *req, const gw_mcp_ctx *ctx, json_t *msg);
static void agg_message(px *x, json_t *msg, const char *method);

void gw_agg_dispatch(gw_req *req) {
  gw_mcp_ctx ctx;
  if (gw__mcp_ctx_of(req, true, &ctx) != 0) return;
  const char *sid = ctx.sid;
  const char *m = req->method;
  bool sess_ok = ctx.sess_ok;
  if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
    if (gw__mcp_session_checks(req, &ctx) != 0) return;
    px *x = gw__px_new(req, !strcmp(m, "GET") ? 1 /* PX_GET */ : 2 /* PX_DELETE */, &ctx);
    if (!x) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    x->agg = true;
    x->sess = ctx.sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
    if (!strcmp(m, "GET")) {
      /* a gateway-local stream: list_changed arrives here */
      x->started = true;
      if (x->m) x->m->streams++;
      gw_resp_header(req, "Mcp-Session-Id", x->sid);
      gw_resp_header(req, "Cache-Control", "no-cache");
      gw_resp_start(req, 200, "text/event-stream");
      gw_resp_write(req, ": mcpgate stream\n\n", 18);
      mux_start(x, gw_req_header(req, "last-event-id"));
      return;
    }
    gw__mcp_delete_session(x);
    return;
  }

  /* POST */
  json_t *msg = gw__mcp_parse_post(req);
  if (!msg) return;
  if (json_is_array(msg)) {
    agg_batch(req, &ctx, msg);
    json_decref(msg);
    return;
  }
  json_t *ids = json_array();
  const char *method = NULL;
  const char *why = gw__check_message(msg, ids, &method);
  if (why) {
    json_decref(ids);
    json_decref(msg);
    gw__mcp_refuse(req, 400, -32600, why);
    return;
  }
  bool is_init = method && !strcmp(method, "initialize");
  const char *pv = gw_req_header(req, "mcp-protocol-version");
  if (method && !strcmp(method, "server/discover")) {
    json_t *id = json_array_get(ids, 0);
    gw_respond_json(req, 200, json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                                        "error", "code", GW_RPC_NOT_SUPPORTED, "message",
                                        "Method not found: server/discover (this gateway speaks MCP 2025-03-26 to "
                                        "2025-11-25; use initialize)"));
    json_decref(ids);
    json_decref(msg);
    return;
  }
  if (pv && !is_init && !gw__mcp_version_supported(pv)) {
    json_decref(ids);
    json_decref(msg);
    gw__mcp_refuse(req, 400, -32000, "Bad Request: unsupported MCP-Protocol-Version");
    return;
  }
  if (!is_init && (!sid || !sess_ok)) {
    json_decref(ids);
    json_decref(msg);
    if (!sid) gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)");
    else gw__mcp_refuse(req, 404, -32001, "Session not found");
    return;
  }
  px *x = gw__px_new(req, 0 /* PX_POST */, &ctx);
  if (!x) {
    json_decref(ids);
    json_decref(msg);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  x->agg = true;
  json_decref(x->ids);
  x->ids = ids;
  if (!is_init) {
    x->sess = ctx.sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
  }
  if (is_init) initialize(x, msg);
  else agg_message(x, msg, method);
  json_decref(msg);
}

/* ---------- batches (2025-03-26) ---------- */

/* Each element runs as its own exchange whose reply lands in the batch's
 * array; the array goes back when all have answered. Inside a batch,
 * upstream streams are collected, not relayed: a server→client request
 * during a batched call cannot reach the client (send such calls alone). */
static void agg_batch(gw_req *req, const gw_mcp_ctx *ctx, json_t *msg) {
  size_t n = json_array_size(msg);
  if (!ctx->sid || !ctx->sess_ok) {
    if (!ctx->sid) gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)");
    else gw__mcp_refuse(req, 404, -32001, "Session not found");
    return;
  }
  if (strcmp(ctx->sess.version, "2025-03-26") != 0) {
    gw__mcp_refuse(req, 400, -32600, "JSON-RPC batches are only allowed with protocol version 2025-03-26");
    return;
  }
  if (!n || n > 100) {
    gw__mcp_refuse(req, 400, -32600, n ? "a batch holds at most 100 messages" : "an empty batch");
    return;
  }
  /* every element is checked before anything runs */
  json_t *all_ids = json_array();
  size_t i;
  json_t *e;
  json_array_foreach(msg, i, e) {
    const char *m = NULL;
    const char *why = gw__check_message(e, all_ids, &m);
    if (!why && m && (!strcmp(m, "initialize") || !strncmp(m, "tasks/", 6) || !strcmp(m, "server/discover")))
      why = "initialize, server/discover and tasks/* cannot be batched";
    if (why) {
      json_decref(all_ids);
      gw__mcp_refuse(req, 400, -32600, why);
      return;
    }
  }
  json_decref(all_ids);
  px *x = gw__px_new(req, 0 /* PX_POST */, ctx);
  if (!x) {
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  x->agg = true;
  x->sess = ctx->sess;
  snprintf(x->sid, sizeof x->sid, "%s", ctx->sid);
  json_t *results = json_array();
  for (i = 0; i < n; i++) json_array_append_new(results, json_null());
  x->agg_state = json_pack("{s:o}", "results", results);
  x->bpending = (int)n;
  x->refs++; /* held while the elements are started */
  json_array_foreach(msg, i, e) {
    px *c = gw__px_child(x, "");
    if (!c) {
      x->bpending--;
      continue;
    }
    c->bparent = x;
    c->bindex = (int)i;
    x->refs++;
    const char *m = NULL;
    gw__check_message(e, c->ids, &m);
    agg_message(c, e, m);
    gw__px_unref(c);
  }
  if (x->bpending == 0 && x->req) gw__px_reply_raw(x, 202, NULL, NULL, 0);
  gw__px_unref(x);
}

/* One message of an established session (alone or in a batch). */
static void agg_message(px *x, json_t *msg, const char *method) {
  json_t *ids = x->ids;
  if (!method) {
    /* a response to a server→client request we relayed */
    if (!route_answer(x, msg)) gw__px_reply_raw(x, 202, NULL, NULL, 0);
  } else if (!strcmp(method, "tools/list")) {
    agg_list(x, msg, 0);
  } else if (!strcmp(method, "prompts/list")) {
    agg_list(x, msg, 1);
  } else if (!strcmp(method, "resources/list")) {
    agg_list(x, msg, 2);
  } else if (!strcmp(method, "resources/templates/list")) {
    agg_list(x, msg, 3);
  } else if (!strcmp(method, "prompts/get") || !strcmp(method, "resources/read") ||
             !strcmp(method, "resources/subscribe") || !strcmp(method, "resources/unsubscribe") ||
             !strcmp(method, "completion/complete")) {
    agg_route(x, msg, method);
  } else if (!strcmp(method, "logging/setLevel")) {
    /* every upstream session gets the level; the client gets {} */
    client_notification(x, method, msg);
    gw__px_reply_json(x, 200, rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!strcmp(method, "tools/call")) {
    tools_call(x, msg);
  } else if (!strcmp(method, "ping")) {
    gw__px_reply_json(x, 200, rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!json_array_size(ids)) {
    /* notifications: routed to the upstreams concerned, answered 202 */
    client_notification(x, method, msg);
    gw__px_reply_raw(x, 202, NULL, NULL, 0);
  } else {
    gw__px_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "Method not found: %.100s", method);
  }
}
