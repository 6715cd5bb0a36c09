// A damaged store file at start (a bad disk, a copy or restore that went
// wrong): the operator gets one JSON error line naming the file, saying it
// is damaged and to restore it from a backup (`mcpgate backup`), and the
// process exits non-zero — whether LMDB reports the damage (MDB_CORRUPTED,
// MDB_PAGE_NOTFOUND), stops on one of its own assertions (abort), or is
// sent outside the file by a bad page (SIGBUS/SIGSEGV: the line is written
// from a handler installed only while the store is opened and read through
// at start, and the signal is raised again with its default action, so the
// process still dies of it and dumps core). Before, the last two died with
// no word of ours (a bare "Bus error", or LMDB's own assertion text).
//
// Each case damages a copy of one small store the way it is found in the
// field, at the LMDB page level (tests/integration/lib: none; the page
// layout read here is LMDB 0.9's: a 16-byte page header, node offsets from
// byte 16, nodes of {lo, hi, flags, ksize, key, data}).
// ci-variants: build-w1 build-asan-w2
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startGateway, makeTempDir, gatewayBin, findSanitizerReport } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';

let fixture; // a data directory whose store has tenants over several leaf pages

before(async () => {
  const gw = await startGateway();
  const op = operatorToken(gw.dataDir);
  await createTenant(gw.port, op, 'acme', 'Acme');
  // enough tenants that their database spans several leaf pages
  for (let i = 0; i < 60; i++) await createTenant(gw.port, op, `tenant-${String(i).padStart(3, '0')}`, `Tenant ${i} with a name long enough to fill pages`);
  assert.equal((await gw.stop()).code, 0);
  fixture = gw.dataDir;
});

/** A copy of the fixture's data directory, its data.mdb handed to damage(buf) → buf. */
async function damagedCopy(damage) {
  const dir = await makeTempDir();
  fs.cpSync(fixture, dir, { recursive: true });
  const file = path.join(dir, 'store', 'data.mdb');
  fs.writeFileSync(file, damage(fs.readFileSync(file)));
  return { dir, file };
}

/** Runs the binary with args to its end, with core dumps off (the re-raised signal would write one). */
function run(args, { timeoutMs = 8000 } = {}) {
  return new Promise((resolve, reject) => {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MCPGATE_')) env[k] = v;
    env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0:exitcode=23';
    const p = spawn('sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', gatewayBin(), ...args],
      { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', timedOut = false;
    p.stdout.resume();
    p.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const t = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(t); reject(e); });
    p.on('close', (code, signal) => {
      clearTimeout(t);
      const rep = findSanitizerReport(stderr);
      if (rep) return reject(new Error(`sanitizer report:\n${rep}`));
      resolve({ code, signal, stderr, timedOut });
    });
  });
}

const serve = (dir) => run(['serve', '--listen', '127.0.0.1:0', '--data', dir]);

/** The refusal: not started, non-zero, one JSON error line naming the file, the damage and the remedy. */
function assertRefusedAsDamaged(r, file, what) {
  assert.equal(r.timedOut, false, `${what}: refused at start rather than serving; stderr: ${r.stderr.slice(-1500)}`);
  assert.doesNotMatch(r.stderr, /mcpgate serving/, `${what}: never served`);
  assert.ok(r.code !== 0 || r.signal, `${what}: non-zero exit`);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const l = lines.find((e) => e.level === 'error' && /damaged/.test(e.msg));
  assert.ok(l, `${what}: a JSON error line says the store is damaged; stderr: ${r.stderr.slice(-1500)}`);
  assert.ok(l.msg.includes(file), `${what}: it names ${file}: ${l.msg}`);
  assert.match(l.msg, /restore it from a backup \(mcpgate backup/, `${what}: it says what to do: ${l.msg}`);
  return l;
}

// ---- LMDB pages -----------------------------------------------------------

const P_LEAF = 0x02;
const pageSize = (buf) => buf.readUInt32LE(16 + 24); // the meta page's free DB md_pad is the page size

/** The nodes of leaf page pg (null when it is no plain leaf). */
function leafNodes(buf, pg) {
  const ps = pageSize(buf);
  const base = pg * ps;
  const flags = buf.readUInt16LE(base + 10);
  if (flags !== P_LEAF || buf.readBigUInt64LE(base) !== BigInt(pg)) return null;
  const n = (buf.readUInt16LE(base + 12) - 16) >> 1;
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const at = base + buf.readUInt16LE(base + 16 + 2 * i);
    const ksize = buf.readUInt16LE(at + 6);
    nodes.push({ at, flags: buf.readUInt16LE(at + 4), key: buf.subarray(at + 8, at + 8 + ksize).toString('latin1') });
  }
  return nodes;
}

/** Leaf pages of the tenants database (keys "t<id>", values the tenant's JSON). */
function tenantLeaves(buf) {
  const out = [];
  for (let pg = 2; pg < buf.length / pageSize(buf); pg++) {
    const nodes = leafNodes(buf, pg);
    if (nodes?.length && nodes.every((n) => n.flags === 0 && /^t(acme|tenant-\d{3})$/.test(n.key))) out.push({ pg, nodes });
  }
  return out;
}

