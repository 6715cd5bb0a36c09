/* gateway/http/query.h — query-string parameters of a request target
 * (gw_req.query: what follows '?', without it), for handlers that take
 * their options there. Stateless; any thread.
 *
 * Decoding is application/x-www-form-urlencoded: '+' is a space, %XX a
 * byte (two hex digits; %00 and malformed escapes stay as written, so a
 * decoded value never holds a NUL). Names match exactly (case-sensitive);
 * the first occurrence wins. */
#ifndef MCPGATE_GATEWAY_HTTP_QUERY_H
#define MCPGATE_GATEWAY_HTTP_QUERY_H
#include <stddef.h>

/* A predicate, not an error code: 1 when parameter `name` is present in
 * query (NULL: none), with its decoded value NUL-terminated in out (cut at
 * cap - 1 bytes; cap >= 1); 0 when absent (out untouched). */
int gw_query_get(const char *query, const char *name, char *out, size_t cap);

#endif
