// ci-variants: build-w1
// Another web site cannot cancel an employee's sign-in (found by review), in
// a REAL browser (Debian's chromium driven by playwright-core) against the
// gateway binary and the Okta stand-in (lib/okta.mjs).
//
// The sign-in callback /t/{t}/oauth/callback took any request for the
// provider's answer: one with ?error=… was shown as "your identity provider
// ended the sign-in" (and counted as a refused sign-in) without looking at
// the state or the sign-in cookie, and any callback whose state did not
// match cleared the sign-in cookie. A top-level navigation is all another
// site needs (the cookie is SameSite=Lax: a cross-site navigation's answer
// may clear it), so while Alice was typing her password at Okta, a page she
// had open elsewhere sent her browser to the callback, and her own sign-in
// then came back to "This sign-in link is not valid any more". The
// provider's answer — an error or a code — is now one only with this
// browser's sign-in cookie and its state; anything else is refused without
// touching the sign-in under way.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';

import { scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, setCookieFor } from './lib/login.mjs';

let fx, browser, evil, base;

before(async () => {
  [fx, browser] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice', displayName: 'Alice Test' }] } },
      accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true, name: 'Alice Test' } },
    }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
  base = `${fx.gw.url}/t/acme/`;
  // another site (localhost is not the gateway's 127.0.0.1: another site to
  // the browser) whose page sends the browser to the URL in its query
  evil = http.createServer((req, res) => {
    const to = new URL(req.url, 'http://x').searchParams.get('to') ?? '';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>cat pictures</title><script>location.href = ${JSON.stringify(to)};</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (evil ? evil.close(r) : r()));
  await fx?.stop();
});

async function context() {
  const ctx = await browser.newContext();
  ctx.setDefaultTimeout(8000);
  // the provider's dev login page asks for a Google font and a favicon
  await ctx.route(/^https:\/\/fonts\.googleapis\.com\//, (r) => r.fulfill({ status: 200, contentType: 'text/css', body: '' }));
  await ctx.route(`${fx.okta.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  return ctx;
}

const refusedSignins = async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_signins_total', { result: 'refused' }) ?? 0;

test('a forged callback (an error, or a code with a state of its own) from another site does not end a sign-in under way', async () => {
  const ctx = await context();
  try {
    const page = await ctx.newPage();
    await page.goto(`${base}login`);
    await page.waitForURL((u) => u.href.startsWith(`${fx.okta.issuer}/interaction/`));

    const refusedBefore = await refusedSignins();
    const other = await ctx.newPage();
    for (const q of ['error=access_denied', 'error=access_denied&state=forged', 'code=forged&state=forged']) {
      const to = `${base}oauth/callback?${q}`;
      await other.goto(`http://localhost:${evil.address().port}/?to=${encodeURIComponent(to)}`);
      await other.waitForURL((u) => u.href === to);
      await other.waitForLoadState();
      assert.match(await other.locator('h1').innerText(), /not valid/i, `${q}: refused as no answer to a sign-in of this browser`);
    }
    assert.equal(await refusedSignins(), refusedBefore, 'a forged error is no refused sign-in');
    await other.close();

    // Alice finishes signing in at the provider in her first tab
    await page.locator('input[name="login"]').fill('00u-alice');
    await page.locator('input[name="password"]').fill('correct horse');
    const [cb] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${base}oauth/callback`)),
      page.locator('button[type="submit"]').click(),
    ]);
    assert.equal(cb.status(), 303, `her own callback signs her in (${cb.status()})`);
    await page.waitForURL(base);
    await page.locator('#signed-in').waitFor();
    assert.equal(await page.locator('#me-name').innerText(), 'Alice Test');
  } finally {
    await ctx.close();
  }
});

test('the provider\'s own error, with this browser\'s state, still ends the sign-in with its page', async () => {
  const b = fx.browser();
  const start = await b.get(`${base}login`, { follow: false });
  assert.equal(start.status, 302);
  const state = new URL(start.headers.get('location')).searchParams.get('state');
  const before = await refusedSignins();
  const r = await b.get(`${base}oauth/callback?error=access_denied&state=${encodeURIComponent(state)}`, { follow: false });
  assert.equal(r.status, 403, r.text);
  assert.match(r.text, /Sign-in was not completed/);
  assert.match(r.text, /\(access_denied\)/);
  assert.ok(setCookieFor(r, 'mcpgate-login.acme=').some((c) => /Max-Age=0/.test(c)), 'its sign-in cookie is spent');
  assert.equal(await refusedSignins(), before + 1);
  // the same answer again is no answer to a sign-in of this browser
  const again = await b.get(`${base}oauth/callback?error=access_denied&state=${encodeURIComponent(state)}`, { follow: false });
  assert.equal(again.status, 400, again.text);
  assert.equal(await refusedSignins(), before + 1);
});
