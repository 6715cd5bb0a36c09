/* web/web.h — the pages' files (the employee page, the reviewers' page,
 * the message-page template, CSS, JS, icon), embedded into the binary at
 * build time, and the one renderer of server-side templates.
 *
 * Owns the embedded table: web/embed.c (a host tool run by the Makefile)
 * writes every html/css/js/svg/png file under web/ into
 * $(BUILD)/web/assets.c, so nothing is deployed beside the binary. The table
 * is static and read-only: every pointer it hands out lives as long as the
 * process and is never freed. Includes nothing of ours (gateway/api serves
 * it; tests/tools/check-layers.sh).
 *
 * Serving (gateway/api's business, written here because the paths are ours):
 * the employee page `index.html` is answered at /t/{tenant}/ and its files
 * under /t/{tenant}/assets/…; the reviewers' page `approvals.html` at
 * /t/{tenant}/approvals (to an approver's session only); templates
 * (message.html) are rendered with web_render, never served raw. */
#ifndef MCPGATE_WEB_H
#define MCPGATE_WEB_H
#include <stddef.h>

/* One embedded file. path: relative to web/ ("index.html", "assets/app.js").
 * type: the Content-Type to send ("text/html; charset=utf-8", …). etag: a
 * strong ETag, quotes included ("\"0123456789abcdef\"", FNV-1a 64 of the
 * bytes), ready for the ETag header and an If-None-Match comparison. data:
 * len bytes followed by a NUL that len does not count (templates are
 * strings). All static, valid for the life of the process. */
typedef struct web_asset {
  const char *path, *type, *etag;
  const unsigned char *data;
  size_t len;
} web_asset;

/* web_render's output cap, bytes (without the NUL): a message page is a few
 * KiB; a value that would push the page past this is refused, not cut. */
#define WEB_RENDER_MAX (64 * 1024)

/* The file embedded at exactly `path` (no normalisation: "./x", "x/",
 * "../x" and "" are simply not in the table), or NULL. Borrowed, static. */
const web_asset *web_asset_get(const char *path);
/* The i-th embedded file in path order, NULL past the end (listing them:
 * tests, a future preload). Borrowed, static. */
const web_asset *web_asset_at(size_t i);

/* Renders the embedded template tmpl_path: every `{{name}}` (name is
 * [a-z0-9_]{1,32}) becomes the HTML-escaped value of `name` in kv (& < > "
 * ' escaped, so a value is safe in text and in a quoted attribute; it is
 * not a URL check: an href value must be a URL the caller built), an
 * unknown name becomes empty, and any other `{{` is copied as is. Values are
 * not expanded again. kv: name, value, name, value, …, NULL (a NULL value is
 * empty; kv itself may be NULL). On 0, *out is a malloc'd NUL-terminated
 * string of *outlen bytes that the caller frees; on failure *out is NULL:
 * -ENOENT (no such template), -E2BIG (output over WEB_RENDER_MAX), -ENOMEM,
 * -EINVAL (NULL out/outlen/tmpl_path). */
int web_render(const char *tmpl_path, const char *const *kv, char **out, size_t *outlen);

/* A static sentence for web_render's codes. */
const char *web_strerror(int code);

#endif
