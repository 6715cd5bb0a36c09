/* store/dir_mcut.c — memberships cut in memory (store/dir.h,
 * st_dir_membership_cut_unwritten).
 *
 * A removal of members from a group, or the group's deletion, that cannot
 * be written (the store full even for the reserve, a failing disk) must
 * still take that group's access away, as an unwritten deactivation does
 * (dir.c's users cut in memory): the policy decides on the groups
 * st_dir_user_groups answers, so that is where the cut shows.
 *
 * Rules this file keeps, and why:
 *  - A mark is (tenant, group, user); user "" stands for every member (an
 *    unwritten deletion, or a removal the store cut short before every
 *    member it removes was known). The marks are one array sorted by
 *    (tenant, group, user) under st->cutmu: a check is a binary search, a
 *    group's or a tenant's marks are a run; nmcut lets the usual empty set
 *    cost one atomic load and no lock.
 *  - Only a committed write ends a mark, and only one that settles what
 *    the mark stands for: that user's membership of that group changed
 *    (the removal written, or the IdP adding them again), the group or
 *    the user deleted, the tenant marked deleting; a whole-group mark also
 *    a committed PUT that changes the group (the IdP restating all of it:
 *    it has the group). Not a PATCH: Okta retries its failed tasks in
 *    order, and the retry of a membership PATCH queued before the failed
 *    DELETE must not hand the group back. The ends run after the commit
 *    (st_txn_after_commit), never for a job that aborts.
 *  - Every change bumps st->cutgen: st_txn_snapshot and
 *    st_txn_cut_generation move, and caches keyed on them (the policy's
 *    per-user decisions) read the user's groups afresh.
 *  - A restart keeps them: <dir>/unwritten-memberships, one line per
 *    change — "+ t g u" (u "*": the whole group), "- t g u" (that mark),
 *    "- t g ." (every mark of the group), "- t . u" (every mark of the
 *    user), "- t . ." (the tenant's) — rewritten whole when it holds far
 *    more lines than marks. No fsync, as the users' marks: a process
 *    restart, not a host crash. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/tenant.h"

struct st__mcut {
  char tenant[ST_TENANT_ID_MAX + 1];
  char gid[ST_DIR_ID_LEN + 1];
  char uid[ST_DIR_ID_LEN + 1]; /* "": every member */
};

#define MCUT_LOG ST__MCUT_LOG
#define MCUT_NOTIFY_MAX 64 /* more users marked at once: the subscribers hear "the whole group" once */
#define MCUT_WHOLE_ROOM 1024       /* marks only whole groups may take */
#define MCUT_TENANT_WHOLE_ROOM 256 /* ... and of each tenant's share */

static int mc_cmp(const struct st__mcut *m, const char *t, const char *g, const char *u) {
  int c = strcmp(m->tenant, t);
  if (!c) c = strcmp(m->gid, g);
  if (!c) c = strcmp(m->uid, u);
  return c;
}

