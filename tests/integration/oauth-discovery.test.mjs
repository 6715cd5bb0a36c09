// The gateway as OAuth authorization server (issue 17), discovery and
// registration: the MCP endpoints' 401 points at the protected resource
// metadata of that very resource (RFC 9728 §5.1), the PRM documents name the
// tenant's authorization server, whose metadata (RFC 8414) lists its
// endpoints; no OpenID configuration; a public_url with a path is refused at
// start; dynamic client registration (RFC 7591) with every refusal, the rate
// limit and the per-tenant cap.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, runGateway, makeTempDir, request, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';

const PUB = 'https://gw.example.test:8443';
let gw, op;

before(async () => {
  gw = await startGateway({ args: ['--public-url', PUB] });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme', 'Acme Corp');
  const c = await op.call('PUT', '/admin/v1/tenants/acme/connectors/github', { url: 'http://127.0.0.1:9/mcp', auth: { type: 'none' } });
  assert.equal(c.status, 201, c.body);
});

const get = (p, headers = {}) => request(gw.port, { path: p, headers });
const mcpHeaders = (token) => ({
  accept: 'application/json, text/event-stream', 'content-type': 'application/json',
  ...(token ? { authorization: `Bearer ${token}` } : {}),
});
const INIT = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });

function register(body, { raw, headers = {}, g = gw, tenant = 'acme' } = {}) {
  const b = raw ?? JSON.stringify(body);
  return request(g.port, {
    method: 'POST', path: `/t/${tenant}/oauth/register`, body: b,
    headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(b)), ...headers },
  });
}

function assertOAuthError(r, status, code, what) {
  assert.equal(r.status, status, `${what}: status (${r.body})`);
  assert.match(String(r.headers['content-type']), /^application\/json/, `${what}: JSON`);
  assert.equal(r.json?.error, code, `${what}: error code (${r.body})`);
  assert.equal(typeof r.json?.error_description, 'string', `${what}: error_description`);
  return r.json;
}

test('401 on both MCP endpoints names the resource\'s metadata; error="invalid_token" only when a token was presented', async () => {
  for (const [p, res] of [['/t/acme/mcp', 't/acme/mcp'], ['/t/acme/mcp/github', 't/acme/mcp/github']]) {
    const want = `resource_metadata="${PUB}/.well-known/oauth-protected-resource/${res}"`;
    for (const method of ['POST', 'GET']) {
      const r = await request(gw.port, { method, path: p, headers: mcpHeaders(), body: method === 'POST' ? INIT : undefined });
      assert.equal(r.status, 401, `${method} ${p} without a token: ${r.body}`);
      const h = String(r.headers['www-authenticate']);
      assert.equal(h, `Bearer ${want}`, `${method} ${p}: no error code without a token (RFC 6750 §3.1)`);
      assert.equal(r.json?.error, 'invalid_token', 'the JSON body is kept');
    }
    const r = await request(gw.port, { method: 'POST', path: p, headers: mcpHeaders('mgw_notatoken'), body: INIT });
    assert.equal(r.status, 401, r.body);
    const h = String(r.headers['www-authenticate']);
    assert.ok(h.startsWith(`Bearer ${want}, error="invalid_token"`), `${p} with a bad token: ${h}`);
    assert.match(h, /error_description="[^"]+"/);
  }
  // the PRM the header names is served, and describes that resource
  const r = await get('/.well-known/oauth-protected-resource/t/acme/mcp/github');
  assert.equal(r.json?.resource, `${PUB}/t/acme/mcp/github`);
});

