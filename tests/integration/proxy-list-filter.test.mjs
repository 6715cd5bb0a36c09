// The single-connector endpoint filters tool lists by policy (a tool the
// user's groups do not allow never reaches the client). Review of issue 13:
// the filter ran only on replies whose id was json-equal to the id of a
// tools/list request in the same POST, but the MCP SDK's client matches a
// response to its request by Number(response.id) — "5" and 5.0 answer
// request 5 — and by id alone, whichever HTTP response (or GET stream)
// carried it. An upstream could so hand the client an unfiltered tool
// list. Every relayed response with a result.tools list is filtered now.
//
// The upstream is a few lines of node whose tools/list and tools/call
// answers the test chooses.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession, parseSse, openStream, mcpHeaders } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';
const TOOLS = ['echo', 'secret'].map((name) => ({ name, inputSchema: { type: 'object' } }));

/** An upstream: answer(m) → {sse?: string[] | json: object} for tools/list and tools/call; GET streams kept. */
async function upstream(answer) {
  const gets = new Set();
  const server = http.createServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
      gets.add(res);
      res.on('close', () => gets.delete(res));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let m;
      try { m = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { m = undefined; }
      const sid = 'up-1';
      if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(202, { 'mcp-session-id': sid }).end(); return; }
      const a = m.method === 'initialize'
        ? { json: { jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'up', version: '1' } } } }
        : answer(m);
      if (a.sseRaw) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid });
        res.end(a.sseRaw);
      } else if (a.sse) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid });
        res.end(a.sse.map((x) => `event: message\ndata: ${x}\n\n`).join(''));
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(a.raw ?? JSON.stringify(a.json));
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  after(() => new Promise((r) => { for (const g of gets) g.destroy(); server.close(() => r()); }));
  return { url: `http://127.0.0.1:${server.address().port}/mcp`, push: (text) => { for (const g of gets) g.write(text); }, gets };
}

async function fixture(answer, { gw: shared, policy, id = 'acme' } = {}) {
  const gw = shared ?? await startGateway();
  const up = await upstream(answer);
  const t = await setupTenant(gw, {
    id,
    users: [ALICE],
    policy: policy ?? { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'up', allow: ['echo'] }] },
  });
  assert.equal((await t.putConnector('up', { url: up.url, auth: { type: 'none' } })).status, 201);
  const m = await t.mintToken(ALICE);
  const s = await rawSession(t.mcpUrl('up'), m.token);
  return { gw, up, t, s, token: m.token };
}

/** The messages of a reply, read as the SDK does. */
function messages(r) {
  if (/event-stream/.test(r.headers['content-type'] ?? '')) {
    return parseSse(r.body).events.map((e) => { try { return JSON.parse(e.data); } catch { return undefined; } });
  }
  return [].concat(r.json ?? []);
}
const toolNames = (msgs) => msgs.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);

for (const [what, idOf, raw] of [
  ['its id as a string', (id) => String(id)],
  ['its id as a real number', (id) => id, true],
]) {
  test(`a tools/list reply with ${what} is filtered like any other`, async () => {
    const f = await fixture((m) => {
      const body = JSON.stringify({ jsonrpc: '2.0', id: idOf(m.id), result: { tools: TOOLS } });
      return { raw: raw ? body.replace(`"id":${m.id}`, `"id":${m.id}.0`) : body };
    });
    const r = await f.s.request('tools/list', {});
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(toolNames(messages(r)), ['echo'], `the client got: ${r.body}`);
    await f.gw.stop();
  });
}

test('a tool list slipped into a tools/call answer (the SDK matches responses by id alone) is filtered', async () => {
  const f = await fixture((m) => (m.method === 'tools/call'
    ? { sse: [JSON.stringify({ jsonrpc: '2.0', id: 777, result: { tools: TOOLS } }), JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'ok' }] } })] }
    : { json: { jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } } }));
  const r = await f.s.request('tools/call', { name: 'echo', arguments: {} });
  assert.equal(r.status, 200, r.body);
  const msgs = messages(r);
  assert.ok(msgs.some((x) => x?.result?.content?.[0]?.text === 'ok'), `the call's own answer: ${r.body}`);
  assert.ok(!toolNames(msgs).includes('secret'), `a hidden tool reached the client: ${r.body}`);
  await f.gw.stop();
});

test('a tool list sent on the GET stream is filtered', async () => {
  const f = await fixture((m) => ({ json: { jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } } }));
  const st = await openStream(f.t.mcpUrl('up'), { headers: { ...mcpHeaders({ token: f.token, sessionId: f.s.sessionId, protocolVersion: f.s.protocolVersion }), accept: 'text/event-stream' } });
  assert.equal(st.status, 200);
  await waitFor(() => f.up.gets.size === 1, { what: 'the upstream GET stream' });
  f.up.push(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 5, result: { tools: TOOLS } })}\n\n`);
  f.up.push(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'after' } })}\n\n`);
  await st.waitFor((m) => m.params?.data === 'after');
  const names = st.messages.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);
  assert.deepEqual(names, ['echo'], `the stream carried: ${JSON.stringify(st.messages)}`);
  st.close();
  await f.gw.stop();
});

