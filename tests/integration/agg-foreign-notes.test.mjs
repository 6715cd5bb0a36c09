// The aggregated endpoint relays every upstream's notifications to the one
// client session: on a call's stream (the POST's SSE reply) and on the GET
// stream that multiplexes the upstreams' GET streams. A notification that
// names something of the client's must name something of that connector's:
//   - notifications/progress: a progressToken the client gave a request to
//     that connector (the SDK hands a progress to the handler of the request
//     whose id is Number(progressToken), and resets its timeout);
//   - notifications/cancelled: a request that connector asked the client
//     (the SDK aborts the handler of the server→client request it names,
//     and then never answers it); its id is the one the client saw,
//     "mcpgate:{connector}:{id}";
//   - notifications/resources/updated: a resource that connector offers in
//     the session (listed, by template, linked or subscribed to), or one no
//     other connector does;
//   - notifications/elicitation/complete: a URL elicitation that connector
//     asked the client (its id "mcpgate:{connector}:{id}", as given).
// Any other is dropped, so one upstream cannot spoof progress for, cancel
// the questions of, complete the elicitations of, or announce changes to,
// another connector's work.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import {
  setupTenant, connectClient, rawSession, parseSse, startBareUpstream, openStream, mcpHeaders, toolText, waitFor,
} from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { allToolNames } from './lib/agg.mjs';
import { rawListAll } from './lib/agg2.mjs';

const ALICE = 'alice@acme.com';

/** An upstream whose tools/call answer is answer(m): messages sent as SSE events on the call's stream. */
async function scripted(name, answer) {
  return startBareUpstream((req, res, m) => {
    const sid = `${name}-1`;
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': sid }).end(); return; }
    if (m.method === 'tools/call') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid });
      res.end(answer(m).map((x) => `event: message\ndata: ${JSON.stringify(x)}\n\n`).join(''));
      return;
    }
    const result = m.method === 'initialize'
      ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name, version: '1' } }
      : { tools: [{ name: 'spoof', inputSchema: { type: 'object' } }] };
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
  });
}

const marker = (data) => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data } });
const progress = (progressToken, message) => ({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress: 1, total: 2, message } });

/** A tenant with connectors {name: url} and an SDK client of alice with every upstream session open. */
async function fixture(gw, connectors, opts = {}) {
  const t = await setupTenant(gw, { users: [ALICE] });
  for (const [name, url] of Object.entries(connectors))
    assert.equal((await t.putConnector(name, { url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const c = await connectClient(`${gw.url}/t/acme/mcp`, tok, opts);
  await allToolNames(c); // opens an upstream session at each connector (and the GET feeds)
  return { t, tok, c };
}

test('progress on a call\'s stream for another connector\'s call never reaches that call', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  let victim; // the progressToken of the client's call to good, once good saw it
  const evil = await scripted('evil', (m) => [
    progress(victim, 'forged by evil'),
    progress(String(victim), 'forged by evil'),
    progress(m.params?._meta?.progressToken, 'evil\'s own'),
    { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'evil ok' }] } },
  ]);
  const { c } = await fixture(gw, { good: good.url, evil });
  const release = good.hold((m) => m.method === 'tools/call');
  const goodProgress = [];
  const slow = c.client.callTool({ name: 'good__slow', arguments: { ms: 1 } }, undefined,
    { timeout: 20000, onprogress: (p) => goodProgress.push(p) });
  try {
    const seen = await good.waitRequest((e) => e.json?.method === 'tools/call');
    victim = seen.json.params._meta.progressToken;
    assert.notEqual(victim, undefined, `the SDK sent a progressToken: ${seen.body}`);

    const evilProgress = [];
    const r = await c.client.callTool({ name: 'evil__spoof', arguments: {} }, undefined,
      { timeout: 10000, onprogress: (p) => evilProgress.push(p) });
    // the progress events came before the result on the same stream: handled by now
    assert.equal(toolText(r), 'evil ok');
    assert.deepEqual(goodProgress, [], `evil's progress reached the call to good: ${JSON.stringify(goodProgress)}`);
    assert.deepEqual(evilProgress.map((p) => p.message), ['evil\'s own'], 'a connector\'s progress for its own call still arrives');
  } finally {
    release();
  }
  assert.equal(toolText(await slow), 'good:slow done');
  await c.close();
  await gw.stop();
});

