/* auth/gtr.c — Global Token Revocation (Okta Universal Logout): the request
 * body, the JWT's header and claims, used jtis and the subject's user (see
 * gtr.h for the rules and the store layout).
 *
 * Rules this file keeps, and why:
 *   - Every input has a cap checked before it is parsed or copied, and JSON
 *     is parsed strictly (duplicate keys refused): the body decides whose
 *     credentials go, so no two readers may see two different subjects.
 *   - No message names a value of the request (an e-mail address, a
 *     subject, a jti): messages say which member failed which rule, so they
 *     can be logged and answered as they are.
 *   - The jti is kept as a hash scoped by tenant and issuer, with the time
 *     it may be forgotten; expiry order makes each sweep a prefix walk. */
#include "auth/gtr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/jose.h"

const char *auth_gtr_strerror(int err) {
  switch (err) {
  case AUTH_EGTR_BODY: return "universal logout: the request body is malformed";
  case AUTH_EGTR_FORMAT: return "universal logout: unsupported subject format";
  case AUTH_EGTR_TYP: return "universal logout: the JWT's typ is not " AUTH_GTR_TYP;
  case AUTH_EGTR_ISS: return "universal logout: iss is not the logout issuer";
  case AUTH_EGTR_AUD: return "universal logout: aud is not this endpoint's URL";
  case AUTH_EGTR_CLIENT: return "universal logout: sub is not the tenant's OIDC client_id";
  case AUTH_EGTR_EXP: return "universal logout: exp missing, malformed or passed";
  case AUTH_EGTR_LIFETIME: return "universal logout: exp lies too far ahead";
  case AUTH_EGTR_NBF: return "universal logout: not valid yet (nbf)";
  case AUTH_EGTR_IAT: return "universal logout: iat missing, malformed or in the future";
  case AUTH_EGTR_JTI: return "universal logout: jti missing or malformed";
  case AUTH_EGTR_REPLAY: return "universal logout: this token (jti) was used already";
  case AUTH_EGTR_SUBJECT_ISS: return "universal logout: the subject's iss is not this tenant's Okta";
  default: return NULL;
  }
}

const char *auth_gtr_format_name(int format) {
  return format == AUTH_GTR_EMAIL ? "email" : format == AUTH_GTR_ISS_SUB ? "iss_sub" : "none";
}

/* ---- the body */

/* A member as text: a string of 1..max bytes without NUL or control
 * characters. 0 and *s, or -1 (why says which rule). */
static int text_member(const json_t *o, const char *name, size_t max, const char **s, char *why, size_t whylen) {
  json_t *v = json_object_get(o, name);
  if (!v) {
    snprintf(why, whylen, "the subject identifier lacks \"%s\"", name);
    return -1;
  }
  const char *t = json_string_value(v);
  size_t n = json_string_length(v);
  if (!t || n == 0 || n > max || strlen(t) != n) {
    snprintf(why, whylen, "\"%s\" must be a non-empty string of at most %zu bytes", name, max);
    return -1;
  }
  for (const char *p = t; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      snprintf(why, whylen, "\"%s\" must not contain control characters", name);
      return -1;
    }
  *s = t;
  return 0;
}

/* The object has no member besides those listed (NULL-terminated). */
static bool only_members(const json_t *o, const char *const *names, const char **extra) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    bool ok = false;
    for (const char *const *n = names; *n && !ok; n++) ok = !strcmp(*n, k);
    if (!ok) {
      *extra = k;
      return false;
    }
  }
  return true;
}

static int parse_subject(const json_t *sid, const char *member, auth_gtr_subject *out, char *why, size_t whylen) {
  if (!json_is_object(sid)) {
    snprintf(why, whylen, "\"%s\" must be an object (a subject identifier, RFC 9493)", member);
    return AUTH_EGTR_BODY;
  }
  json_t *fv = json_object_get(sid, "format");
  const char *f = json_string_value(fv);
  if (!f) {
    snprintf(why, whylen, "\"%s\" must have a string \"format\"", member);
    return AUTH_EGTR_BODY;
  }
  static const char *const email_members[] = {"format", "email", NULL};
  static const char *const iss_sub_members[] = {"format", "iss", "sub", NULL};
  const char *extra = NULL, *a, *b;
  if (!strcmp(f, "email")) {
    out->format = AUTH_GTR_EMAIL;
    if (!only_members(sid, email_members, &extra)) goto extra_member;
    if (text_member(sid, "email", AUTH_GTR_EMAIL_MAX, &a, why, whylen)) return AUTH_EGTR_BODY;
    if (!strchr(a, '@')) {
      snprintf(why, whylen, "\"email\" must be an e-mail address");
      return AUTH_EGTR_BODY;
    }
    memcpy(out->email, a, strlen(a) + 1);
    return 0;
  }
  if (!strcmp(f, "iss_sub")) {
    out->format = AUTH_GTR_ISS_SUB;
    if (!only_members(sid, iss_sub_members, &extra)) goto extra_member;
    if (text_member(sid, "iss", AUTH_OIDC_ISSUER_MAX, &a, why, whylen) ||
        text_member(sid, "sub", AUTH_SUBJECT_MAX, &b, why, whylen))
      return AUTH_EGTR_BODY;
    memcpy(out->iss, a, strlen(a) + 1);
    memcpy(out->sub, b, strlen(b) + 1);
    return 0;
  }
  snprintf(why, whylen, "subject format not supported here: only \"email\" and \"iss_sub\" name a user of the gateway");
  return AUTH_EGTR_FORMAT;
extra_member:
  /* a member name is the caller's text: shown only when it is short and plain */
  for (const char *p = extra; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') || p - extra >= 40) {
      extra = NULL;
      break;
    }
  if (extra && *extra) snprintf(why, whylen, "the \"%s\" subject identifier has an unknown member \"%s\"", f, extra);
  else snprintf(why, whylen, "the \"%s\" subject identifier has an unknown member", f);
  return AUTH_EGTR_BODY;
}

