// A client's notification on the aggregated endpoint (roots/list_changed and
// the like) is forwarded to every upstream session of the client session,
// each forward an upstream call of its own. Before this test's fix the
// notification was answered 202 at once and its forwards ran on, holding
// none of the user's mcp_concurrent_per_user units: with a limit of 3, ten
// notifications to a slow upstream held ten upstream connections (any
// number, repeated), the descriptors the limit (25068c7, 6a1258a) keeps for
// everyone else. The notification is now answered once the upstreams took
// it, holding one unit per upstream it goes to meanwhile (429 when they do
// not fit, as a batch or a GET stream), and its client leaving ends its
// forwards. Ordering, not timing: the upstreams hold the notifications until
// the test releases them. Upstream: lib/ctl-upstream.mjs.
import http from 'node:http';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ROOTS = 'notifications/roots/list_changed';
const note = { jsonrpc: '2.0', method: ROOTS };

/** alice's 2025-03-26 session with an upstream session at each connector. */
async function fixture(gw, names) {
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const ups = {};
  for (const n of names) {
    ups[n] = await startCtlUpstream({ name: n, capabilities: { tools: {} } });
    assert.equal((await t.putConnector(n, { url: ups[n].url, auth: { type: 'none' } })).status, 201);
  }
  const tok = (await t.mintToken('alice@acme.com')).token;
  const agg = `${gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, tok, { protocolVersion: '2025-03-26' });
  for (const n of names) {
    const r = await s.request('tools/call', { name: `${n}__echo`, arguments: { message: 'hi' } });
    assert.equal(r.status, 200, r.body);
  }
  return { ups, tok, agg, s };
}

const open = async (gw) => metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_transfers_open');

test('a notification holds a unit per upstream it goes to until they took it; past mcp_concurrent_per_user it is 429', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  const releases = [];
  try {
    const { ups, s } = await fixture(gw, ['one']);
    releases.push(ups.one.hold((m) => m.method === ROOTS));
    const held = () => ups.one.rpc(ROOTS).length;

    // ten at once: three fit (each with its one upstream), seven do not
    const answers = [];
    const posts = Array.from({ length: 10 }, () => s.post(note).then((r) => { answers.push(r); return r; }));
    await waitFor(() => answers.length >= 7, { timeoutMs: 10000, what: 'the notifications that do not fit answered' });
    assert.deepEqual(answers.map((r) => r.status), Array(7).fill(429),
      `with a limit of 3: ${answers.map((r) => r.status)}; ${held()} upstream calls held`);
    for (const r of answers) assert.match(r.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    await waitFor(() => held() === 3, { timeoutMs: 5000, what: 'three notifications at the upstream' });
    assert.equal(await open(gw), 3, 'no more upstream calls than units');

    // answered once the upstream took them, and the units come back
    releases[0]();
    const all = await Promise.all(posts);
    assert.equal(all.filter((r) => r.status === 202).length, 3, all.map((r) => `${r.status} ${r.body}`).join('; '));
    assert.equal(held(), 3, 'nothing refused went upstream');
    const again = await Promise.all([1, 2, 3].map(() => s.post(note)));
    assert.deepEqual(again.map((r) => r.status), [202, 202, 202]);
  } finally {
    for (const r of releases) r();
    await gw.stop();
  }
});

test('a notification to two upstreams counts two units, alone or in a batch', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  const releases = [];
  try {
    const { ups, s } = await fixture(gw, ['one', 'two']);
    for (const n of ['one', 'two']) releases.push(ups[n].hold((m) => m.method === ROOTS));
    const held = () => ups.one.rpc(ROOTS).length + ups.two.rpc(ROOTS).length;

    const first = s.post(note); // two of three
    await waitFor(() => held() === 2, { timeoutMs: 5000, what: 'the first notification at both upstreams' });
    const second = await s.post(note);
    assert.equal(second.status, 429, `a second one needs two more of three: ${second.status} ${second.body}`);
    // a batch of two such notifications needs four
    for (const r of releases) r();
    assert.equal((await first).status, 202);
    const batch = await s.post([note, note]);
    assert.equal(batch.status, 429, `a batch of two notifications to two upstreams: ${batch.status} ${batch.body}`);
    const one = await s.post([note]);
    assert.equal(one.status, 202, one.body);
  } finally {
    for (const r of releases) r();
    await gw.stop();
  }
});

test('a notification whose client leaves ends its forwards upstream', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  let release = () => {};
  try {
    const { ups, tok, agg, s } = await fixture(gw, ['one']);
    release = ups.one.hold((m) => m.method === ROOTS);
    const body = JSON.stringify(note);
    const u = new URL(agg);
    const req = http.request({
      host: u.hostname, port: u.port, method: 'POST', path: u.pathname, agent: false,
      headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('error', () => {});
    req.end(body);
    await waitFor(() => ups.one.rpc(ROOTS).length === 1, { timeoutMs: 5000, what: 'the notification at the upstream' });
    assert.equal(await open(gw), 1);
    req.destroy(); // the client leaves
    await waitFor(async () => (await open(gw)) === 0, { timeoutMs: 5000, what: 'the forward ended with its client' });
  } finally {
    release();
    await gw.stop();
  }
});

// A call's cancel goes to its upstream once: a client repeating it opened
// one upstream connection each time — held by the message that waits for it
// when the call runs on the loop that took the cancel, but fire and forget
// (up to 200 a second per loop) when another loop runs the call.
test('repeated cancels of one call reach its upstream once', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '20'] });
  const releases = [];
  try {
    const { ups, s } = await fixture(gw, ['one']);
    releases.push(ups.one.hold((m) => m.method === 'tools/call' && m.params?.name === 'slow'));
    releases.push(ups.one.hold((m) => m.method === 'notifications/cancelled'));
    const call = s.post({ jsonrpc: '2.0', id: 'slow-1', method: 'tools/call', params: { name: 'one__slow', arguments: { ms: 1 } } });
    await ups.one.waitRequest((e) => e.json?.params?.name === 'slow');
    const cancel = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow-1', reason: 'stop' } };
    const answered = [];
    const posts = Array.from({ length: 10 }, () => s.post(cancel).then((r) => { answered.push(r); return r; }));
    await ups.one.waitRequest((e) => e.json?.method === 'notifications/cancelled');
    // all but the one whose forward the upstream holds are answered at once
    await waitFor(() => answered.length >= 9, { timeoutMs: 10000, what: 'the repeated cancels answered' });
    assert.equal(ups.one.rpc('notifications/cancelled').length, 1,
      `ten cancels of one call: ${ups.one.rpc('notifications/cancelled').length} reached the upstream`);
    for (const r of releases) r();
    for (const r of await Promise.all(posts)) assert.equal(r.status, 202, r.body);
    await call;
  } finally {
    for (const r of releases) r();
    await gw.stop();
  }
});
