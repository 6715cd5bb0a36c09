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

/* One element: appended to out as the user sees it, or left out. 1 kept,
 * 0 left out, -1 undecided. */
static int one_tool(const pol_user *u, const char *connector, bool rename, gw_json_span it, gw_buf *out) {
  if (it.p[0] != '{') return 0; /* not a tool: no name, so blocked */
  static const char *const paths[] = {"name", "description"};
  gw_json_span got[2];
  if (gw_json_pick(it.p, it.n, paths, 2, got) != 1) return -1;
  gw_json_span name = got[0], desc = got[1];
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
  const char *from = it.p, *end = it.p + it.n;
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
    rc = gw_buf_append(out, from, (size_t)(end - 1 - from));
    if (!rc) rc = gw_buf_appendv(out, ",\"description\":\"", NOTE, "\"}", NULL);
  } else if (!rc) {
    rc = gw_buf_append(out, from, (size_t)(end - from));
  }
  return rc ? -1 : 1;
}

int gw__tool_list_filter(const pol_user *u, const char *connector, bool rename, const char *arr, size_t n,
                         gw_buf *out, bool *changed) {
  size_t start = out->len, at = 0, kept = 0;
  gw_json_span it;
  *changed = rename;
  if (gw_buf_append(out, "[", 1)) return -1;
  while (gw_json_next_item(arr, n, &at, &it)) {
    size_t before = out->len;
    if (kept && gw_buf_append(out, ",", 1)) goto undecided;
    size_t mark = out->len;
    int rc = one_tool(u, connector, rename, it, out);
    if (rc < 0) goto undecided;
    if (rc == 0) {
      out->len = before;
      if (out->data) out->data[before] = 0;
      *changed = true;
      continue;
    }
    kept++;
    /* kept as it was: the same bytes (an approval note changes them) */
    if (out->len - mark != it.n) *changed = true;
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
