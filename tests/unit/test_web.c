/* tests/unit/test_web.c — web/web.c: the embedded table (every file there
 * with its type and ETag, exact-match lookups only) and web_render
 * (escaping, unknown placeholders, no re-expansion, the output cap). The
 * pages themselves are checked in a browser by
 * tests/integration/web-static.test.mjs. */
#include "unit.h"

#include <errno.h>

#include "web/web.h"

TEST(assets_present) {
  static const char *const want[][2] = {
      {"index.html", "text/html; charset=utf-8"},
      {"message.html", "text/html; charset=utf-8"},
      {"approvals.html", "text/html; charset=utf-8"},
      {"assets/approvals.js", "text/javascript; charset=utf-8"},
      {"assets/app.css", "text/css; charset=utf-8"},
      {"assets/app.js", "text/javascript; charset=utf-8"},
      {"assets/icon.svg", "image/svg+xml"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const web_asset *a = web_asset_get(want[i][0]);
    if (!a) fprintf(stderr, "  missing: %s\n", want[i][0]);
    CHECK(a != NULL);
    CHECK_STR(a->path, want[i][0]);
    CHECK_STR(a->type, want[i][1]);
    CHECK(a->len > 0);
    CHECK_INT(a->data[a->len], 0); /* the NUL after the bytes */
  }
  CHECK(strstr((const char *)web_asset_get("index.html")->data, "assets/app.js") != NULL);
}

TEST(assets_all_well_formed) {
  size_t n = 0;
  for (const web_asset *a; (a = web_asset_at(n)); n++) {
    CHECK(a->path && a->type && a->etag && a->data);
    /* strong ETag: quoted, not W/, 16 hex digits */
    CHECK_INT(strlen(a->etag), 18);
    CHECK(a->etag[0] == '"' && a->etag[17] == '"');
    CHECK(web_asset_get(a->path) == a);
    CHECK_INT(a->data[a->len], 0);
    if (n) CHECK(strcmp(web_asset_at(n - 1)->path, a->path) < 0); /* sorted, unique */
    const char *dot = strrchr(a->path, '.');
    CHECK(dot != NULL);
    if (!strcmp(dot, ".js")) CHECK_STR(a->type, "text/javascript; charset=utf-8");
    if (!strcmp(dot, ".css")) CHECK_STR(a->type, "text/css; charset=utf-8");
    if (!strcmp(dot, ".html")) CHECK_STR(a->type, "text/html; charset=utf-8");
  }
  CHECK(n >= 5);
  CHECK(web_asset_at(n) == NULL);
  /* ETags differ between different files */
  CHECK(strcmp(web_asset_get("index.html")->etag, web_asset_get("message.html")->etag) != 0);
}

TEST(unknown_paths) {
  static const char *const bad[] = {"",
                                    "../Makefile",
                                    "index.html/",
                                    "/index.html",
                                    "./index.html",
                                    "assets//app.js",
                                    "assets/../index.html",
                                    "INDEX.HTML",
                                    "index.htm",
                                    "index.html\n",
                                    "assets",
                                    "assets/",
                                    "web/index.html",
                                    "README.md",
                                    "web.c",
                                    "embed.c",
                                    "zzz",
                                    NULL};
  for (const char *const *p = bad; *p; p++) {
    if (web_asset_get(*p)) fprintf(stderr, "  found: \"%s\"\n", *p);
    CHECK(web_asset_get(*p) == NULL);
  }
  CHECK(web_asset_get(NULL) == NULL);
}

TEST(render_message) {
  const char *kv[] = {"title", "Not assigned", "message", "mcpgate isn't assigned to you in Okta — ask IT",
                      "action_href", "/t/acme/", "action_text", "Back", "tenant", "acme", NULL};
  char *out;
  size_t len;
  CHECK_INT(web_render("message.html", kv, &out, &len), 0);
  CHECK_INT(strlen(out), len);
  CHECK(strstr(out, "<h1>Not assigned</h1>") != NULL);
  CHECK(strstr(out, "mcpgate isn&#39;t assigned to you in Okta — ask IT") != NULL);
  CHECK(strstr(out, "href=\"/t/acme/assets/app.css\"") != NULL);
  CHECK(strstr(out, "href=\"/t/acme/\">Back</a>") != NULL);
  CHECK(strstr(out, "{{") == NULL);
  free(out);
}

TEST(render_escapes) {
  const char *kv[] = {"title", "<script>alert(\"x\" & 'y')</script>", NULL};
  char *out;
  size_t len;
  CHECK_INT(web_render("message.html", kv, &out, &len), 0);
  CHECK(strstr(out, "<h1>&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;</h1>") != NULL);
  CHECK(strstr(out, "<script>") == NULL);
  free(out);
}

TEST(render_unknown_and_missing) {
  char *out;
  size_t len;
  /* no values at all: every placeholder empty */
  CHECK_INT(web_render("message.html", NULL, &out, &len), 0);
  CHECK(strstr(out, "<h1></h1>") != NULL);
  CHECK(strstr(out, "href=\"/t//assets/app.css\"") != NULL);
  CHECK(strstr(out, "{{") == NULL);
  free(out);
  /* a NULL value is empty; names that are not in the template are ignored */
  const char *kv[] = {"title", NULL, "nope", "x", NULL};
  CHECK_INT(web_render("message.html", kv, &out, &len), 0);
  CHECK(strstr(out, "<h1></h1>") != NULL);
  free(out);
}

TEST(render_no_reexpansion) {
  const char *kv[] = {"title", "{{message}}", "message", "{{title}} {{", NULL};
  char *out;
  size_t len;
  CHECK_INT(web_render("message.html", kv, &out, &len), 0);
  CHECK(strstr(out, "<h1>{{message}}</h1>") != NULL);
  CHECK(strstr(out, "<p>{{title}} {{</p>") != NULL);
  free(out);
}

TEST(render_errors) {
  char *out = (char *)"x";
  size_t len;
  CHECK_INT(web_render("nope.html", NULL, &out, &len), -ENOENT);
  CHECK(out == NULL);
  CHECK_INT(web_render("../message.html", NULL, &out, &len), -ENOENT);
  CHECK_INT(web_render(NULL, NULL, &out, &len), -EINVAL);
  CHECK_INT(web_render("message.html", NULL, NULL, &len), -EINVAL);
  CHECK_INT(web_render("message.html", NULL, &out, NULL), -EINVAL);
  CHECK(strcmp(web_strerror(-E2BIG), web_strerror(-ENOENT)) != 0);
}

TEST(render_cap) {
  /* the template appears once per placeholder use: title is used twice
   * (<title> and <h1>), so a value of cap/2 passes it after escaping */
  size_t n = WEB_RENDER_MAX / 2;
  char *big = malloc(WEB_RENDER_MAX + 2);
  CHECK(big != NULL);
  memset(big, 'a', n);
  big[n] = 0;
  const char *kv[] = {"title", big, NULL};
  char *out = (char *)"x";
  size_t len;
  int rc = web_render("message.html", kv, &out, &len);
  if (rc == 0) free(out);
  CHECK_INT(rc, -E2BIG);
  CHECK(out == NULL);
  /* escaping counts: a value a fifth of the cap made of '&' is five times
   * longer once escaped */
  memset(big, '&', WEB_RENDER_MAX / 5);
  big[WEB_RENDER_MAX / 5] = 0;
  const char *kv2[] = {"message", big, NULL};
  rc = web_render("message.html", kv2, &out, &len);
  if (rc == 0) free(out);
  CHECK_INT(rc, -E2BIG);
  /* exactly at the cap renders; one byte more does not ({{message}} is
   * used once) */
  size_t base;
  CHECK_INT(web_render("message.html", NULL, &out, &base), 0);
  free(out);
  memset(big, 'c', WEB_RENDER_MAX - base);
  big[WEB_RENDER_MAX - base] = 0;
  rc = web_render("message.html", kv2, &out, &len);
  if (rc == 0) free(out);
  CHECK_INT(rc, 0);
  CHECK_INT(len, WEB_RENDER_MAX);
  big[WEB_RENDER_MAX - base] = 'c';
  big[WEB_RENDER_MAX - base + 1] = 0;
  rc = web_render("message.html", kv2, &out, &len);
  if (rc == 0) free(out);
  CHECK_INT(rc, -E2BIG);
  /* a value well under the cap renders whole */
  memset(big, 'b', 1000);
  big[1000] = 0;
  rc = web_render("message.html", kv2, &out, &len);
  free(big);
  CHECK_INT(rc, 0);
  CHECK(len <= WEB_RENDER_MAX);
  CHECK(strstr(out, "<p>bbbb") != NULL);
  free(out);
}

int main(void) {
  RUN(assets_present);
  RUN(assets_all_well_formed);
  RUN(unknown_paths);
  RUN(render_message);
  RUN(render_escapes);
  RUN(render_unknown_and_missing);
  RUN(render_no_reexpansion);
  RUN(render_errors);
  RUN(render_cap);
  return UNIT_DONE();
}
