/* scim/resource.c — what every SCIM resource shares, and the entry point:
 * errors and replies, ids, the stored records and counters, meta and
 * versions (ETags, If-Match, the user's groups revision), lifecycle events,
 * the request dispatch (scim_handle), the tenant purge and the index check.
 * The key layout and its encoders belong to the directory (store/dir.h);
 * scim/ writes through them and owns the SCIM semantics on top.
 *
 * The resource code is split along its seams, all sharing scim_int.h:
 *   users.c   user writes (create, replace, patch, delete) and the user indexes
 *   groups.c  group writes and membership (both directions, net changes)
 *   query.c   reads: one resource, lists and .search, index candidates
 *   pages.c   list checkpoints: where an unfiltered page may begin its walk
 *   render.c  serialisation: client JSON → stored form (normalize) and
 *             stored form → reply (attributes/excludedAttributes, groups,
 *             members, meta.location)
 *
 * Writes keep every index in the same transaction as the resource; member
 * edits touch only the keys of the members named (O(k log n) for k members
 * of an n-member group), and replace/delete walk one prefix. Reads answer
 * indexed filters (eq on userName, externalId, id, displayName,
 * members.value) from the indexes and verify each hit against the full
 * filter; any other filter is evaluated on every resource of the tenant. */
#include <ctype.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"
#include "store/text.h"
#include "store/tenant.h"

/* ---------- errors and replies ---------- */

void scim_resp_clear(scim_resp *rs) {
  json_decref(rs->body);
  json_decref(rs->cut_members);
  memset(rs, 0, sizeof *rs);
}

void scim_error(scim_resp *rs, int status, const char *type, const char *fmt, ...) {
  char detail[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  json_decref(rs->body);
  rs->body = json_object();
  char st[8];
  snprintf(st, sizeof st, "%d", status);
  json_object_set_new(rs->body, "schemas", json_pack("[s]", SCIM_URN_ERROR));
  if (type) json_object_set_new(rs->body, "scimType", json_string(type));
  json_t *d = json_string(detail);
  json_object_set_new(rs->body, "detail", d ? d : json_string("invalid request"));
  json_object_set_new(rs->body, "status", json_string(st));
  rs->status = status;
  rs->location[0] = rs->etag[0] = 0;
}

int scim__fail_store(scim_resp *rs, int rc) {
  rs->store_failed = true;
  if (rc == ST_EMAPFULL)
    scim_error(rs, 507, NULL, "the gateway's store is full; nothing was written");
  else
    scim_error(rs, 500, NULL, "store error: %s", st_strerror(rc));
  return SCIM_EABORT;
}

const char *scim_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case SCIM_EABORT: return "SCIM request failed (see its error reply)";
  case SCIM_ERANDOM: return "random number generator failed";
  default: break;
  }
  if (err <= SCIM_ERR_FIRST && err >= SCIM_ERR_LAST) return "unknown SCIM error";
  return st_strerror(err);
}

int scim_new_id(char out[SCIM_ID_LEN + 1]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return SCIM_ERANDOM;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, SCIM_ID_LEN + 1,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

bool scim_is_write(const char *m) { return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0; }

static const char *const ev_names[SCIM_EV_COUNT] = {
    "user_created",       "user_changed",  "user_deactivated", "user_reactivated", "user_deleted",
    "membership_changed", "group_created", "group_renamed",    "group_deleted"};

const char *scim_event_name(int kind) {
  int i = kind - SCIM_EV_USER_CREATED;
  return i >= 0 && i < SCIM_EV_COUNT ? ev_names[i] : "unknown";
}

/* ---------- the loop's budget (scim.h) ---------- */

bool scim__spend(const scim_req *rq, size_t n) {
  scim_budget *b = rq ? rq->budget : NULL;
  if (!b) return true;
  if (b->over || n > b->left) {
    b->over = true;
    b->left = 0;
    return false;
  }
  b->left -= n;
  return true;
}

size_t scim__budget_cap(const scim_req *rq) {
  scim_budget *b = rq ? rq->budget : NULL;
  return b ? b->left + 1 : 0;
}

/* ---------- records ----------
 * Every key is spelled by store/dir.h's encoders (the directory owns the
 * encoding); scim/ only decides when to write them. */

int scim__res_get(st_txn *txn, const char *tenant, char type, const char *id, json_t **out) {
  return type == ST_DIR_USER ? st_dir_user_get(txn, tenant, id, out) : st_dir_group_get(txn, tenant, id, out);
}

int scim__put_json(st_txn *txn, st_db db, const st_dir_key *k, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, db, k->b, k->n, s, strlen(s), 0);
  free(s);
  return rc;
}

