// A token tree hanging off the sequence's pending token (node 0, the root). Node i lives in KV
// slot committed + i, so parents (added first) always sit in lower slots than their children.

export interface DraftNode {
  token: number;
  parent: number; // -1 for the root
  depth: number; // 0 for the root
  /** Which draft variant proposed it ('root' for the pending token). */
  source: string;
  /** Draft-side estimate that the full model agrees with this token, in [0, 1]. */
  confidence: number;
  children: number[];
  /** Variant keys whose forward pass has written this node's KV (drafters reuse it). */
  computedBy: Set<string>;
}

export class DraftTree {
  readonly nodes: DraftNode[];

  constructor(rootToken: number) {
    this.nodes = [{ token: rootToken, parent: -1, depth: 0, source: 'root', confidence: 1, children: [], computedBy: new Set() }];
  }

  get size(): number {
    return this.nodes.length;
  }

  add(parent: number, token: number, source: string, confidence: number): number {
    const p = this.nodes[parent];
    const i = this.nodes.length;
    this.nodes.push({ token, parent, depth: p.depth + 1, source, confidence, children: [], computedBy: new Set() });
    p.children.push(i);
    return i;
  }

  /** Node indices from the root to i, inclusive. */
  path(i: number): number[] {
    const out: number[] = [];
    for (let n = i; n >= 0; n = this.nodes[n].parent) out.push(n);
    return out.reverse();
  }

  /** Tokens from the root to i, inclusive. */
  pathTokens(i: number): number[] {
    return this.path(i).map((n) => this.nodes[n].token);
  }

  childWithToken(parent: number, token: number): number {
    for (const c of this.nodes[parent].children) if (this.nodes[c].token === token) return c;
    return -1;
  }

  leaves(): number[] {
    return this.nodes.map((_, i) => i).filter((i) => this.nodes[i].children.length === 0);
  }
}
