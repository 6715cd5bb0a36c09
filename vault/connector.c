/* vault/connector.c — connector records and their sealed credentials
 * (see vault.h). Validation failures are VAULT_EINVALID (vault/errors.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/seal.h"
#include "store/token.h"
#include "store/url_query.h"
#include "vault/grant.h"
#include "vault/rediscover.h"
#include "vault/vault.h"

#define URL_MAX VAULT_URL_MAX
#define DESC_MAX 500
#define HEADER_VALUE_MAX 8192
/* Claude Code shows tools as mcp__{server}__{tool} and refuses names over
 * 64 characters: with a typical server name of 8 characters, a connector
 * name longer than this leaves little room for tool names. */
#define NAME_WARN_LEN 16

int vault_connector_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n > VAULT_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
      return 0;
  return 1;
}

static void add(char *err, size_t errlen, const char *msg) {
  size_t l = strlen(err);
  snprintf(err + l, errlen - l, "%s%s", l ? "; " : "", msg);
}

static int header_name_ok(const char *s) {
  if (!*s || strlen(s) > 100) return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
      return 0;
  /* headers the proxy owns */
  static const char *const reserved[] = {"host", "content-length", "transfer-encoding", "connection",
                                         "mcp-session-id", "mcp-protocol-version", "accept",
                                         "content-type", "last-event-id", NULL};
  for (const char *const *r = reserved; *r; r++)
    if (!strcasecmp(s, *r)) return 0;
  return 1;
}

/* user:password@ in the authority: curl would send it as Basic auth, and
 * the URL is stored and shown in clear (the GET view, the audit log's
 * before → after, log lines) — a credential belongs in auth, sealed. The
 * one rule of store/url_query.h: an '@' before the first '/' (a '?' or
 * '#' before it hides nothing), and a host[:port] with a numeric port. */
static bool has_userinfo(const char *u) { return st_url_authority_check(u, NULL, 0) != 0; }

/* Whether the URL's authority (its host) is ASCII: an internationalised
 * name must come as punycode (the gateway looks names up as given; curl's
 * own lookup converted them). The rest may carry a masked "…" (sealed
 * query values, vault/connector_url.h). */
static bool ascii(const char *u) {
  const char *p = strstr(u, "://");
  for (p = p ? p + 3 : u; *p && *p != '/' && *p != '?' && *p != '#'; p++)
    if ((unsigned char)*p >= 0x80) return false;
  return true;
}

static bool url_ok(const char *u) {
  return u && ascii(u) && (!strncmp(u, "http://", 7) || !strncmp(u, "https://", 8)) && strlen(u) <= URL_MAX && strlen(u) >= 10 &&
         !strpbrk(u, " \t\r\n\"<>\\^`{|}#") && !has_userinfo(u);
}

static bool printable(const char *s, size_t max) {
  if (!s || !*s || strlen(s) > max) return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) return false;
  return true;
}

/* auth type "oauth" (per-user grants): the record keeps everything but the
 * client secret, which *secret borrows (sealed as VAULT_CLIENT_KIND). */
