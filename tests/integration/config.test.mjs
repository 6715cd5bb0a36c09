// Configuration: --help, --print-config, precedence (defaults < file < env
// < flags), validation errors, and the separate admin listener.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runGateway, startGateway, makeTempDir, request, makeSelfSignedCert, gatewayBin, scrapeMetrics, metricValue } from './lib/gateway.mjs';

const KEYS = [
  'listen', 'public_url', 'data', 'log_level', 'access_log', 'max_connections', 'max_header_bytes',
  'max_uri_bytes', 'max_body_bytes', 'header_timeout_ms', 'body_timeout_ms', 'idle_timeout_ms',
  'shutdown_timeout_ms', 'tls_listen', 'tls_cert_file', 'tls_key_file', 'admin_listen',
  'trusted_proxies', 'store_map_size', 'master_key_file',
];
const flagOf = (k) => '--' + k.replaceAll('_', '-');
const envOf = (k) => 'MCPGATE_' + k.toUpperCase();

let dataDir;
async function data() { return (dataDir ??= await makeTempDir()); }

/** Runs `serve --print-config ...args` and returns the key → value map. */
async function printConfig(args = [], env = {}) {
  const r = await runGateway(['serve', '--print-config', '--data', await data(), ...args], { env });
  assert.equal(r.timedOut, false, '--print-config exits by itself');
  assert.equal(r.code, 0, `--print-config exit code; stderr: ${r.stderr}`);
  const cfg = {};
  for (const line of r.stdout.split('\n')) {
    if (!line.trim()) continue;
    const m = /^([a-z0-9_]+) = ?(.*)$/.exec(line);
    assert.ok(m, `print-config line is "key = value": ${JSON.stringify(line)}`);
    cfg[m[1]] = m[2].trim();
  }
  return cfg;
}

async function writeConfig(text) {
  const f = path.join(await data(), `cfg-${Math.random().toString(36).slice(2)}.conf`);
  await fs.writeFile(f, text);
  return f;
}

/** The command must refuse to run: non-zero exit and stderr names `key`. */
async function assertRejected(args, env, key) {
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', await data(), ...args], { env, timeoutMs: 5000 });
  assert.equal(r.timedOut, false, `refused rather than started; stderr: ${r.stderr.slice(-500)}`);
  assert.notEqual(r.code, 0, 'non-zero exit');
  const names = [key, key.replaceAll('_', '-')];
  assert.ok(names.some((n) => r.stderr.includes(n)), `stderr names ${key}: ${JSON.stringify(r.stderr.slice(-500))}`);
}

test('serve --help exits 0 and lists every key with its flag and env forms', async () => {
  const r = await runGateway(['serve', '--help']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout + r.stderr;
  const missing = [];
  for (const k of KEYS) {
    if (!out.includes(flagOf(k))) missing.push(flagOf(k));
    if (!out.includes(envOf(k))) missing.push(envOf(k));
  }
  assert.deepEqual(missing, [], 'every flag and env form appears in --help');
});

test('--print-config lists every key as "key = value"', async () => {
  const cfg = await printConfig();
  for (const k of KEYS) assert.ok(k in cfg, `print-config has ${k}`);
});

test('public_url defaults to http://<listen>', async () => {
  const cfg = await printConfig(['--listen', '127.0.0.1:9999']);
  assert.equal(cfg.listen, '127.0.0.1:9999');
  assert.equal(cfg.public_url, 'http://127.0.0.1:9999');
  const cfg2 = await printConfig(['--listen', '127.0.0.1:9999', '--public-url', 'https://gw.example.com']);
  assert.equal(cfg2.public_url, 'https://gw.example.com');
  // derived from a listen on port 80: the origin browsers send, without :80
  assert.equal((await printConfig(['--listen', '127.0.0.1:80'])).public_url, 'http://127.0.0.1');
});

// The pages' forms are refused unless Origin equals public_url's origin, and
// browsers send the host in lower case and no default port: another spelling
// of the same origin made every form fail (pages review). Refused at start.
test('a public_url spelled unlike the Origin browsers send (default port, upper-case host) is refused, saying what to use', async () => {
  const dir = await data();
  for (const [u, cause] of [['https://gw.example.com:443', /drop the default port :443: "https:\/\/gw\.example\.com"/],
    ['http://gw.example.com:80', /drop the default port :80: "http:\/\/gw\.example\.com"/],
    ['https://GW.Example.com', /lower case/]]) {
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, '--public-url', u], { timeoutMs: 5000 });
    assert.equal(r.timedOut, false, `${u}: refused rather than started`);
    assert.notEqual(r.code, 0, u);
    assert.match(r.stderr, /config key public_url/, r.stderr);
    assert.match(r.stderr, cause, r.stderr);
  }
  assert.equal((await printConfig(['--public-url', 'https://gw.example.com:8443'])).public_url, 'https://gw.example.com:8443');
});

