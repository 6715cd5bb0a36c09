/* auth/oidc.c — tenant OIDC settings: validation, the record in ST_DB_AUTH
 * and its sealed client secret (see oidc.h). Validation never copies the
 * secret into a message: errors about it name the field and the rule only. */
#include "auth/oidc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "store/seal.h"

static const char *const default_scopes[] = {"openid", "profile", "email", NULL};

static void add(char *err, size_t errlen, const char *msg) {
  size_t l = strlen(err);
  snprintf(err + l, errlen - l, "%s%s", l ? "; " : "", msg);
}

/* 127.0.0.0/8 as a dotted quad of decimals, or ::1 in brackets. */
static bool loopback_literal(const char *host, size_t n) {
  if (n == 5 && !memcmp(host, "[::1]", 5)) return true;
  int parts = 0;
  unsigned first = 0;
  size_t i = 0;
  while (i < n) {
    unsigned v = 0;
    size_t d = 0;
    while (i < n && host[i] >= '0' && host[i] <= '9' && d < 4) v = v * 10 + (unsigned)(host[i++] - '0'), d++;
    if (d == 0 || d > 3 || v > 255) return false;
    if (parts == 0) first = v;
    parts++;
    if (i < n && host[i] == '.' && parts < 4) i++;
    else if (i < n) return false;
  }
  return parts == 4 && first == 127;
}

int auth_oidc_issuer_normalise(const char *in, char *out, size_t outlen, char *why, size_t whylen) {
  size_t n = strlen(in);
  bool https = n >= 8 && !strncasecmp(in, "https://", 8);
  bool http = !https && n >= 7 && !strncasecmp(in, "http://", 7);
  if (!https && !http) {
    snprintf(why, whylen, "\"issuer\" must be an absolute https:// URL (e.g. https://acme.okta.com)");
    return -1;
  }
  if (n > AUTH_OIDC_ISSUER_MAX || n + 1 > outlen) {
    snprintf(why, whylen, "\"issuer\" must be at most %d characters", AUTH_OIDC_ISSUER_MAX);
    return -1;
  }
  for (const char *p = in; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}", c)) {
      snprintf(why, whylen, "\"issuer\" must be a URL without spaces, control or non-ASCII characters");
      return -1;
    }
  }
  if (strpbrk(in, "?#")) {
    snprintf(why, whylen, "\"issuer\" must not have a query or fragment");
    return -1;
  }
  const char *auth = in + (https ? 8 : 7);
  size_t alen = strcspn(auth, "/");
  if (memchr(auth, '@', alen)) {
    snprintf(why, whylen, "\"issuer\" must not carry user information (user@host)");
    return -1;
  }
  /* host and optional port */
  size_t hlen;
  if (alen && auth[0] == '[') {
    const char *rb = memchr(auth, ']', alen);
    hlen = rb ? (size_t)(rb - auth) + 1 : 0;
  } else {
    hlen = strcspn(auth, ":/");
    if (hlen > alen) hlen = alen;
  }
  if (hlen == 0 || (hlen == 2 && auth[0] == '[')) {
    snprintf(why, whylen, "\"issuer\" has no host");
    return -1;
  }
  if (hlen < alen) {
    const char *pt = auth + hlen;
    size_t plen = alen - hlen;
    unsigned long port = 0;
    bool ok = pt[0] == ':' && plen >= 2 && plen <= 6;
    for (size_t i = 1; ok && i < plen; i++) {
      ok = pt[i] >= '0' && pt[i] <= '9';
      port = port * 10 + (unsigned long)(pt[i] - '0');
    }
    if (!ok || port == 0 || port > 65535) {
      snprintf(why, whylen, "\"issuer\" has an invalid host or port");
      return -1;
    }
  }
  if (http && !loopback_literal(auth, hlen)) {
    snprintf(why, whylen,
             "\"issuer\" must use https://; http:// is accepted only on a loopback address "
             "(127.0.0.0/8 or [::1]) that the operator's egress policy allows");
    return -1;
  }
  /* scheme and authority lower-cased, the path as given minus trailing '/' */
  size_t pre = (size_t)(auth - in) + alen;
  for (size_t i = 0; i < pre; i++) out[i] = (char)tolower((unsigned char)in[i]);
  size_t end = n;
  while (end > pre && in[end - 1] == '/') end--;
  memcpy(out + pre, in + pre, end - pre);
  out[end] = 0;
  return 0;
}

/* [A-Za-z0-9_]{1,64} */
static bool claim_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > AUTH_OIDC_CLAIM_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return false;
  return true;
}

