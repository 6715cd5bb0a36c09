// An upstream's replies cost the loop their parse too: a tenant admin's
// own upstream answering resources/list (a list the aggregated endpoint
// builds as a tree, to route its URIs) with tens of thousands of small
// items made the gateway build ~20 MiB of tree, tens of milliseconds of
// the loop, on every employee's call — the loop every tenant shares. The
// tree each upstream JSON text would take is now charged to the tenant's
// mcp_json_mib_per_tenant, the bucket its clients' bodies pay into
// (gateway/mcp/exchange.c gw__x_json): past it the text is left unparsed
// and the connector's items are left out, with the reason in the log and
// mcpgate_mcp_rate_limited_total{limit="json_reply"}; another tenant's
// budget is its own. Upstreams: lib/ctl-upstream.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, metricValue, waitFor } from './lib/gateway.mjs';
import { scrape } from './lib/scim.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

// each listed resource ({"uri":…,"name":…} and what ctl-upstream adds) is
// ~800 bytes of tree by gw_json_tree_cost's weights: 4,500 of them ~3.4 MiB
// (a list costs 3 of the budget's MiBs; sizes kept small: under ASan and
// beside other files, building trees of tens of MiB slowed them)
const ITEMS = 4500;

async function fixture(args, tenantIds, users) {
  const gw = await startGateway({ args });
  const sessions = {};
  const ups = {};
  for (const id of tenantIds) {
    const t = await setupTenant(gw, { id, users: users.map((u) => `${u}@${id}.com`) });
    ups[id] = await startCtlUpstream({ name: `big${id[0]}`, resources: ITEMS });
    const r = await t.putConnector('big', { url: ups[id].url, auth: { type: 'none' } });
    assert.equal(r.status, 201, r.body);
    for (const u of users) {
      const tok = (await t.mintToken(`${u}@${id}.com`)).token;
      sessions[`${u}@${id}`] = await rawSession(`${gw.url}/t/${id}/mcp`, tok);
    }
  }
  const list = async (who) => {
    const r = await sessions[who].request('resources/list');
    assert.equal(r.status, 200, r.body.slice(0, 300));
    return r.messages[0]?.result?.resources?.length;
  };
  // lists until one comes back without the heavy connector's items (at
  // most `max`): the counts, the first the whole list
  const untilRefused = async (who, max = 14) => {
    const counts = [await list(who)];
    assert.equal(counts[0], ITEMS, `${who}: the whole list while the budget lasts`);
    while (counts.length < max && counts[counts.length - 1] !== 0) counts.push(await list(who));
    return counts;
  };
  return { gw, ups, list, untilRefused };
}

// A gateway with `args`, tenant acme (alice), connector "up" at a
// ctl-upstream "raw" (its raw tool answers the JSON text it is given), and
// alice's session at the connector endpoint (path 'up') or the aggregated
// one (''); run(f) stops the gateway after f.
async function rawFixture(args, { path = 'up', protocolVersion } = {}) {
  const gw = await startGateway({ args });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const up = await startCtlUpstream({ name: 'raw' });
  const r = await t.putConnector('up', { url: up.url, auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  const tok = (await t.mintToken('alice@acme.com')).token;
  const url = `${gw.url}/t/acme/mcp${path ? `/${path}` : ''}`;
  const s = await rawSession(url, tok, protocolVersion ? { protocolVersion } : undefined);
  return { gw, up, tok, url, s };
}

// a tool result of 16,000 empty objects: 48 kB of text (free as the
// request's string), ~3.7 MiB of tree in the reply event the gateway reads
// (3 of the budget's MiBs a call)
const HEAVY = 16000;
const heavyResult = (text = 'ok') => `{"content":[{"type":"text","text":"${text}"}],"items":[${'{},'.repeat(HEAVY)}{}]}`;

// Calls `name` with the raw arguments until one is answered by an error
// (at most 6): each call must get exactly one answer; the answers.
async function callUntilRefused(s, name, args) {
  const answers = [];
  for (let i = 0; i < 6 && !answers.some((a) => a.error); i++) {
    const c = await s.request('tools/call', { name, arguments: typeof args === 'function' ? args(i) : args });
    assert.equal(c.status, 200, c.body.slice(0, 300));
    const mine = c.messages.filter((m) => m.id !== undefined && (m.result || m.error));
    assert.equal(mine.length, 1, `call ${i + 1}: one answer per call: ${c.body.slice(0, 200)}`);
    answers.push(mine[0]);
  }
  assert.equal(answers[0].result?.items?.length, HEAVY + 1, 'the first reply is relayed whole');
  const refused = answers[answers.length - 1];
  assert.ok(refused.error && /mcp_json_mib_per_user/.test(refused.error.message),
    `once the user's budget is spent the call is answered by the error: ${JSON.stringify(refused).slice(0, 300)}`);
  return answers;
}

test('the tree an upstream\'s reply would take is charged to its tenant\'s mcp_json_mib_per_tenant: past it the reply is left unparsed, said in the log and the metric; another tenant\'s budget is its own', async () => {
  const f = await fixture(['--mcp-json-mib-per-tenant', '15', '--mcp-json-mib-per-user', '100000', '--agg-uri-map-max', '64'],
    ['acme', 'globex'], ['alice', 'bob']);
  try {
    // each 3 MiB: ~5 fit in 15, and what refills while they run
    const counts = await f.untilRefused('alice@acme');
    assert.equal(counts[counts.length - 1], 0, `acme's upstream replies were left unparsed once its budget was spent: ${counts}`);
    assert.ok(counts.length >= 3, `more than one reply fit: ${counts}`);
    assert.equal(await f.list('bob@acme'), 0, 'the tenant\'s budget is every user\'s of it');
    await f.gw.waitForLog((l) => /was not parsed: the user's mcp_json_mib_per_user or the tenant's mcp_json_mib_per_tenant has no room/.test(l.msg ?? '') && l.tenant === 'acme');
    await f.gw.waitForLog((l) => /items are left out/.test(l.msg ?? '') && /mcp_json_mib_per_tenant/.test(l.msg ?? ''));
    const m = await scrape(f.gw.port);
    assert.ok(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'json_reply' }) >= 2, 'counted as json_reply');
    // globex's upstream answers the same lists: its budget is untouched
    assert.equal(await f.list('alice@globex'), ITEMS, 'another tenant lists in full');
    // each list was asked of the upstream once: a refusal costs it no retry
    assert.equal(f.ups.acme.rpc('resources/list').length, counts.length + 1);
  } finally {
    await f.gw.stop();
  }
});

