/* gateway/modules.h — the module table of the mcpgate binary (see
 * gateway/core/module.h for what a module plugs in and the order rules). */
#ifndef MCPGATE_GATEWAY_MODULES_H
#define MCPGATE_GATEWAY_MODULES_H
#include "gateway/core/module.h"

/* NULL-terminated, in the fixed order documented in modules.c. Static,
 * read-only: any thread. */
extern const gw_module *const gw_modules[];

#endif
