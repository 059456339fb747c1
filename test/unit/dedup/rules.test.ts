/**
 * De-duplication's rules one by one (src/dedup/rules.ts): what makes two records one (a code
 * mapped across SNOMED CT and ICD-10-CM, a code system by its OID, a quantity in other units, a
 * date a day apart where that is the tolerance) and what keeps them two (another time, another
 * value, two NPIs), a date alone as its whole day, and the settings a rules file may change.
 */
import t from 'tap';
import { DEFAULT_SETTINGS, RULES, ruleSettings } from '../../../src/dedup/rules.ts';

const s = DEFAULT_SETTINGS;
const cmp = (type: string, a: object, b: object, settings = s) =>
  RULES[type].compare({ resourceType: type, ...a } as never, { resourceType: type, ...b } as never, settings);

t.test('Condition: SNOMED CT and its ICD-10-CM code are one disorder; onsets within the tolerance', async (t) => {
  const sct = { code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003' }] }, onsetDateTime: '2019-04-12' };
  const icd = { code: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'I10' }] }, onsetDateTime: '2019-04-13' };
  t.ok(cmp('Condition', sct, icd)!.score >= s.threshold, 'mapped, a day apart');
  t.equal(cmp('Condition', sct, { ...icd, onsetDateTime: '2020-04-13' }), null, 'a year apart: two records');
  t.equal(
    cmp('Condition', sct, { code: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'E11.9' }] }, onsetDateTime: '2019-04-12' }),
    null,
    'another disorder',
  );
  t.ok(
    cmp('Condition', sct, { ...sct, code: { coding: [{ system: 'urn:oid:2.16.840.1.113883.6.96', code: '38341003' }] } })!.score >= s.threshold,
    'SNOMED CT by its OID',
  );
});

t.test('Observation: the same time and value, in other units; a date alone is its whole day', async (t) => {
  const kg = {
    code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
    effectiveDateTime: '2024-01-01T10:00:00Z',
    valueQuantity: { value: 80, code: 'kg', system: 'http://unitsofmeasure.org' },
  };
  const lb = {
    ...kg,
    effectiveDateTime: '2024-01-01T10:04:00Z',
    valueQuantity: { value: 176.37, code: '[lb_av]', system: 'http://unitsofmeasure.org' },
  };
  t.ok(cmp('Observation', kg, lb)!.score >= s.threshold, '80 kg is 176.37 lb, 4 minutes apart');
  t.equal(cmp('Observation', kg, { ...lb, valueQuantity: { ...lb.valueQuantity, value: 190 } }), null, 'another value');
  t.equal(cmp('Observation', kg, { ...kg, effectiveDateTime: '2024-01-01T11:00:00Z' }), null, 'an hour apart');
  const day = { ...kg, effectiveDateTime: '2024-01-01' };
  t.ok(cmp('Observation', day, kg), 'a date and a time that day');
  t.equal(cmp('Observation', day, { ...kg, effectiveDateTime: '2024-01-02' }), null, 'two dates a day apart, minutes of tolerance: two records');
});

t.test('Immunization, MedicationRequest, Practitioner, Organization, Patient', async (t) => {
  const flu = { vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] }, occurrenceDateTime: '2024-10-08T15:30:00Z' };
  t.ok(
    cmp('Immunization', flu, {
      ...flu,
      vaccineCode: { coding: [{ system: 'urn:oid:2.16.840.1.113883.12.292', code: '140' }] },
      occurrenceDateTime: '2024-10-08',
    }),
    'CVX by its OID, a date alone',
  );
  t.equal(cmp('Immunization', flu, { ...flu, occurrenceDateTime: '2025-10-08T15:30:00Z' }), null, 'the next year: another dose');
  const med = {
    medicationCodeableConcept: {
      coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '314076', display: 'Lisinopril 10 MG Oral Tablet' }],
    },
    authoredOn: '2024-01-01',
  };
  t.ok(
    cmp('MedicationRequest', med, { medicationCodeableConcept: { text: 'lisinopril 10mg tablet' }, authoredOn: '2024-01-02' }),
    'text alone: ingredient and strength',
  );
  t.equal(
    cmp('MedicationRequest', med, { medicationCodeableConcept: { text: 'Lisinopril 20 MG Oral Tablet' }, authoredOn: '2024-01-01' }),
    null,
    'another strength',
  );
  const npi = (v: string) => ({ identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: v }] });
  t.ok(cmp('Practitioner', npi('1234567893'), npi('1234567893')), 'one NPI');
  t.equal(cmp('Practitioner', npi('1234567893'), npi('1987654321')), null);
  t.ok(cmp('Organization', { name: 'Lakeside Medical Group, Inc.' }, { name: 'LAKESIDE MEDICAL GROUP' }), 'the same name, written otherwise');
  t.equal(cmp('Organization', { ...npi('1111111111'), name: 'A' }, { ...npi('2222222222'), name: 'A' }), null, 'two NPIs: two organizations');
  const p = { birthDate: '1970-02-03', name: [{ family: 'Garcia' }], gender: 'female' };
  t.ok(cmp('Patient', p, { ...p, name: [{ family: 'GARCIA', given: ['Ana'] }] }), "the person's Patients");
  t.equal(cmp('Patient', p, { ...p, birthDate: '1970-02-04' }), null);
});

t.test('settings from a rules file, checked', async (t) => {
  t.same(ruleSettings({}), DEFAULT_SETTINGS);
  t.equal(ruleSettings({ conditionOnsetDays: 7 }).conditionOnsetDays, 7);
  t.throws(() => ruleSettings({ onsetDays: 7 }), /"onsetDays" is not a setting/);
  t.throws(() => ruleSettings({ threshold: 2 }), /threshold is a number from 0.5 to 1/);
  t.throws(() => ruleSettings([]), /one JSON object/);
  const wide = ruleSettings({ conditionOnsetDays: 400 - 35 });
  const c = { code: { coding: [{ system: 'http://snomed.info/sct', code: '444814009' }] }, onsetDateTime: '2024-01-01' };
  t.ok(cmp('Condition', c, { ...c, onsetDateTime: '2024-12-01' }, wide), 'a wider tolerance links what the default does not');
  t.equal(cmp('Condition', c, { ...c, onsetDateTime: '2024-12-01' }), null);
});
