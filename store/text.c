/* store/text.c — code points that hide or reorder text (store/text.h). */
#include "store/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

unsigned st_text_hidden_at(const unsigned char *s, size_t n, size_t *len) {
  unsigned cp = 0;
  if (n >= 2 && (s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu), *len = 2;
  } else if (n >= 3 && (s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu), *len = 3;
  } else if (n >= 4 && (s[0] & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
             (s[3] & 0xC0) == 0x80) {
    cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu), *len = 4;
  }
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
