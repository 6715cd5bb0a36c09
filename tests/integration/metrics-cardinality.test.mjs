// /metrics labels the MCP proxy's numbers by (tenant, connector), and a
// tenant's admin names connectors freely (up to connectors_per_tenant_max,
// which an operator may raise to 10,000; many tenants together hold
// thousands either way: the gateway is started here with the most). Each loop
// kept at most 4,096 (tenant, connector) entries, first come first served:
// one tenant admin creating a few thousand connectors and calling each once
// (here 4,100) filled the table, after which no other tenant's MCP requests
// were counted at all, and /metrics grew by ~1.3 KB a pair (with more loops,
// past its 16 MiB render cap: 500 for the operator). Now one tenant holds at
// most 128 connector entries per loop; its further connectors are counted
// together as connector="(other)", and the other tenants are counted as usual.
// ci-variants: build-w1 (per-loop tables: one loop makes the count exact)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, fetchMetrics, parsePrometheus, metricValue } from './lib/gateway.mjs';
import { setupTenant, initializeBody } from './lib/mcp.mjs';

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
function call(port, method, p, headers, body) {
  return new Promise((resolve, reject) => {
    const rq = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    rq.on('error', reject);
    rq.end(body);
  });
}
async function inBatches(n, fn) {
  for (let i = 0; i < n; i += 16) await Promise.all(Array.from({ length: Math.min(16, n - i) }, (_, k) => fn(i + k)));
}

test('one tenant naming thousands of connectors cannot push the other tenants out of /metrics', async () => {
  const gw = await startGateway({ args: ['--workers', '1', '--connectors-per-tenant-max', '10000'] });
  const evil = await setupTenant(gw, { id: 'evil', users: ['mallory@evil.com'] });
  const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
  const N = 4100;
  const opHeaders = { authorization: `Bearer ${evil.opToken}`, 'content-type': 'application/json' };
  await inBatches(N, async (i) => {
    const r = await call(gw.port, 'PUT', `/admin/v1/tenants/evil/connectors/c${i}`, opHeaders, JSON.stringify({ url: 'http://127.0.0.1:9/mcp' }));
    assert.equal(r.status, 201, r.body);
  });
  const mallory = (await evil.mintToken('mallory@evil.com')).token;
  const mcp = (tok) => ({ authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
  await inBatches(N, (i) => call(gw.port, 'POST', `/t/evil/mcp/c${i}`, mcp(mallory), JSON.stringify(initializeBody())));

  // acme: one connector, one request after evil's
  assert.equal((await acme.putConnector('crm', { url: 'http://127.0.0.1:9/mcp' })).status, 201);
  const alice = (await acme.mintToken('alice@acme.com')).token;
  await call(gw.port, 'POST', '/t/acme/mcp/crm', mcp(alice), JSON.stringify(initializeBody()));

  const m = await fetchMetrics(gw);
  assert.equal(m.status, 200, m.body.slice(0, 300));
  const samples = parsePrometheus(m.body);
  assert.equal(metricValue(samples, 'mcpgate_mcp_requests_total', { tenant: 'acme', connector: 'crm' }), 1,
    "acme's request is counted despite evil's connectors");
  const evilRows = samples.filter((s) => s.name === 'mcpgate_mcp_requests_total' && s.labels.tenant === 'evil');
  assert.ok(evilRows.length <= 129, `evil holds at most 128 entries and (other): ${evilRows.length}`);
  const total = evilRows.reduce((a, s) => a + s.value, 0);
  assert.equal(total, N, "every one of evil's requests is still counted");
  assert.ok(evilRows.some((s) => s.labels.connector === '(other)'), 'the rest under connector="(other)"');
  assert.ok(m.body.length < 1024 * 1024, `/metrics stays small: ${m.body.length} bytes`);
  await gw.stop();
});
