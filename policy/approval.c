/* policy/approval.c — approval requests and grants (see approval.h). */
#include "policy/approval.h"
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/dir.h"
#include "store/tenant.h"
#include "store/token.h"

/* tenant (≤ 63) \0 kind \0? … ; the longest: 'g' user \0 64 hex */
#define KEY_MAX 200
#define TENANT_MAX 63
#define USER_MAX 64
/* a one-call grant outlives its request by this much: the agent's retry
 * after its client gave up may come a while after the approval */
#define ONE_CALL_GRANT_MS (60LL * 60 * 1000)

const char *ap_strerror(int err) {
  switch (err) {
  case AP_EDECIDED: return "the request is no longer pending";
  case AP_ESELF: return "nobody decides their own request";
  case AP_ENOTAPPROVER: return "the reviewer is in none of the request's approver groups";
  case AP_EREVIEWER: return "the reviewer is not an active user of the tenant";
  case AP_ETOOMANY: return "too many requests pending";
  default: return st_strerror(err);
  }
}

static bool id_ok(const char *id) {
  if (!id || strlen(id) != AP_ID_LEN) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

static bool name_ok(const char *s, size_t max) { return s && *s && strlen(s) <= max; }

/* the wall clock in ms, for the store hooks that run without a caller's time */
static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* tenant \0 kind [rest…]: the key's length, 0 when it does not fit */
static size_t key(char k[KEY_MAX], const char *tenant, char kind, const char *a, const char *b) {
  size_t tl = strlen(tenant), al = a ? strlen(a) : 0, bl = b ? strlen(b) : 0;
  size_t n = tl + 2 + al + (b ? 1 + bl : 0);
  if (tl > TENANT_MAX || n > KEY_MAX) return 0;
  memcpy(k, tenant, tl);
  k[tl] = 0;
  k[tl + 1] = kind;
  n = tl + 2;
  if (a) memcpy(k + n, a, al), n += al;
  if (b) k[n++] = 0, memcpy(k + n, b, bl), n += bl;
  return n;
}

static void hex32(const uint8_t d[32], char out[65]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) out[2 * i] = hx[d[i] >> 4], out[2 * i + 1] = hx[d[i] & 15];
  out[64] = 0;
}

int ap_args_hash(const json_t *args, char out[65]) {
  json_t *empty = NULL;
  if (!args) args = empty = json_object();
  char *s = args ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
  json_decref(empty);
  if (!s) return ST_ENOMEM;
  uint8_t d[32];
  int rc = st_sha256(s, strlen(s), d);
  free(s);
  if (rc) return rc;
  hex32(d, out);
  return 0;
}

/* the grant's key: user, then a digest of what it is for */
static size_t grant_key(char k[KEY_MAX], const char *tenant, const char *user, const char *connector,
                        const char *tool, const char *args_sha256) {
  size_t cl = strlen(connector), tl = strlen(tool), hl = strlen(args_sha256);
  size_t n = cl + 1 + tl + 1 + hl;
  char *m = malloc(n);
  if (!m) return 0;
  memcpy(m, connector, cl);
  m[cl] = 0;
  memcpy(m + cl + 1, tool, tl);
  m[cl + 1 + tl] = 0;
  memcpy(m + cl + 2 + tl, args_sha256, hl);
  uint8_t d[32];
  int rc = st_sha256(m, n, d);
  free(m);
  if (rc) return 0;
  char hx[65];
  hex32(d, hx);
  return key(k, tenant, 'g', user, hx);
}

static int put_json(st_txn *txn, const char *k, size_t kl, json_t *rec) {
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, ST_DB_APPROVALS, k, kl, s, strlen(s), 0);
  free(s);
  return rc;
}

static int get_json(st_txn *txn, const char *k, size_t kl, json_t **out) {
  st_val v;
  *out = NULL;
  int rc = st_get(txn, ST_DB_APPROVALS, k, kl, &v);
  if (rc) return rc;
  *out = json_loadb(v.data, v.len, 0, NULL);
  return *out ? 0 : ST_ECORRUPT;
}

/* tenant \0 'c' (UINT64_MAX - created, big-endian) id: a scan from the
 * prefix meets the newest request first */
static size_t time_key(char k[KEY_MAX], const char *tenant, int64_t created, const char *id) {
  size_t n = key(k, tenant, 'c', NULL, NULL);
  uint64_t inv = UINT64_MAX - (uint64_t)created;
  for (int i = 0; i < 8; i++) k[n + (size_t)i] = (char)(uint8_t)(inv >> (56 - 8 * i));
  memcpy(k + n + 8, id, AP_ID_LEN);
  return n + 8 + AP_ID_LEN;
}

/* put (or delete) a key with an empty value; deleting what is absent is fine */
static int mark(st_txn *txn, const char *k, size_t kl, bool on) {
  if (!kl) return ST_EINVAL;
  if (on) return st_put(txn, ST_DB_APPROVALS, k, kl, "", 0, 0);
  int rc = st_del(txn, ST_DB_APPROVALS, k, kl);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static int del_request(st_txn *txn, const char *tenant, const char *user, const char *id, int64_t created) {
  char k[KEY_MAX];
  size_t kl = key(k, tenant, 'r', id, NULL);
  int rc = st_del(txn, ST_DB_APPROVALS, k, kl);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if ((rc = mark(txn, k, key(k, tenant, 'u', user, id), false))) return rc;
  if ((rc = mark(txn, k, key(k, tenant, 'p', id, NULL), false))) return rc;
  return mark(txn, k, time_key(k, tenant, created, id), false);
}

typedef struct old_req {
  int64_t created;
  char id[AP_ID_LEN + 1];
} old_req;

static int by_age(const void *a, const void *b) {
  int64_t x = ((const old_req *)a)->created, y = ((const old_req *)b)->created;
  return x < y ? -1 : x > y;
}

/* The user's requests: how many are pending (at now); the oldest
 * others deleted while the user has AP_KEEP_PER_USER or more. */
static int user_requests(st_txn *txn, const char *tenant, const char *user, int64_t now, int *pending) {
  char p[KEY_MAX];
  size_t pl = key(p, tenant, 'u', user, NULL);
  if (!pl) return ST_EINVAL;
  p[pl++] = 0;
  *pending = 0;
  size_t n = 0, cap = 0, total = 0;
  old_req *done = NULL;
  st_cursor *c;
  st_val k;
  int rc = st_cursor_open(txn, ST_DB_APPROVALS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len != pl + AP_ID_LEN) continue;
    char id[AP_ID_LEN + 1];
    memcpy(id, (const char *)k.data + pl, AP_ID_LEN);
    id[AP_ID_LEN] = 0;
    json_t *rec = NULL;
    if (ap_request_get(txn, tenant, id, now, &rec) != 0) continue;
    total++;
    if (!strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending")) {
      (*pending)++;
    } else {
      /* ended (an expiry writes nothing): out of the pending index now */
      char pk[KEY_MAX];
      if ((rc = mark(txn, pk, key(pk, tenant, 'p', id, NULL), false))) {
        json_decref(rec);
        break;
      }
      if (n == cap) {
        old_req *g = realloc(done, (cap ? cap * 2 : 64) * sizeof *g);
        if (!g) {
          json_decref(rec);
          rc = ST_ENOMEM;
          break;
        }
        done = g;
        cap = cap ? cap * 2 : 64;
      }
      done[n].created = json_integer_value(json_object_get(rec, "created"));
      memcpy(done[n].id, id, sizeof done[n].id);
      n++;
    }
    json_decref(rec);
  }
  st_cursor_close(c);
  if (rc != ST_ENOTFOUND) {
    free(done);
    return rc;
  }
  rc = 0;
  if (n) qsort(done, n, sizeof *done, by_age);
  for (size_t i = 0; i < n && total >= AP_KEEP_PER_USER && !rc; i++, total--)
    rc = del_request(txn, tenant, user, done[i].id, done[i].created);
  free(done);
  return rc;
}

