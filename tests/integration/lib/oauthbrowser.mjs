// tests/integration/lib/oauthbrowser.mjs — the fixture of the OAuth tests
// in a real browser (issue 17): Debian's chromium (playwright-core), the
// sign-in fixture (lib/login.mjs: gateway + the Okta stand-in) with tenant
// acme and Alice, server-everything as connector "everything" with an
// allow-all policy, and a loopback redirect listener (lib/oauthclient.mjs).
//
//   startBrowserFixture()  → {fx, browser, listener, mcpUrl, stop()}
//   person(f, viewport)    a context + page recording every CSP violation,
//                          console error and page error; .check(what)
//                          asserts there was none since the last check
//   signInAtProvider(page, f, login)  fills the provider's login form
//   consentHeading(page)   the consent page's h1
//   decide(p, button, to)  clicks Allow/Deny; resolves the URL the browser
//                          was sent back to (listener `to`'s request)
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { startLoginFixture } from './login.mjs';
import { startEverything } from './mcp.mjs';
import { startRedirectListener } from './oauthclient.mjs';

export async function startBrowserFixture() {
  const [fx, browser, up, listener] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice', displayName: 'Alice Test' }] } },
      accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true, name: 'Alice Test' } },
    }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
    startEverything(),
    startRedirectListener(),
  ]);
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/everything', { url: up.url, description: 'Everything' });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
  assert.equal(r.status, 200, r.body);
  return {
    fx, browser, listener, mcpUrl: `${fx.gw.url}/t/acme/mcp`,
    async stop() {
      await browser.close().catch(() => {});
      await fx.stop();
    },
  };
}

// oidc-browser.test.mjs's pattern, with the same allowances for the
// provider's dev pages (a Google Fonts @import, /favicon.ico): answered
// here so the console check stays strict for everything else.
export async function person(f, viewport = { width: 1024, height: 800 }) {
  const ctx = await f.browser.newContext({ viewport });
  // a missing element fails well inside node's per-file timeout
  ctx.setDefaultTimeout(8000);
  const problems = [];
  await ctx.route(/^https:\/\/fonts\.googleapis\.com\//, (r) => r.fulfill({ status: 200, contentType: 'text/css', body: '' }));
  await ctx.route(`${f.fx.okta.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  await ctx.exposeBinding('__cspViolation', ({ frame }, v) => { problems.push(`CSP violation on ${frame.url()}: ${v}`); });
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) {
      problems.push(`console ${m.type()} on ${m.location().url}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const check = (what) => assert.deepEqual(problems.splice(0), [], `${what}: no CSP violation, console error or page error`);
  return { ctx, page, problems, check };
}

/** The provider's real login form (devInteractions: any password). */
export async function signInAtProvider(page, f, login) {
  await page.waitForURL((u) => u.href.startsWith(`${f.fx.okta.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('correct horse');
  await page.locator('button[type="submit"]').click();
}

export const consentHeading = (page) => page.getByRole('heading', { level: 1, name: /^Allow “.*” to use your tools\?$/ });

/**
 * Clicks a button that web/assets/gesture.js keeps disabled until the page
 * has been visible and focused for 500 ms and then sees the person's own
 * pointer move: moves the pointer over it until it is enabled, then clicks.
 */
export async function gestureClick(page, loc) {
  await loc.waitFor({ state: 'visible' });
  const end = Date.now() + 10000;
  for (let i = 0; !(await loc.isEnabled()); i++) {
    if (Date.now() > end) throw new Error('the button was never enabled (gesture.js)');
    await loc.scrollIntoViewIfNeeded(); // a pointer outside the viewport moves over nothing
    const box = await loc.boundingBox();
    if (box) await page.mouse.move(box.x + box.width / 2 + (i % 3), box.y + box.height / 2);
    await new Promise((r) => setTimeout(r, 100));
  }
  await loc.click();
}

export async function decide(p, button, to) {
  const { page } = p;
  const back = to.next();
  const b = page.getByRole('button', { name: button, exact: true });
  if (button === 'Allow') await gestureClick(page, b);
  else await b.click();
  const u = await back.catch((e) => {
    throw new Error(`${button}: ${e.message}; the browser is at ${page.url()}; problems: ${JSON.stringify(p.problems)}`);
  });
  await page.waitForURL((x) => x.href.startsWith(to.url('/')));
  return u;
}
