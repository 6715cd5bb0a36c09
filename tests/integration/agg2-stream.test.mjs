// The client's GET stream on the aggregated endpoint multiplexes the
// upstreams' GET streams: "docs" (the SDK's McpServer with a replaying event
// store, lib/sdk-upstream.mjs) and "ev" (server-everything), each behind a
// recorder. Notifications an upstream sends on its own GET stream reach the
// client; event ids are the gateway's own, and one Last-Event-ID resumes each
// upstream where it was (the gateway sends each upstream its own last id).
//
// Why not the SDK's InMemoryEventStore (examples/shared, 1.32.2) for docs: its
// event ids start with the stream id and getStreamIdFromEventId() takes the
// part before the first "_"; the standalone GET stream's id is "_GET_stream",
// so that part is "" and replayEventsAfter() returns "" without replaying —
// and the resumed stream is registered under "" so later live events are lost
// too. server-everything's own store replays every stream's events after the
// id and returns the event id as the stream id, so ev replay is not asserted.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';

import { ToolListChangedNotificationSchema, PromptListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import { connectClient, rawSession, openStream, sleep } from './lib/mcp.mjs';
import { listAllTools, upstreamSession } from './lib/agg.mjs';
import { startMixedFixture, rawListAll, getHeaders, sseEvents, rpcFrames, waitFor } from './lib/agg2.mjs';

let f;
before(async () => { f = await startMixedFixture(); });

const call = (s, name, args = {}) => s.request('tools/call', { name, arguments: args });
const docsEvents = (sid, pred = () => true) => f.docs.events().filter((e) => e.sid === sid && pred(e.message));
const isMethod = (m) => (x) => x?.method === m;

/** A raw session whose upstream sessions (docs and ev) exist: tools/list paged to the end. */
async function rawWithUpstreams() {
  const s = await rawSession(f.url, f.token);
  const names = (await rawListAll(s, 'tools/list', 'tools')).map((t) => t.name);
  assert.ok(names.includes('docs__notify-me') && names.includes('ev__echo'), `both connectors listed: ${names}`);
  const docsSid = upstreamSession(f.recs.docs, (e) => e.json?.method === 'tools/list').sid;
  const evSid = upstreamSession(f.recs.ev, (e) => e.json?.method === 'tools/list').sid;
  assert.ok(docsSid && evSid, 'upstream sessions opened');
  return { s, docsSid, evSid };
}

/** Waits until every docs GET stream of an upstream session has closed. */
const docsGetsClosed = (sid) => waitFor(() => f.docs.gets().filter((g) => g.sid === sid).every((g) => !g.open),
  { timeoutMs: 5000, what: `the gateway to close docs' GET stream of ${sid} after the client left` });

test('SDK client: notifications/tools/list_changed and prompts/list_changed sent on docs\' GET stream reach the client\'s GET stream', async () => {
  const c = await connectClient(f.url, f.token);
  const got = { tools: 0, prompts: 0 };
  c.client.setNotificationHandler(ToolListChangedNotificationSchema, () => { got.tools++; });
  c.client.setNotificationHandler(PromptListChangedNotificationSchema, () => { got.prompts++; });
  // the client's GET stream is open before any upstream session exists: the
  // upstream GET streams join it as the sessions open
  const names = (await listAllTools(c)).tools.map((t) => t.name);
  assert.ok(names.includes('docs__notify-me'), `docs tools listed: ${names}`);
  const docsSid = upstreamSession(f.recs.docs, (e) => e.json?.method === 'tools/list').sid;
  const evSid = upstreamSession(f.recs.ev, (e) => e.json?.method === 'tools/list').sid;
  await f.docs.waitGetStream((x) => x.sid === docsSid);
  await f.recs.ev.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === evSid, 5000);

  const r = await c.client.callTool({ name: 'docs__notify-me', arguments: { kind: 'tools' } });
  assert.equal(r.content[0].text, 'docs:notify-me tools x1');
  await waitFor(() => got.tools === 1, { what: `tools/list_changed at the client (notifications: ${JSON.stringify(c.notifications)})` });
  assert.equal(docsEvents(docsSid, isMethod('notifications/tools/list_changed')).length, 1, 'docs sent it on its GET stream (event store of the GET stream)');

  await c.client.callTool({ name: 'docs__notify-me', arguments: { kind: 'prompts', count: 2 } });
  await waitFor(() => got.prompts === 2, { what: `two prompts/list_changed at the client (got ${JSON.stringify(got)})` });
  await sleep(200);
  assert.deepEqual(got, { tools: 1, prompts: 2 }, 'each notification once');
  await c.close();
});

