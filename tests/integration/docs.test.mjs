// The README is the product's contract; these keep it and the code from
// drifting apart where a machine can tell:
// - its configuration table is generated from the config table in
//   gateway/core/config.c (`mcpgate config-doc`), and its metrics table
//   names exactly the families /metrics serves;
// - every `mcpgate <command> [<sub>]` it (or docs/okta.md) names is one the
//   binary has, and every option of its "Command line" block is one the
//   commands accept;
// - every admin, page and OAuth path of its endpoint tables, with the
//   method it gives, reaches a handler (not "no such endpoint" or 405);
// - every `make <target>` it names is a Makefile target, `make test` starts
//   with check-layers, and `make clean` removes every build directory the
//   Makefile builds in;
// - its fuzzing table has a row for every tests/fuzz/fuzz_*.c target;
// - its tests table names every MCPGATE_TEST_* hook the sources read.
// ci-variants: build-w1 build-asan-w2 (the README against config-doc: one plain and one sanitizer run of the CLI)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.resolve(root, process.env.MCPGATE_BIN || 'build/mcpgate');

test('README configuration table matches `mcpgate config-doc`', () => {
  const generated = execFileSync(bin, ['config-doc'], { encoding: 'utf8' });
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = readme.match(/<!-- config-table:begin -->\n([\s\S]*?)<!-- config-table:end -->/);
  assert.ok(m, 'README has the config-table markers');
  assert.equal(m[1], generated, 'regenerate with: mcpgate config-doc, between the markers');
});

test('every key in `serve --help` is documented in the README', () => {
  const help = execFileSync(bin, ['serve', '--help'], { encoding: 'utf8' });
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const keys = [...help.matchAll(/key ([a-z_]+),/g)].map((x) => x[1]);
  assert.ok(keys.length >= 20, `found ${keys.length} keys`);
  for (const k of keys) assert.ok(readme.includes('`' + k + '`'), `README documents ${k}`);
});

// Operators alert on /metrics: every family it serves is in the README's
// metrics table (name and type), and the table names nothing it does not
// serve. The scrape has an operator SIEM sink so the sink's families show.
test('README metrics table matches the families /metrics serves', async () => {
  const { startGateway, fetchMetrics, makeTempDir } = await import('./lib/gateway.mjs');
  const fsp = await import('node:fs/promises');
  const dir = await makeTempDir();
  const tokenFile = path.join(dir, 'sink.token');
  await fsp.writeFile(tokenFile, 'sink-token-for-docs-test\n', { mode: 0o600 });
  const gw = await startGateway({ args: ['--audit-sink-url', 'http://127.0.0.1:9/ingest', '--audit-sink-token-file', tokenFile] });
  try {
    const m = await fetchMetrics(gw);
    assert.equal(m.status, 200);
    const served = new Map([...m.body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => [x[1], x[2]]));
    assert.ok(served.size >= 50, `families served: ${served.size}`);
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const rows = new Map([...readme.matchAll(/^\| `(mcpgate_[a-z0-9_]+)` \| ([a-z]+) \|/gm)].map((x) => [x[1], x[2]]));
    const missing = [...served].filter(([n, t]) => rows.get(n) !== t).map(([n, t]) => `${n} (${t})`);
    assert.deepEqual(missing, [], 'families /metrics serves that the README table lacks (or types differently)');
    const stale = [...rows.keys()].filter((n) => !served.has(n));
    assert.deepEqual(stale, [], 'README table rows /metrics does not serve');
  } finally {
    await gw.stop();
  }
});

const readmeText = () => readFileSync(path.join(root, 'README.md'), 'utf8');

// ------------------------------------------------------------ the CLI

/** The commands of one usage line "mcpgate CMD [SUB] … | SUB2 … | …" (a description after two spaces dropped): [[cmd, sub]]. */
function usageLine(line) {
  const m = /^\s*(?:\.\/build\/)?mcpgate ([a-z][a-z-]*)(.*)$/.exec(line);
  if (!m) return [];
  const rest = m[2].replace(/\s{2,}\S.*$/, '');
  const first = /^\s+([a-z][a-z-]*)\b/.exec(rest)?.[1] ?? '';
  const alts = rest.split('| ').slice(1).map((a) => /^([a-z][a-z-]*)\b/.exec(a)?.[1]).filter(Boolean);
  return [[m[1], first], ...alts.map((a) => [m[1], a])];
}

