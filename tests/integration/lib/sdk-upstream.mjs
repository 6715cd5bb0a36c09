// tests/integration/lib/sdk-upstream.mjs — a second kind of upstream: the
// official SDK's server (@modelcontextprotocol/sdk 1.32.2, McpServer +
// StreamableHTTPServerTransport, stateful) on node http, 127.0.0.1:0, in
// this process.
//
//   startSdkUpstream(opts)  → {url, port, sessions(), gets(), events(),
//                               touch(uri), broadcast(kind, params),
//                               waitGetStream(pred), stop()}
//
// What one session (one McpServer + transport per initialize) offers — every
// text says "docs:" so a test can tell which upstream answered:
//   tools     lookup {term}        → text "docs:lookup <term>" + a resource_link
//                                    to memo://lookup/<term> (served by a template
//                                    that no resources/list shows)
//             poll-result {delayMs?} → closes its POST stream right after the
//                                    priming event (extra.closeSSEStream: SSE
//                                    polling, 2025-11-25 clients) and answers
//                                    "docs:poll-result …" after delayMs (default
//                                    300), to be fetched by a GET with Last-Event-ID
//             notify-me {kind, uri?, count?, delayMs?} → after delayMs (default
//                                    50), `count` (default 1) notifications on
//                                    the session's GET stream (not on the call's
//                                    stream): kind "tools" → notifications/
//                                    tools/list_changed, "resource" →
//                                    notifications/resources/updated {uri},
//                                    "prompts" → prompts/list_changed
//   prompts   greeting             (no arguments) → "docs:greeting"
//             summarize {topic (completable: intro, install, faq, …), style?}
//                                  → "docs:summarize topic=<topic> style=<style>"
//             prompts/list answers `promptPageSize` per page (default 1), so
//             an upstream cursor has to be carried through the gateway's
//   resources docs://handbook/intro, docs://handbook/install (static, listed);
//             template docs://handbook/{page} (page completable; not listed);
//             template memo://lookup/{term} (not listed);
//             reads answer text "docs:handbook <page>" / "docs:memo <term>"
//   subscriptions: resources/subscribe|unsubscribe kept per session; touch(uri)
//             sends notifications/resources/updated to each subscribed session
//   capabilities: tools/prompts/resources (subscribe, listChanged), completions,
//             logging
//   GET stream: SSE with event ids from a per-session event store that
//             replays after Last-Event-ID (the SDK's examples InMemoryEventStore
//             cannot: its ids start with the stream id "_GET_stream", and its
//             getStreamIdFromEventId splits at "_", so the GET stream's id is
//             "" and nothing is replayed — see the header of agg2-stream).
//   Unknown Mcp-Session-Id → 404 (spec); none on a non-initialize → 400.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { z } from 'zod';