// Found by the operations review: a public_url with user:password@ started
// (and the start log wrote the password), and one with port 99999 or 0
// started with an origin no browser sends. Refused, the password unsaid.
test('a public_url with a user name or password, or a port past 65535 or with a leading zero, is refused', async () => {
  const dir = await data();
  for (const [u, cause] of [['https://ops:s3cret-pw@gw.example.com', /no user name or password/],
    ['https://gw.example.com:99999', /port in digits, at most 65535/], ['https://gw.example.com:', /port in digits/],
    ['https://gw.example.com:8o', /port in digits/],
    ['http://[::1', /closing '\]'/], ['http://[]', /needs an address/],
    // found by review: browsers send ":8080", never ":08080"; '\' ends a host for them
    ['http://gw.example.com:08080', /without a leading zero/], ['https://gw.example.com:0443', /without a leading zero/],
    ['http://gw.example.com\\evil', /'\\' or '%'/], ['http://gw%2eexample.com', /'\\' or '%'/]]) {
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, '--public-url', u], { timeoutMs: 5000 });
    assert.equal(r.timedOut, false, `${u}: refused rather than started`);
    assert.notEqual(r.code, 0, u);
    assert.match(r.stderr, /config key public_url/, r.stderr);
    assert.match(r.stderr, cause, r.stderr);
    assert.doesNotMatch(r.stderr, /s3cret-pw/, 'the password is not repeated');
  }
  assert.equal((await printConfig(['--public-url', 'http://[::1]:8080'])).public_url, 'http://[::1]:8080');
});

// Found by the operations review: settings that trust everyone started
// without a word. They still start (the operator may mean it), warned.
test('trusted_proxies that trust every address, and egress lists that reach the cloud metadata address, are warned about at start', async () => {
  const warned = (gw, re) => gw.logs().some((e) => e.level === 'warn' && re.test(e.msg || ''));
  const a = await startGateway({ args: ['--trusted-proxies', '0.0.0.0/0'], egressAllow: '0.0.0.0/0' });
  try {
    assert.ok(warned(a, /trusted_proxies holds every IPv4 address: any client may then name its own address in X-Forwarded-For/),
      a.stderrText().slice(-2000));
    assert.ok(warned(a, /egress_allow allows 169\.254\.169\.254, a cloud metadata address/), a.stderrText().slice(-2000));
  } finally {
    await a.stop();
  }
  const b = await startGateway({ args: ['--trusted-proxies', '::/0', '--egress-allow-untrusted', '169.254.0.0/16'], egressAllow: '127.0.0.0/8,100.64.0.0/10' });
  try {
    assert.ok(warned(b, /trusted_proxies holds every IPv6 address/), b.stderrText().slice(-2000));
    assert.ok(warned(b, /egress_allow_untrusted allows 169\.254\.169\.254/), b.stderrText().slice(-2000));
    // Alibaba Cloud's metadata service sits in the carrier-grade NAT range
    assert.ok(warned(b, /^egress_allow allows 100\.100\.100\.200/), b.stderrText().slice(-2000));
  } finally {
    await b.stop();
  }
  // what the tests run with (loopback proxies and egress) says nothing
  const c = await startGateway({ args: ['--trusted-proxies', '127.0.0.1/32'] });
  try {
    assert.ok(!warned(c, /trusted_proxies holds every|a cloud metadata address/), c.stderrText().slice(-2000));
  } finally {
    await c.stop();
  }
});

