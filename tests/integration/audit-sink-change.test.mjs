// A tenant's sink settings changed right after a POST was accepted: the new
// sink goes on from what the old one delivered, not from the cursor the
// audit thread has not committed yet. The driver used to make the new sink
// with no positions, read the stored cursor (written with the audit log's
// next commit, up to audit_batch_ms after the 2xx), and send the batch the
// old receiver had just accepted again: to the new receiver after a URL
// change, and to the same receiver twice after a token change.
//
// How the window is held open without timing: audit_batch_ms is 1000 (the
// cursor commits a second after the 2xx), and the operator's sink POSTs to
// a receiver that answers only when the test says so — its 2xx makes the
// driver look at the tenants' sinks at once, right after the PUT.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, waitFor } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { startSinkReceiver, ndjsonLines } from './lib/sink.mjs';

const closers = [];
after(async () => { for (const c of closers) await c(); });

/** An NDJSON receiver that answers 200 only when release() is called. */
async function heldReceiver() {
  const held = [];
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => held.push(res));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  return {
    url: `http://127.0.0.1:${srv.address().port}/op`,
    held: () => held.length,
    release: () => { for (const res of held.splice(0)) res.writeHead(200, { 'content-length': 2 }).end('{}'); },
  };
}

async function receiver() {
  const rx = await startSinkReceiver();
  closers.push(() => rx.close());
  return rx;
}

const idsOf = (rx) => rx.accepted().flatMap((p) => ndjsonLines(p.body).map((x) => x.id));
const seqsOf = (rx) => rx.accepted().flatMap((p) => ndjsonLines(p.body).map((x) => x.seq));
const metricsText = (g, op) => fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${op}` } }).then((x) => x.text());

/** True when the receivers accepted every record of acme's chain so far (at least min). */
async function allAccepted(g, min, ...rxs) {
  const got = new Set(rxs.flatMap(idsOf));
  const r = await api(g.port, operatorToken(g.dataDir), 'GET', '/admin/v1/tenants/acme/audit?limit=1000');
  assert.equal(r.status, 200, r.body);
  return r.json.records.length >= min && r.json.records.every((x) => got.has(x.id));
}

test("a tenant's sink changed right after a 2xx goes on after what was delivered, sending nothing again", async () => {
  const opRx = await heldReceiver();
  const g = await startGateway({ args: ['--audit-sink-url', opRx.url, '--audit-batch-ms', '1000'] });
  const op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  await waitFor(() => opRx.held() > 0, { timeoutMs: 15000, what: "the operator's first POST" });
  const base = '/admin/v1/tenants/acme/audit/sink';

  // 1. a URL change: the new receiver gets nothing the old one accepted
  const rxA = await receiver();
  const rxB = await receiver();
  let r = await api(g.port, op, 'PUT', base, { url: rxA.url });
  assert.equal(r.status, 201, r.body);
  // every record so far accepted, the PUT's own last: nothing else is queued
  // for the audit log's next commit when the last 2xx came
  await waitFor(() => allAccepted(g, 2, rxA), { timeoutMs: 15000, what: 'the first receiver accepting every record' });
  r = await api(g.port, op, 'PUT', base, { url: rxB.url });
  assert.equal(r.status, 200, r.body);
  opRx.release(); // the driver looks at the sinks now, within the cursor's commit interval
  await waitFor(() => rxB.accepted().length > 0, { timeoutMs: 15000, what: 'the new receiver accepting' });
  const fromA = new Set(idsOf(rxA));
  const again = idsOf(rxB).filter((id) => fromA.has(id));
  assert.deepEqual(again, [], 'records the old receiver accepted went to the new one');

  // 2. a token change on the same URL: that receiver gets nothing twice
  await waitFor(() => opRx.held() > 0, { timeoutMs: 15000, what: "the operator's next POST" });
  r = await api(g.port, op, 'PUT', base, { url: rxB.url, token: 'rotated-token-1' });
  assert.equal(r.status, 200, r.body);
  await waitFor(() => allAccepted(g, 4, rxA, rxB), { timeoutMs: 15000, what: 'every record so far at the receivers' });
  r = await api(g.port, op, 'PUT', base, { url: rxB.url, token: 'rotated-token-2' });
  assert.equal(r.status, 200, r.body);
  opRx.release();
  await waitFor(() => rxB.posts.some((p) => p.headers.authorization === 'Bearer rotated-token-2'),
    { timeoutMs: 15000, what: 'a POST with the second token' });
  const ids = idsOf(rxB);
  assert.equal(new Set(ids).size, ids.length, `a record went twice to the same receiver: ${ids.join(' ')}`);

  // nothing skipped: every record of the chain went to one receiver or the other
  opRx.release();
  await waitFor(() => allAccepted(g, 5, rxA, rxB), { timeoutMs: 15000, what: 'every record delivered' });
  opRx.release();
  await g.stop();
});

// A sink deleted and made again between two looks of the driver (a
// "replace" by a provisioning tool: DELETE, then PUT): the record's
// revision starts again at 1, and the driver, which told settings apart by
// revision, kept POSTing to the deleted sink's URL with its token. (And
// the new sink went on from the deleted one's position: it is a new sink,
// which gets the chain from its first record — the next test.)
test('a sink deleted and made again at once sends to the new URL, nothing more to the old one', async () => {
  const g = await startGateway({});
  const op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  const base = '/admin/v1/tenants/acme/audit/sink';
  const rxA = await receiver();
  const rxB = await receiver();
  let r = await api(g.port, op, 'PUT', base, { url: rxA.url, token: 'old-receiver-token' });
  assert.equal(r.status, 201, r.body);
  await waitFor(() => allAccepted(g, 2, rxA), { timeoutMs: 15000, what: 'the first receiver accepting every record' });
  const n = rxA.posts.length;
  r = await api(g.port, op, 'DELETE', base);
  assert.equal(r.status, 204, r.body);
  r = await api(g.port, op, 'PUT', base, { url: rxB.url, token: 'new-receiver-token' });
  assert.equal(r.status, 201, r.body);
  r = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'after-replace' });
  assert.equal(r.status, 201, r.body);
  await waitFor(() => allAccepted(g, 5, rxA, rxB), { timeoutMs: 15000, what: 'every record delivered' });
  assert.equal(rxA.posts.length, n, 'the deleted sink\'s receiver got POSTs after the delete');
  assert.ok(rxB.posts.every((p) => p.headers.authorization === 'Bearer new-receiver-token'));
  // and it is a new sink, however quickly it followed: the chain from its first record
  await waitFor(() => allAccepted(g, 5, rxB), { timeoutMs: 15000, what: 'the new receiver getting the whole chain' });
  assert.equal(seqsOf(rxB)[0], 1, `the new sink began after the deleted one's position: ${seqsOf(rxB).join(' ')}`);
  await g.stop();
});

