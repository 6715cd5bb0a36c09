/* scim/scim_int.h — private to scim/: filters, paths, resource helpers. */
#ifndef MCPGATE_SCIM_SCIM_INT_H
#define MCPGATE_SCIM_SCIM_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "scim/scim.h"
#include "store/dir.h"

#define SCIM__MAX_DEPTH 32 /* filter nesting */

/* ---- filters (RFC 7644 §3.4.2.2) ---- */
enum { SCIM__F_AND, SCIM__F_OR, SCIM__F_NOT, SCIM__F_CMP, SCIM__F_PR, SCIM__F_VALPATH };
enum { SCIM__OP_EQ, SCIM__OP_NE, SCIM__OP_CO, SCIM__OP_SW, SCIM__OP_EW, SCIM__OP_GT, SCIM__OP_GE,
       SCIM__OP_LT, SCIM__OP_LE };

typedef struct scim__attrpath {
  char *urn;  /* schema URN or NULL */
  char *attr; /* attribute name */
  char *sub;  /* sub-attribute or NULL */
} scim__attrpath;

typedef struct scim__filter {
  int kind;
  struct scim__filter *a, *b; /* AND/OR: a,b; NOT: a; VALPATH: a = inner filter */
  scim__attrpath path;        /* CMP/PR/VALPATH (VALPATH: attr + optional sub after ']') */
  int op;
  json_t *value;              /* CMP literal: string, true/false, null, number */
} scim__filter;

/* Parses a filter. On error returns negative and writes a message with the
 * character position into err. */
int scim__filter_parse(const char *s, scim__filter **out, char *err, size_t errlen);
void scim__filter_free(scim__filter *f);
/* Evaluates on a resource as rendered (case-insensitive attribute names). */
bool scim__filter_match(const scim__filter *f, const json_t *res);
/* A value filter on one element of the multi-valued attribute `parent`
 * (caseExact follows parent.sub: members.value is exact). */
bool scim__filter_match_in(const scim__filter *f, const json_t *elem, const char *parent);

/* PATCH paths: attrPath [ "[" valFilter "]" ] [ "." sub ], URN-aware. */
typedef struct scim__path {
  scim__attrpath ap;       /* ap.urn: container URN (NULL = root) */
  scim__filter *filter;    /* value filter or NULL */
  bool urn_only;           /* the path names an extension container itself */
} scim__path;
int scim__path_parse(const char *s, scim__path *out, char *err, size_t errlen);
void scim__path_free(scim__path *p);

/* Case-insensitive object lookup; returns the stored key via *key. */
json_t *scim__oget(const json_t *o, const char *name, const char **key);
bool scim__case_exact(const char *attr, const char *sub);
int scim__json_equal_ci(const json_t *a, const json_t *b, bool case_exact);

/* PATCH of a JSON resource (users; groups minus members). Applies ops in
 * order to `res` (a private copy). Member operations of groups are passed
 * to `members_cb` instead. On error fills rs and returns negative. */
typedef int (*scim__members_fn)(void *ctx, const char *op, const json_t *value,
                                const scim__filter *filter, scim_resp *rs);
/* Checks attribute types after each operation (not required attributes:
 * an intermediate state may lack them); fills rs and returns negative. */
typedef int (*scim__validate_fn)(const json_t *res, bool is_group, scim_resp *rs);
int scim__patch_apply(json_t *res, const json_t *body, bool is_group, scim__members_fn members_cb,
                      scim__validate_fn validate, void *ctx, scim_resp *rs);

/* RFC 3339 date-time → epoch seconds; false when s is not one. */
bool scim__datetime(const char *s, double *out);

/* Coerces "True"/"False" strings (Entra) to JSON booleans. */
json_t *scim__bool_value(const json_t *v);

/* discovery.c */
bool scim__discovery(const scim_req *rq, scim_resp *rs);

#endif
