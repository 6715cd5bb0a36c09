// Found by review: the reviewers' list decided "approver" from the current
// policy's approver groups only, while a request whose rule no longer asks
// approval is still decided by its own approver groups (policy/approval.c
// reviewer_may): such a reviewer got 403 not_an_approver on the list (the
// page stopped refreshing) while the decision itself was accepted, and the
// held call could expire unseen.
// ci-variants: build-w1
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { startEverything, startRecorder, connectClient, UPSTREAM_SECRET } from './lib/mcp.mjs';

let fx, up, rec, client;
after(async () => {
  await client?.client?.close().catch(() => {});
  await rec?.stop?.().catch(() => {});
  await up?.stop?.().catch(() => {});
  await fx?.stop();
});

test('a reviewer who can still decide a pending request sees it on the reviewers\' list', async () => {
  const USERS = ['alice', 'bob'];
  fx = await startLoginFixture({
    tenants: { acme: { users: USERS.map((u) => ({ userName: `${u}@acme.com`, externalId: `00u-${u}` })) } },
    accounts: Object.fromEntries(USERS.map((u) => [`00u-${u}`, { email: `${u}@acme.com`, email_verified: true }])),
    gatewayArgs: ['--approval-progress-interval-ms', '200'],
  });
  up = await startEverything();
  rec = await startRecorder(up.url);
  const { scim, users, admin } = fx.t.acme;
  const id = (u) => users[`${u}@acme.com`].id;
  await scim.createGroup('Engineers', USERS.map(id));
  await scim.createGroup('DB Admins', [id('bob')]);
  let r = await admin('PUT', '/connectors/everything', { url: rec.url, auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 120 }],
  });
  assert.equal(r.status, 200, r.body);
  const m = await admin('POST', '/tokens', { user: 'alice@acme.com', name: 'laptop', expires_in_days: 1 });
  assert.equal(m.status, 201, m.body);
  client = await connectClient(`${fx.gw.url}/t/acme/mcp/everything`, m.json.token);
  const call = client.client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }, undefined, { timeout: 30000, resetTimeoutOnProgress: true })
    .then((result) => ({ result }), (error) => ({ error }));
  let pending;
  await waitFor(async () => {
    const l = await admin('GET', '/approvals?state=pending');
    pending = l.json.approvals.find((a) => a.tool === 'get-sum');
    return !!pending;
  }, { timeoutMs: 8000, what: 'the pending request' });

  // the admin drops the approve rule: get-sum is now simply allowed; the
  // pending request stays, decided by its own approvers (DB Admins)
  r = await admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['Engineers'], connector: 'everything', allow: ['echo', 'get-sum'] }] });
  assert.equal(r.status, 200, r.body);

  const b = fx.browser();
  await signIn(b, `${fx.base('acme')}/login`, { login: '00u-bob' });
  const { json: mj } = await me(b, fx, 'acme');
  const list = await b.get(`${fx.base('acme')}/api/approvals`, { follow: false });
  // Bob decides it, with his browser session: the gateway accepts him as an approver of it
  const d = await b.post(`${fx.base('acme')}/approvals/${pending.id}/approve`, '{}', {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': mj.csrf },
  });
  assert.equal(d.status, 200, `bob may decide the request: ${d.status} ${d.text}`);
  await call;
  assert.equal(list.status, 200, `the reviewers' list of someone who could decide a pending request: ${list.status} ${list.text}`);
  assert.ok(JSON.parse(list.text).pending.some((x) => x.id === pending.id), 'the request he could decide is listed');
});