/* the first index whose key is at or after (t, g, u); under cutmu */
static size_t mc_lower(const st_store *st, const char *t, const char *g, const char *u) {
  size_t lo = 0, hi = atomic_load(&st->nmcut);
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (mc_cmp(&st->mcut[mid], t, g, u) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static bool mc_has(const st_store *st, const char *t, const char *g, const char *u) {
  size_t i = mc_lower(st, t, g, u);
  return i < atomic_load(&st->nmcut) && !mc_cmp(&st->mcut[i], t, g, u);
}

/* 0 inserted, 1 there already, ST_ENOMEM; under cutmu */
static int mc_insert(st_store *st, const char *t, const char *g, const char *u) {
  size_t n = atomic_load(&st->nmcut), i = mc_lower(st, t, g, u);
  if (i < n && !mc_cmp(&st->mcut[i], t, g, u)) return 1;
  if (n >= ST_DIR_MCUT_MAX) return ST_ENOMEM;
  if (n == st->mcutcap) {
    size_t cap = st->mcutcap ? st->mcutcap * 2 : 16;
    if (cap > ST_DIR_MCUT_MAX) cap = ST_DIR_MCUT_MAX;
    struct st__mcut *m = realloc(st->mcut, cap * sizeof *m);
    if (!m) return ST_ENOMEM;
    st->mcut = m;
    st->mcutcap = cap;
  }
  memmove(&st->mcut[i + 1], &st->mcut[i], (n - i) * sizeof *st->mcut);
  struct st__mcut *m = &st->mcut[i];
  snprintf(m->tenant, sizeof m->tenant, "%s", t);
  snprintf(m->gid, sizeof m->gid, "%s", g);
  snprintf(m->uid, sizeof m->uid, "%s", u);
  atomic_store(&st->nmcut, n + 1);
  return 0;
}

/* every mark of tenant t whose group is g (NULL: any) and user u (NULL:
 * any; "" the whole-group mark) goes, in one pass (a group of 16,384
 * members ends at once); how many did (under cutmu) */
static size_t mc_remove_where(st_store *st, const char *t, const char *g, const char *u) {
  size_t n = atomic_load(&st->nmcut), w = 0;
  for (size_t i = 0; i < n; i++) {
    const struct st__mcut *m = &st->mcut[i];
    if (!strcmp(m->tenant, t) && (!g || !strcmp(m->gid, g)) && (!u || !strcmp(m->uid, u))) continue;
    if (w != i) st->mcut[w] = st->mcut[i];
    w++;
  }
  atomic_store(&st->nmcut, w);
  return n - w;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* the marks of tenant t, group g, for the users of uids (n, sorted) go,
 * in one pass over the group's run; each is logged (into the caller's
 * buffer: one write for them all); how many did (under cutmu) */
static size_t mc_remove_users(st_store *st, const char *t, const char *g, const char *const *uids, size_t n,
                              char **log, size_t *loglen, size_t *logcap) {
  size_t total = atomic_load(&st->nmcut), lo = mc_lower(st, t, g, ""), w = lo, k = 0, removed = 0;
  size_t i = lo;
  for (; i < total && !strcmp(st->mcut[i].tenant, t) && !strcmp(st->mcut[i].gid, g); i++) {
    const char *u = st->mcut[i].uid;
    int c = 1;
    while (u[0] && k < n && (c = strcmp(uids[k], u)) < 0) k++;
    if (u[0] && k < n && c == 0) {
      size_t need = *loglen + ST_TENANT_ID_MAX + 2 * ST_DIR_ID_LEN + 8;
      if (need > *logcap) {
        size_t cap = *logcap ? *logcap * 2 : 4096;
        while (cap < need) cap *= 2;
        char *b = realloc(*log, cap);
        if (b) *log = b, *logcap = cap;
      }
      /* only a mark whose end is logged goes: memory never says less than
       * the log a restart reads back (no room: it stays, fail closed) */
      if (need <= *logcap) {
        *loglen += (size_t)sprintf(*log + *loglen, "- %s %s %s\n", t, g, u);
        removed++;
        continue;
      }
    }
    if (w != i) st->mcut[w] = st->mcut[i];
    w++;
  }
  if (removed) {
    memmove(&st->mcut[w], &st->mcut[i], (total - i) * sizeof *st->mcut);
    atomic_store(&st->nmcut, total - removed);
  }
  return removed;
}

/* how many marks tenant t holds (under cutmu): its run */
static size_t mc_tenant_count(const st_store *st, const char *t) {
  size_t n = atomic_load(&st->nmcut), i = mc_lower(st, t, "", ""), c = 0;
  for (; i < n && !strcmp(st->mcut[i].tenant, t); i++) c++;
  return c;
}

/* ---- the log ---- */

static void mc_log_compact(st_store *st);

/* appends lines (n of them, len bytes) to the log */
static void mc_log_lines(st_store *st, const char *lines, size_t len, size_t n) {
  if (st->mcutfd < 0 || !len) return;
  if (write(st->mcutfd, lines, len) != (ssize_t)len) {
    st__log(st, ST_LOG_ERROR, "cannot append to %s/" MCUT_LOG " (%s): memberships cut in memory would not stay cut "
            "across a restart", st->dir, strerror(errno));
    return;
  }
  st->mcutlines += n;
  if (st->mcutlines > 2 * atomic_load(&st->nmcut) + 1024) mc_log_compact(st);
}

static void mc_log(st_store *st, char op, const char *t, const char *g, const char *u) {
  char line[ST_TENANT_ID_MAX + 2 * ST_DIR_ID_LEN + 16];
  int n = snprintf(line, sizeof line, "%c %s %s %s\n", op, t, g, u);
  if (n > 0 && (size_t)n < sizeof line) mc_log_lines(st, line, (size_t)n, 1);
}

static void mc_log_compact(st_store *st) {
  size_t n = atomic_load(&st->nmcut), len = 0;
  char *buf = malloc(n * (ST_TENANT_ID_MAX + 2 * ST_DIR_ID_LEN + 8) + 1);
  if (!buf) return;
  for (size_t i = 0; i < n; i++) {
    const struct st__mcut *m = &st->mcut[i];
    len += (size_t)sprintf(buf + len, "+ %s %s %s\n", m->tenant, m->gid, m->uid[0] ? m->uid : "*");
  }
  if (st__marks_file_replace(st, MCUT_LOG, buf, len, &st->mcutfd) == 0) st->mcutlines = n;
  free(buf);
}

void st__dir_mcut_load(st_store *st) {
  char path[4096];
  snprintf(path, sizeof path, "%s/" MCUT_LOG, st->dir);
  /* read_only: read what is there (none: nothing cut), make nothing */
  int fd = st->read_only ? open(path, O_RDONLY | O_CLOEXEC) : open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 && st->read_only && errno == ENOENT) return;
  if (fd < 0) {
    st__log(st, ST_LOG_ERROR, "cannot open %s (%s): memberships cut in memory will not stay cut across a restart",
            path, strerror(errno));
    return;
  }
  FILE *f = fdopen(dup(fd), "r");
  size_t lines = 0, bad = 0;
  char line[256];
  uv_mutex_lock(&st->cutmu);
  while (f && fgets(line, sizeof line, f)) {
    char op, t[65], g[41], u[41]; /* one more than a valid one holds: too long is refused */
    _Static_assert(ST_TENANT_ID_MAX < 64 && ST_DIR_ID_LEN < 40, "the widths below");
    lines++;
    bool gw = false, uw = false; /* the wildcards of a removal */
    if (sscanf(line, "%c %64s %40s %40s", &op, t, g, u) != 4 || strlen(t) > ST_TENANT_ID_MAX ||
        !st_tenant_id_valid(t) || (op != '+' && op != '-') ||
        !(st_dir_valid_id(g) || (op == '-' && (gw = !strcmp(g, ".")))) ||
        !(st_dir_valid_id(u) || !strcmp(u, "*") || (op == '-' && (uw = !strcmp(u, "."))))) {
      bad++;
      continue;
    }
    const char *uid = !strcmp(u, "*") ? "" : u;
    if (op == '+') {
      if (mc_insert(st, t, g, uid) < 0) bad++;
    } else {
      mc_remove_where(st, t, gw ? NULL : g, uw ? NULL : uid);
    }
  }
  if (f) fclose(f);
  st->mcutfd = fd;
  st->mcutlines = lines;
  size_t n = atomic_load(&st->nmcut);
  if (n) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  if (n)
    st__log(st, ST_LOG_ERROR, "%zu group membership(s) whose removal could not be written before the restart stay cut "
            "in memory (%s): retry the group's push in the IdP now that the store has room", n, path);
  if (bad) st__log(st, ST_LOG_WARN, "%s: %zu line(s) not understood, skipped", path, bad);
}

/* ---- marking ---- */

int st_dir_hook_membership_cut(st_store *st, st_dir_mcut_fn fn, void *ctx) {
  if (!st || !fn || atomic_load(&st->serving)) return ST_EINVAL;
  if (st->nmcutfn >= sizeof st->mcutfn / sizeof st->mcutfn[0]) return ST_ENOMEM;
  st->mcutfn[st->nmcutfn] = fn;
  st->mcutctx[st->nmcutfn++] = ctx;
  return 0;
}

int st_dir_membership_cut_unwritten(st_store *st, const char *tenant, const char *gid, const char *const *uids,
                                    size_t n) {
  if (!st || !tenant || !gid || strlen(tenant) > ST_TENANT_ID_MAX || !st_tenant_id_valid(tenant) ||
      !st_dir_valid_id(gid) || (uids == NULL && n))
    return ST_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!uids[i] || !st_dir_valid_id(uids[i])) return ST_EINVAL;
  int rc = 0;
  bool whole = !uids, changed = false;
  uv_mutex_lock(&st->cutmu);
  /* members that do not all fit — the tenant's share, or the marks short
   * of the room kept for whole groups — take the whole group instead (one
   * mark): one tenant's failed pushes never leave another's unmarked */
  size_t have = atomic_load(&st->nmcut);
  if (!whole && (have + n > ST_DIR_MCUT_MAX - MCUT_WHOLE_ROOM ||
                 mc_tenant_count(st, tenant) + n > ST_DIR_MCUT_TENANT_MAX - MCUT_TENANT_WHOLE_ROOM))
    whole = true;
  if (whole && !mc_has(st, tenant, gid, "") && mc_tenant_count(st, tenant) >= ST_DIR_MCUT_TENANT_MAX) {
    uv_mutex_unlock(&st->cutmu);
    return ST_ENOMEM;
  }
  for (size_t i = 0; !whole && i < n; i++) {
    int r = mc_insert(st, tenant, gid, uids[i]);
    if (r < 0) whole = true; /* the earlier ones stay: a whole-group mark covers them too */
    else if (r == 0) {
      changed = true;
      mc_log(st, '+', tenant, gid, uids[i]);
    }
  }
  if (whole) {
    int r = mc_insert(st, tenant, gid, "");
    if (r < 0) rc = r;
    else if (r == 0) {
      changed = true;
      mc_log(st, '+', tenant, gid, "*");
    }
  }
  /* as the users' marks: only a change moves the snapshot (an IdP retrying
   * a failing push must not empty every loop's caches each time) */
  if (changed) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  if (rc) return rc;
  for (size_t k = 0; k < st->nmcutfn; k++) {
    if (whole || n > MCUT_NOTIFY_MAX) st->mcutfn[k](st->mcutctx[k], tenant, gid, NULL);
    else
      for (size_t i = 0; i < n; i++) st->mcutfn[k](st->mcutctx[k], tenant, gid, uids[i]);
  }
  return 0;
}

