/* gateway/mcp/direct.c — /t/{tenant}/mcp/{connector}: one upstream,
 * transparent pass-through with enforcement (POST, GET, DELETE), and the
 * relay of an upstream answer to the client that the aggregated calls use
 * too (see relay.h).
 *
 * What is checked before anything is forwarded: the employee token and the
 * user's state (every request), the session's owner, Accept, Origin,
 * MCP-Protocol-Version, and the body — parsed fully and strictly (duplicate
 * keys refused), JSON-RPC shape checked, tools/call decided (decide.c), and
 * forwarded byte for byte as checked. The client's Authorization never
 * leaves the gateway; the connector's credential is added instead
 * (upcall.c).
 *
 * Rules the relay keeps: JSON bodies are buffered (capped) and checked
 * before they are relayed; SSE is relayed event by event with
 * back-pressure both ways (a client that does not read loses its stream,
 * never the gateway its memory); an upstream 401/403 never reaches the
 * client as such (the client's credential is the gateway's) and a 3xx is
 * neither followed nor relayed; failure or garbage becomes a JSON-RPC error
 * naming the connector — also on a POST's SSE stream that ends (broken
 * off, or cleanly inside an event) before it carried the reply or an event
 * id the client could resume from: the client would otherwise wait for its
 * own timeout. A stream the relay opens to the client (a GET stream, an SSE
 * answer) is watched for the request token's expiry (exchange.h) before its
 * 200 goes: at the expiry it ends like one the upstream ended, its
 * unanswered requests told -32011. The flow's rewrite (tools/list
 * filtering here, id rewriting for aggregated calls) runs on every relayed
 * message; an SSE event it would have to parse and cannot is dropped, not
 * relayed unchecked. */
#include "gateway/mcp/relay.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "gateway/base/json_check.h"
#include "gateway/base/buf.h"
#include "gateway/base/log.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/tool_list.h"
#include "gateway/mcp/upcall.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"
#include "store/token.h"

/* The direct flow's state. */
typedef struct direct_state {
  bool initialize;  /* the client's initialize: its answer opens a gateway session */
  bool storing;     /* ... whose write has the upstream session it opened (x->opening) */
} direct_state;

static direct_state *ds(gw_exchange *x) { return x->state; }

/* A response carrying a tool list (result.tools). Whatever its id: MCP
 * clients match a response to their request by id alone, on whichever
 * response or stream it comes, and the SDK's by Number(id) ("5" and 5.0
 * answer request 5), so a list with any id may be taken for the answer to
 * the client's tools/list. */
static bool has_tool_list(const json_t *msg) {
  return json_is_object(msg) && json_is_array(json_object_get(json_object_get(msg, "result"), "tools"));
}

/* Filters every tool list of a whole JSON reply (object or batch array) in
 * place, by the user's policy (fails closed: no policy, no tools). */
static bool filter_reply(gw_exchange *x, json_t *j) {
  size_t i;
  json_t *m;
  bool any = has_tool_list(j);
  if (json_is_array(j)) json_array_foreach(j, i, m) any |= has_tool_list(m);
  if (!any) return false;
  const pol_user *u = gw__policy_for(x->lp, x->tenant, x->user);
  bool changed = false;
  if (json_is_array(j)) {
    json_array_foreach(j, i, m) if (has_tool_list(m)) changed |= pol_filter_tools(u, x->connector, m);
  } else {
    changed = pol_filter_tools(u, x->connector, j);
  }
  return changed;
}

/* False only when data cannot contain a JSON key equal to "tools": the key
 * is then neither written literally nor spelled with \u escapes (the only
 * escape that can produce its letters). */
static bool may_carry_tools(const char *data, size_t n) {
  return gw_memmem(data, n, "\"tools\"", 7) || gw_memmem(data, n, "\\u", 2);
}

/* filter_reply on the bytes (tool_list.h): a list's allowed tools are
 * copied, not parsed and re-serialised (1.7 ms of the loop for 500 tools);
 * what the scan cannot judge as jansson would goes to filter_reply. */
static int filter_bytes(gw_exchange *x, const char *body, size_t n, gw_buf *out) {
  if (!may_carry_tools(body, n)) return gw_json_check(body, n) ? 0 : -1;
  return gw__tool_list_filter_msg(gw__policy_for(x->lp, x->tenant, x->user), x->connector, body, n, out);
}

/* filter_reply changes only tool lists: a reply that cannot carry one is
 * relayed once the scan says jansson would take it. */
static bool vouch_reply(gw_exchange *x, const char *body, size_t n) {
  (void)x;
  return !may_carry_tools(body, n) && gw_json_check(body, n);
}

/* parsed: the event's data as note_event parsed it (NULL: not parsed),
 * taken over — a text is parsed, and charged to the JSON budgets, once: a
 * second charge refused after the first was taken dropped a reply
 * note_event had counted as given, and the client got no answer. */
