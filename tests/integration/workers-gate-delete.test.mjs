// workers = N (issue 15): an aggregated DELETE ends the session's stream on
// the other loop before its 204 (workers-gate.test.mjs: replies held at a
// loop's gate; apart so that each file keeps within the 30 s a file has:
// the first takes 12 s by design and ~22 s on a loaded CI machine).
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops: a second plain run would repeat it)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, runGateway, makeTempDir, request, scrapeMetrics, metricValue, waitFor, connect } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startRecorder, startBareUpstream, toolText } from './lib/mcp.mjs';
import { ALICE, BOB, everything, fixture, accessIndex, accessLine, connOnLoop, openStreams } from './lib/workers.mjs';

test('a DELETE of an aggregated session ends its GET stream on the other loop before the 204', async () => {
  const f = await fixture({ env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1000' }, args: ['--revocation-fanout-timeout-ms', '20000'] });
  for (const [streamLoop, delLoop] of [[0, 1], [1, 0]]) {
    const s = await rawSession(f.url, f.alice);
    const head = (method) => `${method} /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${f.alice}\r\n` +
      `Accept: text/event-stream\r\nMcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n\r\n`;
    const sc = await connOnLoop(f.gw, streamLoop);
    const from = sc.buffer.length;
    await sc.write(head('GET'));
    await sc._until(() => /\r\n\r\n/.test(sc.buffer.subarray(from).toString('latin1')), 5000);
    const streamHead = sc.buffer.subarray(from).toString('latin1');
    assert.match(streamHead, /^HTTP\/1\.1 200/, streamHead.slice(0, 200));
    const streamId = /x-request-id: *(\w+)/i.exec(streamHead)[1];
    const dc = await connOnLoop(f.gw, delLoop);
    await dc.write(head('DELETE'));
    const rs = await dc.responses(2, 10000);
    assert.equal(rs[1].status, 204, `DELETE: ${rs[1].status}`);
    const delId = rs[1].headers['x-request-id'];
    await waitFor(() => accessIndex(f.gw, streamId) >= 0 && accessIndex(f.gw, delId) >= 0, { what: 'the access lines' });
    assert.equal(accessLine(f.gw, streamId).loop, streamLoop);
    assert.equal(accessLine(f.gw, delId).loop, delLoop);
    assert.ok(accessIndex(f.gw, streamId) < accessIndex(f.gw, delId),
      `the stream (loop ${streamLoop}) ended before the 204 (loop ${delLoop})`);
    sc.destroy();
    dc.destroy();
  }
  await f.gw.stop();
});


test('a DELETE whose 204 waits for the other loop is answered 204, not ended by the purge tick that finds its session gone', async () => {
  // found in CI (approvals.test, purge every 100 ms): the session purge's
  // walk of live exchanges met the DELETE's own, whose session its job had
  // just deleted, and ended it with 403 while its 204 waited at the gate
  const f = await fixture({
    env: { MCPGATE_TEST_FANOUT_DELAY_MS: '600' },
    args: ['--revocation-fanout-timeout-ms', '20000', '--session-purge-interval-ms', '50'],
  });
  for (const url of [f.url, `${f.url}/ev`]) {
    const s = await rawSession(url, f.alice);
    const r = await request(f.gw.port, {
      method: 'DELETE', path: new URL(url).pathname, timeoutMs: 10000,
      headers: { authorization: `Bearer ${f.alice}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion },
    });
    assert.equal(r.status, 204, `DELETE ${url}: ${r.status} ${r.body}`);
  }
  await f.gw.stop();
});
