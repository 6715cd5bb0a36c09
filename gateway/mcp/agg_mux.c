/* gateway/mcp/agg_mux.c — the aggregated GET stream: the client's one SSE
 * stream multiplexes the upstreams' GET streams (of every upstream session
 * of the client session, including ones opened later). Two flows, each
 * with its own typed state: the client's stream, and one feed per
 * upstream GET stream.
 *
 * Rules this file keeps, and why:
 *
 *  1. A feed holds a reference on the stream it feeds; the stream ending
 *     (client_end) aborts its feeds, and each feed drops that reference
 *     only when it is freed, so a feed's callback never meets a freed
 *     stream. However the stream ends — the client leaving, a revocation,
 *     the token that opened it expiring (it is watched from its 200 on,
 *     exchange.h) — its feeds' upstream GET streams close with it, and so
 *     do its reconnection timers (each holds a reference on the stream).
 *  2. Back-pressure per feed: each pauses on its own when the client falls
 *     behind (half of stream_buffer_max or the write high-water mark) and
 *     the client's drain resumes them; past stream_buffer_max the stream
 *     is cut (the client resumes with Last-Event-ID).
 *  3. Event ids sent to the client encode the last event id of every
 *     upstream (b64url of {"connector": "upstream event id"}), so one
 *     Last-Event-ID resumes each upstream where it was (of the client's
 *     Last-Event-ID only the ids of the connectors fed now are kept, each
 *     under MUX_RESUME_ID_MAX bytes: nothing else of it is echoed);
 *     server→client request ids are rewritten (agg.c) so the client's
 *     answer routes back,
 *     a URL elicitation's id is renamed for its connector, and a
 *     notification naming another connector's progress token, question,
 *     elicitation or resource is dropped (agg_maps.c).
 *  4. An upstream may end its GET stream at any time (2025-11-25 servers
 *     close streams and expect clients to come back): while the client's
 *     stream is open the gateway reconnects, after 100 ms (1 s after an
 *     error), resuming after the last event; a 405 or a refusal is final.
 *     A reconnected stream that ends again without one event doubles the
 *     delay (up to MUX_RETRY_MAX_MS): an upstream that closes every GET at
 *     once is not hit ten times a second per client stream. One event
 *     (a polling server's priming event too) restarts at 100 ms.
 *  5. A policy or membership change that hides a connector from the user
 *     ends its feed (the fan-out's recheck, revoke.c, hands it `hidden`);
 *     the client's stream stays and gets list_changed through the default
 *     on_revoke.
 *  5b. Each feed takes one of the user's mcp_concurrent_per_user units on
 *     the client stream's request (gw_limits_mcp_more) for as long as it
 *     runs: one client stream opens one upstream connection per
 *     connector, and an employee's streams must not take every
 *     descriptor. A GET whose feeds do not fit is 429; a feed that does
 *     not fit later (a new upstream session, a reconnection) is retried
 *     as after an error, backing off, until the user has room.
 *  6. A feed is opened only for an upstream whose announced capabilities
 *     say it can push something (tools/prompts/resources listChanged,
 *     resources subscribe, logging): an idle client costs one descriptor,
 *     not one per connector. An upstream not yet initialized (capabilities
 *     unknown) gets its feed. The list_changed a policy change causes is
 *     the gateway's own and needs no feed.
 *  7. A new upstream session's feeds (attached on every loop through the
 *     fan-out's session_opened) are counted as awaited until the upstream
 *     answered their GET (gw__agg_feeds_awaited): the call that opened the
 *     session waits for that count (agg_up.c), so the upstream never sends
 *     a server→client request before the session's streams can carry it.
 *     Only that call waits: the fan-out is applied at once, so no other
 *     writer reply of the process (another tenant's deactivation) waits
 *     for one tenant's upstream to answer a GET. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/base/log.h"
#include "gateway/core/limits.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

/* ---------- which upstreams get a feed (rule 6) ---------- */

static bool flag(json_t *caps, const char *what, const char *key) {
  return json_is_true(json_object_get(json_object_get(caps, what), key));
}

