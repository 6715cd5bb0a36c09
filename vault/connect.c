/* vault/connect.c — the connect flow's pure parts (see connect.h). */
#include "vault/connect.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/form.h"
#include "auth/jose.h"
#include "store/seal.h"
#include "vault/vault.h"

#define CONNECT_SEAL_KIND "vault.connect"

void vault_wipe(char *s) { auth_wipe(s); }

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
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "s", c->state, "v", c->verifier, "u", c->user, "c",
                        c->connector, "e", (json_int_t)c->expires, "b", c->bind);
  if (!j) return ST_ENOMEM;
  int rc = auth_seal_text(st, tenant, CONNECT_SEAL_KIND, j, VAULT_CONNECT_COOKIE_MAX, out);
  json_object_clear(j);
  json_decref(j);
  return rc;
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
  if (!cookie || !state || strlen(state) != VAULT_CONNECT_RAND_LEN) return VAULT_ECONNECT;
  json_t *j = NULL;
  if (auth_open_text(st, tenant, CONNECT_SEAL_KIND, cookie, VAULT_CONNECT_COOKIE_MAX, &j)) return VAULT_ECONNECT;
  int rc;
  json_t *e = json_object_get(j, "e");
  rc = VAULT_ECONNECT;
  if (json_is_object(j) && json_is_integer(e) && !copy_member(j, "s", out->state, sizeof out->state) &&
      !copy_member(j, "v", out->verifier, sizeof out->verifier) && !copy_member(j, "u", out->user, sizeof out->user) &&
      !copy_member(j, "c", out->connector, sizeof out->connector) && !copy_member(j, "b", out->bind, sizeof out->bind)) {
    out->expires = (int64_t)json_integer_value(e);
    if (strlen(out->state) == VAULT_CONNECT_RAND_LEN && CRYPTO_memcmp(out->state, state, VAULT_CONNECT_RAND_LEN) == 0 &&
        now < out->expires && vault_connector_name_valid(out->connector))
      rc = 0;
  }
  json_decref(j);
  if (rc) OPENSSL_cleanse(out, sizeof *out);
  return rc;
}

/* ---- the key form (user_header) ---------------------------------------------- */

#define KEY_SEAL_KIND "vault.key"

/* base64url(SHA-256(the connector's binding)) */
static int bind_digest(const json_t *rec, char out[VAULT_CONNECT_RAND_LEN + 1]) {
  json_t *b = vault_connector_bind(rec);
  if (!b) return ST_EINVAL;
  uint8_t h[32];
  if (st_sha256(json_string_value(b), json_string_length(b), h)) return ST_ECRYPTO;
  auth_b64url_encode(h, sizeof h, out, VAULT_CONNECT_RAND_LEN + 1);
  return 0;
}

int vault_key_state_seal(st_store *st, const char *tenant, const char *user, const char *connector, const json_t *rec,
                         char **out) {
  *out = NULL;
  char d[VAULT_CONNECT_RAND_LEN + 1];
  int rc = bind_digest(rec, d);
  if (rc) return rc;
  json_t *j = json_pack("{s:s, s:s, s:s}", "u", user, "c", connector, "b", d);
  if (!j) return ST_ENOMEM;
  rc = auth_seal_text(st, tenant, KEY_SEAL_KIND, j, VAULT_KEY_STATE_MAX, out);
  json_decref(j);
  return rc;
}

