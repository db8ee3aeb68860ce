// The baseline drafting strategies (each a fixed policy; `cas-spec` in ts/cascade/ routes
// adaptively among the same variants):
//   pld            prompt lookup: a chain copied from the latest earlier match of the last 3..1 tokens
//   layerskip      SWIFT-like: one searched layer-skip variant drafts a chain, stopping when the
//                  calibrated acceptance of the chain so far falls below a threshold
//   layerskip-tree the same variant grows a dynamic tree (best-first over top-k children)
//   static-tree    the same variant fills a fixed tree shape (ranks of top-k children per depth)
//   vc             vertical cascade: prompt lookup (else the cheaper ls60) proposes tokens for
//                  ls40, ls40 checks them in one pass and continues from where it disagrees
//   hc             horizontal cascade: ls40 drafts the first positions, ls60 the next, prompt
//                  lookup the tail
import type { StrategyEnv } from '../registry.js';
import type { Sequence } from '../sequence.js';
import type { DraftTree } from '../tree.js';
import { confidenceBucket, lookupBucket } from '../../cascade/acceptance.js';
import { layerSkipVariant, PROMPT_LOOKUP, type ModelVariant } from '../variants.js';
import { DraftingStrategy, type BaseOptions, type PassResult } from './base.js';

const PLD = PROMPT_LOOKUP.key;

export interface PldOptions extends BaseOptions {
  /** Longest proposal (default 10). */
  maxDraft?: number;
}

export class PldStrategy extends DraftingStrategy {
  readonly name = 'pld';
  private readonly maxDraft: number;
  constructor(env: StrategyEnv, opts: PldOptions = {}) {
    super(env, [], { ...opts, search: false });
    this.maxDraft = opts.maxDraft ?? 10;
  }
  protected async grow(_seq: Sequence, tree: DraftTree): Promise<void> {
    this.addLookup(tree, 0, this.maxDraft);
  }
  /** Adds a prompt-lookup chain under `leaf`; returns the last node added (or leaf). */
  protected addLookup(tree: DraftTree, leaf: number, maxLen: number): number {
    const m = this.lookupAt(tree, leaf, Math.min(maxLen, this.limit - tree.size));
    if (!m) return leaf;
    let at = leaf;
    m.tokens.forEach((t, j) => {
      const b = lookupBucket(m.n, j + 1);
      const i = at < 0 ? -1 : this.addNode(tree, at, t, PLD, PLD, b, this.tracker.estimate(PLD, b));
      at = i;
    });
    return at < 0 ? leaf : at;
  }
}

/** Token and top-1 probability of output row r. */
function rowTop(r: PassResult, row: number): { token: number; prob: number } {
  const token = r.out.argmax[row];
  const prob = r.topk > 0 && r.out.topkProbs ? r.out.topkProbs[row * r.topk] : 1;
  return { token, prob };
}

export interface LayerSkipOptions extends BaseOptions {
  /** Fraction of sub-layers skipped (default 0.4). */
  ratio?: number;
  /** Longest chain (default 10). */
  maxDraft?: number;
  /** Stop when the chain's estimated probability of full acceptance drops below this (default 0.3). */
  stopBelow?: number;
}

export class LayerSkipStrategy extends DraftingStrategy {
  readonly name: string = 'layerskip';
  protected readonly v: ModelVariant;
  protected readonly maxDraft: number;
  protected readonly stopBelow: number;
  constructor(env: StrategyEnv, opts: LayerSkipOptions = {}) {
    const v = layerSkipVariant(env.numLayers, opts.ratio ?? 0.4);
    super(env, [v], opts);
    this.v = v;
    this.maxDraft = opts.maxDraft ?? 10;
    this.stopBelow = opts.stopBelow ?? 0.3;
  }
  protected async grow(seq: Sequence, tree: DraftTree): Promise<void> {
    let leaf = 0;
    let cum = 1;
    for (let d = 0; d < this.maxDraft && tree.size < this.limit; d++) {
      const r = await this.pass(seq, tree, this.v, [leaf], 1);
      if (!r) return;
      const { token, prob } = rowTop(r, 0);
      const b = confidenceBucket(prob);
      const a = this.tracker.estimate(this.v.key, b);
      const child = this.addNode(tree, leaf, token, this.v.key, this.v.key, b, a);
      if (child < 0) return;
      leaf = child;
      cum *= a;
      if (cum < this.stopBelow) return;
    }
  }
}

export interface TreeOptions extends LayerSkipOptions {
  /** Nodes expanded per depth (default 4). */
  beam?: number;
  /** Children considered per expanded node (default 4). */
  branch?: number;
  /** Largest tree for this strategy (default 40). */
  treeNodes?: number;
  /** Drop candidates whose estimated path probability is below this (default 0.04). */
  minScore?: number;
}

