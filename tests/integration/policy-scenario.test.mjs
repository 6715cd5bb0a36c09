// Policy, the senior/junior scenario end to end: SCIM groups "Senior
// Engineers" (alice) and "Junior Engineers" (bob), carol in no group; the
// SDK client through the gateway to server-everything (behind the
// recorder). tools/list filtering, approval marking, -32003 / -32005
// refusals that never reach the upstream, hidden connectors (404), the
// explain endpoint and `mcpgate policy explain` agreeing with what happened,
// and fail-closed before any policy exists.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient, rawSession, assertRpcError, show, rpcMessages } from './lib/mcp.mjs';
import { assertExit } from './lib/admin.mjs';
import {
  startPolicyFixture, applyPolicy, getPolicy, explain, explainOk, policyCli, writeJsonFile,
  toolNames, toolsByName, assertRefused, callOk, forwardedCalls, assertNotForwarded, rawInitialize,
  SCENARIO_POLICY, SENIOR_ALLOWED, SENIOR_LISTED, JUNIOR_LISTED, APPROVAL_PREFIX, EVERYTHING_TOOLS, ARGS,
  CONNECTOR, toolText, startJsonUpstream, userTraffic,
} from './lib/policy.mjs';

let f, senior, junior;
const clients = {};

before(async () => {
  f = await startPolicyFixture();
  senior = await f.t.scim.createGroup('Senior Engineers', [f.users.alice.id]);
  junior = await f.t.scim.createGroup('Junior Engineers', [f.users.bob.id]);
});

test('no policy at all: the connector is hidden from everyone (404), nothing reaches the upstream', async () => {
  const r = await getPolicy(f.t);
  assert.equal(r.status, 404, `GET policy before any PUT: ${r.status} ${r.body}`);
  const n = userTraffic(f.rec).length;
  for (const who of ['alice', 'bob', 'carol']) {
    const init = await rawInitialize(f.url, f.tokens[who]);
    assert.equal(init.status, 404, `${who} initialize without a policy: expected 404, got ${init.status} ${init.body}`);
    const ex = await explainOk(f.t, `${who}@acme.com`, 'echo');
    assert.equal(ex.decision, 'hidden', `explain ${who}/echo without a policy: ${JSON.stringify(ex)}`);
  }
  await assert.rejects(connectClient(f.url, f.tokens.alice), 'the SDK client cannot connect to a hidden connector');
  const seen = userTraffic(f.rec);
  assert.equal(seen.length, n, 'no request reached the upstream while no policy exists: ' + JSON.stringify(seen.map((e) => [e.method, e.body.slice(0, 200)])));
});

test('PUT the scenario policy: version 1, no warnings; GET shows it with bindings to the group ids', async () => {
  const put = await applyPolicy(f.t, SCENARIO_POLICY);
  assert.equal(put.version, 1, JSON.stringify(put));
  assert.deepEqual(put.warnings, [], JSON.stringify(put));
  const g = await getPolicy(f.t);
  assert.equal(g.status, 200, g.body);
  assert.equal(g.json.version, 1);
  assert.deepEqual(g.json.document, SCENARIO_POLICY, 'the document is returned as written');
  assert.deepEqual(g.json.warnings, []);
  assert.equal(typeof g.json.updated, 'string');
  const b = g.json.bindings;
  assert.ok(Array.isArray(b), g.body);
  const b0 = b.find((x) => x.rule === 0);
  const b1 = b.find((x) => x.rule === 1);
  assert.equal(b0?.as_written, 'Senior Engineers', g.body);
  assert.equal(b0.group_id, senior.id, g.body);
  assert.equal(b0.current_name, 'Senior Engineers', g.body);
  assert.equal(b0.note, undefined, `no note while the name is unchanged: ${g.body}`);
  assert.equal(b1?.group_id, junior.id, g.body);
});

test('alice (senior): echo and get-* except get-env, get-sum marked as requiring approval', async () => {
  const direct = await connectClient(f.up.url, null);
  const upstream = Object.fromEntries((await direct.client.listTools()).tools.map((x) => [x.name, x]));
  await direct.close();
  clients.alice = await connectClient(f.url, f.tokens.alice);
  const tools = await toolsByName(clients.alice);
  assert.deepEqual(Object.keys(tools).sort(), SENIOR_LISTED, 'alice sees exactly the allowed and approval tools');
  for (const n of SENIOR_ALLOWED) assert.deepEqual(tools[n], upstream[n], `${n} is listed unchanged`);
  const sum = tools['get-sum'];
  assert.ok(sum.description.startsWith(APPROVAL_PREFIX), `get-sum's description starts with "${APPROVAL_PREFIX}": ${sum.description}`);
  assert.ok(sum.description.includes(upstream['get-sum'].description), 'the upstream description is kept after the note');
  assert.deepEqual(sum.inputSchema, upstream['get-sum'].inputSchema, 'get-sum keeps its input schema');
  for (const n of ['get-env', 'gzip-file-as-resource', 'toggle-simulated-logging', 'trigger-long-running-operation']) {
    assert.ok(!(n in tools), `${n} is not listed for alice`);
  }
});

