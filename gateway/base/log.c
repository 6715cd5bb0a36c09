/* gateway/base/log.c — see log.h. Lines are built in a stack buffer with jansson
 * doing the string escaping, then written with one fputs so concurrent
 * threads (loop, writer) never interleave within a line. */
#include "gateway/base/log.h"
#include "gateway/base/clock.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

static _Atomic int log_level = GW_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log_set_level(gw_log_level level) { atomic_store(&log_level, (int)level); }
gw_log_level gw_log_get_level(void) {
  return (gw_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int gw_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

/* The line without its newline (json_dumps's: free it), or NULL. */
static char *log_line(gw_log_level level, const char *module, const gw_log_ctx *ctx, json_t *fields,
                      const char *msg) {
  char tsbuf[32];
  gw_rfc3339_ms(gw_wall_ms(), tsbuf);
  json_t *o = json_object();
  json_object_set_new(o, "ts", json_string(tsbuf));
  json_object_set_new(o, "level", json_string(level_names[level]));
  json_object_set_new(o, "module", json_string(module ? module : "-"));
  if (ctx && ctx->tenant) json_object_set_new(o, "tenant", json_string(ctx->tenant));
  if (ctx && ctx->request_id) json_object_set_new(o, "request_id", json_string(ctx->request_id));
  /* Invalid UTF-8 in a message must not lose the line. */
  json_t *m = json_string(msg);
  if (!m) m = json_string("(message not valid UTF-8)");
  json_object_set_new(o, "msg", m);
  if (fields) json_object_update(o, fields);
  /* reals with at most 10 significant digits: a duration in ms rounded to
   * the µs reads 0.057, not jansson's default 17 digits 0.057000000000000002 */
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  json_decref(o);
  return line;
}

static void log_write(gw_log_level level, const char *module, const gw_log_ctx *ctx,
                      json_t *fields, const char *msg) {
  char *line = log_line(level, module, ctx, fields, msg);
  if (!line) return;
  size_t n = strlen(line);
  char stackbuf[4096];
  char *out = n + 2 <= sizeof stackbuf ? stackbuf : malloc(n + 2);
  if (out) {
    memcpy(out, line, n);
    out[n] = '\n';
    out[n + 1] = 0;
    fputs(out, stderr);
    if (out != stackbuf) free(out);
  }
  free(line);
}

void gw_log_emit(gw_log_level level, const char *module, const gw_log_ctx *ctx,
                 const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log_write(level, module, ctx, NULL, msg);
}

void gw_log_fields(gw_log_level level, const char *module, const gw_log_ctx *ctx,
                   json_t *fields, const char *msg) {
  if (level < gw_log_get_level()) return;
  log_write(level, module, ctx, fields, msg);
}

size_t gw_log_prepare(gw_log_level level, const char *module, const char *msg, char *out, size_t cap) {
  char *line = log_line(level, module, NULL, NULL, msg);
  size_t n = line ? strlen(line) : 0;
  if (!line || n + 1 > cap) n = 0;
  else {
    memcpy(out, line, n);
    out[n++] = '\n';
  }
  free(line);
  return n;
}

void gw_store_log(void *ctx, int level, const char *module, const char *msg) {
  if (level < GW_LOG_DEBUG) level = GW_LOG_DEBUG;
  if (level > GW_LOG_ERROR) level = GW_LOG_ERROR;
  if (level >= (int)gw_log_get_level())
    log_write((gw_log_level)level, module, (const gw_log_ctx *)ctx, NULL, msg);
}
