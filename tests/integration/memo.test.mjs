// The per-loop memo of a request's store reads (gateway/mcp/memo.h): after
// a run of requests has been answered from it (its hit counter proves it),
// every kind of revocation still refuses the very next request — the memo
// is valid only for the store snapshot it was read in, and revoking is a
// write. Also: a token remembered for one tenant or endpoint is not taken
// for another, and a bad token is never answered from the memo.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, metricValue } from './lib/gateway.mjs';
import { scrape } from './lib/scim.mjs';
import { setupTenant, rawSession, mcpPost } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const USERS = ['alice@acme.com', 'bob@acme.com', 'carol@acme.com', 'dave@acme.com'];

let fx;
async function fixture() {
  if (fx) return fx;
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ca' });
  const t = await setupTenant(gw, { users: USERS });
  for (const c of ['ca', 'cb']) {
    const r = await t.putConnector(c, { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'secret-memo' } });
    assert.equal(r.status, 201, r.body);
  }
  const tok = {};
  for (const u of USERS) {
    const m = await t.mintToken(u);
    assert.equal(m.status, 201, m.body);
    tok[u] = m;
  }
  fx = { gw, up, t, tok };
  return fx;
}

const hits = async (gw) => metricValue(await scrape(gw.port), 'mcpgate_memo_lookups_total', { table: 'identity', result: 'hit' });

/* A session on url for user, and `n` answered calls on it. */
async function warm(url, token, n = 6) {
  const s = await rawSession(url, token);
  for (let i = 0; i < n; i++) {
    const r = await s.request('tools/call', { name: 'echo', arguments: { message: `m${i}` } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /ca:echo m/);
  }
  return s;
}

test('answered from the memo, then refused at once after each kind of revocation', async () => {
  const { gw, t, tok } = await fixture();
  const before = await hits(gw);
  const url = t.mcpUrl('ca');

  // token revoked by the admin
  const a = await warm(url, tok['alice@acme.com'].token);
  assert.ok((await hits(gw)) > before + 3, 'the warm-up calls were answered from the memo');
  const rv = await t.admin('DELETE', `/tokens/${tok['alice@acme.com'].id}`);
  assert.equal(rv.status, 204, rv.body);
  let r = await a.request('tools/call', { name: 'echo', arguments: { message: 'after' } });
  assert.equal(r.status, 401, `revoked token: ${r.status} ${r.body}`);

  // user deactivated over SCIM
  const b = await warm(url, tok['bob@acme.com'].token);
  await t.deactivate(t.users['bob@acme.com'].id);
  r = await b.request('tools/call', { name: 'echo', arguments: { message: 'after' } });
  assert.equal(r.status, 401, `deactivated user: ${r.status} ${r.body}`);

  // connector deleted
  const c = await warm(t.mcpUrl('cb'), tok['carol@acme.com'].token);
  const dc = await t.admin('DELETE', '/connectors/cb');
  assert.ok(dc.status === 204 || dc.status === 200, dc.body);
  r = await c.request('tools/call', { name: 'echo', arguments: { message: 'after' } });
  assert.equal(r.status, 404, `deleted connector: ${r.status} ${r.body}`);

  // session deleted by its client
  const d = await warm(url, tok['dave@acme.com'].token);
  const del = await d.del();
  assert.equal(del.status, 204, del.body);
  r = await d.request('tools/call', { name: 'echo', arguments: { message: 'after' } });
  assert.equal(r.status, 404, `deleted session: ${r.status} ${r.body}`);

  // and the others still work
  const again = await rawSession(url, tok['dave@acme.com'].token);
  r = await again.request('tools/call', { name: 'echo', arguments: { message: 'still' } });
  assert.equal(r.status, 200, r.body);
});

test('the aggregated endpoint reads its upstream session from the memo; a connector moved to another server never gets the old one', async () => {
  const { gw, t, tok } = await fixture();
  const up2 = await startCtlUpstream({ name: 'ca2' });
  const upHits = async () => metricValue(await scrape(gw.port), 'mcpgate_memo_lookups_total', { table: 'upstream_session', result: 'hit' });
  const put = await t.putConnector('cc', { url: fx.up.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok['carol@acme.com'].token);
  const h0 = await upHits();
  const call = async (message) => {
    const r = await s.request('tools/call', { name: 'cc__echo', arguments: { message } });
    assert.equal(r.status, 200, r.body);
    return r.body;
  };
  // twelve calls: each loop (GW_TEST_WORKERS) misses once, the first call
  // opens the upstream session (a write), the rest are hits
  for (let i = 0; i < 12; i++) assert.match(await call(`m${i}`), /ca:echo m/);
  const h1 = await upHits();
  assert.ok(h1 >= h0 + 6, `the calls after the first read the upstream session from the memo: hits ${h0} -> ${h1}`);
  const old = fx.up.requests().filter((e) => e.json?.params?.name === 'echo' && e.json?.params?.arguments?.message === 'm11').pop();
  const oldSid = old?.headers['mcp-session-id'];
  assert.ok(oldSid, 'the call reached the first server with its upstream session');
  // the connector moves to another server: its upstream sessions are forgotten (a write)
  const moved = await t.putConnector('cc', { url: up2.url, auth: { type: 'none' } });
  assert.ok(moved.status === 200 || moved.status === 201, moved.body);
  assert.match(await call('after'), /ca2:echo after/);
  const seen = up2.requests();
  assert.ok(!seen.some((e) => e.headers['mcp-session-id'] === oldSid), 'the old server\'s session id reached the new server');
  assert.equal(seen.find((e) => e.json?.method)?.json.method, 'initialize', 'the new server is asked for a session first');
  await up2.stop();
});

test('a remembered token is not taken for another tenant, endpoint or session; a bad token never hits', async () => {
  const { gw, t, tok } = await fixture();
  const beta = await setupTenant(gw, { id: 'beta', users: ['eve@beta.com'] });
  const put = await beta.putConnector('ca', { url: fx.up.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const token = tok['dave@acme.com'].token;
  const s = await warm(t.mcpUrl('ca'), token, 3);
  // the same token at tenant beta: never acme's answer
  const init = await mcpPost(beta.mcpUrl('ca'), { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }, { token });
  assert.equal(init.status, 401, `acme's token at beta: ${init.status} ${init.body}`);
  // the same session id on another connector's endpoint: not this session
  const r = await mcpPost(t.mcpUrl('nope'), { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { token, sessionId: s.sessionId });
  assert.equal(r.status, 404, `unknown connector: ${r.status} ${r.body}`);
  // a token differing in its last character: refused, and no hit counted
  const h0 = await hits(gw);
  const bad = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
  for (let i = 0; i < 3; i++) {
    const x = await mcpPost(t.mcpUrl('ca'), { jsonrpc: '2.0', id: 3, method: 'tools/list' }, { token: bad, sessionId: s.sessionId });
    assert.equal(x.status, 401, `bad token: ${x.status} ${x.body}`);
  }
  assert.equal(await hits(gw), h0, 'a bad token is never answered from the memo');
  await gw.stop();
});
