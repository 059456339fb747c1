/**
 * Differential test, R4 examples (second half). Figures when written:
 *   8,574 distinct resources, 174,736 (resource, param) pairs (108,554 with values), 0 fallback, 0 mismatches.
 */
import { runExamplesHalf } from './differential-examples.ts';

runExamplesHalf(1);
