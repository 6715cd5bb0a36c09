/* scim/filter.c — the SCIM filter grammar (RFC 7644 §3.4.2.2) and PATCH
 * paths: parse into a small AST, evaluate against a JSON resource.
 *
 * Precedence: not > and > or; parentheses group. Attribute names and
 * operators are case-insensitive. URN-qualified paths contain dots
 * ("…:enterprise:2.0:User:manager.value"): the URN ends at the LAST colon,
 * and only what follows it is split on '.'. String comparisons honour
 * caseExact per attribute (id, externalId, members.value, $ref are exact;
 * the rest, userName included, are not). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"
#include "store/text.h"

typedef struct parser {
  const char *s, *p;
  char *err;
  size_t errlen;
  int depth;
  int failed;
} parser;

static void perr(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(parser *ps, const char *fmt, ...) {
  if (ps->failed) return;
  ps->failed = 1;
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(ps->err, ps->errlen, "%s at position %d", msg, (int)(ps->p - ps->s) + 1);
}

static void skip_ws(parser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t') ps->p++;
}

/* Word of [A-Za-z0-9_:$.-] (attribute paths, keywords). */
static size_t word_len(const char *p) {
  size_t n = 0;
  while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == ':' || p[n] == '$' ||
         p[n] == '.' || p[n] == '-')
    n++;
  return n;
}

static int kw(parser *ps, const char *word) {
  size_t n = strlen(word);
  if (strncasecmp(ps->p, word, n) != 0) return 0;
  char c = ps->p[n];
  if (isalnum((unsigned char)c) || c == '_' || c == ':' || c == '.' || c == '$' || c == '-') return 0;
  return 1;
}

void scim__filter_free(scim__filter *f) {
  if (!f) return;
  scim__filter_free(f->a);
  scim__filter_free(f->b);
  free(f->path.urn);
  free(f->path.attr);
  free(f->path.sub);
  json_decref(f->value);
  free(f);
}

static const char *const known_urns[] = {SCIM_URN_USER, SCIM_URN_GROUP, SCIM_URN_ENTERPRISE, NULL};

/* Splits "urn:…:attr.sub" / "attr.sub" / "attr" into an attrpath. */
static int split_attrpath(const char *w, size_t n, scim__attrpath *ap, bool *urn_only) {
  char *buf = strndup(w, n);
  if (!buf) return -1;
  memset(ap, 0, sizeof *ap);
  if (urn_only) *urn_only = false;
  char *rest = buf;
  if (strncasecmp(buf, "urn:", 4) == 0) {
    /* a known schema URN exactly, or followed by ":attr" */
    for (const char *const *u = known_urns; *u; u++) {
      size_t ul = strlen(*u);
      if (strncasecmp(buf, *u, ul) == 0 && (buf[ul] == 0 || buf[ul] == ':')) {
        ap->urn = strdup(*u);
        rest = buf[ul] ? buf + ul + 1 : buf + ul;
        goto have_urn;
      }
    }
    char *colon = strrchr(buf, ':');
    ap->urn = strndup(buf, (size_t)(colon - buf));
    rest = colon + 1;
  have_urn:
    if (!*rest) {
      if (!urn_only) {
        free(buf);
        return -1;
      }
      *urn_only = true;
      free(buf);
      return 0;
    }
  }
  char *dot = strchr(rest, '.');
  if (dot) {
    *dot = 0;
    ap->sub = strdup(dot + 1);
    if (!*ap->sub || strchr(ap->sub, '.')) {
      free(buf);
      return -1;
    }
  }
  if (!*rest) {
    free(buf);
    return -1;
  }
  for (char *c = rest; *c; c++)
    if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '$' || *c == '-')) {
      free(buf);
      return -1;
    }
  ap->attr = strdup(rest);
  free(buf);
  return 0;
}

static void free_ap(scim__attrpath *ap) {
  free(ap->urn);
  free(ap->attr);
  free(ap->sub);
  memset(ap, 0, sizeof *ap);
}

