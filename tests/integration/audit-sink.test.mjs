// Audit sink (issue 22): the operator streams every tenant's audit chain to a
// SIEM (`audit_sink_url`). Tested here:
//   - ndjson: the records the admin API returns arrive once each, chain by
//     chain in sequence order, in chunks of at most `audit_sink_batch`, with
//     `Authorization: Bearer <token from audit_sink_token_file>`; a SIEM that
//     answers 503 gets the same records again from the chain's cursor, after
//     back-off; the sink metrics say what happened (delivered, posts ok and
//     failed, failing, lag);
//   - a graceful restart resumes after the persisted cursor: the SIEM gets
//     exactly the records written since, nothing twice;
//   - splunk_hec: `Authorization: Splunk <token>`, one HEC envelope per
//     record (`time` in seconds with at most 3 decimals, source, sourcetype,
//     the record as `event`);
//   - the sink URL obeys egress_allow: on loopback without loopback allowed,
//     the SIEM sees no connection, the sink reports failing, and the gateway
//     goes on serving;
//   - the token is in no log line of any gateway and in no delivered record;
//   - a tenant's own sink (PUT …/audit/sink, by that tenant's admin, not
//     another's): its current chain only, from its first record, with its
//     sealed token; a new URL continues from its cursor; a delete stops it;
//     an address egress_allow refuses is 400 egress_refused.
// Real parts: the gateway binary with its audit environment on disk (stopped
// with SIGTERM and restarted on the same data directory), a node http server
// as the SIEM, SCIM with Okta's request shapes and the admin API making the
// records, /metrics with the operator token.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { startGateway, makeTempDir, request, scrapeMetrics, metricValue, waitFor, sleep } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import { startSinkReceiver, ndjsonLines, chainOf, topLevelNumberText } from './lib/sink.mjs';

const TOKEN = `siem-sink-token-${crypto.randomBytes(12).toString('hex')}`;
const TENANTS = ['acme', 'globex'];
const BATCH = 3;

let tokenFile;
let rx;            // the SIEM of tests 1–3: 503 to its first 2 POSTs, then 200
let rxRefused;     // the SIEM the refused gateway must never reach
let gw;            // the sink gateway of tests 1–3 (restarted twice on one data dir)
let gwRefused;     // egress_allow without loopback, sink on 127.0.0.1
let refusedSince;  // when gwRefused had records to send
const allGateways = [];
const scim = {};   // tenant → scimClient (the tokens survive restarts)

const sinkArgs = (url, extra = []) =>
  ['--audit-sink-url', url, '--audit-sink-token-file', tokenFile, '--audit-sink-batch', String(BATCH), ...extra];

async function start(opts) {
  const g = await startGateway(opts);
  allGateways.push(g);
  return g;
}

before(async () => {
  const dir = await makeTempDir('mcpgate-sink-');
  tokenFile = path.join(dir, 'siem.token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 }); // the trailing newline is trimmed
  rx = await startSinkReceiver({ fail: 2 });
  rxRefused = await startSinkReceiver();
  // started first: its 3 s of "nothing arrives" run while tests 1–3 do
  gwRefused = await start({ args: sinkArgs(rxRefused.url), egressAllow: '192.0.2.0/24' });
  const op = operatorToken(gwRefused.dataDir);
  const t = await createTenant(gwRefused.port, op, 'acme');
  const r = await scimClient(gwRefused.port, 'acme', t.scim.token).post('/Users', oktaUser('ann@acme.com'));
  assert.equal(r.status, 201, r.body);
  refusedSince = Date.now();
});
after(async () => {
  await rx?.close();
  await rxRefused?.close();
});

/** Every record of a tenant from GET /admin/v1/tenants/{t}/audit, by cursor pages. */
async function tenantRecords(g, tenant, limit = 4) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 1000; i++) {
    const q = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await api(g.port, operatorToken(g.dataDir), 'GET', `/admin/v1/tenants/${tenant}/audit${q}`);
    assert.equal(r.status, 200, r.body);
    out.push(...r.json.records);
    if (!r.json.next_cursor) return out;
    cursor = r.json.next_cursor;
  }
  throw new Error('audit paging did not end');
}
async function apiRecords(g, tenants = TENANTS) {
  const out = [];
  for (const t of tenants) out.push(...await tenantRecords(g, t));
  return out;
}

