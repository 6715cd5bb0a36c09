// A person cut off — deactivated over SCIM, deleted over SCIM, blocked by
// an admin (POST …/users/{id}/revoke), or signed out everywhere (Okta's
// Universal Logout) — loses every MCP session at once, and with them the
// upstream sessions those held. Those were forgotten, left open at each
// upstream until its own expiry. They are now ended there as MCP Streamable
// HTTP asks of a client: a DELETE carrying the session id, with the
// credential that opened it — the connector's shared key, or the person's
// own key or OAuth access token — to the URL it was given for, after the
// cut committed (the SCIM reply never waits for them). Nobody else's.
//
// The person's own OAuth grant is revoked at the same time (RFC 7009, the
// vault's durable queue): the DELETE goes regardless of it, with the access
// token read in the cut's own write; neither waits for the other (an
// upstream that already saw the revocation refuses the DELETE, and the
// session expires there).
//
// Real parts: the gateway binary on a real LMDB, the Okta stand-in (sign-in,
// Universal Logout), the controllable upstreams (lib/ctl-upstream.mjs)
// recording each request's headers, a token and revocation endpoint.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { logoutToken, postLogout, emailSubject } from './lib/gtr.mjs';
import { ALLOW_ALL_POLICY, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const SHARED = 'Key shared-3e1f';
const who = ['alice', 'bob', 'carol', 'dave', 'erin'];
let fx, ups, as, asUrl, issued = 0;
const revoked = [];
const tokens = {};

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: who.map((u) => ({ userName: `${u}@acme.com`, externalId: `00u-${u}` })) } },
    accounts: Object.fromEntries(who.map((u) => [`00u-${u}`, { email: `${u}@acme.com`, email_verified: true }])),
  });
  ups = { cc: await startCtlUpstream({ name: 'ua' }), kk: await startCtlUpstream({ name: 'uk' }), oo: await startCtlUpstream({ name: 'uo' }) };
  // every code gets a new access token (at-1, at-2, …); revocations recorded
  as = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/revoke') {
        revoked.push(Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString())));
        res.writeHead(200).end();
        return;
      }
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
  let r = await admin('PUT', '/connectors/cc', { url: ups.cc.url, auth: { type: 'header', name: 'X-Key', value: SHARED } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/kk', { url: ups.kk.url, auth: { type: 'user_header', name: 'X-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/oo', {
    url: ups.oo.url,
    auth: { type: 'oauth', authorize_url: `${asUrl}/authorize`, token_url: `${asUrl}/token`, revocation_url: `${asUrl}/revoke`, client_id: 'gw', client_secret: 's3cret' },
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

/* u signs in on their page: their own key for kk, and their account at oo
 * (the authorization server's redirect back played with a code of our
 * own). Returns the credentials each upstream will see. */
async function ownCredentials(u) {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: `00u-${u}` });
  assert.equal(s.status, 200, s.text);
  const { json } = await me(b, fx, 'acme');
  const state = json.connections.find((c) => c.connector === 'kk')?.key_state;
  const key = `${u}-key-${Date.now() % 100000}`;
  const r = await b.request('PUT', `${fx.base('acme')}/api/connections/kk`, JSON.stringify({ key, state }),
    { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': json.csrf } });
  assert.equal(r.status, 204, r.text);
  const start = await b.get(`${fx.base('acme')}/connect/oo`, { follow: false });
  assert.equal(start.status, 302, start.text);
  const st = new URL(start.headers.get('location')).searchParams.get('state');
  const cb = await b.get(`${fx.base('acme')}/connect/oo/callback?code=c-${u}&state=${encodeURIComponent(st)}`, { follow: false });
  assert.equal(cb.status, 200, cb.text.slice(0, 300));
  return { kk: key, oo: `Bearer at-${issued}` };
}

const cred = (conn) => (h) => (conn === 'oo' ? h.authorization : h['x-key']);

/* u's connector-endpoint session of each connector in conns and one
 * aggregated session calling each; returns {conn: Set of the upstream
 * session ids they hold}. */
async function openSessions(u, conns) {
  const agg = await rawSession(`${fx.base('acme')}/mcp`, tokens[u]);
  for (const c of conns) {
    const d = await rawSession(`${fx.base('acme')}/mcp/${c}`, tokens[u]);
    let r = await d.request('tools/call', { name: 'echo', arguments: { message: `${u} direct` } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, new RegExp(`echo ${u} direct`));
    r = await agg.request('tools/call', { name: `${c}__echo`, arguments: { message: `${u} agg` } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, new RegExp(`echo ${u} agg`));
  }
  const sids = {};
  for (const c of conns) {
    sids[c] = new Set(ups[c].rpc('tools/call').filter((e) => String(e.json.params?.arguments?.message).startsWith(`${u} `))
      .map((e) => e.headers['mcp-session-id']));
    assert.equal(sids[c].size, 2, `${u}'s two upstream sessions at ${c}`);
  }
  return { agg, sids };
}

const deletesOf = (conn, sids) => ups[conn].requests().filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));

/* Each upstream session in s.sids is ended at its upstream: one DELETE
 * each, carrying the credential that opened it (creds[conn]), at /mcp. */
async function assertEnded(u, s, creds) {
  for (const [conn, sids] of Object.entries(s.sids)) {
    await waitFor(() => new Set(deletesOf(conn, sids).map((e) => e.headers['mcp-session-id'])).size === sids.size, {
      what: `a DELETE at ${conn} of each of ${u}'s ${sids.size} upstream sessions (seen: ${JSON.stringify(deletesOf(conn, sids).map((e) => e.headers['mcp-session-id']))})`,
      timeoutMs: 10000,
    });
    const ends = deletesOf(conn, sids);
    assert.equal(ends.length, sids.size, `one DELETE per upstream session at ${conn}`);
    assert.deepEqual(ends.filter((e) => cred(conn)(e.headers) !== creds[conn] || e.url !== '/mcp').map((e) => `${e.url} ${cred(conn)(e.headers)}`), [],
      `each DELETE at ${conn} carries the credential that opened the session (${creds[conn]}), to the URL it was given for`);
  }
}

function assertNotEnded(u, s) {
  for (const [conn, sids] of Object.entries(s.sids))
    assert.deepEqual(deletesOf(conn, sids).map((e) => e.headers['mcp-session-id']), [], `${u}'s upstream sessions at ${conn} were not ended`);
}

test('a SCIM deactivation ends the person\'s upstream sessions there: with the shared key, their own key, their own access token', async () => {
  const ca = await ownCredentials('alice');
  const cb = await ownCredentials('bob');
  const a = await openSessions('alice', ['cc', 'kk', 'oo']);
  const b = await openSessions('bob', ['cc', 'kk', 'oo']);

  const { scim, users } = fx.t.acme;
  const r = await scim.patchOps(`/Users/${users['alice@acme.com'].id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(r.status, 200, r.body);
  await assertEnded('alice', a, { cc: SHARED, kk: ca.kk, oo: ca.oo });
  // her grant's revocation went too (neither waited for the other)
  await waitFor(() => revoked.length > 0, { what: 'the revocation of alice\'s grant at the authorization server', timeoutMs: 10000 });
  assert.ok(revoked.every((x) => x.token !== cb.oo.slice(7) && x.token !== `rt-${cb.oo.slice(10)}`), 'only alice\'s grant is revoked');

  // bob's go on, on their upstream sessions
  assertNotEnded('bob', b);
  for (const c of ['cc', 'kk', 'oo']) {
    const x = await b.agg.request('tools/call', { name: `${c}__echo`, arguments: { message: 'bob still' } });
    assert.equal(x.status, 200, x.body);
    assert.ok(b.sids[c].has(ups[c].rpc('tools/call').at(-1).headers['mcp-session-id']), `bob's call to ${c} went on his upstream session`);
    assert.equal(cred(c)(ups[c].rpc('tools/call').at(-1).headers), c === 'cc' ? SHARED : cb[c]);
  }
  assertNotEnded('bob', b);
});

test('an admin\'s block ends them too', async () => {
  const c = await openSessions('carol', ['cc']);
  const r = await fx.t.acme.admin('POST', '/users/carol%40acme.com/revoke', { reason: 'incident' });
  assert.equal(r.status, 200, r.body);
  await assertEnded('carol', c, { cc: SHARED });
});

test('a SCIM delete ends them too', async () => {
  const { scim, users } = fx.t.acme;
  const d = await openSessions('dave', ['cc']);
  const r = await scim.del(`/Users/${users['dave@acme.com'].id}`);
  assert.equal(r.status, 204, r.body);
  await assertEnded('dave', d, { cc: SHARED });
});

test('a Universal Logout (signed out everywhere) ends them too', async () => {
  const e = await openSessions('erin', ['cc']);
  const r = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/acme/oauth/global-logout` }), emailSubject('erin@acme.com'));
  assert.equal(r.status, 204, r.body);
  await assertEnded('erin', e, { cc: SHARED });
});