test('... and to the user it is parsed for (mcp_json_mib_per_user): an employee listing a heavy connector over and over spends their own budget, not their colleagues\'', async () => {
  const f = await fixture(['--mcp-json-mib-per-user', '9', '--agg-uri-map-max', '64'], ['acme'], ['alice', 'bob']);
  try {
    const counts = await f.untilRefused('alice@acme');
    assert.equal(counts[counts.length - 1], 0, `alice's lists were left unparsed once her budget was spent: ${counts}`);
    assert.ok(counts.length >= 2, `more than one reply fit: ${counts}`);
    assert.equal(await f.list('bob@acme'), ITEMS, 'bob of the same tenant lists in full');
  } finally {
    await f.gw.stop();
  }
});

test('a streamed reply whose parse does not fit is not relayed: the client gets one answer, the error naming the budget, never the reply and then an error', async () => {
  const f = await rawFixture(['--mcp-json-mib-per-user', '8']);
  try {
    const answers = await callUntilRefused(f.s, 'raw', { result: heavyResult(), sse: true });
    assert.ok(answers.length >= 2, `more than one reply fit: ${answers.length}`);
  } finally {
    await f.gw.stop();
  }
});

// On the aggregated endpoint a reply event the call's rewrite must read
// (an escape in it: gw__agg_vouch cannot vouch for it) was parsed twice,
// each parse charged: once to note which request it answers (note_event),
// once to rewrite it (relay_one_event). With room for the first parse and
// not the second, the reply was noted as given and then dropped: the
// client got neither the reply nor an error. 10 MiB a minute, 3 a parse:
// charged twice, the second call had room for one parse and not two.
test('aggregated: a streamed reply the rewrite must parse is parsed (and charged) once — with room for one parse, the client gets its reply or the error, never nothing', async () => {
  const f = await rawFixture(['--mcp-json-mib-per-user', '10'], { path: '' });
  try {
    const answers = await callUntilRefused(f.s, 'up__raw', { result: heavyResult('ok\\u0041'), sse: true });
    assert.equal(answers[0].result?.content?.[0]?.text, 'okA');
    // one parse a call: three replies (9 MiB) fit in 10
    assert.ok(answers.length >= 3 && answers[1].result, `a second reply fit: ${answers.length}`);
  } finally {
    await f.gw.stop();
  }
});

// A reply event carrying an id whose parse was refused is not relayed —
// but its id made the stream count as resumable, so the stream ended
// without answer_missing's error: the client, which never saw that id,
// had nothing to resume from and no answer.
test('a refused reply event that carries an event id leaves the client its error: the id it never got does not make the stream resumable', async () => {
  const f = await rawFixture(['--mcp-json-mib-per-user', '8']);
  try {
    await callUntilRefused(f.s, 'raw', (i) => ({ result: heavyResult(), sse: true, eventId: `e-${i}` }));
  } finally {
    await f.gw.stop();
  }
});

