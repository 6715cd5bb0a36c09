/* gateway/base/json_check.c — a validating JSON scan (see json_check.h).
 *
 * Rules this file keeps: one pass, no allocation, an explicit stack of
 * container kinds (so hostile nesting costs no C stack), and every rule
 * follows jansson 2.14's decoder (load.c), not a reading of RFC 8259 where
 * the two differ: integers that do not fit 64 bits and reals that overflow
 * are refused, as jansson refuses them. */
#include "gateway/base/json_check.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct scan {
  const unsigned char *p, *end;
} scan;

static inline void ws(scan *s) {
  if (s->p < s->end && *s->p > ' ') return; /* compact JSON: no whitespace at all */
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* Bytes a string's common run may hold: printable ASCII (0x20-0x7F)
 * other than '"' and '\\' — one bit per byte value. */
static const uint64_t plain_bits[4] = {0xFFFFFFFB00000000ULL, 0xFFFFFFFFEFFFFFFFULL, 0, 0};
#define PLAIN(c) ((plain_bits[(c) >> 6] >> ((c) & 63)) & 1)

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The first byte of the 8 at q that is not plain, as a byte index; 8 when
 * all are. Each test flags a byte exactly or flags it above an exact one
 * (a borrow carries only past a byte that is itself flagged), so the
 * lowest flag of their union is exact. */
static inline unsigned first_special8(const unsigned char *q) {
  uint64_t x, qt, bs;
  memcpy(&x, q, 8);
  qt = x ^ (ONES * '"');
  bs = x ^ (ONES * '\\');
  uint64_t m = ((x - ONES * 0x20) & ~x) | x | ((qt - ONES) & ~qt) | ((bs - ONES) & ~bs);
  m &= HIGHS;
  return m ? (unsigned)__builtin_ctzll(m) >> 3 : 8;
}

static int hex4(const unsigned char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

/* One UTF-8 sequence starting at s->p (first byte >= 0x80), as jansson's
 * utf8_check_first/utf8_check_full: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
static bool utf8(scan *s) {
  unsigned c = *s->p;
  int n;
  uint32_t v;
  if (c >= 0xC2 && c <= 0xDF) n = 1, v = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 2, v = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 3, v = c & 0x07;
  else return false;
  if (s->end - s->p <= n) return false;
  for (int i = 1; i <= n; i++) {
    unsigned b = s->p[i];
    if ((b & 0xC0) != 0x80) return false;
    v = (v << 6) | (b & 0x3F);
  }
  if ((n == 2 && v < 0x800) || (n == 3 && v < 0x10000) || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    return false;
  s->p += n + 1;
  return true;
}

static bool string(scan *s) {
  s->p++; /* the opening quote */
  while (s->p < s->end) {
    /* the common run first: printable ASCII other than '"' and '\\',
     * eight bytes at a time while eight remain */
    const unsigned char *q = s->p;
    for (unsigned k = 8; k == 8 && s->end - q >= 8; q += k) k = first_special8(q);
    if (s->end - q < 8)
      while (q < s->end && PLAIN(*q)) q++;
    s->p = q;
    if (q == s->end) break;
    unsigned c = *s->p;
    if (c == '"') {
      s->p++;
      return true;
    }
    if (c < 0x20) return false;
    if (c >= 0x80) {
      if (!utf8(s)) return false;
      continue;
    }
    if (c != '\\') {
      s->p++;
      continue;
    }
    if (s->end - s->p < 2) return false;
    c = s->p[1];
    if (c != 'u') {
      if (!strchr("\"\\/bfnrt", (int)c) || !c) return false;
      s->p += 2;
      continue;
    }
    if (s->end - s->p < 6) return false;
    int v = hex4(s->p + 2);
    if (v < 0 || v == 0) return false; /* \u0000: refused without JSON_ALLOW_NUL */
    s->p += 6;
    if (v >= 0xDC00 && v <= 0xDFFF) return false; /* a lone low surrogate */
    if (v >= 0xD800 && v <= 0xDBFF) {            /* must pair with a low one */
      if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u') return false;
      int lo = hex4(s->p + 2);
      if (lo < 0xDC00 || lo > 0xDFFF) return false;
      s->p += 6;
    }
  }
  return false;
}

static bool digits(scan *s) {
  const unsigned char *b = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
  return s->p > b;
}

static bool number(scan *s) {
  const unsigned char *b = s->p;
  bool neg = false, real = false;
  if (*s->p == '-') {
    neg = true;
    s->p++;
  }
  if (s->p >= s->end) return false;
  if (*s->p == '0') {
    s->p++;
    if (s->p < s->end && *s->p >= '0' && *s->p <= '9') return false; /* leading zero */
  } else if (!digits(s)) {
    return false;
  }
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    real = true;
    if (!digits(s)) return false;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    real = true;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
    if (!digits(s)) return false;
  }
  size_t len = (size_t)(s->p - b);
  if (!real) {
    /* within 64 bits: compare the digits with the limit's */
    const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
    size_t dl = len - (neg ? 1 : 0);
    const unsigned char *d = b + (neg ? 1 : 0);
    if (dl < 19) return true;
    if (dl > 19) return false;
    return memcmp(d, lim, 19) <= 0;
  }
  /* a real: jansson refuses one that overflows (strtod gives ±inf) */
  char tmp[128];
  char *heap = NULL, *t = tmp;
  if (len >= sizeof tmp) {
    if (!(heap = malloc(len + 1))) return false;
    t = heap;
  }
  memcpy(t, b, len);
  t[len] = '\0';
  errno = 0;
  double v = strtod(t, NULL);
  bool ok = !(errno == ERANGE && isinf(v)) && !isinf(v);
  free(heap);
  return ok;
}

