/* gateway/base/clock.h — wall-clock milliseconds since the epoch, for
 * values that outlive the process (durable due times, record times, expiry
 * stamps), so not the loop's monotonic clock, and their RFC 3339 text.
 * Any thread. */
#ifndef MCPGATE_GATEWAY_BASE_CLOCK_H
#define MCPGATE_GATEWAY_BASE_CLOCK_H
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline int64_t gw_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ms (since the epoch) as RFC 3339 UTC with milliseconds,
 * "2026-12-05T02:55:00.123Z", into out (at least 32 bytes). */
static inline void gw_rfc3339_ms(int64_t ms, char out[32]) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

#endif
