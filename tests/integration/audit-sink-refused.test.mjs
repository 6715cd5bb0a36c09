// Audit sink (issue 22): a receiver that refuses some records — 400 for one
// tenant's, 413 for POSTs of more than one record — holds back only the
// chain it refuses: every other tenant's records keep arriving at once,
// the refused chain is retried on its own back-off (413: with fewer records
// per POST, down to one), and once the receiver takes them they arrive, in
// order, nothing lost. Before, one chain's refusal backed off the whole
// operator sink (one POST every 5 minutes for every tenant).
// Real parts: the gateway binary with an operator sink, a node http server
// as the SIEM, the admin API making the records.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { startSinkReceiver, ndjsonLines } from './lib/sink.mjs';

let gw, rx;
after(async () => { await gw?.stop(); await rx?.close(); });

test('a refused chain waits on its own; the others keep arriving; 413 sends fewer at a time', async () => {
  let refuse = 'acme';
  rx = await startSinkReceiver({
    status: (n, req) => {
      const recs = ndjsonLines(req.body);
      if (refuse && recs.some((r) => r.tenant === refuse)) return 400;
      if (recs.some((r) => r.tenant === 'initech') && recs.length > 1) return 413;
      return 200;
    },
  });
  gw = await startGateway({ args: ['--audit-sink-url', rx.url, '--audit-sink-batch', '50'] });
  const op = operatorToken(gw.dataDir);
  for (const t of ['acme', 'globex', 'initech']) await createTenant(gw.port, op, t);
  const write = async (t, n) => {
    for (let i = 0; i < n; i++) {
      const r = await api(gw.port, op, 'POST', `/admin/v1/tenants/${t}/admin-tokens`, { name: `${t}-${i}` });
      assert.equal(r.status, 201, r.body);
    }
  };
  await write('acme', 3);
  await write('globex', 3);
  await write('initech', 3);
  const got = (t) => rx.accepted().flatMap((p) => ndjsonLines(p.body)).filter((r) => r.tenant === t);
  // globex and initech arrive while acme is refused (initech one record per POST)
  await waitFor(async () => got('globex').length >= 4 && got('initech').length >= 4,
    { timeoutMs: 8000, intervalMs: 50, what: "globex's and initech's records while acme's are refused" });
  assert.equal(got('acme').length, 0);
  assert.ok(rx.posts.some((p) => p.status === 400), 'acme was refused');
  assert.ok(rx.posts.some((p) => p.status === 413), 'initech was refused as too large');
  for (const p of rx.accepted()) {
    const recs = ndjsonLines(p.body);
    if (recs.some((r) => r.tenant === 'initech')) assert.equal(recs.length, 1, 'initech now one record per POST');
  }
  // more globex records still go through at once
  await write('globex', 2);
  await waitFor(async () => got('globex').length >= 6, { timeoutMs: 5000, intervalMs: 50, what: 'new globex records' });
  const samples = await scrapeMetrics(gw, { token: op });
  assert.ok(metricValue(samples, 'mcpgate_audit_sink_lag_records', { sink: 'operator' }) >= 4, 'acme still behind');
  // the receiver takes acme's now: all of it arrives, in order, once
  refuse = null;
  await waitFor(async () => got('acme').length >= 4, { timeoutMs: 10000, intervalMs: 100, what: "acme's records after the receiver took them" });
  const seqs = got('acme').map((r) => r.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'in order from the first, none twice');
});
