/* auth/oauth_token.c — codes, grants and their tokens (see oauth_token.h). */
#include "auth/oauth_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/token_store.h"
#include "store/dir.h"
#include "store/seal.h"
#include "store/tenant.h"

#define KEY_CAP 400

/* ---- keys */

static size_t hkey(uint8_t k[33], char type, const uint8_t hash[32]) {
  k[0] = (uint8_t)type;
  memcpy(k + 1, hash, 32);
  return 33;
}

/* type tenant \0 a [\0 b] — b may be bytes (blen) */
static size_t tkey(char *k, char type, const char *tenant, const char *a, const void *b, size_t blen) {
  size_t t = strlen(tenant), al = a ? strlen(a) : 0;
  if (t == 0 || t > 63 || al > AUTH_OAUTH_CLIENT_ID_MAX || 4 + t + al + blen > KEY_CAP) return 0;
  size_t o = 0;
  k[o++] = type;
  memcpy(k + o, tenant, t);
  o += t;
  k[o++] = 0;
  if (a) {
    memcpy(k + o, a, al);
    o += al;
    if (b) k[o++] = 0;
  }
  if (b) {
    memcpy(k + o, b, blen);
    o += blen;
  }
  return o;
}

static int get_json(st_txn *txn, const void *k, size_t kn, json_t **out) {
  st_val v;
  *out = NULL;
  int rc = st_get(txn, ST_DB_AUTH, k, kn, &v);
  if (rc) return rc;
  *out = json_loadb(v.data, v.len, 0, NULL);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return ST_ECORRUPT;
  }
  return 0;
}

static int put_json(st_txn *txn, const void *k, size_t kn, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_AUTH, k, kn, s, strlen(s), 0);
  free(s);
  return rc;
}

static int64_t jint(const json_t *o, const char *k) { return (int64_t)json_integer_value(json_object_get(o, k)); }
static const char *jstr(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* ---- codes */

int auth_oauth_code_put(st_txn *txn, const uint8_t hash[32], const auth_oauth_code *c, int64_t now) {
  json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:b}", "tenant", c->tenant, "client_id", c->client_id,
                        "client_name", c->client_name, "redirect_uri", c->redirect_uri, "challenge", c->challenge,
                        "connector", c->connector, "user", c->user_id, "signin_at", (json_int_t)c->signin_at,
                        "expires", (json_int_t)c->expires, "used", 0);
  if (!r) return ST_ENOMEM;
  uint8_t k[33];
  char uk[KEY_CAP];
  size_t ukn = tkey(uk, 'K', c->tenant, c->user_id, hash, 32);
  int rc = ukn ? put_json(txn, k, hkey(k, 'k', hash), r) : ST_EINVAL;
  json_decref(r);
  if (!rc) rc = st_put(txn, ST_DB_AUTH, uk, ukn, "", 0, 0);
  if (rc) return rc;
  /* sweep: codes live a minute; a used one is kept until it expires (so a
   * replay is recognised), then goes */
  st_cursor *cur;
  if (st_cursor_open(txn, ST_DB_AUTH, &cur)) return 0;
  uint8_t dead[16][33];
  char dead_idx[16][KEY_CAP];
  size_t dead_idx_n[16];
  int nd = 0, seen = 0;
  st_val kk, v;
  st_cursor_seek(cur, "k", 1, NULL, 0);
  while (nd < 16 && seen++ < 64 && st_cursor_next(cur, &kk, &v) == 0) {
    if (kk.len != 33) continue;
    json_t *x = json_loadb(v.data, v.len, 0, NULL);
    if (!x || jint(x, "expires") + 60 <= now) {
      memcpy(dead[nd], kk.data, 33);
      const char *t = jstr(x, "tenant"), *u = jstr(x, "user");
      dead_idx_n[nd] = t && u ? tkey(dead_idx[nd], 'K', t, u, (const uint8_t *)kk.data + 1, 32) : 0;
      nd++;
    }
    json_decref(x);
  }
  st_cursor_close(cur);
  for (int i = 0; i < nd; i++) {
    st_del(txn, ST_DB_AUTH, dead[i], 33);
    if (dead_idx_n[i]) st_del(txn, ST_DB_AUTH, dead_idx[i], dead_idx_n[i]);
  }
  return 0;
}

/* Deletes the codes indexed under prefix (K tenant \0 [user \0]), at most
 * limit (0: all); how many, or an ST_E* code. */
static int codes_delete(st_txn *txn, const char *pre, size_t pn, int limit) {
  int n = 0, rc = 0;
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_AUTH, &c))) return rc;
    char keys[16][KEY_CAP];
    size_t lens[16];
    int nk = 0;
    st_val k;
    st_cursor_seek(c, pre, pn, NULL, 0);
    while (nk < 16 && (!limit || n + nk < limit) && st_cursor_next(c, &k, NULL) == 0) {
      if (k.len > KEY_CAP) continue;
      memcpy(keys[nk], k.data, k.len);
      lens[nk++] = k.len;
    }
    st_cursor_close(c);
    for (int i = 0; i < nk; i++) {
      uint8_t ck[33];
      if (lens[i] >= pn + 32) {
        hkey(ck, 'k', (const uint8_t *)keys[i] + lens[i] - 32);
        if ((rc = st_del(txn, ST_DB_AUTH, ck, 33)) && rc != ST_ENOTFOUND) return rc;
      }
      if ((rc = st_del(txn, ST_DB_AUTH, keys[i], lens[i])) && rc != ST_ENOTFOUND) return rc;
      n++;
    }
    if (nk < 16 || (limit && n >= limit)) return n;
  }
}

/* ---- grants */

