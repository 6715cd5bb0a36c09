/* gateway/http/tls.c — see tls.h. Memory BIOs never block: SSL_read/SSL_write
 * only ever want more input (WANT_READ), which the next socket read brings. */
#include "gateway/http/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_tls_ctx {
  SSL_CTX *ssl;
};

struct gw_tls_conn {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
};

int gw_tls_ctx_load(const char *cert_file, const char *key_file, gw_tls_ctx **out, char *err,
                    size_t errlen) {
  SSL_CTX *s = SSL_CTX_new(TLS_server_method());
  if (!s) {
    snprintf(err, errlen, "cannot create TLS context");
    return -1;
  }
  SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
  SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(s, cert_file) != 1) {
    snprintf(err, errlen, "cannot load TLS certificate chain from %s", cert_file);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(s, key_file, SSL_FILETYPE_PEM) != 1) {
    snprintf(err, errlen, "cannot load TLS private key from %s", key_file);
    goto fail;
  }
  if (SSL_CTX_check_private_key(s) != 1) {
    snprintf(err, errlen, "TLS private key %s does not match certificate %s", key_file, cert_file);
    goto fail;
  }
  gw_tls_ctx *c = calloc(1, sizeof *c);
  if (!c) goto fail;
  c->ssl = s;
  *out = c;
  ERR_clear_error();
  return 0;
fail:
  ERR_clear_error();
  SSL_CTX_free(s);
  return -1;
}

void gw_tls_ctx_free(gw_tls_ctx *ctx) {
  if (!ctx) return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

gw_tls_conn *gw_tls_conn_new(gw_tls_ctx *ctx) {
  gw_tls_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ssl = SSL_new(ctx->ssl);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->rbio || !c->wbio) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    SSL_free(c->ssl);
    free(c);
    return NULL;
  }
  BIO_set_mem_eof_return(c->rbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_accept_state(c->ssl);
  return c;
}

void gw_tls_conn_free(gw_tls_conn *c) {
  if (!c) return;
  SSL_free(c->ssl);
  free(c);
}

int gw_tls_feed(gw_tls_conn *c, const char *data, size_t len,
                int (*on_plain)(void *arg, const char *p, size_t n), void *arg) {
  if (len && BIO_write(c->rbio, data, (int)len) != (int)len) return -1;
  char buf[16384];
  for (;;) {
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      int rc = on_plain(arg, buf, (size_t)n);
      if (rc < 0) return rc;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return 1; /* peer sent close_notify */
    return -1;
  }
}

int gw_tls_encrypt(gw_tls_conn *c, const void *data, size_t len) {
  const char *p = data;
  while (len) {
    int n = SSL_write(c->ssl, p, len > 1 << 30 ? 1 << 30 : (int)len);
    if (n <= 0) {
      ERR_clear_error();
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void gw_tls_close_notify(gw_tls_conn *c) {
  SSL_shutdown(c->ssl);
  ERR_clear_error();
}

size_t gw_tls_take(gw_tls_conn *c, char **out) {
  size_t n = (size_t)BIO_ctrl_pending(c->wbio);
  *out = NULL;
  if (!n) return 0;
  char *p = malloc(n);
  if (!p) return 0;
  int r = BIO_read(c->wbio, p, (int)n);
  if (r <= 0) {
    free(p);
    return 0;
  }
  *out = p;
  return (size_t)r;
}
