// /metrics counts the store writer's failed jobs and failed commits, so an
// SRE sees writes that were refused or lost (mcpgate_store_jobs_total
// counts only the jobs that committed).
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { createTenant, operatorToken, api } from './lib/admin.mjs';

let g, op;
before(async () => {
  g = await startGateway({});
  op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
});
after(async () => { await g?.stop(); });

test('a write job that fails counts in mcpgate_store_jobs_failed_total, not in jobs_total', async () => {
  const m0 = await scrapeMetrics(g, { token: op });
  assert.equal(m0.types.mcpgate_store_jobs_failed_total, 'counter');
  assert.equal(m0.types.mcpgate_store_commit_errors_total, 'counter');
  const failed0 = metricValue(m0, 'mcpgate_store_jobs_failed_total');
  const ok0 = metricValue(m0, 'mcpgate_store_jobs_total');
  // the delete runs as a writer job and finds nothing: 404, nothing written
  const d = await api(g.port, op, 'DELETE', '/admin/v1/tenants/acme/connectors/nope');
  assert.equal(d.status, 404, d.body);
  const m1 = await scrapeMetrics(g, { token: op });
  assert.equal(metricValue(m1, 'mcpgate_store_jobs_failed_total') - failed0, 1);
  assert.equal(metricValue(m1, 'mcpgate_store_jobs_total'), ok0);
  assert.equal(metricValue(m1, 'mcpgate_store_commit_errors_total'), 0);
  // a write that succeeds moves the other counter
  const c = await api(g.port, op, 'PUT', '/admin/v1/tenants/acme/connectors/one', { url: 'https://one.example.com/mcp' });
  assert.ok(c.status === 201 || c.status === 200, `${c.status} ${c.body}`);
  const m2 = await scrapeMetrics(g, { token: op });
  assert.equal(metricValue(m2, 'mcpgate_store_jobs_failed_total') - failed0, 1);
  assert.ok(metricValue(m2, 'mcpgate_store_jobs_total') > ok0);
});
