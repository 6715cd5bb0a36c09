// The gateway's own URL elicitation (MCP 2025-11-25, -32042) for a
// connector the user has not connected: its elicitationId names that one
// answer to the client, which takes a notifications/elicitation/complete
// naming it for the end of the elicitation. It is random: two answers (in
// the same millisecond too: a batch's two calls) get different ids, and
// none can be worked out from the link and the clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';

const crm = {
  url: 'http://127.0.0.1:9/mcp',
  auth: { type: 'oauth', authorize_url: 'http://127.0.0.1:9/authorize', token_url: 'http://127.0.0.1:9/token', client_id: 'c', client_secret: 's' },
};
const call = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'crm__whoami', arguments: {} } });

/** The ids sha256(link) mixed with the low bits of a millisecond in [from, to] would give. */
function clockIds(link, from, to) {
  const h = createHash('sha256').update(link).digest();
  const out = new Set();
  for (let ms = BigInt(from); ms <= BigInt(to); ms++)
    out.add(Array.from({ length: 16 }, (_, i) => (h[i] ^ Number((ms >> BigInt(i % 8)) & 0xffn)).toString(16).padStart(2, '0')).join(''));
  return out;
}

test('the gateway\'s connect elicitation ids are random: two answers differ, and the link and the clock do not give them', async () => {
  const gw = await startGateway();
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  assert.equal((await t.putConnector('crm', crm)).status, 201);
  const tok = (await t.mintToken('alice@acme.com')).token;
  // 2025-03-26 takes batches: both calls are answered in one turn of the loop
  const s = await rawSession(`${gw.url}/t/acme/mcp`, tok, { protocolVersion: '2025-03-26', capabilities: { elicitation: { form: {}, url: {} } } });
  const before = Date.now();
  const r = await s.post([call(1), call(2)]);
  const after = Date.now();
  assert.equal(r.status, 200, r.body);
  assert.ok(Array.isArray(r.json) && r.json.length === 2, r.body);
  const els = r.json.map((m) => {
    assert.equal(m.error?.code, -32042, JSON.stringify(m));
    return m.error.data.elicitations[0];
  });
  assert.match(els[0].url, /\/t\/acme\/connect\/crm$/);
  for (const e of els) assert.match(e.elicitationId, /^[0-9a-f]{32}$/);
  assert.notEqual(els[0].elicitationId, els[1].elicitationId, 'two answers got the same elicitationId');
  const guessable = clockIds(els[0].url, before - 5, after + 5);
  for (const e of els) assert.ok(!guessable.has(e.elicitationId), `elicitationId ${e.elicitationId} is the link's hash mixed with the clock`);
  await gw.stop();
});
