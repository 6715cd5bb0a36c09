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
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, runGateway, makeTempDir, request, scrapeMetrics, metricValue, waitFor, connect } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startRecorder, startBareUpstream, toolText } from './lib/mcp.mjs';
import { ALICE, BOB, everything, fixture, accessIndex, accessLine, connOnLoop, openStreams } from './lib/workers.mjs';

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

test('the first call on a new upstream session waits until the session\'s streams have their upstream GET open', async () => {
  // an upstream whose GET stream takes 400 ms to open and whose tool says
  // whether it was open when called: a server→client request it would send
  // before then would be lost (Streamable HTTP: no stream, no delivery)
  let open = 0;
  const url = await startBareUpstream((req, res, m) => {
    const json = (o, h = {}) => { res.writeHead(200, { 'content-type': 'application/json', ...h }); res.end(JSON.stringify(o)); };
    if (req.method === 'GET') {
      setTimeout(() => { res.writeHead(200, { 'content-type': 'text/event-stream' }); res.write(': open\n\n'); open++; }, 400);
      return;
    }
    if (req.method === 'DELETE' || !m?.id) { res.writeHead(202); res.end(); return; }
    if (m.method === 'initialize') return json({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: { listChanged: true } }, serverInfo: { name: 'slow-get', version: '1' } } }, { 'mcp-session-id': `up-${Math.random().toString(36).slice(2)}` });
    if (m.method === 'tools/list') return json({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'probe', inputSchema: { type: 'object' } }] } });
    return json({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: `streams open: ${open}` }] } });
  });
  for (const workers of ['1', '2']) {
    const gw = await startGateway({ args: ['--workers', workers] });
    const t = await setupTenant(gw, { users: [ALICE] });
    const c = await t.putConnector('slow', { url, auth: { type: 'none' } });
    assert.equal(c.status, 201, c.body);
    const tok = (await t.mintToken(ALICE)).token;
    const aggUrl = `${gw.url}/t/acme/mcp`;
    for (let i = 0; i < 4; i++) {
      const s = await rawSession(aggUrl, tok);
      const st = await openStream(aggUrl, { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
      assert.equal(st.status, 200);
      const before = open;
      const r = await s.request('tools/call', { name: 'slow__probe', arguments: {} });
      const text = toolText(r.messages.find((x) => x.result)?.result);
      assert.equal(text, `streams open: ${before + 1}`, `workers ${workers}, session ${i}: the call reached the upstream after the session's GET stream was open (${text})`);
      st.close();
    }
    await gw.stop();
  }
});

test('notifications/cancelled reaches the upstream running the call, whichever loop runs it', async () => {
  const f = await fixture();
  const rec = await startRecorder((await everything()).url);
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

test('workers and revocation_fanout_timeout_ms refuse values out of their bounds, naming the key', async () => {
  const dir = await makeTempDir();
  for (const [flag, v, key] of [['--workers', '257', 'workers'], ['--workers', '-1', 'workers'], ['--workers', 'two', 'workers'],
    ['--revocation-fanout-timeout-ms', '0', 'revocation_fanout_timeout_ms'], ['--revocation-fanout-timeout-ms', '60001', 'revocation_fanout_timeout_ms']]) {
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, flag, v], { timeoutMs: 8000 });
    assert.notEqual(r.code, 0, `${flag} ${v} refused`);
    assert.equal(r.timedOut, false, `${flag} ${v}: it did not start serving`);
    assert.match(r.stderr + r.stdout, new RegExp(key), `${flag} ${v}: the message names ${key}: ${(r.stderr + r.stdout).slice(-300)}`);
  }
});
