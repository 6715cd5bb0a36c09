/* auth/oauth_client.c — client metadata, redirect URI matching, PKCE and
 * the client records (see oauth_client.h). */
#include "auth/oauth_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/jose.h"
#include "store/text.h"

/* ---- URIs */

typedef struct uri_parts {
  bool https;
  const char *host; /* into the URI */
  size_t hlen;
  const char *port; /* after ':', or NULL */
  size_t plen;
  const char *rest; /* path (and query), from the first '/' or '?'; "" when none */
} uri_parts;

/* Splits "scheme://authority rest" for http/https: printable ASCII, no
 * fragment, no userinfo, a host, a numeric port 1..65535 when given. */
static bool split_uri(const char *u, uri_parts *p) {
  size_t n = strlen(u);
  if (n == 0 || n > AUTH_OAUTH_URI_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)u[i];
    if (c <= 0x20 || c >= 0x7f || c == '#' || c == '\\' || c == '"' || c == '<' || c == '>') return false;
  }
  const char *a;
  if (!strncmp(u, "https://", 8)) p->https = true, a = u + 8;
  else if (!strncmp(u, "http://", 7)) p->https = false, a = u + 7;
  else return false;
  size_t alen = strcspn(a, "/?");
  if (memchr(a, '@', alen)) return false;
  const char *port = NULL;
  if (alen && a[0] == '[') {
    const char *rb = memchr(a, ']', alen);
    if (!rb) return false;
    p->host = a;
    p->hlen = (size_t)(rb - a) + 1;
    if (p->hlen < alen) {
      if (rb[1] != ':') return false;
      port = rb + 2;
    }
  } else {
    const char *colon = memchr(a, ':', alen);
    p->host = a;
    p->hlen = colon ? (size_t)(colon - a) : alen;
    if (colon) port = colon + 1;
  }
  if (p->hlen == 0 || (p->hlen == 2 && a[0] == '[')) return false;
  p->port = port;
  p->plen = port ? (size_t)(a + alen - port) : 0;
  if (port) {
    unsigned long v = 0;
    if (p->plen == 0 || p->plen > 5) return false;
    for (size_t i = 0; i < p->plen; i++) {
      if (port[i] < '0' || port[i] > '9') return false;
      v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (v == 0 || v > 65535) return false;
  }
  p->rest = a + alen;
  return true;
}

static bool loopback_host(const uri_parts *p) {
  return (p->hlen == 9 && !strncasecmp(p->host, "localhost", 9)) || (p->hlen == 9 && !memcmp(p->host, "127.0.0.1", 9)) ||
         (p->hlen == 5 && !memcmp(p->host, "[::1]", 5));
}

bool auth_oauth_redirect_uri_ok(const char *uri) {
  uri_parts p;
  if (!split_uri(uri, &p)) return false;
  return p.https || loopback_host(&p);
}

bool auth_oauth_redirect_is_loopback(const char *uri) {
  uri_parts p;
  return split_uri(uri, &p) && !p.https && loopback_host(&p);
}

bool auth_oauth_cimd_url_ok(const char *url) {
  uri_parts p;
  if (strlen(url) > AUTH_OAUTH_CLIENT_ID_MAX || !split_uri(url, &p) || !p.https) return false;
  if (p.rest[0] != '/' || p.rest[1] == 0 || strchr(p.rest, '?')) return false;
  /* no dot segments: "/./", "/../", or ending in "/." or "/.." */
  for (const char *s = p.rest; (s = strstr(s, "/.")); s++)
    if (s[2] == '/' || s[2] == 0 || (s[2] == '.' && (s[3] == '/' || s[3] == 0))) return false;
  return true;
}

bool auth_oauth_redirect_match(const json_t *redirect_uris, const char *uri) {
  uri_parts want;
  if (!split_uri(uri, &want)) return false;
  size_t i;
  json_t *v;
  json_array_foreach(redirect_uris, i, v) {
    const char *r = json_string_value(v);
    if (!r) continue;
    if (!strcmp(r, uri)) return true;
    uri_parts have;
    if (want.https || !split_uri(r, &have) || have.https || !loopback_host(&have) || !loopback_host(&want)) continue;
    /* loopback: same host spelling, same path and query, any port */
    if (have.hlen == want.hlen && !memcmp(have.host, want.host, have.hlen) && !strcmp(have.rest, want.rest))
      return true;
  }
  return false;
}

