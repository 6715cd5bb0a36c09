// Policy input: invalid documents are refused (400 invalid_policy) with
// every problem listed and the version in force stays (decisions, GET and
// explain unchanged; the next accepted document takes the next number);
// ambiguous group names (400 naming id:), id:<group id> references, strict
// bodies (415, malformed JSON, duplicate keys), methods, and who may PUT
// (a tenant admin token for its own tenant only); a rule's approval fields
// (approvers resolved like groups, bounds, shown by GET and explain).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { api, assertJsonError, createTenant } from './lib/admin.mjs';
import { connectClient } from './lib/mcp.mjs';
import {
  startPolicyFixture, putPolicy, applyPolicy, getPolicy, explainOk, toolNames, assertRefused, callOk,
  rawInitialize, groups, assertNotForwarded, policyCli, writeJsonFile, CONNECTOR,
} from './lib/policy.mjs';

let f, g, senior, client, inForce;

const V1 = {
  version: 1, default: 'block',
  rules: [{ groups: ['Senior Engineers'], connector: 'everything', allow: ['echo', 'get-sum'], approve: ['get-tiny-image'] }],
};

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
  g = groups(f.t.scim);
  senior = await g.create('Senior Engineers', [f.users.alice.id]);
  inForce = await applyPolicy(f.t, V1);
  client = await connectClient(f.url, f.tokens.alice);
});

/** Everything observable still reflects V1 at version `inForce.version`. */
async function assertUnchanged(what) {
  const p = await getPolicy(f.t);
  assert.equal(p.status, 200, p.body);
  assert.equal(p.json.version, inForce.version, `${what}: the version in force stays ${inForce.version}: ${p.body}`);
  assert.deepEqual(p.json.document, inForce.doc ?? V1, `${what}: the document in force is unchanged`);
  assert.deepEqual(await toolNames(client), ['echo', 'get-sum', 'get-tiny-image'], `${what}: alice's tools are unchanged`);
  const ex = await explainOk(f.t, 'alice@acme.com', 'get-env');
  assert.equal(ex.decision, 'block', `${what}: explain unchanged`);
  assert.equal(ex.policy_version, inForce.version, `${what}: explain reports the version in force`);
}

/** PUT must be refused 400 invalid_policy; returns the message's problems ('; '-separated). */
async function refused(doc, what, opts) {
  const r = await putPolicy(f.t, doc, opts);
  assert.equal(r.status, 400, `${what}: 400 expected, got ${r.status} ${r.body}`);
  const j = assertJsonError(r, 400, { error: 'invalid_policy' });
  return { message: j.message, problems: j.message.split('; ') };
}

/** Every regexp matches a different problem of the list. */
function assertProblems(problems, res, what) {
  const left = [...problems];
  for (const re of res) {
    const i = left.findIndex((p) => re.test(p));
    assert.ok(i >= 0, `${what}: a problem matching ${re} is listed; problems: ${JSON.stringify(problems)}`);
    left.splice(i, 1);
  }
}

test('a document with many problems: 400 listing every one of them; the old policy stays in force', async () => {
  const doc = {
    version: 2, default: 'maybe', colour: 'blue',
    connectors: { everything: { default: 'approve', retries: 3 }, 'Bad_Name': { default: 'block' } },
    rules: [
      { groups: [], connector: 'everything', allow: 'echo' },
      { groups: ['Senior Engineers'], connector: 'Not Valid', allow: [1, ''], block: [null], approve: [{}], priority: 1 },
      'not an object',
      { groups: ['Senior Engineers'], connector: 'everything' },
      { groups: 'Senior Engineers', connector: 'everything', allow: ['echo'] },
      { groups: [''], allow: ['echo'] },
    ],
  };
  const { problems } = await refused(doc, 'many problems');
  assertProblems(problems, [
    /colour/, // unknown top-level key
    /version/, // version 2
    /^"?default/, // default "maybe"
    /everything.*retries|retries.*everything/, // unknown connector key
    /everything.*default/, // connector default "approve"
    /Bad_Name/, // connector name
    /rules\[0\]\.groups/, // empty groups
    /rules\[0\]\.allow/, // allow not an array
    /rules\[1\]\.connector/, // connector name in a rule
    /rules\[1\]\.allow\[0\]/, // a number
    /rules\[1\]\.allow\[1\]/, // empty pattern
    /rules\[1\]\.block\[0\]/, // null
    /rules\[1\]\.approve\[0\]/, // an object
    /rules\[1\].*priority/, // unknown rule key
    /rules\[2\]/, // not an object
    /rules\[3\]/, // no allow/block/approve
    /rules\[4\]\.groups/, // groups not an array
    /rules\[5\]\.groups\[0\]/, // empty group name
    /rules\[5\]\.connector/, // missing connector
  ], 'many problems');
  await assertUnchanged('after the many-problem document');
});

