/* scim/scim_int.h — private to scim/: filters, paths, PATCH, and the
 * helpers the resource files (resource, users, groups, query, render)
 * share. */
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
/* What evaluating filters may cost one request. A filter's work is not
 * one unit a resource: a `co` runs over the whole value, and a filter of
 * hundreds of nodes runs each node over a resource of up to
 * SCIM_RES_BYTES_MAX — tens of milliseconds a resource, on the loop or on
 * the writer every tenant's writes wait for. So each comparison charges
 * its operands' bytes plus SCIM__METER_STEP, and each attribute lookup the
 * keys it passes. Once `used` passes `limit`, every match answers false:
 * the caller, seeing scim__meter_over, discards what it was doing (the
 * loop's read goes to the pool; a PATCH is refused). NULL: unmetered. */
typedef struct scim__meter {
  size_t used, limit;
} scim__meter;
#define SCIM__METER_STEP 16
/* A request's filters compare at most this much on the writer (PATCH
 * paths, members[…] walks): ~50 ms of comparisons. An Okta or Entra
 * request compares a few kB; a filtered walk of a 150,000-member group
 * ~10 MB. */
#define SCIM__METER_WRITE_MAX ((size_t)64 << 20)
/* On the loop, one entry of the budget (scim.h) buys this many bytes. */
#define SCIM__METER_BYTES_PER_ENTRY 8192
static inline bool scim__meter_over(const scim__meter *m) { return m && m->used > m->limit; }

/* Evaluates on a resource as rendered (case-insensitive attribute names). */
bool scim__filter_match(const scim__filter *f, const json_t *res, scim__meter *m);
/* A value filter on one element of the multi-valued attribute `parent`
 * (caseExact follows parent.sub: members.value is exact). */
bool scim__filter_match_in(const scim__filter *f, const json_t *elem, const char *parent, scim__meter *m);

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

/* ---- resources (resource.c, users.c, groups.c, query.c, render.c) ----
 * Handlers fill rs and return 0, or SCIM_EABORT when the job must abort
 * (rs then holds the error reply). JSON returned is owned by the caller. */

/* resource.c: replies, records, meta and versions, events */
/* Takes n entries of the read's loop budget (scim.h): true, or false once
 * it would pass it (then over is set and stays set). No budget: true. */
bool scim__spend(const scim_req *rq, size_t n);
/* How many entries a walk may collect before it is past the budget: its
 * remainder + 1 (one more says "past"), or 0 (no budget: no limit) —
 * st_dir_ids_under's limit. */
size_t scim__budget_cap(const scim_req *rq);
/* Fills rs with the store error (507 when the map is full) and returns SCIM_EABORT. */
int scim__fail_store(scim_resp *rs, int rc);
/* The stored record of a user ('U') or group ('G'); ST_ENOTFOUND if absent. */
int scim__res_get(st_txn *txn, const char *tenant, char type, const char *id, json_t **out);
int scim__put_json(st_txn *txn, st_db db, const st_dir_key *k, json_t *j);
/* A write's result `nu` (a PATCH's, a PUT's; a POST's with old NULL) over
 * the bounds (scim.h) and larger than `old` was: fills rs with a 413 and
 * returns true. A change that does not grow a resource (a deactivation)
 * is never refused, whatever its size. What the record holds is weighed
 * here, whatever scim_write_too_large made of the body. */
bool scim__grew_too_large(const json_t *old, const json_t *nu, scim_resp *rs);
/* What a name — a body's key, a PATCH path — reaches, for the bounds on
 * what a write brings (scim_write_too_large, patch.c's check budget):
 * the attribute the record never holds (a group's "members", in the
 * membership index; a user's read-only "groups"), plain or qualified with
 * the core schema's URN, with or without a filter or sub-attribute
 * (SKIP); the core schema's URN alone, an object of attributes (CORE);
 * or anything else (STORED). */
enum { SCIM__NAME_STORED, SCIM__NAME_SKIP, SCIM__NAME_CORE };
int scim__name_kind(const char *name, bool group);
/* The same for an object's key (a POST's or PUT's body — body —, a
 * path-less PATCH value, the core URN's object in them): a key names an
 * attribute, never a filter or sub-attribute, so only the attribute itself
 * is SKIP ("groups.x" is an attribute normalize keeps), and in a body its
 * URN-qualified name is not (normalize keeps it as an extension). */
int scim__key_kind(const char *key, bool group, bool body);
/* Resource counters per tenant and type (the unfiltered list's total).
 * count_add also moves the type's list generation (store/dir.h 'w'):
 * call it for every create and delete, never for an update. */
int scim__count_add(st_txn *txn, const char *tenant, char type, int delta);
uint64_t scim__count_get(st_txn *txn, const char *tenant, char type);
/* 0, or SCIM_EABORT with a 507 when the tenant holds rq's cap of type (resource.c) */
int scim__count_cap(st_txn *txn, const scim_req *rq, char type, scim_resp *rs);
/* The list generation in txn's snapshot (0 when never written). */
uint64_t scim__list_gen_get(st_txn *txn, const char *tenant, char type);

