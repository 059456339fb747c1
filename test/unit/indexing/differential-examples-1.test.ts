/**
 * Differential test, R4 examples (first half). Figures when written:
 *   8,575 distinct resources, 174,767 (resource, param) pairs (108,678 with values), 0 fallback, 0 mismatches.
 */
import { runExamplesHalf } from './differential-examples.ts';

runExamplesHalf(0);
