/* gateway/out/egress.h — the operator's egress policy: which destinations the
 * gateway may open outbound connections to.
 *
 * Why: tenant admins set connector URLs (and later OIDC issuers, webhooks,
 * SIEM sinks), and outside callers will supply URLs too (OAuth client
 * metadata documents). Without a policy either can make the gateway fetch
 * http://127.0.0.1:…, a private range or a cloud metadata address and relay
 * what it says (SSRF). The rule: only PUBLIC addresses, plus what the
 * operator lists (config keys egress_allow / egress_allow_untrusted; never
 * settable by tenants).
 *
 * "Not public" (gw_egress_addr_public() is false):
 *   IPv4  0.0.0.0/8, 10/8, 100.64/10, 127/8, 169.254/16 (link-local, cloud
 *         metadata 169.254.169.254), 172.16/12, 192.0.0/24, 192.0.2/24,
 *         192.88.99/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24,
 *         224/4 (multicast), 240/4 (reserved, broadcast).
 *   IPv6  everything outside global unicast 2000::/3 — so ::, ::1, ULA
 *         fc00::/7 (incl. the fd00:ec2::254 metadata address), link-local
 *         fe80::/10, site-local, multicast ff00::/8, discard 100::/64 —
 *         and inside it 2001::/23 (Teredo, ORCHID, …), 2001:db8::/32,
 *         3fff::/20 (documentation). Addresses that carry an IPv4 address
 *         are judged by it: IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96,
 *         6to4 2002::/16 (so [::ffff:127.0.0.1] is loopback).
 *
 * A policy is a list of CIDRs (10.0.0.0/8, ::1, 2001:db8::/32) and host
 * names (mcp.internal.example, or *.internal.example for every subdomain),
 * comma- or space-separated. A CIDR allows connecting to addresses inside
 * it (an IPv4 CIDR also covers the IPv4-mapped and NAT64 forms of those
 * addresses); a host name allows a URL whose host is that name to connect
 * wherever the name resolves. Whatever the policy, the check is made on the
 * address actually connected to (gateway/out/outbound.c), after DNS, so DNS
 * rebinding cannot get around it.
 *
 * Threads: a parsed policy is immutable; any thread may read it.
 * Ownership: gw_egress_parse's result is owned by the caller
 * (gw_egress_free). */
#ifndef MCPGATE_GATEWAY_EGRESS_H
#define MCPGATE_GATEWAY_EGRESS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct gw_egress gw_egress;

/* Caps: entries in one policy, and one host name entry. */
#define GW_EGRESS_MAX_ENTRIES 256
#define GW_EGRESS_MAX_HOST 253

/* Parses spec ("" = nothing beyond public addresses). `key` is the config
 * key the policy came from (copied; named in refusal messages). Returns 0,
 * -EINVAL with a message naming the bad entry in err, or -ENOMEM. */
int gw_egress_parse(const char *key, const char *spec, gw_egress **out, char *err, size_t errlen);
void gw_egress_free(gw_egress *e);
/* The config key (for messages); "egress policy" for NULL. */
const char *gw_egress_key(const gw_egress *e);

/* Is this a public address? fam AF_INET (4 bytes) or AF_INET6 (16 bytes). */
bool gw_egress_addr_public(int fam, const unsigned char *addr);
/* May the gateway connect to this address? Public, or inside a listed
 * CIDR. e may be NULL (public only). */
bool gw_egress_allows_addr(const gw_egress *e, int fam, const unsigned char *addr);
/* The same for a struct sockaddr (AF_INET/AF_INET6; anything else: no). */
bool gw_egress_allows_sockaddr(const gw_egress *e, const struct sockaddr *sa);
/* The same for a textual IP ("127.0.0.1", "::1", no brackets); false when
 * it is not an IP address. */
bool gw_egress_allows_ip_text(const gw_egress *e, const char *ip);
/* Is `host` (a URL's host name, any case, no port) listed by name? */
bool gw_egress_allows_host(const gw_egress *e, const char *host);

/* Early check of a URL whose host is an IP literal (admin PUT): returns 0
 * when the host is a name (checked later, at connect time) or an allowed
 * address; -1 when it is an address the policy refuses, with a sentence
 * naming the address and the config key to set written to why. */
int gw_egress_check_url(const gw_egress *e, const char *url, char *why, size_t whylen);

/* Whether URLs a and b reach the same origin (scheme, host, port — the
 * default port when none is written), read by curl's parser as the engine
 * reads them. A stored secret (a SIEM token, an OIDC client secret) is
 * kept across a settings PUT that omits it only while its destination
 * stays the same origin: anything unparsable is "no". */
bool gw_egress_same_origin(const char *a, const char *b);

#endif
