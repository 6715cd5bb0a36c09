/* scim/discovery.c — /ServiceProviderConfig, /ResourceTypes, /Schemas
 * (RFC 7643 §5–7), each also by id. What they say is what the server does:
 * PATCH yes, bulk no, filter yes (maxResults = the count cap), sort no,
 * ETags yes, changePassword no (passwords are never stored). Writes to them
 * are 405. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "scim/scim_int.h"

static json_t *attr(const char *name, const char *type, bool multi, bool required, const char *mut,
                    const char *returned, const char *uniq, bool case_exact) {
  return json_pack("{s:s,s:s,s:b,s:s,s:b,s:b,s:s,s:s,s:s}", "name", name, "type", type, "multiValued",
                   multi, "description", name, "required", required, "caseExact", case_exact,
                   "mutability", mut, "returned", returned, "uniqueness", uniq);
}

static json_t *multi_complex(const char *name) {
  json_t *a = attr(name, "complex", true, false, "readWrite", "default", "none", false);
  json_object_set_new(a, "subAttributes",
                      json_pack("[o,o,o,o]", attr("value", "string", false, false, "readWrite", "default", "none", false),
                                attr("display", "string", false, false, "readWrite", "default", "none", false),
                                attr("type", "string", false, false, "readWrite", "default", "none", false),
                                attr("primary", "boolean", false, false, "readWrite", "default", "none", false)));
  return a;
}

static json_t *meta(const scim_req *rq, const char *rtype, const char *path) {
  char loc[700];
  snprintf(loc, sizeof loc, "%s%s", rq->base_url, path);
  return json_pack("{s:s,s:s}", "resourceType", rtype, "location", loc);
}

static json_t *user_schema(const scim_req *rq) {
  json_t *name = attr("name", "complex", false, false, "readWrite", "default", "none", false);
  json_object_set_new(
      name, "subAttributes",
      json_pack("[o,o,o,o,o,o]", attr("formatted", "string", false, false, "readWrite", "default", "none", false),
                attr("familyName", "string", false, false, "readWrite", "default", "none", false),
                attr("givenName", "string", false, false, "readWrite", "default", "none", false),
                attr("middleName", "string", false, false, "readWrite", "default", "none", false),
                attr("honorificPrefix", "string", false, false, "readWrite", "default", "none", false),
                attr("honorificSuffix", "string", false, false, "readWrite", "default", "none", false)));
  json_t *groups = attr("groups", "complex", true, false, "readOnly", "default", "none", false);
  json_object_set_new(groups, "subAttributes",
                      json_pack("[o,o,o,o]", attr("value", "string", false, false, "readOnly", "default", "none", true),
                                attr("$ref", "reference", false, false, "readOnly", "default", "none", true),
                                attr("display", "string", false, false, "readOnly", "default", "none", false),
                                attr("type", "string", false, false, "readOnly", "default", "none", false)));
  json_t *attrs = json_pack(
      "[o,o,o,o,o,o,o,o,o,o,o,o,o,o,o,o,o]",
      attr("userName", "string", false, true, "readWrite", "default", "server", false), name,
      attr("displayName", "string", false, false, "readWrite", "default", "none", false),
      attr("nickName", "string", false, false, "readWrite", "default", "none", false),
      attr("profileUrl", "reference", false, false, "readWrite", "default", "none", false),
      attr("title", "string", false, false, "readWrite", "default", "none", false),
      attr("userType", "string", false, false, "readWrite", "default", "none", false),
      attr("preferredLanguage", "string", false, false, "readWrite", "default", "none", false),
      attr("locale", "string", false, false, "readWrite", "default", "none", false),
      attr("timezone", "string", false, false, "readWrite", "default", "none", false),
      attr("active", "boolean", false, false, "readWrite", "default", "none", false),
      attr("password", "string", false, false, "writeOnly", "never", "none", false),
      multi_complex("emails"), multi_complex("phoneNumbers"), multi_complex("addresses"),
      multi_complex("roles"), groups);
  return json_pack("{s:[s],s:s,s:s,s:s,s:o,s:o}", "schemas",
                   "urn:ietf:params:scim:schemas:core:2.0:Schema", "id", SCIM_URN_USER, "name", "User",
                   "description", "User Account", "attributes", attrs, "meta",
                   meta(rq, "Schema", "/Schemas/" SCIM_URN_USER));
}

static json_t *group_schema(const scim_req *rq) {
  json_t *members = attr("members", "complex", true, false, "readWrite", "default", "none", false);
  json_object_set_new(members, "subAttributes",
                      json_pack("[o,o,o,o]", attr("value", "string", false, false, "immutable", "default", "none", true),
                                attr("$ref", "reference", false, false, "immutable", "default", "none", true),
                                attr("display", "string", false, false, "readOnly", "default", "none", false),
                                attr("type", "string", false, false, "immutable", "default", "none", false)));
  json_t *attrs = json_pack("[o,o]", attr("displayName", "string", false, true, "readWrite", "default", "none", false),
                            members);
  return json_pack("{s:[s],s:s,s:s,s:s,s:o,s:o}", "schemas",
                   "urn:ietf:params:scim:schemas:core:2.0:Schema", "id", SCIM_URN_GROUP, "name", "Group",
                   "description", "Group", "attributes", attrs, "meta",
                   meta(rq, "Schema", "/Schemas/" SCIM_URN_GROUP));
}

static json_t *enterprise_schema(const scim_req *rq) {
  json_t *manager = attr("manager", "complex", false, false, "readWrite", "default", "none", false);
  json_object_set_new(manager, "subAttributes",
                      json_pack("[o,o,o]", attr("value", "string", false, false, "readWrite", "default", "none", false),
                                attr("$ref", "reference", false, false, "readWrite", "default", "none", false),
                                attr("displayName", "string", false, false, "readOnly", "default", "none", false)));
  json_t *attrs = json_pack("[o,o,o,o,o,o]",
                            attr("employeeNumber", "string", false, false, "readWrite", "default", "none", false),
                            attr("costCenter", "string", false, false, "readWrite", "default", "none", false),
                            attr("organization", "string", false, false, "readWrite", "default", "none", false),
                            attr("division", "string", false, false, "readWrite", "default", "none", false),
                            attr("department", "string", false, false, "readWrite", "default", "none", false),
                            manager);
  return json_pack("{s:[s],s:s,s:s,s:s,s:o,s:o}", "schemas",
                   "urn:ietf:params:scim:schemas:core:2.0:Schema", "id", SCIM_URN_ENTERPRISE, "name",
                   "EnterpriseUser", "description", "Enterprise User", "attributes", attrs, "meta",
                   meta(rq, "Schema", "/Schemas/" SCIM_URN_ENTERPRISE));
}

static json_t *rt_user(const scim_req *rq) {
  return json_pack("{s:[s],s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:b}],s:o}", "schemas",
                   "urn:ietf:params:scim:schemas:core:2.0:ResourceType", "id", "User", "name", "User",
                   "endpoint", "/Users", "description", "User Account", "schema", SCIM_URN_USER,
                   "schemaExtensions", "schema", SCIM_URN_ENTERPRISE, "required", 0, "meta",
                   meta(rq, "ResourceType", "/ResourceTypes/User"));
}

static json_t *rt_group(const scim_req *rq) {
  return json_pack("{s:[s],s:s,s:s,s:s,s:s,s:s,s:o}", "schemas",
                   "urn:ietf:params:scim:schemas:core:2.0:ResourceType", "id", "Group", "name", "Group",
                   "endpoint", "/Groups", "description", "Group", "schema", SCIM_URN_GROUP, "meta",
                   meta(rq, "ResourceType", "/ResourceTypes/Group"));
}

static json_t *spc(const scim_req *rq) {
  json_int_t maxr = rq->max_count ? (json_int_t)rq->max_count : 1000;
  return json_pack(
      "{s:[s],s:s,s:{s:b},s:{s:b,s:i,s:i},s:{s:b,s:I},s:{s:b},s:{s:b},s:{s:b},s:[{s:s,s:s,s:s,s:b}],s:o}",
      "schemas", "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig", "documentationUri",
      "https://github.com/mcpgate/mcpgate/blob/main/docs/okta.md", "patch", "supported", 1, "bulk",
      "supported", 0, "maxOperations", 0, "maxPayloadSize", 0, "filter", "supported", 1, "maxResults",
      maxr, "changePassword", "supported", 0, "sort", "supported", 0, "etag", "supported", 1,
      "authenticationSchemes", "type", "oauthbearertoken", "name", "OAuth Bearer Token", "description",
      "Authorization: Bearer <tenant SCIM token> (HTTP Basic with the token as password also works)",
      "primary", 1, "meta", meta(rq, "ServiceProviderConfig", "/ServiceProviderConfig"));
}

static json_t *list_of(json_t *items) {
  return json_pack("{s:[s],s:I,s:I,s:I,s:o}", "schemas", SCIM_URN_LIST, "totalResults",
                   (json_int_t)json_array_size(items), "startIndex", (json_int_t)1, "itemsPerPage",
                   (json_int_t)json_array_size(items), "Resources", items);
}

bool scim__discovery(const scim_req *rq, scim_resp *rs) {
  const char *p = rq->path;
  json_t *body = NULL;
  bool found = false;
  if (!strcmp(p, "/ServiceProviderConfig")) {
    found = true;
    body = spc(rq);
  } else if (!strncmp(p, "/ResourceTypes", 14) && (!p[14] || p[14] == '/')) {
    found = true;
    const char *id = p[14] ? p + 15 : NULL;
    if (!id) body = list_of(json_pack("[o,o]", rt_user(rq), rt_group(rq)));
    else if (!strcmp(id, "User")) body = rt_user(rq);
    else if (!strcmp(id, "Group")) body = rt_group(rq);
  } else if (!strncmp(p, "/Schemas", 8) && (!p[8] || p[8] == '/')) {
    found = true;
    const char *id = p[8] ? p + 9 : NULL;
    if (!id) body = list_of(json_pack("[o,o,o]", user_schema(rq), group_schema(rq), enterprise_schema(rq)));
    else if (!strcasecmp(id, SCIM_URN_USER)) body = user_schema(rq);
    else if (!strcasecmp(id, SCIM_URN_GROUP)) body = group_schema(rq);
    else if (!strcasecmp(id, SCIM_URN_ENTERPRISE)) body = enterprise_schema(rq);
  }
  if (!found) return false;
  if (scim_is_write(rq->method)) {
    json_decref(body);
    scim_error(rs, 405, NULL, "%s is read-only", p);
    return true;
  }
  if (!body) {
    scim_error(rs, 404, NULL, "no such resource: %.100s", p);
    return true;
  }
  rs->status = 200;
  rs->body = body;
  return true;
}