static void relay_one_event(gw_exchange *x, const char *ev, size_t n, gw_buf *out, json_t *parsed) {
  if (x->flow->rewrite && x->flow->rewrite_tool_lists_only && !x->flow->event_id && !may_carry_tools(ev, n)) {
    json_decref(parsed);
    gw_buf_append(out, ev, n); /* nothing of it can be rewritten: as is */
    return;
  }
  if (!x->flow->rewrite) json_decref(parsed);
  if (x->flow->rewrite) {
    gw_buf data, head;
    gw_buf_init(&data, GW_MCP_MAX_SSE_EVENT);
    gw_buf_init(&head, GW_MCP_MAX_SSE_EVENT);
    char id[512];
    gw__sse_split(ev, n, &data, &head, x->flow->event_id ? id : NULL, sizeof id);
    /* data rewritten on its bytes, or that the flow vouches for, is not
     * parsed: only its id line changes, or its data for the bytes */
    gw_buf nb;
    gw_buf_init(&nb, GW_MCP_MAX_SSE_EVENT);
    int by = data.len && x->flow->rewrite_bytes ? x->flow->rewrite_bytes(x, data.data, data.len, &nb) : -1;
    bool vouched = by == 0 || (by < 0 && data.len && x->flow->vouch && x->flow->vouch(x, data.data, data.len));
    json_t *j = NULL;
    if (data.len && !vouched && by < 0) j = parsed ? parsed : gw__x_json(x, data.data, data.len, 0);
    else json_decref(parsed);
    if (data.len && !vouched && by < 0 && !j) {
      /* what the gateway cannot parse, a client's laxer parser may take
       * (JSON.parse accepts a lone surrogate escape): the rewrite (the
       * policy's tool filter, id rewriting) cannot run on it, so it is not
       * relayed — fail closed */
      if (!x->bad_event && !x->json_refused) /* (a refusal said why: gw__x_json) */
        GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
               "connector %s sent an SSE event whose data is not valid JSON: dropped", x->connector);
      x->bad_event = true;
      if (x->m) GW_STAT_ADD(x->m->errors, 1);
      gw_buf_free(&nb);
      gw_buf_free(&data);
      gw_buf_free(&head);
      return;
    }
    bool changed = by == 1 || (j && x->flow->rewrite(x, j));
    char *gid = x->flow->event_id && id[0] ? x->flow->event_id(x, id) : NULL;
    if (changed && gw__x_msg_dropped(j)) {
      /* dropped by the rewrite: only its id (the client resumes after it) */
      if (gid) gw_buf_printf(out, "id: %s\ndata:\n\n", gid);
      free(gid);
      json_decref(j);
      gw_buf_free(&nb);
      gw_buf_free(&data);
      gw_buf_free(&head);
      return;
    }
    if (changed || gid) {
      char *s = changed && j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
      if (s || gid || by == 1) {
        /* aggregated: the upstream's event id becomes a gateway id that a
         * GET with Last-Event-ID resumes on the right upstream */
        const char *h = head.data ? head.data : "";
        for (const char *l = h; *l;) {
          const char *nl = strchr(l, '\n');
          size_t ll = nl ? (size_t)(nl - l) : strlen(l);
          if (!(gid && ll >= 3 && !strncmp(l, "id:", 3))) {
            gw_buf_append(out, l, ll);
            gw_buf_append(out, "\n", 1);
          }
          l += ll + (nl ? 1 : 0);
        }
        if (gid) gw_buf_printf(out, "id: %s\n", gid);
        /* the data: re-serialised (one line), rewritten on its bytes or
         * unchanged (or empty: a priming event) — the last two keep the
         * upstream's line breaks, each line a data: line */
        const char *dd = s ? s : by == 1 ? nb.data : data.data ? data.data : "";
        size_t dl = s ? strlen(s) : by == 1 ? nb.len : data.len;
        for (const char *l = dd, *de = dd + dl;;) {
          const char *nl = memchr(l, '\n', (size_t)(de - l));
          size_t ll = nl ? (size_t)(nl - l) : (size_t)(de - l);
          gw_buf_appends(out, "data: ");
          gw_buf_append(out, l, ll);
          gw_buf_append(out, "\n", 1);
          if (!nl) break;
          l = nl + 1;
        }
        gw_buf_appends(out, "\n");
        free(gid);
        free(s);
        json_decref(j);
        gw_buf_free(&nb);
        gw_buf_free(&data);
        gw_buf_free(&head);
        return;
      }
    }
    json_decref(j);
    gw_buf_free(&nb);
    gw_buf_free(&data);
    gw_buf_free(&head);
  }
  gw_buf_append(out, ev, n);
}

/* ---------- what a POST's stream gave the client ---------- */

/* True when one of the event's lines is an id: field. */
static bool has_id_line(const char *ev, size_t n) {
  for (size_t i = 0; i + 3 <= n; i++)
    if ((i == 0 || ev[i - 1] == '\n' || ev[i - 1] == '\r') && !memcmp(ev + i, "id:", 3)) return true;
  return false;
}

static void note_reply(gw_exchange *x, const json_t *m) {
  if (!json_is_object(m) || json_object_get(m, "method")) return;
  if (!json_object_get(m, "result") && !json_object_get(m, "error")) return;
  const json_t *id = json_object_get(m, "id");
  size_t i;
  json_t *v;
  json_array_foreach(x->replied, i, v) if (json_equal(v, id)) return;
  json_array_foreach(x->ids, i, v) {
    if (!json_equal(v, id)) continue;
    if (!x->replied) x->replied = json_array();
    json_array_append(x->replied, v);
    return;
  }
}

