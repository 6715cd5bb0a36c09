// tests/integration/lib/agg.mjs — helpers for the aggregated endpoint tests
// (/t/{tenant}/mcp; gateway/mcp/agg*.c), built on lib/mcp.mjs.
//
//   startAggFixture()        a gateway, one server-everything per connector
//                            (each behind its own recorder), tenant `acme`
//                            with an allow-all policy, employee tokens
//   listAllTools(c)          every page of tools/list through an SDK client
//   forwardedCalls(rec, n)   tools/call requests for tool n an upstream received
//   rpcCode(promise)         the JSON-RPC error code of a refused SDK request
import assert from 'node:assert/strict';
import net from 'node:net';
import { after } from 'node:test';

import { startGateway, request, parsePrometheus, metricValue, fetchMetrics } from './gateway.mjs';
import {
  startEverything, startRecorder, setupTenant, rpcMessages, UPSTREAM_SECRET, waitFor,
} from './mcp.mjs';

/**
 * Gateway + one server-everything per connector name, each behind its own
 * recorder; tenant `id` (allow-all policy unless `policy` is given), the
 * SCIM users, connector {name} → its recorder with the header credential
 * UPSTREAM_SECRET, an employee token per user.
 * Returns {gw, t, url (the aggregated endpoint), ups: {name: up},
 *          recs: {name: rec}, tokens: {short: mgw_…}, users: {short: scimUser}}.
 */
