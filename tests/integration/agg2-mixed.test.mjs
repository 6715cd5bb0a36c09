// The aggregated endpoint /t/{tenant}/mcp in front of two different kinds
// of upstream: "docs" — the official SDK's McpServer over Streamable HTTP
// (lib/sdk-upstream.mjs) — and "ev" — server-everything — each behind a
// recorder, allow-all policy. Prompts ({connector}__{prompt}), resources
// (URIs unchanged, routed by what the session has seen: lists, templates,
// resource links), completions, subscriptions, capabilities learned from the
// upstreams. Clients: the official SDK Client (lib/mcp.mjs connectClient).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import { connectClient, toolText, NODE_MODULES } from './lib/mcp.mjs';
import { rpcError } from './lib/agg.mjs';
import { startMixedFixture, listAllPages, rpcFrames, waitFor } from './lib/agg2.mjs';

const EV_DOCS_DIR = path.join(NODE_MODULES, '@modelcontextprotocol', 'server-everything', 'dist', 'docs');

let f;
before(async () => { f = await startMixedFixture(); });

const connect = () => connectClient(f.url, f.token);
const promptsOf = (c) => listAllPages((cursor) => c.client.listPrompts(cursor === undefined ? {} : { cursor }), 'prompts');
const resourcesOf = (c) => listAllPages((cursor) => c.client.listResources(cursor === undefined ? {} : { cursor }), 'resources');
const templatesOf = (c) => listAllPages((cursor) => c.client.listResourceTemplates(cursor === undefined ? {} : { cursor }), 'resourceTemplates');
const textOf = (r) => r.contents.map((x) => x.text).join('\n');
/** The last JSON-RPC message of `method` a recorder forwarded, matching pred. */
const lastFrame = (rec, method, pred = () => true) => rpcFrames(rec, method).filter((x) => pred(x.msg)).at(-1);

test('capabilities are learned from the upstreams at the PUT; initialize advertises prompts, resources, completions without contacting them', async () => {
  assert.ok(f.caps.docs.prompts && f.caps.docs.resources && f.caps.docs.completions,
    `docs (SDK server) capabilities recorded: ${JSON.stringify(f.caps.docs)}`);
  assert.equal(f.caps.docs.resources.subscribe, true, `docs announced resources.subscribe: ${JSON.stringify(f.caps.docs)}`);
  assert.ok(f.caps.ev.prompts && f.caps.ev.resources, `ev capabilities recorded: ${JSON.stringify(f.caps.ev)}`);
  const inits = { docs: rpcFrames(f.recs.docs, 'initialize').length, ev: rpcFrames(f.recs.ev, 'initialize').length };
  assert.ok(inits.docs >= 1 && inits.ev >= 1, `the PUT probe initialized each upstream: ${JSON.stringify(inits)}`);

  const c = await connect();
  const caps = c.client.getServerCapabilities();
  assert.deepEqual(caps.tools, { listChanged: true }, JSON.stringify(caps));
  assert.ok(caps.prompts, `prompts advertised: ${JSON.stringify(caps)}`);
  assert.ok(caps.resources, `resources advertised: ${JSON.stringify(caps)}`);
  assert.equal(caps.resources.subscribe, true, `resources.subscribe advertised (docs offers it): ${JSON.stringify(caps)}`);
  assert.ok(caps.completions, `completions advertised (docs offers them): ${JSON.stringify(caps)}`);
  assert.equal(caps.tasks, undefined, 'no tasks capability');
  assert.deepEqual({ docs: rpcFrames(f.recs.docs, 'initialize').length, ev: rpcFrames(f.recs.ev, 'initialize').length }, inits,
    'the client\'s initialize reached no upstream');
  await c.close();
});

