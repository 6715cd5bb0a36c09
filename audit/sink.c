/* audit/sink.c — the delivery cursors of SIEM sinks (AUDIT_DB_CURSORS):
 * keys, reads, the write the audit thread's commit makes, and their part
 * of st_check. The queue of pending updates lives with the audit thread
 * (log.c); what a sink sends and where is the gateway's business.
 *
 * Key: sink ‖ 0x00 ‖ uid (at most 80 + 1 + 64 bytes); value: the seq as
 * u64 big-endian. */
#include "audit/audit_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store/seal.h"
#include "store/tenant.h"
#include "store/url_query.h"

#define CURSOR_KEY_MAX (AUDIT_SINK_MAX + 1 + AUDIT_UID_MAX)

bool audit__sink_ok(const char *s) {
  size_t n = 0;
  if (!s) return false;
  for (; s[n]; n++) {
    char c = s[n];
    if (n >= AUDIT_SINK_MAX ||
        !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '_' || c == '-'))
      return false;
  }
  return n > 0;
}

static size_t cursor_key(const char *sink, const char *uid, char k[CURSOR_KEY_MAX]) {
  size_t sl = strlen(sink), ul = strlen(uid);
  memcpy(k, sink, sl);
  k[sl] = 0;
  memcpy(k + sl + 1, uid, ul);
  return sl + 1 + ul;
}

static uint64_t be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

int audit_cursor_get(st_txn *txn, const char *sink, const char *uid, uint64_t *seq) {
  if (!txn || !seq || !audit__sink_ok(sink) || !audit__uid_ok(uid)) return AUDIT_EINVAL;
  *seq = 0;
  char k[CURSOR_KEY_MAX];
  st_val v;
  int rc = st_get(txn, (st_db)AUDIT_DB_CURSORS, k, cursor_key(sink, uid, k), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc < 0) return rc;
  if (v.len != 8) return AUDIT_ECORRUPT;
  *seq = be64(v.data);
  return 0;
}

int audit__cursor_put(st_txn *txn, const char *sink, const char *uid, uint64_t seq) {
  uint64_t cur = 0;
  int rc = audit_cursor_get(txn, sink, uid, &cur);
  if (rc < 0 && rc != AUDIT_ECORRUPT) return rc; /* a corrupt value is overwritten */
  if (rc == 0 && cur >= seq) return 0;
  char k[CURSOR_KEY_MAX];
  unsigned char v[8];
  for (int i = 0; i < 8; i++) v[i] = (unsigned char)(seq >> (56 - 8 * i));
  return st_put(txn, (st_db)AUDIT_DB_CURSORS, k, cursor_key(sink, uid, k), v, sizeof v, 0);
}

int audit__cursor_drop(st_txn *txn, const char *sink) {
  if (!audit__sink_ok(sink)) return AUDIT_EINVAL;
  char k[AUDIT_SINK_MAX + 1];
  size_t sl = strlen(sink);
  memcpy(k, sink, sl);
  k[sl] = 0; /* the prefix sink ‖ 0x00: another sink's name that begins alike is not one of its keys */
  int rc = st_del_prefix(txn, (st_db)AUDIT_DB_CURSORS, k, sl + 1, 0);
  return rc < 0 ? rc : 0;
}

int audit__cursors_check(st_txn *txn, void (*report)(void *ctx, const char *area, const char *msg), void *ctx) {
  st_cursor *c;
  st_val k, v;
  int rc, problems = 0;
  char line[320];
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_CURSORS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    char sink[AUDIT_SINK_MAX + 1], uid[AUDIT_UID_MAX + 1];
    const char *p = k.data, *nul = k.len ? memchr(p, 0, k.len) : NULL;
    size_t sl = nul ? (size_t)(nul - p) : 0, ul = nul ? k.len - sl - 1 : 0;
    bool ok = nul && sl && sl <= AUDIT_SINK_MAX && ul && ul <= AUDIT_UID_MAX;
    if (ok) {
      memcpy(sink, p, sl);
      sink[sl] = 0;
      memcpy(uid, nul + 1, ul);
      uid[ul] = 0;
      ok = audit__sink_ok(sink) && audit__uid_ok(uid) && v.len == 8;
    }
    if (!ok) {
      problems++;
      if (report) report(ctx, "audit", "a SIEM delivery cursor with a malformed key or value");
      continue;
    }
    audit__head h;
    rc = audit__head_get(txn, uid, &h);
    if (rc == ST_ENOTFOUND || (rc == 0 && be64(v.data) > h.seq)) {
      problems++;
      snprintf(line, sizeof line, "the SIEM delivery cursor of sink %s on chain %s is %s", sink, uid,
               rc ? "of a chain that does not exist" : "past the chain's last record");
      if (report) report(ctx, "audit", line);
    } else if (rc < 0 && rc != AUDIT_ECORRUPT) {
      break; /* a corrupt head is verify's to report */
    }
    rc = 0;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || rc == 0 ? problems : rc;
}

