/* auth/login.c — sign-in state, the authorization request, the code
 * exchange and account linking (see login.h). */
#include "auth/login.h"

#include "auth/form.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/auth.h"
#include "auth/jose.h"
#include "auth/oidc.h"
#include "store/dir.h"
#include "store/seal.h"

#define LOGIN_SEAL_KIND "login.state"

static int rand_text(char out[AUTH_LOGIN_RAND_LEN + 1]) {
  uint8_t r[32];
  if (RAND_bytes(r, sizeof r) != 1) return ST_ECRYPTO;
  auth_b64url_encode(r, sizeof r, out, AUTH_LOGIN_RAND_LEN + 1);
  OPENSSL_cleanse(r, sizeof r);
  return 0;
}

int auth_login_new(auth_login *l, const char *issuer, const char *return_to, int64_t now) {
  memset(l, 0, sizeof *l);
  size_t rn = return_to ? strlen(return_to) : 0;
  if (rn > AUTH_LOGIN_RETURN_MAX || (rn && (return_to[0] != '/' || (rn > 1 && return_to[1] == '/'))) ||
      strlen(issuer) >= sizeof l->issuer)
    return ST_EINVAL;
  for (size_t i = 0; i < rn; i++)
    if ((unsigned char)return_to[i] <= 0x20 || (unsigned char)return_to[i] >= 0x7f || return_to[i] == '\\')
      return ST_EINVAL;
  int rc;
  if ((rc = rand_text(l->state)) || (rc = rand_text(l->nonce)) || (rc = rand_text(l->verifier))) return rc;
  memcpy(l->issuer, issuer, strlen(issuer) + 1);
  if (rn) memcpy(l->return_to, return_to, rn + 1);
  l->expires = now + AUTH_LOGIN_TTL_S;
  l->started_ms = now * 1000; /* the caller may say it to the millisecond */
  return 0;
}

int auth_login_seal(st_store *st, const char *tenant, const auth_login *l, char **out) {
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "s", l->state, "n", l->nonce, "v", l->verifier, "i",
                        l->issuer, "r", l->return_to, "e", (json_int_t)l->expires, "t", (json_int_t)l->started_ms);
  *out = NULL;
  if (!j) return ST_ENOMEM;
  int rc = auth_seal_text(st, tenant, LOGIN_SEAL_KIND, j, AUTH_LOGIN_COOKIE_MAX, out);
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

