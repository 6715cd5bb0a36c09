// MCP proxy: who may call (gateway tokens, deactivation), the gateway's own
// sessions (bound to a user, never the upstream's id), and credential
// injection (the client's Authorization never goes upstream).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { sleep } from './lib/gateway.mjs';
import {
  startProxyFixture, connectClient, toolText, rawSession, openStream, mcpPost, httpCall, mcpHeaders,
  initializeBody, show, UPSTREAM_SECRET,
} from './lib/mcp.mjs';

let f;
before(async () => { f = await startProxyFixture(); });

test('no or bad bearer → 401 with WWW-Authenticate: Bearer; nothing reaches the upstream', async () => {
  const before = f.rec.requests().length;
  const variants = [
    ['no Authorization', undefined],
    ['Basic', 'Basic ' + Buffer.from('alice:pw').toString('base64')],
    ['empty Bearer', 'Bearer '],
    ['unknown mgw_ token', 'Bearer mgw_' + crypto.randomBytes(32).toString('base64url')],
    ['operator token', `Bearer ${f.t.opToken}`],
    ['SCIM token', `Bearer ${f.t.tenant.scim.token}`],
    ['upstream secret', UPSTREAM_SECRET],
  ];
  for (const [what, authz] of variants) {
    const h = mcpHeaders({ extra: authz === undefined ? {} : { authorization: authz } });
    const r = await httpCall(f.url, { method: 'POST', headers: h, body: initializeBody() });
    assert.equal(r.status, 401, `POST initialize with ${what}: expected 401, got ${show(r)}`);
    assert.match(String(r.headers['www-authenticate'] ?? ''), /^Bearer\b/i, `${what}: WWW-Authenticate: Bearer (got ${r.headers['www-authenticate']})`);
  }
  for (const method of ['GET', 'DELETE']) {
    const r = await httpCall(f.url, { method, headers: { accept: 'text/event-stream', 'mcp-session-id': 'mcps_x' } });
    assert.equal(r.status, 401, `${method} without token: expected 401, got ${show(r)}`);
  }
  assert.equal(f.rec.requests().length, before, `nothing forwarded: ${JSON.stringify(f.rec.requests().slice(before).map((e) => e.body))}`);
});

test('unknown connector → 404', async () => {
  const before = f.rec.requests().length;
  const r = await mcpPost(f.t.mcpUrl('nosuch'), initializeBody(), { token: f.tokens.alice });
  assert.equal(r.status, 404, `initialize on /t/acme/mcp/nosuch: expected 404, got ${show(r)}`);
  assert.equal(f.rec.requests().length, before, 'nothing forwarded');
});

test('initialize → the gateway issues its own Mcp-Session-Id; the upstream id stays inside', async () => {
  const n = f.rec.requests().length;
  const s = await rawSession(f.url, f.tokens.alice);
  const upInit = f.rec.requests().slice(n).find((e) => e.json?.method === 'initialize');
  assert.ok(upInit, 'the initialize reached the upstream');
  const upSid = upInit.response?.headers?.['mcp-session-id'];
  assert.ok(upSid, `the upstream issued a session id: ${JSON.stringify(upInit.response?.headers)}`);
  assert.match(s.sessionId, /^[\x21-\x7e]+$/, 'session id is visible ASCII');
  assert.ok(s.sessionId.length >= 22, `session id long enough to be unguessable: ${s.sessionId}`);
  assert.notEqual(s.sessionId, upSid, 'the client gets the gateway\'s session id, not the upstream\'s');
  assert.ok(!JSON.stringify(s.init.headers).includes(upSid) && !s.init.body.includes(upSid), 'the upstream session id never reaches the client');
  assert.equal(s.result.serverInfo?.name, 'mcp-servers/everything', `initialize result passes through: ${s.init.body.slice(0, 300)}`);

  const m = f.rec.requests().length;
  const r = await s.request('tools/list');
  assert.equal(r.status, 200, `tools/list on the gateway session: ${show(r)}`);
  assert.ok(r.messages.some((x) => Array.isArray(x.result?.tools) && x.result.tools.some((tl) => tl.name === 'echo')), `tools/list result: ${show(r)}`);
  const fwd = f.rec.requests().slice(m).find((e) => e.json?.method === 'tools/list');
  assert.ok(fwd, 'tools/list forwarded');
  assert.equal(fwd.headers['mcp-session-id'], upSid, 'the gateway maps its session id to the upstream\'s');
  for (const e of f.rec.requests()) {
    assert.ok(!String(e.headers['mcp-session-id'] ?? '').includes(s.sessionId), 'the gateway session id never goes upstream');
  }
});