/** The records of one ndjson POST (throws on a malformed body). */
const ndjsonRecords = (post) => (post._recs ??= ndjsonLines(post.body));
/** The envelopes of one splunk_hec POST: [{env, raw}] (a trailing "\n" is allowed). */
function hecEnvelopes(post) {
  if (!post._envs) {
    assert.ok(post.body.length > 0, 'empty HEC body');
    const text = post.body.endsWith('\n') ? post.body.slice(0, -1) : post.body;
    post._envs = text.split('\n').map((raw) => ({ raw, env: JSON.parse(raw) }));
  }
  return post._envs;
}
const hecRecords = (post) => hecEnvelopes(post).map((x) => x.env.event);

/** The record ids the SIEM accepted (2xx) in `posts`, with how often each came. */
function acceptedIds(posts, recordsOf) {
  const n = new Map();
  for (const p of posts) if (p.ok) for (const r of recordsOf(p)) n.set(r.id, (n.get(r.id) ?? 0) + 1);
  return n;
}

/**
 * Waits until the admin API returns every record written so far (`written`:
 * audit records are committed in groups, a few ms after the write's reply)
 * and the accepted records of posts() (plus `already`) cover all of them.
 */
async function waitCovered(g, posts, recordsOf, { already = new Set(), what, timeoutMs = 15000 } = {}) {
  let want;
  await waitFor(async () => {
    want = await apiRecords(g);
    if (want.length < written) return false;
    const got = acceptedIds(posts(), recordsOf);
    return want.every((r) => already.has(r.id) || got.has(r.id));
  }, { timeoutMs, intervalMs: 100, what });
  return want;
}

/**
 * Checks the POSTs in arrival order against the chains' cursors (chain →
 * last accepted seq; a chain not in it starts at seq 1), and moves the cursors:
 * each POST holds one chain's records, consecutive, at most BATCH, starting
 * right after that chain's cursor — so a POST after a failed one repeats its
 * first records, and nothing is skipped or sent again once accepted.
 */
function checkChainOrder(posts, recordsOf, cursors) {
  for (const p of posts) {
    const recs = recordsOf(p);
    const where = `POST #${p.n} (${p.status}, ${recs.length} records: ${recs.map((r) => r.id).join(' ')})`;
    assert.ok(recs.length >= 1, `${where}: no record`);
    assert.ok(recs.length <= BATCH, `${where}: more than audit_sink_batch = ${BATCH}`);
    const chain = chainOf(recs[0].id);
    recs.forEach((r, i) => {
      assert.equal(r.id, `${chain}-${r.seq}`, `${where}: one chain per POST, id = <chain>-<seq>`);
      assert.equal(r.seq, recs[0].seq + i, `${where}: consecutive seqs, oldest first`);
    });
    assert.equal(recs[0].seq, (cursors.get(chain) ?? 0) + 1, `${where}: starts right after chain ${chain}'s cursor`);
    if (p.ok) cursors.set(chain, recs.at(-1).seq);
  }
}

