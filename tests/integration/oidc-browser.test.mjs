// ci-variants: build-w1 (chromium is heavy, the gateway's part light: its C paths run under ASan in oidc-login-checks and the login fixture's files — CI's 15 minutes)
// Sign in with Okta (issue 16) in a REAL browser: Debian's chromium driven by
// playwright-core against the gateway binary and the Okta stand-in (the real
// oidc-provider, lib/okta.mjs). The employee clicks through the page, the
// provider's login form and back; creates a token on the page and uses it on
// the MCP endpoint; revokes it; signs out. Also: the page at 360 px, the
// friendly 403 for a person SCIM does not know, and the session cookie's
// attributes as the browser stores them. Every page of the flow (the
// gateway's and the provider's) fails the test on a CSP violation, a console
// error or a page error. One browser, one fixture, one context per person;
// the tests run in order and share Alice's context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { request } from './lib/gateway.mjs';
import { startLoginFixture } from './lib/login.mjs';

const ACCOUNTS = {
  '00u-alice': { email: 'alice@acme.com', email_verified: true, name: 'Alice Test' },
  // known to the provider, not provisioned by SCIM
  '00u-ghost': { email: 'ghost@acme.com', email_verified: true, name: 'Ghost Test' },
};

let fx, browser, base, alice;

before(async () => {
  [fx, browser] = await Promise.all([
    startLoginFixture({
      tenants: {
        acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice', displayName: 'Alice Test' }] },
      },
      accounts: ACCOUNTS,
    }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
  base = `${fx.gw.url}/t/acme/`;
  const { scim, admin, users } = fx.t.acme;
  const g = await scim.createGroup('eng', [users['alice@acme.com'].id]);
  assert.ok(g.id, 'group eng created');
  // a connector record is enough: the page lists it, nothing here calls it
  let r = await admin('PUT', '/connectors/everything', { url: 'http://127.0.0.1:9/mcp', description: 'Everything' });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['eng'], connector: 'everything', allow: ['echo', 'get-*'], block: ['get-env'] }],
  });
  assert.equal(r.status, 200, r.body);
});

after(async () => {
  await alice?.ctx.close().catch(() => {});
  await browser?.close();
  if (fx) await fx.stop();
});

