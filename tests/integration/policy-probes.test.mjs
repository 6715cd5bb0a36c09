// ci-variants: build-w1
// The policy review's probes (kept as a regression net): spellings and
// framings of a blocked tools/call — an escaped name, a duplicate or
// case-variant "name", a notification, a dotless-i "ıd", a near-miss
// "params " member, a batch — on both endpoints and both protocol
// generations, never reach the upstream; and a session is its owner's only
// (another user's, or another endpoint's, is 404).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpPost } from './lib/mcp.mjs';
import { startJsonUpstream } from './lib/policy.mjs';

const ALICE = 'alice@acme.com', BOB = 'bob@acme.com';
let gw;
after(async () => { await gw?.stop(); });

const POLICY = { version: 1, default: 'allow', rules: [{ groups: ['*'], connector: '*', allow: ['*'], block: ['secret'] }] };

// Review probes (policy enforcement): name spellings, duplicate/case-variant keys, a
// dotless-i "id", a near-miss "params " member, batches; and sessions of another user
// or endpoint. Every probe must leave the upstream without a tools/call of "secret".
test('probes: no spelling or framing of a blocked call reaches the upstream; sessions stay their owner\'s', async () => {
  gw = await startGateway();
  const up = await startJsonUpstream({ tools: ['alpha', 'secret'] });
  const t = await setupTenant(gw, { id: 'exp', users: [ALICE, BOB], policy: POLICY });
  assert.equal((await t.putConnector('up', { url: up.url, auth: { type: 'none' } })).status, 201);
  const a = (await t.mintToken(ALICE)).token;
  const b = (await t.mintToken(BOB)).token;
  const d = await rawSession(t.mcpUrl('up'), a);
  const d25 = await rawSession(t.mcpUrl('up'), a, { protocolVersion: '2025-03-26' });
  const g = await rawSession(`${gw.url}/t/exp/mcp`, a);
  const g25 = await rawSession(`${gw.url}/t/exp/mcp`, a, { protocolVersion: '2025-03-26' });
  const bodies = [
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s\\u0065cret"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha","name":"secret"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha","Name":"secret"}}',
    '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret"}}',
    '{"jsonrpc":"2.0","ıd":1,"method":"tools/call","params":{"name":"secret"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha","arguments":{}},"params ":{"name":"secret"}}',
    '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret"}}]',
  ];
  for (const [name, s, pre] of [['direct', d, ''], ['direct25', d25, ''], ['agg', g, 'up__'], ['agg25', g25, 'up__']]) {
    for (const raw of bodies) {
      const body = raw.replaceAll('"name":"', `"name":"${pre}`).replaceAll('"name":"up__s\\u0065', '"name":"up\\u005f\\u005fs\\u0065');
      const before = up.calls('secret').length;
      const r = await s.post(body);
      const after = up.calls('secret').length;
      if (process.env.PROBE_VERBOSE) console.log(name, body.slice(0, 150), '=>', r.status, r.body.slice(0, 160).replace(/\n/g, ' '), after > before ? '!!! UPSTREAM GOT secret' : '');
      assert.equal(after, before, `${name}: ${body} reached the upstream`);
    }
  }
  // cross-user
  const r1 = await mcpPost(t.mcpUrl('up'), { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token: b, sessionId: d.sessionId, protocolVersion: d.protocolVersion });
  assert.equal(r1.status, 404);
  const r2 = await mcpPost(`${gw.url}/t/exp/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token: b, sessionId: g.sessionId, protocolVersion: g.protocolVersion });
  assert.equal(r2.status, 404);
  const r3 = await mcpPost(`${gw.url}/t/exp/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token: a, sessionId: d.sessionId, protocolVersion: d.protocolVersion });
  assert.equal(r3.status, 404);
});
