/* gateway/mcp/agg.c — /t/{tenant}/mcp: the one URL employees paste. The
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
 *   batch are collected, not relayed) — agg_batch.c.
 *
 * This file: dispatch, initialize (answered by the gateway), the buffered
 * upstream steps and lazily opened upstream sessions every aggregated flow
 * shares, capability learning and probes, the per-session maps, client
 * notifications and DELETE. The flows: agg_list.c, agg_call.c, agg_mux.c,
 * agg_batch.c.
 *
 * Rules this file keeps: an aggregated exchange's state is its flow's
 * typed struct (agg.h: gw_agg_up first when it calls upstream); the
 * per-session maps are capped (SESSIONS_MAX sessions, ASKED_PER_SESSION
 * outstanding questions, agg_uri_map_max URIs) and freed with their
 * session (revocation, DELETE, the sweep); a probe's upstream session is
 * left to expire. */
#include "gateway/mcp/agg.h"

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
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/out/outbound.h"
#include "store/token.h"
#include "vault/vault.h"

/* ---------- small helpers ---------- */

static void now_rfc3339(char out[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *gw__agg_b64url(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (!out) return NULL;
  int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = 0;
  for (char *p = out; *p; p++) *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  return out;
}

json_t *gw__agg_unb64url(const char *s) {
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

json_t *gw__agg_rpc_result(const json_t *id, json_t *result) {
  return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result", result);
}

/* The connectors the user may see, in name order; with `cap`, only those
 * whose learned capabilities include it (or are not learned yet). */
json_t *gw__agg_visible(gw_exchange *x, const pol_user *pu, const char *cap) {
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

static void learn_caps(gw_exchange *x, json_t *caps);

gw_agg_up *gw__agg_up(gw_exchange *x) { return x->state; }

static void step_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  x->status = status;
  x->up_ct[0] = 0;
  x->up_sid[0] = 0;
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, "content-type")) snprintf(x->up_ct, sizeof x->up_ct, "%s", h[i].value);
    else if (!strcasecmp(h[i].name, "mcp-session-id")) snprintf(x->up_sid, sizeof x->up_sid, "%s", h[i].value);
  }
  if (!gw__x_wanted(x)) gw_out_abort(r);
}

static int step_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n) {
  if (!gw__x_wanted(x) || !gw__x_take(x, n) || gw_buf_append(&x->body, p, n) != 0) gw_out_abort(r);
  return 0;
}

static void step_done(gw_exchange *x, gw_out_req *r, int err) {
  gw_agg_up *up = gw__agg_up(x);
  (void)r;
  if (!err && (x->status == 401 || x->status == 403)) err = GW_MCP_EAUTH;
  /* 404 is what the spec says for an unknown session; the official SDK's
   * servers answer 400 "No valid session ID" — either way, retried once on
   * a fresh session (a genuine 400 fails the same way again) */
  if (!err && (x->status == 404 || x->status == 400) && x->sess.upstream[0]) err = GW_MCP_ESTALE;
  /* a 3xx is a failure too: redirects are neither followed nor relayed */
  if (gw__x_wanted(x) && up->cont) up->cont(x, err ? err : (x->status >= 300 ? GW_MCP_EHTTP : 0));
}

/* The relayed call's answer: the upstream forgot our session (restart)? */
static bool relay_stale(gw_exchange *x, int status) {
  gw_agg_up *up = gw__agg_up(x);
  if ((status == 404 || status == 400) && x->sess.upstream[0] && !up->retried) {
    up->stale = true;
    return true;
  }
  return false;
}

void gw__agg_up_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  if (gw__agg_up(x)->relaying) gw__relay_headers(x, r, status, h, n, true, relay_stale);
  else step_headers(x, r, status, h, n);
}

int gw__agg_up_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n) {
  return gw__agg_up(x)->relaying ? gw__relay_data(x, r, p, n) : step_data(x, r, p, n);
}

void gw__agg_up_done(gw_exchange *x, gw_out_req *r, int err) {
  gw_agg_up *up = gw__agg_up(x);
  if (!up->relaying) {
    step_done(x, r, err);
  } else if (up->stale && gw__x_client_alive(x) && up->cont) {
    /* retry on a fresh upstream session */
    up->stale = false;
    up->retried = true;
    up->cont(x, 0);
  } else {
    gw__relay_done(x, r, err, NULL);
  }
}

