// Vault 1/2 (issue 20): what the connect flow refuses. A callback URL
// replayed in another browser (no connect cookie) → 400 and no token request
// at the AS; Bob finishing Alice's connect with her cookie copied into his
// signed-in browser (login CSRF) → 403 and no grant for anyone; a connector
// with header credentials → 400 "Nothing to connect"; an unknown connector
// and one the policy hides → 404.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { signIn } from './lib/login.mjs';
import { startVaultFixture, oauthConnector } from './lib/vault.mjs';

const POLICY = {
  version: 1, default: 'block',
  rules: [
    { groups: ['*'], connector: 'crm', allow: ['*'] },
    { groups: ['*'], connector: 'hdr', allow: ['*'] },
  ],
};
const COOKIE = 'mcpgate-connect.acme';

let v;
before(async () => {
  v = await startVaultFixture({ policy: POLICY });
  let r = await v.admin('PUT', '/connectors/hdr', { url: v.up.url, auth: { type: 'header', name: 'X-Key', value: 'shared-key' } });
  assert.equal(r.status, 201, r.body);
  r = await v.admin('PUT', '/connectors/vip', oauthConnector(v.as, v.up));
  assert.equal(r.status, 201, r.body);
});
after(async () => { await v?.stop(); });

async function signedIn(who) {
  const b = v.fx.browser();
  const s = await signIn(b, `${v.base}/login`, { login: `00u-${who}` });
  assert.equal(s.status, 200, `${who} signed in: ${s.status} ${s.url}`);
  return b;
}

/** Alice's browser starts connecting crm; the AS signs her in; stops at the gateway's callback. */
async function startedByAlice() {
  const b = await signedIn('alice');
  v.as.loginAs('alice');
  let r;
  try {
    r = await b.get(`${v.base}/connect/crm`, { stopAt: (u) => u.startsWith(`${v.base}/connect/crm/callback`) });
  } finally {
    v.as.loginAs(null);
  }
  assert.equal(r.stopped, true, `reached the callback: ${r.url}`);
  assert.match(r.url, /[?&]code=/);
  const cookie = b.cookies(v.fx.gw.url).get(COOKIE);
  assert.ok(cookie, `the connect cookie is set: ${[...b.cookies(v.fx.gw.url).keys()]}`);
  return { b, callback: r.url, cookie };
}

async function noGrants() {
  for (const who of ['alice', 'bob']) assert.deepEqual(await v.connections(who), [], `no grant for ${who}`);
}

test('a callback URL replayed in another browser (no connect cookie) → 400, no token request', async () => {
  const { callback } = await startedByAlice();
  const codes = v.as.stats().token.authorization_code;
  // another browser, even signed in as Alice herself, has no connect cookie
  const other = await signedIn('alice');
  const r = await other.get(callback, { follow: false });
  assert.equal(r.status, 400, `${r.status} ${r.text.slice(0, 300)}`);
  assert.match(r.text, /This link is not valid here/);
  assert.equal(v.as.stats().token.authorization_code, codes, 'no code exchange at the AS');
  await noGrants();
});

test('Bob, signed in, finishing Alice\'s connect with her cookie → 403, no grant for anyone', async () => {
  const { callback, cookie } = await startedByAlice();
  const codes = v.as.stats().token.authorization_code;
  const bob = await signedIn('bob');
  bob.setCookie(v.fx.gw.url, COOKIE, cookie, { path: '/t/acme/' });
  const r = await bob.get(callback, { follow: false });
  assert.equal(r.status, 403, `${r.status} ${r.text.slice(0, 300)}`);
  assert.match(r.text, /Sign in as the person who started connecting/);
  assert.equal(v.as.stats().token.authorization_code, codes, 'no code exchange at the AS');
  await noGrants();
});

test('a connector with header credentials: 400 "Nothing to connect"', async () => {
  const b = await signedIn('alice');
  const r = await b.get(`${v.base}/connect/hdr`, { follow: false });
  assert.equal(r.status, 400, `${r.status} ${r.text.slice(0, 300)}`);
  assert.match(r.text, /Nothing to connect/);
});

test('an unknown connector and one the policy hides: 404, alike', async () => {
  const b = await signedIn('alice');
  const codes = v.as.stats().tokenRequests.length;
  const unknown = await b.get(`${v.base}/connect/nope`, { follow: false });
  assert.equal(unknown.status, 404, `${unknown.status} ${unknown.text.slice(0, 300)}`);
  assert.match(unknown.text, /No such connector/);
  const hidden = await b.get(`${v.base}/connect/vip`, { follow: false });
  assert.equal(hidden.status, 404, `hidden by policy: ${hidden.status} ${hidden.text.slice(0, 300)}`);
  assert.match(hidden.text, /No such connector/);
  assert.equal(hidden.headers.get('location'), null, 'not sent to the AS');
  assert.equal(v.as.stats().tokenRequests.length, codes);
  // hidden indeed: her tools/list has crm's connect tool and nothing of vip
  const c = await v.client('alice');
  try {
    const names = await v.toolNames(c);
    assert.ok(names.includes('crm__connect'), names.join(','));
    assert.equal(names.some((n) => n.startsWith('vip__')), false, names.join(','));
  } finally {
    await c.close();
  }
});
