/* gateway/mcp/exchange.c — the exchange lifecycle (see exchange.h).
 *
 * Rules this file keeps, and why:
 *
 *  1. An exchange is freed only by its last gw__x_unref. Each holder takes
 *     its own reference: the client half (from gw__x_attach to
 *     gw__x_client_done), every running transfer (upcall.c), every writer
 *     job, a batch element on its collector, a feed on the stream it feeds,
 *     a retry timer, and every walk. So no callback of one half can free
 *     the exchange under a running callback of the other (STYLE.md anti-
 *     pattern 1).
 *
 *  2. The registry is only walked through gw__x_foreach, which references
 *     every exchange up to the tail it saw before calling anything, and
 *     drops exactly those references after: the callback may end, free or
 *     create exchanges; created ones are appended after the walk's last
 *     and not visited (anti-pattern 6). While held, head..last stay listed.
 *
 *  3. The flow's state is the flow's: the exchange never looks inside it,
 *     and frees it once, through flow->free, when the exchange goes.
 *
 *  4. Nothing here needs the server: identity matching, references, the
 *     registry and its expiry heap run on a bare loop
 *     (tests/unit/test_exchange.c). Only the client half (replies,
 *     back-pressure) touches gw_req.
 *
 *  5. The expiry heap holds exchanges, not references: an exchange leaves
 *     it when its client half ends (gw__x_client_done) or, at the latest,
 *     when it is freed. The timer's walk pops what is due into a list and
 *     references each before ending any (rule 2's discipline): an ending
 *     that frees or ends another exchange finds it out of the heap. A
 *     revocation and the expiry meet at the client half: whichever ends it
 *     first takes it out of the heap and clears x->req, and the other
 *     finds nothing left to close. */
#include "gateway/mcp/exchange.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/base/pool.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/decide.h"
#include "gateway/core/limits.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"
#include "gateway/mcp/mcp_proxy.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/stats.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"

#define REVOKED_MSG "access revoked: your account, your token, this connector or this tenant was disabled"

/* ---------- references and the registry ---------- */

static void link_tail(gw_xreg *reg, gw_exchange *x) {
  x->next = NULL;
  x->prev = reg->tail;
  if (reg->tail) reg->tail->next = x;
  else reg->list = x;
  reg->tail = x;
  x->listed = true;
}

/* Exchanges are 2.3 KiB (the session record inside): past malloc's
 * per-thread cache, so they are kept per loop thread instead. */
static _Thread_local gw_pool x_pool = GW_POOL(sizeof(gw_exchange), 256);

gw_exchange *gw__x_new(gw_xreg *reg, gw_loop *lp, const char *tenant, const char *connector, const char *user,
                       const char *tokid, const gw_flow_ops *flow, void *state) {
  gw_exchange *x = gw_pool_zget(&x_pool);
  json_t *ids = json_array();
  if (!x || !ids) {
    gw_pool_put(&x_pool, x);
    json_decref(ids);
    if (flow && flow->free && state) flow->free(state);
    return NULL;
  }
  x->reg = reg;
  x->lp = lp;
  x->refs = 1;
  x->ids = ids;
  x->flow = flow;
  x->state = state;
  gw_strlcpy(x->tenant, tenant ? tenant : "", sizeof x->tenant);
  gw_strlcpy(x->connector, connector ? connector : "", sizeof x->connector);
  gw_strlcpy(x->user, user ? user : "", sizeof x->user);
  gw_strlcpy(x->tokid, tokid ? tokid : "", sizeof x->tokid);
  gw_buf_init(&x->body, GW_MCP_MAX_JSON_BODY);
  gw_buf_init(&x->ev, GW_MCP_MAX_SSE_EVENT);
  /* large replies count against the tenant's and the process's budget
   * (mcp_buffered_max): found by review, a tenant admin's connector
   * stalling 100 replies short of their end held 1.6 GB of the process */
  gw_buf_meter *meter = gw__mcp_meter(lp, x->tenant); /* no loop (a unit test's exchange): none */
  gw_buf_meter_attach(&x->body, meter);
  gw_buf_meter_attach(&x->ev, meter);
  if (reg) link_tail(reg, x);
  return x;
}