static int put_token(st_txn *txn, const char *tenant, const char *family, const char *kind, const uint8_t hash[32],
                     int64_t expires) {
  json_t *t = json_pack("{s:s,s:s,s:s,s:I}", "k", kind, "tenant", tenant, "family", family, "expires",
                        (json_int_t)expires);
  if (!t) return ST_ENOMEM;
  uint8_t k[33];
  int rc = put_json(txn, k, hkey(k, 't', hash), t);
  json_decref(t);
  char g[KEY_CAP];
  size_t gn = tkey(g, 'g', tenant, family, hash, 32);
  return rc ? rc : gn ? st_put(txn, ST_DB_AUTH, g, gn, "", 0, 0) : ST_EINVAL;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The user may still be issued tokens: tenant active, user present and
 * active. */
static int user_live(st_txn *txn, const char *tenant, const char *user) {
  if (st_tenant_active(txn, tenant)) return AUTH_EOAUTH_GRANT;
  int a = st_dir_user_active(txn, tenant, user);
  return a == 1 ? 0 : a == 0 || a == ST_ENOTFOUND ? AUTH_EOAUTH_GRANT : a;
}

/* Issues an access and a refresh token of family (whose record f holds the
 * sign-in time) into x. */
static int issue_pair(st_txn *txn, auth_oauth_issue *x, const char *family, const json_t *f) {
  int64_t bound = jint(f, "signin_at") + x->max_signin_age;
  if (bound <= x->now) return AUTH_EOAUTH_SIGNIN; /* sign in with Okta again */
  x->access_expires = min64(x->now + x->access_ttl, bound);
  int rc = put_token(txn, x->tenant, family, "at", x->access_hash, x->access_expires);
  if (!rc) rc = put_token(txn, x->tenant, family, "rt", x->refresh_hash, min64(x->now + x->refresh_ttl, bound));
  snprintf(x->family_out, sizeof x->family_out, "%s", family);
  return rc;
}

#define CODE_USED 1 /* code_verdict: the code was exchanged before */

/* The exchange's checks, all reads (the job and auth_oauth_exchange_check
 * decide alike). *c: the code record under k (the caller's to json_decref;
 * NULL when absent or unreadable). 0 when the code may be exchanged;
 * CODE_USED when it was before (a replay: what it issued is to go);
 * AUTH_EOAUTH_GRANT, AUTH_EOAUTH_SIGNIN or ST_E* when not. */
static int code_verdict(st_txn *txn, const uint8_t k[33], const char *client_id, const char *redirect_uri,
                        const char *verifier, const auth_oauth_issue *x, json_t **c) {
  int rc = get_json(txn, k, 33, c);
  if (rc) return rc == ST_ENOTFOUND ? AUTH_EOAUTH_GRANT : rc;
  const char *tenant = jstr(*c, "tenant"), *cid = jstr(*c, "client_id"), *ru = jstr(*c, "redirect_uri");
  const char *user = jstr(*c, "user");
  if (!tenant || strcmp(tenant, x->tenant) || !cid || !ru || !user || !jstr(*c, "connector"))
    return AUTH_EOAUTH_GRANT;
  if (json_is_true(json_object_get(*c, "used"))) return CODE_USED;
  if (jint(*c, "expires") <= x->now || strcmp(cid, client_id) || strcmp(ru, redirect_uri) ||
      !auth_oauth_pkce_ok(verifier, jstr(*c, "challenge")))
    return AUTH_EOAUTH_GRANT;
  if ((rc = user_live(txn, tenant, user))) return rc;
  /* the sign-in's age (issue_pair's bound), before anything is written */
  return jint(*c, "signin_at") + x->max_signin_age <= x->now ? AUTH_EOAUTH_SIGNIN : 0;
}

/* Whether grant `family` of tenant exists (a store error: false). */
static bool family_exists(st_txn *txn, const char *tenant, const char *family) {
  char fk[KEY_CAP];
  st_val v;
  size_t fkn = tkey(fk, 'f', tenant, family, NULL, 0);
  return fkn && st_get(txn, ST_DB_AUTH, fk, fkn, &v) == 0;
}

int auth_oauth_exchange_check(st_txn *txn, const uint8_t code_hash[32], const char *client_id,
                              const char *redirect_uri, const char *verifier, const auth_oauth_issue *x) {
  uint8_t k[33];
  json_t *c;
  hkey(k, 'k', code_hash);
  int rc = code_verdict(txn, k, client_id, redirect_uri, verifier, x, &c);
  if (rc == CODE_USED) {
    /* a replay acts only while what the code issued is there to revoke */
    const char *fam = jstr(c, "family");
    rc = fam && family_exists(txn, x->tenant, fam) ? 0 : AUTH_EOAUTH_GRANT;
  }
  json_decref(c);
  return rc;
}

static int user_families(st_txn *txn, const char *tenant, const char *user, json_t **out);

/* A grant's place in the order of use: least recently used first (then the
 * oldest, then by id, so that every run decides alike). */
typedef struct grant_use {
  int64_t last_used, created;
  const char *id;
} grant_use;

static int use_cmp(const void *a, const void *b) {
  const grant_use *x = a, *y = b;
  if (x->last_used != y->last_used) return x->last_used < y->last_used ? -1 : 1;
  if (x->created != y->created) return x->created < y->created ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* At most AUTH_OAUTH_USER_GRANTS_MAX grants per person: past it the least
 * recently used go (at most CAP_STEP of them per call, so that a person
 * holding many from before the cap costs one exchange a bounded amount;
 * each exchange then takes the count down until it is under the cap).
 * Each authorization makes a grant and nothing else ends one but its
 * revocation or its person's end, and a signed-in employee gets a code
 * without a click for a client allowed before: without a cap their
 * grants piled up without end. keep: the grant just issued. */
#define CAP_STEP 64
static int cap_user_grants(st_txn *txn, const char *tenant, const char *user, const char *keep) {
  json_t *ids;
  int rc = user_families(txn, tenant, user, &ids);
  size_t n = json_array_size(ids);
  if (rc || n <= AUTH_OAUTH_USER_GRANTS_MAX) {
    json_decref(ids);
    return rc;
  }
  grant_use *u = calloc(n, sizeof *u);
  if (!u) {
    json_decref(ids);
    return ST_ENOMEM;
  }
  size_t m = 0, i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    const char *id = json_string_value(v);
    char fk[KEY_CAP];
    size_t fkn = tkey(fk, 'f', tenant, id, NULL, 0);
    json_t *f = NULL;
    if (!strcmp(id, keep)) continue;
    /* an index entry without its grant (or one that cannot be read) is
     * the oldest of all: it goes first, by the revocation's own path */
    if (fkn) get_json(txn, fk, fkn, &f);
    u[m].last_used = f ? jint(f, "last_used") : INT64_MIN;
    u[m].created = f ? jint(f, "created") : INT64_MIN;
    u[m].id = id;
    m++;
    json_decref(f);
  }
  qsort(u, m, sizeof *u, use_cmp);
  size_t over = n - AUTH_OAUTH_USER_GRANTS_MAX, done = 0;
  for (i = 0; i < m && done < over && done < CAP_STEP && !rc; i++, done++) {
    rc = auth_oauth_family_revoke(txn, tenant, u[i].id);
    if (rc == ST_ENOTFOUND || rc == ST_ECORRUPT) {
      /* a dangling index entry, or a grant record that cannot be read: both
       * keys go bare (as the tenant purge does), or it would stop every
       * later exchange of this person */
      char uk[KEY_CAP], fk[KEY_CAP];
      size_t ukn = tkey(uk, 'F', tenant, user, u[i].id, strlen(u[i].id));
      size_t fkn = tkey(fk, 'f', tenant, u[i].id, NULL, 0);
      rc = fkn ? st_del(txn, ST_DB_AUTH, fk, fkn) : 0;
      if (rc == ST_ENOTFOUND) rc = 0;
      if (!rc && ukn) rc = st_del(txn, ST_DB_AUTH, uk, ukn);
      if (rc == ST_ENOTFOUND) rc = 0;
    }
  }
  free(u);
  json_decref(ids);
  return rc;
}

int auth_oauth_exchange_code(st_txn *txn, const uint8_t code_hash[32], const char *client_id,
                             const char *redirect_uri, const char *verifier, auth_oauth_issue *x) {
  uint8_t k[33];
  size_t kn = hkey(k, 'k', code_hash);
  json_t *c;
  int rc = code_verdict(txn, k, client_id, redirect_uri, verifier, x, &c);
  if (rc == CODE_USED) {
    /* a replayed code: what it issued goes too (the family named in it) */
    const char *fam = jstr(c, "family");
    rc = fam ? auth_oauth_family_revoke(txn, x->tenant, fam) : 0;
    if (rc == ST_ENOTFOUND) rc = 0;
    x->reused = true;
    goto done;
  }
  if (rc) goto done;
  const char *tenant = x->tenant, *cid = jstr(c, "client_id"), *user = jstr(c, "user"), *conn = jstr(c, "connector");
  /* the code is spent, and remembers what it issued */
  json_object_set_new(c, "used", json_true());
  json_object_set_new(c, "family", json_string(x->family));
  if ((rc = put_json(txn, k, kn, c))) goto done;
  json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "user", user, "client_id", cid, "client_name",
                        jstr(c, "client_name") ? jstr(c, "client_name") : "", "connector", conn, "created",
                        (json_int_t)x->now, "last_used", (json_int_t)x->now, "signin_at",
                        (json_int_t)jint(c, "signin_at"));
  char fk[KEY_CAP], uk[KEY_CAP];
  size_t fkn = tkey(fk, 'f', tenant, x->family, NULL, 0);
  size_t ukn = tkey(uk, 'F', tenant, user, x->family, strlen(x->family));
  if (!f || !fkn || !ukn) {
    json_decref(f);
    rc = ST_EINVAL;
    goto done;
  }
  rc = put_json(txn, fk, fkn, f);
  if (!rc) rc = st_put(txn, ST_DB_AUTH, uk, ukn, "", 0, 0);
  if (!rc) rc = issue_pair(txn, x, x->family, f);
  json_decref(f);
  if (!rc) rc = cap_user_grants(txn, tenant, user, x->family);
  if (!rc) {
    snprintf(x->user_id, sizeof x->user_id, "%s", user);
    snprintf(x->client_id, sizeof x->client_id, "%s", cid);
    snprintf(x->connector, sizeof x->connector, "%s", conn);
  }
done:
  json_decref(c);
  return rc;
}

