/* audit/chain.c — the audit environment's schema and the hash chains:
 * record keys, chain heads, verification (also the schema's st_check
 * hook), retention (audit_prune) and audit_heads.
 *
 * Why verification names records the way it does: each record stores the
 * hash of the one before it, so editing record k's bytes breaks only the
 * link OUT of k (record k+1's "prev", or the head's hash for the last
 * record), while editing k's "prev" breaks the link INTO k as well (its
 * bytes changed too). The walk therefore defers a broken link into k until
 * it has seen the link out of k: both broken → k is at fault; only the
 * link in → k-1 is. A deleted record is a gap in the key sequence and is
 * named by its seq. The walk reads records through a cursor in key order
 * (big-endian seq), one read snapshot. */
#include "audit/audit_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char audit__zero_hash[AUDIT_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- schema ---------------------------------------------------------------------- */

static const char *const audit_db_names[AUDIT_DB__COUNT] = {"meta", "records", "heads", "cursors"};

static int step_create(st_txn *txn) {
  int rc = st_db_create(txn, (st_db)AUDIT_DB_RECORDS);
  return rc < 0 ? rc : st_db_create(txn, (st_db)AUDIT_DB_HEADS);
}
static int step_cursors(st_txn *txn) { return st_db_create(txn, (st_db)AUDIT_DB_CURSORS); }
static const st_migration audit_steps[] = {
    {"create the audit records and chain heads databases", step_create, NULL},
    {"create the SIEM sinks' delivery cursors database", step_cursors, NULL},
};

static int verify_txn(st_txn *txn, const char *uid, audit_report_fn report, audit_chain_fn chain, void *ctx);

typedef struct check_wrap {
  void (*report)(void *ctx, const char *area, const char *msg);
  void *ctx;
} check_wrap;

static void check_report(void *ctx, const char *uid, uint64_t seq, const char *msg) {
  check_wrap *w = ctx;
  char line[400];
  snprintf(line, sizeof line, "chain %s record %" PRIu64 ": %s", uid, seq, msg);
  if (w->report) w->report(w->ctx, "audit", line);
}

/* st_check on the audit env: every chain verified in st_check's snapshot. */
static int schema_check(st_txn *txn, void (*report)(void *ctx, const char *area, const char *msg),
                        void *ctx) {
  check_wrap w = {report, ctx};
  int n = verify_txn(txn, NULL, check_report, NULL, &w);
  if (n < 0) return n;
  int m = audit__cursors_check(txn, report, ctx);
  return m < 0 ? m : n + m;
}

const st_schema audit_schema = {.name = "audit",
                                .db_names = audit_db_names,
                                .ndbs = AUDIT_DB__COUNT,
                                .steps = audit_steps,
                                .nsteps = sizeof audit_steps / sizeof audit_steps[0],
                                .check = schema_check};

const char *audit_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case AUDIT_EINVAL: return "invalid argument";
  case AUDIT_ENOMEM: return "out of memory";
  case AUDIT_EFULL: return "audit queue full: record dropped";
  case AUDIT_EBROKEN: return "audit log failing: the last commit failed";
  case AUDIT_ECLOSED: return "audit log closed";
  case AUDIT_ETOOBIG: return "audit record too big: dropped";
  case AUDIT_ECORRUPT: return "audit store holds data this module did not write";
  case AUDIT_EINVALID: return "invalid SIEM sink settings";
  }
  return st_strerror(err);
}

/* ---- keys, hashes, heads --------------------------------------------------------- */

