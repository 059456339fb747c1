/**
 * Codes as de-duplication compares them: code systems under their canonical URIs (an OID or an
 * old URI is the same system), and concepts across code systems where a map is known, so that a
 * hospital's SNOMED CT problem and a clinic's ICD-10-CM diagnosis of the same disorder meet.
 *
 * The map is a short one of common problem-list disorders, from the NLM's SNOMED CT to ICD-10-CM
 * map (its default targets); a code outside it matches its own code only.
 * See: https://www.nlm.nih.gov/research/umls/mapping_projects/snomedct_to_icd10cm.html
 */
import type { CodeableConcept, Coding } from '@medplum/fhirtypes';

export const SNOMED = 'http://snomed.info/sct';
export const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';
export const LOINC = 'http://loinc.org';
export const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
export const CVX = 'http://hl7.org/fhir/sid/cvx';
export const NPI = 'http://hl7.org/fhir/sid/us-npi';

/** Other names of the same code systems (OIDs, older URIs). */
const ALIASES: Record<string, string> = {
  'urn:oid:2.16.840.1.113883.6.96': SNOMED,
  'http://snomed.info/sct/731000124108': SNOMED,
  'urn:oid:2.16.840.1.113883.6.90': ICD10CM,
  'http://hl7.org/fhir/sid/icd-10': ICD10CM,
  'urn:oid:2.16.840.1.113883.6.1': LOINC,
  'urn:oid:2.16.840.1.113883.6.88': RXNORM,
  'urn:oid:2.16.840.1.113883.12.292': CVX,
  'urn:oid:2.16.840.1.113883.4.6': NPI,
};

export function canonicalSystem(system: string | undefined): string {
  const s = (system ?? '').trim();
  return ALIASES[s] ?? s;
}

/** SNOMED CT disorder -> its ICD-10-CM codes (the map's targets; the first is the usual one). */
export const SNOMED_TO_ICD10CM: Readonly<Record<string, readonly string[]>> = {
  '38341003': ['I10'], // hypertensive disorder
  '59621000': ['I10'], // essential hypertension
  '55822004': ['E78.5'], // hyperlipidemia
  '44054006': ['E11.9'], // diabetes mellitus type 2
  '714628002': ['R73.03'], // prediabetes
  '195967001': ['J45.909', 'J45.90'], // asthma
  '40055000': ['J32.9'], // chronic sinusitis
  '444814009': ['J01.90'], // viral sinusitis
  '195662009': ['J02.9'], // acute viral pharyngitis
  '43878008': ['J02.0'], // streptococcal sore throat
  '10509002': ['J20.9'], // acute bronchitis
  '44465007': ['S93.409A'], // sprain of ankle
  '233604007': ['J18.9'], // pneumonia
  '35489007': ['F32.9'], // depressive disorder
  '197480006': ['F41.9'], // anxiety disorder
  '13645005': ['J44.9'], // chronic obstructive lung disease
  '49436004': ['I48.91'], // atrial fibrillation
  '709044004': ['N18.9'], // chronic kidney disease
  '414545008': ['I25.10'], // ischemic heart disease
  '84114007': ['I50.9'], // heart failure
  '69896004': ['M06.9'], // rheumatoid arthritis
  '396275006': ['M19.90'], // osteoarthritis
  '40930008': ['E03.9'], // hypothyroidism
  '162864005': ['E66.9'], // obesity (body mass index 30+)
  '230690007': ['I63.9'], // cerebrovascular accident
  '235595009': ['K21.9'], // gastroesophageal reflux disease
  '37796009': ['G43.909'], // migraine
  '271737000': ['D64.9'], // anemia
};

/** One key per concept: a mapped ICD-10-CM code and its SNOMED CT code give the same key. */
const ICD_TO_KEY = new Map<string, string>();
for (const [sct, icds] of Object.entries(SNOMED_TO_ICD10CM))
  for (const icd of icds) if (!ICD_TO_KEY.has(icd)) ICD_TO_KEY.set(icd, `${SNOMED}|${sct}`);

/** The keys a Coding is known by: `system|code`, and its mapped concept's. */
export function codingKeys(c: Coding): string[] {
  const system = canonicalSystem(c.system);
  const code = (c.code ?? '').trim();
  if (!system || !code) return [];
  const keys = [`${system}|${code}`];
  if (system === ICD10CM) {
    const mapped = ICD_TO_KEY.get(code.toUpperCase()) ?? ICD_TO_KEY.get(code.toUpperCase().replace(/\.$/, ''));
    if (mapped) keys.push(mapped);
  }
  return keys;
}

/** Every key of a CodeableConcept's codings (none for text alone). */
export function conceptKeys(cc: CodeableConcept | undefined, systems?: readonly string[]): string[] {
  const out = new Set<string>();
  for (const c of cc?.coding ?? []) {
    if (systems && !systems.includes(canonicalSystem(c.system))) continue;
    for (const k of codingKeys(c)) out.add(k);
  }
  return [...out];
}

/** Text compared as words: lower case, letters and digits, no "(disorder)"-style tags, in order. */
export function normalText(s: string | undefined): string {
  return (s ?? '')
    .toLowerCase()
    .replace(/\((disorder|finding|procedure|substance|product|situation|qualifier value)\)/g, ' ')
    .replace(/[^a-z0-9.]+/g, ' ')
    .trim();
}

const STOP_WORDS = new Set(['to', 'of', 'the', 'and', 'a', 'an', 'with', 'in', 'on', 'for', 'nos']);

/** A text as a set of words (sorted, without the small ones): "Allergy to penicillin" is "Penicillin allergy". */
export function wordSet(s: string | undefined): string {
  return [...new Set(normalText(s).split(' '))]
    .filter((w) => w && !STOP_WORDS.has(w))
    .sort()
    .join(' ');
}

/** The word sets of a concept's text and displays, for a comparison when no code is shared. */
export function conceptTexts(cc: CodeableConcept | undefined): string[] {
  const out = new Set<string>();
  if (cc?.text) out.add(wordSet(cc.text));
  for (const c of cc?.coding ?? []) if (c.display) out.add(wordSet(c.display));
  out.delete('');
  return [...out];
}

/** Whether two lists share an item. */
export function overlaps(a: readonly string[], b: readonly string[]): boolean {
  if (!a.length || !b.length) return false;
  const set = new Set(a);
  return b.some((x) => set.has(x));
}
