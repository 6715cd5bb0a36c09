// Self-service tokens on the employee page are bounded: one person holds at
// most 50 live ones (each is a store record, and /api/me lists them); the
// 51st is refused with 409 until one is revoked. /api/me lists only the
// person's own tokens, read through the per-user index.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startLoginFixture, signIn, me } from './lib/login.mjs';

let fx;

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: {
        users: [
          { userName: 'bob@acme.com', externalId: '00u-bob' },
          { userName: 'carol@acme.com', externalId: '00u-carol' },
        ],
      },
    },
    accounts: {
      '00u-bob': { email: 'bob@acme.com', email_verified: true },
      '00u-carol': { email: 'carol@acme.com', email_verified: true },
    },
  });
  await fx.t.acme.setSettings({ self_service_tokens: true });
});

after(async () => { if (fx) await fx.stop(); });

async function signedIn(sub) {
  const b = fx.browser();
  const r = await signIn(b, `${fx.base('acme')}/login`, { login: sub });
  assert.equal(r.status, 200, r.text);
  const { json } = await me(b, fx, 'acme');
  const create = (name) => b.post(`${fx.base('acme')}/api/tokens`, JSON.stringify({ name, expires_days: 1 }), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': json.csrf },
  });
  const revoke = (id) => b.request('DELETE', `${fx.base('acme')}/api/tokens/${id}`, undefined, {
    follow: false, headers: { 'x-csrf-token': json.csrf },
  });
  return { b, create, revoke };
}

test('an employee cannot mint tokens without end: 50 live, then 409 until one is revoked', async () => {
  const bob = await signedIn('00u-bob');
  const ids = [];
  for (let i = 0; i < 50; i++) {
    const r = await bob.create(`t${i}`);
    assert.equal(r.status, 201, `token ${i}: ${r.status} ${r.text}`);
    ids.push(JSON.parse(r.text).id);
  }
  let r = await bob.create('one-too-many');
  assert.equal(r.status, 409, `the 51st: ${r.status} ${r.text}`);
  assert.equal(JSON.parse(r.text).error, 'too_many_tokens');
  // another person is not held by bob's count
  const carol = await signedIn('00u-carol');
  r = await carol.create('mine');
  assert.equal(r.status, 201, r.text);
  // /api/me: bob's 50, none of carol's
  const list = (await me(bob.b, fx, 'acme')).json.tokens.items;
  assert.equal(list.length, 50);
  assert.ok(list.every((t) => /^t\d+$/.test(t.name) && !('user' in t)));
  assert.deepEqual((await me(carol.b, fx, 'acme')).json.tokens.items.map((t) => t.name), ['mine']);
  // one revoked: room for one more
  r = await bob.revoke(ids[0]);
  assert.equal(r.status, 204, r.text);
  r = await bob.create('again');
  assert.equal(r.status, 201, r.text);
  r = await bob.create('and-again');
  assert.equal(r.status, 409);
});

// "Sign out everywhere" is what a person presses after losing a laptop: the
// access tokens they made for their agents (pasted into Claude Code on
// that laptop) go with their browser sessions and connected applications,
// and an MCP stream open with one is closed.
test('sign out everywhere revokes the person\'s access tokens and closes a stream open with one', async () => {
  const carol = await signedIn('00u-carol');
  const r = await carol.create('laptop');
  assert.equal(r.status, 201, r.text);
  const { token } = JSON.parse(r.text);
  assert.match(token, /^mgw_/);
  const mcp = `${fx.base('acme')}/mcp`;
  const init = () => fetch(mcp, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  });
  const ok = await init();
  const okText = await ok.text();
  assert.equal(ok.status, 200, okText);
  const sid = ok.headers.get('mcp-session-id');
  assert.ok(sid, 'a session');
  // a GET stream held open with the token
  const ac = new AbortController();
  const stream = await fetch(mcp, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
    signal: ac.signal,
  });
  assert.equal(stream.status, 200);
  // ended by the gateway: the body ends, or the connection is cut under it
  const ended = (async () => { try { for await (const _ of stream.body); } catch {} return true; })();
  const { json } = await me(carol.b, fx, 'acme');
  const out = await carol.b.post(`${fx.base('acme')}/signout-everywhere`, { csrf: json.csrf }, { follow: false });
  assert.equal(out.status, 303);
  const closed = await Promise.race([ended, new Promise((res) => setTimeout(() => res('open'), 5000))]);
  ac.abort();
  assert.equal(closed, true, 'the stream open with the token was closed by the gateway');
  const after = await init();
  assert.equal(after.status, 401, `the token still works after sign out everywhere: ${after.status}`);
  await after.text();
  // signed in again: no token of theirs is left
  const again = await signedIn('00u-carol');
  assert.deepEqual((await me(again.b, fx, 'acme')).json.tokens.items, []);
});
