/* tests/unit/test_oauth_params.c — auth/oauth_params.c: the authorization
 * request's query and the token and revocation requests' form bodies.
 * Decoding ('+', %XX, encoded names), duplicates refused (and a parameter
 * without a value absent), every cap at its edge (kept at the cap, refused
 * one byte past it, never cut), the order of RFC 6749 §4.1.2.1 (client_id,
 * then redirect_uri, never redirected; then the rest, with state dropped
 * when it is the problem), required parameters per grant type, PKCE S256
 * only, codes and refresh tokens by shape and hash, and secrets wiped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/oauth_params.h"
#include "store/token.h"
#include "tests/unit/unit.h"

#define CH "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" /* RFC 7636 Appendix B */
#define VER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define RES "https%3A%2F%2Fgw.example%2Ft%2Facme%2Fmcp"
#define GOOD "response_type=code&client_id=mcpc_abc&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&state=a+b%2Fc" \
             "&code_challenge=" CH "&code_challenge_method=S256&resource=" RES "&scope=mcp"

static int az(const char *q, auth_oauth_authz_params *p) { return auth_oauth_authorize_parse(q, strlen(q), p); }
static int tk(const char *f, auth_oauth_token_params *p) { return auth_oauth_token_parse(f, strlen(f), p); }

/* s repeated n times (static buffer, one at a time) */
static const char *rep(const char *s, size_t n) {
  static char buf[AUTH_OAUTH_PARAMS_MAX + 64];
  buf[0] = 0;
  for (size_t i = 0; i < n; i++) strcat(buf, s);
  return buf;
}

TEST(authorize_good_request) {
  auth_oauth_authz_params p;
  CHECK_INT(az(GOOD, &p), 0);
  CHECK(p.error == NULL);
  CHECK_STR(p.client_id, "mcpc_abc");
  CHECK_STR(p.redirect_uri, "http://127.0.0.1:4000/cb");
  CHECK_STR(p.state, "a b/c");
  CHECK_STR(p.challenge, CH);
  CHECK_STR(p.resource, "https://gw.example/t/acme/mcp");
  /* order does not matter; names are decoded; unknown and empty ones ignored */
  CHECK_INT(az("resource=" RES "&code%5Fchallenge_method=S256&code_challenge=" CH "&x=%41&state=&state"
               "&client_id=c&response_type=code&redirect_uri=https%3A%2F%2Fa.example%2Fcb&&",
               &p),
            0);
  CHECK_STR(p.state, "");
  CHECK_STR(p.client_id, "c");
  /* no state at all is fine */
  CHECK_INT(az("response_type=code&client_id=c&redirect_uri=x&code_challenge=" CH
               "&code_challenge_method=S256&resource=r",
               &p),
            0);
}

TEST(authorize_client_and_redirect_first) {
  auth_oauth_authz_params p;
  /* client_id: missing, twice (also as an encoded name), too long, not printable → a page */
  const char *bad_client[] = {"redirect_uri=x",
                              "client_id=a&redirect_uri=x&client_id=b",
                              "client_id=a&client%5fid=b&redirect_uri=x",
                              "client_id=a%0A&redirect_uri=x",
                              "client_id=a%00b&redirect_uri=x",
                              "client_id=%C3%A9&redirect_uri=x",
                              "client_id=a%zz&redirect_uri=x",
                              "client_id=a%4",
                              NULL};
  for (const char *const *q = bad_client; *q; q++) {
    int rc = az(*q, &p);
    if (rc != AUTH_EOAUTH_CLIENT_ID) fprintf(stderr, "  %s: %d %s\n", *q, rc, p.why);
    CHECK_INT(rc, AUTH_EOAUTH_CLIENT_ID);
    CHECK_STR(p.client_id, "");
    CHECK(strstr(p.why, "client_id") != NULL);
  }
  char q[2048];
  snprintf(q, sizeof q, "client_id=%s&redirect_uri=x", rep("a", AUTH_OAUTH_CLIENT_ID_MAX));
  CHECK_INT(az(q, &p), AUTH_EOAUTH_REQUEST); /* 255 bytes: kept */
  CHECK_INT(strlen(p.client_id), AUTH_OAUTH_CLIENT_ID_MAX);
  snprintf(q, sizeof q, "client_id=%s&redirect_uri=x", rep("a", AUTH_OAUTH_CLIENT_ID_MAX + 1));
  CHECK_INT(az(q, &p), AUTH_EOAUTH_CLIENT_ID);
  CHECK_STR(p.why, "client_id is longer than 255 bytes");
  /* redirect_uri next, also a page: even when other things are wrong */
  CHECK_INT(az("client_id=c&response_type=token", &p), AUTH_EOAUTH_REDIRECT);
  CHECK_STR(p.why, "redirect_uri is required");
  CHECK_STR(p.client_id, "c");
  CHECK_INT(az("client_id=c&redirect_uri=a&redirect_uri=b&state=s", &p), AUTH_EOAUTH_REDIRECT);
  CHECK_STR(p.redirect_uri, "");
  snprintf(q, sizeof q, "client_id=c&redirect_uri=%s", rep("%2F", AUTH_OAUTH_URI_MAX));
  CHECK_INT(az(q, &p), AUTH_EOAUTH_REQUEST); /* 512 decoded bytes from 1536 encoded: kept */
  CHECK_INT(strlen(p.redirect_uri), AUTH_OAUTH_URI_MAX);
  snprintf(q, sizeof q, "client_id=c&redirect_uri=%s", rep("%2F", AUTH_OAUTH_URI_MAX + 1));
  CHECK_INT(az(q, &p), AUTH_EOAUTH_REDIRECT);
  CHECK_STR(p.redirect_uri, "");
  /* the whole request over its cap: nothing is read */
  char *big = malloc(AUTH_OAUTH_PARAMS_MAX + 2);
  CHECK(big);
  memset(big, 'a', AUTH_OAUTH_PARAMS_MAX + 1);
  memcpy(big, "client_id=c&redirect_uri=x&z=", 29);
  big[AUTH_OAUTH_PARAMS_MAX + 1] = 0;
  int rc = az(big, &p);
  big[AUTH_OAUTH_PARAMS_MAX] = 0;
  int rc2 = az(big, &p);
  free(big);
  CHECK_INT(rc, AUTH_EOAUTH_CLIENT_ID);
  CHECK_INT(rc2, AUTH_EOAUTH_REQUEST); /* at the cap: read (and response_type is missing) */
  CHECK_INT(auth_oauth_authorize_parse(NULL, 0, &p), AUTH_EOAUTH_CLIENT_ID);
}