/* Deletes a grant's expired tokens (bounded). */
static void sweep_family(st_txn *txn, const char *tenant, const char *family, int64_t now) {
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'g', tenant, family, "", 0);
  if (!pn) return;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) return;
  uint8_t dead[16][32];
  int nd = 0, seen = 0;
  st_val k;
  st_cursor_seek(c, pre, pn, NULL, 0);
  while (nd < 16 && seen++ < 256 && st_cursor_next(c, &k, NULL) == 0) {
    if (k.len != pn + 32) continue;
    uint8_t tk[33];
    json_t *t;
    memcpy(tk + 1, (const uint8_t *)k.data + pn, 32);
    tk[0] = 't';
    if (get_json(txn, tk, 33, &t) != 0 || jint(t, "expires") <= now) memcpy(dead[nd++], tk + 1, 32);
    json_decref(t);
  }
  st_cursor_close(c);
  for (int i = 0; i < nd; i++) {
    uint8_t tk[33];
    char g[KEY_CAP];
    st_del(txn, ST_DB_AUTH, tk, hkey(tk, 't', dead[i]));
    size_t gn = tkey(g, 'g', tenant, family, dead[i], 32);
    st_del(txn, ST_DB_AUTH, g, gn);
  }
}

/* Is x's moment inside rotated token t's grace window? To the millisecond
 * when both know it (a window of 1.5 s kept in whole seconds was anywhere
 * from 0.5 to 1.5 s long, depending on where in its second the rotation
 * fell: a client's second refresh 10 ms later, across a second's edge,
 * was taken for a stolen token and its grant revoked); else in seconds (a
 * token an older build rotated). */
static bool in_grace(const json_t *t, const auth_oauth_issue *x) {
  const json_t *ms = json_object_get(t, "grace_until_ms");
  if (x->now_ms > 0 && json_is_integer(ms)) return x->now_ms < json_integer_value(ms);
  return x->now < jint(t, "grace_until");
}

enum { RT_ROTATE, RT_REPLAY, RT_REUSED }; /* refresh_verdict's (>= 0) */

/* The refresh's checks, all reads (the job and auth_oauth_refresh_check
 * decide alike). *t: the token record, *f: its grant's (the caller's to
 * json_decref; NULL when not read), fam: the grant's id. RT_ROTATE: a live
 * refresh token, to be rotated; RT_REPLAY: the just-rotated one within its
 * grace window (another process of the same client refreshed at once: the
 * same successor pair again); RT_REUSED: a rotated one past its window (a
 * stolen token came back: the grant is to end); AUTH_EOAUTH_GRANT,
 * AUTH_EOAUTH_SIGNIN or ST_E* otherwise. */
static int refresh_verdict(st_txn *txn, const uint8_t refresh_hash[32], const char *client_id,
                           const auth_oauth_issue *x, json_t **t, json_t **f, char fam[ST_TOKEN_ID_BUFSZ]) {
  uint8_t k[33];
  *f = NULL;
  int rc = get_json(txn, k, hkey(k, 't', refresh_hash), t);
  if (rc) return rc == ST_ENOTFOUND ? AUTH_EOAUTH_GRANT : rc;
  const char *kind = jstr(*t, "k"), *tenant = jstr(*t, "tenant"), *family = jstr(*t, "family");
  if (!kind || strcmp(kind, "rt") || !tenant || strcmp(tenant, x->tenant) || !family ||
      strlen(family) >= ST_TOKEN_ID_BUFSZ)
    return AUTH_EOAUTH_GRANT;
  snprintf(fam, ST_TOKEN_ID_BUFSZ, "%s", family);
  char fk[KEY_CAP];
  size_t fkn = tkey(fk, 'f', tenant, fam, NULL, 0);
  if (!fkn || get_json(txn, fk, fkn, f)) return AUTH_EOAUTH_GRANT;
  const char *cid = jstr(*f, "client_id"), *user = jstr(*f, "user");
  if (!cid || strcmp(cid, client_id) || !user) return AUTH_EOAUTH_GRANT;
  if (json_object_get(*t, "rotated")) {
    if (!in_grace(*t, x)) return RT_REUSED;
    /* within a window: the latest rotation's, or an older one's (refused,
     * the grant kept) */
    const char *sealed_for = jstr(*f, "sealed_for");
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", refresh_hash[i]);
    if (!sealed_for || strcmp(sealed_for, hex)) return AUTH_EOAUTH_GRANT;
    return (rc = user_live(txn, tenant, user)) ? rc : RT_REPLAY;
  }
  /* the sign-in's age before the token's expiry: a refresh token ends at
   * the bound of the age it was issued under, and past it the answer that
   * helps is "sign in again" */
  if (jint(*f, "signin_at") + x->max_signin_age <= x->now) return AUTH_EOAUTH_SIGNIN;
  if (jint(*t, "expires") <= x->now) return AUTH_EOAUTH_GRANT;
  return (rc = user_live(txn, tenant, user)) ? rc : RT_ROTATE;
}

