/* scim/resource.c — Users and Groups: storage, indexes, membership, the
 * request handlers and lifecycle events. The key layout and its encoders
 * belong to the directory (store/dir.h); this file writes through them and
 * owns the SCIM semantics on top (validation, If-Match, PATCH, lists).
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

#define E_ABORT SCIM_EABORT /* job must abort; rs holds the reply */

/* ---------- errors and replies ---------- */

void scim_resp_clear(scim_resp *rs) {
  json_decref(rs->body);
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

static int fail_store(scim_resp *rs, int rc) {
  if (rc == ST_EMAPFULL)
    scim_error(rs, 507, NULL, "the gateway's store is full; nothing was written");
  else
    scim_error(rs, 500, NULL, "store error: %s", st_strerror(rc));
  return E_ABORT;
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

/* ---------- keys ----------
 * Every key is spelled by store/dir.h's encoders (the directory owns the
 * encoding); this file only decides when to write them. */

static int res_get(st_txn *txn, const char *tenant, char type, const char *id, json_t **out) {
  return type == ST_DIR_USER ? st_dir_user_get(txn, tenant, id, out) : st_dir_group_get(txn, tenant, id, out);
}

static int put_json(st_txn *txn, st_db db, const st_dir_key *k, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) return ST_ENOMEM;
  int rc = st_put(txn, db, k->b, k->n, s, strlen(s), 0);
  free(s);
  return rc;
}

static int count_add(st_txn *txn, const char *tenant, char type, int delta) {
  st_dir_key k;
  st_dir_key_count(&k, tenant, type);
  st_val v;
  uint64_t n = 0;
  if (st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v) == 0 && v.len == 8) memcpy(&n, v.data, 8);
  n = delta < 0 && n == 0 ? 0 : n + (uint64_t)(int64_t)delta;
  return st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, &n, 8, 0);
}

static uint64_t count_get(st_txn *txn, const char *tenant, char type) {
  st_dir_key k;
  st_dir_key_count(&k, tenant, type);
  st_val v;
  uint64_t n = 0;
  if (st_get(txn, ST_DB_SCIM_IDX, k.b, k.n, &v) == 0 && v.len == 8) memcpy(&n, v.data, 8);
  return n;
}

static const char *jstr(const json_t *o, const char *k) {
  return json_string_value(scim__oget(o, k, NULL));
}

static void effective_meta(st_txn *txn, const char *tenant, json_t *o);

/* ---------- validation ---------- */

enum { T_STR, T_BOOL, T_OBJ, T_MULTI };
typedef struct attr_def {
  const char *name;
  int type;
} attr_def;

static const attr_def user_attrs[] = {
    {"userName", T_STR},      {"name", T_OBJ},         {"displayName", T_STR},
    {"nickName", T_STR},      {"profileUrl", T_STR},   {"title", T_STR},
    {"userType", T_STR},      {"preferredLanguage", T_STR}, {"locale", T_STR},
    {"timezone", T_STR},      {"active", T_BOOL},      {"externalId", T_STR},
    {"emails", T_MULTI},      {"phoneNumbers", T_MULTI}, {"ims", T_MULTI},
    {"photos", T_MULTI},      {"addresses", T_MULTI},  {"entitlements", T_MULTI},
    {"roles", T_MULTI},       {"x509Certificates", T_MULTI}, {NULL, 0}};
static const attr_def group_attrs[] = {{"displayName", T_STR}, {"externalId", T_STR}, {NULL, 0}};

static const char *canonical_urn(const char *k) {
  static const char *const urns[] = {SCIM_URN_USER, SCIM_URN_GROUP, SCIM_URN_ENTERPRISE, NULL};
  for (const char *const *u = urns; *u; u++)
    if (!strcasecmp(k, *u)) return *u;
  return k;
}

/* Builds the stored form from client input: canonical attribute names,
 * types checked, read-only and never-stored attributes dropped, nulls
 * meaning "absent". Unknown attributes and extensions are kept. */
static json_t *normalize_x(const json_t *in, bool group, bool require, scim_resp *rs);
static json_t *normalize(const json_t *in, bool group, scim_resp *rs) {
  return normalize_x(in, group, true, rs);
}
static int validate_types(const json_t *res, bool group, scim_resp *rs) {
  json_t *n = normalize_x(res, group, false, rs);
  if (!n) return E_ABORT;
  json_decref(n);
  return 0;
}
static json_t *normalize_x(const json_t *in, bool group, bool require, scim_resp *rs) {
  if (!json_is_object(in)) {
    scim_error(rs, 400, "invalidSyntax", "the body must be a JSON object");
    return NULL;
  }
  const attr_def *defs = group ? group_attrs : user_attrs;
  json_t *out = json_object();
  json_t *schemas = json_pack("[s]", group ? SCIM_URN_GROUP : SCIM_URN_USER);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)in, k, v) {
    if (!strcasecmp(k, "id") || !strcasecmp(k, "meta") || !strcasecmp(k, "schemas") ||
        !strcasecmp(k, "password") || (!group && !strcasecmp(k, "groups")) ||
        (group && !strcasecmp(k, "members")))
      continue;
    if (json_is_null(v)) continue;
    if (!strncasecmp(k, "urn:", 4)) {
      const char *urn = canonical_urn(k);
      if (!strcmp(urn, SCIM_URN_USER) || !strcmp(urn, SCIM_URN_GROUP)) {
        /* core attributes qualified with their URN as an object: merge */
        if (!json_is_object(v)) goto badtype_urn;
        json_t *sub = normalize_x(v, group, false, rs);
        if (!sub) goto fail;
        const char *sk;
        json_t *sv;
        json_object_foreach(sub, sk, sv) if (strcmp(sk, "schemas")) json_object_set(out, sk, sv);
        json_decref(sub);
        continue;
      }
      if (!json_is_object(v)) {
      badtype_urn:
        scim_error(rs, 400, "invalidValue", "extension \"%.120s\" must be an object", k);
        goto fail;
      }
      json_t *ext = json_deep_copy(v);
      /* drop nulls inside the extension too */
      const char *ek;
      json_t *ev;
      void *tmp;
      json_object_foreach_safe(ext, tmp, ek, ev) if (json_is_null(ev)) json_object_del(ext, ek);
      json_object_set_new(out, urn, ext);
      json_array_append_new(schemas, json_string(urn));
      continue;
    }
    const attr_def *d = NULL;
    for (const attr_def *a = defs; a->name; a++)
      if (!strcasecmp(a->name, k)) d = a;
    if (!d) {
      json_object_set_new(out, k, json_deep_copy(v));
      continue;
    }
    json_t *val = NULL;
    switch (d->type) {
    case T_STR:
      if (!json_is_string(v) || json_string_length(v) > 4096) goto badtype;
      val = json_incref(v);
      break;
    case T_BOOL:
      if (!(val = scim__bool_value(v))) goto badtype;
      break;
    case T_OBJ:
      if (!json_is_object(v)) goto badtype;
      val = json_deep_copy(v);
      break;
    case T_MULTI: {
      if (!json_is_array(v)) goto badtype;
      size_t i;
      json_t *e;
      json_array_foreach(v, i, e) if (!json_is_object(e)) goto badtype;
      val = json_deep_copy(v);
      break;
    }
    }
    json_object_set_new(out, d->name, val);
    continue;
  badtype:
    scim_error(rs, 400, "invalidValue", "attribute \"%s\" must be %s", d->name,
               d->type == T_STR    ? "a string"
               : d->type == T_BOOL ? "a boolean"
               : d->type == T_OBJ  ? "an object"
                                   : "an array of objects");
    goto fail;
  }
  json_object_set_new(out, "schemas", schemas);
  schemas = NULL;
  const char *req = group ? "displayName" : "userName";
  const char *rv = jstr(out, req);
  /* absent is judged at the end of a PATCH; present-but-empty right away */
  if ((require && (!rv || !*rv)) || (!require && rv && !*rv)) {
    scim_error(rs, 400, "invalidValue", "\"%s\" is required", req);
    json_decref(out);
    return NULL;
  }
  return out;
