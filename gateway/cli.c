/* gateway/cli.c — the command line (see cli.h).
 *
 * Admin commands are thin clients of the admin API (libcurl easy: a CLI
 * process may block). The operator token comes from MCPGATE_ADMIN_TOKEN or
 * the data directory's admin.token; it is sent, never printed. Offline
 * commands open the data directory's store directly: backup and check are
 * safe next to a running server (LMDB readers; backup opens the
 * environments read-only and never migrates: it copies them as they are);
 * key rotation needs the server stopped (the data directory lock says
 * whether it runs). Offline
 * commands run the module table's store_init (gateway/modules.c) with no
 * server, so `store check` runs the checks every module registers. `serve`
 * hands the same table to gw_serve. Single-threaded (no loop). */
#include "gateway/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "gateway/base/log.h"
#include "gateway/core/config.h"
#include "gateway/core/module.h"
#include "gateway/core/server.h"
#include "gateway/modules.h"
#include "store/seal.h"
#include "store/store.h"
#include "audit/audit.h"

#define VERSION "0.1.0"

static void usage(FILE *o) {
  fprintf(o,
          "mcpgate " VERSION " — multi-tenant gateway between AI agents and MCP servers\n\n"
          "usage:\n"
          "  mcpgate serve [--listen HOST:PORT] [--data DIR] [--config FILE] [--<key> VALUE]...\n"
          "  mcpgate serve --help | --print-config\n"
          "  mcpgate tenant create ID [--name NAME]     create a tenant; prints its SCIM URL and token\n"
          "  mcpgate tenant list | show ID | delete ID\n"
          "  mcpgate scim-token create TENANT [--name NAME] | list TENANT | revoke TENANT TOKEN_ID\n"
          "  mcpgate admin-token create TENANT [--name NAME] | list TENANT | revoke TENANT TOKEN_ID\n"
          "  mcpgate token create TENANT --user USER [--name N] [--expires-in-days D] | list TENANT | revoke TENANT ID\n"
          "  mcpgate policy apply TENANT FILE | get TENANT\n"
          "  mcpgate policy explain TENANT --user U --connector C --tool T\n"
          "  mcpgate approvals list TENANT [--state S]  approval requests, newest first (S: pending, approved,\n"
          "                                             denied, cancelled, expired)\n"
          "  mcpgate approvals cancel TENANT ID [--reason R]  stop a request (an admin never approves)\n"
          "  mcpgate backup DEST [--data DIR]           consistent hot copy of the store (compacted)\n"
          "  mcpgate key rotate [--data DIR]            re-seal every secret under a new master key\n"
          "  mcpgate store check [--data DIR]           verify the store's integrity and indexes\n"
          "  mcpgate store accept-restore [--data DIR]  start on a store restored from an older backup\n"
          "  mcpgate audit verify [--data DIR]          verify every audit chain; names the first broken record\n"
          "  mcpgate audit export TENANT [--since MS] [--until MS] [--data DIR]\n"
          "                                             the tenant's audit records as NDJSON, oldest first\n"
          "  mcpgate audit prune --before MS [--data DIR] prune records older than MS (server stopped)\n"
          "  mcpgate config-doc                         print the configuration table (Markdown)\n"
          "  mcpgate version\n\n"
          "admin commands: --server URL (env MCPGATE_SERVER; default: the mcpgate running on the data\n"
          "  directory, at the address it wrote to <data>/admin.url),\n"
          "  token from MCPGATE_ADMIN_TOKEN, the file MCPGATE_ADMIN_TOKEN_FILE names, or\n"
          "  <data>/admin.token (--data DIR, env MCPGATE_DATA, default ./data); --json prints\n"
          "  the raw API response. Offline commands read MCPGATE_MASTER_KEY_FILE, else\n"
          "  <data>/master.key.\n");
}

/* ---------- option scanning shared by subcommands ---------- */

typedef struct cli_opts {
  const char *server, *data, *name, *user, *connector, *tool, *days, *since, *until, *before, *state, *reason;
  bool json;
  const char *pos[4];
  int npos;
} cli_opts;

static int scan(int argc, char **argv, cli_opts *o) {
  memset(o, 0, sizeof *o);
  o->server = getenv("MCPGATE_SERVER");
  o->data = getenv("MCPGATE_DATA");
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (!strcmp(a, "--server")) slot = &o->server;
    else if (!strcmp(a, "--data")) slot = &o->data;
    else if (!strcmp(a, "--name")) slot = &o->name;
    else if (!strcmp(a, "--user")) slot = &o->user;
    else if (!strcmp(a, "--connector")) slot = &o->connector;
    else if (!strcmp(a, "--tool")) slot = &o->tool;
    else if (!strcmp(a, "--expires-in-days")) slot = &o->days;
    else if (!strcmp(a, "--since")) slot = &o->since;
    else if (!strcmp(a, "--until")) slot = &o->until;
    else if (!strcmp(a, "--before")) slot = &o->before;
    else if (!strcmp(a, "--state")) slot = &o->state;
    else if (!strcmp(a, "--reason")) slot = &o->reason;
    else if (!strcmp(a, "--json")) {
      o->json = true;
      continue;
    } else if (!strncmp(a, "--", 2)) {
      fprintf(stderr, "mcpgate: unknown option %s\n", a);
      return -1;
    } else {
      if (o->npos == 4) {
        fprintf(stderr, "mcpgate: too many arguments\n");
        return -1;
      }
      o->pos[o->npos++] = a;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "mcpgate: %s needs a value\n", a);
      return -1;
    }
    *slot = argv[++i];
  }
  if (o->server && !*o->server) o->server = NULL; /* NULL: the server running on o->data (api) */
  if (!o->data || !*o->data) o->data = "./data";
  return 0;
}

/* ---------- HTTP client for the admin API ---------- */

typedef struct resp {
  char *data;
  size_t len;
} resp;

static size_t on_data(char *p, size_t sz, size_t n, void *arg) {
  resp *r = arg;
  size_t add = sz * n;
  if (r->len + add > 16 * 1024 * 1024) return 0;
  char *nd = realloc(r->data, r->len + add + 1);
  if (!nd) return 0;
  r->data = nd;
  memcpy(r->data + r->len, p, add);
  r->len += add;
  r->data[r->len] = 0;
  return add;
}