void gw__x_set_flow(gw_exchange *x, const gw_flow_ops *flow, void *state) {
  if (x->flow && x->flow->free && x->state) x->flow->free(x->state);
  x->flow = flow;
  x->state = state;
}

void gw__x_ref(gw_exchange *x) { x->refs++; }

void gw__x_unref(gw_exchange *x) {
  if (--x->refs > 0) return;
  if (x->listed) {
    if (x->prev) x->prev->next = x->next;
    else x->reg->list = x->next;
    if (x->next) x->next->prev = x->prev;
    else x->reg->tail = x->prev;
  }
  gw_exchange *into = x->into;
  gw__x_expiry_unwatch(x);
  if (x->audit || x->audit_nbatch) gw__audit_call_end(x); /* the call's record(s), with what the upstream answered */
  if (x->flow && x->flow->free && x->state) x->flow->free(x->state);
  gw__held_free(x);
  json_decref(x->ids);
  json_decref(x->replied);
  json_decref(x->sess_bind);
  gw__usess_end_free(x->opening); /* wiped */
  gw_buf_free(&x->body);
  gw_buf_free(&x->ev);
  gw_pool_put(&x_pool, x);
  if (into) gw__x_unref(into);
}

void gw__x_foreach(gw_xreg *reg, void (*fn)(gw_exchange *x, void *arg), void *arg) {
  gw_exchange *last = reg ? reg->tail : NULL;
  if (!last) return;
  for (gw_exchange *x = reg->list;; x = x->next) {
    x->refs++;
    if (x == last) break;
  }
  for (gw_exchange *x = reg->list;; x = x->next) {
    fn(x, arg);
    if (x == last) break;
  }
  for (gw_exchange *x = reg->list, *n;; x = n) {
    bool end = x == last;
    n = x->next;
    gw__x_unref(x);
    if (end) break;
  }
}

void gw__x_reg_close(gw_xreg *reg) {
  gw_exchange *list = reg->list;
  reg->list = reg->tail = NULL;
  /* the heap goes with the registry: what ends below or later is no
   * longer in it */
  for (size_t i = 0; i < reg->ndue; i++) reg->due[i]->due_at = 0;
  free(reg->due);
  reg->due = NULL;
  reg->ndue = reg->capdue = 0;
  reg->armed = 0;
  reg->arm = NULL;
  for (gw_exchange *x = list; x; x = x->next) {
    x->refs++;
    x->listed = false;
    x->m = NULL;
  }
  for (gw_exchange *x = list; x; x = x->next) gw__x_end(x);
  for (gw_exchange *x = list, *n; x; x = n) {
    n = x->next;
    gw__x_unref(x);
  }
}

/* ---------- revocation ---------- */

bool gw__x_matches(const gw_exchange *x, const gw_revocation *r) {
  if (strcmp(x->tenant, r->tenant)) return false;
  if (r->user[0] && strcmp(x->user, r->user)) return false;
  if (r->connector[0] && strcmp(x->connector, r->connector)) return false;
  if (r->tokid[0] && strcmp(x->tokid, r->tokid)) return false;
  return true;
}

void gw__x_revoke_one(gw_exchange *x, const gw_revocation *r) {
  if (x->flow && x->flow->on_revoke) x->flow->on_revoke(x, r);
  else gw__x_on_revoke(x, r);
}

static void revoke_one(gw_exchange *x, void *arg) {
  const gw_revocation *r = arg;
  if (gw__x_matches(x, r)) gw__x_revoke_one(x, r);
}

void gw__x_revoke(gw_xreg *reg, const gw_revocation *r) { gw__x_foreach(reg, revoke_one, (void *)r); }

static void end_with(gw_exchange *x, const char *why);