/** Best-first dynamic tree from one layer-skip variant (EAGLE-2 style expansion). */
export class LayerSkipTreeStrategy extends DraftingStrategy {
  readonly name = 'layerskip-tree';
  private readonly v: ModelVariant;
  private readonly o: Required<Pick<TreeOptions, 'beam' | 'branch' | 'treeNodes' | 'minScore' | 'maxDraft'>>;
  private score: number[] = [];
  constructor(env: StrategyEnv, opts: TreeOptions = {}) {
    const v = layerSkipVariant(env.numLayers, opts.ratio ?? 0.4);
    super(env, [v], opts);
    this.v = v;
    this.o = { beam: opts.beam ?? 4, branch: opts.branch ?? 4, treeNodes: opts.treeNodes ?? 40, minScore: opts.minScore ?? 0.04, maxDraft: opts.maxDraft ?? 8 };
  }
  protected async grow(seq: Sequence, tree: DraftTree): Promise<void> {
    const limit = Math.min(this.limit, this.o.treeNodes);
    this.score = [1];
    let frontier = [0];
    const key = this.v.key;
    for (let depth = 0; depth < this.o.maxDraft && frontier.length > 0 && tree.size < limit; depth++) {
      const r = await this.pass(seq, tree, this.v, frontier, this.o.branch);
      if (!r) return;
      const cands: { parent: number; token: number; score: number; track: string; bucket: string; a: number }[] = [];
      r.rows.forEach((node, row) => {
        for (let k = 0; k < r.topk; k++) {
          const token = r.out.topkIds![row * r.topk + k];
          const prob = r.out.topkProbs![row * r.topk + k];
          const track = k === 0 ? key : key + ':alt';
          const bucket = confidenceBucket(prob);
          const a = this.tracker.estimate(track, bucket);
          const score = this.score[node] * a;
          if (score >= this.o.minScore) cands.push({ parent: node, token, score, track, bucket, a });
        }
      });
      cands.sort((x, y) => y.score - x.score);
      const next: number[] = [];
      for (const c of cands) {
        if (tree.size >= limit) break;
        const before = tree.size;
        const i = this.addNode(tree, c.parent, c.token, key, c.track, c.bucket, c.a);
        if (i < 0 || tree.size === before) continue;
        this.score[i] = c.score;
        if (next.length < this.o.beam) next.push(i);
      }
      frontier = next;
    }
  }
}

/** A fixed tree shape: each entry is the path of top-k ranks from the root (parents listed first). */
export const DEFAULT_STATIC_SHAPE: number[][] = [
  [0], [1], [2], [3],
  [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0],
  [0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0],
  [0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0],
  [0, 0, 0, 0, 0], [0, 0, 0, 0, 1],
  [0, 0, 0, 0, 0, 0],
  [0, 0, 0, 0, 0, 0, 0],
];

export interface StaticTreeOptions extends LayerSkipOptions {
  shape?: number[][];
}

export class StaticTreeStrategy extends DraftingStrategy {
  readonly name = 'static-tree';
  private readonly v: ModelVariant;
  private readonly shape: number[][];
  constructor(env: StrategyEnv, opts: StaticTreeOptions = {}) {
    const v = layerSkipVariant(env.numLayers, opts.ratio ?? 0.4);
    super(env, [v], opts);
    this.v = v;
    this.shape = opts.shape ?? DEFAULT_STATIC_SHAPE;
  }
  protected async grow(seq: Sequence, tree: DraftTree): Promise<void> {
    const nodeOf = new Map<string, number>([['', 0]]);
    const maxDepth = Math.max(...this.shape.map((p) => p.length));
    const key = this.v.key;
    for (let d = 1; d <= maxDepth && tree.size < this.limit; d++) {
      const level = this.shape.filter((p) => p.length === d && nodeOf.has(p.slice(0, -1).join(',')));
      if (level.length === 0) break;
      const parents = [...new Set(level.map((p) => nodeOf.get(p.slice(0, -1).join(','))!))].sort((a, b) => a - b);
      const topk = Math.min(16, Math.max(...level.map((p) => p[p.length - 1])) + 1);
      const r = await this.pass(seq, tree, this.v, parents, topk);
      if (!r) return;
      for (const p of level) {
        const parent = nodeOf.get(p.slice(0, -1).join(','))!;
        const row = r.rows.indexOf(parent);
        const rank = p[p.length - 1];
        const token = r.out.topkIds![row * topk + rank];
        const prob = r.out.topkProbs![row * topk + rank];
        const track = rank === 0 ? key : key + ':alt';
        const bucket = confidenceBucket(prob);
        const before = tree.size;
        const i = this.addNode(tree, parent, token, key, track, bucket, this.tracker.estimate(track, bucket));
        if (i < 0) return;
        if (tree.size > before) nodeOf.set(p.join(','), i);
      }
    }
  }
}

export interface CascadeOptions extends BaseOptions {
  /** Longest main chain (default 10). */
  maxDraft?: number;
  /** Stop when the main chain's estimated probability of full acceptance drops below this (default 0.25). */
  stopBelow?: number;
}

/**
 * Vertical cascade: the bottom draft (prompt lookup, else ls60 for a couple of tokens) proposes
 * tokens for ls40; one ls40 pass over the proposals keeps the prefix it agrees with and adds its
 * own token where it disagrees; repeat. Proposals ls40 rejected stay in the tree as side branches
 * (the full model may still take them).
 */
