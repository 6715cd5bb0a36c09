// Audit: a call record's is_error says whether the tool's result reported
// an error — result.isError true, as the client reads it — whatever valid
// JSON the upstream spells it in ("isError" : true, line breaks, escapes in
// the key, any key order), in a JSON body or an SSE stream, in any
// chunking; a member "isError" elsewhere (inside structuredContent, in a
// string) is not the tool's error. It was a byte search for
// `"isError":` then an optional single space then `true`.
// Real parts: the gateway binary, a Streamable HTTP upstream answering with
// the exact bytes the test gives (lib/ctl-upstream.mjs, tool raw), the
// admin API reading the records.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

let gw, t, up, tok;
before(async () => {
  gw = await startGateway();
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  up = await startCtlUpstream({ name: 'raw' });
  const r = await t.putConnector('up', { url: up.url, auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  tok = (await t.mintToken('alice@acme.com')).token;
});
after(async () => { await gw?.stop(); await up?.stop(); });

let n = 0;
/** Calls raw with `result` (JSON text) through url, checks the client got it, returns the call's audit record. */
async function recordOf(s, name, result, opts = {}) {
  const tag = `c${++n}`;
  const r = await s.request('tools/call', { name, arguments: { tag, result, ...opts } });
  assert.equal(r.status, 200, r.body);
  const reply = r.messages.find((m) => m.result);
  assert.deepEqual(reply?.result, JSON.parse(result), `the client gets the result: ${r.body}`);
  let rec;
  await waitFor(async () => {
    const a = await t.admin('GET', '/audit?kind=call&tool=raw&limit=100');
    rec = a.json?.records?.find((x) => x.arguments?.tag === tag);
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: `the record of ${tag}` });
  assert.equal(rec.upstream_status, 200, JSON.stringify(rec));
  return rec;
}

const CASES = [
  // [what, result text, is_error]
  ['spaces around the colon', '{"content":[{"type":"text","text":"boom"}],"isError" : true}', true],
  ['line breaks and tabs', '{\n\t"content": [],\n\t"isError"\n\t:\ttrue\n}', true],
  ['isError first, then content holding braces and quotes',
    '{"isError":true,"content":[{"type":"text","text":"a \\"}] { \\"isError\\": false"}]}', true],
  ['an escape in the key', '{"content":[],"is\\u0045rror":true}', true],
  ['no error', '{"content":[{"type":"text","text":"fine"}],"isError" : false}', false],
  ['"isError" inside structuredContent only', '{"content":[],"structuredContent":{"isError":true},"isError":false}', false],
  ['"isError": true in a text', '{"content":[{"type":"text","text":"\\"isError\\": true"}]}', false],
];

for (const sse of [false, true]) {
  for (const chunk of [0, 3]) {
    for (const [what, result, want] of CASES) {
      test(`${sse ? 'SSE' : 'JSON'} answer${chunk ? ` in ${chunk}-byte writes` : ''}, ${what}: is_error ${want}`, async () => {
        const s = await rawSession(t.mcpUrl('up'), tok);
        const rec = await recordOf(s, 'raw', result, { sse, chunk });
        assert.equal(rec.is_error, want, JSON.stringify(rec));
      });
    }
  }
}

// The scan runs only once the answer names "isError" or has a \u escape
// (a name cannot be spelled otherwise): then from the start of the SSE event
// under way, the events before it holding neither.
for (const chunk of [0, 3, 5]) {
  for (const [what, result, want] of [CASES[0], CASES[3], CASES[4], CASES[6]]) {
    test(`SSE answer after other events${chunk ? ` in ${chunk}-byte writes` : ''}, ${what}: is_error ${want}`, async () => {
      const s = await rawSession(t.mcpUrl('up'), tok);
      const rec = await recordOf(s, 'raw', result, { sse: true, chunk, notes: 3 });
      assert.equal(rec.is_error, want, JSON.stringify(rec));
    });
  }
}

test('the aggregated endpoint: "isError" : true in the result is the tool\'s error', async () => {
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok);
  const rec = await recordOf(s, 'up__raw', '{"content":[{"type":"text","text":"boom"}], "isError" : true }');
  assert.equal(rec.is_error, true, JSON.stringify(rec));
  const ok = await recordOf(s, 'up__raw', '{"content":[],"structuredContent":{"isError":true}}');
  assert.equal(ok.is_error, false, JSON.stringify(ok));
});

// 2025-11-25 polling: the upstream ends the call's SSE stream after a
// priming event with an id, and the result comes on the GET the client
// resumes with — which the call's exchange never sees. The record says
// is_error is not known (null) and that the answer was resumed, instead of
// "false" whatever the result said. It said false before.
test('a call whose answer comes on a resumed stream (polling): is_error null, resumed', async () => {
  const s = await rawSession(t.mcpUrl('up'), tok);
  const tag = `c${++n}`;
  const r = await s.request('tools/call', { name: 'raw', arguments: { tag, result: '{"content":[],"isError":true}', sse: true, polling: true } });
  assert.equal(r.status, 200, r.body);
  assert.ok(!r.messages.some((m) => m.result || m.error), `no reply on the POST's stream: ${r.body}`);
  const last = [...r.body.matchAll(/^id: ?(.+)$/gm)].at(-1)?.[1];
  assert.ok(last, `the priming event's id reached the client: ${r.body}`);
  // the client resumes and gets the result through the gateway
  const st = await openStream(t.mcpUrl('up'), { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream', 'last-event-id': last } });
  assert.equal(st.status, 200);
  const got = await st.waitFor((m) => m.result);
  assert.equal(got.result.isError, true);
  st.close();
  let rec;
  await waitFor(async () => {
    const a = await t.admin('GET', '/audit?kind=call&tool=raw&limit=100');
    rec = a.json?.records?.find((x) => x.arguments?.tag === tag);
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: `the record of ${tag}` });
  assert.equal(rec.is_error, null, JSON.stringify(rec));
  assert.equal(rec.resumed, true, JSON.stringify(rec));
});
