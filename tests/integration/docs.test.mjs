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
// - every `make <target>` it names is a Makefile target, and `make clean`
//   removes every build directory the Makefile builds in;
// - its fuzzing table has a row for every tests/fuzz/fuzz_*.c target.
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

// ------------------------------------------------------------ make targets

test('every `make` target the README names exists, and `make clean` removes every build directory', () => {
  const mk = readFileSync(path.join(root, 'Makefile'), 'utf8');
  const targets = new Set([...mk.matchAll(/^([a-z][a-z-]*):/gm)].map((m) => m[1]));
  const named = new Set([...readmeText().matchAll(/`make ([a-z][a-z-]*)/g)].map((m) => m[1]));
  assert.ok(named.size >= 10, `make targets the README names: ${[...named]}`);
  const missing = [...named].filter((t) => !targets.has(t));
  assert.deepEqual(missing, [], 'README names make targets the Makefile lacks');
  const dirs = new Set(['build', ...[...mk.matchAll(/\bBUILD=(build[a-z-]*)/g)].map((m) => m[1]),
    ...[...readmeText().matchAll(/`(build-[a-z]+)\/`/g)].map((m) => m[1])]);
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
