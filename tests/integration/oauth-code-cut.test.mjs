// An authorization code is a grant about to be issued: it must not be
// written after the person's cut. The authorize step reads the browser
// session on the loop, then the code is written by a job on the store
// writer. A cut queued on the writer before that job — here an admin's
// revoke then restore (the person is active again when the job runs, and
// the revoke deleted the session) — used to leave the job nothing to
// notice: it checked only that the user was active, and a code (then
// tokens) came out of a session that no longer existed. The job now reads
// the browser session again in its own transaction.
//
// The writer is held busy by another tenant's large policy PUT (~0.2 s on
// the writer) so that the revoke and the restore are queued, not yet
// committed, when the authorize request reads the session.
// ci-variants: build-w1 (its window is timed by a policy PUT on the writer: under ASan with two loops the revoke can miss it)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { sleep, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, registerClient } from './lib/login.mjs';

let fx, clientId;
const CB = 'http://127.0.0.1:45123/callback';
const isCb = (u) => u.startsWith('http://127.0.0.1:45123/');
const b64u = (x) => Buffer.from(x).toString('base64url');

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] },
      other: { users: [] },
    },
    accounts: { '00u-alice': { email: 'alice@acme.com' } },
  });
  clientId = await registerClient(fx, 'acme', 'Cut client');
});
after(async () => { if (fx) await fx.stop(); });

const authorizeUrl = () => {
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  return `${fx.base('acme')}/oauth/authorize?${new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: CB, state: 'st', code_challenge: challenge,
    code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`,
  })}`;
};

test('a code is not issued from a session a cut queued before it deleted (revoke then restore)', async () => {
  const b = fx.browser();
  // signed in, and the client allowed once: the next authorize goes straight to the code
  let res = await signIn(b, authorizeUrl(), { login: '00u-alice', stopAtCallback: isCb });
  if (!res.stopped && /oauth\/consent/.test(res.text ?? '')) res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.equal(res.stopped, true, `first authorize: ${res.status} ${res.text?.slice(0, 200)}`);
  assert.match(new URL(res.url).searchParams.get('code') ?? '', /^mgc_/);
  const alice = fx.t.acme.users['alice@acme.com'].id;

  const big = {
    version: 1, default: 'block',
    rules: Array.from({ length: 10000 }, (_, r) => ({ groups: [`g${r}`], connector: '*', allow: ['*'] })),
  };
  const put = fx.t.other.admin('PUT', '/policy', big); // the writer is busy with it for a while
  await sleep(60); // parsed and validated on the loop, its job on the writer
  const revoke = fx.t.acme.admin('POST', `/users/${alice}/revoke`, { reason: 'test' });
  await sleep(10);
  const restore = fx.t.acme.admin('POST', `/users/${alice}/restore`, {});
  // both queued behind the PUT before the authorize reads the session: with
  // two loops under load a fixed pause let the code job reach the writer
  // first (CI, ASan), and the code was then rightly issued before the cut
  await waitFor(async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_store_queue_depth') >= 2,
    { timeoutMs: 5000, intervalMs: 5, what: 'the revoke and the restore queued behind the policy PUT' });
  // the session is still there for this read: the revoke waits on the writer
  const late = await b.get(authorizeUrl(), { stopAt: isCb });
  const [p, rv, rs] = await Promise.all([put, revoke, restore]);
  assert.equal(p.status, 200, p.body?.slice(0, 200));
  assert.equal(rv.status, 200, rv.body);
  assert.equal(rs.status, 200, rs.body);
  assert.equal(late.stopped, true, `the authorize read the session before the revoke committed (else the window was missed): ${late.status} ${late.url}`);
  const q = new URL(late.url).searchParams;
  assert.equal(q.get('code'), null, `no code after the cut: ${late.url}`);
  assert.equal(q.get('error'), 'access_denied', late.url);
  assert.match(q.get('error_description') ?? '', /signed out meanwhile/);
  // restored: a new sign-in works
  const b2 = fx.browser();
  let again = await signIn(b2, authorizeUrl(), { login: '00u-alice', stopAtCallback: isCb });
  if (!again.stopped && /oauth\/consent/.test(again.text ?? '')) again = await b2.submitForm(again, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.match(new URL(again.url).searchParams.get('code') ?? '', /^mgc_/, 'a new sign-in gets a code');
});
