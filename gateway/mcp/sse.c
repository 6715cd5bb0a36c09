/* gateway/mcp/sse.c — the one SSE parser (see sse.h).
 *
 * Rules this file keeps: lines end at CRLF, LF or a lone CR, and an event
 * ends at an empty line — the SSE standard's rules, which the MCP clients'
 * parsers follow: if the gateway split events otherwise, an upstream could
 * frame a message the client reads but the gateway cannot parse, and the
 * relay (policy filtering, id rewriting) would pass it unchanged. A CR
 * at the end of the bytes so far waits for the next byte (it may start a
 * CRLF). A UTF-8 byte order mark before an event's first line is
 * dropped (clients drop it at the start of a stream; elsewhere it is at
 * worst a message the gateway checks that the client would ignore). A
 * field value loses one leading space. Every place in
 * gateway/mcp/ that reads SSE — the relay, the aggregated GET multiplexer,
 * buffered replies — goes through these functions, so they agree on where
 * an event ends. */
#include "gateway/mcp/sse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/json_check.h"
#include "gateway/mcp/exchange.h"

/* The length of the line terminator at d[i] (CRLF 2, LF or lone CR 1), 0
 * when d[i] ends no line, or -1 when d[i] is a CR at the end of the bytes
 * so far (CRLF or lone CR: the next byte decides). */
static int line_end(const char *d, size_t len, size_t i) {
  if (d[i] == '\n') return 1;
  if (d[i] != '\r') return 0;
  if (i + 1 >= len) return -1;
  return d[i + 1] == '\n' ? 2 : 1;
}

/* The end (one past the empty line) of the first event in d[from..len),
 * or 0; *at: where the search stopped. from must not point inside a CRLF
 * (callers resume at most 3 bytes before where they stopped, which a line
 * ending and the empty line after it fit in). */
static size_t event_end(const char *d, size_t len, size_t from, size_t *at) {
  size_t i = from;
  for (; i < len; i++) {
    int t = line_end(d, len, i);
    if (t == 0) continue;
    if (t < 0 || i + (size_t)t >= len) break; /* the next bytes decide */
    int e = line_end(d, len, i + (size_t)t); /* the empty line? */
    if (e < 0) break;
    if (e > 0) {
      *at = i;
      return i + (size_t)t + (size_t)e;
    }
    i += (size_t)t - 1; /* a line ended; the next one starts after it */
  }
  *at = i;
  return 0;
}

int gw__sse_each(gw_buf *ev, size_t *scanned, int (*fn)(void *arg, const char *ev, size_t n), void *arg) {
  size_t start = 0, i = *scanned, end;
  char *d = ev->data;
  int rc = 0;
  while ((end = event_end(d, ev->len, i, &i)) != 0) {
    if ((rc = fn(arg, d + start, end - start)) != 0) break;
    start = end;
    i = end;
  }
  /* resume after what was searched, less the 3 bytes a terminator split
   * across two chunks may have begun with */
  size_t s = i > 3 ? i - 3 : 0;
  *scanned = s > start ? s - start : 0;
  if (start) {
    memmove(d, d + start, ev->len - start);
    ev->len -= start;
    d[ev->len] = 0;
  }
  /* emptied, it gives back a capacity its meter charges (one large event
   * grew it): found chasing a flaky test, a long-lived GET stream kept the
   * 8 MiB of its largest event, charged to mcp_buffered_max, for as long as
   * it lived — also while paused for a client that does not read */
  if (!ev->len && ev->cap > GW_BUF_METER_FREE) gw_buf_free(ev);
  return rc;
}

void gw__sse_partial(gw_out_req *r, size_t held, size_t left) {
  if (left < held) gw_out_partial(r, false); /* an event ended: the next one's clock starts now */
  gw_out_partial(r, left > 0);
}

