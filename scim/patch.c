/* scim/patch.c — the PATCH engine (RFC 7644 §3.5.2) on a JSON resource.
 *
 * Operations apply in order to a private copy; the caller validates the
 * result and commits it, or aborts the whole request (atomic: all or
 * nothing). `op` is case-insensitive ("Replace" from Entra). Without a
 * path the value is an object whose keys are attribute names, URN-qualified
 * attribute names ("urn:…:enterprise:2.0:User:manager") or extension URNs
 * holding an object (Okta's deactivate and Entra's extension updates). A
 * read-only "id" inside such a value (Okta's group rename) is ignored.
 * Group members never live in the JSON: every member operation goes to the
 * caller's members callback, which edits the membership index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"

enum { OP_ADD, OP_REPLACE, OP_REMOVE };

/* What checking the resource after every operation may cost one request,
 * in JSON values visited (~25 ms): the writer runs the request, and every
 * tenant's writes — deactivations too — wait for it. A user is at most
 * SCIM_RES_VALUES_MAX values, so an Okta or Entra PATCH (a few operations
 * on a resource of ~100 values) is far below it. */
#define PATCH_CHECK_BUDGET 1000000

/* JSON values in v, v included. */
static size_t weight(const json_t *v) {
  size_t n = 1, i;
  const char *k;
  json_t *e;
  if (json_is_object(v)) json_object_foreach((json_t *)v, k, e) n += weight(e);
  else if (json_is_array(v)) json_array_foreach(v, i, e) n += weight(e);
  return n;
}

/* An object of a group's attributes (a path-less value, the core URN's
 * object), its members aside in every spelling (scim__key_kind). */
static size_t weight_but_members(const json_t *o) {
  size_t n = 1;
  const char *k;
  json_t *e;
  json_object_foreach((json_t *)o, k, e) {
    int kind = scim__key_kind(k, true, false);
    if (kind == SCIM__NAME_SKIP) continue;
    n += kind == SCIM__NAME_CORE && json_is_object(e) ? weight_but_members(e) : weight(e);
  }
  return n;
}

/* What a PATCH's operations may bring into the resource the checks walk,
 * in JSON values: a group's member values go to the membership index
 * instead, so they do not count (an Entra PATCH adding thousands of
 * members is cheap to check) — "members" or "urn:…:core:2.0:Group:members"
 * alike. */
static size_t ops_weight(const json_t *ops, bool is_group) {
  size_t n = 1, i;
  json_t *o;
  json_array_foreach(ops, i, o) {
    json_t *v = scim__oget(o, "value", NULL);
    const char *path = json_string_value(scim__oget(o, "path", NULL));
    if (!is_group || !v) {
      n += weight(o);
      continue;
    }
    int kind = path && *path ? scim__name_kind(path, true) : SCIM__NAME_CORE;
    if (kind == SCIM__NAME_SKIP) n += 1;
    else if (kind == SCIM__NAME_CORE && json_is_object(v)) n += weight_but_members(v);
    else n += weight(o);
  }
  return n;
}

static bool ignored_attr(const char *name) {
  return !strcasecmp(name, "id") || !strcasecmp(name, "meta") || !strcasecmp(name, "schemas") ||
         !strcasecmp(name, "groups") || !strcasecmp(name, "password");
}

/* The object a path's attribute lives in; created for add/replace. */
static json_t *container(json_t *res, const scim__attrpath *ap, bool create) {
  if (!ap->urn || !strcasecmp(ap->urn, SCIM_URN_USER) || !strcasecmp(ap->urn, SCIM_URN_GROUP))
    return res;
  const char *k;
  json_t *c = scim__oget(res, ap->urn, &k);
  if (json_is_object(c)) return c;
  if (!create) return NULL;
  c = json_object();
  json_object_set_new(res, ap->urn, c);
  return c;
}

/* Sets obj[name] (matching an existing key case-insensitively). */
static void oset(json_t *obj, const char *name, json_t *v /* stolen */) {
  const char *k;
  if (scim__oget(obj, name, &k)) json_object_set_new(obj, k, v);
  else json_object_set_new(obj, name, v);
}