test('resumption: Last-Event-ID replays what docs sent while the client was away; the gateway hands docs its own last id; ids are the gateway\'s', async () => {
  const { s, docsSid, evSid } = await rawWithUpstreams();
  const st1 = await openStream(f.url, { headers: getHeaders(s, f.token) });
  assert.equal(st1.status, 200, 'GET stream');
  assert.match(String(st1.headers['content-type']), /^text\/event-stream/);
  await f.docs.waitGetStream((x) => x.sid === docsSid);

  const r = await call(s, 'docs__notify-me', { kind: 'tools' });
  assert.equal(r.status, 200, `notify-me: ${r.body}`);
  assert.ok(!r.messages.some(isMethod('notifications/tools/list_changed')), 'not on the call\'s own stream');
  await st1.waitFor(isMethod('notifications/tools/list_changed'));
  const a = st1.events.find((e) => /tools\/list_changed/.test(e.data ?? ''));
  const upA = docsEvents(docsSid, isMethod('notifications/tools/list_changed')).at(-1)?.id;
  assert.ok(upA, 'docs stored the event with an id');
  assert.ok(a.id, `the client's event has an id: ${JSON.stringify(a)}`);
  assert.notEqual(a.id, upA, 'not the upstream\'s id');
  assert.ok(!a.id.includes(upA), `the upstream id does not show through: ${a.id} vs ${upA}`);

  st1.close();
  await docsGetsClosed(docsSid);

  // docs sends two events while nobody listens
  const n0 = docsEvents(docsSid).length;
  for (const uri of ['docs://handbook/missed-1', 'docs://handbook/missed-2']) {
    const x = await call(s, 'docs__notify-me', { kind: 'resource', uri, delayMs: 0 });
    assert.equal(x.status, 200, x.body);
  }
  await waitFor(() => docsEvents(docsSid).length >= n0 + 2, { what: 'docs to store the missed events' });
  const missedIds = docsEvents(docsSid).slice(n0).map((e) => e.id);

  const mDocs = f.recs.docs.requests().length;
  const mEv = f.recs.ev.requests().length;
  const st2 = await openStream(f.url, { headers: getHeaders(s, f.token, { 'last-event-id': a.id }) });
  assert.equal(st2.status, 200, 'resumed GET stream');
  await st2.waitFor((m) => m.params?.uri === 'docs://handbook/missed-2');
  const replayed = st2.events.filter((e) => /resources\/updated/.test(e.data ?? ''));
  assert.deepEqual(replayed.map((e) => JSON.parse(e.data).params.uri), ['docs://handbook/missed-1', 'docs://handbook/missed-2'], 'both missed events, in order');
  assert.ok(!st2.messages.some(isMethod('notifications/tools/list_changed')), 'the event the client had is not sent again');
  for (const e of replayed) {
    assert.ok(e.id && e.id !== a.id, `replayed events carry new gateway ids: ${JSON.stringify(e)}`);
    assert.ok(!missedIds.some((u) => e.id === u || e.id.includes(u)), `gateway ids, not docs': ${e.id}`);
  }
  const g = await f.recs.docs.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === docsSid, 5000, mDocs);
  assert.equal(g.headers['last-event-id'], upA, 'the gateway sent docs its own last event id');
  const ge = await f.recs.ev.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === evSid, 5000, mEv);
  assert.equal(ge.headers['last-event-id'], undefined, 'ev sent nothing with an id: no Last-Event-ID for it');

  // live events flow on the resumed stream
  await call(s, 'docs__notify-me', { kind: 'prompts' });
  await st2.waitFor(isMethod('notifications/prompts/list_changed'));
  const last = st2.events.filter((e) => e.id).at(-1);
  assert.match(last.data, /prompts\/list_changed/);
  st2.close();
  await docsGetsClosed(docsSid);

  // resuming from the latest id replays only what came after it
  await call(s, 'docs__notify-me', { kind: 'resource', uri: 'docs://handbook/missed-3', delayMs: 0 });
  await waitFor(() => docsEvents(docsSid, (m) => m.params?.uri === 'docs://handbook/missed-3').length === 1);
  const st3 = await openStream(f.url, { headers: getHeaders(s, f.token, { 'last-event-id': last.id }) });
  await st3.waitFor((m) => m.params?.uri === 'docs://handbook/missed-3');
  await sleep(300);
  assert.deepEqual(st3.messages.map((m) => m.method + (m.params?.uri ? ` ${m.params.uri}` : '')),
    ['notifications/resources/updated docs://handbook/missed-3'], 'exactly the one event after the id');
  st3.close();
  await s.del();
});

