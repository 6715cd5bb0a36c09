/* gateway/mcp/tool_list.c — a tool list filtered by policy without a
 * parse (tool_list.h).
 *
 * Rules this file keeps: the input is text the scan accepted (json_check.h)
 * and every tool is judged by what jansson would decode from it — so a
 * key or a name with an escape, or anything the scan leaves undecided, is
 * jansson's to judge (-1), never guessed; the output is the input's bytes
 * with whole elements left out and two kinds of edit (a description's
 * approval note, an aggregated name), so it is JSON whenever the input
 * was; nothing is written on -1. */
#include "gateway/mcp/tool_list.h"

#include <string.h>

#include "gateway/base/json_check.h"

/* pol_filter_tools's note, the same words */
static const char NOTE[] = "[requires approval: your organisation's policy must approve each call] ";

#define NAME_MAX_BYTES 255 /* longer names go to jansson (the aggregated name's buffer is 400) */

typedef struct edit {
  const char *at;
  size_t cut; /* bytes of the element replaced */
  int what;   /* 0 the name, 1 the description */
} edit;

/* One element at it (its first byte; the array's bytes run to end): its
 * whole text in *whole, and appended to out as the user sees it, or left
 * out. 1 kept, 0 left out, -1 undecided. An object's members are walked
 * once, as spelled: the text was accepted by gw_json_pick, so no key has
 * an escape and none repeats (tool_list.h). */
static int one_tool(const pol_user *u, const char *connector, bool rename, const char *it, const char *end,
                    gw_json_span *whole, gw_buf *out) {
  if (it[0] != '{') { /* not a tool: no name, so blocked */
    *whole = (gw_json_span){it, gw_json_value_len(it, (size_t)(end - it))};
    return 0;
  }
  gw_json_span name = {0}, desc = {0}, k, v;
  size_t at = 0;
  while (gw_json_next_member(it, (size_t)(end - it), &at, &k, &v)) {
    if (k.n == 6 && !memcmp(k.p, "\"name\"", 6)) name = v;
    else if (k.n == 13 && !memcmp(k.p, "\"description\"", 13)) desc = v;
  }
  *whole = (gw_json_span){it, at};
  if (!name.p || name.p[0] != '"') return 0;
  if (name.n - 2 > NAME_MAX_BYTES || memchr(name.p, '\\', name.n)) return -1;
  char nm[NAME_MAX_BYTES + 1];
  memcpy(nm, name.p + 1, name.n - 2);
  nm[name.n - 2] = 0;
  pol_decision d = u ? pol_decide(u, connector, nm) : POL_BLOCK;
  if (d != POL_ALLOW && d != POL_APPROVE) return 0;
  /* the splices, in the order they occur in the element: the name (when
   * renamed) and the description (when noted; absent: added at the end) */
  edit sp[2];
  int ns = 0;
  if (rename) sp[ns++] = (edit){name.p, name.n, 0};
  bool add_desc = false;
  if (d == POL_APPROVE) {
    if (desc.p) sp[ns++] = (edit){desc.p, desc.n, 1};
    else add_desc = true;
  }
  if (ns == 2 && sp[1].at < sp[0].at) {
    edit t = sp[0];
    sp[0] = sp[1];
    sp[1] = t;
  }
  const char *from = whole->p, *wend = whole->p + whole->n;
  int rc = 0;
  for (int i = 0; i < ns && !rc; i++) {
    rc = gw_buf_append(out, from, (size_t)(sp[i].at - from));
    if (rc) break;
    if (sp[i].what == 0) {
      rc = gw_buf_appendv(out, "\"", connector, "__", NULL);
      if (!rc) rc = gw_buf_append(out, name.p + 1, name.n - 1); /* the name and its closing quote */
    } else {
      rc = gw_buf_appendv(out, "\"", NOTE, NULL);
      /* a string description follows the note (its opening quote dropped);
       * anything else is replaced by the note alone, as jansson's path does */
      if (!rc) rc = desc.p[0] == '"' ? gw_buf_append(out, desc.p + 1, desc.n - 1) : gw_buf_append(out, "\"", 1);
    }
    from = sp[i].at + sp[i].cut;
  }
  if (!rc && add_desc) {
    /* the element ends with its '}' (it has a name, so a member before) */
    rc = gw_buf_append(out, from, (size_t)(wend - 1 - from));
    if (!rc) rc = gw_buf_appendv(out, ",\"description\":\"", NOTE, "\"}", NULL);
  } else if (!rc) {
    rc = gw_buf_append(out, from, (size_t)(wend - from));
  }
  return rc ? -1 : 1;
}

int gw__tool_list_filter(const pol_user *u, const char *connector, bool rename, const char *arr, size_t n,
                         gw_buf *out, bool *changed) {
  size_t start = out->len, kept = 0;
  const char *q = arr + 1, *end = arr + n; /* after '[' */
  *changed = rename;
  if (gw_buf_append(out, "[", 1)) return -1;
  for (;;) {
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ',')) q++;
    if (q >= end || *q == ']') break;
    size_t before = out->len;
    if (kept && gw_buf_append(out, ",", 1)) goto undecided;
    size_t mark = out->len;
    gw_json_span whole;
    int rc = one_tool(u, connector, rename, q, end, &whole, out);
    if (rc < 0) goto undecided;
    q = whole.p + whole.n;
    if (rc == 0) {
      out->len = before;
      if (out->data) out->data[before] = 0;
      *changed = true;
      continue;
    }
    kept++;
    /* kept as it was: the same bytes (an approval note changes them) */
    if (out->len - mark != whole.n) *changed = true;
  }
  if (gw_buf_append(out, "]", 1)) goto undecided;
  return 1;
undecided:
  out->len = start;
  if (out->data) out->data[start] = 0;
  return -1;
}

int gw__tool_list_filter_msg(const pol_user *u, const char *connector, const char *p, size_t n, gw_buf *out) {
  static const char *const paths[] = {"result.tools"};
  gw_json_span tools;
  if (gw_json_pick(p, n, paths, 1, &tools) != 1) return -1;
  if (!tools.p || tools.p[0] != '[') return 0; /* no tool list: nothing to filter */
  size_t start = out->len;
  bool changed;
  if (gw_buf_append(out, p, (size_t)(tools.p - p)) ||
      gw__tool_list_filter(u, connector, false, tools.p, tools.n, out, &changed) < 0 ||
      gw_buf_append(out, tools.p + tools.n, (size_t)(p + n - (tools.p + tools.n)))) {
    out->len = start;
    if (out->data) out->data[start] = 0;
    return -1;
  }
  if (!changed) {
    out->len = start;
    if (out->data) out->data[start] = 0;
    return 0;
  }
  return 1;
}
