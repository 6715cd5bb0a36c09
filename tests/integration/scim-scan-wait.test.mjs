// A SCIM scan past the heavy-read limit waits its turn (Okta sends several
// at once). Found by review: a waiting scan outlived its client (waited
// 10 s, then scanned for nobody, while closed connections no longer counted
// against max_connections), and one that waited was answered with the
// directory after its SCIM token was revoked or its tenant deleted.
// The pool is 3 threads here, so the process has one heavy-read slot: one
// stalled audit export holds it and every scan waits.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { fillAuditChain, stalledExport } from './lib/stalled.mjs';
import { startGateway, waitFor, sleep, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startEverything, startRecorder, setupTenant, UPSTREAM_SECRET } from './lib/mcp.mjs';
import { api } from './lib/admin.mjs';

const ALLOW = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'] }] };
let gw, up, rec, acme, delta;
const FILTER = '/t/delta/scim/v2/Users?filter=' + encodeURIComponent('userName co "ann"');



/** a scan sent on its own socket; the socket is returned (not read) */
function rawScan(port, token, path = FILTER) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      resolve(sock);
    });
    sock.on('error', () => {});
    sock.once('error', reject);
  });
}

const query = (t) => t.admin('GET', '/audit?limit=1');
const scimDone = async () => metricValue(await scrapeMetrics(gw), 'mcpgate_http_request_duration_seconds_count', { route: 'scim' });

