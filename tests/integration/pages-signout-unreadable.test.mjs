// ci-variants: build-w1 build-asan-w2
// Sign-out when the gateway cannot read the session it was asked to end
// (found by review). The sign-out handler read the session first and took
// any failure for "no session": it cleared the cookie and answered the 303
// of a done sign-out — so "Sign out everywhere" (the button for a lost
// laptop) answered like a success while every other session, and every
// application connected as the person, stayed alive. The page's own
// writes already answer a store failure with 503, and so does the sign-out
// job when the write fails; the read before it must not fail open either.
//
// The unreadable session is made the way a damaged record is met: the
// gateway stopped, one byte of the session's JSON record changed in
// data.mdb (its CSRF value is unique in the file), the gateway started
// again on the same address (Okta knows its callback URL).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startGateway } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me, setCookieFor } from './lib/login.mjs';

let fx;
before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
  });
});
after(async () => { if (fx) await fx.stop(); });

const login = (b) => signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });

/** Breaks the JSON of the session record holding csrf: the quote after the value becomes a letter. */
function breakSessionRecord(dataDir, csrf) {
  const file = path.join(dataDir, 'store', 'data.mdb');
  const buf = fs.readFileSync(file);
  const needle = Buffer.from(`"csrf":"${csrf}"`);
  let n = 0;
  for (let at = buf.indexOf(needle); at >= 0; at = buf.indexOf(needle, at + 1), n++) buf[at + needle.length - 1] = 0x78;
  assert.ok(n >= 1, 'the session record is in the file');
  fs.writeFileSync(file, buf);
}

test('a session the gateway cannot read is not signed out as if it were gone: 503, the cookie kept, nothing claimed', async () => {
  const a = fx.browser(), other = fx.browser();
  await login(a);
  await login(other);
  const csrf = (await me(a, fx, 'acme')).json.csrf;
  assert.ok(csrf);
  assert.equal((await me(other, fx, 'acme')).status, 200);

  const port = fx.gw.port;
  await fx.gw.stop();
  breakSessionRecord(fx.gw.dataDir, csrf);
  fx.gw = await startGateway({
    dataDir: fx.gw.dataDir,
    args: ['--listen', `127.0.0.1:${port}`, '--auth-rate-per-address', '100000', '--auth-rate-per-tenant', '100000'],
  });
  assert.equal(fx.gw.port, port);
  const mine = await me(a, fx, 'acme');
  assert.equal(mine.status, 503, `the page's API says it cannot read the session: ${mine.status} ${mine.text}`);

  for (const what of ['signout-everywhere', 'logout']) {
    const r = await a.post(`${fx.base('acme')}/${what}`, { csrf }, { follow: false, headers: { origin: fx.gw.url } });
    assert.equal(r.status, 503, `${what}: not answered as a done sign-out (${r.status} ${r.headers.get('location') ?? ''})`);
    assert.match(r.text, /could not sign you out/i, what);
    assert.deepEqual(setCookieFor(r, 'mcpgate-acme='), [], `${what}: the cookie is left as it is`);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.match(r.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  }
  // which was the truth: nothing was signed out
  assert.equal((await me(other, fx, 'acme')).status, 200, 'the other browser is still signed in');
  // a request with no session at all is still a plain 303 (nothing to end)
  const none = await fx.browser().post(`${fx.base('acme')}/logout`, { csrf: 'x' }, { follow: false });
  assert.equal(none.status, 303);
});
