/* gateway/out/egress.c — the egress policy (see egress.h): parsing the
 * operator's allow lists and classifying addresses.
 *
 * IPv6 is judged by an allow-list (global unicast 2000::/3 minus
 * non-routable blocks) rather than a deny-list: a block nobody thought of is
 * then refused, not allowed. IPv4 has no such structure, so it is a
 * deny-list of every special-purpose block of the IANA registry that is not
 * globally reachable. Addresses that embed an IPv4 address (mapped, NAT64,
 * 6to4) are judged by that address: a NAT64 gateway or the kernel would
 * deliver them there. CIDR entries use the one parser of gateway/base/cidr.h
 * (the trusted_proxies syntax). A parsed policy is immutable: any thread. */
#include "gateway/out/egress.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/cidr.h"


typedef struct eg_cidr {
  unsigned char addr[16];
  int bits;
  int fam; /* 4 or 6 */
} eg_cidr;

typedef struct eg_host {
  char name[GW_EGRESS_MAX_HOST + 1]; /* lower case, no trailing dot */
  bool wildcard;                     /* "*.name": subdomains of name */
} eg_host;

struct gw_egress {
  char key[64];
  eg_cidr *cidrs;
  size_t ncidrs;
  eg_host *hosts;
  size_t nhosts;
};

/* ---------- classification ---------- */

static bool in_v4(const unsigned char *a, unsigned char b0, unsigned char b1, unsigned char b2, int bits) {
  uint32_t x = ((uint32_t)a[0] << 24) | ((uint32_t)a[1] << 16) | ((uint32_t)a[2] << 8) | a[3];
  uint32_t n = ((uint32_t)b0 << 24) | ((uint32_t)b1 << 16) | ((uint32_t)b2 << 8);
  uint32_t mask = bits ? 0xffffffffu << (32 - bits) : 0;
  return (x & mask) == (n & mask);
}

static bool v4_public(const unsigned char *a) {
  static const struct {
    unsigned char b0, b1, b2;
    int bits;
  } deny[] = {
      {0, 0, 0, 8},       /* "this network" */
      {10, 0, 0, 8},      /* RFC 1918 */
      {100, 64, 0, 10},   /* shared address space (CGNAT) */
      {127, 0, 0, 8},     /* loopback */
      {169, 254, 0, 16},  /* link-local; cloud metadata 169.254.169.254 */
      {172, 16, 0, 12},   /* RFC 1918 */
      {192, 0, 0, 24},    /* IETF protocol assignments (incl. 192.0.0.192 metadata) */
      {192, 0, 2, 24},    /* TEST-NET-1 */
      {192, 88, 99, 24},  /* 6to4 relay anycast (deprecated) */
      {192, 168, 0, 16},  /* RFC 1918 */
      {198, 18, 0, 15},   /* benchmarking */
      {198, 51, 100, 24}, /* TEST-NET-2 */
      {203, 0, 113, 24},  /* TEST-NET-3 */
      {224, 0, 0, 4},     /* multicast */
      {240, 0, 0, 4},     /* reserved, limited broadcast */
  };
  for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++)
    if (in_v4(a, deny[i].b0, deny[i].b1, deny[i].b2, deny[i].bits)) return false;
  return true;
}

static bool prefix_eq(const unsigned char *a, const unsigned char *p, int bits) {
  int full = bits / 8, rest = bits % 8;
  if (memcmp(a, p, (size_t)full) != 0) return false;
  if (!rest) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (a[full] & mask) == (p[full] & mask);
}

/* The IPv4 address an IPv6 address delivers to, if any: IPv4-mapped
 * ::ffff:a.b.c.d, NAT64 well-known prefix 64:ff9b::a.b.c.d (RFC 6052) and
 * 6to4 2002:AABB:CCDD::/48. */
static const unsigned char *v6_embedded_v4(const unsigned char *a) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12)) return a + 12;
  if (a[0] == 0x20 && a[1] == 0x02) return a + 2;
  return NULL;
}