static uint64_t u64_get(st_txn *txn, const st_dir_key *k) {
  st_val v;
  uint64_t n = 0;
  if (st_get(txn, ST_DB_SCIM_IDX, k->b, k->n, &v) == 0 && v.len == 8) memcpy(&n, v.data, 8);
  return n;
}

/* Every create and delete of a resource passes here, so the list
 * generation (store/dir.h 'w') moves with the count: a list checkpoint
 * (pages.c) taken under another generation is never used. */
int scim__count_add(st_txn *txn, const char *tenant, char type, int delta) {
  st_dir_key k;
  st_dir_key_count(&k, tenant, type);
  uint64_t n = u64_get(txn, &k);
  n = delta < 0 && n == 0 ? 0 : n + (uint64_t)(int64_t)delta;
  int rc = st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, &n, 8, 0);
  if (rc) return rc;
  st_dir_key_list_gen(&k, tenant, type);
  uint64_t g = u64_get(txn, &k) + 1;
  return st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, &g, 8, 0);
}

/* The per-tenant cap of a create (scim_req.users_max / groups_max),
 * against the count kept above: no scan. 507 Insufficient Storage, not
 * 409 (Okta reads 409 as uniqueness: "userName taken", a clash to match,
 * not a limit; shared/okta-scim.md) nor 403 (it would send the IdP's admin
 * after the token's rights): the gateway cannot store more for this
 * tenant, which the operator can change, and the detail names the key. */
int scim__count_cap(st_txn *txn, const scim_req *rq, char type, scim_resp *rs) {
  uint64_t max = type == 'U' ? rq->users_max : rq->groups_max;
  if (!max || scim__count_get(txn, rq->tenant, type) < max) return 0;
  scim_error(rs, 507, NULL,
             "this tenant holds the most %s the gateway keeps for one tenant (%llu, %s): nothing was written; "
             "delete some, or ask the gateway's operator to raise %s",
             type == 'U' ? "users" : "groups", (unsigned long long)max,
             type == 'U' ? "scim_users_per_tenant_max" : "scim_groups_per_tenant_max",
             type == 'U' ? "scim_users_per_tenant_max" : "scim_groups_per_tenant_max");
  return SCIM_EABORT;
}

uint64_t scim__list_gen_get(st_txn *txn, const char *tenant, char type) {
  st_dir_key k;
  st_dir_key_list_gen(&k, tenant, type);
  return u64_get(txn, &k);
}

uint64_t scim__count_get(st_txn *txn, const char *tenant, char type) {
  st_dir_key k;
  st_dir_key_count(&k, tenant, type);
  st_val v;
  uint64_t n = 0;
  if (st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v) == 0 && v.len == 8) memcpy(&n, v.data, 8);
  return n;
}

const char *scim__jstr(const json_t *o, const char *k) {
  return json_string_value(scim__oget(o, k, NULL));
}

/* ---------- meta and versions ---------- */

unsigned long scim__version_of(const json_t *stored) {
  const char *v = json_string_value(json_object_get(json_object_get(stored, "meta"), "version"));
  unsigned long n = 0;
  if (v) sscanf(v, "W/\"%lu\"", &n);
  return n;
}

void scim__set_meta(json_t *o, const char *type, const char *created, const char *now,
                     unsigned long version) {
  char ver[40];
  snprintf(ver, sizeof ver, "W/\"%lu\"", version);
  json_object_set_new(o, "meta", json_pack("{s:s,s:s,s:s,s:s}", "resourceType", type, "created",
                                           created, "lastModified", now, "version", ver));
}

/* A user's groups revision and its time (see touch_user in groups.c);
 * 0 and "" when its groups never changed. */
void scim__grev_get(st_txn *txn, const char *tenant, const char *uid, uint64_t *rev, char when[40]) {
  st_dir_key k;
  st_val v;
  *rev = 0;
  when[0] = 0;
  st_dir_key_groups_rev(&k, tenant, uid);
  if (st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v) == 0 && v.len >= 8) {
    memcpy(rev, v.data, 8);
    size_t n = v.len - 8 < 39 ? v.len - 8 : 39;
    memcpy(when, (const char *)v.data + 8, n);
    when[n] = 0;
  }
}

/* The version a client sees: for users, the record's version combined with
 * the groups revision (see touch_user); for groups, the record's. */
