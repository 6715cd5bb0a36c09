// The README's configuration table is generated from the config table in
// gateway/core/config.c (`mcpgate config-doc`); this keeps the two from drifting.
// ci-variants: build-w1 build-asan-w2 (the README against config-doc: one plain and one sanitizer run of the CLI)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