int gw__agg_step(gw_exchange *x, const char *method, json_t *body, gw_agg_step_fn cont) {
  gw_agg_up *up = gw__agg_up(x);
  char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  gw_buf_reset(&x->body);
  up->cont = cont;
  up->relaying = false;
  gw_upcall u = {0};
  u.method = method;
  u.body = s;
  u.len = s ? strlen(s) : 0;
  u.accept = "application/json, text/event-stream";
  u.protocol_version = x->sess.version;
  u.upstream_sid = x->sess.upstream;
  int rc = gw__x_upcall(x, &u);
  free(s);
  /* revoked or hidden: the client hears why; the caller's own error
   * answer then finds the exchange answered */
  if (rc == GW_UP_EREVOKED || rc == GW_UP_EHIDDEN) gw__x_start_failed(x, rc);
  return rc;
}

/* Fire-and-forget calls (notifications, upstream DELETEs) and capability
 * probes: a gw_agg_up is all their state. */
static void up_free(void *state) { free(state); }
static const gw_flow_ops note_flow = {.name = "agg-note", .up_headers = gw__agg_up_headers,
                                      .up_data = gw__agg_up_data, .up_done = gw__agg_up_done, .free = up_free};
static const gw_flow_ops probe_flow = {.name = "probe", .up_headers = gw__agg_up_headers, .up_data = gw__agg_up_data,
                                       .up_done = gw__agg_up_done, .free = up_free, .clientless = true};
const gw_flow_ops gw__agg_local_flow = {.name = "agg-local"};

/* ---------- lazily opened upstream sessions ---------- */

typedef struct usess_job {
  gw_exchange *x;
  char sid[96], connector[40], upstream[256];
} usess_job;

static int job_usess(st_txn *txn, void *arg) {
  usess_job *j = arg;
  return gw_session_upstream_put(txn, j->sid, j->connector, j->upstream);
}

static void done_usess(int status, void *arg) {
  usess_job *j = arg;
  gw_exchange *x = j->x;
  if (status >= 0) gw__agg_session_opened(x, j->connector, j->upstream);
  gw_agg_step_fn after = gw__agg_up(x)->cont;
  free(j);
  if (gw__x_client_alive(x) && after) after(x, status < 0 ? status : 0);
  gw__x_unref(x);
}

