// The budget of buffered upstream replies (mcp_buffered_max; gateway/base/buf.h
// meters, gateway/mcp/mcp_loop.c gw__mcp_meter). Found by review: a JSON
// reply is buffered whole (it is checked before it is relayed), up to 16 MiB,
// and an upstream that stops one byte short of the end holds it for up to
// upstream_event_timeout_ms: a tenant admin's own connector took the
// process's RSS from 12 to 1,614 MiB with one employee's 100 calls. Now a
// reply's bytes past its first 64 KiB count against the tenant's share (a
// quarter of the budget, a sixteenth once half is used) and the process's; a
// reply that would pass them is not kept, and the call is answered at once.
// Upstream: lib/ctl-upstream.mjs (raw {stall}: a reply held one byte short).
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import net from 'node:net';
import { startGateway, waitFor, sleep, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const BUDGET = /could not hold: the gateway holds as many large replies as it allows right now/;
// a result of about n bytes: its buffer grows to 1 MiB for 600 KB, ~960 KiB charged
const big = (n, tag) => JSON.stringify({ content: [{ type: 'text', text: tag + 'x'.repeat(n) }] });

async function tenant(gw, id, user, up) {
  const t = await setupTenant(gw, { id, users: [user] });
  assert.equal((await t.putConnector('one', { url: up.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(user)).token;
  const s = await rawSession(`${gw.url}/t/${id}/mcp/one`, tok, { protocolVersion: '2025-03-26' });
  s.tok = tok;
  return s;
}

test('stalled large replies hold only their tenant\'s share of mcp_buffered_max; the next is answered at once; another tenant is served', async () => {
  const gw = await startGateway({ args: ['--mcp-buffered-max', '8M'] }); // a tenant: 2 MiB, 512 KiB once 4 MiB are used
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  try {
    const acme = await tenant(gw, 'acme', 'alice@acme.com', up);
    const globex = await tenant(gw, 'globex', 'carol@globex.com', up);
    // a large reply from a small request (its body would count too)
    const raw = (s, tag, stall) => s.request('tools/call', { name: 'raw', arguments: { result: big(0, tag + '@FILL@'), fill: 600000, stall } });

    // two stalled replies of ~600 KB: ~1.9 MiB of acme's 2 MiB
    const a1 = raw(acme, 'a1', true);
    const a2 = raw(acme, 'a2', true);
    await waitFor(() => up.stalledCount() === 2, { timeoutMs: 10000, what: 'two replies stalled' });
    // the gateway holds both (their bytes arrived): a third does not fit
    let third;
    await waitFor(async () => {
      third = await raw(acme, 'a3', false);
      return BUDGET.test(third.messages[0]?.error?.message ?? '');
      // (each try that fits carries a 600 KB reply: under ASan, beside the
      // CPU-heavy files a CI pass starts with, this once took over 10 s)
    }, { timeoutMs: 30000, intervalMs: 200, what: 'a third large reply refused for the budget' });
    assert.equal(third.status, 200, third.body.slice(0, 300));
    assert.equal(third.headers['retry-after'], '1');
    // a small reply is not counted
    const small = await acme.request('tools/call', { name: 'echo', arguments: { message: 'small' } });
    assert.match(JSON.stringify(small.messages[0]?.result), /one:echo small/);
    // another tenant's large reply is held and relayed
    const g = await raw(globex, 'g1', false);
    assert.ok(g.messages[0]?.result?.content?.[0]?.text?.startsWith('g1xxx'), g.body.slice(0, 300));

    // the stalled replies end: relayed whole, and their bytes go back
    up.releaseStalls();
    for (const [p, tag] of [[a1, 'a1'], [a2, 'a2']]) {
      const r = await p;
      assert.equal(r.messages[0]?.result?.content?.[0]?.text?.length, 600002, `${tag}: ${r.body.slice(0, 200)}`);
    }
    const again = await raw(acme, 'a4', false);
    assert.ok(again.messages[0]?.result?.content?.[0]?.text?.startsWith('a4xxx'), again.body.slice(0, 300));
  } finally {
    up.releaseStalls();
    await up.stop();
    await gw.stop();
  }
});

// Found by the review of this budget: a client that asks for large replies
// and never reads them moved their bytes from the metered buffers into its
// connection's write queue, where nothing counted them (20 such connections:
// RSS 12 → 179 MiB with mcpgate_mcp_buffered_bytes at 0). A write queue past
// its first 64 KiB now counts against the tenant's share too, and past it
// the client that does not read is cut.
test('clients that do not read their large replies hold only their tenant\'s share; the rest are cut', async () => {
  // a tenant: 24 MiB, room for one 12 MB reply while it arrives (its buffer
  // grows to 16 MiB) and then the ~8 MB the client's socket did not take
  const gw = await startGateway({ args: ['--mcp-buffered-max', '96M'] });
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  const socks = [];
  try {
    const acme = await tenant(gw, 'acme', 'alice@acme.com', up);
    const globex = await tenant(gw, 'globex', 'carol@globex.com', up);
    const u = new URL(`${gw.url}/t/acme/mcp/one`);
    const N = 8;
    // a 12 MB reply from a small request
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x'.repeat(1000), times: 12000 } } });
    for (let i = 0; i < N; i++) {
      const c = net.connect(Number(u.port), u.hostname);
      c.pause();
      await new Promise((r) => c.on('connect', r));
      c.write(`POST ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/json\r\n` +
        `accept: application/json, text/event-stream\r\nauthorization: Bearer ${acme.tok}\r\n` +
        `mcp-session-id: ${acme.sessionId}\r\nmcp-protocol-version: ${acme.protocolVersion}\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      socks.push(c);
      await sleep(300); // one at a time: each reply arrives whole, then waits for its client
    }
    const held = metricValue(await scrapeMetrics(gw), 'mcpgate_mcp_buffered_bytes');
    assert.ok(held > 0 && held <= 24 * 1024 * 1024, `buffered for clients that do not read: ${held}`);
    // another tenant's large reply is served meanwhile
    const g = await globex.request('tools/call', { name: 'echo', arguments: { message: 'y'.repeat(1000), times: 3000 } });
    assert.equal(g.messages[0]?.result?.content?.[0]?.text?.length, 3000000 + 'one:echo '.length, g.body.slice(0, 200));
    // what each slow client got once it reads: the whole reply for at most two of them
    const got = await Promise.all(socks.map((c) => new Promise((resolve) => {
      let n = 0;
      c.on('data', (d) => { n += d.length; });
      c.on('close', () => resolve(n));
      c.resume();
      setTimeout(() => { c.destroy(); }, 5000);
    })));
    const whole = got.filter((n) => n > 12000000).length;
    assert.ok(whole <= 2, `clients that got their whole 12 MB reply: ${whole} of ${N} (${got.join(', ')})`);
    await waitFor(async () => metricValue(await scrapeMetrics(gw), 'mcpgate_mcp_buffered_bytes') === 0,
      { timeoutMs: 5000, what: 'the bytes given back' });
  } finally {
    for (const c of socks) c.destroy();
    await up.stop();
    await gw.stop();
  }
});

// The same budget for what clients send: an MCP request body is buffered
// whole before it is checked (up to mcp_max_body, 4 MiB), for each of a
// user's mcp_concurrent_per_user (256) requests — about 1 GiB a user, sent
// slowly (found by the denial-of-service review). Bodies count against the
// tenant's share from their first byte; past it the request is 503 and its
// connection closed.
test('large request bodies held while they arrive count against the tenant\'s share; past it 503', async () => {
  const gw = await startGateway({ args: ['--mcp-buffered-max', '8M'] }); // a tenant: 2 MiB
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  const socks = [];
  try {
    const acme = await tenant(gw, 'acme', 'alice@acme.com', up);
    const globex = await tenant(gw, 'globex', 'carol@globex.com', up);
    const u = new URL(`${gw.url}/t/acme/mcp/one`);
    const open = async () => {
      const c = net.connect(Number(u.port), u.hostname);
      await new Promise((r) => c.on('connect', r));
      let text = '';
      c.on('data', (d) => { text += d.toString('latin1'); });
      const closed = new Promise((r) => c.on('close', r));
      c.write(`POST ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/json\r\n` +
        `accept: application/json, text/event-stream\r\nauthorization: Bearer ${acme.tok}\r\n` +
        `mcp-session-id: ${acme.sessionId}\r\nmcp-protocol-version: ${acme.protocolVersion}\r\n` +
        `content-length: 1000000\r\n\r\n`);
      c.write('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"' + 'x'.repeat(900000));
      const s = { c, text: () => text, closed };
      socks.push(s);
      return s;
    };
    // two bodies of 900 KB held (a buffer of 1 MiB each: ~1.9 MiB of 2)
    for (let i = 0; i < 2; i++) await open();
    await waitFor(async () => metricValue(await scrapeMetrics(gw), 'mcpgate_mcp_buffered_bytes') >= 2 * (1024 - 64) * 1024,
      { timeoutMs: 5000, what: 'two bodies held' });
    const third = await open();
    await Promise.race([third.closed, sleep(5000)]);
    assert.match(third.text(), /^HTTP\/1\.1 503 /, third.text().slice(0, 200));
    assert.match(third.text(), /holds as many large requests as it allows/);
    for (const s of socks.slice(0, 2)) assert.equal(s.text(), '', 'the first two still wait for the rest of their bodies');
    // another tenant is served
    const g = await globex.request('tools/call', { name: 'echo', arguments: { message: 'z'.repeat(500000) } });
    assert.ok(g.messages[0]?.result, g.body.slice(0, 200));
  } finally {
    for (const s of socks) s.c.destroy();
    await up.stop();
    await gw.stop();
  }
});
