// Okta Universal Logout (issue 19): POST /t/{t}/oauth/global-logout with a
// JWT signed by the tenant's Okta (the oidc-provider stand-in's own key)
// signs a person out everywhere. Alice holds every kind of credential the
// gateway issues (an employee token, an OAuth access + refresh token, a
// browser session), an open GET stream and an in-flight call; bob is
// connected too. Her stream and call end before the 204; afterwards every
// credential of hers is refused, bob is untouched, her SCIM record is as
// Okta provisioned it (active, not blocked), and she can sign in again at
// once. The endpoint is in the tenant's RFC 8414 metadata; the outcome and
// the revocation are counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, me } from './lib/login.mjs';
import { grant, tokenRequest } from './lib/oauth.mjs';
import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { accessIndex } from './lib/workers.mjs';
import { logoutToken, postLogout, emailSubject } from './lib/gtr.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';
let fx, up, t, aud;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: BOB, externalId: '00u-bob' }] } },
    accounts: { '00u-alice': { email: ALICE }, '00u-bob': { email: BOB } },
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
  if (fx) await fx.stop();
});

const mint = async (user) => {
  const r = await t.admin('POST', '/tokens', { user, name: 'laptop', expires_in_days: 30 });
  assert.equal(r.status, 201, r.body);
  return r.json.token;
};

const initStatus = async (tok) => (await request(fx.gw.port, {
  method: 'POST', path: '/t/acme/mcp',
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
})).status;

async function connect(login, user) {
  const b = fx.browser();
  const oauth = await grant(fx, b, { login }); // also leaves a browser session in b
  assert.equal((await me(b, fx, 'acme')).status, 200, `${user} is signed in`);
  const mgw = await mint(user);
  const s = await rawSession(`${fx.gw.url}/t/acme/mcp/ca`, mgw);
  const stream = await openStream(`${fx.gw.url}/t/acme/mcp/ca`, { headers: mcpHeaders({ token: mgw, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(stream.status, 200);
  return { b, oauth, mgw, s, stream };
}

test('the metadata advertises the endpoint', async () => {
  const r = await request(fx.gw.port, { path: '/.well-known/oauth-authorization-server/t/acme' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.global_token_revocation_endpoint, aud);
  const get = await request(fx.gw.port, { path: '/t/acme/oauth/global-logout' });
  assert.equal(get.status, 405);
});

test('a logout signed by the tenant\'s Okta cuts her everywhere before the 204; bob untouched; she may sign in again', async () => {
  const a = await connect('00u-alice', ALICE);
  const bob = await connect('00u-bob', BOB);
  const m0 = await scrapeMetrics(fx.gw);
  const release = up.hold((m) => m?.method === 'tools/call' && m.params?.arguments?.message === 'held');
  const inflight = a.s.request('tools/call', { name: 'echo', arguments: { message: 'held' } });
  await up.waitRequest((e) => e.json?.params?.arguments?.message === 'held');

  const tok = logoutToken(fx.okta, { aud });
  const r = await postLogout(fx.gw.port, 'acme', tok, emailSubject('Alice@ACME.com'));
  assert.equal(r.status, 204, r.body);
  assert.equal(r.body, '');
  // the order on the gateway's side: a line is written when its response is complete
  const replyAt = await waitFor(() => { const i = accessIndex(fx.gw, r.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'the logout\'s access line' });
  await waitFor(() => a.stream.isEnded, { what: 'her stream to end' });
  const streamAt = await waitFor(() => { const i = accessIndex(fx.gw, a.stream.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'her stream\'s access line' });
  assert.ok(streamAt < replyAt, 'her GET stream ended before the logout was answered');
  const call = await inflight;
  assert.equal(JSON.parse(call.body).error?.code, -32004, `her in-flight call ends as revoked: ${call.body}`);
  release();

  const m1 = await scrapeMetrics(fx.gw);
  const d = (name, labels) => metricValue(m1, name, labels) - metricValue(m0, name, labels);
  assert.equal(d('mcpgate_universal_logouts_total', { result: 'done' }), 1);
  assert.equal(d('mcpgate_revocations_total', { trigger: 'universal_logout' }), 1);
  assert.equal(d('mcpgate_revocations_total', { trigger: 'admin_revoke' }), 0);
  assert.equal(d('mcpgate_scim_events_total', { event: 'user_deactivated' }), 0, 'not a deactivation');

  // every credential of hers is refused
  assert.equal(await initStatus(a.mgw), 401, 'her employee token');
  assert.equal(await initStatus(a.oauth.access_token), 401, 'her OAuth access token');
  const refresh = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: a.oauth.refresh_token, client_id: a.oauth.client_id });
  assert.equal(refresh.status, 400);
  assert.equal(refresh.json.error, 'invalid_grant');
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her browser session');
  const old = await a.s.request('tools/call', { name: 'echo', arguments: { message: 'x' } });
  assert.equal(old.status, 401, `her old MCP session: ${old.status} ${old.body}`);

  // bob is untouched
  assert.equal(bob.stream.isEnded, false, 'bob\'s stream stays open');
  assert.equal(await initStatus(bob.mgw), 200);
  assert.equal(await initStatus(bob.oauth.access_token), 200);
  assert.equal((await me(bob.b, fx, 'acme')).status, 200);
  const bobCall = await bob.s.request('tools/call', { name: 'echo', arguments: { message: 'hi' } });
  assert.match(bobCall.body, /ca:echo hi/);

  // her record is as Okta provisioned it: active, not blocked
  const view = await t.admin('GET', `/users/${t.users[ALICE].id}`);
  assert.equal(view.status, 200, view.body);
  assert.equal(view.json.active, true);
  assert.equal(view.json.blocked, null);
  assert.equal((await t.scim.fetch(`/Users/${t.users[ALICE].id}`)).active, true, 'SCIM sees her active');

  // she signs in again at once; nothing old comes back
  const fresh = await grant(fx, fx.browser(), { login: '00u-alice' });
  assert.equal(await initStatus(fresh.access_token), 200, 'a fresh sign-in works');
  assert.equal(await initStatus(await mint(ALICE)), 200, 'a new employee token works');
  assert.equal(await initStatus(a.mgw), 401, 'her old employee token stays dead');
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her old browser session stays dead');

  // the same token again: refused, and nothing is done to her new credentials
  const replay = await postLogout(fx.gw.port, 'acme', tok, emailSubject(ALICE));
  assert.equal(replay.status, 401, replay.body);
  assert.match(replay.json.error_description, /used already/);
  assert.equal(await initStatus(fresh.access_token), 200);

  // the log names her by id, never by address, and holds no token
  const logs = fx.gw.stderrText();
  assert.ok(logs.includes(`user ${t.users[ALICE].id} signed out everywhere`), 'the sign-out is logged');
  assert.ok(!logs.includes(tok.split('.')[2]), 'no token in the log');
  assert.ok(!/Alice@ACME\.com/.test(logs), 'no subject in the log');
  bob.stream.close();
});