bool audit__tenant_ok(const char *t) {
  size_t n = 0;
  if (!t) return false;
  for (; t[n]; n++) {
    char c = t[n];
    if (n >= AUDIT_TENANT_MAX || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  }
  return n > 0;
}

bool audit__uid_ok(const char *u) {
  size_t n = 0;
  if (!u) return false;
  for (; u[n]; n++) {
    char c = u[n];
    if (n >= AUDIT_UID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  }
  return n > 0;
}

size_t audit__rec_key(const char *uid, uint64_t seq, uint8_t *k) {
  size_t n = strlen(uid);
  memcpy(k, uid, n);
  k[n] = 0;
  for (int i = 0; i < 8; i++) k[n + 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
  return n + 9;
}

uint64_t audit__key_seq(const void *k, size_t klen, size_t uidlen) {
  const uint8_t *p = k;
  uint64_t s = 0;
  if (klen != uidlen + 9 || p[uidlen] != 0) return 0;
  for (int i = 0; i < 8; i++) s = (s << 8) | p[uidlen + 1 + i];
  return s;
}

int audit__hash_hex(const void *p, size_t n, char out[AUDIT_HASH_HEX + 1]) {
  static const char hx[] = "0123456789abcdef";
  uint8_t d[32];
  int rc = st_sha256(p, n, d);
  if (rc < 0) return rc;
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[AUDIT_HASH_HEX] = 0;
  return 0;
}

static bool hex_ok(const char *s) {
  if (!s || strlen(s) != AUDIT_HASH_HEX) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

void audit__head_init(audit__head *h, const char *tenant) {
  memset(h, 0, sizeof *h);
  snprintf(h->tenant, sizeof h->tenant, "%s", tenant);
  h->first = 1;
  memcpy(h->hash, audit__zero_hash, sizeof h->hash);
  memcpy(h->pruned, audit__zero_hash, sizeof h->pruned);
}

static bool get_u64(json_t *o, const char *k, uint64_t *out) {
  json_t *v = json_object_get(o, k);
  if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
  *out = (uint64_t)json_integer_value(v);
  return true;
}

int audit__head_decode(const void *p, size_t n, audit__head *h) {
  json_t *j;
  int rc = AUDIT_ECORRUPT;
  if (n > AUDIT__HEAD_MAX) return AUDIT_ECORRUPT;
  if (!(j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL))) return AUDIT_ECORRUPT;
  const char *t = json_string_value(json_object_get(j, "tenant"));
  const char *hash = json_string_value(json_object_get(j, "hash"));
  const char *pr = json_string_value(json_object_get(j, "pruned_hash"));
  if (!json_is_object(j) || !audit__tenant_ok(t) || !hex_ok(hash) || !hex_ok(pr)) goto out;
  memset(h, 0, sizeof *h);
  if (!get_u64(j, "seq", &h->seq) || !get_u64(j, "first", &h->first)) goto out;
  if (h->first < 1 || h->first > h->seq + 1) goto out;
  snprintf(h->tenant, sizeof h->tenant, "%s", t);
  memcpy(h->hash, hash, sizeof h->hash);
  memcpy(h->pruned, pr, sizeof h->pruned);
  rc = 0;
out:
  json_decref(j);
  return rc;
}

int audit__head_get(st_txn *txn, const char *uid, audit__head *h) {
  st_val v;
  int rc = st_get(txn, (st_db)AUDIT_DB_HEADS, uid, strlen(uid), &v);
  if (rc < 0) return rc;
  return audit__head_decode(v.data, v.len, h);
}

int audit__head_put(st_txn *txn, const char *uid, const audit__head *h) {
  char buf[AUDIT__HEAD_MAX];
  int n = snprintf(buf, sizeof buf,
                   "{\"tenant\":\"%s\",\"seq\":%" PRIu64 ",\"hash\":\"%s\",\"first\":%" PRIu64
                   ",\"pruned_hash\":\"%s\"}",
                   h->tenant, h->seq, h->hash, h->first, h->pruned);
  if (n < 0 || (size_t)n >= sizeof buf) return AUDIT_EINVAL;
  return st_put(txn, (st_db)AUDIT_DB_HEADS, uid, strlen(uid), buf, (size_t)n, 0);
}

bool audit__rec_time(const void *p, size_t n, int64_t *t) {
  json_t *j = json_loadb(p, n, 0, NULL);
  json_t *v = json_object_get(j, "time");
  bool ok = json_is_integer(v);
  if (ok) *t = (int64_t)json_integer_value(v);
  json_decref(j);
  return ok;
}

/* ---- verification ---------------------------------------------------------------- */

typedef struct vstate {
  const char *uid;
  audit_report_fn report;
  audit_chain_fn chain;
  void *ctx;
  int problems;
  uint64_t checked; /* records of the current chain read and checked */
} vstate;

static void say(vstate *v, uint64_t seq, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  v->problems++;
  if (v->report) v->report(v->ctx, v->uid, seq, msg);
}

/* The link into record `pending` broke but the link out of it held: the
 * record before it (or the head's pruned_hash) is at fault. */
static void blame_before(vstate *v, const audit__head *h, uint64_t pending) {
  if (pending > h->first)
    say(v, pending - 1, "record %" PRIu64 " does not hash to what record %" PRIu64 " recorded",
        pending - 1, pending);
  else
    say(v, 0, "the chain head's pruned_hash does not match record %" PRIu64 "'s prev", pending);
}

/* Checks a record's own members against its key; fills prev (or ""). */
static void check_members(vstate *v, const audit__head *h, uint64_t s, const void *p, size_t n,
                          char prev[AUDIT_HASH_HEX + 1]) {
  char id[AUDIT_UID_MAX + 24];
  uint64_t seq = 0;
  json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
  prev[0] = 0;
  if (!json_is_object(j)) {
    say(v, s, "record %" PRIu64 " is not a JSON object", s);
    json_decref(j);
    return;
  }
  const char *pv = json_string_value(json_object_get(j, "prev"));
  if (hex_ok(pv)) memcpy(prev, pv, AUDIT_HASH_HEX + 1);
  else say(v, s, "record %" PRIu64 " has no valid prev", s);
  if (!get_u64(j, "seq", &seq) || seq != s)
    say(v, s, "record %" PRIu64 " says seq %" PRIu64 " but is stored as %" PRIu64, s, seq, s);
  snprintf(id, sizeof id, "%s-%" PRIu64, v->uid, s);
  const char *idv = json_string_value(json_object_get(j, "id"));
  if (!idv || strcmp(idv, id) != 0) say(v, s, "record %" PRIu64 "'s id is not %s", s, id);
  const char *t = json_string_value(json_object_get(j, "tenant"));
  if (!t || strcmp(t, h->tenant) != 0)
    say(v, s, "record %" PRIu64 "'s tenant is not the chain's (%s)", s, h->tenant);
  json_decref(j);
}

static void say_missing(vstate *v, uint64_t from, uint64_t to) {
  if (from == to) say(v, from, "record %" PRIu64 " is missing", from);
  else say(v, from, "records %" PRIu64 "..%" PRIu64 " are missing", from, to);
}

static int verify_chain(st_txn *txn, const audit__head *h, vstate *v) {
  uint8_t prefix[AUDIT__KEY_MAX];
  char prev_hash[AUDIT_HASH_HEX + 1], hash[AUDIT_HASH_HEX + 1], rprev[AUDIT_HASH_HEX + 1];
  size_t ulen = strlen(v->uid);
  uint64_t expect = h->first, last = 0, pending = 0;
  st_cursor *c = NULL;
  st_val k, val;
  int rc;

  memcpy(prefix, v->uid, ulen);
  prefix[ulen] = 0;
  memcpy(prev_hash, h->pruned, sizeof prev_hash);
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_RECORDS, &c)) < 0) return rc;
  if ((rc = st_cursor_seek(c, prefix, ulen + 1, NULL, 0)) < 0) goto out;
  while ((rc = st_cursor_next(c, &k, &val)) == 0) {
    uint64_t s = audit__key_seq(k.data, k.len, ulen);
    if (s == 0) {
      say(v, 0, "a record key of this chain is malformed");
      continue;
    }
    if (s < h->first) {
      say(v, s, "record %" PRIu64 " is before the head's first seq %" PRIu64, s, h->first);
      continue;
    }
    if ((rc = audit__hash_hex(val.data, val.len, hash)) < 0) goto out;
    v->checked++;
    check_members(v, h, s, val.data, val.len, rprev);
    if (s > expect) {
      if (pending) blame_before(v, h, pending);
      pending = 0;
      say_missing(v, expect, s - 1);
    } else {
      bool broken = strcmp(rprev, prev_hash) != 0;
      if (pending && broken) {
        say(v, pending,
            "record %" PRIu64 "'s prev does not match the record before it, and it does not "
            "hash to what record %" PRIu64 " recorded",
            pending, s);
        pending = 0;
      } else if (pending) {
        blame_before(v, h, pending);
        pending = 0;
      } else if (broken) {
        pending = s;
      }
    }
    memcpy(prev_hash, hash, sizeof prev_hash);
    expect = s + 1;
    last = s;
  }
  if (rc != ST_ENOTFOUND) goto out;
  rc = 0;

  /* the link out of the last record: the head */
  if (last == 0) {
    if (h->first <= h->seq) say_missing(v, h->first, h->seq);
    else if (strcmp(h->hash, h->pruned) != 0)
      say(v, 0, "the chain head's hash does not match its pruned_hash (no record left)");
  } else if (last < h->seq) {
    if (pending) blame_before(v, h, pending);
    say_missing(v, last + 1, h->seq);
  } else if (last > h->seq) {
    if (pending) blame_before(v, h, pending);
    say(v, 0, "the chain head says seq %" PRIu64 " but records run to %" PRIu64, h->seq, last);
  } else {
    bool broken = strcmp(h->hash, prev_hash) != 0;
    if (pending && broken)
      say(v, pending,
          "record %" PRIu64 "'s prev does not match the record before it, and it does not hash "
          "to what the chain head recorded",
          pending);
    else if (pending) blame_before(v, h, pending);
    else if (broken)
      say(v, last, "record %" PRIu64 " does not hash to what the chain head recorded", last);
  }
out:
  st_cursor_close(c);
  return rc;
}

