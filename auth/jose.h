/* auth/jose.h — the JOSE core of the OpenID Connect relying party (issue
 * 16): strict base64url, JSON Web Key Sets (RFC 7517) turned into
 * verification keys, compact JWS verification (RFC 7515) and the ID-token
 * claim checks of OpenID Connect Core 3.1.3.7. No I/O, no store, no clock:
 * the login flow fetches the JWKS, reads the time and calls these.
 *
 * What is accepted, and why so little:
 *   - Algorithms RS256 (RSASSA-PKCS1-v1_5 + SHA-256) and ES256 (ECDSA P-256
 *     + SHA-256) only — what Okta, Entra and oidc-provider sign ID tokens
 *     with. "none", HMAC (a public key used as an HMAC secret is the classic
 *     JWT forgery), PS*, ES384/512 and anything else are refused, and a key
 *     is only ever used with the algorithm of its own type.
 *   - Keys come only from the key set the caller passes: header parameters
 *     that carry or point at keys (jwk, jku, x5u, x5c) are ignored, and a
 *     header with "crit" is refused (we understand no extension).
 *   - RSA moduli of 2048..8192 bits, odd and without a factor under 752,
 *     with odd public exponents of 3 up to 64 bits (not OpenSSL's
 *     public-key check: its Miller-Rabin round costs a core ~0.15 s per
 *     8192-bit key, on the loop; jose.c says why it is not needed); EC
 *     keys on P-256 whose point is on the curve. A
 *     weak or malformed key of a supported type fails the whole set (a
 *     provider publishing one is broken: fail closed and say why); keys of
 *     other types, curves, algorithms or uses are skipped.
 *   - JSON (key set, JWS header, claims) is parsed fully with duplicate
 *     keys refused, so no two readers can see different values.
 *   - Every input has a cap (AUTH_JOSE_*_MAX), checked before decoding.
 *   - Errors are codes (auth_jose_strerror names them for logs); no token,
 *     claim or key contents ever appear in an error.
 *
 * Threads: no global state. A key set is immutable once parsed and may be
 * verified against from any number of threads at once; it is reference
 * counted so a cache can replace it while a verification still holds it.
 * OpenSSL's per-thread error queue is left as each call found it. */
#ifndef MCPGATE_AUTH_JOSE_H
#define MCPGATE_AUTH_JOSE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_JOSE_TOKEN_MAX (16 * 1024)      /* compact JWS bytes */
#define AUTH_JOSE_JWKS_MAX (128 * 1024)      /* JWKS document bytes */
#define AUTH_JOSE_JWKS_KEYS_MAX 64           /* entries of "keys", skipped ones included */
#define AUTH_JOSE_KID_MAX 256                /* bytes of a "kid" */
#define AUTH_JOSE_RSA_MIN_BITS 2048
#define AUTH_JOSE_RSA_MAX_BITS 8192
#define AUTH_JOSE_ES256_DER_MAX 72           /* DER ECDSA-Sig-Value of two 256-bit integers */
#define AUTH_JOSE_SKEW_MAX 3600              /* seconds of clock skew a caller may allow */

/* Bytes that n base64url characters (no padding) decode to. */
#define AUTH_B64URL_DECODED_LEN(n) ((n) / 4 * 3 + ((n) % 4 ? (n) % 4 - 1 : 0))

/* ---- errors: a sub-range of auth's (-30600..-30699, auth.h): -30610..-30659.
 * auth_strerror names them too. */