void scim__effective_version(st_txn *txn, const char *tenant, const json_t *stored, char out[48]) {
  const char *v = json_string_value(json_object_get(json_object_get(stored, "meta"), "version"));
  const char *id = json_string_value(json_object_get(stored, "id"));
  const char *rt = json_string_value(json_object_get(json_object_get(stored, "meta"), "resourceType"));
  uint64_t rev = 0;
  char when[40];
  if (id && rt && !strcmp(rt, "User")) scim__grev_get(txn, tenant, id, &rev, when);
  if (rev) snprintf(out, 48, "W/\"%lu.%llu\"", scim__version_of(stored), (unsigned long long)rev);
  else snprintf(out, 48, "%s", v ? v : "");
}

/* Rewrites a rendered user's meta with its effective version and time. */
void scim__effective_meta(st_txn *txn, const char *tenant, json_t *o) {
  json_t *meta = json_object_get(o, "meta");
  const char *id = json_string_value(json_object_get(o, "id"));
  if (!meta || !id) return;
  uint64_t rev;
  char when[40], ver[48];
  scim__grev_get(txn, tenant, id, &rev, when);
  if (!rev) return;
  scim__effective_version(txn, tenant, o, ver);
  json_object_set_new(meta, "version", json_string(ver));
  const char *lm = json_string_value(json_object_get(meta, "lastModified"));
  double a, b;
  /* the later of the record's change and the membership change */
  if (when[0] && (!lm || (scim__datetime(when, &b) && (!scim__datetime(lm, &a) || b > a))))
    json_object_set_new(meta, "lastModified", json_string(when));
}

/* If-Match: "*" or a list of (weak) tags; 412 when none matches. */
int scim__if_match_ok(st_txn *txn, const scim_req *rq, const json_t *stored, scim_resp *rs) {
  if (!rq->if_match) return 0;
  char curbuf[48];
  scim__effective_version(txn, rq->tenant, stored, curbuf);
  const char *cur = curbuf;
  const char *p = rq->if_match;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    size_t n = strcspn(p, ",");
    while (n && p[n - 1] == ' ') n--;
    if (n == 1 && *p == '*') return 0;
    const char *a = p, *b = cur ? cur : "";
    size_t an = n;
    if (an > 2 && !strncmp(a, "W/", 2)) {
      a += 2;
      an -= 2;
    }
    if (!strncmp(b, "W/", 2)) b += 2;
    if (an == strlen(b) && !strncmp(a, b, an)) return 0;
    p += strcspn(p, ",");
  }
  scim_error(rs, 412, NULL, "the resource changed: If-Match does not match version %s", cur ? cur : "");
  return SCIM_EABORT;
}

/* ---------- events ---------- */

const char *scim_via(const scim_req *rq) {
  return !strcmp(rq->method, "POST")    ? "post"
         : !strcmp(rq->method, "PUT")   ? "put"
         : !strcmp(rq->method, "PATCH") ? "patch"
                                        : "delete";
}

int scim__emit(st_txn *txn, int kind, const scim_req *rq, const char *id, const char *name,
                const char *old_name, const json_t *added, const json_t *removed, scim_resp *rs) {
  const char *via = scim_via(rq);
  size_t na = added ? json_array_size(added) : 0, nr = removed ? json_array_size(removed) : 0;
  const char **a = na ? calloc(na, sizeof *a) : NULL, **r = nr ? calloc(nr, sizeof *r) : NULL;
  for (size_t i = 0; a && i < na; i++) a[i] = json_string_value(json_array_get(added, i));
  for (size_t i = 0; r && i < nr; i++) r[i] = json_string_value(json_array_get(removed, i));
  scim_event ev = {rq->tenant, id, name, old_name, via, a, a ? na : 0, r, r ? nr : 0};
  int rc = st_emit(txn, kind, &ev);
  free(a);
  free(r);
  /* a hook that ran out of store is the store being full, not a broken hook */
  if (rc == ST_EMAPFULL) return scim__fail_store(rs, rc);
  if (rc < 0) {
    /* the write failed (not the request): what it takes away goes anyway */
    rs->store_failed = true;
    scim_error(rs, 500, NULL, "a lifecycle hook failed (%s); nothing was written", scim_event_name(kind));
    return SCIM_EABORT;
  }
  return 0;
}

/* ---------- dispatch ---------- */

