// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan: the slots are the process's)
// A SCIM body is buffered whole (up to scim_max_body, 32 MiB) for as long
// as body_timeout_ms before anything else bounds it. Found by review: a
// tenant's SCIM token (which its admin can mint) on 80 connections, each
// sending most of a large body and then nothing, held 2.3 GiB of the
// gateway every tenant shares, and more with more connections. A tenant now
// has at most 16 SCIM bodies coming in at once, of which 2 large ones (past
// 256 KiB, or chunked): the next is 429 at its headers, before a byte of its
// body is read, in SCIM's error shape with Retry-After (which Okta honours).
// Per tenant: another tenant's requests are served all the while.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { waitFor, metricValue } from './lib/gateway.mjs';
import { startScimGateway, scrape, URN, scimBase, assertScimError } from './lib/scim.mjs';

let gw, acme, globex;
const open = new Set();

before(async () => {
  const s = await startScimGateway({ tenants: ['acme', 'globex'] });
  gw = s.gw;
  acme = s.tenants.acme;
  globex = s.tenants.globex;
});
after(() => { for (const h of open) h.sock.destroy(); });

/** A POST /Users whose headers say `length` bytes (or chunked) and whose
 * body stops after a few: what it is answered (if anything) is collected. */
function holdBody(t, { length, chunked = false } = {}) {
  const sock = net.connect(gw.port, '127.0.0.1');
  const h = { sock, data: '', closed: false };
  h.answered = new Promise((resolve) => {
    sock.on('data', (d) => {
      h.data += d;
      const end = h.data.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: *(\d+)/i.exec(h.data.slice(0, end));
      if (end >= 0 && len && Buffer.byteLength(h.data.slice(end + 4)) >= Number(len[1])) resolve(h.data);
    });
    sock.on('close', () => { h.closed = true; resolve(h.data); });
    sock.on('error', () => {});
  });
  const head = [`POST ${scimBase(t.id)}/Users HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${t.token}`,
    'Content-Type: application/scim+json', chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`, '', ''].join('\r\n');
  sock.write(head + (chunked ? '10\r\n{"schemas":["urn' : '{"schemas":["urn')); // 16 bytes: the chunk's
  open.add(h);
  h.close = () => { sock.destroy(); open.delete(h); };
  return h;
}

function parse(raw) {
  const [head, body] = raw.split('\r\n\r\n');
  const lines = head.split('\r\n');
  const headers = {};
  for (const l of lines.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim(); }
  let json = null;
  try { json = JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1)); } catch { /* none */ }
  return { status: Number(lines[0].split(' ')[1]), headers, json, body };
}

/** A user whose body is ~300 KiB: past 256 KiB (a large body), refused 413 once read (a resource's bound). */
const largeUser = (userName) => ({ schemas: [URN.USER], userName, note: 'x'.repeat(300 * 1024) });

/** Holds n bodies of t at once; resolves once one is answered: [the answer parsed, the held ones]. */
async function oneRefused(t, n, opts) {
  const held = Array.from({ length: n }, (_, i) => holdBody(t, typeof opts === 'function' ? opts(i) : opts));
  let timer;
  const raw = await Promise.race([...held.map((h) => h.answered),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`none of ${n} bodies was answered in 10 s`)), 10000); })]);
  clearTimeout(timer);
  const refused = held.filter((h) => h.data !== '');
  assert.equal(refused.length, 1, `exactly one of ${n} answered: ${refused.map((h) => h.data.split('\r\n')[0]).join(', ')}`);
  return [parse(raw), held.filter((h) => h.data === '')];
}

test('a tenant\'s third large SCIM body is 429 at its headers; small ones and another tenant\'s are served; the places come back', async () => {
  const m0 = metricValue(await scrape(gw.port), 'mcpgate_scim_bodies_limited_total') ?? 0;
  // two large bodies (one of 8 MiB announced, one chunked, one of 1 MiB) held at once: one is refused
  const [third, held] = await oneRefused(acme, 3, (i) => (i === 1 ? { chunked: true } : { length: i ? 1 << 20 : 8 << 20 }));
  assertScimError(third, 429);
  assert.equal(third.headers['retry-after'], '1');
  assert.match(third.json.detail, /large SCIM request bodies/);
  assert.equal(held.length, 2);

  // a small body of the same tenant is served, and another tenant's large one is read and parsed
  const small = await acme.c.post('/Users', { schemas: [URN.USER], userName: 'small@slots.test' });
  assert.equal(small.status, 201, small.body);
  const other = await globex.c.post('/Users', largeUser('large@globex.test'));
  assertScimError(other, 413); // read whole, then refused by the resource's bound: not kept out
  assert.match(other.json.detail, /256 KiB/);
  for (const h of held) assert.equal(h.data, '', 'a held body got no answer');

  // the held bodies end: the tenant's large places come back
  for (const h of held) h.close();
  const again = await waitFor(async () => {
    const r = await acme.c.post('/Users', largeUser('large@acme.test'));
    return r.status !== 429 ? r : null;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'a large body served once the held ones ended' });
  assertScimError(again, 413);
  const m1 = metricValue(await scrape(gw.port), 'mcpgate_scim_bodies_limited_total');
  assert.ok(m1 >= m0 + 1, `refusals counted: ${m0} -> ${m1}`);
});

test('sixteen bodies coming in at once per tenant: the seventeenth is 429; another tenant is served', async () => {
  const [r, held] = await oneRefused(acme, 17, { length: 1000 });
  assertScimError(r, 429);
  assert.match(r.json.detail, /most SCIM request bodies coming in at once/);
  assert.equal(held.length, 16);
  const other = await globex.c.post('/Users', { schemas: [URN.USER], userName: 'served@globex.test' });
  assert.equal(other.status, 201, other.body);
  // reads take no place
  const list = await acme.c.get('/Users?count=1');
  assert.equal(list.status, 200, list.body);
  for (const h of held) assert.equal(h.data, '', 'a held body got no answer');
  for (const h of held) h.close();
  const back = await waitFor(async () => {
    const x = await acme.c.post('/Users', { schemas: [URN.USER], userName: 'back@slots.test' });
    return x.status !== 429 ? x : null;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'a body served once the held ones ended' });
  assert.equal(back.status, 201, back.body);
});
