// Sink lifecycles with a POST in flight (meant for the ASan variant): a
// receiver that never answers, then the tenant's sink replaced, deleted,
// the tenant deleted, the operator's sink stopped by a shutdown.
// ci-variants: build-asan-w2 (its point is the sanitizer: lifetimes with POSTs in flight)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, waitFor, sleep } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';

const servers = [];
after(async () => { for (const s of servers) { s.closeAllConnections?.(); s.close(); } });
async function hang() {
  const s = http.createServer(() => { s.got = (s.got ?? 0) + 1; /* never answers */ });
  s.got = 0;
  servers.push(s);
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${s.address().port}/in`;
  return s;
}

test('replace, delete, tenant delete and shutdown while sink POSTs hang', async () => {
  const opRx = await hang();
  const g = await startGateway({ args: ['--audit-sink-url', opRx.url, '--audit-sink-batch', '2'] });
  const op = operatorToken(g.dataDir);
  for (const t of ['a1', 'b2', 'c3']) await createTenant(g.port, op, t);
  const rxs = [];
  for (const t of ['a1', 'b2', 'c3']) {
    const rx = await hang();
    rxs.push(rx);
    const r = await api(g.port, op, 'PUT', `/admin/v1/tenants/${t}/audit/sink`, { url: rx.url, token: `tok-${t}` });
    assert.equal(r.status, 201, r.body);
  }
  await waitFor(() => rxs.every((s) => s.got > 0) && opRx.got > 0, { timeoutMs: 15000 });
  // a1: replaced twice while its POST hangs; b2: sink deleted; c3: tenant deleted
  for (let i = 0; i < 2; i++) {
    const rx = await hang();
    // another origin (a new port): the token is given again (the stored one never follows)
    const r = await api(g.port, op, 'PUT', '/admin/v1/tenants/a1/audit/sink', { url: rx.url, format: 'splunk_hec', token: 'tok-a1' });
    assert.equal(r.status, 200, r.body);
    await waitFor(() => rx.got > 0, { timeoutMs: 15000 });
  }
  let r = await api(g.port, op, 'DELETE', '/admin/v1/tenants/b2/audit/sink');
  assert.equal(r.status, 204, r.body);
  r = await api(g.port, op, 'DELETE', '/admin/v1/tenants/c3');
  assert.ok(r.status < 300, `${r.status} ${r.body}`);
  await sleep(2500);
  r = await api(g.port, op, 'GET', '/admin/v1/tenants/b2/audit/sink');
  assert.equal(r.status, 404, r.body);
  await g.stop(); // the POSTs of a1 and of the operator still hang
});
