/* auth/jose.c — strict base64url, JWKS → EVP_PKEY keys, compact JWS
 * verification (RS256, ES256) and ID-token claim checks (see jose.h for the
 * accepted subset and why).
 *
 * Rules this file keeps, and why:
 *   - Keys are built from their JWK parameters with OSSL_PARAM_BLD and
 *     EVP_PKEY_fromdata (OpenSSL 3 providers; none of the deprecated RSA_ /
 *     EC_KEY_ calls) and are checked before they are kept: an invalid
 *     curve point, an even modulus, one with a small factor or a tiny
 *     exponent never reaches a verification.
 *   - The checks cost little, whoever wrote the set: a set is parsed on the
 *     loop that serves every tenant, and anyone can have it fetched again
 *     (a token with an unknown kid). EC keys pass EVP_PKEY_public_check (a
 *     point check); RSA keys get our own checks (odd modulus, no factor
 *     under 752, the exponent's bounds) and not OpenSSL's, which runs a
 *     Miller-Rabin round on the modulus: ~0.15 s of a core per 8192-bit
 *     key, every round for a prime one — a tenant's provider could hold
 *     the loop ~10 s per fetch. That round only tells a prime modulus from
 *     a product, and a set that publishes a prime one is broken by its own
 *     publisher, who can sign anything with it anyway.
 *   - A token's alg picks the key TYPE, and the key never picks the
 *     algorithm: RS256 only with RSA keys, ES256 only with P-256 keys, and a
 *     JWK's own "alg" must agree. That closes alg-confusion attacks.
 *   - Caps and lengths are checked before anything is decoded or
 *     allocated; the payload is parsed as JSON only once its signature has
 *     verified, so unauthenticated bytes meet only the header parser.
 *   - Every function that calls OpenSSL brackets it with ERR_set_mark /
 *     ERR_pop_to_mark: refusals are our codes, and the thread's error queue
 *     is left as found for whoever reads it next (TLS code on the loop).
 *   - One `goto done` exit per function that owns resources. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "auth/jose.h"

#define JWK_RSA 1
#define JWK_EC 2
#define KEY_SKIP 1 /* parse_key: not an error, not a usable key */
#define NUMERIC_DATE_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define RSA_E_MAX_BYTES 8
#define RSA_N_MAX_BYTES (AUTH_JOSE_RSA_MAX_BITS / 8 + 1) /* one leading zero tolerated */
#define SIG_MAX_BYTES (AUTH_JOSE_RSA_MAX_BITS / 8)

typedef struct jwk {
  EVP_PKEY *pkey;
  int type;    /* JWK_RSA / JWK_EC */
  char *kid;   /* NULL when none */
  const char *alg, *use; /* static strings or NULL */
  int bits;
} jwk;

struct auth_jwks {
  atomic_int refs;
  size_t n, skipped;
  jwk keys[]; /* n used of the JWKS entry count allocated */
};

