// ci-variants: build-w1
// Found by the operations review: `store check` and `audit verify` could not
// read a store on a read-only filesystem (a snapshot mounted to check it, a
// read-only volume): the store was opened read-write, its writer started,
// and the files of cuts held in memory were created, so the commands failed
// with "Read-only file system". The reading commands now open the store and
// the audit log read-only (MDB_RDONLY, no writer, no file created): on a
// read-only mount they check, verify and export as anywhere else — and on
// a writable one they leave nothing behind that was not there.
// The read-only mount is a tmpfs remounted ro inside a private mount
// namespace (unshare -m): where that is not allowed, the test says so and is
// skipped (never counted as passed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startGateway, makeTempDir, gatewayBin } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';

const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs none "$d" && mount -o remount,ro "$d"'], { encoding: 'utf8' });
const can = probe.status === 0 ? false : `cannot mount a read-only filesystem here (unshare -m: ${(probe.stderr || probe.error?.message || '').trim()})`;

/** A data directory with a store, an audit log and a key, the server stopped. */
async function populated() {
  const g = await startGateway();
  const op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  await g.stop();
  return g.dataDir;
}

test('store check, audit verify and audit export read a store on a read-only filesystem', { skip: can }, async () => {
  const src = await populated();
  const out = await makeTempDir();
  // the copy holds what a backup restores and the key: no lock files
  const script = `set -e
ro=$(mktemp -d)
mount -t tmpfs none "$ro"
mkdir -m 700 "$ro/data" "$ro/data/store" "$ro/data/audit"
cp "${src}/store/data.mdb" "$ro/data/store/"
cp "${src}/audit/data.mdb" "$ro/data/audit/"
cp -p "${src}/master.key" "$ro/data/"
mount -o remount,ro "$ro"
touch "$ro/data/probe" 2>/dev/null && { echo "the mount is writable" >&2; exit 9; }
set +e
"${gatewayBin()}" store check --data "$ro/data" > "${out}/check.out" 2> "${out}/check.err"; echo $? > "${out}/check.rc"
"${gatewayBin()}" audit verify --data "$ro/data" > "${out}/verify.out" 2> "${out}/verify.err"; echo $? > "${out}/verify.rc"
"${gatewayBin()}" audit export acme --data "$ro/data" > "${out}/export.out" 2> "${out}/export.err"; echo $? > "${out}/export.rc"
ls -A "$ro/data/store" "$ro/data/audit" > "${out}/ls.out"
`;
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_')) delete env[k];
  const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { encoding: 'utf8', timeout: 60000, env });
  assert.equal(r.status, 0, r.stderr);
  const read = (n) => fs.readFileSync(path.join(out, n), 'utf8');
  assert.equal(read('check.rc').trim(), '0', `store check: ${read('check.out')} ${read('check.err')}`);
  assert.match(read('check.out'), /^store ok \(schema version \d+\)/m);
  assert.equal(read('verify.rc').trim(), '0', `audit verify: ${read('verify.out')} ${read('verify.err')}`);
  assert.match(read('verify.out'), /^audit log ok: \d+ records? verified/m);
  assert.equal(read('export.rc').trim(), '0', `audit export: ${read('export.err')}`);
  assert.ok(read('export.out').split('\n').filter(Boolean).every((l) => JSON.parse(l)), 'the export is JSON lines');
  assert.doesNotMatch(read('check.err') + read('verify.err'), /Read-only file system/);
});

test('on a writable data directory the reading commands create nothing', async () => {
  const src = await populated();
  for (const f of ['store/lock.mdb', 'audit/lock.mdb', 'store/unwritten-cuts', 'store/unwritten-memberships'])
    fs.rmSync(path.join(src, f), { force: true });
  const before = fs.readdirSync(path.join(src, 'store')).sort();
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_')) delete env[k];
  const c = spawnSync(gatewayBin(), ['store', 'check', '--data', src], { encoding: 'utf8', timeout: 30000, env });
  assert.equal(c.status, 0, c.stdout + c.stderr);
  assert.ok(!fs.existsSync(path.join(src, 'store', 'unwritten-cuts')), 'store check made no file of cuts');
  assert.ok(!fs.existsSync(path.join(src, 'store', 'unwritten-memberships')));
  assert.deepEqual(fs.readdirSync(path.join(src, 'store')).filter((f) => f !== 'lock.mdb').sort(), before.filter((f) => f !== 'lock.mdb'));
});

// Found by review: on a read-only mount of the live volume (a container
// with the volume mounted :ro beside the running server) LMDB reads without
// its lock file, unregistered, while the server reuses the pages it reads:
// a healthy store was reported damaged, or LMDB aborted. With the data
// directory's lock held, the reading commands refuse there and say where
// to run them; the writable path beside the server checks clean.
test('a read-only view of a store a server is running on is refused, not misread', { skip: can }, async () => {
  const g = await startGateway();
  try {
    const op = operatorToken(g.dataDir);
    await createTenant(g.port, op, 'acme');
    const out = await makeTempDir();
    const script = `set -e
ro=$(mktemp -d)
mount --bind "${g.dataDir}" "$ro"
mount -o remount,bind,ro "$ro"
touch "$ro/probe" 2>/dev/null && { echo "the mount is writable" >&2; exit 9; }
set +e
for c in "store check" "audit verify" "audit export acme"; do
  n=$(echo $c | tr ' ' '-')
  "${gatewayBin()}" $c --data "$ro" > "${out}/$n.out" 2> "${out}/$n.err"; echo $? > "${out}/$n.rc"
done
`;
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_')) delete env[k];
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { encoding: 'utf8', timeout: 60000, env });
    assert.equal(r.status, 0, r.stderr);
    for (const n of ['store-check', 'audit-verify', 'audit-export-acme']) {
      const err = fs.readFileSync(path.join(out, `${n}.err`), 'utf8');
      assert.equal(fs.readFileSync(path.join(out, `${n}.rc`), 'utf8').trim(), '1', `${n}: ${err}`);
      assert.match(err, /is on a read-only filesystem while an mcpgate holds .*Run this on the writable path/, `${n}: ${err}`);
      assert.doesNotMatch(err, /damaged/);
    }
    // the writable path, beside the running server, checks clean
    const c = spawnSync(gatewayBin(), ['store', 'check', '--data', g.dataDir], { encoding: 'utf8', timeout: 30000, env });
    assert.equal(c.status, 0, c.stdout + c.stderr);
  } finally {
    await g.stop();
  }
});
