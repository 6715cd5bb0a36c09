// A Client ID Metadata Document client through the whole authorization
// (issue 17), the way an MCP client does it: the official SDK (given a
// clientMetadataUrl, lib/oauthclient.mjs) sees the gateway's 401, reads the
// protected resource and authorization server metadata, finds
// client_id_metadata_document_supported and uses its document's https URL
// as client_id — no registration. The document is served over https from
// loopback by this test (a self-signed certificate the gateway trusts
// through cimd_ca_file; loopback opened to the caller-supplied level with
// the operator's egress_allow_untrusted, as in oauth-cimd.test.mjs). The
// gateway fetches it at authorize; Alice signs in at the Okta stand-in
// (lib/okta.mjs's scripted browser), the consent page names the document's
// client (unverified), its id, the redirect host and the resource; Allow →
// code + state at the test's loopback listener (any port: the document
// registers http://127.0.0.1/callback) → the SDK's token request → tools.
// Then the same client again: no consent, and the document comes from the
// cache. A document that names another client_id is refused at authorize
// with a page, and nothing is redirected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';

import { makeTempDir, makeSelfSignedCert } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { pkce, tokenRequest } from './lib/oauth.mjs';
import { startEverything } from './lib/mcp.mjs';
import { startRedirectListener, MemoryProvider, startAuthorization, finishAndConnect } from './lib/oauthclient.mjs';

let fx, up, listener, docs, docBase, mcpUrl, provider, b;
const hits = {};

before(async () => {
  const cert = makeSelfSignedCert(await makeTempDir(), 'cimd');
  docs = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (q, s) => {
    hits[q.url] = (hits[q.url] ?? 0) + 1;
    const doc = {
      '/app/client.json': {
        client_id: `${docBase}/app/client.json`, client_name: 'CIMD Test App', client_uri: 'https://app.example',
        redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      },
      '/other/client.json': { client_id: `${docBase}/app/client.json`, client_name: 'Impostor', redirect_uris: ['http://127.0.0.1/callback'] },
    }[q.url] ?? (/^\/more\/[a-z0-9-]+\.json$/.test(q.url)
      ? { client_id: `${docBase}${q.url}`, client_name: 'More', redirect_uris: ['http://127.0.0.1/callback'] } : undefined);
    if (!doc) { s.writeHead(404); s.end(); return; }
    s.writeHead(200, { 'content-type': 'application/json' });
    s.end(JSON.stringify(doc));
  });
  await new Promise((r) => docs.listen(0, '127.0.0.1', r));
  docBase = `https://127.0.0.1:${docs.address().port}`;
  [fx, up, listener] = await Promise.all([
    startLoginFixture({
      tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
      accounts: { '00u-alice': { email: 'alice@acme.com' } },
      // one cached document (app/client.json): the others are used without a record, as a client swept idle
      gatewayArgs: ['--cimd-ca-file', cert.cert, '--cimd-cache-max', '1'],
      gatewayEnv: { MCPGATE_EGRESS_ALLOW_UNTRUSTED: '127.0.0.0/8' },
    }),
    startEverything(),
    startRedirectListener(),
  ]);
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/connectors/everything', { url: up.url, description: 'Everything' });
  assert.equal(r.status, 201, r.body);
  r = await admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] });
  assert.equal(r.status, 200, r.body);
  mcpUrl = `${fx.gw.url}/t/acme/mcp`;
});

after(async () => {
  docs?.closeAllConnections?.();
  await new Promise((r) => (docs ? docs.close(r) : r()));
  if (fx) await fx.stop();
});

const atListener = (u) => u.startsWith(listener.url('/'));

