/* gateway/main.c — the binary's entry point: picks the subcommand and hands
 * over to the library (gw_serve, gw_cli_main). Nothing else lives here. */
#include <stdio.h>
#include <string.h>

#include "gateway/cli.h"

int main(int argc, char **argv) { return gw_cli_main(argc, argv); }
