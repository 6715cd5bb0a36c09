// Authenticate before reading the body (issue 12 item 5): on SCIM, MCP
// (both endpoints) and admin routes the credential is checked when the
// headers are complete, so an unauthenticated client cannot make the
// gateway read (and buffer) up to the route's body cap.
//   1. per route kind, a 30 MiB body announced and pushed as fast as the
//      socket takes it, with no token and with a well-formed unknown token:
//      401 in the route's format with WWW-Authenticate, promptly, and the
//      gateway read (its /proc/<pid>/io rchar) well under 1 MiB;
//   2. the same with a slow sender and a chunked body;
//   3. Expect: 100-continue with a bad token: 401, never a 100; with the
//      right token the 100 comes and the request succeeds;
//   4. authenticated large bodies are still read and served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';

import { startGateway, sleep, rawHttp } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const MiB = 1024 * 1024;
const ALICE = 'alice@acme.com';
const UNKNOWN = 'mgw_' + 'A'.repeat(43); // well-formed, in no store

let fx;
async function fixture() {
  if (fx) return fx;
  // caps above the announced size: the refusal must come from the credential
  const gw = await startGateway({ args: ['--mcp-max-body', '64M', '--max-body-bytes', '64M', '--scim-max-body', '64M'] });
  const up = await startCtlUpstream({ name: 'ca' });
  const t = await setupTenant(gw, { users: [ALICE] });
  const r = await t.putConnector('ca', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'secret-ca' } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken(ALICE);
  assert.equal(m.status, 201, m.body);
  fx = { gw, t, token: m.token };
  return fx;
}

function rchar(pid) {
  const m = /rchar:\s*(\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'));
  return Number(m[1]);
}

/**
 * A hostile upload: headers, then body bytes as fast as the socket takes
 * them (or `chunk` bytes every `delayMs`), for up to `forMs` or until the
 * gateway closes. Returns {status, head, text, respondedMs, written, readByGateway}.
 */
async function upload(gw, { path, headers = {}, announced, chunked = false, delayMs = 0, chunk = 64 * 1024, forMs = 3000 }) {
  const before = rchar(gw.proc.pid);
  const sock = net.connect(gw.port, '127.0.0.1');
  await once(sock, 'connect');
  let got = Buffer.alloc(0);
  let closed = false;
  let respondedMs = null;
  const t0 = Date.now();
  sock.on('data', (d) => {
    got = Buffer.concat([got, d]);
    if (respondedMs === null && got.includes('\r\n\r\n') && !/^HTTP\/1\.1 100/.test(got.toString('latin1'))) respondedMs = Date.now() - t0;
  });
  sock.on('close', () => { closed = true; });
  sock.on('error', () => {});
  let head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += chunked ? 'Transfer-Encoding: chunked\r\n\r\n' : `Content-Length: ${announced}\r\n\r\n`;
  sock.write(head);
  const piece = Buffer.alloc(chunk, 0x20); // JSON whitespace
  let written = 0;
  while (!closed && written < announced && Date.now() - t0 < forMs) {
    if (sock.writableNeedDrain) {
      await Promise.race([once(sock, 'drain'), once(sock, 'close'), sleep(50)]);
      continue;
    }
    sock.write(chunked ? Buffer.concat([Buffer.from(piece.length.toString(16) + '\r\n'), piece, Buffer.from('\r\n')]) : piece);
    written += piece.length;
    if (delayMs) await sleep(delayMs);
  }
  // the gateway ends the connection itself (linger timer: 2 s)
  const end = Date.now() + 5000;
  while (!closed && Date.now() < end) await sleep(25);
  sock.destroy();
  const readByGateway = rchar(gw.proc.pid) - before;
  const text = got.toString('latin1');
  const i = text.indexOf('\r\n\r\n');
  const headText = i >= 0 ? text.slice(0, i) : text;
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(headText)?.[1] ?? 0);
  return { status, head: headText, text, body: i >= 0 ? text.slice(i + 4) : '', respondedMs, written, readByGateway, closedByGateway: closed };
}

