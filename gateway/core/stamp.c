/* gateway/core/stamp.c — serve's guard against a store that went back in
 * time (store/stamp.c keeps the generation and its record).
 *
 * A restore of an older backup brings back every token, session and grant
 * revoked since, every user deactivated since and every tenant deleted
 * since; the store alone cannot tell it is a copy, and `store check`
 * passes it. So serve keeps <data>/store.generation — outside store/, where
 * a restore of the store leaves it — and at start refuses a store older
 * than that record, saying what happened and the one command that accepts
 * it (`mcpgate store accept-restore`), after which the README says what to
 * replay from the IdP.
 *
 * When the generation moves: at start (after the check), every
 * GW_STAMP_INTERVAL_MS while anything was written since the last one (on
 * libuv's pool: a commit and an fsync), and at exit. A backup is therefore
 * told apart once the store has moved on past it by one of those; one
 * taken in the last interval before a crash is not (it holds nearly
 * everything the store did). Main thread and the primary loop only. */
#include "gateway/core/server.h"

#include <stdio.h>
#include <string.h>

#include "gateway/base/log.h"
#include "store/store.h"

#define GW_STAMP_INTERVAL_MS 10000

static void stamp_path(const gw_server *srv, char *out, size_t cap) {
  snprintf(out, cap, "%s/" GW_STAMP_FILE, srv->cfg.data);
}

static uint64_t jobs_committed(gw_server *srv) {
  st_stats s;
  st_stats_get(srv->store, &s);
  return s.jobs_committed;
}

int gw_stamp_check(gw_server *srv) {
  char path[4200];
  stamp_path(srv, path, sizeof path);
  st_stamp_info si;
  int rc = st_stamp_check(srv->store, path, &si);
  if (rc < 0) {
    GW_LOG(GW_LOG_ERROR, "store", NULL, "cannot read the store's generation: %s", st_strerror(rc));
    return -1;
  }
  switch (si.state) {
  case ST_STAMP_OLDER:
    GW_LOG(GW_LOG_ERROR, "store", NULL,
           "the store in %s/store is older than the one this data directory last ran (its generation is %llu, "
           "%s says %llu): it was restored from an older backup or rolled back, and everything revoked since that "
           "backup is back — users deactivated, tokens revoked, grants, sessions and tenants removed. Not started. "
           "To start on it: `mcpgate store accept-restore --data %s`; then have the IdP send again the "
           "deactivations and group changes made since the backup, and revoke again what admins revoked since "
           "(README, \"Command line\": backup and restore)",
           srv->cfg.data, (unsigned long long)si.store_gen, path, (unsigned long long)si.file_gen, srv->cfg.data);
    return -1;
  case ST_STAMP_BAD_FILE:
  case ST_STAMP_UNREADABLE:
    GW_LOG(GW_LOG_ERROR, "store", NULL,
           "%s: %s. It records how far the store had come, to tell a restored older backup. Not started. If the "
           "store in %s/store is the one to run, `mcpgate store accept-restore --data %s` removes it, and the next "
           "start records the store as it is",
           path, st_stamp_state_str(si.state), srv->cfg.data, srv->cfg.data);
    return -1;
  case ST_STAMP_OTHER_STORE:
    GW_LOG(GW_LOG_WARN, "store", NULL,
           "the store in %s/store (store id %s) is not the one this data directory ran last (%s names %s): a new "
           "store, or another one, was put there; it is recorded as it is",
           srv->cfg.data, si.store_id[0] ? si.store_id : "none yet", path, si.file_id);
    break;
  default: break;
  }
  return 0;
}

void gw_stamp_record(gw_server *srv) {
  char path[4200];
  stamp_path(srv, path, sizeof path);
  int rc;
  uint64_t before = jobs_committed(srv), gen = 0;
  srv->stamp_started = true;
  if ((rc = st_stamp_advance(srv->store, path, &gen)) < 0) {
    /* a store at the end of its map still starts (the timer retries) */
    GW_LOG(GW_LOG_WARN, "store", NULL,
           "cannot record the store's generation in %s: %s (retried every %d s; until it is, a restore of a "
           "backup taken from now on is not told apart at start)",
           path, st_strerror(rc), GW_STAMP_INTERVAL_MS / 1000);
    srv->stamp_failing = true;
    return;
  }
  srv->stamp_seen = before + 1;
  GW_LOG(GW_LOG_DEBUG, "store", NULL, "store generation %llu recorded in %s", (unsigned long long)gen, path);
}

static void stamp_work(uv_work_t *w) {
  gw_server *srv = w->data;
  char path[4200];
  stamp_path(srv, path, sizeof path);
  srv->stamp_rc = st_stamp_advance(srv->store, path, NULL);
}

static void stamp_after(uv_work_t *w, int status) {
  gw_server *srv = w->data;
  srv->stamp_busy = false;
  if (status == 0 && srv->stamp_rc == 0) {
    if (srv->stamp_failing)
      GW_LOG(GW_LOG_INFO, "store", NULL, "the store's generation is recorded again in %s/" GW_STAMP_FILE, srv->cfg.data);
    srv->stamp_failing = false;
    srv->stamp_seen = srv->stamp_from + 1;
    return;
  }
  if (!srv->stamp_failing)
    GW_LOG(GW_LOG_WARN, "store", NULL,
           "cannot record the store's generation in %s/" GW_STAMP_FILE ": %s (retried every %d s; until it is, a "
           "restore of a backup taken from now on is not told apart at start)",
           srv->cfg.data, status ? uv_strerror(status) : st_strerror(srv->stamp_rc), GW_STAMP_INTERVAL_MS / 1000);
  srv->stamp_failing = true;
}

static void stamp_tick(uv_timer_t *t) {
  gw_server *srv = t->data;
  if (srv->stamp_busy) return;
  uint64_t now = jobs_committed(srv);
  if (now == srv->stamp_seen && !srv->stamp_failing) return;
  srv->stamp_from = now;
  srv->stamp_work.data = srv;
  if (uv_queue_work(t->loop, &srv->stamp_work, stamp_work, stamp_after) == 0) srv->stamp_busy = true;
}

void gw_stamp_timer_start(gw_server *srv, uv_loop_t *loop) {
  uv_timer_init(loop, &srv->stamp_timer);
  srv->stamp_timer.data = srv;
  uint64_t ms = GW_STAMP_INTERVAL_MS;
  gw_test_hook_ms("MCPGATE_TEST_STAMP_INTERVAL_MS", GW_STAMP_INTERVAL_MS, "the store's generation recorded every", &ms);
  uv_timer_start(&srv->stamp_timer, stamp_tick, ms, ms);
  uv_unref((uv_handle_t *)&srv->stamp_timer); /* never what keeps the loop running */
  srv->stamp_timer_on = true;
}

void gw_stamp_timer_stop(gw_server *srv) {
  if (!srv->stamp_timer_on) return;
  srv->stamp_timer_on = false;
  uv_close((uv_handle_t *)&srv->stamp_timer, NULL);
}

void gw_stamp_exit(gw_server *srv) {
  if (!srv->store || !srv->stamp_started || (jobs_committed(srv) == srv->stamp_seen && !srv->stamp_failing)) return;
  char path[4200];
  stamp_path(srv, path, sizeof path);
  int rc = st_stamp_advance(srv->store, path, NULL);
  if (rc < 0) GW_LOG(GW_LOG_WARN, "store", NULL, "cannot record the store's generation in %s at exit: %s", path, st_strerror(rc));
}
