// tests/integration/lib/policy.mjs — helpers for the policy integration tests
// (built on lib/gateway.mjs, lib/admin.mjs, lib/scim.mjs and lib/mcp.mjs).
//
//   startPolicyFixture()       gateway + server-everything behind the recorder,
//                              tenant WITHOUT a policy, users, connector, tokens
//   putPolicy / getPolicy / explain / policyCli     the admin side
//   toolNames / toolsByName / callRefused / callOk  the employee side (SDK client)
//   forwardedCalls(rec, tool)  tools/call requests the upstream really received
//   watchListChanged(c)        counts notifications/tools/list_changed on a client
//   waitStreams(...)           waits until the gateway has N client streams open
//   group(scim).add/remove/... SCIM group membership as Okta and Entra send it
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after } from 'node:test';

import { startGateway, makeTempDir, request, parsePrometheus, metricValue, waitFor, sleep, fetchMetrics } from './gateway.mjs';
import { api, cli } from './admin.mjs';
import { startOkta, Browser, signIn } from './okta.mjs';
import { URN } from './scim.mjs';
import {
  startEverything, startRecorder, setupTenant, connectClient, rpcMessages, mcpPost, initializeBody,
  toolText, UPSTREAM_SECRET, EVERYTHING_TOOLS, sdkLoaded,
} from './mcp.mjs';

export { EVERYTHING_TOOLS, toolText, sleep, waitFor };

export const CONNECTOR = 'everything';

/** The senior/junior scenario policy of the design. */
export const SCENARIO_POLICY = {
  version: 1,
  default: 'block',
  connectors: { everything: { default: 'block' } },
  rules: [
    { groups: ['Senior Engineers'], connector: 'everything', allow: ['echo', 'get-*'], block: ['get-env'], approve: ['get-sum'] },
    { groups: ['Junior Engineers'], connector: 'everything', allow: ['echo'] },
  ],
};

/** What the scenario policy gives a senior engineer on server-everything. */
export const SENIOR_ALLOWED = EVERYTHING_TOOLS.filter((n) => n === 'echo' || (n.startsWith('get-') && n !== 'get-env' && n !== 'get-sum'));
export const SENIOR_LISTED = [...SENIOR_ALLOWED, 'get-sum'].sort();
export const JUNIOR_LISTED = ['echo'];

export const APPROVAL_PREFIX = '[requires approval';

/**
 * Gateway + server-everything (behind a recorder) + tenant `id` with the
 * given SCIM users and NO policy (every connector hidden), connector
 * `everything` → recorder, and an employee token per user.
 * Returns {gw, up, rec, t, url, tokens: {short: mgw_…}, users: {short: scimUser}}.
 */
export async function startPolicyFixture({ id = 'acme', users = ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'], gatewayArgs = [], env = {} } = {}) {
  const [gw, up] = await Promise.all([startGateway({ args: gatewayArgs, env }), startEverything()]);
  const rec = await startRecorder(up.url);
  const t = await setupTenant(gw, { id, users, policy: null });
  const r = await t.putConnector(CONNECTOR, { url: rec.url, description: 'Everything', auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } });
  assert.equal(r.status, 201, `PUT connector: ${r.status} ${r.body}`);
  const tokens = {};
  const us = {};
  for (const u of users) {
    const short = u.split('@')[0];
    const m = await t.mintToken(u);
    assert.equal(m.status, 201, `mint token for ${u} (no policy yet): ${m.status} ${m.body}`);
    tokens[short] = m.token;
    us[short] = t.users[u];
  }
  return { gw, up, rec, t, url: t.mcpUrl(CONNECTOR), tokens, users: us };
}

/**
 * Tokens the users create themselves on their own page, signed in with
 * Okta (oidc-provider): what may decide approval requests — a token an
 * admin minted (f.tokens) may not. Gives the fixture's tenant OIDC
 * settings and self_service_tokens; f.own[short] is each user's token,
 * f.okta the provider (stopped after the file's tests).
 */
