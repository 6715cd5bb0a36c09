/* audit/args.c — what an audit record keeps of a tool call's arguments:
 * a redacted deep copy, or its digest, under a size cap.
 *
 * Redaction happens before anything is measured or hashed, so neither the
 * record nor its digest depends on a secret's value... except through its
 * absence: the digest of the redacted copy is the same for any password.
 * The serialisation measured and hashed is jansson's compact form with
 * sorted keys, so two clients sending the same arguments in another key
 * order get the same digest. Depth is capped (AUDIT_ARGS_DEPTH_MAX) so the
 * recursion is bounded whatever the parser allowed.
 *
 * A key matches a pattern whatever its case and its separators ('_', '-'
 * on either side: audit_redact_at): "api_key" masks "apiKey" and
 * "X-Api-Key" too — the spellings a TypeScript tool or an HTTP header
 * gives the same secret. Only separators are skipped: "apiXkey" is not
 * "api_key". A pattern of separators only is matched as it is. */
#include "audit/audit_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const audit_redact_default[] = {"password", "passwd", "secret", "token", "authorization",
                                            "api_key", "private_key", "credential", "cookie", NULL};

int audit_redact_check(const char *s, char *err, size_t errlen) {
  static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
  if (!s) return AUDIT_EINVAL;
  if (!*s) return 0;
  size_t count = 0;
  for (const char *p = s;; p++) {
    size_t n = strcspn(p, ",");
    count++;
    if (count > AUDIT_REDACT_TENANT_MAX) {
      snprintf(err, errlen, "at most %d patterns", AUDIT_REDACT_TENANT_MAX);
      return AUDIT_EINVAL;
    }
    if (n == 0 || n > AUDIT_REDACT_PATTERN_MAX) {
      snprintf(err, errlen, "pattern %zu is %s: each is 1 to %d characters of A-Z a-z 0-9 _ -", count,
               n ? "too long" : "empty", AUDIT_REDACT_PATTERN_MAX);
      return AUDIT_EINVAL;
    }
    size_t good = strspn(p, ok);
    if (good < n) {
      unsigned char c = (unsigned char)p[good];
      if (c >= 0x20 && c < 0x7f)
        snprintf(err, errlen, "pattern %zu holds '%c': each is 1 to %d characters of A-Z a-z 0-9 _ -", count, c,
                 AUDIT_REDACT_PATTERN_MAX);
      else
        snprintf(err, errlen, "pattern %zu holds byte 0x%02x: each is 1 to %d characters of A-Z a-z 0-9 _ -", count,
                 c, AUDIT_REDACT_PATTERN_MAX);
      return AUDIT_EINVAL;
    }
    p += n;
    if (!*p) return 0;
  }
}

void audit_redact_split(const char *s, char *buf, size_t cap, const char **pats, size_t *n, size_t max) {
  size_t used = 0;
  for (const char *p = s ? s : ""; *p && *n < max;) {
    size_t l = strcspn(p, ",");
    if (l && used + l + 1 <= cap) {
      memcpy(buf + used, p, l);
      buf[used + l] = 0;
      pats[(*n)++] = buf + used;
      used += l + 1;
    }
    p += l;
    if (*p) p++;
  }
  pats[*n] = NULL;
}

/* Separators a key may spell a pattern with or without: "api_key" is
 * also "apiKey", "api-key", "x-api-key", "APIKEY" — the same secret. */
static bool is_sep(char c) { return c == '_' || c == '-'; }
static unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

const char *audit_redact_lead(const char *pat) {
  const char *q = pat;
  while (is_sep(*q)) q++;
  return *q ? q : pat;
}

bool audit_redact_at(const char *p, size_t n, const char *pat) {
  const char *q = pat;
  while (is_sep(*q)) q++;
  if (!*q) { /* separators only ("_"): the pattern as it is */
    size_t m = strlen(pat);
    return m && m <= n && strncasecmp(p, pat, m) == 0;
  }
  size_t i = 0;
  for (bool first = true; *q; q++) {
    if (is_sep(*q)) continue;
    if (!first)
      while (i < n && is_sep(p[i])) i++;
    if (i >= n || fold((unsigned char)p[i]) != fold((unsigned char)*q)) return false;
    i++;
    first = false;
  }
  return true;
}

static bool key_redacted(const char *key, const char *const *pats) {
  size_t kl = strlen(key);
  for (; *pats; pats++) {
    if (!**pats) continue;
    for (size_t i = 0; i < kl; i++)
      if (audit_redact_at(key + i, kl - i, *pats)) return true;
  }
  return false;
}

static json_t *redact(const json_t *v, const char *const *pats, int depth) {
  json_t *out = NULL;
  if (depth > AUDIT_ARGS_DEPTH_MAX) return json_string("[too deep]");
  if (json_is_object(v)) {
    const char *k;
    json_t *m;
    if (!(out = json_object())) return NULL;
    json_object_foreach((json_t *)v, k, m) {
      json_t *c = key_redacted(k, pats) ? json_string("[redacted]") : redact(m, pats, depth + 1);
      if (!c || json_object_set_new(out, k, c) < 0) goto fail;
    }
    return out;
  }
  if (json_is_array(v)) {
    size_t i;
    json_t *m;
    if (!(out = json_array())) return NULL;
    json_array_foreach((json_t *)v, i, m) {
      json_t *c = redact(m, pats, depth + 1);
      if (!c || json_array_append_new(out, c) < 0) goto fail;
    }
    return out;
  }
  return json_copy((json_t *)v); /* a scalar: never share the caller's value */
fail:
  json_decref(out);
  return NULL;
}

/* {"digest":"sha256:<hex>","bytes":N} (+ "truncated":true) of s. */
static json_t *digest_of(const char *s, bool truncated) {
  char hex[AUDIT_HASH_HEX + 1], d[8 + AUDIT_HASH_HEX];
  size_t n = strlen(s);
  if (audit__hash_hex(s, n, hex) < 0) return NULL;
  snprintf(d, sizeof d, "sha256:%s", hex);
  if (truncated) return json_pack("{sbsIss}", "truncated", 1, "bytes", (json_int_t)n, "digest", d);
  return json_pack("{sssI}", "digest", d, "bytes", (json_int_t)n);
}

json_t *audit_args(const json_t *args, audit_args_mode mode, const char *const *redact_keys,
                   size_t cap_bytes) {
  json_t *red = NULL, *out = NULL;
  char *s = NULL;
  if (!args || (mode != AUDIT_ARGS_FULL && mode != AUDIT_ARGS_DIGEST)) return NULL;
  if (!(red = redact(args, redact_keys ? redact_keys : audit_redact_default, 0))) return NULL;
  if (!(s = json_dumps(red, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY))) goto out;
  if (mode == AUDIT_ARGS_FULL && strlen(s) <= cap_bytes) {
    out = red;
    red = NULL;
  } else {
    out = digest_of(s, mode == AUDIT_ARGS_FULL);
  }
out:
  free(s);
  json_decref(red);
  return out;
}
