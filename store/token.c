/* store/token.c — see token.h. Every random byte comes from RAND_bytes; a
 * CSPRNG failure is an error, never a fallback. */
#include "store/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "store/store.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int prefix_ok(const char *prefix, size_t *len) {
  size_t n = 0;
  if (!prefix) return 0;
  for (; prefix[n]; n++) {
    char c = prefix[n];
    if (n >= ST_TOKEN_PREFIX_MAX) return 0;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
  }
  *len = n;
  return n > 0;
}

/* base64url without padding of exactly 32 bytes -> 43 chars. */
static void b64url_32(const uint8_t in[32], char out[ST_TOKEN_BODY_LEN]) {
  size_t o = 0, i = 0;
  for (; i + 3 <= 32; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64url[v >> 18 & 63];
    out[o++] = b64url[v >> 12 & 63];
    out[o++] = b64url[v >> 6 & 63];
    out[o++] = b64url[v & 63];
  }
  /* 32 = 10*3 + 2: two trailing bytes give three chars. */
  uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
  out[o++] = b64url[v >> 18 & 63];
  out[o++] = b64url[v >> 12 & 63];
  out[o++] = b64url[v >> 6 & 63];
}

int st_token_new(const char *prefix, char *out, size_t cap) {
  uint8_t raw[32];
  size_t plen;
  if (!out || !prefix_ok(prefix, &plen) || cap < plen + ST_TOKEN_BODY_LEN + 1) return ST_EINVAL;
  if (RAND_bytes(raw, sizeof raw) != 1) return ST_ECRYPTO;
  memcpy(out, prefix, plen);
  b64url_32(raw, out + plen);
  out[plen + ST_TOKEN_BODY_LEN] = 0;
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

int st_token_check(const char *token, size_t len, const char *prefix) {
  size_t plen;
  if (!token || !prefix_ok(prefix, &plen)) return ST_EINVAL;
  if (len != plen + ST_TOKEN_BODY_LEN || memcmp(token, prefix, plen) != 0) return ST_EINVAL;
  for (size_t i = plen; i < len; i++) {
    char c = token[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return ST_EINVAL;
  }
  /* The last char encodes 4 data bits + 2 zero bits: reject non-canonical
   * encodings so one token has exactly one spelling (and one hash). */
  const char *pos = strchr(b64url, token[len - 1]);
  if (!pos || ((pos - b64url) & 3) != 0) return ST_EINVAL;
  return 0;
}

int st_token_hash(const char *token, size_t len, uint8_t out[ST_TOKEN_HASH_LEN]) {
  if (!token || !out || len == 0 || len > 4096) return ST_EINVAL;
  if (st_sha256(token, len, out) != 0) return ST_ECRYPTO;
  return 0;
}

int st_token_id_new(char out[ST_TOKEN_ID_BUFSZ]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t raw[ST_TOKEN_ID_LEN / 2];
  if (!out) return ST_EINVAL;
  if (RAND_bytes(raw, sizeof raw) != 1) return ST_ECRYPTO;
  for (size_t i = 0; i < sizeof raw; i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 15];
  }
  out[ST_TOKEN_ID_LEN] = 0;
  return 0;
}

int st_ct_equal(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }
