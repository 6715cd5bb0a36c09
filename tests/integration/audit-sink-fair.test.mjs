// The operator's SIEM sink is fair between chains: one tenant that writes
// faster than the SIEM accepts must not hold back every other tenant's
// records. The driver used to pick, every round, the first chain (in uid
// order) that was behind, so a busy tenant whose chain sorts first kept the
// only POST slot of the operator's sink for as long as it stayed busy.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, waitFor, sleep } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import { ndjsonLines, chainOf } from './lib/sink.mjs';

const DELAY_MS = 150; // the SIEM's time per POST: about 6 POSTs a second

let srv;
let gw;
after(async () => {
  srv?.closeAllConnections?.();
  await new Promise((r) => (srv ? srv.close(() => r()) : r()));
});

test("a busy tenant does not hold back another tenant's records at the operator's sink", async () => {
  const accepted = []; // {at, recs}
  srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => setTimeout(() => {
      accepted.push({ at: Date.now(), recs: ndjsonLines(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 });
      res.end('{}');
    }, DELAY_MS));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${srv.address().port}/ingest`;
  gw = await startGateway({ args: ['--audit-sink-url', url, '--audit-sink-batch', '1'] });
  try {
    const op = operatorToken(gw.dataDir);
    const scim = {};
    for (const t of ['one', 'two']) scim[t] = scimClient(gw.port, t, (await createTenant(gw.port, op, t)).scim.token);
    const ids = () => accepted.flatMap((p) => p.recs.map((x) => x.id));
    await waitFor(() => new Set(ids().map(chainOf)).size >= 2, { timeoutMs: 15000 });
    await waitFor(async () => { const n = ids().length; await sleep(1000); return ids().length === n; }, { timeoutMs: 20000 });
    // which tenant's chain sorts first: that one is the busy one
    const chains = {};
    for (const p of accepted) for (const x of p.recs) if (x.tenant) chains[x.tenant] = chainOf(x.id);
    assert.ok(chains.one && chains.two, JSON.stringify(chains));
    const [busy, quiet] = chains.one < chains.two ? ['one', 'two'] : ['two', 'one'];

    // the busy tenant: 80 writes, far more than the SIEM takes in the time measured below
    for (let i = 0; i < 8; i++) {
      const rs = await Promise.all(Array.from({ length: 10 }, (_, j) => scim[busy].post('/Users', oktaUser(`u${i}-${j}@${busy}.com`))));
      for (const r of rs) assert.equal(r.status, 201, r.body);
    }
    await sleep(300); // committed, and the sink is working through the busy chain
    const from = Date.now();
    const r = await scim[quiet].post('/Users', oktaUser(`only@${quiet}.com`));
    assert.equal(r.status, 201, r.body);
    const seen = () => accepted.find((p) => p.at >= from && p.recs.some((x) => chainOf(x.id) === chains[quiet]));
    await waitFor(() => seen(), { timeoutMs: 30000 });
    const took = seen().at - from;
    const busyDone = accepted.filter((p) => p.at <= seen().at && p.recs.some((x) => chainOf(x.id) === chains[busy])).length;
    assert.ok(took < 4000, `the quiet tenant's record waited ${took} ms behind the busy tenant's chain (busy records delivered by then: ${busyDone})`);
  } finally {
    await gw.stop?.();
  }
});