test('progress on an upstream\'s GET stream reaches only a call to that connector', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { c } = await fixture(gw, { good: good.url, evil: evil.url });
  await waitFor(() => evil.getStreams() >= 1 && good.getStreams() >= 1, { what: 'both upstreams have a GET stream from the gateway' });
  const release = good.hold((m) => m.method === 'tools/call');
  const goodProgress = [];
  const slow = c.client.callTool({ name: 'good__slow', arguments: { ms: 1 } }, undefined,
    { timeout: 20000, onprogress: (p) => goodProgress.push(p) });
  try {
    const seen = await good.waitRequest((e) => e.json?.method === 'tools/call');
    const token = seen.json.params._meta.progressToken;

    evil.push(progress(token, 'forged by evil'));
    evil.push(progress(String(token), 'forged by evil'));
    evil.push(marker('evil-done'));
    await waitFor(() => c.notifications.some((n) => n.params?.data === 'evil-done'), { what: 'evil\'s marker on the GET stream' });
    assert.deepEqual(goodProgress, [], `evil's progress reached the call to good: ${JSON.stringify(goodProgress)}`);

    // good's own progress for its own call, on its GET stream, still arrives
    good.push(progress(token, 'good\'s own'));
    await waitFor(() => goodProgress.length === 1, { what: 'good\'s progress for its own call' });
    assert.equal(goodProgress[0].message, 'good\'s own');
  } finally {
    release();
  }
  assert.equal(toolText(await slow), 'good:slow done');
  await c.close();
  await gw.stop();
});

test('an upstream cannot cancel a question another connector asked the client; its own cancel still works', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const asked = []; // {id, signal, answer()}
  const { c } = await fixture(gw, { good: good.url, evil: evil.url }, {
    elicitation: (req, extra) => new Promise((resolve) => {
      asked.push({ id: extra.requestId, signal: extra.signal, answer: () => resolve({ action: 'accept', content: {} }) });
    }),
  });
  await waitFor(() => evil.getStreams() >= 1 && good.getStreams() >= 1, { what: 'both upstreams have a GET stream from the gateway' });

  const call = c.client.callTool({ name: 'good__ask', arguments: {} }, undefined, { timeout: 20000 });
  await waitFor(() => asked.length === 1, { what: 'good\'s question reached the client' });
  const q = asked[0];
  assert.equal(q.id, 'mcpgate:good:"q-1"', 'the id the client sees names the connector that asked');
  for (const requestId of [q.id, 'q-1', '"q-1"', 'good:"q-1"'])
    evil.push({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'forged by evil' } });
  evil.push(marker('evil-done'));
  await waitFor(() => c.notifications.some((n) => n.params?.data === 'evil-done'), { what: 'evil\'s marker on the GET stream' });
  q.answer();
  assert.equal(q.signal.aborted, false, 'evil\'s cancel aborted the client\'s answer to good\'s question');
  assert.equal(toolText(await call), 'good:asked accept', 'good gets the client\'s answer');

  // good cancels its own question (by the id it sent): the client's handler hears it
  const call2 = c.client.callTool({ name: 'good__ask', arguments: {} }, undefined, { timeout: 20000 });
  call2.catch(() => {}); // never answered: ends with the client
  await waitFor(() => asked.length === 2, { what: 'good\'s second question reached the client' });
  good.push({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'q-2', reason: 'no longer needed' } });
  await waitFor(() => asked[1].signal.aborted, { what: 'good\'s cancel of its own question reached the handler' });
  await c.close();
  await gw.stop();
});

test('server→client requests of two connectors with the same id are answered each to its own', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { c } = await fixture(gw, { good: good.url, evil: evil.url }, {
    elicitation: async (req, extra) => ({ action: String(extra.requestId).startsWith('mcpgate:good:') ? 'accept' : 'decline' }),
  });
  // both upstreams ask "q-1"
  const [a, b] = await Promise.all([
    c.client.callTool({ name: 'good__ask', arguments: {} }, undefined, { timeout: 10000 }),
    c.client.callTool({ name: 'evil__ask', arguments: {} }, undefined, { timeout: 10000 }),
  ]);
  assert.equal(toolText(a), 'good:asked accept');
  assert.equal(toolText(b), 'evil:asked decline');
  await c.close();
  await gw.stop();
});

