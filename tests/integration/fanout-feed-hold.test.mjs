// When an aggregated session first uses a connector that can push, the call
// waits until the session's open GET streams have that upstream's GET stream
// (its response head): a server→client request sent before then would be
// lost. Before this test's fix that wait was made by holding every loop's
// fan-out watermark, which every writer reply of the process waits for: an
// upstream slow to answer a GET — one tenant's — held every other tenant's
// SCIM deactivation reply up to revocation_fanout_timeout_ms (counted as a
// fan-out timeout, and logged as one). Now only the call that opened the
// upstream session waits. Ordering, not timing: the upstream's GET is held
// until the test releases it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

for (const workers of [1, 2]) {
  test(`a slow upstream GET holds only the call that opened its session, not another tenant's SCIM reply (${workers} loop(s))`, async () => {
    const gw = await startGateway({ args: ['--revocation-fanout-timeout-ms', '30000', '--workers', String(workers)] });
    let release = () => {};
    try {
      const a = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
      const b = await setupTenant(gw, { id: 'beta', users: ['carol@beta.com'] });
      const up = await startCtlUpstream({ name: 'slow', capabilities: { tools: { listChanged: true } } });
      assert.equal((await a.putConnector('slow', { url: up.url, auth: { type: 'none' } })).status, 201);
      const tok = (await a.mintToken('alice@acme.com')).token;
      const agg = `${gw.url}/t/acme/mcp`;
      const s = await rawSession(agg, tok);
      const g = await openStream(agg, { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
      assert.equal(g.status, 200);

      release = up.holdGets();
      let callDone = false;
      const call = s.request('tools/call', { name: 'slow__echo', arguments: { message: 'hi' } }).finally(() => { callDone = true; });
      await up.waitRequest((e) => e.method === 'GET', 10000); // the feed's GET, unanswered

      // another tenant's deactivation is answered while that GET waits
      let timer;
      const patch = b.deactivate(b.users['carol@beta.com'].id);
      const outcome = await Promise.race([patch.then((r) => ({ r })),
        new Promise((r) => { timer = setTimeout(() => r({ stuck: true }), 10000); })]);
      clearTimeout(timer);
      assert.ok(!outcome.stuck, 'the other tenant\'s SCIM reply waited for this tenant\'s upstream GET');
      assert.equal(outcome.r.active, false, JSON.stringify(outcome.r)); // (deactivate asserts its 200)
      assert.equal(callDone, false, 'the call that opened the upstream session still waits for its feed');
      const m = await scrapeMetrics(gw);
      assert.equal(metricValue(m, 'mcpgate_revocation_fanout_timeouts_total'), 0, 'no fan-out timed out');

      release();
      const r = await call;
      assert.equal(r.status, 200, r.body);
      assert.equal(r.messages[0].result?.content?.[0]?.text, 'slow:echo hi');
      g.close();
    } finally {
      release();
      await gw.stop();
    }
  });
}
