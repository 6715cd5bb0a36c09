// tests/integration/lib/sink.mjs — a SIEM stand-in for the audit sink tests:
// a plain node http server on 127.0.0.1 (random port) that keeps every
// request it gets (method, path, headers, raw body, the status it answered,
// arrival order) and counts TCP connections, so a test can also say that a
// refused sink never even connected.
//
//   const rx = await startSinkReceiver({ fail: 2 });   // 503 to the first 2 POSTs, then 200
//   rx.url            'http://127.0.0.1:PORT/ingest'
//   rx.posts          every POST, in arrival order: {n, at, method, path, headers, body, status, ok}
//   rx.accepted()     the POSTs answered 2xx
//   rx.failed()       the POSTs answered otherwise
//   rx.connections    TCP connections accepted so far
//   rx.requests       every request of any method (posts is the POST subset)
//   rx.close()
//
// endless: a 2xx answer whose body never ends (the gateway must cut it and
// count the 2xx). status(n, req) may replace `fail`: it returns the status for the n-th POST
// (0-based). Bodies are read whole (cap 64 MiB) before answering.
import http from 'node:http';

export async function startSinkReceiver({ fail = 0, failStatus = 503, status, path: p = '/ingest', endless = false } = {}) {
  const rx = { posts: [], requests: [], connections: 0 };
  const decide = status ?? ((n) => (n < fail ? failStatus : 200));
  const sockets = new Set();
  const srv = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 64 * 1024 * 1024) { req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const entry = { at: Date.now(), method: req.method, path: req.url, headers: req.headers, body };
      rx.requests.push(entry);
      let code = 405;
      if (req.method === 'POST') {
        entry.n = rx.posts.length;
        code = decide(entry.n, entry);
        rx.posts.push(entry);
      }
      entry.status = code;
      entry.ok = code >= 200 && code < 300;
      if (endless && entry.ok) { // a 2xx whose body never ends: 16 KiB every 20 ms until the client hangs up
        res.writeHead(code, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(16384, 0x20);
        const t = setInterval(() => res.write(chunk), 20);
        res.on('close', () => clearInterval(t));
        return;
      }
      const reply = entry.ok ? '{"text":"Success","code":0}' : '{"text":"Server is busy","code":9}';
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(reply) });
      res.end(reply);
    });
    req.on('error', () => {});
  });
  srv.on('connection', (s) => {
    rx.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { srv.off('error', reject); resolve(); });
  });
  rx.port = srv.address().port;
  rx.url = `http://127.0.0.1:${rx.port}${p}`;
  rx.accepted = () => rx.posts.filter((x) => x.ok);
  rx.failed = () => rx.posts.filter((x) => !x.ok);
  rx.close = () => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    srv.close(() => resolve());
  });
  return rx;
}

/**
 * The lines of an NDJSON (or newline-separated) body, each parsed. With
 * `strict` (the default) the body must be non-empty and end with "\n", and
 * every line must be a JSON object; throws otherwise, naming the line.
 */
export function ndjsonLines(body, { strict = true } = {}) {
  if (strict) {
    if (body.length === 0) throw new Error('empty body');
    if (!body.endsWith('\n')) throw new Error(`body does not end with "\\n": …${JSON.stringify(body.slice(-80))}`);
  }
  const text = body.endsWith('\n') ? body.slice(0, -1) : body;
  return text.split('\n').map((line, i) => {
    let v;
    try { v = JSON.parse(line); } catch (e) { throw new Error(`line ${i + 1} is not JSON (${e.message}): ${JSON.stringify(line.slice(0, 200))}`); }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`line ${i + 1} is not a JSON object: ${line.slice(0, 200)}`);
    return v;
  });
}

/** The chain of an audit record id "<uid>-<seq>" (the uid of the tenant incarnation). */
export function chainOf(id) {
  const i = String(id).lastIndexOf('-');
  if (i <= 0) throw new Error(`not an audit record id: ${JSON.stringify(id)}`);
  return id.slice(0, i);
}

/**
 * The raw text of the value of the top-level member `key` of one JSON object
 * text, when that value is a number (a Splunk HEC envelope's "time", whose
 * event holds a "time" of its own); undefined when absent or not a number.
 */
export function topLevelNumberText(text, key) {
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const s = text.slice(i, j + 1);
      i = j + 1;
      if (depth === 1) {
        let k = i;
        while (/\s/.test(text[k] ?? '')) k++;
        if (text[k] === ':' && JSON.parse(s) === key) {
          k++;
          while (/\s/.test(text[k] ?? '')) k++;
          const m = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(k));
          return m ? m[0] : undefined;
        }
      }
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    i++;
  }
  return undefined;
}
