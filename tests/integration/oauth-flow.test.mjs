// ci-variants: build-w1 build-asan-w2 (a browser or client flow: one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// The gateway as OAuth authorization server for MCP clients (issue 17), the
// way an MCP client walks it: DCR → authorize (the Okta sign-in at the real
// oidc-provider, then the gateway's consent page) → code → token → the
// official SDK client lists tools with the access token; refresh rotation
// with the grace window and reuse detection; code replay; PKCE, client,
// redirect and resource refusals; audience per connector; RFC 7009; a
// deactivated person's grants gone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request, sleep, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, setCookieFor } from './lib/login.mjs';
import { startEverything, connectClient } from './lib/mcp.mjs';
import crypto from 'node:crypto';

let fx, up, clientId;
const REDIRECT = 'http://127.0.0.1/callback';

const b64u = (b) => Buffer.from(b).toString('base64url');
function pkce() {
  const verifier = b64u(crypto.randomBytes(32));
  return { verifier, challenge: b64u(crypto.createHash('sha256').update(verifier).digest()) };
}

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: {
        users: [
          { userName: 'alice@acme.com', externalId: '00u-alice' },
          { userName: 'bob@acme.com', externalId: '00u-bob' },
          { userName: 'carol@acme.com', externalId: '00u-carol' },
        ],
      },
    },
    accounts: { '00u-alice': { email: 'alice@acme.com' }, '00u-bob': { email: 'bob@acme.com' }, '00u-carol': { email: 'carol@acme.com' } },
    gatewayArgs: ['--refresh-reuse-grace-ms', '1500'],
  });
  up = await startEverything();
  const t = fx.t.acme;
  for (const name of ['everything', 'other']) {
    const r = await t.admin('PUT', `/connectors/${name}`, { url: up.url, description: name });
    assert.equal(r.status, 201, r.body);
  }
  const p = await t.admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
  assert.equal(p.status, 200, p.body);
  const reg = await register({ client_name: 'Test MCP client', redirect_uris: [REDIRECT] });
  assert.equal(reg.status, 201, reg.text);
  clientId = reg.json.client_id;
});

after(async () => {
  await up?.stop?.().catch(() => {});
  if (fx) await fx.stop();
});

async function register(meta) {
  const r = await fetch(`${fx.base('acme')}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(meta),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json };
}

function authorizeUrl({ client = clientId, redirect = 'http://127.0.0.1:45123/callback', challenge, resource, state = 'st-1', method = 'S256' } = {}) {
  const q = new URLSearchParams({ response_type: 'code', client_id: client, redirect_uri: redirect, state });
  if (challenge) q.set('code_challenge', challenge);
  if (method) q.set('code_challenge_method', method);
  q.set('resource', resource ?? `${fx.gw.url}/t/acme/mcp`);
  return `${fx.base('acme')}/oauth/authorize?${q}`;
}

/** Walks authorize → Okta sign-in → consent (allowed) → the redirect; returns its URL's params. */
async function authorize(b, opts = {}) {
  const isCb = (u) => u.startsWith('http://127.0.0.1:45123/') || u.startsWith(opts.redirect ?? '\0');
  let res = await signIn(b, authorizeUrl(opts), { login: opts.login ?? '00u-alice', stopAtCallback: isCb });
  if (!res.stopped && res.status === 200 && /Allow/.test(res.text) && /oauth\/consent/.test(res.text)) {
    res = await b.submitForm(res, { fields: { decision: opts.decision ?? 'allow' }, stopAt: isCb });
  }
  return res;
}

async function token(form) {
  const r = await fetch(`${fx.base('acme')}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString(),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json, headers: r.headers };
}

async function getTokens(b, opts = {}) {
  const { verifier, challenge } = pkce();
  const redirect = opts.redirect ?? 'http://127.0.0.1:45123/callback';
  const res = await authorize(b, { ...opts, challenge, redirect });
  assert.equal(res.stopped, true, `authorize ended at the client's redirect: ${res.status} ${res.url} ${res.text?.slice(0, 300)}`);
  const u = new URL(res.url);
  assert.equal(u.searchParams.get('state'), 'st-1');
  assert.equal(u.searchParams.get('iss'), `${fx.gw.url}/t/acme`);
  const code = u.searchParams.get('code');
  assert.match(code ?? '', /^mgc_/);
  const t = await token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: opts.client ?? clientId, code_verifier: verifier });
  return { code, verifier, redirect, t };
}

const mcpInit = (tok, path = '/t/acme/mcp') => request(fx.gw.port, {
  method: 'POST', path,
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
});