/* ---- PKCE */

bool auth_oauth_challenge_ok(const char *c) {
  if (!c || strlen(c) != AUTH_OAUTH_CHALLENGE_LEN) return false;
  uint8_t out[33];
  size_t n;
  return auth_b64url_decode(c, AUTH_OAUTH_CHALLENGE_LEN, out, sizeof out, &n) == 0 && n == 32;
}

bool auth_oauth_verifier_ok(const char *verifier) {
  size_t n = verifier ? strlen(verifier) : 0;
  if (n < AUTH_OAUTH_VERIFIER_MIN || n > AUTH_OAUTH_VERIFIER_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = verifier[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
          c == '_' || c == '~'))
      return false;
  }
  return true;
}

bool auth_oauth_pkce_ok(const char *verifier, const char *challenge) {
  if (!auth_oauth_verifier_ok(verifier) || !auth_oauth_challenge_ok(challenge)) return false;
  size_t n = strlen(verifier);
  uint8_t h[32];
  char mine[AUTH_OAUTH_CHALLENGE_LEN + 1];
  if (st_sha256(verifier, n, h)) return false;
  auth_b64url_encode(h, sizeof h, mine, sizeof mine);
  return CRYPTO_memcmp(mine, challenge, AUTH_OAUTH_CHALLENGE_LEN) == 0;
}

/* ---- metadata */

static int bad(char *err, size_t errlen, int code, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return code;
}

/* printable UTF-8 without control characters (jansson validated UTF-8):
 * neither C0 nor DEL nor C1 (U+0080..U+009F, UTF-8 C2 80..C2 9F — CSI,
 * U+009B, is ESC [ to a terminal that shows an admin the client list),
 * nor a bidi control (store/text.h: found by review, a name ending in
 * U+2069 U+202E closed the consent page's isolate around it and turned
 * the page's warning "a name it chose: not verified" backwards) */
static bool text_ok(const json_t *v, size_t max) {
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (!s || n == 0 || n > max || strlen(s) != n) return false;
  for (size_t i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)s + i;
    if (*p < 0x20 || *p == 0x7f || (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) return false;
    size_t len = 0;
    if (*p >= 0xc0 && st_text_reorders(st_text_hidden_at(p, n - i, &len))) return false;
  }
  return true;
}

static bool only_values(const json_t *arr, const char *const *allowed) {
  if (!json_is_array(arr) || json_array_size(arr) == 0) return false;
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    const char *s = json_string_value(v);
    bool ok = false;
    for (const char *const *a = allowed; s && *a && !ok; a++) ok = !strcmp(s, *a);
    if (!ok) return false;
  }
  return true;
}

