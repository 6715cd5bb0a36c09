// A connector PUT that keeps the URL but changes the credential — another
// shared key value, or another auth type — ends what was opened upstream
// with the old one, as a move to another URL does: an admin rotating a
// leaked key expects that once the PUT answered, nothing more reaches the
// upstream under the old identity. Upstream sessions were opened with the
// old key (an upstream binds a session to whoever initialized it), so the
// connector endpoint's sessions go (the client's next request is 404 and
// it initializes again), the aggregated sessions open a fresh upstream
// session with the new key, and the upstream GET streams opened with the
// old key end (the connector endpoint's client stream with them).
//
// The upstream sessions the old key opened are not only forgotten: each is
// ended at the upstream with an HTTP DELETE carrying its id and the OLD key
// (the credential it was opened with: an upstream knows a session as
// whoever initialized it), to the same URL — the one thing the old key
// still carries after the PUT. A move to another origin sends nothing to
// the old server (the admin moved the connector away from it), not even a
// DELETE; a move within the origin (another path) ends them at the old URL,
// as a rekey does; a deleted connector's sessions are ended too.
//
// Real parts: the gateway binary on a real LMDB, the controllable upstream
// (lib/ctl-upstream.mjs), which records the header each request and each
// open GET stream carried.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const OLD = 'Key old-4f1c0a';
const NEW = 'Key new-93be27';

/* The upstream sessions the gateway's capability probes opened at up (each
 * ended by the probe itself: not a client's). */
const probeSids = (up) => new Set(up.requests().filter((e) => e.json?.method === 'initialize' && e.json.params?.clientInfo?.name === 'mcpgate').map((e) => e.issued));

/* Opens, for alice, a connector-endpoint session with its GET stream and an
 * aggregated session (an upstream session opened by a call) with its GET
 * stream, all with the OLD key; returns them with the upstream session ids
 * the upstream issued so far. */
async function openEverything(gw, up, token) {
  const direct = await rawSession(`${gw.url}/t/acme/mcp/cc`, token);
  const dget = await openStream(`${gw.url}/t/acme/mcp/cc`, {
    headers: mcpHeaders({ token, sessionId: direct.sessionId, protocolVersion: direct.protocolVersion, accept: 'text/event-stream' }),
  });
  assert.equal(dget.status, 200, 'the connector endpoint GET stream');
  const agg = await rawSession(`${gw.url}/t/acme/mcp`, token);
  const first = await agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'before' } });
  assert.equal(first.status, 200, first.body);
  assert.match(first.body, /ua:echo before/);
  const aget = await openStream(`${gw.url}/t/acme/mcp`, {
    headers: mcpHeaders({ token, sessionId: agg.sessionId, protocolVersion: agg.protocolVersion, accept: 'text/event-stream' }),
  });
  assert.equal(aget.status, 200, 'the aggregated GET stream');
  await waitFor(() => up.openGets().length === 2, { what: 'both upstream GET streams open', timeoutMs: 10000 });
  assert.ok(up.openGets().every((h) => h['x-key'] === OLD), 'opened with the old key');
  const probes = probeSids(up);
  const oldSids = new Set(up.requests().map((e) => e.headers['mcp-session-id']).filter((id) => id && !probes.has(id)));
  assert.ok(oldSids.size >= 2, `the upstream sessions of both endpoints: ${[...oldSids]}`);
  return { direct, dget, agg, aget, oldSids };
}

/* The DELETEs up received after mark of the upstream sessions in sids. */
const deletesOf = (up, sids, mark = 0) => up.requests().slice(mark).filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));

/* Every upstream session in sids is ended at up: one DELETE each, with
 * credential `key` (the one that opened it), at path `path`. */
async function assertEnded(up, sids, mark, key, path = '/mcp') {
  await waitFor(() => new Set(deletesOf(up, sids, mark).map((e) => e.headers['mcp-session-id'])).size === sids.size, {
    what: `a DELETE of each of the ${sids.size} upstream sessions the old credential opened (seen: ${JSON.stringify(deletesOf(up, sids, mark).map((e) => e.headers['mcp-session-id']))})`,
    timeoutMs: 10000,
  });
  const ends = deletesOf(up, sids, mark);
  assert.equal(ends.length, sids.size, 'one DELETE per upstream session');
  assert.deepEqual(ends.filter((e) => e.headers['x-key'] !== key || e.url !== path).map((e) => `${e.url} ${e.headers['x-key']}`), [],
    'each DELETE carries the credential that opened the session, to the URL it was given for');
}