/* The operator token: MCPGATE_ADMIN_TOKEN, else the file the server's
 * admin_token_file names when its variable is set (MCPGATE_ADMIN_TOKEN_FILE,
 * as the offline commands take MCPGATE_MASTER_KEY_FILE), else
 * <data>/admin.token. */
static int read_token(const cli_opts *o, char *tok, size_t cap) {
  const char *env = getenv("MCPGATE_ADMIN_TOKEN");
  if (env && *env) {
    snprintf(tok, cap, "%s", env);
    return 0;
  }
  char path[4096];
  const char *tf = getenv("MCPGATE_ADMIN_TOKEN_FILE");
  if (tf && *tf) snprintf(path, sizeof path, "%s", tf);
  else snprintf(path, sizeof path, "%s/admin.token", o->data);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr,
            "mcpgate: no operator token: set MCPGATE_ADMIN_TOKEN, or MCPGATE_ADMIN_TOKEN_FILE to the server's "
            "admin_token_file, or point --data at the server's data directory (%s: %s)\n",
            path, strerror(errno));
    return -1;
  }
  size_t n = fread(tok, 1, cap - 1, f);
  fclose(f);
  tok[n] = 0;
  while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ')) tok[--n] = 0;
  return n ? 0 : -1;
}

/* Calls the admin API. Returns the HTTP status (or -1) and the parsed body. */
static long api(const cli_opts *o, const char *method, const char *path, json_t *body, json_t **out) {
  char tok[600], auth[700], url[4096], found[300], why[4400];
  *out = NULL;
  /* No --server: the one running on the data directory, at the address it
   * wrote there. It used to be http://127.0.0.1:8080 whoever listened
   * there — a server on another port, or none and another local user's
   * listener — and the operator token went to it (found by the
   * operations review). */
  const char *server = o->server;
  if (!server) {
    if (gw_data_admin_url(o->data, found, sizeof found, why, sizeof why) != 0) {
      fprintf(stderr, "mcpgate: %s; start it, or name the server with --server URL (env MCPGATE_SERVER)\n", why);
      return -1;
    }
    server = found;
  }
  if (read_token(o, tok, sizeof tok) != 0) return -1;
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
  OPENSSL_cleanse(tok, sizeof tok);
  size_t sl = strlen(server);
  snprintf(url, sizeof url, "%.*s/admin/v1%s", (int)(sl && server[sl - 1] == '/' ? sl - 1 : sl), server, path);
  CURL *c = curl_easy_init();
  if (!c) return -1;
  struct curl_slist *h = curl_slist_append(NULL, auth);
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Accept: application/json");
  char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
  resp r = {0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (payload) curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  CURLcode cc = curl_easy_perform(c);
  long status = -1;
  if (cc != CURLE_OK) {
    fprintf(stderr, "mcpgate: cannot reach %s: %s\n", server, curl_easy_strerror(cc));
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (r.len) *out = json_loadb(r.data, r.len, 0, NULL);
  }
  OPENSSL_cleanse(auth, sizeof auth);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  free(payload);
  free(r.data);
  return status;
}

/* s for the terminal, whole: control characters (C0, DEL) become '?', so a
 * stored name quoted in a server's message never drives the operator's
 * terminal (js below does the same for fields). */
static void term_puts(FILE *f, const char *s) {
  for (; *s; s++) fputc(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s, f);
}

static int api_fail(long status, json_t *j) {
  if (status < 0) return 1;
  const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
  fprintf(stderr, "mcpgate: error %ld: ", status);
  term_puts(stderr, msg ? msg : "(no message)");
  fputc('\n', stderr);
  json_decref(j);
  return 1;
}

static void print_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s) puts(s);
  free(s);
}

/* A string field for the terminal: control characters become '?', so a
 * stored name can never drive the operator's terminal. Rotating buffers:
 * up to eight values per printf. */
static const char *js(json_t *o, const char *k) {
  static char bufs[8][512];
  static int next;
  const char *s = json_string_value(json_object_get(o, k));
  if (!s) return "";
  char *b = bufs[next++ % 8];
  size_t i = 0;
  for (; s[i] && i < sizeof bufs[0] - 1; i++)
    b[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
  b[i] = 0;
  return b;
}

/* Arguments that become URL path segments: refuse anything that could
 * change the path (the server would refuse them anyway). */
static int check_args(const cli_opts *o) {
  for (int i = 0; i < o->npos; i++) {
    const char *a = o->pos[i];
    if (!*a || strlen(a) > 63) goto bad;
    for (const char *p = a; *p; p++)
      if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) goto bad;
    continue;
  bad:
    fprintf(stderr, "mcpgate: invalid id \"%s\": use 1 to 63 of a-z, 0-9 and -\n", a);
    return -1;
  }
  return 0;
}

static int cmd_tenant(int argc, char **argv) {
  cli_opts o;
  if (argc >= 1 && !scan(argc - 1, argv + 1, &o) && check_args(&o)) return 2;
  if (argc < 1 || scan(argc - 1, argv + 1, &o)) {
    fprintf(stderr, "usage: mcpgate tenant create ID [--name N] | list | show ID | delete ID\n");
    return 2;
  }
  const char *sub = argv[0];
  json_t *j = NULL;
  long st;
  char path[512];
  if (!strcmp(sub, "create") && o.npos == 1) {
    json_t *b = json_pack("{s:s}", "id", o.pos[0]);
    if (o.name) json_object_set_new(b, "name", json_string(o.name));
    st = api(&o, "POST", "/tenants", b, &j);
    json_decref(b);
    if (st != 201) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      json_t *s = json_object_get(j, "scim");
      printf("Tenant %s created.\n\n"
             "In Okta: Applications > your mcpgate app > Provisioning > Integration:\n"
             "  SCIM connector base URL:            %s\n"
             "  Unique identifier field for users:  userName\n"
             "  Authentication Mode:                HTTP Header\n"
             "  Authorization (Bearer token):       %s\n\n"
             "The token is shown once; its id is %s (mcpgate scim-token list %s).\n",
             js(j, "id"), js(s, "base_url"), js(s, "token"), js(s, "token_id"), js(j, "id"));
    }
  } else if (!strcmp(sub, "list") && o.npos == 0) {
    st = api(&o, "GET", "/tenants", NULL, &j);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      size_t i;
      json_t *t;
      printf("%-24s %-32s %s\n", "ID", "NAME", "CREATED");
      json_array_foreach(json_object_get(j, "tenants"), i, t)
          printf("%-24s %-32s %s\n", js(t, "id"), js(t, "name"), js(t, "created"));
    }
  } else if (!strcmp(sub, "show") && o.npos == 1) {
    snprintf(path, sizeof path, "/tenants/%s", o.pos[0]);
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    print_json(j);
  } else if (!strcmp(sub, "delete") && o.npos == 1) {
    snprintf(path, sizeof path, "/tenants/%s", o.pos[0]);
    st = api(&o, "DELETE", path, NULL, &j);
    if (st != 202) return api_fail(st, j);
    if (o.json) print_json(j);
    else printf("Tenant %s deleted: its credentials stopped working; its data is being purged.\n", o.pos[0]);
  } else {
    fprintf(stderr, "usage: mcpgate tenant create ID [--name N] | list | show ID | delete ID\n");
    return 2;
  }
  json_decref(j);
  return 0;
}

