// tests/bench/idle.mjs — what idle agents cost the gateway.
//
//   node tests/bench/idle.mjs [--clients 2000] [--secs 5]
//
// N clients on the aggregated endpoint with two connectors (two C
// upstreams, tests/bench/upstream.c, whose capabilities announce nothing
// they could push), each left the way Claude Code leaves one: initialize,
// notifications/initialized, tools/list, then a GET stream held open. The
// POSTs share a small keep-alive pool; each GET stream is its own
// connection. Prints the gateway's RSS and open descriptors before and
// after (per client), then tools/call throughput (wrk, aggregated) while
// the N streams stay open, against the same measured with none open.
// Asserts nothing (make bench). One user holds all N sessions (the
// gateway runs with max_connections and sessions_per_user_max raised to
// fit N): the per-client cost does not depend on who the client is.
import net from 'node:net';
import fs from 'node:fs';
import { startGateway } from '../integration/lib/gateway.mjs';
import { setupTenant } from '../integration/lib/mcp.mjs';
import { startCUpstream, wrkPost } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const N = arg('clients', 2000), SECS = arg('secs', 5);
const PV = '2025-06-18';

function usage(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(st)[1]) * 1024;
  return { rss, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

async function post(url, headers, msg) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, ...headers },
    body: JSON.stringify(msg),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${msg.method}: ${r.status} ${text}`);
  return { sid: r.headers.get('mcp-session-id'), text };
}

/* One idle client: a session, its tools/list, and an open GET stream
 * (a raw socket, resolved once the 200 head arrived). */
async function idleClient(port, token) {
  const url = `http://127.0.0.1:${port}/t/acme/mcp`;
  const auth = { Authorization: `Bearer ${token}` };
  const init = await post(url, auth, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'idle', version: '1' } } });
  const h = { ...auth, 'Mcp-Session-Id': init.sid };
  await post(url, h, { jsonrpc: '2.0', method: 'notifications/initialized' });
  await post(url, h, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`GET /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n` +
        `Authorization: Bearer ${token}\r\nMcp-Session-Id: ${init.sid}\r\nMCP-Protocol-Version: ${PV}\r\n\r\n`);
    });
    let head = '';
    const onData = (d) => {
      head += d;
      if (head.includes('\r\n')) {
        s.off('data', onData);
        if (!head.startsWith('HTTP/1.1 200')) { s.destroy(); reject(new Error(`GET stream: ${head.split('\r\n')[0]}`)); return; }
        s.on('data', () => {});
        s.on('end', () => s.destroy()); // the gateway ended the stream (SIGTERM): close, as HTTP clients do
        resolve(s);
      }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

async function callRate(gw, token) {
  const url = `${gw.url}/t/acme/mcp`;
  const init = await post(url, { Authorization: `Bearer ${token}` }, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'load', version: '1' } } });
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, Authorization: `Bearer ${token}`, 'Mcp-Session-Id': init.sid };
  await post(url, headers, { jsonrpc: '2.0', method: 'notifications/initialized' });
  return wrkPost(url, { headers, secs: SECS, bodyLua: `'{"jsonrpc":"2.0","id":' .. n .. ',"method":"tools/call","params":{"name":"a__echo","arguments":{}}}'` });
}

async function main() {
  const ups = [await startCUpstream(), await startCUpstream()];
  const gw = await startGateway({ args: ['--access-log', 'false', '--workers', '1', '--max-connections', String(N + 200), '--connections-per-address', String(N + 200), '--sessions-per-user-max', String(N + 10), '--mcp-concurrent-per-user', '0'] });
  const socks = [];
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    for (const [i, name] of ['a', 'b'].entries()) {
      const put = await t.putConnector(name, { url: ups[i].url, auth: { type: 'none' } });
      if (put.status !== 201) throw new Error(`connector: ${put.status} ${put.body}`);
    }
    const tok = (await t.mintToken('alice@acme.com')).token;
    const before = process.env.NOWRK ? { rps: 1, errors: 0 } : await callRate(gw, tok);
    const u0 = usage(gw.proc.pid);
    const CONC = Number(process.env.CONC || 32);
    let next = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (next < N) { next++; socks.push(await idleClient(gw.port, tok)); }
    }));
    const openSecs = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000)); // upstream streams settle
    const u1 = usage(gw.proc.pid);
    const during = process.env.NOWRK ? { rps: 1, errors: 0 } : await callRate(gw, tok);
    const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
    console.log(`idle clients: ${N} on /t/acme/mcp with 2 connectors (initialize, tools/list, GET stream open), opened in ${openSecs.toFixed(1)} s`);
    console.log(`  gateway RSS   ${mb(u0.rss)} -> ${mb(u1.rss)}   +${((u1.rss - u0.rss) / N / 1024).toFixed(1)} kB per client`);
    console.log(`  descriptors   ${u0.fds} -> ${u1.fds}   ${((u1.fds - u0.fds) / N).toFixed(2)} per client`);
    console.log(`  tools/call    ${before.rps.toFixed(0)} req/s with none open, ${during.rps.toFixed(0)} req/s with ${N} open (${(during.rps / before.rps).toFixed(2)}x)` +
      (before.errors + during.errors ? `  (${before.errors + during.errors} errors!)` : ''));
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
  } finally {
    // SIGTERM with every stream still open: how long the drain takes
    const t1 = Date.now();
    await gw.stop('SIGTERM', { timeoutMs: 60000 }).catch((e) => console.error(e.message));
    console.log(`  SIGTERM with ${socks.length} streams open: exited in ${Date.now() - t1} ms`);
    for (const s of socks) s.destroy();
    for (const u of ups) u.stop();
  }
}

main().then(() => process.exit(process.exitCode ?? 0), (e) => { console.error(e); process.exit(1); });