int auth_login_open(st_store *st, const char *tenant, const char *cookie, const char *state, int64_t now,
                    auth_login *out) {
  memset(out, 0, sizeof *out);
  if (!cookie || !state || strlen(state) != AUTH_LOGIN_RAND_LEN) return AUTH_ELOGIN;
  json_t *j = NULL;
  if (auth_open_text(st, tenant, LOGIN_SEAL_KIND, cookie, AUTH_LOGIN_COOKIE_MAX, &j)) return AUTH_ELOGIN;
  int rc;
  json_t *e = json_object_get(j, "e");
  rc = AUTH_ELOGIN;
  if (json_is_object(j) && json_is_integer(e) && !copy_member(j, "s", out->state, sizeof out->state) &&
      !copy_member(j, "n", out->nonce, sizeof out->nonce) &&
      !copy_member(j, "v", out->verifier, sizeof out->verifier) &&
      !copy_member(j, "i", out->issuer, sizeof out->issuer) &&
      !copy_member(j, "r", out->return_to, sizeof out->return_to)) {
    out->expires = (int64_t)json_integer_value(e);
    /* a cookie sealed before "t" was kept: its start, to the second */
    out->started_ms = json_is_integer(json_object_get(j, "t")) ? (int64_t)json_integer_value(json_object_get(j, "t"))
                                                               : (out->expires - AUTH_LOGIN_TTL_S) * 1000;
    if (strlen(out->state) == AUTH_LOGIN_RAND_LEN &&
        CRYPTO_memcmp(out->state, state, AUTH_LOGIN_RAND_LEN) == 0 && now < out->expires)
      rc = 0;
  }
  json_decref(j);
  if (rc) {
    OPENSSL_cleanse(out, sizeof *out);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

/* ---- URLs and forms */

void auth_login_wipe(char *s) { auth_wipe(s); }

int auth_login_authorize_url(const auth_oidc_provider *p, const json_t *settings, const char *redirect_uri,
                             const auth_login *l, char **url) {
  *url = NULL;
  uint8_t h[32];
  char challenge[AUTH_LOGIN_RAND_LEN + 1];
  if (st_sha256(l->verifier, strlen(l->verifier), h)) return ST_ECRYPTO;
  auth_b64url_encode(h, sizeof h, challenge, sizeof challenge);
  auth_form scope = {0}, q = {0};
  json_t *v;
  size_t i;
  json_array_foreach(json_object_get(settings, "scopes"), i, v) {
    if (scope.n) auth_form_str(&scope, " ");
    auth_form_str(&scope, json_string_value(v));
  }
  if (!scope.n) auth_form_str(&scope, "openid");
  auth_form_param(&q, "response_type", "code");
  auth_form_param(&q, "client_id", p->client_id);
  auth_form_param(&q, "redirect_uri", redirect_uri);
  auth_form_param(&q, "scope", scope.fail ? "openid" : scope.p);
  auth_form_param(&q, "state", l->state);
  auth_form_param(&q, "nonce", l->nonce);
  auth_form_param(&q, "code_challenge", challenge);
  auth_form_param(&q, "code_challenge_method", "S256");
  free(scope.p);
  auth_form u = {0};
  auth_form_str(&u, p->authorization_endpoint);
  auth_form_str(&u, strchr(p->authorization_endpoint, '?') ? "&" : "?");
  if (q.p) auth_form_str(&u, q.p);
  bool fail = q.fail;
  free(q.p);
  if (fail) u.fail = true;
  return auth_form_done(&u, url);
}

int auth_login_token_request(const auth_oidc_provider *p, const char *client_secret, const char *code,
                             const char *redirect_uri, const char *verifier, char **body, char **authz) {
  *body = *authz = NULL;
  auth_form b = {0};
  auth_form_param(&b, "grant_type", "authorization_code");
  auth_form_param(&b, "code", code);
  auth_form_param(&b, "redirect_uri", redirect_uri);
  auth_form_param(&b, "code_verifier", verifier);
  auth_form_param(&b, "client_id", p->client_id);
  if (p->token_auth_post) auth_form_param(&b, "client_secret", client_secret);
  int rc = auth_form_done(&b, body);
  if (rc || p->token_auth_post) return rc;
  /* client_secret_basic: form-encode both, join with ':', base64 */
  if ((rc = auth_basic_credentials(p->client_id, client_secret, authz))) goto fail;
  return 0;
fail:
  auth_login_wipe(*body);
  *body = NULL;
  return rc;
}

static bool oauth_code_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '_' || s[i] == '-' || s[i] == '.'))
      return false;
  return true;
}

int auth_login_token_response(int status, const char *body, size_t len, char **id_token, char *why,
                              size_t whylen) {
  *id_token = NULL;
  why[0] = 0;
  if (len > AUTH_LOGIN_TOKEN_RESPONSE_MAX) {
    snprintf(why, whylen, "the token endpoint's reply is larger than %d bytes", AUTH_LOGIN_TOKEN_RESPONSE_MAX);
    return AUTH_ELOGIN;
  }
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  const char *err = json_string_value(json_object_get(j, "error"));
  int rc = AUTH_ELOGIN;
  if (status != 200 || err) {
    if (err && oauth_code_ok(err)) snprintf(why, whylen, "the token endpoint refused the code (HTTP %d, %s)", status, err);
    else snprintf(why, whylen, "the token endpoint answered HTTP %d", status);
  } else if (!json_is_object(j)) {
    snprintf(why, whylen, "the token endpoint's reply is not a JSON object");
  } else {
    json_t *t = json_object_get(j, "id_token");
    const char *s = json_string_value(t);
    if (!s || !json_string_length(t) || json_string_length(t) > AUTH_JOSE_TOKEN_MAX ||
        strlen(s) != json_string_length(t)) {
      snprintf(why, whylen, "the token endpoint's reply has no id_token (is \"openid\" among the scopes?)");
    } else if (!(*id_token = strdup(s))) {
      rc = ST_ENOMEM;
    } else {
      rc = 0;
    }
  }
  json_decref(j);
  return rc;
}

