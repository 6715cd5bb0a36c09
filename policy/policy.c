/* policy/policy.c — documents, compilation to group ids, per-user
 * effective decisions, explanation, and the decision cache (policy.h). */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim.h"

#define MAX_RULES 10000
#define MAX_PATTERNS 1000
#define PATTERN_MAX 256

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
                                       strcmp(k, "block") && strcmp(k, "approve"))
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
 * "*". Ambiguous names fail. */
static json_t *resolve(st_txn *txn, const char *tenant, const char *ref, char *err, size_t errlen, int *ambiguous,
                       json_t *warnings) {
  if (!strcmp(ref, "*")) return json_string("*");
  if (!strncmp(ref, "id:", 3)) return json_pack("{s:s}", "id", ref + 3);
  char filter[600];
  json_t *q = json_string(ref);
  char *quoted = json_dumps(q, JSON_ENCODE_ANY);
  json_decref(q);
  snprintf(filter, sizeof filter, "displayName eq %s", quoted ? quoted : "\"\"");
  free(quoted);
  scim_resp rs = {0};
  scim_admin_list(txn, tenant, "Groups", filter, 1, 3, "", &rs);
  json_t *res = json_object_get(rs.body, "Resources");
  size_t n = json_array_size(res);
  json_t *out = NULL;
  if (n == 1) {
    out = json_pack("{s:O}", "id", json_object_get(json_array_get(res, 0), "id"));
  } else if (n > 1) {
    *ambiguous = 1;
    add(err, errlen, "group name \"%.100s\" matches several groups: use \"id:<group id>\"", ref);
  } else {
    char w[300];
    snprintf(w, sizeof w, "group \"%.100s\" does not exist yet; the rule binds when a group of that name is pushed", ref);
    json_array_append_new(warnings, json_string(w));
    out = json_pack("{s:s,s:b}", "name", ref, "pending", 1);
  }
  scim_resp_clear(&rs);
  return out;
}

int pol_put(st_txn *txn, const char *tenant, const json_t *doc, const char *now, int *version_out,
            json_t **warnings, char *err, size_t errlen) {
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
      json_t *res = resolve(txn, tenant, json_string_value(g), err, errlen, &ambiguous, *warnings);
      if (res) json_array_append_new(groups, res);
    }
    json_t *cr = json_pack("{s:I,s:o,s:O}", "index", (json_int_t)i, "groups", groups, "connector",
                           json_object_get(r, "connector"));
    static const char *const lists[] = {"allow", "block", "approve"};
    for (int l = 0; l < 3; l++)
      json_object_set_new(cr, lists[l], json_deep_copy(json_object_get(r, lists[l])) ?: json_array());
    json_array_append_new(compiled, cr);
  }
  if (ambiguous) {
    json_decref(compiled);
    return POL_EAMBIGUOUS;
  }
  json_t *old;
  int version = 1;
  if (pol_get(txn, tenant, &old) == 0) {
    version = (int)json_integer_value(json_object_get(old, "version")) + 1;
    json_decref(old);
  }
  json_t *rec = json_pack("{s:i,s:O,s:o,s:O,s:s}", "version", version, "document", doc, "compiled", compiled,
                          "warnings", *warnings, "updated", now);
  char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(rec);
  if (!s) return ST_ENOMEM;
  char k[80];
  rc = st_put(txn, ST_DB_POLICY, k, key(tenant, 'p', k), s, strlen(s), 0);
  free(s);
  if (rc) return rc;
  *version_out = version;
  return pol_generation_bump(txn, tenant);
}

json_t *pol_view(st_txn *txn, const char *tenant, const json_t *rec) {
  json_t *o = json_pack("{s:O,s:O,s:O,s:O}", "version", json_object_get(rec, "version"), "document",
                        json_object_get(rec, "document"), "warnings", json_object_get(rec, "warnings"),
                        "updated", json_object_get(rec, "updated"));
  /* bindings: which group each name is bound to now, with current names */
  json_t *bindings = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(rec, "compiled"), i, r) {
    size_t j;
    json_t *g;
    json_array_foreach(json_object_get(r, "groups"), j, g) {
      if (json_is_string(g)) continue;
      const char *id = json_string_value(json_object_get(g, "id"));
      const char *as_written = json_string_value(json_array_get(
          json_object_get(json_array_get(json_object_get(json_object_get(rec, "document"), "rules"), i), "groups"), j));
      json_t *b = json_pack("{s:I,s:s}", "rule", (json_int_t)i, "as_written", as_written ? as_written : "");
      if (id) {
        json_object_set_new(b, "group_id", json_string(id));
        scim_resp rs = {0};
        char filter[120];
        snprintf(filter, sizeof filter, "id eq \"%.40s\"", id);
        scim_admin_list(txn, tenant, "Groups", filter, 1, 1, "", &rs);
        json_t *grp = json_array_get(json_object_get(rs.body, "Resources"), 0);
        const char *name = json_string_value(json_object_get(grp, "displayName"));
        json_object_set_new(b, "current_name", name ? json_string(name) : json_null());
        if (!grp) json_object_set_new(b, "note", json_string("the group no longer exists: the rule matches nobody"));
        else if (as_written && strncmp(as_written, "id:", 3) && strcasecmp(as_written, name))
          json_object_set_new(b, "note", json_string("renamed in the directory since the policy was written; "
                                                     "the rule still applies to this group"));
        scim_resp_clear(&rs);
      } else {
        json_object_set_new(b, "pending", json_true());
        json_object_set_new(b, "note", json_string("no group of this name yet"));
      }
      json_array_append_new(bindings, b);
    }
  }
  json_object_set_new(o, "bindings", bindings);
  return o;
}

