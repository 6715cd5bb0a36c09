// MCP sessions the gateway drops on its own — unused past
// session_idle_timeout_ms (refused at once, deleted by the periodic purge),
// or pushed out past sessions_per_user_max by the person's newer ones —
// took their upstream sessions with them, forgotten: left open at each
// upstream until its own expiry. They are now ended there, as a client
// should (MCP Streamable HTTP): a DELETE carrying the id, with the
// credential that opened it, to the URL it was given for, once the write
// that deleted them committed (the purge's bounded step, the creating write
// that evicted). The connector endpoint's session and the aggregated
// session's upstream sessions alike; nobody else's.
//
// Real parts: the gateway binary on a real LMDB, the controllable upstream
// (lib/ctl-upstream.mjs) recording each request.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const KEY = 'Key k-2b9d';

async function fixture(args) {
  const gw = await startGateway({ args });
  const up = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
  const r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: KEY } });
  assert.equal(r.status, 201, r.body);
  const tokens = {};
  for (const u of ['alice', 'bob']) {
    const m = await t.mintToken(`${u}@acme.com`);
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.token;
  }
  return { gw, up, t, tokens };
}

/* The upstream session id the call with message `msg` went on. */
const sidOf = (up, msg) => up.rpc('tools/call').find((e) => e.json.params?.arguments?.message === msg)?.headers['mcp-session-id'];
const deletesOf = (up, sids) => up.requests().filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));

async function assertEnded(up, sids, what) {
  await waitFor(() => new Set(deletesOf(up, sids).map((e) => e.headers['mcp-session-id'])).size === sids.size, {
    what: `a DELETE of each of ${what} (seen: ${JSON.stringify(deletesOf(up, sids).map((e) => e.headers['mcp-session-id']))})`,
    timeoutMs: 10000,
  });
  const ends = deletesOf(up, sids);
  assert.equal(ends.length, sids.size, 'one DELETE per upstream session');
  assert.deepEqual(ends.filter((e) => e.headers['x-key'] !== KEY || e.url !== '/mcp').map((e) => `${e.url} ${e.headers['x-key']}`), [],
    'each DELETE carries the credential that opened the session, to the URL it was given for');
}

test('sessions gone idle: the purge that deletes them ends their upstream sessions there', async () => {
  const f = await fixture(['--session-idle-timeout-ms', '1500', '--session-purge-interval-ms', '100']);
  const d = await rawSession(`${f.gw.url}/t/acme/mcp/cc`, f.tokens.alice);
  let r = await d.request('tools/call', { name: 'echo', arguments: { message: 'direct' } });
  assert.equal(r.status, 200, r.body);
  const agg = await rawSession(`${f.gw.url}/t/acme/mcp`, f.tokens.alice);
  r = await agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'agg' } });
  assert.equal(r.status, 200, r.body);
  const sids = new Set([sidOf(f.up, 'direct'), sidOf(f.up, 'agg')]);
  assert.equal(sids.size, 2);
  await assertEnded(f.up, sids, 'the 2 upstream sessions of the idle sessions');
  // the sessions are gone: the client starts over
  r = await d.request('tools/call', { name: 'echo', arguments: { message: 'late' } });
  assert.equal(r.status, 404, r.body);
  await f.gw.stop();
});

test('sessions pushed out past sessions_per_user_max: their upstream sessions are ended, the newer ones\' not', async () => {
  const f = await fixture(['--sessions-per-user-max', '2']);
  const open = async (u, agg, msg) => {
    const s = await rawSession(`${f.gw.url}/t/acme/mcp${agg ? '' : '/cc'}`, f.tokens[u]);
    const r = await s.request('tools/call', { name: agg ? 'cc__echo' : 'echo', arguments: { message: msg } });
    assert.equal(r.status, 200, r.body);
    return { s, sid: sidOf(f.up, msg) };
  };
  // the next ones are made once a1's second is over, so it is surely the
  // oldest
  const a1 = await open('alice', true, 'agg one');
  const second = Math.floor(Date.now() / 1000);
  await waitFor(() => Math.floor(Date.now() / 1000) > second, { what: 'the next second', timeoutMs: 3000 });
  const d1 = await open('alice', false, 'direct one');
  const b1 = await open('bob', false, 'bob one');
  const d2 = await open('alice', false, 'direct two'); // pushes out a1 (aggregated)
  await assertEnded(f.up, new Set([a1.sid]), 'the upstream session of alice\'s oldest session (aggregated)');
  const d3 = await open('alice', false, 'direct three'); // pushes out d1 (the connector endpoint's)
  await assertEnded(f.up, new Set([d1.sid]), 'the upstream session of alice\'s next oldest session (connector endpoint)');
  assert.deepEqual(deletesOf(f.up, new Set([d2.sid, d3.sid, b1.sid])).map((e) => e.headers['mcp-session-id']), [],
    'the sessions kept (and bob\'s) were not ended');
  const r = await d2.s.request('tools/call', { name: 'echo', arguments: { message: 'two again' } });
  assert.equal(r.status, 200, r.body);
  assert.equal(sidOf(f.up, 'two again'), d2.sid);
  await f.gw.stop();
});