test('prompts/list pages through both connectors: docs__* then ev__*, the upstream\'s own cursor carried inside the gateway\'s', async () => {
  const c = await connect();
  const { items, pages } = await promptsOf(c);
  const names = items.map((p) => p.name);
  assert.deepEqual(names.filter((n) => n.startsWith('docs__')), ['docs__greeting', 'docs__summarize'], `docs prompts: ${names}`);
  for (const p of ['simple-prompt', 'args-prompt', 'completable-prompt']) assert.ok(names.includes(`ev__${p}`), `ev__${p} listed: ${names}`);
  assert.ok(names.every((n) => /^(docs|ev)__/.test(n)), `every prompt is prefixed: ${names}`);
  assert.ok(names.lastIndexOf('docs__summarize') < names.indexOf('ev__simple-prompt'), `connectors in name order: ${names}`);
  // docs answers one prompt per page: three pages at least, none mixing connectors
  assert.ok(pages.length >= 3, `pages: ${JSON.stringify(pages.map((p) => p.items.map((x) => x.name)))}`);
  for (const p of pages) assert.ok(new Set(p.items.map((x) => x.name.split('__')[0])).size <= 1, `one connector per page: ${JSON.stringify(p.items.map((x) => x.name))}`);
  const upCursors = rpcFrames(f.recs.docs, 'prompts/list').map((x) => x.msg.params?.cursor).filter((x) => x !== undefined);
  assert.ok(upCursors.includes('MQ'), `docs got its own cursor back: ${JSON.stringify(upCursors)}`);
  assert.ok(pages.every((p) => p.nextCursor !== 'MQ'), 'the client never sees the upstream cursor');
  const summarize = items.find((p) => p.name === 'docs__summarize');
  assert.deepEqual(summarize.arguments.map((a) => [a.name, a.required]), [['topic', true], ['style', false]], JSON.stringify(summarize));
  await c.close();
});

test('prompts/get routes by prefix and strips it; arguments reach the upstream unchanged', async () => {
  const c = await connect();
  await promptsOf(c);
  const r = await c.client.getPrompt({ name: 'docs__summarize', arguments: { topic: 'federation', style: 'terse' } });
  assert.equal(r.messages[0].content.text, 'docs:summarize topic=federation style=terse', JSON.stringify(r));
  const up = lastFrame(f.recs.docs, 'prompts/get');
  assert.deepEqual(up?.msg.params, { name: 'summarize', arguments: { topic: 'federation', style: 'terse' } }, `docs received: ${JSON.stringify(up?.msg)}`);
  assert.equal(lastFrame(f.recs.ev, 'prompts/get', (m) => m.params?.name === 'summarize'), undefined, 'ev did not get it');

  const e = await c.client.getPrompt({ name: 'ev__args-prompt', arguments: { city: 'Lyon', state: 'Rhône' } });
  assert.equal(e.messages[0].content.text, 'What\'s weather in Lyon, Rhône?', JSON.stringify(e));
  assert.equal(lastFrame(f.recs.ev, 'prompts/get')?.msg.params?.name, 'args-prompt');

  const g = await c.client.getPrompt({ name: 'docs__greeting' });
  assert.equal(g.messages[0].content.text, 'docs:greeting');

  await c.close();
});

test('resources/list shows both connectors\' resources with their URIs unchanged; reads go to the right upstream', async () => {
  const c = await connect();
  const { items } = await resourcesOf(c);
  const uris = items.map((r) => r.uri);
  assert.ok(uris.includes('docs://handbook/intro') && uris.includes('docs://handbook/install'), `docs resources: ${uris}`);
  const evUris = uris.filter((u) => u.startsWith('demo://resource/static/document/'));
  const evFiles = fs.readdirSync(EV_DOCS_DIR);
  assert.deepEqual(evUris.map((u) => decodeURIComponent(u.split('/').pop())).sort(), evFiles.sort(), `ev's static documents, URIs as announced: ${uris}`);
  assert.equal(items.find((r) => r.uri === 'docs://handbook/intro').name, 'handbook-intro', 'resource names are not prefixed');

  const d = await c.client.readResource({ uri: 'docs://handbook/intro' });
  assert.equal(textOf(d), 'docs:handbook intro', JSON.stringify(d));
  assert.equal(lastFrame(f.recs.docs, 'resources/read')?.msg.params?.uri, 'docs://handbook/intro');

  const file = 'architecture.md';
  const evUri = `demo://resource/static/document/${file}`;
  const e = await c.client.readResource({ uri: evUri });
  assert.equal(textOf(e), fs.readFileSync(path.join(EV_DOCS_DIR, file), 'utf8'), 'ev served its own file');
  assert.equal(lastFrame(f.recs.ev, 'resources/read')?.msg.params?.uri, evUri);
  assert.equal(lastFrame(f.recs.docs, 'resources/read', (m) => m.params?.uri === evUri), undefined, 'docs never saw the ev URI');
  await c.close();
});

