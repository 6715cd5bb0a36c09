// Review (rvI): member names a case-insensitive reader takes for another.
//
// JSON-RPC and MCP names are case-sensitive, and the gateway reads them so.
// Go's encoding/json does not: it matches "Name" or "NAME" to the field
// tagged "name", and "argumentſ" to "arguments" (it folds ſ, U+017F, to s
// and K, U+212A, to k), the last such member winning. MCP servers built on it
// (mark3labs/mcp-go, the official go-sdk before v1.3.1: CVE-2026-27896)
// would run {"name":"echo","Name":"slow"} as slow while the gateway decided
// echo, run a message whose only method member is "Method" (the gateway
// reads a response), or take "Arguments" the approval never hashed. The
// gateway forwards the bytes it checked, so in the message and in its
// params it refuses two members equal under that folding, and a member
// that folds to a name the gateway reads without being it — on both
// endpoints, alone or in a batch, whichever reading (scan or parse) takes
// the body. Arguments are the tool's own: their keys are not judged.
// Method VALUES too (policy review): the gateway compares methods exactly
// and forwarded any other one without a decision, so "Tools/Call" of a
// blocked tool reached an upstream that matches methods ignoring case (a
// hand-written server may; Go's strings.EqualFold folds ſ and K as well).
// A method that is an MCP method in another letter case is refused, -32600,
// on both endpoints, alone or in a batch; other methods still pass.
// Upstream: lib/ctl-upstream.mjs (records every body it receives).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, sleep } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

let gw, up, t, token;
before(async () => {
  gw = await startGateway();
  up = await startCtlUpstream({ name: 'cc' });
  t = await setupTenant(gw, {
    users: ['alice@acme.com'],
    policy: { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'cc', allow: ['echo'], block: ['slow'] }] },
  });
  const put = await t.putConnector('cc', { url: up.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  token = m.token;
});
after(async () => { await gw?.stop(); });

const endpoints = () => [
  { what: 'connector endpoint', url: t.mcpUrl('cc'), p: '' },
  { what: 'aggregated endpoint', url: `${gw.url}/t/acme/mcp`, p: 'cc__' },
];

/** Bodies (text: escapes and key order as written) that must be refused. */
const smuggled = (p) => [
  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"${p}echo","Name":"${p}slow","arguments":{}}}`,
  `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"${p}echo","NAME":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":3,"method":"ping","Method":"tools/call","params":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":4,"Method":"tools/call","Params":{"Name":"${p}slow"},"result":{}}`,
  `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"${p}echo","arguments":{"message":"a"},"argumentſ":{"message":"b"}}}`,
  `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"${p}echo","argument\\u017f":{"message":"b"}}}`,
  `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"${p}echo","Arguments":{"message":"b"}}}`,
  `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"${p}echo"},"paramſ":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":9,"method":"tools/list","METHOD":"tools/call","params":{"name":"${p}slow"}}`,
  // Go 1.21 upper-cases member names to match them: ı (U+0131) is I there
  `{"jsonrpc":"2.0","ıd":10,"method":"tools/call","params":{"name":"${p}echo","arguments":{}}}`,
  `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"${p}echo","arguments":{}},"\u0131d":12}`,
];

async function post(s, body, what) {
  const n = up.requests().length;
  const r = await s.post(body);
  await sleep(100); // anything forwarded has been recorded by now
  const sent = up.requests().slice(n).filter((e) => e.method === 'POST');
  return { r, sent, what };
}

test('case-variant member names are refused on both endpoints; nothing is forwarded', async () => {
  for (const ep of endpoints()) {
    const s = await rawSession(ep.url, token);
    for (const body of smuggled(ep.p)) {
      const { r, sent } = await post(s, body);
      assert.equal(r.status, 400, `${ep.what} ${body}: expected 400, got ${r.status} ${r.body}`);
      assert.equal(r.json?.error?.code, -32600, `${ep.what} ${body}: ${r.body}`);
      assert.equal(sent.length, 0, `${ep.what} ${body}: nothing forwarded, the upstream got ${sent.map((e) => e.body).join(' | ')}`);
    }
  }
});

test('inside a batch (2025-03-26) too', async () => {
  for (const ep of endpoints()) {
    const s = await rawSession(ep.url, token, { protocolVersion: '2025-03-26' });
    for (const body of smuggled(ep.p)) {
      const batch = `[{"jsonrpc":"2.0","id":90,"method":"ping"},${body}]`;
      const { r, sent } = await post(s, batch);
      assert.equal(r.status, 400, `${ep.what} batch ${batch}: expected 400, got ${r.status} ${r.body}`);
      assert.equal(sent.length, 0, `${ep.what} batch ${batch}: nothing forwarded, the upstream got ${sent.map((e) => e.body).join(' | ')}`);
    }
  }
});

