/* gateway/mcp/tool_error.c — does a relayed answer report a tool error?
 * (see tool_error.h).
 *
 * Rules this file keeps, and why:
 *  - It runs on every relayed byte of every tools/call (the loop's hot
 *    path), so it builds nothing: a state machine over the bytes with at
 *    most three frames (a top-level array, a message, its result). What no
 *    one looks into — a container anywhere else, any string but a key of
 *    those frames — is crossed by counting brackets and finding quotes,
 *    a table lookup per byte; keys are compared as they are read.
 *  - The state survives any chunking: every token may end in the next
 *    read (a key, an escape, a literal, a CRLF).
 *  - Never a false positive on another member: a key is compared after
 *    its escapes are decoded, only in the result object of a message, and
 *    a value counts only as the literal true. Invalid JSON stops the scan
 *    (the message is one no client reads). */
#include "gateway/mcp/tool_error.h"

#include <stdint.h>
#include <string.h>

enum { R_ARR = 1, R_MSG, R_RES };        /* frame roles */
enum { K_OTHER = 0, K_RESULT, K_ISERROR }; /* the member whose value comes */
enum {
  J_VALUE,    /* a value expected (whitespace first) */
  J_AFTER,    /* after a value: ',' or the frame's end */
  J_KEYQ,     /* a key's opening quote expected, or '}' */
  J_KEY,      /* in a key */
  J_KEY_ESC,  /* after a backslash in a key */
  J_KEY_U,    /* in a key's \u escape */
  J_COLON,    /* ':' expected */
  J_STR,      /* in a string value no one looks into */
  J_STR_ESC,  /* after a backslash in it */
  J_LIT,      /* in a literal or number */
  J_SKIP,     /* inside a container no one looks into (skip deep) */
  J_SKIP_STR, /* in a string there */
  J_SKIP_ESC, /* after a backslash in it */
  J_DEAD      /* not JSON: nothing more of this message is read */
};
enum {
  L_START, /* a line starts */
  L_BOM,   /* a byte order mark (fpos bytes of it) before the event's first line */
  L_FIELD, /* fpos bytes of "data:" matched */
  L_DATA1, /* after "data:": one space is dropped */
  L_DATA,  /* in a data line's value: the message's bytes */
  L_OTHER  /* in any other line */
};

#define C_STR 1  /* ends a run inside a string */
#define C_SKIP 2 /* matters inside a skipped container */
#define C_EOL 4  /* ends an SSE line */
#define C_WS 8   /* JSON whitespace */
#define C_LIT 16 /* may be part of a literal or a number */
static const unsigned char cls[256] = {
    ['"'] = C_STR | C_SKIP, ['\\'] = C_STR,    ['{'] = C_SKIP,         ['}'] = C_SKIP,
    ['['] = C_SKIP,         [']'] = C_SKIP,    ['\n'] = C_EOL | C_WS,  ['\r'] = C_EOL | C_WS,
    [' '] = C_WS,           ['\t'] = C_WS,     ['0' ... '9'] = C_LIT,  ['a' ... 'z'] = C_LIT,
    ['A' ... 'Z'] = C_LIT,  ['+'] = C_LIT,     ['-'] = C_LIT,          ['.'] = C_LIT,
};

static void json_reset(gw_tool_error_scan *s) {
  s->st = J_VALUE;
  s->n = 0;
  s->skip = 0;
}

void gw__tool_error_init(gw_tool_error_scan *s, bool sse) {
  memset(s, 0, sizeof *s);
  s->sse = sse;
  s->ev_start = true;
  s->line = L_START;
  json_reset(s);
}

static void tok_add(gw_tool_error_scan *s, unsigned char c) {
  if (s->tlen < GW_TOOL_ERROR_TOK) s->tok[s->tlen] = (char)c;
  if (s->tlen <= GW_TOOL_ERROR_TOK) s->tlen++; /* past the buffer: longer than any name compared */
}

static bool tok_is(const gw_tool_error_scan *s, const char *lit, size_t n) {
  return s->tlen == n && !memcmp(s->tok, lit, n);
}

/* The top frame ends: a result hands its verdict to its message (the last
 * "result" member wins), a complete message with one counts. */
