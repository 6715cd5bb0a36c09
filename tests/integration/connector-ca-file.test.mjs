// A connector's "ca_file" is a path on the gateway's host, and the TLS
// library reads it on a loop thread whenever a connection to the upstream
// starts (the capability probe right after the PUT, every call, discovery,
// refresh, revocation). A path that is not a regular file — a FIFO, the
// gateway's own pipes under /proc/self/fd, a device — blocked that loop in
// open(2)/read(2) for ever: one admin stopped the gateway for every tenant.
// Such a ca_file fails that connector's transfers only (TLS refused, like a
// CA that does not verify); a regular PEM file still works. The operator
// names these files here: without the operator's tenant_ca_dir (this
// gateway sets none) a TENANT admin may not set ca_file at all — it names
// a file on the host, the operator's business — only send the stored value
// back unchanged (connector-ca-file-tenant.test.mjs: with tenant_ca_dir).
// Real parts: the gateway binary (one loop, so a blocked loop is the whole
// gateway), a TLS upstream (lib/ctl-upstream.mjs) with a self-signed
// certificate, a tenant-scoped admin token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

import { startGateway, request, makeTempDir, makeSelfSignedCert } from './lib/gateway.mjs';
import { api } from './lib/admin.mjs';
import { setupTenant, rawSession, mcpPost, initializeBody } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

let gw, up, t, tenantAdmin, dir, certs, aliceToken;

before(async () => {
  // one loop: a loop blocked in the TLS library's read of the CA file is
  // then the whole gateway, whichever loop the probe or the call runs on
  gw = await startGateway({ args: ['--workers', '1'] });
  dir = await makeTempDir();
  certs = makeSelfSignedCert(dir, 'up');
  up = await startCtlUpstream({ name: 'tlsup', tls: certs });
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  // the tenant's own admin (not the operator) registers the connectors
  const a = await t.admin('POST', '/admin-tokens', { name: 'tenant admin' });
  assert.equal(a.status, 201, a.body);
  tenantAdmin = (method, p, body) => api(gw.port, a.json.token, method, `/admin/v1/tenants/acme${p}`, body);
  aliceToken = (await t.mintToken('alice@acme.com')).token;
});

after(async () => {
  await gw?.stop().catch(() => {});
});

/** The gateway answers (a fresh connection, a request any loop serves). */
async function assertServing(what) {
  const h = await request(gw.port, { path: '/healthz', timeoutMs: 10000 }).catch((e) => ({ status: `no answer: ${e.message}` }));
  assert.equal(h.status, 200, `the gateway answers /healthz ${what}`);
}

/** A call through the connector's own endpoint fails cleanly (the upstream is not reached with that trust). */
async function assertRefusedUpstream(name) {
  const r = await mcpPost(`${gw.url}/t/acme/mcp/${name}`, initializeBody(1), { token: aliceToken, timeoutMs: 10000 });
  const err = r.messages?.find((m) => m.id === 1)?.error;
  assert.ok(err, `initialize through ${name} is refused: ${r.status} ${r.body}`);
  assert.match(err.message, /could not be reached/);
}