/* pages.c: list checkpoints (scim.h, scim_pages). A checkpoint says "in
 * tenant (incarnation uid) under list generation gen, the type's resource
 * at 1-based position pos has id id" — true in every snapshot with that
 * generation. find: the deepest checkpoint of exactly that key with pos <
 * start; false when there is none. put: remembers one (bounded; see
 * pages.c). near: whether tenant holds a checkpoint of type, of any
 * incarnation and generation, with start - within <= pos < start — a
 * guess (scim_read_is_cheap has no snapshot), never an answer. steps:
 * adds n cursor steps of unfiltered walks to the counters. All
 * thread-safe; p may be NULL (nothing found, nothing kept). */
bool scim__pages_find(scim_pages *p, const char *tenant, const char *uid, char type, uint64_t gen, size_t start,
                      size_t *pos, char id[SCIM_ID_LEN + 1]);
void scim__pages_put(scim_pages *p, const char *tenant, const char *uid, char type, uint64_t gen, size_t pos,
                     const char *id);
bool scim__pages_near(scim_pages *p, const char *tenant, char type, size_t start, size_t within);
void scim__pages_count(scim_pages *p, size_t steps, bool hit, bool miss);
/* A string attribute looked up case-insensitively (borrowed), or NULL. */
const char *scim__jstr(const json_t *o, const char *k);
unsigned long scim__version_of(const json_t *stored);
void scim__set_meta(json_t *o, const char *type, const char *created, const char *now,
                    unsigned long version);
/* A user's groups revision (0 and "" if its groups never changed). */
void scim__grev_get(st_txn *txn, const char *tenant, const char *uid, uint64_t *rev, char when[40]);
/* The version a client sees (users: record version . groups revision). */
void scim__effective_version(st_txn *txn, const char *tenant, const json_t *stored, char out[48]);
/* Rewrites a rendered user's meta with its effective version and time. */
void scim__effective_meta(st_txn *txn, const char *tenant, json_t *o);
/* If-Match: 0 when absent or matching; else a 412 in rs and SCIM_EABORT. */
int scim__if_match_ok(st_txn *txn, const scim_req *rq, const json_t *stored, scim_resp *rs);
/* Emits a lifecycle event (added/removed: arrays of user ids or NULL);
 * a failing hook becomes a 500 in rs and SCIM_EABORT. */
int scim__emit(st_txn *txn, int kind, const scim_req *rq, const char *id, const char *name,
               const char *old_name, const json_t *added, const json_t *removed, scim_resp *rs);

/* render.c: serialisation */
/* Attribute selection (RFC 7644 §3.4.2.5): `attributes` keeps only what
 * it names (plus id, schemas and meta, which are always returned);
 * `excludedAttributes` removes what it names (never id or schemas). Each
 * entry is {"c": extension URN or null, "a": attribute or null, "s": sub}.
 * Both arrays owned by the view (NULL: no selection). */
typedef struct scim__view {
  json_t *attrs;
  json_t *excluded;
} scim__view;
/* Client JSON → stored form (canonical names, types checked, read-only
 * attributes dropped); NULL with a 400 in rs. */
json_t *scim__normalize(const json_t *in, bool group, scim_resp *rs);
/* A write body (POST/PUT; patch: a PatchOp) that names an attribute twice
 * in two spellings — names are case-insensitive, the strict JSON parse
 * only refuses exact duplicates —: false with a 400 invalidSyntax in rs. */
bool scim__names_unique(const json_t *body, bool group, bool patch, scim_resp *rs);
/* PATCH's validate callback: types only, required attributes may be absent. */
int scim__validate_types(const json_t *res, bool group, scim_resp *rs);
/* Stored form → reply (v NULL: everything). */
json_t *scim__render_user(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                          const scim__view *v);
json_t *scim__render_group(st_txn *txn, const scim_req *rq, const char *tenant, json_t *stored,
                           const scim__view *v);
/* rs takes o (status, ETag, and Location on 201). */
void scim__reply_resource(scim_resp *rs, int status, json_t *o, const scim_req *rq, const char *type);
/* "a, b.c, urn:…:d" → a view's entry list. */
json_t *scim__name_list(const char *s);

/* users.c, groups.c: writes (the job's write txn) */
int scim__user_create(st_txn *txn, const scim_req *rq, scim_resp *rs);
int scim__user_replace(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs);
int scim__user_patch(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs);
int scim__user_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs);
int scim__group_create(st_txn *txn, const scim_req *rq, scim_resp *rs);
int scim__group_write(st_txn *txn, const scim_req *rq, const char *id, bool patch, scim_resp *rs);
int scim__group_delete(st_txn *txn, const scim_req *rq, const char *id, scim_resp *rs);

/* query.c: reads (any txn) */
int scim__get_one(st_txn *txn, const scim_req *rq, char type, const char *id, scim_resp *rs);
/* GET /Users|/Groups with the query string's filter, paging, attributes. */
int scim__list_get(st_txn *txn, const scim_req *rq, char type, scim_resp *rs);
/* POST .search; type 0: from the root (users, then groups). */
int scim__search(st_txn *txn, const scim_req *rq, char type, scim_resp *rs);
void scim__view_free(scim__view *v);

#endif
