// Tool lists are filtered on their bytes (gateway/mcp/tool_list.c): on the
// connector endpoint each SSE event's data is rewritten and the event
// written again from its lines, and the aggregated tools/list finds the
// upstream's reply in a JSON body or among SSE events by a scan. The
// differential fuzzer holds the byte filter to the parse on one message;
// this holds the whole path — the upstream's framing of its answer (line
// ends, a byte order mark, data over many lines, comments and fields
// between them, a field without a colon, every byte its own chunk, other
// events around the reply) — to what the official SDK client reads from
// the gateway: exactly the tools policy shows, an approval tool with its
// note, nothing hidden anywhere in the bytes.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, connectClient, rawSession } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';
const NOTE = "[requires approval: your organisation's policy must approve each call] ";
const TOOLS = [
  { name: 'echo', description: 'Echo "it" ]} \\ é', inputSchema: { type: 'object', properties: { m: { type: 'string', description: 'a secret-free "m"' } } } },
  { name: 'hidden', description: 'not for you', inputSchema: { type: 'object' } },
  { name: 'merge', description: 'Merges', inputSchema: { type: 'object' } },
  'not a tool',
  { description: 'no name' },
];
const BOM = '\uFEFF';

/* Each framing: (the reply's JSON text, pretty-printed text, the request) → the upstream's answer. */
const sse = (...evs) => ({ ct: 'text/event-stream', chunks: [evs.join('')] });
const note = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'hi' } });
const FRAMINGS = [
  ['JSON, compact', (c) => ({ ct: 'application/json', chunks: [c] })],
  ['JSON, pretty with CRLF', (c, p) => ({ ct: 'application/json', chunks: [p.replace(/\n/g, '\r\n')] })],
  ['SSE, one data line', (c) => sse(`event: message\ndata: ${c}\n\n`)],
  ['SSE, data over many lines, CRLF, an id and a retry', (c, p) => sse(`id: e-1\r\nretry: 500\r\nevent: message\r\n${p.split('\n').map((l) => `data: ${l}`).join('\r\n')}\r\n\r\n`)],
  ['SSE, lone CR line ends', (c, p) => sse(`event: message\r${p.split('\n').map((l) => `data:${l}`).join('\r')}\r\r: end\n\n`)],
  ['SSE, a byte order mark first', (c) => sse(`${BOM}event: message\ndata: ${c}\n\n`)],
  ['SSE, comments, a field without a colon and odd fields between data lines', (c, p) => {
    const lines = p.split('\n');
    return sse(`: hello\n${lines.map((l, i) => `data: ${l}\n${i === 1 ? 'data\n: c\nfoo: bar\n' : ''}`).join('')}\n`);
  }],
  ['SSE, other events around the reply', (c) => sse(`data: ${note}\n\n`, `: ping\n\n`, `event: message\ndata: ${c}\n\n`, `data: ${note}\n\n`)],
  ['SSE, every byte its own chunk, CRLF', (c) => ({ ct: 'text/event-stream', chunks: [...Buffer.from(`event: message\r\ndata: ${c}\r\n\r\n`)].map((b) => Buffer.from([b])) })],
  ['SSE, split inside the blank line and inside a CRLF', (c) => ({ ct: 'text/event-stream', chunks: [`data: ${c}\r`, '\n\r', '\n'] })],
];

let gw, t, token, framing;
const servers = [];

before(async () => {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (x) => chunks.push(x));
    req.on('end', () => {
      if (req.method !== 'POST') { res.writeHead(405).end(); return; }
      let m;
      try { m = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { m = undefined; }
      if (!m || m.id === undefined) { res.writeHead(202, { 'mcp-session-id': 'u1' }).end(); return; }
      let a;
      if (m.method === 'tools/list') {
        const reply = { jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } };
        a = framing(JSON.stringify(reply), JSON.stringify(reply, null, 2), m);
      } else {
        const result = m.method === 'initialize'
          ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'up', version: '1' } }
          : {};
        a = { ct: 'application/json', chunks: [JSON.stringify({ jsonrpc: '2.0', id: m.id, result })] };
      }
      res.writeHead(200, { 'content-type': a.ct, 'mcp-session-id': 'u1' });
      let i = 0;
      const next = () => {
        if (i === a.chunks.length) { res.end(); return; }
        res.write(a.chunks[i++]);
        setImmediate(next);
      };
      next();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  gw = await startGateway();
  t = await setupTenant(gw, {
    users: [ALICE],
    policy: { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'up', allow: ['echo'], approve: ['merge'] }] },
  });
  assert.equal((await t.putConnector('up', { url: `http://127.0.0.1:${server.address().port}/mcp`, auth: { type: 'none' } })).status, 201);
  token = (await t.mintToken(ALICE)).token;
});

after(async () => {
  await gw?.stop();
  for (const s of servers) await new Promise((r) => s.close(() => r()));
});

for (const [what, fn] of FRAMINGS) {
  for (const [where, path, prefix] of [['connector', '/t/acme/mcp/up', ''], ['aggregated', '/t/acme/mcp', 'up__']]) {
    test(`${what}: the ${where} endpoint's client sees exactly the tools policy shows`, async () => {
      framing = fn;
      const url = `${gw.url}${path}`;
      // what the SDK client reads
      const c = await connectClient(url, token);
      try {
        const r = await c.client.listTools();
        assert.deepEqual(r.tools.map((x) => x.name), [`${prefix}echo`, `${prefix}merge`], JSON.stringify(r.tools));
        assert.equal(r.tools[0].description, TOOLS[0].description, 'echo kept as it was');
        assert.deepEqual(r.tools[0].inputSchema, TOOLS[0].inputSchema);
        assert.equal(r.tools[1].description, `${NOTE}Merges`, 'the approval note before the description');
      } finally {
        await c.close();
      }
      // and nothing of the hidden tools in the bytes the gateway sent
      const s = await rawSession(url, token);
      const raw = await s.request('tools/list', {});
      assert.equal(raw.status, 200, raw.body);
      for (const w of ['hidden', 'not for you', 'not a tool', 'no name']) assert.ok(!raw.body.includes(w), `"${w}" reached the client: ${raw.body}`);
    });
  }
}
