/**
 * People of the sandbox records generator (src/sandbox/generate.ts): names, addresses, usernames, NPIs and the
 * US Core race and ethnicity extensions.
 */
import type { Address, Extension } from '@medplum/fhirtypes';
import { ANCHOR_YEAR, DAY, type Rng } from './random.ts';
import { HERITAGES, HISPANIC, NOT_HISPANIC, OMB, STREETS, US_CORE, type City, type Heritage } from './catalogs.ts';

export interface Person {
  given: string[];
  family: string;
  gender: 'male' | 'female';
  birth: number;
  heritage: Heritage;
  address: Address;
  phone: string;
}

function pickHeritage(rng: Rng): Heritage {
  let roll = rng.real(
    0,
    HERITAGES.reduce((sum, h) => sum + h.weight, 0),
  );
  for (const heritage of HERITAGES) {
    roll -= heritage.weight;
    if (roll < 0) return heritage;
  }
  return HERITAGES[0];
}

/** 555-01xx numbers are reserved for fiction. */
export const phoneNumber = (rng: Rng, city: City): string => `(${city.areaCode}) 555-01${String(rng.int(0, 99)).padStart(2, '0')}`;

export function createAddress(rng: Rng, city: City): Address {
  return {
    use: 'home',
    line: [`${rng.int(100, 9899)} ${rng.pick(STREETS)}`],
    city: city.city,
    state: city.state,
    postalCode: rng.pick(city.zips),
    country: 'US',
  };
}

export function createPerson(rng: Rng, city: City, minAge: number, maxAge: number): Person {
  const heritage = pickHeritage(rng);
  const gender = rng.chance(0.5) ? 'female' : 'male';
  const names = gender === 'female' ? heritage.female : heritage.male;
  const first = rng.pick(names);
  const middle = rng.pick(names);
  const given = rng.chance(0.5) && middle !== first ? [first, middle] : [first];
  const age = rng.int(minAge, maxAge);
  const birth = Date.UTC(ANCHOR_YEAR - age - 1, 0, 1) + rng.int(0, 364) * DAY;
  return { given, family: rng.pick(heritage.family), gender, birth, heritage, address: createAddress(rng, city), phone: phoneNumber(rng, city) };
}

/** Like Epic's test logins ('fhirjason'): letters only. */
const baseUsername = (person: Person): string => `${person.given[0]}${person.family}`.toLowerCase().replace(/[^a-z]/g, '');

/** a, b, …, z, aa, ab, …: a suffix that keeps usernames letters only. */
function letters(n: number): string {
  let out = '';
  for (let k = n + 1; k > 0; k = Math.floor((k - 1) / 26)) out = String.fromCharCode(97 + ((k - 1) % 26)) + out;
  return out;
}

export function uniqueUsername(person: Person, taken: Set<string>): string {
  const base = baseUsername(person);
  let name = base;
  for (let n = 0; taken.has(name); n++) name = base + letters(n);
  taken.add(name);
  return name;
}

/** A 10-digit NPI whose last digit is the Luhn check digit over the prefix 80840, as real NPIs have. */
export function npi(rng: Rng): string {
  const body = `1${Array.from({ length: 8 }, () => rng.int(0, 9)).join('')}`;
  const digits = `80840${body}`;
  let sum = 0;
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    const d = Number(digits[i]) * (double ? 2 : 1);
    sum += d > 9 ? d - 9 : d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

export function raceExtension(heritage: Heritage): Extension {
  return {
    url: `${US_CORE}/us-core-race`,
    extension: [
      { url: 'ombCategory', valueCoding: { system: OMB, ...heritage.race } },
      { url: 'text', valueString: heritage.race.display },
    ],
  };
}

export function ethnicityExtension(heritage: Heritage): Extension {
  const ethnicity = heritage.hispanic ? HISPANIC : NOT_HISPANIC;
  return {
    url: `${US_CORE}/us-core-ethnicity`,
    extension: [
      { url: 'ombCategory', valueCoding: { system: OMB, ...ethnicity } },
      { url: 'text', valueString: ethnicity.display },
    ],
  };
}
