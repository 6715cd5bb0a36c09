/* tests/fuzz/fuzz_vault.c — libFuzzer driver for the parts of vault/ that
 * read what others send: a token endpoint's reply (vault_tokens_from_reply,
 * grant.h) and an admin's connector body (vault_connector_parse, vault.h).
 * The first byte picks the function (even: reply, odd: connector), the rest
 * is the JSON. Seeds (tests/fuzz/corpus/vault/): token replies in the
 * shapes Okta, GitHub and Atlassian send, and connector bodies of each
 * auth type.
 *
 * The API is held to its word: an accepted reply's tokens are printable
 * ASCII without spaces and at most VAULT_TOKEN_MAX bytes; a refusal says
 * why and never quotes the access or refresh token it was given (8 bytes
 * or more); an accepted connector's record has no "client_secret" key at
 * any depth and does not contain the secret, which only *secret carries
 * (borrowed from the body's auth member); a refusal hands out neither a
 * record nor a secret and does not quote the secret either. "Quotes": the
 * refusal contains the value and the refusal of the same input with the
 * value replaced by one judged alike does not (so a token that is a word
 * of a fixed message, or a secret also written into a member name, which
 * refusals quote, is not taken for a leak). An accepted connector's URL as
 * shown (vault_url_shown) keeps everything before its query, and sent back
 * masked it keeps exactly the stored URL (vault_url_keep_masked), unless
 * the URL itself sends a value masked. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vault/grant.h"
#include "vault/vault.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_vault: %s\n", what);
  abort();
}

static void token_ok(const char *t, const char *what) {
  if (!t) return;
  size_t n = strlen(t);
  if (!n || n > VAULT_TOKEN_MAX) fail(what);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) fail(what);
}

static bool printable_max(const char *t, size_t max) {
  size_t n = strlen(t);
  if (!n || n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) return false;
  return true;
}

/* Replaces the string member k of o (at least 8 bytes) by a value of the
 * same length that the module judges the same way ('Z's, led by a space
 * when the original is not acceptable); returns the original (copied into
 * *orig, caller frees) or false. A refusal that contains the original while
 * the refusal of the replaced input does not has quoted it; one that is a
 * word of the fixed messages ("https://", "token_type") is in both. */
static bool neutralise(json_t *o, const char *k, size_t max, char **orig) {
  const char *s = json_string_value(json_object_get(o, k));
  *orig = NULL;
  if (!s || strlen(s) < 8 || strlen(s) != json_string_length(json_object_get(o, k))) return false;
  size_t n = strlen(s);
  char *z = malloc(n + 1);
  if (!z) return false;
  memset(z, 'Z', n);
  z[n] = 0;
  if (!printable_max(s, max)) z[0] = ' ';
  *orig = strdup(s);
  json_object_set_new(o, k, json_string(z));
  free(z);
  return *orig != NULL;
}

/* 1 when err contains secret and the refusal of body2 does not */
static bool quoted(const char *err, const char *err2, const char *secret) {
  return secret && strstr(err, secret) && !strstr(err2, secret);
}

static void reply(const char *body, size_t len) {
  vault_tokens t;
  char err[300];
  int rc = vault_tokens_from_reply(body, len, 1767225600, &t, err, sizeof err);
  if (rc == 0) {
    if (!t.access) fail("accepted without an access token");
    token_ok(t.access, "accepted an access token that is not printable, has a space or is too long");
    token_ok(t.refresh, "accepted a refresh token that is not printable, has a space or is too long");
    vault_tokens_free(&t);
    return;
  }
  if (t.access || t.refresh || t.scope) fail("refused with tokens");
  if (rc == VAULT_EINVALID && !err[0]) fail("refused without a reason");
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    return;
  }
  char *at, *rt;
  bool a = neutralise(j, "access_token", VAULT_TOKEN_MAX, &at), r = neutralise(j, "refresh_token", VAULT_TOKEN_MAX, &rt);
  if (a || r) {
    char *b2 = json_dumps(j, JSON_COMPACT);
    char err2[300];
    vault_tokens t2;
    if (b2 && vault_tokens_from_reply(b2, strlen(b2), 1767225600, &t2, err2, sizeof err2) == 0) {
      vault_tokens_free(&t2);
      fail("the same reply with other tokens was accepted");
    }
    if (b2 && (quoted(err, err2, at) || quoted(err, err2, rt))) fail("a refusal quotes a token");
    free(b2);
  }
  free(at);
  free(rt);
  json_decref(j);
}