test('camelCase names of MCP params and case-variant keys inside arguments still pass', async () => {
  for (const ep of endpoints()) {
    const s = await rawSession(ep.url, token); // initialize: protocolVersion, clientInfo
    const body = `{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"${ep.p}echo","arguments":{"message":"low","Message":"up"},"_meta":{"progressToken":"p1"}}}`;
    const { r, sent } = await post(s, body);
    assert.equal(r.status, 200, `${ep.what}: ${r.status} ${r.body}`);
    const m = r.json ?? r.messages.find((x) => x.id === 20);
    assert.match(JSON.stringify(m?.result), /cc:echo low/, `${ep.what}: ${r.body}`);
    assert.equal(sent.filter((e) => e.json?.method === 'tools/call').length, 1, `${ep.what}: forwarded once`);
    const c = await post(s, '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope","reason":"x"}}');
    assert.equal(c.r.status, 202, `${ep.what} notifications/cancelled: ${c.r.status} ${c.r.body}`);
  }
});

/** Bodies whose method is an MCP method in another letter case (p: the tool prefix). */
const miscased = (p) => [
  `{"jsonrpc":"2.0","id":31,"method":"Tools/Call","params":{"name":"${p}slow","arguments":{"ms":1}}}`,
  `{"jsonrpc":"2.0","id":32,"method":"TOOLS/CALL","params":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":33,"method":"tools/cALL","params":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":34,"method":"toolſ/call","params":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":35,"method":"Tools\\/Call","params":{"name":"${p}slow"}}`,
  `{"jsonrpc":"2.0","id":36,"method":"Tools/List"}`,
  `{"jsonrpc":"2.0","id":37,"method":"Prompts/Get","params":{"name":"${p}x"}}`,
  `{"jsonrpc":"2.0","id":38,"method":"Resources/Read","params":{"uri":"cc://r/0"}}`,
  `{"jsonrpc":"2.0","id":39,"method":"Tasks/get","params":{"taskId":"t"}}`,
  '{"jsonrpc":"2.0","method":"Notifications/Cancelled","params":{"requestId":"nope"}}',
];

/** What reached the upstream since n, once a call that is forwarded came back (no waiting on a clock):
 * the marker call, and the upstream session the aggregated endpoint opens for it, left out. */
async function sentSince(s, n, p) {
  const r = await s.post(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"${p}echo","arguments":{"message":"marker"}}}`);
  assert.equal(r.status, 200, `the marker call: ${r.status} ${r.body}`);
  const opening = new Set(['initialize', 'notifications/initialized']);
  return up.requests().slice(n).filter((e) => e.method === 'POST' && !/"marker"/.test(e.body) && !opening.has(e.json?.method));
}

test('a method that is an MCP method in another letter case is refused on both endpoints; nothing is forwarded', async () => {
  for (const ep of endpoints()) {
    const s = await rawSession(ep.url, token);
    const n = up.requests().length;
    for (const body of miscased(ep.p)) {
      const r = await s.post(body);
      assert.equal(r.status, 400, `${ep.what} ${body}: expected 400, got ${r.status} ${r.body}`);
      assert.equal(r.json?.error?.code, -32600, `${ep.what} ${body}: ${r.body}`);
      assert.match(r.json.error.message, /letter case/, `${ep.what} ${body}: ${r.body}`);
    }
    const sent = await sentSince(s, n, ep.p);
    assert.equal(sent.length, 0, `${ep.what}: nothing forwarded, the upstream got ${sent.map((e) => e.body).join(' | ')}`);
  }
});

test('a miscased method inside a batch (2025-03-26) refuses the batch', async () => {
  for (const ep of endpoints()) {
    const s = await rawSession(ep.url, token, { protocolVersion: '2025-03-26' });
    const n = up.requests().length;
    for (const body of miscased(ep.p)) {
      const batch = `[{"jsonrpc":"2.0","id":90,"method":"ping"},${body}]`;
      const r = await s.post(batch);
      assert.equal(r.status, 400, `${ep.what} batch ${batch}: expected 400, got ${r.status} ${r.body}`);
      assert.equal(r.json?.error?.code, -32600, `${ep.what} batch ${batch}: ${r.body}`);
    }
    const sent = await sentSince(s, n, ep.p);
    assert.equal(sent.length, 0, `${ep.what} batches: nothing forwarded, the upstream got ${sent.map((e) => e.body).join(' | ')}`);
  }
});

test('a method that is no MCP method passes through the connector endpoint whatever its case', async () => {
  const s = await rawSession(t.mcpUrl('cc'), token);
  const n = up.requests().length;
  const r = await s.post('{"jsonrpc":"2.0","id":41,"method":"Vendor/DoThing","params":{}}');
  assert.equal(r.status, 200, `${r.status} ${r.body}`);
  assert.match(JSON.stringify(r.json ?? r.messages), /no method Vendor\/DoThing/, r.body);
  assert.equal(up.requests().slice(n).filter((e) => e.json?.method === 'Vendor/DoThing').length, 1);
});