function assertRefusedUnread(r, what, { announced, format }) {
  assert.equal(r.status, 401, `${what}: 401, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.match(r.head, /\r\nWWW-Authenticate: Bearer /i, `${what}: WWW-Authenticate: ${r.head}`);
  assert.match(r.head, /\r\nConnection: close/i, `${what}: the connection closes: ${r.head}`);
  assert.ok(r.respondedMs !== null && r.respondedMs < 1000, `${what}: answered promptly (${r.respondedMs} ms)`);
  assert.ok(r.closedByGateway, `${what}: the gateway closed the connection`);
  assert.ok(r.readByGateway < 1 * MiB,
    `${what}: the gateway read ${r.readByGateway} bytes of a ${announced}-byte body (client pushed ${r.written})`);
  format(r.body, what);
}

const scimFormat = (b, what) => {
  const j = JSON.parse(b);
  assert.ok(j.schemas?.includes('urn:ietf:params:scim:api:messages:2.0:Error'), `${what}: a SCIM Error: ${b}`);
  assert.equal(String(j.status), '401', `${what}: ${b}`);
};
const mcpFormat = (b, what) => assert.equal(JSON.parse(b).error, 'invalid_token', `${what}: ${b}`);
const adminFormat = (b, what) => assert.equal(JSON.parse(b).error, 'unauthorized', `${what}: ${b}`);

const ROUTES = [
  { kind: 'SCIM', path: '/t/acme/scim/v2/Users', format: scimFormat, bad: 'mgs_' + 'B'.repeat(43) },
  { kind: 'MCP (one connector)', path: '/t/acme/mcp/ca', format: mcpFormat, bad: UNKNOWN,
    extra: { Accept: 'application/json, text/event-stream' } },
  { kind: 'MCP (aggregated)', path: '/t/acme/mcp', format: mcpFormat, bad: UNKNOWN,
    extra: { Accept: 'application/json, text/event-stream' } },
  { kind: 'admin', path: '/admin/v1/tenants', format: adminFormat, bad: 'mga_' + 'C'.repeat(43) },
];

test('1. a 30 MiB unauthenticated body is refused with 401 before it is read, on every route kind', async () => {
  const f = await fixture();
  const announced = 30 * MiB;
  for (const rt of ROUTES) {
    for (const [label, auth] of [['no token', undefined], ['unknown token', `Bearer ${rt.bad}`]]) {
      const headers = { ...(rt.extra ?? {}), ...(auth ? { Authorization: auth } : {}) };
      const r = await upload(f.gw, { path: rt.path, headers, announced });
      assertRefusedUnread(r, `${rt.kind}, ${label}`, { announced, format: rt.format });
    }
  }
  // a token of another kind is not this route's credential
  const r = await upload(f.gw, { path: '/t/acme/scim/v2/Users', headers: { Authorization: `Bearer ${f.token}` }, announced });
  assertRefusedUnread(r, 'SCIM with an employee token', { announced, format: scimFormat });
});

test('2. a slow sender and a chunked body are refused the same way', async () => {
  const f = await fixture();
  const slow = await upload(f.gw, { path: '/t/acme/mcp/ca', headers: { Accept: 'application/json, text/event-stream' },
    announced: 8 * MiB, chunk: 16 * 1024, delayMs: 5 });
  assertRefusedUnread(slow, 'MCP, 8 MiB sent slowly', { announced: 8 * MiB, format: mcpFormat });
  const ch = await upload(f.gw, { path: '/t/acme/scim/v2/Groups', headers: { Authorization: 'Bearer nope' },
    announced: 30 * MiB, chunked: true });
  assertRefusedUnread(ch, 'SCIM, chunked 30 MiB', { announced: 30 * MiB, format: scimFormat });
});

test('3. Expect: 100-continue with a bad token gets 401 and never a 100; with the right token the 100 comes', async () => {
  const f = await fixture();
  for (const rt of ROUTES) {
    const head = `POST ${rt.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${rt.bad}\r\n` +
      'Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n' +
      `Expect: 100-continue\r\nContent-Length: ${20 * MiB}\r\n\r\n`;
    const r = await rawHttp(f.gw.port, head, { timeoutMs: 3000, responses: 1 });
    const text = r.data;
    assert.ok(!/HTTP\/1\.1 100/.test(text), `${rt.kind}: no 100 Continue: ${text.slice(0, 300)}`);
    assert.equal(r.responses?.[0]?.status, 401, `${rt.kind}: 401: ${text.slice(0, 300)}`);
  }
  // the right SCIM token: 100, then the body, then 201
  const body = JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'expect@acme.com', active: true });
  const sock = net.connect(f.gw.port, '127.0.0.1');
  await once(sock, 'connect');
  let got = '';
  sock.on('data', (d) => { got += d.toString('latin1'); });
  sock.write(`POST /t/acme/scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${f.t.tenant.scim.token}\r\n` +
    `Content-Type: application/scim+json\r\nExpect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
  const end = Date.now() + 3000;
  while (!got.includes('100 Continue') && Date.now() < end) await sleep(10);
  assert.match(got, /^HTTP\/1\.1 100 Continue\r\n/, `a 100 for the right token: ${got}`);
  sock.write(body);
  while (!/HTTP\/1\.1 201/.test(got) && Date.now() < end + 2000) await sleep(10);
  sock.destroy();
  assert.match(got, /HTTP\/1\.1 201/, `the user is created: ${got.slice(0, 400)}`);
});

test('4. authenticated large bodies are still read and served', async () => {
  const f = await fixture();
  // MCP: a 3 MiB tools/call argument reaches the upstream and comes back
  const s = await rawSession(`${f.gw.url}/t/acme/mcp/ca`, f.token);
  const big = 'x'.repeat(3 * MiB);
  const r = await s.request('tools/call', { name: 'echo', arguments: { message: big } });
  assert.equal(r.status, 200, `authenticated 3 MiB MCP body: ${r.status} ${r.body.slice(0, 300)}`);
  assert.ok(r.body.includes('ca:echo ' + big.slice(0, 1000)), 'the upstream saw the whole argument');
  // SCIM: a user padded to 2 MiB (JSON whitespace) with the SCIM token
  const user = JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'big@acme.com', active: true });
  const u = await fetch(`${f.gw.url}/t/acme/scim/v2/Users`, {
    method: 'POST', body: '{' + ' '.repeat(2 * MiB) + user.slice(1),
    headers: { authorization: `Bearer ${f.t.tenant.scim.token}`, 'content-type': 'application/scim+json' },
  });
  const ub = await u.text();
  assert.equal(u.status, 201, `authenticated 2 MiB SCIM body: ${u.status} ${ub.slice(0, 300)}`);
  // admin: a body with the operator token
  const a = await f.t.admin('PUT', '/connectors/cb', { url: 'http://127.0.0.1:9/mcp', description: 'z'.repeat(1000) });
  assert.ok(a.status === 201 || a.status === 400, `authenticated admin body is read and judged: ${a.status} ${a.body}`);
});

