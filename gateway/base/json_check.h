/* gateway/base/json_check.h — is this a JSON text jansson would accept?
 * Without building it: for bytes the gateway relays unchanged and only
 * has to vouch for (an upstream's JSON reply), a scan costs a fraction of
 * a parse and allocates nothing.
 *
 * Accepts exactly what json_loadb(p, n, 0, …) accepts (the differential
 * fuzzer tests/fuzz/fuzz_json_check.c holds it to that): an object or an
 * array at the top, whitespace around it; strings of valid UTF-8 without
 * control characters, escapes including paired surrogates but not
 * \u0000; numbers by the JSON grammar, an integer within 64 bits, a real
 * that does not overflow; nesting at most 2048 deep. Any thread. */
#ifndef MCPGATE_GATEWAY_BASE_JSON_CHECK_H
#define MCPGATE_GATEWAY_BASE_JSON_CHECK_H
#include <stdbool.h>
#include <stddef.h>

bool gw_json_check(const char *p, size_t n);
#endif