// Each text was charged alone, its MiBs rounded down (and one under 12 kB
// not even estimated): a GET stream of events of just under a MiB of tree
// each — 11 kB of "{}," — made the loop build trees at the upstream's
// pace, every one free. What a feed's events take short of a MiB is now
// carried to its next.
test('aggregated GET stream: events of just under a MiB of tree each are charged together — a flood of them spends the budget', async () => {
  const { gw, up, tok, s } = await rawFixture(['--mcp-json-mib-per-user', '8'], { path: '' });
  try {
    assert.equal((await s.request('tools/list')).status, 200); // the upstream session
    const g = await openStream(`${gw.url}/t/acme/mcp`, { headers: mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' }) });
    assert.equal(g.status, 200);
    await waitFor(() => up.openGets().length >= 1, { timeoutMs: 5000, what: 'the upstream GET stream' });
    // 3,800 empty objects: 11.4 kB of text, ~0.9 MiB of tree
    const data = Array.from({ length: 3800 }, () => ({}));
    const EVENTS = 30; // ~27 MiB of tree in all
    for (let i = 0; i < EVENTS; i++) up.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data, i } });
    up.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'last' } });
    await g.waitFor((m) => m.params?.data === 'last', 15000);
    const got = g.messages.filter((m) => Array.isArray(m.params?.data)).length;
    g.close();
    const m = await scrape(gw.port);
    assert.ok(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'json_reply' }) >= 1,
      `the stream's events were charged: ${got} of ${EVENTS} relayed`);
    assert.ok(got < EVENTS && got >= 6, `the budget's worth relayed (~8 MiB), the rest left unparsed: ${got} of ${EVENTS}`);
  } finally {
    await gw.stop();
  }
});

// A batch element answered over SSE whose reply was left unparsed was
// answered "connector … sent no reply": the budget, not the upstream, was
// why.
test('aggregated batch: an element whose SSE reply does not fit the budget says so, not "sent no reply"', async () => {
  const { gw, s } = await rawFixture(['--mcp-json-mib-per-user', '8'], { path: '', protocolVersion: '2025-03-26' });
  const result = heavyResult();
  try {
    const c = await s.post([1, 2, 3, 4].map((id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'up__raw', arguments: { result, sse: true } } })));
    assert.equal(c.status, 200, c.body.slice(0, 300));
    assert.ok(Array.isArray(c.json) && c.json.length === 4, c.body.slice(0, 300));
    assert.ok(c.json.some((m) => m.result?.items?.length === HEAVY + 1), 'a reply fit');
    const refused = c.json.filter((m) => m.error);
    assert.ok(refused.length >= 1, 'not all four (12 MiB) fit in 8');
    for (const m of refused)
      assert.match(m.error.message, /mcp_json_mib_per_user/, `the element's error names the budget: ${JSON.stringify(m)}`);
  } finally {
    await gw.stop();
  }
});

// A polled call (2025-11-25: its POST stream ends after a priming event
// with an id) gets its reply on the GET stream the client resumes with
// Last-Event-ID. On the aggregated endpoint that reply is an event of a
// feed (agg_mux.c mux_event): when its parse did not fit the budget it was
// dropped unread, and the call waited for ever. A response the scan can
// read is now answered by the budget's error in its place.
test('aggregated: a polled call whose reply, resumed on the GET stream, does not fit the budget gets the error, not silence', async () => {
  const { gw, tok, url, s } = await rawFixture(['--mcp-json-mib-per-user', '5'], { path: '' });
  const result = heavyResult();
  try {
    // 3 MiB of the 5
    const c1 = await s.request('tools/call', { name: 'up__raw', arguments: { result, sse: true } });
    assert.equal(c1.messages.find((m) => m.result)?.result?.items?.length, HEAVY + 1, c1.body.slice(0, 200));
    const c = await s.request('tools/call', { name: 'up__raw', arguments: { result, sse: true, polling: true } });
    assert.equal(c.status, 200, c.body.slice(0, 300));
    assert.deepEqual(c.messages.filter((m) => m.result || m.error), [], 'polled: no answer on the POST stream');
    const id = /^id: ?(.*)$/m.exec(c.body)?.[1];
    assert.ok(id, `an id to resume from: ${c.body.slice(0, 200)}`);
    const g = await openStream(url, { headers: mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream', extra: { 'last-event-id': id } }) });
    assert.equal(g.status, 200);
    const m = await g.waitFor((x) => x.id !== undefined && (x.result || x.error), 8000).catch(() => null);
    g.close();
    assert.ok(m, `the resumed stream answers the call: ${g.raw().slice(0, 300)}`);
    assert.match(m.error?.message ?? '', /mcp_json_mib_per_user/, JSON.stringify(m).slice(0, 300));
  } finally {
    await gw.stop();
  }
});