int auth_gtr_parse_body(const char *body, size_t len, auth_gtr_subject *out, char *why, size_t whylen) {
  memset(out, 0, sizeof *out);
  if (whylen) why[0] = 0;
  if (!body || len == 0) {
    snprintf(why, whylen, "the body is empty: it must be a JSON object with \"sub_id\"");
    return AUTH_EGTR_BODY;
  }
  if (len > AUTH_GTR_BODY_MAX) {
    snprintf(why, whylen, "the body is larger than %d bytes", AUTH_GTR_BODY_MAX);
    return AUTH_EGTR_BODY;
  }
  json_error_t je;
  json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if (!doc) {
    /* jansson's text quotes the input near the error: the position only */
    snprintf(why, whylen, "the body is not valid JSON (or repeats a key) at line %d, column %d", je.line, je.column);
    return AUTH_EGTR_BODY;
  }
  int rc = AUTH_EGTR_BODY;
  if (!json_is_object(doc)) {
    snprintf(why, whylen, "the body must be a JSON object with \"sub_id\"");
    goto done;
  }
  json_t *a = json_object_get(doc, "sub_id"), *b = json_object_get(doc, "subject");
  if (a && b) {
    snprintf(why, whylen, "the body names the subject twice (\"sub_id\" and \"subject\")");
    goto done;
  }
  if (!a && !b) {
    snprintf(why, whylen, "the body lacks \"sub_id\" (the user to sign out)");
    goto done;
  }
  if (json_object_size(doc) != 1) {
    snprintf(why, whylen, "the body has members besides \"%s\"", a ? "sub_id" : "subject");
    goto done;
  }
  rc = parse_subject(a ? a : b, a ? "sub_id" : "subject", out, why, whylen);
  out->sub_id = a != NULL;
done:
  json_decref(doc);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

/* ---- the JWT */

static bool typ_ok(const json_t *header) {
  const char *t = json_string_value(json_object_get(header, "typ"));
  if (!t) return false;
  if (!strncasecmp(t, "application/", 12)) t += 12;
  return !strcasecmp(t, AUTH_GTR_TYP);
}

static bool aud_ok(const json_t *claims, const char *want) {
  const json_t *aud = json_object_get(claims, "aud"), *a;
  size_t i;
  if (json_is_string(aud)) return !strcmp(json_string_value(aud), want);
  if (!json_is_array(aud) || json_array_size(aud) == 0) return false;
  bool found = false;
  json_array_foreach(aud, i, a) {
    if (!json_is_string(a)) return false;
    found = found || !strcmp(json_string_value(a), want);
  }
  return found;
}

int auth_gtr_check(const json_t *header, const json_t *claims, const auth_gtr_expect *w, auth_gtr_token *out) {
  if (out) memset(out, 0, sizeof *out);
  if (!json_is_object(header) || !json_is_object(claims) || !w || !out || !w->tenant || !w->issuer || !*w->issuer ||
      !w->audience || !*w->audience || !w->client_id || !*w->client_id || w->now < 0 || w->now > INT64_C(253402300799) ||
      w->skew < 0 || w->skew > AUTH_JOSE_SKEW_MAX)
    return AUTH_JOSE_EINVAL;
  if (!typ_ok(header)) return AUTH_EGTR_TYP;
  const char *iss = json_string_value(json_object_get(claims, "iss"));
  if (!iss || strcmp(iss, w->issuer)) return AUTH_EGTR_ISS;
  if (!aud_ok(claims, w->audience)) return AUTH_EGTR_AUD;
  const char *sub = json_string_value(json_object_get(claims, "sub"));
  if (!sub || strcmp(sub, w->client_id)) return AUTH_EGTR_CLIENT;
  /* now, skew and every date are within 0..253402300799 (+3600): no overflow */
  int64_t exp, nbf, iat;
  if (auth_jose_numeric_date(json_object_get(claims, "exp"), false, &exp) || exp <= w->now - w->skew)
    return AUTH_EGTR_EXP;
  if (exp > w->now + AUTH_GTR_LIFETIME_MAX + w->skew) return AUTH_EGTR_LIFETIME;
  const json_t *nbfv = json_object_get(claims, "nbf");
  if (nbfv && (auth_jose_numeric_date(nbfv, true, &nbf) || nbf > w->now + w->skew)) return AUTH_EGTR_NBF;
  if (auth_jose_numeric_date(json_object_get(claims, "iat"), true, &iat) || iat > w->now + w->skew)
    return AUTH_EGTR_IAT;
  json_t *jv = json_object_get(claims, "jti");
  const char *jti = json_string_value(jv);
  size_t jn = json_string_length(jv);
  if (!jti || jn == 0 || jn > AUTH_GTR_JTI_MAX || strlen(jti) != jn) return AUTH_EGTR_JTI;
  /* sha256(tenant \0 iss \0 jti) */
  size_t tn = strlen(w->tenant), in = strlen(iss);
  char *buf = malloc(tn + 1 + in + 1 + jn);
  if (!buf) return ST_ENOMEM;
  memcpy(buf, w->tenant, tn + 1);
  memcpy(buf + tn + 1, iss, in + 1);
  memcpy(buf + tn + 1 + in + 1, jti, jn);
  st_sha256(buf, tn + 1 + in + 1 + jn, out->jti_hash);
  free(buf);
  out->keep_until = exp + w->skew;
  return 0;
}

/* ---- used jtis */

static size_t rec_key(uint8_t k[33], const uint8_t h[32]) {
  k[0] = 'j';
  memcpy(k + 1, h, 32);
  return 33;
}

static size_t exp_key(uint8_t k[41], int64_t until, const uint8_t h[32]) {
  k[0] = 'J';
  for (int i = 0; i < 8; i++) k[1 + i] = (uint8_t)((uint64_t)until >> (56 - 8 * i));
  memcpy(k + 9, h, 32);
  return 41;
}

int auth_gtr_jti_used(st_txn *txn, const uint8_t h[32]) {
  uint8_t k[33];
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, k, rec_key(k, h), &v);
  return rc == 0 ? 1 : rc == ST_ENOTFOUND ? 0 : rc;
}

