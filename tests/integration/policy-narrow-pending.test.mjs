// Review (rvI): a tools/call decided "allow" that has not left the gateway
// yet must not go upstream under a decision a policy change or a group
// removal has taken back since.
//
// The aggregated endpoint decides a call when it arrives, then may have to
// open the upstream session first (initialize, notifications/initialized,
// a writer job storing the id) before the call itself is sent. The last
// check before the bytes leave (upcall.c) re-reads the identity and whether
// the connector is still shown — not the tool's decision. A narrowing that
// keeps the connector visible (a policy PUT blocking the tool, or the user
// leaving the group that allowed it while another group keeps showing the
// connector) committed during that time let the call through.
//
// Upstream: lib/ctl-upstream.mjs, whose notifications/initialized is held
// while the narrowing commits.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, sleep, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { groups } from './lib/policy.mjs';

const ALICE = 'alice@acme.com';
const BLOCKED = -32003;

const allowEcho = (groupsList) => ({
  version: 1, default: 'block',
  rules: [{ groups: groupsList, connector: 'cc', allow: ['echo'] }, { groups: ['*'], connector: 'cc', allow: ['slow'] }],
});

async function fixture(policy) {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'cc' });
  const t = await setupTenant(gw, { users: [ALICE], policy: null });
  const put = await t.putConnector('cc', { url: up.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const g = groups(t.scim);
  const echoers = await g.create('Echoers', [t.users[ALICE].id]);
  await t.setPolicy(policy);
  const m = await t.mintToken(ALICE);
  assert.equal(m.status, 201, m.body);
  return { gw, up, t, g, echoers, token: m.token };
}

/** Starts an aggregated call of cc__echo whose upstream session opening is
 * held at notifications/initialized; resolves {reply, release} once the
 * upstream has the notification. */
async function heldCall(f) {
  const s = await rawSession(`${f.gw.url}/t/acme/mcp`, f.token);
  const release = f.up.hold((m) => m.method === 'notifications/initialized');
  const reply = s.request('tools/call', { name: 'cc__echo', arguments: { message: 'narrowed' } }, { timeoutMs: 10000 });
  await f.up.waitRequest((e) => e.json?.method === 'notifications/initialized' && e.headers['mcp-session-id']);
  return { reply, release };
}

async function assertRefusedAfter(f, reply, what) {
  const r = await reply;
  await sleep(200); // a call let through would have been recorded by now
  const calls = f.up.rpc('tools/call').filter((e) => e.json?.params?.name === 'echo');
  assert.equal(calls.length, 0, `${what}: the upstream must not receive the call decided before it; it saw ${calls.map((e) => e.body).join(' | ')}`);
  const msg = r.json ?? r.messages?.find((m) => m.id !== undefined);
  assert.equal(msg?.error?.code, BLOCKED, `${what}: the call is refused as blocked: ${r.status} ${r.body}`);
  // its audit record says so too, never "allow" with no upstream part
  let recs = [];
  await waitFor(async () => {
    const a = await f.t.admin('GET', '/audit?kind=call&tool=echo');
    recs = a.json?.records ?? [];
    return recs.length >= 1;
  }, { what: `${what}: the call's audit record` });
  assert.deepEqual(recs.map((x) => x.decision), ['block'], `${what}: ${JSON.stringify(recs)}`);
}

test('a policy PUT blocking the tool while the upstream session opens: the call is not forwarded', async () => {
  const f = await fixture(allowEcho(['*']));
  const { reply, release } = await heldCall(f);
  await f.t.setPolicy({ ...allowEcho(['*']), rules: [{ groups: ['*'], connector: 'cc', allow: ['slow'], block: ['echo'] }] });
  release();
  await assertRefusedAfter(f, reply, 'policy PUT');
  await f.gw.stop();
});

test('the user leaves the group that allowed the tool while the upstream session opens: the call is not forwarded', async () => {
  const f = await fixture(allowEcho(['Echoers']));
  const { reply, release } = await heldCall(f);
  await f.g.remove(f.echoers.id, f.t.users[ALICE].id);
  release();
  await assertRefusedAfter(f, reply, 'group removal');
  await f.gw.stop();
});

test('a batch element waiting for its upstream session is not forwarded once the policy blocks its tool', async () => {
  const f = await fixture(allowEcho(['*']));
  const s = await rawSession(`${f.gw.url}/t/acme/mcp`, f.token, { protocolVersion: '2025-03-26' });
  const release = f.up.hold((m) => m.method === 'notifications/initialized');
  const batch = s.post([{ jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'cc__echo', arguments: { message: 'narrowed' } } }], { timeoutMs: 10000 });
  await f.up.waitRequest((e) => e.json?.method === 'notifications/initialized' && e.headers['mcp-session-id']);
  await f.t.setPolicy({ ...allowEcho(['*']), rules: [{ groups: ['*'], connector: 'cc', allow: ['slow'], block: ['echo'] }] });
  release();
  const r = await batch;
  await sleep(200);
  assert.equal(f.up.rpc('tools/call').length, 0, `nothing was forwarded: ${f.up.rpc('tools/call').map((e) => e.body).join(' | ')}`);
  const msgs = Array.isArray(r.json) ? r.json : [r.json];
  assert.ok(msgs.some((m) => m?.id === 11 && m?.error?.code === BLOCKED), `the element is refused as blocked: ${r.status} ${r.body}`);
  await f.gw.stop();
});
