/* gateway/mcp/sse.h — the one Server-Sent Events parser of the MCP proxy
 * (private to gateway/mcp/): events in a growing buffer, the fields of one
 * event, and the JSON-RPC reply inside a buffered response. */
#ifndef MCPGATE_GATEWAY_MCP_SSE_H
#define MCPGATE_GATEWAY_MCP_SSE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/base/buf.h"
#include "gateway/base/json_check.h"
#include "gateway/out/outbound.h"

/* Calls fn(arg, event, n) for every complete event in ev (ended by a blank
 * line, "\n\n" or "\r\n\r\n") and keeps the incomplete rest in ev; the
 * search resumes at *scanned (bytes already searched), so an event
 * arriving in many chunks costs O(its size). Stops at (and returns) fn's
 * first non-zero return. The event bytes are ev's: valid during fn only.
 * Emptied, ev keeps no capacity its meter would charge (gw_buf_free: its
 * data may then be NULL). */
int gw__sse_each(gw_buf *ev, size_t *scanned, int (*fn)(void *arg, const char *ev, size_t n), void *arg);
/* After gw__sse_each consumed what it could of a stream's buffer (held
 * bytes before, left after): an event begun must end within
 * upstream_event_timeout_ms (gw_out_partial), each event on its own clock —
 * one that ended restarts it, so a stream whose reads never end on an
 * event's boundary is not taken for a slow one. */
void gw__sse_partial(gw_out_req *r, size_t held, size_t left);
/* Splits one SSE event: data lines joined with "\n" into data; the other
 * non-empty lines into head (may be NULL), each ending "\n"; the id:
 * line's value into id (may be NULL). */
void gw__sse_split(const char *ev, size_t n, gw_buf *data, gw_buf *head, char *id, size_t idcap);
/* True when content type ct is text/event-stream. */
int gw__sse_is(const char *ct);
/* Whether message m is a JSON-RPC reply: an object whose "method" is not a
 * string (a message with one is a request or a notification, whatever
 * else it carries: an upstream's question shaped like a reply is never
 * taken for one), whose "id" is id (any id, or none: NULL), with a
 * "result" or an "error" when need_result. */
bool gw__is_reply(const json_t *m, const json_t *id, bool need_result);
/* The JSON-RPC reply (gw__is_reply: result or error) with `id` (any id:
 * NULL) in a buffered upstream response: the JSON body (an object that is
 * no request or notification; its id is not compared), or the SSE event
 * carrying it (events before it are skipped). New reference, or NULL. */
json_t *gw__find_reply(const char *body, size_t n, const char *ct, const json_t *id);
/* How gw__find_reply_by builds each JSON text it reads (a body, an
 * event's data): json_loadb's contract (new reference or NULL); arg is the
 * caller's. */
typedef json_t *(*gw__json_load_fn)(void *arg, const char *p, size_t n, size_t flags);
/* gw__find_reply with the parses done by load (NULL: gw_json_loadb): an
 * exchange's charge the tree each costs to its tenant (gw__x_find_reply). */
json_t *gw__find_reply_by(const char *body, size_t n, const char *ct, const json_t *id, gw__json_load_fn load,
                          void *arg);
/* gw__find_reply's search done by scans (json_check.h), for a reply the
 * caller then reads as bytes: the first message in a JSON body or an SSE
 * stream that is an object without a string "method" (over SSE: whose
 * "id" is id_text, a JSON string without escapes, and which has a
 * "result" or an "error"). paths[0..3] must be "id", "result", "error",
 * "method" (else -1). 1: found, and the members named by paths in got
 * (gw_json_pick's spans: into the body for a JSON body, into data — the
 * event's data, cleared first — over SSE). -1:
 * undecided — not found, or something only jansson can judge (an escape
 * in a key or the id, a duplicate key, an event that is not an object):
 * the caller asks gw__find_reply. */
int gw__find_reply_text(const char *body, size_t n, const char *ct, const char *id_text, gw_buf *data,
                        const char *const *paths, size_t npaths, gw_json_span *got);

#endif
