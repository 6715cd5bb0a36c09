/* gateway/api/pages_int.h — private to the employee pages (pages.c: the
 * page, its assets, /api/me, tokens, sign-out; login.c: sign-in with the
 * tenant's OpenID provider and its callback); the OAuth endpoints
 * (oauth*.c) share its rate limiter, and the reviewers' page
 * (approvals.c) its browser session, CSRF check, headers and message
 * pages. */
#ifndef MCPGATE_GATEWAY_API_PAGES_INT_H
#define MCPGATE_GATEWAY_API_PAGES_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth/browser.h"
#include "auth/oidc_provider.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"
#include "gateway/http/router.h"

/* Sign-in outcomes counted for /metrics (mcpgate_signins_total{result}). */
enum {
  PAGES_SIGNIN_OK,          /* a browser session was made */
  PAGES_SIGNIN_REFUSED,     /* not provisioned, inactive, not linkable (403) */
  PAGES_SIGNIN_INVALID,     /* the ID token failed a check (401) */
  PAGES_SIGNIN_STALE,       /* no/foreign login cookie, expired, replayed (400) */
  PAGES_SIGNIN_PROVIDER,    /* the provider unusable or its token endpoint refused (502/503) */
  PAGES_SIGNIN_N
};

/* Universal Logout outcomes (mcpgate_universal_logouts_total{result}). */
enum {
  PAGES_GTR_DONE,            /* 204: the user was signed out everywhere */
  PAGES_GTR_MALFORMED,       /* 400, 413, 415: the body */
  PAGES_GTR_UNAUTHORIZED,    /* 401: no, a bad or a replayed token */
  PAGES_GTR_UNKNOWN_SUBJECT, /* 404: no such user */
  PAGES_GTR_FAILED,          /* 422: the sign-out could not be done */
  PAGES_GTR_RATE_LIMITED,    /* 429 */
  PAGES_GTR_UNAVAILABLE,     /* 503: the keys (or the store) could not be read */
  PAGES_GTR_N
};

/* Process-wide state (srv->pages): the providers' metadata and keys, and
 * counters (relaxed atomics: any loop adds, /metrics reads). */
