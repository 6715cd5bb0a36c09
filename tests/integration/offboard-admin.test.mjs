// Instant offboarding (issue 18): the admin's incident button.
//   POST /admin/v1/tenants/{t}/users/{id}/revoke  — the cut of a SCIM
//   deactivation without touching Okta's data; …/restore lifts the block
//   and revives nothing. Alice holds every kind of credential the gateway
//   issues (an employee token, an OAuth access+refresh token, a browser
//   session) and an open GET stream and an in-flight call; bob is connected
//   too. The stream and the call end before the revoke's 200; afterwards
//   every credential of hers is refused; bob is untouched; SCIM cannot
//   lift the block; restore lets her sign in again, with nothing old back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, me } from './lib/login.mjs';
import { grant, tokenRequest } from './lib/oauth.mjs';
import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { accessIndex } from './lib/workers.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';
let fx, up, t;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: BOB, externalId: '00u-bob' }] } },
    accounts: { '00u-alice': { email: ALICE }, '00u-bob': { email: BOB } },
  });
  t = fx.t.acme;
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

const initStatus = async (tok, path = '/t/acme/mcp') => (await request(fx.gw.port, {
  method: 'POST', path,
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
})).status;

/** Everything alice and bob hold. */
async function connectEveryone() {
  const h = {};
  for (const [who, login] of [['alice', '00u-alice'], ['bob', '00u-bob']]) {
    const user = who === 'alice' ? ALICE : BOB;
    const b = fx.browser();
    const oauth = await grant(fx, b, { login }); // also leaves a browser session in b
    assert.equal((await me(b, fx, 'acme')).status, 200, `${who} is signed in`);
    const mgw = await mint(user);
    const s = await rawSession(`${fx.gw.url}/t/acme/mcp/ca`, mgw);
    const stream = await openStream(`${fx.gw.url}/t/acme/mcp/ca`, { headers: mcpHeaders({ token: mgw, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
    assert.equal(stream.status, 200);
    h[who] = { b, oauth, mgw, s, stream, user };
  }
  return h;
}

test('revoke: stream and in-flight call end before the 200, every credential refused, bob untouched; restore revives nothing', async () => {
  const h = await connectEveryone();
  const a = h.alice;
  const m0 = await scrapeMetrics(fx.gw);
  const release = up.hold((m) => m?.method === 'tools/call' && m.params?.arguments?.message === 'held');
  const inflight = a.s.request('tools/call', { name: 'echo', arguments: { message: 'held' } });
  await up.waitRequest((e) => e.json?.params?.arguments?.message === 'held');

  const r = await t.admin('POST', `/users/${t.users[ALICE].id}/revoke`, { reason: 'laptop stolen (INC-42)' });
  assert.equal(r.status, 200, r.body);
  // the order on the gateway's side: the access lines of her stream and of
  // the revoke (a line is written when its response is complete)
  const replyAt = await waitFor(() => { const i = accessIndex(fx.gw, r.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'the revoke\'s access line' });
  await waitFor(() => a.stream.isEnded, { what: 'her stream to end' });
  const streamAt = await waitFor(() => { const i = accessIndex(fx.gw, a.stream.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'her stream\'s access line' });
  assert.equal(r.json.user.userName, ALICE);
  assert.equal(r.json.already_blocked, false);
  assert.equal(r.json.blocked.reason, 'laptop stolen (INC-42)');
  assert.equal(r.json.blocked.by, 'operator');
  assert.ok(streamAt < replyAt, 'her GET stream ended before the revoke was answered');
  const call = await inflight;
  assert.equal(JSON.parse(call.body).error?.code, -32004, `her in-flight call ends as revoked: ${call.body}`);
  // counted by trigger; each loop's fan-out observed
  const m1 = await scrapeMetrics(fx.gw);
  const d = (name, labels) => metricValue(m1, name, labels) - metricValue(m0, name, labels);
  assert.equal(d('mcpgate_revocations_total', { trigger: 'admin_revoke' }), 1);
  assert.equal(d('mcpgate_revocations_total', { trigger: 'scim_patch' }), 0);
  assert.ok(d('mcpgate_revocations_total', { trigger: 'token_revoke' }) >= 1, 'her OAuth grant was revoked with her');
  assert.ok(d('mcpgate_revocation_fanout_seconds_count') >= 1, 'the fan-out latency is observed');
  release();

  // every credential of hers is refused now
  assert.equal(await initStatus(a.mgw), 401, 'her employee token');
  assert.equal(await initStatus(a.oauth.access_token), 401, 'her OAuth access token');
  const refresh = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: a.oauth.refresh_token, client_id: a.oauth.client_id });
  assert.equal(refresh.status, 400);
  assert.equal(refresh.json.error, 'invalid_grant');
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her browser session');
  const old = await a.s.request('tools/call', { name: 'echo', arguments: { message: 'x' } });
  assert.equal(old.status, 401, `her old MCP session: ${old.status} ${old.body}`);
  // she cannot sign in again, nor get a new grant
  const again = fx.browser();
  await assert.rejects(grant(fx, again, { login: '00u-alice' }), /authorize ended|not active|suspend|revoked|401|403/i);

  // bob is untouched
  assert.equal(h.bob.stream.isEnded, false, 'bob\'s stream stays open');
  assert.equal(await initStatus(h.bob.mgw), 200);
  assert.equal(await initStatus(h.bob.oauth.access_token), 200);
  assert.equal((await me(h.bob.b, fx, 'acme')).status, 200);
  const bobCall = await h.bob.s.request('tools/call', { name: 'echo', arguments: { message: 'hi' } });
  assert.match(bobCall.body, /ca:echo hi/);

  // the admin sees the block; explain says why; SCIM cannot lift it
  const view = await t.admin('GET', `/users/${t.users[ALICE].id}`);
  assert.equal(view.status, 200, view.body);
  assert.equal(view.json.active, true, 'Okta\'s data is untouched');
  assert.equal(view.json.blocked.reason, 'laptop stolen (INC-42)');
  const ex = await t.admin('GET', `/explain?user=${encodeURIComponent(ALICE)}&connector=ca&tool=echo`);
  assert.equal(ex.status, 200, ex.body);
  assert.equal(ex.json.user.active, false);
  assert.match(ex.json.why ?? ex.json.reason ?? JSON.stringify(ex.json), /admin revoked/);
  const scim = await t.scim.patchOps(`/Users/${t.users[ALICE].id}`, [{ op: 'replace', value: { active: true } }]);
  assert.equal(scim.status, 200, scim.body);
  assert.equal(await initStatus(await mint(ALICE).catch(() => 'mgw_none')), 401, 'a SCIM PATCH does not lift the block');
  const twice = await t.admin('POST', `/users/${encodeURIComponent(ALICE)}/revoke`);
  assert.equal(twice.status, 200, twice.body);
  assert.equal(twice.json.already_blocked, true);
  assert.equal(twice.json.blocked.reason, 'laptop stolen (INC-42)', 'the first block is kept');

  // restore: she may sign in again; nothing old comes back
  const rs = await t.admin('POST', `/users/${t.users[ALICE].id}/restore`);
  assert.equal(rs.status, 200, rs.body);
  assert.equal(rs.json.was_blocked, true);
  assert.equal(rs.json.blocked, null);
  assert.equal(await initStatus(a.mgw), 401, 'her old employee token stays dead');
  assert.equal(await initStatus(a.oauth.access_token), 401, 'her old access token stays dead');
  assert.equal((await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: a.oauth.refresh_token, client_id: a.oauth.client_id })).status, 400);
  assert.equal((await me(a.b, fx, 'acme')).status, 401, 'her old browser session stays dead');
  const fresh = await grant(fx, fx.browser(), { login: '00u-alice' });
  assert.equal(await initStatus(fresh.access_token), 200, 'a fresh sign-in works');
  assert.equal(await initStatus(await mint(ALICE)), 200, 'a new employee token works');
  const again2 = await t.admin('POST', `/users/${t.users[ALICE].id}/restore`);
  assert.equal(again2.json.was_blocked, false);
  h.bob.stream.close();
});

test('grants: the admin lists a person\'s applications and disconnects one or all', async () => {
  const b = fx.browser();
  const g1 = await grant(fx, b, { login: '00u-bob' });
  const g2 = await grant(fx, b, { login: '00u-bob', resource: `${fx.gw.url}/t/acme/mcp/ca` });
  const list = await t.admin('GET', `/users/${encodeURIComponent(BOB)}/grants`);
  assert.equal(list.status, 200, list.body);
  assert.equal(list.json.user.userName, BOB);
  assert.ok(list.json.grants.length >= 2, list.body);
  const mine = list.json.grants.find((x) => x.resource === 'ca');
  assert.ok(mine, `the connector grant is listed: ${list.body}`);
  assert.match(mine.created, /^\d{4}-\d{2}-\d{2}T/);
  assert.equal(mine.client_name, 'Test MCP client');
  // another person's grant cannot be revoked through bob's URL
  const alice = await t.admin('DELETE', `/users/${t.users[ALICE].id}/grants/${mine.id}`);
  assert.equal(alice.status, 404, alice.body);
  assert.equal(await initStatus(g2.access_token, '/t/acme/mcp/ca'), 200, 'still connected');
  const one = await t.admin('DELETE', `/users/${t.users[BOB].id}/grants/${mine.id}`);
  assert.equal(one.status, 204, one.body);
  assert.equal(await initStatus(g2.access_token, '/t/acme/mcp/ca'), 401, 'that grant is gone');
  assert.equal(await initStatus(g1.access_token), 200, 'the other stays');
  const all = await t.admin('DELETE', `/users/${t.users[BOB].id}/grants`);
  assert.equal(all.status, 200, all.body);
  assert.ok(all.json.revoked >= 1);
  assert.equal(await initStatus(g1.access_token), 401);
  assert.deepEqual((await t.admin('GET', `/users/${t.users[BOB].id}/grants`)).json.grants, []);
});

test('bad requests get clear errors and change nothing', async () => {
  const id = t.users[BOB].id;
  const cases = [
    ['POST', '/users/00000000-0000-4000-8000-000000000000/revoke', undefined, 404, /no user/],
    ['POST', '/users/nobody%40acme.com/revoke', undefined, 404, /no user/],
    ['GET', `/users/${id}/revoke`, undefined, 405, /not allowed/],
    ['POST', `/users/${id}/revoke`, { reason: 'x'.repeat(501) }, 400, /reason/],
    ['POST', `/users/${id}/revoke`, { reason: 7 }, 400, /reason/],
    ['POST', `/users/${id}/revoke`, { why: 'x' }, 400, /unknown field/],
    ['POST', `/users/${id}/frobnicate`, undefined, 404, /no such admin endpoint/],
    ['POST', `/users/${id}/revoke/extra/deeper`, undefined, 404, /no such admin endpoint/],
    ['PUT', `/users/${id}/grants`, undefined, 405, /not allowed/],
    ['DELETE', `/users/${id}/grants/not-a-grant`, undefined, 404, /no such application grant/],
    ['POST', `/users/%zz/revoke`, undefined, 404, /no user/],
  ];
  for (const [m, p, body, status, re] of cases) {
    const r = await t.admin(m, p, body);
    assert.equal(r.status, status, `${m} ${p}: ${r.status} ${r.body}`);
    assert.match(r.json?.message ?? r.body, re, `${m} ${p}`);
  }
  const bad = await request(fx.gw.port, {
    method: 'POST', path: `/admin/v1/tenants/acme/users/${id}/revoke`, body: '{"reason":',
    headers: { authorization: `Bearer ${fx.op.token}`, 'content-type': 'application/json' },
  });
  assert.equal(bad.status, 400, bad.body);
  // a tenant admin of another tenant cannot reach it; nobody without a token can
  const anon = await request(fx.gw.port, { method: 'POST', path: `/admin/v1/tenants/acme/users/${id}/revoke` });
  assert.equal(anon.status, 401);
  const other = await fx.op.call('POST', '/admin/v1/tenants', { id: 'other' });
  assert.equal(other.status, 201, other.body);
  const adm = await fx.op.call('POST', '/admin/v1/tenants/other/admin-tokens', { name: 'x' });
  assert.equal(adm.status, 201, adm.body);
  const foreign = await request(fx.gw.port, {
    method: 'POST', path: `/admin/v1/tenants/acme/users/${id}/revoke`,
    headers: { authorization: `Bearer ${adm.json.token}` },
  });
  assert.equal(foreign.status, 403, foreign.body);
  // bob was never blocked by any of this
  const view = await t.admin('GET', `/users/${id}`);
  assert.equal(view.json.blocked, null);
});
