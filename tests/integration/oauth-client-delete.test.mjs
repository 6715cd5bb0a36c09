// An admin deleting an OAuth client (DELETE …/oauth-clients/{id}) ends what
// the client holds in the tenant. Before this test's fix only the client's
// record went: a malicious or compromised client an employee had authorized
// kept calling with its access token and refreshing with its refresh token,
// and the consent stood, so re-registering under the same name was never
// asked again (the OAuth review). Now every grant of the client is revoked
// (an open stream ends), its consents go, and another client of the same
// person is untouched.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { request } from './lib/gateway.mjs';
import { startLoginFixture } from './lib/login.mjs';
import { grant, tokenRequest, pkce, register } from './lib/oauth.mjs';
import { signIn } from './lib/okta.mjs';
import { openStream, mcpHeaders } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';
let fx, t;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: ALICE } },
  });
  t = fx.t.acme;
});
after(async () => { if (fx) await fx.stop(); });

const init = async (tok) => request(fx.gw.port, {
  method: 'POST', path: '/t/acme/mcp',
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
});

test('deleting an OAuth client revokes its grants and consents; another client of the same person keeps working', async () => {
  const b = fx.browser();
  const evil = await grant(fx, b, { login: '00u-alice' });
  const good = await grant(fx, b, { login: '00u-alice' });
  assert.notEqual(evil.client_id, good.client_id);
  const r0 = await init(evil.access_token);
  assert.equal(r0.status, 200, r0.body);
  const sid = r0.headers['mcp-session-id'];
  const stream = await openStream(`${fx.gw.url}/t/acme/mcp`, { headers: { ...mcpHeaders({ token: evil.access_token, sessionId: sid, protocolVersion: '2025-06-18' }), accept: 'text/event-stream' } });
  assert.equal(stream.status, 200);

  const del = await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(evil.client_id)}`);
  assert.equal(del.status, 204, del.body);

  let timer;
  const ended = await Promise.race([stream.ended.then(() => true), new Promise((r) => { timer = setTimeout(() => r(false), 10000); })]);
  clearTimeout(timer);
  assert.ok(ended, 'the stream opened with the deleted client\'s token ended with its grant');
  assert.equal((await init(evil.access_token)).status, 401, 'the deleted client\'s access token is refused');
  const rt = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: evil.refresh_token, client_id: evil.client_id });
  assert.equal(rt.status, 400, rt.text);
  assert.equal(rt.json?.error, 'invalid_grant', rt.text);
  // the other client of the same person is untouched
  assert.equal((await init(good.access_token)).status, 200);
  const rg = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: good.refresh_token, client_id: good.client_id });
  assert.equal(rg.status, 200, rg.text);
  // the person's grants list only the good client's
  const g = await t.admin('GET', `/users/${encodeURIComponent(ALICE)}/grants`);
  assert.equal(g.status, 200, g.body);
  const ids = g.json.grants.map((x) => x.client_id);
  assert.ok(ids.includes(good.client_id) && !ids.includes(evil.client_id), JSON.stringify(g.json));
  // a second DELETE: nothing left to end
  assert.equal((await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(evil.client_id)}`)).status, 404);
});

// A pinned (or fetched) client keeps its client_id across a delete and a
// new pin: the consent given before must not carry over.
test('a pinned client deleted and pinned again is asked for consent again', async () => {
  const id = 'https://client.example.test/meta.json';
  const doc = { client_id: id, client_name: 'Pinned', redirect_uris: ['http://127.0.0.1/callback'] };
  assert.equal((await t.admin('PUT', '/oauth-clients', { client_id: id, document: doc })).status, 201);
  const b = fx.browser();
  const first = await grant(fx, b, { login: '00u-alice', client: id });
  assert.ok(first.access_token);
  const asks = async () => {
    const { challenge } = pkce();
    const q = new URLSearchParams({ response_type: 'code', client_id: id, redirect_uri: 'http://127.0.0.1:45123/callback',
      state: 's', code_challenge: challenge, code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp` });
    const res = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: (u) => u.startsWith('http://127.0.0.1:45123/') });
    return !res.stopped && /oauth\/consent/.test(res.text ?? '');
  };
  assert.equal(await asks(), false, 'consent given: not asked again');
  assert.equal((await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(id)}`)).status, 204);
  assert.equal((await init(first.access_token)).status, 401);
  assert.equal((await t.admin('PUT', '/oauth-clients', { client_id: id, document: doc })).status, 201);
  assert.equal(await asks(), true, 'asked again after the client was deleted');
});

// A consent page the person opened before the admin deleted the client
// still carries the sealed request (ten minutes). Before this test's fix,
// Allow on it issued a code to the deleted client — written after the
// delete had swept the client's codes — and the code was exchanged for a
// grant: the client an admin had just removed was connected again by the
// next person who clicked Allow on a page already open.
/** A client registered with `registered` as its redirect URI, Alice's
 * consent page for it opened (redirect: the one asked for), then the
 * client deleted by the admin: {client, verifier, b, page, isCb}. */
