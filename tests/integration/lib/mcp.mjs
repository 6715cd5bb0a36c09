// tests/integration/lib/mcp.mjs — MCP harness for the proxy tests (built on
// lib/gateway.mjs, lib/admin.mjs and lib/scim.mjs).
//
//   startEverything()        the real @modelcontextprotocol/server-everything
//                            (streamableHttp mode) on 127.0.0.1, via the
//                            upstream-shim.cjs preload (lib/everything.mjs);
//                            under tests/run.sh a file's first one is the
//                            pass's shared server
//   startRecorder(url)       a recording, streaming pass-through HTTP proxy in
//                            front of an upstream, with failure modes
//   connectClient(url, tok)  the official SDK Client over Streamable HTTP
//   setupTenant(gw)          tenant + SCIM users + gateway tokens + connectors
//   claudeMcpList({url,tok}) the real Claude Code CLI: `mcp add` + `mcp list`
//                            (claudeBin, claudeEnv(home): its binary and offline env)
//   mcpRequest / openStream  raw Streamable HTTP requests (JSON or SSE replies)
//
// server-everything 2026.8.31 (dist/tools/*.js, dist/server/index.js):
//   tools always present: echo {message} → "Echo: <message>", get-annotated-message,
//     get-env, get-resource-links, get-resource-reference, get-structured-content,
//     get-sum {a,b} → "The sum of A and B is S.", get-tiny-image, gzip-file-as-resource,
//     toggle-simulated-logging, toggle-subscriber-updates,
//     trigger-long-running-operation {duration (s), steps} → notifications/progress
//       {progress: i, total: steps} on the request's stream when _meta.progressToken is set
//   tools registered after initialize, only if the client declares the capability:
//     get-roots-list (roots; the server calls roots/list on the standalone GET stream,
//       also 350 ms after notifications/initialized),
//     trigger-elicitation-request, trigger-url-elicitation, trigger-elicitation-request-async
//       (elicitation), trigger-sampling-request, trigger-sampling-request-async (sampling),
//     simulate-research-query (experimental tasks API)
//   capabilities: tools/prompts/resources (listChanged, subscribe), logging, and
//     `tasks` {list, cancel, requests.tools.call} — which the gateway must strip.
//   server-everything keeps sessions (Mcp-Session-Id, randomUUID) and an in-memory
//   event store (SSE ids, Last-Event-ID replay); it answers 400 (-32000) to a
//   request with no/unknown session id; it has no server/discover.
import { spawn } from 'node:child_process';
import { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

// The SDK's client is imported by connectClient, on first use: importing it
// costs ~0.3 s of CPU, and half the files that use this module never start
// a client (CI runs ~250 files three times on two cores).
let sdk;
async function loadSdk() {
  if (!sdk) {
    const [{ Client }, { StreamableHTTPClientTransport }, types] = await Promise.all([
      import('@modelcontextprotocol/sdk/client/index.js'),
      import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
      import('@modelcontextprotocol/sdk/types.js'),
    ]);
    sdk = { Client, StreamableHTTPClientTransport, ...types };
  }
  return sdk;
}
/** The SDK's client modules once a connectClient has loaded them (a client
 * it returned is proof): their exports by name, e.g. the schemas. */
export function sdkLoaded() {
  if (!sdk) throw new Error('sdkLoaded: no connectClient has run yet');
  return sdk;
}

import { sleep, waitFor, startGateway, request } from './gateway.mjs';
import { api, operatorToken, createTenant } from './admin.mjs';
import { scimClient } from './scim.mjs';
import { SHIM, NODE_MODULES, EVERYTHING_JS, spawnEverything, SHARED_ENV } from './everything.mjs';

export { SHIM, NODE_MODULES, EVERYTHING_JS };

/** Tool names of server-everything 2026.8.31 (see the header). */
export const EVERYTHING_TOOLS = [
  'echo', 'get-annotated-message', 'get-env', 'get-resource-links', 'get-resource-reference',
  'get-structured-content', 'get-sum', 'get-tiny-image', 'gzip-file-as-resource',
  'toggle-simulated-logging', 'toggle-subscriber-updates', 'trigger-long-running-operation',
];
export const EVERYTHING_CONDITIONAL_TOOLS = {
  roots: ['get-roots-list'],
  elicitation: ['trigger-elicitation-request', 'trigger-url-elicitation', 'trigger-elicitation-request-async'],
  sampling: ['trigger-sampling-request', 'trigger-sampling-request-async'],
};

export const PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'];
export const LATEST = '2025-11-25';

// ---------------------------------------------------------------- cleanup

const cleanups = new Set();   // async () => void, run at the end of the file
const children = new Set();   // child processes to SIGKILL on exit

function onCleanup(fn) { cleanups.add(fn); return () => cleanups.delete(fn); }

after(async () => {
  const fns = [...cleanups].reverse();
  cleanups.clear();
  for (const fn of fns) { try { await fn(); } catch { /* best effort */ } }
});
process.on('exit', () => {
  for (const p of children) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
});

// ---------------------------------------------------------------- upstream

/**
 * server-everything in streamableHttp mode, bound to 127.0.0.1 only (see
 * lib/everything.mjs). Resolves once `/mcp` answers HTTP, to
 * {url, port, proc, output(), stop(), shared}.
 *
 * Under tests/run.sh the first call of a test file gets the pass's shared
 * server (started once by tests/tools/run-integration.mjs: starting one
 * costs ~0.6 s of CPU, and ~80 a pass did): its sessions are the file's own
 * (server-everything keeps its state per session), its stop() does nothing,
 * and it has no proc or output(). A call with `own: true` or an `env`, every
 * later call of the same file (a second upstream is a different server), and
 * every call outside tests/run.sh start their own.
 */
let sharedTaken = false;
export async function startEverything({ timeoutMs = 15000, env = {}, own = false } = {}) {
  const shared = process.env[SHARED_ENV];
  if (shared && !own && Object.keys(env).length === 0 && !sharedTaken) {
    sharedTaken = true;
    return {
      url: shared, port: Number(new URL(shared).port), proc: null, shared: true,
      output() { throw new Error('the shared server-everything has no output here: startEverything({ own: true })'); },
      async stop() { /* the pass's, not the file's */ },
    };
  }
  const e = await spawnEverything({ env, timeoutMs });
  children.add(e.proc);
  e.exited.then(() => children.delete(e.proc));
  let dead = null;
  e.exited.then((x) => { dead = x; });
  const u = {
    url: e.url, port: e.port, proc: e.proc, shared: false,
    output: e.output,
    async stop() {
      if (!dead) { e.proc.kill('SIGTERM'); const t = setTimeout(() => e.proc.kill('SIGKILL'), 3000); await e.exited; clearTimeout(t); }
      cleanup();
    },
  };
  const cleanup = onCleanup(() => u.stop());
  return u;
}

// ---------------------------------------------------------------- recorder

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/**
 * A bare HTTP upstream on 127.0.0.1 for scripted answers: every request's
 * body parsed as JSON (undefined when it is not) and handed to
 * handle(req, res, msg); closed after the test file. Resolves its /mcp URL.
 */
export async function startBareUpstream(handle) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let m;
      try { m = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { m = undefined; }
      handle(req, res, m);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  after(() => new Promise((r) => server.close(() => r())));
  return `http://127.0.0.1:${server.address().port}/mcp`;
}

/**
 * A recording pass-through proxy in front of targetUrl (http only). Every
 * request is recorded as {method, url, headers (lower-case keys), rawHeaders,
 * body (string), json, response: {status, headers, body} | undefined};
 * responses (SSE included) are streamed chunk by chunk (the response body is
 * recorded as it passes, up to 1 MiB).
 *
 * setMode(m) (async):
 *   'normal'  forward
 *   '401'     answer 401 + WWW-Authenticate: Bearer … (JSON body); '403' likewise with 403
 *   'down'    close the listening socket (connections are refused) and cut live ones
 *   'garbage' answer with bytes that are not HTTP, then close
 *   'hang'    accept the request and never answer
 * killActive() destroys every live downstream socket and upstream request
 * (streams in progress are cut mid-way).
 */
export async function startRecorder(targetUrl) {
  const target = new URL(targetUrl);
  const log = [];
  const sockets = new Set();
  const upstreams = new Set();
  let mode = 'normal';
  const waiters = new Set();

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
      let json;
      try { json = JSON.parse(body.toString('utf8')); } catch { json = undefined; }
      const entry = { method: req.method, url: req.url, headers, rawHeaders: req.rawHeaders.slice(), body: body.toString('utf8'), json, mode, at: Date.now(), response: undefined };
      log.push(entry);
      for (const w of waiters) if (safe(w.pred, entry)) { waiters.delete(w); w.resolve(entry); }
      handle(entry, req, res, body);
    });
  });
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  server.on('clientError', (err, s) => { s.destroy(); });

  function handle(entry, req, res, body) {
    if (mode === 'hang') return; // never answered (killActive / stop cut it)
    if (mode === 'garbage') {
      req.socket.write('\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n{{{garbage');
      req.socket.destroySoon();
      return;
    }
    if (mode === '401' || mode === '403') {
      const status = Number(mode);
      const b = JSON.stringify({ error: status === 401 ? 'invalid_token' : 'insufficient_scope', error_description: 'upstream says no' });
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(b),
        'www-authenticate': status === 401
          ? `Bearer error="invalid_token", resource_metadata="http://127.0.0.1:${server.address().port}/.well-known/oauth-protected-resource/mcp"`
          : 'Bearer error="insufficient_scope", scope="mcp"',
      });
      res.end(b);
      entry.response = { status, headers: {}, body: b };
      return;
    }
    const h = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const lk = req.rawHeaders[i].toLowerCase();
      if (HOP.has(lk) || lk === 'host' || lk === 'content-length') continue;
      h.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
    }
    h.push('Host', target.host);
    if (body.length > 0 || req.method === 'POST' || req.method === 'PUT') h.push('Content-Length', String(body.length));
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: h, agent: false });
    upstreams.add(up);
    up.on('close', () => upstreams.delete(up));
    up.on('response', (ures) => {
      const rh = [];
      for (let i = 0; i < ures.rawHeaders.length; i += 2) {
        const lk = ures.rawHeaders[i].toLowerCase();
        if (HOP.has(lk)) continue;
        rh.push(ures.rawHeaders[i], ures.rawHeaders[i + 1]);
      }
      entry.response = { status: ures.statusCode, headers: ures.headers, body: '' };
      res.writeHead(ures.statusCode, rh);
      res.flushHeaders();
      ures.on('data', (c) => {
        if (entry.response.body.length < (1 << 20)) entry.response.body += c.toString('utf8');
        res.write(c);
      });
      ures.on('end', () => res.end());
      ures.on('aborted', () => res.destroy());
      ures.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) { try { res.writeHead(502, { 'content-type': 'text/plain' }); res.end('recorder: upstream error'); } catch { res.destroy(); } }
      else res.destroy();
    });
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    up.end(body);
  }

  await new Promise((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', () => { server.off('error', j); r(); }); });
  const port = server.address().port;
  let listening = true;

  function cutAll() {
    for (const u of upstreams) u.destroy();
    for (const s of sockets) s.destroy();
  }

  const rec = {
    url: `http://127.0.0.1:${port}${target.pathname}${target.search}`,
    port,
    requests: () => log.slice(),
    clear: () => { log.length = 0; },
    /** Recorded requests whose JSON-RPC body has the given method (batches looked into). */
    byMethod: (m) => log.filter((e) => rpcMessages(e.json).some((x) => x.method === m)),
    /** Resolves the next (or an already recorded, from index `from`) request matching pred. */
    waitRequest(pred, timeoutMs = 5000, from = 0) {
      for (let i = from; i < log.length; i++) if (safe(pred, log[i])) return Promise.resolve(log[i]);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (e) => { clearTimeout(t); resolve(e); } };
        const t = setTimeout(() => { waiters.delete(w); reject(new Error(`recorder: no matching request within ${timeoutMs} ms`)); }, timeoutMs);
        waiters.add(w);
      });
    },
    killActive: cutAll,
    mode: () => mode,
    async setMode(m) {
      assert.ok(['normal', '401', '403', 'down', 'garbage', 'hang'].includes(m), `unknown recorder mode ${m}`);
      mode = m;
      if (m === 'down') {
        if (listening) {
          listening = false;
          const closed = new Promise((r) => server.close(() => r()));
          cutAll();
          await closed;
        }
      } else if (!listening) {
        await new Promise((r, j) => { server.once('error', j); server.listen(port, '127.0.0.1', () => { server.off('error', j); r(); }); });
        listening = true;
      }
    },
    async stop() {
      cleanup();
      cutAll();
      if (listening) { listening = false; await new Promise((r) => server.close(() => r())); }
    },
  };
  const cleanup = onCleanup(() => rec.stop());
  return rec;
}

