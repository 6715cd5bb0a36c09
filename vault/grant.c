/* vault/grant.c — per-user upstream grants and the revocation queue (see
 * grant.h for the layout and the rules). */
#include "vault/grant.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/dir.h"
#include "store/seal.h"
#include "store/tenant.h"
#include "store/token.h"
#include "vault/discover.h"
#include "vault/vault.h"

#define KEY_MAX 300

static void wipe_free(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

void vault_tokens_free(vault_tokens *t) {
  wipe_free(t->access);
  wipe_free(t->refresh);
  free(t->scope);
  memset(t, 0, sizeof *t);
}

void vault_revoke_job_free(vault_revoke_job *j) {
  free(j->url);
  free(j->client_id);
  wipe_free(j->client_secret);
  wipe_free(j->refresh);
  wipe_free(j->access);
  free(j->ca_file);
  memset(j, 0, sizeof *j);
}

/* printable ASCII without space: what RFC 6749's token syntax allows */
static bool token_ok(const char *s) {
  size_t n = strlen(s);
  if (!n || n > VAULT_TOKEN_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return false;
  return true;
}

int vault_tokens_from_reply(const char *body, size_t len, int64_t now_s, vault_tokens *out, char *err,
                            size_t errlen) {
  memset(out, 0, sizeof *out);
  err[0] = 0;
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(j)) {
    snprintf(err, errlen, "the token endpoint's reply is not a JSON object");
    json_decref(j);
    return VAULT_EINVALID;
  }
  const char *at = json_string_value(json_object_get(j, "access_token"));
  const char *tt = json_string_value(json_object_get(j, "token_type"));
  json_t *ei = json_object_get(j, "expires_in");
  const char *rt = json_string_value(json_object_get(j, "refresh_token"));
  json_t *sc = json_object_get(j, "scope");
  if (ei && json_is_string(ei) && json_string_length(ei) >= 1 && json_string_length(ei) <= 9 &&
      strspn(json_string_value(ei), "0123456789") == json_string_length(ei)) {
    /* Azure AD v1 sends the seconds as a string */
    json_object_set_new(j, "expires_in", json_integer(strtoll(json_string_value(ei), NULL, 10)));
    ei = json_object_get(j, "expires_in");
  }
  if (!at || !token_ok(at)) snprintf(err, errlen, "the token endpoint's reply has no usable access_token");
  else if (!tt || strcasecmp(tt, "bearer"))
    snprintf(err, errlen, "the token endpoint issued a token_type other than Bearer");
  else if (ei && !(json_is_integer(ei) && json_integer_value(ei) >= 0 && json_integer_value(ei) <= 10 * 365 * 86400) &&
           !(json_is_real(ei) && json_real_value(ei) >= 0 && json_real_value(ei) <= 10.0 * 365 * 86400))
    snprintf(err, errlen, "the token endpoint's expires_in is not a number of seconds");
  else if (json_object_get(j, "refresh_token") && (!rt || !token_ok(rt)))
    snprintf(err, errlen, "the token endpoint's refresh_token is not a usable token");
  else if (sc && (!json_is_string(sc) || json_string_length(sc) > 2000))
    snprintf(err, errlen, "the token endpoint's scope is not a string");
  if (err[0]) {
    json_decref(j);
    return VAULT_EINVALID;
  }
  out->access = strdup(at);
  out->refresh = rt ? strdup(rt) : NULL;
  out->scope = sc ? strdup(json_string_value(sc)) : NULL;
  if (ei) out->expires_at = now_s + (json_is_integer(ei) ? (int64_t)json_integer_value(ei) : (int64_t)json_real_value(ei));
  json_decref(j);
  if (!out->access || (rt && !out->refresh) || (sc && !out->scope)) {
    vault_tokens_free(out);
    snprintf(err, errlen, "out of memory");
    return ST_ENOMEM;
  }
  return 0;
}

/* ---- keys ------------------------------------------------------------------ */

static bool ids_ok(const char *tenant, const char *user, const char *connector) {
  return tenant && user && connector && strlen(tenant) <= 63 && *user && strlen(user) <= 64 &&
         vault_connector_name_valid(connector);
}

/* tag a \0 b \0 c */
static size_t key3(char *k, char tag, const char *a, const char *b, const char *c) {
  size_t n = 0;
  k[n++] = tag;
  size_t l = strlen(a) + 1;
  memcpy(k + n, a, l);
  n += l;
  l = strlen(b);
  memcpy(k + n, b, l);
  n += l;
  if (c) {
    k[n++] = 0;
    l = strlen(c);
    memcpy(k + n, c, l);
    n += l;
  }
  return n;
}

static void owner_of(char *o, size_t cap, const char *user, const char *connector) {
  snprintf(o, cap, "%s/%s", user, connector);
}

static int put_json(st_txn *txn, const void *k, size_t kl, json_t *v) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_VAULT, k, kl, s, strlen(s), 0);
  free(s);
  return rc;
}

static json_t *get_json(st_txn *txn, const void *k, size_t kl, int *rc) {
  st_val v;
  *rc = st_get(txn, ST_DB_VAULT, k, kl, &v);
  if (*rc) return NULL;
  json_t *j = json_loadb(v.data, v.len, 0, NULL);
  if (!j) *rc = ST_ECORRUPT;
  return j;
}

static int seal_json(st_txn *txn, const st_aad *aad, json_t *v) {
  char *s = json_dumps(v, JSON_COMPACT);
  if (!s) return ST_ENOMEM;
  int rc = st_secret_put(txn, aad, s, strlen(s));
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  return rc;
}

static json_t *unseal_json(st_txn *txn, const st_aad *aad, int *rc) {
  char *s = NULL;
  *rc = st_secret_get_str(txn, aad, &s);
  if (*rc) return NULL;
  json_t *j = json_loads(s, 0, NULL);
  st_secret_str_free(s);
  if (!j) *rc = ST_ECORRUPT;
  return j;
}

/* ---- grants ------------------------------------------------------------------ */

static int grant_sealed(st_txn *txn, const char *tenant, const char *user, const char *connector, json_t **out) {
  char owner[128];
  owner_of(owner, sizeof owner, user, connector);
  st_aad aad = {tenant, VAULT_GRANT_KIND, owner};
  int rc;
  *out = unseal_json(txn, &aad, &rc);
  return rc;
}

int vault_grant_get(st_txn *txn, const char *tenant, const char *user, const char *connector, vault_tokens *out) {
  memset(out, 0, sizeof *out);
  if (!ids_ok(tenant, user, connector)) return ST_ENOTFOUND;
  json_t *g;
  int rc = grant_sealed(txn, tenant, user, connector, &g);
  if (rc) return rc;
  const char *at = json_string_value(json_object_get(g, "access_token"));
  const char *rt = json_string_value(json_object_get(g, "refresh_token"));
  if (!at) {
    json_decref(g);
    return ST_ECORRUPT;
  }
  out->access = strdup(at);
  out->refresh = rt ? strdup(rt) : NULL;
  out->expires_at = json_integer_value(json_object_get(g, "expires_at"));
  /* wipe the JSON's copies before freeing it */
  json_object_set_new(g, "access_token", json_string(""));
  if (rt) json_object_set_new(g, "refresh_token", json_string(""));
  json_decref(g);
  if (!out->access || (rt && !out->refresh)) {
    vault_tokens_free(out);
    return ST_ENOMEM;
  }
  return 0;
}

