// Some SIEM collectors put the credential in the URL's path (a Sumo Logic
// HTTP source: …/receiver/v1/http/<collector code>), so a sink URL is as
// secret as its token. Before this test's fix the start log said
// "streaming to <the whole URL but its query>", path and all (the SIEM
// review). The gateway's logs now name the sink's origin only.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

const CODE = 'ZaVnC4dhaV3yJ1xkQqjRmLDqUqvOTxy7';

test('a sink URL\'s path (a collector code) is in no log line, the operator\'s sink or a tenant\'s', async () => {
  const opRx = await startSinkReceiver({ path: `/receiver/v1/http/${CODE}`, status: () => 503 });
  const tRx = await startSinkReceiver({ path: `/receiver/v1/http/${CODE}x` });
  const gw = await startGateway({ args: ['--audit-sink-url', opRx.url] });
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    const r = await api(gw.port, op, 'PUT', '/admin/v1/tenants/acme/audit/sink', { url: tRx.url });
    assert.ok(r.status === 201 || r.status === 200, r.body);
    await waitFor(() => gw.logs().some((e) => /audit sink .*streaming to/.test(e.msg ?? '')), { what: 'the tenant sink\'s start line' });
    await waitFor(() => opRx.posts.length > 0 && tRx.accepted().length > 0, { timeoutMs: 15000, what: 'both sinks posted to' });
    await waitFor(() => gw.logs().some((e) => /audit sink/.test(e.msg ?? '') && e.level === 'warn'), { timeoutMs: 15000, what: 'the failing sink logged' });
    const lines = gw.stderrText();
    assert.ok(lines.includes(`127.0.0.1:${opRx.port}`), 'the origin is named');
    assert.equal(lines.includes(CODE), false, `no log line carries the path:\n${lines.split('\n').filter((l) => l.includes(CODE)).join('\n')}`);
  } finally {
    await gw.stop();
    await opRx.close();
    await tRx.close();
  }
});