static json_t *parse_literal(parser *ps) {
  const char *p = ps->p;
  if (*p == '"') {
    const char *q = p + 1;
    while (*q && *q != '"') {
      if (*q == '\\' && q[1]) q++;
      q++;
    }
    if (*q != '"') {
      perr(ps, "unterminated string");
      return NULL;
    }
    json_t *v = json_loadb(p, (size_t)(q - p + 1), JSON_DECODE_ANY, NULL);
    if (!v) {
      perr(ps, "invalid string literal");
      return NULL;
    }
    ps->p = q + 1;
    return v;
  }
  if (kw(ps, "true")) {
    ps->p += 4;
    return json_true();
  }
  if (kw(ps, "false")) {
    ps->p += 5;
    return json_false();
  }
  if (kw(ps, "null")) {
    ps->p += 4;
    return json_null();
  }
  if (*p == '-' || isdigit((unsigned char)*p)) {
    char *end;
    double d = strtod(p, &end);
    if (end == p) {
      perr(ps, "invalid number");
      return NULL;
    }
    ps->p = end;
    /* integers only when exactly representable (the cast is UB beyond) */
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d &&
        !memchr(p, '.', (size_t)(end - p)) && !memchr(p, 'e', (size_t)(end - p)) &&
        !memchr(p, 'E', (size_t)(end - p)))
      return json_integer((json_int_t)d);
    if (d != d || d > 1.7e308 || d < -1.7e308) {
      perr(ps, "number out of range");
      return NULL;
    }
    return json_real(d);
  }
  perr(ps, "expected a value (string, number, true, false or null)");
  return NULL;
}

static const char *const op_names[] = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"};

static scim__filter *parse_or(parser *ps);

static scim__filter *node(int kind) {
  scim__filter *f = calloc(1, sizeof *f);
  if (f) f->kind = kind;
  return f;
}

/* The literal an operator may take (RFC 7644 §3.4.2.2): gt/ge/lt/le order
 * strings, numbers and dateTimes — on true/false/null they fail (400,
 * not an empty answer); co/sw/ew take a string. False with the error. */
static bool literal_fits(parser *ps, int op, const json_t *v) {
  if ((op == SCIM__OP_GT || op == SCIM__OP_GE || op == SCIM__OP_LT || op == SCIM__OP_LE) &&
      (json_is_boolean(v) || json_is_null(v))) {
    perr(ps, "%s compares strings, numbers and dates, not true, false or null", op_names[op]);
    return false;
  }
  if ((op == SCIM__OP_CO || op == SCIM__OP_SW || op == SCIM__OP_EW) && !json_is_string(v)) {
    perr(ps, "%s takes a string", op_names[op]);
    return false;
  }
  return true;
}

