// Policy, live: SCIM membership changes (Okta PATCH add/remove, replace,
// Entra PUT), group rename, group deletion, group creation binding a
// pending name, a deleted group pushed again binding its name again, and
// policy PUTs take effect on the very next request of an
// open SDK session (no re-login), and the affected users' GET streams get
// notifications/tools/list_changed right after the commit.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient } from './lib/mcp.mjs';
import {
  startPolicyFixture, applyPolicy, getPolicy, explainOk, toolNames, toolsByName, assertRefused, callOk,
  forwardedCalls, assertNotForwarded, rawInitialize, connectWithStream, groups, sleep,
  SCENARIO_POLICY, APPROVAL_PREFIX, SENIOR_LISTED, JUNIOR_LISTED, ARGS, toolText,
} from './lib/policy.mjs';

let f, g, senior, junior, contractorsId;
const c = {}; // SDK clients (with .lc = list_changed watcher), kept open across tests

/** No list_changed beyond `since` arrives on client x within ms. */
async function assertQuiet(x, since, ms, what) {
  await sleep(ms);
  assert.equal(x.lc.count(), since, `${what}: no notifications/tools/list_changed expected (count went from ${since} to ${x.lc.count()})`);
}

/** The client's next request is answered 404 (the connector is hidden for its user). */
async function assertHidden(x, who) {
  const r = await x.client.listTools().then((ok) => ({ ok }), (e) => ({ e }));
  assert.ok(r.e, `${who}: the next request must fail, got ${JSON.stringify(r.ok ?? '').slice(0, 200)}`);
  assert.equal(r.e.code, 404, `${who}: HTTP 404 expected: ${r.e}`);
  assert.match(String(r.e.message), /not_found/, `${who}: ${r.e}`);
}

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com', 'dave@acme.com'] });
  g = groups(f.t.scim);
  senior = await g.create('Senior Engineers', [f.users.alice.id]);
  junior = await g.create('Junior Engineers', [f.users.bob.id]);
  await applyPolicy(f.t, SCENARIO_POLICY);
  c.alice = await connectWithStream(f.gw, 'acme', f.url, f.tokens.alice, f.rec);
  c.bob = await connectWithStream(f.gw, 'acme', f.url, f.tokens.bob, f.rec);
});

test('promotion (Okta PATCH add to Senior): bob\'s open session gets list_changed and the senior tools on his next request', async () => {
  assert.deepEqual(await toolNames(c.bob), JUNIOR_LISTED);
  await assertRefused(c.bob, 'get-tiny-image', -32003);
  const bob0 = c.bob.lc.count();
  const alice0 = c.alice.lc.count();
  await g.add(senior.id, f.users.bob.id);
  // the very next request after the SCIM reply, on the same session
  assert.deepEqual(await toolNames(c.bob), SENIOR_LISTED, 'bob\'s next tools/list has the senior tools');
  await callOk(c.bob, 'get-tiny-image');
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, 1, 'the promoted call reached the upstream');
  await assertRefused(c.bob, 'get-sum', -32005, ARGS['get-sum']);
  await c.bob.lc.after(bob0, 5000, 'list_changed on bob\'s stream after his promotion');
  // only the users whose membership changed are told
  await assertQuiet(c.alice, alice0, 300, 'alice\'s membership did not change');
  const ex = await explainOk(f.t, 'bob@acme.com', 'get-tiny-image');
  assert.equal(ex.decision, 'allow');
  assert.deepEqual(ex.groups.map((x) => x.displayName).sort(), ['Junior Engineers', 'Senior Engineers']);
});

test('demotion (Okta PATCH remove): tools gone and calls refused on the next request, list_changed sent', async () => {
  const bob0 = c.bob.lc.count();
  const before = forwardedCalls(f.rec, 'get-tiny-image').length;
  await g.remove(senior.id, f.users.bob.id);
  await assertRefused(c.bob, 'get-tiny-image', -32003);
  assert.deepEqual(await toolNames(c.bob), JUNIOR_LISTED, 'bob is back to echo only');
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, before, 'the refused call was not forwarded');
  await c.bob.lc.after(bob0, 5000, 'list_changed on bob\'s stream after his demotion');
  assert.equal(toolText(await callOk(c.bob, 'echo', { message: 'still junior' })), 'Echo: still junior');
});

