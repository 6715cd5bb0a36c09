/* tests/bench/upstream.c — a small MCP upstream (Streamable HTTP) in C on
 * libuv + llhttp, for benchmarks: it must never be the bottleneck, so it
 * answers from precomputed bytes and parses only what it needs.
 *
 *   build/bench/upstream [--port N] [--tools N] [--events N]
 *
 * Prints "port N" on stdout once listening (port 0 picks one). Serves any
 * path:
 *   POST initialize                 → result, Mcp-Session-Id: bench-<n>
 *   POST notifications/…            → 202, no body
 *   POST tools/list                 → the N tools tool_0 … (precomputed)
 *   POST tools/call "stream"        → SSE: --events notifications/progress,
 *                                     then the result
 *   POST tools/call (any other)     → {"content":[{"type":"text","text":"ok"}]}
 *   POST ping / anything else       → {} (result)
 *   GET                             → an SSE stream held open (a comment
 *                                     first), ended only by the client
 *   DELETE                          → 200
 * Capabilities announce tools only (no listChanged, no logging): an
 * upstream with nothing to push.
 *
 * Rules it keeps: one request in flight per connection (clients that
 * pipeline get answers in order because llhttp is paused until the reply
 * is written); a body over 1 MiB closes the connection. The request's id
 * is copied verbatim into the reply (the bytes between "id": and the next
 * , or }), which is what a JSON-RPC server does for the ids benches send
 * (numbers and simple strings). */
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define BODY_MAX (1 << 20)

typedef struct conn {
  uv_tcp_t tcp;
  llhttp_t parser;
  llhttp_settings_t *settings;
  char *body;
  size_t blen, bcap;
  char hname[32];
  size_t hnlen;
  int is_get, is_delete;
  int streaming; /* a GET stream is open: nothing else is parsed */
  int closing;
} conn;

static char *tools_list_result; /* "\"result\":{\"tools\":[…]}" */
static size_t tools_list_len;
static int nevents = 100;
static unsigned long session_seq;

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  free(c->body);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

typedef struct wreq {
  uv_write_t w;
  conn *c;
  char *buf;
} wreq;

static void on_written(uv_write_t *w, int status) {
  wreq *r = (wreq *)w;
  free(r->buf);
  if (status < 0) conn_close(r->c);
  free(r);
}

static void send_bytes(conn *c, char *buf, size_t n) {
  wreq *r = malloc(sizeof *r);
  r->c = c;
  r->buf = buf;
  uv_buf_t b = uv_buf_init(buf, (unsigned)n);
  if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(buf);
    free(r);
    conn_close(c);
  }
}

/* The raw id value of the JSON-RPC request ("null" when absent). */
static void find_id(const char *b, size_t n, const char **id, size_t *idlen) {
  *id = "null";
  *idlen = 4;
  const char *p = memmem(b, n, "\"id\"", 4);
  if (!p) return;
  p += 4;
  const char *end = b + n;
  while (p < end && (*p == ' ' || *p == ':')) p++;
  const char *s = p;
  if (p < end && *p == '"') {
    p++;
    while (p < end && *p != '"') p += (*p == '\\') ? 2 : 1;
    if (p < end) p++;
  } else {
    while (p < end && *p != ',' && *p != '}' && *p != ' ') p++;
  }
  if (p > s) {
    *id = s;
    *idlen = (size_t)(p - s);
  }
}

static int has(const char *b, size_t n, const char *lit) { return memmem(b, n, lit, strlen(lit)) != NULL; }

static void reply(conn *c, int status, const char *extra_head, const char *ct, const char *body, size_t blen) {
  size_t cap = blen + 512 + (extra_head ? strlen(extra_head) : 0);
  char *out = malloc(cap);
  int h = snprintf(out, cap, "HTTP/1.1 %d %s\r\n%s%s%s%sContent-Length: %zu\r\n\r\n", status,
                   status == 200 ? "OK" : status == 202 ? "Accepted" : "Bad Request",
                   ct ? "Content-Type: " : "", ct ? ct : "", ct ? "\r\n" : "", extra_head ? extra_head : "", blen);
  memcpy(out + h, body, blen);
  send_bytes(c, out, (size_t)h + blen);
}

static void rpc_result(conn *c, const char *id, size_t idlen, const char *result, size_t rlen,
                       const char *extra_head) {
  size_t cap = idlen + rlen + 64;
  char *b = malloc(cap);
  int n = snprintf(b, cap, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,%.*s}", (int)idlen, id, (int)rlen, result);
  reply(c, 200, extra_head, "application/json", b, (size_t)n);
  free(b);
}

static void stream_call(conn *c, const char *id, size_t idlen) {
  /* progress token: the request's _meta.progressToken if any, else 1 */
  const char *tok = "1";
  size_t toklen = 1;
  const char *p = memmem(c->body, c->blen, "\"progressToken\"", 15);
  if (p) {
    const char *v = p + 15, *end = c->body + c->blen;
    while (v < end && (*v == ' ' || *v == ':')) v++;
    const char *s = v;
    if (v < end && *v == '"') {
      v++;
      while (v < end && *v != '"') v++;
      if (v < end) v++;
    } else {
      while (v < end && *v != ',' && *v != '}') v++;
    }
    if (v > s) tok = s, toklen = (size_t)(v - s);
  }
  size_t cap = (size_t)nevents * (toklen + 160) + idlen + 256;
  char *b = malloc(cap);
  size_t n = 0;
  for (int i = 0; i < nevents; i++)
    n += (size_t)snprintf(b + n, cap - n,
                          "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\","
                          "\"params\":{\"progressToken\":%.*s,\"progress\":%d,\"total\":%d}}\n\n",
                          (int)toklen, tok, i + 1, nevents);
  n += (size_t)snprintf(b + n, cap - n,
                        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%.*s,\"result\":{\"content\":"
                        "[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n",
                        (int)idlen, id);
  reply(c, 200, "Cache-Control: no-cache\r\n", "text/event-stream", b, n);
  free(b);
}