test('the whole flow: sign-in, consent, code, token; the SDK client lists tools with the access token', async () => {
  const b = fx.browser();
  const { verifier, challenge } = pkce();
  // first the Okta sign-in, then the consent page naming the client as unverified
  let res = await signIn(b, authorizeUrl({ challenge }), { login: '00u-alice', stopAtCallback: (u) => u.startsWith('http://127.0.0.1:45123/') });
  assert.equal(res.status, 200, res.text?.slice(0, 300));
  assert.match(res.text, /Test MCP client/);
  assert.match(res.text, /not verified/);
  assert.match(res.text, /127\.0\.0\.1:45123/);
  res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: (u) => u.startsWith('http://127.0.0.1:45123/') });
  assert.equal(res.stopped, true);
  const code = new URL(res.url).searchParams.get('code');
  const t = await token({ grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1:45123/callback', client_id: clientId, code_verifier: verifier });
  assert.equal(t.status, 200, t.text);
  assert.equal(t.headers.get('cache-control'), 'no-store');
  assert.match(t.json.access_token, /^mgo_[A-Za-z0-9_-]{43}$/);
  assert.match(t.json.refresh_token, /^mgr_[A-Za-z0-9_-]{43}$/);
  assert.equal(t.json.token_type, 'Bearer');
  assert.ok(t.json.expires_in > 3000 && t.json.expires_in <= 3600);
  const c = await connectClient(`${fx.gw.url}/t/acme/mcp`, t.json.access_token);
  const tools = await c.client.listTools();
  assert.ok(tools.tools.some((x) => x.name === 'everything__echo'), 'the aggregated tools are listed');
  await c.close();
  // the same code again: refused, and the grant it issued is revoked
  const again = await token({ grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1:45123/callback', client_id: clientId, code_verifier: verifier });
  assert.equal(again.status, 400);
  assert.equal(again.json.error, 'invalid_grant');
  assert.equal((await mcpInit(t.json.access_token)).status, 401, 'the replay revoked the first grant');
});

test('consent is remembered for a loopback client; another client asks again; deny goes back with access_denied', async () => {
  const b = fx.browser();
  const first = await getTokens(b);
  assert.equal(first.t.status, 200, first.t.text);
  // the same browser, the same client: no consent page this time
  const { challenge } = pkce();
  const res = await b.get(authorizeUrl({ challenge }), { stopAt: (u) => u.startsWith('http://127.0.0.1:45123/') });
  assert.equal(res.stopped, true, 'straight back with a code');
  // a second client: asked again, and denied
  const reg = await register({ client_name: 'Second client', redirect_uris: [REDIRECT] });
  const res2 = await b.get(authorizeUrl({ client: reg.json.client_id, challenge }));
  assert.equal(res2.status, 200);
  assert.match(res2.text, /Second client/);
  const denied = await b.submitForm(res2, { fields: { decision: 'deny' }, stopAt: (u) => u.startsWith('http://127.0.0.1:45123/') });
  assert.equal(new URL(denied.url).searchParams.get('error'), 'access_denied');
  // a consent form posted without the session's CSRF token is refused
  const res3 = await b.get(authorizeUrl({ client: reg.json.client_id, challenge }));
  const forged = await b.submitForm(res3, { fields: { decision: 'allow', csrf: 'x'.repeat(43) }, follow: false });
  assert.equal(forged.status, 403);
});

test('consent is per resource: one connector\'s does not cover the aggregated endpoint (every connector)', async () => {
  const b = fx.browser();
  const reg = await register({ client_name: 'Scoped client', redirect_uris: [REDIRECT] });
  const client = reg.json.client_id;
  const one = await getTokens(b, { client, resource: `${fx.gw.url}/t/acme/mcp/everything` });
  assert.equal(one.t.status, 200, one.t.text);
  const isCb = (u) => u.startsWith('http://127.0.0.1:45123/');
  // the same connector again: remembered
  let { challenge } = pkce();
  const again = await b.get(authorizeUrl({ client, challenge, resource: `${fx.gw.url}/t/acme/mcp/everything` }), { stopAt: isCb });
  assert.equal(again.stopped, true, 'the same resource: straight back with a code');
  // every connector: the person is asked, naming it
  ({ challenge } = pkce());
  const wider = await b.get(authorizeUrl({ client, challenge, resource: `${fx.gw.url}/t/acme/mcp` }), { stopAt: isCb });
  assert.notEqual(wider.stopped, true, `the aggregated endpoint was not consented to: no code without asking (${wider.url})`);
  assert.equal(wider.status, 200);
  assert.match(wider.text, /oauth\/consent/, 'the consent page');
  const allowed = await b.submitForm(wider, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.match(new URL(allowed.url).searchParams.get('code') ?? '', /^mgc_/);
  // the aggregated endpoint's consent covers each connector
  ({ challenge } = pkce());
  const other = await b.get(authorizeUrl({ client, challenge, resource: `${fx.gw.url}/t/acme/mcp/other` }), { stopAt: isCb });
  assert.equal(other.stopped, true, 'every connector was consented to');
});

test('refresh rotates; the old refresh token again within the grace window gets the same pair; after it the grant dies', async () => {
  const b = fx.browser();
  const { t } = await getTokens(b);
  const r1 = await token({ grant_type: 'refresh_token', refresh_token: t.json.refresh_token, client_id: clientId });
  assert.equal(r1.status, 200, r1.text);
  assert.notEqual(r1.json.refresh_token, t.json.refresh_token);
  const r1b = await token({ grant_type: 'refresh_token', refresh_token: t.json.refresh_token, client_id: clientId });
  assert.equal(r1b.status, 200, 'a concurrent refresh within the grace window');
  assert.equal(r1b.json.access_token, r1.json.access_token);
  assert.equal(r1b.json.refresh_token, r1.json.refresh_token);
  assert.equal((await mcpInit(r1.json.access_token)).status, 200);
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: r1.json.refresh_token, client_id: 'someone-else' })).status, 400);
  await sleep(1700);
  const late = await token({ grant_type: 'refresh_token', refresh_token: t.json.refresh_token, client_id: clientId });
  assert.equal(late.status, 400);
  assert.equal(late.json.error, 'invalid_grant');
  assert.equal((await mcpInit(r1.json.access_token)).status, 401, 'the whole family is revoked');
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: r1.json.refresh_token, client_id: clientId })).status, 400);
});