test('members replaced (PATCH replace, then Entra-style PUT): both sides see it at once', async () => {
  const a0 = c.alice.lc.count();
  const b0 = c.bob.lc.count();
  // Senior = {bob} (alice out, bob in)
  await g.replaceMembers(senior.id, [f.users.bob.id]);
  assert.deepEqual(await toolNames(c.bob), SENIOR_LISTED, 'bob in');
  // alice is in no group any more: the connector is hidden for her (404 on the next request)
  await assertHidden(c.alice, 'alice, removed from her only group');
  assert.equal((await rawInitialize(f.url, f.tokens.alice)).status, 404, 'alice cannot start a new session either');
  assert.equal((await explainOk(f.t, 'alice@acme.com', 'echo')).decision, 'hidden');
  await c.bob.lc.after(b0, 5000, 'list_changed for bob (added by replace)');
  await c.alice.lc.after(a0, 5000, 'list_changed for alice (removed by replace)');
  await c.alice.close();

  // Entra replaces the whole group with PUT: Senior = {alice}
  await g.putGroup(senior.id, 'Senior Engineers', [f.users.alice.id]);
  c.alice = await connectWithStream(f.gw, 'acme', f.url, f.tokens.alice, f.rec);
  assert.deepEqual(await toolNames(c.alice), SENIOR_LISTED, 'alice is senior again');
  assert.deepEqual(await toolNames(c.bob), JUNIOR_LISTED, 'bob is junior again');
  await assertRefused(c.bob, 'get-structured-content', -32003);
  assertNotForwarded(f.rec, 'get-structured-content');
});

test('rename "Senior Engineers" in SCIM: access unchanged; GET policy shows the new name with a note', async () => {
  await g.rename(senior.id, 'Staff Engineers');
  assert.equal((await f.t.scim.fetch(`/Groups/${senior.id}`)).displayName, 'Staff Engineers');
  assert.deepEqual(await toolNames(c.alice), SENIOR_LISTED, 'alice keeps the senior tools');
  await callOk(c.alice, 'get-annotated-message', { messageType: 'success' });
  await assertRefused(c.alice, 'get-env', -32003);
  const p = await getPolicy(f.t);
  assert.equal(p.status, 200, p.body);
  assert.deepEqual(p.json.document, SCENARIO_POLICY, 'the document is kept as written');
  const b = p.json.bindings.find((x) => x.rule === 0);
  assert.equal(b?.as_written, 'Senior Engineers', p.body);
  assert.equal(b.group_id, senior.id, p.body);
  assert.equal(b.current_name, 'Staff Engineers', p.body);
  assert.equal(typeof b.note, 'string', `a note explains the rename: ${p.body}`);
  assert.match(b.note, /renamed/i, p.body);
  const jb = p.json.bindings.find((x) => x.rule === 1);
  assert.equal(jb.note, undefined, `no note for the junior rule: ${p.body}`);
  const ex = await explainOk(f.t, 'alice@acme.com', 'get-env');
  assert.equal(ex.decision, 'block');
  assert.deepEqual(ex.groups, [{ id: senior.id, displayName: 'Staff Engineers' }]);
  // a new group taking the old name does not capture the rule (it is bound to the id)
  const impostor = await g.create('Senior Engineers', [f.users.dave.id]);
  assert.equal((await rawInitialize(f.url, f.tokens.dave)).status, 404, 'dave, in the new "Senior Engineers", gets nothing');
  assert.equal((await explainOk(f.t, 'dave@acme.com', 'echo')).decision, 'hidden');
  await g.del(impostor.id);
});

