/* tests/fuzz/fuzz_jose.c — libFuzzer driver for auth/jose.h: JWKS parsing,
 * compact JWS verification and the ID-token claim checks, on input shaped
 * as `<JWKS>\n<token>` (split at the first newline or NUL byte; without
 * one, the whole input is tried as both). The seed corpus
 * (tests/fuzz/corpus/jose/) comes from tests/fuzz/make_jose_corpus.mjs,
 * real keys and ID tokens made with the `jose` npm package; its claims are
 * made for the expectations below, so good seeds reach every check.
 *
 * Besides "no crash, leak or UB", the driver holds the API to its word:
 * a parse or verification succeeds exactly when it returns an object; every
 * refusal is a named jose code; a key set stays within its caps; the claims
 * auth_jws_verify returns are the token's payload; ES256 r||s → DER
 * round-trips. When the JWKS part does not parse, a fixed key set is used
 * (parsed once, kept for the process) so the token still reaches key
 * selection and signature checks. The claim
 * checks also run on the payload as decoded WITHOUT verification, so
 * mutated claims are fuzzed even though their signature no longer holds. */
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jose.h"

/* the expectations make_jose_corpus.mjs signs for */
#define ISSUER "http://127.0.0.1:3000/oidc"
#define CLIENT "mcpgate-acme"
#define NONCE "n-0S6_WzA2Mj"
#define NOW INT64_C(1767225600)

/* made once with openssl genpkey (RSA-2048, P-256); public halves only */
static const char fallback_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"alg\":\"RS256\",\"use\":\"sig\",\"n\":\"nsUXXMcnfDtEckX8LSorP78kAr"
    "KW73E_8Fk0tnPgVgJjbt2km2tyE2nIJ7JWaLZfyjNKaIAm1AEoALrUnf99kA9D7fukkS4oL6qxuPeMb58d04L972JPtu1ZUjaX2w3WcSDPrLz3P"
    "B-rdSNAgrv8Zf1F7e1buNg941w4iR-fOpoVcdLuhkrm4O2pqgRVyxgqtZkm4sCGxxFX2Obv06B9g_6LwKbokWSl3P4E3bZR16exX4RuglHyM0m5"
    "qxydU4YFXrafyCdCpXsVBdc2f4MSqJ-H5hhrbToE0sJ9ZDjvl_A_faJ1avQgUoqLxd0k-qZkgc0Z-cgmxIX_HOhZKuJDiw\",\"e\":\"AQAB\"},"
    "{\"kty\":\"EC\",\"kid\":\"ec-1\",\"crv\":\"P-256\",\"x\":\"0D-4Y42TMu2GAUvG6SR3Eky6wOhhPonrwdrR7QFyB4U\",\"y\":"
    "\"OS6zB2-74JOoN-YWggTE56HzM7qP0MnKM7NuVZiTjeM\"}]}";

static void fail(const char *what, int rc) {
  fprintf(stderr, "fuzz_jose: %s (%d: %s)\n", what, rc, auth_jose_strerror(rc));
  abort();
}

static void check_code(const char *what, int rc) {
  if (rc > 0 || (rc < 0 && !strcmp(auth_jose_strerror(rc), "unknown jose error"))) fail(what, rc);
}

static void check_set(const auth_jwks *ks) {
  size_t n = auth_jwks_count(ks);
  if (n == 0 || n + auth_jwks_skipped(ks) > AUTH_JOSE_JWKS_KEYS_MAX) fail("key set outside its caps", 0);
  for (size_t i = 0; i < n; i++) {
    auth_jwk_info in;
    if (auth_jwks_key(ks, i, &in) != 0) fail("key info refused", 0);
    bool rsa = !strcmp(in.kty, "RSA");
    if (rsa ? (in.bits < AUTH_JOSE_RSA_MIN_BITS || in.bits > AUTH_JOSE_RSA_MAX_BITS) : in.bits != 256)
      fail("key of a refused size kept", in.bits);
    if (in.alg && strcmp(in.alg, rsa ? "RS256" : "ES256")) fail("key with a foreign alg kept", 0);
    if (in.kid && strlen(in.kid) > AUTH_JOSE_KID_MAX) fail("kid over its cap", 0);
  }
}

