// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// tests/integration/request-scan.test.mjs — the common POST is read by a
// scan (gw__mcp_post_lite, gateway/base/json_check.c's gw_json_pick), not a
// parse; anything the scan does not decide goes to the strict parse. Both
// readings must give the same answers: the policy decides on the name the
// upstream will read, whichever way it is spelled; duplicate keys at any
// depth are refused; the aggregated endpoint forwards the client's bytes
// with only the name's value changed; a reply is relayed byte for byte only
// when nothing in it needed the gateway's attention.
import assert from 'node:assert/strict';
import { test, before, after } from 'node:test';

import { startAggFixture, forwardedCalls, quiet } from './lib/agg.mjs';
import { rawSession, startBareUpstream, parseSse } from './lib/mcp.mjs';

let f;
before(async () => {
  f = await startAggFixture({
    connectors: ['alpha'],
    policy: { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'alpha', allow: ['*'], block: ['get-env'] }] },
  });
});
after(async () => {
  await f?.gw.stop();
  for (const u of Object.values(f?.ups ?? {})) await u.stop?.();
});

const direct = () => f.t.mcpUrl('alpha');

async function calls(rec, what, fn) {
  const n = rec.requests().length;
  const r = await fn();
  await quiet(rec, 150, 1500);
  return { r, sent: rec.requests().slice(n), what };
}

test('the same blocked tool spelled with escapes is blocked on both endpoints; nothing reaches the upstream', async () => {
  const rec = f.recs.alpha;
  for (const [url, name] of [[direct(), 'get-env'], [f.url, 'alpha__get-env']]) {
    const s = await rawSession(url, f.tokens.alice);
    const spellings = [name, name.replace('g', '\\u0067'), name.replace('-', '\\u002d'), name.replace('env', 'e\\u006ev')];
    for (const [i, sp] of spellings.entries()) {
      const body = `{"jsonrpc":"2.0","id":${700 + i},"method":"tools/call","params":{"name":"${sp}","arguments":{}}}`;
      const { r, sent } = await calls(rec, body, () => s.post(body));
      assert.equal(r.status, 200, `${url} ${body}: ${r.status} ${r.body}`);
      const m = r.messages.find((x) => x.id === 700 + i);
      assert.ok(m?.error, `${url} ${sp}: refused with a JSON-RPC error, got ${r.body}`);
      assert.equal(forwardedCalls({ requests: () => sent }, name.replace('alpha__', '')).length, 0, `${url} ${sp}: nothing forwarded`);
    }
    // and an allowed tool goes through spelled either way
    for (const [i, sp] of ['echo', 'ech\\u006f'].entries()) {
      const full = url === f.url ? `alpha__${sp}` : sp;
      const body = `{"jsonrpc":"2.0","id":${800 + i},"method":"tools/call","params":{"name":"${full}","arguments":{"message":"m${i}"}}}`;
      const r = await s.post(body);
      const m = r.messages.find((x) => x.id === 800 + i);
      assert.ok(m?.result, `${url} ${full}: answered, got ${r.status} ${r.body}`);
      assert.match(JSON.stringify(m.result), new RegExp(`m${i}`), `${url} ${full}: the echo of its argument`);
    }
  }
});

test('duplicate keys anywhere in a tools/call are refused on the aggregated endpoint too, before anything is sent', async () => {
  const rec = f.recs.alpha;
  const s = await rawSession(f.url, f.tokens.alice);
  const dups = [
    '{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"alpha__echo","name":"alpha__get-env","arguments":{}}}',
    '{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"a","message":"b"}}}',
    '{"jsonrpc":"2.0","id":43,"id":44,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"a"}}}',
    '{"jsonrpc":"2.0","id":45,"method":"tools/call","params":{"name":"alpha__echo","n\\u0061me":"alpha__get-env","arguments":{}}}',
  ];
  for (const body of dups) {
    const { r, sent } = await calls(rec, body, () => s.post(body));
    assert.equal(r.status, 400, `${body}: expected 400, got ${r.status} ${r.body}`);
    const calls2 = sent.filter((e) => /tools\/call/.test(e.body));
    assert.equal(calls2.length, 0, `${body}: nothing forwarded, got ${calls2.map((e) => e.body).join(' | ')}`);
  }
});