test('session ids: another user\'s → 404, missing → 400, unknown → 404, the upstream\'s → 404', async () => {
  const n = f.rec.requests().length;
  const s = await rawSession(f.url, f.tokens.alice);
  const upSid = f.rec.requests().slice(n).find((e) => e.json?.method === 'initialize')?.response?.headers?.['mcp-session-id'];
  const before = f.rec.requests().length;
  const call = (token, sessionId, id) => mcpPost(f.url, { jsonrpc: '2.0', id, method: 'tools/list' }, { token, sessionId, protocolVersion: s.protocolVersion });

  let r = await call(f.tokens.bob, s.sessionId, 9001);
  assert.equal(r.status, 404, `bob using alice's session id: expected 404, got ${show(r)}`);
  r = await httpCall(f.url, { method: 'GET', headers: { accept: 'text/event-stream', authorization: `Bearer ${f.tokens.bob}`, 'mcp-session-id': s.sessionId }, timeoutMs: 3000 });
  assert.equal(r.status, 404, `bob opening alice's GET stream: expected 404, got ${show(r)}`);
  r = await httpCall(f.url, { method: 'DELETE', headers: { authorization: `Bearer ${f.tokens.bob}`, 'mcp-session-id': s.sessionId } });
  assert.equal(r.status, 404, `bob deleting alice's session: expected 404, got ${show(r)}`);
  r = await call(f.tokens.alice, undefined, 9002);
  assert.equal(r.status, 400, `tools/list without Mcp-Session-Id: expected 400, got ${show(r)}`);
  r = await call(f.tokens.alice, 'mcps_' + crypto.randomBytes(32).toString('base64url'), 9003);
  assert.equal(r.status, 404, `unknown session id: expected 404, got ${show(r)}`);
  if (upSid) {
    r = await call(f.tokens.alice, upSid, 9004);
    assert.equal(r.status, 404, `the upstream's session id used at the gateway: expected 404, got ${show(r)}`);
  }
  const leaked = f.rec.requests().slice(before).filter((e) => [9001, 9002, 9003, 9004].includes(e.json?.id) || e.method !== 'POST');
  assert.deepEqual(leaked.map((e) => `${e.method} ${e.body}`), [], 'none of the refused requests reached the upstream');

  r = await call(f.tokens.alice, s.sessionId, 9005);
  assert.equal(r.status, 200, `alice's session still works: ${show(r)}`);
});

test('DELETE with the session id ends the session (then 404)', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  let r = await s.del();
  assert.ok(r.status >= 200 && r.status < 300, `DELETE session: expected 2xx, got ${show(r)}`);
  r = await s.request('tools/list');
  assert.equal(r.status, 404, `request on a deleted session: expected 404, got ${show(r)}`);
  r = await s.del();
  assert.equal(r.status, 404, `second DELETE: expected 404, got ${show(r)}`);
});

