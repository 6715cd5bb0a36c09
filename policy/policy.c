/* policy/policy.c — documents, compilation to group ids, per-user
 * effective decisions, explanation, and the decision cache (policy.h).
 * Users, groups and membership are read through the directory
 * (store/dir.h), never through SCIM's protocol layer. */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/text.h"
#include "store/dir.h"

#define MAX_RULES 10000
#define MAX_PATTERNS 1000
#define PATTERN_MAX 256
#define APPROVER_ID_SZ 64 /* sizeof pol_approval.approvers[0] */

const char *pol_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case POL_EINVALID: return "invalid policy document";
  case POL_EAMBIGUOUS: return "ambiguous group name";
  default: break;
  }
  if (err <= POL_ERR_FIRST && err >= POL_ERR_LAST) return "unknown policy error";
  return st_strerror(err);
}

const char *pol_decision_name(pol_decision d) {
  switch (d) {
  case POL_BLOCK: return "block";
  case POL_APPROVE: return "approve";
  case POL_ALLOW: return "allow";
  default: return "hidden";
  }
}

bool pol_glob(const char *p, const char *s) {
  const char *star = NULL, *ss = NULL;
  while (*s) {
    if (*p == '?' || (*p && *p == *s)) {
      p++;
      s++;
    } else if (*p == '*') {
      star = p++;
      ss = s;
    } else if (star) {
      p = star + 1;
      s = ++ss;
    } else {
      return false;
    }
  }
  while (*p == '*') p++;
  return !*p;
}

/* ---------- validation ---------- */

static void add(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char *err, size_t errlen, const char *fmt, ...) {
  size_t l = strlen(err);
  if (l + 4 >= errlen) return;
  if (l) {
    snprintf(err + l, errlen - l, "; ");
    l += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + l, errlen - l, fmt, ap);
  va_end(ap);
}

static bool action_ok(const char *a) { return a && (!strcmp(a, "allow") || !strcmp(a, "block")); }

static bool pattern_ok(const char *p) {
  size_t n = strlen(p);
  if (!n || n > PATTERN_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return false;
  return true;
}

static bool connector_name_ok(const char *c) {
  if (!strcmp(c, "*")) return true;
  size_t n = strlen(c);
  if (!n || n > 32) return false;
  for (size_t i = 0; i < n; i++)
    if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '-')) return false;
  return true;
}

/* An approver group id is kept, NUL-terminated, in pol_approval's slots. */
_Static_assert(sizeof(((pol_approval *)0)->approvers[0]) == APPROVER_ID_SZ && ST_DIR_ID_LEN < APPROVER_ID_SZ,
               "a SCIM group id fits an approver slot");

static bool int_in(const json_t *v, json_int_t lo, json_int_t hi) {
  return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

/* The approval fields of rule i: who decides, how long a held call waits,
 * how long an approval stays a grant. They mean something only next to
 * "approve" patterns, so elsewhere they are an error, not ignored. */
static void validate_approval(const json_t *r, size_t i, char *err, size_t errlen) {
  json_t *ap = json_object_get(r, "approve");
  bool approves = json_is_array(ap) && json_array_size(ap) > 0;
  static const char *const fields[] = {"approvers", "approval_timeout_s", "grant_minutes"};
  for (int f = 0; f < 3; f++)
    if (json_object_get(r, fields[f]) && !approves)
      add(err, errlen, "rules[%zu].%s needs \"approve\" patterns in the same rule", i, fields[f]);
  json_t *a = json_object_get(r, "approvers");
  if (a) {
    if (!json_is_array(a) || !json_array_size(a) || json_array_size(a) > POL_APPROVERS_MAX) {
      add(err, errlen, "rules[%zu].approvers must be a non-empty array of at most %d group names or \"id:<id>\"", i,
          POL_APPROVERS_MAX);
    } else {
      size_t j;
      json_t *e;
      json_array_foreach(a, j, e) {
        const char *s = json_string_value(e);
        if (!s || !*s || strlen(s) > 256 || !strcmp(s, "*"))
          add(err, errlen, "rules[%zu].approvers[%zu] must be a group name or \"id:<id>\" (not \"*\")", i, j);
        else if (!strncmp(s, "id:", 3) && (!s[3] || strlen(s + 3) >= APPROVER_ID_SZ))
          add(err, errlen, "rules[%zu].approvers[%zu]: a group id is 1-%d characters", i, j, APPROVER_ID_SZ - 1);
      }
    }
  }
  json_t *t = json_object_get(r, "approval_timeout_s");
  if (t && !int_in(t, 1, 86400)) add(err, errlen, "rules[%zu].approval_timeout_s must be an integer from 1 to 86400", i);
  json_t *gm = json_object_get(r, "grant_minutes");
  if (gm && !int_in(gm, 0, 1440)) add(err, errlen, "rules[%zu].grant_minutes must be an integer from 0 to 1440", i);
}

int pol_validate(const json_t *doc, char *err, size_t errlen) {
  err[0] = 0;
  if (!json_is_object(doc)) {
    add(err, errlen, "the policy must be a JSON object");
    return POL_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)doc, k, v) if (strcmp(k, "version") && strcmp(k, "default") &&
                                               strcmp(k, "connectors") && strcmp(k, "rules"))
      add(err, errlen, "unknown key \"%.60s\"", k);
  json_t *ver = json_object_get(doc, "version");
  if (!json_is_integer(ver) || json_integer_value(ver) != 1) add(err, errlen, "\"version\" must be 1");
  json_t *def = json_object_get(doc, "default");
  if (def && !action_ok(json_string_value(def))) add(err, errlen, "\"default\" must be \"allow\" or \"block\"");
  json_t *conns = json_object_get(doc, "connectors");
  if (conns) {
    if (!json_is_object(conns)) add(err, errlen, "\"connectors\" must be an object");
    else
      json_object_foreach(conns, k, v) {
        if (!connector_name_ok(k) || !strcmp(k, "*")) add(err, errlen, "connectors: invalid connector name \"%.40s\"", k);
        if (!json_is_object(v)) {
          add(err, errlen, "connectors.%.40s must be an object", k);
          continue;
        }
        const char *kk;
        json_t *vv;
        json_object_foreach(v, kk, vv) if (strcmp(kk, "default"))
            add(err, errlen, "connectors.%.40s: unknown key \"%.40s\"", k, kk);
        json_t *d = json_object_get(v, "default");
        if (d && !action_ok(json_string_value(d)))
          add(err, errlen, "connectors.%.40s.default must be \"allow\" or \"block\"", k);
      }
  }
  json_t *rules = json_object_get(doc, "rules");
  if (!json_is_array(rules)) {
    add(err, errlen, "\"rules\" must be an array");
  } else if (json_array_size(rules) > MAX_RULES) {
    add(err, errlen, "at most %d rules", MAX_RULES);
  } else {
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
      if (!json_is_object(r)) {
        add(err, errlen, "rules[%zu] must be an object", i);
        continue;
      }
      json_object_foreach(r, k, v) if (strcmp(k, "groups") && strcmp(k, "connector") && strcmp(k, "allow") &&
                                       strcmp(k, "block") && strcmp(k, "approve") && strcmp(k, "approvers") &&
                                       strcmp(k, "approval_timeout_s") && strcmp(k, "grant_minutes"))
          add(err, errlen, "rules[%zu]: unknown key \"%.40s\"", i, k);
      json_t *g = json_object_get(r, "groups");
      if (!json_is_array(g) || !json_array_size(g)) add(err, errlen, "rules[%zu].groups must be a non-empty array", i);
      else {
        size_t j;
        json_t *e;
        json_array_foreach(g, j, e) {
          const char *s = json_string_value(e);
          if (!s || !*s || strlen(s) > 256) add(err, errlen, "rules[%zu].groups[%zu] must be a group name, \"id:<id>\" or \"*\"", i, j);
        }
      }
      const char *c = json_string_value(json_object_get(r, "connector"));
      if (!c || !connector_name_ok(c)) add(err, errlen, "rules[%zu].connector must be a connector name or \"*\"", i);
      bool any = false;
      static const char *const lists[] = {"allow", "block", "approve"};
      for (int l = 0; l < 3; l++) {
        json_t *a = json_object_get(r, lists[l]);
        if (!a) continue;
        any = true;
        if (!json_is_array(a) || json_array_size(a) > MAX_PATTERNS) {
          add(err, errlen, "rules[%zu].%s must be an array of tool names or globs", i, lists[l]);
          continue;
        }
        size_t j;
        json_t *e;
        json_array_foreach(a, j, e) if (!json_is_string(e) || !pattern_ok(json_string_value(e)))
            add(err, errlen, "rules[%zu].%s[%zu] must be a tool name or glob (1-256 printable characters)", i,
                lists[l], j);
      }
      if (!any) add(err, errlen, "rules[%zu] needs at least one of allow, block, approve", i);
      validate_approval(r, i, err, errlen);
    }
  }
  return err[0] ? POL_EINVALID : 0;
}