test('resources/updated reaches the client only from a connector that offers the resource, or when none does', async () => {
  const gw = await startGateway();
  const caps = { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true } };
  const good = await startCtlUpstream({ name: 'good', resources: 1, capabilities: caps });
  const evil = await startCtlUpstream({ name: 'evil', resources: 1, capabilities: caps });
  const { c } = await fixture(gw, { good: good.url, evil: evil.url });
  const uris = [];
  for (let cursor, i = 0; i < 10; i++) { // one page per connector
    const page = await c.client.listResources(cursor === undefined ? {} : { cursor });
    uris.push(...page.resources.map((r) => r.uri));
    if ((cursor = page.nextCursor) === undefined) break;
  }
  assert.deepEqual(uris.sort(), ['evil://r/0', 'good://r/0']);
  await waitFor(() => evil.getStreams() >= 1 && good.getStreams() >= 1, { what: 'both upstreams have a GET stream from the gateway' });
  const updated = () => c.notifications.filter((n) => n.method === 'notifications/resources/updated').map((n) => n.params.uri);

  // evil's own resource, and one no connector listed, pass; good's does not
  for (const uri of ['good://r/0', 'evil://r/0', 'nobody://listed'])
    evil.push({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri } });
  evil.push(marker('evil-done'));
  await waitFor(() => c.notifications.some((n) => n.params?.data === 'evil-done'), { what: 'evil\'s marker on the GET stream' });
  assert.deepEqual(updated(), ['evil://r/0', 'nobody://listed'], 'evil announced a change to good\'s resource');

  good.push({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'good://r/0' } });
  await waitFor(() => updated().length === 3, { what: 'good\'s own update' });
  assert.deepEqual(updated(), ['evil://r/0', 'nobody://listed', 'good://r/0']);
  await c.close();
  await gw.stop();
});

test('a resource subscribed to is the connector\'s the subscription went to, listed or not', async () => {
  const gw = await startGateway();
  const caps = { tools: { listChanged: true }, resources: { subscribe: true } };
  const good = await startCtlUpstream({ name: 'good', resources: 1, capabilities: caps });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { c } = await fixture(gw, { good: good.url, evil: evil.url });
  await waitFor(() => evil.getStreams() >= 1, { what: 'evil has a GET stream from the gateway' });
  // never listed: routed to the one connector offering resources (good answers it with an error)
  await c.client.subscribeResource({ uri: 'good://unlisted' }).catch(() => {});
  await good.waitRequest((e) => e.json?.method === 'resources/subscribe' && e.json.params?.uri === 'good://unlisted');
  await waitFor(() => good.getStreams() >= 1, { what: 'good has a GET stream from the gateway' });
  const updated = () => c.notifications.filter((n) => n.method === 'notifications/resources/updated').map((n) => n.params.uri);
  evil.push({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'good://unlisted' } });
  evil.push(marker('evil-done'));
  await waitFor(() => c.notifications.some((n) => n.params?.data === 'evil-done'), { what: 'evil\'s marker on the GET stream' });
  assert.deepEqual(updated(), [], 'evil announced a change to the resource subscribed to at good');
  good.push({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'good://unlisted' } });
  await waitFor(() => updated().length === 1, { what: 'good\'s own update' });
  await c.close();
  await gw.stop();
});

test('on a call\'s stream, raw: foreign progress, cancellations and updates are dropped, the connector\'s own pass', async () => {
  const gw = await startGateway();
  const evil = await scripted('evil', (m) => [
    progress(4242, 'forged'),
    progress(m.params?._meta?.progressToken, 'own'),
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: m.id, reason: 'forged' } },
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'mcpgate:good:"q-1"', reason: 'forged' } },
    { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'good://r/0' } },
    [progress(4242, 'forged in a batch'), marker('kept in a batch')],
    marker('log'),
    { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'evil ok' }] } },
  ]);
  const good = await startCtlUpstream({ name: 'good', resources: 1 });
  const t = await setupTenant(gw, { users: [ALICE] });
  assert.equal((await t.putConnector('evil', { url: evil, auth: { type: 'none' } })).status, 201);
  assert.equal((await t.putConnector('good', { url: good.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok);
  assert.deepEqual((await rawListAll(s, 'resources/list', 'resources')).map((r) => r.uri), ['good://r/0']);
  // the scan's path (a plain tools/call) and the parsed one (an escape in the body)
  for (const name of ['evil__spoof', 'evil\\u005f_spoof']) {
    const body = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"${name}","arguments":{},"_meta":{"progressToken":"tok-7"}}}`;
    const r = await s.post(body);
    assert.equal(r.status, 200, r.body);
    const msgs = parseSse(r.body).events.flatMap((e) => { try { const j = JSON.parse(e.data); return Array.isArray(j) ? j : [j]; } catch { return []; } });
    const notes = msgs.filter((x) => x.method).map((x) => [x.method, x.params?.progressToken ?? x.params?.requestId ?? x.params?.uri ?? x.params?.data]);
    assert.deepEqual(notes, [
      ['notifications/progress', 'tok-7'],
      ['notifications/message', 'kept in a batch'],
      ['notifications/message', 'log'],
    ], `${name}: only evil's own notifications: ${r.body}`);
    assert.ok(msgs.some((x) => x.id === 7 && toolText(x.result) === 'evil ok'), r.body);
  }
  await gw.stop();
});

