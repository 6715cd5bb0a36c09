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
// The writer is held (MCPGATE_TEST_WRITER_PAUSE_FILE) so that the revoke
// and the restore are queued, not yet committed, when the authorize request
// reads the session, and its code job is queued after them
// (mcpgate_store_queue_depth says when each is in). It was timed by another
// tenant's large policy PUT keeping the writer busy, which under ASan with
// two loops could miss the window.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, registerClient } from './lib/login.mjs';

let fx, clientId;
const pause = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pause-')), 'hold');
const queued = async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_store_queue_depth');
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
    gatewayEnv: { MCPGATE_TEST_WRITER_PAUSE_FILE: pause },
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

  fs.writeFileSync(pause, ''); // the writer takes no job until it goes
  const revoke = fx.t.acme.admin('POST', `/users/${alice}/revoke`, { reason: 'test' });
  await waitFor(async () => (await queued()) >= 1, { what: 'the revoke queued' });
  const restore = fx.t.acme.admin('POST', `/users/${alice}/restore`, {});
  await waitFor(async () => (await queued()) >= 2, { what: 'the restore queued after it' });
  // the session is still there for this read: the revoke waits on the writer
  const lateP = b.get(authorizeUrl(), { stopAt: isCb });
  await waitFor(async () => (await queued()) >= 3, { what: 'the code job queued after them' });
  fs.rmSync(pause);
  const [late, rv, rs] = await Promise.all([lateP, revoke, restore]);
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

// The same window for a consent: an authorize that goes straight to the code
// read the person's consent on the loop; a disconnect of every application
// (DELETE …/users/{id}/grants, which withdraws the consents) queued before
// the code job used to leave the job nothing to notice — consent_use took a
// missing consent for none used, and the application the person had just
// disconnected got a code without asking. The job now reads the consent
// again. Found by a review of the OAuth server.
test('a code is not issued without asking when the consent was withdrawn meanwhile', async () => {
  const b = fx.browser();
  let res = await signIn(b, authorizeUrl(), { login: '00u-alice', stopAtCallback: isCb });
  if (!res.stopped && /oauth\/consent/.test(res.text ?? '')) res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.equal(res.stopped, true, `first authorize: ${res.status} ${res.text?.slice(0, 200)}`);
  // allowed: the next authorize asks nothing
  const again = await b.get(authorizeUrl(), { stopAt: isCb });
  assert.match(new URL(again.url).searchParams.get('code') ?? '', /^mgc_/, 'the consent is relied on');
  const alice = fx.t.acme.users['alice@acme.com'].id;

  fs.writeFileSync(pause, '');
  const q0 = await queued();
  const disconnect = fx.t.acme.admin('DELETE', `/users/${alice}/grants`);
  await waitFor(async () => (await queued()) >= q0 + 1, { what: 'the disconnect queued' });
  const lateP = b.get(authorizeUrl(), { stopAt: isCb });
  await waitFor(async () => (await queued()) >= q0 + 2, { what: 'the code job queued after it' });
  fs.rmSync(pause);
  const [late, dc] = await Promise.all([lateP, disconnect]);
  assert.equal(dc.status, 200, dc.body);
  assert.equal(late.stopped, true, `the authorize read the consent before the disconnect committed: ${late.status} ${late.url}`);
  const q = new URL(late.url).searchParams;
  assert.equal(q.get('code'), null, `no code without asking after the consent went: ${late.url}`);
  assert.equal(q.get('error'), 'access_denied', late.url);
  assert.match(q.get('error_description') ?? '', /disconnected meanwhile/);
  // asked again from then on
  const next = await b.get(authorizeUrl(), { stopAt: isCb });
  assert.ok(!next.stopped && /oauth\/consent|Allow/.test(next.text ?? ''), `the consent page again: ${next.status} ${next.url}`);
});
