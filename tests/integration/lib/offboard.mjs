// tests/integration/lib/offboard.mjs — what the offboarding tests (issue 18,
// tests/integration/offboard-*.test.mjs) share: a gateway on two loops with
// the Okta stand-in (lib/login.mjs) and server-everything, and a person who
// holds one of every credential and connection the gateway gives out:
//
//   hold(fx, tenant, person) → {
//     browser      a browser signed in with Okta (the gateway's session cookie)
//     csrf         that session's CSRF token (from /api/me)
//     mgw          an employee token made on the employee page
//     oauth        {access, refresh} from the real authorization-code flow
//                  (DCR client, PKCE, the consent page), and
//     code         a second authorization code, issued and never exchanged
//     sid, pv      an aggregated MCP session (made with the mgw_ token)
//     live[]       per loop (0 and 1): an open GET stream on the aggregated
//                  endpoint and a slow tools/call in flight at server-everything
//                  (trigger-long-running-operation, progress on), one with the
//                  OAuth access token and one with the mgw_ token, each on a
//                  connection that loop accepted
//     idle[]       per loop: a keep-alive connection that served the person a
//                  tools/list and now sits idle
//   }
//
// Every live item records its X-Request-Id; afterEnd(fx, held, replyId)
// waits until each has ended and asserts that its access line (and so its
// end) was written before the line of the reply `replyId` — the gateway
// logs a request's access line right after its last byte is written, and
// the lines of both loops go to one stderr. refused(fx, tenant, held) and
// works(fx, tenant, held) check every credential afterwards.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after } from 'node:test';

import { waitFor, parseResponses, request } from './gateway.mjs';
import { startLoginFixture, signIn, me } from './login.mjs';
import { startEverything, rawSession, LATEST } from './mcp.mjs';
import { accessIndex, accessLine, connOnLoop } from './workers.mjs';

export { accessIndex, accessLine };

export const ALICE = { userName: 'alice@acme.com', sub: '00u-alice' };
export const BOB = { userName: 'bob@acme.com', sub: '00u-bob' };
export const CAROL = { userName: 'carol@acme.com', sub: '00u-carol' };
export const SLOW_TOOL = 'ev__trigger-long-running-operation';
const CALLBACK = 'http://127.0.0.1:45123/callback';

let up;
after(async () => { await up?.stop(); });

/**
 * A gateway (two loops) with the Okta stand-in; tenants {id: [person…]};
 * connector "ev" (server-everything), an allow-all policy, self-service
 * tokens on and a registered OAuth client in each. Returns the login
 * fixture plus clients[tenant] (the OAuth client id).
 */
export async function offboardFixture(tenants, { gatewayArgs = [], gatewayEnv = {} } = {}) {
  up ??= await startEverything();
  const accounts = {};
  const spec = {};
  for (const [id, people] of Object.entries(tenants)) {
    spec[id] = { users: people.map((p) => ({ userName: p.userName, externalId: p.sub })) };
    for (const p of people) accounts[p.sub] = { email: p.userName, email_verified: true };
  }
  const fx = await startLoginFixture({
    tenants: spec, accounts, gatewayEnv,
    gatewayArgs: ['--workers', '2', ...gatewayArgs],
  });
  fx.clients = {};
  for (const id of Object.keys(tenants)) await setUpTenant(fx, id);
  after(() => fx.stop());
  return fx;
}

