/* vault/connector_url.c — a connector URL's query is secret material.
 *
 * Hosted MCP servers take their API key in the URL's query
 * (https://mcp.example.com/mcp?api_key=…), so every query value is treated
 * as a credential:
 *  - the record's "url" is the URL as shown: each query value replaced by
 *    "…", the names kept (?api_key=…&region=…; a component without '=' is
 *    all value: "…"). The record is what GET, the list, the audit log's
 *    before → after and log lines show, and it is stored in clear.
 *  - the real URL, when it differs from the shown one, is sealed
 *    (VAULT_URL_KIND, AES-256-GCM bound to tenant and connector) and the
 *    record says "url_sealed": true. Only the transfer to the upstream
 *    unseals it (vault_connector_url); a URL without query values is not
 *    sealed, and costs that transfer nothing more than a lookup.
 *  - a move is decided on the real URLs (vault_connector_put): two of them
 *    may show alike, and a new key must still end the upstream sessions
 *    opened with the old one. The move bumps the record's epoch, so the
 *    binding every such check compares (vault_connector_bind) changes
 *    though the url shown does not.
 *  - an admin PUT may send the shown URL back: a value "…" (or its
 *    percent-encoding) keeps the stored value of the same parameter — only
 *    at the same scheme, host and path, so a kept key is never sent to
 *    another server by someone who cannot read it (as a header credential
 *    must be given again to move it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/seal.h"
#include "store/token.h"
#include "vault/vault.h"

#define MASK "\xe2\x80\xa6" /* U+2026 "…" */
#define MASK_PCT "%E2%80%A6"

/* One '&'-separated query component [p, p + n): its name (up to '=', or
 * none for a bare value) and whether it carries a value to hide. */
typedef struct qpart {
  const char *p;
  size_t n;
  size_t name_len; /* bytes before '=' */
  bool has_eq;
} qpart;

static qpart part_at(const char *p) {
  qpart q = {p, strcspn(p, "&"), 0, false};
  const char *eq = memchr(p, '=', q.n);
  q.has_eq = eq != NULL;
  q.name_len = eq ? (size_t)(eq - p) : 0;
  return q;
}

/* the value of a component (after '='; the whole of a bare one) */
static const char *value_of(const qpart *q, size_t *vl) {
  size_t off = q->has_eq ? q->name_len + 1 : 0;
  *vl = q->n - off;
  return q->p + off;
}

static bool is_mask(const char *v, size_t vl) {
  return (vl == sizeof MASK - 1 && !memcmp(v, MASK, vl)) ||
         (vl == sizeof MASK_PCT - 1 && !strncasecmp(v, MASK_PCT, vl));
}

/* same name (or both bare) */
static bool same_key(const qpart *a, const qpart *b) {
  return a->has_eq == b->has_eq && a->name_len == b->name_len && !memcmp(a->p, b->p, a->name_len);
}

char *vault_url_shown(const char *url) {
  if (!url) return NULL;
  const char *q = strchr(url, '?');
  size_t n = strlen(url);
  /* at most 3 bytes ("…") per value byte, plus the separators */
  char *out = malloc(3 * n + 4);
  if (!out) return NULL;
  if (!q) {
    memcpy(out, url, n + 1);
    return out;
  }
  size_t o = (size_t)(q + 1 - url);
  memcpy(out, url, o);
  for (const char *p = q + 1;;) {
    qpart c = part_at(p);
    size_t vl;
    value_of(&c, &vl);
    size_t keep = c.has_eq ? c.name_len + 1 : 0;
    memcpy(out + o, c.p, keep);
    o += keep;
    if (vl) {
      memcpy(out + o, MASK, sizeof MASK - 1);
      o += sizeof MASK - 1;
    }
    p += c.n;
    if (!*p) break;
    out[o++] = *p++; /* '&' */
  }
  out[o] = 0;
  return out;
}

int vault_url_has_secret(const char *url) {
  char *s = vault_url_shown(url);
  int r = s ? strcmp(s, url) != 0 : 1; /* out of memory: fail closed */
  free(s);
  return r;
}

int vault_url_keep_masked(const char *url, const char *stored, char **out) {
  *out = NULL;
  const char *q = strchr(url, '?');
  bool masked = false;
  for (const char *p = q ? q + 1 : NULL; p;) {
    qpart c = part_at(p);
    size_t vl;
    const char *v = value_of(&c, &vl);
    if (is_mask(v, vl)) masked = true;
    p = p[c.n] ? p + c.n + 1 : NULL;
  }
  if (!masked) return (*out = strdup(url)) ? 0 : ST_ENOMEM;
  /* the stored values stay at the server they were given for */
  const char *sq = stored ? strchr(stored, '?') : NULL;
  if (!sq || (size_t)(sq - stored) != (size_t)(q - url) || memcmp(stored, url, (size_t)(q - url)))
    return VAULT_EMASKED;
  size_t cap = strlen(url) + strlen(stored) + 1;
  char *r = malloc(cap);
  if (!r) return ST_ENOMEM;
  size_t o = (size_t)(q + 1 - url);
  memcpy(r, url, o);
  for (const char *p = q + 1;;) {
    qpart c = part_at(p);
    size_t vl;
    const char *v = value_of(&c, &vl);
    if (!is_mask(v, vl)) {
      memcpy(r + o, c.p, c.n);
      o += c.n;
    } else {
      /* the stored component of the same name, by its rank among them */
      size_t rank = 0;
      for (const char *b = q + 1; b < c.p; b += part_at(b).n + 1) {
        qpart e = part_at(b);
        if (same_key(&e, &c)) rank++;
      }
      const qpart *hit = NULL;
      qpart s;
      for (const char *b = sq + 1;; b += s.n + 1) {
        s = part_at(b);
        if (same_key(&s, &c) && rank-- == 0) {
          hit = &s;
          break;
        }
        if (!b[s.n]) break;
      }
      size_t svl = 0;
      const char *sv = hit ? value_of(hit, &svl) : NULL;
      if (!hit || !svl || is_mask(sv, svl)) {
        r[o] = 0;
        vault_secret_free(r); /* it may hold kept values: wiped */
        return VAULT_EMASKED;
      }
      memcpy(r + o, hit->p, hit->n);
      o += hit->n;
    }
    p += c.n;
    if (!*p) break;
    r[o++] = *p++;
  }
  r[o] = 0;
  if (o > VAULT_URL_MAX) { /* kept values may make it longer than any URL given */
    vault_secret_free(r);
    return VAULT_EMASKED;
  }
  *out = r;
  return 0;
}