static bool literal(scan *s, const char *w, size_t n) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return false;
  s->p += n;
  return true;
}

/* What gw_json_pick tracks beside the check. */
#define PICK_KEYS 128    /* keys of the open objects, all levels together */
#define PICK_OBJ_KEYS 32 /* keys of one object compared for duplicates */
#define PICK_PATHS 8     /* paths a pick looks for */

typedef struct pick {
  const char *const *paths;
  size_t npaths;
  /* each path split once (pick_value runs for every member read): the
   * first key's length, and the second key and its length (NULL: none) */
  struct {
    size_t n1, n2;
    const char *k2;
  } split[PICK_PATHS];
  gw_json_span *got;
  bool plain_names; /* gw_json_pick_request: names at levels 1-2 lower-case ASCII, or undecided */
  bool undecided;
  gw_json_span keys[PICK_KEYS];
  unsigned short kstart[MAX_DEPTH]; /* per open object: its first key */
  size_t nk;
  gw_json_span key1;              /* the member of the top object being read */
  unsigned k1paths;               /* the paths whose first key is key1 (bit i: paths[i]) */
  const unsigned char *vstart[3]; /* where the value at level 1 / 2 began */
} pick;

static bool span_is(gw_json_span k, const char *s, size_t n) {
  return k.n == n + 2 && memcmp(k.p + 1, s, n) == 0; /* k has its quotes */
}

/* A key just read (quotes included) in the object at level depth. false:
 * a duplicate (jansson refuses it). */
static bool pick_key(pick *pk, int depth, const unsigned char *b, const unsigned char *e) {
  gw_json_span k = {(const char *)b, (size_t)(e - b)};
  /* decoded keys may collide: jansson decides (an escape); and a member of
   * the top object or of one of its objects whose name is not plain
   * lower-case ASCII: a case-insensitive reader may take it for another
   * (gw_json_pick's -1, json_check.h). One pass over the name for both. */
  if (!pk->undecided) {
    bool names = pk->plain_names && depth <= 2;
    for (size_t i = 1; i + 1 < k.n; i++) {
      unsigned c = (unsigned char)k.p[i];
      if (c == '\\' || (names && ((c >= 'A' && c <= 'Z') || c >= 0x80))) {
        pk->undecided = true;
        break;
      }
    }
  }
  if (depth == 1) {
    pk->key1 = k;
    pk->k1paths = 0;
    for (size_t i = 0; i < pk->npaths; i++)
      if (span_is(k, pk->paths[i], pk->split[i].n1)) pk->k1paths |= 1u << i;
  }
  if (pk->undecided) return true;
  size_t from = pk->kstart[depth - 1];
  if (pk->nk - from >= PICK_OBJ_KEYS || pk->nk >= PICK_KEYS) {
    pk->undecided = true;
    return true;
  }
  for (size_t i = from; i < pk->nk; i++)
    if (pk->keys[i].n == k.n && !memcmp(pk->keys[i].p, k.p, k.n)) return false;
  pk->keys[pk->nk++] = k;
  return true;
}

/* The value at level depth (1: a member of the top object; 2: a member of
 * one of its members) spans [b, e): record it if a path names it. Only the
 * paths whose first key is the top member's are looked at. */
static void pick_value(pick *pk, int depth, const unsigned char *b, const unsigned char *e, gw_json_span key2) {
  for (unsigned m = pk->k1paths; m; m &= m - 1) {
    unsigned i = (unsigned)__builtin_ctz(m);
    const char *k2 = pk->split[i].k2;
    bool hit = depth == 1 ? !k2 : k2 && span_is(key2, k2, pk->split[i].n2);
    if (hit) pk->got[i] = (gw_json_span){(const char *)b, (size_t)(e - b)};
  }
}

