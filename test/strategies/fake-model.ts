// A deterministic toy "model" behind the NativeContext / NativeModel interfaces, for unit tests of
// drafting strategies without the native addon. It keeps the engine's slot semantics and checks
// (native/engine/context.cpp): pending tokens form a tree in slots above `committed`, a parent
// must be pending or in the same batch, a slot may only be re-forwarded with the same parent, a
// full-model forward may only attend to ancestors the full model computed, commit needs exact
// slots, and one operation at a time (E_BUSY).
//
// Its "full model": logits over a small vocabulary are a hash of the context. Two regimes,
// picked by the first prompt token:
//   - n-gram (any first token but 1): logits depend on the last `order` tokens only, so text
//     repeats and prompt lookup works well;
//   - positional (first token 1): logits depend on the position and the last token, so earlier
//     text says nothing about what comes next (prompt lookup is useless).
// Draft variants (skip plans, quant modes) add hashed noise whose size grows with the importance of
// the skipped sub-layers, so drafts agree with the full model less often the more they skip, and
// a skip-plan search has something to find.
import type { ForwardOutput, ForwardRequest, NativeContext, NativeModel, NativeModelInfo } from '../../ts/native.js';

export interface FakeSpec {
  vocab: number;
  numLayers: number;
  /** n-gram regime: how many previous tokens the next-token logits depend on. */
  order: number;
  /** Logit scale: larger = more peaked distributions. */
  sharpness: number;
  /** Noise scale of a draft that skips everything. */
  draftNoise: number;
  /** Importance of each sub-layer (2 per layer); default: middle layers cheap, ends important. */
  importance?: number[];
  /** Quant modes the fake accepts (others are rejected like an unsupported backend mode). */
  quantModes?: number[];
  /** Virtual time (ms) of a forward: base + perToken * n + perCtx * ctx, scaled by kept sub-layers. */
  cost?: { base: number; perToken: number; perCtx: number; perOut: number; draftScale?: number };
}

export const defaultSpec: FakeSpec = {
  vocab: 64,
  numLayers: 8,
  order: 2,
  sharpness: 3,
  draftNoise: 4,
  quantModes: [1],
  cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01 },
};

function mix(h: number, x: number): number {
  h = Math.imul(h ^ x, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca77);
  h ^= h >>> 13;
  return h >>> 0;
}

/** Approximately standard normal value from a 32-bit hash (sum of uniforms). */
function gauss(h: number): number {
  let s = 0;
  for (let i = 0; i < 4; i++) {
    h = mix(h, i + 1);
    s += h / 4294967296;
  }
  return (s - 2) * Math.sqrt(3);
}

const FREE = -2;

export class FakeModel implements NativeModel {
  readonly spec: FakeSpec;
  readonly importance: number[];
  /** Virtual clock, advanced by every forward (tests inject it into strategies). */
  clockMs = 0;
  forwards = 0;
  tokensForwarded = 0;
  contextsCreated = 0;
  liveContexts = 0;
  disposed = false;

  constructor(spec: Partial<FakeSpec> = {}) {
    this.spec = { ...defaultSpec, ...spec };
    const L = this.spec.numLayers;
    this.importance =
      this.spec.importance ??
      Array.from({ length: 2 * L }, (_, j) => {
        const layer = j >> 1;
        const mid = Math.abs(layer - (L - 1) / 2) / ((L - 1) / 2); // 0 in the middle, 1 at the ends
        const wobble = (mix(12345, j) % 1000) / 1000; // some sub-layers matter more than others
        return 0.2 + 0.8 * mid * mid + 0.6 * wobble * (j % 2 === 0 ? 1 : 0.5);
      });
  }

  now = (): number => this.clockMs;

  tensorSpecs(): { name: string; shape: number[] }[] {
    return [];
  }
  async setTensor(): Promise<void> {}
  async fillDummy(): Promise<void> {}
  async createContext(capacity: number): Promise<NativeContext> {
    if (this.disposed) throw Object.assign(new Error('this model was disposed'), { code: 'E_DISPOSED' });
    this.contextsCreated++;
    this.liveContexts++;
    return new FakeContext(this, capacity);
  }
  info(): NativeModelInfo {
    return { backend: 'cpu', device: `fake-${this.spec.vocab}-${this.spec.numLayers}`, weightBytes: 1000, kvBytesPerSlot: 10 };
  }
  dispose(): void {
    this.disposed = true;
  }

  /** Noise scale of a pass: 0 for the full model. */
  noiseOf(skip: Uint8Array | undefined, quant: number): number {
    let w = 0;
    let total = 0;
    for (let j = 0; j < this.importance.length; j++) {
      total += this.importance[j];
      if (skip && skip[j]) w += this.importance[j];
    }
    let noise = (this.spec.draftNoise * w) / total;
    if (quant) noise += 0.35 * quant;
    return noise;
  }

  /** Cost fraction of a pass (kept sub-layers), for the virtual clock. */
  costFraction(skip: Uint8Array | undefined, quant: number): number {
    const L2 = 2 * this.spec.numLayers;
    let kept = L2;
    if (skip) for (let j = 0; j < L2; j++) if (skip[j]) kept--;
    const f = (0.15 + (0.85 * kept) / L2) * (quant ? 0.6 : 1);
    return f < 1 ? f * (this.spec.cost?.draftScale ?? 1) : f;
  }

  /** Full-model logits for a context (the whole token history before the next token). */
  fullLogits(context: ArrayLike<number>, out: Float32Array): void {
    const V = this.spec.vocab;
    const n = context.length;
    let h = 0x2545f491;
    if (n > 0 && context[0] === 1) {
      h = mix(mix(h, n), context[n - 1]);
    } else {
      h = mix(h, 7);
      for (let i = Math.max(0, n - this.spec.order); i < n; i++) h = mix(h, context[i] + 1);
    }
    for (let v = 0; v < V; v++) out[v] = this.spec.sharpness * gauss(mix(h, v + 101));
  }

  /** Logits of a pass with the given noise (0 = full model). */
  logits(context: ArrayLike<number>, noise: number, out: Float32Array): void {
    this.fullLogits(context, out);
    if (noise === 0) return;
    let h = 0x7f4a7c15;
    const n = context.length;
    for (let i = Math.max(0, n - 3); i < n; i++) h = mix(h, context[i] + 1);
    h = mix(h, n);
    for (let v = 0; v < out.length; v++) out[v] += noise * this.spec.sharpness * 0.5 * gauss(mix(h, v + 977));
  }
}

export class FakeContext implements NativeContext {
  private committedN = 0;
  private busy = false;
  private disposed = false;
  private readonly tokenAt: Int32Array;
  private readonly parent: Int32Array;
  private readonly exact: Uint8Array;
  private pendingSlots: number[] = [];

  constructor(
    readonly model: FakeModel,
    readonly capacity: number,
  ) {
    this.tokenAt = new Int32Array(capacity);
    this.parent = new Int32Array(capacity).fill(FREE);
    this.exact = new Uint8Array(capacity);
  }

  get committed(): number {
    return this.committedN;
  }

  private enter(): void {
    if (this.disposed) throw Object.assign(new Error('this context was disposed'), { code: 'E_DISPOSED' });
    if (this.busy) throw Object.assign(new Error('another operation is still running on this context'), { code: 'E_BUSY' });
    this.busy = true;
  }

  private async run<T>(f: () => T): Promise<T> {
    this.enter();
    try {
      await Promise.resolve();
      return f();
    } finally {
      this.busy = false;
    }
  }

  forward(req: ForwardRequest): Promise<ForwardOutput> {
    return this.run(() => {
      if (req.commit?.length) this.commitSync(req.commit); // as native: commit first, same call
      return this.forwardSync(req);
    });
  }

  commit(path: Int32Array): Promise<void> {
    return this.run(() => this.commitSync(path));
  }

  private commitSync(path: Int32Array): void {
    {
      const k = path.length;
      bad(this.committedN + k <= this.capacity, 'commit path is longer than the context');
      for (let j = 0; j < k; j++) {
        const s = path[j];
        bad(s >= this.committedN && s < this.capacity && this.parent[s] !== FREE, `commit: slot ${s} holds no pending token`);
        bad(this.parent[s] === (j === 0 ? -1 : path[j - 1]), `commit: slots must form a chain (slot ${s})`);
        bad(this.exact[s] === 1, `commit: slot ${s} was not computed by the full model`);
      }
      const toks = Array.from(path, (s) => this.tokenAt[s]);
      for (const s of this.pendingSlots) this.parent[s] = FREE;
      this.pendingSlots = [];
      for (let j = 0; j < k; j++) {
        this.tokenAt[this.committedN + j] = toks[j];
        this.exact[this.committedN + j] = 1;
      }
      this.committedN += k;
    }
  }

  truncate(n: number): Promise<void> {
    return this.run(() => {
      bad(Number.isInteger(n) && n >= 0 && n <= this.committedN, `truncate: length ${n} must be in 0..${this.committedN}`);
      for (const s of this.pendingSlots) this.parent[s] = FREE;
      this.pendingSlots = [];
      this.committedN = n;
    });
  }

  dispose(): void {
    if (!this.disposed) this.model.liveContexts--;
    this.disposed = true;
  }

