// workers = N (issue 15): several event loops on one port, and the
// guarantees of one loop held on all of them — against the real binary with
// `--workers 2`, server-everything as the upstream, Okta's SCIM request
// shapes. Which loop served a request is in its access log line ("loop");
// connections spread over the loops by SO_REUSEPORT, so each test opens
// enough of them (each on its own connection) for both loops to hold some.
//
// MCPGATE_TEST_FANOUT_DELAY_MS (a test hook) makes every loop apply fan-out
// messages from another loop that much later — a loop too busy to answer —
// so a reply that did not wait for every loop would overtake the streams it
// ended; the log's order shows which came first.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, runGateway, makeTempDir, request, scrapeMetrics, metricValue, waitFor, connect } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startEverything, startRecorder, toolText } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';

let upstream;
after(async () => { await upstream?.stop(); });

async function fixture({ env = {}, args = [] } = {}) {
  upstream ??= await startEverything();
  const gw = await startGateway({ args: ['--workers', '2', ...args], env });
  const t = await setupTenant(gw, { users: [ALICE, BOB] });
  const c = await t.putConnector('ev', { url: upstream.url, auth: { type: 'none' } });
  assert.equal(c.status, 201, `PUT connector: ${c.status} ${c.body}`);
  const alice = (await t.mintToken(ALICE)).token;
  const bob = (await t.mintToken(BOB)).token;
  return { gw, t, alice, bob, url: `${gw.url}/t/acme/mcp` };
}

const accessIndex = (gw, id) => gw.logs().findIndex((e) => e.msg === 'access' && e.request_id === id);
const accessLine = (gw, id) => gw.logs().find((e) => e.msg === 'access' && e.request_id === id);

/** A keep-alive connection that loop `loop` accepted (asked with /healthz). */
async function connOnLoop(gw, loop) {
  for (let i = 0; i < 60; i++) {
    const c = await connect(gw.port);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [h] = await c.responses(1);
    const line = await waitFor(() => accessLine(gw, h.headers['x-request-id']), { what: 'the healthz access line' });
    if (line.loop === loop) return c;
    c.destroy();
  }
  throw new Error(`no connection landed on loop ${loop}`);
}

