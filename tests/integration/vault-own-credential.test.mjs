// An employee who replaces their OWN credential for a connector — another
// key of their own (auth user_header, saved on their page), a reconnect of
// their account (auth oauth, /t/{t}/connect/{c}) — or removes it (deletes
// the key, disconnects) ends what the old credential opened upstream, as an
// admin's rekey of a shared key does for everyone (connector-rekey.test.mjs):
// an upstream knows a session, and the GET stream opened on it, as whoever
// initialized it, so once the save answered nothing more goes upstream under
// the person's old key or account. Only theirs: another employee's sessions
// with the same connector go on untouched.
//
// After the save: the person's upstream GET streams opened with the old
// credential are closed (the connector endpoint's client stream with its
// own), their connector-endpoint sessions are gone (404: initialize again),
// and their aggregated sessions open a fresh upstream session with the new
// credential on the next call. The upstream sessions the old credential
// opened are ended there: one DELETE each, carrying the OLD credential (the
// one that opened it; the new one may be another upstream account) — the
// only requests after the save that carry it.
//
// Real parts: the gateway binary on a real LMDB, the Okta stand-in for the
// sign-in (lib/login.mjs), the controllable upstream (lib/ctl-upstream.mjs),
// which records the credential each request and each open GET stream
// carried, and a token endpoint that issues a new access token per code.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { ALLOW_ALL_POLICY, rawSession, mcpHeaders, openStream } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

let fx, uk, uo, as, asUrl, issued = 0;
const tokens = {};
const who = ['alice', 'bob'];

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: who.map((u) => ({ userName: `${u}@acme.com`, externalId: `00u-${u}` })) } },
    accounts: Object.fromEntries(who.map((u) => [`00u-${u}`, { email: `${u}@acme.com`, email_verified: true }])),
  });
  uk = await startCtlUpstream({ name: 'uk' });
  uo = await startCtlUpstream({ name: 'uo' });
  // a token endpoint: every code gets a new access token (at-1, at-2, …)
  as = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url !== '/token') { res.writeHead(404).end(); return; }
      issued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: `at-${issued}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `rt-${issued}` }));
    });
  });
  await new Promise((r) => as.listen(0, '127.0.0.1', r));
  asUrl = `http://127.0.0.1:${as.address().port}`;
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  let r = await admin('PUT', '/connectors/kk', { url: uk.url, auth: { type: 'user_header', name: 'X-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/oo', {
    url: uo.url, auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, client_id: 'gw', client_secret: 's3cret' },
  });
  assert.equal(r.status, 201, r.body);
  for (const u of who) {
    const m = await admin('POST', '/tokens', { user: `${u}@acme.com`, name: 'laptop', expires_in_days: 30 });
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.json.token;
  }
});

after(async () => {
  await new Promise((r) => as?.close(r));
  await fx?.stop();
});

/* A signed-in person's page: their key for kk, their oauth connection to
 * oo (the authorization server's redirect back is played here with a code
 * of our own: the token endpoint takes any). */
async function page(u) {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: `00u-${u}` });
  assert.equal(s.status, 200, s.text);
  const { json } = await me(b, fx, 'acme');
  const state = json.connections.find((c) => c.connector === 'kk')?.key_state;
  const headers = { 'content-type': 'application/json', 'x-csrf-token': json.csrf };
  return {
    putKey: (key) => b.request('PUT', `${fx.base('acme')}/api/connections/kk`, JSON.stringify({ key, state }), { follow: false, headers }),
    drop: (conn) => b.request('DELETE', `${fx.base('acme')}/api/connections/${conn}`, undefined, { follow: false, headers: { 'x-csrf-token': json.csrf } }),
    async connect() {
      const start = await b.get(`${fx.base('acme')}/connect/oo`, { follow: false });
      assert.equal(start.status, 302, start.text);
      const st = new URL(start.headers.get('location')).searchParams.get('state');
      const cb = await b.get(`${fx.base('acme')}/connect/oo/callback?code=c-${Date.now()}&state=${encodeURIComponent(st)}`, { follow: false });
      assert.equal(cb.status, 200, cb.text.slice(0, 300));
      return `Bearer at-${issued}`;
    },
  };
}

const cred = (conn) => (h) => (conn === 'kk' ? h['x-key'] : h.authorization);

/* Opens, for u, a connector-endpoint session of conn with its GET stream
 * and an aggregated session (an upstream session opened by a call) with its
 * GET stream, all with u's credential `c` at upstream `up`; returns them
 * with the upstream session ids opened with `c` so far. */
