// Vault 2/2 (issue 21 part 1): a discovered connector, connected in a real
// browser (Debian chromium via playwright-core). The admin gives only the
// URL (discover:true; the AS — oidc-provider — registers the gateway by
// DCR and binds tokens to the connector URL by RFC 8707); Alice signs in at
// the gateway, opens /t/acme/connect/crm, signs in at the upstream's AS and
// lands on the success page; her calls carry a token whose audience is the
// connector URL; deactivation revokes it at the AS.
// ci-variants: build-w1 (chromium is heavy; the flow runs under ASan in vault-discover)
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
    startVaultFixture({
      users: ['alice'],
      asOptions: { registration: true, resourceIndicators: true },
      upOptions: { audience: true },
      connectorBody: (as, up) => ({ url: up.url, auth: { type: 'oauth', discover: true, scopes: ['openid', 'offline_access', 'tools.read'] } }),
    }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
});
after(async () => {
  await browser?.close().catch(() => {});
  await v?.stop();
});

test('chromium: connect a discovered connector; the upstream sees her audience-bound token; deactivation revokes it', async () => {
  const g = await v.admin('GET', '/connectors/crm');
  assert.equal(g.json.auth.discovered.registration, 'dcr');
  const p = await person({ fx: v.fx, browser });
  await p.ctx.route(`${v.as.issuer}/favicon.ico`, (r) => r.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }));
  const { page } = p;

  await page.goto(`${v.base}/login`);
  await page.waitForURL((u) => u.href.startsWith(`${v.fx.okta.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill('00u-alice');
  await page.locator('input[name="password"]').fill('correct horse');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.href.startsWith(v.fx.gw.url));

  await page.goto(`${v.base}/connect/crm`);
  await page.waitForURL((u) => u.href.startsWith(`${v.as.issuer}/interaction/`));
  await page.locator('input[name="login"]').fill('alice');
  await page.locator('button[type="submit"]').click();

  await page.waitForURL((u) => u.href.startsWith(`${v.base}/connect/crm/callback`));
  const text = (await page.locator('body').textContent()).replace(/\s+/g, ' ');
  assert.match(text, /crm is connected/, text.slice(0, 400));
  p.check('the sign-in, the AS form and the success page');

  const c = await v.client('alice');
  let token;
  try {
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    assert.equal(who.client_id, g.json.auth.client_id, 'the registered client');
    const seen = v.up.seen().filter((s) => s.method === 'tools/call').at(-1);
    assert.equal(seen.aud, v.up.url);
    token = seen.token;
  } finally {
    await c.close();
  }
  await v.deactivate('alice');
  await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, intervalMs: 100, what: 'revoked at the AS' });
});
