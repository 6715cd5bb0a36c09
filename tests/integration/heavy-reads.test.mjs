// Heavy reads share libuv's thread pool with the outbound DNS lookups of
// every tenant's connectors: an audit query or export, the reviewers' list
// and a SCIM scan. Found by review: a tenant admin could open any number of
// exports (each up to 64 MB of records buffered for a client that does not
// read) and queries at once, holding every pool thread. Now a tenant has at
// most 2 of a kind open (429), the process at most 6 (503), both with
// Retry-After, and a slot comes back when its request ends (client gone).
// A SCIM scan past the limit waits its turn (up to 10 s; then 429): Okta
// sends several at once.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fillAuditChain, stalledExport, heavyOpen } from './lib/stalled.mjs';
import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startProxyFixture, setupTenant, rawSession, UPSTREAM_SECRET } from './lib/mcp.mjs';

const ALLOW = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'] }] };
let fx;
const tenants = {};

const query = (t) => t.admin('GET', '/audit?limit=1');

before(async () => {
  fx = await startProxyFixture({ gatewayArgs: ['--audit-args-max', '32768'] });
  await fx.t.setPolicy(ALLOW);
  tenants.acme = { t: fx.t, token: fx.tokens.alice };
  for (const id of ['beta', 'gamma', 'delta']) {
    const t = await setupTenant(fx.gw, { id, users: [`ann@${id}.com`], policy: ALLOW });
    const r = await t.putConnector('everything', { url: fx.rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
    assert.equal(r.status, 201, r.body);
    tenants[id] = { t, token: (await t.mintToken(`ann@${id}.com`)).token };
  }
  // three tenants with chains that take more than one export chunk (256
  // records) and more bytes than loopback sockets buffer
  await Promise.all(['acme', 'beta', 'gamma'].map((id) => fillAuditChain(tenants[id].t.mcpUrl('everything'), tenants[id].token, 300)));
  await waitFor(async () => (await query(tenants.gamma.t)).json?.records?.length === 1, { what: 'gamma\'s records' });
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

test('a tenant has at most two audit reads open: the third is 429 with Retry-After, and a slot comes back when its client leaves', async () => {
  const { t } = tenants.acme;
  const a = await stalledExport(fx.gw.port, 'acme', t.opToken);
  const b = await stalledExport(fx.gw.port, 'acme', t.opToken);
  let r;
  await waitFor(async () => (r = await query(t)).status === 429, { timeoutMs: 8000, what: 'a third read refused while two exports wait for their clients' });
  assert.equal(r.headers['retry-after'], '1');
  assert.equal(r.json.error, 'too_many_reads', r.body);
  assert.match(r.json.message, /2 audit queries or exports/);
  const ex = await t.admin('GET', '/audit/export');
  assert.equal(ex.status, 429, 'an export too');
  // another tenant is not held up by acme's reads
  assert.equal((await query(tenants.beta.t)).status, 200);
  a.destroy();
  await waitFor(async () => (await query(t)).status === 200, { timeoutMs: 8000, what: 'the slot of the export whose client left' });
  b.destroy();
  await waitFor(async () => (await heavyOpen(fx.gw)) === 0, { timeoutMs: 8000, what: 'every heavy read ended' });
  const m = await scrapeMetrics(fx.gw);
  assert.ok(metricValue(m, 'mcpgate_heavy_reads_limited_total', { limit: 'tenant' }) >= 2, 'counted');
});

test('the process has at most six heavy reads open: past it every tenant\'s query, reviewers\' list and SCIM scan waits its turn', async () => {
  const socks = [];
  try {
  for (const id of ['acme', 'beta', 'gamma'])
    for (let i = 0; i < 2; i++) socks.push(await stalledExport(fx.gw.port, id, tenants[id].t.opToken));
  assert.equal(await heavyOpen(fx.gw), 6, 'six exports hold the process\'s slots');
  const d = tenants.delta.t;
  let r;
  await waitFor(async () => (r = await query(d)).status === 503, { timeoutMs: 8000, what: 'delta\'s query refused while six exports wait' });
  assert.equal(r.headers['retry-after'], '1');
  assert.equal(r.json.error, 'busy', r.body);
  // Okta's scan (it sends several at once) waits its turn instead
  let scanned = false;
  const scan = d.scim.get('/Users?filter=' + encodeURIComponent('userName co "ann"')).then((r) => { scanned = true; return r; });
  // the data path is not a heavy read: calls go on
  const s = await rawSession(d.mcpUrl('everything'), tenants.delta.token);
  assert.equal((await s.request('tools/call', { name: 'echo', arguments: { message: 'still here' } })).status, 200);
  assert.equal(scanned, false, 'the scan waits while the process is at its limit');
  for (const x of socks) x.destroy();
  const sc = await scan;
  assert.equal(sc.status, 200, sc.body);
  assert.equal(sc.json.totalResults, 1, 'ann, once a slot was free');
  await waitFor(async () => (await query(d)).status === 200, { timeoutMs: 8000, what: 'the slots back' });
  const m = await scrapeMetrics(fx.gw);
  assert.ok(metricValue(m, 'mcpgate_heavy_reads_limited_total', { limit: 'process' }) >= 1, 'counted');
  } finally { for (const x of socks) x.destroy(); }
});

test('an export whose client stops reading is cut after send_timeout_ms (3 s here), and its slot comes back without the client leaving', async () => {
  // found by review: nothing timed a response the client stopped taking,
  // so two stalled exports held their tenant's slots (and three tenants'
  // the process's) for as long as the sockets stayed open
  const f2 = await startProxyFixture({ gatewayArgs: ['--audit-args-max', '32768', '--send-timeout-ms', '3000'] });
  try {
    await f2.t.setPolicy(ALLOW);
    await fillAuditChain(f2.url, f2.tokens.alice, 300);
    await waitFor(async () => (await query(f2.t)).json?.records?.length === 1, { what: 'the records' });
    const socks = [await stalledExport(f2.gw.port, 'acme', f2.t.opToken), await stalledExport(f2.gw.port, 'acme', f2.t.opToken)];
    const closed = socks.map((x) => new Promise((res) => x.on('close', res)));
    // both requests end once 3 s pass with no byte taken (their access
    // lines: the gateway ended them, the clients did not), having held
    // their slots that long
    const ended = () => f2.gw.logs().filter((l) => l.module === 'access' && /\/audit\/export$/.test(l.path ?? ''));
    await waitFor(() => ended().length === 2, { timeoutMs: 20000, what: 'both stalled exports cut by send_timeout_ms' });
    for (const l of ended()) assert.ok(l.duration_ms >= 2900, `open until the send timeout: ${JSON.stringify(l)}`);
    assert.equal((await query(f2.t)).status, 200, 'the slots are back');
    assert.ok(socks.every((x) => !x.destroyed), 'the clients never left');
    // the clients read again: what was queued, then the end the gateway sent
    for (const x of socks) { x.on('data', () => {}); x.on('error', () => {}); x.resume(); }
    await Promise.all(closed);
    for (const l of ended()) assert.ok(l.bytes < 7e6, `cut before the end of the export: ${JSON.stringify(l)}`);
  } finally { await f2.gw.stop(); await f2.up.stop?.(); }
});
