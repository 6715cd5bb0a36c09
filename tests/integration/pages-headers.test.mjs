// The employee pages' response headers beyond the CSP (checked in
// oidc-login.test.mjs): Cross-Origin-Opener-Policy same-origin on every
// page (a site that opened one in a window keeps no handle on it), and
// Strict-Transport-Security when public_url is https (the gateway's own TLS
// or a proxy's: the browser then never tries the host over http), never
// with an http public_url. Noticed missing by the pages review. And the
// gateway's own errors on those paths.
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
      // Found by review: the errors a page's path gets (the router's 404
      // and 405, pages' and approvals' own 405s) carried none of the
      // pages' headers, and the 404 echoes the path. The gateway's JSON
      // errors now forbid framing and sniffing whatever the route; the
      // /t/{t} redirect carries the pages' headers.
      for (const [method, path] of [['POST', '/t/acme/'], ['POST', '/t/acme/login'], ['GET', '/t/acme/no-such-page'],
        ['GET', '/t/acme/api/no-such-api'], ['POST', '/t/acme/oauth/authorize'], ['POST', '/t/acme/approvals'],
        ['GET', '/t/acme/approvals/x/approve'], ['GET', '/no-such-endpoint']]) {
        const r = await request(gw.port, { method, path });
        assert.ok(r.status === 404 || r.status === 405, `${method} ${path}: ${r.status}`);
        assert.match(r.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/, `${method} ${path}`);
        assert.equal(r.headers['x-content-type-options'], 'nosniff', `${method} ${path}`);
      }
      const moved = await request(gw.port, { path: '/t/acme' });
      assert.equal(moved.status, 308);
      assert.equal(moved.headers['x-frame-options'], 'DENY');
      assert.equal(moved.headers['cross-origin-opener-policy'], 'same-origin');
    } finally {
      await gw.stop();
    }
  });
}
