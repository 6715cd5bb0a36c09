/* tests/unit/test_token.c — token generation, shape checks, hashing, ids
 * and constant-time comparison (store/token.h). No store needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/token.h"
#include "tests/unit/unit.h"

static int is_b64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

TEST(token_format) {
  char tok[ST_TOKEN_BUFSZ];
  CHECK_INT(st_token_new("mgw_", tok, sizeof tok), 0);
  CHECK_INT(strlen(tok), 4 + ST_TOKEN_BODY_LEN);
  CHECK(strncmp(tok, "mgw_", 4) == 0);
  for (size_t i = 4; i < strlen(tok); i++) CHECK(is_b64url(tok[i]));
  CHECK_INT(st_token_check(tok, strlen(tok), "mgw_"), 0);
  CHECK_INT(st_token_check(tok, strlen(tok), "mgs_"), ST_EINVAL);      /* other audience */
  CHECK_INT(st_token_check(tok, strlen(tok) - 1, "mgw_"), ST_EINVAL);  /* truncated */
  char bad[ST_TOKEN_BUFSZ];
  strcpy(bad, tok);
  bad[10] = '+'; /* standard base64, not url-safe */
  CHECK_INT(st_token_check(bad, strlen(bad), "mgw_"), ST_EINVAL);
  strcpy(bad, tok);
  bad[strlen(bad) - 1] = 'B'; /* non-canonical last char (low bits set) */
  CHECK_INT(st_token_check(bad, strlen(bad), "mgw_"), ST_EINVAL);
  /* Buffer exactly big enough, and one byte short. */
  char exact[4 + ST_TOKEN_BODY_LEN + 1];
  CHECK_INT(st_token_new("mga_", exact, sizeof exact), 0);
  CHECK_INT(st_token_new("mga_", exact, sizeof exact - 1), ST_EINVAL);
  /* Prefix rules. */
  CHECK_INT(st_token_new("", tok, sizeof tok), ST_EINVAL);
  CHECK_INT(st_token_new("MGW_", tok, sizeof tok), ST_EINVAL);
  CHECK_INT(st_token_new("mg w", tok, sizeof tok), ST_EINVAL);
  CHECK_INT(st_token_new("abcdefghijklmnopq", tok, sizeof tok), ST_EINVAL); /* 17 chars */
  CHECK_INT(st_token_new("abcdefghijklmnop", tok, sizeof tok), 0);          /* 16 chars */
  CHECK_INT(st_token_new(NULL, tok, sizeof tok), ST_EINVAL);
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

TEST(token_uniqueness) {
  enum { N = 2000 };
  static char toks[N][ST_TOKEN_BUFSZ];
  for (int i = 0; i < N; i++) CHECK_INT(st_token_new("mgs_", toks[i], ST_TOKEN_BUFSZ), 0);
  qsort(toks, N, ST_TOKEN_BUFSZ, cmp_str);
  for (int i = 1; i < N; i++) CHECK(strcmp(toks[i - 1], toks[i]) != 0);
  /* Every body char position varies (no stuck bits in the encoder). */
  for (int pos = 4; pos < 4 + ST_TOKEN_BODY_LEN; pos++) {
    int varies = 0;
    for (int i = 1; i < N && !varies; i++) varies = toks[i][pos] != toks[0][pos];
    CHECK(varies);
  }
}

TEST(token_hash) {
  uint8_t h[ST_TOKEN_HASH_LEN], h2[ST_TOKEN_HASH_LEN];
  static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                  0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                  0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  CHECK_INT(st_token_hash("abc", 3, h), 0);
  CHECK(memcmp(h, abc, 32) == 0); /* FIPS 180-2 test vector */
  CHECK_INT(st_token_hash("abd", 3, h2), 0);
  CHECK(memcmp(h, h2, 32) != 0);
  CHECK_INT(st_token_hash("", 0, h), ST_EINVAL);
  static char huge[4097];
  memset(huge, 'a', sizeof huge);
  CHECK_INT(st_token_hash(huge, sizeof huge, h), ST_EINVAL);
  CHECK_INT(st_token_hash(huge, 4096, h), 0);
}

TEST(token_ids) {
  char a[ST_TOKEN_ID_BUFSZ], b[ST_TOKEN_ID_BUFSZ];
  CHECK_INT(st_token_id_new(a), 0);
  CHECK_INT(st_token_id_new(b), 0);
  CHECK_INT(strlen(a), ST_TOKEN_ID_LEN);
  for (int i = 0; i < ST_TOKEN_ID_LEN; i++)
    CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
  CHECK(strcmp(a, b) != 0);
}

TEST(ct_equal) {
  uint8_t x[32], y[32];
  memset(x, 7, sizeof x);
  memset(y, 7, sizeof y);
  CHECK_INT(st_ct_equal(x, y, 32), 1);
  y[31] = 8;
  CHECK_INT(st_ct_equal(x, y, 32), 0);
  y[31] = 7;
  y[0] = 0;
  CHECK_INT(st_ct_equal(x, y, 32), 0);
  CHECK_INT(st_ct_equal(x, y, 0), 1);
}

int main(void) {
  RUN(token_format);
  RUN(token_uniqueness);
  RUN(token_hash);
  RUN(token_ids);
  RUN(ct_equal);
  return UNIT_DONE();
}
