/* gateway/core/limits.h — abuse limits every front door shares (issue 25):
 *
 *   auth_failures_per_address  failed authentications (a SCIM, admin,
 *                              employee or OAuth bearer that does not
 *                              verify) per client address a minute; past
 *                              it such a request is answered 429 with an
 *                              integer Retry-After instead of 401. A valid
 *                              credential is always served: many clients
 *                              behind one proxy address (Okta's SCIM among
 *                              them) are never locked out by one that keeps
 *                              failing.
 *   mcp_rate_per_user          MCP requests (both endpoints) per user a
 *   mcp_rate_per_tenant        minute, and per tenant: past them 429 with
 *                              Retry-After and a JSON-RPC error. 0: off.
 *   mcp_json_mib_per_user      MiB of JSON tree a user's (a tenant's) MCP
 *   mcp_json_mib_per_tenant    request bodies may make the gateway build a
 *                              minute, estimated from each body before any
 *                              parse (gw_json_tree_cost); a body under a MiB
 *                              of tree costs nothing, one refused unparsed
 *                              (past the 64 MiB estimate) its bytes' MiBs. Found by review: a 2 MB
 *                              body of small values costs the loop ~200 ms to
 *                              parse, and an employee sending them back to
 *                              back kept a loop busy for every tenant.
 *   mcp_concurrent_per_user    MCP requests of one user open at once (GET
 *                              streams, calls in flight, held calls), on
 *                              every loop together: one more is 429. The
 *                              slot is the request's (gw_req.limits_slot)
 *                              and goes back when the request ends
 *                              (gw_limits_request_done, from the host's
 *                              request-done callback). An aggregated GET
 *                              stream also counts the upstream GET streams
 *                              that feed it (gw_limits_mcp_more): one
 *                              client stream can hold one upstream
 *                              connection per connector, and descriptors
 *                              are what one employee must not exhaust;
 *                              an aggregated batch counts each of its
 *                              messages for the same reason.
 *
 *   heavy writes               a policy PUT, an OAuth client's DELETE (a
 *                              scan of the tenant's grants): one per tenant on the store
 *                              writer at a time, GW_HEAVY_WRITES_MAX in the
 *                              process (gw_limits_write_enter).
 *
 *   heavy reads                an audit query or export, the reviewers'
 *                              list, a SCIM scan (and a SCIM body's parse
 *                              past 256 KiB: scim_http.c), an admin's policy view
 *                              or explain, an admin's list of approval
 *                              requests, of tokens or of OAuth clients:
 *                              each runs on libuv's
 *                              thread pool, which the outbound DNS
 *                              lookups share, so one tenant's many reads
 *                              must not hold every pool thread. At most
 *                              GW_HEAVY_PER_TENANT of a tenant's reads of
 *                              one kind open at once, and GW_HEAVY_MAX in
 *                              the process, never more than the pool's
 *                              threads less two (gw_serve makes the pool
 *                              GW_POOL_THREADS threads unless
 *                              UV_THREADPOOL_SIZE is set): past either,
 *                              429 (the tenant's) or 503 (the process's)
 *                              with Retry-After (a SCIM scan waits for a
 *                              slot first: gw_limits_heavy_take). The slot
 *                              is the request's, as for
 *                              mcp_concurrent_per_user.
 *
 *   discoveries                a connector's discovery run for an admin's
 *                              request: one per connector and
 *                              GW_DISCOVER_PER_TENANT per tenant at once
 *                              (gw_limits_discover_enter).
 *
 *   connections_per_address    client connections one address (IPv6: its
 *                              /64) holds at once, every loop together:
 *                              one more is 503 and closed by the HTTP
 *                              layer, before any request is read (a
 *                              slow-header client cannot hold every
 *                              connection from one address). Not counted
 *                              for trusted_proxies (the clients behind a
 *                              proxy share its address). Same table as
 *                              mcp_concurrent_per_user's, keyed "ip ADDR".
 *
 * One slot per request. A request holds at most one concurrency slot
 * (gw_req.limits_slot: a user's MCP slot, a heavy read of one kind, a
 * heavy write, a discovery), one unit of it, until it ends. An enter
 * (gw_limits_mcp_enter, gw_limits_heavy_take/_enter,
 * gw_limits_write_enter, gw_limits_discover_enter) on a request that
 * holds one already passes only when that is the very slot it would take
 * — the same kind, the same tenant, the same user or connector (the same
 * key) — and takes nothing more: SCIM parses a body past 256 KiB in a
 * heavy-read slot and asks for it again for the scan (scim_http.c), an
 * audit query asks twice (admin_audit.c). A slot of anything else is
 * refused exactly as that enter refuses over its limit (429, or
 * GW_DISCOVER_TENANT; Retry-After set and the refusal counted;
 * gw_limits_heavy_take says 429 and changes nothing, so a SCIM waiter
 * waits in vain until its deadline). Fail closed: the check once was
 * "holds any slot: pass", and a route that took one kind and then asked
 * for another went through the second limit unlimited. An enter whose
 * limit is off (mcp_concurrent_per_user 0) takes nothing and passes.
 *
 * Token buckets (gateway/base/ratelimit.h; burst = the per-minute value),
 * one set per process, made by gw_serve. The client address is the one
 * the HTTP layer settled on (X-Forwarded-For only from trusted_proxies);
 * IPv6 by its /64. Threads: any loop. */
