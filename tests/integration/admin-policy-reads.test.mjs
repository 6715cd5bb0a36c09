// An admin's policy view (GET /admin/v1/tenants/{t}/policy) and explain
// read the whole policy record and name every group it binds. Found by an
// attack review: both were built on the loop, with no slot — for a policy
// of 90,000 group names (~800 KB, under the 1 MiB cap) a GET took ~0.46 s
// of the loop and answered 16 MB, and four at once stalled every tenant's
// requests on that loop (another tenant's SCIM deactivation: ~1.8 s). They
// now run on the thread pool holding a heavy-read slot of the tenant (two
// at once): past it 429 too_many_reads with Retry-After, as the other heavy
// reads; answers unchanged, and another tenant's reads are not refused.
// ci-variants: build-w1
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';

const bigPolicy = () => ({
  version: 1, default: 'block',
  rules: Array.from({ length: 100 }, (_, r) => ({ groups: Array.from({ length: 900 }, (_, g) => `g${r * 900 + g}`), connector: '*', allow: ['*'] })),
});

test('policy views and explanations run with a heavy-read slot: past the tenant\'s two, 429; answers unchanged', async () => {
  const gw = await startGateway({});
  try {
    const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'], policy: null });
    const beta = await setupTenant(gw, { id: 'beta', users: ['bob@beta.com'] });
    // no policy yet: 404 as before
    const none = await acme.admin('GET', '/policy');
    assert.equal(none.status, 404, none.body);
    assert.equal(none.json.error, 'not_found');
    const put = await acme.admin('PUT', '/policy', bigPolicy());
    assert.equal(put.status, 200, put.body.slice(0, 300));
    const one = await acme.admin('GET', '/policy');
    assert.equal(one.status, 200, one.body.slice(0, 300));
    assert.equal(one.json.version, put.json.version);
    assert.equal(one.json.bindings.length, 90000);
    assert.equal(one.headers['cache-control'], 'no-store');

    const views = await Promise.all(Array.from({ length: 8 }, () => acme.admin('GET', '/policy')));
    const vs = views.map((r) => r.status);
    assert.ok(vs.every((s) => s === 200 || s === 429), vs.join(','));
    assert.ok(vs.includes(429), `views beyond the tenant's slots are refused, not built on the loop: ${vs.join(',')}`);
    for (const r of views) {
      if (r.status === 429) {
        assert.equal(r.json?.error, 'too_many_reads', r.body);
        assert.equal(r.headers['retry-after'], '1');
      } else {
        assert.equal(r.json.version, one.json.version);
        assert.equal(r.json.bindings.length, 90000);
      }
    }

    const explainQ = `/explain?user=${encodeURIComponent('alice@acme.com')}&connector=x&tool=y`;
    const ex1 = await acme.admin('GET', explainQ);
    assert.equal(ex1.status, 200, ex1.body);
    assert.equal(ex1.json.decision, 'hidden');
    assert.equal(ex1.json.user.userName, 'alice@acme.com');
    // another tenant's reads are its own: answered while acme's run
    const [exs, other] = await Promise.all([
      Promise.all(Array.from({ length: 8 }, () => acme.admin('GET', explainQ))),
      (async () => { await new Promise((r) => setTimeout(r, 20)); return beta.admin('GET', '/policy'); })(),
    ]);
    assert.equal(other.status, 200, other.body);
    const es = exs.map((r) => r.status);
    assert.ok(es.every((s) => s === 200 || s === 429), es.join(','));
    assert.ok(es.includes(429), `explanations beyond the tenant's slots are refused: ${es.join(',')}`);
    for (const r of exs) if (r.status === 200) assert.deepEqual(r.json, ex1.json);
    const unknown = await acme.admin('GET', '/explain?user=nobody&connector=x&tool=y');
    assert.equal(unknown.status, 404, unknown.body);

    const m = await scrapeMetrics(gw);
    assert.equal(metricValue(m, 'mcpgate_heavy_reads_limited_total', { limit: 'tenant' }),
      [...vs, ...es].filter((s) => s === 429).length);
    assert.equal(metricValue(m, 'mcpgate_heavy_reads_open'), 0, 'every slot came back');
  } finally {
    await gw.stop();
  }
});
