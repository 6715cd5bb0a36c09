// MCP proxy when the upstream misbehaves: it refuses the gateway's
// credential (401/403), is cut mid-stream, refuses connections, sends
// garbage, or goes silent. The client always gets a timely answer and the
// gateway stays up.
import { test, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { sleep, waitFor } from './lib/gateway.mjs';
import {
  startProxyFixture, connectClient, toolText, rawSession, openStream, mcpPost, mcpHeaders,
  initializeBody, assertRpcError, assertGatewayUp, show,
} from './lib/mcp.mjs';

let f;
before(async () => { f = await startProxyFixture({ connector: 'flaky' }); });
afterEach(async () => {
  if (f) { await f.rec.setMode('normal'); f.rec.killActive(); }
});

/** Resolves [result, ms]. */
async function timed(p) {
  const t0 = Date.now();
  const r = await p;
  return [r, Date.now() - t0];
}

async function freeClosedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

test('upstream 401/403 → JSON-RPC -32006 naming the connector, not an HTTP 401', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const c = await connectClient(f.url, f.tokens.bob);
  for (const mode of ['401', '403']) {
    await f.rec.setMode(mode);
    const r = await s.request('tools/list');
    assert.notEqual(r.status, 401, `upstream ${mode}: the client must not get HTTP 401 (it would start an OAuth flow at the gateway): ${show(r)}`);
    assert.notEqual(r.status, 403, `upstream ${mode}: not HTTP 403 either: ${show(r)}`);
    assert.equal(r.headers['www-authenticate'], undefined, `upstream ${mode}: the upstream's WWW-Authenticate is not relayed: ${r.headers['www-authenticate']}`);
    assertRpcError(r, { codes: [-32006], message: /flaky/, what: `tools/list with upstream ${mode}` });

    const ri = await mcpPost(f.url, initializeBody(), { token: f.tokens.alice });
    assert.notEqual(ri.status, 401, `initialize with upstream ${mode}: ${show(ri)}`);
    assert.equal(ri.headers['www-authenticate'], undefined, `initialize with upstream ${mode}: no WWW-Authenticate`);
    assertRpcError(ri, { codes: [-32006], message: /flaky/, what: `initialize with upstream ${mode}` });

    const e = await c.client.callTool({ name: 'echo', arguments: { message: 'x' } }, undefined, { timeout: 10000 }).then(
      (res) => assert.fail(`SDK call succeeded with upstream ${mode}: ${JSON.stringify(res)}`), (err) => err);
    assert.match(String(e.message), /flaky/, `SDK error names the connector: ${e.message}`);
    assert.equal(e.code, -32006, `SDK error code -32006 (the upstream refused the gateway's credential), not -32001: ${e.message}`);
    assert.notEqual(e.constructor?.name, 'UnauthorizedError', 'not an auth error at the gateway');
  }
  await f.rec.setMode('normal');
  const ok = await s.request('tools/list');
  assert.equal(ok.status, 200, `after the upstream recovers: ${show(ok)}`);
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'back' } })), 'Echo: back');
  await c.close();
  await assertGatewayUp(f.gw);
});