static void odel(json_t *obj, const char *name) {
  const char *k;
  if (scim__oget(obj, name, &k)) json_object_del(obj, k);
}

static bool array_has(const json_t *arr, const json_t *v) {
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) if (json_equal(e, (json_t *)v)) return true;
  return false;
}

static int bad(scim_resp *rs, int idx, const char *type, const char *msg) {
  scim_error(rs, 400, type, "operation %d: %s", idx + 1, msg);
  return -1;
}

/* add/replace of one attribute (no filter) */
static int set_attr(json_t *res, const scim__attrpath *ap, const json_t *value, int op, int idx,
                    scim_resp *rs) {
  json_t *c = container(res, ap, true);
  if (!c) return bad(rs, idx, "invalidPath", "no such extension");
  json_t *cur = scim__oget(c, ap->attr, NULL);
  if (ap->sub) {
    if (cur && json_is_array(cur))
      return bad(rs, idx, "invalidPath", "a sub-attribute of a multi-valued attribute needs a filter");
    if (!json_is_object(cur)) {
      cur = json_object();
      oset(c, ap->attr, cur);
    }
    oset(cur, ap->sub, json_deep_copy(value));
    return 0;
  }
  if (op == OP_ADD && json_is_array(cur)) {
    if (json_is_array(value)) {
      size_t i;
      json_t *e;
      json_array_foreach(value, i, e) if (!array_has(cur, e)) json_array_append_new(cur, json_deep_copy(e));
    } else if (!array_has(cur, value)) {
      json_array_append_new(cur, json_deep_copy(value));
    }
    return 0;
  }
  /* a complex attribute: the sub-attributes given are set, the others
   * left unchanged — for add and for replace (RFC 7644 §3.5.2.3) */
  if (json_is_object(cur) && json_is_object(value)) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)value, k, v) oset(cur, k, json_deep_copy(v));
    return 0;
  }
  oset(c, ap->attr, json_deep_copy(value));
  return 0;
}

/* The sub-attributes a filter of equalities joined by "and" names
 * (type eq "work" → "type": "work") into out; false for any other filter. */
static bool filter_fields(const scim__filter *f, json_t *out) {
  if (f->kind == SCIM__F_AND) return filter_fields(f->a, out) && filter_fields(f->b, out);
  if (f->kind != SCIM__F_CMP || f->op != SCIM__OP_EQ || f->path.urn || f->path.sub || json_is_null(f->value))
    return false;
  oset(out, f->path.attr, json_deep_copy(f->value));
  return true;
}

/* An "add" through a value filter that selects nothing: Entra sets a value
 * the user does not have yet so ({"op":"Add","path":"emails[type eq
 * \"work\"].value"}), and Microsoft's reading is that the element is
 * created. It is made of the filter's equalities and the value (the
 * sub-attribute, or the value object's members) and must match the filter;
 * a filter that does not say what to create selects nothing (noTarget). */
/* A request's value filters passed SCIM__METER_WRITE_MAX (scim_int.h). */
static int too_costly(scim_resp *rs, int idx) {
  return bad(rs, idx, "invalidSyntax",
             "the operations' value filters compare too much of this resource (send fewer or simpler ones per request)");
}

static int add_selected(json_t *res, const scim__path *p, const json_t *value, int idx, scim_resp *rs,
                        scim__meter *mt) {
  json_t *e = json_object();
  if (json_is_null(value) || (!p->ap.sub && !json_is_object(value)) || !filter_fields(p->filter, e)) goto none;
  if (p->ap.sub) {
    oset(e, p->ap.sub, json_deep_copy(value));
  } else {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)value, k, v) oset(e, k, json_deep_copy(v));
  }
  if (!scim__filter_match_in(p->filter, e, p->ap.attr, mt)) {
    if (scim__meter_over(mt)) {
      json_decref(e);
      return too_costly(rs, idx);
    }
    goto none;
  }
  json_t *c = container(res, &p->ap, true);
  json_t *arr = scim__oget(c, p->ap.attr, NULL);
  if (!arr) {
    arr = json_array();
    oset(c, p->ap.attr, arr); /* c holds it */
  }
  json_array_append_new(arr, e);
  return 0;