/* Notes what one relayed event of a POST's stream gives the client: the
 * reply to one of its requests — parsed only while a reply is missing and
 * the bytes may hold one (progress notifications pass unparsed); the tree
 * goes to the relay in *tree (an event id to resume from: relay_event). false: the event must not be relayed —
 * its parse did not fit the JSON budgets (gw__x_json), so whether it
 * answers a request is unknown; relayed, the client would get its reply
 * and then the error answer_missing sends for a request never noted. */
static bool note_event(gw_exchange *x, const char *ev, size_t n, json_t **tree) {
  *tree = NULL;
  if (x->kind != GW_X_POST || !x->ids) return true;
  if (json_array_size(x->replied) >= json_array_size(x->ids)) return true;
  if (!gw_memmem(ev, n, "\"result\"", 8) && !gw_memmem(ev, n, "\"error\"", 7) && !gw_memmem(ev, n, "\\u", 2)) return true;
  gw_buf data;
  gw_buf_init(&data, GW_MCP_MAX_SSE_EVENT);
  gw__sse_split(ev, n, &data, NULL, NULL, 0);
  uint32_t refusals = x->json_refusals;
  json_t *j = data.len ? gw__x_json(x, data.data, data.len, 0) : NULL;
  bool refused = x->json_refusals != refusals; /* (json_refused stays: a flood is logged once) */
  gw_buf_free(&data);
  size_t i;
  json_t *m;
  if (json_is_array(j)) json_array_foreach(j, i, m) note_reply(x, m);
  else note_reply(x, j);
  *tree = j; /* (note_reply keeps nothing of it: the relay's rewrite may change it) */
  return !refused;
}

/* The stream of a POST ends (err: why, 0 for a clean end) with neither
 * every reply nor an event id to resume from: each request still
 * unanswered gets an error event, so the client is not left waiting. */
static void answer_missing(gw_exchange *x, int err) {
  char msg[300];
  if (x->too_big && x->over_budget)
    snprintf(msg, sizeof msg, "connector \"%s\" sent an event the gateway could not hold: %s", x->connector,
             GW_X_BUDGET_MSG);
  else if (x->too_big)
    snprintf(msg, sizeof msg, "connector \"%s\" sent an event larger than the gateway accepts", x->connector);
  else if (x->json_refused)
    snprintf(msg, sizeof msg, "connector \"%s\": " GW_X_JSON_REFUSED_MSG, x->connector);
  else if (x->bad_event)
    snprintf(msg, sizeof msg, "connector \"%s\" sent an invalid response (an event that is not valid JSON)",
             x->connector);
  else if (err && err != GW_OUT_EABORTED)
    snprintf(msg, sizeof msg, "connector \"%s\" ended its answer without a reply: %s", x->connector,
             gw_out_strerror(err));
  else if (x->ev.len)
    snprintf(msg, sizeof msg, "connector \"%s\" ended its answer inside an unterminated event, without a reply",
             x->connector);
  else
    snprintf(msg, sizeof msg, "connector \"%s\" ended its answer without a reply", x->connector);
  if (gw__x_sse_errors(x, GW_RPC_UPSTREAM_DOWN, msg) && x->m) GW_STAT_ADD(x->m->errors, 1);
}

/* ---------- SSE relay ---------- */

/* The events complete in one upstream read leave in one client write (a
 * call streaming 100 progress events is not 100 writes); past
 * RELAY_FLUSH bytes what is gathered goes out before the next event, so
 * the buffer stays within one event's worst case plus that. */
#define RELAY_FLUSH (64 * 1024)

typedef struct relay_out {
  gw_exchange *x;
  gw_buf out;
} relay_out;

static int relay_flush(relay_out *o) {
  int wr = o->x->req && o->out.len ? gw_resp_write(o->x->req, o->out.data, o->out.len) : 0;
  o->out.len = 0;
  return wr != 0 ? -1 : 0;
}

static int relay_event(void *arg, const char *ev, size_t n) {
  relay_out *o = arg;
  if (o->out.len > RELAY_FLUSH && relay_flush(o) != 0) return -1;
  json_t *tree;
  if (!note_event(o->x, ev, n, &tree)) return 0;
  size_t before = o->out.len;
  relay_one_event(o->x, ev, n, &o->out, tree);
  /* resumable once the client got an event id: an event dropped (its
   * parse refused, invalid) gave it none to resume from — counted, the
   * stream ended without answer_missing's errors and the client waited */
  if (o->out.len > before && o->x->kind == GW_X_POST && o->x->ids && !o->x->resumable && has_id_line(ev, n))
    o->x->resumable = true;
  return 0;
}

static int relay_events(gw_exchange *x) {
  relay_out o = {x, {0}};
  gw_buf_init(&o.out, 2 * GW_MCP_MAX_SSE_EVENT + RELAY_FLUSH);
  int rc = gw__sse_each(&x->ev, &x->ev_scanned, relay_event, &o);
  if (rc == 0) rc = relay_flush(&o);
  gw_buf_free(&o.out);
  return rc;
}

/* ---------- upstream callbacks ---------- */

