/* gateway/cli.h — the command line: `serve`, the admin commands that talk
 * to a running server (tenant, scim-token, admin-token), and the offline
 * commands on a data directory (backup, key rotate, store check). */
#ifndef MCPGATE_GATEWAY_CLI_H
#define MCPGATE_GATEWAY_CLI_H

int gw_cli_main(int argc, char **argv);

#endif
