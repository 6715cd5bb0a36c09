// Review (rv1): an upstream session opened on a connector's OLD server must
// never be stored for, or sent to, the server the connector was moved to.
//
// The aggregated endpoint opens an upstream session lazily: initialize to
// the upstream, notifications/initialized, then a writer job stores the id
// (agg_up.c job_usess). A connector PUT to a new URL drops every stored
// upstream id of that connector (revoke.c end_connector) — but when the PUT
// commits while the session is being opened, the id the OLD server issued
// is stored AFTER the drop (job_usess only checks the policy), and every
// later call of that client session sends it to the NEW server.
//
// The window is the time between the PUT's commit and the loop applying its
// fan-out (which ends the live exchanges of the connector);
// MCPGATE_TEST_FANOUT_DELAY_MS widens it, as a loop busy with other work
// would.
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { operatorToken } from './lib/admin.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { connOnLoop } from './lib/workers.mjs';

/* One request on a raw keep-alive connection (its earlier responses: `seen`). */
async function rawReq(c, seen, method, path, headers, body) {
  const b = body === undefined ? '' : JSON.stringify(body);
  const h = { host: '127.0.0.1', 'content-length': String(Buffer.byteLength(b)), ...headers };
  await c.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${b}`);
  const rs = await c.responses(seen + 1, 15000);
  return rs[seen];
}

test('an upstream session id opened on the old server is not stored for, nor sent to, the moved connector', async () => {
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const put = await t.putConnector('cc', { url: ua.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp`, m.token);

  // the call runs on loop 1, the admin's PUT on loop 0: loop 1 applies the
  // PUT's fan-out (which ends the connector's live exchanges) 1.5 s late
  const mc = await connOnLoop(gw, 1);
  const ac = await connOnLoop(gw, 0);

  // the gateway's notifications/initialized to the old server is held: the
  // upstream session is open there, not yet stored
  const release = ua.hold((j) => j.method === 'notifications/initialized');
  const first = rawReq(mc, 1, 'POST', '/t/acme/mcp', {
    authorization: `Bearer ${m.token}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json',
    'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion,
  }, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'cc__echo', arguments: { message: 'first' } } });
  const note = await ua.waitRequest((e) => e.json?.method === 'notifications/initialized');
  const oldSid = note.headers['mcp-session-id'];
  assert.ok(oldSid, 'the old server issued an upstream session id');

  // the admin moves the connector to another server; it commits (the
  // reply itself waits for every loop's fan-out)
  const moving = rawReq(ac, 1, 'PUT', '/admin/v1/tenants/acme/connectors/cc', {
    authorization: `Bearer ${operatorToken(gw.dataDir)}`, 'content-type': 'application/json',
  }, { url: ub.url, auth: { type: 'none' } });
  await waitFor(async () => {
    const g = await t.admin('GET', '/connectors/cc');
    return g.status === 200 && JSON.parse(g.body).url === ub.url;
  }, { what: 'the move committed' });

  // the old server answers; the session opening goes on
  release();
  const fr = await first; // however it ends
  const mv = await moving;
  assert.ok(mv.status === 200 || mv.status === 201, `${mv.status} ${mv.body}`);

  // a later call of the same client session goes to the new server
  const r = await s.request('tools/call', { name: 'cc__echo', arguments: { message: 'later' } });
  assert.equal(r.status, 200, r.body);
  assert.match(r.body, /ub:echo later/);

  const leaked = ub.requests().filter((e) => e.headers['mcp-session-id'] === oldSid);
  assert.deepEqual(leaked.map((e) => e.json?.method ?? e.method), [],
    `the old server's upstream session id ${oldSid} reached the new server (first call: ${fr.status} ${fr.body})`);
  mc.destroy();
  ac.destroy();
  await gw.stop();
});