/* attrPath op value | attrPath pr | attrPath "[" filter "]" [ "." sub op value ] */
static scim__filter *parse_attr_exp(parser *ps) {
  size_t n = word_len(ps->p);
  if (n == 0) {
    perr(ps, "expected an attribute name");
    return NULL;
  }
  const char *w = ps->p;
  ps->p += n;
  if (*ps->p == '[') {
    scim__filter *vp = node(SCIM__F_VALPATH);
    if (!vp) return NULL;
    if (split_attrpath(w, n, &vp->path, NULL) != 0 || vp->path.sub) {
      perr(ps, "invalid attribute path");
      scim__filter_free(vp);
      return NULL;
    }
    ps->p++;
    if (++ps->depth > SCIM__MAX_DEPTH) {
      perr(ps, "filter nested too deeply");
      scim__filter_free(vp);
      return NULL;
    }
    vp->a = parse_or(ps);
    ps->depth--;
    if (!vp->a) {
      scim__filter_free(vp);
      return NULL;
    }
    skip_ws(ps);
    if (*ps->p != ']') {
      perr(ps, "expected ']'");
      scim__filter_free(vp);
      return NULL;
    }
    ps->p++;
    if (*ps->p == '.') {
      /* emails[type eq "work"].value eq "x": sub-attribute test inside */
      ps->p++;
      size_t sn = word_len(ps->p);
      if (!sn || memchr(ps->p, '.', sn) || memchr(ps->p, ':', sn)) {
        perr(ps, "expected a sub-attribute after ']'");
        scim__filter_free(vp);
        return NULL;
      }
      char *sub = strndup(ps->p, sn);
      ps->p += sn;
      skip_ws(ps);
      scim__filter *cmp = NULL;
      if (kw(ps, "pr")) {
        ps->p += 2;
        cmp = node(SCIM__F_PR);
      } else {
        int op = -1;
        for (int i = 0; i < 9; i++)
          if (kw(ps, op_names[i])) op = i;
        if (op < 0) {
          free(sub);
          perr(ps, "expected an operator");
          scim__filter_free(vp);
          return NULL;
        }
        ps->p += 2;
        skip_ws(ps);
        cmp = node(SCIM__F_CMP);
        if (cmp) {
          cmp->op = op;
          cmp->value = parse_literal(ps);
          if (cmp->value && !literal_fits(ps, op, cmp->value)) {
            json_decref(cmp->value);
            cmp->value = NULL;
          }
          if (!cmp->value) {
            free(sub);
            scim__filter_free(cmp);
            scim__filter_free(vp);
            return NULL;
          }
        }
      }
      if (!cmp) {
        free(sub);
        scim__filter_free(vp);
        return NULL;
      }
      cmp->path.attr = sub;
      scim__filter *and = node(SCIM__F_AND);
      and->a = vp->a;
      and->b = cmp;
      vp->a = and;
    }
    return vp;
  }
  scim__filter *f = node(SCIM__F_CMP);
  if (!f) return NULL;
  if (split_attrpath(w, n, &f->path, NULL) != 0) {
    ps->p = w;
    perr(ps, "invalid attribute path");
    scim__filter_free(f);
    return NULL;
  }
  if (*ps->p != ' ') {
    perr(ps, "expected a space and an operator after the attribute");
    scim__filter_free(f);
    return NULL;
  }
  skip_ws(ps);
  if (kw(ps, "pr")) {
    ps->p += 2;
    f->kind = SCIM__F_PR;
    return f;
  }
  f->op = -1;
  for (int i = 0; i < 9; i++)
    if (kw(ps, op_names[i])) f->op = i;
  if (f->op < 0) {
    perr(ps, "unknown operator (expected eq, ne, co, sw, ew, gt, ge, lt, le or pr)");
    scim__filter_free(f);
    return NULL;
  }
  ps->p += 2;
  if (*ps->p != ' ') {
    perr(ps, "expected a space after the operator");
    scim__filter_free(f);
    return NULL;
  }
  skip_ws(ps);
  f->value = parse_literal(ps);
  if (f->value && !literal_fits(ps, f->op, f->value)) {
    json_decref(f->value);
    f->value = NULL;
  }
  if (!f->value) {
    scim__filter_free(f);
    return NULL;
  }
  return f;
}

static scim__filter *parse_unary(parser *ps) {
  skip_ws(ps);
  if (++ps->depth > SCIM__MAX_DEPTH) {
    perr(ps, "filter nested too deeply");
    return NULL;
  }
  scim__filter *r = NULL;
  if (kw(ps, "not")) {
    ps->p += 3;
    skip_ws(ps);
    if (*ps->p != '(') {
      perr(ps, "expected '(' after not");
      goto out;
    }
    ps->p++;
    scim__filter *in = parse_or(ps);
    if (!in) goto out;
    skip_ws(ps);
    if (*ps->p != ')') {
      perr(ps, "expected ')'");
      scim__filter_free(in);
      goto out;
    }
    ps->p++;
    r = node(SCIM__F_NOT);
    if (r) r->a = in;
    else scim__filter_free(in);
  } else if (*ps->p == '(') {
    ps->p++;
    r = parse_or(ps);
    if (!r) goto out;
    skip_ws(ps);
    if (*ps->p != ')') {
      perr(ps, "expected ')'");
      scim__filter_free(r);
      r = NULL;
      goto out;
    }
    ps->p++;
  } else {
    r = parse_attr_exp(ps);
  }
out:
  ps->depth--;
  return r;
}

