/* tests/fuzz/fuzz_discover.c — libFuzzer driver for vault/discover.h, the
 * parsers of what an upstream writes about its own authorization: the
 * WWW-Authenticate value, protected-resource metadata (against a
 * connector URL), authorization server metadata (against an https and a
 * loopback http issuer), a registration reply, and the URL helpers, all
 * on the same input. Seeds (tests/fuzz/corpus/discover/): the documents
 * oidc-provider and the SDK upstream serve in the tests, challenges as MCP
 * servers send them, registration replies.
 *
 * The API is held to its word: an accepted PRM names the connector's
 * resource and a usable issuer URL; accepted AS metadata has exactly the
 * asked issuer, URL-shaped endpoints and a client authentication the
 * gateway speaks; an accepted registration has a bounded printable
 * client_id and a secret exactly when the method needs one; every refusal
 * returns its own code with a reason and leaves nothing behind; a
 * resource_metadata value found is a URL; a URL is its own resource. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vault/connect.h"
#include "vault/discover.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_discover: %s\n", what);
  abort();
}

static const char *const CONNECTOR = "https://mcp.example.com/mcp";

static void prm(const char *d, size_t n) {
  vault_prm p;
  char err[300] = "";
  int rc = vault_prm_parse(d, n, CONNECTOR, &p, err, sizeof err);
  if (rc == 0) {
    if (!vault_same_resource(p.resource, CONNECTOR)) fail("PRM for another resource accepted");
    if (!vault_discover_url_ok(p.authorization_server) || strchr(p.authorization_server, '?'))
      fail("unusable authorization server accepted");
    if (strchr(p.scopes, '"') || (p.scopes[0] == ' '))
      fail("scopes the connector could not hold");
  } else {
    if (rc != VAULT_EDISCOVER && rc != VAULT_EUNUSABLE) fail("PRM: unexpected code");
    if (!err[0] || p.resource[0] || p.authorization_server[0]) fail("PRM: refusal without reason or with leftovers");
  }
}

static void asm_(const char *d, size_t n, const char *issuer) {
  vault_asm a;
  char err[300] = "";
  int rc = vault_asm_parse(d, n, issuer, &a, err, sizeof err);
  if (rc == 0) {
    if (strcmp(a.issuer, issuer)) fail("another issuer accepted");
    if (!vault_discover_url_ok(a.authorization_endpoint) || !vault_discover_url_ok(a.token_endpoint))
      fail("endpoint outside the rules");
    if ((a.revocation_endpoint[0] && !vault_discover_url_ok(a.revocation_endpoint)) ||
        (a.registration_endpoint[0] && !vault_discover_url_ok(a.registration_endpoint)))
      fail("optional endpoint outside the rules");
    if (strcmp(a.dcr_auth, "client_secret_basic") && strcmp(a.dcr_auth, "client_secret_post") &&
        strcmp(a.dcr_auth, "none"))
      fail("unknown client authentication");
  } else {
    if (rc != VAULT_EDISCOVER && rc != VAULT_EUNUSABLE) fail("ASM: unexpected code");
    if (!err[0] || a.token_endpoint[0] || a.issuer[0]) fail("ASM: refusal without reason or with leftovers");
  }
}

static void dcr(const char *d, size_t n, const char *method) {
  char *id = NULL, *sec = NULL, m[24], err[300] = "";
  int64_t exp = 0;
  int rc = vault_dcr_reply(d, n, method, &id, &sec, m, &exp, err, sizeof err);
  if (rc == 0) {
    if (!id || !id[0] || strlen(id) > 512) fail("bad client_id accepted");
    if (!strcmp(m, "none") != !sec) fail("a secret exactly when the method needs one");
    if (sec && (!sec[0] || strlen(sec) > 1024)) fail("bad client_secret accepted");
    for (const char *p = id; *p; p++)
      if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) fail("unprintable client_id");
    free(id);
    vault_wipe(sec);
  } else {
    if (id || sec) fail("DCR: refusal with leftovers");
    if (rc == VAULT_EDISCOVER && !err[0]) fail("DCR: refusal without reason");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *d = (const char *)data;
  prm(d, size);
  asm_(d, size, "https://as.example.com");
  asm_(d, size, "http://127.0.0.1:3000/tenant");
  dcr(d, size, "client_secret_basic");
  dcr(d, size, "none");
  /* as text: a challenge, and a URL */
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  char out[VAULT_DISCOVER_URL_BUF];
  if (vault_www_auth_resource_metadata(s, out, sizeof out) == 0 && !vault_discover_url_ok(out))
    fail("resource_metadata that is not a URL");
  char wk[VAULT_DISCOVER_URL_BUF + 64];
  int ok = vault_discover_url_ok(s);
  if (vault_prm_well_known(s, wk, sizeof wk) == 0 && (!ok || !strstr(wk, "/.well-known/oauth-protected-resource")))
    fail("well-known URL of a non-URL");
  if (vault_same_resource(s, s) != ok) fail("a URL is its own resource");
  char c[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF];
  int nc = vault_asm_candidates(s, c);
  if (nc > VAULT_ASM_CANDIDATES || (nc > 0 && !ok)) fail("candidates out of bounds");
  for (int i = 0; i < nc; i++)
    if (!strstr(c[i], "/.well-known/")) fail("candidate without well-known");
  char h[256];
  if (vault_url_host(s, h, sizeof h) == 0 && (!ok || !h[0])) fail("host of a non-URL");
  free(s);
  return 0;
}
