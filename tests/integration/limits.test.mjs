// Every cap and timeout of the HTTP front door, with small values from flags.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, rawHttp, request, connect, sleep, waitFor } from './lib/gateway.mjs';
import { operatorToken } from './lib/admin.mjs';

let gw;
before(async () => {
  gw = await startGateway({
    args: [
      '--max-header-bytes', '1024',
      '--max-body-bytes', '100',
      '--max-uri-bytes', '256',
      '--header-timeout-ms', '400',
      '--body-timeout-ms', '400',
      '--idle-timeout-ms', '300',
    ],
  });
});

async function assertAlive(port = gw.port) {
  const r = await request(port, { path: '/healthz' });
  assert.equal(r.status, 200, 'server still answers /healthz on a new connection');
}

function assertErrorResponse(r, status) {
  assert.ok(r.responses.length >= 1, `a response was sent; got ${JSON.stringify(r.data.slice(0, 300))}`);
  const res = r.responses[0];
  assert.equal(res.status, status, `got ${JSON.stringify(r.data.slice(0, 300))}`);
  assert.match(res.headers['content-type'] || '', /^application\/json/, `JSON error body; got ${JSON.stringify(res.raw.slice(0, 300))}`);
  const j = JSON.parse(res.body);
  assert.equal(typeof j.error, 'string');
  assert.equal(typeof j.message, 'string');
  return res;
}

test('--max-header-bytes 1024: 2 KiB of headers → 431 and close', async () => {
  let req = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';
  for (let i = 0; i < 32; i++) req += `X-Pad-${String(i).padStart(2, '0')}: ${'a'.repeat(54)}\r\n`;
  req += '\r\n';
  assert.ok(req.length > 2048);
  const r = await rawHttp(gw.port, req);
  assertErrorResponse(r, 431);
  assert.equal(r.closed, true, 'closed after 431');
  await assertAlive();
});

test('headers just under the cap are accepted', async () => {
  const req = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'b'.repeat(600)}\r\n\r\n`;
  const r = await rawHttp(gw.port, req, { responses: 1 });
  assert.equal(r.responses[0]?.status, 200, r.data.slice(0, 200));
});

test('--max-body-bytes 100: Content-Length 101 → 413 without the body, then close', async () => {
  const r = await rawHttp(gw.port, 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n');
  assertErrorResponse(r, 413);
  assert.equal(r.closed, true);
  assert.ok(r.elapsedMs < 1500, `413 sent promptly (${r.elapsedMs} ms), not after a body timeout`);
  await assertAlive();
});

test('--max-body-bytes 100: Content-Length 100 is within the cap', async () => {
  const r = await rawHttp(gw.port, `POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n${'x'.repeat(100)}`,
    { responses: 1 });
  assert.equal(r.responses[0]?.status, 405, r.data.slice(0, 200));
});

test('--max-body-bytes 100: chunked body growing past 100 → 413 and close', async () => {
  const chunk = `40\r\n${'y'.repeat(64)}\r\n`;
  const r = await rawHttp(gw.port, [
    'POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
    chunk, 20, chunk, 20, chunk, 20, '0\r\n\r\n',
  ]);
  assertErrorResponse(r, 413);
  assert.equal(r.closed, true);
  await assertAlive();
});

test('Expect: 100-continue with a too-large Content-Length → 413 and no 100', async () => {
  const r = await rawHttp(gw.port,
    'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n');
  assert.ok(!/^HTTP\/1\.1 100/.test(r.data), 'no 100 Continue');
  assertErrorResponse(r, 413);
  assert.equal(r.closed, true);
});

test('--max-uri-bytes 256: longer request target → 414', async () => {
  const r = await rawHttp(gw.port, `GET /healthz?${'q'.repeat(400)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  assertErrorResponse(r, 414);
  await assertAlive();
});

