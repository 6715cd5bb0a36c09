/* scim/render.c — serialisation of SCIM resources, both ways: client JSON
 * to the stored form (normalize: canonical attribute names, types checked,
 * read-only attributes dropped) and the stored form to a reply
 * (render_user/render_group: groups or members from the directory,
 * meta.location, the effective meta, attribute selection per RFC 7644
 * §3.4.2.5, a readable key order) — and a group write's members listed
 * after its commit, off the store writer (scim_reply_members). See
 * resource.c for the shared parts. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"

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
json_t *scim__normalize(const json_t *in, bool group, scim_resp *rs) {
  return normalize_x(in, group, true, rs);
}
int scim__validate_types(const json_t *res, bool group, scim_resp *rs) {
  json_t *n = normalize_x(res, group, false, rs);
  if (!n) return SCIM_EABORT;
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
        /* an extension inside it lands beside the core attributes: its
         * URN goes into schemas too (else a PUT of what we render would
         * add it, and the two renderings differ) */
        size_t si;
        json_t *su;
        json_array_foreach(json_object_get(sub, "schemas"), si, su) {
          if (si == 0) continue; /* the core URN */
          bool have = false;
          size_t sj;
          json_t *sh;
          json_array_foreach(schemas, sj, sh) have = have || json_equal(sh, su);
          if (!have) json_array_append(schemas, su);
        }
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
  const char *rv = scim__jstr(out, req);
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

/* ---------- one name, one spelling ----------
 * SCIM attribute names are case-insensitive: {"active":false,"Active":true}
 * names "active" twice, which the strict JSON parse (exact duplicates)
 * cannot see; whichever spelling a reader met last (or first) won. A
 * write body that does so is refused. Walked: every object of the body
 * (a group's members and a user's read-only groups aside: not stored,
 * each member read by its "value"), the core schema's URN-qualified names
 * against the plain ones they alias, and for a PATCH every operation and
 * its value (member values aside). Bounded by scim_write_too_large. */

/* Adds name (lower-cased) to set; false when it was there already. */
static bool name_add(json_t *set, const char *name, const char **dup) {
  char *low = strdup(name);
  if (!low) return true; /* no memory to compare: the parse's own rules stand */
  for (char *p = low; *p; p++) *p = (char)tolower((unsigned char)*p);
  bool fresh = !json_object_get(set, low);
  if (fresh) json_object_set_new(set, low, json_true());
  else *dup = name;
  free(low);
  return fresh;
}

/* Every object in v (v included) names each member once. */
static bool nested_unique(const json_t *v, const char **dup) {
  const char *k;
  json_t *e;
  size_t i;
  if (json_is_array(v)) {
    json_array_foreach(v, i, e) if (!nested_unique(e, dup)) return false;
    return true;
  }
  if (!json_is_object(v)) return true;
  json_t *set = json_object();
  bool ok = true;
  json_object_foreach((json_t *)v, k, e) if (!name_add(set, k, dup) || !nested_unique(e, dup)) {
    ok = false;
    break;
  }
  json_decref(set);
  return ok;
}

/* A resource's attributes (a POST/PUT body, a path-less PATCH value):
 * each once, the core URN's qualified forms ("urn:…:User:active", or the
 * keys of "urn:…:User": {…}) counting as the plain names; skip (NULL:
 * none) is left out, values too. */
static bool attrs_unique(const json_t *o, bool group, const char *skip, const char **dup) {
  const char *core = group ? SCIM_URN_GROUP : SCIM_URN_USER;
  size_t cl = strlen(core);
  json_t *set = json_object();
  const char *k;
  json_t *v;
  bool ok = true;
  json_object_foreach((json_t *)o, k, v) {
    if (skip && !strcasecmp(k, skip)) continue;
    if (!strncasecmp(k, core, cl) && (k[cl] == 0 || k[cl] == ':')) {
      if (k[cl] == ':') ok = name_add(set, k + cl + 1, dup);
      else if (json_is_object(v)) {
        const char *sk;
        json_t *sv;
        json_object_foreach(v, sk, sv) if (!(skip && !strcasecmp(sk, skip)) && !(ok = name_add(set, sk, dup))) break;
      } else ok = name_add(set, k, dup);
    } else {
      ok = name_add(set, k, dup);
    }
    if (!ok) break;
  }
  json_decref(set);
  if (!ok) return false;
  /* inside: every object (the skipped attribute's aside) */
  json_object_foreach((json_t *)o, k, v) {
    if (skip && !strcasecmp(k, skip)) continue;
    if (!strncasecmp(k, core, cl) && k[cl] == 0 && json_is_object(v)) {
      const char *sk;
      json_t *sv;
      json_object_foreach(v, sk, sv) if (!(skip && !strcasecmp(sk, skip)) && !nested_unique(sv, dup)) return false;
    } else if (!nested_unique(v, dup)) {
      return false;
    }
  }
  return true;
}

