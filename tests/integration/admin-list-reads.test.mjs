// An admin's list of approval requests, and of tokens, is read on libuv's
// pool, not on the event loop every tenant shares. Found by review:
// GET …/approvals?state=approved (or denied, cancelled, expired) reads up
// to 50,000 requests when few are in that state — ~1.6 s on the loop, for
// which every tenant's requests waited, and a tenant admin may repeat it;
// a tenant's employee tokens (one per person and device) were listed on
// the loop the same way. The reviewers' page already read the same scan
// on the pool.
//
// MCPGATE_TEST_ADMIN_READ_PAUSE_FILE holds every admin read on the pool
// while the file exists (and makes "<file>.held" once one waits): the test
// sees the list in flight and /healthz on the same (only) loop answered
// meanwhile. Before the fix the list ran on the loop, never reached the
// hook, and was answered while the file existed.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { openStream, mcpHeaders, rawSession } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups, waitFor } from './lib/policy.mjs';
import { request, makeTempDir } from './lib/gateway.mjs';
import { heavyOpen } from './lib/stalled.mjs';

let f, dir, pause, cancelled;
const held = () => fs.existsSync(pause + '.held');

before(async () => {
  dir = await makeTempDir('mcpgate-admin-list-');
  pause = path.join(dir, 'pause');
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], env: { MCPGATE_TEST_ADMIN_READ_PAUSE_FILE: pause } });
  await groups(f.t.scim).create('Reviewers', [f.users.bob.id]);
  await applyPolicy(f.t, { version: 1, default: 'block',
    rules: [{ groups: ['*'], connector: 'everything', approve: ['get-sum'], approvers: ['Reviewers'] }] });
  // one request, cancelled by the admin: the list of cancelled ones has it
  const s = await rawSession(f.url, f.tokens.alice);
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const call = await openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } } });
  try {
    let req;
    await waitFor(async () => {
      req = (await f.t.admin('GET', '/approvals?state=pending')).json.approvals[0];
      return !!req;
    }, { timeoutMs: 8000, what: 'a pending request' });
    const c = await f.t.admin('POST', `/approvals/${req.id}/cancel`, { reason: 'not now' });
    assert.equal(c.status, 200, c.body);
    cancelled = c.json;
  } finally { call.close(); }
});
after(async () => {
  if (pause) fs.rmSync(pause, { force: true });
  await f?.gw.stop();
  await f?.up.stop?.();
  await f?.rec?.stop?.();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Starts an admin GET with the pause file in place and waits until its read is held on the pool; returns
 * the pending reply and the answer seen so far. Fails when the request is answered first (read on the loop). */
async function heldRead(p) {
  fs.writeFileSync(pause, '');
  const st = { answered: null };
  const reply = f.t.admin('GET', p).then((r) => { st.answered = r; return r; });
  await waitFor(async () => held() || st.answered !== null, { timeoutMs: 8000, what: `${p} in flight (or answered)` });
  assert.equal(st.answered, null, `${p} was answered while its read was to be held (read on the loop): ${st.answered?.status} ${st.answered?.body}`);
  // the loop is free: another request on it is answered meanwhile
  const h = await request(f.gw.port, { path: '/healthz' });
  assert.equal(h.status, 200, h.body);
  assert.equal(st.answered, null, `${p} waits for its read`);
  return { reply, st };
}

function release() {
  fs.rmSync(pause, { force: true });
  fs.rmSync(pause + '.held', { force: true });
}

test('the admin list of ended approval requests is read off the loop, and answers as before', async () => {
  let r;
  try {
    ({ reply: r } = await heldRead('/approvals?state=cancelled'));
  } finally { release(); }
  r = await r;
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.approvals.length, 1, r.body);
  // the list shows a request exactly as its own GET does (no argument digest)
  const one = await f.t.admin('GET', `/approvals/${cancelled.id}`);
  assert.deepEqual(r.json.approvals[0], one.json);
  assert.equal(r.json.approvals[0].state, 'cancelled');
  assert.equal(r.json.approvals[0].reason, 'not now');
  assert.equal(r.json.approvals[0].args_sha256, undefined);
  for (const s of ['approved', 'denied', 'expired']) assert.deepEqual((await f.t.admin('GET', `/approvals?state=${s}`)).json, { approvals: [] });
  const all = await f.t.admin('GET', '/approvals?limit=5');
  assert.deepEqual(all.json.approvals.map((a) => a.id), [cancelled.id]);
  // validation and an unknown tenant answer on the loop, as before
  assert.equal((await f.t.admin('GET', '/approvals?state=bogus')).status, 400);
  assert.equal((await f.t.admin('GET', '/approvals?limit=1001')).status, 400);
  const none = await request(f.gw.port, { path: '/admin/v1/tenants/nobody/approvals', headers: { Authorization: `Bearer ${f.t.opToken}` } });
  assert.equal(none.status, 404, none.body);
});

test('an admin\'s token lists are read off the loop', async () => {
  for (const p of ['/tokens', '/scim-tokens']) {
    let r;
    try {
      ({ reply: r } = await heldRead(p));
    } finally { release(); }
    r = await r;
    assert.equal(r.status, 200, r.body);
    assert.ok(r.json.tokens.length >= 1, r.body);
    assert.ok(r.json.tokens.every((t) => t.id && !('token' in t)), r.body);
  }
  const emp = (await f.t.admin('GET', '/tokens')).json.tokens;
  assert.equal(emp.length, 2, 'alice\'s and bob\'s');
  assert.deepEqual(Object.keys(emp[0]).sort(), ['created', 'expires', 'id', 'last_used', 'name', 'user']);
});

test('a tenant\'s admin lists hold its heavy-read slots: a third at once is 429 with Retry-After until one ends', async () => {
  fs.writeFileSync(pause, '');
  const open = [];
  try {
    open.push(f.t.admin('GET', '/approvals?state=approved'), f.t.admin('GET', '/tokens'));
    await waitFor(async () => (await heavyOpen(f.gw)) === 2, { timeoutMs: 8000, what: 'two lists held on the pool' });
    const r = await f.t.admin('GET', '/approvals?state=denied');
    assert.equal(r.status, 429, r.body);
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.json.error, 'too_many_reads');
    assert.match(r.json.message, /2 admin lists/);
  } finally { release(); }
  for (const r of await Promise.all(open)) assert.equal(r.status, 200, r.body);
  await waitFor(async () => (await heavyOpen(f.gw)) === 0, { timeoutMs: 8000, what: 'the slots back' });
  assert.equal((await f.t.admin('GET', '/approvals?state=denied')).status, 200);
});