/* After the PUT: nothing of the old key's upstream sessions goes on. */
async function assertCut(gw, up, token, s, mark) {
  // the upstream GET streams opened with the old key end, and so does the
  // connector endpoint's client stream that relayed one
  await waitFor(() => up.openGets().every((h) => h['x-key'] !== OLD), {
    what: `the upstream GET streams opened with the old key end (open: ${JSON.stringify(up.openGets().map((h) => h['x-key']))})`,
    timeoutMs: 10000,
  });
  const how = await Promise.race([s.dget.ended, new Promise((r) => setTimeout(() => r('still open'), 10000))]);
  assert.notEqual(how, 'still open', 'the connector endpoint GET stream ended');

  // the connector endpoint's session is gone: initialize again
  const d = await s.direct.request('tools/call', { name: 'echo', arguments: { message: 'direct after' } });
  assert.equal(d.status, 404, `the connector endpoint session ended: ${d.status} ${d.body}`);
  const again = await rawSession(`${gw.url}/t/acme/mcp/cc`, token);
  const d2 = await again.request('tools/call', { name: 'echo', arguments: { message: 'direct new' } });
  assert.equal(d2.status, 200, d2.body);
  assert.match(d2.body, /ua:echo direct new/);

  // the aggregated session goes on, on a fresh upstream session
  const a = await s.agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'agg after' } });
  assert.equal(a.status, 200, a.body);
  assert.match(a.body, /ua:echo agg after/);

  // what the old key opened is ended there, with the old key: the only
  // requests after the PUT that carry it
  await assertEnded(up, s.oldSids, mark, OLD);
  const after = up.requests().slice(mark).filter((e) => !(e.method === 'DELETE' && (s.oldSids.has(e.headers['mcp-session-id']) ||
    probeSids(up).has(e.headers['mcp-session-id'])))); /* a probe ends its own session with the key it opened it with */
  assert.ok(after.some((e) => e.json?.method === 'initialize'), 'a fresh upstream session was opened');
  assert.deepEqual(after.filter((e) => e.headers['x-key'] !== NEW).map((e) => `${e.method} ${e.json?.method ?? ''} ${e.headers['x-key']}`), [],
    'every other request after the PUT carries the new key');
  assert.deepEqual(after.filter((e) => s.oldSids.has(e.headers['mcp-session-id'])).map((e) => `${e.method} ${e.json?.method ?? ''}`), [],
    'nothing but its DELETE uses an upstream session opened with the old key after the PUT');
  s.aget.close();
  again.del().catch(() => {});
}

test('a new shared key value ends the upstream sessions and GET streams opened with the old one', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: OLD } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await openEverything(gw, up, m.token);

  const mark = up.requests().length;
  r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: NEW } });
  assert.equal(r.status, 200, r.body);
  await assertCut(gw, up, m.token, s, mark);

  // a PUT that changes nothing of the credential (the description) ends nothing
  const s2 = await rawSession(`${gw.url}/t/acme/mcp/cc`, m.token);
  r = await t.putConnector('cc', { url: up.url, description: 'renamed', auth: { type: 'header', name: 'X-Key', value: NEW } });
  assert.equal(r.status, 200, r.body);
  const same = await s2.request('tools/call', { name: 'echo', arguments: { message: 'kept' } });
  assert.equal(same.status, 200, same.body);
  assert.match(same.body, /ua:echo kept/);
  await gw.stop();
});