static int cmd_token(int argc, char **argv, const char *kind) {
  cli_opts o;
  if (argc >= 1 && !scan(argc - 1, argv + 1, &o) && check_args(&o)) return 2;
  if (argc < 1 || scan(argc - 1, argv + 1, &o) || o.npos < 1) {
    fprintf(stderr, "usage: mcpgate %s-token create TENANT [--name N] | list TENANT | revoke TENANT TOKEN_ID\n", kind);
    return 2;
  }
  const char *sub = argv[0];
  char path[512];
  json_t *j = NULL;
  long st;
  if (!strcmp(sub, "create") && o.npos == 1) {
    snprintf(path, sizeof path, "/tenants/%s/%s-tokens", o.pos[0], kind);
    json_t *b = o.name ? json_pack("{s:s}", "name", o.name) : json_object();
    st = api(&o, "POST", path, b, &j);
    json_decref(b);
    if (st != 201) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      printf("%s token %s created for tenant %s (shown once):\n%s\n", kind[0] == 's' ? "SCIM" : "Admin",
             js(j, "id"), o.pos[0], js(j, "token"));
      if (kind[0] == 's') printf("SCIM base URL: %s\n", js(j, "base_url"));
    }
  } else if (!strcmp(sub, "list") && o.npos == 1) {
    snprintf(path, sizeof path, "/tenants/%s/%s-tokens", o.pos[0], kind);
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      size_t i;
      json_t *t;
      printf("%-18s %-24s %-22s %s\n", "ID", "NAME", "CREATED", "LAST USED");
      json_array_foreach(json_object_get(j, "tokens"), i, t)
          printf("%-18s %-24s %-22s %s\n", js(t, "id"), js(t, "name"), js(t, "created"),
                 json_is_string(json_object_get(t, "last_used")) ? js(t, "last_used") : "never");
    }
  } else if (!strcmp(sub, "revoke") && o.npos == 2) {
    snprintf(path, sizeof path, "/tenants/%s/%s-tokens/%s", o.pos[0], kind, o.pos[1]);
    st = api(&o, "DELETE", path, NULL, &j);
    if (st != 204) return api_fail(st, j);
    printf("Token %s revoked.\n", o.pos[1]);
  } else {
    fprintf(stderr, "usage: mcpgate %s-token create TENANT [--name N] | list TENANT | revoke TENANT TOKEN_ID\n", kind);
    return 2;
  }
  json_decref(j);
  return 0;
}

static char *url_escape(const char *s) {
  CURL *c = curl_easy_init();
  char *e = c ? curl_easy_escape(c, s, 0) : NULL;
  char *out = e ? strdup(e) : NULL;
  curl_free(e);
  if (c) curl_easy_cleanup(c);
  return out;
}

static int cmd_policy(int argc, char **argv) {
  cli_opts o;
  static const char *const usage_s =
      "usage: mcpgate policy apply TENANT FILE | get TENANT | explain TENANT --user U --connector C --tool T\n";
  if (argc < 1 || scan(argc - 1, argv + 1, &o) || o.npos < 1) {
    fputs(usage_s, stderr);
    return 2;
  }
  const char *sub = argv[0], *tenant = o.pos[0];
  cli_opts ids = o;
  ids.npos = 1;
  if (check_args(&ids)) return 2;
  char path[2048];
  json_t *j = NULL;
  long st;
  if (!strcmp(sub, "apply") && o.npos == 2) {
    json_error_t e;
    json_t *doc = json_load_file(o.pos[1], JSON_REJECT_DUPLICATES, &e);
    if (!doc) {
      fprintf(stderr, "mcpgate: %s: invalid JSON at line %d column %d: %s\n", o.pos[1], e.line, e.column, e.text);
      return 1;
    }
    snprintf(path, sizeof path, "/tenants/%s/policy", tenant);
    st = api(&o, "PUT", path, doc, &j);
    json_decref(doc);
    if (st != 200) return api_fail(st, j);
    printf("Policy version %lld is in force for %s.\n", (long long)json_integer_value(json_object_get(j, "version")),
           tenant);
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(j, "warnings"), i, w) {
      fputs("warning: ", stdout);
      term_puts(stdout, json_string_value(w) ?: "");
      fputc('\n', stdout);
    }
  } else if (!strcmp(sub, "get") && o.npos == 1) {
    snprintf(path, sizeof path, "/tenants/%s/policy", tenant);
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    print_json(o.json ? j : json_object_get(j, "document"));
    if (!o.json) {
      size_t i;
      json_t *b;
      json_array_foreach(json_object_get(j, "bindings"), i, b) if (json_object_get(b, "note"))
          printf("note: rule %lld, \"%s\": %s\n", (long long)json_integer_value(json_object_get(b, "rule")),
                 js(b, "as_written"), js(b, "note"));
    }
  } else if (!strcmp(sub, "explain") && o.npos == 1 && o.user && o.connector && o.tool) {
    char *u = url_escape(o.user), *c = url_escape(o.connector), *t = url_escape(o.tool);
    snprintf(path, sizeof path, "/tenants/%s/explain?user=%s&connector=%s&tool=%s", tenant, u ? u : "",
             c ? c : "", t ? t : "");
    free(u);
    free(c);
    free(t);
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      json_t *user = json_object_get(j, "user");
      printf("%s → %s on %s: %s\n", js(user, "userName"), js(j, "tool"), js(j, "connector"), js(j, "decision"));
      printf("  why: %s\n", js(j, "reason"));
      printf("  policy version: %lld\n", (long long)json_integer_value(json_object_get(j, "policy_version")));
      printf("  groups:");
      size_t i;
      json_t *g;
      json_array_foreach(json_object_get(j, "groups"), i, g) printf(" \"%s\"", js(g, "displayName"));
      printf("%s\n", json_array_size(json_object_get(j, "groups")) ? "" : " (none)");
      json_array_foreach(json_object_get(j, "matching_rules"), i, g) {
        printf("  rule %lld (connector %s, via group %s):", (long long)json_integer_value(json_object_get(g, "rule")),
               js(g, "connector"), js(g, "via_group"));
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(g, "patterns"), k, p) printf(" %s \"%s\"", js(p, "action"), js(p, "pattern"));
        printf("%s\n", json_array_size(json_object_get(g, "patterns")) ? "" : " (does not name the tool)");
      }
    }
  } else {
    fputs(usage_s, stderr);
    return 2;
  }
  json_decref(j);
  return 0;
}

