/* auth/browser.c — browser session records, their hooks, purge and check
 * (see browser.h). */
#include "auth/browser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "store/dir.h"
#include "store/tenant.h"

static size_t rec_key(uint8_t k[33], const uint8_t hash[32]) {
  k[0] = 'b';
  memcpy(k + 1, hash, 32);
  return 33;
}

/* "B" tenant \0 user \0 [hash] */
static size_t user_key(uint8_t *k, size_t cap, const char *tenant, const char *user, const uint8_t *hash) {
  size_t t = strlen(tenant), u = user ? strlen(user) : 0;
  size_t n = 1 + t + 1 + (user ? u + 1 : 0) + (hash ? 32 : 0);
  if (n > cap) return 0;
  size_t o = 0;
  k[o++] = 'B';
  memcpy(k + o, tenant, t);
  o += t;
  k[o++] = 0;
  if (user) {
    memcpy(k + o, user, u);
    o += u;
    k[o++] = 0;
  }
  if (hash) {
    memcpy(k + o, hash, 32);
    o += 32;
  }
  return o;
}

static size_t exp_key(uint8_t k[41], int64_t expires, const uint8_t hash[32]) {
  k[0] = 'E';
  for (int i = 0; i < 8; i++) k[1 + i] = (uint8_t)((uint64_t)expires >> (56 - 8 * i));
  memcpy(k + 9, hash, 32);
  return 41;
}

/* "N" tenant \0 user: the user's last cut */
static size_t cut_key(uint8_t *k, size_t cap, const char *tenant, const char *user) {
  size_t t = strlen(tenant), u = strlen(user);
  if (1 + t + 1 + u > cap) return 0;
  k[0] = 'N';
  memcpy(k + 1, tenant, t);
  k[1 + t] = 0;
  memcpy(k + 2 + t, user, u);
  return 2 + t + u;
}

/* The user's last cut in ms since the epoch; 0 when never cut. */
static int cut_get(st_txn *txn, const char *tenant, const char *user, int64_t *at_ms) {
  uint8_t k[200];
  size_t kn = cut_key(k, sizeof k, tenant, user);
  st_val v;
  *at_ms = 0;
  int rc = kn ? st_get(txn, ST_DB_AUTH, k, kn, &v) : ST_EINVAL;
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  if (v.len != 8) return ST_ECORRUPT;
  uint64_t ms = 0;
  for (int i = 0; i < 8; i++) ms = ms << 8 | ((const uint8_t *)v.data)[i];
  *at_ms = (int64_t)ms;
  return 0;
}

/* Deletes a session's three keys, given its record. */
static int delete_rec(st_txn *txn, const uint8_t hash[32], const json_t *r) {
  uint8_t k[33], uk[200], ek[41];
  const char *tenant = json_string_value(json_object_get(r, "tenant"));
  const char *user = json_string_value(json_object_get(r, "user"));
  int64_t ex = (int64_t)json_integer_value(json_object_get(r, "expires"));
  int rc = st_del(txn, ST_DB_AUTH, k, rec_key(k, hash));
  if (rc) return rc;
  size_t un = tenant && user ? user_key(uk, sizeof uk, tenant, user, hash) : 0;
  if (un && (rc = st_del(txn, ST_DB_AUTH, uk, un)) && rc != ST_ENOTFOUND) return rc;
  rc = st_del(txn, ST_DB_AUTH, ek, exp_key(ek, ex, hash));
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static int get_rec(st_txn *txn, const uint8_t hash[32], json_t **out) {
  uint8_t k[33];
  st_val v;
  *out = NULL;
  int rc = st_get(txn, ST_DB_AUTH, k, rec_key(k, hash), &v);
  if (rc) return rc;
  *out = json_loadb(v.data, v.len, 0, NULL);
  return json_is_object(*out) ? 0 : (json_decref(*out), *out = NULL, ST_ECORRUPT);
}

/* Deletes up to 16 sessions whose maximum age passed by now. */
static void sweep(st_txn *txn, int64_t now) {
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_AUTH, &c)) return;
  uint8_t dead[16][41];
  int nd = 0;
  st_val k;
  st_cursor_seek(c, "E", 1, NULL, 0);
  while (nd < 16 && st_cursor_next(c, &k, NULL) == 0) {
    if (k.len != 41) continue;
    const uint8_t *p = k.data;
    uint64_t ex = 0;
    for (int i = 0; i < 8; i++) ex = ex << 8 | p[1 + i];
    if ((int64_t)ex > now) break; /* expiry order: the rest is alive */
    memcpy(dead[nd++], p, 41);
  }
  st_cursor_close(c);
  for (int i = 0; i < nd; i++) {
    json_t *r;
    int rc = get_rec(txn, dead[i] + 9, &r);
    if (rc == 0) delete_rec(txn, dead[i] + 9, r);
    else if (rc == ST_ENOTFOUND) st_del(txn, ST_DB_AUTH, dead[i], 41); /* record gone: else it blocks the sweep */
    json_decref(r);
  }
}