export async function startAggFixture({
  id = 'acme', connectors = ['alpha', 'beta'], users = ['alice@acme.com', 'bob@acme.com'], policy, gatewayArgs = [],
} = {}) {
  const [gw, ...list] = await Promise.all([startGateway({ args: gatewayArgs }), ...connectors.map(() => startEverything())]);
  const ups = {};
  const recs = {};
  const t = await setupTenant(gw, { id, users, ...(policy === undefined ? {} : { policy }) });
  for (let i = 0; i < connectors.length; i++) {
    const name = connectors[i];
    ups[name] = list[i];
    recs[name] = await startRecorder(list[i].url);
    const r = await t.putConnector(name, { url: recs[name].url, description: `Everything ${name}`, auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
    assert.equal(r.status, 201, `PUT connector ${name}: expected 201, got ${r.status} ${r.body}`);
  }
  const tokens = {};
  const us = {};
  for (const u of users) {
    const short = u.split('@')[0];
    const m = await t.mintToken(u);
    assert.equal(m.status, 201, `mint token for ${u}: expected 201, got ${m.status} ${m.body}`);
    tokens[short] = m.token;
    us[short] = t.users[u];
  }
  // whatever the gateway does with an upstream on its own after a connector PUT is over
  for (const rec of Object.values(recs)) await quiet(rec);
  return { gw, t, url: `${gw.url}/t/${id}/mcp`, ups, recs, tokens, users: us };
}

/** Waits until a recorder has seen no new request for quietMs (at most maxMs). */
export async function quiet(rec, quietMs = 300, maxMs = 3000) {
  const end = Date.now() + maxMs;
  let n = rec.requests().length;
  let since = Date.now();
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    const m = rec.requests().length;
    if (m !== n) { n = m; since = Date.now(); } else if (Date.now() - since >= quietMs) return;
  }
}

/**
 * The upstream session a client session used on this recorder: the last
 * request matching pred (e.g. its tools/list or tools/call) gives the
 * upstream session id, and the initialize that opened it is returned with
 * it: {sid, init (recorded entry or undefined)}.
 */
export function upstreamSession(rec, pred) {
  const reqs = rec.requests();
  const use = reqs.filter((e) => { try { return pred(e); } catch { return false; } }).at(-1);
  const sid = use?.headers['mcp-session-id'];
  const init = sid ? reqs.find((e) => e.json?.method === 'initialize' && e.response?.headers?.['mcp-session-id'] === sid) : undefined;
  return { sid, init };
}

/**
 * Pages through tools/list (nextCursor) with an SDK client. Returns
 * {tools (all, in order), pages: [{names, nextCursor}]}. Fails after maxPages.
 */
export async function listAllTools(c, { maxPages = 20 } = {}) {
  const tools = [];
  const pages = [];
  let cursor;
  for (let i = 0; i < maxPages; i++) {
    const r = await c.client.listTools(cursor === undefined ? {} : { cursor }, { timeout: 15000 });
    assert.ok(Array.isArray(r.tools), `tools/list page ${i}: tools is an array: ${JSON.stringify(r).slice(0, 300)}`);
    tools.push(...r.tools);
    pages.push({ names: r.tools.map((x) => x.name), nextCursor: r.nextCursor });
    if (r.nextCursor === undefined) return { tools, pages };
    assert.equal(typeof r.nextCursor, 'string', `nextCursor is a string: ${JSON.stringify(r.nextCursor)}`);
    assert.notEqual(r.nextCursor, cursor, `nextCursor moves on (page ${i})`);
    cursor = r.nextCursor;
  }
  assert.fail(`tools/list still had a nextCursor after ${maxPages} pages: ${JSON.stringify(pages)}`);
}

/** Sorted names of every tool of every page. */
export async function allToolNames(c) {
  return (await listAllTools(c)).tools.map((x) => x.name).sort();
}

/** tools/call requests for `tool` that reached an upstream (batches looked into). */
export function forwardedCalls(rec, tool) {
  return rec.requests().filter((e) => rpcMessages(e.json).some((m) => m.method === 'tools/call' && m.params?.name === tool));
}

/** Every tools/call name an upstream received. */
export function calledNames(rec) {
  return rec.requests().flatMap((e) => rpcMessages(e.json)).filter((m) => m.method === 'tools/call').map((m) => m.params?.name);
}

/**
 * Awaits an SDK request that must fail with a JSON-RPC error; resolves
 * {code, message}. Fails when it succeeded or failed without a code.
 */
export async function rpcError(promise, what = 'request') {
  let res;
  try {
    res = await promise;
  } catch (e) {
    assert.ok(Number.isInteger(e.code), `${what}: a JSON-RPC error with a code, got ${e.stack ?? e}`);
    return { code: e.code, message: String(e.message), data: e.data };
  }
  assert.fail(`${what} was expected to fail, but returned ${JSON.stringify(res).slice(0, 300)}`);
}

/** Open client streams the gateway reports for (tenant, connector); "(all)" = the aggregated endpoint's GET streams. */
export async function openStreams(gw, tenant, connector = '(all)') {
  const r = await fetchMetrics(gw); // with the operator token
  assert.equal(r.status, 200, 'metrics');
  return metricValue(parsePrometheus(r.body), 'mcpgate_mcp_client_streams_open', { tenant, connector });
}

export { waitFor, UPSTREAM_SECRET };

/**
 * A TCP forwarder on 127.0.0.1 whose target port can change (an upstream
 * that is restarted elsewhere keeps its address). Returns
 * {port, url(path), setTarget(port), stop()}.
 */
export async function startForwarder(targetPort) {
  let target = targetPort;
  const socks = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    socks.add(down); socks.add(up);
    const end = () => { down.destroy(); up.destroy(); socks.delete(down); socks.delete(up); };
    down.on('error', end); up.on('error', end);
    down.on('close', end); up.on('close', end);
    down.pipe(up); up.pipe(down);
  });
  await new Promise((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', () => { server.off('error', j); r(); }); });
  const port = server.address().port;
  const fw = {
    port,
    url: (p = '/mcp') => `http://127.0.0.1:${port}${p}`,
    setTarget(p) { target = p; for (const s of socks) s.destroy(); socks.clear(); },
    stop: () => new Promise((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }),
  };
  after(() => fw.stop());
  return fw;
}
