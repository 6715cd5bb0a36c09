/* store/url_query.h — a URL's query held as secret material, for every
 * module that seals a URL (vault/'s connector URLs, audit/'s tenant SIEM
 * sinks): which form of the URL may be shown, and which URL an admin
 * means when they send the shown form back; and the one rule on user
 * information in any admin-set URL (below).
 *
 * Hosted services take their API key in the query (an MCP server's
 * ?api_key=…, Datadog's intake ?dd-api-key=…), and telling a key from a
 * harmless parameter by its name would be a guess that fails open: every
 * query value is treated as a credential. A module keeps the URL as shown
 * (st_url_shown) in its clear record and seals the real one (st_secret_put,
 * store/seal.h) when the two differ (st_url_has_secret); a write that sends
 * the shown URL back keeps the stored values (st_url_keep_masked) only at
 * the same scheme, host, port and path, so a kept key is never sent to
 * another server by someone who cannot read it.
 *
 * Pure string functions: no store, no I/O, any thread. */
#ifndef MCPGATE_STORE_URL_QUERY_H
#define MCPGATE_STORE_URL_QUERY_H
#include <stddef.h>

#define ST_URL_MASK "\xe2\x80\xa6"   /* U+2026 "…": a query value as shown */
#define ST_URL_MASK_PCT "%E2%80%A6" /* the same, percent-encoded (accepted back, any case) */
#define ST_URL_MASK_LEN 3            /* bytes of ST_URL_MASK */

/* The URL as it may be shown (records, API answers, audit, logs, error
 * messages): every query value replaced by "…", names kept
 * ("?api_key=…&region=…"); a query component without '=' is all value
 * ("?…"), an empty value stays empty. At most 3 bytes per byte of url.
 * malloc'd (free()), NULL without memory or for a NULL url. */
char *st_url_shown(const char *url);
/* 1 when url shows otherwise than it is (its query holds a value); 1 also
 * without memory (fail closed). */
int st_url_has_secret(const char *url);
/* The real URL a write means: url itself when no query value of it is
 * masked, or url with every value sent back masked ("…" or %E2%80%A6)
 * replaced by the stored URL's value of the same name (the n-th of that
 * name for the n-th). Only when everything before the query (scheme, host,
 * port, path) is exactly the stored URL's. *out is malloc'd (free with
 * st_secret_str_free, which wipes it: it may hold kept values). 0;
 * ST_EMASKED when a masked value cannot be kept (stored NULL or without
 * query, another scheme/host/port/path, no stored value of that name, or
 * the URL with the kept values over max bytes); ST_ENOMEM. */
int st_url_keep_masked(const char *url, const char *stored, size_t max, char **out);

/* ---- the authority: user information is never stored, nor shown -------------
 * Every URL an admin sets (a connector's and its OAuth endpoints, a tenant's
 * SIEM sink, the approval webhook; auth/oidc.c keeps the same rule for the
 * OIDC issuer) is refused with user information: a credential there would
 * be sent as Basic auth and shown in clear wherever the URL is. Logs and
 * the audit show a URL's origin only (st_url_origin).
 *
 * User information is an '@' anywhere between "//" and the first '/': a
 * '?' or '#' does not end the search — "https://user:pa?ss@host/" is read
 * by curl and browsers as host "user" with a query, but its writer meant
 * the password "pa?ss", and an origin cut at the '?' would show
 * "https://user:pa". The authority (up to the first '/', '?' or '#') must
 * be host[:port] with a port of digits: "https://user:pa/ss@host/" would
 * show "pa" as a port. */

/* 0 when url (after "http://" or "https://", any case) has neither user
 * information nor a malformed host[:port]; -1 and a sentence in why (it
 * names no part of the URL). */
int st_url_authority_check(const char *url, char *why, size_t whylen);
/* scheme://host[:port] of url into out (cap bytes, always terminated):
 * what logs, audit records and messages may show of it. A URL stored
 * before st_url_authority_check existed shows the host after a
 * user:password@ only when the '@' lies within the authority; otherwise
 * "scheme://(withheld)". */
void st_url_origin(const char *url, char *out, size_t cap);

#endif