test('protected resource metadata (RFC 9728) for the aggregated and a connector resource; 404s; CORS', async () => {
  const a = await get('/.well-known/oauth-protected-resource/t/acme/mcp');
  assert.equal(a.status, 200, a.body);
  assert.match(String(a.headers['content-type']), /^application\/json/);
  assert.equal(a.headers['access-control-allow-origin'], '*');
  assert.deepEqual(a.json, {
    resource: `${PUB}/t/acme/mcp`, authorization_servers: [`${PUB}/t/acme`],
    bearer_methods_supported: ['header'], resource_name: 'Acme Corp via mcpgate',
  });
  const c = await get('/.well-known/oauth-protected-resource/t/acme/mcp/github');
  assert.equal(c.status, 200, c.body);
  assert.equal(c.json.resource, `${PUB}/t/acme/mcp/github`);
  assert.deepEqual(c.json.authorization_servers, [`${PUB}/t/acme`], 'one authorization server per tenant');
  for (const p of ['/t/nosuch/mcp', '/t/acme/mcp/nosuch', '/t/acme/mcp/Bad_Name', '/t/BAD/mcp', '/t/acme/scim']) {
    const r = await get(`/.well-known/oauth-protected-resource${p}`);
    assert.equal(r.status, 404, `${p}: ${r.body}`);
    assert.match(String(r.headers['content-type']), /^application\/json/, `${p}: a JSON 404`);
    assert.equal(r.headers['access-control-allow-origin'], '*', `${p}: a browser can read the 404`);
  }
  // a browser client's preflight (the SDK sends MCP-Protocol-Version)
  const pf = await request(gw.port, {
    method: 'OPTIONS', path: '/.well-known/oauth-protected-resource/t/acme/mcp',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'mcp-protocol-version' },
  });
  assert.equal(pf.status, 204, pf.body);
  // a 204 carries no Content-Length (RFC 9110 §8.6; found by review)
  assert.equal(pf.headers['content-length'], undefined);
  assert.equal(pf.headers['access-control-allow-origin'], '*');
  assert.match(String(pf.headers['access-control-allow-headers']), /MCP-Protocol-Version/i);
  const post = await request(gw.port, { method: 'POST', path: '/.well-known/oauth-protected-resource/t/acme/mcp', body: '' });
  assert.equal(post.status, 405);
  assert.match(String(post.headers.allow), /GET/);
});

test('authorization server metadata (RFC 8414); no OpenID configuration; 404 for an unknown tenant', async () => {
  const r = await get('/.well-known/oauth-authorization-server/t/acme');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.headers['access-control-allow-origin'], '*');
  const iss = `${PUB}/t/acme`;
  assert.deepEqual(r.json, {
    issuer: iss,
    authorization_endpoint: `${iss}/oauth/authorize`,
    token_endpoint: `${iss}/oauth/token`,
    registration_endpoint: `${iss}/oauth/register`,
    revocation_endpoint: `${iss}/oauth/revoke`,
    global_token_revocation_endpoint: `${iss}/oauth/global-logout`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
    revocation_endpoint_auth_methods_supported: ['none'],
    client_id_metadata_document_supported: true,
    authorization_response_iss_parameter_supported: true,
  });
  const head = await request(gw.port, { method: 'HEAD', path: '/.well-known/oauth-authorization-server/t/acme' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '', 'HEAD: no body');
  for (const p of ['/.well-known/oauth-authorization-server/t/nosuch', '/.well-known/oauth-authorization-server/t/acme/mcp',
    '/.well-known/oauth-authorization-server']) {
    const x = await get(p);
    assert.equal(x.status, 404, `${p}: ${x.body}`);
  }
  // the places an MCP client tries for OpenID Connect discovery: none exists
  for (const p of ['/.well-known/openid-configuration/t/acme', '/t/acme/.well-known/openid-configuration',
    '/.well-known/openid-configuration']) {
    const x = await get(p);
    assert.equal(x.status, 404, `${p}: ${x.body}`);
  }
});

test('a public_url with a path (or query) is refused at start, naming public_url', async () => {
  const dir = await makeTempDir();
  for (const url of ['https://gw.example.com/mcpgate', 'https://gw.example.com/?x=1', 'http://gw.example.com:8080/a/b']) {
    for (const how of ['flag', 'env']) {
      const args = ['serve', '--listen', '127.0.0.1:0', '--data', dir, ...(how === 'flag' ? ['--public-url', url] : [])];
      const r = await runGateway(args, { env: how === 'env' ? { MCPGATE_PUBLIC_URL: url } : {}, timeoutMs: 5000 });
      assert.equal(r.timedOut, false, `${url} (${how}): refused rather than started`);
      assert.notEqual(r.code, 0, `${url} (${how}): non-zero exit`);
      assert.match(r.stderr, /public_url/, `${url} (${how}): names public_url: ${r.stderr}`);
      assert.match(r.stderr, /path/, `${url} (${how}): says why: ${r.stderr}`);
    }
  }
});

