// tests/integration/lib/offboard-connector.mjs — what the per-connector cut tests
// (offboard-connector*.test.mjs, issue 18) share: a tenant where group G1
// shows connector `a` and G2 shows connector `b` (both server-everything,
// `a` behind a recorder so its upstream initializes can be counted), alice
// in G1 and G2, bob in G1 and G3 (G3 shows nothing unless a test's policy
// says so); what alice holds when access changes, and what must hold after.
import assert from 'node:assert/strict';
import { after } from 'node:test';

import { startGateway, waitFor } from './gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startEverything, startRecorder, toolText } from './mcp.mjs';
import { groups } from './policy.mjs';

export const ALICE = 'alice@acme.com';
export const BOB = 'bob@acme.com';

/** G1 → connector a, G2 → connector b (every tool). */
export const POLICY = {
  version: 1,
  default: 'block',
  rules: [
    { groups: ['G1'], connector: 'a', allow: ['*'] },
    { groups: ['G2'], connector: 'b', allow: ['*'] },
  ],
};

let up;
after(async () => { await up?.stop(); });

/** POLICY plus G3 → a: bob keeps a whatever happens to G1. */
export const POLICY_G3 = { ...POLICY, rules: [...POLICY.rules, { groups: ['G3'], connector: 'a', allow: ['*'] }] };

export async function fixture({ args = [], env = {}, policy = POLICY } = {}) {
  up ??= await startEverything();
  const gw = await startGateway({ args, env });
  const rec = await startRecorder(up.url);
  const t = await setupTenant(gw, { users: [ALICE, BOB], policy: null });
  const g = groups(t.scim);
  const alice = t.users[ALICE].id;
  const bob = t.users[BOB].id;
  const g1 = await g.create('G1', [alice, bob]);
  const g2 = await g.create('G2', [alice]);
  const g3 = await g.create('G3', [bob]);
  for (const [name, url] of [['a', rec.url], ['b', up.url]]) {
    const c = await t.putConnector(name, { url, auth: { type: 'none' } });
    assert.equal(c.status, 201, `PUT connector ${name}: ${c.status} ${c.body}`);
  }
  await t.setPolicy(policy);
  return {
    gw, t, g, rec, g1, g2, g3, ids: { alice, bob },
    tokens: { alice: (await t.mintToken(ALICE)).token, bob: (await t.mintToken(BOB)).token },
    agg: `${gw.url}/t/acme/mcp`,
  };
}

export const accessIndex = (gw, id) => gw.logs().findIndex((e) => e.msg === 'access' && e.request_id === id);

