/* gateway/mcp/tool_error.h — does a relayed answer report a tool error?
 * (private to gateway/mcp/; the call's audit record reads it: is_error).
 *
 * A tool reports an error with a JSON-RPC response whose result object has
 * the member "isError" with the value true (MCP's CallToolResult). The
 * scan reads the upstream's bytes as they are relayed — a JSON body, or an
 * SSE stream whose events carry the messages in data: lines — in any
 * chunking, without building them: a few bytes of state between chunks.
 *
 * What counts is exactly result.isError of a message (the top-level
 * object, or an element of a top-level array: a batch's answers), spelled
 * any way JSON allows: whitespace anywhere between tokens, any key order,
 * escapes in the keys ("is\u0045rror"), and the last of duplicate keys
 * (as a parser that keeps the last one reads it). A member "isError"
 * anywhere else — deeper inside the result (structuredContent, content),
 * in params, in an error's data, in a string — does not count, and a
 * message counts only once it is complete (its closing brace). A message
 * that is not JSON stops the scan until the SSE event ends (for a JSON
 * body: for good). SSE framing follows sse.c: lines end at CRLF, LF or a
 * lone CR; an empty line ends an event; one leading space of a value is
 * dropped; a byte order mark before an event's first line is ignored. */
#ifndef MCPGATE_GATEWAY_MCP_TOOL_ERROR_H
#define MCPGATE_GATEWAY_MCP_TOOL_ERROR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_TOOL_ERROR_TOK 8 /* bytes of a key or literal kept (longer ones match nothing) */

typedef struct gw_tool_error_frame {
  uint8_t role, key; /* what the frame is; the member whose value comes */
  bool err;          /* a message: its last result said isError true; a result: its last isError is true */
} gw_tool_error_frame;

typedef struct gw_tool_error_scan {
  bool found;   /* a complete message's result said "isError": true */
  bool sse;     /* the bytes are an SSE stream */
  bool cr;      /* SSE: the last byte was a CR (a LF next ends no other line) */
  bool ev_start; /* SSE: no line of the current event yet */
  uint8_t line; /* SSE: where in a line */
  uint8_t fpos; /* SSE: bytes of "data:" (or of a byte order mark) matched */
  uint8_t st;   /* JSON: where in the message */
  uint8_t n;    /* JSON: frames in use (the top-level array, the message, its result) */
  uint8_t tlen; /* JSON: bytes of the key or literal read */
  uint8_t ulen; /* JSON: hex digits of a \u escape read */
  uint16_t u;   /* JSON: their value */
  uint32_t skip; /* JSON: depth inside a container no one looks into */
  char tok[GW_TOOL_ERROR_TOK];
  gw_tool_error_frame f[3];
} gw_tool_error_scan;

/* Starts a scan of one answer: sse when its content type is
 * text/event-stream, else one JSON body. */
void gw__tool_error_init(gw_tool_error_scan *s, bool sse);
/* The next n bytes of the answer. Returns s->found. */
bool gw__tool_error_feed(gw_tool_error_scan *s, const char *p, size_t n);

#endif
