// Approvals (issue 23): a tools/call the policy decides "approve" is held by
// the gateway — the SDK client waits on an SSE stream the gateway opened,
// with notifications/progress — until a reviewer decides as themselves
// (their own employee token) or the request expires. Real binary, real SDK
// client, server-everything behind a recorder (what reached the upstream).
// ci-variants: build-w1 build-asan-w2 (one loop, and two under ASan: the decision crosses loops there)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient, rawSession } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, sleep, toolText, ownTokens } from './lib/policy.mjs';
import { api } from './lib/admin.mjs';
import { request } from './lib/gateway.mjs';

let f, g, admins, c;
const SUM = 'get-sum';

before(async () => {
  f = await startPolicyFixture({
    users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com', 'dave@acme.com'],
    // the session purge ticks often: a session that expires or is evicted
    // ends its held calls at the next tick (the last tests)
    gatewayArgs: ['--approval-progress-interval-ms', '200', '--session-purge-interval-ms', '100'],
    // every write job runs twice, the first run aborted, as the writer runs
    // the jobs before a failing one of their batch (store/store.h): a
    // decision's job leaked its first run's answer (LeakSanitizer)
    env: { MCPGATE_TEST_JOB_RERUN: '1' },
  });
  g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id, f.users.carol.id, f.users.dave.id]);
  admins = await g.create('DB Admins', [f.users.bob.id, f.users.dave.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: [SUM], approvers: ['DB Admins'], approval_timeout_s: 60 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-env'], approvers: ['DB Admins'], approval_timeout_s: 2 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-tiny-image'], approvers: ['DB Admins'], grant_minutes: 5 },
    ],
  });
  // decisions are made with the reviewers' own credentials (a token they
  // created on their page); f.tokens are admin-minted
  await ownTokens(f, ['alice', 'bob', 'carol', 'dave']);
  c = await connectClient(f.url, f.tokens.alice);
});

/** Alice's call, held: resolves {result|error, progress: [...]} when it ends. */
function heldCall(client, name, args, { signal } = {}) {
  const progress = [];
  const p = client.client.callTool({ name, arguments: args }, undefined, {
    timeout: 20000, resetTimeoutOnProgress: true, onprogress: (pr) => progress.push(pr), signal,
  }).then((result) => ({ result, progress }), (error) => ({ error, progress }));
  return p;
}

/** The pending request of `user` for tool with args (admin list), once it exists. */
async function pendingFor(userId, tool, args) {
  let found;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    assert.equal(r.status, 200, r.body);
    found = r.json.approvals.find((a) => a.user === userId && a.tool === tool && JSON.stringify(a.arguments) === JSON.stringify(args));
    return !!found;
  }, { timeoutMs: 8000, what: `a pending approval request for ${tool} ${JSON.stringify(args)}` });
  return found;
}

const decide = (id, action, token, body) => request(f.gw.port, {
  method: 'POST', path: `/t/acme/approvals/${id}/${action}`,
  headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  body: body === undefined ? undefined : JSON.stringify(body),
});