test('resources/templates/list shows the templates; a URI matching only a template routes to its connector', async () => {
  const c = await connect();
  // this session lists templates only — no resources/list
  const { items } = await templatesOf(c);
  const tpl = items.map((t) => t.uriTemplate);
  for (const t of ['docs://handbook/{page}', 'memo://lookup/{term}', 'demo://resource/dynamic/text/{resourceId}']) {
    assert.ok(tpl.includes(t), `template ${t} listed: ${tpl}`);
  }
  const r = await c.client.readResource({ uri: 'docs://handbook/some-page' });
  assert.equal(textOf(r), 'docs:handbook some-page', JSON.stringify(r));
  assert.equal(lastFrame(f.recs.docs, 'resources/read')?.msg.params?.uri, 'docs://handbook/some-page');
  const e = await c.client.readResource({ uri: 'demo://resource/dynamic/text/3' });
  assert.match(textOf(e), /^Resource 3: This is a plaintext resource/, `ev served its template: ${JSON.stringify(e)}`);
  assert.equal(lastFrame(f.recs.ev, 'resources/read')?.msg.params?.uri, 'demo://resource/dynamic/text/3');
  await c.close();
});

test('a URI seen only in a tool\'s resource_link result routes to that connector', async () => {
  const c = await connect();
  // (the last test shows that a session which has not seen the link cannot read it)
  const uri = 'memo://lookup/gateway%20rules';

  const res = await c.client.callTool({ name: 'docs__lookup', arguments: { term: 'gateway rules' } });
  assert.equal(toolText(res), 'docs:lookup gateway rules', JSON.stringify(res));
  const link = res.content.find((x) => x.type === 'resource_link');
  assert.equal(link?.uri, uri, `resource_link relayed unchanged: ${JSON.stringify(res)}`);
  assert.equal(lastFrame(f.recs.docs, 'tools/call')?.msg.params?.name, 'lookup', 'prefix stripped on the call');

  const r = await c.client.readResource({ uri: link.uri });
  assert.equal(textOf(r), 'docs:memo gateway rules', JSON.stringify(r));
  assert.equal(lastFrame(f.recs.docs, 'resources/read')?.msg.params?.uri, uri);
  await c.close();
});

test('completion/complete: ref/prompt docs__summarize routes to docs (name stripped), ev__ to ev, ref/resource by template', async () => {
  const c = await connect();
  await templatesOf(c);
  const r = await c.client.complete({ ref: { type: 'ref/prompt', name: 'docs__summarize' }, argument: { name: 'topic', value: 'f' } });
  assert.deepEqual(r.completion.values, ['faq', 'federation', 'firewall'], JSON.stringify(r));
  const up = lastFrame(f.recs.docs, 'completion/complete');
  assert.deepEqual(up?.msg.params?.ref, { type: 'ref/prompt', name: 'summarize' }, `docs received: ${JSON.stringify(up?.msg)}`);

  const e = await c.client.complete({ ref: { type: 'ref/prompt', name: 'ev__completable-prompt' }, argument: { name: 'department', value: 'S' } });
  assert.deepEqual(e.completion.values, ['Sales', 'Support'], JSON.stringify(e));
  assert.equal(lastFrame(f.recs.ev, 'completion/complete')?.msg.params?.ref?.name, 'completable-prompt');

  const t = await c.client.complete({ ref: { type: 'ref/resource', uri: 'docs://handbook/{page}' }, argument: { name: 'page', value: 'in' } });
  assert.deepEqual(t.completion.values, ['intro', 'install', 'internals'], JSON.stringify(t));
  assert.equal(lastFrame(f.recs.docs, 'completion/complete')?.msg.params?.ref?.uri, 'docs://handbook/{page}');

  await c.close();
});

