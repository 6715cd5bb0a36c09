// ci-variants: build-w1
// The reviewers' page (web/approvals.html, web/assets/approvals.js) in a real
// browser against a static server playing api/approvals, found by review:
// the page showed invisible characters, C1 controls and blank runs as
// \uXXXX, but not C0 controls (U+0000..U+001F) nor DEL (U+007F) in what it
// shows outside the arguments' JSON — the tool name, the connector, the
// requester's names, the approvers, the masked argument names, who decided
// and why. A tool name "read_file<CR><ESC>[2K…" or with line breaks draws
// as something else than what will be called (a <code> folds a line break
// into a space, a carriage return or ESC draws as nothing), and DEL is
// drawn as nothing even inside the JSON. Each must show as \u00XX, as
// hidden characters do; the JSON's own line breaks stay line breaks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml' };

const TOOL = 'read_file\r\u001b[2Kdelete_all\n\n\n\n\ttail\u0000';
const CONNECTOR = 'every\u0007thing';
const ARGS = { path: '/tmp/x\u007f\u007f', 'tok\nen': '[redacted]', note: 'a\tb\u001bc' };
const REQUESTER = { userName: 'alice@acme.com\u000b', displayName: 'Alice\r\nAdmin' };

let server, browser, base;
before(async () => {
  server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const file = p === '/t/acme/approvals' ? 'approvals.html' : p.startsWith('/t/acme/assets/') ? p.slice('/t/acme/'.length) : null;
    if (file) {
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)], 'Content-Security-Policy': CSP });
      return res.end(readFileSync(path.join(web, file)));
    }
    if (p === '/t/acme/api/approvals') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      return res.end(JSON.stringify({
        tenant: 'acme', user: { userName: 'bob@acme.com', displayName: 'Bob' }, csrf: 'c',
        pending: [{ id: 'r1', tool: TOOL, connector: CONNECTOR, requester: REQUESTER,
          created: '2026-01-01T00:00:00Z', seconds_left: 100, approvers: ['DB\u001fAdmins'], arguments: ARGS }],
        history: [{ id: 'r0', state: 'denied', tool: TOOL, connector: CONNECTOR, requester: REQUESTER,
          decided_by: 'carol\u001b[8m@acme.com', reason: 'no\n\nway', decided_at: '2026-01-01T00:00:00Z' }],
      }));
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}/t/acme/`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

const C0 = /[\u0000-\u001F\u007F]/;
const C0_BUT_LF = /[\u0000-\u0009\u000B-\u001F\u007F]/;

test('C0 controls and DEL show as escapes wherever the page shows a held call, and what follows stays on its line', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${base}approvals`);
  const card = page.locator('article.request[data-id="r1"]');
  await card.waitFor();
  const title = await card.locator('h3').textContent();
  const dl = await card.locator('dl').textContent();
  const args = await card.locator('pre.args code').textContent();
  const masked = await card.locator('p.masked').textContent();
  const hist = await page.locator('#history-body tr').first().textContent();
  // the tool name's <code> draws on one line: no text is pushed out of view
  const lines = await card.locator('h3 code').evaluate((e) => e.getClientRects().length);
  await ctx.close();

  assert.ok(!C0.test(title), `the tool name and connector as shown: ${JSON.stringify(title)}`);
  assert.ok(title.includes('read_file\\u000d\\u001b[2Kdelete_all\\u000a\u00D74\\u0009tail\\u0000'), title);
  assert.ok(title.includes('every\\u0007thing'), title);
  assert.equal(lines, 1, 'the tool name is one line');
  assert.ok(!C0.test(dl), `requester and approvers as shown: ${JSON.stringify(dl)}`);
  assert.ok(dl.includes('Alice\\u000d\\u000aAdmin (alice@acme.com\\u000b)'), dl);
  assert.ok(dl.includes('DB\\u001fAdmins'), dl);
  // the arguments' JSON: its own line breaks stay, the agent's controls are
  // JSON escapes, and DEL (which JSON leaves as it is) shows too
  assert.ok(!C0_BUT_LF.test(args), `the arguments as shown: ${JSON.stringify(args)}`);
  assert.ok(args.includes('"/tmp/x\\u007f\\u007f"'), args);
  assert.ok(args.includes('"a\\tb\\u001bc"'), args);
  assert.ok(args.split('\n').length >= 5, 'the JSON is still pretty-printed');
  assert.ok(!C0.test(masked) && masked.includes('tok\\u000aen'), `a masked argument's name: ${JSON.stringify(masked)}`);
  assert.ok(!C0.test(hist), `the history row: ${JSON.stringify(hist)}`);
  assert.ok(hist.includes('carol\\u001b[8m@acme.com') && hist.includes('no\\u000a\\u000away'), hist);
});
