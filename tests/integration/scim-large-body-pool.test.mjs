// ci-variants: build-w1
// A SCIM body past 256 KiB is parsed on libuv's pool, not on the event loop
// every tenant's requests share. Found by review: bodies up to 32 MiB were
// parsed (jansson, strict) on the loop — a 32 MiB Okta push of a
// 200,000-member group is ~0.5 s of parsing on this machine, for which
// every other request on that loop waited; one tenant's IdP (or anyone
// holding its SCIM token) stalled every tenant.
//
// MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE holds a large body's parse on its
// worker thread while the file exists (and makes "<file>.held" once it
// does): the test sees the parse in flight, and a /healthz on the same
// (only) loop answered meanwhile. Before the fix the parse ran on the
// loop and never reached the hook: "<file>.held" never appeared.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { startScimGateway, scimBase, scimClient, assertScimError, URN } from './lib/scim.mjs';
import { waitFor, request, makeTempDir } from './lib/gateway.mjs';
import { api, createTenant, recreateAfterPurge } from './lib/admin.mjs';

let gw, acme, dir, pause, opToken;
before(async () => {
  dir = await makeTempDir('mcpgate-parse-');
  pause = path.join(dir, 'pause');
  ({ gw, opToken, tenants: { acme } } = await startScimGateway({ tenants: ['acme'], env: { MCPGATE_TEST_SCIM_PARSE_PAUSE_FILE: pause } }));
});
after(async () => {
  fs.rmSync(pause, { force: true });
  await gw?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** an Okta-shaped group push past 256 KiB: 4,000 members (ids of nobody: the gateway refuses or
 * skips them — either way only once the body is parsed) */
function bigGroup(name) {
  const members = Array.from({ length: 4000 }, (_, i) => ({ value: `00u${String(i).padStart(17, '0')}`, display: `user${i}@example.com` }));
  return JSON.stringify({ schemas: [URN.GROUP], displayName: name, members });
}

const held = () => fs.existsSync(pause + '.held');

test('a large body is parsed off the loop: /healthz on the same loop answers while the parse is held', async () => {
  const body = bigGroup('big-one');
  assert.ok(body.length > 256 * 1024, `body ${body.length} bytes`);
  fs.writeFileSync(pause, '');
  let answered = null;
  const big = acme.c.post('/Groups', body).then((r) => { answered = r; return r; });
  try {
    await waitFor(async () => held() || answered !== null, { timeoutMs: 10000, what: 'the large parse in flight (or answered)' });
    assert.equal(answered, null, `the large request was answered while its parse was to be held (parsed on the loop): ${answered?.status}`);
    assert.ok(held(), 'the parse is held on a worker thread');
    const h = await request(gw.port, { path: '/healthz' });
    assert.equal(h.status, 200, h.body);
    assert.equal(answered, null, 'the large request waits for its parse');
  } finally {
    fs.rmSync(pause, { force: true });
  }
  const r = await big;
  // parsed, then answered as any body
  assert.ok([201, 400].includes(r.status), `${r.status} ${r.body.slice(0, 300)}`);
  fs.rmSync(pause + '.held', { force: true });
});

test('a large body whose client leaves while it is parsed ends cleanly; nothing is written', async () => {
  const body = JSON.stringify({ schemas: [URN.GROUP], displayName: 'gone-group', members: [], pad: 'p'.repeat(300 * 1024) });
  fs.writeFileSync(pause, '');
  const sock = await new Promise((resolve, reject) => {
    const s = net.connect(gw.port, '127.0.0.1', () => {
      s.write(`POST ${scimBase('acme')}/Groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme.token}\r\n` +
        `Content-Type: application/scim+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
      s.write(body);
      resolve(s);
    });
    s.on('error', () => {});
    s.once('error', reject);
  });
  try {
    await waitFor(async () => held(), { timeoutMs: 10000, what: 'the large parse in flight' });
    sock.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 200)); // the loop sees the client gone
  } finally {
    fs.rmSync(pause, { force: true });
  }
  // the gateway goes on; the abandoned request wrote nothing
  await waitFor(async () => (await request(gw.port, { path: '/healthz' })).status === 200, { what: 'healthz' });
  const q = await acme.c.get(`/Groups?filter=${encodeURIComponent('displayName eq "gone-group"')}`);
  assert.equal(q.status, 200, q.body);
  assert.equal(q.json.totalResults, 0);
  fs.rmSync(pause + '.held', { force: true });
});

test('a large body that is not JSON is refused with 400 from the pool', async () => {
  const r = await acme.c.post('/Groups', '{"schemas":[' + ' '.repeat(300 * 1024) + ']');
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.scimType, 'invalidSyntax');
  const a = await acme.c.post('/Groups', '[' + '1,'.repeat(150 * 1024) + '1]');
  assert.equal(a.status, 400, a.body);
  assert.match(a.json.detail, /JSON object/);
});

// Found by review: the SCIM token was checked when the headers arrived and
// never again, so a request that waited (a large body's parse here; the
// writer's queue does the same) ran after its tenant was deleted — and,
// once the id was created again, inside the NEW tenant: a user planted by
// the old tenant's token appeared in the new incarnation's directory, and
// a search with the old token listed the new tenant's users. Before the
// fix: the POST answered 201 and the new tenant listed "ghost"; the search
// answered 200 with the new tenant's user.
test('a request authenticated before its tenant was deleted does not run in the tenant created again', async () => {
  const old = await createTenant(gw.port, opToken, 'doomed');
  const oc = scimClient(gw.port, 'doomed', old.scim.token);
  const pad = ' '.repeat(300 * 1024); // past 256 KiB: parsed on the pool, where the hook holds it
  fs.writeFileSync(pause, '');
  let post, search;
  try {
    post = oc.post('/Users', JSON.stringify({ schemas: [URN.USER], userName: 'ghost@doomed.test' }) + pad);
    search = oc.post('/Users/.search', JSON.stringify({ filter: 'userName eq "new@doomed.test"' }) + pad);
    await waitFor(async () => fs.existsSync(pause + '.held'), { timeoutMs: 10000, what: 'the large parses held' });
    const d = await api(gw.port, opToken, 'DELETE', '/admin/v1/tenants/doomed');
    assert.equal(d.status, 202, d.body);
    const fresh = await recreateAfterPurge(gw.port, opToken, 'doomed');
    const nc = scimClient(gw.port, 'doomed', fresh.scim.token);
    await nc.createUser('new@doomed.test');
    fs.rmSync(pause, { force: true });
    const [p, s] = await Promise.all([post, search]);
    assertScimError(p, 401);
    assert.match(String(p.headers['www-authenticate'] ?? ''), /^Bearer\b/);
    assertScimError(s, 401);
    const l = await nc.get('/Users');
    assert.equal(l.status, 200, l.body);
    assert.deepEqual(l.json.Resources.map((u) => u.userName), ['new@doomed.test'], 'nothing of the old tenant in the new one');
  } finally {
    fs.rmSync(pause, { force: true });
    await Promise.allSettled([post, search]);
    fs.rmSync(pause + '.held', { force: true });
  }
});

// The same re-check for a SCIM token revoked while its request waited (a
// rotation in Okta's admin console): the request is refused, nothing written.
test('a request whose SCIM token is revoked while it waits is refused; the new token works', async () => {
  const t = await createTenant(gw.port, opToken, 'rotating');
  const oc = scimClient(gw.port, 'rotating', t.scim.token);
  const next = await api(gw.port, opToken, 'POST', '/admin/v1/tenants/rotating/scim-tokens', { name: 'next' });
  assert.equal(next.status, 201, next.body);
  const nc = scimClient(gw.port, 'rotating', next.json.token);
  fs.writeFileSync(pause, '');
  let post;
  try {
    post = oc.post('/Users', JSON.stringify({ schemas: [URN.USER], userName: 'late@rotating.test' }) + ' '.repeat(300 * 1024));
    await waitFor(async () => fs.existsSync(pause + '.held'), { timeoutMs: 10000, what: 'the large parse held' });
    const d = await api(gw.port, opToken, 'DELETE', `/admin/v1/tenants/rotating/scim-tokens/${t.scim.token_id}`);
    assert.equal(d.status, 204, d.body);
    fs.rmSync(pause, { force: true });
    assertScimError(await post, 401);
    const l = await nc.get('/Users');
    assert.equal(l.status, 200, l.body);
    assert.equal(l.json.totalResults, 0, 'nothing written with the revoked token');
  } finally {
    fs.rmSync(pause, { force: true });
    await Promise.allSettled([post]);
    fs.rmSync(pause + '.held', { force: true });
  }
});