test('resources/subscribe reaches docs; its notifications/resources/updated comes back on the client\'s GET stream; unsubscribe stops it', async () => {
  const c = await connect();
  const updates = [];
  c.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updates.push(n.params.uri); });
  await resourcesOf(c);
  const uri = 'docs://handbook/install';
  await c.client.subscribeResource({ uri });
  const sub = lastFrame(f.recs.docs, 'resources/subscribe');
  assert.equal(sub?.msg.params?.uri, uri, 'the subscribe reached docs');
  const upSid = sub.entry.headers['mcp-session-id'];
  assert.ok(upSid, 'within an upstream session');
  assert.equal(lastFrame(f.recs.ev, 'resources/subscribe', (m) => m.params?.uri === uri), undefined, 'not ev');
  // the gateway holds the upstream session's GET stream open for this client
  await f.docs.waitGetStream((s) => s.sid === upSid && s.subscriptions.has(uri));

  assert.equal(await f.docs.touch(uri), 1, 'one docs session is subscribed');
  await waitFor(() => updates.includes(uri), { timeoutMs: 5000, what: `notifications/resources/updated ${uri} at the client (got ${JSON.stringify(c.notifications)})` });
  assert.deepEqual(updates, [uri], 'exactly one update');

  await c.client.unsubscribeResource({ uri });
  assert.equal(lastFrame(f.recs.docs, 'resources/unsubscribe')?.msg.params?.uri, uri, 'the unsubscribe reached docs');
  assert.equal(await f.docs.touch(uri), 0, 'no docs session is subscribed any more');
  await c.close();
});

// Last in the file: refusals of what cannot be routed (see the report: these
// paths of agg_route used freed strings in their messages).
test('refusals: unknown prompt names and completion refs, URIs the session has not seen — -32602, nothing forwarded', async () => {
  const c = await connect();
  const fwd = { docs: f.recs.docs.requests().length, ev: f.recs.ev.requests().length };
  for (const name of ['summarize', 'nope__summarize', 'docs__', '__summarize']) {
    const err = await rpcError(c.client.getPrompt({ name, arguments: { topic: 'x' } }), `prompts/get ${name}`);
    assert.equal(err.code, -32602, `prompts/get ${name}: ${JSON.stringify(err)}`);
    assert.ok(err.message.includes(`Unknown prompt: ${name}`), `the message names the prompt: ${err.message}`);
  }
  const cerr = await rpcError(c.client.complete({ ref: { type: 'ref/prompt', name: 'nope__summarize' }, argument: { name: 'topic', value: 'f' } }), 'completion of an unknown connector\'s prompt');
  assert.equal(cerr.code, -32602, JSON.stringify(cerr));
  // this session has listed nothing and called no tool: two connectors offer
  // resources, so neither a template-only URI nor the memo of a link routes
  for (const uri of ['docs://handbook/other-page', 'memo://lookup/gateway%20rules']) {
    const err = await rpcError(c.client.readResource({ uri }), `resources/read ${uri} before any list`);
    assert.equal(err.code, -32602, `${uri}: ${JSON.stringify(err)}`);
    assert.ok(err.message.includes(uri), `the message names the URI: ${err.message}`);
  }
  assert.deepEqual({ docs: f.recs.docs.requests().length, ev: f.recs.ev.requests().length }, fwd, 'nothing reached an upstream');
  await c.close();
});
