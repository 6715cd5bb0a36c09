// Review of the approvals (issue 23) as an employee would attack them: an
// approval is a grant for exactly one (connector, tool, arguments) — never
// for another tool; a reviewer sees a request, not the requester's MCP
// session.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, sleep, ownTokens } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';

let f, s;

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'] });
  await ownTokens(f, ['bob']); // decisions need bob's own token (f.tokens are admin-minted)
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', approve: ['p*'], approvers: ['DB Admins'], grant_minutes: 5 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 30 },
    ],
  });
  s = await rawSession(f.url, f.tokens.alice);
});

after(async () => { await f?.stop?.(); });

const decide = (id, action, token) => request(f.gw.port, {
  method: 'POST', path: `/t/acme/approvals/${id}/${action}`,
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: '{}',
});

async function pendingFor(tool) {
  let found;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    found = r.json.approvals.find((a) => a.tool.startsWith(tool.slice(0, 40)) && a.user === f.users.alice.id);
    return !!found;
  }, { timeoutMs: 8000, what: `a pending request for ${tool.slice(0, 20)}…` });
  return found;
}

test('an approval of one long-named tool is no grant for another tool whose name shares its first 259 bytes', async () => {
  const stem = 'p'.repeat(259);
  const approved = `${stem}-read`, other = `${stem}-delete-everything`;
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const call = (name, id) => openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { x: 1 } } } });
  // a name the grant's key cannot keep whole is refused at once (fail closed), not held
  const first = await call(approved, 9001);
  const pending = (await f.t.admin('GET', '/approvals?state=pending')).json.approvals;
  const req = pending.find((a) => a.user === f.users.alice.id);
  if (req) { // held (the cut name): approve it, as a reviewer would
    const r = await decide(req.id, 'approve', f.own.bob);
    assert.equal(r.status, 200, r.body);
  }
  const firstEnded = await Promise.race([first.ended.then(() => true), sleep(3000).then(() => false)]);
  // another tool, the same arguments: it must not pass under that approval
  const second = await call(other, 9002);
  await Promise.race([second.ended, sleep(800)]);
  second.close();
  assert.equal(forwardedCalls(f.rec, other).length, 0,
    'a tool nobody approved reached the upstream under another tool\'s approval');
  assert.equal(req, undefined, 'a tool name too long to keep whole is refused, not held under a cut name');
  assert.ok(firstEnded, 'the call was answered (refused), not left waiting');
});

test('a reviewer reading or deciding a request by its id does not learn the requester\'s MCP session id', async () => {
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const held = await openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id: 9101, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 40, b: 2 } } } });
  let req;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    req = r.json.approvals.find((a) => a.tool === 'get-sum' && a.user === f.users.alice.id);
    return !!req;
  }, { timeoutMs: 8000, what: 'alice\'s pending get-sum request' });
  const view = await request(f.gw.port, { path: `/t/acme/approvals/${req.id}`, headers: { Authorization: `Bearer ${f.tokens.bob}` } });
  assert.equal(view.status, 200, view.body);
  assert.ok(!view.body.includes(s.sessionId), `the reviewer's view names alice's session: ${view.body}`);
  const d = await decide(req.id, 'deny', f.own.bob);
  assert.equal(d.status, 200, d.body);
  assert.ok(!d.body.includes(s.sessionId), `the decision's answer names alice's session: ${d.body}`);
  // the requester still sees her own request whole
  const own = await request(f.gw.port, { path: `/t/acme/approvals/${req.id}`, headers: { Authorization: `Bearer ${f.tokens.alice}` } });
  assert.equal(own.status, 200, own.body);
  held.close();
});