/* approvals list|cancel: the admin API's view of held calls. Cancelling
 * is all an operator may do: approving is done by a reviewer as
 * themselves (never in someone's name). */
static int cmd_approvals(int argc, char **argv) {
  cli_opts o;
  static const char *const usage_s =
      "usage: mcpgate approvals list TENANT [--state pending|approved|denied|cancelled|expired]\n"
      "       mcpgate approvals cancel TENANT ID [--reason R]\n";
  if (argc < 1 || scan(argc - 1, argv + 1, &o) || o.npos < 1) {
    fputs(usage_s, stderr);
    return 2;
  }
  if (check_args(&o)) return 2;
  const char *sub = argv[0], *tenant = o.pos[0];
  char path[512];
  json_t *j = NULL;
  long st;
  if (!strcmp(sub, "list") && o.npos == 1 && !o.reason) {
    if (o.state) {
      char *e = url_escape(o.state);
      snprintf(path, sizeof path, "/tenants/%s/approvals?state=%s", tenant, e ? e : "");
      free(e);
    } else snprintf(path, sizeof path, "/tenants/%s/approvals", tenant);
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      size_t i;
      json_t *a;
      json_t *list = json_object_get(j, "approvals");
      printf("%-32s %-9s %-24s %-16s %-24s %s\n", "ID", "STATE", "CREATED", "CONNECTOR", "TOOL", "USER / DECIDED BY");
      json_array_foreach(list, i, a) {
        printf("%-32s %-9s %-24s %-16s %-24s %s", js(a, "id"), js(a, "state"), js(a, "created"), js(a, "connector"),
               js(a, "tool"), js(a, "user"));
        if (json_is_string(json_object_get(a, "decided_by"))) printf(" / %s", js(a, "decided_by"));
        if (json_is_integer(json_object_get(a, "seconds_left")))
          printf(" (%lld s left)", (long long)json_integer_value(json_object_get(a, "seconds_left")));
        printf("\n");
      }
      if (!json_array_size(list)) printf("(no approval requests%s%s)\n", o.state ? " in state " : "",
                                         o.state ? o.state : "");
    }
  } else if (!strcmp(sub, "cancel") && o.npos == 2 && !o.state) {
    snprintf(path, sizeof path, "/tenants/%s/approvals/%s/cancel", tenant, o.pos[1]);
    json_t *b = o.reason ? json_pack("{s:s}", "reason", o.reason) : json_object();
    st = api(&o, "POST", path, b, &j);
    json_decref(b);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else printf("Approval request %s cancelled: the held call was told%s%s.\n", o.pos[1],
                o.reason ? ": " : "", o.reason ? js(j, "reason") : "");
  } else {
    fputs(usage_s, stderr);
    return 2;
  }
  json_decref(j);
  return 0;
}

static int cmd_employee_token(int argc, char **argv) {
  cli_opts o;
  static const char *const usage_s = "usage: mcpgate token create TENANT --user USER [--name N] [--expires-in-days D]"
                                     " | list TENANT | revoke TENANT TOKEN_ID\n";
  if (argc < 1 || scan(argc - 1, argv + 1, &o) || o.npos < 1 || check_args(&o)) {
    fputs(usage_s, stderr);
    return 2;
  }
  const char *sub = argv[0], *tenant = o.pos[0];
  char path[512];
  json_t *j = NULL;
  long st;
  snprintf(path, sizeof path, "/tenants/%s/tokens", tenant);
  if (!strcmp(sub, "create") && o.npos == 1 && o.user) {
    json_t *b = json_pack("{s:s}", "user", o.user);
    if (o.name) json_object_set_new(b, "name", json_string(o.name));
    if (o.days) json_object_set_new(b, "expires_in_days", json_integer(atoi(o.days)));
    st = api(&o, "POST", path, b, &j);
    json_decref(b);
    if (st != 201) return api_fail(st, j);
    if (o.json) print_json(j);
    else
      printf("Token %s for %s (shown once; expires %s):\n%s\n\nThe employee adds every tool their groups allow "
             "with:\n  claude mcp add --transport http %s %s --header \"Authorization: Bearer %s\"\n"
             "or one connector with:\n"
             "  claude mcp add --transport http <connector> %s/<connector> --header \"Authorization: Bearer %s\"\n",
             js(j, "id"), js(json_object_get(j, "user"), "userName"),
             json_is_string(json_object_get(j, "expires")) ? js(j, "expires") : "never", js(j, "token"), tenant,
             js(j, "mcp_url"), js(j, "token"), js(j, "mcp_url"), js(j, "token"));
  } else if (!strcmp(sub, "list") && o.npos == 1) {
    st = api(&o, "GET", path, NULL, &j);
    if (st != 200) return api_fail(st, j);
    if (o.json) print_json(j);
    else {
      size_t i;
      json_t *t;
      printf("%-18s %-38s %-20s %-22s %s\n", "ID", "USER", "NAME", "EXPIRES", "LAST USED");
      json_array_foreach(json_object_get(j, "tokens"), i, t)
          printf("%-18s %-38s %-20s %-22s %s\n", js(t, "id"), js(t, "user"), js(t, "name"),
                 json_is_string(json_object_get(t, "expires")) ? js(t, "expires") : "never",
                 json_is_string(json_object_get(t, "last_used")) ? js(t, "last_used") : "never");
    }
  } else if (!strcmp(sub, "revoke") && o.npos == 2) {
    snprintf(path, sizeof path, "/tenants/%s/tokens/%s", tenant, o.pos[1]);
    st = api(&o, "DELETE", path, NULL, &j);
    if (st != 204) return api_fail(st, j);
    printf("Token %s revoked.\n", o.pos[1]);
  } else {
    fputs(usage_s, stderr);
    return 2;
  }
  json_decref(j);
  return 0;
}