test('each kind of problem alone is refused and named', async () => {
  const ok = V1.rules[0];
  const cases = [
    ['version missing', { default: 'block', rules: [ok] }, /version/],
    ['version as a string', { version: '1', rules: [ok] }, /version/],
    ['version 0', { version: 0, rules: [ok] }, /version/],
    ['default approve', { version: 1, default: 'approve', rules: [ok] }, /default/],
    ['default not a string', { version: 1, default: true, rules: [ok] }, /default/],
    ['connector default wrong', { version: 1, connectors: { everything: { default: 'deny' } }, rules: [ok] }, /everything/],
    ['connectors not an object', { version: 1, connectors: ['everything'], rules: [ok] }, /connectors/],
    ['rules missing', { version: 1, default: 'block' }, /rules/],
    ['rules not an array', { version: 1, rules: { 0: ok } }, /rules/],
    ['unknown key', { version: 1, rules: [ok], owner: 'it' }, /owner/],
    ['unknown rule key', { version: 1, rules: [{ ...ok, deny: ['x'] }] }, /deny/],
    ['empty groups', { version: 1, rules: [{ ...ok, groups: [] }] }, /groups/],
    ['groups of numbers', { version: 1, rules: [{ ...ok, groups: [7] }] }, /groups\[0\]/],
    ['pattern list a string', { version: 1, rules: [{ ...ok, block: 'get-env' }] }, /block/],
    ['pattern a number', { version: 1, rules: [{ ...ok, approve: [5] }] }, /approve\[0\]/],
    ['pattern with a control character', { version: 1, rules: [{ ...ok, allow: ['echo\n'] }] }, /allow\[0\]/],
    ['pattern too long', { version: 1, rules: [{ ...ok, allow: ['x'.repeat(300)] }] }, /allow\[0\]/],
    ['rule connector missing', { version: 1, rules: [{ groups: ['*'], allow: ['echo'] }] }, /connector/],
    ['approvers without approve', { version: 1, rules: [{ groups: ['*'], connector: 'everything', allow: ['echo'], approvers: ['Senior Engineers'] }] }, /rules\[0\]\.approvers needs "approve"/],
    ['grant_minutes without approve', { version: 1, rules: [{ groups: ['*'], connector: 'everything', allow: ['echo'], grant_minutes: 5 }] }, /rules\[0\]\.grant_minutes needs "approve"/],
    ['approvers empty', { version: 1, rules: [{ ...ok, approvers: [] }] }, /rules\[0\]\.approvers must be a non-empty array/],
    ['approvers "*"', { version: 1, rules: [{ ...ok, approvers: ['*'] }] }, /rules\[0\]\.approvers\[0\]/],
    ['approval_timeout_s 0', { version: 1, rules: [{ ...ok, approval_timeout_s: 0 }] }, /approval_timeout_s must be an integer from 1 to 86400/],
    ['approval_timeout_s over a day', { version: 1, rules: [{ ...ok, approval_timeout_s: 86401 }] }, /approval_timeout_s/],
    ['approval_timeout_s as a string', { version: 1, rules: [{ ...ok, approval_timeout_s: '300' }] }, /approval_timeout_s/],
    ['grant_minutes negative', { version: 1, rules: [{ ...ok, grant_minutes: -1 }] }, /grant_minutes must be an integer from 0 to 1440/],
    ['grant_minutes fractional', { version: 1, rules: [{ ...ok, grant_minutes: 1.5 }] }, /grant_minutes/],
  ];
  for (const [what, doc, re] of cases) {
    const { problems } = await refused(doc, what);
    assert.equal(problems.length, 1, `${what}: exactly one problem: ${JSON.stringify(problems)}`);
    assert.match(problems[0], re, `${what}: ${problems[0]}`);
  }
  await assertUnchanged('after the single-problem documents');
});

