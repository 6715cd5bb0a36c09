/* auth/gtr.h — Global Token Revocation (draft-parecki-oauth-global-token-
 * revocation) as Okta's Universal Logout sends it: the pure parts of the
 * receiver (gateway/api/global_logout.c drives the request: rate limit,
 * keys, writer job), which subject it names, and the record of the jtis
 * already used. No I/O and no clock here: the caller passes the time.
 *
 * The request:
 *   POST /t/{t}/oauth/global-logout
 *   Authorization: Bearer <JWT signed by the tenant's Okta org>
 *   Content-Type: application/json
 *   {"sub_id":  {"format": "email",   "email": "alice@acme.com"}}
 *   {"subject": {"format": "iss_sub", "iss": "https://acme.okta.com", "sub": "00u…"}}
 * The draft names the member "sub_id" (since -03); Okta's guide for apps
 * shows "subject" (the draft's -02 name): either is accepted, never both.
 *
 * The body (auth_gtr_parse_body): at most AUTH_GTR_BODY_MAX bytes of strict
 * JSON (duplicate keys refused), an object whose only member is "sub_id" or
 * "subject"; that member a Subject Identifier (RFC 9493) with "format" and
 * exactly the members of its format — "email": {"email"}, "iss_sub":
 * {"iss", "sub"}. Other formats ("opaque", "account", "phone_number", …)
 * are refused: the gateway cannot map them to a user (400, as the draft
 * asks for an unsupported subject type). Values are non-empty strings
 * without control characters: email at most AUTH_GTR_EMAIL_MAX bytes with
 * an '@', iss at most AUTH_OIDC_ISSUER_MAX, sub at most AUTH_SUBJECT_MAX.
 *
 * The JWT (auth_gtr_check, after auth_jws_verify_header verified it against
 * the logout issuer's keys), as Okta documents it:
 *   header  typ "global-token-revocation+jwt" ("application/" prefix
 *           allowed, case-insensitive): explicit typing, so an ID token or
 *           any other JWT the org signs with the same key is refused
 *   iss     the logout issuer's own spelling (its discovery "issuer": the
 *           org URL, e.g. https://acme.okta.com)
 *   aud     this endpoint's URL (a string, or an array containing it)
 *   sub     the client_id of the tenant's OIDC app (the app the logout is for)
 *   exp     required, not passed, and at most AUTH_GTR_LIFETIME_MAX ahead
 *           (Okta: 5 minutes): a used jti is remembered until exp, so exp
 *           bounds what the store keeps
 *   nbf     when present, passed
 *   iat     required, not in the future
 *   jti     required: a non-empty string of at most AUTH_GTR_JTI_MAX bytes
 * every date with want->skew seconds each way.
 *
 * Used jtis (auth_gtr_jti_consume), ST_DB_AUTH:
 *   "j" sha256(tenant \0 iss \0 jti)   → u64 BE exp (+ skew)
 *   "J" u64 BE exp (+ skew), sha256    → ""   (expiry order: each consume
 *                                             deletes up to 16 dead ones)
 * A replay — after a restart too — is refused while the token would still
 * pass the exp check, and the exp check refuses it afterwards. Bounded:
 * only a token that verified against the tenant's Okta keys is recorded,
 * each for at most AUTH_GTR_LIFETIME_MAX + skew, and the endpoint is rate
 * limited per tenant after verification. Keys hold no tenant id in clear,
 * so a deleted tenant's entries are not purged: they expire like any and
 * the next consume (of any tenant) sweeps them.
 *
 * Subject → user (auth_gtr_resolve): "email" is the userName (compared as
 * SCIM compares it, case-insensitively; Okta's default username format is
 * the e-mail address). "iss_sub": iss must be the tenant's Okta — its
 * sign-in issuer or its logout issuer, compared normalised (auth/oidc.h) —
 * and sub the Okta user id: the user bound to that subject at an earlier
 * sign-in, else (with the default link settings) the user whose externalId
 * it is (Okta provisions its user id as externalId). The user's state does
 * not matter: an inactive or blocked user is signed out just the same.
 *
 * Errors: the AUTH_EGTR_* codes below (auth_strerror names them; no value
 * of the request ever appears in a message), ST_E* from the store. */
#ifndef MCPGATE_AUTH_GTR_H
#define MCPGATE_AUTH_GTR_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/login.h"
#include "auth/oidc.h"
#include "store/dir.h"
#include "store/store.h"

#define AUTH_GTR_BODY_MAX 4096
#define AUTH_GTR_EMAIL_MAX 320
#define AUTH_GTR_JTI_MAX 256
#define AUTH_GTR_LIFETIME_MAX 900 /* seconds a token's exp may lie ahead */
#define AUTH_GTR_SKEW_S 60
#define AUTH_GTR_TYP "global-token-revocation+jwt"

