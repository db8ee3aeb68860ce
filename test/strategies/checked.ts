// Wraps a strategy and checks the tree invariants every step: only additions under the root,
// parents before children, distinct sibling tokens, size within the budget and 64 nodes.
import type { Sequence } from '../../ts/decode/sequence.js';
import type { StepContext, Strategy } from '../../ts/decode/strategy.js';
import type { DraftTree } from '../../ts/decode/tree.js';
import type { Verdict } from '../../ts/decode/verify.js';

export class CheckedStrategy implements Strategy {
  readonly name: string;
  steps = 0;
  nodes = 0;
  maxNodes = 0;
  constructor(readonly inner: Strategy) {
    this.name = inner.name;
  }
  get verifyTopk(): number | undefined {
    return this.inner.verifyTopk;
  }
  async draft(seq: Sequence, tree: DraftTree, step: StepContext): Promise<void> {
    const committed = seq.committed;
    await this.inner.draft(seq, tree, step);
    if (seq.committed !== committed) throw new Error(`${this.name}: draft changed the committed prefix`);
    if (tree.size > step.budget + 1) throw new Error(`${this.name}: tree of ${tree.size} nodes exceeds budget ${step.budget}`);
    if (tree.size > 64) throw new Error(`${this.name}: tree of ${tree.size} nodes exceeds 64`);
    tree.nodes.forEach((n, i) => {
      if (i === 0) return;
      if (!(n.parent >= 0 && n.parent < i)) throw new Error(`${this.name}: node ${i} has parent ${n.parent}`);
      if (n.depth !== tree.nodes[n.parent].depth + 1) throw new Error(`${this.name}: node ${i} depth`);
      const sibs = tree.nodes[n.parent].children.map((c) => tree.nodes[c].token);
      if (new Set(sibs).size !== sibs.length) throw new Error(`${this.name}: duplicate sibling tokens under ${n.parent}`);
      if (!(n.confidence >= 0 && n.confidence <= 1)) throw new Error(`${this.name}: node ${i} confidence ${n.confidence}`);
    });
    this.steps++;
    this.nodes += tree.size;
    this.maxNodes = Math.max(this.maxNodes, tree.size);
  }
  observe(tree: DraftTree, verdict: Verdict, seq: Sequence): void {
    this.inner.observe?.(tree, verdict, seq);
  }
  stats(): Record<string, unknown> {
    return this.inner.stats?.() ?? {};
  }
}