static scim__filter *parse_and(parser *ps) {
  scim__filter *l = parse_unary(ps);
  while (l) {
    const char *save = ps->p;
    skip_ws(ps);
    if (!kw(ps, "and") || save == ps->p) {
      ps->p = save;
      break;
    }
    ps->p += 3;
    scim__filter *r = parse_unary(ps);
    if (!r) {
      scim__filter_free(l);
      return NULL;
    }
    scim__filter *n = node(SCIM__F_AND);
    n->a = l;
    n->b = r;
    l = n;
  }
  return l;
}

static scim__filter *parse_or(parser *ps) {
  scim__filter *l = parse_and(ps);
  while (l) {
    const char *save = ps->p;
    skip_ws(ps);
    if (!kw(ps, "or") || save == ps->p) {
      ps->p = save;
      break;
    }
    ps->p += 2;
    scim__filter *r = parse_and(ps);
    if (!r) {
      scim__filter_free(l);
      return NULL;
    }
    scim__filter *n = node(SCIM__F_OR);
    n->a = l;
    n->b = r;
    l = n;
  }
  return l;
}

int scim__filter_parse(const char *s, scim__filter **out, char *err, size_t errlen) {
  parser ps = {s, s, err, errlen, 0, 0};
  *out = NULL;
  if (strlen(s) > 4096) {
    snprintf(err, errlen, "filter longer than 4096 characters");
    return -1;
  }
  scim__filter *f = parse_or(&ps);
  if (f) {
    skip_ws(&ps);
    if (*ps.p) {
      perr(&ps, "unexpected text");
      scim__filter_free(f);
      f = NULL;
    }
  }
  if (!f) {
    if (!ps.failed) snprintf(err, errlen, "invalid filter");
    return -1;
  }
  *out = f;
  return 0;
}

/* ---------- evaluation ---------- */

json_t *scim__oget(const json_t *o, const char *name, const char **key) {
  const char *k;
  json_t *v;
  if (!json_is_object(o)) return NULL;
  json_object_foreach((json_t *)o, k, v) {
    if (strcasecmp(k, name) == 0) {
      if (key) *key = k;
      return v;
    }
  }
  return NULL;
}

bool scim__case_exact(const char *attr, const char *sub) {
  if (!attr) return false;
  if (!sub) return !strcasecmp(attr, "id") || !strcasecmp(attr, "externalId");
  return !strcasecmp(sub, "$ref") || (!strcasecmp(attr, "members") && !strcasecmp(sub, "value")) ||
         (!strcasecmp(attr, "groups") && !strcasecmp(sub, "value"));
}

int scim__json_equal_ci(const json_t *a, const json_t *b, bool case_exact) {
  if (json_is_string(a) && json_is_string(b))
    return case_exact ? strcmp(json_string_value(a), json_string_value(b)) == 0
                      : st_text_fold_eq(json_string_value(a), json_string_value(b));
  return json_equal((json_t *)a, (json_t *)b);
}

/* Collects the values an attrpath designates (multi-valued → each). */
/* charges m for work; false once m is spent */
static bool charge(scim__meter *m, size_t work) {
  if (!m) return true;
  m->used += work + SCIM__METER_STEP;
  return m->used <= m->limit;
}

/* the keys a lookup in o passes (scim__oget scans them) */
static size_t keys_of(const json_t *o) { return json_is_object(o) ? json_object_size(o) : 0; }

