// The policy footgun (issue 12, item 7): a connector is visible only
// through a matching rule, so {"default":"allow","rules":[]} hides every
// connector. The semantics stay fail-closed; a PUT that leaves some existing
// connector visible to nobody answers 200 with a warning naming it and why.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { setupTenant, mcpPost, initializeBody, show } from './lib/mcp.mjs';

let gw, t, tok;

before(async () => {
  gw = await startGateway();
  t = await setupTenant(gw, { users: ['alice@acme.com'], policy: null });
  for (const name of ['alpha', 'beta', 'gamma']) {
    // nothing listens there: PUT does not connect (the capability probe just fails)
    const r = await t.putConnector(name, { url: 'http://127.0.0.1:9/mcp', description: name, auth: { type: 'none' } });
    assert.equal(r.status, 201, show(r));
  }
  tok = (await t.mintToken('alice@acme.com')).token;
});

async function put(doc) {
  const r = await t.admin('PUT', '/policy', doc);
  assert.equal(r.status, 200, `PUT policy is accepted (fail-closed semantics unchanged): ${show(r)}`);
  assert.ok(Array.isArray(r.json.warnings), r.body);
  return r.json;
}

const about = (warnings, name) => warnings.filter((w) => w.includes(`connector "${name}"`));

test('{"default":"allow","rules":[]} → 200 with a warning for every connector, and they stay hidden', async () => {
  const j = await put({ version: 1, default: 'allow', rules: [] });
  for (const name of ['alpha', 'beta', 'gamma']) {
    const w = about(j.warnings, name);
    assert.equal(w.length, 1, `one warning names ${name}: ${JSON.stringify(j.warnings)}`);
    assert.match(w[0], /visible to nobody/, w[0]);
    assert.match(w[0], /no rule names it/, `it says why: ${w[0]}`);
    assert.match(w[0], /"default"/, `it says default does not make it visible: ${w[0]}`);
  }
  // fail closed, as before: nobody sees them
  const init = await mcpPost(t.mcpUrl('alpha'), initializeBody(1), { token: tok });
  assert.equal(init.status, 404, `alpha is hidden: ${show(init)}`);
});

test('only the connectors no rule shows are named; "*" rules cover all', async () => {
  let j = await put({ version: 1, default: 'allow', rules: [{ groups: ['*'], connector: 'alpha', allow: ['*'] }] });
  assert.equal(about(j.warnings, 'alpha').length, 0, JSON.stringify(j.warnings));
  assert.equal(about(j.warnings, 'beta').length, 1, JSON.stringify(j.warnings));
  assert.equal(about(j.warnings, 'gamma').length, 1, JSON.stringify(j.warnings));
  const init = await mcpPost(t.mcpUrl('alpha'), initializeBody(1), { token: tok });
  assert.notEqual(init.status, 404, `alpha is visible now: ${show(init)}`);

  j = await put({ version: 1, rules: [{ groups: ['*'], connector: '*', block: ['delete_*'] }] });
  assert.deepEqual(j.warnings, [], 'a "*" rule shows every connector');
});

test('rules whose groups do not exist make a connector visible to nobody; an existing (even empty) group does not', async () => {
  const g = await t.scim.createGroup('Empty Team', []);
  const j = await put({
    version: 1,
    rules: [
      { groups: ['*'], connector: 'alpha', allow: ['*'] },
      { groups: ['Ghosts', 'id:no-such-group'], connector: 'beta', allow: ['*'] },
      { groups: [`id:${g.id}`], connector: 'gamma', allow: ['*'] },
    ],
  });
  const beta = about(j.warnings, 'beta');
  assert.equal(beta.length, 1, JSON.stringify(j.warnings));
  assert.match(beta[0], /groups that do not exist/, beta[0]);
  assert.ok(j.warnings.some((w) => w.includes('Ghosts')), 'the pending group name is still warned about');
  assert.equal(about(j.warnings, 'gamma').length, 0, `an existing group binds gamma: ${JSON.stringify(j.warnings)}`);
  assert.equal(about(j.warnings, 'alpha').length, 0, JSON.stringify(j.warnings));
});
