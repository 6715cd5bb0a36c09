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
//
// The same holds for a PUT that keeps the URL but gives the connector
// another credential (connector-rekey.test.mjs): an upstream session the
// OLD key opened must not be stored after the PUT dropped the connector's
// ids, or later calls would go on on it with the new key. And for a new key
// in the URL's query (connector-url-query.test.mjs): the URL shows alike
// (?api_key=…) but its real value changed, which is a move. Nor for the
// connector an admin deleted and made again under its name meanwhile (a
// "replace" by DELETE and PUT, at the same URL with a new key): that is
// another connector, whatever its URL.
//
// The session the old server or key opened is not left open there either
// (agg-usess-refused-end.test.mjs): refused, it is ended with a DELETE
// carrying the credential that opened it, to the URL it was given for —
// except on a server the connector moved away from (another origin), which
// gets nothing more. That DELETE is the one request after the PUT that
// names the old id or carries the old key.
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

/* Opens the race: a call's upstream session is being opened at ua (its
 * notifications/initialized held) when the admin's PUT `to` commits; then
 * the opening goes on. Returns what the checks need. */
async function race(to, { from = (ua) => ua.url, recreate = false } = {}) {
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'], env: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const put = await t.putConnector('cc', { url: from(ua), auth: { type: 'header', name: 'X-Key', value: 'old-key' } });
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

  // the admin's PUT commits (the reply itself waits for every loop's fan-out);
  // with recreate, a DELETE commits first and the PUT makes the connector
  // again (on another connection: the DELETE's reply waits for the fan-out)
  let deleting;
  let pc = ac;
  if (recreate) {
    deleting = rawReq(ac, 1, 'DELETE', '/admin/v1/tenants/acme/connectors/cc', { authorization: `Bearer ${operatorToken(gw.dataDir)}` });
    await waitFor(async () => (await t.admin('GET', '/connectors/cc')).status === 404, { what: 'the DELETE committed' });
    pc = await connOnLoop(gw, 0);
  }
  const moving = rawReq(pc, 1, 'PUT', '/admin/v1/tenants/acme/connectors/cc', {
    authorization: `Bearer ${operatorToken(gw.dataDir)}`, 'content-type': 'application/json',
  }, to(ua, ub));
  const want = to(ua, ub);
  await waitFor(async () => {
    const g = await t.admin('GET', '/connectors/cc');
    if (g.status !== 200) return false;
    const c = JSON.parse(g.body);
    // a URL with a query shows it masked: the description says the PUT is in
    return (want.description ? c.description === want.description : c.url === want.url) && c.auth?.name === want.auth.name;
  }, { what: 'the PUT committed' });
  const mark = ua.requests().length; // what ua received from here on came after the commit

  // the old server answers; the session opening goes on
  release();
  const fr = await first; // however it ends
  const mv = await moving;
  assert.ok(mv.status === 200 || mv.status === 201, `${mv.status} ${mv.body}`);
  if (deleting) assert.equal((await deleting).status, 204);

  // a later call of the same client session
  const r = await s.request('tools/call', { name: 'cc__echo', arguments: { message: 'later' } });
  assert.equal(r.status, 200, r.body);
  mc.destroy();
  ac.destroy();
  if (pc !== ac) pc.destroy();
  return { gw, ua, ub, oldSid, fr, r, mark };
}

/* What ua received after mark, but the DELETE that ended oldSid — which
 * must come, once, as `opened` says it was opened (its credential, URL). */
