// Audit (issue 22): sign-ins and their failures (who, why), the employee
// page's writes and admin token creation/revocation are recorded in the
// tenant's chain; secrets (the new token, the session cookie) are not.
// Real parts: the gateway binary, oidc-provider standing in for Okta (the
// real sign-in), the scripted browser, the admin API.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';

let fx;
before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: {
      '00u-alice': { email: 'alice@acme.com', email_verified: true },
      '00u-mallory': { email: 'mallory@evil.example', email_verified: true },
    },
  });
});
after(async () => { await fx?.stop(); });

const records = async (q) => {
  const r = await fx.t.acme.admin('GET', `/audit${q}`);
  assert.equal(r.status, 200, r.body);
  return r.json.records;
};

test('a sign-in, a refused sign-in, a token made on the page and revoked by the admin are recorded', async () => {
  const alice = fx.t.acme.users['alice@acme.com'].id;
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  const m = fx.browser();
  const bad = await signIn(m, `${fx.base('acme')}/login`, { login: '00u-mallory' });
  assert.equal(bad.status, 403);
  await fx.t.acme.setSettings({ self_service_tokens: true });
  const { json: mj } = await me(b, fx, 'acme');
  const r = await b.post(`${fx.base('acme')}/api/tokens`, JSON.stringify({ name: 'ci', expires_days: 1 }),
    { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': mj.csrf } });
  assert.equal(r.status, 201, r.text);
  const made = JSON.parse(r.text);
  const del = await fx.t.acme.admin('DELETE', `/tokens/${made.id}`);
  assert.ok([200, 204].includes(del.status), del.body);

  let signins, employee, admin;
  await waitFor(async () => {
    signins = await records('?kind=signin');
    employee = await records('?kind=employee');
    admin = (await records('?kind=admin')).filter((x) => x.method === 'DELETE');
    return signins.length >= 2 && employee.length >= 1 && admin.length >= 1;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'the sign-in, page and admin records' });
  const ok = signins.find((x) => x.status === 303);
  assert.equal(ok.actor, `user:${alice}`);
  assert.equal(ok.path, '/t/acme/oauth/callback');
  const refused = signins.find((x) => x.status === 403);
  assert.ok(refused.note && refused.note.length > 3, JSON.stringify(refused));
  assert.equal(refused.actor, undefined, 'nobody signed in');
  const page = employee.find((x) => x.path === '/t/acme/api/tokens');
  assert.equal(page.method, 'POST');
  assert.equal(page.status, 201);
  assert.equal(page.actor, `user:${alice}`);
  assert.equal(admin[0].path, `/admin/v1/tenants/acme/tokens/${made.id}`);
  // the token itself is nowhere in the log
  const all = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export`,
    { headers: { authorization: `Bearer ${fx.op.token}` } }).then((x) => x.text());
  assert.equal(all.includes(made.token), false);
  assert.equal(all.includes(made.token.slice(4, 20)), false);
});