test('a raw NUL byte in a request body is refused on both endpoints, before anything is sent', async () => {
  const rec = f.recs.alpha;
  for (const [url, name] of [[direct(), 'echo'], [f.url, 'alpha__echo']]) {
    const s = await rawSession(url, f.tokens.alice);
    for (const body of [
      `{"jsonrpc":"2.0","id":961\u0000,"method":"tools/call","params":{"name":"${name}","arguments":{"message":"nul"}}}`,
      `{"jsonrpc":"2.0","id":962,"method":"tools/call","params":{"name":"${name}","arguments":{"n":1\u0000}}}`,
      `{"jsonrpc":"2.0","id":963,"method":"tools/call","params":{"name":"${name}","arguments":{"b":true\u0000}}}`,
    ]) {
      const { r, sent } = await calls(rec, body, () => s.post(body));
      assert.equal(r.status, 400, `${url} ${JSON.stringify(body)}: expected 400, got ${r.status} ${r.body}`);
      assert.equal(sent.filter((e) => /tools\/call/.test(e.body)).length, 0, `${url}: nothing forwarded`);
    }
  }
});

// A body the scan leaves to the parse (a member of params named with a capital)
// whose tree would take ~80 times its 3 MB (empty objects): refused as a
// parse error before it is built, nothing forwarded, on both endpoints.
test('a request whose parse would take ~250 MB for 3 MB of text: a parse error, nothing forwarded', async () => {
  const rec = f.recs.alpha;
  const pad = '{},'.repeat(1000 * 1000) + '{}';
  for (const [url, name] of [[direct(), 'echo'], [f.url, 'alpha__echo']]) {
    const s = await rawSession(url, f.tokens.alice);
    const body = `{"jsonrpc":"2.0","id":971,"method":"tools/call","params":{"name":"${name}","Extra":1,"arguments":{"pad":[${pad}]}}}`;
    const { r, sent } = await calls(rec, 'bloat', () => s.post(body));
    assert.equal(r.status, 400, `${url}: expected 400, got ${r.status} ${r.body.slice(0, 300)}`);
    assert.match(r.body, /too complex/, `${url}: the reason: ${r.body.slice(0, 300)}`);
    assert.equal(sent.filter((e) => /tools\/call/.test(e.body)).length, 0, `${url}: nothing forwarded`);
  }
});

test('aggregated: the upstream receives the client\'s bytes with only the name\'s value replaced', async () => {
  const rec = f.recs.alpha;
  const s = await rawSession(f.url, f.tokens.alice);
  // unusual but valid spacing, key order and an escaped argument: all kept as sent
  const body = '{ "params" : { "arguments" : {"message":"sp\\u00e9cial \\"q\\""} ,"name" :  "alpha__echo" } , "method":"tools/call","id":"s-1", "jsonrpc" : "2.0" }';
  const { r, sent } = await calls(rec, body, () => s.post(body));
  assert.equal(r.status, 200, `${r.status} ${r.body}`);
  const m = r.messages.find((x) => x.id === 's-1');
  assert.ok(m?.result, `answered: ${r.body}`);
  assert.match(m.result.content[0].text, /spécial "q"/, 'the argument arrived decoded correctly');
  const fwd = sent.filter((e) => /tools\/call/.test(e.body));
  assert.equal(fwd.length, 1, 'one call forwarded');
  assert.equal(fwd[0].body, body.replace('"alpha__echo"', '"echo"'), 'byte for byte, the name stripped of its prefix');
});

/** An upstream answering every tools/call with the JSON text reply(m). */
async function jsonUpstream(reply) {
  return startBareUpstream((req, res, m) => {
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': 'j-1' }).end(); return; }
    const body = m.method === 'tools/call' ? reply(m)
      : JSON.stringify({ jsonrpc: '2.0', id: m.id, result: m.method === 'initialize'
        ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'j', version: '1' } }
        : { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } });
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'j-1' }).end(body);
  });
}

