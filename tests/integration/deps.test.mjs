// README, "Two commands": on a fresh Debian 12 machine `make run` and
// `make test` install what is missing (tests/deps.sh) and then work. This
// machine has had more installed by hand than deps.sh installs, so a
// missing package never showed here: these tests check deps.sh itself.
//
// 1. Every file the build and the tests use (headers, libraries, the
//    sanitizer and libFuzzer runtimes, the tools the tests and the make
//    targets run) belongs to a package that `apt-get install
//    --no-install-recommends <deps.sh's list>` brings — the list's Depends
//    closure (apt-cache, offline) — or to one every Debian system has
//    (Essential or Priority required). libclang-rt-14-dev (clang's
//    libFuzzer and ASan runtimes: `make fuzz`, part of `make test`) is only
//    Recommended by clang, so a fresh machine lacked it.
// 2. Node.js: the test tools need 20 or later (tests/package.json
//    "engines"); Debian 12's own nodejs is 18. deps.sh installed it and
//    went on to tests that cannot run; it now installs nodejs from apt only
//    when apt offers 20 or later, and otherwise stops with what to do.
//    Checked with stand-ins for dpkg-query, apt-get, apt-cache, node and
//    npm on PATH: nothing is installed for real.
// ci-variants: build-w1 (checks deps.sh and the machine, not the gateway)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, makeTempDir } from './lib/gateway.mjs';

const DEPS = path.join(REPO_ROOT, 'tests/deps.sh');
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
const debian = fs.existsSync('/etc/debian_version') && have('apt-cache') && have('dpkg-query');

