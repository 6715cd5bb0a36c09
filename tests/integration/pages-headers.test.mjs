// The employee pages' response headers beyond the CSP (checked in
// oidc-login.test.mjs): Cross-Origin-Opener-Policy same-origin on every
// page (a site that opened one in a window keeps no handle on it), and
// Strict-Transport-Security when public_url is https (the gateway's own TLS
// or a proxy's: the browser then never tries the host over http), never
// with an http public_url. Noticed missing by the pages review.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, request } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';

for (const pub of ['https://gw.example.test', null]) {
  test(`pages carry COOP${pub ? ' and HSTS (https public_url)' : ', no HSTS (http public_url)'}`, async () => {
    const gw = await startGateway({ args: pub ? ['--public-url', pub] : [] });
    try {
      await setupTenant(gw, { users: ['alice@acme.com'] });
      for (const path of ['/t/acme/', '/t/acme/approvals', '/t/nosuch/']) {
        const r = await request(gw.port, { path });
        assert.ok(r.status >= 200 && r.status < 500, `${path}: ${r.status}`);
        assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', `${path}: ${JSON.stringify(r.headers)}`);
        if (pub) assert.equal(r.headers['strict-transport-security'], 'max-age=31536000', path);
        else assert.equal(r.headers['strict-transport-security'], undefined, path);
      }
    } finally {
      await gw.stop();
    }
  });
}