test('a held call approved by a reviewer with their own token: the result reaches the waiting client, the upstream saw one call, progress kept it waiting', async () => {
  const args = { a: 2, b: 3 };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(f.users.alice.id, SUM, args);
  assert.match(req.id, /^[0-9a-f]{32}$/);
  assert.equal(req.connector, 'everything');
  assert.deepEqual(req.approvers, [admins.id]);
  assert.equal(req.state, 'pending');
  assert.ok(req.seconds_left > 0 && req.seconds_left <= 60, JSON.stringify(req));
  await sleep(500); // a few progress intervals
  assert.equal(forwardedCalls(f.rec, SUM).length, 0, 'nothing reaches the upstream before the approval');
  const r = await decide(req.id, 'approve', f.own.bob, { reason: 'looks fine' });
  assert.equal(r.status, 200, r.body);
  const v = JSON.parse(r.body);
  assert.equal(v.state, 'approved');
  assert.equal(v.decided_by, 'bob@acme.com');
  assert.equal(v.session, undefined, 'a reviewer is not shown the requester\'s MCP session id');
  assert.ok(req.session, 'the admin view has it');
  const out = await call;
  assert.ok(out.result, `the call succeeded: ${out.error}`);
  assert.match(toolText(out.result), /5/);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => e.json?.params?.arguments?.a === 2).length, 1, 'exactly one call upstream');
  assert.ok(out.progress.length >= 1, `progress notifications arrived while held: ${out.progress.length}`);
  assert.match(out.progress[0].message ?? '', /waiting for approval by DB Admins/);
  // decided: a second decision is refused
  const again = await decide(req.id, 'deny', f.own.dave);
  assert.equal(again.status, 409, again.body);
  // every step is in the tenant's audit chain: requested, approved (by whom, why), the grant used
  let steps;
  await waitFor(async () => {
    const a = await f.t.admin('GET', '/audit?kind=approval&limit=50');
    assert.equal(a.status, 200, a.body);
    steps = a.json.records.filter((x) => x.request === req.id);
    return steps.length >= 3;
  }, { timeoutMs: 5000, what: 'the approval steps in the audit log' });
  const ev = Object.fromEntries(steps.map((x) => [x.event, x]));
  assert.equal(ev.requested?.user, f.users.alice.id);
  assert.equal(ev.requested?.tool, SUM);
  assert.match(ev.requested?.approvers ?? '', /DB Admins/);
  assert.equal(ev.approved?.by, 'bob@acme.com');
  assert.equal(ev.approved?.reason, 'looks fine');
  assert.equal(ev.grant_used?.user, f.users.alice.id);
});

test('self-approval, a non-approver, an admin credential and no credential cannot decide; a denial reaches the client with who and why', async () => {
  const args = { a: 7, b: 8 };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(f.users.alice.id, SUM, args);
  const aliceInAdmins = await g.add(admins.id, f.users.alice.id); // even as an approver, not her own
  assert.ok(aliceInAdmins);
  let r = await decide(req.id, 'approve', f.own.alice);
  assert.equal(r.status, 403, r.body);
  assert.match(r.body, /self_approval/);
  await g.remove(admins.id, f.users.alice.id);
  r = await decide(req.id, 'approve', f.own.carol);
  assert.equal(r.status, 403, r.body);
  assert.match(r.body, /not_an_approver/);
  r = await decide(req.id, 'approve', f.t.opToken);
  assert.equal(r.status, 401, r.body);
  // a token an admin minted for bob reads the request but cannot decide it
  // (a tenant admin would otherwise approve their own call "as bob")
  r = await decide(req.id, 'approve', f.tokens.bob);
  assert.equal(r.status, 403, r.body);
  assert.match(r.body, /own_credential_required/);
  const seen = await request(f.gw.port, { method: 'GET', path: `/t/acme/approvals/${req.id}`, headers: { Authorization: `Bearer ${f.tokens.bob}` } });
  assert.equal(seen.status, 200, seen.body);
  r = await decide(req.id, 'approve', null);
  assert.equal(r.status, 401, r.body);
  r = await decide('0'.repeat(32), 'approve', f.own.bob);
  assert.equal(r.status, 404, r.body);
  // an id with more after it is another id (found by review: it was cut to
  // 32 characters and decided the request it began with)
  r = await decide(`${req.id}0`, 'approve', f.own.bob);
  assert.equal(r.status, 404, r.body);
  r = await decide(req.id, 'deny', f.own.bob, { reason: 'not on prod', extra: 1 });
  assert.equal(r.status, 400, r.body);
  r = await decide(req.id, 'deny', f.own.bob, { reason: 'not on prod' });
  assert.equal(r.status, 200, r.body);
  const out = await call;
  assert.ok(out.error, 'the call failed');
  assert.equal(out.error.code, -32008);
  assert.match(String(out.error.message), /denied by bob@acme\.com: not on prod/);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => e.json?.params?.arguments?.a === 7).length, 0);
});

test('nobody decides: the call times out with its own code, the request reads as expired', async () => {
  const call = heldCall(c, 'get-env', {});
  const req = await pendingFor(f.users.alice.id, 'get-env', {});
  const out = await call;
  assert.equal(out.error?.code, -32009, String(out.error));
  assert.match(String(out.error.message), /timed out/);
  const r = await f.t.admin('GET', `/approvals/${req.id}`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.state, 'expired');
  const d = await decide(req.id, 'approve', f.own.bob);
  assert.equal(d.status, 409, d.body);
  assert.equal(forwardedCalls(f.rec, 'get-env').length, 0);
});