function safe(pred, x) { try { return !!pred(x); } catch { return false; } }

/** A recorded request is the gateway's capability probe (its initialize
 * after a connector PUT, as "mcpgate"). */
export const isProbe = (e) => e.json?.method === 'initialize' && e.json.params?.clientInfo?.name === 'mcpgate';

/**
 * Resolves once every capability probe a recorder saw was answered and the
 * upstream session it opened was ended (the probe's DELETE): nothing of the
 * probes reaches the recorder after it.
 */
export async function probesEnded(rec, { timeoutMs = 10000 } = {}) {
  const ended = () => {
    const log = rec.requests();
    return log.filter(isProbe).every((p) => {
      if (!p.response) return false;
      const sid = p.response.headers?.['mcp-session-id'];
      return !sid || log.some((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === sid);
    });
  };
  await waitFor(ended, { timeoutMs, what: 'every capability probe answered and its upstream session ended' });
}

/** The JSON-RPC messages of a parsed body (a message, a batch, or nothing). */
export function rpcMessages(json) {
  if (Array.isArray(json)) return json.filter((x) => x && typeof x === 'object');
  if (json && typeof json === 'object') return [json];
  return [];
}

// ---------------------------------------------------------------- SDK client

/**
 * Connects the official SDK Client through Streamable HTTP with
 * `Authorization: Bearer <token>`.
 *   opts.roots: array of roots (declares the roots capability; handler returns them)
 *   opts.elicitation / opts.sampling: true or a handler fn (declares the capability)
 *   opts.headers: extra request headers; opts.timeoutMs: connect timeout
 *   opts.reconnection: StreamableHTTP reconnection options
 * Returns {client, transport, handlers, notifications, errors, sessionId(), close(), terminate()}.
 * handlers.roots / .elicitation / .sampling may be replaced by tests at any time;
 * each call is also logged in `calls` ({kind, params}).
 */
export async function connectClient(url, token, opts = {}) {
  const { Client, StreamableHTTPClientTransport, ListRootsRequestSchema, ElicitRequestSchema, CreateMessageRequestSchema } = await loadSdk();
  const calls = [];
  const handlers = {
    roots: async () => ({ roots: Array.isArray(opts.roots) ? opts.roots : [] }),
    elicitation: typeof opts.elicitation === 'function' ? opts.elicitation
      : async () => ({ action: 'accept', content: { name: 'Test User', check: true } }),
    sampling: typeof opts.sampling === 'function' ? opts.sampling
      : async (req) => ({ role: 'assistant', model: 'test-model', stopReason: 'endTurn', content: { type: 'text', text: `sampled: ${req.params.messages?.[0]?.content?.text ?? ''}` } }),
  };
  const capabilities = {};
  if (opts.roots) capabilities.roots = { listChanged: true };
  if (opts.elicitation) capabilities.elicitation = {};
  if (opts.sampling) capabilities.sampling = {};
  const client = new Client({ name: 'mcpgate-test-client', version: '1.0.0' }, { capabilities });
  if (opts.roots) client.setRequestHandler(ListRootsRequestSchema, async (req, extra) => { calls.push({ kind: 'roots', params: req.params }); return handlers.roots(req, extra); });
  if (opts.elicitation) client.setRequestHandler(ElicitRequestSchema, async (req, extra) => { calls.push({ kind: 'elicitation', params: req.params }); return handlers.elicitation(req, extra); });
  if (opts.sampling) client.setRequestHandler(CreateMessageRequestSchema, async (req, extra) => { calls.push({ kind: 'sampling', params: req.params }); return handlers.sampling(req, extra); });
  const notifications = [];
  const errors = [];
  client.fallbackNotificationHandler = async (n) => { notifications.push(n); };
  client.onerror = (e) => { errors.push(e); };
  const headers = { ...(token === null || token === undefined ? {} : { Authorization: `Bearer ${token}` }), ...(opts.headers ?? {}) };
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers },
    reconnectionOptions: opts.reconnection ?? { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
  });
  await client.connect(transport, { timeout: opts.timeoutMs ?? 10000 });
  let closed = false;
  const c = {
    client, transport, handlers, calls, notifications, errors,
    sessionId: () => transport.sessionId,
    async terminate() { await transport.terminateSession(); },
    async close() {
      if (closed) return;
      closed = true;
      unreg();
      try { await client.close(); } catch { /* already closed */ }
    },
  };
  const unreg = onCleanup(() => c.close());
  return c;
}

