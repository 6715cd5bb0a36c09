// The reviewers' page (issue 23) in a REAL browser: Debian's chromium driven
// by playwright-core against the gateway binary, the Okta stand-in (the real
// oidc-provider, lib/okta.mjs) and server-everything behind a recorder.
// Alice's agent (the official SDK client) makes a call the policy holds;
// Bob, a DB Admin, opens /t/acme/approvals, signs in with Okta on the way,
// sees the request (requester, tool, connector, pretty-printed arguments as
// text, a live countdown) and approves it with a reason: the waiting SDK
// call gets the tool's result. Also: a denial with its reason; the list
// endpoint is a session's only (401) and filtered in the gateway (the
// requester never sees their own request); a decision with the cookie but
// without the CSRF token or from another origin is 403 and changes nothing;
// someone who can approve nothing gets the 403 page; 375 px wide, nothing
// overflows. Every page fails its test on a CSP violation, a console error
// or a page error (expected non-2xx answers are named).
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { request, waitFor } from './lib/gateway.mjs';
import { startLoginFixture } from './lib/login.mjs';
import { startEverything, startRecorder, connectClient, toolText, UPSTREAM_SECRET } from './lib/mcp.mjs';
import { forwardedCalls } from './lib/policy.mjs';
import { person, signInAtProvider, gestureClick } from './lib/oauthbrowser.mjs';

const USERS = ['alice', 'bob', 'carol', 'dave'];
const email = (u) => `${u}@acme.com`;
let f, up, rec, admin, base, clients = {};

before(async () => {
  let fx, browser;
  [fx, browser, up] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: USERS.map((u) => ({ userName: email(u), externalId: `00u-${u}`, displayName: `${u[0].toUpperCase()}${u.slice(1)} Test` })) } },
      accounts: Object.fromEntries(USERS.map((u) => [`00u-${u}`, { email: email(u), email_verified: true }])),
      gatewayArgs: ['--approval-progress-interval-ms', '200'],
    }),
    chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] }),
    startEverything(),
  ]);
  f = { fx, browser };
  base = `${fx.gw.url}/t/acme/`;
  rec = await startRecorder(up.url);
  const { scim, users } = fx.t.acme;
  admin = fx.t.acme.admin;
  const id = (u) => users[email(u)].id;
  await scim.createGroup('Engineers', USERS.map(id));
  await scim.createGroup('DB Admins', [id('bob'), id('dave')]);
  let r = await admin('PUT', '/connectors/everything', { url: rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum', 'echo'], approvers: ['DB Admins'], approval_timeout_s: 120 }],
  });
  assert.equal(r.status, 200, r.body);
  for (const u of ['alice', 'bob', 'dave']) {
    const m = await admin('POST', '/tokens', { user: email(u), name: 'laptop', expires_in_days: 1 });
    assert.equal(m.status, 201, m.body);
    clients[u] = await connectClient(`${fx.gw.url}/t/acme/mcp/everything`, m.json.token);
  }
});

after(async () => {
  for (const c of Object.values(clients)) await c.client.close().catch(() => {});
  await f?.browser?.close().catch(() => {});
  await rec?.stop?.().catch(() => {});
  await up?.stop?.().catch(() => {});
  await f?.fx?.stop();
});

/** A call the policy holds: resolves {result} or {error} when it ends. */
function held(who, name, args) {
  return clients[who].client.callTool({ name, arguments: args }, undefined, { timeout: 20000, resetTimeoutOnProgress: true })
    .then((result) => ({ result }), (error) => ({ error }));
}

/** The pending request of tool with args (admin list), once it exists. */
async function pendingFor(tool, args) {
  let found;
  await waitFor(async () => {
    const r = await admin('GET', '/approvals?state=pending');
    found = r.json.approvals.find((a) => a.tool === tool && JSON.stringify(a.arguments) === JSON.stringify(args));
    return !!found;
  }, { timeoutMs: 8000, what: `a pending request for ${tool}` });
  return found;
}

/** A browser person signed in with Okta by opening the approvals page. */
async function signedIn(who, viewport) {
  const p = await person(f, viewport);
  await p.page.goto(`${base}approvals`);
  await signInAtProvider(p.page, f, `00u-${who}`);
  await p.page.waitForURL(`${base}approvals`);
  return p;
}

const card = (page, id) => page.locator(`article.request[data-id="${id}"]`);
const state = async (id) => (await admin('GET', `/approvals/${id}`)).json.state;
const cookieOf = async (p) => (await p.ctx.cookies(base)).filter((c) => c.name === 'mcpgate-acme').map((c) => `${c.name}=${c.value}`).join('; ');