const SINK_METRICS = {
  delivered: ['mcpgate_audit_sink_records_delivered_total', {}],
  ok: ['mcpgate_audit_sink_posts_total', { result: 'ok' }],
  failed: ['mcpgate_audit_sink_posts_total', { result: 'failed' }],
  failing: ['mcpgate_audit_sink_failing', {}],
  lag: ['mcpgate_audit_sink_lag_records', {}],
};
/** The sink's metrics; throws when one is not exposed at all. */
async function sinkMetrics(g) {
  const s = await scrapeMetrics(g);
  const out = {};
  for (const [k, [name, only]] of Object.entries(SINK_METRICS)) {
    // the operator's sink: its series, if the series carry a `sink` label (tenants' own sinks have theirs)
    const labels = s.some((x) => x.name === name && 'sink' in x.labels) ? { ...only, sink: 'operator' } : only;
    const present = s.some((x) => x.name === name && Object.entries(labels).every(([lk, lv]) => x.labels[lk] === lv));
    if (!present) throw new Error(`/metrics has no ${name}${JSON.stringify(labels)}`);
    out[k] = metricValue(s, name, labels);
  }
  return out;
}

/** Waits until pred(the sink's metrics) holds; the timeout error shows the last values. Returns them. */
async function waitMetrics(g, pred, what) {
  let m;
  try {
    await waitFor(async () => { m = await sinkMetrics(g); return pred(m); }, { timeoutMs: 5000, intervalMs: 100, what });
  } catch (e) {
    e.message += `; last sink metrics: ${JSON.stringify(m)}`;
    throw e;
  }
  return m;
}

let written = 0; // audit records the sink gateway's writes made (one per admin or SCIM write)

/** Some audited writes: SCIM user creates (Okta's shape) and an admin token per tenant. */
async function auditedWrites(g, tag) {
  const op = operatorToken(g.dataDir);
  for (const t of TENANTS) {
    const r = await scim[t].post('/Users', oktaUser(`${tag}@${t}.com`));
    assert.equal(r.status, 201, r.body);
    const a = await api(g.port, op, 'POST', `/admin/v1/tenants/${t}/admin-tokens`, { name: `${tag}-token` });
    assert.equal(a.status, 201, a.body);
    written += 2;
  }
}

function assertTokenNowhere(g, token = TOKEN) {
  assert.equal(g.stderrText().includes(token), false, `the sink token is in the log of gateway pid ${g.proc.pid}`);
  assert.equal(g.stdoutText().includes(token), false, `the sink token is on the stdout of gateway pid ${g.proc.pid}`);
}

const cursors = new Map();       // chain → last seq the SIEM accepted (checkChainOrder moves it)
let beforeRestart;               // ids accepted before the first restart