static bool scan_text(const char *text, size_t n, pick *pk) {
  scan s = {(const unsigned char *)text, (const unsigned char *)text + n};
  unsigned char stack[MAX_DEPTH]; /* '{' or '[' per open container */
  int depth = 0;
  gw_json_span key2 = {0}; /* the last key read at level 2 */
  ws(&s);
  if (s.p >= s.end || (*s.p != '{' && *s.p != '[')) return false; /* the top is an object or an array */
  for (;;) {
    /* a value is expected here */
    ws(&s);
    if (s.p >= s.end) return false;
    if (depth + 1 > MAX_DEPTH) return false; /* this value's own depth */
    if (pk && (depth == 1 || depth == 2)) pk->vstart[depth] = s.p;
    unsigned c = *s.p;
    if (c == '{' || c == '[') {
      if (pk && c == '{') pk->kstart[depth] = (unsigned short)pk->nk;
      stack[depth++] = (unsigned char)c;
      s.p++;
      ws(&s);
      if (s.p < s.end && *s.p == (c == '{' ? '}' : ']')) {
        s.p++;
        depth--;
        goto after_value;
      }
      if (c == '{') goto key;
      continue;
    }
    if (c == '"') {
      if (!string(&s)) return false;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      if (!number(&s)) return false;
    } else if (!literal(&s, "true", 4) && !literal(&s, "false", 5) && !literal(&s, "null", 4)) {
      return false;
    }
  after_value:
    /* the value that just ended sits at level depth */
    if (pk && pk->k1paths && (depth == 1 || depth == 2) && stack[depth - 1] == '{' && (depth == 1 || stack[0] == '{'))
      pick_value(pk, depth, pk->vstart[depth], s.p, key2);
    ws(&s);
    if (depth == 0) return s.p == s.end;
    if (s.p >= s.end) return false;
    if (*s.p == ',') {
      s.p++;
      if (stack[depth - 1] == '{') goto key;
      continue;
    }
    if (*s.p != (stack[depth - 1] == '{' ? '}' : ']')) return false;
    s.p++;
    depth--;
    if (pk && stack[depth] == '{' && pk->nk > pk->kstart[depth]) pk->nk = pk->kstart[depth]; /* its keys */
    goto after_value;
  key:
    ws(&s);
    if (s.p >= s.end || *s.p != '"') return false;
    {
      const unsigned char *kb = s.p;
      if (!string(&s)) return false;
      if (pk) {
        if (!pick_key(pk, depth, kb, s.p)) return false;
        if (depth == 2) key2 = (gw_json_span){(const char *)kb, (size_t)(s.p - kb)};
      }
    }
    ws(&s);
    if (s.p >= s.end || *s.p != ':') return false;
    s.p++;
  }
}

bool gw_json_check(const char *text, size_t n) { return scan_text(text, n, NULL); }