fail:
  json_decref(schemas);
  json_decref(out);
  return NULL;
}

/* ---------- rendering ---------- */

/* Attribute selection (RFC 7644 §3.4.2.5): `attributes` keeps only what
 * it names (plus id, schemas and meta, which are always returned);
 * `excludedAttributes` removes what it names (never id or schemas). Each
 * entry is {"c": extension URN or null, "a": attribute or null, "s": sub}. */
typedef struct view {
  json_t *attrs;
  json_t *excluded;
} view;

static json_t *name_list(const char *s);

static bool always_returned(const char *k) {
  return !strcasecmp(k, "id") || !strcasecmp(k, "schemas") || !strcasecmp(k, "meta");
}

static const char *ent(const json_t *e, const char *f) { return json_string_value(json_object_get(e, f)); }

/* Whether a core top-level attribute is returned at all (decides whether
 * groups/members are read). */
static bool view_wants(const view *v, const char *name) {
  size_t i;
  json_t *e;
  if (always_returned(name)) return true;
  if (v && v->excluded)
    json_array_foreach(v->excluded, i, e) if (!ent(e, "c") && ent(e, "a") && !ent(e, "s") &&
                                              !strcasecmp(ent(e, "a"), name)) return false;
  if (v && v->attrs) {
    json_array_foreach(v->attrs, i, e) if (!ent(e, "c") && ent(e, "a") && !strcasecmp(ent(e, "a"), name)) return true;
    return false;
  }
  return true;
}

/* Keeps in `val` only the listed sub-attributes (object or array of objects). */
static json_t *keep_subs(const json_t *val, json_t *subs) {
  if (json_is_array(val)) {
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(val, i, e) json_array_append_new(out, keep_subs(e, subs));
    return out;
  }
  if (!json_is_object(val)) return json_deep_copy(val);
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)val, k, v) {
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s) if (!strcasecmp(json_string_value(s), k)) json_object_set(out, k, v);
  }
  return out;
}

static void drop_sub(json_t *val, const char *sub) {
  if (json_is_array(val)) {
    size_t i;
    json_t *e;
    json_array_foreach(val, i, e) drop_sub(e, sub);
    return;
  }
  const char *k;
  if (json_is_object(val) && scim__oget(val, sub, &k)) json_object_del(val, k);
}

/* Selects from `obj` (the root when c is NULL, else an extension object)
 * what the attribute list names for container c. */
static json_t *select_in(const json_t *obj, json_t *attrs, const char *c) {
  json_t *out = json_object();
  const char *k;
  json_t *val;
  json_object_foreach((json_t *)obj, k, val) {
    bool whole = false;
    json_t *subs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(attrs, i, e) {
      const char *ec = ent(e, "c"), *ea = ent(e, "a"), *es = ent(e, "s");
      if ((c == NULL) != (ec == NULL) || (c && strcasecmp(c, ec)) || !ea || strcasecmp(ea, k)) continue;
      if (!es) whole = true;
      else json_array_append_new(subs, json_string(es));
    }
    if (whole) json_object_set(out, k, val);
    else if (json_array_size(subs)) json_object_set_new(out, k, keep_subs(val, subs));
    json_decref(subs);
  }
  return out;
}

static void view_apply(const view *v, json_t *o) {
  if (!v) return;
  const char *k;
  json_t *val;
  void *tmp;
  if (v->attrs) {
    json_t *out = json_object();
    json_t *root = select_in(o, v->attrs, NULL);
    json_object_foreach(o, k, val) {
      if (always_returned(k)) {
        json_object_set(out, k, val);
      } else if (!strncasecmp(k, "urn:", 4)) {
        bool whole = false, some = false;
        size_t i;
        json_t *e;
        json_array_foreach(v->attrs, i, e) if (ent(e, "c") && !strcasecmp(ent(e, "c"), k)) {
          some = true;
          if (!ent(e, "a")) whole = true;
        }
        if (whole) json_object_set(out, k, val);
        else if (some) json_object_set_new(out, k, select_in(val, v->attrs, k));
      } else if (json_object_get(root, k)) {
        json_object_set(out, k, json_object_get(root, k));
      }
    }
    json_decref(root);
    json_object_clear(o);
    json_object_update(o, out);
    json_decref(out);
  }
  if (v->excluded) {
    size_t i;
    json_t *e;
    json_array_foreach(v->excluded, i, e) {
      const char *ec = ent(e, "c"), *ea = ent(e, "a"), *es = ent(e, "s");
      json_t *base = o;
      if (ec) {
        const char *ck;
        if (!ea) {
          if (scim__oget(o, ec, &ck)) json_object_del(o, ck);
          continue;
        }
        base = scim__oget(o, ec, NULL);
        if (!json_is_object(base)) continue;
      }
      const char *ak;
      json_t *av = ea ? scim__oget(base, ea, &ak) : NULL;
      if (!av || (!ec && always_returned(ak))) continue;
      if (es) drop_sub(av, es);
      else json_object_del(base, ak);
    }
  }
  (void)tmp;
}

/* schemas and id first, meta last: the order people expect to read. */
static json_t *ordered(json_t *o) {
  json_t *out = json_object();
  static const char *const first[] = {"schemas", "id", "externalId", NULL};
  for (const char *const *f = first; *f; f++)
    if (json_object_get(o, *f)) json_object_set(out, *f, json_object_get(o, *f));
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) if (!json_object_get(out, k) && strcmp(k, "meta")) json_object_set(out, k, v);
  if (json_object_get(o, "meta")) json_object_set(out, "meta", json_object_get(o, "meta"));
  json_decref(o);
  return out;
}

static void location(const scim_req *rq, const char *type, const char *id, char *out, size_t n) {
  snprintf(out, n, "%s/%s/%s", rq->base_url, type, id);
}

/* The user as returned: stored attributes, meta.location, read-only groups. */
static json_t *render_user(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                           const view *v) {
  json_t *o = json_deep_copy(stored);
  const char *id = jstr(o, "id");
  json_t *meta = json_object_get(o, "meta");
  char loc[600];
  location(rq, "Users", id ? id : "", loc, sizeof loc);
  if (meta) json_object_set_new(meta, "location", json_string(loc));
  effective_meta(txn, tenant, o);
  if (id && view_wants(v, "groups")) {
    st_dir_key p;
    st_dir_key_user_group(&p, tenant, id, NULL);
    json_t *gids = json_array();
    st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, gids, 0);
    json_t *groups = json_array();
    size_t i;
    json_t *g;
    json_array_foreach(gids, i, g) {
      json_t *grp;
      if (res_get(txn, tenant, 'G', json_string_value(g), &grp) != 0) continue;
      char gl[600];
      location(rq, "Groups", json_string_value(g), gl, sizeof gl);
      json_array_append_new(groups, json_pack("{s:O,s:s,s:O?,s:s}", "value", g, "$ref", gl, "display",
                                              json_object_get(grp, "displayName"), "type", "direct"));
      json_decref(grp);
    }
    json_decref(gids);
    json_object_set_new(o, "groups", groups);
  }
  view_apply(v, o);
  return ordered(o);
}

static json_t *render_group(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                            const view *v) {
  json_t *o = json_deep_copy(stored);
  const char *id = jstr(o, "id");
  json_t *meta = json_object_get(o, "meta");
  char loc[600];
  location(rq, "Groups", id ? id : "", loc, sizeof loc);
  if (meta) json_object_set_new(meta, "location", json_string(loc));
  if (id && view_wants(v, "members")) {
    st_dir_key p;
    st_dir_key_member(&p, tenant, id, NULL);
    json_t *uids = json_array();
    st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, uids, 0);
    json_t *members = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(uids, i, u) {
      json_t *usr;
      if (res_get(txn, tenant, 'U', json_string_value(u), &usr) != 0) continue;
      char ul[600];
      location(rq, "Users", json_string_value(u), ul, sizeof ul);
      json_array_append_new(members, json_pack("{s:O,s:s,s:O?,s:s}", "value", u, "$ref", ul, "display",
                                               json_object_get(usr, "userName"), "type", "User"));
      json_decref(usr);
    }
    json_decref(uids);
    json_object_set_new(o, "members", members);
  }
  view_apply(v, o);
  return ordered(o);
}

