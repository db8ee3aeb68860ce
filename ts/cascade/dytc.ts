// CAS-Spec's Dynamic Tree Cascade (DyTC): grows one draft tree per step from a hierarchy of draft
// variants of the model itself, then the loop verifies it in one full-model pass.
//
// Each node i carries a conditional acceptance estimate a_i (from the acceptance tracker: the
// variant's live rate, refined by per-token confidence: top-1 probability, n-gram match length,
// agreement of a model variant with a prompt-lookup proposal) and the cumulative probability
// p_i = p_parent * a_i that verification accepts it. E = sum p_i is the expected number of
// accepted drafts; the step yields E + 1 tokens (the bonus token) in predicted time
// D + Tv(size) (draft time so far + verification of the tree, from the latency model).
//
// Each iteration values every action and takes the one with the best expected tokens per unit of
// predicted time for the whole step:
//   - prompt lookup at a leaf (k tokens, free to draft, costs only verification width),
//   - a model variant V drafting k tokens from a leaf: expected sum_{j<=k} p_leaf a_V^j, plus the
//     bottom draft's (prompt lookup's) expected extension, over one pass for the path nodes V has
//     not computed plus k - 1 one-token passes (only the first token is drafted; the next
//     iteration re-plans with what it returned),
//   - a sibling: the next top-k alternative a pass already returned (costs only verification width:
//     worth it where parallel verification is nearly free),
//   - a recycled successor: the next of the top-k tokens the full model predicted after a node's
//     token the last time it verified that token (token recycling; free, like a sibling),
// and stops when no action raises (E + 1) / (D + Tv(size)). The variants are data: any list of
// model variants (layer-skip plans, quant modes) plus prompt lookup plugs in unchanged.
//
// Decisions value actions with optimistic acceptance estimates (a bonus c / sqrt(1 + n) for
// sources and confidence buckets with little evidence), so a variant that has not been tried, or
// not lately, gets tried and its real rate learned; node probabilities use the point estimates.
//
// Reproducibility: sampled tokens do not depend on the tree (verification draws one uniform per
// position); when sampling, decisions also use only predicted times from a per-process snapshot of
// the latency model (no wall-clock readings), so the drafting repeats too for a seed.
import type { StrategyEnv } from '../decode/registry.js';
import type { Sequence } from '../decode/sequence.js';
import type { StepContext } from '../decode/strategy.js';
import type { DraftTree } from '../decode/tree.js';
import type { Verdict } from '../decode/verify.js';
import { DraftingStrategy, type BaseOptions, type PassResult } from '../decode/strategies/base.js';
import type { LookupMatch } from '../decode/lookup.js';
import { layerSkipVariant, PROMPT_LOOKUP, quantVariant, TOKEN_RECYCLING, type DraftVariant, type ModelVariant } from '../decode/variants.js';
import { RECYCLE_K, SuccessorTable } from '../decode/recycle.js';
import { CONFIDENCE_BUCKETS, confidenceIndex, LOOKUP_BUCKETS, lookupIndex, round3 } from './acceptance.js';
import { ErrorLog, keptFractions, LatencyModel, type LatencyModelJSON, type PassShape } from './latency.js';
import { calibrate, loadCached, modelKey, storeCached, type CalibrationOptions, type CalibrationReport } from './calibrate.js';

export interface CasSpecOptions extends BaseOptions {
  /** The cascade: model variants, prompt lookup and/or token recycling (default: ls40, ls60, q1, pld). */
  variants?: DraftVariant[];
  /** A latency model to use (and refine) instead of the cached/calibrated one. */
  latency?: LatencyModel;
  /** Calibrate when nothing is cached (default true), or calibration options. */
  calibrate?: boolean | CalibrationOptions;
  /** Write the refined latency model to the disk cache now and then (default true). */
  persist?: boolean;
  /** Alternatives requested per model pass (default 4). */
  topk?: number;
  /** Most draft passes per step (default 24). */
  maxPasses?: number;
  /** Longest chain a model variant is valued over (default 8). */
  lookahead?: number;
  /** Longest prompt-lookup proposal (default 16). */
  maxLookup?: number;
  /** Leaves considered per iteration (best first, default 8). */
  leaves?: number;
  /** Decide from predicted times only (default: when sampling). */
  reproducible?: boolean;
  /** Called after each step's drafting with a summary of the decisions (debugging, tests). */
  trace?: (t: StepTrace) => void;
}

