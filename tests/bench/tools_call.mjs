// tests/bench/tools_call.mjs — tools/call throughput and latency through
// the gateway, against baselines measured in the same invocation.
//
//   node tests/bench/tools_call.mjs [--secs 5] [--rounds 3] [--conns 16] [--baseline BIN]
//
// --baseline BIN (or MCPGATE_BENCH_BASELINE): a second gateway binary (an
// earlier commit's build) measured in the same rounds as "connector@base"
// and "aggregated@base": how a change moved the numbers, on the same noise.
//
// Load: wrk (one thread, --conns keep-alive connections), POSTing a small
// tools/call on one MCP session per variant. Upstream: the C upstream
// (tests/bench/upstream.c), which is never the bottleneck. Variants,
// interleaved round by round (the machine is noisy; medians printed):
//   (a) direct       wrk → upstream
//   (b) nginx        wrk → nginx (one worker, upstream keep-alive) → upstream
//   (c) connector    wrk → gateway /t/acme/mcp/ub → upstream
//   (d) aggregated   wrk → gateway /t/acme/mcp (ub__echo) → upstream
// Prints req/s, p50/p99/p99.9, c/b and d/b, and the latency c and d add
// over a. Asserts nothing (make bench); every variant is checked once to
// answer the call before it is loaded, and a run with errors is reported.
import { startGateway } from '../integration/lib/gateway.mjs';
import { setupTenant } from '../integration/lib/mcp.mjs';
import { startNginx, startCUpstream, wrkPost, median } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const SECS = arg('secs', 5), ROUNDS = arg('rounds', 3), CONNS = arg('conns', 16);
const PV = '2025-06-18';
const argStr = (n) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const BASELINE = argStr('baseline') || process.env.MCPGATE_BENCH_BASELINE;

async function rpc(url, headers, msg) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, ...headers },
    body: JSON.stringify(msg),
  });
  return { status: r.status, sid: r.headers.get('mcp-session-id'), text: await r.text() };
}

/* An initialized MCP session at url; returns the headers a call needs. */
async function session(url, token) {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const init = await rpc(url, auth, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } });
  if (init.status !== 200 || !init.sid) throw new Error(`initialize at ${url}: ${init.status} ${init.text}`);
  const h = { ...auth, 'Mcp-Session-Id': init.sid };
  const n = await rpc(url, h, { jsonrpc: '2.0', method: 'notifications/initialized' });
  if (n.status !== 202) throw new Error(`initialized at ${url}: ${n.status} ${n.text}`);
  return h;
}

async function variant(name, url, token, tool) {
  const h = await session(url, token);
  const probe = await rpc(url, h, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: {} } });
  if (probe.status !== 200 || !probe.text.includes('"text":"ok"')) throw new Error(`${name}: tools/call answered ${probe.status} ${probe.text}`);
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, ...h };
  const bodyLua = `'{"jsonrpc":"2.0","id":' .. n .. ',"method":"tools/call","params":{"name":"${tool}","arguments":{"q":"bench"}}}'`;
  return { name, url, headers, bodyLua, runs: [] };
}

async function main() {
  const up = await startCUpstream();
  const ngx = await startNginx(up.port);
  const gws = [await startGateway({ args: ['--access-log', 'false'] })];
  if (BASELINE) gws.push(await startGateway({ args: ['--access-log', 'false'], bin: BASELINE }));
  try {
    const vs = [
      await variant('direct', up.url, null, 'echo'),
      await variant('nginx', ngx.url, null, 'echo'),
    ];
    for (const [i, gw] of gws.entries()) {
      const t = await setupTenant(gw, { users: ['alice@acme.com'] });
      const put = await t.putConnector('ub', { url: up.url, auth: { type: 'none' } });
      if (put.status !== 201) throw new Error(`connector: ${put.status} ${put.body}`);
      const tok = (await t.mintToken('alice@acme.com')).token;
      const sfx = i ? '@base' : '';
      vs.push(await variant(`connector${sfx}`, t.mcpUrl('ub'), tok, 'echo'));
      vs.push(await variant(`aggregated${sfx}`, `${gw.url}/t/acme/mcp`, tok, 'ub__echo'));
    }
    for (let r = 0; r < ROUNDS; r++)
      for (const v of vs) v.runs.push(await wrkPost(v.url, { headers: v.headers, bodyLua: v.bodyLua, conns: CONNS, secs: SECS }));
    const m = {};
    for (const v of vs) {
      m[v.name] = {
        rps: median(v.runs.map((x) => x.rps)), p50: median(v.runs.map((x) => x.p50)),
        p99: median(v.runs.map((x) => x.p99)), p999: median(v.runs.map((x) => x.p999)),
        errors: v.runs.reduce((s, x) => s + x.errors, 0),
      };
    }
    const us = (x) => `${(x / 1000).toFixed(3)} ms`;
    console.log(`tools/call bench: wrk -t1 -c${CONNS}, ${ROUNDS} rounds x ${SECS} s interleaved, C upstream (medians)` +
      (BASELINE ? `; @base = ${BASELINE}` : ''));
    for (const v of vs) {
      const x = m[v.name];
      let line = `  ${v.name.padEnd(16)} ${x.rps.toFixed(0).padStart(7)} req/s  p50 ${us(x.p50)}  p99 ${us(x.p99)}  p99.9 ${us(x.p999)}`;
      if (v.name.startsWith('connector') || v.name.startsWith('aggregated'))
        line += `   ${(x.rps / m.nginx.rps).toFixed(2)}x nginx  +${((x.p50 - m.direct.p50) / 1000).toFixed(3)} ms p50 over direct`;
      if (x.errors) line += `   (${x.errors} errors!)`;
      console.log(line);
    }
  } finally {
    for (const gw of gws) await gw.stop();
    ngx.stop();
    up.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