test('bob (junior): only echo', async () => {
  clients.bob = await connectClient(f.url, f.tokens.bob);
  assert.deepEqual(await toolNames(clients.bob), JUNIOR_LISTED);
});

test('alice: get-env blocked (-32003), get-sum needs approval (-32005), neither forwarded; echo and get-tiny-image work', async () => {
  const c = clients.alice;
  await assertRefused(c, 'get-env', -32003);
  const ap = await assertRefused(c, 'get-sum', -32005, ARGS['get-sum']);
  assert.match(ap.message, /approv/i, `the approval error says so: ${ap.message}`);
  assert.equal(toolText(await callOk(c, 'echo', { message: 'senior says hi' })), 'Echo: senior says hi');
  await callOk(c, 'get-tiny-image');
  // a tool the policy never names: the connector default (block)
  await assertRefused(c, 'gzip-file-as-resource', -32003);
  await assertRefused(c, 'no-such-tool', -32003);
  for (const n of ['get-env', 'get-sum', 'gzip-file-as-resource', 'no-such-tool']) assertNotForwarded(f.rec, n);
  assert.equal(forwardedCalls(f.rec, 'echo').length, 1, 'echo reached the upstream once');
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, 1, 'get-tiny-image reached the upstream once');
});

test('bob: get-tiny-image and get-sum blocked (-32003), never forwarded; echo works', async () => {
  const c = clients.bob;
  await assertRefused(c, 'get-tiny-image', -32003);
  await assertRefused(c, 'get-sum', -32003, ARGS['get-sum']);
  await assertRefused(c, 'get-env', -32003);
  assert.equal(toolText(await callOk(c, 'echo', { message: 'junior' })), 'Echo: junior');
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, 1, 'only alice\'s get-tiny-image reached the upstream');
  assertNotForwarded(f.rec, 'get-sum');
  assertNotForwarded(f.rec, 'get-env');
});

test('carol (in no group): the connector does not exist for her (404), nothing forwarded', async () => {
  const n = userTraffic(f.rec).length;
  const init = await rawInitialize(f.url, f.tokens.carol);
  assert.equal(init.status, 404, `carol initialize: ${init.status} ${init.body}`);
  // same answer as for a connector that does not exist at all
  const none = await rawInitialize(f.t.mcpUrl('nope'), f.tokens.carol);
  assert.equal(none.status, 404, `unknown connector: ${none.status}`);
  await assert.rejects(connectClient(f.url, f.tokens.carol), 'the SDK client cannot connect for carol');
  assert.equal(userTraffic(f.rec).length, n, 'carol\'s attempts never reached the upstream');
});

test('explain agrees with tools/list and tools/call for every tool, for alice, bob and carol', async () => {
  const listed = { alice: await toolsByName(clients.alice), bob: await toolsByName(clients.bob) };
  for (const who of ['alice', 'bob']) {
    for (const tool of EVERYTHING_TOOLS) {
      const ex = await explainOk(f.t, `${who}@acme.com`, tool);
      const l = listed[who][tool];
      const expect = !l ? 'block' : l.description?.startsWith(APPROVAL_PREFIX) ? 'approve' : 'allow';
      assert.equal(ex.decision, expect, `explain ${who}/${tool} = ${ex.decision}, tools/list implies ${expect}: ${JSON.stringify(ex)}`);
      assert.equal(ex.policy_version, 1);
    }
  }
  for (const tool of ['echo', 'get-sum']) {
    const ex = await explainOk(f.t, 'carol@acme.com', tool);
    assert.equal(ex.decision, 'hidden', JSON.stringify(ex));
    assert.deepEqual(ex.groups, [], `carol is in no group: ${JSON.stringify(ex)}`);
    assert.deepEqual(ex.matching_rules, [], JSON.stringify(ex));
  }
});