bool st_dir_membership_cut_marked(st_store *st, const char *tenant, const char *uid, const char *gid) {
  if (!st || !tenant || !uid || !gid || atomic_load(&st->nmcut) == 0) return false;
  uv_mutex_lock(&st->cutmu);
  bool marked = mc_has(st, tenant, gid, uid) || mc_has(st, tenant, gid, "");
  uv_mutex_unlock(&st->cutmu);
  return marked;
}

size_t st_dir_memberships_cut_count(st_store *st) { return st ? atomic_load(&st->nmcut) : 0; }

int st__dir_mcut_filter(st_store *st, const char *tenant, const char *uid, json_t *gids) {
  if (atomic_load(&st->nmcut) == 0) return 0;
  uv_mutex_lock(&st->cutmu);
  for (size_t i = json_array_size(gids); i-- > 0;) {
    const char *g = json_string_value(json_array_get(gids, i));
    if (g && (mc_has(st, tenant, g, uid) || mc_has(st, tenant, g, ""))) json_array_remove(gids, i);
  }
  uv_mutex_unlock(&st->cutmu);
  return 0;
}

/* ---- what ends them: committed writes (st_emit, after the commit) ---- */

enum { MC_USERS_OF_GROUP, MC_GROUP_WHOLE, MC_GROUP, MC_USER, MC_TENANT };