int auth_oauth_refresh_check(st_txn *txn, const uint8_t refresh_hash[32], const char *client_id,
                             const auth_oauth_issue *x) {
  json_t *t = NULL, *f = NULL;
  char fam[ST_TOKEN_ID_BUFSZ];
  int v = refresh_verdict(txn, refresh_hash, client_id, x, &t, &f, fam);
  json_decref(t);
  json_decref(f);
  return v < 0 ? v : 0; /* rotated, replayed, or the grant revoked: the job acts */
}

int auth_oauth_refresh(st_txn *txn, const uint8_t refresh_hash[32], const char *client_id, auth_oauth_issue *x) {
  /* a job may run again (store.h): every run starts from the drawn pair,
   * which a replay below overwrites with the successor pair */
  if (x->drawn_kept_) {
    memcpy(x->access, x->drawn_access_, sizeof x->access);
    memcpy(x->refresh, x->drawn_refresh_, sizeof x->refresh);
  } else {
    memcpy(x->drawn_access_, x->access, sizeof x->access);
    memcpy(x->drawn_refresh_, x->refresh, sizeof x->refresh);
    x->drawn_kept_ = true;
  }
  x->replayed = x->reused = false;
  uint8_t k[33];
  size_t kn = hkey(k, 't', refresh_hash);
  json_t *t = NULL, *f = NULL;
  char fam[ST_TOKEN_ID_BUFSZ];
  int v = refresh_verdict(txn, refresh_hash, client_id, x, &t, &f, fam);
  int rc = v < 0 ? v : AUTH_EOAUTH_GRANT;
  if (v < 0) goto done;
  const char *tenant = x->tenant, *cid = jstr(f, "client_id"), *user = jstr(f, "user");
  if (v == RT_REPLAY) {
    /* the same successor pair again */
    st_aad aad = {tenant, AUTH_OAUTH_SUCCESSOR_KIND, fam};
    char *pair = NULL;
    if (st_secret_get_str(txn, &aad, &pair) == 0) {
      char *nl = strchr(pair, '\n');
      if (nl && (size_t)(nl - pair) < sizeof x->access && strlen(nl + 1) < sizeof x->refresh) {
        memcpy(x->access, pair, (size_t)(nl - pair));
        x->access[nl - pair] = 0;
        snprintf(x->refresh, sizeof x->refresh, "%s", nl + 1);
        x->access_expires = jint(f, "sealed_access_expires");
        x->replayed = true;
        snprintf(x->user_id, sizeof x->user_id, "%s", user);
        snprintf(x->client_id, sizeof x->client_id, "%s", cid);
        snprintf(x->connector, sizeof x->connector, "%s", jstr(f, "connector") ? jstr(f, "connector") : "");
        snprintf(x->family_out, sizeof x->family_out, "%s", fam);
        rc = 0;
      }
      st_secret_str_free(pair);
    }
    goto done;
  }
  if (v == RT_REUSED) {
    rc = auth_oauth_family_revoke(txn, tenant, fam);
    if (rc == ST_ENOTFOUND) rc = 0;
    x->reused = true;
    goto done;
  }
  char fk[KEY_CAP];
  size_t fkn = tkey(fk, 'f', tenant, fam, NULL, 0);
  if ((rc = issue_pair(txn, x, fam, f))) goto done;
  /* the old refresh token is rotated; its successor sealed for the window */
  json_object_set_new(t, "rotated", json_integer(x->now));
  if (x->now_ms > 0) {
    int64_t until_ms = x->now_ms + (x->grace_ms ? x->grace_ms : x->grace * 1000);
    json_object_set_new(t, "grace_until_ms", json_integer(until_ms));
    json_object_set_new(t, "grace_until", json_integer((until_ms + 999) / 1000));
  } else {
    json_object_set_new(t, "grace_until", json_integer(x->now + x->grace));
  }
  if ((rc = put_json(txn, k, kn, t))) goto done;
  size_t al = strlen(x->access), rl = strlen(x->refresh);
  char *pair = malloc(al + rl + 2);
  if (!pair) {
    rc = ST_ENOMEM;
    goto done;
  }
  memcpy(pair, x->access, al);
  pair[al] = '\n';
  memcpy(pair + al + 1, x->refresh, rl + 1);
  st_aad aad = {tenant, AUTH_OAUTH_SUCCESSOR_KIND, fam};
  rc = st_secret_put(txn, &aad, pair, al + rl + 1);
  OPENSSL_cleanse(pair, al + rl + 1);
  free(pair);
  if (rc) goto done;
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", refresh_hash[i]);
  json_object_set_new(f, "sealed_for", json_string(hex));
  json_object_set_new(f, "sealed_access_expires", json_integer(x->access_expires));
  json_object_set_new(f, "last_used", json_integer(x->now));
  if ((rc = put_json(txn, fk, fkn, f))) goto done;
  sweep_family(txn, tenant, fam, x->now);
  snprintf(x->user_id, sizeof x->user_id, "%s", user);
  snprintf(x->client_id, sizeof x->client_id, "%s", cid);
  snprintf(x->connector, sizeof x->connector, "%s", jstr(f, "connector") ? jstr(f, "connector") : "");
done:
  json_decref(t);
  json_decref(f);
  return rc;
}

int auth_oauth_token_hash(const char *token, const char *prefix, uint8_t out[32]) {
  size_t pl = strlen(prefix);
  if (!token || strncmp(token, prefix, pl) || st_token_check(token, strlen(token), prefix) != 0)
    return ST_ENOTFOUND;
  return st_token_hash(token, strlen(token), out);
}

