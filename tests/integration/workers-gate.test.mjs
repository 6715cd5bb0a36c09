// workers = N (issue 15): replies held at a loop's gate wait side by side
// (workers-gate-delete.test.mjs: an aggregated DELETE across loops). See
// workers.test.mjs for the setting.
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops: a second plain run would repeat it)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, runGateway, makeTempDir, request, scrapeMetrics, metricValue, waitFor, connect } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startRecorder, startBareUpstream, toolText } from './lib/mcp.mjs';
import { ALICE, BOB, everything, fixture, accessIndex, accessLine, connOnLoop, openStreams } from './lib/workers.mjs';

test('replies queued behind a slow loop wait together, not one timeout after another', async () => {
  // each reply's wait starts when it reaches its loop, not when the ones
  // ahead of it let it through: six deactivations served by loop 0 while
  // loop 1 is slow (12 s) and the timeout 2.5 s all leave before loop 1
  // catches up (one after another they would take 15 s); the margin (9.5 s
  // for the six to arrive: 4.5 s was not enough under ASan with the whole
  // suite running) holds on a loaded two-core machine
  const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((u) => `${u}@acme.com`);
  await everything();
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '2500'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '12000' } });
  const t = await setupTenant(gw, { users });
  const f = { gw, t, url: `${gw.url}/t/acme/mcp` };
  const streams = [];
  for (const u of users) {
    const tok = (await t.mintToken(u)).token;
    for (const st of await openStreams(f, tok, 2)) streams.push(st);
  }
  // six keep-alive connections that loop 0 accepted
  const conns = [];
  for (let i = 0; i < 6; i++) conns.push(await connOnLoop(gw, 0));
  assert.equal(conns.length, 6, 'six connections on loop 0');
  await Promise.all(conns.map((c, i) => {
    const body = JSON.stringify({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] });
    return c.write(`PATCH /t/acme/scim/v2/Users/${t.users[users[i]].id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.scim.token}\r\n` +
      `Content-Type: application/scim+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }));
  const ids = [];
  for (const c of conns) {
    const rs = await c.responses(2, 10000);
    assert.equal(rs[1].status, 200, rs[1].body?.toString());
    ids.push(rs[1].headers['x-request-id']);
    c.destroy();
  }
  await waitFor(() => streams.every((st) => st.isEnded), { timeoutMs: 16000, what: 'every stream to end' });
  await waitFor(() => [...ids, ...streams.map((st) => st.requestId)].every((id) => accessIndex(gw, id) >= 0), { what: 'the access lines' });
  const slow = streams.map((st) => accessLine(gw, st.requestId)).filter((e) => e.loop === 1);
  assert.ok(slow.length > 0, 'some streams were on loop 1');
  const firstSlowCut = Math.min(...slow.map((e) => accessIndex(gw, e.request_id)));
  for (const id of ids)
    assert.ok(accessIndex(gw, id) < firstSlowCut, 'every reply left before loop 1 caught up: they waited side by side');
  assert.ok(metricValue(await scrapeMetrics(gw), 'mcpgate_revocation_fanout_timeouts_total') >= 1, 'they went out on the timeout');
  await gw.stop();
});
