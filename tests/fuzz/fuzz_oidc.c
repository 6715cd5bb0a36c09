/* tests/fuzz/fuzz_oidc.c — libFuzzer driver for what the sign-in reads from
 * an OpenID provider besides JOSE (that is fuzz_jose.c's): the discovery
 * document (auth_oidc_discovery_parse, against an https issuer and a
 * loopback http one) and the token endpoint's reply
 * (auth_login_token_response, as a 200 and as a 400). The seed corpus
 * (tests/fuzz/corpus/oidc/) holds real shapes: Okta's org and custom
 * authorization servers, Entra's v2.0 endpoint, oidc-provider's document
 * as the tests' Okta stand-in serves it, and token replies.
 *
 * The API is held to its word: a document is accepted exactly when a
 * provider comes back, and then its endpoints are URLs of the issuer's
 * scheme within AUTH_OIDC_URL_MAX, and doc_issuer normalises to the
 * configured issuer; a refusal always says why and never returns a
 * provider. A token reply yields an id_token exactly on success, never
 * empty, within AUTH_JOSE_TOKEN_MAX; a refusal says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/login.h"
#include "auth/oidc.h"
#include "auth/oidc_provider.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_oidc: %s\n", what);
  abort();
}

static void discovery(const char *doc, size_t len, const char *issuer) {
  auth_oidc_provider *p = NULL;
  char why[300];
  int rc = auth_oidc_discovery_parse(doc, len, "acme", issuer, "client-1", 1000, &p, why, sizeof why);
  if (rc == 0) {
    if (!p) fail("accepted without a provider");
    const char *scheme = strncmp(issuer, "http://", 7) ? "https://" : "http://";
    const char *urls[] = {p->authorization_endpoint, p->token_endpoint, p->jwks_uri};
    for (int i = 0; i < 3; i++)
      if (strncmp(urls[i], scheme, strlen(scheme)) || strlen(urls[i]) > AUTH_OIDC_URL_MAX || strchr(urls[i], '#'))
        fail("an endpoint outside the rules");
    if (p->end_session_endpoint[0] && strncmp(p->end_session_endpoint, scheme, strlen(scheme)))
      fail("end_session_endpoint of another scheme");
    char norm[1100], w[200];
    if (auth_oidc_issuer_normalise(p->doc_issuer, norm, sizeof norm, w, sizeof w) || strcmp(norm, issuer))
      fail("doc_issuer is not the configured issuer");
    if (p->jwks) fail("keys before any were fetched");
    auth_oidc_provider_free(p);
  } else {
    if (p) fail("refused with a provider");
    if (rc != AUTH_EINVALID && rc != ST_ENOMEM) fail("unexpected code");
    if (rc == AUTH_EINVALID && !why[0]) fail("refused without a reason");
  }
}

static void token_reply(const char *body, size_t len, int status) {
  char *tok = NULL, why[200];
  int rc = auth_login_token_response(status, body, len, &tok, why, sizeof why);
  if (rc == 0) {
    if (status != 200 || !tok || !tok[0] || strlen(tok) > AUTH_JOSE_TOKEN_MAX) fail("bad id_token accepted");
    free(tok);
  } else {
    if (tok) fail("refused with a token");
    if (rc == AUTH_ELOGIN && !why[0]) fail("refused without a reason");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *d = (const char *)data;
  discovery(d, size, "https://acme.okta.com");
  discovery(d, size, "http://127.0.0.1:3000");
  token_reply(d, size, 200);
  token_reply(d, size, 400);
  return 0;
}
