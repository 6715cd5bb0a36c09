// ci-variants: build-w1 build-asan-w2 (one loop, and two under ASan)
// What a request's token opened ends when that token expires, with no
// revocation: a GET stream on the connector endpoint (and the upstream GET
// it relays), the aggregated endpoint's GET stream (and the upstream feed
// it holds), a tools/call whose SSE answer is still running, and a call
// held for approval. The client comes back with its refreshed token (the
// SDK reconnects a GET stream that ends; with the expired token it gets
// 401 and refreshes). Both kinds of token: an employee token made on the
// page (mgw_) and an access token of the gateway's OAuth server (mgo_).
// And a request whose token expires before its call goes upstream: the
// check right before the upstream call compares the token's own expiry,
// so nothing goes upstream with an expired token — an mgo_ token too,
// whose identity is its grant, which lives on past each access token.
// A test gets a token that expires within seconds from the tenant's
// signin_max_age_ms, which bounds every token made from an Okta sign-in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { rawSession, openStream, mcpHeaders, mcpPost, LATEST } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';
const CALLBACK = 'http://127.0.0.1:45123/callback';
const LIFETIME_MS = 8000; // signin_max_age_ms while a short-lived token is made
const TOKEN_EXPIRED = -32011;

let fx, up, t, clientId;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: BOB, externalId: '00u-bob' }] } },
    accounts: { '00u-alice': { email: ALICE }, '00u-bob': { email: BOB } },
  });
  t = fx.t.acme;
  up = await startCtlUpstream({ name: 'ca' }); // announces tools.listChanged: the aggregated stream gets a feed
  const g = await t.scim.createGroup('Reviewers', [t.users[BOB].id]);
  assert.ok(g.id, JSON.stringify(g));
  let r = await t.admin('PUT', '/connectors/ca', { url: up.url });
  assert.equal(r.status, 201, r.body);
  r = await t.admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['*'], connector: 'ca', allow: ['echo', 'ask'], approve: ['slow'], approvers: ['Reviewers'], approval_timeout_s: 300 }],
  });
  assert.equal(r.status, 200, r.body);
  await t.setSettings({ self_service_tokens: true });
  const reg = await fetch(`${fx.base('acme')}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Expiry test client', redirect_uris: ['http://127.0.0.1/callback'] }),
  });
  assert.equal(reg.status, 201, await reg.clone().text());
  clientId = (await reg.json()).client_id;
});

after(async () => { if (fx) await fx.stop(); });

const b64u = (b) => Buffer.from(b).toString('base64url');

/** alice's employee token made on her page, expiring LIFETIME_MS after her sign-in. */
async function shortPageToken() {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200, s.text?.slice(0, 300));
  const m = await me(b, fx, 'acme');
  assert.equal(m.status, 200, m.text);
  await t.setSettings({ signin_max_age_ms: LIFETIME_MS });
  try {
    const made = await b.post(`${fx.base('acme')}/api/tokens`, JSON.stringify({ name: 'short', expires_days: 1 }), {
      follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': m.json.csrf },
    });
    assert.equal(made.status, 201, made.text);
    return JSON.parse(made.text).token;
  } finally {
    await t.setSettings({ signin_max_age_ms: 7 * 86400000 });
  }
}

/** An access token of the gateway's OAuth server for alice, expiring LIFETIME_MS after her sign-in. */
async function shortAccessToken() {
  await t.setSettings({ signin_max_age_ms: LIFETIME_MS });
  try {
    const verifier = b64u(crypto.randomBytes(32));
    const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
    const q = new URLSearchParams({
      response_type: 'code', client_id: clientId, redirect_uri: CALLBACK, state: 'st', code_challenge: challenge,
      code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`,
    });
    const b = fx.browser();
    const isCb = (u) => u.startsWith(CALLBACK);
    let res = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: isCb });
    if (!res.stopped && res.status === 200 && /oauth\/consent/.test(res.text))
      res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
    assert.equal(res.stopped, true, `authorize ended at the callback: ${res.status} ${res.text?.slice(0, 300)}`);
    const code = new URL(res.url).searchParams.get('code');
    const r = await fetch(`${fx.base('acme')}/oauth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK, client_id: clientId, code_verifier: verifier }).toString(),
    });
    const j = await r.json();
    assert.equal(r.status, 200, JSON.stringify(j));
    assert.ok(j.expires_in <= LIFETIME_MS / 1000, `bounded by the sign-in's age: ${JSON.stringify(j)}`);
    return j.access_token;
  } finally {
    await t.setSettings({ signin_max_age_ms: 7 * 86400000 });
  }
}