typedef struct mc_end {
  st_store *st;
  int what; /* MC_* */
  char tenant[ST_TENANT_ID_MAX + 1];
  char id[ST_DIR_ID_LEN + 1]; /* the group (MC_USERS_OF_GROUP, MC_GROUP*) or the user (MC_USER) */
  bool whole;                 /* MC_USERS_OF_GROUP: the whole-group mark ends too */
  size_t n;                   /* MC_USERS_OF_GROUP: the users whose membership changed */
  char (*uids)[ST_DIR_ID_LEN + 1];
} mc_end;

static void mc_end_free(void *arg) {
  mc_end *e = arg;
  free(e->uids);
  free(e);
}

static void mc_end_run(void *arg) {
  mc_end *e = arg;
  st_store *st = e->st;
  size_t ended = 0;
  uv_mutex_lock(&st->cutmu);
  switch (e->what) {
  case MC_USERS_OF_GROUP: {
    const char **u = e->n ? malloc(e->n * sizeof *u) : NULL;
    char *log = NULL;
    size_t loglen = 0, logcap = 0;
    if (u) {
      for (size_t i = 0; i < e->n; i++) u[i] = e->uids[i];
      qsort(u, e->n, sizeof *u, cmp_str);
      ended = mc_remove_users(st, e->tenant, e->id, u, e->n, &log, &loglen, &logcap);
      mc_log_lines(st, log, loglen, ended);
    } else if (e->n) {
      /* no memory to sort: one at a time */
      for (size_t i = 0; i < e->n; i++) {
        const char *one = e->uids[i];
        size_t r = mc_remove_users(st, e->tenant, e->id, &one, 1, &log, &loglen, &logcap);
        ended += r;
      }
      mc_log_lines(st, log, loglen, ended);
    }
    free(log);
    free(u);
    if (!e->whole) break;
  }
    /* a PUT: the IdP restated the whole group, so it has it */
    __attribute__((fallthrough));
  case MC_GROUP_WHOLE:
    if (mc_remove_where(st, e->tenant, e->id, "")) {
      mc_log(st, '-', e->tenant, e->id, "*");
      ended++;
    }
    break;
  case MC_GROUP:
    if ((ended = mc_remove_where(st, e->tenant, e->id, NULL))) mc_log(st, '-', e->tenant, e->id, ".");
    break;
  case MC_USER:
    if ((ended = mc_remove_where(st, e->tenant, NULL, e->id))) mc_log(st, '-', e->tenant, ".", e->id);
    break;
  default:
    if ((ended = mc_remove_where(st, e->tenant, NULL, NULL))) mc_log(st, '-', e->tenant, ".", ".");
  }
  if (ended) atomic_fetch_add(&st->cutgen, 1);
  uv_mutex_unlock(&st->cutmu);
  mc_end_free(e);
}