export async function ownTokens(f, shorts) {
  const id = f.t.id ?? 'acme';
  const mail = (s) => f.t.users[Object.keys(f.t.users).find((u) => u.startsWith(`${s}@`))]?.userName ?? `${s}@acme.com`;
  const okta = await startOkta({
    redirectUris: [`${f.gw.url}/t/${id}/oauth/callback`],
    accounts: Object.fromEntries(shorts.map((s) => [`00u-${s}`, { email: mail(s), email_verified: true }])),
  });
  f.okta = okta;
  after(() => okta.stop().catch(() => {}));
  let r = await f.t.admin('PUT', '/oidc', { issuer: okta.issuer, client_id: okta.clientId, client_secret: okta.clientSecret });
  assert.equal(r.status, 201, `PUT oidc: ${r.status} ${r.body}`);
  r = await f.t.admin('PATCH', '', { settings: { self_service_tokens: true } });
  assert.equal(r.status, 200, `self_service_tokens: ${r.status} ${r.body}`);
  f.own = f.own ?? {};
  f.browsers = f.browsers ?? {}; // each one's signed-in browser (the reviewers' page and its list)
  for (const s of shorts) {
    const b = new Browser();
    const si = await signIn(b, `${f.gw.url}/t/${id}/login`, { login: `00u-${s}` });
    assert.equal(si.status, 200, `${s} signs in: ${si.status} ${si.text}`);
    const me = await b.get(`${f.gw.url}/t/${id}/api/me`, { follow: false });
    const { csrf } = JSON.parse(me.text);
    const c = await b.post(`${f.gw.url}/t/${id}/api/tokens`, JSON.stringify({ name: 'reviewing', expires_days: 1 }), {
      follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
    });
    assert.equal(c.status, 201, `${s} creates a token: ${c.status} ${c.text}`);
    f.own[s] = JSON.parse(c.text).token;
    f.browsers[s] = b;
  }
  return f.own;
}

// ---------------------------------------------------------------- admin side

/** PUT the policy document (raw reply; opts as for api()). */
export const putPolicy = (t, doc, opts) => t.admin('PUT', '/policy', doc, opts);

/** PUT the policy, asserting 200 {version, warnings}; returns the body. */
export async function applyPolicy(t, doc) {
  const r = await putPolicy(t, doc);
  assert.equal(r.status, 200, `PUT policy: expected 200, got ${r.status} ${r.body}`);
  assert.ok(Number.isInteger(r.json.version) && r.json.version >= 1, `version is a positive integer: ${r.body}`);
  assert.ok(Array.isArray(r.json.warnings), `warnings is an array: ${r.body}`);
  return r.json;
}

/** GET the policy (raw reply). */
export const getPolicy = (t) => t.admin('GET', '/policy');

/** GET …/explain?user=&connector=&tool= (raw reply). */
export function explain(t, user, tool, connector = CONNECTOR) {
  const q = new URLSearchParams({ user, connector, tool }).toString();
  return t.admin('GET', `/explain?${q}`);
}

/** explain, asserting 200; returns the body. */
export async function explainOk(t, user, tool, connector = CONNECTOR) {
  const r = await explain(t, user, tool, connector);
  assert.equal(r.status, 200, `explain ${user} ${connector}/${tool}: ${r.status} ${r.body}`);
  return r.json;
}

/** Runs `mcpgate policy ARGS --server URL --data DIR` against gateway gw. */
export function policyCli(gw, args, opts) {
  return cli(['policy', ...args, '--server', gw.url, '--data', gw.dataDir], opts);
}

