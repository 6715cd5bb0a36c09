// An upstream's replies cost the loop their parse too: a tenant admin's
// own upstream answering resources/list (a list the aggregated endpoint
// builds as a tree, to route its URIs) with tens of thousands of small
// items made the gateway build ~20 MiB of tree, tens of milliseconds of
// the loop, on every employee's call — the loop every tenant shares. The
// tree each upstream JSON text would take is now charged to the tenant's
// mcp_json_mib_per_tenant, the bucket its clients' bodies pay into
// (gateway/mcp/exchange.c gw__x_json): past it the text is left unparsed
// and the connector's items are left out, with the reason in the log and
// mcpgate_mcp_rate_limited_total{limit="json_reply"}; another tenant's
// budget is its own. Upstreams: lib/ctl-upstream.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, metricValue } from './lib/gateway.mjs';
import { scrape } from './lib/scim.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

// each listed resource ({"uri":…,"name":…} and what ctl-upstream adds) is
// ~800 bytes of tree by gw_json_tree_cost's weights: 26,000 of them ~20 MiB
const ITEMS = 26000;
const BUDGET_MIB = 100;

test('the tree an upstream\'s reply would take is charged to its tenant\'s mcp_json_mib_per_tenant: past it the reply is left unparsed, said in the log and the metric; another tenant\'s budget is its own', async () => {
  const gw = await startGateway({ args: ['--mcp-json-mib-per-tenant', String(BUDGET_MIB), '--agg-uri-map-max', '64'] });
  try {
    const tenants = {};
    for (const id of ['acme', 'globex']) {
      const t = await setupTenant(gw, { id, users: [`alice@${id}.com`] });
      const up = await startCtlUpstream({ name: `big${id[0]}`, resources: ITEMS });
      const r = await t.putConnector('big', { url: up.url, auth: { type: 'none' } });
      assert.equal(r.status, 201, r.body);
      const tok = (await t.mintToken(`alice@${id}.com`)).token;
      tenants[id] = { s: await rawSession(`${gw.url}/t/${id}/mcp`, tok), up };
    }
    const list = async (id) => {
      const r = await tenants[id].s.request('resources/list');
      assert.equal(r.status, 200, r.body.slice(0, 300));
      return r.messages[0]?.result?.resources?.length;
    };
    // the premise: one reply is worth MiBs of tree, the budget a handful of them
    const first = await list('acme');
    assert.equal(first, ITEMS, 'the whole list while the budget lasts');
    // acme's lists until its budget is spent (each ~20 MiB: at most ~6 fit
    // in 100 MiB and what refills while they run)
    let counts = [first];
    for (let i = 0; i < 12 && counts[counts.length - 1] !== 0; i++) counts.push(await list('acme'));
    assert.equal(counts[counts.length - 1], 0, `acme's upstream replies were left unparsed once its budget was spent: ${counts}`);
    assert.ok(counts.length >= 3, `more than one reply fit: ${counts}`);
    await gw.waitForLog((l) => /not parsed: the tenant's mcp_json_mib_per_tenant has no room/.test(l.msg ?? '') && l.tenant === 'acme');
    await gw.waitForLog((l) => /items are left out/.test(l.msg ?? '') && /mcp_json_mib_per_tenant/.test(l.msg ?? ''));
    const m = await scrape(gw.port);
    assert.ok(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'json_reply' }) >= 1, 'counted as json_reply');
    // globex's upstream answers the same lists: its budget is untouched
    assert.equal(await list('globex'), ITEMS, 'another tenant lists in full');
    // each reply was asked for once: the refusals cost acme's upstream no retry
    assert.equal(tenants.acme.up.rpc('resources/list').length, counts.length);
  } finally {
    await gw.stop();
  }
});