int auth_browser_create(st_txn *txn, auth_browser_new *n) {
  int rc = auth_login_state_consume(txn, n->state, n->state_expires, n->now);
  if (rc) return rc;
  if ((rc = auth_link_resolve(txn, n->tenant, n->settings, n->claims, n->iss, &n->link))) return rc;
  /* a sign-in under way while the user was cut (its code exchange with the
   * provider outlasted a Universal Logout, or a revoke and a restore) is
   * from before the cut: refused, the person starts again */
  int64_t cut_ms;
  if ((rc = cut_get(txn, n->tenant, n->link.user_id, &cut_ms))) return rc;
  if (cut_ms && n->started_ms < cut_ms) return AUTH_ECUT;
  /* a Universal Logout that could not be written left the user's
   * credentials and cut them in memory: this sign-in deletes those first
   * (its commit ends the cut), as the logout would have, then goes on */
  if (n->link.sign_out_first) {
    st_txn_ordinary(txn); /* a sign-in: never the room kept for taking access away */
    if ((rc = st_dir_user_sign_out(txn, n->tenant, n->link.user_id, "signin"))) return rc;
  }
  if (n->link.bind && (rc = auth_link_bind(txn, n->tenant, &n->link))) return rc;
  n->expires = n->now + n->max_s;
  json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "tenant", n->tenant, "user",
                        n->link.user_id, "iss", n->iss, "subject", n->link.subject, "csrf", n->csrf, "created",
                        (json_int_t)n->now, "signin_at", (json_int_t)n->now, "last_seen", (json_int_t)n->now,
                        "expires", (json_int_t)n->expires);
  if (!r) return ST_ENOMEM;
  char *s = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  if (!s) return ST_ENOMEM;
  uint8_t k[33], uk[200], ek[41];
  size_t un = user_key(uk, sizeof uk, n->tenant, n->link.user_id, n->hash);
  rc = un ? st_put(txn, ST_DB_AUTH, k, rec_key(k, n->hash), s, strlen(s), 0) : ST_EINVAL;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  if (!rc) rc = st_put(txn, ST_DB_AUTH, uk, un, "", 0, 0);
  if (!rc) rc = st_put(txn, ST_DB_AUTH, ek, exp_key(ek, n->expires, n->hash), n->tenant, strlen(n->tenant), 0);
  if (!rc) sweep(txn, n->now);
  return rc;
}

static int copy_str(const json_t *r, const char *k, char *out, size_t cap) {
  const char *s = json_string_value(json_object_get(r, k));
  if (!s || strlen(s) >= cap) return -1;
  memcpy(out, s, strlen(s) + 1);
  return 0;
}