/** Connector, policy, self-service tokens and an OAuth client for tenant id. */
export async function setUpTenant(fx, id) {
  const t = fx.t[id];
  let r = await t.admin('PUT', '/connectors/ev', { url: up.url, auth: { type: 'none' } });
  assert.equal(r.status, 201, `PUT connector: ${r.status} ${r.body}`);
  r = await t.admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
  assert.equal(r.status, 200, `PUT policy: ${r.status} ${r.body}`);
  await t.setSettings({ self_service_tokens: true });
  const reg = await fetch(`${fx.base(id)}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Offboarding test client', redirect_uris: ['http://127.0.0.1/callback'] }),
  });
  const body = await reg.text();
  assert.equal(reg.status, 201, body);
  fx.clients[id] = JSON.parse(body).client_id;
}

const b64u = (b) => Buffer.from(b).toString('base64url');

/** The authorization-code flow in browser b (signed in or not): the code and its verifier. */
export async function authorizeCode(fx, tenant, b, person) {
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  const q = new URLSearchParams({
    response_type: 'code', client_id: fx.clients[tenant], redirect_uri: CALLBACK, state: 'st',
    code_challenge: challenge, code_challenge_method: 'S256', resource: `${fx.gw.url}/t/${tenant}/mcp`,
  });
  const isCb = (u) => u.startsWith(CALLBACK);
  let res = await signIn(b, `${fx.base(tenant)}/oauth/authorize?${q}`, { login: person.sub, stopAtCallback: isCb });
  if (!res.stopped && res.status === 200 && /oauth\/consent/.test(res.text))
    res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  const code = res.stopped ? new URL(res.url).searchParams.get('code') : null;
  return { code, verifier, res };
}

/** POST /oauth/token with form fields. */
export async function tokenEndpoint(fx, tenant, form) {
  const r = await fetch(`${fx.base(tenant)}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString(),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json };
}

export const exchange = (fx, tenant, code, verifier) => tokenEndpoint(fx, tenant, {
  grant_type: 'authorization_code', code, redirect_uri: CALLBACK, client_id: fx.clients[tenant], code_verifier: verifier,
});
export const refresh = (fx, tenant, rt) => tokenEndpoint(fx, tenant, { grant_type: 'refresh_token', refresh_token: rt, client_id: fx.clients[tenant] });

