// ci-variants: build-w1
// A connect under way must not leave an upstream grant behind when what
// it was begun for changed during the code exchange (which can take
// seconds). Its writing transaction checks both:
//  - the person: the callback checks the browser session before it calls
//    the token endpoint; a cut meanwhile (the admin's revoke then restore,
//    a deactivation then reactivation, Okta's Universal Logout — which
//    leaves them active) deleted the session, so the tokens that come back
//    belong to a connect nobody may finish (a restore or reactivation never
//    revives anything from before the cut; a Universal Logout revokes every
//    upstream grant);
//  - the connector: a PUT that moves it to another URL cuts the employees'
//    grants ("a grant is never presented to another upstream"); tokens
//    asked for the old upstream (for a discovered connector, bound to it by
//    RFC 8707 `resource`) must not be stored for the new one. A new key in
//    the URL's query is such a move, though the URL shows alike (its values
//    are shown as "…": connector-url-query.test.mjs).
// And earlier: a connect begun before an admin moved or rekeyed the
// connector comes back with a code the OLD authorization server issued for
// the OLD upstream. The connect cookie carries the connector as the flow
// began (vault_connect_bind), and the callback refuses one that changed
// since — before the code is exchanged ("start again").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor, sleep } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { ALLOW_ALL_POLICY } from './lib/mcp.mjs';

let fx, as, asUrl, release, tokenCalls = 0;