/* ---------- offline commands ---------- */

/* The store of o->data. An offline command never creates a master key
 * (st_open would, for a missing file): a missing one is the server's kept
 * elsewhere (master_key_file, as the README advises) or one that is lost,
 * and a fresh key in the data directory would be the wrong one to back up
 * and would make every sealed secret look corrupt. need_key: the command
 * unseals (store check, key rotate), so a missing key refuses it; else the
 * store opens without sealing. read_only: the command only reads (store
 * check, audit export), beside a server that may be an older mcpgate.
 * No offline command migrates: an older schema is refused, never migrated
 * under a server or behind the operator's back (key rotate used to: the
 * store then refused the older binary it was meant to go back to). */
static int open_store(const cli_opts *o, st_store **st, bool need_key, bool read_only) {
  char dir[4096], key[4096];
  snprintf(dir, sizeof dir, "%s/store", o->data);
  snprintf(key, sizeof key, "%s/master.key", o->data);
  const char *kf = getenv("MCPGATE_MASTER_KEY_FILE");
  if (kf && *kf) snprintf(key, sizeof key, "%s", kf);
  if (access(dir, F_OK) != 0) {
    fprintf(stderr, "mcpgate: no store in %s (use --data DIR)\n", o->data);
    return -1;
  }
  bool have_key = access(key, F_OK) == 0;
  if (!have_key && need_key) {
    fprintf(stderr,
            "mcpgate: no master key file %s; set MCPGATE_MASTER_KEY_FILE to the server's master_key_file "
            "(an offline command never creates one)\n",
            key);
    return -1;
  }
  st_options so = {0};
  so.dir = dir;
  so.master_key_file = have_key ? key : NULL;
  so.log = gw_store_log;
  so.log_ctx = NULL;
  so.no_migrate = true;
  so.read_only = read_only; /* MDB_RDONLY, no writer, no file made: a read-only mount can be checked */
  so.key_check = !read_only; /* key rotate: never a new key into a file that is not the store's */
  st_upgrade ups[GW_UPGRADES_MAX]; /* the same data steps of migrations as `serve` gives */
  if (gw_modules_upgrades(gw_modules, ups, GW_UPGRADES_MAX) < 0) return -1;
  so.upgrades = ups;
  int rc = st_open(st, &so);
  if (rc) {
    fprintf(stderr, "mcpgate: cannot open the store in %s: %s\n", dir, st_strerror(rc));
    return -1;
  }
  /* the same hooks and checks as `serve` registers (module table, offline) */
  if ((rc = gw_modules_store_init(gw_modules, *st, NULL)) != 0) {
    fprintf(stderr, "mcpgate: cannot set up the store's modules: %s\n", st_strerror(rc));
    st_close(*st);
    return -1;
  }
  return 0;
}

static void report(void *ctx, const char *area, const char *msg) {
  (void)ctx;
  printf("problem: %s: %s\n", area, msg);
}

/* backup DEST: the store and the audit log copied as they are — opened
 * read-only, never as a store: nothing is migrated or written, so a
 * backup taken with a newer binary beside an older running server (the
 * first step of an upgrade) neither migrates the store under that server
 * nor copies a migrated store instead of the way back. */
static int cmd_backup(const cli_opts *o) {
  if (o->npos != 1) {
    fprintf(stderr, "usage: mcpgate backup DEST [--data DIR]\n");
    return 2;
  }
  char dir[4096], adir[4096], adest[4096];
  snprintf(dir, sizeof dir, "%s/store", o->data);
  if (access(dir, F_OK) != 0) {
    fprintf(stderr, "mcpgate: no store in %s (use --data DIR)\n", o->data);
    return 1;
  }
  st_options so = {0};
  so.dir = dir;
  so.log = gw_store_log;
  gw_store_guard_begin(dir); /* a damaged page is said, not a bare crash */
  int rc = st_backup_dir(&so, o->pos[0]);
  gw_store_guard_end();
  if (rc) {
    fprintf(stderr, "mcpgate: backup failed: %s\n", st_strerror(rc));
    return 1;
  }
  /* the audit log beside it: DEST/audit (its own environment) */
  snprintf(adir, sizeof adir, "%s/audit", o->data);
  snprintf(adest, sizeof adest, "%s/audit", o->pos[0]);
  bool audit = access(adir, F_OK) == 0;
  if (audit) {
    so.dir = adir;
    so.schema = &audit_schema; /* its messages name the audit log */
    if ((rc = st_backup_dir(&so, adest)) != 0) {
      fprintf(stderr, "mcpgate: backup of the audit log failed: %s (the store's backup in %s is complete)\n",
              st_strerror(rc), o->pos[0]);
      return 1;
    }
  }
  printf("Backup written to %s%s (the master key is not in it: back up the server's master_key_file separately).\n",
         o->pos[0], audit ? ", the audit log to its audit/" : "");
  return 0;
}