before(async () => {
  [gw, up] = await Promise.all([startGateway({ args: ['--audit-args-max', '32768'], env: { UV_THREADPOOL_SIZE: '3' } }), startEverything()]);
  rec = await startRecorder(up.url);
  for (const id of ['acme', 'delta', 'eps']) {
    const t = await setupTenant(gw, { id, users: [`ann@${id}.com`], policy: ALLOW });
    const r = await t.putConnector('everything', { url: rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
    assert.equal(r.status, 201, r.body);
    if (id === 'acme') acme = { t, token: (await t.mintToken('ann@acme.com')).token };
    if (id === 'delta') delta = { t };
    if (id === 'eps') delta.eps = t;
  }
  await fillAuditChain(acme.t.mcpUrl('everything'), acme.token, 300);
  await waitFor(async () => (await query(acme.t)).json?.records?.length === 1, { what: 'acme\'s records' });
});
after(async () => { await gw?.stop(); await rec?.stop?.(); await up?.stop?.(); });

async function holdTheSlot() {
  const x = await stalledExport(gw.port, 'acme', acme.t.opToken);
  let r;
  await waitFor(async () => (r = await query(delta.t)).status === 503, { timeoutMs: 8000, what: 'the process at its one heavy read' });
  return x;
}

test('a waiting scan whose client is gone ends at once: it does not wait 10 s, then scan for nobody', async () => {
  const x = await holdTheSlot();
  const before = await scimDone();
  const socks = [];
  for (let i = 0; i < 20; i++) socks.push(await rawScan(gw.port, delta.t.scim.token));
  await sleep(300); // every scan is in, waiting
  for (const s of socks) s.resetAndDestroy(); // the clients are gone (RST)
  await sleep(1500);
  const m = await scrapeMetrics(gw);
  const open = metricValue(m, 'mcpgate_http_connections_open');
  const ended = metricValue(m, 'mcpgate_http_request_duration_seconds_count', { route: 'scim' }) - before;
  // the connections are closed (they no longer count against max_connections) ...
  assert.ok(open <= 3, `connections open: ${open}`);
  // ... so the waiting requests must end too, or any number of them can pile up
  try {
    assert.equal(ended, 20, 'the 20 scans whose clients left ended within 1.5 s (they still wait for a slot)');
  } finally {
    x.destroy();
    await waitFor(async () => (await scimDone()) - before >= 20, { timeoutMs: 15000, what: 'the abandoned scans to end' });
  }
});

test('a scan that waited is not answered once its SCIM token was revoked meanwhile', async () => {
  const mk = await api(gw.port, delta.t.opToken, 'POST', '/admin/v1/tenants/delta/scim-tokens', { name: 'second' });
  assert.equal(mk.status, 201, mk.body);
  const tok = mk.json.token;
  const x = await holdTheSlot();
  const sock = await rawScan(gw.port, tok);
  let reply = '';
  sock.on('data', (d) => { reply += d; });
  await sleep(300);
  const rv = await api(gw.port, delta.t.opToken, 'DELETE', `/admin/v1/tenants/delta/scim-tokens/${mk.json.id}`);
  assert.equal(rv.status, 204, rv.body);
  assert.equal((await delta.t.scim.call('GET', '/Users', undefined, { headers: { authorization: `Bearer ${tok}` } })).status, 401, 'the token is revoked');
  x.destroy();
  await waitFor(() => reply.includes('\r\n\r\n'), { timeoutMs: 15000, what: 'the waiting scan\'s reply' });
  sock.destroy();
  const status = Number(reply.split(' ')[1]);
  assert.notEqual(status, 200, `answered with the directory after the token was revoked: ${reply.slice(0, 300)}`);
});

test('a scan that waited is not answered once its tenant was deleted meanwhile', async () => {
  const eps = delta.eps;
  const x = await holdTheSlot();
  const sock = await rawScan(gw.port, eps.scim.token, '/t/eps/scim/v2/Users?filter=' + encodeURIComponent('userName co "ann"'));
  let reply = '';
  sock.on('data', (d) => { reply += d; });
  await sleep(300);
  const d = await api(gw.port, eps.opToken, 'DELETE', '/admin/v1/tenants/eps');
  assert.ok(d.status === 202 || d.status === 204 || d.status === 200, `${d.status} ${d.body}`);
  x.destroy();
  await waitFor(() => reply.includes('\r\n\r\n'), { timeoutMs: 15000, what: 'the waiting scan\'s reply' });
  sock.destroy();
  const status = Number(reply.split(' ')[1]);
  assert.notEqual(status, 200, `answered after the tenant was deleted: ${reply.slice(0, 400)}`);
});

// A read an index answers ran on the event loop whatever it rendered: a
// group's GET walked every member (each member's user read for its
// display, ~10 µs), and a members[value eq "…"] filter rendered every
// member of every group of that user to check it — one SCIM token could
// hold the loop every tenant shares for seconds per request with groups it
// provisioned itself. Found by review. Past the loop's budget (2,500
// members or resources; scim.h) such a read is now a heavy read like a
// scan: on the pool, holding a slot, waiting its turn (the admin API's
// directory view alike: past its slots, 429/503 with Retry-After).
test('a read whose members pass the loop\'s budget waits for a heavy-read slot like a scan, then answers whole', async () => {
  const N = 2600;
  const ids = [];
  for (let i = 0; i < N; i += 100) {
    const rs = await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, k) =>
      delta.t.scim.post('/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `m${i + k}@delta.com` })));
    for (const r of rs) { assert.equal(r.status, 201, r.body); ids.push(r.json.id); }
  }
  const g = await delta.t.scim.createGroup('Everyone', ids);
  const small = await delta.t.scim.createGroup('Few', ids.slice(0, 3));
  const reads = [`/Groups/${g.id}`, '/Groups?' + new URLSearchParams({ filter: `members[value eq "${ids[1]}"]` }),
    '/Groups?' + new URLSearchParams({ filter: `id eq "${g.id}" and members[value eq "${ids[1]}"]`, excludedAttributes: 'members' })];
  const x = await holdTheSlot();
  let released = false;
  try {
    const pending = reads.map((p) => {
      const o = { done: false };
      o.p = delta.t.scim.get(p).then((r) => { o.done = true; return r; });
      return o;
    });
    // what the loop may do is answered meanwhile: a small group, a user
    assert.equal((await delta.t.scim.get(`/Groups/${small.id}`)).status, 200);
    assert.equal((await delta.t.scim.get(`/Users/${ids[0]}`)).status, 200);
    // the admin API's view of the directory alike: a small group is read at
    // once, the large one is a heavy read (the process's one slot is held: 503)
    const adminGroup = (id) => api(gw.port, delta.t.opToken, 'GET', `/admin/v1/tenants/delta/groups/${id}`);
    assert.equal((await adminGroup(small.id)).status, 200);
    const busy = await adminGroup(g.id);
    assert.equal(busy.status, 503, `the admin's read of the large group is a heavy read: ${busy.body.slice(0, 200)}`);
    assert.equal(busy.json.error, 'busy');
    await sleep(500);
    assert.deepEqual(pending.map((o) => o.done), reads.map(() => false), 'the large reads wait for the slot (not run on the loop)');
    x.destroy();
    released = true;
    const [one, byMember, both] = await Promise.all(pending.map((o) => o.p));
    assert.equal(one.status, 200, one.body.slice(0, 300));
    assert.equal(one.json.members.length, N, 'every member');
    assert.equal(byMember.status, 200, byMember.body.slice(0, 300));
    assert.deepEqual(byMember.json.Resources.map((r) => r.id).sort(), [g.id, small.id].sort());
    assert.equal(both.status, 200, both.body.slice(0, 300));
    assert.deepEqual(both.json.Resources.map((r) => r.id), [g.id]);
    assert.equal(both.json.Resources[0].members, undefined, 'excludedAttributes=members');
    let whole;
    await waitFor(async () => (whole = await adminGroup(g.id)).status === 200, { what: 'the admin\'s read once the slot is free' });
    assert.equal(whole.json.members.length, N);
  } finally {
    if (!released) x.destroy();
  }
});

// Found by review: an unfiltered GET /Users (or /Groups, or a .search) with
// a deep startIndex was answered on the loop, walking every resource before
// it — at a million users ~0.1 s of the loop every tenant shares, per page,
// for any SCIM token. A page deeper than the loop's budget can skip to
// (250,000; scim.h) is now a heavy read, on the pool like a scan; a
// shallower one stops at the budget like any other read. The page is the
// same: startIndex and totalResults as asked, empty past the end.
test('an unfiltered page with a deep startIndex waits for a heavy-read slot like a scan, then answers the same page', async () => {
  const total = (await delta.t.scim.get('/Users?count=0')).json.totalResults;
  assert.ok(total > 2500, `delta's users: ${total}`);
  const x = await holdTheSlot();
  let released = false;
  try {
    const deep = [
      ['GET', '/Users?startIndex=250002&count=100'],
      ['GET', '/Groups?count=100&startIndex=1000000'],
      ['POST', '/Users/.search', { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], startIndex: 300000, count: 10 }],
    ].map(([m, p, b]) => {
      const o = { done: false };
      o.p = delta.t.scim.call(m, p, b).then((r) => { o.done = true; return r; });
      return o;
    });
    // a page the loop may skip to is answered meanwhile: Okta's next page
    const near = await delta.t.scim.get(`/Users?startIndex=${total - 1}&count=100`);
    assert.equal(near.status, 200, near.body.slice(0, 200));
    assert.equal(near.json.itemsPerPage, 2);
    assert.equal(near.json.startIndex, total - 1);
    // the admin API's view of the directory alike: a deep page is a heavy read
    const busy = await api(gw.port, delta.t.opToken, 'GET', '/admin/v1/tenants/delta/users?startIndex=500000');
    assert.equal(busy.status, 503, `the admin's deep page is a heavy read: ${busy.body.slice(0, 200)}`);
    await sleep(500);
    assert.deepEqual(deep.map((o) => o.done), [false, false, false], 'the deep pages wait for the slot (not run on the loop)');
    x.destroy();
    released = true;
    const [users, groups, search] = await Promise.all(deep.map((o) => o.p));
    for (const [r, start, n] of [[users, 250002, total], [groups, 1000000, null], [search, 300000, total]]) {
      assert.equal(r.status, 200, r.body.slice(0, 300));
      assert.equal(r.json.startIndex, start);
      assert.equal(r.json.itemsPerPage, 0);
      assert.deepEqual(r.json.Resources, []);
      if (n !== null) assert.equal(r.json.totalResults, n);
    }
  } finally {
    if (!released) x.destroy();
  }
});

// Found by review: a filter's work was spent as one entry of the loop's
// budget a resource, whatever it compared. A `co` ran a comparison at every
// offset of the value (value x literal), and a filter of hundreds of nodes
// runs each over the resource: with a displayName an index answers in
// front (groups' names are not unique), one SCIM token held the loop every
// tenant shares for ~1 s a request with two groups it made itself. Each
// comparison now spends its bytes (~20 MB of comparisons buy the loop's
// budget; scim_int.h): past it the read is a heavy read like a scan.
test('a filter whose comparisons pass the loop\'s budget waits for a heavy-read slot like a scan, then answers the same', async () => {
  const big = 'a'.repeat(200 * 1024);
  const mk = async (note) => {
    const r = await delta.t.scim.post('/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'noted', members: [], note });
    assert.equal(r.status, 201, r.body.slice(0, 200));
    return r.json.id;
  };
  await mk(big);
  const marked = await mk(`${big}b`);
  // 200 nodes of co over 200 kB: ~40 MB compared for the group without a "b"
  const filter = `displayName eq "noted" and (${Array(200).fill('note co "B"').join(' or ')})`;
  const x = await holdTheSlot();
  let released = false;
  try {
    const o = { done: false };
    o.p = delta.t.scim.get('/Groups?' + new URLSearchParams({ filter, excludedAttributes: 'note,members' })).then((r) => { o.done = true; return r; });
    // what the loop may do is answered meanwhile: the same filter with one node
    const one = await delta.t.scim.get('/Groups?' + new URLSearchParams({ filter: 'displayName eq "noted" and note co "B"', excludedAttributes: 'note,members' }));
    assert.equal(one.status, 200, one.body.slice(0, 200));
    assert.deepEqual(one.json.Resources.map((r) => r.id), [marked]);
    await sleep(500);
    assert.equal(o.done, false, 'the costly filter waits for the slot (not run on the loop)');
    x.destroy();
    released = true;
    const r = await o.p;
    assert.equal(r.status, 200, r.body.slice(0, 300));
    assert.deepEqual(r.json.Resources.map((g) => g.id), [marked], 'the same answer as a scan');
  } finally {
    if (!released) x.destroy();
  }
});