int vault_grant_info(st_txn *txn, const char *tenant, const char *user, const char *connector, json_t **rec) {
  *rec = NULL;
  if (!ids_ok(tenant, user, connector)) return ST_ENOTFOUND;
  char k[KEY_MAX];
  int rc;
  *rec = get_json(txn, k, key3(k, 'g', tenant, user, connector), &rc);
  return rc;
}

/* queues a revocation of `tokens` (a sealed grant's JSON) for the connector
 * (its record read here; gone → only the report, "manual") */
static int queue_revocation(st_txn *txn, const char *tenant, const char *user, const char *connector,
                            json_t *tokens, const char *reason, const char *now);
/* the same toward the connector as rec and client_secret say (rec NULL:
 * gone); without report, only the job (nothing under the tenant's id), its
 * id into id_out (when not NULL; "" when none was queued) */
static int queue_revocation_to(st_txn *txn, const char *tenant, const char *user, const char *connector,
                               const json_t *rec, const char *client_secret, json_t *tokens, const char *reason,
                               const char *now, bool report, char *id_out);

int vault_grant_put(st_txn *txn, const char *tenant, const char *user, const char *connector,
                    const vault_tokens *t, const char *now, int flags) {
  bool revoke_old = flags & VAULT_PUT_REVOKE_OLD, connect = flags & VAULT_PUT_CONNECT;
  if (!ids_ok(tenant, user, connector) || !t->access) return ST_EINVAL;
  char k[KEY_MAX];
  size_t kl = key3(k, 'g', tenant, user, connector);
  int rc;
  json_t *old = get_json(txn, k, kl, &rc);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (connect) {
    /* before the old credential goes: what it opened upstream is ended
     * with it (gateway/mcp) */
    vault_ending_event ee = {tenant, connector, user, false};
    if ((rc = st_emit(txn, ST_EVENT_CREDENTIAL_ENDING, &ee))) {
      json_decref(old);
      return rc;
    }
  }
  if (old && revoke_old) {
    json_t *ot = NULL;
    if (grant_sealed(txn, tenant, user, connector, &ot) == 0) {
      rc = queue_revocation(txn, tenant, user, connector, ot, "reconnect", now);
      json_decref(ot);
      if (rc) {
        json_decref(old);
        return rc;
      }
    }
  }
  json_t *rec = json_object();
  json_object_set_new(rec, "connector", json_string(connector));
  const char *created = old ? json_string_value(json_object_get(old, "created")) : NULL;
  json_object_set_new(rec, "created", json_string(created && !connect ? created : now));
  json_object_set_new(rec, "updated", json_string(now));
  if (t->expires_at) json_object_set_new(rec, "expires_at", json_integer(t->expires_at));
  if (t->scope) json_object_set_new(rec, "scope", json_string(t->scope));
  json_int_t refreshes = old && !connect ? json_integer_value(json_object_get(old, "refreshes")) + 1 : 0;
  json_object_set_new(rec, "refreshes", json_integer(refreshes));
  /* a connect is another credential: upstream sessions opened with the
   * old one are no longer the user's (vault_upstream_bind); a refresh
   * keeps the binding (the same grant, the same account) */
  json_t *ob = old ? json_object_get(old, "bind") : NULL;
  if (connect) {
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)st_txn_snapshot(txn));
    json_object_set_new(rec, "bind", json_string(b));
  } else if (json_is_string(ob)) {
    json_object_set(rec, "bind", ob);
  }
  json_decref(old);
  rc = put_json(txn, k, kl, rec);
  json_decref(rec);
  if (rc) return rc;
  kl = key3(k, 'c', tenant, connector, user);
  if ((rc = st_put(txn, ST_DB_VAULT, k, kl, "", 0, 0))) return rc;
  json_t *sealed = json_object();
  json_object_set_new(sealed, "access_token", json_string(t->access));
  if (t->refresh) json_object_set_new(sealed, "refresh_token", json_string(t->refresh));
  json_object_set_new(sealed, "expires_at", json_integer(t->expires_at));
  char owner[128];
  owner_of(owner, sizeof owner, user, connector);
  st_aad aad = {tenant, VAULT_GRANT_KIND, owner};
  rc = seal_json(txn, &aad, sealed);
  json_object_set_new(sealed, "access_token", json_string(""));
  if (t->refresh) json_object_set_new(sealed, "refresh_token", json_string(""));
  json_decref(sealed);
  if (rc || !connect) return rc; /* a refresh changes no tool list */
  vault_grant_event ev = {tenant, user, connector, true, true};
  return st_emit(txn, ST_EVENT_GRANT_CHANGED, &ev);
}

int vault_grants_of_user(st_txn *txn, const char *tenant, const char *user, json_t **arr) {
  *arr = json_array();
  if (strlen(tenant) > 63 || !*user || strlen(user) > 64) return 0;
  char p[KEY_MAX];
  size_t pl = key3(p, 'g', tenant, user, NULL);
  p[pl++] = 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (!r) continue;
    json_object_del(r, "bind"); /* the gateway's own bookkeeping */
    json_array_append_new(*arr, r);
  }
  st_cursor_close(c);
  return 0;
}

/* bulk: one of the grants of a user, a connector or a tenant, all cut
 * (vault_grant_event.superseded) */
static int drop_grant(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *reason,
                      const char *now, bool bulk) {
  if (!ids_ok(tenant, user, connector)) return ST_ENOTFOUND;
  char k[KEY_MAX];
  size_t kl = key3(k, 'g', tenant, user, connector);
  /* invalid_grant: the authorization server ended the grant, the person
   * changed nothing — the call that found out answers "connect again"
   * (and their next connect ends what the grant opened) */
  bool superseded = !bulk && strcmp(reason, "invalid_grant");
  if (superseded) {
    /* before the grant goes: what it opened upstream is ended with it
     * (gateway/mcp), if it is there to go */
    st_val v;
    int g = st_get(txn, ST_DB_VAULT, k, kl, &v);
    vault_ending_event ee = {tenant, connector, user, false};
    if (g && g != ST_ENOTFOUND) return g;
    if (!g && (g = st_emit(txn, ST_EVENT_CREDENTIAL_ENDING, &ee))) return g;
  }
  int rc = st_del(txn, ST_DB_VAULT, k, kl);
  if (rc) return rc;
  kl = key3(k, 'c', tenant, connector, user);
  rc = st_del(txn, ST_DB_VAULT, k, kl);
  if (rc && rc != ST_ENOTFOUND) return rc;
  json_t *tokens = NULL;
  rc = grant_sealed(txn, tenant, user, connector, &tokens);
  if (rc == 0) {
    rc = queue_revocation(txn, tenant, user, connector, tokens, reason, now);
    json_object_set_new(tokens, "access_token", json_string(""));
    json_object_set_new(tokens, "refresh_token", json_string(""));
    json_decref(tokens);
  } else if (rc == ST_ENOTFOUND || rc == ST_ECRYPTO || rc == ST_ECORRUPT) {
    rc = 0; /* nothing to revoke with: the record goes anyway */
  }
  if (rc) return rc;
  char owner[128];
  owner_of(owner, sizeof owner, user, connector);
  st_aad aad = {tenant, VAULT_GRANT_KIND, owner};
  rc = st_secret_del(txn, &aad);
  if (rc && rc != ST_ENOTFOUND) return rc;
  vault_grant_event ev = {tenant, user, connector, false, superseded};
  return st_emit(txn, ST_EVENT_GRANT_CHANGED, &ev);
}

int vault_grant_drop(st_txn *txn, const char *tenant, const char *user, const char *connector,
                     const char *reason, const char *now) {
  return drop_grant(txn, tenant, user, connector, reason, now, false);
}

