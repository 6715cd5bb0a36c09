/* auth/form.c — forms, Basic client credentials, sealed cookie text (see form.h). */
#include "auth/form.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jose.h"
#include "store/seal.h"

static void add(auth_form *f, const char *s, size_t n) {
  if (f->fail) return;
  if (f->n + n + 1 > f->cap) {
    size_t cap = f->cap ? f->cap : 256;
    while (cap < f->n + n + 1) cap *= 2;
    char *p = malloc(cap);
    if (!p) {
      f->fail = true;
      return;
    }
    if (f->p) {
      memcpy(p, f->p, f->n);
      OPENSSL_cleanse(f->p, f->cap); /* secrets pass through */
      free(f->p);
    }
    f->p = p;
    f->cap = cap;
  }
  memcpy(f->p + f->n, s, n);
  f->n += n;
  f->p[f->n] = 0;
}

void auth_form_str(auth_form *f, const char *s) { add(f, s, strlen(s)); }

void auth_form_enc(auth_form *f, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      add(f, s, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      add(f, e, 3);
    }
  }
}

void auth_form_param(auth_form *f, const char *k, const char *v) {
  if (f->n) auth_form_str(f, "&");
  auth_form_str(f, k);
  auth_form_str(f, "=");
  auth_form_enc(f, v);
}

void auth_wipe(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

int auth_form_done(auth_form *f, char **out) {
  if (f->fail || !f->p) {
    auth_wipe(f->p);
    f->p = NULL;
    *out = NULL;
    return ST_ENOMEM;
  }
  *out = f->p;
  f->p = NULL;
  return 0;
}

int auth_basic_credentials(const char *client_id, const char *secret, char **out) {
  *out = NULL;
  auth_form cred = {0};
  auth_form_enc(&cred, client_id);
  auth_form_str(&cred, ":");
  auth_form_enc(&cred, secret);
  char *c = NULL;
  int rc = auth_form_done(&cred, &c);
  if (rc) return rc;
  size_t cn = strlen(c), cap = 4 * ((cn + 2) / 3) + 1 + 6;
  char *h = malloc(cap);
  if (!h) {
    auth_wipe(c);
    return ST_ENOMEM;
  }
  memcpy(h, "Basic ", 6);
  EVP_EncodeBlock((unsigned char *)h + 6, (const unsigned char *)c, (int)cn);
  auth_wipe(c);
  *out = h;
  return 0;
}

int auth_seal_text(st_store *st, const char *tenant, const char *kind, const json_t *j, size_t max, char **out) {
  *out = NULL;
  char *txt = json_dumps(j, JSON_COMPACT);
  if (!txt) return ST_ENOMEM;
  uint8_t *blob = NULL;
  size_t bl = 0;
  int rc = st_seal(st, &(st_aad){tenant, kind, ""}, txt, strlen(txt), &blob, &bl);
  auth_wipe(txt);
  if (rc) return rc;
  size_t cap = AUTH_B64URL_ENCODED_LEN(bl) + 1;
  char *c = cap <= max ? malloc(cap) : NULL;
  if (c) auth_b64url_encode(blob, bl, c, cap);
  free(blob);
  if (!c) return ST_ENOMEM;
  *out = c;
  return 0;
}

int auth_open_text(st_store *st, const char *tenant, const char *kind, const char *text, size_t max, json_t **out) {
  *out = NULL;
  size_t cn = text ? strlen(text) : 0;
  if (!cn || cn > max) return -1;
  uint8_t *blob = malloc(AUTH_B64URL_DECODED_LEN(cn) + 1);
  size_t bl = 0;
  if (!blob) return -1;
  if (auth_b64url_decode(text, cn, blob, AUTH_B64URL_DECODED_LEN(cn) + 1, &bl)) {
    free(blob);
    return -1;
  }
  uint8_t *pt = NULL;
  size_t pn = 0;
  int rc = st_unseal(st, &(st_aad){tenant, kind, ""}, blob, bl, &pt, &pn);
  free(blob);
  if (rc) return -1;
  json_t *j = json_loadb((const char *)pt, pn, JSON_REJECT_DUPLICATES, NULL);
  st_secret_free(pt, pn);
  if (!json_is_object(j)) {
    json_decref(j);
    return -1;
  }
  *out = j;
  return 0;
}