none:
  json_decref(e);
  return bad(rs, idx, "noTarget", "the filter matched no value");
}

static int apply_filtered(json_t *res, const scim__path *p, const json_t *value, int op, int idx,
                          scim_resp *rs, scim__meter *mt) {
  json_t *c = container(res, &p->ap, false);
  json_t *arr = c ? scim__oget(c, p->ap.attr, NULL) : NULL;
  if (!json_is_array(arr)) {
    if (op == OP_REMOVE) return 0;
    if (op == OP_ADD && !arr) return add_selected(res, p, value, idx, rs, mt);
    return bad(rs, idx, "noTarget", "the filter matched no value");
  }
  int matched = 0;
  for (size_t i = 0; i < json_array_size(arr);) {
    json_t *e = json_array_get(arr, i);
    if (!scim__filter_match_in(p->filter, e, p->ap.attr, mt)) {
      if (scim__meter_over(mt)) return too_costly(rs, idx);
      i++;
      continue;
    }
    matched++;
    if (op == OP_REMOVE) {
      if (p->ap.sub) {
        odel(e, p->ap.sub);
        i++;
      } else {
        json_array_remove(arr, i);
      }
      continue;
    }
    if (p->ap.sub) {
      if (!json_is_object(e)) return bad(rs, idx, "invalidPath", "the matched value is not complex");
      oset(e, p->ap.sub, json_deep_copy(value));
    } else if (json_is_object(e) && json_is_object(value)) {
      const char *k;
      json_t *v;
      json_object_foreach((json_t *)value, k, v) oset(e, k, json_deep_copy(v));
    } else {
      json_array_set_new(arr, i, json_deep_copy(value));
    }
    i++;
  }
  if (!matched && op == OP_ADD) return add_selected(res, p, value, idx, rs, mt);
  if (!matched && op != OP_REMOVE) return bad(rs, idx, "noTarget", "the filter matched no value");
  return 0;
}

static int remove_attr(json_t *res, const scim__attrpath *ap, const json_t *value) {
  json_t *c = container(res, ap, false);
  if (!c) return 0;
  json_t *cur = scim__oget(c, ap->attr, NULL);
  if (!cur) return 0;
  if (ap->sub) {
    if (json_is_object(cur)) odel(cur, ap->sub);
    return 0;
  }
  if (value && json_is_array(cur) && json_is_array(value)) {
    /* remove the listed values only */
    size_t i;
    json_t *v;
    json_array_foreach(value, i, v) {
      for (size_t j = 0; j < json_array_size(cur);) {
        json_t *e = json_array_get(cur, j);
        json_t *ev = json_is_object(e) ? scim__oget(e, "value", NULL) : e;
        json_t *vv = json_is_object(v) ? scim__oget(v, "value", NULL) : v;
        if (ev && vv && json_equal(ev, vv)) json_array_remove(cur, j);
        else j++;
      }
    }
    return 0;
  }
  odel(c, ap->attr);
  return 0;
}

static bool is_members(const scim__attrpath *ap, bool is_group) {
  return is_group && (!ap->urn || !strcasecmp(ap->urn, SCIM_URN_GROUP)) &&
         !strcasecmp(ap->attr, "members");
}

/* One key of a path-less value object (ap: the key, or a sub key of a
 * URN-qualified object): group members go to the members callback,
 * "active" is read as a boolean, anything else is set on res. */
static int apply_key(json_t *res, const scim__attrpath *ap, json_t *v, int op, bool is_group, scim__members_fn mcb,
                     void *ctx, int idx, scim_resp *rs) {
  if (is_members(ap, is_group)) return mcb ? mcb(ctx, op == OP_ADD ? "add" : "replace", v, NULL, rs) : -1;
  if (!strcasecmp(ap->attr, "active") && !ap->sub) {
    json_t *b = scim__bool_value(v);
    if (!b) return bad(rs, idx, "invalidValue", "\"active\" must be a boolean");
    scim__attrpath a = *ap;
    int rc = set_attr(res, &a, b, op, idx, rs);
    json_decref(b);
    return rc;
  }
  return set_attr(res, ap, v, op, idx, rs);
}