static void reply_resource(scim_resp *rs, int status, json_t *o, const scim_req *rq, const char *type) {
  rs->status = status;
  rs->body = o;
  const char *ver = json_string_value(json_object_get(json_object_get(o, "meta"), "version"));
  if (ver) snprintf(rs->etag, sizeof rs->etag, "%s", ver);
  if (status == 201) location(rq, type, jstr(o, "id") ? jstr(o, "id") : "", rs->location, sizeof rs->location);
}

/* ---------- meta and versions ---------- */

static unsigned long version_of(const json_t *stored) {
  const char *v = json_string_value(json_object_get(json_object_get(stored, "meta"), "version"));
  unsigned long n = 0;
  if (v) sscanf(v, "W/\"%lu\"", &n);
  return n;
}

static void set_meta(json_t *o, const char *type, const char *created, const char *now,
                     unsigned long version) {
  char ver[40];
  snprintf(ver, sizeof ver, "W/\"%lu\"", version);
  json_object_set_new(o, "meta", json_pack("{s:s,s:s,s:s,s:s}", "resourceType", type, "created",
                                           created, "lastModified", now, "version", ver));
}

static void grev_get(st_txn *txn, const char *tenant, const char *uid, uint64_t *rev, char when[40]);

/* The version a client sees: for users, the record's version combined with
 * the groups revision (see touch_user); for groups, the record's. */
static void effective_version(st_txn *txn, const char *tenant, const json_t *stored, char out[48]) {
  const char *v = json_string_value(json_object_get(json_object_get(stored, "meta"), "version"));
  const char *id = json_string_value(json_object_get(stored, "id"));
  const char *rt = json_string_value(json_object_get(json_object_get(stored, "meta"), "resourceType"));
  uint64_t rev = 0;
  char when[40];
  if (id && rt && !strcmp(rt, "User")) grev_get(txn, tenant, id, &rev, when);
  if (rev) snprintf(out, 48, "W/\"%lu.%llu\"", version_of(stored), (unsigned long long)rev);
  else snprintf(out, 48, "%s", v ? v : "");
}

/* Rewrites a rendered user's meta with its effective version and time. */
static void effective_meta(st_txn *txn, const char *tenant, json_t *o) {
  json_t *meta = json_object_get(o, "meta");
  const char *id = json_string_value(json_object_get(o, "id"));
  if (!meta || !id) return;
  uint64_t rev;
  char when[40], ver[48];
  grev_get(txn, tenant, id, &rev, when);
  if (!rev) return;
  effective_version(txn, tenant, o, ver);
  json_object_set_new(meta, "version", json_string(ver));
  const char *lm = json_string_value(json_object_get(meta, "lastModified"));
  double a, b;
  /* the later of the record's change and the membership change */
  if (when[0] && (!lm || (scim__datetime(when, &b) && (!scim__datetime(lm, &a) || b > a))))
    json_object_set_new(meta, "lastModified", json_string(when));
}

/* If-Match: "*" or a list of (weak) tags; 412 when none matches. */
static int if_match_ok(st_txn *txn, const scim_req *rq, const json_t *stored, scim_resp *rs) {
  if (!rq->if_match) return 0;
  char curbuf[48];
  effective_version(txn, rq->tenant, stored, curbuf);
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
  return E_ABORT;
}

/* ---------- events ---------- */

static int emit(st_txn *txn, int kind, const scim_req *rq, const char *id, const char *name,
                const char *old_name, const json_t *added, const json_t *removed, scim_resp *rs) {
  const char *via = !strcmp(rq->method, "POST")    ? "post"
                    : !strcmp(rq->method, "PUT")   ? "put"
                    : !strcmp(rq->method, "PATCH") ? "patch"
                                                   : "delete";
  size_t na = added ? json_array_size(added) : 0, nr = removed ? json_array_size(removed) : 0;
  const char **a = na ? calloc(na, sizeof *a) : NULL, **r = nr ? calloc(nr, sizeof *r) : NULL;
  for (size_t i = 0; a && i < na; i++) a[i] = json_string_value(json_array_get(added, i));
  for (size_t i = 0; r && i < nr; i++) r[i] = json_string_value(json_array_get(removed, i));
  scim_event ev = {rq->tenant, id, name, old_name, via, a, a ? na : 0, r, r ? nr : 0};
  int rc = st_emit(txn, kind, &ev);
  free(a);
  free(r);
  if (rc < 0) {
    scim_error(rs, 500, NULL, "a lifecycle hook failed (%s); nothing was written", scim_event_name(kind));
    return E_ABORT;
  }
  return 0;
}

/* ---------- users: writes ---------- */

static int index_user(st_txn *txn, const char *tenant, const json_t *u, bool add) {
  const char *id = jstr(u, "id"), *un = jstr(u, "userName"), *ext = jstr(u, "externalId");
  st_dir_key k;
  int rc;
  st_dir_key_username(&k, tenant, un);
  rc = add ? st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, id, strlen(id), 0) : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (ext) {
    st_dir_key_external(&k, tenant, 'U', ext, id);
    rc = add ? st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, "", 0, 0) : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

static int user_create(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  json_t *u = normalize(rq->body, false, rs);
  if (!u) return E_ABORT;
  char owner[SCIM_ID_LEN + 1];
  int rc = st_dir_user_by_name(txn, rq->tenant, jstr(u, "userName"), owner);
  if (rc == 0) {
    scim_error(rs, 409, "uniqueness", "userName \"%.200s\" is already taken", jstr(u, "userName"));
    json_decref(u);
    return E_ABORT;
  }
  if (rc != ST_ENOTFOUND) goto store;
  if (!json_object_get(u, "active")) json_object_set_new(u, "active", json_true());
  json_object_set_new(u, "id", json_string(rq->new_id));
  set_meta(u, "User", rq->now, rq->now, 1);
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'U', rq->new_id);
  if ((rc = st_put(txn, ST_DB_SCIM_RES, k.b, k.n, "", 0, ST_NOOVERWRITE)) != 0) goto store;
  if ((rc = put_json(txn, ST_DB_SCIM_RES, &k, u)) || (rc = index_user(txn, rq->tenant, u, true)) ||
      (rc = count_add(txn, rq->tenant, 'U', 1)))
    goto store;
  if ((rc = emit(txn, SCIM_EV_USER_CREATED, rq, rq->new_id, jstr(u, "userName"), NULL, NULL, NULL, rs)))
    goto out;
  reply_resource(rs, 201, render_user(txn, rq, rq->tenant, u, NULL), rq, "Users");
  json_decref(u);
  return 0;
store:
  rc = fail_store(rs, rc);
out:
  json_decref(u);
  return rc;
}

/* Writes `nu` over `old` (same id), fixing indexes and emitting events. */
static int user_commit(st_txn *txn, const scim_req *rq, json_t *old, json_t *nu, scim_resp *rs) {
  const char *id = jstr(old, "id");
  char owner[SCIM_ID_LEN + 1];
  int rc;
  if (strcasecmp(jstr(old, "userName"), jstr(nu, "userName")) != 0) {
    rc = st_dir_user_by_name(txn, rq->tenant, jstr(nu, "userName"), owner);
    if (rc == 0 && strcmp(owner, id) != 0) {
      scim_error(rs, 409, "uniqueness", "userName \"%.200s\" is already taken", jstr(nu, "userName"));
      return E_ABORT;
    }
  }
  json_object_set_new(nu, "id", json_string(id));
  /* compare without meta to decide whether anything changed */
  json_t *a = json_deep_copy(old);
  json_object_del(a, "meta");
  bool changed = !json_equal(a, nu);
  json_decref(a);
  bool was = st_dir_user_record_active(old), now = st_dir_user_record_active(nu);
  if (changed) {
    const char *created = json_string_value(json_object_get(json_object_get(old, "meta"), "created"));
    set_meta(nu, "User", created ? created : rq->now, rq->now, version_of(old) + 1);
    st_dir_key k;
    st_dir_key_res(&k, rq->tenant, 'U', id);
    if ((rc = index_user(txn, rq->tenant, old, false)) || (rc = put_json(txn, ST_DB_SCIM_RES, &k, nu)) ||
        (rc = index_user(txn, rq->tenant, nu, true)))
      return fail_store(rs, rc);
    if ((rc = emit(txn, SCIM_EV_USER_CHANGED, rq, id, jstr(nu, "userName"), NULL, NULL, NULL, rs))) return rc;
    if (was && !now &&
        (rc = emit(txn, SCIM_EV_USER_DEACTIVATED, rq, id, jstr(nu, "userName"), NULL, NULL, NULL, rs)))
      return rc;
    if (!was && now &&
        (rc = emit(txn, SCIM_EV_USER_REACTIVATED, rq, id, jstr(nu, "userName"), NULL, NULL, NULL, rs)))
      return rc;
  } else {
    json_object_set(nu, "meta", json_object_get(old, "meta"));
  }
  reply_resource(rs, 200, render_user(txn, rq, rq->tenant, nu, NULL), rq, "Users");
  return 0;
}

