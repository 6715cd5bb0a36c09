// Issue 14 item 3: the aggregated GET stream opens an upstream GET stream
// (a feed) only for upstreams whose announced capabilities say they can
// push something (listChanged, subscribe, logging). An idle Claude Code
// client then costs the gateway one descriptor, not one per connector.
// Upstreams: lib/ctl-upstream.mjs with chosen capabilities.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, sleep } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

test('a GET stream on /t/{tenant}/mcp opens feeds only to upstreams that can push; a push from one still arrives', async () => {
  const gw = await startGateway();
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    const ups = {
      quiet: await startCtlUpstream({ name: 'quiet', capabilities: { tools: {} } }),
      loud: await startCtlUpstream({ name: 'loud', capabilities: { tools: { listChanged: true } } }),
      logs: await startCtlUpstream({ name: 'logs', capabilities: { tools: {}, logging: {} } }),
    };
    for (const [n, u] of Object.entries(ups)) {
      const r = await t.putConnector(n, { url: u.url, auth: { type: 'none' } });
      assert.equal(r.status, 201, r.body);
    }
    const tok = (await t.mintToken('alice@acme.com')).token;
    const agg = `${gw.url}/t/acme/mcp`;
    const s = await rawSession(agg, tok);
    for (const n of Object.keys(ups)) {
      const r = await s.request('tools/call', { name: `${n}__echo`, arguments: { message: 'hi' } });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.messages[0].result?.content?.[0]?.text, `${n}:echo hi`, r.body);
    }
    const g = await openStream(agg, { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
    assert.equal(g.status, 200);
    const gets = (n) => ups[n].requests().filter((e) => e.method === 'GET').length;
    await ups.loud.waitRequest((e) => e.method === 'GET');
    await ups.logs.waitRequest((e) => e.method === 'GET');
    await sleep(300);
    assert.equal(gets('quiet'), 0, 'no GET stream to an upstream that announced nothing it could push');
    assert.equal(gets('loud'), 1, 'one GET stream to the upstream with tools.listChanged');
    ups.loud.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    await g.waitFor((m) => m.method === 'notifications/tools/list_changed');
    g.close();
  } finally {
    await gw.stop();
  }
});