int auth_oauth_verify(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *connector, int64_t now,
                      char user_id[40], char family[ST_TOKEN_ID_BUFSZ], int64_t *expires) {
  uint8_t k[33];
  json_t *t = NULL, *f = NULL;
  int rc = get_json(txn, k, hkey(k, 't', hash), &t);
  if (rc) return rc == ST_ECORRUPT ? ST_ENOTFOUND : rc;
  rc = ST_ENOTFOUND;
  const char *kind = jstr(t, "k"), *tn = jstr(t, "tenant"), *fam = jstr(t, "family");
  if (!kind || strcmp(kind, "at") || !tn || strcmp(tn, tenant) || !fam || strlen(fam) >= ST_TOKEN_ID_BUFSZ ||
      jint(t, "expires") <= now)
    goto done;
  char fk[KEY_CAP];
  size_t fkn = tkey(fk, 'f', tenant, fam, NULL, 0);
  if (!fkn || get_json(txn, fk, fkn, &f)) goto done;
  const char *aud = jstr(f, "connector"), *user = jstr(f, "user");
  if (!aud || !user || strlen(user) >= 40) goto done;
  if (aud[0] && (!connector || strcmp(aud, connector))) goto done; /* a connector's grant, elsewhere */
  if (st_tenant_active(txn, tenant) || st_dir_user_active(txn, tenant, user) != 1) goto done;
  snprintf(user_id, 40, "%s", user);
  snprintf(family, ST_TOKEN_ID_BUFSZ, "%s", fam);
  if (expires) *expires = jint(t, "expires");
  rc = 0;
done:
  json_decref(t);
  json_decref(f);
  return rc;
}

int auth_oauth_identity_check(st_txn *txn, const char *tenant, const char *user_id, const char *family) {
  char fk[KEY_CAP];
  json_t *f;
  size_t fkn = tkey(fk, 'f', tenant, family, NULL, 0);
  if (!fkn || get_json(txn, fk, fkn, &f)) return ST_ENOTFOUND;
  const char *user = jstr(f, "user");
  int rc = user && !strcmp(user, user_id) && !st_tenant_active(txn, tenant) && st_dir_user_active(txn, tenant, user) == 1
               ? 0
               : ST_ENOTFOUND;
  json_decref(f);
  return rc;
}

int auth_oauth_family_revoke(st_txn *txn, const char *tenant, const char *family) {
  char fk[KEY_CAP];
  size_t fkn = tkey(fk, 'f', tenant, family, NULL, 0);
  json_t *f;
  int rc = fkn ? get_json(txn, fk, fkn, &f) : ST_ENOTFOUND;
  if (rc) return rc;
  /* the tokens */
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'g', tenant, family, "", 0);
  for (;;) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_AUTH, &c))) break;
    uint8_t hs[64][32];
    int n = 0;
    st_val k;
    st_cursor_seek(c, pre, pn, NULL, 0);
    while (n < 64 && st_cursor_next(c, &k, NULL) == 0)
      if (k.len == pn + 32) memcpy(hs[n++], (const uint8_t *)k.data + pn, 32);
    st_cursor_close(c);
    for (int i = 0; i < n; i++) {
      uint8_t tk[33];
      char g[KEY_CAP];
      st_del(txn, ST_DB_AUTH, tk, hkey(tk, 't', hs[i]));
      st_del(txn, ST_DB_AUTH, g, tkey(g, 'g', tenant, family, hs[i], 32));
    }
    if (n < 64) break;
  }
  if (rc) {
    json_decref(f);
    return rc;
  }
  const char *user = jstr(f, "user");
  char uk[KEY_CAP];
  size_t ukn = user ? tkey(uk, 'F', tenant, user, family, strlen(family)) : 0;
  if (ukn) st_del(txn, ST_DB_AUTH, uk, ukn);
  json_decref(f);
  if ((rc = st_del(txn, ST_DB_AUTH, fk, fkn))) return rc;
  st_aad aad = {tenant, AUTH_OAUTH_SUCCESSOR_KIND, family};
  rc = st_secret_del(txn, &aad);
  if (rc && rc != ST_ENOTFOUND) return rc;
  auth_token_event ev = {tenant, AUTH_KIND_OAUTH, family};
  return st_emit(txn, ST_EVENT_TOKEN_REVOKED, &ev);
}

/* The grant a revocation of token hash by client_id would end (family,
 * NUL-terminated): 0 when there is one, ST_ENOTFOUND when the token is
 * unknown, another tenant's or another client's, or an error. */
static int revocable_family(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *client_id,
                            char family[ST_TOKEN_ID_BUFSZ]) {
  uint8_t k[33];
  json_t *t = NULL, *f = NULL;
  int rc = get_json(txn, k, hkey(k, 't', hash), &t);
  if (rc) return rc == ST_ECORRUPT ? ST_ENOTFOUND : rc;
  const char *tn = jstr(t, "tenant"), *fam = jstr(t, "family");
  rc = ST_ENOTFOUND;
  if (tn && !strcmp(tn, tenant) && fam && strlen(fam) < ST_TOKEN_ID_BUFSZ) {
    snprintf(family, ST_TOKEN_ID_BUFSZ, "%s", fam);
    char fk[KEY_CAP];
    size_t fkn = tkey(fk, 'f', tenant, family, NULL, 0);
    /* only the client the token was issued to may revoke it (RFC 7009 §2.1) */
    if (fkn && get_json(txn, fk, fkn, &f) == 0 && jstr(f, "client_id") && !strcmp(jstr(f, "client_id"), client_id))
      rc = 0;
  }
  json_decref(t);
  json_decref(f);
  return rc;
}

bool auth_oauth_token_revocable(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *client_id) {
  char family[ST_TOKEN_ID_BUFSZ];
  return revocable_family(txn, tenant, hash, client_id, family) != ST_ENOTFOUND;
}

int auth_oauth_revoke_token(st_txn *txn, const char *tenant, const uint8_t hash[32], const char *client_id) {
  char family[ST_TOKEN_ID_BUFSZ];
  int rc = revocable_family(txn, tenant, hash, client_id, family);
  if (!rc) rc = auth_oauth_family_revoke(txn, tenant, family);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* The ids of a user's grants (collected first: revoking deletes keys). */
static int user_families(st_txn *txn, const char *tenant, const char *user, json_t **out) {
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'F', tenant, user, "", 0);
  *out = json_array();
  if (!pn || !*out) return pn ? ST_ENOMEM : 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  st_val k;
  st_cursor_seek(c, pre, pn, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0)
    if (k.len > pn) json_array_append_new(*out, json_stringn((const char *)k.data + pn, k.len - pn));
  st_cursor_close(c);
  return 0;
}

