/* gateway/http/router.c — the URL contract of DESIGN.md as a lookup table
 * that modules fill in (see router.h). Knows no module.
 *
 * Cost: it runs on every request. A handful of patterns, each with its
 * literal head precomputed (rejected with one memcmp), then a single pass
 * over pattern and path; no allocation. */
#include "gateway/http/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct rt_entry {
  char *pattern;
  size_t plen;
  size_t lit; /* bytes of literal head before the first "{}" or "/..." */
  gw_route route;
  unsigned flags;
} rt_entry;

struct gw_router {
  rt_entry *e;
  int n, cap;
  bool private_split;
};

static const char *const class_names[GW_RC_COUNT] = {"health", "metrics", "admin", "scim",
                                                    "mcp",    "oauth",   "web",   "other"};

const char *gw_route_class_name(int rclass) {
  return rclass >= 0 && rclass < GW_RC_COUNT ? class_names[rclass] : "other";
}

int gw_router_new(bool private_split, gw_router **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return -ENOMEM;
  (*out)->private_split = private_split;
  return 0;
}

void gw_router_free(gw_router *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) free(r->e[i].pattern);
  free(r->e);
  free(r);
}

int gw_router_add(gw_router *r, const char *pattern, const gw_route *route, unsigned flags) {
  size_t plen = strlen(pattern);
  if (!plen || pattern[0] != '/') return -EINVAL;
  const char *rest = strstr(pattern, "/...");
  if (rest && rest != pattern + plen - 4) return -EINVAL;
  if (r->n == r->cap) {
    int cap = r->cap ? r->cap * 2 : 8;
    rt_entry *ne = realloc(r->e, (size_t)cap * sizeof *ne);
    if (!ne) return -ENOMEM;
    r->e = ne;
    r->cap = cap;
  }
  rt_entry *e = &r->e[r->n];
  if (!(e->pattern = strdup(pattern))) return -ENOMEM;
  e->plen = plen;
  const char *one = strstr(pattern, "{}");
  size_t lit = plen;
  if (one) lit = (size_t)(one - pattern);
  if (rest && (size_t)(rest - pattern) < lit) lit = (size_t)(rest - pattern);
  e->lit = lit;
  e->route = *route;
  e->flags = flags;
  r->n++;
  return 0;
}

static bool match(const rt_entry *e, const char *path, size_t n) {
  if (n < e->lit || memcmp(path, e->pattern, e->lit) != 0) return false;
  const char *p = e->pattern;
  size_t i = e->lit, j = e->lit;
  while (i < e->plen) {
    if (p[i] == '{' && p[i + 1] == '}') {
      size_t k = j;
      while (k < n && path[k] != '/') k++;
      if (k == j) return false; /* an empty segment is no id */
      j = k;
      i += 2;
    } else if (i + 4 == e->plen && memcmp(p + i, "/...", 4) == 0) {
      return j == n || path[j] == '/';
    } else {
      if (j >= n || path[j] != p[i]) return false;
      i++;
      j++;
    }
  }
  return j == n;
}

const gw_route *gw_router_find(const gw_router *r, int kind, const char *path, size_t n) {
  for (int i = 0; i < r->n; i++) {
    const rt_entry *e = &r->e[i];
    if (!match(e, path, n)) continue;
    if ((e->flags & GW_ROUTE_PRIVATE) && r->private_split && kind != GW_LISTENER_ADMIN) return NULL;
    return &e->route;
  }
  return NULL;
}

int gw_route_allows(const gw_route *r, const char *method) {
  if (!r->allow) return 1;
  size_t ml = strlen(method);
  const char *p = r->allow;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ", ");
    if (n == ml && strncmp(p, method, n) == 0) return 1;
    p += n;
  }
  return 0;
}
