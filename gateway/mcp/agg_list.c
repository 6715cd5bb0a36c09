/* gateway/mcp/agg_list.c — the aggregated lists: tools/list, prompts/list,
 * resources/list and resources/templates/list across every connector the
 * user's policy shows (one flow, its own typed state).
 *
 * Rules this file keeps: connectors are walked in name order, one upstream
 * page per client page; tools and prompts are named {connector}__{name}
 * and tools are filtered by policy; cursors are opaque (base64url of
 * {"c":connector,"u":upstream cursor}) and a bad one is -32602; a connector
 * that fails is skipped with a warning (its items disappear until it
 * recovers); resource URIs and template prefixes join the session's route
 * map (agg.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/tool_list.h"

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

/* The list flow's state. */
typedef struct list_state {
  gw_agg_up up;    /* first: the upstream steps (agg.h) */
  int kind;        /* index in kinds */
  json_t *visible; /* connector names, in name order (a JSON array of strings) */
  size_t ci;       /* the connector this page comes from */
  char *u;         /* the upstream cursor to resume that connector with, or NULL */
} list_state;

static list_state *ls(gw_exchange *x) { return x->state; }

static void list_free(void *state) {
  list_state *st = state;
  json_decref(st->visible);
  free(st->u);
  free(st);
}

/* A connector hidden from the user while its page is fetched (the
 * recheck, revoke.c): that transfer stops and the list goes on without
 * its items, as for a connector that fails; anything else as usual. */
static void list_revoke(gw_exchange *x, const gw_revocation *r) {
  if (r->hidden) gw__x_abort_upstream(x);
  else gw__x_on_revoke(x, r);
}

static const gw_flow_ops list_flow = {.name = "agg-list", .up_headers = gw__agg_up_headers,
                                      .up_data = gw__agg_up_data, .up_done = gw__agg_up_done,
                                      .on_revoke = list_revoke, .free = list_free};

static const list_kind *kind_of(gw_exchange *x) { return &kinds[ls(x)->kind]; }

static void list_fetch(gw_exchange *x);

/* The client's cursor for the page after this one (malloc'd, or NULL). */
static char *next_cursor(const char *next_c, const char *next_u) {
  json_t *cur = json_pack("{s:s,s:s?}", "c", next_c, "u", next_u);
  char *s = json_dumps(cur, JSON_COMPACT);
  json_decref(cur);
  char *b = s ? gw__agg_b64url(s) : NULL;
  free(s);
  return b;
}

static void list_reply(gw_exchange *x, json_t *items, const char *next_c, const char *next_u) {
  json_t *result = json_object();
  json_object_set_new(result, kind_of(x)->key, items);
  if (next_c) {
    char *b = next_cursor(next_c, next_u);
    if (b) json_object_set_new(result, "nextCursor", json_string(b));
    free(b);
  }
  gw__x_reply_json(x, 200, gw__agg_rpc_result(json_array_get(x->ids, 0), result));
}

/* The page after connector index ci: the next connector, from its start. */
static void list_advance(gw_exchange *x, json_t *items) {
  json_t *vis = ls(x)->visible;
  size_t ci = ls(x)->ci;
  const char *next = json_string_value(json_array_get(vis, ci + 1));
  list_reply(x, items, next, NULL);
}

static void list_session_ready(gw_exchange *x, int err);

/* item (a copy, stolen) named "{connector}__{its name}", whole: a name cut
 * to a buffer was listed under a name no call could use, and a cut inside
 * a UTF-8 sequence left the upstream's own name in place (any prefix it
 * liked, another connector's too). NULL — left out — when it cannot be. */
static json_t *renamed(const char *connector, json_t *item) {
  json_t *nv = json_object_get(item, "name");
  const char *name = json_string_value(nv);
  size_t cl = strlen(connector), nl = name ? json_string_length(nv) : 0;
  char *full = name ? malloc(cl + 2 + nl) : NULL;
  json_t *s = NULL;
  if (full) {
    memcpy(full, connector, cl);
    memcpy(full + cl, "__", 2);
    memcpy(full + cl + 2, name, nl);
    s = json_stringn(full, cl + 2 + nl);
    free(full);
  }
  if (!s || json_object_set_new(item, "name", s) != 0) {
    json_decref(item);
    return NULL;
  }
  return item;
}