test('another auth type (shared key → each employee\'s own key) ends them too', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: OLD } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await openEverything(gw, up, m.token);

  // the same upstream, now with each person's own key: what the shared
  // key opened there must not go on as anyone
  const mark = up.requests().length;
  r = await t.putConnector('cc', { url: up.url, auth: { type: 'user_header', name: 'X-Key' } });
  assert.equal(r.status, 200, r.body);
  await waitFor(() => up.openGets().every((h) => h['x-key'] !== OLD), {
    what: 'the upstream GET streams opened with the shared key end', timeoutMs: 10000,
  });
  const how = await Promise.race([s.dget.ended, new Promise((res) => setTimeout(() => res('still open'), 10000))]);
  assert.notEqual(how, 'still open', 'the connector endpoint GET stream ended');
  const d = await s.direct.request('tools/call', { name: 'echo', arguments: { message: 'direct after' } });
  assert.equal(d.status, 404, `the connector endpoint session ended: ${d.status} ${d.body}`);
  // alice has no key of her own yet: the aggregated endpoint asks for it
  const a = await s.agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'agg after' } });
  assert.equal(a.status, 200, a.body);
  assert.match(a.body, /-32007/, a.body);
  // ended with the shared key that opened them: the same server
  await assertEnded(up, s.oldSids, mark, OLD);
  const after = up.requests().slice(mark).filter((e) => !(e.method === 'DELETE' && (s.oldSids.has(e.headers['mcp-session-id']) ||
    probeSids(up).has(e.headers['mcp-session-id'])))); /* a probe ends its own session with the key it opened it with */
  assert.deepEqual(after.filter((e) => e.headers['x-key'] === OLD || s.oldSids.has(e.headers['mcp-session-id']))
    .map((e) => `${e.method} ${e.json?.method ?? ''}`), [], 'nothing but their DELETEs after the PUT with the shared key or its sessions');
  s.aget.close();
  await gw.stop();
});

test('a move within the origin ends the old sessions at the old URL; a move to another origin sends nothing there', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const other = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: OLD } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);

  // another path at the same server: ended at the old path, with the key
  // that opened them (it was given for that server)
  const s = await openEverything(gw, up, m.token);
  let mark = up.requests().length;
  r = await t.putConnector('cc', { url: `${up.url}/v2`, auth: { type: 'header', name: 'X-Key', value: NEW } });
  assert.equal(r.status, 200, r.body);
  await assertEnded(up, s.oldSids, mark, OLD, '/mcp');
  s.dget.close();
  s.aget.close();

  // another server: nothing more reaches the old one, not even a DELETE,
  // and the new one never hears an old id
  const agg = await rawSession(`${gw.url}/t/acme/mcp`, m.token);
  const a = await agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'at v2' } });
  assert.equal(a.status, 200, a.body);
  const v2 = up.requests().slice(mark).filter((e) => e.url === '/mcp/v2' && e.json?.method === 'notifications/initialized').map((e) => e.headers['mcp-session-id']);
  assert.equal(v2.length, 1, 'the aggregated session opened one at /mcp/v2');
  mark = up.requests().length;
  r = await t.putConnector('cc', { url: other.url, auth: { type: 'header', name: 'X-Key', value: NEW } });
  assert.equal(r.status, 200, r.body);
  // then a rekey at the new server, whose DELETE goes out after any the
  // move would have sent (one loop sends them in order)
  const b = await agg.request('tools/call', { name: 'cc__echo', arguments: { message: 'at ub' } });
  assert.equal(b.status, 200, b.body);
  assert.match(b.body, /ub:echo at ub/);
  const ubSids = new Set(other.rpc('notifications/initialized').map((e) => e.headers['mcp-session-id']));
  r = await t.putConnector('cc', { url: other.url, auth: { type: 'header', name: 'X-Key', value: OLD } });
  assert.equal(r.status, 200, r.body);
  await assertEnded(other, ubSids, 0, NEW);
  // (a capability probe of an earlier PUT may still arrive: it opens, and
  // ends, its own)
  const probes = probeSids(up);
  assert.deepEqual(up.requests().slice(mark).filter((e) => (e.method === 'DELETE' || e.headers['mcp-session-id']) && !probes.has(e.headers['mcp-session-id']))
    .map((e) => `${e.method} ${e.url} ${e.headers['x-key']}`), [], 'nothing of a session reached the old server after the move');
  assert.deepEqual(other.requests().filter((e) => v2.includes(e.headers['mcp-session-id']) || s.oldSids.has(e.headers['mcp-session-id'])).map((e) => e.method), [],
    'no old id reached the new server');
  await gw.stop();
});

test('a deleted connector\'s upstream sessions are ended with its credential', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: OLD } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await openEverything(gw, up, m.token);
  const mark = up.requests().length;
  r = await t.admin('DELETE', '/connectors/cc');
  assert.equal(r.status, 204, r.body);
  await assertEnded(up, s.oldSids, mark, OLD);
  s.dget.close();
  s.aget.close();
  await gw.stop();
});
