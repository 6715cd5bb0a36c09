/* scim/query.c — SCIM reads: one resource (with If-None-Match), lists
 * (GET with filter, paging and attribute selection), POST .search, and the
 * admin API's list view. Indexed filters take their candidates from the
 * directory's indexes (index_candidates) and every candidate is checked
 * against the full filter; scim_read_is_cheap tells the gateway which
 * reads need a scan (run off the loop) — a filter no index answers, or an
 * unfiltered page whose startIndex is deeper than the loop's budget can
 * skip to (its skip is spent on the budget too). An unfiltered page
 * begins its walk at a list checkpoint (pages.c) when an earlier page of
 * the same list generation left one before its startIndex. See resource.c
 * for the shared parts. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Finds query parameter `name` (case-insensitive), URL-decoded into out. */
static bool query_param(const char *q, const char *name, char *out, size_t cap) {
  if (!q) return false;
  size_t nl = strlen(name);
  const char *p = q;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > nl && p[nl] == '=' && !strncasecmp(p, name, nl)) {
      size_t o = 0;
      for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
        char c = p[i];
        if (c == '+') c = ' ';
        else if (c == '%' && i + 2 < len + 1 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
          c = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
          i += 2;
        }
        out[o++] = c;
      }
      out[o] = 0;
      return true;
    }
    p += len;
    if (*p) p++;
  }
  return false;
}

static int parse_view(const scim_req *rq, scim__view *v, scim_resp *rs) {
  char buf[2048];
  memset(v, 0, sizeof *v);
  if (query_param(rq->query, "attributes", buf, sizeof buf) && *buf) v->attrs = scim__name_list(buf);
  if (query_param(rq->query, "excludedAttributes", buf, sizeof buf) && *buf) v->excluded = scim__name_list(buf);
  (void)rs;
  return 0;
}

void scim__view_free(scim__view *v) {
  json_decref(v->attrs);
  json_decref(v->excluded);
}

int scim__get_one(st_txn *txn, const scim_req *rq, char type, const char *id, scim_resp *rs) {
  json_t *stored;
  int rc = scim__res_get(txn, rq->tenant, type, id, &stored);
  if (rc == ST_ENOTFOUND) {
    scim_error(rs, 404, NULL, "no %s with id %.64s", type == 'U' ? "user" : "group", id);
    return 0;
  }
  if (rc) return scim__fail_store(rs, rc);
  if (rq->if_none_match) {
    char curbuf[48];
    scim__effective_version(txn, rq->tenant, stored, curbuf);
    const char *cur = curbuf[0] ? curbuf : NULL;
    if (cur && (!strcmp(rq->if_none_match, "*") || strstr(rq->if_none_match, cur) ||
                strstr(rq->if_none_match, cur + 2))) {
      rs->status = 304;
      snprintf(rs->etag, sizeof rs->etag, "%s", cur);
      json_decref(stored);
      return 0;
    }
  }
  scim__view v;
  parse_view(rq, &v, rs);
  json_t *o = type == 'U' ? scim__render_user(txn, rq, rq->tenant, stored, &v)
                          : scim__render_group(txn, rq, rq->tenant, stored, &v);
  scim__view_free(&v);
  json_decref(stored);
  scim__reply_resource(rs, 200, o, rq, type == 'U' ? "Users" : "Groups");
  return 0;
}

/* Candidate ids from an indexable conjunct (at most cap; 0: all), or NULL
 * when the filter needs a scan. The full filter is checked on every candidate afterwards. */