/* ---- used states */

void auth_login_state_hash(const char *state, uint8_t out[32]) { st_sha256(state, strlen(state), out); }

/* "x" u64 BE expires, sha256(state): in expiry order, so the sweep below
 * stops at the first live one. (Keyed by the hash alone, the sweep saw only
 * the lowest hashes, which new states keep filling: almost every used state
 * stayed for good.) The state's expiry is sealed with it in the login
 * cookie, so a replay names the same key. */
static size_t state_key(uint8_t k[41], const char *state, int64_t expires) {
  k[0] = 'x';
  for (int i = 0; i < 8; i++) k[1 + i] = (uint8_t)((uint64_t)expires >> (56 - 8 * i));
  auth_login_state_hash(state, k + 9);
  return 41;
}

int auth_login_state_used(st_txn *txn, const char *state, int64_t expires) {
  uint8_t key[41];
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, key, state_key(key, state, expires), &v);
  return rc == 0 ? 1 : rc == ST_ENOTFOUND ? 0 : rc;
}

int auth_login_state_consume(st_txn *txn, const char *state, int64_t expires, int64_t now) {
  uint8_t key[41];
  size_t kn = state_key(key, state, expires);
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, key, kn, &v);
  if (rc == 0) return AUTH_EREPLAY;
  if (rc != ST_ENOTFOUND) return rc;
  if ((rc = st_put(txn, ST_DB_AUTH, key, kn, "", 0, 0))) return rc;
  /* sweep up to 16 that expired (expiry order: the rest are live) */
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) return 0;
  uint8_t dead[16][41];
  int nd = 0;
  st_val k;
  st_cursor_seek(c, "x", 1, NULL, 0);
  while (nd < 16 && st_cursor_next(c, &k, NULL) == 0) {
    if (k.len != 41) continue;
    const uint8_t *e = (const uint8_t *)k.data + 1;
    uint64_t ex = 0;
    for (int i = 0; i < 8; i++) ex = ex << 8 | e[i];
    if ((int64_t)ex > now) break;
    memcpy(dead[nd++], k.data, 41);
  }
  st_cursor_close(c);
  for (int i = 0; i < nd; i++) st_del(txn, ST_DB_AUTH, dead[i], 41);
  return 0;
}

/* ---- account linking */

static size_t bind_key(char *k, size_t cap, char type, const char *tenant, const void *tail, size_t tn) {
  size_t t = strlen(tenant);
  if (2 + t + tn > cap) return 0;
  k[0] = type;
  memcpy(k + 1, tenant, t);
  k[1 + t] = 0;
  memcpy(k + 2 + t, tail, tn);
  return 2 + t + tn;
}

/* A claim as text: a non-empty string without control characters. */
static const char *claim_text(const json_t *claims, const char *name) {
  json_t *v = json_object_get(claims, name);
  const char *s = json_string_value(v);
  if (!s || !json_string_length(v) || json_string_length(v) > AUTH_SUBJECT_MAX || strlen(s) != json_string_length(v))
    return NULL;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20) return NULL;
  return s;
}

static int user_ok(st_txn *txn, const char *tenant, const char *id, auth_link *out) {
  json_t *u;
  int rc = st_dir_user_get(txn, tenant, id, &u);
  if (rc) return rc == ST_ENOTFOUND ? AUTH_ENOTLINKED : rc;
  const char *un = json_string_value(json_object_get(u, "userName"));
  snprintf(out->user_id, sizeof out->user_id, "%s", id);
  snprintf(out->user_name, sizeof out->user_name, "%s", un ? un : "");
  rc = st_dir_user_usable(txn, tenant, u) ? 0 : AUTH_EINACTIVE;
  if (rc && st_dir_user_usable_once_signed_out(txn, tenant, u)) {
    out->sign_out_first = true; /* the caller's transaction signs them out before anything new */
    rc = 0;
  }
  json_decref(u);
  return rc;
}

/* sha256(iss \0 subject): how a subject is bound ("s" keys). */
static int subject_hash(const char *iss, const char *subject, uint8_t out[32]) {
  size_t in = strlen(iss), sn = strlen(subject);
  char *buf = malloc(in + 1 + sn);
  if (!buf) return ST_ENOMEM;
  memcpy(buf, iss, in);
  buf[in] = 0;
  memcpy(buf + in + 1, subject, sn);
  st_sha256(buf, in + 1 + sn, out);
  free(buf);
  return 0;
}

