/* tests/fuzz/fuzz_json_check.c — libFuzzer driver, differential: the
 * validating scan (gateway/base/json_check.h) must accept exactly what
 * jansson's json_loadb(…, 0, …) accepts, since the gateway relays an
 * upstream's reply unchanged when the scan says it is JSON. One known
 * jansson quirk is not copied: a NUL byte right after a number is skipped
 * by its lexer (it ungets the 0, which its stream buffer reads as
 * "empty"); the scan refuses every raw NUL. So for input with a NUL byte
 * only "the scan never accepts what jansson refuses" is required. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/json_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t e;
  json_t *j = json_loadb((const char *)data, size, 0, &e);
  bool scan = gw_json_check((const char *)data, size);
  bool has_nul = memchr(data, 0, size) != NULL;
  if (has_nul ? (scan && !j) : (scan != (j != NULL))) {
    fprintf(stderr, "json_check says %s, jansson says %s (%s)\n", scan ? "valid" : "invalid",
            j ? "valid" : "invalid", j ? "" : e.text);
    abort();
  }
  json_decref(j);
  return 0;
}