static json_t *parse_oauth(json_t *auth, const char **secret, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  size_t before = strlen(err);
  json_object_foreach(auth, k, v) {
    if (strcmp(k, "type") && strcmp(k, "authorize_url") && strcmp(k, "token_url") && strcmp(k, "revocation_url") &&
        strcmp(k, "client_id") && strcmp(k, "client_secret") && strcmp(k, "scopes") && strcmp(k, "token_auth")) {
      char m[120];
      snprintf(m, sizeof m, "unknown field \"auth.%.60s\"", k);
      add(err, errlen, m);
    }
  }
  const char *az = json_string_value(json_object_get(auth, "authorize_url"));
  const char *tk = json_string_value(json_object_get(auth, "token_url"));
  json_t *rvj = json_object_get(auth, "revocation_url");
  const char *rv = json_string_value(rvj);
  const char *cid = json_string_value(json_object_get(auth, "client_id"));
  json_t *csj = json_object_get(auth, "client_secret");
  const char *cs = json_string_value(csj);
  json_t *scopes = json_object_get(auth, "scopes");
  json_t *taj = json_object_get(auth, "token_auth");
  const char *ta = json_string_value(taj);
  if (!url_ok(az)) add(err, errlen, "\"auth.authorize_url\" must be an http:// or https:// URL without user information (the upstream's authorization endpoint)");
  if (!url_ok(tk)) add(err, errlen, "\"auth.token_url\" must be an http:// or https:// URL without user information (the upstream's token endpoint)");
  if (rvj && !url_ok(rv)) add(err, errlen, "\"auth.revocation_url\" must be an http:// or https:// URL without user information (RFC 7009)");
  if (!printable(cid, 512)) add(err, errlen, "\"auth.client_id\" must be a non-empty printable string");
  if (csj && !printable(cs, 1024)) add(err, errlen, "\"auth.client_secret\" must be a non-empty printable string");
  if (scopes) {
    bool ok = json_is_array(scopes) && json_array_size(scopes) <= 50;
    size_t i;
    json_t *s1;
    json_array_foreach(scopes, i, s1) if (!printable(json_string_value(s1), 200) || strchr(json_string_value(s1), '"')) ok = false;
    if (!ok) add(err, errlen, "\"auth.scopes\" must be an array of at most 50 scope strings");
  }
  if (taj && (!ta || (strcmp(ta, "client_secret_basic") && strcmp(ta, "client_secret_post") && strcmp(ta, "none"))))
    add(err, errlen, "\"auth.token_auth\" must be \"client_secret_basic\", \"client_secret_post\" or \"none\"");
  else if (ta && !strcmp(ta, "none") && csj)
    add(err, errlen, "\"auth.token_auth\" \"none\" is for a public client: drop \"auth.client_secret\"");
  else if (ta && strcmp(ta, "none") && !csj)
    add(err, errlen, "\"auth.client_secret\" is required with that \"auth.token_auth\"");
  if (strlen(err) != before) return NULL;
  json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "type", "oauth", "authorize_url", az, "token_url", tk, "client_id", cid);
  if (rv) json_object_set_new(o, "revocation_url", json_string(rv));
  json_object_set_new(o, "scopes", scopes ? json_deep_copy(scopes) : json_array());
  json_object_set_new(o, "token_auth", json_string(ta ? ta : cs ? "client_secret_basic" : "none"));
  *secret = cs;
  return o;
}

/* auth type "user_header": each employee gives their own key, injected as
 * `name: prefix key`; the connector itself holds no secret. */
