/* gateway/base/cidr.c — IP prefixes (see cidr.h). Moved here from
 * core/server.c, whose parser gateway/out/egress.c and core/config.c
 * borrowed through a private declaration: now one parser with a header. */
#include "gateway/base/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int gw_ip_parse(const char *ip, unsigned char addr[16], int *family) {
  memset(addr, 0, 16);
  if (inet_pton(AF_INET, ip, addr) == 1) *family = 4;
  else if (inet_pton(AF_INET6, ip, addr) == 1) *family = 6;
  else return -EINVAL;
  return 0;
}

int gw_cidr_parse(const char *s, size_t n, gw_cidr *out) {
  char buf[80];
  if (n == 0 || n >= sizeof buf) return -EINVAL;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *slash = strchr(buf, '/');
  if (slash) *slash = 0;
  if (gw_ip_parse(buf, out->addr, &out->family) != 0) return -EINVAL;
  int maxbits = out->family == 4 ? 32 : 128;
  out->bits = maxbits;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (end == slash + 1 || *end || b < 0 || b > maxbits) return -EINVAL;
    out->bits = (int)b;
  }
  return 0;
}

bool gw_ip_v4_mapped(const unsigned char addr[16]) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return !memcmp(addr, mapped, sizeof mapped);
}

bool gw_cidr_match(const gw_cidr *c, int family, const unsigned char addr[16]) {
  if (c->family != family) return false;
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->addr, addr, (size_t)full) != 0) return false;
  if (!rest) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (c->addr[full] & mask) == (addr[full] & mask);
}