export interface StepTrace {
  /** Tree size (root included) and expected accepted drafts. */
  size: number;
  expected: number;
  /** Predicted draft and verification time (ms). */
  draftMs: number;
  verifyMs: number;
  /** Actions taken, in order ('pld', 'ls40', 'sibling'...). */
  actions: string[];
  /** Predicted tokens per ms of the plain step (root only) and of the chosen tree. */
  plainRate: number;
  rate: number;
}

interface Pred {
  v: ModelVariant;
  /** Index of v in the model variants. */
  vi: number;
  ids: Int32Array;
  probs: Float32Array;
  /** Next rank to offer as a sibling. */
  next: number;
}

type Action =
  | { kind: 'lookup'; leaf: number; k: number; m: LookupMatch }
  | { kind: 'sibling'; node: number; rank: number; est: number; track: string; bucket: string }
  | { kind: 'recycle'; node: number; rank: number; token: number; est: number; track: string; bucket: string }
  | { kind: 'model'; leaf: number; v: ModelVariant; vi: number };

/** Per model key: the reproducible-decision snapshot, and the live model shared by generations. */
const snapshots = new Map<string, LatencyModelJSON>();
const liveModels = new Map<string, { lm: LatencyModel; steps: number; calibration: CalibrationReport }>();
/**
 * Per model and cascade: what earlier greedy generations learned about each draft source (rate,
 * evidence), to warm-start the next generation's tracker, so it does not pay for exploring from scratch.
 */
const knowledge = new WeakMap<object, Map<string, Map<string, { rate: number; count: number }>>>();
/** Per model and cascade: the last greedy generation's demand for layer-skip drafts (see planDemand). */
const demandByModel = new WeakMap<object, Map<string, number>>();

/** A per-model memory kept per cascade, so cascades compared in one process do not teach each other. */
function perCascade<T>(store: WeakMap<object, Map<string, T>>, model: object): Map<string, T> {
  let m = store.get(model);
  if (!m) store.set(model, (m = new Map()));
  return m;
}
const LOOKUP_MS = 0.003; // a prompt lookup in TS, for reproducible decisions

export class CasSpecStrategy extends DraftingStrategy {
  readonly name = 'cas-spec';
  private readonly modelVariants: ModelVariant[];
  private readonly useLookup: boolean;
  /** The cascade's variant keys ('ls40+ls60+q1+pld'): what the per-model memories are kept under. */
  private readonly cascadeKey: string;
  private readonly succ?: SuccessorTable;
  /** Alternatives verification returns per node (for token recycling). */
  readonly verifyTopk: number;
  private readonly o: { topk: number; maxPasses: number; lookahead: number; maxLookup: number; leaves: number };
  private lm?: LatencyModel;
  private snapshot?: LatencyModel;
  private key?: string;
  private calibration?: CalibrationReport;
  private readonly calibrateOpt: boolean | CalibrationOptions;
  private readonly persist: boolean;
  private readonly reproducibleOpt?: boolean;
  private readonly trace?: (t: StepTrace) => void;
  private traceActions: string[] = [];
  private lastReproducible = false;
  // Per step (indexed by node).
  private a = new Float64Array(64);
  private p = new Float64Array(64);
  private preds: (Pred | undefined)[] = [];
  private lookups = new Map<number, LookupMatch | null>();
  private checked: Uint8Array = new Uint8Array(64);
  /** Per node: the next rank of its token's recycled successors to consider. */
  private recNext: Uint8Array = new Uint8Array(64);
  /** Predicted verification times by (branches, size), cached per step. */
  private tv = new Float64Array(65 * 66);
  /** Leaves - 1 of the tree being grown. */
  private branches = 0;
  // Per-step tables (the tracker only changes between steps), so the inner loop does no string
  // work: lookup-bucket estimates, variant rates, sibling estimates by (variant, alt, confidence
  // bucket), first-pass costs by (variant, tokens in the pass).
  private pldEst = new Float64Array(LOOKUP_BUCKETS.length);
  private pldOpt = new Float64Array(LOOKUP_BUCKETS.length);
  private vRate = new Float64Array(0);
  private sibEst = new Float64Array(0);
  private sibOpt = new Float64Array(0);
  private passCostTable = new Float64Array(0);
  private vFa = new Float64Array(0);
  private vFm = new Float64Array(0);
  private stepLm?: LatencyModel;
  private E = 0;
  private D = 0;
  private stepPasses = 0;
  private stepPassMs = 0;
  private tGrow = 0;
  private tDrafted = 0;
  private stepCtx = 0;
  private predictedVerify = 0;
  private predictedStep = 0;
  private decided = false;
  /** Moving share of steps that drafted with a layer-skip variant (gates the plan search). */
  private demand = 0;
  private skipPassThisStep = false;
  private stepBranches = 0;
  // Learned across steps.
  private overhead = 0;
  private lookupMs = LOOKUP_MS;
  private lookupHit = 0.5;
  private steps = 0;
  private readonly actions = { lookup: 0, model: 0, sibling: 0, recycle: 0 };
  /** Variants dropped as unable to pay (see pruneHopeless). */
  private readonly pruned: Record<string, { costRatio: number; rate: number; atStep: number }> = {};
  private readonly actionsByVariant = new Map<string, number>();
  private treeNodes = 0;
  private readonly verifyErr = new ErrorLog(400);
  private readonly stepErr = new ErrorLog(400);
  private readonly draftErr = new ErrorLog(400);
  private readonly recentSteps: { predictedMs: number; measuredMs: number; nodes: number; accepted: number }[] = [];

