// Heavy writes (gateway/core/limits.h): a policy PUT of up to 1 MiB is
// resolved and compiled in one job on the store writer, which every
// tenant's SCIM deactivations share (~0.2 s for 10,000 rules). A tenant
// admin firing many at once used to queue them all there: another
// tenant's deactivation then waited seconds. Now a tenant has one policy
// PUT in flight at a time (the next is 429 with Retry-After, before its
// body is even parsed), the process two (503); nothing refused changes
// the stored policy, and what was admitted is stored whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';

// 10,000 rules (the most a document may have): its job is long enough for
// the PUTs sent with it to find it still running
const big = (tag) => ({
  version: 1, default: 'block',
  rules: Array.from({ length: 10000 }, (_, r) => ({ groups: [`${tag}-g${r}`], connector: '*', allow: ['*'] })),
});

test('one policy PUT per tenant at a time, two in the process; refusals say so and change nothing', async () => {
  const gw = await startGateway({});
  try {
    const tenants = [];
    for (const id of ['acme', 'beta', 'gamma']) tenants.push(await setupTenant(gw, { id, users: [`alice@${id}.com`] }));
    const acme = tenants[0];
    // one tenant, six at once
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => acme.admin('PUT', '/policy', big(`a${i}`))));
    const ok = rs.filter((r) => r.status === 200);
    const busy = rs.filter((r) => r.status === 429);
    assert.equal(ok.length + busy.length, 6, `every answer 200 or 429: ${rs.map((r) => `${r.status} ${r.body.slice(0, 120)}`).join(' | ')}`);
    assert.ok(ok.length >= 1, 'one was applied');
    assert.ok(busy.length >= 1, `the tenant's PUTs sent together did not all reach the writer: ${rs.map((r) => r.status).join(',')}`);
    for (const r of busy) {
      assert.equal(r.json?.error, 'policy_change_in_progress', r.body);
      assert.match(r.json.message, /previous policy PUT is still being applied/);
      assert.equal(r.headers['retry-after'], '1');
    }
    // what was admitted is stored whole, one version each
    const versions = ok.map((r) => r.json.version).sort((a, b) => a - b);
    assert.equal(new Set(versions).size, versions.length, `versions ${versions}`);
    const g = await acme.admin('GET', '/policy');
    assert.equal(g.status, 200);
    assert.equal(g.json.version, versions[versions.length - 1], 'the last admitted PUT is in force');
    assert.equal(g.json.document.rules.length, 10000);
    // a refused one never reaches the store, even with a body that would not parse
    // (the slot is taken before the body is read): the next PUT succeeds
    const after = await acme.admin('PUT', '/policy', { version: 1, default: 'allow', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
    assert.equal(after.status, 200, after.body);
    assert.equal(after.json.version, g.json.version + 1);

    // three tenants at once: two run, the process refuses the rest with 503
    const all = await Promise.all(tenants.flatMap((t, k) => Array.from({ length: 3 }, (_, i) => t.admin('PUT', '/policy', big(`t${k}-${i}`)))));
    const statuses = all.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 429 || s === 503), statuses.join(','));
    assert.ok(statuses.includes(503), `the process ran at most two at once: ${statuses.join(',')}`);
    for (const r of all.filter((x) => x.status === 503)) {
      assert.equal(r.json?.error, 'busy', r.body);
      assert.equal(r.headers['retry-after'], '1');
    }
    const m = await scrapeMetrics(gw);
    assert.equal(metricValue(m, 'mcpgate_heavy_writes_limited_total', { limit: 'tenant' }), busy.length + statuses.filter((s) => s === 429).length);
    assert.equal(metricValue(m, 'mcpgate_heavy_writes_limited_total', { limit: 'process' }), statuses.filter((s) => s === 503).length);
    // and the slots all came back: each tenant may PUT again
    for (const t of tenants) {
      const r = await t.admin('PUT', '/policy', { version: 1, default: 'allow', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
      assert.equal(r.status, 200, `${t.id}: ${r.body}`);
    }
  } finally {
    await gw.stop();
  }
});