typedef enum auth_jose_err {
  AUTH_JOSE_EINVAL = -30610,      /* bad argument (NULL, expectations out of range) */
  AUTH_JOSE_ENOMEM = -30611,      /* allocation failed */
  AUTH_JOSE_ECRYPTO = -30612,     /* OpenSSL failed for a reason other than the input */
  AUTH_JOSE_ETOOBIG = -30613,     /* input over its cap (token, JWKS bytes, key count, buffer) */
  AUTH_JOSE_EB64 = -30614,        /* not strict base64url */
  /* key sets */
  AUTH_JOSE_EJWKS = -30615,       /* not a JSON object with a "keys" array of objects */
  AUTH_JOSE_EKEY = -30616,        /* an RSA/EC key with missing or malformed members */
  AUTH_JOSE_EKEYWEAK = -30617,    /* RSA modulus under AUTH_JOSE_RSA_MIN_BITS */
  AUTH_JOSE_EKEYCURVE = -30618,   /* EC point not on P-256 (or at infinity) */
  AUTH_JOSE_ENOKEYS = -30619,     /* the set holds no usable signing key */
  /* compact JWS */
  AUTH_JOSE_EFORMAT = -30620,     /* not three dot-separated parts, header or payload empty */
  AUTH_JOSE_EHEADER = -30621,     /* header not a JSON object, or "kid" not a string */
  AUTH_JOSE_EALG = -30622,        /* "alg" missing or not RS256/ES256 */
  AUTH_JOSE_ECRIT = -30623,       /* header carries "crit" */
  AUTH_JOSE_ENOKEY = -30624,      /* no key for the token: unknown kid (refetch the JWKS) */
  AUTH_JOSE_EKEYTYPE = -30625,    /* the kid names a key of another type than alg's */
  AUTH_JOSE_EKEYAMBIG = -30626,   /* several keys fit (no kid, or a repeated kid) */
  AUTH_JOSE_ESIGLEN = -30627,     /* signature of the wrong length for the key */
  AUTH_JOSE_EBADSIG = -30628,     /* signature does not verify */
  AUTH_JOSE_EPAYLOAD = -30629,    /* verified payload is not a JSON object */
  /* ID-token claims */
  AUTH_JOSE_EISS = -30630,        /* iss missing or not the issuer */
  AUTH_JOSE_ESUB = -30631,        /* sub missing or not a non-empty string */
  AUTH_JOSE_EAUD = -30632,        /* aud missing, malformed, or without client_id */
  AUTH_JOSE_EAZP_MISSING = -30633,/* several audiences and no azp */
  AUTH_JOSE_EAZP = -30634,        /* azp present and not client_id */
  AUTH_JOSE_EEXP_MISSING = -30635,/* exp missing or not a NumericDate */
  AUTH_JOSE_EEXPIRED = -30636,    /* exp passed (beyond the skew) */
  AUTH_JOSE_ENBF = -30637,        /* nbf malformed or in the future (beyond the skew) */
  AUTH_JOSE_EIAT_MISSING = -30638,/* iat missing or not a NumericDate */
  AUTH_JOSE_EIAT = -30639,        /* iat in the future (beyond the skew) */
  AUTH_JOSE_ENONCE = -30640,      /* nonce expected, and missing or different */
  AUTH_JOSE_EAUTH_TIME = -30641,  /* max_age asked: auth_time missing, malformed or too old */
} auth_jose_err;
#define AUTH_JOSE_ERR_FIRST (-30610)
#define AUTH_JOSE_ERR_LAST (-30659)

/* Names a code of the range above ("ok" for 0, "unknown jose error"
 * otherwise); a static string without token contents. */
const char *auth_jose_strerror(int err);

/* ---- base64url (RFC 4648 §5) without padding, strict: only [A-Za-z0-9_-],
 * no "=", no whitespace, a length that is not 1 mod 4, and zero unused bits
 * in the last character (so every byte string has exactly one encoding).
 * Writes AUTH_B64URL_DECODED_LEN(len) bytes to out and sets *out_len;
 * AUTH_JOSE_ETOOBIG when cap is smaller (nothing written), AUTH_JOSE_EB64
 * on any other refusal (out may hold partial output). */
int auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Characters n bytes encode to (no padding). */
#define AUTH_B64URL_ENCODED_LEN(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
/* Encodes len bytes as base64url without padding into out and NUL-terminates
 * it; returns the characters written, or 0 when cap is smaller than
 * AUTH_B64URL_ENCODED_LEN(len) + 1 (nothing usable written). */
size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* ---- JSON Web Key Sets */
typedef struct auth_jwks auth_jwks;

/* What one usable key of a set is; strings live as long as the set. */
typedef struct auth_jwk_info {
  const char *kid; /* NULL when the JWK has none */
  const char *kty; /* "RSA" or "EC" */
  const char *alg; /* "RS256", "ES256", or NULL when the JWK names none */
  const char *use; /* "sig", or NULL when the JWK names none */
  int bits;        /* modulus bits (RSA) or 256 (EC) */
} auth_jwk_info;

/* Builds a key set from a parsed JWKS document {"keys":[…]} (borrowed; not
 * kept). Usable: kty "RSA" (n, e) or kty "EC" with crv "P-256" (x, y of 32
 * bytes), whose use (if any) is "sig", key_ops (if any) include "verify",
 * and alg (if any) is RS256/ES256 respectively. Others are skipped. On
 * success *out is a new set with one reference (auth_jwks_free). Errors:
 * AUTH_JOSE_EJWKS, ETOOBIG (more than AUTH_JOSE_JWKS_KEYS_MAX entries),
 * EKEY, EKEYWEAK, EKEYCURVE, ENOKEYS (nothing usable), ENOMEM, ECRYPTO;
 * *out is NULL then. */
