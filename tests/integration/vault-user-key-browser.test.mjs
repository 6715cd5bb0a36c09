// The key form of the employee page (a user_header connector: each person
// gives their own API key) in a real browser (Debian chromium via
// playwright-core), against the real gateway: a key is saved for the
// connector as the page showed it. Bob loads his page; an admin moves the
// connector to another upstream; Bob types the key he meant for the old
// one and presses "Save key": nothing is stored, the page says why and asks
// him to enter it again, and shows the connector as it is now; saved again,
// it is the new upstream's.
// ci-variants: build-w1 (chromium is heavy; the key form's server half runs under ASan in vault-user-key)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { startLoginFixture } from './lib/login.mjs';
import { connectClient, startEverything, startRecorder, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { person, signInAtProvider } from './lib/oauthbrowser.mjs';

let fx, ev, rec, rec2, browser, token;

before(async () => {
  [fx, ev, browser] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'bob@acme.com', externalId: '00u-bob' }] } },
      accounts: { '00u-bob': { email: 'bob@acme.com', email_verified: true } },
    }),
    startEverything(),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
  ]);
  rec = await startRecorder(ev.url);
  rec2 = await startRecorder(ev.url);
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  const r = await admin('PUT', '/connectors/wiki', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  const m = await admin('POST', '/tokens', { user: 'bob@acme.com', name: 'laptop', expires_in_days: 30 });
  assert.equal(m.status, 201, m.body);
  token = m.json.token;
});

after(async () => {
  await browser?.close().catch(() => {});
  await rec?.close?.().catch(() => {});
  await rec2?.close?.().catch(() => {});
  await ev?.stop?.().catch(() => {});
  await fx?.stop();
});

test('chromium: a key typed on a page that showed the connector before an admin moved it is not saved; the page asks again', async () => {
  const p = await person({ fx, browser });
  const { page } = p;
  await page.goto(`${fx.base('acme')}/login`);
  await signInAtProvider(page, { fx }, '00u-bob');
  await page.waitForURL((u) => u.href.startsWith(`${fx.base('acme')}/`));
  await page.goto(`${fx.base('acme')}/`);
  const row = page.locator('#services-body tr', { hasText: 'wiki' });
  await row.waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /not connected/);
  p.check('the page with the key form');

  // the admin moves wiki while the page is open
  const mv = await fx.t.acme.admin('PUT', '/connectors/wiki', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(mv.status, 200, mv.body);

  await page.getByLabel('Your key for wiki (sent as X-Api-Key)').fill('wiki-key-for-the-old-upstream');
  await page.getByRole('button', { name: 'Save key' }).click();
  await page.locator('#error', { hasText: /not saved/ }).waitFor();
  const err = (await page.locator('#error').textContent()).replace(/\s+/g, ' ');
  assert.match(err, /administrator changed this connector/, err);
  assert.match(err, /enter it again/, err);
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /not connected/);
  const conns = await fx.t.acme.admin('GET', `/users/${fx.t.acme.users['bob@acme.com'].id}/connections`);
  assert.deepEqual(conns.json.connections, [], 'nothing stored');
  // the refused PUT is the only console line (the browser logs a 409)
  assert.deepEqual(p.problems.splice(0).filter((x) => !/status of 409/.test(x)), [], 'no other problem');

  // entered again on the page as it is now: saved, and sent to the new upstream
  await page.getByLabel('Your key for wiki (sent as X-Api-Key)').fill('wiki-key-new');
  await page.getByRole('button', { name: 'Save key' }).click();
  await page.getByRole('button', { name: 'Replace key' }).waitFor();
  assert.equal((await page.locator('#error').textContent()).trim(), '');
  p.check('the key saved');
  const c = await connectClient(`${fx.base('acme')}/mcp`, token);
  try {
    const from = rec2.requests().length;
    await c.client.callTool({ name: 'wiki__echo', arguments: { message: 'bob' } });
    const sent = rec2.requests().slice(from).filter((e) => e.json?.method === 'tools/call');
    assert.equal(sent[0]?.headers['x-api-key'], 'wiki-key-new');
  } finally {
    await c.close();
  }
  assert.equal(rec.requests().some((e) => JSON.stringify(e.headers).includes('wiki-key')), false, 'the old upstream saw no key');
  await p.ctx.close();
});