static void frame_end(gw_tool_error_scan *s) {
  uint8_t k = --s->n;
  if (s->f[k].role == R_RES) s->f[k - 1].err = s->f[k].err;
  else if (s->f[k].role == R_MSG && s->f[k].err) s->found = true;
  s->st = J_AFTER;
}

/* A value begins with c (not whitespace) where one is expected. */
static void value_start(gw_tool_error_scan *s, unsigned char c) {
  gw_tool_error_frame *t = s->n ? &s->f[s->n - 1] : NULL;
  uint8_t role = 0;
  if (t && t->role == R_MSG && t->key == K_RESULT) t->err = false; /* a result: none until it ends saying so */
  if (t && t->role == R_RES && t->key == K_ISERROR) t->err = false; /* true only as the literal (J_LIT) */
  if (c == '{') role = !t || t->role == R_ARR ? R_MSG : t->role == R_MSG && t->key == K_RESULT ? R_RES : 0;
  else if (c == '[') role = !t ? R_ARR : 0;
  if (role) {
    s->f[s->n].role = role;
    s->f[s->n].key = K_OTHER;
    s->f[s->n].err = false;
    s->n++;
    s->st = role == R_ARR ? J_VALUE : J_KEYQ;
  } else if (c == '{' || c == '[') {
    s->skip = 1;
    s->st = J_SKIP;
  } else if (c == '"') {
    s->st = J_STR;
  } else if (cls[c] & C_LIT) {
    s->tlen = 0;
    tok_add(s, c);
    s->st = J_LIT;
  } else if (c == ']' && t && t->role == R_ARR) {
    frame_end(s); /* an empty top-level array */
  } else {
    s->st = J_DEAD;
  }
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The next byte c in p[i..n) (n: none), with the answer of the last
 * search kept in *at: the search is made again only once i passed it, so
 * finding every quote of a chunk reads the chunk once (memchr's speed,
 * never a rescan per escape). *at starts past n. */
static size_t next_of(const unsigned char *p, size_t i, size_t n, int c, size_t *at) {
  if (*at < i || *at > n) {
    const unsigned char *q = memchr(p + i, c, n - i);
    *at = q ? (size_t)(q - p) : n;
  }
  return *at;
}

/* n bytes of one message's JSON text. */
static void json_feed(gw_tool_error_scan *s, const unsigned char *p, size_t n) {
  size_t i = 0, quote = SIZE_MAX, bslash = SIZE_MAX; /* next_of's answers */
  while (i < n) {
    unsigned char c = p[i];
    gw_tool_error_frame *t = s->n ? &s->f[s->n - 1] : NULL;
    switch (s->st) {
    case J_VALUE:
      if (!(cls[c] & C_WS)) value_start(s, c);
      i++;
      break;
    case J_AFTER:
      i++;
      if (cls[c] & C_WS) break;
      if (!t) s->st = J_DEAD; /* after the top-level value: nothing but whitespace */
      else if (c == ',') s->st = t->role == R_ARR ? J_VALUE : J_KEYQ;
      else if (c == (t->role == R_ARR ? ']' : '}')) frame_end(s);
      else s->st = J_DEAD;
      break;
    case J_KEYQ:
      i++;
      if (cls[c] & C_WS) break;
      if (c == '"') {
        s->tlen = 0;
        s->st = J_KEY;
      } else if (c == '}') {
        frame_end(s);
      } else {
        s->st = J_DEAD;
      }
      break;
    case J_KEY:
      i++;
      if (c == '\\') {
        s->st = J_KEY_ESC;
      } else if (c == '"') {
        t->key = t->role == R_MSG && tok_is(s, "result", 6)   ? K_RESULT
                 : t->role == R_RES && tok_is(s, "isError", 7) ? K_ISERROR
                                                               : K_OTHER;
        s->st = J_COLON;
      } else {
        tok_add(s, c);
      }
      break;
    case J_KEY_ESC: {
      i++;
      static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
      const char *e = c ? strchr(from, c) : NULL;
      if (e) {
        tok_add(s, (unsigned char)to[e - from]);
        s->st = J_KEY;
      } else if (c == 'u') {
        s->u = 0;
        s->ulen = 0;
        s->st = J_KEY_U;
      } else {
        s->st = J_DEAD;
      }
      break;
    }
    case J_KEY_U: {
      i++;
      int v = hexval(c);
      if (v < 0) {
        s->st = J_DEAD;
        break;
      }
      s->u = (uint16_t)(s->u << 4 | v);
      if (++s->ulen == 4) {
        tok_add(s, s->u < 0x80 ? (unsigned char)s->u : 0x80); /* beyond ASCII: no name compared */
        s->st = J_KEY;
      }
      break;
    }
    case J_COLON:
      i++;
      if (c == ':') s->st = J_VALUE;
      else if (!(cls[c] & C_WS)) s->st = J_DEAD;
      break;
    case J_STR:
    case J_SKIP_STR: {
      /* the string's text is most of an answer: crossed at memchr's speed */
      size_t q = next_of(p, i, n, '"', &quote), b = next_of(p, i, n, '\\', &bslash);
      i = q < b ? q : b;
      if (i == n) break;
      if (p[i++] == '\\') s->st = s->st == J_STR ? J_STR_ESC : J_SKIP_ESC;
      else s->st = s->st == J_STR ? J_AFTER : J_SKIP;
      break;
    }
    case J_STR_ESC:
      i++;
      s->st = J_STR;
      break;
    case J_SKIP_ESC:
      i++;
      s->st = J_SKIP_STR;
      break;
    case J_LIT:
      if (cls[c] & C_LIT) {
        tok_add(s, c);
        i++;
        break;
      }
      if (t && t->role == R_RES && t->key == K_ISERROR) t->err = tok_is(s, "true", 4);
      s->st = J_AFTER; /* c is read again there */
      break;
    case J_SKIP:
      while (i < n && !(cls[p[i]] & C_SKIP)) i++;
      if (i == n) break;
      c = p[i++];
      if (c == '"') s->st = J_SKIP_STR;
      else if (c == '{' || c == '[') s->skip++;
      else if (--s->skip == 0) s->st = J_AFTER;
      break;
    default: /* J_DEAD */
      return;
    }
  }
}

/* An SSE line ended: an empty one ends the event (the next message starts
 * afresh); a data line's value is joined to the next one's with "\n". */
static void line_end(gw_tool_error_scan *s) {
  if (s->line == L_START) {
    json_reset(s);
    s->ev_start = true;
  } else if (s->line == L_DATA1 || s->line == L_DATA) {
    json_feed(s, (const unsigned char *)"\n", 1);
  }
  s->line = L_START;
  s->fpos = 0;
}

bool gw__tool_error_feed(gw_tool_error_scan *s, const char *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  if (s->found) return true;
  if (!s->sse) {
    json_feed(s, p, n);
    return s->found;
  }
  size_t lf = SIZE_MAX, cr = SIZE_MAX; /* next_of's answers */
  for (size_t i = 0; i < n && !s->found;) {
    unsigned char c = p[i];
    if (s->cr) {
      s->cr = false;
      if (c == '\n') { /* the CR's CRLF */
        i++;
        continue;
      }
    }
    if (cls[c] & C_EOL) {
      line_end(s);
      s->cr = c == '\r';
      i++;
      continue;
    }
    switch (s->line) {
    case L_START:
      s->line = s->ev_start && c == 0xEF ? L_BOM : L_FIELD;
      s->ev_start = false;
      if (s->line == L_BOM) s->fpos = 1, i++;
      break;
    case L_BOM:
      if (c == (s->fpos == 1 ? 0xBB : 0xBF)) {
        i++;
        if (++s->fpos == 3) s->line = L_FIELD, s->fpos = 0;
      } else {
        s->line = L_OTHER;
      }
      break;
    case L_FIELD:
      if (c != (unsigned char)"data:"[s->fpos]) {
        s->line = L_OTHER;
        break;
      }
      i++;
      if (++s->fpos == 5) s->line = L_DATA1;
      break;
    case L_DATA1:
      if (c == ' ') i++;
      s->line = L_DATA;
      break;
    default: { /* L_DATA, L_OTHER: to the line's end */
      size_t a = next_of(p, i, n, '\n', &lf), b = next_of(p, i, n, '\r', &cr), j = a < b ? a : b;
      if (s->line == L_DATA) json_feed(s, p + i, j - i);
      i = j;
    }
    }
  }
  return s->found;
}
