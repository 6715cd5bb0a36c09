// tests/integration/lib/faulty-upstream.mjs — a misbehaving Streamable HTTP
// MCP upstream for fault-injection tests (upstream-faults.test.mjs).
//
// One node http server on 127.0.0.1 (port 0); the mode is the first path
// segment: <url>/<mode>/mcp. Every mode but `deny` speaks enough MCP to be
// a connector — initialize (session id, capabilities with tools.listChanged
// so the aggregated endpoint opens a GET feed), notifications (202),
// tools/list (tools `echo` and `fault`), ping — and answers tools/call
// `echo` {message} with "<mode>:echo <message>" as JSON. Only tools/call
// `fault` (or, for getclose, the GET stream) misbehaves:
//
//   good      answers `fault` like echo (the healthy control)
//   hang      accepts the request and never sends a status line
//   reset     200 text/event-stream, half an event, then a TCP reset
//   trickle   200 text/event-stream, then the answer one byte per second
//   big       200 application/json with a BIG_BYTES (50 MB) body, written
//             with back-pressure (a valid JSON-RPC result)
//   badjson   200 application/json whose body is not JSON
//   badsse    200 text/event-stream: one event whose data is not JSON, then
//             the end (no reply)
//   surrogate tools/list is answered over SSE, listing a third tool `hidden`,
//             in JSON that JavaScript's JSON.parse takes but a strict parser
//             refuses (a lone surrogate escape, "\ud800"); `fault` is echo
//   noterm    200 text/event-stream, one complete-looking event without its
//             blank-line terminator, then a clean end of the response
//   getclose  GET is answered 200 text/event-stream and ended at once
//             (every GET is counted: gets('getclose'))
//   steady    200 text/event-stream: STEADY_EVENTS log notifications of ~100 KB
//             each, then the answer, written 48 KB every 50 ms — every read
//             ends inside an event, yet one ends about every 100 ms (a
//             healthy stream whose reads never line up with its events)
//   bloat     200 application/json: a valid reply of BLOAT_BYTES (4 MB) in a
//             one-element array, whose "pad" member holds ~1.3 million empty
//             objects and whose text says "tools" (so no scan vouches for it:
//             it is parsed) — ~300 MB of jansson tree for 4 MB of text
//   deny      every request: 401 with the upstream's own WWW-Authenticate
//             (resource_metadata pointing at this server) and a JSON body
//
// startFaultyUpstream() → {base, port, url(mode), requests(mode?), gets(mode),
//   calls(mode), bytesSent(mode), closedPortUrl(), stop()}. Stopped by a
// root `after` hook of the test file as well.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { refusedPort } from './gateway.mjs';

export const BIG_BYTES = 50 * 1024 * 1024;
export const FAULT_MODES = ['good', 'hang', 'reset', 'trickle', 'big', 'badjson', 'badsse', 'noterm', 'getclose', 'deny', 'surrogate', 'steady', 'bloat'];
export const STEADY_EVENTS = 24;
export const BLOAT_BYTES = 4 * 1024 * 1024;

const running = new Set();
after(async () => { for (const u of [...running]) await u.stop(); });

function rpcResult(id, r) { return JSON.stringify({ jsonrpc: '2.0', id, result: r }); }

function sendJson(res, sid, text, status = 200) {
  const h = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
  if (sid) h['mcp-session-id'] = sid;
  res.writeHead(status, h);
  res.end(text);
}

function sseHead(res, sid) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'mcp-session-id': sid });
  res.flushHeaders();
}