void gw__relay_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n, bool stream,
                       bool (*stale)(gw_exchange *x, int status)) {
  x->status = status;
  gw__mcp_stats_observe(x->m, (double)(uv_hrtime() - x->start_ns) / 1e9);
  for (size_t i = 0; i < n; i++) {
    if (gw_header_is(h[i].name, "content-type")) gw_strlcpy(x->up_ct, h[i].value, sizeof x->up_ct);
    else if (gw_header_is(h[i].name, "mcp-session-id")) gw_strlcpy(x->up_sid, h[i].value, sizeof x->up_sid);
  }
  if (!gw__x_client_alive(x)) {
    gw_out_abort(r);
    return;
  }
  if (status == 401 || status == 403) {
    /* never hand the upstream's challenge to the client: the client's
     * credential is the gateway's, not the upstream's */
    if (x->m) GW_STAT_ADD(x->m->auth_failures, 1), GW_STAT_ADD(x->m->errors, 1);
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s refused the %s (HTTP %d)", x->connector,
           x->grant_used ? "user's own grant" : "gateway's credential", status);
    if (x->grant_used) gw__x_reconnect_error(x, status);
    else gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_AUTH,
              "connector \"%s\" refused the gateway's credential (HTTP %d); ask your admin to check the "
              "connector's credential",
              x->connector, status);
    gw_out_abort(r);
    return;
  }
  if (status >= 300 && status < 400) {
    /* the engine follows no redirect and the client gets none either: its
     * Location (and body) could send the client anywhere or reveal an
     * internal address */
    if (x->m) GW_STAT_ADD(x->m->errors, 1);
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}),
           "connector %s answered with a redirect (HTTP %d): not followed, not relayed", x->connector, status);
    gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN,
                     "connector \"%s\" answered with a redirect (HTTP %d), which the gateway does not follow; ask your "
                     "admin to set the connector's final URL",
                     x->connector, status);
    gw_out_abort(r);
    return;
  }
  if (stale && stale(x, status)) {
    gw_out_abort(r);
    return;
  }
  bool sse = gw__sse_is(x->up_ct);
  if (stream && status == 200 && sse && x->req) {
    /* a stream the client keeps open: it ends when the request's token
     * expires (exchange.h); one that could not be watched is refused */
    if (gw__x_expiry_watch(x) != 0) {
      gw__x_rpc_error(x, 503, -32603, "out of memory");
      gw_out_abort(r);
      return;
    }
    x->started = true;
    if (x->m) GW_STAT_ADD(x->m->streams, 1);
    if (gw__held_stream(x)) return; /* the held call's stream is open already (held.c) */
    if (x->sid[0]) gw_resp_header(x->req, "Mcp-Session-Id", x->sid);
    gw_resp_header(x->req, "Cache-Control", "no-cache");
    gw_resp_start(x->req, 200, "text/event-stream");
  }
}

int gw__relay_data(gw_exchange *x, gw_out_req *r, const char *p, size_t n) {
  if (!gw__x_client_alive(x)) {
    gw_out_abort(r);
    return 0;
  }
  if (x->started) {
    size_t at = x->ev.len;
    int arc = gw_buf_append(&x->ev, p, n);
    if (arc != 0) {
      if (x->audit) gw__audit_call_seen(x, n, NULL, 0);
      x->too_big = true;
      x->over_budget = arc == GW_EBUDGET;
      gw_out_abort(r);
      return 0;
    }
    if (x->audit) gw__audit_call_seen(x, n, &x->ev, at); /* before the complete events leave x->ev */
    size_t held = x->ev.len;
    if (relay_events(x) != 0) {
      gw_out_abort(r);
      return 0;
    }
    gw__sse_partial(r, held, x->ev.len);
    switch (gw__x_stream_pressure(x, x->req)) {
    case GW_STREAM_OVER:
      gw_out_abort(r);
      return 0;
    case GW_STREAM_FULL:
      x->paused = true;
      return GW_OUT_PAUSE;
    default:
      return 0;
    }
  }
  /* over the cap (or a batch's budget): fails in up_done. The append that
   * would pass the cap appends nothing, so the length cannot tell. */
  size_t at = x->body.len;
  int arc = 0;
  if (!gw__x_take(x, n) || (arc = gw_buf_append(&x->body, p, n)) != 0) {
    if (x->audit) gw__audit_call_seen(x, n, NULL, 0);
    x->too_big = true;
    x->over_budget = arc == GW_EBUDGET;
    gw_out_abort(r);
  } else if (x->audit) {
    gw__audit_call_seen(x, n, &x->body, at);
  }
  /* a JSON reply is one message; a buffered SSE reply may rightly take
   * long (progress events), its events are not tracked here */
  if (!gw__sse_is(x->up_ct)) gw_out_partial(r, true);
  return 0;
}