/* The user's grants past their expiry go (a used one-call grant stays,
 * in use, until then): a user's next request sweeps them, so grants never
 * pile up. A user holds a few: one per tool and arguments approved. */
static int drop_expired_grants(st_txn *txn, const char *tenant, const char *user, int64_t now_ms) {
  char p[KEY_MAX];
  size_t pl = key(p, tenant, 'g', user, NULL);
  if (!pl || pl + 1 >= KEY_MAX) return 0;
  p[pl++] = 0;
  st_cursor *c;
  st_val k, v;
  json_t *dead = json_array();
  int rc = dead ? st_cursor_open(txn, ST_DB_APPROVALS, &c) : ST_ENOMEM;
  if (rc) {
    json_decref(dead);
    return rc;
  }
  st_cursor_seek(c, p, pl, NULL, 0);
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    json_t *g = json_loadb(v.data, v.len, 0, NULL);
    if (!g || json_integer_value(json_object_get(g, "expires")) <= now_ms)
      json_array_append_new(dead, json_stringn(k.data, k.len));
    json_decref(g);
  }
  st_cursor_close(c);
  size_t i;
  json_t *x;
  if (rc == ST_ENOTFOUND) rc = 0;
  json_array_foreach(dead, i, x) if (!rc) rc = st_del(txn, ST_DB_APPROVALS, json_string_value(x), json_string_length(x));
  json_decref(dead);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int ap_request_create(st_txn *txn, const ap_new *n, int max_pending, char id_out[AP_ID_LEN + 1]) {
  if (!n || !name_ok(n->tenant, TENANT_MAX) || !name_ok(n->user, USER_MAX) || !n->connector || !n->tool ||
      !n->args_sha256 || strlen(n->args_sha256) != 64 || !json_is_array(n->approvers) || n->timeout_s < 1)
    return ST_EINVAL;
  int pending = 0;
  int rc = user_requests(txn, n->tenant, n->user, n->now_ms, &pending);
  if (rc) return rc;
  if (pending >= max_pending) return AP_ETOOMANY;
  if ((rc = drop_expired_grants(txn, n->tenant, n->user, n->now_ms))) return rc;
  char a[ST_TOKEN_ID_BUFSZ], b[ST_TOKEN_ID_BUFSZ];
  rc = st_token_id_new(a);
  if (!rc) rc = st_token_id_new(b);
  if (rc) return rc;
  snprintf(id_out, AP_ID_LEN + 1, "%s%s", a, b);
  json_t *args = n->arguments ? json_loads(n->arguments, JSON_DECODE_ANY, NULL) : NULL;
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:O, s:i, s:i, s:I, s:I, s:s}", "id", id_out, "user",
                          n->user, "session", n->session ? n->session : "", "connector", n->connector, "tool",
                          n->tool, "arguments", args ? args : json_null(), "args_sha256", n->args_sha256, "approvers",
                          n->approvers, "timeout_s", n->timeout_s, "grant_minutes", n->grant_minutes, "created",
                          (json_int_t)n->now_ms, "expires", (json_int_t)(n->now_ms + (int64_t)n->timeout_s * 1000),
                          "state", "pending");
  if (!rec) return ST_ENOMEM;
  char k[KEY_MAX];
  size_t kl = key(k, n->tenant, 'r', id_out, NULL);
  rc = kl ? put_json(txn, k, kl, rec) : ST_EINVAL;
  json_decref(rec);
  if (rc) return rc;
  if ((rc = mark(txn, k, key(k, n->tenant, 'u', n->user, id_out), true))) return rc;
  if ((rc = mark(txn, k, key(k, n->tenant, 'p', id_out, NULL), true))) return rc;
  return mark(txn, k, time_key(k, n->tenant, n->now_ms, id_out), true);
}

int ap_groups_resolve(st_txn *txn, const char *tenant, const char *list, json_t *ids) {
  char buf[1100];
  snprintf(buf, sizeof buf, "%s", list ? list : "");
  for (char *save = NULL, *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = 0;
    if (!n) continue;
    if (!strncmp(s, "id:", 3)) {
      if (st_dir_group_exists(txn, tenant, s + 3) == 0) json_array_append_new(ids, json_string(s + 3));
      continue;
    }
    json_t *found = json_array();
    int rc = st_dir_groups_by_name(txn, tenant, s, found, 2);
    if (rc == 0 && json_array_size(found) == 1) json_array_append(ids, json_array_get(found, 0));
    json_decref(found);
    if (rc < 0) return rc;
  }
  return 0;
}

/* a pending request past its time reads as expired */
static void settle_state(json_t *rec, int64_t now_ms) {
  const char *st = json_string_value(json_object_get(rec, "state"));
  json_int_t exp = json_integer_value(json_object_get(rec, "expires"));
  if (st && !strcmp(st, "pending") && now_ms >= exp) json_object_set_new(rec, "state", json_string("expired"));
}

