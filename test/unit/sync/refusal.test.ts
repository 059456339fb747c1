/**
 * classifyRefusal on the answers vendors really give (the shapes of /work/shared/ehr-behaviour.md,
 * with its section): by OperationOutcome code, vendor code and text first, the status after.
 */
import t from 'tap';
import { classifyRefusal, type RefusalKind } from '../../../src/sync/refusal.ts';

const oo = (...issue: object[]) => ({ resourceType: 'OperationOutcome', issue });
const epic = (code: string, display: string) => ({
  coding: [{ system: 'urn:oid:1.2.840.114350.1.13.0.1.7.2.657369', code, display }],
  text: display,
});

const cases: [string, number, unknown, RefusalKind, string?][] = [
  // §1 Epic
  [
    'Epic Observation without category (59108)',
    400,
    oo({
      severity: 'error',
      code: 'required',
      details: epic('59108', 'Must have either code or category.'),
      diagnostics: 'Must have either code or category.',
    }),
    'missing-parameter',
    'required',
  ],
  [
    'Epic CarePlan without category (59159, business-rule)',
    400,
    oo({ severity: 'error', code: 'business-rule', details: epic('59159', 'Invalid search parameters'), diagnostics: 'A category is needed.' }),
    'missing-parameter',
    'business-rule',
  ],
  [
    'Epic category not scoped (59204, suppressed warning in a 400)',
    400,
    oo({
      severity: 'warning',
      code: 'suppressed',
      details: epic('59204', 'Not authorized for category'),
      diagnostics: 'The client is not authorized for this category.',
    }),
    'not-granted',
    'suppressed',
  ],
  [
    'Epic unknown category (59109)',
    400,
    oo({ severity: 'error', code: 'value', details: epic('59109', 'Invalid category'), diagnostics: 'Invalid category' }),
    'unsupported-value',
    'value',
  ],
  [
    'Epic expired session (4113)',
    400,
    oo({
      severity: 'fatal',
      code: 'processing',
      details: epic('4113', 'Session ID for cached search results has expired'),
      diagnostics: 'Session ID for cached search results has expired.',
    }),
    'page-expired',
    'processing',
  ],
  ['Epic unscoped type: 403 without a body', 403, undefined, 'not-granted'],
  ['Epic 403 with an empty text body', 403, '', 'not-granted'],
  [
    'Epic InsurancePlan: 404 with an IIS HTML page',
    404,
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"><html><head><title>404 - File or directory not found.</title></head></html>',
    'not-offered',
  ],
  [
    'Epic Binary sub-type (59203)',
    403,
    oo({ severity: 'error', code: 'forbidden', details: epic('59203', 'not authorized to access the requested resource sub-type') }),
    'not-granted',
  ],
  // §3 athena
  [
    'athena MedicationRequest without intent: 403 forbidden',
    403,
    oo({ severity: 'error', code: 'forbidden', diagnostics: 'one of the required parameter combinations [[patient,intent],[_id]] was not provided' }),
    'missing-parameter',
    'forbidden',
  ],
  // §5 eCW
  [
    'eCW Observation patient+_count',
    400,
    oo({
      severity: 'error',
      code: 'processing',
      diagnostics: 'Invalid request: Does not know how to handle get operation with parameter [patient,_count]',
    }),
    'missing-parameter',
    'processing',
  ],
  // §6 NextGen
  [
    'NextGen Observation without code or category',
    400,
    oo({ severity: 'error', code: 'processing', diagnostics: "Search for observation resource must have 'code' or 'category'." }),
    'missing-parameter',
  ],
  [
    'NextGen CarePlan without category: 404',
    404,
    oo({ severity: 'error', code: 'not-found', diagnostics: 'Valid care plan category not present in search.' }),
    'missing-parameter',
  ],
  [
    'NextGen unscoped type',
    403,
    oo({ severity: 'error', code: 'forbidden', diagnostics: "Read access to 'Coverage' is denied by user" }),
    'not-granted',
  ],
  [
    'NextGen Provenance NotImplementedException',
    400,
    oo({
      severity: 'error',
      code: 'exception',
      diagnostics: 'System.NotImplementedException: The method or operation is not implemented.\n   at NextGen.Fhir...',
    }),
    'not-offered',
  ],
  // §2 Oracle
  [
    'Oracle whole-search 500 (fatal required)',
    500,
    oo({ severity: 'fatal', code: 'required', diagnostics: 'The resource is missing a required field: status' }),
    'server-error',
    'required',
  ],
  [
    'Oracle gt on MedicationRequest',
    400,
    oo({ severity: 'error', code: 'value', diagnostics: "The prefix 'gt' is not supported for _lastUpdated; use 'le' or 'ge'." }),
    'unsupported-value',
  ],
  [
    'Oracle CarePlan category other than assess-plan',
    400,
    oo({ severity: 'error', code: 'invalid', diagnostics: "Invalid value for category: only 'assess-plan' is supported." }),
    'unsupported-value',
  ],
  // §9 Blue Button
  [
    'Blue Button _count over 50',
    400,
    oo({ severity: 'error', code: 'invalid', diagnostics: 'Invalid _count: must be at most 50' }),
    'unsupported-value',
  ],
  [
    'Blue Button _lastUpdated without prefix',
    400,
    oo({ severity: 'error', code: 'invalid', diagnostics: '_lastUpdated must start with lt, le, gt or ge' }),
    'unsupported-value',
  ],
  ['Blue Button unknown type', 404, { detail: 'Not found.' }, 'not-offered'],
  // Generic
  ['no answer', 0, undefined, 'server-error'],
  ['503', 503, 'Service Unavailable', 'server-error'],
  ['an expired cursor by 410', 410, undefined, 'page-expired'],
  ['a 422 with nothing to go by', 422, { foo: 1 }, 'other'],
  [
    'not-supported param',
    400,
    oo({ severity: 'error', code: 'not-supported', diagnostics: 'Resource type RelatedPerson is not supported' }),
    'not-offered',
  ],
];