void gw__relay_done(gw_exchange *x, gw_out_req *r, int err, void (*initialized)(gw_exchange *x)) {
  if (gw__x_client_alive(x)) {
    if (err && err != GW_OUT_EABORTED) {
      if (x->m) GW_STAT_ADD(x->m->errors, 1);
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, x->req ? x->req->id : NULL}), "connector %s: %s (%s)",
             x->connector, gw_out_strerror(err), gw_out_detail(r));
    }
    if (x->started) {
      /* the stream ends (clean chunked end: the client may resume with
       * Last-Event-ID); a partial event is dropped. A POST's stream the
       * client cannot resume ends with the replies it still lacks. */
      gw_req *cr = x->req;
      if (x->kind == GW_X_POST && !x->resumable && json_array_size(x->replied) < json_array_size(x->ids))
        answer_missing(x, err);
      gw__x_client_done(x);
      gw_resp_end(cr);
    } else if (err) {
      if (x->too_big && x->over_budget) {
        if (x->req && !x->into) gw_resp_header(x->req, "Retry-After", "1");
        gw__x_rpc_error(x, 503, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent a response the gateway could not hold: %s",
                        x->connector, GW_X_BUDGET_MSG);
      } else if (x->too_big) {
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent a response larger than the gateway accepts",
                        x->connector);
      } else if (err == GW_OUT_EBUSY) {
        /* the upstream connection budget (upstream_connections): nothing
         * was sent; the client may simply try again */
        if (x->req && !x->into) gw_resp_header(x->req, "Retry-After", "1");
        gw__x_rpc_error(x, 503, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" was not called: %s", x->connector,
                        gw_out_strerror(err));
      } else
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" is unavailable: %s", x->connector,
                  gw_out_strerror(err));
    } else if (initialized) {
      initialized(x);
    } else if (x->status == 202 || x->status == 204) {
      gw__x_reply_raw(x, x->status, NULL, NULL, 0);
    } else if (x->status >= 500) {
      if (x->m) GW_STAT_ADD(x->m->errors, 1);
      gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" failed (HTTP %d)", x->connector, x->status);
    } else if (x->into && gw__sse_is(x->up_ct)) {
      /* a batch element answered over SSE: its reply goes into the array */
      json_t *m = gw__x_find_reply(x, json_array_get(x->ids, 0));
      if (m) {
        if (x->flow->rewrite) x->flow->rewrite(x, m);
        gw__x_reply_json(x, 200, m);
      } else if (x->json_refused) {
        gw__x_json_refused_error(x);
      } else {
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent no reply", x->connector);
      }
    } else {
      /* a JSON reply: check it is JSON before relaying it unchanged. When
       * nothing in it can be rewritten (a flow that only filters tool
       * lists, and no "tools" key can occur), a scan vouches for it
       * without building it (gateway/base/json_check.h). */
      bool is_json = !strncasecmp(x->up_ct, "application/json", 16);
      bool bytes = is_json && x->body.len && !x->into && x->flow->rewrite_bytes;
      gw_buf nb;
      gw_buf_init(&nb, GW_MCP_MAX_JSON_BODY);
      int by = bytes ? x->flow->rewrite_bytes(x, x->body.data, x->body.len, &nb) : -1;
      if (by == 1) {
        gw__x_reply_raw(x, x->status, "application/json", nb.data, nb.len);
        gw_buf_free(&nb);
        return;
      }
      gw_buf_free(&nb);
      bool valid = by == 0 || (is_json && x->body.len && !x->into && x->flow->vouch &&
                               x->flow->vouch(x, x->body.data, x->body.len));
      /* a raw NUL byte: invalid (jansson would skip one after a value) */
      json_t *j = is_json && x->body.len && !valid && !memchr(x->body.data, 0, x->body.len)
                      ? gw__x_json(x, x->body.data, x->body.len, 0)
                      : NULL;
      if (is_json && x->body.len && !j && !valid && x->json_refused) {
        gw__x_json_refused_error(x);
      } else if (is_json && x->body.len && !j && !valid) {
        if (x->m) GW_STAT_ADD(x->m->errors, 1);
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an invalid response", x->connector);
      } else if (!is_json && x->status == 200) {
        if (x->m) GW_STAT_ADD(x->m->errors, 1);
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an unexpected content type",
                  x->connector);
      } else if (!is_json && gw__held_stream(x)) {
        /* a held call's answer is an event of the gateway's stream, which
         * the client reads as a message whatever the upstream's status:
         * one that was not JSON (so neither checked nor filtered) is
         * never relayed as one */
        if (x->m) GW_STAT_ADD(x->m->errors, 1);
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" answered HTTP %d without a JSON reply",
                        x->connector, x->status);
      } else if (x->into && j && !gw__is_reply(j, json_array_get(x->ids, 0), true)) {
        /* a batch element's reply goes into the batch's array, where the
         * client takes every message for its own: anything else the
         * upstream answered (a request or a notification, whatever else
         * it carries; a reply to another id; an array) is no reply, and a
         * server→client request never reaches the client this way */
        if (x->m) GW_STAT_ADD(x->m->errors, 1);
        gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent no reply", x->connector);
      } else {
        bool changed = j && x->flow->rewrite && x->flow->rewrite(x, j);
        if (changed && gw__x_msg_dropped(j)) /* all it held was dropped by the rewrite */
          gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent no reply", x->connector);
        else if (j && (changed || x->into))
          gw__x_reply_json(x, x->status, json_incref(j));
        else
          gw__x_reply_raw(x, x->status, is_json ? "application/json" : NULL, x->body.data, x->body.len);
      }
      json_decref(j);
    }
  }
}

/* ---------- initialize → a gateway session ---------- */

/* The upstream's initialize answer, as checked (tasks removed), kept in
 * x->body until the session is stored. */
