/* gateway/base/pool.c — free lists of equal-sized blocks (see pool.h). */
#include "gateway/base/pool.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif

void *gw_pool_get(gw_pool *p) {
#ifndef POOL_ASAN
  if (p->head) {
    void *b = p->head;
    p->head = *(void **)b;
    p->n--;
    return b;
  }
#endif
  return malloc(p->size < sizeof(void *) ? sizeof(void *) : p->size);
}

void *gw_pool_zget(gw_pool *p) {
  void *b = gw_pool_get(p);
  if (b) memset(b, 0, p->size);
  return b;
}

static _Thread_local gw_pool *thread_pools;

void gw_pool_put(gw_pool *p, void *b) {
  if (!b) return;
#ifndef POOL_ASAN
  if (p->n < p->max) {
    if (!p->listed) {
      p->listed = 1;
      p->next = thread_pools;
      thread_pools = p;
    }
    *(void **)b = p->head;
    p->head = b;
    p->n++;
    return;
  }
#endif
  free(b);
}

void gw_pool_drain(gw_pool *p) {
  while (p->head) {
    void *b = p->head;
    p->head = *(void **)b;
    free(b);
  }
  p->n = 0;
}

void gw_pool_thread_drain(void) {
  for (gw_pool *p = thread_pools; p; p = p->next) gw_pool_drain(p);
}