int auth_browser_get(st_txn *txn, const char *tenant, const char *cookie, int64_t now, int64_t idle_s,
                     auth_browser *out) {
  memset(out, 0, sizeof *out);
  if (!cookie || strlen(cookie) != AUTH_LOGIN_RAND_LEN) return ST_ENOTFOUND;
  st_sha256(cookie, strlen(cookie), out->hash);
  json_t *r;
  int rc = get_rec(txn, out->hash, &r);
  if (rc) return rc;
  rc = ST_ENOTFOUND;
  char t[64];
  if (copy_str(r, "tenant", t, sizeof t) || strcmp(t, tenant) ||
      copy_str(r, "user", out->user_id, sizeof out->user_id) ||
      copy_str(r, "csrf", out->csrf, sizeof out->csrf) ||
      copy_str(r, "subject", out->subject, sizeof out->subject))
    goto done;
  memcpy(out->tenant, t, strlen(t) + 1);
  out->created = (int64_t)json_integer_value(json_object_get(r, "created"));
  out->signin_at = (int64_t)json_integer_value(json_object_get(r, "signin_at"));
  out->last_seen = (int64_t)json_integer_value(json_object_get(r, "last_seen"));
  out->expires = (int64_t)json_integer_value(json_object_get(r, "expires"));
  if (now >= out->expires || now - out->last_seen >= idle_s) goto done;
  if ((rc = st_tenant_active(txn, tenant))) goto done; /* tenant gone or suspended */
  rc = st_dir_user_active(txn, tenant, out->user_id);
  rc = rc == 1 ? 0 : rc == 0 ? ST_ENOTFOUND : rc;
  out->touch_due = now - out->last_seen >= AUTH_BROWSER_TOUCH_S;
done:
  json_decref(r);
  if (rc) {
    OPENSSL_cleanse(out, sizeof *out);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

int auth_browser_still(st_txn *txn, const char *tenant, const char *cookie, int64_t now, int64_t idle_s,
                       const char *user) {
  auth_browser s;
  int rc = auth_browser_get(txn, tenant, cookie, now, idle_s, &s);
  if (!rc && strcmp(s.user_id, user)) rc = ST_ENOTFOUND;
  OPENSSL_cleanse(&s, sizeof s);
  return rc;
}

int auth_browser_touch(st_txn *txn, const uint8_t hash[32], int64_t now) {
  json_t *r;
  int rc = get_rec(txn, hash, &r);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_object_set_new(r, "last_seen", json_integer(now));
  char *s = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  if (!s) return ST_ENOMEM;
  uint8_t k[33];
  rc = st_put(txn, ST_DB_AUTH, k, rec_key(k, hash), s, strlen(s), 0);
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  return rc;
}

int auth_browser_delete(st_txn *txn, const uint8_t hash[32]) {
  json_t *r;
  int rc = get_rec(txn, hash, &r);
  if (rc) return rc;
  rc = delete_rec(txn, hash, r);
  json_decref(r);
  return rc;
}

/* Calls fn for every session hash of a user (collected first: fn deletes). */
static int user_hashes(st_txn *txn, const char *tenant, const char *user_id, uint8_t (**out)[32], size_t *n) {
  uint8_t pre[200];
  size_t pn = user_key(pre, sizeof pre, tenant, user_id, NULL);
  *out = NULL;
  *n = 0;
  if (!pn) return 0;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  size_t cap = 0;
  st_val k;
  st_cursor_seek(c, pre, pn, NULL, 0);
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len != pn + 32) continue;
    if (*n == cap) {
      size_t nc = cap ? cap * 2 : 8;
      uint8_t(*v)[32] = realloc(*out, nc * 32);
      if (!v) {
        rc = ST_ENOMEM;
        break;
      }
      *out = v;
      cap = nc;
    }
    memcpy((*out)[(*n)++], (const uint8_t *)k.data + pn, 32);
  }
  st_cursor_close(c);
  if (rc == ST_ENOTFOUND) rc = 0;
  if (rc) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return rc;
}

int auth_browser_delete_user(st_txn *txn, const char *tenant, const char *user_id) {
  uint8_t(*h)[32];
  size_t n;
  int rc = user_hashes(txn, tenant, user_id, &h, &n);
  if (rc) return rc;
  int count = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    json_t *r;
    rc = get_rec(txn, h[i], &r);
    if (rc == 0) {
      rc = delete_rec(txn, h[i], r);
      count++;
    } else if (rc == ST_ENOTFOUND) {
      /* an index entry without its record: drop it */
      uint8_t uk[200];
      size_t un = user_key(uk, sizeof uk, tenant, user_id, h[i]);
      rc = st_del(txn, ST_DB_AUTH, uk, un);
      if (rc == ST_ENOTFOUND) rc = 0;
    }
    json_decref(r);
  }
  free(h);
  return rc ? rc : count;
}

int auth_browser_count_user(st_txn *txn, const char *tenant, const char *user_id) {
  uint8_t(*h)[32];
  size_t n;
  int rc = user_hashes(txn, tenant, user_id, &h, &n);
  free(h);
  return rc ? rc : (int)n;
}

int auth_browser_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  uint8_t pre[80];
  size_t pn = user_key(pre, sizeof pre, tenant, NULL, NULL);
  if (!pn || limit < 1) return 0;
  /* sessions: by the "B" index, record and expiry key with each */
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  uint8_t(*h)[32] = malloc((size_t)limit * 32);
  int nh = 0;
  st_val k;
  if (h) {
    st_cursor_seek(c, pre, pn, NULL, 0);
    while (nh < limit && st_cursor_next(c, &k, NULL) == 0)
      if (k.len >= pn + 32) memcpy(h[nh++], (const uint8_t *)k.data + k.len - 32, 32);
  }
  st_cursor_close(c);
  if (!h) return ST_ENOMEM;
  int n = 0;
  for (int i = 0; i < nh; i++) {
    json_t *r;
    if (get_rec(txn, h[i], &r) == 0) {
      if ((rc = delete_rec(txn, h[i], r))) {
        json_decref(r);
        free(h);
        return rc;
      }
      n++; /* only what was deleted: an index key without its record is left to the
            * prefix delete below, or a step of them would delete nothing forever */
    }
    json_decref(r);
  }
  free(h);
  /* "B" keys left without records, then the subject bindings and the
   * users' last cuts */
  if (n < limit) {
    rc = st_del_prefix(txn, ST_DB_AUTH, pre, pn, limit - n);
    if (rc < 0) return rc;
    n += rc;
  }
  char bp[80];
  size_t t = strlen(tenant);
  for (int pass = 0; pass < 3 && n < limit; pass++) {
    bp[0] = "sSN"[pass];
    memcpy(bp + 1, tenant, t);
    bp[1 + t] = 0;
    rc = st_del_prefix(txn, ST_DB_AUTH, bp, t + 2, limit - n);
    if (rc < 0) return rc;
    n += rc;
  }
  return n;
}

