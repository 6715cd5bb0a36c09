/* gateway/core/settings.c — the tenant-settings registry, validation, merge
 * and view (see settings.h for the rules). The documents themselves live in
 * the tenant record (store/tenant.h). */
#include "gateway/core/settings.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store/seal.h"
#include "store/tenant.h"

static const gw_setting *g_tables[GW_SETTINGS_TABLES_MAX];
static int g_ntables;

const gw_setting *gw_setting_find(const char *name) {
  for (int t = 0; t < g_ntables; t++)
    for (const gw_setting *s = g_tables[t]; s->name; s++)
      if (!strcmp(s->name, name)) return s;
  return NULL;
}

static int name_ok(const char *n) {
  size_t l = strlen(n);
  return l > 0 && l <= 64 && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789_") == l;
}

int gw_settings_register(const gw_setting *table) {
  for (int t = 0; t < g_ntables; t++)
    if (g_tables[t] == table) return 0;
  if (g_ntables == GW_SETTINGS_TABLES_MAX) return ST_ENOMEM;
  for (const gw_setting *s = table; s->name; s++) {
    if (!name_ok(s->name) || s->type < GW_SETTING_INT || s->type > GW_SETTING_STRING || s->min > s->max ||
        (s->check && s->type != GW_SETTING_STRING) ||
        (s->type != GW_SETTING_STRING && (s->def < s->min || s->def > s->max)) || gw_setting_find(s->name))
      return ST_EINVAL;
    for (const gw_setting *o = table; o != s; o++)
      if (!strcmp(o->name, s->name)) return ST_EINVAL;
  }
  g_tables[g_ntables++] = table;
  return 0;
}

/* Appends "a, b, c" of every registered key to buf. */
static void known_keys(char *buf, size_t cap) {
  size_t l = strlen(buf);
  int first = 1;
  for (int t = 0; t < g_ntables; t++)
    for (const gw_setting *s = g_tables[t]; s->name && l + 1 < cap; s++) {
      snprintf(buf + l, cap - l, "%s%s", first ? "" : ", ", s->name);
      l = strlen(buf);
      first = 0;
    }
  if (first) snprintf(buf + l, cap - l, "none");
}

static int value_ok(const gw_setting *s, const json_t *v, char *err, size_t errlen) {
  switch (s->type) {
  case GW_SETTING_INT:
    if (!json_is_integer(v)) {
      snprintf(err, errlen, "setting \"%s\" must be an integer from %" PRId64 " to %" PRId64 " (or null for the default)",
               s->name, s->min, s->max);
      return 0;
    }
    if (json_integer_value(v) < s->min || json_integer_value(v) > s->max) {
      snprintf(err, errlen, "setting \"%s\" is out of bounds: %" PRId64 " is not from %" PRId64 " to %" PRId64,
               s->name, (int64_t)json_integer_value(v), s->min, s->max);
      return 0;
    }
    if (s->floor > 0 && json_integer_value(v) != 0 && json_integer_value(v) < s->floor) {
      snprintf(err, errlen,
               "setting \"%s\" is out of bounds: %" PRId64 " is below %" PRId64 " (0 means the operator's value)",
               s->name, (int64_t)json_integer_value(v), s->floor);
      return 0;
    }
    return 1;
  case GW_SETTING_BOOL:
    if (!json_is_boolean(v)) {
      snprintf(err, errlen, "setting \"%s\" must be true or false (or null for the default)", s->name);
      return 0;
    }
    return 1;
  default: {
    if (!json_is_string(v)) {
      snprintf(err, errlen, "setting \"%s\" must be a string (or null for the default)", s->name);
      return 0;
    }
    size_t n = json_string_length(v);
    const unsigned char *p = (const unsigned char *)json_string_value(v);
    int ctl = 0;
    for (size_t i = 0; i < n; i++)
      if (p[i] < 0x20 || p[i] == 0x7f) ctl = 1;
    if ((int64_t)n < s->min || (int64_t)n > s->max || ctl) {
      snprintf(err, errlen, "setting \"%s\" must be %" PRId64 " to %" PRId64 " characters, without control characters",
               s->name, s->min, s->max);
      return 0;
    }
    char why[256] = "";
    /* (a NUL inside was refused above as a control character) */
    if (s->check && s->check((const char *)p, why, sizeof why) != 0) {
      snprintf(err, errlen, "setting \"%s\" is not valid: %s", s->name, why[0] ? why : "refused");
      return 0;
    }
    return 1;
  }
  }
}

int gw_settings_validate(const json_t *patch, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  err[0] = 0;
  if (!json_is_object(patch)) {
    snprintf(err, errlen, "\"settings\" must be an object");
    return ST_EINVAL;
  }
  /* unknown keys first, all of them named */
  char bad[512] = "";
  json_object_foreach((json_t *)patch, k, v) {
    if (gw_setting_find(k)) continue;
    size_t l = strlen(bad);
    snprintf(bad + l, sizeof bad - l, "%s\"%.64s\"", l ? ", " : "", k);
  }
  if (bad[0]) {
    char known[512] = "";
    known_keys(known, sizeof known);
    snprintf(err, errlen, "unknown setting(s): %s (known: %s)", bad, known);
    return ST_EINVAL;
  }
  json_object_foreach((json_t *)patch, k, v) {
    if (json_is_null(v)) continue;
    const gw_setting *s = gw_setting_find(k);
    /* a secret sent back as GET shows it (or "" to unset it) */
    if (s->secret && json_is_string(v) && (!strcmp(json_string_value(v), GW_SETTING_SEALED) || !json_string_length(v)))
      continue;
    if (!value_ok(s, v, err, errlen)) return ST_EINVAL;
  }
  return 0;
}