// Found by review: GET …/oauth-clients?kind=… parsed every client record
// of the tenant on the loop until it found `limit` of that kind — up to
// 10,000 registrations that anyone may make without a credential
// (dcr_clients_max), and as many cached documents. Before the fix the list
// was answered while the pause file existed (read on the loop).
test('the admin list of OAuth clients is read off the loop, registrations made by anyone included', async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) {
    // unauthenticated: RFC 7591 registration
    const r = await fetch(`${f.t.publicBase}/t/${f.t.id}/oauth/register`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: `filler ${i}`, redirect_uris: ['http://127.0.0.1/callback'] }),
    });
    const text = await r.text();
    assert.equal(r.status, 201, text);
    ids.push(JSON.parse(text).client_id);
  }
  ids.sort();
  for (const [p, want] of [['/oauth-clients?kind=pinned', []], ['/oauth-clients?kind=dcr&limit=2', ids.slice(0, 2)], ['/oauth-clients', ids]]) {
    let r;
    try {
      ({ reply: r } = await heldRead(p));
    } finally { release(); }
    r = await r;
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.json.clients.map((c) => c.client_id), want, p);
    if (p.includes('limit=2')) {
      assert.equal(r.json.next, ids[1]);
      const rest = await f.t.admin('GET', `/oauth-clients?kind=dcr&after=${encodeURIComponent(r.json.next)}`);
      assert.deepEqual(rest.json.clients.map((c) => c.client_id), [ids[2]]);
      assert.equal(rest.json.next, undefined);
      assert.equal(r.json.clients[0].kind, 'dcr');
    }
  }
  // validation and an unknown tenant answer on the loop, as before
  assert.equal((await f.t.admin('GET', '/oauth-clients?kind=bogus')).status, 400);
  assert.equal((await f.t.admin('GET', '/oauth-clients?limit=0')).status, 400);
  const none = await request(f.gw.port, { path: '/admin/v1/tenants/nobody/oauth-clients?kind=dcr', headers: { Authorization: `Bearer ${f.t.opToken}` } });
  assert.equal(none.status, 404, none.body);
});
