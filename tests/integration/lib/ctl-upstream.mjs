// tests/integration/lib/ctl-upstream.mjs — a small Streamable HTTP MCP
// server whose timing the test controls, for races the real upstreams
// cannot be made to lose on purpose (revocation arriving between two steps
// of an exchange). It speaks the protocol as the official SDK's servers do
// (sessions, JSON or SSE replies, a standalone GET stream) and records every
// request it receives (its method, request target with query, headers and
// body).
//
//   startCtlUpstream({name, tls: {certPem, keyPem}}) → {url, requests(), rpc(method),
//                               waitRequest(pred), hold(pred) → release(), push(msg),
//                               flood(opts), getStreams(), openGets(), stop()}
//
// capabilities: what initialize announces (default {tools: {listChanged:
// true}}, plus resources when offered).
// resources: n > 0 offers resources <name>://r/0 … r/<n-1> (one page) and
// reads them as "<name>:read <uri>"; resourceUris: the URIs it lists instead
// (any, even another upstream's); templates: uriTemplates it lists.
// Tools: echo {message, times?} → "<name>:echo <message × times>" (JSON reply);
//        slow {ms}      → answered after ms (default 800), JSON reply;
//        ask {}         → SSE reply: first a server→client request
//                         elicitation/create with id "q-<n>", then, once the
//                         client's answer to it arrives (a POST carrying that
//                         id), the result "<name>:asked <answer action>".
//        raw {result, sse?, chunk?, notes?, polling?, stall?, fill?} (not listed in tools/list): the
//                         result as given; sse: as an SSE event, after `notes`
//                         notifications/message events
//                       → the reply's "result" member is the JSON text
//                         `result` exactly as given (spacing, key order,
//                         escapes kept): a JSON body, or with sse one event
//                         whose data lines are its lines; chunk: written in
//                         pieces of that many bytes, a loop turn apart;
//                         polling (with sse): only a priming event "id: poll-N"
//                         and the stream ends; a GET with Last-Event-ID
//                         poll-N gets the result (2025-11-25 polling);
//                         stall: all but the last byte, which
//                         releaseStalls() sends (stalledCount(): held);
//                         fill: n 'x's in place of "@FILL@" in result (a
//                         large reply from a small request); eventId (with
//                         sse): the result's event carries that id.
// requests(): each entry {method, url, headers, json, body, at}; an
// initialize's also has `issued`, the session id its answer gave (once
// answered).
// hold(pred): requests whose parsed JSON-RPC message matches pred are held
// (not answered) until the returned release() is called; holdGets(): GET
// streams get no response head until its release() is called.
// push(msg): sends msg on every open GET stream. endGets = true: GET
// streams end right after their head and a comment (no event).
// openGets(): the request headers of every GET stream still open (which
// credential and session id each was opened with).
// flood({eventBytes, totalBytes, ms}): writes notifications of about
// eventBytes each on every open GET stream, honouring back-pressure (waits
// for 'drain'), until totalBytes were accepted or ms passed; resolves with
// the bytes the gateway accepted.
import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';

const running = new Set();
after(async () => { for (const u of [...running]) await u.stop(); });

