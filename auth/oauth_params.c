/* auth/oauth_params.c — the authorization, token and revocation requests'
 * parameters (see oauth_params.h).
 *
 * One scanner walks the pairs once and records, for each parameter the
 * endpoint knows, whether it was absent, given once (and its value), given
 * more than once, too long, or malformed; each endpoint then reads those
 * states in the order its RFC needs. Nothing is allocated: values are
 * decoded straight into the caller's fixed buffers or into scratch buffers
 * on the stack that are wiped before returning. */
#include "auth/oauth_params.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/auth.h"

enum { P_ABSENT, P_OK, P_LONG, P_BAD };

#define NAME_MAX_LEN 32 /* longer decoded names are no parameter of ours */
#define DEFS_MAX 8

typedef struct pdef {
  const char *name;
  char *out; /* decoded value, NUL-terminated, "" unless the state is P_OK */
  size_t cap; /* bytes of out, NUL included */
} pdef;

typedef struct pscan {
  int st[DEFS_MAX];
  int seen[DEFS_MAX]; /* non-empty occurrences */
  bool malformed;     /* a bad %-escape in a name or in an unknown parameter's value */
} pscan;

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes s[0..n) (form encoding) into out when out is not NULL, writing
 * at most cap - 1 bytes and a NUL; *dlen gets the whole decoded length and
 * *printable whether every decoded byte is %x20-7E. -1 on a '%' without two
 * hex digits, else 0. */
static int decode(const char *s, size_t n, char *out, size_t cap, size_t *dlen, bool *printable) {
  size_t o = 0;
  bool pr = true;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n) return -1;
      int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
      if (h < 0 || l < 0) return -1;
      c = (unsigned char)(h * 16 + l);
      i += 2;
    }
    if (c < 0x20 || c > 0x7e) pr = false;
    if (out && o + 1 < cap) out[o] = (char)c;
    o++;
  }
  if (out && cap) out[o < cap ? o : cap - 1] = 0;
  *dlen = o;
  *printable = pr;
  return 0;
}

static void scan(const char *s, size_t len, const pdef *defs, int ndefs, pscan *ps) {
  memset(ps, 0, sizeof *ps);
  for (int i = 0; i < ndefs; i++) defs[i].out[0] = 0;
  size_t pos = 0;
  while (pos < len) {
    const char *pair = s + pos;
    const char *amp = memchr(pair, '&', len - pos);
    size_t plen = amp ? (size_t)(amp - pair) : len - pos;
    pos += plen + 1;
    if (plen == 0) continue;
    const char *eq = memchr(pair, '=', plen);
    size_t nlen = eq ? (size_t)(eq - pair) : plen;
    const char *val = eq ? eq + 1 : pair + plen;
    size_t vlen = eq ? plen - nlen - 1 : 0;
    char name[NAME_MAX_LEN + 1];
    size_t dn, dv;
    bool pr;
    if (decode(pair, nlen, name, sizeof name, &dn, &pr)) {
      ps->malformed = true;
      continue;
    }
    int k = -1;
    for (int i = 0; dn <= NAME_MAX_LEN && i < ndefs && k < 0; i++)
      if (strlen(defs[i].name) == dn && !memcmp(defs[i].name, name, dn)) k = i;
    if (k < 0) {
      /* unknown: ignored (RFC 6749 §3.1), but it must still be well-formed */
      if (decode(val, vlen, NULL, 0, &dv, &pr)) ps->malformed = true;
      continue;
    }
    if (vlen == 0) continue; /* a parameter without a value is absent (§3.1) */
    if (ps->seen[k]++) continue;
    if (decode(val, vlen, NULL, 0, &dv, &pr)) ps->st[k] = P_BAD;
    else if (dv >= defs[k].cap) ps->st[k] = P_LONG;
    else if (!pr) ps->st[k] = P_BAD;
    else {
      decode(val, vlen, defs[k].out, defs[k].cap, &dv, &pr);
      ps->st[k] = P_OK;
    }
  }
  /* only a value given once and well-formed is kept */
  for (int i = 0; i < ndefs; i++)
    if (ps->seen[i] > 1 || ps->st[i] != P_OK) OPENSSL_cleanse(defs[i].out, defs[i].cap);
}

static int refuse(const char **error, char *why, int rc, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, AUTH_OAUTH_WHY_MAX, fmt, ap);
  va_end(ap);
  *error = code;
  return rc;
}

/* The syntactic refusal of parameter i, if any (given more than once, too
 * long, malformed): rc with code and a sentence; else 0. */