static int verify_one(st_txn *txn, const char *uid, vstate *v) {
  audit__head h;
  v->uid = uid;
  int rc = audit__head_get(txn, uid, &h);
  if (rc == AUDIT_ECORRUPT) {
    say(v, 0, "the chain head is unreadable");
    return 0;
  }
  if (rc == ST_ENOTFOUND) { /* never written to: fine, unless records exist */
    uint8_t prefix[AUDIT_UID_MAX + 1];
    size_t ulen = strlen(uid);
    st_cursor *c = NULL;
    memcpy(prefix, uid, ulen);
    prefix[ulen] = 0;
    if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_RECORDS, &c)) < 0) return rc;
    if ((rc = st_cursor_seek(c, prefix, ulen + 1, NULL, 0)) == 0 &&
        (rc = st_cursor_next(c, NULL, NULL)) == 0)
      say(v, 0, "records without a chain head");
    st_cursor_close(c);
    return rc == 0 || rc == ST_ENOTFOUND ? 0 : rc;
  }
  if (rc < 0) return rc;
  v->checked = 0;
  if ((rc = verify_chain(txn, &h, v)) < 0) return rc;
  if (v->chain) {
    audit_chain_summary cs = {h.tenant, uid, h.first, h.seq, v->checked, h.hash};
    v->chain(v->ctx, &cs);
  }
  return 0;
}

