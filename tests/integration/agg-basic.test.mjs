// The aggregated endpoint /t/{tenant}/mcp (gateway/mcp/agg*.c) with two real
// server-everything upstreams, connectors "alpha" and "beta", each behind
// its own recorder, driven by the official SDK client: initialize answered
// by the gateway, tools/list merged page by page, tools/call routed with the
// prefix stripped, progress streamed, policy applied, sessions ended.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import {
  startAggFixture, listAllTools, allToolNames, forwardedCalls, calledNames, rpcError, openStreams, upstreamSession, UPSTREAM_SECRET,
} from './lib/agg.mjs';
import {
  connectClient, toolText, rawSession, httpCall, openStream, mcpHeaders, show, ALLOW_ALL_POLICY, waitFor, sleep,
} from './lib/mcp.mjs';

let f;
/** Tools each upstream lists to a client that declares no capabilities (asked directly). */
const direct = {};

before(async () => {
  f = await startAggFixture();
  for (const name of ['alpha', 'beta']) {
    const c = await connectClient(f.ups[name].url, null);
    direct[name] = (await c.client.listTools()).tools;
    await c.close();
  }
});

const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

test('initialize is answered by the gateway: mcpgate, tools.listChanged, its own session id; no upstream contacted', async () => {
  f.recs.alpha.clear();
  f.recs.beta.clear();
  const c = await connectClient(f.url, f.tokens.alice);
  const info = c.client.getServerVersion();
  assert.equal(info?.name, 'mcpgate', `serverInfo: ${JSON.stringify(info)}`);
  const caps = c.client.getServerCapabilities();
  assert.equal(caps?.tools?.listChanged, true, `capabilities.tools.listChanged: ${JSON.stringify(caps)}`);
  assert.equal(caps.tasks, undefined, `tasks not offered: ${JSON.stringify(caps)}`);
  assert.match(c.sessionId() ?? '', /^mcps_[A-Za-z0-9_-]{20,}$/, `gateway session id: ${c.sessionId()}`);
  // the SDK has sent initialize, notifications/initialized and opened its GET stream
  await waitFor(async () => (await openStreams(f.gw, 'acme')) >= 1, { timeoutMs: 5000, what: 'the GET stream to open' });
  assert.deepEqual(f.recs.alpha.requests().map((e) => e.method), [], 'alpha was not contacted');
  assert.deepEqual(f.recs.beta.requests().map((e) => e.method), [], 'beta was not contacted');
  assert.equal(toolText(await c.client.callTool({ name: 'alpha__echo', arguments: { message: 'first' } })), 'Echo: first');
  // the first call opened alpha's upstream session with the client's initialize replayed
  const { init } = upstreamSession(f.recs.alpha, (e) => e.json?.method === 'tools/call');
  assert.ok(init, 'an upstream session was opened lazily on alpha for the call');
  assert.equal(init.json.params.clientInfo?.name, 'mcpgate-test-client', `clientInfo replayed: ${init.body}`);
  assert.equal(f.recs.beta.requests().length, 0, 'beta still untouched');
  await c.close();
});

test('tools/list pages through alpha then beta: every tool prefixed once, nothing else', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  const { tools, pages } = await listAllTools(c);
  const names = tools.map((x) => x.name);
  assert.equal(new Set(names).size, names.length, `no duplicates: ${names}`);
  const want = [...direct.alpha.map((x) => `alpha__${x.name}`), ...direct.beta.map((x) => `beta__${x.name}`)].sort();
  assert.ok(direct.alpha.some((x) => x.name === 'echo') && direct.beta.length > 5, 'the upstreams list tools');
  assert.deepEqual([...names].sort(), want, 'exactly the upstreams\' tools, prefixed');
  // one upstream page per client page, connectors in name order
  assert.equal(pages.length, 2, `two pages (server-everything lists in one page): ${JSON.stringify(pages.map((p) => p.names.length))}`);
  assert.ok(pages[0].names.every((n) => n.startsWith('alpha__')), `page 1 is alpha's: ${pages[0].names}`);
  assert.ok(pages[1].names.every((n) => n.startsWith('beta__')), `page 2 is beta's: ${pages[1].names}`);
  assert.equal(typeof pages[0].nextCursor, 'string', 'page 1 has a nextCursor');
  assert.equal(pages[1].nextCursor, undefined, 'the last page has none');
  // everything but the name is the upstream's
  const up = Object.fromEntries(direct.beta.map((x) => [x.name, x]));
  for (const t of tools.filter((x) => x.name.startsWith('beta__'))) {
    const orig = up[t.name.slice('beta__'.length)];
    assert.deepEqual({ ...t, name: orig.name }, orig, `beta tool ${t.name} unchanged but for its name`);
  }
  await c.close();
});

