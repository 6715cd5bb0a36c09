// MCP proxy: Streamable HTTP input rules enforced at the gateway (protocol
// version header, Accept, Origin, strict JSON, batches), the 2026-07-28
// server/discover probe, and the tasks capability / methods.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  startProxyFixture, connectClient, toolText, rawSession, mcpPost, httpCall, mcpHeaders,
  initializeBody, assertRpcError, show,
} from './lib/mcp.mjs';

let f;
before(async () => { f = await startProxyFixture(); });

/** Runs fn and asserts that no request reached the upstream meanwhile. */
async function nothingForwarded(what, fn) {
  const n = f.rec.requests().length;
  const out = await fn();
  const extra = f.rec.requests().slice(n);
  assert.deepEqual(extra.map((e) => `${e.method} ${e.body.slice(0, 120)}`), [], `${what}: nothing may reach the upstream`);
  return out;
}

test('unsupported MCP-Protocol-Version header → 400', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  for (const v of ['1999-01-01', 'banana', '2024-10-07-x']) {
    const r = await nothingForwarded(`MCP-Protocol-Version ${v}`, () => s.request('tools/list', undefined, { protocolVersion: v }));
    assert.equal(r.status, 400, `tools/list with MCP-Protocol-Version: ${v}: expected 400, got ${show(r)}`);
  }
  const r = await s.request('tools/list', undefined, { protocolVersion: s.protocolVersion });
  assert.equal(r.status, 200, `the negotiated version (${s.protocolVersion}) is accepted: ${show(r)}`);
});

// Review (rvP): only a POST's header was checked. A GET (its stream) or a
// DELETE carried any MCP-Protocol-Version the client wrote into the
// upstream request, copied as it came (the spec: an unsupported one is 400).
test('GET and DELETE with an unsupported MCP-Protocol-Version → 400, nothing forwarded', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  for (const v of ['1999-01-01', 'banana', 'bogus/1.0 x']) {
    for (const method of ['GET', 'DELETE']) {
      const r = await nothingForwarded(`${method} with MCP-Protocol-Version ${v}`, () => httpCall(f.url, {
        method, headers: mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: v, accept: method === 'GET' ? 'text/event-stream' : undefined }), timeoutMs: 3000,
      }));
      assert.equal(r.status, 400, `${method} with MCP-Protocol-Version: ${v}: expected 400, got ${show(r)}`);
      assert.match(String(r.json?.error?.message), /MCP-Protocol-Version/, `${method} ${v}: the error names the header: ${show(r)}`);
    }
  }
  // the session is still there: the negotiated version is accepted
  const r = await s.request('tools/list', undefined, { protocolVersion: s.protocolVersion });
  assert.equal(r.status, 200, show(r));
});

test('POST whose Accept does not allow both JSON and SSE → 406', async () => {
  for (const accept of ['application/json', 'text/event-stream', 'text/html']) {
    const r = await nothingForwarded(`initialize with Accept: ${accept}`, () =>
      mcpPost(f.url, initializeBody(), { token: f.tokens.alice, accept }));
    assert.equal(r.status, 406, `initialize with Accept: ${accept}: expected 406, got ${show(r)}`);
  }
  const s = await rawSession(f.url, f.tokens.alice);
  const r = await nothingForwarded('tools/list with Accept: application/json', () => s.request('tools/list', undefined, { accept: 'application/json' }));
  assert.equal(r.status, 406, `tools/list with Accept: application/json: expected 406, got ${show(r)}`);
  const ok = await s.request('tools/list', undefined, { accept: 'application/json, text/event-stream' });
  assert.equal(ok.status, 200, show(ok));
});

