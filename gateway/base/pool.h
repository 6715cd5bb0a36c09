/* gateway/base/pool.h — free lists of equal-sized blocks, one per thread
 * and kind (h2o's mem pools; nginx keeps per-connection pools for the same
 * reason). The objects every request creates — the HTTP request, the MCP
 * exchange, the outbound transfer — are 1–2.5 KiB: past glibc's per-thread
 * cache (1 KiB), so malloc and free went through the shared bins on every
 * call. A pool keeps up to `max` freed blocks and hands them back.
 *
 * Declare one per kind and thread: `static _Thread_local gw_pool p =
 * GW_POOL(sizeof(T), 256);`. A block goes back to the pool of the thread
 * that frees it. Under AddressSanitizer pools keep nothing (every get is a
 * malloc, every put a free): a use after free stays visible.
 *
 * A pool that kept a block is on its thread's list: a loop thread calls
 * gw_pool_thread_drain before it ends, so nothing it kept outlives it. */
#ifndef MCPGATE_GATEWAY_BASE_POOL_H
#define MCPGATE_GATEWAY_BASE_POOL_H
#include <stddef.h>

typedef struct gw_pool {
  size_t size, max, n;
  void *head;
  struct gw_pool *next; /* the thread's list of pools holding blocks */
  int listed;
} gw_pool;

#define GW_POOL(size, max) {(size), (max), 0, NULL, NULL, 0}

/* A block of p->size bytes (zeroed by gw_pool_zget), or NULL. */
void *gw_pool_get(gw_pool *p);
void *gw_pool_zget(gw_pool *p);
/* b (NULL is ignored) back to the pool, or freed when it is full. */
void gw_pool_put(gw_pool *p, void *b);
/* Frees every block kept. */
void gw_pool_drain(gw_pool *p);
/* Frees every block kept by every pool of the calling thread. */
void gw_pool_thread_drain(void);

#endif