test('explain details: matching rules, the patterns that decided, the groups, the user', async () => {
  let ex = await explainOk(f.t, 'alice@acme.com', 'get-env');
  assert.equal(ex.decision, 'block');
  assert.equal(typeof ex.reason, 'string');
  assert.ok(ex.reason.length > 0);
  assert.deepEqual(ex.groups, [{ id: senior.id, displayName: 'Senior Engineers' }], JSON.stringify(ex.groups));
  assert.equal(ex.user?.userName, 'alice@acme.com', JSON.stringify(ex.user));
  assert.equal(ex.user?.id, f.users.alice.id, JSON.stringify(ex.user));
  assert.equal(ex.matching_rules.length, 1, JSON.stringify(ex.matching_rules));
  const m = ex.matching_rules[0];
  assert.equal(m.rule, 0);
  assert.equal(m.connector, CONNECTOR);
  assert.equal(m.via_group, senior.id, `via_group is the senior group: ${JSON.stringify(m)}`);
  const pats = m.patterns.map((p) => `${p.action}:${p.pattern}`).sort();
  assert.ok(pats.includes('block:get-env'), `the block pattern is shown: ${pats}`);
  assert.ok(pats.includes('allow:get-*'), `the allow glob that also matched is shown: ${pats}`);
  assert.ok(!pats.includes('approve:get-sum'), `patterns that do not match the tool are not listed: ${pats}`);

  ex = await explainOk(f.t, 'alice@acme.com', 'get-sum');
  assert.equal(ex.decision, 'approve');
  assert.deepEqual(ex.matching_rules[0].patterns.map((p) => `${p.action}:${p.pattern}`).sort(), ['allow:get-*', 'approve:get-sum']);

  ex = await explainOk(f.t, 'alice@acme.com', 'echo');
  assert.equal(ex.decision, 'allow');
  // tool names and globs are case-sensitive
  ex = await explainOk(f.t, 'alice@acme.com', 'ECHO');
  assert.equal(ex.decision, 'block', `ECHO is not echo: ${JSON.stringify(ex)}`);
  ex = await explainOk(f.t, 'alice@acme.com', 'GET-ENV');
  assert.equal(ex.decision, 'block');
  assert.deepEqual(ex.matching_rules[0].patterns, [], 'get-* does not match GET-ENV');

  ex = await explainOk(f.t, 'alice@acme.com', 'gzip-file-as-resource');
  assert.equal(ex.decision, 'block');
  assert.match(ex.reason, /default/i, `a tool no pattern names falls to the default: ${ex.reason}`);
  assert.equal(ex.matching_rules.length, 1, 'the rule still matched the user and connector');
  assert.deepEqual(ex.matching_rules[0].patterns, [], 'but none of its patterns names the tool');

  // the user may be given by id; bob's decisions come from the junior rule
  ex = await explainOk(f.t, f.users.bob.id, 'get-tiny-image');
  assert.equal(ex.decision, 'block');
  assert.equal(ex.user?.userName, 'bob@acme.com');
  assert.deepEqual(ex.groups, [{ id: junior.id, displayName: 'Junior Engineers' }]);
  assert.equal(ex.matching_rules.length, 1);
  assert.equal(ex.matching_rules[0].rule, 1);

  // another connector nobody has a rule for: hidden even for alice
  ex = await explainOk(f.t, 'alice@acme.com', 'echo', 'github');
  assert.equal(ex.decision, 'hidden', JSON.stringify(ex));

  // errors
  let r = await explain(f.t, 'nobody@acme.com', 'echo');
  assert.equal(r.status, 404, `unknown user: ${r.status} ${r.body}`);
  r = await f.t.admin('GET', `/explain?user=alice%40acme.com&connector=${CONNECTOR}`);
  assert.equal(r.status, 400, `missing tool: ${r.status} ${r.body}`);
  r = await f.t.admin('GET', '/explain');
  assert.equal(r.status, 400, `no parameters: ${r.status} ${r.body}`);
});