test('ndjson: every record once, per chain in order, in batches, with the Bearer token; 503s retried from the cursor; metrics', async () => {
  gw = await start({ args: sinkArgs(rx.url) });
  const op = operatorToken(gw.dataDir);
  for (const t of TENANTS) {
    const c = await createTenant(gw.port, op, t);
    scim[t] = scimClient(gw.port, t, c.scim.token);
    written++;
  }
  await auditedWrites(gw, 'first');
  const r = await scim.acme.post('/Users', oktaUser('second@acme.com'));
  assert.equal(r.status, 201, r.body);
  written++;

  const want = await waitCovered(gw, () => rx.posts, ndjsonRecords, { what: 'the SIEM to accept every audit record' });
  assert.ok(want.some((x) => want.filter((y) => chainOf(y.id) === chainOf(x.id)).length > BATCH),
    'a chain longer than one batch');

  // the wire: POSTs to the URL's path, ndjson, the token from the file without its newline
  assert.ok(rx.requests.every((q) => q.method === 'POST' && q.path === '/ingest'),
    rx.requests.map((q) => `${q.method} ${q.path}`).join(', '));
  for (const p of rx.posts) {
    assert.match(String(p.headers['content-type']), /^application\/x-ndjson\b/, `POST #${p.n} content type`);
    assert.equal(p.headers.authorization, `Bearer ${TOKEN}`, `POST #${p.n} Authorization`);
    assert.ok(p.body.endsWith('\n'), `POST #${p.n}: every line ends with "\\n"`);
    ndjsonRecords(p); // every line parses
  }

  // the 503s: answered to the first two POSTs, whose records came again from the cursor
  const failed = rx.failed();
  assert.equal(failed.length, 2);
  for (const f of failed) {
    const chain = chainOf(ndjsonRecords(f)[0].id);
    const retry = rx.posts.slice(f.n + 1).find((p) => chainOf(ndjsonRecords(p)[0].id) === chain);
    assert.ok(retry, `the records of failed POST #${f.n} were sent again`);
    assert.deepEqual(ndjsonRecords(retry).slice(0, ndjsonRecords(f).length).map((x) => x.id),
      ndjsonRecords(f).map((x) => x.id), `POST #${retry.n} retries POST #${f.n}'s records`);
  }
  checkChainOrder(rx.posts, ndjsonRecords, cursors);

  // once each, and each the very object the admin API returns
  const got = acceptedIds(rx.posts, ndjsonRecords);
  for (const [id, n] of got) assert.equal(n, 1, `record ${id} accepted ${n} times`);
  assert.deepEqual([...got.keys()].sort(), want.map((x) => x.id).sort(), 'exactly the records of the admin API');
  const byId = new Map(want.map((x) => [x.id, x]));
  for (const p of rx.accepted()) for (const rec of ndjsonRecords(p)) assert.deepEqual(rec, byId.get(rec.id));

  // metrics: counted once the SIEM said 2xx; failing and lag back to 0 (lag as of a poll after the delivery)
  const m = await waitMetrics(gw, (x) => x.delivered === got.size && x.failing === 0 && x.lag === 0,
    `delivered = ${got.size}, failing 0, lag 0`);
  for (const [id, n] of acceptedIds(rx.posts, ndjsonRecords)) assert.equal(n, 1, `record ${id} accepted ${n} times`);
  assert.ok(m.delivered >= want.length);
  assert.equal(m.ok, rx.accepted().length, 'posts_total{result="ok"}');
  assert.ok(m.failed >= 2, `posts_total{result="failed"} = ${m.failed}`);
  beforeRestart = new Set(got.keys());
  assertTokenNowhere(gw);
});

test('a graceful restart resumes after the persisted cursor: only the new records, none twice', async () => {
  assert.ok(beforeRestart, 'the first test delivered');
  const mark = rx.posts.length;
  const exit = await gw.stop(); // SIGTERM
  assert.deepEqual(exit, { code: 0, signal: null });
  const dataDir = gw.dataDir;
  gw = await start({ dataDir, args: sinkArgs(rx.url) });
  for (const t of TENANTS) scim[t] = scimClient(gw.port, t, scim[t].token);
  await auditedWrites(gw, 'after-restart');

  const since = () => rx.posts.slice(mark);
  const want = await waitCovered(gw, since, ndjsonRecords, { already: beforeRestart, what: 'the new records at the SIEM' });
  const fresh = want.filter((x) => !beforeRestart.has(x.id)).map((x) => x.id).sort();
  assert.ok(fresh.length >= 2 * TENANTS.length, `${fresh.length} new records`);
  for (const p of since()) {
    assert.equal(p.ok, true, `POST #${p.n} after the restart was answered ${p.status}`);
    for (const rec of ndjsonRecords(p)) {
      assert.equal(beforeRestart.has(rec.id), false, `record ${rec.id} was sent again after the restart`);
    }
  }
  const got = acceptedIds(since(), ndjsonRecords);
  for (const [id, n] of got) assert.equal(n, 1, `record ${id} accepted ${n} times`);
  assert.deepEqual([...got.keys()].sort(), fresh, 'exactly the records written since the last delivery');
  checkChainOrder(since(), ndjsonRecords, cursors); // each chain resumes right after its cursor
  const byId = new Map(want.map((x) => [x.id, x]));
  for (const p of since()) for (const rec of ndjsonRecords(p)) assert.deepEqual(rec, byId.get(rec.id));

  await waitMetrics(gw, (x) => x.delivered === got.size && x.lag === 0 && x.failing === 0,
    `delivered = ${got.size} since the start, lag 0`);
  assertTokenNowhere(gw);
});

