// tests/integration/lib/anthropic-mock.mjs — a stand-in for the Anthropic
// Messages API, enough for the real Claude Code CLI (`claude -p`) to run
// offline against it (ANTHROPIC_BASE_URL=<mock.url>, ANTHROPIC_API_KEY=test).
//
//   startAnthropicMock({ toolUse, onRequest })
//     → { url, port, requests(), messages(), toolResults(), clear(), close() }
//
// What it speaks (as the real API does, https://docs.anthropic.com/en/api):
//   POST /v1/messages            {"stream": true}: text/event-stream with the
//                                events message_start, content_block_start,
//                                content_block_delta (text_delta /
//                                input_json_delta), content_block_stop,
//                                message_delta (stop_reason, usage),
//                                message_stop (and a ping after message_start);
//                                without "stream": one JSON message.
//   POST /v1/messages/count_tokens  {"input_tokens": N} (a rough estimate).
//   GET  /v1/models[/{id}]       a one-model list / the model.
//   anything else                404 {"type":"error","error":{"type":"not_found_error",…}}
//   a body that is not JSON      400 invalid_request_error
// Every request is logged ({method, path, query, headers, body, json, at,
// answer}) so a test can assert what Claude Code sent. Claude Code 2.1.197
// in -p mode sends a HEAD / (a reachability probe; any answer will do) and
// then POST /v1/messages?beta=true, "stream": true, with x-api-key and its
// anthropic-beta list; the MCP tools it offers are named mcp__<server>__<tool>.
//
// Scripted answers to /v1/messages (what a model would do with a tool):
//   1. the messages since the model's last turn hold a tool_result → text that quotes the
//      tool_result's text: "The tool said: <text>" (an error result too:
//      "The tool failed: <text>");
//   2. else the request's tools include one whose name matches toolUse.match
//      (a name, a RegExp or a function of the name) → a tool_use of it with
//      toolUse.input (stop_reason "tool_use");
//   3. else → a short text "OK" (Claude Code's side requests: titles, topic
//      checks, quota probes have no such tool).
// onRequest(entry) may return {content, stop_reason} to answer otherwise.
import http from 'node:http';
import { randomBytes } from 'node:crypto';

const MODEL = 'claude-mock-1';

const newId = (prefix) => `${prefix}_${randomBytes(12).toString('hex')}`;

/** Text of a tool_result block's content (a string or an array of blocks). */
export function toolResultText(block) {
  const c = block?.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.filter((x) => x?.type === 'text').map((x) => x.text).join('\n');
  return '';
}

/** The tool_result blocks sent since the model's last turn (what it is to answer now). */
function lastUserToolResults(body) {
  const msgs = body?.messages ?? [];
  let i = msgs.length;
  while (i > 0 && msgs[i - 1]?.role !== 'assistant') i--;
  return msgs.slice(i).flatMap((m) => (m.role === 'user' && Array.isArray(m.content) ? m.content : []))
    .filter((b) => b?.type === 'tool_result');
}

function roughTokens(v) {
  return Math.max(1, Math.ceil(JSON.stringify(v ?? '').length / 4));
}

