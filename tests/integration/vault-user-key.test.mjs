// Vault 2/2 (issue 21), part 2: connector auth {"type":"user_header"} — each
// employee gives the gateway their own API key for an upstream on their page
// (never shown again; replace or delete there); it is sealed per (tenant,
// person, connector) and injected as the header on that person's calls only.
// Without a key the {connector}__connect tool and -32007 point to the page;
// deactivation deletes the key and the revocations report lists it as
// "revoke at the upstream by hand". A key is saved for the connector as the
// person's page showed it (api/me's key_state, sent back with the key): one
// typed while an admin moved the connector to another upstream is refused,
// never stored for the new one. Real parts: the gateway on a real LMDB,
// the Okta stand-in for the sign-in, server-everything behind a recorder
// (which shows the header each call carried), the official SDK client.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { connectClient, startEverything, startRecorder, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { findSecretsInFiles } from './lib/admin.mjs';
import { waitFor } from './lib/gateway.mjs';

let fx, ev, rec, rec2;
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
  rec2 = await startRecorder(ev.url); // another upstream URL, the same server behind it
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
  await rec2?.close?.().catch(() => {});
  await ev?.stop?.().catch(() => {});
  await fx?.stop();
});

/* A signed-in person's page for connector `conn` as api/me showed it: put
 * sends the form's body with the key_state the page was given (unless the
 * body names its own "state"). */