static int syntax(const pscan *ps, const pdef *d, int i, const char **error, char *why, const char *code, int rc) {
  if (ps->seen[i] > 1) return refuse(error, why, rc, code, "%s is given more than once", d[i].name);
  if (ps->st[i] == P_LONG) return refuse(error, why, rc, code, "%s is longer than %zu bytes", d[i].name, d[i].cap - 1);
  if (ps->st[i] == P_BAD)
    return refuse(error, why, rc, code, "%s must be printable ASCII, percent-encoded correctly", d[i].name);
  return 0;
}

static const char MALFORMED[] =
    "the request is not valid application/x-www-form-urlencoded: a '%' without two hex digits after it";

/* ---- authorize */

enum { A_CLIENT, A_REDIRECT, A_STATE, A_RT, A_CH, A_CHM, A_RES, A_N };

int auth_oauth_authorize_parse(const char *q, size_t len, auth_oauth_authz_params *p) {
  memset(p, 0, sizeof *p);
  char rt[16], chm[16];
  const pdef d[A_N] = {
      [A_CLIENT] = {"client_id", p->client_id, sizeof p->client_id},
      [A_REDIRECT] = {"redirect_uri", p->redirect_uri, sizeof p->redirect_uri},
      [A_STATE] = {"state", p->state, sizeof p->state},
      [A_RT] = {"response_type", rt, sizeof rt},
      [A_CH] = {"code_challenge", p->challenge, sizeof p->challenge},
      [A_CHM] = {"code_challenge_method", chm, sizeof chm},
      [A_RES] = {"resource", p->resource, sizeof p->resource},
  };
  if (len > AUTH_OAUTH_PARAMS_MAX)
    return refuse(&p->error, p->why, AUTH_EOAUTH_CLIENT_ID, "invalid_request",
                  "the authorization request is longer than %d bytes", AUTH_OAUTH_PARAMS_MAX);
  pscan ps;
  scan(q ? q : "", q ? len : 0, d, A_N, &ps);
  int rc;
  /* 1. who asks, and where to: never redirected when wrong */
  if ((rc = syntax(&ps, d, A_CLIENT, &p->error, p->why, "invalid_request", AUTH_EOAUTH_CLIENT_ID))) return rc;
  if (ps.st[A_CLIENT] == P_ABSENT)
    return refuse(&p->error, p->why, AUTH_EOAUTH_CLIENT_ID, "invalid_request", "client_id is required");
  if ((rc = syntax(&ps, d, A_REDIRECT, &p->error, p->why, "invalid_request", AUTH_EOAUTH_REDIRECT))) return rc;
  if (ps.st[A_REDIRECT] == P_ABSENT)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REDIRECT, "invalid_request", "redirect_uri is required");
  /* 2. the rest goes back to the client (state cleared when it is the problem) */
  if ((rc = syntax(&ps, d, A_STATE, &p->error, p->why, "invalid_request", AUTH_EOAUTH_REQUEST))) return rc;
  if (ps.malformed) return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "%s", MALFORMED);
  if (ps.seen[A_RES] > 1)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_target",
                  "one resource per authorization request: the gateway issues a grant for one MCP endpoint");
  for (int i = A_RT; i < A_N; i++)
    if ((rc = syntax(&ps, d, i, &p->error, p->why, i == A_RES ? "invalid_target" : "invalid_request",
                     AUTH_EOAUTH_REQUEST)))
      return rc;
  if (ps.st[A_RT] == P_ABSENT)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "response_type is required");
  if (strcmp(rt, "code"))
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "unsupported_response_type",
                  "only response_type=code is supported");
  if (ps.st[A_CH] == P_ABSENT || ps.st[A_CHM] == P_ABSENT)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                  "PKCE is required: code_challenge (43 characters) with code_challenge_method=S256");
  if (strcmp(chm, "S256"))
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                  "code_challenge_method must be S256 (plain is not supported)");
  if (!auth_oauth_challenge_ok(p->challenge))
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                  "code_challenge must be 43 base64url characters (the SHA-256 of the code_verifier)");
  if (ps.st[A_RES] == P_ABSENT)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_target",
                  "resource is required: the MCP endpoint the grant is for (RFC 8707)");
  return 0;
}

/* ---- token */

enum { T_GT, T_CLIENT, T_CODE, T_REDIRECT, T_VERIFIER, T_RT, T_N };

static const char NOT_OURS[] = "not a code or refresh token of this gateway";