// Preauth checks the token when the headers are complete; the body may
// take its time. A user deactivated (or a token revoked) in between has
// nothing in flight yet for the revocation to end, so the check right
// before the upstream transfer must see it (upcall.c repeats the identity
// check unless the store has not changed since preauth's snapshot).
for (const what of ['deactivated', 'token revoked']) {
  test(`5. ${what} while the body is still arriving: the call never reaches the upstream`, async () => {
    const gw = await startGateway();
    const up = await startCtlUpstream({ name: 'slow' });
    const t = await setupTenant(gw, { users: [ALICE] });
    assert.equal((await t.putConnector('slow', { url: up.url, auth: { type: 'none' } })).status, 201);
    const m = await t.mintToken(ALICE);
    const s = await rawSession(t.mcpUrl('slow'), m.token);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { message: 'late' } } });
    const sock = net.connect(gw.port, '127.0.0.1');
    await once(sock, 'connect');
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.write(`POST /t/acme/mcp/slow HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nAuthorization: Bearer ${m.token}\r\n` +
      `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: ${s.sessionId}\r\n` +
      `MCP-Protocol-Version: ${s.protocolVersion}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
    sock.write(body.slice(0, 10));
    await sleep(200); // preauth has passed: the headers are complete
    if (what === 'deactivated') await t.deactivate(t.users[ALICE].id);
    else assert.equal((await t.admin('DELETE', `/tokens/${m.id}`)).status, 204);
    sock.write(body.slice(10));
    await new Promise((r) => { const i = setInterval(() => { if (/\r\n\r\n[\s\S]*\}/.test(got)) { clearInterval(i); r(); } }, 20); });
    sock.destroy();
    assert.equal(up.rpc('tools/call').length, 0, `the upstream saw the call: ${got}`);
    assert.match(got, /^HTTP\/1\.1 (401|403|404)|-32004/, `refused: ${got.slice(0, 400)}`);
    await gw.stop();
  });
}
