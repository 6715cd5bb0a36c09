// Tenants' receivers that hang (accept the connection and the POST, never
// answer) must not hold back another tenant's delivery. The driver lets at
// most SINK_INFLIGHT_MAX (8) tenant POSTs run at once; eight hanging
// receivers used to hold all eight for the first-byte timeout (30 s), and
// again after each back-off, while every other tenant's records waited.
// Now sinks that did not answer their last POST promptly share half of the
// slots, and a sink that did (here: acme's) still finds one.
//
// Asserted by events, not time: when acme's receiver gets the record
// written after the hangers took their slots, no hanging POST has ended.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, waitFor } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import { startSinkReceiver, ndjsonLines } from './lib/sink.mjs';

const HANGERS = 8; // SINK_INFLIGHT_MAX
const servers = [];
after(async () => {
  for (const s of servers) { s.closeAllConnections?.(); s.close(); }
});

/**
 * A receiver that takes a POST and never answers it, counting the hanging
 * ones open and ended in hang; while hang.answering it answers 200 at once
 * instead (those POSTs in s.posts, s.accepted() as startSinkReceiver's).
 */
async function hangingReceiver(hang) {
  const s = http.createServer((req, res) => {
    if (hang.answering) {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        s.posts.push({ body: Buffer.concat(chunks).toString('utf8'), ok: true });
        res.writeHead(200, { 'content-length': 2 }).end('{}');
      });
      return;
    }
    req.resume();
    hang.open++;
    req.socket.on('close', () => { hang.open--; hang.ended++; });
  });
  s.posts = [];
  s.accepted = () => s.posts;
  servers.push(s);
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${s.address().port}/in`;
  return s;
}

/** A receiver that answers 200 and notes, with each POST, what the hangers were doing. */
async function healthyReceiver(hang) {
  const rx = await startSinkReceiver({ status: (n, entry) => { entry.hang = { open: hang.open, ended: hang.ended }; return 200; } });
  servers.push({ close: () => rx.close() });
  return rx;
}

const idsOf = (rx) => new Set(rx.accepted().flatMap((p) => ndjsonLines(p.body).map((x) => x.id)));

/** Waits until rx accepted every record of tenant t so far (at least min). */
async function allAccepted(g, t, rx, min = 2) {
  await waitFor(async () => {
    const q = await api(g.port, operatorToken(g.dataDir), 'GET', `/admin/v1/tenants/${t}/audit?limit=1000`);
    const got = idsOf(rx);
    return q.json.records.length >= min && q.json.records.every((x) => got.has(x.id));
  }, { timeoutMs: 15000, what: `${t}'s records at its receiver` });
}

/** acme with a sink on a healthy receiver, every record so far delivered (its sink is prompt). */
async function acmeDelivered(hang, env = {}) {
  const rx = await healthyReceiver(hang);
  const g = await startGateway({ env });
  const op = operatorToken(g.dataDir);
  const acme = await createTenant(g.port, op, 'acme');
  const r = await api(g.port, op, 'PUT', '/admin/v1/tenants/acme/audit/sink', { url: rx.url });
  assert.equal(r.status, 201, r.body);
  await allAccepted(g, 'acme', rx);
  return { g, op, rx, scim: scimClient(g.port, 'acme', acme.scim.token) };
}

/** Writes an acme record; resolves the POST that brought it to rx. */
async function acmeRecordArrives(scim, rx, what, timeoutMs = 15000) {
  const before = idsOf(rx);
  const u = await scim.post('/Users', oktaUser(`u${before.size}@acme.com`));
  assert.equal(u.status, 201, u.body);
  return waitFor(() => rx.accepted().find((p) => ndjsonLines(p.body).some((x) => !before.has(x.id))),
    { timeoutMs, intervalMs: 50, what });
}

