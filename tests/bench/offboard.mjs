// tests/bench/offboard.mjs — how fast a deactivation cuts a user (issue 18).
//
//   node tests/bench/offboard.mjs [--users 1000] [--rps 2000] [--conns 16] [--workers 2] [--chatter 3] [--data DIR]
//
// The gateway on --workers loops with one connector (the C upstream,
// tests/bench/upstream.c). N users are provisioned over SCIM, each with an
// employee token, an aggregated MCP session and a GET stream held open on
// its own connection (which loop it landed on is the kernel's choice:
// SO_REUSEPORT). Meanwhile a separate user's tools/call traffic runs open
// loop at --rps over --conns keep-alive connections (tests/bench/rate.c,
// restarted every 10 s until the end), landing on every loop.
//
// Then the users are deactivated one at a time with Okta's exact PATCH
// ({"op":"replace","value":{"active":false}}) on one keep-alive SCIM
// connection. For each, this process (one clock, process.hrtime) records
//   stream closed  SCIM request written → that user's GET stream ended
//                  (the gateway closed its connection)
//   SCIM reply     SCIM request written → the SCIM response read in full
// and, while the PATCH is in flight, the user keeps calling a tool on a
// keep-alive connection of their own (one call at a time, back to back;
// in a worker thread, so the event loop that timestamps stays free),
// and goes on until --chatter calls written after the SCIM response was
// read have been answered. "Served after the reply" counts those answered
// 2xx: a request the gateway received after it sent the 200 and served
// anyway (the guarantee: 0). Answers of calls written before the reply was
// read are counted apart (served before it, or refused, or cut).
//
// Prints p50/p99/max of both latencies, how many streams were seen ending
// after the reply, the count above, the store's commits meanwhile (their
// latency, fsync included: a deactivation is one commit, and the reply
// waits for it), the gateway's CPU per thread and the background load
// achieved; and, as the baseline, what fdatasync of 4 KiB costs on the
// store's file system in the same invocation (an LMDB commit makes two).
// The store goes under --data (default: the OS temp dir; /dev/shm takes
// the disk out). Asserts nothing (make bench); a user whose stream never
// ended within 5 s is reported.
import net from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startGateway, scrapeMetrics } from '../integration/lib/gateway.mjs';
import { setupTenant } from '../integration/lib/mcp.mjs';
import { startCUpstream, ratePost } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const N = arg('users', 1000), RPS = arg('rps', 2000), CONNS = arg('conns', 16), WORKERS = arg('workers', 2);
const CHATTER = arg('chatter', 3);
const DATA = (() => {
  const i = process.argv.indexOf('--data');
  return i > 0 ? process.argv[i + 1] : os.tmpdir();
})();
const PV = '2025-06-18';
const now = () => process.hrtime.bigint();
const ms = (ns) => Number(ns) / 1e6;

function pct(a, p) {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function pool(n, conc, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) await fn(next++);
  }));
}

/* A keep-alive HTTP/1.1 client connection for Content-Length replies (what
 * the gateway sends to these requests): send(bytes) resolves {status, body,
 * at (hrtime when the whole reply was read)}, or null when the server
 * closed the connection. One request at a time. */
function keepAlive(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = Buffer.alloc(0), waiting = null, closed = false;
    const parse = () => {
      if (!waiting) return;
      const h = buf.indexOf('\r\n\r\n');
      if (h < 0) return;
      const head = buf.subarray(0, h).toString('latin1');
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
      if (Number.isNaN(len)) { waiting.reject(new Error(`no Content-Length: ${head}`)); return; }
      if (buf.length < h + 4 + len) return;
      const at = now();
      const status = Number(head.slice(9, 12));
      const body = buf.subarray(h + 4, h + 4 + len).toString('utf8');
      buf = buf.subarray(h + 4 + len);
      const w = waiting;
      waiting = null;
      w.resolve({ status, body, at });
    };
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); parse(); });
    const gone = () => { closed = true; if (waiting) { const w = waiting; waiting = null; w.resolve(null); } };
    s.on('end', gone);
    s.on('close', gone);
    s.on('error', gone);
    s.once('connect', () => resolve({
      send(bytes) {
        if (closed) return Promise.resolve(null);
        return new Promise((res, rej) => { waiting = { resolve: res, reject: rej }; s.write(bytes); });
      },
      close() { s.destroy(); },
    }));
    s.once('error', reject);
  });
}

