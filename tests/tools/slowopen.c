/* tests/tools/slowopen.c — an LD_PRELOAD shim for the integration tests: a
 * process descheduled at the wrong moment, made reproducible. open() and
 * open64() of a path ending in SLOWOPEN_SUFFIX (unset: none) wait
 * SLOWOPEN_MS (default 500) first. Built by `make unit-bins` as
 * <build>/tests/slowopen.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static void maybe_wait(const char *p) {
  const char *suf = getenv("SLOWOPEN_SUFFIX");
  if (!p || !suf || !*suf) return;
  size_t a = strlen(p), b = strlen(suf);
  if (a < b || strcmp(p + a - b, suf)) return;
  const char *ms = getenv("SLOWOPEN_MS");
  long n = ms && *ms ? atol(ms) : 500;
  struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

#define WRAP(name)                                                                               \
  int name(const char *p, int fl, ...) {                                                         \
    mode_t m = 0;                                                                                \
    if (fl & O_CREAT) {                                                                          \
      va_list ap;                                                                                \
      va_start(ap, fl);                                                                          \
      m = va_arg(ap, mode_t);                                                                    \
      va_end(ap);                                                                                \
    }                                                                                            \
    maybe_wait(p);                                                                               \
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \
    return real(p, fl, m);                                                                       \
  }
WRAP(open)
WRAP(open64)