/* Drops every grant under prefix p (a 'g' or 'c' range), at most limit (0:
 * all); `user_first` says the key's last two parts are user, connector. */
static int cut_range(st_txn *txn, const char *tenant, const char *p, size_t pl, bool user_first, const char *reason,
                     const char *now, int limit) {
  int n = 0;
  for (;;) {
    char a[80] = "", b[80] = "";
    st_cursor *c;
    int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
    if (rc) return rc;
    st_cursor_seek(c, p, pl, NULL, 0);
    st_val k;
    bool found = st_cursor_next(c, &k, NULL) == 0;
    if (found) {
      /* tag tenant \0 a \0 b */
      const char *s = (const char *)k.data + 1 + strlen(tenant) + 1;
      size_t rest = k.len - (size_t)(s - (const char *)k.data);
      const char *z = memchr(s, 0, rest);
      if (z && (size_t)(z - s) < sizeof a && rest - (size_t)(z - s) - 1 < sizeof b) {
        memcpy(a, s, (size_t)(z - s));
        memcpy(b, z + 1, rest - (size_t)(z - s) - 1);
      } else {
        found = false; /* malformed: st_check reports it */
      }
    }
    st_cursor_close(c);
    if (!found) return n;
    rc = drop_grant(txn, tenant, user_first ? a : b, user_first ? b : a, reason, now, true);
    if (rc == ST_ENOTFOUND && !user_first) {
      /* an index entry without its grant: drop the entry */
      char k2[KEY_MAX];
      rc = st_del(txn, ST_DB_VAULT, k2, key3(k2, 'c', tenant, a, b));
    }
    if (rc) return rc;
    if (++n == limit) return n;
  }
}

int vault_grants_cut_user(st_txn *txn, const char *tenant, const char *user, const char *reason, const char *now) {
  if (strlen(tenant) > 63 || !*user || strlen(user) > 64) return 0;
  char p[KEY_MAX];
  size_t pl = key3(p, 'g', tenant, user, NULL);
  p[pl++] = 0;
  int n = cut_range(txn, tenant, p, pl, true, reason, now, 0);
  return n < 0 ? n : 0;
}

int vault_grants_cut_connector(st_txn *txn, const char *tenant, const char *connector, const char *reason,
                               const char *now) {
  if (strlen(tenant) > 63 || !vault_connector_name_valid(connector)) return 0;
  char p[KEY_MAX];
  size_t pl = key3(p, 'c', tenant, connector, NULL);
  p[pl++] = 0;
  int n = cut_range(txn, tenant, p, pl, false, reason, now, 0);
  return n < 0 ? n : 0;
}

/* ---- refresh ------------------------------------------------------------------ */

int vault_grant_claim(st_txn *txn, const char *tenant, const char *user, const char *connector, int64_t now_s,
                      uint64_t now_ms) {
  if (!ids_ok(tenant, user, connector)) return ST_ENOTFOUND;
  char k[KEY_MAX];
  size_t kl = key3(k, 'g', tenant, user, connector);
  int rc;
  json_t *rec = get_json(txn, k, kl, &rc);
  if (rc) return rc;
  int64_t exp = json_integer_value(json_object_get(rec, "expires_at"));
  uint64_t until = (uint64_t)json_integer_value(json_object_get(rec, "refreshing_until"));
  if (!exp || now_s + 10 < exp) rc = VAULT_CLAIM_FRESH;
  else if (until > now_ms) rc = VAULT_CLAIM_BUSY;
  else {
    json_object_set_new(rec, "refreshing_until", json_integer((json_int_t)(now_ms + VAULT_REFRESH_CLAIM_MS)));
    rc = put_json(txn, k, kl, rec);
  }
  json_decref(rec);
  return rc;
}

/* 1 when the sealed grant's refresh token is `used` (constant time) */
static int same_refresh(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *used) {
  json_t *g = NULL;
  if (grant_sealed(txn, tenant, user, connector, &g) != 0) return 0;
  const char *rt = json_string_value(json_object_get(g, "refresh_token"));
  int same = rt && used ? strlen(rt) == strlen(used) && CRYPTO_memcmp(rt, used, strlen(rt)) == 0
                        : !rt && !used; /* a grant without refresh token */
  json_object_clear(g);
  json_decref(g);
  return same;
}

/* A refresh answered after its grant left the live tables (the user was
 * cut, the grant disconnected or dropped): the fresh tokens are live at the
 * AS and nobody holds them — queued for revocation like the grant's own.
 * Not when a grant is there again (a reconnect: revoking tokens of the old
 * authorization might end the new one at an AS that ends a grant's every
 * token together). */
static int revoke_late_refresh(st_txn *txn, const char *tenant, const char *user, const char *connector,
                               const vault_tokens *fresh, const vault_token_origin *origin, const char *now,
                               vault_late *late) {
  json_t *info = NULL;
  int rc = vault_grant_info(txn, tenant, user, connector, &info);
  json_decref(info);
  if (rc != ST_ENOTFOUND) return rc; /* 0: replaced, left alone */
  return vault_tokens_revoke(txn, tenant, user, connector, fresh, origin, "late_refresh", now, late);
}

/* 1 when the tenant is the active incarnation origin names, 0 when not, or
 * a store error */
static int same_incarnation(st_txn *txn, const char *tenant, const vault_token_origin *origin) {
  char uid[ST_TENANT_UID_LEN + 1];
  int rc = st_tenant_active(txn, tenant);
  if (!rc) rc = st_tenant_uid_get(txn, tenant, uid);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  return origin && origin->tenant_uid && !strcmp(uid, origin->tenant_uid);
}

int vault_tokens_revoke(st_txn *txn, const char *tenant, const char *user, const char *connector,
                        const vault_tokens *t, const vault_token_origin *origin, const char *reason,
                        const char *now, vault_late *late) {
  if (late) memset(late, 0, sizeof *late);
  if (!ids_ok(tenant, user, connector) || !t->access) return ST_EINVAL;
  int same = same_incarnation(txn, tenant, origin);
  if (same < 0) return same;
  if (!same && late) late->elsewhere = true;
  if (!same && !(origin && origin->rec)) return 0; /* where to send them is not known */
  json_t *tokens = json_object();
  if (!tokens) return ST_ENOMEM;
  json_object_set_new(tokens, "access_token", json_string(t->access));
  if (t->refresh) json_object_set_new(tokens, "refresh_token", json_string(t->refresh));
  /* where they came from: the connector as the request that got them was
   * sent (a move or a deletion meanwhile cut the grant or refused it; the
   * connector now names another authorization server, or none); for
   * another incarnation, the job alone (grant.h) */
  int rc = origin && origin->rec
               ? queue_revocation_to(txn, tenant, user, connector, origin->rec, origin->client_secret, tokens, reason,
                                     now, same, same || !late ? NULL : late->id)
               : queue_revocation(txn, tenant, user, connector, tokens, reason, now);
  json_object_set_new(tokens, "access_token", json_string(""));
  if (t->refresh) json_object_set_new(tokens, "refresh_token", json_string(""));
  json_decref(tokens);
  return rc;
}

