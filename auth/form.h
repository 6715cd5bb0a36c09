/* auth/form.h — small pieces every OAuth client half of the gateway needs
 * (the sign-in toward Okta, auth/login.c; the connect flow toward an
 * upstream's authorization server, vault/connect.c):
 *   - application/x-www-form-urlencoded bodies and query strings, built in
 *     a buffer that wipes what it outgrows (secrets pass through it);
 *   - RFC 6749 §2.3.1 HTTP Basic client authentication;
 *   - a JSON object sealed into cookie text (AES-256-GCM under the store's
 *     master key, bound to tenant and kind) and opened again.
 * Pure functions; any thread. */
#ifndef MCPGATE_AUTH_FORM_H
#define MCPGATE_AUTH_FORM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

typedef struct auth_form {
  char *p;
  size_t n, cap;
  bool fail;
} auth_form;

/* Appends raw text / the value percent-encoded (everything but RFC 3986's
 * unreserved characters) / "&k=v" (no "&" first). */
void auth_form_str(auth_form *f, const char *s);
void auth_form_enc(auth_form *f, const char *s);
void auth_form_param(auth_form *f, const char *k, const char *v);
/* Hands the text over (*out malloc'd; wipe with auth_wipe): 0, or ST_ENOMEM
 * (nothing handed over; what was built is wiped). */
int auth_form_done(auth_form *f, char **out);
/* Wipes and frees a string (NULL: nothing). */
void auth_wipe(char *s);
/* "Basic " base64(urlenc(client_id) ":" urlenc(secret)) into *out
 * (malloc'd; wipe with auth_wipe). 0 or ST_ENOMEM. */
int auth_basic_credentials(const char *client_id, const char *secret, char **out);

/* Seals the JSON object j for (tenant, kind) into base64url cookie text of
 * at most max bytes (*out malloc'd). 0, ST_ENOMEM (also: longer than max)
 * or a sealing error. */
int auth_seal_text(st_store *st, const char *tenant, const char *kind, const json_t *j, size_t max, char **out);
/* Opens such text: *out is the object (caller decref) or NULL; 0, or -1 for
 * anything that is not a text of this store's key, tenant and kind. */
int auth_open_text(st_store *st, const char *tenant, const char *kind, const char *text, size_t max, json_t **out);

#endif