async function consentThenDelete(name, registered, redirect, cbPrefix) {
  const reg = await register(fx, 'acme', { client_name: name, redirect_uris: [registered] });
  assert.equal(reg.status, 201, reg.text);
  const client = reg.json.client_id;
  const isCb = (u) => u.startsWith(cbPrefix);
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({ response_type: 'code', client_id: client, redirect_uri: redirect, state: 's',
    code_challenge: challenge, code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp` });
  const b = fx.browser();
  const page = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: isCb });
  assert.notEqual(page.stopped, true);
  assert.match(page.text ?? '', /oauth\/consent/, 'the consent page');
  assert.equal((await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(client)}`)).status, 204);
  return { client, verifier, b, page, isCb };
}

test('Allow on a consent page opened before the client was deleted connects nothing', async () => {
  const redirect = 'http://127.0.0.1:45124/callback';
  const { client, verifier, b, page, isCb } = await consentThenDelete('Removed meanwhile', 'http://127.0.0.1/callback', redirect,
    'http://127.0.0.1:45124/');
  const res = await b.submitForm(page, { fields: { decision: 'allow' }, stopAt: isCb });
  let code = null;
  if (res.stopped) code = new URL(res.url).searchParams.get('code');
  assert.equal(code, null, `no code for a deleted client (${res.url})`);
  assert.notEqual(res.stopped, true, 'the browser is not sent back to a client the admin removed');
  assert.equal(res.status, 400, res.text?.slice(0, 300));
  assert.match(res.text ?? '', /removed|no longer/i, 'the page says the application is gone');
  // nothing of it was written: no grant, and the client stays unknown
  const g = await t.admin('GET', `/users/${encodeURIComponent(ALICE)}/grants`);
  assert.equal(g.status, 200, g.body);
  assert.ok(!g.json.grants.some((x) => x.client_id === client), JSON.stringify(g.json));
  assert.equal((await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(client)}`)).status, 404,
    'no grant or record of the client came back');
  if (code) {
    const tk = await tokenRequest(fx, 'acme', { grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client, code_verifier: verifier });
    assert.equal(tk.status, 400, tk.text);
  }
});

// Deny too: the redirect URI of a client the admin removed is nobody's to
// send the person to. Before this test's fix Allow showed a page but Deny
// still sent the browser to the removed client's redirect URI (with
// error=access_denied): a phishing client's page, once an admin had
// deleted it for being one.
test('Deny on a consent page opened before the client was deleted sends the browser nowhere', async () => {
  const { b, page, isCb } = await consentThenDelete('Removed before deny', 'https://phish.example/cb', 'https://phish.example/cb',
    'https://phish.example/');
  const res = await b.submitForm(page, { fields: { decision: 'deny' }, stopAt: isCb });
  assert.notEqual(res.stopped, true, `the browser is not sent to a client the admin removed (${res.url})`);
  assert.equal(res.status, 400, res.text?.slice(0, 300));
  assert.match(res.text ?? '', /removed|no longer/i, 'the page says the application is gone');
});

// A consent page stays open for ten minutes; meanwhile the client's
// document may be pinned anew (or fetched again) without the redirect URI
// the page was opened for — an admin taking a hijacked address out of it.
// Before this test's fix Allow still sent the code there (and Deny the
// person), checked only against the record as it was when the page opened.
test('Allow and Deny on a consent page whose client was re-pinned without its redirect URI send nothing there', async () => {
  const id = 'https://client.example.test/repinned.json';
  const old = 'https://old.example/cb', kept = 'http://127.0.0.1/callback';
  const doc = (uris) => ({ client_id: id, client_name: 'Re-pinned', redirect_uris: uris });
  assert.equal((await t.admin('PUT', '/oauth-clients', { client_id: id, document: doc([old, kept]) })).status, 201);
  const isCb = (u) => u.startsWith('https://old.example/');
  const open = async () => {
    const { challenge } = pkce();
    const q = new URLSearchParams({ response_type: 'code', client_id: id, redirect_uri: old, state: 's',
      code_challenge: challenge, code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp` });
    const b = fx.browser();
    const page = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: isCb });
    assert.notEqual(page.stopped, true);
    assert.match(page.text ?? '', /oauth\/consent/, 'the consent page');
    return { b, page };
  };
  const allow = await open(), deny = await open();
  assert.equal((await t.admin('PUT', '/oauth-clients', { client_id: id, document: doc([kept]) })).status, 200);
  for (const [{ b, page }, decision] of [[allow, 'allow'], [deny, 'deny']]) {
    const res = await b.submitForm(page, { fields: { decision }, stopAt: isCb });
    assert.notEqual(res.stopped, true, `${decision}: not sent to the redirect URI the client no longer lists (${res.url})`);
    assert.equal(res.status, 400, `${decision}: ${res.text?.slice(0, 300)}`);
    assert.match(res.text ?? '', /no longer lists/, decision);
  }
  const g = await t.admin('GET', `/users/${encodeURIComponent(ALICE)}/grants`);
  assert.ok(!g.json.grants.some((x) => x.client_id === id), JSON.stringify(g.json));
  assert.equal((await t.admin('DELETE', `/oauth-clients/${encodeURIComponent(id)}`)).status, 204);
});
