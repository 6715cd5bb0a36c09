/* tests/unit/test_dir_mcut_log.c — store/dir_mcut.c's log when memory runs
 * out: found by review, a mark ended while the buffer for its "-" line
 * could not grow left memory without the mark and the log with it, and the
 * next restart brought the mark back (a member added back stayed cut, with
 * nothing left to end it). Only a mark whose end is logged goes now. The
 * allocation is made to fail by interposing realloc, so this test does not
 * run under ASan (which owns the allocator): it says so and counts nothing. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/dir.h"
#include "store/store.h"

#if defined(__SANITIZE_ADDRESS__)
int main(void) {
  printf("# not run under ASan: it interposes realloc\n# unit %s: 0 passed, 0 failed\n", __FILE__);
  return 0;
}
#else
#include "tests/unit/unit.h"

extern void *__libc_realloc(void *, size_t);
static atomic_int fail_next_4k;
/* the first growth of mc_remove_users' log buffer (from nothing to 4 KiB) fails once when asked */
void *realloc(void *p, size_t n) {
  if (!p && n == 4096 && atomic_exchange(&fail_next_4k, 0)) return NULL;
  return __libc_realloc(p, n);
}

static int emit_fn(st_txn *txn, void *arg) { return st_emit(txn, ST_DIR_EV_MEMBERSHIP_CHANGED, arg); }

TEST(ended_marks_stay_ended_across_a_restart) {
  char dir[] = "/tmp/mcpgate-test-mcutlog-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  st_options o = {0};
  o.dir = dir;
  o.map_size = 8 << 20;
  st_store *s;
  CHECK_INT(st_open(&s, &o), 0);
  const char *g = "00000000-0000-4000-8000-0000000000a1", *u = "00000000-0000-4000-8000-000000000001";
  CHECK_INT(st_dir_membership_cut_unwritten(s, "acme", g, &u, 1), 0);
  const char *const added[] = {u};
  st_dir_event ev = {.tenant = "acme", .id = g, .via = "patch", .added = added, .nadded = 1};
  atomic_store(&fail_next_4k, 1);
  CHECK_INT(st_write_sync(s, emit_fn, &ev), 0);
  CHECK(atomic_load(&fail_next_4k) == 0); /* the failure was met */
  size_t held = st_dir_memberships_cut_count(s);
  bool held_marked = st_dir_membership_cut_marked(s, "acme", u, g);
  CHECK(held_marked); /* no room to log its end: it stays (fail closed) */
  st_close(s);
  CHECK_INT(st_open(&s, &o), 0);
  CHECK_INT((int)st_dir_memberships_cut_count(s), (int)held); /* a restart reads what memory held */
  CHECK(st_dir_membership_cut_marked(s, "acme", u, g) == held_marked);
  /* the next commit that settles it ends it, logged */
  CHECK_INT(st_write_sync(s, emit_fn, &ev), 0);
  CHECK(!st_dir_membership_cut_marked(s, "acme", u, g));
  st_close(s);
  CHECK_INT(st_open(&s, &o), 0);
  CHECK_INT((int)st_dir_memberships_cut_count(s), 0);
  st_close(s);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK_INT(system(cmd), 0);
}

int main(void) {
  RUN(ended_marks_stay_ended_across_a_restart);
  return UNIT_DONE();
}
#endif
