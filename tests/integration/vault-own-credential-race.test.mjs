// An employee's own key replaced while an upstream session is being opened
// with the OLD one (vault-own-credential.test.mjs is the plain case): the
// save ends the person's upstream sessions of that connector in its write,
// but one being opened at that moment is not stored yet — it would be
// stored after the cut and go on under the new key (an upstream knows a
// session as whoever initialized it). So an upstream session is bound to
// the person's credential too (vault_upstream_bind: the connector's
// binding and the grant's, which every connect renews): the write that
// stores the aggregated endpoint's upstream session (agg_up.c job_usess)
// refuses one opened under a binding that is no longer the person's. (A
// connector-endpoint session opened then never reaches its client: the
// reply of the write that stores it waits at its loop's gate, which
// applies the save's fan-out first and ends the exchange.)
//
// The window is the time between the save's commit and the loop serving
// the opening applying its fan-out (which ends the person's live exchanges
// with the connector); MCPGATE_TEST_FANOUT_DELAY_MS widens it, as a loop
// busy with other work would (agg-usess-move.test.mjs does the same for an
// admin's move or rekey). The refused session is not left open at the
// upstream: it is ended with a DELETE carrying the old key that opened it
// (agg-usess-refused-end.test.mjs).
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { ALLOW_ALL_POLICY, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { connOnLoop } from './lib/workers.mjs';

/* One request on a raw keep-alive connection (its earlier responses: `seen`). */
async function rawReq(c, seen, method, path, headers, body) {
  const b = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const h = { host: '127.0.0.1', 'content-length': String(Buffer.byteLength(b)), ...headers };
  await c.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${b}`);
  const rs = await c.responses(seen + 1, 15000);
  return rs[seen];
}

/* A gateway on two loops (fan-out 1.5 s late on the loop that did not
 * commit), connector kk (each employee's own X-Key) at a controllable
 * upstream, alice with key "old-key" saved from her page. */
async function setup() {
  const fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
    gatewayArgs: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'],
    gatewayEnv: { MCPGATE_TEST_FANOUT_DELAY_MS: '1500' },
  });
  const ua = await startCtlUpstream({ name: 'ua' });
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  let r = await admin('PUT', '/connectors/kk', { url: ua.url, auth: { type: 'user_header', name: 'X-Key' } });
  assert.equal(r.status, 201, r.body);
  const m = await admin('POST', '/tokens', { user: 'alice@acme.com', name: 'laptop', expires_in_days: 30 });
  assert.equal(m.status, 201, m.body);
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200, s.text);
  const { json } = await me(b, fx, 'acme');
  const state = json.connections.find((c) => c.connector === 'kk')?.key_state;
  const body = (key) => JSON.stringify({ key, state });
  r = await b.request('PUT', `${fx.base('acme')}/api/connections/kk`, body('old-key'), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': json.csrf },
  });
  assert.equal(r.status, 204, r.text);
  const cookie = [...b.cookies(fx.gw.url)].map(([k, v]) => `${k}=${v}`).join('; ');
  // the save, on a connection loop 0 accepted: its reply waits for loop 1
  const ac = await connOnLoop(fx.gw, 0);
  const saveNewKey = () => rawReq(ac, 1, 'PUT', '/t/acme/api/connections/kk', {
    cookie, 'x-csrf-token': json.csrf, 'content-type': 'application/json',
  }, body('new-key'));
  // the save's commit shows as its fan-out, queued right after it
  const ends = async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_revocations_total', { trigger: 'user_credential' });
  return { fx, ua, token: m.json.token, ac, saveNewKey, ends };
}

test('an upstream session the old key opened is not stored for, nor used under, the new key', async () => {
  const { fx, ua, token, ac, saveNewKey, ends } = await setup();
  const mc = await connOnLoop(fx.gw, 1);
  try {
    const s = await rawSession(`${fx.base('acme')}/mcp`, token);
    // the gateway's notifications/initialized is held: the upstream session
    // is open there with the old key, not yet stored
    const release = ua.hold((j) => j.method === 'notifications/initialized');
    const first = rawReq(mc, 1, 'POST', '/t/acme/mcp', {
      authorization: `Bearer ${token}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json',
      'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion,
    }, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'kk__echo', arguments: { message: 'first' } } });
    const note = await ua.waitRequest((e) => e.json?.method === 'notifications/initialized');
    const oldSid = note.headers['mcp-session-id'];
    assert.ok(oldSid && note.headers['x-key'] === 'old-key', 'an upstream session opened with the old key');

    const before = await ends();
    const saving = saveNewKey();
    await waitFor(async () => (await ends()) > before, { what: 'the new key committed' });
    const mark = ua.requests().length;
    release();
    const fr = await first;
    const sv = await saving;
    assert.equal(sv.status, 204, `${sv.status} ${sv.body}`);

    const r = await s.request('tools/call', { name: 'kk__echo', arguments: { message: 'later' } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /ua:echo later/);
    // refused, it is ended at the upstream with the key that opened it: the
    // one request after the save that names it or carries the old key
    const isEnd = (e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === oldSid;
    // (fire and forget after the commit, INFLIGHT_MAX a loop: a CI pass's
    // load once kept it past 5 s — not a timing this test is about)
    await waitFor(() => ua.requests().slice(mark).some(isEnd), { what: `the DELETE ending ${oldSid}`, timeoutMs: 20000 });
    assert.deepEqual(ua.requests().slice(mark).filter(isEnd).map((e) => `${e.url} ${e.headers['x-key']}`), ['/mcp old-key'], 'ended once, as it was opened');
    const after = ua.requests().slice(mark).filter((e) => !isEnd(e));
    assert.deepEqual(after.filter((e) => e.headers['mcp-session-id'] === oldSid).map((e) => `${e.json?.method ?? e.method} ${e.headers['x-key']}`), [],
      `the upstream session ${oldSid} the old key opened was used after the save (first call: ${fr.status} ${fr.body})`);
    assert.deepEqual(after.filter((e) => e.headers['x-key'] !== 'new-key').map((e) => e.json?.method ?? e.method), [], 'nothing but its end after the save with the old key');
  } finally {
    mc.destroy();
    ac.destroy();
    await ua.stop();
    await fx.stop();
  }
});
