// MCP proxy pass-through with real parts: the SDK client through the gateway
// to server-everything (behind the recorder): tools, progress streaming,
// server→client requests (elicitation, sampling, roots), the GET stream and
// Last-Event-ID resumption, cancellation, and two users side by side.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep, waitFor } from './lib/gateway.mjs';
import {
  startProxyFixture, connectClient, toolText, rawSession, openStream, parseSse, rpcMessages,
  EVERYTHING_TOOLS, show,
} from './lib/mcp.mjs';

let f;
before(async () => { f = await startProxyFixture(); });

const sseMessages = (text) => parseSse(text ?? '').events.flatMap((e) => {
  let j; try { j = JSON.parse(e.data); } catch { return []; }
  return rpcMessages(j).map((m) => ({ ...m, _eventId: e.id }));
});

test('tools/list and tools/call pass through unchanged', async () => {
  const direct = await connectClient(f.up.url, null);
  const viaGw = await connectClient(f.url, f.tokens.alice);
  const dTools = (await direct.client.listTools()).tools;
  const gTools = (await viaGw.client.listTools()).tools;
  for (const name of EVERYTHING_TOOLS) {
    const d = dTools.find((x) => x.name === name);
    const g = gTools.find((x) => x.name === name);
    assert.ok(d, `upstream has ${name}`);
    assert.ok(g, `gateway lists ${name}: ${gTools.map((x) => x.name).join(', ')}`);
    assert.deepEqual(g, d, `${name} is listed unchanged`);
  }
  assert.equal(toolText(await viaGw.client.callTool({ name: 'echo', arguments: { message: 'héllo ✓ through the gateway' } })), 'Echo: héllo ✓ through the gateway');
  assert.equal(toolText(await viaGw.client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } })), 'The sum of 19 and 23 is 42.');
  const bad = await viaGw.client.callTool({ name: 'get-sum', arguments: { a: 'x' } }).catch((e) => ({ thrown: e }));
  assert.ok(bad.thrown || bad.isError, `a tool error passes through as an error: ${JSON.stringify(bad).slice(0, 300)}`);
  await direct.close();
  await viaGw.close();
});

test('progress notifications stream in order, as they happen', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  const seen = [];
  const t0 = Date.now();
  const res = await c.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } }, undefined,
    { onprogress: (p) => seen.push({ ...p, at: Date.now() - t0 }), timeout: 15000 });
  const doneAt = Date.now() - t0;
  assert.match(toolText(res), /Long running operation completed\. Duration: 2 seconds, Steps: 4\./);
  assert.deepEqual(seen.map((p) => [p.progress, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]], `progress in order: ${JSON.stringify(seen)}`);
  assert.ok(doneAt - seen[0].at >= 900, `progress is streamed, not buffered: first at ${seen[0].at} ms, result at ${doneAt} ms`);
  assert.ok(seen[1].at - seen[0].at >= 250, `notifications arrive spaced like the upstream sends them: ${JSON.stringify(seen)}`);
  await c.close();
});

test('elicitation: the upstream\'s request reaches the client, the answer reaches the upstream', async () => {
  const c = await connectClient(f.url, f.tokens.alice, { elicitation: true });
  c.handlers.elicitation = async (req) => {
    assert.match(req.params.message, /Please provide inputs/);
    return { action: 'accept', content: { name: 'Ada Lovelace', check: true } };
  };
  const n = f.rec.requests().length;
  const res = await c.client.callTool({ name: 'trigger-elicitation-request', arguments: {} }, undefined, { timeout: 15000 });
  const text = (res.content ?? []).map((x) => x.text).join('\n');
  assert.match(text, /User provided the requested information/, text);
  assert.match(text, /- Name: Ada Lovelace/, text);
  assert.deepEqual(c.calls.map((x) => x.kind), ['elicitation']);
  const answer = f.rec.requests().slice(n).find((e) => e.json?.result?.action === 'accept');
  assert.ok(answer, 'the elicitation result was POSTed upstream');
  assert.equal(answer.json.result.content.name, 'Ada Lovelace');
  // the upstream got its own request id back
  const upReq = f.rec.requests().slice(n).flatMap((e) => sseMessages(e.response?.body)).find((m) => m.method === 'elicitation/create');
  assert.ok(upReq, 'the upstream sent elicitation/create');
  assert.equal(answer.json.id, upReq.id, 'the answer carries the upstream\'s request id');
  await c.close();
});