/** An MCP POST's bytes (keep-alive). */
function mcpBytes(port, tenant, { token, sid, pv = LATEST, body, accept = 'application/json, text/event-stream' }) {
  const b = JSON.stringify(body);
  return `POST /t/${tenant}/mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\n` +
    `Content-Type: application/json\r\nAccept: ${accept}\r\n` + (sid ? `Mcp-Session-Id: ${sid}\r\n` : '') +
    `MCP-Protocol-Version: ${pv}\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
}

/**
 * A request written on a connection that loop `loop` accepted; resolves
 * once its response head is in (and, with `until`, once the received
 * bytes match it). The item: {conn, loop, what, requestId, status, from,
 * ended()} — ended: the server closed the connection or the response is
 * complete.
 */
async function onLoop(gw, loop, bytes, what, { until } = {}) {
  const conn = await connOnLoop(gw, loop);
  const from = conn.buffer.length;
  await conn.write(bytes);
  const rest = () => conn.buffer.subarray(from);
  const head = () => {
    const s = rest().toString('latin1');
    const i = s.indexOf('\r\n\r\n');
    return i < 0 ? null : s.slice(0, i);
  };
  await conn._until(() => head() !== null && (!until || until.test(rest().toString('latin1'))) || conn.closed, 10000);
  const h = head();
  assert.ok(h, `${what}: a response head on loop ${loop} (got ${JSON.stringify(rest().toString('latin1').slice(0, 300))})`);
  if (until) assert.match(rest().toString('latin1'), until, `${what}: ${rest().toString('latin1').slice(0, 600)}`);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(h)?.[1]);
  const requestId = /\r\nx-request-id: *([^\r\n]+)/i.exec(h)?.[1];
  assert.ok(requestId, `${what}: X-Request-Id in ${h}`);
  return {
    conn, loop, what, requestId, status, from,
    text: () => rest().toString('latin1'),
    ended: () => conn.closed || parseResponses(rest(), { eof: false }).responses.length > 0,
  };
}

/** One request on an existing keep-alive connection: its parsed response, or null when the server closed it. */
export async function again(item, bytes, timeoutMs = 5000) {
  const from = item.conn.buffer.length;
  await item.conn.write(bytes);
  await item.conn._until(() => item.conn.closed || parseResponses(item.conn.buffer.subarray(from)).responses.length > 0, timeoutMs);
  const [r] = parseResponses(item.conn.buffer.subarray(from), { eof: item.conn.closed }).responses;
  if (!r && !item.conn.closed) throw new Error(`${item.what}: no answer within ${timeoutMs} ms`);
  return r ?? null;
}

export const initBody = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: LATEST, capabilities: {}, clientInfo: { name: 'offboard', version: '1' } } };
const slowCall = (id) => ({
  jsonrpc: '2.0', id, method: 'tools/call',
  params: { name: SLOW_TOOL, arguments: { duration: 20, steps: 400 }, _meta: { progressToken: `p${id}` } },
});

/** Everything a person holds (see the header). */
export async function hold(fx, tenant, person) {
  const { gw } = fx;
  const base = fx.base(tenant);
  const browser = fx.browser();
  const s = await signIn(browser, `${base}/login`, { login: person.sub });
  assert.equal(s.status, 200, `sign-in of ${person.userName}: ${s.status} ${s.text?.slice(0, 300)}`);
  const m = await me(browser, fx, tenant);
  assert.equal(m.status, 200, m.text);
  const csrf = m.json.csrf;
  const made = await browser.post(`${base}/api/tokens`, JSON.stringify({ name: 'laptop', expires_days: 1 }), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
  });
  assert.equal(made.status, 201, `an employee token from the page: ${made.status} ${made.text}`);
  const mgw = JSON.parse(made.text).token;
  assert.match(mgw, /^mgw_/);
  const a = await authorizeCode(fx, tenant, browser, person);
  assert.ok(a.code, `authorize gave a code: ${a.res.status} ${a.res.url} ${a.res.text?.slice(0, 300)}`);
  const t = await exchange(fx, tenant, a.code, a.verifier);
  assert.equal(t.status, 200, t.text);
  const oauth = { access: t.json.access_token, refresh: t.json.refresh_token };
  const spare = await authorizeCode(fx, tenant, browser, person);
  assert.ok(spare.code, 'a second code');

  const url = `${gw.url}/t/${tenant}/mcp`;
  const sess = await rawSession(url, mgw);
  const live = [];
  const idle = [];
  for (const loop of [0, 1]) {
    const [streamTok, callTok] = loop === 0 ? [oauth.access, mgw] : [mgw, oauth.access];
    const ss = await rawSession(url, streamTok);
    const get = `GET /t/${tenant}/mcp HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nAuthorization: Bearer ${streamTok}\r\n` +
      `Accept: text/event-stream\r\nMcp-Session-Id: ${ss.sessionId}\r\nMCP-Protocol-Version: ${ss.protocolVersion}\r\n\r\n`;
    const st = await onLoop(gw, loop, get, `${person.userName}'s GET stream on loop ${loop}`);
    assert.equal(st.status, 200, st.text());
    live.push(st);
    const cs = await rawSession(url, callTok);
    const call = await onLoop(gw, loop, mcpBytes(gw.port, tenant, { token: callTok, sid: cs.sessionId, body: slowCall(10 + loop) }),
      `${person.userName}'s slow call on loop ${loop}`, { until: /notifications\/progress/ });
    assert.equal(call.status, 200, call.text());
    live.push(call);
    const ik = await onLoop(gw, loop, mcpBytes(gw.port, tenant, { token: callTok, sid: cs.sessionId, body: { jsonrpc: '2.0', id: 2, method: 'tools/list' } }),
      `${person.userName}'s keep-alive connection on loop ${loop}`);
    await waitFor(() => ik.ended(), { what: 'the tools/list answer' });
    assert.equal(ik.status, 200, ik.text());
    ik.token = callTok;
    ik.sid = cs.sessionId;
    idle.push(ik);
  }
  return { person, tenant, browser, csrf, mgw, oauth, code: spare, sid: sess.sessionId, pv: sess.protocolVersion, live, idle };
}