/* store accept-restore: serve refuses a store older than its record
 * (<data>/store.generation: an older backup restored over it brings back
 * what was revoked since, gateway/core/stamp.c). The operator who meant
 * it removes the record; the next start records the store as it is. The
 * store is not opened: a restored copy of an older schema is still to be
 * migrated by serve, which no offline command does. */
static int cmd_accept_restore(const cli_opts *o) {
  if (o->npos != 0) {
    fprintf(stderr, "usage: mcpgate store accept-restore [--data DIR]\n");
    return 2;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/" GW_STAMP_FILE, o->data);
  if (unlink(path) != 0) {
    if (errno != ENOENT) {
      fprintf(stderr, "mcpgate: cannot remove %s: %s\n", path, strerror(errno));
      return 1;
    }
    printf("Nothing to accept: %s has no record of its store's generation (the next start makes one).\n", o->data);
    return 0;
  }
  printf("Accepted: the record of how far the store had come (%s) is removed; the next `mcpgate serve` starts on "
         "the store in %s/store as it is and records it. Everything revoked since the backup was taken is back: have "
         "the IdP send again the deactivations and group changes made since, and revoke again what admins revoked "
         "since (README, \"Command line\": backup and restore).\n",
         path, o->data);
  return 0;
}

/* The data directory's owner and mode, as serve checks them: a command
 * run as root on the service user's directory would leave root's files
 * (lock files, a rotated key) that the server cannot open. 0 or 1. */
static int data_dir_ok(const cli_opts *o) {
  char why[1024];
  if (gw_data_dir_trusted(o->data, why, sizeof why) != 0) {
    fprintf(stderr, "mcpgate: %s\n", why);
    return 1;
  }
  if (why[0]) fprintf(stderr, "mcpgate: warning: %s\n", why);
  return 0;
}

/* A reading command on a read-only filesystem (a read-only mount of the
 * live volume) while a server holds the data directory: LMDB cannot
 * create or write its lock file there, so it reads without registering as
 * a reader, the server reuses the pages it is reading, and a healthy store
 * is reported damaged (found by review). Refused, saying where to run it;
 * on a read-only snapshot (no server holds its lock) it runs. 0 or 1. */
static int live_read_only_view(const cli_opts *o, const char *sub) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/%s", o->data, sub);
  /* EROFS whatever the caller's rights (root's too) */
  if (access(dir, W_OK) == 0 || errno != EROFS || gw_data_locked(o->data) != 1) return 0;
  fprintf(stderr,
          "mcpgate: %s is on a read-only filesystem while an mcpgate holds %s: it cannot be read safely there "
          "(LMDB cannot register as a reader without its lock file, and the server reuses the pages it would "
          "read). Run this on the writable path of the data directory (safe beside the server), or on a backup\n",
          dir, o->data);
  return 1;
}

static int cmd_offline(const char *what, int argc, char **argv) {
  cli_opts o;
  if (scan(argc, argv, &o)) return 2;
  gw_log_set_level(GW_LOG_WARN);
  int lock = -1;
  /* a backup only reads (opened read-only; the one file LMDB may make,
   * its lock file, is made the directory owner's: st_backup_dir): root
   * may take it of any user's directory */
  if (strcmp(what, "backup") && data_dir_ok(&o)) return 1;
  if (!strcmp(what, "rotate") || !strcmp(what, "accept-restore")) {
    /* The running server keeps the key ring in memory: rotate offline. A
     * running server records its store's generation itself. */
    if ((lock = gw_data_lock(o.data)) < 0) {
      if (lock == -EWOULDBLOCK)
        fprintf(stderr, "mcpgate: %s is in use by a running mcpgate; stop it before %s\n", o.data,
                strcmp(what, "rotate") ? "restoring a backup" : "rotating the key");
      else
        fprintf(stderr, "mcpgate: cannot create %s/mcpgate.lock: %s\n", o.data, strerror(-lock));
      return 1;
    }
  }
  if (!strcmp(what, "backup")) return cmd_backup(&o);
  if (!strcmp(what, "accept-restore")) {
    int rc = cmd_accept_restore(&o);
    close(lock);
    return rc;
  }
  st_store *st;
  /* each of these reads the store through (the check, the rotation's
   * re-sealing): a damaged page is said, not a bare crash */
  char sdir[4096];
  snprintf(sdir, sizeof sdir, "%s/store", o.data);
  if (strcmp(what, "rotate") && live_read_only_view(&o, "store")) return 1;
  gw_store_guard_begin(sdir);
  if (open_store(&o, &st, true, strcmp(what, "rotate") != 0)) {
    gw_store_guard_end();
    if (lock >= 0) close(lock);
    return 1;
  }
  int rc = 0;
  if (!strcmp(what, "rotate")) {
    uint32_t old = st_key_current_id(st);
    if ((rc = st_key_rotate(st)) != 0) {
      fprintf(stderr, "mcpgate: key rotation failed: %s\n", st_strerror(rc));
      rc = 1;
    } else {
      printf("Master key rotated: key %u replaced key %u; every secret re-sealed.\n",
             st_key_current_id(st), old);
    }
  } else {
    int n = st_check(st, report, NULL);
    if (n < 0) {
      fprintf(stderr, "mcpgate: check could not run: %s\n", st_strerror(n));
      rc = 1;
    } else {
      /* a store older than its record: serve refuses it (gateway/core/stamp.c) */
      char path[4200];
      st_stamp_info si;
      snprintf(path, sizeof path, "%s/" GW_STAMP_FILE, o.data);
      if (st_stamp_check(st, path, &si) == 0 &&
          (si.state == ST_STAMP_OLDER || si.state == ST_STAMP_BAD_FILE || si.state == ST_STAMP_UNREADABLE)) {
        if (si.state == ST_STAMP_OLDER)
          printf("problem: store: older than the one this data directory last ran (generation %llu, %s says "
                 "%llu): restored from an older backup? serve refuses it until `mcpgate store accept-restore`\n",
                 (unsigned long long)si.store_gen, path, (unsigned long long)si.file_gen);
        else
          printf("problem: store: %s: %s; serve refuses to start until `mcpgate store accept-restore`\n", path,
                 st_stamp_state_str(si.state));
        n++;
      }
      if (n > 0) {
        printf("%d problem(s) found.\n", n);
        rc = 1;
      } else {
        printf("store ok (schema version %u)\n", st_schema_version(st));
      }
    }
  }
  gw_store_guard_end();
  st_close(st);
  if (lock >= 0) close(lock);
  return rc;
}

