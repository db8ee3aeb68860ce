// On-the-fly layer-skip search (as SWIFT does, no training): find the skip plan with a given
// number of skipped sub-layers whose greedy predictions agree most with the full model's on the
// recent text (prompt + generated). One scratch context holds the last W tokens as a pending
// chain: one full-model pass gives the targets (argmax per position), then each candidate plan is
// one pass over the same chain; agreement = fraction of positions whose argmax equals the target.
//
// Search per plan size: the starting plans (cached or evenly spread), a few random plans, one plan
// built from a surrogate (each sub-layer's marginal harm estimated from every plan evaluated so
// far: mean loss of plans that skip it minus of plans that keep it), then greedy swap refinement
// guided by the same surrogate (swap a harmful skipped sub-layer for a harmless kept one; keep the
// swap if agreement improves). Small spaces are enumerated. The cost is bounded by the evaluation
// counts and reported.
import type { NativeModel } from '../native.js';
import { fromNative } from '../errors.js';
import { Rng } from './rng.js';
import { keptFraction, planFromIndices, planString, skippableSubLayers, skippedIndices } from './variants.js';

export interface SkipSearchOptions {
  /** Most recent tokens used (default 64, at most 128). */
  window?: number;
  /** Random plans per size (default 4). */
  randomEvals?: number;
  /** Refinement evaluations per size (default 5). */
  refineEvals?: number;
  seed?: number;
  /**
   * Budget for the whole search, in units of one plain decoding step (a one-token full-model pass
   * at the window's length, timed in the scratch context right after the full-model pass over the
   * window). Evaluations stop when the next one would likely exceed it. Default: unlimited.
   */
  budgetTokens?: number;
  /** Clock for the budget, in ms (default performance.now; the strategy's clock when it has one). */
  clock?: () => number;
}

export interface SkipSearchTarget {
  /** Sub-layers to skip. */
  count: number;
  /** Plans to evaluate first (the current plan, a cached one...). */
  init: Uint8Array[];
}

export interface SkipSearchResult {
  plan: Uint8Array;
  /** Agreement of the best plan evaluated (-1: the budget allowed no evaluation; plan unchanged). */
  agreement: number;
  /** Agreement of the first starting plan, for comparison. */
  initialAgreement: number;
  evals: number;
}

export interface SkipSearchReport {
  results: SkipSearchResult[];
  /** Forward passes run (the full-model pass included). */
  passes: number;
  tokens: number;
  ms: number;
  /** Time of the full-model pass over the window, of one plain decoding step, and the window length. */
  fullPassMs: number;
  stepMs: number;
  window: number;
}

