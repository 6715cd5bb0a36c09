/* gateway/mcp/audit_call.c — the audit record of a tools/call (private to
 * gateway/mcp/; the log itself is gateway/mcp/audit_log.h).
 *
 * A call's record is begun where its decision is made (decide.c's callers:
 * direct.c for /mcp/{connector}, agg_call.c for /mcp), kept on the
 * exchange while the call runs, and submitted when the exchange ends
 * (gw__x_unref), with what the upstream answered: its HTTP status, the
 * duration, the bytes each way, and whether the tool reported an error.
 * A refused call (block, approve, unknown tool) is recorded with its
 * decision and no upstream part; a call refused because the log cannot
 * record (gw__audit_refuse) with the decision "unaudited", never the
 * policy's "allow": while the environment fails its record waits in the
 * queue and is written once a commit succeeds, where "allow" with no
 * upstream part would read as a call made.
 *
 * Rules this file keeps, and why:
 *  - Nothing here waits: the record is a small JSON object, submitted to
 *    the audit queue (a mutex and an append).
 *  - Arguments are the client's, masked by key (audit_redact, and the
 *    tenant's audit_redact setting) or reduced to a digest (audit_args)
 *    before they are queued; a body the strict scan already accepted is
 *    only parsed for its "arguments" member.
 *  - The tenant's patterns are read only for a call whose arguments are
 *    recorded, from the loop's memo of the tenant's settings for the
 *    current store snapshot (memo.h): with the dispatch's pinned read
 *    transaction that is no store read at all while nothing was written,
 *    and a PATCH of the settings (a write, committed before its reply)
 *    makes the next call read them afresh. When they cannot be read the
 *    arguments are recorded as "[redacted]" as a whole: a tenant's mask
 *    is never skipped (fail closed).
 *  - When the log cannot record and audit_on_failure is deny, the call is
 *    refused before it goes upstream (gw__audit_refuse): fail closed.
 *  - "is_error" is read from the relayed bytes as they pass (tool_error.h:
 *    result.isError of a message, any JSON spelling, any chunking, a JSON
 *    body or an SSE stream; a member "isError" elsewhere never counts),
 *    without building the answer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <uv.h>

#include "audit/audit.h"
#include "gateway/base/buf.h"
#include "gateway/base/clock.h"

#include "gateway/mcp/audit_log.h"
#include "gateway/core/server.h"
#include "gateway/core/settings.h"
#include "gateway/mcp/decide.h"
#include "gateway/mcp/mcp_loop.h"
#include "gateway/mcp/memo.h"
#include "gateway/mcp/sse.h"
#include "gateway/mcp/tool_error.h"
#include "store/tenant.h"

/* The decision of an open record (data/len/cap as gw__audit_call_begin
 * left it, dec the offset of the value's opening quote) becomes d: the
 * value is a decision's name (no escapes), so its closing quote is the
 * next one. 0, or -1 when the block cannot grow (nothing changed). */
static int redecide(gw_call_rec *r, const char *d) {
  size_t at = r->dec + 1;
  const char *q = at < r->len ? memchr(r->data + at, '"', r->len - at) : NULL;
  if (!q) return -1;
  size_t old = (size_t)(q - (r->data + at)), nl = strlen(d);
  gw_buf b;
  gw_buf_init(&b, audit_text_headroom() + AUDIT_RECORD_MAX + 256);
  b.data = r->data;
  b.len = r->len;
  b.cap = r->cap;
  if (nl > old && gw_buf_reserve(&b, b.len + (nl - old))) return -1;
  memmove(b.data + at + nl, b.data + at + old, b.len - at - old);
  memcpy(b.data + at, d, nl);
  b.len = b.len - old + nl;
  b.data[b.len] = 0;
  r->data = b.data;
  r->len = b.len;
  r->cap = b.cap;
  return 0;
}

/* x's open records (a batch's too) say "unaudited": the call they record
 * is refused for the log, and it never goes upstream. A record that
 * cannot say so is not kept (never one that reads "allow" with no
 * upstream part once the log writes it). */
static void mark_unaudited(gw_exchange *x) {
  for (size_t i = 0; i < x->audit_nbatch; i++) {
    gw_call_rec *r = &x->audit_batch[i];
    if (r->data && redecide(r, "unaudited")) {
      free(r->data);
      r->data = NULL;
    }
  }
  if (x->audit) {
    gw_call_rec r = {x->audit, x->audit_len, x->audit_cap, x->audit_dec};
    if (redecide(&r, "unaudited")) {
      free(x->audit);
      x->audit = NULL;
    } else {
      x->audit = r.data;
      x->audit_len = r.len;
      x->audit_cap = r.cap;
    }
  }
}