int auth_oauth_client_validate(const json_t *meta, const char *cimd_url, json_t **clean, char *err, size_t errlen) {
  *clean = NULL;
  err[0] = 0;
  if (!json_is_object(meta)) return bad(err, errlen, AUTH_EOAUTH_METADATA, "client metadata must be a JSON object");
  json_t *id = json_object_get(meta, "client_id");
  if (cimd_url) {
    if (!json_is_string(id) || strcmp(json_string_value(id), cimd_url))
      return bad(err, errlen, AUTH_EOAUTH_METADATA,
                 "the client metadata document's \"client_id\" must be the URL it was fetched from");
  } else if (id) {
    return bad(err, errlen, AUTH_EOAUTH_METADATA, "\"client_id\" is assigned by the server; do not send one");
  }
  json_t *ru = json_object_get(meta, "redirect_uris");
  if (!json_is_array(ru) || json_array_size(ru) < 1 || json_array_size(ru) > AUTH_OAUTH_REDIRECTS_MAX)
    return bad(err, errlen, AUTH_EOAUTH_REDIRECT, "\"redirect_uris\" must be an array of 1 to 10 URIs");
  size_t i;
  json_t *v;
  json_array_foreach(ru, i, v) {
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !auth_oauth_redirect_uri_ok(json_string_value(v)))
      return bad(err, errlen, AUTH_EOAUTH_REDIRECT,
                 "every \"redirect_uris\" entry must be an https:// URI or a loopback http:// URI "
                 "(127.0.0.1, [::1] or localhost) of at most 512 characters, without fragment or user info");
  }
  json_t *am = json_object_get(meta, "token_endpoint_auth_method");
  if (am && (!json_is_string(am) || strcmp(json_string_value(am), "none")))
    return bad(err, errlen, AUTH_EOAUTH_METADATA,
               "\"token_endpoint_auth_method\" must be \"none\": only public clients (PKCE) are supported");
  static const char *const grants[] = {"authorization_code", "refresh_token", NULL};
  static const char *const responses[] = {"code", NULL};
  json_t *gt = json_object_get(meta, "grant_types"), *rt = json_object_get(meta, "response_types");
  if (gt && !only_values(gt, grants))
    return bad(err, errlen, AUTH_EOAUTH_METADATA,
               "\"grant_types\" may list only \"authorization_code\" and \"refresh_token\"");
  if (rt && !only_values(rt, responses))
    return bad(err, errlen, AUTH_EOAUTH_METADATA, "\"response_types\" may list only \"code\"");
  json_t *out = json_object();
  if (!out) return ST_ENOMEM;
  json_t *nm = json_object_get(meta, "client_name");
  if (nm) {
    if (!text_ok(nm, AUTH_OAUTH_NAME_MAX)) {
      json_decref(out);
      return bad(err, errlen, AUTH_EOAUTH_METADATA,
                 "\"client_name\" must be a string of 1 to 200 bytes without control or bidi characters");
    }
    json_object_set(out, "client_name", nm);
  }
  static const char *const urls[] = {"client_uri", "logo_uri", NULL};
  for (const char *const *u = urls; *u; u++) {
    json_t *x = json_object_get(meta, *u);
    if (!x) continue;
    uri_parts p;
    const char *s = json_string_value(x);
    if (!s || strlen(s) != json_string_length(x) || !split_uri(s, &p) || !p.https) {
      json_decref(out);
      snprintf(err, errlen, "\"%s\" must be an https:// URL of at most 512 characters", *u);
      return AUTH_EOAUTH_METADATA;
    }
    json_object_set(out, *u, x);
  }
  json_object_set_new(out, "redirect_uris", json_deep_copy(ru));
  *clean = out;
  return 0;
}

/* ---- records */

static size_t ckey(char *k, size_t cap, const char *tenant, const char *client_id) {
  size_t t = strlen(tenant), c = client_id ? strlen(client_id) : 0;
  if (t == 0 || t > 63 || c > AUTH_OAUTH_CLIENT_ID_MAX || 2 + t + c > cap) return 0;
  k[0] = 'c';
  memcpy(k + 1, tenant, t);
  k[1 + t] = 0;
  memcpy(k + 2 + t, client_id ? client_id : "", c);
  return 2 + t + c;
}

static int put_rec(st_txn *txn, const char *k, size_t kn, json_t *rec) {
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_AUTH, k, kn, s, strlen(s), 0);
  free(s);
  return rc;
}

/* ---- the counts record ("c" tenant \0) */

static const char *const kinds[] = {AUTH_OAUTH_KIND_DCR, AUTH_OAUTH_KIND_CIMD, AUTH_OAUTH_KIND_PINNED,
                                    AUTH_OAUTH_KIND_BLOCKED, NULL};

static bool known_kind(const char *kind) {
  for (const char *const *k = kinds; kind && *k; k++)
    if (!strcmp(*k, kind)) return true;
  return false;
}

/* The tenant's counts record (a new object; empty when absent). */
static int meta_get(st_txn *txn, const char *tenant, json_t **meta) {
  char k[80];
  size_t kn = ckey(k, sizeof k, tenant, NULL);
  *meta = NULL;
  if (!kn) return ST_EINVAL;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, k, kn, &v);
  if (rc && rc != ST_ENOTFOUND) return rc;
  json_t *m = rc ? NULL : json_loadb(v.data, v.len, 0, NULL);
  if (!json_is_object(m)) {
    json_decref(m);
    m = json_object();
  }
  if (!m) return ST_ENOMEM;
  *meta = m;
  return 0;
}