const char *scim_allowed_methods(const char *p) {
  static const char *const collection = "GET, HEAD, POST", *const resource = "GET, HEAD, PUT, PATCH, DELETE",
                           *const search = "POST", *const read_only = "GET, HEAD";
  if (!strcmp(p, "/.search")) return search;
  if (!strcmp(p, "/ServiceProviderConfig")) return read_only;
  if ((!strncmp(p, "/ResourceTypes", 14) && (!p[14] || p[14] == '/')) ||
      (!strncmp(p, "/Schemas", 8) && (!p[8] || p[8] == '/')))
    return read_only; /* scim__discovery: an unknown id is its 404 */
  size_t n = !strncmp(p, "/Users", 6) ? 6 : !strncmp(p, "/Groups", 7) ? 7 : 0;
  if (!n || (p[n] && p[n] != '/')) return NULL;
  if (!p[n]) return collection;
  const char *id = p + n + 1;
  if (!*id || strchr(id, '/')) return NULL;
  return strcmp(id, ".search") ? resource : search;
}

bool scim_method_allowed(const char *path, const char *method) {
  const char *a = scim_allowed_methods(path);
  size_t ml = strlen(method);
  for (const char *t = a; t && *t;) {
    size_t tl = strcspn(t, ",");
    if (tl == ml && !strncmp(t, method, ml)) return true;
    t += tl;
    while (*t == ',' || *t == ' ') t++;
  }
  return false;
}