/** `mcpgate --help`'s commands: name → the subcommands (lower-case words after it) its lines name. */
function helpCommands() {
  const help = execFileSync(bin, ['--help'], { encoding: 'utf8' });
  const cmds = new Map();
  for (const [c, sub] of help.split('\n').flatMap(usageLine)) {
    if (!cmds.has(c)) cmds.set(c, new Set());
    if (sub) cmds.get(c).add(sub);
  }
  return cmds;
}

/** Every `mcpgate CMD [SUB]` the docs name: in code spans, and on the lines of code blocks. */
function docCommands() {
  const refs = [];
  for (const f of ['README.md', 'docs/okta.md']) {
    const text = readFileSync(path.join(root, f), 'utf8');
    for (const m of text.matchAll(/`(?:\.\/build\/)?mcpgate ([a-z][a-z-]*)((?: [a-z][a-z-]*)?)/g))
      refs.push({ file: f, cmd: m[1], sub: m[2].trim() });
    for (const b of text.matchAll(/```[a-z]*\n([\s\S]*?)```/g))
      for (const [cmd, sub] of b[1].split('\n').flatMap(usageLine)) refs.push({ file: f, cmd, sub });
  }
  return refs;
}

test('every `mcpgate` command the README and docs/okta.md name is one the binary has', async () => {
  const { runGateway, makeTempDir } = await import('./lib/gateway.mjs');
  const cmds = helpCommands();
  assert.ok(cmds.size >= 12, `commands in --help: ${[...cmds.keys()]}`);
  const refs = docCommands();
  assert.ok(refs.length >= 30, `commands named in the docs: ${refs.length}`);
  const wrong = [];
  const run = new Set();
  for (const r of refs) {
    const subs = cmds.get(r.cmd);
    if (!subs) wrong.push(`${r.file}: mcpgate ${r.cmd} (not in mcpgate --help)`);
    else if (subs.size && r.sub && !subs.has(r.sub))
      wrong.push(`${r.file}: mcpgate ${r.cmd} ${r.sub} (--help knows ${[...subs].join(', ')})`);
    else run.add(subs.size && r.sub ? `${r.cmd} ${r.sub}` : r.cmd);
  }
  // and the binary dispatches each (not "unknown command"): run with no
  // further argument against nothing (a dead server, an empty data directory)
  const dir = await makeTempDir();
  for (const c of run) {
    if (c === 'serve') continue; // it would serve
    const res = await runGateway(c.split(' '), {
      env: { MCPGATE_SERVER: 'http://127.0.0.1:9', MCPGATE_DATA: dir, MCPGATE_ADMIN_TOKEN: 'mga_docs-test-token-0123456789' },
    });
    if (/unknown command/.test(res.stderr)) wrong.push(`mcpgate ${c}: ${res.stderr.split('\n')[0]}`);
    else if (![0, 1, 2].includes(res.code)) wrong.push(`mcpgate ${c}: exit ${res.code} (README: 0 ok, 1 failed, 2 usage)`);
  }
  assert.deepEqual(wrong, []);
});

test('every option of the README\'s command-line block is one the commands accept', async () => {
  const { runGateway, makeTempDir } = await import('./lib/gateway.mjs');
  const m = /## Command line\n\n```\n([\s\S]*?)```/.exec(readmeText());
  assert.ok(m, 'README has a "Command line" block');
  const flags = new Set();
  for (const line of m[1].split('\n')) {
    if (/^mcpgate serve\b/.test(line)) continue; // serve's are config keys (config.test.mjs, the table above)
    for (const f of line.matchAll(/(--[a-z][a-z-]*)/g)) flags.add(f[1]);
  }
  for (const f of ['--server', '--json']) flags.add(f); // the paragraph below the block
  assert.ok(flags.size >= 12, `options: ${[...flags]}`);
  const dir = await makeTempDir();
  const refused = [];
  for (const f of flags) {
    // the option scanner is shared by every admin and offline command
    const args = f === '--json' ? ['tenant', 'list', f] : ['tenant', 'list', f, 'x'];
    const res = await runGateway(args, {
      env: { MCPGATE_SERVER: 'http://127.0.0.1:9', MCPGATE_DATA: dir, MCPGATE_ADMIN_TOKEN: 'mga_docs-test-token-0123456789' },
    });
    if (/unknown option/.test(res.stderr)) refused.push(`${f}: ${res.stderr.trim()}`);
  }
  const help = execFileSync(bin, ['--help'], { encoding: 'utf8' });
  for (const f of flags) if (!help.includes(f)) refused.push(`${f}: not in mcpgate --help`);
  assert.deepEqual(refused, []);
});

// ------------------------------------------------------------ the endpoint tables

/**
 * Every METHOD + path in the first cell of a README table row:
 * [{method, path}] with `…/x` resolved against the cell's previous path,
 * the query dropped and an optional `[…]` part taken both ways.
 */
function tableEndpoints(readme) {
  const out = [];
  for (const row of readme.split('\n').filter((l) => l.startsWith('| `'))) {
    const cell = row.split(' | ')[0];
    let prev = null;
    for (const span of cell.matchAll(/`((?:(?:GET|POST|PUT|PATCH|DELETE)\/?)+) ([^`\s]+)/g)) {
      let p = span[2];
      if (p.startsWith('…/')) {
        if (!prev) continue;
        const seg = p.slice(2).split(/[/[?]/)[0];
        const i = prev.lastIndexOf('/' + seg);
        p = (i >= 0 ? prev.slice(0, i) : prev.slice(0, prev.lastIndexOf('/'))) + p.slice(1);
      }
      if (!p.startsWith('/')) continue;
      p = p.replace(/\[\?.*$/, '').replace(/\?.*$/, '');
      prev = p;
      const opt = /\[([^\]]+)\]/.exec(p);
      const paths = opt ? [p.replace(opt[0], ''), p.replace(opt[0], opt[1])] : [p];
      for (const q of paths) for (const method of span[1].split('/').filter(Boolean)) out.push({ method, path: q });
    }
  }
  return out;
}

test('every path of the README\'s endpoint tables reaches a handler with the method it names', async () => {
  const { startGateway } = await import('./lib/gateway.mjs');
  const { api } = await import('./lib/admin.mjs');
  const eps = tableEndpoints(readmeText());
  const admin = eps.filter((e) => e.path.startsWith('/admin/v1/'));
  assert.ok(admin.length >= 50, `admin endpoints found: ${admin.length}`);
  const gw = await startGateway();
  try {
    const op = gw.operatorToken();
    const t = await api(gw.port, op, 'POST', '/admin/v1/tenants', { id: 'acme', name: 'Acme' });
    assert.equal(t.status, 201, t.body);
    const u = await api(gw.port, t.json.scim.token, 'POST', '/t/acme/scim/v2/Users',
      { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'alice@acme.com' },
      { headers: { 'content-type': 'application/scim+json' } });
    assert.equal(u.status, 201, u.body);
    const fill = (p) => p.replace(/\{(id|t|tenant)\}/g, 'acme').replace(/\{(name|connector|c)\}/g, 'docs')
      .replace(/\{(user|userId)\}/g, u.json.id).replace(/\{client_id\}/g, encodeURIComponent('https://client.example/c'))
      .replace(/\{[^}]+\}/g, 'zzzz');
    // the tenant's own deletion last: everything else needs the tenant
    const order = [...eps].sort((a, b) => (a.method === 'DELETE' && a.path === '/admin/v1/tenants/{id}') -
      (b.method === 'DELETE' && b.path === '/admin/v1/tenants/{id}'));
    const unrouted = /^no such (admin endpoint|endpoint|route|page)/;
    const wrong = [];
    const done = new Set();
    for (const e of order) {
      const key = `${e.method} ${e.path}`;
      if (done.has(key)) continue;
      done.add(key);
      const body = ['POST', 'PUT', 'PATCH'].includes(e.method) ? {} : undefined;
      const r = await api(gw.port, e.path.startsWith('/admin/') ? op : null, e.method, fill(e.path), body);
      const msg = r.json?.message ?? r.json?.error_description ?? '';
      if (r.status === 405) wrong.push(`${key}: 405 (Allow: ${r.headers.allow})`);
      else if (r.status === 404 && unrouted.test(msg)) wrong.push(`${key}: 404 ${msg}`);
    }
    assert.deepEqual(wrong, [], 'README endpoints the gateway does not route');
  } finally {
    await gw.stop();
  }
});