/* ---------- per-user effective policy ---------- */

typedef struct pol_pat {
  char *pattern;
  int action; /* POL_BLOCK / POL_APPROVE / POL_ALLOW */
} pol_pat;

typedef struct pol_rule {
  char connector[40]; /* or "*" */
  pol_pat *pats;
  size_t npats;
} pol_rule;

struct pol_user {
  int version;
  uint64_t generation;
  char def_action;     /* POL_ALLOW / POL_BLOCK */
  json_t *conn_defaults; /* object connector → "allow"/"block" */
  pol_rule *rules;     /* only rules whose groups match the user */
  size_t nrules;
};

void pol_user_free(pol_user *u) {
  if (!u) return;
  for (size_t i = 0; i < u->nrules; i++) {
    for (size_t j = 0; j < u->rules[i].npats; j++) free(u->rules[i].pats[j].pattern);
    free(u->rules[i].pats);
  }
  free(u->rules);
  json_decref(u->conn_defaults);
  free(u);
}

int pol_user_version(const pol_user *u) { return u->version; }
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

static int load_rules(pol_user *u, const json_t *compiled, const json_t *user_groups, bool active) {
  size_t n = json_array_size(compiled);
  u->rules = calloc(n ? n : 1, sizeof *u->rules);
  if (!u->rules) return ST_ENOMEM;
  size_t i;
  json_t *cr;
  json_array_foreach(compiled, i, cr) {
    if (!rule_matches_user(cr, user_groups, active)) continue;
    pol_rule *r = &u->rules[u->nrules++];
    snprintf(r->connector, sizeof r->connector, "%s", json_string_value(json_object_get(cr, "connector")) ?: "");
    static const char *const lists[] = {"block", "approve", "allow"};
    static const int acts[] = {POL_BLOCK, POL_APPROVE, POL_ALLOW};
    size_t total = 0;
    for (int l = 0; l < 3; l++) total += json_array_size(json_object_get(cr, lists[l]));
    r->pats = calloc(total ? total : 1, sizeof *r->pats);
    if (!r->pats) return ST_ENOMEM;
    for (int l = 0; l < 3; l++) {
      size_t j;
      json_t *p;
      json_array_foreach(json_object_get(cr, lists[l]), j, p) {
        r->pats[r->npats].pattern = strdup(json_string_value(p));
        r->pats[r->npats].action = acts[l];
        if (r->pats[r->npats].pattern) r->npats++;
      }
    }
  }
  return 0;
}

int pol_user_load(st_txn *txn, const char *tenant, const char *user_id, pol_user **out) {
  *out = NULL;
  pol_user *u = calloc(1, sizeof *u);
  if (!u) return ST_ENOMEM;
  u->generation = pol_generation(txn, tenant);
  u->def_action = POL_BLOCK;
  json_t *rec;
  int rc = pol_get(txn, tenant, &rec);
  if (rc == ST_ENOTFOUND) {
    u->version = 0; /* no policy: every connector hidden */
    *out = u;
    return 0;
  }
  if (rc) {
    free(u);
    return rc;
  }
  json_t *doc = json_object_get(rec, "document");
  u->version = (int)json_integer_value(json_object_get(rec, "version"));
  if (!strcmp(json_string_value(json_object_get(doc, "default")) ?: "block", "allow")) u->def_action = POL_ALLOW;
  u->conn_defaults = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(doc, "connectors"), k, v) {
    json_t *d = json_object_get(v, "default");
    if (d) json_object_set(u->conn_defaults, k, d);
  }
  json_t *user, *groups = NULL;
  bool active = false;
  if (scim_user_lookup(txn, tenant, user_id, &user) == 0) {
    json_t *a = json_object_get(user, "active");
    active = !a || json_is_true(a);
    json_decref(user);
    rc = scim_user_groups(txn, tenant, user_id, &groups);
  }
  if (!groups) groups = json_array();
  if (active && rc == 0) rc = load_rules(u, json_object_get(rec, "compiled"), groups, active);
  json_decref(groups);
  json_decref(rec);
  if (rc) {
    pol_user_free(u);
    return rc;
  }
  *out = u;
  return 0;
}