/* ---- errors (auth.h's range): -30670..-30689 */
#define AUTH_EGTR_BODY (-30670)     /* the body is malformed (why says how) */
#define AUTH_EGTR_FORMAT (-30671)   /* a subject format the gateway cannot map to a user */
#define AUTH_EGTR_TYP (-30672)      /* the JWT's typ is not global-token-revocation+jwt */
#define AUTH_EGTR_ISS (-30673)      /* iss missing or not the logout issuer */
#define AUTH_EGTR_AUD (-30674)      /* aud missing, malformed, or not this endpoint */
#define AUTH_EGTR_CLIENT (-30675)   /* sub missing or not the tenant's OIDC client_id */
#define AUTH_EGTR_EXP (-30676)      /* exp missing, malformed or passed */
#define AUTH_EGTR_LIFETIME (-30677) /* exp further ahead than AUTH_GTR_LIFETIME_MAX */
#define AUTH_EGTR_NBF (-30678)      /* nbf malformed or in the future */
#define AUTH_EGTR_IAT (-30679)      /* iat missing, malformed or in the future */
#define AUTH_EGTR_JTI (-30680)      /* jti missing or malformed */
#define AUTH_EGTR_REPLAY (-30681)   /* this jti was used already */
#define AUTH_EGTR_SUBJECT_ISS (-30682) /* iss_sub: iss is not the tenant's Okta */
#define AUTH_EGTR_ERR_FIRST (-30670)
#define AUTH_EGTR_ERR_LAST (-30689)
/* Names a code of the range above; NULL for any other. */
const char *auth_gtr_strerror(int err);

/* ---- the body */
enum { AUTH_GTR_EMAIL = 1, AUTH_GTR_ISS_SUB = 2 };

typedef struct auth_gtr_subject {
  int format;          /* AUTH_GTR_EMAIL or AUTH_GTR_ISS_SUB */
  bool sub_id;         /* named "sub_id" (the draft) rather than "subject" (Okta's guide) */
  char email[AUTH_GTR_EMAIL_MAX + 1];
  char iss[AUTH_OIDC_ISSUER_MAX + 1];
  char sub[AUTH_SUBJECT_MAX + 1];
} auth_gtr_subject;

/* Parses a request body (len bytes, not NUL-terminated). 0 and *out, or
 * AUTH_EGTR_BODY / AUTH_EGTR_FORMAT with one sentence in why (naming the
 * member at fault, never quoting a value); *out zeroed then. ST_ENOMEM. */
int auth_gtr_parse_body(const char *body, size_t len, auth_gtr_subject *out, char *why, size_t whylen);
/* "email" / "iss_sub". */
const char *auth_gtr_format_name(int format);

/* ---- the JWT */
typedef struct auth_gtr_expect {
  const char *tenant;    /* the jti's scope */
  const char *issuer;    /* iss must equal it exactly (the logout provider's doc_issuer) */
  const char *audience;  /* this endpoint's URL */
  const char *client_id; /* sub must equal it */
  int64_t now;           /* unix seconds */
  int64_t skew;          /* 0..AUTH_JOSE_SKEW_MAX */
} auth_gtr_expect;

/* What a checked token leaves for the writer job. */
typedef struct auth_gtr_token {
  uint8_t jti_hash[32]; /* sha256(tenant \0 iss \0 jti) */
  int64_t keep_until;   /* exp + skew: the jti is remembered until then */
} auth_gtr_token;

/* Checks a verified token's protected header and claims against want, in
 * this order: typ, iss, aud, sub, exp (and its lifetime), nbf, iat, jti.
 * 0 and *out, the first failure's AUTH_EGTR_* code, or AUTH_JOSE_EINVAL
 * for bad arguments. */
int auth_gtr_check(const json_t *header, const json_t *claims, const auth_gtr_expect *want, auth_gtr_token *out);

/* ---- used jtis */

/* Write txn: records the token's jti as used until its keep_until, and
 * deletes up to 16 records that expired by now. AUTH_EGTR_REPLAY when it
 * was used already (its record still kept). */
int auth_gtr_jti_consume(st_txn *txn, const auth_gtr_token *t, int64_t now);
/* 1 when the jti is recorded, 0 when not, or a store error. Any txn. */
int auth_gtr_jti_used(st_txn *txn, const uint8_t jti_hash[32]);

/* ---- the subject's user */

/* The tenant's user the subject names (rules above), reading settings (the
 * tenant's OIDC record) inside txn: 0 and user_id; ST_ENOTFOUND (nobody),
 * AUTH_EGTR_SUBJECT_ISS (iss_sub of another issuer), AUTH_EAMBIGUOUS
 * (several users have that externalId), or a store error. Any txn. */
int auth_gtr_resolve(st_txn *txn, const char *tenant, const json_t *settings, const auth_gtr_subject *s,
                     char user_id[ST_DIR_ID_LEN + 1]);

#endif