void gw__sse_split(const char *ev, size_t n, gw_buf *data, gw_buf *head, char *id, size_t idcap) {
  const char *p = ev, *end = ev + n;
  if (id && idcap) id[0] = 0;
  /* a stream may open with a UTF-8 byte order mark, which clients drop */
  if (n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
  while (p < end) {
    /* a line ends at CRLF, LF or a lone CR */
    size_t ll = 0;
    while (p + ll < end && p[ll] != '\n' && p[ll] != '\r') ll++;
    size_t lraw = ll;
    if (p + lraw < end) lraw += p[lraw] == '\r' && p + lraw + 1 < end && p[lraw + 1] == '\n' ? 2 : 1;
    if (ll >= 5 && !strncmp(p, "data:", 5)) {
      const char *v = p + 5;
      size_t vl = ll - 5;
      if (vl && *v == ' ') v++, vl--;
      if (data->len) gw_buf_append(data, "\n", 1);
      gw_buf_append(data, v, vl);
    } else if (ll) {
      if (id && ll >= 3 && !strncmp(p, "id:", 3)) {
        const char *v = p + 3;
        size_t vl = ll - 3;
        if (vl && *v == ' ') v++, vl--;
        snprintf(id, idcap, "%.*s", (int)vl, v);
      }
      if (head) {
        gw_buf_append(head, p, ll);
        gw_buf_append(head, "\n", 1);
      }
    }
    p += lraw;
  }
}

int gw__sse_is(const char *ct) { return ct && !strncasecmp(ct, "text/event-stream", 17); }

bool gw__is_reply(const json_t *m, const json_t *id, bool need_result) {
  return json_is_object(m) && !json_is_string(json_object_get(m, "method")) &&
         (!id || json_equal(json_object_get(m, "id"), (json_t *)id)) &&
         (!need_result || json_object_get(m, "result") || json_object_get(m, "error"));
}

static json_t *plain_load(void *arg, const char *p, size_t n, size_t flags) {
  (void)arg;
  return gw_json_loadb(p, n, flags, NULL);
}

/* The event's data as the reply with `id`, or NULL. */
static json_t *reply_in(const char *ev, size_t n, const json_t *id, gw_buf *data, int need_result,
                        gw__json_load_fn load, void *arg) {
  gw_buf_reset(data);
  gw__sse_split(ev, n, data, NULL, NULL, 0);
  if (!data->len) return NULL;
  json_t *j = load(arg, data->data, data->len, 0);
  if (gw__is_reply(j, id, need_result)) return j;
  json_decref(j);
  return NULL;
}

json_t *gw__find_reply(const char *s, size_t n, const char *ct, const json_t *id) {
  return gw__find_reply_by(s, n, ct, id, NULL, NULL);
}

json_t *gw__find_reply_by(const char *s, size_t n, const char *ct, const json_t *id, gw__json_load_fn load,
                          void *arg) {
  if (!load) load = plain_load;
  if (!gw__sse_is(ct)) {
    /* a reply is an object: an array (a batch's) or a scalar is none */
    json_t *j = n ? load(arg, s, n, JSON_REJECT_DUPLICATES) : NULL;
    if (j && !gw__is_reply(j, NULL, false)) {
      json_decref(j);
      j = NULL;
    }
    return j;
  }
  gw_buf data;
  gw_buf_init(&data, GW_MCP_MAX_JSON_BODY);
  json_t *found = NULL;
  size_t start = 0, at, end;
  while (!found && (end = event_end(s, n, start, &at)) != 0) {
    found = reply_in(s + start, end - start, id, &data, 1, load, arg);
    start = end;
  }
  /* a last event without its blank line */
  if (!found && start < n) found = reply_in(s + start, n - start, id, &data, 0, load, arg);
  gw_buf_free(&data);
  return found;
}

/* One event's data as the reply with id_text: 1 it is, 0 it is not, -1
 * undecided (reply_in's verdict needs jansson). paths[0..3] are "id",
 * "result", "error", "method" (gw__find_reply_text's callers ask for them
 * first). */
static int reply_text_in(const char *ev, size_t n, const char *id_text, gw_buf *data, const char *const *paths,
                         size_t npaths, gw_json_span *got) {
  gw_buf_reset(data);
  gw__sse_split(ev, n, data, NULL, NULL, 0);
  if (!data->len) return 0;
  if (gw_json_pick(data->data, data->len, paths, npaths, got) != 1) return -1;
  if (!got[0].p) return 0;
  if (memchr(got[0].p, '\\', got[0].n)) return -1;
  if (got[0].n != strlen(id_text) || memcmp(got[0].p, id_text, got[0].n)) return 0;
  if (got[3].p && got[3].p[0] == '"') return 0; /* a request or a notification, whatever else it carries */
  return got[1].p || got[2].p ? 1 : 0;
}

int gw__find_reply_text(const char *s, size_t n, const char *ct, const char *id_text, gw_buf *data,
                        const char *const *paths, size_t npaths, gw_json_span *got) {
  if (npaths < 4 || strcmp(paths[0], "id") || strcmp(paths[1], "result") || strcmp(paths[2], "error") ||
      strcmp(paths[3], "method"))
    return -1;
  if (!gw__sse_is(ct)) /* the body is the message: its spans are the body's, nothing copied */
    return n && gw_json_pick(s, n, paths, npaths, got) == 1 && !(got[3].p && got[3].p[0] == '"') ? 1 : -1;
  size_t start = 0, at, end;
  int rc = 0;
  while (rc == 0 && (end = event_end(s, n, start, &at)) != 0) {
    rc = reply_text_in(s + start, end - start, id_text, data, paths, npaths, got);
    start = end;
  }
  if (rc == 0 && start < n) rc = reply_text_in(s + start, n - start, id_text, data, paths, npaths, got);
  return rc == 1 ? 1 : -1;
}
