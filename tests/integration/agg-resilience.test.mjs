// The aggregated endpoint when parts fail: one upstream down or restarted
// while the other works, an upstream refusing the gateway's credential,
// server→client requests (elicitation, sampling) relayed with rewritten ids
// and answered back to the right upstream, and a user deactivated over SCIM
// in the middle of a session.
import { test, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import {
  startAggFixture, startForwarder, allToolNames, forwardedCalls, rpcError, openStreams, UPSTREAM_SECRET,
} from './lib/agg.mjs';
import {
  connectClient, toolText, rawSession, openStream, mcpHeaders, assertRpcError, assertGatewayUp, show,
  startEverything, startRecorder, rpcMessages, parseSse, mcpPost, initializeBody, waitFor, sleep,
} from './lib/mcp.mjs';

let f;
before(async () => {
  f = await startAggFixture({ users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
});
afterEach(async () => {
  for (const r of Object.values(f.recs)) await r.setMode('normal');
});

const prefixed = (names, c) => names.filter((n) => n.startsWith(`${c}__`));

async function timed(p) {
  const t0 = Date.now();
  const r = await p;
  return [r, Date.now() - t0];
}

test('alpha down: tools/list still has beta\'s tools, alpha__echo → -32002 naming alpha; alpha\'s tools return with it', async () => {
  const c1 = await connectClient(f.url, f.tokens.alice);
  const before1 = await allToolNames(c1); // alpha's upstream session is open for c1
  assert.ok(before1.includes('alpha__echo') && before1.includes('beta__echo'), `both connectors listed: ${before1}`);
  await f.recs.alpha.setMode('down');
  const c2 = await connectClient(f.url, f.tokens.bob); // its alpha session cannot be opened yet
  for (const [who, c] of [['established session', c1], ['fresh session', c2]]) {
    const [names, ms] = await timed(allToolNames(c));
    assert.ok(ms < 5000, `${who}: tools/list answered in ${ms} ms`);
    assert.deepEqual(prefixed(names, 'alpha'), [], `${who}: alpha's tools are left out while it is down`);
    assert.deepEqual(prefixed(names, 'beta'), prefixed(before1, 'beta'), `${who}: beta's tools are all there`);
    assert.deepEqual(names, prefixed(names, 'beta'), `${who}: nothing else`);
    const [e, ms2] = await timed(rpcError(c.client.callTool({ name: 'alpha__echo', arguments: { message: 'x' } }, undefined, { timeout: 10000 }), `${who}: alpha__echo`));
    assert.ok(ms2 < 5000, `${who}: answered in ${ms2} ms`);
    assert.equal(e.code, -32002, `${who}: upstream unreachable → -32002: ${e.message}`);
    assert.match(e.message, /alpha/, `${who}: the error names the connector`);
    assert.equal(toolText(await c.client.callTool({ name: 'beta__echo', arguments: { message: 'b' } })), 'Echo: b', `${who}: beta still works`);
  }
  await f.recs.alpha.setMode('normal');
  for (const [who, c] of [['established session', c1], ['fresh session', c2]]) {
    assert.deepEqual(await allToolNames(c), before1, `${who}: alpha's tools are back`);
    assert.equal(toolText(await c.client.callTool({ name: 'alpha__echo', arguments: { message: 'back' } })), 'Echo: back', `${who}: alpha works again`);
  }
  await c1.close();
  await c2.close();
  await assertGatewayUp(f.gw);
});

test('an upstream restarted (its sessions forgotten) comes back: its tools and calls work again in the same client session', async () => {
  // gamma → recorder → forwarder → server-everything, so the process can be replaced at the same address
  const up1 = await startEverything({ own: true });
  const fw = await startForwarder(up1.port);
  const rec = await startRecorder(fw.url());
  const put = await f.t.putConnector('gamma', { url: rec.url, auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
  assert.equal(put.status, 201, `PUT connector gamma: ${show(put)}`);
  const c = await connectClient(f.url, f.tokens.alice);
  try {
    const names0 = await allToolNames(c);
    assert.ok(names0.includes('gamma__echo'), `gamma listed: ${names0}`);
    assert.equal(toolText(await c.client.callTool({ name: 'gamma__echo', arguments: { message: 'one' } })), 'Echo: one');

    await up1.stop();
    const names1 = await allToolNames(c);
    assert.deepEqual(prefixed(names1, 'gamma'), [], 'gamma\'s tools are left out while it is stopped');
    assert.ok(names1.includes('alpha__echo') && names1.includes('beta__echo'), 'the others are still listed');

    const up2 = await startEverything();
    fw.setTarget(up2.port);
    rec.clear();
    let last = [];
    const back = await waitFor(async () => {
      last = await allToolNames(c);
      return last.includes('gamma__echo');
    }, { timeoutMs: 5000, intervalMs: 300, what: 'gamma\'s tools to come back' }).then(() => true, () => false);
    const trail = rec.requests().map((e) => `${e.method} ${e.body.slice(0, 70)} → ${e.response?.status} ${String(e.response?.body ?? '').slice(0, 90)}`).join('\n  ');
    assert.ok(back, `after the restart gamma's tools come back (the gateway opens a new upstream session); listed: ${prefixed(last, 'gamma').length} gamma tools; what gamma saw:\n  ${trail}`);
    assert.deepEqual(last, names0, 'the same tools as before the restart');
    const r = await c.client.callTool({ name: 'gamma__echo', arguments: { message: 'two' } }, undefined, { timeout: 10000 });
    assert.equal(toolText(r), 'Echo: two', 'tools/call works on the restarted upstream');
  } finally {
    await c.close();
    const d = await f.t.admin('DELETE', '/connectors/gamma');
    assert.equal(d.status, 204, `DELETE connector gamma: ${show(d)}`);
    await rec.stop();
  }
});

test('an upstream refusing the credential: tools/call → -32006 naming the connector (session already open); list skips it', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const c = await connectClient(f.url, f.tokens.bob);
  const all = await allToolNames(c); // opens alpha's upstream session for c
  let r = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } });
  assert.equal(r.status, 200, `alpha works before: ${show(r)}`);
  await f.recs.alpha.setMode('401');
  r = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } });
  assert.ok(r.status !== 401 && r.status !== 403, `no HTTP 401/403 to the client (it would start OAuth at the gateway): ${show(r)}`);
  assert.equal(r.headers['www-authenticate'], undefined, 'the upstream\'s challenge is not relayed');
  const e = assertRpcError(r, { codes: [-32006], message: /alpha/, what: 'tools/call alpha__echo with alpha answering 401' });
  assert.match(e.message, /credential/, `the message says what is wrong: ${e.message}`);
  const se = await rpcError(c.client.callTool({ name: 'alpha__echo', arguments: { message: 'x' } }), 'SDK alpha__echo with alpha answering 401');
  assert.equal(se.code, -32006, `SDK client gets -32006 (not -32001, the SDK's session-not-found): ${se.message}`);
  assert.match(se.message, /alpha/);
  const names = await allToolNames(c);
  assert.deepEqual(names, prefixed(all, 'beta'), 'tools/list: alpha left out, beta intact');
  assert.equal(toolText(await c.client.callTool({ name: 'beta__echo', arguments: { message: 'b' } })), 'Echo: b', 'beta unaffected');
  await f.recs.alpha.setMode('403');
  r = await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } });
  assertRpcError(r, { codes: [-32006], message: /alpha/, what: 'tools/call alpha__echo with alpha answering 403' });
  await f.recs.alpha.setMode('normal');
  assert.deepEqual(await allToolNames(c), all, 'alpha listed again once it accepts the credential');
  await c.close();
});