/* Rule a: the user bound to a subject hash. 0 and id, or ST_ENOTFOUND. */
static int bound_user(st_txn *txn, const char *tenant, const uint8_t hash[32], char id[ST_DIR_ID_LEN + 1]) {
  char key[128];
  size_t kn = bind_key(key, sizeof key, 's', tenant, hash, 32);
  st_val v;
  int rc = kn ? st_get(txn, ST_DB_AUTH, key, kn, &v) : ST_EINVAL;
  if (rc) return rc;
  if (v.len != ST_DIR_ID_LEN) return ST_ECORRUPT;
  memcpy(id, v.data, v.len);
  id[v.len] = 0;
  return 0;
}

/* The IdP vouches for the claim "email" only with email_verified true (a
 * boolean, or the string some providers send). */
static bool email_verified(const json_t *claims) {
  json_t *ev = json_object_get(claims, "email_verified");
  return json_is_true(ev) || (json_is_string(ev) && !strcmp(json_string_value(ev), "true"));
}

/* Rule b: the one user whose link attribute (userName, else externalId) is
 * value. 0 and id, ST_ENOTFOUND, or AUTH_EAMBIGUOUS. */
static int linked_user(st_txn *txn, const char *tenant, const char *attr, const char *value,
                       char id[ST_DIR_ID_LEN + 1]) {
  if (!strcmp(attr, "userName")) return st_dir_user_by_name(txn, tenant, value, id);
  st_dir_key k;
  st_dir_key_external(&k, tenant, ST_DIR_USER, value, NULL);
  json_t *ids = json_array();
  if (!ids) return ST_ENOMEM;
  int rc = k.overflow ? ST_ENOTFOUND : st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, 2);
  size_t n = json_array_size(ids);
  if (rc == 0 && n == 1) snprintf(id, ST_DIR_ID_LEN + 1, "%s", json_string_value(json_array_get(ids, 0)));
  json_decref(ids);
  if (rc) return rc;
  return n > 1 ? AUTH_EAMBIGUOUS : n == 1 ? 0 : ST_ENOTFOUND;
}

/* Rule a's guard. A binding is made by the e-mail fallback, for a user
 * without an externalId; once SCIM gives the user one, the binding stands
 * only while that externalId is the signing-in subject's link value (lv,
 * the link claim; rule b would find the same user). Otherwise the IdP's
 * own id contradicts the e-mail the binding was made on — a wrong e-mail
 * at the IdP must not keep an account taken over. 1 agrees, 0 does not,
 * ST_ENOTFOUND (the user is gone) or a store error. */
static int binding_agrees(st_txn *txn, const char *tenant, const char *id, const char *attr, const char *lv) {
  json_t *u;
  int rc = st_dir_user_get(txn, tenant, id, &u);
  if (rc) return rc;
  json_t *ext = json_object_get(u, "externalId");
  int ok = !json_is_string(ext) || !json_string_length(ext) ||
           (!strcmp(attr, "externalId") && lv && !strcmp(lv, json_string_value(ext)));
  json_decref(u);
  return ok;
}

int auth_link_find(st_txn *txn, const char *tenant, const json_t *settings, const char *iss, const char *subject,
                   char user_id[ST_DIR_ID_LEN + 1]) {
  const char *subject_claim = json_string_value(json_object_get(settings, "subject_claim"));
  const char *link_claim = json_string_value(json_object_get(settings, "link_claim"));
  const char *attr = json_string_value(json_object_get(settings, "link_attribute"));
  user_id[0] = 0;
  if (!subject || !*subject || strlen(subject) > AUTH_SUBJECT_MAX) return ST_ENOTFOUND;
  int rc = ST_ENOTFOUND;
  if (!subject_claim || !strcmp(subject_claim, "sub")) {
    uint8_t h[32];
    if ((rc = subject_hash(iss, subject, h))) return rc;
    rc = bound_user(txn, tenant, h, user_id);
    if (rc == 0) {
      json_t *u; /* a binding left behind by its user is nobody's */
      rc = st_dir_user_get(txn, tenant, user_id, &u);
      json_decref(u);
      if (rc != ST_ENOTFOUND) return rc;
    } else if (rc != ST_ENOTFOUND) {
      return rc;
    }
  }
  if (!link_claim || !strcmp(link_claim, "sub")) rc = linked_user(txn, tenant, attr ? attr : "externalId", subject, user_id);
  if (rc) user_id[0] = 0;
  return rc;
}