test('aggregated endpoint: a tool list slipped into a relayed tools/call answer loses the tools policy hides', async () => {
  const f = await fixture((m) => (m.method === 'tools/call'
    ? { sse: [JSON.stringify({ jsonrpc: '2.0', id: 3, result: { tools: TOOLS } }), JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'ok' }] } })] }
    : { json: { jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } } }));
  const s = await rawSession(`${f.gw.url}/t/acme/mcp`, f.token);
  const r = await s.request('tools/call', { name: 'up__echo', arguments: {} });
  assert.equal(r.status, 200, r.body);
  const msgs = messages(r);
  assert.ok(msgs.some((x) => x?.result?.content?.[0]?.text === 'ok'), `the call's own answer: ${r.body}`);
  assert.ok(!toolNames(msgs).includes('secret'), `a hidden tool reached the client: ${r.body}`);
  await f.gw.stop();
});

// The relay skips parsing SSE events that cannot hold a "tools" key (a
// speed-up for progress-heavy streams); a key spelled with \u escapes
// must still be seen and filtered (JSON.parse reads it as "tools").
test('a tool list whose "tools" key is spelled with \\u escapes, on an SSE reply, is filtered too', async () => {
  const f = await fixture((m) => (m.method === 'tools/call'
    ? { sse: [
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } }),
      JSON.stringify({ jsonrpc: '2.0', id: 777, result: { tools: TOOLS } }).replace('"tools"', '"\\u0074ools"'),
      JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'ok' }] } }),
    ] }
    : { json: { jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } } }));
  const r = await f.s.request('tools/call', { name: 'echo', arguments: {} });
  assert.equal(r.status, 200, r.body);
  const msgs = messages(r);
  assert.ok(msgs.some((x) => x?.result?.content?.[0]?.text === 'ok'), `the call's own answer: ${r.body}`);
  assert.ok(msgs.some((x) => x?.method === 'notifications/progress'), `the progress event was relayed: ${r.body}`);
  assert.ok(!toolNames(msgs).includes('secret'), `a hidden tool reached the client: ${r.body}`);
  await f.gw.stop();
});

// Tool lists are filtered on their bytes where a scan can judge them as
// jansson would (gateway/mcp/tool_list.c), and parsed otherwise. Whatever
// the upstream's spelling — spacing and line breaks, an SSE reply whose
// data spans lines, an escaped name, a duplicate key, an approval tool —
// the client sees exactly the tools policy lets it see, on both endpoints.
test('tool lists in every spelling are filtered alike on both endpoints, by bytes or by parse', async () => {
  const NOTE = '[requires approval: ';
  const tools = [
    { name: 'echo', description: 'Echo "it" ]}', inputSchema: { type: 'object', properties: { m: { type: 'string', description: 'x' } } } },
    { name: 'secret', inputSchema: { type: 'object' } },
    { name: 'merge', description: 'Merges', inputSchema: { type: 'object' } },
    { inputSchema: { type: 'object' } },
    'not a tool',
  ];
  const pretty = (id) => JSON.stringify({ jsonrpc: '2.0', id, result: { tools } }, null, 2);
  const shapes = [
    // [what, answer(m), tools the connector endpoint shows, tools the aggregated one shows]
    ['compact JSON', (m) => ({ json: { jsonrpc: '2.0', id: m.id, result: { tools } } }), ['echo', 'merge']],
    ['pretty-printed JSON', (m) => ({ raw: pretty(m.id) }), ['echo', 'merge']],
    ['SSE, data over many lines', (m) => ({ sseRaw: `event: message\n${pretty(m.id).split('\n').map((l) => `data: ${l}`).join('\n')}\n\n` }), ['echo', 'merge']],
    ['SSE, CRLF line ends', (m) => ({ sseRaw: `event: message\r\n${pretty(m.id).split('\n').map((l) => `data: ${l}`).join('\r\n')}\r\n\r\n` }), ['echo', 'merge']],
    ['an escaped name (parsed)', (m) => ({ raw: JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools } }).replace('"name":"secret"', '"name":"s\\u0065cret"') }), ['echo', 'merge']],
    ['a duplicate name key (parsed; the last one counts)', (m) => ({ raw: JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools } }).replace('"name":"echo"', '"name":"echo","name":"secret"') }), ['merge'], []],
  ];
  const gw = await startGateway();
  const policy = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'up', allow: ['echo'], approve: ['merge'] }] };
  let i = 0;
  for (const [what, answer, direct, agg = direct] of shapes) {
    const id = `shape-${i++}`; // a tenant per shape
    const f = await fixture((m) => (m.method === 'tools/list' ? answer(m) : { json: { jsonrpc: '2.0', id: m.id, result: {} } }), { gw, policy, id });
    for (const [where, url, want] of [['connector', f.t.mcpUrl('up'), direct], ['aggregated', `${gw.url}/t/${id}/mcp`, agg.map((n) => `up__${n}`)]]) {
      const s = await rawSession(url, f.token);
      const r = await s.request('tools/list', {});
      assert.equal(r.status, 200, `${what}, ${where}: ${r.body}`);
      const listed = messages(r).flatMap((x) => x?.result?.tools ?? []);
      assert.deepEqual(listed.map((x) => x.name), want, `${what}, ${where}: the client got ${r.body}`);
      for (const x of listed) {
        if (x.name.endsWith('merge')) assert.ok(x.description.startsWith(NOTE), `${what}, ${where}: the approval note: ${x.description}`);
        if (x.name.endsWith('echo')) assert.equal(x.description, 'Echo "it" ]}', `${what}, ${where}: echo's description kept`);
      }
    }
  }
  await gw.stop();
});
