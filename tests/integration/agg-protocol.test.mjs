// Protocol edges of the aggregated endpoint /t/{tenant}/mcp, raw Streamable
// HTTP: authentication, Accept, session ids, parse errors, batches,
// server/discover, tasks/* and unknown methods, the empty prompt/resource
// lists, protocol version negotiation.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';

import { startAggFixture, openStreams } from './lib/agg.mjs';
import {
  rawSession, setupTenant, mcpPost, httpCall, mcpHeaders, initializeBody, openStream, assertRpcError, show, LATEST, waitFor,
} from './lib/mcp.mjs';

let f;
before(async () => { f = await startAggFixture(); });

const rpc = (id, method, params) => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

function assert401(r, what) {
  assert.equal(r.status, 401, `${what}: ${show(r)}`);
  assert.match(String(r.headers['www-authenticate'] ?? ''), /^Bearer\b/, `${what}: WWW-Authenticate: Bearer`);
}

test('401 without a token, with a bad, foreign-tenant or non-Bearer token; on POST, GET and DELETE', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  // a valid mgw_ token of another tenant
  const t2 = await setupTenant(f.gw, { id: 'globex', users: ['zed@globex.com'] });
  const other = (await t2.mintToken('zed@globex.com')).token;
  assert.match(other, /^mgw_/);
  const auths = {
    'no Authorization': undefined,
    'unknown mgw_ token': 'Bearer mgw_' + 'A'.repeat(43),
    'garbage token': 'Bearer nope',
    'Basic scheme': `Basic ${Buffer.from(`x:${f.tokens.alice}`).toString('base64')}`,
    'token of another tenant': `Bearer ${other}`,
  };
  for (const [what, authorization] of Object.entries(auths)) {
    const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...(authorization ? { authorization } : {}) };
    assert401(await httpCall(f.url, { method: 'POST', headers: h, body: initializeBody() }), `${what}: POST initialize`);
    assert401(await httpCall(f.url, { method: 'POST', headers: { ...h, 'mcp-session-id': s.sessionId }, body: rpc(2, 'tools/list') }), `${what}: POST tools/list on alice's session`);
    assert401(await httpCall(f.url, { method: 'GET', headers: { ...h, accept: 'text/event-stream', 'mcp-session-id': s.sessionId }, timeoutMs: 3000 }), `${what}: GET`);
    assert401(await httpCall(f.url, { method: 'DELETE', headers: { ...h, 'mcp-session-id': s.sessionId } }), `${what}: DELETE`);
  }
  const r = await s.request('tools/list');
  assert.equal(r.status, 200, `alice's session is intact: ${show(r)}`);
});

test('initialize: the gateway answers, negotiates the version, issues its own session id', async () => {
  for (const [asked, want] of [['2025-11-25', '2025-11-25'], ['2025-06-18', '2025-06-18'], ['2025-03-26', '2025-03-26'], ['2099-01-01', LATEST]]) {
    const r = await mcpPost(f.url, initializeBody(1, { protocolVersion: asked }), { token: f.tokens.alice });
    assert.equal(r.status, 200, `initialize ${asked}: ${show(r)}`);
    const res = r.messages.find((m) => m.id === 1)?.result;
    assert.equal(res?.protocolVersion, want, `asked ${asked}: ${show(r)}`);
    assert.equal(res.serverInfo?.name, 'mcpgate');
    assert.deepEqual(res.capabilities?.tools, { listChanged: true }, `tools with listChanged: ${JSON.stringify(res.capabilities)}`);
    assert.equal(res.capabilities.tasks, undefined, 'no tasks capability');
    assert.match(String(r.headers['mcp-session-id']), /^mcps_/, 'the gateway\'s session id');
  }
  const a = await mcpPost(f.url, initializeBody(), { token: f.tokens.alice });
  const b = await mcpPost(f.url, initializeBody(), { token: f.tokens.alice });
  assert.notEqual(a.headers['mcp-session-id'], b.headers['mcp-session-id'], 'a new session per initialize');
});