test('one stream carries both upstreams; the event id remembers each one, and a reconnect hands each upstream its own last id', async () => {
  const { s, docsSid, evSid } = await rawWithUpstreams();
  const mEv = f.recs.ev.requests().length;
  const st1 = await openStream(f.url, { headers: getHeaders(s, f.token) });
  await f.docs.waitGetStream((x) => x.sid === docsSid);
  const evGet = await f.recs.ev.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === evSid, 5000, mEv);

  // ev: a logging message on its GET stream (sent at once, then every 5 s until toggled off)
  let x = await call(s, 'ev__toggle-simulated-logging');
  assert.match(x.messages.find((m) => m.result)?.result?.content?.[0]?.text ?? '', /^Started simulated/, x.body);
  await st1.waitFor(isMethod('notifications/message'));
  x = await call(s, 'ev__toggle-simulated-logging');
  assert.match(x.messages.find((m) => m.result)?.result?.content?.[0]?.text ?? '', /^Stopped simulated/, x.body);
  // docs: a list_changed on its GET stream
  await call(s, 'docs__notify-me', { kind: 'tools' });
  await st1.waitFor(isMethod('notifications/tools/list_changed'));

  const evUp = sseEvents(evGet.response?.body ?? '').filter((e) => e.msg?.method === 'notifications/message').at(-1)?.id;
  assert.ok(evUp, `ev's GET stream gave the logging message an id: ${evGet.response?.body?.slice(0, 300)}`);
  const docsUp = docsEvents(docsSid, isMethod('notifications/tools/list_changed')).at(-1).id;
  const ids = st1.events.filter((e) => e.id).map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `event ids are unique: ${ids}`);
  const lastId = st1.events.filter((e) => e.id).at(-1).id;
  assert.match(st1.events.filter((e) => e.id).at(-1).data, /tools\/list_changed/, 'the last event with an id is docs\'');
  for (const u of [evUp, docsUp]) assert.ok(!ids.includes(u), `upstream id ${u} not shown to the client`);

  st1.close();
  await docsGetsClosed(docsSid);
  const mDocs2 = f.recs.docs.requests().length;
  const mEv2 = f.recs.ev.requests().length;
  const st2 = await openStream(f.url, { headers: getHeaders(s, f.token, { 'last-event-id': lastId }) });
  assert.equal(st2.status, 200);
  const g = await f.recs.docs.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === docsSid, 5000, mDocs2);
  const ge = await f.recs.ev.waitRequest((e) => e.method === 'GET' && e.headers['mcp-session-id'] === evSid, 5000, mEv2);
  assert.equal(g.headers['last-event-id'], docsUp, 'docs gets its own last id');
  assert.equal(ge.headers['last-event-id'], evUp, 'ev gets its own last id (from the same client id)');
  st2.close();
  await s.del();
});