test('an admin cancels (never approves): the client is told, a second cancel conflicts', async () => {
  const args = { a: 11, b: 1 };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(f.users.alice.id, SUM, args);
  let r = await f.t.admin('POST', `/approvals/${req.id}/cancel`, { reason: 'change freeze' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.state, 'cancelled');
  const out = await call;
  assert.equal(out.error?.code, -32010, String(out.error));
  assert.match(String(out.error.message), /change freeze/);
  r = await f.t.admin('POST', `/approvals/${req.id}/cancel`);
  assert.equal(r.status, 409, r.body);
  r = await f.t.admin('POST', `/approvals/${req.id}/approve`);
  assert.equal(r.status, 404, r.body);
});

test('the client gives up, then the approval comes: the retry with the same arguments passes once; other arguments need a new approval', async () => {
  const args = { a: 20, b: 22 };
  const ac = new AbortController();
  const call = heldCall(c, SUM, args, { signal: ac.signal });
  const req = await pendingFor(f.users.alice.id, SUM, args);
  ac.abort();
  await call;
  // the SDK's notifications/cancelled ends the held stream (the request stays pending)
  await f.gw.waitForLog((l) => /cancelled its call held for approval request/.test(l.msg ?? '') && (l.msg ?? '').includes(req.id));
  assert.equal((await f.t.admin('GET', `/approvals/${req.id}`)).json.state, 'pending');
  const r = await decide(req.id, 'approve', f.own.dave);
  assert.equal(r.status, 200, r.body);
  const ok = await c.client.callTool({ name: SUM, arguments: args }, undefined, { timeout: 10000 });
  assert.match(toolText(ok), /42/);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => e.json?.params?.arguments?.a === 20).length, 1);
  // once: the same call again is held anew; different arguments too
  const again = heldCall(c, SUM, args);
  const req2 = await pendingFor(f.users.alice.id, SUM, args);
  assert.notEqual(req2.id, req.id);
  assert.equal((await f.t.admin('POST', `/approvals/${req2.id}/cancel`)).status, 200);
  assert.equal((await again).error?.code, -32010);
});

test('grant_minutes: after one approval the same call with the same arguments passes for a while, without asking', async () => {
  const call = heldCall(c, 'get-tiny-image', {});
  const req = await pendingFor(f.users.alice.id, 'get-tiny-image', {});
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 200);
  assert.ok((await call).result);
  for (let i = 0; i < 2; i++) {
    const r = await c.client.callTool({ name: 'get-tiny-image', arguments: {} }, undefined, { timeout: 10000 });
    assert.ok(r.content?.length, 'passes under the grant');
  }
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, 3);
  const pend = await f.t.admin('GET', '/approvals?state=pending');
  assert.equal(pend.json.approvals.filter((a) => a.tool === 'get-tiny-image').length, 0, 'no new request was made');
});

test('the aggregated endpoint holds the call too, and the approval lets it through', async () => {
  const agg = await connectClient(`${f.gw.url}/t/acme/mcp`, f.tokens.carol);
  const args = { a: 30, b: 3 };
  const call = heldCall(agg, `everything__${SUM}`, args);
  const req = await pendingFor(f.users.carol.id, SUM, args);
  assert.equal(req.connector, 'everything');
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 200);
  const out = await call;
  assert.ok(out.result, String(out.error));
  assert.match(toolText(out.result), /33/);
  await agg.client.close();
});

test('an approve tool inside a JSON-RPC batch is refused, not held', async () => {
  const s = await rawSession(f.url, f.tokens.alice, { protocolVersion: '2025-03-26' });
  const r = await s.post([
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: SUM, arguments: { a: 1, b: 1 } } },
    { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } },
  ]);
  assert.equal(r.status, 200, r.body);
  assert.match(r.body, /-32005/);
  assert.match(r.body, /batch/);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => e.json?.[0]?.params?.arguments?.a === 1 || e.json?.params?.arguments?.a === 1).length, 0);
});

