/* tests/unit/test_discover.c — vault/discover.h: WWW-Authenticate, the
 * well-known URLs, protected-resource and authorization server metadata,
 * the RFC 7591 request and reply, the CIMD document, and RFC 8707's
 * resource in the connect flow's requests (vault/connect.h). */
#include <jansson.h>

#include "vault/connect.h"
#include "vault/discover.h"
#include "vault/vault.h"
#include "unit.h"

TEST(www_authenticate_resource_metadata) {
  char out[VAULT_DISCOVER_URL_BUF];
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"https://a.example/.well-known/oauth-protected-resource/mcp\"", out, sizeof out), 0);
  CHECK_STR(out, "https://a.example/.well-known/oauth-protected-resource/mcp");
  /* several params, another scheme first, a token68, odd case and spaces */
  CHECK_INT(vault_www_auth_resource_metadata("Basic abc/+==, Negotiate, bearer realm=\"x\" , error=invalid_token,"
                                             "  RESOURCE_METADATA = \"http://127.0.0.1:9/m\"", out, sizeof out), 0);
  CHECK_STR(out, "http://127.0.0.1:9/m");
  /* escapes in a quoted string */
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"https://a\\.example/x\"", out, sizeof out), 0);
  CHECK_STR(out, "https://a.example/x");
  /* the parameter of another scheme does not count */
  CHECK_INT(vault_www_auth_resource_metadata("Other resource_metadata=\"https://a.example/x\"", out, sizeof out), -1);
  /* malformed, not a URL, unterminated, absent, too long for out */
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"javascript:x\"", out, sizeof out), -1);
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"https://a.example/x", out, sizeof out), -1);
  CHECK_INT(vault_www_auth_resource_metadata("Bearer realm=\"a\"", out, sizeof out), -1);
  CHECK_INT(vault_www_auth_resource_metadata("", out, sizeof out), -1);
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"https://a.example/xxxxxxxx\"", out, 10), -1);
  CHECK_INT(vault_www_auth_resource_metadata("Bearer resource_metadata=\"https://a.example/ x\"", out, sizeof out), -1);
  char big[6000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  memcpy(big, "Bearer resource_metadata=\"https://", 34);
  CHECK_INT(vault_www_auth_resource_metadata(big, out, sizeof out), -1);
}