test('an upstream refusing the credential on the first use of the connector: tools/call → -32006 naming it', async () => {
  await f.recs.beta.setMode('401');
  const s = await rawSession(f.url, f.tokens.alice); // beta's upstream session is opened by the call below
  const r = await s.request('tools/call', { name: 'beta__echo', arguments: { message: 'x' } });
  assert.ok(r.status !== 401 && r.status !== 403, `no HTTP 401/403 to the client: ${show(r)}`);
  assert.ok(f.recs.beta.requests().some((e) => e.mode === '401' && e.json?.method === 'initialize'), 'the gateway tried to open beta\'s session');
  assertRpcError(r, { codes: [-32006], message: /beta/, what: 'tools/call beta__echo when beta refuses the credential at initialize' });
});

/** Elicitation / sampling handlers that answer per connector and log the id the client saw. */
function perConnectorClient(seen) {
  const conn = (id) => /^mcpgate:([a-z0-9-]+):/.exec(String(id))?.[1] ?? 'unknown';
  return {
    elicitation: async (req, extra) => {
      seen.push({ kind: 'elicitation', id: extra.requestId });
      return { action: 'accept', content: { name: `from ${conn(extra.requestId)}`, check: true } };
    },
    sampling: async (req, extra) => {
      seen.push({ kind: 'sampling', id: extra.requestId });
      return { role: 'assistant', model: 'test-model', stopReason: 'endTurn', content: { type: 'text', text: `sampled for ${conn(extra.requestId)}` } };
    },
  };
}