static json_t *index_candidates(st_txn *txn, const char *tenant, char type, const scim__filter *f, size_t cap) {
  if (!f) return NULL;
  if (f->kind == SCIM__F_AND) {
    json_t *c = index_candidates(txn, tenant, type, f->a, cap);
    return c ? c : index_candidates(txn, tenant, type, f->b, cap);
  }
  const scim__attrpath *ap = &f->path;
  const char *attr = ap->attr, *sub = ap->sub;
  const json_t *val = f->value;
  if (f->kind == SCIM__F_VALPATH && f->a && f->a->kind == SCIM__F_CMP && !f->a->path.sub) {
    /* members[value eq "x"] */
    sub = f->a->path.attr;
    val = f->a->value;
    if (f->a->op != SCIM__OP_EQ) return NULL;
  } else if (f->kind != SCIM__F_CMP || f->op != SCIM__OP_EQ) {
    return NULL;
  }
  if (!json_is_string(val)) return NULL;
  if (ap->urn && strcasecmp(ap->urn, type == 'U' ? SCIM_URN_USER : SCIM_URN_GROUP)) return NULL;
  const char *s = json_string_value(val);
  json_t *ids = json_array();
  st_dir_key k;
  if (!sub && !strcasecmp(attr, "id")) {
    json_array_append_new(ids, json_string(s));
  } else if (!sub && type == 'U' && !strcasecmp(attr, "userName")) {
    char owner[SCIM_ID_LEN + 1];
    if (st_dir_user_by_name(txn, tenant, s, owner) == 0) json_array_append_new(ids, json_string(owner));
  } else if (!sub && !strcasecmp(attr, "externalId")) {
    st_dir_key_external(&k, tenant, type, s, NULL);
    st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, cap);
  } else if (!sub && type == 'G' && !strcasecmp(attr, "displayName")) {
    st_dir_key_group_name(&k, tenant, s, NULL);
    st_dir_ids_under(txn, ST_DB_SCIM_IDX, &k, ids, cap);
  } else if (type == 'G' && !strcasecmp(attr, "members") && sub && !strcasecmp(sub, "value")) {
    if (st_dir_valid_id(s)) {
      st_dir_key_user_group(&k, tenant, s, NULL);
      st_dir_ids_under(txn, ST_DB_SCIM_MEM, &k, ids, cap);
    }
  } else {
    json_decref(ids);
    return NULL;
  }
  return ids;
}

static bool filter_mentions(const scim__filter *f, const char *attr) {
  if (!f) return false;
  if ((f->kind == SCIM__F_CMP || f->kind == SCIM__F_PR || f->kind == SCIM__F_VALPATH) && f->path.attr &&
      !strcasecmp(f->path.attr, attr))
    return true;
  return filter_mentions(f->a, attr) || filter_mentions(f->b, attr);
}

/* An unfiltered page: the resources at positions [start, count) — count
 * here is where res must end, as in list_core — appended to res in key
 * (id) order. No index counts positions, so the walk begins at the first
 * resource, or at the deepest list checkpoint before start (scim.h,
 * scim_pages) of this tenant incarnation, type and list generation — all
 * read in txn, so the checkpoint holds in this snapshot. The key found
 * there is compared with the checkpoint's anyway (a checkpoint that does
 * not hold is never trusted: the walk begins at the first resource). The
 * last position walked is remembered for the next page. Every step is
 * spent on the loop's budget (a skipped one as 1/SCIM_LOOP_SKIPS_PER_ENTRY
 * of an entry). */