/** Text of the first text content item of a CallToolResult. */
export function toolText(result) {
  const t = (result?.content ?? []).find((x) => x.type === 'text');
  return t ? t.text : undefined;
}

// ---------------------------------------------------------------- raw Streamable HTTP

/**
 * One HTTP request (no agent, fresh connection) to a full URL. Resolves
 * {status, headers, body, json, events, messages}: `events` are the parsed SSE
 * events when the reply is text/event-stream, `messages` the JSON-RPC messages
 * of the reply (from JSON or SSE data lines). status 0 + error on a
 * connection error when opts.noThrow.
 */
export function httpCall(url, { method = 'GET', headers = {}, body, timeoutMs = 10000, noThrow = true } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    for (const k of Object.keys(h)) if (h[k] === undefined || h[k] === null) delete h[k];
    let b;
    if (body !== undefined) {
      b = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      h['content-length'] = String(Buffer.byteLength(b));
    }
    const req = http.request({ host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers: h, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const done = () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        const isSse = /^text\/event-stream/i.test(String(res.headers['content-type'] ?? ''));
        const events = isSse ? parseSse(text).events : [];
        const messages = isSse ? events.map((e) => tryJson(e.data)).filter((x) => x !== undefined).flatMap(rpcMessages) : rpcMessages(json);
        resolve({ status: res.statusCode, headers: res.headers, body: text, json, events, messages });
      };
      res.on('end', done);
      res.on('aborted', done);
      res.on('error', done);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', (e) => (noThrow ? resolve({ status: 0, error: e, headers: {}, body: '', events: [], messages: [] }) : reject(e)));
    if (b !== undefined) req.write(b);
    req.end();
  });
}

