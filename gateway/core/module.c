/* gateway/core/module.c — walking the module table (see module.h). Knows no
 * module: the table comes from the caller (gateway/modules.c via cli.c). */
#include "gateway/core/module.h"

#include <stddef.h>

#include "gateway/core/settings.h"
#include "store/store.h"

static int count(const gw_module *const *mods) {
  int n = 0;
  while (mods && mods[n]) n++;
  return n;
}

int gw_modules_store_init(const gw_module *const *mods, st_store *st, gw_server *srv) {
  for (int i = 0; i < count(mods); i++) {
    /* tenant-setting keys first: a module's hooks may read its settings */
    int rc = mods[i]->settings ? gw_settings_register(mods[i]->settings) : 0;
    if (rc) return rc;
    rc = mods[i]->store_init ? mods[i]->store_init(st, srv) : 0;
    if (rc) return rc;
  }
  return 0;
}

int gw_modules_init(const gw_module *const *mods, gw_server *srv) {
  for (int i = 0; i < count(mods); i++) {
    int rc = mods[i]->init ? mods[i]->init(srv) : 0;
    if (rc) return rc;
  }
  return 0;
}

void gw_modules_fini(const gw_module *const *mods, gw_server *srv) {
  for (int i = count(mods) - 1; i >= 0; i--)
    if (mods[i]->fini) mods[i]->fini(srv);
}

int gw_modules_routes(const gw_module *const *mods, gw_server *srv, gw_router *rt) {
  for (int i = 0; i < count(mods); i++) {
    int rc = mods[i]->routes ? mods[i]->routes(srv, rt) : 0;
    if (rc) return rc;
  }
  return 0;
}

int gw_modules_loop_start(const gw_module *const *mods, gw_loop *lp) {
  for (int i = 0; i < count(mods); i++) {
    int rc = mods[i]->loop_start ? mods[i]->loop_start(lp) : 0;
    if (rc) return rc;
  }
  return 0;
}

void gw_modules_loop_stop(const gw_module *const *mods, gw_loop *lp) {
  for (int i = count(mods) - 1; i >= 0; i--)
    if (mods[i]->loop_stop) mods[i]->loop_stop(lp);
}

int gw_modules_request_done_hooks(const gw_module *const *mods,
                                  void (*out[])(gw_loop *lp, const struct gw_req *req, int rclass, int status), int max) {
  int n = 0;
  for (int i = 0; mods[i] && n < max; i++)
    if (mods[i]->request_done) out[n++] = mods[i]->request_done;
  return n;
}

int gw_modules_upgrades(const gw_module *const *mods, st_upgrade *out, int max) {
  int n = 0;
  for (int i = 0; i < count(mods); i++)
    for (const st_upgrade *u = mods[i]->upgrades; u && u->name; u++) {
      if (n + 1 >= max) return -1;
      out[n++] = *u;
    }
  if (max < 1) return -1;
  out[n] = (st_upgrade){NULL, NULL};
  return n;
}

void gw_modules_drain(const gw_module *const *mods, gw_loop *lp) {
  for (int i = 0; i < count(mods); i++)
    if (mods[i]->drain) mods[i]->drain(lp);
}