int auth_gtr_jti_consume(st_txn *txn, const auth_gtr_token *t, int64_t now) {
  uint8_t k[33], ek[41], val[8];
  size_t kn = rec_key(k, t->jti_hash);
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, k, kn, &v);
  if (rc == 0) return AUTH_EGTR_REPLAY;
  if (rc != ST_ENOTFOUND) return rc;
  exp_key(ek, t->keep_until, t->jti_hash);
  memcpy(val, ek + 1, 8);
  if ((rc = st_put(txn, ST_DB_AUTH, k, kn, val, 8, 0)) || (rc = st_put(txn, ST_DB_AUTH, ek, 41, "", 0, 0))) return rc;
  /* sweep up to 16 that expired (expiry order: the rest are live) */
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) return 0;
  uint8_t dead[16][41];
  int nd = 0;
  st_val key;
  st_cursor_seek(c, "J", 1, NULL, 0);
  while (nd < 16 && st_cursor_next(c, &key, NULL) == 0) {
    if (key.len != 41) continue;
    const uint8_t *e = (const uint8_t *)key.data + 1;
    uint64_t until = 0;
    for (int i = 0; i < 8; i++) until = until << 8 | e[i];
    if ((int64_t)until > now) break;
    memcpy(dead[nd++], key.data, 41);
  }
  st_cursor_close(c);
  for (int i = 0; i < nd; i++) {
    uint8_t rk[33];
    if ((rc = st_del(txn, ST_DB_AUTH, dead[i], 41)) && rc != ST_ENOTFOUND) return rc;
    if ((rc = st_del(txn, ST_DB_AUTH, rk, rec_key(rk, dead[i] + 9))) && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

/* ---- the subject's user */

int auth_gtr_resolve(st_txn *txn, const char *tenant, const json_t *settings, const auth_gtr_subject *s,
                     char user_id[ST_DIR_ID_LEN + 1]) {
  user_id[0] = 0;
  if (s->format == AUTH_GTR_EMAIL) return st_dir_user_by_name(txn, tenant, s->email, user_id);
  if (s->format != AUTH_GTR_ISS_SUB) return ST_ENOTFOUND;
  char want[AUTH_OIDC_ISSUER_MAX + 1], logout[AUTH_OIDC_ISSUER_MAX + 1], why[300];
  const char *signin = json_string_value(json_object_get(settings, "issuer"));
  if (!signin || auth_oidc_issuer_normalise(s->iss, want, sizeof want, why, sizeof why))
    return AUTH_EGTR_SUBJECT_ISS;
  bool ours = !strcmp(want, signin) ||
              (auth_oidc_logout_issuer(settings, logout, sizeof logout) == 0 && !strcmp(want, logout));
  if (!ours) return AUTH_EGTR_SUBJECT_ISS;
  /* bindings are made with the sign-in issuer, whichever of the two named it */
  return auth_link_find(txn, tenant, settings, signin, s->sub, user_id);
}
