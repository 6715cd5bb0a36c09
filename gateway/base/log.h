/* gateway/base/log.h — structured logging: one JSON object per line on stderr,
 * and the callback (gw_store_log) that lower modules log through.
 *
 * GW_LOG checks the level before any formatting happens (Redis serverLog).
 * Every line carries ts, level, module, msg and, when a context is given,
 * tenant and request id. Callers must never pass a token or secret: log
 * identifiers (token ids, key ids), not the values.
 *
 * The level is process-wide, set once at start from config (log_level) and
 * read with a relaxed atomic load; emitting is thread-safe (one fputs of a
 * fully formatted line per call). */
#ifndef MCPGATE_GATEWAY_LOG_H
#define MCPGATE_GATEWAY_LOG_H
#include <stdarg.h>
#include <stddef.h>

struct json_t;

typedef enum gw_log_level {
  GW_LOG_DEBUG = 0,
  GW_LOG_INFO = 1,
  GW_LOG_WARN = 2,
  GW_LOG_ERROR = 3,
} gw_log_level;

/* Optional context attached to a line; any field may be NULL. */
typedef struct gw_log_ctx {
  const char *tenant;
  const char *request_id;
} gw_log_ctx;

void gw_log_set_level(gw_log_level level);
gw_log_level gw_log_get_level(void);
/* "debug"|"info"|"warn"|"error" → level; returns -1 on anything else. */
int gw_log_level_parse(const char *s);

/* Formats and writes one line. Use GW_LOG, which checks the level first. */
void gw_log_emit(gw_log_level level, const char *module, const gw_log_ctx *ctx,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Like gw_log_emit with extra fields: `fields` (a JSON object, borrowed) is
 * merged into the line. Used by the access log. */
void gw_log_fields(gw_log_level level, const char *module, const gw_log_ctx *ctx,
                   struct json_t *fields, const char *msg);

/* Formats the line GW_LOG would write now (no context, no level check),
 * newline included, into out without a terminating NUL, for a caller that
 * must write it later with write(2) alone: a signal handler. Returns its
 * length, 0 when it does not fit in cap (or out of memory). The line's ts
 * is this call's time. */
size_t gw_log_prepare(gw_log_level level, const char *module, const char *msg, char *out, size_t cap);

/* Log callback for lower modules that must not include this header (the
 * store: st_options.log). ctx is an optional `const gw_log_ctx *` (NULL:
 * none); level uses the numbers of gw_log_level (out-of-range values are
 * clamped). Emits the same JSON line GW_LOG would, with `module` as given,
 * after the same level check. Thread-safe. */
void gw_store_log(void *ctx, int level, const char *module, const char *msg);

#define GW_LOG(level, module, ctx, ...)                                         \
  do {                                                                         \
    if ((level) >= gw_log_get_level()) gw_log_emit((level), (module), (ctx), __VA_ARGS__); \
  } while (0)

#endif