test('CIMD client: the SDK uses its document URL as client_id; sign-in, consent, Allow → code → token → tools', async () => {
  const clientId = `${docBase}/app/client.json`;
  provider = new MemoryProvider({ redirectUrl: listener.url('/callback'), clientName: 'ignored: the document names it', clientMetadataUrl: clientId });
  const authUrl = await startAuthorization(mcpUrl, provider);
  assert.equal(provider.registrations, 0, 'no dynamic registration');
  assert.equal(authUrl.searchParams.get('client_id'), clientId, 'the document URL is the client_id');
  assert.equal(authUrl.searchParams.get('redirect_uri'), listener.url('/callback'));
  assert.equal(hits['/app/client.json'], undefined, 'nothing fetched before authorize');

  b = fx.browser();
  let res = await signIn(b, authUrl.href, { login: '00u-alice', stopAtCallback: atListener });
  assert.equal(res.stopped, undefined, 'the consent page comes first');
  assert.equal(res.status, 200, res.text?.slice(0, 300));
  assert.equal(hits['/app/client.json'], 1, 'the gateway fetched the document');
  const text = res.text.replace(/\s+/g, ' ');
  assert.match(text, /Allow “<bdi>CIMD Test App<\/bdi>” to use your tools\?/, 'the name from the document, isolated (bidi)');
  assert.match(text, /not verified by mcpgate/);
  assert.ok(text.includes(`<code>${clientId}</code>`), 'the client id (its document URL)');
  assert.ok(text.includes(`goes back to <strong>127.0.0.1:${listener.port}</strong>`), 'the redirect host');
  assert.ok(text.includes(`on <strong>${mcpUrl}</strong>`), 'the resource');
  assert.ok(!text.includes('ignored: the document names it'));
  // the page lets Allow go to this redirect's origin (browsers check it)
  assert.match(res.headers.get('content-security-policy'), new RegExp(`form-action 'self' http://127\\.0\\.0\\.1:${listener.port};`));

  res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: atListener });
  assert.equal(res.stopped, true, `sent back to the client: ${res.status} ${res.text?.slice(0, 200)}`);
  const back = new URL(res.url);
  assert.equal(back.pathname, '/callback');
  assert.equal(back.searchParams.get('state'), provider.lastState);
  assert.equal(back.searchParams.get('iss'), `${fx.gw.url}/t/acme`);
  const c = await finishAndConnect(mcpUrl, provider, back.searchParams.get('code'));
  assert.match(provider.tokens().access_token, /^mgo_/);
  const tools = await c.client.listTools();
  assert.ok(tools.tools.some((t) => t.name === 'everything__echo'), `tools: ${tools.tools.map((t) => t.name)}`);
  await c.close();
  // the admin sees the client as a cached document
  const rec = await fx.op.get(`/admin/v1/tenants/acme/oauth-clients/${encodeURIComponent(clientId)}`);
  assert.equal(rec.status, 200, rec.body);
  assert.equal(rec.json.kind, 'cimd');
  assert.equal(rec.json.client_name, 'CIMD Test App');
});

test('the same CIMD client again: straight back with a code, the document from the cache; an impostor document is refused', async () => {
  assert.ok(b && provider, 'the first test ran');
  provider.dropTokens();
  const again = await startAuthorization(mcpUrl, provider);
  const res = await b.get(again.href, { stopAt: atListener });
  assert.equal(res.stopped, true, `no consent page this time: ${res.status} ${res.text?.slice(0, 200)}`);
  const back = new URL(res.url);
  assert.equal(back.searchParams.get('state'), provider.lastState);
  assert.equal(hits['/app/client.json'], 1, 'served from the cache');
  const c = await finishAndConnect(mcpUrl, provider, back.searchParams.get('code'));
  assert.ok((await c.client.listTools()).tools.length > 0);
  await c.close();

  // a document naming another client_id: an error page, no redirect
  const imp = new MemoryProvider({ redirectUrl: listener.url('/callback'), clientMetadataUrl: `${docBase}/other/client.json` });
  const url = await startAuthorization(mcpUrl, imp);
  const bad = await b.get(url.href, { stopAt: atListener });
  assert.equal(bad.stopped, undefined, 'nothing redirected to the client');
  assert.equal(bad.status, 400);
  assert.match(bad.text, /Unknown application/);
  assert.equal(hits['/other/client.json'], 1);
  assert.equal(listener.pending(), 0);
});

/** Alice's authorization of the document client at /more/{name}.json in browser br: the response
 * (stopped at the listener, or a page), with its verifier. */
async function authorizeMore(br, name) {
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({ response_type: 'code', client_id: `${docBase}/more/${name}.json`,
    redirect_uri: listener.url('/callback'), state: 's', code_challenge: challenge, code_challenge_method: 'S256', resource: mcpUrl });
  const res = await signIn(br, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: atListener });
  return { res, verifier };
}
const asksConsent = (res) => !res.stopped && res.status === 200 && /oauth\/consent/.test(res.text ?? '');

// A client whose record is gone (swept as idle, or a document used without
// caching) may still hold consents (and a code) but no grant. Before this
// test's fix the admin's DELETE of it answered 404 — and, answering so,
// rolled back the removal of those consents: the client stayed allowed
// without a click.
test('DELETE of a client without a record that holds consents but no grant: 204, and the consent is gone', async () => {
  const br = fx.browser();
  let { res } = await authorizeMore(br, 'swept');
  assert.ok(asksConsent(res), `the consent page: ${res.status} ${res.text?.slice(0, 200)}`);
  res = await br.submitForm(res, { fields: { decision: 'allow' }, stopAt: atListener });
  assert.equal(res.stopped, true, `a code: ${res.status} ${res.text?.slice(0, 200)}`);
  ({ res } = await authorizeMore(br, 'swept'));
  assert.equal(res.stopped, true, 'allowed before: no consent page');
  const id = `${docBase}/more/swept.json`;
  assert.equal((await fx.op.get(`/admin/v1/tenants/acme/oauth-clients/${encodeURIComponent(id)}`)).status, 404, 'no record');
  const del = await fx.t.acme.admin('DELETE', `/oauth-clients/${encodeURIComponent(id)}`);
  assert.equal(del.status, 204, del.body);
  // (the delete blocks a document URL: lifted here to see the consent went)
  const unblock = await fx.t.acme.admin('DELETE', `/oauth-clients/${encodeURIComponent(id)}/block`);
  assert.ok(unblock.status === 204 || unblock.status === 404, unblock.body);
  ({ res } = await authorizeMore(br, 'swept'));
  assert.ok(asksConsent(res), `asked again after the delete: ${res.status} ${res.url}`);
});