static void reply_initialize(gw_exchange *x, json_t *result) {
  (void)result;
  gw__x_reply_json(x, 200, gw_json_loadb(x->body.data, x->body.len, 0, NULL)); /* (charged: finish_initialize) */
}

static void finish_initialize(gw_exchange *x) {
  json_t *msg = gw__x_find_reply(x, json_array_get(x->ids, 0));
  if (x->status != 200) {
    /* the upstream refused (e.g. an unsupported version): relay its answer */
    if (msg) gw__x_reply_json(x, x->status, msg);
    else gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" failed to initialize (HTTP %d)", x->connector, x->status);
    return;
  }
  json_t *result = json_object_get(msg, "result");
  if (!json_is_object(result)) {
    if (msg && json_object_get(msg, "error")) {
      gw__x_reply_json(x, 200, msg);
      return;
    }
    json_decref(msg);
    if (x->json_refused)
      gw__x_json_refused_error(x);
    else
      gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an invalid initialize result", x->connector);
    return;
  }
  /* tasks are not governed by policy yet: not offered */
  json_t *caps = json_object_get(result, "capabilities");
  if (json_is_object(caps)) json_object_del(caps, "tasks");
  char ver[32];
  gw_strlcpy(ver, json_string_value(json_object_get(result, "protocolVersion")) ?: "", sizeof ver);
  char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(msg);
  if (!s) {
    gw__x_rpc_error(x, 500, -32603, "the gateway could not create a session");
    return;
  }
  gw_buf_reset(&x->body);
  int arc = gw_buf_append(&x->body, s, strlen(s));
  free(s);
  if (arc) { /* re-serialised longer than it came (its buffer's cap, or the budget): no session */
    if (arc == GW_EBUDGET) {
      if (x->req) gw_resp_header(x->req, "Retry-After", "1");
      gw__x_rpc_error(x, 503, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" could not be initialized: %s", x->connector,
                      GW_X_BUDGET_MSG);
    } else {
      gw__x_rpc_error(x, 502, GW_RPC_UPSTREAM_DOWN, "connector \"%s\" sent an initialize result larger than the gateway "
                      "accepts", x->connector);
    }
    return;
  }
  gw_session sess = {0};
  gw_strlcpy(sess.tenant, x->tenant, sizeof sess.tenant);
  gw_strlcpy(sess.user, x->user, sizeof sess.user);
  gw_strlcpy(sess.connector, x->connector, sizeof sess.connector);
  gw_strlcpy(sess.version, ver, sizeof sess.version);
  gw_strlcpy(sess.upstream, x->up_sid, sizeof sess.upstream);
  sess.created_ms = gw_session_now_ms();
  ds(x)->storing = true; /* it ends what it does not store */
  gw__mcp_session_create(x, &sess, NULL, reply_initialize);
}

/* The direct flow's upstream callbacks: the relay, and initialize's
 * answer opening a gateway session. */
static void direct_headers(gw_exchange *x, gw_out_req *r, int status, const gw_out_header *h, size_t n) {
  gw__relay_headers(x, r, status, h, n, !ds(x)->initialize, NULL);
}

static void direct_done(gw_exchange *x, gw_out_req *r, int err) {
  gw__relay_done(x, r, err, ds(x)->initialize ? finish_initialize : NULL);
  /* an upstream session the initialize opened that no write will store
   * (the client gone — its access revoked meanwhile, a connector PUT
   * ending its exchanges —, the upstream's answer refused or broken off):
   * nobody will use it, so it is ended there, as it was opened (rule 6
   * of usess_end.c); none opened: forgotten */
  if (ds(x)->initialize && !ds(x)->storing) gw__usess_end_opened_id(x, x->up_sid, "");
}

static void direct_free(void *state) {
  direct_state *st = state;
  free(st);
}

/* Every relayed message is checked for a tool list (filter_reply): a list
 * can come on any response or stream, with any id. */
static const gw_flow_ops direct_flow = {
    .name = "direct", .up_headers = direct_headers, .up_data = gw__relay_data, .up_done = direct_done,
    .rewrite = filter_reply, .rewrite_tool_lists_only = true, .vouch = vouch_reply,
    .rewrite_bytes = filter_bytes, .free = direct_free};

int gw__relay_start(gw_exchange *x, const char *method, const void *body, size_t len, const char *accept) {
  const char *pv = x->req ? gw_req_header(x->req, "mcp-protocol-version") : NULL;
  gw_upcall u = {0};
  u.method = method;
  u.body = body;
  u.len = len;
  u.accept = accept;
  u.protocol_version = pv ? pv : x->sess.version;
  u.upstream_sid = x->sess.upstream;
  u.last_event_id = x->req ? gw_req_header(x->req, "last-event-id") : NULL;
  u.stream = !strcmp(method, "GET");
  /* the connector endpoint's initialize keeps what it goes with, to end
   * the session it opens should no write store it (usess_end.h) */
  u.keep_opener = x->flow == &direct_flow && ds(x)->initialize;
  x->start_ns = uv_hrtime();
  return gw__x_upcall(x, &u);
}

static direct_state *direct_state_new(void) { return calloc(1, sizeof(direct_state)); }

