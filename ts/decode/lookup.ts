// Prompt lookup decoding (PLD): propose the continuation of the most recent earlier occurrence of
// the text's last n tokens (n from 3 down to 1), over prompt + generated text. An incremental
// n-gram index keeps each lookup O(n) however long the text grows.

export interface LookupMatch {
  /** Length of the matched suffix (3, 2 or 1). */
  n: number;
  /** Proposed continuation (at least one token). */
  tokens: number[];
}

export class NgramIndex {
  /** maps[n-1]: n-gram key -> end position of its latest occurrence in the indexed text. */
  private readonly maps: Map<number, number>[];
  private text: readonly number[] = [];
  private indexed = 0; // n-grams ending before this position are indexed
  private readonly V: number;

  constructor(
    vocabSize: number,
    readonly maxN = 3,
  ) {
    this.V = Math.max(2, vocabSize);
    this.maps = Array.from({ length: maxN }, () => new Map<number, number>());
  }

  /** Indexes `tokens` (the same array object, grown since the last call, is indexed incrementally). */
  sync(tokens: readonly number[]): void {
    if (tokens !== this.text || tokens.length < this.indexed + 1) this.reset(tokens);
    // An n-gram ending at e is useful only if a token follows it: index ends e <= length - 2.
    const last = tokens.length - 2;
    for (let e = this.indexed; e <= last; e++) {
      let key = 0;
      for (let n = 1; n <= this.maxN && e - n + 1 >= 0; n++) {
        key = key * this.V + tokens[e - n + 1] + 1;
        this.maps[n - 1].set(key, e);
      }
    }
    this.indexed = Math.max(this.indexed, last + 1);
  }

  private reset(tokens: readonly number[]): void {
    for (const m of this.maps) m.clear();
    this.text = tokens;
    this.indexed = 0;
  }

  /**
   * Looks up a continuation of text + extra (extra: draft tokens after the text's last token), at
   * most maxLen tokens, over the combined text. Returns null when no suffix of length >= minN matches.
   */
  lookup(extra: readonly number[], maxLen: number, minN = 1): LookupMatch | null {
    const text = this.text;
    const T = text.length;
    const total = T + extra.length;
    if (total === 0 || maxLen <= 0) return null;
    const at = (i: number) => (i < T ? text[i] : extra[i - T]);
    let key = 0;
    let best: LookupMatch | null = null;
    for (let n = 1; n <= this.maxN && n <= total; n++) {
      key = key * this.V + at(total - n) + 1;
      const e = this.maps[n - 1].get(key);
      if (e === undefined) break; // no longer suffix can match if this one does not
      if (n < minN) continue;
      const end = Math.min(e + maxLen, total - 1);
      const tokens: number[] = [];
      for (let i = e + 1; i <= end; i++) tokens.push(at(i));
      if (tokens.length > 0) best = { n, tokens };
    }
    return best;
  }
}
