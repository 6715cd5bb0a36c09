// Vault: a discovered connector's endpoints are the upstream's word, so the
// gateway's requests to them go out at the egress level of who chose them.
// The operator opened loopback in egress_allow (the admin level: internal
// services an admin may name for connectors); egress_allow_untrusted is empty.
// A compromised upstream on 127.0.0.1 names, in its metadata, a registration,
// token or revocation endpoint on another loopback host — an "internal
// service" the operator opened for admins' URLs only. Before, every such URL
// was fetched at the admin level: the gateway POSTed its registration, an
// employee's authorization code (with the client's credentials) and the
// revocation of their tokens there — blind SSRF with the gateway's
// credentials. Now only a host the admin chose keeps the admin level: the
// connector URL's, and that of the authorization server the admin names
// (auth.authorization_server: an internal MCP server with an internal AS).
// Real parts: the gateway, oidc-provider as Okta; the hostile upstream, its
// authorization server and the internal services are node http servers.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { signIn } from './lib/login.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v, up, upBase, internal, intBase, local, localBase;
const hits = []; // every request an internal service got: {at, method, path}

const send = (res, doc, status = 200, headers = {}) => {
  const b = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b), ...headers });
  res.end(b);
};

/** An authorization server's routes under base/name (metadata, authorize, token, reg, revoke). */
function asRoutes(req, res, u, base, name, meta) {
  if (u.pathname === `/.well-known/oauth-authorization-server/${name}/as`) {
    return send(res, {
      issuer: `${base}/${name}/as`, authorization_endpoint: `${base}/${name}/authorize`,
      token_endpoint: `${base}/${name}/token`, registration_endpoint: `${base}/${name}/reg`,
      revocation_endpoint: `${base}/${name}/revoke`, code_challenge_methods_supported: ['S256'], ...meta,
    });
  }
  if (u.pathname === `/${name}/authorize`) {
    const to = new URL(u.searchParams.get('redirect_uri'));
    to.searchParams.set('code', `code-${name}`);
    to.searchParams.set('state', u.searchParams.get('state'));
    res.writeHead(302, { location: to.href });
    return res.end();
  }
  if (u.pathname === `/${name}/token`) {
    return send(res, { access_token: `at-${name}-${Date.now()}`, token_type: 'Bearer', expires_in: 3600,
      refresh_token: `rt-${name}-${Date.now()}` });
  }
  if (u.pathname === `/${name}/reg`) return send(res, { client_id: `client-${name}`, client_secret: `secret-${name}` }, 201);
  if (u.pathname === `/${name}/revoke`) return send(res, {});
  return false;
}

// per case: where the upstream's authorization server is, and what its metadata says
const CASES = {
  // the AS on the upstream's host; its registration endpoint an internal address
  reg: { meta: () => ({ registration_endpoint: `${intBase}/reg/reg` }) },
  // the AS itself on another host: the internal one
  intas: { as: () => intBase },
  // a public client (CIMD); its revocation endpoint another host's name for loopback
  rv: { meta: () => ({ client_id_metadata_document_supported: true, revocation_endpoint: `${localBase}/rv/revoke` }) },
  // the same with its token endpoint there
  tok: { meta: () => ({ client_id_metadata_document_supported: true, token_endpoint: `${localBase}/tok/token` }) },
};