test('server→client requests on an upstream GET stream: ev\'s roots/list reaches the client as mcpgate:ev:<id>; the answer goes back to ev with the original id', async () => {
  const s = await rawSession(f.url, f.token, { capabilities: { roots: { listChanged: true } } });
  const st = await openStream(f.url, { headers: getHeaders(s, f.token) });
  const mEv = f.recs.ev.requests().length;
  // ev's upstream session opens during this list (with the client's roots
  // capability); server-everything asks roots/list on its GET stream 350 ms
  // after notifications/initialized
  await rawListAll(s, 'tools/list', 'tools');
  const req = await st.waitFor(isMethod('roots/list'), 5000);
  const evGet = f.recs.ev.requests().slice(mEv).find((e) => e.method === 'GET');
  assert.ok(evGet, 'the gateway opened ev\'s GET stream');
  const upReq = sseEvents(evGet.response?.body ?? '').find((e) => e.msg?.method === 'roots/list')?.msg;
  assert.ok(upReq, `roots/list on ev's GET stream: ${evGet.response?.body?.slice(0, 300)}`);
  assert.equal(req.id, `mcpgate:ev:${JSON.stringify(upReq.id)}`, 'the client sees the gateway\'s id for it');
  const init = rpcFrames(f.recs.ev, 'initialize').at(-1).msg;
  assert.deepEqual(init.params.capabilities, { roots: { listChanged: true } }, 'ev was told the client\'s capabilities');

  const roots = [{ uri: 'file:///work/acme', name: 'acme' }];
  const r = await s.post({ jsonrpc: '2.0', id: req.id, result: { roots } });
  assert.equal(r.status, 202, `the answer is accepted: ${r.status} ${r.body}`);
  const answer = await f.recs.ev.waitRequest((e) => e.json && !e.json.method && e.json.result?.roots, 5000, mEv);
  assert.deepEqual(answer.json.id, upReq.id, 'ev got the answer under its own id');
  assert.deepEqual(answer.json.result.roots, roots);
  assert.equal(answer.headers['mcp-session-id'], evGet.headers['mcp-session-id'], 'within the same upstream session');
  assert.equal(rpcFrames(f.recs.docs, 'roots/list').length, 0, 'docs is not involved');
  st.close();
  await s.del();
});

test('Last-Event-ID: only the ids of the connectors the stream feeds are kept and echoed in event ids, never the rest of what the client sent', async () => {
  // found by review: the client's whole decoded Last-Event-ID (up to the
  // header cap) was echoed into the id of every event the stream sent
  const { s, docsSid } = await rawWithUpstreams();
  const sent = { junk: 'x'.repeat(2000), nested: { a: [1, 2, 3] }, ev: 'y'.repeat(600) };
  const lastId = Buffer.from(JSON.stringify(sent)).toString('base64url');
  const st = await openStream(f.url, { headers: getHeaders(s, f.token, { 'last-event-id': lastId }) });
  assert.equal(st.status, 200);
  await f.docs.waitGetStream((x) => x.sid === docsSid);
  await call(s, 'docs__notify-me', { kind: 'tools' });
  await st.waitFor(isMethod('notifications/tools/list_changed'));
  const id = st.events.filter((e) => e.id).at(-1).id;
  const decoded = JSON.parse(Buffer.from(id, 'base64url').toString());
  assert.deepEqual(Object.keys(decoded), ['docs'], `only docs' own last id: ${JSON.stringify(decoded).slice(0, 200)}`);
  assert.ok(id.length < 200, `a short id: ${id.length} characters`);
  st.close();
  await s.del();
});
