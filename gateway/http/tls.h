/* gateway/http/tls.h — TLS for the HTTPS listener: OpenSSL over libuv through
 * memory BIOs. The connection (http.c) feeds ciphertext in, gets plaintext
 * out, hands plaintext to encrypt and drains the ciphertext to write.
 *
 * gw_tls_ctx wraps an SSL_CTX. It is reference counted by OpenSSL: every
 * connection's SSL keeps its context alive, so a SIGHUP reload swaps the
 * server's current context and old connections carry on with the old one. */
#ifndef MCPGATE_GATEWAY_TLS_H
#define MCPGATE_GATEWAY_TLS_H
#include <stddef.h>

typedef struct gw_tls_ctx gw_tls_ctx;
typedef struct gw_tls_conn gw_tls_conn;

/* Loads cert chain + key (PEM). On failure returns negative and a message
 * naming the file in err (never key material). */
int gw_tls_ctx_load(const char *cert_file, const char *key_file, gw_tls_ctx **out, char *err,
                    size_t errlen);
void gw_tls_ctx_free(gw_tls_ctx *ctx);

gw_tls_conn *gw_tls_conn_new(gw_tls_ctx *ctx);
void gw_tls_conn_free(gw_tls_conn *c);
/* Feeds received ciphertext; decrypted bytes are passed to on_plain (which
 * may return negative to stop). Returns 0, or negative on a fatal TLS error
 * (the connection must be closed after sending what gw_tls_take yields). */
int gw_tls_feed(gw_tls_conn *c, const char *data, size_t len,
                int (*on_plain)(void *arg, const char *p, size_t n), void *arg);
/* Encrypts plaintext into the outgoing queue. */
int gw_tls_encrypt(gw_tls_conn *c, const void *data, size_t len);
/* Queues a close_notify alert. */
void gw_tls_close_notify(gw_tls_conn *c);
/* Takes the pending ciphertext (malloc'd, caller frees); 0 when none. */
size_t gw_tls_take(gw_tls_conn *c, char **out);

#endif
