/* tests/fuzz/fuzz_json_check.c — libFuzzer driver, differential: the
 * validating scan (gateway/base/json_check.h) must accept exactly what
 * jansson's json_loadb(…, 0, …) accepts, since the gateway relays an
 * upstream's reply unchanged when the scan says it is JSON. One known
 * jansson quirk is not copied: a NUL byte right after a number is skipped
 * by its lexer (it ungets the 0, which its stream buffer reads as
 * "empty"); the scan refuses every raw NUL. So for input with a NUL byte
 * only "the scan never accepts what jansson refuses" is required.
 *
 * gw_json_pick (the request scan) is held to json_loadb(…,
 * JSON_REJECT_DUPLICATES, …): when it decides (1 or 0) jansson agrees, and
 * every span it returns is the member jansson finds, as a JSON value.
 *
 * gw_json_numbers_exact, on text the scan accepts: when it says exact,
 * every real jansson decoded is the double of a decimal of at most 15
 * significant digits (printed with 15 and read back, it is the same
 * double); and, token by token, a real it calls exact is the very decimal
 * its double prints as (the same significant digits, the same exponent) —
 * so no two different decimals it passes share a double: the property
 * that makes the approvals' argument hash name one value per text. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/base/json_check.h"

static bool reals_of_15_digits(const json_t *j) {
  if (json_is_real(j)) {
    char t[40];
    snprintf(t, sizeof t, "%.15g", json_real_value(j));
    return strtod(t, NULL) == json_real_value(j);
  }
  const char *k;
  json_t *v;
  size_t i;
  if (json_is_object(j)) json_object_foreach((json_t *)j, k, v) if (!reals_of_15_digits(v)) return false;
  if (json_is_array(j)) json_array_foreach(j, i, v) if (!reals_of_15_digits(v)) return false;
  return true;
}

/* A real token's significant digits (no leading or trailing zeros) and
 * the decimal exponent of the first; false for zero or a token too long
 * to bother with. Written apart from json_check.c's reading on purpose. */
static bool decimal_of(const char *t, size_t n, char *dig, size_t cap, long long *e10) {
  size_t k = 0;
  long long pos = 0, first = -1, intdigits = 0, exp = 0;
  bool frac = false, neg = false;
  size_t i = 0;
  if (i < n && t[i] == '-') i++;
  for (; i < n && t[i] != 'e' && t[i] != 'E'; i++) {
    if (t[i] == '.') { frac = true; continue; }
    if (!frac) intdigits++;
    if (first < 0 && t[i] != '0') first = pos;
    if (first >= 0) {
      if (k + 1 >= cap) return false;
      dig[k++] = t[i];
    }
    pos++;
  }
  if (i < n) {
    i++;
    if (i < n && (t[i] == '+' || t[i] == '-')) neg = t[i++] == '-';
    for (; i < n; i++) {
      if (exp > 100000000) return false;
      exp = exp * 10 + (t[i] - '0');
    }
  }
  while (k && dig[k - 1] == '0') k--;
  dig[k] = 0;
  if (first < 0) return false;
  *e10 = intdigits - 1 - first + (neg ? -exp : exp);
  return true;
}

/* every real token of an accepted text that numbers_exact passes alone */
static void check_tokens(const char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    if (p[i] == '"') {
      for (i++; i < n && p[i] != '"'; i++)
        if (p[i] == '\\') i++;
      i++;
      continue;
    }
    if (p[i] != '-' && (p[i] < '0' || p[i] > '9')) {
      i++;
      continue;
    }
    size_t b = i;
    bool real = false;
    for (; i < n && strchr("-+.eE0123456789", p[i]) && p[i]; i++) real |= p[i] == '.' || p[i] == 'e' || p[i] == 'E';
    if (!real || i - b > 300) continue;
    char tok[310], arr[320], dig[310], pd[40];
    memcpy(tok, p + b, i - b);
    tok[i - b] = 0;
    snprintf(arr, sizeof arr, "[%s]", tok);
    long long e10, pe;
    if (!gw_json_numbers_exact(arr, strlen(arr)) || !decimal_of(tok, i - b, dig, sizeof dig, &e10)) continue;
    double v = strtod(tok, NULL);
    char pr[64];
    snprintf(pr, sizeof pr, "%.*e", (int)strlen(dig) - 1, v);
    if (!decimal_of(pr, strlen(pr), pd, sizeof pd, &pe) || strcmp(pd, dig) || pe != e10) {
      fprintf(stderr, "json_numbers_exact passes %s, whose double prints as %s\n", tok, pr);
      abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t e;
  json_t *j = json_loadb((const char *)data, size, 0, &e);
  bool scan = gw_json_check((const char *)data, size);
  bool has_nul = memchr(data, 0, size) != NULL;
  if (has_nul ? (scan && !j) : (scan != (j != NULL))) {
    fprintf(stderr, "json_check says %s, jansson says %s (%s)\n", scan ? "valid" : "invalid",
            j ? "valid" : "invalid", j ? "" : e.text);
    abort();
  }
  if (scan && j) check_tokens((const char *)data, size);
  if (scan && j && gw_json_numbers_exact((const char *)data, size) && !reals_of_15_digits(j)) {
    fprintf(stderr, "json_numbers_exact says exact, yet a real is no 15-digit decimal's double\n");
    abort();
  }
  json_decref(j);

  static const char *const paths[] = {"jsonrpc", "id", "method", "params", "params.name"};
  gw_json_span got[5];
  int pk = (size & 1) ? gw_json_pick_request((const char *)data, size, paths, 5, got)
                      : gw_json_pick((const char *)data, size, paths, 5, got);
  json_t *d = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
  if (pk == 1 ? !json_is_object(d) : pk == 0 ? (d != NULL && !has_nul) : false) {
    fprintf(stderr, "json_pick says %d, jansson (no duplicates) says %s\n", pk, d ? "valid" : e.text);
    abort();
  }
  if (pk == 1) {
    for (int i = 0; i < 5; i++) {
      const char *dot = strchr(paths[i], '.');
      json_t *want = dot ? json_object_get(json_object_get(d, "params"), dot + 1) : json_object_get(d, paths[i]);
      json_t *have = got[i].p ? json_loadb(got[i].p, got[i].n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e) : NULL;
      if (!want != !have || (want && !json_equal(want, have))) {
        fprintf(stderr, "json_pick's %s differs from jansson's\n", paths[i]);
        abort();
      }
      json_decref(have);
    }
  }
  json_decref(d);
  return 0;
}