function tryJson(s) { try { return JSON.parse(s); } catch { return undefined; } }

/** Parses SSE text into events [{id, event, data, retry}] (+ the unparsed rest). */
export function parseSse(text) {
  const events = [];
  const norm = text.replace(/\r\n?/g, '\n');
  const blocks = norm.split('\n\n');
  const rest = blocks.pop();
  for (const blk of blocks) {
    const ev = { data: undefined };
    const data = [];
    let any = false;
    for (const line of blk.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      any = true;
      if (field === 'data') data.push(value);
      else if (field === 'id') ev.id = value;
      else if (field === 'event') ev.event = value;
      else if (field === 'retry') ev.retry = value;
    }
    if (!any) continue;
    ev.data = data.length ? data.join('\n') : undefined;
    events.push(ev);
  }
  return { events, rest };
}

/** Standard headers of an MCP POST. */
export function mcpHeaders({ token, sessionId, protocolVersion, accept = 'application/json, text/event-stream', extra = {} } = {}) {
  const h = { 'content-type': 'application/json', accept };
  if (token) h.authorization = `Bearer ${token}`;
  if (sessionId) h['mcp-session-id'] = sessionId;
  if (protocolVersion) h['mcp-protocol-version'] = protocolVersion;
  return { ...h, ...extra };
}