int auth_oauth_revoke_user(st_txn *txn, const char *tenant, const char *user_id) {
  json_t *ids;
  int rc = user_families(txn, tenant, user_id, &ids);
  int n = 0;
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    if (rc) break;
    rc = auth_oauth_family_revoke(txn, tenant, json_string_value(v));
    if (rc == ST_ENOTFOUND) {
      char uk[KEY_CAP];
      const char *fam = json_string_value(v);
      size_t ukn = tkey(uk, 'F', tenant, user_id, fam, strlen(fam));
      rc = ukn ? st_del(txn, ST_DB_AUTH, uk, ukn) : 0;
      if (rc == ST_ENOTFOUND) rc = 0;
    } else if (rc == 0) {
      n++;
    }
  }
  json_decref(ids);
  /* and every code not exchanged yet (or kept to recognise a replay): a
   * code is an application about to be connected, and would otherwise be
   * exchanged for a grant after this */
  char cpre[KEY_CAP];
  size_t cpn = tkey(cpre, 'K', tenant, user_id, "", 0);
  int d = !rc && cpn ? codes_delete(txn, cpre, cpn, 0) : 0;
  if (d < 0) rc = d;
  return rc ? rc : n;
}

int auth_oauth_disconnect(st_txn *txn, const char *tenant, const char *user_id, const char *family) {
  char fk[KEY_CAP], client[AUTH_OAUTH_CLIENT_ID_MAX + 1];
  json_t *f = NULL;
  size_t fkn = tkey(fk, 'f', tenant, family, NULL, 0);
  int rc = fkn ? get_json(txn, fk, fkn, &f) : ST_ENOTFOUND;
  if (rc) return rc;
  const char *user = jstr(f, "user"), *cid = jstr(f, "client_id");
  bool ok = user && !strcmp(user, user_id) && cid && strlen(cid) < sizeof client;
  if (ok) snprintf(client, sizeof client, "%s", cid);
  json_decref(f);
  if (!ok) return ST_ENOTFOUND;
  if ((rc = auth_oauth_family_revoke(txn, tenant, family))) return rc;
  /* the consent "a" tenant \0 user \0 client_id, every resource of it */
  char ak[KEY_CAP];
  size_t akn = tkey(ak, 'a', tenant, user_id, client, strlen(client));
  rc = akn ? st_del(txn, ST_DB_AUTH, ak, akn) : 0;
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int auth_oauth_disconnect_user(st_txn *txn, const char *tenant, const char *user_id) {
  int n = auth_oauth_revoke_user(txn, tenant, user_id);
  if (n < 0) return n;
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'a', tenant, user_id, "", 0);
  int rc = pn ? st_del_prefix(txn, ST_DB_AUTH, pre, pn, 0) : 0;
  return rc < 0 ? rc : n;
}

/* Which records under a prefix are the client's (client_keys' match). */
typedef struct client_match {
  const char *id;
  size_t len;
  bool plain; /* no byte jansson escapes: its JSON spelling is its bytes */
  size_t pn;  /* the prefix's length */
  /* true when the record (key k, value v) is the client's */
  bool (*fn)(st_txn *txn, const struct client_match *m, const st_val *k, const st_val *v);
} client_match;

/* the JSON value names it: {"client_id":"<id>"}, its bytes as they are
 * unless jansson escaped some (then every value is parsed); confirmed when
 * parsed */
static bool in_value(st_txn *txn, const client_match *m, const st_val *k, const st_val *v) {
  (void)txn;
  (void)k;
  if (m->plain && !(v->len > m->len && memmem(v->data, v->len, m->id, m->len))) return false;
  json_t *j = json_loadb(v->data, v->len, 0, NULL);
  bool match = j && jstr(j, "client_id") && !strcmp(jstr(j, "client_id"), m->id);
  json_decref(j);
  return match;
}

/* the key ends with \0 and the client id */
static bool at_key_end(st_txn *txn, const client_match *m, const st_val *k, const st_val *v) {
  (void)txn;
  (void)v;
  return k->len > m->pn + m->len && ((const char *)k->data)[k->len - m->len - 1] == 0 &&
         !memcmp((const char *)k->data + k->len - m->len, m->id, m->len);
}

/* a code's index key ("K" … hash): the code it names ("k" hash) is the client's */
static bool code_of(st_txn *txn, const client_match *m, const st_val *k, const st_val *v) {
  (void)v;
  if (k->len < m->pn + 32) return false;
  uint8_t ck[33];
  json_t *code = NULL;
  hkey(ck, 'k', (const uint8_t *)k->data + k->len - 32);
  bool match = get_json(txn, ck, 33, &code) == 0 && jstr(code, "client_id") && !strcmp(jstr(code, "client_id"), m->id);
  json_decref(code);
  return match;
}

/* The keys under pre (at most 64 at a time from `from` on) that m matches:
 * collected into b (copies), *fromn set to resume after the last key read
 * (0: done). */
typedef struct key_batch {
  char keys[64][KEY_CAP];
  size_t lens[64];
  int n;
} key_batch;

static int client_keys(st_txn *txn, const char *pre, const client_match *m, key_batch *b, char *from,
                       size_t *fromn) {
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  st_val k, v;
  b->n = 0;
  st_cursor_seek(c, pre, m->pn, *fromn ? from : NULL, *fromn);
  bool more = false;
  while (st_cursor_next(c, &k, &v) == 0) {
    if (*fromn && k.len == *fromn && !memcmp(k.data, from, k.len)) continue; /* resumed after it */
    if (b->n == 64) {
      more = true;
      break;
    }
    if (k.len > KEY_CAP) continue;
    memcpy(from, k.data, k.len);
    *fromn = k.len;
    if (m->fn(txn, m, &k, &v)) {
      memcpy(b->keys[b->n], k.data, k.len);
      b->lens[b->n++] = k.len;
    }
  }
  st_cursor_close(c);
  if (!more) *fromn = 0;
  return 0;
}

/* One kind of the client's records, batch by batch: act on each key. */
static int client_each(st_txn *txn, char kind, const char *tenant, client_match *m, key_batch *b,
                       int (*act)(st_txn *txn, const char *tenant, const char *key, size_t len, size_t pn, int *n),
                       int *n) {
  char pre[KEY_CAP], from[KEY_CAP];
  size_t fromn = 0;
  int rc = 0;
  if (!(m->pn = tkey(pre, kind, tenant, "", NULL, 0))) return 0;
  do {
    if ((rc = client_keys(txn, pre, m, b, from, &fromn))) break;
    for (int i = 0; i < b->n && !rc; i++) rc = act(txn, tenant, b->keys[i], b->lens[i], m->pn, n);
  } while (!rc && fromn);
  return rc;
}

