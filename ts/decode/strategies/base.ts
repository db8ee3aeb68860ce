// Shared machinery of the drafting strategies: per-sequence prompt-lookup index, layer-skip plan
// search, variant forward passes (only the path nodes a variant has not computed yet, plus the
// nodes whose outputs are wanted, in one call), node bookkeeping under the step's size limit,
// acceptance tracking from verification outcomes, and per-variant statistics.
//
// Losslessness never depends on this code: strategies only add nodes to the tree (parents first,
// distinct sibling tokens) and verification decides.
import { CasspecError } from '../../errors.js';
import type { ForwardOutput } from '../../native.js';
import type { StrategyEnv } from '../registry.js';
import type { PassOptions, Sequence } from '../sequence.js';
import type { StepContext, Strategy } from '../strategy.js';
import type { DraftTree } from '../tree.js';
import type { Verdict } from '../verify.js';
import { AcceptanceTracker, round3, type AcceptanceOptions, type TokenOutcome } from '../../cascade/acceptance.js';
import { NgramIndex, type LookupMatch } from '../lookup.js';
import { LayerSkipPlans, type SearchSettings } from './plans.js';
import { planString, type ModelVariant } from '../variants.js';

/** Most nodes (root included) a tree may have: GPU kernels are batch-invariant up to 64 tokens. */
export const MAX_TREE = 64;

export interface BaseOptions {
  /** Largest tree (root included), at most 64. */
  maxTree?: number;
  /** Clock for timings (ms); tests inject a virtual one. */
  clock?: () => number;
  /** Layer-skip plan search settings, or false to keep the evenly spread plans. */
  search?: Partial<SearchSettings> | false;
  acceptance?: AcceptanceOptions;
}

/** What a node's acceptance is tracked under. */
export interface NodeMeta {
  /** Acceptance source ('ls40', 'pld', 'ls40:alt'...). */
  track: string;
  bucket: string;
}

export interface PassResult {
  /** Tree nodes whose outputs came back, in output-row order. */
  rows: number[];
  out: ForwardOutput;
  topk: number;
  /** Tokens in the pass. */
  n: number;
  ms: number;
}

interface Counter {
  drafted: number;
  evaluated: number;
  accepted: number;
  forwards: number;
  passTokens: number;
  ms: number;
}

// Scratch for the PassOptions we hand to Sequence.forwardNodes; outRows rides along to the native
// forward (forwardNodes spreads its options into the request).
interface DraftPassOptions extends PassOptions {
  outRows?: Int32Array;
}

export abstract class DraftingStrategy implements Strategy {
  abstract readonly name: string;
  readonly tracker: AcceptanceTracker;
  protected readonly clock: () => number;
  protected readonly maxTree: number;
  protected readonly index: NgramIndex;
  protected readonly plans: LayerSkipPlans;
  protected seq?: Sequence;
  /** Largest tree size this step (root included). */
  protected limit = 1;
  protected meta: NodeMeta[] = [];
  protected readonly counters = new Map<string, Counter>();
  protected readonly disabled = new Set<string>();
  private readonly outcomes: TokenOutcome[] = [];
  private mark = new Uint8Array(MAX_TREE);

  constructor(
    protected readonly env: StrategyEnv,
    /** Layer-skip variants whose plans the search tunes. */
    protected readonly skipVariants: ModelVariant[],
    opts: BaseOptions = {},
  ) {
    this.clock = opts.clock ?? (() => performance.now());
    this.maxTree = Math.max(1, Math.min(MAX_TREE, opts.maxTree ?? MAX_TREE));
    this.tracker = new AcceptanceTracker(opts.acceptance);
    this.index = new NgramIndex(env.vocabSize);
    this.plans = new LayerSkipPlans(env, skipVariants, opts.search === false ? { enabled: false } : (opts.search ?? {}), this.clock);
  }

  async draft(seq: Sequence, tree: DraftTree, step: StepContext): Promise<void> {
    if (seq !== this.seq) {
      this.seq = seq;
      this.plans.newSequence(step.temperature > 0);
      this.onSequence(seq, step.temperature > 0);
    }
    this.index.sync(seq.tokens);
    this.limit = Math.min(this.maxTree, step.budget + 1);
    this.meta.length = 0;
    this.meta.push({ track: 'root', bucket: '' });
    if (this.mark.length < this.maxTree) this.mark = new Uint8Array(this.maxTree);
    await this.plans.update(seq, this.tracker, step.budget, this.planDemand());
    if (this.limit <= 1) return;
    await this.grow(seq, tree, step);
  }

  /** Grows the draft tree of one step (tree.size must stay <= this.limit). */
  protected abstract grow(seq: Sequence, tree: DraftTree, step: StepContext): Promise<void>;

  /** Share of recent steps that drafted with the layer-skip variants (plan searches run only with demand). */
  protected planDemand(): number {
    return 1;
  }

  /** Called when a new generation starts with this strategy object (reproducible: sampling). */
  protected onSequence(_seq: Sequence, _reproducible: boolean): void {}

  /** Called after every variant pass (for latency models). */
  protected onPass(_v: ModelVariant, _r: PassResult, _ctx: number): void {}