/* Record keys whose uid has no head. */
static int verify_orphans(st_txn *txn, vstate *v) {
  char uid[AUDIT_UID_MAX + 1];
  uint8_t from[AUDIT_UID_MAX + 1];
  st_cursor *c = NULL;
  st_val k, hv;
  int rc;
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_RECORDS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    const uint8_t *z = memchr(k.data, 0, k.len);
    size_t ulen = z ? (size_t)(z - (const uint8_t *)k.data) : k.len;
    if (!z || ulen == 0 || ulen > AUDIT_UID_MAX) {
      v->uid = "?";
      say(v, 0, "a record key without a uid");
      continue; /* the cursor moves on by itself */
    }
    memcpy(uid, k.data, ulen);
    uid[ulen] = 0;
    if ((rc = st_get(txn, (st_db)AUDIT_DB_HEADS, uid, ulen, &hv)) == ST_ENOTFOUND) {
      v->uid = uid;
      say(v, 0, "records without a chain head");
    } else if (rc < 0) {
      goto out;
    }
    /* skip the rest of this uid: uid ‖ 0x01 sorts after every uid ‖ 0x00 ‖ seq */
    memcpy(from, uid, ulen);
    from[ulen] = 1;
    if ((rc = st_cursor_seek(c, NULL, 0, from, ulen + 1)) < 0) goto out;
  }
  rc = rc == ST_ENOTFOUND ? 0 : rc;
