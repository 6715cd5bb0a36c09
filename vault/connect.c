/* vault/connect.c — the connect flow's pure parts (see connect.h). */
#include "vault/connect.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jose.h"
#include "store/seal.h"
#include "vault/vault.h"

#define CONNECT_SEAL_KIND "vault.connect"

void vault_wipe(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

static int rand_text(char out[VAULT_CONNECT_RAND_LEN + 1]) {
  uint8_t r[32];
  if (RAND_bytes(r, sizeof r) != 1) return ST_ECRYPTO;
  auth_b64url_encode(r, sizeof r, out, VAULT_CONNECT_RAND_LEN + 1);
  OPENSSL_cleanse(r, sizeof r);
  return 0;
}

int vault_connect_new(vault_connect *c, const char *user, const char *connector, int64_t now) {
  memset(c, 0, sizeof *c);
  if (!*user || strlen(user) >= sizeof c->user || !vault_connector_name_valid(connector)) return ST_EINVAL;
  int rc;
  if ((rc = rand_text(c->state)) || (rc = rand_text(c->verifier))) return rc;
  memcpy(c->user, user, strlen(user) + 1);
  memcpy(c->connector, connector, strlen(connector) + 1);
  c->expires = now + VAULT_CONNECT_TTL_S;
  return 0;
}

int vault_connect_seal(st_store *st, const char *tenant, const vault_connect *c, char **out) {
  *out = NULL;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "s", c->state, "v", c->verifier, "u", c->user, "c",
                        c->connector, "e", (json_int_t)c->expires);
  if (!j) return ST_ENOMEM;
  char *txt = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (!txt) return ST_ENOMEM;
  uint8_t *blob = NULL;
  size_t bl = 0;
  int rc = st_seal(st, &(st_aad){tenant, CONNECT_SEAL_KIND, ""}, txt, strlen(txt), &blob, &bl);
  vault_wipe(txt);
  if (rc) return rc;
  size_t cap = AUTH_B64URL_ENCODED_LEN(bl) + 1;
  char *s = cap <= VAULT_CONNECT_COOKIE_MAX ? malloc(cap) : NULL;
  if (s) auth_b64url_encode(blob, bl, s, cap);
  free(blob);
  if (!s) return ST_ENOMEM;
  *out = s;
  return 0;
}

static int copy_member(const json_t *j, const char *k, char *out, size_t cap) {
  json_t *v = json_object_get(j, k);
  const char *s = json_string_value(v);
  if (!s || json_string_length(v) >= cap || strlen(s) != json_string_length(v)) return -1;
  memcpy(out, s, strlen(s) + 1);
  return 0;
}

int vault_connect_open(st_store *st, const char *tenant, const char *cookie, const char *state, int64_t now,
                       vault_connect *out) {
  memset(out, 0, sizeof *out);
  if (!cookie || !state) return VAULT_ECONNECT;
  size_t cn = strlen(cookie);
  if (!cn || cn > VAULT_CONNECT_COOKIE_MAX || strlen(state) != VAULT_CONNECT_RAND_LEN) return VAULT_ECONNECT;
  uint8_t *blob = malloc(AUTH_B64URL_DECODED_LEN(cn) + 1);
  size_t bl = 0;
  if (!blob) return ST_ENOMEM;
  if (auth_b64url_decode(cookie, cn, blob, AUTH_B64URL_DECODED_LEN(cn) + 1, &bl)) {
    free(blob);
    return VAULT_ECONNECT;
  }
  uint8_t *pt = NULL;
  size_t pn = 0;
  int rc = st_unseal(st, &(st_aad){tenant, CONNECT_SEAL_KIND, ""}, blob, bl, &pt, &pn);
  free(blob);
  if (rc) return VAULT_ECONNECT;
  json_t *j = json_loadb((const char *)pt, pn, JSON_REJECT_DUPLICATES, NULL);
  st_secret_free(pt, pn);
  json_t *e = json_object_get(j, "e");
  rc = VAULT_ECONNECT;
  if (json_is_object(j) && json_is_integer(e) && !copy_member(j, "s", out->state, sizeof out->state) &&
      !copy_member(j, "v", out->verifier, sizeof out->verifier) && !copy_member(j, "u", out->user, sizeof out->user) &&
      !copy_member(j, "c", out->connector, sizeof out->connector)) {
    out->expires = (int64_t)json_integer_value(e);
    if (strlen(out->state) == VAULT_CONNECT_RAND_LEN && CRYPTO_memcmp(out->state, state, VAULT_CONNECT_RAND_LEN) == 0 &&
        now < out->expires && vault_connector_name_valid(out->connector))
      rc = 0;
  }
  json_decref(j);
  if (rc) OPENSSL_cleanse(out, sizeof *out);
  return rc;
}

/* ---- forms ------------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int err;
} sbuf;

static void sb_raw(sbuf *b, const char *s, size_t n) {
  if (b->err) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = malloc(cap);
    if (!p) {
      b->err = ST_ENOMEM;
      return;
    }
    if (b->p) {
      memcpy(p, b->p, b->n);
      OPENSSL_cleanse(b->p, b->cap); /* secrets pass through */
      free(b->p);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_raw(b, s, strlen(s)); }

/* application/x-www-form-urlencoded / RFC 3986 unreserved kept */
static void sb_enc(sbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
        ch == '_' || ch == '~') {
      sb_raw(b, (const char *)&ch, 1);
    } else {
      char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
      sb_raw(b, e, 3);
    }
  }
}