test('sampling: createMessage round trip through the gateway', async () => {
  const c = await connectClient(f.url, f.tokens.bob, { sampling: true });
  const n = f.rec.requests().length;
  const res = await c.client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'ping from bob', maxTokens: 20 } }, undefined, { timeout: 15000 });
  assert.match(toolText(res), /sampled: Resource trigger-sampling-request context: ping from bob/, toolText(res));
  assert.equal(c.calls[0]?.kind, 'sampling');
  assert.equal(c.calls[0].params.maxTokens, 20);
  const answer = f.rec.requests().slice(n).find((e) => e.json?.result?.model === 'test-model');
  assert.ok(answer, 'the sampling result was POSTed upstream');
  await c.close();
});

test('roots: roots/list on the standalone GET stream, answered through the gateway', async () => {
  const n = f.rec.requests().length;
  const c = await connectClient(f.url, f.tokens.alice, { roots: [{ uri: 'file:///work/project', name: 'project' }] });
  // server-everything asks for the roots on its standalone GET stream 350 ms
  // after initialized; asked before that stream is open upstream (the client
  // opens it in parallel, a loaded machine may take longer), the question is
  // lost: once the stream is open, roots/list_changed makes it ask again
  await waitFor(() => f.rec.requests().slice(n).some((e) => e.method === 'GET' && e.response?.status === 200),
    { timeoutMs: 10000, what: 'the upstream GET stream to be open' });
  await c.client.sendRootsListChanged();
  const res = await c.client.callTool({ name: 'get-roots-list', arguments: {} }, undefined, { timeout: 15000 });
  assert.match(toolText(res), /Current MCP Roots \(1 total\)/, toolText(res));
  assert.match(toolText(res), /URI: file:\/\/\/work\/project/);
  assert.ok(c.calls.some((x) => x.kind === 'roots'), 'the client was asked for its roots');
  const reqs = f.rec.requests().slice(n);
  assert.ok(reqs.some((e) => e.method === 'GET' && /text\/event-stream/.test(e.headers.accept ?? '')), 'the GET stream was opened upstream');
  assert.ok(reqs.some((e) => e.json?.result?.roots?.[0]?.uri === 'file:///work/project'), 'the roots answer reached the upstream');
  await c.close();
});