int scim_handle(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  scim_resp_clear(rs);
  if (!strcmp(rq->path, "/.search")) {
    if (strcmp(rq->method, "POST")) {
      scim_error(rs, 405, NULL, ".search takes POST");
      return 0;
    }
    return scim__search(txn, rq, 0, rs);
  }
  if (scim__discovery(rq, rs)) return 0;
  const char *p = rq->path;
  char type;
  if (!strncmp(p, "/Users", 6) && (p[6] == 0 || p[6] == '/')) {
    type = 'U';
    p += 6;
  } else if (!strncmp(p, "/Groups", 7) && (p[7] == 0 || p[7] == '/')) {
    type = 'G';
    p += 7;
  } else {
    scim_error(rs, 404, NULL, "no such SCIM endpoint: %.100s", rq->path);
    return 0;
  }
  const char *id = *p == '/' ? p + 1 : NULL;
  if (id && (!*id || strchr(id, '/'))) {
    scim_error(rs, 404, NULL, "no such SCIM endpoint: %.100s", rq->path);
    return 0;
  }
  const char *m = rq->method;
  if (id && !strcmp(id, ".search")) {
    if (strcmp(m, "POST")) {
      scim_error(rs, 405, NULL, ".search takes POST");
      return 0;
    }
    return scim__search(txn, rq, type, rs);
  }
  if (!strcmp(m, "GET") || !strcmp(m, "HEAD")) {
    if (id) return scim__get_one(txn, rq, type, id, rs);
    return scim__list_get(txn, rq, type, rs);
  }
  if (!st_txn_is_write(txn)) {
    scim_error(rs, 500, NULL, "internal: write outside the writer");
    return SCIM_EABORT;
  }
  if ((!strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH")) &&
      !scim__names_unique(rq->body, type == 'G', !strcmp(m, "PATCH"), rs))
    return SCIM_EABORT;
  if (!strcmp(m, "POST")) {
    if (id) {
      scim_error(rs, 405, NULL, "POST goes to /%s, not to a resource", type == 'U' ? "Users" : "Groups");
      return SCIM_EABORT;
    }
    return type == 'U' ? scim__user_create(txn, rq, rs) : scim__group_create(txn, rq, rs);
  }
  if (!id) {
    scim_error(rs, 405, NULL, "%s needs a resource id", m);
    return SCIM_EABORT;
  }
  if (!strcmp(m, "PUT")) return type == 'U' ? scim__user_replace(txn, rq, id, rs) : scim__group_write(txn, rq, id, false, rs);
  if (!strcmp(m, "PATCH")) return type == 'U' ? scim__user_patch(txn, rq, id, rs) : scim__group_write(txn, rq, id, true, rs);
  if (!strcmp(m, "DELETE")) return type == 'U' ? scim__user_delete(txn, rq, id, rs) : scim__group_delete(txn, rq, id, rs);
  scim_error(rs, 405, NULL, "method %s is not supported", m);
  return SCIM_EABORT;
}

int scim_user_lookup(st_txn *txn, const char *tenant, const char *ref, json_t **user) {
  return st_dir_user_find(txn, tenant, ref, user);
}

int scim_user_groups(st_txn *txn, const char *tenant, const char *user_id, json_t **gids) {
  return st_dir_user_groups(txn, tenant, user_id, gids);
}

/* ---------- size bounds (scim.h) ---------- */

typedef struct weight {
  size_t values, bytes;
} weight;

static bool over(const weight *w) { return w->values > SCIM_RES_VALUES_MAX || w->bytes > SCIM_RES_BYTES_MAX; }

/* Adds v's values and bytes to w; stops once over the bounds. */
static void weigh(const json_t *v, weight *w) {
  w->values++;
  if (json_is_string(v)) w->bytes += json_string_length(v);
  const char *k;
  json_t *e;
  size_t i;
  if (json_is_object(v))
    json_object_foreach((json_t *)v, k, e) {
      if (over(w)) return;
      w->bytes += strlen(k);
      weigh(e, w);
    }
  else if (json_is_array(v))
    json_array_foreach(v, i, e) {
      if (over(w)) return;
      weigh(e, w);
    }
}

int scim__name_kind(const char *name, bool group) {
  const char *core = group ? SCIM_URN_GROUP : SCIM_URN_USER;
  const char *skip = group ? "members" : "groups";
  size_t cl = strlen(core), sl = strlen(skip);
  if (!strncasecmp(name, core, cl)) {
    if (!name[cl]) return SCIM__NAME_CORE;
    if (name[cl] != ':') return SCIM__NAME_STORED;
    name += cl + 1; /* urn:…:core:2.0:Group:members is members */
  }
  if (!strncasecmp(name, skip, sl) && (!name[sl] || name[sl] == '[' || name[sl] == '.')) return SCIM__NAME_SKIP;
  return SCIM__NAME_STORED;
}

int scim__key_kind(const char *key, bool group, bool body) {
  const char *core = group ? SCIM_URN_GROUP : SCIM_URN_USER;
  const char *skip = group ? "members" : "groups";
  size_t cl = strlen(core);
  if (!strcasecmp(key, core)) return SCIM__NAME_CORE;
  if (!strcasecmp(key, skip)) return SCIM__NAME_SKIP;
  /* "urn:…:core:2.0:Group:members" as a key: a PATCH value's member
   * references; a POST's or PUT's extension (normalize keeps it) */
  if (!body && !strncasecmp(key, core, cl) && key[cl] == ':' && !strcasecmp(key + cl + 1, skip))
    return SCIM__NAME_SKIP;
  return SCIM__NAME_STORED;
}

/* An object of attributes (a POST or PUT body — body —, a path-less PATCH
 * value, the core schema's URN object inside them), counted as one value:
 * what never enters the record (scim__key_kind: the attribute itself, not
 * a key that only begins like it) aside. */
static void weigh_attrs(const json_t *o, bool group, bool body, weight *w) {
  const char *k;
  json_t *e;
  w->values++;
  json_object_foreach((json_t *)o, k, e) {
    if (over(w)) return;
    w->bytes += strlen(k);
    int kind = scim__key_kind(k, group, body);
    if (kind == SCIM__NAME_SKIP) continue;
    if (kind == SCIM__NAME_CORE && json_is_object(e)) weigh_attrs(e, group, body, w);
    else weigh(e, w);
  }
}

static void too_large(scim_resp *rs) {
  scim_error(rs, 413, NULL,
             "a user or group may hold at most %d JSON values and %d KiB of names and strings (its members aside); "
             "nothing was written",
             SCIM_RES_VALUES_MAX, SCIM_RES_BYTES_MAX / 1024);
}

bool scim_write_too_large(const scim_req *rq, scim_resp *rs) {
  const json_t *b = rq->body;
  if (!json_is_object(b)) return false;
  bool groups = !strncasecmp(rq->path, "/Groups", 7);
  /* what never enters the stored record: a group's members (the
   * membership index holds them) and a user's read-only "groups", which
   * Okta's PUT carries whole — a deactivation of a user in thousands of
   * groups must not be refused for it —, however named: "members",
   * "urn:…:core:2.0:Group:members", or inside the core URN's object
   * (scim__name_kind for a PATCH path, scim__key_kind for a key); one
   * spelling is never weighed where another is not, and what the record
   * keeps ("groups.x", an extension named "urn:…:User:groups") is
   * weighed */
  weight w = {0, 0};
  json_t *ops = strcmp(rq->method, "PATCH") ? NULL : scim__oget(b, "Operations", NULL);
  if (!json_is_array(ops)) {
    weigh_attrs(b, groups, true, &w);
  } else {
    /* a PATCH: the values it may bring into the resource (how many
     * operations, and what they cost, is patch.c's bound) */
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o) {
      if (over(&w)) break;
      const char *path = json_string_value(scim__oget(o, "path", NULL));
      json_t *value = scim__oget(o, "value", NULL);
      if (!value) continue;
      int kind = path && *path ? scim__name_kind(path, groups) : SCIM__NAME_CORE;
      if (kind == SCIM__NAME_SKIP) continue;
      if (kind == SCIM__NAME_CORE && json_is_object(value)) weigh_attrs(value, groups, false, &w);
      else weigh(value, &w);
    }
  }
  if (!over(&w)) return false;
  too_large(rs);
  return true;
}

