/* tests/fuzz/fuzz_scim_patch.c — libFuzzer driver: a PATCH body (bytes →
 * JSON) applied to a user resource by the PATCH engine. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scim/scim_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!body) return 0;
  json_t *res = json_loads("{\"userName\":\"u\",\"active\":true,\"emails\":[{\"type\":\"work\",\"value\":\"a\"}],"
                           "\"name\":{\"givenName\":\"g\"}}",
                           0, NULL);
  scim_resp rs = {0};
  (void)scim__patch_apply(res, body, false, NULL, NULL, NULL, &rs);
  scim_resp_clear(&rs);
  json_decref(res);
  json_decref(body);
  return 0;
}