/* ---- a tenant's own SIEM sink (main store, ST_DB_AUDIT) ------------------------------ */

static size_t tsink_key(const char *tenant, char k[AUDIT_TENANT_MAX + 2]) {
  size_t tl = strlen(tenant);
  k[0] = 's';
  memcpy(k + 1, tenant, tl);
  return tl + 1;
}

static bool printable(const char *s, bool spaces_ok) {
  for (; *s; s++)
    if ((unsigned char)*s < (spaces_ok ? 0x20 : 0x21) || (unsigned char)*s > 0x7e) return false;
  return true;
}

/* printable ASCII without spaces, and in the query also "…" (ST_URL_MASK):
 * a value sent back as GET shows it, which keeps the stored one */
static bool url_chars_ok(const char *u) {
  bool query = false;
  for (const char *p = u; *p;) {
    if (query && !strncmp(p, ST_URL_MASK, ST_URL_MASK_LEN)) {
      p += ST_URL_MASK_LEN;
      continue;
    }
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) return false;
    query = query || *p == '?';
    p++;
  }
  return true;
}

int audit_tenant_sink_parse(const json_t *doc, const char **url, const char **format, const char **token,
                            bool *drop_token, char *err, size_t errlen) {
  *url = *format = *token = NULL;
  *drop_token = false;
  if (!json_is_object(doc)) {
    snprintf(err, errlen, "the body must be a JSON object {\"url\",\"format\"?,\"token\"?}");
    return AUDIT_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)doc, k, v) {
    if (strcmp(k, "url") && strcmp(k, "format") && strcmp(k, "token")) {
      snprintf(err, errlen, "unknown member \"%.64s\": expected url, format and token", k);
      return AUDIT_EINVALID;
    }
  }
  v = json_object_get(doc, "url");
  const char *u = json_string_value(v);
  size_t ul = u ? strlen(u) : 0;
  const char *rest = u && !strncmp(u, "https://", 8) ? u + 8 : u && !strncmp(u, "http://", 7) ? u + 7 : NULL;
  size_t hostlen = rest ? strcspn(rest, "/?#") : 0;
  if (!rest || !hostlen || ul > AUDIT_SINK_URL_MAX || ul != json_string_length(v) || !url_chars_ok(u) ||
      strchr(u, '#') || st_url_authority_check(u, NULL, 0)) {
    snprintf(err, errlen,
             "\"url\" must be an absolute http:// or https:// URL of at most %d characters, without user info "
             "(no '@' before the first '/'), fragment or spaces, its port in digits (put the credential in "
             "\"token\")",
             AUDIT_SINK_URL_MAX);
    return AUDIT_EINVALID;
  }
  v = json_object_get(doc, "format");
  const char *f = v ? json_string_value(v) : "ndjson";
  if (!f || (strcmp(f, "ndjson") && strcmp(f, "splunk_hec"))) {
    snprintf(err, errlen, "\"format\" must be \"ndjson\" or \"splunk_hec\"");
    return AUDIT_EINVALID;
  }
  v = json_object_get(doc, "token");
  if (json_is_null(v)) {
    *drop_token = true;
  } else if (v) {
    const char *t = json_string_value(v);
    size_t tl = t ? strlen(t) : 0;
    if (!t || !tl || tl > AUDIT_SINK_TOKEN_MAX || tl != json_string_length(v) || !printable(t, false)) {
      snprintf(err, errlen, "\"token\" must be a string of 1 to %d printable characters without spaces, or null",
               AUDIT_SINK_TOKEN_MAX);
      return AUDIT_EINVALID;
    }
    *token = t;
  }
  *url = u;
  *format = f;
  return 0;
}

void audit_tenant_sink_cursor(const char *tenant, const json_t *rec, char out[AUDIT_SINK_MAX + 1]) {
  const char *c = json_string_value(json_object_get(rec, "cursor"));
  if (c && audit__sink_ok(c)) snprintf(out, AUDIT_SINK_MAX + 1, "%s", c);
  else snprintf(out, AUDIT_SINK_MAX + 1, "tenant:%.63s", tenant);
}

