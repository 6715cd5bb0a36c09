// workers = N (issue 15): replies held at a loop's gate wait side by side,
// and an aggregated DELETE ends the session's stream on the other loop
// before its 204. See workers.test.mjs for the setting.
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

