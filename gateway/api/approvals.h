/* gateway/api/approvals.h — the reviewers' side of approvals (issue 23):
 * POST /t/{t}/approvals/{id}/approve|deny and GET /t/{t}/approvals/{id},
 * done as oneself — with one's own employee token, or the reviewers'
 * page's browser session and its CSRF token (policy/approval.h decides who
 * may); the page itself, GET /t/{t}/approvals (web/approvals.html, for an
 * approver's session only), and its list GET /t/{t}/api/approvals. The
 * admin side is gateway/api/admin_approvals.c. */
#ifndef MCPGATE_GATEWAY_API_APPROVALS_H
#define MCPGATE_GATEWAY_API_APPROVALS_H
#include <jansson.h>

#include "gateway/core/module.h"

/* A request record as the APIs show it (times as RFC 3339, "seconds_left"
 * while pending); a new object (NULL on allocation failure). */
json_t *gw_approval_view(const json_t *rec);

extern const gw_module gw_mod_approvals;

#endif