async function page(who, conn = 'docs') {
  const b = fx.browser();
  const r = await signIn(b, `${fx.base('acme')}/login`, { login: `00u-${who}` });
  assert.equal(r.status, 200, r.text);
  const { json } = await me(b, fx, 'acme');
  const url = `${fx.base('acme')}/api/connections/${conn}`;
  const state = json.connections.find((c) => c.connector === conn)?.key_state;
  return {
    b, csrf: json.csrf, state,
    put: (body, csrf = json.csrf) => b.request('PUT', url, JSON.stringify({ state, ...body }), { follow: false, headers: { 'content-type': 'application/json', ...(csrf ? { 'x-csrf-token': csrf } : {}) } }),
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
  for (const body of [{}, { key: '' }, { key: 'a\nb' }, { key: 1 }, { key: 'k', extra: 1 }, { key: 'x'.repeat(4097) }, { key: 'k', state: undefined }, { key: 'k', state: 1 }]) {
    r = await a.put(body);
    assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 40)}: ${r.status} ${r.text}`);
  }
  // a state that is not one the page was given for this connector and
  // this person: forged, cut, or Bob's
  const bob = await page('bob');
  for (const state of ['x', a.state.slice(0, -4), bob.state]) {
    r = await a.put({ key: 'k', state });
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
    assert.equal(JSON.parse(r.text).error, 'stale_form');
  }
  const put = await fx.t.acme.admin('PUT', '/connectors/open', { url: rec.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  r = await a.b.request('PUT', `${fx.base('acme')}/api/connections/open`, JSON.stringify({ key: 'k', state: a.state }), { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': a.csrf } });
  assert.equal(r.status, 400, r.text); // docs's state is not one for "open"
  assert.equal(JSON.parse(r.text).error, 'stale_form');
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

/* One echo call of `who` to connector `conn`: the x-api-key header the
 * upstream behind recorder `r` saw, or the JSON-RPC error's code. */
async function echoAt(who, conn, r) {
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens[who]);
  try {
    const from = r.requests().length;
    try {
      await c.client.callTool({ name: `${conn}__echo`, arguments: { message: who } });
    } catch (e) {
      return { code: e.code };
    }
    const sent = r.requests().slice(from).filter((e) => e.json?.method === 'tools/call');
    assert.equal(sent.length, 1);
    return { key: sent[0].headers['x-api-key'] };
  } finally {
    await c.close();
  }
}

test('a key typed while an admin moved the connector to another upstream is refused, not stored for the new one', async () => {
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/wiki', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  const p = await page('bob', 'wiki'); // his page shows wiki at rec's URL
  r = await p.put({ key: 'wiki-bob-old' });
  assert.equal(r.status, 204, r.text);
  assert.deepEqual(await echoAt('bob', 'wiki', rec), { key: 'wiki-bob-old' });

  // the admin moves wiki to another upstream (Bob's key there is cut) while
  // Bob, on the page he loaded before, types a key meant for the old one
  r = await admin('PUT', '/connectors/wiki', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 200, r.body);
  const from = rec2.requests().length;
  r = await p.put({ key: 'wiki-bob-for-the-old-upstream' });
  assert.equal(r.status, 409, `refused, not stored for the new URL: ${r.status} ${r.text}`);
  const j = JSON.parse(r.text);
  assert.equal(j.error, 'connector_changed');
  assert.match(j.message, /not saved/);
  assert.match(j.message, /enter it again/);
  const conns = await admin('GET', `/users/${fx.t.acme.users['bob@acme.com'].id}/connections`);
  assert.deepEqual(conns.json.connections.filter((c) => c.connector === 'wiki'), [], 'no key stored for wiki');
  assert.deepEqual(await echoAt('bob', 'wiki', rec2), { code: -32007 }, 'the new upstream asks for his key');
  assert.equal(rec2.requests().slice(from).some((e) => JSON.stringify(e.headers).includes('wiki-bob')), false,
    'no key of his reached the new upstream');

  // another header for the key is a change too
  const q = await page('bob', 'wiki');
  r = await admin('PUT', '/connectors/wiki', { url: rec2.url, auth: { type: 'user_header', name: 'X-Other-Key' } });
  assert.equal(r.status, 200, r.body);
  r = await q.put({ key: 'wiki-bob-typed-for-x-api-key' });
  assert.equal(r.status, 409, r.text);

  // reloaded, the page shows wiki as it is now: his key is saved for it
  const n = await page('bob', 'wiki');
  assert.ok(n.state && p.state && n.state !== p.state, 'a key_state for the connector as it is now');
  r = await n.put({ key: 'wiki-bob-new' });
  assert.equal(r.status, 204, r.text);
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens.bob);
  try {
    const before = rec2.requests().length;
    await c.client.callTool({ name: 'wiki__echo', arguments: { message: 'bob' } });
    const sent = rec2.requests().slice(before).filter((e) => e.json?.method === 'tools/call');
    assert.equal(sent[0]?.headers['x-other-key'], 'wiki-bob-new');
  } finally {
    await c.close();
  }
  assert.equal((await admin('DELETE', '/connectors/wiki')).status, 204);
});

// Found by review: an admin replacing a connector by DELETE and PUT makes a
// new connector, but its binding (what a key_state digests) started again
// as the URL, and its epoch counted moves and rekeys from 1 again: a page
// loaded before the delete passed for the new connector — made at the same
// URL with another header, or moved and rekeyed to the old one's values.
test('a key typed for a connector that was deleted and made again meanwhile is refused', async () => {
  const { admin } = fx.t.acme;
  // the same URL, made again with another header
  let r = await admin('PUT', '/connectors/kb', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  const p = await page('bob', 'kb');
  assert.equal((await admin('DELETE', '/connectors/kb')).status, 204);
  r = await admin('PUT', '/connectors/kb', { url: rec.url, auth: { type: 'user_header', name: 'X-Other-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await p.put({ key: 'kb-bob-typed-for-the-deleted-one' });
  assert.equal(r.status, 409, `refused, not stored for the new connector: ${r.status} ${r.text}`);
  assert.equal(JSON.parse(r.text).error, 'connector_changed');

  // moved once (rec → rec2) when the page was loaded; deleted, made again
  // at rec2 and moved once to rec: the key typed for rec2 is not for rec
  assert.equal((await admin('DELETE', '/connectors/kb')).status, 204);
  r = await admin('PUT', '/connectors/kb', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/kb', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 200, r.body);
  const q = await page('bob', 'kb'); // kb at rec2
  assert.equal((await admin('DELETE', '/connectors/kb')).status, 204);
  r = await admin('PUT', '/connectors/kb', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/kb', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 200, r.body);
  r = await q.put({ key: 'kb-bob-typed-for-rec2' });
  assert.equal(r.status, 409, `refused, not stored for the connector now at rec: ${r.status} ${r.text}`);
  const conns = await admin('GET', `/users/${fx.t.acme.users['bob@acme.com'].id}/connections`);
  assert.deepEqual(conns.json.connections.filter((c) => c.connector === 'kb'), [], 'no key stored for kb');

  // reloaded, the page shows kb as it is now: the key is saved
  const n = await page('bob', 'kb');
  r = await n.put({ key: 'kb-bob-now' });
  assert.equal(r.status, 204, r.text);
  assert.equal((await admin('DELETE', '/connectors/kb')).status, 204);
});

test('a key typed for a connector since deleted and made again elsewhere (moved as often) is refused', async () => {
  // the binding a key state carries must never come back to a value it
  // had: a connector made again under its name is another one, even when
  // it moved as many times as the one the page showed
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/notes', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/notes', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 200, r.body);
  const p = await page('bob', 'notes'); // his page shows notes at rec2's URL (moved once)
  assert.ok(p.state);

  // meanwhile notes is deleted, made again at rec2 and moved once, to rec
  assert.equal((await admin('DELETE', '/connectors/notes')).status, 204);
  r = await admin('PUT', '/connectors/notes', { url: rec2.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/connectors/notes', { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
  assert.equal(r.status, 200, r.body);

  const from = rec.requests().length;
  r = await p.put({ key: 'notes-bob-typed-for-the-old-one' });
  assert.equal(r.status, 409, `refused, not stored for the connector made again: ${r.status} ${r.text}`);
  const conns = await admin('GET', `/users/${fx.t.acme.users['bob@acme.com'].id}/connections`);
  assert.deepEqual(conns.json.connections.filter((c) => c.connector === 'notes'), [], 'no key stored for notes');
  assert.deepEqual(await echoAt('bob', 'notes', rec), { code: -32007 }, 'the connector asks for his key');
  assert.equal(rec.requests().slice(from).some((e) => JSON.stringify(e.headers).includes('notes-bob')), false,
    'no key of his reached the upstream the page never showed');
  assert.equal((await admin('DELETE', '/connectors/notes')).status, 204);
});