test('upstream cut mid-stream → the client\'s streams end promptly; the gateway stays up', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const g = await openStream(f.url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${f.tokens.alice}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion } });
  assert.equal(g.status, 200, `GET stream: ${g.status}`);
  const st = await openStream(f.url, { method: 'POST', headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion }),
    body: { jsonrpc: '2.0', id: 61, method: 'tools/call', params: { name: 'trigger-long-running-operation', arguments: { duration: 8, steps: 8 }, _meta: { progressToken: 'cut' } } } });
  assert.equal(st.status, 200, `POST tools/call: ${st.status} ${st.raw()}`);
  await st.waitFor((m) => m.method === 'notifications/progress', 5000);

  f.rec.killActive();
  const t0 = Date.now();
  const done = await Promise.race([
    (async () => {
      // either a JSON-RPC error for id 61 arrives, or the stream ends
      await Promise.race([st.ended, st.waitFor((m) => m.id === 61, 10000).catch(() => {})]);
      return true;
    })(),
    sleep(5000).then(() => false),
  ]);
  assert.ok(done, `the POST stream ended or carried an error within 5 s of the upstream being cut (messages: ${JSON.stringify(st.messages).slice(0, 400)})`);
  const final = st.messages.find((m) => m.id === 61);
  if (final) assert.ok(final.error, `no result for a call whose upstream was cut: ${JSON.stringify(final)}`);
  const gEnded = await Promise.race([g.ended.then(() => true), sleep(5000 - (Date.now() - t0)).then(() => false)]);
  assert.ok(gEnded, 'the GET stream ended within 5 s of the upstream being cut');
  st.close();

  await assertGatewayUp(f.gw);
  const r = await s.request('tools/list');
  assert.equal(r.status, 200, `the session works again after the cut: ${show(r)}`);
});

test('upstream refusing connections → a timely JSON-RPC error', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const c = await connectClient(f.url, f.tokens.bob, { reconnection: { initialReconnectionDelay: 100, maxReconnectionDelay: 100, reconnectionDelayGrowFactor: 1, maxRetries: 0 } });
  await f.rec.setMode('down');

  const [r, ms] = await timed(s.request('tools/list'));
  assert.ok(ms < 5000, `answered in ${ms} ms`);
  assert.ok(r.status !== 401 && r.status !== 404, `upstream down is not an auth or session problem: ${show(r)}`);
  assertRpcError(r, { what: 'tools/list with the upstream down' });

  const [ri, msi] = await timed(mcpPost(f.url, initializeBody(), { token: f.tokens.alice }));
  assert.ok(msi < 5000, `initialize answered in ${msi} ms`);
  assertRpcError(ri, { what: 'initialize with the upstream down' });

  const [e, mse] = await timed(c.client.callTool({ name: 'echo', arguments: { message: 'x' } }, undefined, { timeout: 10000 }).then(() => null, (err) => err));
  assert.ok(e, 'the SDK call fails');
  assert.ok(mse < 5000, `the SDK call failed in ${mse} ms (not by its own timeout): ${e.message}`);

  // a connector whose port never listened
  const port = await freeClosedPort();
  const p = await f.t.putConnector('nowhere', { url: `http://127.0.0.1:${port}/mcp`, description: 'n', auth: { type: 'none' } });
  assert.equal(p.status, 201, show(p));
  const [rn, msn] = await timed(mcpPost(f.t.mcpUrl('nowhere'), initializeBody(), { token: f.tokens.alice }));
  assert.ok(msn < 5000, `initialize on a dead upstream answered in ${msn} ms`);
  assertRpcError(rn, { what: 'initialize on a dead upstream' });

  await f.rec.setMode('normal');
  const ok = await s.request('tools/list');
  assert.equal(ok.status, 200, `the session works once the upstream is back: ${show(ok)}`);
  await c.close();
  await assertGatewayUp(f.gw);
});

test('upstream answering garbage → a timely JSON-RPC error', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  await f.rec.setMode('garbage');
  const [r, ms] = await timed(s.request('tools/list'));
  assert.ok(ms < 5000, `answered in ${ms} ms`);
  assertRpcError(r, { what: 'tools/list with a garbage upstream' });
  const [ri, msi] = await timed(mcpPost(f.url, initializeBody(), { token: f.tokens.alice }));
  assert.ok(msi < 5000, `initialize answered in ${msi} ms`);
  assertRpcError(ri, { what: 'initialize with a garbage upstream' });
  await f.rec.setMode('normal');
  await assertGatewayUp(f.gw);
  const ok = await s.request('tools/list');
  assert.equal(ok.status, 200, show(ok));
});

