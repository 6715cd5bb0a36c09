/* tests/unit/test_settings.c — gateway/core/settings: registering tables
 * (duplicates and malformed entries refused), validating a patch (unknown
 * key, wrong type, out of bounds, each named), merging (null = default) and
 * the view of every key's effective value. No store needed. */
#include <stdio.h>
#include <string.h>

#include "gateway/core/settings.h"
#include "tests/unit/unit.h"

static const gw_setting t_a[] = {
    {"alpha_ms", GW_SETTING_INT, 0, 1000, 10, "a duration", 0, NULL, false, false},
    {"beta", GW_SETTING_BOOL, 0, 1, 1, "a flag", 0, NULL, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};
static const gw_setting t_b[] = {
    {"gamma", GW_SETTING_STRING, 1, 8, 0, "a short string", 0, NULL, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};
static const gw_setting t_dup[] = {{"beta", GW_SETTING_INT, 0, 1, 0, "taken", 0, NULL, false, false}, {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};
static const gw_setting t_bad[] = {{"Bad-Name", GW_SETTING_INT, 0, 1, 0, "", 0, NULL, false, false}, {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};
static const gw_setting t_def[] = {{"delta", GW_SETTING_INT, 5, 9, 0, "default out of bounds", 0, NULL, false, false}, {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

/* a string key with a grammar of its own: lowercase letters only */
static int lower_only(const char *v, char *err, size_t errlen) {
  for (const char *p = v; *p; p++)
    if (*p < 'a' || *p > 'z') {
      snprintf(err, errlen, "'%c' is not a lowercase letter", *p);
      return -1;
    }
  return 0;
}
static const gw_setting t_chk[] = {
    {"epsilon", GW_SETTING_STRING, 0, 16, 0, "lowercase letters", 0, lower_only, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};
static const gw_setting t_chk_int[] = {
    {"zeta_ms", GW_SETTING_INT, 0, 16, 0, "a check on an int", 0, lower_only, false, false},
    {NULL, 0, 0, 0, 0, NULL, 0, NULL, false, false}};

static int refused(const char *patch_json, const char *want) {
  json_t *p = json_loads(patch_json, 0, NULL);
  char err[512];
  int rc = gw_settings_validate(p, err, sizeof err);
  json_decref(p);
  if (rc == 0) return 0;
  if (!strstr(err, want)) {
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, want);
    return 0;
  }
  return 1;
}

TEST(registry) {
  CHECK_INT(gw_settings_register(t_a), 0);
  CHECK_INT(gw_settings_register(t_a), 0); /* the same table again: no-op */
  CHECK_INT(gw_settings_register(t_b), 0);
  CHECK(gw_settings_register(t_dup) < 0);
  CHECK(gw_settings_register(t_bad) < 0);
  CHECK(gw_settings_register(t_def) < 0);
  CHECK(gw_setting_find("alpha_ms") != NULL);
  CHECK(gw_setting_find("delta") == NULL);
}

TEST(validate) {
  char err[512];
  json_t *ok = json_loads("{\"alpha_ms\": 1000, \"beta\": false, \"gamma\": \"x\"}", 0, NULL);
  CHECK_INT(gw_settings_validate(ok, err, sizeof err), 0);
  json_decref(ok);
  json_t *nulls = json_loads("{\"alpha_ms\": null, \"gamma\": null}", 0, NULL);
  CHECK_INT(gw_settings_validate(nulls, err, sizeof err), 0);
  json_decref(nulls);
  CHECK(refused("{\"alpha_ms\": 1, \"zeta\": 1, \"eta\": 2}", "\"zeta\", \"eta\""));
  CHECK(refused("{\"zeta\": 1}", "known: alpha_ms, beta, gamma"));
  CHECK(refused("{\"alpha_ms\": \"5\"}", "\"alpha_ms\" must be an integer from 0 to 1000"));
  CHECK(refused("{\"alpha_ms\": 2.5}", "must be an integer"));
  CHECK(refused("{\"alpha_ms\": 1001}", "out of bounds: 1001 is not from 0 to 1000"));
  CHECK(refused("{\"beta\": 1}", "\"beta\" must be true or false"));
  CHECK(refused("{\"gamma\": \"\"}", "1 to 8 characters"));
  CHECK(refused("{\"gamma\": \"toolongvalue\"}", "1 to 8 characters"));
  CHECK(refused("[]", "must be an object"));
}

TEST(merge_and_view) {
  json_t *cur = json_loads("{\"alpha_ms\": 20, \"gamma\": \"abc\"}", 0, NULL);
  json_t *patch = json_loads("{\"alpha_ms\": null, \"beta\": false}", 0, NULL);
  json_t *out = NULL;
  CHECK_INT(gw_settings_merge(cur, patch, &out), 0);
  CHECK(json_object_get(out, "alpha_ms") == NULL);
  CHECK(json_is_false(json_object_get(out, "beta")));
  CHECK_STR(json_string_value(json_object_get(out, "gamma")), "abc");
  CHECK_INT(json_integer_value(json_object_get(cur, "alpha_ms")), 20); /* cur untouched */
  json_t *v = gw_settings_view(out);
  CHECK_INT(json_object_size(v), 3);
  CHECK_INT(json_integer_value(json_object_get(v, "alpha_ms")), 10); /* the default */
  CHECK(json_is_false(json_object_get(v, "beta")));
  CHECK_STR(json_string_value(json_object_get(v, "gamma")), "abc");
  json_decref(v);
  v = gw_settings_view(NULL);
  CHECK(json_is_true(json_object_get(v, "beta")));
  CHECK_STR(json_string_value(json_object_get(v, "gamma")), "");
  json_decref(v);
  json_decref(out);
  json_decref(patch);
  json_decref(cur);
}

TEST(string_check) {
  CHECK(gw_settings_register(t_chk_int) < 0); /* a grammar is for strings */
  CHECK_INT(gw_settings_register(t_chk), 0);
  char err[512];
  json_t *ok = json_loads("{\"epsilon\": \"abc\"}", 0, NULL);
  CHECK_INT(gw_settings_validate(ok, err, sizeof err), 0);
  json_decref(ok);
  ok = json_loads("{\"epsilon\": \"\"}", 0, NULL);
  CHECK_INT(gw_settings_validate(ok, err, sizeof err), 0);
  json_decref(ok);
  CHECK(refused("{\"epsilon\": \"aBc\"}", "setting \"epsilon\" is not valid: 'B' is not a lowercase letter"));
  CHECK(refused("{\"epsilon\": \"abcdefghijklmnopq\"}", "0 to 16 characters")); /* bounds first */
  /* a stored value the grammar refuses reads, and shows, as unset */
  json_t *stored = json_loads("{\"epsilon\": \"Nope\", \"gamma\": \"x\"}", 0, NULL);
  CHECK_STR(gw_settings_string(stored, "epsilon"), "");
  CHECK_STR(gw_settings_string(stored, "gamma"), "x");
  CHECK_STR(gw_settings_string(stored, "alpha_ms"), ""); /* not a string key */
  CHECK_STR(gw_settings_string(stored, "nosuch"), "");
  CHECK_STR(gw_settings_string(NULL, "gamma"), "");
  json_t *v = gw_settings_view(stored);
  CHECK_STR(json_string_value(json_object_get(v, "epsilon")), "");
  json_decref(v);
  json_decref(stored);
  stored = json_loads("{\"epsilon\": \"fine\"}", 0, NULL);
  CHECK_STR(gw_settings_string(stored, "epsilon"), "fine");
  json_decref(stored);
}

int main(void) {
  RUN(registry);
  RUN(validate);
  RUN(merge_and_view);
  RUN(string_check);
  return UNIT_DONE();
}