/**
 * The trigger's reply was `replyId`: every live item of `held` ended, on
 * the loop it was opened on, before that reply's access line.
 */
export async function endedBefore(fx, held, replyId) {
  const { gw } = fx;
  const at = await waitFor(() => { const i = accessIndex(gw, replyId); return i >= 0 ? i : false; }, { what: 'the reply\'s access line' });
  await waitFor(() => held.live.every((x) => x.ended()), { timeoutMs: 5000, what: `${held.person.userName}'s streams and calls to end` });
  await waitFor(() => held.live.every((x) => accessIndex(gw, x.requestId) >= 0), { what: 'their access lines' });
  for (const x of held.live) {
    assert.equal(accessLine(gw, x.requestId).loop, x.loop, `${x.what}: served by loop ${x.loop}`);
    assert.ok(accessIndex(gw, x.requestId) < at, `${x.what} ended before the reply was sent`);
  }
  // the slow calls never completed: their upstream work was cut
  for (const x of held.live) assert.doesNotMatch(x.text(), /"result"/, `${x.what}: no result after the cut`);
}

/** Every live item of `held` is still open (checked after the trigger's reply). */
export function stillOpen(held) {
  for (const x of held.live) assert.equal(x.ended(), false, `${x.what} stays open`);
}

const mcpInit = (fx, tenant, token, sid) => request(fx.gw.port, {
  method: 'POST', path: `/t/${tenant}/mcp`, body: JSON.stringify(sid ? { jsonrpc: '2.0', id: 3, method: 'tools/list' } : initBody),
  headers: {
    authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': LATEST, ...(sid ? { 'mcp-session-id': sid } : {}),
  },
});

/**
 * Every credential of `held` is refused: access and employee tokens 401
 * on fresh connections, and the idle keep-alive connections closed; the refresh token
 * and the unexchanged code invalid_grant; the browser signed out (and a
 * token made with its CSRF token refused); the MCP session unusable.
 */
export async function refused(fx, held, tenant = held.tenant) {
  const who = held.person.userName;
  for (const [name, tok] of [['OAuth access token', held.oauth.access], ['employee token', held.mgw]]) {
    const r = await mcpInit(fx, tenant, tok);
    assert.equal(r.status, 401, `${who}'s ${name}: ${r.status} ${r.body}`);
  }
  const s = await mcpInit(fx, tenant, held.mgw, held.sid);
  assert.equal(s.status, 401, `${who}'s old MCP session: ${s.status} ${s.body}`);
  for (const ik of held.idle) {
    // the gateway closed it (revoke.c rule 8), not only refuses its next request
    await waitFor(() => ik.conn.closed, { what: `${who}'s idle keep-alive connection on loop ${ik.loop} to be closed` });
    const r = await again(ik, mcpBytes(fx.gw.port, tenant, { token: ik.token, sid: ik.sid, body: { jsonrpc: '2.0', id: 4, method: 'tools/list' } }));
    assert.equal(r, null, `${who}'s idle keep-alive connection on loop ${ik.loop}: ${r?.status} ${r?.body}`);
  }
  const rt = await refresh(fx, tenant, held.oauth.refresh);
  assert.equal(rt.status, 400, `${who}'s refresh token: ${rt.status} ${rt.text}`);
  assert.equal(rt.json?.error, 'invalid_grant', rt.text);
  const code = await exchange(fx, tenant, held.code.code, held.code.verifier);
  assert.equal(code.status, 400, `${who}'s unexchanged code: ${code.status} ${code.text}`);
  assert.equal(code.json?.error, 'invalid_grant', code.text);
  const m = await me(held.browser, fx, tenant);
  assert.ok(m.status === 401 || m.status === 404, `${who}'s browser session: ${m.status} ${m.text}`);
  const made = await held.browser.post(`${fx.base(tenant)}/api/tokens`, JSON.stringify({ name: 'after', expires_days: 1 }), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': held.csrf },
  });
  assert.ok(made.status === 401 || made.status === 404, `a token made with ${who}'s old session: ${made.status} ${made.text}`);
}

