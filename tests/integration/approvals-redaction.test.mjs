// What reviewers (and the webhook) see of a held call's arguments, found
// by review: the approval views carried args_sha256, the hash of the
// arguments as sent (the grant's key), from which a reviewer recovered a
// redacted 4-digit secret offline; and the tenant's audit_redact patterns
// were not applied to them (only the built-in ones).
// ci-variants: build-w1
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { connectClient } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, toolText } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';

let f, g, admins, c;
const SUM = 'get-sum';

before(async () => {
  f = await startPolicyFixture({
    users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'],
    gatewayArgs: ['--approval-progress-interval-ms', '200'],
  });
  g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id, f.users.carol.id]);
  admins = await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', approve: [SUM, 'get-env'], approvers: ['DB Admins'], approval_timeout_s: 60 },
    ],
  });
  c = await connectClient(f.url, f.tokens.alice);
});

function heldCall(client, name, args) {
  return client.client.callTool({ name, arguments: args }, undefined, { timeout: 20000, resetTimeoutOnProgress: true })
    .then((result) => ({ result }), (error) => ({ error }));
}

async function pendingFor(userId, tool, pred) {
  let found;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    found = r.json.approvals.find((a) => a.user === userId && a.tool === tool && pred(a));
    return !!found;
  }, { timeoutMs: 8000, what: `a pending request for ${tool}` });
  return found;
}

const asUser = (method, path, token, body) => request(f.gw.port, {
  method, path, headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
  body: body === undefined ? undefined : JSON.stringify(body),
});

test('a reviewer cannot recover a masked value: no hash of the arguments as sent is shown', async () => {
  const secret = String(4821);
  const call = heldCall(c, 'get-env', { password: secret });
  const req = await pendingFor(f.users.alice.id, 'get-env', (a) => a.arguments?.password === '[redacted]');
  const r = await asUser('GET', `/t/acme/approvals/${req.id}`, f.tokens.bob);
  assert.equal(r.status, 200, r.body);
  const v = JSON.parse(r.body);
  assert.equal(v.arguments.password, '[redacted]');
  assert.equal(v.args_sha256, undefined, 'the reviewer view carries no hash of the arguments as sent');
  const adm = await f.t.admin('GET', `/approvals/${req.id}`);
  assert.equal(adm.status, 200, adm.body);
  assert.equal(adm.json.args_sha256, undefined, 'nor does the admin view');
  let recovered = null;
  for (let i = 0; i < 10000 && v.args_sha256 && !recovered; i++) {
    const guess = String(i).padStart(4, '0');
    if (createHash('sha256').update(JSON.stringify({ password: guess })).digest('hex') === v.args_sha256) recovered = guess;
  }
  await f.t.admin('POST', `/approvals/${req.id}/cancel`);
  await call;
  assert.equal(recovered, null, `the reviewer recovered the redacted password ${recovered} from args_sha256`);
});

test("the tenant's audit_redact patterns mask what reviewers see, as in the audit log", async () => {
  const p = await f.t.admin('PATCH', '', { settings: { audit_redact: 'cardNumber' } });
  assert.equal(p.status, 200, p.body);
  const call = heldCall(c, 'get-env', { cardNumber: '4111111111111111' });
  const req = await pendingFor(f.users.alice.id, 'get-env', (a) => a.arguments && 'cardNumber' in a.arguments);
  const r = await asUser('GET', `/t/acme/approvals/${req.id}`, f.tokens.bob);
  await f.t.admin('POST', `/approvals/${req.id}/cancel`);
  await call;
  assert.equal(JSON.parse(r.body).arguments.cardNumber, '[redacted]', `reviewer sees ${r.body}`);
});