/* its grants: "f" tenant \0 family → {client_id, …} */
static int revoke_family(st_txn *txn, const char *tenant, const char *key, size_t len, size_t pn, int *n) {
  char fam[KEY_CAP];
  memcpy(fam, key + pn, len - pn);
  fam[len - pn] = 0;
  int rc = auth_oauth_family_revoke(txn, tenant, fam);
  if (rc == 0) ++*n;
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* a consent: "a" tenant \0 user \0 client_id (counted in *n) */
static int delete_key(st_txn *txn, const char *tenant, const char *key, size_t len, size_t pn, int *n) {
  (void)tenant;
  (void)pn;
  int rc = st_del(txn, ST_DB_AUTH, key, len);
  if (rc == 0) ++*n;
  return rc == ST_ENOTFOUND ? 0 : rc;
}

/* a code: "K" tenant \0 user \0 hash → the code "k" hash, both go */
static int delete_code(st_txn *txn, const char *tenant, const char *key, size_t len, size_t pn, int *n) {
  uint8_t ck[33];
  hkey(ck, 'k', (const uint8_t *)key + len - 32);
  int rc = st_del(txn, ST_DB_AUTH, ck, 33);
  if (rc == ST_ENOTFOUND) rc = 0;
  return rc ? rc : delete_key(txn, tenant, key, len, pn, n);
}

int auth_oauth_client_revoke_all(st_txn *txn, const char *tenant, const char *client_id, int *removed) {
  if (removed) *removed = 0;
  if (!client_id || !client_id[0] || strlen(client_id) > AUTH_OAUTH_CLIENT_ID_MAX) return ST_EINVAL;
  client_match m = {client_id, strlen(client_id), true, 0, NULL};
  for (const char *p = client_id; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f) m.plain = false;
  key_batch *b = malloc(sizeof *b);
  if (!b) return ST_ENOMEM;
  int n = 0, other = 0, rc;
  /* its grants (live exchanges end), the consents given to it, its codes
   * not exchanged yet */
  m.fn = in_value;
  rc = client_each(txn, 'f', tenant, &m, b, revoke_family, &n);
  m.fn = at_key_end;
  if (!rc) rc = client_each(txn, 'a', tenant, &m, b, delete_key, &other);
  m.fn = code_of;
  if (!rc) rc = client_each(txn, 'K', tenant, &m, b, delete_code, &other);
  free(b);
  if (!rc && removed) *removed = n + other;
  return rc ? rc : n;
}

int auth_oauth_grants(st_txn *txn, const char *tenant, const char *user_id, json_t **arr) {
  json_t *ids;
  int rc = user_families(txn, tenant, user_id, &ids);
  *arr = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    char fk[KEY_CAP];
    json_t *f;
    size_t fkn = tkey(fk, 'f', tenant, json_string_value(v), NULL, 0);
    if (!fkn || get_json(txn, fk, fkn, &f)) continue;
    json_array_append_new(*arr, json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id", v, "client_id",
                                          json_object_get(f, "client_id"), "client_name",
                                          json_object_get(f, "client_name"), "resource",
                                          json_object_get(f, "connector"), "created", json_object_get(f, "created"),
                                          "last_used", json_object_get(f, "last_used"), "signin_at",
                                          json_object_get(f, "signin_at")));
    json_decref(f);
  }
  json_decref(ids);
  return rc;
}

/* A consent's value: {"approved": unix s, "resources": ["" (the aggregated
 * endpoint: every connector) or connector names]}. A value of the older
 * form (the time alone) names no resource: asked again. */
#define CONSENT_RESOURCES_MAX 64

static json_t *consent_resources(st_txn *txn, const char *k, size_t kn) {
  json_t *v = NULL;
  if (get_json(txn, k, kn, &v) != 0) return NULL;
  json_t *r = json_incref(json_object_get(v, "resources"));
  json_decref(v);
  if (!json_is_array(r)) {
    json_decref(r);
    return NULL;
  }
  return r;
}

static bool resources_have(const json_t *r, const char *connector) {
  size_t i;
  json_t *e;
  json_array_foreach(r, i, e) {
    const char *c = json_string_value(e);
    if (c && !strcmp(c, connector)) return true;
  }
  return false;
}

int auth_oauth_consent_get(st_txn *txn, const char *tenant, const char *user_id, const char *client_id,
                           const char *connector) {
  char k[KEY_CAP];
  size_t kn = tkey(k, 'a', tenant, user_id, client_id, strlen(client_id));
  json_t *r = kn ? consent_resources(txn, k, kn) : NULL;
  /* the aggregated endpoint's consent covers every connector, a
   * connector's only itself */
  bool ok = r && (resources_have(r, "") || resources_have(r, connector));
  json_decref(r);
  return ok ? 0 : ST_ENOTFOUND;
}

/* A consent's place in the order of use (its "used", else its "approved";
 * a value that cannot be read is the oldest of all), then its key. */
typedef struct consent_use {
  int64_t used;
  char *key;
  size_t len;
} consent_use;

static int consent_use_cmp(const void *a, const void *b) {
  const consent_use *x = a, *y = b;
  if (x->used != y->used) return x->used < y->used ? -1 : 1;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->key, y->key, n);
  return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

/* At most AUTH_OAUTH_USER_CONSENTS_MAX consents per person: past it the
 * least recently used go (at most CAP_STEP per call, as for grants), never
 * `keep` (the key just written). One consent per client is allowed, and a
 * client metadata document URL is anyone's to make up: without a cap a
 * person's consents (and the scan of their deletion) had no bound. */
static int cap_user_consents(st_txn *txn, const char *tenant, const char *user, const char *keep, size_t keepn) {
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'a', tenant, user, "", 0);
  if (!pn) return 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  size_t n = 0, cap = 0;
  consent_use *u = NULL;
  st_val k, v;
  st_cursor_seek(c, pre, pn, NULL, 0);
  while (!rc && st_cursor_next(c, &k, &v) == 0) {
    if (k.len == keepn && !memcmp(k.data, keep, keepn)) continue;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      consent_use *g = realloc(u, nc * sizeof *u);
      if (!g) {
        rc = ST_ENOMEM;
        break;
      }
      u = g, cap = nc;
    }
    json_t *j = json_loadb(v.data, v.len, 0, NULL);
    json_t *used = json_object_get(j, "used");
    if (!used) used = json_object_get(j, "approved");
    u[n].used = json_is_integer(used) ? (int64_t)json_integer_value(used) : INT64_MIN;
    json_decref(j);
    u[n].len = k.len;
    if (!(u[n].key = malloc(k.len))) {
      rc = ST_ENOMEM;
      break;
    }
    memcpy(u[n].key, k.data, k.len);
    n++;
  }
  st_cursor_close(c);
  /* n others, plus the one kept */
  if (!rc && n + 1 > AUTH_OAUTH_USER_CONSENTS_MAX) {
    qsort(u, n, sizeof *u, consent_use_cmp);
    size_t over = n + 1 - AUTH_OAUTH_USER_CONSENTS_MAX;
    for (size_t i = 0; i < over && i < CAP_STEP && !rc; i++) {
      rc = st_del(txn, ST_DB_AUTH, u[i].key, u[i].len);
      if (rc == ST_ENOTFOUND) rc = 0;
    }
  }
  for (size_t i = 0; i < n; i++) free(u[i].key);
  free(u);
  return rc;
}

