/* tests/tools/slowdns.c — an LD_PRELOAD shim for the integration tests: a
 * DNS server that answers slowly, as a tenant's upstream may have one.
 * getaddrinfo of a name ending in ".slow.test" blocks SLOWDNS_MS (default
 * 3000) and fails (EAI_NONAME), as glibc's resolver does against a server
 * that never answers; each such lookup first appends a line to the file
 * SLOWDNS_LOG names (when set), so a test sees how many run at once. A name
 * ending in ".late.test" is as slow, logged alike, and then resolves to
 * 127.0.0.1 (a server that answers, late). A name ending in ".fast.test"
 * resolves to 127.0.0.1 at once. Anything else: libc's getaddrinfo. Built
 * by `make unit-bins` as <build>/tests/slowdns.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int ends(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* A slow server's lookup: logged (SLOWDNS_LOG), then SLOWDNS_MS of it. */
static void slow_lookup(void) {
  const char *log = getenv("SLOWDNS_LOG");
  if (log && *log) {
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!write(fd, "lookup\n", 7);
      close(fd);
    }
  }
  const char *ms = getenv("SLOWDNS_MS");
  long n = ms && *ms ? atol(ms) : 3000;
  struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
      (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                               "getaddrinfo");
  if (node && ends(node, ".slow.test")) {
    slow_lookup();
    return EAI_NONAME;
  }
  if (node && ends(node, ".late.test")) {
    slow_lookup();
    return real("127.0.0.1", service, hints, res);
  }
  if (node && ends(node, ".fast.test")) return real("127.0.0.1", service, hints, res);
  return real(node, service, hints, res);
}
