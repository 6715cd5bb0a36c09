/* gateway/base/json_check.h — is this a JSON text jansson would accept?
 * Without building it: for bytes the gateway relays unchanged and only
 * has to vouch for (an upstream's JSON reply), a scan costs a fraction of
 * a parse and allocates nothing.
 *
 * Accepts exactly what json_loadb(p, n, 0, …) accepts (the differential
 * fuzzer tests/fuzz/fuzz_json_check.c holds it to that): an object or an
 * array at the top, whitespace around it; strings of valid UTF-8 without
 * control characters, escapes including paired surrogates but not
 * \u0000; numbers by the JSON grammar, an integer within 64 bits, a real
 * that does not overflow; nesting at most 2048 deep. Any thread. */
#ifndef MCPGATE_GATEWAY_BASE_JSON_CHECK_H
#define MCPGATE_GATEWAY_BASE_JSON_CHECK_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

bool gw_json_check(const char *p, size_t n);

/* What a jansson tree of the JSON text p would take, estimated from its
 * bytes without checking them (the parse decides that): each object,
 * array, member, string and number at about what jansson 2.14 allocates
 * for one (measured: 235, 138, ~70, 90 + its bytes, 42), rounded up, plus
 * the text. A tree costs up to ~80 times its text: a 16 MiB reply of
 * "[{},{},…]" built 1.1 GiB. */
size_t gw_json_tree_cost(const char *p, size_t n);
/* The most a tree built from bytes another party sent may cost. */
#define GW_JSON_TREE_MAX ((size_t)64 << 20)
/* A body up to this size cannot build a MiB of tree (80 times its text at
 * most): its cost need not be estimated (gateway/core/limits.h). */
#define GW_JSON_FREE_BYTES ((size_t)12 << 10)
/* json_loadb for bytes another party sent — a client's body, an upstream's
 * reply or event, a fetched document: NULL (err's text says why) when the
 * tree would cost more than GW_JSON_TREE_MAX, else json_loadb's answer.
 * Caps on bytes alone do not bound the memory a parse takes. */
json_t *gw_json_loadb(const char *p, size_t n, size_t flags, json_error_t *err);
/* The same with the most the tree may cost given (at least
 * GW_JSON_TREE_MAX): for a body whose size its sender's trust bounds
 * (SCIM, from the IdP: a group's full member list is ~11 times its text). */
json_t *gw_json_loadb_within(const char *p, size_t n, size_t flags, json_error_t *err, size_t max);
/* gw_json_loadb for a text whose gw_json_tree_cost(p, n) the caller has
 * already: the bytes are not scanned again (a MiB takes ~1 ms a scan). */
json_t *gw_json_loadb_costed(const char *p, size_t n, size_t flags, json_error_t *err, size_t cost);

/* The same scan for a JSON-RPC request the gateway forwards unchanged: it
 * also refuses a duplicate key in any object (as JSON_REJECT_DUPLICATES
 * does) and returns the raw text of the members named by paths: "key" (a
 * member of the top object) or "key.key" (a member of that member when it
 * is an object). A string's span includes its quotes; p is NULL when
 * absent. 1: accepted, spans filled. 0: refused, as jansson refuses it —
 * except a raw NUL byte, refused anywhere here while jansson skips one
 * after a value (the gateway refuses NUL bytes before parsing too).
 * -1: undecided, parse it with jansson instead — the top is not an object,
 * a key has an escape (decoded keys may collide), or an object has more
 * keys than the scan compares (32; 128 across the open objects), or more
 * than 8 paths are asked for.
 * gw_json_pick_request, for a client's JSON-RPC message, is undecided too
 * when a member of the top object or of an object in it has a name with an
 * upper-case ASCII letter or a non-ASCII character (a case-insensitive
 * reader, Go's encoding/json, may take it for another: the parse path
 * judges it, gw__check_message). Replies are not judged so: their
 * "isError", "structuredContent" or "nextCursor" would send every one to
 * the parse. */
typedef struct gw_json_span {
  const char *p;
  size_t n;
} gw_json_span;
int gw_json_pick(const char *p, size_t n, const char *const *paths, size_t npaths, gw_json_span *got);
int gw_json_pick_request(const char *p, size_t n, const char *const *paths, size_t npaths, gw_json_span *got);

/* Does every number in this JSON text (one gw_json_check accepted) name a
 * value that jansson's decoded form identifies exactly? Integers do (they
 * fit 64 bits) but -0: jansson decodes it as the integer 0, while
 * JavaScript reads it as -0 and a reader of doubles as -0.0, neither of
 * which 0 is (the reals -0.0 and 0.0 stay apart in jansson, and are exact).
 * A real does when it has at most 15 significant digits
 * (DBL_DIG) and its magnitude is 0 or within 1e-307..1e308: two different
 * such decimals are always two different doubles. 1.0000000000000001 (17
 * digits) or 1e-400 (below the normal range) are not: they decode to the
 * double of 1.0 or of 0.0. Any thread; allocates nothing. */
bool gw_json_numbers_exact(const char *p, size_t n);

/* The length of the value that starts at p, in text the scan accepted (n:
 * the bytes from p on the caller may read; the value ends within them). */
size_t gw_json_value_len(const char *p, size_t n);
/* The members of an object, one per call, in text the scan accepted: p is
 * where the object's '{' is, n the bytes from there on that the caller may
 * read (the object ends within them). *at is 0 for the first call; each
 * true answer sets *key (quotes included) and *value to the next member's
 * exact text; false at the object's end, with *at just past its '}'. A
 * key is compared as it is spelled: for text gw_json_pick accepted (1),
 * no key has an escape and none repeats. Allocates nothing. */
bool gw_json_next_member(const char *p, size_t n, size_t *at, gw_json_span *key, gw_json_span *value);
#endif
