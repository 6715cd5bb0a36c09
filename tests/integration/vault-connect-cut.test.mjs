// ci-variants: build-w1
// A connect that was under way when the person was cut must not leave an
// upstream grant behind. The callback checks the browser session before it
// calls the upstream's token endpoint; the code exchange can take seconds.
// If the person is cut meanwhile (the admin's revoke then restore, a
// deactivation then reactivation, Okta's Universal Logout — which leaves
// them active), the session that started the connect is gone: the tokens
// that come back afterwards belong to a connect nobody may finish, and must
// not be stored (a restore or reactivation never revives anything from
// before the cut; a Universal Logout revokes every upstream grant).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { ALLOW_ALL_POLICY } from './lib/mcp.mjs';

let fx, as, release, tokenCalls = 0;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
  });
  // a token endpoint that answers when the test says so
  as = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      if (req.url === '/token') {
        tokenCalls++;
        await new Promise((r) => { release = r; });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'at-before-the-cut', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt-before-the-cut' }));
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise((r) => as.listen(0, '127.0.0.1', r));
  const asUrl = `http://127.0.0.1:${as.address().port}`;
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/policy', ALLOW_ALL_POLICY);
  assert.equal(r.status, 200, r.body);
  r = await admin('PUT', '/connectors/crm', {
    url: `${asUrl}/mcp`,
    auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, client_id: 'gw', client_secret: 's3cret' },
  });
  assert.equal(r.status, 201, r.body);
});

after(async () => {
  release?.();
  await new Promise((r) => as?.close(r));
  if (fx) await fx.stop();
});

test('a connect whose session was cut while the token endpoint answered stores no grant', async () => {
  const { admin } = fx.t.acme;
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  const start = await b.get(`${fx.base('acme')}/connect/crm`, { follow: false });
  assert.equal(start.status, 302, start.text);
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  assert.ok(state);
  // the service sends the browser back; the gateway exchanges the code
  const cb = b.get(`${fx.base('acme')}/connect/crm/callback?code=the-code&state=${encodeURIComponent(state)}`, { follow: false });
  await waitFor(() => tokenCalls === 1, { timeoutMs: 5000, intervalMs: 20, what: 'the code exchange' });
  // meanwhile IT cuts alice (the incident button), then restores her
  let r = await admin('POST', '/users/alice%40acme.com/revoke', { reason: 'incident' });
  assert.equal(r.status, 200, r.body);
  r = await admin('POST', '/users/alice%40acme.com/restore');
  assert.equal(r.status, 200, r.body);
  release();
  const res = await cb;
  assert.notEqual(res.status, 200, `the connect finished after the cut: ${res.text?.slice(0, 200)}`);
  const c = await admin('GET', '/users/alice%40acme.com/connections');
  assert.equal(c.status, 200, c.body);
  assert.deepEqual(c.json.connections, [], 'no upstream grant from before the cut');
});
