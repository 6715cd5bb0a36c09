/* gateway/base/cidr.h — IP addresses and prefixes in the operator's syntax
 * (a.b.c.d[/n], v6[/n]): parsing and matching. One parser for every list of
 * them (trusted_proxies in gateway/http/forwarded.c, the egress allow lists
 * in gateway/out/egress.c, config validation), kept here because http and
 * out may include only gateway/base. Pure functions, no state, any thread. */
#ifndef MCPGATE_GATEWAY_BASE_CIDR_H
#define MCPGATE_GATEWAY_BASE_CIDR_H
#include <stdbool.h>
#include <stddef.h>

typedef struct gw_cidr {
  unsigned char addr[16]; /* network byte order; IPv4 in the first 4 bytes */
  int bits;               /* prefix length; a bare address is /32 or /128 */
  int family;             /* 4 or 6 */
} gw_cidr;

/* Parses n bytes of s ("10.0.0.0/8", "::1", …; no spaces) into *out.
 * Returns 0, or -EINVAL when it is not an address with an optional prefix
 * length within the family's bits. */
int gw_cidr_parse(const char *s, size_t n, gw_cidr *out);
/* Parses a textual address (NUL-terminated) into addr and *family (4, 6).
 * Returns 0 or -EINVAL. */
int gw_ip_parse(const char *ip, unsigned char addr[16], int *family);
/* True when addr (of family 4 or 6) lies inside c. */
bool gw_cidr_match(const gw_cidr *c, int family, const unsigned char addr[16]);
/* True when addr (an IPv6 address as gw_ip_parse fills it) is an
 * IPv4-mapped one (::ffff:a.b.c.d): an IPv4 peer on a dual-stack
 * listener. Its IPv4 address is then addr + 12. */
bool gw_ip_v4_mapped(const unsigned char addr[16]);

#endif