int vault_key_state_open(st_store *st, const char *tenant, const char *text, const char *user, const char *connector,
                         vault_key_state *out) {
  memset(out, 0, sizeof *out);
  json_t *j = NULL;
  if (!text || auth_open_text(st, tenant, KEY_SEAL_KIND, text, VAULT_KEY_STATE_MAX, &j)) return VAULT_ECONNECT;
  char u[65], c[33];
  int rc = VAULT_ECONNECT;
  if (json_is_object(j) && !copy_member(j, "u", u, sizeof u) && !copy_member(j, "c", c, sizeof c) &&
      !copy_member(j, "b", out->bind, sizeof out->bind) && !strcmp(u, user) && !strcmp(c, connector) &&
      strlen(out->bind) == VAULT_CONNECT_RAND_LEN)
    rc = 0;
  json_decref(j);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

int vault_key_state_matches(const vault_key_state *s, const json_t *rec) {
  char d[VAULT_CONNECT_RAND_LEN + 1];
  return strlen(s->bind) == VAULT_CONNECT_RAND_LEN && bind_digest(rec, d) == 0 &&
         CRYPTO_memcmp(d, s->bind, VAULT_CONNECT_RAND_LEN) == 0;
}

/* ---- the connect flow's connector ------------------------------------------ */

/* base64url(SHA-256(binding \n authorize_url \n token_url \n client_id)):
 * the binding changes with a move or a rekey; the authorization server
 * and client too, for a connector deleted and made again (its binding
 * starts over) */
static int connect_digest(const json_t *rec, char out[VAULT_CONNECT_RAND_LEN + 1]) {
  json_t *b = vault_connector_bind(rec), *auth = json_object_get(rec, "auth");
  if (!b) return ST_EINVAL;
  json_t *text = json_sprintf("%s\n%s\n%s\n%s", json_string_value(b),
                              json_string_value(json_object_get(auth, "authorize_url")) ?: "",
                              json_string_value(json_object_get(auth, "token_url")) ?: "",
                              json_string_value(json_object_get(auth, "client_id")) ?: "");
  if (!text) return ST_ENOMEM;
  uint8_t h[32];
  int rc = st_sha256(json_string_value(text), json_string_length(text), h) ? ST_ECRYPTO : 0;
  json_decref(text);
  if (!rc) auth_b64url_encode(h, sizeof h, out, VAULT_CONNECT_RAND_LEN + 1);
  return rc;
}

int vault_connect_bind(vault_connect *c, const json_t *rec) { return connect_digest(rec, c->bind); }

int vault_connect_matches(const vault_connect *c, const json_t *rec) {
  char d[VAULT_CONNECT_RAND_LEN + 1];
  return strlen(c->bind) == VAULT_CONNECT_RAND_LEN && connect_digest(rec, d) == 0 &&
         CRYPTO_memcmp(d, c->bind, VAULT_CONNECT_RAND_LEN) == 0;
}

/* ---- forms ------------------------------------------------------------------ */

/* RFC 8707: the resource the tokens are for, when the connector names one */
static void form_resource(auth_form *f, const json_t *auth) {
  const char *r = json_string_value(json_object_get(auth, "resource"));
  if (r && *r) auth_form_param(f, "resource", r);
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
  auth_form q = {0};
  auth_form_param(&q, "response_type", "code");
  auth_form_param(&q, "client_id", cid);
  auth_form_param(&q, "redirect_uri", redirect_uri);
  json_t *scopes = json_object_get(auth, "scopes");
  if (json_array_size(scopes)) {
    auth_form s = {0};
    size_t i;
    json_t *v;
    json_array_foreach(scopes, i, v) {
      if (i) auth_form_str(&s, " ");
      auth_form_str(&s, json_string_value(v) ?: "");
    }
    char *joined = NULL;
    if (auth_form_done(&s, &joined) == 0) {
      auth_form_param(&q, "scope", joined);
      free(joined);
    } else {
      q.fail = true;
    }
  }
  form_resource(&q, auth);
  auth_form_param(&q, "state", c->state);
  auth_form_param(&q, "code_challenge", challenge);
  auth_form_param(&q, "code_challenge_method", "S256");
  char *qs = NULL;
  int rc = auth_form_done(&q, &qs);
  if (rc) return rc;
  auth_form u = {0};
  auth_form_str(&u, az);
  auth_form_str(&u, strchr(az, '?') ? "&" : "?");
  auth_form_str(&u, qs);
  free(qs);
  return auth_form_done(&u, url);
}

/* client authentication (RFC 6749 §2.3.1): the secret in the body
 * (client_secret_post) or HTTP Basic with both parts form-encoded */
static int client_auth(auth_form *b, const char *client_id, const char *secret, int post, char **authz) {
  *authz = NULL;
  auth_form_param(b, "client_id", client_id);
  if (!secret) return 0;
  if (post) {
    auth_form_param(b, "client_secret", secret);
    return 0;
  }
  return auth_basic_credentials(client_id, secret, authz);
}

static int finish(auth_form *b, int rc, char **body, char **authz) {
  if (rc == 0) rc = auth_form_done(b, body);
  else auth_wipe(b->p);
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
  auth_form b = {0};
  auth_form_param(&b, "grant_type", "authorization_code");
  auth_form_param(&b, "code", code);
  auth_form_param(&b, "redirect_uri", redirect_uri);
  auth_form_param(&b, "code_verifier", verifier);
  form_resource(&b, auth);
  int rc = client_auth(&b, cid, client_secret, auth_post(auth), authz);
  return finish(&b, rc, body, authz);
}

int vault_refresh_request(const json_t *auth, const char *client_secret, const char *refresh, char **body,
                          char **authz) {
  *body = *authz = NULL;
  const char *cid = json_string_value(json_object_get(auth, "client_id"));
  if (!cid) return ST_EINVAL;
  auth_form b = {0};
  auth_form_param(&b, "grant_type", "refresh_token");
  auth_form_param(&b, "refresh_token", refresh);
  form_resource(&b, auth);
  int rc = client_auth(&b, cid, client_secret, auth_post(auth), authz);
  return finish(&b, rc, body, authz);
}

int vault_revoke_request(const char *client_id, const char *client_secret, int post, const char *token,
                         const char *hint, char **body, char **authz) {
  *body = *authz = NULL;
  auth_form b = {0};
  auth_form_param(&b, "token", token);
  if (hint) auth_form_param(&b, "token_type_hint", hint);
  int rc = client_auth(&b, client_id, client_secret, post, authz);
  return finish(&b, rc, body, authz);
}