int ap_request_get(st_txn *txn, const char *tenant, const char *id, int64_t now_ms, json_t **out) {
  *out = NULL;
  if (!name_ok(tenant, TENANT_MAX) || !id_ok(id)) return ST_ENOTFOUND;
  char k[KEY_MAX];
  size_t kl = key(k, tenant, 'r', id, NULL);
  int rc = get_json(txn, k, kl, out);
  if (!rc) settle_state(*out, now_ms);
  return rc;
}

static int by_created_desc(const void *a, const void *b) {
  json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "created"));
  json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "created"));
  return x < y ? 1 : x > y ? -1 : 0;
}

/* The requests of an index: 'p' (pending, any order) or 'c' (newest
 * first), each read and settled; keep(rec, ctx) true adds it to out,
 * false drops it; the scan stops after `want` kept or `scan_max` read. */
static int scan_index(st_txn *txn, const char *tenant, char kind, int64_t now_ms, size_t want, size_t scan_max,
                      bool (*keep)(const json_t *rec, void *ctx), void *ctx, json_t *out) {
  char p[KEY_MAX];
  size_t pl = key(p, tenant, kind, NULL, NULL), read = 0;
  st_cursor *c;
  st_val k;
  int rc = st_cursor_open(txn, ST_DB_APPROVALS, &c);
  if (rc) return rc;
  st_cursor_seek(c, p, pl, NULL, 0);
  while (json_array_size(out) < want && read < scan_max && (rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len < pl + AP_ID_LEN) continue;
    char id[AP_ID_LEN + 1];
    memcpy(id, (const char *)k.data + k.len - AP_ID_LEN, AP_ID_LEN);
    id[AP_ID_LEN] = 0;
    json_t *rec = NULL;
    read++;
    if (ap_request_get(txn, tenant, id, now_ms, &rec) != 0) continue;
    if (keep(rec, ctx)) json_array_append(out, rec);
    json_decref(rec);
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || rc == 0 ? 0 : rc;
}

static bool in_state(const json_t *rec, void *ctx) {
  const char *want = ctx;
  return !want || !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", want);
}

static void sort_desc(json_t *arr, int (*cmp)(const void *, const void *), size_t limit) {
  size_t n = json_array_size(arr);
  json_t **v = n ? malloc(n * sizeof *v) : NULL;
  if (!v) return;
  for (size_t i = 0; i < n; i++) v[i] = json_incref(json_array_get(arr, i));
  qsort(v, n, sizeof *v, cmp);
  json_array_clear(arr);
  for (size_t i = 0; i < n; i++) {
    if (i < limit) json_array_append(arr, v[i]);
    json_decref(v[i]);
  }
  free(v);
}

int ap_request_list(st_txn *txn, const char *tenant, const char *state, int64_t now_ms, size_t limit,
                    json_t **out) {
  *out = json_array();
  if (!*out) return ST_ENOMEM;
  if (!name_ok(tenant, TENANT_MAX)) return 0;
  int rc;
  if (state && !strcmp(state, "pending")) {
    /* the pending index: at most a few per user, whatever the history */
    rc = scan_index(txn, tenant, 'p', now_ms, (size_t)-1, (size_t)-1, in_state, (void *)state, *out);
    if (!rc) sort_desc(*out, by_created_desc, limit);
    return rc;
  }
  /* newest first, until `limit` match (the newest AP_LIST_SCAN_MAX read) */
  return scan_index(txn, tenant, 'c', now_ms, limit, AP_LIST_SCAN_MAX, in_state, (void *)state, *out);
}

static int by_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* ids' strings, sorted, once each (two bases compare with json_equal);
 * NULL when out of memory */
static json_t *sorted_unique(const json_t *ids) {
  size_t n = json_array_size(ids), k = 0;
  const char **v = malloc((n ? n : 1) * sizeof *v);
  json_t *out = v ? json_array() : NULL;
  for (size_t i = 0; out && i < n; i++)
    if (json_is_string(json_array_get(ids, i))) v[k++] = json_string_value(json_array_get(ids, i));
  if (out) qsort(v, k, sizeof *v, by_str);
  for (size_t i = 0; out && i < k; i++)
    if ((!i || strcmp(v[i - 1], v[i])) && json_array_append_new(out, json_string(v[i]))) {
      json_decref(out);
      out = NULL;
    }
  free(v);
  return out;
}

/* What the policy in force asks of the user's call of tool on connector
 * now, as a grant records it (its "basis"): *out NULL when it asks no
 * approval (allowed, blocked, hidden, an unknown or inactive user), else
 * {"approvers": [the group ids that may approve it, sorted, once each: the
 * matching approve rules' and, where one names none, the tenant's
 * approver_groups as they resolve now], "grant_minutes": N (the smallest
 * of the matching rules')}. Reads the user's groups and the policy in
 * txn. 0 or ST_E*. */
void ap_hint_fill(st_txn *txn, const char *tenant, const pol_user *u, const char *connector, const char *tool,
                  ap_hint *h) {
  memset(h, 0, sizeof *h);
  if (!u || st_tenant_uid_get(txn, tenant, h->uid) != 0) return;
  h->rev = pol_user_rev(u);
  h->gen = pol_user_generation(u);
  h->cutgen = st_txn_cut_generation(txn);
  h->approve = pol_decide(u, connector, tool) == POL_APPROVE && pol_approval_for(u, connector, tool, &h->pa) == 0;
  h->set = true;
}

/* The hint's stamp holds in txn: nothing a decision is built from moved
 * (the cuts as they are now, as gw__visible_in reads them), and the
 * tenant is active: a deleted one is purged module by module — its
 * directory first — moving none of the stamp (its uid goes last), so a
 * hint read before would go on deciding for users the store no longer
 * has. */
static bool hint_holds(st_txn *txn, const char *tenant, const ap_hint *h) {
  if (!h || !h->set || st_cut_generation_now(st_txn_store(txn)) != h->cutgen || pol_generation(txn, tenant) != h->gen ||
      pol_version(txn, tenant) != h->rev)
    return false;
  char uid[ST_TENANT_UID_LEN + 1];
  return st_tenant_uid_get(txn, tenant, uid) == 0 && !strcmp(uid, h->uid) && st_tenant_active(txn, tenant) == 0;
}

static int approval_basis(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                          const ap_hint *hint, json_t **out) {
  *out = NULL;
  pol_approval pa;
  int rc;
  if (hint_holds(txn, tenant, hint)) {
    if (!hint->approve) return 0;
    pa = hint->pa;
  } else {
    pol_user *pu = NULL;
    rc = pol_user_load(txn, tenant, user, &pu);
    if (rc == ST_ENOTFOUND) return 0;
    if (rc) return rc;
    bool approve = pol_decide(pu, connector, tool) == POL_APPROVE && pol_approval_for(pu, connector, tool, &pa) == 0;
    pol_user_free(pu);
    if (!approve) return 0;
  }
  json_t *ids = json_array(), *sorted = NULL;
  rc = ids ? 0 : ST_ENOMEM;
  for (size_t i = 0; !rc && i < pa.napprovers; i++)
    if (json_array_append_new(ids, json_string(pa.approvers[i]))) rc = ST_ENOMEM;
  if (!rc && pa.tenant_default) {
    json_t *t = NULL;
    rc = st_tenant_get(txn, tenant, &t);
    const char *list = json_string_value(json_object_get(json_object_get(t, "settings"), "approver_groups"));
    if (!rc && list) rc = ap_groups_resolve(txn, tenant, list, ids);
    if (rc == ST_ENOTFOUND) rc = 0; /* no tenant: nobody of it approves */
    json_decref(t);
  }
  if (!rc && !(sorted = sorted_unique(ids))) rc = ST_ENOMEM;
  if (!rc && !(*out = json_pack("{s:O, s:i}", "approvers", sorted, "grant_minutes", pa.grant_minutes))) rc = ST_ENOMEM;
  json_decref(sorted);
  json_decref(ids);
  return rc;
}

/* 1 when a reviewer in gids still approves rec under the policy in force
 * (where it still asks approval for that call: a group an admin took off
 * the rule no longer approves what was pending when they did), 0 when
 * not, or a store error. rec's own approvers are asked apart
 * (ap_reviewer_in). */
static int approves_now(st_txn *txn, const char *tenant, const json_t *rec, const char *reviewer, const json_t *gids) {
  json_t *basis = NULL;
  int rc = approval_basis(txn, tenant, json_string_value(json_object_get(rec, "user")) ?: "",
                          json_string_value(json_object_get(rec, "connector")) ?: "",
                          json_string_value(json_object_get(rec, "tool")) ?: "", NULL, &basis);
  if (rc < 0) return rc;
  int in = basis ? ap_reviewer_in(basis, reviewer, gids) : 1;
  json_decref(basis);
  return in;
}

/* the reviewer may decide rec: active, not the requester, in one of its
 * approver groups, and in one of basis's (the policy in force: NULL when
 * it no longer asks approval for the call, and the request's own
 * approvers stand) */
static int reviewer_may(st_txn *txn, const char *tenant, const json_t *rec, const char *reviewer,
                        const json_t *basis) {
  if (!strcmp(reviewer, json_string_value(json_object_get(rec, "user")) ?: "")) return AP_ESELF;
  int rc = st_dir_user_active(txn, tenant, reviewer);
  if (rc == ST_ENOTFOUND || rc == 0) return AP_EREVIEWER;
  if (rc < 0) return rc;
  json_t *gids = NULL;
  if ((rc = st_dir_user_groups(txn, tenant, reviewer, &gids)) < 0) return rc;
  bool in = ap_reviewer_in(rec, reviewer, gids) && (!basis || ap_reviewer_in(basis, reviewer, gids));
  json_decref(gids);
  return in ? 0 : AP_ENOTAPPROVER;
}

bool ap_reviewer_in(const json_t *rec, const char *reviewer, const json_t *gids) {
  if (!reviewer || !strcmp(reviewer, json_string_value(json_object_get(rec, "user")) ?: "")) return false;
  size_t i, j;
  json_t *a, *g;
  json_array_foreach(json_object_get(rec, "approvers"), i, a) {
    json_array_foreach(gids, j, g) {
      if (json_is_string(a) && json_is_string(g) && json_equal(a, g)) return true;
    }
  }
  return false;
}

/* when a request ended: its decision, else (expired) its expiry */
static json_int_t ended_at(const json_t *rec) {
  json_t *d = json_object_get(rec, "decided_at");
  return json_is_integer(d) ? json_integer_value(d) : json_integer_value(json_object_get(rec, "expires"));
}

static int by_ended_desc(const void *a, const void *b) {
  json_int_t x = ended_at(*(json_t *const *)a), y = ended_at(*(json_t *const *)b);
  return x < y ? 1 : x > y ? -1 : 0;
}

typedef struct rev_ctx {
  const char *reviewer;
  const json_t *gids;
  bool pending; /* want pending ones, else ended ones */
} rev_ctx;

static bool reviewer_keeps(const json_t *rec, void *arg) {
  const rev_ctx *r = arg;
  bool pend = !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending");
  return pend == r->pending && ap_reviewer_in(rec, r->reviewer, r->gids);
}

int ap_request_list_reviewer(st_txn *txn, const char *tenant, const char *reviewer, const json_t *gids,
                             int64_t now_ms, size_t limit, json_t **pending, json_t **history) {
  *pending = json_array();
  if (history) *history = json_array();
  if (!*pending || (history && !*history)) return ST_ENOMEM;
  if (!name_ok(tenant, TENANT_MAX)) return 0;
  rev_ctx want_pending = {reviewer, gids, true}, want_ended = {reviewer, gids, false};
  /* pending: the pending index; history: the newest requests first, until
   * `limit` the reviewer could decide (the newest AP_LIST_SCAN_MAX read) */
  int rc = scan_index(txn, tenant, 'p', now_ms, (size_t)-1, (size_t)-1, reviewer_keeps, &want_pending, *pending);
  /* only what they may decide now (ap_decide asks the policy in force too):
   * a request whose rule no longer names their group is not theirs */
  for (size_t i = 0; !rc && i < json_array_size(*pending);) {
    int in = approves_now(txn, tenant, json_array_get(*pending, i), reviewer, gids);
    if (in < 0) rc = in;
    else if (in) i++;
    else json_array_remove(*pending, i);
  }
  if (!rc) sort_desc(*pending, by_created_desc, limit);
  if (!rc && history)
    rc = scan_index(txn, tenant, 'c', now_ms, limit, AP_LIST_SCAN_MAX, reviewer_keeps, &want_ended, *history);
  if (!rc && history) sort_desc(*history, by_ended_desc, limit);
  return rc;
}

int ap_decide(st_txn *txn, const char *tenant, const char *id, ap_action what, const char *reviewer,
              const char *admin_name, const char *reason, int64_t now_ms, json_t **out) {
  if (out) *out = NULL;
  if ((what != AP_CANCEL && !reviewer) || (reason && strlen(reason) > AP_REASON_MAX)) return ST_EINVAL;
  json_t *rec = NULL;
  int rc = ap_request_get(txn, tenant, id, now_ms, &rec);
  if (rc) return rc;
  if (strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending")) {
    json_decref(rec);
    return AP_EDECIDED;
  }
  const char *by = admin_name ? admin_name : "admin";
  const char *user = json_string_value(json_object_get(rec, "user"));
  const char *conn = json_string_value(json_object_get(rec, "connector"));
  const char *tool = json_string_value(json_object_get(rec, "tool"));
  json_t *ru = NULL, *basis = NULL;
  if (what != AP_CANCEL) {
    /* what the policy in force asks of the call: who may decide it, and
     * what an approval's grant records (honoured only while it holds) */
    rc = approval_basis(txn, tenant, user ?: "", conn ?: "", tool ?: "", NULL, &basis);
    if (!rc) rc = reviewer_may(txn, tenant, rec, reviewer, basis);
    if (rc < 0) {
      json_decref(basis);
      json_decref(rec);
      return rc;
    }
    if (st_dir_user_get(txn, tenant, reviewer, &ru) == 0 && json_is_string(json_object_get(ru, "userName")))
      by = json_string_value(json_object_get(ru, "userName"));
    else
      by = reviewer;
  }
  const char *state = what == AP_APPROVE ? "approved" : what == AP_DENY ? "denied" : "cancelled";
  json_object_set_new(rec, "state", json_string(state));
  json_object_set_new(rec, "decided_by", json_string(by));
  if (reviewer) json_object_set_new(rec, "decided_by_id", json_string(reviewer));
  json_object_set_new(rec, "decided_at", json_integer((json_int_t)now_ms));
  json_object_set_new(rec, "reason", json_string(reason ? reason : ""));
  char k[KEY_MAX];
  size_t kl = key(k, tenant, 'r', id, NULL);
  rc = put_json(txn, k, kl, rec);
  if (!rc) rc = mark(txn, k, key(k, tenant, 'p', id, NULL), false); /* no longer pending */
  if (!rc && what == AP_APPROVE) {
    /* the request's minutes, never more than the rule in force gives (the
     * user's groups may have changed while it was pending) */
    int gm = (int)json_integer_value(json_object_get(rec, "grant_minutes"));
    json_int_t bm = json_integer_value(json_object_get(basis, "grant_minutes"));
    if (basis && bm < gm) gm = (int)bm;
    json_int_t exp = json_integer_value(json_object_get(rec, "expires"));
    const char *hash = json_string_value(json_object_get(rec, "args_sha256"));
    json_int_t gexp = gm > 0 ? (json_int_t)now_ms + (json_int_t)gm * 60000 : exp + ONE_CALL_GRANT_MS;
    /* basis null (the policy no longer asks approval for the call): a
     * grant no call can take (ap_grant_take) */
    json_t *g = json_pack("{s:s, s:s, s:s, s:I, s:i, s:O}", "request", id, "connector", conn ?: "", "tool",
                          tool ?: "", "expires", gexp, "uses", gm > 0 ? 0 : 1, "basis", basis ? basis : json_null());
    size_t gl = user && conn && tool && hash ? grant_key(k, tenant, user, conn, tool, hash) : 0;
    rc = !g ? ST_ENOMEM : gl ? put_json(txn, k, gl, g) : ST_ECORRUPT;
    json_decref(g);
  }
  if (!rc) {
    ap_event ev = {tenant, id, user ? user : "", state, by, reason ? reason : ""};
    rc = st_emit(txn, AP_EV_DECIDED, &ev);
  }
  json_decref(ru);
  json_decref(basis);
  if (!rc && out) *out = json_incref(rec);
  json_decref(rec);
  return rc;
}

static int grant_get(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                     const char *args_sha256, char k[KEY_MAX], size_t *kl, json_t **g) {
  *g = NULL;
  if (!name_ok(tenant, TENANT_MAX) || !name_ok(user, USER_MAX) || !connector || !tool || !args_sha256)
    return ST_ENOTFOUND;
  *kl = grant_key(k, tenant, user, connector, tool, args_sha256);
  if (!*kl) return ST_ENOTFOUND;
  return get_json(txn, k, *kl, g);
}

int ap_grant_take(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                  const char *args_sha256, int64_t now_ms, char *request, const ap_hint *hint) {
  char k[KEY_MAX];
  size_t kl = 0;
  json_t *g;
  int rc = grant_get(txn, tenant, user, connector, tool, args_sha256, k, &kl, &g);
  if (rc) return rc;
  bool expired = json_integer_value(json_object_get(g, "expires")) <= now_ms;
  bool once = json_integer_value(json_object_get(g, "uses")) == 1;
  bool live = !expired && !json_is_true(json_object_get(g, "in_use"));
  if (live) {
    /* honoured only while the policy in force asks of this user's call
     * what it asked when the grant was given: the same approver groups
     * and minutes. Their groups changed (Okta moved them), the tenant's
     * approver_groups changed, or a grant from before bases were
     * recorded: not taken — the call is held for a new approval, or
     * refused as the rule now says. The grant stays (it stands again
     * should the same basis come back before it expires). */
    json_t *basis = NULL;
    rc = approval_basis(txn, tenant, user, connector, tool, hint, &basis);
    live = !rc && basis && json_equal(basis, json_object_get(g, "basis"));
    json_decref(basis);
    if (rc) {
      json_decref(g);
      return rc;
    }
  }
  if (live && request) snprintf(request, AP_ID_LEN + 1, "%s", json_string_value(json_object_get(g, "request")) ?: "");
  /* A one-call grant stays, in use, while its call is made: the user's cut
   * deletes it like any grant, so a give-back after the cut finds nothing
   * to restore — whatever committed in between (a reactivation too). */
  if (expired) rc = st_del(txn, ST_DB_APPROVALS, k, kl);
  else if (live && once) rc = json_object_set_new(g, "in_use", json_true()) ? ST_ENOMEM : put_json(txn, k, kl, g);
  json_decref(g);
  if (rc) return rc;
  return live ? 0 : ST_ENOTFOUND;
}

int ap_grant_give_back(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                       const char *args_sha256, const char *request, int64_t now_ms) {
  char k[KEY_MAX];
  size_t kl = 0;
  json_t *g;
  int rc = grant_get(txn, tenant, user, connector, tool, args_sha256, k, &kl, &g);
  /* Gone: a cut, a new policy, the connector's change or its expiry ended
   * it since the take. Not in use: nothing was taken (an N-minute grant,
   * or given back already). Nothing to give back is not an error. */
  if (rc == ST_ENOTFOUND) return kl ? 0 : ST_EINVAL;
  if (rc) return rc;
  bool in_use = json_is_true(json_object_get(g, "in_use"));
  bool mine = !strcmp(json_string_value(json_object_get(g, "request")) ?: "", request ? request : "");
  if (!in_use || !mine) {
    json_decref(g);
    return 0;
  }
  /* Only to a requester who may still call, for a request still approved
   * (belt and braces: their cut deleted the grant in its own transaction;
   * a cut only in memory, when that could not be written, did not). */
  int active = st_dir_user_active(txn, tenant, user);
  json_t *rec = NULL;
  char rk[KEY_MAX];
  size_t rl = active == 1 && request && *request ? key(rk, tenant, 'r', request, NULL) : 0;
  rc = active < 0 && active != ST_ENOTFOUND ? active : rl ? get_json(txn, rk, rl, &rec) : ST_ENOTFOUND;
  bool approved = !rc && !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "approved") &&
                  !strcmp(json_string_value(json_object_get(rec, "user")) ?: "", user);
  json_decref(rec);
  if (rc && rc != ST_ENOTFOUND) {
    json_decref(g);
    return rc;
  }
  if (!approved) {
    json_decref(g);
    return 0;
  }
  /* one call again, valid an hour from now (the agent's retry may come a
   * while after the client gave up) */
  json_object_del(g, "in_use");
  rc = json_object_set_new(g, "expires", json_integer((json_int_t)(now_ms + ONE_CALL_GRANT_MS))) ? ST_ENOMEM
                                                                                                  : put_json(txn, k, kl, g);
  json_decref(g);
  return rc;
}

