/* Minimal unit test harness: each tests/unit/test_*.c is one binary that
 * #includes this header, defines TEST(name) functions and lists them in
 * main() with RUN(name). Output is TAP-like ("ok N name" / "not ok N name")
 * and ends with "# unit <file>: N passed, N failed" which tests/run.sh sums.
 * A failed CHECK marks the current test failed and returns from it. */
#ifndef MCPGATE_TESTS_UNIT_H
#define MCPGATE_TESTS_UNIT_H
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int unit__failed_now, unit__pass, unit__fail, unit__n;

#define TEST(name) static void name(void)
#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    unit__failed_now = 1; return; } } while (0)
#define CHECK_INT(a, b) do { long long unit__a = (long long)(a), unit__b = (long long)(b); \
    if (unit__a != unit__b) { fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", \
    __FILE__, __LINE__, #a, unit__a, #b, unit__b); unit__failed_now = 1; return; } } while (0)
#define CHECK_STR(a, b) do { const char *unit__a = (a), *unit__b = (b); \
    if (!unit__a || !unit__b || strcmp(unit__a, unit__b) != 0) { \
    fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
    unit__a ? unit__a : "(null)", unit__b ? unit__b : "(null)"); unit__failed_now = 1; return; } } while (0)
#define RUN(name) do { unit__failed_now = 0; unit__n++; name(); \
    if (unit__failed_now) { unit__fail++; printf("not ok %d %s\n", unit__n, #name); } \
    else { unit__pass++; printf("ok %d %s\n", unit__n, #name); } fflush(stdout); } while (0)
#define UNIT_DONE() (printf("# unit %s: %d passed, %d failed\n", __FILE__, unit__pass, unit__fail), \
    unit__fail ? 1 : 0)
#endif