let bob;

test('no session: the list endpoint is 401, the page sends you to sign in and back', async () => {
  let r = await request(f.fx.gw.port, { path: '/t/acme/api/approvals' });
  assert.equal(r.status, 401, r.body);
  assert.equal(JSON.parse(r.body).error, 'signed_out');
  r = await request(f.fx.gw.port, { path: '/t/acme/approvals' });
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, '/t/acme/login?return=/t/acme/approvals');
  r = await request(f.fx.gw.port, { method: 'POST', path: `/t/acme/approvals/${'0'.repeat(32)}/approve` });
  assert.equal(r.status, 401, r.body);
});

test('an approver signs in with Okta, sees Alice\'s held call and approves it with a reason: the waiting call gets the result', async () => {
  const args = { a: 2, b: 3 };
  const call = held('alice', 'get-sum', args);
  const req = await pendingFor('get-sum', args);
  const other = held('alice', 'echo', { message: 'second' }); // a newer card above it
  const otherReq = await pendingFor('echo', { message: 'second' });
  bob = await signedIn('bob');
  const { page } = bob;
  const c = card(page, req.id);
  await c.waitFor();
  assert.match(await c.locator('h3').textContent(), /^get-sum on everything$/);
  const dl = Object.fromEntries(await c.locator('dl').evaluate((d) => [...d.querySelectorAll('dt')].map((t) => [t.textContent, t.nextElementSibling.textContent])));
  assert.equal(dl['Requested by'], 'Alice Test (alice@acme.com)');
  assert.equal(dl.Approvers, 'DB Admins');
  assert.match(dl['Time left'], /^[12]:\d\d left$/);
  assert.equal(await c.locator('pre.args code').textContent(), JSON.stringify(args, null, 2), 'pretty-printed');
  assert.equal(await page.locator('#who').textContent(), 'Signed in as Bob Test (bob@acme.com).');
  // the countdown is live
  const t0 = await c.locator('.countdown').textContent();
  assert.match(t0, /^[12]:\d\d left$/);
  await page.waitForFunction(([sel, t]) => document.querySelector(sel).textContent !== t, [`article.request[data-id="${req.id}"] .countdown`, t0]);
  assert.equal(forwardedCalls(rec, 'get-sum').length, 0, 'nothing upstream before the approval');
  await c.getByLabel('Reason (optional)').fill('looks fine');
  // the list refreshes on its own (every 5 s): what is being typed stays, focused
  assert.deepEqual(await page.locator('article.request').evaluateAll((a) => a.map((x) => x.dataset.id)), [otherReq.id, req.id], 'newest first');
  await page.waitForResponse((r) => r.url() === `${base}api/approvals`);
  await page.evaluate(() => new Promise((r) => setTimeout(r, 50))); // rendered
  assert.equal(await c.getByLabel('Reason (optional)').inputValue(), 'looks fine');
  assert.equal(await page.evaluate(() => document.activeElement?.id), `reason-${req.id}`);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}approvals/${req.id}/approve`),
    gestureClick(page, c.getByRole('button', { name: 'Approve get-sum for Alice Test (alice@acme.com)' })),
  ]);
  assert.equal(res.status(), 200);
  const out = await call;
  assert.ok(out.result, `the call succeeded: ${out.error}`);
  assert.match(toolText(out.result), /5/);
  assert.equal(forwardedCalls(rec, 'get-sum').length, 1, 'exactly one call upstream');
  // gone from pending, in the history with who and why
  await c.waitFor({ state: 'detached' });
  const row = page.locator('#history-body tr', { hasText: 'looks fine' });
  await row.waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /get-sum on everything.*alice@acme\.com.*Approved.*bob@acme\.com.*looks fine/);
  const v = await admin('GET', `/approvals/${req.id}`);
  assert.equal(v.json.state, 'approved');
  assert.equal(v.json.decided_by, 'bob@acme.com');
  assert.equal(v.json.reason, 'looks fine');
  assert.equal((await admin('POST', `/approvals/${otherReq.id}/cancel`)).status, 200);
  assert.equal((await other).error?.code, -32010);
  bob.check('approve');
});

test('deny from the page: the waiting call fails naming the reviewer and the reason; an argument\'s markup stays text, its hidden characters show', async () => {
  const { page } = bob;
  const evil = '<img src=x onerror="window.__pwned=1" id=injected>';
  // found by review: a right-to-left override (or a zero-width space) in
  // an argument reordered or hid what the reviewer read (Trojan Source)
  const args = { message: evil, path: 'safe/\u202Egpj.exe\u200B' };
  const call = held('alice', 'echo', args);
  const req = await pendingFor('echo', args);
  await page.reload();
  const c = card(page, req.id);
  await c.waitFor();
  const shown = await c.locator('pre.args code').textContent();
  assert.equal(shown, JSON.stringify(args, null, 2).replace('\u202E', '\\u202e').replace('\u200B', '\\u200b'));
  assert.ok(!/[\u200B\u202E]/.test(shown), 'no hidden character reaches the page');
  assert.equal(await page.locator('#injected').count(), 0, 'no element made from the arguments');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await c.getByLabel('Reason (optional)').fill('not on prod');
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}approvals/${req.id}/deny`),
    c.getByRole('button', { name: /^Deny echo for / }).click(),
  ]);
  assert.equal(res.status(), 200);
  const out = await call;
  assert.equal(out.error?.code, -32008, String(out.error));
  assert.match(String(out.error.message), /denied by bob@acme\.com: not on prod/);
  assert.equal(forwardedCalls(rec, 'echo').length, 0);
  await c.waitFor({ state: 'detached' });
  const row = page.locator('#history-body tr', { hasText: 'not on prod' });
  await row.waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, ' '), /^echo on everything.*alice@acme\.com.*Denied.*bob@acme\.com.*not on prod/);
  assert.equal(await page.locator('#history-body tr').first().textContent(), await row.textContent(), 'the latest first');
  bob.check('deny');
});