int ap_grants_live(st_txn *txn, const char *tenant, const char *user, const char *connector, const char *tool,
                   int64_t now_ms, ap_grant_summary *out) {
  memset(out, 0, sizeof *out);
  if (!name_ok(tenant, TENANT_MAX) || !name_ok(user, USER_MAX) || !connector || !tool) return 0;
  char p[KEY_MAX];
  size_t pl = key(p, tenant, 'g', user, NULL);
  if (!pl || pl + 1 >= KEY_MAX) return 0;
  p[pl++] = 0; /* the user's exact prefix (a user id that extends this one is not theirs) */
  /* only those a call would take (ap_grant_take): given under what the
   * policy in force asks of the user now */
  json_t *basis = NULL;
  int rc = approval_basis(txn, tenant, user, connector, tool, NULL, &basis);
  if (rc || !basis) return rc;
  st_cursor *c;
  st_val k, v;
  if ((rc = st_cursor_open(txn, ST_DB_APPROVALS, &c))) {
    json_decref(basis);
    return rc;
  }
  st_cursor_seek(c, p, pl, NULL, 0);
  /* the user's grants: at most one per (connector, tool, arguments) they
   * were approved for, each deleted when taken or found expired */
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    json_t *g = json_loadb(v.data, v.len, 0, NULL);
    json_int_t exp = json_integer_value(json_object_get(g, "expires"));
    if (exp > now_ms && !json_is_true(json_object_get(g, "in_use")) && json_equal(basis, json_object_get(g, "basis")) &&
        !strcmp(json_string_value(json_object_get(g, "connector")) ?: "", connector) &&
        !strcmp(json_string_value(json_object_get(g, "tool")) ?: "", tool)) {
      out->count++;
      if (exp > out->expires_max) {
        out->expires_max = exp;
        snprintf(out->request, sizeof out->request, "%s", json_string_value(json_object_get(g, "request")) ?: "");
      }
    }
    json_decref(g);
  }
  st_cursor_close(c);
  json_decref(basis);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