test('the requester deactivated while waiting: the stream ends and the request is cancelled; a deactivated reviewer cannot decide', async () => {
  const d = await connectClient(f.url, f.tokens.dave);
  const args = { a: 40, b: 2 };
  const call = heldCall(d, SUM, args);
  const req = await pendingFor(f.users.dave.id, SUM, args);
  await f.t.deactivate(f.users.dave.id);
  const out = await call;
  assert.ok(out.error, 'the held call ended with an error');
  const r = await f.t.admin('GET', `/approvals/${req.id}`);
  assert.equal(r.json.state, 'cancelled', r.body);
  // dave was also a reviewer: his token no longer decides anything
  const args2 = { a: 41, b: 1 };
  const call2 = heldCall(c, SUM, args2);
  const req2 = await pendingFor(f.users.alice.id, SUM, args2);
  const x = await decide(req2.id, 'approve', f.own.dave);
  assert.equal(x.status, 401, x.body);
  assert.equal((await decide(req2.id, 'deny', f.own.bob)).status, 200);
  assert.equal((await call2).error?.code, -32008);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => [40, 41].includes(e.json?.params?.arguments?.a)).length, 0);
});

test('admin list filters by state and validates its query; another tenant\'s admin sees nothing', async () => {
  let r = await f.t.admin('GET', '/approvals?state=bogus');
  assert.equal(r.status, 400, r.body);
  r = await f.t.admin('GET', '/approvals?limit=0');
  assert.equal(r.status, 400, r.body);
  r = await f.t.admin('GET', '/approvals?state=approved&limit=2');
  assert.equal(r.status, 200, r.body);
  assert.ok(r.json.approvals.length <= 2 && r.json.approvals.every((a) => a.state === 'approved'), r.body);
  const other = await api(f.gw.port, f.t.opToken, 'POST', '/admin/v1/tenants', { id: 'globex', name: 'Globex' });
  assert.equal(other.status, 201, other.body);
  r = await api(f.gw.port, f.t.opToken, 'GET', '/admin/v1/tenants/globex/approvals');
  assert.deepEqual(r.json.approvals, []);
});

test('a connector deleted and put again: its grants are gone and its pending requests cancelled (an approval was for the old upstream)', async () => {
  const c2 = await connectClient(f.url, f.tokens.alice);
  // alice's 5-minute grant (above) still lets get-tiny-image through
  const ok = await c2.client.callTool({ name: 'get-tiny-image', arguments: {} }, undefined, { timeout: 10000 });
  assert.ok(ok.content?.length, 'passes under the grant');
  const args = { a: 50, b: 1 };
  const call = heldCall(c2, SUM, args);
  const req = await pendingFor(f.users.alice.id, SUM, args);
  let r = await f.t.admin('DELETE', '/connectors/everything');
  assert.equal(r.status, 204, r.body);
  const out = await call;
  assert.ok(out.error, 'the held call ended');
  r = await f.t.admin('GET', `/approvals/${req.id}`);
  assert.equal(r.json.state, 'cancelled', r.body);
  assert.match(r.json.reason, /connector/);
  r = await f.t.putConnector('everything', { url: f.rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value: 'Bearer upstream-secret' } });
  assert.equal(r.status, 201, r.body);
  // the grant went with the connector: the same call is held anew
  const c3 = await connectClient(f.url, f.tokens.alice);
  const again = heldCall(c3, 'get-tiny-image', {});
  const req2 = await pendingFor(f.users.alice.id, 'get-tiny-image', {});
  assert.equal((await f.t.admin('POST', `/approvals/${req2.id}/cancel`)).status, 200);
  assert.equal((await again).error?.code, -32010);
});