const char *auth_jose_strerror(int err) {
  switch (err) {
  case 0: return "ok";
  case AUTH_JOSE_EINVAL: return "jose: invalid argument";
  case AUTH_JOSE_ENOMEM: return "jose: out of memory";
  case AUTH_JOSE_ECRYPTO: return "jose: crypto library failure";
  case AUTH_JOSE_ETOOBIG: return "jose: input over its size cap";
  case AUTH_JOSE_EB64: return "jose: invalid base64url";
  case AUTH_JOSE_EJWKS: return "jwks: not a JSON object with a keys array of objects";
  case AUTH_JOSE_EKEY: return "jwks: an RSA or EC key is malformed";
  case AUTH_JOSE_EKEYWEAK: return "jwks: an RSA key is shorter than 2048 bits";
  case AUTH_JOSE_EKEYCURVE: return "jwks: an EC key's point is not on P-256";
  case AUTH_JOSE_ENOKEYS: return "jwks: no usable signing key";
  case AUTH_JOSE_EFORMAT: return "jws: not a compact serialization of three parts";
  case AUTH_JOSE_EHEADER: return "jws: header is not a JSON object with a string kid";
  case AUTH_JOSE_EALG: return "jws: alg is not RS256 or ES256";
  case AUTH_JOSE_ECRIT: return "jws: header has crit";
  case AUTH_JOSE_ENOKEY: return "jws: no key in the set for the token's kid";
  case AUTH_JOSE_EKEYTYPE: return "jws: the kid's key does not fit alg";
  case AUTH_JOSE_EKEYAMBIG: return "jws: several keys fit the token";
  case AUTH_JOSE_ESIGLEN: return "jws: signature of the wrong length";
  case AUTH_JOSE_EBADSIG: return "jws: bad signature";
  case AUTH_JOSE_EPAYLOAD: return "jws: payload is not a JSON object";
  case AUTH_JOSE_EISS: return "id_token: iss is not the issuer";
  case AUTH_JOSE_ESUB: return "id_token: sub missing";
  case AUTH_JOSE_EAUD: return "id_token: aud does not contain the client id";
  case AUTH_JOSE_EAZP_MISSING: return "id_token: several audiences and no azp";
  case AUTH_JOSE_EAZP: return "id_token: azp is not the client id";
  case AUTH_JOSE_EEXP_MISSING: return "id_token: exp missing or malformed";
  case AUTH_JOSE_EEXPIRED: return "id_token: expired";
  case AUTH_JOSE_ENBF: return "id_token: not valid yet (nbf)";
  case AUTH_JOSE_EIAT_MISSING: return "id_token: iat missing or malformed";
  case AUTH_JOSE_EIAT: return "id_token: issued in the future (iat)";
  case AUTH_JOSE_ENONCE: return "id_token: nonce missing or different";
  case AUTH_JOSE_EAUTH_TIME: return "id_token: auth_time missing or older than max_age";
  default: return "unknown jose error";
  }
}

/* ---- base64url */

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len) {
  if ((!in && len) || !out_len) return AUTH_JOSE_EINVAL;
  *out_len = 0;
  if (len % 4 == 1) return AUTH_JOSE_EB64;
  if (AUTH_B64URL_DECODED_LEN(len) > cap) return AUTH_JOSE_ETOOBIG;
  uint32_t acc = 0;
  unsigned bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64url_value((unsigned char)in[i]);
    if (v < 0) return AUTH_JOSE_EB64;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
    acc &= (1u << bits) - 1;
  }
  if (acc != 0) return AUTH_JOSE_EB64; /* unused low bits set: not the canonical encoding */
  *out_len = o;
  return 0;
}

size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t need = AUTH_B64URL_ENCODED_LEN(len);
  if (!out || cap < need + 1 || (!in && len)) return 0;
  size_t o = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < len; i++) {
    acc = (acc << 8) | in[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = abc[(acc >> bits) & 63];
    }
    acc &= (1u << bits) - 1;
  }
  if (bits) out[o++] = abc[(acc << (6 - bits)) & 63];
  out[o] = 0;
  return o;
}

/* Decodes the string member name of k into out (exactly want bytes when
 * want > 0, else 1..cap bytes). AUTH_JOSE_EKEY on anything else. */
static int member_bytes(const json_t *k, const char *name, uint8_t *out, size_t cap, size_t want,
                        size_t *n) {
  const json_t *v = json_object_get(k, name);
  if (!json_is_string(v)) return AUTH_JOSE_EKEY;
  if (auth_b64url_decode(json_string_value(v), json_string_length(v), out, cap, n) != 0) return AUTH_JOSE_EKEY;
  if (want ? *n != want : *n == 0) return AUTH_JOSE_EKEY;
  return 0;
}

/* ---- keys */

