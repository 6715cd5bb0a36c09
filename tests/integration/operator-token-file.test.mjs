// The operator token file (admin_token_file, default <data>/admin.token) holds
// the credential that administers every tenant. One any local user may read
// gave it away silently (the master key's file is refused in that case): the
// gateway now refuses to start on a world-accessible token file, naming it
// and the chmod; a group-readable one (a Prometheus in that group scrapes
// /metrics with it, README) starts with a warning; 0600 starts quietly.
// ci-variants: build-w1 (start-up checks: one run is enough)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, runGateway, startGateway } from './lib/gateway.mjs';

const TOKEN = 'mga_operator-token-file-test-0123456789abcdef';

async function dataWithToken(mode, { outside = false } = {}) {
  const dir = await makeTempDir();
  const file = outside ? path.join(await makeTempDir(), 'op.token') : path.join(dir, 'admin.token');
  await fs.writeFile(file, TOKEN + '\n');
  await fs.chmod(file, mode);
  return { dir, file };
}

for (const mode of [0o644, 0o604, 0o606]) {
  test(`a token file of mode ${mode.toString(8)} (others may read it) → refused, naming the file and the fix`, async () => {
    const { dir, file } = await dataWithToken(mode);
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 5000 });
    assert.equal(r.timedOut, false, `refused rather than started: ${r.stderr.slice(-600)}`);
    assert.notEqual(r.code, 0, 'non-zero exit');
    assert.ok(r.stderr.includes(`operator token file ${file} is accessible by others`), r.stderr.slice(-600));
    assert.ok(r.stderr.includes(`chmod 600 ${file}`), 'says how to fix it');
    assert.ok(!r.stderr.includes(TOKEN.slice(4)), 'the token itself is never logged');
  });
}

test('admin_token_file outside the data directory, world-readable → refused as well', async () => {
  const { dir, file } = await dataWithToken(0o644, { outside: true });
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, '--admin-token-file', file], { timeoutMs: 5000 });
  assert.equal(r.timedOut, false, r.stderr.slice(-600));
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(`operator token file ${file} is accessible by others`), r.stderr.slice(-600));
});

test('a group-readable token file (shared with a Prometheus group) starts, with a warning', async () => {
  const { dir, file } = await dataWithToken(0o640);
  const gw = await startGateway({ dataDir: dir });
  const warn = gw.logs().find((l) => l.level === 'warn' && (l.msg ?? '').includes(`operator token file ${file} is accessible by its group`));
  assert.ok(warn, `warned: ${gw.stderrText().slice(-800)}`);
  await gw.stop();
});

test('a 0600 token file starts without a warning about it', async () => {
  const { dir } = await dataWithToken(0o600);
  const gw = await startGateway({ dataDir: dir });
  assert.ok(!gw.logs().some((l) => /operator token file .* accessible/.test(l.msg ?? '')), gw.stderrText().slice(-800));
  await gw.stop();
});