test('a group taken off the approve rule while a request is pending no longer approves it', async () => {
  // found by review: a request kept the approver groups it was made with,
  // so a group the admin had just removed could still approve it
  const args = { a: 31, b: 1 };
  const c4 = await connectClient(f.url, f.tokens.alice); // the connector was put again above
  const call = heldCall(c4, SUM, args);
  const req = await pendingFor(f.users.alice.id, SUM, args);
  await g.create('Release Managers', [f.users.carol.id]);
  const rules = (approvers) => [
    { groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: [SUM], approvers, approval_timeout_s: 60 },
    { groups: ['Engineers'], connector: 'everything', approve: ['get-env'], approvers: ['DB Admins'], approval_timeout_s: 2 },
    { groups: ['Engineers'], connector: 'everything', approve: ['get-tiny-image'], approvers: ['DB Admins'], grant_minutes: 5 },
  ];
  // bob's list (the reviewers' page) while DB Admins approve: the request is there
  const list = async () => f.browsers.bob.get(`${f.gw.url}/t/acme/api/approvals`, { follow: false });
  let l = await list();
  assert.equal(l.status, 200, l.text);
  assert.ok(JSON.parse(l.text).pending.some((p) => p.id === req.id));
  await applyPolicy(f.t, { version: 1, default: 'block', rules: rules(['Release Managers']) });
  // DB Admins still approve other tools, but this request is no longer
  // bob's to decide: his list no longer shows it (it did, with buttons
  // that could only answer not_an_approver)
  l = await list();
  assert.equal(l.status, 200, l.text);
  assert.ok(!JSON.parse(l.text).pending.some((p) => p.id === req.id), `bob's list after his group left the rule: ${l.text}`);
  let r = await decide(req.id, 'approve', f.own.bob);
  assert.equal(r.status, 403, `DB Admins, no longer the rule's approvers: ${r.body}`);
  assert.match(r.body, /not_an_approver/);
  // nor does the new group take over a request made before it (it named DB Admins)
  r = await decide(req.id, 'approve', f.own.carol);
  assert.equal(r.status, 403, r.body);
  await applyPolicy(f.t, { version: 1, default: 'block', rules: rules(['DB Admins']) });
  r = await decide(req.id, 'deny', f.own.bob, { reason: 'back to DB Admins' });
  assert.equal(r.status, 200, r.body);
  const out = await call;
  assert.equal(out.error?.code, -32008);
});

test('a policy change ends standing grants: under grant_minutes the next call asks again', async () => {
  // found by review: a grant_minutes window outlived a change of the rule
  // that gave it (its approvers, its minutes, or the approval itself)
  const c5 = await connectClient(f.url, f.tokens.alice);
  const first = heldCall(c5, 'get-tiny-image', { size: 'x' });
  const req = await pendingFor(f.users.alice.id, 'get-tiny-image', { size: 'x' });
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 200);
  assert.ok((await first).result);
  const r = await c5.client.callTool({ name: 'get-tiny-image', arguments: { size: 'x' } }, undefined, { timeout: 10000 });
  assert.ok(r.content?.length, 'passes under the grant');
  await applyPolicy(f.t, {
    version: 1, default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: [SUM], approvers: ['DB Admins'], approval_timeout_s: 60 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-env'], approvers: ['DB Admins'], approval_timeout_s: 2 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-tiny-image'], approvers: ['DB Admins'], grant_minutes: 1 },
    ],
  });
  const again = heldCall(c5, 'get-tiny-image', { size: 'x' });
  const req2 = await pendingFor(f.users.alice.id, 'get-tiny-image', { size: 'x' });
  assert.notEqual(req2.id, req.id, 'a new request: the grant ended with the policy it was given under');
  assert.equal((await f.t.admin('POST', `/approvals/${req2.id}/cancel`)).status, 200);
  await again;
});