/* An object named by a schema URN ("urn:…:enterprise:2.0:User": {…}, or
 * the core schema's own "urn:…:core:2.0:Group": {"members": […]}), as a
 * key of a path-less value or as the value of a path that is the URN:
 * each sub key as if it were given alone (members to the index, never
 * dropped; read-only names ignored). */
static int apply_urn_object(json_t *res, const char *urn, const json_t *v, int op, bool is_group,
                            scim__members_fn mcb, void *ctx, int idx, scim_resp *rs) {
  if (!json_is_object(v)) return bad(rs, idx, "invalidValue", "an extension's value must be an object");
  const char *sk;
  json_t *sv;
  json_object_foreach((json_t *)v, sk, sv) {
    if (ignored_attr(sk)) continue;
    scim__attrpath ap = {(char *)urn, (char *)sk, NULL};
    int rc = apply_key(res, &ap, sv, op, is_group, mcb, ctx, idx, rs);
    if (rc) return rc;
  }
  return 0;
}

/* A path-less value object: each key becomes its own operation. */
static int apply_pathless(json_t *res, const json_t *value, int op, bool is_group,
                          scim__members_fn mcb, void *ctx, int idx, scim_resp *rs) {
  if (!json_is_object(value))
    return bad(rs, idx, "invalidValue", "without a path, the value must be an object");
  if (op == OP_REMOVE) return bad(rs, idx, "noTarget", "remove needs a path");
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)value, k, v) {
    if (ignored_attr(k)) continue;
    scim__path p;
    char err[200];
    if (scim__path_parse(k, &p, err, sizeof err) != 0) return bad(rs, idx, "invalidPath", err);
    int rc = 0;
    if (p.urn_only) {
      rc = apply_urn_object(res, p.ap.urn, v, op, is_group, mcb, ctx, idx, rs);
    } else if (p.filter) {
      rc = bad(rs, idx, "invalidPath", "filters are not allowed in value keys");
    } else {
      rc = apply_key(res, &p.ap, v, op, is_group, mcb, ctx, idx, rs);
    }
    scim__path_free(&p);
    if (rc) return rc;
  }
  return 0;
}

/* Prefixes the reply's detail with the failing operation, once. */
static void name_op(scim_resp *rs, int idx) {
  const char *d = json_string_value(json_object_get(rs->body, "detail"));
  if (!d || !strncmp(d, "operation ", 10)) return;
  char buf[1200];
  snprintf(buf, sizeof buf, "operation %d: %s", idx + 1, d);
  json_object_set_new(rs->body, "detail", json_string(buf));
}