/* Deactivated, signed out everywhere or deleted: the user's sessions go;
 * deleted, their subject binding and last cut too (a user who stays keeps
 * their binding, so signing in again finds the same account, and the
 * moment of this cut, so no sign-in begun before it completes). */
static int on_user_cut(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)ctx;
  int n = auth_browser_delete_user(txn, ev->tenant, ev->id);
  if (n < 0) return n;
  uint8_t k[200];
  size_t kn = cut_key(k, sizeof k, ev->tenant, ev->id);
  if (!kn) return ST_EINVAL;
  if (kind == ST_DIR_EV_USER_DELETED) {
    n = st_del(txn, ST_DB_AUTH, k, kn);
    return n && n != ST_ENOTFOUND ? n : auth_link_unbind_user(txn, ev->tenant, ev->id);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  uint8_t v[8];
  for (int i = 0; i < 8; i++) v[i] = (uint8_t)(ms >> (56 - 8 * i));
  return st_put(txn, ST_DB_AUTH, k, kn, v, sizeof v, 0);
}

/* A SCIM write changed the user: a subject bound to them by the e-mail
 * fallback whose externalId now names another subject is dropped
 * (auth/login.h, rule a), and since every session, token and grant the
 * user holds came through that binding — a user without an externalId is
 * reached by nothing else — the user is signed out everywhere in the same
 * transaction (via the write's "put"/"patch"): an account taken over
 * through a wrong e-mail does not stay taken over. One lookup when the
 * user is not bound. */
static int on_user_changed(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)kind, (void)ctx;
  if (!ev || !ev->tenant || !ev->id) return 0;
  bool dropped = false;
  int rc = auth_link_recheck_user(txn, ev->tenant, ev->id, &dropped);
  if (rc || !dropped) return rc;
  return st_dir_user_sign_out(txn, ev->tenant, ev->id, ev->via && !strcmp(ev->via, "put") ? "put" : "patch");
}

/* st_check: a session or binding whose user is gone. */
static int check_sessions(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  int rc = st_cursor_open(txn, ST_DB_AUTH, &c);
  if (rc) return rc;
  int problems = 0;
  st_val k;
  st_cursor_seek(c, "B", 1, NULL, 0);
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *p = (const char *)k.data + 1;
    size_t rest = k.len - 1;
    const char *z = memchr(p, 0, rest);
    if (!z) continue;
    const char *user = z + 1;
    const char *z2 = memchr(user, 0, rest - (size_t)(user - p));
    char tenant[64], uid[40], msg[200];
    if (!z2 || (size_t)(z - p) >= sizeof tenant || (size_t)(z2 - user) >= sizeof uid) continue;
    memcpy(tenant, p, (size_t)(z - p));
    tenant[z - p] = 0;
    memcpy(uid, user, (size_t)(z2 - user));
    uid[z2 - user] = 0;
    json_t *u = NULL;
    if (st_dir_user_get(txn, tenant, uid, &u) == ST_ENOTFOUND) {
      snprintf(msg, sizeof msg, "browser session of tenant %s belongs to unknown user %s", tenant, uid);
      if (report) report(rctx, "auth", msg);
      problems++;
    }
    json_decref(u);
  }
  st_cursor_close(c);
  return problems;
}

int auth_browser_register(st_store *st) {
  int rc;
  if ((rc = st_dir_hook_user_cut(st, on_user_cut, NULL))) return rc;
  if ((rc = st_hook_add(st, ST_DIR_EV_USER_CHANGED, on_user_changed, NULL))) return rc;
  if ((rc = st_purge_add(st, "auth.browser", auth_browser_purge_tenant, NULL))) return rc;
  return st_check_add(st, check_sessions, NULL);
}