test('splunk_hec: Authorization Splunk <token>, one envelope per record, time in seconds', async () => {
  assert.ok(beforeRestart, 'the first test delivered');
  const exit = await gw.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
  const known = new Set(acceptedIds(rx.posts, ndjsonRecords).keys());
  const mark = rx.posts.length;
  gw = await start({ dataDir: gw.dataDir, args: sinkArgs(rx.url, ['--audit-sink-format', 'splunk_hec']) });
  for (const t of TENANTS) scim[t] = scimClient(gw.port, t, scim[t].token);
  await auditedWrites(gw, 'hec');

  const since = () => rx.posts.slice(mark);
  const want = await waitCovered(gw, since, hecRecords, { already: known, what: 'the new records as HEC events' });
  const byId = new Map(want.map((x) => [x.id, x]));
  const fresh = want.filter((x) => !known.has(x.id));
  assert.ok(fresh.length >= 2 * TENANTS.length, `${fresh.length} new records`);
  let events = 0;
  for (const p of since()) {
    assert.match(String(p.headers['content-type']), /^application\/json\b/, `POST #${p.n} content type`);
    assert.equal(p.headers.authorization, `Splunk ${TOKEN}`, `POST #${p.n} Authorization`);
    for (const { raw, env } of hecEnvelopes(p)) {
      const where = `POST #${p.n}: ${raw.slice(0, 300)}`;
      assert.deepEqual(Object.keys(env).sort(), ['event', 'source', 'sourcetype', 'time'], where);
      assert.equal(env.source, 'mcpgate', where);
      assert.equal(env.sourcetype, 'mcpgate:audit', where);
      assert.equal(typeof env.event?.id, 'string', `${where}: event.id`);
      assert.deepEqual(env.event, byId.get(env.event.id), `${where}: the event is the admin API's record`);
      assert.equal(typeof env.time, 'number', where);
      assert.ok(Math.abs(env.time - env.event.time / 1000) <= 0.001, `${where}: time = record.time / 1000`);
      assert.match(topLevelNumberText(raw, 'time') ?? '', /^\d+(\.\d{1,3})?$/, `${where}: seconds with at most 3 decimals`);
      events++;
    }
  }
  assert.ok(events >= fresh.length);
  const got = acceptedIds(since(), hecRecords);
  for (const [id, n] of got) assert.equal(n, 1, `event ${id} accepted ${n} times`);
  for (const rec of fresh) assert.ok(got.has(rec.id), `record ${rec.id} arrived`);
  checkChainOrder(since(), hecRecords, cursors); // the same cursors: the format changed, the chains did not
  assertTokenNowhere(gw);
});

test('a sink URL that egress_allow does not allow: no connection, failing, the gateway serves; the token in no log or record', async () => {
  const g = gwRefused;
  const wait = refusedSince + 3000 - Date.now();
  if (wait > 0) await sleep(wait); // ~3 s in which the sink had records to send
  const m = await waitMetrics(g, (x) => x.failing === 1 && x.failed > 0, 'failing 1 and failed posts');
  assert.equal(rxRefused.connections, 0, 'the refused SIEM never saw a connection');
  assert.equal(rxRefused.requests.length, 0);
  assert.equal(m.ok, 0);
  assert.equal(m.delivered, 0);
  assert.ok(m.lag > 0, `lag ${m.lag}: records wait`);

  // still serving
  const h = await request(g.port, { path: '/healthz' });
  assert.equal(h.status, 200, h.body);
  const op = operatorToken(g.dataDir);
  const a = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'still-serving' });
  assert.equal(a.status, 201, a.body);
  let recs;
  await waitFor(async () => (recs = await tenantRecords(g, 'acme')).length >= 3,
    { timeoutMs: 5000, intervalMs: 50, what: 'the three records of the refused gateway' });

  // the log says the sink fails, without the token
  const line = g.logs().find((e) => (e.level === 'warn' || e.level === 'error') && /sink/i.test(e._raw)
    && /egress|not allowed|refused/i.test(e._raw));
  assert.ok(line, 'a warning or error about the audit sink:\n' + g.logs().slice(-20).map((e) => e._raw).join('\n'));
  assert.equal(rxRefused.connections, 0, 'still no connection');

  // the token: in no log of any gateway of this file, in no delivered record, in no stored record
  for (const x of allGateways) assertTokenNowhere(x);
  for (const p of rx.posts) assert.equal(p.body.includes(TOKEN), false, `the token is in the body of POST #${p.n}`);
  for (const rec of recs) assert.equal(JSON.stringify(rec).includes(TOKEN), false, `the token is in record ${rec.id}`);
});