out:
  st_cursor_close(c);
  return rc;
}

static int verify_txn(st_txn *txn, const char *uid, audit_report_fn report, audit_chain_fn chain, void *ctx) {
  vstate v = {NULL, report, chain, ctx, 0, 0};
  char u[AUDIT_UID_MAX + 1];
  st_cursor *c = NULL;
  st_val k;
  int rc;
  if (uid) {
    if (!audit__uid_ok(uid)) return AUDIT_EINVAL;
    rc = verify_one(txn, uid, &v);
    return rc < 0 ? rc : v.problems;
  }
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_HEADS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, NULL)) == 0) {
    if (k.len == 0 || k.len > AUDIT_UID_MAX) {
      v.uid = "?";
      say(&v, 0, "a chain head with a malformed uid");
      continue;
    }
    memcpy(u, k.data, k.len);
    u[k.len] = 0;
    if (!audit__uid_ok(u)) {
      v.uid = "?";
      say(&v, 0, "a chain head with a malformed uid");
      continue;
    }
    if ((rc = verify_one(txn, u, &v)) < 0) goto out;
  }
  if (rc != ST_ENOTFOUND) goto out;
  st_cursor_close(c);
  c = NULL;
  if ((rc = verify_orphans(txn, &v)) < 0) goto out;
  rc = v.problems;
out:
  st_cursor_close(c);
  return rc;
}

typedef struct cursor_wrap {
  audit_report_fn report;
  void *ctx;
} cursor_wrap;

static void cursor_report(void *ctx, const char *area, const char *msg) {
  cursor_wrap *w = ctx;
  (void)area;
  if (w->report) w->report(w->ctx, "", 0, msg); /* uid "": not one chain's */
}

int audit_verify(st_store *aud, const char *tenant_uid, audit_report_fn report, void *ctx) {
  return audit_verify_chains(aud, tenant_uid, report, NULL, ctx);
}

int audit_verify_chains(st_store *aud, const char *tenant_uid, audit_report_fn report, audit_chain_fn chain,
                        void *ctx) {
  st_txn *txn = NULL;
  int rc;
  if (!aud) return AUDIT_EINVAL;
  if ((rc = st_read_begin(aud, &txn)) < 0) return rc;
  rc = verify_txn(txn, tenant_uid, report, chain, ctx);
  if (rc >= 0 && !tenant_uid) {
    /* a cursor is a receiver's acknowledgement up to a seq: records cut
     * from a chain's end (its head moved back) or a chain deleted whole
     * leave every link intact, but not the cursors of what was delivered */
    cursor_wrap w = {report, ctx};
    int m = audit__cursors_check(txn, cursor_report, &w);
    rc = m < 0 ? m : rc + m;
  }
  st_txn_end(txn);
  return rc;
}