test('406 on a bad Accept, 400 without a session id, 404 on an unknown one', async () => {
  for (const accept of ['application/json', 'text/event-stream', 'text/html']) {
    const r = await mcpPost(f.url, initializeBody(), { token: f.tokens.alice, accept });
    assert.equal(r.status, 406, `POST with Accept ${accept}: ${show(r)}`);
  }
  const s = await rawSession(f.url, f.tokens.alice);
  let r = await httpCall(f.url, { method: 'GET', headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, accept: 'application/json' }), timeoutMs: 3000 });
  assert.equal(r.status, 406, `GET without text/event-stream: ${show(r)}`);
  r = await mcpPost(f.url, rpc(2, 'tools/list'), { token: f.tokens.alice });
  assert.equal(r.status, 400, `tools/list without a session id: ${show(r)}`);
  r = await httpCall(f.url, { method: 'GET', headers: mcpHeaders({ token: f.tokens.alice, accept: 'text/event-stream' }), timeoutMs: 3000 });
  assert.equal(r.status, 400, `GET without a session id: ${show(r)}`);
  r = await httpCall(f.url, { method: 'DELETE', headers: mcpHeaders({ token: f.tokens.alice }) });
  assert.equal(r.status, 400, `DELETE without a session id: ${show(r)}`);
  for (const sid of ['mcps_' + 'x'.repeat(43), 'nonsense']) {
    r = await mcpPost(f.url, rpc(2, 'tools/list'), { token: f.tokens.alice, sessionId: sid });
    assert.equal(r.status, 404, `unknown session ${sid}: ${show(r)}`);
  }
});

// Review (rvP): only a POST's header was checked; a GET opened its stream
// and a DELETE ended the session whatever MCP-Protocol-Version they carried
// (the spec: an unsupported one is 400).
test('GET and DELETE with an unsupported MCP-Protocol-Version → 400; the session stays', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  for (const v of ['1999-01-01', 'banana']) {
    for (const method of ['GET', 'DELETE']) {
      const r = await httpCall(f.url, {
        method, headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: v, accept: method === 'GET' ? 'text/event-stream' : undefined }), timeoutMs: 3000,
      });
      assert.equal(r.status, 400, `${method} with MCP-Protocol-Version: ${v}: expected 400, got ${show(r)}`);
    }
  }
  const r = await s.request('ping');
  assert.equal(r.status, 200, `the session was not deleted: ${show(r)}`);
});

test('a single-connector session id is not an aggregated session (and vice versa)', async () => {
  const single = await rawSession(`${f.gw.url}/t/acme/mcp/alpha`, f.tokens.alice);
  let r = await mcpPost(f.url, rpc(2, 'tools/list'), { token: f.tokens.alice, sessionId: single.sessionId });
  assert.equal(r.status, 404, `a /mcp/alpha session on /mcp: ${show(r)}`);
  const agg = await rawSession(f.url, f.tokens.alice);
  r = await mcpPost(`${f.gw.url}/t/acme/mcp/alpha`, rpc(2, 'tools/list'), { token: f.tokens.alice, sessionId: agg.sessionId });
  assert.equal(r.status, 404, `an aggregated session on /mcp/alpha: ${show(r)}`);
});

test('-32700 on bad JSON, -32600 on invalid JSON-RPC; batches only on 2025-03-26 sessions', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  for (const body of ['{nope', '', '42', '{"jsonrpc":"2.0","id":1,"method":"ping","method":"ping"}']) {
    const r = await s.post(body);
    assert.equal(r.status, 400, `body ${JSON.stringify(body)}: ${show(r)}`);
    assertRpcError(r, { codes: [-32700], what: `body ${JSON.stringify(body)}` });
  }
  for (const body of [{ id: 1, method: 'ping' }, { jsonrpc: '1.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: {}, method: 'ping' }]) {
    const r = await s.post(body);
    assert.equal(r.status, 400, `invalid JSON-RPC ${JSON.stringify(body)}: ${show(r)}`);
    assertRpcError(r, { codes: [-32600], what: `invalid JSON-RPC ${JSON.stringify(body)}` });
  }
  for (const body of [[rpc(5, 'ping')], [rpc(5, 'tools/list'), rpc(6, 'ping')], []]) {
    const r = await s.post(body);
    assert.equal(r.status, 400, `batch ${JSON.stringify(body)}: ${show(r)}`);
  }
  // a session that negotiated 2025-03-26 takes batches: one reply per request, in one array
  const old = await rawSession(f.url, f.tokens.alice, { protocolVersion: '2025-03-26' });
  const r = await old.post([rpc(5, 'ping'), { jsonrpc: '2.0', method: 'notifications/initialized' }, rpc(6, 'tools/call', { name: 'nope__x', arguments: {} })]);
  assert.equal(r.status, 200, `batch on a 2025-03-26 session: ${show(r)}`);
  const arr = JSON.parse(r.body);
  assert.ok(Array.isArray(arr), `a batch reply is an array: ${r.body}`);
  assert.deepEqual(arr.map((m) => m.id).sort(), [5, 6], `one reply per request, none for the notification: ${r.body}`);
  assert.deepEqual(arr.find((m) => m.id === 5).result, {}, 'ping answered');
  assert.equal(arr.find((m) => m.id === 6).error?.code, -32602, 'the unknown tool refused inside the batch');
  const bad = await old.post([rpc(7, 'ping'), { id: 8, method: 'ping' }]);
  assert.equal(bad.status, 400, `a batch with an invalid element is refused whole: ${show(bad)}`);
  // a batch answers to the MCP-Protocol-Version header as one message does
  const pv = await old.post([rpc(10, 'ping')], { protocolVersion: '1999-01-01' });
  assert.equal(pv.status, 400, `a batch with an unsupported MCP-Protocol-Version: ${show(pv)}`);
  assertRpcError(pv, { codes: [-32000], what: 'a batch with an unsupported version' });
  assert.match(pv.body, /unsupported MCP-Protocol-Version 1999-01-01 \(supported: 2025-03-26, 2025-06-18, 2025-11-25\)/, show(pv));
  const init = await old.post([rpc(9, 'initialize', { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'x', version: '1' } })]);
  assert.equal(init.status, 400, `initialize cannot be batched: ${show(init)}`);
  const ok = await s.request('ping');
  assert.equal(ok.status, 200, `the session still works: ${show(ok)}`);
});

