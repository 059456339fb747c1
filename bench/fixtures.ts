/**
 * What the read and create benchmarks (bench/read-create.ts, bench/scale.ts) write: small Patients
 * and Observations, and n Patients created 16 at a time. Not a benchmark itself.
 */

/** The headers of a FHIR request without credentials. */
export const FHIR = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };

export const benchPatient = (i: number) => ({
  resourceType: 'Patient',
  identifier: [{ system: 'urn:bench', value: `p-${i}` }],
  name: [{ family: `Bench${i % 97}`, given: ['Ada'] }],
  gender: i % 2 ? 'female' : 'male',
  birthDate: `19${50 + (i % 50)}-0${1 + (i % 9)}-1${i % 10}`,
});

export const benchObservation = (patientId: string) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
  subject: { reference: `Patient/${patientId}` },
  effectiveDateTime: '2024-05-01T10:00:00Z',
  valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
});

/** Creates n Patients, 16 at a time (with `headers`: as whom); answers their ids. */
export async function createPatients(base: string, n: number, headers: Record<string, string> = FHIR): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${base}/fhir/r4/Patient`, {
          method: 'POST',
          headers,
          body: JSON.stringify(benchPatient(i)),
          signal: AbortSignal.timeout(30_000),
        });
        const body = (await res.json()) as { id?: string };
        if (res.status !== 201 || !body.id) throw new Error(`creating Patient ${i}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
        ids.push(body.id);
      }
    }),
  );
  return ids;
}