static int handle(conn *c) {
  if (c->is_get) {
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n5\r\n: ok\n\n\r\n";
    char *b = malloc(sizeof head);
    memcpy(b, head, sizeof head - 1);
    send_bytes(c, b, sizeof head - 1);
    c->streaming = 1;
    return 1;
  }
  if (c->is_delete) {
    reply(c, 200, NULL, NULL, "", 0);
    return 0;
  }
  const char *b = c->body ? c->body : "";
  size_t n = c->blen;
  const char *id;
  size_t idlen;
  find_id(b, n, &id, &idlen);
  if (has(b, n, "\"method\":\"notifications/") || has(b, n, "\"method\": \"notifications/") ||
      (!has(b, n, "\"method\"") && has(b, n, "\"result\""))) {
    reply(c, 202, NULL, NULL, "", 0);
    return 0;
  }
  if (has(b, n, "\"initialize\"")) {
    char head[96], res[512];
    snprintf(head, sizeof head, "Mcp-Session-Id: bench-%lu\r\n", ++session_seq);
    const char *ver = "2025-06-18";
    if (has(b, n, "2025-03-26")) ver = "2025-03-26";
    else if (has(b, n, "2025-11-25")) ver = "2025-11-25";
    int rl = snprintf(res, sizeof res,
                      "\"result\":{\"protocolVersion\":\"%s\",\"capabilities\":{\"tools\":{}},"
                      "\"serverInfo\":{\"name\":\"bench-upstream\",\"version\":\"1.0.0\"}}",
                      ver);
    rpc_result(c, id, idlen, res, (size_t)rl, head);
    return 0;
  }
  if (has(b, n, "\"tools/list\"")) {
    rpc_result(c, id, idlen, tools_list_result, tools_list_len, NULL);
    return 0;
  }
  if (has(b, n, "\"tools/call\"")) {
    if (has(b, n, "\"name\":\"stream\"")) {
      stream_call(c, id, idlen);
      return 0;
    }
    static const char ok[] = "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}";
    rpc_result(c, id, idlen, ok, sizeof ok - 1, NULL);
    return 0;
  }
  static const char empty[] = "\"result\":{}";
  rpc_result(c, id, idlen, empty, sizeof empty - 1, NULL);
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn *c = p->data;
  c->blen = 0;
  c->is_get = c->is_delete = 0;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->blen + n > BODY_MAX) return -1;
  if (c->blen + n > c->bcap) {
    size_t cap = c->bcap ? c->bcap : 4096;
    while (cap < c->blen + n) cap *= 2;
    char *nb = realloc(c->body, cap);
    if (!nb) return -1;
    c->body = nb;
    c->bcap = cap;
  }
  memcpy(c->body + c->blen, at, n);
  c->blen += n;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  c->is_get = llhttp_get_method(p) == HTTP_GET;
  c->is_delete = llhttp_get_method(p) == HTTP_DELETE;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  if (handle(c)) return HPE_PAUSED;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char buf[65536];
  (void)h;
  (void)hint;
  *b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n == 0 || c->streaming) return;
  llhttp_errno_t e = llhttp_execute(&c->parser, b->base, (size_t)n);
  if (e == HPE_PAUSED) return; /* a GET stream: the rest is ignored */
  if (e != HPE_OK) conn_close(c);
}

static llhttp_settings_t settings;

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  int port = 0, ntools = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tools")) ntools = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--events")) nevents = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: upstream [--port N] [--tools N] [--events N]\n");
      return 2;
    }
  }
  /* tools/list, precomputed: echo, stream, then tool_0 … */
  size_t cap = (size_t)ntools * 256 + 1024, n = 0;
  tools_list_result = malloc(cap);
  n += (size_t)snprintf(tools_list_result + n, cap - n,
                        "\"result\":{\"tools\":[{\"name\":\"echo\",\"description\":\"answers ok\","
                        "\"inputSchema\":{\"type\":\"object\"}},{\"name\":\"stream\",\"description\":"
                        "\"progress events, then ok\",\"inputSchema\":{\"type\":\"object\"}}");
  for (int i = 0; i < ntools; i++)
    n += (size_t)snprintf(tools_list_result + n, cap - n,
                          ",{\"name\":\"tool_%d\",\"description\":\"bench tool %d\",\"inputSchema\":"
                          "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}}",
                          i, i);
  n += (size_t)snprintf(tools_list_result + n, cap - n, "]}");
  tools_list_len = n;

  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;

  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t srv;
  uv_tcp_init(loop, &srv);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  if (uv_tcp_bind(&srv, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&srv, 1024, on_connection) != 0) {
    fprintf(stderr, "upstream: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&srv, (struct sockaddr *)&ss, &len);
  printf("port %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
