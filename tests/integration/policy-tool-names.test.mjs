// Tool names an upstream chooses, against the policy and the aggregated
// endpoint's {connector}__{tool} names (an attack review of policy/ and
// gateway/mcp/agg_*.c): whatever an upstream calls its tools, the client
// of the aggregated endpoint sees each under its own connector's prefix,
// whole, and the name it sees is the name it can call.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession, startBareUpstream } from './lib/mcp.mjs';
import { startJsonUpstream } from './lib/policy.mjs';

const ALICE = 'alice@acme.com';

let gw;
after(async () => { await gw?.stop(); });

async function fixture(id, tools, policy) {
  gw ??= await startGateway();
  const up = await startJsonUpstream({ tools });
  const t = await setupTenant(gw, { id, users: [ALICE], ...(policy ? { policy } : {}) });
  assert.equal((await t.putConnector('up', { url: up.url, auth: { type: 'none' } })).status, 201);
  const m = await t.mintToken(ALICE);
  const s = await rawSession(`${gw.url}/t/${id}/mcp`, m.token);
  return { up, t, s };
}

// The aggregated name was built in a 400-byte buffer: a longer one was cut
// (listed under a name no call could use), and a cut inside a UTF-8
// character made the new name invalid, so the tool kept the upstream's own
// name — any prefix the upstream liked, another connector's among them.
test('a long tool name is listed whole under its own connector, and callable by that name', async () => {
  const spoof = `other__${'a'.repeat(394 - 7)}\u00e9tail`; // the cut falls inside the é
  const long = `${'b'.repeat(500)}`;
  const f = await fixture('names-long', [spoof, long, 'short']);
  const r = await f.s.request('tools/list', {});
  assert.equal(r.status, 200, r.body);
  const names = r.messages.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);
  assert.deepEqual(names, [`up__${spoof}`, `up__${long}`, 'up__short'], `the client got: ${JSON.stringify(names).slice(0, 300)}…`);
  for (const n of [spoof, long]) {
    const c = await f.s.request('tools/call', { name: `up__${n}`, arguments: {} });
    assert.equal(c.status, 200, c.body);
    const text = c.messages.find((x) => x.result)?.result?.content?.[0]?.text;
    assert.equal(text, `called ${n}`, `the call by the listed name: ${c.body.slice(0, 300)}`);
  }
});

test('a long prompt name is listed whole under its own connector, and prompts/get reaches it by that name', async () => {
  gw ??= await startGateway();
  const spoof = `other__${'a'.repeat(394 - 7)}\u00e9tail`;
  const got = [];
  const url = await startBareUpstream((req, res, m) => {
    const h = { 'content-type': 'application/json', 'mcp-session-id': 'bare-1' };
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(202, h).end(); return; }
    let result;
    if (m.method === 'initialize') result = { protocolVersion: m.params.protocolVersion, capabilities: { prompts: {}, tools: {} }, serverInfo: { name: 'bare', version: '1' } };
    else if (m.method === 'prompts/list') result = { prompts: [{ name: spoof }, { name: 'short' }] };
    else if (m.method === 'tools/list') result = { tools: [] };
    else if (m.method === 'prompts/get') { got.push(m.params?.name); result = { messages: [] }; }
    res.writeHead(200, h).end(JSON.stringify(result ? { jsonrpc: '2.0', id: m.id, result } : { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'no' } }));
  });
  const t = await setupTenant(gw, { id: 'names-prompts', users: [ALICE] });
  assert.equal((await t.putConnector('up', { url, auth: { type: 'none' } })).status, 201);
  const s = await rawSession(`${gw.url}/t/names-prompts/mcp`, (await t.mintToken(ALICE)).token);
  const r = await s.request('prompts/list', {});
  assert.equal(r.status, 200, r.body);
  const names = r.messages.flatMap((x) => x?.result?.prompts ?? []).map((x) => x.name);
  assert.deepEqual(names, [`up__${spoof}`, 'up__short'], `the client got: ${JSON.stringify(names).slice(0, 300)}…`);
  const g = await s.request('prompts/get', { name: `up__${spoof}` });
  assert.equal(g.status, 200, g.body);
  assert.deepEqual(got, [spoof], 'the upstream was asked for its own name');
});

// A glob costs up to its length times the name's, and a name came from an
// employee's call (up to mcp_max_body) or an upstream's list: one tenant
// admin's glob against a 4 MB name held the loop every tenant shares for
// seconds. A name over POL_TOOL_NAME_MAX (1024 bytes) is not judged: it is
// blocked, whatever the rules allow, on both endpoints.
test('a tool name over 1024 bytes is blocked whatever the policy allows: hidden from lists, its calls refused', async () => {
  const ok = 'k'.repeat(1024);
  const over = 'o'.repeat(1025);
  const policy = { version: 1, default: 'allow', rules: [{ groups: ['*'], connector: '*', allow: ['*', '*kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkz'] }] };
  const f = await fixture('names-cap', [ok, over, 'short'], policy);
  const direct = await rawSession(f.t.mcpUrl('up'), (await f.t.mintToken(ALICE)).token);
  for (const [where, s, prefix] of [['aggregated', f.s, 'up__'], ['connector', direct, '']]) {
    const r = await s.request('tools/list', {});
    assert.equal(r.status, 200, r.body);
    const names = r.messages.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);
    assert.deepEqual(names.map((n) => n.length), [prefix.length + 1024, prefix.length + 5], `${where}: the client got names of these lengths`);
    const c = await s.request('tools/call', { name: `${prefix}${over}`, arguments: {} });
    assert.equal(c.status, 200, c.body);
    assert.equal(c.messages.find((x) => x.error)?.error?.code, -32003, `${where}: ${c.body.slice(0, 200)}`);
    const fine = await s.request('tools/call', { name: `${prefix}${ok}`, arguments: {} });
    assert.equal(fine.messages.find((x) => x.result)?.result?.content?.[0]?.text, `called ${ok}`, `${where}: ${fine.body.slice(0, 200)}`);
  }
  assert.equal(f.up.calls(over).length, 0, 'the call of the long name never reached the upstream');
});
