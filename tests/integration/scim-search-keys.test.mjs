// ci-variants: build-w1 build-asan-w2
// A SearchRequest (POST …/.search) that names an attribute twice in two
// spellings ("filter" and "Filter": SCIM attribute names are
// case-insensitive, so this is a duplicate key the strict JSON parse
// cannot see) is 400 invalidSyntax. Found by review: the gateway decided
// where the search runs from the first "filter" (an indexed userName eq:
// "cheap", on the event loop every tenant shares) and ran the last one (a
// filter no index answers: a walk of the tenant's whole directory) — so
// any SCIM token could put a full scan on the loop, past the heavy-read
// slots, as often as it liked.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError, assertListResponse } from './lib/scim.mjs';

const SEARCH = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
let c;
before(async () => {
  ({ tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
  await c.createUser('ann@sk.test', { title: 'Engineer' });
  await c.createUser('bob@sk.test', { title: 'Manager' });
});

test('a SearchRequest naming "filter" twice, in two spellings, is 400 and scans nothing', async () => {
  for (const path of ['/Users/.search', '/.search']) {
    const r = await c.post(path, { schemas: [SEARCH], filter: 'userName eq "ann@sk.test"', Filter: 'title pr' });
    assertScimError(r, 400, { scimType: 'invalidSyntax', detail: /filter/i });
  }
  const r = await c.post('/Users/.search', { schemas: [SEARCH], filter: 'title pr', FILTER: 'userName eq "ann@sk.test"' });
  assertScimError(r, 400, { scimType: 'invalidSyntax' });
});

test('any SearchRequest attribute given twice is refused; each once in any case is fine', async () => {
  for (const body of [{ count: 1, COUNT: 2 }, { startIndex: 1, startindex: 1 }, { attributes: ['userName'], Attributes: ['title'] },
    { excludedAttributes: ['title'], EXCLUDEDATTRIBUTES: ['title'] }, { schemas: [SEARCH], Schemas: [SEARCH] }]) {
    assertScimError(await c.post('/Users/.search', body), 400, { scimType: 'invalidSyntax' });
  }
  const ok = assertListResponse(await c.post('/Users/.search', { Schemas: [SEARCH], FILTER: 'title pr', StartIndex: 1, COUNT: 5, SortBy: 'userName' }), { total: 2 });
  assert.equal(ok.Resources.length, 2);
});