typedef struct gw_pages {
  auth_oidc_cache *oidc;        /* the sign-in issuers' */
  auth_oidc_cache *oidc_logout; /* the logout issuers' (auth/oidc.h: often another issuer) */
  struct gw_ratelimit *rate_addr, *rate_tenant; /* auth_rate_per_address / _per_tenant */
  struct gw_ratelimit *rate_dcr_tenant;         /* dcr_rate_per_tenant */
  struct gw_ratelimit *rate_logout_addr, *rate_logout_tenant; /* logout_rate_per_address / _per_tenant */
  _Atomic uint64_t signins[PAGES_SIGNIN_N];
  _Atomic uint64_t rate_limited;
  _Atomic uint64_t logouts[PAGES_GTR_N];
  int64_t fetch_body_ms; /* pages__fetch's body deadline (pages__fetch_body_ms) */
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
typedef enum { PAGES_COOKIE_SESSION, PAGES_COOKIE_LOGIN, PAGES_COOKIE_CONNECT } pages_cookie;
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
/* A JSON answer of a page API: the pages' security headers, then
 * gw_respond_json (which adds Cache-Control: no-store); takes j. */
void pages__json(gw_req *req, int status, json_t *j);
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
 * the request may go on, else it has been answered with a 429 page.
 * pages__rate_wait_address and pages__rate_wait_tenant take from one of
 * the two buckets only: the token endpoint takes from the address's for
 * every request but from the tenant's only for one whose grant does not
 * work (anyone may send junk, from as many addresses as they have: it must
 * not hold off the MCP clients' refreshes). pages__rate_ok_signed_in is
 * pages__rate_ok for the authorization endpoint: a browser signed in to
 * tenant (a live session, which only an employee who signed in with Okta
 * has) does not take from the tenant's bucket, so a flood of authorize
 * requests cannot hold off the employees already signed in; it takes from
 * a bucket of its person instead, at the address's rate (a cookie works
 * from any address, and each authorize it passes may write a code).
 * pages__rate_wait_key takes from a bucket of its own at the address's
 * rate, keyed by what a request carries rather than where it comes from
 * (a person, a code or refresh token: "person:", "grant:" and a digest —
 * never an address's form).
 * pages__rate_wait_register is pages__rate_wait for a dynamic client
 * registration: the same bucket per address, but the tenant's own budget
 * of registrations (dcr_rate_per_tenant) instead of the sign-in's — anyone
 * may register, from as many addresses as they have, and a flood of
 * registrations must not hold off the employees' sign-ins. */
int64_t pages__rate_wait(gw_req *req, const char *tenant);
int64_t pages__rate_wait_address(gw_req *req);
int64_t pages__rate_wait_tenant(gw_req *req, const char *tenant);
int64_t pages__rate_wait_key(gw_req *req, const char *key);
int64_t pages__rate_wait_register(gw_req *req, const char *tenant);
bool pages__rate_ok(gw_req *req, const char *tenant);
bool pages__rate_ok_signed_in(gw_req *req, const char *tenant);

/* The request may change state for session s: same site (Origin,
 * Sec-Fetch-Site) and its CSRF token (X-CSRF-Token, else form_token). */
bool pages__csrf_ok(gw_req *req, const auth_browser *s, const char *form_token);

/* oauth_flow.c: the authorization server's authorize, consent, token and
 * revoke endpoints */
void pages__authorize(gw_req *req, const char *tenant);
void pages__consent(gw_req *req, const char *tenant);
void pages__token(gw_req *req, const char *tenant);
void pages__revoke(gw_req *req, const char *tenant);

/* connect.c: an employee connects a connector (per-user upstream grant):
 * GET /t/{t}/connect/{connector} and …/{connector}/callback */
void pages__connect(gw_req *req, const char *tenant, const char *connector);
void pages__connect_callback(gw_req *req, const char *tenant, const char *connector);
/* GET /t/{t}/oauth/upstream-client/{connector}.json: the gateway's Client
 * ID Metadata Document toward a discovered connector's authorization
 * server (only for a connector whose discovery chose CIMD; else 404). */
void pages__upstream_client(gw_req *req, const char *tenant, const char *file);
/* The redirect URI a connector's authorization server must accept. */
void pages__connect_redirect_uri(const gw_server *srv, const char *tenant, const char *connector, char *out,
                                 size_t cap);

/* login.c */
void pages__login(gw_req *req, const char *tenant);
void pages__callback(gw_req *req, const char *tenant);

/* global_logout.c: POST /t/{t}/oauth/global-logout (Okta Universal Logout),
 * its route (body cap, preauth of the Bearer token, JSON early errors) */
void pages__global_logout(gw_req *req);
extern const gw_route pages__global_logout_route;

/* ---- fetching from a tenant's OpenID provider (oidc_fetch.c) ------------- */

/* One outbound fetch (connect/first-byte/idle timeouts, a body deadline, a
 * body cap). cb runs exactly once, later, on lp's loop: err 0 or a
 * GW_OUT_E* code (over the cap: GW_OUT_EHEADERS; too slow: GW_OUT_EIDLE;
 * status -1 for both), the status, and the body (valid during the call
 * only; wiped after). Failures are logged under module with tenant and
 * req_id. */
typedef void (*pages_fetch_cb)(void *ud, int err, int status, const char *body, size_t len);
typedef struct pages_fetch_req {
  const char *method, *url;
  const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
  const char *body;           /* NUL-terminated, or NULL */
  size_t cap;                 /* body bytes kept at most */
  const char *trust;          /* the admin-set URL (an issuer) whose origin gets the admin egress level */
  const char *tenant, *req_id, *module;
  /* optional: the values of every response header named hdr_name, joined
   * with ", " (as header fields combine), copied into hdr_out (hdr_cap
   * bytes; "" when absent or when they do not fit). hdr_out must stay
   * valid until cb has run. */
  const char *hdr_name;
  char *hdr_out;
  size_t hdr_cap;
  /* only the head is wanted: the transfer ends once it is in, and cb gets
   * err 0, the status and no body (an upstream answering with an endless
   * stream cannot hold the caller for the body deadline) */
  bool head_only;
  /* PEM trust anchors used instead of the system CA bundle file (an admin
   * setting such as a connector's ca_file), or NULL */
  const char *ca_file;
} pages_fetch_req;
/* 0 (cb will run), or a GW_OUT_E* code (nothing started; cb never runs).
 * Everything in rq is copied or used during the call only. */
int pages__fetch(gw_loop *lp, const pages_fetch_req *rq, pages_fetch_cb cb, void *ud);
/* The deadline pages__fetch gives a reply's body after its head, in ms:
 * FETCH_BODY_MS, or less by the test hook MCPGATE_TEST_FETCH_BODY_MS (read
 * and logged here: call it once, at the module's init). Every fetch of
 * pages__fetch's users has it: sign-in, logout, connector discovery. */
int64_t pages__fetch_body_ms(void);

/* A provider lookup's end: status 0 and p (a reference now owned by the
 * callee: auth_oidc_provider_free), 502 with why (the provider is unusable:
 * one sentence, no document contents; later lookups of the tenant get it
 * for AUTH_OIDC_FAIL_HOLD_MS), or 503 (AUTH_OIDC_FETCH_MAX fetches are in
 * flight for the tenant: try again shortly). */
typedef void (*pages_provider_cb)(void *ud, auth_oidc_provider *p, int status, const char *why);
typedef struct pages_provider_req {
  const char *tenant, *issuer, *client_id, *req_id, *module;
} pages_provider_req;
/* The provider of (tenant, issuer, client_id) from cache, or its discovery
 * document (issuer + "/.well-known/openid-configuration") and keys fetched
 * now, admitted by the cache and put into it. cb runs exactly once: inside
 * this call on a cache hit or an immediate refusal, else later on lp's
 * loop. */
void pages__provider(gw_loop *lp, auth_oidc_cache *cache, const pages_provider_req *r, pages_provider_cb cb,
                     void *ud);
/* p's keys fetched again (a token named a kid they lack), when the
 * tenant's refetch slot is free (auth_oidc_cache_claim_refetch: once a
 * minute): true and cb runs later with a new provider (p's document, the
 * fresh keys; cached) or the failure; false and cb never runs when the
 * slot is taken or the fetch cannot start. */
bool pages__provider_refetch(gw_loop *lp, auth_oidc_cache *cache, auth_oidc_provider *p, const char *req_id,
                             const char *module, pages_provider_cb cb, void *ud);

#endif
