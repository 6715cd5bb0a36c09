// Audit review: `mcpgate audit verify` is the documented tamper check, but
// it did not look at the SIEM sinks' delivery cursors (only `store check`
// did). A cursor says "the receiver acknowledged this chain up to seq N":
// records deleted from the end of a delivered chain (head moved back), or a
// delivered chain deleted whole (head and records), leave every remaining
// link intact — verify said "audit log ok" while the cursors witnessed the
// deletion. Edits are made offline with lmdb-utils (mdb_dump -a / mdb_load).
// ci-variants: build-w1
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor, startGateway, gatewayBin, makeTempDir } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

/** A copy of dataDir whose audit environment was rewritten by edit(db, keyBuf, valBuf) → undefined (drop) or [k, v]. */
async function rewriteAudit(dataDir, edit) {
  const copy = await makeTempDir('mcpgate-audit-copy-');
  fs.cpSync(dataDir, copy, { recursive: true });
  const env = path.join(copy, 'audit');
  const d = spawnSync('mdb_dump', ['-a', env], { encoding: 'latin1', maxBuffer: 256 << 20 });
  assert.equal(d.status, 0, `mdb_dump: ${d.stderr}`);
  const out = [];
  let db = null, inData = false, pending = null;
  for (const line of d.stdout.split('\n')) {
    if (!inData) {
      const m = /^database=(.*)$/.exec(line);
      if (m) db = m[1];
      if (line === 'HEADER=END') inData = true;
      out.push(line);
      continue;
    }
    if (line === 'DATA=END') { inData = false; db = null; out.push(line); continue; }
    if (pending === null) { pending = line; continue; }
    const r = edit(db, Buffer.from(pending.trim(), 'hex'), Buffer.from(line.trim(), 'hex'));
    if (r) out.push(` ${r[0].toString('hex')}`, ` ${r[1].toString('hex')}`);
    pending = null;
  }
  const fresh = await makeTempDir('mcpgate-audit-load-');
  const dump = path.join(fresh, 'dump.txt');
  fs.writeFileSync(dump, out.join('\n'), 'latin1');
  const l = spawnSync('mdb_load', ['-f', dump, fresh], { encoding: 'latin1' });
  assert.equal(l.status, 0, `mdb_load: ${l.stderr}`);
  fs.copyFileSync(path.join(fresh, 'data.mdb'), path.join(env, 'data.mdb'));
  fs.rmSync(path.join(env, 'lock.mdb'), { force: true });
  return copy;
}

const verify = (dir) => spawnSync(gatewayBin(), ['audit', 'verify', '--data', dir], { encoding: 'utf8' });
const seqOf = (k) => k.readBigUInt64BE(k.length - 8);

test('audit verify reports a delivered chain cut at its end, or deleted whole', async () => {
  const rx = await startSinkReceiver();
  const g = await startGateway({ args: ['--audit-sink-url', rx.url] });
  let dataDir;
  try {
    const op = operatorToken(g.dataDir);
    const t = await createTenant(g.port, op, 'acme');
    const sc = scimClient(g.port, 'acme', t.scim.token);
    for (let i = 0; i < 4; i++) assert.equal((await sc.post('/Users', oktaUser(`u${i}@acme.com`))).status, 201);
    await waitFor(() => rx.posts.filter((p) => p.ok).length > 0 && rx.posts.at(-1).body.includes('"seq":'),
      { timeoutMs: 15000, what: 'a delivery' });
    // every record delivered and the cursor committed
    await waitFor(async () => {
      const m = await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${op}` } }).then((x) => x.text());
      return /mcpgate_audit_sink_lag_records\{sink="operator"\} 0\b/.test(m);
    }, { timeoutMs: 15000, what: 'the sink caught up' });
    await new Promise((r) => setTimeout(r, 300));
    dataDir = g.dataDir;
  } finally { await g.stop(); await rx.close(); }
  const ok = verify(dataDir);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);

  // the last two records deleted, the head moved back onto the one before them
  const recs = new Map();
  let uid = null, head = null;
  await rewriteAudit(dataDir, (db, k, v) => {
    if (db === 'records') recs.set(seqOf(k), JSON.parse(v.toString()));
    if (db === 'heads') { uid = k.toString(); head = JSON.parse(v.toString()); }
    return [k, v];
  });
  const last = BigInt(head.seq);
  assert.ok(last >= 4n, `a chain of ${last}`);
  const cut = await rewriteAudit(dataDir, (db, k, v) => {
    if (db === 'records' && seqOf(k) > last - 2n) return undefined;
    if (db === 'heads' && k.toString() === uid) {
      const h = { ...head, seq: Number(last - 2n), hash: recs.get(last - 1n).prev };
      return [k, Buffer.from(JSON.stringify(h))];
    }
    return [k, v];
  });
  const v1 = verify(cut);
  assert.equal(v1.status, 1, `a delivered chain cut at its end passes verify: ${v1.stdout}${v1.stderr}`);
  assert.match(v1.stdout, /past the chain's last record/);

  // the chain deleted whole
  const gone = await rewriteAudit(dataDir, (db, k, v) => {
    if (db === 'heads' || db === 'records') return undefined;
    return [k, v];
  });
  const v2 = verify(gone);
  assert.equal(v2.status, 1, `a delivered chain deleted whole passes verify: ${v2.stdout}${v2.stderr}`);
  assert.match(v2.stdout, /does not exist/);
});
