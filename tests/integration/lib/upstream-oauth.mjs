// tests/integration/lib/upstream-oauth.mjs — an upstream service that wants
// per-user OAuth (Vault 1/2): its authorization server and its MCP server.
//
// What is real:
//   - startUpstreamAS(): oidc-provider (a certified OP) in-process on its own
//     127.0.0.1 port. One static confidential client (the gateway) with
//     authorization_code + refresh_token, PKCE S256 required, opaque access
//     tokens, refresh tokens on every code exchange and rotated on every
//     refresh (reusing a rotated refresh token is invalid_grant and, as the
//     provider does, revokes that whole grant), RFC 7009 revocation (as
//     oidc-provider does it: revoking either token of a grant, refresh or
//     access, ends every token of that grant) and RFC 7662 introspection.
//     A second confidential client (the resource server, no grant types) is
//     what the MCP upstream introspects with.
//     The provider's own endpoints answer every OAuth request; nothing here
//     rewrites a token, code or error. Two things are the fixture's, not the
//     provider's: strictClientAuth (oidc-provider accepts client_secret_basic
//     and _post from any secret client; the front handler refuses the one the
//     client is not registered for, as Okta/GitHub-style ASes do) and the
//     revocation knobs below.
//   - startOAuthMcpUpstream(): an MCP server from the official SDK
//     (McpServer + StreamableHTTPServerTransport, stateful sessions) that
//     checks every request's bearer token with the AS's introspection
//     endpoint (no cache) and serves RFC 9728 protected-resource metadata.
//
// What is in front of the provider: a small node http handler on the same
// port that
//   - serves the interaction (login + consent) pages itself, through
//     provider.interactionDetails / interactionFinished (see "Sign-in" below);
//   - counts token / revocation / introspection requests (stats());
//   - can slow down or fail the revocation endpoint, and hold a refresh
//     (the knobs below);
//   - answers /.well-known/oauth-authorization-server (RFC 8414) with the
//     provider's discovery document (oidc-provider serves only
//     /.well-known/openid-configuration).
// Everything else reaches the provider untouched.
//
// Sign-in (login + consent in one step; consent always grants every
// requested scope, as for a first-party app):
//   - GET /interaction/:uid shows an HTML form: <input name=login> and a
//     submit button, posting to /interaction/:uid/login. Any account id
//     ([A-Za-z0-9._@-]{1,64}) signs in; there are no passwords.
//   - It completes at once, without a page, when the browser carries the
//     cookie `upstream_login=<account>` for the AS origin (as.loginCookie(acct)
//     gives the header value), or when the test called as.loginAs(acct)
//     (every interaction from then on, until loginAs(null)).
//   - A second authorization in the same browser session with the provider's
//     session still alive needs no login: a consent interaction, if any, is
//     completed automatically for the session's account.
//
// Discovery options (Vault 2/2, connector auth {"type":"oauth","discover":true}):
//   - registration: true enables oidc-provider's RFC 7591 dynamic client
//     registration (open, no initial access token) at /reg.
//   - resourceIndicators: true enables RFC 8707 in the provider: the
//     resource set with as.setResource(url) (the MCP upstream's URL) is the
//     one resource server; access tokens for it are opaque and carry
//     aud = that URL (introspection shows it); any other resource is
//     invalid_target.
//   - cimd: true makes the AS a Client ID Metadata Document AS. oidc-provider
//     9.13 implements CIMD but only for https client_id URLs, and the test
//     gateway serves plain http on loopback, so the front handler does what
//     such an AS does: the metadata says client_id_metadata_document_supported,
//     and a client_id that is an http(s) URL is resolved at /authorize,
//     /token and /token/revocation by FETCHING that URL (no redirects),
//     checking the document (a JSON object whose client_id is that URL, a
//     public client: token_endpoint_auth_method none, no secret) and, at
//     /authorize, that redirect_uri is one of its redirect_uris; the
//     document then becomes the provider's client (stored through the
//     adapter), so the provider's own code answers the request.
//     stats().cimdFetches lists the URLs fetched.
//   - metadata: (doc) => doc rewrites the AS metadata document (both
//     well-known locations) — to make it unusable in refusal tests.
//
// Knobs (see startUpstreamAS): setRevocationDelay(ms) holds each revocation
// request that long before the provider sees it; if the caller has hung up
// by then (gateway SIGKILLed) the request is dropped unprocessed, so the
// token stays live (counted in stats().revocationAborted).
// holdRevocations() does the same until its release() instead of for a
// time: every revocation request that arrives while it holds waits (after
// setRevocationDelay's wait, if any) until release() or until its caller
// hangs up (then dropped unprocessed and counted in
// stats().revocationAborted, at once) — the order a test needs ("the AS
// answers the held refresh first") without a race against a clock, and no
// wait past it. → {release()}; release() is idempotent.
// setRevocationStatus(code) answers every revocation with that status (and
// {"error":"temporarily_unavailable"}, Retry-After: 1) without revoking;
// null restores normal answers. setRefreshRevocationUnsupported(true) answers
// the revocation of a refresh token 400 {"error":"unsupported_token_type"}
// (RFC 7009 §2.2.1: a server that does not revoke that kind) and revokes it
// not; access tokens are revoked as ever. setAccessTokenTTL(s) changes the lifetime of
// access tokens issued afterwards.
// holdRefresh({trickleMs}) holds the next refresh_token request (one): its
// response head (200, application/json, chunked) goes out at once and then
// one space every trickleMs (JSON allows leading whitespace), so the caller
// never sees a silent connection, until release(). Only then does the
// provider see the request (the fixture replays the form to it over
// loopback and appends its answer; an error it answers arrives as its JSON
// body under the 200 already sent) — so a caller that hung up meanwhile
// leaves the request unprocessed and its refresh token unused, as with
// setRevocationDelay. The hold is {arrived (a promise of its
// tokenRequests entry), release(), entry}; the entry gets held: true,
// aborted: true (the caller hung up first), answered (the provider's status)
// and issued: {refresh, access} (hashes of the tokens it answered).
// holdCode({trickleMs}) does the same with the next authorization_code
// request (a connect's code exchange). Every refresh_token entry of
// stats().tokenRequests has refresh (the sha256 of the refresh token sent)
// and overlapped (another request with that refresh token was still open
// when it arrived: what a gateway serialising its refreshes never does).
import http from 'node:http';
import crypto from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { nextRsaPrivateKey } from './keys.mjs';

