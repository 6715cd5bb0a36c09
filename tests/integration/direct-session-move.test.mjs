// The race the aggregated endpoint lost (agg-usess-move.test.mjs), on the
// connector endpoint /t/{t}/mcp/{connector}: its gateway session, with the
// upstream's Mcp-Session-Id, is stored when the upstream answers initialize.
// A connector PUT to a new URL deletes the connector's sessions (revoke.c
// end_connector); when the PUT commits while initialize is in flight to the
// OLD server, the session must not be stored after that delete, or its
// later requests would carry the old server's session id to the NEW one.
// (Checked when the aggregated endpoint's defect was fixed: the connector
// endpoint refuses such an initialize; this test keeps it so.)
//
// MCPGATE_TEST_FANOUT_DELAY_MS widens the window between the PUT's commit and
// the loop applying its fan-out (which ends the connector's live exchanges).
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { operatorToken } from './lib/admin.mjs';
import { setupTenant, initializeBody, mcpPost } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { connOnLoop } from './lib/workers.mjs';

async function rawReq(c, seen, method, path, headers, body) {
  const b = body === undefined ? '' : JSON.stringify(body);
  const h = { host: '127.0.0.1', 'content-length': String(Buffer.byteLength(b)), ...headers };
  await c.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${b}`);
  const rs = await c.responses(seen + 1, 15000);
  return rs[seen];
}

test('a session whose initialize went to the old server is not stored for the moved connector', async () => {
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const put = await t.putConnector('cc', { url: ua.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);

  const mc = await connOnLoop(gw, 1);
  const ac = await connOnLoop(gw, 0);

  // the old server's answer to the client's initialize is held
  const release = ua.hold((j) => j.method === 'initialize');
  const first = rawReq(mc, 1, 'POST', '/t/acme/mcp/cc', {
    authorization: `Bearer ${m.token}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json',
  }, initializeBody(1, {}));
  await ua.waitRequest((e) => e.json?.method === 'initialize');

  const moving = rawReq(ac, 1, 'PUT', '/admin/v1/tenants/acme/connectors/cc', {
    authorization: `Bearer ${operatorToken(gw.dataDir)}`, 'content-type': 'application/json',
  }, { url: ub.url, auth: { type: 'none' } });
  await waitFor(async () => {
    const g = await t.admin('GET', '/connectors/cc');
    return g.status === 200 && JSON.parse(g.body).url === ub.url;
  }, { what: 'the move committed' });

  release();
  const fr = await first;
  const mv = await moving;
  assert.ok(mv.status === 200 || mv.status === 201, `${mv.status} ${mv.body}`);
  const sid = fr.headers?.['mcp-session-id'];
  if (sid) {
    // a session came back: a later request of it goes to the new server,
    // never with the old server's session id (the new server issues its ids
    // only in answer to an initialize: one it sees before any is foreign)
    const r = await mcpPost(`${gw.url}/t/acme/mcp/cc`,
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'later' } } },
      { token: m.token, sessionId: sid });
    const seen = ub.requests();
    const firstInit = seen.findIndex((e) => e.json?.method === 'initialize');
    const leaked = seen.filter((e, i) => e.headers['mcp-session-id'] && (firstInit < 0 || i < firstInit));
    assert.deepEqual(leaked.map((e) => e.headers['mcp-session-id']), [],
      `the old server's session id reached the new server (initialize: ${fr.status}; later call: ${r.status} ${r.body.slice(0, 200)})`);
  } else {
    assert.ok(fr.status >= 400 || /"error"/.test(fr.body), `no session, so an error: ${fr.status} ${fr.body}`);
  }
  mc.destroy();
  ac.destroy();
  await gw.stop();
});