test('--header-timeout-ms 400: incomplete headers then silence → 408 and close', async () => {
  const r = await rawHttp(gw.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', { timeoutMs: 4000 });
  assertErrorResponse(r, 408);
  assert.equal(r.closed, true, 'closed after 408');
  assert.ok(r.elapsedMs >= 300 && r.elapsedMs < 2500, `closed after ${r.elapsedMs} ms`);
});

test('--header-timeout-ms 400: a byte every 100 ms never finishing headers → 408 (counts from the first byte)', async () => {
  const text = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'z'.repeat(200);
  const items = [];
  for (const ch of text) { items.push(ch, 100); }
  const r = await rawHttp(gw.port, items, { timeoutMs: 6000 });
  assertErrorResponse(r, 408);
  assert.equal(r.closed, true);
  assert.ok(r.elapsedMs < 2500, `closed after ${r.elapsedMs} ms despite the trickle`);
});

test('--body-timeout-ms 400: half a body then silence → 408 and close', async () => {
  const r = await rawHttp(gw.port, 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345',
    { timeoutMs: 4000 });
  assertErrorResponse(r, 408);
  assert.equal(r.closed, true);
  assert.ok(r.elapsedMs < 2500, `closed after ${r.elapsedMs} ms`);
});

test('--idle-timeout-ms 300: idle keep-alive connection is closed without bytes', async () => {
  const c = await connect(gw.port);
  try {
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [res] = await c.responses(1);
    assert.equal(res.status, 200);
    const lenAfterResponse = c.buffer.length;
    const t = Date.now();
    assert.ok(await c.waitClose(3000), 'server closed the idle connection');
    const waited = Date.now() - t;
    assert.ok(waited >= 150 && waited < 2500, `closed after ${waited} ms idle`);
    assert.equal(c.buffer.length, lenAfterResponse, 'no bytes sent on idle close (no 408)');
  } finally { c.destroy(); }
});

test('--max-connections 2: a third connection gets 503 and is closed; the first two still work', async () => {
  const g2 = await startGateway({ args: ['--max-connections', '2', '--idle-timeout-ms', '10000'] });
  const a = await connect(g2.port);
  const b = await connect(g2.port);
  try {
    // make sure both are accepted and counted before the third arrives
    await a.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await b.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await a.responses(1))[0].status, 200);
    assert.equal((await b.responses(1))[0].status, 200);

    const c = await connect(g2.port);
    // a server may answer on accept; only send a request if it has not
    if (!(await c.waitData(300))) await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [res] = await c.responses(1);
    assert.equal(res.status, 503);
    assert.ok(await c.waitClose(2000), 'third connection closed');

    await a.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await b.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await a.responses(2))[1].status, 200);
    assert.ok([200, 503].includes((await b.responses(2))[1].status));
    assert.equal(a.closed || b.closed, false);

    // once one closes, a new connection is admitted again
    a.destroy();
    await sleep(200);
    const r = await rawHttp(g2.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(r.responses[0]?.status, 200, r.data.slice(0, 200));
  } finally { a.destroy(); b.destroy(); }
  assert.deepEqual(await g2.stop(), { code: 0, signal: null });
});

test('--connections-per-address 2: a third connection from one address gets 503 and is closed, and counts once the first goes; a trusted proxy is not held to it', async () => {
  const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  const g2 = await startGateway({ args: ['--connections-per-address', '2', '--max-connections', '50', '--idle-timeout-ms', '10000'] });
  const a = await connect(g2.port);
  const b = await connect(g2.port);
  try {
    for (const x of [a, b]) {
      await x.write(HEALTH);
      assert.equal((await x.responses(1))[0].status, 200);
    }
    const c = await connect(g2.port);
    if (!(await c.waitData(300))) await c.write(HEALTH);
    const [res] = await c.responses(1);
    assert.equal(res.status, 503);
    assert.match(res.body, /too many connections from this address/);
    assert.ok(await c.waitClose(2000), 'third connection closed');
    await g2.waitForLog((e) => /connections_per_address reached for 127\.0\.0\.1/.test(e.msg ?? ''), 5000);
    // a flood of refused connections is not a flood of log lines: one a
    // second at most, each saying how many went unsaid
    for (let i = 0; i < 20; i++) {
      const r = await rawHttp(g2.port, HEALTH, { responses: 1 });
      assert.equal(r.responses[0]?.status, 503);
    }
    const said = g2.logs().filter((e) => /connections_per_address reached/.test(e.msg ?? ''));
    assert.ok(said.length >= 1 && said.length < 21, `${said.length} lines for 21 refusals`);
    assert.match(said[0].msg, /0 more refused since the last such line/);
    // the two admitted ones still work
    await a.write(HEALTH);
    assert.equal((await a.responses(2))[1].status, 200);
    const m = await request(g2.port, { path: '/metrics', headers: { authorization: `Bearer ${operatorToken(g2.dataDir)}` } });
    // (the metrics request itself was a third connection: refused, or the count is 1 or more)
    if (m.status === 200) assert.match(m.body, /^mcpgate_connections_address_limited_total [1-9]/m);
    // once one goes, the address may open another
    a.destroy();
    await waitFor(async () => (await rawHttp(g2.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).responses[0]?.status === 200,
      { timeoutMs: 5000, what: 'a connection admitted again' });
  } finally { a.destroy(); b.destroy(); }
  assert.deepEqual(await g2.stop(), { code: 0, signal: null });
  // the same from a trusted proxy's address: its clients share it, not counted
  const g3 = await startGateway({ args: ['--connections-per-address', '1', '--trusted-proxies', '127.0.0.1', '--idle-timeout-ms', '10000'] });
  const held = [await connect(g3.port), await connect(g3.port), await connect(g3.port)];
  try {
    for (const x of held) {
      await x.write(HEALTH);
      assert.equal((await x.responses(1))[0].status, 200);
    }
  } finally { for (const x of held) x.destroy(); }
  assert.deepEqual(await g3.stop(), { code: 0, signal: null });
});

test('server survived everything; clean stop with exit 0', async () => {
  await assertAlive();
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});
