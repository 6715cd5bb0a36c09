/* scim/groups.c — SCIM group writes and membership: create, replace (PUT,
 * members included), patch (member operations through the PATCH engine's
 * callback), delete; membership kept in both directions, the per-user
 * groups revision moved for every member touched, and one
 * MEMBERSHIP_CHANGED event with the net additions and removals. A POST's
 * or PUT's reply may leave its members to be listed after the commit
 * (scim_req.members_later; scim_reply_members in render.c). See
 * resource.c for the shared parts. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"

/* ---------- groups: membership ---------- */

typedef struct mctx {
  st_txn *txn;
  const scim_req *rq;
  const char *gid;
  json_t *added, *removed; /* net changes: sets of user ids (objects uid → true, in order) */
  scim_resp *rs;           /* NULL: the removals are not noted for a cut (a create removes nobody) */
  size_t scans, scanned;   /* walks of the member list so far, members they visited */
  scim__meter mt;          /* what members[…] filters compared (scim_int.h) */
} mctx;

/* A removal about to be written: noted in rs first, so a store that fails
 * it still has the membership cut (scim.h, cut_members). */
static void note_cut(mctx *m, const char *uid) {
  if (!m->rs) return;
  snprintf(m->rs->cut_group, sizeof m->rs->cut_group, "%s", m->gid);
  if (!m->rs->cut_members) m->rs->cut_members = json_array();
  json_array_append_new(m->rs->cut_members, json_string(uid));
}

/* Sets, not arrays: a full push touches every member, and a scan of the
 * other side per member made it quadratic (minutes of the writer, which
 * every tenant's deactivations wait for, at 100,000 members). */
static void net(json_t *to, json_t *from, const char *uid) {
  if (json_object_get(from, uid)) json_object_del(from, uid);
  else json_object_set_new(to, uid, json_true());
}

/* The ids of a set, in order (a new array). */
static json_t *id_list(const json_t *set) {
  json_t *a = json_array();
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)set, k, v) json_array_append_new(a, json_string(k));
  return a;
}

/* A user's representation includes its groups: a membership change is a
 * change of the user. Rather than rewriting the user's record for every
 * member of a PATCH, a small per-user "groups revision" (IDX t\0 'r' uid →
 * u64 revision + RFC 3339 time) moves; the user's effective meta.version is
 * W/"<record version>.<groups revision>" and lastModified the later of the
 * two (effective_meta). */
static int touch_user(mctx *m, const char *uid) {
  uint64_t rev;
  char when[40], buf[48];
  scim__grev_get(m->txn, m->rq->tenant, uid, &rev, when);
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
  if (rc) return scim__fail_store(rs, rc);
  /* an add is the IdP's latest word that they are a member: a cut of the
   * membership in memory (an unwritten removal) ends with its commit, even
   * when nothing changes — they are still a member, or were removed and
   * added back by this same request — and no event names them (store/dir.h) */
  if ((rc = st_dir_membership_cut_end(m->txn, m->rq->tenant, m->gid, uid))) return scim__fail_store(rs, rc);
  st_dir_key_member(&k, m->rq->tenant, m->gid, uid);
  if (st_get(m->txn, ST_DB_SCIM_MEM, k.b, k.n, &v) == 0) return 0; /* already a member */
  if ((rc = st_put(m->txn, ST_DB_SCIM_MEM, k.b, k.n, "", 0, 0))) return scim__fail_store(rs, rc);
  st_dir_key_user_group(&k, m->rq->tenant, uid, m->gid);
  if ((rc = st_put(m->txn, ST_DB_SCIM_MEM, k.b, k.n, "", 0, 0))) return scim__fail_store(rs, rc);
  if ((rc = touch_user(m, uid))) return scim__fail_store(rs, rc);
  net(m->added, m->removed, uid);
  return 0;
unknown:
  scim_error(rs, 400, "invalidValue", "member \"%.64s\" is not a user of this tenant", uid);
  return SCIM_EABORT;
}

