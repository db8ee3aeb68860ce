// The benchmark protocol (after Spec-Bench): batch 1, greedy, warm-up excluded, every prompt
// generates exactly maxNewTokens tokens (EOS ignored), the native forward synchronises the device
// before returning so stats.totalMs is device time. Strategies are interleaved per prompt
// (prompt-major: prompt 1 under every strategy, then prompt 2, ...) and each (strategy, prompt)
// runs `repeats` times, keeping the median time, so drift in machine speed hits all alike.
import { CasspecError } from '../errors.js';
import type { GenerationResult } from '../generate.js';
import type { GenerateOptions } from '../model.js';
import { ALL_CATEGORIES, type BenchPrompt } from './prompts.js';

/** What the benchmark needs of a model (Model satisfies it; tests may pass a fake). */
export interface BenchModel {
  generate(prompt: number[], opts: GenerateOptions): { readonly result: Promise<GenerationResult> };
  encode(text: string): number[];
  readonly contextLength: number;
}

/** The reference strategy: always run, first, and the basis of speedup and identity. */
export const REFERENCE = 'plain';

/** Context slots kept free after prompt + generation for a full draft tree (as Model allocates). */
export const TREE_ROOM = 80;

export interface RunOptions {
  prompts: BenchPrompt[];
  strategies: string[];
  maxNewTokens: number;
  /** Warm-up generations per strategy (on the first prompts, excluded from the results). */
  warmup: number;
  /** Timed runs per (strategy, prompt); the median time is kept. */
  repeats: number;
  signal?: AbortSignal;
  onProgress?: (p: BenchProgress) => void;
}

export interface BenchProgress {
  phase: 'warmup' | 'run';
  /** Generations finished in this phase, and how many there are. */
  done: number;
  total: number;
  promptIndex: number;
  promptId: string;
  strategy: string;
  elapsedMs: number;
}

export interface PerPromptRecord {
  id: string;
  category: string;
  strategy: string;
  promptTokens: number;
  /** Generated tokens. */
  tokens: number;
  /** Median generation time over the repeats, ms (prefill included). */
  ms: number;
  /** tokens / ms, per second. */
  tokensPerSecond: number;
  /** Tokens appended per verification step (plain: 1). */
  meanAccepted: number;
  /** Verification steps (full-model forwards after prefill). */
  steps: number;
  /** The token list equals plain's for this prompt. */
  identical: boolean;
  finishReason: string;
  /** Every repeat's time, ms. */
  msRepeats: number[];
  draftMs: number;
  verifyMs: number;
  /** Prefill + first token, ms. */
  firstTokenMs: number;
  /** cas-spec: what the router did and how well it predicted step times (first repeat). */
  routing?: RoutingSummary;
}

export interface RoutingSummary {
  /** Per draft source: tokens drafted, and accepted by verification. */
  drafted: Record<string, [number, number]>;
  actions: Record<string, number>;
  meanTreeSize: number;
  /** Median absolute % error of the latency model's predictions (verification, whole step, draft pass). */
  verifyErrPct: number | null;
  stepErrPct: number | null;
  draftPassErrPct: number | null;
  /** Predicted verification ms for n = 1, 2, 4, 8, 16, 32 at the end of the generation. */
  costCurve: number[] | null;
}

/** `{ routing }` for a cas-spec generation, else nothing (spread into the record). */
function routingField(details: Record<string, unknown> | undefined): { routing?: RoutingSummary } {
  const routing = routingOf(details);
  return routing ? { routing } : {};
}

function routingOf(details: Record<string, unknown> | undefined): RoutingSummary | undefined {
  const d = details as
    | {
        variants?: Record<string, { drafted: number; accepted: number }>;
        dytc?: { actions: Record<string, number>; meanTreeSize: number };
        latency?: { verifyMedianAbsPctErr: number | null; stepMedianAbsPctErr: number | null; draftPassMedianAbsPctErr: number | null; costCurve?: number[] | null };
      }
    | undefined;
  if (!d?.dytc || !d.latency) return undefined;
  const drafted: Record<string, [number, number]> = {};
  for (const [k, v] of Object.entries(d.variants ?? {})) drafted[k] = [v.drafted, v.accepted];
  return {
    drafted,
    actions: d.dytc.actions,
    meanTreeSize: d.dytc.meanTreeSize,
    verifyErrPct: d.latency.verifyMedianAbsPctErr,
    stepErrPct: d.latency.stepMedianAbsPctErr,
    draftPassErrPct: d.latency.draftPassMedianAbsPctErr,
    costCurve: d.latency.costCurve ?? null,
  };
}

