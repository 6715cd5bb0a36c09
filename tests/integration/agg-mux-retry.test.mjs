// The aggregated GET stream reconnects an upstream GET stream that ended
// (gateway/mcp/agg_mux.c, rule 4) after 100 ms, or 1 s after an error. A
// connector PUT that changes the URL in that window forgets the upstream
// session ids of the old server (every aggregated session's, in the PUT's
// transaction): the reconnection must not carry the old server's session id
// to the new one (the rule egress.test.mjs checks for live streams).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, sleep, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ALICE = 'alice@acme.com';

test('an upstream GET stream reconnecting after a connector URL change never takes the old server\'s session id to the new server', async () => {
  const gw = await startGateway();
  const [a, b] = await Promise.all([startCtlUpstream({ name: 'a' }), startCtlUpstream({ name: 'b' })]);
  const t = await setupTenant(gw, { users: [ALICE] });
  assert.equal((await t.putConnector('svc', { url: a.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const agg = `${gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, tok);
  const c = await s.request('tools/call', { name: 'svc__echo', arguments: { message: 'on a' } });
  assert.match(c.body, /a:echo on a/);
  const aSids = new Set(a.requests().map((e) => e.headers['mcp-session-id']).filter(Boolean));
  assert.ok(aSids.size >= 1, 'a issued an upstream session');
  const st = await openStream(agg, { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  assert.equal(st.status, 200);
  await waitFor(() => a.getStreams() === 1, { what: 'the upstream GET stream on a' });
  // a goes away (its GET stream ends): the gateway will reconnect it ...
  await a.stop();
  // ... but first the admin points the connector at b
  const put = await t.putConnector('svc', { url: b.url, auth: { type: 'none' } });
  assert.equal(put.status, 200, put.body);
  await sleep(1600); // past the reconnection delay (1 s after an error)
  const leaked = b.requests().filter((e) => aSids.has(e.headers['mcp-session-id']));
  assert.deepEqual(leaked.map((e) => `${e.method} ${e.headers['mcp-session-id']}`), [],
    'no request to b carries a session id a issued');
  assert.equal(st.isEnded, false, 'the client\'s stream stays open');
  // the stream still gets b's GET stream once the session has one there
  const c2 = await s.request('tools/call', { name: 'svc__echo', arguments: { message: 'on b' } });
  assert.match(c2.body, /b:echo on b/);
  await waitFor(() => b.getStreams() === 1, { what: 'the upstream GET stream on b' });
  st.close();
  await gw.stop();
});
