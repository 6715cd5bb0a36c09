/* gateway/mcp/tool_list.h — a tool list filtered by policy without a
 * parse (private to gateway/mcp/): the bytes of the tools the user may see
 * are copied, the others left out, approval notes and aggregated names
 * spliced in. The same result as policy/'s pol_filter_tools on jansson's
 * tree (held to it by tests/unit/test_tool_list.c and the fuzzer
 * tests/fuzz/fuzz_tools_filter.c), at a fraction of the cost: a 500-tool
 * list was 1.7 ms of a loop's CPU parsed and re-serialised.
 *
 * Whatever the scan cannot decide exactly as jansson would (an escape in
 * a key or in a tool's name, a duplicate key, more keys than the scan
 * compares, a name over 255 bytes) answers -1: the caller takes the
 * jansson path, which stays the reference. Loop thread. */
#ifndef MCPGATE_GATEWAY_MCP_TOOL_LIST_H
#define MCPGATE_GATEWAY_MCP_TOOL_LIST_H
#include <stdbool.h>
#include <stddef.h>

#include "gateway/base/buf.h"
#include "policy/policy.h"

/* Appends to out the array at [arr, arr + n) (a "tools" value's text, as
 * gw_json_pick returned it from an accepted text) with only the tools u
 * may see for connector: an element that is not an object or has no
 * string "name" is left out, as a blocked tool is; a tool that needs
 * approval has the approval note put before its description. rename:
 * names become "{connector}__{name}" (the aggregated endpoint's). u NULL:
 * no tools (fail closed). *changed: out differs from the input (always
 * true with rename). 1 written; -1 undecided (out is left as it was). */
int gw__tool_list_filter(const pol_user *u, const char *connector, bool rename, const char *arr, size_t n,
                         gw_buf *out, bool *changed);

/* A whole JSON-RPC message (an object: a reply whose result.tools is a
 * tool list) filtered as pol_filter_tools filters its tree: 1 (out holds
 * the message with its list filtered), 0 (nothing to change: no tool list,
 * or every tool allowed as is — and the text is one jansson accepts), -1
 * undecided (the caller parses it). */
int gw__tool_list_filter_msg(const pol_user *u, const char *connector, const char *p, size_t n, gw_buf *out);

#endif