int auth_jwks_parse_json(const json_t *jwks, auth_jwks **out);
/* The same from the document's bytes (at most AUTH_JOSE_JWKS_MAX; JSON with
 * duplicate keys refused: AUTH_JOSE_EJWKS). */
int auth_jwks_parse(const char *buf, size_t len, auth_jwks **out);
/* Another reference to ks (returned), for a verifier that may outlive the
 * cache's copy. Any thread. */
auth_jwks *auth_jwks_ref(auth_jwks *ks);
/* Drops one reference; the last frees the set and its keys. NULL is fine. */
void auth_jwks_free(auth_jwks *ks);
/* Usable keys in the set, and JWKS entries that were skipped. */
size_t auth_jwks_count(const auth_jwks *ks);
size_t auth_jwks_skipped(const auth_jwks *ks);
/* Describes key i (< auth_jwks_count): 0, or AUTH_JOSE_EINVAL. */
int auth_jwks_key(const auth_jwks *ks, size_t i, auth_jwk_info *out);

/* ---- compact JWS */

/* Verifies a compact JWS (header.payload.signature, len bytes, at most
 * AUTH_JOSE_TOKEN_MAX) against ks and returns its payload as a JSON
 * object in *claims (a new reference the caller json_decref's; NULL on any
 * error). The key: the one whose kid is the header's kid; without a kid,
 * the only key of alg's type. The payload is parsed only after the
 * signature verified. Checks no claim: see auth_idtoken_check. */
int auth_jws_verify(const auth_jwks *ks, const char *token, size_t len, json_t **claims);
/* The same, and the token's protected header in *header (a new reference,
 * on success only: NULL on any error), for a caller that checks its "typ"
 * (explicit typing, RFC 8725 §3.11). */
int auth_jws_verify_header(const auth_jwks *ks, const char *token, size_t len, json_t **header, json_t **claims);

/* JWS ES256 signatures are R || S, 32 bytes each, big-endian (RFC 7518
 * §3.4); OpenSSL verifies the DER ECDSA-Sig-Value. Writes the DER form of
 * raw to der (cap >= AUTH_JOSE_ES256_DER_MAX always fits) and its length to
 * *der_len. Leading zero bytes of R or S are dropped and a 0x00 is added
 * before a high bit, as DER INTEGERs require. */
int auth_es256_sig_to_der(const uint8_t raw[64], uint8_t *der, size_t cap, size_t *der_len);

/* ---- ID-token claims (OpenID Connect Core 3.1.3.7, 2.) */
typedef struct auth_idtoken_expect {
  const char *issuer;    /* iss must equal it exactly */
  const char *client_id; /* in aud; azp, when present, must equal it */
  const char *nonce;     /* NULL: not checked; else nonce must equal it (constant time) */
  int64_t now;           /* unix seconds */
  int64_t skew;          /* seconds allowed each way, 0..AUTH_JOSE_SKEW_MAX (e.g. 120) */
  bool check_max_age;    /* when set, auth_time is required and at most */
  int64_t max_age;       /* ... max_age (+ skew) seconds old */
} auth_idtoken_expect;

/* A NumericDate (RFC 7519 §2) claim value: a JSON number in
 * 0..253402300799; a fraction is rounded towards refusal — up (round_up:
 * for nbf, iat, auth_time) or down (for exp). 0 and *out, or -1 when v is
 * missing or malformed. */
int auth_jose_numeric_date(const json_t *v, bool round_up, int64_t *out);

/* Checks verified claims (from auth_jws_verify) against want, in this
 * order: iss, sub (a non-empty string), aud (a string equal to client_id,
 * or an array of strings containing it), azp (required when aud lists more
 * than one audience; equal to client_id when present), exp (required,
 * exp > now - skew), nbf (when present, nbf <= now + skew), iat (required,
 * iat <= now + skew), auth_time (when check_max_age), nonce. NumericDates
 * are JSON numbers in 0..253402300799 (fractions rounded the strict way).
 * 0, the first failure's code, or AUTH_JOSE_EINVAL for bad arguments. */
int auth_idtoken_check(const json_t *claims, const auth_idtoken_expect *want);

#endif
