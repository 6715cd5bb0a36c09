// tests/integration/lib/admin.mjs — helpers for the admin API, CLI and
// durability tests (built on lib/gateway.mjs).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { request, runGateway, waitFor } from './gateway.mjs';

export const SCIM_TOKEN_RE = /^mgs_[A-Za-z0-9_-]{43}$/;
export const ADMIN_TOKEN_RE = /^mga_[A-Za-z0-9_-]{43}$/;
export const TOKEN_ID_RE = /^[0-9a-f]{16}$/;
export const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** The operator token the server wrote to DIR/admin.token. */
export function operatorToken(dataDir) {
  return fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
}

/**
 * One admin API call on a fresh connection.
 *   token:  bearer token (null: no Authorization header)
 *   body:   JSON-serialised unless `raw` is given (string/Buffer sent as is)
 *   opts.headers: extra headers (override the defaults, e.g. content-type or
 *                 authorization)
 * Resolves {status, headers, body, json}.
 */
export function api(port, token, method, p, body, { headers = {}, raw } = {}) {
  const h = {};
  if (token !== null && token !== undefined) h.authorization = `Bearer ${token}`;
  let b;
  if (raw !== undefined) b = raw;
  else if (body !== undefined) b = JSON.stringify(body);
  if (b !== undefined) {
    h['content-type'] = 'application/json';
    h['content-length'] = String(Buffer.byteLength(b));
  }
  Object.assign(h, headers);
  return request(port, { method, path: p, headers: h, body: b, timeoutMs: 15000 });
}

/** A small client bound to a gateway port and a token. */
export function adminClient(port, token) {
  return {
    token,
    get: (p, o) => api(port, token, 'GET', p, undefined, o),
    post: (p, b, o) => api(port, token, 'POST', p, b, o),
    patch: (p, b, o) => api(port, token, 'PATCH', p, b, o),
    del: (p, o) => api(port, token, 'DELETE', p, undefined, o),
    call: (m, p, b, o) => api(port, token, m, p, b, o),
  };
}

/** Asserts a JSON error response {error, message} with the given status. */
export function assertJsonError(res, status, { error, message } = {}) {
  assert.equal(res.status, status, `status (body: ${res.body})`);
  assert.match(String(res.headers['content-type']), /^application\/json/, 'error content type');
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `JSON object body: ${res.body}`);
  assert.equal(typeof res.json.error, 'string', `"error" is a string: ${res.body}`);
  assert.ok(res.json.error.length > 0, 'non-empty "error"');
  assert.equal(typeof res.json.message, 'string', `"message" is a string: ${res.body}`);
  assert.ok(res.json.message.length > 0, 'non-empty "message"');
  if (error) assert.equal(res.json.error, error, `error code (body: ${res.body})`);
  if (message) assert.match(res.json.message, message);
  return res.json;
}

/** Asserts a 401 from the admin API: WWW-Authenticate Bearer and a JSON error. */
export function assert401(res) {
  assertJsonError(res, 401);
  assert.match(String(res.headers['www-authenticate'] ?? ''), /^Bearer\b/i,
    `401 carries WWW-Authenticate: Bearer (got ${res.headers['www-authenticate']})`);
}

/** Creates a tenant with the operator token; asserts 201; returns the body. */
export async function createTenant(port, opToken, id, name) {
  const body = name === undefined ? { id } : { id, name };
  const r = await api(port, opToken, 'POST', '/admin/v1/tenants', body);
  assert.equal(r.status, 201, `create tenant ${id}: ${r.body}`);
  return r.json;
}

/** Polls until `POST /admin/v1/tenants {id}` succeeds (a delete's purge finished). */
export async function recreateAfterPurge(port, opToken, id, { timeoutMs = 10000 } = {}) {
  let last;
  await waitFor(async () => {
    last = await api(port, opToken, 'POST', '/admin/v1/tenants', { id });
    if (last.status === 201) return true;
    assert.equal(last.status, 409, `while the purge runs a re-create answers 409, got ${last.status}: ${last.body}`);
    return false;
  }, { timeoutMs, intervalMs: 50, what: `re-create of tenant ${id} after its purge` });
  return last.json;
}

/** Runs the mcpgate binary as a CLI (env MCPGATE_* of the runner is not passed on). */
export function cli(args, { env = {}, timeoutMs = 15000 } = {}) {
  return runGateway(args, { env, timeoutMs });
}

/** Asserts a CLI result's exit code, showing its output on failure. */
export function assertExit(r, code, what = 'exit code') {
  assert.equal(r.timedOut, false, `${what}: the command finished by itself`);
  assert.equal(r.code, code, `${what}: expected exit ${code}, got ${r.code} (signal ${r.signal})\n` +
    `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

/** Every regular file under dir (recursively), as absolute paths. */
export async function listFiles(dir) {
  const out = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await listFiles(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * Reads every file under `dirs` (except basenames in `exclude`) as bytes and
 * returns [{file, secret}] for each secret found in plaintext (the whole
 * token, or its random part without the prefix).
 */
export async function findSecretsInFiles(dirs, secrets, { exclude = [] } = {}) {
  const hits = [];
  const needles = [];
  for (const s of secrets) {
    needles.push({ secret: s, bytes: Buffer.from(s, 'utf8') });
    const m = /^mg[a-z]_(.+)$/.exec(s);
    if (m) needles.push({ secret: s, bytes: Buffer.from(m[1], 'utf8') });
  }
  let scanned = 0;
  for (const d of dirs) {
    for (const f of await listFiles(d)) {
      if (exclude.includes(path.basename(f))) continue;
      const buf = await fsp.readFile(f);
      scanned++;
      for (const n of needles) if (buf.includes(n.bytes)) hits.push({ file: f, secret: n.secret });
    }
  }
  return { hits, scanned };
}

/**
 * Sends one request over a shared keep-alive agent. Resolves
 * {status, json, body} or rejects on a connection error.
 */
export function agentRequest(agent, port, { method = 'GET', path: p, headers = {}, body, timeoutMs = 20000 }) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p} timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Copies a file and sets its mode. */
export async function copyWithMode(src, dst, mode) {
  await fsp.copyFile(src, dst);
  await fsp.chmod(dst, mode);
}
