/* tests/fuzz/fuzz_policy.c — libFuzzer driver: policy documents (admin
 * input) through validation, and glob matching with the first line of the
 * input as a pattern and the rest as a tool name. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (doc) {
    char err[4096];
    (void)pol_validate(doc, err, sizeof err);
    json_decref(doc);
  }
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  char *nl = strchr(s, '\n');
  if (nl) {
    *nl = 0;
    (void)pol_glob(s, nl + 1);
  }
  free(s);
  return 0;
}