test('a public_url derived from a wildcard listen address is warned about at start (it points nowhere)', async () => {
  const gw = await startGateway({ args: ['--listen', '0.0.0.0:0'] });
  try {
    const l = await gw.waitForLog((x) => /public_url is not set and listen is a wildcard address/.test(x.msg ?? ''));
    assert.match(l.msg, /say http:\/\/0\.0\.0\.0:\d+, which no client can reach; set public_url \(MCPGATE_PUBLIC_URL\)/);
  } finally {
    await gw.stop();
  }
  const quiet = await startGateway({ args: ['--listen', '0.0.0.0:0', '--public-url', 'https://gw.example.com'] });
  try {
    await request(quiet.port, { path: '/healthz' });
    assert.equal(quiet.logs().some((x) => /wildcard address/.test(x.msg ?? '')), false, 'no warning once public_url is set');
  } finally {
    await quiet.stop();
  }
});

test('precedence: defaults < --config file < MCPGATE_* env < flags', async () => {
  const defaults = await printConfig();
  const file = await writeConfig([
    '# a comment line',
    '',
    'max_connections = 111',
    'max_body_bytes = 5000',
    '   # indented comment',
    'idle_timeout_ms = 7000',
    'header_timeout_ms=1234',
    '',
  ].join('\n'));
  const f = await printConfig(['--config', file]);
  assert.equal(f.max_connections, '111');
  assert.equal(f.max_body_bytes, '5000');
  assert.equal(f.idle_timeout_ms, '7000');
  assert.equal(f.header_timeout_ms, '1234');
  assert.equal(f.max_uri_bytes, defaults.max_uri_bytes, 'keys not in the file keep their defaults');

  const e = await printConfig(['--config', file], { MCPGATE_MAX_CONNECTIONS: '222', MCPGATE_MAX_BODY_BYTES: '6000' });
  assert.equal(e.max_connections, '222', 'env beats file');
  assert.equal(e.max_body_bytes, '6000');
  assert.equal(e.idle_timeout_ms, '7000', 'file still applies where env is silent');

  const fl = await printConfig(['--config', file, '--max-connections', '333', '--max-body-bytes=7000'],
    { MCPGATE_MAX_CONNECTIONS: '222', MCPGATE_MAX_BODY_BYTES: '6000' });
  assert.equal(fl.max_connections, '333', '--flag value beats env');
  assert.equal(fl.max_body_bytes, '7000', '--flag=value beats env');
  assert.equal(fl.idle_timeout_ms, '7000');

  const envOnly = await printConfig([], { MCPGATE_LOG_LEVEL: 'debug' });
  assert.equal(envOnly.log_level, 'debug', 'env beats default');
});

test('unknown flag → non-zero exit naming it', async () => {
  await assertRejected(['--bogus', '1'], {}, 'bogus');
});

test('unknown key in the config file → non-zero exit naming it', async () => {
  const file = await writeConfig('max_connections = 10\nbogus_key = 1\n');
  await assertRejected(['--config', file], {}, 'bogus_key');
});

