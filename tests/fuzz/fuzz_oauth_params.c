/* tests/fuzz/fuzz_oauth_params.c — libFuzzer driver for auth/oauth_params.h:
 * the same bytes as an authorization request's query and as token and
 * revocation form bodies. The input is copied to a buffer of exactly its
 * size, without a NUL, so a read past `len` is an ASan report. Seeds
 * (tests/fuzz/corpus/oauth_params/): requests as MCP clients send them,
 * with duplicates, encoded names and malformed escapes.
 *
 * The API is held to its word: every refusal has an RFC error code of the
 * endpoint's and a sentence, and keeps no secret (no verifier, no hash);
 * the order of RFC 6749 §4.1.2.1 (client_id refused → nothing else read as
 * usable; redirect_uri refused → client_id was fine); every kept value is
 * printable ASCII and shorter than its buffer; an accepted authorization
 * request has a well-formed S256 challenge; an accepted token request has a
 * verifier of RFC 7636's form; and what was accepted, written back out in
 * canonical form encoding, parses to the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_params.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_oauth_params: %s\n", what);
  abort();
}

static void printable(const char *s, size_t cap, const char *what) {
  size_t n = strnlen(s, cap);
  if (n >= cap) fail(what);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) fail(what);
}

static void why_ok(const char *error, const char *why, const char *const *codes) {
  if (!error || !why[0]) fail("a refusal without a code or a sentence");
  printable(why, AUTH_OAUTH_WHY_MAX, "an unprintable sentence");
  for (const char *const *c = codes; *c; c++)
    if (!strcmp(*c, error)) return;
  fail("an error code the endpoint does not use");
}

static bool zero(const uint8_t *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (h[i]) return false;
  return true;
}

/* appends &k=v, v percent-encoded but for unreserved characters */
static void put(char *out, size_t cap, const char *k, const char *v) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = strlen(out);
  o += (size_t)snprintf(out + o, cap - o, "%s%s=", o ? "&" : "", k);
  for (const unsigned char *p = (const unsigned char *)v; *p && o + 4 < cap; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
        *p == '_' || *p == '~') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = 0;
}

static char canon[4 * AUTH_OAUTH_PARAMS_MAX];

static void check_authorize(const char *in, size_t n) {
  static const char *const codes[] = {"invalid_request", "unsupported_response_type", "invalid_target", NULL};
  auth_oauth_authz_params p;
  int rc = auth_oauth_authorize_parse(in, n, &p);
  printable(p.client_id, sizeof p.client_id, "client_id");
  printable(p.redirect_uri, sizeof p.redirect_uri, "redirect_uri");
  printable(p.state, sizeof p.state, "state");
  printable(p.challenge, sizeof p.challenge, "code_challenge");
  printable(p.resource, sizeof p.resource, "resource");
  if (rc == 0) {
    if (p.error) fail("accepted with an error");
    if (!p.client_id[0] || !p.redirect_uri[0] || !p.resource[0]) fail("accepted without a required parameter");
    if (!auth_oauth_challenge_ok(p.challenge)) fail("accepted a malformed challenge");
    /* written back out canonically, it parses to the same */
    canon[0] = 0;
    put(canon, sizeof canon, "response_type", "code");
    put(canon, sizeof canon, "client_id", p.client_id);
    put(canon, sizeof canon, "redirect_uri", p.redirect_uri);
    if (p.state[0]) put(canon, sizeof canon, "state", p.state);
    put(canon, sizeof canon, "code_challenge", p.challenge);
    put(canon, sizeof canon, "code_challenge_method", "S256");
    put(canon, sizeof canon, "resource", p.resource);
    auth_oauth_authz_params q;
    if (auth_oauth_authorize_parse(canon, strlen(canon), &q) || strcmp(q.client_id, p.client_id) ||
        strcmp(q.redirect_uri, p.redirect_uri) || strcmp(q.state, p.state) || strcmp(q.challenge, p.challenge) ||
        strcmp(q.resource, p.resource))
      fail("an accepted request does not survive its canonical encoding");
    return;
  }
  why_ok(p.error, p.why, codes);
  if (rc == AUTH_EOAUTH_CLIENT_ID) {
    if (p.client_id[0]) fail("client_id refused but kept");
  } else if (rc == AUTH_EOAUTH_REDIRECT) {
    if (!p.client_id[0]) fail("redirect_uri blamed before a missing client_id");
    if (p.redirect_uri[0]) fail("redirect_uri refused but kept");
  } else if (rc == AUTH_EOAUTH_REQUEST) {
    if (!p.client_id[0] || !p.redirect_uri[0]) fail("redirected to an unchecked client or redirect URI");
  } else {
    fail("an unknown return code");
  }
}

static void check_token(const char *in, size_t n) {
  static const char *const codes[] = {"invalid_request", "unsupported_grant_type", "invalid_grant", NULL};
  auth_oauth_token_params p;
  int rc = auth_oauth_token_parse(in, n, &p);
  printable(p.client_id, sizeof p.client_id, "client_id");
  printable(p.redirect_uri, sizeof p.redirect_uri, "redirect_uri");
  printable(p.verifier, sizeof p.verifier, "code_verifier");
  if (rc == 0) {
    if (p.error || !p.client_id[0]) fail("accepted without client_id");
    if (zero(p.hash, sizeof p.hash)) fail("accepted without a hash");
    if (!p.refresh && (!auth_oauth_verifier_ok(p.verifier) || !p.redirect_uri[0]))
      fail("a code accepted without a good verifier and redirect_uri");
    return;
  }
  if (rc != AUTH_EOAUTH_REQUEST) fail("an unknown return code");
  why_ok(p.error, p.why, codes);
  if (p.verifier[0] || !zero(p.hash, sizeof p.hash)) fail("a refusal kept a secret");
}

static void check_revoke(const char *in, size_t n) {
  auth_oauth_revoke_params p;
  int rc = auth_oauth_revoke_parse(in, n, &p);
  printable(p.client_id, sizeof p.client_id, "client_id");
  if (rc == 0) {
    if (p.error || !p.client_id[0]) fail("revocation accepted without client_id");
    if (p.ours == zero(p.hash, sizeof p.hash)) fail("ours and the hash disagree");
    return;
  }
  static const char *const codes[] = {"invalid_request", NULL};
  if (rc != AUTH_EOAUTH_REQUEST) fail("an unknown return code");
  why_ok(p.error, p.why, codes);
  if (p.ours || !zero(p.hash, sizeof p.hash)) fail("a refused revocation kept a hash");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > AUTH_OAUTH_PARAMS_MAX + 16) return 0;
  char *in = malloc(size ? size : 1);
  if (!in) return 0;
  if (size) memcpy(in, data, size);
  check_authorize(in, size);
  check_token(in, size);
  check_revoke(in, size);
  free(in);
  return 0;
}
