/* gateway/mcp/mcp_origin.c — Origin and Host checks (see mcp_origin.h).
 *
 * Origins are compared as (scheme, host, port) after normalising: scheme
 * and host lower-cased, the default port made explicit (http 80, https 443)
 * — so "http://LOCALHOST" equals "http://localhost:80". Anything that does
 * not parse as scheme://host[:port] (including the opaque "null" origin of
 * sandboxed frames and file: pages) matches only an identical entry in
 * allowed_origins. Every input is capped (an Origin over 512 bytes is not
 * an origin). */
#include "gateway/mcp/mcp_origin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/buf.h"
#include "gateway/core/server.h"

#define ORIGIN_MAX 512

typedef struct origin {
  char scheme[8];         /* "http" / "https" */
  char host[ORIGIN_MAX];  /* lower case; IPv6 without brackets */
  int port;
} origin;

bool gw_host_is_loopback(const char *host, size_t n) {
  char h[64];
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']') host++, n -= 2;
  if (n == 0 || n >= sizeof h) return false;
  memcpy(h, host, n);
  h[n] = 0;
  if (n && h[n - 1] == '.') h[--n] = 0; /* "localhost." */
  if (!strcasecmp(h, "localhost")) return true;
  unsigned char a[16];
  if (inet_pton(AF_INET, h, a) == 1) return a[0] == 127;
  static const unsigned char one[16] = {[15] = 1};
  return inet_pton(AF_INET6, h, a) == 1 && !memcmp(a, one, 16);
}

/* host[:port] (or [v6][:port]) of n bytes into o->host / o->port (default
 * def_port). 0 or -1. */
static int parse_authority(const char *s, size_t n, int def_port, origin *o) {
  const char *host = s, *colon = NULL;
  size_t hl;
  if (n && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close) return -1;
    host = s + 1;
    hl = (size_t)(close - s - 1);
    if ((size_t)(close - s + 1) < n) {
      if (close[1] != ':') return -1;
      colon = close + 1;
    }
  } else {
    colon = memchr(s, ':', n);
    hl = colon ? (size_t)(colon - s) : n;
  }
  if (hl == 0 || hl >= sizeof o->host || memchr(host, '@', hl)) return -1;
  for (size_t i = 0; i < hl; i++) o->host[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
  o->host[hl] = 0;
  o->port = def_port;
  if (colon) {
    const char *p = colon + 1, *end = s + n;
    if (p == end) return 0; /* "host:" means the default port */
    long v = 0;
    for (; p < end; p++) {
      if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535) return -1;
    }
    o->port = (int)v;
  }
  return 0;
}

/* scheme://host[:port] with nothing after, except that a base URL (the
 * configured public_url) may go on with a path: allow_path. */
static int parse_origin(const char *s, bool allow_path, origin *o) {
  size_t n = strlen(s);
  if (n > ORIGIN_MAX) return -1;
  int def;
  size_t sl;
  if (!strncasecmp(s, "http://", 7)) def = 80, sl = 4;
  else if (!strncasecmp(s, "https://", 8)) def = 443, sl = 5;
  else return -1;
  gw_strlcpy(o->scheme, def == 80 ? "http" : "https", sizeof o->scheme);
  const char *a = s + sl + 3;
  size_t al = strcspn(a, "/?#");
  if (a[al] && !(allow_path && a[al] == '/')) return -1;
  return parse_authority(a, al, def, o);
}

static bool same_origin(const origin *a, const origin *b) {
  return !strcmp(a->scheme, b->scheme) && !strcmp(a->host, b->host) && a->port == b->port;
}

static bool listed(const char *list, const char *origin_hdr, const origin *o, bool parsed) {
  size_t ol = strlen(origin_hdr);
  for (const char *p = list ? list : ""; *p;) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ", ");
    if (n == 1 && *p == '*') return true;
    if (n && n == ol && !strncasecmp(p, origin_hdr, n)) return true;
    if (n && parsed && n <= ORIGIN_MAX) { /* the same origin written differently */
      char e[ORIGIN_MAX + 1];
      origin eo;
      memcpy(e, p, n);
      e[n] = 0;
      if (parse_origin(e, false, &eo) == 0 && same_origin(&eo, o)) return true;
    }
    p += n;
  }
  return false;
}

/* public_url's origin, parsed once per thread and again only when the
 * setting's text changes (a reload): every MCP request asks. NULL when
 * there is none or it does not parse. */
static const origin *public_origin(const char *url, bool *loopback) {
  static _Thread_local struct {
    char src[ORIGIN_MAX + 1];
    bool have, ok, loopback;
    origin o;
  } c;
  *loopback = false;
  if (!url || strlen(url) > ORIGIN_MAX) return NULL;
  if (!c.have || strcmp(c.src, url) != 0) {
    gw_strlcpy(c.src, url, sizeof c.src);
    c.have = true;
    c.ok = parse_origin(url, true, &c.o) == 0;
    c.loopback = c.ok && gw_host_is_loopback(c.o.host, strlen(c.o.host));
  }
  *loopback = c.loopback;
  return c.ok ? &c.o : NULL;
}

int gw_mcp_origin_check(const gw_req *req, const char **code, char *msg, size_t msglen) {
  const gw_config *cfg = &req->lp->srv->cfg;
  bool loopback;
  const origin *pub = public_origin(cfg->public_url, &loopback);

  const char *host = gw_req_header(req, "host");
  if (loopback && host) {
    origin h;
    if (strlen(host) > ORIGIN_MAX || parse_authority(host, strlen(host), 0, &h) != 0 ||
        !gw_host_is_loopback(h.host, strlen(h.host))) {
      *code = "forbidden_host";
      snprintf(msg, msglen,
               "Host %.100s is not a loopback name: this gateway serves %s, on loopback only, and refuses other "
               "host names (DNS-rebinding protection). If clients reach it under another name, set public_url",
               host, cfg->public_url);
      return 403;
    }
  }

  const char *o = gw_req_header(req, "origin");
  if (!o) return 0;
  origin oo = {0};
  bool parsed = parse_origin(o, false, &oo) == 0;
  if (listed(cfg->allowed_origins, o, &oo, parsed)) return 0;
  if (parsed && pub && same_origin(&oo, pub)) return 0;
  if (parsed && loopback && gw_host_is_loopback(oo.host, strlen(oo.host))) return 0;
  *code = "forbidden_origin";
  snprintf(msg, msglen,
           "Origin %.100s is not allowed: it is not this gateway's origin (public_url %s) and not listed in "
           "allowed_origins",
           o, cfg->public_url ? cfg->public_url : "");
  return 403;
}
