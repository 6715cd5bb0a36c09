/* gateway/mcp/usess_end.h — upstream sessions the gateway stops using,
 * ended at their server (private to gateway/mcp/; usess_end.c says the
 * rules).
 *
 * MCP Streamable HTTP: a client that no longer needs a session sends an
 * HTTP DELETE carrying its Mcp-Session-Id. The gateway stops using an
 * upstream session when the server or the credential it was opened with is
 * no longer the connector's (an admin's move, rekey or delete; a person's
 * new key, reconnect or disconnect); when an upstream session it just
 * opened is refused by the write that would store it (agg_up.c's
 * job_usess, endpoint.c's job_session_create) or is the capability probe's;
 * and when it deletes the session holding it on its own (a user cut, a
 * connector hidden by policy, the per-user cap, expiry, a tenant's purge).
 * Those sessions are ended here, each with the credential that opened it
 * and at the URL that credential was given for — never another. */
#ifndef MCPGATE_GATEWAY_MCP_USESS_END_H
#define MCPGATE_GATEWAY_MCP_USESS_END_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/core/server.h"
#include "gateway/mcp/exchange.h"
#include "vault/vault.h"

/* DELETEs one trigger queues at most (the rest are left to expire at the
 * upstream, counted as dropped); a loop holds at most GW_USESS_END_QUEUE
 * not yet started. */
#define GW_USESS_END_MAX 10000
#define GW_USESS_END_QUEUE 20000

/* A batch: DELETEs to one connector's server as the sessions were opened
 * there. Owned by whoever holds it until gw__usess_end_send/_post takes it;
 * its URL and credentials are copies, wiped when it is freed. */
typedef struct gw_usess_end gw_usess_end;

/* A new batch for the real URL `url` (copied) with the CA file and
 * timeouts of connector record rec (read now). NULL: no memory. */
gw_usess_end *gw__usess_end_new(const char *tenant, const char *connector, const char *url, const json_t *rec);
/* Adds credential c (its line copied; no name or value: none sent) and
 * returns its index, or -1 without memory. */
int gw__usess_end_cred(gw_usess_end *b, const vault_cred *c);
/* Adds a DELETE of upstream session `upstream` (protocol version, may be
 * "") with credential `cred` (an index from gw__usess_end_cred). false past
 * GW_USESS_END_MAX or without memory: not added, counted as dropped. */
bool gw__usess_end_add(gw_usess_end *b, const char *upstream, const char *version, int cred);
/* The DELETEs added to b so far. */
size_t gw__usess_end_count(const gw_usess_end *b);
/* The batch after b in a loop's list (mcp_loop.c frees what is left). */
gw_usess_end *gw__usess_end_next(const gw_usess_end *b);
/* Wipes and frees b (NULL: nothing). */
void gw__usess_end_free(gw_usess_end *b);
/* Loop thread: lp sends b's DELETEs (b taken), a few at a time. */
void gw__usess_end_send(gw_loop *lp, gw_usess_end *b);
/* Any thread (the writer's after-commit): b (taken) goes to a loop, which
 * sends it (gw__usess_end_take, from its fan-out drain). */
void gw__usess_end_post(gw_server *srv, gw_usess_end *b);
/* The loop's share of what gw__usess_end_post queued: sent (fan-out drain,
 * revoke.c). */
void gw__usess_end_take(gw_loop *lp);

/* The session-opening transfer of x (upcall.c, for an exchange that asks
 * it: gw_upcall.keep_opener) keeps what the session it opens was opened
 * with — the real URL, the connector's CA file and timeouts, the
 * credential — in x->opening (wiped when x goes), until the session is
 * stored or ended. */
void gw__usess_keep_opener(gw_exchange *x, const char *url, const json_t *rec, const vault_cred *c);
/* The session x opened (x->sess.upstream, with x->opening) will not be
 * its client session's (the write storing it refused it, or it could not
 * be completed): ended with a DELETE as it was opened — unless the
 * connector now lives at another origin. Forgets x->opening either way. */
void gw__usess_end_opened(gw_exchange *x);
/* The same for upstream session `upstream` (protocol version `version`,
 * may be "") that x's opening transfer opened without it becoming
 * x->sess.upstream: the connector endpoint's initialize, the capability
 * probe. NULL or "" upstream: x->opening is forgotten. */
void gw__usess_end_opened_id(gw_exchange *x, const char *upstream, const char *version);
/* It was stored: x->opening is forgotten. */
void gw__usess_forget_opener(gw_exchange *x);

/* Per loop (mcp_loop.c): the sender. Stop before the outbound engine
 * closes (its DELETEs end with it). */
int gw__usess_ender_start(gw_loop *lp);
void gw__usess_ender_stop(gw_loop *lp);
/* The store hook (ST_EVENT_CREDENTIAL_ENDING; revoke.c registers it). */
int gw__usess_on_ending(st_txn *txn, int kind, const void *event, void *ctx);

/* What a write deletes with the sessions it deletes (usess_end.c rules 7
 * and 8): a user cut, a connector a policy hides, the per-user cap, the
 * expiry purge, a tenant's purge. The collector lives for one run of one
 * write job (or hook) on the writer thread: gw__usess_col_add is a
 * gw_session_gone_fn (mcp_session.h) that reads, in the deleting txn, the
 * connector's record, real URL and the credential — the shared one, or
 * the session's person's own — once per connector (and person), and adds
 * the DELETE to that connector's batch; gw__usess_col_done hands the
 * batches to a loop after the commit (a rolled back run discards them).
 * Nothing in it fails the write: what cannot be read or held is counted
 * as dropped. At most GW_USESS_END_MAX DELETEs and GW_USESS_END_READS
 * credential reads per collector, and per change the ending hook collects. */
#define GW_USESS_END_READS 1024
typedef struct gw_usess_col gw_usess_col;
/* NULL without srv (the CLI: no loop to send from) or memory: collect
 * nothing (gw__usess_col_add and _done take NULL). */
gw_usess_col *gw__usess_col_new(gw_server *srv);
void gw__usess_col_add(void *col, st_txn *txn, const char *tenant, const char *user, const char *connector,
                       const char *upstream, const char *version);
/* Registers the after-commit send in txn and gives c to it (freed on a
 * rollback, or now when nothing was collected or it cannot register). */
void gw__usess_col_done(gw_usess_col *c, st_txn *txn);

#endif