static int pick_run(const char *text, size_t n, const char *const *paths, size_t npaths, gw_json_span *got,
                    bool plain_names) {
  pick pk; /* not zeroed: 6 KiB, and every slot is written before it is read */
  pk.plain_names = plain_names;
  pk.paths = paths;
  pk.npaths = npaths;
  pk.got = got;
  pk.undecided = false;
  pk.nk = 0;
  pk.key1 = (gw_json_span){0};
  pk.k1paths = 0;
  for (size_t i = 0; i < npaths; i++) got[i] = (gw_json_span){0};
  if (npaths > PICK_PATHS) return -1;
  for (size_t i = 0; i < npaths; i++) { /* short names: one walk each, no library calls */
    const char *q = paths[i], *k2;
    while (*q && *q != '.') q++;
    pk.split[i].n1 = (size_t)(q - paths[i]);
    pk.split[i].k2 = *q ? (k2 = ++q) : NULL;
    while (*q) q++;
    pk.split[i].n2 = pk.split[i].k2 ? (size_t)(q - pk.split[i].k2) : 0;
  }
  if (!scan_text(text, n, &pk)) return pk.undecided ? -1 : 0;
  const char *t = text;
  while (t < text + n && (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')) t++;
  if (pk.undecided || *t != '{') return -1;
  return 1;
}

int gw_json_pick(const char *text, size_t n, const char *const *paths, size_t npaths, gw_json_span *got) {
  return pick_run(text, n, paths, npaths, got, false);
}

int gw_json_pick_request(const char *text, size_t n, const char *const *paths, size_t npaths, gw_json_span *got) {
  return pick_run(text, n, paths, npaths, got, true);
}

/* one real's digits: significant ones counted, and the decimal exponent
 * of the first (123.4 → 2, 0.0012 → -3) */
static bool real_exact(const unsigned char *p, const unsigned char *e) {
  int64_t sig = 0, zeros = 0, first = -1, i = 0, intlen = 0, exp = 0;
  bool frac = false, eneg = false;
  if (p < e && *p == '-') p++;
  for (; p < e && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.') {
      frac = true;
      continue;
    }
    if (!frac) intlen++;
    if (*p != '0') {
      if (first < 0) first = i;
      sig += zeros + 1;
      zeros = 0;
    } else if (first >= 0) {
      zeros++;
    }
    i++;
  }
  if (p < e) { /* the exponent, saturated: only its range matters — but
                * past any count of digits the text can have (intlen and
                * first can outweigh a smaller cap: 1 and 1e5 zeros, e-1e6) */
    p++;
    if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    for (; p < e; p++) /* digits only: on a text no scan checked, no overflow either */
      if (*p >= '0' && *p <= '9' && exp < INT64_C(1000000000000000)) exp = exp * 10 + (*p - '0');
  }
  if (first < 0) return true; /* zero, however written */
  int64_t e10 = intlen - 1 - first + (eneg ? -exp : exp);
  return sig <= 15 && e10 >= -307 && e10 <= 308;
}

bool gw_json_numbers_exact(const char *text, size_t n) {
  const unsigned char *p = (const unsigned char *)text, *end = p + n;
  while (p < end) {
    if (*p == '"') { /* a string: skip it, escapes included */
      for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
      p++;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
      const unsigned char *b = p;
      bool real = false;
      for (; p < end && (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')); p++)
        if (*p == '.' || *p == 'e' || *p == 'E') real = true;
      if (real && !real_exact(b, p)) return false;
      if (!real && p - b == 2 && b[0] == '-' && b[1] == '0') return false; /* -0: decoded as 0 */
    } else {
      p++;
    }
  }
  return true;
}

/* The end of the value at p in accepted text: strings skipped by their
 * escapes, containers by their depth (brackets inside strings ignored). */
static const char *value_end(const char *p, const char *end) {
  int depth = 0;
  do {
    if (*p == '"') {
      for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
      p++;
    } else if (*p == '{' || *p == '[') {
      depth++;
      p++;
    } else if (*p == '}' || *p == ']') {
      depth--;
      p++;
    } else if (depth) {
      p++;
    } else { /* a number or a literal at the top */
      while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
    }
  } while (depth > 0 && p < end);
  return p < end ? p : end; /* (past it only for text the scan did not accept) */
}

size_t gw_json_value_len(const char *p, size_t n) { return n ? (size_t)(value_end(p, p + n) - p) : 0; }

bool gw_json_next_member(const char *p, size_t n, size_t *at, gw_json_span *key, gw_json_span *value) {
  const char *end = p + n, *q = p + (*at ? *at : 1); /* after '{' or after the last member */
  while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ',')) q++;
  if (q >= end || *q == '}') {
    *at = (size_t)(q - p) + (q < end);
    return false;
  }
  const char *ke = value_end(q, end); /* the key: a string */
  *key = (gw_json_span){q, (size_t)(ke - q)};
  q = ke;
  while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ':')) q++;
  const char *ve = value_end(q, end);
  *value = (gw_json_span){q, (size_t)(ve - q)};
  *at = (size_t)(ve - p);
  return true;
}

size_t gw_json_tree_cost(const char *p, size_t n) {
  size_t cost = n;
  bool in_str = false;
  unsigned char prev = ',';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = false;
      prev = '"';
      continue;
    }
    switch (c) {
    case '"': in_str = true, cost += 96; break;
    case '{': cost += 240; break;
    case '[': cost += 144; break;
    case ':': cost += 72; break;
    default:
      /* a number: counted where it begins */
      if ((c == '-' || (c >= '0' && c <= '9')) &&
          (prev == ',' || prev == '[' || prev == ':' || prev == ' ' || prev == '\t' || prev == '\n' || prev == '\r'))
        cost += 48;
    }
    prev = c;
  }
  return cost;
}

static json_t *load_within(const char *p, size_t n, size_t flags, json_error_t *err, size_t cost, size_t max) {
  if (max < GW_JSON_TREE_MAX) max = GW_JSON_TREE_MAX;
  if (cost > max) {
    if (err) {
      memset(err, 0, sizeof *err);
      snprintf(err->text, sizeof err->text, "JSON too complex (its parse would take more than %zu MiB)", max >> 20);
    }
    return NULL;
  }
  return json_loadb(p, n, flags, err);
}

json_t *gw_json_loadb_within(const char *p, size_t n, size_t flags, json_error_t *err, size_t max) {
  return load_within(p, n, flags, err, gw_json_tree_cost(p, n), max);
}

json_t *gw_json_loadb_costed(const char *p, size_t n, size_t flags, json_error_t *err, size_t cost) {
  return load_within(p, n, flags, err, cost, GW_JSON_TREE_MAX);
}

json_t *gw_json_loadb(const char *p, size_t n, size_t flags, json_error_t *err) {
  return gw_json_loadb_within(p, n, flags, err, GW_JSON_TREE_MAX);
}