test('aggregated JSON replies: relayed byte for byte only when nothing in them is the gateway\'s business', async () => {
  const cases = [
    // the call's own id, plain: as sent (spacing kept)
    { reply: (m) => `{"jsonrpc":"2.0", "id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text","text":"plain"}]}}`,
      check: (r, id) => assert.equal(r.body, `{"jsonrpc":"2.0", "id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"plain"}]}}`) },
    // another request's id: never delivered under it
    { reply: () => '{"jsonrpc":"2.0","id":4242,"result":{"content":[{"type":"text","text":"spoof"}]}}',
      check: (r) => assert.notEqual(JSON.parse(r.body).id, 4242, `foreign id kept: ${r.body}`) },
    // the same number written as a real is another id to the gateway (jansson's equality)
    { reply: (m) => typeof m.id === 'number' ? `{"jsonrpc":"2.0","id":${m.id}.0,"result":{}}` : `{"jsonrpc":"2.0","id":"x${m.id}","result":{}}`,
      check: (r, id) => assert.notEqual(JSON.parse(r.body).id, id, `a different id taken for the call's: ${r.body}`) },
    // a tool list inside a call's reply: filtered by policy (get-env is blocked)
    { reply: (m) => JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'get-env', inputSchema: { type: 'object' } }] } }),
      check: (r) => assert.deepEqual(JSON.parse(r.body).result.tools.map((x) => x.name), ['echo'], r.body) },
    // the same list with its key escaped
    { reply: (m) => `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"t\\u006fols":[{"name":"echo","inputSchema":{}},{"name":"get-env","inputSchema":{}}]}}`,
      check: (r) => assert.deepEqual(JSON.parse(r.body).result.tools.map((x) => x.name), ['echo'], r.body) },
    // duplicate ids: not vouched for; the parse keeps the last, which is foreign
    { reply: (m) => `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"id":4343,"result":{}}`,
      check: (r) => assert.notEqual(JSON.parse(r.body).id, 4343, `foreign id kept: ${r.body}`) },
    // invalid JSON: an error, not relayed
    { reply: (m) => `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{}`,
      check: (r) => assert.ok(JSON.parse(r.body).error, `an error for an invalid reply: ${r.body}`) },
    // a raw NUL byte after a value (jansson skips it; the scan refuses it): an error, never relayed
    { reply: (m) => `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)}\u0000,"result":{"content":[]}}`,
      check: (r) => {
        assert.ok(!r.body.includes('\u0000'), `a NUL byte reached the client: ${JSON.stringify(r.body)}`);
        assert.ok(JSON.parse(r.body).error, `an error for a reply with a NUL byte: ${r.body}`);
      } },
  ];
  const t = f.t;
  for (const [i, c] of cases.entries()) {
    const name = `j${i}`;
    const url = await jsonUpstream(c.reply);
    assert.equal((await t.putConnector(name, { url, auth: { type: 'none' } })).status, 201);
    await t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'], block: ['get-env'] }] });
    const s = await rawSession(f.url, f.tokens.alice);
    for (const id of [60 + i, `k${i}`]) {
      const r = await s.post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: `${name}__echo`, arguments: {} } });
      assert.equal(r.status, 200, `case ${i} id ${id}: ${r.status} ${r.body}`);
      c.check(r, id);
    }
  }
});

test('aggregated SSE: events relayed with gateway ids; data passed as sent unless it needs the gateway', async () => {
  const note = '{"jsonrpc":"2.0", "method":"notifications/progress","params":{"progressToken":1,"progress":1}}';
  const url = await startBareUpstream((req, res, m) => {
    if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(req.method === 'GET' ? 405 : 202, { 'mcp-session-id': 's-1' }).end(); return; }
    if (m.method !== 'tools/call') {
      const result = m.method === 'initialize'
        ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 's', version: '1' } }
        : { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
      return;
    }
    const list = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' }, result: { tools: [{ name: 'echo' }, { name: 'get-env' }] } });
    const done = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'sse done' }] } });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 's-1' });
    res.end(`id: up-1\nevent: message\ndata: ${note}\n\nid: up-2\nevent: message\ndata: ${list}\n\nid: up-3\nevent: message\ndata: ${done}\n\n`);
  });
  assert.equal((await f.t.putConnector('sse', { url, auth: { type: 'none' } })).status, 201);
  await f.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'], block: ['get-env'] }] });
  const s = await rawSession(f.url, f.tokens.alice);
  // the notification is progress for the call's own token (another would be dropped: agg-foreign-notes)
  const r = await s.post({
    jsonrpc: '2.0', id: 970, method: 'tools/call', params: { name: 'sse__echo', arguments: {}, _meta: { progressToken: 1 } },
  });
  assert.equal(r.status, 200, r.body);
  const events = parseSse(r.body).events;
  assert.equal(events.length, 3, `three events: ${r.body}`);
  for (const e of events) assert.ok(e.id && !/^up-/.test(e.id), `a gateway event id, not the upstream's: ${JSON.stringify(e)}`);
  assert.equal(events[0].data, note, 'a notification is relayed as sent');
  assert.deepEqual(JSON.parse(events[1].data).result.tools.map((x) => x.name), ['echo'], `a tool list is filtered: ${events[1].data}`);
  assert.equal(JSON.parse(events[2].data).result.content[0].text, 'sse done');
});
