// ci-variants: build-w1
// The OAuth consent page (web/consent.html) in a real browser, found by
// review: client_name is whatever an MCP client registers (DCR, or its
// Client ID Metadata Document), 1 to 200 bytes without control characters —
// bidi overrides allowed. Rendered inline, a name ending in U+202E (RIGHT-TO-
// LEFT OVERRIDE) reversed the rest of the heading and of the paragraph
// after it, the page's own warning "(a name it chose: not verified by
// mcpgate)" included, which then read as mirrored gibberish: the one
// sentence meant to make the person doubt the name was unreadable. The
// name must not reorder the page's text around it.
// The template is rendered as the gateway's web_render does ({{name}} →
// HTML-escaped value) and served with the gateway's CSP.
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
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const KV = {
  tenant: 'acme', client_name: 'Claude Code\u202E', client_id: 'abc123', user: 'ada@acme.com',
  resource: 'http://127.0.0.1/t/acme/mcp', redirect_host: 'evil.example', request: 'sealed', csrf: 'c',
};

let server, browser, base;
before(async () => {
  server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/t/acme/consent') {
      const tmpl = readFileSync(path.join(web, 'consent.html'), 'utf8');
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': CSP });
      return res.end(tmpl.replace(/\{\{([a-z0-9_]{1,32})\}\}/g, (_, k) => esc(KV[k] ?? '')));
    }
    if (p === '/t/acme/assets/app.css') {
      res.writeHead(200, { 'Content-Type': 'text/css; charset=utf-8' });
      return res.end(readFileSync(path.join(web, 'assets/app.css')));
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

// The x of the first glyph of `word` in the first element `sel` whose text has it.
async function xOf(page, sel, word) {
  return page.evaluate(([s, w]) => {
    const e = document.querySelector(s);
    const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const i = n.data.indexOf(w);
      if (i < 0) continue;
      const r = document.createRange();
      r.setStart(n, i);
      r.setEnd(n, i + 1);
      return r.getBoundingClientRect().left;
    }
    return null;
  }, [sel, word]);
}

test('a client_name with a right-to-left override does not reverse the page\'s warning around it', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}consent`);
  await page.locator('form').waitFor();
  // left to right, as written: "(a name it chose: not verified by mcpgate)"
  const p = '.message.consent p';
  const [name, chose, verified] = [await xOf(page, p, 'a name'), await xOf(page, p, 'chose'), await xOf(page, p, 'verified')];
  const [to, tools] = [await xOf(page, 'h1', ' to use'), await xOf(page, 'h1', 'tools?')];
  await ctx.close();
  assert.ok(name < chose && chose < verified, `the warning reads left to right (a name ${name}, chose ${chose}, verified ${verified})`);
  assert.ok(to < tools, `the heading reads left to right (to ${to}, tools ${tools})`);
});

// The tab title and the history entry show the name too: there the page's
// <bdi> does not reach, so the name sits between FIRST STRONG ISOLATE and POP
// DIRECTIONAL ISOLATE (U+2068, U+2069), which a title's bidi text honours.
test('the page title isolates the client_name too (FSI … PDI)', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${base}consent`);
  const title = await page.title();
  await ctx.close();
  assert.equal(title, 'Allow \u201C\u2068Claude Code\u202E\u2069\u201D? · mcpgate', JSON.stringify(title));
});
