// tests/integration/lib/oauthclient.mjs — an MCP client that authorizes the
// way a real one does, for the OAuth browser tests (issue 17): the official
// SDK's auth flow (StreamableHTTPClientTransport with an authProvider: 401 →
// protected resource metadata → authorization server metadata → a Client ID
// Metadata Document URL when the server supports them and one is set, else
// dynamic registration → the authorization URL) and a loopback listener
// standing in for the client's redirect URI (RFC 8252 §7.3).
//
//   startRedirectListener({host})  an http server on 127.0.0.1:0 (or host,
//                            e.g. '::1'); .url(path) is its
//                            redirect URI, .next() resolves the next request
//                            to it as a URL (query: code, state, iss or error)
//   new MemoryProvider({redirectUrl, clientName, clientMetadataUrl})
//                            the SDK's OAuthClientProvider, kept in memory;
//                            .authorizationUrl is where the SDK sent the
//                            person, .lastState the state it carried
//   startAuthorization(url, provider)  connects; expects the 401 and resolves
//                            the authorization URL the SDK built
//   connectWithProvider(url, provider) connects with the provider's tokens
//                            → {client, transport, close()}
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import { after } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const open = new Set(); // servers and clients closed after the file

after(async () => {
  for (const x of [...open].reverse()) await x().catch(() => {});
});

export async function startRedirectListener({ host = '127.0.0.1' } = {}) {
  const hits = [];
  const waiting = [];
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, `http://${req.headers.host}`);
    // the browser may ask for a favicon: answered, not recorded
    if (u.pathname === '/favicon.ico') { res.writeHead(204); res.end(); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>done</title><p>You can close this window.</p>');
    const w = waiting.shift();
    if (w) w(u);
    else hits.push(u);
  });
  await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(0, host, resolve); });
  const port = srv.address().port;
  const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const stop = () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(() => r()); });
  open.add(stop);
  return {
    port,
    url: (path = '/callback') => `http://${authority}${path}`,
    /** the next request the listener gets (or already got and nobody took);
     *  rejects when none came within timeoutMs (a deadline, so a browser
     *  that never gets there fails the test instead of hanging the file) */
    next({ timeoutMs = 8000 } = {}) {
      if (hits.length) return Promise.resolve(hits.shift());
      return new Promise((resolve, reject) => {
        const w = (u) => { clearTimeout(t); resolve(u); };
        const t = setTimeout(() => {
          waiting.splice(waiting.indexOf(w), 1);
          reject(new Error(`the redirect listener got no request within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.push(w);
      });
    },
    pending: () => hits.length,
    stop,
  };
}

/** Whether this machine can listen on the IPv6 loopback. */
export function ipv6Loopback() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

export class MemoryProvider {
  constructor({ redirectUrl, clientName = 'Browser test client', clientMetadataUrl } = {}) {
    this._redirectUrl = redirectUrl;
    this._name = clientName;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this.authorizationUrl = null;
    this.lastState = null;
    this.registrations = 0;
  }

  get redirectUrl() { return this._redirectUrl; }

  get clientMetadata() {
    return {
      client_name: this._name,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.lastState = crypto.randomBytes(12).toString('base64url');
    return this.lastState;
  }

  clientInformation() { return this._client; }

  saveClientInformation(info) {
    if (!this.clientMetadataUrl) this.registrations++;
    this._client = info;
  }

  tokens() { return this._tokens; }

  saveTokens(t) { this._tokens = t; }

  /** Forgets the tokens (not the client): the next connect starts a new authorization. */
  dropTokens() { this._tokens = undefined; }

  redirectToAuthorization(url) { this.authorizationUrl = new URL(url); }

  saveCodeVerifier(v) { this._verifier = v; }

  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }
}

function newTransport(url, provider) {
  return new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
}

/** Connects without tokens: the gateway answers 401, the SDK discovers, registers (or uses the CIMD URL) and asks to redirect. */
export async function startAuthorization(url, provider) {
  const client = new Client({ name: 'oauth-browser-test', version: '1.0.0' });
  provider.authorizationUrl = null;
  await assert.rejects(client.connect(newTransport(url, provider), { timeout: 10000 }), UnauthorizedError,
    'without a token the SDK is sent to authorize');
  await client.close().catch(() => {});
  assert.ok(provider.authorizationUrl, 'the SDK built an authorization URL');
  return provider.authorizationUrl;
}

/** finishAuth(code) (the SDK's token request), then a connection with the provider's tokens. */
export async function finishAndConnect(url, provider, code) {
  await newTransport(url, provider).finishAuth(code);
  return connectWithProvider(url, provider);
}

export async function connectWithProvider(url, provider) {
  const client = new Client({ name: 'oauth-browser-test', version: '1.0.0' });
  const transport = newTransport(url, provider);
  await client.connect(transport, { timeout: 10000 });
  const close = async () => { open.delete(close); await client.close().catch(() => {}); };
  open.add(close);
  return { client, transport, close };
}