/* When the connector's upstream announced something it could push on a
 * GET stream, or has announced nothing yet: its binding for user (a new
 * reference: the server and credential the user's upstream session ids
 * read in this txn belong to, vault_upstream_bind), else NULL. */
static json_t *upstream_can_push(st_txn *txn, const char *tenant, const char *user, const char *connector) {
  json_t *rec = NULL;
  if (vault_connector_get(txn, tenant, connector, &rec) != 0) return NULL; /* gone: no feed */
  json_t *caps = json_object_get(rec, "capabilities");
  bool push = !json_is_object(caps) || flag(caps, "tools", "listChanged") || flag(caps, "prompts", "listChanged") ||
              flag(caps, "resources", "listChanged") || flag(caps, "resources", "subscribe") ||
              json_object_get(caps, "logging") != NULL;
  json_t *bind = push ? vault_upstream_bind(txn, tenant, connector, user, rec) : NULL;
  json_decref(rec);
  return bind;
}

/* ---------- the client's stream ---------- */

typedef struct feed_state feed_state;

typedef struct mux_retry mux_retry;
typedef struct stream_state {
  json_t *last; /* {connector: last upstream event id}, or NULL: encoded into event ids */
  feed_state *feeders; /* the upstream streams feeding it: its end and its
                          drain reach them without a walk of every exchange
                          of the loop (a walk per stream made SIGTERM with
                          10,000 streams quadratic) */
  mux_retry *retries;  /* its reconnections waiting for their delay (rule 4):
                          its end closes them */
} stream_state;

static void stream_free(void *state) {
  stream_state *st = state;
  json_decref(st->last);
  free(st);
}

struct feed_state {
  gw_exchange *client;      /* the stream fed (a reference) */
  unsigned delay_ms;        /* the reconnection delay that started it (0: none; rule 4) */
  bool fed;                 /* the upstream sent an event on it */
  gw_exchange *self;        /* the feeder (not a reference: unlinked when it is freed) */
  feed_state *prev, *next;  /* in the client's stream_state.feeders */
  gw_mcp_shared *awaiting;  /* set while it is counted as awaited (rule 7) under key */
  char key[140];            /* "sid\nconnector" */
  bool unit;                /* it holds a unit on client->req's slot (rule 5b) */
};

/* ---------- a new upstream session's feeds, awaited (rule 7) ---------- */

/* sh->heads: "sid\nconnector" → the feeds of a new upstream session whose
 * GET has no answer yet, on every loop (under maps_mu). */
static void awaited_add(gw_mcp_shared *sh, const char *key, int d) {
  uv_mutex_lock(&sh->maps_mu);
  if (!sh->heads) sh->heads = json_object();
  json_int_t n = json_integer_value(json_object_get(sh->heads, key)) + d;
  if (n > 0) json_object_set_new(sh->heads, key, json_integer(n));
  else json_object_del(sh->heads, key);
  uv_mutex_unlock(&sh->maps_mu);
}

bool gw__agg_feeds_awaited(gw_server *srv, const char *sid, const char *connector) {
  gw_mcp_shared *sh = srv->mcp;
  char key[140];
  snprintf(key, sizeof key, "%s\n%s", sid, connector);
  uv_mutex_lock(&sh->maps_mu);
  bool any = sh->heads && json_object_get(sh->heads, key);
  uv_mutex_unlock(&sh->maps_mu);
  return any;
}

/* The upstream answered the feed's GET (or it ended first): no longer
 * awaited. */
static void feed_release(feed_state *st) {
  if (!st->awaiting) return;
  awaited_add(st->awaiting, st->key, -1);
  st->awaiting = NULL;
}

static const gw_flow_ops feed_flow;

static gw_exchange *client_of(const gw_exchange *c) {
  return c->flow == &feed_flow ? ((feed_state *)c->state)->client : NULL;
}

/* Neither abort nor resume calls back synchronously (outbound.h): the
 * list cannot change under these walks. */

static void mux_retry_cancel(stream_state *ss);

