/* gateway/mcp/agg_batch.c — JSON-RPC batches on the aggregated endpoint
 * (protocol 2025-03-26 only): the collector flow, with its own typed state.
 *
 * Rules this file keeps: every element is checked before anything runs;
 * each element runs as its own exchange whose client half is a slot here
 * (gw__x_collect_into: it holds a reference on the collector), and the
 * array goes back when all have answered (202 when none had an id); the
 * replies together are capped like a request body (mcp_max_body), counted
 * as their bytes arrive (take), and an element past the cap is answered
 * with an error instead. Inside a batch, upstream streams are collected,
 * not relayed: a server→client request during a batched call cannot reach
 * the client (send such calls alone).
 *
 * Every message counts against the user's mcp_concurrent_per_user (one
 * unit each, taken on the batch's request before anything runs: 429 when
 * they do not fit), as it would sent alone: each runs at once, with an
 * upstream transfer of its own, and one request must not hold a hundred
 * upstream connections on one unit; a notification (or logging/setLevel),
 * which goes to every upstream session of the session, counts one for each
 * (agg.c's forwards; its element answers once they are done). For the
 * same reason the batch's
 * client leaving ends every element still running, as it ends a call sent
 * alone: the collector keeps a reference on each element for that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/core/limits.h"
#include "gateway/mcp/agg.h"

typedef struct batch_state {
  json_t *results; /* one slot per element (null until answered): the reply array */
  int pending;     /* elements still to answer */
  size_t bytes;    /* bytes of the replies collected so far */
  gw_exchange **el; /* the elements (references; NULL where none was made) */
  size_t n;         /* the batch's messages: el's length */
} batch_state;

static void batch_free(void *state) {
  batch_state *st = state;
  json_decref(st->results);
  for (size_t i = 0; st->el && i < st->n; i++)
    if (st->el[i]) gw__x_unref(st->el[i]);
  free(st->el);
  free(st);
}

/* The client half ended: answered (nothing left running), or gone before
 * every element answered (those end too). Neither uncollect nor an abort
 * calls back synchronously. */
static void batch_end(gw_exchange *x) {
  batch_state *st = x->state;
  if (!st || st->pending <= 0) return;
  for (size_t i = 0; st->el && i < st->n; i++)
    if (st->el[i] && st->el[i]->into == x) gw__x_uncollect(st->el[i]);
}

static size_t budget(gw_exchange *x) { return (size_t)x->lp->srv->cfg.mcp_max_body; }

static bool batch_take(gw_exchange *x, size_t n) {
  batch_state *st = x->state;
  st->bytes += n;
  return st->bytes <= budget(x);
}

/* An element's reply (j stolen; NULL: none) for slot. */
static void batch_collect(gw_exchange *x, int slot, json_t *j) {
  batch_state *st = x->state;
  if (j && st->bytes > budget(x)) {
    json_t *id = json_incref(json_object_get(j, "id"));
    json_decref(j);
    j = json_pack("{s:s,s:o,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", "code", -32603,
                  "message", "the batch's replies are larger than the gateway collects (mcp_max_body); send these "
                  "requests one by one");
  }
  if (j) json_array_set_new(st->results, (size_t)slot, j);
  if (--st->pending == 0) {
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(st->results, i, e) if (!json_is_null(e)) json_array_append(out, e);
    if (json_array_size(out)) gw__x_reply_json(x, 200, out);
    else {
      json_decref(out);
      gw__x_reply_raw(x, 202, NULL, NULL, 0);
    }
  }
}

static const gw_flow_ops batch_flow = {
    .name = "agg-batch", .client_end = batch_end, .collect = batch_collect, .take = batch_take, .free = batch_free};

/* Each element runs as its own exchange whose reply lands in the batch's
 * array; the array goes back when all have answered. Inside a batch,
 * upstream streams are collected, not relayed: a server→client request
 * during a batched call cannot reach the client (send such calls alone). */
void gw__agg_batch(gw_req *req, const gw_mcp_ctx *ctx, json_t *msg) {
  size_t n = json_array_size(msg);
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
  size_t i, fans = 0;
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
    if (gw__agg_fans_out(m, json_object_get(e, "id") != NULL)) fans++;
  }
  json_decref(all_ids);
  /* one unit per message, and a message that goes to every upstream
   * session (a notification) one per upstream: the request holds one
   * already (its end gives back every unit it holds) */
  size_t width = fans ? gw__agg_fanout_width(req->lp, ctx->tenant, ctx->user, ctx->sid) : 0;
  int64_t units = (int64_t)n - 1 + (width > 1 ? (int64_t)fans * (int64_t)(width - 1) : 0);
  if (units > 1000000 || !gw_limits_mcp_more(req, (int)units)) {
    gw_resp_header(req, "Retry-After", "1");
    gw__mcp_refuse(req, 429, -32000,
                   "too many MCP requests (mcp_concurrent_per_user): each message of a batch counts (a notification once "
                   "for each upstream it goes to); retry after "
                   "Retry-After seconds, or send fewer at once");
    return;
  }
  batch_state *st = calloc(1, sizeof *st);
  gw_exchange **el = st ? calloc(n, sizeof *el) : NULL;
  if (st && !el) {
    free(st);
    st = NULL;
  }
  if (st) {
    st->el = el;
    st->n = n;
  }
  gw_exchange *x = gw__mcp_exchange(req, GW_X_POST, ctx, &batch_flow, st);
  if (!x || !st) {
    if (x) gw__x_client_done(x);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  x->sess = ctx->sess;
  snprintf(x->sid, sizeof x->sid, "%s", ctx->sid);
  json_t *results = json_array();
  for (i = 0; i < n; i++) json_array_append_new(results, json_null());
  st->results = results;
  st->pending = (int)n;
  x->refs++; /* held while the elements are started */
  json_array_foreach(msg, i, e) {
    gw_exchange *c = gw__mcp_child(x, "", &gw__agg_local_flow, NULL);
    if (!c) {
      st->pending--;
      continue;
    }
    gw__x_collect_into(c, x, (int)i);
    st->el[i] = c;
    gw__x_ref(c);
    const char *m = NULL;
    gw__check_message(e, c->ids, &m);
    gw__agg_message(c, e, m);
    gw__x_unref(c);
  }
  if (st->pending == 0 && x->req) gw__x_reply_raw(x, 202, NULL, NULL, 0);
  gw__x_unref(x);
}