/** The server→client request `method` an upstream sent inside the tools/call stream it answered. */
function upstreamRequest(rec, tool, method) {
  for (const e of forwardedCalls(rec, tool)) {
    const msgs = parseSse(e.response?.body ?? '').events.map((ev) => { try { return JSON.parse(ev.data); } catch { return undefined; } }).flatMap(rpcMessages);
    const m = msgs.find((x) => x.method === method);
    if (m) return m;
  }
  return undefined;
}

/** Responses (no method) the client sent that reached the upstream. */
const responsesAt = (rec) => rec.requests().flatMap((e) => rpcMessages(e.json)).filter((m) => !m.method && m.id !== undefined);

test('elicitation from alpha and beta at once: ids rewritten for the client, answers routed back with the original ids', async () => {
  const seen = [];
  const h = perConnectorClient(seen);
  const c = await connectClient(f.url, f.tokens.alice, { elicitation: h.elicitation });
  const names = await allToolNames(c);
  assert.ok(names.includes('beta__trigger-elicitation-request'), `the client declared elicitation, so the tool is listed: ${names}`);
  f.recs.alpha.clear();
  f.recs.beta.clear();
  const [ra, rb] = await Promise.all(['alpha', 'beta'].map((cn) => c.client.callTool({ name: `${cn}__trigger-elicitation-request`, arguments: {} }, undefined, { timeout: 15000 })));
  for (const [cn, r] of [['alpha', ra], ['beta', rb]]) {
    const text = (r.content ?? []).map((x) => x.text).join('\n');
    assert.match(text, new RegExp(`Name: from ${cn}\\b`), `${cn}'s tool result reflects the answer given to ${cn}'s request: ${text}`);
    const orig = upstreamRequest(f.recs[cn], 'trigger-elicitation-request', 'elicitation/create');
    assert.ok(orig, `${cn} sent elicitation/create inside its tools/call stream`);
    const mine = seen.filter((x) => x.kind === 'elicitation' && String(x.id).startsWith(`mcpgate:${cn}:`));
    assert.equal(mine.length, 1, `the client saw ${cn}'s request once, as mcpgate:${cn}:…: ${JSON.stringify(seen)}`);
    assert.equal(mine[0].id, `mcpgate:${cn}:${JSON.stringify(orig.id)}`, `the id the client saw is mcpgate:${cn}:{original id JSON}`);
    const answers = responsesAt(f.recs[cn]);
    assert.equal(answers.length, 1, `${cn} received exactly one response: ${JSON.stringify(answers)}`);
    assert.deepEqual(answers[0].id, orig.id, `${cn} got the answer under its ORIGINAL id (${JSON.stringify(orig.id)}), not the mcpgate: id`);
    assert.equal(answers[0].result?.content?.name, `from ${cn}`, `${cn} got its own answer`);
    assert.ok(!f.recs[cn].requests().some((e) => e.body.includes('mcpgate:')), `no mcpgate: id ever reaches ${cn}`);
    const post = f.recs[cn].requests().find((e) => rpcMessages(e.json).some((m) => !m.method && m.result));
    assert.equal(post.headers.authorization, UPSTREAM_SECRET, 'the answer carries the connector credential');
    assert.ok(post.headers['mcp-session-id'], 'within the upstream session');
  }
  await c.close();
});

