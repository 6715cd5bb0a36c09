// Approvals (issue 23) and group membership: a standing approval grant
// (grant_minutes N, or an approval not yet used) stands only while the
// approve rule that issued it — its approver groups and its minutes — is
// still the user's decision for that tool. Found by review: a policy PUT
// ended grants, a membership change did not, so a user Okta moved to a
// group whose rule names other approvers (or grant_minutes 0) kept
// passing on the old group's approval. The user is moved the way Okta's
// Group Push sends it: a PATCH adding them to one group ({value, display}),
// a PATCH removing them from the other (members[value eq "…"]).
// ci-variants: build-w1 build-asan-w2 (two loops under ASan: the approval and the take cross loops there)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, ownTokens, callRefused } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';

const TOOL = 'get-tiny-image';
let f, g, team, where, clients = [];

before(async () => {
  f = await startPolicyFixture({
    users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'],
    gatewayArgs: ['--approval-progress-interval-ms', '200'],
  });
  g = groups(f.t.scim);
  const admins = await g.create('DB Admins', [f.users.bob.id]);
  const security = await g.create('Security', [f.users.carol.id]);
  team = { admins, security };
  for (const name of ['Team A', 'Team B', 'Team C', 'Team D', 'Team E']) team[name] = await g.create(name, []);
  await g.create('Staff', [f.users.bob.id, f.users.carol.id]);
  const approve = (group, approvers, grant_minutes) => ({
    groups: [group], connector: 'everything', allow: ['echo'], approve: [TOOL], approvers, grant_minutes, approval_timeout_s: 60,
  });
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [
      approve('Team A', ['DB Admins'], 30),
      approve('Team B', ['Security'], 0), // other approvers, one call per approval
      { groups: ['Team C'], connector: 'everything', allow: ['echo'], block: [TOOL] },
      approve('Team D', ['DB Admins'], 30), // another rule asking exactly what Team A's asks
      approve('Team E', ['DB Admins'], 0), // the same approvers, one call per approval
      { groups: ['Staff'], connector: 'everything', allow: ['echo'] },
    ],
  });
  await ownTokens(f, ['bob', 'carol']);
});

after(async () => {
  for (const c of clients) await c.client.close().catch(() => {});
  await f?.stop?.();
});

/** Okta moves alice: added to `to` (Group Push add, with display), then removed from `where`. */
async function moveAlice(to) {
  const uid = f.users.alice.id;
  let r = await f.t.scim.patchOps(`/Groups/${team[to].id}`, [{ op: 'add', path: 'members', value: [{ value: uid, display: 'alice@acme.com' }] }]);
  assert.ok(r.status === 200 || r.status === 204, `add to ${to}: ${r.status} ${r.body}`);
  if (where) {
    r = await f.t.scim.patchOps(`/Groups/${team[where].id}`, [{ op: 'remove', path: `members[value eq "${uid}"]` }]);
    assert.ok(r.status === 200 || r.status === 204, `remove from ${where}: ${r.status} ${r.body}`);
  }
  where = to;
}

async function client() {
  const c = await connectClient(f.url, f.tokens.alice);
  clients.push(c);
  return c;
}

function heldCall(c, args) {
  return c.client.callTool({ name: TOOL, arguments: args }, undefined, { timeout: 20000, resetTimeoutOnProgress: true })
    .then((result) => ({ result }), (error) => ({ error }));
}

async function pendingFor(args) {
  let found;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    assert.equal(r.status, 200, r.body);
    found = r.json.approvals.find((a) => a.user === f.users.alice.id && a.tool === TOOL && JSON.stringify(a.arguments) === JSON.stringify(args));
    return !!found;
  }, { timeoutMs: 8000, what: `alice's pending request for ${JSON.stringify(args)}` });
  return found;
}

/** The call is held for a new approval (its request returned), never passed on an old grant. */
async function heldAnew(c, args) {
  const call = heldCall(c, args);
  const first = await Promise.race([call.then((out) => ({ out })), pendingFor(args).then((req) => ({ req }))]);
  assert.ok(first.req, `held for a new approval, not passed on the old grant: ${first.out?.result ? 'it went upstream' : String(first.out?.error)}`);
  return { call, req: first.req };
}

const decide = (id, action, token) => request(f.gw.port, {
  method: 'POST', path: `/t/acme/approvals/${id}/${action}`,
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: '{}',
});

const sent = (args) => forwardedCalls(f.rec, TOOL).filter((e) => JSON.stringify(e.json?.params?.arguments) === JSON.stringify(args)).length;

/** Alice in Team A, approved by DB Admins for 30 minutes: a repeat passes without asking. */
async function grantInTeamA(args) {
  if (where !== 'Team A') await moveAlice('Team A');
  const c = await client();
  const { call, req } = await heldAnew(c, args);
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 200);
  assert.ok((await call).result, 'the approved call passed');
  const again = await c.client.callTool({ name: TOOL, arguments: args }, undefined, { timeout: 10000 });
  assert.ok(again.content?.length, 'the repeat passes under the 30-minute grant');
  assert.equal(sent(args), 2);
}