const connector = (path) => ({
  url: `${asUrl}/${path}`,
  auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, client_id: 'gw', client_secret: 's3cret' },
});

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
        res.end(JSON.stringify({ access_token: `at-${tokenCalls}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `rt-${tokenCalls}` }));
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise((r) => as.listen(0, '127.0.0.1', r));
  asUrl = `http://127.0.0.1:${as.address().port}`;
  const r = await fx.t.acme.admin('PUT', '/policy', ALLOW_ALL_POLICY);
  assert.equal(r.status, 200, r.body);
});

after(async () => {
  release?.();
  await new Promise((r) => as?.close(r));
  if (fx) await fx.stop();
});

/** Alice signs in and starts connecting crm; resolves once the gateway is
 * waiting on the token endpoint, with {cb}: the callback's pending answer
 * (wrapped: an async function's returned promise would be awaited). */
async function connectUnderWay() {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  const start = await b.get(`${fx.base('acme')}/connect/crm`, { follow: false });
  assert.equal(start.status, 302, start.text);
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  assert.ok(state);
  // the service sends the browser back; the gateway exchanges the code
  const calls = tokenCalls;
  const cb = b.get(`${fx.base('acme')}/connect/crm/callback?code=the-code&state=${encodeURIComponent(state)}`, { follow: false });
  await waitFor(() => tokenCalls === calls + 1, { timeoutMs: 5000, intervalMs: 20, what: 'the code exchange' });
  return { cb };
}

async function assertNoGrant(cb, what) {
  release();
  const res = await cb;
  assert.notEqual(res.status, 200, `the connect finished after ${what}: ${res.text?.slice(0, 200)}`);
  const c = await fx.t.acme.admin('GET', '/users/alice%40acme.com/connections');
  assert.equal(c.status, 200, c.body);
  assert.deepEqual(c.json.connections, [], `no upstream grant from before ${what}`);
}

test('a connect whose session was cut while the token endpoint answered stores no grant', async () => {
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/crm', connector('mcp'));
  assert.ok(r.status === 201 || r.status === 200, r.body);
  const { cb } = await connectUnderWay();
  // meanwhile IT cuts alice (the incident button), then restores her
  r = await admin('POST', '/users/alice%40acme.com/revoke', { reason: 'incident' });
  assert.equal(r.status, 200, r.body);
  r = await admin('POST', '/users/alice%40acme.com/restore');
  assert.equal(r.status, 200, r.body);
  await assertNoGrant(cb, 'the cut');
});

test('a connect under way when the connector moves to another URL stores no grant', async () => {
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/crm', connector('old-mcp'));
  assert.ok(r.status === 201 || r.status === 200, r.body);
  const { cb } = await connectUnderWay();
  // meanwhile the admin moves the connector (same authorization server and client)
  r = await admin('PUT', '/connectors/crm', connector('new-mcp'));
  assert.equal(r.status, 200, r.body);
  await assertNoGrant(cb, 'the move');
});

test('a connect begun before the admin moved or rekeyed the connector is refused at the callback, before any code exchange', async () => {
  const { admin } = fx.t.acme;
  const cases = [
    ['the move', connector('new-mcp')],
    ['the rekey', { ...connector('old-mcp'), auth: { ...connector('old-mcp').auth, client_id: 'gw-2' } }],
  ];
  for (const [what, changed] of cases) {
    let r = await admin('PUT', '/connectors/crm', connector('old-mcp'));
    assert.ok(r.status === 201 || r.status === 200, r.body);
    const b = fx.browser();
    const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
    assert.equal(s.status, 200);
    const start = await b.get(`${fx.base('acme')}/connect/crm`, { follow: false });
    assert.equal(start.status, 302, start.text);
    const state = new URL(start.headers.get('location')).searchParams.get('state');
    // while alice signs in at the old connector's authorization server, the
    // admin changes the connector
    r = await admin('PUT', '/connectors/crm', changed);
    assert.equal(r.status, 200, r.body);
    const calls = tokenCalls;
    let answered = false;
    const cb = b.get(`${fx.base('acme')}/connect/crm/callback?code=the-code&state=${encodeURIComponent(state)}`, { follow: false })
      .then((x) => { answered = true; return x; });
    // a gateway that exchanges the code anyway: its token request is answered
    const res = await Promise.race([cb, (async () => {
      while (!answered && tokenCalls === calls) await sleep(20);
      if (!answered) release();
      return cb;
    })()]);
    assert.equal(res.status, 409, `after ${what}: ${res.status} ${res.text?.slice(0, 300)}`);
    assert.match(res.text, /changed while you were signing in/);
    assert.match(res.text, /Start again/);
    assert.equal(tokenCalls, calls, `after ${what}: the old authorization server's code was not exchanged`);
    const c = await admin('GET', '/users/alice%40acme.com/connections');
    assert.equal(c.status, 200, c.body);
    assert.deepEqual(c.json.connections, [], `no upstream grant from before ${what}`);
  }
  // begun after the change, the connect goes on as usual
  const b = fx.browser();
  assert.equal((await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' })).status, 200);
  const start = await b.get(`${fx.base('acme')}/connect/crm`, { follow: false });
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  const calls = tokenCalls;
  const cb = b.get(`${fx.base('acme')}/connect/crm/callback?code=the-code&state=${encodeURIComponent(state)}`, { follow: false });
  await waitFor(() => tokenCalls === calls + 1, { timeoutMs: 5000, intervalMs: 20, what: 'the code exchange' });
  release();
  const res = await cb;
  assert.equal(res.status, 200, res.text?.slice(0, 300));
  const d = await admin('DELETE', '/users/alice%40acme.com/connections/crm');
  assert.ok(d.status === 204 || d.status === 200, d.body);
});

test('a connect under way when the key in the connector URL\'s query changes stores no grant', async () => {
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/crm', connector('mcp?api_key=old-query-key'));
  assert.ok(r.status === 201 || r.status === 200, r.body);
  const { cb } = await connectUnderWay();
  // meanwhile the admin gives the URL another key: it shows alike (?api_key=…)
  r = await admin('PUT', '/connectors/crm', connector('mcp?api_key=new-query-key'));
  assert.equal(r.status, 200, r.body);
  assert.ok(r.json.url.endsWith('/mcp?api_key=…'), r.body);
  await assertNoGrant(cb, 'the new query key');
});