static bool conn_match(const pol_rule *r, const char *connector) {
  return !strcmp(r->connector, "*") || !strcmp(r->connector, connector);
}

bool pol_connector_visible(const pol_user *u, const char *connector) {
  for (size_t i = 0; i < u->nrules; i++)
    if (conn_match(&u->rules[i], connector)) return true;
  return false;
}

pol_decision pol_decide(const pol_user *u, const char *connector, const char *tool) {
  bool visible = false;
  int best = 0; /* strongest action naming the tool: block > approve > allow */
  for (size_t i = 0; i < u->nrules; i++) {
    const pol_rule *r = &u->rules[i];
    if (!conn_match(r, connector)) continue;
    visible = true;
    for (size_t j = 0; j < r->npats; j++) {
      int a = r->pats[j].action;
      if ((best == 0 || a < best) && pol_glob(r->pats[j].pattern, tool)) {
        best = a;
        if (best == POL_BLOCK) return POL_BLOCK;
      }
    }
  }
  if (!visible) return POL_HIDDEN;
  if (best) return (pol_decision)best;
  const char *cd = json_string_value(json_object_get(u->conn_defaults, connector));
  if (cd) return !strcmp(cd, "allow") ? POL_ALLOW : POL_BLOCK;
  return (pol_decision)u->def_action;
}

json_t *pol_explain(st_txn *txn, const char *tenant, const char *user_id, const char *connector,
                    const char *tool) {
  json_t *out = json_object();
  json_t *rec = NULL, *user = NULL, *gids = NULL;
  pol_get(txn, tenant, &rec);
  scim_user_lookup(txn, tenant, user_id, &user);
  const char *uid = json_string_value(json_object_get(user, "id"));
  if (uid) scim_user_groups(txn, tenant, uid, &gids);
  if (!gids) gids = json_array();
  json_t *a = json_object_get(user, "active");
  bool active = user && (!a || json_is_true(a));
  json_t *groups = json_array();
  size_t i;
  json_t *g;
  json_array_foreach(gids, i, g) {
    scim_resp rs = {0};
    char filter[120];
    snprintf(filter, sizeof filter, "id eq \"%.40s\"", json_string_value(g));
    scim_admin_list(txn, tenant, "Groups", filter, 1, 1, "", &rs);
    json_t *grp = json_array_get(json_object_get(rs.body, "Resources"), 0);
    json_array_append_new(groups, json_pack("{s:O,s:O?}", "id", g, "displayName", json_object_get(grp, "displayName")));
    scim_resp_clear(&rs);
  }
  json_object_set_new(out, "user", user ? json_pack("{s:O,s:O,s:b}", "id", json_object_get(user, "id"), "userName",
                                                    json_object_get(user, "userName"), "active", active)
                                        : json_null());
  json_object_set_new(out, "groups", groups);
  json_object_set_new(out, "connector", json_string(connector));
  json_object_set_new(out, "tool", json_string(tool));
  json_object_set_new(out, "policy_version", rec ? json_incref(json_object_get(rec, "version")) : json_null());
  json_t *matches = json_array();
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
      for (int l = 0; l < 3; l++) {
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(g, lists[l]), k, p) if (pol_glob(json_string_value(p), tool))
            json_array_append_new(hits, json_pack("{s:s,s:O}", "action", lists[l], "pattern", p));
      }
      json_array_append_new(matches, json_pack("{s:O,s:s,s:s,s:o}", "rule", json_object_get(g, "index"),
                                               "connector", c, "via_group", via ? via : "", "patterns", hits));
    }
  }
  pol_decision d = pu ? pol_decide(pu, connector, tool) : POL_HIDDEN;
  json_object_set_new(out, "decision", json_string(pol_decision_name(d)));
  json_object_set_new(out, "matching_rules", matches);
  const char *why;
  if (!rec) why = "the tenant has no policy: every connector is hidden (fail closed)";
  else if (!user) why = "no such user";
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

/* Pending names bind when a group of that name appears (or a group is
 * renamed to it): the compiled record is rewritten in the same txn. */