static json_t *parse_user_header(json_t *auth, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  size_t before = strlen(err);
  json_object_foreach(auth, k, v) {
    if (strcmp(k, "type") && strcmp(k, "name") && strcmp(k, "prefix")) {
      char m[120];
      snprintf(m, sizeof m, "unknown field \"auth.%.60s\"", k);
      add(err, errlen, m);
    }
  }
  const char *name = json_string_value(json_object_get(auth, "name"));
  json_t *pj = json_object_get(auth, "prefix");
  const char *prefix = json_string_value(pj);
  if (!name || !header_name_ok(name))
    add(err, errlen, "\"auth.name\" must be a header name (letters, digits, '-'), not one the proxy owns");
  if (pj) {
    bool ok = prefix && strlen(prefix) <= 64;
    for (const char *p = prefix; ok && *p; p++) ok = (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
    if (!ok) add(err, errlen, "\"auth.prefix\" must be a printable string of at most 64 characters (e.g. \"Bearer \")");
  }
  if (strlen(err) != before) return NULL;
  json_t *o = json_pack("{s:s, s:s}", "type", "user_header", "name", name);
  if (prefix && *prefix) json_object_set_new(o, "prefix", json_string(prefix));
  return o;
}

int vault_connector_parse(const json_t *body, json_t **config, const char **secret, char *err,
                          size_t errlen) {
  *config = NULL;
  *secret = NULL;
  err[0] = 0;
  if (!json_is_object(body)) {
    add(err, errlen, "the body must be a JSON object");
    return VAULT_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)body, k, v) {
    if (strcmp(k, "url") && strcmp(k, "description") && strcmp(k, "auth") && strcmp(k, "ca_file") &&
        strcmp(k, "timeouts")) {
      char m[120];
      snprintf(m, sizeof m, "unknown field \"%.60s\"", k);
      add(err, errlen, m);
    }
  }
  json_t *url = json_object_get(body, "url");
  const char *u = json_string_value(url);
  if (!u) add(err, errlen, "\"url\" is required (http:// or https:// URL of the upstream MCP endpoint)");
  else if ((strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) || strlen(u) > URL_MAX ||
           strpbrk(u, " \t\r\n\"<>\\^`{|}") || strlen(u) < 10)
    add(err, errlen, "\"url\" must be an http:// or https:// URL without spaces");
  else if (!ascii(u))
    add(err, errlen,
        "\"url\" must have an ASCII host: write an internationalised host name in its punycode form (xn--...)");
  else if (has_userinfo(u))
    add(err, errlen,
        "\"url\" must not carry user information (user:password@host): give the credential as auth "
        "{\"type\":\"header\",\"name\":\"Authorization\",\"value\":\"Basic …\"}, which is sealed");
  json_t *desc = json_object_get(body, "description");
  if (desc && (!json_is_string(desc) || json_string_length(desc) > DESC_MAX))
    add(err, errlen, "\"description\" must be a string of at most 500 characters");
  json_t *ca = json_object_get(body, "ca_file");
  if (ca && (!json_is_string(ca) || json_string_value(ca)[0] != '/'))
    add(err, errlen, "\"ca_file\" must be an absolute path");
  json_t *auth = json_object_get(body, "auth");
  const char *atype = "none";
  const char *hname = NULL;
  json_t *oauth = NULL;
  if (auth) {
    if (!json_is_object(auth)) {
      add(err, errlen, "\"auth\" must be an object");
    } else {
      atype = json_string_value(json_object_get(auth, "type"));
      if (atype && !strcmp(atype, "oauth")) {
        oauth = parse_oauth(auth, secret, err, errlen);
      } else if (atype && !strcmp(atype, "user_header")) {
        oauth = parse_user_header(auth, err, errlen);
        if (!oauth) atype = "oauth"; /* its problems are in err (the branch below) */
      } else {
        json_object_foreach(auth, k, v) if (strcmp(k, "type") && strcmp(k, "name") && strcmp(k, "value")) {
          char m[120];
          snprintf(m, sizeof m, "unknown field \"auth.%.60s\"", k);
          add(err, errlen, m);
        }
      }
      if (oauth) {
        /* parsed above */
      } else if (atype && !strcmp(atype, "oauth")) {
        atype = "none"; /* its problems are in err */
      } else if (!atype || (strcmp(atype, "none") && strcmp(atype, "header"))) {
        add(err, errlen, "\"auth.type\" must be \"none\", \"header\", \"oauth\" or \"user_header\"");
        atype = "none";
      } else if (!strcmp(atype, "header")) {
        hname = json_string_value(json_object_get(auth, "name"));
        const char *hv = json_string_value(json_object_get(auth, "value"));
        if (!hname || !header_name_ok(hname))
          add(err, errlen, "\"auth.name\" must be a header name (letters, digits, '-'), not one the proxy owns");
        if (!hv || !*hv || strlen(hv) > HEADER_VALUE_MAX || strpbrk(hv, "\r\n"))
          add(err, errlen, "\"auth.value\" must be a non-empty single-line string");
        else *secret = hv;
      } else if (json_object_get(auth, "value") || json_object_get(auth, "name")) {
        add(err, errlen, "\"auth.name\"/\"auth.value\" need \"type\": \"header\"");
      }
    }
  }
  json_t *to = json_object_get(body, "timeouts");
  json_t *timeouts = json_object();
  if (to) {
    if (!json_is_object(to)) add(err, errlen, "\"timeouts\" must be an object");
    else
      json_object_foreach(to, k, v) {
        if (strcmp(k, "connect_ms") && strcmp(k, "first_byte_ms") && strcmp(k, "idle_ms") && strcmp(k, "event_ms")) {
          char m[120];
          snprintf(m, sizeof m, "unknown field \"timeouts.%.60s\"", k);
          add(err, errlen, m);
        } else if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 86400000) {
          char m[120];
          snprintf(m, sizeof m, "\"timeouts.%s\" must be an integer from 100 to 86400000 (ms)", k);
          add(err, errlen, m);
        } else {
          json_object_set(timeouts, k, v);
        }
      }
  }
  if (err[0]) {
    json_decref(timeouts);
    json_decref(oauth);
    *secret = NULL;
    return VAULT_EINVALID;
  }
  json_t *c = json_object();
  json_object_set_new(c, "url", json_string(u));
  json_object_set_new(c, "description", json_string(desc ? json_string_value(desc) : ""));
  json_t *a = oauth ? oauth : json_pack("{s:s}", "type", atype);
  if (hname) json_object_set_new(a, "name", json_string(hname));
  json_object_set_new(c, "auth", a);
  if (ca) json_object_set(c, "ca_file", ca);
  json_object_set_new(c, "timeouts", timeouts);
  *config = c;
  return 0;
}

