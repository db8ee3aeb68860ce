// Prompt lookup (n-gram index), skip-plan helpers.
import { describe, expect, it } from 'vitest';
import { NgramIndex } from '../ts/decode/lookup.js';
import { evenSkipPlan, planString, skipCount, skippedIndices } from '../ts/decode/variants.js';

// Matches must end inside the verified text (its first `verified` tokens, before the last one);
// the continuation may run on into the draft tokens after it.
function naiveLookup(text: number[], maxLen: number, verified = text.length): { n: number; tokens: number[] } | null {
  for (let n = 3; n >= 1; n--) {
    if (text.length < n + 1) continue;
    const suffix = text.slice(text.length - n);
    for (let e = verified - 2; e >= n - 1; e--) {
      let ok = true;
      for (let j = 0; j < n; j++) if (text[e - n + 1 + j] !== suffix[j]) ok = false;
      if (ok) return { n, tokens: text.slice(e + 1, Math.min(e + maxLen, text.length - 1) + 1) };
    }
  }
  return null;
}

describe('NgramIndex', () => {
  it('proposes the continuation of the latest longest match (n = 3..1)', () => {
    const idx = new NgramIndex(100);
    const text = [5, 6, 7, 8, 9, 1, 2, 6, 7, 3, 4, 5, 6, 7];
    idx.sync(text);
    // suffix 5 6 7 matches at 0..2 -> continue with 8 9 1
    expect(idx.lookup([], 3)).toEqual({ n: 3, tokens: [8, 9, 1] });
    // with a draft token 9 appended: suffix (6 7 9)... only "9" matches (position 4) -> 1 2 6
    expect(idx.lookup([9], 3)).toEqual({ n: 1, tokens: [1, 2, 6] });
    expect(idx.lookup([42], 3)).toBeNull();
  });

  it('matches a brute-force search on random texts, incrementally', () => {
    let h = 1;
    const rnd = () => ((h = (Math.imul(h, 1103515245) + 12345) >>> 0) >>> 16) % 5;
    const text: number[] = [];
    const idx = new NgramIndex(5);
    for (let step = 0; step < 300; step++) {
      text.push(rnd());
      idx.sync(text);
      expect(idx.lookup([], 6)).toEqual(naiveLookup(text, 6));
      const extra = [rnd(), rnd()];
      expect(idx.lookup(extra, 4)).toEqual(naiveLookup([...text, ...extra], 4, text.length));
    }
  });

  it('re-indexes when handed a different array', () => {
    const idx = new NgramIndex(10);
    idx.sync([1, 2, 3, 1, 2]);
    expect(idx.lookup([], 2)?.tokens).toEqual([3, 1]);
    idx.sync([4, 5, 4]);
    expect(idx.lookup([], 2)).toEqual({ n: 1, tokens: [5, 4] });
  });
});

describe('skip plans', () => {
  it('keep the first and last layer and skip the requested count', () => {
    for (const L of [4, 8, 16, 32]) {
      for (const ratio of [0.2, 0.4, 0.6]) {
        const plan = evenSkipPlan(L, skipCount(L, ratio));
        const idx = skippedIndices(plan);
        expect(idx.length).toBe(skipCount(L, ratio));
        expect(idx.every((j) => j >= 2 && j < 2 * L - 2)).toBe(true);
        expect(planString(plan)).toHaveLength(L);
      }
    }
    expect(skipCount(4, 0.6)).toBe(4); // capped by the 4 skippable sub-layers of a 4-layer model
    expect(planString(evenSkipPlan(4, 4))).toBe('.xx.');
  });
});