/* EVP_PKEY_fromdata, then EVP_PKEY_public_check when `check` (EC: cheap;
 * RSA keys are checked by build_rsa instead, see the top). *pk is NULL on
 * failure: AUTH_JOSE_ECRYPTO when building failed, bad_key when the key did
 * not pass the check (for EC, fromdata itself refuses an off-curve point). */
static int key_from_params(const char *type, OSSL_PARAM_BLD *bld, int bad_key, bool check, EVP_PKEY **pk) {
  int rc = AUTH_JOSE_ECRYPTO;
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL), *cctx = NULL;
  *pk = NULL;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1) goto done;
  if (EVP_PKEY_fromdata(ctx, pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    rc = bad_key;
    goto done;
  }
  if (!check) {
    rc = 0;
    goto done;
  }
  if (!(cctx = EVP_PKEY_CTX_new_from_pkey(NULL, *pk, NULL))) goto done;
  rc = EVP_PKEY_public_check(cctx) == 1 ? 0 : bad_key;
done:
  if (rc) {
    EVP_PKEY_free(*pk);
    *pk = NULL;
  }
  EVP_PKEY_CTX_free(cctx);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return rc;
}

static int build_rsa(const json_t *k, jwk *out) {
  uint8_t nb[RSA_N_MAX_BYTES], eb[RSA_E_MAX_BYTES];
  size_t nl, el;
  BIGNUM *n = NULL, *e = NULL;
  OSSL_PARAM_BLD *bld = NULL;
  int rc = member_bytes(k, "n", nb, sizeof nb, 0, &nl);
  if (!rc) rc = member_bytes(k, "e", eb, sizeof eb, 0, &el);
  if (rc) return rc;
  rc = AUTH_JOSE_ENOMEM;
  if (!(n = BN_bin2bn(nb, (int)nl, NULL)) || !(e = BN_bin2bn(eb, (int)el, NULL))) goto done;
  int bits = BN_num_bits(n);
  if (bits > AUTH_JOSE_RSA_MAX_BITS || !BN_is_odd(e) || BN_is_one(e) || !BN_is_odd(n)) {
    rc = AUTH_JOSE_EKEY;
    goto done;
  }
  /* no factor under 752 (what OpenSSL's check looks for before its
   * Miller-Rabin round; a composite divisor's primes came first) */
  for (BN_ULONG d = 3; d < 752; d += 2) {
    BN_ULONG r = BN_mod_word(n, d);
    if (r == (BN_ULONG)-1) goto done; /* ENOMEM */
    if (r == 0) {
      rc = AUTH_JOSE_EKEY;
      goto done;
    }
  }
  if (bits < AUTH_JOSE_RSA_MIN_BITS) {
    rc = AUTH_JOSE_EKEYWEAK;
    goto done;
  }
  if (!(bld = OSSL_PARAM_BLD_new()) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    goto done;
  rc = key_from_params("RSA", bld, AUTH_JOSE_EKEY, false, &out->pkey);
  out->bits = bits;
done:
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  return rc;
}

static int build_ec(const json_t *k, jwk *out) {
  uint8_t pt[65]; /* SEC 1 uncompressed point: 0x04 || x || y */
  size_t xl, yl;
  int rc = member_bytes(k, "x", pt + 1, 32, 32, &xl);
  if (!rc) rc = member_bytes(k, "y", pt + 33, 32, 32, &yl);
  if (rc) return rc;
  pt[0] = 0x04;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
    rc = AUTH_JOSE_ENOMEM;
  else
    rc = key_from_params("EC", bld, AUTH_JOSE_EKEYCURVE, true, &out->pkey);
  out->bits = 256;
  OSSL_PARAM_BLD_free(bld);
  return rc;
}

/* An optional string member: 0 (absent: *s NULL), 1 (a string), -1 (another type). */
static int opt_string(const json_t *k, const char *name, const char **s) {
  const json_t *v = json_object_get(k, name);
  *s = json_string_value(v);
  return !v ? 0 : *s ? 1 : -1;
}

/* One JWKS entry into out: 0 (usable key), KEY_SKIP, or an error. */
static int parse_key(const json_t *k, jwk *out) {
  const char *kty, *use, *alg, *kid, *crv;
  if (!json_is_object(k)) return AUTH_JOSE_EJWKS;
  if (opt_string(k, "kty", &kty) != 1) return AUTH_JOSE_EKEY; /* required by RFC 7517 §4.1 */
  int type = !strcmp(kty, "RSA") ? JWK_RSA : !strcmp(kty, "EC") ? JWK_EC : 0;
  if (!type) return KEY_SKIP;
  if (opt_string(k, "use", &use) < 0) return AUTH_JOSE_EKEY;
  if (use && strcmp(use, "sig")) return KEY_SKIP;
  const json_t *ops = json_object_get(k, "key_ops");
  if (ops) {
    if (!json_is_array(ops)) return AUTH_JOSE_EKEY;
    bool verify = false;
    size_t i;
    const json_t *op;
    json_array_foreach(ops, i, op) verify |= json_is_string(op) && !strcmp(json_string_value(op), "verify");
    if (!verify) return KEY_SKIP;
  }
  if (opt_string(k, "alg", &alg) < 0 || opt_string(k, "kid", &kid) < 0) return AUTH_JOSE_EKEY;
  if (alg && strcmp(alg, type == JWK_RSA ? "RS256" : "ES256")) return KEY_SKIP;
  if (type == JWK_EC) {
    if (opt_string(k, "crv", &crv) != 1) return AUTH_JOSE_EKEY;
    if (strcmp(crv, "P-256")) return KEY_SKIP;
  }
  if (kid && (json_string_length(json_object_get(k, "kid")) > AUTH_JOSE_KID_MAX ||
              strlen(kid) != json_string_length(json_object_get(k, "kid"))))
    return AUTH_JOSE_EKEY;
  int rc = type == JWK_RSA ? build_rsa(k, out) : build_ec(k, out);
  if (rc) return rc;
  out->type = type;
  out->alg = alg ? (type == JWK_RSA ? "RS256" : "ES256") : NULL;
  out->use = use ? "sig" : NULL;
  if (kid && !(out->kid = strdup(kid))) {
    EVP_PKEY_free(out->pkey);
    out->pkey = NULL;
    return AUTH_JOSE_ENOMEM;
  }
  return 0;
}

int auth_jwks_parse_json(const json_t *doc, auth_jwks **out) {
  if (!out) return AUTH_JOSE_EINVAL;
  *out = NULL;
  const json_t *keys = json_object_get(doc, "keys");
  if (!json_is_object(doc) || !json_is_array(keys)) return AUTH_JOSE_EJWKS;
  size_t cnt = json_array_size(keys);
  if (cnt > AUTH_JOSE_JWKS_KEYS_MAX) return AUTH_JOSE_ETOOBIG;
  if (cnt == 0) return AUTH_JOSE_ENOKEYS;
  auth_jwks *ks = calloc(1, sizeof *ks + cnt * sizeof(jwk));
  if (!ks) return AUTH_JOSE_ENOMEM;
  atomic_init(&ks->refs, 1);
  int rc = 0;
  ERR_set_mark();
  for (size_t i = 0; i < cnt && !rc; i++) {
    rc = parse_key(json_array_get(keys, i), &ks->keys[ks->n]);
    if (rc == KEY_SKIP) ks->skipped++, rc = 0;
    else if (!rc) ks->n++;
  }
  ERR_pop_to_mark();
  if (!rc && ks->n == 0) rc = AUTH_JOSE_ENOKEYS;
  if (rc) {
    auth_jwks_free(ks);
    return rc;
  }
  *out = ks;
  return 0;
}

int auth_jwks_parse(const char *buf, size_t len, auth_jwks **out) {
  if (!out || (!buf && len)) return AUTH_JOSE_EINVAL;
  *out = NULL;
  if (len > AUTH_JOSE_JWKS_MAX) return AUTH_JOSE_ETOOBIG;
  json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
  if (!doc) return AUTH_JOSE_EJWKS;
  int rc = auth_jwks_parse_json(doc, out);
  json_decref(doc);
  return rc;
}

auth_jwks *auth_jwks_ref(auth_jwks *ks) {
  if (ks) atomic_fetch_add(&ks->refs, 1);
  return ks;
}

void auth_jwks_free(auth_jwks *ks) {
  if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1) return;
  for (size_t i = 0; i < ks->n; i++) {
    EVP_PKEY_free(ks->keys[i].pkey);
    free(ks->keys[i].kid);
  }
  free(ks);
}

