// ci-variants: build-w1
// A sign-in that was under way when the person was cut must not end in a
// browser session. The callback exchanges Okta's code and verifies the ID
// token before the session's write job runs; that can take seconds. If the
// person is cut meanwhile — Okta's Universal Logout (they stay active), or
// the admin's revoke then restore — the job still finds an active user, and
// a session would be created after the cut: from it, employee tokens, OAuth
// grants, upstream connections. A sign-in that began before the user's
// last cut is refused (they start again); one begun after it goes through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { logoutToken, postLogout, emailSubject } from './lib/gtr.mjs';

const ALICE = 'alice@acme.com';
let fx;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: ALICE } },
  });
});

after(async () => { if (fx) await fx.stop(); });

/** Starts alice's sign-in and holds Okta's token endpoint answer; returns
 * {browser, done (the callback's response), release()} once the gateway's
 * code exchange is under way. */
async function inflightSignIn() {
  const b = fx.browser();
  const stop = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice', stopAtCallback: (u) => u.includes('/oauth/callback') });
  assert.equal(stop.stopped, true);
  let release, called = false;
  const gate = new Promise((r) => { release = r; });
  fx.okta.tamper.idToken = async () => { called = true; await gate; };
  const done = b.get(stop.url, { follow: false });
  await waitFor(() => called, { timeoutMs: 5000, what: 'the gateway\'s code exchange at Okta' });
  return { b, done, release: () => { fx.okta.tamper.idToken = null; release(); } };
}

test('a Universal Logout while the sign-in\'s code exchange is in flight: no session afterwards; a new sign-in works', async () => {
  const s = await inflightSignIn();
  const r = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/acme/oauth/global-logout` }), emailSubject(ALICE));
  assert.equal(r.status, 204, r.body);
  s.release();
  const res = await s.done;
  assert.notEqual(res.status, 303, 'the sign-in under way during the logout was completed');
  assert.equal((await me(s.b, fx, 'acme')).status, 401, 'no browser session from before the logout');
  // she may sign in again at once
  const b2 = fx.browser();
  assert.equal((await signIn(b2, `${fx.base('acme')}/login`, { login: '00u-alice' })).status, 200);
  assert.equal((await me(b2, fx, 'acme')).status, 200, 'a sign-in begun after the logout goes through');
});

test('an admin revoke then restore while the sign-in\'s code exchange is in flight: no session from before the cut', async () => {
  const { admin } = fx.t.acme;
  const s = await inflightSignIn();
  let r = await admin('POST', '/users/alice%40acme.com/revoke', { reason: 'incident' });
  assert.equal(r.status, 200, r.body);
  r = await admin('POST', '/users/alice%40acme.com/restore');
  assert.equal(r.status, 200, r.body);
  s.release();
  const res = await s.done;
  assert.notEqual(res.status, 303, 'the sign-in under way during the revoke was completed after the restore');
  assert.equal((await me(s.b, fx, 'acme')).status, 401, 'no browser session from before the cut');
  const b2 = fx.browser();
  assert.equal((await signIn(b2, `${fx.base('acme')}/login`, { login: '00u-alice' })).status, 200);
  assert.equal((await me(b2, fx, 'acme')).status, 200, 'a sign-in begun after the restore goes through');
});
