// ci-variants: build-w1
// "Sign out everywhere" (the employee page) and the admin's "disconnect every
// application" (DELETE …/users/{u}/grants) revoke every OAuth grant of the
// person. An authorization code issued just before and not exchanged yet is
// an application about to be connected: it must go with them, or the client
// holding it exchanges it afterwards and gets a grant that outlives the
// sign-out (for up to signin_max_age_ms, refresh after refresh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startLoginFixture, signIn, registerClient } from './lib/login.mjs';

let fx, clientId;
const REDIRECT = 'http://127.0.0.1:45123/callback';
const b64u = (b) => Buffer.from(b).toString('base64url');

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com' } },
  });
  clientId = await registerClient(fx, 'acme', 'Test MCP client');
});

after(async () => { if (fx) await fx.stop(); });

/** A code for alice, not exchanged: {code, verifier}. */
async function pendingCode(b) {
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  const q = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, state: 's', code_challenge: challenge,
    code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`,
  });
  const isCb = (u) => u.startsWith('http://127.0.0.1:45123/');
  let res = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: isCb });
  if (!res.stopped) res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.equal(res.stopped, true, `${res.status} ${res.text?.slice(0, 200)}`);
  return { code: new URL(res.url).searchParams.get('code'), verifier };
}

async function exchange({ code, verifier }) {
  const r = await fetch(`${fx.base('acme')}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: clientId, code_verifier: verifier }).toString(),
  });
  return { status: r.status, json: await r.json().catch(() => null) };
}

test('sign out everywhere: a code issued before it cannot be exchanged after it', async () => {
  const b = fx.browser();
  const pending = await pendingCode(b);
  const me = JSON.parse((await b.get(`${fx.base('acme')}/api/me`, { follow: false })).text);
  const r = await b.post(`${fx.base('acme')}/signout-everywhere`, { csrf: me.csrf }, { follow: false });
  assert.equal(r.status, 303);
  const t = await exchange(pending);
  assert.equal(t.status, 400, `the code outlived the sign-out: ${JSON.stringify(t.json)}`);
  assert.equal(t.json.error, 'invalid_grant');
});

test('the admin disconnects every application: a pending code goes too', async () => {
  const b = fx.browser();
  const pending = await pendingCode(b);
  const r = await fx.t.acme.admin('DELETE', '/users/alice%40acme.com/grants');
  assert.equal(r.status, 200, r.body);
  const t = await exchange(pending);
  assert.equal(t.status, 400, `the code outlived the disconnect: ${JSON.stringify(t.json)}`);
  assert.equal(t.json.error, 'invalid_grant');
});