  /**
   * Adds token under parent unless a sibling already has it (returns that sibling) or the tree
   * is full (returns -1).
   */
  protected addNode(tree: DraftTree, parent: number, token: number, source: string, track: string, bucket: string, confidence: number): number {
    const existing = tree.childWithToken(parent, token);
    if (existing >= 0) return existing;
    if (tree.size >= this.limit) return -1;
    const i = tree.add(parent, token, source, confidence);
    this.meta[i] = { track, bucket };
    return i;
  }

  /**
   * One forward pass of variant v that yields the outputs of `targets` (and of forwarded nodes
   * for which wantRow says yes): forwards every node on their root paths that v has not computed
   * yet, plus the targets. Returns null when the backend refuses the variant (e.g. a quant mode it
   * lacks): the variant is disabled for the rest of the run.
   */
  protected async pass(
    seq: Sequence,
    tree: DraftTree,
    v: ModelVariant,
    targets: readonly number[],
    topk: number,
    wantRow?: (node: number) => boolean,
  ): Promise<PassResult | null> {
    if (this.disabled.has(v.key)) return null;
    const size = tree.size;
    if (this.mark.length < size) this.mark = new Uint8Array(Math.max(size, MAX_TREE));
    const mark = this.mark;
    mark.fill(0, 0, size);
    for (const t of targets) {
      mark[t] = 2;
      for (let p = tree.nodes[t].parent; p >= 0 && mark[p] === 0 && !tree.nodes[p].computedBy.has(v.key); p = tree.nodes[p].parent) mark[p] = 1;
    }
    const nodes: number[] = [];
    const rows: number[] = [];
    const outRows: number[] = [];
    for (let i = 0; i < size; i++) {
      if (mark[i] === 0) continue;
      if (mark[i] === 2 || (wantRow !== undefined && wantRow(i))) {
        outRows.push(nodes.length);
        rows.push(i);
      }
      nodes.push(i);
    }
    const opts: DraftPassOptions = { skip: v.skip, quant: v.quant, topk, outRows: Int32Array.from(outRows) };
    const ctx = seq.committed;
    const t0 = this.clock();
    let out: ForwardOutput;
    try {
      out = await seq.forwardNodes(tree, nodes, opts, v.key);
    } catch (e) {
      if (v.quant !== 0 && e instanceof CasspecError && e.code === 'E_INVALID_ARG') {
        this.disabled.add(v.key);
        return null;
      }
      throw e;
    }
    const ms = this.clock() - t0;
    const c = this.counter(v.key);
    c.forwards++;
    c.passTokens += nodes.length;
    c.ms += ms;
    const r: PassResult = { rows, out, topk, n: nodes.length, ms };
    this.onPass(v, r, ctx);
    return r;
  }

  /** Prompt-lookup continuation of the text ending at tree node `leaf`. */
  protected lookupAt(tree: DraftTree, leaf: number, maxLen: number): LookupMatch | null {
    if (maxLen <= 0) return null;
    const extra = leaf === 0 ? EMPTY : tree.pathTokens(leaf).slice(1);
    return this.index.lookup(extra, maxLen);
  }

  protected counter(key: string): Counter {
    let c = this.counters.get(key);
    if (!c) this.counters.set(key, (c = { drafted: 0, evaluated: 0, accepted: 0, forwards: 0, passTokens: 0, ms: 0 }));
    return c;
  }

  observe(tree: DraftTree, verdict: Verdict, _seq: Sequence): void {
    const size = tree.size;
    if (this.mark.length < size) this.mark = new Uint8Array(size);
    const onPath = this.mark;
    onPath.fill(0, 0, size);
    for (const n of verdict.path) onPath[n] = 1;
    this.outcomes.length = 0;
    for (let i = 1; i < size; i++) {
      const node = tree.nodes[i];
      const c = this.counter(node.source);
      c.drafted++;
      if (!onPath[node.parent]) continue;
      c.evaluated++;
      const accepted = onPath[i] === 1;
      if (accepted) c.accepted++;
      const m = this.meta[i];
      if (m) this.outcomes.push({ source: m.track, bucket: m.bucket, accepted });
    }
    this.tracker.recordStep(this.outcomes);
  }

  stats(): Record<string, unknown> {
    const variants: Record<string, unknown> = {};
    const live = this.tracker.summary();
    for (const [k, c] of this.counters)
      variants[k] = {
        drafted: c.drafted,
        evaluated: c.evaluated,
        accepted: c.accepted,
        acceptance: c.evaluated > 0 ? round3(c.accepted / c.evaluated) : null,
        liveRate: live[k]?.rate ?? null,
        forwards: c.forwards,
        passTokens: c.passTokens,
        draftMs: round3(c.ms),
      };
    const out: Record<string, unknown> = { variants, acceptance: live };
    if (this.skipVariants.length > 0) out.plans = Object.fromEntries(this.skipVariants.map((v) => [v.key, planString(v.skip)]));
    if (this.disabled.size > 0) out.disabledVariants = [...this.disabled];
    const s = this.plans.stats();
    if (s) out.search = s;
    return out;
  }
}

const EMPTY: number[] = [];