size_t auth_jwks_count(const auth_jwks *ks) { return ks ? ks->n : 0; }
size_t auth_jwks_skipped(const auth_jwks *ks) { return ks ? ks->skipped : 0; }

int auth_jwks_key(const auth_jwks *ks, size_t i, auth_jwk_info *out) {
  if (!ks || !out || i >= ks->n) return AUTH_JOSE_EINVAL;
  const jwk *k = &ks->keys[i];
  *out = (auth_jwk_info){.kid = k->kid, .kty = k->type == JWK_RSA ? "RSA" : "EC", .alg = k->alg,
                         .use = k->use, .bits = k->bits};
  return 0;
}

/* ---- compact JWS */

int auth_es256_sig_to_der(const uint8_t raw[64], uint8_t *der, size_t cap, size_t *der_len) {
  if (!raw || !der || !der_len) return AUTH_JOSE_EINVAL;
  int rc = AUTH_JOSE_ENOMEM;
  ERR_set_mark();
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
  if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s)) {
    BN_free(r);
    BN_free(s);
    goto done;
  }
  /* sig owns r and s now */
  int n = i2d_ECDSA_SIG(sig, NULL);
  if (n <= 0) {
    rc = AUTH_JOSE_ECRYPTO;
    goto done;
  }
  if ((size_t)n > cap) {
    rc = AUTH_JOSE_ETOOBIG;
    goto done;
  }
  unsigned char *p = der;
  if (i2d_ECDSA_SIG(sig, &p) != n) {
    rc = AUTH_JOSE_ECRYPTO;
    goto done;
  }
  *der_len = (size_t)n;
  rc = 0;
