// ci-variants: build-w1
// `mcpgate backup DEST`, found by review: the store's and the audit log's
// copies were written with LMDB's default file mode (0666 less the umask:
// 0644 under the usual 022) while the data directory's own files are 0600.
// Into a destination that already existed, empty and readable by others
// (a /backups directory, a mounted volume), the copy of the directory —
// names and e-mails of every person, groups, policies, approval requests
// with their arguments, the audit log — was readable by every local user.
// The copies must be 0600 whatever the umask and the directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startGateway, makeTempDir, gatewayBin } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';

test('the backup\'s files are 0600, also in a destination that existed and others may read', async () => {
  const g = await startGateway();
  try {
    const op = operatorToken(g.dataDir);
    await createTenant(g.port, op, 'acme');
    const parent = await makeTempDir();
    for (const [dest, pre] of [[path.join(parent, 'fresh'), false], [path.join(parent, 'shared'), true]]) {
      if (pre) {
        fs.mkdirSync(dest);
        fs.chmodSync(dest, 0o755);
      }
      const r = spawnSync(gatewayBin(), ['backup', dest, '--data', g.dataDir], { encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 0, r.stderr);
      for (const f of ['data.mdb', 'audit/data.mdb']) {
        const mode = fs.statSync(path.join(dest, f)).mode & 0o777;
        assert.equal(mode.toString(8), '600', `${pre ? 'existing' : 'new'} destination: ${f} is 0${mode.toString(8)}`);
      }
    }
  } finally {
    await g.stop();
  }
});

// Found by the operations review: a backup of a store file cut short (a
// copy or restore that did not finish) read past the file's end and died
// of SIGBUS half-way, leaving a partial data.mdb in DEST that looked like a
// backup. It is refused before a byte is copied, naming the cause.
test('a backup of a store file shorter than its pages is refused before anything is written to DEST', async () => {
  const g = await startGateway();
  const op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  for (let i = 0; i < 40; i++) await createTenant(g.port, op, `t${i}`);
  await g.stop();
  const file = path.join(g.dataDir, 'store', 'data.mdb');
  const size = fs.statSync(file).size;
  fs.truncateSync(file, Math.floor(size / 2 / 4096) * 4096);
  const dest = path.join(await makeTempDir(), 'bk');
  const r = spawnSync(gatewayBin(), ['backup', dest, '--data', g.dataDir], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.signal, null, `not killed by a signal: ${r.stderr}`);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /shorter than its pages/, r.stderr);
  assert.ok(!fs.existsSync(path.join(dest, 'data.mdb')), 'no partial copy that looks like a backup');
});

// Found by the operations review: an empty DEST owned by another user (or
// writable by every user) was accepted, and its owner could replace the
// copy with a store of theirs before it was restored.
test('a backup into a directory another user owns, or every user may write to, is refused', async () => {
  const g = await startGateway();
  await g.stop();
  const parent = await makeTempDir();
  const open = path.join(parent, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  let r = spawnSync(gatewayBin(), ['backup', open, '--data', g.dataDir], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /backup destination .*open is writable by every user: they could replace the copy/, r.stderr);
  assert.deepEqual(fs.readdirSync(open), []);
  if (process.getuid?.() === 0) {
    const theirs = path.join(parent, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, 65534, 65534);
    r = spawnSync(gatewayBin(), ['backup', theirs, '--data', g.dataDir], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /backup destination .*theirs belongs to another user/, r.stderr);
    assert.deepEqual(fs.readdirSync(theirs), []);
  }
  // a directory of one's own, empty: fine
  const mine = path.join(parent, 'mine');
  fs.mkdirSync(mine, { mode: 0o750 });
  r = spawnSync(gatewayBin(), ['backup', mine, '--data', g.dataDir], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
});
