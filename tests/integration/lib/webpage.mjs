// tests/integration/lib/webpage.mjs — the static-page fixture of
// web-static*.test.mjs: the employee page (web/index.html, web/assets/*) and
// the message template (web/message.html) in a real browser (Debian's
// chromium driven by playwright-core). A tiny node server serves the files
// straight from web/ at /t/acme/… with the gateway's exact CSP and plays the
// API (api/me, api/tokens, logout) from the contract the gateway implements
// (the real gateway's pages are oidc-browser.test.mjs's). Every page opened
// with open() fails its test on any CSP violation, console error or page
// error. Split over two files so each stays well inside node's 30 s per
// file when the suite runs three files at once on two cores.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const web = path.join(root, 'web');
export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png',
};
export const CSRF = 'csrf-3f9a1c';
export const TOKEN = 'mgw_' + 'Zk3q9XbT0vLr7WcY2nPa5sDe8hJm4uGi6oKf1'.repeat(2);

export function me() {
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
export let state;
export function reset(over = {}) {
  state = { me: me(), meStatus: 200, createError: null, seen: [], ...over };
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

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

let server, browser;
export let base;

/** Starts the static server and the browser for this test file. */
export function useStaticPage() {
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
}

// A fresh page that records every CSP violation, console error and page error.
export async function open(opts = {}) {
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
export async function loaded(page) {
  await Promise.all([page.waitForResponse((r) => r.url().endsWith('/api/me')), page.goto(base)]);
  if (state.meStatus === 200) await page.locator('#signed-in').waitFor();
}

export async function noOverflow(page, what) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(w <= 360, `${what}: page is ${w}px wide at a 360px viewport`);
}