/* ---------- storage ---------- */

static size_t key(const char *tenant, char kind, char *k) {
  size_t n = strlen(tenant);
  memcpy(k, tenant, n + 1);
  k[n + 1] = kind;
  return n + 2;
}

int pol_get(st_txn *txn, const char *tenant, json_t **rec) {
  char k[80];
  st_val v;
  *rec = NULL;
  if (strlen(tenant) > 63) return ST_ENOTFOUND;
  int rc = st_get(txn, ST_DB_POLICY, k, key(tenant, 'p', k), &v);
  if (rc) return rc;
  *rec = json_loadb(v.data, v.len, 0, NULL);
  return *rec ? 0 : ST_ECORRUPT;
}

int pol_approver_groups(st_txn *txn, const char *tenant, json_t *ids, bool *tenant_default) {
  *tenant_default = false;
  json_t *rec;
  int rc = pol_get(txn, tenant, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  size_t i, j;
  json_t *cr, *g;
  json_array_foreach(json_object_get(rec, "compiled"), i, cr) {
    if (!json_array_size(json_object_get(cr, "approve"))) continue; /* approval fields live only on approve rules */
    json_t *ap = json_object_get(cr, "approvers");
    if (!ap) *tenant_default = true;
    json_array_foreach(ap, j, g) {
      json_t *id = json_object_get(g, "id"); /* absent: a pending name, approves nothing */
      if (json_is_string(id)) json_array_append(ids, id);
    }
  }
  json_decref(rec);
  return 0;
}

uint64_t pol_generation(st_txn *txn, const char *tenant) {
  char k[80];
  st_val v;
  uint64_t g = 0;
  if (strlen(tenant) <= 63 && st_get(txn, ST_DB_POLICY, k, key(tenant, 'g', k), &v) == 0 && v.len == 8)
    memcpy(&g, v.data, 8);
  return g;
}

int pol_generation_bump(st_txn *txn, const char *tenant) {
  char k[80];
  uint64_t g = pol_generation(txn, tenant) + 1;
  return st_put(txn, ST_DB_POLICY, k, key(tenant, 'g', k), &g, 8, 0);
}

int pol_register_purge(st_store *st) { return st_purge_add(st, "policy", pol_purge_tenant, NULL); }

int pol_purge_tenant(st_txn *txn, const char *tenant, int limit) {
  char k[80];
  int n = 0;
  for (char kind = 'g'; kind <= 'p' && n < limit; kind = kind == 'g' ? 'p' : 'q') {
    int rc = st_del(txn, ST_DB_POLICY, k, key(tenant, kind, k));
    if (rc == 0) n++;
    else if (rc != ST_ENOTFOUND) return rc;
  }
  return n;
}

/* Resolves one group reference to {"id":…} / {"name":…,"pending":true} /
 * "*". Ambiguous names fail. approver: the reference is one of a rule's
 * "approvers" (its warnings say what a missing group means there). */
static json_t *resolve(st_txn *txn, const char *tenant, const char *ref, bool approver, char *err, size_t errlen,
                       int *ambiguous, json_t *warnings) {
  if (!strcmp(ref, "*")) return json_string("*");
  if (!strncmp(ref, "id:", 3)) {
    if (st_dir_group_exists(txn, tenant, ref + 3) != 0) {
      char w[300];
      snprintf(w, sizeof w,
               approver ? "approver group id \"%.100s\" does not exist: nobody approves through it"
                        : "group id \"%.100s\" does not exist: the rule matches nobody",
               ref + 3);
      json_array_append_new(warnings, json_string(w));
    }
    return json_pack("{s:s}", "id", ref + 3);
  }
  /* a name: unique, several (ambiguous), or none yet (pending) */
  json_t *ids = json_array();
  st_dir_groups_by_name(txn, tenant, ref, ids, 2);
  size_t n = json_array_size(ids);
  json_t *out = NULL;
  if (n == 1) {
    out = json_pack("{s:O}", "id", json_array_get(ids, 0));
  } else if (n > 1) {
    *ambiguous = 1;
    add(err, errlen, "%sgroup name \"%.100s\" matches several groups: use \"id:<group id>\"",
        approver ? "approver " : "", ref);
  } else {
    char w[300];
    snprintf(w, sizeof w,
             approver ? "approver group \"%.100s\" does not exist yet; nobody approves through it until a group of "
                        "that name is pushed"
                      : "group \"%.100s\" does not exist yet; the rule binds when a group of that name is pushed",
             ref);
    json_array_append_new(warnings, json_string(w));
    out = json_pack("{s:s,s:b}", "name", ref, "pending", 1);
  }
  json_decref(ids);
  return out;
}

/* Records written before "rev" existed count their version as the rev. */
static int record_rev(const json_t *rec) {
  json_t *r = json_object_get(rec, "rev");
  return (int)json_integer_value(r ? r : json_object_get(rec, "version"));
}

int pol_put(st_txn *txn, const char *tenant, const json_t *doc, const char *now, int *version_out,
            json_t **warnings, char *err, size_t errlen) {
  return pol_put_ex(txn, tenant, doc, now, version_out, warnings, NULL, NULL, err, errlen);
}

int pol_put_ex(st_txn *txn, const char *tenant, const json_t *doc, const char *now, int *version_out,
               json_t **warnings, json_t **before, json_t **compiled_out, char *err, size_t errlen) {
  if (before) *before = NULL;
  if (compiled_out) *compiled_out = NULL;
  *warnings = json_array();
  int rc = pol_validate(doc, err, errlen);
  if (rc) return rc;
  int ambiguous = 0;
  json_t *compiled = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(doc, "rules"), i, r) {
    json_t *groups = json_array();
    size_t j;
    json_t *g;
    json_array_foreach(json_object_get(r, "groups"), j, g) {
      json_t *res = resolve(txn, tenant, json_string_value(g), false, err, errlen, &ambiguous, *warnings);
      if (res) json_array_append_new(groups, res);
    }
    json_t *cr = json_pack("{s:I,s:o,s:O}", "index", (json_int_t)i, "groups", groups, "connector",
                           json_object_get(r, "connector"));
    static const char *const lists[] = {"allow", "block", "approve"};
    for (int l = 0; l < 3; l++)
      json_object_set_new(cr, lists[l], json_deep_copy(json_object_get(r, lists[l])) ?: json_array());
    /* approval fields, only as written: an absent "approvers" is the
     * tenant's approver_groups, absent numbers their defaults */
    json_t *ap = json_object_get(r, "approvers");
    if (ap) {
      json_t *approvers = json_array();
      json_array_foreach(ap, j, g) {
        json_t *res = resolve(txn, tenant, json_string_value(g), true, err, errlen, &ambiguous, *warnings);
        if (res) json_array_append_new(approvers, res);
      }
      json_object_set_new(cr, "approvers", approvers);
    }
    static const char *const nums[] = {"approval_timeout_s", "grant_minutes"};
    for (int n = 0; n < 2; n++)
      if (json_object_get(r, nums[n])) json_object_set(cr, nums[n], json_object_get(r, nums[n]));
    json_array_append_new(compiled, cr);
  }
  if (ambiguous) {
    json_decref(compiled);
    return POL_EAMBIGUOUS;
  }
  json_t *old;
  int version = 1, rev = 1;
  bool narrows = false; /* no policy before: it showed nothing */
  if (pol_get(txn, tenant, &old) == 0) {
    version = (int)json_integer_value(json_object_get(old, "version")) + 1;
    rev = record_rev(old) + 1;
    narrows = pol_narrows(json_object_get(old, "compiled"), compiled);
    if (before) *before = old;
    else json_decref(old);
  }
  /* "rev" first: caches read it without parsing the record; it changes on
   * every write (a new document, or a pending name binding), "version"
   * only when an admin PUTs a document */
  json_t *rec = json_pack("{s:i,s:i,s:O,s:O,s:O,s:s}", "rev", rev, "version", version, "document", doc, "compiled",
                          compiled, "warnings", *warnings, "updated", now);
  char *s = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(rec);
  if (compiled_out && s) *compiled_out = compiled;
  else json_decref(compiled);
  if (!s) return ST_ENOMEM;
  char k[80];
  rc = st_put(txn, ST_DB_POLICY, k, key(tenant, 'p', k), s, strlen(s), 0);
  free(s);
  if (rc) return rc;
  *version_out = version;
  if ((rc = pol_generation_bump(txn, tenant))) return rc;
  pol_event ev = {tenant, version, narrows};
  return st_emit(txn, ST_EVENT_POLICY_PUT, &ev);
}

/* ---------- narrowing (what a PUT may hide) ---------- */

/* Whether compiled rule r shows `connector` ("" asks for a connector no
 * rule names: only rules for "*" show it). */
static bool rule_shows(const json_t *r, const char *connector) {
  const char *c = json_string_value(json_object_get(r, "connector"));
  return c && (!strcmp(c, "*") || (connector[0] && !strcmp(c, connector)));
}

