// The employee page (web/index.html, web/assets/*) and the message template
// (web/message.html) in a real browser: Debian's chromium driven by
// playwright-core. Static-page test: a tiny node server here serves the files
// straight from web/ at /t/acme/… with the gateway's exact CSP and plays the
// API (api/me, api/tokens, logout) from the contract the gateway implements.
// Every test fails on any CSP violation, console error or page error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const web = path.join(root, 'web');
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png',
};
const CSRF = 'csrf-3f9a1c';
const TOKEN = 'mgw_' + 'Zk3q9XbT0vLr7WcY2nPa5sDe8hJm4uGi6oKf1'.repeat(2);

function me() {
  return {
    tenant: 'acme',
    user: { id: 'u-1', userName: 'ada@acme.example', displayName: 'Ada <b>Lovelace</b>', email: 'ada.l@acme.example' },
    groups: ['eng', '<img src=x id=injected>'],
    connectors: [
      { name: 'github', allow: ['*'], block: ['delete_*'], approve: ['merge_pull_request'] },
      { name: 'jira', allow: [], block: [], approve: [] },
    ],
    tokens: {
      allowed: true, max_days: 7,
      items: [{ id: 'tok-1', name: 'old-laptop', created: '2026-01-02T03:04:05Z', expires: '2026-01-09T03:04:05Z', last_used: null }],
    },
    commands: {
      oauth: 'claude mcp add --transport http acme https://gw.example.com/t/acme/mcp',
      header: 'claude mcp add --transport http acme https://gw.example.com/t/acme/mcp --header "Authorization: Bearer <your token>"',
    },
    session: { signed_in_at: '2026-01-02T03:00:00Z', expires_at: '2026-01-02T15:00:00Z' },
    csrf: CSRF,
  };
}

// What the API answers, set per test; what the page sent, recorded.
let state;
function reset(over = {}) {
  state = { me: me(), meStatus: 200, createError: null, seen: [], ...over };
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

async function handle(req, res) {
  let body = '';
  for await (const c of req) body += c;
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const send = (file) => {
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)], 'Content-Security-Policy': CSP });
    res.end(readFileSync(file));
  };
  if (!p.startsWith('/t/acme/')) return json(res, 404, { error: 'not_found' });
  const rel = p.slice('/t/acme/'.length);
  if (req.method === 'GET' && rel === '') return send(path.join(web, 'index.html'));
  if (req.method === 'GET' && /^assets\/[a-z0-9-]+\.(css|js|svg|png)$/.test(rel) && existsSync(path.join(web, rel))) {
    return send(path.join(web, rel));
  }
  if (req.method === 'GET' && rel === 'message') {
    // what the gateway's web_render does: {{name}} → escaped value
    const kv = { title: 'Not assigned', message: "mcpgate isn't assigned to you in Okta — ask IT.", action_href: '/t/acme/', action_text: 'Back', tenant: 'acme' };
    const tmpl = readFileSync(path.join(web, 'message.html'), 'utf8');
    res.writeHead(403, { 'Content-Type': TYPES['.html'], 'Content-Security-Policy': CSP });
    return res.end(tmpl.replace(/\{\{([a-z0-9_]{1,32})\}\}/g, (_, k) => esc(kv[k] ?? '')));
  }
  state.seen.push({ method: req.method, path: p, headers: req.headers, body });
  if (req.method === 'GET' && rel === 'api/me') {
    if (state.meStatus === 'drop') return req.socket.destroy();
    if (state.meStatus === 401) return json(res, 401, { error: 'signed_out', message: 'Sign in first.' });
    if (state.meStatus !== 200) return json(res, state.meStatus, { error: 'internal', message: 'The store is unavailable; try again in a minute.' });
    return json(res, 200, state.me);
  }
  if (req.method === 'POST' && rel === 'api/tokens') {
    if (state.createError) return json(res, 400, state.createError);
    const b = JSON.parse(body);
    const item = { id: 'tok-new', name: b.name, created: '2026-01-02T04:00:00Z', expires: '2026-01-05T04:00:00Z', last_used: null };
    state.me.tokens.items.push(item);
    return json(res, 201, { id: item.id, token: TOKEN, name: item.name, expires: item.expires });
  }
  const del = /^api\/tokens\/([^/]+)$/.exec(rel);
  if (req.method === 'DELETE' && del) {
    state.me.tokens.items = state.me.tokens.items.filter((t) => t.id !== decodeURIComponent(del[1]));
    res.writeHead(204);
    return res.end();
  }
  if (req.method === 'POST' && (rel === 'logout' || rel === 'signout-everywhere')) {
    state.meStatus = 401;
    res.writeHead(303, { Location: '/t/acme/' });
    return res.end();
  }
  return json(res, 404, { error: 'not_found' });
}

let server, base, browser;

before(async () => {
  server = http.createServer((req, res) => {
    handle(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}/t/acme/`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => server.close(r));
});

// A fresh page that records every CSP violation, console error and page error.
async function open(opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1024, height: 800 }, ...opts });
  const page = await ctx.newPage();
  const problems = [];
  page.on('console', (m) => {
    // an API answer that is not 2xx (and the message page's 403) is logged
    // by the browser itself; the page handles those and each test checks
    // what it shows
    if (/^Failed to load resource/.test(m.text()) && /\/t\/acme\/(api\/|message$)/.test(m.location().url)) return;
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  if (opts.javaScriptEnabled !== false) {
    await page.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
  }
  page.done = async () => {
    if (opts.javaScriptEnabled !== false) {
      for (const v of await page.evaluate(() => window.__csp)) problems.push(`CSP violation: ${v}`);
    }
    await ctx.close();
    assert.deepEqual(problems, [], 'no CSP violations, console errors or page errors');
  };
  return page;
}

// Loads the page and waits for its api/me answer to be shown.
async function loaded(page) {
  await Promise.all([page.waitForResponse((r) => r.url().endsWith('/api/me')), page.goto(base)]);
  if (state.meStatus === 200) await page.locator('#signed-in').waitFor();
}

async function noOverflow(page, what) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(w <= 360, `${what}: page is ${w}px wide at a 360px viewport`);
}

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