function post(port, path, headers, body, method = 'POST') {
  const b = typeof body === 'string' ? body : JSON.stringify(body);
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
    `Content-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
}

const mcpHeaders = (token, sid) => ({
  Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
  'MCP-Protocol-Version': PV, ...(sid ? { 'Mcp-Session-Id': sid } : {}),
});

/* initialize through fetch (for the Mcp-Session-Id header), then notifications/initialized. */
async function openSession(url, token) {
  const r = await fetch(url, {
    method: 'POST', headers: mcpHeaders(token),
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`initialize: ${r.status} ${text}`);
  const sid = r.headers.get('mcp-session-id');
  const n = await fetch(url, { method: 'POST', headers: mcpHeaders(token, sid), body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  await n.text();
  return sid;
}

/* A GET stream on its own connection; resolves once the 200 head is in.
 * .closedAt: hrtime when the gateway ended it (null while open). */
function openStream(port, token, sid) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`GET /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n` +
        `Authorization: Bearer ${token}\r\nMcp-Session-Id: ${sid}\r\nMCP-Protocol-Version: ${PV}\r\n\r\n`);
    });
    const st = { sock: s, closedAt: null, onClose: null };
    const ended = () => {
      if (st.closedAt !== null) return;
      st.closedAt = now();
      st.onClose?.();
    };
    let head = '';
    const onData = (d) => {
      head += d;
      if (!head.includes('\r\n')) return;
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 200')) { s.destroy(); reject(new Error(`GET stream: ${head.split('\r\n')[0]}`)); return; }
      s.on('data', () => {});
      resolve(st);
    };
    s.on('data', onData);
    s.on('end', ended);
    s.on('close', ended);
    s.on('error', (e) => { if (!head) reject(e); ended(); });
  });
}

/* CPU time (ms) of each thread of pid, by name ("mcpgate" is the main
 * thread: loop 0). */
function threadCpu(pid) {
  const out = {};
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = f.slice(f.indexOf('(') + 1, f.lastIndexOf(')'));
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out[name === 'mcpgate' ? 'mcpgate-loop0' : name] = (out[name] ?? 0) + (Number(rest[11]) + Number(rest[12])) * 10;
    } catch { /* gone */ }
  }
  return out;
}

/* The commits between two scrapes of mcpgate_store_commit_seconds: count
 * and the bucket bounds (ms) that hold the 50th and 99th percentiles. */
function commitDelta(m0, m1) {
  const buckets = (m) => m.filter((x) => x.name === 'mcpgate_store_commit_seconds_bucket').map((x) => [Number(x.labels.le), x.value]);
  const b0 = new Map(buckets(m0)), b1 = buckets(m1);
  const d = b1.map(([le, v]) => [le, v - (b0.get(le) ?? 0)]).sort((a, b) => a[0] - b[0]);
  const n = d.length ? d[d.length - 1][1] : 0;
  const at = (p) => d.find(([, v]) => v >= p * n)?.[0] * 1000;
  const upTo10 = d.find(([le]) => le >= 0.01 - 1e-9)?.[1] ?? n;
  return { n, p50: at(0.5), p99: at(0.99), over10: n - upTo10 };
}

/* fdatasync of a 4 KiB write in dir, n times: p50 and p99 (ms). */
function fsyncCost(dir, n = 200) {
  const f = path.join(dir, `offboard-fsync-${process.pid}`);
  const fd = fs.openSync(f, 'w');
  const buf = Buffer.alloc(4096, 1);
  const t = [];
  try {
    for (let i = 0; i < n; i++) {
      fs.writeSync(fd, buf, 0, buf.length, (i % 16) * 4096);
      const t0 = now();
      fs.fdatasyncSync(fd);
      t.push(ms(now() - t0));
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(f, { force: true });
  }
  return { p50: pct(t, 50), p99: pct(t, 99) };
}

/* The background load: rate.c runs of 10 s, back to back, until stop(). */
function backgroundLoad(url, headers) {
  let stopping = false;
  const runs = [];
  const loop = (async () => {
    while (!stopping && RPS > 0) {
      runs.push(await ratePost(url, {
        headers, rps: RPS, secs: 10, conns: CONNS,
        body: '{"jsonrpc":"2.0","id":{ID},"method":"tools/call","params":{"name":"up__echo","arguments":{}}}',
      }));
    }
  })();
  return { runs, async stop() { stopping = true; await loop; } };
}

async function main() {
  const up = await startCUpstream();
  const dataDir = fs.mkdtempSync(path.join(DATA, 'mcpgate-bench-offboard-'));
  const gw = await startGateway({
    dataDir, args: ['--access-log', 'false', '--workers', String(WORKERS), '--max-connections', String(2 * N + 500), '--connections-per-address', String(2 * N + 500)],
  });
  const streams = [];
  let load;
  try {
    const t = await setupTenant(gw, { users: [] });
    const put = await t.putConnector('up', { url: up.url, auth: { type: 'none' } });
    if (put.status !== 201) throw new Error(`connector: ${put.status} ${put.body}`);
    const url = `${gw.url}/t/acme/mcp`;
    const scimAuth = `Bearer ${t.scim.token}`;

    // provisioning: N users + the load's own, a token and a session each
    const t0 = Date.now();
    const users = new Array(N);
    const mk = async (i) => {
      const name = i < 0 ? 'load@bench.example' : `user${i}@bench.example`;
      const r = await fetch(`${gw.url}/t/acme/scim/v2/Users`, {
        method: 'POST', headers: { Authorization: scimAuth, 'Content-Type': 'application/scim+json' },
        body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: name, externalId: `00u${i}`, active: true }),
      });
      const u = await r.json();
      if (r.status !== 201) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(u)}`);
      const tok = await t.mintToken(u.id);
      if (tok.status !== 201) throw new Error(`token: ${tok.status} ${tok.body}`);
      const sid = await openSession(url, tok.token);
      return { id: u.id, token: tok.token, sid };
    };
    const loadUser = await mk(-1);
    await pool(N, 16, async (i) => { users[i] = await mk(i); });
    await pool(N, 16, async (i) => { users[i].stream = await openStream(gw.port, users[i].token, users[i].sid); streams.push(users[i].stream.sock); });
    console.log(`offboarding: ${N} users provisioned, each with a token, a session and an open GET stream, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    load = backgroundLoad(url, { Authorization: `Bearer ${loadUser.token}`, 'Mcp-Session-Id': loadUser.sid, 'MCP-Protocol-Version': PV, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json' });
    await new Promise((r) => setTimeout(r, 1000)); // the load settles

    const scim = await keepAlive(gw.port);
    const patch = (id) => post(gw.port, `/t/acme/scim/v2/Users/${id}`, { Authorization: scimAuth, 'Content-Type': 'application/scim+json; charset=utf-8', Accept: 'application/scim+json' },
      { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] }, 'PATCH');
    const closedMs = [], replyMs = [];
    let servedAfter = 0, refusedAfter = 0, cutAfter = 0, beforeServed = 0, beforeRefused = 0, beforeCut = 0;
    let closedLate = 0, lateBy = 0, neverClosed = 0, badReply = 0;
    const m0 = await scrapeMetrics(gw), cpu0 = threadCpu(gw.proc.pid);
    const tp = Date.now();
    // the users' own calls run in a worker thread: its event loop, not the
    // one that timestamps the streams' ends and the SCIM replies
    const flag = new Int32Array(new SharedArrayBuffer(4)); // 1: the reply was read
    const worker = new Worker(new URL(import.meta.url), { workerData: { port: gw.port, flag, chatter: CHATTER } });
    let workerFailed = null;
    worker.on('error', (e) => { workerFailed = e; });
    const fromWorker = () => new Promise((r, j) => {
      if (workerFailed) j(workerFailed);
      else worker.once('message', r);
    });
    for (const u of users) {
      Atomics.store(flag, 0, 0);
      worker.postMessage({ token: u.token, sid: u.sid });
      const ready = await fromWorker();
      if (ready.error) throw new Error(ready.error);
      const chatter = fromWorker();
      const closed = new Promise((r) => { if (u.stream.closedAt !== null) r(); else u.stream.onClose = r; });
      const sent = now();
      const rep = await scim.send(patch(u.id));
      const replyAt = rep?.at ?? now();
      Atomics.store(flag, 0, 1);
      if (rep?.status !== 200 && badReply++ === 0) console.error(`a SCIM reply: ${rep?.status} ${rep?.body}`);
      replyMs.push(ms(replyAt - sent));
      const timeout = new Promise((r) => setTimeout(r, 5000));
      await Promise.race([closed, timeout]);
      if (u.stream.closedAt === null) neverClosed++;
      else {
        closedMs.push(ms(u.stream.closedAt - sent));
        if (u.stream.closedAt > replyAt) {
          closedLate++;
          lateBy = Math.max(lateBy, ms(u.stream.closedAt - replyAt));
        }
      }
      const c = await chatter;
      cutAfter += c.cutAfter; servedAfter += c.servedAfter; refusedAfter += c.refusedAfter;
      beforeCut += c.beforeCut; beforeServed += c.beforeServed; beforeRefused += c.beforeRefused;
    }
    await worker.terminate();
    const secs = (Date.now() - tp) / 1000;
    const m1 = await scrapeMetrics(gw), cpu1 = threadCpu(gw.proc.pid);
    scim.close();
    await load.stop();
    const f = (x) => `${x.toFixed(2)} ms`;
    const fsync = fsyncCost(dataDir);
    console.log(`  deactivated ${N} users one at a time in ${secs.toFixed(1)} s (Okta's PATCH; gateway on ${WORKERS} loops; store in ${DATA})`);
    console.log(`  stream closed  (SCIM sent -> the user's GET stream ended)   p50 ${f(pct(closedMs, 50))}  p99 ${f(pct(closedMs, 99))}  max ${f(Math.max(...closedMs))}   (goal p99 <= 5 ms)`);
    console.log(`  SCIM reply     (SCIM sent -> the 200 read)                  p50 ${f(pct(replyMs, 50))}  p99 ${f(pct(replyMs, 99))}  max ${f(Math.max(...replyMs))}   (goal p99 <= 10 ms)`);
    console.log(`  streams seen ending after the reply was read: ${closedLate} of ${N}${closedLate ? ` (by ${f(lateBy)} at most)` : ''}${neverClosed ? `; NEVER ended within 5 s: ${neverClosed}` : ''}${badReply ? `; SCIM replies not 200: ${badReply}` : ''}`);
    console.log(`  the users' calls written after the reply was read: ${servedAfter + refusedAfter + cutAfter} — served ${servedAfter} (must be 0), refused ${refusedAfter}, cut ${cutAfter}`);
    console.log(`  their calls in flight or written before the reply was read: served ${beforeServed}, refused ${beforeRefused}, cut ${beforeCut}`);
    const commits = commitDelta(m0, m1);
    const metric = (m, name) => m.find((x) => x.name === name)?.value ?? 0;
    const timeouts = metric(m1, 'mcpgate_revocation_fanout_timeouts_total') - metric(m0, 'mcpgate_revocation_fanout_timeouts_total');
    console.log(`  store commits meanwhile: ${commits.n}, p50 <= ${commits.p50} ms, p99 <= ${commits.p99} ms, ${commits.over10} over 10 ms (mcpgate_store_commit_seconds, fsync included); fan-out timeouts: ${timeouts}`);
    console.log(`  SCIM replies over 10 ms: ${replyMs.filter((x) => x > 10).length}; streams closed over 5 ms: ${closedMs.filter((x) => x > 5).length}`);
    console.log(`  baseline: fdatasync of 4 KiB in ${DATA}: p50 ${f(fsync.p50)}, p99 ${f(fsync.p99)} (an LMDB commit makes two)`);
    console.log(`  gateway CPU meanwhile: ${Object.keys(cpu1).sort().map((k) => `${k} ${((cpu1[k] - (cpu0[k] ?? 0)) / secs / 10).toFixed(0)}%`).join(', ')}`);
    if (load.runs.length) {
      const sent = load.runs.reduce((a, r) => a + r.sent, 0), done = load.runs.reduce((a, r) => a + r.done, 0);
      const errors = load.runs.reduce((a, r) => a + r.errors, 0);
      const p99 = Math.max(...load.runs.map((r) => r.p99));
      console.log(`  background tools/call: ${RPS} req/s open loop over ${CONNS} connections (rate.c): ${done} of ${sent} answered, ${errors} errors, worst run's p99 ${(p99 / 1000).toFixed(2)} ms`);
    }
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
    await load?.stop().catch(() => {});
  } finally {
    for (const s of streams) s.destroy();
    await gw.stop('SIGTERM', { timeoutMs: 30000 }).catch((e) => console.error(e.message));
    fs.rmSync(dataDir, { recursive: true, force: true });
    up.stop();
  }
}