done:
  ECDSA_SIG_free(sig);
  ERR_pop_to_mark();
  return rc;
}

/* The one key for a token of key type `type` and header kid (may be NULL). */
static int pick_key(const auth_jwks *ks, int type, const char *kid, const jwk **out) {
  size_t named = 0, fit = 0;
  for (size_t i = 0; i < ks->n; i++) {
    const jwk *k = &ks->keys[i];
    if (kid) {
      if (!k->kid || strcmp(k->kid, kid)) continue;
      named++;
    }
    if (k->type != type) continue;
    fit++;
    *out = k;
  }
  if (kid && !named) return AUTH_JOSE_ENOKEY;
  if (!fit) return kid ? AUTH_JOSE_EKEYTYPE : AUTH_JOSE_ENOKEY;
  return fit > 1 ? AUTH_JOSE_EKEYAMBIG : 0;
}

/* Decodes a segment into a new buffer (freed by the caller). */
static int decode_segment(const char *s, size_t n, uint8_t **buf, size_t *len) {
  *buf = malloc(AUTH_B64URL_DECODED_LEN(n) + 1);
  if (!*buf) return AUTH_JOSE_ENOMEM;
  return auth_b64url_decode(s, n, *buf, AUTH_B64URL_DECODED_LEN(n), len);
}

