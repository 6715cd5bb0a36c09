/* tests/fuzz/fuzz_sse.c — libFuzzer driver: the one SSE parser of the MCP
 * proxy (gateway/mcp/sse.c) on bytes an upstream server sends. Properties:
 *   - where events end does not depend on how the stream was chunked: the
 *     bytes fed at once, and fed in the chunks the first input byte seeds,
 *     give the same events and leave the same rest (an upstream must not
 *     frame a message the client reads one way and the gateway another,
 *     or the relay's policy filtering could be skipped);
 *   - every event ends with an empty line;
 *   - splitting each event into data/head/id and finding a JSON-RPC reply
 *     in the whole body (as SSE and as JSON) never crashes, leaks or
 *     overflows, and a reply found is an object.
 * Input: byte 0 seeds the chunk sizes; the rest is the stream. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/buf.h"
#include "gateway/mcp/sse.h"

typedef struct events {
  gw_buf all; /* each event as <len>:<bytes> */
  size_t n;
} events;

static int collect(void *arg, const char *ev, size_t n) {
  events *e = arg;
  char len[32];
  snprintf(len, sizeof len, "%zu:", n);
  gw_buf_appends(&e->all, len);
  gw_buf_append(&e->all, ev, n);
  e->n++;
  /* it ends with an empty line: LF LF, CR CR, or the same with CRLFs */
  char a = n >= 1 ? ev[n - 1] : 0, b = n >= 2 ? ev[n - 2] : 0;
  if (!(a == '\n' || a == '\r') || !(b == '\n' || b == '\r')) {
    fprintf(stderr, "an event that does not end with an empty line (%zu bytes)\n", n);
    abort();
  }
  gw_buf data, head;
  gw_buf_init(&data, 1 << 20);
  gw_buf_init(&head, 1 << 20);
  char id[128];
  gw__sse_split(ev, n, &data, &head, id, sizeof id);
  if (strlen(id) >= sizeof id) abort();
  gw_buf_free(&data);
  gw_buf_free(&head);
  return 0;
}

static void feed(const uint8_t *d, size_t n, uint32_t seed, events *out, gw_buf *rest) {
  gw_buf ev;
  gw_buf_init(&ev, 1 << 22);
  size_t scanned = 0, off = 0;
  while (off < n) {
    size_t chunk = n - off;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      chunk = 1 + (seed >> 16) % 7;
      if (chunk > n - off) chunk = n - off;
    }
    if (gw_buf_append(&ev, d + off, chunk) != 0) abort();
    off += chunk;
    gw__sse_each(&ev, &scanned, collect, out);
  }
  gw_buf_append(rest, ev.data ? ev.data : "", ev.len);
  gw_buf_free(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 16) return 0;
  uint32_t seed = data[0] | 1u;
  const uint8_t *s = data + 1;
  size_t n = size - 1;
  events whole = {0}, chunked = {0};
  gw_buf rest1, rest2;
  gw_buf_init(&whole.all, 1 << 22);
  gw_buf_init(&chunked.all, 1 << 22);
  gw_buf_init(&rest1, 1 << 22);
  gw_buf_init(&rest2, 1 << 22);
  feed(s, n, 0, &whole, &rest1);
  feed(s, n, seed, &chunked, &rest2);
  if (whole.n != chunked.n || whole.all.len != chunked.all.len ||
      (whole.all.len && memcmp(whole.all.data, chunked.all.data, whole.all.len)) || rest1.len != rest2.len ||
      (rest1.len && memcmp(rest1.data, rest2.data, rest1.len))) {
    fprintf(stderr, "chunking changed the events: %zu at once, %zu chunked; rest %zu vs %zu bytes\n", whole.n,
            chunked.n, rest1.len, rest2.len);
    abort();
  }
  gw_buf_free(&whole.all);
  gw_buf_free(&chunked.all);
  gw_buf_free(&rest1);
  gw_buf_free(&rest2);
  /* the buffered-reply path over the same bytes */
  static const char *const types[] = {"text/event-stream", "application/json", "Text/Event-Stream; charset=utf-8"};
  json_t *want = json_integer(1);
  for (size_t t = 0; t < 3; t++) {
    json_t *r = gw__find_reply((const char *)s, n, types[t], NULL);
    if (r && !json_is_object(r)) abort();
    json_decref(r);
    r = gw__find_reply((const char *)s, n, types[t], want);
    if (r && !json_is_object(r)) abort();
    json_decref(r);
  }
  json_decref(want);
  return 0;
}
