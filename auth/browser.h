/* auth/browser.h — employees' browser sessions: server-side records behind
 * the session cookie of the employee page (and, next, of the OAuth
 * authorization server's consent).
 *
 * The cookie holds 32 random bytes (base64url); the store holds only their
 * SHA-256. A session lives at most `max` seconds from its sign-in and dies
 * after `idle` seconds without use (both the operator's config,
 * browser_session_max_ms / browser_session_idle_ms, checked on every read).
 * Every read also checks that the tenant and the user exist and the user is
 * active, so a deactivated user fails closed even before the hook below
 * runs; the hook deletes the user's sessions in the SCIM transaction that
 * deactivates or deletes them (and the user's subject binding on delete;
 * a sign-out everywhere deletes the sessions and keeps the binding),
 * so reactivation revives nothing. A SCIM write that gives a user bound
 * by e-mail an externalId naming another subject drops the binding and
 * signs the user out everywhere (auth/login.h, rule a).
 *
 * The same hook records when the user was last cut (deactivated, blocked,
 * signed out everywhere): a sign-in that began before that moment is
 * refused when its session would be written (AUTH_ECUT), since its code
 * exchange with the provider was under way during the cut — by then a
 * Universal Logout has left the user active, or a restore has made them
 * active again, and nothing from before a cut may come back.
 *
 * Each session has its own CSRF token (32 random bytes, base64url), which
 * the page sends back in X-CSRF-Token (or a form field) on every
 * state-changing request.
 *
 * Store layout (ST_DB_AUTH):
 *   "b" sha256(cookie)                 → JSON {tenant, user, iss, subject,
 *                                         csrf, created, signin_at,
 *                                         last_seen, expires} (unix s)
 *   "B" tenant \0 user id \0 sha256    → ""   (a user's sessions)
 *   "E" u64 BE expires, sha256         → tenant (expiry order: each new
 *                                         session sweeps a few dead ones)
 *   "N" tenant \0 user id              → u64 BE ms since the epoch: the
 *                                         user's last cut (deleted with the
 *                                         user and the tenant)
 * Threads: functions take a txn; write txns only where they say so. */
#ifndef MCPGATE_AUTH_BROWSER_H
#define MCPGATE_AUTH_BROWSER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/login.h"
#include "store/store.h"

#define AUTH_BROWSER_TOUCH_S 60 /* last use recorded at most this often */

/* A session to create (the login callback's write job). */
typedef struct auth_browser_new {
  /* in */
  char tenant[64];
  uint8_t hash[32];            /* sha256 of the cookie text */
  char csrf[AUTH_LOGIN_RAND_LEN + 1];
  char iss[1025];
  char state[AUTH_LOGIN_RAND_LEN + 1]; /* consumed: a replay is refused */
  int64_t state_expires;
  int64_t now, max_s;
  int64_t started_ms;          /* when the sign-in began (auth_login.started_ms) */
  const json_t *settings;      /* the tenant's OIDC record (borrowed) */
  const json_t *claims;        /* the verified ID token's claims (borrowed) */
  /* out */
  auth_link link;
  int64_t expires;
} auth_browser_new;

/* Write job body: consumes the state (AUTH_EREPLAY), resolves the claims
 * to an active user again (auth_link_resolve's errors), refuses a sign-in
 * that began before the user's last cut (AUTH_ECUT), binds the
 * subject when the e-mail fallback found the user, writes the session.
 * Sweeps up to 16 sessions that reached their maximum age. */
int auth_browser_create(st_txn *txn, auth_browser_new *n);

typedef struct auth_browser {
  uint8_t hash[32];
  char tenant[64];
  char user_id[40];
  char csrf[AUTH_LOGIN_RAND_LEN + 1];
  char subject[AUTH_SUBJECT_MAX + 1];
  int64_t created, signin_at, last_seen, expires;
  bool touch_due;              /* last_seen older than AUTH_BROWSER_TOUCH_S */
} auth_browser;

/* The live session of that cookie text in tenant at now (unix s): exists,
 * of this tenant, younger than its expiry, used within idle_s, its user
 * present and active. 0 and *out, or ST_ENOTFOUND (any of those failing),
 * or a store error. Any txn. */
int auth_browser_get(st_txn *txn, const char *tenant, const char *cookie, int64_t now, int64_t idle_s,
                     auth_browser *out);
/* The same, for a write job re-checking the session a request came with:
 * 0 when that cookie's session is still live and still user's;
 * ST_ENOTFOUND when it is gone (a cut since, a sign-out) or another
 * user's; or a store error. Nothing of the session is kept. */
int auth_browser_still(st_txn *txn, const char *tenant, const char *cookie, int64_t now, int64_t idle_s,
                       const char *user);
/* Write txn: records now as the session's last use. Gone: not an error. */
int auth_browser_touch(st_txn *txn, const uint8_t hash[32], int64_t now);
/* Write txn: deletes one session (sign out). ST_ENOTFOUND when gone. */
int auth_browser_delete(st_txn *txn, const uint8_t hash[32]);
/* Write txn: deletes every session of a user; returns how many. */
int auth_browser_delete_user(st_txn *txn, const char *tenant, const char *user_id);
/* Sessions of a user (for tests and the admin's view): a count. */
int auth_browser_count_user(st_txn *txn, const char *tenant, const char *user_id);
/* Tenant purge (st_purge_fn): sessions and bindings; keys deleted. */
int auth_browser_purge_tenant(st_txn *txn, const char *tenant, int limit);
/* Registers the hooks (user deactivated/deleted/signed out everywhere;
 * user changed: a binding its new externalId contradicts is dropped and
 * the user signed out, auth_link_recheck_user), the purge ("auth.browser")
 * and the check (sessions whose user is gone); at startup. */
int auth_browser_register(st_store *st);

#endif