/* the client's stream ends: so do the upstream streams feeding it, and
 * the reconnections waiting (each held the stream and kept the loop alive
 * until it fired — up to MUX_RETRY_MAX_MS after a backoff: found by review,
 * SIGTERM waited for them) */
static void stream_end(gw_exchange *x) {
  for (feed_state *f = ((stream_state *)x->state)->feeders; f; f = f->next) gw__x_abort_upstream(f->self);
  mux_retry_cancel(x->state);
}

static void stream_drain(gw_exchange *x) {
  for (feed_state *f = ((stream_state *)x->state)->feeders; f; f = f->next) {
    gw_exchange *o = f->self;
    if (o->paused && o->out) {
      o->paused = false;
      gw_out_resume(o->out);
    }
  }
}

static const gw_flow_ops stream_flow = {
    .name = "agg-stream", .client_end = stream_end, .client_drain = stream_drain, .free = stream_free};

bool gw__agg_is_stream(const gw_exchange *x, const char *sid) {
  return x->flow == &stream_flow && !strcmp(x->sid, sid);
}

char *gw__agg_event_id(gw_exchange *x, const char *upstream_id) {
  json_t *m = json_pack("{s:s}", x->connector, upstream_id);
  char *s = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(m);
  char *b = s ? gw__agg_b64url(s) : NULL;
  free(s);
  return b;
}

/* ---------- one feed: an upstream GET stream ---------- */

static void mux_emit(gw_exchange *c, const char *upstream_id, json_t *msg) {
  gw_exchange *x = client_of(c);
  if (!x || !x->req) return;
  stream_state *st = x->state;
  if (!st->last) st->last = json_object();
  if (upstream_id) json_object_set_new(st->last, c->connector, json_string(upstream_id));
  /* dropped (another connector's progress token, question, elicitation or resource):
   * its id travels with the next event */
  if (gw__agg_rewrite(c, msg) && gw__x_msg_dropped(msg)) return;
  char *data = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char *lj = json_dumps(st->last, JSON_COMPACT | JSON_SORT_KEYS);
  char *eid = lj ? gw__agg_b64url(lj) : NULL;
  free(lj);
  gw_buf out;
  gw_buf_init(&out, 2 * GW_MCP_MAX_SSE_EVENT);
  gw_buf_appends(&out, "event: message\n");
  if (eid && upstream_id) gw_buf_printf(&out, "id: %s\n", eid);
  gw_buf_printf(&out, "data: %s\n\n", data ? data : "{}");
  gw_resp_write(x->req, out.data, out.len);
  gw_buf_free(&out);
  free(eid);
  free(data);
}

/* An event whose parse the JSON budgets refused (gw__x_json), read by a
 * scan: when it is a response (an id, a result or an error, no method),
 * the error that takes its place — a call whose reply comes on the GET
 * stream (a polled call's, resumed) waits for it, and dropped unread the
 * client got nothing. NULL: not a response, or not one the scan can read. */
static json_t *refused_reply(gw_exchange *c, const char *p, size_t n) {
  static const char *const paths[] = {"id", "method", "result", "error"};
  gw_json_span v[4];
  if (gw_json_pick(p, n, paths, 4, v) != 1 || !v[0].p || v[1].p || (!v[2].p && !v[3].p)) return NULL;
  /* an id is a string or a number: anything else (an array of a million
   * objects) is not built here either, nor a long one */
  if (v[0].n > 512 || !(v[0].p[0] == '"' || v[0].p[0] == '-' || (v[0].p[0] >= '0' && v[0].p[0] <= '9'))) return NULL;
  json_t *id = json_loadb(v[0].p, v[0].n, JSON_DECODE_ANY, NULL);
  if (!json_is_string(id) && !json_is_integer(id)) {
    json_decref(id);
    return NULL;
  }
  char msg[400];
  snprintf(msg, sizeof msg, "connector \"%s\": " GW_X_JSON_REFUSED_MSG, c->connector);
  return json_pack("{s:s,s:o,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", GW_RPC_UPSTREAM_DOWN,
                   "message", msg);
}