test('policy PUT: decisions change live and every open stream of the tenant is told', async () => {
  const a0 = c.alice.lc.count();
  const b0 = c.bob.lc.count();
  const v = (await getPolicy(f.t)).json.version;
  // the senior connector default becomes allow; juniors may call get-sum; get-tiny-image blocked for everyone
  const doc = {
    version: 1, default: 'block', connectors: { everything: { default: 'allow' } },
    rules: [
      { groups: ['Staff Engineers'], connector: 'everything', block: ['get-env'], approve: ['toggle-*'] },
      { groups: ['Junior Engineers'], connector: 'everything', allow: ['echo', 'get-sum'], block: ['trigger-*', 'gzip-*', 'toggle-*', 'get-?nv'] },
      { groups: ['*'], connector: 'everything', block: ['get-tiny-image'] },
    ],
  };
  const put = await applyPolicy(f.t, doc);
  assert.equal(put.version, v + 1, 'the next version number');
  // with the connector default "allow", alice sees whatever the upstream offers this client but the blocked tools
  const direct = await connectClient(f.up.url, null);
  const upstream = await toolNames(direct);
  await direct.close();
  const seniorNow = upstream.filter((n) => n !== 'get-env' && n !== 'get-tiny-image');
  assert.ok(upstream.includes('get-env') && seniorNow.includes('trigger-long-running-operation'), `upstream list: ${upstream}`);
  const listed = await toolsByName(c.alice);
  assert.deepEqual(Object.keys(listed).sort(), seniorNow, 'alice: connector default allow, get-env and get-tiny-image blocked');
  for (const n of seniorNow) {
    assert.equal(listed[n].description.startsWith(APPROVAL_PREFIX), n.startsWith('toggle-'), `only toggle-* are marked for approval (${n}: ${listed[n].description})`);
  }
  await callOk(c.alice, 'get-sum', ARGS['get-sum']);
  assert.equal(forwardedCalls(f.rec, 'get-sum').length, 1, 'get-sum is allowed for alice now');
  await assertRefused(c.alice, 'toggle-simulated-logging', -32005);
  await assertRefused(c.alice, 'get-tiny-image', -32003);
  // bob: allow echo, get-sum; "*" blocks get-tiny-image; the connector default (allow) lets the rest through
  const bobNow = (await toolNames(c.bob));
  assert.ok(bobNow.includes('get-sum') && bobNow.includes('echo'), `bob: ${bobNow}`);
  assert.ok(!bobNow.includes('get-tiny-image'), `"*" blocks get-tiny-image for bob: ${bobNow}`);
  assert.ok(!bobNow.some((n) => /^(trigger|gzip|toggle)-/.test(n)), `bob's block globs apply: ${bobNow}`);
  assert.ok(!bobNow.includes('get-env'), `"get-?nv" blocks get-env for bob: ${bobNow}`);
  assert.ok(bobNow.includes('get-annotated-message'), `the connector default (allow) applies to tools no pattern names: ${bobNow}`);
  await callOk(c.bob, 'get-sum', ARGS['get-sum']);
  await c.alice.lc.after(a0, 5000, 'list_changed for alice after the policy PUT');
  await c.bob.lc.after(b0, 5000, 'list_changed for bob after the policy PUT');
  // back to the scenario; the senior group is called "Staff Engineers" now, so bind it by id
  const back = structuredClone(SCENARIO_POLICY);
  back.rules[0].groups = [`id:${senior.id}`];
  const a1 = c.alice.lc.count();
  await applyPolicy(f.t, back);
  assert.deepEqual(await toolNames(c.alice), SENIOR_LISTED);
  assert.deepEqual(await toolNames(c.bob), JUNIOR_LISTED);
  await c.alice.lc.after(a1, 5000, 'list_changed for alice after the second PUT');
});

