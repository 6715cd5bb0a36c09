/* tests/fuzz/fuzz_json_check.c — libFuzzer driver, differential: the
 * validating scan (gateway/base/json_check.h) must accept exactly what
 * jansson's json_loadb(…, 0, …) accepts, since the gateway relays an
 * upstream's reply unchanged when the scan says it is JSON. One known
 * jansson quirk is not copied: a NUL byte right after a number is skipped
 * by its lexer (it ungets the 0, which its stream buffer reads as
 * "empty"); the scan refuses every raw NUL. So for input with a NUL byte
 * only "the scan never accepts what jansson refuses" is required.
 *
 * gw_json_pick (the request scan) is held to json_loadb(…,
 * JSON_REJECT_DUPLICATES, …): when it decides (1 or 0) jansson agrees, and
 * every span it returns is the member jansson finds, as a JSON value.
 *
 * gw_json_numbers_exact, on text the scan accepts: when it says exact,
 * every real jansson decoded is the double of a decimal of at most 15
 * significant digits (printed with 15 and read back, it is the same
 * double) — the property that makes the approvals' argument hash name one
 * value per double. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/json_check.h"

static bool reals_of_15_digits(const json_t *j) {
  if (json_is_real(j)) {
    char t[40];
    snprintf(t, sizeof t, "%.15g", json_real_value(j));
    return strtod(t, NULL) == json_real_value(j);
  }
  const char *k;
  json_t *v;
  size_t i;
  if (json_is_object(j)) json_object_foreach((json_t *)j, k, v) if (!reals_of_15_digits(v)) return false;
  if (json_is_array(j)) json_array_foreach(j, i, v) if (!reals_of_15_digits(v)) return false;
  return true;
}

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
  if (scan && j && gw_json_numbers_exact((const char *)data, size) && !reals_of_15_digits(j)) {
    fprintf(stderr, "json_numbers_exact says exact, yet a real is no 15-digit decimal's double\n");
    abort();
  }
  json_decref(j);

  static const char *const paths[] = {"jsonrpc", "id", "method", "params", "params.name"};
  gw_json_span got[5];
  int pk = gw_json_pick((const char *)data, size, paths, 5, got);
  json_t *d = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
  if (pk == 1 ? !json_is_object(d) : pk == 0 ? (d != NULL && !has_nul) : false) {
    fprintf(stderr, "json_pick says %d, jansson (no duplicates) says %s\n", pk, d ? "valid" : e.text);
    abort();
  }
  if (pk == 1) {
    for (int i = 0; i < 5; i++) {
      const char *dot = strchr(paths[i], '.');
      json_t *want = dot ? json_object_get(json_object_get(d, "params"), dot + 1) : json_object_get(d, paths[i]);
      json_t *have = got[i].p ? json_loadb(got[i].p, got[i].n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e) : NULL;
      if (!want != !have || (want && !json_equal(want, have))) {
        fprintf(stderr, "json_pick's %s differs from jansson's\n", paths[i]);
        abort();
      }
      json_decref(have);
    }
  }
  json_decref(d);
  return 0;
}