test('a decision with the session cookie but without the CSRF token, or from another origin, is 403 and changes nothing; the requester does not see their own request', async () => {
  const args = { a: 40, b: 2 };
  const call = held('dave', 'get-sum', args);
  const req = await pendingFor('get-sum', args);
  const cookie = await cookieOf(bob);
  const csrf = await bob.page.evaluate(async () => (await (await fetch('api/approvals')).json()).csrf);
  assert.ok(csrf.length >= 32);
  const post = (headers) => request(f.fx.gw.port, {
    method: 'POST', path: `/t/acme/approvals/${req.id}/approve`, body: '{}',
    headers: { 'Content-Type': 'application/json', Cookie: cookie, ...headers },
  });
  let r = await post({});
  assert.equal(r.status, 403, r.body);
  assert.equal(JSON.parse(r.body).error, 'csrf');
  r = await post({ 'X-CSRF-Token': 'x'.repeat(csrf.length) });
  assert.equal(r.status, 403, r.body);
  r = await post({ 'X-CSRF-Token': csrf, Origin: 'http://evil.example' });
  assert.equal(r.status, 403, r.body);
  r = await post({ 'X-CSRF-Token': csrf, 'Sec-Fetch-Site': 'cross-site' });
  assert.equal(r.status, 403, r.body);
  assert.equal(await state(req.id), 'pending', 'nothing was decided');
  // Bob sees Dave's request, never his own (he is a DB Admin too)
  const mine = held('bob', 'get-sum', { a: 50, b: 1 });
  const own = await pendingFor('get-sum', { a: 50, b: 1 });
  const { page } = bob;
  await page.reload();
  await card(page, req.id).waitFor();
  assert.equal(await card(page, own.id).count(), 0, 'his own request is not listed');
  const list = await page.evaluate(async () => (await fetch('api/approvals')).json());
  assert.ok(list.pending.some((x) => x.id === req.id));
  assert.ok(!JSON.stringify(list).includes(own.id), 'nowhere in his list, history included');
  // with the token, from the page itself: it is his own request, refused
  const st = await page.evaluate(async ([id, t]) => (await fetch(`approvals/${id}/approve`, { method: 'POST', headers: { 'X-CSRF-Token': t, 'Content-Type': 'application/json' }, body: '{}' })).status, [own.id, list.csrf]);
  assert.equal(st, 403);
  bob.problems.splice(0, bob.problems.length, ...bob.problems.filter((x) => !/status of 403/.test(x)));
  assert.equal(await state(own.id), 'pending');
  assert.equal((await admin('POST', `/approvals/${own.id}/cancel`)).status, 200);
  assert.equal((await mine).error?.code, -32010);
  assert.equal(await state(req.id), 'pending');
  assert.equal((await admin('POST', `/approvals/${req.id}/cancel`)).status, 200);
  assert.equal((await call).error?.code, -32010);
  bob.check('csrf');
});