static int user_replace(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return E_ABORT;
  }
  if (rc) return fail_store(rs, rc);
  if ((rc = if_match_ok(txn, rq, old, rs))) goto out;
  json_t *nu = normalize(rq->body, false, rs);
  if (!nu) {
    rc = E_ABORT;
    goto out;
  }
  /* a PUT that omits active leaves it unchanged */
  if (!json_object_get(nu, "active")) json_object_set(nu, "active", json_object_get(old, "active") ?: json_true());
  rc = user_commit(txn, rq, old, nu, rs);
  json_decref(nu);
out:
  json_decref(old);
  return rc;
}

static int user_patch(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return E_ABORT;
  }
  if (rc) return fail_store(rs, rc);
  if ((rc = if_match_ok(txn, rq, old, rs))) goto out;
  json_t *work = json_deep_copy(old);
  json_object_del(work, "meta");
  if (scim__patch_apply(work, rq->body, false, NULL, validate_types, NULL, rs) != 0) {
    json_decref(work);
    rc = E_ABORT;
    goto out;
  }
  json_t *nu = normalize(work, false, rs);
  json_decref(work);
  if (!nu) {
    rc = E_ABORT;
    goto out;
  }
  rc = user_commit(txn, rq, old, nu, rs);
  json_decref(nu);
out:
  json_decref(old);
  return rc;
}