const connUrl = () => `${fx.gw.url}/t/acme/mcp/ca`;
const aggUrl = () => `${fx.gw.url}/t/acme/mcp`;

const getStream = (url, token, s) => openStream(url, {
  headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion },
});
const postStream = (url, token, s, body) => openStream(url, {
  method: 'POST', body,
  headers: mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }),
});

/** Opens, with token, every kind of stream a token can hold; returns them. */
async function openAll(token) {
  const direct = await rawSession(connUrl(), token);
  const agg = await rawSession(aggUrl(), token);
  // the aggregated session opens its upstream session with ca: its GET stream feeds from it
  const list = await agg.request('tools/list');
  assert.equal(list.status, 200, list.body);
  const gets0 = up.openGets().length;
  const connGet = await getStream(connUrl(), token, direct);
  assert.equal(connGet.status, 200, 'the connector endpoint\'s GET stream opens');
  const aggGet = await getStream(aggUrl(), token, agg);
  assert.equal(aggGet.status, 200, 'the aggregated GET stream opens');
  // the connector stream's upstream GET and the aggregated stream's feed
  await waitFor(() => up.openGets().length >= gets0 + 2, { timeoutMs: 8000, what: 'both upstream GET streams open' });
  // an SSE answer still running: the upstream asks the client something and waits
  const ask = await postStream(connUrl(), token, direct, { jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'ask', arguments: {} } });
  assert.equal(ask.status, 200);
  assert.match(String(ask.headers['content-type']), /text\/event-stream/);
  await ask.waitFor((m) => m.method === 'elicitation/create');
  // a call held for approval
  const held = await postStream(connUrl(), token, direct, { jsonrpc: '2.0', id: 42, method: 'tools/call', params: { name: 'slow', arguments: { ms: 1 } } });
  assert.equal(held.status, 200);
  assert.match(String(held.headers['content-type']), /text\/event-stream/);
  return { direct, agg, connGet, aggGet, ask, held };
}

async function pendingOfAlice() {
  const r = await t.admin('GET', '/approvals?state=pending');
  assert.equal(r.status, 200, r.body);
  return r.json.approvals.filter((a) => a.user === t.users[ALICE].id);
}

const EXPIRED_METRIC = 'mcpgate_mcp_client_streams_expired_total';
const expiredCount = async () => metricValue(await scrapeMetrics(fx.gw), EXPIRED_METRIC, { tenant: 'acme', connector: 'ca' });