  constructor(env: StrategyEnv, opts: CasSpecOptions = {}) {
    // Token recycling is not in the default cascade: on the H200 it measured 3-5% slower than
    // without it on the dev prompts (bench/RESULTS.md, 2026-11-30); 'cas-spec:...+rec' adds it.
    const variants = opts.variants ?? [layerSkipVariant(env.numLayers, 0.4), layerSkipVariant(env.numLayers, 0.6), quantVariant(1), PROMPT_LOOKUP];
    const model = variants.filter((v): v is ModelVariant => v.kind === 'model');
    super(env, model.filter((v) => v.ratio !== undefined && v.skip !== undefined), opts);
    this.modelVariants = model;
    this.useLookup = variants.some((v) => v.kind === 'lookup');
    this.cascadeKey = variants.map((v) => v.key).join('+');
    const recycle = variants.some((v) => v.kind === 'recycle');
    if (recycle) this.succ = new SuccessorTable(env.vocabSize);
    this.verifyTopk = recycle ? RECYCLE_K : 0;
    this.o = { topk: opts.topk ?? 4, maxPasses: opts.maxPasses ?? 24, lookahead: opts.lookahead ?? 8, maxLookup: opts.maxLookup ?? 16, leaves: opts.leaves ?? 8 };
    this.lm = opts.latency;
    this.calibrateOpt = opts.calibrate ?? true;
    this.persist = opts.persist ?? true;
    this.reproducibleOpt = opts.reproducible;
    this.trace = opts.trace;
  }

  protected onSequence(_seq: Sequence, reproducible: boolean): void {
    this.succ?.clear();
    this.demand = (this.reproducibleOpt ?? reproducible) ? 0 : (perCascade(demandByModel, this.env.model).get(this.cascadeKey) ?? 0);
    // Sampling runs must not depend on earlier runs (reproducibility): no warm start there.
    const k = this.reproducibleOpt ?? reproducible ? undefined : perCascade(knowledge, this.env.model).get(this.cascadeKey);
    if (k) for (const [src, { rate, count }] of k) this.tracker.warmStart(src, rate, Math.min(count, 20));
  }

  /** The live latency model (after the first step). */
  get latency(): LatencyModel | undefined {
    return this.lm;
  }

  private async ensureLatency(): Promise<void> {
    if (this.snapshot) return;
    const key = (this.key = modelKey(this.env.model, this.env.numLayers, this.env.vocabSize));
    const injected = this.lm !== undefined;
    const shared = injected ? undefined : liveModels.get(key);
    if (shared) {
      // Another generation of this model already calibrated and refined it: keep refining it.
      this.lm = shared.lm;
      this.calibration = { ...shared.calibration, source: 'process', passes: 0, ms: 0 };
    } else {
      if (!this.lm) {
        const cached = loadCached(key);
        if (cached) {
          this.lm = cached.model;
          this.calibration = { passes: 0, ms: 0, source: cached.source, file: cached.file };
        } else this.lm = new LatencyModel();
      }
      if (!this.lm.knows(0)) {
        if (this.calibrateOpt !== false) {
          const copts = typeof this.calibrateOpt === 'object' ? this.calibrateOpt : {};
          this.calibration = await calibrate(
            this.env.model,
            this.env.vocabSize,
            4096,
            [
              { quant: 0, sizes: [1, 2, 4, 8, 16, 32, 64], allRows: true },
              ...this.modelVariants.map((v) => ({ skip: v.skip, quant: v.quant, sizes: [1, 2, 4, 8], allRows: false })),
            ],
            this.lm,
            { clock: this.clock, ...copts },
          ).catch(() => ({ passes: 0, ms: 0, source: 'none' as const }));
          if (this.persist && !injected && this.lm.knows(0)) this.calibration.file = storeCached(key, this.lm);
        } else this.calibration = { passes: 0, ms: 0, source: 'none' };
      }
      if (!injected) liveModels.set(key, { lm: this.lm, steps: 0, calibration: this.calibration ?? { passes: 0, ms: 0, source: 'none' } });
    }
    for (const v of this.modelVariants) if (v.quant !== 0 && this.calibration?.refusedQuant?.includes(v.quant)) this.disabled.add(v.key);
    if (injected) {
      this.snapshot = this.lm!.clone();
      return;
    }
    let snap = snapshots.get(key);
    if (!snap) snapshots.set(key, (snap = this.lm!.toJSON()));
    this.snapshot = LatencyModel.fromJSON(snap);
  }