int vault_grant_refreshed(st_txn *txn, const char *tenant, const char *user, const char *connector,
                          const char *used_refresh, const vault_tokens *fresh, const vault_token_origin *origin,
                          const char *now, vault_late *late) {
  if (late) memset(late, 0, sizeof *late);
  /* another incarnation's grants are not this refresh's, even under the
   * same user id: nothing of it is read or written */
  int same = same_incarnation(txn, tenant, origin);
  if (same < 0) return same;
  if (!same) return vault_tokens_revoke(txn, tenant, user, connector, fresh, origin, "late_refresh", now, late);
  if (!same_refresh(txn, tenant, user, connector, used_refresh))
    return revoke_late_refresh(txn, tenant, user, connector, fresh, origin, now, late);
  vault_tokens t = *fresh;
  if (!t.refresh) t.refresh = (char *)used_refresh;
  /* RFC 6749 §5.1: an omitted scope is the one granted before */
  json_t *info = NULL;
  char *old_scope = NULL;
  if (!t.scope && vault_grant_info(txn, tenant, user, connector, &info) == 0 &&
      json_string_value(json_object_get(info, "scope")))
    t.scope = old_scope = strdup(json_string_value(json_object_get(info, "scope")));
  json_decref(info);
  int rc = vault_grant_put(txn, tenant, user, connector, &t, now, 0);
  free(old_scope);
  return rc;
}

int vault_grant_refresh_failed(st_txn *txn, const char *tenant, const char *user, const char *connector,
                               const char *used_refresh, bool invalid, const char *now) {
  if (!same_refresh(txn, tenant, user, connector, used_refresh)) return 0;
  if (invalid) return vault_grant_drop(txn, tenant, user, connector, "invalid_grant", now);
  char k[KEY_MAX];
  size_t kl = key3(k, 'g', tenant, user, connector);
  int rc;
  json_t *rec = get_json(txn, k, kl, &rc);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_object_del(rec, "refreshing_until");
  rc = put_json(txn, k, kl, rec);
  json_decref(rec);
  return rc;
}

/* ---- loss of access ------------------------------------------------------------ */

int vault_grants_sweep(st_txn *txn, uint64_t now_ms, uint64_t grace_ms, vault_visible_fn visible, void *ctx,
                       char *cursor, int limit) {
  char from[VAULT_SWEEP_CURSOR];
  size_t fl = strlen(cursor);
  memcpy(from, cursor, fl + 1);
  cursor[0] = 0;
  int dropped = 0, seen = 0;
  for (;;) {
    st_cursor *c;
    int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
    if (rc) return rc;
    st_cursor_seek(c, "g", 1, fl ? from : NULL, fl);
    st_val k, v;
    char key[VAULT_SWEEP_CURSOR];
    size_t kl = 0;
    json_t *rec = NULL;
    while (st_cursor_next(c, &k, &v) == 0) {
      if (fl && k.len == fl && !memcmp(k.data, from, fl)) continue; /* resume after it */
      if (k.len >= sizeof key) continue;
      kl = k.len;
      memcpy(key, k.data, kl);
      key[kl] = 0;
      rec = json_loadb(v.data, v.len, 0, NULL);
      break;
    }
    st_cursor_close(c);
    if (!kl) return dropped; /* went round: cursor stays "" */
    memcpy(from, key, kl + 1);
    fl = kl;
    memcpy(cursor, key, kl + 1);
    /* g tenant \0 user \0 connector */
    const char *tenant = key + 1, *user = tenant + strlen(tenant) + 1;
    const char *conn = user < key + kl ? user + strlen(user) + 1 : NULL;
    if (rec && conn && conn <= key + kl) {
      bool vis = visible(ctx, txn, tenant, user, conn);
      json_t *hs = json_object_get(rec, "hidden_since");
      if (vis && hs) {
        json_object_del(rec, "hidden_since");
        rc = put_json(txn, key, kl, rec);
      } else if (!vis && !hs) {
        json_object_set_new(rec, "hidden_since", json_integer((json_int_t)now_ms));
        rc = put_json(txn, key, kl, rec);
      } else if (!vis && now_ms >= (uint64_t)json_integer_value(hs) + grace_ms) {
        char now[32];
        vault_rfc3339((int64_t)(now_ms / 1000), now);
        /* copies: the drop writes, and key (their home) is ours anyway */
        char tn[VAULT_SWEEP_CURSOR], us[VAULT_SWEEP_CURSOR], cn[VAULT_SWEEP_CURSOR];
        memcpy(tn, tenant, strlen(tenant) + 1);
        memcpy(us, user, strlen(user) + 1);
        memcpy(cn, conn, strlen(conn) + 1);
        rc = vault_grant_drop(txn, tn, us, cn, "lost_access", now);
        if (!rc) dropped++;
      }
      json_decref(rec);
      if (rc) return rc;
    } else {
      json_decref(rec);
    }
    if (++seen >= limit) return dropped;
  }
}

/* ---- the revocation queue ---------------------------------------------------- */

static uint64_t now_ms_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t qkey(char *k, uint64_t due, const char *id) {
  k[0] = 'q';
  for (int i = 0; i < 8; i++) k[1 + i] = (char)(due >> (56 - 8 * i));
  memcpy(k + 9, id, VAULT_REVOKE_ID_LEN);
  return 9 + VAULT_REVOKE_ID_LEN;
}

/* 'r' tenant \0 (UINT64_MAX - created ms, BE) id: a tenant's reports in
 * newest-first order, so a listing reads only what it returns */
static size_t rkey(char *k, const char *tenant, uint64_t created_ms, const char *id) {
  size_t n = key3(k, 'r', tenant, "", NULL);
  uint64_t inv = UINT64_MAX - created_ms;
  for (int i = 0; i < 8; i++) k[n + (size_t)i] = (char)(inv >> (56 - 8 * i));
  n += 8;
  memcpy(k + n, id, VAULT_REVOKE_ID_LEN);
  return n + VAULT_REVOKE_ID_LEN;
}

/* ---- the bound on a tenant's reports (grant.h, VAULT_REPORTS_MAX) ---- */

static size_t countkey(char *k, const char *tenant) {
  size_t l = strlen(tenant);
  k[0] = 'R';
  memcpy(k + 1, tenant, l);
  return 1 + l;
}

/* the tenant's report count into *n: the 'R' key, or (a store written
 * before it) the reports counted once, at most 4 * VAULT_REPORTS_MAX of
 * them (more only trim slower: each trimmed one still counts down) */
static int reports_count(st_txn *txn, const char *tenant, uint64_t *n) {
  char k[KEY_MAX];
  size_t kl = countkey(k, tenant);
  st_val v;
  int rc = st_get(txn, ST_DB_VAULT, k, kl, &v);
  *n = 0;
  if (!rc && v.len == 8) {
    for (int i = 0; i < 8; i++) *n = *n << 8 | ((const uint8_t *)v.data)[i];
    return 0;
  }
  if (rc && rc != ST_ENOTFOUND) return rc;
  char p[KEY_MAX];
  size_t pl = key3(p, 'r', tenant, "", NULL);
  st_cursor *c;
  if ((rc = st_cursor_open(txn, ST_DB_VAULT, &c))) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  while (*n < 4 * (uint64_t)VAULT_REPORTS_MAX && st_cursor_next(c, NULL, NULL) == 0) ++*n;
  st_cursor_close(c);
  return 0;
}

static int reports_count_put(st_txn *txn, const char *tenant, uint64_t n) {
  char k[KEY_MAX], v[8];
  for (int i = 0; i < 8; i++) v[i] = (char)(n >> (56 - 8 * i));
  return st_put(txn, ST_DB_VAULT, k, countkey(k, tenant), v, 8, 0);
}