async function openEverything(u, conn, up, c) {
  const token = tokens[u];
  const curl = `${fx.base('acme')}/mcp/${conn}`, aurl = `${fx.base('acme')}/mcp`;
  const direct = await rawSession(curl, token);
  const dget = await openStream(curl, { headers: mcpHeaders({ token, sessionId: direct.sessionId, protocolVersion: direct.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(dget.status, 200, 'the connector endpoint GET stream');
  const agg = await rawSession(aurl, token);
  const first = await agg.request('tools/call', { name: `${conn}__echo`, arguments: { message: `${u} before` } });
  assert.equal(first.status, 200, first.body);
  assert.match(first.body, new RegExp(`${up === uk ? 'uk' : 'uo'}:echo ${u} before`));
  const aget = await openStream(aurl, { headers: mcpHeaders({ token, sessionId: agg.sessionId, protocolVersion: agg.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(aget.status, 200, 'the aggregated GET stream');
  await waitFor(() => up.openGets().filter((h) => cred(conn)(h) === c).length === 2, { what: `${u}'s two upstream GET streams open`, timeoutMs: 10000 });
  const sids = new Set(up.requests().filter((e) => cred(conn)(e.headers) === c).map((e) => e.headers['mcp-session-id']).filter(Boolean));
  assert.ok(sids.size >= 2, `the upstream sessions of both endpoints: ${[...sids]}`);
  return { direct, dget, agg, aget, sids, close() { dget.close(); aget.close(); } };
}

/* After u's save: nothing of what u's old credential opened goes on; the
 * next calls open fresh upstream sessions with `now` (null: u has none). */
async function assertCut(u, conn, up, s, old, now, mark) {
  await waitFor(() => up.openGets().every((h) => cred(conn)(h) !== old), {
    what: `${u}'s upstream GET streams opened with the old credential end (open: ${JSON.stringify(up.openGets().map(cred(conn)))})`,
    timeoutMs: 10000,
  });
  const how = await Promise.race([s.dget.ended, new Promise((r) => setTimeout(() => r('still open'), 10000))]);
  assert.notEqual(how, 'still open', `${u}'s connector endpoint GET stream ended`);

  // the connector endpoint's session is gone: initialize again
  const d = await s.direct.request('tools/call', { name: 'echo', arguments: { message: 'direct after' } });
  assert.equal(d.status, 404, `${u}'s connector endpoint session ended: ${d.status} ${d.body}`);

  // the aggregated session goes on: on a fresh upstream session with the
  // new credential, or asking for one
  const a = await s.agg.request('tools/call', { name: `${conn}__echo`, arguments: { message: `${u} agg after` } });
  assert.equal(a.status, 200, a.body);
  if (now) assert.match(a.body, new RegExp(`:echo ${u} agg after`));
  else assert.match(a.body, /-32007/, a.body);

  // each upstream session the old credential opened (and no client ended
  // before the save) is ended there with it
  const live = new Set([...s.sids].filter((id) => !up.requests().slice(0, mark).some((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === id)));
  const ends = () => up.requests().slice(mark).filter((e) => e.method === 'DELETE' && live.has(e.headers['mcp-session-id']));
  await waitFor(() => new Set(ends().map((e) => e.headers['mcp-session-id'])).size === live.size, {
    what: `a DELETE of each of ${u}'s ${live.size} upstream sessions the old credential opened (seen: ${JSON.stringify(ends().map((e) => e.headers['mcp-session-id']))})`,
    timeoutMs: 10000,
  });
  assert.equal(ends().length, live.size, 'one DELETE per upstream session');
  assert.deepEqual(ends().filter((e) => cred(conn)(e.headers) !== old || e.url !== '/mcp').map((e) => `${e.url} ${cred(conn)(e.headers)}`), [],
    'each DELETE carries the credential that opened the session, to the same URL');

  const after = up.requests().slice(mark).filter((e) => !s.others.has(e.headers['mcp-session-id']) && cred(conn)(e.headers) !== s.otherCred &&
    !(e.method === 'DELETE' && s.sids.has(e.headers['mcp-session-id'])));
  if (now) assert.ok(after.some((e) => e.json?.method === 'initialize' && cred(conn)(e.headers) === now), 'a fresh upstream session was opened with the new credential');
  assert.deepEqual(after.filter((e) => cred(conn)(e.headers) !== now).map((e) => `${e.method} ${e.json?.method ?? ''} ${cred(conn)(e.headers)}`), [],
    `every other request of ${u}'s after the save carries the new credential`);
  assert.deepEqual(after.filter((e) => s.sids.has(e.headers['mcp-session-id'])).map((e) => `${e.method} ${e.json?.method ?? ''}`), [],
    `nothing but its DELETE uses an upstream session ${u}'s old credential opened after the save`);
}

/* The other person's sessions went on as they were: their GET streams
 * are still open, and their sessions still use their upstream sessions. */
async function assertUntouched(u, conn, up, s, c, mark) {
  assert.equal(up.openGets().filter((h) => cred(conn)(h) === c).length, 2, `${u}'s upstream GET streams are still open`);
  assert.equal(s.dget.isEnded, false, `${u}'s connector endpoint GET stream is still open`);
  const d = await s.direct.request('tools/call', { name: 'echo', arguments: { message: `${u} still` } });
  assert.equal(d.status, 200, d.body);
  const a = await s.agg.request('tools/call', { name: `${conn}__echo`, arguments: { message: `${u} still` } });
  assert.equal(a.status, 200, a.body);
  const mine = up.requests().slice(mark).filter((e) => cred(conn)(e.headers) === c);
  assert.deepEqual(mine.filter((e) => e.json?.method === 'initialize').length, 0, `${u} needed no new upstream session`);
  assert.ok(mine.filter((e) => e.json?.method === 'tools/call').every((e) => s.sids.has(e.headers['mcp-session-id'])), `${u}'s calls went on on their upstream sessions`);
}

test('an employee\'s new key ends the upstream sessions and streams their old key opened, and only theirs', async () => {
  const a = await page('alice'), b = await page('bob');
  assert.equal((await a.putKey('alice-old-7c1')).status, 204);
  assert.equal((await b.putKey('bob-key-90d')).status, 204);
  const sa = await openEverything('alice', 'kk', uk, 'alice-old-7c1');
  const sb = await openEverything('bob', 'kk', uk, 'bob-key-90d');
  sa.others = sb.sids;
  sa.otherCred = 'bob-key-90d';

  const mark = uk.requests().length;
  const r = await a.putKey('alice-new-e42');
  assert.equal(r.status, 204, r.text);
  await assertCut('alice', 'kk', uk, sa, 'alice-old-7c1', 'alice-new-e42', mark);
  // a new connector-endpoint session works with the new key
  const again = await rawSession(`${fx.base('acme')}/mcp/kk`, tokens.alice);
  const d2 = await again.request('tools/call', { name: 'echo', arguments: { message: 'direct new' } });
  assert.equal(d2.status, 200, d2.body);
  assert.equal(uk.requests().filter((e) => e.json?.params?.arguments?.message === 'direct new').at(-1)?.headers['x-key'], 'alice-new-e42');
  await assertUntouched('bob', 'kk', uk, sb, 'bob-key-90d', mark);
  sa.close();
  again.del().catch(() => {});
  await waitFor(() => !uk.openGets().some((h) => h['x-key'] === 'alice-new-e42'), { what: 'alice\'s streams closed' });

  // deleting the key ends what the new one opened (the aggregated session's
  // fresh upstream session and its GET stream, once one is open)
  const s2 = await openEverything('alice', 'kk', uk, 'alice-new-e42');
  s2.others = sb.sids;
  s2.otherCred = 'bob-key-90d';
  const mark2 = uk.requests().length;
  const del = await a.drop('kk');
  assert.equal(del.status, 204, del.text);
  await assertCut('alice', 'kk', uk, s2, 'alice-new-e42', null, mark2);
  await assertUntouched('bob', 'kk', uk, sb, 'bob-key-90d', mark2);
  s2.close();
  sb.close();
});

test('a reconnect of an employee\'s account ends the upstream sessions their old grant opened, and only theirs', async () => {
  const a = await page('alice'), b = await page('bob');
  const oldA = await a.connect();
  const credB = await b.connect();
  const sa = await openEverything('alice', 'oo', uo, oldA);
  const sb = await openEverything('bob', 'oo', uo, credB);
  sa.others = sb.sids;
  sa.otherCred = credB;

  const mark = uo.requests().length;
  const newA = await a.connect(); // the connect flow again: another grant (an upstream account, maybe another)
  assert.notEqual(newA, oldA);
  await assertCut('alice', 'oo', uo, sa, oldA, newA, mark);
  await assertUntouched('bob', 'oo', uo, sb, credB, mark);
  sa.close();
  await waitFor(() => !uo.openGets().some((h) => h.authorization === newA), { what: 'alice\'s streams closed' });

  // disconnecting ends what the new grant opened
  const s2 = await openEverything('alice', 'oo', uo, newA);
  s2.others = sb.sids;
  s2.otherCred = credB;
  const mark2 = uo.requests().length;
  const del = await a.drop('oo');
  assert.equal(del.status, 204, del.text);
  await assertCut('alice', 'oo', uo, s2, newA, null, mark2);
  await assertUntouched('bob', 'oo', uo, sb, credB, mark2);
  s2.close();
  sb.close();
});
