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