export class VerticalCascadeStrategy extends DraftingStrategy {
  readonly name = 'vc';
  private readonly top: ModelVariant;
  private readonly mid: ModelVariant;
  private readonly maxDraft: number;
  private readonly stopBelow: number;
  constructor(env: StrategyEnv, opts: CascadeOptions = {}) {
    const top = layerSkipVariant(env.numLayers, 0.4);
    const mid = layerSkipVariant(env.numLayers, 0.6);
    super(env, [top, mid], opts);
    this.top = top;
    this.mid = mid;
    this.maxDraft = opts.maxDraft ?? 10;
    this.stopBelow = opts.stopBelow ?? 0.25;
  }
  protected async grow(seq: Sequence, tree: DraftTree): Promise<void> {
    let leaf = 0;
    let cum = 1;
    while (tree.nodes[leaf].depth < this.maxDraft && tree.size < this.limit && cum >= this.stopBelow) {
      // Bottom level: prompt lookup proposals, else the cheaper layer-skip plan drafts two tokens.
      const proposals: number[] = [];
      const m = this.lookupAt(tree, leaf, Math.min(4, this.maxDraft - tree.nodes[leaf].depth));
      let at = leaf;
      if (m) {
        m.tokens.forEach((t, j) => {
          if (at < 0) return;
          const b = lookupBucket(m.n, j + 1);
          at = this.addNode(tree, at, t, PLD, PLD, b, this.tracker.estimate(PLD, b));
          if (at >= 0) proposals.push(at);
        });
      } else {
        for (let j = 0; j < 2 && tree.size < this.limit - 1; j++) {
          const r = await this.pass(seq, tree, this.mid, [at], 1);
          if (!r) break;
          const { token, prob } = rowTop(r, 0);
          const b = confidenceBucket(prob);
          const i = this.addNode(tree, at, token, this.mid.key, this.mid.key, b, this.tracker.estimate(this.mid.key, b));
          if (i < 0) break;
          proposals.push((at = i));
        }
      }
      // Top level: one ls40 pass over the leaf and its proposals.
      const targets = [leaf, ...proposals];
      const r = await this.pass(seq, tree, this.top, targets, 1);
      if (!r) return;
      let cur = leaf;
      let row = 0;
      for (;;) {
        const { token, prob } = rowTop(r, row);
        const next = tree.childWithToken(cur, token);
        const expected = row + 1 < targets.length ? targets[row + 1] : -1;
        if (next >= 0 && next === expected) {
          // ls40 agrees with the proposal: it becomes part of the main chain.
          cum *= this.tracker.estimate(this.meta[next].track, this.meta[next].bucket);
          cur = next;
          row++;
          continue;
        }
        // Disagreement (or the end of the proposals): ls40's own token continues the chain.
        const b = confidenceBucket(prob);
        const a = this.tracker.estimate(this.top.key, b);
        const i = this.addNode(tree, cur, token, this.top.key, this.top.key, b, a);
        if (i < 0) return;
        cum *= a;
        leaf = i;
        break;
      }
    }
  }
}

/** Horizontal cascade: better (costlier) drafts for the early positions, cheaper ones later. */
export class HorizontalCascadeStrategy extends DraftingStrategy {
  readonly name = 'hc';
  private readonly levels: { v: ModelVariant; upTo: number }[];
  private readonly maxDraft: number;
  private readonly stopBelow: number;
  constructor(env: StrategyEnv, opts: CascadeOptions = {}) {
    const top = layerSkipVariant(env.numLayers, 0.4);
    const mid = layerSkipVariant(env.numLayers, 0.6);
    super(env, [top, mid], opts);
    this.levels = [
      { v: top, upTo: 2 },
      { v: mid, upTo: 5 },
    ];
    this.maxDraft = opts.maxDraft ?? 10;
    this.stopBelow = opts.stopBelow ?? 0.25;
  }
  protected async grow(seq: Sequence, tree: DraftTree): Promise<void> {
    let leaf = 0;
    let cum = 1;
    for (const { v, upTo } of this.levels) {
      while (tree.nodes[leaf].depth < Math.min(upTo, this.maxDraft) && tree.size < this.limit && cum >= this.stopBelow) {
        const r = await this.pass(seq, tree, v, [leaf], 1);
        if (!r) break;
        const { token, prob } = rowTop(r, 0);
        const b = confidenceBucket(prob);
        const a = this.tracker.estimate(v.key, b);
        const i = this.addNode(tree, leaf, token, v.key, v.key, b, a);
        if (i < 0) return;
        leaf = i;
        cum *= a;
      }
    }
    // Tail: prompt lookup, free to draft.
    if (cum < this.stopBelow) return;
    const m = this.lookupAt(tree, leaf, Math.min(this.maxDraft - tree.nodes[leaf].depth, this.limit - tree.size));
    if (!m) return;
    let at = leaf;
    m.tokens.forEach((t, j) => {
      if (at < 0) return;
      const b = lookupBucket(m.n, j + 1);
      at = this.addNode(tree, at, t, PLD, PLD, b, this.tracker.estimate(PLD, b));
    });
  }
}