test('server/discover, tasks/* and unknown methods → -32601; ping; prompts/resources lists are empty', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const d = await mcpPost(f.url, rpc(1, 'server/discover'), { token: f.tokens.alice });
  assertRpcError(d, { id: 1, codes: [-32601], what: 'server/discover without a session' });
  for (const m of ['server/discover', 'tasks/list', 'tasks/get', 'tasks/result', 'tasks/cancel', 'no/such', 'tools/nosuch']) {
    const r = await s.request(m, m.startsWith('tasks/') && m !== 'tasks/list' ? { taskId: 't1' } : {});
    assertRpcError(r, { codes: [-32601], what: m });
  }
  let r = await s.request('ping');
  assert.deepEqual(r.messages.find((m) => m.result)?.result, {}, `ping: ${show(r)}`);
  // prompts and resources: an empty list unless the capability is offered
  const caps = s.result.capabilities;
  for (const [m, key, cap] of [['prompts/list', 'prompts', 'prompts'], ['resources/list', 'resources', 'resources'], ['resources/templates/list', 'resourceTemplates', 'resources']]) {
    r = await s.request(m);
    assert.equal(r.status, 200, `${m}: ${show(r)}`);
    const res = r.messages.find((x) => x.result)?.result;
    if (caps[cap] === undefined) assert.deepEqual(res, { [key]: [] }, `${m} → empty (${cap} not offered): ${show(r)}`);
    else assert.ok(Array.isArray(res?.[key]), `${m} → a list (${cap} offered): ${show(r)}`);
  }
  // notifications are taken with 202
  for (const m of ['notifications/initialized', 'notifications/roots/list_changed', 'notifications/cancelled']) {
    r = await s.notify(m, m.endsWith('cancelled') ? { requestId: 99 } : undefined);
    assert.equal(r.status, 202, `${m}: ${show(r)}`);
  }
});

test('tasks/* sent as a notification is refused too, not forwarded to the upstream sessions', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const r0 = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'opens alpha' } });
  assert.equal(r0.status, 200, `a call opens the session's upstream session: ${show(r0)}`);
  const sent = () => f.recs.alpha.requests().filter((e) => e.headers['mcp-session-id'] && (Array.isArray(e.json) ? e.json : [e.json]).some((m) => String(m?.method).startsWith('tasks/'))).length;
  const before = sent();
  for (const m of ['tasks/cancel', 'tasks/get', 'tasks/list', 'tasks/result']) {
    const r = await s.notify(m, m === 'tasks/list' ? {} : { taskId: 't1' });
    assertRpcError(r, { codes: [-32601], what: `${m} as a notification` });
  }
  // a notification the gateway forwards reaches alpha before its 202: this one marks the end
  const n = await s.notify('notifications/roots/list_changed');
  assert.equal(n.status, 202, `roots/list_changed: ${show(n)}`);
  assert.ok(f.recs.alpha.requests().some((e) => e.json?.method === 'notifications/roots/list_changed'), 'the marker reached alpha');
  assert.equal(sent() - before, 0, 'no tasks/* message reached the upstream');
});

test('GET opens a gateway-local SSE stream that stays open', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const n0 = await openStreams(f.gw, 'acme');
  const g = await openStream(f.url, { headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(g.status, 200);
  assert.match(String(g.headers['content-type']), /^text\/event-stream/);
  assert.equal(g.headers['mcp-session-id'], s.sessionId, 'the session id on the stream');
  await waitFor(async () => (await openStreams(f.gw, 'acme')) === n0 + 1, { timeoutMs: 3000, what: 'the stream to be counted' });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(g.isEnded, false, 'the stream stays open');
  g.close();
  await waitFor(async () => (await openStreams(f.gw, 'acme')) === n0, { timeoutMs: 3000, what: 'the stream to be uncounted after the client left' });
});