bool scim__grew_too_large(const json_t *old, const json_t *nu, scim_resp *rs) {
  weight n = {0, 0}, o = {0, 0};
  weigh(nu, &n);
  if (!over(&n)) return false;
  if (!old) {
    too_large(rs);
    return true;
  }
  weigh(old, &o);
  if (n.values <= o.values && n.bytes <= o.bytes) return false;
  too_large(rs);
  return true;
}

bool scim_is_write_request(const scim_req *rq) {
  size_t n = strlen(rq->path);
  if (n >= 8 && !strcmp(rq->path + n - 8, "/.search")) return false;
  return scim_is_write(rq->method);
}

/* ---------- tenant purge and checks ---------- */

int scim_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  static const st_db dbs[] = {ST_DB_SCIM_MEM, ST_DB_SCIM_IDX, ST_DB_SCIM_RES};
  st_dir_key p;
  st_dir_key_tenant(&p, tenant);
  int n = 0;
  for (size_t d = 0; d < 3 && n < limit; d++) {
    int m = st_del_prefix(txn, dbs[d], p.b, p.n, limit - n);
    if (m < 0) return m;
    n += m;
  }
  return n;
}

int scim_register_purge(st_store *st) { return st_purge_add(st, "scim", scim_purge_tenant, NULL); }

/* Keys come grouped by tenant: the purging answer of the last tenant seen
 * is reused until the tenant changes. */
typedef struct purge_memo {
  char tenant[64];
  bool purging;
} purge_memo;

static bool purging(st_txn *txn, purge_memo *m, const char *tenant) {
  if (strcmp(m->tenant, tenant) != 0) {
    snprintf(m->tenant, sizeof m->tenant, "%s", tenant);
    m->purging = st_tenant_purging(txn, tenant);
  }
  return m->purging;
}

/* Resources parse and sit in their indexes; memberships have their twins.
 * A tenant being purged (deleting) is skipped: its purge removes the
 * databases one after another, so half of it may be gone. */