/** n aggregated GET streams of token, one per session, each on its own connection. */
async function openStreams(f, token, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const s = await rawSession(f.url, token);
    const st = await openStream(f.url, { headers: { ...mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
    assert.equal(st.status, 200, `GET stream: ${st.status}`);
    st.requestId = st.headers['x-request-id'];
    out.push(st);
  }
  return out;
}

test('one session\'s requests are served by both loops; /metrics sums every loop', async () => {
  const f = await fixture();
  const s = await rawSession(f.url, f.alice);
  const ids = [];
  for (let i = 0; i < 16; i++) {
    const r = await s.request('tools/call', { name: 'ev__echo', arguments: { message: `m${i}` } });
    assert.equal(r.status, 200, `call ${i}: ${r.status} ${r.body}`);
    assert.match(toolText(r.messages.find((m) => m.result)?.result), new RegExp(`m${i}`), `call ${i} answered: ${r.body}`);
    ids.push(r.headers['x-request-id']);
  }
  await waitFor(() => ids.every((id) => accessLine(f.gw, id)), { what: 'the calls\' access lines' });
  const loops = new Set(ids.map((id) => accessLine(f.gw, id).loop));
  assert.deepEqual([...loops].sort(), [0, 1], 'the session created on one loop was used on both');
  const m = await scrapeMetrics(f.gw);
  assert.equal(metricValue(m, 'mcpgate_loops'), 2);
  assert.ok(metricValue(m, 'mcpgate_mcp_requests_total', { tenant: 'acme', connector: 'ev' }) >= 16,
    'relayed calls of both loops counted in one series');
  const series = m.filter((x) => x.name === 'mcpgate_mcp_requests_total' && x.labels.connector === 'ev');
  assert.equal(series.length, 1, `one series per (tenant, connector), not one per loop: ${JSON.stringify(series)}`);
  await f.gw.stop();
});

test('a deactivation over SCIM ends the user\'s streams on every loop before the 200, even when a loop is slow', async () => {
  const f = await fixture({ env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' }, args: ['--revocation-fanout-timeout-ms', '20000'] });
  const mine = await openStreams(f, f.alice, 12);
  const [bobs] = await openStreams(f, f.bob, 1);
  assert.ok(mine.every((st) => !st.isEnded), 'her streams are open before the deactivation');
  const r = await f.t.scim.patchOps(`/Users/${f.t.users[ALICE].id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(r.status, 200, r.body);
  // its access line follows the reply on the wire: wait for it to be read
  const scimAt = await waitFor(() => { const i = accessIndex(f.gw, r.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: 'the SCIM reply\'s access line' });
  await waitFor(() => mine.every((st) => st.isEnded), { timeoutMs: 5000, what: 'alice\'s streams to end' });
  await waitFor(() => mine.every((st) => accessIndex(f.gw, st.requestId) >= 0), { what: 'the streams\' access lines' });
  const loops = new Set(mine.map((st) => accessLine(f.gw, st.requestId).loop));
  assert.deepEqual([...loops].sort(), [0, 1], 'alice\'s streams were on both loops');
  for (const st of mine)
    assert.ok(accessIndex(f.gw, st.requestId) < scimAt,
      `stream ${st.requestId} (loop ${accessLine(f.gw, st.requestId).loop}) ended before the SCIM reply was sent`);
  assert.equal(bobs.isEnded, false, 'bob\'s stream stays open');
  const m = await scrapeMetrics(f.gw);
  assert.equal(metricValue(m, 'mcpgate_revocation_fanout_timeouts_total'), 0);
  bobs.close();
  await f.gw.stop();
});

test('list_changed from a policy change reaches the streams on every loop', async () => {
  const f = await fixture();
  const streams = [...await openStreams(f, f.alice, 6), ...await openStreams(f, f.bob, 6)];
  await f.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'ev', allow: ['echo'] }] });
  await Promise.all(streams.map((st) => st.waitFor((m) => m.method === 'notifications/tools/list_changed', 5000)));
  for (const st of streams) st.close();
  await waitFor(() => streams.every((st) => accessLine(f.gw, st.requestId)), { what: 'the streams\' access lines' });
  assert.deepEqual([...new Set(streams.map((st) => accessLine(f.gw, st.requestId).loop))].sort(), [0, 1],
    'the streams were on both loops');
  await f.gw.stop();
});

test('past revocation_fanout_timeout_ms the reply goes anyway: logged, counted, and the store refuses the user', async () => {
  const f = await fixture({ env: { MCPGATE_TEST_FANOUT_DELAY_MS: '3000' }, args: ['--revocation-fanout-timeout-ms', '200'] });
  const mine = await openStreams(f, f.alice, 12);
  const s = await rawSession(f.url, f.alice);
  const before = metricValue(await scrapeMetrics(f.gw), 'mcpgate_revocation_fanout_timeouts_total');
  const r = await f.t.scim.patchOps(`/Users/${f.t.users[ALICE].id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(r.status, 200, r.body);
  const m = await scrapeMetrics(f.gw);
  assert.ok(metricValue(m, 'mcpgate_revocation_fanout_timeouts_total') > before, 'the timeout is counted');
  // (the warning is rate-limited per loop: the setup's own writes may have said it first)
  const warn = await f.gw.waitForLog((e) => e.level === 'warn' && /revocation_fanout_timeout_ms/.test(e.msg), 5000, 0);
  assert.doesNotMatch(JSON.stringify(warn), /mcg_|Bearer/, 'no token in the warning');
  // fail closed: whatever a slow loop still holds, the store refuses her now
  const again = await s.request('tools/call', { name: 'ev__echo', arguments: { message: 'x' } });
  assert.equal(again.status, 401, `a request after the deactivation: ${again.status} ${again.body}`);
  await waitFor(() => mine.every((st) => st.isEnded), { timeoutMs: 10000, what: 'the slow loop to end the rest of her streams' });
  await f.gw.stop();
});

test('replies queued behind a slow loop wait together, not one timeout after another', async () => {
  // each reply's wait starts when it reaches its loop, not when the ones
  // ahead of it let it through: six deactivations served by loop 0 while
  // loop 1 is slow (3 s) and the timeout 0.8 s all leave before loop 1
  // catches up (one after another they would take 4.8 s)
  const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((u) => `${u}@acme.com`);
  upstream ??= await startEverything();
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '800'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '3000' } });
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
  await waitFor(() => streams.every((st) => st.isEnded), { timeoutMs: 10000, what: 'every stream to end' });
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

test('notifications/cancelled reaches the upstream running the call, whichever loop runs it', async () => {
  const f = await fixture();
  const rec = await startRecorder(upstream.url);
  const c = await f.t.putConnector('slow', { url: rec.url, auth: { type: 'none' } });
  assert.equal(c.status, 201, c.body);
  const s = await rawSession(f.url, f.alice);
  const hdr = mcpHeaders({ token: f.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  // ten calls in flight, each on its own connection; each cancelled from another one
  const calls = await Promise.all([...Array(10).keys()].map(async (i) => {
    const id = 500 + i;
    const st = await openStream(f.url, { method: 'POST', headers: hdr, body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'slow__trigger-long-running-operation', arguments: { duration: 30, steps: 300 }, _meta: { progressToken: `p${id}` } } } });
    assert.equal(st.status, 200, `call ${id}: ${st.status}`);
    await st.waitFor((m) => m.method === 'notifications/progress', 5000);
    return { id, st, callId: st.headers['x-request-id'] };
  }));
  for (const k of calls) {
    const r = await s.notify('notifications/cancelled', { requestId: k.id, reason: 'user pressed Esc' });
    assert.equal(r.status, 202, `cancel ${k.id}: ${r.status} ${r.body}`);
    k.cancelId = r.headers['x-request-id'];
  }
  await waitFor(() => calls.every((k) => rec.requests().some((e) => e.json?.method === 'notifications/cancelled' && e.json?.params?.requestId === k.id)),
    { timeoutMs: 5000, what: 'every cancel at the upstream running its call' });
  for (const k of calls) k.st.close();
  await waitFor(() => calls.every((k) => accessLine(f.gw, k.callId) && accessLine(f.gw, k.cancelId)), { what: 'access lines' });
  const crossed = calls.filter((k) => accessLine(f.gw, k.callId).loop !== accessLine(f.gw, k.cancelId).loop);
  assert.ok(crossed.length > 0, 'some cancels were served by another loop than their call');
  await f.gw.stop();
});

test('max_connections counts the connections of every loop', async () => {
  const f = await fixture({ args: ['--max-connections', '6'] });
  const conns = [];
  for (let i = 0; i < 16; i++) conns.push(await connect(f.gw.port));
  // every connection asks for /healthz; the ones over the cap get 503 and are closed
  const statuses = await Promise.all(conns.map(async (c) => {
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [res] = await c.responses(1, 3000);
    return res.status;
  }));
  const ok = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 503).length;
  // a cap per loop would admit up to six on each (twelve of the sixteen,
  // spread by SO_REUSEPORT); one for the process admits at most six (fewer
  // while a fixture connection is still closing)
  assert.equal(ok + refused, 16, JSON.stringify(statuses));
  assert.ok(ok >= 4 && ok <= 6, `admitted across both loops: ${JSON.stringify(statuses)}`);
  for (const c of conns) c.destroy();
  await f.gw.stop();
});

test('a second serve on the same port is refused, and the first keeps serving', async () => {
  const f = await fixture();
  const other = await makeTempDir();
  for (const workers of ['1', '2']) {
    const r = await runGateway(['serve', '--listen', `127.0.0.1:${f.gw.port}`, '--data', other, '--workers', workers], { timeoutMs: 8000 });
    assert.notEqual(r.code, 0, `second serve (workers ${workers}) exited ${r.code}`);
    assert.equal(r.timedOut, false, 'it did not start serving');
    assert.match(r.stderr, /another process listens there/, r.stderr.slice(-500));
  }
  for (let i = 0; i < 6; i++) {
    const h = await request(f.gw.port, { path: '/healthz' });
    assert.equal(h.status, 200, 'the first gateway answers every connection');
  }
  await f.gw.stop();
});