test('sampling from beta: relayed to the client, the answer reaches beta under the original id', async () => {
  const seen = [];
  const h = perConnectorClient(seen);
  const c = await connectClient(f.url, f.tokens.alice, { sampling: h.sampling });
  f.recs.beta.clear();
  const r = await c.client.callTool({ name: 'beta__trigger-sampling-request', arguments: { prompt: 'hello', maxTokens: 10 } }, undefined, { timeout: 15000 });
  assert.match(toolText(r), /sampled for beta/, `beta's result carries the client's sample: ${toolText(r)}`);
  const orig = upstreamRequest(f.recs.beta, 'trigger-sampling-request', 'sampling/createMessage');
  assert.ok(orig, 'beta sent sampling/createMessage inside its tools/call stream');
  assert.deepEqual(seen.map((x) => x.id), [`mcpgate:beta:${JSON.stringify(orig.id)}`], 'the client saw the rewritten id');
  const answers = responsesAt(f.recs.beta);
  assert.equal(answers.length, 1, `one response reached beta: ${JSON.stringify(answers)}`);
  assert.deepEqual(answers[0].id, orig.id, 'under the original id');
  await c.close();
});

/** Server→client requests `method` an upstream sent on its GET streams (as recorded). */
function upstreamGetRequests(rec, method) {
  return rec.requests().filter((e) => e.method === 'GET')
    .flatMap((e) => parseSse(e.response?.body ?? '').events.map((ev) => { try { return JSON.parse(ev.data); } catch { return undefined; } }).flatMap(rpcMessages))
    .filter((m) => m.method === method && m.id !== undefined);
}

test('roots: roots/list from alpha\'s GET stream reaches the client, the answer goes back under the original id; roots/list_changed is forwarded', async () => {
  const seen = [];
  let roots = 'file:///work/one';
  const c = await connectClient(f.url, f.tokens.alice, { roots: [{ uri: roots, name: 'one' }] });
  c.handlers.roots = async (req, extra) => {
    seen.push(extra.requestId);
    return { roots: [{ uri: roots, name: 'r' }] };
  };
  await waitFor(async () => (await openStreams(f.gw, 'acme')) >= 1, { timeoutMs: 5000, what: 'the client\'s GET stream' });
  f.recs.alpha.clear();
  const r1 = await c.client.callTool({ name: 'alpha__get-roots-list', arguments: {} }, undefined, { timeout: 10000 });
  assert.match(toolText(r1), /file:\/\/\/work\/one/, `alpha knows the client's roots: ${toolText(r1)}`);
  // every roots/list alpha sent reached the client as mcpgate:alpha:{id} and was answered under {id}
  await waitFor(() => {
    const asked = upstreamGetRequests(f.recs.alpha, 'roots/list');
    const answered = responsesAt(f.recs.alpha);
    return asked.length > 0 && asked.every((q) => answered.some((a) => JSON.stringify(a.id) === JSON.stringify(q.id)));
  }, { timeoutMs: 5000, what: 'alpha\'s roots/list requests to be answered' });
  const asked = upstreamGetRequests(f.recs.alpha, 'roots/list');
  for (const q of asked) assert.ok(seen.includes(`mcpgate:alpha:${JSON.stringify(q.id)}`), `the client saw alpha's roots/list ${JSON.stringify(q.id)} as mcpgate:alpha:…: ${JSON.stringify(seen)}`);
  assert.ok(responsesAt(f.recs.alpha).every((a) => !String(a.id).startsWith('mcpgate:')), 'alpha never sees an mcpgate: id');
  // the roots change; the client says so; alpha asks again and learns the new ones
  roots = 'file:///work/two';
  const n = seen.length;
  await c.client.sendRootsListChanged();
  await waitFor(() => seen.length > n, { timeoutMs: 5000, what: 'a roots/list after notifications/roots/list_changed' });
  assert.ok(f.recs.alpha.requests().some((e) => e.json?.method === 'notifications/roots/list_changed'), 'the notification reached alpha');
  await waitFor(async () => /file:\/\/\/work\/two/.test(toolText(await c.client.callTool({ name: 'alpha__get-roots-list', arguments: {} }, undefined, { timeout: 10000 }))),
    { timeoutMs: 5000, intervalMs: 200, what: 'alpha to report the new roots' });
  await c.close();
});