// Rule 0 names the group by id here ("id:<id>", written after the rename
// above), so it stays bound to that id once the group is gone: the admin
// named that group, and a PUT of the same document would keep it. A rule
// naming a group by displayName goes back to a pending name instead (the
// last test: a deleted and re-pushed group gets its rules back).
test('group deletion removes access on the next request; its members are told', async () => {
  const a0 = c.alice.lc.count();
  const n = f.rec.requests().length;
  await g.del(senior.id);
  await assertHidden(c.alice, 'alice, whose only group was deleted');
  assert.equal((await rawInitialize(f.url, f.tokens.alice)).status, 404);
  assert.equal(f.rec.requests().filter((e) => e.json?.method === 'tools/list').length,
    f.rec.requests().slice(0, n).filter((e) => e.json?.method === 'tools/list').length, 'the refused tools/list was not forwarded');
  await c.alice.lc.after(a0, 5000, 'list_changed for alice after her group was deleted');
  const p = await getPolicy(f.t);
  const b = p.json.bindings.find((x) => x.rule === 0);
  assert.equal(b.group_id, senior.id);
  assert.equal(b.current_name, null, p.body);
  assert.match(b.note ?? '', /no longer exists/i, p.body);
  assert.equal((await explainOk(f.t, 'alice@acme.com', 'echo')).decision, 'hidden');
  await c.alice.close();
});

test('pending name: a rule for "Contractors" warns on PUT, then applies when SCIM creates the group with carol', async () => {
  const doc = structuredClone(SCENARIO_POLICY);
  doc.rules.push({ groups: ['Contractors'], connector: 'everything', allow: ['get-sum', 'echo'], block: ['echo'] });
  const put = await applyPolicy(f.t, doc);
  assert.equal(put.warnings.length >= 1, true, JSON.stringify(put));
  assert.ok(put.warnings.some((w) => w.includes('Contractors')), `the warning names the group: ${JSON.stringify(put.warnings)}`);
  assert.ok(!put.warnings.some((w) => w.includes('Junior Engineers')), 'existing groups are not warned about');
  let p = await getPolicy(f.t);
  assert.deepEqual(p.json.warnings, put.warnings);
  const pend = p.json.bindings.find((x) => x.rule === 2);
  assert.equal(pend?.as_written, 'Contractors', p.body);
  assert.equal(pend.group_id, undefined, `not bound yet: ${p.body}`);
  assert.equal(typeof pend.note, 'string', p.body);
  assert.equal((await rawInitialize(f.url, f.tokens.carol)).status, 404, 'carol: nothing yet');
  assert.equal((await explainOk(f.t, 'carol@acme.com', 'get-sum')).decision, 'hidden');

  const b0 = c.bob.lc.count();
  const contractors = await g.create('contractors', [f.users.carol.id]); // names match case-insensitively
  contractorsId = contractors.id;
  // group creation tells every stream of the tenant
  await c.bob.lc.after(b0, 5000, 'list_changed for bob after a group was created');
  p = await getPolicy(f.t);
  const bound = p.json.bindings.find((x) => x.rule === 2);
  assert.equal(bound.group_id, contractors.id, `bound now: ${p.body}`);
  assert.equal(bound.pending, undefined, p.body);
  const ex = await explainOk(f.t, 'carol@acme.com', 'get-sum');
  assert.equal(ex.decision, 'allow', JSON.stringify(ex));
  assert.equal(ex.matching_rules[0]?.rule, 2);
  assert.equal(ex.matching_rules[0].via_group, contractors.id);
  // ... and the gateway enforces what explain says, on carol's very next request
  const init = await rawInitialize(f.url, f.tokens.carol);
  assert.equal(init.status, 200, `carol's initialize once "Contractors" exists with her in it (explain says allow): ${init.status} ${init.body}`);
  const cc = await connectClient(f.url, f.tokens.carol);
  assert.deepEqual(await toolNames(cc), ['get-sum'], 'carol\'s rule applies: get-sum allowed, echo blocked');
  await callOk(cc, 'get-sum', { a: 40, b: 2 });
  await assertRefused(cc, 'echo', -32003, ARGS.echo);
  // a second group of that name later does not steal or widen the binding
  const other = await g.create('Contractors', [f.users.dave.id]);
  assert.equal((await rawInitialize(f.url, f.tokens.dave)).status, 404, 'dave in the second "Contractors" gets nothing');
  assert.deepEqual(await toolNames(cc), ['get-sum']);
  await g.del(other.id);
  await cc.close();
  await c.bob.close();
});

