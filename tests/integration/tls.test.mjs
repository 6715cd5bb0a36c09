// TLS listener: serving, plaintext on the TLS port, certificate reload on
// SIGHUP (good and bad), refusal to start without a usable certificate.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  startGateway, runGateway, makeTempDir, makeSelfSignedCert, pemFingerprint256, request, rawHttp, connect, waitFor,
} from './lib/gateway.mjs';

let gw, dir, certA, certB, certFile, keyFile;

before(async () => {
  dir = await makeTempDir('mcpgate-tls-');
  certA = makeSelfSignedCert(dir, 'a');
  certB = makeSelfSignedCert(dir, 'b');
  certFile = path.join(dir, 'live.crt');
  keyFile = path.join(dir, 'live.key');
  await fs.writeFile(certFile, certA.certPem);
  await fs.writeFile(keyFile, certA.keyPem);
  gw = await startGateway({
    args: ['--tls-listen', '127.0.0.1:0', '--tls-cert-file', certFile, '--tls-key-file', keyFile],
    listeners: ['http', 'https'],
  });
});

const tlsPort = () => gw.addrs.https.port;

/** Atomically replaces the live cert/key files. */
async function install(certPem, keyPem) {
  await fs.writeFile(certFile + '.tmp', certPem);
  await fs.writeFile(keyFile + '.tmp', keyPem);
  await fs.rename(keyFile + '.tmp', keyFile);
  await fs.rename(certFile + '.tmp', certFile);
}

async function presentedFingerprint() {
  const c = await connect(tlsPort(), { tls: { ca: [certA.certPem, certB.certPem] } });
  const fp = c.socket.getPeerCertificate().fingerprint256;
  c.destroy();
  return fp;
}

test('https listener serves /healthz with the configured certificate', async () => {
  assert.ok(tlsPort() && tlsPort() !== gw.port, 'https listener on its own port');
  const r = await request(tlsPort(), { path: '/healthz', tls: { ca: certA.certPem } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok' });
  assert.equal(r.peerCertificate.fingerprint256, pemFingerprint256(certA.certPem));
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200, 'plain listener still works');
});

test('plaintext HTTP to the TLS port is rejected without harm', async () => {
  const r = await rawHttp(tlsPort(), 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000 });
  assert.equal(r.closed, true, 'server closed the plaintext connection');
  assert.ok(!/^HTTP\/1\.1 200/.test(r.data), 'no 200 over plaintext');
  const ok = await request(tlsPort(), { path: '/healthz', tls: { ca: certA.certPem } });
  assert.equal(ok.status, 200);
});

test('SIGHUP reloads a replaced certificate; existing connections are unaffected', async () => {
  const old = await connect(tlsPort(), { tls: { ca: certA.certPem } });
  try {
    await old.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await old.responses(1))[0].status, 200);
    assert.equal(old.socket.getPeerCertificate().fingerprint256, pemFingerprint256(certA.certPem));

    await install(certB.certPem, certB.keyPem);
    gw.signal('SIGHUP');
    const want = pemFingerprint256(certB.certPem);
    await waitFor(async () => (await presentedFingerprint()) === want,
      { timeoutMs: 5000, intervalMs: 100, what: 'new certificate on new TLS connections' });

    await old.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const rs = await old.responses(2);
    assert.equal(rs[1].status, 200, 'old keep-alive connection still served');
    assert.equal(old.closed, false);
    assert.equal(old.socket.getPeerCertificate().fingerprint256, pemFingerprint256(certA.certPem));

    const r = await request(tlsPort(), { path: '/healthz', tls: { ca: certB.certPem } });
    assert.equal(r.status, 200);
  } finally { old.destroy(); }
});

test('SIGHUP with a bad certificate file keeps the current one and logs a warning', async () => {
  const from = await gw.settle();
  await fs.writeFile(certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  gw.signal('SIGHUP');
  const line = await gw.waitForLog((e) => e.level === 'warn' || e.level === 'error', 5000, from);
  assert.ok(line.msg, 'the warning has a message');
  assert.equal(gw.exitInfo, null, 'still running');
  assert.equal(await presentedFingerprint(), pemFingerprint256(certB.certPem), 'previous certificate still served');
  const r = await request(tlsPort(), { path: '/healthz', tls: { ca: certB.certPem } });
  assert.equal(r.status, 200);
  await install(certB.certPem, certB.keyPem);
});

test('SIGHUP under load: every reload while handshakes run on every loop, no request fails', async () => {
  // (under make test this file also runs with --workers 2: the reload swaps
  // the context other loops are making connections from)
  let stop = false, ok = 0;
  const errors = [];
  const ca = [certA.certPem, certB.certPem];
  const client = async () => {
    while (!stop) {
      try {
        const r = await request(tlsPort(), { path: '/healthz', tls: { ca } });
        if (r.status === 200) ok++;
        else errors.push(`status ${r.status}`);
      } catch (e) { errors.push(e.message); }
    }
  };
  const clients = [client(), client(), client(), client()];
  for (let i = 0; i < 8; i++) {
    const c = i % 2 ? certB : certA;
    await install(c.certPem, c.keyPem);
    gw.signal('SIGHUP');
    await waitFor(async () => (await presentedFingerprint()) === pemFingerprint256(c.certPem),
      { timeoutMs: 5000, intervalMs: 20, what: `reload ${i}` });
  }
  stop = true;
  await Promise.all(clients);
  assert.deepEqual(errors, [], 'no request failed across the reloads');
  assert.ok(ok > 8, `requests served meanwhile: ${ok}`);
  // the last certificate (B) on every new connection, whichever loop takes it
  for (let i = 0; i < 8; i++) assert.equal(await presentedFingerprint(), pemFingerprint256(certB.certPem));
  assert.equal(gw.exitInfo, null, 'still running');
});

test('missing certificate at start → refuses to start, names the file', async () => {
  const d = await makeTempDir();
  const missing = path.join(d, 'no-such-cert.pem');
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', d, '--tls-listen', '127.0.0.1:0',
    '--tls-cert-file', missing, '--tls-key-file', certA.key], { timeoutMs: 5000 });
  assert.equal(r.timedOut, false, 'exited instead of serving');
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(missing), `stderr names ${missing}: ${r.stderr.slice(-400)}`);
});

test('unusable certificate at start → refuses to start, names the file', async () => {
  const d = await makeTempDir();
  const bad = path.join(d, 'garbage.pem');
  await fs.writeFile(bad, 'garbage\n');
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', d, '--tls-listen', '127.0.0.1:0',
    '--tls-cert-file', bad, '--tls-key-file', certA.key], { timeoutMs: 5000 });
  assert.equal(r.timedOut, false, 'exited instead of serving');
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(bad), `stderr names ${bad}: ${r.stderr.slice(-400)}`);
});

test('server survived everything; clean stop with exit 0', async () => {
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200);
  assert.equal((await request(tlsPort(), { path: '/healthz', tls: { ca: certB.certPem } })).status, 200);
  assert.deepEqual(await gw.stop(), { code: 0, signal: null });
});
