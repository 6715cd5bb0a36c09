// Vault 2/2 (issue 21), part 2: connector auth {"type":"user_header"} — each
// employee gives the gateway their own API key for an upstream on their page
// (never shown again; replace or delete there); it is sealed per (tenant,
// person, connector) and injected as the header on that person's calls only.
// Without a key the {connector}__connect tool and -32007 point to the page;
// deactivation deletes the key and the revocations report lists it as
// "revoke at the upstream by hand". Real parts: the gateway on a real LMDB,
// the Okta stand-in for the sign-in, server-everything behind a recorder
// (which shows the header each call carried), the official SDK client.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { connectClient, startEverything, startRecorder, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { findSecretsInFiles } from './lib/admin.mjs';
import { waitFor } from './lib/gateway.mjs';

let fx, ev, rec;
const tokens = {};
const KEYS = { alice: 'alice-key-1f3a9c', bob: 'bob-key-77e0d2', alice2: 'alice-key-rotated-5b1' };

before(async () => {
  [fx, ev] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }, { userName: 'bob@acme.com', externalId: '00u-bob' }] } },
      accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true }, '00u-bob': { email: 'bob@acme.com', email_verified: true } },
    }),
    startEverything(),
  ]);
  rec = await startRecorder(ev.url);
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  const r = await admin('PUT', '/connectors/docs', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key', prefix: 'Key ' } });
  assert.equal(r.status, 201, r.body);
  assert.deepEqual(r.json.auth, { type: 'user_header', name: 'X-Api-Key', prefix: 'Key ' });
  for (const u of ['alice', 'bob']) {
    const m = await admin('POST', '/tokens', { user: `${u}@acme.com`, name: 'laptop', expires_in_days: 30 });
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.json.token;
  }
});

after(async () => {
  await rec?.close?.().catch(() => {});
  await ev?.stop?.().catch(() => {});
  await fx?.stop();
});

async function page(who) {
  const b = fx.browser();
  const r = await signIn(b, `${fx.base('acme')}/login`, { login: `00u-${who}` });
  assert.equal(r.status, 200, r.text);
  const { json } = await me(b, fx, 'acme');
  const url = `${fx.base('acme')}/api/connections/docs`;
  return {
    b, csrf: json.csrf,
    put: (body, csrf = json.csrf) => b.request('PUT', url, JSON.stringify(body), { follow: false, headers: { 'content-type': 'application/json', ...(csrf ? { 'x-csrf-token': csrf } : {}) } }),
    del: () => b.request('DELETE', url, undefined, { follow: false, headers: { 'x-csrf-token': json.csrf } }),
    me: async () => (await me(b, fx, 'acme')).json,
  };
}

async function callEcho(who) {
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens[who]);
  try {
    const from = rec.requests().length;
    await c.client.callTool({ name: 'docs__echo', arguments: { message: who } });
    const sent = rec.requests().slice(from).filter((e) => e.json?.method === 'tools/call');
    assert.equal(sent.length, 1);
    return sent[0].headers['x-api-key'];
  } finally {
    await c.close();
  }
}

test('without a key: the connect tool points to the page, and calls answer -32007', async () => {
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens.alice);
  try {
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.deepEqual(names, ['docs__connect']);
    await assert.rejects(c.client.callTool({ name: 'docs__echo', arguments: { message: 'x' } }), (e) => e.code === -32007 && /\/t\/acme\/connect\/docs/.test(e.message));
  } finally {
    await c.close();
  }
  // the link leads a signed-in person to their page
  const p = await page('alice');
  const r = await p.b.get(`${fx.base('acme')}/connect/docs`, { follow: false });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/t/acme/#services');
  const m = await p.me();
  assert.deepEqual(m.connections.map((x) => [x.connector, x.kind, x.connected, x.header]), [['docs', 'key', false, 'X-Api-Key']]);
});

test('Alice and Bob save their keys on the page; each call carries its own person\'s key, never shown again', async () => {
  const a = await page('alice');
  let r = await a.put({ key: KEYS.alice });
  assert.equal(r.status, 204, r.text);
  const b = await page('bob');
  r = await b.put({ key: KEYS.bob });
  assert.equal(r.status, 204, r.text);
  const m = await a.me();
  assert.equal(m.connections[0].connected, true);
  assert.equal(JSON.stringify(m).includes(KEYS.alice), false, 'the page never shows the key');
  assert.equal(await callEcho('alice'), `Key ${KEYS.alice}`);
  assert.equal(await callEcho('bob'), `Key ${KEYS.bob}`);
  // replaced on the page: the next call carries the new one
  r = await a.put({ key: KEYS.alice2 });
  assert.equal(r.status, 204, r.text);
  assert.equal(await callEcho('alice'), `Key ${KEYS.alice2}`);
  assert.equal(await callEcho('bob'), `Key ${KEYS.bob}`);
  const leaks = await findSecretsInFiles([fx.gw.dataDir], Object.values(KEYS));
  assert.ok(leaks.scanned > 0);
  assert.deepEqual(leaks.hits, [], 'no key in clear in the store');
  const g = await fx.t.acme.admin('GET', '/users/alice@acme.com/connections');
  assert.equal(g.status, 200);
  assert.equal(g.body.includes(KEYS.alice2), false, 'admins never see it either');
});

test('refusals: no CSRF token, a bad body, a connector that takes no key', async () => {
  const a = await page('alice');
  let r = await a.put({ key: 'x' }, null);
  assert.equal(r.status, 403, r.text);
  for (const body of [{}, { key: '' }, { key: 'a\nb' }, { key: 1 }, { key: 'k', extra: 1 }, { key: 'x'.repeat(4097) }]) {
    r = await a.put(body);
    assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 40)}: ${r.status} ${r.text}`);
  }
  const put = await fx.t.acme.admin('PUT', '/connectors/open', { url: rec.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  r = await a.b.request('PUT', `${fx.base('acme')}/api/connections/open`, JSON.stringify({ key: 'k' }), { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': a.csrf } });
  assert.equal(r.status, 404, r.text);
  assert.equal((await fx.t.acme.admin('DELETE', '/connectors/open')).status, 204);
  assert.equal(await callEcho('alice'), `Key ${KEYS.alice2}`, 'nothing changed');
});

test('deactivation deletes Alice\'s key and reports it "revoke at the upstream by hand"; Bob keeps his', async () => {
  const alice = fx.t.acme.users['alice@acme.com'];
  const d = await fx.t.acme.scim.patch(`/Users/${alice.id}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }],
  });
  assert.equal(d.status, 200, d.body);
  const g = await fx.t.acme.admin('GET', `/users/${alice.id}/connections`);
  assert.deepEqual(g.json.connections, []);
  const rv = await fx.t.acme.admin('GET', '/revocations');
  const mine = rv.json.revocations.filter((x) => x.user === alice.id);
  assert.ok(mine.length >= 1, rv.body);
  assert.ok(mine.every((x) => x.state === 'manual' && /API key/.test(x.note)), rv.body);
  assert.equal(rv.body.includes(KEYS.alice2), false);
  assert.equal(await callEcho('bob'), `Key ${KEYS.bob}`);
  await waitFor(async () => (await fx.t.acme.admin('GET', '/revocations')).json.revocations.length >= 1);
});