async function withoutItsEnd(ua, mark, oldSid, opened) {
  const ends = () => ua.requests().slice(mark).filter((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === oldSid);
  await waitFor(() => ends().length > 0, { what: `the DELETE ending ${oldSid}` });
  assert.equal(ends().length, 1);
  assert.ok(opened(ends()[0]), `ended as it was opened: ${ends()[0].url} ${ends()[0].headers['x-key']}`);
  return ua.requests().slice(mark).filter((e) => !(e.method === 'DELETE' && e.headers['mcp-session-id'] === oldSid));
}

test('an upstream session id opened on the old server is not stored for, nor sent to, the moved connector', async () => {
  const { gw, ub, oldSid, fr, r } = await race((ua, ub) => ({ url: ub.url, auth: { type: 'header', name: 'X-Key', value: 'old-key' } }));
  assert.match(r.body, /ub:echo later/);
  const leaked = ub.requests().filter((e) => e.headers['mcp-session-id'] === oldSid);
  assert.deepEqual(leaked.map((e) => e.json?.method ?? e.method), [],
    `the old server's upstream session id ${oldSid} reached the new server (first call: ${fr.status} ${fr.body})`);
  await gw.stop();
});

test('an upstream session the old key opened is not stored for, nor used by, the rekeyed connector', async () => {
  const { gw, ua, oldSid, fr, r, mark } = await race((ua) => ({ url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }));
  assert.match(r.body, /ua:echo later/);
  const after = await withoutItsEnd(ua, mark, oldSid, (e) => e.headers['x-key'] === 'old-key' && e.url === '/mcp');
  const leaked = after.filter((e) => e.headers['mcp-session-id'] === oldSid);
  assert.deepEqual(leaked.map((e) => `${e.json?.method ?? e.method} ${e.headers['x-key']}`), [],
    `the upstream session ${oldSid} the old key opened was used after the PUT (first call: ${fr.status} ${fr.body})`);
  assert.deepEqual(after.filter((e) => e.headers['x-key'] !== 'new-key').map((e) => e.json?.method ?? e.method), [],
    'nothing but its end after the PUT with the old key');
  await gw.stop();
});

test('an upstream session opened with the old key in the URL query is not stored for, nor used by, the connector with a new one', async () => {
  const { gw, ua, oldSid, fr, r, mark } = await race(
    (ua) => ({ url: `${ua.url}?api_key=new-query-key`, description: 'new query key', auth: { type: 'header', name: 'X-Key', value: 'old-key' } }),
    { from: (ua) => `${ua.url}?api_key=old-query-key` });
  assert.match(r.body, /ua:echo later/);
  const after = await withoutItsEnd(ua, mark, oldSid, (e) => e.url === '/mcp?api_key=old-query-key');
  const leaked = after.filter((e) => e.headers['mcp-session-id'] === oldSid);
  assert.deepEqual(leaked.map((e) => `${e.json?.method ?? e.method} ${e.url}`), [],
    `the upstream session ${oldSid} the old query key opened was used after the PUT (first call: ${fr.status} ${fr.body})`);
  assert.deepEqual(after.filter((e) => e.url !== '/mcp?api_key=new-query-key').map((e) => `${e.json?.method ?? e.method} ${e.url}`), [],
    'nothing but its end after the PUT with the old query key');
  await gw.stop();
});

test('an upstream session the deleted connector opened is not stored for, nor used by, the one made again in its name', async () => {
  const { gw, ua, oldSid, fr, r, mark } = await race((ua) => ({ url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }), { recreate: true });
  assert.match(r.body, /ua:echo later/);
  const after = await withoutItsEnd(ua, mark, oldSid, (e) => e.headers['x-key'] === 'old-key' && e.url === '/mcp');
  const leaked = after.filter((e) => e.headers['mcp-session-id'] === oldSid);
  assert.deepEqual(leaked.map((e) => `${e.json?.method ?? e.method} ${e.headers['x-key']}`), [],
    `the upstream session ${oldSid} the deleted connector opened was used by the new one (first call: ${fr.status} ${fr.body})`);
  assert.deepEqual(after.filter((e) => e.headers['x-key'] !== 'new-key').map((e) => e.json?.method ?? e.method), [],
    'nothing but its end after the PUT with the old key');
  await gw.stop();
});