static int verify_signature(const jwk *k, const uint8_t *sig, size_t siglen, const char *tbs, size_t tbslen) {
  uint8_t der[AUTH_JOSE_ES256_DER_MAX];
  if (k->type == JWK_EC) {
    if (siglen != 64) return AUTH_JOSE_ESIGLEN;
    int rc = auth_es256_sig_to_der(sig, der, sizeof der, &siglen);
    if (rc) return rc;
    sig = der;
  } else if (siglen != (size_t)EVP_PKEY_get_size(k->pkey)) {
    return AUTH_JOSE_ESIGLEN;
  }
  int rc = AUTH_JOSE_ECRYPTO;
  EVP_PKEY_CTX *pctx = NULL; /* owned by md */
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md) return AUTH_JOSE_ENOMEM;
  if (EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, k->pkey, NULL) != 1) goto done;
  if (k->type == JWK_RSA && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) goto done;
  rc = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)tbs, tbslen) == 1 ? 0 : AUTH_JOSE_EBADSIG;
done:
  EVP_MD_CTX_free(md);
  return rc;
}

int auth_jws_verify(const auth_jwks *ks, const char *tok, size_t len, json_t **claims) {
  return auth_jws_verify_header(ks, tok, len, NULL, claims);
}

int auth_jws_verify_header(const auth_jwks *ks, const char *tok, size_t len, json_t **header, json_t **claims) {
  if (header) *header = NULL;
  if (!claims) return AUTH_JOSE_EINVAL;
  *claims = NULL;
  if (!ks || !tok) return AUTH_JOSE_EINVAL;
  if (len > AUTH_JOSE_TOKEN_MAX) return AUTH_JOSE_ETOOBIG;
  const char *end = tok + len, *d1 = memchr(tok, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
  if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) || d1 == tok || d2 == d1 + 1)
    return AUTH_JOSE_EFORMAT;
  const char *pay = d1 + 1, *sig = d2 + 1;
  size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - pay), sl = (size_t)(end - sig);

  uint8_t *hbuf = NULL, *pbuf = NULL, sbuf[SIG_MAX_BYTES];
  size_t hn, pn, sn;
  json_t *hdr = NULL;
  const jwk *key = NULL;
  int rc = decode_segment(tok, hl, &hbuf, &hn);
  if (rc) goto done;
  rc = AUTH_JOSE_EHEADER;
  if (!(hdr = json_loadb((const char *)hbuf, hn, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(hdr)) goto done;
  const char *alg = json_string_value(json_object_get(hdr, "alg")), *kid;
  int type = !alg ? 0 : !strcmp(alg, "RS256") ? JWK_RSA : !strcmp(alg, "ES256") ? JWK_EC : 0;
  rc = AUTH_JOSE_EALG;
  if (!type) goto done;
  rc = AUTH_JOSE_ECRIT;
  if (json_object_get(hdr, "crit")) goto done;
  rc = AUTH_JOSE_EHEADER;
  if (opt_string(hdr, "kid", &kid) < 0) goto done;
  if ((rc = pick_key(ks, type, kid, &key))) goto done;
  rc = AUTH_JOSE_ESIGLEN;
  if (sl == 0 || AUTH_B64URL_DECODED_LEN(sl) > sizeof sbuf) goto done;
  if ((rc = auth_b64url_decode(sig, sl, sbuf, sizeof sbuf, &sn))) goto done;
  if ((rc = decode_segment(pay, pl, &pbuf, &pn))) goto done;
  ERR_set_mark();
  rc = verify_signature(key, sbuf, sn, tok, hl + 1 + pl);
  ERR_pop_to_mark();
  if (rc) goto done;
  json_t *c = json_loadb((const char *)pbuf, pn, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(c)) {
    json_decref(c);
    rc = AUTH_JOSE_EPAYLOAD;
    goto done;
  }
  *claims = c;
  if (header) {
    *header = hdr;
    hdr = NULL;
  }
done:
  json_decref(hdr);
  free(hbuf);
  free(pbuf);
  return rc;
}

/* ---- ID-token claims */

/* A NumericDate (RFC 7519 §2): a JSON number in 0..NUMERIC_DATE_MAX. A
 * fraction is rounded towards refusal: up for nbf/iat/auth_time, down for
 * exp. -1 when missing or malformed. */
int auth_jose_numeric_date(const json_t *v, bool round_up, int64_t *out) {
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > NUMERIC_DATE_MAX) return -1;
    *out = (int64_t)i;
    return 0;
  }
  if (!json_is_real(v)) return -1;
  double d = json_real_value(v);
  if (!isfinite(d) || d < 0 || d > (double)NUMERIC_DATE_MAX) return -1;
  *out = (int64_t)(round_up ? ceil(d) : floor(d));
  return 0;
}

