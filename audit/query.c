/* audit/query.c — the read side: audit_query (newest first, filtered,
 * paged by an opaque cursor) and audit_export_chunk (oldest first,
 * resumable by seq).
 *
 * Both run in the caller's read transaction and examine at most
 * AUDIT_SCAN_MAX records and AUDIT_SCAN_BYTES_MAX stored bytes (then the
 * record that passes it) per call, so a selective filter over a long chain
 * of large records never pins a snapshot for long nor parses more than
 * that: the caller continues with a new short txn. Paging is by seq, not by offset, so pages stay exact while records
 * are appended (new records get higher seqs than any cursor). The query
 * reads records by key from the head's last seq downwards (the store's
 * cursors only walk forwards); the export walks a cursor forwards. */
#include "audit/audit_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURSOR_LEN 17 /* 'q' + 16 lowercase hex digits of the next seq to examine */

static void cursor_make(uint64_t seq, char out[AUDIT_CURSOR_MAX]) {
  snprintf(out, AUDIT_CURSOR_MAX, "q%016" PRIx64, seq);
}

static bool cursor_parse(const char *s, uint64_t *seq) {
  uint64_t v = 0;
  if (strlen(s) != CURSOR_LEN || s[0] != 'q') return false;
  for (int i = 1; i < CURSOR_LEN; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | (uint64_t)d;
  }
  if (v == 0) return false;
  *seq = v;
  return true;
}

static bool str_match(json_t *rec, const char *member, const char *want) {
  if (!want) return true;
  const char *have = json_string_value(json_object_get(rec, member));
  return have && strcmp(have, want) == 0;
}

static bool time_in(json_t *t, int64_t since, int64_t until) {
  if (!since && !until) return true;
  if (!json_is_integer(t)) return false;
  int64_t v = (int64_t)json_integer_value(t);
  return (!since || v >= since) && (!until || v < until);
}

static bool matches(json_t *rec, const audit_filter *f) {
  return str_match(rec, "user", f->user) && str_match(rec, "connector", f->connector) &&
         str_match(rec, "tool", f->tool) && str_match(rec, "decision", f->decision) &&
         str_match(rec, "kind", f->kind) &&
         time_in(json_object_get(rec, "time"), f->since_ms, f->until_ms);
}

int audit_query(st_txn *txn, const char *tenant_uid, const audit_filter *f, json_t **out_array,
                char next_cursor[AUDIT_CURSOR_MAX]) {
  uint8_t key[AUDIT__KEY_MAX];
  audit__head h;
  json_t *arr = NULL;
  uint64_t s, from = 0;
  size_t examined = 0, scanned = 0, bytes = 0;
  unsigned limit;
  int rc;
  if (next_cursor) next_cursor[0] = 0;
  if (out_array) *out_array = NULL;
  if (!txn || !f || !out_array || !next_cursor || !audit__uid_ok(tenant_uid)) return AUDIT_EINVAL;
  limit = f->limit ? f->limit : AUDIT_QUERY_LIMIT_DEFAULT;
  if (limit > AUDIT_QUERY_LIMIT_MAX) return AUDIT_EINVAL;
  if (f->since_ms < 0 || f->until_ms < 0 || (f->since_ms && f->until_ms && f->since_ms > f->until_ms))
    return AUDIT_EINVAL;
  if (f->cursor && f->cursor[0] && !cursor_parse(f->cursor, &from)) return AUDIT_EINVAL;
  if (!(arr = json_array())) return AUDIT_ENOMEM;

  rc = audit__head_get(txn, tenant_uid, &h);
  if (rc == ST_ENOTFOUND) goto done;
  if (rc < 0) goto fail;
  s = h.seq;
  if (from && from < s) s = from;
  while (s >= h.first) {
    st_val v;
    json_t *rec;
    if (examined == AUDIT_SCAN_MAX || scanned >= AUDIT_SCAN_BYTES_MAX) {
      cursor_make(s, next_cursor); /* bounded: continue from here */
      break;
    }
    examined++;
    size_t kl = audit__rec_key(tenant_uid, s, key);
    rc = st_get(txn, (st_db)AUDIT_DB_RECORDS, key, kl, &v);
    s--;
    if (rc == ST_ENOTFOUND) continue; /* a gap: audit_verify's business */
    if (rc < 0) goto fail;
    scanned += v.len;
    rec = json_loadb(v.data, v.len, 0, NULL);
    if (!json_is_object(rec) || !matches(rec, f)) {
      json_decref(rec);
      continue;
    }
    if (json_array_append_new(arr, rec) < 0) {
      rc = AUDIT_ENOMEM;
      goto fail;
    }
    bytes += v.len;
    if (json_array_size(arr) == limit || bytes >= AUDIT_QUERY_BYTES_MAX) {
      if (s >= h.first) cursor_make(s, next_cursor);
      break;
    }
  }
done:
  *out_array = arr;
  return 0;
fail:
  next_cursor[0] = 0;
  json_decref(arr);
  return rc;
}

int audit_export_chunk(st_txn *txn, const char *tenant_uid, int64_t since_ms, int64_t until_ms,
                       uint64_t *after_seq, size_t max_records, audit_emit_fn emit, void *ctx) {
  uint8_t prefix[AUDIT__KEY_MAX], from[AUDIT__KEY_MAX];
  size_t ulen, emitted = 0, examined = 0, scanned = 0, cap = 0;
  char *copy = NULL;
  st_cursor *c = NULL;
  st_val k, v;
  int rc;
  if (!txn || !after_seq || !emit || max_records == 0 || !audit__uid_ok(tenant_uid) ||
      since_ms < 0 || until_ms < 0)
    return AUDIT_EINVAL;
  if (*after_seq == UINT64_MAX) return 0;
  ulen = strlen(tenant_uid);
  memcpy(prefix, tenant_uid, ulen);
  prefix[ulen] = 0;
  size_t fl = audit__rec_key(tenant_uid, *after_seq + 1, from);
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_RECORDS, &c)) < 0) return rc;
  if ((rc = st_cursor_seek(c, prefix, ulen + 1, from, fl)) < 0) goto out;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    int64_t t = 0;
    uint64_t s = audit__key_seq(k.data, k.len, ulen);
    if (s == 0) continue;
    /* checked before taking the record: MORE means one is there */
    if (emitted == max_records || examined == AUDIT_SCAN_MAX || scanned >= AUDIT_SCAN_BYTES_MAX) {
      rc = AUDIT_EXPORT_MORE;
      break;
    }
    examined++;
    scanned += v.len;
    bool has_time = audit__rec_time(v.data, v.len, &t);
    if ((since_ms || until_ms) &&
        (!has_time || (since_ms && t < since_ms) || (until_ms && t >= until_ms))) {
      *after_seq = s;
      continue;
    }
    /* a copy: the callback never holds a pointer into the map */
    if (v.len + 1 > cap) {
      char *nc = realloc(copy, v.len + 1);
      if (!nc) {
        rc = AUDIT_ENOMEM;
        goto out;
      }
      copy = nc;
      cap = v.len + 1;
    }
    memcpy(copy, v.data, v.len);
    copy[v.len] = 0;
    if ((rc = emit(ctx, copy, v.len)) != 0) goto out;
    *after_seq = s;
    emitted++;
  }
  if (rc == ST_ENOTFOUND) rc = 0;
out:
  free(copy);
  st_cursor_close(c);
  return rc;
}
