/* gateway/api/oauth_int.h — private to the gateway's OAuth authorization
 * server for MCP clients (issue 17) and the admin API's view of its
 * clients. Files:
 *   oauth.c          the module entry (routes, state, metrics) and the
 *                    discovery documents: protected resource metadata
 *                    (RFC 9728) and authorization server metadata (RFC 8414)
 *   oauth_register.c dynamic client registration (RFC 7591)
 *   oauth_cimd.c     the client lookup: stored registrations, pinned
 *                    documents, and Client ID Metadata Documents fetched
 *                    from their https client_id and cached
 *   admin_oauth.c    /admin/v1/tenants/{t}/oauth-clients (pinned documents,
 *                    the list, the resolve diagnostic)
 * The records are auth/oauth_client.h's; this layer parses, fetches and
 * answers. */
#ifndef MCPGATE_GATEWAY_API_OAUTH_INT_H
#define MCPGATE_GATEWAY_API_OAUTH_INT_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/base/ratelimit.h"
#include "gateway/core/server.h"
#include "gateway/http/http.h"

/* Outcomes counted for /metrics. */
enum { OAUTH_REG_CREATED, OAUTH_REG_REFUSED, OAUTH_REG_FULL, OAUTH_REG_N };
enum { OAUTH_CIMD_OK, OAUTH_CIMD_REFUSED, OAUTH_CIMD_FAILED, OAUTH_CIMD_N };

/* At most this many client metadata documents are being fetched at once
 * (the whole process): a burst of authorization requests naming new
 * documents gets 503 beyond it instead of as many outbound transfers. */
#define OAUTH_CIMD_INFLIGHT_MAX 64
/* ... of which one tenant's hold at most this many: the URLs are anyone's
 * to choose (an unauthenticated authorization request names one) and a
 * fetch of a server that never answers holds its slot for up to
 * OAUTH_CIMD_TOTAL_MS, so without a share a flood at one tenant answered
 * every other tenant's first-time clients 503 for as long as it went on.
 * Past it the tenant's lookup is 503; the other tenants keep
 * OAUTH_CIMD_INFLIGHT_MAX - OAUTH_CIMD_TENANT_MAX slots at least. */
#define OAUTH_CIMD_TENANT_MAX 8
/* ... and at most this many once half the slots are taken: found by review,
 * four tenants' eight each took every slot of the 32 there were. Now it
 * takes 4 tenants to fill half, and 16 more to fill the rest. */
#define OAUTH_CIMD_TENANT_LATE 2
/* One client address (IPv6: its /64, the address the HTTP layer settled
 * on) has at most this many fetches in flight, whatever the tenants: the
 * same review held all 32 slots from four addresses. */
#define OAUTH_CIMD_ADDRESS_MAX 2
/* A fetch that has not delivered the whole document within this long is
 * cut (the per-phase timeouts are 5 s each; a server trickling bytes must
 * not hold a transfer for longer than this). */
#define OAUTH_CIMD_TOTAL_MS 10000
/* Records a registration or a CIMD cache write looks at for idle expiry
 * (auth_oauth_clients_sweep). */
#define OAUTH_SWEEP_SCAN 32

/* Process-wide state (srv->oauth): counters (relaxed atomics: any loop
 * adds, /metrics reads) and the fetches in flight, in all and by tenant
 * and by client address (under cimd_mu: any loop starts and ends
 * fetches; at most OAUTH_CIMD_INFLIGHT_MAX tenants or addresses hold one,
 * so that many entries do). */
typedef struct gw_oauth_held {
  char key[GW_RATELIMIT_KEY_MAX + 1]; /* a tenant id or an address key; "" when free */
  int n;
} gw_oauth_held;

typedef struct gw_oauth {
  uv_mutex_t cimd_mu;
  int cimd_inflight;
  gw_oauth_held cimd_held[OAUTH_CIMD_INFLIGHT_MAX]; /* by tenant */
  gw_oauth_held cimd_addr[OAUTH_CIMD_INFLIGHT_MAX]; /* by client address */
  _Atomic uint64_t registrations[OAUTH_REG_N];
  _Atomic uint64_t cimd_fetches[OAUTH_CIMD_N];
} gw_oauth;

