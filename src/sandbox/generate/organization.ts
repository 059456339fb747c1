/**
 * The system of the sandbox records generator (src/sandbox/generate.ts): its Organization, Practitioners and
 * Locations, the resources every patient shares.
 */
import type { Location, Organization, Practitioner, Resource } from '@medplum/fhirtypes';
import type { GenerateOptions, VendorVariations } from './options.ts';
import { createRng, type Rng } from './random.ts';
import { CITIES, concept, NPI, ref, TERMINOLOGY, type City, type Code } from './catalogs.ts';
import { createAddress, createPerson, npi, phoneNumber } from './people.ts';

export interface SystemContext {
  seed: string;
  vendor?: VendorVariations;
  idPrefix: string;
  systemName: string;
  years: number;
  city: City;
  organization: Organization;
  clinic: Location;
  hospital: Location;
  primaryCare: Practitioner[];
  emergency: Practitioner;
  hospitalist: Practitioner;
  gastroenterologist: Practitioner;
  mrnSystem: string;
  mrnBase: number;
}

const slug = (name: string): string =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '') || 'system';

function createOrganization(rng: Rng, id: string, name: string, city: City): Organization {
  const domain = `${slug(name)}.example.org`;
  return {
    resourceType: 'Organization',
    id,
    identifier: [{ system: NPI, value: npi(rng) }],
    active: true,
    type: [concept(`${TERMINOLOGY}/organization-type`, { code: 'prov', display: 'Healthcare Provider' })],
    name,
    telecom: [
      { system: 'phone', value: phoneNumber(rng, city), use: 'work' },
      { system: 'url', value: `https://${domain}`, use: 'work' },
    ],
    address: [{ ...createAddress(rng, city), use: 'work' }],
  };
}

function createPractitioner(rng: Rng, id: string, city: City): Practitioner {
  const person = createPerson(rng, city, 30, 65);
  return {
    resourceType: 'Practitioner',
    id,
    identifier: [{ system: NPI, value: npi(rng) }],
    active: true,
    name: [{ use: 'official', family: person.family, given: [person.given[0]], prefix: ['Dr.'], suffix: ['MD'] }],
    gender: person.gender,
    telecom: [{ system: 'phone', value: phoneNumber(rng, city), use: 'work' }],
  };
}

function createLocation(id: string, name: string, type: Code, organization: Organization): Location {
  return {
    resourceType: 'Location',
    id,
    status: 'active',
    name,
    mode: 'instance',
    type: [concept(`${TERMINOLOGY}/v3-RoleCode`, type)],
    telecom: organization.telecom?.slice(0, 1),
    address: organization.address?.[0],
    managingOrganization: ref(organization),
  };
}

export function createSystem(opts: GenerateOptions, years: number): SystemContext {
  const rng = createRng(`${opts.seed}:system`);
  const { idPrefix, systemName } = opts;
  const city = rng.pick(CITIES);
  const organization = createOrganization(rng, `${idPrefix}-org`, systemName, city);
  const practitioners = Array.from({ length: 6 }, (_, i) => createPractitioner(rng, `${idPrefix}-prac-${i + 1}`, city));
  return {
    seed: opts.seed,
    vendor: opts.vendor,
    idPrefix,
    systemName,
    years,
    city,
    organization,
    clinic: createLocation(`${idPrefix}-loc-1`, `${systemName} Primary Care Clinic`, { code: 'OF', display: 'Outpatient facility' }, organization),
    hospital: createLocation(`${idPrefix}-loc-2`, `${systemName} Hospital`, { code: 'HOSP', display: 'Hospital' }, organization),
    primaryCare: practitioners.slice(0, 3),
    emergency: practitioners[3],
    hospitalist: practitioners[4],
    gastroenterologist: practitioners[5],
    mrnSystem: `urn:tributary:sandbox:${idPrefix}:mrn`,
    mrnBase: rng.int(10_000_000, 80_000_000),
  };
}

export const sharedResources = (sys: SystemContext): Resource[] => [
  sys.organization,
  ...sys.primaryCare,
  sys.emergency,
  sys.hospitalist,
  sys.gastroenterologist,
  sys.clinic,
  sys.hospital,
];

export const practitionerName = (p: Practitioner): string => `Dr. ${p.name?.[0].given?.[0]} ${p.name?.[0].family}, MD`;
