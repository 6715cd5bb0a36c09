/* store/url_query.c — a URL's query as secret material (url_query.h):
 * the shown form, and the real URL a write that sends it back means; the
 * authority's check and the origin logs may show.
 * Moved here from vault/connector_url.c (unchanged but for the length cap,
 * now the caller's) when the tenants' SIEM sink URLs came to need the
 * same: the store owns sealing, and both vault/ and audit/ include it. */
#include "store/url_query.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/seal.h"
#include "store/store.h"

/* One '&'-separated query component [p, p + n): its name (up to '=', or
 * none for a bare value) and whether it carries a value to hide. */
typedef struct qpart {
  const char *p;
  size_t n;
  size_t name_len; /* bytes before '=' */
  bool has_eq;
} qpart;

static qpart part_at(const char *p) {
  qpart q = {p, strcspn(p, "&"), 0, false};
  const char *eq = memchr(p, '=', q.n);
  q.has_eq = eq != NULL;
  q.name_len = eq ? (size_t)(eq - p) : 0;
  return q;
}

/* the value of a component (after '='; the whole of a bare one) */
static const char *value_of(const qpart *q, size_t *vl) {
  size_t off = q->has_eq ? q->name_len + 1 : 0;
  *vl = q->n - off;
  return q->p + off;
}

static bool is_mask(const char *v, size_t vl) {
  return (vl == ST_URL_MASK_LEN && !memcmp(v, ST_URL_MASK, vl)) ||
         (vl == sizeof ST_URL_MASK_PCT - 1 && !strncasecmp(v, ST_URL_MASK_PCT, vl));
}

/* same name (or both bare) */
static bool same_key(const qpart *a, const qpart *b) {
  return a->has_eq == b->has_eq && a->name_len == b->name_len && !memcmp(a->p, b->p, a->name_len);
}

char *st_url_shown(const char *url) {
  if (!url) return NULL;
  const char *q = strchr(url, '?');
  size_t n = strlen(url);
  /* at most 3 bytes ("…") per value byte, plus the separators */
  char *out = malloc(3 * n + 4);
  if (!out) return NULL;
  if (!q) {
    memcpy(out, url, n + 1);
    return out;
  }
  size_t o = (size_t)(q + 1 - url);
  memcpy(out, url, o);
  for (const char *p = q + 1;;) {
    qpart c = part_at(p);
    size_t vl;
    value_of(&c, &vl);
    size_t keep = c.has_eq ? c.name_len + 1 : 0;
    memcpy(out + o, c.p, keep);
    o += keep;
    if (vl) {
      memcpy(out + o, ST_URL_MASK, ST_URL_MASK_LEN);
      o += ST_URL_MASK_LEN;
    }
    p += c.n;
    if (!*p) break;
    out[o++] = *p++; /* '&' */
  }
  out[o] = 0;
  return out;
}

int st_url_has_secret(const char *url) {
  char *s = st_url_shown(url);
  int r = s ? strcmp(s, url) != 0 : 1; /* out of memory: fail closed */
  free(s);
  return r;
}

int st_url_keep_masked(const char *url, const char *stored, size_t max, char **out) {
  *out = NULL;
  const char *q = strchr(url, '?');
  bool masked = false;
  for (const char *p = q ? q + 1 : NULL; p;) {
    qpart c = part_at(p);
    size_t vl;
    const char *v = value_of(&c, &vl);
    if (is_mask(v, vl)) masked = true;
    p = p[c.n] ? p + c.n + 1 : NULL;
  }
  if (!masked) return (*out = strdup(url)) ? 0 : ST_ENOMEM;
  /* the stored values stay at the server they were given for */
  const char *sq = stored ? strchr(stored, '?') : NULL;
  if (!sq || (size_t)(sq - stored) != (size_t)(q - url) || memcmp(stored, url, (size_t)(q - url)))
    return ST_EMASKED;
  size_t cap = strlen(url) + strlen(stored) + 1;
  char *r = malloc(cap);
  if (!r) return ST_ENOMEM;
  size_t o = (size_t)(q + 1 - url);
  memcpy(r, url, o);
  for (const char *p = q + 1;;) {
    qpart c = part_at(p);
    size_t vl;
    const char *v = value_of(&c, &vl);
    if (!is_mask(v, vl)) {
      memcpy(r + o, c.p, c.n);
      o += c.n;
    } else {
      /* the stored component of the same name, by its rank among them */
      size_t rank = 0;
      for (const char *b = q + 1; b < c.p; b += part_at(b).n + 1) {
        qpart e = part_at(b);
        if (same_key(&e, &c)) rank++;
      }
      const qpart *hit = NULL;
      qpart s;
      for (const char *b = sq + 1;; b += s.n + 1) {
        s = part_at(b);
        if (same_key(&s, &c) && rank-- == 0) {
          hit = &s;
          break;
        }
        if (!b[s.n]) break;
      }
      size_t svl = 0;
      const char *sv = hit ? value_of(hit, &svl) : NULL;
      if (!hit || !svl || is_mask(sv, svl)) {
        r[o] = 0;
        st_secret_str_free(r); /* it may hold kept values: wiped */
        return ST_EMASKED;
      }
      memcpy(r + o, hit->p, hit->n);
      o += hit->n;
    }
    p += c.n;
    if (!*p) break;
    r[o++] = *p++;
  }
  r[o] = 0;
  if (o > max) { /* kept values may make it longer than any URL given */
    st_secret_str_free(r);
    return ST_EMASKED;
  }
  *out = r;
  return 0;
}

