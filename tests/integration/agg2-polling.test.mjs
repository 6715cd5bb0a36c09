// SSE polling (MCP 2025-11-25) behind the aggregated endpoint: an upstream
// may end an SSE stream early — the SDK's server does it with
// extra.closeSSEStream() (a POST stream, after its priming event) and
// transport.closeStandaloneSSEStream() (the GET stream) — and expects the
// client to come back with Last-Event-ID. The gateway is that client for its
// upstreams; whatever it does, its own client must still get the result and
// later notifications. Upstreams: "docs" (lib/sdk-upstream.mjs) and "ev"
// (server-everything), each behind a recorder.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient, rawSession, openStream, toolText } from './lib/mcp.mjs';
import { upstreamSession } from './lib/agg.mjs';
import { startMixedFixture, rawListAll, getHeaders, waitFor } from './lib/agg2.mjs';

let f;
before(async () => { f = await startMixedFixture(); });

test('tools/call whose upstream closes the POST stream after the priming event: the result still reaches the client', async () => {
  // control: the SDK client straight at docs fetches the result with a GET + Last-Event-ID
  const d = await connectClient(f.docs.url, null);
  const direct = await d.client.callTool({ name: 'poll-result', arguments: { delayMs: 300 } }, undefined, { timeout: 5000 });
  assert.equal(toolText(direct), 'docs:poll-result (stream closed early: true)', 'docs closed the stream early and the SDK client resumed');
  await d.close();

  const c = await connectClient(f.url, f.token);
  let res;
  try {
    res = await c.client.callTool({ name: 'docs__poll-result', arguments: { delayMs: 300 } }, undefined, { timeout: 5000 });
  } catch (e) {
    const call = f.recs.docs.requests().filter((x) => x.json?.method === 'tools/call').at(-1);
    const gets = f.recs.docs.requests().filter((x) => x.method === 'GET').slice(-2);
    assert.fail(`docs__poll-result through the gateway failed: ${e.message}\n` +
      `docs' reply to the call: ${JSON.stringify(call?.response?.body)}\n` +
      `last GETs to docs: ${JSON.stringify(gets.map((g) => ({ lastEventId: g.headers['last-event-id'], status: g.response?.status, body: g.response?.body?.slice(0, 200) })))}`);
  }
  assert.equal(toolText(res), 'docs:poll-result (stream closed early: true)');
  await c.close();
});

test('an upstream that ends its GET stream: notifications it sends afterwards still reach the client', async () => {
  const s = await rawSession(f.url, f.token);
  await rawListAll(s, 'tools/list', 'tools');
  const docsSid = upstreamSession(f.recs.docs, (e) => e.json?.method === 'tools/list').sid;
  let st = await openStream(f.url, { headers: getHeaders(s, f.token) });
  const sess = await f.docs.waitGetStream((x) => x.sid === docsSid);
  await s.request('tools/call', { name: 'docs__notify-me', arguments: { kind: 'tools' } });
  await st.waitFor((m) => m.method === 'notifications/tools/list_changed');
  const lastId = st.events.filter((e) => e.id).at(-1)?.id;
  assert.ok(lastId, 'the client has an event id to resume from');

  sess.transport.closeStandaloneSSEStream();
  await waitFor(() => f.docs.gets().filter((g) => g.sid === docsSid && g.status === 200).every((g) => !g.open),
    { what: 'docs to end its GET stream' });
  await f.docs.broadcast('resource', { uri: 'docs://handbook/after-close' });
  const want = (m) => m.params?.uri === 'docs://handbook/after-close';
  // either the gateway reconnects docs' GET stream (with its Last-Event-ID),
  // or it ends the client's stream so that the client resumes
  const got = await Promise.race([
    st.waitFor(want, 5000).then(() => 'live', () => 'missing'),
    st.ended.then(() => 'ended'),
  ]);
  if (got === 'ended') {
    st = await openStream(f.url, { headers: getHeaders(s, f.token, { 'last-event-id': lastId }) });
    await st.waitFor(want, 5000);
  } else {
    const gets = f.docs.gets().filter((g) => g.sid === docsSid);
    assert.equal(got, 'live', `the client's GET stream stayed open (ended: ${st.isEnded}) but the notification never came; ` +
      `docs GETs of the session after the close: ${JSON.stringify(gets.slice(1))}; client messages ${JSON.stringify(st.messages)}`);
  }
  st.close();
  await s.del();
});