/* ---- retention ------------------------------------------------------------------ */

typedef struct prune_arg {
  int64_t before;
  size_t max;
  size_t pruned; /* output: overwritten by every run (jobs may run twice) */
} prune_arg;

static int prune_job(st_txn *txn, void *arg) {
  prune_arg *p = arg;
  char uid[AUDIT_UID_MAX + 1], hash[AUDIT_HASH_HEX + 1];
  uint8_t key[AUDIT__KEY_MAX];
  st_cursor *c = NULL;
  st_val k, hv, rv;
  int rc;
  p->pruned = 0;
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_HEADS, &c)) < 0) return rc;
  while (p->pruned < p->max && (rc = st_cursor_next(c, &k, &hv)) == 0) {
    audit__head h;
    bool changed = false;
    if (k.len == 0 || k.len > AUDIT_UID_MAX) continue;
    memcpy(uid, k.data, k.len);
    uid[k.len] = 0;
    if (!audit__uid_ok(uid) || audit__head_decode(hv.data, hv.len, &h) < 0)
      continue; /* audit_verify reports it; retention never edits what it cannot read */
    while (p->pruned < p->max && h.first <= h.seq) {
      int64_t t;
      size_t kl = audit__rec_key(uid, h.first, key);
      if ((rc = st_get(txn, (st_db)AUDIT_DB_RECORDS, key, kl, &rv)) == ST_ENOTFOUND) break;
      if (rc < 0) goto out;
      if (!audit__rec_time(rv.data, rv.len, &t) || t >= p->before) break;
      if ((rc = audit__hash_hex(rv.data, rv.len, hash)) < 0) goto out;
      if ((rc = st_del(txn, (st_db)AUDIT_DB_RECORDS, key, kl)) < 0) goto out;
      memcpy(h.pruned, hash, sizeof h.pruned);
      h.first++;
      p->pruned++;
      changed = true;
    }
    if (changed && (rc = audit__head_put(txn, uid, &h)) < 0) goto out;
  }
  rc = rc == ST_ENOTFOUND || rc == 0 ? 0 : rc;
out:
  st_cursor_close(c);
  return rc;
}

/* audit_log's store is reached through the public accessor (log.c owns the
 * struct). */
int audit_prune(audit_log *a, int64_t before_ms, size_t max_records, size_t *pruned) {
  prune_arg p = {before_ms, max_records, 0};
  int rc;
  if (pruned) *pruned = 0;
  if (!a || max_records == 0) return AUDIT_EINVAL;
  rc = st_write_sync(audit_store(a), prune_job, &p);
  if (rc < 0) return rc;
  if (pruned) *pruned = p.pruned;
  return 0;
}

/* ---- heads ------------------------------------------------------------------------ */

int audit_heads(st_txn *txn,
                void (*cb)(void *ctx, const char *tenant, const char *uid, uint64_t seq,
                           const char *hash_hex),
                void *ctx) {
  char uid[AUDIT_UID_MAX + 1];
  st_cursor *c = NULL;
  st_val k, v;
  int rc, n = 0;
  if (!txn || !cb) return AUDIT_EINVAL;
  if ((rc = st_cursor_open(txn, (st_db)AUDIT_DB_HEADS, &c)) < 0) return rc;
  while ((rc = st_cursor_next(c, &k, &v)) == 0) {
    audit__head h;
    if (k.len == 0 || k.len > AUDIT_UID_MAX) {
      rc = AUDIT_ECORRUPT;
      goto out;
    }
    memcpy(uid, k.data, k.len);
    uid[k.len] = 0;
    if ((rc = audit__head_decode(v.data, v.len, &h)) < 0) goto out;
    cb(ctx, h.tenant, uid, h.seq, h.hash);
    n++;
  }
  rc = rc == ST_ENOTFOUND ? n : rc;
out:
  st_cursor_close(c);
  return rc;
}