for (const [name, status, body, kind, code] of cases) {
  t.test(name, async (t) => {
    const r = classifyRefusal({
      status,
      body,
      contentType: typeof body === 'string' && body.startsWith('<') ? 'text/html; charset=utf-8' : 'application/fhir+json',
    });
    t.equal(r.kind, kind);
    t.equal(r.status, status);
    if (code) t.equal(r.code, code);
    t.ok(r.diagnostics.length > 0 && r.diagnostics.length <= 500, `diagnostics: ${r.diagnostics}`);
  });
}

t.test('diagnostics carry the vendor code and no HTML', async (t) => {
  const r = classifyRefusal({
    status: 400,
    body: oo({
      severity: 'error',
      code: 'required',
      details: epic('59108', 'Must have either code or category.'),
      diagnostics: 'Must have either code or category.',
    }),
  });
  t.match(r.diagnostics, /Must have either code or category\..*59108/);
  const html = classifyRefusal({ status: 404, body: '<html><body><h1>Server Error</h1><script>x</script></body></html>', contentType: 'text/html' });
  t.notMatch(html.diagnostics, /</, 'an HTML page is named, not copied');
  const long = classifyRefusal({ status: 400, body: oo({ severity: 'error', code: 'invalid', diagnostics: 'x'.repeat(5000) }) });
  t.ok(long.diagnostics.length <= 500);
});

t.test('the first error issue names the refusal; a warning beside it does not', async (t) => {
  const r = classifyRefusal({
    status: 400,
    body: oo(
      { severity: 'warning', code: 'informational', diagnostics: 'Additional data may be present for patient' },
      { severity: 'error', code: 'required', diagnostics: 'category is required' },
    ),
  });
  t.same([r.kind, r.code], ['missing-parameter', 'required']);
});
