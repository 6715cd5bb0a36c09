/* gateway/api/pages_int.h — private to the employee pages (pages.c: the
 * page, its assets, /api/me, tokens, sign-out; login.c: sign-in with the
 * tenant's OpenID provider and its callback); the OAuth endpoints
 * (oauth*.c) share its rate limiter. */
#ifndef MCPGATE_GATEWAY_API_PAGES_INT_H
#define MCPGATE_GATEWAY_API_PAGES_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/browser.h"
#include "auth/oidc_provider.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"

/* Sign-in outcomes counted for /metrics (mcpgate_signins_total{result}). */
enum {
  PAGES_SIGNIN_OK,          /* a browser session was made */
  PAGES_SIGNIN_REFUSED,     /* not provisioned, inactive, not linkable (403) */
  PAGES_SIGNIN_INVALID,     /* the ID token failed a check (401) */
  PAGES_SIGNIN_STALE,       /* no/foreign login cookie, expired, replayed (400) */
  PAGES_SIGNIN_PROVIDER,    /* the provider unusable or its token endpoint refused (502/503) */
  PAGES_SIGNIN_N
};

/* Process-wide state (srv->pages): the providers' metadata and keys, and
 * counters (relaxed atomics: any loop adds, /metrics reads). */
typedef struct gw_pages {
  auth_oidc_cache *oidc;
  struct gw_ratelimit *rate_addr, *rate_tenant; /* auth_rate_per_address / _per_tenant */
  _Atomic uint64_t signins[PAGES_SIGNIN_N];
  _Atomic uint64_t rate_limited;
} gw_pages;

/* Counts one sign-in outcome. */
void pages__count(gw_server *srv, int result);

/* Unix seconds, and a process-wide monotonic clock in ms (cache ages). */
int64_t pages__now(void);
int64_t pages__mono_ms(void);

/* The tenant's cookie names: the browser session ("mcpgate-{t}"), and the
 * sign-in in progress ("mcpgate-login.{t}": '.' is never in a tenant id,
 * so no two tenants' cookies share a name). "__Host-" prefixed (Path=/,
 * Secure) when public_url is https; else scoped by path to /t/{t}/. */
typedef enum { PAGES_COOKIE_SESSION, PAGES_COOKIE_LOGIN } pages_cookie;
void pages__cookie_name(const gw_server *srv, const char *tenant, pages_cookie which, char *out, size_t cap);
/* The value of cookie `name` in the request, copied into out; NULL when
 * absent or longer than cap - 1. */
const char *pages__cookie_get(const gw_req *req, const char *name, char *out, size_t cap);
/* Sets (value) or clears (value NULL) the tenant's cookie; HttpOnly,
 * SameSite=Lax, Secure when public_url is https. */
void pages__cookie_set(gw_req *req, const char *tenant, pages_cookie which, const char *value, int64_t max_age_s);

/* Headers every page and page API answer carries (CSP, no framing, no
 * referrer, no sniffing, no caching unless asset). */
void pages__headers(gw_req *req, bool cacheable);
/* The same, not cacheable, for a page whose form is answered with a
 * redirect to form_to (the consent page: to the client's redirect URI):
 * its origin joins the CSP's form-action, which browsers check on every
 * redirect after a form submission. */
void pages__headers_form_to(gw_req *req, const char *form_to);
/* That origin as a CSP source into out (see pages.c); "" when none. */
void pages__csp_form_source(const char *url, char *out, size_t cap);
/* A rendered message page (web/message.html) with status. href/action may
 * be NULL (no action link). */
void pages__message(gw_req *req, int status, const char *tenant, const char *title, const char *message,
                    const char *href, const char *action);

/* The live browser session of this request in tenant: 0 and *out, or
 * ST_ENOTFOUND. Records its use (at most once a minute). */
int pages__session(gw_req *req, const char *tenant, auth_browser *out);

/* The one rate limiter of the sign-in and the OAuth authorization server
 * (per client address, per tenant: auth_rate_per_address, _per_tenant).
 * pages__rate_wait takes a token: 0 when the request may go on; else the
 * seconds until it may, with the Retry-After header already set and the
 * refusal counted — the caller answers 429 in its own format (a JSON
 * endpoint in JSON). pages__rate_ok does the same for a page: true when
 * the request may go on, else it has been answered with a 429 page. */
int64_t pages__rate_wait(gw_req *req, const char *tenant);
bool pages__rate_ok(gw_req *req, const char *tenant);

/* The request may change state for session s: same site (Origin,
 * Sec-Fetch-Site) and its CSRF token (X-CSRF-Token, else form_token). */
bool pages__csrf_ok(gw_req *req, const auth_browser *s, const char *form_token);

/* oauth_flow.c: the authorization server's authorize, consent, token and
 * revoke endpoints */
void pages__authorize(gw_req *req, const char *tenant);
void pages__consent(gw_req *req, const char *tenant);
void pages__token(gw_req *req, const char *tenant);
void pages__revoke(gw_req *req, const char *tenant);

/* login.c */
void pages__login(gw_req *req, const char *tenant);
void pages__callback(gw_req *req, const char *tenant);

#endif