int scim__patch_apply(json_t *res, const json_t *body, bool is_group, scim__members_fn mcb,
                      scim__validate_fn validate, void *ctx, scim_resp *rs) {
  if (!json_is_object(body)) {
    scim_error(rs, 400, "invalidSyntax", "the body must be a PatchOp object");
    return -1;
  }
  json_t *schemas = scim__oget(body, "schemas", NULL);
  bool ok = false;
  size_t i;
  json_t *s;
  if (json_is_array(schemas))
    json_array_foreach(schemas, i, s) if (json_is_string(s) && !strcasecmp(json_string_value(s), SCIM_URN_PATCH)) ok = true;
  if (!ok) {
    scim_error(rs, 400, "invalidSyntax", "schemas must contain \"%s\"", SCIM_URN_PATCH);
    return -1;
  }
  json_t *ops = scim__oget(body, "Operations", NULL);
  if (!json_is_array(ops) || !json_array_size(ops)) {
    scim_error(rs, 400, "invalidSyntax", "\"Operations\" must be a non-empty array");
    return -1;
  }
  if (json_array_size(ops) > 10000) {
    scim_error(rs, 400, "invalidSyntax", "too many operations (10000 at most)");
    return -1;
  }
  /* each check walks the resource, which may hold what earlier operations
   * brought from the body: operations × (resource + what they bring) is
   * bounded */
  if (validate && json_array_size(ops) * (weight(res) + ops_weight(ops, is_group)) > PATCH_CHECK_BUDGET) {
    scim_error(rs, 400, "invalidSyntax", "too many operations for a resource this large (send fewer per request)");
    return -1;
  }
  scim__meter mt = {0, SCIM__METER_WRITE_MAX}; /* the value filters' work, all operations */
  json_t *o;
  json_array_foreach(ops, i, o) {
    int idx = (int)i;
    if (!json_is_object(o)) return bad(rs, idx, "invalidSyntax", "an operation must be an object");
    const char *opname = json_string_value(scim__oget(o, "op", NULL));
    int op;
    if (!opname) return bad(rs, idx, "invalidSyntax", "\"op\" must be a string");
    if (!strcasecmp(opname, "add")) op = OP_ADD;
    else if (!strcasecmp(opname, "replace")) op = OP_REPLACE;
    else if (!strcasecmp(opname, "remove")) op = OP_REMOVE;
    else return bad(rs, idx, "invalidSyntax", "\"op\" must be add, replace or remove");
    json_t *pathv = scim__oget(o, "path", NULL);
    json_t *value = scim__oget(o, "value", NULL);
    if (pathv && !json_is_string(pathv)) return bad(rs, idx, "invalidPath", "\"path\" must be a string");
    if (op != OP_REMOVE && !value) return bad(rs, idx, "invalidValue", "\"value\" is required");
    if (!pathv || !*json_string_value(pathv)) {
      if (apply_pathless(res, value, op, is_group, mcb, ctx, idx, rs) ||
          (validate && validate(res, is_group, rs))) {
        name_op(rs, idx);
        return -1;
      }
      continue;
    }
    scim__path p;
    char err[300];
    if (scim__path_parse(json_string_value(pathv), &p, err, sizeof err) != 0)
      return bad(rs, idx, "invalidPath", err);
    int rc = 0;
    if (p.urn_only) {
      if (op == OP_REMOVE) {
        const char *k;
        if (scim__oget(res, p.ap.urn, &k)) json_object_del(res, k);
      } else {
        /* the same object as without the path: the core schema's URN
         * ("path":"urn:…:core:2.0:Group","value":{"members":[]}) sends
         * members to the index, not onto the group's JSON, where they
         * were dropped and the IdP told 200 */
        rc = apply_urn_object(res, p.ap.urn, value, op, is_group, mcb, ctx, idx, rs);
      }
    } else if (is_members(&p.ap, is_group)) {
      if (p.ap.sub) rc = bad(rs, idx, "invalidPath", "members' sub-attributes cannot be patched");
      else
        rc = mcb ? mcb(ctx, op == OP_ADD ? "add" : op == OP_REPLACE ? "replace" : "remove", value,
                       p.filter, rs)
                 : -1;
    } else if (!p.ap.urn && ignored_attr(p.ap.attr)) {
      /* read-only or never-stored attributes: ignored, like in PUT */
    } else if (p.filter) {
      rc = apply_filtered(res, &p, value, op, idx, rs, &mt);
    } else if (op == OP_REMOVE) {
      rc = remove_attr(res, &p.ap, value);
    } else if (!strcasecmp(p.ap.attr, "active") && !p.ap.sub) {
      json_t *b = scim__bool_value(value);
      if (!b) rc = bad(rs, idx, "invalidValue", "\"active\" must be a boolean");
      else {
        rc = set_attr(res, &p.ap, b, op, idx, rs);
        json_decref(b);
      }
    } else {
      rc = set_attr(res, &p.ap, value, op, idx, rs);
    }
    scim__path_free(&p);
    if (!rc && validate) rc = validate(res, is_group, rs);
    if (rc) {
      if (rs->status < 400) bad(rs, idx, "invalidValue", "the operation failed");
      name_op(rs, idx);
      return -1;
    }
  }
  return 0;
}
