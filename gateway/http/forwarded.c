/* gateway/http/forwarded.c — trusted proxies (see forwarded.h). Moved out of
 * core/server.c (the list) and http.c (the walk) so the HTTP layer judges
 * X-Forwarded-* without knowing the process: core parses the list once at
 * start and answers the host's trusted() with gw_trusted_has. */
#include "gateway/http/forwarded.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/cidr.h"

struct gw_trusted {
  gw_cidr *cidrs;
  int n;
};

int gw_trusted_parse(const char *list, gw_trusted **out) {
  *out = NULL;
  gw_trusted *t = calloc(1, sizeof *t);
  if (!t) return -ENOMEM;
  int cap = 0, rc = 0;
  for (const char *p = list ? list : ""; *p;) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    size_t n = strcspn(p, ", ");
    if (t->n == cap) {
      cap = cap ? cap * 2 : 4;
      gw_cidr *nc = realloc(t->cidrs, (size_t)cap * sizeof *nc);
      if (!nc) {
        rc = -ENOMEM;
        goto fail;
      }
      t->cidrs = nc;
    }
    if (gw_cidr_parse(p, n, &t->cidrs[t->n]) != 0) {
      rc = -EINVAL;
      goto fail;
    }
    t->n++;
    p += n;
  }
  *out = t;
  return 0;
fail:
  gw_trusted_free(t);
  return rc;
}

void gw_trusted_free(gw_trusted *t) {
  if (!t) return;
  free(t->cidrs);
  free(t);
}

bool gw_trusted_has(const gw_trusted *t, const char *ip) {
  if (!t || !t->n) return false;
  unsigned char a[16], a4[16] = {0};
  int fam;
  if (gw_ip_parse(ip, a, &fam) != 0) return false;
  /* on a dual-stack listener ([::]) an IPv4 peer is ::ffff:a.b.c.d: the
   * proxy listed as a.b.c.d is that peer (found by review: its headers were
   * ignored, and everyone behind it shared its address's limits) */
  bool v4 = fam == 6 && gw_ip_v4_mapped(a);
  if (v4) memcpy(a4, a + 12, 4);
  for (int i = 0; i < t->n; i++)
    if (gw_cidr_match(&t->cidrs[i], fam, a) || (v4 && gw_cidr_match(&t->cidrs[i], 4, a4))) return true;
  return false;
}

void gw_forwarded_client(const char *const *vals, int n, bool (*trusted)(void *ctx, const char *ip), void *ctx,
                         char *client, size_t cap) {
  /* Walk from the right, over every header from the last: the first
   * address not ours is the client. No copy of the whole value: a long one
   * must not lose its right end (the hops our proxies wrote). */
  for (int h = n - 1; h >= 0; h--) {
    const char *v = vals[h];
    const char *end = v + strlen(v);
    while (end > v) {
      const char *start = end;
      while (start > v && start[-1] != ',') start--;
      const char *s = start, *e = end;
      while (s < e && (*s == ' ' || *s == '\t')) s++;
      while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
      if (e > s) {
        /* an entry longer than any address text is no address: the client
         * (cut to cap), and never one of ours */
        char one[64];
        size_t l = (size_t)(e - s);
        bool fits = l < sizeof one;
        snprintf(client, cap, "%.*s", (int)(l < cap - 1 ? l : cap - 1), s);
        if (!fits) return;
        memcpy(one, s, l);
        one[l] = 0;
        if (!trusted(ctx, one)) return;
      }
      end = start > v ? start - 1 : v;
    }
  }
}
