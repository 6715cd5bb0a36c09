// Okta's Universal Logout when the store cannot write its sign-out (the
// map full to its last page, no reserve): found by review — the logout
// answered 422 "nothing was done" and every credential of the person kept
// working, the one path meant to end a compromised account's access at
// once. Now the person is cut in memory, as an unwritten deactivation is:
// the 422 says so, her stream ends, her tokens and browser session are
// refused, carol is untouched; Okta's next push of her (active: true) does
// not lift it — only a sign-out that commits does: Okta's retry, her own
// next sign-in or the admin's restore, each of which signs her out in its
// own transaction first (so nothing old comes back).
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request, waitFor, startGateway } from './lib/gateway.mjs';
import { startLoginFixture, me } from './lib/login.mjs';
import { grant } from './lib/oauth.mjs';
import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { logoutToken, postLogout, emailSubject } from './lib/gtr.mjs';
import { URN, assertScimError } from './lib/scim.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';
const CAROL = 'carol@acme.com';
let fx, up, t, aud, gw2;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: BOB, externalId: '00u-bob' }, { userName: CAROL, externalId: '00u-carol' }] } },
    accounts: { '00u-alice': { email: ALICE }, '00u-bob': { email: BOB }, '00u-carol': { email: CAROL } },
    gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'],
  });
  t = fx.t.acme;
  aud = `${fx.gw.url}/t/acme/oauth/global-logout`;
  up = await startCtlUpstream({ name: 'ca' });
  let r = await t.admin('PUT', '/connectors/ca', { url: up.url });
  assert.equal(r.status, 201, r.body);
  r = await t.admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
  assert.equal(r.status, 200, r.body);
});

after(async () => {
  await up?.stop?.().catch(() => {});
  await gw2?.stop?.().catch(() => {});
  if (fx) await fx.stop();
});

const initStatus = async (tok) => (await request(fx.gw.port, {
  method: 'POST', path: '/t/acme/mcp',
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
})).status;

const metric = async (name) => {
  const r = await request(fx.gw.port, { path: '/metrics', headers: { authorization: `Bearer ${fx.gw.operatorToken()}` } });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(r.body);
  return m ? Number(m[1]) : undefined;
};