void gw__audit_call_redecide(gw_exchange *x, const char *decision) {
  if (!x->audit) return;
  gw_call_rec r = {x->audit, x->audit_len, x->audit_cap, x->audit_dec};
  if (redecide(&r, decision)) {
    free(x->audit); /* never kept reading the decision it no longer has */
    x->audit = NULL;
    return;
  }
  x->audit = r.data;
  x->audit_len = r.len;
  x->audit_cap = r.cap;
}

bool gw__audit_refuse(gw_exchange *x) {
  if (!gw_audit_refuses(x->lp->srv)) return false;
  /* recorded as refused for the log, not as the policy's decision: while
   * the environment fails the record waits in the queue, and is written
   * when a commit succeeds again */
  mark_unaudited(x);
  gw__x_rpc_error(x, 503, -32603,
                  "the gateway cannot record this call in its audit log right now, so it is refused "
                  "(audit_on_failure = deny); try again shortly");
  return true;
}

#define TOOL_MAX 256

/* Members written straight into the record's buffer: one room check per
 * member, then plain stores (the record is built on every call: per-append
 * checks and calls cost more than the bytes). */

/* key (a constant `,"name":` of kl bytes) then the JSON string of s (n
 * bytes of valid UTF-8: names the strict scan or jansson read, ids the
 * store holds); -1 past the record's cap */
