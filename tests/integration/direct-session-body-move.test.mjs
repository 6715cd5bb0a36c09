// On the connector endpoint /t/{t}/mcp/{connector} the gateway session (and
// the upstream's Mcp-Session-Id it carries) is read when a request's headers
// are complete (preauth), before its body arrives. A connector PUT to a new
// URL deletes the connector's sessions, but a request whose body was still
// on its way when the PUT committed had read the session already: before
// this test's fix, its body then went to the NEW server with the OLD
// server's session id. The upcall now checks, in its own read, that the
// session still carries that id; when it does not, the client gets 404
// "Session not found" and initializes again, and the new server never sees
// the old id. (Expect: 100-continue marks the moment the preauth ran.)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, connect } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpPost, initializeBody } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

test('a body that arrives after its connector moved does not carry the old upstream session id to the new server', async () => {
  const gw = await startGateway();
  try {
    const oldUp = await startCtlUpstream({ name: 'old' });
    const newUp = await startCtlUpstream({ name: 'new' });
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    assert.equal((await t.putConnector('ca', { url: oldUp.url, auth: { type: 'none' } })).status, 201);
    const tok = (await t.mintToken('alice@acme.com')).token;
    const url = `${gw.url}/t/acme/mcp/ca`;
    const s = await rawSession(url, tok);
    const init = oldUp.requests().find((e) => e.json?.method === 'initialize');
    const oldSid = oldUp.requests().find((e) => e.headers['mcp-session-id'])?.headers['mcp-session-id'];
    assert.ok(init && oldSid, 'the old server opened a session');
    assert.equal((await s.request('tools/call', { name: 'echo', arguments: { message: 'before' } })).status, 200);

    // headers now, body later
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { message: 'after' } } });
    const c = await connect(gw.port);
    await c.write(`POST /t/acme/mcp/ca HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tok}\r\n` +
      `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
      `Mcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n` +
      `Expect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
    assert.ok(await c._until(() => /^HTTP\/1\.1 100/.test(c.text()), 5000), `no 100 Continue: ${c.text()}`);

    // the connector moves while the body is on its way
    const put = await t.putConnector('ca', { url: newUp.url, auth: { type: 'none' } });
    assert.equal(put.status, 200, put.body);

    await c.write(body);
    assert.ok(await c._until(() => /HTTP\/1\.1 (?!100)\d{3}[^]*\r\n\r\n/.test(c.text().replace(/^HTTP\/1\.1 100[^\r]*\r\n\r\n/, '')) , 5000), c.text());
    const final = c.text().replace(/^HTTP\/1\.1 100[^\r]*\r\n\r\n/, '');
    c.destroy();
    assert.ok(!newUp.requests().some((e) => e.headers['mcp-session-id'] === oldSid),
      'the new server got the old server\'s session id');
    assert.match(final, /^HTTP\/1\.1 404/, final);
    assert.match(final, /Session not found/);

    // the client initializes again and works with the new server
    const r = await mcpPost(url, initializeBody(1), { token: tok });
    assert.equal(r.status, 200, r.body);
    const s2 = await rawSession(url, tok);
    const call = await s2.request('tools/call', { name: 'echo', arguments: { message: 'again' } });
    assert.equal(call.status, 200, call.body);
    assert.equal(call.messages[0].result?.content?.[0]?.text, 'new:echo again');
  } finally {
    await gw.stop();
  }
});