/* deletes up to VAULT_REPORTS_TRIM of the tenant's oldest finished
 * reports while it holds more than VAULT_REPORTS_MAX (never `keep`, the
 * one just added); *n counts down */
static int reports_trim(st_txn *txn, const char *tenant, const char *keep, uint64_t *n) {
  char del[VAULT_REPORTS_TRIM][KEY_MAX];
  size_t dl[VAULT_REPORTS_TRIM];
  int nd = 0;
  uint64_t over = *n - VAULT_REPORTS_MAX;
  char p[KEY_MAX];
  size_t pl = key3(p, 'r', tenant, "", NULL);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  for (int seen = 0; nd < VAULT_REPORTS_TRIM && (uint64_t)nd < over && seen < VAULT_REPORTS_TRIM_LOOK &&
                     (rc = st_cursor_prev(c, &k, &v)) == 0;
       seen++) {
    if (k.len != pl + 8 + VAULT_REVOKE_ID_LEN || k.len > KEY_MAX ||
        !memcmp((const char *)k.data + pl + 8, keep, VAULT_REVOKE_ID_LEN))
      continue;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    const char *st = json_string_value(json_object_get(r, "state")) ?: "";
    /* pending, or anything unreadable: kept (its revocation may still be
     * owed; the bound is for what is over) */
    bool done = !strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "manual");
    json_decref(r);
    if (!done) continue;
    memcpy(del[nd], k.data, k.len);
    dl[nd++] = k.len;
  }
  st_cursor_close(c);
  if (rc && rc != ST_ENOTFOUND) return rc;
  for (int i = 0; i < nd; i++) {
    if ((rc = st_del(txn, ST_DB_VAULT, del[i], dl[i])) && rc != ST_ENOTFOUND) return rc;
    if (!rc) --*n;
  }
  return 0;
}

/* a NEW report: written, counted, and the tenant's oldest finished ones
 * trimmed past the bound, all in the caller's transaction */
static int report_put(st_txn *txn, const char *tenant, uint64_t created_ms, const char *id, json_t *r) {
  char k[KEY_MAX];
  uint64_t n;
  int rc = reports_count(txn, tenant, &n);
  if (!rc) rc = put_json(txn, k, rkey(k, tenant, created_ms, id), r);
  if (rc) return rc;
  n++;
  if (n > VAULT_REPORTS_MAX && (rc = reports_trim(txn, tenant, id, &n))) return rc;
  return reports_count_put(txn, tenant, n);
}

static int queue_revocation(st_txn *txn, const char *tenant, const char *user, const char *connector,
                            json_t *tokens, const char *reason, const char *now) {
  json_t *conn = NULL;
  int rc = vault_connector_get(txn, tenant, connector, &conn);
  if (rc && rc != ST_ENOTFOUND) return rc;
  char *cs = NULL;
  if (conn && st_secret_get_str(txn, &(st_aad){tenant, VAULT_CLIENT_KIND, connector}, &cs) != 0) cs = NULL;
  rc = queue_revocation_to(txn, tenant, user, connector, conn, cs, tokens, reason, now, true, NULL);
  st_secret_str_free(cs);
  json_decref(conn);
  return rc;
}

static int queue_revocation_to(st_txn *txn, const char *tenant, const char *user, const char *connector,
                               const json_t *conn, const char *client_secret, json_t *tokens, const char *reason,
                               const char *now, bool report, char *id_out) {
  if (id_out) id_out[0] = 0;
  char id[ST_TOKEN_ID_BUFSZ];
  int rc = st_token_id_new(id);
  if (rc) return rc;
  json_t *auth = json_object_get(conn, "auth");
  const char *url = json_string_value(json_object_get(auth, "revocation_url"));
  if (!report && !url) return 0; /* nowhere to send them, nobody to tell but the caller's log */
  json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "id", id, "connector", connector, "user", user,
                        "reason", reason, "state", url ? "pending" : "manual", "created", now, "updated", now,
                        "attempts", 0);
  if (!url)
    json_object_set_new(r, "note",
                        json_string(!conn ? "the connector is gone: revoke the grant at the upstream by hand"
                                    : !strcmp(json_string_value(json_object_get(auth, "type")) ?: "", "user_header")
                                        ? "the person's own API key: revoke or rotate it at the upstream by hand"
                                        : "the upstream has no revocation endpoint: revoke the grant there by hand"));
  /* the report's order is its "created" (the transaction's time, to the
   * second; the same second in id order) */
  uint64_t created_ms = now_ms_wall();
  struct tm tm = {0};
  const char *end = strptime(now, "%Y-%m-%dT%H:%M:%S", &tm);
  if (end && (*end == 'Z' || *end == '.' || !*end)) created_ms = (uint64_t)timegm(&tm) * 1000;
  rc = report ? report_put(txn, tenant, created_ms, id, r) : 0;
  json_decref(r);
  if (rc || !url) return rc;
  /* the job: what the worker needs even after the connector is deleted */
  json_t *job = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:i, s:I}", "id", id, "tenant", tenant, "url", url,
                          "client_id", json_string_value(json_object_get(auth, "client_id")) ?: "", "connector",
                          connector, "auth_post",
                          !strcmp(json_string_value(json_object_get(auth, "token_auth")) ?: "", "client_secret_post"),
                          "attempts", 0, "created_ms", (json_int_t)now_ms_wall());
  if (report) json_object_set_new(job, "report_ms", json_integer((json_int_t)created_ms));
  const char *ca = json_string_value(json_object_get(conn, "ca_file"));
  if (ca) json_object_set_new(job, "ca_file", json_string(ca));
  /* whose word the URL is, decided now: the connector may be gone by then */
  if (!vault_connector_url_admin_set(conn, url)) json_object_set_new(job, "untrusted", json_true());
  json_t *to = json_object_get(conn, "timeouts");
  if (to) json_object_set(job, "timeouts", to);
  char k[KEY_MAX];
  rc = put_json(txn, k, qkey(k, now_ms_wall(), id), job);
  json_decref(job);
  if (rc) return rc;
  json_t *sealed = json_object();
  const char *at = json_string_value(json_object_get(tokens, "access_token"));
  const char *rt = json_string_value(json_object_get(tokens, "refresh_token"));
  if (at && *at) json_object_set_new(sealed, "access_token", json_string(at));
  if (rt && *rt) json_object_set_new(sealed, "refresh_token", json_string(rt));
  if (client_secret) json_object_set_new(sealed, "client_secret", json_string(client_secret));
  rc = seal_json(txn, &(st_aad){"", VAULT_REVOKE_KIND, id}, sealed);
  json_object_clear(sealed);
  json_decref(sealed);
  if (!rc && id_out) memcpy(id_out, id, VAULT_REVOKE_ID_LEN + 1);
  return rc;
}