/* ---- the authority ------------------------------------------------------------ */

static size_t scheme_len(const char *u) {
  return !strncasecmp(u, "https://", 8) ? 8 : !strncasecmp(u, "http://", 7) ? 7 : 0;
}

/* host[:port] in [a, a + n): a non-empty host (a bracketed IPv6 literal, or
 * no ':' '@' '[' ']'), then nothing or ':' and 1 to 5 digits up to 65535. */
static bool host_port_ok(const char *a, size_t n) {
  size_t h;
  if (n && a[0] == '[') {
    const char *rb = memchr(a, ']', n);
    if (!rb || rb == a + 1) return false;
    h = (size_t)(rb - a) + 1;
  } else {
    h = 0;
    while (h < n && a[h] != ':') {
      if (a[h] == '@' || a[h] == '[' || a[h] == ']') return false;
      h++;
    }
    if (!h) return false;
  }
  if (h == n) return true;
  if (a[h] != ':' || n - h < 2 || n - h > 6) return false;
  unsigned long port = 0;
  for (size_t i = h + 1; i < n; i++) {
    if (a[i] < '0' || a[i] > '9') return false;
    port = port * 10 + (unsigned long)(a[i] - '0');
  }
  return port > 0 && port <= 65535;
}

int st_url_authority_check(const char *url, char *why, size_t whylen) {
  size_t sl = url ? scheme_len(url) : 0;
  if (!sl) {
    if (whylen) snprintf(why, whylen, "an http:// or https:// URL is needed");
    return -1;
  }
  const char *a = url + sl;
  if (memchr(a, '@', strcspn(a, "/"))) {
    if (whylen)
      snprintf(why, whylen,
               "the URL must not carry user information (user:password@host, or an '@' before the first '/'): "
               "a credential there would be sent and shown in clear");
    return -1;
  }
  if (!host_port_ok(a, strcspn(a, "/?#"))) {
    if (whylen) snprintf(why, whylen, "the URL's host[:port] is malformed (a port is 1 to 65535, in digits)");
    return -1;
  }
  return 0;
}

void st_url_origin(const char *url, char *out, size_t cap) {
  if (!cap) return;
  size_t sl = url ? scheme_len(url) : 0;
  if (!sl) {
    snprintf(out, cap, "(withheld)");
    return;
  }
  const char *a = url + sl, *host = a;
  size_t before_slash = strcspn(a, "/"), authority = strcspn(a, "/?#"), n = authority;
  const char *at = NULL; /* the last '@' before the first '/' */
  for (size_t i = 0; i < before_slash; i++)
    if (a[i] == '@') at = a + i;
  if (at && at < a + authority) { /* user:password@host: the host only */
    host = at + 1;
    n = authority - (size_t)(host - a);
  }
  /* an '@' past a '?' or '#' (user:pa?ss@host): what precedes may be a
   * password; a host[:port] that is not one may be part of one */
  if ((at && at >= a + authority) || !host_port_ok(host, n)) {
    snprintf(out, cap, "%.*s(withheld)", (int)sl, url);
    return;
  }
  snprintf(out, cap, "%.*s%.*s", (int)sl, url, (int)n, host);
}