// zod and the SDK's server are imported by startOAuthMcpUpstream, oidc-provider
// by startUpstreamAS, on first use: ~0.7 s of CPU that a file importing this
// module (or vault.mjs) for one of them, or for its helpers, does not spend.
let z, McpServer, StreamableHTTPServerTransport, isInitializeRequest;
async function loadMcpServer() {
  if (McpServer) return;
  const [zod, mcp, sht, types] = await Promise.all([
    import('zod'),
    import('@modelcontextprotocol/sdk/server/mcp.js'),
    import('@modelcontextprotocol/sdk/server/streamableHttp.js'),
    import('@modelcontextprotocol/sdk/types.js'),
  ]);
  ({ z } = zod);
  ({ isInitializeRequest } = types);
  ({ StreamableHTTPServerTransport } = sht);
  ({ McpServer } = mcp);
}

// oidc-provider warns on import that node 20 is not a supported runtime (it
// works); that line, and only it, is dropped.
const EXPECTED_NOTICES = [/Unsupported runtime/];

function quietly(fn) {
  const saved = { warn: console.warn, info: console.info };
  const filter = (orig) => (...args) => {
    if (typeof args[0] === 'string' && EXPECTED_NOTICES.some((re) => re.test(args[0]))) return;
    orig.apply(console, args);
  };
  console.warn = filter(saved.warn);
  console.info = filter(saved.info);
  const restore = () => { console.warn = saved.warn; console.info = saved.info; };
  try {
    const out = fn();
    if (out && typeof out.then === 'function') return out.finally(restore);
    restore();
    return out;
  } catch (e) {
    restore();
    throw e;
  }
}

let Provider, oidcErrors;
async function loadProvider() {
  if (!Provider) ({ default: Provider, errors: oidcErrors } = await quietly(() => import('oidc-provider')));
}

/** sha256 hex of a token, as listed in stats().revoked[].hash. */
export const hashToken = (token) => crypto.createHash('sha256').update(String(token)).digest('hex');

const ACCOUNT_RE = /^[A-Za-z0-9._@-]{1,64}$/;
const htmlEscape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// oidc-provider storage over one Map per AS (the provider's MemoryAdapter is
// module-global; this keeps two ASes of one test file apart). consume()
// marks the stored payload, which is how the provider sees a rotated refresh
// token or a used code.
function mapAdapter(entries) {
  const live = (key) => {
    const e = entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt && e.expiresAt <= Date.now()) { entries.delete(key); return undefined; }
    return e.payload;
  };
  const findBy = (model, field, value) => {
    for (const key of entries.keys()) {
      if (!key.startsWith(`${model}:`)) continue;
      const p = live(key);
      if (p && p[field] === value) return p;
    }
    return undefined;
  };
  return (model) => ({
    async upsert(id, payload, expiresIn) {
      entries.set(`${model}:${id}`, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
    },
    async find(id) { return live(`${model}:${id}`); },
    async findByUid(uid) { return findBy(model, 'uid', uid); },
    async findByUserCode(userCode) { return findBy(model, 'userCode', userCode); },
    async consume(id) {
      const p = live(`${model}:${id}`);
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    },
    async destroy(id) { entries.delete(`${model}:${id}`); },
    async revokeByGrantId(grantId) {
      for (const [key, e] of entries) if (e.payload?.grantId === grantId) entries.delete(key);
    },
  });
}