static void walk_page(st_txn *txn, const scim_req *rq, char type, size_t start, size_t count, const scim__view *v,
                      json_t *res) {
  st_dir_key p, from;
  st_dir_key_res(&p, rq->tenant, type, "");
  char uid[ST_TENANT_UID_LEN + 1];
  bool keyed = rq->pages && st_tenant_uid_get(txn, rq->tenant, uid) == 0;
  uint64_t gen = keyed ? scim__list_gen_get(txn, rq->tenant, type) : 0;
  size_t pos = 0; /* the position of the last key stepped */
  char last[SCIM_ID_LEN + 1] = "";
  bool hit = keyed && start > 1 && scim__pages_find(rq->pages, rq->tenant, uid, type, gen, start, &pos, last);
  size_t steps = 0, skipped = 0, from_pos = pos;
  st_cursor *c;
  if (st_cursor_open(txn, ST_DB_SCIM_RES, &c) != 0) return;
  st_val k, val;
  if (hit) {
    st_dir_key_res(&from, rq->tenant, type, last);
    st_cursor_seek(c, p.b, p.n, from.b, from.n);
    steps++;
    if (st_cursor_next(c, &k, NULL) != 0 || k.len != from.n || memcmp(k.data, from.b, from.n) != 0) {
      hit = false; /* not there: walk from the first */
      pos = from_pos = 0;
      last[0] = 0;
    } else {
      skipped++;
    }
  }
  if (!hit) st_cursor_seek(c, p.b, p.n, NULL, 0);
  while (json_array_size(res) < count && st_cursor_next(c, &k, &val) == 0) {
    steps++;
    if (k.len == p.n + SCIM_ID_LEN) {
      memcpy(last, (const char *)k.data + p.n, SCIM_ID_LEN);
      last[SCIM_ID_LEN] = 0;
    } else {
      last[0] = 0;
    }
    if (++pos < start) {
      /* a deep startIndex walks every resource before it: that walk is spent too */
      if (++skipped % SCIM_LOOP_SKIPS_PER_ENTRY == 0 && !scim__spend(rq, 1)) break;
      continue;
    }
    if (!scim__spend(rq, 1)) break;
    json_t *stored = json_loadb(val.data, val.len, 0, NULL);
    if (!stored) continue;
    json_array_append_new(res, type == 'U' ? scim__render_user(txn, rq, rq->tenant, stored, v)
                                           : scim__render_group(txn, rq, rq->tenant, stored, v));
    json_decref(stored);
  }
  st_cursor_close(c);
  if (keyed && pos > from_pos && last[0]) scim__pages_put(rq->pages, rq->tenant, uid, type, gen, pos, last);
  scim__pages_count(rq->pages, steps, hit, keyed && start > 1 && !hit);
}

/* Appends the page [start, start+count) of matching resources to res and
 * returns the number of matches in *total_out. */
static void list_core(st_txn *txn, const scim_req *rq, char type, const scim__filter *f, size_t start,
                      size_t count, const scim__view *vp, json_t *res, size_t *total_out) {
  scim__view v = *vp;
  size_t total = 0;
  size_t have = json_array_size(res);
  count += have;
  const char *what = type == 'U' ? "groups" : "members";
  bool render_rel = filter_mentions(f, what);
  scim__view match_view = {NULL, render_rel ? NULL : scim__name_list(what)};
  /* with the loop's budget (scim.h), every resource examined is spent:
   * past it the walk stops and the caller runs the read again elsewhere */
  json_t *cands = index_candidates(txn, rq->tenant, type, f, scim__budget_cap(rq));
  if (!f) {
    /* unfiltered: the counter, and a walk to startIndex */
    total = scim__count_get(txn, rq->tenant, type);
    walk_page(txn, rq, type, start, count, &v, res);
  } else {
    json_t *ids = cands;
    if (!ids) {
      /* no index applies: evaluate on every resource of the tenant */
      ids = json_array();
      st_dir_key p;
      st_dir_key_res(&p, rq->tenant, type, "");
      st_dir_ids_under(txn, ST_DB_SCIM_RES, &p, ids, scim__budget_cap(rq));
    } else {
      /* index order is not id order: keep pages stable by sorting */
      size_t n = json_array_size(ids);
      for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(ids, j - 1)),
                                           json_string_value(json_array_get(ids, j))) > 0; j--) {
          json_t *a = json_incref(json_array_get(ids, j - 1));
          json_array_set(ids, j - 1, json_array_get(ids, j));
          json_array_set_new(ids, j, a);
        }
    }
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) {
      json_t *stored;
      if (!scim__spend(rq, 1)) break;
      if (scim__res_get(txn, rq->tenant, type, json_string_value(id), &stored) != 0) continue;
      json_t *r = type == 'U' ? scim__render_user(txn, rq, rq->tenant, stored, &match_view)
                              : scim__render_group(txn, rq, rq->tenant, stored, &match_view);
      /* the filter's work, in whole budget entries (on the loop; on the
       * pool unmetered): what stays under one entry is not spent */
      scim_budget *b = rq->budget;
      scim__meter mt = {0, b ? (b->left + 1) * SCIM__METER_BYTES_PER_ENTRY - 1 : 0};
      bool hit = scim__filter_match(f, r, b ? &mt : NULL);
      json_decref(r);
      if (b && !scim__spend(rq, scim__meter_over(&mt) ? SIZE_MAX : mt.used / SCIM__METER_BYTES_PER_ENTRY)) {
        json_decref(stored);
        break;
      }
      if (hit) {
        total++;
        if (total >= start && json_array_size(res) < count)
          json_array_append_new(res, type == 'U' ? scim__render_user(txn, rq, rq->tenant, stored, &v)
                                                 : scim__render_group(txn, rq, rq->tenant, stored, &v));
      }
      json_decref(stored);
    }
    json_decref(ids);
  }
  json_decref(match_view.excluded);
  *total_out = total;
}