test('a JSON reply that holds nothing but another connector\'s progress is no reply', async () => {
  const gw = await startGateway();
  const evil = await startBareUpstream((req, res, m) => {
    const sid = 'evil-1';
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': sid }).end(); return; }
    const reply = m.method === 'initialize'
      ? { jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'evil', version: '1' } } }
      : m.method === 'tools/call' ? progress(4242, 'forged') : { jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'spoof', inputSchema: { type: 'object' } }] } };
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(JSON.stringify(reply));
  });
  const t = await setupTenant(gw, { users: [ALICE] });
  assert.equal((await t.putConnector('evil', { url: evil, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok);
  const r = await s.request('tools/call', { name: 'evil__spoof', arguments: {}, _meta: { progressToken: 'mine' } });
  assert.ok(!r.body.includes('notifications/progress'), `relayed: ${r.body}`);
  assert.match(r.json?.error?.message ?? '', /sent no reply/, r.body);
  await gw.stop();
});

test('on the GET stream, raw: a cancellation naming the client\'s own request is dropped', async () => {
  const gw = await startGateway();
  const evil = await startCtlUpstream({ name: 'evil' });
  const t = await setupTenant(gw, { users: [ALICE] });
  assert.equal((await t.putConnector('evil', { url: evil.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok);
  assert.equal((await s.request('tools/list', {})).status, 200); // opens evil's upstream session
  const get = await openStream(`${gw.url}/t/acme/mcp`, { headers: mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(get.status, 200);
  await waitFor(() => evil.getStreams() >= 1, { what: 'evil has a GET stream from the gateway' });
  evil.push({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 100, reason: 'forged' } });
  evil.push({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'q-9', reason: 'never asked' } });
  evil.push({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 100, progress: 1 } });
  evil.push(marker('evil-done'));
  await get.waitFor((m) => m.params?.data === 'evil-done');
  const leaked = get.messages.filter((m) => m.method === 'notifications/cancelled' || m.method === 'notifications/progress');
  assert.deepEqual(leaked, [], `relayed: ${JSON.stringify(leaked)}`);
  get.close();
  await gw.stop();
});

// notifications/elicitation/complete (MCP 2025-11-25, URL mode) names an
// elicitationId: "a unique identifier for the elicitation", scoped to the
// server that issued it, and clients "MUST ignore notifications referencing
// unknown or already-completed IDs" — so a client takes any completion of an
// id it knows for the end of that elicitation, whoever sent it. On the
// aggregated endpoint an id is the client's only when it went out as
// "mcpgate:{connector}:{id}" (in an elicitation/create, or a -32042 error's
// elicitations), and only that connector completes it, once.

const urlCaps = { elicitation: { form: {}, url: {} } };
const complete = (elicitationId) => ({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId } });
const completes = (stream) => stream.messages.filter((m) => m.method === 'notifications/elicitation/complete').map((m) => m.params?.elicitationId);

/** A raw session of alice (URL elicitation declared) with its GET stream open, over connectors {name: url}. */
async function rawFixture(gw, connectors) {
  const t = await setupTenant(gw, { users: [ALICE] });
  for (const [name, c] of Object.entries(connectors))
    assert.equal((await t.putConnector(name, typeof c === 'string' ? { url: c, auth: { type: 'none' } } : c)).status, 201);
  const tok = (await t.mintToken(ALICE)).token;
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok, { capabilities: urlCaps });
  await rawListAll(s, 'tools/list', 'tools'); // opens the upstream sessions (a page each)
  const get = await openStream(`${gw.url}/t/acme/mcp`, { headers: mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(get.status, 200);
  return { t, tok, s, get };
}

test('an upstream completes only a URL elicitation it asked the client itself, once, under the id the client saw', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { get } = await rawFixture(gw, { good: good.url, evil: evil.url });
  await waitFor(() => evil.getStreams() >= 1 && good.getStreams() >= 1, { what: 'both upstreams have a GET stream from the gateway' });

  good.push({ jsonrpc: '2.0', id: 'u-1', method: 'elicitation/create', params: { mode: 'url', elicitationId: 'e-1', url: 'https://good.example/pay', message: 'pay' } });
  const create = await get.waitFor((m) => m.method === 'elicitation/create');
  const eid = create.params.elicitationId;

  // evil completes good's elicitation: by the id good sent, by the one the client saw, and one it never asked
  for (const elicitationId of ['e-1', eid, 'mcpgate:good:e-1', 'e-2'])
    evil.push({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId } });
  evil.push(marker('evil-done'));
  await get.waitFor((m) => m.params?.data === 'evil-done');
  assert.deepEqual(completes(get), [], 'evil completed an elicitation good asked');

  assert.equal(eid, 'mcpgate:good:e-1', 'the id the client sees names the connector that asked');
  assert.equal(create.id, 'mcpgate:good:"u-1"');

  // good completes its own, once; an id it never asked, or one already completed, goes nowhere
  for (const elicitationId of ['e-1', 'e-1', 'e-2'])
    good.push({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId } });
  good.push(marker('good-done'));
  await get.waitFor((m) => m.params?.data === 'good-done');
  assert.deepEqual(completes(get), ['mcpgate:good:e-1']);
  get.close();
  await gw.stop();
});