bool scim__names_unique(const json_t *body, bool group, bool patch, scim_resp *rs) {
  const char *dup = NULL;
  const char *skip = group ? "members" : "groups";
  bool ok = true;
  if (!json_is_object(body)) return true; /* refused elsewhere */
  if (!patch) {
    ok = attrs_unique(body, group, skip, &dup);
  } else {
    json_t *set = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v) if (!(ok = name_add(set, k, &dup))) break;
    json_decref(set);
    json_t *ops = scim__oget(body, "Operations", NULL);
    size_t i;
    json_t *o;
    if (ok && json_is_array(ops))
      json_array_foreach(ops, i, o) {
        if (!json_is_object(o)) continue;
        json_t *opset = json_object();
        json_object_foreach(o, k, v) if (!(ok = name_add(opset, k, &dup))) break;
        json_decref(opset);
        if (!ok) break;
        const char *path = json_string_value(scim__oget(o, "path", NULL));
        json_t *value = scim__oget(o, "value", NULL);
        if (!value) continue;
        if (path && *path) {
          /* a group's members, in any spelling, are member references */
          if (!(group && scim__name_kind(path, true) == SCIM__NAME_SKIP)) ok = nested_unique(value, &dup);
        } else if (json_is_object(value)) {
          ok = attrs_unique(value, group, group ? skip : NULL, &dup);
        } else {
          ok = nested_unique(value, &dup);
        }
        if (!ok) break;
      }
  }
  if (ok) return true;
  scim_error(rs, 400, "invalidSyntax", "\"%.120s\" is given twice (attribute names are case-insensitive)", dup);
  return false;
}

/* ---------- rendering ---------- */

/* Attribute selection: see scim__view in scim_int.h. */

static bool always_returned(const char *k) {
  return !strcasecmp(k, "id") || !strcasecmp(k, "schemas") || !strcasecmp(k, "meta");
}

static const char *ent(const json_t *e, const char *f) { return json_string_value(json_object_get(e, f)); }

/* Whether a core top-level attribute is returned at all (decides whether
 * groups/members are read). */
