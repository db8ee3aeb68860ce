// One generation's state: the token history, and its KV cache in a native context.
// Invariant between steps: every token but the last is committed to the cache (the last step's
// accepted path by the next forward, in the same native call); the last one (the "pending" token,
// the root of the next draft tree) is known but not yet forwarded.
import { CasspecError, fromNative } from '../errors.js';
import type { ForwardOutput, ForwardRequest, NativeContext } from '../native.js';
import type { DraftTree } from './tree.js';

/** Prompt tokens per prefill forward ($CASSPEC_PREFILL_CHUNK overrides, for tuning). */
export const PREFILL_CHUNK = 256;
function prefillChunk(): number {
  const v = Number(process.env.CASSPEC_PREFILL_CHUNK);
  return Number.isInteger(v) && v > 0 ? v : PREFILL_CHUNK;
}

export interface PassOptions {
  skip?: Uint8Array;
  quant?: number;
  topk?: number;
  wantLogits?: boolean;
  /** Rows of this pass whose outputs are wanted (ascending); default all. */
  outRows?: Int32Array;
}

export class Sequence {
  readonly tokens: number[] = [];
  /** Native forward passes run, for statistics. */
  forwards = 0;
  /**
   * Slots the last step accepted, committed by the next forward in the same native call: a
   * decoding step is then one round trip to the native side, not two. Until then `committed`
   * already counts them, so slots are numbered as if the commit had happened.
   */
  private toCommit: Int32Array | undefined;

  constructor(
    readonly ctx: NativeContext,
    readonly numLayers: number,
    private readonly signal?: AbortSignal,
  ) {}

  get committed(): number {
    return this.ctx.committed + (this.toCommit?.length ?? 0);
  }

  get pending(): number {
    return this.tokens[this.tokens.length - 1];
  }

  checkAborted(): void {
    if (this.signal?.aborted) throw new CasspecError('E_ABORTED', 'generation was aborted', { cause: this.signal.reason });
  }

  /**
   * Forwards the prompt, commits it (the last chunk with the next forward), and returns the outputs
   * of its last position. Long prompts go in chunks, each committed before the next (in the next
   * chunk's call): later chunks then attend to a contiguous committed
   * prefix instead of carrying every earlier prompt token as a tree ancestor. Batch invariance
   * makes the chunk size invisible in the results.
   */
  async prefill(prompt: number[], opts: PassOptions): Promise<ForwardOutput> {
    const chunk = prefillChunk();
    let out: ForwardOutput | undefined;
    for (let start = 0; start < prompt.length; start += chunk) {
      this.checkAborted();
      const piece = prompt.slice(start, start + chunk);
      const n = piece.length;
      const base = this.committed;
      const slots = Int32Array.from({ length: n }, (_, i) => base + i);
      const parents = Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : base + i - 1));
      this.forwards++;
      out = await this.pass({ tokens: Int32Array.from(piece), slots, parents, outRows: Int32Array.of(n - 1), ...opts });
      this.toCommit = slots;
    }
    this.tokens.push(...prompt);
    return out!;
  }

  /** Runs one forward pass over the given tree nodes (each node's parent must be in this pass or already computed). */
  async forwardNodes(tree: DraftTree, nodes: number[], opts: PassOptions, variant: string): Promise<ForwardOutput> {
    this.checkAborted();
    const base = this.committed;
    const tokens = new Int32Array(nodes.length);
    const slots = new Int32Array(nodes.length);
    const parents = new Int32Array(nodes.length);
    nodes.forEach((n, i) => {
      const node = tree.nodes[n];
      tokens[i] = node.token;
      slots[i] = base + n;
      parents[i] = node.parent < 0 ? -1 : base + node.parent;
    });
    this.forwards++;
    const out = await this.pass({ tokens, slots, parents, ...opts });
    for (const n of nodes) tree.nodes[n].computedBy.add(variant);
    return out;
  }

  /**
   * Keeps the root-to-node path `path` (tree node indices starting at 0) and appends `newTokens`.
   * The commit itself rides on the next forward (or `flush`).
   */
  async accept(path: number[], newTokens: number[]): Promise<void> {
    await this.flush(); // a step with no forward since the last accept: commit that one first
    const base = this.committed;
    this.toCommit = Int32Array.from(path, (n) => base + n);
    this.tokens.push(...newTokens);
  }

  /** Commits what the last step accepted now, instead of with the next forward. */
  async flush(): Promise<void> {
    const path = this.toCommit;
    if (!path) return;
    this.toCommit = undefined;
    await this.call(() => this.ctx.commit(path));
  }

  private pass(req: ForwardRequest): Promise<ForwardOutput> {
    const commit = this.toCommit;
    this.toCommit = undefined;
    return this.call(() => this.ctx.forward(commit ? { ...req, commit } : req));
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw fromNative(e);
    }
  }
}
