/** dateRange: the first and last millisecond a FHIR date/dateTime/instant stands for. */
import t from 'tap';
import { dateOrdinal, dateRange } from '../../../src/indexing/date-range.ts';

const iso = (v: string) => {
  const r = dateRange(v);
  return r && [new Date(r.low).toISOString(), new Date(r.high).toISOString()];
};

t.test('each precision covers its whole span', async (t) => {
  t.same(iso('2021'), ['2021-01-01T00:00:00.000Z', '2021-12-31T23:59:59.999Z']);
  t.same(iso('2021-02'), ['2021-02-01T00:00:00.000Z', '2021-02-28T23:59:59.999Z']);
  t.same(iso('2021-12-31'), ['2021-12-31T00:00:00.000Z', '2021-12-31T23:59:59.999Z']);
  t.same(iso('2021-12-31T23:59Z'), ['2021-12-31T23:59:00.000Z', '2021-12-31T23:59:59.999Z']);
  t.same(iso('2021-12-31T23:59:58Z'), ['2021-12-31T23:59:58.000Z', '2021-12-31T23:59:58.999Z']);
  t.same(iso('2021-12-31T23:59:58.5Z'), ['2021-12-31T23:59:58.500Z', '2021-12-31T23:59:58.599Z']);
  t.same(iso('2021-12-31T23:59:58.12Z'), ['2021-12-31T23:59:58.120Z', '2021-12-31T23:59:58.129Z']);
  t.same(iso('2021-12-31T23:59:58.1234Z'), ['2021-12-31T23:59:58.123Z', '2021-12-31T23:59:58.123Z']);
});

t.test('time zones are moved to UTC; no zone means UTC', async (t) => {
  t.same(iso('2021-01-01T00:30:00+01:00'), ['2020-12-31T23:30:00.000Z', '2020-12-31T23:30:00.999Z']);
  t.same(iso('2021-01-01T23:30:00-05:30'), ['2021-01-02T05:00:00.000Z', '2021-01-02T05:00:00.999Z']);
  t.same(iso('2021-01-01T10:00:00'), ['2021-01-01T10:00:00.000Z', '2021-01-01T10:00:00.999Z']);
});

t.test('early years and invalid values', async (t) => {
  t.same(iso('0050'), ['0050-01-01T00:00:00.000Z', '0050-12-31T23:59:59.999Z']);
  t.equal(dateRange('2021-13'), undefined);
  t.equal(dateRange('21-01-01'), undefined);
  t.equal(dateRange('yesterday'), undefined);
});

t.test('ordinals are yyyymmdd of the UTC day', async (t) => {
  t.equal(dateOrdinal(Date.parse('2020-02-29T23:59:59.999Z')), 20200229);
  t.equal(dateOrdinal(Date.parse('1999-01-01T00:00:00Z')), 19990101);
});