static int mux_event(void *arg, const char *ev, size_t n) {
  gw_exchange *c = arg;
  char id[512];
  gw_buf data;
  gw_buf_init(&data, GW_MCP_MAX_SSE_EVENT);
  gw__sse_split(ev, n, &data, NULL, id, sizeof id);
  if (data.len || id[0]) ((feed_state *)c->state)->fed = true; /* not a bare comment */
  json_t *msg = data.len ? gw__x_json(c, data.data, data.len, 0) : NULL;
  /* (json_refused is not reset per event: gw__x_json logs a feed's first
   * refusal only; valid JSON that did not parse was refused) */
  if (!msg && data.len && c->json_refused) msg = refused_reply(c, data.data, data.len);
  if (msg) mux_emit(c, id[0] ? id : NULL, msg);
  json_decref(msg);
  gw_buf_free(&data);
  return 0;
}

static void mux_headers(gw_exchange *c, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  c->status = status;
  feed_release(c->state); /* the upstream has its GET stream (or said no) */
  bool sse = false;
  for (size_t i = 0; i < n; i++)
    if (!strcasecmp(h[i].name, "content-type") && gw__sse_is(h[i].value)) sse = true;
  /* an upstream without a GET stream (405) or that refuses: nothing to relay */
  gw_exchange *x = client_of(c);
  if (status != 200 || !sse || !x || !x->req) gw_out_abort(r);
}

