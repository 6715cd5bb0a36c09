// ci-variants: build-w1
// `mcpgate audit export TENANT --since MS --until MS`, found by review: the
// bounds were read with strtoll and nothing checked what it left over, so a
// bound that is not milliseconds since the epoch was taken for another one
// without a word — "--since 2026-01-01T00:00:00Z" read as 2026 ms (every
// record of the chain exported as if it were the range asked for),
// "--until yesterday" as 0 (no bound at all), and a negative one failed with
// a bare "invalid argument"; "--until 0" (the epoch) meant no bound, where the
// admin API's until=0 selects nothing. An operator handing a range of the log to an
// auditor got records outside it. Each bound must be an integer of
// milliseconds (exit 2 with the usage otherwise), and since ≤ until.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { api, createTenant, operatorToken, cli, assertExit } from './lib/admin.mjs';

test('audit export refuses a bound that is not milliseconds since the epoch, and since after until', async () => {
  const g = await startGateway();
  let dataDir;
  try {
    dataDir = g.dataDir;
    const op = operatorToken(g.dataDir);
    await createTenant(g.port, op, 'acme');
    for (const n of ['a', 'b', 'c']) {
      const r = await api(g.port, op, 'PATCH', '/admin/v1/tenants/acme', { name: `Acme ${n}` });
      assert.ok(r.status < 300, r.body);
    }
  } finally {
    await g.stop();
  }
  const all = await cli(['audit', 'export', 'acme', '--data', dataDir]);
  assertExit(all, 0, 'export of the whole chain');
  const recs = all.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(recs.length >= 3, all.stdout);
  const last = recs[recs.length - 1];

  for (const [flag, v] of [['--since', '2026-01-01T00:00:00Z'], ['--since', '12abc'], ['--until', 'yesterday'],
    ['--until', ''], ['--since', '-1'], ['--until', '1e12'], ['--since', '99999999999999999999999']]) {
    const r = await cli(['audit', 'export', 'acme', flag, v, '--data', dataDir]);
    assertExit(r, 2, `export ${flag} ${JSON.stringify(v)}`);
    assert.equal(r.stdout, '', `nothing exported for ${flag} ${JSON.stringify(v)}`);
    assert.match(r.stderr, new RegExp(`${flag}`), r.stderr);
  }
  const inverted = await cli(['audit', 'export', 'acme', '--since', String(last.time + 1), '--until', String(last.time), '--data', dataDir]);
  assertExit(inverted, 2, 'since after until');
  assert.match(inverted.stderr, /--since.*--until|after/, inverted.stderr);

  // until is exclusive: at the epoch itself it selects nothing (as the admin API's), where 0 used to mean no bound
  const epoch = await cli(['audit', 'export', 'acme', '--until', '0', '--data', dataDir]);
  assertExit(epoch, 0, 'export --until 0');
  assert.equal(epoch.stdout, '', 'nothing is before the epoch');

  // a bound that is milliseconds still selects [since, until)
  const tail = await cli(['audit', 'export', 'acme', '--since', String(last.time), '--data', dataDir]);
  assertExit(tail, 0, 'export --since the last record\'s time');
  const got = tail.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(got.map((x) => x.seq), recs.filter((x) => x.time >= last.time).map((x) => x.seq));
  const head = await cli(['audit', 'export', 'acme', '--until', String(last.time), '--data', dataDir]);
  assertExit(head, 0, 'export --until the last record\'s time');
  assert.deepEqual(head.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).seq),
    recs.filter((x) => x.time < last.time).map((x) => x.seq));
});