  private forwardSync(a: ForwardRequest): ForwardOutput {
    const m = this.model;
    const L = m.spec.numLayers;
    const V = m.spec.vocab;
    const n = a.tokens.length;
    bad(n > 0, 'forward needs at least one token');
    bad(a.slots.length === n && a.parents.length === n, 'tokens, slots and parents must have the same length');
    bad(!a.skip || a.skip.length === 0 || a.skip.length === 2 * L, `skip plan must have ${2 * L} entries`);
    const topk = a.topk ?? 0;
    bad(topk >= 0 && topk <= 16, 'topk must be in 0..16');
    const quant = a.quant ?? 0;
    bad(quant >= 0, 'quant mode must be >= 0');
    if (quant !== 0) bad((m.spec.quantModes ?? []).includes(quant), `quantized forward mode ${quant} is not available on this backend`);
    const rows = a.outRows && a.outRows.length > 0 ? Array.from(a.outRows) : Array.from({ length: n }, (_, i) => i);
    for (let r = 0; r < rows.length; r++) bad(rows[r] >= 0 && rows[r] < n && (r === 0 || rows[r] > rows[r - 1]), 'outRows must be ascending');
    const full = quant === 0 && !(a.skip && a.skip.some((s) => s !== 0));
    for (let i = 0; i < n; i++) {
      const t = a.tokens[i];
      const s = a.slots[i];
      const p = a.parents[i];
      bad(t >= 0 && t < V, `token id ${t} is outside the vocabulary`);
      bad(s >= this.committedN && s < this.capacity, `slot ${s} must be in ${this.committedN}..${this.capacity - 1}`);
      bad(p === -1 || (p >= this.committedN && p < s), `parent slot ${p} must be -1 or a pending slot below ${s}`);
      for (let j = 0; j < i; j++) bad(a.slots[j] !== s, `slot ${s} is used twice`);
      if (p >= 0) {
        let inBatch = false;
        for (let j = 0; j < i; j++) inBatch ||= a.slots[j] === p;
        bad(inBatch || this.parent[p] !== FREE, `parent slot ${p} holds no pending token`);
      }
      if (this.parent[s] !== FREE) bad(this.parent[s] === p, `slot ${s} is already pending with another parent`);
    }
    for (let i = 0; i < n; i++) {
      const s = a.slots[i];
      if (this.parent[s] === FREE) this.pendingSlots.push(s);
      this.parent[s] = a.parents[i];
      this.tokenAt[s] = a.tokens[i];
    }
    const inBatch = new Set(Array.from(a.slots));
    const contexts: number[][] = [];
    for (let i = 0; i < n; i++) {
      const chain: number[] = [];
      for (let s = a.slots[i]; s >= 0; s = this.parent[s]) chain.push(s);
      if (full)
        for (let k = 1; k < chain.length; k++)
          bad(inBatch.has(chain[k]) || this.exact[chain[k]] === 1, `full-model forward of slot ${a.slots[i]} would attend to slot ${chain[k]} whose KV came from a draft pass`);
      const ctxTokens: number[] = [];
      for (let j = 0; j < this.committedN; j++) ctxTokens.push(this.tokenAt[j]);
      for (let k = chain.length - 1; k >= 0; k--) ctxTokens.push(this.tokenAt[chain[k]]);
      contexts.push(ctxTokens);
    }
    for (let i = 0; i < n; i++) this.exact[a.slots[i]] = full ? 1 : 0;

    const noise = m.noiseOf(a.skip, quant);
    const out: ForwardOutput = { argmax: new Int32Array(rows.length) };
    if (a.wantLogits) out.logits = new Float32Array(rows.length * V);
    if (topk > 0) {
      out.topkIds = new Int32Array(rows.length * topk);
      out.topkProbs = new Float32Array(rows.length * topk);
    }
    const row = new Float32Array(V);
    rows.forEach((bi, r) => {
      m.logits(contexts[bi], noise, row);
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
      out.argmax[r] = best;
      if (out.logits) out.logits.set(row, r * V);
      if (topk > 0) {
        let sum = 0;
        const mx = row[best];
        const p = new Float64Array(V);
        for (let v = 0; v < V; v++) sum += p[v] = Math.exp(row[v] - mx);
        const order = Array.from({ length: V }, (_, v) => v).sort((x, y) => p[y] - p[x] || x - y);
        for (let k = 0; k < topk; k++) {
          out.topkIds![r * topk + k] = order[k];
          out.topkProbs![r * topk + k] = p[order[k]] / sum;
        }
      }
    });
    m.forwards++;
    m.tokensForwarded += n;
    const c = m.spec.cost;
    if (c) m.clockMs += (c.base + c.perToken * n + c.perCtx * this.committedN * n + c.perOut * rows.length) * m.costFraction(a.skip, quant);
    return out;
  }
}

function bad(ok: boolean, msg: string): void {
  if (!ok) throw Object.assign(new Error(msg), { code: 'E_INVALID_ARG' });
}

/** Plain greedy continuation straight from the fake's full model (the reference output). */
export function fakeGreedy(model: FakeModel, prompt: number[], count: number): number[] {
  const ctx = [...prompt];
  const row = new Float32Array(model.spec.vocab);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    model.fullLogits(ctx, row);
    let best = 0;
    for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
    out.push(best);
    ctx.push(best);
  }
  return out;
}
