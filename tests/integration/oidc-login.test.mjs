// ci-variants: build-w1 build-asan-w2 (a browser or client flow: one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// Sign in with Okta (issue 16): the full authorization-code + PKCE login
// against the real oidc-provider, the session it makes, /api/me, tokens made
// on the page (bound to the sign-in, CSRF-protected, working on the MCP
// endpoint), sign-out, the callback's refusals (no cookie, replayed state,
// the provider's error), unprovisioned and deactivated people, and the
// session deleted when SCIM deactivates its user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me, setCookieFor } from './lib/login.mjs';

let fx;
const ACCOUNTS = {
  '00u-alice': { email: 'alice@acme.com', email_verified: true, name: 'Alice Test' },
  '00u-bob': { email: 'bob@acme.com', email_verified: true },
  '00u-carol': { email: 'carol@acme.com', email_verified: true },
  '00u-ghost': { email: 'ghost@acme.com', email_verified: true },
};

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: {
        users: [
          { userName: 'alice@acme.com', externalId: '00u-alice', displayName: 'Alice Test' },
          { userName: 'bob@acme.com', externalId: '00u-bob' },
          { userName: 'carol@acme.com', externalId: '00u-carol' },
        ],
      },
    },
    accounts: ACCOUNTS,
  });
  const { scim } = fx.t.acme;
  const alice = fx.t.acme.users['alice@acme.com'];
  await scim.createGroup('eng', [alice.id]);
  const pol = await fx.t.acme.admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['eng'], connector: 'everything', allow: ['echo', 'get-*'], block: ['get-env'] }],
  });
  assert.equal(pol.status, 200, pol.body);
});

after(async () => { if (fx) await fx.stop(); });

const login = (b, sub, opts) => signIn(b, `${fx.base('acme')}/login`, { login: sub, ...opts });