int auth_oauth_token_parse(const char *form, size_t len, auth_oauth_token_params *p) {
  memset(p, 0, sizeof *p);
  char gt[32], code[ST_TOKEN_BUFSZ], rtok[ST_TOKEN_BUFSZ];
  const pdef d[T_N] = {
      [T_GT] = {"grant_type", gt, sizeof gt},
      [T_CLIENT] = {"client_id", p->client_id, sizeof p->client_id},
      [T_CODE] = {"code", code, sizeof code},
      [T_REDIRECT] = {"redirect_uri", p->redirect_uri, sizeof p->redirect_uri},
      [T_VERIFIER] = {"code_verifier", p->verifier, sizeof p->verifier},
      [T_RT] = {"refresh_token", rtok, sizeof rtok},
  };
  if (len > AUTH_OAUTH_PARAMS_MAX)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "the request is longer than %d bytes",
                  AUTH_OAUTH_PARAMS_MAX);
  pscan ps;
  int rc = 0;
  scan(form ? form : "", form ? len : 0, d, T_N, &ps);
  for (int i = 0; i < T_N && !rc; i++) {
    /* a code or refresh token too long for ours is simply not ours */
    if ((i == T_CODE || i == T_RT) && ps.seen[i] == 1 && ps.st[i] == P_LONG) continue;
    rc = syntax(&ps, d, i, &p->error, p->why, "invalid_request", AUTH_EOAUTH_REQUEST);
  }
  if (rc) goto done;
  if (ps.malformed) {
    rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "%s", MALFORMED);
  } else if (ps.st[T_CLIENT] == P_ABSENT) {
    rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                "client_id is required (public clients identify themselves)");
  } else if (ps.st[T_GT] == P_ABSENT) {
    rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "grant_type is required");
  } else if (!strcmp(gt, "authorization_code")) {
    if (ps.st[T_CODE] == P_ABSENT || ps.st[T_REDIRECT] == P_ABSENT || ps.st[T_VERIFIER] == P_ABSENT)
      rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                  "code, redirect_uri and code_verifier are required");
    else if (!auth_oauth_verifier_ok(p->verifier))
      rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request",
                  "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636)");
    else if (ps.st[T_CODE] != P_OK || auth_oauth_token_hash(code, AUTH_OAUTH_CODE_PREFIX, p->hash))
      rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_grant", "%s", NOT_OURS);
  } else if (!strcmp(gt, "refresh_token")) {
    p->refresh = true;
    if (ps.st[T_RT] == P_ABSENT)
      rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "refresh_token is required");
    else if (ps.st[T_RT] != P_OK || auth_oauth_token_hash(rtok, AUTH_OAUTH_REFRESH_PREFIX, p->hash))
      rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_grant", "%s", NOT_OURS);
  } else {
    rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token");
  }
done:
  OPENSSL_cleanse(code, sizeof code);
  OPENSSL_cleanse(rtok, sizeof rtok);
  if (rc) {
    OPENSSL_cleanse(p->verifier, sizeof p->verifier);
    OPENSSL_cleanse(p->hash, sizeof p->hash);
  }
  return rc;
}

/* ---- revoke */

enum { R_TOKEN, R_CLIENT, R_N };

int auth_oauth_revoke_parse(const char *form, size_t len, auth_oauth_revoke_params *p) {
  memset(p, 0, sizeof *p);
  char tok[ST_TOKEN_BUFSZ];
  const pdef d[R_N] = {
      [R_TOKEN] = {"token", tok, sizeof tok},
      [R_CLIENT] = {"client_id", p->client_id, sizeof p->client_id},
  };
  if (len > AUTH_OAUTH_PARAMS_MAX)
    return refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "the request is longer than %d bytes",
                  AUTH_OAUTH_PARAMS_MAX);
  pscan ps;
  int rc = 0;
  scan(form ? form : "", form ? len : 0, d, R_N, &ps);
  for (int i = 0; i < R_N && !rc; i++) {
    if (i == R_TOKEN && ps.seen[i] == 1 && ps.st[i] == P_LONG) continue; /* not ours */
    rc = syntax(&ps, d, i, &p->error, p->why, "invalid_request", AUTH_EOAUTH_REQUEST);
  }
  if (rc) goto done;
  if (ps.malformed) rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "%s", MALFORMED);
  else if (ps.seen[R_TOKEN] == 0 || ps.st[R_CLIENT] == P_ABSENT)
    rc = refuse(&p->error, p->why, AUTH_EOAUTH_REQUEST, "invalid_request", "token and client_id are required");
  else if (ps.st[R_TOKEN] == P_OK)
    p->ours = auth_oauth_token_hash(tok, AUTH_OAUTH_ACCESS_PREFIX, p->hash) == 0 ||
              auth_oauth_token_hash(tok, AUTH_OAUTH_REFRESH_PREFIX, p->hash) == 0;
done:
  OPENSSL_cleanse(tok, sizeof tok);
  if (!p->ours) OPENSSL_cleanse(p->hash, sizeof p->hash);
  return rc;
}