/** Writes a JSON document to a temp file; returns its path. */
export async function writeJsonFile(doc, name = 'policy.json') {
  const dir = await makeTempDir('mcpgate-policy-');
  const p = path.join(dir, name);
  await fsp.writeFile(p, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
  return p;
}

// ---------------------------------------------------------------- employee side

/** Sorted tool names of a tools/list through an SDK client. */
export async function toolNames(c) {
  return (await c.client.listTools()).tools.map((x) => x.name).sort();
}

/** tools/list as a map name → tool. */
export async function toolsByName(c) {
  return Object.fromEntries((await c.client.listTools()).tools.map((x) => [x.name, x]));
}

/**
 * tools/call that must be refused: resolves {code, message} of the JSON-RPC
 * error (the SDK's McpError), fails if the call succeeded.
 */
export async function callRefused(c, name, args = {}) {
  let res;
  try {
    res = await c.client.callTool({ name, arguments: args }, undefined, { timeout: 10000 });
  } catch (e) {
    assert.ok(Number.isInteger(e.code), `tools/call ${name}: a JSON-RPC error, got ${e.stack ?? e}`);
    return { code: e.code, message: String(e.message) };
  }
  assert.fail(`tools/call ${name} was expected to be refused, but returned ${JSON.stringify(res).slice(0, 300)}`);
}

/** Asserts a refused call: code and a message naming the tool. */
export async function assertRefused(c, name, code, args = {}) {
  const e = await callRefused(c, name, args);
  assert.equal(e.code, code, `tools/call ${name}: error code ${code} expected, got ${e.code} (${e.message})`);
  assert.ok(e.message.includes(name), `the error message names the tool "${name}": ${e.message}`);
  if (code === -32003) assert.match(e.message, /blocked by your organisation's policy/, `blocked message: ${e.message}`);
  return e;
}

/** A call that must go through; returns the result. */
export async function callOk(c, name, args = {}) {
  const r = await c.client.callTool({ name, arguments: args }, undefined, { timeout: 10000 });
  assert.ok(!r.isError, `tools/call ${name} succeeded: ${JSON.stringify(r).slice(0, 300)}`);
  return r;
}

/** Arguments server-everything accepts for a tool (for allowed calls). */
export const ARGS = { echo: { message: 'hi' }, 'get-sum': { a: 2, b: 3 }, 'get-tiny-image': {}, 'get-env': {} };

/** tools/call requests for `tool` that reached the upstream (batches looked into). */
export function forwardedCalls(rec, tool) {
  return rec.requests().filter((e) => rpcMessages(e.json).some((m) => m.method === 'tools/call' && m.params?.name === tool));
}

/**
 * Recorded upstream requests caused by employees: the gateway's own
 * capability probe after a connector PUT (initialize id "mcpgate-init" and
 * the rest of that upstream session) is left out.
 */
export function userTraffic(rec) {
  const all = rec.requests();
  const probe = new Set(all.filter((e) => e.json?.id === 'mcpgate-init')
    .map((e) => e.response?.headers?.['mcp-session-id']).filter(Boolean));
  return all.filter((e) => e.json?.id !== 'mcpgate-init' && !probe.has(e.headers['mcp-session-id']));
}

/** Asserts the upstream never received a tools/call for `tool`. */
export function assertNotForwarded(rec, tool) {
  const hits = forwardedCalls(rec, tool);
  assert.equal(hits.length, 0, `the upstream must never see tools/call ${tool}; it saw ${hits.length}: ${hits.map((e) => e.body).join(' | ').slice(0, 400)}`);
}

/**
 * Registers a ToolListChangedNotification handler on an SDK client; returns
 * {count(), next(ms)} — next() resolves on the next notification after the
 * call (or one already counted past `since`).
 */
export function watchListChanged(c) {
  const { ToolListChangedNotificationSchema } = sdkLoaded(); /* c came from connectClient */
  let n = 0;
  const waiters = new Set();
  c.client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    n++;
    for (const w of waiters) if (n > w.since) { waiters.delete(w); w.resolve(n); }
  });
  return {
    count: () => n,
    /** Resolves once more than `since` notifications arrived (default: the count now). */
    after(since, ms = 5000, what = 'notifications/tools/list_changed') {
      if (n > since) return Promise.resolve(n);
      return new Promise((resolve, reject) => {
        const w = { since, resolve: (x) => { clearTimeout(t); resolve(x); } };
        const t = setTimeout(() => { waiters.delete(w); reject(new Error(`no ${what} within ${ms} ms (count stays ${n})`)); }, ms);
        waiters.add(w);
      });
    },
  };
}

/** Open client streams the gateway reports for a tenant's connector. */
export async function openStreams(gw, tenant, connector = CONNECTOR) {
  const r = await fetchMetrics(gw); // with the operator token
  assert.equal(r.status, 200, 'metrics');
  return metricValue(parsePrometheus(r.body), 'mcpgate_mcp_client_streams_open', { tenant, connector });
}

/** Waits until at least n client streams are open for the connector. */
export async function waitStreams(gw, tenant, n, connector = CONNECTOR) {
  await waitFor(async () => (await openStreams(gw, tenant, connector)) >= n, { timeoutMs: 8000, what: `${n} open client stream(s) on ${tenant}/${connector}` });
}

/**
 * Connects an SDK client and waits until its standalone GET stream is open
 * at the gateway (so notifications can reach it). Returns the client with
 * `lc` (watchListChanged) attached. rec: the connector's recorder (optional).
 */
export async function connectWithStream(gw, tenant, url, token, rec) {
  const upGets = () => (rec ? rec.requests().filter((e) => e.method === 'GET' && e.response).length : 0);
  const before = await openStreams(gw, tenant);
  const gets = upGets();
  const c = await connectClient(url, token);
  c.lc = watchListChanged(c);
  // the upstream answered the GET (when a recorder is given), and the gateway counts the client stream
  if (rec) await waitFor(() => upGets() > gets, { timeoutMs: 8000, what: 'the upstream GET stream to be answered' });
  await waitStreams(gw, tenant, before + 1);
  return c;
}

