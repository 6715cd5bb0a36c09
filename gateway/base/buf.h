/* gateway/base/buf.h — a growable byte buffer with a hard cap (curl's dynbuf:
 * every buffer has a `toobig` limit). Used for request heads and bodies,
 * response assembly and metrics text. Owns its memory; gw_buf_free
 * releases it. Always NUL-terminated after a successful append. */
#ifndef MCPGATE_GATEWAY_BUF_H
#define MCPGATE_GATEWAY_BUF_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_buf_meter gw_buf_meter;

typedef struct gw_buf {
  char *data;
  size_t len, cap, max;
  gw_buf_meter *meter; /* what its memory is charged to, or NULL (gw_buf_meter_attach) */
} gw_buf;

#define GW_E2BIG (-7) /* same value as -E2BIG */
#define GW_EBUDGET (-105) /* same value as -ENOBUFS: a meter of the buffer is at its limit */

/* A meter of buffered bytes shared by many buffers, on any thread (the
 * counter is atomic): a buffer charges it the capacity it holds past its
 * first GW_BUF_METER_FREE bytes (ordinary messages cost nothing; large
 * ones count), from its growth until it is freed or taken. Meters chain (a
 * tenant's, then the process's): a growth that would take any meter of
 * the chain past its limit fails with GW_EBUDGET, nothing charged or
 * appended. A meter's limit is late_max instead of max once its parent is
 * at least half used (both 0: no limit). The meter must outlive every
 * buffer charged to it. */
struct gw_buf_meter {
  _Atomic long long used;
  long long max, late_max;
  gw_buf_meter *parent;
};
#define GW_BUF_METER_FREE ((size_t)64 * 1024)
/* Charges b (empty: nothing allocated yet) to m from now on (NULL: none). */
void gw_buf_meter_attach(gw_buf *b, gw_buf_meter *m);
/* Bytes charged to m now. */
long long gw_buf_meter_used(const gw_buf_meter *m);
/* n bytes held outside a gw_buf (a connection's write queue) charged to m
 * and its chain: false (nothing charged) past a limit. Give them back with
 * gw_buf_meter_uncharge. */
bool gw_buf_meter_charge(gw_buf_meter *m, long long n);
void gw_buf_meter_uncharge(gw_buf_meter *m, long long n);

void gw_buf_init(gw_buf *b, size_t max);
/* 0, GW_E2BIG past the cap, or -ENOMEM. Nothing is appended on failure. */
int gw_buf_append(gw_buf *b, const void *data, size_t n);
int gw_buf_appends(gw_buf *b, const char *s);
int gw_buf_printf(gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The hot paths' formatting without stdio: a decimal integer; several
 * strings (the list ends at the first NULL). */
int gw_buf_append_int(gw_buf *b, long long v);
/* Room for n bytes (and the NUL) at once: appends up to that size then
 * never move the data. 0, GW_E2BIG past the cap, or -ENOMEM. */
int gw_buf_reserve(gw_buf *b, size_t n);
int gw_buf_appendv(gw_buf *b, ...);
/* v as 16 lower-case hex digits and a NUL. */
void gw_hex16(unsigned long long v, char out[17]);
/* String copies for fixed-size fields without stdio (snprintf "%s" costs
 * a format parse per copy on every request): src, or the strings of the
 * NULL-terminated list, truncated to size - 1 bytes (size > 0) and
 * NUL-terminated; returns the length written. */
size_t gw_strlcpy(char *dst, const char *src, size_t size);
size_t gw_strjoin(char *dst, size_t size, ...);
/* v in decimal into out (at least 21 bytes; gw_itoa 22 with the sign),
 * NUL-terminated; its length. */
size_t gw_utoa(unsigned long long v, char *out);
size_t gw_itoa(long long v, char *out);
/* The first occurrence of needle (k bytes) in h (n bytes), or NULL (h
 * when k is 0): memmem for the short needles the proxy looks for in every
 * reply ("tools", \u, "isError"). glibc's memmem spends ~2 instructions
 * a byte on them; this compares 16 candidate positions at a time on the
 * needle's first and last bytes (SSE2), then only those positions whole. */
const char *gw_memmem(const void *h, size_t n, const void *needle, size_t k);
void gw_buf_reset(gw_buf *b);
void gw_buf_free(gw_buf *b);
/* Takes the memory out of the buffer (caller frees); the buffer is empty. */
char *gw_buf_take(gw_buf *b, size_t *len);

#endif
