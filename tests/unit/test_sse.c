/* Unit tests of the one SSE parser of the MCP proxy (gateway/mcp/sse.c):
 * events split at blank lines whatever the chunking, fields of one event,
 * and the JSON-RPC reply inside a buffered response. */
#include "gateway/mcp/sse.h"
#include "unit.h"

typedef struct seen {
  int n;
  char ev[8][256];
  int stop_at; /* return non-zero on this event (1-based), 0: never */
} seen;

static int collect(void *arg, const char *ev, size_t n) {
  seen *s = arg;
  if (s->n < 8) snprintf(s->ev[s->n], sizeof s->ev[0], "%.*s", (int)n, ev);
  s->n++;
  return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

/* Feeds text in chunks of size k; returns the events seen. */
static void feed(const char *text, size_t k, seen *s, gw_buf *b, size_t *scanned) {
  size_t len = strlen(text);
  for (size_t off = 0; off < len; off += k) {
    size_t n = len - off < k ? len - off : k;
    gw_buf_append(b, text + off, n);
    gw__sse_each(b, scanned, collect, s);
  }
}

TEST(events_split_whatever_the_chunking) {
  const char *text = "event: message\ndata: {\"a\":1}\n\nid: 7\r\ndata: x\r\n\r\ndata: tail";
  for (size_t k = 1; k <= strlen(text); k++) {
    seen s = {0};
    gw_buf b;
    size_t scanned = 0;
    gw_buf_init(&b, 1 << 16);
    feed(text, k, &s, &b, &scanned);
    CHECK_INT(s.n, 2);
    CHECK_STR(s.ev[0], "event: message\ndata: {\"a\":1}\n\n");
    CHECK_STR(s.ev[1], "id: 7\r\ndata: x\r\n\r\n");
    CHECK_INT(b.len, 10); /* "data: tail" waits for its blank line */
    CHECK(!memcmp(b.data, "data: tail", 10));
    gw_buf_free(&b);
  }
}

TEST(a_callback_error_stops_and_keeps_the_event) {
  seen s = {.stop_at = 1};
  gw_buf b;
  size_t scanned = 0;
  gw_buf_init(&b, 1 << 16);
  gw_buf_appends(&b, "data: 1\n\ndata: 2\n\n");
  CHECK_INT(gw__sse_each(&b, &scanned, collect, &s), 7);
  CHECK_INT(s.n, 1);
  CHECK_INT(b.len, 18); /* nothing consumed: the failed event is still there */
  s.stop_at = 0;
  scanned = 0;
  CHECK_INT(gw__sse_each(&b, &scanned, collect, &s), 0);
  CHECK_INT(s.n, 3);
  CHECK_INT(b.len, 0);
  gw_buf_free(&b);
}

/* A buffer emptied of a large event gives back what its meter charged (a
 * long-lived GET stream held its largest event's capacity, 8 MiB charged
 * to mcp_buffered_max, for as long as it lived); a small one keeps its. */
TEST(an_emptied_buffer_gives_its_charge_back) {
  gw_buf_meter m = {.max = 0};
  gw_buf b;
  size_t scanned = 0;
  seen s = {0};
  gw_buf_init(&b, 1 << 20);
  gw_buf_meter_attach(&b, &m);
  gw_buf_appends(&b, "data: ");
  for (int i = 0; i < 1000; i++) gw_buf_appends(&b, "0123456789012345678901234567890123456789012345678901234567890123456789");
  CHECK(gw_buf_meter_used(&m) > 0);
  gw_buf_appends(&b, "\n\ndata: tail");
  gw__sse_each(&b, &scanned, collect, &s);
  CHECK_INT(s.n, 1);
  CHECK_INT(b.len, 10); /* the rest waits: the buffer keeps its capacity */
  CHECK(gw_buf_meter_used(&m) > 0);
  gw_buf_appends(&b, "\n\n");
  gw__sse_each(&b, &scanned, collect, &s);
  CHECK_INT(s.n, 2);
  CHECK_INT(b.len, 0);
  CHECK_INT(gw_buf_meter_used(&m), 0);
  CHECK_INT(b.cap, 0);
  CHECK_INT(gw_buf_appends(&b, "data: again\n\n"), 0); /* and grows again */
  gw__sse_each(&b, &scanned, collect, &s);
  CHECK_INT(s.n, 3);
  gw_buf_appends(&b, "data: small");
  gw__sse_each(&b, &scanned, collect, &s);
  gw_buf_appends(&b, "\n\n");
  gw__sse_each(&b, &scanned, collect, &s);
  CHECK_INT(s.n, 4);
  CHECK(b.cap > 0); /* under the meter's free bytes: kept for the next event */
  gw_buf_free(&b);
}

TEST(split_fields) {
  gw_buf data, head;
  gw_buf_init(&data, 4096);
  gw_buf_init(&head, 4096);
  char id[64];
  const char *ev = "event: message\r\nid:  42\r\ndata: {\"x\":\r\ndata:1}\r\nretry: 5\r\n\r\n";
  gw__sse_split(ev, strlen(ev), &data, &head, id, sizeof id);
  CHECK_STR(id, " 42"); /* one leading space goes, the rest is the value */
  CHECK_INT(data.len, 8); /* data lines joined with "\n" */
  CHECK(!memcmp(data.data, "{\"x\":\n1}", 8));
  CHECK(strstr(head.data, "event: message\n") && strstr(head.data, "retry: 5\n") && !strstr(head.data, "data"));
  gw_buf_free(&data);
  gw_buf_free(&head);
}

TEST(find_reply_json_and_sse) {
  json_t *id = json_integer(3);
  json_t *j = gw__find_reply("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}", 36, "application/json", id);
  CHECK(j && json_object_get(j, "result"));
  json_decref(j);
  /* duplicate keys in a JSON body are refused */
  j = gw__find_reply("{\"id\":3,\"id\":4}", 15, "application/json", id);
  CHECK(!j);
  /* a reply is an object: a body or a last event that is an array, a
   * number or a string is none (found by fuzz_sse: "[]" came back) */
  CHECK(!gw__find_reply("[]", 2, "application/json", id));
  CHECK(!gw__find_reply("7", 1, "application/json", NULL));
  CHECK(!gw__find_reply("data: []", 8, "text/event-stream", NULL));
  const char *sse = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"
                    "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"other\":1}}\n\n"
                    "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"mine\":1}}\n\n";
  j = gw__find_reply(sse, strlen(sse), "text/event-stream; charset=utf-8", id);
  CHECK(j && json_object_get(json_object_get(j, "result"), "mine"));
  json_decref(j);
  /* a last event without its blank line still counts */
  const char *open = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":1}}";
  j = gw__find_reply(open, strlen(open), "text/event-stream", id);
  CHECK(j && json_object_get(j, "error"));
  json_decref(j);
  j = gw__find_reply(sse, strlen(sse), "text/event-stream", NULL); /* any id: the first reply */
  CHECK(j && json_object_get(json_object_get(j, "result"), "other"));
  json_decref(j);
  /* a message with a string "method" is a request or a notification,
   * never a reply, whatever else it carries: the reply after it is found,
   * and a JSON body that is one is none — by the scans too */
  const char *q = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"sampling/createMessage\",\"result\":{\"q\":1}}\n\n"
                  "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"mine\":1}}\n\n";
  j = gw__find_reply(q, strlen(q), "text/event-stream", id);
  CHECK(j && json_object_get(json_object_get(j, "result"), "mine"));
  json_decref(j);
  const char *qj = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"result\":{}}";
  CHECK(!gw__find_reply(qj, strlen(qj), "application/json", id));
  CHECK(!gw__is_reply(NULL, NULL, false));
  static const char *const paths[] = {"id", "result", "error", "method"};
  gw_json_span got[4];
  gw_buf data;
  gw_buf_init(&data, 4096);
  CHECK_INT(gw__find_reply_text(q, strlen(q), "text/event-stream", "3", &data, paths, 4, got), 1);
  CHECK(got[1].p && !memcmp(got[1].p, "{\"mine\":1}", 10));
  CHECK_INT(gw__find_reply_text(qj, strlen(qj), "application/json", "3", &data, paths, 4, got), -1);
  CHECK_INT(gw__find_reply_text(q, strlen(q), "text/event-stream", "3", &data, paths, 3, got), -1);
  gw_buf_free(&data);
  json_decref(id);
}

/* The SSE standard ends lines at CRLF, LF or a lone CR, as the clients'
 * parsers do: an empty line after any of them ends the event, whatever the
 * chunking. Otherwise an upstream could frame a message the client reads
 * but the gateway does not (and relays unfiltered). */
TEST(every_line_ending_of_the_standard) {
  const char *text = "data: 1\n\r\ndata: 2\r\rdata: 3\r\n\ndata: 4\n\rdata: 5\r\n\rdata: tail";
  const char *want[] = {"data: 1\n\r\n", "data: 2\r\r", "data: 3\r\n\n", "data: 4\n\r", "data: 5\r\n\r"};
  for (size_t k = 1; k <= strlen(text); k++) {
    seen s = {0};
    gw_buf b;
    size_t scanned = 0;
    gw_buf_init(&b, 1 << 16);
    feed(text, k, &s, &b, &scanned);
    CHECK_INT(s.n, 5);
    for (int i = 0; i < 5 && i < s.n; i++) CHECK_STR(s.ev[i], want[i]);
    CHECK_INT(b.len, 10);
    gw_buf_free(&b);
  }
  /* a CR ends a line inside an event too: two data lines, joined */
  gw_buf data;
  gw_buf_init(&data, 4096);
  const char *ev = "id: 9\rdata: {\"x\":\rdata: 1}\r\r";
  char id[16];
  gw__sse_split(ev, strlen(ev), &data, NULL, id, sizeof id);
  CHECK_STR(id, "9");
  CHECK_INT(data.len, 8);
  CHECK(!memcmp(data.data, "{\"x\":\n1}", 8));
  /* a byte order mark before the first line is dropped, as clients do */
  gw_buf_reset(&data);
  const char *bom = "\xEF\xBB\xBF" "data: [1]\n\n";
  gw__sse_split(bom, strlen(bom), &data, NULL, NULL, 0);
  CHECK_INT(data.len, 3);
  CHECK(data.len == 3 && !memcmp(data.data, "[1]", 3));
  gw_buf_free(&data);
  /* a buffered reply framed with lone CRs is found */
  json_t *want_id = json_integer(5);
  const char *body = "data: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\r\r";
  json_t *j = gw__find_reply(body, strlen(body), "text/event-stream", want_id);
  CHECK(j && json_object_get(j, "result"));
  json_decref(j);
  json_decref(want_id);
}

/* Where events end never depends on how the bytes were chunked: random
 * mixes of CR, LF and text, fed whole and in chunks of every size. */
typedef struct cat {
  gw_buf all;
  int n;
} cat;

static int concat(void *arg, const char *ev, size_t n) {
  cat *c = arg;
  gw_buf_append(&c->all, ev, n);
  gw_buf_append(&c->all, "|", 1);
  c->n++;
  return 0;
}

TEST(events_independent_of_chunking) {
  unsigned seed = 12345;
  for (int round = 0; round < 3000; round++) {
    char text[41];
    size_t len = 1 + (seed = seed * 1103515245u + 12345u) % 40;
    for (size_t i = 0; i < len; i++) text[i] = "a\r\n"[((seed = seed * 1103515245u + 12345u) >> 16) % 3];
    text[len] = 0;
    cat whole = {0};
    gw_buf_init(&whole.all, 1 << 12);
    gw_buf wb;
    size_t ws = 0;
    gw_buf_init(&wb, 1 << 12);
    gw_buf_append(&wb, text, len);
    gw__sse_each(&wb, &ws, concat, &whole);
    for (size_t k = 1; k < len; k++) {
      cat part = {0};
      gw_buf_init(&part.all, 1 << 12);
      gw_buf b;
      size_t sc = 0;
      gw_buf_init(&b, 1 << 12);
      for (size_t off = 0; off < len; off += k) {
        gw_buf_append(&b, text + off, len - off < k ? len - off : k);
        gw__sse_each(&b, &sc, concat, &part);
      }
      CHECK_INT(part.n, whole.n);
      CHECK(part.all.len == whole.all.len && (!part.all.len || !memcmp(part.all.data, whole.all.data, part.all.len)));
      CHECK(b.len == wb.len && (!b.len || !memcmp(b.data, wb.data, b.len)));
      gw_buf_free(&part.all);
      gw_buf_free(&b);
    }
    gw_buf_free(&whole.all);
    gw_buf_free(&wb);
  }
}

int main(void) {
  RUN(events_split_whatever_the_chunking);
  RUN(a_callback_error_stops_and_keeps_the_event);
  RUN(an_emptied_buffer_gives_its_charge_back);
  RUN(split_fields);
  RUN(find_reply_json_and_sse);
  RUN(every_line_ending_of_the_standard);
  RUN(events_independent_of_chunking);
  return UNIT_DONE();
}