static int check_aud(const json_t *claims, const char *client_id) {
  const json_t *aud = json_object_get(claims, "aud"), *azp = json_object_get(claims, "azp"), *a;
  size_t i, n = 1;
  bool found = false;
  if (json_is_string(aud)) {
    found = !strcmp(json_string_value(aud), client_id);
  } else if (json_is_array(aud) && (n = json_array_size(aud)) > 0) {
    json_array_foreach(aud, i, a) {
      if (!json_is_string(a)) return AUTH_JOSE_EAUD;
      found |= !strcmp(json_string_value(a), client_id);
    }
  } else {
    return AUTH_JOSE_EAUD;
  }
  if (!found) return AUTH_JOSE_EAUD;
  if (n > 1 && !azp) return AUTH_JOSE_EAZP_MISSING;
  if (azp && (!json_is_string(azp) || strcmp(json_string_value(azp), client_id))) return AUTH_JOSE_EAZP;
  return 0;
}

int auth_idtoken_check(const json_t *claims, const auth_idtoken_expect *w) {
  if (!json_is_object(claims) || !w || !w->issuer || !*w->issuer || !w->client_id || !*w->client_id ||
      w->now < 0 || w->now > NUMERIC_DATE_MAX || w->skew < 0 || w->skew > AUTH_JOSE_SKEW_MAX ||
      (w->check_max_age && (w->max_age < 0 || w->max_age > NUMERIC_DATE_MAX)))
    return AUTH_JOSE_EINVAL;
  const char *iss = json_string_value(json_object_get(claims, "iss"));
  if (!iss || strcmp(iss, w->issuer)) return AUTH_JOSE_EISS;
  const char *sub = json_string_value(json_object_get(claims, "sub"));
  if (!sub || !*sub) return AUTH_JOSE_ESUB;
  int rc = check_aud(claims, w->client_id);
  if (rc) return rc;
  /* now, skew and every date are within 0..NUMERIC_DATE_MAX (+3600): no overflow */
  int64_t exp, nbf, iat, at;
  if (auth_jose_numeric_date(json_object_get(claims, "exp"), false, &exp)) return AUTH_JOSE_EEXP_MISSING;
  if (exp <= w->now - w->skew) return AUTH_JOSE_EEXPIRED;
  const json_t *nbfv = json_object_get(claims, "nbf");
  if (nbfv && (auth_jose_numeric_date(nbfv, true, &nbf) || nbf > w->now + w->skew)) return AUTH_JOSE_ENBF;
  if (auth_jose_numeric_date(json_object_get(claims, "iat"), true, &iat)) return AUTH_JOSE_EIAT_MISSING;
  if (iat > w->now + w->skew) return AUTH_JOSE_EIAT;
  if (w->check_max_age &&
      (auth_jose_numeric_date(json_object_get(claims, "auth_time"), true, &at) || at > w->now + w->skew ||
       w->now - at > w->max_age + w->skew))
    return AUTH_JOSE_EAUTH_TIME;
  if (w->nonce) {
    const json_t *nv = json_object_get(claims, "nonce");
    size_t want = strlen(w->nonce);
    if (!json_is_string(nv) || json_string_length(nv) != want ||
        CRYPTO_memcmp(json_string_value(nv), w->nonce, want) != 0)
      return AUTH_JOSE_ENONCE;
  }
  return 0;
}