export async function searchSkipPlans(
  model: NativeModel,
  history: readonly number[],
  numLayers: number,
  targets: SkipSearchTarget[],
  opts: SkipSearchOptions = {},
): Promise<SkipSearchReport> {
  const now = opts.clock ?? (() => performance.now());
  const t0 = now();
  const W = Math.max(2, Math.min(opts.window ?? 64, 128, history.length));
  const text = history.slice(history.length - W);
  const rng = new Rng(opts.seed ?? 0x5eed);
  const ctx = await model.createContext(W + 1).catch((e) => Promise.reject(fromNative(e)));
  let passes = 0;
  try {
    const tokens = Int32Array.from(text);
    const slots = Int32Array.from({ length: W }, (_, i) => i);
    const parents = Int32Array.from({ length: W }, (_, i) => i - 1);
    const tFull = now();
    const full = await ctx.forward({ tokens, slots, parents });
    const fullMs = now() - tFull;
    passes++;
    const target = full.argmax;
    // One plain decoding step at this cache length: the unit of the budget.
    const tOne = now();
    await ctx.forward({ tokens: Int32Array.of(text[W - 1]), slots: Int32Array.of(W), parents: Int32Array.of(W - 1) });
    const stepMs = now() - tOne;
    passes++;
    const budget = opts.budgetTokens === undefined ? Infinity : opts.budgetTokens * stepMs;
    const memo = new Map<string, number>();
    const overBudget = (plan: Uint8Array) => now() - t0 + fullMs * keptFraction(plan) > budget;
    const evaluate = async (plan: Uint8Array): Promise<number> => {
      const key = planString(plan);
      const known = memo.get(key);
      if (known !== undefined) return known;
      if (overBudget(plan)) return -1; // out of time: treat as not better than anything
      await ctx.truncate(0);
      const out = await ctx.forward({ tokens, slots, parents, skip: plan });
      passes++;
      let same = 0;
      for (let i = 0; i < W; i++) if (out.argmax[i] === target[i]) same++;
      const agreement = same / W;
      memo.set(key, agreement);
      return agreement;
    };

    const eligible = skippableSubLayers(numLayers);
    const results: SkipSearchResult[] = [];
    for (const t of targets) {
      const m = Math.min(t.count, eligible.length);
      const tried: { plan: Uint8Array; loss: number }[] = [];
      let evals = 0;
      const consider = async (plan: Uint8Array) => {
        const fresh = !memo.has(planString(plan));
        const a = await evaluate(plan);
        if (fresh) evals++;
        tried.push({ plan, loss: 1 - a });
        return a;
      };
      let best: Uint8Array | undefined;
      let bestA = -1;
      const offer = async (plan: Uint8Array) => {
        if (!memo.has(planString(plan)) && overBudget(plan)) return -1;
        const a = await consider(plan);
        if (a > bestA) {
          bestA = a;
          best = plan;
        }
        return a;
      };
      let initialAgreement = NaN;
      for (const p of t.init) {
        if (skippedIndices(p).length !== m) continue;
        const a = await offer(p);
        if (Number.isNaN(initialAgreement)) initialAgreement = a;
      }
      const budget = (opts.randomEvals ?? 4) + 1 + (opts.refineEvals ?? 5);
      if (binomial(eligible.length, m) <= budget + t.init.length) {
        for (const combo of combinations(eligible, m)) await offer(planFromIndices(numLayers, combo));
      } else {
        for (let r = 0; r < (opts.randomEvals ?? 4); r++) await offer(planFromIndices(numLayers, shuffle(eligible, rng).slice(0, m)));
        // Surrogate: marginal harm of skipping each sub-layer.
        const harm = (): Map<number, number> => {
          const h = new Map<number, number>();
          for (const j of eligible) {
            let s1 = 0, n1 = 0, s0 = 0, n0 = 0;
            for (const { plan, loss } of tried) {
              if (plan[j]) (s1 += loss), n1++;
              else (s0 += loss), n0++;
            }
            h.set(j, n1 > 0 && n0 > 0 ? s1 / n1 - s0 / n0 : 0);
          }
          return h;
        };
        let h = harm();
        await offer(planFromIndices(numLayers, [...eligible].sort((a, b) => h.get(a)! - h.get(b)!).slice(0, m)));
        for (let r = 0; r < (opts.refineEvals ?? 5) && best; r++) {
          h = harm();
          const skipped = skippedIndices(best).sort((a, b) => h.get(b)! - h.get(a)!);
          const kept = eligible.filter((j) => !best![j]).sort((a, b) => h.get(a)! - h.get(b)!);
          if (skipped.length === 0 || kept.length === 0) break;
          // Among the 3 most harmful skipped and 3 least harmful kept, try an untried swap.
          let cand: Uint8Array | undefined;
          for (let tries = 0; tries < 12 && !cand; tries++) {
            const out = skipped[Math.floor(rng.uniform() * Math.min(3, skipped.length))];
            const inn = kept[Math.floor(rng.uniform() * Math.min(3, kept.length))];
            const p = best.slice();
            p[out] = 0;
            p[inn] = 1;
            if (!memo.has(planString(p))) cand = p;
          }
          if (!cand) break;
          await offer(cand);
        }
      }
      results.push({ plan: best ?? t.init[0], agreement: bestA, initialAgreement, evals });
    }
    return { results, passes, tokens: (passes - 1) * W + 1, ms: now() - t0, fullPassMs: fullMs, stepMs, window: W };
  } catch (e) {
    throw fromNative(e);
  } finally {
    ctx.dispose();
  }
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) {
    r = (r * (n - k + i)) / i;
    if (r > 1e6) return r;
  }
  return r;
}

function* combinations(items: number[], k: number, start = 0, acc: number[] = []): Generator<number[]> {
  if (acc.length === k) {
    yield [...acc];
    return;
  }
  for (let i = start; i <= items.length - (k - acc.length); i++) {
    acc.push(items[i]);
    yield* combinations(items, k, i + 1, acc);
    acc.pop();
  }
}

function shuffle(items: number[], rng: Rng): number[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