test('refusals: unknown client and unregistered redirect (a page, no redirect); no PKCE, wrong resource (back to the client); wrong verifier', async () => {
  const b = fx.browser();
  await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  const { verifier, challenge } = pkce();
  let r = await b.get(authorizeUrl({ client: 'mcpc_nope', challenge }), { follow: false });
  assert.equal(r.status, 400);
  assert.match(r.text, /Unknown application/);
  r = await b.get(authorizeUrl({ redirect: 'http://evil.example/cb', challenge }), { follow: false });
  assert.equal(r.status, 400);
  assert.match(r.text, /did not register/);
  r = await b.get(authorizeUrl({ redirect: 'http://127.0.0.1:45123/other', challenge }), { follow: false });
  assert.equal(r.status, 400, 'loopback: any port, but the same path');
  r = await b.get(authorizeUrl({ challenge: undefined, method: null }), { follow: false });
  assert.equal(r.status, 302);
  assert.equal(new URL(r.headers.get('location')).searchParams.get('error'), 'invalid_request');
  r = await b.get(authorizeUrl({ challenge, resource: `${fx.gw.url}/t/other/mcp` }), { follow: false });
  assert.equal(new URL(r.headers.get('location')).searchParams.get('error'), 'invalid_target');
  r = await b.get(authorizeUrl({ challenge, resource: `${fx.gw.url}/t/acme/mcp/nope` }), { follow: false });
  assert.equal(new URL(r.headers.get('location')).searchParams.get('error'), 'invalid_target');
  // a good code with the wrong verifier, the wrong redirect_uri, another client
  const got = await getTokens(b);
  assert.equal(got.t.status, 200);
  const { challenge: ch2, verifier: v2 } = pkce();
  const res = await authorize(b, { challenge: ch2 });
  const code = new URL(res.url).searchParams.get('code');
  for (const bad of [
    { code_verifier: verifier },
    { redirect_uri: 'http://127.0.0.1:9/callback' },
    { client_id: 'mcpc_other' },
  ]) {
    const x = await token({ grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1:45123/callback', client_id: clientId, code_verifier: v2, ...bad });
    assert.equal(x.status, 400, JSON.stringify(bad));
    assert.equal(x.json.error, 'invalid_grant');
  }
  const ok = await token({ grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1:45123/callback', client_id: clientId, code_verifier: v2 });
  assert.equal(ok.status, 200, 'the code survived the failed attempts');
  assert.equal((await token({ grant_type: 'password', username: 'a', client_id: clientId })).json.error, 'unsupported_grant_type');
});

test('audience: a grant for one connector works there only; RFC 7009 revocation; deactivation ends every grant', async () => {
  const b = fx.browser();
  const one = await getTokens(b, { resource: `${fx.gw.url}/t/acme/mcp/everything` });
  assert.equal(one.t.status, 200, one.t.text);
  assert.equal((await mcpInit(one.t.json.access_token, '/t/acme/mcp/everything')).status, 200);
  assert.equal((await mcpInit(one.t.json.access_token, '/t/acme/mcp/other')).status, 401, 'another connector');
  assert.equal((await mcpInit(one.t.json.access_token, '/t/acme/mcp')).status, 401, 'the aggregated endpoint');
  // revoke (RFC 7009): 200, then the token is dead
  const rv = await fetch(`${fx.base('acme')}/oauth/revoke`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: one.t.json.refresh_token, client_id: clientId }).toString(),
  });
  assert.equal(rv.status, 200);
  assert.equal((await mcpInit(one.t.json.access_token, '/t/acme/mcp/everything')).status, 401);
  // bob signs in and gets a grant; IT deactivates bob: it stops working
  const bb = fx.browser();
  const bob = await getTokens(bb, { login: '00u-bob' });
  assert.equal(bob.t.status, 200, bob.t.text);
  assert.equal((await mcpInit(bob.t.json.access_token)).status, 200);
  const bobId = fx.t.acme.users['bob@acme.com'].id;
  const p = await fx.t.acme.scim.patchOps(`/Users/${bobId}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(p.status, 200);
  assert.equal((await mcpInit(bob.t.json.access_token)).status, 401);
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: bob.t.json.refresh_token, client_id: clientId })).status, 400);
});

test('the employee page lists connected applications; disconnect one; sign out everywhere disconnects the rest', async () => {
  const b = fx.browser();
  const g1 = await getTokens(b);
  const before = JSON.parse((await b.get(`${fx.base('acme')}/api/me`, { follow: false })).text).grants.map((g) => g.id);
  const g2 = await getTokens(b);
  assert.equal(g1.t.status, 200);
  assert.equal(g2.t.status, 200);
  const meRes = await b.get(`${fx.base('acme')}/api/me`, { follow: false });
  assert.equal(meRes.headers.get('cache-control'), 'no-store', 'one Cache-Control, not two');
  const mj = JSON.parse(meRes.text);
  const fresh = mj.grants.filter((g) => !before.includes(g.id));
  assert.equal(fresh.length, 1, 'the second grant is listed');
  assert.equal(fresh[0].client_id, clientId);
  assert.equal(fresh[0].client_name, 'Test MCP client');
  assert.equal(fresh[0].resource, '');
  assert.match(fresh[0].created, /^\d{4}-\d{2}-\d{2}T/);
  // carol cannot disconnect alice's application
  const cb = fx.browser();
  await signIn(cb, `${fx.base('acme')}/login`, { login: '00u-carol' });
  const carolMe = JSON.parse((await cb.get(`${fx.base('acme')}/api/me`, { follow: false })).text);
  let r = await cb.request('DELETE', `${fx.base('acme')}/api/grants/${fresh[0].id}`, undefined, { follow: false, headers: { 'x-csrf-token': carolMe.csrf } });
  assert.equal(r.status, 404, 'not carol\'s');
  // alice: without the CSRF token refused; with it the second grant goes, the first stays
  r = await b.request('DELETE', `${fx.base('acme')}/api/grants/${fresh[0].id}`, undefined, { follow: false });
  assert.equal(r.status, 403);
  r = await b.request('DELETE', `${fx.base('acme')}/api/grants/${fresh[0].id}`, undefined, { follow: false, headers: { 'x-csrf-token': mj.csrf } });
  assert.equal(r.status, 204, r.text);
  assert.equal((await mcpInit(g2.t.json.access_token)).status, 401, 'the disconnected grant stopped working');
  assert.equal((await mcpInit(g1.t.json.access_token)).status, 200, 'the other still works');
  r = await b.post(`${fx.base('acme')}/signout-everywhere`, { csrf: mj.csrf }, { follow: false });
  assert.equal(r.status, 303);
  assert.equal((await mcpInit(g1.t.json.access_token)).status, 401, 'sign out everywhere revoked every grant');
});

// Disconnecting an application withdraws the person's consent to it. Before
// this test's fix a disconnect revoked the grant only: the consent stood, so
// the same client (a loopback one: Claude Code, or anything on the laptop
// that uses its client_id) got a new code at its next authorization without
// the person being asked — the browser went straight back to it, and
// "Disconnect" was undone without a click. Now every disconnect (the page's,
// the admin's, one or all, and sign out everywhere) makes the next
// authorization ask again; another client's consent is untouched.
test('a disconnected application is asked for consent again before it is connected again', async () => {
  const reg = await register({ client_name: 'Other MCP client', redirect_uris: [REDIRECT] });
  assert.equal(reg.status, 201, reg.text);
  const other = reg.json.client_id;
  const b = fx.browser();
  const login = '00u-carol';
  const asks = async (client = clientId) => {
    const { challenge } = pkce();
    const res = await signIn(b, authorizeUrl({ client, challenge }), { login, stopAtCallback: (u) => u.startsWith('http://127.0.0.1:45123/') });
    if (res.stopped) return false;
    assert.match(res.text ?? '', /oauth\/consent/, `the consent page, or a code: ${res.status} ${res.url}`);
    return true;
  };
  const me = async () => JSON.parse((await b.get(`${fx.base('acme')}/api/me`, { follow: false })).text);
  const grantOf = (m, client) => m.grants.find((g) => g.client_id === client);

  // the page's Disconnect
  assert.equal((await getTokens(b, { login })).t.status, 200);
  assert.equal((await getTokens(b, { login, client: other })).t.status, 200);
  assert.equal(await asks(), false, 'consent given: not asked again');
  let m = await me();
  let r = await b.request('DELETE', `${fx.base('acme')}/api/grants/${grantOf(m, clientId).id}`, undefined, { follow: false, headers: { 'x-csrf-token': m.csrf } });
  assert.equal(r.status, 204, r.text);
  assert.equal(await asks(), true, 'disconnected on the page: asked again');
  assert.equal(await asks(other), false, 'another client\'s consent stands');

  // the admin's disconnect of one application
  const t = fx.t.acme;
  assert.equal((await getTokens(b, { login })).t.status, 200);
  assert.equal(await asks(), false);
  const id = grantOf(await me(), clientId).id;
  assert.equal((await t.admin('DELETE', `/users/${encodeURIComponent('carol@acme.com')}/grants/${id}`)).status, 204);
  assert.equal(await asks(), true, 'disconnected by the admin: asked again');

  // the admin's disconnect of every application
  assert.equal((await getTokens(b, { login })).t.status, 200);
  assert.equal(await asks(), false);
  assert.equal((await t.admin('DELETE', `/users/${encodeURIComponent('carol@acme.com')}/grants`)).status, 200);
  assert.equal(await asks(), true, 'every application disconnected by the admin: asked again');
  assert.equal(await asks(other), true);

  // sign out everywhere disconnects every application too
  assert.equal((await getTokens(b, { login })).t.status, 200);
  assert.equal(await asks(), false);
  m = await me();
  r = await b.post(`${fx.base('acme')}/signout-everywhere`, { csrf: m.csrf }, { follow: false });
  assert.equal(r.status, 303);
  assert.equal(await asks(), true, 'after sign out everywhere: signed in again, and asked again');
});

test('revoking a token that is none this client could revoke costs no store write (anyone may send these)', async () => {
  const b = fx.browser();
  const { t } = await getTokens(b);
  assert.equal(t.status, 200, t.text);
  const jobs = async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_store_jobs_total');
  const before = await jobs();
  const junk = [];
  for (let i = 0; i < 20; i++) junk.push(`mgo_${crypto.randomBytes(32).toString('base64url').slice(0, 43)}`, `mgr_${crypto.randomBytes(32).toString('base64url').slice(0, 43)}`);
  junk.push(t.json.refresh_token); // a real one, but another client's to revoke
  const rs = await Promise.all(junk.map((token, i) => fetch(`${fx.base('acme')}/oauth/revoke`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: i === junk.length - 1 ? 'mcpc_someone_else' : clientId }).toString(),
  })));
  assert.deepEqual([...new Set(rs.map((r) => r.status))], [200], 'RFC 7009: 200 whatever the token');
  const after = await jobs();
  assert.ok(after - before < 10, `${junk.length} revocations of nothing took ${after - before} store jobs`);
  assert.equal((await mcpInit(t.json.access_token)).status, 200, 'another client cannot revoke the grant');
  // the client's own revocation still ends it
  const rv = await fetch(`${fx.base('acme')}/oauth/revoke`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: t.json.refresh_token, client_id: clientId }).toString(),
  });
  assert.equal(rv.status, 200);
  assert.equal((await mcpInit(t.json.access_token)).status, 401, 'revoked');
});
