// On both MCP endpoints the token, the user and the session are checked
// when a request's headers are in (preauth, gateway/mcp/endpoint.c), before
// its body is read; the time the body takes opens no gap because what the
// request does upstream checks the identity again (upcall.c) and session
// writes check inside their transaction. The aggregated GET stream is the
// gateway's own: nothing of it goes upstream. Before this test's fix, a GET
// sent with a body (HTTP allows one; preauth runs for it) whose last byte
// came after its user was deactivated, or its token revoked, or its session
// deleted, opened a 200 stream anyway, for a user (or token, or session)
// that no longer existed, and kept it open: the deactivation's fan-out had
// run before the stream existed, and the connection's close after "the
// response it is writing" never comes for a stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, connect, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';

const ALICE = 'alice@acme.com';

async function fixture() {
  const gw = await startGateway();
  const t = await setupTenant(gw, { users: [ALICE] });
  const m = await t.mintToken(ALICE);
  assert.equal(m.status, 201, m.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp`, m.token);
  return { gw, t, token: m.token, tokenId: m.id, alice: t.users[ALICE], s };
}

/** A GET of the aggregated stream whose one-byte body is held back: its preauth has run. */
async function getWithHeldBody(gw, { token, s }) {
  const c = await connect(gw.port);
  await c.write(`GET /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
    `Accept: text/event-stream\r\nMcp-Session-Id: ${s.sessionId}\r\nMCP-Protocol-Version: ${s.protocolVersion}\r\n` +
    'Content-Length: 1\r\n\r\n');
  return c;
}

/** The status line's code, once the head is in. */
async function statusOf(c) {
  await waitFor(() => /\r\n\r\n/.test(c.text()) || c.closed, { timeoutMs: 5000, what: 'the response head' });
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(c.text())?.[1] ?? 0);
}

for (const [what, cut, want] of [
  ['its user is deactivated', (f) => f.t.deactivate(f.alice.id), [401, 403, 404]],
  ['its token is revoked', async (f) => assert.equal((await f.t.admin('DELETE', `/tokens/${f.tokenId}`)).status, 204), [401, 403]],
  ['its session is deleted', async (f) => assert.equal((await f.s.del()).status, 204), [404]],
]) {
  test(`an aggregated GET whose body arrives after ${what} opens no stream`, async () => {
    const f = await fixture();
    try {
      const c = await getWithHeldBody(f.gw, f);
      await cut(f);
      await c.write('x');
      const status = await statusOf(c);
      assert.ok(want.includes(status), `answered ${status}, not a stream: ${c.text().slice(0, 300)}`);
      c.destroy();
    } finally {
      await f.gw.stop();
    }
  });
}