static int member_remove(mctx *m, const char *uid, scim_resp *rs) {
  st_dir_key k;
  if (!st_dir_valid_id(uid)) return 0;
  st_dir_key_member(&k, m->rq->tenant, m->gid, uid);
  int rc = st_del(m->txn, ST_DB_SCIM_MEM, k.b, k.n);
  if (rc == ST_ENOTFOUND) return 0;
  note_cut(m, uid); /* a member: this request takes them out */
  if (rc) return scim__fail_store(rs, rc);
  st_dir_key_user_group(&k, m->rq->tenant, uid, m->gid);
  if ((rc = st_del(m->txn, ST_DB_SCIM_MEM, k.b, k.n)) && rc != ST_ENOTFOUND) return scim__fail_store(rs, rc);
  if ((rc = touch_user(m, uid))) return scim__fail_store(rs, rc);
  net(m->removed, m->added, uid);
  return 0;
}

/* Member visits a request's walks of the member list may add up to past
 * its first walk (well under a second of filter checks): a PATCH of thousands
 * of filtered removals on a big group held the writer, which every
 * tenant's writes wait for, for as many walks. */
#define MEMBER_SCAN_BUDGET 1000000

/* The group's member ids (*out, caller json_decref), or a 400 in rs and
 * SCIM_EABORT when this walk would pass the request's budget. */
static int current_members(mctx *m, json_t **out, scim_resp *rs) {
  st_dir_key p;
  st_dir_key_member(&p, m->rq->tenant, m->gid, NULL);
  json_t *ids = json_array();
  st_dir_ids_under(m->txn, ST_DB_SCIM_MEM, &p, ids, 0);
  m->scanned += json_array_size(ids);
  if (m->scans++ && m->scanned > MEMBER_SCAN_BUDGET) {
    json_decref(ids);
    scim_error(rs, 400, "invalidSyntax", "too many member operations for a group this large (send fewer per request)");
    return SCIM_EABORT;
  }
  *out = ids;
  return 0;
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
  return SCIM_EABORT;
}

/* Whether the filter tests sub-attribute `name` anywhere. */
static bool filter_names(const scim__filter *f, const char *name) {
  if (!f) return false;
  if (f->path.attr && !strcasecmp(f->path.attr, name)) return true;
  return filter_names(f->a, name) || filter_names(f->b, name);
}

/* Whether a member path's value filter ("members[value eq …]") selects
 * the member uid: tested on the member as a GET shows it (value, $ref,
 * display — the user's userName — and type), so a filter on what the IdP
 * read back selects what it names; the user is read only for a filter on
 * display. */
static bool member_selected(mctx *m, const scim__filter *filter, json_t *uid) {
  char ref[600];
  snprintf(ref, sizeof ref, "%s/Users/%s", m->rq->base_url ? m->rq->base_url : "", json_string_value(uid));
  json_t *obj = json_pack("{s:O,s:s,s:s}", "value", uid, "$ref", ref, "type", "User");
  json_t *usr = NULL;
  if (filter_names(filter, "display") && scim__res_get(m->txn, m->rq->tenant, 'U', json_string_value(uid), &usr) == 0)
    json_object_set(obj, "display", json_object_get(usr, "userName"));
  json_decref(usr);
  bool hit = scim__filter_match_in(filter, obj, "members", &m->mt);
  json_decref(obj);
  return hit;
}

/* After a filtered walk: a 400 once the request's members[…] filters
 * passed their budget (member_selected then selected nobody). */
static int filters_in_budget(mctx *m, scim_resp *rs) {
  if (!scim__meter_over(&m->mt)) return 0;
  scim_error(rs, 400, "invalidSyntax",
             "the members filters compare too much of a group this large (send fewer or simpler ones per request)");
  return SCIM_EABORT;
}

