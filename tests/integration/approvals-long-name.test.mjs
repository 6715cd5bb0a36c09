// ci-variants: build-w1
// A tools/call of an "approve" tool whose name is too long to be an
// approval's key (the grant's key keeps 255 bytes whole; held.c refuses to
// cut one, which would make it another tool's grant too) is refused, never
// forwarded. Found by review: the refusal said "cannot be asked for inside
// a JSON-RPC batch: call it on its own" to a call sent on its own; it now
// says why, on both endpoints.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startJsonUpstream } from './lib/policy.mjs';

let gw, up;
after(async () => { await gw?.stop(); await up?.stop?.(); });

test('a lone approve call with a 300-byte name is refused as too long to approve, not as a batch, and never forwarded', async () => {
  gw = await startGateway();
  const long = `long${'x'.repeat(296)}`;
  up = await startJsonUpstream({ tools: [long] });
  const policy = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', approve: ['long*'] }] };
  const t = await setupTenant(gw, { id: 'apl', users: ['alice@acme.com'], policy });
  assert.equal((await t.putConnector('up', { url: up.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken('alice@acme.com')).token;
  for (const [url, name] of [[t.mcpUrl('up'), long], [`${gw.url}/t/apl/mcp`, `up__${long}`]]) {
    const s = await rawSession(url, tok);
    const r = await s.request('tools/call', { name, arguments: {} });
    const err = r.messages.find((m) => m.error)?.error;
    assert.ok(err, r.body);
    assert.match(err.message, /its name is too long for an approval to name it \(at most \d+ bytes\)/, err.message);
    assert.doesNotMatch(err.message, /batch/);
    assert.equal(up.calls(long).length, 0, 'never forwarded');
  }
});
