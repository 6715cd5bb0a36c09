// ci-variants: build-w1 (a browser reading static pages; the handlers behind them run under ASan in web-static-tokens and the other page tests — CI's 15 minutes)
// The employee page in a real browser (chromium + playwright-core) against a
// static server playing the gateway's API (lib/webpage.mjs), part 1: the
// signed-out and signed-in views, escaping, 360 px, the message page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { useStaticPage, CSP, CSRF, TOKEN, me, state, reset, esc, open, loaded, noOverflow, base } from './lib/webpage.mjs';

useStaticPage();

test('signed out (api/me 401): heading, a sentence, Sign in with Okta', async () => {
  reset({ meStatus: 401 });
  const page = await open();
  await loaded(page);
  await page.getByRole('heading', { level: 1, name: 'mcpgate' }).waitFor();
  const link = page.getByRole('link', { name: 'Sign in with Okta' });
  assert.equal(await link.getAttribute('href'), 'login');
  assert.ok(await link.isVisible());
  assert.equal(await page.locator('#signed-in').isVisible(), false);
  assert.equal(await page.locator('#error').textContent(), '');
  await page.done();
});

test('without JavaScript the sign-in link is there', async () => {
  reset();
  const page = await open({ javaScriptEnabled: false });
  await page.goto(base);
  const link = page.getByRole('link', { name: 'Sign in with Okta' });
  assert.ok(await link.isVisible());
  assert.equal(await link.evaluate((a) => a.href), base + 'login');
  assert.equal(state.seen.length, 0, 'no API call without JS');
  await page.done();
});

test('signed in: who, groups, connectors and their patterns, the commands, escaped', async () => {
  reset();
  const page = await open();
  await loaded(page);
  assert.equal(await page.locator('#signed-out').isVisible(), false);
  assert.equal(await page.locator('#tenant').textContent(), 'acme');
  // markup in data is text, never markup
  assert.equal(await page.locator('#me-name').textContent(), 'Ada <b>Lovelace</b>');
  assert.equal(await page.locator('#me-name b').count(), 0);
  assert.equal(await page.locator('#injected').count(), 0);
  const who = await page.locator('.who').textContent();
  assert.match(who, /ada@acme\.example/);
  assert.match(who, /ada\.l@acme\.example/);
  const groups = await page.locator('#groups').textContent();
  assert.match(groups, /eng/);
  assert.ok(groups.includes('<img src=x id=injected>'));
  // connectors
  const gh = page.locator('.connector', { has: page.getByRole('heading', { name: 'github' }) });
  const ghText = await gh.textContent();
  assert.match(ghText, /Allowed\s*\*/);
  assert.match(ghText, /Needs approval\s*merge_pull_request/);
  assert.match(ghText, /Blocked\s*delete_\*/);
  const jira = page.locator('.connector', { has: page.getByRole('heading', { name: 'jira' }) });
  assert.match(await jira.textContent(), /Nothing allowed/);
  // commands
  assert.equal(await page.locator('#cmd-oauth').textContent(), me().commands.oauth);
  assert.equal(await page.locator('#cmd-header').textContent(), me().commands.header);
  // tokens table and the create form
  const row = page.getByRole('row', { name: /old-laptop/ });
  assert.ok(await row.isVisible());
  assert.match(await row.textContent(), /never/); // last used
  assert.ok(await row.getByRole('button', { name: 'Revoke token old-laptop' }).isVisible());
  assert.ok(await page.getByLabel('Name').isVisible());
  assert.equal(await page.getByLabel('Expires in (days)').getAttribute('max'), '7');
  // sign-out forms carry the CSRF value
  for (const v of await page.locator('input[name="csrf"]').evaluateAll((l) => l.map((i) => i.value))) assert.equal(v, CSRF);
  assert.equal(await page.locator('form[action="logout"]').getAttribute('method'), 'post');
  assert.equal(await page.locator('form[action="signout-everywhere"]').getAttribute('method'), 'post');
  const get = state.seen.find((s) => s.path === '/t/acme/api/me');
  assert.ok(get, 'the page asked api/me');
  await page.done();
});

test('at 360 px wide nothing overflows (signed out, signed in, new token, message page)', async () => {
  reset({ meStatus: 401 });
  const page = await open({ viewport: { width: 360, height: 740 } });
  await loaded(page);
  await noOverflow(page, 'signed out');
  state.meStatus = 200;
  await loaded(page);
  await page.locator('details summary').click(); // the header command too
  await noOverflow(page, 'signed in');
  await page.getByLabel('Name').fill('a-rather-long-token-name-for-a-small-screen');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('#token-new').waitFor();
  await noOverflow(page, 'new token');
  await page.goto(base + 'message');
  await noOverflow(page, 'message page');
  await page.done();
});

test('message page: rendered template with the shared CSS, no CSP problem', async () => {
  reset();
  const page = await open();
  await page.goto(base + 'message');
  await page.getByRole('heading', { level: 1, name: 'Not assigned' }).waitFor();
  assert.match(await page.locator('main').textContent(), /isn't assigned to you in Okta/);
  assert.equal(await page.getByRole('link', { name: 'Back' }).getAttribute('href'), '/t/acme/');
  // the stylesheet loaded from /t/acme/assets/app.css
  assert.match(await page.evaluate(() => getComputedStyle(document.body).fontFamily), /system-ui/);
  await page.done();
});

// Found by review: "Connected applications" showed only the name an
// application chose for itself, so a second "Claude Code" (registered by an
// attacker) could not be told from the real one when deciding what to
// disconnect. The client id is shown with it, the name marked unverified.
test('connected applications: the chosen name with its client id, marked unverified', async () => {
  reset({ me: { ...me(), grants: [
    { id: 'g-1', client_id: 'mcpc_real0123', client_name: 'Claude Code', resource: null, created: '2026-01-02T03:04:05Z', last_used: null },
    { id: 'g-2', client_id: 'https://evil.example/client.json', client_name: 'Claude Code', resource: 'github', created: '2026-01-02T03:04:05Z', last_used: null },
  ] } });
  const page = await open();
  await loaded(page);
  const rows = await page.locator('#grants-body tr').evaluateAll((trs) => trs.map((t) => t.querySelector('td').textContent));
  assert.equal(rows.length, 2, JSON.stringify(rows));
  assert.match(rows[0], /^Claude Code\s*name not verified · client mcpc_real0123$/);
  assert.match(rows[1], /^Claude Code\s*name not verified · client https:\/\/evil\.example\/client\.json$/);
  await page.close();
});