/* Whether some rule of `rules` shows `connector` to group reference g
 * (a compiled entry: "*" or {"id":…}): a rule naming "*" shows it to
 * everyone, one naming the same id to that group's members. */
static bool shown_to(const json_t *rules, const char *connector, const json_t *g) {
  const char *id = json_is_string(g) ? NULL : json_string_value(json_object_get(g, "id"));
  size_t i, j;
  json_t *r, *h;
  json_array_foreach(rules, i, r) {
    if (!rule_shows(r, connector)) continue;
    json_array_foreach(json_object_get(r, "groups"), j, h) {
      if (json_is_string(h)) return true; /* "*" covers every group */
      const char *hid = json_string_value(json_object_get(h, "id"));
      if (id && hid && !strcmp(id, hid)) return true;
    }
  }
  return false;
}

/* Whether every group `before` shows `connector` to is still shown it by
 * `after`. */
static bool covered(const json_t *before, const json_t *after, const char *connector) {
  size_t i, j;
  json_t *r, *g;
  json_array_foreach(before, i, r) {
    if (!rule_shows(r, connector)) continue;
    json_array_foreach(json_object_get(r, "groups"), j, g) {
      /* a pending name matched nobody */
      if (!json_is_string(g) && !json_string_value(json_object_get(g, "id"))) continue;
      if (!shown_to(after, connector, g)) return false;
    }
  }
  return true;
}

bool pol_narrows(const json_t *before, const json_t *after) {
  if (!before) return false;
  if (!json_is_array(before) || !json_is_array(after)) return true;
  /* a connector no rule of `before` names was shown through "*" rules
   * only; `after` shows a connector it names at least as widely as one it
   * does not, so "" stands for every connector outside `before` */
  if (!covered(before, after, "")) return true;
  size_t i;
  json_t *r;
  json_array_foreach(before, i, r) {
    const char *c = json_string_value(json_object_get(r, "connector"));
    if (!c) return true;
    if (strcmp(c, "*") && !covered(before, after, c)) return true;
  }
  return false;
}

/* Does the group a compiled reference points at exist now? "*" always;
 * a pending name never; an id when the directory has it. */
static bool group_live(st_txn *txn, const char *tenant, const json_t *g) {
  if (json_is_string(g)) return true;
  const char *id = json_string_value(json_object_get(g, "id"));
  if (!id) return false;
  return st_dir_group_exists(txn, tenant, id) == 0;
}

int pol_visibility_warnings(st_txn *txn, const char *tenant, const json_t *connectors, json_t *warnings) {
  json_t *rec;
  int rc = pol_get(txn, tenant, &rec);
  if (rc) return rc;
  rc = pol_visibility_warnings_of(txn, tenant, json_object_get(rec, "compiled"), connectors, warnings);
  json_decref(rec);
  return rc;
}

int pol_visibility_warnings_of(st_txn *txn, const char *tenant, const json_t *compiled, const json_t *connectors,
                               json_t *warnings) {
  size_t i;
  json_t *c;
  json_array_foreach(connectors, i, c) {
    const char *name = json_is_string(c) ? json_string_value(c) : json_string_value(json_object_get(c, "name"));
    if (!name) continue;
    size_t nrules = 0, r;
    bool visible = false;
    json_t *cr;
    json_array_foreach(compiled, r, cr) {
      const char *rc_conn = json_string_value(json_object_get(cr, "connector")) ?: "";
      if (strcmp(rc_conn, "*") && strcmp(rc_conn, name)) continue;
      nrules++;
      size_t k;
      json_t *g;
      json_array_foreach(json_object_get(cr, "groups"), k, g) if (!visible && group_live(txn, tenant, g)) visible = true;
      if (visible) break;
    }
    if (visible) continue;
    char w[400];
    if (nrules == 0)
      snprintf(w, sizeof w,
               "connector \"%.40s\" is visible to nobody: no rule names it (or \"*\"); a connector is shown only to "
               "users a matching rule covers, whatever \"default\" says",
               name);
    else
      snprintf(w, sizeof w,
               "connector \"%.40s\" is visible to nobody: the rules naming it list only groups that do not exist "
               "(yet); it appears when such a group is pushed",
               name);
    json_array_append_new(warnings, json_string(w));
  }
  return 0;
}

json_t *pol_view(st_txn *txn, const char *tenant, const json_t *rec) {
  json_t *o = json_pack("{s:O,s:O,s:O,s:O}", "version", json_object_get(rec, "version"), "document",
                        json_object_get(rec, "document"), "warnings", json_object_get(rec, "warnings"),
                        "updated", json_object_get(rec, "updated"));
  /* bindings: which group each name is bound to now, with current names;
   * a rule's "groups" first, then its "approvers" (marked "field") */
  json_t *bindings = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(rec, "compiled"), i, r) {
    static const char *const refs[] = {"groups", "approvers"};
    for (int f = 0; f < 2; f++) {
      bool approver = f == 1;
      size_t j;
      json_t *g;
      json_array_foreach(json_object_get(r, refs[f]), j, g) {
        if (json_is_string(g)) continue;
        const char *id = json_string_value(json_object_get(g, "id"));
        const char *as_written = json_string_value(json_array_get(
            json_object_get(json_array_get(json_object_get(json_object_get(rec, "document"), "rules"), i), refs[f]), j));
        json_t *b = json_pack("{s:I,s:s}", "rule", (json_int_t)i, "as_written", as_written ? as_written : "");
        if (approver) json_object_set_new(b, "field", json_string("approvers"));
        if (id) {
          json_object_set_new(b, "group_id", json_string(id));
          json_t *grp = NULL;
          st_dir_group_get(txn, tenant, id, &grp);
          const char *name = json_string_value(json_object_get(grp, "displayName"));
          json_object_set_new(b, "current_name", name ? json_string(name) : json_null());
          if (!grp)
            json_object_set_new(b, "note", json_string(approver ? "the group no longer exists: nobody approves through it"
                                                                : "the group no longer exists: the rule matches nobody"));
          else if (as_written && strncmp(as_written, "id:", 3) && !st_text_fold_eq(as_written, name))
            json_object_set_new(b, "note", json_string(approver ? "renamed in the directory since the policy was written; "
                                                                  "its members still approve"
                                                                : "renamed in the directory since the policy was written; "
                                                                  "the rule still applies to this group"));
          json_decref(grp);
        } else {
          json_object_set_new(b, "pending", json_true());
          const char *dead = json_string_value(json_object_get(g, "deleted"));
          if (dead) { /* it was bound, and that group was deleted (unbind_deleted) */
            json_object_set_new(b, "deleted_group_id", json_string(dead));
            json_object_set_new(b, "note", json_string(approver ? "the group it was bound to was deleted: nobody approves "
                                                                  "through it until a group of this name is pushed"
                                                                : "the group it was bound to was deleted: the rule binds "
                                                                  "the next group of this name pushed"));
          } else {
            json_object_set_new(b, "note", json_string(approver ? "no group of this name yet: nobody approves through it"
                                                                : "no group of this name yet"));
          }
        }
        json_array_append_new(bindings, b);
      }
    }
  }
  json_object_set_new(o, "bindings", bindings);
  return o;
}

/* ---------- compiled policies and per-user indexes ---------- */

/* A tenant's policy parsed once per version into C structures (the JSON
 * record is ~150 bytes a rule; parsing it on every cold decision would
 * cost milliseconds). */
typedef struct cpat {
  char *pattern;
  int action; /* POL_BLOCK / POL_APPROVE / POL_ALLOW */
} cpat;

typedef struct crule {
  char connector[40];
  char **groups; /* group ids */
  size_t ngroups;
  bool star;     /* "*": every active user */
  cpat *pats;
  size_t npats;
  /* approval, for rules with approve patterns */
  bool tenant_default;                 /* no "approvers": the tenant's approver_groups */
  char (*approvers)[APPROVER_ID_SZ];   /* bound approver group ids (pending names left out) */
  size_t napprovers;
  int timeout_s, grant_minutes;
} crule;

#define DEFAULT_APPROVAL_TIMEOUT_S 300

typedef struct pol_compiled {
  int rev;
  int version;
  int def_action;
  json_t *conn_defaults;
  crule *rules;
  size_t nrules;
} pol_compiled;

static void compiled_free(pol_compiled *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nrules; i++) {
    for (size_t j = 0; j < c->rules[i].ngroups; j++) free(c->rules[i].groups[j]);
    free(c->rules[i].groups);
    for (size_t j = 0; j < c->rules[i].npats; j++) free(c->rules[i].pats[j].pattern);
    free(c->rules[i].pats);
    free(c->rules[i].approvers);
  }
  free(c->rules);
  json_decref(c->conn_defaults);
  free(c);
}