import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import {
  isInitializeRequest, SubscribeRequestSchema, UnsubscribeRequestSchema, ListPromptsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

// stopped at the end of the file (a module-level hook: an `after` registered
// inside a `before` would run as soon as that hook ends)
const running = new Set();
after(async () => {
  for (const up of [...running]) await up.stop();
});

export const DOCS_PAGES = ['intro', 'install', 'faq', 'internals', 'upgrade'];
export const DOCS_TOPICS = ['intro', 'install', 'faq', 'federation', 'firewall'];

/**
 * An EventStore (SDK interface) for one session: ids "e<n>-<rand>", replay
 * of the events of the same stream after a given id, in order. Every stored
 * event is also reported to onStore(streamId, id, message).
 */
export class ReplayEventStore {
  constructor(onStore) {
    this.list = [];          // {id, streamId, message}
    this.n = 0;
    this.onStore = onStore;
  }
  async storeEvent(streamId, message) {
    const id = `e${++this.n}-${Math.random().toString(36).slice(2, 8)}`;
    this.list.push({ id, streamId, message });
    this.onStore?.(streamId, id, message);
    return id;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const i = this.list.findIndex((e) => e.id === lastEventId);
    if (i < 0) return '';
    const { streamId } = this.list[i];
    for (const e of this.list.slice(i + 1)) {
      if (e.streamId === streamId && e.message && Object.keys(e.message).length) await send(e.id, e.message);
    }
    return streamId;
  }
}

function buildServer(sess, { promptPageSize }) {
  const mcp = new McpServer({ name: 'docs-upstream', version: '1.0.0' }, {
    capabilities: {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      completions: {},
      logging: {},
    },
  });
  const server = mcp.server;

  mcp.registerTool('lookup', {
    description: 'Looks a term up in the handbook',
    inputSchema: { term: z.string() },
  }, async ({ term }) => ({
    content: [
      { type: 'text', text: `docs:lookup ${term}` },
      { type: 'resource_link', uri: `memo://lookup/${encodeURIComponent(term)}`, name: `memo-${term}`, mimeType: 'text/plain', description: 'the memo about the term' },
    ],
  }));

  mcp.registerTool('notify-me', {
    description: 'Sends notifications on the session\'s GET stream',
    inputSchema: {
      kind: z.enum(['tools', 'resource', 'prompts']),
      uri: z.string().optional(),
      count: z.number().int().min(1).max(50).optional(),
      delayMs: z.number().int().min(0).max(10000).optional(),
    },
  }, async ({ kind, uri, count = 1, delayMs = 50 }) => {
    setTimeout(async () => {
      for (let i = 0; i < count; i++) {
        try { await sendKind(server, kind, { uri: uri ?? 'docs://handbook/intro' }); } catch { /* session gone */ }
      }
    }, delayMs);
    return { content: [{ type: 'text', text: `docs:notify-me ${kind} x${count}` }] };
  });

  mcp.registerTool('poll-result', {
    description: 'Closes its own SSE stream at once (SSE polling, 2025-11-25) and answers after delayMs',
    inputSchema: { delayMs: z.number().int().min(0).max(10000).optional() },
  }, async ({ delayMs = 300 }, extra) => {
    const closed = typeof extra.closeSSEStream === 'function';
    extra.closeSSEStream?.();
    await new Promise((r) => setTimeout(r, delayMs));
    return { content: [{ type: 'text', text: `docs:poll-result (stream closed early: ${closed})` }] };
  });

  mcp.registerPrompt('greeting', { title: 'Greeting', description: 'A prompt without arguments' },
    () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'docs:greeting' } }] }));

  mcp.registerPrompt('summarize', {
    title: 'Summarize',
    description: 'Summarizes a handbook topic',
    argsSchema: {
      topic: completable(z.string().describe('Handbook topic'), (value) => DOCS_TOPICS.filter((t) => t.startsWith(value ?? ''))),
      style: z.string().optional().describe('Writing style'),
    },
  }, ({ topic, style }) => ({
    description: `summary of ${topic}`,
    messages: [{ role: 'user', content: { type: 'text', text: `docs:summarize topic=${topic} style=${style ?? '(none)'}` } }],
  }));

  for (const page of ['intro', 'install']) {
    mcp.registerResource(`handbook-${page}`, `docs://handbook/${page}`, { mimeType: 'text/plain', description: `Handbook: ${page}` },
      async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: `docs:handbook ${page}` }] }));
  }
  mcp.registerResource('handbook-page', new ResourceTemplate('docs://handbook/{page}', {
    list: undefined,
    complete: { page: (value) => DOCS_PAGES.filter((p) => p.startsWith(value ?? '')) },
  }), { mimeType: 'text/plain', description: 'Any handbook page' },
  async (uri, { page }) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: `docs:handbook ${page}` }] }));
  mcp.registerResource('lookup-memo', new ResourceTemplate('memo://lookup/{term}', { list: undefined }),
    { mimeType: 'text/plain', description: 'The memo of a lookup' },
    async (uri, { term }) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: `docs:memo ${decodeURIComponent(term)}` }] }));

  server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    sess.subscriptions.add(req.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    sess.subscriptions.delete(req.params.uri);
    return {};
  });

  // prompts/list paginated: McpServer's own handler gives the whole list
  if (promptPageSize) {
    const orig = server._requestHandlers.get('prompts/list');
    server.removeRequestHandler('prompts/list');
    server.setRequestHandler(ListPromptsRequestSchema, async (req, extra) => {
      const all = (await orig({ ...req, params: {} }, extra)).prompts;
      const start = req.params?.cursor === undefined ? 0 : Number(Buffer.from(req.params.cursor, 'base64url').toString());
      if (!Number.isInteger(start) || start < 0 || start > all.length) throw Object.assign(new Error('bad cursor'), { code: -32602 });
      const end = start + promptPageSize;
      return { prompts: all.slice(start, end), ...(end < all.length ? { nextCursor: Buffer.from(String(end)).toString('base64url') } : {}) };
    });
  }
  return mcp;
}