static bool v6_public(const unsigned char *a) {
  const unsigned char *v4 = v6_embedded_v4(a);
  if (v4) return v4_public(v4);
  static const unsigned char p2001[16] = {0x20, 0x01};
  static const unsigned char pdoc[16] = {0x20, 0x01, 0x0d, 0xb8};
  static const unsigned char pdoc2[16] = {0x3f, 0xff};
  if ((a[0] & 0xe0) != 0x20) return false;      /* outside 2000::/3: reserved, ULA, link-local, … */
  if (prefix_eq(a, p2001, 23)) return false;    /* IETF protocol assignments: Teredo, ORCHID, … */
  if (prefix_eq(a, pdoc, 32)) return false;     /* documentation */
  if (prefix_eq(a, pdoc2, 20)) return false;    /* documentation (RFC 9637) */
  return true;
}

bool gw_egress_addr_public(int fam, const unsigned char *addr) {
  if (fam == AF_INET) return v4_public(addr);
  if (fam == AF_INET6) return v6_public(addr);
  return false;
}

static bool cidr_hit(const gw_egress *e, int fam, const unsigned char *addr) {
  for (size_t i = 0; e && i < e->ncidrs; i++)
    if (e->cidrs[i].fam == fam && prefix_eq(addr, e->cidrs[i].addr, e->cidrs[i].bits)) return true;
  return false;
}

bool gw_egress_allows_addr(const gw_egress *e, int fam, const unsigned char *addr) {
  if (fam != AF_INET && fam != AF_INET6) return false;
  if (gw_egress_addr_public(fam, addr)) return true;
  if (cidr_hit(e, fam == AF_INET ? 4 : 6, addr)) return true;
  /* ::ffff:127.0.0.1 reaches what 127.0.0.1 reaches: an IPv4 entry covers it */
  const unsigned char *v4 = fam == AF_INET6 ? v6_embedded_v4(addr) : NULL;
  return v4 && addr[0] != 0x20 && cidr_hit(e, 4, v4);
}

bool gw_egress_allows_sockaddr(const gw_egress *e, const struct sockaddr *sa) {
  if (!sa) return false;
  if (sa->sa_family == AF_INET)
    return gw_egress_allows_addr(e, AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
  if (sa->sa_family == AF_INET6)
    return gw_egress_allows_addr(e, AF_INET6, (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
  return false;
}

/* 1 with *fam/addr filled when ip is a textual address, else 0. */
static int parse_ip(const char *ip, int *fam, unsigned char addr[16]) {
  if (inet_pton(AF_INET, ip, addr) == 1) {
    *fam = AF_INET;
    return 1;
  }
  if (inet_pton(AF_INET6, ip, addr) == 1) {
    *fam = AF_INET6;
    return 1;
  }
  return 0;
}

bool gw_egress_allows_ip_text(const gw_egress *e, const char *ip) {
  unsigned char a[16];
  int fam;
  return ip && parse_ip(ip, &fam, a) && gw_egress_allows_addr(e, fam, a);
}

bool gw_egress_allows_host(const gw_egress *e, const char *host) {
  if (!e || !host || !e->nhosts) return false;
  size_t n = strlen(host);
  if (n && host[n - 1] == '.') n--; /* "example.com." is example.com */
  if (n == 0 || n > GW_EGRESS_MAX_HOST) return false;
  for (size_t i = 0; i < e->nhosts; i++) {
    const eg_host *h = &e->hosts[i];
    size_t hl = strlen(h->name);
    if (!h->wildcard) {
      if (hl == n && !strncasecmp(host, h->name, n)) return true;
    } else if (n > hl + 1 && host[n - hl - 1] == '.' && !strncasecmp(host + n - hl, h->name, hl)) {
      return true;
    }
  }
  return false;
}

/* ---------- parsing ---------- */

static bool host_ok(const char *s, size_t n) {
  if (n == 0 || n > GW_EGRESS_MAX_HOST) return false;
  bool any_alpha = false;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-') return false; /* empty label, or one ending in '-' */
      label = 0;
      continue;
    }
    if (!isalnum(c) && c != '-') return false;
    if (c == '-' && label == 0) return false;
    if (isalpha(c) || c == '-') any_alpha = true;
    if (++label > 63) return false;
  }
  /* all digits and dots would be a (malformed) IPv4 address, not a name */
  return label > 0 && s[n - 1] != '-' && any_alpha;
}

int gw_egress_parse(const char *key, const char *spec, gw_egress **out, char *err, size_t errlen) {
  *out = NULL;
  gw_egress *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  snprintf(e->key, sizeof e->key, "%s", key ? key : "egress policy");
  size_t cap = 0;
  for (const char *p = spec ? spec : ""; *p;) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    if (!*p) break;
    size_t n = strcspn(p, ", \t");
    if (e->ncidrs + e->nhosts >= GW_EGRESS_MAX_ENTRIES) {
      snprintf(err, errlen, "more than %d entries", GW_EGRESS_MAX_ENTRIES);
      goto bad;
    }
    if (e->ncidrs + e->nhosts >= cap) {
      cap = cap ? cap * 2 : 8;
      eg_cidr *c = realloc(e->cidrs, cap * sizeof *c);
      if (c) e->cidrs = c;
      eg_host *h = realloc(e->hosts, cap * sizeof *h);
      if (h) e->hosts = h;
      if (!c || !h) {
        gw_egress_free(e);
        return -ENOMEM;
      }
    }
    eg_cidr *c = &e->cidrs[e->ncidrs];
    gw_cidr parsed; /* the trusted_proxies syntax: a.b.c.d[/n] or v6[/n] */
    if (gw_cidr_parse(p, n, &parsed) == 0) {
      memcpy(c->addr, parsed.addr, sizeof c->addr);
      c->bits = parsed.bits;
      c->fam = parsed.family;
      e->ncidrs++;
    } else {
      eg_host *h = &e->hosts[e->nhosts];
      const char *name = p;
      size_t nl = n;
      h->wildcard = nl > 2 && name[0] == '*' && name[1] == '.';
      if (h->wildcard) name += 2, nl -= 2;
      if (nl && name[nl - 1] == '.') nl--;
      if (!host_ok(name, nl)) {
        snprintf(err, errlen,
                 "bad entry \"%.*s\" (expected a CIDR such as 10.0.0.0/8 or ::1, or a host name such as "
                 "mcp.internal.example or *.internal.example)",
                 (int)(n > 100 ? 100 : n), p);
        goto bad;
      }
      for (size_t i = 0; i < nl; i++) h->name[i] = (char)tolower((unsigned char)name[i]);
      h->name[nl] = 0;
      e->nhosts++;
    }
    p += n;
  }
  *out = e;
  return 0;
bad:
  gw_egress_free(e);
  return -EINVAL;
}

