/* gateway/api/admin_directory.c — /admin/v1/tenants/{t}/users[/{id}] and
 * /groups[/{id}]: read-only views of what SCIM provisioned, rendered by
 * scim/ exactly as its own endpoint would. */
#include "gateway/api/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "scim/scim.h"
#include "store/dir.h"

/* GET /admin/v1/tenants/{t}/users[/{id}] and /groups[/{id}]: what SCIM
 * provisioned, as SCIM renders it (users with their groups; lists paged
 * with startIndex/count and filtered with a SCIM filter). One user also
 * carries "blocked": the admin's revoke in force ({at, by, reason}) or
 * null (admin_users.c). */
void admin__directory(gw_req *req, const admin_caller *who, const char *tenant, const char *what,
                           const char *id) {
  gw_server *srv = req->lp->srv;
  if (admin__reach(req, who, tenant)) return;
  snprintf(req->tenant, sizeof req->tenant, "%s", tenant);
  if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
    gw_resp_header(req, "Allow", "GET");
    gw_respond_error(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    return;
  }
  st_txn *txn;
  if (admin__read_tenant(req, tenant, &txn) != 0) return;
  char path[128], *base = admin__scim_base_url(srv, tenant);
  snprintf(path, sizeof path, "/%s%s%.64s", what[0] == 'u' ? "Users" : "Groups", id ? "/" : "", id ? id : "");
  scim_req rq = {0};
  rq.tenant = tenant;
  rq.method = "GET";
  rq.path = path;
  rq.query = req->query;
  rq.base_url = base ? base : "";
  rq.max_count = (size_t)srv->cfg.scim_max_count;
  scim_resp rs = {0};
  scim_handle(txn, &rq, &rs);
  /* one user: an admin's block shows beside what SCIM provisioned */
  json_t *block = NULL;
  if (id && what[0] == 'u' && rs.status == 200)
    st_dir_user_block_get(txn, tenant, json_string_value(json_object_get(rs.body, "id")), &block);
  st_txn_end(txn);
  free(base);
  if (rs.status >= 400) {
    const char *detail = json_string_value(json_object_get(rs.body, "detail"));
    const char *type = json_string_value(json_object_get(rs.body, "scimType"));
    gw_respond_error(req, rs.status, rs.status == 404 ? "not_found" : type ? type : "invalid_request", "%s",
                     detail ? detail : "request failed");
  } else {
    json_t *out = json_incref(rs.body);
    if (id && what[0] == 'u') json_object_set_new(out, "blocked", block ? block : json_null());
    else json_decref(block);
    gw_respond_json(req, rs.status, out);
  }
  scim_resp_clear(&rs);
}

