// ci-variants: build-w1 (start-up and offline checks: one run is enough)
// Who may write where mcpgate keeps its secrets (found by the operations
// review). The data directory holds the operator token, the store, the
// audit log and, by default, the master key; its mode and owner were never
// checked. In a 0777 data directory another local user replaced
// admin.token with a token of their own and administered every tenant; a
// token or key file owned by another user (who can write a token or a key
// of theirs into it) was taken; and `store check` or `key rotate` run as
// root on the service user's directory left root-owned lock files and key
// after it, so the server, started again as the service user, failed with
// an error that named no file. Now:
// - a data directory (or its store/ or audit/) writable by every user is
//   refused, naming it and the chmod that fixes it;
// - one owned by another user than the one running is refused (root-owned
//   is fine for a service user: a volume the platform mounted), and root
//   running any command but `backup` on a service user's directory is
//   refused with the command to run instead, before it creates anything;
// - an operator token or master key file owned by another user than root
//   or the one running is refused;
// - a group-writable one starts with a warning.
// Tests that need another user run the binary as nobody, so they need
// root; without it they say so and are skipped (never counted as passed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startGateway, makeTempDir, gatewayBin } from './lib/gateway.mjs';
import { createTenant, operatorToken } from './lib/admin.mjs';

const root = process.getuid?.() === 0;
const NOBODY = 65534, OTHER = 65533;
const asRoot = { skip: root ? false : 'needs root: the test runs the gateway as another user' };

function env() {
  const e = { ...process.env };
  for (const k of Object.keys(e)) if (k.startsWith('MCPGATE_')) delete e[k];
  return e;
}

/** Runs the binary to its end (or kills it after timeout: it started). */
function run(args, { uid, timeout = 8000 } = {}) {
  const opts = { env: env(), encoding: 'utf8', timeout };
  if (uid !== undefined) Object.assign(opts, { uid, gid: uid });
  const r = spawnSync(gatewayBin(), args, opts);
  return { ...r, started: r.error?.code === 'ETIMEDOUT' || r.signal === 'SIGTERM' };
}

const serve = (data, more = []) => ['serve', '--listen', '127.0.0.1:0', '--data', data, '--egress-allow', '127.0.0.0/8', ...more];

/** Every path under dir with its owner. */
function owners(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out[path.relative(dir, p)] = fs.lstatSync(p).uid;
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** A data directory with a store, an audit log and a key in it, made by a
 * gateway run as root (then handed to whoever the test needs). */
async function populated() {
  const g = await startGateway();
  await createTenant(g.port, operatorToken(g.dataDir), 'acme');
  await g.stop();
  return g.dataDir;
}

test('a data directory every user may write to is refused, naming it and the chmod; nothing is created in it', async () => {
  const parent = await makeTempDir();
  const data = path.join(parent, 'data');
  fs.mkdirSync(data);
  fs.chmodSync(data, 0o777);
  const r = run(serve(data));
  assert.equal(r.started, false, `refused rather than started: ${r.stderr.slice(-600)}`);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`${data} is writable by every user \\(mode 777\\)`), r.stderr);
  assert.match(r.stderr, new RegExp(`chmod o-w ${data}`), r.stderr);
  assert.deepEqual(fs.readdirSync(data), [], 'no token, lock or store made in it');
  // the same for its store/ (anyone could put a store of theirs there)
  const d2 = await populated();
  fs.chmodSync(path.join(d2, 'store'), 0o777);
  const r2 = run(serve(d2));
  assert.equal(r2.started, false, r2.stderr.slice(-600));
  assert.match(r2.stderr, new RegExp(`${path.join(d2, 'store')} is writable by every user`), r2.stderr);
  // and the offline commands
  const c = run(['store', 'check', '--data', d2]);
  assert.equal(c.status, 1, c.stderr);
  assert.match(c.stderr, /is writable by every user/, c.stderr);
  // fixed as it says, it starts
  fs.chmodSync(path.join(d2, 'store'), 0o700);
  assert.equal(run(['store', 'check', '--data', d2]).status, 0);
});

test('a group-writable data directory starts, with a warning that says so', async () => {
  const data = await makeTempDir();
  fs.chmodSync(data, 0o770);
  const g = await startGateway({ dataDir: data });
  try {
    const w = g.logs().find((e) => e.level === 'warn' && /is writable by its group \(mode 770\)/.test(e.msg || ''));
    assert.ok(w, 'warned:\n' + g.stderrText().slice(-1500));
  } finally {
    await g.stop();
  }
});