static void usess_initialized(gw_exchange *x, int err) {
  (void)err; /* a server may answer the notification oddly: the session stands */
  usess_job *j = calloc(1, sizeof *j);
  gw_agg_step_fn after = gw__agg_up(x)->after;
  gw__agg_up(x)->cont = after;
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

static void usess_initialize_done(gw_exchange *x, int err) {
  gw_agg_step_fn after = gw__agg_up(x)->after;
  json_t *id = json_string("mcpgate-init");
  json_t *msg = err ? NULL : gw__find_reply(x->body.data ? x->body.data : "", x->body.len, x->up_ct, id);
  json_decref(id);
  if (!msg || !json_is_object(json_object_get(msg, "result"))) {
    json_decref(msg);
    after(x, err ? err : GW_MCP_EREPLY); /* GW_MCP_EAUTH stays: the caller names it */
    return;
  }
  learn_caps(x, json_object_get(json_object_get(msg, "result"), "capabilities"));
  json_decref(msg);
  snprintf(x->sess.upstream, sizeof x->sess.upstream, "%s", x->up_sid);
  json_t *note = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", "notifications/initialized");
  if (gw__agg_step(x, "POST", note, usess_initialized) != 0) after(x, GW_MCP_ENOTSENT);
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
static void learn_caps(gw_exchange *x, json_t *caps) {
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

static void probe_init_done(gw_exchange *x, int err);

/* Learns a connector's capabilities right after an admin PUT: initialize
 * and note the capabilities. Fire and forget. */
void gw_agg_probe_connector(gw_loop *lp, const char *tenant, const char *connector) {
  gw_exchange *x = gw__mcp_bare(lp, tenant, connector, &probe_flow, calloc(1, sizeof(gw_agg_up)));
  if (!x) return;
  if (!x->state) {
    gw__x_unref(x);
    return;
  }
  json_t *init = json_pack("{s:s,s:s,s:s,s:{s:s,s:{},s:{s:s,s:s}}}", "jsonrpc", "2.0", "id", "mcpgate-init", "method",
                           "initialize", "params", "protocolVersion", GW_AGG_LATEST_VERSION, "capabilities", "clientInfo",
                           "name", "mcpgate", "version", "0.1.0");
  if (gw__agg_step(x, "POST", init, probe_init_done) != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "capability probe of %s not sent", connector);
  gw__x_unref(x);
}

static void probe_init_done(gw_exchange *x, int err) {
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
void gw__agg_ensure_upstream(gw_exchange *x, gw_agg_step_fn after) {
  gw_agg_up *u = gw__agg_up(x);
  st_txn *txn;
  char up[256] = "";
  if (!u->fresh_session && st_read_begin(x->lp->srv->store, &txn) == 0) {
    int rc = gw_session_upstream_get(txn, x->sid, x->connector, up);
    st_txn_end(txn);
    if (rc == 0) {
      snprintf(x->sess.upstream, sizeof x->sess.upstream, "%s", up);
      after(x, 0);
      return;
    }
  }
  x->sess.upstream[0] = 0;
  u->fresh_session = false;
  u->after = after;
  json_t *client = json_loads(x->sess.client[0] ? x->sess.client : "{}", 0, NULL);
  json_t *params = json_pack("{s:s,s:O,s:O}", "protocolVersion", x->sess.version[0] ? x->sess.version : GW_AGG_LATEST_VERSION,
                             "capabilities", json_object_get(client, "capabilities") ?: json_object(), "clientInfo",
                             json_object_get(client, "clientInfo") ?: json_pack("{s:s,s:s}", "name", "mcpgate", "version", "0.1.0"));
  json_decref(client);
  json_t *init = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", "mcpgate-init", "method", "initialize",
                           "params", params);
  if (gw__agg_step(x, "POST", init, usess_initialize_done) != 0) after(x, GW_MCP_ENOTSENT);
}


/* Per-session state in memory, in two maps keyed by the gateway session
 * id (p->agg_uris: resource routes; p->asked: outstanding server→client
 * requests). Each session's object records its owner under "!o"
 * ("tenant\nuser") so revocations free it; the sweep on the session purge
 * timer frees those of sessions evicted or expired. At most SESSIONS_MAX
 * sessions per map (the oldest goes). */
#define SESSIONS_MAX 10000
#define ASKED_PER_SESSION 64

static json_t *session_obj(json_t **map, const gw_exchange *x, bool create) {
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

/* Resource URIs (and template prefixes) seen in lists and results, per
 * client session: resources keep their URIs, so reads route by this map.
 * The first connector in name order wins a collision (logged). */


void gw__agg_uri_note(gw_exchange *x, const char *uri, bool is_template) {
  if (!uri || !*uri || !x->connector[0]) return;
  json_t *m = session_obj(&gw__mcp_of(x->lp)->agg_uris, x, true);
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
const char *gw__agg_uri_route(gw_exchange *x, const char *uri) {
  json_t *m = gw__mcp_of(x->lp)->agg_uris ? json_object_get(gw__mcp_of(x->lp)->agg_uris, x->sid) : NULL;
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
static void note_result_uris(gw_exchange *x, const json_t *result) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(result, "content"), i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type) continue;
    if (!strcmp(type, "resource_link")) gw__agg_uri_note(x, json_string_value(json_object_get(e, "uri")), false);
    else if (!strcmp(type, "resource"))
      gw__agg_uri_note(x, json_string_value(json_object_get(json_object_get(e, "resource"), "uri")), false);
  }
}

/* Outstanding server→client requests: noted when relayed, taken once by
 * the client's answer. Past ASKED_PER_SESSION the session's oldest is
 * forgotten (its late answer is dropped, as an unknown one is): one
 * session's upstream cannot push out another session's questions. */
static void asked_note(gw_exchange *x, const char *enc) {
  if (!x->sid[0]) return;
  json_t *m = session_obj(&gw__mcp_of(x->lp)->asked, x, true);
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

bool gw__agg_asked_take(gw_exchange *x, const char *connector, const char *enc) {
  json_t *m = session_obj(&gw__mcp_of(x->lp)->asked, x, false);
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
  sweep_in(p->asked, txn, now_ms, &p->lp->srv->sess_limits);
  sweep_in(p->agg_uris, txn, now_ms, &p->lp->srv->sess_limits);
}

bool gw__agg_rewrite(gw_exchange *x, json_t *msg) {
  if (json_is_object(msg) && json_is_object(json_object_get(msg, "result")))
    note_result_uris(x, json_object_get(msg, "result"));
  if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) return false;
  json_t *id = json_object_get(msg, "id");
  if (!id) return false; /* a notification: relayed as is */
  char *enc = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!enc) return false;
  char buf[600];
  snprintf(buf, sizeof buf, GW_AGG_ID_PREFIX "%s:%s", x->connector, enc);
  if (strlen(enc) < 500) asked_note(x, enc); /* longer: its answer could not route back anyway */
  free(enc);
  json_object_set_new(msg, "id", json_string(buf));
  return true;
}

/* ---------- client notifications ---------- */

/* Fire and forget: msg (stolen) to one connector's upstream session. */
static void forward_note(gw_exchange *parent, const char *connector, const char *upstream, json_t *msg) {
  gw_exchange *c = gw__mcp_child(parent, connector, &note_flow, calloc(1, sizeof(gw_agg_up)));
  if (c && !c->state) {
    gw__x_unref(c);
    c = NULL;
  }
  if (!c) {
    json_decref(msg);
    return;
  }
  snprintf(c->sess.upstream, sizeof c->sess.upstream, "%s", upstream);
  if (gw__agg_step(c, "POST", msg, NULL) != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "notification to connector %s not sent", connector);
  gw__x_unref(c);
}

/* DELETE each upstream session of {connector: upstream id}. */
static void end_upstreams(gw_exchange *x, json_t *ups) {
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) {
    gw_exchange *c = gw__mcp_child(x, conn, &note_flow, calloc(1, sizeof(gw_agg_up)));
    if (c && !c->state) {
      gw__x_unref(c);
      c = NULL;
    }
    if (!c) continue;
    snprintf(c->sess.upstream, sizeof c->sess.upstream, "%s", json_string_value(up));
    gw__agg_step(c, "DELETE", NULL, NULL);
    gw__x_unref(c);
  }
}

/* notifications/cancelled goes to the upstream that runs the request;
 * anything else (roots/list_changed, …) to every upstream session of the
 * client session. Answered 202 either way. */
void gw__agg_notify_upstreams(gw_exchange *x, const char *method, json_t *msg) {
  if (!strcmp(method, "notifications/initialized")) return;
  if (!strcmp(method, "notifications/cancelled")) {
    json_t *rid = json_object_get(json_object_get(msg, "params"), "requestId");
    /* no callback runs in this walk: it returns after creating (appending)
     * one exchange */
    for (gw_exchange *o = gw__mcp_of(x->lp)->reg.list; rid && o; o = o->next) {
      if (o == x || !gw__agg_is_call(o) || !o->connector[0] || strcmp(o->sid, x->sid) || !o->out) continue;
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
  gw_exchange *x;
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
  gw_exchange *x = j->x;
  if (status == GW_UP_EREVOKED) {
    gw__x_start_failed(x, status);
  } else if (status < 0) {
    gw__x_rpc_error(x, 503, -32603, "the gateway could not store the session: %s", st_strerror(status));
  } else {
    snprintf(x->sid, sizeof x->sid, "%s", j->sid);
    gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(x->ids, 0), json_incref(j->result)));
  }
  json_decref(j->result);
  OPENSSL_cleanse(j->sid, sizeof j->sid);
  free(j);
  gw__x_unref(x);
}

static void initialize(gw_exchange *x, json_t *msg) {
  json_t *params = json_object_get(msg, "params");
  const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
  const char *ver = asked && gw__mcp_version_supported(asked) ? asked : GW_AGG_LATEST_VERSION;
  init_job *j = calloc(1, sizeof *j);
  if (!j || st_token_new(GW_SESSION_PREFIX, j->sid, sizeof j->sid) != 0) {
    free(j);
    gw__x_rpc_error(x, 500, -32603, "the gateway could not create a session");
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
    gw__x_rpc_error(x, 503, -32603, "the gateway is busy; retry");
  }
}

/* ---------- DELETE ---------- */

/* The session's upstream sessions, read before the record goes: ended
 * after it went. */
typedef struct delete_state {
  json_t *ups; /* {connector: upstream session id} */
} delete_state;

static void delete_free(void *state) {
  delete_state *d = state;
  json_decref(d->ups);
  free(d);
}

static const gw_flow_ops delete_flow = {.name = "agg-delete", .free = delete_free};

static void end_session_stream(gw_exchange *o, void *arg) {
  gw_exchange *x = arg;
  if (o != x && gw__agg_is_stream(o, x->sid)) gw__x_end(o);
}

static void session_deleted(gw_exchange *x) {
  delete_state *d = x->state;
  /* its open GET streams end, and its upstream sessions */
  gw__x_foreach(&gw__mcp_of(x->lp)->reg, end_session_stream, x);
  end_upstreams(x, d->ups);
  gw__agg_forget_session(gw__mcp_of(x->lp), x->sid);
}

/* ---------- dispatch ---------- */

void gw_agg_dispatch(gw_req *req) {
  gw_mcp_ctx ctx;
  if (gw__mcp_ctx_of(req, true, &ctx) != 0) return;
  const char *sid = ctx.sid;
  const char *m = req->method;
  bool sess_ok = ctx.sess_ok;
  if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
    if (gw__mcp_session_checks(req, &ctx) != 0) return;
    bool get = !strcmp(m, "GET");
    gw_exchange *x = gw__mcp_exchange(req, get ? GW_X_GET : GW_X_DELETE, &ctx, &gw__agg_local_flow, NULL);
    if (!x) {
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    x->sess = ctx.sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
    if (get) {
      gw__agg_stream(x, gw_req_header(req, "last-event-id"));
      return;
    }
    /* the upstream sessions it opened: ended after the record goes */
    delete_state *d = calloc(1, sizeof *d);
    st_txn *txn;
    if (d && st_read_begin(x->lp->srv->store, &txn) == 0) {
      d->ups = gw_session_upstreams(txn, x->sid);
      st_txn_end(txn);
    }
    if (d) gw__x_set_flow(x, &delete_flow, d);
    gw__mcp_delete_session(x, d ? session_deleted : NULL);
    return;
  }

  /* POST */
  json_t *msg = gw__mcp_parse_post(req);
  if (!msg) return;
  if (json_is_array(msg)) {
    gw__agg_batch(req, &ctx, msg);
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
  gw_exchange *x = gw__mcp_exchange(req, GW_X_POST, &ctx, &gw__agg_local_flow, NULL);
  if (!x) {
    json_decref(ids);
    json_decref(msg);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  json_decref(x->ids);
  x->ids = ids;
  if (!is_init) {
    x->sess = ctx.sess;
    snprintf(x->sid, sizeof x->sid, "%s", sid);
  }
  if (is_init) initialize(x, msg);
  else gw__agg_message(x, msg, method);
  json_decref(msg);
}

void gw__agg_message(gw_exchange *x, json_t *msg, const char *method) {
  json_t *ids = x->ids;
  if (!method) {
    /* a response to a server→client request we relayed */
    if (!gw__agg_route_answer(x, msg)) gw__x_reply_raw(x, 202, NULL, NULL, 0);
  } else if (!strcmp(method, "tools/list")) {
    gw__agg_list(x, msg, 0);
  } else if (!strcmp(method, "prompts/list")) {
    gw__agg_list(x, msg, 1);
  } else if (!strcmp(method, "resources/list")) {
    gw__agg_list(x, msg, 2);
  } else if (!strcmp(method, "resources/templates/list")) {
    gw__agg_list(x, msg, 3);
  } else if (!strcmp(method, "prompts/get") || !strcmp(method, "resources/read") ||
             !strcmp(method, "resources/subscribe") || !strcmp(method, "resources/unsubscribe") ||
             !strcmp(method, "completion/complete")) {
    gw__agg_route(x, msg, method);
  } else if (!strcmp(method, "logging/setLevel")) {
    /* every upstream session gets the level; the client gets {} */
    gw__agg_notify_upstreams(x, method, msg);
    gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!strcmp(method, "tools/call")) {
    gw__agg_tools_call(x, msg);
  } else if (!strcmp(method, "ping")) {
    gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(ids, 0), json_object()));
  } else if (!json_array_size(ids)) {
    /* notifications: routed to the upstreams concerned, answered 202 */
    gw__agg_notify_upstreams(x, method, msg);
    gw__x_reply_raw(x, 202, NULL, NULL, 0);
  } else {
    gw__x_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "Method not found: %.100s", method);
  }
}
