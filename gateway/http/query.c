/* gateway/http/query.c — query-string parameters (see query.h). */
#include "gateway/http/query.h"

#include <string.h>

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int gw_query_get(const char *query, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > nl && p[nl] == '=' && !strncmp(p, name, nl)) {
      size_t o = 0;
      for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
        char c = p[i];
        if (c == '+') {
          c = ' ';
        } else if (c == '%' && i + 2 < len && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
          int v = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
          if (v > 0) {
            c = (char)v;
            i += 2;
          }
        }
        out[o++] = c;
      }
      out[o] = 0;
      return 1;
    }
    p = amp ? amp + 1 : NULL;
  }
  return 0;
}