typedef struct listq {
  char filter[4200];
  bool has_filter;
  size_t start, count;
  scim__view v;
} listq;

static void list_reply(scim_resp *rs, size_t total, size_t start, json_t *res) {
  rs->status = 200;
  rs->body = json_pack("{s:[s],s:I,s:I,s:I,s:o}", "schemas", SCIM_URN_LIST, "totalResults",
                       (json_int_t)total, "startIndex", (json_int_t)start, "itemsPerPage",
                       (json_int_t)json_array_size(res), "Resources", res);
}

/* type 'U', 'G', or 0 for both (a search from the root: users, then groups). */
static int list(st_txn *txn, const scim_req *rq, char type, listq *q, scim_resp *rs) {
  scim__filter *f = NULL;
  char err[300];
  if (q->has_filter && *q->filter && scim__filter_parse(q->filter, &f, err, sizeof err) != 0) {
    scim_error(rs, 400, "invalidFilter", "%s", err);
    return 0;
  }
  json_t *res = json_array();
  size_t total = 0;
  if (type) {
    list_core(txn, rq, type, f, q->start, q->count, &q->v, res, &total);
  } else {
    size_t tu = 0, tg = 0;
    list_core(txn, rq, 'U', f, q->start, q->count, &q->v, res, &tu);
    size_t got = json_array_size(res);
    size_t gstart = q->start > tu ? q->start - tu : 1;
    list_core(txn, rq, 'G', f, gstart, q->count - got, &q->v, res, &tg);
    total = tu + tg;
  }
  list_reply(rs, total, q->start, res);
  scim__filter_free(f);
  return 0;
}

static int parse_paging(const scim_req *rq, size_t *start, size_t *count, scim_resp *rs) {
  char buf[64];
  *start = 1;
  *count = SCIM_DEFAULT_COUNT;
  if (query_param(rq->query, "startIndex", buf, sizeof buf)) {
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) {
      scim_error(rs, 400, "invalidValue", "startIndex must be an integer");
      return -1;
    }
    *start = v < 1 ? 1 : (size_t)v;
  }
  if (query_param(rq->query, "count", buf, sizeof buf)) {
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) {
      scim_error(rs, 400, "invalidValue", "count must be an integer");
      return -1;
    }
    *count = v < 0 ? 0 : (size_t)v;
  }
  size_t cap = rq->max_count ? rq->max_count : 1000;
  if (*count > cap) *count = cap;
  return 0;
}

