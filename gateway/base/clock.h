/* gateway/base/clock.h — wall-clock milliseconds since the epoch, for
 * values that outlive the process (durable due times, record times, expiry
 * stamps), so not the loop's monotonic clock. Any thread. */
#ifndef MCPGATE_GATEWAY_BASE_CLOCK_H
#define MCPGATE_GATEWAY_BASE_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline int64_t gw_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
