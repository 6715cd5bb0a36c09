// Starting on a data directory the gateway cannot write: the refusal names
// the real cause (the lock file cannot be created: permission denied), not
// "in use by another mcpgate process" — which sent operators looking for a
// process that does not exist. And a directory another server holds still
// says that.
// ci-variants: build-w1 (start-up refusals: one run is enough)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { gatewayBin, makeTempDir, runGateway, startGateway } from './lib/gateway.mjs';

const isRoot = process.getuid?.() === 0;

/** Runs the binary as a user who cannot write `dir` (nobody when the tests run as root). */
function runUnprivileged(args) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_')) delete env[k];
  const opts = { env, encoding: 'utf8', timeout: 8000 };
  if (isRoot) Object.assign(opts, { uid: 65534, gid: 65534 });
  return spawnSync(gatewayBin(), args, opts);
}

async function unwritableDir() {
  const parent = await makeTempDir();
  await fs.chmod(parent, 0o755);
  const dir = path.join(parent, 'data');
  await fs.mkdir(dir);
  await fs.chmod(dir, 0o555); // root owns it when the tests run as root: nobody cannot write it either
  return dir;
}

test('serve on an unwritable data directory: refused, naming the permission problem, not another process', async () => {
  const dir = await unwritableDir();
  const r = runUnprivileged(['serve', '--listen', '127.0.0.1:0', '--data', dir]);
  assert.notEqual(r.status, 0, `refused: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /in use by another mcpgate process/, `no phantom process blamed: ${r.stderr}`);
  assert.match(r.stderr, /mcpgate\.lock: Permission denied/, `names the lock file and the cause: ${r.stderr}`);
});

test('key rotate on an unwritable data directory: the cause, not "in use by a running mcpgate"', async () => {
  const dir = await unwritableDir();
  const r = runUnprivileged(['key', 'rotate', '--data', dir]);
  assert.equal(r.status, 1, `exit 1: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /in use by a running mcpgate/, r.stderr);
  assert.match(r.stderr, /mcpgate\.lock: Permission denied/, r.stderr);
});

test('a data directory another server holds is still refused as in use', async () => {
  const gw = await startGateway();
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', gw.dataDir], { timeoutMs: 5000 });
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /is in use by another mcpgate process/, r.stderr);
  assert.equal((await gw.stop()).code, 0);
});

test('an empty store file (a failed restore) is refused, not opened as a new empty store', async () => {
  const gw = await startGateway();
  const dir = gw.dataDir;
  assert.equal((await gw.stop()).code, 0);
  await fs.truncate(path.join(dir, 'store', 'data.mdb'), 0);
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 5000 });
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /store file .*data\.mdb is empty \(0 bytes\): a failed copy or restore\?/, r.stderr);
  assert.equal((await fs.stat(path.join(dir, 'store', 'data.mdb'))).size, 0, 'nothing was written to it');
});

// ... and no master key is made for it either: a restore that failed with
// its key file missing would otherwise get a new key before the refusal,
// and the next start, once data.mdb is restored, would meet a key that
// unseals nothing (the README review).
test('an empty store file is refused before a master key is made', async () => {
  const gw = await startGateway();
  const dir = gw.dataDir;
  assert.equal((await gw.stop()).code, 0);
  await fs.truncate(path.join(dir, 'store', 'data.mdb'), 0);
  await fs.rm(path.join(dir, 'master.key'));
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 5000 });
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /data\.mdb is empty \(0 bytes\)/, r.stderr);
  await assert.rejects(fs.stat(path.join(dir, 'master.key')), /ENOENT/, 'no master key was made');
});