int ap_connector_gone(st_txn *txn, const char *tenant, const char *connector, int64_t now_ms) {
  if (!name_ok(tenant, TENANT_MAX) || !connector) return 0;
  char p[KEY_MAX];
  size_t pl = key(p, tenant, 'g', NULL, NULL);
  st_cursor *c;
  st_val k, v;
  json_t *dead = json_array(), *pend = json_array();
  int rc = dead && pend ? st_cursor_open(txn, ST_DB_APPROVALS, &c) : ST_ENOMEM;
  if (rc) {
    json_decref(dead), json_decref(pend);
    return rc;
  }
  st_cursor_seek(c, p, pl, NULL, 0);
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    json_t *g = json_loadb(v.data, v.len, 0, NULL);
    if (!strcmp(json_string_value(json_object_get(g, "connector")) ?: "", connector))
      json_array_append_new(dead, json_stringn(k.data, k.len));
    json_decref(g);
  }
  st_cursor_close(c);
  if (rc != ST_ENOTFOUND) {
    json_decref(dead), json_decref(pend);
    return rc;
  }
  size_t i;
  json_t *x;
  rc = 0;
  json_array_foreach(dead, i, x) if (!rc) rc = mark(txn, json_string_value(x), json_string_length(x), false);
  json_decref(dead);
  /* its pending requests (the pending index: a few per user) */
  if (!rc) rc = scan_index(txn, tenant, 'p', now_ms, (size_t)-1, (size_t)-1, in_state, (void *)"pending", pend);
  json_array_foreach(pend, i, x) {
    if (rc || strcmp(json_string_value(json_object_get(x, "connector")) ?: "", connector)) continue;
    int r = ap_decide(txn, tenant, json_string_value(json_object_get(x, "id")), AP_CANCEL, NULL,
                      "the connector was deleted or changed", "the connector it was for was deleted or changed",
                      now_ms, NULL);
    if (r < 0 && r != AP_EDECIDED && r != ST_ENOTFOUND) rc = r;
  }
  json_decref(pend);
  return rc;
}