// A sink deleted and set up again later. Its delivery cursor outlived the
// DELETE (kept in the audit environment under the tenant's sink name), so
// the new sink began where the deleted one had stopped — whatever the new
// receiver is, it never got what came before — while a brand-new sink gets
// the tenant's chain from its first record. A sink that is made is now a
// new sink whatever came before: its own cursor, from the first record.
test('a sink deleted and set up again later starts like a brand-new one: the chain from its first record', async () => {
  const g = await startGateway({});
  const op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  const base = '/admin/v1/tenants/acme/audit/sink';
  const rxA = await receiver();
  let r = await api(g.port, op, 'PUT', base, { url: rxA.url });
  assert.equal(r.status, 201, r.body);
  await waitFor(() => allAccepted(g, 2, rxA), { timeoutMs: 15000, what: 'the first receiver accepting every record' });
  assert.equal(seqsOf(rxA)[0], 1, 'a brand-new sink begins with the first record');
  r = await api(g.port, op, 'DELETE', base);
  assert.equal(r.status, 204, r.body);
  // the driver let it go (its metrics series is gone); a record while there is no sink
  await waitFor(async () => !(await metricsText(g, op)).includes('sink="tenant:acme"'), { timeoutMs: 10000, what: 'the deleted sink retired' });
  r = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'between' });
  assert.equal(r.status, 201, r.body);
  const rxB = await receiver();
  r = await api(g.port, op, 'PUT', base, { url: rxB.url });
  assert.equal(r.status, 201, r.body);
  await waitFor(() => allAccepted(g, 5, rxB), { timeoutMs: 10000, what: 'the new receiver getting the whole chain' });
  const seqs = seqsOf(rxB);
  assert.deepEqual(seqs.slice(0, 5), [1, 2, 3, 4, 5], `in order from the first: ${seqs.join(' ')}`);
  assert.equal(rxA.accepted().length, rxA.posts.length);
  await g.stop();
});