static int user_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = res_get(txn, rq->tenant, 'U', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no user with id %.64s", id);
    return E_ABORT;
  }
  if (rc) return fail_store(rs, rc);
  if ((rc = if_match_ok(txn, rq, old, rs))) goto out;
  /* memberships: both directions, one event per group */
  st_dir_key p;
  st_dir_key_user_group(&p, rq->tenant, id, NULL);
  json_t *gids = json_array();
  if ((rc = st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, gids, 0))) goto store;
  json_t *removed = json_pack("[s]", id);
  size_t i;
  json_t *g;
  json_array_foreach(gids, i, g) {
    st_dir_key k;
    st_dir_key_user_group(&k, rq->tenant, id, json_string_value(g));
    if ((rc = st_del(txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) break;
    st_dir_key_member(&k, rq->tenant, json_string_value(g), id);
    if ((rc = st_del(txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) break;
    rc = 0;
    if ((rc = emit(txn, SCIM_EV_MEMBERSHIP_CHANGED, rq, json_string_value(g), NULL, NULL, NULL, removed, rs)))
      break;
  }
  json_decref(removed);
  json_decref(gids);
  if (rc == E_ABORT) goto out;
  if (rc) goto store;
  st_dir_key k;
  st_dir_key_groups_rev(&k, rq->tenant, id);
  if ((rc = st_del(txn, ST_DB_SCIM_IDX, k.b, k.n)) && rc != ST_ENOTFOUND) goto store;
  st_dir_key_res(&k, rq->tenant, 'U', id);
  if ((rc = index_user(txn, rq->tenant, old, false)) || (rc = st_del(txn, ST_DB_SCIM_RES, k.b, k.n)) ||
      (rc = count_add(txn, rq->tenant, 'U', -1)))
    goto store;
  if (st_dir_user_record_active(old) &&
      (rc = emit(txn, SCIM_EV_USER_DEACTIVATED, rq, id, jstr(old, "userName"), NULL, NULL, NULL, rs)))
    goto out;
  if ((rc = emit(txn, SCIM_EV_USER_DELETED, rq, id, jstr(old, "userName"), NULL, NULL, NULL, rs))) goto out;
  rs->status = 204;
  json_decref(old);
  return 0;
store:
  rc = fail_store(rs, rc);
out:
  json_decref(old);
  return rc;
}

/* ---------- groups: membership ---------- */

typedef struct mctx {
  st_txn *txn;
  const scim_req *rq;
  const char *gid;
  json_t *added, *removed; /* net changes, user ids */
} mctx;

static void net(json_t *to, json_t *from, const char *uid) {
  size_t i;
  json_t *e;
  json_array_foreach(from, i, e) if (!strcmp(json_string_value(e), uid)) {
    json_array_remove(from, i);
    return;
  }
  json_array_append_new(to, json_string(uid));
}

/* A user's representation includes its groups: a membership change is a
 * change of the user. Rather than rewriting the user's record for every
 * member of a PATCH, a small per-user "groups revision" (IDX t\0 'r' uid →
 * u64 revision + RFC 3339 time) moves; the user's effective meta.version is
 * W/"<record version>.<groups revision>" and lastModified the later of the
 * two (effective_meta). */
static void grev_get(st_txn *txn, const char *tenant, const char *uid, uint64_t *rev, char when[40]) {
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

static int touch_user(mctx *m, const char *uid) {
  uint64_t rev;
  char when[40], buf[48];
  grev_get(m->txn, m->rq->tenant, uid, &rev, when);
  rev++;
  size_t tl = strlen(m->rq->now);
  memcpy(buf, &rev, 8);
  memcpy(buf + 8, m->rq->now, tl);
  st_dir_key k;
  st_dir_key_groups_rev(&k, m->rq->tenant, uid);
  return st_put(m->txn, ST_DB_SCIM_IDX, k.b, k.n, buf, 8 + tl, 0);
}

static int member_add(mctx *m, const char *uid, scim_resp *rs) {
  st_dir_key k;
  st_val v;
  if (!st_dir_valid_id(uid)) goto unknown;
  st_dir_key_res(&k, m->rq->tenant, 'U', uid);
  int rc = st_get(m->txn, ST_DB_SCIM_RES, k.b, k.n, &v);
  if (rc == ST_ENOTFOUND) goto unknown;
  if (rc) return fail_store(rs, rc);
  st_dir_key_member(&k, m->rq->tenant, m->gid, uid);
  if (st_get(m->txn, ST_DB_SCIM_MEM, k.b, k.n, &v) == 0) return 0; /* already a member */
  if ((rc = st_put(m->txn, ST_DB_SCIM_MEM, k.b, k.n, "", 0, 0))) return fail_store(rs, rc);
  st_dir_key_user_group(&k, m->rq->tenant, uid, m->gid);
  if ((rc = st_put(m->txn, ST_DB_SCIM_MEM, k.b, k.n, "", 0, 0))) return fail_store(rs, rc);
  if ((rc = touch_user(m, uid))) return fail_store(rs, rc);
  net(m->added, m->removed, uid);
  return 0;
unknown:
  scim_error(rs, 400, "invalidValue", "member \"%.64s\" is not a user of this tenant", uid);
  return E_ABORT;
}

static int member_remove(mctx *m, const char *uid, scim_resp *rs) {
  st_dir_key k;
  if (!st_dir_valid_id(uid)) return 0;
  st_dir_key_member(&k, m->rq->tenant, m->gid, uid);
  int rc = st_del(m->txn, ST_DB_SCIM_MEM, k.b, k.n);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return fail_store(rs, rc);
  st_dir_key_user_group(&k, m->rq->tenant, uid, m->gid);
  if ((rc = st_del(m->txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) return fail_store(rs, rc);
  if ((rc = touch_user(m, uid))) return fail_store(rs, rc);
  net(m->removed, m->added, uid);
  return 0;
}

static json_t *current_members(mctx *m) {
  st_dir_key p;
  st_dir_key_member(&p, m->rq->tenant, m->gid, NULL);
  json_t *ids = json_array();
  st_dir_ids_under(m->txn, ST_DB_SCIM_MEM, &p, ids, 0);
  return ids;
}

/* value: array of {value:…} objects (or one object). */
static int member_values(const json_t *value, json_t *out, scim_resp *rs) {
  if (json_is_object(value)) {
    json_t *v = scim__oget(value, "value", NULL);
    if (!json_is_string(v)) goto bad;
    json_array_append(out, v);
    return 0;
  }
  if (!json_is_array(value)) goto bad;
  size_t i;
  json_t *e;
  json_array_foreach(value, i, e) {
    json_t *v = json_is_object(e) ? scim__oget(e, "value", NULL) : NULL;
    if (!json_is_string(v)) goto bad;
    json_array_append(out, v);
  }
  return 0;
bad:
  scim_error(rs, 400, "invalidValue", "members must be objects with a string \"value\" (a user id)");
  return E_ABORT;
}

static int members_op(void *ctx, const char *op, const json_t *value, const scim__filter *filter,
                      scim_resp *rs) {
  mctx *m = ctx;
  int rc = 0;
  json_t *ids = json_array();
  if (!strcmp(op, "add")) {
    if ((rc = member_values(value, ids, rs)) == 0) {
      size_t i;
      json_t *e;
      json_array_foreach(ids, i, e) if ((rc = member_add(m, json_string_value(e), rs))) break;
    }
  } else if (!strcmp(op, "replace")) {
    if (json_is_null(value)) value = NULL;
    if (!value || (rc = member_values(value, ids, rs)) == 0) {
      json_t *cur = current_members(m);
      size_t i;
      json_t *e;
      /* validate every new member first: nothing applied if one is unknown */
      json_array_foreach(cur, i, e) {
        bool keep = false;
        size_t j;
        json_t *n;
        json_array_foreach(ids, j, n) if (json_equal(n, e)) keep = true;
        if (!keep && (rc = member_remove(m, json_string_value(e), rs))) break;
      }
      if (!rc) json_array_foreach(ids, i, e) if ((rc = member_add(m, json_string_value(e), rs))) break;
      json_decref(cur);
    }
  } else { /* remove */
    if (filter) {
      /* fast path: value eq "<id>" */
      if (filter->kind == SCIM__F_CMP && filter->op == SCIM__OP_EQ && !filter->path.sub &&
          !strcasecmp(filter->path.attr, "value") && json_is_string(filter->value)) {
        rc = member_remove(m, json_string_value(filter->value), rs);
      } else {
        json_t *cur = current_members(m);
        size_t i;
        json_t *e;
        json_array_foreach(cur, i, e) {
          json_t *obj = json_pack("{s:O,s:s}", "value", e, "type", "User");
          bool hit = scim__filter_match_in(filter, obj, "members");
          json_decref(obj);
          if (hit && (rc = member_remove(m, json_string_value(e), rs))) break;
        }
        json_decref(cur);
      }
    } else if (value && !json_is_null(value)) {
      /* Entra: remove with path "members" and a value list removes those only */
      if ((rc = member_values(value, ids, rs)) == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(ids, i, e) if ((rc = member_remove(m, json_string_value(e), rs))) break;
      }
    } else {
      json_t *cur = current_members(m);
      size_t i;
      json_t *e;
      json_array_foreach(cur, i, e) if ((rc = member_remove(m, json_string_value(e), rs))) break;
      json_decref(cur);
    }
  }
  json_decref(ids);
  return rc;
}

/* ---------- groups: writes ---------- */

static int index_group(st_txn *txn, const char *tenant, const json_t *g, bool add) {
  const char *id = jstr(g, "id"), *dn = jstr(g, "displayName"), *ext = jstr(g, "externalId");
  st_dir_key k;
  int rc;
  st_dir_key_group_name(&k, tenant, dn, id);
  rc = add ? st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, "", 0, 0) : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
  if (rc && rc != ST_ENOTFOUND) return rc;
  if (ext) {
    st_dir_key_external(&k, tenant, 'G', ext, id);
    rc = add ? st_put(txn, ST_DB_SCIM_IDX, k.b, k.n, "", 0, 0) : st_del(txn, ST_DB_SCIM_IDX, k.b, k.n);
    if (rc && rc != ST_ENOTFOUND) return rc;
  }
  return 0;
}

static int emit_members(st_txn *txn, const scim_req *rq, mctx *m, const char *name, scim_resp *rs) {
  if (!json_array_size(m->added) && !json_array_size(m->removed)) return 0;
  return emit(txn, SCIM_EV_MEMBERSHIP_CHANGED, rq, m->gid, name, NULL, m->added, m->removed, rs);
}

static int group_create(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  json_t *g = normalize(rq->body, true, rs);
  if (!g) return E_ABORT;
  int rc;
  json_object_set_new(g, "id", json_string(rq->new_id));
  set_meta(g, "Group", rq->now, rq->now, 1);
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'G', rq->new_id);
  mctx m = {txn, rq, rq->new_id, json_array(), json_array()};
  if ((rc = st_put(txn, ST_DB_SCIM_RES, k.b, k.n, "", 0, ST_NOOVERWRITE)) ||
      (rc = put_json(txn, ST_DB_SCIM_RES, &k, g)) || (rc = index_group(txn, rq->tenant, g, true)) ||
      (rc = count_add(txn, rq->tenant, 'G', 1))) {
    rc = fail_store(rs, rc);
    goto out;
  }
  json_t *mem = scim__oget(rq->body, "members", NULL);
  if (mem && !json_is_null(mem) && (rc = members_op(&m, "add", mem, NULL, rs))) goto out;
  if ((rc = emit(txn, SCIM_EV_GROUP_CREATED, rq, rq->new_id, jstr(g, "displayName"), NULL, NULL, NULL, rs)) ||
      (rc = emit_members(txn, rq, &m, jstr(g, "displayName"), rs)))
    goto out;
  reply_resource(rs, 201, render_group(txn, rq, rq->tenant, g, NULL), rq, "Groups");
out:
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(g);
  return rc;
}

static int group_commit(st_txn *txn, const scim_req *rq, json_t *old, json_t *nu, mctx *m, scim_resp *rs,
                        bool members_in_reply) {
  const char *id = jstr(old, "id");
  int rc;
  json_object_set_new(nu, "id", json_string(id));
  json_t *a = json_deep_copy(old);
  json_object_del(a, "meta");
  bool changed = !json_equal(a, nu) || json_array_size(m->added) || json_array_size(m->removed);
  json_decref(a);
  if (changed) {
    const char *created = json_string_value(json_object_get(json_object_get(old, "meta"), "created"));
    set_meta(nu, "Group", created ? created : rq->now, rq->now, version_of(old) + 1);
    st_dir_key k;
    st_dir_key_res(&k, rq->tenant, 'G', id);
    if ((rc = index_group(txn, rq->tenant, old, false)) || (rc = put_json(txn, ST_DB_SCIM_RES, &k, nu)) ||
        (rc = index_group(txn, rq->tenant, nu, true)))
      return fail_store(rs, rc);
    if (strcmp(jstr(old, "displayName"), jstr(nu, "displayName")) != 0 &&
        (rc = emit(txn, SCIM_EV_GROUP_RENAMED, rq, id, jstr(nu, "displayName"), jstr(old, "displayName"),
                   NULL, NULL, rs)))
      return rc;
    if ((rc = emit_members(txn, rq, m, jstr(nu, "displayName"), rs))) return rc;
  } else {
    json_object_set(nu, "meta", json_object_get(old, "meta"));
  }
  view v = {NULL, members_in_reply ? NULL : name_list("members")};
  reply_resource(rs, 200, render_group(txn, rq, rq->tenant, nu, &v), rq, "Groups");
  json_decref(v.excluded);
  return 0;
}

static int group_write(st_txn *txn, const scim_req *rq, const char *id, bool patch, scim_resp *rs) {
  json_t *old;
  int rc = res_get(txn, rq->tenant, 'G', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no group with id %.64s", id);
    return E_ABORT;
  }
  if (rc) return fail_store(rs, rc);
  mctx m = {txn, rq, id, json_array(), json_array()};
  json_t *nu = NULL;
  if ((rc = if_match_ok(txn, rq, old, rs))) goto out;
  if (patch) {
    json_t *work = json_deep_copy(old);
    json_object_del(work, "meta");
    if (scim__patch_apply(work, rq->body, true, members_op, validate_types, &m, rs) != 0) {
      json_decref(work);
      rc = E_ABORT;
      goto out;
    }
    nu = normalize(work, true, rs);
    json_decref(work);
  } else {
    nu = normalize(rq->body, true, rs);
    if (nu) {
      /* PUT replaces everything, members included (absent = none) */
      json_t *mem = scim__oget(rq->body, "members", NULL);
      if ((rc = members_op(&m, "replace", mem && !json_is_null(mem) ? mem : NULL, NULL, rs))) goto out;
    }
  }
  if (!nu) {
    rc = E_ABORT;
    goto out;
  }
  /* Okta accepts a PATCH reply without members; a 50,000-member list in
   * every membership PATCH reply would be waste. PUT shows them. */
  rc = group_commit(txn, rq, old, nu, &m, rs, !patch);
out:
  json_decref(nu);
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(old);
  return rc;
}

static int group_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = res_get(txn, rq->tenant, 'G', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no group with id %.64s", id);
    return E_ABORT;
  }
  if (rc) return fail_store(rs, rc);
  mctx m = {txn, rq, id, json_array(), json_array()};
  if ((rc = if_match_ok(txn, rq, old, rs)) || (rc = members_op(&m, "remove", NULL, NULL, rs))) goto out;
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'G', id);
  if ((rc = index_group(txn, rq->tenant, old, false)) || (rc = st_del(txn, ST_DB_SCIM_RES, k.b, k.n)) ||
      (rc = count_add(txn, rq->tenant, 'G', -1))) {
    rc = fail_store(rs, rc);
    goto out;
  }
  if ((rc = emit_members(txn, rq, &m, jstr(old, "displayName"), rs)) ||
      (rc = emit(txn, SCIM_EV_GROUP_DELETED, rq, id, jstr(old, "displayName"), NULL, NULL, NULL, rs)))
    goto out;
  rs->status = 204;
out:
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(old);
  return rc;
}

/* ---------- reads ---------- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Finds query parameter `name` (case-insensitive), URL-decoded into out. */
static bool query_param(const char *q, const char *name, char *out, size_t cap) {
  if (!q) return false;
  size_t nl = strlen(name);
  const char *p = q;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > nl && p[nl] == '=' && !strncasecmp(p, name, nl)) {
      size_t o = 0;
      for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
        char c = p[i];
        if (c == '+') c = ' ';
        else if (c == '%' && i + 2 < len + 1 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
          c = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
          i += 2;
        }
        out[o++] = c;
      }
      out[o] = 0;
      return true;
    }
    p += len;
    if (*p) p++;
  }
  return false;
}