  protected async grow(seq: Sequence, tree: DraftTree, step: StepContext): Promise<void> {
    await this.ensureLatency();
    const reproducible = this.reproducibleOpt ?? step.temperature > 0;
    this.lastReproducible = reproducible;
    const lm = reproducible ? this.snapshot! : this.lm!;
    this.tGrow = this.clock();
    this.decided = true;
    const limit = this.limit;
    const ctx = (this.stepCtx = seq.committed);
    if (this.a.length < limit) {
      this.a = new Float64Array(limit);
      this.p = new Float64Array(limit);
      this.checked = new Uint8Array(limit);
      this.recNext = new Uint8Array(limit);
    }
    this.checked.fill(0);
    this.recNext.fill(0);
    this.tv.fill(NaN);
    this.branches = 0;
    const ovh = reproducible ? 0 : this.overhead;
    const lookupCost = reproducible ? LOOKUP_MS : this.lookupMs;
    this.a[0] = this.p[0] = 1;
    this.E = 0;
    this.D = 0;
    this.stepPasses = 0;
    this.stepPassMs = 0;
    this.preds.length = 0;
    this.lookups.clear();
    const tracker = this.tracker;
    const pldRate = tracker.rate(PROMPT_LOOKUP.key);
    const pldTail = this.useLookup ? Math.min(3, (this.lookupHit * pldRate) / Math.max(0.05, 1 - pldRate)) : 0;
    this.prepareTables(lm, ctx);
    this.pruneHopeless();
    const nv = this.modelVariants.length;
    const vRate = this.vRate;
    const leafBuf: number[] = [];

    for (let iter = 0; iter < 256; iter++) {
      const size = tree.size;
      if (size >= limit) break;
      const Rcur = (1 + this.E) / (this.D + this.verifyCost(size) + ovh);
      let bestR = Rcur * (1 + 1e-9);
      let best: Action | undefined;

      // Leaves, most promising first.
      leafBuf.length = 0;
      for (let i = 0; i < size; i++) if (tree.nodes[i].children.length === 0 && this.p[i] > 1e-3) leafBuf.push(i);
      leafBuf.sort((x, y) => this.p[y] - this.p[x]);
      if (leafBuf.length > this.o.leaves) leafBuf.length = this.o.leaves;
      const room = limit - size;

      for (const leaf of leafBuf) {
        const pl = this.p[leaf];
        if (this.useLookup) {
          const m = this.lookup(tree, leaf, Math.min(room, this.o.maxLookup));
          if (m) {
            let cum = pl;
            let gain = 0;
            for (let j = 0; j < m.tokens.length; j++) {
              cum *= this.pld(lookupIndex(m.n, j + 1), true);
              gain += cum;
              const R = (1 + this.E + gain) / (this.D + lookupCost + this.verifyCost(size + j + 1) + ovh);
              if (R > bestR) {
                bestR = R;
                best = { kind: 'lookup', leaf, k: j + 1, m };
              }
            }
          }
        }
        if (this.stepPasses >= this.o.maxPasses) continue;
        for (let vi = 0; vi < nv; vi++) {
          const v = this.modelVariants[vi];
          if (this.disabled.has(v.key)) continue;
          let uncomputed = 0;
          for (let q = leaf; q >= 0 && !tree.nodes[q].computedBy.has(v.key); q = tree.nodes[q].parent) uncomputed++;
          const first = this.passCost(vi, Math.max(1, uncomputed), 1);
          const next = this.passCost(vi, 1, 1);
          const av = vRate[vi];
          let cum = pl;
          let gain = 0;
          let cost = 0;
          const K = Math.min(this.o.lookahead, room);
          for (let k = 1; k <= K; k++) {
            cost += k === 1 ? first : next;
            cum *= av;
            gain += cum;
            const R = (1 + this.E + gain + cum * pldTail) / (this.D + cost + this.verifyCost(size + k) + ovh);
            if (R > bestR) {
              bestR = R;
              best = { kind: 'model', leaf, v, vi };
            }
          }
        }
      }

      // Siblings: the next alternative of a pass's top-k output at a node.
      for (let node = 0; node < size; node++) {
        const pr = this.preds[node];
        if (!pr || this.p[node] < 1e-3) continue;
        while (pr.next < pr.ids.length && tree.childWithToken(node, pr.ids[pr.next]) >= 0) pr.next++;
        if (pr.next >= pr.ids.length) continue;
        const rank = pr.next;
        const alt = rank === 0 ? 0 : 1;
        const bi = confidenceIndex(pr.probs[rank]);
        const t = (pr.vi * 2 + alt) * CONFIDENCE_BUCKETS.length + bi;
        const room1 = this.childRoom(tree, node);
        const R = this.freeChildRate(tree, node, Math.min(this.sib(t, true), room1), ovh);
        if (R > bestR) {
          bestR = R;
          const track = alt ? pr.v.key + ':alt' : pr.v.key;
          best = { kind: 'sibling', node, rank, est: Math.min(this.sib(t, false), room1), track, bucket: CONFIDENCE_BUCKETS[bi] };
        }
      }

      // Recycled successors: the next full-model prediction after a node's token not yet in the tree.
      const succ = this.succ;
      if (succ) {
        for (let node = 0; node < size; node++) {
          if (this.p[node] < 1e-3) continue;
          const token = tree.nodes[node].token;
          let r = this.recNext[node];
          while (r < succ.k) {
            const t = succ.successor(token, r);
            if (t < 0) {
              r = succ.k;
              break;
            }
            if (tree.childWithToken(node, t) < 0) break;
            r++;
          }
          this.recNext[node] = r;
          if (r >= succ.k) continue;
          const bi = confidenceIndex(succ.probability(token, r));
          const track = r === 0 ? TOKEN_RECYCLING.key : TOKEN_RECYCLING.key + ':alt';
          const room1 = this.childRoom(tree, node);
          const R = this.freeChildRate(tree, node, Math.min(this.tracker.optimistic(track, CONFIDENCE_BUCKETS[bi]), room1), ovh);
          if (R > bestR) {
            bestR = R;
            const est = Math.min(this.tracker.estimate(track, CONFIDENCE_BUCKETS[bi]), room1);
            best = { kind: 'recycle', node, rank: r, token: succ.successor(token, r), est, track, bucket: CONFIDENCE_BUCKETS[bi] };
          }
        }
      }

      if (!best) break;
      this.actions[best.kind]++;
      if (this.trace) this.traceActions.push(best.kind === 'model' ? best.v.key : best.kind === 'lookup' ? `pld${best.k}` : best.kind);
      if (best.kind === 'lookup') {
        let at = best.leaf;
        for (let j = 0; j < best.k && at >= 0; j++) {
          const bi = lookupIndex(best.m.n, j + 1);
          const est = this.pld(bi, false);
          const i = this.addNode(tree, at, best.m.tokens[j], PROMPT_LOOKUP.key, PROMPT_LOOKUP.key, LOOKUP_BUCKETS[bi], est);
          if (i >= 0 && i === tree.size - 1) this.a[i] = est;
          at = i;
        }
        this.D += lookupCost;
        this.bump(PROMPT_LOOKUP.key);
      } else if (best.kind === 'recycle') {
        const i = this.addNode(tree, best.node, best.token, TOKEN_RECYCLING.key, best.track, best.bucket, best.est);
        this.recNext[best.node] = best.rank + 1;
        if (i >= 0 && i === tree.size - 1) this.a[i] = best.est;
        else if (i < 0) break; // the tree is full
      } else if (best.kind === 'sibling') {
        const pr = this.preds[best.node]!;
        const i = this.addNode(tree, best.node, pr.ids[best.rank], pr.v.key, best.track, best.bucket, best.est);
        pr.next++;
        if (i >= 0 && i === tree.size - 1) this.a[i] = best.est;
      } else {
        await this.modelStep(seq, tree, best.leaf, best.v, best.vi);
      }
      this.refresh(tree);
    }
    this.tDrafted = this.clock();
    this.stepBranches = this.branches;
    this.predictedVerify = this.verifyCost(tree.size);
    this.predictedStep = this.D + this.verifyCost(tree.size) + ovh;
    this.treeNodes += tree.size;
    if (this.trace) {
      this.trace({
        size: tree.size,
        expected: this.E,
        draftMs: this.D,
        verifyMs: this.verifyCost(tree.size),
        actions: this.traceActions,
        plainRate: 1 / (this.verifyCost(1) + ovh),
        rate: (1 + this.E) / this.predictedStep,
      });
      this.traceActions = [];
    }
  }