async function endsAtExpiry(token) {
  const before = (await pendingOfAlice()).length;
  const expired0 = await expiredCount();
  const s = await openAll(token);
  await waitFor(async () => (await pendingOfAlice()).length > before, { timeoutMs: 8000, what: 'the held call\'s request stored' });
  // nothing revokes anything: the token only expires (the wait is a
  // bound, not a timing: each stream's end is what is polled)
  const streams = [['the connector GET stream', s.connGet], ['the aggregated GET stream', s.aggGet],
    ['the running SSE answer', s.ask], ['the held call\'s stream', s.held]];
  await waitFor(() => streams.every(([, st]) => st.isEnded), { timeoutMs: LIFETIME_MS + 15000, what: 'every stream ended' })
    .catch(() => {});
  const open = streams.filter(([, st]) => !st.isEnded).map(([what]) => what);
  assert.deepEqual(open, [], `still open after the token expired: ${open.join(', ')}`);
  // the GET streams end cleanly: the client reconnects (and gets 401)
  assert.equal(s.connGet.endedHow === 'end' || s.connGet.endedHow === 'close', true, s.connGet.endedHow);
  // the running answer and the held call end with an error naming the expiry, for their request
  const askErr = s.ask.messages.find((m) => m.id === 41);
  assert.equal(askErr?.error?.code, TOKEN_EXPIRED, JSON.stringify(s.ask.messages));
  assert.match(askErr.error.message, /token expired/);
  const heldErr = s.held.messages.find((m) => m.id === 42);
  assert.equal(heldErr?.error?.code, TOKEN_EXPIRED, JSON.stringify(s.held.messages));
  assert.match(heldErr.error.message, /expired while this call waited for approval: request [0-9a-f]{32} stays pending/);
  // counted for the SRE: the connector endpoint's GET stream, the running
  // answer and the held call (the aggregated stream counts under its own entry)
  assert.ok(await expiredCount() >= expired0 + 3, `${EXPIRED_METRIC}: ${expired0} -> ${await expiredCount()}`);
  // the request stays decidable (an approval becomes the retry's grant)
  assert.equal((await pendingOfAlice()).length, before + 1, 'the approval request is still pending');
  // the upstream GET streams the client streams held are released
  await waitFor(() => up.openGets().length === 0, { timeoutMs: 8000, what: 'the upstream GET streams closed' });
  // and the token itself is refused now: the client refreshes it
  for (const [url, sess] of [[connUrl(), s.direct], [aggUrl(), s.agg]]) {
    const r = await mcpPost(url, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { token, sessionId: sess.sessionId, protocolVersion: LATEST });
    assert.equal(r.status, 401, `${url}: ${r.status} ${r.body}`);
    assert.match(String(r.headers['www-authenticate']), /invalid_token/);
  }
}

test('an employee token made on the page: its GET streams, a running SSE answer and a held call end when it expires', async () => {
  await endsAtExpiry(await shortPageToken());
});

test('an access token of the gateway\'s OAuth server: the same, though its grant lives on', async () => {
  await endsAtExpiry(await shortAccessToken());
});

test('an aggregated call whose upstream session opens past its OAuth access token\'s expiry is not forwarded: the check before the upstream call compares the token\'s expiry', async () => {
  const token = await shortAccessToken();
  const agg = await rawSession(aggUrl(), token);
  const inits0 = up.rpc('initialize').length;
  const release = up.hold((m) => m.method === 'initialize');
  try {
    // the call opens the session's upstream session first: its initialize waits at the upstream
    const call = mcpPost(aggUrl(), { jsonrpc: '2.0', id: 51, method: 'tools/call', params: { name: 'ca__echo', arguments: { message: 'late' } } },
      { token, sessionId: agg.sessionId, protocolVersion: agg.protocolVersion, timeoutMs: 60000 });
    await waitFor(() => up.rpc('initialize').length > inits0, { timeoutMs: 8000, what: 'the upstream session being opened' });
    // the token expires meanwhile (a new request with it is refused)
    await waitFor(async () => {
      const r = await mcpPost(aggUrl(), { jsonrpc: '2.0', id: 9, method: 'ping' }, { token, sessionId: agg.sessionId, protocolVersion: agg.protocolVersion });
      return r.status === 401;
    }, { timeoutMs: LIFETIME_MS + 15000, intervalMs: 250, what: 'the token expired' });
    release();
    const r = await call;
    assert.equal(r.status, 200, r.body);
    assert.equal(r.messages[0]?.error?.code, TOKEN_EXPIRED, r.body);
    assert.equal(up.rpc('tools/call').filter((e) => e.json.params?.arguments?.message === 'late').length, 0,
      'nothing went upstream with the expired token');
  } finally {
    release();
  }
});