#ifndef MCPGATE_GATEWAY_CORE_LIMITS_H
#define MCPGATE_GATEWAY_CORE_LIMITS_H
#include <stdbool.h>
#include <stdint.h>

#include "gateway/base/buf.h"

typedef struct gw_server gw_server;
typedef struct gw_req gw_req;

/* Makes (or frees) the limiters from srv->cfg. 0 or -1 (out of memory). */
int gw_limits_init(gw_server *srv);
void gw_limits_free(gw_server *srv);

/* req's credential did not verify. 0: answer 401 as usual; > 0: its
 * address is over auth_failures_per_address — Retry-After is set, answer
 * 429 (the seconds until another attempt counts). */
int64_t gw_limits_auth_failed(gw_req *req);

/* A client connection from peer (the socket's address, textual) opens:
 * 1 when it was counted against connections_per_address (release it with
 * gw_limits_conn_closed), 0 when it is not counted (a trusted proxy, no
 * address), -1 when the address holds connections_per_address already
 * (or the table cannot grow: refused, fail closed). Any loop. */
int gw_limits_conn_open(gw_server *srv, const char *peer);
void gw_limits_conn_closed(gw_server *srv, const char *peer);

/* One MCP request of (tenant, user): 0, or the seconds until the user's or
 * the tenant's bucket has a token again (Retry-After is set; answer 429).
 * Refused for the tenant, the user's token is given back (and so are a
 * body's MiBs below): the request never ran, and a client retrying while
 * its tenant is out must not spend its own budget on it. */
int64_t gw_limits_mcp(gw_req *req, const char *tenant, const char *user);
/* An MCP request body whose JSON tree would take `mib` whole MiB, charged
 * to its user's and tenant's buckets (mcp_json_mib_per_user/_tenant)
 * before it is parsed: 0, or the seconds until there is room again (then
 * Retry-After is set and the caller answers 429). Any loop. */
int64_t gw_limits_mcp_json(gw_req *req, const char *tenant, const char *user, int64_t mib);
/* An upstream's JSON text the gateway must parse for user (a reply it
 * filters or checks, an event of their GET stream; "" for the gateway's
 * own exchanges) of tenant, whose tree would take `mib` whole MiB:
 * charged as a body's would be (the user's, then the tenant's bucket) —
 * an employee listing a heavy connector over and over spends their own
 * budget before their colleagues'. 0, or the seconds until there is room
 * (nothing taken: the caller leaves the text unparsed). Any loop. */
int64_t gw_limits_mcp_reply_json(gw_server *srv, const char *tenant, const char *user, int64_t mib);

/* Takes a slot of (tenant, user) for req: 0, or > 0 (Retry-After set:
 * answer 429) when the user has mcp_concurrent_per_user open already, or
 * req holds another slot (one per request, above). */
int64_t gw_limits_mcp_enter(gw_req *req, const char *tenant, const char *user);
/* n more units of req's slot (taken by gw_limits_mcp_enter), for the
 * upstream streams the request holds open: true when taken (or when the
 * request has no slot: the limit is off), false when the user would pass
 * mcp_concurrent_per_user (counted as refused; nothing taken; no header
 * set: the caller answers). gw_limits_mcp_less gives n back before the
 * request ends; its end gives back whatever it still holds. Any loop. */
bool gw_limits_mcp_more(gw_req *req, int n);
void gw_limits_mcp_less(gw_req *req, int n);
#define GW_HEAVY_PER_TENANT 2
#define GW_HEAVY_MAX 6
/* libuv's pool: 16 threads, of which libuv gives name lookups (slow I/O
 * work) at most half, the lookup gate's places (gateway/out/h1.c) */
