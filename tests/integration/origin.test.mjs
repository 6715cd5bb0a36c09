// DNS-rebinding protection on the MCP endpoints (issue 12, item 6): the
// Host/Origin matrix, for a gateway on loopback (public_url derived from
// listen) and one behind a public name; and the official conformance
// suite's dns-rebinding-protection scenario run through the gateway.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { startGateway, makeTempDir, REPO_ROOT } from './lib/gateway.mjs';
import { setupTenant, startEverything, startRecorder, httpCall, initializeBody, show } from './lib/mcp.mjs';

let gw, t, tok, up, rec;

before(async () => {
  [gw, up] = await Promise.all([startGateway(), startEverything()]);
  rec = await startRecorder(up.url);
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const r = await t.putConnector('everything', { url: rec.url, description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  tok = (await t.mintToken('alice@acme.com')).token;
});

/** POST initialize to `url` with explicit Host/Origin headers (undefined: not sent / node's default Host). */
function initWith(url, { host, origin, token = tok } = {}) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` };
  if (host !== undefined) headers.host = host;
  if (origin !== undefined) headers.origin = origin;
  return httpCall(url, { method: 'POST', headers, body: initializeBody(1), timeoutMs: 10000 });
}

test('gateway on loopback: Host must be a loopback name; Origin its own, a loopback one (any port) or listed', async () => {
  const agg = `${gw.url}/t/${t.id}/mcp`;
  const p = gw.port;
  const accepted = [
    { host: `127.0.0.1:${p}` },
    { host: `localhost:${p}` },
    { host: 'localhost' },
    { host: `[::1]:${p}` },
    { host: '127.0.0.2:9999' },
    { host: `127.0.0.1:${p}`, origin: `http://127.0.0.1:${p}` }, // the gateway's own origin (refused before)
    { host: `localhost:${p}`, origin: `http://localhost:${p}` },
    { host: `127.0.0.1:${p}`, origin: 'http://localhost:6274' }, // a local tool on its own port (MCP inspector)
    { host: `127.0.0.1:${p}`, origin: 'http://[::1]:3000' },
    { host: `127.0.0.1:${p}`, origin: 'https://localhost' },
    { host: `127.0.0.1:${p}`, origin: `HTTP://LOCALHOST:${p}` },
  ];
  for (const h of accepted) {
    const r = await initWith(agg, h);
    assert.equal(r.status, 200, `accepted: ${JSON.stringify(h)} → ${show(r)}`);
    assert.ok(r.messages.find((m) => m.id === 1)?.result, `initialize answered: ${JSON.stringify(h)} → ${show(r)}`);
  }
  const refusedHost = [
    { host: 'evil.example.com' },
    { host: `evil.example.com:${p}` },
    { host: `127.0.0.1.evil.example:${p}` },
    { host: `localhost.evil.example:${p}` },
    { host: `10.0.0.1:${p}` },
    { host: `evil.example.com:${p}`, origin: `http://127.0.0.1:${p}` }, // a loopback Origin does not excuse the Host
    { host: 'evil.example.com', origin: 'http://evil.example.com' },
  ];
  for (const h of refusedHost) {
    for (const url of [agg, t.mcpUrl('everything')]) {
      const r = await initWith(url, h);
      assert.equal(r.status, 403, `refused: ${JSON.stringify(h)} on ${url} → ${show(r)}`);
      assert.equal(r.json?.error, 'forbidden_host', `${JSON.stringify(h)}: ${r.body}`);
      assert.match(r.json.message, /Host .* not a loopback name.*public_url/, r.body);
    }
  }
  const refusedOrigin = [
    'http://evil.example.com', 'null', `http://127.0.0.1.evil.example:${p}`, `http://localhost.evil.example:${p}`,
    'file://', `ftp://127.0.0.1:${p}`, `http://user@127.0.0.1:${p}`, `http://127.0.0.1:${p}/path`,
  ];
  for (const origin of refusedOrigin) {
    for (const url of [agg, t.mcpUrl('everything')]) {
      const r = await initWith(url, { host: `127.0.0.1:${p}`, origin });
      assert.equal(r.status, 403, `refused Origin ${origin} on ${url} → ${show(r)}`);
      assert.equal(r.json?.error, 'forbidden_origin', `${origin}: ${r.body}`);
      assert.match(r.json.message, /allowed_origins/, r.body);
    }
  }
  // nothing refused reached the upstream
  assert.equal(rec.byMethod('initialize').filter((e) => e.json?.params?.clientInfo?.name === 'raw-test').length, 0,
    'no refused initialize was forwarded upstream');
});