/* A held call goes upstream after its approval: the policy decides again
 * (it may block the tool by now; a hidden connector fails in the upcall),
 * then the bytes the client sent are forwarded as they are. */
static void direct_forward(gw_exchange *x) {
  const pol_user *pu = gw__policy_for(x->lp, x->tenant, x->user);
  json_t *msg = pu ? gw__mcp_body_json(x->req, 0, NULL) : NULL;
  const char *tool = json_string_value(json_object_get(json_object_get(msg, "params"), "name"));
  pol_decision d = pu && tool ? gw__decide_call(pu, x->connector, tool) : POL_BLOCK;
  json_decref(msg);
  if (!pu) {
    gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now; refusing (fail closed)");
    return;
  }
  if (d != POL_ALLOW && d != POL_APPROVE) {
    gw__x_rpc_error(x, 200, GW_RPC_BLOCKED,
                    "the call was approved, but your organisation's policy no longer lets you call it; it was not made");
    return;
  }
  int rc = gw__relay_start(x, "POST", x->req->body, x->req->body_len, "application/json, text/event-stream");
  if (rc != 0) gw__x_start_failed(x, rc);
}

/* A POST's checks after its message was read (ids is taken: released
 * when they refuse). true: refused, answered. */
static bool post_checks(gw_req *req, const gw_mcp_ctx *ctx, json_t *ids, bool batch, bool initialize) {
  if (!initialize && gw__mcp_version_refused(req)) {
    json_decref(ids);
    return true;
  }
  if (!initialize) {
    if (!ctx->sid) {
      json_decref(ids);
      gw__mcp_refuse(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required (send initialize first)");
      return true;
    }
    if (!ctx->sess_ok) {
      json_decref(ids);
      gw__mcp_refuse(req, 404, -32001, "Session not found");
      return true;
    }
    if (batch && strcmp(ctx->sess.version, "2025-03-26") != 0) {
      json_decref(ids);
      gw__mcp_refuse(req, 400, -32600, "JSON-RPC batches are only allowed with protocol version 2025-03-26");
      return true;
    }
  }
  return false;
}

/* Creates the exchange, decides the policy on the tools/call names (from
 * parsed, or the scan's lite: one of them) and forwards the bytes
 * received. ids (the parsed message's; NULL with lite) is taken; parsed
 * and lite stay the caller's. */
static void post_forward(gw_req *req, const gw_mcp_ctx *ctx, json_t *ids, bool initialize, json_t *parsed,
                         const gw_rpc_lite *lite) {
  const char *tenant = ctx->tenant, *connector = ctx->connector, *user = ctx->user;
  bool batch = parsed && json_is_array(parsed);
  bool tasks = false;
  /* the client cancels a call the gateway holds for approval: its stream
   * ends here, nothing goes upstream (held.c) */
  const char *meth = parsed && !batch ? json_string_value(json_object_get(parsed, "method")) : lite ? lite->method : NULL;
  if (!initialize && ctx->sid && meth && !strcmp(meth, "notifications/cancelled")) {
    json_t *note = parsed ? json_incref(parsed) : gw__mcp_body_json(req, 0, NULL);
    bool ended = note && gw__held_cancel(req->lp, tenant, ctx->sid, note);
    json_decref(note);
    if (ended) {
      json_decref(ids);
      gw_respond(req, 202, NULL, NULL, 0);
      return;
    }
  }
  if (parsed && !batch) tasks = !strncmp(json_string_value(json_object_get(parsed, "method")) ?: "", "tasks/", 6);
  gw_exchange *x = gw__mcp_exchange(req, GW_X_POST, ctx, &direct_flow, direct_state_new());
  if (!x || !x->state) {
    if (x) gw__x_client_done(x);
    json_decref(ids);
    gw_respond_error(req, 500, "internal", "out of memory");
    return;
  }
  if (ids) {
    json_decref(x->ids);
    x->ids = ids;
  } else if (lite && lite->id) {
    json_array_append(x->ids, lite->id);
  }
  direct_state *st = x->state;
  st->initialize = initialize;
  if (!initialize) {
    x->sess = ctx->sess;
    gw_strlcpy(x->sid, ctx->sid, sizeof x->sid);
  }
  if (tasks) {
    gw__x_rpc_error(x, 200, GW_RPC_NOT_SUPPORTED, "tasks are not supported through the gateway yet");
    return;
  }
  /* policy: the decision uses the tool name from the strictly parsed
   * message that is forwarded, nothing else */
  {
    const pol_user *pu = gw__policy_for(req->lp, tenant, user);
    if (!pu) {
      gw__x_rpc_error(x, 503, -32603, "the gateway cannot read its policy right now; refusing (fail closed)");
      return;
    }
    size_t n = parsed ? (batch ? json_array_size(parsed) : 1) : 0;
    char refused_buf[300];
    const char *refused = NULL;
    pol_decision worst = POL_ALLOW;
    for (size_t i = 0; i < n; i++) {
      json_t *e = batch ? json_array_get(parsed, i) : parsed;
      const char *mm = json_string_value(json_object_get(e, "method"));
      if (!mm) continue;
      if (strcmp(mm, "tools/call")) continue;
      const char *tool = json_string_value(json_object_get(json_object_get(e, "params"), "name"));
      pol_decision d = gw__decide_call(pu, connector, tool);
      gw__audit_call_begin(x, connector, tool ? tool : "(no name)", pol_decision_name(d), pol_user_version(pu),
                           json_object_get(json_object_get(e, "params"), "arguments"), NULL, 0);
      if (gw__decide_worse(worst, d) != worst) {
        worst = d;
        gw_strlcpy(refused_buf, tool ? tool : "(no name)", sizeof refused_buf);
        refused = refused_buf;
      }
    }
    if (lite && !strcmp(lite->method, "tools/call")) {
      pol_decision d = gw__decide_call(pu, connector, lite->name);
      gw__audit_call_begin(x, connector, lite->name, pol_decision_name(d), pol_user_version(pu), NULL,
                           lite->args_at.p, lite->args_at.n);
      if (gw__decide_worse(worst, d) != worst) {
        worst = d;
        refused = lite->name;
      }
    }
    if (refused && worst == POL_APPROVE && !batch) {
      /* held until a reviewer decides (held.c) — if it can be recorded */
      if (x->audit && gw__audit_refuse(x)) return;
      if (gw__held_start(x, pu, connector, refused, req->body, req->body_len, direct_forward)) return;
    }
    if (refused) {
      gw__decide_refuse(x, pu, worst, refused, connector);
      return;
    }
    if (x->audit && gw__audit_refuse(x)) return; /* cannot be recorded: fail closed (audit_on_failure) */
  }
  /* forwarded exactly as checked (the bytes received, not a re-encoding) */
  int rc = gw__relay_start(x, "POST", req->body, req->body_len, "application/json, text/event-stream");
  if (rc != 0) gw__x_start_failed(x, rc);
}

static void dispatch_pinned(gw_req *req) {
  gw_mcp_ctx ctx;
  if (gw__mcp_ctx_of(req, false, &ctx) != 0) return;
  const char *tenant = ctx.tenant, *connector = ctx.connector, *user = ctx.user, *sid = ctx.sid;
  const char *m = req->method;
  gw_session sess = ctx.sess;
  {
    /* a connector no rule gives the user does not exist for them */
    const pol_user *pu = gw__policy_for(req->lp, tenant, user);
    if (!pu) {
      gw_respond_error(req, 503, "policy_unavailable", "the gateway cannot read its policy right now (fail closed)");
      return;
    }
    if (!pol_connector_visible(pu, connector)) {
      gw_respond_error(req, 404, "not_found", "no connector \"%s\" in this tenant", connector);
      return;
    }
  }

  if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
    if (gw__mcp_session_checks(req, &ctx) != 0) return;
    gw_exchange *x = gw__mcp_exchange(req, !strcmp(m, "GET") ? GW_X_GET : GW_X_DELETE, &ctx, &direct_flow,
                                      direct_state_new());
    if (!x || !x->state) {
      if (x) gw__x_client_done(x);
      gw_respond_error(req, 500, "internal", "out of memory");
      return;
    }
    x->sess = sess;
    gw_strlcpy(x->sid, sid, sizeof x->sid);
    if (x->kind == GW_X_GET) {
      int rc = gw__relay_start(x, "GET", NULL, 0, "text/event-stream");
      if (rc != 0) gw__x_start_failed(x, rc);
      return;
    }
    gw__mcp_delete_session(x, NULL, NULL);
    return;
  }

  /* POST: the common single request read by the scan; anything else
   * (a batch, initialize, an escape where the gateway looks) parsed */
  gw_rpc_lite lite;
  if (gw__mcp_post_lite(req, &lite)) {
    if (!post_checks(req, &ctx, NULL, false, false)) post_forward(req, &ctx, NULL, false, NULL, &lite);
    json_decref(lite.id);
    return;
  }
  json_t *msg = gw__mcp_parse_post(req);
  if (!msg) return;
  json_t *ids = json_array();
  const char *why = NULL, *method = NULL;
  bool batch = json_is_array(msg);
  bool initialize = false, discover = false;
  if (batch) {
    if (!json_array_size(msg)) why = "an empty batch";
    size_t i;
    json_t *e;
    json_array_foreach(msg, i, e) {
      const char *mm = NULL;
      if (!why) why = gw__check_message(e, ids, &mm);
      if (mm && (!strcmp(mm, "initialize") || !strncmp(mm, "tasks/", 6))) why = "initialize and tasks/* cannot be batched";
    }
  } else {
    why = gw__check_message(msg, ids, &method);
    if (method) {
      initialize = !strcmp(method, "initialize");
      discover = !strcmp(method, "server/discover");
    }
  }
  if (why) {
    json_decref(ids);
    json_decref(msg);
    gw__mcp_refuse(req, 400, -32600, why);
    return;
  }
  if (discover) {
    gw__mcp_refuse_discover(req, json_array_get(ids, 0));
    json_decref(ids);
    json_decref(msg);
    return;
  }
  if (post_checks(req, &ctx, ids, batch, initialize)) {
    json_decref(msg);
    return;
  }
  post_forward(req, &ctx, ids, initialize, msg, NULL);
  json_decref(msg);
}

/* One read transaction for everything the dispatch reads (mcp_loop.h). */
void gw_proxy_dispatch(gw_req *req) { gw__dispatch_pinned(req, dispatch_pinned); }