/* POST …/.search (RFC 7644 §3.4.3): the query in a SearchRequest body. */
int scim__search(st_txn *txn, const scim_req *rq, char type, scim_resp *rs) {
  const json_t *b = rq->body;
  if (!json_is_object(b)) {
    scim_error(rs, 400, "invalidSyntax", "the body must be a SearchRequest object");
    return 0;
  }
  listq *q = calloc(1, sizeof *q);
  if (!q) return scim__fail_store(rs, ST_ENOMEM);
  q->start = 1;
  q->count = SCIM_DEFAULT_COUNT;
  const char *k;
  json_t *v;
  const char *bad = NULL;
  /* SCIM attribute names are case-insensitive: "filter" and "Filter" are
   * one attribute given twice, which the strict JSON parse cannot see. It
   * is refused: scim_read_is_cheap reads the first "filter" to decide
   * whether the search may run on the loop, and an answer from another
   * would put a scan there */
  static const char *const names[] = {"schemas", "filter", "startIndex", "count", "attributes",
                                      "excludedAttributes", "sortBy", "sortOrder"};
  unsigned seen = 0;
  json_object_foreach((json_t *)b, k, v) {
    for (unsigned n = 0; n < sizeof names / sizeof *names; n++)
      if (!strcasecmp(k, names[n])) {
        if (seen & 1u << n) {
          scim_error(rs, 400, "invalidSyntax", "the SearchRequest gives \"%s\" twice (attribute names are case-insensitive)",
                     names[n]);
          free(q);
          return 0;
        }
        seen |= 1u << n;
      }
  }
  json_object_foreach((json_t *)b, k, v) {
    if (!strcasecmp(k, "schemas")) continue;
    if (!strcasecmp(k, "filter")) {
      if (!json_is_string(v)) bad = "filter must be a string";
      else {
        snprintf(q->filter, sizeof q->filter, "%s", json_string_value(v));
        q->has_filter = true;
      }
    } else if (!strcasecmp(k, "startIndex")) {
      if (!json_is_integer(v)) bad = "startIndex must be an integer";
      else q->start = json_integer_value(v) < 1 ? 1 : (size_t)json_integer_value(v);
    } else if (!strcasecmp(k, "count")) {
      if (!json_is_integer(v)) bad = "count must be an integer";
      else q->count = json_integer_value(v) < 0 ? 0 : (size_t)json_integer_value(v);
    } else if (!strcasecmp(k, "attributes") || !strcasecmp(k, "excludedAttributes")) {
      if (!json_is_array(v)) {
        bad = "attributes and excludedAttributes must be arrays of strings";
        continue;
      }
      char list_s[2048] = "";
      size_t i;
      json_t *e;
      json_array_foreach(v, i, e) {
        if (!json_is_string(e)) bad = "attributes and excludedAttributes must be arrays of strings";
        else {
          size_t l = strlen(list_s);
          snprintf(list_s + l, sizeof list_s - l, "%s%s", l ? "," : "", json_string_value(e));
        }
      }
      json_t *nl = scim__name_list(list_s);
      if (!strcasecmp(k, "attributes")) q->v.attrs = nl;
      else q->v.excluded = nl;
    } else if (!strcasecmp(k, "sortBy") || !strcasecmp(k, "sortOrder")) {
      /* sorting is not supported (ServiceProviderConfig says so): ignored */
    } else {
      bad = "unknown SearchRequest attribute";
    }
  }
  size_t cap = rq->max_count ? rq->max_count : 1000;
  if (q->count > cap) q->count = cap;
  if (bad) scim_error(rs, 400, "invalidValue", "%s", bad);
  else list(txn, rq, type, q, rs);
  scim__view_free(&q->v);
  free(q);
  return 0;
}

/* GET /Users or /Groups: a page of a (filtered) list, from the query. */
int scim__list_get(st_txn *txn, const scim_req *rq, char type, scim_resp *rs) {
  listq *q = calloc(1, sizeof *q);
  if (!q) return scim__fail_store(rs, ST_ENOMEM);
  if (parse_paging(rq, &q->start, &q->count, rs) == 0) {
    q->has_filter = query_param(rq->query, "filter", q->filter, sizeof q->filter);
    parse_view(rq, &q->v, rs);
    list(txn, rq, type, q, rs);
    scim__view_free(&q->v);
  }
  free(q);
  return 0;
}

int scim_admin_list(st_txn *txn, const char *tenant, const char *what, const char *filter, size_t start,
                    size_t count, const char *base_url, scim_resp *rs) {
  scim_req rq = {0};
  rq.tenant = tenant;
  rq.method = "GET";
  rq.base_url = base_url;
  scim_resp_clear(rs);
  listq *q = calloc(1, sizeof *q);
  if (!q) return scim__fail_store(rs, ST_ENOMEM);
  q->start = start ? start : 1;
  q->count = count ? count : SCIM_DEFAULT_COUNT;
  if (filter) {
    snprintf(q->filter, sizeof q->filter, "%s", filter);
    q->has_filter = true;
  }
  int rc = list(txn, &rq, !strcmp(what, "Users") ? 'U' : 'G', q, rs);
  free(q);
  return rc;
}