// The document of a client is anyone's to serve again. Before this test's
// fix an admin's DELETE of a document client lasted until the next
// authorization request fetched the document back: the client was allowed
// again at once (a consent page, or none for a person who had allowed it
// before). Now the delete leaves a block that the lookup, the code job and
// the admin's resolve read, until the admin lifts it.
test('an admin\'s DELETE of a document client blocks it until the admin lifts the block', async () => {
  const br = fx.browser(), id = `${docBase}/more/blocked.json`, enc = encodeURIComponent(id);
  const { admin } = fx.t.acme;
  let { res, verifier } = await authorizeMore(br, 'blocked');
  assert.ok(asksConsent(res), `the consent page: ${res.status}`);
  // a second page of the same request, left open while the admin acts (a second browser of Alice's)
  const other = fx.browser();
  const pending = (await authorizeMore(other, 'blocked')).res;
  assert.ok(asksConsent(pending), `a second consent page: ${pending.status}`);
  res = await br.submitForm(res, { fields: { decision: 'allow' }, stopAt: atListener });
  assert.equal(res.stopped, true, `a code: ${res.status} ${res.text?.slice(0, 200)}`);
  const tk = await tokenRequest(fx, 'acme', { grant_type: 'authorization_code', code: new URL(res.url).searchParams.get('code'),
    redirect_uri: listener.url('/callback'), client_id: id, code_verifier: verifier });
  assert.equal(tk.status, 200, tk.text);

  assert.equal((await admin('DELETE', `/oauth-clients/${enc}`)).status, 204);
  const fetchedBefore = hits['/more/blocked.json'];
  ({ res } = await authorizeMore(br, 'blocked'));
  assert.notEqual(res.stopped, true, 'nothing redirected');
  assert.equal(res.status, 403, res.text?.slice(0, 200));
  assert.match(res.text ?? '', /blocked/);
  assert.equal(hits['/more/blocked.json'], fetchedBefore, 'the document is not fetched again');
  const resolve = await fx.op.get(`/admin/v1/tenants/acme/oauth-clients/resolve?client_id=${enc}`);
  assert.equal(resolve.status, 403, resolve.body);
  const rec = await fx.op.get(`/admin/v1/tenants/acme/oauth-clients/${enc}`);
  assert.equal(rec.json?.kind, 'blocked', rec.body);
  const rt = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: tk.json.refresh_token, client_id: id });
  assert.equal(rt.status, 400, rt.text);
  const late = await other.submitForm(pending, { fields: { decision: 'allow' }, stopAt: atListener });
  assert.notEqual(late.stopped, true, `Allow on a page open before the block redirects nothing (${late.url})`);
  assert.equal(late.status, 400, late.text?.slice(0, 200));
  // a repeated DELETE keeps it blocked; a registered client cannot be "blocked"
  assert.equal((await admin('DELETE', `/oauth-clients/${enc}`)).status, 204);
  assert.equal((await admin('PUT', '/oauth-clients/mcpc_nope/block')).status, 400);

  // lifted: fetched and asked again; lifting twice is 404
  assert.equal((await admin('DELETE', `/oauth-clients/${enc}/block`)).status, 204);
  assert.equal((await admin('DELETE', `/oauth-clients/${enc}/block`)).status, 404);
  ({ res } = await authorizeMore(br, 'blocked'));
  assert.ok(asksConsent(res), `asked again once lifted: ${res.status}`);
  assert.equal(hits['/more/blocked.json'], fetchedBefore + 1);

  // a block before the client was ever seen
  const fresh = `${docBase}/more/never.json`;
  assert.equal((await admin('PUT', `/oauth-clients/${encodeURIComponent(fresh)}/block`)).status, 204);
  ({ res } = await authorizeMore(br, 'never'));
  assert.equal(res.status, 403, res.text?.slice(0, 200));
  assert.equal(hits['/more/never.json'], undefined, 'never fetched');
  const list = await fx.op.get('/admin/v1/tenants/acme/oauth-clients?kind=blocked');
  assert.deepEqual(list.json?.clients?.map((c) => c.client_id), [fresh], list.body);
});