/** Every tenant's sink in ts was made by the driver (it publishes a state in the look that makes it). */
async function sinksRunning(g, ts) {
  for (const t of ts) {
    const s = await api(g.port, operatorToken(g.dataDir), 'GET', `/admin/v1/tenants/${t}/audit/sink`);
    if (s.json?.delivery?.state === 'starting') return false;
  }
  return true;
}

test("hanging receivers of other tenants do not hold back a tenant's delivery", async () => {
  const hang = { open: 0, ended: 0 };
  const { g, op, rx, scim } = await acmeDelivered(hang);
  const hangers = [];
  for (let i = 1; i <= HANGERS; i++) {
    const t = `hang-${i}`;
    hangers.push(t);
    await createTenant(g.port, op, t);
    const r = await api(g.port, op, 'PUT', `/admin/v1/tenants/${t}/audit/sink`, { url: (await hangingReceiver(hang)).url });
    assert.equal(r.status, 201, r.body);
  }
  // every hanger's sink is running, and has started what POSTs it may start
  // in the look that made it
  await waitFor(async () => await sinksRunning(g, hangers) && hang.open >= HANGERS / 2,
    { timeoutMs: 15000, what: 'the hanging receivers holding POSTs' });
  assert.equal(hang.ended, 0, 'a hanging POST ended early');

  const post = await acmeRecordArrives(scim, rx, "acme's new record at its receiver (a hanging POST ends after 30 s)");
  assert.equal(post.hang.ended, 0, `acme's record came only after a hanging POST ended (${JSON.stringify(post.hang)})`);
  assert.ok(post.hang.open >= HANGERS / 2, `the hangers still hang (${JSON.stringify(post.hang)})`);
  await g.stop();
});

// Receivers that answer promptly, and then hang: their sinks are prompt when
// their POSTs start, and take every slot. Once those POSTs ran past
// SINK_PROMPT_MS (10 s; 3 s here, by the test hook: what is tested is the
// cut, not how long it waits) with every slot taken, the oldest beyond the
// slow share are cut, and acme's POST starts while the others still hang.
test('receivers that answered before and then hang are cut back to the slow share', async () => {
  const hang = { open: 0, ended: 0, answering: true };
  const { g, op, rx, scim } = await acmeDelivered(hang, { MCPGATE_TEST_SINK_PROMPT_MS: '3000' });
  const turn = [];
  for (let i = 1; i <= HANGERS; i++) {
    const t = `turn-${i}`;
    const s = await hangingReceiver(hang);
    turn.push({ t, s });
    await createTenant(g.port, op, t);
    const r = await api(g.port, op, 'PUT', `/admin/v1/tenants/${t}/audit/sink`, { url: s.url });
    assert.equal(r.status, 201, r.body);
  }
  for (const { t, s } of turn) await allAccepted(g, t, s);
  // now they hang: a record for each, and each one's POST takes a slot
  hang.answering = false;
  for (const { t } of turn) {
    const r = await api(g.port, op, 'POST', `/admin/v1/tenants/${t}/admin-tokens`, { name: 'one-more-record' });
    assert.equal(r.status, 201, r.body);
  }
  await waitFor(() => hang.open === HANGERS, { timeoutMs: 15000, what: 'every slot taken by a hanging POST' });

  const post = await acmeRecordArrives(scim, rx, "acme's new record at its receiver (a hanging POST ends after 30 s)", 20000);
  assert.ok(post.hang.open >= HANGERS / 2, `the hangers still hang (${JSON.stringify(post.hang)})`);
  assert.ok(post.hang.ended >= 1, `a slow POST was cut first (${JSON.stringify(post.hang)})`);
  // the cut sinks say why
  const views = [];
  for (const { t } of turn) views.push((await api(g.port, op, 'GET', `/admin/v1/tenants/${t}/audit/sink`)).json);
  assert.ok(views.some((v) => /every delivery slot was taken/.test(v.delivery?.last_error ?? '')), JSON.stringify(views));
  await g.stop();
});
