/* tests/fuzz/fuzz_oauth_client.c — libFuzzer driver for auth/oauth_client.h:
 * client metadata (as a DCR body and as a CIMD document), redirect URI
 * checks and RFC 8252 matching, CIMD client_id URLs and PKCE, on the same
 * input. Seeds (tests/fuzz/corpus/oauth_client/): Claude Code's client
 * metadata document, DCR bodies as MCP clients send them, and URIs.
 *
 * The API is held to its word: accepted metadata keeps only client_name,
 * client_uri, logo_uri and redirect_uris, and every kept redirect URI is
 * acceptable on its own; a refusal names a member and returns nothing; a
 * URI that matches a registered list is itself an acceptable redirect URI
 * and, when not an exact entry, a loopback http one; an accepted CIMD URL
 * is https. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_client.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_oauth_client: %s\n", what);
  abort();
}

static void metadata(const json_t *m, const char *cimd) {
  json_t *clean = NULL;
  char err[300];
  int rc = auth_oauth_client_validate(m, cimd, &clean, err, sizeof err);
  if (rc == 0) {
    if (!clean) fail("accepted without a record");
    const char *k;
    json_t *v;
    json_object_foreach(clean, k, v) {
      if (strcmp(k, "client_name") && strcmp(k, "client_uri") && strcmp(k, "logo_uri") && strcmp(k, "redirect_uris"))
        fail("kept a member it should drop");
    }
    size_t i;
    json_array_foreach(json_object_get(clean, "redirect_uris"), i, v) {
      if (!auth_oauth_redirect_uri_ok(json_string_value(v))) fail("kept an unacceptable redirect URI");
    }
    json_decref(clean);
  } else {
    if (clean) fail("refused with a record");
    if ((rc == AUTH_EOAUTH_METADATA || rc == AUTH_EOAUTH_REDIRECT) && !err[0]) fail("refused without a reason");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > AUTH_OAUTH_METADATA_MAX) return 0;
  json_t *m = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (m) {
    metadata(m, NULL);
    metadata(m, "https://claude.ai/oauth/claude-code-client-metadata");
    json_decref(m);
  }
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  static const char *const reg[] = {"http://localhost/callback", "http://127.0.0.1:3000/cb?x=1",
                                    "https://app.example/cb", NULL};
  json_t *r = json_array();
  for (const char *const *p = reg; *p; p++) json_array_append_new(r, json_string(*p));
  if (auth_oauth_redirect_match(r, s)) {
    bool exact = false;
    for (const char *const *p = reg; *p; p++) exact = exact || !strcmp(*p, s);
    if (!auth_oauth_redirect_uri_ok(s)) fail("matched an unacceptable URI");
    if (!exact && strncmp(s, "http://", 7)) fail("a non-loopback URI matched other than exactly");
  }
  json_decref(r);
  if (auth_oauth_cimd_url_ok(s) && strncmp(s, "https://", 8)) fail("a CIMD URL that is not https");
  if (auth_oauth_pkce_ok(s, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") &&
      strcmp(s, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
    fail("another verifier passed PKCE");
  free(s);
  return 0;
}