static size_t key_of(const char *tenant, const char *name, char *k) {
  size_t tl = strlen(tenant), nl = strlen(name);
  memcpy(k, tenant, tl + 1);
  memcpy(k + tl + 1, name, nl);
  return tl + 1 + nl;
}

int vault_connector_get(st_txn *txn, const char *tenant, const char *name, json_t **rec) {
  char k[128];
  st_val v;
  *rec = NULL;
  if (!vault_connector_name_valid(name) || strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_CONNECTORS, k, key_of(tenant, name, k), &v);
  if (rc) return rc;
  *rec = json_loadb(v.data, v.len, 0, NULL);
  return *rec ? 0 : ST_ECORRUPT;
}

/* Whether a per-user connector keeps the identity its grants were made
 * for: the same auth type and, for oauth, the same authorization server
 * and client; for user_header, the same header. The authorization server
 * is every endpoint that is sent a grant's tokens: the token endpoint and
 * the revocation endpoint too (a grant's revocation job copies the
 * connector's revocation_url when it is cut — one named anew would be sent
 * the refresh and access tokens of grants another server issued). */
static bool same_identity(const json_t *old, const json_t *config) {
  json_t *a = json_object_get(old, "auth"), *b = json_object_get(config, "auth");
  static const char *const keys[] = {"type",      "authorize_url", "token_url", "revocation_url",
                                     "client_id", "name",          "prefix",    NULL};
  for (const char *const *k = keys; *k; k++) {
    const char *x = json_string_value(json_object_get(a, *k)), *y = json_string_value(json_object_get(b, *k));
    if ((x == NULL) != (y == NULL) || (x && strcmp(x, y))) return false;
  }
  return true;
}

/* Does the upstream see another credential after this PUT: other auth
 * settings (same_identity), or another shared header value (compared in
 * constant time; an old value that cannot be read counts as changed: fail
 * closed); an oauth client's rotated secret is not one.
 * 0 and *out, or a store error. */
static int rekeyed(st_txn *txn, const char *tenant, const char *name, const json_t *old, const json_t *config,
                   const char *secret, bool *out) {
  *out = true;
  if (!same_identity(old, config)) return 0;
  /* the same oauth client (same_identity): calls run with each employee's
   * own tokens; its secret is only the gateway's toward the authorization
   * server, and rotating it changes nobody's rights upstream */
  if (!strcmp(json_string_value(json_object_get(json_object_get(old, "auth"), "type")) ?: "", "oauth")) {
    *out = false;
    return 0;
  }
  st_aad aad = {tenant, VAULT_SECRET_KIND, name};
  uint8_t *pt = NULL;
  size_t n = 0;
  int rc = st_secret_get(txn, &aad, &pt, &n);
  if (rc == ST_ENOTFOUND) *out = secret != NULL;
  else if (rc == 0) *out = !secret || strlen(secret) != n || !st_ct_equal(pt, secret, n);
  st_secret_free(pt, n);
  return rc == ST_ECRYPTO || rc == ST_ENOTFOUND ? 0 : rc;
}

