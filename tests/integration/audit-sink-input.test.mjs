// Hostile input to PUT /admin/v1/tenants/{t}/audit/sink (meant for ASan),
// and a tenant sink whose host name resolves to loopback under the default
// (public only) egress policy: refused at connect, the token in no reply.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, waitFor, sleep, request } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';

test('malformed sink bodies are 4xx, never a crash; a name resolving to loopback is never connected', async () => {
  let conns = 0;
  const s = http.createServer((q, r) => r.end('{}'));
  s.on('connection', () => conns++);
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const g = await startGateway({ egressAllow: null });
  const tok = 'secret-tok-123456';
  try {
    const op = operatorToken(g.dataDir);
    await createTenant(g.port, op, 'acme');
    const base = '/admin/v1/tenants/acme/audit/sink';
    const bad = [
      [], 'x', 1, null, { url: 1 }, { url: ['http://a.example/'] }, { url: 'ftp://a.example/' }, { url: 'http://' },
      { url: 'http:///x' }, { url: 'http://a.example/\u00e9' }, { url: 'http://a.example/\u0000x' },
      { url: 'http://a.example/ x' }, { url: `http://a.example/${'a'.repeat(3000)}` }, { url: 'http://a.example/#f' },
      { url: 'http://u@a.example/' }, { url: 'http://a.example/', format: 7 }, { url: 'http://a.example/', token: 7 },
      { url: 'http://a.example/', token: '' }, { url: 'http://a.example/', token: 'a\u0000b' },
      { url: 'http://a.example/', token: 'x'.repeat(5000) }, { url: 'http://a.example/', token: 'tök' },
      { url: 'http://a.example/', extra: 1 }, { ['\u0000']: 1 }, { url: 'http://127.0.0.1/' },
      { url: 'http://[::1]/' }, { url: 'http://169.254.169.254/latest' }, { url: 'http://[::ffff:127.0.0.1]/' },
      { url: 'http://0x7f000001/' }, { url: 'http://2130706433/' }, { url: 'http://017700000001/' },
    ];
    for (const b of bad) {
      const r = await api(g.port, op, 'PUT', base, b);
      assert.ok(r.status >= 400 && r.status < 500, `${JSON.stringify(b).slice(0, 80)} → ${r.status} ${r.body}`);
    }
    for (const raw of ['{"url":"http://a.example/","url":"http://b.example/"}', '{"url":', '\u00ff\u00fe', '[' .repeat(100000),
      JSON.stringify({ url: 'http://a.example/', token: 'y'.repeat(2_000_000) })]) {
      const r = await api(g.port, op, 'PUT', base, undefined, { raw, headers: { 'content-type': 'application/json' } });
      assert.ok(r.status >= 400 && r.status < 500, `${raw.slice(0, 40)} → ${r.status} ${r.body.slice(0, 200)}`);
    }
    let r = await api(g.port, op, 'PUT', base, { url: `http://localhost:${s.address().port}/in`, token: tok });
    assert.equal(r.status, 201, r.body);
    await waitFor(async () => {
      r = await api(g.port, op, 'GET', base);
      return r.json?.delivery?.state === 'failing';
    }, { timeoutMs: 15000 });
    assert.equal(conns, 0, 'never connected');
    assert.equal(r.body.includes(tok), false);
    assert.match(r.json.delivery.last_error, /refused|not public|egress/i, r.body);
    // found by review: the refused address told the tenant admin what a
    // host name resolves to (an oracle for internal DNS); the operator's
    // log keeps it
    assert.ok(!/127\.0\.0\.1|::1/.test(r.json.delivery.last_error), `no resolved address for the tenant: ${r.json.delivery.last_error}`);
    // the log line comes through another pipe than the answer: wait for it
    await g.waitForLog((e) => /audit sink tenant:.*(127\.0\.0\.1|::1)/.test(e.msg ?? ''), 5000);
    r = await api(g.port, op, 'GET', '/admin/v1/tenants/nope/audit/sink');
    assert.equal(r.status, 404, r.body);
    r = await api(g.port, op, 'PUT', '/admin/v1/tenants/nope/audit/sink', { url: 'http://a.example/' });
    assert.equal(r.status, 404, r.body);
    const samples = await request(g.port, { path: '/metrics', headers: { authorization: `Bearer ${op}` } });
    assert.equal(String(samples.body).includes(tok), false, 'not in /metrics');
  } finally {
    await g.stop();
    s.close();
  }
  assert.equal(g.logs().some((e) => e._raw.includes(tok)), false, 'the token in no log line');
  for (const f of fs.readdirSync(g.dataDir, { recursive: true })) {
    const p = path.join(g.dataDir, f);
    if (fs.statSync(p).isFile()) assert.equal(fs.readFileSync(p).includes(tok), false, `the token unsealed in ${f}`);
  }
});