function signingJwk() {
  const privateKey = nextRsaPrivateKey();
  return { ...privateKey.export({ format: 'jwk' }), kid: `up-${crypto.randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

function listen(server, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => { server.off('error', reject); resolve(); });
  });
}

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

function cookieValue(req, name) {
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

const REGISTERED = { client_secret_basic: 'basic', client_secret_post: 'post' };

// the client_id a token/revocation request authenticates as (Basic or body)
function clientIdOf(req, form) {
  const m = /^Basic +(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return form.get('client_id');
  const basic = Buffer.from(m[1], 'base64').toString('utf8');
  try { return decodeURIComponent(basic.slice(0, basic.indexOf(':')).replace(/\+/g, ' ')); } catch { return undefined; }
}

const basicAuth = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

// ------------------------------------------------------------------ the AS

const PATHS = {
  authorization: '/authorize',
  token: '/token',
  revocation: '/token/revocation',
  introspection: '/token/introspection',
  jwks: '/jwks',
  userinfo: '/me',
};

/**
 * Starts the upstream's authorization server. Options:
 *   redirectUris (required, array), clientId ('mcpgate-upstream'),
 *   clientSecret (random), tokenEndpointAuthMethod ('client_secret_basic' |
 *   'client_secret_post'), scopes (['openid', 'offline_access', 'tools.read']),
 *   accessTokenTTL (60 s), refreshTokenTTL (86400 s), rsClientId
 *   ('mcp-upstream-rs'), rsClientSecret (random), strictClientAuth (true: the
 *   gateway's client must authenticate at the token and revocation endpoints
 *   with tokenEndpointAuthMethod, else 401 invalid_client from the front
 *   handler; false: oidc-provider's own rule, either secret method).
 */
export async function startUpstreamAS(opts = {}) {
  await loadProvider();
  const {
    clientId = 'mcpgate-upstream',
    clientSecret = crypto.randomBytes(24).toString('base64url'),
    redirectUris,
    tokenEndpointAuthMethod = 'client_secret_basic',
    scopes = ['openid', 'offline_access', 'tools.read'],
    refreshTokenTTL = 86400,
    rsClientId = 'mcp-upstream-rs',
    rsClientSecret = crypto.randomBytes(24).toString('base64url'),
    strictClientAuth = true,
    registration = false,
    resourceIndicators = false,
    cimd = false,
    metadata = null,
    host = '127.0.0.1', // another loopback address is "another host" (127.0.0.2)
  } = opts;
  let resource = null;
  let accessTokenTTL = opts.accessTokenTTL ?? 60;
  if (!Array.isArray(redirectUris) || redirectUris.length === 0) {
    throw new Error('startUpstreamAS: opts.redirectUris (array) is required');
  }
  if (!['client_secret_basic', 'client_secret_post'].includes(tokenEndpointAuthMethod)) {
    throw new Error(`startUpstreamAS: unsupported tokenEndpointAuthMethod ${tokenEndpointAuthMethod}`);
  }

  let revocationDelay = 0;
  let revocationHold = null; // holdRevocations: a promise released() resolves, or null
  let refreshRevocationUnsupported = false; // setRefreshRevocationUnsupported
  let revocationStatus = null;
  let refreshHold = null; // the next refresh_token request to hold (holdRefresh)
  let codeHold = null; // the next authorization_code request to hold (holdCode)
  const openRefresh = new Map(); // refresh token hash → requests still open
  const replayKey = crypto.randomBytes(16).toString('hex'); // a held request's replay to the provider
  let autoLogin = null;
  const counters = {
    token: { authorization_code: 0, refresh_token: 0, other: 0 },
    tokenRequests: [],   // {grant_type, auth: 'basic'|'post'|'none', status}
    revocation: 0,       // processed by the provider
    revocationAttempts: 0, // every POST to the revocation endpoint
    revocationAborted: 0,  // dropped: the caller hung up during the delay
    revoked: [],         // {hash, kind: 'refresh_token'|'access_token'|'unknown', hint}
    introspection: 0,
    logins: [],          // account ids signed in through the interaction
    cimdFetches: [],     // client_id URLs fetched (cimd)
    registrations: 0,    // RFC 7591 registrations (registration)
  };
  const adapterEntries = new Map();

  const server = http.createServer((req, res) => {
    front(req, res).catch((e) => {
      console.error('upstream AS front:', e);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`upstream AS: ${e?.message ?? e}`);
    });
  });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await listen(server, host);
  const issuer = `http://${host}:${server.address().port}`;

  const provider = quietly(() => new Provider(issuer, {
    adapter: mapAdapter(adapterEntries),
    // only id_tokens are signed (openid scope); a key of our own keeps the
    // provider from using (and warning about) its built-in development keys
    jwks: { keys: [signingJwk()] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    routes: PATHS,
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [...redirectUris],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: tokenEndpointAuthMethod,
      },
      {
        // the MCP upstream as a resource server: may only introspect
        client_id: rsClientId,
        client_secret: rsClientSecret,
        redirect_uris: [],
        grant_types: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    scopes,
    claims: { openid: ['sub'] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      // RFC 7009: a client revokes only its own tokens (another client's:
      // 400 invalid_request). The provider then ends every token of the
      // token's grant, whichever of its tokens was revoked.
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => {
          if (token.clientId !== client.clientId) throw new oidcErrors.InvalidRequest('client is not authorized to revoke the presented token');
          return true;
        },
      },
      // RFC 7662: the resource server may introspect any token, a client its own
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => client.clientId === rsClientId || client.clientId === token.clientId,
      },
      // without resourceIndicators: tokens are for this AS's own resource
      // (opaque, aud-less); a `resource` parameter is ignored rather than
      // refused. With it: one resource server (setResource), tokens bound
      // to it.
      resourceIndicators: resourceIndicators ? {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (!resource || indicator !== resource) throw new oidcErrors.InvalidTarget();
          return { scope: 'tools.read', audience: resource, accessTokenFormat: 'opaque', accessTokenTTL };
        },
      } : { enabled: false },
      registration: { enabled: registration },
    },
    async findAccount(ctx, sub) {
      if (!ACCOUNT_RE.test(sub)) return undefined;
      return { accountId: sub, claims: async () => ({ sub }) };
    },
    // a refresh token on every code exchange (offline_access is dropped from
    // the request by the provider unless prompt=consent; the gateway needs
    // one regardless), not bound to the provider's browser session
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    rotateRefreshToken: () => true,
    clientBasedCORS: () => false,
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>oauth error</title><pre id="error">${htmlEscape(JSON.stringify(out))}</pre>`;
    },
    ttl: {
      AccessToken: () => accessTokenTTL,
      AuthorizationCode: 60,
      RefreshToken: refreshTokenTTL,
      Grant: refreshTokenTTL,
      Interaction: 600,
      Session: 3600,
      IdToken: 3600,
    },
  }));
  provider.on('server_error', (ctx, err) => console.error('upstream AS: provider server_error:', err));
  const handler = provider.callback();

  async function front(req, res) {
    const url = new URL(req.url, issuer);
    const path = url.pathname;
    if (path.startsWith('/interaction/')) return interaction(req, res, path);
    if (req.method === 'GET' && (path === '/.well-known/oauth-authorization-server'
        || (path === '/.well-known/openid-configuration' && (cimd || metadata) && !url.searchParams.has('internal')))) {
      if (!cimd && !metadata) {
        req.url = '/.well-known/openid-configuration';
        return handler(req, res);
      }
      const r = await fetch(`${issuer}/.well-known/openid-configuration?internal=1`);
      let doc = await r.json();
      if (cimd) doc.client_id_metadata_document_supported = true;
      if (metadata) doc = metadata(doc);
      const b = typeof doc === 'string' ? doc : JSON.stringify(doc);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      return res.end(b);
    }
    if (req.method === 'POST' && path === '/reg') counters.registrations++;
    if (cimd && req.method === 'GET' && path === PATHS.authorization) {
      const id = url.searchParams.get('client_id') ?? '';
      if (/^https?:\/\//.test(id)) {
        const why = await resolveCimd(id, url.searchParams.get('redirect_uri'));
        if (why) {
          res.writeHead(400, { 'content-type': 'text/html' });
          return res.end(`<!DOCTYPE html><title>oauth error</title><pre id="error">${htmlEscape(why)}</pre>`);
        }
      }
    }
    if (req.method === 'POST' && [PATHS.token, PATHS.revocation, PATHS.introspection].includes(path)) {
      // read the form here (to count it), hand it to the provider as req.body
      const raw = (await readAll(req)).toString('utf8');
      req.body = raw;
      if (path === PATHS.token && req.headers['x-fixture-replay'] === replayKey) return handler(req, res);
      const form = new URLSearchParams(raw);
      const formId = form.get('client_id') ?? '';
      if (cimd && path !== PATHS.introspection && /^https?:\/\//.test(formId)) {
        const why = await resolveCimd(formId, null);
        if (why) {
          const b = JSON.stringify({ error: 'invalid_client', error_description: why });
          res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
          return res.end(b);
        }
      }
      const auth = req.headers.authorization ? 'basic' : form.has('client_secret') ? 'post' : 'none';
      if (strictClientAuth && path !== PATHS.introspection && auth !== 'none'
          && clientIdOf(req, form) === clientId && auth !== REGISTERED[tokenEndpointAuthMethod]) {
        // oidc-provider takes either secret method from any client_secret_*
        // client; the real services the gateway meets enforce the registered one
        const b = JSON.stringify({ error: 'invalid_client', error_description: `client authentication must use ${tokenEndpointAuthMethod}` });
        if (path === PATHS.token) {
          counters.token[form.get('grant_type') === 'authorization_code' || form.get('grant_type') === 'refresh_token' ? form.get('grant_type') : 'other']++;
          counters.tokenRequests.push({ grant_type: form.get('grant_type'), auth, status: 401 });
        } else {
          counters.revocationAttempts++;
        }
        res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
        return res.end(b);
      }
      if (path === PATHS.token) {
        const gt = form.get('grant_type');
        if (gt === 'authorization_code' || gt === 'refresh_token') counters.token[gt]++;
        else counters.token.other++;
        const entry = { grant_type: gt, auth, status: undefined };
        counters.tokenRequests.push(entry);
        res.once('finish', () => { entry.status = res.statusCode; });
        if (gt === 'refresh_token') {
          const h = hashToken(form.get('refresh_token') ?? '');
          entry.refresh = h;
          entry.overlapped = (openRefresh.get(h) ?? 0) > 0;
          openRefresh.set(h, (openRefresh.get(h) ?? 0) + 1);
          res.once('close', () => {
            const n = openRefresh.get(h) - 1;
            if (n > 0) openRefresh.set(h, n); else openRefresh.delete(h);
          });
          if (refreshHold) {
            const hold = refreshHold;
            refreshHold = null;
            return holdRefreshRequest(req, res, raw, entry, hold);
          }
        }
        if (gt === 'authorization_code' && codeHold) {
          const hold = codeHold;
          codeHold = null;
          return holdRefreshRequest(req, res, raw, entry, hold);
        }
      } else if (path === PATHS.introspection) {
        counters.introspection++;
      } else {
        counters.revocationAttempts++;
        let hungUp = false;
        res.once('close', () => { if (!res.writableFinished) hungUp = true; });
        if (revocationStatus !== null) {
          const b = JSON.stringify({ error: 'temporarily_unavailable', error_description: 'revocation knob' });
          res.writeHead(revocationStatus, {
            'content-type': 'application/json', 'retry-after': '1', 'content-length': Buffer.byteLength(b),
          });
          return res.end(b);
        }
        if (revocationDelay > 0) await new Promise((r) => setTimeout(r, revocationDelay));
        if (revocationHold && !hungUp) {
          const closed = new Promise((r) => { if (res.destroyed) r(); else res.once('close', r); });
          await Promise.race([revocationHold, closed]);
        }
        if (hungUp || req.socket.destroyed) { counters.revocationAborted++; return undefined; }
        const token = form.get('token') ?? '';
        let kind = 'unknown';
        if (token && await provider.RefreshToken.find(token)) kind = 'refresh_token';
        else if (token && await provider.AccessToken.find(token)) kind = 'access_token';
        if (refreshRevocationUnsupported && kind === 'refresh_token') {
          const b = JSON.stringify({ error: 'unsupported_token_type', error_description: 'refresh tokens are not revoked here' });
          res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
          return res.end(b);
        }
        res.once('finish', () => {
          if (res.statusCode === 200) {
            counters.revocation++;
            counters.revoked.push({ hash: hashToken(token), kind, hint: form.get('token_type_hint') });
          }
        });
      }
    }
    return handler(req, res);
  }

  function newHold(trickleMs, set) {
    let arrive;
    let release;
    const hold = {
      trickleMs,
      arrived: new Promise((r) => { arrive = r; }),
      released: new Promise((r) => { release = r; }),
      entry: null,
    };
    hold.arrive = (entry) => { hold.entry = entry; arrive(entry); };
    set(hold);
    return { arrived: hold.arrived, release: () => release(), get entry() { return hold.entry; } };
  }

  // holdRefresh: the head now, a space every trickleMs, the provider's
  // answer after release() — or nothing at all when the caller hung up first.
  async function holdRefreshRequest(req, res, raw, entry, hold) {
    entry.held = true;
    let hungUp = false;
    const closed = new Promise((r) => res.once('close', () => { if (!res.writableFinished) hungUp = true; r(); }));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.write(' ');
    const tick = setInterval(() => { if (!hungUp) res.write(' '); }, hold.trickleMs);
    hold.arrive(entry);
    await Promise.race([hold.released, closed]); // a hang-up (or close()) ends the hold
    clearInterval(tick);
    if (hungUp || req.socket.destroyed) { entry.aborted = true; return undefined; }
    const headers = { 'content-type': 'application/x-www-form-urlencoded', 'x-fixture-replay': replayKey };
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    const r = await fetch(issuer + PATHS.token, { method: 'POST', headers, body: raw });
    const text = await r.text();
    try {
      const j = JSON.parse(text);
      if (j.refresh_token || j.access_token) {
        entry.issued = { refresh: j.refresh_token ? hashToken(j.refresh_token) : null, access: j.access_token ? hashToken(j.access_token) : null };
      }
    } catch { /* the provider's body goes out as it is */ }
    entry.answered = r.status;
    if (hungUp || req.socket.destroyed) { entry.aborted = true; return undefined; }
    res.end(text);
    return undefined;
  }

  // CIMD: fetch the client's metadata document (what a CIMD AS does),
  // check it, and make it the provider's client. Returns an error string,
  // or undefined when the client is usable.
  async function resolveCimd(id, redirectUri) {
    counters.cimdFetches.push(id);
    let doc;
    try {
      const r = await fetch(id, { redirect: 'manual', headers: { accept: 'application/json' } });
      if (r.status !== 200) return `client_id metadata document: HTTP ${r.status}`;
      doc = await r.json();
    } catch (e) {
      return `client_id metadata document fetch failed: ${e.message}`;
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return 'client_id metadata document is not a JSON object';
    if (doc.client_id !== id) return 'client_id metadata document client_id does not match';
    if ((doc.token_endpoint_auth_method ?? 'none') !== 'none' || 'client_secret' in doc) return 'client_id metadata document must be a public client';
    if (!Array.isArray(doc.redirect_uris) || doc.redirect_uris.some((u) => typeof u !== 'string')) return 'client_id metadata document has no redirect_uris';
    if (redirectUri !== null && !doc.redirect_uris.includes(redirectUri)) return 'redirect_uri is not in the client_id metadata document';
    await provider.Client.adapter.upsert(id, {
      client_id: id,
      client_name: doc.client_name,
      redirect_uris: doc.redirect_uris,
      grant_types: doc.grant_types ?? ['authorization_code'],
      response_types: doc.response_types ?? ['code'],
      token_endpoint_auth_method: 'none',
    });
    return undefined;
  }

  function loginPage(res, uid, error) {
    const b = `<!DOCTYPE html><html><head><title>Upstream sign-in</title></head><body>
<h1>Sign in to the upstream</h1>${error ? `<p id="error">${htmlEscape(error)}</p>` : ''}
<form method="post" action="/interaction/${htmlEscape(uid)}/login">
<label>Account <input name="login" autofocus autocomplete="off"></label>
<button type="submit">Sign in and allow</button>
</form></body></html>`;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(b) });
    res.end(b);
  }

  // The grant for a consent: every requested scope (and claim / resource
  // scope the provider reports missing).
  async function grantFor(details, accountId) {
    const { params, prompt } = details;
    let grant = prompt.name === 'consent' && details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    grant ??= new provider.Grant({ accountId, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(String(params.scope));
    const d = prompt.details ?? {};
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, s] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(indicator, s.join(' '));
    return grant.save();
  }

  async function interaction(req, res, path) {
    const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(path);
    if (!m || (m[2] && req.method !== 'POST') || (!m[2] && req.method !== 'GET')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (e) {
      res.writeHead(400, { 'content-type': 'text/html' });
      return res.end(`<!DOCTYPE html><title>interaction</title><pre id="error">${htmlEscape(e.message)}</pre>`);
    }
    if (details.uid !== m[1]) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return res.end('interaction mismatch');
    }
    let account;
    if (m[2]) {
      account = new URLSearchParams((await readAll(req)).toString('utf8')).get('login') ?? '';
      if (!ACCOUNT_RE.test(account)) return loginPage(res, details.uid, 'unknown account');
    } else if (details.prompt.name === 'consent' && details.session?.accountId) {
      account = details.session.accountId;
    } else {
      account = autoLogin ?? cookieValue(req, 'upstream_login');
      if (!account || !ACCOUNT_RE.test(account)) return loginPage(res, details.uid);
    }
    const result = {};
    if (details.prompt.name === 'login' || !details.session?.accountId) {
      result.login = { accountId: account };
      counters.logins.push(account);
    }
    result.consent = { grantId: await grantFor(details, account) };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }

  async function introspectAs(token, id, secret) {
    const r = await fetch(issuer + PATHS.introspection, {
      method: 'POST',
      headers: { authorization: basicAuth(id, secret), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    if (r.status !== 200) throw new Error(`introspection answered ${r.status}: ${await r.text()}`);
    return r.json();
  }

  let closed = false;
  return {
    issuer,
    authorizeUrl: issuer + PATHS.authorization,
    tokenUrl: issuer + PATHS.token,
    revocationUrl: issuer + PATHS.revocation,
    introspectionUrl: issuer + PATHS.introspection,
    discoveryUrl: `${issuer}/.well-known/oauth-authorization-server`,
    clientId,
    clientSecret,
    tokenEndpointAuthMethod,
    redirectUris: [...redirectUris],
    scopes: [...scopes],
    rsClientId,
    rsClientSecret,
    provider,
    setRevocationDelay(ms) { revocationDelay = Math.max(0, Number(ms) || 0); },
    /** Holds revocation requests until release() (see the header): {release()}. */
    holdRevocations() {
      let release;
      const held = new Promise((r) => { release = r; });
      revocationHold = held;
      return { release: () => { if (revocationHold === held) revocationHold = null; release(); } };
    },
    setRevocationStatus(code) { revocationStatus = code === null || code === undefined ? null : Number(code); },
    setRefreshRevocationUnsupported(on) { refreshRevocationUnsupported = !!on; },
    setAccessTokenTTL(seconds) { accessTokenTTL = seconds; },
    /** Holds the next refresh_token request (see the header): {arrived, release(), entry}. */
    holdRefresh({ trickleMs = 1000 } = {}) { return newHold(trickleMs, (h) => { refreshHold = h; }); },
    /** The same for the next authorization_code request (a connect's code exchange): holdCode(). */
    holdCode({ trickleMs = 1000 } = {}) { return newHold(trickleMs, (h) => { codeHold = h; }); },
    /** The one resource server of resourceIndicators (the MCP upstream's URL). */
    setResource(u) { resource = u; },
    /**
     * Forgets every client registered by RFC 7591 (as an AS that expired or
     * purged registrations does): their tokens stay, but the token and
     * revocation endpoints answer invalid_client to them. Returns how many.
     */
    forgetRegistrations() {
      let n = 0;
      for (const key of [...adapterEntries.keys()]) {
        if (!key.startsWith('Client:')) continue;
        const id = key.slice('Client:'.length);
        if (id === clientId || id === rsClientId) continue;
        adapterEntries.delete(key);
        n++;
      }
      return n;
    },
    registrationUrl: `${issuer}/reg`,
    /** Every later interaction completes as this account (null: show the form again). */
    loginAs(accountId) { autoLogin = accountId ?? null; },
    /** Cookie header value that makes a browser's interactions complete as accountId. */
    loginCookie(accountId) { return `upstream_login=${encodeURIComponent(accountId)}`; },
    stats() {
      return {
        token: { ...counters.token },
        tokenRequests: counters.tokenRequests.map((e) => ({ ...e })),
        revocation: counters.revocation,
        revocationAttempts: counters.revocationAttempts,
        revocationAborted: counters.revocationAborted,
        revoked: counters.revoked.map((e) => ({ ...e })),
        introspection: counters.introspection,
        logins: [...counters.logins],
        cimdFetches: [...counters.cimdFetches],
        registrations: counters.registrations,
      };
    },
    /** The provider's introspection answer (as the resource server) for a token. */
    introspection(token) { return introspectAs(token, rsClientId, rsClientSecret); },
    /** Whether the provider holds the token (access or refresh) as active. */
    async introspect(token) { return (await introspectAs(token, rsClientId, rsClientSecret)).active === true; },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

// ------------------------------------------------------------------ the MCP upstream

/**
 * Starts an MCP server (official SDK, stateful Streamable HTTP at /mcp) that
 * takes only bearer tokens the AS says are active. Options: as (from
 * startUpstreamAS, required), requiredScope (none: any active token; else a
 * token without it gets 403 insufficient_scope), audience (false; true: a
 * token whose introspected aud is not this server's URL is refused with 401
 * invalid_token — RFC 8707 audience binding), prm ((doc) => doc: rewrites
 * the protected-resource metadata, for refusal tests), challenge (true: a
 * request without a token gets 401 with resource_metadata; false: a bare
 * `Bearer` challenge, so a client must use the well-known URL).
 * setAs(as2) moves the server to another authorization server: its metadata
 * names as2 and tokens are introspected there from then on (a vendor that
 * moved its AS).
 */
export async function startOAuthMcpUpstream({ as, requiredScope = null, audience = false, prm = null, challenge = true } = {}) {
  if (!as?.introspectionUrl) throw new Error('startOAuthMcpUpstream: opts.as (startUpstreamAS) is required');
  await loadMcpServer();
  const sessions = new Map(); // sid -> {sid, sub, transport, mcp, closed}
  const seen = [];
  const sockets = new Set();

  function jsonError(res, status, code, message, headers = {}) {
    const b = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b), ...headers });
    res.end(b);
  }

  function buildServer() {
    const mcp = new McpServer({ name: 'oauth-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
    mcp.registerTool('whoami', { description: 'The caller as the upstream sees it (from token introspection)' },
      async (extra) => ({
        content: [{
          type: 'text',
          text: JSON.stringify({
            sub: extra.authInfo?.extra?.sub ?? null,
            scope: (extra.authInfo?.scopes ?? []).join(' '),
            client_id: extra.authInfo?.clientId ?? null,
          }),
        }],
      }));
    mcp.registerTool('echo', { description: 'Echoes a message', inputSchema: { message: z.string() } },
      async ({ message }) => ({ content: [{ type: 'text', text: `echo: ${message}` }] }));
    return mcp;
  }

  let port;
  const resourceUrl = () => `http://127.0.0.1:${port}/mcp`;
  const metadataUrl = () => `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (req.method === 'GET' && url.pathname === '/.well-known/oauth-protected-resource/mcp') {
        let doc = {
          resource: resourceUrl(),
          authorization_servers: [as.issuer],
          scopes_supported: as.scopes,
          bearer_methods_supported: ['header'],
        };
        if (prm) doc = prm(doc);
        const b = typeof doc === 'string' ? doc : JSON.stringify(doc);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
        return res.end(b);
      }
      if (url.pathname !== '/mcp') return jsonError(res, 404, -32000, 'not found');
      const body = req.method === 'POST' ? await (async () => {
        const text = (await readAll(req)).toString('utf8');
        if (!text) return undefined;
        try { return JSON.parse(text); } catch { return null; }
      })() : undefined;
      const rpcMethod = Array.isArray(body) ? body.map((m) => m?.method).join(',') : body?.method ?? null;
      const entry = {
        sub: null, aud: null, token: null, method: rpcMethod, httpMethod: req.method,
        sid: req.headers['mcp-session-id'] ?? null, status: undefined, at: Date.now(),
      };
      seen.push(entry);
      res.once('finish', () => { entry.status = res.statusCode; });

      // RFC 6750: no credentials → a bare challenge; a bad one → invalid_token
      const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(req.headers.authorization ?? '');
      if (!m) {
        return jsonError(res, 401, -32001, 'authorization required', {
          'www-authenticate': challenge ? `Bearer resource_metadata="${metadataUrl()}"` : 'Bearer',
        });
      }
      entry.token = m[1];
      const info = await as.introspection(entry.token);
      if (!info.active || !info.sub) {
        return jsonError(res, 401, -32001, 'invalid token', {
          'www-authenticate': `Bearer error="invalid_token", error_description="the access token is not active", resource_metadata="${metadataUrl()}"`,
        });
      }
      entry.sub = info.sub;
      entry.aud = info.aud ?? null;
      if (audience && !(Array.isArray(info.aud) ? info.aud.includes(resourceUrl()) : info.aud === resourceUrl())) {
        entry.sub = null;
        return jsonError(res, 401, -32001, 'token for another audience', {
          'www-authenticate': `Bearer error="invalid_token", error_description="the access token is not for this resource", resource_metadata="${metadataUrl()}"`,
        });
      }
      const tokenScopes = String(info.scope ?? '').split(' ').filter(Boolean);
      if (requiredScope && !tokenScopes.includes(requiredScope)) {
        return jsonError(res, 403, -32001, 'insufficient scope', {
          'www-authenticate': `Bearer error="insufficient_scope", scope="${requiredScope}", resource_metadata="${metadataUrl()}"`,
        });
      }
      if (body === null) return jsonError(res, 400, -32700, 'Parse error');
      req.auth = { token: entry.token, clientId: info.client_id, scopes: tokenScopes, expiresAt: info.exp, extra: { sub: info.sub } };

      const sid = req.headers['mcp-session-id'];
      let s = sid ? sessions.get(sid) : undefined;
      // a session belongs to the subject that opened it (MCP security
      // guidance: bind session ids to the user); another subject's token on
      // it is answered as an unknown session
      if (sid && (!s || s.closed || s.sub !== info.sub)) return jsonError(res, 404, -32001, 'Session not found');
      if (!s) {
        if (req.method !== 'POST' || !isInitializeRequest(body)) {
          return jsonError(res, 400, -32000, 'Bad Request: No valid session ID provided');
        }
        const sess = { sid: undefined, sub: info.sub, closed: false };
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => { sess.sid = id; sessions.set(id, sess); },
        });
        transport.onclose = () => { sess.closed = true; };
        sess.transport = transport;
        sess.mcp = buildServer();
        await sess.mcp.connect(transport);
        s = sess;
      }
      await s.transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) jsonError(res, 500, -32603, String(e?.message ?? e));
      else res.destroy();
    }
  });
  server.on('connection', (sock) => { sockets.add(sock); sock.on('close', () => sockets.delete(sock)); });
  await listen(server);
  port = server.address().port;

  let closed = false;
  return {
    url: resourceUrl(),
    port,
    resourceMetadataUrl: metadataUrl(),
    /** Every request: {sub (null if refused before introspection said active), token, method (JSON-RPC), httpMethod, sid, status, at}. */
    seen: () => seen.map((e) => ({ ...e })),
    clearSeen() { seen.length = 0; },
    sessions: () => [...sessions.values()].map(({ sid, sub, closed: c }) => ({ sid, sub, closed: c })),
    setAs(next) { as = next; },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sessions.values()) { try { await s.transport.close(); } catch { /* gone */ } }
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}