test('gateway behind a public name: Origin must be public_url\'s (or listed); Host is not checked; no loopback leniency', async () => {
  const g2 = await startGateway({ args: ['--public-url', 'https://gw.example.com', '--allowed-origins', 'https://app.example.com'] });
  const t2 = await setupTenant(g2, { users: ['alice@acme.com'] });
  const tok2 = (await t2.mintToken('alice@acme.com')).token;
  const agg = `${g2.url}/t/${t2.id}/mcp`;
  const ok = [
    {}, { host: 'gw.example.com' }, { host: 'internal-lb.example:8443' },
    { host: 'gw.example.com', origin: 'https://gw.example.com' },
    { host: 'gw.example.com', origin: 'https://GW.example.com:443' },
    { host: 'gw.example.com', origin: 'https://app.example.com' },
  ];
  for (const h of ok) {
    const r = await initWith(agg, { ...h, token: tok2 });
    assert.equal(r.status, 200, `accepted: ${JSON.stringify(h)} → ${show(r)}`);
  }
  for (const origin of ['http://gw.example.com', 'https://gw.example.com:8443', 'http://localhost:6274', `http://127.0.0.1:${g2.port}`, 'https://evil.example.com']) {
    const r = await initWith(agg, { host: 'gw.example.com', origin, token: tok2 });
    assert.equal(r.status, 403, `refused Origin ${origin} → ${show(r)}`);
    assert.equal(r.json?.error, 'forbidden_origin', r.body);
  }
  await g2.stop();
  const g3 = await startGateway({ args: ['--allowed-origins', '*'] });
  const t3 = await setupTenant(g3, { users: ['alice@acme.com'] });
  const tok3 = (await t3.mintToken('alice@acme.com')).token;
  const any = await initWith(`${g3.url}/t/${t3.id}/mcp`, { origin: 'https://anything.example', token: tok3 });
  assert.equal(any.status, 200, `allowed_origins "*" admits any Origin: ${show(any)}`);
  const host = await initWith(`${g3.url}/t/${t3.id}/mcp`, { host: 'evil.example.com', origin: 'https://anything.example', token: tok3 });
  assert.equal(host.status, 403, `… but a loopback gateway still refuses a foreign Host: ${show(host)}`);
  await g3.stop();
});

// The official MCP conformance suite (pinned in tests/package.json) checks
// DNS-rebinding protection with an unauthenticated initialize; the gateway
// always requires a token, so a small forwarder on loopback adds the
// employee token and passes every other header (Host and Origin as the
// suite sent them) through unchanged.
const CONFORMANCE = path.join(REPO_ROOT, 'tests', 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

test('conformance scenario dns-rebinding-protection passes through the gateway', async () => {
  assert.ok(fs.existsSync(CONFORMANCE), `the conformance suite is installed (${CONFORMANCE}; run make deps)`);
  const fwd = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const headers = { ...req.headers, authorization: `Bearer ${tok}` };
      const u = http.request({ host: '127.0.0.1', port: gw.port, method: req.method, path: req.url, headers, agent: false }, (ures) => {
        res.writeHead(ures.statusCode, ures.headers);
        ures.pipe(res);
      });
      u.on('error', () => { res.writeHead(502); res.end(); });
      u.end(Buffer.concat(chunks));
    });
  });
  await new Promise((r) => fwd.listen(0, '127.0.0.1', r));
  const out = await makeTempDir('mcpgate-conformance-');
  try {
    const url = `http://127.0.0.1:${fwd.address().port}/t/${t.id}/mcp`;
    const res = await new Promise((resolve) => {
      execFile(process.execPath, [CONFORMANCE, 'server', '--url', url, '--scenario', 'dns-rebinding-protection', '-o', out],
        { timeout: 60000, cwd: out }, (err, stdout, stderr) => resolve({ err, stdout, stderr }));
    });
    const dir = fs.readdirSync(out).find((d) => d.startsWith('server-dns-rebinding-protection'));
    assert.ok(dir, `the suite wrote its results: ${res.stdout}\n${res.stderr}`);
    const checks = JSON.parse(fs.readFileSync(path.join(out, dir, 'checks.json'), 'utf8'));
    const byId = Object.fromEntries(checks.map((c) => [c.id, c]));
    for (const id of ['localhost-host-rebinding-rejected', 'localhost-host-valid-accepted']) {
      assert.equal(byId[id]?.status, 'SUCCESS', `${id}: ${JSON.stringify(byId[id])}`);
    }
    assert.ok(checks.every((c) => c.status !== 'FAILURE'), JSON.stringify(checks));
  } finally {
    await new Promise((r) => fwd.close(() => r()));
  }
});