test('tools/call alpha__echo and beta__echo reach the right upstream, prefix stripped, credential injected', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  f.recs.alpha.clear();
  f.recs.beta.clear();
  assert.equal(toolText(await c.client.callTool({ name: 'alpha__echo', arguments: { message: 'to alpha' } })), 'Echo: to alpha');
  assert.equal(toolText(await c.client.callTool({ name: 'beta__echo', arguments: { message: 'to beta' } })), 'Echo: to beta');
  const a = forwardedCalls(f.recs.alpha, 'echo');
  const b = forwardedCalls(f.recs.beta, 'echo');
  assert.equal(a.length, 1, `alpha got one echo: ${calledNames(f.recs.alpha)}`);
  assert.equal(b.length, 1, `beta got one echo: ${calledNames(f.recs.beta)}`);
  assert.equal(a[0].json.params.arguments.message, 'to alpha', 'alpha got alpha\'s call');
  assert.equal(b[0].json.params.arguments.message, 'to beta', 'beta got beta\'s call');
  assert.match(a[0].body, /"name":"echo"/, `prefix stripped on the wire: ${a[0].body}`);
  assert.doesNotMatch(a[0].body + b[0].body, /alpha__|beta__/, 'no prefixed name reaches an upstream');
  for (const e of [...f.recs.alpha.requests(), ...f.recs.beta.requests()]) {
    assert.equal(e.headers.authorization, UPSTREAM_SECRET, 'each upstream sees the connector credential');
    assert.ok(!JSON.stringify(e.rawHeaders).includes(f.tokens.alice), 'never the mgw_ token');
    if (e.json?.method !== 'initialize') {
      assert.ok(e.headers['mcp-session-id'] && !e.headers['mcp-session-id'].startsWith('mcps_'), `the upstream's own session id, not the gateway's: ${e.headers['mcp-session-id']}`);
    }
  }
  await c.close();
});

test('trigger-long-running-operation streams progress notifications in order, before the result', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  const prog = [];
  const t0 = Date.now();
  const r = await c.client.callTool({ name: 'beta__trigger-long-running-operation', arguments: { duration: 2, steps: 4 } }, undefined, {
    timeout: 15000,
    onprogress: (p) => prog.push({ ...p, at: Date.now() - t0 }),
  });
  const done = Date.now() - t0;
  assert.match(toolText(r), /Long running operation completed/, `result: ${JSON.stringify(r)}`);
  assert.deepEqual(prog.map((p) => [p.progress, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]], `progress in order: ${JSON.stringify(prog)}`);
  assert.ok(prog[0].at < done - 800, `the first progress arrived as it happened (${prog[0].at} ms), not with the result (${done} ms)`);
  const fwd = forwardedCalls(f.recs.beta, 'trigger-long-running-operation').at(-1);
  assert.ok(fwd?.json.params._meta?.progressToken !== undefined, `the progressToken reached beta: ${fwd?.body}`);
  await c.close();
});

test('a policy that hides beta: its tools vanish, beta__echo is unknown (-32602), list_changed on the GET stream', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  let changed = 0;
  c.client.setNotificationHandler(ToolListChangedNotificationSchema, async () => { changed++; });
  await waitFor(async () => (await openStreams(f.gw, 'acme')) >= 1, { timeoutMs: 5000, what: 'the GET stream to open' });
  try {
    await f.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'alpha', allow: ['*'] }] });
    await waitFor(() => changed > 0, { timeoutMs: 5000, what: 'notifications/tools/list_changed after the policy change' });
    const { tools, pages } = await listAllTools(c);
    const names = tools.map((x) => x.name).sort();
    assert.deepEqual(names, direct.alpha.map((x) => `alpha__${x.name}`).sort(), 'only alpha\'s tools');
    assert.equal(pages.length, 1, 'one page: beta is not walked');
    f.recs.beta.clear();
    const e = await rpcError(c.client.callTool({ name: 'beta__echo', arguments: { message: 'x' } }), 'beta__echo while hidden');
    assert.equal(e.code, -32602, `hidden tool → -32602: ${e.message}`);
    assert.equal(calledNames(f.recs.beta).length, 0, 'nothing reached beta');
    assert.equal(toolText(await c.client.callTool({ name: 'alpha__echo', arguments: { message: 'still' } })), 'Echo: still');
  } finally {
    await f.t.setPolicy(ALLOW_ALL_POLICY);
  }
  assert.ok((await allToolNames(c)).includes('beta__echo'), 'beta is back under the allow-all policy');
  await c.close();
});

