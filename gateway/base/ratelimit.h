/* gateway/base/ratelimit.h — token buckets keyed by a short string (a
 * source address, a tenant id), for the endpoints an unauthenticated
 * client can make the gateway work for: the sign-in (/login and its
 * callback) today, the OAuth authorization server's register, authorize
 * and token endpoints next.
 *
 * Each key has a bucket of `burst` tokens refilled at `per_min` a minute;
 * a request takes one, or is refused with the seconds until one is back
 * (for Retry-After). The table is bounded (`max_keys`): when full, the
 * bucket that was idle longest is dropped, in O(1) (a use-order list, not
 * a scan: every new client address may cost an eviction) — a dropped key starts full
 * again, so the bound is on memory, not on the attacker (who gets at most
 * `burst` per key they can cycle through; per-tenant buckets bound that).
 *
 * Threads: one limiter may be used from every loop; a mutex guards it.
 * Time is passed in (milliseconds on any monotonic clock). */
#ifndef MCPGATE_GATEWAY_BASE_RATELIMIT_H
#define MCPGATE_GATEWAY_BASE_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_ratelimit gw_ratelimit;

#define GW_RATELIMIT_KEY_MAX 95 /* bytes of a key; longer keys are cut */

/* A limiter of per_min tokens a minute, burst at most (>= 1), at most
 * max_keys buckets. per_min 0 disables it (every take succeeds). NULL when
 * out of memory. */
gw_ratelimit *gw_ratelimit_new(int64_t per_min, int64_t burst, size_t max_keys);
void gw_ratelimit_free(gw_ratelimit *rl);

/* The bucket key of a client address: an IPv4 address as is; an IPv6
 * address by its /64 (one host or customer usually holds a whole /64, so
 * per-address buckets would let it cycle through 2^64 of them); an
 * IPv4-mapped IPv6 address as its IPv4. Anything else is copied (cut to
 * GW_RATELIMIT_KEY_MAX bytes). */
void gw_ratelimit_addr_key(const char *addr, char out[GW_RATELIMIT_KEY_MAX + 1]);

/* The table's slots now (each ~136 bytes): it starts at 64 and doubles as
 * keys arrive, up to the smallest power of two >= 2 * max_keys. For tests
 * and memory accounting. */
size_t gw_ratelimit_slots(gw_ratelimit *rl);

/* Takes one token from key's bucket at now_ms: 0 when there was one, else
 * the whole seconds (>= 1) until there is. rl NULL: always 0. */
int64_t gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms);
/* The same for n tokens at once (a weighted cost; n past the burst takes
 * the whole burst): 0 when there were n, else the whole seconds until
 * there are (nothing taken). */
int64_t gw_ratelimit_take_n(gw_ratelimit *rl, const char *key, int64_t n, int64_t now_ms);
/* Gives back n tokens a take of key's bucket took (at most up to the
 * burst): the take paid for something another limit then refused. A key
 * no longer in the table (evicted: it starts full) gets nothing. */
void gw_ratelimit_give_n(gw_ratelimit *rl, const char *key, int64_t n);

#endif