  /**
   * A model variant can only pay where its drafts come cheaper than the full model makes tokens: a
   * token it drafts is accepted with probability at most a_V (its rate) and costs a pass c_V, while
   * plain decoding makes a token per T(1). So a_V < c_V / T(1) means it never pays, and it is
   * dropped for this generation: at once when c_V >= T(1) (a launch-bound small model skipping
   * layers, a quantized pass slower than the full one), otherwise once more evidence than a warm
   * start carries (24 tokens) backs a_V, so each generation re-checks with its own text.
   */
  private pruneHopeless(): void {
    const lm = this.stepLm!;
    if (!lm.knows(0)) return;
    const t1 = this.verifyCost(1, 0);
    this.modelVariants.forEach((v, vi) => {
      if (this.disabled.has(v.key) || !lm.knows(v.quant)) return;
      const ratio = this.passCost(vi, 1, 1) / t1;
      if (ratio >= 1 || (this.tracker.evidence(v.key) >= 24 && this.tracker.rate(v.key) < ratio)) {
        this.disabled.add(v.key);
        this.pruned[v.key] = { costRatio: round3(ratio), rate: round3(this.tracker.rate(v.key)), atStep: this.steps };
      }
    });
  }

  /** Fills the per-step tables from the tracker and the decision latency model. */
  private prepareTables(lm: LatencyModel, ctx: number): void {
    const t = this.tracker;
    const nv = this.modelVariants.length;
    const nb = CONFIDENCE_BUCKETS.length;
    this.pldEst.fill(NaN);
    this.pldOpt.fill(NaN);
    if (this.vRate.length !== nv) {
      this.vRate = new Float64Array(nv);
      this.vFa = new Float64Array(nv);
      this.vFm = new Float64Array(nv);
      this.sibEst = new Float64Array(nv * 2 * nb);
      this.sibOpt = new Float64Array(nv * 2 * nb);
      this.passCostTable = new Float64Array(nv * 65);
    }
    this.modelVariants.forEach((v, vi) => {
      this.vRate[vi] = t.optimistic(v.key, '');
      const { fa, fm } = keptFractions(v.skip);
      this.vFa[vi] = fa;
      this.vFm[vi] = fm;
    });
    this.sibEst.fill(NaN);
    this.sibOpt.fill(NaN);
    this.passCostTable.fill(NaN);
    this.stepLm = lm;
    this.stepCtx = ctx;
  }

