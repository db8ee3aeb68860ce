// A decoding strategy grows a draft tree from the pending token; verification is shared. `plain`
// drafts nothing, so every step verifies the root alone: ordinary autoregressive decoding.
import type { Sequence } from './sequence.js';
import type { DraftTree } from './tree.js';
import type { Verdict } from './verify.js';

export interface StepContext {
  /** Sampling temperature (0 = greedy): drafters may draft differently when sampling. */
  temperature: number;
  /** Most tokens this step may still add (drafts beyond it are wasted). */
  budget: number;
}

export interface Strategy {
  readonly name: string;
  /** Adds draft nodes under tree's root (node 0). May run draft forward passes through seq. */
  draft(seq: Sequence, tree: DraftTree, step: StepContext): Promise<void>;
  /** Learns from the verification outcome (acceptance rates, timings). */
  observe?(tree: DraftTree, verdict: Verdict, seq: Sequence): void;
  /** Alternatives per tree node the strategy wants back from verification (Verdict.topk); 0/absent: none. */
  readonly verifyTopk?: number;
  /** Strategy-specific statistics for the run report. */
  stats?(): Record<string, unknown>;
}

export class PlainStrategy implements Strategy {
  readonly name = 'plain';
  async draft(): Promise<void> {}
}