export async function startCtlUpstream({ name = 'ctl', tls, resources = 0, resourceUris, templates = [], capabilities: caps } = {}) {
  const log = [];
  const holds = [];
  const getHolds = [];
  const waiters = new Set();
  const streams = new Set();
  const streamHeaders = new Map(); // open GET stream → its request's headers
  const asked = new Map(); // question id → resolve(answer message)
  const pending = new Map(); // polling: priming event id → the result's event, for the GET that resumes
  let polls = 0;
  const stalled = new Set(); // raw {stall}: the ends of replies held one byte short
  let q = 0;

  const matches = (pred, m) => { try { return !!pred(m); } catch { return false; } };

  function result(res, sid, id, r) {
    const b = JSON.stringify({ jsonrpc: '2.0', id, result: r });
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid, 'content-length': Buffer.byteLength(b) });
    res.end(b);
  }

  function answer(req, res, m, entry) {
    const sid = req.headers['mcp-session-id'] || randomUUID();
    if (m === undefined) { res.writeHead(400).end(); return; }
    if (!m.method && m.id !== undefined) {
      // a client's answer to a server→client request
      const w = asked.get(m.id);
      if (w) { asked.delete(m.id); w(m); }
      res.writeHead(202).end();
      return;
    }
    if (m.id === undefined) { res.writeHead(202, { 'mcp-session-id': sid }).end(); return; }
    if (m.method === 'initialize') {
      entry.issued = sid; // the session id this initialize's answer gives
      const capabilities = caps ?? { tools: { listChanged: true } };
      if (resources && !caps) capabilities.resources = {};
      result(res, sid, m.id, { protocolVersion: m.params?.protocolVersion ?? '2025-06-18', capabilities, serverInfo: { name, version: '1.0.0' } });
      return;
    }
    if (m.method === 'resources/list' && resources) {
      const uris = resourceUris ?? Array.from({ length: resources }, (_, i) => `${name}://r/${i}`);
      result(res, sid, m.id, { resources: uris.map((uri, i) => ({ uri, name: `r${i}` })) });
      return;
    }
    if (m.method === 'resources/templates/list' && resources) {
      result(res, sid, m.id, { resourceTemplates: templates.map((uriTemplate, i) => ({ uriTemplate, name: `t${i}` })) });
      return;
    }
    if (m.method === 'resources/read' && resources) {
      result(res, sid, m.id, { contents: [{ uri: m.params?.uri, text: `${name}:read ${m.params?.uri}` }] });
      return;
    }
    if (m.method === 'tools/list') {
      result(res, sid, m.id, { tools: ['echo', 'slow', 'ask'].map((t) => ({ name: t, description: `${name} ${t}`, inputSchema: { type: 'object', properties: {} } })) });
      return;
    }
    if (m.method === 'tools/call') {
      const tool = m.params?.name;
      const args = m.params?.arguments ?? {};
      if (tool === 'echo') { result(res, sid, m.id, { content: [{ type: 'text', text: `${name}:echo ${String(args.message ?? '').repeat(args.times ?? 1)}` }] }); return; }
      if (tool === 'slow') {
        const t = setTimeout(() => result(res, sid, m.id, { content: [{ type: 'text', text: `${name}:slow done` }] }), args.ms ?? 800);
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (tool === 'ask') {
        const qid = `q-${++q}`;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': sid, 'cache-control': 'no-cache' });
        res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: qid, method: 'elicitation/create', params: { message: 'ok?', requestedSchema: { type: 'object', properties: {} } } })}\n\n`);
        asked.set(qid, (a) => {
          res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: `${name}:asked ${a.result?.action ?? 'error'}` }] } })}\n\n`);
          res.end();
        });
        res.on('close', () => asked.delete(qid));
        return;
      }
      if (tool === 'raw') {
        const given = args.fill > 0 ? String(args.result).replace('@FILL@', 'x'.repeat(args.fill)) : String(args.result);
        const body = `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":${given}}`;
        const ev = (b) => `event: message\n${b.split('\n').map((l) => `data: ${l}\n`).join('')}\n`;
        const notes = Array.from({ length: args.sse ? args.notes ?? 0 : 0 }, (_, i) =>
          ev(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `step ${i}` } }))).join('');
        // polling (2025-11-25): a priming event with an id, then the stream
        // ends without the result, which a GET resuming after that id gets
        let text = args.sse ? notes + (args.eventId ? `id: ${args.eventId}\n` : '') + ev(body) : body;
        if (args.sse && args.polling) {
          const eid = `poll-${++polls}`;
          pending.set(eid, `id: ${eid}-r\n${ev(body)}`);
          text = `${notes}id: ${eid}\ndata: \n\n`;
        }
        res.writeHead(200, { 'content-type': args.sse ? 'text/event-stream' : 'application/json', 'mcp-session-id': sid });
        const k = args.chunk > 0 ? args.chunk : text.length;
        const pieces = [];
        for (let i = 0; i < text.length; i += k) pieces.push(text.slice(i, i + k));
        if (args.stall) { // all but its last byte, the rest at releaseStalls()
          const last = pieces.length ? pieces[pieces.length - 1] : '';
          pieces[pieces.length - 1] = last.slice(0, -1);
          stalled.add(() => res.end(last.slice(-1)));
        }
        const next = () => {
          if (!pieces.length) { if (!args.stall) res.end(); return; }
          res.write(pieces.shift());
          setImmediate(next);
        };
        next();
        return;
      }
      result(res, sid, m.id, { content: [{ type: 'text', text: `${name}:unknown tool` }], isError: true });
      return;
    }
    if (m.method === 'ping') { result(res, sid, m.id, {}); return; }
    const b = JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `no method ${m.method}` } });
    res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid, 'content-length': Buffer.byteLength(b) });
    res.end(b);
  }

  const handler = (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      const entry = { method: req.method, url: req.url, headers: req.headers, json, body: text, at: Date.now() };
      log.push(entry);
      for (const w of waiters) if (matches(w.pred, entry)) { waiters.delete(w); w.resolve(entry); }
      if (req.method === 'GET') {
        const open = () => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          res.write(': open\n\n');
          if (u.endGets) { res.end(); return; } /* a stream that ends at once, without an event */
          streams.add(res);
          streamHeaders.set(res, req.headers);
          res.on('close', () => { streams.delete(res); streamHeaders.delete(res); });
        };
        const resumed = pending.get(req.headers['last-event-id']);
        if (resumed) { /* the polled result, then the stream ends */
          pending.delete(req.headers['last-event-id']);
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          res.end(resumed);
          return;
        }
        const g = getHolds.find((x) => !x.released);
        if (g) g.queue.push(open);
        else open();
        return;
      }
      if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
      const go = () => answer(req, res, json, entry);
      const h = holds.find((x) => !x.released && json && matches(x.pred, json));
      if (h) h.queue.push(go);
      else go();
    });
  };
  const server = tls ? https.createServer({ cert: tls.certPem, key: tls.keyPem }, handler) : http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const u = {
    url: `${tls ? 'https://localhost' : 'http://127.0.0.1'}:${server.address().port}/mcp`,
    requests: () => log.slice(),
    /** Recorded POSTs whose JSON-RPC message has `method`. */
    rpc: (method) => log.filter((e) => e.json && e.json.method === method),
    /** Resolves with the first request (recorded or future) matching pred. */
    waitRequest(pred, timeoutMs = 5000) {
      const have = log.find((e) => matches(pred, e));
      if (have) return Promise.resolve(have);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (e) => { clearTimeout(t); resolve(e); } };
        const t = setTimeout(() => { waiters.delete(w); reject(new Error(`${name}: no matching request within ${timeoutMs} ms`)); }, timeoutMs);
        waiters.add(w);
      });
    },
    hold(pred) {
      const h = { pred, queue: [], released: false };
      holds.push(h);
      return () => { h.released = true; for (const go of h.queue.splice(0)) go(); };
    },
    /** GET streams get no response head until the returned release() is called. */
    holdGets() {
      const h = { queue: [], released: false };
      getHolds.push(h);
      return () => { h.released = true; for (const go of h.queue.splice(0)) go(); };
    },
    push(msg) { for (const s of streams) s.write(`event: message\ndata: ${JSON.stringify(msg)}\n\n`); },
    getStreams: () => streams.size,
    openGets: () => [...streams].map((s) => streamHeaders.get(s)),
    stalledCount: () => stalled.size,
    releaseStalls() { for (const end of stalled) end(); stalled.clear(); },
    async flood({ eventBytes = 16384, totalBytes = 64 << 20, ms = 4000 } = {}) {
      const pad = 'x'.repeat(eventBytes);
      let n = 0, sent = 0;
      const end = Date.now() + ms;
      while (sent < totalBytes && Date.now() < end && streams.size) {
        const ev = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: { n: n++, pad } } })}\n\n`;
        let ok = true;
        for (const st of streams) ok = st.write(ev) && ok;
        sent += ev.length;
        if (!ok) {
          const left = end - Date.now();
          if (left <= 0) break;
          await new Promise((r) => {
            const t = setTimeout(r, left);
            for (const st of streams) st.once('drain', () => { clearTimeout(t); r(); });
          });
        }
      }
      return sent;
    },
    async stop() {
      if (!running.delete(u)) return;
      for (const s of streams) s.destroy();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
  running.add(u);
  return u;
}