/* ST_ENOTFOUND: the tenant has no policy. */
static int compiled_load(st_txn *txn, const char *tenant, pol_compiled **out) {
  *out = NULL;
  json_t *rec;
  int rc = pol_get(txn, tenant, &rec);
  if (rc) return rc;
  pol_compiled *c = calloc(1, sizeof *c);
  json_t *doc = json_object_get(rec, "document");
  json_t *compiled = json_object_get(rec, "compiled");
  if (!c || !(c->rules = calloc(json_array_size(compiled) + 1, sizeof *c->rules))) {
    free(c);
    json_decref(rec);
    return ST_ENOMEM;
  }
  c->version = (int)json_integer_value(json_object_get(rec, "version"));
  c->rev = record_rev(rec);
  c->def_action = !strcmp(json_string_value(json_object_get(doc, "default")) ?: "block", "allow") ? POL_ALLOW : POL_BLOCK;
  c->conn_defaults = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(doc, "connectors"), k, v) {
    json_t *d = json_object_get(v, "default");
    if (d) json_object_set(c->conn_defaults, k, d);
  }
  size_t i;
  json_t *cr;
  json_array_foreach(compiled, i, cr) {
    crule *r = &c->rules[c->nrules++];
    snprintf(r->connector, sizeof r->connector, "%s", json_string_value(json_object_get(cr, "connector")) ?: "");
    json_t *gs = json_object_get(cr, "groups");
    r->groups = calloc(json_array_size(gs) + 1, sizeof *r->groups);
    size_t j;
    json_t *g;
    json_array_foreach(gs, j, g) {
      if (json_is_string(g)) r->star = true;
      else if (json_string_value(json_object_get(g, "id")) && r->groups)
        r->groups[r->ngroups++] = strdup(json_string_value(json_object_get(g, "id")));
    }
    static const char *const lists[] = {"block", "approve", "allow"};
    static const int acts[] = {POL_BLOCK, POL_APPROVE, POL_ALLOW};
    size_t total = 0;
    for (int l = 0; l < 3; l++) total += json_array_size(json_object_get(cr, lists[l]));
    r->pats = calloc(total + 1, sizeof *r->pats);
    for (int l = 0; l < 3 && r->pats; l++) {
      json_t *p;
      json_array_foreach(json_object_get(cr, lists[l]), j, p) {
        r->pats[r->npats].pattern = strdup(json_string_value(p));
        r->pats[r->npats].action = acts[l];
        if (r->pats[r->npats].pattern) r->npats++;
      }
    }
    json_t *ap = json_object_get(cr, "approvers");
    r->tenant_default = !ap;
    r->timeout_s = (int)json_integer_value(json_object_get(cr, "approval_timeout_s")) ?: DEFAULT_APPROVAL_TIMEOUT_S;
    r->grant_minutes = (int)json_integer_value(json_object_get(cr, "grant_minutes"));
    r->approvers = calloc(json_array_size(ap) + 1, sizeof *r->approvers);
    json_array_foreach(ap, j, g) {
      const char *id = json_string_value(json_object_get(g, "id")); /* NULL: pending, approves nothing */
      if (id && r->approvers && strlen(id) < sizeof r->approvers[0])
        memcpy(r->approvers[r->napprovers++], id, strlen(id) + 1);
    }
  }
  json_decref(rec);
  *out = c;
  return 0;
}

/* Open-addressing string → action table (strongest action wins on insert). */
typedef struct stab {
  char **keys;
  size_t *lens;
  unsigned char *vals;
  size_t cap, n;
} stab;

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

static void stab_free(stab *t) {
  for (size_t i = 0; i < t->cap; i++) free(t->keys ? t->keys[i] : NULL);
  free(t->keys);
  free(t->lens);
  free(t->vals);
  memset(t, 0, sizeof *t);
}

static int stab_put(stab *t, const char *k, size_t n, int action);

static int stab_grow(stab *t) {
  stab nt = {0};
  nt.cap = t->cap ? t->cap * 2 : 16;
  nt.keys = calloc(nt.cap, sizeof *nt.keys);
  nt.lens = calloc(nt.cap, sizeof *nt.lens);
  nt.vals = calloc(nt.cap, 1);
  if (!nt.keys || !nt.lens || !nt.vals) {
    stab_free(&nt);
    return -1;
  }
  for (size_t i = 0; i < t->cap; i++)
    if (t->keys[i]) stab_put(&nt, t->keys[i], t->lens[i], t->vals[i]);
  stab_free(t);
  *t = nt;
  return 0;
}

static int stab_put(stab *t, const char *k, size_t n, int action) {
  if ((t->n + 1) * 2 > t->cap && stab_grow(t) != 0) return -1;
  size_t i = fnv(k, n) & (t->cap - 1);
  while (t->keys[i]) {
    if (t->lens[i] == n && !memcmp(t->keys[i], k, n)) {
      if (action < t->vals[i]) t->vals[i] = (unsigned char)action;
      return 0;
    }
    i = (i + 1) & (t->cap - 1);
  }
  if (!(t->keys[i] = malloc(n + 1))) return -1;
  memcpy(t->keys[i], k, n);
  t->keys[i][n] = 0;
  t->lens[i] = n;
  t->vals[i] = (unsigned char)action;
  t->n++;
  return 0;
}

static int stab_get(const stab *t, const char *k, size_t n, uint64_t h) {
  if (!t->cap) return 0;
  size_t i = h & (t->cap - 1);
  while (t->keys[i]) {
    if (t->lens[i] == n && !memcmp(t->keys[i], k, n)) return t->vals[i];
    i = (i + 1) & (t->cap - 1);
  }
  return 0;
}

/* One connector's (or "*"'s) patterns for one user, indexed: exact names,
 * "prefix*" globs by prefix, and the remaining globs. */
typedef struct cidx {
  char connector[40];
  stab exact, prefix;
  cpat *globs; /* borrowed pattern strings (owned by the compiled policy copy) */
  size_t nglobs;
} cidx;

/* One approve rule that applies to the user, kept whole: the per-connector
 * indexes merge patterns and forget which rule said what. */
typedef struct uappr {
  char connector[40];
  char **pats;           /* the rule's approve patterns (copies) */
  size_t npats;
  char (*approvers)[APPROVER_ID_SZ];
  size_t napprovers;
  bool tenant_default;
  int timeout_s, grant_minutes;
} uappr;

struct pol_user {
  int version;
  int rev;
  uint64_t generation;
  int def_action;
  json_t *conn_defaults;
  cidx *idx;
  size_t nidx;
  char **strings; /* glob pattern copies */
  size_t nstrings;
  stab memo;      /* connector \0 tool → decision; single-threaded (per loop) */
  uappr *appr;    /* the matching rules with approve patterns, in document order */
  size_t nappr;
};

void pol_user_free(pol_user *u) {
  if (!u) return;
  for (size_t i = 0; i < u->nidx; i++) {
    stab_free(&u->idx[i].exact);
    stab_free(&u->idx[i].prefix);
    free(u->idx[i].globs);
  }
  free(u->idx);
  for (size_t i = 0; i < u->nstrings; i++) free(u->strings[i]);
  free(u->strings);
  for (size_t i = 0; i < u->nappr; i++) {
    for (size_t j = 0; j < u->appr[i].npats; j++) free(u->appr[i].pats[j]);
    free(u->appr[i].pats);
    free(u->appr[i].approvers);
  }
  free(u->appr);
  stab_free(&u->memo);
  json_decref(u->conn_defaults);
  free(u);
}

int pol_user_version(const pol_user *u) { return u->version; }
int pol_user_rev(const pol_user *u) { return u->rev; }
uint64_t pol_user_generation(const pol_user *u) { return u->generation; }

static bool rule_matches_user(const json_t *cr, const json_t *user_groups, bool active) {
  size_t j;
  json_t *g;
  json_array_foreach(json_object_get(cr, "groups"), j, g) {
    if (json_is_string(g)) {
      if (active) return true; /* "*": every active user */
      continue;
    }
    const char *id = json_string_value(json_object_get(g, "id"));
    if (!id) continue;
    size_t k;
    json_t *ug;
    json_array_foreach(user_groups, k, ug) if (!strcmp(json_string_value(ug), id)) return true;
  }
  return false;
}

static cidx *idx_for(pol_user *u, const char *connector) {
  for (size_t i = 0; i < u->nidx; i++)
    if (!strcmp(u->idx[i].connector, connector)) return &u->idx[i];
  cidx *n = realloc(u->idx, (u->nidx + 1) * sizeof *n);
  if (!n) return NULL;
  u->idx = n;
  cidx *e = &u->idx[u->nidx++];
  memset(e, 0, sizeof *e);
  snprintf(e->connector, sizeof e->connector, "%s", connector);
  return e;
}

