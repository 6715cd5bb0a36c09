// The admin API's directory views (GET /admin/v1/tenants/{t}/users|groups)
// render what SCIM provisioned. A filter no index answers is evaluated on
// every resource of the tenant: it used to run on the loop, with no
// heavy-read slot, so a tenant admin's scans of a large directory stalled
// every tenant's requests on that loop. It now runs on the thread pool
// holding a heavy-read slot of the tenant (the SCIM scans' kind: 2 at
// once), as the SCIM endpoint's own scans do: past it 429 too_many_reads
// with Retry-After. Indexed reads and single resources stay on the loop
// and are never refused. Answers are the SCIM endpoint's.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';

test('admin directory scans run with a heavy-read slot: concurrent ones past the tenant\'s two are 429; answers unchanged', async () => {
  const gw = await startGateway({});
  try {
    const users = Array.from({ length: 150 }, (_, i) => `user${String(i).padStart(3, '0')}@acme.com`);
    const t = await setupTenant(gw, { id: 'acme', users });
    const scan = `/users?filter=${encodeURIComponent('userName co "user1"')}&count=200`;
    // the answer is the SCIM endpoint's (same filter, same resources)
    const one = await t.admin('GET', scan);
    assert.equal(one.status, 200, one.body);
    const viaScim = await t.scim.get(`/Users?filter=${encodeURIComponent('userName co "user1"')}&count=200`);
    assert.equal(viaScim.status, 200);
    assert.deepEqual(one.json.Resources.map((r) => r.id).sort(), viaScim.json.Resources.map((r) => r.id).sort());
    assert.equal(one.json.totalResults, users.filter((u) => u.includes('user1')).length);
    // eight at once: the tenant has two scan slots
    const rs = await Promise.all(Array.from({ length: 8 }, () => t.admin('GET', scan)));
    const statuses = rs.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(','));
    assert.ok(statuses.includes(429), `scans beyond the tenant's slots are refused, not run on the loop: ${statuses.join(',')}`);
    for (const r of rs) {
      if (r.status === 429) {
        assert.equal(r.json?.error, 'too_many_reads', r.body);
        assert.equal(r.headers['retry-after'], '1');
      } else {
        assert.equal(r.json.totalResults, one.json.totalResults);
      }
    }
    const m = await scrapeMetrics(gw);
    assert.equal(metricValue(m, 'mcpgate_heavy_reads_limited_total', { limit: 'tenant' }), statuses.filter((s) => s === 429).length);
    // an indexed read and one resource never need a slot: eight at once all answered
    const id = one.json.Resources[0].id;
    const idx = await Promise.all(Array.from({ length: 8 }, (_, i) => t.admin('GET', i % 2
      ? `/users?filter=${encodeURIComponent(`userName eq "${users[i]}"`)}`
      : `/users/${id}`)));
    assert.deepEqual(idx.map((r) => r.status), Array(8).fill(200), idx.map((r) => r.body.slice(0, 100)).join(' | '));
    assert.equal(idx[1].json.totalResults, 1);
    assert.equal(idx[0].json.blocked, null, 'one user still carries its block');
    // a filter that does not parse is a 400 at once
    const bad = await t.admin('GET', `/users?filter=${encodeURIComponent('userName co')}`);
    assert.equal(bad.status, 400, bad.body);
  } finally {
    await gw.stop();
  }
});
