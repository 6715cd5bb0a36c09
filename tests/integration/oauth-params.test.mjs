// The request parameters of the gateway's OAuth endpoints (issue 17,
// auth/oauth_params.c) as a client meets them: a parameter given twice is
// refused (RFC 6749 §3.1) — also when its name is percent-encoded — never
// "the first one wins"; a value longer than its cap is refused, never cut
// (a code_verifier cut to 128 characters used to pass PKCE with anything
// appended); a missing grant_type is invalid_request. Each refusal leaves
// the code usable, which then works with the right request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startLoginFixture, signIn, registerClient } from './lib/login.mjs';

let fx, clientId, b;
const CB = 'http://127.0.0.1:45123/callback';
const isCb = (u) => u.startsWith('http://127.0.0.1:45123/');
const b64u = (x) => Buffer.from(x).toString('base64url');

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com' } },
  });
  clientId = await registerClient(fx, 'acme', 'Params client');
  b = fx.browser();
  await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
});

after(async () => { if (fx) await fx.stop(); });

const pkce = (len = 43) => {
  const verifier = b64u(crypto.randomBytes(96)).slice(0, len);
  return { verifier, challenge: b64u(crypto.createHash('sha256').update(verifier).digest()) };
};
const authzQuery = (challenge, extra = '') => `${new URLSearchParams({
  response_type: 'code', client_id: clientId, redirect_uri: CB, state: 'st', code_challenge: challenge,
  code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`,
})}${extra}`;

/** The authorization endpoint's answer: its redirect's params, or the page. */
async function authorize(query) {
  let res = await b.get(`${fx.base('acme')}/oauth/authorize?${query}`, { stopAt: isCb });
  if (!res.stopped && /oauth\/consent/.test(res.text ?? '')) res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  return res.stopped ? { params: new URL(res.url).searchParams } : { status: res.status, text: res.text };
}

async function token(body) {
  const r = await fetch(`${fx.base('acme')}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body,
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json };
}

test('authorize: a parameter twice is refused — to the client when it is safe, else on a page', async () => {
  const { challenge } = pkce();
  let r = await authorize(authzQuery(challenge, '&code_challenge_method=plain'));
  assert.equal(r.params?.get('error'), 'invalid_request', 'code_challenge_method twice');
  assert.match(r.params.get('error_description'), /code_challenge_method is given more than once/);
  assert.equal(r.params.get('state'), 'st');
  assert.equal(r.params.get('code'), null);
  r = await authorize(authzQuery(challenge, `&resource=${encodeURIComponent(`${fx.gw.url}/t/acme/mcp`)}`));
  assert.equal(r.params?.get('error'), 'invalid_target', 'two resources');
  r = await authorize(authzQuery(challenge, '&state&state='));
  assert.equal(r.params?.get('error'), null, 'a parameter without a value is absent (RFC 6749 §3.1): not a second state');
  assert.equal(r.params.get('state'), 'st');
  assert.match(r.params?.get('code') ?? '', /^mgc_/);
  r = await authorize(authzQuery(challenge, '&state=%zz'));
  assert.equal(r.params?.get('error'), 'invalid_request', 'a malformed escape');
  assert.equal(r.params.get('state'), null, 'state is not sent back when it is the problem');
  r = await authorize(authzQuery(challenge, '&client%5Fid=mcpc_other'));
  assert.equal(r.status, 400, 'client_id twice: who asks is unknown, so a page and no redirect');
  assert.match(r.text, /client_id is given more than once/);
  r = await authorize(authzQuery(challenge, `&redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`));
  assert.equal(r.status, 400, 'redirect_uri twice: a page');
  assert.match(r.text, /did not register/);
});

test('token: duplicates, an over-long verifier and a missing grant_type are refused; the code survives them', async () => {
  const { verifier, challenge } = pkce(128);
  const r = await authorize(authzQuery(challenge));
  const code = r.params?.get('code');
  assert.match(code ?? '', /^mgc_/);
  const good = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CB, client_id: clientId, code_verifier: verifier }).toString();
  for (const [bad, why] of [
    [good.replace(`code_verifier=${verifier}`, `code_verifier=${verifier}A`), /code_verifier is longer than 128 bytes/],
    [`${good}&code_verifier=${'A'.repeat(43)}`, /code_verifier is given more than once/],
    [`${good}&redirect%5Furi=${encodeURIComponent('http://127.0.0.1:9/x')}`, /redirect_uri is given more than once/],
    [good.replace('grant_type=authorization_code&', ''), /grant_type is required/],
    [`${good}&x=%G0`, /form-urlencoded/],
  ]) {
    const t = await token(bad);
    assert.equal(t.status, 400, bad);
    assert.equal(t.json?.error, 'invalid_request', t.text);
    assert.match(t.json.error_description, why);
    assert.ok(!t.text.includes(verifier) && !t.text.includes(code), 'no secret quoted back');
  }
  const ok = await token(good);
  assert.equal(ok.status, 200, `the code survived: ${ok.text}`);
});

test('authorize: errors before sign-in and consent are never redirected off this computer (no open redirector)', async () => {
  // anyone may register a client with any https redirect
  const reg = await fetch(`${fx.base('acme')}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Elsewhere', redirect_uris: ['https://attacker.example/cb'] }),
  });
  assert.equal(reg.status, 201);
  const other = (await reg.json()).client_id;
  const { challenge } = pkce();
  const q = (over) => new URLSearchParams({
    response_type: 'code', client_id: other, redirect_uri: 'https://attacker.example/cb', state: 'st',
    code_challenge: challenge, code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`, ...over,
  });
  for (const [what, over] of [['unsupported response_type', { response_type: 'token' }],
    ['no PKCE', { code_challenge: '' }], ['a resource of no tenant endpoint', { resource: 'https://elsewhere.example/mcp' }]]) {
    // no browser session: whoever follows a link
    const r = await fetch(`${fx.base('acme')}/oauth/authorize?${q(over)}`, { redirect: 'manual' });
    assert.equal(r.status, 400, `${what}: a page, not a redirect (Location ${r.headers.get('location')})`);
    assert.equal(r.headers.get('location'), null, `${what}: no Location`);
    assert.match(await r.text(), /refused/, `${what}: the page says so`);
  }
  // the same client's valid request still goes on (to the sign-in, then consent)
  const ok = await fetch(`${fx.base('acme')}/oauth/authorize?${q({})}`, { redirect: 'manual' });
  assert.equal(ok.status, 302);
  assert.match(ok.headers.get('location') ?? '', /\/t\/acme\/login\?/, 'a valid request goes to the sign-in');
});
