// tests/integration/lib/agg2.mjs — helpers for the agg2-* tests: the
// aggregated endpoint (/t/{tenant}/mcp) in front of two different kinds of
// upstream — the SDK server of lib/sdk-upstream.mjs ("docs") and
// server-everything ("ev") — built on lib/mcp.mjs and lib/agg.mjs.
//
//   startMixedFixture()      gateway + docs (behind a recorder) + ev (behind a
//                            recorder), tenant acme (allow-all policy), both
//                            connectors PUT and their capabilities learned,
//                            employee token for alice
//   waitCapabilities(t, n)   polls GET …/connectors/{n} until `capabilities`
//   listAllPages(fn)         pages through any */list with nextCursor
//   rpcFrames(rec, method)   JSON-RPC messages of `method` a recorder forwarded
//   rawListAll(s, m, key)    pages through a */list on a rawSession
//   getHeaders(s, token, x)  headers of a raw GET stream on a rawSession
//   sseEvents(text)          [{id, msg}] of an SSE body (data parsed as JSON)
import assert from 'node:assert/strict';

import { startGateway } from './gateway.mjs';
import { startEverything, startRecorder, setupTenant, rpcMessages, UPSTREAM_SECRET, waitFor } from './mcp.mjs';
import { quiet } from './agg.mjs';
import { startSdkUpstream } from './sdk-upstream.mjs';

/** Polls GET /admin/v1/tenants/{t}/connectors/{name} until the record has `capabilities`; returns them. */
export async function waitCapabilities(t, name, timeoutMs = 10000) {
  let last;
  return waitFor(async () => {
    last = await t.admin('GET', `/connectors/${name}`);
    assert.equal(last.status, 200, `GET connector ${name}: ${last.status} ${last.body}`);
    const c = last.json?.capabilities ?? last.json?.connector?.capabilities;
    return c && typeof c === 'object' ? c : false;
  }, { timeoutMs, intervalMs: 50, what: `capabilities of connector ${name} (last: ${last?.body})` });
}

/**
 * The mixed fixture. Returns {gw, t, url (aggregated endpoint), docs (the SDK
 * upstream), ev (server-everything), recs: {docs, ev}, caps: {docs, ev},
 * token (alice's mgw_ token)}.
 */
export async function startMixedFixture({ gatewayArgs = [], promptPageSize = 1 } = {}) {
  const [gw, docs, ev] = await Promise.all([
    startGateway({ args: gatewayArgs }), startSdkUpstream({ promptPageSize }), startEverything(),
  ]);
  const recs = { docs: await startRecorder(docs.url), ev: await startRecorder(ev.url) };
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const caps = {};
  for (const [name, description] of [['docs', 'Handbook (SDK server)'], ['ev', 'server-everything']]) {
    const r = await t.putConnector(name, { url: recs[name].url, description, auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
    assert.equal(r.status, 201, `PUT connector ${name}: ${r.status} ${r.body}`);
  }
  // after a PUT the gateway probes the upstream (initialize) and records what it announced
  for (const name of ['docs', 'ev']) caps[name] = await waitCapabilities(t, name);
  for (const rec of Object.values(recs)) await quiet(rec, 200, 2000);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, `mint token: ${m.status} ${m.body}`);
  return { gw, t, url: `${gw.url}/t/acme/mcp`, docs, ev, recs, caps, token: m.token };
}

/**
 * Pages through a list: fetch(cursor) → result; key is the array's name.
 * Returns {items, pages: [{items, nextCursor}]}.
 */
export async function listAllPages(fetch, key, { maxPages = 20 } = {}) {
  const items = [];
  const pages = [];
  let cursor;
  for (let i = 0; i < maxPages; i++) {
    const r = await fetch(cursor);
    assert.ok(Array.isArray(r?.[key]), `page ${i}: ${key} is an array: ${JSON.stringify(r).slice(0, 300)}`);
    items.push(...r[key]);
    pages.push({ items: r[key], nextCursor: r.nextCursor });
    if (r.nextCursor === undefined) return { items, pages };
    assert.equal(typeof r.nextCursor, 'string', `nextCursor is a string: ${JSON.stringify(r.nextCursor)}`);
    assert.notEqual(r.nextCursor, cursor, `nextCursor moves on (page ${i})`);
    cursor = r.nextCursor;
  }
  assert.fail(`${key}: still a nextCursor after ${maxPages} pages`);
}

/** JSON-RPC messages with `method` (requests/notifications) a recorder forwarded, with their HTTP entry. */
export function rpcFrames(rec, method) {
  const out = [];
  for (const e of rec.requests()) for (const m of rpcMessages(e.json)) if (m.method === method) out.push({ msg: m, entry: e });
  return out;
}

/** Pages through `method` on a raw session (lib/mcp.mjs rawSession); returns every item. */
export async function rawListAll(s, method, key, { maxPages = 20 } = {}) {
  const r = await listAllPages(async (cursor) => {
    const res = await s.request(method, cursor === undefined ? {} : { cursor });
    assert.equal(res.status, 200, `${method}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
    const m = res.messages.find((x) => x.result || x.error);
    assert.ok(m?.result, `${method}: a result: ${res.body.slice(0, 300)}`);
    return m.result;
  }, key, { maxPages });
  return r.items;
}

/** Headers of a GET stream on a raw session (extra: e.g. {'last-event-id': id}). */
export function getHeaders(s, token, extra = {}) {
  const h = {
    authorization: `Bearer ${token}`, accept: 'text/event-stream',
    'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion,
  };
  return { ...h, ...extra };
}

/** The events of an SSE text: [{id, msg}] (msg: parsed data, undefined when not JSON). */
export function sseEvents(text) {
  const out = [];
  for (const blk of String(text).replace(/\r\n?/g, '\n').split('\n\n')) {
    let id;
    const data = [];
    for (const line of blk.split('\n')) {
      if (line.startsWith('id:')) id = line.slice(3).trimStart();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (id === undefined && !data.length) continue;
    let msg;
    try { msg = JSON.parse(data.join('\n')); } catch { msg = undefined; }
    out.push({ id, msg });
  }
  return out;
}

export { waitFor };