static void sb_param(sbuf *b, const char *k, const char *v) {
  if (b->n) sb_str(b, "&");
  sb_str(b, k);
  sb_str(b, "=");
  sb_enc(b, v);
}

static int sb_done(sbuf *b, char **out) {
  if (b->err || !b->p) {
    if (b->p) vault_wipe(b->p);
    *out = NULL;
    return b->err ? b->err : ST_ENOMEM;
  }
  *out = b->p;
  return 0;
}

int vault_connect_authorize_url(const json_t *auth, const char *redirect_uri, const vault_connect *c, char **url) {
  *url = NULL;
  const char *az = json_string_value(json_object_get(auth, "authorize_url"));
  const char *cid = json_string_value(json_object_get(auth, "client_id"));
  if (!az || !cid) return ST_EINVAL;
  uint8_t h[32];
  char challenge[VAULT_CONNECT_RAND_LEN + 1];
  if (st_sha256(c->verifier, strlen(c->verifier), h)) return ST_ECRYPTO;
  auth_b64url_encode(h, sizeof h, challenge, sizeof challenge);
  sbuf q = {0};
  sb_param(&q, "response_type", "code");
  sb_param(&q, "client_id", cid);
  sb_param(&q, "redirect_uri", redirect_uri);
  json_t *scopes = json_object_get(auth, "scopes");
  if (json_array_size(scopes)) {
    sbuf s = {0};
    size_t i;
    json_t *v;
    json_array_foreach(scopes, i, v) {
      if (i) sb_str(&s, " ");
      sb_str(&s, json_string_value(v) ?: "");
    }
    char *joined = NULL;
    if (sb_done(&s, &joined) == 0) {
      sb_param(&q, "scope", joined);
      free(joined);
    } else {
      q.err = ST_ENOMEM;
    }
  }
  sb_param(&q, "state", c->state);
  sb_param(&q, "code_challenge", challenge);
  sb_param(&q, "code_challenge_method", "S256");
  char *qs = NULL;
  int rc = sb_done(&q, &qs);
  if (rc) return rc;
  sbuf u = {0};
  sb_str(&u, az);
  sb_str(&u, strchr(az, '?') ? "&" : "?");
  sb_str(&u, qs);
  free(qs);
  return sb_done(&u, url);
}

/* client authentication (RFC 6749 §2.3.1): the secret in the body
 * (client_secret_post) or HTTP Basic with both parts form-encoded */
static int client_auth(sbuf *b, const char *client_id, const char *secret, int post, char **authz) {
  *authz = NULL;
  sb_param(b, "client_id", client_id);
  if (!secret) return 0;
  if (post) {
    sb_param(b, "client_secret", secret);
    return 0;
  }
  sbuf cred = {0};
  sb_enc(&cred, client_id);
  sb_str(&cred, ":");
  sb_enc(&cred, secret);
  char *c = NULL;
  int rc = sb_done(&cred, &c);
  if (rc) return rc;
  size_t cn = strlen(c), cap = 4 * ((cn + 2) / 3) + 1 + 6;
  char *h = malloc(cap);
  if (!h) {
    vault_wipe(c);
    return ST_ENOMEM;
  }
  memcpy(h, "Basic ", 6);
  EVP_EncodeBlock((unsigned char *)h + 6, (const unsigned char *)c, (int)cn);
  vault_wipe(c);
  *authz = h;
  return 0;
}

static int finish(sbuf *b, int rc, char **body, char **authz) {
  if (rc == 0) rc = sb_done(b, body);
  else if (b->p) vault_wipe(b->p);
  if (rc) {
    vault_wipe(*authz);
    *authz = NULL;
    *body = NULL;
  }
  return rc;
}

static int auth_post(const json_t *auth) {
  return !strcmp(json_string_value(json_object_get(auth, "token_auth")) ?: "", "client_secret_post");
}

int vault_connect_token_request(const json_t *auth, const char *client_secret, const char *code,
                                const char *redirect_uri, const char *verifier, char **body, char **authz) {
  *body = *authz = NULL;
  const char *cid = json_string_value(json_object_get(auth, "client_id"));
  if (!cid) return ST_EINVAL;
  sbuf b = {0};
  sb_param(&b, "grant_type", "authorization_code");
  sb_param(&b, "code", code);
  sb_param(&b, "redirect_uri", redirect_uri);
  sb_param(&b, "code_verifier", verifier);
  int rc = client_auth(&b, cid, client_secret, auth_post(auth), authz);
  return finish(&b, rc, body, authz);
}

int vault_refresh_request(const json_t *auth, const char *client_secret, const char *refresh, char **body,
                          char **authz) {
  *body = *authz = NULL;
  const char *cid = json_string_value(json_object_get(auth, "client_id"));
  if (!cid) return ST_EINVAL;
  sbuf b = {0};
  sb_param(&b, "grant_type", "refresh_token");
  sb_param(&b, "refresh_token", refresh);
  int rc = client_auth(&b, cid, client_secret, auth_post(auth), authz);
  return finish(&b, rc, body, authz);
}

int vault_revoke_request(const char *client_id, const char *client_secret, int post, const char *token,
                         const char *hint, char **body, char **authz) {
  *body = *authz = NULL;
  sbuf b = {0};
  sb_param(&b, "token", token);
  if (hint) sb_param(&b, "token_type_hint", hint);
  int rc = client_auth(&b, client_id, client_secret, post, authz);
  return finish(&b, rc, body, authz);
}
