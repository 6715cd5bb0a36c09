// An aggregated GET stream opens one upstream GET stream (a feed) per
// connector that can push, so before this test's fix one employee with
// mcp_concurrent_per_user client streams held that many times the number
// of connectors in upstream descriptors (a review starved another user with
// 241 streams under a 512-descriptor limit). Each feed now takes one of the
// user's mcp_concurrent_per_user units while it runs: a GET whose feeds do
// not fit is 429, and a feed that does not fit later (a new upstream
// session) waits until the user has room. Upstreams: lib/ctl-upstream.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

async function fixture(gw, names) {
  const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
  const ups = {};
  for (const n of names) {
    ups[n] = await startCtlUpstream({ name: n, capabilities: { tools: { listChanged: true } } });
    const r = await t.putConnector(n, { url: ups[n].url, auth: { type: 'none' } });
    assert.equal(r.status, 201, r.body);
  }
  const tok = (await t.mintToken('alice@acme.com')).token;
  return { t, ups, tok, agg: `${gw.url}/t/acme/mcp` };
}

const streamHeaders = (tok, s) => ({ ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' });
const echo = (s, n) => s.request('tools/call', { name: `${n}__echo`, arguments: { message: 'hi' } });

test('a GET stream whose upstream feeds would pass mcp_concurrent_per_user is 429; its units come back when it ends', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '4'] });
  try {
    const { ups, tok, agg } = await fixture(gw, ['one', 'two']);
    const s = await rawSession(agg, tok);
    for (const n of ['one', 'two']) assert.equal((await echo(s, n)).status, 200);
    // the stream and its two feeds: 3 of alice's 4
    const g1 = await openStream(agg, { headers: streamHeaders(tok, s) });
    assert.equal(g1.status, 200);
    await ups.one.waitRequest((e) => e.method === 'GET');
    await ups.two.waitRequest((e) => e.method === 'GET');
    // a second such stream needs 3 more: refused before its 200, not opened half-fed
    const g2 = await openStream(agg, { headers: streamHeaders(tok, s) });
    assert.equal(g2.status, 429, 'the feeds count against the user\'s limit');
    assert.match(g2.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    await g2.ended;
    assert.match(g2.raw(), /mcp_concurrent_per_user/);
    const gets = (n) => ups[n].requests().filter((e) => e.method === 'GET').length;
    assert.equal(gets('one'), 1, 'no upstream stream opened for the refused GET');
    assert.equal(gets('two'), 1);
    // the fourth unit is still there for a call
    assert.equal((await echo(s, 'one')).status, 200);
    const m0 = metricValue(await scrapeMetrics(gw), 'mcpgate_mcp_rate_limited_total', { limit: 'concurrent' });
    assert.ok(m0 >= 1, 'the refusal is counted');
    g1.close();
    await waitFor(async () => {
      const g = await openStream(agg, { headers: streamHeaders(tok, s) });
      const ok = g.status === 200;
      g.close();
      return ok;
    }, { timeoutMs: 5000, what: 'the stream and its feeds gave their units back' });
  } finally {
    await gw.stop();
  }
});

test('a feed for an upstream session opened later waits for a free unit, then opens', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  try {
    const { ups, tok, agg } = await fixture(gw, ['one', 'two']);
    const s = await rawSession(agg, tok);
    // a stream before any upstream session: 1 unit
    const g = await openStream(agg, { headers: streamHeaders(tok, s) });
    assert.equal(g.status, 200);
    // the call to one opens its upstream session; its feed attaches: 2 units after the call
    assert.equal((await echo(s, 'one')).status, 200);
    await ups.one.waitRequest((e) => e.method === 'GET');
    // the call to two holds the third unit while the upstream session (and its feed) opens:
    // the feed does not fit and the call is not held up for it
    assert.equal((await echo(s, 'two')).status, 200);
    // once the call gave its unit back, the feed opens
    await ups.two.waitRequest((e) => e.method === 'GET', 10000);
    // and now alice's three units are the stream and its two feeds
    await waitFor(async () => (await s.request('tools/list', {})).status === 429, { timeoutMs: 5000, what: 'the feeds hold their units' });
    ups.two.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    await g.waitFor((m) => m.method === 'notifications/tools/list_changed');
    g.close();
    await waitFor(async () => (await s.request('tools/list', {})).status === 200, { timeoutMs: 5000, what: 'every unit back when the stream ended' });
  } finally {
    await gw.stop();
  }
});