int auth_oauth_consent_put(st_txn *txn, const char *tenant, const char *user_id, const char *client_id,
                           const char *connector, int64_t now) {
  char k[KEY_CAP];
  size_t kn = tkey(k, 'a', tenant, user_id, client_id, strlen(client_id));
  if (!kn) return ST_EINVAL;
  json_t *r = consent_resources(txn, k, kn);
  if (!r) r = json_array();
  if (!r) return ST_ENOMEM;
  if (!resources_have(r, connector)) {
    while (json_array_size(r) >= CONSENT_RESOURCES_MAX) json_array_remove(r, 0); /* the oldest is asked again */
    json_array_append_new(r, json_string(connector));
  }
  json_t *v = json_pack("{sI sI so}", "approved", (json_int_t)now, "used", (json_int_t)now, "resources", r);
  char *txt = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  int rc = txt ? st_put(txn, ST_DB_AUTH, k, kn, txt, strlen(txt), 0) : ST_ENOMEM;
  free(txt);
  return rc ? rc : cap_user_consents(txn, tenant, user_id, k, kn);
}

int auth_oauth_consent_use(st_txn *txn, const char *tenant, const char *user_id, const char *client_id, int64_t now) {
  char k[KEY_CAP];
  size_t kn = tkey(k, 'a', tenant, user_id, client_id, strlen(client_id));
  json_t *v = NULL;
  int rc = kn ? get_json(txn, k, kn, &v) : ST_ENOTFOUND;
  if (rc) return rc == ST_ENOTFOUND || rc == ST_ECORRUPT ? 0 : rc;
  json_t *used = json_object_get(v, "used");
  if (!json_is_integer(used) || json_integer_value(used) <= now - 60) {
    json_object_set_new(v, "used", json_integer(now));
    rc = put_json(txn, k, kn, v);
  }
  json_decref(v);
  return rc;
}

/* ---- hooks, purge, check */

static int on_user_gone(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)ctx;
  int n = auth_oauth_revoke_user(txn, ev->tenant, ev->id); /* its codes too */
  if (n < 0) return n;
  if (kind == ST_DIR_EV_USER_DELETED) {
    char pre[KEY_CAP];
    size_t pn = tkey(pre, 'a', ev->tenant, ev->id, "", 0);
    if (pn) {
      int rc = st_del_prefix(txn, ST_DB_AUTH, pre, pn, 0);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

static int purge_tenant(st_txn *txn, const char *tenant, int limit) {
  if (limit < 1) return 0;
  int n = 0, rc = 0;
  /* grants one by one (their tokens are keyed by hash), 16 at a time until
   * none is left, then the rest: the prefixes below hold the indexes of
   * grants not revoked yet. A record that cannot be revoked (not JSON, an
   * id too long for the keys) goes as a bare key, or it would stall the
   * purge or outlive the tenant. */
  char pre[KEY_CAP];
  size_t pn = tkey(pre, 'f', tenant, "", NULL, 0);
  if (!pn) return 0; /* no such tenant id: an empty prefix would be the whole database */
  while (!rc && n < limit) {
    st_cursor *c;
    if ((rc = st_cursor_open(txn, ST_DB_AUTH, &c))) return rc;
    json_t *fams = json_array();
    st_val k;
    st_cursor_seek(c, pre, pn, NULL, 0);
    while (json_array_size(fams) < 16 && st_cursor_next(c, &k, NULL) == 0)
      if (k.len > pn) json_array_append_new(fams, json_stringn((const char *)k.data + pn, k.len - pn));
    st_cursor_close(c);
    if (json_array_size(fams) == 0) {
      json_decref(fams);
      break;
    }
    size_t i;
    json_t *v;
    json_array_foreach(fams, i, v) {
      if (n >= limit) break;
      rc = auth_oauth_family_revoke(txn, tenant, json_string_value(v));
      if (rc == ST_ENOTFOUND || rc == ST_ECORRUPT) {
        char raw[600]; /* pn <= 65, a key < 511 bytes */
        size_t fl = json_string_length(v);
        memcpy(raw, pre, pn);
        memcpy(raw + pn, json_string_value(v), fl);
        rc = st_del(txn, ST_DB_AUTH, raw, pn + fl);
      }
      if (rc) break;
      n++;
    }
    json_decref(fams);
  }
  if (rc) return rc;
  /* the tenant's codes, through their index */
  size_t cpn = tkey(pre, 'K', tenant, "", NULL, 0);
  if (n < limit && cpn) {
    rc = codes_delete(txn, pre, cpn, limit - n);
    if (rc < 0) return rc;
    n += rc;
  }
  static const char types[] = {'F', 'g', 'a'};
  for (size_t t = 0; t < sizeof types && n < limit; t++) {
    size_t ln = tkey(pre, types[t], tenant, "", NULL, 0);
    rc = st_del_prefix(txn, ST_DB_AUTH, pre, ln, limit - n);
    if (rc < 0) return rc;
    n += rc;
  }
  return n;
}

static int check_grants(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  int problems = 0;
  st_val k, v;
  st_cursor_seek(c, "f", 1, NULL, 0);
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *p = (const char *)k.data + 1;
    const char *z = memchr(p, 0, k.len - 1);
    char tenant[64];
    if (!z || (size_t)(z - p) >= sizeof tenant) continue;
    memcpy(tenant, p, (size_t)(z - p));
    tenant[z - p] = 0;
    json_t *f = json_loadb(v.data, v.len, 0, NULL), *u = NULL;
    const char *user = jstr(f, "user");
    if (!user || st_dir_user_get(txn, tenant, user, &u) == ST_ENOTFOUND) {
      char msg[200];
      snprintf(msg, sizeof msg, "OAuth grant of tenant %s belongs to unknown user %s", tenant, user ? user : "?");
      if (report) report(rctx, "auth", msg);
      problems++;
    }
    json_decref(u);
    json_decref(f);
  }
  st_cursor_close(c);
  return problems;
}

int auth_oauth_register(st_store *st) {
  int rc;
  if ((rc = st_dir_hook_user_cut(st, on_user_gone, NULL))) return rc;
  if ((rc = st_purge_add(st, "auth.oauth", purge_tenant, NULL))) return rc;
  return st_check_add(st, check_grants, NULL);
}