/* the job of queue entry j (due at due) into *job; ST_ECORRUPT, ST_ENOMEM */
static int job_load(st_txn *txn, json_t *j, uint64_t due, vault_revoke_job *job) {
  int rc;
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *tenant = json_string_value(json_object_get(j, "tenant"));
  const char *url = json_string_value(json_object_get(j, "url"));
  if (!id || strlen(id) != VAULT_REVOKE_ID_LEN || !tenant || strlen(tenant) > 63 || !url) return ST_ECORRUPT;
  memcpy(job->id, id, VAULT_REVOKE_ID_LEN + 1);
  snprintf(job->tenant, sizeof job->tenant, "%s", tenant);
  job->due_ms = due;
  job->attempts = (int)json_integer_value(json_object_get(j, "attempts"));
  job->created_ms = (int64_t)json_integer_value(json_object_get(j, "created_ms"));
  job->url = strdup(url);
  job->client_id = strdup(json_string_value(json_object_get(j, "client_id")) ?: "");
  job->auth_post = json_is_true(json_object_get(j, "auth_post"));
  job->untrusted = json_is_true(json_object_get(j, "untrusted"));
  const char *ca = json_string_value(json_object_get(j, "ca_file"));
  job->ca_file = ca ? strdup(ca) : NULL;
  json_t *to = json_object_get(j, "timeouts");
  job->connect_ms = (long)json_integer_value(json_object_get(to, "connect_ms"));
  job->first_byte_ms = (long)json_integer_value(json_object_get(to, "first_byte_ms"));
  json_t *s = unseal_json(txn, &(st_aad){"", VAULT_REVOKE_KIND, job->id}, &rc);
  if (s) {
    const char *at = json_string_value(json_object_get(s, "access_token"));
    const char *rt = json_string_value(json_object_get(s, "refresh_token"));
    const char *cs = json_string_value(json_object_get(s, "client_secret"));
    job->access = at ? strdup(at) : NULL;
    job->refresh = rt ? strdup(rt) : NULL;
    job->client_secret = cs ? strdup(cs) : NULL;
    json_object_clear(s);
    json_decref(s);
  } else if (rc != ST_ENOTFOUND) {
    vault_revoke_job_free(job);
    return rc;
  }
  if (!job->url || !job->client_id) {
    vault_revoke_job_free(job);
    return ST_ENOMEM;
  }
  return 0;
}

int vault_revoke_next(st_txn *txn, uint64_t now_ms, vault_revoke_job *job, uint64_t *next_due_ms) {
  return vault_revoke_next_pick(txn, now_ms, NULL, NULL, job, next_due_ms, NULL);
}

/* A queue entry's record, checked (grant.h: what makes it corrupt): 0 with
 * *j (caller json_decref), or ST_ECORRUPT with why; *due from the key (0
 * for a key of another shape: due at once, to be set aside). */
static int entry_read(const st_val *k, const st_val *v, uint64_t *due, json_t **j, char *why, size_t whylen) {
  *j = NULL;
  *due = 0;
  if (k->len != 9 + VAULT_REVOKE_ID_LEN) {
    snprintf(why, whylen, "its key is not a queue key");
    return ST_ECORRUPT;
  }
  for (int i = 0; i < 8; i++) *due = *due << 8 | ((const uint8_t *)k->data)[1 + i];
  json_t *e = json_loadb(v->data, v->len, JSON_REJECT_DUPLICATES, NULL);
  const char *id = json_string_value(json_object_get(e, "id"));
  const char *tenant = json_string_value(json_object_get(e, "tenant"));
  const char *url = json_string_value(json_object_get(e, "url"));
  json_t *cid = json_object_get(e, "client_id");
  if (!json_is_object(e)) snprintf(why, whylen, "its value is not a JSON object");
  else if (!id || strlen(id) != VAULT_REVOKE_ID_LEN || memcmp(id, (const char *)k->data + 9, VAULT_REVOKE_ID_LEN))
    snprintf(why, whylen, "its id is missing or not its key's");
  else if (!tenant || !st_tenant_id_valid(tenant)) snprintf(why, whylen, "its tenant is missing or malformed");
  else if (!url || !*url) snprintf(why, whylen, "its revocation URL is missing");
  else if (cid && !json_is_string(cid)) snprintf(why, whylen, "its client_id is not a string");
  else {
    *j = e;
    return 0;
  }
  json_decref(e);
  return ST_ECORRUPT;
}

int vault_revoke_next_pick(st_txn *txn, uint64_t now_ms, vault_revoke_pick_fn pick, void *ctx, vault_revoke_job *job,
                           uint64_t *next_due_ms, int *corrupt) {
  memset(job, 0, sizeof *job);
  if (next_due_ms) *next_due_ms = 0;
  if (corrupt) *corrupt = 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, "q", 1, NULL, 0);
  st_val k, v;
  rc = ST_ENOTFOUND;
  for (int seen = 0; seen < VAULT_REVOKE_SCAN && st_cursor_next(c, &k, &v) == 0; seen++) {
    uint64_t due;
    json_t *j;
    char why[120];
    int bad = entry_read(&k, &v, &due, &j, why, sizeof why);
    if (!seen && next_due_ms) *next_due_ms = due ? due : 1;
    if (due > now_ms) {
      json_decref(j);
      break;
    }
    if (bad) {
      /* passed over: the caller sets it aside */
      if (corrupt) ++*corrupt;
      continue;
    }
    const char *t = json_string_value(json_object_get(j, "tenant")), *id = json_string_value(json_object_get(j, "id"));
    if (pick && !pick(ctx, t, id)) {
      json_decref(j);
      continue;
    }
    rc = job_load(txn, j, due, job);
    json_decref(j);
    if (rc != ST_ECRYPTO && rc != ST_ECORRUPT) break; /* taken, or out of memory */
    /* its sealed tokens do not unseal: it stays queued (grant.h), the
     * next one goes */
    rc = ST_ENOTFOUND;
  }
  st_cursor_close(c);
  return rc;
}

/* The report of revocation id: its key into rk (KEY_MAX), found where the
 * entry says (tenant, report_ms) or else among the tenant's reports (any
 * tenant's when tenant is NULL), at most REPORT_SEARCH_MAX keys looked at.
 * Its length, or 0 when not found. */
#define REPORT_SEARCH_MAX 100000
static size_t report_find(st_txn *txn, const char *tenant, const json_t *report_ms, const char *id, char *rk) {
  st_val v;
  if (tenant && json_is_integer(report_ms)) {
    size_t n = rkey(rk, tenant, (uint64_t)json_integer_value(report_ms), id);
    if (st_get(txn, ST_DB_VAULT, rk, n, &v) == 0) return n;
  }
  char p[KEY_MAX] = "r";
  size_t pl = tenant ? key3(p, 'r', tenant, "", NULL) : 1;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_VAULT, &c)) return 0;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k;
  size_t found = 0;
  for (int n = 0; !found && n < REPORT_SEARCH_MAX && st_cursor_next(c, &k, NULL) == 0; n++) {
    /* 'r' tenant \0 inv(8) id(16) */
    if (k.len < 1 + 1 + 1 + 8 + VAULT_REVOKE_ID_LEN || k.len > KEY_MAX ||
        memcmp((const char *)k.data + k.len - VAULT_REVOKE_ID_LEN, id, VAULT_REVOKE_ID_LEN) ||
        ((const char *)k.data)[k.len - VAULT_REVOKE_ID_LEN - 8 - 1] != 0)
      continue;
    memcpy(rk, k.data, k.len);
    found = k.len;
  }
  st_cursor_close(c);
  return found;
}

static void hex_of(char *out, const void *p, size_t n) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hx[((const uint8_t *)p)[i] >> 4];
    out[2 * i + 1] = hx[((const uint8_t *)p)[i] & 15];
  }
  out[2 * n] = 0;
}

#define SET_ASIDE_KEEP 4096 /* bytes of a set-aside value kept */

