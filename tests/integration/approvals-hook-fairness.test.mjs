// Review of the approval webhook's queue (gateway/mcp/ap_notify.c): it is
// one per loop, shared by every tenant. A tenant whose webhook hangs and
// whose calls are held often (its admin sets both: the URL and a 1 s
// approval_timeout_s) must not keep another tenant's reviewers from being
// notified — nor can four such tenants, each at its own cap, fill the queue.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { rawSession, openStream, mcpHeaders, setupTenant } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups, waitFor, sleep } from './lib/policy.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

let f, evil, rx, hang;
// seven employees of the other tenant: ten held calls each (the pending cap)
const EVIL = Array.from({ length: 7 }, (_, i) => `mallory${i}@evil.com`);

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], gatewayArgs: ['--workers', '1'] });
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 60 }],
  });
  rx = await startSinkReceiver({ path: '/hook' });
  hang = http.createServer(() => {}); // takes the POST, never answers
  await new Promise((r) => hang.listen(0, '127.0.0.1', r));
  let r = await f.t.admin('PATCH', '', { settings: { approval_webhook_url: rx.url } });
  assert.equal(r.status, 200, r.body);
  // the other tenant: its webhook hangs, its calls are held for 1 s
  evil = await setupTenant(f.gw, { id: 'evil', users: ['eve@evil.com', ...EVIL], policy: null });
  r = await evil.putConnector('everything', { url: f.rec.url, auth: { type: 'none' } });
  assert.ok(r.status === 200 || r.status === 201, r.body);
  const eg = groups(evil.scim);
  const eve = evil.users['eve@evil.com'].id;
  await eg.create('Engineers', [eve, ...EVIL.map((u) => evil.users[u].id)]);
  await eg.create('Approvers', [eve]);
  await evil.setPolicy({
    version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['Approvers'], approval_timeout_s: 1 }],
  });
  r = await evil.admin('PATCH', '', { settings: { approval_webhook_url: `http://127.0.0.1:${hang.address().port}/x` } });
  assert.equal(r.status, 200, r.body);
});

after(async () => {
  await rx?.close();
  hang?.closeAllConnections?.();
  await new Promise((r) => (hang ? hang.close(r) : r()));
});

async function held(url, token, s, id) {
  const hdr = mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  return openStream(url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'get-sum', arguments: { a: id, b: 1 } } } });
}

test('another tenant\'s hanging webhook does not keep this tenant\'s reviewers from being notified', async () => {
  // seventy held calls at once (more than a loop's queue holds), each expiring after 1 s
  const eurl = evil.mcpUrl('everything');
  const streams = [];
  await Promise.all(EVIL.map(async (u, k) => {
    const token = (await evil.mintToken(u)).token;
    const es = await rawSession(eurl, token);
    for (let i = 0; i < 10; i++) streams.push(await held(eurl, token, es, k * 10 + i + 1));
  }));
  await sleep(1200);
  for (const st of streams) st.close();
  // now one of acme's calls is held: its reviewers are notified
  const s = await rawSession(f.url, f.tokens.alice);
  const mine = await held(f.url, f.tokens.alice, s, 4242);
  try {
    await waitFor(() => rx.posts.some((p) => p.body.includes('get-sum')),
      { timeoutMs: 8000, what: 'acme\'s webhook notified of its held call' });
  } finally {
    mine.close();
  }
});

test('four tenants whose webhooks hang, each at its own cap, do not fill the queue for everyone else', async () => {
  // found by review: AN_TENANT_MAX (16) x 4 = the loop's whole queue (64);
  // a fifth tenant's notifications were all dropped
  const streams = [];
  for (let k = 0; k < 4; k++) {
    const users = [`a${k}@slow${k}.com`, `b${k}@slow${k}.com`];
    const t = await setupTenant(f.gw, { id: `slow${k}`, users: [`rev${k}@slow${k}.com`, ...users], policy: null });
    let r = await t.putConnector('everything', { url: f.rec.url, auth: { type: 'none' } });
    assert.ok(r.status === 200 || r.status === 201, r.body);
    const tg = groups(t.scim);
    await tg.create('Engineers', users.map((u) => t.users[u].id));
    await tg.create('Approvers', [t.users[`rev${k}@slow${k}.com`].id]);
    await t.setPolicy({
      version: 1, default: 'block',
      rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['Approvers'], approval_timeout_s: 60 }],
    });
    r = await t.admin('PATCH', '', { settings: { approval_webhook_url: `http://127.0.0.1:${hang.address().port}/slow${k}` } });
    assert.equal(r.status, 200, r.body);
    const url = t.mcpUrl('everything');
    for (const [j, u] of users.entries()) {
      const token = (await t.mintToken(u)).token;
      const s = await rawSession(url, token);
      for (let i = 0; i < 10; i++) streams.push(await held(url, token, s, 1000 + k * 100 + j * 10 + i));
    }
  }
  // every slow tenant now holds its cap of the queue; acme's call is held
  const before = rx.posts.length;
  const s = await rawSession(f.url, f.tokens.alice);
  const mine = await held(f.url, f.tokens.alice, s, 4343);
  try {
    await waitFor(() => rx.posts.slice(before).some((p) => p.body.includes('get-sum') && p.body.includes('(request ')),
      { timeoutMs: 8000, what: "acme's webhook notified while four tenants' webhooks hang" });
  } finally {
    mine.close();
    for (const st of streams) st.close();
  }
});