void gw_egress_free(gw_egress *e) {
  if (!e) return;
  free(e->cidrs);
  free(e->hosts);
  free(e);
}

const char *gw_egress_key(const gw_egress *e) { return e ? e->key : "egress policy"; }

int gw_egress_check_url(const gw_egress *e, const char *url, char *why, size_t whylen) {
  /* curl's own parser, so the host seen here is the host the engine will
   * connect to (it also normalises IPv4 forms such as 127.1 or 0x7f.1) */
  CURLU *u = curl_url();
  char *host = NULL;
  int rc = 0;
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
    char ip[64];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [v6] (drop a zone id) */
      size_t il = strcspn(host + 1, "%]");
      snprintf(ip, sizeof ip, "%.*s", (int)(il < sizeof ip ? il : sizeof ip - 1), host + 1);
    } else {
      snprintf(ip, sizeof ip, "%s", host);
    }
    unsigned char a[16];
    int fam;
    if (parse_ip(ip, &fam, a) && !gw_egress_allows_addr(e, fam, a)) {
      snprintf(why, whylen,
               "the URL's address %s is not a public address, and the gateway only connects to public addresses "
               "unless its operator lists more in the config key %s (e.g. %s=%s%s)",
               ip, gw_egress_key(e), gw_egress_key(e), ip, fam == AF_INET6 ? "/128" : "/32");
      rc = -1;
    }
  }
  curl_free(host);
  curl_url_cleanup(u);
  return rc;
}

/* scheme, host and port of url (each curl_free'd by the caller); false
 * when it does not parse */
static bool origin_parts(const char *url, char **scheme, char **host, char **port) {
  CURLU *u = curl_url();
  *scheme = *host = *port = NULL;
  bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK;
  curl_url_cleanup(u);
  return ok;
}

bool gw_egress_same_origin(const char *a, const char *b) {
  if (!a || !b) return false;
  char *sa, *ha, *pa, *sb, *hb, *pb;
  bool oka = origin_parts(a, &sa, &ha, &pa), okb = origin_parts(b, &sb, &hb, &pb);
  bool same = oka && okb && !strcasecmp(sa, sb) && !strcasecmp(ha, hb) && !strcmp(pa, pb);
  char *all[] = {sa, ha, pa, sb, hb, pb};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) curl_free(all[i]);
  return same;
}