test('full sign-in: PKCE + state + nonce at the provider, a session cookie, /api/me shows the person', async () => {
  const b = fx.browser();
  fx.okta.clearRequests();
  const res = await login(b, '00u-alice');
  assert.equal(res.status, 200, `ends on the page: ${res.status} ${res.url}`);
  assert.equal(res.url, `${fx.base('acme')}/`);
  // the authorization request carried PKCE S256, state and nonce
  const authz = fx.okta.requests.find((r) => r.path === '/oauth2/v1/authorize');
  const q = new URL(authz.url, fx.okta.issuer).searchParams;
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
  assert.match(q.get('state'), /^[A-Za-z0-9_-]{43}$/);
  assert.match(q.get('nonce'), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(q.get('redirect_uri'), `${fx.base('acme')}/oauth/callback`);
  assert.deepEqual(q.get('scope').split(' '), ['openid', 'profile', 'email']);
  // the code exchange: Basic auth, the verifier
  const tok = fx.okta.requests.find((r) => r.path === '/oauth2/v1/token');
  assert.match(tok.headers.authorization, /^Basic /);
  assert.match(new URLSearchParams(tok.body).get('code_verifier'), /^[A-Za-z0-9_-]{43}$/);
  // the session cookie: HttpOnly, SameSite=Lax, scoped to the tenant (http public_url: no __Host-)
  const sc = setCookieFor(res, 'mcpgate-acme=').find((c) => !/Max-Age=0/.test(c));
  assert.ok(sc, 'a session cookie was set');
  assert.match(sc, /HttpOnly/);
  assert.match(sc, /SameSite=Lax/);
  assert.match(sc, /Path=\/t\/acme\//);
  assert.doesNotMatch(sc, /Secure/, 'http public_url: not Secure');
  // the page's security headers
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
  assert.equal(res.headers.get('x-frame-options'), 'DENY');
  const m = await me(b, fx, 'acme');
  assert.equal(m.status, 200, m.text);
  assert.equal(m.json.user.userName, 'alice@acme.com');
  assert.equal(m.json.user.displayName, 'Alice Test');
  assert.equal(m.json.user.email, 'alice@acme.com');
  assert.deepEqual(m.json.groups, ['eng']);
  assert.match(m.json.csrf, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(m.json.commands.oauth, `claude mcp add --transport http acme ${fx.gw.url}/t/acme/mcp`);
  assert.match(m.json.commands.header, /--header "Authorization: Bearer <your token>"$/);
  assert.equal(m.json.tokens.allowed, false, 'self-service tokens are off by default');
  assert.equal(m.json.tokens.max_days, 7);
  assert.deepEqual(m.json.tokens.items, []);
  assert.equal(m.json.connectors.length, 0, 'no connector exists yet');
  // a stranger's browser has no session
  assert.equal((await me(fx.browser(), fx, 'acme')).status, 401);
});

test('the page shows the connectors and patterns the person\'s groups allow; others see none', async () => {
  const r = await fx.t.acme.admin('PUT', '/connectors/everything', { url: 'http://127.0.0.1:9/mcp', description: 'Everything' });
  assert.equal(r.status, 201, r.body);
  const a = fx.browser();
  await login(a, '00u-alice');
  const m = await me(a, fx, 'acme');
  assert.deepEqual(m.json.connectors, [{ name: 'everything', allow: ['echo', 'get-*'], block: ['get-env'], approve: [] }]);
  const c = fx.browser();
  await login(c, '00u-carol');
  assert.deepEqual((await me(c, fx, 'acme')).json.connectors, [], 'carol is in no group');
});

test('tokens on the page: off by default, CSRF and same-origin required, bound to the sign-in, work on MCP, revocable', async () => {
  const b = fx.browser();
  await login(b, '00u-bob');
  const { json: mj } = await me(b, fx, 'acme');
  const url = `${fx.base('acme')}/api/tokens`;
  const post = (body, headers = {}) => b.post(url, JSON.stringify(body), {
    follow: false, headers: { 'content-type': 'application/json', ...headers },
  });
  let r = await post({ name: 'ci', expires_days: 3 }, { 'x-csrf-token': mj.csrf });
  assert.equal(r.status, 403, r.text);
  assert.equal(JSON.parse(r.text).error, 'tokens_disabled');
  await fx.t.acme.setSettings({ self_service_tokens: true });
  r = await post({ name: 'ci', expires_days: 3 });
  assert.equal(r.status, 403, 'no CSRF token');
  assert.equal(JSON.parse(r.text).error, 'csrf');
  r = await post({ name: 'ci', expires_days: 3 }, { 'x-csrf-token': 'x'.repeat(43) });
  assert.equal(r.status, 403, 'a wrong CSRF token');
  r = await post({ name: 'ci', expires_days: 3 }, { 'x-csrf-token': mj.csrf, origin: 'http://evil.example' });
  assert.equal(r.status, 403, 'another Origin');
  r = await post({ name: 'ci', expires_days: 3 }, { 'x-csrf-token': mj.csrf, 'sec-fetch-site': 'cross-site' });
  assert.equal(r.status, 403, 'a cross-site fetch');
  r = await post({ name: '', expires_days: 3 }, { 'x-csrf-token': mj.csrf });
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.text).message, /name/);
  r = await post({ name: 'ci', expires_days: 0 }, { 'x-csrf-token': mj.csrf });
  assert.equal(r.status, 400);
  r = await b.post(url, '{"name":"a","name":"b","expires_days":1}', { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': mj.csrf } });
  assert.equal(r.status, 400, 'duplicate keys refused');
  // 30 days asked: capped at the sign-in's age bound (7 days)
  r = await post({ name: 'ci', expires_days: 30 }, { 'x-csrf-token': mj.csrf, origin: fx.gw.url });
  assert.equal(r.status, 201, r.text);
  const made = JSON.parse(r.text);
  assert.match(made.token, /^mgw_[A-Za-z0-9_-]{43}$/);
  const exp = Date.parse(made.expires);
  assert.ok(exp <= Date.now() + 7 * 86400e3 + 5000 && exp > Date.now() + 6 * 86400e3, `expires ${made.expires} is bound to the sign-in`);
  // listed (never the token itself), works on the MCP endpoint
  const list = (await me(b, fx, 'acme')).json.tokens.items;
  assert.deepEqual(list.map((t) => t.name), ['ci']);
  assert.ok(!JSON.stringify(list).includes(made.token));
  const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
  const mcp = (tok) => request(fx.gw.port, {
    method: 'POST', path: '/t/acme/mcp', body: JSON.stringify(init),
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  });
  assert.equal((await mcp(made.token)).status, 200, 'the token works on the aggregated endpoint');
  // someone else cannot revoke it; its owner can
  const c = fx.browser();
  await login(c, '00u-carol');
  const cj = (await me(c, fx, 'acme')).json;
  r = await c.request('DELETE', `${url}/${made.id}`, undefined, { follow: false, headers: { 'x-csrf-token': cj.csrf } });
  assert.equal(r.status, 404, 'not carol\'s token');
  r = await b.request('DELETE', `${url}/${made.id}`, undefined, { follow: false });
  assert.equal(r.status, 403, 'revoking needs the CSRF token too');
  r = await b.request('DELETE', `${url}/${made.id}`, undefined, { follow: false, headers: { 'x-csrf-token': mj.csrf } });
  assert.equal(r.status, 204, r.text);
  assert.equal((await mcp(made.token)).status, 401, 'revoked');
  await fx.t.acme.setSettings({ self_service_tokens: null });
});

test('sign-out needs the CSRF token; it ends the session; sign out everywhere ends every one', async () => {
  const b1 = fx.browser(), b2 = fx.browser();
  await login(b1, '00u-alice');
  await login(b2, '00u-alice');
  const j1 = (await me(b1, fx, 'acme')).json;
  let r = await b1.post(`${fx.base('acme')}/logout`, {}, { follow: false });
  assert.equal(r.status, 403, 'no CSRF field');
  assert.equal((await me(b1, fx, 'acme')).status, 200, 'still signed in');
  r = await b1.post(`${fx.base('acme')}/logout`, { csrf: j1.csrf }, { follow: false });
  assert.equal(r.status, 303);
  assert.ok(setCookieFor(r, 'mcpgate-acme=').some((c) => /Max-Age=0/.test(c)), 'the cookie is cleared');
  assert.equal((await me(b1, fx, 'acme')).status, 401);
  assert.equal((await me(b2, fx, 'acme')).status, 200, 'the other browser is still signed in');
  const b3 = fx.browser();
  await login(b3, '00u-alice');
  const j3 = (await me(b3, fx, 'acme')).json;
  r = await b3.post(`${fx.base('acme')}/signout-everywhere`, { csrf: j3.csrf }, { follow: false });
  assert.equal(r.status, 303);
  assert.equal((await me(b2, fx, 'acme')).status, 401, 'every session of alice ended');
  assert.equal((await me(b3, fx, 'acme')).status, 401);
  // a POST with no cookie (another site's form: the cookie is SameSite=Lax)
  // says nothing about cookies, so it cannot sign anyone out
  for (const what of ['logout', 'signout-everywhere']) {
    const x = await fetch(`${fx.base('acme')}/${what}`, {
      method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://elsewhere.example' }, body: 'csrf=x',
    });
    assert.equal(x.status, 303, what);
    assert.equal(x.headers.get('set-cookie'), null, `${what} without a cookie clears none`);
  }
});

test('the callback refuses a missing login cookie, a replayed state and the provider\'s error', async () => {
  const b = fx.browser();
  const isCb = (u) => u.includes('/oauth/callback');
  const stop = await login(b, '00u-alice', { stopAtCallback: isCb });
  assert.equal(stop.stopped, true);
  const cbUrl = stop.url;
  // another browser (no login cookie): refused before any code exchange
  fx.okta.clearRequests();
  let r = await fx.browser().get(cbUrl, { follow: false });
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /not valid any more/);
  assert.ok(!fx.okta.requests.some((x) => x.path === '/oauth2/v1/token'), 'no code exchange for a foreign browser');
  // the right browser: signed in; the cookie is kept by hand and replayed
  const origin = new URL(fx.gw.url).origin;
  const saved = [...b.cookies(origin)].find(([k]) => k === 'mcpgate-login.acme');
  assert.ok(saved, 'the login cookie is set');
  r = await b.get(cbUrl, { follow: false });
  assert.equal(r.status, 303, r.text);
  b.setCookie(origin, saved[0], saved[1], { path: '/t/acme/' });
  r = await b.get(cbUrl, { follow: false });
  assert.equal(r.status, 400, `a replayed callback is refused: ${r.status}`);
  // the provider's error (the person cancelled, or is not assigned): an
  // answer to this browser's sign-in, with its state (one without is
  // anybody's link: oidc-callback-forged.test.mjs)
  r = await b.get(`${fx.base('acme')}/oauth/callback?error=access_denied&state=x`, { follow: false });
  assert.equal(r.status, 400, 'an error with a state of its own is no answer to this browser');
  const start = await b.get(`${fx.base('acme')}/login`, { follow: false });
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  r = await b.get(`${fx.base('acme')}/oauth/callback?error=access_denied&error_description=%3Cscript%3E&state=${state}`, { follow: false });
  assert.equal(r.status, 403);
  assert.match(r.text, /access_denied/);
  assert.doesNotMatch(r.text, /<script>/, 'the description is never shown');
  r = await b.get(`${fx.base('acme')}/oauth/callback`, { follow: false });
  assert.equal(r.status, 400, 'no code and no state');
});

test('an unprovisioned person and a deactivated one get the friendly 403; deactivation deletes sessions', async () => {
  let r = await login(fx.browser(), '00u-ghost');
  assert.equal(r.status, 403);
  assert.match(r.text, /isn&#39;t assigned to you in Okta/);
  assert.match(r.headers.get('content-type'), /text\/html/);
  // carol signs in, then IT deactivates her in Okta: her session is gone
  const c = fx.browser();
  await login(c, '00u-carol');
  assert.equal((await me(c, fx, 'acme')).status, 200);
  const carol = fx.t.acme.users['carol@acme.com'];
  const p = await fx.t.acme.scim.patchOps(`/Users/${carol.id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(p.status, 200, p.body);
  assert.equal((await me(c, fx, 'acme')).status, 401, 'the session died with the deactivation');
  r = await login(fx.browser(), '00u-carol');
  assert.equal(r.status, 403, 'a deactivated person cannot sign in');
  assert.match(r.text, /deactivated/);
  // reactivation revives nothing old
  const p2 = await fx.t.acme.scim.patchOps(`/Users/${carol.id}`, [{ op: 'replace', value: { active: true } }]);
  assert.equal(p2.status, 200);
  assert.equal((await me(c, fx, 'acme')).status, 401, 'the old session stays dead');
  await waitFor(() => fx.gw.logs().some((e) => /sign-in refused/.test(e.msg ?? '')), { what: 'the refusal logged' });
});

test('unknown tenant, tenant without OIDC settings, and a login return path outside the tenant', async () => {
  let r = await fx.browser().get(`${fx.gw.url}/t/nope/login`, { follow: false });
  assert.equal(r.status, 404);
  await fx.op.post('/admin/v1/tenants', { id: 'bare', name: 'Bare' });
  r = await fx.browser().get(`${fx.gw.url}/t/bare/login`, { follow: false });
  assert.equal(r.status, 404);
  assert.match(r.text, /not connected mcpgate to its identity provider/);
  // return=https://evil is ignored: back to the tenant's page
  const b = fx.browser();
  r = await signIn(b, `${fx.base('acme')}/login?return=${encodeURIComponent('//evil.example/x')}`, { login: '00u-alice' });
  assert.equal(r.url, `${fx.base('acme')}/`);
  r = await signIn(fx.browser(), `${fx.base('acme')}/login?return=${encodeURIComponent('/t/acme/?x=1')}`, { login: '00u-alice' });
  assert.equal(r.url, `${fx.base('acme')}/?x=1`);
});

test('/metrics counts sign-ins by result', async () => {
  const s = await scrapeMetrics(fx.gw);
  const v = (result) => metricValue(s, 'mcpgate_signins_total', { result });
  assert.ok(v('ok') >= 10, `ok: ${v('ok')}`);
  assert.ok(v('refused') >= 3, `refused (ghost, deactivated carol, access_denied): ${v('refused')}`);
  assert.ok(v('stale') >= 2, `stale (foreign browser, replay): ${v('stale')}`);
  assert.equal(v('invalid_token'), 0);
});