int auth_link_resolve(st_txn *txn, const char *tenant, const json_t *settings, const json_t *claims,
                      const char *iss, auth_link *out) {
  memset(out, 0, sizeof *out);
  const char *subject_claim = json_string_value(json_object_get(settings, "subject_claim"));
  const char *link_claim = json_string_value(json_object_get(settings, "link_claim"));
  const char *attr = json_string_value(json_object_get(settings, "link_attribute"));
  if (!subject_claim) subject_claim = "sub";
  if (!link_claim) link_claim = "sub";
  if (!attr) attr = "externalId";
  const char *subject = claim_text(claims, subject_claim);
  if (!subject) return AUTH_ECLAIM;
  memcpy(out->subject, subject, strlen(subject) + 1);
  int hrc = subject_hash(iss, subject, out->subject_hash);
  if (hrc) return hrc;

  /* a. a bound subject, unless its user's externalId now names another */
  char id[ST_DIR_ID_LEN + 1];
  bool stale = false;
  int rc = bound_user(txn, tenant, out->subject_hash, id);
  if (rc == 0) {
    rc = binding_agrees(txn, tenant, id, attr, claim_text(claims, link_claim));
    if (rc == 1) return user_ok(txn, tenant, id, out);
    if (rc == ST_ENOTFOUND) return AUTH_ENOTLINKED;
    if (rc < 0) return rc;
    stale = true; /* not used: the subject may still have an account of its own (b) */
  } else if (rc != ST_ENOTFOUND) {
    return rc;
  }

  /* b. link claim = link attribute. On the e-mail, only one the IdP
   * verified: many let a person set any address unverified, and the
   * matching user would be theirs to sign in as (found by review; the
   * fallback below always checked, this rule did not) */
  const char *lv = claim_text(claims, link_claim);
  if (lv && !strcmp(link_claim, "email") && !email_verified(claims)) return AUTH_EUNVERIFIED;
  if (lv) {
    rc = linked_user(txn, tenant, attr, lv, id);
    if (rc == 0) return user_ok(txn, tenant, id, out);
    if (rc != ST_ENOTFOUND) return rc;
  } else if (json_object_get(claims, link_claim)) {
    return AUTH_ECLAIM;
  }

  /* a subject bound by e-mail, its binding contradicted, is not bound
   * again by e-mail: the IdP's id says it is not that account */
  if (stale) return AUTH_ESTALE;

  /* c. the e-mail fallback, for users without an externalId */
  const char *email = claim_text(claims, "email");
  if (!email) return AUTH_ENOTLINKED;
  rc = st_dir_user_by_name(txn, tenant, email, id);
  if (rc == ST_ENOTFOUND) return AUTH_ENOTLINKED;
  if (rc) return rc;
  json_t *u;
  if ((rc = st_dir_user_get(txn, tenant, id, &u))) return rc == ST_ENOTFOUND ? AUTH_ENOTLINKED : rc;
  json_t *ext = json_object_get(u, "externalId");
  bool has_ext = json_is_string(ext) && json_string_length(ext) > 0;
  json_decref(u);
  if (has_ext) return AUTH_ENOTLINKED; /* linked by externalId only; the claim did not match it */
  if (!email_verified(claims)) return AUTH_EUNVERIFIED;
  /* the user must not be bound to another subject already */
  char key[128];
  st_val v;
  size_t kn = bind_key(key, sizeof key, 'S', tenant, id, strlen(id));
  rc = kn ? st_get(txn, ST_DB_AUTH, key, kn, &v) : ST_EINVAL;
  if (rc == 0) return AUTH_EBOUND;
  if (rc != ST_ENOTFOUND) return rc;
  if ((rc = user_ok(txn, tenant, id, out))) return rc;
  out->bind = true;
  return 0;
}

