// A connector the policy no longer shows a person — an admin's policy PUT
// that takes it from their groups, or their removal from the group that
// gave it (SCIM) — is cut from their sessions: a connector-endpoint session
// of it goes, an aggregated session forgets its upstream session id for it
// (revoke.c rule 7). Those upstream sessions were forgotten, left open at
// the upstream until its own expiry; they are now ended there (a DELETE
// with the credential that opened them, to the URL it was given for) once
// the change committed — in the triggering write, and in each step of the
// sweep that follows a large one (MCPGATE_TEST_CUT_BUDGET=1 makes every
// session past the first a sweep step's). Only the hidden connector's.
//
// Real parts: the gateway binary on a real LMDB, SCIM and the admin API, the
// controllable upstreams (lib/ctl-upstream.mjs) recording each request.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const KEY_A = 'Key a-51c0', KEY_B = 'Key b-7e22';
const BOTH = {
  version: 1, default: 'block',
  rules: [{ groups: ['G1'], connector: 'ca', allow: ['*'] }, { groups: ['G2'], connector: 'cb', allow: ['*'] }],
};
const ONLY_B = { version: 1, default: 'block', rules: [{ groups: ['G2'], connector: 'cb', allow: ['*'] }] };

async function fixture(env = {}) {
  const gw = await startGateway({ env });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'], policy: null });
  const ids = Object.values(t.users).map((u) => u.id);
  const g1 = await t.scim.createGroup('G1', ids);
  await t.scim.createGroup('G2', ids);
  await t.setPolicy(BOTH);
  let r = await t.putConnector('ca', { url: ua.url, auth: { type: 'header', name: 'X-Key', value: KEY_A } });
  assert.equal(r.status, 201, r.body);
  r = await t.putConnector('cb', { url: ub.url, auth: { type: 'header', name: 'X-Key', value: KEY_B } });
  assert.equal(r.status, 201, r.body);
  const tokens = {};
  for (const u of ['alice', 'bob']) {
    const m = await t.mintToken(`${u}@acme.com`);
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.token;
  }
  return { gw, ua, ub, t, g1, tokens };
}

/* u's connector-endpoint session of ca and an aggregated session calling
 * ca and cb; the upstream session ids they hold at each. */
async function openSessions(f, u) {
  const d = await rawSession(`${f.gw.url}/t/acme/mcp/ca`, f.tokens[u]);
  let r = await d.request('tools/call', { name: 'echo', arguments: { message: `${u} direct` } });
  assert.equal(r.status, 200, r.body);
  const agg = await rawSession(`${f.gw.url}/t/acme/mcp`, f.tokens[u]);
  for (const c of ['ca', 'cb']) {
    r = await agg.request('tools/call', { name: `${c}__echo`, arguments: { message: `${u} agg` } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, new RegExp(`echo ${u} agg`));
  }
  const sids = (up) => new Set(up.rpc('tools/call').filter((e) => String(e.json.params?.arguments?.message).startsWith(`${u} `))
    .map((e) => e.headers['mcp-session-id']));
  const s = { d, agg, a: sids(f.ua), b: sids(f.ub) };
  assert.equal(s.a.size, 2, `${u}'s two upstream sessions at ca`);
  assert.equal(s.b.size, 1, `${u}'s upstream session at cb`);
  return s;
}

const deletesOf = (up, sids) => up.requests().filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));

async function assertEnded(up, sids, key, what) {
  await waitFor(() => new Set(deletesOf(up, sids).map((e) => e.headers['mcp-session-id'])).size === sids.size, {
    what: `a DELETE of each of ${what} (seen: ${JSON.stringify(deletesOf(up, sids).map((e) => e.headers['mcp-session-id']))})`,
    timeoutMs: 10000,
  });
  const ends = deletesOf(up, sids);
  assert.equal(ends.length, sids.size, 'one DELETE per upstream session');
  assert.deepEqual(ends.filter((e) => e.headers['x-key'] !== key || e.url !== '/mcp').map((e) => `${e.url} ${e.headers['x-key']}`), [],
    'each DELETE carries the credential that opened the session, to the URL it was given for');
}

async function policyPutEnds(env) {
  const f = await fixture(env);
  const a = await openSessions(f, 'alice');
  const b = await openSessions(f, 'bob');
  await f.t.setPolicy(ONLY_B);
  await assertEnded(f.ua, new Set([...a.a, ...b.a]), KEY_A, 'the 4 upstream sessions at ca of alice and bob');
  // cb is still theirs: its upstream sessions were not ended, and go on
  assert.deepEqual(deletesOf(f.ub, new Set([...a.b, ...b.b])).map((e) => e.headers['mcp-session-id']), [], 'nothing at cb was ended');
  const r = await a.agg.request('tools/call', { name: 'cb__echo', arguments: { message: 'alice still' } });
  assert.equal(r.status, 200, r.body);
  assert.ok(a.b.has(f.ub.rpc('tools/call').at(-1).headers['mcp-session-id']), 'alice\'s call to cb went on her upstream session');
  await f.gw.stop();
}

test('a policy PUT hiding a connector ends its upstream sessions there, and only its', async () => {
  await policyPutEnds({});
});

test('... also those a sweep step cuts after the PUT\'s own budget', async () => {
  await policyPutEnds({ MCPGATE_TEST_CUT_BUDGET: '1' });
});

test('a member removed from the group that gave a connector: their upstream sessions of it are ended, nobody else\'s', async () => {
  const f = await fixture();
  const a = await openSessions(f, 'alice');
  const b = await openSessions(f, 'bob');
  const r = await f.t.scim.patchOps(`/Groups/${f.g1.id}`, [{ op: 'remove', path: `members[value eq "${f.t.users['alice@acme.com'].id}"]` }]);
  assert.ok(r.status === 200 || r.status === 204, `${r.status} ${r.body}`);
  await assertEnded(f.ua, a.a, KEY_A, 'alice\'s 2 upstream sessions at ca');
  assert.deepEqual(deletesOf(f.ua, b.a).map((e) => e.headers['mcp-session-id']), [], 'bob\'s were not ended');
  assert.deepEqual(deletesOf(f.ub, new Set([...a.b, ...b.b])).map((e) => e.headers['mcp-session-id']), [], 'nothing at cb was ended');
  const x = await b.d.request('tools/call', { name: 'echo', arguments: { message: 'bob still' } });
  assert.equal(x.status, 200, x.body);
  assert.ok(b.a.has(f.ua.rpc('tools/call').at(-1).headers['mcp-session-id']), 'bob\'s call went on his upstream session');
  await f.gw.stop();
});
