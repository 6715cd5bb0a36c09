// tests/integration/lib/everything.mjs — starts the real
// @modelcontextprotocol/server-everything (streamableHttp mode) bound to
// 127.0.0.1 only: PORT=0 and the upstream-shim.cjs preload, which rewrites
// every listen to loopback and reports the port it really bound.
//
// No node:test import here: tests/tools/run-integration.mjs starts one per
// integration pass with it (a shared upstream: see startEverything in
// lib/mcp.mjs), outside any test.
import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SHIM = path.join(HERE, 'upstream-shim.cjs');
export const NODE_MODULES = path.resolve(HERE, '../../node_modules');
export const EVERYTHING_JS = path.join(NODE_MODULES, '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');

/** The environment variable through which run-integration.mjs hands its
 * pass's shared server-everything (its /mcp URL) to the test files. */
export const SHARED_ENV = 'MCP_TEST_SHARED_EVERYTHING_URL';

function httpAnswers(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/mcp', timeout: 1000 }, (res) => { res.resume(); resolve(true); });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * Spawns server-everything and resolves once `/mcp` answers HTTP:
 * {proc, port, url, output(), exited (a promise of {code, signal})}. It
 * rejects (the process killed) on exit or after timeoutMs, with its output.
 */
export async function spawnEverything({ env = {}, timeoutMs = 15000 } = {}) {
  const proc = spawn(process.execPath, ['--require', SHIM, EVERYTHING_JS, 'streamableHttp'], {
    cwd: os.tmpdir(),
    env: { ...process.env, ...env, PORT: '0', MCP_UPSTREAM_SHIM_REPORT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (c) => { out += c; if (out.length > 1 << 20) out = out.slice(-(1 << 19)); };
  proc.stdout.setEncoding('utf8').on('data', keep);
  proc.stderr.setEncoding('utf8').on('data', keep);
  let dead = null;
  const exited = new Promise((r) => proc.on('exit', (code, signal) => { dead = { code, signal }; r(dead); }));
  const end = Date.now() + timeoutMs;
  try {
    let port = 0;
    for (;;) {
      if (dead) throw new Error(`server-everything exited (code ${dead.code}, signal ${dead.signal})`);
      if (!port) {
        const m = /UPSTREAM-SHIM listening (\{[^\n]*\})/.exec(out);
        if (m) {
          const a = JSON.parse(m[1]);
          if (a.address !== '127.0.0.1') throw new Error(`server-everything bound ${a.address}, not loopback only`);
          port = a.port;
        }
      }
      if (port && await httpAnswers(port)) break;
      if (Date.now() > end) throw new Error(`server-everything did not ${port ? 'answer on /mcp' : 'listen'} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, port ? 50 : 20));
    }
    return { proc, port, url: `http://127.0.0.1:${port}/mcp`, output: () => out, exited };
  } catch (e) {
    proc.kill('SIGKILL');
    e.message += `\nserver-everything output:\n${out.slice(-3000)}`;
    throw e;
  }
}