test('non-object documents: 400 invalid_policy; malformed JSON 400; duplicate keys 400; wrong content type 415', async () => {
  for (const doc of [[], 'policy', 42, null, true, [V1]]) {
    // the admin API's body parser refuses non-objects before the policy
    // validator sees them (invalid_json); either code is a 400 naming the problem
    const r = await putPolicy(f.t, doc);
    const j = assertJsonError(r, 400);
    assert.ok(['invalid_policy', 'invalid_json'].includes(j.error), `non-object ${JSON.stringify(doc)}: ${r.body}`);
    assert.match(j.message, /object|'\{' expected/i, `non-object ${JSON.stringify(doc)}: ${j.message}`);
  }
  let r = await putPolicy(f.t, undefined, { raw: '{"version": 1, "rules": [' });
  assertJsonError(r, 400);
  r = await putPolicy(f.t, undefined, { raw: '{"version": 1, "version": 1, "rules": []}' });
  assertJsonError(r, 400);
  assert.match(r.json.message, /duplicate|version/i, r.body);
  r = await putPolicy(f.t, undefined, { raw: '' });
  assertJsonError(r, 400);
  r = await putPolicy(f.t, V1, { headers: { 'content-type': 'text/plain' } });
  assertJsonError(r, 415);
  r = await putPolicy(f.t, V1, { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assertJsonError(r, 415);
  r = await f.t.admin('POST', '/policy', V1);
  assertJsonError(r, 405);
  assert.match(String(r.headers.allow), /GET/);
  assert.match(String(r.headers.allow), /PUT/);
  r = await f.t.admin('DELETE', '/policy');
  assertJsonError(r, 405);
  await assertUnchanged('after malformed bodies');
});

test('refused documents consume no version: the next accepted PUT is version+1 and applies at once', async () => {
  const next = structuredClone(V1);
  next.rules[0].allow.push('get-env');
  const put = await applyPolicy(f.t, next);
  assert.equal(put.version, inForce.version + 1, `no version was used by a refused PUT: ${JSON.stringify(put)}`);
  assert.deepEqual(await toolNames(client), ['echo', 'get-env', 'get-sum', 'get-tiny-image']);
  await callOk(client, 'get-env');
  inForce = { ...put, doc: next };
  // back to V1 (as a new version)
  const back = await applyPolicy(f.t, V1);
  assert.equal(back.version, put.version + 1);
  inForce = back;
  await assertRefused(client, 'get-env', -32003);
});

test('ambiguous names: two groups called "Platform" → 400 naming id:, old policy stays; id:<group id> binds exactly one', async () => {
  const p1 = await g.create('Platform', [f.users.bob.id]);
  const p2 = await g.create('platform', [f.users.carol.id]); // names compare case-insensitively
  const doc = { version: 1, rules: [...V1.rules, { groups: ['Platform'], connector: 'everything', allow: ['echo'] }] };
  let r = await putPolicy(f.t, doc);
  const j = assertJsonError(r, 400, { error: 'invalid_policy' });
  assert.match(j.message, /id:/, `the message says to use id: ${j.message}`);
  assert.match(j.message, /Platform/, `the message names the group: ${j.message}`);
  await assertUnchanged('after the ambiguous name');
  assert.equal((await rawInitialize(f.url, f.tokens.bob)).status, 404, 'bob still has nothing');

  doc.rules[1].groups = [`id:${p1.id}`];
  const put = await applyPolicy(f.t, doc);
  assert.deepEqual(put.warnings, [], JSON.stringify(put));
  inForce = { ...put, doc };
  const bob = await connectClient(f.url, f.tokens.bob);
  assert.deepEqual(await toolNames(bob), ['echo'], 'bob (in the id-bound group) gets echo');
  await assertRefused(bob, 'get-sum', -32003, { a: 1, b: 2 });
  assertNotForwarded(f.rec, 'get-sum');
  await bob.close();
  assert.equal((await rawInitialize(f.url, f.tokens.carol)).status, 404, 'carol, in the other "platform", gets nothing');
  const ex = await explainOk(f.t, 'bob@acme.com', 'echo');
  assert.equal(ex.decision, 'allow');
  assert.equal(ex.matching_rules[0]?.via_group, p1.id, JSON.stringify(ex));
  const gp = await getPolicy(f.t);
  const b = gp.json.bindings.find((x) => x.rule === 1);
  assert.equal(b.as_written, `id:${p1.id}`, gp.body);
  assert.equal(b.group_id, p1.id);
  assert.equal(b.current_name, 'Platform');
  assert.equal(b.note, undefined, `no rename note for an id reference: ${gp.body}`);
  // the id binding survives a rename, and the name of the other group does not matter
  await g.rename(p2.id, 'Platform Two');
  assert.equal((await rawInitialize(f.url, f.tokens.carol)).status, 404);
});

test('who may PUT: a tenant admin token for its own tenant (200), not another tenant\'s (403); no token 401', async () => {
  await createTenant(f.gw.port, f.t.opToken, 'globex');
  const m = await api(f.gw.port, f.t.opToken, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'acme-admin' });
  assert.equal(m.status, 201, m.body);
  const tok = m.json.token;
  const own = await api(f.gw.port, tok, 'PUT', '/admin/v1/tenants/acme/policy', V1);
  assert.equal(own.status, 200, `tenant token on its own tenant: ${own.status} ${own.body}`);
  assert.equal(own.json.version, inForce.version + 1);
  inForce = { ...own.json, doc: V1 };
  assert.equal((await api(f.gw.port, tok, 'GET', '/admin/v1/tenants/acme/policy')).status, 200);
  const ex = await api(f.gw.port, tok, 'GET', `/admin/v1/tenants/acme/explain?user=alice%40acme.com&connector=${CONNECTOR}&tool=echo`);
  assert.equal(ex.status, 200, ex.body);
  assert.equal(ex.json.decision, 'allow');

  assertJsonError(await api(f.gw.port, tok, 'PUT', '/admin/v1/tenants/globex/policy', V1), 403);
  assertJsonError(await api(f.gw.port, tok, 'GET', '/admin/v1/tenants/globex/policy'), 403);
  assertJsonError(await api(f.gw.port, tok, 'GET', '/admin/v1/tenants/globex/explain?user=x&connector=y&tool=z'), 403);
  // the refused PUT wrote nothing: globex still has no policy
  const gp = await api(f.gw.port, f.t.opToken, 'GET', '/admin/v1/tenants/globex/policy');
  assert.equal(gp.status, 404, `globex has no policy: ${gp.status} ${gp.body}`);
  assertJsonError(await api(f.gw.port, null, 'PUT', '/admin/v1/tenants/acme/policy', V1), 401);
  assertJsonError(await api(f.gw.port, 'mga_' + 'x'.repeat(43), 'PUT', '/admin/v1/tenants/acme/policy', V1), 401);
  // unknown tenant (operator)
  assertJsonError(await api(f.gw.port, f.t.opToken, 'PUT', '/admin/v1/tenants/nosuch/policy', V1), 404);
  await assertUnchanged('after the refused PUTs');
});

test('`mcpgate policy apply` of an invalid document prints every problem and exits 1', async () => {
  const r = await policyCli(f.gw, ['apply', 'acme', await writeJsonFile({ version: 3, rules: [{ groups: [], connector: '*', allow: ['*'] }] })]);
  assert.equal(r.code, 1, `exit 1: ${r.stdout} ${r.stderr}`);
  const out = r.stdout + r.stderr;
  assert.match(out, /version/, out);
  assert.match(out, /rules\[0\]\.groups/, out);
  await assertUnchanged('after the CLI refusal');
  await client.close();
});

// A warning quotes names the tenant's documents or its IdP chose: printed
// as sent, an escape sequence in one drove the operator's terminal (the
// README review). Control characters print as '?'.
test('`mcpgate policy apply` prints warnings without their control characters', async () => {
  const evil = '\u001b]0;pwned\u0007\u001b[31mOps';
  const doc = { version: 1, default: 'block', rules: [{ ...V1.rules[0], approve: ['echo'], approvers: [evil] }] };
  const r = await policyCli(f.gw, ['apply', 'acme', await writeJsonFile(doc)]);
  assert.equal(r.code, 0, `exit 0: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, /warning: .*\?\]0;pwned\?\?\[31mOps/, r.stdout);
  assert.doesNotMatch(r.stdout + r.stderr, /[\u0000-\u0008\u000b-\u001f\u007f]/, JSON.stringify(r.stdout));
  await applyPolicy(f.t, V1);
});

test('approval fields: approvers resolve like groups (pending name warned, then bound); GET lists them; explain shows who decides', async () => {
  const leads = await g.create('Platform Leads', []);
  const doc = {
    version: 1, default: 'block',
    rules: [{ ...V1.rules[0], approvers: ['platform leads', 'Release Managers'], approval_timeout_s: 900, grant_minutes: 10 }],
  };
  const put = await applyPolicy(f.t, doc);
  assert.equal(put.warnings.length, 1, JSON.stringify(put));
  assert.match(put.warnings[0], /approver group "Release Managers" does not exist yet/, put.warnings[0]);
  let ex = await explainOk(f.t, 'alice@acme.com', 'get-tiny-image');
  assert.equal(ex.decision, 'approve', JSON.stringify(ex));
  assert.deepEqual(ex.approval, {
    rules: [0], approvers: [{ id: leads.id, displayName: 'Platform Leads' }], pending_approvers: ['Release Managers'],
    tenant_default: false, timeout_s: 900, grant_minutes: 10,
  }, JSON.stringify(ex.approval));
  assert.equal((await explainOk(f.t, 'alice@acme.com', 'echo')).approval, undefined, 'allow: no approval');
  // the pending name binds when the group is pushed
  const rm = await g.create('release managers', []);
  ex = await explainOk(f.t, 'alice@acme.com', 'get-tiny-image');
  assert.deepEqual(ex.approval.approvers.map((a) => a.id), [leads.id, rm.id], JSON.stringify(ex.approval));
  assert.deepEqual(ex.approval.pending_approvers, []);
  const p = await getPolicy(f.t);
  const ab = p.json.bindings.filter((b) => b.field === 'approvers');
  assert.deepEqual(ab.map((b) => [b.rule, b.as_written, b.group_id]), [[0, 'platform leads', leads.id], [0, 'Release Managers', rm.id]], p.body);
  assert.equal(p.json.bindings.find((b) => b.rule === 0).group_id, senior.id, 'the rule\'s groups come first');
  // no approvers: the tenant's approver_groups
  await applyPolicy(f.t, V1);
  ex = await explainOk(f.t, 'alice@acme.com', 'get-tiny-image');
  assert.equal(ex.approval.tenant_default, true, JSON.stringify(ex.approval));
  assert.equal(ex.approval.timeout_s, 300);
  assert.equal(ex.approval.grant_minutes, 0);
  assert.match(ex.approval.note, /approver_groups/);
});

test('explain names exactly the user asked for: a long userName is never cut to another user\'s', async () => {
  const short = `${'x'.repeat(295)}@a.co`; // 300 bytes: the old buffer held 299 of them
  const long = `${short}m`;
  const a = await f.t.scim.createUser(short.slice(0, 299));
  const b = await f.t.scim.createUser(long);
  assert.ok(a.id && b.id, `users created: ${JSON.stringify([a, b]).slice(0, 200)}`);
  const ex = await f.t.admin('GET', `/explain?user=${encodeURIComponent(long)}&connector=${CONNECTOR}&tool=echo`);
  assert.equal(ex.status, 200, ex.body);
  assert.equal(ex.json.user?.id, b.id, `explain is about the user asked for: ${ex.body.slice(0, 300)}`);
  assert.equal(ex.json.user.userName, long);
  const over = await f.t.admin('GET', `/explain?user=${'y'.repeat(1100)}&connector=${CONNECTOR}&tool=echo`);
  assert.equal(over.status, 400, over.body);
  assert.match(over.json.message, /at most 1024 bytes/);
});
