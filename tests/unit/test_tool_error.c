/* Unit tests of the tool-error scan of a relayed answer
 * (gateway/mcp/tool_error.c): result.isError of a message, spelled any way
 * JSON allows, in a JSON body or an SSE stream, whatever the chunking; a
 * member "isError" anywhere else never counts. */
#include <jansson.h>

#include "gateway/base/buf.h"
#include "gateway/mcp/tool_error.h"
#include "unit.h"

/* What a parser reads in a JSON body (jansson keeps the last of duplicate
 * keys): 1 when a message's result.isError is true, 0 when not, -1 when it
 * is not JSON. */
static int parsed_verdict(const char *text) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  if (!j) return -1;
  int v = 0;
  size_t i;
  json_t *m;
  if (json_is_object(j)) v = json_is_true(json_object_get(json_object_get(j, "result"), "isError"));
  else if (json_is_array(j))
    json_array_foreach(j, i, m) v |= json_is_true(json_object_get(json_object_get(m, "result"), "isError"));
  json_decref(j);
  return v;
}

/* The verdict on text fed whole, and the same verdict for every chunk
 * size (1 byte, 2, ... all); -1 when two chunkings disagree, or when a
 * JSON body that parses reads otherwise. */
static int scan(const char *text, bool sse) {
  size_t len = strlen(text);
  gw_tool_error_scan s;
  gw__tool_error_init(&s, sse);
  int whole = gw__tool_error_feed(&s, text, len);
  int want = sse ? -1 : parsed_verdict(text);
  if (want >= 0 && want != whole) {
    fprintf(stderr, "  the scan says %d, a parser %d: %s\n", whole, want, text);
    return -1;
  }
  for (size_t k = 1; k < len; k++) {
    gw__tool_error_init(&s, sse);
    bool found = false;
    for (size_t off = 0; off < len; off += k) found = gw__tool_error_feed(&s, text + off, len - off < k ? len - off : k);
    if (found != whole) {
      fprintf(stderr, "  chunks of %zu disagree on: %s\n", k, text);
      return -1;
    }
  }
  return whole;
}
#define JSON(t) scan((t), false)
#define SSE(t) scan((t), true)

TEST(the_tool_error_in_every_spelling) {
  CHECK_INT(JSON("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[],\"isError\":true}}"), 1);
  CHECK_INT(JSON("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[],\"isError\": true}}"), 1);
  CHECK_INT(JSON("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[],\"isError\" : true}}"), 1);
  CHECK_INT(JSON("{ \"result\" :\n\t{ \"isError\"\r\n:\ttrue\n}\n}\n"), 1);
  CHECK_INT(JSON("{\"result\":{\"isError\":true,\"content\":[{\"type\":\"text\",\"text\":\"boom\"}]},\"id\":3,"
                 "\"jsonrpc\":\"2.0\"}"),
            1);
  /* escapes in the keys: the same names */
  CHECK_INT(JSON("{\"result\":{\"is\\u0045rror\":true}}"), 1);
  CHECK_INT(JSON("{\"result\":{\"isErro\\u0072\":true}}"), 1);
  CHECK_INT(JSON("{\"res\\u0075lt\":{\"isError\":true}}"), 1);
  CHECK_INT(JSON("{\"result\":{\"is\\u0045\\u0072ror\":true}}"), 1);
  /* what a result's content may hold before it: strings with quotes,
   * brackets and escapes, nested containers */
  CHECK_INT(JSON("{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a\\\"}]{[\\\\\"}],"
                 "\"structuredContent\":{\"a\":[[{\"b\":\"}\"}]],\"c\":null},\"isError\":true}}"),
            1);
  /* a batch's answers */
  CHECK_INT(JSON("[{\"id\":1,\"result\":{\"isError\":false}},{\"id\":2,\"result\":{\"isError\":true}}]"), 1);
  CHECK_INT(JSON(" [ {\"id\":1,\"result\":{}} , {\"id\":2,\"result\":{\"isError\":true} } ] "), 1);
}

TEST(no_tool_error) {
  CHECK_INT(JSON("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[],\"isError\":false}}"), 0);
  CHECK_INT(JSON("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}"), 0);
  /* "isError" deeper inside the result */
  CHECK_INT(JSON("{\"result\":{\"structuredContent\":{\"isError\":true},\"isError\":false}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"structuredContent\":{\"isError\":true}}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"content\":[{\"type\":\"text\",\"isError\":true}]}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"a\":[[[[{\"isError\":true}]]]]}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"_meta\":{\"result\":{\"isError\":true}}}}"), 0);
  /* in a string */
  CHECK_INT(JSON("{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"isError\\\":true}\"}]}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"note\":\"\\\",\\\"isError\\\":true\"}}"), 0);
  /* outside a result: params, an error's data, the message itself */
  CHECK_INT(JSON("{\"method\":\"notifications/message\",\"params\":{\"result\":{\"isError\":true}}}"), 0);
  CHECK_INT(JSON("{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"x\",\"data\":{\"isError\":true}}}"), 0);
  CHECK_INT(JSON("{\"id\":1,\"isError\":true,\"result\":{}}"), 0);
  CHECK_INT(JSON("{\"isError\":true}"), 0);
  CHECK_INT(JSON("[[{\"result\":{\"isError\":true}}]]"), 0);
  /* other names, other values */
  CHECK_INT(JSON("{\"result\":{\"isErrors\":true}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"IsError\":true}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isErro\":true}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\\u0000\":true}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"is\\u0130rror\":true}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":\"true\"}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":1}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":{\"x\":true}}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":[true]}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":trueish}}"), 0);
  CHECK_INT(JSON("{\"results\":{\"isError\":true}}"), 0);
  /* the last of duplicate keys, as a parser keeping the last one reads it */
  CHECK_INT(JSON("{\"result\":{\"isError\":true,\"isError\":false}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":false,\"isError\":true}}"), 1);
  CHECK_INT(JSON("{\"result\":{\"isError\":true},\"result\":{}}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":true},\"result\":5}"), 0);
  /* a message that never ends, or is not JSON */
  CHECK_INT(JSON("{\"result\":{\"isError\":true}"), 0);
  CHECK_INT(JSON("{\"result\":{\"isError\":true,}"), 0);
  CHECK_INT(JSON("{\"result\" {\"isError\":true}}"), 0);
  CHECK_INT(JSON("{result:{\"isError\":true}}"), 0);
  CHECK_INT(JSON(""), 0);
}