static json_t *name_list(const char *s) {
  json_t *a = json_array();
  const char *p = s;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ",");
    size_t m = n;
    while (m && p[m - 1] == ' ') m--;
    if (m) {
      char buf[300];
      snprintf(buf, sizeof buf, "%.*s", (int)(m < 299 ? m : 299), p);
      scim__path pa;
      char err[200];
      if (scim__path_parse(buf, &pa, err, sizeof err) == 0 && !pa.filter) {
        bool core = pa.ap.urn && (!strcmp(pa.ap.urn, SCIM_URN_USER) || !strcmp(pa.ap.urn, SCIM_URN_GROUP));
        json_t *e = json_object();
        if (pa.ap.urn && !core) json_object_set_new(e, "c", json_string(canonical_urn(pa.ap.urn)));
        if (!pa.urn_only || core) {
          if (pa.ap.attr) json_object_set_new(e, "a", json_string(pa.ap.attr));
          if (pa.ap.sub) json_object_set_new(e, "s", json_string(pa.ap.sub));
        }
        if (json_object_size(e)) json_array_append_new(a, e);
        else json_decref(e);
      }
      scim__path_free(&pa);
    }
    p += n;
  }
  return a;
}

static int parse_view(const scim_req *rq, view *v, scim_resp *rs) {
  char buf[2048];
  memset(v, 0, sizeof *v);
  if (query_param(rq->query, "attributes", buf, sizeof buf) && *buf) v->attrs = name_list(buf);
  if (query_param(rq->query, "excludedAttributes", buf, sizeof buf) && *buf) v->excluded = name_list(buf);
  (void)rs;
  return 0;
}

static void view_free(view *v) {
  json_decref(v->attrs);
  json_decref(v->excluded);
}

static int get_one(st_txn *txn, const scim_req *rq, char type, const char *id, scim_resp *rs) {
  json_t *stored;
  int rc = res_get(txn, rq->tenant, type, id, &stored);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no %s with id %.64s", type == 'U' ? "user" : "group", id);
    return 0;
  }
  if (rc) return fail_store(rs, rc);
  if (rq->if_none_match) {
    char curbuf[48];
    effective_version(txn, rq->tenant, stored, curbuf);
    const char *cur = curbuf[0] ? curbuf : NULL;
    if (cur && (!strcmp(rq->if_none_match, "*") || strstr(rq->if_none_match, cur) ||
                strstr(rq->if_none_match, cur + 2))) {
      rs->status = 304;
      snprintf(rs->etag, sizeof rs->etag, "%s", cur);
      json_decref(stored);
      return 0;
    }
  }
  view v;
  parse_view(rq, &v, rs);
  json_t *o = type == 'U' ? render_user(txn, rq, rq->tenant, stored, &v)
                          : render_group(txn, rq, rq->tenant, stored, &v);
  view_free(&v);
  json_decref(stored);
  reply_resource(rs, 200, o, rq, type == 'U' ? "Users" : "Groups");
  return 0;
}

/* Candidate ids from an indexable conjunct, or NULL when the filter needs
 * a scan. The full filter is checked on every candidate afterwards. */
static json_t *index_candidates(st_txn *txn, const char *tenant, char type, const scim__filter *f) {
  if (!f) return NULL;
  if (f->kind == SCIM__F_AND) {
    json_t *c = index_candidates(txn, tenant, type, f->a);
    return c ? c : index_candidates(txn, tenant, type, f->b);
  }
  const scim__attrpath *ap = &f->path;
  const char *attr = ap->attr, *sub = ap->sub;
  const json_t *val = f->value;
  if (f->kind == SCIM__F_VALPATH && f->a && f->a->kind == SCIM__F_CMP && !f->a->path.sub) {
    /* members[value eq "x"] */
    sub = f->a->path.attr;
    val = f->a->value;
    if (f->a->op != SCIM__OP_EQ) return NULL;
  } else if (f->kind != SCIM__F_CMP || f->op != SCIM__OP_EQ) {
    return NULL;
  }
  if (!json_is_string(val)) return NULL;
  if (ap->urn && strcasecmp(ap->urn, type == 'U' ? SCIM_URN_USER : SCIM_URN_GROUP)) return NULL;
  const char *s = json_string_value(val);
  json_t *ids = json_array();
  st_dir_key k;
  if (!sub && !strcasecmp(attr, "id")) {
    json_array_append_new(ids, json_string(s));
  } else if (!sub && type == 'U' && !strcasecmp(attr, "userName")) {
    char owner[SCIM_ID_LEN + 1];
    if (st_dir_user_by_name(txn, tenant, s, owner) == 0) json_array_append_new(ids, json_string(owner));
  } else if (!sub && !strcasecmp(attr, "externalId")) {
    st_dir_key_external(&k, tenant, type, s, NULL);
    st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, 0);
  } else if (!sub && type == 'G' && !strcasecmp(attr, "displayName")) {
    st_dir_key_group_name(&k, tenant, s, NULL);
    st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, 0);
  } else if (type == 'G' && !strcasecmp(attr, "members") && sub && !strcasecmp(sub, "value")) {
    if (st_dir_valid_id(s)) {
      st_dir_key_user_group(&k, tenant, s, NULL);
      st_dir_ids_under(txn, ST_DB_SCIM_MEM, &k, ids, 0);
    }
  } else {
    json_decref(ids);
    return NULL;
  }
  return ids;
}