static int mux_data(gw_exchange *c, gw_out_req *r, const char *p, size_t n) {
  gw_exchange *x = client_of(c);
  int arc = 0;
  if (!x || !x->req || (arc = gw_buf_append(&c->ev, p, n)) != 0) {
    c->over_budget = arc == GW_EBUDGET; /* mux_done tries it again */
    gw_out_abort(r);
    return 0;
  }
  size_t held = c->ev.len;
  gw__sse_each(&c->ev, &c->ev_scanned, mux_event, c);
  gw__sse_partial(r, held, c->ev.len);
  switch (x->req ? gw__x_stream_pressure(c, x->req) : GW_STREAM_OK) {
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

static feed_state *mux_attach_feed(gw_exchange *x, const char *connector, const char *upstream, json_t *bind,
                                   const char *last_id, unsigned delay_ms, bool paid);

/* Rule 4's reconnection delays. */
#define MUX_RETRY_MS 100
#define MUX_RETRY_ERROR_MS 1000
#define MUX_RETRY_MAX_MS 30000
/* an upstream event id a client's Last-Event-ID may resume (upcall.c sends no longer one) */
#define MUX_RESUME_ID_MAX 500

struct mux_retry {
  uv_timer_t t;
  gw_exchange *stream; /* a ref */
  unsigned delay_ms;   /* this retry's delay */
  char connector[40], upstream[256], last[512];
  stream_state *in;         /* the stream's state it is listed in (NULL once unlisted) */
  mux_retry *prev, *next;   /* in in->retries */
};

static void mux_retry_closed(uv_handle_t *h) {
  mux_retry *m = h->data;
  gw__x_unref(m->stream);
  free(m);
}

static void mux_retry_unlink(mux_retry *m) {
  if (!m->in) return;
  if (m->prev) m->prev->next = m->next;
  else m->in->retries = m->next;
  if (m->next) m->next->prev = m->prev;
  m->in = NULL;
  m->prev = m->next = NULL;
}

/* closes every reconnection of the stream still waiting (they start nothing) */
static void mux_retry_cancel(stream_state *ss) {
  while (ss->retries) {
    mux_retry *m = ss->retries;
    mux_retry_unlink(m);
    uv_close((uv_handle_t *)&m->t, mux_retry_closed);
  }
}

/* Reconnects only while the session still has that upstream session: a
 * connector PUT to a new URL or with another credential (or a DELETE) in
 * the meantime forgot it, and an upstream session id must never reach
 * another server nor go on under another credential. */
static void mux_retry_fire(uv_timer_t *t) {
  mux_retry *m = t->data;
  gw_exchange *x = m->stream;
  mux_retry_unlink(m);
  st_txn *txn;
  char up[256] = "";
  if (x->listed && x->req && st_read_begin(x->lp->srv->store, &txn) == 0) {
    int rc = gw_session_upstream_get(txn, x->sid, m->connector, up);
    json_t *bind = rc == 0 ? upstream_can_push(txn, x->tenant, x->user, m->connector) : NULL;
    st_txn_end(txn);
    if (bind && !strcmp(up, m->upstream))
      mux_attach_feed(x, m->connector, m->upstream, bind, m->last[0] ? m->last : NULL, m->delay_ms, false);
    json_decref(bind);
  }
  uv_close((uv_handle_t *)&m->t, mux_retry_closed);
}

/* The doubled delay after `prev` (0: none yet), at least base. */
static unsigned backoff(unsigned prev, unsigned base) {
  unsigned d = !prev ? base : prev >= MUX_RETRY_MAX_MS / 2 ? MUX_RETRY_MAX_MS : prev * 2;
  return d < base ? base : d;
}

/* Starts connector's feed of the client stream x again after delay_ms. */
static void mux_retry_later(gw_exchange *x, const char *connector, const char *upstream, unsigned delay_ms) {
  mux_retry *m = calloc(1, sizeof *m);
  if (!m || uv_timer_init(&x->lp->loop, &m->t) != 0) {
    free(m);
    return;
  }
  m->t.data = m;
  m->stream = x;
  m->delay_ms = delay_ms;
  x->refs++;
  gw_strlcpy(m->connector, connector, sizeof m->connector);
  gw_strlcpy(m->upstream, upstream, sizeof m->upstream);
  const char *last = json_string_value(json_object_get(((stream_state *)x->state)->last, connector));
  gw_strlcpy(m->last, last ? last : "", sizeof m->last);
  m->in = x->state; /* listed: the stream's end closes it */
  m->next = m->in->retries;
  if (m->next) m->next->prev = m;
  m->in->retries = m;
  uv_timer_start(&m->t, mux_retry_fire, delay_ms, 0);
}

static void mux_done(gw_exchange *c, gw_out_req *r, int err) {
  (void)r;
  if (err && err != GW_OUT_EABORTED)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "connector %s: GET stream ended (%s)", c->connector, gw_out_strerror(err));
  gw_exchange *x = client_of(c);
  /* 405: the upstream has no GET stream; not started for the upstream
   * budget (GW_OUT_EBUSY): tried again, backing off */
  bool refused = c->status != 200 && err != GW_OUT_EBUSY;
  /* an event the buffered-bytes budget could not hold ended the feed: it
   * comes back (from the last event id it relayed), backing off */
  if (c->over_budget) err = GW_OUT_EBUSY;
  if (x && x->req && x->listed && !refused && err != GW_OUT_EABORTED) {
    feed_state *fs = c->state;
    unsigned base = err ? MUX_RETRY_ERROR_MS : MUX_RETRY_MS;
    /* a reconnection that brought nothing backs off */
    mux_retry_later(x, c->connector, c->sess.upstream, !fs->fed && fs->delay_ms ? backoff(fs->delay_ms, base) : base);
  }
}

/* A feed ends with a revocation, and when the recheck finds its connector
 * hidden from the user (r->hidden); list_changed is the client stream's
 * (the default on_revoke), not the feed's. */
static void feed_revoke(gw_exchange *c, const gw_revocation *r) {
  if (!r->notify) gw__x_end(c);
}

static void feed_free(void *state) {
  feed_state *st = state;
  feed_release(st); /* ended before its head */
  /* the request's end gave back every unit it held, this one too */
  if (st->unit && st->client && st->client->req) gw_limits_mcp_less(st->client->req, 1);
  if (st->client) {
    stream_state *ss = st->client->flow == &stream_flow ? st->client->state : NULL;
    if (st->prev) st->prev->next = st->next;
    else if (ss && ss->feeders == st) ss->feeders = st->next;
    if (st->next) st->next->prev = st->prev;
    gw__x_unref(st->client);
  }
  free(st);
}

static const gw_flow_ops feed_flow = {.name = "agg-feed",
                                      .up_headers = mux_headers,
                                      .up_data = mux_data,
                                      .up_done = mux_done,
                                      .on_revoke = feed_revoke,
                                      .free = feed_free};

/* Starts the upstream GET stream of one connector for the client stream x
 * (delay_ms: the reconnection delay that led here, 0 for a first start;
 * paid: its unit of the user's limit is taken already, else it takes one,
 * and when the user has none left it is retried later: rule 5b).
 * The feed started (its state, valid until the transfer ends), or NULL. */
static feed_state *mux_attach_feed(gw_exchange *x, const char *connector, const char *upstream, json_t *bind,
                                   const char *last_id, unsigned delay_ms, bool paid) {
  if (!paid && !gw_limits_mcp_more(x->req, 1)) {
    GW_LOG(GW_LOG_INFO, "mcp", NULL,
           "connector %s: the user's GET stream waits for its upstream stream (mcp_concurrent_per_user reached)",
           connector);
    mux_retry_later(x, connector, upstream, backoff(delay_ms, MUX_RETRY_ERROR_MS));
    return NULL;
  }
  feed_state *st = calloc(1, sizeof *st);
  if (!st) {
    gw_limits_mcp_less(x->req, 1);
    return NULL;
  }
  st->delay_ms = delay_ms;
  st->unit = true;
  st->client = x; /* before the child: its free (on failure too) gives the unit and the reference back */
  x->refs++;
  gw_exchange *c = gw__mcp_child(x, connector, &feed_flow, st);
  if (!c) return NULL;
  st->self = c;
  stream_state *ss = x->state; /* x is a client stream (stream_flow) */
  st->next = ss->feeders;
  if (ss->feeders) ss->feeders->prev = st;
  ss->feeders = st;
  gw_strlcpy(c->sess.upstream, upstream, sizeof c->sess.upstream);
  c->sess_bind = json_incref(bind); /* the upcall sends the id only while it holds */
  gw_upcall u = {0};
  u.method = "GET";
  u.accept = "text/event-stream";
  u.protocol_version = c->sess.version;
  u.upstream_sid = upstream;
  u.last_event_id = last_id;
  u.stream = true;
  gw__x_upcall(c, &u); /* the transfer holds its own reference */
  feed_state *live = c->out ? st : NULL; /* a refused start ended (and freed) it */
  gw__x_unref(c);
  return live;
}

/* The feeds the client's GET stream starts with: {connector: upstream
 * session id} of every visible connector with an upstream session that
 * can push, and their bindings in *binds; NULL when the store is
 * unreadable. */
static json_t *mux_plan(gw_exchange *x, json_t **binds) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  st_txn *txn;
  *binds = NULL;
  if (!pu || st_read_begin(x->lp->srv->store, &txn) != 0) return NULL;
  json_t *ups = gw_session_upstreams(txn, x->sid);
  *binds = json_object();
  const char *conn;
  json_t *up;
  void *tmp;
  json_object_foreach_safe(ups, tmp, conn, up) {
    json_t *bind = pol_connector_visible(pu, conn) ? upstream_can_push(txn, x->tenant, x->user, conn) : NULL;
    if (bind) json_object_set_new(*binds, conn, bind);
    else json_object_del(ups, conn);
  }
  st_txn_end(txn);
  return ups;
}

