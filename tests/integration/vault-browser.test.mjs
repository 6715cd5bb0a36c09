// Vault 1/2 (issue 20): the connect flow in a real browser (Debian chromium
// via playwright-core). Alice signs in at the gateway (the Okta stand-in's
// login form), opens /t/acme/connect/crm, signs in at the upstream's AS (its
// <input name=login> form), and lands on the gateway's success page; then a
// tool call through the official SDK client carries her own upstream token.
// ci-variants: build-w1 (chromium is heavy; the connect flow runs under ASan in vault-connect)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { toolText } from './lib/mcp.mjs';
import { person } from './lib/oauthbrowser.mjs';
import { startVaultFixture } from './lib/vault.mjs';
import { waitFor } from './lib/gateway.mjs';

let v, browser;
before(async () => {
  [v, browser] = await Promise.all([
    startVaultFixture({ users: ['alice'] }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
});
after(async () => {
  await browser?.close().catch(() => {});
  await v?.stop();
});

test('chromium: sign in at the gateway, connect crm at the upstream AS, "crm is connected", then her calls carry her token', async () => {
  const p = await person({ fx: v.fx, browser });
  await p.ctx.route(`${v.as.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  const { page } = p;
  const logins = v.as.stats().logins.length;
  const codes = v.as.stats().token.authorization_code;

  // sign in at the gateway (Okta stand-in's form)
  await page.goto(`${v.base}/login`);
  await page.waitForURL((u) => u.href.startsWith(`${v.fx.okta.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill('00u-alice');
  await page.locator('input[name="password"]').fill('correct horse');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.href.startsWith(v.fx.gw.url));

  // the connect link → the upstream AS's sign-in form
  await page.goto(`${v.base}/connect/crm`);
  await page.waitForURL((u) => u.href.startsWith(`${v.as.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill('alice');
  await page.locator('button[type="submit"]').click();

  // back at the gateway's callback: the success page
  await page.waitForURL((u) => u.href.startsWith(`${v.base}/connect/crm/callback`));
  const text = (await page.locator('body').textContent()).replace(/\s+/g, ' ');
  assert.match(text, /crm is connected/, text.slice(0, 400));
  assert.equal(/code=|access_token|refresh_token/.test(await page.content()), false, 'the page shows no code or token');
  p.check('the sign-in, the AS form and the success page');
  assert.deepEqual(v.as.stats().logins.slice(logins), ['alice'], 'signed in at the AS as alice');
  assert.equal(v.as.stats().token.authorization_code, codes + 1, 'one code exchange');
  assert.deepEqual((await v.connections('alice')).map((c) => c.connector), ['crm']);

  const c = await v.client('alice');
  try {
    const names = await v.toolNames(c);
    assert.ok(names.includes('crm__whoami') && !names.includes('crm__connect'), names.join(','));
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    const seen = v.up.seen().filter((s) => s.method === 'tools/call').at(-1);
    assert.equal(seen.sub, 'alice');
    assert.equal(await v.as.introspect(seen.token), true, 'her own live upstream token');
  } finally {
    await c.close();
  }

  // her page lists the connection; Disconnect ends it (and revokes it upstream)
  await page.goto(`${v.base}/`);
  const row = page.locator('#services-body tr', { hasText: 'crm' });
  await row.waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /crm\s*connected/);
  const token = v.up.seen().filter((s) => s.method === 'tools/call').at(-1).token;
  await page.getByRole('button', { name: 'Disconnect crm' }).click();
  await page.getByRole('link', { name: 'Connect crm' }).waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /not connected/);
  assert.deepEqual(await v.connections('alice'), []);
  await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, what: 'revoked at the AS' });
  p.check('the page with its connections');
  await p.ctx.close();
});