/* One item of an upstream page, as the client sees it; NULL to leave out. */
static json_t *list_item(gw_exchange *x, const pol_user *pu, json_t *it) {
  const list_kind *k = kind_of(x);
  if (!strcmp(k->key, "tools")) {
    const char *name = json_string_value(json_object_get(it, "name"));
    if (!name || !pu) return NULL;
    json_t *one = json_pack("{s:{s:[O]}}", "result", "tools", it);
    pol_filter_tools(pu, x->connector, one);
    json_t *kept = json_array_get(json_object_get(json_object_get(one, "result"), "tools"), 0);
    json_t *copy = kept ? json_deep_copy(kept) : NULL;
    json_decref(one);
    return renamed(x->connector, copy);
  }
  if (!strcmp(k->key, "prompts")) {
    if (!json_string_value(json_object_get(it, "name"))) return NULL;
    return renamed(x->connector, json_deep_copy(it));
  }
  if (!strcmp(k->key, "resources")) gw__agg_uri_note(x, json_string_value(json_object_get(it, "uri")), false);
  else gw__agg_uri_note(x, json_string_value(json_object_get(it, "uriTemplate")), true);
  return json_incref(it);
}

/* A tools/list page on its bytes (tool_list.h): the upstream's reply found
 * by a scan, the tools the user may see copied with their aggregated names
 * instead of parsed, copied one by one and re-serialised (1.7 ms of the
 * loop for 500 tools). false: undecided — the tree path answers, as it
 * does every error and every other list. */
static bool list_tools_bytes(gw_exchange *x) {
  static const char *const paths[] = {"id", "result", "error", "method", "result.tools", "result.nextCursor"};
  gw_json_span got[6];
  gw_buf msg, items, out;
  gw_buf_init(&msg, GW_MCP_MAX_JSON_BODY);
  gw_buf_init(&items, GW_MCP_MAX_JSON_BODY);
  gw_buf_init(&out, GW_MCP_MAX_JSON_BODY);
  bool done = false, changed;
  char *ucur = NULL, *cursor = NULL, *id = NULL;
  if (x->into || !x->body.len ||
      gw__find_reply_text(x->body.data, x->body.len, x->up_ct, "\"mcpgate-list\"", &msg, paths, 6, got) != 1)
    goto out;
  gw_json_span tools = got[4], cur = got[5];
  if (!tools.p || tools.p[0] != '[') goto out; /* no list: the tree path says why */
  if (cur.p && (cur.p[0] != '"' || memchr(cur.p, '\\', cur.n))) goto out;
  if (gw__tool_list_filter(gw__policy_for(x->lp, x->tenant, x->user), x->connector, true, tools.p, tools.n, &items,
                           &changed) != 1)
    goto out;
  if (cur.p && !(ucur = strndup(cur.p + 1, cur.n - 2))) goto out;
  const char *next_c = ucur ? x->connector : json_string_value(json_array_get(ls(x)->visible, ls(x)->ci + 1));
  if (next_c && !(cursor = next_cursor(next_c, ucur))) goto out;
  json_t *cid = json_array_get(x->ids, 0);
  if (!(id = json_dumps(cid ? cid : json_null(), JSON_ENCODE_ANY | JSON_COMPACT))) goto out;
  if (gw_buf_appendv(&out, "{\"jsonrpc\":\"2.0\",\"id\":", id, ",\"result\":{\"tools\":", NULL) ||
      gw_buf_append(&out, items.data, items.len) ||
      (cursor && gw_buf_appendv(&out, ",\"nextCursor\":\"", cursor, "\"", NULL)) || gw_buf_appends(&out, "}}"))
    goto out;
  gw__x_reply_raw(x, 200, "application/json", out.data, out.len);
  done = true;
out:
  free(id);
  free(cursor);
  free(ucur);
  gw_buf_free(&out);
  gw_buf_free(&items);
  gw_buf_free(&msg);
  return done;
}

