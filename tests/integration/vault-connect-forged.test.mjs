// ci-variants: build-w1
// Another web site cannot end an employee's connect under way (found by
// review), in a REAL browser (Debian's chromium via playwright-core)
// against the gateway, the Okta stand-in and the upstream's AS.
//
// The connect callback /t/{t}/connect/{c}/callback cleared the connect
// cookie ("one use") before it looked at it, so any request there ended the
// connect this browser had under way. A top-level navigation is all another
// site needs (the cookie is SameSite=Lax: a cross-site navigation's answer
// may clear it): while Alice was signing in at the upstream's AS, a page
// open in another tab sent her browser to the callback, and her own return
// from the AS then said "Connecting did not start in this browser". The
// cookie is now spent only by the callback that matches it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';

import { person } from './lib/oauthbrowser.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v, browser, evil;
before(async () => {
  [v, browser] = await Promise.all([
    startVaultFixture({ users: ['alice'] }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
  // another site (localhost is not the gateway's 127.0.0.1) whose page sends
  // the browser to the URL in its query
  evil = http.createServer((req, res) => {
    const to = new URL(req.url, 'http://x').searchParams.get('to') ?? '';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>cat pictures</title><script>location.href = ${JSON.stringify(to)};</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
});
after(async () => {
  await browser?.close().catch(() => {});
  await new Promise((r) => (evil ? evil.close(r) : r()));
  await v?.stop();
});

test('a forged connect callback from another site does not end the connect under way', async () => {
  const p = await person({ fx: v.fx, browser });
  await p.ctx.route(`${v.as.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  const { page } = p;
  try {
    await page.goto(`${v.base}/login`);
    await page.waitForURL((u) => u.href.startsWith(`${v.fx.okta.issuer}/interaction/`));
    await page.locator('input[name="login"]').fill('00u-alice');
    await page.locator('input[name="password"]').fill('correct horse');
    await page.locator('button[type="submit"]').click();
    await page.waitForURL((u) => u.href.startsWith(v.fx.gw.url));

    // she starts connecting crm: the upstream AS's sign-in form
    await page.goto(`${v.base}/connect/crm`);
    await page.waitForURL((u) => u.href.startsWith(`${v.as.issuer}/interaction/`));

    // meanwhile another site's page sends her browser to the callback
    const other = await p.ctx.newPage();
    for (const q of ['error=access_denied', 'code=forged&state=forged', 'state=forged']) {
      const to = `${v.base}/connect/crm/callback?${q}`;
      await other.goto(`http://localhost:${evil.address().port}/?to=${encodeURIComponent(to)}`);
      await other.waitForURL((u) => u.href === to);
      await other.waitForLoadState();
      assert.match(await other.locator('h1').innerText(), /not valid here/, q);
    }
    await other.close();

    // her own return from the AS still connects crm
    await page.locator('input[name="login"]').fill('alice');
    await page.locator('button[type="submit"]').click();
    await page.waitForURL((u) => u.href.startsWith(`${v.base}/connect/crm/callback`));
    const text = (await page.locator('body').textContent()).replace(/\s+/g, ' ');
    assert.match(text, /crm is connected/, text.slice(0, 400));
    assert.deepEqual((await v.connections('alice')).map((c) => c.connector), ['crm']);
    // the cookie is spent by the callback that used it: the same again is refused
    const again = await page.goto(page.url());
    assert.equal(again.status(), 400);
    // console errors: the 400s above, which Chromium logs as failed loads
    p.problems.splice(0, p.problems.length, ...p.problems.filter((x) => !/status of 400/.test(x)));
    p.check('the flow');
  } finally {
    await p.ctx.close();
  }
});
