// Vault 1/2 (issue 20): one refresh per grant across all loops. A gateway
// with two event loops; Alice has two MCP sessions; with her access token
// about to expire, calls of both sessions arrive at once on both loops (each
// on its own TCP connection, pinned to a loop): exactly one refresh_token
// grant reaches the AS (a rotating refresh token used twice would be
// invalid_grant and cost her the grant), every call succeeds as Alice, and
// the grant is intact afterwards.
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops: the worker count of the run changes nothing)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { rawSession, parseSse, rpcMessages, toolText } from './lib/mcp.mjs';
import { connOnLoop, accessLine } from './lib/workers.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture({ users: ['alice'], gatewayArgs: ['--workers', '2'] }); });
after(async () => { await v?.stop(); });

function callBytes(port, s, token, id) {
  const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'crm__whoami', arguments: {} } });
  return `POST /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
    `Mcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

function messagesOf(r) {
  const text = r.body.toString('utf8');
  if (/event-stream/.test(r.headers['content-type'] || '')) {
    return parseSse(text).events.flatMap((e) => { try { return rpcMessages(JSON.parse(e.data)); } catch { return []; } });
  }
  return rpcMessages(JSON.parse(text));
}

test('two loops, two sessions, calls at once on a token about to expire: one refresh reaches the AS, every call is Alice\'s', async () => {
  const gw = v.fx.gw;
  await v.connectAs('alice', { ttl: 12 });
  const [g] = await v.connections('alice');
  const exp = g.expires_at;
  assert.ok(exp - Date.now() / 1000 <= 13, `the grant expires in 12 s: ${JSON.stringify(g)}`);
  const sessions = [await rawSession(v.mcpUrl, v.tokens.alice), await rawSession(v.mcpUrl, v.tokens.alice)];
  // each session used once while the token is fresh: no refresh yet
  const refreshes0 = v.as.stats().token.refresh_token;
  for (const s of sessions) {
    const r = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
    assert.equal(JSON.parse(toolText(r.messages.find((m) => m.result)?.result)).sub, 'alice', r.body);
  }
  assert.equal(v.as.stats().token.refresh_token, refreshes0, 'a fresh token is not refreshed');
  const oldToken = v.lastCallToken('alice');

  // per session, two connections on each loop, opened before the window
  const plan = [];
  for (const s of sessions) for (const loop of [0, 1]) for (let k = 0; k < 2; k++) plan.push({ s, loop, conn: await connOnLoop(gw, loop) });
  await waitFor(() => Date.now() / 1000 > exp - 9, { timeoutMs: 10000, intervalMs: 50, what: 'the token is about to expire' });
  assert.ok(Date.now() / 1000 < exp - 3, 'still before the expiry itself');

  const refreshes = v.as.stats().token.refresh_token;
  await Promise.all(plan.map((p, i) => p.conn.write(callBytes(gw.port, p.s, v.tokens.alice, 1000 + i))));
  const results = await Promise.all(plan.map(async (p) => (await p.conn.responses(2, 15000))[1]));
  for (const p of plan) p.conn.destroy();

  results.forEach((r, i) => {
    assert.equal(r.status, 200, `call ${i}: ${r.status} ${r.body}`);
    const m = messagesOf(r).find((x) => x.id === 1000 + i);
    assert.ok(m?.result, `call ${i} answered with a result: ${r.body}`);
    assert.equal(JSON.parse(toolText(m.result)).sub, 'alice', `call ${i}`);
  });
  const ids = results.map((r) => r.headers['x-request-id']);
  await waitFor(() => ids.every((id) => accessLine(gw, id)), { what: 'the calls\' access lines' });
  assert.deepEqual([...new Set(ids.map((id) => accessLine(gw, id).loop))].sort(), [0, 1], 'the calls were served by both loops');

  assert.equal(v.as.stats().token.refresh_token, refreshes + 1, 'exactly one refresh reached the AS');
  const refreshReqs = v.as.stats().tokenRequests.filter((t) => t.grant_type === 'refresh_token');
  assert.equal(refreshReqs.at(-1).status, 200, 'and it succeeded');
  const newToken = v.lastCallToken('alice');
  assert.notEqual(newToken, oldToken, 'the calls used the refreshed token');
  assert.equal(await v.as.introspect(newToken), true);

  const [after1] = await v.connections('alice');
  assert.equal(after1.connector, 'crm', 'the grant is intact');
  assert.equal(after1.refreshes, 1);
  assert.ok(after1.expires_at > exp + 30, `renewed: ${JSON.stringify(after1)}`);
  // and it goes on working on both sessions
  for (const s of sessions) {
    const r = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
    assert.equal(JSON.parse(toolText(r.messages.find((m) => m.result)?.result)).sub, 'alice', r.body);
  }
  assert.equal(v.as.stats().token.refresh_token, refreshes + 1, 'no further refresh');
});