static int add_pattern(pol_user *u, cidx *e, const cpat *p) {
  const char *s = p->pattern;
  size_t n = strlen(s);
  const char *wild = strpbrk(s, "*?");
  if (!wild) return stab_put(&e->exact, s, n, p->action);
  if (wild == s + n - 1 && *wild == '*') return stab_put(&e->prefix, s, n - 1, p->action);
  for (size_t i = 0; i < e->nglobs; i++)
    if (!strcmp(e->globs[i].pattern, s)) {
      if (p->action < e->globs[i].action) e->globs[i].action = p->action;
      return 0;
    }
  cpat *g = realloc(e->globs, (e->nglobs + 1) * sizeof *g);
  char **str = realloc(u->strings, (u->nstrings + 1) * sizeof *str);
  if (str) u->strings = str;
  if (!g || !str) {
    if (g) e->globs = g;
    return -1;
  }
  e->globs = g;
  char *copy = strdup(s);
  if (!copy) return -1;
  u->strings[u->nstrings++] = copy;
  e->globs[e->nglobs].pattern = copy;
  e->globs[e->nglobs].action = p->action;
  e->nglobs++;
  return 0;
}

/* Keeps rule cr's approval (its approve patterns and approvers) in u. */
static int add_approval(pol_user *u, const cidx *e, const crule *cr) {
  size_t n = 0;
  for (size_t k = 0; k < cr->npats; k++) n += cr->pats[k].action == POL_APPROVE;
  if (!n) return 0;
  uappr *na = realloc(u->appr, (u->nappr + 1) * sizeof *na);
  if (!na) return ST_ENOMEM;
  u->appr = na;
  uappr *a = &u->appr[u->nappr++];
  memset(a, 0, sizeof *a);
  memcpy(a->connector, e->connector, sizeof a->connector);
  a->tenant_default = cr->tenant_default;
  a->timeout_s = cr->timeout_s;
  a->grant_minutes = cr->grant_minutes;
  a->pats = calloc(n, sizeof *a->pats);
  a->approvers = calloc(cr->napprovers + 1, sizeof *a->approvers);
  if (!a->pats || !a->approvers) return ST_ENOMEM;
  for (size_t k = 0; k < cr->npats; k++)
    if (cr->pats[k].action == POL_APPROVE && !(a->pats[a->npats++] = strdup(cr->pats[k].pattern))) return ST_ENOMEM;
  memcpy(a->approvers, cr->approvers, cr->napprovers * sizeof *a->approvers);
  a->napprovers = cr->napprovers;
  return 0;
}

static int user_from_compiled(const pol_compiled *c, const json_t *groups, bool active, uint64_t gen, pol_user **out) {
  pol_user *u = calloc(1, sizeof *u);
  if (!u) return ST_ENOMEM;
  u->generation = gen;
  u->def_action = POL_BLOCK;
  *out = u;
  if (!c) return 0; /* no policy: every connector hidden */
  u->version = c->version;
  u->rev = c->rev;
  u->def_action = c->def_action;
  u->conn_defaults = json_incref(c->conn_defaults);
  if (!active) return 0;
  stab ug = {0};
  size_t i;
  json_t *g;
  json_array_foreach(groups, i, g) stab_put(&ug, json_string_value(g), strlen(json_string_value(g)), 1);
  int rc = 0;
  for (size_t r = 0; r < c->nrules && !rc; r++) {
    const crule *cr = &c->rules[r];
    bool hit = cr->star;
    for (size_t k = 0; !hit && k < cr->ngroups; k++) {
      const char *id = cr->groups[k];
      size_t n = strlen(id);
      hit = stab_get(&ug, id, n, fnv(id, n)) != 0;
    }
    if (!hit) continue;
    cidx *e = idx_for(u, cr->connector);
    if (!e) rc = ST_ENOMEM;
    for (size_t k = 0; e && k < cr->npats && !rc; k++)
      if (add_pattern(u, e, &cr->pats[k]) != 0) rc = ST_ENOMEM;
    if (e && !rc) rc = add_approval(u, e, cr);
  }
  stab_free(&ug);
  return rc;
}

static int user_groups_state(st_txn *txn, const char *tenant, const char *user_id, json_t **groups, bool *active) {
  json_t *user;
  *groups = NULL;
  *active = false;
  int rc = st_dir_user_find(txn, tenant, user_id, &user);
  if (rc == ST_ENOTFOUND) {
    *groups = json_array();
    return 0;
  }
  if (rc) return rc;
  *active = st_dir_user_usable(txn, tenant, user);
  json_decref(user);
  return st_dir_user_groups(txn, tenant, user_id, groups);
}

int pol_user_load(st_txn *txn, const char *tenant, const char *user_id, pol_user **out) {
  *out = NULL;
  uint64_t gen = pol_generation(txn, tenant);
  pol_compiled *c = NULL;
  int rc = compiled_load(txn, tenant, &c);
  if (rc && rc != ST_ENOTFOUND) return rc;
  json_t *groups;
  bool active;
  if ((rc = user_groups_state(txn, tenant, user_id, &groups, &active)) == 0) {
    rc = user_from_compiled(c, groups, active, gen, out);
    if (rc) {
      pol_user_free(*out);
      *out = NULL;
    }
  }
  json_decref(groups);
  compiled_free(c);
  return rc;
}

struct pol_batch {
  char tenant[64];
  uint64_t generation;
  pol_compiled *c; /* NULL: the tenant has no policy */
};

int pol_batch_open(st_txn *txn, const char *tenant, pol_batch **out) {
  *out = NULL;
  pol_batch *b = calloc(1, sizeof *b);
  if (!b) return ST_ENOMEM;
  snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
  b->generation = pol_generation(txn, tenant);
  int rc = compiled_load(txn, tenant, &b->c);
  if (rc && rc != ST_ENOTFOUND) {
    free(b);
    return rc;
  }
  *out = b;
  return 0;
}

int pol_batch_user(const pol_batch *b, st_txn *txn, const char *user_id, pol_user **out) {
  *out = NULL;
  json_t *groups;
  bool active;
  int rc = user_groups_state(txn, b->tenant, user_id, &groups, &active);
  if (rc == 0) {
    rc = user_from_compiled(b->c, groups, active, b->generation, out);
    if (rc) {
      pol_user_free(*out);
      *out = NULL;
    }
  }
  json_decref(groups);
  return rc;
}

void pol_batch_free(pol_batch *b) {
  if (!b) return;
  compiled_free(b->c);
  free(b);
}

int pol_approval_for(const pol_user *u, const char *connector, const char *tool, pol_approval *out) {
  memset(out, 0, sizeof *out);
  out->timeout_s = DEFAULT_APPROVAL_TIMEOUT_S;
  if (!u || pol_decide(u, connector, tool) != POL_APPROVE) return POL_EINVALID;
  bool any = false;
  for (size_t i = 0; i < u->nappr; i++) {
    const uappr *a = &u->appr[i];
    if (strcmp(a->connector, "*") && strcmp(a->connector, connector)) continue;
    bool hit = false;
    for (size_t k = 0; k < a->npats && !hit; k++) hit = a->pats[k] && pol_glob(a->pats[k], tool);
    if (!hit) continue;
    /* several rules ask: the strictest of each wins, and any of their
     * approvers may decide */
    if (!any || a->timeout_s < out->timeout_s) out->timeout_s = a->timeout_s;
    if (!any || a->grant_minutes < out->grant_minutes) out->grant_minutes = a->grant_minutes;
    any = true;
    out->tenant_default = out->tenant_default || a->tenant_default;
    for (size_t k = 0; k < a->napprovers && out->napprovers < POL_APPROVERS_MAX; k++) {
      bool dup = false;
      for (size_t m = 0; m < out->napprovers && !dup; m++) dup = !strcmp(out->approvers[m], a->approvers[k]);
      if (!dup) memcpy(out->approvers[out->napprovers++], a->approvers[k], sizeof out->approvers[0]);
    }
  }
  return 0;
}

bool pol_connector_visible(const pol_user *u, const char *connector) {
  for (size_t i = 0; i < u->nidx; i++)
    if (!strcmp(u->idx[i].connector, "*") || !strcmp(u->idx[i].connector, connector)) return true;
  return false;
}

static int idx_best(const cidx *e, const char *tool, size_t n) {
  int best = stab_get(&e->exact, tool, n, fnv(tool, n));
  if (best == POL_BLOCK) return best;
  /* every prefix of the tool name (the empty prefix is the pattern "*") */
  uint64_t h = 1469598103934665603ULL;
  if (e->prefix.cap)
    for (size_t l = 0; l <= n; l++) {
      int a = stab_get(&e->prefix, tool, l, h);
      if (a && (!best || a < best)) best = a;
      if (l < n) h = (h ^ (unsigned char)tool[l]) * 1099511628211ULL;
    }
  for (size_t i = 0; i < e->nglobs && best != POL_BLOCK; i++)
    if ((!best || e->globs[i].action < best) && pol_glob(e->globs[i].pattern, tool)) best = e->globs[i].action;
  return best;
}