int vault_revoke_set_aside(st_txn *txn, uint64_t now_ms, const char *now, vault_set_aside *out) {
  /* the corrupt due entries, collected first: then moved */
  struct {
    char key[KEY_MAX];
    size_t kl;
    char why[120];
  } bad[VAULT_SET_ASIDE_MAX];
  int nb = 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, "q", 1, NULL, 0);
  st_val k, v;
  for (int seen = 0; nb < VAULT_SET_ASIDE_MAX && seen < VAULT_REVOKE_SCAN && st_cursor_next(c, &k, &v) == 0; seen++) {
    uint64_t due;
    json_t *j;
    int corrupt = entry_read(&k, &v, &due, &j, bad[nb].why, sizeof bad[nb].why);
    json_decref(j);
    if (due > now_ms) break;
    if (!corrupt || k.len > 400) continue; /* (a key that long cannot be: LMDB's cap is 511) */
    memcpy(bad[nb].key, k.data, k.len);
    bad[nb].kl = k.len;
    nb++;
  }
  st_cursor_close(c);
  for (int i = 0; i < nb; i++) {
    const char *key = bad[i].key;
    size_t kl = bad[i].kl;
    if ((rc = st_get(txn, ST_DB_VAULT, key, kl, &v))) return rc;
    size_t keep = v.len < SET_ASIDE_KEEP ? v.len : SET_ASIDE_KEEP;
    char *hex = malloc(2 * keep + 1);
    if (!hex) return ST_ENOMEM;
    hex_of(hex, v.data, keep);
    /* what can still be read of it: the id from its key, the tenant and
     * report time from its value */
    json_t *e = json_loadb(v.data, v.len, 0, NULL);
    char id[VAULT_REVOKE_ID_LEN + 1] = "", tenant[64] = "";
    if (kl == 9 + VAULT_REVOKE_ID_LEN && strspn(key + 9, "0123456789abcdef") >= VAULT_REVOKE_ID_LEN) {
      memcpy(id, key + 9, VAULT_REVOKE_ID_LEN);
      id[VAULT_REVOKE_ID_LEN] = 0;
    }
    const char *t = json_string_value(json_object_get(e, "tenant"));
    if (t && st_tenant_id_valid(t)) snprintf(tenant, sizeof tenant, "%s", t);
    /* its report (and through it, its tenant) */
    char rk[KEY_MAX];
    size_t rkl = id[0] ? report_find(txn, tenant[0] ? tenant : NULL, json_object_get(e, "report_ms"), id, rk) : 0;
    json_decref(e);
    if (rkl && !tenant[0]) snprintf(tenant, sizeof tenant, "%.63s", rk + 1); /* 'r' tenant \0 … */
    json_t *x = json_pack("{s:I, s:s, s:s}", "at", (json_int_t)now_ms, "why", bad[i].why, "entry", hex);
    free(hex);
    if (x && id[0]) json_object_set_new(x, "id", json_string(id));
    if (x && tenant[0]) json_object_set_new(x, "tenant", json_string(tenant));
    char xk[KEY_MAX];
    xk[0] = 'x';
    memcpy(xk + 1, key, kl);
    rc = x ? put_json(txn, xk, kl + 1, x) : ST_ENOMEM;
    json_decref(x);
    if (!rc) rc = st_del(txn, ST_DB_VAULT, key, kl);
    if (rc) return rc;
    /* the tenant's report: failed, and why */
    if (rkl) {
      json_t *rep = get_json(txn, rk, rkl, &rc);
      if (rep) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "the gateway's queue entry for this revocation is corrupt (%s): it was set aside and nothing was "
                 "sent; the grant's tokens may still be live at the upstream — revoke them there by hand",
                 bad[i].why);
        json_object_set_new(rep, "state", json_string("failed"));
        json_object_set_new(rep, "updated", json_string(now));
        json_object_set_new(rep, "last_error", json_string(msg));
        rc = put_json(txn, rk, rkl, rep);
        json_decref(rep);
        if (rc) return rc;
      } else if (rc != ST_ECORRUPT) {
        return rc;
      }
    }
    if (out) {
      memcpy(out[i].id, id, sizeof out[i].id);
      memcpy(out[i].tenant, tenant, sizeof out[i].tenant);
      memcpy(out[i].why, bad[i].why, sizeof out[i].why);
    }
  }
  return nb;
}

int vault_revoke_set_aside_drop(st_txn *txn, uint64_t before_ms, int limit) {
  int n = 0;
  while (n < limit) {
    st_cursor *c;
    int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
    if (rc) return rc;
    st_cursor_seek(c, "x", 1, NULL, 0);
    st_val k, v;
    char key[KEY_MAX], id[VAULT_REVOKE_ID_LEN + 1] = "";
    size_t kl = 0;
    while (st_cursor_next(c, &k, &v) == 0) {
      json_t *x = json_loadb(v.data, v.len, 0, NULL);
      json_t *at = json_object_get(x, "at");
      const char *xid = json_string_value(json_object_get(x, "id"));
      bool old = !json_is_integer(at) || (uint64_t)json_integer_value(at) < before_ms;
      if (old && k.len <= sizeof key) {
        kl = k.len;
        memcpy(key, k.data, kl);
        if (xid && strlen(xid) == VAULT_REVOKE_ID_LEN) memcpy(id, xid, sizeof id);
      }
      json_decref(x);
      if (kl) break;
    }
    st_cursor_close(c);
    if (!kl) return n;
    if ((rc = st_del(txn, ST_DB_VAULT, key, kl))) return rc;
    if (id[0] && (rc = st_secret_del(txn, &(st_aad){"", VAULT_REVOKE_KIND, id})) && rc != ST_ENOTFOUND) return rc;
    n++;
  }
  return n;
}

int vault_revoke_result(st_txn *txn, const char *id, uint64_t due_ms, bool done, bool final, uint64_t retry_ms,
                        const char *err, const char *now) {
  if (strlen(id) != VAULT_REVOKE_ID_LEN) return 0;
  char k[KEY_MAX];
  size_t kl = qkey(k, due_ms, id);
  int rc;
  json_t *job = get_json(txn, k, kl, &rc);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  if ((rc = st_del(txn, ST_DB_VAULT, k, kl))) {
    json_decref(job);
    return rc;
  }
  const char *tenant = json_string_value(json_object_get(job, "tenant")) ?: "";
  int attempts = (int)json_integer_value(json_object_get(job, "attempts")) + 1;
  char rk[KEY_MAX];
  size_t rkl = rkey(rk, tenant, (uint64_t)json_integer_value(json_object_get(job, "report_ms")), id);
  json_t *rep = get_json(txn, rk, rkl, &rc); /* gone with a deleted tenant's purge: fine */
  if (rep) {
    json_object_set_new(rep, "state", json_string(done ? "done" : final ? "failed" : "pending"));
    json_object_set_new(rep, "attempts", json_integer(attempts));
    json_object_set_new(rep, "updated", json_string(now));
    if (err && *err) json_object_set_new(rep, "last_error", json_string(err));
    else json_object_del(rep, "last_error");
    rc = put_json(txn, rk, rkl, rep);
    json_decref(rep);
    if (rc) {
      json_decref(job);
      return rc;
    }
  }
  if (done || final) {
    json_decref(job);
    rc = st_secret_del(txn, &(st_aad){"", VAULT_REVOKE_KIND, id});
    return rc == ST_ENOTFOUND ? 0 : rc;
  }
  json_object_set_new(job, "attempts", json_integer(attempts));
  rc = put_json(txn, k, qkey(k, retry_ms, id), job);
  json_decref(job);
  return rc;
}

int vault_revocations_list(st_txn *txn, const char *tenant, int limit, json_t **arr) {
  *arr = json_array();
  if (strlen(tenant) > 63) return 0;
  char p[KEY_MAX];
  size_t pl = key3(p, 'r', tenant, "", NULL);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  st_val k, v;
  /* newest first by key: only what is returned is read */
  while ((limit <= 0 || json_array_size(*arr) < (size_t)limit) && st_cursor_next(c, &k, &v) == 0) {
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (r) json_array_append_new(*arr, r);
  }
  st_cursor_close(c);
  return 0;
}