static void collect(const json_t *res, const scim__attrpath *ap, json_t *out, scim__meter *m) {
  const json_t *base = res;
  if (ap->urn && strcasecmp(ap->urn, SCIM_URN_USER) != 0 && strcasecmp(ap->urn, SCIM_URN_GROUP) != 0) {
    charge(m, keys_of(res));
    base = scim__oget(res, ap->urn, NULL);
  }
  charge(m, keys_of(base));
  json_t *v = base ? scim__oget(base, ap->attr, NULL) : NULL;
  if (json_is_array(v)) charge(m, json_array_size(v) * (ap->sub ? 8 : 2));
  if (!v) {
    /* meta.* lives inside "meta": "meta.lastModified" arrives as attr=meta sub=… */
    return;
  }
  if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      if (ap->sub) {
        json_t *s = scim__oget(e, ap->sub, NULL);
        if (s) json_array_append(out, s);
      } else if (json_is_object(e)) {
        /* a multi-valued complex attribute compares on its "value" */
        json_t *s = scim__oget(e, "value", NULL);
        if (s) json_array_append(out, s);
      } else {
        json_array_append(out, e);
      }
    }
  } else if (ap->sub) {
    json_t *s = scim__oget(v, ap->sub, NULL);
    if (s) json_array_append(out, s);
  } else {
    json_array_append(out, v);
  }
}

/* RFC 3339 date-time → seconds since the epoch (fractions and offsets
 * honoured); false when s is not one. */
static bool parse_datetime(const char *s, double *out);
bool scim__datetime(const char *s, double *out);
bool scim__datetime(const char *s, double *out) { return parse_datetime(s, out); }

static bool parse_datetime(const char *s, double *out) {
  int Y, M, D, h, m, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n != 19) return false;
  const char *p = s + 19;
  double frac = 0;
  if (*p == '.') {
    double scale = 0.1;
    p++;
    if (!isdigit((unsigned char)*p)) return false;
    while (isdigit((unsigned char)*p)) {
      frac += (*p++ - '0') * scale;
      scale /= 10;
    }
  }
  int off = 0;
  if (*p == 'Z' || *p == 'z') p++;
  else if (*p == '+' || *p == '-') {
    int oh, om, k = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5) return false;
    off = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
    p += 6;
  } else {
    return false;
  }
  if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return false;
  /* days from the civil date (proleptic Gregorian) */
  int y = Y - (M <= 2);
  int era = (y >= 0 ? y : y - 399) / 400;
  int yoe = y - era * 400;
  int doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  double days = (double)era * 146097 + doe - 719468;
  *out = days * 86400 + h * 3600 + m * 60 + sec + frac - off;
  return true;
}