/** Writes `total` bytes made of head + padding + tail, honouring back-pressure; resolves the bytes written. */
async function writeBig(res, head, tail, total) {
  const chunk = Buffer.alloc(256 * 1024, 'x');
  let left = total - head.length - tail.length;
  let sent = 0;
  const w = (b) => new Promise((resolve) => {
    if (res.destroyed) return resolve(false);
    sent += b.length;
    if (res.write(b)) return resolve(true);
    const done = () => { res.off('drain', done); res.off('close', done); resolve(!res.destroyed); };
    res.on('drain', done);
    res.on('close', done);
  });
  if (!await w(Buffer.from(head))) return sent;
  while (left > 0) {
    const b = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= b.length;
    if (!await w(b)) return sent;
  }
  await w(Buffer.from(tail));
  res.end();
  return sent;
}

export async function startFaultyUpstream() {
  const log = [];              // {mode, method (HTTP), rpc (JSON-RPC method), at}
  const sockets = new Set();
  const timers = new Set();
  const sent = {};             // mode → body bytes written for `fault`
  let port;

  function fault(mode, req, res, sid, m) {
    const answer = rpcResult(m.id, { content: [{ type: 'text', text: `${mode}:fault answered` }] });
    switch (mode) {
      case 'hang':
        return; // never answered; the socket is cut by stop() or by the gateway
      case 'reset': {
        sseHead(res, sid);
        res.write(`event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[`);
        const t = setTimeout(() => { timers.delete(t); req.socket.resetAndDestroy(); }, 50);
        timers.add(t);
        return;
      }
      case 'trickle': {
        sseHead(res, sid);
        const bytes = Buffer.from(`event: message\ndata: ${answer}\n\n`);
        let i = 0;
        const t = setInterval(() => {
          if (res.destroyed || i >= bytes.length) { clearInterval(t); timers.delete(t); if (!res.destroyed) res.end(); return; }
          res.write(bytes.subarray(i, i + 1));
          i++;
        }, 1000);
        timers.add(t);
        res.on('close', () => { clearInterval(t); timers.delete(t); });
        return;
      }
      case 'big': {
        const head = `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text","text":"`;
        const tail = '"}]}}';
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': BIG_BYTES, 'mcp-session-id': sid });
        writeBig(res, head, tail, BIG_BYTES).then((n) => { sent[mode] = n; });
        return;
      }
      case 'steady': {
        sseHead(res, sid);
        const pad = 'x'.repeat(100 * 1024);
        const events = [];
        for (let i = 0; i < STEADY_EVENTS; i++)
          events.push(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"${i}:${pad}"}}\n\n`);
        events.push(`event: message\ndata: ${answer}\n\n`);
        const bytes = Buffer.from(events.join(''));
        let at = 0;
        const t = setInterval(() => {
          if (res.destroyed || at >= bytes.length) { clearInterval(t); timers.delete(t); if (!res.destroyed) res.end(); return; }
          res.write(bytes.subarray(at, at + 48 * 1024));
          at += 48 * 1024;
        }, 50);
        timers.add(t);
        res.on('close', () => { clearInterval(t); timers.delete(t); });
        return;
      }
      case 'bloat': {
        const head = `[{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text","text":"tools"}],"pad":[`;
        const tail = '{}]}}]';
        const n = Math.floor((BLOAT_BYTES - head.length - tail.length) / 3);
        sendJson(res, sid, head + '{},'.repeat(n) + tail);
        return;
      }
      case 'badjson':
        sendJson(res, sid, `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text","text":"oops"}`);
        return;
      case 'badsse':
        sseHead(res, sid);
        res.end(`event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"content":[{"type":"text"\n\n`);
        return;
      case 'noterm':
        sseHead(res, sid);
        res.end(`event: message\ndata: ${answer}\n`);
        return;
      default:
        sendJson(res, sid, answer);
    }
  }

  function post(mode, req, res, m) {
    const sid = req.headers['mcp-session-id'] || randomUUID();
    if (m === undefined || Array.isArray(m)) { res.writeHead(400).end(); return; }
    if (m.id === undefined || m.id === null) { res.writeHead(202).end(); return; }
    if (!m.method) { res.writeHead(202).end(); return; } // a client's answer
    switch (m.method) {
      case 'initialize':
        sendJson(res, sid, rpcResult(m.id, {
          protocolVersion: m.params?.protocolVersion ?? '2025-06-18',
          capabilities: { tools: { listChanged: true } },
          serverInfo: { name: `faulty-${mode}`, version: '1.0.0' },
        }));
        return;
      case 'tools/list':
        if (mode === 'surrogate') {
          sseHead(res, sid);
          const tools = ['echo', 'fault', 'hidden'].map((name) => `{"name":"${name}","description":"${name} \\ud800","inputSchema":{"type":"object"}}`);
          res.end(`event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":{"tools":[${tools.join(',')}]}}\n\n`);
          return;
        }
        sendJson(res, sid, rpcResult(m.id, { tools: ['echo', 'fault'].map((name) => ({ name, description: `${mode} ${name}`, inputSchema: { type: 'object', properties: {} } })) }));
        return;
      case 'ping':
        sendJson(res, sid, rpcResult(m.id, {}));
        return;
      case 'tools/call':
        if (m.params?.name === 'fault') { fault(mode, req, res, sid, m); return; }
        sendJson(res, sid, rpcResult(m.id, { content: [{ type: 'text', text: `${mode}:echo ${m.params?.arguments?.message ?? ''}` }] }));
        return;
      default:
        sendJson(res, sid, JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `no method ${m.method}` } }));
    }
  }

  const server = http.createServer((req, res) => {
    const mode = /^\/([a-z]+)\/mcp(?:\?|$)/.exec(req.url)?.[1] ?? 'unknown';
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => {});
    res.on('error', () => {});
    req.on('end', () => {
      let m;
      try { m = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { m = undefined; }
      log.push({ mode, method: req.method, rpc: m?.method, tool: m?.params?.name, at: Date.now() });
      if (!FAULT_MODES.includes(mode)) { res.writeHead(404).end(); return; }
      if (mode === 'deny') {
        const b = JSON.stringify({ error: 'invalid_token', error_description: 'upstream says no' });
        res.writeHead(401, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(b),
          'www-authenticate': `Bearer realm="faulty-upstream", error="invalid_token", resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/deny/mcp"`,
        });
        res.end(b);
        return;
      }
      if (req.method === 'GET') {
        if (!/text\/event-stream/.test(req.headers.accept ?? '')) { res.writeHead(406).end(); return; }
        sseHead(res, req.headers['mcp-session-id'] || randomUUID());
        if (mode === 'getclose') { res.end(); return; }
        res.write(': open\n\n'); // held open until the gateway or stop() ends it
        return;
      }
      if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
      if (req.method !== 'POST') { res.writeHead(405).end(); return; }
      post(mode, req, res, m);
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); });
  server.on('clientError', (err, s) => s.destroy());
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  port = server.address().port;

  const u = {
    port,
    base: `http://127.0.0.1:${port}`,
    url: (mode) => `http://127.0.0.1:${port}/${mode}/mcp`,
    /** Requests received, optionally only those of one mode. */
    requests: (mode) => log.filter((e) => mode === undefined || e.mode === mode),
    /** GET stream opens of a mode. */
    gets: (mode) => log.filter((e) => e.mode === mode && e.method === 'GET').length,
    /** tools/call `fault` requests of a mode. */
    calls: (mode) => log.filter((e) => e.mode === mode && e.rpc === 'tools/call' && e.tool === 'fault').length,
    /** Body bytes the big mode got written before the gateway stopped reading (undefined while writing). */
    bytesSent: (mode) => sent[mode],
    /** A loopback URL on a port nothing listens on (connections refused). */
    async closedPortUrl() {
      return `http://127.0.0.1:${await refusedPort()}/mcp`;
    },
    async stop() {
      if (!running.delete(u)) return;
      for (const t of timers) { clearTimeout(t); clearInterval(t); }
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
  running.add(u);
  return u;
}