/** An initialize request body. */
export function initializeBody(id = 1, { protocolVersion = LATEST, capabilities = {}, clientInfo = { name: 'raw-test', version: '1.0.0' } } = {}) {
  return { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion, capabilities, clientInfo } };
}

/** POST one JSON-RPC body to an MCP endpoint; see httpCall for the result. */
export function mcpPost(url, body, opts = {}) {
  return httpCall(url, { method: 'POST', headers: mcpHeaders(opts), body, timeoutMs: opts.timeoutMs ?? 15000 });
}

/**
 * Raw session: initialize (+ notifications/initialized) on a Streamable HTTP
 * endpoint. Returns {sessionId, protocolVersion, init (the reply), request(method, params, opts),
 * notify(method, params), post(body, opts), del()}.
 */
export async function rawSession(url, token, { protocolVersion = LATEST, capabilities = {} } = {}) {
  const init = await mcpPost(url, initializeBody(1, { protocolVersion, capabilities }), { token });
  assert.equal(init.status, 200, `initialize: ${init.status} ${init.body}`);
  const sessionId = init.headers['mcp-session-id'];
  assert.ok(sessionId, `initialize reply has Mcp-Session-Id (headers ${JSON.stringify(init.headers)})`);
  const result = init.messages.find((m) => m.id === 1)?.result;
  assert.ok(result, `initialize result: ${init.body}`);
  const pv = result.protocolVersion;
  let nextId = 100;
  const s = {
    sessionId, protocolVersion: pv, init, result,
    post: (body, o = {}) => mcpPost(url, body, { token, sessionId, protocolVersion: pv, ...o }),
    request: (method, params, o = {}) => s.post({ jsonrpc: '2.0', id: nextId++, method, ...(params === undefined ? {} : { params }) }, o),
    notify: (method, params, o = {}) => s.post({ jsonrpc: '2.0', method, ...(params === undefined ? {} : { params }) }, o),
    del: (o = {}) => httpCall(url, { method: 'DELETE', headers: mcpHeaders({ token, sessionId, protocolVersion: pv, ...o }) }),
  };
  const n = await s.notify('notifications/initialized');
  assert.ok(n.status === 202 || n.status === 200, `notifications/initialized: ${n.status} ${n.body}`);
  return s;
}

