/** Laboratory tests and panels of the sandbox records generator (src/sandbox/generate.ts). */
import type { Code } from './catalogs.ts';

export interface LabDef extends Code {
  unit: string;
  decimals: number;
  /** [low, high] of the reference range, for women where it differs; either end may be absent. */
  range: readonly [number | undefined, number | undefined];
  rangeFemale?: readonly [number | undefined, number | undefined];
}

export const LAB = {
  glucose: { code: '2339-0', display: 'Glucose [Mass/volume] in Blood', unit: 'mg/dL', decimals: 0, range: [70, 99] },
  creatinine: {
    code: '2160-0',
    display: 'Creatinine [Mass/volume] in Serum or Plasma',
    unit: 'mg/dL',
    decimals: 2,
    range: [0.7, 1.3],
    rangeFemale: [0.6, 1.1],
  },
  sodium: { code: '2951-2', display: 'Sodium [Moles/volume] in Serum or Plasma', unit: 'mmol/L', decimals: 0, range: [136, 145] },
  potassium: { code: '2823-3', display: 'Potassium [Moles/volume] in Serum or Plasma', unit: 'mmol/L', decimals: 1, range: [3.5, 5.1] },
  cholesterol: { code: '2093-3', display: 'Cholesterol [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [undefined, 199] },
  triglycerides: { code: '2571-8', display: 'Triglyceride [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [undefined, 149] },
  ldl: {
    code: '18262-6',
    display: 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay',
    unit: 'mg/dL',
    decimals: 0,
    range: [undefined, 99],
  },
  hdl: { code: '2085-9', display: 'Cholesterol in HDL [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [40, undefined] },
  hemoglobin: {
    code: '718-7',
    display: 'Hemoglobin [Mass/volume] in Blood',
    unit: 'g/dL',
    decimals: 1,
    range: [13.5, 17.5],
    rangeFemale: [12.0, 15.5],
  },
  hematocrit: {
    code: '4544-3',
    display: 'Hematocrit [Volume Fraction] of Blood by Automated count',
    unit: '%',
    decimals: 1,
    range: [41, 50],
    rangeFemale: [36, 44],
  },
  wbc: { code: '6690-2', display: 'Leukocytes [#/volume] in Blood by Automated count', unit: '10*3/uL', decimals: 1, range: [4.5, 11.0] },
  platelets: { code: '777-3', display: 'Platelets [#/volume] in Blood by Automated count', unit: '10*3/uL', decimals: 0, range: [150, 400] },
  hba1c: { code: '4548-4', display: 'Hemoglobin A1c/Hemoglobin.total in Blood', unit: '%', decimals: 1, range: [4.0, 5.6] },
} satisfies Record<string, LabDef>;

export type LabKey = keyof typeof LAB;
export type PanelKey = 'lipid' | 'cbc' | 'bmp';

export const PANELS: Record<PanelKey, Code & { labs: readonly LabKey[]; name: string }> = {
  lipid: {
    code: '57698-3',
    display: 'Lipid panel with direct LDL - Serum or Plasma',
    name: 'lipid panel',
    labs: ['cholesterol', 'triglycerides', 'ldl', 'hdl'],
  },
  cbc: { code: '58410-2', display: 'CBC panel - Blood by Automated count', name: 'CBC', labs: ['hemoglobin', 'hematocrit', 'wbc', 'platelets'] },
  bmp: {
    code: '51990-0',
    display: 'Basic metabolic panel - Blood',
    name: 'basic metabolic panel',
    labs: ['glucose', 'creatinine', 'sodium', 'potassium'],
  },
};

export const INTERPRETATIONS = { H: { code: 'H', display: 'High' }, L: { code: 'L', display: 'Low' } } satisfies Record<string, Code>;
