// A tenant deleted and created again with the same id is a new tenant (a
// new incarnation uid): nothing the old one began may land in it. A
// connector PUT with auth {"type":"oauth","discover":true} is the admin
// write that runs longest before it is written — the probe, the metadata
// and the client registration are fetched first, each step up to its
// timeouts, at servers the tenant admin chose — so a request of the old
// incarnation's tenant admin could outlive the delete, the purge and the
// re-create, and then wrote its connector (its URL, its authorization
// server) into the new tenant, where the new tenant's employees would be
// sent to sign in; and its audit record, chained when it ended, went into
// the new tenant's chain. Real parts: the gateway binary; the hostile upstream and
// its authorization server are a node http server on loopback (the old
// tenant admin's own), holding the registration until the test lets it go.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { api, adminClient, createTenant, operatorToken, recreateAfterPurge } from './lib/admin.mjs';

const T = '/admin/v1/tenants';
let gw, op, evil, base;
let held = null; // the registration request held: {release()}

before(async () => {
  gw = await startGateway({ args: ['--public-url', 'https://gw.example.test'] });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  evil = http.createServer(async (req, res) => {
    for await (const _ of req); // eslint-disable-line no-unused-vars
    const json = (doc, status = 200) => {
      const b = JSON.stringify(doc);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    };
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/mcp') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="x", resource_metadata="${base}/prm"`, 'content-type': 'application/json' });
      return res.end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authorization required"}}');
    }
    if (u.pathname === '/prm') return json({ resource: `${base}/mcp`, authorization_servers: [`${base}/as`] });
    if (u.pathname === '/.well-known/oauth-authorization-server/as') {
      return json({
        issuer: `${base}/as`, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`,
        registration_endpoint: `${base}/reg`, code_challenge_methods_supported: ['S256'],
      });
    }
    if (u.pathname === '/reg') {
      // held until the test releases it (well within the fetch's timeouts)
      held = { release: () => json({ client_id: 'client-old', client_secret: 'secret-old' }, 201) };
      return undefined;
    }
    res.writeHead(404);
    return res.end();
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${evil.address().port}`;
});

after(async () => {
  evil?.closeAllConnections?.();
  await new Promise((r) => (evil ? evil.close(() => r()) : r()));
  await gw?.stop().catch(() => {});
});

test('a discovering connector PUT of the deleted tenant does not land in the tenant made again with its id', async () => {
  await createTenant(gw.port, op.token, 'acme');
  const m = await op.post(`${T}/acme/admin-tokens`, { name: 'old admin' });
  assert.equal(m.status, 201, m.body);
  const oldAdmin = m.json.token;

  // the old tenant admin starts a discovering PUT; the registration is held
  const put = api(gw.port, oldAdmin, 'PUT', `${T}/acme/connectors/crm`, { url: `${base}/mcp`, auth: { type: 'oauth', discover: true } });
  await waitFor(() => held !== null, { timeoutMs: 8000, what: 'the registration request reaches the upstream' });

  // the operator deletes the tenant and creates it again (a new customer)
  const del = await op.del(`${T}/acme`);
  assert.equal(del.status, 202, del.body);
  await recreateAfterPurge(gw.port, op.token, 'acme');
  // the old tenant's admin token is no token of the new one
  assert.equal((await api(gw.port, oldAdmin, 'GET', `${T}/acme/connectors`)).status, 401);

  held.release();
  const r = await put;
  assert.ok(r.status >= 400, `the old incarnation's PUT is not written: ${r.status} ${r.body}`);
  const l = await op.get(`${T}/acme/connectors`);
  assert.equal(l.status, 200, l.body);
  assert.deepEqual(l.json.connectors, [], 'the new tenant has no connector it did not make');
  assert.equal((await op.get(`${T}/acme/connectors/crm`)).status, 404);
  assert.ok(!JSON.stringify(l.json).includes('secret-old'));

  // its audit record is the old tenant's: the new tenant's chain has its
  // own records only (its creation, and this read's own write below)
  const mark = await op.post(`${T}/acme/scim-tokens`, { name: 'after' });
  assert.equal(mark.status, 201, mark.body);
  let au;
  await waitFor(async () => {
    au = await op.get(`${T}/acme/audit?kind=admin&limit=100`);
    assert.equal(au.status, 200, au.body);
    return au.json.records.some((x) => x.path === `${T}/acme/scim-tokens`);
  }, { what: 'the new tenant\'s own write in its audit log' });
  const foreign = au.json.records.filter((x) => x.actor === `admin-token:${m.json.id}` || x.path.endsWith('/connectors/crm'));
  assert.deepEqual(foreign, [], 'no record of the old tenant\'s admin in the new tenant\'s chain');
});