int vault_counts_get(st_txn *txn, vault_counts *out) {
  memset(out, 0, sizeof *out);
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    char tag = k.len ? ((const char *)k.data)[0] : 0;
    if (tag == 'g') out->grants++;
    else if (tag == 'q') out->pending++;
    else if (tag == 'x') out->corrupt++;
    else if (tag == 'r') {
      if (memmem(v.data, v.len, "\"state\":\"done\"", 14)) out->done++;
      else if (memmem(v.data, v.len, "\"state\":\"failed\"", 16)) out->failed++;
      else if (memmem(v.data, v.len, "\"state\":\"manual\"", 16)) out->manual++;
    }
  }
  st_cursor_close(c);
  return 0;
}

/* ---- hooks and purge --------------------------------------------------------- */

int vault_grant_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char now[32];
  vault_rfc3339(0, now);
  char p[KEY_MAX];
  size_t pl = key3(p, 'g', tenant, "", NULL);
  int n = cut_range(txn, tenant, p, pl, true, "tenant_deleted", now, limit);
  if (n < 0 || n >= limit) return n;
  pl = key3(p, 'c', tenant, "", NULL);
  int m = st_del_prefix(txn, ST_DB_VAULT, p, pl, limit - n);
  if (m < 0) return m;
  n += m;
  if (n >= limit) return n;
  pl = key3(p, 'r', tenant, "", NULL);
  m = st_del_prefix(txn, ST_DB_VAULT, p, pl, limit - n);
  if (m < 0) return m;
  n += m;
  if (n >= limit) return n;
  /* the reports' count, once they are all gone */
  pl = countkey(p, tenant);
  m = st_del(txn, ST_DB_VAULT, p, pl);
  if (m && m != ST_ENOTFOUND) return m;
  return n + !m;
}

static int on_user_cut(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)ctx;
  char now[32];
  vault_rfc3339(0, now);
  const char *reason = kind == ST_DIR_EV_USER_DELETED ? "deleted"
                       : kind == ST_DIR_EV_USER_SIGNED_OUT ? "signed_out"
                                                           : "deactivated";
  return vault_grants_cut_user(txn, ev->tenant, ev->id, reason, now);
}

/* st_check: every grant belongs to an existing user of a live tenant, has
 * its sealed tokens and its connector index entry (and every index entry
 * its grant); every queued revocation has its sealed tokens. */
static int check_vault(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_VAULT, &c);
  if (rc) return rc;
  int problems = 0;
  st_val k;
  char msg[400];
#define PROBLEM(...)                                  \
  do {                                                \
    snprintf(msg, sizeof msg, __VA_ARGS__);           \
    if (report) report(rctx, "vault", msg);           \
    problems++;                                       \
  } while (0)
  while (st_cursor_next(c, &k, NULL) == 0) {
    char key[KEY_MAX];
    if (!k.len || k.len >= sizeof key) continue;
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    const char *end = key + k.len;
    if (key[0] == 'g' || key[0] == 'c') {
      const char *tenant = key + 1, *a = tenant + strlen(tenant) + 1;
      const char *b = a < end ? a + strlen(a) + 1 : NULL;
      if (!b || b > end) {
        PROBLEM("malformed %s key", key[0] == 'g' ? "grant" : "grant index");
        continue;
      }
      const char *user = key[0] == 'g' ? a : b, *conn = key[0] == 'g' ? b : a;
      char uid[ST_TENANT_UID_LEN + 1], other[KEY_MAX];
      st_val v;
      if (key[0] == 'c') {
        if (st_get(txn, ST_DB_VAULT, other, key3(other, 'g', tenant, user, conn), &v) != 0)
          PROBLEM("grant index of tenant %s names user %s / connector %s without a grant", tenant, user, conn);
        continue;
      }
      json_t *u = NULL;
      if (st_tenant_uid_get(txn, tenant, uid) != 0) PROBLEM("grant of unknown tenant %s (user %s, connector %s)", tenant, user, conn);
      else if (st_dir_user_get(txn, tenant, user, &u) == ST_ENOTFOUND)
        PROBLEM("grant of tenant %s belongs to unknown user %s (connector %s)", tenant, user, conn);
      json_decref(u);
      if (st_get(txn, ST_DB_VAULT, other, key3(other, 'c', tenant, conn, user), &v) != 0)
        PROBLEM("grant of tenant %s, user %s, connector %s has no connector index entry", tenant, user, conn);
      json_t *g = NULL;
      if (grant_sealed(txn, tenant, user, conn, &g) != 0)
        PROBLEM("grant of tenant %s, user %s, connector %s has no readable sealed tokens", tenant, user, conn);
      if (g) json_object_clear(g);
      json_decref(g);
    } else if (key[0] == 'q') {
      st_val v;
      uint64_t due;
      json_t *e = NULL;
      char why[120];
      st_val kc = {key, k.len};
      snprintf(why, sizeof why, "its value cannot be read");
      if (st_get(txn, ST_DB_VAULT, key, k.len, &v) != 0 || entry_read(&kc, &v, &due, &e, why, sizeof why) != 0) {
        /* the worker sets it aside once due (vault_revoke_set_aside) */
        bool named = k.len == 9 + VAULT_REVOKE_ID_LEN && strspn(key + 9, "0123456789abcdef") >= VAULT_REVOKE_ID_LEN;
        PROBLEM("queued revocation %.*s is corrupt (%s): the worker sets it aside once due", named ? VAULT_REVOKE_ID_LEN : 3,
                named ? key + 9 : "(?)", why);
        continue;
      }
      json_decref(e);
      char id[VAULT_REVOKE_ID_LEN + 1];
      memcpy(id, key + 9, VAULT_REVOKE_ID_LEN);
      id[VAULT_REVOKE_ID_LEN] = 0;
      json_t *s1 = unseal_json(txn, &(st_aad){"", VAULT_REVOKE_KIND, id}, &rc);
      if (!s1) PROBLEM("queued revocation %s has no readable sealed tokens", id);
      else json_object_clear(s1);
      json_decref(s1);
    } else if (key[0] == 'x') {
      st_val v;
      json_t *x = st_get(txn, ST_DB_VAULT, key, k.len, &v) == 0 ? json_loadb(v.data, v.len, 0, NULL) : NULL;
      const char *xid = json_string_value(json_object_get(x, "id")), *xt = json_string_value(json_object_get(x, "tenant"));
      PROBLEM("revocation %s%s%s was set aside, its queue entry corrupt (%s): the tokens it was to revoke may still be "
              "live at the upstream — revoke them there by hand (listed here for revocation_give_up_ms)",
              xid ? xid : "(id unreadable)", xt ? " of tenant " : "", xt ? xt : "",
              json_string_value(json_object_get(x, "why")) ?: "unreadable");
      json_decref(x);
    }
  }
#undef PROBLEM
  st_cursor_close(c);
  return problems;
}

int vault_grant_register(st_store *st) {
  int rc = st_dir_hook_user_cut(st, on_user_cut, NULL);
  if (!rc) rc = st_purge_add(st, "vault.grants", vault_grant_purge_tenant, NULL);
  if (!rc) rc = st_check_add(st, check_vault, NULL);
  return rc == ST_EEXIST ? 0 : rc;
}