TEST(well_known_urls) {
  char out[VAULT_DISCOVER_URL_BUF];
  CHECK_INT(vault_prm_well_known("https://mcp.example.com/mcp", out, sizeof out), 0);
  CHECK_STR(out, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
  CHECK_INT(vault_prm_well_known("https://mcp.example.com/", out, sizeof out), 0);
  CHECK_STR(out, "https://mcp.example.com/.well-known/oauth-protected-resource");
  CHECK_INT(vault_prm_well_known("http://127.0.0.1:8080/a/b/?x=1", out, sizeof out), 0);
  CHECK_STR(out, "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/b?x=1");
  CHECK_INT(vault_prm_well_known("ftp://x/y", out, sizeof out), -1);
  CHECK_INT(vault_prm_well_known("https://mcp.example.com/mcp", out, 20), -1);
  char c[VAULT_ASM_CANDIDATES][VAULT_DISCOVER_URL_BUF];
  CHECK_INT(vault_asm_candidates("https://as.example.com", c), 2);
  CHECK_STR(c[0], "https://as.example.com/.well-known/oauth-authorization-server");
  CHECK_STR(c[1], "https://as.example.com/.well-known/openid-configuration");
  CHECK_INT(vault_asm_candidates("https://as.example.com/tenant1/", c), 3);
  CHECK_STR(c[0], "https://as.example.com/.well-known/oauth-authorization-server/tenant1");
  CHECK_STR(c[1], "https://as.example.com/.well-known/openid-configuration/tenant1");
  CHECK_STR(c[2], "https://as.example.com/tenant1/.well-known/openid-configuration");
  CHECK_INT(vault_asm_candidates("https://as.example.com/?q=1", c), -1);
  CHECK_INT(vault_asm_candidates("as.example.com", c), -1);
}

TEST(same_resource_and_host) {
  CHECK(vault_same_resource("https://MCP.example.com:443/mcp/", "https://mcp.example.com/mcp"));
  CHECK(vault_same_resource("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"));
  CHECK(!vault_same_resource("https://mcp.example.com/mcp", "https://mcp.example.com/MCP"));
  CHECK(!vault_same_resource("https://mcp.example.com/mcp", "http://mcp.example.com/mcp"));
  CHECK(!vault_same_resource("https://mcp.example.com:8443/mcp", "https://mcp.example.com/mcp"));
  CHECK(!vault_same_resource("https://evil.example/mcp", "https://mcp.example.com/mcp"));
  char h[256];
  CHECK_INT(vault_url_host("https://u:p@AS.Example.com:8443/x", h, sizeof h), 0);
  CHECK_STR(h, "as.example.com");
  CHECK_INT(vault_url_host("http://[::1]:9/x", h, sizeof h), 0);
  CHECK_STR(h, "[::1]");
  CHECK_INT(vault_url_host("nope", h, sizeof h), -1);
}

TEST(prm_parse) {
  vault_prm p;
  char err[300];
  const char *ok = "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://as.example.com\","
                   "\"https://other\"],\"scopes_supported\":[\"a\"]}";
  CHECK_INT(vault_prm_parse(ok, strlen(ok), "https://mcp.example.com/mcp", &p, err, sizeof err), 0);
  CHECK_STR(p.resource, "https://mcp.example.com/mcp");
  CHECK_STR(p.authorization_server, "https://as.example.com");
  CHECK_STR(p.scopes, "a");
  /* scopes the admin would have to give: not taken */
  const char *sq = "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://as.example.com\"],"
                   "\"scopes_supported\":[\"read\",\"wr\\\"ite\"]}";
  CHECK_INT(vault_prm_parse(sq, strlen(sq), "https://mcp.example.com/mcp", &p, err, sizeof err), 0);
  CHECK_STR(p.scopes, "");
  const char *sn = "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://as.example.com\"],"
                   "\"scopes_supported\":\"read\"}";
  CHECK_INT(vault_prm_parse(sn, strlen(sn), "https://mcp.example.com/mcp", &p, err, sizeof err), VAULT_EDISCOVER);
  /* another resource: unusable (400), naming the connector URL */
  CHECK_INT(vault_prm_parse(ok, strlen(ok), "https://mcp.example.com/other", &p, err, sizeof err), VAULT_EUNUSABLE);
  CHECK(strstr(err, "another resource"));
  CHECK(p.resource[0] == 0);
  const char *none = "{\"resource\":\"https://mcp.example.com/mcp\"}";
  CHECK_INT(vault_prm_parse(none, strlen(none), "https://mcp.example.com/mcp", &p, err, sizeof err), VAULT_EUNUSABLE);
  const char *bad[] = {
      "[1]", "{", "", "{\"resource\":1}", "{\"resource\":\"https://mcp.example.com/mcp\",\"resource\":\"x\"}",
      "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":\"https://as\"}",
      "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"file:///etc\"]}",
      "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://as/?q\"]}",
      "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://a\\u0000b\"]}",
      "{\"resource\":\"https://mcp.example.com/mcp\"} trailing"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_INT(vault_prm_parse(bad[i], strlen(bad[i]), "https://mcp.example.com/mcp", &p, err, sizeof err),
              VAULT_EDISCOVER);
}

/* The authorization server the admin named: used when listed, whatever its
 * place; refused (400) when the upstream does not list it exactly. */
TEST(prm_parse_for_the_admins_authorization_server) {
  vault_prm p;
  char err[300];
  const char *ok = "{\"resource\":\"https://mcp.example.com/mcp\",\"authorization_servers\":[\"https://as.example.com\","
                   "\"https://sso.corp.example/realms/x\"]}";
  CHECK_INT(vault_prm_parse_for(ok, strlen(ok), "https://mcp.example.com/mcp", "https://sso.corp.example/realms/x", &p, err,
                                sizeof err),
            0);
  CHECK_STR(p.authorization_server, "https://sso.corp.example/realms/x");
  CHECK_INT(vault_prm_parse_for(ok, strlen(ok), "https://mcp.example.com/mcp", NULL, &p, err, sizeof err), 0);
  CHECK_STR(p.authorization_server, "https://as.example.com");
  const char *unlisted[] = {"https://sso.corp.example/realms/y", "https://SSO.corp.example/realms/x",
                            "https://sso.corp.example/realms/x/"};
  for (size_t i = 0; i < sizeof unlisted / sizeof *unlisted; i++) {
    CHECK_INT(vault_prm_parse_for(ok, strlen(ok), "https://mcp.example.com/mcp", unlisted[i], &p, err, sizeof err),
              VAULT_EUNUSABLE);
    CHECK(strstr(err, "auth.authorization_server"));
  }
}

/* Whose word a URL is (vault/discover.h): the admin level only on the
 * connector URL's host or the host of the authorization server the admin
 * named, for a discovered connector; always for one whose endpoints the
 * admin wrote. */
TEST(url_vouched_only_on_the_hosts_the_admin_chose) {
  const char *mcp = "https://mcp.corp.example:8443/mcp";
  CHECK(vault_discover_url_vouched(mcp, NULL, "https://mcp.corp.example/oauth/token"));
  CHECK(vault_discover_url_vouched(mcp, NULL, "http://MCP.corp.example:9000/revoke"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, "https://sso.corp.example/token"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, "http://10.0.0.5/token"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, "http://mcp.corp.example.evil.example/token"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, "http://mcp.corp.example@10.0.0.5/token"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, "not a url"));
  CHECK(!vault_discover_url_vouched(mcp, NULL, NULL));
  CHECK(vault_discover_url_vouched(mcp, "https://sso.corp.example/realms/x", "https://sso.corp.example/realms/x/token"));
  CHECK(!vault_discover_url_vouched(mcp, "https://sso.corp.example/realms/x", "https://sso2.corp.example/token"));
  /* "127.1" is 127.0.0.1 to curl, but not as written: another host (fail closed) */
  CHECK(!vault_discover_url_vouched("http://127.0.0.1:5000/mcp", NULL, "http://127.1:5000/token"));
  json_t *manual = json_loads("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\","
                              "\"token_url\":\"http://10.0.0.5/token\"}}",
                              0, NULL);
  CHECK(vault_connector_url_admin_set(manual, "http://10.0.0.5/token"));
  json_t *disc = json_loads("{\"url\":\"https://mcp.example.com/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":true,"
                            "\"token_url\":\"http://10.0.0.5/token\"}}",
                            0, NULL);
  CHECK(!vault_connector_url_admin_set(disc, "http://10.0.0.5/token"));
  CHECK(vault_connector_url_admin_set(disc, "https://mcp.example.com/oauth/revoke"));
  json_object_set_new(json_object_get(disc, "auth"), "authorization_server", json_string("http://10.0.0.5"));
  CHECK(vault_connector_url_admin_set(disc, "http://10.0.0.5/token"));
  CHECK(!vault_connector_url_admin_set(NULL, "http://10.0.0.5/token"));
  CHECK(!vault_connector_url_admin_set(disc, NULL));
  json_decref(manual);
  json_decref(disc);
}

static const char *ASM = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/"
                         "authorize\",\"token_endpoint\":\"https://as.example.com/token\",\"revocation_endpoint\":"
                         "\"https://as.example.com/revoke\",\"registration_endpoint\":\"https://as.example.com/reg\","
                         "\"code_challenge_methods_supported\":[\"plain\",\"S256\"]%s}";

static int asm_with(const char *extra, vault_asm *a, char *err, size_t errlen) {
  char b[2000];
  snprintf(b, sizeof b, ASM, extra);
  return vault_asm_parse(b, strlen(b), "https://as.example.com", a, err, errlen);
}

TEST(asm_parse) {
  vault_asm a;
  char err[300];
  CHECK_INT(asm_with("", &a, err, sizeof err), 0);
  CHECK_STR(a.token_endpoint, "https://as.example.com/token");
  CHECK_STR(a.revocation_endpoint, "https://as.example.com/revoke");
  CHECK_STR(a.registration_endpoint, "https://as.example.com/reg");
  CHECK(!a.cimd);
  CHECK_STR(a.dcr_auth, "client_secret_basic");
  CHECK_INT(asm_with(",\"client_id_metadata_document_supported\":true", &a, err, sizeof err), 0);
  CHECK(a.cimd);
  CHECK_INT(asm_with(",\"token_endpoint_auth_methods_supported\":[\"client_secret_post\",\"none\"]", &a, err, sizeof err), 0);
  CHECK_STR(a.dcr_auth, "client_secret_post");
  CHECK_INT(asm_with(",\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\"]", &a, err, sizeof err),
            VAULT_EUNUSABLE);
  CHECK_INT(asm_with(",\"client_id_metadata_document_supported\":\"yes\"", &a, err, sizeof err), VAULT_EDISCOVER);
  CHECK_INT(asm_with(",\"issuer\":\"x\"", &a, err, sizeof err), VAULT_EDISCOVER); /* duplicate */
  /* no S256: unusable */
  const char *plain = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/a\","
                      "\"token_endpoint\":\"https://as.example.com/t\",\"code_challenge_methods_supported\":[\"plain\"]}";
  CHECK_INT(vault_asm_parse(plain, strlen(plain), "https://as.example.com", &a, err, sizeof err), VAULT_EUNUSABLE);
  CHECK(strstr(err, "S256"));
  const char *absent = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/a\","
                       "\"token_endpoint\":\"https://as.example.com/t\"}";
  CHECK_INT(vault_asm_parse(absent, strlen(absent), "https://as.example.com", &a, err, sizeof err), VAULT_EUNUSABLE);
  /* another issuer (mix-up): malformed, whatever else it says */
  char b[2000];
  snprintf(b, sizeof b, ASM, "");
  CHECK_INT(vault_asm_parse(b, strlen(b), "https://as.example.com/", &a, err, sizeof err), VAULT_EDISCOVER);
  CHECK(strstr(err, "issuer"));
  CHECK(a.token_endpoint[0] == 0);
  const char *noep = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/a\","
                     "\"code_challenge_methods_supported\":[\"S256\"]}";
  CHECK_INT(vault_asm_parse(noep, strlen(noep), "https://as.example.com", &a, err, sizeof err), VAULT_EDISCOVER);
  CHECK(strstr(err, "token_endpoint"));
  /* an https issuer's endpoint in clear (found by review): refused, naming it */
  const char *clear = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/a\","
                      "\"token_endpoint\":\"http://as.example.com/t\",\"code_challenge_methods_supported\":[\"S256\"]}";
  CHECK_INT(vault_asm_parse(clear, strlen(clear), "https://as.example.com", &a, err, sizeof err), VAULT_EDISCOVER);
  CHECK(strstr(err, "\"token_endpoint\" is http://"));
  CHECK(a.token_endpoint[0] == 0);
  const char *rev = "{\"issuer\":\"https://as.example.com\",\"authorization_endpoint\":\"https://as.example.com/a\","
                    "\"token_endpoint\":\"https://as.example.com/t\",\"revocation_endpoint\":\"http://as.example.com/r\","
                    "\"code_challenge_methods_supported\":[\"S256\"]}";
  CHECK_INT(vault_asm_parse(rev, strlen(rev), "https://as.example.com", &a, err, sizeof err), VAULT_EDISCOVER);
  CHECK(strstr(err, "revocation_endpoint"));
  /* an http issuer (a loopback one the operator allowed) keeps its http endpoints */
  const char *loop = "{\"issuer\":\"http://127.0.0.1:9\",\"authorization_endpoint\":\"http://127.0.0.1:9/a\","
                     "\"token_endpoint\":\"http://127.0.0.1:9/t\",\"code_challenge_methods_supported\":[\"S256\"]}";
  CHECK_INT(vault_asm_parse(loop, strlen(loop), "http://127.0.0.1:9", &a, err, sizeof err), 0);
}

TEST(dcr_request_and_reply) {
  char *body = NULL;
  json_t *scopes = json_pack("[s,s]", "openid", "tools.read");
  CHECK_INT(vault_dcr_request("mcpgate for acme", "https://gw/t/acme/connect/crm/callback", scopes,
                              "client_secret_basic", &body), 0);
  json_decref(scopes);
  json_t *j = json_loads(body, 0, NULL);
  free(body);
  CHECK(j);
  CHECK_STR(json_string_value(json_object_get(j, "scope")), "openid tools.read");
  CHECK_STR(json_string_value(json_array_get(json_object_get(j, "redirect_uris"), 0)),
            "https://gw/t/acme/connect/crm/callback");
  CHECK_STR(json_string_value(json_object_get(j, "token_endpoint_auth_method")), "client_secret_basic");
  CHECK_INT(json_array_size(json_object_get(j, "grant_types")), 2);
  json_decref(j);

  char *id, *sec, m[24], err[300];
  int64_t exp;
  const char *r = "{\"client_id\":\"abc\",\"client_secret\":\"s3cret\",\"token_endpoint_auth_method\":\"client_secret_basic\"}";
  CHECK_INT(vault_dcr_reply(r, strlen(r), "client_secret_basic", &id, &sec, m, &exp, err, sizeof err), 0);
  CHECK_STR(id, "abc");
  CHECK_STR(sec, "s3cret");
  CHECK_STR(m, "client_secret_basic");
  CHECK(exp == 0); /* no client_secret_expires_at: never */
  free(id);
  vault_wipe(sec);
  /* a secret that lapses (RFC 7591 §3.2.1) */
  r = "{\"client_id\":\"abc\",\"client_secret\":\"s3cret\",\"client_secret_expires_at\":1893456000}";
  CHECK_INT(vault_dcr_reply(r, strlen(r), "client_secret_basic", &id, &sec, m, &exp, err, sizeof err), 0);
  CHECK(exp == 1893456000);
  free(id);
  vault_wipe(sec);
  /* the AS settled on none: no secret needed */
  r = "{\"client_id\":\"abc\",\"token_endpoint_auth_method\":\"none\"}";
  CHECK_INT(vault_dcr_reply(r, strlen(r), "client_secret_basic", &id, &sec, m, &exp, err, sizeof err), 0);
  CHECK(sec == NULL);
  CHECK_STR(m, "none");
  free(id);
  /* garbage, no secret, a huge secret, a secret with a newline: refused
   * without quoting it */
  char huge[3000];
  snprintf(huge, sizeof huge, "{\"client_id\":\"abc\",\"client_secret\":\"%01100d\"}", 7);
  const char *bad[] = {"nope", "{\"client_secret\":\"x\"}", "{\"client_id\":\"abc\"}", huge,
                       "{\"client_id\":\"abc\",\"client_secret\":\"a\\nb\"}",
                       "{\"client_id\":\"abc\",\"client_secret\":\"x\",\"token_endpoint_auth_method\":\"tls_client_auth\"}",
                       "{\"client_id\":\"abc\",\"client_id\":\"d\",\"client_secret\":\"x\"}",
                       "{\"client_id\":\"abc\",\"client_secret\":\"x\",\"client_secret_expires_at\":\"soon\"}",
                       "{\"client_id\":\"abc\",\"client_secret\":\"x\",\"client_secret_expires_at\":-5}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_INT(vault_dcr_reply(bad[i], strlen(bad[i]), "client_secret_basic", &id, &sec, m, &exp, err, sizeof err),
              VAULT_EDISCOVER);
    CHECK(id == NULL && sec == NULL);
    CHECK(!strstr(err, "0000007"));
  }
}

TEST(cimd_document_and_wanted) {
  json_t *d = vault_cimd_document("https://gw/t/acme/oauth/upstream-client/crm.json", "acme",
                                  "https://gw/t/acme/connect/crm/callback");
  CHECK_STR(json_string_value(json_object_get(d, "client_name")), "mcpgate for acme");
  CHECK_STR(json_string_value(json_object_get(d, "token_endpoint_auth_method")), "none");
  CHECK_STR(json_string_value(json_object_get(d, "client_id")), "https://gw/t/acme/oauth/upstream-client/crm.json");
  json_decref(d);
  char err[400];
  json_t *b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":true,\"scopes\":[\"a\"]}}", 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), 1);
  json_decref(b);
  b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":true,\"client_id\":\"a\"}}", 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), VAULT_EINVALID);
  CHECK(strstr(err, "auth.client_id"));
  json_decref(b);
  b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"header\",\"discover\":true}}", 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), VAULT_EINVALID);
  json_decref(b);
  b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":false}}", 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), VAULT_EINVALID);
  json_decref(b);
  b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\"}}", 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), 0);
  json_decref(b);
  b = json_loads("{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":true,"
                 "\"authorization_server\":\"https://sso.corp/realms/x\"}}",
                 0, NULL);
  CHECK_INT(vault_discover_wanted(b, err, sizeof err), 1);
  json_decref(b);
  const char *bad_as[] = {"1", "\"ftp://sso\"", "\"https://sso/?q=1\"", "\"https://sso/#f\"", "\"\""};
  for (size_t i = 0; i < sizeof bad_as / sizeof *bad_as; i++) {
    char t[200];
    snprintf(t, sizeof t, "{\"url\":\"https://x/mcp\",\"auth\":{\"type\":\"oauth\",\"discover\":true,"
             "\"authorization_server\":%s}}", bad_as[i]);
    b = json_loads(t, 0, NULL);
    CHECK_INT(vault_discover_wanted(b, err, sizeof err), VAULT_EINVALID);
    CHECK(strstr(err, "auth.authorization_server"));
    json_decref(b);
  }
}

