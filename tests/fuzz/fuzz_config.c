/* tests/fuzz/fuzz_config.c — libFuzzer driver: the configuration file
 * (gateway/core/config.c, the real loader: `key = value` lines, quotes,
 * comments, sizes like 64K, integers with bounds, URLs, CIDR lists). An
 * operator writes it, but a template or a config-management system may
 * fill it from less trusted data: no crash, no leak, no UB, and a
 * property: a configuration that loads prints (gw_config_print, what
 * `mcpgate config` shows) to a file that loads again to the very same
 * configuration. The input is the file's bytes, read through a memfd. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gateway/core/config.h"

static int fd_in = -1, fd_again = -1;
static char path_in[64], path_again[64];

static int load(int fd, const char *path, const void *data, size_t size, gw_config *cfg, char *err, size_t errlen) {
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
  char *argv[] = {"--config", (char *)path};
  return gw_config_load(cfg, 2, argv, err, errlen);
}

/* cfg printed, in a malloc'd buffer (*n bytes). */
static char *print(const gw_config *cfg, size_t *n) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, n);
  if (!f) abort();
  gw_config_print(cfg, f);
  fclose(f);
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd_in < 0) {
    /* the environment must not add keys of its own */
    for (char **e = environ; e && *e;)
      if (!strncmp(*e, "MCPGATE_", 8)) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        unsetenv(name);
      } else {
        e++;
      }
    fd_in = memfd_create("config", 0);
    fd_again = memfd_create("config-again", 0);
    if (fd_in < 0 || fd_again < 0) abort();
    snprintf(path_in, sizeof path_in, "/proc/self/fd/%d", fd_in);
    snprintf(path_again, sizeof path_again, "/proc/self/fd/%d", fd_again);
  }
  if (size > 64 * 1024) return 0;
  gw_config cfg, again;
  char err[512];
  int rc = load(fd_in, path_in, data, size, &cfg, err, sizeof err);
  if (rc == 0) {
    size_t n1, n2;
    char *p1 = print(&cfg, &n1);
    char err2[512];
    int rc2 = load(fd_again, path_again, p1, n1, &again, err2, sizeof err2);
    if (rc2 != 0) {
      fprintf(stderr, "the printed configuration does not load again: %s\n--- printed:\n%s", err2, p1);
      abort();
    }
    char *p2 = print(&again, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1)) {
      fprintf(stderr, "the printed configuration loads to another one\n--- first:\n%s--- again:\n%s", p1, p2);
      abort();
    }
    free(p1);
    free(p2);
    gw_config_free(&again);
  }
  gw_config_free(&cfg);
  return 0;
}