static int cmp_values(const json_t *v, const json_t *lit, int op, bool exact, scim__meter *m) {
  if (json_is_string(v) && json_is_string(lit)) {
    const char *a = json_string_value(v), *b = json_string_value(lit);
    /* every comparison below is linear in the two lengths */
    if (!charge(m, json_string_length(v) + json_string_length(lit))) return 0;
    double ta, tb;
    if (op != SCIM__OP_CO && op != SCIM__OP_SW && op != SCIM__OP_EW && parse_datetime(a, &ta) &&
        parse_datetime(b, &tb)) {
      /* dateTime: chronological, whatever the precision or offset */
      switch (op) {
      case SCIM__OP_EQ: return ta == tb;
      case SCIM__OP_NE: return ta != tb;
      case SCIM__OP_GT: return ta > tb;
      case SCIM__OP_GE: return ta >= tb;
      case SCIM__OP_LT: return ta < tb;
      case SCIM__OP_LE: return ta <= tb;
      }
    }
    /* caseExact false: both sides folded (store/text.h: Unicode's simple
     * case folding, as the userName and displayName indexes key them),
     * then compared as bytes */
    char *fa = NULL, *fb = NULL;
    if (!exact) {
      fa = st_text_fold_dup(a);
      fb = st_text_fold_dup(b);
      if (!fa || !fb) { /* no memory: as a comparison over its budget, the caller discards the result */
        free(fa);
        free(fb);
        if (m) m->used = m->limit + 1;
        return 0;
      }
      a = fa, b = fb;
    }
    size_t al = strlen(a), bl = strlen(b);
    int c = strcmp(a, b), rv = 0;
    switch (op) {
    case SCIM__OP_EQ: rv = c == 0; break;
    case SCIM__OP_NE: rv = c != 0; break;
    /* glibc's strstr is linear (two-way); a comparison at every offset was
     * len(value) x len(literal): a 4 kB literal over a 250 kB value took
     * ~30 ms */
    case SCIM__OP_CO: rv = strstr(a, b) != NULL; break;
    case SCIM__OP_SW: rv = bl <= al && strncmp(a, b, bl) == 0; break;
    case SCIM__OP_EW: rv = bl <= al && strcmp(a + al - bl, b) == 0; break;
    case SCIM__OP_GT: rv = c > 0; break;
    case SCIM__OP_GE: rv = c >= 0; break;
    case SCIM__OP_LT: rv = c < 0; break;
    case SCIM__OP_LE: rv = c <= 0; break;
    }
    free(fa);
    free(fb);
    return rv;
  }
  if (!charge(m, 0)) return 0;
  if (json_is_number(v) && json_is_number(lit)) {
    double a = json_number_value(v), b = json_number_value(lit);
    switch (op) {
    case SCIM__OP_EQ: return a == b;
    case SCIM__OP_NE: return a != b;
    case SCIM__OP_GT: return a > b;
    case SCIM__OP_GE: return a >= b;
    case SCIM__OP_LT: return a < b;
    case SCIM__OP_LE: return a <= b;
    default: return 0;
    }
  }
  if (json_is_boolean(v) || json_is_boolean(lit) || json_is_null(lit)) {
    int eq = json_equal((json_t *)v, (json_t *)lit);
    if (op == SCIM__OP_EQ) return eq;
    if (op == SCIM__OP_NE) return !eq;
  }
  return 0;
}

/* parent: inside a value path ("members[value eq …]"), the multi-valued
 * attribute whose elements are tested — caseExact depends on it. */
static bool match_in(const scim__filter *f, const json_t *res, const char *parent, scim__meter *m);

/* false once m is spent (a `not` above the node that spent it would
 * otherwise turn its false into true) */
bool scim__filter_match(const scim__filter *f, const json_t *res, scim__meter *m) {
  return match_in(f, res, NULL, m) && !scim__meter_over(m);
}
bool scim__filter_match_in(const scim__filter *f, const json_t *elem, const char *parent, scim__meter *m) {
  return match_in(f, elem, parent, m) && !scim__meter_over(m);
}