static int check_scim(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
  purge_memo memo = {"", false};
  char msg[300];
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_SCIM_RES, &c)) return -1;
  st_val k, v;
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl >= k.len || k.len != tl + 2 + SCIM_ID_LEN) {
      if (report) report(rctx, "scim", "malformed resource key");
      problems++;
      continue;
    }
    char tenant[64], id[SCIM_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (purging(txn, &memo, tenant)) continue;
    char type = kp[tl + 1];
    memcpy(id, kp + tl + 2, SCIM_ID_LEN);
    id[SCIM_ID_LEN] = 0;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (!r || !scim__jstr(r, "id") || strcmp(scim__jstr(r, "id"), id)) {
      snprintf(msg, sizeof msg, "tenant %s: resource %s does not parse or has the wrong id", tenant, id);
      if (report) report(rctx, "scim", msg);
      problems++;
      json_decref(r);
      continue;
    }
    if (type == 'U') {
      char owner[SCIM_ID_LEN + 1];
      json_t *other = NULL;
      /* missing because another user holds the name (two users of a store
       * written before migration 13 whose names only now fold alike: the
       * migration logged both) is what the migration left, not damage */
      bool shared = scim__jstr(r, "userName") &&
                    st_dir_user_by_name(txn, tenant, scim__jstr(r, "userName"), owner) == 0 && strcmp(owner, id) &&
                    st_dir_user_get(txn, tenant, owner, &other) == 0 && scim__jstr(other, "userName") &&
                    st_text_fold_eq(scim__jstr(other, "userName"), scim__jstr(r, "userName")) &&
                    strcmp(scim__jstr(other, "userName"), scim__jstr(r, "userName")) != 0;
      json_decref(other);
      if (!shared && (!scim__jstr(r, "userName") || st_dir_user_by_name(txn, tenant, scim__jstr(r, "userName"), owner) ||
                      strcmp(owner, id))) {
        snprintf(msg, sizeof msg, "tenant %s: user %s is missing from the userName index", tenant, id);
        if (report) report(rctx, "scim", msg);
        problems++;
      }
    }
    json_decref(r);
  }
  st_cursor_close(c);
  /* membership: every m entry has its g twin */
  if (st_cursor_open(txn, ST_DB_SCIM_MEM, &c)) return problems + 1;
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 + 2 * SCIM_ID_LEN + 1 != k.len) {
      if (report) report(rctx, "scim", "malformed membership key");
      problems++;
      continue;
    }
    char tenant[64], a[SCIM_ID_LEN + 1], b[SCIM_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (purging(txn, &memo, tenant)) continue;
    char dir = kp[tl + 1];
    memcpy(a, kp + tl + 2, SCIM_ID_LEN);
    a[SCIM_ID_LEN] = 0;
    memcpy(b, kp + tl + 3 + SCIM_ID_LEN, SCIM_ID_LEN);
    b[SCIM_ID_LEN] = 0;
    st_dir_key t;
    if (dir == 'm') st_dir_key_user_group(&t, tenant, b, a);
    else st_dir_key_member(&t, tenant, b, a);
    st_val tv;
    if (st_get(txn, ST_DB_SCIM_MEM, t.b, t.n, &tv) != 0) {
      snprintf(msg, sizeof msg, "tenant %s: membership %s/%s has no reverse entry", tenant, a, b);
      if (report) report(rctx, "scim", msg);
      problems++;
    }
  }
  st_cursor_close(c);
  /* admin blocks (store/dir.h 'b'): each names a user that exists */
  if (st_cursor_open(txn, ST_DB_SCIM_IDX, &c)) return problems + 1;
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 > k.len || kp[tl + 1] != 'b') continue;
    char tenant[64], uid[SCIM_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (purging(txn, &memo, tenant)) continue;
    snprintf(uid, sizeof uid, "%.*s", (int)(k.len - tl - 2), kp + tl + 2);
    json_t *u = NULL;
    if (k.len != tl + 2 + SCIM_ID_LEN || st_dir_user_get(txn, tenant, uid, &u) != 0) {
      snprintf(msg, sizeof msg, "tenant %s: a block names user %s, who does not exist", tenant, uid);
      if (report) report(rctx, "scim", msg);
      problems++;
    }
    json_decref(u);
  }
  st_cursor_close(c);
  return problems;
}

/* The indexes against the records (check_scim checks records → indexes):
 * every index entry names a resource that exists and whose attribute it
 * indexes is what the entry says (compared as the encoder writes it, so a
 * hashed long value is compared hashed); the counts equal the records;
 * every membership entry names a user and a group that exist. */
static bool key_is(const st_dir_key *want, const st_val *k) {
  return !want->overflow && want->n == k->len && !memcmp(want->b, k->data, k->len);
}

static void tally(json_t *counts, const char *tenant, int which) {
  json_t *t = json_object_get(counts, tenant);
  if (!t) {
    t = json_pack("[i,i]", 0, 0);
    json_object_set_new(counts, tenant, t);
  }
  json_array_set_new(t, (size_t)which, json_integer(json_integer_value(json_array_get(t, (size_t)which)) + 1));
}

