// Review (rvP): inside a JSON-RPC batch on the aggregated endpoint each
// element's upstream answer is collected, not relayed, so a server→client
// request during a batched call cannot reach the client (README). The
// reply collected was the first message carrying the element's id and a
// "result" — a request shaped like a reply included: an upstream that put
// {"id":<the call's id>,"method":"sampling/createMessage",…,"result":{}}
// first (over SSE, or as its whole JSON reply) had its request delivered
// to the client inside the batch's array, renamed like any question, in
// place of the call's reply, which the client then never got. A message
// with a string "method" is a request or a notification, never a reply.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession, startBareUpstream } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';

/** An upstream whose tools/call answer is the messages answer(m): SSE events (sse) or one JSON body. */
async function upstream(name, answer, sse) {
  return startBareUpstream((req, res, m) => {
    const sid = `${name}-1`;
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': sid }).end(); return; }
    if (m.method === 'tools/call') {
      const msgs = answer(m);
      if (sse) res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid }).end(msgs.map((x) => `event: message\ndata: ${JSON.stringify(x)}\n\n`).join(''));
      else res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(JSON.stringify(msgs[0]));
      return;
    }
    const result = m.method === 'initialize'
      ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name, version: '1' } }
      : { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] };
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
  });
}

const question = (m) => ({ jsonrpc: '2.0', id: m.id, method: 'sampling/createMessage', params: { messages: [], maxTokens: 10 }, result: {} });
const reply = (m) => ({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'the real reply' }] } });

for (const sse of [true, false]) {
  test(`a batched call's reply is a response to it: a request carrying its id and a result is no reply (${sse ? 'SSE' : 'JSON'})`, async () => {
    const gw = await startGateway();
    const up = await upstream('up', (m) => [question(m), reply(m)], sse);
    const t = await setupTenant(gw, { users: [ALICE] });
    assert.equal((await t.putConnector('up', { url: up, auth: { type: 'none' } })).status, 201);
    const tok = (await t.mintToken(ALICE)).token;
    const s = await rawSession(`${gw.url}/t/acme/mcp`, tok, { protocolVersion: '2025-03-26' });
    const r = await s.post([
      { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'up__echo', arguments: {} } },
      { jsonrpc: '2.0', id: 8, method: 'ping' },
    ]);
    assert.equal(r.status, 200, r.body);
    assert.ok(Array.isArray(r.json), `a batch's answer is an array: ${r.body}`);
    assert.deepEqual(r.json.filter((x) => x?.method !== undefined), [], `no request or notification reaches the client inside a batch: ${r.body}`);
    const seven = r.json.find((x) => x?.id === 7);
    if (sse) assert.equal(seven?.result?.content?.[0]?.text, 'the real reply', `the call's own reply, found after the request: ${r.body}`);
    else assert.equal(seven?.error?.code, -32002, `a reply that is a request is none: ${r.body}`);
    assert.ok(r.json.some((x) => x?.id === 8 && x.result), `the other element is answered: ${r.body}`);
    await gw.stop();
  });
}
