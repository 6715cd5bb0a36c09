// An admin write whose token is revoked while it waits (found by review):
// a request is authenticated when its headers arrive, and a connector
// PUT with discovery waits on the upstream's documents for up to a minute
// and more. Its write checked the tenant, not the token: a departing tenant
// admin could stall discovery at an upstream they control, be revoked, and
// still store a connector of theirs afterwards. Every admin write now
// checks its caller again inside its transaction (admin__actor_still).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway } from './lib/gateway.mjs';
import { operatorToken, api, createTenant } from './lib/admin.mjs';

/** An upstream that asks for OAuth and holds its authorization server's metadata until released. */
async function stallingUpstream() {
  let port, release;
  const released = new Promise((r) => { release = r; });
  let reached;
  const atMetadata = new Promise((r) => { reached = r; });
  const srv = http.createServer((req, res) => {
    const j = (o, st = 200, h = {}) => { res.writeHead(st, { 'content-type': 'application/json', ...h }); res.end(JSON.stringify(o)); };
    const base = `http://127.0.0.1:${port}`;
    req.resume();
    if (req.method === 'POST' && req.url === '/mcp')
      return j({ error: 'unauthorized' }, 401, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"` });
    if (req.url === '/.well-known/oauth-protected-resource/mcp') return j({ resource: `${base}/mcp`, authorization_servers: [base] });
    if (req.url.startsWith('/.well-known/oauth-authorization-server') || req.url.startsWith('/.well-known/openid-configuration')) {
      reached();
      return released.then(() => j({
        issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`,
        registration_endpoint: `${base}/register`, revocation_endpoint: `${base}/revoke`, response_types_supported: ['code'],
        grant_types_supported: ['authorization_code', 'refresh_token'], code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
      }));
    }
    if (req.method === 'POST' && req.url === '/register')
      return j({ client_id: 'cid-1', client_secret: 'sec-1', client_secret_expires_at: 0, redirect_uris: [] }, 201);
    return j({ error: 'nope' }, 404);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  port = srv.address().port;
  return { url: `http://127.0.0.1:${port}/mcp`, atMetadata, release, close: () => srv.close() };
}

test('a discovering connector PUT whose admin token is revoked meanwhile: 401, nothing written', async () => {
  const up = await stallingUpstream();
  const gw = await startGateway({ args: ['--public-url', 'https://gw.example.test:8443'] });
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    const m = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'leaver' });
    assert.equal(m.status, 201, m.body);
    const put = api(gw.port, m.json.token, 'PUT', '/admin/v1/tenants/acme/connectors/evil',
      { url: up.url, description: 'x', auth: { type: 'oauth', discover: true } });
    await up.atMetadata; // discovery under way: the request was authenticated long ago
    const del = await api(gw.port, op, 'DELETE', `/admin/v1/tenants/acme/admin-tokens/${m.json.id}`);
    assert.equal(del.status, 204, del.body);
    up.release();
    const r = await put;
    assert.equal(r.status, 401, `the write of a request whose admin token was revoked while it waited: ${r.status} ${r.body}`);
    assert.match(r.json?.message ?? '', /revoked.*while the request waited.*nothing was written/, r.body);
    const g = await api(gw.port, op, 'GET', '/admin/v1/tenants/acme/connectors/evil');
    assert.equal(g.status, 404, `no connector stored: ${g.status} ${g.body}`);
  } finally {
    up.release();
    await gw.stop();
    up.close();
  }
});

test('the operator\'s writes, and a tenant admin whose token stays, go on as before', async () => {
  const up = await stallingUpstream();
  up.release();
  const gw = await startGateway({ args: ['--public-url', 'https://gw.example.test:8443'] });
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    const m = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'stays' });
    assert.equal(m.status, 201, m.body);
    const put = await api(gw.port, m.json.token, 'PUT', '/admin/v1/tenants/acme/connectors/crm',
      { url: up.url, description: 'x', auth: { type: 'oauth', discover: true } });
    assert.equal(put.status, 201, put.body);
    const pol = await api(gw.port, m.json.token, 'PUT', '/admin/v1/tenants/acme/policy', { version: 1, default: 'block', rules: [] });
    assert.equal(pol.status, 200, pol.body);
    const opw = await api(gw.port, op, 'DELETE', '/admin/v1/tenants/acme/connectors/crm');
    assert.equal(opw.status, 204, opw.body);
    const sc = await api(gw.port, m.json.token, 'POST', '/admin/v1/tenants/acme/scim-tokens', { name: 'okta' });
    assert.equal(sc.status, 201, sc.body);
  } finally {
    await gw.stop();
    up.close();
  }
});
