/* gateway/core/settings.h — tenant settings: one validated settings document
 * per tenant (stored in the tenant record by store/tenant.h), whose keys the
 * modules register with their type, bounds and default.
 *
 * Rules kept:
 *  - A key is known only if a module registered it. Unknown keys, wrong
 *    types and out-of-bounds values are refused as a whole (nothing of a
 *    refused patch is applied); null puts a key back to its default.
 *  - The stored document holds only keys set explicitly; what the admin API
 *    shows is every registered key with its effective value.
 *  - A string key may carry its own grammar (check): a value it refuses
 *    is refused like an out-of-bounds one, naming the setting.
 *  - Durations end in `_ms`, like the config keys. A setting that tightens
 *    an operator's config value documents how (e.g. 0 = the operator's).
 *  - Registration happens at startup, before any loop runs; afterwards the
 *    registry is read-only and may be read from any thread.
 *
 * Until the module table (gateway/modules.c) carries `settings`, modules
 * register their tables with gw_settings_register. */
#ifndef MCPGATE_GATEWAY_CORE_SETTINGS_H
#define MCPGATE_GATEWAY_CORE_SETTINGS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define GW_SETTING_INT 1
#define GW_SETTING_BOOL 2
#define GW_SETTING_STRING 3 /* min/max bound the length; the default is ""; check (optional) its grammar */

typedef struct gw_setting {
  const char *name; /* [a-z0-9_], unique across modules; NULL ends a table */
  int type;         /* GW_SETTING_INT|BOOL|STRING */
  int64_t min, max, def;
  const char *help;
  /* INT only, when > 0: a value other than 0 must be at least this (for
   * keys where 0 means "the operator's value" and the operator's config
   * has a floor of its own) */
  int64_t floor;
  /* STRING only, optional: the value's own grammar, checked after the
   * length bounds; 0 when it holds, else a negative code with what is
   * wrong in err (the registry names the setting before it) */
  int (*check)(const char *value, char *err, size_t errlen);
  /* STRING only: the value is a URL the gateway calls at the admin egress
   * level; the admin API refuses one whose host is an address the
   * operator's egress policy refuses (host names: at connect time) */
  bool egress_url;
  /* STRING only: a credential (a webhook URL carries its own token): the
   * value is sealed in the store (store/seal.h; AAD tenant, "setting",
   * the key), the settings document keeps GW_SETTING_SEALED in its place,
   * GET shows that, and "[set]" sent back in a PATCH keeps the value.
   * Read it with gw_settings_secret. */
  bool secret;
} gw_setting;

#define GW_SETTING_SEALED "[set]"

#define GW_SETTINGS_TABLES_MAX 32

/* Registers a NULL-name-terminated table (borrowed: static storage). The
 * same table twice is a no-op. ST_EINVAL for a malformed entry or a name
 * another table has; ST_ENOMEM past GW_SETTINGS_TABLES_MAX tables. */
int gw_settings_register(const gw_setting *table);
/* The registered key of that name, or NULL. */
const gw_setting *gw_setting_find(const char *name);

/* Write txn (the PATCH's job, after gw_settings_merge into doc): each
 * secret key of patch is sealed (or its sealed value deleted, for null)
 * and doc gets GW_SETTING_SEALED in its place; "[set]" in the patch keeps
 * what is sealed. 0 or ST_E*. */
int gw_settings_seal(st_txn *txn, const char *tenant, const json_t *patch, json_t *doc);
/* A secret key's value for tenant: 0 and *value (free with
 * st_secret_str_free), ST_ENOTFOUND when unset. */
int gw_settings_secret(st_txn *txn, const char *tenant, const char *name, char **value);

/* Checks a patch (a JSON object: key → value or null) against the
 * registry. 0, or ST_EINVAL with one message naming the problem (the
 * unknown keys, the expected type, or the bounds) in err. */
int gw_settings_validate(const json_t *patch, char *err, size_t errlen);
/* The stored document cur (may be NULL) with a validated patch applied:
 * null removes a key. *out is new (caller json_decref). */
int gw_settings_merge(const json_t *cur, const json_t *patch, json_t **out);
/* Every registered key in registration order with its effective value (the
 * stored one, else the default). New object, caller json_decref. */
json_t *gw_settings_view(const json_t *stored);

/* The tenant's value of an integer key, read from its record in txn (the
 * default when unset, when the tenant is not active, or when the key is
 * not registered). 0, or a store error (then *out is the default). */
int gw_settings_get_int(st_txn *txn, const char *tenant, const char *name, int64_t *out);
/* The same for a boolean key. */
int gw_settings_get_bool(st_txn *txn, const char *tenant, const char *name, bool *out);
/* The value of a string key in a tenant's stored settings document
 * (the record's "settings" member, borrowed), or "" when unset, of another
 * type, or refused by the key's current bounds or check. Borrowed from
 * settings: valid while it is. */
const char *gw_settings_string(const json_t *settings, const char *name);

#endif