test('connector timeouts: a silent upstream hits first_byte_ms; a chatty long stream is not cut by idle_ms', async () => {
  const p = await f.t.putConnector('slow', { url: f.rec.url, description: 's', auth: { type: 'none' }, timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1500 } });
  assert.equal(p.status, 201, show(p));
  const url = f.t.mcpUrl('slow');
  const s = await rawSession(url, f.tokens.alice);

  // progress every second for 4 s: longer than idle_ms in total, never idle that long
  const [r, ms] = await timed(s.request('tools/call', { name: 'trigger-long-running-operation', arguments: { duration: 4, steps: 4 }, _meta: { progressToken: 'idle' } }));
  assert.equal(r.status, 200, show(r));
  const fin = r.messages.find((m) => m.result);
  assert.match(toolText(fin?.result) ?? '', /Long running operation completed/, `a 4 s call with progress every 1 s completes under idle_ms 1500 (${ms} ms): ${show(r)}`);

  await f.rec.setMode('hang');
  // given up by first_byte_ms (1 s), not by any later bound: the error is
  // that deadline's own (what the test waits on is the answer, not a clock)
  const rh = await s.request('tools/list');
  assertRpcError(rh, { what: 'tools/list with a silent upstream' });
  assert.match(show(rh), /did not answer in time \(first byte\)/, `a silent upstream is given up after first_byte_ms: ${show(rh)}`);
  await f.rec.setMode('normal');
  f.rec.killActive();
  await assertGatewayUp(f.gw);
});

test('a client that drops its GET stream before the answer: the exchange ends (no leak)', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const u = new URL(f.url);
  const isGetLine = (e) => e.msg === 'access' && e.method === 'GET' && e.path === u.pathname;
  for (const delayMs of [0, 2, 5, 20]) {
    const mark = await f.gw.settle();
    // only this attempt's GET counts: the recorder's log still held the
    // earlier tests' GET streams, which made a GET dropped before it was
    // even sent (a loaded machine) look forwarded (a CI run failed so)
    f.rec.clear();
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'GET', agent: false,
      headers: { accept: 'text/event-stream', authorization: `Bearer ${f.tokens.alice}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion } });
    req.on('error', () => {});
    req.end();
    await sleep(delayMs);
    req.destroy();
    // the gateway logs a request when its exchange ends; a GET nobody reads any more must end
    // (and close the upstream stream) promptly rather than live until shutdown
    const reached = await f.rec.waitRequest((e) => e.method === 'GET', 1000).then(() => true, () => false);
    if (!reached) continue; // dropped before the gateway forwarded anything: nothing to leak
    const line = await f.gw.waitForLog(isGetLine, 2000, mark).catch(() => null);
    assert.ok(line, `GET ${u.pathname} dropped by the client ${delayMs} ms after sending: the gateway's exchange ` +
      'must end within 2 s (no access-log line yet: the exchange and its upstream GET stream are still open)');
  }
  // a fresh GET stream on the same session works (no zombie stream left at the upstream). The
  // upstream learns of the last dropped stream's end through the recorder, a hop the gateway's
  // access line does not wait for, so its "only one stream" 409 may outlive that line briefly
  // (a CI run saw it): asked again for up to 3 s; a stream the gateway kept open never ends.
  let last = '';
  const g = await waitFor(async () => {
    const r = await openStream(f.url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${f.tokens.alice}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion } });
    if (r.status === 200) return r;
    await Promise.race([r.ended, sleep(500)]);
    last = `${r.status} ${r.raw()}`;
    r.close();
    return null;
  }, { timeoutMs: 3000, intervalMs: 100, what: 'a new GET stream after the dropped ones' }).catch((e) => assert.fail(`${e.message}: last answer ${last}`));
  g.close();
  await assertGatewayUp(f.gw);
});

test('after all of it the gateway still serves a full SDK session', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'alive' } })), 'Echo: alive');
  await c.close();
  await assertGatewayUp(f.gw);
});