static int meta_put(st_txn *txn, const char *tenant, json_t *meta) {
  char k[80];
  size_t kn = ckey(k, sizeof k, tenant, NULL);
  return kn ? put_rec(txn, k, kn, meta) : ST_EINVAL;
}

/* One record of kind `out` left and one of kind `in` came (either NULL). */
static int meta_move(st_txn *txn, const char *tenant, const char *out, const char *in) {
  if (out && in && !strcmp(out, in)) return 0;
  json_t *m;
  int rc = meta_get(txn, tenant, &m);
  if (rc) return rc;
  if (known_kind(out)) {
    json_int_t n = json_integer_value(json_object_get(m, out));
    json_object_set_new(m, out, json_integer(n > 0 ? n - 1 : 0));
  }
  if (known_kind(in))
    json_object_set_new(m, in, json_integer(json_integer_value(json_object_get(m, in)) + 1));
  rc = meta_put(txn, tenant, m);
  json_decref(m);
  return rc;
}

/* The kind of the record at key k, into kind[8] ("" when absent or not a
 * client record). */
static int kind_at(st_txn *txn, const char *k, size_t kn, char kind[8]) {
  kind[0] = 0;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, k, kn, &v);
  if (rc) return rc;
  json_t *r = json_loadb(v.data, v.len, 0, NULL);
  const char *kd = json_string_value(json_object_get(r, "kind"));
  if (known_kind(kd)) snprintf(kind, 8, "%s", kd);
  json_decref(r);
  return 0;
}

