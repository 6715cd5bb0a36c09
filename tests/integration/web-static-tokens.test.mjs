// ci-variants: build-w1 (no gateway: a static server plays its API, as in web-static)
// The employee page in a real browser against a static server playing the
// gateway's API (lib/webpage.mjs), part 2: tokens (create, refused, revoke,
// not allowed), sign-out, and api/me errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { useStaticPage, CSP, CSRF, TOKEN, me, state, reset, esc, open, loaded, noOverflow, base } from './lib/webpage.mjs';

useStaticPage();

test('create a token: JSON with X-CSRF-Token, the token shown once, the list refreshed', async () => {
  reset();
  const page = await open();
  await loaded(page);
  await page.getByLabel('Name').fill('laptop');
  await page.getByLabel('Expires in (days)').fill('3');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('#token-new').waitFor();
  const post = state.seen.find((s) => s.method === 'POST' && s.path === '/t/acme/api/tokens');
  assert.ok(post, 'the form posted to api/tokens');
  assert.equal(post.headers['content-type'], 'application/json');
  assert.equal(post.headers['x-csrf-token'], CSRF);
  assert.deepEqual(JSON.parse(post.body), { name: 'laptop', expires_days: 3 });
  // once: in the read-only field, nowhere else on the page
  const field = page.getByLabel('New token');
  assert.equal(await field.inputValue(), TOKEN);
  assert.equal(await field.getAttribute('readonly'), '');
  const count = await page.evaluate((t) => {
    const inMarkup = document.documentElement.outerHTML.split(t).length - 1;
    const inFields = [...document.querySelectorAll('input, textarea')].filter((i) => i.value.includes(t)).length;
    return inMarkup + inFields;
  }, TOKEN);
  assert.equal(count, 1, 'the token appears exactly once');
  assert.match(await page.locator('#token-new').textContent(), /will not be shown again/);
  assert.ok(await page.locator('#token-new').getByRole('button', { name: 'Copy' }).isVisible());
  assert.equal(await page.locator('#token-result').getAttribute('aria-live'), 'polite');
  // the list came back from api/me with the new token
  await page.getByRole('row', { name: /laptop.*Revoke/ }).filter({ hasNotText: 'old-laptop' }).waitFor();
  assert.equal(await page.getByLabel('Name').inputValue(), '', 'the name field is cleared');
  await page.done();
});

test('create a token refused: the server\'s message is shown', async () => {
  reset({ createError: { error: 'name_taken', message: 'You already have a token named laptop.' } });
  const page = await open();
  await loaded(page);
  await page.getByLabel('Name').fill('laptop');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('#token-error', { hasText: 'You already have a token named laptop.' }).waitFor();
  assert.equal(await page.locator('#token-error').getAttribute('role'), 'alert');
  assert.equal(await page.locator('#token-new').isVisible(), false);
  await page.done();
});

test('revoke a token: DELETE api/tokens/{id} with X-CSRF-Token, the row goes', async () => {
  reset();
  const page = await open();
  await loaded(page);
  await page.getByRole('button', { name: 'Revoke token old-laptop' }).click();
  await page.locator('#tokens-none').waitFor();
  const del = state.seen.find((s) => s.method === 'DELETE');
  assert.equal(del.path, '/t/acme/api/tokens/tok-1');
  assert.equal(del.headers['x-csrf-token'], CSRF);
  assert.equal(await page.getByRole('row', { name: /old-laptop/ }).count(), 0);
  await page.done();
});

test('tokens not allowed: no form, a sentence saying so', async () => {
  reset();
  state.me.tokens = { allowed: false, max_days: 0, items: [] };
  const page = await open();
  await loaded(page);
  assert.equal(await page.locator('#token-form').isVisible(), false);
  assert.match(await page.locator('#tokens-off').textContent(), /does not allow access tokens/);
  assert.ok(await page.locator('#tokens-off').isVisible());
  await page.done();
});

test('sign out posts the CSRF value and lands on the signed-out view', async () => {
  reset();
  const page = await open();
  await loaded(page);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.getByRole('link', { name: 'Sign in with Okta' }).waitFor();
  const post = state.seen.find((s) => s.method === 'POST' && s.path === '/t/acme/logout');
  assert.equal(new URLSearchParams(post.body).get('csrf'), CSRF);
  assert.equal(await page.locator('#signed-in').isVisible(), false);
  await page.done();
});

test('api/me error or no answer: a clear message in the alert region', async () => {
  reset({ meStatus: 503 });
  let page = await open();
  await page.goto(base);
  await page.getByRole('alert').filter({ hasText: 'The store is unavailable' }).waitFor();
  await page.done();
  reset({ meStatus: 'drop' });
  page = await open();
  await page.goto(base);
  await page.getByRole('alert').filter({ hasText: 'Could not reach mcpgate' }).waitFor();
  await page.done();
});
