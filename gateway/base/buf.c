/* gateway/base/buf.c — see buf.h. */
#include "gateway/base/buf.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void gw_buf_init(gw_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
  b->meter = NULL;
}

/* ---- meters ---- */

void gw_buf_meter_attach(gw_buf *b, gw_buf_meter *m) { b->meter = m; }

long long gw_buf_meter_used(const gw_buf_meter *m) {
  return atomic_load_explicit(&((gw_buf_meter *)m)->used, memory_order_relaxed);
}

static size_t charged(size_t cap) { return cap > GW_BUF_METER_FREE ? cap - GW_BUF_METER_FREE : 0; }

static void uncharge(gw_buf_meter *m, long long d, const gw_buf_meter *upto) {
  for (; m && m != upto; m = m->parent) atomic_fetch_sub_explicit(&m->used, d, memory_order_relaxed);
}

/* d more bytes on every meter of the chain, or none (false: one is at its
 * limit). */
static bool charge(gw_buf_meter *m0, long long d) {
  for (gw_buf_meter *m = m0; m; m = m->parent) {
    long long lim = m->max;
    if (m->late_max && m->parent && m->parent->max &&
        atomic_load_explicit(&m->parent->used, memory_order_relaxed) * 2 >= m->parent->max)
      lim = m->late_max;
    long long now = atomic_fetch_add_explicit(&m->used, d, memory_order_relaxed) + d;
    if (lim && now > lim) {
      uncharge(m0, d, m->parent); /* this one and those below it */
      return false;
    }
  }
  return true;
}

bool gw_buf_meter_charge(gw_buf_meter *m, long long n) { return !m || n <= 0 || charge(m, n); }
void gw_buf_meter_uncharge(gw_buf_meter *m, long long n) {
  if (m && n > 0) uncharge(m, n, NULL);
}

static int grow(gw_buf *b, size_t need) {
  if (need + 1 <= b->cap) return 0;
  if (need > b->max) return GW_E2BIG;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < need + 1) ncap *= 2;
  if (ncap > b->max + 1) ncap = b->max + 1;
  long long d = (long long)(charged(ncap) - charged(b->cap));
  if (d && b->meter && !charge(b->meter, d)) return GW_EBUDGET;
  char *p = realloc(b->data, ncap);
  if (!p) {
    if (d && b->meter) uncharge(b->meter, d, NULL);
    return -ENOMEM;
  }
  b->data = p;
  b->cap = ncap;
  return 0;
}

int gw_buf_append(gw_buf *b, const void *data, size_t n) {
  if (n > b->max - b->len) return GW_E2BIG;
  int rc = b->len + n + 1 <= b->cap ? 0 : grow(b, b->len + n); /* the common case: room already */
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
  /* two digits per division (times, lengths and ids are written on every
   * request), from the back of a scratch copied once */
  static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                              "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                              "8081828384858687888990919293949596979899";
  char t[24];
  size_t i = sizeof t;
  while (v >= 100) {
    unsigned d = (unsigned)(v % 100);
    v /= 100;
    i -= 2;
    memcpy(t + i, pairs + 2 * d, 2);
  }
  if (v >= 10) {
    i -= 2;
    memcpy(t + i, pairs + 2 * v, 2);
  } else {
    t[--i] = (char)('0' + v);
  }
  size_t n = sizeof t - i;
  memcpy(out, t + i, n);
  out[n] = '\0';
  return n;
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

/* What b's capacity charged its meter, given back (b is being emptied). */
static void give_back(gw_buf *b) {
  if (b->meter && charged(b->cap)) uncharge(b->meter, (long long)charged(b->cap), NULL);
}

void gw_buf_free(gw_buf *b) {
  give_back(b);
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *gw_buf_take(gw_buf *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  give_back(b);
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

const char *gw_memmem(const void *hv, size_t n, const void *nv, size_t k) {
  const char *h = hv, *nd = nv;
  if (k == 0) return h;
  if (k > n) return NULL;
  if (k == 1) return memchr(h, nd[0], n);
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i f = _mm_set1_epi8(nd[0]), l = _mm_set1_epi8(nd[k - 1]);
  /* both loads stay inside h: the second ends at i + k - 1 + 16 <= n */
  for (; i + k - 1 + 16 <= n; i += 16) {
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(h + i));
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(h + i + k - 1));
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, f), _mm_cmpeq_epi8(b, l)));
    for (; m; m &= m - 1) {
      size_t j = i + (size_t)__builtin_ctz(m);
      if (!memcmp(h + j + 1, nd + 1, k - 2)) return h + j;
    }
  }
#endif
  for (; i + k <= n; i++) /* the tail (or everything without SSE2) */
    if (h[i] == nd[0] && h[i + k - 1] == nd[k - 1] && !memcmp(h + i + 1, nd + 1, k - 2)) return h + i;
  return NULL;
}
