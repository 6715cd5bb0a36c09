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
 *    must be given again to move it).
 * The query's string work (the shown form, the values kept) is
 * store/url_query.c's, shared with audit/'s tenant SIEM sinks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/seal.h"
#include "store/token.h"
#include "store/url_query.h"
#include "vault/vault.h"

/* The string work is the store's (store/url_query.h: the tenants' SIEM
 * sink URLs are sealed the same way); vault's names keep its own cap and
 * error code. */
char *vault_url_shown(const char *url) { return st_url_shown(url); }

int vault_url_has_secret(const char *url) { return st_url_has_secret(url); }

int vault_url_keep_masked(const char *url, const char *stored, char **out) {
  int rc = st_url_keep_masked(url, stored, VAULT_URL_MAX, out);
  return rc == ST_EMASKED ? VAULT_EMASKED : rc;
}

/* scheme "://" authority: the bytes up to the first '/', '?' or '#' after "://" */
static size_t origin_len(const char *u) {
  const char *s = strstr(u, "://");
  if (!s) return 0;
  s += 3;
  return (size_t)(s - u) + strcspn(s, "/?#");
}

int vault_url_same_origin(const char *a, const char *b) {
  if (!a || !b) return 0;
  size_t n = origin_len(a);
  return n && n == origin_len(b) && !strncasecmp(a, b, n);
}

int vault_connector_url(st_txn *txn, const char *tenant, const char *name, const json_t *rec, const char **url,
                        char **sealed) {
  vault_conn_facts f;
  vault_conn_facts_of(rec, &f);
  return vault_connector_url_facts(txn, tenant, name, &f, url, sealed);
}

int vault_connector_url_facts(st_txn *txn, const char *tenant, const char *name, const vault_conn_facts *f,
                              const char **url, char **sealed) {
  *url = NULL;
  *sealed = NULL;
  /* the upcall's path: a plain URL is the record's own string, no copy */
  if (!f->url_sealed) {
    *url = f->url;
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
