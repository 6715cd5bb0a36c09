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
 * record nor a secret and does not quote the secret either (unless the
 * admin also wrote it into a member name: unknown names are quoted). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* the string member k of o when it has at least 8 bytes and a character
 * other than letters, '_' and '\'' (else it could be a word of the fixed
 * messages, such as "token_type"), else NULL */
static const char *long_member(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  if (!s || strlen(s) < 8 || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_' ") == strlen(s))
    return NULL;
  return s;
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
  json_t *j = json_loadb(body, len, 0, NULL);
  const char *at = long_member(j, "access_token"), *rt = long_member(j, "refresh_token");
  if ((at && strstr(err, at)) || (rt && strstr(err, rt))) fail("a refusal quotes a token");
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

/* 1 when some member name of o (or of an object below it) contains s:
 * refusals quote unknown member names, which the admin chose */
static bool key_contains(const json_t *o, const char *s) {
  const char *k;
  json_t *m;
  json_object_foreach((json_t *)o, k, m) if (strstr(k, s) || (json_is_object(m) && key_contains(m, s))) return true;
  return false;
}

static void connector(const char *body, size_t len) {
  json_t *b = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  json_t *cfg = (json_t *)1;
  const char *secret = "unset";
  char err[2000];
  int rc = vault_connector_parse(b, &cfg, &secret, err, sizeof err);
  json_t *auth = json_object_get(b, "auth");
  const char *cs = long_member(auth, "client_secret");
  if (rc == 0) {
    if (!cfg || cfg == (json_t *)1) fail("accepted without a record");
    if (has_key(cfg, "client_secret")) fail("the record keeps a client_secret key");
    if (secret && secret != json_string_value(json_object_get(auth, "client_secret")) &&
        secret != json_string_value(json_object_get(auth, "value")))
      fail("*secret is not the body's secret");
    char *dump = json_dumps(cfg, 0);
    if (!dump) fail("record not dumpable");
    if (secret && strlen(secret) >= 8 && strstr(dump, secret)) fail("the record contains the secret");
    free(dump);
    json_t *view = vault_connector_view(cfg);
    if (has_key(view, "client_secret") || has_key(view, "value")) fail("the view shows a secret");
    json_decref(view);
    json_decref(cfg);
  } else {
    if (cfg) fail("refused with a record");
    if (secret) fail("refused with a secret");
    if (!err[0]) fail("refused without a reason");
    if (cs && strstr(err, cs) && !key_contains(b, cs)) fail("a refusal quotes the client secret");
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