test('a connector given another credential ends its grants and pending requests; the same document again keeps them', async () => {
  // found by review: only a changed URL ended grants, so swapping the
  // connector's credential (another account, other rights upstream) kept
  // what reviewers had approved under the old one
  const put = (value) => f.t.putConnector('everything', { url: f.rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value } });
  const c6 = await connectClient(f.url, f.tokens.alice);
  const first = heldCall(c6, 'get-tiny-image', { size: 'y' });
  const req = await pendingFor(f.users.alice.id, 'get-tiny-image', { size: 'y' });
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 200);
  assert.ok((await first).result);
  // the same document again (a re-apply by a provisioning tool): nothing changed upstream
  let r = await put('Bearer upstream-secret');
  assert.equal(r.status, 200, r.body);
  const c7 = await connectClient(f.url, f.tokens.alice);
  const ok = await c7.client.callTool({ name: 'get-tiny-image', arguments: { size: 'y' } }, undefined, { timeout: 10000 });
  assert.ok(ok.content?.length, 'passes under the grant after an unchanged PUT');
  const args = { a: 60, b: 2 };
  const held = heldCall(c7, SUM, args);
  const pend = await pendingFor(f.users.alice.id, SUM, args);
  r = await put('Bearer another-account');
  assert.equal(r.status, 200, r.body);
  r = await f.t.admin('GET', `/approvals/${pend.id}`);
  assert.equal(r.json.state, 'cancelled', `pending under the old credential: ${r.body}`);
  assert.ok((await held).error, 'the held call ended');
  r = await f.t.admin('GET', `/approvals/${pend.id}`);
  assert.equal(r.json.state, 'cancelled', r.body);
  assert.match(r.json.reason, /connector/);
  const c8 = await connectClient(f.url, f.tokens.alice);
  const again = heldCall(c8, 'get-tiny-image', { size: 'y' });
  const req2 = await pendingFor(f.users.alice.id, 'get-tiny-image', { size: 'y' });
  assert.notEqual(req2.id, req.id, 'a new request: the grant ended with the credential it was approved under');
  assert.equal((await f.t.admin('POST', `/approvals/${req2.id}/cancel`)).status, 200);
  await again;
  assert.equal((await put('Bearer upstream-secret')).status, 200);
});

test('the client ends its MCP session while a call is held (either endpoint): the held call ends before the 204, its request is cancelled, an approval then decides nothing', async () => {
  // found by review: the DELETE answered 204 while the held call's stream
  // stayed open until the session purge or the decision, and an approval
  // then got a misleading upstream error
  const direct = await connectClient(f.url, f.tokens.alice);
  const agg = await connectClient(`${f.gw.url}/t/acme/mcp`, f.tokens.carol);
  const cases = [
    { client: direct, name: SUM, user: f.users.alice.id, args: { a: 70, b: 1 } },
    { client: agg, name: `everything__${SUM}`, user: f.users.carol.id, args: { a: 71, b: 1 } },
  ];
  for (const k of cases) {
    const call = heldCall(k.client, k.name, k.args);
    const req = await pendingFor(k.user, SUM, k.args);
    // DELETE with the session id: 204 (a 403 here, seen twice in CI and
    // never again by hand, says why in the gateway's "refused:" line)
    await k.client.terminate().catch((e) => {
      const why = f.gw.logs().filter((l) => /refused|revoked/.test(l.msg ?? '')).slice(-5);
      throw new Error(`${e.message}; the gateway said: ${JSON.stringify(why)}`);
    });
    let r = await f.t.admin('GET', `/approvals/${req.id}`);
    assert.equal(r.json.state, 'cancelled', `cancelled with the session: ${r.body}`);
    assert.match(r.json.reason, /session was ended/);
    const out = await call;
    assert.equal(out.error?.code, -32010, String(out.error));
    assert.match(String(out.error.message), /session was ended/);
    r = await decide(req.id, 'approve', f.own.bob);
    assert.equal(r.status, 409, r.body);
  }
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => [70, 71].includes(e.json?.params?.arguments?.a)).length, 0);
});

test('a policy change that blocks a held tool ends the held call at once with -32003 and cancels its request; a call still asked for approval stays held', async () => {
  // found by review: the call stayed held, a reviewer's approval got 200,
  // and the call then got -32005
  const direct = await connectClient(f.url, f.tokens.alice);
  const agg = await connectClient(`${f.gw.url}/t/acme/mcp`, f.tokens.carol);
  const blocked = [
    { call: heldCall(direct, SUM, { a: 80, b: 1 }), user: f.users.alice.id, args: { a: 80, b: 1 } },
    { call: heldCall(agg, `everything__${SUM}`, { a: 81, b: 1 }), user: f.users.carol.id, args: { a: 81, b: 1 } },
  ];
  const kept = heldCall(direct, 'get-tiny-image', { size: 'k' });
  for (const b of blocked) b.req = await pendingFor(b.user, SUM, b.args);
  const keptReq = await pendingFor(f.users.alice.id, 'get-tiny-image', { size: 'k' });
  await applyPolicy(f.t, {
    version: 1, default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', allow: ['echo'], block: [SUM] },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-tiny-image'], approvers: ['DB Admins'] },
    ],
  });
  // the PUT's reply comes after its transaction closed the requests
  for (const b of blocked) {
    const r = await f.t.admin('GET', `/approvals/${b.req.id}`);
    assert.equal(r.json.state, 'cancelled', r.body);
    assert.match(r.json.reason, /policy/);
  }
  assert.equal((await f.t.admin('GET', `/approvals/${keptReq.id}`)).json.state, 'pending');
  for (const b of blocked) {
    const out = await b.call;
    assert.equal(out.error?.code, -32003, String(out.error));
    assert.match(String(out.error.message), /blocked by your organisation's policy/);
    const r = await decide(b.req.id, 'approve', f.own.bob);
    assert.equal(r.status, 409, r.body);
  }
  // the tool still asked for approval: held until decided, under the new policy
  assert.equal((await decide(keptReq.id, 'approve', f.own.bob)).status, 200);
  assert.ok((await kept).result, 'the call still held passes once approved');
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => [80, 81].includes(e.json?.params?.arguments?.a)).length, 0);
});

