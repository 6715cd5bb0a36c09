// ci-variants: build-w1 (chromium is heavy; the gateway's part is the page it serves)
// "Double-clickjacking" on the consent page (found by review). A page on
// another site asks for a double-click in a popup, closes the popup on the
// first press, and the second press lands on Allow in the tab behind it,
// where the attacker loaded the gateway's consent page for a client of
// theirs: a code for Alice's tools went to their redirect. Nothing is
// framed, so the frame headers never applied. Allow is now disabled until
// the page has been visible and focused for 500 ms and then sees the
// person's own pointer move or key press (web/assets/gesture.js).
//
// The popup in front is the page without focus: document.hasFocus() is
// made to answer what the test says (an init script), as the browser
// answers while another window is in front.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startBrowserFixture, person, signInAtProvider, consentHeading, gestureClick } from './lib/oauthbrowser.mjs';
import { MemoryProvider, startAuthorization } from './lib/oauthclient.mjs';

let f, alice;
before(async () => { f = await startBrowserFixture(); });
after(async () => { await alice?.ctx.close().catch(() => {}); await f?.stop(); });

test('Allow takes no click while the page is behind another window, nor the click right after it comes to front; it takes a meant one', async () => {
  const { listener, mcpUrl } = f;
  alice = await person(f);
  const { page } = alice;
  await page.addInitScript(() => {
    window.__focused = true;
    Document.prototype.hasFocus = function () { return window.__focused; };
  });
  const client = new MemoryProvider({ redirectUrl: listener.url('/callback'), clientName: 'Claude Code' });
  const authUrl = await startAuthorization(mcpUrl, client);
  await page.goto(authUrl.href);
  await signInAtProvider(page, f, '00u-alice');
  await consentHeading(page).waitFor();
  const allow = page.getByRole('button', { name: 'Allow', exact: true });
  const box = await allow.boundingBox();
  const at = [box.x + box.width / 2, box.y + box.height / 2];

  // the popup in front: the page has no focus; the pointer moves, presses: nothing
  await page.evaluate(() => { window.__focused = false; window.dispatchEvent(new Event('blur')); });
  await page.waitForTimeout(700);
  await page.mouse.move(at[0] - 5, at[1]);
  await page.mouse.click(at[0], at[1]);
  assert.equal(await allow.isDisabled(), true, 'Allow stays disabled while another window is in front');
  // the popup closes on the first press: the page is in front again, and the second press lands at once
  await page.evaluate(() => { window.__focused = true; window.dispatchEvent(new Event('focus')); });
  await page.mouse.move(at[0] + 1, at[1]);
  await page.mouse.click(at[0], at[1]);
  await page.waitForTimeout(300);
  assert.ok(page.url().includes('/oauth/authorize'), `the click right after the page came to front did nothing: ${page.url()}`);
  assert.equal(listener.pending(), 0, 'no code went to the client');

  // Alice, who means it: a moment on the page, her pointer on the button
  const back = listener.next();
  await gestureClick(page, allow);
  const u = await back;
  assert.match(u.searchParams.get('code') ?? '', /^mgc_/, 'her click allowed it');
  alice.check('consent with a gesture');
});

test('without JavaScript Allow cannot be clicked (disabled in the page itself)', async () => {
  const { listener, mcpUrl } = f;
  const p = await person(f);
  try {
    const client = new MemoryProvider({ redirectUrl: listener.url('/callback'), clientName: 'No Script' });
    const authUrl = await startAuthorization(mcpUrl, client);
    await p.page.goto(authUrl.href);
    // signed in already (the browser fixture's person has no session: sign in)
    if (!(await consentHeading(p.page).isVisible().catch(() => false))) await signInAtProvider(p.page, f, '00u-alice');
    await consentHeading(p.page).waitFor();
    const html = await p.page.content();
    assert.match(html, /<button[^>]*value="allow"[^>]*disabled/, 'the served page disables Allow');
  } finally {
    await p.ctx.close().catch(() => {});
  }
});