/* A scope token (RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E). */
static bool scope_ok(const char *s, size_t n) {
  if (n < 1 || n > AUTH_OIDC_SCOPE_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  return true;
}

static const char *claim_field(const json_t *body, const char *key, char *err, size_t errlen) {
  json_t *v = json_object_get(body, key);
  if (!v) return "sub";
  const char *s = json_string_value(v);
  if (!s || strlen(s) != json_string_length(v) || !claim_name_ok(s)) {
    char m[160];
    snprintf(m, sizeof m, "\"%s\" must be a claim name: 1 to 64 of A-Z, a-z, 0-9 and _", key);
    add(err, errlen, m);
    return NULL;
  }
  return s;
}

int auth_oidc_parse(const json_t *body, json_t **config, const char **secret, char *err, size_t errlen) {
  *config = NULL;
  *secret = NULL;
  err[0] = 0;
  if (!json_is_object(body)) {
    add(err, errlen, "the body must be a JSON object");
    return AUTH_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)body, k, v) {
    static const char *const known[] = {"issuer",        "client_id",  "client_secret",  "scopes",
                                        "subject_claim", "link_claim", "link_attribute", "logout_issuer",
                                        NULL};
    bool ok = false;
    for (const char *const *p = known; *p && !ok; p++) ok = !strcmp(*p, k);
    if (!ok) {
      char m[120];
      snprintf(m, sizeof m, "unknown field \"%.60s\"", k);
      add(err, errlen, m);
    }
  }
  char issuer[AUTH_OIDC_ISSUER_MAX + 1];
  json_t *iv = json_object_get(body, "issuer");
  if (!iv) add(err, errlen, "\"issuer\" is required (https:// URL of the tenant's OpenID provider)");
  else if (!json_is_string(iv) || strlen(json_string_value(iv)) != json_string_length(iv))
    add(err, errlen, "\"issuer\" must be a string (https:// URL)");
  else {
    char why[300];
    if (auth_oidc_issuer_normalise(json_string_value(iv), issuer, sizeof issuer, why, sizeof why))
      add(err, errlen, why);
  }
  char logout[AUTH_OIDC_ISSUER_MAX + 1] = "";
  json_t *lv = json_object_get(body, "logout_issuer");
  if (lv && !json_is_null(lv)) {
    char why[300], lwhy[320];
    if (!json_is_string(lv) || strlen(json_string_value(lv)) != json_string_length(lv))
      add(err, errlen, "\"logout_issuer\" must be a string (https:// URL)");
    else if (auth_oidc_issuer_normalise(json_string_value(lv), logout, sizeof logout, why, sizeof why)) {
      /* the sentence names "issuer": say which one */
      snprintf(lwhy, sizeof lwhy, "logout_issuer: %s", why);
      add(err, errlen, lwhy);
    }
  }
  json_t *cid = json_object_get(body, "client_id");
  const char *cs = json_string_value(cid);
  if (!cid) add(err, errlen, "\"client_id\" is required");
  else if (!cs || json_string_length(cid) < 1 || json_string_length(cid) > AUTH_OIDC_CLIENT_ID_MAX ||
           strlen(cs) != json_string_length(cid))
    add(err, errlen, "\"client_id\" must be a non-empty string of at most 255 characters");
  else
    for (const char *p = cs; *p; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f) {
        add(err, errlen, "\"client_id\" must not contain control characters");
        break;
      }
  json_t *sv = json_object_get(body, "client_secret");
  if (sv) {
    const char *s = json_string_value(sv);
    if (!s || json_string_length(sv) < 1 || json_string_length(sv) > AUTH_OIDC_SECRET_MAX ||
        strlen(s) != json_string_length(sv))
      add(err, errlen, "\"client_secret\" must be a string of 1 to 1024 characters");
    else *secret = s;
  }
  json_t *scopes = json_array();
  json_t *sc = json_object_get(body, "scopes");
  if (!sc) {
    for (const char *const *p = default_scopes; *p; p++) json_array_append_new(scopes, json_string(*p));
  } else if (!json_is_array(sc) || json_array_size(sc) < 1 || json_array_size(sc) > AUTH_OIDC_SCOPES_MAX) {
    add(err, errlen, "\"scopes\" must be an array of 1 to 32 strings that includes \"openid\"");
  } else {
    bool openid = false, bad = false;
    size_t i;
    json_array_foreach(sc, i, v) {
      const char *s = json_string_value(v);
      if (!s || strlen(s) != json_string_length(v) || !scope_ok(s, strlen(s))) {
        bad = true;
        continue;
      }
      if (!strcmp(s, "openid")) openid = true;
      bool dup = false;
      size_t j;
      json_t *w;
      json_array_foreach(scopes, j, w) dup = dup || !strcmp(json_string_value(w), s);
      if (!dup) json_array_append_new(scopes, json_string(s));
    }
    if (bad) add(err, errlen, "\"scopes\" entries must be scope tokens (1 to 128 printable characters, no spaces)");
    else if (!openid) add(err, errlen, "\"scopes\" must include \"openid\"");
  }
  const char *subject = claim_field(body, "subject_claim", err, errlen);
  const char *link = claim_field(body, "link_claim", err, errlen);
  const char *attr = "externalId";
  json_t *av = json_object_get(body, "link_attribute");
  if (av) {
    attr = json_string_value(av);
    if (!attr || (strcmp(attr, "externalId") && strcmp(attr, "userName"))) {
      add(err, errlen, "\"link_attribute\" must be \"externalId\" or \"userName\"");
      attr = NULL;
    }
  }
  if (err[0]) {
    json_decref(scopes);
    *secret = NULL;
    return AUTH_EINVALID;
  }
  *config = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "issuer", issuer, "client_id", cs, "scopes", scopes,
                      "subject_claim", subject, "link_claim", link, "link_attribute", attr);
  if (*config && logout[0]) json_object_set_new(*config, "logout_issuer", json_string(logout));
  if (!*config) {
    *secret = NULL;
    add(err, errlen, "out of memory");
    return ST_ENOMEM;
  }
  return 0;
}