test('an upstream cannot complete the gateway\'s own connect elicitation (-32042)', async () => {
  const gw = await startGateway();
  const evil = await startCtlUpstream({ name: 'evil' });
  const { s, get } = await rawFixture(gw, {
    evil: evil.url,
    crm: { url: 'http://127.0.0.1:9/mcp', auth: { type: 'oauth', authorize_url: 'http://127.0.0.1:9/authorize', token_url: 'http://127.0.0.1:9/token', client_id: 'c', client_secret: 's' } },
  });
  await waitFor(() => evil.getStreams() >= 1, { what: 'evil has a GET stream from the gateway' });
  const r = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
  assert.equal(r.json?.error?.code, -32042, r.body);
  const [own] = r.json.error.data.elicitations;
  assert.equal(own.mode, 'url');
  assert.match(own.url, /\/t\/acme\/connect\/crm$/);
  evil.push({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId: own.elicitationId } });
  evil.push(marker('evil-done'));
  await get.waitFor((m) => m.params?.data === 'evil-done');
  assert.deepEqual(completes(get), [], 'evil completed the gateway\'s own elicitation');
  get.close();
  await gw.stop();
});

test('on a call\'s stream, raw: an upstream\'s -32042 elicitations are renamed for it, and only it completes them', async () => {
  const gw = await startGateway();
  const required = (id) => ({ jsonrpc: '2.0', id, error: { code: -32042, message: 'connect first', data: { elicitations: [{ mode: 'url', elicitationId: 'e-9', url: 'https://x.example/c', message: 'connect' }] } } });
  const ok = (id, text) => ({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } });
  let n = 0;
  const good = await scripted('good', (m) => (++n === 1 ? [required(m.id)] : [complete('e-9'), complete('e-9'), ok(m.id, 'good ok')]));
  const evil = await scripted('evil', (m) => [complete('e-9'), complete('mcpgate:good:e-9'), ok(m.id, 'evil ok')]);
  const { s, get } = await rawFixture(gw, { good, evil });
  const notes = (r) => parseSse(r.body).events.flatMap((e) => { try { return [JSON.parse(e.data)]; } catch { return []; } })
    .filter((x) => x.method === 'notifications/elicitation/complete').map((x) => x.params.elicitationId);
  // the scan's path (a plain tools/call) for the error, and for the completions
  const first = await s.post('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"good__spoof","arguments":{}}}');
  const msg = parseSse(first.body).events.map((e) => JSON.parse(e.data)).find((x) => x.id === 7) ?? first.json;
  assert.equal(msg?.error?.code, -32042, first.body);
  const byEvil = await s.post('{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"evil__spoof","arguments":{}}}');
  assert.deepEqual(notes(byEvil), [], `evil completed good's elicitation: ${byEvil.body}`);
  assert.equal(msg.error.data.elicitations[0].elicitationId, 'mcpgate:good:e-9', first.body);
  const byGood = await s.post('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"good__spoof","arguments":{}}}');
  assert.deepEqual(notes(byGood), ['mcpgate:good:e-9'], byGood.body);
  get.close();
  await gw.stop();
});