static bool match_in(const scim__filter *f, const json_t *res, const char *parent, scim__meter *m) {
  if (scim__meter_over(m)) return false;
  switch (f->kind) {
  case SCIM__F_AND: return match_in(f->a, res, parent, m) && match_in(f->b, res, parent, m);
  case SCIM__F_OR: return match_in(f->a, res, parent, m) || match_in(f->b, res, parent, m);
  case SCIM__F_NOT: return !match_in(f->a, res, parent, m);
  case SCIM__F_PR: {
    json_t *vals = json_array();
    collect(res, &f->path, vals, m);
    bool any = false;
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v) {
      if (json_is_null(v)) continue;
      if (json_is_string(v) && !*json_string_value(v)) continue;
      if (json_is_array(v) && !json_array_size(v)) continue;
      any = true;
    }
    json_decref(vals);
    return any;
  }
  case SCIM__F_CMP: {
    json_t *vals = json_array();
    collect(res, &f->path, vals, m);
    bool exact = parent && !f->path.sub ? scim__case_exact(parent, f->path.attr)
                                        : scim__case_exact(f->path.attr, f->path.sub);
    bool r;
    if (json_is_null(f->value) && (f->op == SCIM__OP_EQ || f->op == SCIM__OP_NE)) {
      /* null: an unassigned attribute (absent, or null) — RFC 7643 §2.5 */
      bool assigned = false;
      size_t i;
      json_t *v;
      json_array_foreach(vals, i, v) if (!json_is_null(v)) assigned = true;
      json_decref(vals);
      return f->op == SCIM__OP_EQ ? !assigned : assigned;
    }
    if (f->op == SCIM__OP_NE) {
      /* ne: no value equals */
      r = true;
      size_t i;
      json_t *v;
      json_array_foreach(vals, i, v) if (cmp_values(v, f->value, SCIM__OP_EQ, exact, m)) r = false;
    } else {
      r = false;
      size_t i;
      json_t *v;
      json_array_foreach(vals, i, v) if (cmp_values(v, f->value, f->op, exact, m)) r = true;
    }
    json_decref(vals);
    return r;
  }
  case SCIM__F_VALPATH: {
    const json_t *base = res;
    if (f->path.urn && strcasecmp(f->path.urn, SCIM_URN_USER) && strcasecmp(f->path.urn, SCIM_URN_GROUP))
      base = charge(m, keys_of(res)) ? scim__oget(res, f->path.urn, NULL) : NULL;
    json_t *v = base && charge(m, keys_of(base)) ? scim__oget(base, f->path.attr, NULL) : NULL;
    if (json_is_object(v)) return match_in(f->a, v, f->path.attr, m);
    if (!json_is_array(v)) return false;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (match_in(f->a, e, f->path.attr, m)) return true;
    return false;
  }
  }
  return false;
}

/* ---------- PATCH paths ---------- */

int scim__path_parse(const char *s, scim__path *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  parser ps = {s, s, err, errlen, 0, 0};
  if (strlen(s) > 4096) { /* as a query's filter (its value filter is one) */
    snprintf(err, errlen, "path longer than 4096 characters");
    return -1;
  }
  size_t n = word_len(s);
  if (n == 0) {
    snprintf(err, errlen, "invalid path \"%.80s\"", s);
    return -1;
  }
  if (split_attrpath(s, n, &out->ap, &out->urn_only) != 0) {
    snprintf(err, errlen, "invalid path \"%.80s\"", s);
    free_ap(&out->ap);
    return -1;
  }
  ps.p = s + n;
  if (*ps.p == '[') {
    if (out->ap.sub || out->urn_only) {
      snprintf(err, errlen, "invalid path \"%.80s\"", s);
      scim__path_free(out);
      return -1;
    }
    ps.p++;
    out->filter = parse_or(&ps);
    if (!out->filter) {
      scim__path_free(out);
      return -1;
    }
    skip_ws(&ps);
    if (*ps.p != ']') {
      perr(&ps, "expected ']'");
      scim__path_free(out);
      return -1;
    }
    ps.p++;
    if (*ps.p == '.') {
      ps.p++;
      size_t sn = word_len(ps.p);
      if (!sn || memchr(ps.p, '.', sn)) {
        perr(&ps, "expected a sub-attribute");
        scim__path_free(out);
        return -1;
      }
      out->ap.sub = strndup(ps.p, sn);
      ps.p += sn;
    }
  }
  if (*ps.p) {
    perr(&ps, "unexpected text in path");
    scim__path_free(out);
    return -1;
  }
  return 0;
}

void scim__path_free(scim__path *p) {
  free_ap(&p->ap);
  scim__filter_free(p->filter);
  p->filter = NULL;
}

json_t *scim__bool_value(const json_t *v) {
  if (json_is_boolean(v)) return json_incref((json_t *)v);
  if (json_is_string(v)) {
    if (!strcasecmp(json_string_value(v), "true")) return json_true();
    if (!strcasecmp(json_string_value(v), "false")) return json_false();
  }
  return NULL;
}