/**
 * A streaming request (GET stream, or a POST answered with SSE) read as it
 * arrives. Resolves once the response headers are in:
 * {status, headers, events, messages, waitFor(pred, ms), ended (promise), close()}.
 */
export function openStream(url, { method = 'GET', headers = {}, body, timeoutMs = 10000 } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let b;
    if (body !== undefined) {
      b = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-length'] = String(Buffer.byteLength(b));
    }
    const req = http.request({ host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers: h, agent: false }, (res) => {
      clearTimeout(t);
      const events = [];
      const messages = [];
      const waiters = new Set();
      let buf = '';
      let raw = '';
      let endResolve;
      const ended = new Promise((r) => { endResolve = r; });
      const st = {
        status: res.statusCode, headers: res.headers, events, messages,
        raw: () => raw,
        isEnded: false,
        ended,
        waitFor(pred, ms = 10000) {
          const m = messages.find((x) => safe(pred, x));
          if (m) return Promise.resolve(m);
          if (st.isEnded) return Promise.reject(new Error(`stream ended before a matching message; got ${JSON.stringify(messages).slice(0, 1000)}`));
          return new Promise((resolve2, reject2) => {
            const w = {
              pred,
              resolve: (x) => { clearTimeout(tt); resolve2(x); },
              reject: (e) => { clearTimeout(tt); reject2(e); },
            };
            const tt = setTimeout(() => { waiters.delete(w); reject2(new Error(`no matching stream message within ${ms} ms; got ${JSON.stringify(messages).slice(0, 1000)}`)); }, ms);
            waiters.add(w);
          });
        },
        close() { req.destroy(); res.destroy(); },
      };
      res.setEncoding('utf8');
      res.on('data', (c) => {
        raw += c;
        buf += c;
        const { events: evs, rest } = parseSse(buf);
        buf = rest;
        for (const ev of evs) {
          events.push(ev);
          const j = tryJson(ev.data);
          for (const m of rpcMessages(j)) {
            messages.push(m);
            for (const w of waiters) if (safe(w.pred, m)) { waiters.delete(w); w.resolve(m); }
          }
        }
      });
      const fin = (how) => {
        if (st.isEnded) return;
        st.isEnded = true;
        st.endedHow = how;
        for (const w of waiters) w.reject(new Error(`stream ended (${how}) before a matching message; got ${JSON.stringify(messages).slice(0, 1000)}`));
        waiters.clear();
        endResolve(how);
      };
      res.on('end', () => fin('end'));
      res.on('aborted', () => fin('aborted'));
      res.on('error', () => fin('error'));
      res.on('close', () => fin('close'));
      resolve(st);
    });
    const t = setTimeout(() => req.destroy(new Error(`${method} ${url}: no response headers within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => { clearTimeout(t); reject(e); });
    if (b !== undefined) req.write(b);
    req.end();
  });
}

// ---------------------------------------------------------------- tenant setup

/**
 * Creates tenant `id` on gateway `gw` (admin API, operator token), provisions
 * `users` over SCIM (userName strings), PUTs `policy` (default ALLOW_ALL_POLICY:
 * every user may call every tool of every connector; null: no policy, so
 * every connector is hidden) and returns helpers:
 *   {id, opToken, scim, users: {userName: scimUser}, mcpUrl(connector),
 *    mintToken(userNameOrId, body?) → {status, json, id, token},
 *    putConnector(name, body) → {status, json, body},
 *    admin(method, path, body), setPolicy(doc),
 *    deactivate(userId), reactivate(userId)}
 */
export const ALLOW_ALL_POLICY = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] };

export async function setupTenant(gw, { id = 'acme', users = ['alice@acme.com', 'bob@acme.com'], policy = ALLOW_ALL_POLICY } = {}) {
  const opToken = operatorToken(gw.dataDir);
  const t = await createTenant(gw.port, opToken, id);
  const scim = scimClient(gw.port, id, t.scim.token);
  const us = {};
  for (const u of users) us[u] = await scim.createUser(u, { name: { givenName: u.split('@')[0], familyName: 'Test' }, emails: [{ value: u, primary: true }] });
  const base = `/admin/v1/tenants/${id}`;
  const admin = (method, p, body, o) => api(gw.port, opToken, method, base + p, body, o);
  const setActive = async (userId, active) => {
    const r = await scim.patchOps(`/Users/${userId}`, [{ op: 'replace', value: { active } }]);
    assert.equal(r.status, 200, `SCIM PATCH active=${active}: ${r.status} ${r.body}`);
    return r.json;
  };
  const setPolicy = async (doc) => {
    const r = await admin('PUT', '/policy', doc);
    assert.equal(r.status, 200, `PUT policy: expected 200, got ${r.status} ${r.body}`);
    return r.json;
  };
  if (policy) await setPolicy(policy);
  return {
    id, opToken, scim, users: us, tenant: t, setPolicy,
    publicBase: gw.url,
    mcpUrl: (connector) => `${gw.url}/t/${id}/mcp/${connector}`,
    admin,
    async mintToken(user, extra = {}) {
      const r = await admin('POST', '/tokens', { user, name: 'laptop', expires_in_days: 30, ...extra });
      return { status: r.status, json: r.json, body: r.body, id: r.json?.id, token: r.json?.token };
    },
    async putConnector(name, body) {
      return admin('PUT', `/connectors/${name}`, body);
    },
    deactivate: (userId) => setActive(userId, false),
    reactivate: (userId) => setActive(userId, true),
  };
}

// ---------------------------------------------------------------- proxy fixture

export const UPSTREAM_SECRET = 'Bearer upstream-secret';

/**
 * The usual proxy setup: a gateway and server-everything (started together),
 * a recorder in front of the upstream, tenant `acme` with alice and bob,
 * connector `everything` → recorder with the header credential
 * `Authorization: Bearer upstream-secret`, and a gateway token per user.
 * gatewayWrap: a command the gateway runs under (startGateway's wrap).
 * Returns {gw, up, rec, t, connector, url, tokens: {alice, bob}, users: {alice, bob}}.
 */
export async function startProxyFixture({ connector = 'everything', auth, timeouts, gatewayArgs = [], gatewayWrap = [], users = ['alice@acme.com', 'bob@acme.com'] } = {}) {
  const [gw, up] = await Promise.all([startGateway({ args: gatewayArgs, wrap: gatewayWrap }), startEverything()]);
  const rec = await startRecorder(up.url);
  const t = await setupTenant(gw, { users });
  const body = { url: rec.url, description: 'Everything', auth: auth ?? { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET } };
  if (timeouts) body.timeouts = timeouts;
  const r = await t.putConnector(connector, body);
  assert.equal(r.status, 201, `PUT connector ${connector}: expected 201, got ${r.status} ${r.body}`);
  const tokens = {};
  const us = {};
  for (const u of users) {
    const short = u.split('@')[0];
    const m = await t.mintToken(u);
    assert.equal(m.status, 201, `mint token for ${u}: expected 201, got ${m.status} ${m.body}`);
    tokens[short] = m.token;
    us[short] = t.users[u];
  }
  // the PUT's capability probe ends its upstream session with a DELETE
  // (434e61a): over before a test counts what reaches the upstream
  await probesEnded(rec);
  return { gw, up, rec, t, connector, url: t.mcpUrl(connector), tokens, users: us };
}

/** GET /healthz answers 200 (the gateway is up and its loop runs). */
export async function assertGatewayUp(gw) {
  const r = await request(gw.port, { path: '/healthz', timeoutMs: 3000 });
  assert.equal(r.status, 200, `gateway /healthz: ${r.status} ${r.body}`);
}

/**
 * Asserts that an HTTP reply carries a JSON-RPC error (in a JSON body or an
 * SSE event) — for `id` when given — and returns it. opts.codes: allowed codes;
 * opts.message: RegExp the message must match.
 */
export function assertRpcError(res, { id, codes, message, what = 'reply' } = {}) {
  const errs = res.messages.filter((m) => m.error && (id === undefined || m.id === id || m.id === null));
  assert.ok(errs.length > 0, `${what}: expected a JSON-RPC error${id === undefined ? '' : ` for id ${id}`}, ` +
    `got HTTP ${res.status} ${res.headers?.['content-type'] ?? ''} body ${String(res.body).slice(0, 600)}`);
  const e = errs[0].error;
  assert.ok(Number.isInteger(e.code), `${what}: error.code is an integer: ${JSON.stringify(e)}`);
  assert.equal(typeof e.message, 'string', `${what}: error.message is a string: ${JSON.stringify(e)}`);
  if (codes) assert.ok(codes.includes(e.code), `${what}: error code ${e.code} not in ${JSON.stringify(codes)}: ${JSON.stringify(e)}`);
  if (message) assert.match(e.message, message, `${what}: error message: ${JSON.stringify(e)}`);
  assert.ok(!res.messages.some((m) => m.result !== undefined && (id === undefined || m.id === id)),
    `${what}: no result beside the error: ${String(res.body).slice(0, 400)}`);
  return e;
}

/** Short description of a reply for assertion messages. */
export function show(res) {
  return `HTTP ${res.status} ${res.headers?.['content-type'] ?? ''} ${String(res.body ?? '').slice(0, 500)}`;
}

// ---------------------------------------------------------------- Claude Code

/** Path of the real Claude Code binary (native, linux-x64), else the npm wrapper. */
export function claudeBin() {
  const native = path.join(NODE_MODULES, '@anthropic-ai', 'claude-code-linux-x64', 'claude');
  if (fs.existsSync(native)) return { cmd: native, pre: [] };
  const exe = path.join(NODE_MODULES, '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');
  if (fs.existsSync(exe) && fs.statSync(exe).size > 1 << 20) return { cmd: exe, pre: [] };
  return { cmd: process.execPath, pre: [path.join(NODE_MODULES, '@anthropic-ai', 'claude-code', 'cli-wrapper.cjs')] };
}

/** Env for an offline Claude Code run in a throwaway HOME (no telemetry, updates, or API key). */
export function claudeEnv(home) {
  return {
    HOME: home,
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TERM: 'dumb',
    NO_COLOR: '1',
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_BUG_COMMAND: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    CLAUDE_CODE_DISABLE_TERMINAL_TITLE: '1',
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
  };
}

/** Runs a command asynchronously (the event loop keeps serving in-process servers). */
export function runAsync(cmd, args, { env, cwd, timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '', stderr = '', timedOut = false;
    p.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    p.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const t = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(t); children.delete(p); reject(e); });
    p.on('close', (code, signal) => { clearTimeout(t); children.delete(p); resolve({ code, signal, stdout, stderr, timedOut }); });
  });
}

/**
 * `claude mcp add --transport http <name> <url> --header "Authorization: Bearer <token>"`
 * then `claude mcp list`, in a temporary HOME, offline. Resolves
 * {stdout, stderr, code, add: {…}} of the list command (add's result in `add`).
 */
export async function claudeMcpList({ url, token, name = 'acme', timeoutMs = 30000 }) {
  const home = await fsp.mkdtemp(path.join(os.tmpdir(), 'mcpgate-claude-'));
  try {
    const env = claudeEnv(home);
    const { cmd, pre } = claudeBin();
    const addArgs = [...pre, 'mcp', 'add', '--transport', 'http', name, url];
    if (token) addArgs.push('--header', `Authorization: Bearer ${token}`);
    const add = await runAsync(cmd, addArgs, { env, cwd: home, timeoutMs });
    if (add.code !== 0) {
      throw new Error(`claude mcp add failed (code ${add.code}, signal ${add.signal}, timedOut ${add.timedOut})\nstdout: ${add.stdout}\nstderr: ${add.stderr}`);
    }
    const list = await runAsync(cmd, [...pre, 'mcp', 'list'], { env, cwd: home, timeoutMs });
    return { ...list, add };
  } finally {
    await fsp.rm(home, { recursive: true, force: true });
  }
}

/** The status line of server `name` in `claude mcp list` output. */
export function claudeServerLine(stdout, name = 'acme') {
  return stdout.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '';
}

export { sleep, waitFor };