test('a foreign Origin → 403', async () => {
  const evil = { origin: 'https://evil.example' };
  let r = await nothingForwarded('initialize with a foreign Origin', () =>
    mcpPost(f.url, initializeBody(), { token: f.tokens.alice, extra: evil }));
  assert.equal(r.status, 403, `initialize with Origin: https://evil.example: expected 403, got ${show(r)}`);
  const s = await rawSession(f.url, f.tokens.alice);
  r = await nothingForwarded('tools/list with a foreign Origin', () => s.request('tools/list', undefined, { extra: evil }));
  assert.equal(r.status, 403, `tools/list with a foreign Origin: expected 403, got ${show(r)}`);
  r = await nothingForwarded('GET with a foreign Origin', () => httpCall(f.url, { method: 'GET', headers: { ...evil, accept: 'text/event-stream', authorization: `Bearer ${f.tokens.alice}`, 'mcp-session-id': s.sessionId }, timeoutMs: 3000 }));
  assert.equal(r.status, 403, `GET stream with a foreign Origin: expected 403, got ${show(r)}`);
});

test('a body that is not JSON → 400 with JSON-RPC -32700', async () => {
  let r = await nothingForwarded('initialize with a broken body', () =>
    httpCall(f.url, { method: 'POST', headers: mcpHeaders({ token: f.tokens.alice }), body: '{"jsonrpc":"2.0","id":1,"method":"initialize",' }));
  assert.equal(r.status, 400, `broken JSON initialize: expected 400, got ${show(r)}`);
  assertRpcError(r, { codes: [-32700], what: 'broken JSON initialize' });
  const s = await rawSession(f.url, f.tokens.alice);
  for (const body of ['hello', '', '\xff\xfe{}']) {
    r = await nothingForwarded(`session POST body ${JSON.stringify(body)}`, () => s.post(body));
    assert.equal(r.status, 400, `POST body ${JSON.stringify(body)}: expected 400, got ${show(r)}`);
    assertRpcError(r, { codes: [-32700], what: `POST body ${JSON.stringify(body)}` });
  }
});

test('duplicate keys in the JSON body → 400 (-32700/-32600), nothing forwarded', async () => {
  const s = await rawSession(f.url, f.tokens.alice);
  const dups = [
    '{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"echo","name":"get-env","arguments":{"message":"x"}}}',
    '{"jsonrpc":"2.0","id":32,"method":"tools/list","method":"tools/call","params":{"name":"get-env","arguments":{}}}',
    '{"jsonrpc":"2.0","id":33,"id":34,"method":"tools/list"}',
    '{"jsonrpc":"2.0","id":35,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a","message":"b"}}}',
  ];
  for (const body of dups) {
    const r = await nothingForwarded(`duplicate keys: ${body}`, () => s.post(body));
    assert.equal(r.status, 400, `duplicate keys ${body}: expected 400, got ${show(r)}`);
    assertRpcError(r, { codes: [-32700, -32600], what: `duplicate keys ${body}` });
  }
  const init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}';
  const r = await nothingForwarded('duplicate keys in initialize', () => httpCall(f.url, { method: 'POST', headers: mcpHeaders({ token: f.tokens.alice }), body: init }));
  assert.equal(r.status, 400, `duplicate keys in initialize: expected 400, got ${show(r)}`);
  assert.equal(r.headers['mcp-session-id'], undefined, 'no session for a refused initialize');
});

test('JSON-RPC batches: 400 unless the session negotiated 2025-03-26', async () => {
  const batch = [
    { jsonrpc: '2.0', id: 11, method: 'tools/list' },
    { jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'echo', arguments: { message: 'batched' } } },
  ];
  for (const v of ['2025-11-25', '2025-06-18']) {
    const s = await rawSession(f.url, f.tokens.alice, { protocolVersion: v });
    assert.equal(s.protocolVersion, v, 'negotiated version');
    const r = await nothingForwarded(`batch on a ${v} session`, () => s.post(batch));
    assert.equal(r.status, 400, `batch on a ${v} session: expected 400, got ${show(r)}`);
  }
  const s = await rawSession(f.url, f.tokens.alice, { protocolVersion: '2025-03-26' });
  assert.equal(s.protocolVersion, '2025-03-26');
  const r = await s.post(batch);
  assert.equal(r.status, 200, `batch on a 2025-03-26 session: ${show(r)}`);
  const byId = Object.fromEntries(r.messages.filter((m) => m.id !== undefined).map((m) => [m.id, m]));
  assert.ok(Array.isArray(byId[11]?.result?.tools), `tools/list answered in the batch: ${show(r)}`);
  assert.equal(toolText(byId[12]?.result), 'Echo: batched', `echo answered in the batch: ${show(r)}`);
});