test('blocked tool → -32003, approval tool → -32005, unknown tool → -32602; none reaches an upstream', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  try {
    await f.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'], block: ['get-env'], approve: ['get-sum'] }] });
    const listed = Object.fromEntries((await listAllTools(c)).tools.map((x) => [x.name, x]));
    for (const n of ['alpha__get-env', 'beta__get-env']) assert.equal(listed[n], undefined, `${n} (blocked) is not listed`);
    for (const n of ['alpha__get-sum', 'beta__get-sum']) assert.match(listed[n]?.description ?? '', /^\[requires approval/, `${n} is listed with the approval note: ${JSON.stringify(listed[n])}`);
    assert.ok(listed.alpha__echo && listed.beta__echo, 'allowed tools listed');
    f.recs.alpha.clear();
    f.recs.beta.clear();
    const blocked = await rpcError(c.client.callTool({ name: 'alpha__get-env', arguments: {} }), 'alpha__get-env');
    assert.equal(blocked.code, -32003, `blocked: ${blocked.message}`);
    assert.match(blocked.message, /alpha__get-env/, 'the message names the tool');
    const appr = await rpcError(c.client.callTool({ name: 'beta__get-sum', arguments: { a: 1, b: 2 } }), 'beta__get-sum');
    assert.equal(appr.code, -32005, `approval: ${appr.message}`);
    for (const name of ['echo', '__echo', 'alpha__', 'Alpha__echo']) {
      const e = await rpcError(c.client.callTool({ name, arguments: {} }), name);
      assert.equal(e.code, -32602, `${name} → -32602: ${e.message}`);
    }
    assert.deepEqual(calledNames(f.recs.alpha), [], 'alpha got no refused call');
    assert.deepEqual(calledNames(f.recs.beta), [], 'beta got no call');
    assert.equal(forwardedCalls(f.recs.alpha, 'get-env').length, 0, 'get-env never reached alpha');
    const appr2 = await rpcError(c.client.callTool({ name: 'alpha__get-sum', arguments: { a: 2, b: 3 } }), 'alpha__get-sum');
    assert.equal(appr2.code, -32005, `get-sum needs approval on alpha too: ${appr2.message}`);
    assert.equal(toolText(await c.client.callTool({ name: 'alpha__echo', arguments: { message: 'ok' } })), 'Echo: ok', 'allowed tools still work');
    // a name the policy allows (by "*") but alpha lacks: alpha itself answers
    const nx = await c.client.callTool({ name: 'alpha__no-such-tool', arguments: {} });
    assert.equal(forwardedCalls(f.recs.alpha, 'no-such-tool').length, 1, 'allowed by the policy, so alpha was asked');
    assert.ok(nx.isError && /no-such-tool/.test(toolText(nx)), `alpha's own answer is relayed: ${JSON.stringify(nx)}`);
  } finally {
    await f.t.setPolicy(ALLOW_ALL_POLICY);
  }
  await c.close();
});

test('a tool of a connector that does not exist (under a connector "*" rule) → -32602', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  for (const name of ['gamma__echo', 'zeta__get-sum']) {
    const e = await rpcError(c.client.callTool({ name, arguments: {} }), name);
    assert.equal(e.code, -32602, `${name}: no connector "${name.split('__')[0]}" exists, so the tool is unknown → -32602; got ${e.code} ${e.message}`);
  }
  await c.close();
});

test('bad cursors → -32602', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  const cursors = {
    'not base64 JSON': 'zzz',
    'garbage chars': '!!!',
    'unknown connector': b64url({ c: 'gamma', u: null }),
    'upstream cursor not a string': b64url({ c: 'beta', u: 5 }),
    'no connector': b64url({ u: 'x' }),
    'JSON array': b64url([1, 2]),
  };
  for (const [what, cursor] of Object.entries(cursors)) {
    const e = await rpcError(c.client.listTools({ cursor }), `tools/list with ${what}`);
    assert.equal(e.code, -32602, `${what} → -32602: ${e.message}`);
  }
  // a well-formed cursor still works after the bad ones
  const first = await c.client.listTools();
  const second = await c.client.listTools({ cursor: first.nextCursor });
  assert.ok(second.tools.length > 0 && second.tools.every((x) => x.name.startsWith('beta__')), 'the real cursor leads to beta');
  await c.close();
});

