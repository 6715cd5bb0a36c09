// ci-variants: build-w1 build-asan-w2
// A group PUT's (or POST's) reply lists every member (RFC 7644 §3.5.1: a
// PUT returns the whole resource; Okta's wizard apps PUT groups), and that
// listing is not rendered in the write's job on the store writer, which
// every tenant's deactivations and admin writes wait for. Found by
// measurement: a PUT of 100,000 members held the writer ~0.6 s rendering
// its reply (10,000: ~80 ms). The job now renders the group without them;
// after the commit they are listed in a read (on libuv's pool past the
// loop's budget) and used while the group's version is still the one the
// write made — otherwise the reply is the newer version whole, as a GET.
//
// MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE holds that listing on its worker
// thread while the file exists (and makes "<file>.held"). Before the fix
// the members were rendered inside the writer job and never reached the
// hook: the PUT was answered while its listing was to be held.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startScimGateway, URN } from './lib/scim.mjs';
import { waitFor, makeTempDir } from './lib/gateway.mjs';
import { adminClient } from './lib/admin.mjs';
import { rawSession, mcpPost, initializeBody } from './lib/mcp.mjs';

const N = 2600; // past the loop's budget (SCIM_LOOP_BUDGET, 2,500): listed on the pool
let gw, acme, opToken, dir, pause, users = [], group;
before(async () => {
  dir = await makeTempDir('mcpgate-members-');
  pause = path.join(dir, 'pause');
  ({ gw, opToken, tenants: { acme } } = await startScimGateway({ tenants: ['acme'], env: { MCPGATE_TEST_SCIM_REPLY_PAUSE_FILE: pause } }));
  for (let i = 0; i < N; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, k) => acme.c.createUser(`m${i + k}@members.test`)));
    users.push(...batch);
  }
  group = await acme.c.createGroup('Everyone', []);
});
after(async () => {
  fs.rmSync(pause, { force: true });
  await gw?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const held = () => fs.existsSync(pause + '.held');

/* Starts the PUT with its listing held; resolves once it is held. */
async function heldPut(body) {
  fs.writeFileSync(pause, '');
  const st = { answered: null };
  st.reply = acme.c.put(`/Groups/${group.id}`, body).then((r) => { st.answered = r; return r; });
  await waitFor(async () => held() || st.answered !== null, { timeoutMs: 20000, what: 'the reply\'s members listed (or answered)' });
  assert.equal(st.answered, null, `the PUT was answered while its members' listing was to be held (rendered in the writer job): ${st.answered?.status}`);
  return st;
}

async function release(st) {
  fs.rmSync(pause, { force: true });
  const r = await st.reply;
  fs.rmSync(pause + '.held', { force: true });
  return r;
}

test('the writer is free while a large group PUT\'s members are listed: a deactivation cuts its user first', async () => {
  const victim = await acme.c.createUser('victim@members.test');
  const op = adminClient(gw.port, opToken);
  const m = await op.post('/admin/v1/tenants/acme/tokens', { user: 'victim@members.test', name: 'laptop', expires_in_days: 30 });
  assert.equal(m.status, 201, m.body);
  const mcp = `${gw.url}/t/acme/mcp`;
  const s = await rawSession(mcp, m.json.token);

  const body = { schemas: [URN.GROUP], displayName: 'Everyone', members: users.map((u) => ({ value: u.id, display: u.userName })) };
  const st = await heldPut(body);
  try {
    const off = await acme.c.patchOps(`/Users/${victim.id}`, [{ op: 'replace', value: { active: false } }]);
    assert.equal(off.status, 200, off.body);
    assert.equal(off.json.active, false);
    // cut before the SCIM reply: the session and the token are gone
    const r = await s.request('tools/list');
    assert.notEqual(r.status, 200, `the deactivated user's session still answers: ${r.body}`);
    const again = await mcpPost(mcp, initializeBody(1), { token: m.json.token });
    assert.equal(again.status, 401, again.body);
    assert.equal(st.answered, null, 'the group PUT waits for its members\' listing');
  } finally {
    fs.rmSync(pause, { force: true });
  }
  const r = await release(st);
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.equal(r.json.members.length, N);
  // what a GET answers, byte for byte (the version is the one the PUT made)
  const g = await acme.c.get(`/Groups/${group.id}`);
  assert.equal(g.status, 200);
  assert.equal(r.headers.etag, g.headers.etag);
  assert.equal(r.body, g.body);
  assert.deepEqual(Object.keys(r.json), ['schemas', 'id', 'displayName', 'members', 'meta']);
});

test('a group changed between the PUT\'s commit and its members\' listing: the reply is the newer version, whole', async () => {
  const body = { schemas: [URN.GROUP], displayName: 'Most', members: users.slice(0, N - 10).map((u) => ({ value: u.id })) };
  const st = await heldPut(body);
  let p;
  try {
    p = await acme.c.patchOps(`/Groups/${group.id}`, [
      { op: 'replace', path: 'displayName', value: 'Most, renamed' },
      { op: 'add', path: 'members', value: [{ value: users[N - 1].id }] },
    ]);
    assert.ok(p.status === 200 || p.status === 204, p.body);
    assert.equal(st.answered, null);
  } finally {
    fs.rmSync(pause, { force: true });
  }
  const r = await release(st);
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.equal(r.json.displayName, 'Most, renamed');
  assert.equal(r.json.members.length, N - 9);
  assert.ok(r.json.members.some((x) => x.value === users[N - 1].id));
  const g = await acme.c.get(`/Groups/${group.id}`);
  assert.equal(r.headers.etag, g.headers.etag);
  assert.equal(r.json.meta.version, g.json.meta.version);
  assert.equal(r.body, g.body);
});

test('a POST of a group with many members lists them after the commit too', async () => {
  fs.writeFileSync(pause, '');
  const st = { answered: null };
  st.reply = acme.c.post('/Groups', { schemas: [URN.GROUP], displayName: 'Posted', members: users.map((u) => ({ value: u.id })) })
    .then((r) => { st.answered = r; return r; });
  await waitFor(async () => held() || st.answered !== null, { timeoutMs: 20000, what: 'the POST\'s members listed (or answered)' });
  assert.equal(st.answered, null, 'the POST was answered while its members\' listing was to be held');
  const r = await release(st);
  assert.equal(r.status, 201, r.body.slice(0, 300));
  assert.equal(r.json.members.length, N);
  const g = await acme.c.get(`/Groups/${r.json.id}`);
  assert.equal(r.body, g.body);
  assert.equal(r.headers.location, `${r.json.meta.location}`);
});