static int members_op(void *ctx, const char *op, const json_t *value, const scim__filter *filter,
                      scim_resp *rs) {
  mctx *m = ctx;
  int rc = 0;
  json_t *ids = json_array();
  if (!strcmp(op, "replace") && filter) {
    /* members[…] (RFC 7644 §3.5.2.3): the members the filter selects are
     * replaced by the value's, the others stay; none selected: noTarget */
    json_t *cur;
    if ((rc = member_values(value, ids, rs)) == 0 && (rc = current_members(m, &cur, rs)) == 0) {
      size_t i, hits = 0;
      json_t *e;
      json_array_foreach(cur, i, e) if (member_selected(m, filter, e)) {
        hits++;
        if ((rc = member_remove(m, json_string_value(e), rs))) break;
      }
      json_decref(cur);
      if (!rc) rc = filters_in_budget(m, rs);
      if (!rc && !hits) {
        scim_error(rs, 400, "noTarget", "the filter matched no member");
        rc = SCIM_EABORT;
      }
      if (!rc) json_array_foreach(ids, i, e) if ((rc = member_add(m, json_string_value(e), rs))) break;
    }
  } else if (!strcmp(op, "add")) {
    if ((rc = member_values(value, ids, rs)) == 0) {
      size_t i;
      json_t *e;
      json_array_foreach(ids, i, e) if ((rc = member_add(m, json_string_value(e), rs))) break;
    }
  } else if (!strcmp(op, "replace")) {
    if (json_is_null(value)) value = NULL;
    json_t *cur;
    if ((!value || (rc = member_values(value, ids, rs)) == 0) && (rc = current_members(m, &cur, rs)) == 0) {
      json_t *keep = json_object();
      size_t i;
      json_t *e;
      json_array_foreach(ids, i, e) json_object_set(keep, json_string_value(e), json_true());
      json_array_foreach(cur, i, e) {
        if (!json_object_get(keep, json_string_value(e)) && (rc = member_remove(m, json_string_value(e), rs))) break;
      }
      if (!rc) json_array_foreach(ids, i, e) if ((rc = member_add(m, json_string_value(e), rs))) break;
      json_decref(keep);
      json_decref(cur);
    }
  } else { /* remove */
    json_t *cur;
    if (filter) {
      /* fast path: value eq "<id>" */
      if (filter->kind == SCIM__F_CMP && filter->op == SCIM__OP_EQ && !filter->path.sub &&
          !strcasecmp(filter->path.attr, "value") && json_is_string(filter->value)) {
        rc = member_remove(m, json_string_value(filter->value), rs);
      } else if ((rc = current_members(m, &cur, rs)) == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(cur, i, e) if (member_selected(m, filter, e) && (rc = member_remove(m, json_string_value(e), rs))) break;
        json_decref(cur);
        if (!rc) rc = filters_in_budget(m, rs);
      }
    } else if (value && !json_is_null(value)) {
      /* Entra: remove with path "members" and a value list removes those only */
      if ((rc = member_values(value, ids, rs)) == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(ids, i, e) if ((rc = member_remove(m, json_string_value(e), rs))) break;
      }
    } else if ((rc = current_members(m, &cur, rs)) == 0) {
      size_t i;
      json_t *e;
      json_array_foreach(cur, i, e) if ((rc = member_remove(m, json_string_value(e), rs))) break;
      json_decref(cur);
    }
  }
  json_decref(ids);
  /* a removal the store cut short: who else it would have removed is not
   * known, so a cut takes the whole group */
  if (rc && rs->store_failed && m->rs && strcmp(op, "add")) {
    snprintf(m->rs->cut_group, sizeof m->rs->cut_group, "%s", m->gid);
    m->rs->cut_group_all = true;
  }
  return rc;
}

/* ---------- groups: writes ---------- */

static int index_group(st_txn *txn, const char *tenant, const json_t *g, bool add) {
  const char *id = scim__jstr(g, "id"), *dn = scim__jstr(g, "displayName"), *ext = scim__jstr(g, "externalId");
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
  if (!json_object_size(m->added) && !json_object_size(m->removed)) return 0;
  json_t *added = id_list(m->added), *removed = id_list(m->removed);
  int rc = scim__emit(txn, SCIM_EV_MEMBERSHIP_CHANGED, rq, m->gid, name, NULL, added, removed, rs);
  json_decref(added);
  json_decref(removed);
  return rc;
}

/* A POST's or PUT's members: "members", or the same inside the core
 * schema's URN object ({"urn:…:core:2.0:Group": {"members": […]}}, RFC
 * 7644 allows URN-qualified names anywhere), which a PATCH already sends
 * to the index — here they were dropped: a POST made the group empty, a
 * PUT emptied it, and the IdP was told 201/200. Both given: 400. *out
 * borrowed from the body, NULL for none. 0, or SCIM_EABORT with rs. */
static int body_members(const json_t *body, const json_t **out, scim_resp *rs) {
  json_t *top = scim__oget(body, "members", NULL);
  json_t *core = scim__oget(body, SCIM_URN_GROUP, NULL);
  json_t *inner = json_is_object(core) ? scim__oget(core, "members", NULL) : NULL;
  if (json_is_null(top)) top = NULL;
  if (json_is_null(inner)) inner = NULL;
  if (top && inner) {
    scim_error(rs, 400, "invalidSyntax", "\"members\" is given twice (plain and inside \"%s\")", SCIM_URN_GROUP);
    return SCIM_EABORT;
  }
  *out = top ? top : inner;
  return 0;
}

