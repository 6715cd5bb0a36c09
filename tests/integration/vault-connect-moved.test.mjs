// ci-variants: build-w1
// A PUT that moves an oauth connector to another URL cuts the employees'
// grants: "a grant is never presented to another upstream" (README). A
// connect under way when the connector moves must not store a grant either:
// its tokens were asked for the old upstream (for a discovered connector,
// bound to it by RFC 8707 `resource`), and the next call would present them
// to the new URL. The code exchange can take seconds; the writing
// transaction checks the connector is unchanged — its URL included.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { ALLOW_ALL_POLICY } from './lib/mcp.mjs';

let fx, as, asUrl, release, tokenCalls = 0;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
  });
  // a token endpoint that answers when the test says so
  as = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      if (req.url === '/token') {
        tokenCalls++;
        await new Promise((r) => { release = r; });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'at-for-the-old-url', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt-for-the-old-url' }));
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise((r) => as.listen(0, '127.0.0.1', r));
  asUrl = `http://127.0.0.1:${as.address().port}`;
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/policy', ALLOW_ALL_POLICY);
  assert.equal(r.status, 200, r.body);
  r = await admin('PUT', '/connectors/crm', {
    url: `${asUrl}/old-mcp`,
    auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, client_id: 'gw', client_secret: 's3cret' },
  });
  assert.equal(r.status, 201, r.body);
});

after(async () => {
  release?.();
  await new Promise((r) => as?.close(r));
  if (fx) await fx.stop();
});

test('a connect under way when the connector moves to another URL stores no grant', async () => {
  const { admin } = fx.t.acme;
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  const start = await b.get(`${fx.base('acme')}/connect/crm`, { follow: false });
  assert.equal(start.status, 302, start.text);
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  assert.ok(state);
  const cb = b.get(`${fx.base('acme')}/connect/crm/callback?code=the-code&state=${encodeURIComponent(state)}`, { follow: false });
  await waitFor(() => tokenCalls === 1, { timeoutMs: 5000, intervalMs: 20, what: 'the code exchange' });
  // meanwhile the admin moves the connector (same authorization server and client)
  const r = await admin('PUT', '/connectors/crm', {
    url: `${asUrl}/new-mcp`,
    auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, client_id: 'gw', client_secret: 's3cret' },
  });
  assert.equal(r.status, 200, r.body);
  release();
  const res = await cb;
  assert.notEqual(res.status, 200, `the connect finished after the move: ${res.text?.slice(0, 200)}`);
  const c = await admin('GET', '/users/alice%40acme.com/connections');
  assert.equal(c.status, 200, c.body);
  assert.deepEqual(c.json.connections, [], 'no grant asked for the old URL is kept for the new one');
});