/* ---------- cheap or not ---------- */

/* Structural twin of index_candidates: can the filter be answered from an
 * index (so the read is cheap enough for the loop thread)? */
static bool indexable(const scim__filter *f, char type) {
  if (!f) return true;
  if (f->kind == SCIM__F_AND) return indexable(f->a, type) || indexable(f->b, type);
  const char *attr = f->path.attr, *sub = f->path.sub;
  if (f->kind == SCIM__F_VALPATH && f->a && f->a->kind == SCIM__F_CMP && !f->a->path.sub &&
      f->a->op == SCIM__OP_EQ && json_is_string(f->a->value)) {
    sub = f->a->path.attr;
  } else if (f->kind != SCIM__F_CMP || f->op != SCIM__OP_EQ || !json_is_string(f->value)) {
    return false;
  }
  if (f->path.urn && strcasecmp(f->path.urn, type == 'U' ? SCIM_URN_USER : SCIM_URN_GROUP)) return false;
  if (!sub && (!strcasecmp(attr, "id") || !strcasecmp(attr, "externalId"))) return true;
  if (!sub && type == 'U' && !strcasecmp(attr, "userName")) return true;
  if (!sub && type == 'G' && !strcasecmp(attr, "displayName")) return true;
  return type == 'G' && !strcasecmp(attr, "members") && sub && !strcasecmp(sub, "value");
}

/* An unfiltered page whose startIndex lies deeper than the loop's budget
 * can skip (SCIM_LOOP_SKIPS_PER_ENTRY): surely past the budget — unless
 * the tenant holds a list checkpoint of the type less than half that
 * before it (scim_pages: an import paging on). Without a snapshot that is
 * a guess: a checkpoint of another generation or incarnation is not used
 * by the walk, which then runs past the budget and again on the pool, as
 * any read past it does. A startIndex the list would refuse (400) is not
 * deep. */
static bool too_deep(const scim_req *rq, bool search, char type) {
  long long start = 1;
  if (search) {
    json_t *v = rq->body ? scim__oget(rq->body, "startIndex", NULL) : NULL;
    if (json_is_integer(v)) start = json_integer_value(v);
  } else {
    char buf[64], *end;
    if (query_param(rq->query, "startIndex", buf, sizeof buf)) {
      long long v = strtoll(buf, &end, 10);
      if (end != buf && !*end) start = v;
    }
  }
  const size_t reach = (size_t)SCIM_LOOP_BUDGET * SCIM_LOOP_SKIPS_PER_ENTRY;
  if (start <= 1 || (unsigned long long)(start - 1) <= (unsigned long long)reach) return false;
  return !(type && (unsigned long long)start <= (unsigned long long)SIZE_MAX &&
           scim__pages_near(rq->pages, rq->tenant, type, (size_t)start, reach / 2));
}

bool scim_read_is_cheap(const scim_req *rq) {
  const char *p = rq->path;
  char type = !strncmp(p, "/Users", 6) ? 'U' : !strncmp(p, "/Groups", 7) ? 'G' : 0;
  size_t n = strlen(p);
  bool search = n >= 8 && !strcmp(p + n - 8, "/.search");
  if (!type && !search) return true; /* discovery */
  if (!search && (p[type == 'U' ? 6 : 7] == '/')) return true; /* one resource */
  char fbuf[4200];
  const char *fs = NULL;
  if (search) {
    json_t *f = rq->body ? scim__oget(rq->body, "filter", NULL) : NULL;
    fs = json_string_value(f);
    if (!type) return !fs && !too_deep(rq, true, 0); /* root search with a filter scans both types */
  } else if (query_param(rq->query, "filter", fbuf, sizeof fbuf)) {
    fs = fbuf;
  }
  if (!fs || !*fs) return !too_deep(rq, search, type);
  scim__filter *f;
  char err[200];
  if (scim__filter_parse(fs, &f, err, sizeof err) != 0) return true; /* a 400, cheaply */
  bool ok = indexable(f, type);
  scim__filter_free(f);
  return ok;
}