test('an approval for one number is no grant for another that a double cannot tell apart: such a number is refused, never held', async () => {
  // found by review: the grant's key hashed the arguments through jansson's
  // doubles, so 1.0 and 1.0000000000000001 (or 0.0 and 1e-400) named the
  // same grant while the upstream received the bytes as sent
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const rawCall = (id, args) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"p-num","arguments":${args}}}`;
  const call = (id, args) => openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' }, body: rawCall(id, args) });
  const first = await call(9201, '{"n":1.0,"z":0.0}');
  const req = await pendingFor('p-num');
  const r = await decide(req.id, 'approve', f.own.bob);
  assert.equal(r.status, 200, r.body);
  await first.waitFor((m) => m.id === 9201 && m.result);
  first.close();
  assert.equal(forwardedCalls(f.rec, 'p-num').length, 1);
  // grant_minutes 5: the same arguments pass again without asking …
  const again = await call(9202, '{"z":0.0, "n":1.0}');
  await again.waitFor((m) => m.id === 9202 && m.result);
  again.close();
  assert.equal(forwardedCalls(f.rec, 'p-num').length, 2, 'the standing grant lets the same arguments through');
  // … but numbers past what a double names exactly are refused at once, with why
  for (const [id, args] of [[9203, '{"n":1.0000000000000001,"z":0.0}'], [9204, '{"n":1.0,"z":1e-400}'],
    [9205, '{"n":1.0,"z":0.0,"deep":[{"v":123456789012345678.5}]}'],
    // found by review (rv2): an exponent read saturated near 1e5 let the
    // digits before it outweigh it: 1 and 100000 zeros, e-1000000, is
    // 1e-900000 (0.0 to jansson), and it passed under the grant for 0.0
    [9206, `{"n":1.0,"z":1${'0'.repeat(100000)}e-1000000}`]]) {
    const st = await call(id, args);
    await st.ended; // refused at once: a JSON answer, not a stream
    const m = /json/.test(st.headers['content-type']) ? JSON.parse(st.raw()) : st.messages.find((x) => x.id === id);
    assert.ok(m.error, `${args.slice(0, 80)}: refused, not passed under the grant for 1.0: ${JSON.stringify(m)}`);
    assert.equal(m.error.code, -32005, JSON.stringify(m.error));
    assert.match(m.error.message, /significant digits/, JSON.stringify(m.error));
    assert.match(m.error.message, /p-num/, 'the message names the tool');
  }
  assert.equal(forwardedCalls(f.rec, 'p-num').length, 2, 'no number a double cannot tell apart reached the upstream');
  const pending = (await f.t.admin('GET', '/approvals?state=pending')).json.approvals.filter((a) => a.tool === 'p-num');
  assert.equal(pending.length, 0, 'refused, not held');
});

test('an approval for 0 is no grant for -0: an integer minus zero is refused, never held; 0.0, 0e0 and -0.0 ask anew', async () => {
  // found by review: jansson decodes the integer -0 as 0, so {"m":-0} hashed
  // as {"m":0} does and passed under its grant, while the per-connector
  // endpoint forwards the bytes as sent (-0 to JavaScript, -0.0 to a float
  // reader: not the value the reviewer saw, who was shown 0)
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const rawCall = (id, args) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"p-zero","arguments":${args}}}`;
  const call = (id, args) => openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' }, body: rawCall(id, args) });
  const first = await call(9301, '{"m":0}');
  const req = await pendingFor('p-zero');
  const r = await decide(req.id, 'approve', f.own.bob);
  assert.equal(r.status, 200, r.body);
  await first.waitFor((m) => m.id === 9301 && m.result);
  first.close();
  const again = await call(9302, '{"m":0}');
  await again.waitFor((m) => m.id === 9302 && m.result);
  again.close();
  assert.equal(forwardedCalls(f.rec, 'p-zero').length, 2, 'the standing grant lets the same arguments through');
  for (const [id, args] of [[9303, '{"m":-0}'], [9304, '{"m":0,"deep":[{"v":-0}]}']]) {
    const st = await call(id, args);
    await st.ended; // refused at once: a JSON answer, not a stream
    const m = /json/.test(st.headers['content-type']) ? JSON.parse(st.raw()) : st.messages.find((x) => x.id === id);
    assert.ok(m.error, `${args}: refused, not passed under the grant for 0: ${JSON.stringify(m)}`);
    assert.equal(m.error.code, -32005, JSON.stringify(m.error));
    assert.match(m.error.message, /-0/, JSON.stringify(m.error));
  }
  assert.equal(forwardedCalls(f.rec, 'p-zero').length, 2, 'no -0 reached the upstream under the approval of 0');
  // reals are other values than the integer 0: a new approval each
  for (const [id, args] of [[9305, '{"m":0.0}'], [9306, '{"m":0e0}'], [9307, '{"m":-0.0}']]) {
    const st = await call(id, args);
    const held = await pendingFor('p-zero');
    assert.notEqual(held.id, req.id);
    assert.equal((await f.t.admin('POST', `/approvals/${held.id}/cancel`)).status, 200);
    await st.waitFor((m) => m.id === id && m.error);
    st.close();
  }
  assert.equal(forwardedCalls(f.rec, 'p-zero').length, 2);
});
