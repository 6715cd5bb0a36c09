// ci-variants: build-w1 build-asan-w2 (one loop, and two under ASan)
// A request whose token expires while it is open: the check right before
// its upstream call compares the token's own expiry, so nothing goes
// upstream with an expired token — also an OAuth access token (mgo_),
// whose identity is its grant, which lives on past each access token. A
// test gets a token that expires within seconds from the tenant's
// signin_max_age_ms, which bounds every token made from an Okta sign-in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { rawSession, mcpPost } from './lib/mcp.mjs';
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

const aggUrl = () => `${fx.gw.url}/t/acme/mcp`;

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