async function connect(login, user) {
  const b = fx.browser();
  const oauth = await grant(fx, b, { login });
  assert.equal((await me(b, fx, 'acme')).status, 200, `${user} is signed in`);
  const r = await t.admin('POST', '/tokens', { user, name: 'laptop', expires_in_days: 30 });
  assert.equal(r.status, 201, r.body);
  const mgw = r.json.token;
  const s = await rawSession(`${fx.gw.url}/t/acme/mcp/ca`, mgw);
  const stream = await openStream(`${fx.gw.url}/t/acme/mcp/ca`, { headers: mcpHeaders({ token: mgw, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(stream.status, 200);
  return { b, oauth, mgw, s, stream };
}

const fillUser = (userName, n) => ({
  schemas: [URN.USER, URN.ENT], userName, name: { givenName: 'Fill', familyName: 'User' },
  emails: [{ primary: true, value: userName, type: 'work' }], active: true,
  ...(n ? { [URN.ENT]: { department: 'd'.repeat(n) } } : {}),
});

/** SCIM creates, large then smaller, until a one-line user is refused; the ids made */
async function fill() {
  let i = 0;
  const ids = [];
  for (const n of [20000, 4000, 1000, 100, 0]) {
    for (;;) {
      const r = await t.scim.post('/Users', fillUser(`fill${i++}@acme.com`, n));
      if (r.status === 201) { ids.push(r.json.id); continue; }
      assertScimError(r, 507, { detail: /store is full/ });
      break;
    }
  }
  return ids;
}

test('a logout that cannot be written still cuts her, until a sign-out commits', async () => {
  const a = await connect('00u-alice', ALICE);
  const bob = await connect('00u-bob', BOB);
  const carol = await connect('00u-carol', CAROL);
  const filled = await fill();
  assert.ok(filled.length > 5, `${filled.length} users fit`);

  const r = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), emailSubject(ALICE));
  assert.equal(r.status, 422, r.body);
  assert.equal(r.json.error, 'unable_to_logout');
  assert.match(r.json.error_description, /store is full/);
  assert.match(r.json.error_description, /cut in memory/, 'it says what was done instead');
  await waitFor(() => a.stream.isEnded, { timeoutMs: 5000, what: 'her stream to end' });
  assert.equal(await initStatus(a.mgw), 401, 'her employee token');
  assert.equal(await initStatus(a.oauth.access_token), 401, 'her OAuth access token');
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her browser session');
  assert.equal((await a.s.request('tools/list', {})).status, 401, 'her MCP session');
  assert.equal(await initStatus(carol.mgw), 200, 'carol is untouched');
  assert.equal(carol.stream.isEnded, false);
  assert.equal(await metric('mcpgate_store_users_cut_in_memory'), 1);
  // bob's logout cannot be written either
  const rb = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), emailSubject(BOB));
  assert.equal(rb.status, 422, rb.body);
  await waitFor(() => bob.stream.isEnded, { timeoutMs: 5000, what: 'his stream to end' });
  assert.equal(await metric('mcpgate_store_users_cut_in_memory'), 2);
  assert.ok(fx.gw.stderrText().includes(`user ${t.users[ALICE].id} is cut in memory`), 'the operator is told, by id');

  // Okta's next push of her (the whole user, active true: nothing changes,
  // so it commits even now) is not a sign-out
  const alice = await t.scim.fetch(`/Users/${t.users[ALICE].id}`);
  const push = await t.scim.put(`/Users/${alice.id}`, { ...alice, active: true });
  assert.equal(push.status, 200, push.body);
  assert.equal(await initStatus(a.mgw), 401, 'still cut after an IdP push');

  // the remedy for a full store: a restart with a larger map (on the same
  // address: Okta knows the gateway's URLs). She stays cut across it.
  await fx.gw.stop();
  gw2 = await startGateway({
    dataDir: fx.gw.dataDir,
    args: ['--listen', `127.0.0.1:${fx.gw.port}`, '--auth-rate-per-address', '100000', '--auth-rate-per-tenant', '100000', '--store-map-size', '8M', '--store-reserve', '0'],
  });
  assert.equal(gw2.port, fx.gw.port);
  fx.gw = gw2;
  assert.equal(await initStatus(a.mgw), 401, 'still cut after the restart');
  assert.equal(await initStatus(bob.mgw), 401);
  assert.equal(await metric('mcpgate_store_users_cut_in_memory'), 2);
  // she signs in again, as after any logout: that sign-in signs her out
  // first, in its own transaction, so her old credentials stay dead and
  // the cut ends with its commit
  const fresh = await grant(fx, fx.browser(), { login: '00u-alice' });
  assert.equal(await initStatus(fresh.access_token), 200, 'she signs in afresh');
  assert.equal(await initStatus(a.mgw), 401, 'her old employee token stays dead');
  assert.equal(await initStatus(a.oauth.access_token), 401, 'her old OAuth token stays dead');
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her old browser session stays dead');
  assert.equal(await metric('mcpgate_store_users_cut_in_memory'), 1);
  // her sign-in completed the logout this process never received: it is
  // not counted as one (found by review)
  assert.equal(await metric('mcpgate_revocations_total\\{trigger="universal_logout"\\}'), 0);
  // the admin's restore of bob: it signs him out in its transaction, so his
  // old credentials stay dead, and lifts the cut
  const rs = await t.admin('POST', `/users/${t.users[BOB].id}/restore`);
  assert.equal(rs.status, 200, rs.body);
  assert.equal(await metric('mcpgate_store_users_cut_in_memory'), 0);
  assert.equal(await initStatus(bob.mgw), 401, 'his old employee token stays dead');
  assert.equal(await initStatus(bob.oauth.access_token), 401, 'his old OAuth token stays dead');
  assert.equal((await me(bob.b, fx, 'acme')).status, 401, 'his old browser session stays dead');
  const bobFresh = await grant(fx, fx.browser(), { login: '00u-bob' });
  assert.equal(await initStatus(bobFresh.access_token), 200, 'he signs in afresh');
  assert.equal(await initStatus(carol.mgw), 200);
});
