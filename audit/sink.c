/* audit/sink.c — the delivery cursors of SIEM sinks (AUDIT_DB_CURSORS):
 * keys, reads, the write the audit thread's commit makes, and their part
 * of st_check. The queue of pending updates lives with the audit thread
 * (log.c); what a sink sends and where is the gateway's business.
 *
 * Key: sink ‖ 0x00 ‖ uid (at most 80 + 1 + 64 bytes); value: the seq as
 * u64 big-endian. */
#include "audit/audit_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CURSOR_KEY_MAX (AUDIT_SINK_MAX + 1 + AUDIT_UID_MAX)

bool audit__sink_ok(const char *s) {
  size_t n = 0;
  if (!s) return false;
  for (; s[n]; n++) {
    char c = s[n];
    if (n >= AUDIT_SINK_MAX ||
        !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '_' || c == '-'))
      return false;
  }
  return n > 0;
}

static size_t cursor_key(const char *sink, const char *uid, char k[CURSOR_KEY_MAX]) {
  size_t sl = strlen(sink), ul = strlen(uid);
  memcpy(k, sink, sl);
  k[sl] = 0;
  memcpy(k + sl + 1, uid, ul);
  return sl + 1 + ul;
}

static uint64_t be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

int audit_cursor_get(st_txn *txn, const char *sink, const char *uid, uint64_t *seq) {
  if (!txn || !seq || !audit__sink_ok(sink) || !audit__uid_ok(uid)) return AUDIT_EINVAL;
  *seq = 0;
  char k[CURSOR_KEY_MAX];
  st_val v;
  int rc = st_get(txn, (st_db)AUDIT_DB_CURSORS, k, cursor_key(sink, uid, k), &v);
  if (rc == ST_ENOTFOUND) return 0;
  if (rc < 0) return rc;
  if (v.len != 8) return AUDIT_ECORRUPT;
  *seq = be64(v.data);
  return 0;
}

int audit__cursor_put(st_txn *txn, const char *sink, const char *uid, uint64_t seq) {
  uint64_t cur = 0;
  int rc = audit_cursor_get(txn, sink, uid, &cur);
  if (rc < 0 && rc != AUDIT_ECORRUPT) return rc; /* a corrupt value is overwritten */
  if (rc == 0 && cur >= seq) return 0;
  char k[CURSOR_KEY_MAX];
  unsigned char v[8];
  for (int i = 0; i < 8; i++) v[i] = (unsigned char)(seq >> (56 - 8 * i));
  return st_put(txn, (st_db)AUDIT_DB_CURSORS, k, cursor_key(sink, uid, k), v, sizeof v, 0);
}

int audit__cursors_check(st_txn *txn, void (*report)(void *ctx, const char *area, const char *msg), void *ctx) {
  st_cursor *c;
  st_val k, v;
  int rc, problems = 0;
  char line[320];
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_CURSORS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    char sink[AUDIT_SINK_MAX + 1], uid[AUDIT_UID_MAX + 1];
    const char *p = k.data, *nul = k.len ? memchr(p, 0, k.len) : NULL;
    size_t sl = nul ? (size_t)(nul - p) : 0, ul = nul ? k.len - sl - 1 : 0;
    bool ok = nul && sl && sl <= AUDIT_SINK_MAX && ul && ul <= AUDIT_UID_MAX;
    if (ok) {
      memcpy(sink, p, sl);
      sink[sl] = 0;
      memcpy(uid, nul + 1, ul);
      uid[ul] = 0;
      ok = audit__sink_ok(sink) && audit__uid_ok(uid) && v.len == 8;
    }
    if (!ok) {
      problems++;
      if (report) report(ctx, "audit", "a SIEM delivery cursor with a malformed key or value");
      continue;
    }
    audit__head h;
    rc = audit__head_get(txn, uid, &h);
    if (rc == ST_ENOTFOUND || (rc == 0 && be64(v.data) > h.seq)) {
      problems++;
      snprintf(line, sizeof line, "the SIEM delivery cursor of sink %s on chain %s is %s", sink, uid,
               rc ? "of a chain that does not exist" : "past the chain's last record");
      if (report) report(ctx, "audit", line);
    } else if (rc < 0 && rc != AUDIT_ECORRUPT) {
      break; /* a corrupt head is verify's to report */
    }
    rc = 0;
  }
  st_cursor_close(c);
  return rc == ST_ENOTFOUND || rc == 0 ? problems : rc;
}