test("a tenant's own sink: its chain only, from its first record, with its token; a tenant admin sets it, not another tenant's; changes continue from its cursor", async () => {
  const op = operatorToken(gw.dataDir);
  const T2 = `tenant-sink-token-${crypto.randomBytes(8).toString('hex')}`;
  const mine = await startSinkReceiver();
  const next = await startSinkReceiver();
  try {
    const mint = async (t) => {
      const r = await api(gw.port, op, 'POST', `/admin/v1/tenants/${t}/admin-tokens`, { name: `${t}-siem` });
      assert.equal(r.status, 201, r.body);
      return r.json.token;
    };
    const acmeAdmin = await mint('acme');
    const globexAdmin = await mint('globex');
    const base = '/admin/v1/tenants/acme/audit/sink';
    // another tenant's admin cannot set or read it
    let r = await api(gw.port, globexAdmin, 'PUT', base, { url: mine.url, token: T2 });
    assert.ok(r.status === 403 || r.status === 404, `${r.status} ${r.body}`);
    r = await api(gw.port, globexAdmin, 'GET', base);
    assert.ok(r.status === 403 || r.status === 404, `${r.status} ${r.body}`);
    // refusals name the member; the token is never echoed
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: 'http://user:pw@127.0.0.1:9/in' });
    assert.equal(r.status, 400, r.body);
    assert.match(r.json.message, /"url"/);
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: mine.url, format: 'syslog' });
    assert.equal(r.status, 400, r.body);
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: mine.url, token: `bad ${T2}` });
    assert.equal(r.status, 400, r.body);
    assert.equal(r.body.includes(T2), false, 'the token is not echoed');
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: mine.url, token: T2 });
    assert.equal(r.status, 201, r.body);
    assert.equal(r.json.token_set, true);
    assert.equal(r.body.includes(T2), false);

    // every acme record of the current chain, once, in order; nothing of globex
    await api(gw.port, op, 'POST', '/admin/v1/tenants/globex/admin-tokens', { name: 'globex-noise' });
    let want;
    await waitFor(async () => {
      want = await tenantRecords(gw, 'acme');
      const got = new Set(mine.accepted().flatMap((p) => ndjsonRecords(p).map((x) => x.id)));
      return want.length > 0 && want.every((x) => got.has(x.id));
    }, { timeoutMs: 15000, intervalMs: 100, what: "acme's records at acme's own SIEM" });
    const got = mine.accepted().flatMap((p) => ndjsonRecords(p));
    assert.ok(got.every((x) => x.tenant === 'acme'), 'only acme records');
    assert.equal(new Set(got.map((x) => x.id)).size, got.length, 'none twice');
    assert.deepEqual(got.map((x) => x.seq), got.map((_, i) => i + 1), 'from the first record, in order');
    for (const p of mine.posts) {
      assert.equal(p.headers.authorization, `Bearer ${T2}`);
      assert.equal(p.headers['content-type'], 'application/x-ndjson');
    }
    r = await api(gw.port, acmeAdmin, 'GET', base);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.url, mine.url);
    assert.ok(['ok', 'behind'].includes(r.json.delivery.state), r.body);
    assert.ok(r.json.delivery.delivered >= want.length, r.body);
    assert.equal(r.body.includes(T2), false);
    const samples = await scrapeMetrics(gw, { token: op });
    assert.ok(metricValue(samples, 'mcpgate_audit_sink_records_delivered_total', { sink: 'tenant:acme' }) >= want.length);

    // a new URL on another origin: the stored token does not follow it (an
    // admin token must not be able to send it to a server of its holder's)
    const before = new Set(got.map((x) => x.id));
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: next.url });
    assert.equal(r.status, 400, r.body);
    assert.match(r.json.message, /"token" is required: "url" moves the sink to another origin/);
    r = await api(gw.port, acmeAdmin, 'GET', base);
    assert.equal(r.json.url, mine.url, 'the refused PUT changed nothing');
    assert.equal(r.json.token_set, true);
    assert.equal(next.posts.length, 0, 'nothing went to the other origin');
    // given again, it goes there: only what is written from now on
    r = await api(gw.port, acmeAdmin, 'PUT', base, { url: next.url, token: T2 });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.token_set, true);
    await waitFor(async () => next.accepted().length > 0, { timeoutMs: 15000, intervalMs: 100, what: 'the new URL used' });
    const moved = next.accepted().flatMap((p) => ndjsonRecords(p));
    assert.ok(moved.every((x) => x.tenant === 'acme' && !before.has(x.id)), 'nothing delivered before is sent again');
    assert.equal(next.posts[0].headers.authorization, `Bearer ${T2}`);

    // deleted: nothing more goes there
    r = await api(gw.port, acmeAdmin, 'DELETE', base);
    assert.equal(r.status, 204, r.body);
    r = await api(gw.port, acmeAdmin, 'GET', base);
    assert.equal(r.status, 404, r.body);
    const n = next.posts.length;
    await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'after-delete' });
    await sleep(1500);
    assert.equal(next.posts.length, n, 'a deleted sink gets nothing more');
    assertTokenNowhere(gw, T2);
  } finally {
    await mine.close();
    await next.close();
  }
});

