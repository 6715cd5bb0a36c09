// Review (rvP): the aggregated endpoint keeps the client's initialize
// capabilities and clientInfo in the session record (at most 1 KiB of
// JSON; larger ones are kept as {}) and replays them when it opens an
// upstream session. For a record without them, the defaults it replayed
// instead were created and then referenced once more (json_pack's "O"),
// so both leaked at every upstream session opened: any employee could grow
// the gateway's memory by initializing with a large clientInfo and
// touching each connector, session after session. Under the sanitizer
// build the gateway's exit reports the leak (lib/gateway.mjs fails the
// file); on any build the upstream must get the defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, startBareUpstream, mcpPost, initializeBody } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';

test('a client whose initialize params are too large to keep: its upstreams get the defaults, nothing leaks', async () => {
  const gw = await startGateway();
  const inits = [];
  const up = await startBareUpstream((req, res, m) => {
    const sid = `up-${inits.length}`;
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': sid }).end(); return; }
    if (m.method === 'initialize') inits.push(m.params);
    const result = m.method === 'initialize'
      ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'up', version: '1' } }
      : m.method === 'tools/list' ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } : { content: [{ type: 'text', text: 'ok' }] };
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
  });
  const t = await setupTenant(gw, { users: [ALICE] });
  assert.equal((await t.putConnector('up', { url: up, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const url = `${gw.url}/t/acme/mcp`;
  for (let i = 0; i < 3; i++) {
    const init = await mcpPost(url, initializeBody(1, { capabilities: { elicitation: {} }, clientInfo: { name: 'x'.repeat(1500), version: '1' } }), { token: tok });
    assert.equal(init.status, 200, init.body);
    const sid = init.headers['mcp-session-id'];
    const n = inits.length;
    const r = await mcpPost(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'up__echo', arguments: {} } }, { token: tok, sessionId: sid, protocolVersion: '2025-11-25' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.messages.find((x) => x.id === 2)?.result?.content?.[0]?.text, 'ok', r.body);
    assert.equal(inits.length, n + 1, 'one upstream session opened for the client session');
    assert.deepEqual(inits.at(-1).capabilities, {}, `the default capabilities: ${JSON.stringify(inits.at(-1))}`);
    assert.equal(inits.at(-1).clientInfo?.name, 'mcpgate', `the default clientInfo: ${JSON.stringify(inits.at(-1))}`);
  }
  await gw.stop();
});
