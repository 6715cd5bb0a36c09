// What the gateway learns of an upstream's capabilities (at the PUT's probe
// and at every upstream initialize) is written into the connector record,
// which every request that routes to the connector, every aggregated
// initialize and every tools/list reads and parses. The upstream writes
// every byte of its initialize answer (up to the 16 MiB reply cap), so the
// record keeps only what the gateway acts on: which of tools, prompts,
// resources, completions and logging it announced, and their listChanged /
// subscribe flags — not a blob the upstream chose, and not a new record
// write whenever it varies something the gateway never reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, startBareUpstream, waitFor } from './lib/mcp.mjs';

test('an upstream\'s huge capabilities object is not stored in the connector record', async () => {
  const gw = await startGateway();
  const blob = 'x'.repeat(4 << 20);
  const up = await startBareUpstream((req, res, m) => {
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': 'big-1' }).end(); return; }
    const result = m.method === 'initialize'
      ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: { listChanged: true, junk: blob }, resources: { subscribe: true }, experimental: { blob } }, serverInfo: { name: 'big', version: '1' } }
      : { tools: [] };
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'big-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
  });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  assert.equal((await t.putConnector('big', { url: up, auth: { type: 'none' } })).status, 201);
  let last;
  const caps = await waitFor(async () => {
    last = await t.admin('GET', '/connectors/big');
    assert.equal(last.status, 200, last.body?.slice(0, 300));
    return last.json?.capabilities ?? false;
  }, { timeoutMs: 10000, intervalMs: 100, what: 'the probe to record capabilities' });
  assert.equal(caps.tools?.listChanged, true, 'the flags the gateway acts on are kept');
  assert.equal(caps.resources?.subscribe, true, 'the flags the gateway acts on are kept');
  assert.ok(last.body.length < 64 * 1024, `the connector record holds ${last.body.length} bytes of what the upstream announced`);
  await gw.stop();
});