int vault_connector_put(st_txn *txn, const char *tenant, const char *name, const json_t *config,
                        const char *secret, const char *now, const char *epoch, vault_put_out *out) {
  char k[128];
  json_t *old = NULL;
  char *old_url = NULL, *url = NULL, *shown = NULL;
  const char *old_real = NULL;
  bool moved = false, sealed = false, rekey = false;
  memset(out, 0, sizeof *out);
  if (!epoch || !*epoch) return ST_EINVAL;
  int rc = vault_connector_get(txn, tenant, name, &old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  out->created = old == NULL;
  /* the real URLs (connector_url.c): the old one unsealed, the new one
   * with the values the admin sent back masked ("…") kept from it. An old
   * one that cannot be read keeps nothing and counts as moved. A move is
   * decided on them, so a new key in the query advances the epoch (below)
   * though the URL shows alike. */
  if (old) {
    rc = vault_connector_url(txn, tenant, name, old, &old_real, &old_url);
    if (rc == ST_ENOTFOUND || rc == ST_ECRYPTO || rc == ST_ECORRUPT) old_real = NULL;
    else if (rc) goto out;
  }
  if ((rc = vault_url_keep_masked(json_string_value(json_object_get(config, "url")) ?: "", old_real, &url)) ||
      (rc = (shown = vault_url_shown(url)) ? 0 : ST_ENOMEM))
    goto out;
  moved = old && (!old_real || strlen(old_real) != strlen(url) || !st_ct_equal(old_real, url, strlen(url)));
  sealed = strcmp(shown, url) != 0;
  if (old && !moved && (rc = rekeyed(txn, tenant, name, old, config, secret, &rekey))) goto out;
  if (old && (moved || rekey)) {
    /* before anything changes: what the old server and credentials opened
     * upstream is ended with them (gateway/mcp), at the old server only
     * while the connector stays at its origin */
    vault_ending_event ee = {tenant, name, NULL, moved && !vault_url_same_origin(old_real, url)};
    if ((rc = st_emit(txn, ST_EVENT_CREDENTIAL_ENDING, &ee))) goto out;
  }
  if (old && vault_connector_is_per_user(old) && (moved || !same_identity(old, config))) {
    /* the employees' grants (or keys) belong to the old upstream or client:
     * never sent to another one. Cut before the record changes, so their
     * revocation jobs copy the old endpoint and client credentials. */
    char nowbuf[32];
    vault_rfc3339(0, nowbuf);
    if ((rc = vault_grants_cut_connector(txn, tenant, name, "connector_changed", nowbuf))) goto out;
  }
  json_t *rec = json_deep_copy(config);
  json_object_set_new(rec, "url", json_string(shown));
  if (sealed) json_object_set_new(rec, "url_sealed", json_true());
  json_object_set_new(rec, "name", json_string(name));
  json_object_set_new(rec, "created", json_string(old && json_string_value(json_object_get(old, "created"))
                                                      ? json_string_value(json_object_get(old, "created"))
                                                      : now));
  json_object_set_new(rec, "updated", json_string(now));
  json_t *warn = json_array();
  if (strlen(name) > NAME_WARN_LEN) {
    char m[300];
    snprintf(m, sizeof m,
             "connector name \"%s\" is %zu characters: Claude Code refuses tool names over 64 characters "
             "(mcp__<server>__%s__<tool>), so long tool names of this connector may be unusable",
             name, strlen(name), name);
    json_array_append_new(warn, json_string(m));
  }
  /* a discovered authorization server elsewhere than the connector: the
   * upstream chose it, the admin should see it */
  json_t *disc = json_object_get(json_object_get(config, "auth"), "discovered");
  if (json_is_true(json_object_get(disc, "as_host_differs"))) {
    char m[2300];
    snprintf(m, sizeof m,
             "the connector's authorization server %.2048s is on another host than the connector: the upstream's "
             "metadata chose it; check that it belongs to the same service",
             json_string_value(json_object_get(disc, "authorization_server")) ?: "?");
    json_array_append_new(warn, json_string(m));
  }
  json_object_set_new(rec, "warnings", warn);
  /* upstream sessions opened (and key forms shown) before a move or a
   * rekey are the old server's or the old credential's: a new epoch, so
   * none read before is sent or stored after (vault_connector_bind);
   * otherwise the same one. A new connector gets its own too, drawn at
   * random like every one: a counter (or the url, for a record never
   * moved) would start again after a delete, and a session or a form of
   * the connector deleted would pass for the one made again in its name.
   * A move of the real URL counts though the shown one may read alike (a
   * new key in its query): the binding, not the url, tells them apart. */
  json_t *oe = old ? json_object_get(old, "epoch") : NULL;
  if (!old || moved || rekey) json_object_set_new(rec, "epoch", json_string(epoch));
  else if (json_is_string(oe)) json_object_set(rec, "epoch", oe);
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(rec);
  if (!s) {
    rc = ST_ENOMEM;
    goto out;
  }
  rc = st_put(txn, ST_DB_CONNECTORS, k, key_of(tenant, name, k), s, strlen(s), 0);
  free(s);
  /* the real URL sealed when it shows otherwise, else none kept */
  st_aad ua = {tenant, VAULT_URL_KIND, name};
  if (!rc && sealed) rc = st_secret_put(txn, &ua, url, strlen(url));
  else if (!rc && (rc = st_secret_del(txn, &ua)) == ST_ENOTFOUND) rc = 0;
out:
  json_decref(old);
  vault_secret_free(old_url);
  vault_secret_free(url);
  free(shown);
  if (rc) return rc;
  /* one sealed slot per kind: the header value, or the OAuth client secret */
  bool is_oauth = !strcmp(json_string_value(json_object_get(json_object_get(config, "auth"), "type")) ?: "", "oauth");
  st_aad aad = {tenant, is_oauth ? VAULT_CLIENT_KIND : VAULT_SECRET_KIND, name};
  st_aad other = {tenant, is_oauth ? VAULT_SECRET_KIND : VAULT_CLIENT_KIND, name};
  if (secret) {
    rc = st_secret_put(txn, &aad, secret, strlen(secret));
  } else {
    rc = st_secret_del(txn, &aad);
    if (rc == ST_ENOTFOUND) rc = 0;
  }
  if (!rc) rc = st_secret_del(txn, &other);
  if (rc == ST_ENOTFOUND) rc = 0;
  if (rc) return rc;
  /* no longer discovered: nothing to read again (a discovered one is
   * scheduled by the writer of the PUT, which knows the interval) */
  if (!json_is_true(json_object_get(json_object_get(config, "auth"), "discover")) &&
      (rc = vault_rediscover_cancel(txn, tenant, name)))
    return rc;
  out->moved = moved;
  out->rekeyed = rekey;
  vault_connector_event ev = {tenant, name, out->created != 0, moved, rekey};
  return st_emit(txn, ST_EVENT_CONNECTOR_PUT, &ev);
}

int vault_connector_set_caps(st_txn *txn, const char *tenant, const char *name, const json_t *caps) {
  json_t *rec;
  int rc = vault_connector_get(txn, tenant, name, &rec);
  if (rc) return rc;
  json_object_set_new(rec, "capabilities", json_deep_copy(caps));
  char k[128];
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(rec);
  if (!s) return ST_ENOMEM;
  rc = st_put(txn, ST_DB_CONNECTORS, k, key_of(tenant, name, k), s, strlen(s), 0);
  free(s);
  return rc;
}

json_t *vault_connector_bind(const json_t *rec) {
  json_t *e = json_object_get(rec, "epoch");
  if (json_is_string(e)) return e;
  e = json_object_get(rec, "url");
  return json_is_string(e) ? e : NULL;
}

json_t *vault_upstream_bind_facts(st_txn *txn, const char *tenant, const char *connector, const char *user,
                                  const vault_conn_facts *f) {
  json_t *b = f->bind;
  if (!b) return NULL;
  if (!user || !f->per_user) return json_incref(b);
  json_t *g = NULL;
  int rc = vault_grant_info(txn, tenant, user, connector, &g);
  if (rc && rc != ST_ENOTFOUND) return NULL;
  /* no grant: no upstream session can be opened (VAULT_ENOGRANT), and one
   * opened before belonged to a grant that had a binding */
  const char *gb = !g ? "-" : json_string_value(json_object_get(g, "bind"));
  if (!gb) gb = json_string_value(json_object_get(g, "created")) ?: ""; /* a grant from before "bind" */
  json_t *out = json_sprintf("%s\n%s", json_string_value(b), gb);
  json_decref(g);
  return out;
}

json_t *vault_upstream_bind(st_txn *txn, const char *tenant, const char *connector, const char *user,
                            const json_t *rec) {
  vault_conn_facts f;
  vault_conn_facts_of(rec, &f);
  return vault_upstream_bind_facts(txn, tenant, connector, user, &f);
}

json_t *vault_connector_view(const json_t *rec) {
  json_t *o = json_deep_copy(rec);
  json_object_del(o, "epoch"); /* the gateway's own bookkeeping */
  json_t *a = json_object_get(o, "auth");
  const char *type = json_string_value(json_object_get(a, "type")) ?: "";
  if (!strcmp(type, "header") || (!strcmp(type, "oauth") && strcmp(json_string_value(json_object_get(a, "token_auth")) ?: "", "none")))
    json_object_set_new(a, "sealed", json_true());
  return o;
}

int vault_connector_secret(st_txn *txn, const char *tenant, const char *name, char **value) {
  st_aad aad = {tenant, VAULT_SECRET_KIND, name};
  return st_secret_get_str(txn, &aad, value);
}

void vault_secret_free(char *value) { st_secret_str_free(value); }


static int auth_kind(const char *t) {
  if (!t) return VAULT_AUTH_NONE;
  if (!strcmp(t, "none")) return VAULT_AUTH_NONE;
  if (!strcmp(t, "header")) return VAULT_AUTH_HEADER;
  if (!strcmp(t, "oauth")) return VAULT_AUTH_OAUTH;
  if (!strcmp(t, "user_header")) return VAULT_AUTH_USER_HEADER;
  return VAULT_AUTH_OTHER;
}

int vault_connector_is_oauth(const json_t *rec) {
  return auth_kind(json_string_value(json_object_get(json_object_get(rec, "auth"), "type"))) == VAULT_AUTH_OAUTH;
}

int vault_connector_is_per_user(const json_t *rec) {
  int k = auth_kind(json_string_value(json_object_get(json_object_get(rec, "auth"), "type")));
  return k == VAULT_AUTH_OAUTH || k == VAULT_AUTH_USER_HEADER;
}

void vault_conn_facts_of(const json_t *rec, vault_conn_facts *out) {
  json_t *auth = json_object_get(rec, "auth"), *to = json_object_get(rec, "timeouts");
  out->rec = rec;
  out->auth = auth_kind(json_string_value(json_object_get(auth, "type")));
  out->per_user = out->auth == VAULT_AUTH_OAUTH || out->auth == VAULT_AUTH_USER_HEADER;
  out->auth_name = json_string_value(json_object_get(auth, "name"));
  out->auth_prefix = json_string_value(json_object_get(auth, "prefix"));
  out->bind = vault_connector_bind(rec);
  out->url = json_string_value(json_object_get(rec, "url"));
  out->url_sealed = json_is_true(json_object_get(rec, "url_sealed"));
  out->connect_ms = (long)json_integer_value(json_object_get(to, "connect_ms"));
  out->first_byte_ms = (long)json_integer_value(json_object_get(to, "first_byte_ms"));
  out->idle_ms = (long)json_integer_value(json_object_get(to, "idle_ms"));
  out->event_ms = (long)json_integer_value(json_object_get(to, "event_ms"));
  out->ca_file = json_string_value(json_object_get(rec, "ca_file"));
}

int vault_upstream_cred_facts(st_txn *txn, const char *tenant, const char *connector, const char *user,
                              const vault_conn_facts *f, int64_t now_s, vault_cred *out) {
  int rc = 0;
  out->name = out->value = NULL;
  const char *name = f->auth_name;
  if (f->auth == VAULT_AUTH_USER_HEADER) {
    /* the user's own key, as the header the connector names */
    vault_tokens t = {0};
    rc = user ? vault_grant_get(txn, tenant, user, connector, &t) : ST_ENOTFOUND;
    if (rc == ST_ENOTFOUND) rc = VAULT_ENOGRANT;
    if (!rc) {
      const char *prefix = f->auth_prefix ?: "";
      size_t n = strlen(prefix) + strlen(t.access) + 1;
      out->value = malloc(n);
      out->name = name ? strdup(name) : NULL;
      if (out->value) snprintf(out->value, n, "%s%s", prefix, t.access);
      if (!out->value || !out->name) rc = ST_ENOMEM;
    }
    vault_tokens_free(&t);
    if (rc) vault_cred_free(out);
  } else if (f->auth == VAULT_AUTH_OAUTH) {
    /* the user's own grant; never anyone else's, never the gateway's */
    vault_tokens t = {0};
    rc = user ? vault_grant_get(txn, tenant, user, connector, &t) : ST_ENOTFOUND;
    if (rc == ST_ENOTFOUND) rc = VAULT_ENOGRANT;
    /* 5 s, below the aggregated gate's 10 (gateway/mcp/grants.c): a token
     * the gate let through (more than 10 s left) is never refused here a
     * second later, when the call's use of it falls past the gate's
     * second (that answered "your access has expired" instead of a
     * refresh, found by a CI run on a loaded machine) */
    if (!rc && t.expires_at && now_s + 5 >= t.expires_at) rc = VAULT_EEXPIRED;
    if (!rc) {
      size_t n = strlen(t.access) + 8;
      out->value = malloc(n);
      out->name = strdup("Authorization");
      if (out->value) snprintf(out->value, n, "Bearer %s", t.access);
      if (!out->value || !out->name) rc = ST_ENOMEM;
    }
    vault_tokens_free(&t);
    if (rc) vault_cred_free(out);
  } else if (f->auth == VAULT_AUTH_HEADER) {
    rc = vault_connector_secret(txn, tenant, connector, &out->value);
    if (rc == 0 && name && !(out->name = strdup(name))) rc = ST_ENOMEM;
    if (rc) vault_cred_free(out);
  }
  return rc;
}

int vault_upstream_cred(st_txn *txn, const char *tenant, const char *connector, const char *user,
                        const json_t *known, int64_t now_s, vault_cred *out) {
  json_t *rec = NULL;
  out->name = out->value = NULL;
  int rc = known ? 0 : vault_connector_get(txn, tenant, connector, &rec);
  if (rc) return rc;
  vault_conn_facts f;
  vault_conn_facts_of(known ? known : rec, &f);
  rc = vault_upstream_cred_facts(txn, tenant, connector, user, &f, now_s, out);
  json_decref(rec);
  return rc;
}

void vault_rfc3339(int64_t t, char out[32]) {
  time_t tt = t ? (time_t)t : time(NULL);
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void vault_cred_free(vault_cred *c) {
  vault_secret_free(c->value);
  free(c->name);
  c->name = c->value = NULL;
}

int vault_connector_delete(st_txn *txn, const char *tenant, const char *name) {
  char k[128];
  if (!vault_connector_name_valid(name)) return ST_ENOTFOUND;
  json_t *rec = NULL;
  int rc = vault_connector_get(txn, tenant, name, &rec);
  if (rc) return rc;
  json_decref(rec);
  /* before anything goes: its upstream sessions are ended with the
   * credentials that opened them (gateway/mcp) */
  vault_ending_event ee = {tenant, name, NULL, false};
  if ((rc = st_emit(txn, ST_EVENT_CREDENTIAL_ENDING, &ee))) return rc;
  /* its grants first: their revocation jobs copy the record's URL and client */
  char now[32];
  vault_rfc3339(0, now);
  if ((rc = vault_grants_cut_connector(txn, tenant, name, "connector_deleted", now))) return rc;
  rc = st_del(txn, ST_DB_CONNECTORS, k, key_of(tenant, name, k));
  if (rc) return rc;
  st_aad aad = {tenant, VAULT_SECRET_KIND, name};
  rc = st_secret_del(txn, &aad);
  if (rc && rc != ST_ENOTFOUND) return rc;
  aad.kind = VAULT_CLIENT_KIND;
  rc = st_secret_del(txn, &aad);
  if (rc && rc != ST_ENOTFOUND) return rc;
  aad.kind = VAULT_URL_KIND;
  rc = st_secret_del(txn, &aad);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if ((rc = vault_rediscover_cancel(txn, tenant, name))) return rc;
  vault_connector_event ev = {.tenant = tenant, .name = name};
  return st_emit(txn, ST_EVENT_CONNECTOR_DELETE, &ev);
}

int vault_connector_list_max(st_txn *txn, const char *tenant, int64_t max, json_t **arr, bool *more) {
  char p[80];
  size_t pl = strlen(tenant) + 1;
  *arr = json_array();
  if (more) *more = false;
  if (pl > 64) return 0;
  memcpy(p, tenant, pl);
  if (max < 0 || max > VAULT_CONNECTORS_MAX) max = VAULT_CONNECTORS_MAX;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_CONNECTORS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  int64_t seen = 0;
  while (st_cursor_next(c, &k, &v) == 0) {
    /* at most max records parsed: the caller's loop or writer does bounded
     * work however many connectors a tenant kept from before a lower cap */
    if (seen++ == max) {
      if (more) *more = true;
      break;
    }
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (!r) continue;
    json_array_append_new(*arr, vault_connector_view(r));
    json_decref(r);
  }
  st_cursor_close(c);
  return 0;
}

int vault_connector_list(st_txn *txn, const char *tenant, json_t **arr) {
  return vault_connector_list_max(txn, tenant, VAULT_CONNECTORS_MAX, arr, NULL);
}

int vault_connector_count(st_txn *txn, const char *tenant, int64_t stop_at, int64_t *n) {
  char p[80];
  size_t pl = strlen(tenant) + 1;
  *n = 0;
  if (pl > 64) return 0;
  memcpy(p, tenant, pl);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_CONNECTORS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k;
  while (*n < stop_at && (rc = st_cursor_next(c, &k, NULL)) == 0) (*n)++;
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || *n >= stop_at ? 0 : rc;
}

int vault_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  return st_del_prefix(txn, ST_DB_CONNECTORS, tenant, strlen(tenant) + 1, limit);
}

int vault_register_purge(st_store *st) { return st_purge_add(st, "vault", vault_purge_tenant, NULL); }