  /** Acceptance mass still free among node's children (their estimates sum to at most ~1). */
  private childRoom(tree: DraftTree, node: number): number {
    let used = 0;
    for (const c of tree.nodes[node].children) used += this.a[c];
    return Math.max(0, 0.999 - used);
  }

  /**
   * The step's expected tokens per ms if a child with acceptance estimate `est` that costs nothing
   * to draft (a sibling, a recycled successor) joins `node`: one more node to verify, and one more
   * branch unless node is a leaf.
   */
  private freeChildRate(tree: DraftTree, node: number, est: number, ovh: number): number {
    const b = this.branches + (tree.nodes[node].children.length > 0 ? 1 : 0);
    return (1 + this.E + this.p[node] * est) / (this.D + this.verifyCost(tree.size + 1, b) + ovh);
  }

  /** Predicted verification time of a tree of n nodes (cached per step). */
  private verifyCost(n: number, branches = this.branches): number {
    const i = branches * 66 + n;
    let c = this.tv[i];
    if (c !== c) this.tv[i] = c = this.stepLm!.predict({ n, nOut: n, ctx: this.stepCtx, fa: 1, fm: 1, quant: 0, branches });
    return c;
  }

  /** Prompt-lookup acceptance estimate of bucket b (optimistic: for decisions), cached per step. */
  private pld(b: number, optimistic: boolean): number {
    const tab = optimistic ? this.pldOpt : this.pldEst;
    let v = tab[b];
    if (v !== v) {
      v = optimistic ? this.tracker.optimistic(PROMPT_LOOKUP.key, LOOKUP_BUCKETS[b]) : this.tracker.estimate(PROMPT_LOOKUP.key, LOOKUP_BUCKETS[b]);
      tab[b] = v;
    }
    return v;
  }