test('`mcpgate policy explain` prints the same decisions; --json is the API answer', async () => {
  const cases = [
    ['alice@acme.com', 'get-env', 'block'], ['alice@acme.com', 'get-sum', 'approve'], ['alice@acme.com', 'echo', 'allow'],
    ['bob@acme.com', 'get-tiny-image', 'block'], ['bob@acme.com', 'echo', 'allow'], ['carol@acme.com', 'echo', 'hidden'],
  ];
  for (const [user, tool, decision] of cases) {
    const r = await policyCli(f.gw, ['explain', 'acme', '--user', user, '--connector', CONNECTOR, '--tool', tool]);
    assertExit(r, 0, `policy explain ${user} ${tool}`);
    const first = r.stdout.split('\n')[0];
    assert.ok(first.includes(user) && first.includes(tool) && first.includes(CONNECTOR), `first line names user, tool and connector: ${first}`);
    assert.match(first, new RegExp(`: ${decision}$`), `decision ${decision} on the first line: ${r.stdout}`);
    assert.match(r.stdout, /policy version: 1/, r.stdout);
    const j = await policyCli(f.gw, ['explain', 'acme', '--user', user, '--connector', CONNECTOR, '--tool', tool, '--json']);
    assertExit(j, 0, 'policy explain --json');
    const api = await explainOk(f.t, user, tool);
    assert.deepEqual(JSON.parse(j.stdout), api, '--json prints the API answer');
  }
  const alice = await policyCli(f.gw, ['explain', 'acme', '--user', 'alice@acme.com', '--connector', CONNECTOR, '--tool', 'get-env']);
  assert.match(alice.stdout, /"Senior Engineers"/, `the groups are printed: ${alice.stdout}`);
  assert.match(alice.stdout, /block "get-env"/, `the deciding pattern is printed: ${alice.stdout}`);
  const bad = await policyCli(f.gw, ['explain', 'acme', '--user', 'nobody@acme.com', '--connector', CONNECTOR, '--tool', 'echo']);
  assertExit(bad, 1, 'explain for an unknown user fails');
  const usage = await policyCli(f.gw, ['explain', 'acme', '--user', 'alice@acme.com']);
  assertExit(usage, 2, 'explain without --connector/--tool is a usage error');
});

test('`mcpgate policy get` / `apply`: the CLI reads and replaces the document; decisions follow', async () => {
  let r = await policyCli(f.gw, ['get', 'acme']);
  assertExit(r, 0, 'policy get');
  assert.deepEqual(JSON.parse(r.stdout), SCENARIO_POLICY, `policy get prints the document: ${r.stdout}`);
  // junior engineers may now also use get-tiny-image
  const next = structuredClone(SCENARIO_POLICY);
  next.rules[1].allow.push('get-tiny-image');
  r = await policyCli(f.gw, ['apply', 'acme', await writeJsonFile(next)]);
  assertExit(r, 0, 'policy apply');
  assert.match(r.stdout, /version 2/, r.stdout);
  assert.deepEqual(await toolNames(clients.bob), ['echo', 'get-tiny-image'], 'bob\'s next tools/list follows the new version');
  await callOk(clients.bob, 'get-tiny-image');
  assert.equal(forwardedCalls(f.rec, 'get-tiny-image').length, 2, 'now forwarded');
  const ex = await explainOk(f.t, 'bob@acme.com', 'get-tiny-image');
  assert.equal(ex.decision, 'allow');
  assert.equal(ex.policy_version, 2);
  // an invalid file is refused by the server, the version in force stays
  r = await policyCli(f.gw, ['apply', 'acme', await writeJsonFile({ version: 2, rules: [] })]);
  assertExit(r, 1, 'policy apply of an invalid document');
  assert.match(r.stderr + r.stdout, /version/, `the problem is shown: ${r.stderr}`);
  r = await policyCli(f.gw, ['apply', 'acme', await writeJsonFile('{"version": 1, "rules": [')]);
  assertExit(r, 1, 'policy apply of a file that is not JSON');
  assert.equal((await getPolicy(f.t)).json.version, 2);
  for (const c of Object.values(clients)) await c.close();
});