int scim__group_create(st_txn *txn, const scim_req *rq, scim_resp *rs) {
  json_t *g = scim__normalize(rq->body, true, rs);
  if (!g) return SCIM_EABORT;
  if (scim__grew_too_large(NULL, g, rs)) { /* what is stored, whatever the body weighed */
    json_decref(g);
    return SCIM_EABORT;
  }
  int rc;
  json_object_set_new(g, "id", json_string(rq->new_id));
  scim__set_meta(g, "Group", rq->now, rq->now, 1);
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'G', rq->new_id);
  mctx m = {txn, rq, rq->new_id, json_object(), json_object(), NULL, 0, 0, {0, SCIM__METER_WRITE_MAX}};
  if ((rc = scim__count_cap(txn, rq, 'G', rs))) goto out;
  if ((rc = st_put(txn, ST_DB_SCIM_RES, k.b, k.n, "", 0, ST_NOOVERWRITE)) ||
      (rc = scim__put_json(txn, ST_DB_SCIM_RES, &k, g)) || (rc = index_group(txn, rq->tenant, g, true)) ||
      (rc = scim__count_add(txn, rq->tenant, 'G', 1))) {
    rc = scim__fail_store(rs, rc);
    goto out;
  }
  const json_t *mem;
  if ((rc = body_members(rq->body, &mem, rs))) goto out;
  if (mem && (rc = members_op(&m, "add", mem, NULL, rs))) goto out;
  if ((rc = scim__emit(txn, SCIM_EV_GROUP_CREATED, rq, rq->new_id, scim__jstr(g, "displayName"), NULL, NULL, NULL, rs)) ||
      (rc = emit_members(txn, rq, &m, scim__jstr(g, "displayName"), rs)))
    goto out;
  /* members after the commit, off the writer, when the caller says so (scim.h) */
  scim__view v = {NULL, rq->members_later ? scim__name_list("members") : NULL};
  scim__reply_resource(rs, 201, scim__render_group(txn, rq, rq->tenant, g, &v), rq, "Groups");
  json_decref(v.excluded);
  if (rq->members_later) snprintf(rs->members_of, sizeof rs->members_of, "%s", rq->new_id);
out:
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(g);
  return rc;
}

static int group_commit(st_txn *txn, const scim_req *rq, json_t *old, json_t *nu, mctx *m, scim_resp *rs,
                        bool members_in_reply) {
  const char *id = scim__jstr(old, "id");
  int rc;
  json_object_set_new(nu, "id", json_string(id));
  json_t *a = json_deep_copy(old);
  json_object_del(a, "meta");
  bool changed = !json_equal(a, nu) || json_object_size(m->added) || json_object_size(m->removed);
  json_decref(a);
  if (changed) {
    const char *created = json_string_value(json_object_get(json_object_get(old, "meta"), "created"));
    scim__set_meta(nu, "Group", created ? created : rq->now, rq->now, scim__version_of(old) + 1);
    st_dir_key k;
    st_dir_key_res(&k, rq->tenant, 'G', id);
    if ((rc = index_group(txn, rq->tenant, old, false)) || (rc = scim__put_json(txn, ST_DB_SCIM_RES, &k, nu)) ||
        (rc = index_group(txn, rq->tenant, nu, true)))
      return scim__fail_store(rs, rc);
    if (strcmp(scim__jstr(old, "displayName"), scim__jstr(nu, "displayName")) != 0 &&
        (rc = scim__emit(txn, SCIM_EV_GROUP_RENAMED, rq, id, scim__jstr(nu, "displayName"), scim__jstr(old, "displayName"),
                   NULL, NULL, rs)))
      return rc;
    if ((rc = emit_members(txn, rq, m, scim__jstr(nu, "displayName"), rs))) return rc;
  } else {
    json_object_set(nu, "meta", json_object_get(old, "meta"));
  }
  /* a PUT's members: rendered here, or after the commit, off the writer,
   * when the caller says so (scim.h, members_later) */
  bool later = members_in_reply && rq->members_later;
  scim__view v = {NULL, members_in_reply && !later ? NULL : scim__name_list("members")};
  scim__reply_resource(rs, 200, scim__render_group(txn, rq, rq->tenant, nu, &v), rq, "Groups");
  json_decref(v.excluded);
  if (later) snprintf(rs->members_of, sizeof rs->members_of, "%s", id);
  return 0;
}

