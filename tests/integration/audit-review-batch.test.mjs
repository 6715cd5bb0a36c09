// Audit review: a JSON-RPC batch on a connector's endpoint (2025-03-26)
// is forwarded as one exchange. Each tools/call in it had its own record,
// but every record but the last was submitted as soon as the next call was
// decided — without the upstream's answer, so a call that went upstream
// read as one never made (no upstream_status, 0 bytes out).
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from './lib/gateway.mjs';
import { startProxyFixture, rawSession } from './lib/mcp.mjs';

let fx;
before(async () => {
  fx = await startProxyFixture();
  await fx.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'], block: ['get-sum'] }] });
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

const calls = async () => (await fx.t.admin('GET', '/audit?kind=call')).json.records;

test('batch on a connector endpoint: two allowed calls both recorded with the upstream outcome', async () => {
  const s = await rawSession(fx.url, fx.tokens.alice, { protocolVersion: '2025-03-26' });
  const r = await s.post([
    { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'first' } } },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'second' } } },
  ]);
  assert.equal(r.status, 200, r.body);
  await sleep(500);
  const recs = await calls();
  const first = recs.find((x) => x.arguments?.message === 'first');
  const second = recs.find((x) => x.arguments?.message === 'second');
  assert.ok(first && second, 'both recorded');
  assert.equal(second.upstream_status, 200);
  assert.equal(first.upstream_status, 200, 'the first call went upstream too: its record must say so');
});

test('batch on a connector endpoint refused for one blocked call: the allowed one is not recorded as made', async () => {
  const s = await rawSession(fx.url, fx.tokens.bob, { protocolVersion: '2025-03-26' });
  const r = await s.post([
    { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'innocent' } } },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } },
  ]);
  assert.equal(r.status, 200, r.body);
  assert.match(r.body, /blocked/);
  await sleep(500);
  const recs = (await calls()).filter((x) => x.user === fx.users.bob.id);
  const innocent = recs.find((x) => x.arguments?.message === 'innocent');
  const sum = recs.find((x) => x.tool === 'get-sum');
  assert.ok(innocent && sum, 'both recorded');
  assert.equal(sum.decision, 'block');
  assert.equal(innocent.upstream_status, undefined, 'the batch was refused: never sent upstream');
  assert.equal(sum.upstream_status, undefined);
});