/* ---------- audit (offline, or beside a running server: LMDB readers) ---------- */

/* what audit verify collects: the problems (printed as found) and one
 * line per chain (printed once the log is known to be intact) */
typedef struct verify_out {
  int problems;
  uint64_t records, pruned, chains;
  gw_buf heads;
} verify_out;

static void audit_report(void *ctx, const char *uid, uint64_t seq, const char *msg) {
  verify_out *o = ctx;
  o->problems++;
  if (seq) printf("chain %s, record %llu: %s\n", uid, (unsigned long long)seq, msg);
  else if (*uid) printf("chain %s: %s\n", uid, msg);
  else printf("%s\n", msg);
}

/* A chain as verified, in the verification's snapshot: the records
 * checked (never those retention pruned before the first kept, which are
 * counted apart), the seqs they span, the head to compare with the
 * anchored "chain head" lines. */
static void chain_line(void *ctx, const audit_chain_summary *c) {
  verify_out *o = ctx;
  unsigned long long pruned = c->first > 1 ? (unsigned long long)(c->first - 1) : 0;
  o->records += c->checked;
  o->pruned += pruned;
  o->chains++;
  gw_buf_printf(&o->heads, "  tenant %s (chain %s): %llu record%s verified", c->tenant, c->uid,
                (unsigned long long)c->checked, c->checked == 1 ? "" : "s");
  if (c->first <= c->last)
    gw_buf_printf(&o->heads, ", seq %llu..%llu", (unsigned long long)c->first, (unsigned long long)c->last);
  if (pruned && c->first <= c->last) gw_buf_printf(&o->heads, " (%llu pruned before seq %llu)", pruned,
                                                   (unsigned long long)c->first);
  else if (pruned) gw_buf_printf(&o->heads, " (all %llu pruned)", pruned);
  gw_buf_printf(&o->heads, ", head seq %llu %s\n", (unsigned long long)c->last, c->hash);
}

static int emit_line(void *ctx, const char *bytes, size_t len) {
  (void)ctx;
  if (fwrite(bytes, 1, len, stdout) != len || fputc('\n', stdout) == EOF) return -1;
  return 0;
}

#define AUDIT_USAGE \
  "usage: mcpgate audit verify [--data DIR] | audit export TENANT [--since MS] [--until MS] [--data DIR]\n" \
  "       mcpgate audit prune --before MS [--data DIR]   (server stopped)\n"

/* A time flag's value (--since, --until, --before): milliseconds since
 * the epoch, digits only — at most 15 of them, as the admin API's — into
 * *ms; -1 said on stderr. Nothing else is taken for one: strtoll would
 * read "2026-01-01T00:00:00Z" as 2026 and "yesterday" as 0 (no bound),
 * and the records exported or pruned would not be those asked for. */
static int cli_ms(const char *flag, const char *v, int64_t *ms) {
  size_t n = strlen(v);
  if (!n || n > 15 || strspn(v, "0123456789") != n) {
    fprintf(stderr, "mcpgate: %s takes milliseconds since the epoch (digits only), not \"%.40s\"\n", flag, v);
    return -1;
  }
  *ms = strtoll(v, NULL, 10);
  return 0;
}

/* audit prune: the retention job by hand. The running server keeps its
 * chains' heads in step with what it writes: prune with it stopped. */