/* ---- the record ---- */

static size_t key_of(const char *tenant, char k[80]) {
  size_t tl = strlen(tenant);
  k[0] = 'o';
  memcpy(k + 1, tenant, tl + 1);
  return tl + 2;
}

int auth_oidc_get(st_txn *txn, const char *tenant, json_t **rec) {
  char k[80];
  st_val v;
  *rec = NULL;
  if (strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_AUTH, k, key_of(tenant, k), &v);
  if (rc) return rc;
  *rec = json_loadb(v.data, v.len, 0, NULL);
  return *rec ? 0 : ST_ECORRUPT;
}

int auth_oidc_put(st_txn *txn, const char *tenant, const json_t *config, const char *secret,
                  const char *now, int *created) {
  char k[80];
  json_t *old = NULL;
  if (strlen(tenant) > 63) return ST_EINVAL;
  int rc = auth_oidc_get(txn, tenant, &old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  *created = old == NULL;
  if (!old && !secret) return AUTH_ENOSECRET;
  json_t *rec = json_deep_copy(config);
  const char *was = old ? json_string_value(json_object_get(old, "created")) : NULL;
  json_object_set_new(rec, "created", json_string(was ? was : now));
  json_object_set_new(rec, "updated", json_string(now));
  json_decref(old);
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(rec);
  if (!s) return ST_ENOMEM;
  rc = st_put(txn, ST_DB_AUTH, k, key_of(tenant, k), s, strlen(s), 0);
  free(s);
  if (rc) return rc;
  if (!secret) return 0; /* keeps the sealed secret the record already has */
  st_aad aad = {tenant, AUTH_OIDC_SECRET_KIND, ""};
  return st_secret_put(txn, &aad, secret, strlen(secret));
}

int auth_oidc_logout_issuer(const json_t *rec, char *out, size_t cap) {
  const char *set = json_string_value(json_object_get(rec, "logout_issuer"));
  const char *iss = json_string_value(json_object_get(rec, "issuer"));
  if (cap) out[0] = 0;
  if (set) return snprintf(out, cap, "%s", set) < (int)cap ? 0 : -1;
  const char *a = iss ? strstr(iss, "://") : NULL;
  if (!a) return -1;
  size_t n = (size_t)(a + 3 - iss) + strcspn(a + 3, "/");
  if (n + 1 > cap) return -1;
  memcpy(out, iss, n);
  out[n] = 0;
  return 0;
}

json_t *auth_oidc_view(const json_t *rec) {
  json_t *o = json_deep_copy(rec);
  char logout[AUTH_OIDC_ISSUER_MAX + 1];
  if (o) json_object_set_new(o, "client_secret_set", json_true());
  if (o && auth_oidc_logout_issuer(rec, logout, sizeof logout) == 0)
    json_object_set_new(o, "logout_issuer", json_string(logout));
  return o;
}

int auth_oidc_secret(st_txn *txn, const char *tenant, char **value) {
  st_aad aad = {tenant, AUTH_OIDC_SECRET_KIND, ""};
  return st_secret_get_str(txn, &aad, value);
}

void auth_oidc_secret_free(char *value) { st_secret_str_free(value); }

int auth_oidc_delete(st_txn *txn, const char *tenant) {
  char k[80];
  if (strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = st_del(txn, ST_DB_AUTH, k, key_of(tenant, k));
  if (rc) return rc;
  st_aad aad = {tenant, AUTH_OIDC_SECRET_KIND, ""};
  rc = st_secret_del(txn, &aad);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int auth_oidc_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  int n = 0;
  char k[80];
  if (strlen(tenant) > 63 || limit < 1) return 0;
  int rc = st_del(txn, ST_DB_AUTH, k, key_of(tenant, k));
  if (rc == 0) n++;
  else if (rc != ST_ENOTFOUND) return rc;
  if (n < limit) {
    st_aad aad = {tenant, AUTH_OIDC_SECRET_KIND, ""};
    rc = st_secret_del(txn, &aad);
    if (rc == 0) n++;
    else if (rc != ST_ENOTFOUND) return rc;
  }
  return n;
}

int auth_oidc_register_purge(st_store *st) {
  return st_purge_add(st, "auth.oidc", auth_oidc_purge_tenant, NULL);
}