test('moved to a group whose rule names other approvers with grant_minutes 0: the call is held for them, not passed on the old grant', async () => {
  const args = { size: 'm1' };
  await grantInTeamA(args);
  await moveAlice('Team B');
  const c = await client();
  const { call, req } = await heldAnew(c, args);
  assert.deepEqual(req.approvers, [team.security.id], 'the new rule\'s approvers decide');
  assert.equal(sent(args), 2, 'nothing passed on the old grant');
  const r = await decide(req.id, 'approve', f.own.bob);
  assert.equal(r.status, 403, `DB Admins approve nothing under Team B's rule: ${r.body}`);
  assert.equal((await decide(req.id, 'approve', f.own.carol)).status, 200);
  assert.ok((await call).result, 'Security\'s approval lets it through');
  assert.equal(sent(args), 3);
  // grant_minutes 0: that approval was for one call
  const next = await heldAnew(c, args);
  assert.equal((await f.t.admin('POST', `/approvals/${next.req.id}/cancel`)).status, 200);
  assert.equal((await next.call).error?.code, -32010);
  assert.equal(sent(args), 3);
});

test('moved to a group whose rule blocks the tool: the call is refused, whatever grant the user holds', async () => {
  const args = { size: 'm2' };
  await grantInTeamA(args);
  await moveAlice('Team C');
  const c = await client();
  const e = await callRefused(c, TOOL, args);
  assert.equal(e.code, -32003, e.message);
  assert.equal(sent(args), 2);
});

test('moved to a group whose rule has the same approvers but grant_minutes 0: held anew; the same approvers and minutes: the grant stands', async () => {
  const args = { size: 'm3' };
  await grantInTeamA(args);
  await moveAlice('Team E');
  let c = await client();
  const { call, req } = await heldAnew(c, args);
  assert.deepEqual(req.approvers, [team.admins.id]);
  assert.equal(sent(args), 2, 'a one-call rule does not honour a 30-minute window');
  assert.equal((await f.t.admin('POST', `/approvals/${req.id}/cancel`)).status, 200);
  assert.equal((await call).error?.code, -32010);
  // another rule asking exactly what Team A's asked (DB Admins, 30 minutes)
  // keeps honouring it: the decision that produced the grant still holds
  await moveAlice('Team D');
  c = await client();
  const ok = await c.client.callTool({ name: TOOL, arguments: args }, undefined, { timeout: 10000 });
  assert.ok(ok.content?.length, 'passes under the grant');
  assert.equal(sent(args), 3);
});

test('moved to a group whose rule blocks the tool while a call is held: the held call ends with -32003 and its request is cancelled', async () => {
  // found by review: the call stayed held, and an approval then got 200
  // for a call that could no longer be made
  const args = { size: 'm4' };
  if (where !== 'Team A') await moveAlice('Team A');
  const c = await client();
  const { call, req } = await heldAnew(c, args);
  await moveAlice('Team C');
  const out = await call;
  assert.equal(out.error?.code, -32003, String(out.error));
  assert.match(String(out.error.message), /blocked by your organisation's policy/);
  await waitFor(async () => (await f.t.admin('GET', `/approvals/${req.id}`)).json.state === 'cancelled',
    { timeoutMs: 8000, what: 'the request cancelled once its call ended blocked' });
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 409);
  assert.equal(sent(args), 0);
});

test('moved to a group whose rule blocks the tool after the client gave up on its held call: the request left pending is cancelled by the move', async () => {
  // found by review: only a held call's loop cancelled its request, so one
  // whose client had left stayed pending on the reviewers' page, and an
  // approval of it granted nothing usable
  const args = { size: 'm5' };
  if (where !== 'Team A') await moveAlice('Team A');
  const c = await client();
  const ac = new AbortController();
  const call = c.client.callTool({ name: TOOL, arguments: args }, undefined, { timeout: 20000, signal: ac.signal })
    .then((result) => ({ result }), (error) => ({ error }));
  const req = await pendingFor(args);
  ac.abort(); // the client leaves: the request stays pending
  assert.ok((await call).error, 'the client gave up');
  assert.equal((await f.t.admin('GET', `/approvals/${req.id}`)).json.state, 'pending');
  await moveAlice('Team C');
  // the PATCH's reply comes after its transaction cancelled it
  const r = await f.t.admin('GET', `/approvals/${req.id}`);
  assert.equal(r.json.state, 'cancelled', r.body);
  assert.match(r.json.reason, /policy/);
  assert.equal((await decide(req.id, 'approve', f.own.bob)).status, 409);
  assert.equal(sent(args), 0);
});
