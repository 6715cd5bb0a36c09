// Issue 18, the per-connector cut on every loop: with two loops, one of
// them slow to apply fan-out messages (MCPGATE_TEST_FANOUT_DELAY_MS), the
// Group Push PATCH that takes connector a from alice gets its reply only
// after her /mcp/a streams on BOTH loops ended; her /mcp/b streams and
// bob's /mcp/a streams stay. See workers-revoke.test.mjs for the setting.
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops: a second plain run would repeat it)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { scrapeMetrics, metricValue, waitFor } from './lib/gateway.mjs';
import { rawSession } from './lib/mcp.mjs';
import { fixture, getStream, accessIndex } from './lib/offboard-connector.mjs';

const accessLine = (gw, id) => gw.logs().find((e) => e.msg === 'access' && e.request_id === id);

async function streams(url, token, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await getStream(url, token, await rawSession(url, token)));
  return out;
}

test('the PATCH that takes a from alice is answered after her /mcp/a streams on every loop ended, even with a slow loop', async () => {
  const f = await fixture({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' } });
  const mine = await streams(f.t.mcpUrl('a'), f.tokens.alice, 12);
  const [keptB] = await streams(f.t.mcpUrl('b'), f.tokens.alice, 1);
  const bobs = await streams(f.t.mcpUrl('a'), f.tokens.bob, 2);
  const r = await f.t.scim.patchOps(`/Groups/${f.g1.id}`, [{ op: 'remove', path: `members[value eq "${f.ids.alice}"]` }]);
  assert.ok(r.status === 200 || r.status === 204, `PATCH: ${r.status} ${r.body}`);
  const scimAt = await waitFor(() => { const i = accessIndex(f.gw, r.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'the SCIM reply\'s access line' });
  await waitFor(() => mine.every((st) => st.isEnded), { timeoutMs: 5000, what: 'alice\'s /mcp/a streams to end' });
  await waitFor(() => mine.every((st) => accessIndex(f.gw, st.requestId) >= 0), { what: 'the streams\' access lines' });
  const loops = new Set(mine.map((st) => accessLine(f.gw, st.requestId).loop));
  assert.deepEqual([...loops].sort(), [0, 1], 'her /mcp/a streams were on both loops');
  for (const st of mine)
    assert.ok(accessIndex(f.gw, st.requestId) < scimAt,
      `stream ${st.requestId} (loop ${accessLine(f.gw, st.requestId).loop}) ended before the SCIM reply was sent`);
  assert.equal(keptB.isEnded, false, 'her /mcp/b stream stays open');
  assert.ok(bobs.every((st) => !st.isEnded), 'bob\'s /mcp/a streams stay open');
  assert.equal(metricValue(await scrapeMetrics(f.gw), 'mcpgate_revocation_fanout_timeouts_total'), 0);
  for (const st of [keptB, ...bobs]) st.close();
  await f.gw.stop();
});
