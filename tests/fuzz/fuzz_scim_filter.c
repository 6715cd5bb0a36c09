/* tests/fuzz/fuzz_scim_filter.c — libFuzzer driver: SCIM filters and PATCH
 * paths from untrusted bytes (Okta/Entra send them; so can anyone with a
 * SCIM token). Parse, evaluate against a fixed resource (unmetered, and
 * metered: the same answer under the meter's limit), free: no crash, no
 * leak, no UB, bounded recursion. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scim/scim_int.h"

static json_t *resource;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!resource)
    resource = json_loads("{\"id\":\"2819c223-7f76-453a-919d-413861904646\",\"userName\":\"bjensen\","
                          "\"active\":true,\"n\":5,\"name\":{\"givenName\":\"B\"},"
                          "\"emails\":[{\"type\":\"work\",\"value\":\"b@x\"},{\"value\":\"c\"}],"
                          "\"meta\":{\"lastModified\":\"2026-01-01T00:00:00Z\"},"
                          "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{\"manager\":{\"value\":\"m\"}}}",
                          0, NULL);
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  scim__filter *f;
  char err[256];
  if (scim__filter_parse(s, &f, err, sizeof err) == 0) {
    bool whole = scim__filter_match(f, resource, NULL);
    /* metered (scim_int.h): under its limit, the same answer; past it,
     * false and over */
    scim__meter m = {0, size * 8};
    bool metered = scim__filter_match(f, resource, &m);
    if (scim__meter_over(&m) ? metered : metered != whole) __builtin_trap();
    scim__filter_free(f);
  }
  scim__path p;
  if (scim__path_parse(s, &p, err, sizeof err) == 0) scim__path_free(&p);
  free(s);
  return 0;
}