static int bind_pending(st_txn *txn, const scim_event *ev) {
  json_t *rec;
  if (pol_get(txn, ev->tenant, &rec) != 0) return 0;
  bool changed = false;
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(rec, "compiled"), i, r) {
    size_t j;
    json_t *g;
    json_array_foreach(json_object_get(r, "groups"), j, g) {
      const char *name = json_string_value(json_object_get(g, "name"));
      if (name && json_is_true(json_object_get(g, "pending")) && ev->name && !strcasecmp(name, ev->name)) {
        json_array_set_new(json_object_get(r, "groups"), j, json_pack("{s:s}", "id", ev->id));
        changed = true;
      }
    }
  }
  int rc = 0;
  if (changed) {
    char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char k[80];
    rc = s ? st_put(txn, ST_DB_POLICY, k, key(ev->tenant, 'p', k), s, strlen(s), 0) : ST_ENOMEM;
    free(s);
  }
  json_decref(rec);
  return rc;
}

static int on_event(st_txn *txn, int kind, const void *event, void *ctx) {
  const scim_event *ev = event;
  (void)ctx;
  int rc = 0;
  if (kind == SCIM_EV_GROUP_CREATED || kind == SCIM_EV_GROUP_RENAMED) rc = bind_pending(txn, ev);
  return rc ? rc : pol_generation_bump(txn, ev->tenant);
}

int pol_register_hooks(st_store *st) {
  static const int kinds[] = {SCIM_EV_MEMBERSHIP_CHANGED, SCIM_EV_GROUP_CREATED, SCIM_EV_GROUP_RENAMED,
                              SCIM_EV_GROUP_DELETED,      SCIM_EV_USER_DEACTIVATED, SCIM_EV_USER_REACTIVATED,
                              SCIM_EV_USER_DELETED};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    int rc = st_hook_add(st, kinds[i], on_event, NULL);
    if (rc) return rc;
  }
  return 0;
}

/* ---------- cache ---------- */

typedef struct cache_entry {
  char tenant[64], user[40];
  pol_user *u;
  uint64_t tick;
} cache_entry;

struct pol_cache {
  cache_entry *e;
  size_t n, max;
  uint64_t tick;
};

pol_cache *pol_cache_new(size_t max) {
  pol_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->e = calloc(max ? max : 1, sizeof *c->e);
  c->max = max ? max : 1;
  if (!c->e) {
    free(c);
    return NULL;
  }
  return c;
}

void pol_cache_free(pol_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) pol_user_free(c->e[i].u);
  free(c->e);
  free(c);
}

const pol_user *pol_cache_get(pol_cache *c, st_txn *txn, const char *tenant, const char *user_id, int *err) {
  uint64_t gen = pol_generation(txn, tenant);
  json_t *rec = NULL;
  int version = 0;
  char k[80];
  st_val v;
  *err = 0;
  /* the version without parsing the whole record: stored first */
  if (strlen(tenant) <= 63 && st_get(txn, ST_DB_POLICY, k, key(tenant, 'p', k), &v) == 0) {
    const char *p = memmem(v.data, v.len < 64 ? v.len : 64, "\"version\":", 10);
    if (p) version = atoi(p + 10);
    else if ((rec = json_loadb(v.data, v.len, 0, NULL))) version = (int)json_integer_value(json_object_get(rec, "version"));
    json_decref(rec);
  }
  c->tick++;
  size_t slot = c->n, lru = 0;
  for (size_t i = 0; i < c->n; i++) {
    if (!strcmp(c->e[i].tenant, tenant) && !strcmp(c->e[i].user, user_id)) {
      if (c->e[i].u->generation == gen && c->e[i].u->version == version) {
        c->e[i].tick = c->tick;
        return c->e[i].u;
      }
      slot = i;
      break;
    }
    if (c->e[i].tick < c->e[lru].tick) lru = i;
  }
  pol_user *u;
  int rc = pol_user_load(txn, tenant, user_id, &u);
  if (rc) {
    *err = rc;
    return NULL;
  }
  if (slot == c->n) {
    if (c->n < c->max) c->n++;
    else slot = lru;
  }
  if (slot < c->n && c->e[slot].u && (strcmp(c->e[slot].tenant, tenant) || strcmp(c->e[slot].user, user_id) || 1))
    pol_user_free(c->e[slot].u);
  snprintf(c->e[slot].tenant, sizeof c->e[slot].tenant, "%s", tenant);
  snprintf(c->e[slot].user, sizeof c->e[slot].user, "%s", user_id);
  c->e[slot].u = u;
  c->e[slot].tick = c->tick;
  return u;
}