test("a tenant's sink on an address egress_allow refuses is 400 egress_refused", async () => {
  const g = gwRefused;
  const r = await api(g.port, operatorToken(g.dataDir), 'PUT', '/admin/v1/tenants/acme/audit/sink', { url: 'http://127.0.0.1:9/in' });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'egress_refused', r.body);
});

test('a receiver whose 2xx answer never ends is cut: the records count as delivered and the next POST follows', async () => {
  const op = operatorToken(gw.dataDir);
  const rxEndless = await startSinkReceiver({ endless: true });
  try {
    let r = await api(gw.port, op, 'PUT', '/admin/v1/tenants/globex/audit/sink', { url: rxEndless.url });
    assert.equal(r.status, 201, r.body);
    await waitFor(async () => rxEndless.posts.length >= 1, { timeoutMs: 10000, intervalMs: 50, what: 'the first POST' });
    await api(gw.port, op, 'POST', '/admin/v1/tenants/globex/admin-tokens', { name: 'after-endless' });
    await waitFor(async () => rxEndless.posts.length >= 2, { timeoutMs: 10000, intervalMs: 50, what: 'a second POST after the endless answer' });
    const ids = rxEndless.posts.flatMap((p) => ndjsonRecords(p).map((x) => x.id));
    assert.equal(new Set(ids).size, ids.length, 'nothing sent twice: the cut 2xx moved the cursor');
    r = await api(gw.port, op, 'DELETE', '/admin/v1/tenants/globex/audit/sink');
    assert.equal(r.status, 204, r.body);
  } finally {
    await rxEndless.close();
  }
});