function depsList() {
  const r = spawnSync('sh', [DEPS, '--list'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `deps.sh --list: ${r.stderr}`);
  return r.stdout.split(/\s+/).filter(Boolean);
}

/** The paths dpkg may know file f by: itself, the /usr-merged twin of /usr/bin, /usr/sbin and /usr/lib paths. */
const twins = (f) => [f, f.replace(/^\/usr\/(s?bin)\//, '/$1/'), f.replace(/^\/usr\/lib\//, '/lib/')];

/** The package owning each of files (one dpkg -S for all: it reads its whole file list each time), or null. */
function owners(files) {
  const paths = [...new Set(files.flatMap(twins))];
  const r = spawnSync('dpkg', ['-S', ...paths], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const of = new Map();
  for (const l of (r.stdout ?? '').split('\n')) {
    const i = l.indexOf(': /');
    if (i > 0 && !l.startsWith('diversion by')) of.set(l.slice(i + 2), l.slice(0, i).split(',')[0].split(':')[0].trim());
  }
  return new Map(files.map((f) => [f, twins(f).map((p) => of.get(p)).find(Boolean) ?? null]));
}

function header(h) {
  const r = spawnSync('cc', ['-H', '-fsyntax-only', '-x', 'c', '-', '-I/usr/share/include/llhttp'],
    { input: `#include <${h}>\n`, encoding: 'utf8' });
  const m = /^\. (\S+)$/m.exec(r.stderr);
  return m ? m[1] : null;
}
const printFile = (cc, name) => {
  const r = spawnSync(cc, [`-print-file-name=${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && path.isAbsolute(p) ? path.resolve(p) : null;
};
const tool = (name) => {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? fs.realpathSync(r.stdout.trim()) : null;
};

test('every file the build and the tests use comes from a package deps.sh installs (or every Debian has)', { skip: !debian && 'not Debian' }, () => {
  const arch = { x64: 'x86_64', arm64: 'aarch64' }[os.arch()] ?? os.arch();
  const need = {
    // the build (Makefile): llhttp's C sources, the headers and libraries it links
    'llhttp sources': '/usr/share/llhttp/llhttp.c',
    'llhttp.h': '/usr/share/include/llhttp/llhttp.h',
    // Unicode's case foldings, made into a C table at build time (store/casefold.awk)
    'CaseFolding.txt': '/usr/share/unicode/CaseFolding.txt',
    ...Object.fromEntries(['uv.h', 'lmdb.h', 'jansson.h', 'openssl/ssl.h', 'curl/curl.h'].map((h) => [h, header(h)])),
    ...Object.fromEntries(['libuv.so', 'liblmdb.so', 'libjansson.so', 'libssl.so', 'libcrypto.so', 'libcurl.so']
      .map((l) => [l, printFile('cc', l)])),
    cc: tool('cc'),
    make: tool('make'),
    // make asan / make tsan (gcc's sanitizer runtimes)
    ...Object.fromEntries(['libasan.so', 'libubsan.so', 'libtsan.so'].map((l) => [l, printFile('cc', l)])),
    // make fuzz (part of make test): clang with libFuzzer and ASan
    clang: tool('clang'),
    'clang libFuzzer': have('clang') ? printFile('clang', `libclang_rt.fuzzer-${arch}.a`) : null,
    'clang ASan': have('clang') ? printFile('clang', `libclang_rt.asan-${arch}.a`) : null,
    // make fuzz-coverage
    'llvm-profdata': tool('llvm-profdata') ?? tool('llvm-profdata-14'),
    'llvm-cov': tool('llvm-cov') ?? tool('llvm-cov-14'),
    // what the tests run
    chromium: '/usr/bin/chromium',
    mdb_dump: tool('mdb_dump'),
    mdb_load: tool('mdb_load'),
    openssl: tool('openssl'),
    prlimit: tool('prlimit'),
    taskset: tool('taskset'),
    timeout: tool('timeout'),
    xargs: tool('xargs'),
    // make bench's baselines
    nginx: tool('nginx') ?? (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null),
    wrk: tool('wrk'),
    h2load: tool('h2load'),
  };
  const list = depsList().filter((p) => p !== 'nodejs' && p !== 'npm');
  const closure = new Set(execFileSync('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests',
    '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...list], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n').filter((l) => l && !l.startsWith(' ')).map((l) => l.trim()));
  const base = new Set(execFileSync('dpkg-query', ['-W', '-f', '${Package}\t${Essential}\t${Priority}\n'], { encoding: 'utf8' })
    .split('\n').map((l) => l.split('\t')).filter(([, e, p]) => e === 'yes' || p === 'required').map(([n]) => n));
  const problems = [];
  const owner = owners(Object.values(need).filter((f) => f && fs.existsSync(f)));
  for (const [what, f] of Object.entries(need)) {
    if (!f || !fs.existsSync(f)) { problems.push(`${what}: not on this machine (make deps installs it?)`); continue; }
    const pkg = owner.get(f);
    if (!pkg) { problems.push(`${what}: ${f} belongs to no package`); continue; }
    if (!closure.has(pkg) && !base.has(pkg)) problems.push(`${what}: ${f} is in ${pkg}, which deps.sh's list does not bring`);
  }
  assert.deepEqual(problems, [], 'a fresh Debian machine would lack these after make deps');
});

/** Runs a copy of deps.sh with stand-ins on PATH; returns {status, stderr, apt} (apt: the apt-get calls). */
async function runDeps({ node, aptNode, args = [] }) {
  const dir = await makeTempDir('mcpgate-deps-');
  const bin = path.join(dir, 'bin');
  const tests = path.join(dir, 'tests');
  fs.mkdirSync(bin);
  fs.mkdirSync(tests);
  fs.copyFileSync(DEPS, path.join(tests, 'deps.sh'));
  fs.writeFileSync(path.join(tests, 'package.json'), '{}\n');
  fs.writeFileSync(path.join(tests, 'package-lock.json'), '{}\n');
  const log = path.join(dir, 'apt.log');
  const stub = (name, body) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  stub('dpkg-query', `echo 'install ok installed'`); // every Debian package present
  stub('apt-get', `echo "$*" >> '${log}'; exit 0`);
  stub('apt-cache', `echo 'nodejs:'; echo '  Installed: (none)'; echo '  Candidate: ${aptNode ?? '(none)'}'`);
  stub('sudo', `exec "$@"`);
  stub('npm', 'mkdir -p node_modules; exit 0'); // npm ci, in tests/
  if (node) stub('node', `case "$*" in *--version*) echo v${node} ;; *) echo ${node.split('.')[0]} ;; esac`);
  // PATH: the stand-ins, then only what a shell needs (no real node, npm or apt)
  const sysPath = ['/usr/bin', '/bin'].filter((d) => fs.existsSync(d));
  const shim = path.join(dir, 'sys');
  fs.mkdirSync(shim);
  for (const t of ['sh', 'cat', 'dirname', 'mktemp', 'rm', 'touch', 'tail', 'id', 'env', 'sed', 'cut', 'head', 'grep', 'tr', 'mkdir']) {
    for (const d of sysPath) if (fs.existsSync(path.join(d, t))) { fs.symlinkSync(path.join(d, t), path.join(shim, t)); break; }
  }
  const r = spawnSync('/bin/sh', [path.join(tests, 'deps.sh'), ...args], {
    encoding: 'utf8', env: { PATH: `${bin}:${shim}`, HOME: dir },
  });
  const apt = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : [];
  return { status: r.status, stderr: r.stderr, apt };
}

test('deps.sh stops on a Node.js older than 20, saying what to do, and never installs an old one', async () => {
  for (const c of [{ node: '18.20.4', aptNode: '18.20.4+dfsg-1~deb12u3' }, { node: null, aptNode: '18.20.4+dfsg-1~deb12u3' }, { node: null }]) {
    const r = await runDeps(c);
    assert.notEqual(r.status, 0, `refused (${JSON.stringify(c)}): ${r.stderr}`);
    assert.match(r.stderr, /Node\.js 20 or later/, `names the version it needs: ${r.stderr}`);
    assert.match(r.stderr, /found (v18\.20\.4|none)/, `says what it found: ${r.stderr}`);
    assert.ok(!r.apt.some((l) => /install.*\bnodejs\b/.test(l)), `no nodejs 18 installed: ${r.apt.join(' | ')}`);
  }
});

test('deps.sh installs nodejs from apt when apt offers 20 or later', async () => {
  const r = await runDeps({ node: null, aptNode: '20.19.2+dfsg-1' });
  assert.ok(r.apt.some((l) => /install.* nodejs npm/.test(l)), `apt-get install nodejs npm: ${r.apt.join(' | ')}`);
});

test('deps.sh is content with a Node.js 20 already on PATH, and make run (--build) never asks for one', async () => {
  const ok = await runDeps({ node: '20.20.2' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(ok.apt, [], 'nothing installed');
  const build = await runDeps({ node: null, args: ['--build'] });
  assert.equal(build.status, 0, build.stderr);
  assert.deepEqual(build.apt, [], 'nothing installed for make run');
});