test('out-of-range value → non-zero exit naming the key', async () => {
  // 0 is "auto" (from the descriptor limit); below and above the bounds fail
  await assertRejected(['--max-connections', '-1'], {}, 'max_connections');
  await assertRejected(['--max-connections', '1000001'], {}, 'max_connections');
  await assertRejected(['--connections-per-address', '-1'], {}, 'connections_per_address');
  await assertRejected([], { MCPGATE_CONNECTIONS_PER_ADDRESS: 'many' }, 'connections_per_address');
  await assertRejected(['--send-timeout-ms', '5'], {}, 'send_timeout_ms');
  await assertRejected([], { MCPGATE_SEND_TIMEOUT_MS: 'soon' }, 'send_timeout_ms');
  // the audit queue's cap: fewer than 1,000 records would refuse calls at a burst
  await assertRejected(['--audit-queue-max', '999'], {}, 'audit_queue_max');
  await assertRejected([], { MCPGATE_AUDIT_QUEUE_MAX: '10000001' }, 'audit_queue_max');
  await assertRejected(['--audit-queue-max', 'lots'], {}, 'audit_queue_max');
  // the budgets of upstream connections and of buffered bytes
  await assertRejected(['--upstream-connections', '-1'], {}, 'upstream_connections');
  await assertRejected([], { MCPGATE_UPSTREAM_CONNECTIONS: 'plenty' }, 'upstream_connections');
  await assertRejected(['--mcp-buffered-max', '2T'], {}, 'mcp_buffered_max');
  await assertRejected([], { MCPGATE_MCP_BUFFERED_MAX: 'lots' }, 'mcp_buffered_max');
});

test('wrong type (flag and env) → non-zero exit naming the key', async () => {
  await assertRejected(['--max-body-bytes', 'abc'], {}, 'max_body_bytes');
  await assertRejected([], { MCPGATE_MAX_BODY_BYTES: 'abc' }, 'max_body_bytes');
});

test('the SIEM sink keys: a bad URL, an unknown format, a token file missing or empty → non-zero exit naming the key', async () => {
  await assertRejected(['--audit-sink-url', 'ftp://siem.example.com/in'], {}, 'audit_sink_url');
  await assertRejected(['--audit-sink-url', 'https://siem.example.com/in#frag'], {}, 'audit_sink_url');
  await assertRejected(['--audit-sink-format', 'syslog'], {}, 'audit_sink_format');
  const dir = await data();
  const empty = `${dir}/empty.token`;
  (await import('node:fs')).writeFileSync(empty, '\n');
  await assertRejected(['--audit-sink-url', 'https://siem.example.com/in', '--audit-sink-token-file', `${dir}/missing.token`], {}, 'audit_sink_token_file');
  await assertRejected(['--audit-sink-url', 'https://siem.example.com/in', '--audit-sink-token-file', empty], {}, 'audit_sink_token_file');
});

// A CA file is read by libcurl only at the first fetch that uses it (the
// first SIEM POST, the first client metadata document): a wrong path used to
// start clean and fail hours later. Every *_ca_file is checked at start, and
// tenant_ca_dir (a directory).
test('a CA file key naming a missing, unreadable or certificate-less file (tenant_ca_dir: no directory) → refused at start, naming key, path and cause', async () => {
  const dir = await data();
  const noPem = path.join(dir, 'not-a-ca.pem');
  fsSync.writeFileSync(noPem, 'this is not a certificate\n');
  const keyOnly = path.join(dir, 'key-only.pem');
  const { key, cert } = makeSelfSignedCert(dir, 'ca-check');
  fsSync.copyFileSync(key, keyOnly); // a PEM file, but no certificate in it
  const fifo = path.join(dir, 'ca.fifo'); // opened blocking, it hung the start
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const cases = [
    ['cimd_ca_file', fifo, /not a regular file/],
    ['audit_sink_ca_file', path.join(dir, 'missing-ca.pem'), /No such file or directory/],
    ['cimd_ca_file', path.join(dir, 'missing-ca.pem'), /No such file or directory/],
    ['cimd_ca_file', dir, /Is a directory/],
    ['audit_sink_ca_file', noPem, /no PEM certificate/],
    ['cimd_ca_file', keyOnly, /no PEM certificate/],
    // the directory of the tenants' CA files: a directory, by an absolute path
    ['tenant_ca_dir', path.join(dir, 'missing-dir'), /No such file or directory/],
    ['tenant_ca_dir', noPem, /Not a directory/],
    ['tenant_ca_dir', 'relative/ca', /absolute path/],
  ];
  for (const [key, file, cause] of cases) {
    for (const [args, env] of [[[flagOf(key), file], {}], [[], { [envOf(key)]: file }]]) {
      const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, ...args], { env, timeoutMs: 5000 });
      assert.equal(r.timedOut, false, `${key}=${file}: refused rather than started; stderr: ${r.stderr.slice(-500)}`);
      assert.notEqual(r.code, 0, `${key}=${file}: non-zero exit`);
      const line = r.stderr.split('\n').find((l) => l.includes(key));
      assert.ok(line, `a line names ${key}: ${r.stderr.slice(-800)}`);
      assert.ok(line.includes(file), `it names the path ${file}: ${line}`);
      assert.match(line, cause, line);
      assert.equal(JSON.parse(line).level, 'error', `a JSON error line: ${line}`);
    }
  }
  // a file with a certificate starts
  const gw = await startGateway({ args: ['--audit-sink-ca-file', cert, '--cimd-ca-file', cert, '--tenant-ca-dir', dir] });
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200);
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});

