// The approval webhook is shared fairly by a tenant's requesters (found by
// review). One employee could make held calls and end their MCP session in
// a loop (each DELETE cancels the session's requests, so the pending cap
// never held): every stored request was a webhook note, the tenant's queue
// filled with notes of cancelled requests, and a colleague's genuine
// request was dropped — the reviewers were never told. Now a note whose
// request is no longer pending when its POST is due is not sent, and when
// the tenant's share is full those go first, then the oldest waiting one
// of the requester holding the most. (A first fix capped each requester at
// two notes alive: the review of it found the third of three genuine
// requests made at once never notified, the second test below.)
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups } from './lib/policy.mjs';

let f, hook, releaseAll;
const posts = [];
const held = [];
let holding = true;

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com', 'mallory@acme.com'], gatewayArgs: ['--workers', '1'] });
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id, f.users.mallory.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 600 }],
  });
  // a receiver that holds its answers until released: the queue stays full while the flood runs
  hook = http.createServer((req, res) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => {
      posts.push(b);
      if (holding) held.push(res);
      else { res.writeHead(200); res.end('ok'); }
    });
  });
  releaseAll = () => { holding = false; for (const r of held.splice(0)) { r.writeHead(200); r.end('ok'); } };
  await new Promise((r) => hook.listen(0, '127.0.0.1', r));
  const r = await f.t.admin('PATCH', '', { settings: { approval_webhook_url: `http://127.0.0.1:${hook.address().port}/hook` } });
  assert.equal(r.status, 200, r.body);
});

after(async () => { releaseAll?.(); hook?.closeAllConnections?.(); hook?.close(); await f?.gw?.stop?.(); await f?.up?.stop?.(); });

/** A held call: resolves once its request is stored (the held stream's head is sent after that). */
function heldCall(token, s, id, args) {
  const hdr = mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  return openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'get-sum', arguments: args } }, timeoutMs: 20000 });
}

function releaseHeld() { for (const r of held.splice(0)) { r.writeHead(200); r.end('ok'); } }

test('one requester making and cancelling requests in a loop does not keep a colleague\'s request from the reviewers', async () => {
  let n = 0;
  for (let round = 0; round < 3; round++) {
    const s = await rawSession(f.url, f.tokens.mallory);
    const calls = [];
    for (let i = 0; i < 10; i++) calls.push(await heldCall(f.tokens.mallory, s, ++n, { a: n, b: i }));
    for (const c of calls) assert.equal(c.status, 200, `mallory's call ${c.status}`);
    const d = await s.del(); // cancels the ten
    assert.equal(d.status, 204, d.body);
    for (const c of calls) c.close();
  }
  const sa = await rawSession(f.url, f.tokens.alice);
  const alice = await heldCall(f.tokens.alice, sa, 1, { a: 4242, b: 1 });
  assert.equal(alice.status, 200);
  const r = await f.t.admin('GET', '/approvals?state=pending');
  const mine = r.json.approvals.find((a) => a.user === f.users.alice.id);
  assert.ok(mine, 'alice\'s request is pending');
  releaseHeld(); // the flood's POSTs in flight end; later ones are held again
  await waitFor(() => posts.some((p) => p.includes(mine.id)), { timeoutMs: 15000, what: `the reviewers told of alice's request ${mine.id}` });
  const mallorys = posts.filter((p) => p.includes('mallory@acme.com')).length;
  assert.ok(mallorys <= 2, `mallory's 30 cancelled requests sent ${mallorys} notifications (at most her 2 in flight when they were cancelled)`);
  releaseHeld();
  alice.close();
  const c = await f.t.admin('POST', `/approvals/${mine.id}/cancel`, {});
  assert.equal(c.status, 200, c.body);
});

test('three genuine requests of one employee at once, the webhook slow to answer: the reviewers are told of each', async () => {
  const sb = await rawSession(f.url, f.tokens.bob);
  const calls = [];
  for (let i = 1; i <= 3; i++) calls.push(await heldCall(f.tokens.bob, sb, i, { a: i, b: 100 }));
  for (const c of calls) assert.equal(c.status, 200);
  const r = await f.t.admin('GET', '/approvals?state=pending');
  const ids = r.json.approvals.filter((a) => a.user === f.users.bob.id).map((a) => a.id);
  assert.equal(ids.length, 3, 'three pending requests');
  // the receiver holds what it gets (two in flight at most): release until every one is told
  await waitFor(() => { releaseHeld(); return ids.every((id) => posts.some((p) => p.includes(id))); },
    { timeoutMs: 15000, intervalMs: 100, what: `the reviewers told of bob's 3 requests (${ids.filter((id) => posts.some((p) => p.includes(id))).length} so far)` });
  for (const c of calls) c.close();
});