int auth_oauth_client_put(st_txn *txn, const char *tenant, const char *client_id, const char *kind,
                          const json_t *clean, const char *now, int64_t now_s) {
  char k[400];
  size_t kn = client_id && client_id[0] ? ckey(k, sizeof k, tenant, client_id) : 0;
  if (!kn || !json_is_object(clean) || !known_kind(kind)) return ST_EINVAL;
  char old[8];
  int rc = kind_at(txn, k, kn, old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  json_t *rec = json_pack("{s:s, s:s}", "client_id", client_id, "kind", kind);
  if (!rec) return ST_ENOMEM;
  json_object_update(rec, (json_t *)clean);
  json_object_set_new(rec, "created", json_string(now));
  json_object_set_new(rec, "last_used", json_integer(now_s));
  rc = put_rec(txn, k, kn, rec);
  json_decref(rec);
  return rc ? rc : meta_move(txn, tenant, old[0] ? old : NULL, kind);
}

int auth_oauth_client_get(st_txn *txn, const char *tenant, const char *client_id, json_t **rec) {
  char k[400];
  *rec = NULL;
  size_t kn = client_id && client_id[0] ? ckey(k, sizeof k, tenant, client_id) : 0;
  if (!kn) return ST_ENOTFOUND;
  st_val v;
  int rc = st_get(txn, ST_DB_AUTH, k, kn, &v);
  if (rc) return rc;
  *rec = json_loadb(v.data, v.len, 0, NULL);
  if (!json_is_object(*rec)) {
    json_decref(*rec);
    *rec = NULL;
    return ST_ECORRUPT;
  }
  return 0;
}

bool auth_oauth_client_blocked(const json_t *rec) {
  const char *kind = json_string_value(json_object_get(rec, "kind"));
  return kind && !strcmp(kind, AUTH_OAUTH_KIND_BLOCKED);
}

int auth_oauth_client_still(st_txn *txn, const char *tenant, const char *client_id) {
  json_t *rec = NULL;
  int rc = auth_oauth_client_get(txn, tenant, client_id, &rec);
  if (rc == 0 && auth_oauth_client_blocked(rec)) rc = AUTH_EOAUTH_CLIENT_GONE;
  json_decref(rec);
  if (rc == ST_ENOTFOUND) return auth_oauth_cimd_url_ok(client_id) ? 0 : AUTH_EOAUTH_CLIENT_GONE;
  return rc;
}

int auth_oauth_client_redirect_still(st_txn *txn, const char *tenant, const char *client_id, const char *redirect_uri) {
  json_t *rec = NULL;
  int rc = auth_oauth_client_get(txn, tenant, client_id, &rec);
  if (rc == ST_ENOTFOUND) return auth_oauth_cimd_url_ok(client_id) ? 0 : AUTH_EOAUTH_CLIENT_GONE;
  if (rc) return rc;
  if (auth_oauth_client_blocked(rec)) rc = AUTH_EOAUTH_CLIENT_GONE;
  else rc = auth_oauth_redirect_match(json_object_get(rec, "redirect_uris"), redirect_uri) ? 0 : AUTH_EOAUTH_REDIRECT;
  json_decref(rec);
  return rc;
}

int auth_oauth_client_delete(st_txn *txn, const char *tenant, const char *client_id) {
  char k[400];
  size_t kn = client_id && client_id[0] ? ckey(k, sizeof k, tenant, client_id) : 0;
  if (!kn) return ST_ENOTFOUND;
  char old[8];
  int rc = kind_at(txn, k, kn, old);
  if (!rc) rc = st_del(txn, ST_DB_AUTH, k, kn);
  return rc ? rc : meta_move(txn, tenant, old[0] ? old : NULL, NULL);
}

int auth_oauth_client_touch(st_txn *txn, const char *tenant, const char *client_id, int64_t now_s) {
  json_t *rec;
  int rc = auth_oauth_client_get(txn, tenant, client_id, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_object_set_new(rec, "last_used", json_integer(now_s));
  char k[400];
  size_t kn = ckey(k, sizeof k, tenant, client_id);
  rc = put_rec(txn, k, kn, rec);
  json_decref(rec);
  return rc;
}

int auth_oauth_clients_expire(st_txn *txn, const char *tenant, int64_t idle_before, int limit) {
  char pre[80];
  size_t pn = ckey(pre, sizeof pre, tenant, NULL);
  if (!pn || limit < 1) return 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  char **dead = calloc((size_t)limit, sizeof *dead);
  int nd = 0;
  st_val k, v;
  st_cursor_seek(c, pre, pn, NULL, 0);
  while (dead && nd < limit && st_cursor_next(c, &k, &v) == 0) {
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *kind = json_string_value(json_object_get(r, "kind"));
    json_t *lu = json_object_get(r, "last_used");
    if (kind && !strcmp(kind, AUTH_OAUTH_KIND_DCR) && json_is_integer(lu) && json_integer_value(lu) < idle_before) {
      dead[nd] = malloc(k.len - pn + 1);
      if (dead[nd]) {
        memcpy(dead[nd], (const char *)k.data + pn, k.len - pn);
        dead[nd][k.len - pn] = 0;
        nd++;
      }
    }
    json_decref(r);
  }
  st_cursor_close(c);
  if (!dead) return ST_ENOMEM;
  int n = 0;
  for (int i = 0; i < nd; i++) {
    if (auth_oauth_client_delete(txn, tenant, dead[i]) == 0) n++;
    free(dead[i]);
  }
  free(dead);
  return n;
}

int64_t auth_oauth_clients_count(st_txn *txn, const char *tenant, const char *kind) {
  json_t *m;
  int rc = meta_get(txn, tenant, &m);
  if (rc) return rc;
  json_int_t n = json_integer_value(json_object_get(m, kind));
  json_decref(m);
  return n > 0 ? (int64_t)n : 0;
}

/* Whether the record r (parsed) is idle past its kind's limit. */
static bool idle(const json_t *r, int64_t dcr_before, int64_t cimd_before) {
  const char *kind = json_string_value(json_object_get(r, "kind"));
  json_t *lu = json_object_get(r, "last_used");
  if (!kind || !json_is_integer(lu)) return false;
  if (!strcmp(kind, AUTH_OAUTH_KIND_DCR)) return json_integer_value(lu) < dcr_before;
  if (!strcmp(kind, AUTH_OAUTH_KIND_CIMD)) return json_integer_value(lu) < cimd_before;
  return false;
}

int auth_oauth_clients_sweep(st_txn *txn, const char *tenant, int64_t dcr_idle_before, int64_t cimd_idle_before,
                             int scan) {
  char pre[80], from[400];
  size_t pn = ckey(pre, sizeof pre, tenant, NULL);
  if (!pn || scan < 1) return 0;
  json_t *m;
  int rc = meta_get(txn, tenant, &m);
  if (rc) return rc;
  const char *at = json_string_value(json_object_get(m, "sweep"));
  size_t fn = at && at[0] ? ckey(from, sizeof from, tenant, at) : pn;
  if (!fn) memcpy(from, pre, fn = pn);
  json_decref(m);
  char **dead = calloc((size_t)scan, sizeof *dead);
  char last[AUTH_OAUTH_CLIENT_ID_MAX + 1] = "";
  int nd = 0, seen = 0;
  if (!dead) return ST_ENOMEM;
  /* two passes: from where the last step stopped to the end, then from the
   * first record up to that place */
  for (int pass = 0; pass < 2 && seen < scan && rc == 0; pass++) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_AUTH, &c))) break;
    st_cursor_seek(c, pre, pn, pass ? NULL : from, pass ? 0 : fn);
    st_val k, v;
    while (seen < scan && st_cursor_next(c, &k, &v) == 0) {
      if (k.len == pn) continue; /* the counts record */
      int cmp = memcmp(k.data, from, k.len < fn ? k.len : fn);
      if (cmp == 0) cmp = k.len < fn ? -1 : k.len > fn;
      if (pass == 0 && cmp == 0) continue; /* looked at by the last step */
      if (pass == 1 && cmp >= 0) break;    /* back where this step began */
      seen++;
      size_t idn = k.len - pn;
      if (idn > AUTH_OAUTH_CLIENT_ID_MAX) continue;
      memcpy(last, (const char *)k.data + pn, idn);
      last[idn] = 0;
      json_t *r = json_loadb(v.data, v.len, 0, NULL);
      if (idle(r, dcr_idle_before, cimd_idle_before) && (dead[nd] = strdup(last))) nd++;
      json_decref(r);
    }
    st_cursor_close(c);
  }
  int n = 0;
  for (int i = 0; i < nd; i++) {
    if (rc == 0) {
      int d = auth_oauth_client_delete(txn, tenant, dead[i]);
      if (d == 0) n++;
      else if (d != ST_ENOTFOUND) rc = d;
    }
    free(dead[i]);
  }
  free(dead);
  if (rc == 0 && seen) { /* remember the place */
    if ((rc = meta_get(txn, tenant, &m)) == 0) {
      json_object_set_new(m, "sweep", json_string(last));
      rc = meta_put(txn, tenant, m);
      json_decref(m);
    }
  }
  return rc ? rc : n;
}