int audit_tenant_sink_get(st_txn *txn, const char *tenant, json_t **rec) {
  *rec = NULL;
  if (!audit__tenant_ok(tenant)) return ST_ENOTFOUND;
  char k[AUDIT_TENANT_MAX + 2];
  st_val v;
  int rc = st_get(txn, ST_DB_AUDIT, k, tsink_key(tenant, k), &v);
  if (rc) return rc;
  *rec = json_loadb(v.data, v.len, 0, NULL);
  return *rec ? 0 : ST_ECORRUPT;
}

/* The sink's real URL (rec read in txn): the record's own "url" when it is
 * not sealed (borrowed, *sealed NULL), else the unsealed one in *sealed. */
int audit_tenant_sink_url(st_txn *txn, const char *tenant, const json_t *rec, const char **url, char **sealed) {
  *url = NULL;
  *sealed = NULL;
  if (!json_is_true(json_object_get(rec, "url_sealed"))) {
    *url = json_string_value(json_object_get(rec, "url"));
    return *url ? 0 : ST_ECORRUPT;
  }
  if (!audit__tenant_ok(tenant)) return ST_ENOTFOUND;
  int rc = st_secret_get_str(txn, &(st_aad){tenant, AUDIT_SINK_URL_KIND, ""}, sealed);
  if (rc) *sealed = NULL;
  *url = *sealed;
  return rc;
}

void audit_tenant_sink_url_free(char *sealed) { st_secret_str_free(sealed); }

int audit_tenant_sink_put(st_txn *txn, const char *tenant, const char *url, const char *format, const char *token,
                          bool drop_token, const char *now, const char *inc, int *created) {
  if (!audit__tenant_ok(tenant) || !url || !format || !now || !inc) return ST_EINVAL;
  json_t *old = NULL;
  int rc = audit_tenant_sink_get(txn, tenant, &old);
  if (rc && rc != ST_ENOTFOUND) return rc;
  *created = old == NULL;
  /* the real URLs: the old one unsealed (one that cannot be read keeps
   * nothing), the new one with the values sent back masked ("…") kept from
   * it — only at the same scheme, host, port and path */
  const char *old_real = NULL;
  char *old_sealed = NULL, *real = NULL, *shown = NULL;
  if (old && (rc = audit_tenant_sink_url(txn, tenant, old, &old_real, &old_sealed)) != 0) {
    if (rc != ST_ENOTFOUND && rc != ST_ECRYPTO && rc != ST_ECORRUPT) goto out;
    old_real = NULL;
  }
  if ((rc = st_url_keep_masked(url, old_real, AUDIT_SINK_URL_MAX, &real)) != 0) goto out;
  if (!(shown = st_url_shown(real))) {
    rc = ST_ENOMEM;
    goto out;
  }
  bool url_sealed = strcmp(shown, real) != 0;
  st_aad aad = {tenant, AUDIT_SINK_SECRET_KIND, ""};
  bool had = old && json_is_true(json_object_get(old, "token_set"));
  bool has = token ? true : drop_token ? false : had;
  const char *was = old ? json_string_value(json_object_get(old, "created")) : NULL;
  /* rev: every write is a new revision (updated has whole seconds: two
   * writes in one second, a new token with it, must still look new) */
  json_int_t rev = old ? json_integer_value(json_object_get(old, "rev")) + 1 : 1;
  /* inc: this sink's, from the write that made it (or the first write
   * since inc exists), kept by updates: after a delete, rev starts at 1
   * again and only inc tells the new sink from the deleted one */
  const char *keep = old ? json_string_value(json_object_get(old, "inc")) : NULL;
  if (!keep) keep = inc;
  /* cursor: the delivery cursor's name, the making write's (kept by
   * updates; none on a record made before it existed): a sink made again
   * after a delete has its own, so it starts as a new sink does and not
   * where the deleted one stopped */
  char cursor[AUDIT_SINK_MAX + 1];
  const char *ocur = old ? json_string_value(json_object_get(old, "cursor")) : NULL;
  if (old) snprintf(cursor, sizeof cursor, "%s", ocur ? ocur : "");
  else snprintf(cursor, sizeof cursor, "tenant:%s:%s", tenant, inc);
  if (!old && !audit__sink_ok(cursor)) {
    rc = ST_EINVAL; /* an inc that is no id */
    goto out;
  }
  json_t *rec = json_pack("{s:s, s:s, s:b, s:s, s:s, s:I}", "url", shown, "format", format, "token_set", has,
                          "created", was ? was : now, "updated", now, "rev", rev);
  if (rec && url_sealed && json_object_set_new(rec, "url_sealed", json_true()) != 0) {
    json_decref(rec);
    rec = NULL;
  }
  if (rec && json_object_set_new(rec, "inc", json_string(keep)) != 0) {
    json_decref(rec);
    rec = NULL;
  }
  if (rec && cursor[0] && json_object_set_new(rec, "cursor", json_string(cursor)) != 0) {
    json_decref(rec);
    rec = NULL;
  }
  char *s = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(rec);
  if (!s) {
    rc = ST_ENOMEM;
    goto out;
  }
  char k[AUDIT_TENANT_MAX + 2];
  rc = st_put(txn, ST_DB_AUDIT, k, tsink_key(tenant, k), s, strlen(s), 0);
  free(s);
  /* the real URL sealed when it shows otherwise, else none kept */
  st_aad ua = {tenant, AUDIT_SINK_URL_KIND, ""};
  if (!rc && url_sealed) rc = st_secret_put(txn, &ua, real, strlen(real));
  else if (!rc && (rc = st_secret_del(txn, &ua)) == ST_ENOTFOUND) rc = 0;
  if (rc) goto out;
  if (token) rc = st_secret_put(txn, &aad, token, strlen(token));
  else if (drop_token && had && (rc = st_secret_del(txn, &aad)) == ST_ENOTFOUND) rc = 0;
out:
  json_decref(old);
  st_secret_str_free(old_sealed);
  st_secret_str_free(real);
  free(shown);
  return rc;
}