function apiError(res, status, type, message) {
  const body = JSON.stringify({ type: 'error', error: { type, message }, request_id: newId('req') });
  res.writeHead(status, { 'Content-Type': 'application/json', 'request-id': newId('req'), 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'request-id': newId('req'), 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** The scripted answer: {content: [blocks], stop_reason}. */
function script(body, toolUse) {
  const results = lastUserToolResults(body);
  if (results.length) {
    const r = results[results.length - 1];
    const text = toolResultText(r);
    return { content: [{ type: 'text', text: `${r.is_error ? 'The tool failed' : 'The tool said'}: ${text}` }], stop_reason: 'end_turn' };
  }
  const match = toolUse?.match;
  const isIt = typeof match === 'function' ? match : (n) => (match instanceof RegExp ? match.test(n) : n === match);
  const tool = match ? (body?.tools ?? []).find((t) => typeof t?.name === 'string' && isIt(t.name)) : undefined;
  if (tool) {
    return {
      content: [
        { type: 'text', text: `I will call ${tool.name}.` },
        { type: 'tool_use', id: newId('toolu'), name: tool.name, input: toolUse.input ?? {} },
      ],
      stop_reason: 'tool_use',
    };
  }
  return { content: [{ type: 'text', text: 'OK' }], stop_reason: 'end_turn' };
}

function messageObject(body, answer) {
  return {
    id: newId('msg'),
    type: 'message',
    role: 'assistant',
    model: body?.model ?? MODEL,
    content: answer.content,
    stop_reason: answer.stop_reason,
    stop_sequence: null,
    usage: {
      input_tokens: roughTokens(body?.messages),
      output_tokens: roughTokens(answer.content),
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    },
  };
}

/** Writes the message as the API's SSE stream. */
function streamMessage(res, msg) {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    'request-id': newId('req'),
  });
  const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  ev('message_start', {
    message: { ...msg, content: [], stop_reason: null, stop_sequence: null, usage: { ...msg.usage, output_tokens: 1 } },
  });
  ev('ping', {});
  msg.content.forEach((b, index) => {
    if (b.type === 'text') {
      ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
      // two deltas, as the API splits text
      const cut = Math.ceil(b.text.length / 2);
      for (const part of [b.text.slice(0, cut), b.text.slice(cut)]) {
        if (part) ev('content_block_delta', { index, delta: { type: 'text_delta', text: part } });
      }
    } else if (b.type === 'tool_use') {
      ev('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      const json = JSON.stringify(b.input);
      const cut = Math.ceil(json.length / 2);
      ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: '' } });
      for (const part of [json.slice(0, cut), json.slice(cut)]) {
        if (part) ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: part } });
      }
    }
    ev('content_block_stop', { index });
  });
  ev('message_delta', {
    delta: { stop_reason: msg.stop_reason, stop_sequence: null },
    usage: { output_tokens: msg.usage.output_tokens },
  });
  ev('message_stop', {});
  res.end();
}

/**
 * Starts the mock on 127.0.0.1 (ephemeral port).
 * toolUse: {match: RegExp|string|fn(name), input: {...}} — see the header.
 */
export async function startAnthropicMock({ toolUse, onRequest } = {}) {
  const log = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = body ? JSON.parse(body) : undefined; } catch { json = undefined; }
      const url = new URL(req.url, 'http://x');
      const entry = { method: req.method, path: url.pathname, query: url.search, headers: req.headers, body, json, at: Date.now() };
      log.push(entry);
      if (body && json === undefined) return apiError(res, 400, 'invalid_request_error', 'request body is not valid JSON');
      const p = url.pathname;
      if (req.method === 'POST' && p === '/v1/messages') {
        if (!json || !Array.isArray(json.messages)) return apiError(res, 400, 'invalid_request_error', 'messages: Field required');
        const answer = onRequest?.(entry) ?? script(json, toolUse);
        const msg = messageObject(json, answer);
        entry.answer = msg;
        if (json.stream) return streamMessage(res, msg);
        return sendJson(res, 200, msg);
      }
      if (req.method === 'POST' && p === '/v1/messages/count_tokens') {
        return sendJson(res, 200, { input_tokens: roughTokens([json?.system, json?.messages, json?.tools]) });
      }
      if (req.method === 'GET' && p === '/v1/models') {
        return sendJson(res, 200, {
          data: [{ type: 'model', id: MODEL, display_name: 'Mock', created_at: '2026-01-01T00:00:00Z' }],
          has_more: false, first_id: MODEL, last_id: MODEL,
        });
      }
      if (req.method === 'GET' && p.startsWith('/v1/models/')) {
        return sendJson(res, 200, { type: 'model', id: decodeURIComponent(p.slice('/v1/models/'.length)), display_name: 'Mock', created_at: '2026-01-01T00:00:00Z' });
      }
      return apiError(res, 404, 'not_found_error', `Not found: ${req.method} ${p}`);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Every request, in order. */
    requests: () => log.slice(),
    /** The POST /v1/messages requests. */
    messages: () => log.filter((e) => e.method === 'POST' && e.path === '/v1/messages'),
    /** Every tool_result block Claude Code sent (with its text), in order. */
    toolResults: () => log.filter((e) => e.method === 'POST' && e.path === '/v1/messages')
      .flatMap((e) => lastUserToolResults(e.json).map((b) => ({ ...b, text: toolResultText(b) }))),
    clear: () => { log.length = 0; },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
