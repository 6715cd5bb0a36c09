// ci-variants: build-w1
// A tools/call that needs approval, in flight when its requester is signed
// out everywhere (Okta's Universal Logout: the person stays active), must
// not become a pending approval request after the cut. The opening checks
// (token, user) run when the request's headers are in; the call is decided
// and held once its body has arrived. The logout's transaction cancelled
// every pending request of hers and deleted her approval grants; a request
// stored afterwards is shown to reviewers, keeps an SSE stream open on a
// token that no longer exists, and, once a reviewer approves it, leaves a
// grant her next session takes: an approval asked before the cut, revived.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { connect, request, sleep, waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { logoutToken, postLogout, emailSubject } from './lib/gtr.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';
let fx;

after(async () => { if (fx) await fx.stop(); });

test('a held call whose body arrives after a Universal Logout of its requester stores no approval request; nothing passes unapproved afterwards', async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: BOB, externalId: '00u-bob' }] } },
    accounts: { '00u-alice': { email: ALICE }, '00u-bob': { email: BOB } },
  });
  const t = fx.t.acme;
  const up = await startCtlUpstream({ name: 'ca' });
  const g = await t.scim.createGroup('Reviewers', [t.users[BOB].id]);
  assert.ok(g.id, JSON.stringify(g));
  let r = await t.admin('PUT', '/connectors/ca', { url: up.url });
  assert.equal(r.status, 201, r.body);
  r = await t.admin('PUT', '/policy', {
    version: 1, default: 'block',
    rules: [{ groups: ['*'], connector: 'ca', allow: ['echo'], approve: ['slow'], approvers: ['Reviewers'], grant_minutes: 10, approval_timeout_s: 5 }],
  });
  assert.equal(r.status, 200, r.body);
  await t.setSettings({ self_service_tokens: true });
  // bob reviews with a token he made on his own page
  const b = fx.browser();
  assert.equal((await signIn(b, `${fx.base('acme')}/login`, { login: '00u-bob' })).status, 200);
  const { csrf } = JSON.parse((await b.get(`${fx.base('acme')}/api/me`, { follow: false })).text);
  const c = await b.post(`${fx.base('acme')}/api/tokens`, JSON.stringify({ name: 'reviewing', expires_days: 1 }), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
  });
  assert.equal(c.status, 201, c.text);
  const bobToken = JSON.parse(c.text).token;

  const mint = async () => {
    const m = await t.admin('POST', '/tokens', { user: ALICE, name: 'laptop', expires_in_days: 30 });
    assert.equal(m.status, 201, m.body);
    return m.json.token;
  };
  const alice = t.users[ALICE];
  const tok = await mint();
  const s = await rawSession(`${fx.gw.url}/t/acme/mcp/ca`, tok);

  // alice's call: the headers now, the body later
  const args = { ms: 1 };
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'slow', arguments: args } });
  const conn = await connect(fx.gw.port);
  await conn.write(`POST /t/acme/mcp/ca HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tok}\r\n` +
    'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n' +
    `Mcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
  await sleep(300); // the opening checks pass before the logout

  // Okta signs her out everywhere
  r = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/acme/oauth/global-logout` }), emailSubject(ALICE));
  assert.equal(r.status, 204, r.body);

  // the body arrives after the cut
  await conn.write(body);
  await waitFor(() => conn.closed || conn.text().includes('\r\n\r\n'), { timeoutMs: 8000, what: 'an answer to the late call' });
  await sleep(300);
  const head = conn.text().split('\r\n\r\n')[0];
  const pending = (await t.admin('GET', '/approvals?state=pending')).json.approvals.filter((a) => a.user === alice.id);

  // a reviewer approves whatever of hers is pending
  for (const p of pending) {
    const d = await request(fx.gw.port, {
      method: 'POST', path: `/t/acme/approvals/${p.id}/approve`,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bobToken}` }, body: '{}',
    });
    assert.equal(d.status, 200, d.body);
  }
  conn.destroy();
  // she is given a new token and calls again with the same arguments: that
  // needs an approval of its own (none comes: it times out)
  const s2 = await rawSession(`${fx.gw.url}/t/acme/mcp/ca`, await mint());
  const retry = await s2.request('tools/call', { name: 'slow', arguments: args }, { timeoutMs: 15000 });

  assert.equal(up.rpc('tools/call').length, 0,
    `a call passed under an approval asked before the logout: ${retry.body.slice(0, 300)}`);
  assert.deepEqual(pending.map((p) => ({ tool: p.tool, state: p.state })), [],
    `an approval request of alice's was stored after the logout (the late call's answer: ${JSON.stringify(head.slice(0, 200))})`);
  assert.doesNotMatch(head, /text\/event-stream/, 'no held stream is opened for a signed-out requester');
});