static bool filter_mentions(const scim__filter *f, const char *attr) {
  if (!f) return false;
  if ((f->kind == SCIM__F_CMP || f->kind == SCIM__F_PR || f->kind == SCIM__F_VALPATH) && f->path.attr &&
      !strcasecmp(f->path.attr, attr))
    return true;
  return filter_mentions(f->a, attr) || filter_mentions(f->b, attr);
}

/* Appends the page [start, start+count) of matching resources to res and
 * returns the number of matches in *total_out. */
static void list_core(st_txn *txn, const scim_req *rq, char type, const scim__filter *f, size_t start,
                      size_t count, const view *vp, json_t *res, size_t *total_out) {
  view v = *vp;
  size_t total = 0;
  size_t have = json_array_size(res);
  count += have;
  const char *what = type == 'U' ? "groups" : "members";
  bool render_rel = filter_mentions(f, what);
  view match_view = {NULL, render_rel ? NULL : name_list(what)};
  json_t *cands = index_candidates(txn, rq->tenant, type, f);
  if (!f) {
    /* unfiltered: the counter, and a skip over the resource prefix */
    total = count_get(txn, rq->tenant, type);
    st_dir_key p;
    st_dir_key_res(&p, rq->tenant, type, "");
    st_cursor *c;
    if (st_cursor_open(txn, ST_DB_SCIM_RES, &c) == 0) {
      st_cursor_seek(c, p.b, p.n, NULL, 0);
      st_val k, val;
      size_t i = 0;
      while (json_array_size(res) < count && st_cursor_next(c, &k, &val) == 0) {
        if (++i < start) continue;
        json_t *stored = json_loadb(val.data, val.len, 0, NULL);
        if (!stored) continue;
        json_array_append_new(res, type == 'U' ? render_user(txn, rq, rq->tenant, stored, &v)
                                               : render_group(txn, rq, rq->tenant, stored, &v));
        json_decref(stored);
      }
      st_cursor_close(c);
    }
  } else {
    json_t *ids = cands;
    if (!ids) {
      /* no index applies: evaluate on every resource of the tenant */
      ids = json_array();
      st_dir_key p;
      st_dir_key_res(&p, rq->tenant, type, "");
      st_dir_ids_under(txn, ST_DB_SCIM_RES, &p, ids, 0);
    } else {
      /* index order is not id order: keep pages stable by sorting */
      size_t n = json_array_size(ids);
      for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(ids, j - 1)),
                                           json_string_value(json_array_get(ids, j))) > 0; j--) {
          json_t *a = json_incref(json_array_get(ids, j - 1));
          json_array_set(ids, j - 1, json_array_get(ids, j));
          json_array_set_new(ids, j, a);
        }
    }
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) {
      json_t *stored;
      if (res_get(txn, rq->tenant, type, json_string_value(id), &stored) != 0) continue;
      json_t *r = type == 'U' ? render_user(txn, rq, rq->tenant, stored, &match_view)
                              : render_group(txn, rq, rq->tenant, stored, &match_view);
      bool hit = scim__filter_match(f, r);
      json_decref(r);
      if (hit) {
        total++;
        if (total >= start && json_array_size(res) < count)
          json_array_append_new(res, type == 'U' ? render_user(txn, rq, rq->tenant, stored, &v)
                                                 : render_group(txn, rq, rq->tenant, stored, &v));
      }
      json_decref(stored);
    }
    json_decref(ids);
  }
  json_decref(match_view.excluded);
  *total_out = total;
}

typedef struct listq {
  char filter[4200];
  bool has_filter;
  size_t start, count;
  view v;
} listq;

static void list_reply(scim_resp *rs, size_t total, size_t start, json_t *res) {
  rs->status = 200;
  rs->body = json_pack("{s:[s],s:I,s:I,s:I,s:o}", "schemas", SCIM_URN_LIST, "totalResults",
                       (json_int_t)total, "startIndex", (json_int_t)start, "itemsPerPage",
                       (json_int_t)json_array_size(res), "Resources", res);
}

/* type 'U', 'G', or 0 for both (a search from the root: users, then groups). */
static int list(st_txn *txn, const scim_req *rq, char type, listq *q, scim_resp *rs) {
  scim__filter *f = NULL;
  char err[300];
  if (q->has_filter && *q->filter && scim__filter_parse(q->filter, &f, err, sizeof err) != 0) {
    scim_error(rs, 400, "invalidFilter", "%s", err);
    return 0;
  }
  json_t *res = json_array();
  size_t total = 0;
  if (type) {
    list_core(txn, rq, type, f, q->start, q->count, &q->v, res, &total);
  } else {
    size_t tu = 0, tg = 0;
    list_core(txn, rq, 'U', f, q->start, q->count, &q->v, res, &tu);
    size_t got = json_array_size(res);
    size_t gstart = q->start > tu ? q->start - tu : 1;
    list_core(txn, rq, 'G', f, gstart, q->count - got, &q->v, res, &tg);
    total = tu + tg;
  }
  list_reply(rs, total, q->start, res);
  scim__filter_free(f);
  return 0;
}

static int parse_paging(const scim_req *rq, size_t *start, size_t *count, scim_resp *rs) {
  char buf[64];
  *start = 1;
  *count = SCIM_DEFAULT_COUNT;
  if (query_param(rq->query, "startIndex", buf, sizeof buf)) {
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) {
      scim_error(rs, 400, "invalidValue", "startIndex must be an integer");
      return -1;
    }
    *start = v < 1 ? 1 : (size_t)v;
  }
  if (query_param(rq->query, "count", buf, sizeof buf)) {
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) {
      scim_error(rs, 400, "invalidValue", "count must be an integer");
      return -1;
    }
    *count = v < 0 ? 0 : (size_t)v;
  }
  size_t cap = rq->max_count ? rq->max_count : 1000;
  if (*count > cap) *count = cap;
  return 0;
}

/* POST …/.search (RFC 7644 §3.4.3): the query in a SearchRequest body. */
static int search(st_txn *txn, const scim_req *rq, char type, scim_resp *rs) {
  const json_t *b = rq->body;
  if (!json_is_object(b)) {
    scim_error(rs, 400, "invalidSyntax", "the body must be a SearchRequest object");
    return 0;
  }
  listq *q = calloc(1, sizeof *q);
  if (!q) return fail_store(rs, ST_ENOMEM);
  q->start = 1;
  q->count = SCIM_DEFAULT_COUNT;
  const char *k;
  json_t *v;
  const char *bad = NULL;
  json_object_foreach((json_t *)b, k, v) {
    if (!strcasecmp(k, "schemas")) continue;
    if (!strcasecmp(k, "filter")) {
      if (!json_is_string(v)) bad = "filter must be a string";
      else {
        snprintf(q->filter, sizeof q->filter, "%s", json_string_value(v));
        q->has_filter = true;
      }
    } else if (!strcasecmp(k, "startIndex")) {
      if (!json_is_integer(v)) bad = "startIndex must be an integer";
      else q->start = json_integer_value(v) < 1 ? 1 : (size_t)json_integer_value(v);
    } else if (!strcasecmp(k, "count")) {
      if (!json_is_integer(v)) bad = "count must be an integer";
      else q->count = json_integer_value(v) < 0 ? 0 : (size_t)json_integer_value(v);
    } else if (!strcasecmp(k, "attributes") || !strcasecmp(k, "excludedAttributes")) {
      if (!json_is_array(v)) {
        bad = "attributes and excludedAttributes must be arrays of strings";
        continue;
      }
      char list_s[2048] = "";
      size_t i;
      json_t *e;
      json_array_foreach(v, i, e) {
        if (!json_is_string(e)) bad = "attributes and excludedAttributes must be arrays of strings";
        else {
          size_t l = strlen(list_s);
          snprintf(list_s + l, sizeof list_s - l, "%s%s", l ? "," : "", json_string_value(e));
        }
      }
      json_t *nl = name_list(list_s);
      if (!strcasecmp(k, "attributes")) q->v.attrs = nl;
      else q->v.excluded = nl;
    } else if (!strcasecmp(k, "sortBy") || !strcasecmp(k, "sortOrder")) {
      /* sorting is not supported (ServiceProviderConfig says so): ignored */
    } else {
      bad = "unknown SearchRequest attribute";
    }
  }
  size_t cap = rq->max_count ? rq->max_count : 1000;
  if (q->count > cap) q->count = cap;
  if (bad) scim_error(rs, 400, "invalidValue", "%s", bad);
  else list(txn, rq, type, q, rs);
  view_free(&q->v);
  free(q);
  return 0;
}