/** Every credential of `held` still works (someone the trigger was not about). */
export async function works(fx, held) {
  const { tenant } = held;
  const who = held.person.userName;
  stillOpen(held);
  for (const [name, tok] of [['OAuth access token', held.oauth.access], ['employee token', held.mgw]]) {
    const r = await mcpInit(fx, tenant, tok);
    assert.equal(r.status, 200, `${who}'s ${name}: ${r.status} ${r.body}`);
  }
  const s = await mcpInit(fx, tenant, held.mgw, held.sid);
  assert.equal(s.status, 200, `${who}'s MCP session: ${s.status} ${s.body}`);
  for (const ik of held.idle) {
    const r = await again(ik, mcpBytes(fx.gw.port, tenant, { token: ik.token, sid: ik.sid, body: { jsonrpc: '2.0', id: 4, method: 'tools/list' } }));
    assert.equal(r?.status, 200, `${who}'s keep-alive connection on loop ${ik.loop}: ${r?.status} ${r?.body}`);
  }
  assert.equal((await me(held.browser, fx, tenant)).status, 200, `${who}'s browser session`);
  const rt = await refresh(fx, tenant, held.oauth.refresh);
  assert.equal(rt.status, 200, `${who}'s refresh token: ${rt.text}`);
  held.oauth = { access: rt.json.access_token, refresh: rt.json.refresh_token };
  stillOpen(held);
}

/** Ends what `held` still has open (the test's own cleanup). */
export function release(held) {
  for (const x of [...held.live, ...held.idle]) x.conn.destroy();
}

/** A fresh sign-in works: the page, a new OAuth grant used on the aggregated endpoint. */
export async function freshSignInWorks(fx, tenant, person) {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base(tenant)}/login`, { login: person.sub });
  assert.equal(s.status, 200, `a fresh sign-in: ${s.status} ${s.text?.slice(0, 300)}`);
  assert.equal((await me(b, fx, tenant)).status, 200, 'the page after a fresh sign-in');
  const a = await authorizeCode(fx, tenant, b, person);
  assert.ok(a.code, 'a fresh authorization');
  const t = await exchange(fx, tenant, a.code, a.verifier);
  assert.equal(t.status, 200, t.text);
  const r = await mcpInit(fx, tenant, t.json.access_token);
  assert.equal(r.status, 200, `a fresh grant on the aggregated endpoint: ${r.status} ${r.body}`);
  return { browser: b, access: t.json.access_token };
}

export { mcpInit };

/**
 * One trigger, end to end: Alice and Bob (tenant acme) hold one of
 * everything; send(t, aliceId) is the trigger (a SCIM call of t.scim), which
 * must answer `status`; then her live items ended before that reply, every
 * credential of hers is refused, Bob keeps his. Returns {fx, alice, bob}
 * (Bob's connections still open) for more checks.
 */
export async function offboardCase(send, status = 200) {
  const fx = await offboardFixture({ acme: [ALICE, BOB] });
  const t = fx.t.acme;
  const alice = await hold(fx, 'acme', ALICE);
  const bob = await hold(fx, 'acme', BOB);
  const r = await send(t, t.users[ALICE.userName].id);
  assert.equal(r.status, status, r.body);
  if (status === 200) assert.equal(r.json.active, false, `stored as a boolean: ${r.body}`);
  await endedBefore(fx, alice, r.headers['x-request-id']);
  await refused(fx, alice);
  release(alice);
  await works(fx, bob);
  return { fx, alice, bob };
}