int auth_link_bind(st_txn *txn, const char *tenant, const auth_link *l) {
  char sk[128], uk[128];
  size_t sn = bind_key(sk, sizeof sk, 's', tenant, l->subject_hash, 32);
  size_t un = bind_key(uk, sizeof uk, 'S', tenant, l->user_id, strlen(l->user_id));
  if (!sn || !un) return ST_EINVAL;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, sk, sn, &v);
  if (rc == 0) return v.len == strlen(l->user_id) && !memcmp(v.data, l->user_id, v.len) ? 0 : AUTH_EBOUND;
  if (rc != ST_ENOTFOUND) return rc;
  rc = st_get(txn, ST_DB_AUTH, uk, un, &v);
  if (rc == 0) return AUTH_EBOUND;
  if (rc != ST_ENOTFOUND) return rc;
  if ((rc = st_put(txn, ST_DB_AUTH, sk, sn, l->user_id, strlen(l->user_id), 0))) return rc;
  return st_put(txn, ST_DB_AUTH, uk, un, l->subject_hash, 32, 0);
}

int auth_link_unbind_user(st_txn *txn, const char *tenant, const char *user_id) {
  char sk[128], uk[128];
  size_t un = bind_key(uk, sizeof uk, 'S', tenant, user_id, strlen(user_id));
  if (!un) return ST_EINVAL;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, uk, un, &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  if (v.len != 32) return ST_ECORRUPT;
  uint8_t h[32];
  memcpy(h, v.data, 32);
  size_t sn = bind_key(sk, sizeof sk, 's', tenant, h, 32);
  if ((rc = st_del(txn, ST_DB_AUTH, uk, un))) return rc;
  rc = st_del(txn, ST_DB_AUTH, sk, sn);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int auth_link_recheck_user(st_txn *txn, const char *tenant, const char *user_id, bool *dropped) {
  *dropped = false;
  char uk[128];
  size_t un = bind_key(uk, sizeof uk, 'S', tenant, user_id, strlen(user_id));
  if (!un) return ST_EINVAL;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, uk, un, &v); /* the common case: not bound, one lookup */
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  if (v.len != 32) return ST_ECORRUPT;
  uint8_t bound[32];
  memcpy(bound, v.data, 32);
  json_t *u;
  if ((rc = st_dir_user_get(txn, tenant, user_id, &u))) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *ext = json_object_get(u, "externalId");
  bool keep = !json_is_string(ext) || !json_string_length(ext);
  if (!keep) {
    /* the same subject only when the bound value and the externalId are
     * the same claim's (subject_claim = link_claim, linked to externalId)
     * under the issuer sign-ins are checked against */
    json_t *o = NULL;
    rc = auth_oidc_get(txn, tenant, &o);
    if (rc && rc != ST_ENOTFOUND) {
      json_decref(u);
      return rc;
    }
    const char *iss = json_string_value(json_object_get(o, "issuer"));
    const char *sc = json_string_value(json_object_get(o, "subject_claim"));
    const char *lc = json_string_value(json_object_get(o, "link_claim"));
    const char *attr = json_string_value(json_object_get(o, "link_attribute"));
    if (iss && !strcmp(sc ? sc : "sub", lc ? lc : "sub") && !strcmp(attr ? attr : "externalId", "externalId")) {
      /* sign-ins hash under the discovery document's own spelling of the
       * issuer, which may end in '/' (Auth0's does) where the stored,
       * normalised one does not: either spelling is the same subject
       * (found by review: an unchanged externalId signed such people out) */
      uint8_t h[32];
      char slashed[1100];
      int n = snprintf(slashed, sizeof slashed, "%s/", iss);
      for (int pass = 0; pass < 2 && !keep; pass++) {
        if (pass == 1 && (n <= 0 || (size_t)n >= sizeof slashed)) break;
        if ((rc = subject_hash(pass ? slashed : iss, json_string_value(ext), h))) {
          json_decref(o);
          json_decref(u);
          return rc;
        }
        keep = CRYPTO_memcmp(h, bound, 32) == 0;
      }
    }
    json_decref(o);
  }
  json_decref(u);
  if (keep) return 0;
  if ((rc = auth_link_unbind_user(txn, tenant, user_id))) return rc;
  *dropped = true;
  return 0;
}
