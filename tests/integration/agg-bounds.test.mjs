// Issue 12 item 4, the aggregated endpoint's in-memory state: the
// per-session resource-URI map is capped (agg_uri_map_max) instead of
// growing without bound, and a batch's collected replies are capped like a
// request body (mcp_max_body). Upstreams: lib/ctl-upstream.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, metricValue, waitFor } from './lib/gateway.mjs';
import { scrape } from './lib/scim.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

async function fixture(names, { args = [], resources = 0 } = {}) {
  const gw = await startGateway({ args });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const ups = {};
  for (const n of names) {
    ups[n] = await startCtlUpstream({ name: n, resources });
    const r = await t.putConnector(n, { url: ups[n].url, auth: { type: 'none' } });
    assert.equal(r.status, 201, r.body);
  }
  const tok = (await t.mintToken('alice@acme.com')).token;
  return { gw, t, ups, tok, agg: `${gw.url}/t/acme/mcp` };
}

test('the resource-URI map of a session holds at most agg_uri_map_max entries; URIs past it are not routed, and say why in the log', async () => {
  const f = await fixture(['ra', 'rb'], { args: ['--agg-uri-map-max', '16'], resources: 12 });
  const s = await rawSession(f.agg, f.tok);
  const uris = [];
  for (let cursor, i = 0; i < 5; i++) {
    const r = await s.request('resources/list', cursor ? { cursor } : {});
    uris.push(...r.messages[0].result.resources.map((x) => x.uri));
    cursor = r.messages[0].result.nextCursor;
    if (!cursor) break;
  }
  assert.equal(uris.length, 24, `both connectors listed: ${uris}`);
  const read = async (uri) => (await s.request('resources/read', { uri })).messages[0];
  assert.equal((await read('ra://r/0')).result?.contents?.[0]?.text, 'ra:read ra://r/0', 'a URI noted before the cap routes');
  const late = await read('rb://r/11');
  assert.equal(late.error?.code, -32602, `a URI past the cap is not routed: ${JSON.stringify(late)}`);
  assert.equal(f.ups.rb.rpc('resources/read').length, 0, 'nothing was guessed');
  await f.gw.waitForLog((l) => /noted agg_uri_map_max resource URIs/.test(l.msg ?? ''));
  await f.gw.stop();
});

test('a batch whose collected replies pass mcp_max_body answers the rest with an error instead of holding them', async () => {
  const f = await fixture(['ca'], { args: ['--mcp-max-body', '4096'] });
  const s = await rawSession(f.agg, f.tok, { protocolVersion: '2025-03-26' });
  const call = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'ca__echo', arguments: { message: 'z'.repeat(100), times: 15 } } });
  const r = await s.post([call(1), call(2), call(3), call(4)]);
  assert.equal(r.status, 200, r.body);
  assert.ok(Array.isArray(r.json) && r.json.length === 4, r.body.slice(0, 300));
  const ok = r.json.filter((m) => m.result);
  const capped = r.json.filter((m) => m.error?.code === -32603 && /mcp_max_body/.test(m.error.message));
  assert.ok(ok.length >= 1 && ok.length <= 2, `the first replies fit: ${ok.length}`);
  assert.equal(ok.length + capped.length, 4, `the others are answered with the cap error: ${r.body.slice(0, 400)}`);
  assert.deepEqual(r.json.map((m) => m.id).sort(), [1, 2, 3, 4], 'every id answered once');
  await f.gw.stop();
});

test('a session\'s in-memory URI map goes with the session: at DELETE, and when its user is deactivated', async () => {
  const f = await fixture(['ra', 'rb'], { resources: 3 });
  const maps = async () => metricValue(await scrape(f.gw.port), 'mcpgate_mcp_agg_uri_maps');
  const listAll = async (s) => {
    for (let cursor, i = 0; i < 5; i++) {
      const r = await s.request('resources/list', cursor ? { cursor } : {});
      cursor = r.messages[0].result.nextCursor;
      if (!cursor) break;
    }
  };
  const s1 = await rawSession(f.agg, f.tok);
  const s2 = await rawSession(f.agg, f.tok);
  await listAll(s1);
  await listAll(s2);
  assert.equal(await maps(), 2);
  const d = await s1.del();
  assert.equal(d.status, 204, d.body);
  assert.equal(await maps(), 1, 'DELETE freed its map');
  await f.t.deactivate(f.t.users['alice@acme.com'].id);
  assert.equal(await maps(), 0, 'the deactivation freed the user\'s maps before the SCIM reply');
  await f.gw.stop();
});

test('in-memory state of sessions evicted by sessions_per_user_max is freed by the next sweep', async () => {
  const f = await fixture(['ra'], { args: ['--sessions-per-user-max', '2', '--session-purge-interval-ms', '100'], resources: 2 });
  const maps = async () => metricValue(await scrape(f.gw.port), 'mcpgate_mcp_agg_uri_maps');
  for (let i = 0; i < 6; i++) {
    const s = await rawSession(f.agg, f.tok);
    const r = await s.request('resources/list');
    assert.equal(r.messages[0].result.resources.length, 2, r.body);
  }
  await waitFor(async () => (await maps()) <= 2, { timeoutMs: 3000, what: 'maps of evicted sessions freed' });
  await f.gw.stop();
});

test('one session\'s upstream flooding server→client requests cannot push out another session\'s outstanding question', async () => {
  const f = await fixture(['ca']);
  const bobTok = (await f.t.mintToken('alice@acme.com')).token;
  const alice = await rawSession(f.agg, f.tok, { capabilities: { elicitation: {} } });
  const bob = await rawSession(f.agg, bobTok, { capabilities: { elicitation: {} } });
  await bob.request('tools/list'); // bob's upstream session
  const bobGet = await openStream(f.agg, { headers: { ...mcpHeaders({ token: bobTok, sessionId: bob.sessionId, protocolVersion: bob.protocolVersion }), accept: 'text/event-stream' } });
  await waitFor(() => f.ups.ca.getStreams() === 1, { what: 'bob\'s upstream GET stream' });
  const call = await openStream(f.agg, { method: 'POST', headers: mcpHeaders({ token: f.tok, sessionId: alice.sessionId, protocolVersion: alice.protocolVersion }), body: { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'ca__ask', arguments: {} } } });
  const q = await call.waitFor((m) => m.method === 'elicitation/create');
  for (let i = 0; i < 4200; i++) f.ups.ca.push({ jsonrpc: '2.0', id: `p-${i}`, method: 'ping' });
  await bobGet.waitFor((m) => m.method === 'ping' && /p-4199/.test(String(m.id)), 15000);
  const r = await alice.post({ jsonrpc: '2.0', id: q.id, result: { action: 'accept', content: {} } });
  assert.equal(r.status, 202, r.body);
  const done = await call.waitFor((m) => m.id === 9, 5000);
  assert.match(JSON.stringify(done), /ca:asked accept/, 'alice\'s answer still reached her upstream');
  bobGet.close();
  await f.gw.stop();
});