// A context with one page recording every CSP violation (on any origin, across
// navigations: reported through a binding), console error and page error.
async function person(viewport = { width: 1024, height: 800 }) {
  const ctx = await browser.newContext({ viewport });
  // a missing element fails well inside node's per-test timeout (30 s)
  ctx.setDefaultTimeout(8000);
  const problems = [];
  // The provider's login page (oidc-provider's devInteractions, standing in
  // for Okta's; not ours) @imports a Google Fonts stylesheet, which this
  // offline box cannot resolve (a console error, and a DNS wait), and lets the
  // browser ask the provider for /favicon.ico (404). Both are answered here
  // with an empty 200 so the console check stays strict for everything else.
  await ctx.route(/^https:\/\/fonts\.googleapis\.com\//, (r) => r.fulfill({ status: 200, contentType: 'text/css', body: '' }));
  await ctx.route(`${fx.okta.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  await ctx.exposeBinding('__cspViolation', ({ frame }, v) => { problems.push(`CSP violation on ${frame.url()}: ${v}`); });
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    // Chromium itself logs every non-2xx answer as "Failed to load
    // resource". Two are expected and checked by the tests: api/me's 401
    // (the page shows the signed-out view) and the callback's 403 (the
    // not-assigned page). Nothing else is tolerated, on any origin.
    const at = m.location().url, text = m.text();
    if (at.startsWith(`${base}api/me`) && /^Failed to load resource: .*status of 401\b/.test(text)) return;
    if (at.startsWith(`${base}oauth/callback?`) && /^Failed to load resource: .*status of 403\b/.test(text)) return;
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) {
      problems.push(`console ${m.type()} on ${m.location().url}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // each test reports (and clears) what happened since the last check
  const check = (what) => assert.deepEqual(problems.splice(0), [], `${what}: no CSP violation, console error or page error`);
  return { ctx, page, problems, check };
}

// From the page's signed-out view through the provider's login form; resolves
// the gateway's callback response (the end of the redirect chain).
async function signInFromPage(page, login) {
  await Promise.all([page.waitForResponse((r) => r.url() === `${base}api/me`), page.goto(base)]);
  await page.locator('#signed-out').waitFor();
  assert.equal(await page.locator('#signed-in').isVisible(), false, 'signed out: the signed-in view is hidden');
  await page.getByRole('link', { name: 'Sign in with Okta' }).click();
  // the provider's devInteractions login form
  await page.waitForURL((u) => u.href.startsWith(`${fx.okta.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('correct horse');
  const [cb] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(`${base}oauth/callback`)),
    page.locator('button[type="submit"]').click(),
  ]);
  return cb;
}

const INIT = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'oidc-browser', version: '1' } },
});
const mcpInit = (token) => request(fx.gw.port, {
  method: 'POST', path: '/t/acme/mcp', body: INIT,
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
});

test('Alice signs in with Okta in the browser and sees her name, group, connector patterns and the command', async () => {
  alice = await person();
  const { page } = alice;
  const cb = await signInFromPage(page, '00u-alice');
  assert.equal(cb.status(), 303, 'the callback sends her back to the page');
  await page.waitForURL(base);
  await page.locator('#signed-in').waitFor();
  assert.equal(await page.locator('#signed-out').isVisible(), false);
  assert.equal(await page.locator('#error').textContent(), '');
  assert.equal(await page.locator('#tenant').textContent(), 'acme');
  assert.equal(await page.locator('#me-name').textContent(), 'Alice Test');
  assert.match(await page.locator('.who').textContent(), /\(alice@acme\.com\)/);
  assert.equal((await page.locator('#groups').textContent()).trim(), 'eng');
  const conns = page.locator('#connectors .connector');
  assert.equal(await conns.count(), 1, 'one connector');
  const everything = page.locator('.connector', { has: page.getByRole('heading', { level: 3, name: 'everything', exact: true }) });
  assert.ok(await everything.isVisible(), 'connector "everything" is shown');
  const dl = await everything.locator('dl').evaluate((d) => [...d.children].map((c) => `${c.tagName}:${[...c.querySelectorAll('code')].map((x) => x.textContent).join(',') || c.textContent}`));
  assert.deepEqual(dl, ['DT:Allowed', 'DD:echo,get-*', 'DT:Blocked', 'DD:get-env']);
  assert.equal(await page.locator('#cmd-oauth').textContent(), `claude mcp add --transport http acme ${fx.gw.url}/t/acme/mcp`);
  assert.ok(await page.locator('#cmd-oauth').isVisible());
  // self-service tokens are off until the tenant turns them on
  assert.ok(await page.locator('#tokens-off').isVisible());
  assert.equal(await page.locator('#token-form').isVisible(), false);
  alice.check('sign-in flow');
});

test('the session cookie as the browser stores it: HttpOnly, SameSite=Lax, path /t/acme/, not in document.cookie', async () => {
  const { ctx, page } = alice;
  const cookies = await ctx.cookies(fx.gw.url + '/t/acme/');
  const sess = cookies.filter((c) => c.name === 'mcpgate-acme');
  assert.equal(sess.length, 1, `one session cookie (got ${cookies.map((c) => `${c.name}@${c.path}`).join(' ')})`);
  const [c] = sess;
  assert.equal(c.httpOnly, true, 'HttpOnly');
  assert.equal(c.sameSite, 'Lax');
  assert.equal(c.path, '/t/acme/');
  assert.equal(c.secure, false, 'http public_url: not Secure');
  assert.equal(c.domain, new URL(fx.gw.url).hostname, 'host-only cookie');
  assert.ok(c.value.length >= 32, 'an opaque value');
  const dc = await page.evaluate(() => document.cookie);
  assert.ok(!dc.includes('mcpgate-acme'), `document.cookie must not show the session: ${JSON.stringify(dc)}`);
  assert.ok(!dc.includes(c.value), 'nor its value');
  // control: a script-visible cookie on the same path does show there
  await ctx.addCookies([{ name: 'probe', value: 'visible', url: base }]);
  assert.match(await page.evaluate(() => document.cookie), /(^|; )probe=visible(;|$)/, 'document.cookie is readable here');
  await ctx.clearCookies({ name: 'probe' });
  alice.check('cookies');
});

test('at 360 px wide, signed in, nothing overflows', async () => {
  const { page } = alice;
  await page.setViewportSize({ width: 360, height: 740 });
  await Promise.all([page.waitForResponse((r) => r.url() === `${base}api/me`), page.reload()]);
  await page.locator('#signed-in').waitFor();
  await page.locator('details summary').click(); // the header command too
  await page.locator('#cmd-header').waitFor();
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(w <= 360, `the page is ${w}px wide at a 360px viewport`);
  assert.equal(await page.evaluate(() => window.innerWidth), 360, 'the viewport really is 360px');
  // control: something too wide is measured as overflow
  const wide = await page.evaluate(() => {
    const d = document.createElement('div');
    d.style.width = '500px';
    d.style.height = '1px';
    document.querySelector('main').appendChild(d);
    const sw = document.documentElement.scrollWidth;
    d.remove();
    return sw;
  });
  assert.ok(wide > 360, `a 500px element makes the page ${wide}px wide`);
  await page.setViewportSize({ width: 1024, height: 800 });
  alice.check('360 px');
});

test('a token made on the page: shown once, listed, works on MCP; revoked from the page, it stops working', async () => {
  const { page } = alice;
  await fx.t.acme.setSettings({ self_service_tokens: true });
  await Promise.all([page.waitForResponse((r) => r.url() === `${base}api/me`), page.reload()]);
  await page.locator('#token-form').waitFor();
  assert.ok(await page.locator('#tokens-none').isVisible(), 'no token yet');
  await page.getByLabel('Name').fill('laptop');
  const [made] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}api/tokens` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Create token' }).click(),
  ]);
  assert.equal(made.status(), 201, await made.text());
  await page.locator('#token-new').waitFor();
  const field = page.getByLabel('New token');
  const token = await field.inputValue();
  assert.match(token, /^mgw_[A-Za-z0-9_-]{43}$/);
  assert.equal(await field.getAttribute('readonly'), '', 'read-only');
  assert.equal(await page.locator('#token-error').textContent(), '');
  // shown once: in that field only, not in the markup or the list
  const seen = await page.evaluate((t) => (document.documentElement.outerHTML.split(t).length - 1) +
    [...document.querySelectorAll('input, textarea')].filter((i) => i.value.includes(t)).length, token);
  assert.equal(seen, 1, 'the token appears exactly once on the page');
  const row = page.getByRole('row', { name: /laptop/ });
  await row.waitFor();
  assert.equal(await page.locator('#tokens-body tr').count(), 1);
  assert.equal(await page.locator('#tokens-body tr td[data-label="Name"]').textContent(), 'laptop');
  // it works on the aggregated MCP endpoint
  let r = await mcpInit(token);
  assert.equal(r.status, 200, `initialize with the new token: ${r.status} ${r.body}`);
  // revoked from the page
  const [del] = await Promise.all([
    page.waitForResponse((x) => x.url().startsWith(`${base}api/tokens/`) && x.request().method() === 'DELETE'),
    row.getByRole('button', { name: 'Revoke token laptop' }).click(),
  ]);
  assert.equal(del.status(), 204);
  await page.locator('#tokens-none').waitFor();
  assert.equal(await page.locator('#tokens-body tr').count(), 0, 'the list is empty');
  assert.equal(await page.locator('#tokens-table').isVisible(), false);
  r = await mcpInit(token);
  assert.equal(r.status, 401, `initialize with the revoked token: ${r.status} ${r.body}`);
  await fx.t.acme.setSettings({ self_service_tokens: null });
  alice.check('tokens');
});

test('Sign out: back to the signed-out view, api/me answers 401 in the page', async () => {
  const { ctx, page } = alice;
  assert.equal(await page.evaluate(async () => (await fetch('api/me', { cache: 'no-store' })).status), 200, 'signed in before');
  const [out] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}logout`),
    page.getByRole('button', { name: 'Sign out', exact: true }).click(),
  ]);
  assert.equal(out.status(), 303);
  // the old document had #signed-out hidden: visible means the new one loaded
  await page.locator('#signed-out').waitFor();
  assert.equal(page.url(), base, 'the 303 led back to the page');
  assert.ok(await page.getByRole('link', { name: 'Sign in with Okta' }).isVisible());
  assert.equal(await page.locator('#signed-in').isVisible(), false);
  assert.equal(await page.evaluate(async () => (await fetch('api/me', { cache: 'no-store' })).status), 401);
  assert.equal((await ctx.cookies(base)).filter((c) => c.name === 'mcpgate-acme').length, 0, 'the cookie is gone');
  alice.check('sign-out');
  await ctx.close();
  alice = null;
});

test('someone the provider knows but SCIM does not: the 403 page says mcpgate isn\'t assigned to them', async () => {
  const ghost = await person();
  const { ctx, page } = ghost;
  const cb = await signInFromPage(page, '00u-ghost');
  assert.equal(cb.status(), 403);
  await page.waitForLoadState('load');
  // the callback's answer is the final navigation: nothing redirected further
  assert.equal(page.url(), cb.url());
  assert.equal(cb.request().isNavigationRequest(), true);
  await page.getByRole('heading', { level: 1, name: 'mcpgate isn\'t assigned to you' }).waitFor();
  assert.match(await page.locator('main').textContent(), /mcpgate isn't assigned to you in Okta/);
  assert.match(await page.title(), /isn't assigned to you · mcpgate/);
  // the shared stylesheet loaded under the page's CSP
  assert.match(await page.evaluate(() => getComputedStyle(document.body).fontFamily), /system-ui/);
  // no empty action button (a 403 has no "Try again")
  assert.equal(await page.locator('.action a').isVisible(), false);
  assert.equal((await ctx.cookies(base)).filter((c) => c.name === 'mcpgate-acme').length, 0, 'no session');
  ghost.check('403 page');
  await ctx.close();
});