/* ---- the store's registrations ---- */

static int purge_tenant(st_txn *txn, const char *tenant, int limit) {
  if (!name_ok(tenant, TENANT_MAX) || limit < 1) return 0;
  char p[KEY_MAX];
  size_t tl = strlen(tenant);
  memcpy(p, tenant, tl);
  p[tl] = 0;
  return st_del_prefix(txn, ST_DB_APPROVALS, p, tl + 1, limit);
}

/* Which of a requester's pending requests cancel_pending cancels: match
 * (NULL: every one) decides on the record. */
typedef bool (*pending_match)(st_txn *txn, const json_t *rec, void *ctx);

/* The requester's pending requests that match (policy's ctx) cancelled by
 * `by` for `reason`, each emitting AP_EV_DECIDED. Bounded: the user's
 * requests (AP_KEEP_PER_USER) are keys walked, only those still in the
 * pending index (HELD_PENDING_MAX a user, gateway/mcp/held.c) are read.
 * 0 or ST_E*. */
static int cancel_pending(st_txn *txn, const char *tenant, const char *user, pending_match match, void *mctx,
                          const char *by, const char *reason, int64_t now_ms) {
  char p[KEY_MAX];
  size_t pl = key(p, tenant, 'u', user, NULL);
  if (!pl || pl + 1 >= KEY_MAX) return 0;
  p[pl++] = 0; /* the user's exact prefix */
  st_cursor *c;
  st_val k;
  json_t *ids = json_array();
  int rc = ids ? st_cursor_open(txn, ST_DB_APPROVALS, &c) : ST_ENOMEM;
  if (rc) {
    json_decref(ids);
    return rc;
  }
  st_cursor_seek(c, p, pl, NULL, 0);
  while ((rc = st_cursor_next(c, &k, NULL)) == 0)
    if (k.len == pl + AP_ID_LEN) json_array_append_new(ids, json_stringn((const char *)k.data + pl, AP_ID_LEN));
  st_cursor_close(c);
  rc = rc == ST_ENOTFOUND ? 0 : rc;
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id) {
    if (rc) break;
    char pk[KEY_MAX];
    st_val pv;
    /* decided ones left the pending index: not read */
    int r = st_get(txn, ST_DB_APPROVALS, pk, key(pk, tenant, 'p', json_string_value(id), NULL), &pv);
    if (r == ST_ENOTFOUND) continue;
    json_t *rec = NULL;
    if (!r) r = ap_request_get(txn, tenant, json_string_value(id), now_ms, &rec);
    if (r == 0 && !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending") &&
        (!match || match(txn, rec, mctx)))
      r = ap_decide(txn, tenant, json_string_value(id), AP_CANCEL, NULL, by, reason, now_ms, NULL);
    json_decref(rec);
    if (r < 0 && r != ST_ENOTFOUND && r != AP_EDECIDED) rc = r;
  }
  json_decref(ids);
  return rc;
}