// The operator token file is created when missing; one that is there but
// cannot be read was taken for missing, and its creation then failed with
// "File exists", which says nothing about the cause.
test('an operator token file that exists but cannot be read → refused naming the file and the cause', async () => {
  const dir = await makeTempDir();
  {
    fsSync.chmodSync(dir, 0o777);
    const tok = path.join(dir, 'admin.token');
    fsSync.writeFileSync(tok, 'an-operator-token-0123456789\n', { mode: 0o600 });
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_')) delete env[k];
    const opts = { env, encoding: 'utf8', timeout: 8000 };
    // root reads any file: run as nobody, for whom the 0600 root file is unreadable
    if (process.getuid?.() === 0) Object.assign(opts, { uid: 65534, gid: 65534 });
    else fsSync.chmodSync(tok, 0o000);
    const r = spawnSync(gatewayBin(), ['serve', '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data'), '--admin-token-file', tok], opts);
    assert.notEqual(r.status, 0, `refused: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /File exists/, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot read operator token file ${tok}: Permission denied`), r.stderr);
  }
});

test('a listen host with a space or a quote is refused (fuzz_config: the public_url derived from it was unusable)', async () => {
  await assertRejected(['--listen', '00.0. .0:9'], {}, 'listen');
  await assertRejected(['--listen', '"gw":9'], {}, 'listen');
  await assertRejected([], { MCPGATE_LISTEN: 'a b:80' }, 'listen');
});

test('a config line too long for the reader is refused, not split into two lines', async () => {
  // before: the tail of a long line was read as a line of its own, here "workers = 7"
  const file = await writeConfig(`data = ${'x'.repeat(4090)}workers = 7\n`);
  const r = await runGateway(['serve', '--print-config', '--config', file]);
  assert.notEqual(r.code, 0, r.stdout.slice(0, 200));
  assert.match(r.stderr, /line longer than/);
});