void gw__x_on_revoke(gw_exchange *x, const gw_revocation *r) {
  bool stream = x->kind == GW_X_GET && x->started && x->req;
  if (stream && (r->notify || r->hidden)) {
    /* the client's GET stream learns that its tool list changed */
    static const char ev[] =
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
    gw_resp_write(x->req, ev, sizeof ev - 1);
  }
  if (r->hidden) {
    char why[200];
    snprintf(why, sizeof why,
             "access revoked: connector \"%s\" is no longer available to you (your groups or the policy changed)",
             x->connector);
    end_with(x, why);
  } else if (!r->notify) {
    gw__x_end(x);
  }
}

static void end_with(gw_exchange *x, const char *why) {
  x->revoked = true;
  gw__x_abort_upstream(x);
  if (x->req && x->started) {
    gw_req *r = x->req;
    gw__x_client_done(x);
    gw_req_drop(r); /* cuts the stream (what was written before still goes) */
  } else if (gw__x_client_alive(x)) {
    gw__x_rpc_error(x, 403, GW_RPC_REVOKED, "%s", why);
  }
}

void gw__x_end(gw_exchange *x) { end_with(x, REVOKED_MSG); }

void gw__x_end_why(gw_exchange *x, const char *why) { end_with(x, why); }

/* ---------- the token's expiry (rule 5) ---------- */

static void due_set(gw_xreg *reg, size_t i, gw_exchange *x) {
  reg->due[i] = x;
  x->due_at = i + 1;
}

static void due_up(gw_xreg *reg, size_t i) {
  gw_exchange *x = reg->due[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (reg->due[parent]->ident_expires <= x->ident_expires) break;
    due_set(reg, i, reg->due[parent]);
    i = parent;
  }
  due_set(reg, i, x);
}

static void due_down(gw_xreg *reg, size_t i) {
  gw_exchange *x = reg->due[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= reg->ndue) break;
    if (c + 1 < reg->ndue && reg->due[c + 1]->ident_expires < reg->due[c]->ident_expires) c++;
    if (x->ident_expires <= reg->due[c]->ident_expires) break;
    due_set(reg, i, reg->due[c]);
    i = c;
  }
  due_set(reg, i, x);
}

int gw__x_expiry_watch(gw_exchange *x) {
  gw_xreg *reg = x->reg;
  if (!x->ident_expires || !reg || !x->listed || !x->req || x->due_at) return 0;
  if (reg->ndue == reg->capdue) {
    size_t cap = reg->capdue ? reg->capdue * 2 : 64;
    gw_exchange **d = realloc(reg->due, cap * sizeof *d);
    if (!d) return -1;
    reg->due = d;
    reg->capdue = cap;
  }
  reg->due[reg->ndue++] = x;
  due_up(reg, reg->ndue - 1);
  /* only an earlier deadline moves the timer */
  if (reg->arm && (!reg->armed || x->ident_expires < reg->armed)) {
    reg->armed = x->ident_expires;
    reg->arm(reg, reg->armed);
  }
  return 0;
}

void gw__x_expiry_unwatch(gw_exchange *x) {
  if (!x->due_at) return;
  gw_xreg *reg = x->reg;
  size_t i = x->due_at - 1;
  x->due_at = 0;
  gw_exchange *last = reg->due[--reg->ndue];
  if (last == x) return;
  reg->due[i] = last;
  last->due_at = i + 1;
  if (i > 0 && reg->due[(i - 1) / 2]->ident_expires > last->ident_expires) due_up(reg, i);
  else due_down(reg, i);
}

int64_t gw__x_expiry_next(const gw_xreg *reg) { return reg->ndue ? reg->due[0]->ident_expires : 0; }

void gw__x_expiry_fire(gw_xreg *reg, int64_t now_s, void (*end)(gw_exchange *x)) {
  reg->armed = 0;
  gw_exchange *list = NULL, **tail = &list;
  while (reg->ndue && reg->due[0]->ident_expires <= now_s) {
    gw_exchange *x = reg->due[0];
    gw__x_expiry_unwatch(x);
    x->refs++;
    x->due_next = NULL;
    *tail = x;
    tail = &x->due_next;
  }
  for (gw_exchange *x = list; x; x = x->due_next) end(x);
  for (gw_exchange *x = list, *n; x; x = n) {
    n = x->due_next;
    x->due_next = NULL;
    gw__x_unref(x);
  }
  /* what an ending watched meanwhile set the timer already */
  int64_t next = gw__x_expiry_next(reg);
  if (next && reg->arm && (!reg->armed || next < reg->armed)) {
    reg->armed = next;
    reg->arm(reg, next);
  }
}