/* The client's GET stream: every connector with an upstream session now,
 * and (via gw__agg_session_opened) every one opened later. Its feeds'
 * units are taken before the 200 (rule 5b). */
void gw__agg_stream(gw_exchange *x, const char *last_event_id) {
  gw_req *req = x->req;
  json_t *binds, *ups = mux_plan(x, &binds);
  if (ups && !gw_limits_mcp_more(req, (int)json_object_size(ups))) {
    json_decref(ups);
    json_decref(binds);
    gw_resp_header(req, "Retry-After", "1");
    gw__x_rpc_error(x, 429, -32000,
                    "too many MCP requests (mcp_concurrent_per_user): this stream's upstream streams count too; "
                    "retry after Retry-After seconds");
    return;
  }
  stream_state *st = calloc(1, sizeof *st);
  /* the stream ends when the token that opened it expires (exchange.h) */
  if (!st || gw__x_expiry_watch(x) != 0) {
    free(st);
    gw_limits_mcp_less(req, (int)json_object_size(ups));
    json_decref(ups);
    json_decref(binds);
    gw__x_rpc_error(x, 500, -32603, "out of memory");
    return;
  }
  gw__x_set_flow(x, &stream_flow, st);
  /* a gateway-local stream: list_changed arrives here */
  x->started = true;
  if (x->m) GW_STAT_ADD(x->m->streams, 1);
  gw_resp_header(req, "Mcp-Session-Id", x->sid);
  gw_resp_header(req, "Cache-Control", "no-cache");
  gw_resp_start(req, 200, "text/event-stream");
  gw_resp_write(req, ": mcpgate stream\n\n", 18);
  /* only what resumes a feed of this stream is kept (and so echoed in
   * every event id, rule 3): the id of each connector fed now, as the
   * upstream call would send it (upcall.c) — never the rest of what the
   * client put in its Last-Event-ID (up to the header cap, in every event) */
  json_t *sent = last_event_id ? gw__agg_unb64url(last_event_id) : NULL, *resume = json_object();
  const char *conn;
  json_t *up;
  json_object_foreach(ups, conn, up) {
    const char *id = json_string_value(json_object_get(sent, conn));
    if (id && *id && strlen(id) < MUX_RESUME_ID_MAX && !strpbrk(id, "\r\n"))
      json_object_set_new(resume, conn, json_string(id));
  }
  json_decref(sent);
  if (json_object_size(resume)) st->last = json_incref(resume);
  json_object_foreach(ups, conn, up)
      mux_attach_feed(x, conn, json_string_value(up), json_object_get(binds, conn),
                      json_string_value(json_object_get(resume, conn)), 0, true);
  json_decref(resume);
  json_decref(binds);
  json_decref(ups);
}