test('what --print-config prints loads again as --config, to the same configuration', async () => {
  // a value with blanks at its ends, or quotes of its own, is printed quoted (fuzz_config)
  const first = await runGateway(['serve', '--print-config', '--data', ' /tmp/a dir ', '--workers', '3', '--egress-allow', '10.0.0.0/8']);
  assert.equal(first.code, 0, first.stderr);
  const file = await writeConfig(first.stdout);
  const again = await runGateway(['serve', '--print-config', '--config', file]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
});

test('--admin-listen: /metrics only on the admin listener, /healthz on both', async () => {
  const gw = await startGateway({ args: ['--admin-listen', '127.0.0.1:0'], listeners: ['http', 'admin'] });
  const admin = gw.addrs.admin.port;
  assert.ok(admin && admin !== gw.port, 'admin listener on its own port');
  // the admin listener is the operator's private one: no token needed there (as before)
  const m = await request(admin, { path: '/metrics' });
  assert.equal(m.status, 200);
  assert.match(m.body, /mcpgate_http_requests_total/);
  const m2 = await request(gw.port, { path: '/metrics' });
  assert.equal(m2.status, 404);
  // not on the main listener, not even with the operator token
  const m3 = await request(gw.port, { path: '/metrics', headers: { authorization: `Bearer ${gw.operatorToken()}` } });
  assert.equal(m3.status, 404);
  assert.equal(JSON.parse(m2.body).error, 'not_found');
  assert.equal((await request(admin, { path: '/healthz' })).status, 200);
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200);
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});

test('--admin-listen: the admin API is routed only on the admin listener, whatever the spelling of the path', async () => {
  const gw = await startGateway({ args: ['--admin-listen', '127.0.0.1:0'], listeners: ['http', 'admin'] });
  const admin = gw.addrs.admin.port;
  const auth = { authorization: `Bearer ${gw.operatorToken()}` };
  // the main listener knows no /admin route, even with the operator token
  for (const p of ['/admin/v1', '/admin/v1/', '/admin/v1/tenants', '/admin/v1/tenants/', '/admin/v1//tenants']) {
    const r = await request(gw.port, { path: p, headers: auth });
    assert.equal(r.status, 404, `main listener ${p}: ${r.status} ${r.body}`);
    assert.equal(JSON.parse(r.body).error, 'not_found', p);
    const w = await request(gw.port, { method: 'POST', path: p, headers: { ...auth, 'content-type': 'application/json' }, body: '{"id":"x"}' });
    assert.equal(w.status, 404, `main listener POST ${p}: ${w.status} ${w.body}`);
  }
  // on the admin listener it answers, and still wants a token there
  assert.equal((await request(admin, { path: '/admin/v1/tenants', headers: auth })).status, 200);
  assert.equal((await request(admin, { path: '/admin/v1/tenants' })).status, 401);
  // a path that only starts like the prefix is no admin route anywhere
  assert.equal((await request(admin, { path: '/admin/v1x', headers: auth })).status, 404);
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});

test('flags reach the running server (--config file + env + flag)', async () => {
  const file = await writeConfig('max_uri_bytes = 300\nmax_body_bytes = 300\n');
  const gw = await startGateway({ args: ['--config', file, '--max-body-bytes', '100'], env: { MCPGATE_MAX_BODY_BYTES: '200' } });
  const big = await request(gw.port, { method: 'POST', path: '/healthz', body: 'x'.repeat(150) });
  assert.equal(big.status, 413, 'flag value (100) is the one in force');
  const small = await request(gw.port, { method: 'POST', path: '/healthz', body: 'x'.repeat(50) });
  assert.equal(small.status, 405);
  const longUri = await request(gw.port, { path: '/healthz?' + 'q'.repeat(400) });
  assert.equal(longUri.status, 414, 'file value for max_uri_bytes is in force');
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200);
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});