test('DELETE ends the session (then 404); another user\'s session id → 404', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const r0 = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } });
  assert.equal(r0.status, 200, show(r0));
  // bob cannot use, stream or delete alice's session
  const hb = (o = {}) => mcpHeaders({ token: f.tokens.bob, sessionId: s.sessionId, protocolVersion: s.protocolVersion, ...o });
  let r = await httpCall(f.url, { method: 'POST', headers: hb(), body: { jsonrpc: '2.0', id: 9, method: 'tools/list' } });
  assert.equal(r.status, 404, `bob POST with alice's session: ${show(r)}`);
  r = await httpCall(f.url, { method: 'GET', headers: hb({ accept: 'text/event-stream' }), timeoutMs: 3000 });
  assert.equal(r.status, 404, `bob GET with alice's session: ${show(r)}`);
  r = await httpCall(f.url, { method: 'DELETE', headers: hb() });
  assert.equal(r.status, 404, `bob DELETE of alice's session: ${show(r)}`);
  r = await s.request('tools/list');
  assert.equal(r.status, 200, `alice's session survives bob's attempts: ${show(r)}`);
  // alice ends it
  r = await s.del();
  assert.equal(r.status, 204, `DELETE: ${show(r)}`);
  r = await s.request('tools/list');
  assert.equal(r.status, 404, `after DELETE: ${show(r)}`);
  r = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } });
  assert.equal(r.status, 404, `tools/call after DELETE: ${show(r)}`);
  r = await httpCall(f.url, { method: 'GET', headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, accept: 'text/event-stream' }), timeoutMs: 3000 });
  assert.equal(r.status, 404, `GET after DELETE: ${show(r)}`);
  r = await s.del();
  assert.equal(r.status, 404, `second DELETE: ${show(r)}`);
  // the SDK's terminateSession does the same
  const c = await connectClient(f.url, f.tokens.alice);
  const sid = c.sessionId();
  await c.terminate();
  r = await httpCall(f.url, { method: 'POST', headers: mcpHeaders({ token: f.tokens.alice, sessionId: sid }), body: { jsonrpc: '2.0', id: 1, method: 'ping' } });
  assert.equal(r.status, 404, `after terminateSession: ${show(r)}`);
  await c.close();
});

test('DELETE also ends the session\'s open GET stream and the upstream sessions it opened', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const r0 = await s.request('tools/list'); // opens alpha's upstream session
  assert.equal(r0.status, 200, show(r0));
  const r1 = await s.request('tools/call', { name: 'beta__echo', arguments: { message: 'x' } }); // and beta's
  assert.equal(r1.status, 200, show(r1));
  const ups = {
    alpha: upstreamSession(f.recs.alpha, (e) => e.json?.method === 'tools/list').sid,
    beta: upstreamSession(f.recs.beta, (e) => e.json?.method === 'tools/call').sid,
  };
  for (const cn of ['alpha', 'beta']) assert.ok(ups[cn], `${cn}'s upstream session id was recorded`);
  const g = await openStream(f.url, { headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(g.status, 200);
  const r = await s.del();
  assert.equal(r.status, 204, show(r));
  const ended = await Promise.race([g.ended.then(() => true), sleep(3000).then(() => false)]);
  g.close();
  const trail = (cn) => f.recs[cn].requests().filter((e) => e.method === 'DELETE').map((e) => e.headers['mcp-session-id']);
  await waitFor(() => ['alpha', 'beta'].every((cn) => trail(cn).includes(ups[cn])), { timeoutMs: 3000 }).catch(() => {});
  const missing = ['alpha', 'beta'].filter((cn) => !trail(cn).includes(ups[cn]));
  assert.ok(ended && missing.length === 0,
    `after DELETE of the aggregated session: GET stream ended within 3 s: ${ended}; ` +
    `upstream sessions not DELETEd: ${missing.map((cn) => `${cn} (${ups[cn]})`).join(', ') || 'none'} ` +
    '(the single-connector endpoint does both)');
});
