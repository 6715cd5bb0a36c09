// ci-variants: build-w1 build-asan-w2 (admin writes only: one loop plain, two loops under ASan)
// blocked_clients_max: the blocked client metadata document URLs one
// tenant's admins may keep (PUT /admin/v1/tenants/{t}/oauth-clients/
// {client_id}/block, and the DELETE of a document URL, which blocks it).
// Found by review: each block is a record in the store every tenant
// shares, and unlike pins (pinned_clients_max) blocks had no cap — one
// tenant admin could write them without end. Before the fix a block past
// the cap (3 here, through MCPGATE_BLOCKED_CLIENTS_MAX) was 204, and so
// was a DELETE of a never-seen URL (a block only). Covered: a new block
// past the cap is 409 too_many_clients naming the limit and nothing is
// stored; blocking a blocked URL again, a DELETE of a blocked URL, lifting
// a block and then blocking another are allowed; the list of blocked
// records stays exactly what was blocked; a DELETE past the cap of a
// cached document is still carried out (200, "blocked": false, a warning)
// and a pinned document cannot be turned into a block past it. The cached
// document is served over https from loopback (a self-signed certificate
// trusted through cimd_ca_file, as in oauth-cimd.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { startGateway, makeTempDir, makeSelfSignedCert } from './lib/gateway.mjs';
import { adminClient, assertJsonError, createTenant, operatorToken } from './lib/admin.mjs';

let srv, base, gw, op;
const hits = {};

before(async () => {
  const cert = makeSelfSignedCert(await makeTempDir(), 'cimd');
  srv = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (q, s) => {
    hits[q.url] = (hits[q.url] ?? 0) + 1;
    if (q.url !== '/cached.json') { s.writeHead(404); s.end(); return; }
    s.writeHead(200, { 'content-type': 'application/json' });
    s.end(JSON.stringify({ client_id: `${base}/cached.json`, client_name: 'Cached', redirect_uris: ['http://127.0.0.1/callback'] }));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  base = `https://127.0.0.1:${srv.address().port}`;
  gw = await startGateway({
    args: ['--cimd-ca-file', cert.cert],
    env: { MCPGATE_EGRESS_ALLOW_UNTRUSTED: '127.0.0.0/8', MCPGATE_BLOCKED_CLIENTS_MAX: '3' },
  });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
});

after(async () => {
  srv?.closeAllConnections?.();
  await new Promise((r) => (srv ? srv.close(r) : r()));
});

const P = '/admin/v1/tenants/acme/oauth-clients';
const url = (name) => `${base}/${name}.json`;
const one = (id) => op.get(`${P}/${encodeURIComponent(id)}`);
const block = (id) => op.call('PUT', `${P}/${encodeURIComponent(id)}/block`);
const lift = (id) => op.del(`${P}/${encodeURIComponent(id)}/block`);
const del = (id) => op.del(`${P}/${encodeURIComponent(id)}`);

async function blockedIds() {
  const r = await op.get(`${P}?kind=blocked`);
  assert.equal(r.status, 200, r.body);
  for (const c of r.json.clients) assert.equal(c.kind, 'blocked', r.body);
  return r.json.clients.map((c) => c.client_id);
}

function tooMany(r, what) {
  assertJsonError(r, 409, { error: 'too_many_clients', message: /blocked_clients_max: 3\)/ });
  assert.match(r.json.message, /lift a block/, `${what}: the message says what to do`);
}

test('a new block past blocked_clients_max is 409 too_many_clients; re-block, delete and lift are allowed', async () => {
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(url);
  for (const id of [a, b, c]) assert.equal((await block(id)).status, 204, `block ${id}`);
  tooMany(await block(d), 'a fourth block');
  assert.equal((await one(d)).status, 404, 'nothing stored for the refused block');
  assert.deepEqual(await blockedIds(), [a, b, c]);

  // at the cap: blocking a blocked URL again, and deleting it (which blocks it again), are not new blocks
  assert.equal((await block(b)).status, 204, 'a blocked URL blocked again');
  assert.equal((await del(b)).status, 204, 'a DELETE of a blocked URL');
  assert.equal((await one(b)).json?.kind, 'blocked');
  assert.deepEqual(await blockedIds(), [a, b, c]);

  // lifting one makes room for exactly one
  assert.equal((await lift(a)).status, 204);
  assert.equal((await one(a)).status, 404, 'the lifted block is gone');
  assert.equal((await block(d)).status, 204, 'room again after a lift');
  tooMany(await block(a), 'a block past the cap again');
  assert.deepEqual(await blockedIds(), [b, c, d]);
  const all = await op.get(P);
  assert.deepEqual(all.json.clients.map((x) => [x.client_id, x.kind]), [[b, 'blocked'], [c, 'blocked'], [d, 'blocked']], all.body);
});

test('past the cap a DELETE is still carried out without its block; a pin cannot become a block', async () => {
  const [b, c, d] = ['b', 'c', 'd'].map(url);
  assert.deepEqual(await blockedIds(), [b, c, d], 'the previous case left the cap reached');

  // a DELETE of a URL nothing is stored for would only block it
  const never = url('never');
  tooMany(await del(never), 'a DELETE that is a block only');
  assert.equal((await one(never)).status, 404, 'nothing stored');

  // a cached document: deleted (a delete is never refused), not blocked, and the reply says so
  const cached = url('cached');
  const res = await op.get(`${P}/resolve?client_id=${encodeURIComponent(cached)}`);
  assert.equal(res.json?.source, 'fetched', res.body);
  assert.equal((await one(cached)).json?.kind, 'cimd');
  const r = await del(cached);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.client_id, cached);
  assert.equal(r.json.blocked, false);
  assert.equal(r.json.warnings.length, 1, r.body);
  assert.match(r.json.warnings[0], /not blocked.*blocked_clients_max: 3\)/);
  assert.equal((await one(cached)).status, 404, 'the cached record went, and no block took its place');

  // a pinned document: PUT …/block would turn it into a new block
  const pinned = url('pinned');
  const p = await op.call('PUT', P, { client_id: pinned, document: { client_id: pinned, client_name: 'Pinned', redirect_uris: ['http://localhost/cb'] } });
  assert.equal(p.status, 201, p.body);
  tooMany(await block(pinned), 'a pinned document blocked past the cap');
  assert.equal((await one(pinned)).json?.kind, 'pinned', 'the pin is untouched');
  assert.deepEqual(await blockedIds(), [b, c, d]);

  // below the cap again: the pin becomes a block
  assert.equal((await lift(c)).status, 204);
  assert.equal((await block(pinned)).status, 204);
  assert.equal((await one(pinned)).json?.kind, 'blocked');
  assert.deepEqual(await blockedIds(), [b, d, pinned]);
  assert.equal(hits['/pinned.json'], undefined, 'blocks and pins never fetch');
});