/* A refusal that goes back to the client: code, a word of the sentence, and
 * whether state survived. */
static int back(const char *q, const char *error, const char *word, const char *state) {
  auth_oauth_authz_params p;
  int rc = az(q, &p);
  int ok = rc == AUTH_EOAUTH_REQUEST && p.error && !strcmp(p.error, error) && strstr(p.why, word) &&
           !strcmp(p.state, state) && !strcmp(p.client_id, "c") && !strcmp(p.redirect_uri, "r");
  if (!ok) fprintf(stderr, "  %s → %d %s: %s (state \"%s\")\n", q, rc, p.error ? p.error : "-", p.why, p.state);
  return ok;
}

#define CR "client_id=c&redirect_uri=r&"
#define PK "&code_challenge=" CH "&code_challenge_method=S256"

TEST(authorize_errors_back_to_the_client) {
  CHECK(back(CR "state=s&resource=x" PK, "invalid_request", "response_type is required", "s"));
  CHECK(back(CR "state=s&response_type=token&resource=x" PK, "unsupported_response_type", "response_type=code", "s"));
  CHECK(back(CR "state=s&response_type=code&response_type=code&resource=x" PK, "invalid_request",
             "response_type is given more than once", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x", "invalid_request", "PKCE is required", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x&code_challenge=" CH, "invalid_request", "PKCE is required", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x&code_challenge=" CH "&code_challenge_method=plain",
             "invalid_request", "must be S256", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x&code_challenge=" CH "&code_challenge_method=s256",
             "invalid_request", "must be S256", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x" PK "&code_challenge_method=plain", "invalid_request",
             "code_challenge_method is given more than once", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x&code_challenge=abc&code_challenge_method=S256",
             "invalid_request", "code_challenge must be 43", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c%2B"
                "&code_challenge_method=S256",
             "invalid_request", "code_challenge must be 43", "s"));
  CHECK(back(CR "state=s&response_type=code" PK, "invalid_target", "resource is required", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=a&resource=a" PK, "invalid_target", "one resource", "s"));
  /* state is the problem: not sent back */
  CHECK(back(CR "state=a&state=b&response_type=code&resource=x" PK, "invalid_request", "state is given more", ""));
  CHECK(back(CR "state=%0D%0ALocation:x&response_type=code&resource=x" PK, "invalid_request", "state must be", ""));
  char q[4096];
  snprintf(q, sizeof q, CR "response_type=code&resource=x" PK "&state=%s", rep("s", AUTH_OAUTH_STATE_MAX + 1));
  CHECK(back(q, "invalid_request", "state is longer than 1024 bytes", ""));
  snprintf(q, sizeof q, CR "response_type=code&resource=x" PK "&state=%s", rep("s", AUTH_OAUTH_STATE_MAX));
  auth_oauth_authz_params p;
  CHECK_INT(az(q, &p), 0);
  CHECK_INT(strlen(p.state), AUTH_OAUTH_STATE_MAX);
  /* any 43 base64url characters are a challenge (a SHA-256, as far as form goes) */
  CHECK_INT(az(CR "response_type=code&resource=x&code_challenge=" VER "&code_challenge_method=S256", &p), 0);
  /* a malformed escape anywhere, even in a parameter of no interest */
  CHECK(back(CR "state=s&response_type=code&resource=x" PK "&utm=%E", "invalid_request", "form-urlencoded", "s"));
  CHECK(back(CR "state=s&response_type=code&resource=x" PK "&%zz=1", "invalid_request", "form-urlencoded", "s"));
  /* a value of no interest may be anything well-formed */
  CHECK_INT(az(CR "state=s&response_type=code&resource=x" PK "&utm=%00%FF", &p), 0);
}

/* ---- token */

static char code[ST_TOKEN_BUFSZ], rt[ST_TOKEN_BUFSZ], at[ST_TOKEN_BUFSZ];

static int tok_refused(const char *f, const char *error, const char *word) {
  auth_oauth_token_params p;
  int rc = tk(f, &p);
  static const uint8_t zero[32];
  int ok = rc == AUTH_EOAUTH_REQUEST && p.error && !strcmp(p.error, error) && strstr(p.why, word) &&
           !memcmp(p.hash, zero, 32) && p.verifier[0] == 0;
  if (!ok) fprintf(stderr, "  %.80s → %d %s: %s\n", f, rc, p.error ? p.error : "-", p.why);
  return ok;
}

TEST(token_authorization_code) {
  CHECK_INT(st_token_new(AUTH_OAUTH_CODE_PREFIX, code, sizeof code), 0);
  CHECK_INT(st_token_new(AUTH_OAUTH_REFRESH_PREFIX, rt, sizeof rt), 0);
  CHECK_INT(st_token_new(AUTH_OAUTH_ACCESS_PREFIX, at, sizeof at), 0);
  static char f[8192];
  snprintf(f, sizeof f,
           "grant_type=authorization_code&code=%s&redirect_uri=http%%3A%%2F%%2F127.0.0.1%%3A4000%%2Fcb"
           "&client_id=mcpc_abc&code_verifier=" VER "&resource=ignored",
           code);
  auth_oauth_token_params p;
  CHECK_INT(tk(f, &p), 0);
  CHECK(!p.refresh);
  CHECK_STR(p.client_id, "mcpc_abc");
  CHECK_STR(p.redirect_uri, "http://127.0.0.1:4000/cb");
  CHECK_STR(p.verifier, VER);
  uint8_t h[32];
  CHECK_INT(st_token_hash(code, strlen(code), h), 0);
  CHECK(!memcmp(p.hash, h, 32));
  /* a form body is not NUL-terminated: the length decides */
  static char g[8300];
  snprintf(g, sizeof g, "%s&code=x", f);
  CHECK_INT(auth_oauth_token_parse(g, strlen(f), &p), 0);
  CHECK(tok_refused(g, "invalid_request", "code is given more than once"));

  /* required, by grant type */
  CHECK(tok_refused("grant_type=authorization_code&code=x&redirect_uri=r&code_verifier=" VER, "invalid_request",
                    "client_id is required"));
  CHECK(tok_refused("client_id=c&code=x", "invalid_request", "grant_type is required"));
  CHECK(tok_refused("grant_type=password&client_id=c&username=a", "unsupported_grant_type", "authorization_code"));
  CHECK(tok_refused("grant_type=authorization_code&client_id=c&redirect_uri=r&code_verifier=" VER, "invalid_request",
                    "code, redirect_uri and code_verifier are required"));
  CHECK(tok_refused("grant_type=authorization_code&client_id=c&code=x&code_verifier=" VER, "invalid_request",
                    "code, redirect_uri and code_verifier are required"));
  CHECK(tok_refused("grant_type=authorization_code&client_id=c&code=x&redirect_uri=r", "invalid_request",
                    "code, redirect_uri and code_verifier are required"));
  /* the verifier: 43..128 unreserved characters, never cut */
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=%s", code,
           rep("a", 128));
  CHECK_INT(tk(f, &p), 0);
  CHECK_INT(strlen(p.verifier), 128);
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=%s", code,
           rep("a", 129));
  CHECK(tok_refused(f, "invalid_request", "code_verifier is longer than 128 bytes"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=%s", code,
           rep("a", 42));
  CHECK(tok_refused(f, "invalid_request", "code_verifier must be 43 to 128"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=%s+", code,
           rep("a", 43));
  CHECK(tok_refused(f, "invalid_request", "code_verifier must be 43 to 128"));
  /* the redirect URI and client_id: never cut either */
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&code_verifier=" VER "&redirect_uri=%s",
           code, rep("r", AUTH_OAUTH_URI_MAX + 1));
  CHECK(tok_refused(f, "invalid_request", "redirect_uri is longer than 512 bytes"));
  snprintf(f, sizeof f, "grant_type=authorization_code&redirect_uri=r&code=%s&code_verifier=" VER "&client_id=%s",
           code, rep("c", AUTH_OAUTH_CLIENT_ID_MAX + 1));
  CHECK(tok_refused(f, "invalid_request", "client_id is longer than 255 bytes"));
  /* a code not of our shape, or a refresh token given as a code: not ours */
  CHECK(tok_refused("grant_type=authorization_code&client_id=c&code=abc&redirect_uri=r&code_verifier=" VER,
                    "invalid_grant", "not a code"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=" VER, rt);
  CHECK(tok_refused(f, "invalid_grant", "not a code"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%sA&redirect_uri=r&code_verifier=" VER, code);
  CHECK(tok_refused(f, "invalid_grant", "not a code"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=" VER,
           rep("A", 5000));
  CHECK(tok_refused(f, "invalid_grant", "not a code"));
  /* duplicates, also through an encoded name; a malformed escape */
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=" VER
           "&code%%5Fverifier=" VER, code);
  CHECK(tok_refused(f, "invalid_request", "code_verifier is given more than once"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=" VER
           "&grant_type=refresh_token", code);
  CHECK(tok_refused(f, "invalid_request", "grant_type is given more than once"));
  snprintf(f, sizeof f, "grant_type=authorization_code&client_id=c&code=%s&redirect_uri=r&code_verifier=" VER "&a=%%",
           code);
  CHECK(tok_refused(f, "invalid_request", "form-urlencoded"));
  CHECK(tok_refused("", "invalid_request", "client_id is required"));
  CHECK_INT(auth_oauth_token_parse(NULL, 0, &p), AUTH_EOAUTH_REQUEST);
}

TEST(token_refresh) {
  char f[512];
  snprintf(f, sizeof f, "grant_type=refresh_token&refresh_token=%s&client_id=c&scope=x", rt);
  auth_oauth_token_params p;
  CHECK_INT(tk(f, &p), 0);
  CHECK(p.refresh);
  uint8_t h[32];
  CHECK_INT(st_token_hash(rt, strlen(rt), h), 0);
  CHECK(!memcmp(p.hash, h, 32));
  CHECK_STR(p.redirect_uri, "");
  CHECK(tok_refused("grant_type=refresh_token&client_id=c", "invalid_request", "refresh_token is required"));
  snprintf(f, sizeof f, "grant_type=refresh_token&refresh_token=%s&client_id=c", at);
  CHECK(tok_refused(f, "invalid_grant", "not a code or refresh token"));
  snprintf(f, sizeof f, "grant_type=refresh_token&refresh_token=%s&client_id=c&refresh_token=%s", rt, rt);
  CHECK(tok_refused(f, "invalid_request", "refresh_token is given more than once"));
}

TEST(revoke_request) {
  char f[512];
  auth_oauth_revoke_params p;
  uint8_t h[32];
  snprintf(f, sizeof f, "token=%s&token_type_hint=refresh_token&client_id=c", at);
  CHECK_INT(auth_oauth_revoke_parse(f, strlen(f), &p), 0);
  CHECK(p.ours);
  CHECK_INT(st_token_hash(at, strlen(at), h), 0);
  CHECK(!memcmp(p.hash, h, 32));
  CHECK_STR(p.client_id, "c");
  snprintf(f, sizeof f, "token=%s&client_id=c", rt);
  CHECK_INT(auth_oauth_revoke_parse(f, strlen(f), &p), 0);
  CHECK(p.ours);
  /* not ours: nothing to revoke, not an error (RFC 7009 §2.2) */
  snprintf(f, sizeof f, "token=%s&client_id=c", code);
  CHECK_INT(auth_oauth_revoke_parse(f, strlen(f), &p), 0);
  CHECK(!p.ours);
  snprintf(f, sizeof f, "token=%s&client_id=c", rep("x", 300));
  CHECK_INT(auth_oauth_revoke_parse(f, strlen(f), &p), 0);
  CHECK(!p.ours);
  const char *bad[] = {"client_id=c", "token=x", "token=x&client_id=c&client_id=d", "token=x&token=y&client_id=c",
                       "token=x&client_id=c%", NULL};
  for (const char *const *b = bad; *b; b++) {
    CHECK_INT(auth_oauth_revoke_parse(*b, strlen(*b), &p), AUTH_EOAUTH_REQUEST);
    CHECK_STR(p.error, "invalid_request");
    CHECK(!p.ours);
  }
}

int main(void) {
  RUN(authorize_good_request);
  RUN(authorize_client_and_redirect_first);
  RUN(authorize_errors_back_to_the_client);
  RUN(token_authorization_code);
  RUN(token_refresh);
  RUN(revoke_request);
  return UNIT_DONE();
}
