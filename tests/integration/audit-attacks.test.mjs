// The audit log under an attacker's hand, found by review:
//   - an employee's arguments sent pretty-printed were kept byte for byte,
//     line breaks included, so the NDJSON export (and sink) split one record
//     over several lines, one of which could be a forged record;
//   - records pruned before the SIEM sink delivered them were skipped without
//     the documented log line unless every undelivered one was pruned;
//   - with audit_args_max at its maximum, a call whose arguments fit it but
//     not the record's own cap went upstream unrecorded, nothing counted.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { waitFor, startGateway, gatewayBin, sleep } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';
import { startProxyFixture, rawSession } from './lib/mcp.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import { startSinkReceiver, ndjsonLines } from './lib/sink.mjs';

let fx;
before(async () => {
  fx = await startProxyFixture();
  await fx.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'] }] });
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

test('export lines are one record each even when the arguments were sent pretty-printed', async () => {
  const s = await rawSession(fx.url, fx.tokens.alice);
  const forged = JSON.stringify({ id: 'x-1', seq: 1, tenant: 'acme', kind: 'call', user: 'the-ceo', tool: 'delete-everything', decision: 'allow' });
  const body = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","x":\n${forged}\n}}}`;
  const r = await s.post(body);
  assert.equal(r.status, 200, r.body);
  await waitFor(async () => {
    const q = await fx.t.admin('GET', '/audit?kind=call');
    return q.json.records.some((x) => x.arguments?.message === 'hi');
  }, { timeoutMs: 5000, what: 'the record' });
  const exp = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  assert.equal(exp.status, 200);
  const lines = (await exp.text()).trim().split('\n');
  const bad = lines.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
  const fake = lines.filter((l) => l.includes('delete-everything') && !l.includes('"prev"'));
  assert.deepEqual({ bad, fake }, { bad: [], fake: [] }, 'every NDJSON line is one whole record');
});


test('records pruned before the sink delivered them are logged even when later records remain', async () => {
  let accept = false;
  let refuseAfterRestart = 2; // the first POSTs after the restart fail too: each is retried
  const rx = await startSinkReceiver({ status: () => (accept && refuseAfterRestart-- <= 0 ? 200 : 503) });
  let g = await startGateway({ args: ['--audit-sink-url', rx.url] });
  try {
    const op = operatorToken(g.dataDir);
    const t = await createTenant(g.port, op, 'acme');
    const sc = scimClient(g.port, 'acme', t.scim.token);
    for (let i = 0; i < 3; i++) assert.equal((await sc.post('/Users', oktaUser(`old${i}@acme.com`))).status, 201);
    await sleep(300);
    const cut = Date.now();
    await sleep(300);
    for (let i = 0; i < 3; i++) assert.equal((await sc.post('/Users', oktaUser(`new${i}@acme.com`))).status, 201);
    await sleep(500); // committed (batch 50 ms); the sink has been failing meanwhile
    const dataDir = g.dataDir;
    await g.stop();
    const pr = spawnSync(gatewayBin(), ['audit', 'prune', '--before', String(cut), '--data', dataDir], { encoding: 'utf8' });
    assert.equal(pr.status, 0, pr.stderr);
    accept = true;
    g = await startGateway({ dataDir, args: ['--audit-sink-url', rx.url] });
    await waitFor(() => rx.posts.some((p) => p.ok), { timeoutMs: 15000, what: 'a delivery' });
    await sleep(1500);
    const first = ndjsonLines(rx.posts.find((p) => p.ok).body)[0];
    assert.ok(first.seq > 1, `records before seq ${first.seq} were pruned`);
    const said = g.stderrText().split('\n').filter((l) => /pruned before they were delivered/.test(l));
    assert.equal(said.length, 1, `records 1..${first.seq - 1}: the documented log line once, not once per retried POST: ${said.join('\n')}`);
  } finally { await g.stop(); await rx.close(); }
});

test('a call whose arguments fit audit_args_max (at its allowed maximum) is still recorded', async () => {
  const fx2 = await startProxyFixture({ gatewayArgs: ['--audit-args-max', '262144'] });
  try {
    await fx2.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'] }] });
    const s = await rawSession(fx2.url, fx2.tokens.alice);
    const big = 'm'.repeat(262120);
    const r = await s.request('tools/call', { name: 'echo', arguments: { message: big } });
    assert.equal(r.status, 200, r.body.slice(0, 300));
    assert.match(r.body, /mmmmmmmm/, 'the call went upstream and was answered');
    await sleep(1000);
    const q = await fx2.t.admin('GET', '/audit?kind=call');
    const m = await fetch(`${fx2.gw.url}/metrics`, { headers: { authorization: `Bearer ${fx2.t.opToken}` } }).then((x) => x.text());
    const dropped = /mcpgate_audit_records_dropped_total (\d+)/.exec(m)?.[1];
    assert.equal(q.json.records.length, 1, JSON.stringify(q.json.records.map((x) => [x.tool, typeof x.arguments, JSON.stringify(x.arguments).length])) + `the call is not in the log (records_dropped_total=${dropped})`);
    assert.match(q.json.records[0].arguments?.digest ?? '', /^sha256:[0-9a-f]{64}$/, 'kept as its digest: it did not fit the record');
    assert.equal(dropped, '0');
  } finally { await fx2.gw.stop(); await fx2.up.stop?.(); }
});