bool gw__x_sse_errors(gw_exchange *x, int code, const char *msg) {
  size_t i, k;
  json_t *id, *v;
  bool any = false;
  if (!x->req) return false;
  json_array_foreach(x->ids, i, id) {
    bool done = false;
    json_array_foreach(x->replied, k, v) done |= json_equal(v, id);
    if (done) continue;
    json_t *e = json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", code, "message", msg);
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (!s) continue;
    gw_buf out;
    gw_buf_init(&out, strlen(s) + 64);
    gw_buf_appendv(&out, "event: message\ndata: ", s, "\n\n", NULL);
    gw_resp_write(x->req, out.data, out.len);
    gw_buf_free(&out);
    free(s);
    any = true;
  }
  return any;
}

void gw__x_expired(gw_exchange *x) {
  if (!x->req) return; /* its client half ended first (answered, gone, revoked) */
  const char *what = x->kind == GW_X_GET ? "a GET stream" : x->started ? "an SSE answer" : "a call held for approval";
  GW_LOG(GW_LOG_INFO, "mcp", &((gw_log_ctx){x->tenant, x->req->id}),
         "%s of user %s ended: the token it was opened with expired", what, x->user);
  if (x->m) GW_STAT_ADD(x->m->expired, 1);
  gw__x_abort_upstream(x); /* its up_done finds no client: nothing more is relayed */
  if (x->started) {
    /* a stream: its end is clean (what was written goes, an event is
     * never cut); a POST's answer the client cannot resume gets an error
     * for each request it had not answered, so the client is not left
     * waiting; a resumable one is resumed with the refreshed token */
    gw_req *r = x->req;
    if (x->kind == GW_X_POST && !x->resumable && gw__x_sse_errors(x, GW_RPC_TOKEN_EXPIRED, GW_X_EXPIRED_MSG) && x->m)
      GW_STAT_ADD(x->m->errors, 1);
    gw__x_client_done(x);
    gw_resp_end(r);
  } else if (!gw__held_expired(x)) {
    /* a held call no longer waiting (approved: its grant being taken, or
     * its JSON answer on the way): the error is its one answer */
    gw__x_rpc_error(x, 200, GW_RPC_TOKEN_EXPIRED, "%s", GW_X_EXPIRED_MSG);
  }
}

/* ---------- the upstream half ---------- */

void gw__x_abort_upstream(gw_exchange *x) {
  if (x->out) gw_out_abort(x->out);
}

/* ---------- the client half ---------- */

static void on_client_abort(gw_req *req) {
  gw_exchange *x = req->handler_data;
  gw__x_abort_upstream(x);
  if (x->req) {
    gw_req *r = x->req;
    gw__x_client_done(x);
    gw_req_drop(r);
  }
}

static void on_client_drain(gw_req *req) {
  gw_exchange *x = req->handler_data;
  if (x->paused && x->out) {
    x->paused = false;
    gw_out_resume(x->out);
  }
  if (x->flow && x->flow->client_drain) x->flow->client_drain(x);
}

void gw__x_attach(gw_exchange *x, gw_req *req, int kind) {
  x->req = req;
  x->kind = kind;
  req->handler_data = x;
  req->on_abort = on_client_abort;
  req->on_drain = on_client_drain;
}

void gw__x_client_done(gw_exchange *x) {
  if (!x->req) return;
  if (x->held) gw__held_client_gone(x);
  if (x->flow && x->flow->client_end) x->flow->client_end(x);
  gw__x_expiry_unwatch(x); /* nothing left to end at expiry */
  x->req->on_abort = NULL;
  x->req->on_drain = NULL;
  x->req = NULL;
  if (x->started && x->m) GW_STAT_ADD(x->m->streams, -1);
  gw__x_unref(x);
}