static pol_decision decide_uncached(const pol_user *u, const char *connector, const char *tool) {
  bool visible = false;
  int best = 0;
  size_t n = strlen(tool);
  for (size_t i = 0; i < u->nidx; i++) {
    const cidx *e = &u->idx[i];
    if (strcmp(e->connector, "*") && strcmp(e->connector, connector)) continue;
    visible = true;
    if (n > POL_TOOL_NAME_MAX) break;
    int a = idx_best(e, tool, n);
    if (a && (!best || a < best)) best = a;
  }
  if (!visible) return POL_HIDDEN;
  if (n > POL_TOOL_NAME_MAX) return POL_BLOCK; /* policy.h: not judged (the globs were not run) */
  if (best) return (pol_decision)best;
  const char *cd = json_string_value(json_object_get(u->conn_defaults, connector));
  if (cd) return !strcmp(cd, "allow") ? POL_ALLOW : POL_BLOCK;
  return (pol_decision)u->def_action;
}

#define MEMO_MAX 8192

pol_decision pol_decide(const pol_user *cu, const char *connector, const char *tool) {
  /* memoized per user: a pol_user lives in one loop's cache, so the memo
   * is never shared between threads */
  pol_user *u = (pol_user *)cu;
  char key[600];
  size_t cl = strlen(connector), tl = strlen(tool);
  if (cl + tl + 1 >= sizeof key) return decide_uncached(u, connector, tool);
  memcpy(key, connector, cl);
  key[cl] = 0;
  memcpy(key + cl + 1, tool, tl);
  size_t kl = cl + 1 + tl;
  int d = stab_get(&u->memo, key, kl, fnv(key, kl));
  if (d) return (pol_decision)(d - 1);
  pol_decision r = decide_uncached(u, connector, tool);
  if (u->memo.n >= MEMO_MAX) stab_free(&u->memo);
  stab_put(&u->memo, key, kl, (int)r + 1);
  return r;
}

bool pol_filter_tools(const pol_user *u, const char *connector, json_t *msg) {
  json_t *tools = json_object_get(json_object_get(msg, "result"), "tools");
  if (!json_is_array(tools)) return false;
  bool changed = false;
  for (size_t i = 0; i < json_array_size(tools);) {
    json_t *t = json_array_get(tools, i);
    const char *name = json_string_value(json_object_get(t, "name"));
    pol_decision d = name && u ? pol_decide(u, connector, name) : POL_BLOCK;
    if (d == POL_ALLOW) {
      i++;
      continue;
    }
    changed = true;
    if (d == POL_APPROVE) {
      /* the note goes before the whole description: cutting it to a
       * buffer could split a UTF-8 sequence, and jansson refuses such a
       * string, which left the description without the note */
      static const char note[] = "[requires approval: your organisation's policy must approve each call] ";
      json_t *dv = json_object_get(t, "description");
      const char *desc = json_string_value(dv);
      size_t dl = desc ? json_string_length(dv) : 0;
      char *buf = malloc(sizeof note + dl);
      json_t *nd = NULL;
      if (buf) {
        memcpy(buf, note, sizeof note - 1);
        if (dl) memcpy(buf + sizeof note - 1, desc, dl);
        nd = json_stringn(buf, sizeof note - 1 + dl);
        free(buf);
      }
      if (!nd || json_object_set_new(t, "description", nd)) {
        json_array_remove(tools, i); /* fail closed: not shown without its note */
        continue;
      }
      i++;
    } else {
      json_array_remove(tools, i);
    }
  }
  return changed;
}

json_t *pol_user_summary(st_txn *txn, const char *tenant, const char *user_id, const json_t *connectors) {
  json_t *out = json_array(), *rec = NULL, *user = NULL, *gids = NULL;
  if (!out) return NULL;
  if (pol_get(txn, tenant, &rec) || st_dir_user_get(txn, tenant, user_id, &user)) goto done;
  bool active = st_dir_user_usable(txn, tenant, user);
  st_dir_user_groups(txn, tenant, user_id, &gids);
  if (!gids || !active) goto done;
  size_t ci;
  json_t *cn;
  json_array_foreach(connectors, ci, cn) {
    const char *name = json_string_value(cn);
    if (!name) continue;
    static const char *const lists[] = {"allow", "block", "approve"};
    json_t *acc[3] = {json_array(), json_array(), json_array()};
    bool visible = false;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(rec, "compiled"), i, g) {
      if (!rule_matches_user(g, gids, active)) continue;
      const char *c = json_string_value(json_object_get(g, "connector"));
      if (!c || (strcmp(c, "*") && strcmp(c, name))) continue;
      visible = true;
      for (int l = 0; l < 3; l++) {
        size_t k, m;
        json_t *p, *q;
        json_array_foreach(json_object_get(g, lists[l]), k, p) {
          bool dup = false;
          json_array_foreach(acc[l], m, q) dup = dup || json_equal(p, q);
          if (!dup) json_array_append(acc[l], p);
        }
      }
    }
    if (visible)
      json_array_append_new(out, json_pack("{s:s,s:o,s:o,s:o}", "name", name, "allow", acc[0], "block", acc[1],
                                           "approve", acc[2]));
    else
      for (int l = 0; l < 3; l++) json_decref(acc[l]);
  }
done:
  json_decref(rec);
  json_decref(user);
  json_decref(gids);
  return out;
}

json_t *pol_explain(st_txn *txn, const char *tenant, const char *user_id, const char *connector,
                    const char *tool) {
  json_t *out = json_object();
  json_t *rec = NULL, *user = NULL, *gids = NULL;
  pol_get(txn, tenant, &rec);
  st_dir_user_find(txn, tenant, user_id, &user);
  const char *uid = json_string_value(json_object_get(user, "id"));
  if (uid) st_dir_user_groups(txn, tenant, uid, &gids);
  if (!gids) gids = json_array();
  bool active = user && st_dir_user_usable(txn, tenant, user);
  json_t *groups = json_array();
  size_t i;
  json_t *g;
  json_array_foreach(gids, i, g) {
    json_t *grp = NULL;
    st_dir_group_get(txn, tenant, json_string_value(g), &grp);
    json_array_append_new(groups, json_pack("{s:O,s:O?}", "id", g, "displayName", json_object_get(grp, "displayName")));
    json_decref(grp);
  }
  json_object_set_new(out, "user", user ? json_pack("{s:O,s:O,s:b}", "id", json_object_get(user, "id"), "userName",
                                                    json_object_get(user, "userName"), "active", active)
                                        : json_null());
  json_t *block = NULL;
  if (uid && st_dir_user_block_get(txn, tenant, uid, &block) == 0 && block)
    json_object_set_new(json_object_get(out, "user"), "blocked", block); /* an admin's revoke: why "active" is false */
  json_object_set_new(out, "groups", groups);
  json_object_set_new(out, "connector", json_string(connector));
  json_object_set_new(out, "tool", json_string(tool));
  json_object_set_new(out, "policy_version", rec ? json_incref(json_object_get(rec, "version")) : json_null());
  json_t *matches = json_array();
  json_t *appr_rules = json_array(), *appr_pending = json_array(); /* approve rules naming the tool */
  pol_user *pu = NULL;
  if (uid && pol_user_load(txn, tenant, uid, &pu) == 0) {
    json_array_foreach(json_object_get(rec, "compiled"), i, g) {
      if (!rule_matches_user(g, gids, active)) continue;
      const char *c = json_string_value(json_object_get(g, "connector"));
      if (!c || (strcmp(c, "*") && strcmp(c, connector))) continue;
      /* which of the user's groups made it match */
      const char *via = NULL;
      size_t j;
      json_t *rg;
      json_array_foreach(json_object_get(g, "groups"), j, rg) {
        if (json_is_string(rg)) via = "*";
        const char *id = json_string_value(json_object_get(rg, "id"));
        size_t k;
        json_t *ug;
        if (id) json_array_foreach(gids, k, ug) if (!strcmp(json_string_value(ug), id)) via = id;
        if (via) break;
      }
      static const char *const lists[] = {"block", "approve", "allow"};
      json_t *hits = json_array();
      bool approves = false;
      for (int l = 0; l < 3; l++) {
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(g, lists[l]), k, p) if (pol_glob(json_string_value(p), tool)) {
          json_array_append_new(hits, json_pack("{s:s,s:O}", "action", lists[l], "pattern", p));
          approves = approves || l == 1;
        }
      }
      if (approves) {
        json_array_append(appr_rules, json_object_get(g, "index"));
        json_array_foreach(json_object_get(g, "approvers"), j, rg) if (json_is_true(json_object_get(rg, "pending")))
            json_array_append(appr_pending, json_object_get(rg, "name"));
      }
      json_array_append_new(matches, json_pack("{s:O,s:s,s:s,s:o}", "rule", json_object_get(g, "index"),
                                               "connector", c, "via_group", via ? via : "", "patterns", hits));
    }
  }
  pol_decision d = pu ? pol_decide(pu, connector, tool) : POL_HIDDEN;
  json_object_set_new(out, "decision", json_string(pol_decision_name(d)));
  json_object_set_new(out, "matching_rules", matches);
  pol_approval ap;
  if (d == POL_APPROVE && pol_approval_for(pu, connector, tool, &ap) == 0) {
    json_t *approvers = json_array();
    for (size_t k = 0; k < ap.napprovers; k++) {
      json_t *grp = NULL;
      st_dir_group_get(txn, tenant, ap.approvers[k], &grp);
      json_array_append_new(approvers, json_pack("{s:s,s:O?}", "id", ap.approvers[k], "displayName",
                                                 json_object_get(grp, "displayName")));
      json_decref(grp);
    }
    json_t *a = json_pack("{s:O,s:o,s:O,s:b,s:i,s:i}", "rules", appr_rules, "approvers", approvers, "pending_approvers",
                          appr_pending, "tenant_default", ap.tenant_default, "timeout_s", ap.timeout_s,
                          "grant_minutes", ap.grant_minutes);
    if (ap.tenant_default)
      json_object_set_new(a, "note", json_string("a matching approve rule names no approvers: members of the "
                                                 "tenant's approver_groups may decide as well"));
    else if (!ap.napprovers)
      json_object_set_new(a, "note", json_string("no approver group is bound (names still pending, or none left): "
                                                 "nobody can approve, so the call is refused"));
    json_object_set_new(out, "approval", a);
  }
  json_decref(appr_rules);
  json_decref(appr_pending);
  const char *why;
  if (!rec) why = "the tenant has no policy: every connector is hidden (fail closed)";
  else if (!user) why = "no such user";
  else if (!active && block) why = "an admin revoked the user's access (POST …/users/{id}/restore lifts it)";
  else if (!active) why = "the user is deactivated";
  else if (d == POL_HIDDEN) why = "no rule for this connector matches the user's groups: the connector is hidden";
  else if (!json_array_size(matches)) why = "no matching rule";
  else {
    bool named = false;
    json_array_foreach(matches, i, g) if (json_array_size(json_object_get(g, "patterns"))) named = true;
    why = named ? "block beats approve beats allow among the matching patterns"
                : "no matching rule names the tool: the connector's default, else the document's default";
  }
  json_object_set_new(out, "reason", json_string(why));
  pol_user_free(pu);
  json_decref(gids);
  json_decref(user);
  json_decref(rec);
  return out;
}