/* A user cut: their pending requests are cancelled (the held streams end
 * with the user's other exchanges) and their grants go. */
static int on_user_cut(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)kind, (void)ctx;
  const st_dir_event *ev = event;
  if (!ev || !ev->tenant || !ev->id || !name_ok(ev->id, USER_MAX)) return 0;
  int rc = cancel_pending(txn, ev->tenant, ev->id, NULL, NULL, "the requester's access ended",
                          "the requester's access was revoked", wall_ms());
  if (rc) return rc;
  char p[KEY_MAX];
  size_t pl = key(p, ev->tenant, 'g', ev->id, NULL);
  if (!pl) return 0;
  p[pl++] = 0;
  rc = st_del_prefix(txn, ST_DB_APPROVALS, p, pl, 0);
  return rc < 0 ? rc : 0;
}

static int check(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  st_cursor *c;
  st_val k, v;
  int problems = 0, rc = st_cursor_open(txn, ST_DB_APPROVALS, &c);
  if (rc) return rc;
  char msg[300];
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    const char *p = k.data;
    size_t tl = strnlen(p, k.len);
    const char *why = NULL;
    char tenant[TENANT_MAX + 1] = "";
    if (tl == 0 || tl > TENANT_MAX || tl + 2 > k.len) {
      why = "a malformed key";
    } else {
      memcpy(tenant, p, tl);
      tenant[tl] = 0;
      char kind = p[tl + 1];
      json_t *t = NULL;
      if (st_tenant_get(txn, tenant, &t) == ST_ENOTFOUND) why = "an entry of no tenant";
      json_decref(t);
      if (!why && kind == 'r') {
        json_t *rec = json_loadb(v.data, v.len, 0, NULL);
        const char *rid = json_string_value(json_object_get(rec, "id"));
        char tk[KEY_MAX];
        st_val tv;
        if (!rec || !json_is_string(json_object_get(rec, "user")) || !json_is_string(json_object_get(rec, "state")) ||
            !rid || !id_ok(rid))
          why = "a request record that does not parse";
        else if (st_get(txn, ST_DB_APPROVALS, tk,
                        time_key(tk, tenant, json_integer_value(json_object_get(rec, "created")), rid), &tv) != 0)
          why = "a request missing from the time index";
        json_decref(rec);
      } else if (!why && (kind == 'u' || kind == 'c' || kind == 'p')) {
        /* index → request */
        const char *id = p + k.len - AP_ID_LEN;
        char ids[AP_ID_LEN + 1];
        memcpy(ids, id, AP_ID_LEN);
        ids[AP_ID_LEN] = 0;
        json_t *rec = NULL;
        if (k.len < tl + 2 + AP_ID_LEN || ap_request_get(txn, tenant, ids, 0, &rec) != 0)
          why = kind == 'u' ? "a user index entry with no request"
                : kind == 'c' ? "a time index entry with no request" : "a pending index entry with no request";
        json_decref(rec);
      } else if (!why && kind != 'g') {
        why = "an entry of an unknown kind";
      }
    }
    if (why) {
      problems++;
      snprintf(msg, sizeof msg, "approvals%s%s: %s", tenant[0] ? " of tenant " : "", tenant, why);
      if (report) report(rctx, "approvals", msg);
    }
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND ? problems : rc;
}

/* rec's call is one pu (its requester's policy in force) decides below
 * approve: blocked, or its connector hidden. */
static bool blocked_for(const pol_user *pu, const json_t *rec) {
  return pol_decide(pu, json_string_value(json_object_get(rec, "connector")) ?: "",
                    json_string_value(json_object_get(rec, "tool")) ?: "") < POL_APPROVE;
}

static int cancel_blocked(st_txn *txn, const char *tenant, const char *id, int64_t now_ms) {
  int rc = ap_decide(txn, tenant, id, AP_CANCEL, NULL, AP_BLOCKED_BY, AP_BLOCKED_REASON, now_ms, NULL);
  return rc == AP_EDECIDED || rc == ST_ENOTFOUND ? 0 : rc < 0 ? rc : 1;
}

