/* tests/fuzz/fuzz_agg_ids.c — libFuzzer driver: the opaque values the
 * aggregated endpoint hands clients and takes back from them — pagination
 * cursors ({"c":connector,"u":upstream cursor}) and stream event ids
 * ({connector: upstream event id}), base64url of compact JSON
 * (gateway/mcp/agg.c gw__agg_b64url / gw__agg_unb64url). A client controls
 * what comes back (a cursor param, a Last-Event-ID header). Properties:
 *   - decoding any string never crashes, leaks or overreads;
 *   - whatever decodes re-encodes to a value that decodes to the same JSON;
 *   - any JSON object (the input read as JSON) encodes and decodes back
 *     to itself: no upstream id or cursor is altered on the way. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/mcp/agg.h"

static void roundtrip(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  if (!s) return;
  char *b = gw__agg_b64url(s);
  free(s);
  if (!b) abort();
  for (const char *p = b; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
      abort(); /* safe in a header and a JSON string as is */
  json_t *back = strlen(b) <= 4096 ? gw__agg_unb64url(b) : NULL;
  if (strlen(b) <= 4096 && !json_equal(back, j)) {
    fprintf(stderr, "an encoded value decodes to something else: %s\n", b);
    abort();
  }
  json_decref(back);
  free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 8192) return 0;
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  json_t *j = gw__agg_unb64url(s);
  if (j) roundtrip(j);
  json_decref(j);
  j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (json_is_object(j)) roundtrip(j);
  json_decref(j);
  free(s);
  return 0;
}