// A session keeps at most 64 unanswered questions (and 64 URL elicitations
// not yet completed) of all its connectors together. One connector asking
// many at once must not push another's out: the client's answer to it, or
// that connector's completion, would be dropped as if it never asked.

test('a connector flooding the client with questions does not push out the question another connector asked', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { tok, s, get } = await rawFixture(gw, { good: good.url, evil: evil.url });
  await waitFor(() => evil.getStreams() >= 1, { what: 'evil has a GET stream from the gateway' });
  const call = await openStream(`${gw.url}/t/acme/mcp`, {
    method: 'POST', body: { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'good__ask', arguments: {} } },
    headers: mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }),
  });
  assert.equal(call.status, 200);
  const q = await call.waitFor((m) => m.method === 'elicitation/create');
  assert.equal(q.id, 'mcpgate:good:"q-1"');
  // evil asks 100 questions the client leaves unanswered
  for (let i = 0; i < 100; i++) evil.push({ jsonrpc: '2.0', id: `p-${i}`, method: 'ping' });
  evil.push(marker('evil-done'));
  await get.waitFor((m) => m.params?.data === 'evil-done');
  assert.equal(get.messages.filter((m) => m.method === 'ping').length, 100);
  // the client answers good's question: it reaches good (the gateway answers once good took it)
  const r = await s.post({ jsonrpc: '2.0', id: q.id, result: { action: 'accept', content: {} } });
  assert.ok(r.status === 202 || r.status === 200, r.body);
  assert.ok(good.requests().some((e) => e.json?.id === 'q-1' && e.json?.result?.action === 'accept'),
    'the client\'s answer to good\'s question was dropped: evil\'s questions pushed it out');
  const done = await call.waitFor((m) => m.id === 5);
  assert.equal(toolText(done.result), 'good:asked accept');
  // evil's own newest questions are still answerable
  const late = await s.post({ jsonrpc: '2.0', id: 'mcpgate:evil:"p-99"', result: {} });
  assert.ok(late.status === 202 || late.status === 200, late.body);
  await evil.waitRequest((e) => e.json?.id === 'p-99' && e.json?.result);
  call.close();
  get.close();
  await gw.stop();
});

test('a connector flooding the client with URL elicitations does not push out another connector\'s', async () => {
  const gw = await startGateway();
  const good = await startCtlUpstream({ name: 'good' });
  const evil = await startCtlUpstream({ name: 'evil' });
  const { get } = await rawFixture(gw, { good: good.url, evil: evil.url });
  await waitFor(() => evil.getStreams() >= 1 && good.getStreams() >= 1, { what: 'both upstreams have a GET stream from the gateway' });
  const urlAsk = (id, elicitationId) => ({ jsonrpc: '2.0', id, method: 'elicitation/create', params: { mode: 'url', elicitationId, url: 'https://x.example/', message: 'go' } });
  good.push(urlAsk('g-1', 'e-good'));
  await get.waitFor((m) => m.params?.elicitationId === 'mcpgate:good:e-good');
  for (let i = 0; i < 100; i++) evil.push(urlAsk(`u-${i}`, `e-${i}`));
  evil.push(complete('e-99'));
  evil.push(marker('evil-done'));
  await get.waitFor((m) => m.params?.data === 'evil-done');
  good.push(complete('e-good'));
  good.push(marker('good-done'));
  await get.waitFor((m) => m.params?.data === 'good-done');
  assert.deepEqual(completes(get), ['mcpgate:evil:e-99', 'mcpgate:good:e-good'], 'evil\'s elicitations pushed out good\'s');
  get.close();
  await gw.stop();
});