// ------------------------------------------------------------ make targets

test('every `make` target the README names exists, check-layers comes first in `make test`, and `make clean` removes every build directory', () => {
  const mk = readFileSync(path.join(root, 'Makefile'), 'utf8');
  const targets = new Set([...mk.matchAll(/^([a-z][a-z-]*):/gm)].map((m) => m[1]));
  const named = new Set([...readmeText().matchAll(/`make ([a-z][a-z-]*)/g)].map((m) => m[1]));
  assert.ok(named.size >= 10, `make targets the README names: ${[...named]}`);
  const missing = [...named].filter((t) => !targets.has(t));
  assert.deepEqual(missing, [], 'README names make targets the Makefile lacks');
  const dirs = new Set(['build', ...[...mk.matchAll(/\bBUILD=(build[a-z-]*)/g)].map((m) => m[1]),
    ...[...readmeText().matchAll(/`(build-[a-z]+)\/`/g)].map((m) => m[1])]);
  // "make check-layers (…; first step of make test)": it fails in a second, before minutes of builds
  const recipe = /^test:.*\n((?:\t.*\n)+)/m.exec(mk);
  assert.ok(recipe, 'Makefile has a test recipe');
  assert.match(recipe[1].split('\n')[0], /^\t\$\(MAKE\) check-layers$/, `make test's first step: ${recipe[1].split('\n')[0]}`);
  const clean = execFileSync('make', ['-s', '-n', 'clean'], { cwd: root, encoding: 'utf8' });
  const removed = new Set(clean.split(/\s+/));
  const left = [...dirs].filter((d) => !removed.has(d));
  assert.deepEqual(left, [], `make clean (${clean.trim()}) leaves these build directories`);
});

// ------------------------------------------------------------ fuzz targets

test('the README\'s fuzzing table has a row for every fuzz target, and no other', () => {
  const targets = readdirSync(path.join(root, 'tests/fuzz')).map((f) => /^fuzz_(.+)\.c$/.exec(f)?.[1]).filter(Boolean);
  assert.ok(targets.length >= 10, `targets: ${targets}`);
  const m = /\n\| target \| what it feeds \| lines \| covered \|\n\|[-|]+\|\n((?:\|.*\n)+)/.exec(readmeText());
  assert.ok(m, 'README has the fuzzing table');
  const rows = m[1].split('\n').filter(Boolean).flatMap((r) => [...r.split(' | ')[0].matchAll(/`([a-z0-9_]+)`/g)].map((x) => x[1]));
  assert.deepEqual([...rows].sort(), [...targets].sort(), 'README fuzzing table rows vs tests/fuzz/fuzz_*.c');
});

// A test hook changes what the binary does: whoever finds one set (a
// warning in the log) must find it in the README's tests table.
test('the README names every MCPGATE_TEST_* hook the sources read', () => {
  const hooks = new Set();
  const walk = (dir) => {
    for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.[ch]$/.test(e.name)) for (const x of readFileSync(path.join(root, p), 'utf8').matchAll(/"(MCPGATE_TEST_[A-Z0-9_]+)"/g)) hooks.add(x[1]);
    }
  };
  for (const d of ['gateway', 'store', 'scim', 'policy', 'auth', 'vault', 'audit']) walk(d);
  assert.ok(hooks.size >= 8, `hooks: ${[...hooks]}`);
  const readme = readmeText();
  const missing = [...hooks].filter((h) => !readme.includes('`' + h + '`'));
  assert.deepEqual(missing, [], 'test hooks the README does not name');
});