int scim__group_write(st_txn *txn, const scim_req *rq, const char *id, bool patch, scim_resp *rs) {
  json_t *old;
  int rc = scim__res_get(txn, rq->tenant, 'G', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no group with id %.64s", id);
    return SCIM_EABORT;
  }
  if (rc) return scim__fail_store(rs, rc);
  mctx m = {txn, rq, id, json_object(), json_object(), rs, 0, 0, {0, SCIM__METER_WRITE_MAX}};
  json_t *nu = NULL; /* rs's cut notes start empty: scim_handle clears rs for every run of the job */
  if ((rc = scim__if_match_ok(txn, rq, old, rs))) goto out;
  if (patch) {
    json_t *work = json_deep_copy(old);
    json_object_del(work, "meta");
    if (scim__patch_apply(work, rq->body, true, members_op, scim__validate_types, &m, rs) != 0) {
      json_decref(work);
      rc = SCIM_EABORT;
      goto out;
    }
    nu = scim__normalize(work, true, rs);
    json_decref(work);
    if (nu && scim__grew_too_large(old, nu, rs)) {
      json_decref(nu);
      nu = NULL;
    }
  } else {
    nu = scim__normalize(rq->body, true, rs);
    if (nu && scim__grew_too_large(old, nu, rs)) {
      json_decref(nu);
      nu = NULL;
    }
    if (nu) {
      /* PUT replaces everything, members included (absent = none) */
      const json_t *mem;
      if ((rc = body_members(rq->body, &mem, rs)) || (rc = members_op(&m, "replace", mem, NULL, rs))) goto out;
    }
  }
  if (!nu) {
    rc = SCIM_EABORT;
    goto out;
  }
  /* Okta accepts a PATCH reply without members; a 50,000-member list in
   * every membership PATCH reply would be waste. PUT shows them (listed
   * after the commit when rq->members_later). */
  rc = group_commit(txn, rq, old, nu, &m, rs, !patch);
  if (!rc) {
    /* all of it ran: the net removals are what a failed commit must cut (a
     * member removed and added back by the same PATCH keeps the group) */
    json_decref(rs->cut_members);
    rs->cut_members = json_object_size(m.removed) ? id_list(m.removed) : NULL;
    if (!rs->cut_members) rs->cut_group[0] = 0;
  }
out:
  json_decref(nu);
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(old);
  return rc;
}

int scim__group_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs) {
  json_t *old;
  int rc = scim__res_get(txn, rq->tenant, 'G', id, &old);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no group with id %.64s", id);
    return SCIM_EABORT;
  }
  if (rc) return scim__fail_store(rs, rc);
  mctx m = {txn, rq, id, json_object(), json_object(), rs, 0, 0, {0, SCIM__METER_WRITE_MAX}};
  if ((rc = scim__if_match_ok(txn, rq, old, rs))) goto out;
  /* valid: every member loses the group, whatever the store does next */
  snprintf(rs->cut_group, sizeof rs->cut_group, "%s", id);
  rs->cut_group_all = true;
  if ((rc = members_op(&m, "remove", NULL, NULL, rs))) goto out;
  st_dir_key k;
  st_dir_key_res(&k, rq->tenant, 'G', id);
  if ((rc = index_group(txn, rq->tenant, old, false)) || (rc = st_del(txn, ST_DB_SCIM_RES, k.b, k.n)) ||
      (rc = scim__count_add(txn, rq->tenant, 'G', -1))) {
    rc = scim__fail_store(rs, rc);
    goto out;
  }
  if ((rc = emit_members(txn, rq, &m, scim__jstr(old, "displayName"), rs)) ||
      (rc = scim__emit(txn, SCIM_EV_GROUP_DELETED, rq, id, scim__jstr(old, "displayName"), NULL, NULL, NULL, rs)))
    goto out;
  rs->status = 204;
out:
  json_decref(m.added);
  json_decref(m.removed);
  json_decref(old);
  return rc;
}