test('someone who can approve nothing gets the "not an approver" page (403), and the list API says so', async () => {
  const carol = await person(f);
  const { page } = carol;
  await page.goto(`${base}approvals`);
  await signInAtProvider(page, f, '00u-carol');
  await page.getByRole('heading', { level: 1, name: 'You are not an approver' }).waitFor();
  assert.equal(page.url(), `${base}approvals`);
  const st = await page.evaluate(async () => (await fetch('', { cache: 'no-store' })).status);
  assert.equal(st, 403);
  const api = await page.evaluate(async () => { const r = await fetch('api/approvals'); return [r.status, (await r.json()).error]; });
  assert.deepEqual(api, [403, 'not_an_approver']);
  assert.equal(await page.locator('.action a').getAttribute('href'), '/t/acme/');
  carol.problems.splice(0, carol.problems.length, ...carol.problems.filter((p) => !/status of 403/.test(p)));
  carol.check('403 page');
  await carol.ctx.close();
});

test('on a phone (375 x 812) a request with long arguments renders without horizontal overflow', async () => {
  const args = { message: 'x'.repeat(400) + ' ' + 'DROP TABLE customers; '.repeat(10) };
  const call = held('alice', 'echo', args);
  const req = await pendingFor('echo', args);
  const { page } = bob;
  await page.setViewportSize({ width: 375, height: 812 });
  await page.reload();
  await card(page, req.id).waitFor();
  assert.equal(await page.evaluate(() => window.innerWidth), 375);
  const w = await page.evaluate(() => document.scrollingElement.scrollWidth);
  assert.ok(w <= 375, `the page is ${w}px wide at 375px`);
  // control: something too wide is measured as overflow
  const wide = await page.evaluate(() => {
    const d = document.createElement('div');
    d.style.width = '500px';
    d.style.height = '1px';
    document.querySelector('main').appendChild(d);
    const sw = document.scrollingElement.scrollWidth;
    d.remove();
    return sw;
  });
  assert.ok(wide > 375, `a 500px element makes the page ${wide}px wide`);
  assert.equal((await admin('POST', `/approvals/${req.id}/cancel`)).status, 200);
  assert.equal((await call).error?.code, -32010);
  bob.check('phone');
  await bob.ctx.close();
});

// Found by review: Approve took the second press of a "double-click" page
// on another site (a popup closed on the first press, the reviewers' page
// loaded behind it), and a request that arrived while the reviewer read
// another was inserted above it, so the click meant for the one read
// approved the new one. Approve now takes only a click the reviewer meant
// (web/assets/gesture.js: the page visible and focused 500 ms, then their
// own pointer move), a new card goes below those shown, and Approve takes
// no click for a moment after the cards move.
test('a request arriving while the reviewer reads another goes below it, and Approve takes no click for a moment after the cards move', async () => {
  bob = await signedIn('bob');
  const { page } = bob;
  const a1 = { a: 7, b: 7 };
  const first = held('alice', 'get-sum', a1);
  const r1 = await pendingFor('get-sum', a1);
  const c1 = card(page, r1.id);
  await c1.waitFor();
  const approve1 = c1.getByRole('button', { name: /^Approve get-sum/ });
  assert.equal(await approve1.isDisabled(), true, 'no click before the reviewer\'s own gesture');
  // the reviewer reads it, pointer on Approve: it takes a click now
  await c1.scrollIntoViewIfNeeded();
  await waitFor(async () => {
    const box = await approve1.boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2 + Math.random());
    return approve1.isEnabled();
  }, { timeoutMs: 5000, intervalMs: 100, what: 'Approve enabled after the reviewer\'s gesture' });

  // a new request arrives: below the card being read, never in its place
  const a2 = { message: 'drop the customers table' };
  const second = held('alice', 'echo', a2);
  const r2 = await pendingFor('echo', a2);
  await card(page, r2.id).waitFor();
  const disabledRightAfter = await approve1.isDisabled();
  const order = await page.locator('article.request').evaluateAll((a) => a.map((x) => x.dataset.id));
  assert.ok(order.indexOf(r1.id) < order.indexOf(r2.id), `the new card is below the one read: ${order}`);
  assert.equal(disabledRightAfter, true, 'the cards moved under the pointer: Approve takes no click for a moment');
  for (const r of [r1, r2]) assert.equal((await admin('POST', `/approvals/${r.id}/cancel`)).status, 200);
  assert.equal((await first).error?.code, -32010);
  assert.equal((await second).error?.code, -32010);
  bob.check('gesture and new cards');
  await bob.ctx.close();
});
