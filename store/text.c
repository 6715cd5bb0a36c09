/* store/text.c — code points that hide or reorder text (store/text.h). */
#include "store/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* st_fold_tab: {code point, its simple case folding}, ascending; generated
 * from Debian's CaseFolding.txt by store/casefold.awk (Makefile) */
#include "store/casefold.inc"

/* Sorted, inclusive (store/text.h says which). */
static const struct {
  unsigned lo, hi;
} hidden_ranges[] = {
    {0x80, 0x9F},       {0xAD, 0xAD},       {0x34F, 0x34F},     {0x600, 0x605},     {0x61C, 0x61C},
    {0x6DD, 0x6DD},     {0x70F, 0x70F},     {0x890, 0x891},     {0x8E2, 0x8E2},     {0x115F, 0x1160},
    {0x17B4, 0x17B5},   {0x180B, 0x180F},   {0x200B, 0x200F},   {0x2028, 0x202E},   {0x2060, 0x206F},
    {0x3164, 0x3164},   {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF},   {0xFFA0, 0xFFA0},   {0xFFF0, 0xFFFB},
    {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
    {0xE0000, 0xE0FFF},
};

/* The code point of the 2-, 3- or 4-byte sequence at s (its length in
 * *len), or 0: also for an overlong form, a surrogate or past U+10FFFF,
 * which are no UTF-8 (found by review: the fold took "A" written in two
 * bytes for an "A", and a URL path's name matched a user's). */
static unsigned utf8_at(const unsigned char *s, size_t n, size_t *len) {
  unsigned cp = 0;
  if (n >= 2 && (s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu), *len = 2;
    if (cp < 0x80) cp = 0;
  } else if (n >= 3 && (s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu), *len = 3;
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0;
  } else if (n >= 4 && (s[0] & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
             (s[3] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu), *len = 4;
    if (cp < 0x10000 || cp > 0x10FFFF) cp = 0;
  }
  return cp;
}

unsigned st_text_hidden_at(const unsigned char *s, size_t n, size_t *len) {
  unsigned cp = utf8_at(s, n, len);
  for (size_t i = 0; cp && i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
    if (cp >= hidden_ranges[i].lo && cp <= hidden_ranges[i].hi) return cp;
  return 0;
}

bool st_text_reorders(unsigned cp) {
  return cp == 0x61C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

char *st_text_shown(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(3 * n + 1); /* at most 3 bytes a byte: 2 bytes become \uXXXX, 4 \u{XXXXX} */
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    size_t hl = 0;
    unsigned cp = (unsigned char)s[i] >= 0xC0 ? st_text_hidden_at((const unsigned char *)s + i, n - i, &hl) : 0;
    if (cp) {
      o += (size_t)sprintf(out + o, cp > 0xFFFF ? "\\u{%x}" : "\\u%04x", cp);
      i += hl - 1;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = 0;
  return out;
}

/* ---- case folding ---- */

static unsigned fold_cp(unsigned cp) {
  size_t lo = 0, hi = sizeof st_fold_tab / sizeof st_fold_tab[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (st_fold_tab[mid][0] == cp) return st_fold_tab[mid][1];
    if (st_fold_tab[mid][0] < cp) lo = mid + 1;
    else hi = mid;
  }
  return cp;
}

static size_t utf8_put(unsigned cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t st_text_fold(const char *s, size_t n, char *out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x80) {
      out[o++] = (char)(u[i] >= 'A' && u[i] <= 'Z' ? u[i] + 32 : u[i]);
      i++;
      continue;
    }
    size_t len = 0;
    unsigned cp = utf8_at(u + i, n - i, &len);
    unsigned f = cp ? fold_cp(cp) : 0;
    if (!cp || f == cp) { /* not a sequence, or nothing to fold: as it is */
      size_t k = cp ? len : 1;
      memcpy(out + o, u + i, k);
      o += k;
      i += k;
    } else {
      o += utf8_put(f, out + o);
      i += len;
    }
  }
  out[o] = 0;
  return o;
}

char *st_text_fold_dup(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(ST_TEXT_FOLD_MAX(n));
  if (out) st_text_fold(s, n, out);
  return out;
}

bool st_text_fold_eq(const char *a, const char *b) {
  char sa[256], sb[256];
  size_t na = strlen(a), nb = strlen(b);
  char *fa = ST_TEXT_FOLD_MAX(na) <= sizeof sa ? sa : malloc(ST_TEXT_FOLD_MAX(na));
  char *fb = ST_TEXT_FOLD_MAX(nb) <= sizeof sb ? sb : malloc(ST_TEXT_FOLD_MAX(nb));
  bool eq;
  if (fa && fb) {
    size_t la = st_text_fold(a, na, fa), lb = st_text_fold(b, nb, fb);
    eq = la == lb && memcmp(fa, fb, la) == 0;
  } else {
    eq = strcasecmp(a, b) == 0;
  }
  if (fa != sa) free(fa);
  if (fb != sb) free(fb);
  return eq;
}

const char *st_text_fold_version(void) { return ST_TEXT_FOLD_UNICODE; }