static bool has_key(const json_t *v, const char *key) {
  const char *k;
  json_t *m;
  size_t i;
  if (json_is_object(v)) {
    json_object_foreach((json_t *)v, k, m) if (!strcmp(k, key) || has_key(m, key)) return true;
  } else if (json_is_array(v)) {
    json_array_foreach(v, i, m) if (has_key(m, key)) return true;
  }
  return false;
}

/* 1 when the record of the same body with its secret replaced (one judged
 * alike) lacks secret: the record holds the secret, not a word of its own
 * (a key such as "timeouts", the URL the admin also wrote it into) */
static bool record_holds(const json_t *b, const char *secret) {
  json_t *c = json_deep_copy(b);
  json_t *a = json_object_get(c, "auth");
  char *o1 = NULL, *o2 = NULL;
  neutralise(a, "client_secret", 1024, &o1);
  /* a header value may hold spaces: 'Z's keep it valid */
  const char *hv = json_string_value(json_object_get(a, "value"));
  if (hv && strlen(hv) >= 8) {
    o2 = strdup(hv);
    char *z = strdup(hv);
    if (z) memset(z, 'Z', strlen(z));
    json_object_set_new(a, "value", json_string(z ? z : ""));
    free(z);
  }
  json_t *cfg2 = NULL;
  const char *sec2 = NULL;
  char err2[2000];
  bool holds = true;
  if (vault_connector_parse(c, &cfg2, &sec2, err2, sizeof err2) == 0) {
    char *d = json_dumps(cfg2, 0);
    holds = !d || !strstr(d, secret);
    free(d);
    json_decref(cfg2);
  }
  free(o1);
  free(o2);
  json_decref(c);
  return holds;
}

/* 1 when a query value of u is the mask itself ("…" or its encoding) */
static int sends_mask(const char *u) {
  const char *q = strchr(u, '?');
  for (const char *p = q ? q + 1 : NULL; p && *p;) {
    size_t n = strcspn(p, "&");
    const char *eq = memchr(p, '=', n);
    const char *v = eq ? eq + 1 : p;
    size_t vl = n - (size_t)(v - p);
    if ((vl == 3 && !memcmp(v, "\xe2\x80\xa6", 3)) || (vl == 9 && !strncasecmp(v, "%E2%80%A6", 9))) return 1;
    p += n + (p[n] ? 1 : 0);
  }
  return 0;
}

static void url_round_trip(const char *u) {
  char *shown = vault_url_shown(u);
  if (!shown) fail("no shown URL");
  size_t pl = strcspn(u, "?");
  if (strncmp(shown, u, pl) || shown[pl] != u[pl]) fail("the shown URL changed what comes before the query");
  if (!sends_mask(u)) {
    char *kept = NULL;
    if (vault_url_keep_masked(shown, u, &kept) != 0 || strcmp(kept, u)) fail("the shown URL sent back does not keep it");
    vault_secret_free(kept);
  }
  free(shown);
}

static void connector(const char *body, size_t len) {
  json_t *b = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  json_t *cfg = (json_t *)1;
  const char *secret = "unset";
  char err[2000];
  int rc = vault_connector_parse(b, &cfg, &secret, err, sizeof err);
  json_t *auth = json_object_get(b, "auth");
  if (rc == 0) {
    if (!cfg || cfg == (json_t *)1) fail("accepted without a record");
    if (has_key(cfg, "client_secret")) fail("the record keeps a client_secret key");
    if (secret && secret != json_string_value(json_object_get(auth, "client_secret")) &&
        secret != json_string_value(json_object_get(auth, "value")))
      fail("*secret is not the body's secret");
    char *dump = json_dumps(cfg, 0);
    if (!dump) fail("record not dumpable");
    if (secret && strlen(secret) >= 8 && strstr(dump, secret) && record_holds(b, secret))
      fail("the record contains the secret");
    free(dump);
    url_round_trip(json_string_value(json_object_get(cfg, "url")));
    json_t *view = vault_connector_view(cfg);
    if (has_key(view, "client_secret") || has_key(view, "value")) fail("the view shows a secret");
    json_decref(view);
    json_decref(cfg);
  } else {
    if (cfg) fail("refused with a record");
    if (secret) fail("refused with a secret");
    if (!err[0]) fail("refused without a reason");
    char *cs = NULL;
    if (json_is_object(auth) && neutralise(auth, "client_secret", 1024, &cs)) {
      json_t *cfg2 = NULL;
      const char *secret2 = NULL;
      char err2[2000];
      if (vault_connector_parse(b, &cfg2, &secret2, err2, sizeof err2) == 0) fail("the same body with another secret was accepted");
      if (quoted(err, err2, cs)) fail("a refusal quotes the client secret");
    }
    free(cs);
  }
  json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  if (data[0] & 1) connector(body, len);
  else reply(body, len);
  return 0;
}