/* The worker: for each user, one call (answered before the deactivation:
 * 'ready'), then calls back to back on one connection until `chatter`
 * calls written after the main thread read the SCIM reply (the shared
 * flag) have been answered or cut; the counts go back as one message. */
async function chatterWorker() {
  const { port, flag, chatter } = workerData;
  parentPort.on('message', async ({ token, sid }) => {
    const c = { cutAfter: 0, servedAfter: 0, refusedAfter: 0, beforeCut: 0, beforeServed: 0, beforeRefused: 0 };
    let chat = await keepAlive(port);
    const call = (n) => post(port, '/t/acme/mcp', mcpHeaders(token, sid), { jsonrpc: '2.0', id: n, method: 'tools/call', params: { name: 'up__echo', arguments: {} } });
    const first = await chat.send(call(1));
    if (first?.status !== 200) {
      parentPort.postMessage({ error: `a call before the deactivation: ${first?.status} ${first?.body}` });
      return;
    }
    parentPort.postMessage({ ready: true });
    let after = 0, n = 2;
    while (after < chatter) {
      const sentAfter = Atomics.load(flag, 0) === 1;
      const r = await chat.send(call(n++));
      if (sentAfter) {
        after++;
        if (r === null) c.cutAfter++;
        else if (r.status < 300) c.servedAfter++;
        else c.refusedAfter++;
      } else if (r === null) c.beforeCut++;
      else if (r.status < 300) c.beforeServed++;
      else c.beforeRefused++;
      if (r === null && after < chatter) { // cut: go on on a new connection
        chat.close();
        chat = await keepAlive(port);
      }
    }
    chat.close();
    parentPort.postMessage(c);
  });
}

if (isMainThread) main().then(() => process.exit(process.exitCode ?? 0), (e) => { console.error(e); process.exit(1); });
else chatterWorker();
