// The upstream connection budget (upstream_connections; gateway/out/outbound.h
// gw_out_budget_set). Found by review: nothing bounded the upstream calls in
// flight but each user's own mcp_concurrent_per_user (256), and an aggregated
// batch is one upstream connection per message: at a descriptor limit of
// 1024 one tenant's six users held 929 upstream calls, the other tenant's
// clients were reset and /healthz failed. Now the process has a budget of
// transfers from the descriptors max_connections leaves, and one tenant holds
// at most a quarter of it (a sixteenth once half is taken); a call past it is
// answered at once, nothing sent. Upstream: lib/ctl-upstream.mjs (it holds
// the slow calls until the test releases them).
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, assertGatewayUp } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const call = (id, name, args = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
const BUSY = /was not called: the gateway has as many upstream connections open as it allows/;

async function tenantSession(gw, id, user, upUrl) {
  const t = await setupTenant(gw, { id, users: [user] });
  const r = await t.putConnector('one', { url: upUrl, auth: { type: 'none' } });
  assert.equal(r.status, 201, `PUT connector for ${id}: ${r.status} ${r.body}`);
  const tok = (await t.mintToken(user)).token;
  const s = await rawSession(`${gw.url}/t/${id}/mcp`, tok, { protocolVersion: '2025-03-26' });
  const warm = await s.request('tools/call', { name: 'one__echo', arguments: { message: 'warm' } });
  assert.equal(warm.status, 200, warm.body);
  return { t, tok, s };
}

test('at a low descriptor limit one tenant\'s batches of slow calls hold only its share; another tenant is served and /healthz answers', async () => {
  const gw = await startGateway({ wrap: ['prlimit', '--nofile=512:512', '--'], args: ['--mcp-concurrent-per-user', '1000'] });
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  let release = () => {};
  try {
    const acme = await tenantSession(gw, 'acme', 'alice@acme.com', up.url);
    const globex = await tenantSession(gw, 'globex', 'carol@globex.com', up.url);
    release = up.hold((m) => m.method === 'tools/call' && m.params?.name === 'slow');
    const slow = () => up.rpc('tools/call').filter((e) => e.json.params?.name === 'slow').length;

    // five batches of 100 slow calls: 500 upstream connections before the budget
    const batches = [0, 1, 2, 3, 4].map((b) => acme.s.post(Array.from({ length: 100 }, (_, i) => call(b * 100 + i + 1, 'one__slow', { ms: 1 }))));
    await waitFor(() => slow() > 0, { timeoutMs: 10000, what: 'acme\'s slow calls upstream' });
    let last = -1;
    await waitFor(() => { const n = slow(); const same = n === last; last = n; return same; },
      { timeoutMs: 15000, intervalMs: 300, what: 'acme\'s slow calls settled' });

    // the other tenant is served, and the gateway answers its health check
    const other = await globex.s.request('tools/call', { name: 'one__echo', arguments: { message: 'globex-served' } });
    assert.equal(other.status, 200, `globex's call while acme's batches are held: ${other.status} ${other.body}`);
    assert.match(JSON.stringify(other.messages[0]?.result ?? other.body), /one:echo globex-served/);
    await assertGatewayUp(gw);
    const max = metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_transfers_max');
    assert.ok(max > 0 && max < 512, `a budget below the descriptor limit of 512: ${max}`);
    assert.ok(slow() <= Math.max(1, Math.floor(max / 4)),
      `acme holds ${slow()} upstream calls; its share of ${max} is ${Math.floor(max / 4)}`);

    release();
    const replies = await Promise.all(batches);
    let busy = 0, done = 0;
    for (const r of replies) {
      assert.equal(r.status, 200, r.body.slice(0, 300));
      assert.equal(r.messages.length, 100);
      for (const m of r.messages) {
        if (m.result) done++;
        else if (BUSY.test(m.error?.message ?? '')) busy++;
        else assert.fail(`an element neither answered nor refused as busy: ${JSON.stringify(m)}`);
      }
    }
    assert.equal(done + busy, 500);
    assert.ok(busy > 0 && done > 0, `${done} answered, ${busy} refused`);
    const m = await scrapeMetrics(gw);
    assert.ok(metricValue(m, 'mcpgate_upstream_transfer_errors_total', { kind: 'busy' }) >= busy);
    // the places came back
    const again = await acme.s.request('tools/call', { name: 'one__echo', arguments: { message: 'again' } });
    assert.equal(again.status, 200, again.body);
    assert.ok(again.messages[0]?.result, again.body);
  } finally {
    release();
    await up.stop();
    await gw.stop();
  }
});

test('upstream_connections: a tenant takes a quarter while less than half is taken, then a sixteenth; a connector endpoint\'s refused call says so with Retry-After', async () => {
  const gw = await startGateway({ args: ['--upstream-connections', '16', '--mcp-concurrent-per-user', '100'] });
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  let release = () => {};
  try {
    const acme = await tenantSession(gw, 'acme', 'alice@acme.com', up.url);
    const globex = await tenantSession(gw, 'globex', 'carol@globex.com', up.url);
    const initech = await tenantSession(gw, 'initech', 'dave@initech.com', up.url);
    assert.equal(metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_transfers_max'), 16);
    // acme's connector endpoint, its session opened before the budget is spent
    const direct = await rawSession(`${gw.url}/t/acme/mcp/one`, acme.tok, { protocolVersion: '2025-03-26' });
    release = up.hold((m) => m.method === 'tools/call' && m.params?.name === 'slow');
    const slowOf = (who) => up.rpc('tools/call').filter((e) => e.json.params?.name === 'slow' && e.json.params?.arguments?.who === who).length;
    const batch = (who, s, n) => s.post(Array.from({ length: n }, (_, i) => call(i + 1, 'one__slow', { ms: 1, who })));

    const a = batch('acme', acme.s, 10);
    await waitFor(() => slowOf('acme') === 4, { timeoutMs: 5000, what: 'acme\'s four (a quarter of 16)' });
    const g = batch('globex', globex.s, 10);
    await waitFor(() => slowOf('globex') === 4, { timeoutMs: 5000, what: 'globex\'s four' });
    // half is taken: a third tenant gets a sixteenth (1)
    const i3 = batch('initech', initech.s, 3);
    await waitFor(() => slowOf('initech') === 1, { timeoutMs: 5000, what: 'initech\'s one' });

    // acme at its share: its connector endpoint's call is answered at once, nothing sent
    const before = up.rpc('tools/call').length;
    const d = await direct.request('tools/call', { name: 'echo', arguments: { message: 'direct' } });
    assert.equal(d.status, 200, d.body);
    assert.match(d.messages[0]?.error?.message ?? '', BUSY, d.body);
    assert.equal(d.headers['retry-after'], '1');
    assert.equal(up.rpc('tools/call').length, before, 'the refused call was not sent upstream');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(slowOf('acme') + slowOf('globex') + slowOf('initech'), 9, 'no more went upstream meanwhile');

    release();
    for (const [who, p, n, held] of [['acme', a, 10, 4], ['globex', g, 10, 4], ['initech', i3, 3, 1]]) {
      const r = await p;
      assert.equal(r.status, 200, r.body.slice(0, 300));
      assert.equal(r.messages.filter((m) => m.result).length, held, `${who}: ${r.body.slice(0, 400)}`);
      assert.equal(r.messages.filter((m) => BUSY.test(m.error?.message ?? '')).length, n - held, `${who}: ${r.body.slice(0, 400)}`);
    }
    // every place came back: acme's connector endpoint calls again
    const d2 = await direct.request('tools/call', { name: 'echo', arguments: { message: 'direct-again' } });
    assert.ok(d2.messages[0]?.result, d2.body);
  } finally {
    release();
    await up.stop();
    await gw.stop();
  }
});