/* ---------- hooks ---------- */

/* Stores rec (a parsed policy record the hooks changed) under a new rev:
 * caches keyed by the rev rebuild from it. */
static int record_rewrite(st_txn *txn, const char *tenant, json_t *rec) {
  json_object_set_new(rec, "rev", json_integer(record_rev(rec) + 1));
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char k[80];
  int rc = s ? st_put(txn, ST_DB_POLICY, k, key(tenant, 'p', k), s, strlen(s), 0) : ST_ENOMEM;
  free(s);
  return rc;
}

/* Pending names bind when a group of that name appears (or a group is
 * renamed to it): the compiled record is rewritten in the same txn. */
static int bind_pending(st_txn *txn, const st_dir_event *ev) {
  json_t *rec;
  if (pol_get(txn, ev->tenant, &rec) != 0) return 0;
  bool changed = false;
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(rec, "compiled"), i, r) {
    static const char *const refs[] = {"groups", "approvers"}; /* both bind alike */
    for (int f = 0; f < 2; f++) {
      size_t j;
      json_t *g;
      json_array_foreach(json_object_get(r, refs[f]), j, g) {
        const char *name = json_string_value(json_object_get(g, "name"));
        if (name && json_is_true(json_object_get(g, "pending")) && ev->name && st_text_fold_eq(name, ev->name)) {
          json_array_set_new(json_object_get(r, refs[f]), j, json_pack("{s:s}", "id", ev->id));
          changed = true;
        }
      }
    }
  }
  int rc = changed ? record_rewrite(txn, ev->tenant, rec) : 0;
  json_decref(rec);
  return rc;
}

/* What a reference written as `as_written` compiles to now that the group
 * `dead` it was bound to is gone (deleted in this txn, its name index
 * entry with it): what a PUT of the same document would make of it. A
 * name binds the one group of that name, if there is one (a group renamed
 * to it earlier); with none, or several (which a PUT would refuse; a
 * delete is never refused), it is pending again, so the next group pushed
 * with that name binds — a deleted and re-pushed "Contractors" keeps its
 * block rules. "deleted" keeps the id for the admins' view. "id:<id>" (the
 * admin named that group, not a name) stays bound to the dead id, as a PUT
 * would keep it. NULL: leave the reference as it is. */
static json_t *rebound(st_txn *txn, const char *tenant, const char *as_written, const char *dead) {
  if (!as_written || !*as_written || !strcmp(as_written, "*") || !strncmp(as_written, "id:", 3)) return NULL;
  json_t *ids = json_array();
  /* a failed lookup leaves it pending: no worse than the dead id, which
   * matches nobody either, and the next group of the name binds */
  if (ids && st_dir_groups_by_name(txn, tenant, as_written, ids, 2) == 0 && json_array_size(ids) == 1 &&
      strcmp(json_string_value(json_array_get(ids, 0)), dead)) {
    json_t *out = json_pack("{s:O}", "id", json_array_get(ids, 0));
    json_decref(ids);
    return out;
  }
  json_decref(ids);
  return json_pack("{s:s,s:b,s:s}", "name", as_written, "pending", 1, "deleted", dead);
}

/* Whether the stored record may name group id `id`: a plain search of its
 * bytes (a group id is a UUID, written unescaped), so a group no policy
 * names costs no parse of a large record. Anything else: maybe. */
static bool record_may_name(const st_val *v, const char *id) {
  size_t n = strlen(id);
  if (!n || n > ST_DIR_ID_LEN) return true;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
          id[i] == '-'))
      return true;
  char q[ST_DIR_ID_LEN + 3];
  snprintf(q, sizeof q, "\"%s\"", id);
  return memmem(v->data, v->len, q, n + 2) != NULL;
}

/* A deleted group's references, in "groups" and "approvers" alike, are
 * compiled again from the document (rebound), in the delete's txn. */
static int unbind_deleted(st_txn *txn, const st_dir_event *ev) {
  char k[80];
  st_val v;
  if (!ev->id || strlen(ev->tenant) > 63) return 0;
  int rc = st_get(txn, ST_DB_POLICY, k, key(ev->tenant, 'p', k), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  if (!record_may_name(&v, ev->id)) return 0;
  json_t *rec = json_loadb(v.data, v.len, 0, NULL);
  if (!rec) return 0; /* unreadable: every decision of the tenant fails closed already */
  json_t *written = json_object_get(json_object_get(rec, "document"), "rules");
  bool changed = false;
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(rec, "compiled"), i, r) {
    static const char *const refs[] = {"groups", "approvers"};
    for (int f = 0; f < 2; f++) {
      size_t j;
      json_t *g;
      json_array_foreach(json_object_get(r, refs[f]), j, g) {
        const char *id = json_string_value(json_object_get(g, "id"));
        if (!id || strcmp(id, ev->id)) continue;
        /* compiled entries are the document's references, one for one */
        json_t *as = json_array_get(json_object_get(json_array_get(written, i), refs[f]), j);
        json_t *nu = rebound(txn, ev->tenant, json_string_value(as), ev->id);
        if (!nu) continue;
        json_array_set_new(json_object_get(r, refs[f]), j, nu);
        changed = true;
      }
    }
  }
  rc = changed ? record_rewrite(txn, ev->tenant, rec) : 0;
  json_decref(rec);
  return rc;
}

static int on_event(st_txn *txn, int kind, const void *event, void *ctx) {
  const st_dir_event *ev = event;
  (void)ctx;
  int rc = 0;
  if (kind == ST_DIR_EV_GROUP_CREATED || kind == ST_DIR_EV_GROUP_RENAMED) rc = bind_pending(txn, ev);
  else if (kind == ST_DIR_EV_GROUP_DELETED) rc = unbind_deleted(txn, ev);
  return rc ? rc : pol_generation_bump(txn, ev->tenant);
}

int pol_register_hooks(st_store *st) {
  static const int kinds[] = {ST_DIR_EV_MEMBERSHIP_CHANGED, ST_DIR_EV_GROUP_CREATED, ST_DIR_EV_GROUP_RENAMED,
                              ST_DIR_EV_GROUP_DELETED,      ST_DIR_EV_USER_DEACTIVATED, ST_DIR_EV_USER_REACTIVATED,
                              ST_DIR_EV_USER_DELETED};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    int rc = st_hook_add(st, kinds[i], on_event, NULL);
    if (rc) return rc;
  }
  return 0;
}

/* ---------- cache ---------- */

/* Entries are keyed by the tenant's incarnation uid as well as its id: a
 * tenant deleted and created again restarts its revisions and generations
 * at the same numbers, and must not meet the previous one's state. */
typedef struct cache_entry {
  char tenant[64], user[40], uid[ST_TENANT_UID_LEN + 1];
  pol_user *u;
  uint64_t tick;
  uint64_t snap; /* the store snapshot it was last found current in (0: none) */
  uint64_t cutgen; /* st_txn_cut_generation when built: a membership cut in
                      memory changes the user's groups without a write */
  int hnext;     /* the next entry of its hash chain, or -1 */
} cache_entry;

