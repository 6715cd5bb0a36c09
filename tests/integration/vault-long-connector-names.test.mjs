// Connector names are up to 32 characters, but the employee page's key
// (PUT api/connections/{connector}) and disconnect, and the admin's
// DELETE …/users/{user}/connections/{connector}, copied the name into a
// 17-byte token-id buffer (found by review). A person saving their API key
// for "docs-engineering-wiki" had it stored for "docs-engineering" — sent
// on their calls to that other upstream — and nobody could disconnect a
// connector whose name is longer than 16 characters.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { connectClient, startEverything, startRecorder, ALLOW_ALL_POLICY } from './lib/mcp.mjs';

let fx, ev, rec, token;
const LONG = 'docs-engineering-wiki', SHORT = 'docs-engineering'; // SHORT is LONG cut to 16

before(async () => {
  [fx, ev] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
      accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
    }),
    startEverything(),
  ]);
  rec = await startRecorder(ev.url);
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  for (const name of [LONG, SHORT]) {
    const r = await admin('PUT', `/connectors/${name}`, { url: rec.url, auth: { type: 'user_header', name: 'X-Api-Key' } });
    assert.equal(r.status, 201, r.body);
  }
  const m = await admin('POST', '/tokens', { user: 'alice@acme.com', name: 'laptop' });
  assert.equal(m.status, 201, m.body);
  token = m.json.token;
});

after(async () => {
  await rec?.close?.().catch(() => {});
  await ev?.stop?.().catch(() => {});
  await fx?.stop();
});

test('a key saved for a connector with a long name is that connector\'s, and an admin disconnects it', async () => {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200, s.text);
  const { json } = await me(b, fx, 'acme');
  const state = json.connections.find((c) => c.connector === LONG)?.key_state;
  const put = await b.request('PUT', `${fx.base('acme')}/api/connections/${LONG}`, JSON.stringify({ key: 'wiki-key-9d1', state }),
    { follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': json.csrf } });
  assert.ok(put.status >= 200 && put.status < 300, `PUT key for ${LONG}: ${put.status} ${put.text}`);

  const conns = await fx.t.acme.admin('GET', '/users/alice%40acme.com/connections');
  assert.deepEqual(conns.json.connections.map((c) => c.connector), [LONG], 'the key is stored for the connector it was saved for');

  const c = await connectClient(`${fx.base('acme')}/mcp`, token);
  try {
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes(`${SHORT}__connect`), `the other connector still asks for a key: ${names.join(', ')}`);
    const from = rec.requests().length;
    await c.client.callTool({ name: `${LONG}__echo`, arguments: { message: 'x' } });
    const sent = rec.requests().slice(from).filter((e) => e.json?.method === 'tools/call');
    assert.equal(sent[0]?.headers['x-api-key'], 'wiki-key-9d1');
  } finally { await c.close(); }

  const d = await fx.t.acme.admin('DELETE', `/users/alice%40acme.com/connections/${LONG}`);
  assert.equal(d.status, 204, `admin disconnect of ${LONG}: ${d.body}`);
  const after = await fx.t.acme.admin('GET', '/users/alice%40acme.com/connections');
  assert.deepEqual(after.json.connections, []);
});
