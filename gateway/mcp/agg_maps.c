/* gateway/mcp/agg_maps.c — the aggregated endpoint's per-session state in
 * memory (see agg.h): resource routes (URI or template prefix → connector)
 * and outstanding server→client requests, and the id rewriting that feeds
 * the latter.
 *
 * Rules this file keeps, and why: every map is capped — SESSIONS_MAX
 * sessions per map (the oldest goes), ASKED_PER_SESSION questions per
 * session (one session's upstream cannot push out another's), and
 * agg_uri_map_max URIs per session (logged once) — and each session's entry
 * records its owner so it goes with the session: at DELETE, when its user
 * or tenant is revoked, and in the sweep of evicted or expired sessions.
 * The first connector in name order wins a URI offered twice (logged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/base/log.h"
#include "gateway/mcp/agg.h"
#include "gateway/mcp/relay.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/upcall.h"
#include "gateway/out/outbound.h"
#include "vault/vault.h"

/* Per-session state in memory, in two maps keyed by the gateway session
 * id (p->agg_uris: resource routes; p->asked: outstanding server→client
 * requests). Each session's object records its owner under "!o"
 * ("tenant\nuser") so revocations free it; the sweep on the session purge
 * timer frees those of sessions evicted or expired. At most SESSIONS_MAX
 * sessions per map (the oldest goes). */
#define SESSIONS_MAX 10000
#define ASKED_PER_SESSION 64

static json_t *session_obj(json_t **map, const gw_exchange *x, bool create) {
  if (!*map) {
    if (!create || !(*map = json_object())) return NULL;
  }
  json_t *m = json_object_get(*map, x->sid);
  if (m || !create) return m;
  if (json_object_size(*map) >= SESSIONS_MAX) {
    void *it = json_object_iter(*map);
    if (it) json_object_del(*map, json_object_iter_key(it));
  }
  char owner[120];
  snprintf(owner, sizeof owner, "%s\n%s", x->tenant, x->user);
  m = json_pack("{s:s}", "!o", owner);
  if (m) json_object_set_new(*map, x->sid, m);
  return m;
}

/* Resource URIs (and template prefixes) seen in lists and results, per
 * client session: resources keep their URIs, so reads route by this map.
 * The first connector in name order wins a collision (logged). */


void gw__agg_uri_note(gw_exchange *x, const char *uri, bool is_template) {
  if (!uri || !*uri || !x->connector[0]) return;
  json_t *m = session_obj(&gw__mcp_of(x->lp)->agg_uris, x, true);
  if (!m) return;
  if (json_object_size(m) >= (size_t)x->lp->srv->cfg.agg_uri_map_max) {
    if (!json_object_get(m, "!full")) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
             "a client session noted agg_uri_map_max resource URIs; further ones are not routed by name");
      json_object_set_new(m, "!full", json_true());
    }
    return;
  }
  char key[2100];
  if (is_template) {
    /* a template routes every URI that starts with its literal prefix */
    size_t n = strcspn(uri, "{");
    snprintf(key, sizeof key, "T%.*s", (int)(n < 2000 ? n : 2000), uri);
  } else {
    snprintf(key, sizeof key, "U%.2000s", uri);
  }
  const char *have = json_string_value(json_object_get(m, key));
  if (have && strcmp(have, x->connector)) {
    if (strcmp(have, x->connector) < 0) {
      GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
             "resource %.200s is offered by connectors %s and %s; %s serves it", uri, have, x->connector, have);
      return;
    }
    GW_LOG(GW_LOG_WARN, "mcp", &((gw_log_ctx){x->tenant, NULL}),
           "resource %.200s is offered by connectors %s and %s; %s serves it", uri, have, x->connector, x->connector);
  }
  json_object_set_new(m, key, json_string(x->connector));
}

/* The connector serving uri in this client session, or NULL. */
const char *gw__agg_uri_route(gw_exchange *x, const char *uri) {
  json_t *m = gw__mcp_of(x->lp)->agg_uris ? json_object_get(gw__mcp_of(x->lp)->agg_uris, x->sid) : NULL;
  char key[2100];
  snprintf(key, sizeof key, "U%.2000s", uri);
  const char *c = json_string_value(json_object_get(m, key));
  if (c) return c;
  const char *k;
  json_t *v;
  size_t best = 0;
  json_object_foreach(m, k, v) {
    size_t n = strlen(k + 1);
    if (k[0] == 'T' && n >= best && !strncmp(uri, k + 1, n)) {
      best = n;
      c = json_string_value(v);
    }
  }
  return c;
}

