// Issue 12 item 1: a client that never reads its aggregated GET stream
// must not grow the gateway's memory while a chatty upstream floods it.
// The upstream GET streams feeding it pause above the client's high-water
// mark (the upstream then sees back-pressure itself) and resume when the
// client reads; past stream_buffer_max the stream ends, logged and counted.
// Plain and TLS upstreams (lib/ctl-upstream.mjs flood()).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { gatewayBin, startGateway, connect, makeTempDir, makeSelfSignedCert, metricValue, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { scrape } from './lib/scim.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

// ASan's quarantine and shadow memory make RSS say little about the
// gateway's own buffers: under the sanitizer build the bytes the upstream
// could push (bounded only if the gateway stopped reading) are the measure.
const SANITIZED = /asan/.test(gatewayBin());
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function streamFixture({ tls = false, args = [] } = {}) {
  const gw = await startGateway({ args });
  let ca;
  let certs;
  if (tls) {
    const dir = await makeTempDir();
    certs = makeSelfSignedCert(dir, 'up');
    ca = certs.cert;
  }
  const up = await startCtlUpstream({ name: 'chatty', tls: certs });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const body = { url: up.url, auth: { type: 'none' } };
  if (ca) body.ca_file = ca;
  const r = await t.putConnector('chatty', body);
  assert.equal(r.status, 201, r.body);
  const tok = (await t.mintToken('alice@acme.com')).token;
  const agg = `${gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, tok);
  const list = await s.request('tools/list');
  assert.match(list.body, /chatty__echo/, 'the upstream session is open');
  // a raw client that sends the GET and then stops reading
  const conn = await connect(gw.port);
  await conn.write(`GET /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tok}\r\n` +
    `Accept: text/event-stream\r\nMcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n\r\n`);
  await waitFor(() => conn.text().includes('200 OK') && up.getStreams() === 1, { what: 'the stream and its upstream stream open' });
  conn.socket.pause();
  return { gw, up, conn };
}

for (const tls of [false, true]) {
  test(`a never-reading client on a chatty aggregated stream keeps the gateway's memory bounded (${tls ? 'TLS' : 'plain'} upstream); reading resumes it`, async () => {
    const f = await streamFixture({ tls });
    try {
      const before = rssKiB(f.gw.proc.pid);
      const total = 256 << 20;
      const sent = await f.up.flood({ eventBytes: 16384, totalBytes: total, ms: 2500 });
      const after = rssKiB(f.gw.proc.pid);
      assert.ok(sent < 32 << 20, `the upstream was held back by the paused transfer: it could write only ${sent} of ${total} bytes`);
      if (!SANITIZED) assert.ok(after - before < 48 * 1024, `gateway RSS grew by ${after - before} KiB (from ${before} KiB) while ${sent} bytes were pushed`);
      assert.equal(f.conn.closed, false, 'below stream_buffer_max the stream stays open (paused, not cut)');
      // the client reads again: the paused upstream stream resumes
      const seen = f.conn.buffer.length;
      f.conn.socket.resume();
      const more = f.up.flood({ eventBytes: 1024, totalBytes: 1 << 20, ms: 3000 });
      await waitFor(() => f.conn.buffer.length > seen + (1 << 20), { timeoutMs: 8000, what: 'events flowing again after the client read' });
      await more;
    } finally {
      f.conn.destroy();
    }
    await f.gw.stop();
  });
}

// Found chasing the test below's flake: the buffer one large event grew
// kept its capacity (8 MiB for a 4 MiB event), charged to mcp_buffered_max,
// for as long as the stream lived, with nothing in it.
test('a stream that relayed a large event gives its buffer back', async () => {
  const f = await streamFixture();
  try {
    f.conn.socket.resume();
    const seen = f.conn.buffer.length;
    f.up.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'z'.repeat(4 << 20) } });
    await waitFor(() => f.conn.buffer.length > seen + (4 << 20), { timeoutMs: 8000, what: 'the event relayed to the client' });
    let held;
    await waitFor(async () => (held = metricValue(await scrape(f.gw.port), 'mcpgate_mcp_buffered_bytes')) === 0,
      { timeoutMs: 3000, what: 'no buffered bytes held for the open stream' }).catch((e) => {
      e.message += ` (mcpgate_mcp_buffered_bytes ${held})`;
      throw e;
    });
    assert.equal(f.conn.closed, false, 'the stream stays open');
  } finally {
    f.conn.destroy();
  }
  await f.gw.stop();
});

test('past stream_buffer_max the stream is ended, logged and counted; the gateway stays healthy', async () => {
  const f = await streamFixture({ args: ['--stream-buffer-max', '65536'] });
  try {
    // One event larger than the loopback socket buffers can take (Linux:
    // tcp_wmem's 4 MiB on the gateway's side, the unread window on the
    // client's) by far more than the cap: what they leave of it lands in the
    // gateway's queue, past the cap, and the stream is cut at that event.
    // Found flaky with 4 MiB events: the buffers took all but 32,887 bytes
    // of the first one, a queue between half the cap (where the feed pauses,
    // rule 2 of agg_mux.c) and the cap — paused for a client that never
    // reads, the stream stayed open (as it should: bounded, not cut) and no
    // second event came. The event must stay under the 8 MiB SSE event cap.
    const [, , wmemMax] = fs.readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/).map(Number);
    const [, rmemDefault] = fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8').trim().split(/\s+/).map(Number);
    const eventBytes = 7 << 20;
    assert.ok(wmemMax + 2 * rmemDefault + (1 << 20) < eventBytes,
      `this test needs socket buffers smaller than its event: tcp_wmem max ${wmemMax}, tcp_rmem default ${rmemDefault}`);
    for (let i = 0; i < 2; i++) f.up.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `${i}`.repeat(eventBytes) } });
    const line = await f.gw.waitForLog((l) => /client stream ended: \d+ bytes queued/.test(l.msg ?? ''), 8000);
    assert.match(line.msg, /stream_buffer_max 65536/);
    // the connection is cut at once, its queue discarded — without the client
    // reading a byte more (a graceful close would wait for it forever)
    const open = async () => metricValue(await scrape(f.gw.port), 'mcpgate_http_connections_open');
    await waitFor(async () => (await open()) === 1, { timeoutMs: 3000, what: 'only the scrape\'s own connection open' });
    f.conn.socket.resume();
    await waitFor(() => f.conn.closed, { timeoutMs: 5000, what: 'the client sees the connection closed' });
    await waitFor(() => f.up.getStreams() === 0, { timeoutMs: 5000, what: 'the upstream stream released' });
    const m = await scrape(f.gw.port);
    assert.equal(metricValue(m, 'mcpgate_mcp_client_streams_overflowed_total', { tenant: 'acme', connector: 'chatty' }), 1);
  } finally {
    f.conn.destroy();
  }
  await f.gw.stop();
});