typedef struct tenant_entry {
  char tenant[64], uid[ST_TENANT_UID_LEN + 1];
  int version; /* 0: the tenant has no policy */
  pol_compiled *c;
  uint64_t tick;
} tenant_entry;

#define TENANTS_MAX 64

struct pol_cache {
  cache_entry *e;
  size_t n, max;
  int *heads; /* hash chains of e by (tenant, user): nb of them, a power of 2 */
  size_t nb;
  int last;   /* the entry the previous lookup returned (-1: none): a request asks 2-3 times */
  tenant_entry t[TENANTS_MAX];
  size_t nt;
  uint64_t tick;
};

static size_t entry_hash(const char *tenant, const char *user) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (const char *p = tenant; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  h = (h ^ 0xff) * 1099511628211ULL;
  for (const char *p = user; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return (size_t)(h ^ (h >> 29));
}

static int entry_find(const pol_cache *c, const char *tenant, const char *user) {
  for (int i = c->heads[entry_hash(tenant, user) & (c->nb - 1)]; i >= 0; i = c->e[i].hnext)
    if (!strcmp(c->e[i].user, user) && !strcmp(c->e[i].tenant, tenant)) return i;
  return -1;
}

static void entry_link(pol_cache *c, int i) {
  int *h = &c->heads[entry_hash(c->e[i].tenant, c->e[i].user) & (c->nb - 1)];
  c->e[i].hnext = *h;
  *h = i;
}

static void entry_unlink(pol_cache *c, int i) {
  int *p = &c->heads[entry_hash(c->e[i].tenant, c->e[i].user) & (c->nb - 1)];
  while (*p >= 0 && *p != i) p = &c->e[*p].hnext;
  if (*p == i) *p = c->e[i].hnext;
}

static void entries_relink(pol_cache *c) {
  for (size_t b = 0; b < c->nb; b++) c->heads[b] = -1;
  for (size_t i = 0; i < c->n; i++) entry_link(c, (int)i);
}

pol_cache *pol_cache_new(size_t max) {
  pol_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->max = max ? max : 1;
  c->nb = 2;
  while (c->nb < 2 * c->max) c->nb *= 2;
  c->e = calloc(c->max, sizeof *c->e);
  c->heads = malloc(c->nb * sizeof *c->heads);
  if (!c->e || !c->heads) {
    free(c->e);
    free(c->heads);
    free(c);
    return NULL;
  }
  entries_relink(c);
  c->last = -1;
  return c;
}

void pol_cache_free(pol_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) pol_user_free(c->e[i].u);
  for (size_t i = 0; i < c->nt; i++) compiled_free(c->t[i].c);
  free(c->e);
  free(c->heads);
  free(c);
}

/* The record's revision, read without parsing it all: the record is
 * written with "rev" first. (0: no policy.) */
static int stored_version(st_txn *txn, const char *tenant, int *version) {
  char k[80];
  st_val v;
  *version = 0;
  if (strlen(tenant) > 63) return 0;
  int rc = st_get(txn, ST_DB_POLICY, k, key(tenant, 'p', k), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  if (v.len > 7 && !memcmp(v.data, "{\"rev\":", 7)) {
    /* the digits within the value: it is the store's memory, not a C
     * string (atoi would read on past it until some NUL byte) */
    const unsigned char *d = v.data;
    int rev = 0;
    for (size_t i = 7; i < v.len && d[i] >= '0' && d[i] <= '9' && rev < 100000000; i++) rev = rev * 10 + (d[i] - '0');
    *version = rev;
    return 0;
  }
  json_t *rec = json_loadb(v.data, v.len, 0, NULL);
  if (!rec) return ST_ECORRUPT;
  *version = record_rev(rec);
  json_decref(rec);
  return 0;
}

static int compiled_for(pol_cache *c, st_txn *txn, const char *tenant, const char *uid, int version,
                        pol_compiled **out) {
  *out = NULL;
  if (!version) return 0;
  size_t lru = 0;
  for (size_t i = 0; i < c->nt; i++) {
    if (!strcmp(c->t[i].tenant, tenant) && !strcmp(c->t[i].uid, uid) && c->t[i].version == version) { /* version: the rev */
      c->t[i].tick = c->tick;
      *out = c->t[i].c;
      return 0;
    }
    if (c->t[i].tick < c->t[lru].tick) lru = i;
  }
  pol_compiled *pc;
  int rc = compiled_load(txn, tenant, &pc);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc) return rc;
  size_t slot = c->nt;
  for (size_t i = 0; i < c->nt; i++)
    if (!strcmp(c->t[i].tenant, tenant)) slot = i;
  if (slot == c->nt) {
    if (c->nt < TENANTS_MAX) c->nt++;
    else slot = lru;
  }
  compiled_free(c->t[slot].c);
  snprintf(c->t[slot].tenant, sizeof c->t[slot].tenant, "%s", tenant);
  snprintf(c->t[slot].uid, sizeof c->t[slot].uid, "%s", uid);
  c->t[slot].version = pc->rev;
  c->t[slot].c = pc;
  c->t[slot].tick = c->tick;
  *out = pc;
  return 0;
}

int pol_version(st_txn *txn, const char *tenant) {
  int v;
  return stored_version(txn, tenant, &v) ? -1 : v;
}

const pol_user *pol_cache_get(pol_cache *c, st_txn *txn, const char *tenant, const char *user_id, int *err) {
  c->tick++;
  /* the same snapshot it was last found current in: nothing it depends
   * on can differ (every change is a write, and a write a new snapshot) */
  uint64_t snap = st_txn_snapshot(txn);
  int at = c->last >= 0 && (size_t)c->last < c->n && !strcmp(c->e[c->last].user, user_id) &&
                   !strcmp(c->e[c->last].tenant, tenant)
               ? c->last
               : entry_find(c, tenant, user_id);
  if (at >= 0 && snap && c->e[at].snap == snap) {
    c->e[at].tick = c->tick;
    c->last = at;
    *err = 0;
    return c->e[at].u;
  }
  uint64_t gen = pol_generation(txn, tenant);
  int version;
  char uid[ST_TENANT_UID_LEN + 1];
  *err = st_tenant_uid_get(txn, tenant, uid);
  if (*err == ST_ENOTFOUND) *err = 0; /* no tenant record (yet): "" keys it */
  if (*err) return NULL;
  *err = stored_version(txn, tenant, &version);
  if (*err) return NULL;
  uint64_t cutgen = st_txn_cut_generation(txn);
  if (at >= 0 && c->e[at].u->generation == gen && c->e[at].u->rev == version && c->e[at].cutgen == cutgen &&
      !strcmp(c->e[at].uid, uid)) {
    c->e[at].tick = c->tick;
    c->e[at].snap = snap;
    c->last = at;
    return c->e[at].u;
  }
  pol_compiled *pc;
  if ((*err = compiled_for(c, txn, tenant, uid, version, &pc)) != 0) return NULL;
  json_t *groups;
  bool active;
  if ((*err = user_groups_state(txn, tenant, user_id, &groups, &active)) != 0) return NULL;
  pol_user *u = NULL;
  *err = user_from_compiled(pc, groups, active, gen, &u);
  json_decref(groups);
  if (*err) {
    pol_user_free(u);
    return NULL;
  }
  int slot = at;
  if (slot < 0) {
    if (c->n < c->max) {
      slot = (int)c->n++;
    } else { /* full: the least recently used makes room */
      slot = 0;
      for (size_t i = 1; i < c->n; i++)
        if (c->e[i].tick < c->e[slot].tick) slot = (int)i;
      entry_unlink(c, slot);
    }
    snprintf(c->e[slot].tenant, sizeof c->e[slot].tenant, "%s", tenant);
    snprintf(c->e[slot].user, sizeof c->e[slot].user, "%s", user_id);
    entry_link(c, slot);
  }
  pol_user_free(c->e[slot].u);
  snprintf(c->e[slot].uid, sizeof c->e[slot].uid, "%s", uid);
  c->e[slot].u = u;
  c->e[slot].tick = c->tick;
  c->e[slot].snap = snap;
  c->e[slot].cutgen = cutgen;
  c->last = slot;
  return u;
}

void pol_cache_drop_tenant(pol_cache *c, const char *tenant) {
  for (size_t i = 0; i < c->n;) {
    if (strcmp(c->e[i].tenant, tenant)) {
      i++;
      continue;
    }
    pol_user_free(c->e[i].u);
    c->e[i] = c->e[--c->n];
    memset(&c->e[c->n], 0, sizeof c->e[c->n]); /* slots past n are reused as empty */
  }
  entries_relink(c); /* entries moved */
  c->last = -1;
  for (size_t i = 0; i < c->nt;) {
    if (strcmp(c->t[i].tenant, tenant)) {
      i++;
      continue;
    }
    compiled_free(c->t[i].c);
    c->t[i] = c->t[--c->nt];
    memset(&c->t[c->nt], 0, sizeof c->t[c->nt]);
  }
}
