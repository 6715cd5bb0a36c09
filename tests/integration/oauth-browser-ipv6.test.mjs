// ci-variants: build-w1 (a browser flow, as its IPv4 twin oauth-browser.test.mjs; the authorization server it drives runs under ASan in oauth-flow — CI's 15 minutes)
// The consent page in chromium for a client whose redirect URI is on the
// IPv6 loopback (http://[::1]:PORT/callback, RFC 8252 §7.3) (issue 17).
// Browsers check the page's CSP form-action on the redirect that answers
// Allow, and a CSP source cannot name an IPv6 literal (chromium ignores
// "http://[::1]:PORT"), so the page names the scheme instead: Allow must
// reach the [::1] listener with the code and the state, and the SDK lists
// tools with the token. Skipped where the machine has no IPv6 loopback.
// (The flow itself, over 127.0.0.1: oauth-browser.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startBrowserFixture, person, signInAtProvider, consentHeading, decide } from './lib/oauthbrowser.mjs';
import { MemoryProvider, startAuthorization, finishAndConnect, startRedirectListener, ipv6Loopback } from './lib/oauthclient.mjs';

const IPV6 = await ipv6Loopback();
let f, p;

before(async () => { if (IPV6) f = await startBrowserFixture(); });

after(async () => {
  await p?.ctx.close().catch(() => {});
  await f?.stop();
});

test('a redirect to [::1]: sign-in, consent, Allow reaches it with code + state; tools', { skip: !IPV6 && 'no IPv6 loopback here' }, async () => {
  const { fx, mcpUrl } = f;
  const v6 = await startRedirectListener({ host: '::1' });
  p = await person(f);
  const { page } = p;
  const client = new MemoryProvider({ redirectUrl: v6.url('/callback'), clientName: 'IPv6 Client' });
  const url = await startAuthorization(mcpUrl, client);
  assert.equal(url.searchParams.get('redirect_uri'), `http://[::1]:${v6.port}/callback`);
  await page.goto(url.href);
  await signInAtProvider(page, f, '00u-alice');
  await consentHeading(page).waitFor();
  const main = (await page.locator('main').textContent()).replace(/\s+/g, ' ');
  assert.ok(main.includes(`goes back to [::1]:${v6.port}.`), `the redirect host: ${main}`);
  p.check('consent page');
  const back = await decide(p, 'Allow', v6);
  assert.equal(back.searchParams.get('state'), client.lastState);
  assert.equal(back.searchParams.get('iss'), `${fx.gw.url}/t/acme`);
  assert.match(back.searchParams.get('code') ?? '', /^mgc_/);
  p.check('allow');
  const c = await finishAndConnect(mcpUrl, client, back.searchParams.get('code'));
  assert.ok((await c.client.listTools()).tools.some((t) => t.name === 'everything__echo'));
  await c.close();
});