/** Starts a held call and a second call of the same session whose client then gives up (its request stays pending). */
// (the policy in force by now: get-tiny-image asks approval of DB Admins)
const TINY = 'get-tiny-image';
async function heldAndLeft(k, a) {
  const call = heldCall(k.client, k.name, { size: `${a}-1` });
  const ac = new AbortController();
  const left = heldCall(k.client, k.name, { size: `${a}-2` }, { signal: ac.signal });
  const first = await Promise.race([call.then((out) => ({ out })), pendingFor(k.user, TINY, { size: `${a}-1` }).then((req) => ({ req }))]);
  assert.ok(first.req, `held: ${JSON.stringify(first.out?.result ?? String(first.out?.error))}`);
  const reqs = [first.req, await pendingFor(k.user, TINY, { size: `${a}-2` })];
  ac.abort();
  assert.ok((await left).error, 'the client gave up on the second call');
  return { call, reqs };
}

async function endedWith(h, why) {
  const out = await h.call;
  assert.equal(out.error?.code, -32010, String(out.error));
  assert.match(String(out.error.message), why);
  for (const req of h.reqs) {
    let r;
    await waitFor(async () => (r = await f.t.admin('GET', `/approvals/${req.id}`)).json.state !== 'pending',
      { timeoutMs: 8000, what: `request ${req.id} cancelled with its session` });
    assert.equal(r.json.state, 'cancelled', r.body);
    assert.match(r.json.reason, why);
    r = await decide(req.id, 'approve', f.own.bob);
    assert.equal(r.status, 409, r.body);
  }
}

test('a session evicted (sessions_per_user_max) or expired (idle) while a call is held: the held call ends with -32010 naming why, every request made in the session is cancelled, an approval then decides nothing', async () => {
  // found by review: the held call got a generic -32004 "access revoked"
  // and its requests stayed pending, approvable, after the session was gone
  const settings = (s) => f.t.admin('PATCH', '', { settings: s });
  try {
    // evicted: carol (aggregated endpoint) opens one session too many
    assert.equal((await settings({ sessions_per_user_max: 1 })).status, 200);
    const agg = await connectClient(`${f.gw.url}/t/acme/mcp`, f.tokens.carol);
    const ev = await heldAndLeft({ client: agg, name: `everything__${TINY}`, user: f.users.carol.id }, 92);
    const next = await connectClient(`${f.gw.url}/t/acme/mcp`, f.tokens.carol); // evicts agg's session
    await endedWith(ev, /evicted/);
    await next.client.close();
    // expired: alice's session (single-connector endpoint) left unused past the tenant's idle timeout
    const direct = await connectClient(f.url, f.tokens.alice);
    const ex = await heldAndLeft({ client: direct, name: TINY, user: f.users.alice.id }, 93);
    assert.equal((await settings({ session_idle_timeout_ms: 1000 })).status, 200);
    await endedWith(ex, /expired/);
  } finally {
    assert.equal((await settings({ sessions_per_user_max: null, session_idle_timeout_ms: null })).status, 200);
  }
  assert.equal(forwardedCalls(f.rec, TINY).filter((e) => /^9[23]-/.test(e.json?.params?.arguments?.size ?? '')).length, 0);
});