/** A GET stream of raw session s at url. */
export async function getStream(url, token, s) {
  const st = await openStream(url, { headers: { ...mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  assert.equal(st.status, 200, `GET stream: ${st.status}`);
  st.requestId = st.headers['x-request-id'];
  return st;
}

/** A tools/call answered with SSE, read as it arrives. */
export async function callStream(url, token, s, name, args, id = 7) {
  const st = await openStream(url, {
    method: 'POST',
    headers: { ...mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: { progressToken: `p${id}` } } },
  });
  assert.equal(st.status, 200, `tools/call ${name}: ${st.status}`);
  st.requestId = st.headers['x-request-id'];
  return st;
}

export async function echo(s, name, message) {
  const r = await s.request('tools/call', { name, arguments: { message } });
  assert.equal(r.status, 200, `${name}: ${r.status} ${r.body}`);
  const m = r.messages.find((x) => x.result || x.error);
  return m;
}

/**
 * What alice (and bob) hold before the change: alice's session and GET
 * stream on /mcp/a, an in-flight slow call there and one through the
 * aggregated endpoint, her aggregated session (upstream sessions to a and b
 * opened by a call each) with its GET stream, her session on /mcp/b; bob's
 * session and GET stream on /mcp/a.
 */
export async function holdings(f) {
  const A = f.t.mcpUrl('a'), B = f.t.mcpUrl('b');
  const h = {};
  h.a = await rawSession(A, f.tokens.alice);
  h.aStream = await getStream(A, f.tokens.alice, h.a);
  h.b = await rawSession(B, f.tokens.alice);
  h.agg = await rawSession(f.agg, f.tokens.alice);
  assert.equal(toolText((await echo(h.agg, 'a__echo', 'one')).result), 'Echo: one');
  assert.equal(toolText((await echo(h.agg, 'b__echo', 'two')).result), 'Echo: two');
  h.aggStream = await getStream(f.agg, f.tokens.alice, h.agg);
  h.bobA = await rawSession(A, f.tokens.bob);
  h.bobStream = await getStream(A, f.tokens.bob, h.bobA);
  // slow calls in flight (server-everything sends progress every second)
  h.slowA = await callStream(A, f.tokens.alice, h.a, 'trigger-long-running-operation', { duration: 20, steps: 20 });
  h.slowAgg = await callStream(f.agg, f.tokens.alice, h.agg, 'a__trigger-long-running-operation', { duration: 20, steps: 20 });
  await h.slowA.waitFor((m) => m.method === 'notifications/progress', 5000);
  await h.slowAgg.waitFor((m) => m.method === 'notifications/progress', 5000);
  return h;
}

/**
 * After alice lost connector a (r: the triggering reply): what she held on a
 * ended before r was sent, the rest stands, bob is untouched.
 */
export async function assertCut(f, h, r, what) {
  const scimAt = await waitFor(() => { const i = accessIndex(f.gw, r.headers['x-request-id']); return i >= 0 ? i : false; },
    { what: `the access line of ${what}` });
  const mine = [['her /mcp/a GET stream', h.aStream], ['her slow call on /mcp/a', h.slowA], ['her slow aggregated call to a', h.slowAgg]];
  await waitFor(() => mine.every(([, st]) => st.isEnded), { timeoutMs: 5000, what: 'what alice held on a to end' });
  await waitFor(() => mine.every(([, st]) => accessIndex(f.gw, st.requestId) >= 0), { what: 'their access lines' });
  for (const [name, st] of mine)
    assert.ok(accessIndex(f.gw, st.requestId) < scimAt, `${name} ended before the reply to ${what} was sent`);
  for (const [name, st] of mine)
    assert.ok(!st.messages.some((m) => m.id !== undefined && m.result), `${name}: no result after the cut (${st.raw().slice(-300)})`);
  assert.ok(h.aStream.messages.some((m) => m.method === 'notifications/tools/list_changed'), 'her /mcp/a stream was told list_changed before it was cut');
  // her session on a is gone for her: the next request is refused with a clear error
  const next = await h.a.request('tools/list');
  assert.equal(next.status, 404, `next request on her /mcp/a session: ${next.status} ${next.body}`);
  assert.match(next.json?.message ?? "", /no connector "a"/, next.body);
  // the aggregated stream stays, is told, and lists b's tools only
  await h.aggStream.waitFor((m) => m.method === 'notifications/tools/list_changed', 5000);
  assert.equal(h.aggStream.isEnded, false, 'her aggregated stream stays open');
  const list = await h.agg.request('tools/list');
  const names = list.messages.find((m) => m.result)?.result?.tools?.map((x) => x.name) ?? [];
  assert.ok(names.some((n) => n.startsWith('b__')) && !names.some((n) => n.startsWith('a__')), `aggregated tools: ${names}`);
  const refused = await echo(h.agg, 'a__echo', 'no');
  assert.ok(refused.error, `a__echo refused: ${JSON.stringify(refused)}`);
  assert.equal(toolText((await echo(h.agg, 'b__echo', 'still')).result), 'Echo: still');
  assert.equal(toolText((await echo(h.b, 'echo', 'b stays')).result), 'Echo: b stays');
  // bob, still in G1
  assert.equal(h.bobStream.isEnded, false, 'bob\'s /mcp/a stream stays open');
  assert.equal(toolText((await echo(h.bobA, 'echo', 'bob')).result), 'Echo: bob');
}

/**
 * Once a is alice's again: nothing old comes back — her old /mcp/a session
 * is unknown, a new one works, and her aggregated session opens a fresh
 * upstream session to a (the recorder sees a new initialize).
 */
export async function assertNothingRevived(f, h) {
  const old = await h.a.request('tools/list');
  assert.equal(old.status, 404, `her old /mcp/a session: ${old.status} ${old.body}`);
  assert.equal(old.json?.error?.code, -32001, old.body);
  const fresh = await rawSession(f.t.mcpUrl('a'), f.tokens.alice);
  assert.equal(toolText((await echo(fresh, 'echo', 'again')).result), 'Echo: again');
  const inits = f.rec.byMethod('initialize').length;
  assert.equal(toolText((await echo(h.agg, 'a__echo', 'back')).result), 'Echo: back');
  assert.equal(f.rec.byMethod('initialize').length, inits + 1, 'the aggregated session opened a new upstream session to a');
}

export function closeAll(h) {
  for (const st of [h.aStream, h.aggStream, h.bobStream, h.slowA, h.slowAgg]) st?.close();
}
