// tests/integration/lib/gateway.mjs — harness for the integration suite.
//
// Starts the real mcpgate binary (MCPGATE_BIN, default build/mcpgate) on
// loopback with a temp data dir, follows its JSON-lines stderr, and gives the
// tests raw-socket HTTP helpers, an HTTP/1.1 response-stream parser and a
// Prometheus text parser.
//
// Egress: the gateway only connects to public addresses unless the operator
// lists more in egress_allow, and every upstream of this suite runs on
// loopback — so startGateway sets MCPGATE_EGRESS_ALLOW to loopback
// (LOOPBACK_EGRESS) unless the test says otherwise (`egressAllow: null`
// starts a gateway with the default, public-only policy).
//
// Sanitizers: every gateway's stderr is scanned for ASan/LSan/UBSan reports
// when it exits. stop() throws if one is found; a root `after` hook
// (registered when this module is imported by a test file) stops every
// gateway still running and fails the file if any gateway of the file
// produced a report or died unexpectedly (crash, signal, non-zero exit that
// no test asked for).
import { spawn, spawnSync } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, randomInt } from 'node:crypto';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const SANITIZER_PATTERNS = [
  'ERROR: AddressSanitizer',
  'ERROR: LeakSanitizer',
  'runtime error:',
  'WARNING: ThreadSanitizer',
];

export function gatewayBin() {
  const b = process.env.MCPGATE_BIN || 'build/mcpgate';
  return path.isAbsolute(b) ? b : path.resolve(REPO_ROOT, b);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves true if promise settles within ms, else false; leaves no timer behind. */
function within(promise, ms) {
  let t;
  return Promise.race([
    promise.then(() => true),
    new Promise((r) => { t = setTimeout(() => r(false), ms); }),
  ]).finally(() => clearTimeout(t));
}

/** Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws). */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 25, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await sleep(intervalMs);
  }
}