/* ---- helpers (oauth.c) */

/* An OAuth error answer: {"error": code, "error_description": text}
 * (RFC 6749 §5.2, RFC 7591 §3.2.2), Cache-Control: no-store. */
void oauth__error(gw_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Unix seconds now; t as RFC 3339 UTC. */
int64_t oauth__now(void);
void oauth__rfc3339(int64_t t, char out[32]);
/* A user's OAuth grants as the employee page and the admin API show them:
 * [{id, client_id, client_name, resource, created, last_used}] with RFC 3339
 * times (a new array), or NULL on a store error or allocation failure. */
json_t *oauth__grants_view(st_txn *txn, const char *tenant, const char *user_id);
/* p at "/t/{tenant}[/…]": copies a valid tenant id into tenant[64] and
 * returns what follows it ("" or "/…"); NULL when malformed. */
const char *oauth__split_tenant(const char *p, char tenant[64]);

/* ---- dynamic client registration (oauth_register.c) */
void oauth__register(gw_req *req);
void oauth__register_early_error(gw_req *req, int status, const char *msg);

/* ---- the client lookup (oauth_cimd.c) ------------------------------------
 *
 * What the authorization endpoint (and the admin API's resolve) sees for a
 * client_id of tenant:
 *   - an https client_id (auth_oauth_cimd_url_ok): an admin's block of
 *     that URL refuses it (403, never fetched); a pinned document of that
 *     URL wins; else a cached document fetched less than cimd_cache_ms ago;
 *     else the document is fetched from the URL — outbound engine, egress
 *     level GW_OUT_EGRESS_UNTRUSTED (public addresses only unless
 *     egress_allow_untrusted lists more), GET with Accept: application/json,
 *     TLS verified (cimd_ca_file when set), connect, first-byte and idle
 *     timeouts 5 s and OAUTH_CIMD_TOTAL_MS in all, no redirects (a 3xx is a
 *     failure), status 200 only, at most AUTH_OAUTH_METADATA_MAX bytes,
 *     parsed strictly (duplicate keys, NUL bytes refused) and checked by
 *     auth_oauth_client_validate against the URL — then cached (a writer
 *     job; kind "cimd"; a pinned record written meanwhile still wins) and
 *     returned. A failed fetch is not cached and a stale document is never
 *     used in its place.
 *   - any other client_id: the stored registration (kind "dcr"; unknown once
 *     unused for dcr_client_idle_ms, whether or not the sweep deleted it
 *     yet), or a pinned record; else unknown.
 * The lookup records no use: the caller records one with
 * auth_oauth_client_touch (at most once a minute) when a client is used,
 * which keeps a registration from expiring.
 *
 * cb runs exactly once, on req's loop, never from inside the call (always a
 * later turn of the loop), with:
 *   client  the record, owned by the callee (json_decref it): {client_id,
 *           kind, client_name?, client_uri?, logo_uri?, redirect_uris,
 *           created, last_used, fetched?} — NULL on failure;
 *   status  200 on success; else 403 (a document URL the tenant's admin
 *           blocked), 400 (unknown client, not a usable client_id, expired registration, document refused, address
 *           refused by the egress policy), 404 (no such tenant), 502 (the
 *           fetch failed: connection, TLS, timeout, HTTP status, redirect),
 *           503 (store unreadable, too many fetches at once — in all, or of
 *           this tenant: OAUTH_CIMD_TENANT_MAX — try again);
 *   error   an OAuth error code: NULL on success, "invalid_client" (400,
 *           403, 502), "not_found" (404), "temporarily_unavailable" (503);
 *   why     on failure one sentence a human can act on ("unknown client",
 *           "fetch failed: …", "document refused: …"), never quoting the
 *           document; on success where the record came from: "registered",
 *           "pinned", "cached" or "fetched". Valid during the call only.
 * req must stay unanswered until cb (cb answers it, or passes it on); the
 * lookup itself never responds. tenant is checked (active) here too. */
typedef void (*gw_oauth_client_cb)(gw_req *req, json_t *client, int status, const char *error, const char *why,
                                   void *arg);
void gw_oauth_client_lookup(gw_req *req, const char *tenant, const char *client_id, gw_oauth_client_cb cb,
                            void *arg);

#endif
