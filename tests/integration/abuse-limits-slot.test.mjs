// Review of the concurrency slots (gateway/core/limits.h): a slot an MCP
// request takes before its body is read (the preauth) must come back when
// the client goes away in the middle of the body — else each dropped upload
// costs the user one of mcp_concurrent_per_user for the life of the process,
// and a flaky network (or anyone holding the user's token) locks the user
// out of MCP with 429 until a restart.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, connect, sleep, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';

test('a client that drops its connection in the middle of a POST body gives its concurrency slot back', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '2'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    const alice = (await t.mintToken('alice@acme.com')).token;
    const url = `${gw.url}/t/acme/mcp`;
    const s = await rawSession(url, alice);
    assert.equal((await s.request('tools/list', {})).status, 200);
    // four uploads begun (headers with a body announced, a few body bytes), then dropped
    for (let i = 0; i < 2; i++) {
      for (const how of ['reset', 'fin']) {
        const c = await connect(gw.port);
        await c.write(`POST /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nAuthorization: Bearer ${alice}\r\n` +
          `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
          `Mcp-Session-Id: ${s.sessionId}\r\nContent-Length: 200\r\n\r\n{"jsonrpc":"2.0",`);
        await sleep(50); // the preauth ran (the slot is taken)
        if (how === 'reset') c.destroy();
        else c.end();
        await c.waitClose(2000);
      }
    }
    // nothing of alice's is open now: her requests are served
    await waitFor(async () => (await s.request('tools/list', {})).status === 200,
      { timeoutMs: 3000, what: 'alice served again once her dropped uploads are gone' });
  } finally {
    await gw.stop();
  }
});