/* A new upstream session exists: open client streams of that session get
 * its GET stream too. */
typedef struct opened_arg {
  const char *sid, *connector, *upstream;
  json_t *bind; /* the server and credential upstream belongs to */
  bool hold;
} opened_arg;

static void attach_if_stream(gw_exchange *x, void *arg) {
  opened_arg *a = arg;
  if (!gw__agg_is_stream(x, a->sid) || !x->started || !x->req) return;
  feed_state *st = mux_attach_feed(x, a->connector, a->upstream, a->bind, NULL, 0, false);
  if (st && a->hold) {
    snprintf(st->key, sizeof st->key, "%s\n%s", a->sid, a->connector);
    st->awaiting = x->lp->srv->mcp;
    awaited_add(st->awaiting, st->key, 1);
  }
}

/* The binding of connector (upstream_can_push, for the session's user)
 * when sid's stored upstream session with it is still `upstream` (read
 * together: a move, a rekey or the user's new credential drops the ids in
 * the write that changes the binding), and it can push; else NULL. */
static json_t *still_there(gw_loop *lp, const char *tenant, const char *sid, const char *connector,
                           const char *upstream) {
  st_txn *txn;
  char up[256] = "";
  gw_session s;
  if (st_read_begin(lp->srv->store, &txn) != 0) return NULL;
  json_t *bind = gw_session_upstream_get(txn, sid, connector, up) == 0 && !strcmp(up, upstream) &&
                         gw_session_get(txn, sid, &s) == 0
                     ? upstream_can_push(txn, tenant, s.user, connector)
                     : NULL;
  st_txn_end(txn);
  return bind;
}

void gw__agg_session_opened(gw_loop *lp, const char *tenant, const char *sid, const char *connector,
                            const char *upstream) {
  json_t *bind = still_there(lp, tenant, sid, connector, upstream);
  gw_proxy *p = gw__mcp_of(lp);
  opened_arg a = {sid, connector, upstream, bind, true}; /* the call that opened it awaits the feeds (rule 7) */
  if (bind && p) gw__x_foreach(&p->reg, attach_if_stream, &a);
  json_decref(bind);
}