/* does tenant t have a mark of group g (NULL: any)? under cutmu */
static bool mc_any(const st_store *st, const char *t, const char *g) {
  size_t n = atomic_load(&st->nmcut), i = mc_lower(st, t, g ? g : "", "");
  return i < n && !strcmp(st->mcut[i].tenant, t) && (!g || !strcmp(st->mcut[i].gid, g));
}

/* after t commits: the end `what` (MC_*) of tenant's marks of id (a
 * group, or a user for MC_USER); for MC_USERS_OF_GROUP the nu users of
 * ev's added and removed, and the whole-group mark too when whole */
static int mc_end_after(st_txn *t, int what, const char *tenant, const char *id, const st_dir_event *ev, size_t nu,
                        bool whole) {
  mc_end *e = calloc(1, sizeof *e);
  if (!e) return ST_ENOMEM;
  e->st = t->st;
  e->what = what;
  e->whole = whole;
  snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
  snprintf(e->id, sizeof e->id, "%s", id);
  if (nu) {
    e->uids = calloc(nu, sizeof *e->uids);
    if (!e->uids) {
      free(e);
      return ST_ENOMEM;
    }
    for (size_t i = 0; i < nu; i++) {
      const char *u = i < ev->nadded ? ev->added[i] : ev->removed[i - ev->nadded];
      if (u && st_dir_valid_id(u)) snprintf(e->uids[e->n++], sizeof e->uids[0], "%s", u);
    }
  }
  int rc = st_txn_after_commit(t, mc_end_run, mc_end_free, e);
  if (rc) mc_end_free(e);
  return rc;
}

