/* web/web.c — lookups in the embedded table and the template renderer.
 *
 * Rules this file keeps, and why:
 *  - A lookup is an exact string match against the table that web/embed.c
 *    generated ($(BUILD)/web/assets.c, sorted by path): no file system, so
 *    no path traversal, whatever the request path was.
 *  - web_render measures, then writes: the first pass sizes the output (and
 *    stops at WEB_RENDER_MAX), the second fills one exact allocation. No
 *    growing buffer, and nothing is half-written on failure.
 *  - Substituted values are escaped and never scanned again, so a value
 *    holding "{{x}}" stays literal text. */
#include "web/web.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* $(BUILD)/web/assets.c */
extern const web_asset web__assets[];
extern const size_t web__nassets;

#define NAME_MAX_LEN 32

const web_asset *web_asset_get(const char *path) {
  if (!path) return NULL;
  size_t lo = 0, hi = web__nassets;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(path, web__assets[mid].path);
    if (c == 0) return &web__assets[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const web_asset *web_asset_at(size_t i) { return i < web__nassets ? &web__assets[i] : NULL; }

static int name_char(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

/* The length of the placeholder's name at s (just past "{{") when a valid
 * name and "}}" follow within the n bytes left, else 0. */
static size_t placeholder(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n && i < NAME_MAX_LEN && name_char(s[i])) i++;
  if (i == 0 || i + 2 > n || s[i] != '}' || s[i + 1] != '}') return 0;
  return i;
}

static const char *lookup(const char *const *kv, const unsigned char *name, size_t n) {
  for (; kv && kv[0]; kv += 2)
    if (strlen(kv[0]) == n && memcmp(kv[0], name, n) == 0) return kv[1] ? kv[1] : "";
  return "";
}

static const char *escape(unsigned char c) {
  switch (c) {
  case '&': return "&amp;";
  case '<': return "&lt;";
  case '>': return "&gt;";
  case '"': return "&quot;";
  case '\'': return "&#39;";
  }
  return NULL;
}

/* One pass over the template: with dst NULL only counts. Returns the
 * output length, or WEB_RENDER_MAX + 1 as soon as it would pass the cap. */
static size_t expand(const web_asset *t, const char *const *kv, char *dst) {
  size_t o = 0;
#define PUT(p, n)                                                                                                      \
  do {                                                                                                                 \
    size_t put_n = (n);                                                                                                \
    if (put_n > WEB_RENDER_MAX - o) return WEB_RENDER_MAX + 1;                                                         \
    if (dst) memcpy(dst + o, (p), put_n);                                                                              \
    o += put_n;                                                                                                        \
  } while (0)
  const unsigned char *s = t->data, *end = t->data + t->len;
  while (s < end) {
    const unsigned char *open = NULL;
    for (const unsigned char *p = s; p + 1 < end; p++)
      if (p[0] == '{' && p[1] == '{') {
        open = p;
        break;
      }
    if (!open) {
      PUT(s, (size_t)(end - s));
      break;
    }
    PUT(s, (size_t)(open - s));
    size_t n = placeholder(open + 2, (size_t)(end - open - 2));
    if (n == 0) {
      PUT(open, 2);
      s = open + 2;
      continue;
    }
    for (const unsigned char *v = (const unsigned char *)lookup(kv, open + 2, n); *v; v++) {
      const char *e = escape(*v);
      if (e)
        PUT(e, strlen(e));
      else
        PUT(v, 1);
    }
    s = open + 2 + n + 2;
  }
#undef PUT
  return o;
}

int web_render(const char *tmpl_path, const char *const *kv, char **out, size_t *outlen) {
  if (out) *out = NULL;
  if (!tmpl_path || !out || !outlen) return -EINVAL;
  const web_asset *t = web_asset_get(tmpl_path);
  if (!t) return -ENOENT;
  size_t n = expand(t, kv, NULL);
  if (n > WEB_RENDER_MAX) return -E2BIG;
  char *buf = malloc(n + 1);
  if (!buf) return -ENOMEM;
  expand(t, kv, buf);
  buf[n] = 0;
  *out = buf;
  *outlen = n;
  return 0;
}

const char *web_strerror(int code) {
  switch (code) {
  case 0: return "ok";
  case -ENOENT: return "no such embedded template";
  case -E2BIG: return "rendered page over the size cap";
  case -ENOMEM: return "out of memory";
  case -EINVAL: return "invalid argument";
  }
  return "unknown web error";
}