async function sendKind(server, kind, { uri }) {
  if (kind === 'tools') await server.sendToolListChanged();
  else if (kind === 'prompts') await server.sendPromptListChanged();
  else await server.sendResourceUpdated({ uri });
}

/**
 * Starts the SDK upstream. opts.promptPageSize (default 1; 0 = no paging).
 * Returns:
 *   url                    http://127.0.0.1:PORT/mcp
 *   sessions()             [{sid, subscriptions: Set, getOpen (number), closed,
 *                           transport, mcp}] (transport.closeStandaloneSSEStream()
 *                           ends the session's GET stream)
 *   gets()                 every GET /mcp: {sid, lastEventId, status, open, at}
 *   events()               every event stored for a GET stream: {sid, id, message}
 *   touch(uri)             notifications/resources/updated to subscribed sessions
 *                          (resolves the number of sessions notified)
 *   broadcast(kind, p)     kind as notify-me, to every live session
 *   waitGetStream(pred, ms) resolves the session once pred(session) and it has an
 *                          open GET stream
 *   stop()
 */
export async function startSdkUpstream({ promptPageSize = 1 } = {}) {
  const sessions = new Map(); // sid → {sid, transport, mcp, subscriptions, getOpen}
  const gets = [];
  const events = [];
  const sockets = new Set();

  async function readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return undefined;
    try { return JSON.parse(text); } catch { return null; }
  }

  function jsonError(res, status, code, message) {
    const b = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
  }

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (url.pathname !== '/mcp') return jsonError(res, 404, -32000, 'not found');
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      if (body === null) return jsonError(res, 400, -32700, 'Parse error');
      const sid = req.headers['mcp-session-id'];
      let s = sid ? sessions.get(sid) : undefined;
      if (sid && (!s || s.closed)) return jsonError(res, 404, -32001, 'Session not found');
      if (!s) {
        if (req.method !== 'POST' || !isInitializeRequest(body)) return jsonError(res, 400, -32000, 'Bad Request: No valid session ID provided');
        const sess = { sid: undefined, subscriptions: new Set(), getOpen: 0, closed: false };
        const store = new ReplayEventStore((streamId, id, message) => {
          if (streamId === '_GET_stream') events.push({ sid: sess.sid, id, message });
        });
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: store,
          onsessioninitialized: (id) => { sess.sid = id; sessions.set(id, sess); },
        });
        transport.onclose = () => { sess.closed = true; };
        sess.transport = transport;
        sess.store = store;
        sess.mcp = buildServer(sess, { promptPageSize });
        await sess.mcp.connect(transport);
        s = sess;
      }
      if (req.method === 'GET') {
        const g = { sid: s.sid, lastEventId: req.headers['last-event-id'], status: undefined, open: true, at: Date.now() };
        gets.push(g);
        const ow = res.writeHead;
        res.writeHead = function (status, ...rest) { g.status = status; if (status === 200) s.getOpen++; return ow.call(this, status, ...rest); };
        res.on('close', () => { g.open = false; if (g.status === 200) s.getOpen--; });
      }
      await s.transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) jsonError(res, 500, -32603, String(e?.message ?? e));
      else res.destroy();
    }
  });
  server.on('connection', (sock) => { sockets.add(sock); sock.on('close', () => sockets.delete(sock)); });
  await new Promise((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', () => { server.off('error', j); r(); }); });
  const port = server.address().port;

  let stopped = false;
  const up = {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    sessions: () => [...sessions.values()],
    gets: () => gets.slice(),
    events: () => events.slice(),
    async touch(uri) {
      let n = 0;
      for (const s of sessions.values()) {
        if (s.closed || !s.subscriptions.has(uri)) continue;
        await s.mcp.server.sendResourceUpdated({ uri });
        n++;
      }
      return n;
    },
    async broadcast(kind, params = {}) {
      for (const s of sessions.values()) if (!s.closed) await sendKind(s.mcp.server, kind, params);
    },
    async waitGetStream(pred = () => true, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const s = [...sessions.values()].find((x) => !x.closed && x.getOpen > 0 && pred(x));
        if (s) return s;
        if (Date.now() > end) {
          throw new Error(`sdk upstream: no session with an open GET stream matching within ${timeoutMs} ms; ` +
            `sessions ${JSON.stringify([...sessions.values()].map((x) => ({ sid: x.sid, getOpen: x.getOpen, subs: [...x.subscriptions] })))}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      running.delete(up);
      for (const s of sessions.values()) { try { await s.transport.close(); } catch { /* gone */ } }
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
  running.add(up);
  return up;
}