int audit_tenant_sink_token(st_txn *txn, const char *tenant, char **token) {
  *token = NULL;
  st_aad aad = {tenant, AUDIT_SINK_SECRET_KIND, ""};
  return st_secret_get_str(txn, &aad, token);
}

void audit_tenant_sink_token_free(char *token) { st_secret_str_free(token); }

int audit_tenant_sink_del(st_txn *txn, const char *tenant) {
  if (!audit__tenant_ok(tenant)) return ST_ENOTFOUND;
  char k[AUDIT_TENANT_MAX + 2];
  int rc = st_del(txn, ST_DB_AUDIT, k, tsink_key(tenant, k));
  if (rc) return rc;
  static const char *const kinds[] = {AUDIT_SINK_SECRET_KIND, AUDIT_SINK_URL_KIND};
  for (size_t i = 0; i < 2; i++)
    if ((rc = st_secret_del(txn, &(st_aad){tenant, kinds[i], ""})) != 0 && rc != ST_ENOTFOUND) return rc;
  return 0;
}

int audit_tenant_sinks_each(st_txn *txn, int (*cb)(void *ctx, const char *tenant, const json_t *rec), void *ctx) {
  st_cursor *c;
  st_val k, v;
  int rc = st_cursor_open(txn, ST_DB_AUDIT, &c);
  if (rc) return rc;
  st_cursor_seek(c, "s", 1, NULL, 0);
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *p = k.data;
    if (!k.len || p[0] != 's') break;
    char tenant[AUDIT_TENANT_MAX + 1];
    if (k.len < 2 || k.len - 1 > AUDIT_TENANT_MAX) continue;
    memcpy(tenant, p + 1, k.len - 1);
    tenant[k.len - 1] = 0;
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    if (!rec) continue;
    rc = cb(ctx, tenant, rec);
    json_decref(rec);
    if (rc) break;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static int purge_tenant(st_txn *txn, const char *tenant, int limit) {
  int n = 0;
  if (!audit__tenant_ok(tenant) || limit < 1) return 0;
  char k[AUDIT_TENANT_MAX + 2];
  int rc = st_del(txn, ST_DB_AUDIT, k, tsink_key(tenant, k));
  if (rc == 0) n++;
  else if (rc != ST_ENOTFOUND) return rc;
  static const char *const kinds[] = {AUDIT_SINK_SECRET_KIND, AUDIT_SINK_URL_KIND};
  for (size_t i = 0; i < 2 && n < limit; i++) {
    rc = st_secret_del(txn, &(st_aad){tenant, kinds[i], ""});
    if (rc == 0) n++;
    else if (rc != ST_ENOTFOUND) return rc;
  }
  return n;
}

static int check_sinks(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  st_val k, v;
  int problems = 0, rc = st_cursor_open(txn, ST_DB_AUDIT, &c);
  if (rc) return rc;
  char msg[300];
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *p = k.data;
    char tenant[AUDIT_TENANT_MAX + 1];
    bool ok = k.len >= 2 && p[0] == 's' && k.len - 1 <= AUDIT_TENANT_MAX;
    if (ok) {
      memcpy(tenant, p + 1, k.len - 1);
      tenant[k.len - 1] = 0;
      ok = audit__tenant_ok(tenant);
    }
    if (!ok) {
      problems++;
      if (report) report(rctx, "audit", "a malformed key in the audit database");
      continue;
    }
    json_t *rec = json_loadb(v.data, v.len, 0, NULL), *t = NULL;
    const char *why = NULL;
    json_t *cur = rec ? json_object_get(rec, "cursor") : NULL;
    if (!rec || !json_is_string(json_object_get(rec, "url")) || !json_is_string(json_object_get(rec, "format")) ||
        (cur && !audit__sink_ok(json_string_value(cur))))
      why = "is not a sink record";
    else if (st_tenant_get(txn, tenant, &t) == ST_ENOTFOUND)
      why = "belongs to no tenant";
    json_decref(t);
    if (!why) {
      char *tok = NULL;
      int trc = audit_tenant_sink_token(txn, tenant, &tok);
      audit_tenant_sink_token_free(tok);
      bool set = json_is_true(json_object_get(rec, "token_set"));
      if (set && trc) why = "says it has a token, and none unseals";
      else if (!set && trc != ST_ENOTFOUND) why = "says it has no token, and one is stored";
    }
    if (!why) {
      /* the URL's query values: sealed and readable, or none in clear */
      const char *real = NULL;
      char *sealed = NULL;
      if (json_is_true(json_object_get(rec, "url_sealed"))) {
        if (audit_tenant_sink_url(txn, tenant, rec, &real, &sealed) != 0) why = "has no readable sealed URL";
      } else if (st_url_has_secret(json_string_value(json_object_get(rec, "url")))) {
        why = "keeps its URL's query in clear (PUT it again)";
      }
      st_secret_str_free(sealed);
    }
    json_decref(rec);
    if (why) {
      problems++;
      snprintf(msg, sizeof msg, "the SIEM sink of tenant %s %s", tenant, why);
      if (report) report(rctx, "audit", msg);
    }
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? problems : rc;
}

/* One stored sink whose URL keeps a query value in clear: the real URL
 * sealed, the record rewritten to show it masked (as a PUT of today). */
static int upgrade_one(st_txn *txn, const char *tenant) {
  json_t *rec = NULL;
  int rc = audit_tenant_sink_get(txn, tenant, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  const char *url = json_string_value(json_object_get(rec, "url"));
  char *shown = url ? st_url_shown(url) : NULL;
  if (url && !shown) rc = ST_ENOMEM;
  if (!rc && shown && strcmp(shown, url)) {
    rc = st_secret_put(txn, &(st_aad){tenant, AUDIT_SINK_URL_KIND, ""}, url, strlen(url));
    if (!rc) {
      json_object_set_new(rec, "url", json_string(shown));
      json_object_set_new(rec, "url_sealed", json_true());
      char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
      char k[AUDIT_TENANT_MAX + 2];
      rc = s ? st_put(txn, ST_DB_AUDIT, k, tsink_key(tenant, k), s, strlen(s), 0) : ST_ENOMEM;
      free(s);
    }
  }
  free(shown);
  json_decref(rec);
  return rc;
}

int audit_upgrade_sink_urls(st_txn *txn) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUDIT, &c);
  if (rc) return rc;
  st_cursor_seek(c, "s", 1, NULL, 0);
  st_val k, v;
  /* a write under the open cursor is allowed (store.h): it goes on after
   * the key it is at */
  while (rc == 0 && st_cursor_next(c, &k, &v) == 0) {
    char tenant[AUDIT_TENANT_MAX + 1];
    if (k.len < 2 || k.len - 1 > AUDIT_TENANT_MAX) continue; /* st_check reports a malformed key */
    memcpy(tenant, (const char *)k.data + 1, k.len - 1);
    tenant[k.len - 1] = 0;
    rc = upgrade_one(txn, tenant);
  }
  st_cursor_close(c);
  return rc;
}

int audit_register_store(st_store *st) {
  int rc = st_purge_add(st, "audit.sink", purge_tenant, NULL);
  return rc ? rc : st_check_add(st, check_sinks, NULL);
}