// Okta removes and re-adds an app assignment (or an admin deletes and
// pushes a group again): SCIM DELETE /Groups/{id}, then POST of a group with
// the same displayName and a new id. A rule that names the group binds by
// name: once the group it was bound to is deleted, the name is pending
// again (as if the same document were PUT again), so the re-pushed group
// gets its rules back. Before, the rule stayed on the dead id: the
// contractors' block stopped applying while a "*" rule let them through
// (fail open). A rename still keeps the id (the rename test above).
test('a deleted group pushed again with its name gets its rules back: the block applies again', async () => {
  const doc = structuredClone(SCENARIO_POLICY);
  doc.rules.push({ groups: ['Contractors'], connector: 'everything', allow: ['get-sum'], block: ['echo'] });
  doc.rules.push({ groups: ['*'], connector: 'everything', allow: ['echo'] });
  await applyPolicy(f.t, doc);
  const cc = await connectClient(f.url, f.tokens.carol);
  await assertRefused(cc, 'echo', -32003, ARGS.echo); // warm: carol's decisions are cached
  const echoes = forwardedCalls(f.rec, 'echo').length;

  await g.del(contractorsId);
  // carol is in no group now: "*" allows echo (that much is the delete)
  assert.equal(toolText(await callOk(cc, 'echo', { message: 'no group' })), 'Echo: no group');
  let p = await getPolicy(f.t);
  let b = p.json.bindings.find((x) => x.rule === 2);
  assert.equal(b?.as_written, 'Contractors', p.body);
  assert.equal(b.pending, true, `pending again once its group is deleted: ${p.body}`);
  assert.equal(b.group_id, undefined, p.body);
  assert.equal(b.deleted_group_id, contractorsId, p.body);
  assert.match(b.note ?? '', /deleted/, p.body);

  const again = await g.create('Contractors', [f.users.carol.id]);
  assert.notEqual(again.id, contractorsId);
  p = await getPolicy(f.t);
  b = p.json.bindings.find((x) => x.rule === 2);
  assert.equal(b.group_id, again.id, `the re-pushed group is bound: ${p.body}`);
  assert.equal(b.pending, undefined, p.body);
  // the same session's next call: the block is back, and echo never reaches the upstream
  await assertRefused(cc, 'echo', -32003, ARGS.echo);
  assert.equal(forwardedCalls(f.rec, 'echo').length, echoes + 1, 'only the groupless call was forwarded');
  assert.deepEqual(await toolNames(cc), ['get-sum']);
  const ex = await explainOk(f.t, 'carol@acme.com', 'echo');
  assert.equal(ex.decision, 'block', JSON.stringify(ex));
  assert.ok(ex.matching_rules.some((m) => m.rule === 2 && m.via_group === again.id), JSON.stringify(ex));
  await cc.close();

  // renamed away, and dave's group renamed to "Contractors": the rule stays
  // on the id it is bound to (renames keep bindings) ...
  await g.rename(again.id, 'Contractors (old)');
  const daves = await g.create('Vendors', [f.users.dave.id]);
  await g.rename(daves.id, 'Contractors');
  const dave = await connectWithStream(f.gw, 'acme', f.url, f.tokens.dave, f.rec);
  assert.equal(toolText(await callOk(dave, 'echo', { message: 'not bound' })), 'Echo: not bound');
  // ... until the bound group is deleted: then the name binds as a PUT of
  // the document would bind it, to dave's group, and dave is told
  const d0 = dave.lc.count();
  await g.del(again.id);
  await assertRefused(dave, 'echo', -32003, ARGS.echo);
  assert.equal(forwardedCalls(f.rec, 'echo').length, echoes + 2, 'dave\'s refused call was not forwarded');
  await dave.lc.after(d0, 5000, 'list_changed for dave: the rule binds his group now');
  assert.equal((await getPolicy(f.t)).json.bindings.find((x) => x.rule === 2)?.group_id, daves.id);
  await dave.close();
});