static void run_claims(const json_t *claims) {
  auth_idtoken_expect w = {.issuer = ISSUER, .client_id = CLIENT, .nonce = NONCE, .now = NOW, .skew = 120};
  check_code("claims", auth_idtoken_check(claims, &w));
  w.nonce = NULL;
  w.check_max_age = true;
  w.max_age = 300;
  w.skew = 0;
  check_code("claims (max_age)", auth_idtoken_check(claims, &w));
}

/* The token's middle segment as JSON, unverified (NULL if it is not). */
static json_t *payload_unverified(const char *tok, size_t len) {
  const char *d1 = memchr(tok, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(tok + len - d1 - 1)) : NULL;
  if (!d2) return NULL;
  size_t n = (size_t)(d2 - d1 - 1), got = 0;
  uint8_t *buf = malloc(AUTH_B64URL_DECODED_LEN(n) + 1);
  if (!buf) return NULL;
  int rc = auth_b64url_decode(d1 + 1, n, buf, AUTH_B64URL_DECODED_LEN(n), &got);
  check_code("base64url", rc);
  if (!rc && got != AUTH_B64URL_DECODED_LEN(n)) fail("base64url length", (int)got);
  json_t *j = rc ? NULL : json_loadb((const char *)buf, got, JSON_REJECT_DUPLICATES, NULL);
  free(buf);
  return j;
}

static void run_es256_der(const uint8_t raw[64]) {
  uint8_t der[AUTH_JOSE_ES256_DER_MAX], back[64];
  size_t n = 0;
  int rc = auth_es256_sig_to_der(raw, der, sizeof der, &n);
  if (rc || n > sizeof der) fail("r||s to DER", rc);
  const unsigned char *p = der;
  ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)n);
  if (!s || p != der + n) fail("DER does not parse back", 0);
  BN_bn2binpad(ECDSA_SIG_get0_r(s), back, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(s), back + 32, 32);
  ECDSA_SIG_free(s);
  if (memcmp(back, raw, 64)) fail("DER does not round-trip", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  size_t jl = size;
  for (size_t i = 0; i < size; i++)
    if (data[i] == '\n' || data[i] == 0) {
      jl = i;
      break;
    }
  const char *tok = jl < size ? in + jl + 1 : in;
  size_t tl = jl < size ? size - jl - 1 : size;

  auth_jwks *ks = NULL;
  int rc = auth_jwks_parse(in, jl, &ks);
  check_code("jwks", rc);
  if (!rc != !!ks) fail("jwks result and set disagree", rc);
  static auth_jwks *fallback; /* parsed once: its RSA key check costs a modexp */
  if (!fallback && auth_jwks_parse(fallback_jwks, sizeof fallback_jwks - 1, &fallback) != 0) fail("fallback jwks", 0);
  if (ks) check_set(ks);
  else ks = auth_jwks_ref(fallback);

  json_t *claims = (json_t *)1;
  rc = auth_jws_verify(ks, tok, tl, &claims);
  check_code("jws", rc);
  if (rc ? claims != NULL : !json_is_object(claims)) fail("jws result and claims disagree", rc);
  json_t *raw = payload_unverified(tok, tl);
  if (claims && !json_equal(claims, raw)) fail("verified claims are not the payload", 0);
  if (claims) run_claims(claims);
  else if (json_is_object(raw)) run_claims(raw);
  json_decref(raw);
  json_decref(claims);

  /* a second reference outlives the first */
  auth_jwks *again = auth_jwks_ref(ks);
  auth_jwks_free(ks);
  auth_jwks_free(again);

  if (tl >= 64) run_es256_der((const uint8_t *)tok + tl - 64);
  return 0;
}