int st__dir_mcut_settle(st_txn *t, int kind, const void *event) {
  st_store *st = t->st;
  if (!event || atomic_load(&st->nmcut) == 0) return 0;
  const char *tenant, *id = "";
  int what;
  const st_dir_event *ev = event;
  switch (kind) {
  case ST_EVENT_TENANT_DELETING:
    tenant = ((const st_tenant_event *)event)->tenant;
    what = MC_TENANT;
    break;
  case ST_DIR_EV_MEMBERSHIP_CHANGED: what = MC_USERS_OF_GROUP; break;
  case ST_DIR_EV_GROUP_RENAMED:
    if (!ev->via || strcmp(ev->via, "put")) return 0; /* a PATCH says nothing of the rest of the group */
    what = MC_GROUP_WHOLE;
    break;
  case ST_DIR_EV_GROUP_DELETED: what = MC_GROUP; break;
  case ST_DIR_EV_USER_DELETED: what = MC_USER; break;
  default: return 0;
  }
  if (what != MC_TENANT) {
    tenant = ev->tenant;
    id = ev->id;
    if (!id || !st_dir_valid_id(id)) return 0;
  }
  if (!tenant) return 0;
  uv_mutex_lock(&st->cutmu);
  bool any = false;
  if (what == MC_USER) { /* the user's marks are spread over the tenant's groups */
    for (size_t i = 0, n = atomic_load(&st->nmcut); i < n && !any; i++)
      any = !strcmp(st->mcut[i].tenant, tenant) && !strcmp(st->mcut[i].uid, id);
  } else {
    any = mc_any(st, tenant, what == MC_TENANT ? NULL : id);
  }
  uv_mutex_unlock(&st->cutmu);
  if (!any) return 0;
  size_t nu = what == MC_USERS_OF_GROUP ? ev->nadded + ev->nremoved : 0;
  return mc_end_after(t, what, tenant, id, ev, nu, what == MC_USERS_OF_GROUP && ev->via && !strcmp(ev->via, "put"));
}

int st_dir_membership_cut_end(st_txn *t, const char *tenant, const char *gid, const char *uid) {
  if (!t || !t->write || !tenant || !gid || !uid || !st_dir_valid_id(gid) || !st_dir_valid_id(uid)) return ST_EINVAL;
  st_store *st = t->st;
  if (atomic_load(&st->nmcut) == 0) return 0;
  uv_mutex_lock(&st->cutmu);
  bool any = mc_has(st, tenant, gid, uid);
  uv_mutex_unlock(&st->cutmu);
  if (!any) return 0;
  const char *const one[] = {uid};
  st_dir_event ev = {.tenant = tenant, .id = gid, .added = one, .nadded = 1};
  return mc_end_after(t, MC_USERS_OF_GROUP, tenant, gid, &ev, 1, false);
}