TEST(sse_events) {
  CHECK_INT(SSE("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"isError\" : true}}\n\n"), 1);
  CHECK_INT(SSE("data:{\"result\":{\"isError\":true}}\n\n"), 1);
  /* a progress notification first, then the result */
  CHECK_INT(SSE("event: message\ndata: {\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n"
                "id: 7\nevent: message\ndata: {\"id\":1,\"result\":{\"content\":[],\"isError\":true}}\n\n"),
            1);
  /* a message over several data lines (joined with "\n") */
  CHECK_INT(SSE("data: {\"result\":\ndata: {\"isError\":\ndata: true}}\n\n"), 1);
  CHECK_INT(SSE("data: {\"result\":{\"isError\":tr\ndata: ue}}\n\n"), 0); /* "tr\nue" */
  /* every line ending of the standard, a byte order mark */
  CHECK_INT(SSE("event: message\r\ndata: {\"result\":{\"isError\":true}}\r\n\r\n"), 1);
  CHECK_INT(SSE("event: message\rdata: {\"result\":{\"isError\":true}}\r\r"), 1);
  CHECK_INT(SSE("\xEF\xBB\xBF" "data: {\"result\":{\"isError\":true}}\n\n"), 1);
  /* a message complete without the event's empty line yet */
  CHECK_INT(SSE("data: {\"result\":{\"isError\":true}}\n"), 1);
  /* not in a data line: another field, a comment, a field named
   * otherwise */
  CHECK_INT(SSE("event: {\"result\":{\"isError\":true}}\n\n"), 0);
  CHECK_INT(SSE(": {\"result\":{\"isError\":true}}\n\n"), 0);
  CHECK_INT(SSE("datum: {\"result\":{\"isError\":true}}\n\n"), 0);
  CHECK_INT(SSE(" data: {\"result\":{\"isError\":true}}\n\n"), 0);
  /* an event ends a message: half of one, then another */
  CHECK_INT(SSE("data: {\"result\":{\"isError\":\n\ndata: true}}\n\n"), 0);
  CHECK_INT(SSE("data: {\"result\":{\"x\":[\n\ndata: {\"result\":{\"isError\":true}}\n\n"), 1);
  /* one event not JSON, the next one fine */
  CHECK_INT(SSE("data: {nope\n\ndata: {\"result\":{\"isError\":true}}\n\n"), 1);
  /* a notification or an error carrying one */
  CHECK_INT(SSE("data: {\"method\":\"x\",\"params\":{\"result\":{\"isError\":true}}}\n\n"), 0);
  CHECK_INT(SSE("data: {\"id\":1,\"error\":{\"code\":1,\"message\":\"m\",\"data\":{\"isError\":true}}}\n\n"), 0);
  CHECK_INT(SSE("data: {\"result\":{\"isError\":false}}\n\n"), 0);
  /* a JSON body is not read as SSE, nor SSE as a body */
  CHECK_INT(JSON("data: {\"result\":{\"isError\":true}}\n\n"), 0);
  CHECK_INT(SSE("{\"result\":{\"isError\":true}}"), 0);
}

/* a result long in escapes and quotes: read in one pass whatever the
 * chunking (the verdict after it still counts) */
TEST(long_escaped_text) {
  size_t reps = 200000;
  gw_buf b;
  gw_buf_init(&b, 8u << 20);
  CHECK_INT(gw_buf_appends(&b, "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\""), 0);
  for (size_t i = 0; i < reps; i++) CHECK_INT(gw_buf_append(&b, i % 3 ? "\\n" : "\\\"", 2), 0);
  CHECK_INT(gw_buf_appends(&b, "\"}],\"isError\" : true}}"), 0);
  for (size_t k = 1; k <= b.len; k = k * 7 + 1) {
    gw_tool_error_scan s;
    gw__tool_error_init(&s, false);
    bool found = false;
    for (size_t off = 0; off < b.len; off += k) found = gw__tool_error_feed(&s, b.data + off, b.len - off < k ? b.len - off : k);
    CHECK(found);
  }
  CHECK_INT(parsed_verdict(b.data), 1);
  gw_buf_free(&b);
}

TEST(found_stays_found) {
  gw_tool_error_scan s;
  gw__tool_error_init(&s, false);
  const char *a = "[{\"result\":{\"isError\":true}}";
  CHECK(gw__tool_error_feed(&s, a, strlen(a)));
  CHECK(gw__tool_error_feed(&s, "garbage", 7));
  CHECK(gw__tool_error_feed(&s, NULL, 0));
}

int main(void) {
  RUN(the_tool_error_in_every_spelling);
  RUN(no_tool_error);
  RUN(sse_events);
  RUN(long_escaped_text);
  RUN(found_stays_found);
  return UNIT_DONE();
}
