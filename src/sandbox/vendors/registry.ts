/**
 * The simulated vendors' facades by profile name (SandboxDefinition.vendor): a new one for each
 * sandbox system that names the profile (each keeps its own page tokens and counts).
 */
import { createAthenaFacade } from './athena.ts';
import { createBlueButtonFacade } from './bluebutton.ts';
import { createEcwFacade } from './ecw.ts';
import { createEpicFacade } from './epic.ts';
import type { VendorFacade } from './facade.ts';
import { createMeditechFacade } from './meditech.ts';
import { createOracleFacade } from './oracle.ts';

const FACADES: Record<string, () => VendorFacade> = {
  athena: createAthenaFacade,
  bluebutton: createBlueButtonFacade,
  ecw: () => createEcwFacade(),
  epic: () => createEpicFacade(),
  meditech: createMeditechFacade,
  oracle: createOracleFacade,
};

export const VENDOR_PROFILES = Object.keys(FACADES);

/** The facade of a profile; throws for a name no profile has (a configuration error). */
export function createVendorFacade(vendor: string): VendorFacade {
  const make = FACADES[vendor];
  if (!make) throw new Error(`No simulated vendor profile is named ${vendor}; they are ${VENDOR_PROFILES.join(', ')}.`);
  return make();
}
