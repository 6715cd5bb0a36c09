/* gateway/mcp/probe.c — what the gateway learns of a connector's
 * capabilities: at every upstream initialize, and by a capability probe (a
 * clientless flow: initialize, note the capabilities) after an admin PUT.
 *
 * Rules this file keeps: the record is written (in a writer job) only when
 * the capabilities changed, and a vanished connector is not an error; the
 * probe acts as the gateway (no user) and ends the upstream session its
 * initialize opened as soon as it has the answer — with the credential
 * and at the URL that initialize went with (x->opening, usess_end.h: a
 * DELETE racing a second PUT never goes out with the new connector's
 * credential, nor to a server the connector moved away from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/mcp/usess_end.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

/* ---------- upstream capabilities ---------- */

typedef struct caps_job {
  char tenant[64], connector[40];
  json_t *caps;
} caps_job;

static int job_caps(st_txn *txn, void *arg) {
  caps_job *j = arg;
  int rc = vault_connector_set_caps(txn, j->tenant, j->connector, j->caps);
  return rc == ST_ENOTFOUND ? 0 : rc;
}

static void done_caps(int status, void *arg) {
  caps_job *j = arg;
  (void)status;
  json_decref(j->caps);
  free(j);
}

/* What the gateway acts on of an upstream's capabilities (agg.c's
 * initialize and gw__agg_visible, agg_mux.c's feeds): which of these it
 * announced, and their boolean flags. The upstream writes every byte of its
 * answer (up to the reply cap), and the connector record is read by every
 * request routed to the connector: nothing else of it is kept. */
static json_t *caps_kept(const json_t *caps) {
  static const char *const keys[] = {"tools", "prompts", "resources", "completions", "logging", NULL};
  static const char *const flags[] = {"listChanged", "subscribe", NULL};
  json_t *out = json_object();
  for (const char *const *k = keys; out && *k; k++) {
    json_t *v = json_object_get(caps, *k);
    if (!v) continue;
    json_t *o = json_object();
    for (const char *const *f = flags; o && *f; f++)
      if (json_is_boolean(json_object_get(v, *f))) json_object_set(o, *f, json_object_get(v, *f));
    json_object_set_new(out, *k, o);
  }
  return out;
}

/* Keeps what an upstream announced, unless the record already says so. */
void gw__agg_learn_caps(gw_exchange *x, json_t *announced) {
  if (!json_is_object(announced)) return;
  json_t *caps = caps_kept(announced);
  if (!caps) return;
  st_txn *txn;
  json_t *rec = NULL;
  if (st_read_begin(x->lp->srv->store, &txn) == 0) {
    vault_connector_get(txn, x->tenant, x->connector, &rec);
    st_txn_end(txn);
  }
  bool same = rec && json_equal(json_object_get(rec, "capabilities"), caps);
  json_decref(rec);
  caps_job *j = same ? NULL : calloc(1, sizeof *j);
  if (!j) {
    json_decref(caps);
    return;
  }
  snprintf(j->tenant, sizeof j->tenant, "%s", x->tenant);
  snprintf(j->connector, sizeof j->connector, "%s", x->connector);
  j->caps = caps;
  if (gw_loop_submit(x->lp, job_caps, done_caps, j) != 0) done_caps(0, j);
}

static void probe_init_done(gw_exchange *x, int err);

/* A gw_agg_up is all a probe's state. */
static const gw_flow_ops probe_flow = {.name = "probe", .up_headers = gw__agg_up_headers, .up_data = gw__agg_up_data,
                                       .up_done = gw__agg_up_done, .free = free, .clientless = true};

/* Learns a connector's capabilities right after an admin PUT: initialize
 * and note the capabilities. Fire and forget. */
void gw_agg_probe_connector(gw_loop *lp, const char *tenant, const char *connector) {
  /* an oauth connector answers only with an employee's grant: its
   * capabilities are learnt at the first granted initialize instead */
  st_txn *txn;
  if (st_read_begin(lp->srv->store, &txn) == 0) {
    json_t *rec = NULL;
    bool oauth = vault_connector_get(txn, tenant, connector, &rec) == 0 && vault_connector_is_per_user(rec);
    json_decref(rec);
    st_txn_end(txn);
    if (oauth) return;
  }
  gw_exchange *x = gw__mcp_bare(lp, tenant, connector, &probe_flow, calloc(1, sizeof(gw_agg_up)));
  if (!x) return;
  if (!x->state) {
    gw__x_unref(x);
    return;
  }
  json_t *init = json_pack("{s:s,s:s,s:s,s:{s:s,s:{},s:{s:s,s:s}}}", "jsonrpc", "2.0", "id", "mcpgate-init", "method",
                           "initialize", "params", "protocolVersion", GW_AGG_LATEST_VERSION, "capabilities", "clientInfo",
                           "name", "mcpgate", "version", "0.1.0");
  ((gw_agg_up *)x->state)->opening = true; /* what it goes with is kept, to end the session it opens */
  if (gw__agg_step(x, "POST", init, probe_init_done) != 0)
    GW_LOG(GW_LOG_DEBUG, "mcp", NULL, "capability probe of %s not sent", connector);
  gw__x_unref(x);
}

static void probe_init_done(gw_exchange *x, int err) {
  json_t *id = json_string("mcpgate-init");
  json_t *msg = err ? NULL : gw__x_find_reply(x, id);
  json_decref(id);
  json_t *result = json_object_get(msg, "result");
  gw__agg_learn_caps(x, json_object_get(result, "capabilities"));
  /* the probe's upstream session is used for nothing more: ended now, as
   * it was opened (never with a credential a PUT since gave the
   * connector, never at an origin it moved to) */
  const char *ver = json_string_value(json_object_get(result, "protocolVersion"));
  gw__usess_end_opened_id(x, x->up_sid, ver && strlen(ver) < 32 ? ver : "");
  json_decref(msg);
}

/* Makes sure x->sess.upstream is the upstream session of x->connector
 * (opening one if needed), then after(x, err). */
