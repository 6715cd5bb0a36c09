/* gateway/base/buf.c — see buf.h. */
#include "gateway/base/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_buf_init(gw_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

static int grow(gw_buf *b, size_t need) {
  if (need + 1 <= b->cap) return 0;
  if (need > b->max) return GW_E2BIG;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < need + 1) ncap *= 2;
  if (ncap > b->max + 1) ncap = b->max + 1;
  char *p = realloc(b->data, ncap);
  if (!p) return -ENOMEM;
  b->data = p;
  b->cap = ncap;
  return 0;
}

int gw_buf_append(gw_buf *b, const void *data, size_t n) {
  if (n > b->max - b->len) return GW_E2BIG;
  int rc = grow(b, b->len + n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, data, n);
  b->len += n;
  b->data[b->len] = 0;
  return 0;
}

int gw_buf_appends(gw_buf *b, const char *s) { return gw_buf_append(b, s, strlen(s)); }

int gw_buf_reserve(gw_buf *b, size_t n) { return grow(b, n); }

int gw_buf_append_int(gw_buf *b, long long v) {
  char t[24];
  return gw_buf_append(b, t, gw_itoa(v, t));
}

int gw_buf_appendv(gw_buf *b, ...) {
  va_list ap;
  va_start(ap, b);
  int rc = 0;
  for (const char *s; rc == 0 && (s = va_arg(ap, const char *)) != NULL;) rc = gw_buf_appends(b, s);
  va_end(ap);
  return rc;
}

size_t gw_strlcpy(char *dst, const char *src, size_t size) {
  if (!size) return 0;
  size_t n = strnlen(src, size - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
  return n;
}

size_t gw_strjoin(char *dst, size_t size, ...) {
  if (!size) return 0;
  va_list ap;
  va_start(ap, size);
  size_t len = 0;
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;) len += gw_strlcpy(dst + len, s, size - len);
  va_end(ap);
  dst[len] = '\0';
  return len;
}

size_t gw_utoa(unsigned long long v, char *out) {
  char t[24];
  size_t i = sizeof t;
  do {
    t[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  memcpy(out, t + i, sizeof t - i);
  out[sizeof t - i] = '\0';
  return sizeof t - i;
}

size_t gw_itoa(long long v, char *out) {
  size_t n = 0;
  if (v < 0) out[n++] = '-';
  return n + gw_utoa(v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, out + n);
}

void gw_hex16(unsigned long long v, char out[17]) {
  static const char d[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, v >>= 4) out[i] = d[v & 15];
  out[16] = '\0';
}

int gw_buf_printf(gw_buf *b, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return -EINVAL;
  if ((size_t)n < sizeof small) return gw_buf_append(b, small, (size_t)n);
  char *big = malloc((size_t)n + 1);
  if (!big) return -ENOMEM;
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  int rc = gw_buf_append(b, big, (size_t)n);
  free(big);
  return rc;
}

void gw_buf_reset(gw_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = 0;
}

void gw_buf_free(gw_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *gw_buf_take(gw_buf *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}
