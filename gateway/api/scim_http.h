/* gateway/api/scim_http.h — the SCIM routes (/t/{tenant}/scim/v2/…) and SCIM
 * metrics; the protocol itself lives in scim/. */
#ifndef MCPGATE_GATEWAY_SCIM_HTTP_H
#define MCPGATE_GATEWAY_SCIM_HTTP_H
#include "gateway/base/buf.h"
#include "gateway/http/http.h"

typedef struct gw_server gw_server;
typedef struct gw_scim_state gw_scim_state;

/* Registers the SCIM event hooks and checks; call after st_open and before
 * the first write job. Owned by srv; freed by gw_scim_free after st_close. */
int gw_scim_init(gw_server *srv);
void gw_scim_free(gw_server *srv);
void gw_scim_dispatch(gw_req *req);
/* Route preauth (gateway/http/router.h): the tenant's SCIM token, before the
 * body is read (401, or 404 for a malformed tenant id, as the handler). */
int gw_scim_preauth(gw_req *req);
void gw_scim_early_error(gw_req *req, int status, const char *msg);
void gw_scim_metrics(gw_server *srv, gw_buf *out);

/* The module table's entry (gateway/core/module.h): hooks and checks, the
 * SCIM route, SCIM metrics. */
extern const struct gw_module gw_mod_scim;

#endif