  /** Estimate of a model token by table index (variant, alternative?, confidence bucket), cached per step. */
  private sib(t: number, optimistic: boolean): number {
    const tab = optimistic ? this.sibOpt : this.sibEst;
    let v = tab[t];
    if (v !== v) {
      const nb = CONFIDENCE_BUCKETS.length;
      const b = t % nb;
      const alt = Math.floor(t / nb) % 2;
      const key = this.modelVariants[Math.floor(t / (2 * nb))].key;
      const track = alt ? key + ':alt' : key;
      v = optimistic ? this.tracker.optimistic(track, CONFIDENCE_BUCKETS[b]) : this.tracker.estimate(track, CONFIDENCE_BUCKETS[b]);
      tab[t] = v;
    }
    return v;
  }

  /** Predicted time of a pass of variant vi over n tokens with nOut output rows (one row: cached). */
  private passCost(vi: number, n: number, nOut: number): number {
    const cacheable = nOut === 1 && n <= 64;
    if (cacheable) {
      const c = this.passCostTable[vi * 65 + n];
      if (c === c) return c; // not NaN
    }
    const v = this.modelVariants[vi];
    const c = this.stepLm!.predict({ n, nOut, ctx: this.stepCtx, fa: this.vFa[vi], fm: this.vFm[vi], quant: v.quant });
    if (cacheable) this.passCostTable[vi * 65 + n] = c;
    return c;
  }

  private bump(key: string): void {
    this.actionsByVariant.set(key, (this.actionsByVariant.get(key) ?? 0) + 1);
  }

  private lookup(tree: DraftTree, leaf: number, maxLen: number): LookupMatch | null {
    let m = this.lookups.get(leaf);
    if (m === undefined) {
      const t0 = this.clock();
      m = this.lookupAt(tree, leaf, this.o.maxLookup);
      this.lookupMs = 0.9 * this.lookupMs + 0.1 * Math.max(0.0005, this.clock() - t0);
      this.lookupHit = 0.95 * this.lookupHit + 0.05 * (m ? 1 : 0);
      this.lookups.set(leaf, m);
    }
    if (m && m.tokens.length > maxLen) return { n: m.n, tokens: m.tokens.slice(0, maxLen) };
    return m;
  }

  /** One pass of v from `leaf`: its argmax becomes a child; also checks unchecked lookup proposals on the path. */
  private async modelStep(
    seq: Sequence,
    tree: DraftTree,
    leaf: number,
    v: ModelVariant,
    vi: number,
  ): Promise<void> {
    const wantRow = (node: number): boolean => {
      if (this.checked[node] || this.preds[node]) return false;
      for (const c of tree.nodes[node].children) if (this.meta[c]?.track === PROMPT_LOOKUP.key) return true;
      return false;
    };
    const r = await this.pass(seq, tree, v, [leaf], this.o.topk, wantRow);
    if (!r) return;
    this.stepPasses++;
    this.stepPassMs += r.ms;
    if (v.ratio !== undefined) this.skipPassThisStep = true;
    this.D += this.passCost(vi, r.n, r.rows.length);
    this.bump(v.key);
    const k = r.topk;
    r.rows.forEach((node, row) => {
      const ids = r.out.topkIds!.slice(row * k, row * k + k);
      const probs = r.out.topkProbs!.slice(row * k, row * k + k);
      this.preds[node] = { v, vi, ids, probs, next: 0 };
      if (node === leaf) {
        const bi = confidenceIndex(probs[0]);
        const bucket = CONFIDENCE_BUCKETS[bi];
        const est = this.sib(vi * 2 * CONFIDENCE_BUCKETS.length + bi, false);
        const i = this.addNode(tree, leaf, ids[0], v.key, v.key, bucket, est);
        if (i >= 0 && i === tree.size - 1) this.a[i] = est;
        this.preds[node]!.next = 1;
      } else {
        // Vertical cascade evidence: does v agree with the lookup proposal below this node?
        this.checked[node] = 1;
        for (const c of tree.nodes[node].children) {
          const m = this.meta[c];
          if (m?.track !== PROMPT_LOOKUP.key || m.bucket.includes('|')) continue;
          m.bucket = `${m.bucket}|${v.key}:${tree.nodes[c].token === ids[0] ? 'y' : 'n'}`;
          this.a[c] = this.tracker.estimate(m.track, m.bucket);
        }
      }
    });
  }

