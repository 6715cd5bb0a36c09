/* gateway/core/module.h — the module table: what each module of the process
 * plugs into it (store hooks, checks and purges; process-wide state; per-
 * loop state; routes; metrics; tenant-setting keys). gateway/modules.c
 * lists the modules (the only file that knows every one); `mcpgate serve`
 * (gateway/core/server.c) and the offline CLI (gateway/cli.c) both run the
 * same table through the helpers below, so a check or hook registered by a
 * module is there in both.
 *
 * Order is the table's order, and it matters: store_init registers hooks in
 * the order they run inside one write transaction (a SCIM deactivation
 * deletes tokens and sessions in the transaction, then ends live exchanges
 * after the commit); metrics render in that order too. Stops and fini run in
 * reverse order.
 *
 * Threading: init/fini/store_init on the main thread before the loops run /
 * after they stopped; loop_start/loop_stop/drain on the loop's thread;
 * metrics on whichever loop serves /metrics (read-only, atomics). */
#ifndef MCPGATE_GATEWAY_CORE_MODULE_H
#define MCPGATE_GATEWAY_CORE_MODULE_H
#include "gateway/base/buf.h"

typedef struct st_store st_store;
struct st_upgrade;
typedef struct gw_server gw_server;
typedef struct gw_loop gw_loop;
typedef struct gw_req gw_req;
typedef struct gw_router gw_router;
struct gw_setting;

typedef struct gw_module {
  const char *name;
  /* Hooks, checks, purges on an open store. srv is NULL offline (CLI): only
   * what needs no process state (checks, in-transaction hooks). */
  int (*store_init)(st_store *st, gw_server *srv);
  /* Process-wide state (srv->cfg is loaded, srv->store open); fini after
   * the loops and the store have closed. */
  int (*init)(gw_server *srv);
  void (*fini)(gw_server *srv);
  int (*loop_start)(gw_loop *lp);
  void (*loop_stop)(gw_loop *lp);
  /* Prometheus text appended to /metrics. */
  void (*metrics)(gw_server *srv, gw_buf *out);
  const struct gw_setting *settings; /* tenant-setting keys, NULL-terminated by name */
  /* Added: the module's routes (gw_router_add), after init. */
  int (*routes)(gw_server *srv, gw_router *rt);
  /* Added: SIGTERM on this loop: end streams so the drain can finish. */
  void (*drain)(gw_loop *lp);
  /* Added: the data steps of the store's migrations that rewrite this
   * module's records (store.h st_upgrade), ended by a NULL name; given to
   * st_open by serve and the offline CLI alike (gw_modules_upgrades). */
  const struct st_upgrade *upgrades;
  /* Added: a request of route class rclass (gateway/http/router.h) ended
   * with status (the response queued, or dropped); req is valid during the
   * call only. On the request's loop, for every request: keep it cheap. */
  void (*request_done)(gw_loop *lp, const struct gw_req *req, int rclass, int status);
} gw_module;

/* A NULL-terminated table (gateway/modules.c's gw_modules). Each helper
 * walks it in order and stops at the first failure, returning its code;
 * the *_stop/fini helpers walk in reverse and never fail. */
int gw_modules_store_init(const gw_module *const *mods, st_store *st, gw_server *srv);
int gw_modules_init(const gw_module *const *mods, gw_server *srv);
void gw_modules_fini(const gw_module *const *mods, gw_server *srv);
int gw_modules_routes(const gw_module *const *mods, gw_server *srv, gw_router *rt);
/* Starts every module on lp. On failure the caller runs
 * gw_modules_loop_stop: every loop_stop tolerates a module that never
 * started (or half started) on lp. */
int gw_modules_loop_start(const gw_module *const *mods, gw_loop *lp);
void gw_modules_loop_stop(const gw_module *const *mods, gw_loop *lp);
void gw_modules_drain(const gw_module *const *mods, gw_loop *lp);
/* Every module's upgrades, in order, into out (at most max - 1, then a
 * NULL name): st_options.upgrades. -1 when they do not fit. */
#define GW_UPGRADES_MAX 16
int gw_modules_upgrades(const gw_module *const *mods, struct st_upgrade *out, int max);
/* The request_done hooks of mods, in order, into out (at most max): how many. */
#define GW_REQUEST_DONE_MAX 8
int gw_modules_request_done_hooks(const gw_module *const *mods,
                                  void (*out[])(gw_loop *lp, const struct gw_req *req, int rclass, int status), int max);

#endif