test('a user deactivated over SCIM mid-session: GET stream and in-flight call end, next request 401; others unaffected', async () => {
  const carol = f.users.carol;
  const tok = f.tokens.carol;
  const s = await rawSession(f.url, tok);
  const hdr = (o = {}) => mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion, ...o });
  const before0 = await openStreams(f.gw, 'acme');
  const g = await openStream(f.url, { headers: hdr({ accept: 'text/event-stream' }) });
  assert.equal(g.status, 200, `GET stream: ${g.status}`);
  assert.match(String(g.headers['content-type']), /^text\/event-stream/);
  await waitFor(async () => (await openStreams(f.gw, 'acme')) > before0, { timeoutMs: 5000, what: 'the GET stream to be counted' });
  const call = await openStream(f.url, {
    method: 'POST', headers: hdr(),
    body: { jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'beta__trigger-long-running-operation', arguments: { duration: 20, steps: 20 }, _meta: { progressToken: 'p' } } },
  });
  assert.equal(call.status, 200, `in-flight call: ${call.status} ${call.raw()}`);
  await call.waitFor((m) => m.method === 'notifications/progress', 5000);
  const bob = await connectClient(f.url, f.tokens.bob);

  const t0 = Date.now();
  await f.t.deactivate(carol.id);
  const gEnd = await Promise.race([g.ended.then(() => Date.now() - t0), sleep(3000).then(() => null)]);
  assert.ok(gEnd !== null, 'the GET stream ended within 3 s of the deactivation');
  await Promise.race([call.ended, call.waitFor((m) => m.id === 77, 3000).catch(() => {})]);
  assert.ok(call.isEnded || call.messages.some((m) => m.id === 77), `the in-flight tools/call stream ended (or was answered) within 3 s: ${call.raw().slice(-300)}`);
  const fin = call.messages.find((m) => m.id === 77);
  assert.ok(!fin || fin.error, `no result for the cut call: ${JSON.stringify(fin)}`);
  call.close();

  for (const [what, r] of [
    ['POST tools/list', await s.request('tools/list')],
    ['POST tools/call', await s.request('tools/call', { name: 'alpha__echo', arguments: { message: 'x' } })],
    ['POST initialize', await mcpPost(f.url, initializeBody(), { token: tok })],
  ]) {
    assert.equal(r.status, 401, `${what} after deactivation: ${show(r)}`);
    assert.match(String(r.headers['www-authenticate'] ?? ''), /^Bearer/, `${what}: WWW-Authenticate: Bearer`);
  }
  const g2 = await openStream(f.url, { headers: hdr({ accept: 'text/event-stream' }) });
  assert.equal(g2.status, 401, 'a new GET stream is refused');
  g2.close();
  // reactivation revives nothing
  await f.t.reactivate(carol.id);
  const r = await s.request('tools/list');
  assert.equal(r.status, 401, `after reactivation the old token stays dead: ${show(r)}`);
  // bob never noticed
  assert.equal(toolText(await bob.client.callTool({ name: 'beta__echo', arguments: { message: 'bob' } })), 'Echo: bob');
  await bob.close();
  g.close();
});
