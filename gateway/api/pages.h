/* gateway/api/pages.h — the employee page at /t/{tenant}/ and sign-in with
 * the tenant's OpenID provider (/t/{tenant}/login, /logout,
 * /signout-everywhere, /oauth/callback, /api/me, /api/tokens): the module
 * table's entry. pages.c and login.c say what they own. */
#ifndef MCPGATE_GATEWAY_API_PAGES_H
#define MCPGATE_GATEWAY_API_PAGES_H

#include "gateway/core/settings.h"

struct gw_module;

/* Tenant settings: self_service_tokens, signin_max_age_ms. */
extern const gw_setting gw_pages_settings[];
extern const struct gw_module gw_mod_pages;

#endif