/* URIs inside results (resource_link / embedded resources) join the map. */
static void note_result_uris(gw_exchange *x, const json_t *result) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(result, "content"), i, e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type) continue;
    if (!strcmp(type, "resource_link")) gw__agg_uri_note(x, json_string_value(json_object_get(e, "uri")), false);
    else if (!strcmp(type, "resource"))
      gw__agg_uri_note(x, json_string_value(json_object_get(json_object_get(e, "resource"), "uri")), false);
  }
}

/* Outstanding server→client requests: noted when relayed, taken once by
 * the client's answer. Past ASKED_PER_SESSION the session's oldest is
 * forgotten (its late answer is dropped, as an unknown one is): one
 * session's upstream cannot push out another session's questions. */
static void asked_note(gw_exchange *x, const char *enc) {
  if (!x->sid[0]) return;
  json_t *m = session_obj(&gw__mcp_of(x->lp)->asked, x, true);
  if (!m) return;
  if (json_object_size(m) > ASKED_PER_SESSION) {
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) if (k[0] != '!') {
      json_object_del(m, k);
      break;
    }
  }
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", x->connector, enc);
  json_object_set_new(m, key, json_true());
}

bool gw__agg_asked_take(gw_exchange *x, const char *connector, const char *enc) {
  json_t *m = session_obj(&gw__mcp_of(x->lp)->asked, x, false);
  char key[600];
  snprintf(key, sizeof key, "%s\n%s", connector, enc);
  return m && json_object_del(m, key) == 0;
}

void gw__agg_forget_session(gw_proxy *p, const char *sid) {
  if (p->asked) json_object_del(p->asked, sid);
  if (p->agg_uris) json_object_del(p->agg_uris, sid);
}

static bool owned_by(json_t *m, const char *tenant, const char *user) {
  const char *o = json_string_value(json_object_get(m, "!o"));
  size_t tl = strlen(tenant);
  if (!o || strncmp(o, tenant, tl) || o[tl] != '\n') return false;
  return !user || !strcmp(o + tl + 1, user);
}

static void forget_in(json_t *map, const char *tenant, const char *user) {
  const char *sid;
  json_t *m;
  void *tmp;
  if (map) json_object_foreach_safe(map, tmp, sid, m) if (owned_by(m, tenant, user)) json_object_del(map, sid);
}

void gw__agg_forget_owner(gw_proxy *p, const char *tenant, const char *user) {
  if (!tenant) {
    json_decref(p->asked);
    json_decref(p->agg_uris);
    p->asked = p->agg_uris = NULL;
    return;
  }
  forget_in(p->asked, tenant, user);
  forget_in(p->agg_uris, tenant, user);
}

static void sweep_in(json_t *map, st_txn *txn, int64_t now_ms, const gw_session_limits *lim) {
  const char *sid;
  json_t *m;
  void *tmp;
  gw_session s;
  if (map)
    json_object_foreach_safe(map, tmp, sid, m) if (gw_session_get(txn, sid, &s) != 0 || gw_session_expired(&s, now_ms, lim))
        json_object_del(map, sid);
}

void gw__agg_sweep(gw_proxy *p, st_txn *txn, int64_t now_ms) {
  sweep_in(p->asked, txn, now_ms, &p->lp->srv->sess_limits);
  sweep_in(p->agg_uris, txn, now_ms, &p->lp->srv->sess_limits);
}

bool gw__agg_rewrite(gw_exchange *x, json_t *msg) {
  if (json_is_object(msg) && json_is_object(json_object_get(msg, "result")))
    note_result_uris(x, json_object_get(msg, "result"));
  if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) return false;
  json_t *id = json_object_get(msg, "id");
  if (!id) return false; /* a notification: relayed as is */
  char *enc = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!enc) return false;
  char buf[600];
  snprintf(buf, sizeof buf, GW_AGG_ID_PREFIX "%s:%s", x->connector, enc);
  if (strlen(enc) < 500) asked_note(x, enc); /* longer: its answer could not route back anyway */
  free(enc);
  json_object_set_new(msg, "id", json_string(buf));
  return true;
}