/* ---------- dispatch ---------- */

int scim_handle(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  scim_resp_clear(rs);
  if (!strcmp(rq->path, "/.search")) {
    if (strcmp(rq->method, "POST")) {
      scim_error(rs, 405, NULL, ".search takes POST");
      return 0;
    }
    return search(txn, rq, 0, rs);
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
    return search(txn, rq, type, rs);
  }
  if (!strcmp(m, "GET") || !strcmp(m, "HEAD")) {
    if (id) return get_one(txn, rq, type, id, rs);
    listq *q = calloc(1, sizeof *q);
    if (!q) return fail_store(rs, ST_ENOMEM);
    if (parse_paging(rq, &q->start, &q->count, rs) == 0) {
      q->has_filter = query_param(rq->query, "filter", q->filter, sizeof q->filter);
      parse_view(rq, &q->v, rs);
      list(txn, rq, type, q, rs);
      view_free(&q->v);
    }
    free(q);
    return 0;
  }
  if (!st_txn_is_write(txn)) {
    scim_error(rs, 500, NULL, "internal: write outside the writer");
    return E_ABORT;
  }
  if (!strcmp(m, "POST")) {
    if (id) {
      scim_error(rs, 405, NULL, "POST goes to /%s, not to a resource", type == 'U' ? "Users" : "Groups");
      return E_ABORT;
    }
    return type == 'U' ? user_create(txn, rq, rs) : group_create(txn, rq, rs);
  }
  if (!id) {
    scim_error(rs, 405, NULL, "%s needs a resource id", m);
    return E_ABORT;
  }
  if (!strcmp(m, "PUT")) return type == 'U' ? user_replace(txn, rq, id, rs) : group_write(txn, rq, id, false, rs);
  if (!strcmp(m, "PATCH")) return type == 'U' ? user_patch(txn, rq, id, rs) : group_write(txn, rq, id, true, rs);
  if (!strcmp(m, "DELETE")) return type == 'U' ? user_delete(txn, rq, id, rs) : group_delete(txn, rq, id, rs);
  scim_error(rs, 405, NULL, "method %s is not supported", m);
  return E_ABORT;
}

int scim_admin_list(st_txn *txn, const char *tenant, const char *what, const char *filter, size_t start,
                    size_t count, const char *base_url, scim_resp *rs) {
  scim_req rq = {0};
  rq.tenant = tenant;
  rq.method = "GET";
  rq.base_url = base_url;
  scim_resp_clear(rs);
  listq *q = calloc(1, sizeof *q);
  if (!q) return fail_store(rs, ST_ENOMEM);
  q->start = start ? start : 1;
  q->count = count ? count : SCIM_DEFAULT_COUNT;
  if (filter) {
    snprintf(q->filter, sizeof q->filter, "%s", filter);
    q->has_filter = true;
  }
  int rc = list(txn, &rq, !strcmp(what, "Users") ? 'U' : 'G', q, rs);
  free(q);
  return rc;
}

int scim_user_lookup(st_txn *txn, const char *tenant, const char *ref, json_t **user) {
  return st_dir_user_find(txn, tenant, ref, user);
}

int scim_user_groups(st_txn *txn, const char *tenant, const char *user_id, json_t **gids) {
  return st_dir_user_groups(txn, tenant, user_id, gids);
}

bool scim_is_write_request(const scim_req *rq) {
  size_t n = strlen(rq->path);
  if (n >= 8 && !strcmp(rq->path + n - 8, "/.search")) return false;
  return scim_is_write(rq->method);
}

/* Structural twin of index_candidates: can the filter be answered from an
 * index (so the read is cheap enough for the loop thread)? */
static bool indexable(const scim__filter *f, char type) {
  if (!f) return true;
  if (f->kind == SCIM__F_AND) return indexable(f->a, type) || indexable(f->b, type);
  const char *attr = f->path.attr, *sub = f->path.sub;
  if (f->kind == SCIM__F_VALPATH && f->a && f->a->kind == SCIM__F_CMP && !f->a->path.sub &&
      f->a->op == SCIM__OP_EQ) {
    sub = f->a->path.attr;
  } else if (f->kind != SCIM__F_CMP || f->op != SCIM__OP_EQ || !json_is_string(f->value)) {
    return false;
  }
  if (f->path.urn && strcasecmp(f->path.urn, type == 'U' ? SCIM_URN_USER : SCIM_URN_GROUP)) return false;
  if (!sub && (!strcasecmp(attr, "id") || !strcasecmp(attr, "externalId"))) return true;
  if (!sub && type == 'U' && !strcasecmp(attr, "userName")) return true;
  if (!sub && type == 'G' && !strcasecmp(attr, "displayName")) return true;
  return type == 'G' && !strcasecmp(attr, "members") && sub && !strcasecmp(sub, "value");
}

bool scim_read_is_cheap(const scim_req *rq) {
  const char *p = rq->path;
  char type = !strncmp(p, "/Users", 6) ? 'U' : !strncmp(p, "/Groups", 7) ? 'G' : 0;
  size_t n = strlen(p);
  bool search = n >= 8 && !strcmp(p + n - 8, "/.search");
  if (!type && !search) return true; /* discovery */
  if (!search && (p[type == 'U' ? 6 : 7] == '/')) return true; /* one resource */
  char fbuf[4200];
  const char *fs = NULL;
  if (search) {
    json_t *f = rq->body ? scim__oget(rq->body, "filter", NULL) : NULL;
    fs = json_string_value(f);
    if (!type) return !fs; /* root search with a filter scans both types */
  } else if (query_param(rq->query, "filter", fbuf, sizeof fbuf)) {
    fs = fbuf;
  }
  if (!fs || !*fs) return true;
  scim__filter *f;
  char err[200];
  if (scim__filter_parse(fs, &f, err, sizeof err) != 0) return true; /* a 400, cheaply */
  bool ok = indexable(f, type);
  scim__filter_free(f);
  return ok;
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

static int check_scim(st_txn *txn, st_check_report_fn report, void *rctx, void *ctx) {
  (void)ctx;
  int problems = 0;
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
    char type = kp[tl + 1];
    memcpy(id, kp + tl + 2, SCIM_ID_LEN);
    id[SCIM_ID_LEN] = 0;
    json_t *r = json_loadb(v.data, v.len, 0, NULL);
    if (!r || !jstr(r, "id") || strcmp(jstr(r, "id"), id)) {
      snprintf(msg, sizeof msg, "tenant %s: resource %s does not parse or has the wrong id", tenant, id);
      if (report) report(rctx, "scim", msg);
      problems++;
      json_decref(r);
      continue;
    }
    if (type == 'U') {
      char owner[SCIM_ID_LEN + 1];
      if (!jstr(r, "userName") || st_dir_user_by_name(txn, tenant, jstr(r, "userName"), owner) || strcmp(owner, id)) {
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
  return problems;
}

void scim_register_checks(st_store *st) { st_check_add(st, check_scim, NULL); }