// ---- the cases ------------------------------------------------------------

test('zeros over every page from the fourth on: refused with the damage named and what to do', async () => {
  const { dir, file } = await damagedCopy((buf) => { buf.fill(0, 3 * pageSize(buf)); return buf; });
  const r = await serve(dir);
  assertRefusedAsDamaged(r, file, 'zeroed pages');
  assert.equal(r.code, 1, `LMDB reports this one (MDB_CORRUPTED): a plain exit 1, signal ${r.signal}`);
});

test('a truncated data.mdb (a copy cut short): refused before LMDB reads past its end', async () => {
  const { dir, file } = await damagedCopy((buf) => buf.subarray(0, Math.floor(buf.length / pageSize(buf) / 2) * pageSize(buf)));
  const r = await serve(dir);
  const l = assertRefusedAsDamaged(r, file, 'truncated');
  assert.match(l.msg, /shorter than its pages/, l.msg);
  assert.equal(r.code, 1, `a plain exit 1 (before: SIGBUS), signal ${r.signal}`);
});

/** acme's record made to run past the file's end (see the test below). */
function valuePastTheEnd(buf) {
  const leaves = tenantLeaves(buf);
  assert.ok(leaves.length > 0, 'the tenants database has leaf pages');
  // every copy of acme's record (the live page and any old one LMDB kept):
  // its size now reaches almost a file's length past its start, which is
  // no larger than the file but ends outside it
  let n = 0;
  for (const { nodes } of leaves) {
    for (const node of nodes.filter((x) => x.key === 'tacme')) {
      const size = buf.length - 1;
      buf.writeUInt16LE(size & 0xffff, node.at);
      buf.writeUInt16LE(size >>> 16, node.at + 2);
      n++;
    }
  }
  assert.ok(n > 0, 'acme\'s record found');
  return buf;
}

test('a value that runs past the end of the file: the JSON line, then the signal with its default action', async () => {
  const { dir, file } = await damagedCopy(valuePastTheEnd);
  const r = await serve(dir);
  assertRefusedAsDamaged(r, file, 'value past the end');
  assert.ok(['SIGBUS', 'SIGSEGV'].includes(r.signal), `died of the signal itself (default action, core dump kept): code ${r.code} signal ${r.signal}`);
});

test('mcpgate store check on that store says the same, where it used to die with no word', async () => {
  const { dir, file } = await damagedCopy(valuePastTheEnd);
  const r = await run(['store', 'check', '--data', dir]);
  assertRefusedAsDamaged(r, file, 'store check');
  assert.ok(['SIGBUS', 'SIGSEGV'].includes(r.signal), `code ${r.code} signal ${r.signal}`);
});

test('a zeroed leaf page LMDB stops on (its assertion): the JSON line before the abort', async () => {
  const { dir, file } = await damagedCopy((buf) => {
    const leaves = tenantLeaves(buf);
    const first = leaves.map((x) => x.nodes[0].key).sort()[0];
    const later = leaves.filter((x) => x.nodes[0].key !== first);
    assert.ok(later.length > 0, `several tenant leaf pages (${leaves.length})`);
    const ps = pageSize(buf);
    for (const { pg } of later) buf.fill(0, pg * ps, (pg + 1) * ps);
    return buf;
  });
  const r = await serve(dir);
  const l = assertRefusedAsDamaged(r, file, 'zeroed leaf');
  assert.ok(r.code === 1 || r.signal === 'SIGABRT', `exit 1 (LMDB reported it) or LMDB's abort: code ${r.code} signal ${r.signal}`);
  if (r.signal === 'SIGABRT') assert.match(l.msg, /LMDB stopped the process/, l.msg);
});

test('the same store undamaged starts, and a crash after start is not taken for a damaged store', async () => {
  const dir = await makeTempDir();
  fs.cpSync(fixture, dir, { recursive: true });
  const gw = await startGateway({ dataDir: dir, wrap: ['sh', '-c', 'ulimit -c 0; exec "$0" "$@"'] });
  assert.ok(gw.logs().some((e) => /^store verified: \d+ entries/.test(e.msg ?? '')), 'the start says the store was read through');
  // the handler is gone once the store is verified: SIGSEGV (sent, as a
  // stand-in for a real fault elsewhere) kills with its default action and
  // no line blames the store. ASan keeps its own SIGSEGV handler, which
  // reports instead: only the plain build is asked.
  if (/asan/.test(gatewayBin())) { await gw.stop(); return; }
  gw._expectedExit = true;
  gw.proc.kill('SIGSEGV');
  const ex = await gw.exited();
  assert.equal(ex.signal, 'SIGSEGV');
  assert.ok(!gw.logs().some((e) => /damaged/.test(e.msg ?? '')), 'no line says the store is damaged');
});