test('registration (RFC 7591): 201 with the client; the record shows in the admin list', async () => {
  const body = { client_name: 'Some MCP client', redirect_uris: ['http://localhost:33418/callback', 'https://app.example/cb'],
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
    client_uri: 'https://app.example', scope: 'ignored', software_id: 'ignored-too' };
  const t0 = Math.floor(Date.now() / 1000);
  const r = await register(body);
  assert.equal(r.status, 201, r.body);
  assert.equal(r.headers['cache-control'], 'no-store');
  const c = r.json;
  assert.match(c.client_id, /^mcpc_[A-Za-z0-9_-]{43}$/);
  assert.ok(Math.abs(c.client_id_issued_at - t0) <= 5, `client_id_issued_at: ${c.client_id_issued_at}`);
  assert.equal(c.client_name, 'Some MCP client');
  assert.deepEqual(c.redirect_uris, body.redirect_uris);
  assert.equal(c.token_endpoint_auth_method, 'none');
  assert.deepEqual(c.grant_types, ['authorization_code', 'refresh_token']);
  assert.deepEqual(c.response_types, ['code']);
  assert.equal(c.client_secret, undefined, 'a public client: no secret');
  assert.equal(c.software_id, undefined, 'unknown members are not echoed or kept');
  const r2 = await register({ redirect_uris: ['http://127.0.0.1/cb'] });
  assert.equal(r2.status, 201, r2.body);
  assert.notEqual(r2.json.client_id, c.client_id);
  assert.equal(r2.json.client_name, undefined);

  const l = await op.get('/admin/v1/tenants/acme/oauth-clients?kind=dcr');
  assert.equal(l.status, 200, l.body);
  const mine = l.json.clients.find((x) => x.client_id === c.client_id);
  assert.ok(mine, `the registration is listed: ${l.body}`);
  assert.equal(mine.kind, 'dcr');
  assert.equal(mine.client_name, 'Some MCP client');
  assert.deepEqual(mine.redirect_uris, body.redirect_uris);
  assert.match(mine.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.match(mine.last_used, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(mine.scope, undefined);
  // one record, by its id; the resolve diagnostic sees it as registered
  const one = await op.get(`/admin/v1/tenants/acme/oauth-clients/${encodeURIComponent(c.client_id)}`);
  assert.equal(one.status, 200, one.body);
  const res = await op.get(`/admin/v1/tenants/acme/oauth-clients/resolve?client_id=${encodeURIComponent(c.client_id)}`);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.source, 'registered');
  // an admin deletes it: unknown from then on
  const d = await op.del(`/admin/v1/tenants/acme/oauth-clients/${encodeURIComponent(r2.json.client_id)}`);
  assert.equal(d.status, 204, d.body);
  const gone = await op.get(`/admin/v1/tenants/acme/oauth-clients/resolve?client_id=${r2.json.client_id}`);
  assert.equal(gone.status, 400, gone.body);
  assert.equal(gone.json.error, 'invalid_client');
  assert.match(gone.json.message, /unknown client/);
  assert.equal((await op.del(`/admin/v1/tenants/acme/oauth-clients/${r2.json.client_id}`)).status, 404);
});

test('registration refusals: RFC 7591 §3.2.2 codes, naming the member, never registering', async () => {
  const before = (await op.get('/admin/v1/tenants/acme/oauth-clients?kind=dcr')).json.clients.length;
  const ok = { redirect_uris: ['http://localhost/cb'] };
  const cases = [
    ['not JSON', { raw: '{"redirect_uris": [' }, 'invalid_client_metadata', /not valid JSON/],
    ['a duplicate key', { raw: '{"redirect_uris":["http://localhost/cb"],"redirect_uris":["https://evil.example/cb"]}' }, 'invalid_client_metadata', /repeats a member|not valid JSON/],
    ['not an object', { raw: '["http://localhost/cb"]' }, 'invalid_client_metadata', /object/],
    ['a NUL byte', { raw: '{"redirect_uris":["http://localhost/cb"]}\u0000' }, 'invalid_client_metadata', /JSON/],
    ['no redirect_uris', { body: { client_name: 'x' } }, 'invalid_redirect_uri', /redirect_uris/],
    ['a plain http redirect URI', { body: { redirect_uris: ['http://evil.example/cb'] } }, 'invalid_redirect_uri', /redirect_uris/],
    ['a redirect URI with a fragment', { body: { redirect_uris: ['https://app.example/cb#x'] } }, 'invalid_redirect_uri', /fragment/],
    ['a custom scheme', { body: { redirect_uris: ['myapp://cb'] } }, 'invalid_redirect_uri', /redirect_uris/],
    ['a client_id', { body: { ...ok, client_id: 'mine' } }, 'invalid_client_metadata', /client_id/],
    ['client_secret_basic', { body: { ...ok, token_endpoint_auth_method: 'client_secret_basic' } }, 'invalid_client_metadata', /token_endpoint_auth_method/],
    ['a grant type', { body: { ...ok, grant_types: ['client_credentials'] } }, 'invalid_client_metadata', /grant_types/],
    ['a response type', { body: { ...ok, response_types: ['token'] } }, 'invalid_client_metadata', /response_types/],
    ['a control character in the name', { body: { ...ok, client_name: 'a\nb' } }, 'invalid_client_metadata', /client_name/],
    // C1 controls are control characters too (U+009B is CSI: a terminal
    // showing an admin's client list may take it for ESC [)
    ['a C1 control (CSI) in the name', { body: { ...ok, client_name: 'a\u009b31mb' } }, 'invalid_client_metadata', /client_name/],
    ['a C1 control (NEL) in the name', { body: { ...ok, client_name: 'a\u0085b' } }, 'invalid_client_metadata', /client_name/],
    ['an http logo_uri', { body: { ...ok, logo_uri: 'http://app.example/logo.png' } }, 'invalid_client_metadata', /logo_uri/],
    ['a form body', { raw: 'redirect_uris=http://localhost/cb', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 'invalid_client_metadata', /application\/json/],
  ];
  for (const [what, { body, raw, headers }, code, msg] of cases) {
    const r = await register(body, { raw, headers });
    const j = assertOAuthError(r, 400, code, what);
    assert.match(j.error_description, msg, `${what}: ${j.error_description}`);
    assert.ok(!j.error_description.includes('evil.example'), `${what}: the body is not quoted`);
  }
  const big = JSON.stringify({ redirect_uris: ['http://localhost/cb'], client_name: 'x', pad: 'p'.repeat(17 * 1024) });
  const r413 = await register(null, { raw: big });
  assertOAuthError(r413, 413, 'invalid_client_metadata', 'over 16 KiB');
  const g = await request(gw.port, { path: '/t/acme/oauth/register' });
  assert.equal(g.status, 405);
  assert.equal(g.headers.allow, 'POST');
  assertOAuthError(await register(ok, { tenant: 'nosuch' }), 404, 'not_found', 'unknown tenant');
  const after = (await op.get('/admin/v1/tenants/acme/oauth-clients?kind=dcr')).json.clients.length;
  assert.equal(after, before, 'nothing was registered');
});

test('registration is rate-limited (429 with Retry-After) and capped per tenant (dcr_clients_max)', async () => {
  const g = await startGateway({ args: ['--auth-rate-per-address', '6', '--dcr-clients-max', '2'] });
  const o = adminClient(g.port, operatorToken(g.dataDir));
  await createTenant(g.port, o.token, 'small');
  await createTenant(g.port, o.token, 'other');
  const body = { redirect_uris: ['http://localhost/cb'] };
  const s = [];
  for (let i = 0; i < 4; i++) s.push(await register(body, { g, tenant: 'small' }));
  assert.deepEqual(s.map((r) => r.status), [201, 201, 400, 400], s.map((r) => r.body).join('\n'));
  assert.match(s[2].json.error_description, /too many registered clients/);
  assert.equal(s[2].json.error, 'invalid_client_metadata');
  // the cap is per tenant
  assert.equal((await register(body, { g, tenant: 'other' })).status, 201);
  // an admin deleting one makes room
  await o.del(`/admin/v1/tenants/small/oauth-clients/${s[0].json.client_id}`);
  assert.equal((await register(body, { g, tenant: 'small' })).status, 201);
  // 6 a minute from one address: the 7th request is refused
  const r = await register(body, { g, tenant: 'other' });
  assertOAuthError(r, 429, 'rate_limited', 'over the rate');
  assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/);
  const m = await scrapeMetrics(g);
  assert.equal(metricValue(m, 'mcpgate_oauth_registrations_total', { result: 'created' }), 4);
  assert.equal(metricValue(m, 'mcpgate_oauth_registrations_total', { result: 'full' }), 2);
  assert.equal(metricValue(m, 'mcpgate_auth_rate_limited_total'), 1);
  await g.stop();
});