export interface SummaryRow {
  strategy: string;
  /** A prompt category, or 'all'. */
  category: string;
  prompts: number;
  /** Mean over prompts of per-prompt tokens/s. */
  tokensPerSecond: number;
  /** tokensPerSecond / plain's tokensPerSecond (same category, same run). */
  speedup: number;
  /** Tokens per verification step over all steps of these prompts (null when unknown). */
  meanAccepted: number | null;
  /** Percentage of prompts whose tokens equal the reference's. */
  identicalPct: number;
}

export interface BenchRun {
  strategies: string[];
  categories: string[];
  perPrompt: PerPromptRecord[];
  summary: SummaryRow[];
  /** The reference's generated ids per prompt id. */
  referenceIds: Record<string, number[]>;
  /** Prompts cut from the left to fit the context. */
  truncatedPrompts: string[];
  /** (strategy, prompt) pairs whose repeats produced different tokens (should never happen). */
  nondeterministic: string[];
  wallMs: number;
}

/** Puts plain first, drops duplicates. */
export function orderStrategies(names: string[]): string[] {
  const rest = names.filter((s, i) => s !== REFERENCE && names.indexOf(s) === i);
  return [REFERENCE, ...rest];
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

function sameTokens(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

/** Categories in order of first appearance. */
export function categoriesOf(prompts: { category: string }[]): string[] {
  return [...new Set(prompts.map((p) => p.category))];
}

/** Tokenises (text prompts) and left-truncates prompts so prompt + generation + a tree fit. */
export function preparePrompts(
  model: Pick<BenchModel, 'encode' | 'contextLength'>,
  prompts: BenchPrompt[],
  maxNewTokens: number,
): { ids: number[][]; truncated: string[] } {
  const limit = model.contextLength - maxNewTokens - TREE_ROOM;
  if (limit < 1)
    throw new CasspecError(
      'E_INVALID_ARG',
      `--max-new-tokens ${maxNewTokens} leaves no room for a prompt in a ${model.contextLength}-token context ` +
        `(needs prompt + ${maxNewTokens} + ${TREE_ROOM} for a draft tree)`,
    );
  const truncated: string[] = [];
  const ids = prompts.map((p) => {
    const all = typeof p.prompt === 'string' ? model.encode(p.prompt) : p.prompt;
    if (all.length === 0) throw new CasspecError('E_INVALID_ARG', `prompt ${p.id} encodes to no tokens`);
    if (all.length <= limit) return all;
    truncated.push(p.id);
    return all.slice(all.length - limit);
  });
  return { ids, truncated };
}

/** Runs the protocol; see the file comment. */
export async function runBench(model: BenchModel, opts: RunOptions): Promise<BenchRun> {
  const { prompts, maxNewTokens, warmup, repeats, signal } = opts;
  if (prompts.length === 0) throw new CasspecError('E_INVALID_ARG', 'no prompts to run');
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new CasspecError('E_INVALID_ARG', 'maxNewTokens must be >= 1');
  if (!Number.isInteger(repeats) || repeats < 1) throw new CasspecError('E_INVALID_ARG', 'repeats must be >= 1');
  if (!Number.isInteger(warmup) || warmup < 0) throw new CasspecError('E_INVALID_ARG', 'warmup must be >= 0');
  const strategies = orderStrategies(opts.strategies);
  const t0 = performance.now();
  const { ids, truncated } = preparePrompts(model, prompts, maxNewTokens);

  const gen = async (i: number, strategy: string): Promise<GenerationResult> => {
    if (signal?.aborted) throw new CasspecError('E_ABORTED', 'the benchmark was aborted', { cause: signal.reason });
    return model.generate(ids[i], { strategy, maxTokens: maxNewTokens, temperature: 0, ignoreEos: true, signal }).result;
  };

  // Warm-up: the first `warmup` prompts (cycling) under every strategy, prompt-major; discarded.
  const warmTotal = warmup * strategies.length;
  let done = 0;
  for (let w = 0; w < warmup; w++) {
    const i = w % prompts.length;
    for (const s of strategies) {
      await gen(i, s);
      opts.onProgress?.({ phase: 'warmup', done: ++done, total: warmTotal, promptIndex: i, promptId: prompts[i].id, strategy: s, elapsedMs: performance.now() - t0 });
    }
  }

  const total = prompts.length * strategies.length * repeats;
  done = 0;
  const perPrompt: PerPromptRecord[] = [];
  const referenceIds: Record<string, number[]> = {};
  const nondeterministic: string[] = [];
  const tRun = performance.now();
  for (let i = 0; i < prompts.length; i++) {
    const p = prompts[i];
    const runs = new Map<string, GenerationResult[]>(strategies.map((s) => [s, []]));
    // Repeat-outer, strategy-inner: every repeat visits each strategy once.
    for (let r = 0; r < repeats; r++)
      for (const s of strategies) {
        runs.get(s)!.push(await gen(i, s));
        opts.onProgress?.({ phase: 'run', done: ++done, total, promptIndex: i, promptId: p.id, strategy: s, elapsedMs: performance.now() - tRun });
      }
    const ref = runs.get(REFERENCE)![0].tokens;
    referenceIds[p.id] = ref;
    for (const s of strategies) {
      const rs = runs.get(s)!;
      const first = rs[0];
      if (rs.some((x) => !sameTokens(x.tokens, first.tokens))) nondeterministic.push(`${s}/${p.id}`);
      const msRepeats = rs.map((x) => x.stats.totalMs);
      const ms = median(msRepeats);
      const tokens = first.tokens.length;
      perPrompt.push({
        id: p.id,
        category: p.category,
        strategy: s,
        promptTokens: ids[i].length,
        tokens,
        ms,
        tokensPerSecond: ms > 0 ? (tokens * 1000) / ms : 0,
        meanAccepted: first.stats.meanAccepted,
        steps: first.stats.steps,
        identical: sameTokens(first.tokens, ref),
        finishReason: first.finishReason,
        msRepeats,
        draftMs: median(rs.map((x) => x.stats.draftMs)),
        verifyMs: median(rs.map((x) => x.stats.verifyMs)),
        firstTokenMs: median(rs.map((x) => x.stats.timeToFirstTokenMs)),
        ...routingField(first.stats.details),
      });
    }
  }
  const categories = categoriesOf(prompts);
  return {
    strategies,
    categories,
    perPrompt,
    summary: summarize(perPrompt, strategies, categories),
    referenceIds,
    truncatedPrompts: truncated,
    nondeterministic,
    wallMs: performance.now() - t0,
  };
}

/** Per strategy: one row for 'all', then one per category. `reference` is the speedup basis. */
export function summarize(
  perPrompt: Pick<PerPromptRecord, 'category' | 'strategy' | 'tokensPerSecond' | 'meanAccepted' | 'identical' | 'steps'>[],
  strategies: string[],
  categories: string[],
  reference = REFERENCE,
): SummaryRow[] {
  const cats = [ALL_CATEGORIES, ...categories.filter((c) => c !== ALL_CATEGORIES)];
  const pick = (s: string, c: string) => perPrompt.filter((r) => r.strategy === s && (c === ALL_CATEGORIES || r.category === c));
  const refTps = new Map(cats.map((c) => [c, mean(pick(reference, c).map((r) => r.tokensPerSecond))]));
  const rows: SummaryRow[] = [];
  for (const s of strategies)
    for (const c of cats) {
      const rs = pick(s, c);
      if (rs.length === 0) continue;
      const tps = mean(rs.map((r) => r.tokensPerSecond));
      const steps = rs.reduce((a, r) => a + (r.steps ?? 0), 0);
      const known = rs.every((r) => Number.isFinite(r.meanAccepted) && r.meanAccepted > 0);
      const meanAccepted = !known
        ? null
        : steps > 0
          ? rs.reduce((a, r) => a + r.meanAccepted * (r.steps ?? 0), 0) / steps
          : mean(rs.map((r) => r.meanAccepted));
      const ref = refTps.get(c)!;
      rows.push({
        strategy: s,
        category: c,
        prompts: rs.length,
        tokensPerSecond: tps,
        speedup: ref > 0 ? tps / ref : NaN,
        meanAccepted,
        identicalPct: (100 * rs.filter((r) => r.identical).length) / rs.length,
      });
    }
  return rows;
}