int vault_connector_url(st_txn *txn, const char *tenant, const char *name, const json_t *rec, const char **url,
                        char **sealed) {
  *url = NULL;
  *sealed = NULL;
  /* the upcall's path: a plain URL is the record's own string, no copy */
  if (!json_is_true(json_object_get(rec, "url_sealed"))) {
    *url = json_string_value(json_object_get(rec, "url"));
    return *url ? 0 : ST_ECORRUPT;
  }
  int rc = st_secret_get_str(txn, &(st_aad){tenant, VAULT_URL_KIND, name}, sealed);
  if (rc) *sealed = NULL;
  *url = *sealed;
  return rc;
}

/* a URL member of a discovered connector's auth, masked in place */
static int mask_member(json_t *o, const char *k) {
  const char *u = json_string_value(json_object_get(o, k));
  if (!u || !vault_url_has_secret(u)) return 0;
  char *s = vault_url_shown(u);
  if (!s) return ST_ENOMEM;
  json_object_set_new(o, k, json_string(s));
  free(s);
  return 0;
}

/* One stored connector (key tenant \0 name, its record rec): sealed and
 * rewritten when its URL has query values. */
static int upgrade_one(st_txn *txn, const char *key, size_t klen, json_t *rec) {
  const char *url = json_string_value(json_object_get(rec, "url"));
  if (!url || json_is_true(json_object_get(rec, "url_sealed")) || !vault_url_has_secret(url)) return 0;
  size_t tl = strnlen(key, klen);
  if (tl + 1 >= klen || tl > 63 || klen - tl - 1 > VAULT_NAME_MAX) return 0; /* not a connector key: left alone */
  char tenant[64], name[VAULT_NAME_MAX + 1];
  memcpy(tenant, key, tl + 1);
  memcpy(name, key + tl + 1, klen - tl - 1);
  name[klen - tl - 1] = 0;
  char *shown = vault_url_shown(url);
  if (!shown) return ST_ENOMEM;
  int rc = st_secret_put(txn, &(st_aad){tenant, VAULT_URL_KIND, name}, url, strlen(url));
  if (!rc) {
    json_object_set_new(rec, "url", json_string(shown));
    json_object_set_new(rec, "url_sealed", json_true());
    /* a discovered connector (discovery refuses such URLs now): the
     * resource and metadata URLs were made from it */
    json_t *auth = json_object_get(rec, "auth");
    rc = mask_member(auth, "resource");
    if (!rc) rc = mask_member(json_object_get(auth, "discovered"), "resource_metadata_url");
  }
  free(shown);
  char *s = rc ? NULL : json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!rc && !s) rc = ST_ENOMEM;
  if (!rc) rc = st_put(txn, ST_DB_CONNECTORS, key, klen, s, strlen(s), 0);
  free(s);
  return rc;
}

int vault_upgrade_url_queries(st_txn *txn) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_CONNECTORS, &c);
  if (rc) return rc;
  st_val k, v;
  while (rc == 0 && st_cursor_next(c, &k, &v) == 0) {
    /* copied: a write ends the life of what the cursor lent */
    char key[128];
    if (k.len > sizeof key) continue;
    memcpy(key, k.data, k.len);
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    if (!rec) continue; /* st_check reports a record that does not parse */
    rc = upgrade_one(txn, key, k.len, rec);
    json_decref(rec);
  }
  st_cursor_close(c);
  return rc;
}

/* st_check: a record that says its URL is sealed has a sealed URL that
 * unseals; a record that does not shows no query value in clear. */
static int check_urls(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_CONNECTORS, &c);
  if (rc) return rc;
  int problems = 0;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    char key[128], msg[300];
    size_t tl = strnlen(k.data, k.len);
    if (k.len >= sizeof key || tl + 1 >= k.len) continue;
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    const char *tenant = key, *name = key + tl + 1;
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    const char *url = json_string_value(json_object_get(rec, "url"));
    msg[0] = 0;
    if (json_is_true(json_object_get(rec, "url_sealed"))) {
      const char *real = NULL;
      char *sealed = NULL;
      if (vault_connector_url(txn, tenant, name, rec, &real, &sealed) != 0)
        snprintf(msg, sizeof msg, "connector %s of tenant %s has no readable sealed URL", name, tenant);
      vault_secret_free(sealed);
    } else if (url && vault_url_has_secret(url)) {
      snprintf(msg, sizeof msg, "connector %s of tenant %s keeps its URL's query in clear (PUT it again)", name, tenant);
    }
    json_decref(rec);
    if (msg[0]) {
      if (report) report(rctx, "vault", msg);
      problems++;
    }
  }
  st_cursor_close(c);
  return problems;
}

int vault_register_url_check(st_store *st) { return st_check_add(st, check_urls, NULL); }
