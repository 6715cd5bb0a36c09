/* store/text.h — someone else's text shown to a person: which code points
 * hide or reorder it, for every module that shows such text (the consent
 * page's client names, auth/; the reviewers' messages, gateway/mcp/held.c;
 * the consent page, gateway/api/oauth_flow.c). One set, so a value can
 * neither hide nor disguise what it is in any of those places; the
 * reviewers' page shows the same set as escapes (web/assets/approvals.js).
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

#endif