static void list_page_done(gw_exchange *x, int err) {
  if (err == GW_MCP_ESTALE && !ls(x)->up.retried) {
    ls(x)->up.retried = true;
    ls(x)->up.fresh_session = true;
    gw__agg_ensure_upstream(x, list_session_ready);
    return;
  }
  const list_kind *k = kind_of(x);
  if (!err && !strcmp(k->key, "tools") && list_tools_bytes(x)) return;
  json_t *id = json_string("mcpgate-list");
  json_t *msg = err ? NULL : gw__x_find_reply(x, id);
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
             x->over_budget ? "its reply did not fit the budget of buffered replies (mcp_buffered_max)"
             : x->too_big   ? "its reply was larger than the gateway accepts"
             : x->json_refused ? "its reply would take more JSON to check than mcp_json_mib_per_user or mcp_json_mib_per_tenant has left"
             : err == GW_MCP_EAUTH ? "credential refused"
             : err                 ? "unavailable"
                                   : "invalid reply");
      if (x->m) GW_STAT_ADD(x->m->errors, 1);
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

static void list_session_ready(gw_exchange *x, int err) {
  if (err == GW_MCP_ECONNECT) {
    /* not connected yet: one tool that says how, instead of its tools */
    json_t *items = json_array();
    if (!strcmp(kind_of(x)->key, "tools")) json_array_append_new(items, gw__agg_connect_tool(x, x->connector));
    list_advance(x, items);
    return;
  }
  if (err) {
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s: no upstream session (%s); its items are left out", x->connector, gw_mcp_strerror(err));
    list_advance(x, json_array());
    return;
  }
  json_t *params = json_object();
  const char *u = ls(x)->u;
  if (u) json_object_set_new(params, "cursor", json_string(u));
  json_t *req = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", "mcpgate-list", "method", kind_of(x)->method,
                          "params", params);
  free(ls(x)->u); /* only the first page of this connector resumes */
  ls(x)->u = NULL;
  if (gw__agg_step(x, "POST", req, list_page_done) != 0) list_advance(x, json_array());
}

static void list_fetch(gw_exchange *x) {
  const char *c = json_string_value(json_array_get(ls(x)->visible, ls(x)->ci));
  if (!c) {
    list_reply(x, json_array(), NULL, NULL);
    return;
  }
  snprintf(x->connector, sizeof x->connector, "%s", c);
  gw__mcp_count(x, c);
  gw__agg_ensure_upstream(x, list_session_ready);
}

void gw__agg_list(gw_exchange *x, json_t *msg, int kind) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now (fail closed)");
    return;
  }
  list_state *st = calloc(1, sizeof *st);
  if (!st) {
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  json_t *vis = gw__agg_visible(x, pu, kinds[kind].cap);
  st->visible = vis;
  st->kind = kind;
  gw__x_set_flow(x, &list_flow, st);
  const char *cursor = json_string_value(json_object_get(json_object_get(msg, "params"), "cursor"));
  if (cursor) {
    json_t *cur = gw__agg_unb64url(cursor);
    const char *c = json_string_value(json_object_get(cur, "c"));
    json_t *u = json_object_get(cur, "u");
    size_t i;
    json_t *v;
    int found = -1;
    if (c) json_array_foreach(vis, i, v) if (!strcmp(json_string_value(v), c)) found = (int)i;
    if (found < 0 || (u && !json_is_string(u) && !json_is_null(u))) {
      json_decref(cur);
      gw__x_rpc_error(x, 200, -32602, "Invalid params: unknown or expired cursor");
      return;
    }
    st->ci = (size_t)found;
    if (json_is_string(u)) st->u = strdup(json_string_value(u));
    json_decref(cur);
  }
  list_fetch(x);
}