/** Returns the first sanitizer report found in text (from its ERROR line on), or null. */
export function findSanitizerReport(text) {
  let best = -1;
  for (const p of SANITIZER_PATTERNS) {
    const i = text.indexOf(p);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  if (best < 0) return null;
  const start = text.lastIndexOf('\n', best) + 1;
  return text.slice(start, start + 4000);
}

// ---------------------------------------------------------------- cleanup

const gateways = new Set();    // every gateway started by this file
const tempDirs = new Set();    // removed at the end of the file

export async function makeTempDir(prefix = 'mcpgate-test-') {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

function rmTempDirsSync() {
  for (const d of tempDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
  tempDirs.clear();
}

process.on('exit', () => {
  for (const g of gateways) {
    if (g.exitInfo === null) { try { g.proc.kill('SIGKILL'); } catch { /* ignore */ } }
  }
  rmTempDirsSync();
});

after(async () => {
  const problems = [];
  for (const g of gateways) {
    if (g.exitInfo === null) {
      g._expectedExit = true;
      try { g.proc.kill('SIGTERM'); } catch { /* ignore */ }
      const ok = await within(g._exited, 10000);
      if (!ok) {
        g.proc.kill('SIGKILL');
        await g._exited;
        problems.push(`gateway pid ${g.proc.pid} did not exit within 10 s of SIGTERM at end of file`);
      }
    }
    const rep = g._reported ? null : findSanitizerReport(g.stderrText());
    if (rep) problems.push(`sanitizer report in gateway pid ${g.proc.pid} stderr:\n${rep}`);
    else if (g._unexpectedExit) problems.push(`gateway pid ${g.proc.pid} ${g._unexpectedExit}\n` +
      g.stderrText().split('\n').slice(-30).join('\n'));
  }
  gateways.clear();
  rmTempDirsSync();
  if (problems.length) throw new Error(problems.join('\n\n'));
});

function childEnv(extra) {
  // The runner's own MCPGATE_* variables (MCPGATE_BIN …) must not reach the
  // gateway's config loader.
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MCPGATE_')) env[k] = v;
  // GW_TEST_JOB_RERUN=1 (tests/run.sh sets it for a pass): every store
  // write job runs twice, the first run aborted — a job that is not re-run
  // safe (store/store.h) shows as a failing test or a leak
  if (process.env.GW_TEST_JOB_RERUN === '1') env.MCPGATE_TEST_JOB_RERUN = '1';
  env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0:exitcode=23';
  env.UBSAN_OPTIONS ??= 'print_stacktrace=1:halt_on_error=1';
  return { ...env, ...extra };
}

function listenersFromArgs(args) {
  const l = ['http'];
  const has = (f) => args.some((a) => a === f || a.startsWith(f + '='));
  if (has('--tls-listen')) l.push('https');
  if (has('--admin-listen')) l.push('admin');
  return l;
}

// ---------------------------------------------------------------- gateway

/** The egress_allow every test gateway gets unless told otherwise: loopback, where the test upstreams run. */
export const LOOPBACK_EGRESS = '127.0.0.0/8,::1';

/**
 * The runner's GW_TEST_WORKERS (tests/run.sh's TEST_WORKERS) as
 * `--workers N`, unless the test chose its own (flag or MCPGATE_WORKERS):
 * the whole suite runs on one loop and on several.
 */
export function testWorkers() {
  const n = Number(process.env.GW_TEST_WORKERS || 0);
  return n > 0 ? n : 0;
}
function workerArgs(args, env) {
  const n = testWorkers();
  if (!n || env.MCPGATE_WORKERS !== undefined || args.some((a) => a === '--workers' || a.startsWith('--workers='))) return [];
  return ['--workers', String(n)];
}

/**
 * Starts `mcpgate serve --listen 127.0.0.1:0 --data DIR ...args` and resolves
 * once every listener in `listeners` (default: derived from args) has logged
 * {"msg":"listening","listener":KIND,"addr":"127.0.0.1:PORT"}.
 * egressAllow: the egress_allow value (env MCPGATE_EGRESS_ALLOW); default
 * LOOPBACK_EGRESS; null leaves it unset (public addresses only). An
 * MCPGATE_EGRESS_ALLOW in `env` or an --egress-allow flag wins.
 * wrap: a command the binary runs under (['valgrind', '--tool=callgrind']);
 * the process is then the wrapper's.
 */
export async function startGateway({ args = [], env = {}, dataDir, listeners, timeoutMs = 15000, egressAllow = LOOPBACK_EGRESS, bin = gatewayBin(), wrap = [] } = {}) {
  if (!fs.existsSync(bin)) throw new Error(`gateway binary ${bin} not found (set MCPGATE_BIN or run make)`);
  const dir = dataDir ?? await makeTempDir();
  const want = listeners ?? listenersFromArgs(args);
  const fullArgs = ['serve', '--listen', '127.0.0.1:0', '--data', dir, ...workerArgs(args, env), ...args];
  const genv0 = egressAllow === null ? env : { MCPGATE_EGRESS_ALLOW: egressAllow, ...env };
  // Every test client is 127.0.0.1, and many tests present wrong credentials
  // on purpose (hundreds, in the isolation matrix): the per-address limit on
  // failed authentications is off unless a test sets it (abuse-limits.test.mjs).
  const genv = args.some((a) => a.startsWith('--auth-failures-per-address')) ? genv0 : { MCPGATE_AUTH_FAILURES_PER_ADDRESS: '0', ...genv0 };
  const proc = wrap.length
    ? spawn(wrap[0], [...wrap.slice(1), bin, ...fullArgs], { env: childEnv(genv), stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(bin, fullArgs, { env: childEnv(genv), stdio: ['ignore', 'pipe', 'pipe'] });

  const entries = [];        // parsed JSON lines, or {raw} for anything else
  const rawLines = [];
  let stderrBuf = '';
  let stdoutText = '';
  let partial = '';
  const waiters = new Set(); // {pred, from, resolve}
  const addrs = {};

  const g = {
    proc, dataDir: dir, addrs, args: fullArgs, exitInfo: null,
    _expectedExit: false, _unexpectedExit: null,
    logs: () => entries,
    stderrText: () => stderrBuf,
    stdoutText: () => stdoutText,
    mark: () => entries.length,
  };
  let lastLineAt = Date.now();
  /** Waits until stderr has been quiet for quietMs (lines of earlier requests are in), then returns mark(). */
  g.settle = async (quietMs = 100, maxMs = 2000) => {
    const end = Date.now() + maxMs;
    while (Date.now() - lastLineAt < quietMs && Date.now() < end) await sleep(20);
    return entries.length;
  };

  function onLine(line) {
    lastLineAt = Date.now();
    rawLines.push(line);
    let e;
    try {
      e = JSON.parse(line);
      if (e === null || typeof e !== 'object' || Array.isArray(e)) e = { raw: line };
    } catch { e = { raw: line }; }
    Object.defineProperty(e, '_raw', { value: line, enumerable: false });
    entries.push(e);
    for (const w of waiters) {
      if (entries.length - 1 >= w.from && safePred(w.pred, e)) { waiters.delete(w); w.resolve(e); }
    }
  }
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderrBuf += chunk;
    partial += chunk;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i).replace(/\r$/, '');
      partial = partial.slice(i + 1);
      onLine(line);
    }
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (c) => { stdoutText += c; });

  g._exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      // let the pipes drain so the whole stderr (sanitizer report) is kept
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (partial) { onLine(partial); partial = ''; }
        g.exitInfo = { code, signal };
        if (!g._expectedExit && (code !== 0 || signal)) {
          g._unexpectedExit = `exited unexpectedly (code ${code}, signal ${signal})`;
        }
        for (const w of waiters) w.reject?.(new Error(`gateway exited (code ${code}, signal ${signal}) while waiting for a log line`));
        waiters.clear();
        resolve(g.exitInfo);
      };
      if (proc.stderr.readableEnded) finish();
      else { proc.stderr.once('end', finish); setTimeout(finish, 2000).unref(); }
    });
  });
  gateways.add(g);

  g.waitForLog = (pred, waitMs = 5000, from = 0) => {
    for (let i = from; i < entries.length; i++) if (safePred(pred, entries[i])) return Promise.resolve(entries[i]);
    if (g.exitInfo) return Promise.reject(new Error('gateway already exited'));
    return new Promise((resolve, reject) => {
      const w = { pred, from, resolve: (e) => { clearTimeout(t); resolve(e); },
        reject: (err) => { clearTimeout(t); reject(err); } };
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no matching log line within ${waitMs} ms; last lines:\n` + rawLines.slice(-15).join('\n')));
      }, waitMs);
      waiters.add(w);
    });
  };

  /** Sends `signal`, waits for exit (SIGKILL after timeoutMs → throws), throws on a sanitizer report. */
  g.stop = async (signal = 'SIGTERM', { timeoutMs = 10000 } = {}) => {
    g._expectedExit = true;
    if (g.exitInfo === null) {
      if (signal) { try { proc.kill(signal); } catch { /* already gone */ } }
      const ok = await within(g._exited, timeoutMs);
      if (!ok) {
        proc.kill('SIGKILL');
        await g._exited;
        throw new Error(`gateway did not exit within ${timeoutMs} ms` + (signal ? ` of ${signal}` : ''));
      }
    }
    const rep = findSanitizerReport(stderrBuf);
    if (rep) { g._reported = true; throw new Error(`sanitizer report in gateway stderr:\n${rep}`); }
    return g.exitInfo;
  };
  g.kill = () => { g._expectedExit = true; if (g.exitInfo === null) proc.kill('SIGKILL'); return g._exited; };
  g.signal = (sig) => {
    if (sig === 'SIGTERM' || sig === 'SIGINT') g._expectedExit = true;
    return proc.kill(sig);
  };
  /** Waits for an exit already under way (no signal sent); same checks as stop(). */
  g.waitExit = (opts) => g.stop(null, opts);
  /** Resolves {code, signal} when the process exits (whoever caused it). */
  g.exited = () => g._exited;

  // wait for the listeners
  const seen = new Set();
  try {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`gateway not listening (${want.join(',')}) after ${timeoutMs} ms`)), timeoutMs);
      const check = (e) => {
        if (e.msg === 'listening' && typeof e.addr === 'string') {
          const kind = e.listener || 'http';
          const m = /^(.*):(\d+)$/.exec(e.addr);
          if (m) addrs[kind] = { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]), addr: e.addr };
          seen.add(kind);
          if (want.every((k) => seen.has(k))) { clearTimeout(t); resolve(); return true; }
        }
        return false;
      };
      for (const e of entries) if (check(e)) return;
      const w = { pred: check, from: entries.length, resolve: () => {}, reject: (err) => { clearTimeout(t); reject(err); } };
      waiters.add(w);
      g._exited.then((x) => { clearTimeout(t); reject(new Error(`gateway exited before listening (code ${x.code}, signal ${x.signal})`)); });
    });
  } catch (err) {
    await g.kill();
    gateways.delete(g);
    err.message += `\ncommand: ${bin} ${fullArgs.join(' ')}\nstderr:\n${stderrBuf.slice(-6000)}`;
    const rep = findSanitizerReport(stderrBuf);
    if (rep) err.message = 'SANITIZER REPORT: ' + err.message;
    throw err;
  }
  g.port = addrs.http?.port;
  g.url = `http://127.0.0.1:${g.port}`;
  /** The operator token: MCPGATE_ADMIN_TOKEN if the test set it, else <data>/admin.token. */
  g.operatorToken = () => genv.MCPGATE_ADMIN_TOKEN ?? fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
  return g;
}

/**
 * GET /metrics of a gateway started by this file (a gateway object, or its
 * main port), with the operator token the main listener requires. Resolves
 * the raw response {status, headers, body}.
 */
export function fetchMetrics(gwOrPort, { token } = {}) {
  const g = typeof gwOrPort === 'object' ? gwOrPort
    : [...gateways].filter((x) => x.port === gwOrPort && x.exitInfo === null).pop();
  const port = typeof gwOrPort === 'object' ? gwOrPort.port : gwOrPort;
  const tok = token ?? g?.operatorToken();
  return request(port, { path: '/metrics', headers: tok ? { authorization: `Bearer ${tok}` } : {} });
}

/** The parsed /metrics samples (asserts 200); see fetchMetrics. */
export async function scrapeMetrics(gwOrPort, opts) {
  const r = await fetchMetrics(gwOrPort, opts);
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${r.body.slice(0, 200)}`);
  return parsePrometheus(r.body);
}

function safePred(pred, e) {
  try { return !!pred(e); } catch { return false; }
}

/**
 * Runs the gateway binary to completion (help, print-config, refused
 * starts). Resolves {code, signal, stdout, stderr, timedOut}; throws on a
 * sanitizer report. A process still running after timeoutMs is killed and
 * reported with timedOut = true.
 */
export function runGateway(args, { env = {}, timeoutMs = 8000 } = {}) {
  const bin = gatewayBin();
  if (!fs.existsSync(bin)) return Promise.reject(new Error(`gateway binary ${bin} not found (set MCPGATE_BIN or run make)`));
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', timedOut = false;
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const t = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, timeoutMs);
    proc.on('error', (e) => { clearTimeout(t); reject(e); });
    proc.on('close', (code, signal) => {
      clearTimeout(t);
      const rep = findSanitizerReport(stderr);
      if (rep) return reject(new Error(`sanitizer report running mcpgate ${args.join(' ')}:\n${rep}`));
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

// ---------------------------------------------------------------- raw sockets

/** A raw client connection that records everything the server sends. */
export class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.t0 = Date.now();
    this.chunks = [];
    this.closed = false;        // the server closed (FIN or reset)
    this.closedAt = null;
    this.error = null;
    this._waiters = new Set();
    socket.on('data', (d) => { this.chunks.push(d); this._wake(); });
    const onClose = () => {
      if (!this.closed) { this.closed = true; this.closedAt = Date.now(); }
      this._wake();
    };
    socket.on('end', onClose);
    socket.on('close', () => { if (!this._destroyedByUs) onClose(); else this._wake(); });
    socket.on('error', (e) => { this.error = e; });
  }
  get buffer() { return Buffer.concat(this.chunks); }
  text() { return this.buffer.toString('latin1'); }
  get elapsedMs() { return (this.closedAt ?? Date.now()) - this.t0; }
  _wake() { for (const w of this._waiters) w(); }
  _until(cond, timeoutMs) {
    return new Promise((resolve) => {
      if (cond()) return resolve(true);
      const w = () => { if (cond()) { clearTimeout(t); this._waiters.delete(w); resolve(true); } };
      const t = setTimeout(() => { this._waiters.delete(w); resolve(cond()); }, timeoutMs);
      this._waiters.add(w);
    });
  }
  /** Writes; resolves when flushed. Errors after a server close are swallowed (see .error). */
  write(data) {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.writableEnded) return resolve(false);
      this.socket.write(data, (err) => resolve(!err));
    });
  }
  /** Resolves the parsed responses once at least n are complete (throws after timeoutMs). */
  async responses(n, timeoutMs = 3000) {
    let parsed;
    const ok = await this._until(() => {
      parsed = parseResponses(this.buffer, { eof: this.closed });
      return parsed.responses.length >= n || this.closed;
    }, timeoutMs);
    parsed = parseResponses(this.buffer, { eof: this.closed });
    if (!ok || parsed.responses.length < n) {
      throw new Error(`expected ${n} response(s), got ${parsed.responses.length}` +
        `${this.closed ? ' (server closed the connection)' : ` within ${timeoutMs} ms`}; received: ` +
        JSON.stringify(this.text().slice(0, 600)));
    }
    return parsed.responses;
  }
  /** Resolves true when the server has closed the connection within timeoutMs, else false. */
  waitClose(timeoutMs = 3000) { return this._until(() => this.closed, timeoutMs); }
  /** Resolves true if any bytes have arrived within timeoutMs. */
  waitData(timeoutMs = 3000) { return this._until(() => this.chunks.length > 0 || this.closed, timeoutMs); }
  end() { this.socket.end(); }
  destroy() { this._destroyedByUs = true; this.socket.destroy(); }
}

/** Opens a TCP (or, with tls options, TLS) connection to 127.0.0.1:port. */
export function connect(port, { host = '127.0.0.1', tls: tlsOpts } = {}) {
  return new Promise((resolve, reject) => {
    const sock = tlsOpts
      ? tls.connect({ host, port, servername: 'localhost', ...tlsOpts })
      : net.connect({ host, port });
    const ev = tlsOpts ? 'secureConnect' : 'connect';
    const onErr = (e) => reject(e);
    sock.once('error', onErr);
    sock.once(ev, () => { sock.off('error', onErr); sock.setNoDelay(true); resolve(new RawConn(sock)); });
  });
}

/**
 * Writes raw bytes and collects what comes back.
 *   bytes: string | Buffer | array whose items are data (string/Buffer, written
 *          in order) or numbers (a delay in ms before the next item).
 *   timeoutMs:     overall cap from connect; then closed=false.
 *   closeAfterMs:  stop waiting this long after the last byte received
 *                  (for keep-alive connections the server won't close).
 *   responses:     stop as soon as this many complete responses are parsed.
 * Resolves {data, closed, elapsedMs, responses, rest, error}.
 */
export async function rawHttp(port, bytes, { timeoutMs = 3000, closeAfterMs, responses: wantN, host, tls: tlsOpts } = {}) {
  const conn = await connect(port, { host, tls: tlsOpts });
  const items = Array.isArray(bytes) ? bytes : [bytes];
  let writing = true;
  (async () => {
    for (const it of items) {
      if (conn.closed || conn.socket.destroyed) break;
      if (typeof it === 'number') await sleep(it);
      else await conn.write(it);
    }
    writing = false;
  })();
  const deadline = conn.t0 + timeoutMs;
  let lastLen = -1, lastChange = Date.now();
  for (;;) {
    if (conn.closed) break;
    const now = Date.now();
    if (now >= deadline) break;
    const len = conn.chunks.reduce((a, c) => a + c.length, 0);
    if (len !== lastLen) { lastLen = len; lastChange = now; }
    if (wantN && parseResponses(conn.buffer, { eof: false }).responses.length >= wantN) break;
    if (closeAfterMs && len > 0 && !writing && now - lastChange >= closeAfterMs) break;
    await conn._until(() => conn.closed, Math.min(25, deadline - now));
  }
  const elapsedMs = (conn.closedAt ?? Date.now()) - conn.t0;
  const closed = conn.closed;
  if (!closed) conn.destroy();
  const parsed = parseResponses(conn.buffer, { eof: closed });
  return { data: conn.text(), buffer: conn.buffer, closed, elapsedMs, responses: parsed.responses,
    rest: parsed.rest, error: conn.error };
}

// ---------------------------------------------------------------- HTTP parsing

/**
 * Splits a byte stream into successive HTTP/1.x responses. A 1xx response is
 * returned as its own entry. eof: the stream has ended (a body without
 * Content-Length or chunking then runs to the end).
 * Returns {responses: [{version, status, reason, headers, headerList, body,
 * bodyBuffer, raw}], rest: Buffer (unparsed tail), error?}.
 */
export function parseResponses(input, { eof = false, requestMethods = [] } = {}) {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input, 'latin1');
  const responses = [];
  let pos = 0;
  let finalIdx = 0;
  while (pos < buf.length) {
    const hdrEnd = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (hdrEnd < 0) break;
    const head = buf.subarray(pos, hdrEnd).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) return { responses, rest: buf.subarray(pos), error: `bad status line ${JSON.stringify(lines[0])}` };
    const headers = {};
    const headerList = [];
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c <= 0) return { responses, rest: buf.subarray(pos), error: `bad header line ${JSON.stringify(l)}` };
      const name = l.slice(0, c).trim();
      const value = l.slice(c + 1).trim();
      headerList.push([name, value]);
      const k = name.toLowerCase();
      headers[k] = k in headers ? `${headers[k]}, ${value}` : value;
    }
    const status = Number(m[2]);
    let p = hdrEnd + 4;
    let body = Buffer.alloc(0);
    const te = (headers['transfer-encoding'] || '').toLowerCase();
    const isHead = requestMethods[finalIdx] === 'HEAD';
    if ((status >= 100 && status < 200) || status === 204 || status === 304 || isHead) {
      // no body
    } else if (te.includes('chunked')) {
      const parts = [];
      let done = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0].trim(), 16);
        if (Number.isNaN(size)) return { responses, rest: buf.subarray(pos), error: 'bad chunk size in response' };
        if (size === 0) {
          // trailers until empty line
          let q = le + 2;
          for (;;) {
            const tl = buf.indexOf('\r\n', q, 'latin1');
            if (tl < 0) { q = -1; break; }
            if (tl === q) { q = tl + 2; break; }
            q = tl + 2;
          }
          if (q < 0) break;
          p = q; done = true; break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      if (!done) break;
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (p + n > buf.length) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      if (!eof) break;
      body = buf.subarray(p);
      p = buf.length;
    }
    responses.push({
      version: m[1], status, reason: m[3] ?? '', headers, headerList,
      bodyBuffer: body, body: body.toString('utf8'), raw: buf.subarray(pos, p).toString('latin1'),
    });
    if (status >= 200 || status < 100) finalIdx++;
    pos = p;
  }
  return { responses, rest: buf.subarray(pos) };
}

// ---------------------------------------------------------------- HTTP client

/**
 * One request on a fresh connection (no agent). Resolves {status, headers,
 * body, json (parsed or undefined), socket info}.
 */
export function request(port, { method = 'GET', path: p = '/', headers = {}, body, tls: tlsOpts, host = '127.0.0.1', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const mod = tlsOpts ? https : http;
    const req = mod.request({ host, port, method, path: p, headers, agent: false, timeout: timeoutMs,
      ...(tlsOpts ? { servername: 'localhost', ...tlsOpts } : {}) }, (res) => {
      const chunks = [];
      const peer = tlsOpts ? res.socket.getPeerCertificate?.() : undefined;
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json, peerCertificate: peer });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request ${method} ${p} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** True when a TCP connect to port is refused. */
export function connectRefused(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/**
 * A TCP port where connections are refused and stay refused for the test:
 * outside the kernel's ephemeral range (ip_local_port_range, read here;
 * Debian's is 32768-60999), where no listen(0) of another test file,
 * gateway or upstream can land — a port taken by listen(0) and closed
 * again was handed to a concurrent file's server, and a test expecting
 * "could not connect" got an HTTP 404 — and refused on 127.0.0.1 and ::1
 * (`localhost` may be either) right now. No test listens on a fixed port.
 */
export function refusedPortWindow(rangeText) {
  let lo = 32768, hi = 60999;
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(rangeText ?? '');
  if (m) [lo, hi] = [Number(m[1]), Number(m[2])];
  // below the range from 20000 (or from 1024 when it starts lower), else above it
  const below = [Math.max(1024, Math.min(20000, lo - 12000)), lo - 1];
  const above = [hi + 1, 65535];
  const size = ([a, b]) => b - a + 1;
  const w = size(below) >= 1000 || size(below) >= size(above) ? below : above;
  if (size(w) < 100) throw new Error(`refusedPort: ip_local_port_range ${lo}-${hi} leaves no room for a refused port`);
  return w;
}

export async function refusedPort() {
  const unreachable = (host, port) => new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true)); // refused (or no IPv6 here: no listener either)
  });
  let range = null;
  try { range = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'); } catch {}
  const [a, b] = refusedPortWindow(range);
  for (let i = 0; i < 50; i++) {
    const port = a + randomInt(b - a + 1);
    if (await connectRefused(port, '127.0.0.1') && await unreachable('::1', port)) return port;
  }
  throw new Error(`refusedPort: no refused port in ${a}-${b} after 50 tries`);
}

// ---------------------------------------------------------------- Prometheus

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]?Inf|NaN)$/;

function parseValue(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

/**
 * Parses Prometheus text exposition format 0.0.4. Throws on any line that is
 * not `# HELP name text`, `# TYPE name type`, or `name{labels} value [ts]`
 * (an empty last line is allowed). Returns the samples
 * [{name, labels, value}] with .types and .help maps attached.
 */
export function parsePrometheus(text) {
  const samples = [];
  const types = {};
  const help = {};
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, idx) => {
    const where = `line ${idx + 1}: ${JSON.stringify(line)}`;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) throw new Error(`malformed comment, ${where}`);
      if (!METRIC_NAME.test(m[2])) throw new Error(`bad metric name, ${where}`);
      if (m[1] === 'TYPE') {
        if (!/^(counter|gauge|histogram|summary|untyped)$/.test(m[3] ?? '')) throw new Error(`bad TYPE, ${where}`);
        if (types[m[2]]) throw new Error(`duplicate TYPE, ${where}`);
        types[m[2]] = m[3];
      } else {
        help[m[2]] = m[3] ?? '';
      }
      return;
    }
    let i = 0;
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
    const name = line.slice(0, i);
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name, ${where}`);
    const labels = {};
    if (line[i] === '{') {
      i++;
      for (;;) {
        if (line[i] === '}') { i++; break; }
        let j = i;
        while (j < line.length && line[j] !== '=') j++;
        const ln = line.slice(i, j);
        if (!LABEL_NAME.test(ln) || line[j + 1] !== '"') throw new Error(`bad label, ${where}`);
        j += 2;
        let v = '';
        for (;;) {
          if (j >= line.length) throw new Error(`unterminated label value, ${where}`);
          const c = line[j];
          if (c === '\\') {
            const n = line[j + 1];
            if (n === 'n') v += '\n'; else if (n === '\\' || n === '"') v += n;
            else throw new Error(`bad escape in label value, ${where}`);
            j += 2;
          } else if (c === '"') { j++; break; } else { v += c; j++; }
        }
        if (ln in labels) throw new Error(`duplicate label ${ln}, ${where}`);
        labels[ln] = v;
        if (line[j] === ',') j++;
        else if (line[j] !== '}') throw new Error(`expected , or } in labels, ${where}`);
        i = j;
      }
    }
    const rest = line.slice(i);
    const m = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
    if (!m || !VALUE.test(m[1])) throw new Error(`bad sample value, ${where}`);
    samples.push({ name, labels, value: parseValue(m[1]) });
  });
  Object.defineProperty(samples, 'types', { value: types, enumerable: false });
  Object.defineProperty(samples, 'help', { value: help, enumerable: false });
  return samples;
}

/** Sum of the values of samples named `name` whose labels include `labels`. */
export function metricValue(samples, name, labels = {}) {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

// ---------------------------------------------------------------- TLS helpers

/** Generates a self-signed P-256 cert for localhost/127.0.0.1 with the openssl CLI. */
export function makeSelfSignedCert(dir, name = 'server', cn = 'localhost') {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  return { cert, key, certPem: fs.readFileSync(cert, 'utf8'), keyPem: fs.readFileSync(key, 'utf8') };
}

/** SHA-256 fingerprint of a PEM certificate in node's "AA:BB:…" form. */
export function pemFingerprint256(pem) {
  return new X509Certificate(pem).fingerprint256;
}