test('JSON replies and 2025-03-26 batches are filtered and refused the same way (JSON upstream)', async () => {
  const up = await startJsonUpstream({ tools: ['alpha', 'beta', 'gamma', 'delta'] });
  const r = await f.t.putConnector('jsonup', { url: up.url, description: 'JSON', auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  const doc = structuredClone(SCENARIO_POLICY);
  doc.connectors.jsonup = { default: 'allow' };
  doc.rules.push({ groups: ['Senior Engineers'], connector: 'jsonup', block: ['beta'], approve: ['gamma'] });
  await applyPolicy(f.t, doc);
  const url = f.t.mcpUrl('jsonup');
  // bob has no rule for jsonup: hidden
  assert.equal((await rawInitialize(url, f.tokens.bob)).status, 404);

  const s = await rawSession(url, f.tokens.alice, { protocolVersion: '2025-06-18' });
  let res = await s.request('tools/list', {});
  assert.equal(res.status, 200, show(res));
  assert.match(String(res.headers['content-type']), /^application\/json/, `a JSON reply: ${show(res)}`);
  const tools = Object.fromEntries(res.json.result.tools.map((x) => [x.name, x]));
  assert.deepEqual(Object.keys(tools).sort(), ['alpha', 'delta', 'gamma'], `beta removed, the connector default lets the rest through: ${res.body}`);
  assert.ok(tools.gamma.description.startsWith(APPROVAL_PREFIX), res.body);
  assert.equal(tools.alpha.description, 'the alpha tool');
  res = await s.request('tools/call', { name: 'beta', arguments: {} });
  let e = assertRpcError(res, { codes: [-32003], message: /beta/, what: 'JSON tools/call beta' });
  assert.match(e.message, /blocked by your organisation's policy/);
  res = await s.request('tools/call', { name: 'gamma', arguments: {} });
  assertRpcError(res, { codes: [-32005], message: /gamma/, what: 'JSON tools/call gamma' });
  res = await s.request('tools/call', { name: 'delta', arguments: {} });
  assert.equal(res.json?.result?.content?.[0]?.text, 'called delta', show(res));
  // tools/call of a tool the reply never listed is still decided by name
  res = await s.request('tools/call', { name: 'beta', arguments: { sneaky: true }, _meta: { progressToken: 1 } });
  assertRpcError(res, { codes: [-32003], message: /beta/, what: 'tools/call beta with _meta' });
  assert.equal(up.calls('beta').length, 0, 'beta never reached the upstream');
  assert.equal(up.calls('gamma').length, 0, 'gamma never reached the upstream');
  assert.equal(up.calls('delta').length, 1);

  // batches (2025-03-26 only): a tools/list reply inside a batch is filtered too
  const b = await rawSession(url, f.tokens.alice, { protocolVersion: '2025-03-26' });
  res = await b.post([
    { jsonrpc: '2.0', id: 11, method: 'tools/list', params: {} },
    { jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'alpha', arguments: {} } },
  ]);
  assert.equal(res.status, 200, show(res));
  const byId = Object.fromEntries(res.messages.map((m) => [m.id, m]));
  assert.deepEqual(byId[11]?.result?.tools?.map((x) => x.name).sort(), ['alpha', 'delta', 'gamma'], `batched tools/list filtered: ${res.body}`);
  assert.equal(byId[12]?.result?.content?.[0]?.text, 'called alpha', res.body);
  // a batch carrying a blocked call is not forwarded: the blocked call gets -32003
  const before = up.requests().length;
  res = await b.post([
    { jsonrpc: '2.0', id: 21, method: 'tools/call', params: { name: 'alpha', arguments: {} } },
    { jsonrpc: '2.0', id: 22, method: 'tools/call', params: { name: 'beta', arguments: {} } },
  ]);
  e = assertRpcError(res, { id: 22, codes: [-32003], message: /beta/, what: 'batched tools/call beta' });
  assert.equal(up.calls('beta').length, 0, 'the batch with beta never reached the upstream');
  const leaked = up.requests().slice(before).filter((x) => rpcMessages(x.json).some((m) => m.id === 21 || m.id === 22));
  assert.equal(leaked.length, 0, `nothing of that batch was forwarded: ${leaked.map((x) => x.body).join(' | ')}`);
  await up.stop();
});

test('paginated tools/list: every page is filtered (JSON upstream, 2 tools a page)', async () => {
  const up = await startJsonUpstream({ tools: ['p1', 'x1', 'p2', 'x2', 'p3', 'x3'], pageSize: 2 });
  assert.equal((await f.t.putConnector('paged', { url: up.url, description: 'paged', auth: { type: 'none' } })).status, 201);
  const doc = structuredClone(SCENARIO_POLICY);
  doc.rules.push({ groups: ['Senior Engineers'], connector: 'paged', allow: ['p*'] });
  await applyPolicy(f.t, doc);
  const s = await rawSession(f.t.mcpUrl('paged'), f.tokens.alice);
  const names = [];
  let cursor;
  for (let page = 0; page < 5; page++) {
    const res = await s.request('tools/list', cursor === undefined ? {} : { cursor });
    assert.equal(res.status, 200, show(res));
    const r = res.messages.find((m) => m.result)?.result;
    assert.ok(r, show(res));
    for (const t of r.tools) names.push(t.name);
    cursor = r.nextCursor;
    if (cursor === undefined) break;
  }
  assert.deepEqual(names, ['p1', 'p2', 'p3'], 'only the allowed tools of every page');
  // the SDK client, which follows nextCursor itself, sees the same
  const c = await connectClient(f.t.mcpUrl('paged'), f.tokens.alice);
  const all = [];
  let cur;
  do {
    const r = await c.client.listTools(cur === undefined ? {} : { cursor: cur });
    all.push(...r.tools.map((t) => t.name));
    cur = r.nextCursor;
  } while (cur !== undefined);
  assert.deepEqual(all, ['p1', 'p2', 'p3']);
  await c.close();
  await up.stop();
});