static int put_kv(gw_buf *b, const char *key, size_t kl, const char *s, size_t n) {
  static const char hx[] = "0123456789abcdef";
  /* bytes that need an escape: controls, '"' and '\\' */
  static const unsigned char esc[256] = {
      [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,
  };
  if (n > AUDIT_RECORD_MAX || gw_buf_reserve(b, b->len + kl + 2 + 6 * n)) return -1;
  char *o = b->data + b->len;
  memcpy(o, key, kl);
  o += kl;
  *o++ = '"';
  for (size_t i = 0; i < n;) {
#if defined(__SSE2__)
    /* sixteen bytes at a time while none of them needs an escape (ids,
     * names: every one of the record's strings on the usual call) */
    while (i + 16 <= n) {
      __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
      __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
      if (_mm_movemask_epi8(bad)) break;
      _mm_storeu_si128((__m128i *)(void *)o, v);
      o += 16;
      i += 16;
    }
#endif
    /* eight bytes at a time while none of them needs an escape (a byte
     * below 0x20, '"' or '\\': the zero-byte test on w, w ^ '"', w ^ '\\';
     * a false alarm only sends those bytes down the byte path) */
    while (i + 8 <= n) {
      uint64_t w, q, bs;
      memcpy(&w, s + i, 8);
      q = w ^ 0x2222222222222222ull;
      bs = w ^ 0x5c5c5c5c5c5c5c5cull;
      if ((((w - 0x2020202020202020ull) & ~w) | ((q - 0x0101010101010101ull) & ~q) |
           ((bs - 0x0101010101010101ull) & ~bs)) & 0x8080808080808080ull)
        break;
      memcpy(o, &w, 8);
      o += 8;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = (unsigned char)s[i++];
    if (!esc[c]) {
      *o++ = (char)c;
    } else if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else {
      memcpy(o, "\\u00", 4);
      o[4] = hx[c >> 4];
      o[5] = hx[c & 15];
      o += 6;
    }
  }
  *o++ = '"';
  *o = 0;
  b->len = (size_t)(o - b->data);
  return 0;
}
#define PUT_STR(b, key, s) put_kv((b), key, sizeof key - 1, (s), strlen(s))

/* key then a decimal integer */
static int put_ki(gw_buf *b, const char *key, size_t kl, long long v) {
  if (gw_buf_reserve(b, b->len + kl + 24)) return -1;
  memcpy(b->data + b->len, key, kl);
  b->len += kl;
  b->len += gw_itoa(v, b->data + b->len);
  return 0;
}
#define PUT_INT(b, key, v) put_ki((b), key, sizeof key - 1, (long long)(v))

/* The tenant's audit_redact, copied into buf (cap > AUDIT_REDACT_VALUE_MAX;
 * "" when unset). 0, or a store error (nothing is known). */
int gw__audit_tenant_redact(gw_exchange *x, char *buf, size_t cap) {
  gw_proxy *p = gw__mcp_of(x->lp);
  gw_memo *memo = p ? p->memo : NULL;
  st_txn *txn;
  buf[0] = 0;
  int rc = gw__read_begin(x->lp, &txn);
  if (rc) return rc;
  uint64_t snap = st_txn_snapshot(txn);
  const json_t *set = gw_memo_settings_get(memo, snap, x->tenant);
  json_t *rec = NULL, *own = NULL;
  if (!set) {
    rc = st_tenant_get(txn, x->tenant, &rec);
    if (rc == ST_ENOTFOUND) rc = 0; /* gone since: nothing of its own to add */
    set = json_object_get(rec, "settings");
    if (!rc && !json_is_object(set)) set = own = json_object();
    if (!rc && set) gw_memo_settings_put(memo, snap, x->tenant, (json_t *)set);
  }
  if (!rc) gw_strlcpy(buf, gw_settings_string(set, "audit_redact"), cap);
  json_decref(own);
  json_decref(rec);
  gw__read_end(x->lp, txn);
  return rc;
}

#define ARGS_ROOM_SLACK 4096 /* the record's members after its arguments (bytes, status, times...) */

void gw__audit_call_begin(gw_exchange *x, const char *connector, const char *tool, const char *decision,
                          int policy_version, const json_t *args, const char *args_raw, size_t args_len) {
  gw_server *srv = x->lp->srv;
  if (!srv->audit) return;
  if (x->audit) {
    /* a batch (one exchange, one upstream answer for all its calls): each
     * call its own record, every one completed with that answer when the
     * exchange ends — submitted now, an earlier call that went upstream
     * would read as one never made */
    gw_call_rec *nb = realloc(x->audit_batch, (x->audit_nbatch + 1) * sizeof *nb);
    if (nb) {
      nb[x->audit_nbatch++] = (gw_call_rec){x->audit, x->audit_len, x->audit_cap, x->audit_dec};
      x->audit_batch = nb;
      x->audit = NULL;
    } else {
      gw__audit_call_end(x);
    }
  }
  /* the record as text (audit_submit_text): no tree, no parse of what the
   * scan already checked; closed by gw__audit_call_end */
  gw_buf b;
  size_t head = audit_text_headroom();
  gw_buf_init(&b, head + AUDIT_RECORD_MAX);
  /* one block for the usual record (ids, names, the end's members), built
   * after the audit queue's entry header: the block is queued as it is
   * (audit_submit_block), never copied, and usually one the log recycled
   * (it grows like any buffer for large arguments) */
  int rc = -1;
  if ((b.data = gw_audit_block_get(srv))) {
    b.cap = AUDIT_BLOCK_BYTES;
    b.len = head;
    rc = gw_buf_reserve(&b, head + 768 + (args_len < AUDIT_RECORD_MAX / 2 ? args_len : 0));
  }
  rc = rc || gw_buf_appends(&b, "{\"kind\":\"call\"") || PUT_INT(&b, ",\"time\":", gw_wall_ms()) ||
           PUT_STR(&b, ",\"user\":", x->user);
  if (!rc && x->sid[0]) rc = PUT_STR(&b, ",\"session\":", x->sid);
  if (!rc && x->tokid[0]) rc = PUT_STR(&b, ",\"client\":", x->tokid);
  if (!rc) rc = PUT_STR(&b, ",\"connector\":", connector ? connector : "");
  if (!rc) {
    /* at most 256 bytes of the name, cut between characters: a record
     * with broken UTF-8 would not parse when read back */
    size_t tl = tool ? strnlen(tool, TOOL_MAX) : 0;
    if (tl == TOOL_MAX && ((unsigned char)tool[tl] & 0xC0) == 0x80)
      while (tl && ((unsigned char)tool[tl] & 0xC0) == 0x80) tl--;
    rc = put_kv(&b, ",\"tool\":", 8, tool ? tool : "", tl);
  }
  size_t dec = b.len + sizeof ",\"decision\":" - 1;
  if (!rc) rc = PUT_STR(&b, ",\"decision\":", decision);
  if (!rc && policy_version >= 0) rc = PUT_INT(&b, ",\"policy_version\":", policy_version);
  if (!rc && (args || args_len) && gw_audit_records_args(srv)) {
    char tred[AUDIT_REDACT_VALUE_MAX + 1];
    if (gw__audit_tenant_redact(x, tred, sizeof tred) != 0)
      rc = gw_buf_appends(&b, ",\"arguments\":\"[redacted]\"");
    else
      /* the arguments get what the record's cap leaves after the other
       * members (ARGS_ROOM_SLACK for the end's): past it their digest, so
       * a call is never made unrecorded because its arguments fit
       * audit_args_max but not the record */
      rc = gw_audit_args_append(srv, &b, args, args_raw, args_len, tred,
                                AUDIT_RECORD_MAX - ARGS_ROOM_SLACK - (b.len - head));
  }
  if (!rc) rc = PUT_INT(&b, ",\"bytes_in\":", x->req ? (long long)x->req->body_len : 0);
  if (rc) {
    gw_buf_free(&b);
    return;
  }
  x->audit = b.data;
  x->audit_len = b.len;
  x->audit_cap = b.cap;
  x->audit_dec = dec;
  x->audit_start_ns = uv_hrtime();
  x->audit_bytes_out = 0;
  x->audit_scan_on = false;
}

/* The scan (tool_error.h) costs ~28 instructions a byte outside strings;
 * most answers cannot say isError at all: without the bytes "isError" or
 * a \u escape (the only way a key spells letters otherwise) no member of
 * theirs is named so. So the scan runs only once one of those appears —
 * then from the start of what buf holds, which is where the scan's state
 * would be anyway: the whole answer (buffered), or the bytes after the
 * last complete SSE event (relayed: each event starts the scan afresh,
 * and the events before had neither). */
void gw__audit_call_seen(gw_exchange *x, size_t n, const gw_buf *buf, size_t at) {
  if (!x->audit) return;
  x->audit_bytes_out += n;
  if (!buf) return;
  if (!x->audit_scan_on) {
    /* the answer's content type is known by its first byte */
    gw__tool_error_init(&x->audit_scan, gw__sse_is(x->up_ct));
    x->audit_scan_on = true;
    x->audit_scan_fed = false;
  }
  if (x->audit_scan_fed) {
    gw__tool_error_feed(&x->audit_scan, buf->data + at, buf->len - at);
    return;
  }
  size_t from = at > 6 ? at - 6 : 0; /* a name split across two reads */
  if (!gw_memmem(buf->data + from, buf->len - from, "isError", 7) &&
      !gw_memmem(buf->data + from, buf->len - from, "\\u", 2))
    return;
  x->audit_scan_fed = true;
  gw__tool_error_feed(&x->audit_scan, buf->data, buf->len);
}

/* Completes one open record (data/len/cap: a block as gw__audit_call_begin
 * left it) with the exchange's upstream part and submits it. */
static void call_finish(gw_exchange *x, char *data, size_t len, size_t cap, uint64_t duration_us) {
  gw_buf b;
  size_t head = audit_text_headroom();
  gw_buf_init(&b, head + AUDIT_RECORD_MAX + 256);
  b.data = data;
  b.len = len;
  b.cap = cap;
  int rc = 0;
  if (x->status) rc = PUT_INT(&b, ",\"upstream_status\":", x->status);
  /* The answer's stream ended with an event id and without the reply: the
   * upstream (2025-11-25 polling) sends it on the GET the client resumes
   * with, which this exchange never sees — whether it says isError is not
   * known here, and the record says so rather than "false". */
  bool resumed = x->kind == GW_X_POST && x->resumable && json_array_size(x->replied) < json_array_size(x->ids);
  bool found = x->audit_scan_on && x->audit_scan.found;
  if (!rc)
    rc = PUT_INT(&b, ",\"duration_us\":", duration_us) ||
         PUT_INT(&b, ",\"bytes_out\":", x->audit_bytes_out) ||
         gw_buf_appends(&b, found     ? ",\"is_error\":true}"
                            : resumed ? ",\"is_error\":null,\"resumed\":true}"
                                      : ",\"is_error\":false}");
  if (!rc) gw_audit_submit_block(x->lp->srv, x->tenant, x->tenant_uid, b.data, b.len - head, b.cap); /* takes it */
  else gw_buf_free(&b);
}

void gw__audit_call_end(gw_exchange *x) {
  if (!x->audit && !x->audit_nbatch) return;
  uint64_t duration_us = (uv_hrtime() - x->audit_start_ns) / 1000;
  /* a batch's calls in their order, each with the batch's answer */
  for (size_t i = 0; i < x->audit_nbatch; i++)
    if (x->audit_batch[i].data) /* NULL: not kept (mark_unaudited) */
      call_finish(x, x->audit_batch[i].data, x->audit_batch[i].len, x->audit_batch[i].cap, duration_us);
  free(x->audit_batch);
  x->audit_batch = NULL;
  x->audit_nbatch = 0;
  char *data = x->audit;
  x->audit = NULL;
  if (data) call_finish(x, data, x->audit_len, x->audit_cap, duration_us);
}