bool gw__x_msg_dropped(const json_t *j) {
  return (json_is_object(j) && !json_object_size(j)) || (json_is_array(j) && !json_array_size(j));
}

bool gw__x_client_alive(const gw_exchange *x) { return x->req || x->into; }

bool gw__x_wanted(const gw_exchange *x) { return x->req || x->into || (x->flow && x->flow->clientless); }

void gw__x_collect_into(gw_exchange *x, gw_exchange *c, int slot) {
  x->into = c;
  x->slot = slot;
  c->refs++;
}

void gw__x_uncollect(gw_exchange *x) {
  gw_exchange *c = x->into;
  if (!c) return;
  x->into = NULL;
  gw__x_abort_upstream(x);
  /* its flow's own upstream calls (a notification's forwards) end too, as
   * when a request's client leaves */
  if (x->flow && x->flow->client_end) x->flow->client_end(x);
  gw__x_unref(c);
}

bool gw__x_take(gw_exchange *x, size_t n) {
  gw_exchange *c = x->into;
  if (!c || !c->flow || !c->flow->take) return true;
  return c->flow->take(c, n);
}

/* A batch element's reply goes to its collector, which answers once every
 * element has. */
static void collect(gw_exchange *x, json_t *j) {
  gw_exchange *c = x->into;
  x->into = NULL;
  if (c->flow && c->flow->collect) c->flow->collect(c, x->slot, j);
  else json_decref(j);
  gw__x_unref(c);
}

static void add_session_header(gw_exchange *x) {
  if (x->req && x->sid[0]) gw_resp_header(x->req, "Mcp-Session-Id", x->sid);
}

/* The final answer on a held call's stream: one event (each line of the
 * message its own data line), then the stream's end. */
static void held_answer(gw_exchange *x, const char *body, size_t n) {
  gw_req *r = x->req;
  gw_buf b;
  char *none = NULL;
  if (!n) {
    /* no reply at all (an upstream's 202 or 204 to the call): the client
     * waits for one on this stream, so it gets an error, not silence */
    json_t *e = json_pack("{s:s,s:O,s:{s:i,s:s++}}", "jsonrpc", "2.0", "id", json_array_get(x->ids, 0) ?: json_null(),
                          "error", "code", GW_RPC_UPSTREAM_DOWN, "message", "connector \"", x->connector,
                          "\" sent no reply");
    none = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    body = none ? none : "";
    n = none ? strlen(none) : 0;
  }
  gw_buf_init(&b, GW_MCP_MAX_JSON_BODY + 64 * 1024);
  bool ok = !gw_buf_appends(&b, "event: message\n");
  /* a data: line per line of the body, at every line end an SSE reader
   * knows (CRLF, LF, a lone CR: JSON whitespace may hold any of them) */
  for (size_t i = 0; ok && i < n;) {
    size_t k = 0;
    while (i + k < n && body[i + k] != '\n' && body[i + k] != '\r') k++;
    ok = !gw_buf_appends(&b, "data: ") && !gw_buf_append(&b, body + i, k) && !gw_buf_appends(&b, "\n");
    i += k;
    if (i < n) i += body[i] == '\r' && i + 1 < n && body[i + 1] == '\n' ? 2 : 1;
  }
  free(none);
  if (ok && n && !gw_buf_appends(&b, "\n")) gw_resp_write(r, b.data, b.len);
  gw_buf_free(&b);
  gw__x_client_done(x);
  if (ok) gw_resp_end(r);
  else gw_req_drop(r);
}

