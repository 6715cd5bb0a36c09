/* vault/discover.c — reading an upstream's authorization metadata (see
 * discover.h). Pure: no sockets, no store. */
#include "vault/discover.h"

#include "vault/connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "store/store.h"
#include "vault/vault.h"

static void say(char *err, size_t errlen, const char *fmt, const char *a) {
  if (errlen) snprintf(err, errlen, fmt, a);
}

int vault_discover_url_ok(const char *u) {
  if (!u) return 0;
  size_t n = strlen(u);
  size_t sl = !strncmp(u, "https://", 8) ? 8 : !strncmp(u, "http://", 7) ? 7 : 0;
  if (!sl || n > VAULT_DISCOVER_URL_MAX || n <= sl) return 0;
  for (const char *p = u; *p; p++)
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || strchr("\"<>\\^`{|}#", *p)) return 0;
  /* an authority before any path */
  size_t al = strcspn(u + sl, "/?");
  return al > 0;
}

/* ---- WWW-Authenticate (RFC 9110 §11.6.1) ---------------------------------- */

static int tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

static const char *ows(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

int vault_www_auth_resource_metadata(const char *v, char *out, size_t cap) {
  if (!v || !cap) return -1;
  out[0] = 0;
  const char *p = v;
  bool bearer = false;
  while (*p) {
    p = ows(p);
    if (*p == ',') {
      p++;
      continue;
    }
    if (!*p) break;
    const char *t = p;
    while (*p && tchar(*p)) p++;
    size_t tl = (size_t)(p - t);
    if (!tl) return -1;
    const char *q = ows(p);
    if (*q == '=' && q[1] != '=') {
      /* auth-param name=value of the current scheme */
      p = ows(q + 1);
      char val[VAULT_DISCOVER_URL_BUF];
      size_t vl = 0;
      if (*p == '"') {
        p++;
        while (*p && *p != '"') {
          if (*p == '\\' && p[1]) p++;
          if (vl + 1 >= sizeof val) return -1;
          val[vl++] = *p++;
        }
        if (*p != '"') return -1;
        p++;
      } else {
        while (*p && tchar(*p)) {
          if (vl + 1 >= sizeof val) return -1;
          val[vl++] = *p++;
        }
      }
      val[vl] = 0;
      if (bearer && tl == 17 && !strncasecmp(t, "resource_metadata", 17)) {
        if (!vault_discover_url_ok(val) || vl >= cap) return -1;
        memcpy(out, val, vl + 1);
        return 0;
      }
      p = ows(p);
      if (*p && *p != ',') return -1;
    } else {
      /* a new challenge's scheme, or a token68 (its '/' and '=' skipped) */
      bearer = tl == 6 && !strncasecmp(t, "Bearer", 6);
      while (*p == '/' || *p == '=' || (*p && tchar(*p))) p++;
    }
  }
  return -1;
}

/* ---- URLs ------------------------------------------------------------------ */

/* Splits an http(s) URL: scheme length (with "://"), authority [a, a+al),
 * and the rest (path and query, from the first '/' or '?'). */
static void split(const char *u, size_t *sl, size_t *al, const char **rest) {
  *sl = !strncmp(u, "https://", 8) ? 8 : 7;
  *al = strcspn(u + *sl, "/?");
  *rest = u + *sl + *al;
}

int vault_prm_well_known(const char *resource, char *out, size_t cap) {
  if (!vault_discover_url_ok(resource)) return -1;
  size_t sl, al;
  const char *rest;
  split(resource, &sl, &al, &rest);
  size_t rl = strlen(rest);
  const char *q = strchr(rest, '?');
  size_t pl = q ? (size_t)(q - rest) : rl;
  if (pl && rest[pl - 1] == '/') pl--; /* a terminating '/' of the path */
  int n = snprintf(out, cap, "%.*s/.well-known/oauth-protected-resource%.*s%s", (int)(sl + al), resource, (int)pl,
                   rest, q ? q : "");
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* scheme, host lower-cased, default port dropped, one terminating '/'
 * dropped: into out (same size as the input plus one). */
static void normal(const char *u, char *out, size_t cap) {
  size_t sl, al;
  const char *rest;
  split(u, &sl, &al, &rest);
  const char *auth = u + sl;
  size_t hl = al;
  /* the port: after the last ':' outside brackets */
  const char *colon = NULL;
  for (size_t i = 0; i < al; i++) {
    if (auth[i] == ']') colon = NULL;
    else if (auth[i] == ':') colon = auth + i;
  }
  if (colon && ((sl == 7 && (size_t)(auth + al - colon) == 3 && !strncmp(colon, ":80", 3)) ||
                (sl == 8 && (size_t)(auth + al - colon) == 4 && !strncmp(colon, ":443", 4))))
    hl = (size_t)(colon - auth);
  size_t o = 0;
  for (size_t i = 0; i < sl + hl && o + 1 < cap; i++) {
    char c = u[i];
    out[o++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  const char *q = strchr(rest, '?');
  size_t pl = q ? (size_t)(q - rest) : strlen(rest);
  if (pl && rest[pl - 1] == '/') pl--;
  snprintf(out + o, cap - o, "%.*s%s", (int)pl, rest, q ? q : "");
}

int vault_same_resource(const char *a, const char *b) {
  if (!vault_discover_url_ok(a) || !vault_discover_url_ok(b)) return 0;
  char na[VAULT_DISCOVER_URL_BUF], nb[VAULT_DISCOVER_URL_BUF];
  normal(a, na, sizeof na);
  normal(b, nb, sizeof nb);
  return !strcmp(na, nb);
}

int vault_url_host(const char *url, char *out, size_t cap) {
  if (!vault_discover_url_ok(url)) return -1;
  size_t sl, al;
  const char *rest;
  split(url, &sl, &al, &rest);
  const char *a = url + sl;
  const char *at = NULL;
  for (size_t i = 0; i < al; i++)
    if (a[i] == '@') at = a + i;
  if (at) {
    al -= (size_t)(at + 1 - a);
    a = at + 1;
  }
  size_t hl = al;
  if (a[0] == '[') {
    const char *e = memchr(a, ']', al);
    if (!e) return -1;
    hl = (size_t)(e + 1 - a);
  } else {
    const char *c = memchr(a, ':', al);
    if (c) hl = (size_t)(c - a);
  }
  if (!hl || hl >= cap) return -1;
  for (size_t i = 0; i < hl; i++) out[i] = (a[i] >= 'A' && a[i] <= 'Z') ? (char)(a[i] - 'A' + 'a') : a[i];
  out[hl] = 0;
  return 0;
}

int vault_asm_candidates(const char *issuer, char out[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF]) {
  /* an issuer is a URL without query or fragment (RFC 8414 §2) */
  if (!vault_discover_url_ok(issuer) || strchr(issuer, '?')) return -1;
  size_t sl, al;
  const char *rest;
  split(issuer, &sl, &al, &rest);
  size_t pl = strlen(rest);
  if (pl && rest[pl - 1] == '/') pl--;
  int n = 0;
  char c[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF + 64];
  snprintf(c[0], sizeof c[0], "%.*s/.well-known/oauth-authorization-server%.*s", (int)(sl + al), issuer, (int)pl, rest);
  snprintf(c[1], sizeof c[1], "%.*s/.well-known/openid-configuration%.*s", (int)(sl + al), issuer, (int)pl, rest);
  snprintf(c[2], sizeof c[2], "%.*s%.*s/.well-known/openid-configuration", (int)(sl + al), issuer, (int)pl, rest);
  for (int i = 0; i < VAULT_ASM_CANDIDATES; i++) {
    if (strlen(c[i]) > VAULT_DISCOVER_URL_MAX) continue;
    bool dup = false;
    for (int j = 0; j < n; j++) dup = dup || !strcmp(out[j], c[i]);
    if (!dup) memcpy(out[n++], c[i], strlen(c[i]) + 1);
  }
  return n ? n : -1;
}

/* ---- documents --------------------------------------------------------------- */

/* One JSON object, strictly (no duplicate keys, nothing after it). */
static json_t *load(const char *body, size_t len) {
  if (!body || len > VAULT_DISCOVER_BODY_MAX) return NULL;
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* An optional URL member: 0 (absent: out ""), 1 (copied), -1 (malformed). */
static int url_member(const json_t *j, const char *k, char out[VAULT_DISCOVER_URL_BUF]) {
  out[0] = 0;
  json_t *v = json_object_get(j, k);
  if (!v) return 0;
  const char *s = json_string_value(v);
  if (!s || strlen(s) != json_string_length(v) || !vault_discover_url_ok(s)) return -1;
  memcpy(out, s, strlen(s) + 1);
  return 1;
}

static bool array_has(const json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
  return false;
}

static bool string_array(const json_t *a) {
  if (!json_is_array(a)) return false;
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (!json_is_string(v)) return false;
  return true;
}

/* scopes_supported as the space-separated text the admin would give, or
 * "" when any scope is unusable (see vault_prm). */
static void scopes_text(const json_t *sc, char *out, size_t cap) {
  size_t n = 0, i;
  json_t *v;
  out[0] = 0;
  if (json_array_size(sc) > 50) return;
  json_array_foreach(sc, i, v) {
    const char *s = json_string_value(v);
    size_t l = json_string_length(v);
    bool ok = l && l <= 200 && strlen(s) == l && n + l + 2 < cap;
    for (size_t k = 0; ok && k < l; k++) ok = (unsigned char)s[k] >= 0x21 && (unsigned char)s[k] <= 0x7e && s[k] != '"';
    if (!ok) {
      out[0] = 0;
      return;
    }
    if (n) out[n++] = ' ';
    memcpy(out + n, s, l);
    n += l;
    out[n] = 0;
  }
}

int vault_prm_parse(const char *body, size_t len, const char *url, vault_prm *out, char *err, size_t errlen) {
  return vault_prm_parse_for(body, len, url, NULL, out, err, errlen);
}

int vault_prm_parse_for(const char *body, size_t len, const char *url, const char *want, vault_prm *out, char *err,
                        size_t errlen) {
  memset(out, 0, sizeof *out);
  json_t *j = load(body, len);
  int rc = VAULT_EDISCOVER;
  if (!j) {
    say(err, errlen, "%s", "the protected-resource metadata is not one JSON object (or has duplicate members)");
    return rc;
  }
  json_t *as = json_object_get(j, "authorization_servers");
  json_t *sc = json_object_get(j, "scopes_supported");
  int r = url_member(j, "resource", out->resource);
  if (sc && !string_array(sc)) {
    say(err, errlen, "%s", "the protected-resource metadata's \"scopes_supported\" is not an array of strings");
  } else if (r <= 0) {
    say(err, errlen, "%s", "the protected-resource metadata has no valid \"resource\" URL");
  } else if (as && (!string_array(as) || json_array_size(as) > 100)) {
    say(err, errlen, "%s", "the protected-resource metadata's \"authorization_servers\" is not an array of URLs");
  } else if (!vault_same_resource(out->resource, url)) {
    rc = VAULT_EUNUSABLE;
    say(err, errlen, "the protected-resource metadata is for another resource than the connector URL %s (RFC 9728 §3.3)",
        url);
  } else if (!json_array_size(as)) {
    rc = VAULT_EUNUSABLE;
    say(err, errlen, "%s", "the protected-resource metadata names no authorization server");
  } else {
    size_t pick = 0;
    if (want) {
      for (pick = 0; pick < json_array_size(as); pick++) {
        json_t *e = json_array_get(as, pick);
        if (!strcmp(json_string_value(e), want) && json_string_length(e) == strlen(want)) break;
      }
    }
    const char *s = json_string_value(json_array_get(as, pick));
    if (want && pick == json_array_size(as)) {
      rc = VAULT_EUNUSABLE;
      say(err, errlen, "the protected-resource metadata does not name %.2048s (auth.authorization_server) among its "
          "authorization servers", want);
    } else if (!vault_discover_url_ok(s) || strchr(s, '?') || strlen(s) != json_string_length(json_array_get(as, pick))) {
      say(err, errlen, "%s", "the protected-resource metadata's first authorization server is not a valid issuer URL");
    } else {
      memcpy(out->authorization_server, s, strlen(s) + 1);
      scopes_text(sc, out->scopes, sizeof out->scopes);
      rc = 0;
    }
  }
  json_decref(j);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

int vault_asm_parse(const char *body, size_t len, const char *issuer, vault_asm *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  json_t *j = load(body, len);
  if (!j) {
    say(err, errlen, "%s", "the authorization server metadata is not one JSON object (or has duplicate members)");
    return VAULT_EDISCOVER;
  }
  int rc = VAULT_EDISCOVER;
  json_t *iss = json_object_get(j, "issuer");
  json_t *ccm = json_object_get(j, "code_challenge_methods_supported");
  json_t *cimd = json_object_get(j, "client_id_metadata_document_supported");
  json_t *tam = json_object_get(j, "token_endpoint_auth_methods_supported");
  const char *bad = NULL;
  if (!json_is_string(iss) || strcmp(json_string_value(iss), issuer) ||
      strlen(json_string_value(iss)) != json_string_length(iss)) {
    say(err, errlen, "the authorization server metadata's \"issuer\" is not %s (RFC 8414 §3.3)", issuer);
    goto done;
  }
  memcpy(out->issuer, issuer, strlen(issuer) + 1);
  if (url_member(j, "authorization_endpoint", out->authorization_endpoint) <= 0) bad = "authorization_endpoint";
  else if (url_member(j, "token_endpoint", out->token_endpoint) <= 0) bad = "token_endpoint";
  else if (url_member(j, "revocation_endpoint", out->revocation_endpoint) < 0) bad = "revocation_endpoint";
  else if (url_member(j, "registration_endpoint", out->registration_endpoint) < 0) bad = "registration_endpoint";
  else if (cimd && !json_is_boolean(cimd)) bad = "client_id_metadata_document_supported";
  else if (ccm && !string_array(ccm)) bad = "code_challenge_methods_supported";
  else if (tam && !string_array(tam)) bad = "token_endpoint_auth_methods_supported";
  if (bad) {
    say(err, errlen, "the authorization server metadata has no valid \"%s\"", bad);
    goto done;
  }
  /* an https issuer's endpoints are https: one in clear would carry the
   * person's code, the gateway's client secret and the tokens unprotected
   * (found by review; RFC 6749 §3.1 and §3.2 require TLS) */
  if (!strncmp(issuer, "https://", 8)) {
    const char *const eps[][2] = {{"authorization_endpoint", out->authorization_endpoint},
                                  {"token_endpoint", out->token_endpoint},
                                  {"revocation_endpoint", out->revocation_endpoint},
                                  {"registration_endpoint", out->registration_endpoint}};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
      if (!strncmp(eps[i][1], "http://", 7)) {
        say(err, errlen, "the authorization server metadata's \"%s\" is http:// while its issuer is https://: codes, "
            "secrets and tokens would travel in clear", eps[i][0]);
        goto done;
      }
  }
  rc = VAULT_EUNUSABLE;
  if (!array_has(ccm, "S256")) {
    say(err, errlen, "%s",
        "the authorization server does not list PKCE S256 in \"code_challenge_methods_supported\": the gateway "
        "connects only with S256");
    goto done;
  }
  out->cimd = json_is_true(cimd);
  const char *m = !tam || array_has(tam, "client_secret_basic") ? "client_secret_basic"
                  : array_has(tam, "client_secret_post")          ? "client_secret_post"
                  : array_has(tam, "none")                        ? "none"
                                                                  : NULL;
  if (!m && !out->cimd) {
    say(err, errlen, "%s",
        "the authorization server supports none of client_secret_basic, client_secret_post and none at its token "
        "endpoint");
    goto done;
  }
  snprintf(out->dcr_auth, sizeof out->dcr_auth, "%s", m ? m : "none");
  rc = 0;
done:
  json_decref(j);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

static bool printable(const json_t *v, size_t max) {
  const char *s = json_string_value(v);
  if (!s || !*s || json_string_length(v) > max || strlen(s) != json_string_length(v)) return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) return false;
  return true;
}

int vault_dcr_request(const char *client_name, const char *redirect_uri, const json_t *scopes, const char *auth,
                      char **body) {
  *body = NULL;
  json_t *j = json_pack("{s:s, s:[s], s:[s,s], s:[s], s:s}", "client_name", client_name, "redirect_uris",
                        redirect_uri, "grant_types", "authorization_code", "refresh_token", "response_types", "code",
                        "token_endpoint_auth_method", auth);
  if (!j) return ST_ENOMEM;
  if (json_array_size(scopes)) {
    size_t cap = 1, i;
    json_t *v;
    json_array_foreach(scopes, i, v) cap += json_string_length(v) + 1;
    char *s = malloc(cap);
    if (!s) {
      json_decref(j);
      return ST_ENOMEM;
    }
    s[0] = 0;
    json_array_foreach(scopes, i, v) {
      if (i) strcat(s, " ");
      strcat(s, json_string_value(v) ?: "");
    }
    json_object_set_new(j, "scope", json_string(s));
    free(s);
  }
  *body = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(j);
  return *body ? 0 : ST_ENOMEM;
}

int vault_dcr_reply(const char *body, size_t len, const char *auth, char **client_id, char **client_secret,
                    char method[24], int64_t *secret_expires_at, char *err, size_t errlen) {
  *client_id = *client_secret = NULL;
  method[0] = 0;
  *secret_expires_at = 0;
  json_t *j = load(body, len);
  if (!j) {
    say(err, errlen, "%s", "the registration reply is not one JSON object (or has duplicate members)");
    return VAULT_EDISCOVER;
  }
  int rc = VAULT_EDISCOVER;
  json_t *id = json_object_get(j, "client_id"), *sec = json_object_get(j, "client_secret");
  json_t *mj = json_object_get(j, "token_endpoint_auth_method");
  json_t *exp = json_object_get(j, "client_secret_expires_at");
  const char *m = mj ? json_string_value(mj) : auth;
  if (exp && !(json_is_integer(exp) && json_integer_value(exp) >= 0)) {
    say(err, errlen, "%s", "the registration reply's \"client_secret_expires_at\" is not a time in seconds (0: never)");
  } else if (!printable(id, 512)) {
    say(err, errlen, "%s", "the registration reply has no valid \"client_id\" (printable, at most 512 characters)");
  } else if (!m || (strcmp(m, "client_secret_basic") && strcmp(m, "client_secret_post") && strcmp(m, "none"))) {
    say(err, errlen, "%s", "the registration reply's \"token_endpoint_auth_method\" is not one the gateway speaks");
  } else if (strcmp(m, "none") && !printable(sec, 1024)) {
    say(err, errlen, "%s",
        "the registration reply has no valid \"client_secret\" (printable, at most 1024 characters)");
  } else {
    *client_id = strdup(json_string_value(id));
    if (strcmp(m, "none")) *client_secret = strdup(json_string_value(sec));
    snprintf(method, 24, "%s", m);
    if (exp && strcmp(m, "none")) *secret_expires_at = json_integer_value(exp);
    rc = *client_id && (!strcmp(m, "none") || *client_secret) ? 0 : ST_ENOMEM;
    if (rc) {
      free(*client_id);
      vault_wipe(*client_secret);
      *client_id = *client_secret = NULL;
    }
  }
  /* the reply holds the secret: wipe jansson's copy in place before it
   * is freed (json_string_set would free it unwiped) */
  if (json_is_string(sec)) OPENSSL_cleanse((char *)json_string_value(sec), json_string_length(sec));
  json_decref(j);
  return rc;
}

json_t *vault_cimd_document(const char *client_id, const char *tenant, const char *redirect_uri) {
  char name[100];
  snprintf(name, sizeof name, "mcpgate for %s", tenant);
  return json_pack("{s:s, s:s, s:[s], s:[s,s], s:[s], s:s}", "client_id", client_id, "client_name", name,
                   "redirect_uris", redirect_uri, "grant_types", "authorization_code", "refresh_token",
                   "response_types", "code", "token_endpoint_auth_method", "none");
}

int vault_discover_url_vouched(const char *connector_url, const char *admin_as, const char *url) {
  char h[256], c[256], a[256];
  if (!url || vault_url_host(url, h, sizeof h)) return 0;
  if (connector_url && !vault_url_host(connector_url, c, sizeof c) && !strcmp(h, c)) return 1;
  return admin_as && !vault_url_host(admin_as, a, sizeof a) && !strcmp(h, a);
}

int vault_connector_url_admin_set(const json_t *rec, const char *url) {
  json_t *auth = json_object_get(rec, "auth");
  if (!rec || !url) return 0;
  if (!json_is_true(json_object_get(auth, "discover"))) return 1; /* the admin wrote every endpoint */
  return vault_discover_url_vouched(json_string_value(json_object_get(rec, "url")),
                                    json_string_value(json_object_get(auth, "authorization_server")), url);
}

int vault_discover_wanted(const json_t *body, char *err, size_t errlen) {
  json_t *auth = json_object_get(body, "auth");
  json_t *d = json_object_get(auth, "discover");
  if (!json_is_object(auth) || !d) return 0;
  const char *type = json_string_value(json_object_get(auth, "type"));
  if (!type || strcmp(type, "oauth") || !json_is_true(d)) {
    say(err, errlen, "%s", "\"auth.discover\" is only for {\"type\": \"oauth\", \"discover\": true}");
    return VAULT_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)auth, k, v) {
    if (strcmp(k, "type") && strcmp(k, "discover") && strcmp(k, "scopes") && strcmp(k, "authorization_server")) {
      char m[300];
      snprintf(m, sizeof m,
               "unknown field \"auth.%.60s\" with \"discover\": true (the gateway reads the endpoints and registers "
               "itself; give client_id/secret without discover instead)",
               k);
      say(err, errlen, "%s", m);
      return VAULT_EINVALID;
    }
  }
  json_t *as = json_object_get(auth, "authorization_server");
  const char *a = json_string_value(as);
  if (as && (!a || !vault_discover_url_ok(a) || strchr(a, '?') || strlen(a) != json_string_length(as))) {
    say(err, errlen, "%s",
        "\"auth.authorization_server\" must be the issuer URL of the upstream's authorization server (http:// or "
        "https://, without query or fragment)");
    return VAULT_EINVALID;
  }
  return 1;
}
