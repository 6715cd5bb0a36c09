// Vault: the revocation queue is every tenant's. One tenant's revocations
// toward an endpoint that never finishes its answers (its admin's server, or
// a compromised upstream's) must not delay another tenant's: each request
// ends at its deadline, but three of them one after the other held the
// queue for 45 s, and a few dozen, each retried every few minutes, held it
// for the whole day of retries. Requests to different tenants now run side
// by side (one in flight per tenant at a time).
// Here acme deletes the connector "slow" that Alice, Bob and Carol had
// connected (three revocations to the trickling endpoint), then globex's
// admin disconnects Gina from its own "crm": Gina's revocation reaches the
// AS while acme's are still stuck.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS,
// the SDK upstream; the trickling endpoint is a node http listener.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { connectClient, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { startUpstreamAS, startOAuthMcpUpstream } from './lib/upstream-oauth.mjs';
import { oauthConnector } from './lib/vault.mjs';

const ACME = ['alice', 'bob', 'carol'];
let fx, as, up, trickle;
const held = new Set();
let requests = 0;

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: { users: ACME.map((u) => ({ userName: `${u}@acme.com`, externalId: `00u-${u}` })) },
      globex: { users: [{ userName: 'gina@globex.com', externalId: '00u-gina' }] },
    },
    accounts: Object.fromEntries([...ACME.map((u) => [`00u-${u}`, { email: `${u}@acme.com`, email_verified: true }]),
      ['00u-gina', { email: 'gina@globex.com', email_verified: true }]]),
  });
  as = await startUpstreamAS({
    redirectUris: [`${fx.base('acme')}/connect/slow/callback`, `${fx.base('globex')}/connect/crm/callback`],
  });
  up = await startOAuthMcpUpstream({ as });
  trickle = http.createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(' ');
    const t = setInterval(() => res.write(' '), 2000); // never idle, never done
    held.add(t);
    res.on('close', () => { clearInterval(t); held.delete(t); });
  });
  await new Promise((r) => trickle.listen(0, '127.0.0.1', r));
  const slow = oauthConnector(as, up);
  slow.auth.revocation_url = `http://127.0.0.1:${trickle.address().port}/revoke`;
  for (const [t, name, body] of [['acme', 'slow', slow], ['globex', 'crm', oauthConnector(as, up)]]) {
    assert.equal((await fx.t[t].admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
    const r = await fx.t[t].admin('PUT', `/connectors/${name}`, body);
    assert.equal(r.status, 201, r.body);
  }
});
after(async () => {
  for (const t of held) clearInterval(t);
  trickle?.closeAllConnections?.();
  trickle?.close();
  await up?.close().catch(() => {});
  await as?.close().catch(() => {});
  await fx?.stop();
});

async function connect(tenant, who, connector) {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base(tenant)}/login`, { login: `00u-${who}` });
  assert.equal(s.status, 200);
  as.loginAs(who);
  try {
    const r = await b.get(`${fx.base(tenant)}/connect/${connector}`);
    assert.equal(r.status, 200, r.text.slice(0, 300));
  } finally {
    as.loginAs(null);
  }
}

test("one tenant's stuck revocations do not hold another tenant's", async () => {
  for (const u of ACME) await connect('acme', u, 'slow');
  await connect('globex', 'gina', 'crm');
  const m = await fx.t.globex.admin('POST', '/tokens', { user: 'gina@globex.com', name: 'laptop', expires_in_days: 1 });
  assert.equal(m.status, 201, m.body);
  const c = await connectClient(`${fx.base('globex')}/mcp`, m.json.token);
  try {
    await c.client.callTool({ name: 'crm__whoami', arguments: {} });
  } finally {
    await c.close();
  }
  const token = up.seen().filter((s) => s.method === 'tools/call' && s.sub === 'gina').at(-1)?.token;
  assert.ok(token, "the upstream saw Gina's token");

  // acme's three revocations go to the trickling endpoint first
  const d = await fx.t.acme.admin('DELETE', '/connectors/slow');
  assert.equal(d.status, 204, d.body);
  await waitFor(() => requests > 0, { what: 'the worker is at the trickling endpoint' });
  const g = await fx.t.globex.admin('DELETE', '/users/gina@globex.com/connections/crm');
  assert.ok([200, 204].includes(g.status), `${g.status} ${g.body}`);

  await waitFor(async () => !(await as.introspect(token)), {
    timeoutMs: 12000, intervalMs: 200, what: "Gina's revocation at the AS, while acme's are stuck",
  });
  const acme = (await fx.t.acme.admin('GET', '/revocations')).json.revocations;
  assert.equal(acme.length, 3, JSON.stringify(acme));
  assert.ok(acme.every((x) => x.state === 'pending'), JSON.stringify(acme));
});