json_t *gw__x_json(gw_exchange *x, const char *p, size_t n, size_t flags) {
  if (!x->lp) return gw_json_loadb(p, n, flags, NULL);
  /* every text is estimated (gw_json_loadb scans it anyway) and what is
   * short of a whole MiB is carried to the exchange's next text: charged
   * text by text, each rounded down, a stream of events of just under a
   * MiB of tree each (12 kB of "{}," is one) made the loop parse at the
   * upstream's pace for nothing */
  size_t cost = gw_json_tree_cost(p, n);
  /* past the estimate's cap it is refused unparsed: the scan was its cost */
  size_t owed = x->json_owed + (cost <= GW_JSON_TREE_MAX ? cost : n);
  size_t mib = owed >> 20;
  int64_t wait = mib ? gw_limits_mcp_reply_json(x->lp->srv, x->tenant, x->user, (int64_t)mib) : 0;
  if (wait) {
    if (!x->json_refused)
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
             "connector %s: a JSON text of %zu bytes (~%zu MiB of tree) was not parsed: the user's "
             "mcp_json_mib_per_user or the tenant's mcp_json_mib_per_tenant has no room for %lld s",
             x->connector, n, mib, (long long)wait);
    x->json_refused = true;
    x->json_refusals++;
    return NULL; /* (not parsed: nothing owed for it) */
  }
  x->json_owed = owed & (((size_t)1 << 20) - 1);
  return gw_json_loadb_costed(p, n, flags, NULL, cost);
}

void gw__x_json_refused_error(gw_exchange *x) {
  gw__x_rpc_error(x, 429, GW_RPC_UPSTREAM_DOWN, "connector \"%s\": " GW_X_JSON_REFUSED_MSG, x->connector);
}

static json_t *x_load(void *arg, const char *p, size_t n, size_t flags) { return gw__x_json(arg, p, n, flags); }

json_t *gw__x_find_reply(gw_exchange *x, const json_t *id) {
  return gw__find_reply_by(x->body.data ? x->body.data : "", x->body.len, x->up_ct, id, x_load, x);
}

void gw__x_reply_json(gw_exchange *x, int status, json_t *j) {
  if (x->into) {
    collect(x, j);
    return;
  }
  if (!x->req) {
    json_decref(j);
    return;
  }
  if (gw__held_stream(x)) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    held_answer(x, s ? s : "", s ? strlen(s) : 0);
    free(s);
    return;
  }
  gw_req *r = x->req;
  add_session_header(x);
  gw__x_client_done(x);
  gw_respond_json(r, status, j);
}

void gw__x_reply_raw(gw_exchange *x, int status, const char *ct, const char *body, size_t n) {
  if (x->into) {
    collect(x, NULL);
    return;
  }
  if (!x->req) return;
  if (gw__held_stream(x)) {
    held_answer(x, body ? body : "", body ? n : 0);
    return;
  }
  gw_req *r = x->req;
  add_session_header(x);
  gw__x_client_done(x);
  gw_resp_header(r, "Cache-Control", "no-store");
  gw_respond(r, status, ct, body, n);
}

void gw__x_rpc_error(gw_exchange *x, int http_status, int code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t n = x->ids ? json_array_size(x->ids) : 0;
  if (n == 0) {
    gw__x_reply_json(x, http_status,
                     json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", "error", "code", code, "message", msg));
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", json_array_get(x->ids, i),
                                         "error", "code", code, "message", msg));
  if (n == 1) {
    json_t *one = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    gw__x_reply_json(x, 200, one);
  } else {
    gw__x_reply_json(x, 200, arr);
  }
}

int gw__x_stream_pressure(gw_exchange *x, gw_req *client) {
  if (!client) return GW_STREAM_OK;
  size_t q = gw_req_write_queue(client);
  size_t cap = (size_t)client->lp->srv->cfg.stream_buffer_max;
  if (q > cap) {
    /* the client does not read: its stream ends rather than the gateway's
     * memory growing; it resumes with Last-Event-ID */
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, client->id}),
           "client stream ended: %zu bytes queued for a client that is not reading (stream_buffer_max %zu)", q, cap);
    if (x->m) GW_STAT_ADD(x->m->overflows, 1);
    gw_exchange *owner = client->handler_data;
    gw__x_client_done(owner);
    gw_req_abort(client); /* its queue goes too: nobody will read it */
    return GW_STREAM_OVER;
  }
  size_t pause_at = cap / 2 < GW_WRITE_HIGH_WATER ? cap / 2 : GW_WRITE_HIGH_WATER;
  return q > pause_at ? GW_STREAM_FULL : GW_STREAM_OK;
}
