// Every example of the R4 specification (hl7.fhir.r4.examples), through the validator: the server must
// accept at least 99% of them, and the ones refused must be those that really break an R4 rule.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createValidator } from '../../../src/fhir/validation/index.ts';

const root = join(import.meta.dirname, '../../..');
const examplesDir = join(root, 'node_modules/hl7.fhir.r4.examples');

// Examples that break a rule of R4 as published, with the rule. They are refused on purpose.
const REFUSED: Record<string, string> = {
  // bdl-7: fullUrl must be unique in a bundle; this collection repeats fullUrls (de-Quantity.value, ...).
  'Bundle-dataelements.json': 'Bundle',
  // ImplementationGuide.name and .status are 1..1; the package's IG has neither.
  'ImplementationGuide-fhir.json': 'ImplementationGuide.name',
  // Questionnaire.item.linkId is 1..1; the nested items have none.
  'Questionnaire-qs1.json': 'Questionnaire.item[0].item[0].linkId',
  // SearchParameter.base is 1..*; these extension search parameters have none.
  'SearchParameter-codesystem-extensions-CodeSystem-author.json': 'SearchParameter.base',
  'SearchParameter-codesystem-extensions-CodeSystem-effective.json': 'SearchParameter.base',
  'SearchParameter-codesystem-extensions-CodeSystem-end.json': 'SearchParameter.base',
  'SearchParameter-codesystem-extensions-CodeSystem-keyword.json': 'SearchParameter.base',
  'SearchParameter-codesystem-extensions-CodeSystem-workflow.json': 'SearchParameter.base',
  'SearchParameter-valueset-extensions-ValueSet-author.json': 'SearchParameter.base',
  'SearchParameter-valueset-extensions-ValueSet-effective.json': 'SearchParameter.base',
  'SearchParameter-valueset-extensions-ValueSet-end.json': 'SearchParameter.base',
  'SearchParameter-valueset-extensions-ValueSet-keyword.json': 'SearchParameter.base',
  'SearchParameter-valueset-extensions-ValueSet-workflow.json': 'SearchParameter.base',
  // An id of 67 characters; ids are at most 64.
  'SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json': 'SearchParameter.id',
  // sdf-4: a structure that is not abstract has a baseDefinition; these logical models have none.
  'StructureDefinition-Definition.json': 'StructureDefinition',
  'StructureDefinition-Event.json': 'StructureDefinition',
  'StructureDefinition-FiveWs.json': 'StructureDefinition',
  'StructureDefinition-Request.json': 'StructureDefinition',
};

t.test('the official R4 examples', async (t) => {
  const validator = await createValidator({ profilesDir: join(root, 'profiles') });
  const files = readdirSync(examplesDir).filter((f) => f.endsWith('.json') && f !== 'package.json' && !f.startsWith('ig-'));
  const refused: Record<string, string[]> = {};
  for (const file of files) {
    const issues = validator.validate(JSON.parse(readFileSync(join(examplesDir, file), 'utf8')));
    if (issues.length > 0) refused[file] = issues.map((i) => `${i.expression?.[0]}: ${i.diagnostics}`);
  }
  const accepted = files.length - Object.keys(refused).length;
  t.comment(`${accepted} of ${files.length} official examples accepted (${((100 * accepted) / files.length).toFixed(2)}%)`);
  for (const [file, issues] of Object.entries(refused)) t.comment(`refused ${file}: ${issues.slice(0, 2).join('; ')}`);

  t.ok(files.length > 5000, 'the examples are there');
  t.ok(accepted / files.length >= 0.99, 'at least 99% accepted');
  t.same(Object.keys(refused).sort(), Object.keys(REFUSED).sort(), 'refused: exactly the examples that break a rule');
  for (const [file, location] of Object.entries(REFUSED)) {
    t.ok(
      refused[file]?.some((issue) => issue.startsWith(`${location}:`)),
      `${file} is refused at ${location}`,
    );
  }
});
