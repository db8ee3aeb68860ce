// Keeps the layer-skip variants' plans tuned to the text: a search (skip-search.ts) when a
// generation has enough tokens, refinement every `reoptEvery` new tokens, and a per-model cache of
// the best plans so later generations start from them and only refine.
import type { NativeModel } from '../../native.js';
import type { AcceptanceTracker } from '../../cascade/acceptance.js';
import type { StrategyEnv } from '../registry.js';
import type { Sequence } from '../sequence.js';
import { searchSkipPlans } from '../skip-search.js';
import { skippedIndices, type ModelVariant } from '../variants.js';

export interface SearchSettings {
  enabled: boolean;
  /** Recent tokens the search scores plans on (<= 128). */
  window: number;
  /** Random plans per size in a first search. */
  randomEvals: number;
  /** Surrogate-guided swap refinements per size. */
  refineEvals: number;
  /** Re-optimise after this many new tokens. */
  reoptEvery: number;
  /** Do not search before the text has this many tokens. */
  minTokens: number;
  /**
   * Search cost cap, as a fraction of the expected remaining decoding time (remaining tokens x one
   * plain step): SWIFT-style optimisation must pay for itself. Default 0.1.
   */
  maxCostFraction: number;
  /**
   * Search only when the variants are in demand: the share of recent steps that drafted with one
   * (1 for strategies that always do). A router that finds the unsearched plans useless on this
   * model and text pays nothing for tuning them. Default 0.25.
   */
  minDemand: number;
  /** Reproducible (sampling) runs search, with fixed evaluation counts, only when this many tokens remain. */
  reproducibleMinRemaining: number;
  seed: number;
}

export const defaultSearch: SearchSettings = {
  enabled: true,
  window: 64,
  randomEvals: 4,
  refineEvals: 5,
  reoptEvery: 256,
  minTokens: 12,
  maxCostFraction: 0.1,
  minDemand: 0.25,
  reproducibleMinRemaining: 128,
  seed: 0x5eed,
};

const cache = new WeakMap<NativeModel, Map<number, { plan: Uint8Array; agreement: number }>>();
/** Per model: the last search's full-model window pass cost, in plain decoding steps, per window token. */
const windowCost = new WeakMap<NativeModel, number>();

export class LayerSkipPlans {
  readonly settings: SearchSettings;
  private lastAt = -1;
  private searches = 0;
  private passes = 0;
  private tokens = 0;
  private ms = 0;
  private readonly agreement = new Map<string, number>();
  private readonly initial: (Uint8Array | undefined)[];
  private explore = true;
  private seqSearches = 0;
  private skipped = 0;
  /** Steps at which no search ran because the variants were not in demand. */
  private idle = 0;
  private reproducible = false;
  private lastError?: string;

  constructor(
    private readonly env: StrategyEnv,
    private readonly variants: ModelVariant[],
    settings: Partial<SearchSettings>,
    /** The strategy's clock: the search budget is time on it. */
    private readonly clock: () => number,
  ) {
    this.settings = { ...defaultSearch, ...settings };
    this.initial = variants.map((v) => v.skip?.slice());
  }

  /**
   * A generation starts. Reproducible runs (sampling: the tree shape decides how many random
   * numbers verification draws) start from the evenly spread plans and search from scratch, so
   * the plans depend only on the text; otherwise start from the model's cached best plans.
   */
  newSequence(reproducible: boolean): void {
    this.reproducible = reproducible;
    this.lastAt = -1;
    this.seqSearches = 0;
    this.explore = reproducible;
    const c = cache.get(this.env.model);
    this.variants.forEach((v, i) => {
      const init = this.initial[i];
      if (!init) return;
      const hit = reproducible ? undefined : c?.get(skippedIndices(init).length);
      v.skip = hit && hit.plan.length === init.length ? hit.plan.slice() : init.slice();
      if (!hit) this.explore = true;
    });
  }