/** A raw initialize on the endpoint (no session); resolves the reply. */
export const rawInitialize = (url, token) => mcpPost(url, initializeBody(1), { token });

// ---------------------------------------------------------------- SCIM groups

/** SCIM group operations as Okta (PATCH) and Entra (PUT) send them. */
export function groups(scim) {
  const ok = (r, what) => {
    assert.ok(r.status === 200 || r.status === 204, `${what}: ${r.status} ${r.body}`);
    return r;
  };
  return {
    create: (displayName, memberIds = []) => scim.createGroup(displayName, memberIds),
    add: async (gid, uid) => ok(await scim.patchOps(`/Groups/${gid}`, [{ op: 'add', path: 'members', value: [{ value: uid }] }]), `add ${uid} to ${gid}`),
    remove: async (gid, uid) => ok(await scim.patchOps(`/Groups/${gid}`, [{ op: 'remove', path: `members[value eq "${uid}"]` }]), `remove ${uid} from ${gid}`),
    replaceMembers: async (gid, uids) => ok(await scim.patchOps(`/Groups/${gid}`, [{ op: 'replace', path: 'members', value: uids.map((value) => ({ value })) }]), `replace members of ${gid}`),
    putGroup: async (gid, displayName, uids) => ok(await scim.put(`/Groups/${gid}`, { schemas: [URN.GROUP], displayName, members: uids.map((value) => ({ value })) }), `PUT group ${gid}`),
    rename: async (gid, displayName) => ok(await scim.patchOps(`/Groups/${gid}`, [{ op: 'replace', value: { id: gid, displayName } }]), `rename ${gid}`),
    del: async (gid) => {
      const r = await scim.del(`/Groups/${gid}`);
      assert.equal(r.status, 204, `DELETE group ${gid}: ${r.status} ${r.body}`);
      return r;
    },
  };
}

/** Admin API call on another path with any token. */
export const adminCall = (gw, token, method, p, body, opts) => api(gw.port, token, method, p, body, opts);

// ---------------------------------------------------------------- JSON upstream

/**
 * A minimal Streamable HTTP MCP server that answers every POST with
 * application/json (server-everything always answers with SSE): initialize,
 * notifications (202), tools/list (`tools`), tools/call ("called <name>"),
 * and batches (a JSON array of the replies). GET → 405 (no standalone stream).
 * pageSize > 0: tools/list is paginated (cursor = index of the first tool).
 * Returns {url, requests: [{method, json}], calls(name), stop()}.
 */
export async function startJsonUpstream({ tools = ['alpha', 'beta', 'gamma'], pageSize = 0 } = {}) {
  const log = [];
  const answer = (m) => {
    if (m.method === 'initialize') {
      return { protocolVersion: m.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: { listChanged: true } }, serverInfo: { name: 'json-upstream', version: '1.0.0' } };
    }
    if (m.method === 'tools/list') {
      const all = tools.map((name) => ({ name, description: `the ${name} tool`, inputSchema: { type: 'object', properties: {} } }));
      if (!pageSize) return { tools: all };
      const start = Number(m.params?.cursor ?? 0);
      const page = { tools: all.slice(start, start + pageSize) };
      if (start + pageSize < all.length) page.nextCursor = String(start + pageSize);
      return page;
    }
    if (m.method === 'tools/call') return { content: [{ type: 'text', text: `called ${m.params?.name}` }] };
    if (m.method === 'ping') return {};
    return undefined;
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      log.push({ method: req.method, json, body: text });
      if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
      if (req.method !== 'POST') { res.writeHead(405, { allow: 'POST, DELETE' }).end(); return; }
      const msgs = Array.isArray(json) ? json : [json];
      const replies = [];
      for (const m of msgs) {
        if (!m || m.id === undefined || !m.method) continue;
        const result = answer(m);
        replies.push(result === undefined
          ? { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `no method ${m.method}` } }
          : { jsonrpc: '2.0', id: m.id, result });
      }
      const h = { 'mcp-session-id': 'json-upstream-session' };
      if (!replies.length) { res.writeHead(202, h).end(); return; }
      const b = JSON.stringify(Array.isArray(json) ? replies : replies[0]);
      res.writeHead(200, { ...h, 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const u = {
    url: `http://127.0.0.1:${server.address().port}/mcp`,
    requests: () => log.slice(),
    calls: (name) => log.filter((e) => rpcMessages(e.json).some((m) => m.method === 'tools/call' && m.params?.name === name)),
    stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
  after(() => u.stop());
  return u;
}