int gw_settings_merge(const json_t *cur, const json_t *patch, json_t **out) {
  json_t *doc = json_is_object(cur) ? json_deep_copy(cur) : json_object();
  *out = NULL;
  if (!doc) return ST_ENOMEM;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)patch, k, v) {
    if (json_is_null(v)) json_object_del(doc, k);
    else if (json_object_set_new(doc, k, json_deep_copy(v)) != 0) {
      json_decref(doc);
      return ST_ENOMEM;
    }
  }
  *out = doc;
  return 0;
}

static json_t *default_of(const gw_setting *s) {
  switch (s->type) {
  case GW_SETTING_INT: return json_integer((json_int_t)s->def);
  case GW_SETTING_BOOL: return json_boolean(s->def);
  default: return json_string("");
  }
}

int gw_settings_seal(st_txn *txn, const char *tenant, const json_t *patch, json_t *doc) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)patch, k, v) {
    const gw_setting *s = gw_setting_find(k);
    if (!s || !s->secret) continue;
    st_aad aad = {tenant, "setting", s->name};
    int rc;
    if (json_is_null(v)) {
      rc = st_secret_del(txn, &aad);
      if (rc && rc != ST_ENOTFOUND) return rc;
      continue;
    }
    const char *str = json_string_value(v);
    if (!str) return ST_EINVAL;
    if (!strcmp(str, GW_SETTING_SEALED)) { /* kept: what is sealed stays */
      st_aad keep = aad;
      char *old = NULL;
      rc = st_secret_get_str(txn, &keep, &old);
      st_secret_str_free(old);
      if (rc == ST_ENOTFOUND) json_object_del(doc, k);
      else if (rc) return rc;
      continue;
    }
    if (!*str) { /* "" unsets it */
      rc = st_secret_del(txn, &aad);
      if (rc && rc != ST_ENOTFOUND) return rc;
      json_object_del(doc, k);
      continue;
    }
    if ((rc = st_secret_put(txn, &aad, str, strlen(str))) != 0) return rc;
    if (json_object_set_new(doc, k, json_string(GW_SETTING_SEALED)) != 0) return ST_ENOMEM;
  }
  return 0;
}

int gw_settings_secret(st_txn *txn, const char *tenant, const char *name, char **value) {
  *value = NULL;
  const gw_setting *s = gw_setting_find(name);
  if (!s || !s->secret) return ST_ENOTFOUND;
  st_aad aad = {tenant, "setting", s->name};
  return st_secret_get_str(txn, &aad, value);
}

json_t *gw_settings_view(const json_t *stored) {
  json_t *o = json_object();
  char err[8];
  for (int t = 0; t < g_ntables; t++)
    for (const gw_setting *s = g_tables[t]; s->name; s++) {
      json_t *v = json_object_get(stored, s->name);
      if (s->secret) { /* never the value: whether one is sealed */
        bool set = json_is_string(v) && !strcmp(json_string_value(v), GW_SETTING_SEALED);
        json_object_set_new(o, s->name, json_string(set ? GW_SETTING_SEALED : ""));
        continue;
      }
      /* a stored value the key's current bounds refuse shows (and acts) as the default */
      json_object_set_new(o, s->name, v && value_ok(s, v, err, sizeof err) ? json_incref(v) : default_of(s));
    }
  return o;
}

int gw_settings_get_int(st_txn *txn, const char *tenant, const char *name, int64_t *out) {
  const gw_setting *s = gw_setting_find(name);
  char err[8];
  *out = s ? s->def : 0;
  if (!s || s->type != GW_SETTING_INT) return 0;
  json_t *rec;
  int rc = st_tenant_get(txn, tenant, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *v = json_object_get(json_object_get(rec, "settings"), name);
  if (v && value_ok(s, v, err, sizeof err)) *out = (int64_t)json_integer_value(v);
  json_decref(rec);
  return 0;
}

int gw_settings_get_bool(st_txn *txn, const char *tenant, const char *name, bool *out) {
  const gw_setting *s = gw_setting_find(name);
  char err[8];
  *out = s ? s->def != 0 : false;
  if (!s || s->type != GW_SETTING_BOOL) return 0;
  json_t *rec;
  int rc = st_tenant_get(txn, tenant, &rec);
  if (rc) return rc == ST_ENOTFOUND ? 0 : rc;
  json_t *v = json_object_get(json_object_get(rec, "settings"), name);
  if (v && value_ok(s, v, err, sizeof err)) *out = json_is_true(v);
  json_decref(rec);
  return 0;
}

const char *gw_settings_string(const json_t *settings, const char *name) {
  /* the value first: an unset key (the usual case, read on every call by
   * some) costs one lookup, not the table's scan and the value's check */
  json_t *v = json_object_get(settings, name);
  if (!v) return "";
  const gw_setting *s = gw_setting_find(name);
  char err[8];
  if (!s || s->type != GW_SETTING_STRING || s->secret || !value_ok(s, v, err, sizeof err)) return "";
  return json_string_value(v);
}
