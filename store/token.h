/* store/token.h — bearer tokens: generation, hashing, comparison.
 *
 * A token is <prefix><43 chars> where the 43 chars are 256 bits from
 * OpenSSL's CSPRNG (RAND_bytes), base64url without padding. The prefix
 * names the token's audience ("mgw_" gateway, "mgs_" SCIM, "mga_" admin) so
 * leaked tokens are recognisable by secret scanners. The token is shown to
 * its owner once; only st_token_hash(token) is stored. Plain SHA-256 is
 * enough (no slow KDF) because the input has 256 bits of entropy: there is
 * nothing to brute-force.
 *
 * Token ids are short random public identifiers (16 lowercase hex chars)
 * stored with the record, used to list and revoke without ever handling
 * the token itself. Stateless: no st_store needed; any thread. */
#ifndef MCPGATE_STORE_TOKEN_H
#define MCPGATE_STORE_TOKEN_H
#include <stddef.h>
#include <stdint.h>

#define ST_TOKEN_PREFIX_MAX 16 /* [a-z0-9_], at least 1 char */
#define ST_TOKEN_BODY_LEN 43   /* base64url of 32 bytes, no padding */
#define ST_TOKEN_BUFSZ (ST_TOKEN_PREFIX_MAX + ST_TOKEN_BODY_LEN + 1)
#define ST_TOKEN_ID_LEN 16
#define ST_TOKEN_ID_BUFSZ (ST_TOKEN_ID_LEN + 1)
#define ST_TOKEN_HASH_LEN 32

/* Writes a new NUL-terminated token into out (cap >= strlen(prefix) + 44;
 * ST_TOKEN_BUFSZ always fits). ST_EINVAL for a bad prefix or small buffer,
 * ST_ECRYPTO if the CSPRNG fails (never falls back to a weaker source). The
 * caller wipes out (OPENSSL_cleanse) once it has been shown. */
int st_token_new(const char *prefix, char *out, size_t cap);
/* Checks shape only: starts with prefix, then exactly 43 base64url chars.
 * 0 if well-formed, ST_EINVAL otherwise. Use it before hashing untrusted
 * input so garbage never reaches the store. */
int st_token_check(const char *token, size_t len, const char *prefix);
/* SHA-256 of the token's bytes (prefix included). ST_EINVAL if len is 0 or
 * above 4096, ST_ECRYPTO on a digest failure. */
int st_token_hash(const char *token, size_t len, uint8_t out[ST_TOKEN_HASH_LEN]);
/* New public token id: 16 lowercase hex chars + NUL. ST_ECRYPTO on CSPRNG failure. */
int st_token_id_new(char out[ST_TOKEN_ID_BUFSZ]);
/* Constant-time comparison (CRYPTO_memcmp): returns 1 if the n bytes are
 * equal, 0 otherwise. A predicate, not an error code. */
int st_ct_equal(const void *a, const void *b, size_t n);

#endif