int ap_cancel_if_blocked(st_txn *txn, const char *tenant, const char *id, int64_t now_ms) {
  if (!name_ok(tenant, TENANT_MAX) || !id_ok(id)) return 0;
  json_t *rec = NULL;
  int rc = ap_request_get(txn, tenant, id, now_ms, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  pol_user *pu = NULL;
  if (!strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "pending") &&
      (rc = pol_user_load(txn, tenant, json_string_value(json_object_get(rec, "user")) ?: "", &pu)) == 0)
    rc = blocked_for(pu, rec) ? cancel_blocked(txn, tenant, id, now_ms) : 0;
  pol_user_free(pu);
  json_decref(rec);
  return rc;
}

/* a request made in the session whose id hashes to ctx (64 hex: the
 * session store's key, gateway/mcp/mcp_session.h) */
static bool in_session(st_txn *txn, const json_t *rec, void *ctx) {
  (void)txn;
  const char *sid = json_string_value(json_object_get(rec, "session"));
  uint8_t d[32];
  char hx[65];
  if (!sid || !*sid || st_sha256(sid, strlen(sid), d) != 0) return false;
  hex32(d, hx);
  return !strcmp(hx, ctx);
}

int ap_session_gone(st_txn *txn, const char *tenant, const char *user, const char *session_sha256,
                    ap_session_end why, int64_t now_ms) {
  if (!name_ok(tenant, TENANT_MAX) || !name_ok(user, USER_MAX) || !session_sha256 || strlen(session_sha256) != 64)
    return 0;
  static const char *const reasons[] = {
      [AP_SESSION_DELETED] = "their MCP session was ended (DELETE)",
      [AP_SESSION_EXPIRED] = "the MCP session it was made in expired (unused past the session idle timeout, or past "
                             "its maximum age)",
      [AP_SESSION_EVICTED] = "the MCP session it was made in was evicted (the requester opened more MCP sessions "
                             "than sessions_per_user_max allows)",
      [AP_SESSION_ENDED] = "the MCP session it was made in ended",
  };
  if ((unsigned)why > AP_SESSION_ENDED) why = AP_SESSION_ENDED;
  return cancel_pending(txn, tenant, user, in_session, (void *)session_sha256,
                        why == AP_SESSION_DELETED ? "the requester" : AP_SESSION_BY, reasons[why], now_ms);
}

/* a request whose call the requester's policy in force (ctx: a batch,
 * and the user's policy once loaded) decides below approve */
typedef struct recheck_ctx {
  const char *tenant, *user;
  pol_batch *b;
  pol_user *pu;
  int err;
} recheck_ctx;

static bool blocked_now(st_txn *txn, const json_t *rec, void *arg) {
  recheck_ctx *r = arg;
  if (r->err) return false;
  if (!r->pu) {
    if (!r->b && (r->err = pol_batch_open(txn, r->tenant, &r->b))) return false;
    if ((r->err = pol_batch_user(r->b, txn, r->user, &r->pu))) return false;
  }
  return blocked_for(r->pu, rec);
}

int ap_users_recheck(st_txn *txn, const char *tenant, const char *const *users, size_t n, int64_t now_ms) {
  if (!name_ok(tenant, TENANT_MAX)) return 0;
  recheck_ctx r = {tenant, NULL, NULL, NULL, 0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    if (!name_ok(users[i], USER_MAX)) continue;
    r.user = users[i];
    rc = cancel_pending(txn, tenant, users[i], blocked_now, &r, AP_BLOCKED_BY, AP_BLOCKED_REASON, now_ms);
    if (!rc) rc = r.err;
    pol_user_free(r.pu);
    r.pu = NULL;
  }
  pol_batch_free(r.b);
  return rc < 0 ? rc : 0;
}

/* A new policy document ends the tenant's standing grants (grant_minutes
 * windows, approvals not yet used): they were given under the rules it
 * replaces — their approvers, their minutes, the approval itself. Pending
 * requests stay, and who may decide them is asked of the policy in force
 * (reviewer_may) — but those of a call the new document blocks for their
 * requester (or whose connector it hides from them) are cancelled here
 * (fail closed: a reviewer cannot approve what can no longer be made, and
 * the held call ends at once, -32003, gateway/mcp/held.c). Bounded: the
 * tenant's pending requests (a few per user), the document compiled once,
 * one membership read per requester. */
static int on_policy_put(st_txn *txn, int kind, const void *event, void *ctx) {
  (void)kind, (void)ctx;
  const pol_event *ev = event;
  if (!ev || !name_ok(ev->tenant, TENANT_MAX)) return 0;
  char p[KEY_MAX];
  size_t pl = key(p, ev->tenant, 'g', NULL, NULL);
  int rc = pl ? st_del_prefix(txn, ST_DB_APPROVALS, p, pl, 0) : 0;
  if (rc < 0) return rc;
  int64_t now = wall_ms();
  json_t *pend = json_array();
  if (!pend) return ST_ENOMEM;
  rc = scan_index(txn, ev->tenant, 'p', now, (size_t)-1, (size_t)-1, in_state, (void *)"pending", pend);
  pol_batch *b = NULL;
  pol_user *pu = NULL;
  const char *last = NULL;
  size_t i;
  json_t *rec;
  json_array_foreach(pend, i, rec) {
    if (rc) break;
    const char *user = json_string_value(json_object_get(rec, "user")) ?: "";
    if (!b && (rc = pol_batch_open(txn, ev->tenant, &b))) break;
    if (!last || strcmp(last, user)) {
      pol_user_free(pu);
      pu = NULL;
      last = user;
      if ((rc = pol_batch_user(b, txn, user, &pu))) break;
    }
    if (blocked_for(pu, rec)) {
      int r = cancel_blocked(txn, ev->tenant, json_string_value(json_object_get(rec, "id")) ?: "", now);
      if (r < 0) rc = r;
    }
  }
  pol_user_free(pu);
  pol_batch_free(b);
  json_decref(pend);
  return rc < 0 ? rc : 0;
}

int ap_register_store(st_store *st) {
  int rc = st_purge_add(st, "approvals", purge_tenant, NULL);
  if (!rc) rc = st_check_add(st, check, NULL);
  if (!rc) rc = st_dir_hook_user_cut(st, on_user_cut, NULL);
  if (!rc) rc = st_hook_add(st, ST_EVENT_POLICY_PUT, on_policy_put, NULL);
  return rc;
}