  /**
   * Searches or refines the plans when due. Runs between steps, never inside one. `remaining`:
   * tokens the generation may still produce (the step budget), which bounds the search's cost;
   * `demand`: the share of recent steps that drafted with these variants.
   */
  async update(seq: Sequence, tracker: AcceptanceTracker, remaining: number, demand = 1): Promise<void> {
    const s = this.settings;
    const vs = this.variants.filter((v) => v.skip && skippedIndices(v.skip).length > 0);
    if (!s.enabled || vs.length === 0) return;
    if (demand < s.minDemand) {
      this.idle++;
      return;
    }
    const len = seq.tokens.length;
    if (len < s.minTokens) return;
    if (this.lastAt >= 0 && len - this.lastAt < s.reoptEvery) return;
    const first = this.lastAt < 0;
    let budgetTokens: number | undefined = s.maxCostFraction * remaining;
    if (this.reproducible) {
      // No wall-clock decisions: fixed evaluation counts, and only for long generations.
      budgetTokens = undefined;
      if (remaining < s.reproducibleMinRemaining) {
        this.skipped++;
        this.lastAt = len;
        return;
      }
    } else {
      const W = Math.min(s.window, 128, len);
      const perToken = windowCost.get(this.env.model);
      // The full-model pass plus one candidate must fit, or searching cannot pay for itself.
      if (perToken !== undefined && budgetTokens < 1 + 1.6 * perToken * W) {
        this.skipped++;
        this.lastAt = len;
        return;
      }
    }
    let c = cache.get(this.env.model);
    if (!c) cache.set(this.env.model, (c = new Map()));
    // A generation's first search explores unless it starts from cached plans; later ones refine.
    const explore = first && this.explore;
    let report: Awaited<ReturnType<typeof searchSkipPlans>>;
    try {
      report = await searchSkipPlans(
        this.env.model,
        seq.tokens,
        this.env.numLayers,
        vs.map((v) => ({ count: skippedIndices(v.skip!).length, init: [v.skip!] })),
        {
          window: s.window,
          randomEvals: explore ? s.randomEvals : 1,
          refineEvals: explore ? s.refineEvals : Math.min(2, s.refineEvals),
          seed: s.seed + this.seqSearches,
          budgetTokens,
          clock: this.clock,
        },
      );
    } catch (e) {
      // A failed search (e.g. no memory for the scratch context) costs the plans' tuning, not the
      // generation: keep the current plans and say so in the statistics.
      if ((e as { code?: string }).code === 'E_ABORTED' || (e as { code?: string }).code === 'E_DISPOSED') throw e;
      this.lastError = (e as Error).message;
      this.lastAt = len;
      return;
    }
    if (report.stepMs > 0) windowCost.set(this.env.model, report.fullPassMs / report.stepMs / report.window);
    vs.forEach((v, i) => {
      const r = report.results[i];
      if (r.agreement < 0) return; // no evaluation fitted the budget
      v.skip = r.plan;
      this.agreement.set(v.key, r.agreement);
      if (first) tracker.setPrior(v.key, r.agreement);
      c!.set(skippedIndices(r.plan).length, { plan: r.plan.slice(), agreement: r.agreement });
    });
    this.lastAt = len;
    this.searches++;
    this.seqSearches++;
    this.passes += report.passes;
    this.tokens += report.tokens;
    this.ms += report.ms;
  }

  stats(): Record<string, unknown> | undefined {
    if (!this.settings.enabled || this.searches + this.skipped + this.idle === 0) return undefined;
    return {
      searches: this.searches,
      skippedForBudget: this.skipped,
      stepsWithoutDemand: this.idle,
      passes: this.passes,
      tokens: this.tokens,
      ms: Math.round(this.ms * 1000) / 1000,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      agreement: Object.fromEntries([...this.agreement].map(([k, a]) => [k, Math.round(a * 1000) / 1000])),
    };
  }
}