  /** Recomputes cumulative probabilities, E and the branch count (parents come before children). */
  private refresh(tree: DraftTree): void {
    let E = 0;
    let leaves = tree.nodes[0].children.length === 0 ? 1 : 0;
    const nodes = tree.nodes;
    for (let i = 1; i < nodes.length; i++) {
      this.p[i] = this.p[nodes[i].parent] * this.a[i];
      E += this.p[i];
      if (nodes[i].children.length === 0) leaves++;
    }
    this.E = E;
    this.branches = leaves - 1;
  }

  protected onPass(v: ModelVariant, r: PassResult, ctx: number): void {
    if (!this.lm) return;
    const { fa, fm } = keptFractions(v.skip);
    const shape: PassShape = { n: r.n, nOut: r.rows.length, ctx, fa, fm, quant: v.quant };
    this.draftErr.push(this.lm.predict(shape), r.ms);
    this.lm.observe(shape, r.ms, 'draft');
  }

  observe(tree: DraftTree, verdict: Verdict, seq: Sequence): void {
    super.observe(tree, verdict, seq);
    const vt = verdict.topk;
    if (this.succ && vt) for (let i = 0; i < tree.size; i++) this.succ.record(tree.nodes[i].token, vt.ids, vt.probs, i * vt.k, vt.k);
    if (!this.decided || !this.lm) return;
    this.decided = false;
    const now = this.clock();
    const verifyMs = now - this.tDrafted;
    const draftMs = this.tDrafted - this.tGrow;
    this.verifyErr.push(this.predictedVerify, verifyMs);
    this.stepErr.push(this.predictedStep, draftMs + verifyMs);
    if (this.recentSteps.length >= 8) this.recentSteps.shift();
    this.recentSteps.push({ predictedMs: round3(this.predictedStep), measuredMs: round3(draftMs + verifyMs), nodes: tree.size, accepted: verdict.path.length - 1 });
    // A sampling step's verification includes TS work over the vocabulary (softmax, top-p) that
    // greedy steps do not have: only greedy steps refine the (shared) model of verification time.
    if (!this.lastReproducible)
      this.lm.observe({ n: tree.size, nOut: tree.size, ctx: this.stepCtx, fa: 1, fm: 1, quant: 0, branches: this.stepBranches }, verifyMs, 'verify');
    this.overhead = 0.9 * this.overhead + 0.1 * Math.max(0, draftMs - this.stepPassMs);
    this.demand += ((this.skipPassThisStep ? 1 : 0) - this.demand) / 16;
    this.skipPassThisStep = false;
    if (!(this.reproducibleOpt ?? this.lastReproducible)) perCascade(demandByModel, this.env.model).set(this.cascadeKey, this.demand);
    this.steps++;
    if (!(this.reproducibleOpt ?? this.lastReproducible) && this.steps % 8 === 0) perCascade(knowledge, this.env.model).set(this.cascadeKey, this.tracker.knowledge());
    const shared = this.key ? liveModels.get(this.key) : undefined;
    if (shared && shared.lm === this.lm && ++shared.steps % 256 === 0 && this.persist) storeCached(this.key!, this.lm);
  }

  protected planDemand(): number {
    return this.demand;
  }

  stats(): Record<string, unknown> {
    const s = super.stats();
    const pct = (e: ErrorLog) => (e.count > 0 ? round3(100 * e.median()) : null);
    return {
      ...s,
      dytc: {
        steps: this.steps,
        meanTreeSize: this.steps > 0 ? round3(this.treeNodes / this.steps) : 0,
        actions: { ...this.actions },
        passesByVariant: Object.fromEntries(this.actionsByVariant),
        disabled: [...this.disabled],
        pruned: this.pruned,
      },
      latency: {
        calibration: this.calibration,
        samples: this.lm?.sampleCount(0) ?? 0,
        verifyMedianAbsPctErr: pct(this.verifyErr),
        draftPassMedianAbsPctErr: pct(this.draftErr),
        stepMedianAbsPctErr: pct(this.stepErr),
        overheadMs: round3(this.overhead),
        /** Predicted verification ms of a chain of n = 1, 2, 4, 8, 16, 32 at the last step's cache length. */
        costCurve: this.lm?.knows(0) ? [1, 2, 4, 8, 16, 32].map((n) => round3(this.lm!.predict({ n, nOut: n, ctx: this.stepCtx, fa: 1, fm: 1, quant: 0 }))) : null,
        recentSteps: this.recentSteps,
      },
    };
  }
}