test('the client\'s Authorization never goes upstream; the connector credential is injected', async () => {
  f.rec.clear();
  const c = await connectClient(f.url, f.tokens.alice);
  await c.client.listTools();
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'creds' } })), 'Echo: creds');
  await c.close();
  const reqs = f.rec.requests();
  assert.ok(reqs.length >= 4, `initialize, initialized, (GET), tools/list, tools/call reached the upstream: ${reqs.length}`);
  for (const e of reqs) {
    assert.equal(e.headers.authorization, UPSTREAM_SECRET, `${e.method} ${e.body.slice(0, 60)}: upstream Authorization`);
    const all = JSON.stringify(e.rawHeaders) + e.body;
    assert.ok(!all.includes(f.tokens.alice) && !all.includes(f.tokens.alice.slice(4)), `the mgw_ token never reaches the upstream (${e.method} ${e.body.slice(0, 60)})`);
    assert.ok(!/mgw_/.test(all), 'no mgw_ token upstream');
  }

  // a connector without a credential: no Authorization header upstream at all
  const r = await f.t.putConnector('plain', { url: f.rec.url, description: 'plain', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  f.rec.clear();
  const c2 = await connectClient(f.t.mcpUrl('plain'), f.tokens.bob);
  assert.equal(toolText(await c2.client.callTool({ name: 'echo', arguments: { message: 'plain' } })), 'Echo: plain');
  await c2.close();
  assert.ok(f.rec.requests().length > 0);
  for (const e of f.rec.requests()) {
    assert.equal(e.headers.authorization, undefined, `no Authorization upstream for auth type none (${e.method} ${e.body.slice(0, 60)}): got ${e.headers.authorization}`);
  }
});

test('deactivation: 401 at once, live streams end; still 401 after reactivation; a new token works', async () => {
  const dave = await f.t.scim.createUser('dave@acme.com');
  const m = await f.t.mintToken('dave@acme.com');
  assert.equal(m.status, 201, m.body);
  const c = await connectClient(f.url, m.token, { reconnection: { initialReconnectionDelay: 100, maxReconnectionDelay: 100, reconnectionDelayGrowFactor: 1, maxRetries: 0 } });
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'before' } })), 'Echo: before');
  const s = await rawSession(f.url, m.token);
  const stream = await openStream(f.url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${m.token}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion } });
  assert.equal(stream.status, 200, `GET stream: ${stream.status} ${stream.raw()}`);
  // a long call in flight on a POST stream
  const long = await openStream(f.url, { method: 'POST', headers: mcpHeaders({ token: m.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }),
    body: { jsonrpc: '2.0', id: 42, method: 'tools/call', params: { name: 'trigger-long-running-operation', arguments: { duration: 10, steps: 10 }, _meta: { progressToken: 'dv' } } } });
  assert.equal(long.status, 200);
  await long.waitFor((x) => x.method === 'notifications/progress', 5000);
  assert.equal(stream.isEnded, false);

  await f.t.deactivate(dave.id);
  const ended = await Promise.race([Promise.all([stream.ended, long.ended]).then(() => true), sleep(1000).then(() => false)]);
  assert.ok(ended, `the user's GET stream (ended: ${stream.isEnded}) and in-flight POST stream (ended: ${long.isEnded}) end within 1 s of the SCIM reply`);

  let r = await s.request('tools/list');
  assert.equal(r.status, 401, `deactivated user's token: expected 401, got ${show(r)}`);
  await assert.rejects(c.client.callTool({ name: 'echo', arguments: { message: 'after' } }, undefined, { timeout: 5000 }), 'the SDK client is refused too');
  r = await mcpPost(f.url, initializeBody(), { token: m.token });
  assert.equal(r.status, 401, `deactivated user's initialize: ${show(r)}`);

  await f.t.reactivate(dave.id);
  r = await mcpPost(f.url, initializeBody(), { token: m.token });
  assert.equal(r.status, 401, `the old token after reactivation: expected 401 (tokens are deleted on deactivation), got ${show(r)}`);
  const l = await f.t.admin('GET', '/tokens');
  const list = Array.isArray(l.json) ? l.json : l.json?.tokens;
  assert.ok(Array.isArray(list) && !list.some((x) => x.id === m.id), `the old token is gone from the list: ${l.body}`);

  const m2 = await f.t.mintToken('dave@acme.com');
  assert.equal(m2.status, 201, m2.body);
  r = await mcpPost(f.url, { jsonrpc: '2.0', id: 5, method: 'tools/list' }, { token: m2.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  assert.equal(r.status, 404, `the pre-deactivation session with the new token: expected 404 (sessions die with the deactivation), got ${show(r)}`);
  const c2 = await connectClient(f.url, m2.token);
  assert.equal(toolText(await c2.client.callTool({ name: 'echo', arguments: { message: 'again' } })), 'Echo: again');
  await c2.close();
  await c.close();
});