// max_connections 0 (the default): the gateway raises its soft descriptor
// limit to the hard one and takes three quarters of it, saying so in the log.
test('max_connections defaults to three quarters of the (raised) descriptor limit, logged', async () => {
  const limitsOf = async (pid) => {
    const t = await fs.readFile(`/proc/${pid}/limits`, 'utf8');
    const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(t);
    return { soft: m[1], hard: m[2] };
  };
  const gw = await startGateway();
  try {
    const lim = await limitsOf(gw.proc.pid);
    assert.equal(lim.soft, lim.hard, 'the soft limit is raised to the hard one');
    const n = lim.soft === 'unlimited' ? 1000000 : Number(lim.soft);
    const want = Math.min(1000000, Math.max(16, n - Math.floor(n / 4)));
    const line = gw.logs().find((e) => e.module === 'server' && /^max_connections \d+/.test(e.msg ?? ''));
    assert.ok(line, 'a start log line says what max_connections was chosen');
    assert.equal(Number(/^max_connections (\d+)/.exec(line.msg)[1]), want, line.msg);
    // and one address's share: a quarter of it (at least 16), said too
    const per = gw.logs().find((e) => e.module === 'server' && /^connections_per_address \d+/.test(e.msg ?? ''));
    assert.ok(per, 'a start log line says what connections_per_address was chosen');
    assert.equal(Number(/^connections_per_address (\d+)/.exec(per.msg)[1]), Math.max(16, Math.floor(want / 4)), per.msg);
    // and the upstream budget: at most half of what max_connections leaves, said and served
    const upl = gw.logs().find((e) => e.module === 'server' && /^upstream_connections \d+/.test(e.msg ?? ''));
    assert.ok(upl, 'a start log line says what upstream_connections was chosen');
    const ups = Number(/^upstream_connections (\d+)/.exec(upl.msg)[1]);
    assert.ok(ups >= 16 && ups <= Math.max(16, Math.floor((n - want) / 2)), upl.msg);
    assert.equal(metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_transfers_max'), ups);
  } finally {
    await gw.stop();
  }
  const g2 = await startGateway({ args: ['--max-connections', '7'] });
  try {
    assert.ok(!g2.logs().some((e) => /^max_connections \d+: three quarters/.test(e.msg ?? '')), 'an explicit value is kept');
  } finally {
    await g2.stop();
  }
});

// store_reserve is capped at a quarter of the store's map (so a small map
// still takes ordinary writes). The cap is said at start with both keys and
// the value in force: as a warning when the operator set store_reserve (it
// is not what they asked for), as info when the default (16M) met a small
// store_map_size — as max_connections says what it chose.
test('a store_reserve over a quarter of the map is lowered and the start log says so, naming both keys', async () => {
  const reserveLine = (gw) => gw.logs().find((e) => /store_reserve/.test(e.msg ?? '') && /store_map_size/.test(e.msg ?? ''));
  const metric = async (gw) => {
    const m = await request(gw.port, { path: '/metrics', headers: { authorization: `Bearer ${gw.operatorToken()}` } });
    return Number(/^mcpgate_store_map_reserve_bytes (\d+)$/m.exec(m.body)?.[1]);
  };
  const set = await startGateway({ args: ['--store-map-size', '1M', '--store-reserve', '512K'] });
  try {
    const l = reserveLine(set);
    assert.ok(l, `a start line names store_reserve and store_map_size: ${JSON.stringify(set.logs().map((e) => e.msg))}`);
    assert.equal(l.level, 'warn', l.msg);
    assert.match(l.msg, /store_reserve \(524288 bytes\) is more than a quarter of the store's map \(store_map_size, 1048576 bytes\): using 262144 bytes/);
    assert.equal(await metric(set), 262144, 'the reserve in force is the one the line says');
  } finally {
    await set.stop();
  }
  const dflt = await startGateway({ args: ['--store-map-size', '1M'] });
  try {
    const l = reserveLine(dflt);
    assert.ok(l, 'the default reserve lowered is said too');
    assert.equal(l.level, 'info', `the default lowered is no warning: ${l.msg}`);
    assert.match(l.msg, /store_reserve \(16777216 bytes, the default\) is more than a quarter .*: using 262144 bytes/);
  } finally {
    await dflt.stop();
  }
  const fits = await startGateway({ args: ['--store-map-size', '1M', '--store-reserve', '256K'] });
  try {
    await request(fits.port, { path: '/healthz' });
    assert.equal(reserveLine(fits), undefined, 'a quarter exactly is kept, silently');
    assert.equal(await metric(fits), 262144);
  } finally {
    await fits.stop();
  }
});
