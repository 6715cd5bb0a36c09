/* gateway/http/forwarded.h — trusted proxies: the operator's list of CIDRs
 * (config key trusted_proxies) and the X-Forwarded-For walk that finds the
 * client behind them.
 *
 * Ownership: gw_trusted_parse returns a list the caller frees with
 * gw_trusted_free; it is immutable afterwards, so any loop may read it. */
#ifndef MCPGATE_GATEWAY_HTTP_FORWARDED_H
#define MCPGATE_GATEWAY_HTTP_FORWARDED_H
#include <stdbool.h>
#include <stddef.h>

typedef struct gw_trusted gw_trusted;

/* Parses "10.0.0.0/8, ::1" (comma or space separated; "" or NULL: empty).
 * Returns 0 and *out (never NULL on success), -EINVAL naming nothing (the
 * config layer already refused bad lists with the key's name), -ENOMEM. */
int gw_trusted_parse(const char *list, gw_trusted **out);
void gw_trusted_free(gw_trusted *t);
/* True when the textual address ip lies inside one of t's prefixes. */
bool gw_trusted_has(const gw_trusted *t, const char *ip);

/* The client behind trusted proxies: walks the X-Forwarded-For values
 * (vals[0..n-1], every such header in the order received: RFC 9110 §5.3
 * makes them one comma-separated list, and a proxy such as HAProxy adds
 * its own header after the client's instead of appending to it) from the
 * right, and writes into client (cap bytes) the first address that
 * trusted(ctx, addr) refuses, or the leftmost one when every hop is trusted.
 * The whole list is walked, however long: the right end is what the
 * trusted proxies wrote, the left end is the client's to choose. Call only
 * when the connected peer itself is trusted; client is left as is when the
 * values hold no address. */
void gw_forwarded_client(const char *const *vals, int n, bool (*trusted)(void *ctx, const char *ip), void *ctx,
                         char *client, size_t cap);

#endif
