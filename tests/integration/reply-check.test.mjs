// An upstream's JSON reply is relayed byte for byte when it is valid JSON,
// and refused (the JSON-RPC error -32002 "sent an invalid response" for the
// request's id) when it is not — whether the gateway vouches for it with the validating scan
// (gateway/base/json_check.h: replies that cannot carry a tool list, on
// the connector endpoint) or by parsing it (replies with a "tools" key).
// The upstream here is a small MCP server whose tools/call answers are
// raw bytes the test chooses (nothing the SDKs could be made to send).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';

/* A minimal Streamable HTTP MCP server: initialize and notifications as
 * usual; tools/call answers with BODIES[arguments.case] (ID replaced by
 * the request's id) as application/json. */
const BODIES = {};
const servers = [];
after(() => { for (const s of servers) s.close(); });
async function startRawUpstream() {
  const srv = http.createServer((req, res) => {
    let b = '';
    req.on('data', (d) => { b += d; });
    req.on('end', () => {
      let m;
      try { m = JSON.parse(b); } catch { res.writeHead(400).end(); return; }
      if (m.id === undefined) { res.writeHead(202).end(); return; }
      let out;
      if (m.method === 'initialize') {
        out = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } } });
      } else if (m.method === 'tools/call') {
        out = Buffer.from(BODIES[m.params.arguments.case].replace('ID', JSON.stringify(m.id)), 'latin1');
      } else {
        out = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: {} });
      }
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'raw-1', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  servers.push(srv);
  return `http://127.0.0.1:${srv.address().port}/mcp`;
}

const deep = (n) => '['.repeat(n) + ']'.repeat(n);
Object.assign(BODIES, {
  // valid: odd spacing, key order, escapes, a big exponent within range,
  // the deepest nesting jansson takes — relayed unchanged
  odd: '{ "result" : {"content":[{"type":"text","text":"caf\\u00e9 \\ud83d\\ude00 \u00c3\u00a9"}],"x":[1.5e300,-0,9223372036854775807,' + deep(2045) + ']} ,"id":ID, "jsonrpc":"2.0"}\n',
  truncated: '{"jsonrpc":"2.0","id":ID,"result":{"content":[',
  badutf8: '{"jsonrpc":"2.0","id":ID,"result":{"text":"\u00ff\u00fe"}}',
  surrogate: '{"jsonrpc":"2.0","id":ID,"result":{"text":"\\ud800x"}}',
  nul: '{"jsonrpc":"2.0","id":ID,"result":{"text":"a\\u0000b"}}',
  toodeep: '{"jsonrpc":"2.0","id":ID,"result":{"x":' + deep(2047) + '}}',
  bigint: '{"jsonrpc":"2.0","id":ID,"result":{"n":9223372036854775808}}',
  overflow: '{"jsonrpc":"2.0","id":ID,"result":{"n":1e400}}',
  trailing: '{"jsonrpc":"2.0","id":ID,"result":{}} x',
  scalar: '"just a string"',
  // carries a "tools" key: the parse path, malformed too
  toolsbad: '{"jsonrpc":"2.0","id":ID,"result":{"tools":[}}',
});

let fx;
async function fixture() {
  if (fx) return fx;
  const gw = await startGateway();
  const url = await startRawUpstream();
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const r = await t.putConnector('raw', { url, auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  fx = { gw, t, s: await rawSession(t.mcpUrl('raw'), m.token) };
  return fx;
}

test('a valid JSON reply is relayed byte for byte', async () => {
  const { s } = await fixture();
  const r = await s.request('tools/call', { name: 'echo', arguments: { case: 'odd' } });
  assert.equal(r.status, 200, r.body);
  const id = JSON.parse(r.body).id;
  assert.equal(r.body, BODIES.odd.replace('ID', JSON.stringify(id)).replace('\u00c3\u00a9', '\u00e9'), 'unchanged bytes');
});

for (const c of ['truncated', 'badutf8', 'surrogate', 'nul', 'toodeep', 'bigint', 'overflow', 'trailing', 'scalar', 'toolsbad']) {
  test(`an invalid reply (${c}) is refused with a JSON-RPC error`, async () => {
    const { gw, s } = await fixture();
    const r = await s.request('tools/call', { name: 'echo', arguments: { case: c } });
    const m = r.messages?.[0];
    assert.equal(m?.error?.code, -32002, `${c}: ${r.status} ${r.body.slice(0, 200)}`);
    assert.match(m.error.message, /"raw" sent an invalid response/);
    const ok = await s.request('tools/call', { name: 'echo', arguments: { case: 'odd' } });
    assert.equal(ok.status, 200, 'the session still works');
    assert.ok(gw.proc.exitCode === null, 'the gateway is up');
  });
}
