/* gateway/mcp/decide.h — the one tools/call decision of the MCP proxy
 * (private to gateway/mcp/): both endpoints ask here whether a call may go
 * upstream, and a refused call is answered here. The approval workflow
 * adds its held flow at POL_APPROVE. */
#ifndef MCPGATE_GATEWAY_MCP_DECIDE_H
#define MCPGATE_GATEWAY_MCP_DECIDE_H
#include "gateway/mcp/exchange.h"
#include "policy/policy.h"

/* The decision for tool (NULL: a call without a name, blocked) of
 * connector under pu. */
pol_decision gw__decide_call(const pol_user *pu, const char *connector, const char *tool);
/* Of two decisions, the one that refuses more (POL_ALLOW < ... by
 * pol_decision's order of precedence). */
pol_decision gw__decide_worse(pol_decision a, pol_decision b);
/* Answers x for a refused call (POL_BLOCK or POL_APPROVE) and logs it:
 * `tool` as the client named it; `connector` NULL when that name already
 * says it (the aggregated endpoint's connector__tool). */
void gw__decide_refuse(gw_exchange *x, const pol_user *pu, pol_decision d, const char *tool, const char *connector);

/* ---- a call held for approval (held.c) ---- */
/* Holds x, a tools/call pol_decide answered POL_APPROVE for (alone, not in
 * a batch): body/len the client's message (its arguments and progress
 * token are read from it); forward(x) sends the call upstream once a grant
 * is taken. false when it cannot hold (no request of its own — a batch's
 * element — or no approval rule: the caller refuses as before); true: x is
 * answered (held, forwarded under an earlier approval, or refused, saying
 * why: a name too long to be a grant's key, memory, the masking unread). */
bool gw__held_start(gw_exchange *x, const pol_user *pu, const char *connector, const char *tool, const char *body,
                    size_t len, void (*forward)(gw_exchange *x));
/* A fan-out message (gw_revocation.approval) on this loop: the call held
 * for that request gets its outcome. */
struct gw_revocation;
void gw__held_decided(gw_loop *lp, const struct gw_revocation *q);
/* exchange.c's hooks: the client half ended; x freed; whether the client's
 * answer is the held stream (the final answer is one SSE event). */
void gw__held_client_gone(gw_exchange *x);
/* notifications/cancelled (msg) on session sid: true when it ended a call
 * held on this loop; otherwise the other loops are asked (fan-out) and
 * false (the notification goes on as before). _local: this loop only. */
bool gw__held_cancel(gw_loop *lp, const char *tenant, const char *sid, json_t *msg);
bool gw__held_cancel_local(gw_loop *lp, const char *sid, const json_t *rid);
/* The recheck after a policy or membership change (revoke.c), in two
 * passes: mark (inside the read txn; pu the user's policy in force, NULL:
 * unreadable) notes whether x's held call is now blocked (or its
 * connector hidden: fail closed); blocked (after it) answers such a call
 * -32003 as a blocked call is, submits the cancellation of its request
 * (policy/approval.h's ap_cancel_if_blocked) and returns true. waiting:
 * x is a held call whose client waits for the decision. */
bool gw__held_waiting(const gw_exchange *x);
void gw__held_mark(gw_exchange *x, const pol_user *pu);
bool gw__held_blocked(gw_exchange *x);
/* x's session was ended by its client (DELETE; revoke.c): a waiting held
 * call is told its request was cancelled with it (the DELETE's own
 * transaction cancelled it, policy/approval.h's ap_session_gone) and true;
 * false when x is not waiting. */
bool gw__held_session_ended(gw_exchange *x);
/* x's session expired (expired) or is gone (evicted, purged: revoke.c's
 * sweep found it so): a waiting held call is answered -32010 naming the
 * session's end and its session's pending requests are cancelled (a
 * writer job; the write that evicted or purged it did already, and its
 * decision is told first when it did) — true; false when x is not
 * waiting (the caller ends it as any exchange). */
bool gw__held_session_lost(gw_exchange *x, bool expired);
/* Shutdown: a waiting held call is told the request stays pending. */
bool gw__held_drain(gw_exchange *x);
/* The requester's token expired while x waited for its approval: x is
 * answered on its held stream (GW_RPC_TOKEN_EXPIRED; the request stays
 * pending, an approval becomes the retry's grant) and true; false when x
 * is not waiting (the caller ends it as any exchange). */
bool gw__held_expired(gw_exchange *x);
void gw__held_free(gw_exchange *x);
bool gw__held_stream(const gw_exchange *x);

/* ---- the approval webhook (ap_notify.c) ---- */
/* Outcomes of mcpgate_approvals_decided_total, and the buckets (seconds)
 * of mcpgate_approval_decision_seconds. */
enum { GW_AP_OUT_APPROVED, GW_AP_OUT_DENIED, GW_AP_OUT_CANCELLED, GW_AP_OUT_TIMED_OUT };
#define GW_AP_NBUCKETS 8
extern const double gw_ap_bucket_le[GW_AP_NBUCKETS];
struct gw_proxy;
typedef struct gw_ap_notify gw_ap_notify;
/* The loop's notifier: made after the loop's outbound engine, stopped
 * before it closes. */
int gw__ap_notify_start(struct gw_proxy *p);
void gw__ap_notify_stop(struct gw_proxy *p);
/* Queues one POST of {"text": text} to url (both copied) for approval
 * request id of tenant's user; returns at once (dropped and counted when
 * the loop's queue is full, or the requester has their share waiting). */
void gw__ap_notify_send(gw_loop *lp, const char *tenant, const char *tenant_uid, const char *user, const char *id,
                        const char *url, const char *text);

/* ---- the call's audit record (audit_call.c) ---- */
/* Begins x's record of a tools/call: its decision ("allow", "block",
 * "approve", "hidden") under policy_version (-1: none), and its arguments
 * (args, or the raw JSON text args_raw/args_len; both NULL: none).
 * Nothing when the audit log is off. A record already on x (a batch) is
 * kept, and completed with the batch's upstream answer when x ends. */
void gw__audit_call_begin(gw_exchange *x, const char *connector, const char *tool, const char *decision,
                          int policy_version, const json_t *args, const char *args_raw, size_t args_len);
/* n upstream bytes relayed for x (counted; a tool error noticed). buf:
 * where the relay keeps them — the answer so far (a buffered reply), or
 * its bytes since the last complete SSE event (a relayed stream) — ending
 * with them, from offset at; NULL when they could not be kept (the answer
 * is cut anyway). */
void gw__audit_call_seen(gw_exchange *x, size_t n, const gw_buf *buf, size_t at);
/* Submits x's record(s) with the upstream's status, duration and bytes (the
 * exchange's end calls it). */
void gw__audit_call_end(gw_exchange *x);
/* x's open record (a call sent alone, or one element of the aggregated
 * endpoint's batch) now says decision (a pol_decision_name): the call,
 * decided again before it went upstream, is refused after all. */
void gw__audit_call_redecide(gw_exchange *x, const char *decision);
/* true (and x answered 503 / JSON-RPC -32603) when the call must be
 * refused because the audit log cannot record it (audit_on_failure deny);
 * x's open records (a batch's too) then say decision "unaudited". */
bool gw__audit_refuse(gw_exchange *x);
/* x's tenant's audit_redact setting into buf (cap > AUDIT_REDACT_VALUE_MAX;
 * "" when unset). 0, or a store error (nothing is known). */
int gw__audit_tenant_redact(gw_exchange *x, char *buf, size_t cap);

#endif
