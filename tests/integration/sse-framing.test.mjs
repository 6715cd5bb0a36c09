// SSE framing the gateway must read as MCP clients do (review of issue 13's
// one SSE parser, gateway/mcp/sse.c). The SSE standard ends a line at CRLF,
// LF or a lone CR, and an event at an empty line; the official SDK's parser
// (and every browser) follows it. If the gateway splits events differently,
// an upstream can frame a message so that the gateway sees one unparseable
// event — and relays it unchanged — while the client sees a valid message:
// the tools/list filtering of the single-connector endpoint (and the id
// rewriting of the aggregated one) would fail open.
//
// The upstream here is a few lines of node: it answers initialize with JSON
// and tools/list over SSE with the list reply framed "\n\r\n" (LF, then an
// empty line ended by CRLF), with lone CRs, or after a byte order mark,
// followed by a notification.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession, parseSse, startBareUpstream } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';

/** An upstream whose tools/list answer uses the framing `frame(events)`. */
async function framingUpstream(frame) {
  return startBareUpstream((req, res, m) => {
    const sid = req.headers['mcp-session-id'] || 'up-1';
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(202, { 'mcp-session-id': sid }).end(); return; }
    if (m.method === 'initialize') {
      const b = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'framing', version: '1' } } });
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(b);
      return;
    }
    if (m.method === 'tools/list') {
      const list = { jsonrpc: '2.0', id: m.id, result: { tools: ['echo', 'secret'].map((name) => ({ name, inputSchema: { type: 'object' } })) } };
      const note = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' } };
      res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid });
      res.end(frame([JSON.stringify(list), JSON.stringify(note)]));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid })
      .end(JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'no' } }));
  });
}

const FRAMINGS = {
  'LF then an empty line ended by CRLF': ([a, b]) => `event: message\ndata: ${a}\n\r\nevent: message\ndata: ${b}\n\n`,
  'lone CR line ends': ([a, b]) => `event: message\rdata: ${a}\r\revent: message\rdata: ${b}\r\r`,
  'LF then a lone CR empty line': ([a, b]) => `data: ${a}\n\rdata: ${b}\n\n`,
  // a stream may open with a UTF-8 byte order mark, which clients drop
  'a byte order mark first': ([a, b]) => `\uFEFFdata: ${a}\n\ndata: ${b}\n\n`,
};

for (const [what, frame] of Object.entries(FRAMINGS)) {
  test(`tools/list over SSE framed with ${JSON.stringify(what)}: the client never sees a tool policy hides`, async () => {
    const gw = await startGateway();
    const url = await framingUpstream(frame);
    const t = await setupTenant(gw, {
      users: [ALICE],
      policy: { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'fr', allow: ['echo'] }] },
    });
    assert.equal((await t.putConnector('fr', { url, auth: { type: 'none' } })).status, 201);
    const m = await t.mintToken(ALICE);
    const s = await rawSession(t.mcpUrl('fr'), m.token);
    const r = await s.request('tools/list', {});
    assert.equal(r.status, 200, r.body);
    // read the reply the way the SDK does (its TextDecoder drops a leading
    // byte order mark; CRLF, LF and CR end lines)
    const msgs = parseSse(r.body.replace(/^\uFEFF/, '')).events.map((e) => { try { return JSON.parse(e.data); } catch { return undefined; } });
    const names = msgs.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);
    assert.ok(!names.includes('secret'), `a hidden tool reached the client: ${JSON.stringify(r.body)}`);
    assert.deepEqual(names, ['echo'], `the list reply reached the client, filtered: ${JSON.stringify(r.body)}`);
    await gw.stop();
  });
}
