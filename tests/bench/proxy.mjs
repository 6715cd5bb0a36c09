// tests/bench/proxy.mjs — what the gateway adds to an MCP call.
//
//   node tests/bench/proxy.mjs [--calls 2000] [--conc 8]
//
// Real parts: server-everything as the upstream, the official SDK client,
// the real gateway binary (build/mcpgate or MCPGATE_BIN) with a tenant, a
// user, an allow-all policy and a connector. The same tools/call (echo)
// is timed in the same invocation three ways:
//   direct       SDK client → server-everything (the baseline)
//   nginx        SDK client → nginx proxy_pass → server-everything (a bare proxy hop)
//   connector    SDK client → gateway /t/acme/mcp/ev → server-everything
//   aggregated   SDK client → gateway /t/acme/mcp (ev__echo) → server-everything
// Each: p50/p99 latency of sequential calls on one session, then
// throughput with --conc sessions in parallel. Prints numbers and the
// ratios to direct; asserts nothing (make bench).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startGateway } from '../integration/lib/gateway.mjs';
import { startEverything, setupTenant } from '../integration/lib/mcp.mjs';
import { startNginx } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const CALLS = arg('calls', 2000), CONC = arg('conc', 8);

async function connect(url, token) {
  const c = new Client({ name: 'bench', version: '1' }, { capabilities: {} });
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return c;
}

const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];

async function measure(url, token, tool) {
  const c = await connect(url, token);
  for (let i = 0; i < 50; i++) await c.callTool({ name: tool, arguments: { message: 'warm' } });
  const lat = [];
  for (let i = 0; i < CALLS / 2; i++) {
    const t0 = process.hrtime.bigint();
    await c.callTool({ name: tool, arguments: { message: `m${i}` } });
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  await c.close();
  const clients = await Promise.all(Array.from({ length: CONC }, () => connect(url, token)));
  let left = CALLS;
  const t0 = process.hrtime.bigint();
  await Promise.all(clients.map(async (cl) => {
    while (left-- > 0) await cl.callTool({ name: tool, arguments: { message: 'x' } });
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await Promise.all(clients.map((cl) => cl.close()));
  return { p50: pct(lat, 50), p99: pct(lat, 99), rps: CALLS / secs };
}

async function main() {
  const up = await startEverything();
  const gw = await startGateway({ args: ['--access-log', 'false', '--workers', '1'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    const put = await t.putConnector('ev', { url: up.url, auth: { type: 'none' } });
    if (put.status !== 201) throw new Error(`connector: ${put.status} ${put.body}`);
    const tok = (await t.mintToken('alice@acme.com')).token;
    // the upstream (node) warms up over the run: direct is measured first
    // and last, and the better of the two is the baseline
    const direct1 = await measure(up.url, null, 'echo');
    const ngx = await startNginx(up.port);
    const nginx = await measure(ngx.url, null, 'echo');
    ngx.stop();
    const conn = await measure(t.mcpUrl('ev'), tok, 'echo');
    const agg = await measure(`${gw.url}/t/acme/mcp`, tok, 'ev__echo');
    const direct2 = await measure(up.url, null, 'echo');
    const direct = direct2.p50 < direct1.p50 ? direct2 : direct1;
    const row = (name, r) =>
      `  ${name.padEnd(11)} p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms  ${r.rps.toFixed(0)} calls/s` +
      (name === 'direct' ? '' : `   (x${(r.p50 / direct.p50).toFixed(2)} p50, ${(r.rps / direct.rps).toFixed(2)} of direct throughput)`);
    console.log(`proxy bench: tools/call echo, ${CALLS / 2} sequential calls, then ${CALLS} calls over ${CONC} sessions`);
    console.log(row('direct', direct));
    console.log(row('nginx', nginx));
    console.log(row('connector', conn));
    console.log(row('aggregated', agg));
  } finally {
    await gw.stop();
    await up.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