static bool view_wants(const scim__view *v, const char *name) {
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

static void view_apply(const scim__view *v, json_t *o) {
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
json_t *scim__render_user(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                           const scim__view *v) {
  json_t *o = json_deep_copy(stored);
  const char *id = scim__jstr(o, "id");
  json_t *meta = json_object_get(o, "meta");
  char loc[600];
  location(rq, "Users", id ? id : "", loc, sizeof loc);
  if (meta) json_object_set_new(meta, "location", json_string(loc));
  scim__effective_meta(txn, tenant, o);
  if (id && view_wants(v, "groups")) {
    st_dir_key p;
    st_dir_key_user_group(&p, tenant, id, NULL);
    json_t *gids = json_array();
    st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, gids, scim__budget_cap(rq));
    if (!scim__spend(rq, json_array_size(gids))) json_array_clear(gids); /* past the loop's budget: discarded */
    json_t *groups = json_array();
    size_t i;
    json_t *g;
    json_array_foreach(gids, i, g) {
      json_t *grp;
      if (scim__res_get(txn, tenant, 'G', json_string_value(g), &grp) != 0) continue;
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

/* A group's members as rendered: value, $ref, display (the user's
 * userName), type; within rq's budget (past it: none, budget->over). */
static json_t *group_members(st_txn *txn, const scim_req *rq, const char *tenant, const char *id) {
  st_dir_key p;
  st_dir_key_member(&p, tenant, id, NULL);
  json_t *uids = json_array();
  st_dir_ids_under(txn, ST_DB_SCIM_MEM, &p, uids, scim__budget_cap(rq));
  if (!scim__spend(rq, json_array_size(uids))) json_array_clear(uids); /* past the loop's budget: discarded */
  json_t *members = json_array();
  size_t i;
  json_t *u;
  json_array_foreach(uids, i, u) {
    json_t *usr;
    if (scim__res_get(txn, tenant, 'U', json_string_value(u), &usr) != 0) continue;
    char ul[600];
    location(rq, "Users", json_string_value(u), ul, sizeof ul);
    json_array_append_new(members, json_pack("{s:O,s:s,s:O?,s:s}", "value", u, "$ref", ul, "display",
                                             json_object_get(usr, "userName"), "type", "User"));
    json_decref(usr);
  }
  json_decref(uids);
  return members;
}

json_t *scim__render_group(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                            const scim__view *v) {
  json_t *o = json_deep_copy(stored);
  const char *id = scim__jstr(o, "id");
  json_t *meta = json_object_get(o, "meta");
  char loc[600];
  location(rq, "Groups", id ? id : "", loc, sizeof loc);
  if (meta) json_object_set_new(meta, "location", json_string(loc));
  if (id && view_wants(v, "members")) json_object_set_new(o, "members", group_members(txn, rq, tenant, id));
  view_apply(v, o);
  return ordered(o);
}

/* Inserts members into a rendered group where render_group puts them:
 * after every attribute but meta (the stored form never holds members). */
static json_t *with_members(json_t *o, json_t *members) {
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    if (!strcmp(k, "meta")) json_object_set(out, "members", members);
    json_object_set(out, k, v);
  }
  if (!json_object_get(out, "members")) json_object_set(out, "members", members);
  json_decref(members);
  json_decref(o);
  return out;
}

int scim_reply_members(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  if (!rs->members_of[0] || !rs->body) return 0;
  json_t *cur;
  int rc = scim__res_get(txn, rq->tenant, 'G', rs->members_of, &cur);
  if (rc == ST_ENOTFOUND) { /* deleted since: the reply stays as written, without members */
    rs->members_of[0] = 0;
    return 0;
  }
  if (rc) return rc;
  const char *wrote = json_string_value(json_object_get(json_object_get(rs->body, "meta"), "version"));
  const char *now = json_string_value(json_object_get(json_object_get(cur, "meta"), "version"));
  json_t *o;
  if (wrote && now && !strcmp(wrote, now)) {
    /* the version the write made: its reply, with the members it left out
     * (byte for byte what rendering them in the write would have made) */
    json_t *members = group_members(txn, rq, rq->tenant, rs->members_of);
    if (rq->budget && rq->budget->over) {
      json_decref(members);
      json_decref(cur);
      return 0; /* incomplete: the caller runs it again without a budget */
    }
    o = with_members(json_incref(rs->body), members);
  } else {
    /* changed since: the newer version, whole, as a GET answers it */
    o = scim__render_group(txn, rq, rq->tenant, cur, NULL);
    if (rq->budget && rq->budget->over) {
      json_decref(o);
      json_decref(cur);
      return 0;
    }
  }
  json_decref(cur);
  int status = rs->status;
  json_decref(rs->body);
  rs->body = NULL;
  scim__reply_resource(rs, status, o, rq, "Groups");
  rs->members_of[0] = 0;
  return 0;
}

void scim__reply_resource(scim_resp *rs, int status, json_t *o, const scim_req *rq, const char *type) {
  rs->status = status;
  rs->body = o;
  const char *ver = json_string_value(json_object_get(json_object_get(o, "meta"), "version"));
  if (ver) snprintf(rs->etag, sizeof rs->etag, "%s", ver);
  if (status == 201) location(rq, type, scim__jstr(o, "id") ? scim__jstr(o, "id") : "", rs->location, sizeof rs->location);
}

/* ---------- attribute lists ---------- */

json_t *scim__name_list(const char *s) {
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