test('raw GET stream: server requests, answers, notifications; Last-Event-ID resumes upstream', async () => {
  const n = f.rec.requests().length;
  const s = await rawSession(f.url, f.tokens.alice, { capabilities: { roots: { listChanged: true } } });
  const hdr = (extra = {}) => ({ accept: 'text/event-stream', authorization: `Bearer ${f.tokens.alice}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion, ...extra });
  const g = await openStream(f.url, { headers: hdr() });
  assert.equal(g.status, 200, `GET stream: ${g.status} ${g.raw()}`);
  assert.match(String(g.headers['content-type']), /^text\/event-stream/);
  // server-everything asks for roots 350 ms after notifications/initialized; if the stream
  // was not open yet that request is lost, and roots/list_changed makes it ask again
  let rootsReq = await g.waitFor((m) => m.method === 'roots/list', 2000).catch(() => null);
  if (!rootsReq) {
    const lc = await s.notify('notifications/roots/list_changed');
    assert.ok(lc.status === 202 || lc.status === 200, `roots/list_changed: ${show(lc)}`);
    rootsReq = await g.waitFor((m) => m.method === 'roots/list', 5000);
  }
  const ev = g.events.find((e) => e.data && e.data.includes('"roots/list"'));
  assert.ok(ev?.id, `SSE events carry ids (needed for Last-Event-ID): ${g.raw().slice(0, 400)}`);

  const ans = await s.post({ jsonrpc: '2.0', id: rootsReq.id, result: { roots: [{ uri: 'file:///srv/raw', name: 'raw' }] } });
  assert.ok(ans.status === 202 || ans.status === 200, `POST of the roots answer: ${show(ans)}`);
  const log = await g.waitFor((m) => m.method === 'notifications/message' && /Roots updated: 1 root/.test(m.params?.data), 5000);
  assert.ok(log);

  const upGet = f.rec.requests().slice(n).find((e) => e.method === 'GET');
  assert.ok(upGet, 'GET forwarded upstream');
  const upRoots = sseMessages(upGet.response?.body).find((m) => m.method === 'roots/list');
  assert.ok(upRoots?._eventId, 'upstream roots/list event had an id');
  const upAns = f.rec.requests().slice(n).find((e) => e.json?.result?.roots?.[0]?.uri === 'file:///srv/raw');
  assert.ok(upAns, 'the roots answer reached the upstream');
  assert.equal(upAns.json.id, upRoots.id, 'with the upstream\'s request id');

  g.close();
  await sleep(300);
  const m = f.rec.requests().length;
  let g2;
  for (let i = 0; i < 10; i++) {
    g2 = await openStream(f.url, { headers: hdr({ 'last-event-id': ev.id }) });
    if (g2.status !== 409) break;
    g2.close();
    await sleep(200);
  }
  assert.equal(g2.status, 200, `GET with Last-Event-ID: ${g2.status} ${g2.raw()}`);
  const resumed = f.rec.requests().slice(m).find((e) => e.method === 'GET' && e.headers['last-event-id']);
  assert.ok(resumed, 'Last-Event-ID forwarded upstream');
  assert.equal(resumed.headers['last-event-id'], upRoots._eventId, 'the upstream gets its own event id back');
  const replay = await g2.waitFor((x) => x.method === 'notifications/message' && /Roots updated/.test(x.params?.data), 5000);
  assert.ok(replay, 'events after Last-Event-ID are replayed through the gateway');
  g2.close();
});

test('cancellation: notifications/cancelled reaches the upstream for the right request', async () => {
  const c = await connectClient(f.url, f.tokens.alice);
  const n = f.rec.requests().length;
  const ac = new AbortController();
  let first;
  const firstProgress = new Promise((r) => { first = r; });
  const call = c.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 6, steps: 12 } }, undefined,
    { signal: ac.signal, onprogress: () => first(), timeout: 15000 });
  await firstProgress;
  ac.abort('user pressed Esc');
  await assert.rejects(call);
  const cancelled = await f.rec.waitRequest((e) => e.json?.method === 'notifications/cancelled', 3000, n);
  const fwdCall = f.rec.requests().slice(n).find((e) => e.json?.method === 'tools/call');
  assert.ok(fwdCall, 'tools/call forwarded');
  assert.equal(cancelled.json.params.requestId, fwdCall.json.id, 'the cancellation names the forwarded request');
  // the session still works afterwards
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'still here' } })), 'Echo: still here');
  await c.close();
});

test('two users at once: separate gateway and upstream sessions, no crosstalk', async () => {
  const n = f.rec.requests().length;
  const [a, b] = await Promise.all([connectClient(f.url, f.tokens.alice), connectClient(f.url, f.tokens.bob)]);
  assert.notEqual(a.sessionId(), b.sessionId());
  const run = (c, who) => Promise.all(Array.from({ length: 5 }, (_, i) =>
    c.client.callTool({ name: 'echo', arguments: { message: `${who}-${i}` } }).then(toolText)));
  const [ra, rb] = await Promise.all([run(a, 'alice'), run(b, 'bob')]);
  assert.deepEqual(ra, [0, 1, 2, 3, 4].map((i) => `Echo: alice-${i}`));
  assert.deepEqual(rb, [0, 1, 2, 3, 4].map((i) => `Echo: bob-${i}`));
  const sidOf = (who) => new Set(f.rec.requests().slice(n)
    .filter((e) => String(e.json?.params?.arguments?.message ?? '').startsWith(`${who}-`))
    .map((e) => e.headers['mcp-session-id']));
  const sa = sidOf('alice');
  const sb = sidOf('bob');
  assert.equal(sa.size, 1, `alice's calls share one upstream session: ${[...sa]}`);
  assert.equal(sb.size, 1, `bob's calls share one upstream session: ${[...sb]}`);
  assert.notEqual([...sa][0], [...sb][0], 'alice and bob have different upstream sessions');
  await a.close();
  await b.close();
});
