// Vault: one revocation endpoint that never finishes its answer must not
// hold the revocation queue — which is every tenant's — for ever. The worker
// sends one request at a time; an endpoint that answers its head and then
// trickles a byte every few seconds is never idle, so only a deadline for
// the whole request ends it (a transient failure: retried with backoff).
// Here the connector "slow" (a tenant admin's, or a compromised upstream's
// revocation endpoint) is cut first, then Alice's grant at "crm": crm's
// revocation must still reach its authorization server.
// Real parts: the gateway, oidc-provider as Okta and as crm's AS, the SDK
// upstream; the trickling endpoint is a node http listener.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startVaultFixture, oauthConnector } from './lib/vault.mjs';

let v, slow;
const held = new Set();
let requests = 0;

before(async () => {
  // the request's deadline (15 s) lowered by the test hook: what is tested
  // is that it ends, not how long it waits
  v = await startVaultFixture({ users: ['alice'], connectors: ['crm', 'slow'], gatewayEnv: { MCPGATE_TEST_REVOKE_DEADLINE_MS: '3000' } });
  slow = http.createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(' ');
    const t = setInterval(() => res.write(' '), 2000); // never idle, never done
    held.add(t);
    res.on('close', () => { clearInterval(t); held.delete(t); });
  });
  await new Promise((r) => slow.listen(0, '127.0.0.1', r));
  const body = oauthConnector(v.as, v.up);
  body.auth.revocation_url = `http://127.0.0.1:${slow.address().port}/revoke`;
  const r = await v.admin('PUT', '/connectors/slow', body);
  assert.equal(r.status, 200, r.body);
});
after(async () => {
  for (const t of held) clearInterval(t);
  slow?.closeAllConnections?.();
  slow?.close();
  await v?.stop();
});

test("a revocation endpoint that trickles its answer for ever does not hold the other revocations", async () => {
  await v.connectAs('alice', { connector: 'slow' });
  await v.connectAs('alice', { connector: 'crm' });
  const c = await v.client('alice');
  let token;
  try {
    await c.client.callTool({ name: 'crm__whoami', arguments: {} });
    token = v.lastCallToken('alice');
  } finally {
    await c.close();
  }
  assert.ok(token, 'the upstream saw her crm token');

  // slow's revocation first: the worker sends it, and the answer never ends
  let d = await v.admin('DELETE', '/users/alice@acme.com/connections/slow');
  assert.ok([200, 204].includes(d.status), `DELETE slow: ${d.status} ${d.body}`);
  await waitFor(() => requests > 0, { what: 'the worker is at the trickling endpoint' });
  d = await v.admin('DELETE', '/users/alice@acme.com/connections/crm');
  assert.ok([200, 204].includes(d.status), `DELETE crm: ${d.status} ${d.body}`);

  await waitFor(async () => !(await v.as.introspect(token)), {
    timeoutMs: 25000, intervalMs: 250, what: "crm's revocation reached its AS past the trickling one",
  });
  const reps = await v.revocations();
  const crm = reps.find((x) => x.connector === 'crm' && x.reason === 'admin_disconnect');
  await v.waitRevocation((x) => x.id === crm.id && x.state === 'done', "crm's revocation reported done");
  const s = reps.find((x) => x.connector === 'slow');
  assert.notEqual(s.state, 'done', JSON.stringify(s));
  await v.waitRevocation((x) => x.id === s.id && x.attempts >= 1 && /deadline/.test(x.last_error ?? ''),
    "slow's revocation is retried, its error says why");
});