test('MCP-Protocol-Version is passed through to the upstream', async () => {
  const s = await rawSession(f.url, f.tokens.alice, { protocolVersion: '2025-06-18' });
  const n = f.rec.requests().length;
  const r = await s.request('tools/list', undefined, { protocolVersion: '2025-06-18' });
  assert.equal(r.status, 200, show(r));
  const fwd = f.rec.requests().slice(n).find((e) => e.json?.method === 'tools/list');
  assert.ok(fwd, 'tools/list forwarded');
  assert.equal(fwd.headers['mcp-protocol-version'], '2025-06-18', `upstream saw MCP-Protocol-Version: ${fwd.headers['mcp-protocol-version']}`);
});

test('a 2026-07-28 server/discover probe gets a legacy answer; the SDK client then connects', async () => {
  const probe = {
    jsonrpc: '2.0', id: 1, method: 'server/discover',
    params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'probe', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } },
  };
  const r = await mcpPost(f.url, probe, { token: f.tokens.alice, protocolVersion: '2026-07-28', extra: { 'mcp-method': 'server/discover' } });
  // what a dual-era client reads as "legacy server, use initialize": HTTP 400/404/405 or a JSON-RPC
  // error other than -32004-with-a-modern-version; never a DiscoverResult, an auth challenge or a 5xx
  assert.ok(r.status !== 401 && r.status !== 403 && r.status < 500, `probe answered without auth challenge or server error: ${show(r)}`);
  assert.ok(!r.messages.some((m) => m.result !== undefined), `no DiscoverResult for a gateway that does not speak 2026-07-28: ${show(r)}`);
  assert.ok(r.status >= 400 || r.messages.some((m) => m.error), `a refusal (4xx or JSON-RPC error): ${show(r)}`);
  const err = r.messages.find((m) => m.error)?.error;
  if (err && err.code === -32004) {
    const sup = err.data?.supported ?? [];
    assert.ok(sup.every((v) => v < '2026'), `-32004 lists only legacy versions: ${JSON.stringify(err)}`);
  }
  assert.equal(r.headers['mcp-session-id'], undefined, 'the probe creates no session');

  const c = await connectClient(f.url, f.tokens.alice);
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'after probe' } })), 'Echo: after probe');
  await c.close();
});

test('tasks: capability stripped from initialize; tasks/* refused and not forwarded', async () => {
  const n = f.rec.requests().length;
  const s = await rawSession(f.url, f.tokens.alice);
  const upInit = f.rec.requests().slice(n).find((e) => e.json?.method === 'initialize');
  assert.match(upInit?.response?.body ?? '', /"tasks"/, 'the upstream does offer tasks (the test is meaningful)');
  assert.equal(s.result.capabilities?.tasks, undefined, `tasks stripped: ${JSON.stringify(s.result.capabilities)}`);
  assert.ok(s.result.capabilities?.tools, `other capabilities kept: ${JSON.stringify(s.result.capabilities)}`);

  const methods = [['tasks/list', {}], ['tasks/get', { taskId: 't1' }], ['tasks/result', { taskId: 't1' }], ['tasks/cancel', { taskId: 't1' }]];
  for (const [method, params] of methods) {
    const r = await nothingForwarded(method, () => s.request(method, params));
    assertRpcError(r, { what: method });
  }

  const c = await connectClient(f.url, f.tokens.alice);
  assert.equal(c.client.getServerCapabilities()?.tasks, undefined, 'the SDK client sees no tasks capability');
  await c.client.listTools(); // (closing at once races the SDK's GET stream; proxy-failures covers that case)
  await c.close();
});
