import t from 'tap';
import { hapiHash, normalizeString, stringIndexValues } from '../../../src/storage/hash.ts';

// Check values from HAPI FHIR's own unit tests (SearchParamHashTest / ResourceIndexedSearchParam*Test).
t.test('hash check values from HAPI', async (t) => {
  t.equal(hapiHash(['Patient', 'NAME', 'SYSTEM']), -8558989679010582575n);
  t.equal(hapiHash(['Patient', 'NAME', 'SYSTEM', 'VALUE']), -8644532105141886455n);
  t.equal(hapiHash(['Patient', 'name']), -1575415002568401616n);
  t.equal(hapiHash(['Patient', 'name'], 1), -6667609654163557704n);
});

t.test('null and escaped values change the hash', async (t) => {
  t.not(hapiHash(['Patient', 'name', null]), hapiHash(['Patient', 'name', '']));
  t.not(hapiHash(['Patient', 'name', 'a b']), hapiHash(['Patient', 'name', 'a+b']));
  // '!' is escaped (encodeURIComponent would keep it): 'a!' and 'a~' must not collide with 'a'.
  t.not(hapiHash(['Patient', 'name', 'a!']), hapiHash(['Patient', 'name', 'a~']));
});

t.test('string normalization as HAPI', async (t) => {
  t.equal(normalizeString('TEST teSt'), 'TEST TEST');
  t.equal(normalizeString('åéîøü'), 'AEIØU');
  t.equal(normalizeString('杨浩'), '杨浩');
  const long = 'é'.repeat(250);
  const v = stringIndexValues(long);
  t.equal(v.exact.length, 200);
  t.equal(v.normalized, 'E'.repeat(200));
});
