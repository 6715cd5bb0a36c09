// Vault: RFC 9207 at the connect callback. A discovered connector knows its
// authorization server's issuer; an authorization response that names
// another issuer (`iss`) was not issued by the server this connect was sent
// to — the mix-up attack, where one authorization server (a compromised
// upstream's) gets the browser to bring back a response of another — and
// its code is never exchanged. A response naming the connector's own
// issuer (oidc-provider sends it) connects as before.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS
// (RFC 7591 registration, RFC 8707), the SDK upstream; the connect goes
// through the scripted browser of lib/login.mjs, stopped at the callback.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { signIn } from './lib/login.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => {
  v = await startVaultFixture({
    users: ['alice'],
    asOptions: { registration: true, resourceIndicators: true },
    upOptions: { audience: true },
    connectorBody: (as, up) => ({ url: up.url, auth: { type: 'oauth', discover: true, scopes: ['openid', 'offline_access', 'tools.read'] } }),
  });
});
after(async () => { await v?.stop(); });

/** Alice's browser, connecting crm up to (not into) the callback. → {b, callback: URL} */
async function toCallback() {
  const b = v.fx.browser();
  const s = await signIn(b, `${v.base}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  v.as.loginAs('alice');
  let r;
  try {
    r = await b.get(`${v.base}/connect/crm`, { stopAt: (u) => u.startsWith(`${v.base}/connect/crm/callback`) });
  } finally {
    v.as.loginAs(null);
  }
  assert.equal(r.stopped, true, JSON.stringify(r.history?.map((h) => h.url)));
  return { b, callback: new URL(r.url) };
}

test("a callback naming another issuer is refused before its code is exchanged; the connector's own connects", async () => {
  const { b, callback } = await toCallback();
  assert.equal(callback.searchParams.get('iss'), v.as.issuer, 'the AS names itself (RFC 9207)');
  const codes = v.as.stats().token.authorization_code;
  const forged = new URL(callback);
  forged.searchParams.set('iss', 'https://as.elsewhere.example');
  const r = await b.get(forged.href);
  assert.equal(r.status, 400, r.text.slice(0, 300));
  assert.doesNotMatch(r.text, /is connected/);
  assert.equal(v.as.stats().token.authorization_code, codes, 'the code was not exchanged');
  assert.deepEqual(await v.connections('alice'), []);

  // the response as the AS sent it, in a connect of its own
  const again = await toCallback();
  const ok = await again.b.get(again.callback.href);
  assert.equal(ok.status, 200, ok.text.slice(0, 300));
  assert.match(ok.text, /crm is connected/);
  assert.deepEqual((await v.connections('alice')).map((x) => x.connector), ['crm']);
});