int auth_oauth_clients_list(st_txn *txn, const char *tenant, const char *kind, const char *after, int limit,
                            json_t **out, bool *more) {
  char pre[80], from[400];
  *out = NULL;
  *more = false;
  size_t pn = ckey(pre, sizeof pre, tenant, NULL);
  if (!pn || limit < 1) return ST_EINVAL;
  size_t fn = after && after[0] ? ckey(from, sizeof from, tenant, after) : 0;
  json_t *arr = json_array();
  st_cursor *c;
  int rc = arr ? st_cursor_open(txn, ST_DB_AUTH, &c) : ST_ENOMEM;
  if (rc) {
    json_decref(arr);
    return rc;
  }
  st_cursor_seek(c, pre, pn, fn ? from : NULL, fn);
  st_val k, v;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    if (k.len == pn || (fn && k.len == fn && !memcmp(k.data, from, fn))) continue;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *kd = json_string_value(json_object_get(r, "kind"));
    if (!json_is_object(r) || !kd || (kind && strcmp(kd, kind))) {
      json_decref(r);
      continue;
    }
    if ((int)json_array_size(arr) == limit) {
      json_decref(r);
      *more = true;
      break;
    }
    json_array_append_new(arr, r);
  }
  st_cursor_close(c);
  if (rc && rc != ST_ENOTFOUND) {
    json_decref(arr);
    return rc;
  }
  *out = arr;
  return 0;
}

int auth_oauth_clients_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char pre[80];
  size_t pn = ckey(pre, sizeof pre, tenant, NULL);
  return pn && limit > 0 ? st_del_prefix(txn, ST_DB_AUTH, pre, pn, limit) : 0;
}
