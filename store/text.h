/* store/text.h — someone else's text shown to a person: which code points
 * hide or reorder it, for every module that shows such text (the consent
 * page's client names, auth/; the reviewers' messages, gateway/mcp/held.c;
 * the consent page, gateway/api/oauth_flow.c). One set, so a value can
 * neither hide nor disguise what it is in any of those places; the
 * reviewers' page shows the same set as escapes (web/assets/approvals.js).
 *
 * And how names compare without case (st_text_fold).
 *
 * Pure string functions on UTF-8: no store, no I/O, any thread. */
#ifndef MCPGATE_STORE_TEXT_H
#define MCPGATE_STORE_TEXT_H
#include <stdbool.h>
#include <stddef.h>

/* The code point of the 2-, 3- or 4-byte UTF-8 sequence at s (n bytes
 * left; its length in *len) when it hides or reorders text —
 * Default_Ignorable_Code_Point, General_Category Cf, the C1 controls and
 * U+2028/2029 (Unicode 17): bidi controls, zero-width ones, fillers,
 * variation selectors, the tag characters (U+E0000..E007F, a whole text
 * no reader sees) — else 0. */
unsigned st_text_hidden_at(const unsigned char *s, size_t n, size_t *len);

/* True for the code points that reorder the text around them (the bidi
 * controls: U+061C, U+200E/F, U+202A..202E, U+2066..2069): a name that
 * carries one can turn the sentence it sits in backwards, isolated or not
 * (its own PDI closes the page's isolate). */
bool st_text_reorders(unsigned cp);

/* s with every st_text_hidden_at code point written as \uXXXX (\u{XXXXX}
 * past the BMP), the rest as is; malloc'd (free()), NULL without memory. */
char *st_text_shown(const char *s);

/* Case folding, for the directory's names that compare without case
 * (SCIM userName, a group's displayName: RFC 7643 caseExact false), as
 * Unicode's simple case folding (CaseFolding.txt, status C and S, the
 * table generated at build time from Debian's unicode-data): "ÉMILE" and
 * "émile", "STRASSE" and "strasse", the Kelvin sign and "k" fold alike;
 * ASCII folds as tolower. No normalisation (a precomposed "é" and "e" +
 * U+0301 stay two names, as Okta sends them) and no full foldings ("ß" is
 * not "ss"). Bytes that are no UTF-8 sequence stay as they are.
 *
 * s's n bytes folded into out, which has room for ST_TEXT_FOLD_MAX(n)
 * bytes (a fold may lengthen a 2-byte sequence to 3); the length written,
 * NUL-terminated. */
#define ST_TEXT_FOLD_MAX(n) ((n) + (n) / 2 + 1)
size_t st_text_fold(const char *s, size_t n, char *out);
/* s folded, malloc'd (free()), NULL without memory. */
char *st_text_fold_dup(const char *s);
/* Whether a and b fold alike (both NUL-terminated); without memory, a
 * byte comparison of the ASCII folding. */
bool st_text_fold_eq(const char *a, const char *b);
/* The Unicode version of the folding table this binary was built with
 * ("15.0.0"; static). A key folded by one version may differ from the same
 * name folded by another (a new case pair), so the store records it beside
 * the keys and re-keys them when a binary's differs (store/dir.c,
 * st__dir_fold_sync). */
const char *st_text_fold_version(void);

#endif