function startUp() {
  const server = http.createServer(async (req, res) => {
    for await (const _ of req); // eslint-disable-line no-unused-vars
    const u = new URL(req.url, 'http://x');
    const name = /^\/(?:\.well-known\/oauth-authorization-server\/)?([a-z]+)\//.exec(u.pathname)?.[1];
    const c = CASES[name];
    if (!c) { res.writeHead(404); return res.end(); }
    const base = `${upBase}/${name}`;
    if (u.pathname === `/${name}/mcp`) {
      res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/prm"`, 'content-type': 'application/json' });
      return res.end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authorization required"}}');
    }
    if (u.pathname === `/${name}/prm`)
      return send(res, { resource: `${base}/mcp`, authorization_servers: [`${(c.as?.() ?? upBase)}/${name}/as`] });
    if (asRoutes(req, res, u, upBase, name, c.meta?.() ?? {}) === false) { res.writeHead(404); res.end(); }
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

/** An internal service: records every request; serves an AS (case intas) like the upstream's. */
function startInternal(host, baseOf) {
  const server = http.createServer(async (req, res) => {
    for await (const _ of req); // eslint-disable-line no-unused-vars
    const u = new URL(req.url, 'http://x');
    hits.push({ at: host, method: req.method, path: u.pathname });
    if (asRoutes(req, res, u, baseOf(), 'intas', {}) === false) send(res, {});
  });
  return new Promise((r) => server.listen(0, host, () => r(server)));
}

before(async () => {
  v = await startVaultFixture({ users: ['alice'], connectorBody: null, connectors: Object.keys(CASES) });
  up = await startUp();
  upBase = `http://127.0.0.1:${up.address().port}`;
  internal = await startInternal('127.0.0.2', () => intBase);
  intBase = `http://127.0.0.2:${internal.address().port}`;
  local = await startInternal('127.0.0.1', () => localBase);
  localBase = `http://localhost:${local.address().port}`;
});
after(async () => {
  for (const s of [up, internal, local]) {
    s?.closeAllConnections?.();
    await new Promise((r) => (s ? s.close(() => r()) : r()));
  }
  await v?.stop();
});

const put = (name, auth = {}) =>
  v.admin('PUT', `/connectors/${name}`, { url: `${upBase}/${name}/mcp`, auth: { type: 'oauth', discover: true, ...auth } });

async function connectAlice(name) {
  const b = v.fx.browser();
  const s = await signIn(b, `${v.base}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  return b.get(`${v.base}/connect/${name}`);
}

test("a registration endpoint the upstream names at an internal address is refused; it gets no request", async () => {
  const n = hits.length;
  const r = await put('reg');
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'egress_refused', r.body);
  assert.match(r.json.message, /registration endpoint .*127\.0\.0\.2/);
  assert.match(r.json.message, /egress_allow_untrusted/);
  assert.match(r.json.message, /auth\.authorization_server/);
  assert.deepEqual(hits.slice(n), [], 'the internal service got nothing');
  assert.equal((await v.admin('GET', '/connectors/reg')).status, 404);
});

test('an authorization server on another, internal host is followed only when the admin names it', async () => {
  let n = hits.length;
  const r = await put('intas');
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'egress_refused', r.body);
  assert.match(r.json.message, /authorization server .*127\.0\.0\.2/);
  assert.deepEqual(hits.slice(n), [], 'the internal AS got nothing');
  // the admin names it: an internal MCP server with an internal AS
  n = hits.length;
  const ok = await put('intas', { authorization_server: `${intBase}/intas/as` });
  assert.equal(ok.status, 201, ok.body);
  assert.equal(ok.json.auth.authorization_server, `${intBase}/intas/as`);
  assert.equal(ok.json.auth.discovered.issuer, `${intBase}/intas/as`);
  assert.equal(ok.json.auth.client_id, 'client-intas');
  assert.deepEqual(hits.slice(n).map((h) => `${h.method} ${h.path}`),
    ['GET /.well-known/oauth-authorization-server/intas/as', 'POST /intas/reg']);
  // one the upstream does not list is refused
  const other = await put('intas', { authorization_server: `${intBase}/other/as` });
  assert.equal(other.status, 400, other.body);
  assert.equal(other.json.error, 'discovery_refused', other.body);
  assert.match(other.json.message, /does not name .* \(auth\.authorization_server\)/);
});

test("a revocation endpoint the upstream names on another host gets no request at the admin level", async () => {
  const r = await put('rv');
  assert.equal(r.status, 201, r.body);
  const page = await connectAlice('rv');
  assert.equal(page.status, 200, page.text.slice(0, 300));
  const n = hits.length;
  const d = await v.admin('DELETE', '/users/alice@acme.com/connections/rv');
  assert.ok([200, 204].includes(d.status), `${d.status} ${d.body}`);
  const rep = await v.waitRevocation((x) => x.connector === 'rv' && /egress/i.test(x.last_error ?? ''),
    'the revocation refused by the egress policy', 10000);
  assert.equal(rep.state, 'pending', JSON.stringify(rep));
  assert.deepEqual(hits.slice(n), [], 'the internal service got nothing');
});

test("a token endpoint the upstream names on another host gets no employee's code", async () => {
  const r = await put('tok');
  assert.equal(r.status, 201, r.body);
  const n = hits.length;
  const page = await connectAlice('tok');
  assert.equal(page.status, 502, page.text.slice(0, 300));
  assert.deepEqual(hits.slice(n), [], 'the internal service got nothing');
  assert.deepEqual(await v.connections('alice'), []);
});