test('root running an offline command on the service user\'s data directory is refused before it creates a file', asRoot, async () => {
  const data = await populated();
  spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, data]);
  const before = owners(data);
  for (const args of [['store', 'check'], ['key', 'rotate'], ['audit', 'verify'], ['audit', 'prune', '--before', '1']]) {
    const r = run([...args, '--data', data]);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${data} belongs to uid ${NOBODY}, and this runs as root`), r.stderr);
    assert.match(r.stderr, new RegExp(`sudo -u '#${NOBODY}' mcpgate`), r.stderr);
    assert.deepEqual(owners(data), before, `${args.join(' ')} created or changed nothing`);
  }
  // serve too: started as root, it would leave root's lock and files
  const s = run(serve(data));
  assert.equal(s.started, false, s.stderr.slice(-600));
  assert.match(s.stderr, /belongs to uid 65534, and this runs as root/);
  assert.deepEqual(owners(data), before);
  // run as its owner, the same commands work, and serve starts
  assert.equal(run(['store', 'check', '--data', data], { uid: NOBODY }).status, 0);
  assert.equal(run(['audit', 'verify', '--data', data], { uid: NOBODY }).status, 0);
  assert.equal(run(serve(data), { uid: NOBODY, timeout: 3000 }).started, true, 'serve as the owner starts');
  for (const [p, uid] of Object.entries(owners(data))) assert.equal(uid, NOBODY, `${p} is still the service user's`);
  // a backup only reads: root may take it — of a restored store too, which
  // has no lock files: LMDB makes one even opened read-only, and root's
  // would keep the server, run as its user, from opening the store (found
  // by review). The ones it makes are the directory owner's.
  const dest = path.join(await makeTempDir(), 'b');
  for (const f of ['store/lock.mdb', 'audit/lock.mdb']) fs.rmSync(path.join(data, f), { force: true });
  const b = run(['backup', dest, '--data', data]);
  assert.equal(b.status, 0, b.stderr);
  for (const [p, uid] of Object.entries(owners(data))) assert.equal(uid, NOBODY, `${p} is the service user's after root's backup`);
  assert.equal(run(serve(data), { uid: NOBODY, timeout: 3000 }).started, true, 'serve as the owner starts after root\'s backup');
});

test('a data directory another (non-root) user owns is refused; a root-owned one is fine for the service user', asRoot, async () => {
  const parent = await makeTempDir();
  fs.chmodSync(parent, 0o755);
  const data = path.join(parent, 'data');
  fs.mkdirSync(data, { mode: 0o700 });
  fs.chownSync(data, OTHER, OTHER);
  const r = run(serve(data), { uid: NOBODY });
  assert.equal(r.started, false, r.stderr.slice(-600));
  assert.match(r.stderr, new RegExp(`${data} belongs to uid ${OTHER}, not to uid ${NOBODY} that runs mcpgate`), r.stderr);
  // root's directory with the service's group (a platform's volume): it starts
  const vol = path.join(parent, 'vol');
  fs.mkdirSync(vol);
  fs.chownSync(vol, 0, NOBODY);
  fs.chmodSync(vol, 0o2770);
  const ok = run(serve(vol), { uid: NOBODY, timeout: 3000 });
  assert.equal(ok.started, true, `started: ${ok.stderr.slice(-600)}`);
  assert.match(ok.stderr, /is writable by its group/, 'and warned about the group');
});

test('an operator token or master key file owned by another user is refused, naming the file and the chown', asRoot, async () => {
  const data = await populated();
  const keyDir = await makeTempDir();
  const tok = path.join(keyDir, 'admin.token');
  fs.writeFileSync(tok, 'another-users-operator-token-0123\n', { mode: 0o600 });
  fs.chownSync(tok, OTHER, OTHER);
  const r = run(serve(data, ['--admin-token-file', tok]));
  assert.equal(r.started, false, r.stderr.slice(-600));
  assert.match(r.stderr, new RegExp(`operator token file ${tok} belongs to uid ${OTHER}, neither root nor uid 0`), r.stderr);
  assert.match(r.stderr, new RegExp(`chown 0 ${tok}`), r.stderr);
  assert.doesNotMatch(r.stderr, /another-users-operator-token/, 'the token is never printed');
  const key = path.join(data, 'master.key');
  fs.chownSync(key, OTHER, OTHER);
  const k = run(serve(data));
  assert.equal(k.started, false, k.stderr.slice(-600));
  assert.match(k.stderr, new RegExp(`master key file ${key} belongs to uid ${OTHER}`), k.stderr);
  const c = run(['store', 'check', '--data', data]);
  assert.equal(c.status, 1, c.stderr);
  assert.match(c.stderr, /master key file .* belongs to uid 65533/, c.stderr);
  fs.chownSync(key, 0, 0);
  assert.equal(run(['store', 'check', '--data', data]).status, 0, 'its owner back: the store checks');
});