static int check_scim_index(st_txn *txn, st_check_report_fn report, void *rctx) {
  int problems = 0;
  purge_memo memo = {"", false};
  char msg[400];
  json_t *counts = json_object();
  st_cursor *c;
  st_val k, v;
  /* the records' counts per tenant */
  if (st_cursor_open(txn, ST_DB_SCIM_RES, &c)) {
    json_decref(counts);
    return -1;
  }
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (k.len != tl + 2 + SCIM_ID_LEN) continue; /* reported by check_scim */
    char tenant[64];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    tally(counts, tenant, kp[tl + 1] == 'U' ? 0 : 1);
  }
  st_cursor_close(c);
  if (st_cursor_open(txn, ST_DB_SCIM_IDX, &c)) {
    json_decref(counts);
    return problems + 1;
  }
  while (st_cursor_next(c, &k, &v) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 > k.len) continue;
    char tenant[64];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (purging(txn, &memo, tenant)) continue;
    char kind = kp[tl + 1];
    const char *why = NULL;
    char id[SCIM_ID_LEN + 1] = "";
    st_dir_key want;
    json_t *r = NULL;
    if (kind == 'u') {
      snprintf(id, sizeof id, "%.*s", (int)(v.len < SCIM_ID_LEN ? v.len : SCIM_ID_LEN), (const char *)v.data);
      if (v.len != SCIM_ID_LEN || st_dir_user_get(txn, tenant, id, &r) != 0) why = "a userName index entry names no user";
      else {
        st_dir_key_username(&want, tenant, scim__jstr(r, "userName") ?: "");
        if (!key_is(&want, &k)) why = "a userName index entry does not match the user's userName";
      }
    } else if (kind == 'e' || kind == 'd') {
      char type = kind == 'd' ? ST_DIR_GROUP : (k.len > tl + 2 ? kp[tl + 2] : 0);
      if (k.len < tl + 3 + SCIM_ID_LEN || kp[k.len - SCIM_ID_LEN - 1] != 0) {
        why = "a malformed index key";
      } else {
        memcpy(id, kp + k.len - SCIM_ID_LEN, SCIM_ID_LEN);
        id[SCIM_ID_LEN] = 0;
        int grc = type == ST_DIR_GROUP ? st_dir_group_get(txn, tenant, id, &r) : st_dir_user_get(txn, tenant, id, &r);
        if (grc != 0) {
          why = kind == 'd' ? "a displayName index entry names no group" : "an externalId index entry names no resource";
        } else {
          if (kind == 'd') st_dir_key_group_name(&want, tenant, scim__jstr(r, "displayName") ?: "", id);
          else st_dir_key_external(&want, tenant, type, scim__jstr(r, "externalId") ?: "", id);
          if (!key_is(&want, &k))
            why = kind == 'd' ? "a displayName index entry does not match the group's displayName"
                              : "an externalId index entry does not match the resource's externalId";
        }
      }
    } else if (kind == 'n' && k.len == tl + 3) {
      uint64_t n = 0;
      const uint8_t *p = v.data;
      for (size_t i = 0; i < 8 && i < v.len; i++) n |= (uint64_t)p[i] << (8 * i);
      int which = kp[tl + 2] == 'U' ? 0 : 1;
      json_int_t have = json_integer_value(json_array_get(json_object_get(counts, tenant), (size_t)which));
      if (v.len != 8 || (json_int_t)n != have) {
        snprintf(msg, sizeof msg, "tenant %s: the %s count says %llu, %lld records exist", tenant,
                 which ? "group" : "user", (unsigned long long)n, (long long)have);
        if (report) report(rctx, "scim", msg);
        problems++;
      }
    }
    json_decref(r);
    if (why) {
      snprintf(msg, sizeof msg, "tenant %s: %s%s%s", tenant, why, id[0] ? " " : "", id);
      if (report) report(rctx, "scim", msg);
      problems++;
    }
  }
  st_cursor_close(c);
  json_decref(counts);
  /* membership: both ends exist */
  if (st_cursor_open(txn, ST_DB_SCIM_MEM, &c)) return problems + 1;
  while (st_cursor_next(c, &k, NULL) == 0) {
    const char *kp = k.data;
    size_t tl = strnlen(kp, k.len);
    if (tl + 2 + 2 * SCIM_ID_LEN + 1 != k.len) continue; /* reported by check_scim */
    char tenant[64], a[SCIM_ID_LEN + 1], b[SCIM_ID_LEN + 1];
    snprintf(tenant, sizeof tenant, "%.*s", (int)tl, kp);
    if (purging(txn, &memo, tenant)) continue;
    memcpy(a, kp + tl + 2, SCIM_ID_LEN);
    a[SCIM_ID_LEN] = 0;
    memcpy(b, kp + tl + 3 + SCIM_ID_LEN, SCIM_ID_LEN);
    b[SCIM_ID_LEN] = 0;
    const char *gid = kp[tl + 1] == 'm' ? a : b, *uid = kp[tl + 1] == 'm' ? b : a;
    json_t *u = NULL;
    bool ok = st_dir_group_exists(txn, tenant, gid) == 0 && st_dir_user_get(txn, tenant, uid, &u) == 0;
    json_decref(u);
    if (!ok) {
      snprintf(msg, sizeof msg, "tenant %s: membership of user %s in group %s names one that does not exist", tenant,
               uid, gid);
      if (report) report(rctx, "scim", msg);
      problems++;
    }
  }
  st_cursor_close(c);
  return problems;
}

static int check_scim_all(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  int a = check_scim(txn, report, rctx, ctx);
  int b = check_scim_index(txn, report, rctx);
  if (a < 0) return a;
  return b < 0 ? b : a + b;
}

void scim_register_checks(st_store *st) { st_check_add(st, check_scim_all, NULL); }