test('a regular PEM ca_file is used for the upstream\'s TLS', async () => {
  const r = await t.admin('PUT', '/connectors/good', { url: up.url, ca_file: certs.cert });
  assert.equal(r.status, 201, r.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp/good`, aliceToken);
  const l = await s.request('tools/list');
  assert.equal(l.status, 200, l.body);
  assert.match(l.body, /"echo"/);
});

test('a FIFO as ca_file: the PUT is answered, the gateway keeps serving, calls through it fail', async () => {
  const fifo = path.join(dir, 'ca.fifo');
  const mk = spawnSync('mkfifo', [fifo]);
  assert.equal(mk.status, 0, String(mk.stderr));
  // the capability probe after the PUT connects at once
  const r = await t.admin('PUT', '/connectors/fifo', { url: up.url, ca_file: fifo });
  assert.equal(r.status, 201, r.body);
  await assertServing('after a PUT with a FIFO as ca_file');
  await assertRefusedUpstream('fifo');
  await assertServing('after a call through that connector');
});

test('the gateway\'s own pipe (/proc/self/fd/N) as ca_file: no FIFO on the host is needed to block a loop', async () => {
  const fds = fs.readdirSync(`/proc/${gw.proc.pid}/fd`);
  const pipe = fds.find((n) => { try { return fs.readlinkSync(`/proc/${gw.proc.pid}/fd/${n}`).startsWith('pipe:'); } catch { return false; } });
  assert.ok(pipe, `the gateway holds a pipe (fds ${fds.join(' ')})`);
  const r = await t.admin('PUT', '/connectors/selfpipe', { url: up.url, ca_file: `/proc/self/fd/${pipe}` });
  assert.equal(r.status, 201, r.body);
  await assertServing('after a PUT with one of its own pipes as ca_file');
  await assertRefusedUpstream('selfpipe');
  await assertServing('after a call through that connector');
});

test('a character device as ca_file fails the same way; the good connector still works', async () => {
  const r = await t.admin('PUT', '/connectors/dev', { url: up.url, ca_file: '/dev/zero' });
  assert.equal(r.status, 201, r.body);
  await assertRefusedUpstream('dev');
  const s = await rawSession(`${gw.url}/t/acme/mcp/good`, aliceToken);
  assert.equal((await s.request('tools/list')).status, 200);
  await assertServing('at the end');
});

test('without tenant_ca_dir a tenant admin cannot name any file as ca_file: 403, one message, nothing stored', async () => {
  const fifo = path.join(dir, 'ca.fifo');
  let first;
  for (const ca of [certs.cert, '/etc/passwd', path.join(dir, 'no-such-file.pem'), fifo, '/dev/zero', '/proc/self/environ']) {
    const r = await tenantAdmin('PUT', '/connectors/mine', { url: up.url, ca_file: ca });
    assert.equal(r.status, 403, `${ca}: ${r.body}`);
    assert.equal(r.json.error, 'forbidden');
    first ??= r.json.message;
    assert.equal(r.json.message, first, `${ca}: the same message whatever the file`);
    assert.equal((await tenantAdmin('GET', '/connectors/mine')).status, 404, `${ca}: nothing stored`);
  }
  assert.match(first, /tenant_ca_dir/);
  assert.doesNotMatch(first, /exist|no such|passwd|fifo|\.crt/i);
  // with discover:true too, before anything is fetched
  const r = await tenantAdmin('PUT', '/connectors/mine', { url: up.url, ca_file: certs.cert, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 403, r.body);
  assert.equal(r.json.message, first);
});

test('without tenant_ca_dir a tenant admin\'s GET then PUT keeps the operator\'s ca_file; it cannot copy it elsewhere', async () => {
  const g = await tenantAdmin('GET', '/connectors/good');
  assert.equal(g.status, 200, g.body);
  const { url, auth, ca_file, timeouts } = g.json;
  assert.equal(ca_file, certs.cert);
  let r = await tenantAdmin('PUT', '/connectors/good', { url, auth: { type: auth.type }, ca_file, timeouts, description: 'by the tenant' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.ca_file, certs.cert);
  const s = await rawSession(`${gw.url}/t/acme/mcp/good`, aliceToken);
  assert.equal((await s.request('tools/list')).status, 200);
  r = await tenantAdmin('PUT', '/connectors/goodcopy', { url, ca_file });
  assert.equal(r.status, 403, r.body);
  r = await tenantAdmin('PUT', '/connectors/good', { url, ca_file: '/etc/passwd' });
  assert.equal(r.status, 403, r.body);
  assert.equal((await tenantAdmin('GET', '/connectors/good')).json.ca_file, certs.cert);
});
