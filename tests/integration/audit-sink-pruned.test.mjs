// Audit sink: records that retention pruned before a tenant's own sink got
// them are said to that tenant — the warning carries the tenant (so a
// per-tenant log view shows it) and the tenant admin's GET …/audit/sink
// counts them ("delivery.pruned") — not only in an operator log line with
// no tenant, which is what the driver did.
// Real parts: the gateway binary (stopped, pruned with `mcpgate audit prune`,
// restarted on the same data directory), a node http server as the SIEM.
// ci-variants: build-w1 build-asan-w2
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { startGateway, waitFor, gatewayBin } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { startSinkReceiver, ndjsonLines } from './lib/sink.mjs';

let gw, rx;
after(async () => { await gw?.stop(); await rx?.close(); });

test("records pruned before a tenant's sink got them: said with the tenant, counted in its GET view", async () => {
  let up = false;
  rx = await startSinkReceiver({ status: () => (up ? 200 : 503) });
  gw = await startGateway();
  const op = operatorToken(gw.dataDir);
  await createTenant(gw.port, op, 'acme');
  let r = await api(gw.port, op, 'PUT', '/admin/v1/tenants/acme/audit/sink', { url: rx.url });
  assert.equal(r.status, 201, r.body);
  for (let i = 0; i < 3; i++) {
    r = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: `t${i}` });
    assert.equal(r.status, 201, r.body);
  }
  await waitFor(() => rx.posts.length >= 1, { timeoutMs: 10000, what: 'a refused POST' });
  const dataDir = gw.dataDir;
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
  const pr = spawnSync(gatewayBin(), ['audit', 'prune', '--before', String(Date.now() + 1), '--data', dataDir], { encoding: 'utf8' });
  assert.equal(pr.status, 0, pr.stdout + pr.stderr);
  assert.match(pr.stdout, /^[1-9]\d* audit record/, pr.stdout);

  up = true;
  gw = await startGateway({ dataDir });
  r = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'after-prune' });
  assert.equal(r.status, 201, r.body);
  await waitFor(() => rx.accepted().length >= 1, { timeoutMs: 10000, what: 'a POST after the restart' });
  const recs = rx.accepted().flatMap((p) => ndjsonLines(p.body));
  assert.ok(recs.every((x) => x.tenant === 'acme'));
  assert.ok(recs[0].seq > 1, `the first delivered record is seq ${recs[0].seq}: the earlier ones were pruned`);

  let line;
  await waitFor(() => (line = gw.logs().find((e) => /pruned before they were delivered/.test(e._raw))), { timeoutMs: 5000, what: 'the pruned warning' });
  assert.equal(line.tenant, 'acme', `the warning names the tenant: ${line._raw}`);
  r = await api(gw.port, op, 'GET', '/admin/v1/tenants/acme/audit/sink');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.delivery.pruned, recs[0].seq - 1, r.body);
});