static int audit_prune_cmd(const cli_opts *o) {
  int64_t before = -1;
  if (!o->before || cli_ms("--before", o->before, &before) || before <= 0 || o->npos) {
    fprintf(stderr, AUDIT_USAGE);
    return 2;
  }
  int lock = gw_data_lock(o->data);
  if (lock < 0) {
    if (lock == -EWOULDBLOCK)
      fprintf(stderr, "mcpgate: %s is in use by a running mcpgate; stop it before pruning the audit log\n", o->data);
    else
      fprintf(stderr, "mcpgate: cannot create %s/mcpgate.lock: %s\n", o->data, strerror(-lock));
    return 1;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/audit", o->data);
  audit_options ao = {0};
  ao.dir = dir;
  ao.log = gw_store_log;
  ao.head_log_ms = -1;
  audit_log *a;
  int rc = access(dir, F_OK) == 0 ? audit_open(&a, &ao) : ST_ENOTFOUND;
  if (rc) {
    fprintf(stderr, "mcpgate: cannot open the audit log in %s: %s\n", dir, audit_strerror(rc));
    close(lock);
    return 1;
  }
  size_t n = 0, total = 0;
  do {
    rc = audit_prune(a, before, 10000, &n);
    total += n;
  } while (!rc && n == 10000);
  audit_close(a);
  close(lock);
  if (rc) {
    fprintf(stderr, "mcpgate: audit prune failed after %zu records: %s\n", total, audit_strerror(rc));
    return 1;
  }
  printf("%zu audit record(s) older than %lld pruned; the chains still verify.\n", total, (long long)before);
  return 0;
}

static int cmd_audit(int argc, char **argv) {
  if (argc < 1 || (strcmp(argv[0], "verify") && strcmp(argv[0], "export") && strcmp(argv[0], "prune"))) {
    fprintf(stderr, AUDIT_USAGE);
    return 2;
  }
  cli_opts o;
  if (scan(argc - 1, argv + 1, &o)) return 2;
  if (data_dir_ok(&o)) return 1;
  if (!strcmp(argv[0], "prune")) return audit_prune_cmd(&o);
  bool verify = !strcmp(argv[0], "verify");
  if (verify ? o.npos != 0 : o.npos != 1) {
    fprintf(stderr, AUDIT_USAGE);
    return 2;
  }
  /* export's range [since, until): 0 is no bound, as audit_export_chunk
   * takes it — but an until given as 0 (before the epoch) selects nothing,
   * as the admin API's */
  int64_t since = 0, until = 0;
  bool none = false;
  if (!verify && ((o.since && cli_ms("--since", o.since, &since)) || (o.until && cli_ms("--until", o.until, &until)))) {
    fprintf(stderr, AUDIT_USAGE);
    return 2;
  }
  if (!verify && since && until && since > until) {
    fprintf(stderr, "mcpgate: --since %lld is after --until %lld\n", (long long)since, (long long)until);
    return 2;
  }
  if (!verify && o.until && until == 0) none = true;
  gw_log_set_level(GW_LOG_WARN);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/audit", o.data);
  if (access(dir, F_OK) != 0) {
    fprintf(stderr, "mcpgate: no audit log in %s (use --data DIR)\n", o.data);
    return 1;
  }
  if (live_read_only_view(&o, "audit") || (!verify && live_read_only_view(&o, "store"))) return 1;
  char uid[ST_TENANT_UID_LEN + 1] = "";
  if (!verify) {
    st_store *st;
    if (open_store(&o, &st, false, true)) return 1;
    st_txn *txn;
    int rc = st_read_begin(st, &txn);
    if (!rc) {
      rc = st_tenant_uid_get(txn, o.pos[0], uid);
      st_txn_end(txn);
    }
    st_close(st);
    if (rc) {
      fprintf(stderr, "mcpgate: no tenant %s\n", o.pos[0]);
      return 1;
    }
  }
  st_options so = {0};
  so.dir = dir;
  so.schema = &audit_schema;
  so.log = gw_store_log;
  so.no_migrate = true; /* verify and export read: never migrated beside a running server */
  so.read_only = true;  /* nor written: a read-only mount can be verified */
  st_store *aud;
  int rc = st_open(&aud, &so);
  if (rc) {
    fprintf(stderr, "mcpgate: cannot open the audit log in %s: %s\n", dir, st_strerror(rc));
    return 1;
  }
  int out = 0;
  if (verify) {
    verify_out vo = {0};
    gw_buf_init(&vo.heads, 64u << 20);
    int n = audit_verify_chains(aud, NULL, audit_report, chain_line, &vo);
    if (n < 0) {
      fprintf(stderr, "mcpgate: audit verify could not run: %s\n", audit_strerror(n));
      out = 1;
    } else if (n > 0) {
      printf("%d problem(s) found.\n", n);
      out = 1;
    } else {
      printf("audit log ok: %llu record%s verified in %llu chain%s", (unsigned long long)vo.records,
             vo.records == 1 ? "" : "s", (unsigned long long)vo.chains, vo.chains == 1 ? "" : "s");
      if (vo.pruned) printf(" (%llu older ones pruned by retention)", (unsigned long long)vo.pruned);
      printf("\n");
      if (vo.heads.len) fwrite(vo.heads.data, 1, vo.heads.len, stdout);
      printf("Records cut from the end of a chain, or a chain deleted whole, leave every link intact:\n"
             "compare these heads with the \"chain head\" lines of the log you anchored.\n");
    }
    gw_buf_free(&vo.heads);
  } else {
    uint64_t after = none ? UINT64_MAX : 0; /* UINT64_MAX: nothing (audit_export_chunk) */
    for (;;) {
      st_txn *txn;
      if ((rc = st_read_begin(aud, &txn)) != 0) break;
      rc = audit_export_chunk(txn, uid, since, until, &after, 1000, emit_line, NULL);
      st_txn_end(txn);
      if (rc != AUDIT_EXPORT_MORE) break;
    }
    if (rc) {
      fprintf(stderr, "mcpgate: audit export failed: %s\n", audit_strerror(rc));
      out = 1;
    }
    fflush(stdout);
  }
  st_close(aud);
  return out;
}

/* ---------- serve ---------- */

static int cmd_serve(int argc, char **argv) {
  bool print = false;
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int n = 0;
  if (!rest) return 1;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      gw_config_help(stdout);
      free(rest);
      return 0;
    }
    if (!strcmp(argv[i], "--print-config")) print = true;
    else rest[n++] = argv[i];
  }
  gw_config cfg;
  char err[1024];
  int rc = gw_config_load(&cfg, n, rest, err, sizeof err);
  free(rest);
  if (rc) {
    fprintf(stderr, "mcpgate: %s\n", err);
    gw_config_free(&cfg);
    return 2;
  }
  if (print) {
    gw_config_print(&cfg, stdout);
    gw_config_free(&cfg);
    return 0;
  }
  return gw_serve(&cfg, gw_modules);
}

int gw_cli_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  int rc;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!strcmp(cmd, "serve")) rc = cmd_serve(argc - 2, argv + 2);
  else if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("mcpgate %s\n", VERSION);
    rc = 0;
  } else if (!strcmp(cmd, "config-doc")) {
    gw_config_markdown(stdout);
    rc = 0;
  } else if (!strcmp(cmd, "tenant")) rc = cmd_tenant(argc - 2, argv + 2);
  else if (!strcmp(cmd, "scim-token")) rc = cmd_token(argc - 2, argv + 2, "scim");
  else if (!strcmp(cmd, "admin-token")) rc = cmd_token(argc - 2, argv + 2, "admin");
  else if (!strcmp(cmd, "policy")) rc = cmd_policy(argc - 2, argv + 2);
  else if (!strcmp(cmd, "approvals")) rc = cmd_approvals(argc - 2, argv + 2);
  else if (!strcmp(cmd, "token")) rc = cmd_employee_token(argc - 2, argv + 2);
  else if (!strcmp(cmd, "backup")) rc = cmd_offline("backup", argc - 2, argv + 2);
  else if (!strcmp(cmd, "audit")) rc = cmd_audit(argc - 2, argv + 2);
  else if (!strcmp(cmd, "key") && argc >= 3 && !strcmp(argv[2], "rotate"))
    rc = cmd_offline("rotate", argc - 3, argv + 3);
  else if (!strcmp(cmd, "store") && argc >= 3 && !strcmp(argv[2], "check"))
    rc = cmd_offline("check", argc - 3, argv + 3);
  else if (!strcmp(cmd, "store") && argc >= 3 && !strcmp(argv[2], "accept-restore"))
    rc = cmd_offline("accept-restore", argc - 3, argv + 3);
  else {
    fprintf(stderr, "mcpgate: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    rc = 2;
  }
  curl_global_cleanup();
  return rc;
}