TEST(resource_in_connect_requests) {
  json_t *auth = json_pack("{s:s, s:s, s:s, s:s, s:s}", "authorize_url", "https://as/authorize", "token_url",
                           "https://as/token", "client_id", "cid", "token_auth", "none", "resource",
                           "https://mcp.example.com/mcp");
  vault_connect c;
  CHECK_INT(vault_connect_new(&c, "u1", "crm", 1000), 0);
  char *url = NULL, *body = NULL, *authz = NULL;
  CHECK_INT(vault_connect_authorize_url(auth, "https://gw/cb", &c, &url), 0);
  CHECK(strstr(url, "&resource=https%3A%2F%2Fmcp.example.com%2Fmcp&"));
  free(url);
  CHECK_INT(vault_connect_token_request(auth, NULL, "code1", "https://gw/cb", c.verifier, &body, &authz), 0);
  CHECK(strstr(body, "resource=https%3A%2F%2Fmcp.example.com%2Fmcp"));
  CHECK(authz == NULL);
  vault_wipe(body);
  CHECK_INT(vault_refresh_request(auth, NULL, "r1", &body, &authz), 0);
  CHECK(strstr(body, "resource=https%3A%2F%2Fmcp.example.com%2Fmcp"));
  vault_wipe(body);
  /* without auth.resource: no parameter (Vault 1/2's connectors unchanged) */
  json_object_del(auth, "resource");
  CHECK_INT(vault_refresh_request(auth, NULL, "r1", &body, &authz), 0);
  CHECK(!strstr(body, "resource="));
  vault_wipe(body);
  json_decref(auth);
}

int main(void) {
  RUN(www_authenticate_resource_metadata);
  RUN(well_known_urls);
  RUN(same_resource_and_host);
  RUN(prm_parse);
  RUN(prm_parse_for_the_admins_authorization_server);
  RUN(url_vouched_only_on_the_hosts_the_admin_chose);
  RUN(asm_parse);
  RUN(dcr_request_and_reply);
  RUN(cimd_document_and_wanted);
  RUN(resource_in_connect_requests);
  return UNIT_DONE();
}