#define GW_POOL_THREADS 16
/* GW_HEAVY_LISTS: an admin's list of approval requests, of tokens or of OAuth clients */
typedef enum { GW_HEAVY_AUDIT, GW_HEAVY_REVIEWERS, GW_HEAVY_SCIM, GW_HEAVY_POLICY, GW_HEAVY_LISTS } gw_heavy_kind;
/* Takes a heavy-read slot of (tenant, kind) for req: 0 (also when req
 * holds that very slot); 429 when the tenant has GW_HEAVY_PER_TENANT of
 * that kind open, or req holds another slot (one per request, above); 503
 * when the process has its most open (GW_HEAVY_MAX, or the pool's size
 * less two when smaller; Retry-After: 1 set in both cases). */
int gw_limits_heavy_enter(gw_req *req, const char *tenant, gw_heavy_kind kind);
/* The same, in two steps for a caller that waits for a slot: take says
 * 0, 429 or 503 and changes nothing when it refuses; refused counts the
 * refusal and sets Retry-After once the caller gives up. */
int gw_limits_heavy_take(gw_req *req, const char *tenant, gw_heavy_kind kind);
void gw_limits_heavy_refused(gw_req *req, int status);

/* A heavy write: a policy PUT (up to 1 MiB of rules resolved and compiled
 * in one job on the store writer, which every tenant's deactivations
 * share, ~0.2 s for 10,000 rules). One per tenant at a time and
 * GW_HEAVY_WRITES_MAX in the process, so another tenant's deactivation
 * waits behind at most that many: 0, else 429 (the tenant has one
 * running, or req holds another slot: one per request, above) or 503 (the
 * process has its most), Retry-After: 1 set and the refusal counted. The
 * slot is the request's, as for the others. */
#define GW_HEAVY_WRITES_MAX 2
int gw_limits_write_enter(gw_req *req, const char *tenant);

/* A connector discovery that an admin's request runs (a PUT with auth
 * {"type":"oauth","discover":true}, POST …/rediscover): fetches at
 * servers the tenant admin chose, and often a new client registered
 * there (RFC 7591) — so a script's hundreds at once would register
 * hundreds of clients and hold as many outbound transfers. One per
 * connector at a time and GW_DISCOVER_PER_TENANT per tenant, on every
 * loop together: 0, else GW_DISCOVER_CONNECTOR (that connector has one
 * running) or GW_DISCOVER_TENANT (the tenant has its most, or no memory
 * to count, or req holds another slot — one per request, above: fail
 * closed), Retry-After set (GW_DISCOVER_RETRY_S) and the
 * refusal counted; the caller answers 429. The slot is the request's, as
 * for the others (the schedule's own readings hold none: one at a time in
 * the process). */
#define GW_DISCOVER_PER_TENANT 4
#define GW_DISCOVER_RETRY_S 5
#define GW_DISCOVER_CONNECTOR 1
#define GW_DISCOVER_TENANT 2
int gw_limits_discover_enter(gw_req *req, const char *tenant, const char *connector);

/* A SCIM request with a body (POST, PUT, PATCH), at its headers: the body
 * is buffered whole (up to scim_max_body, 32 MiB by default) for as long
 * as body_timeout_ms before anything else bounds it, so a tenant's SCIM
 * token on many connections held as much memory as it liked (found by
 * review: 80 connections, 2.3 GiB, every tenant's gateway at risk). A
 * tenant may have GW_SCIM_BODIES_PER_TENANT such bodies coming in at once,
 * of which GW_SCIM_LARGE_BODIES_PER_TENANT large ones (`large`: a
 * Content-Length past 256 KiB, or none: chunked), each count its own
 * slot: 0, else 429 (Retry-After: 1 set, which Okta honours, and the
 * refusal counted). Per tenant only: one tenant holding its slots with
 * slow bodies keeps no other tenant's requests out. The slot is the
 * request's (one per request, above); the SCIM handler gives it back
 * (gw_limits_release) once the body is in, before the parse of a large
 * one takes a heavy-read slot. */
#define GW_SCIM_BODIES_PER_TENANT 16
#define GW_SCIM_LARGE_BODIES_PER_TENANT 2
int gw_limits_scim_body_enter(gw_req *req, const char *tenant, bool large);

/* The request ended: its slot (if any) goes back. Any loop. */
void gw_limits_request_done(gw_server *srv, gw_req *req);
/* req's slot (if any) goes back now; the request goes on without one. */
void gw_limits_release(gw_req *req);

/* Prometheus text: requests refused by each limit. */
void gw_limits_metrics(gw_server *srv, gw_buf *out);

#endif
