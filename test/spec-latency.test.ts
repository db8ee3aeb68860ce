// Latency model: fits roofline-shaped synthetic costs to within 10% median absolute error on
// held-out passes, refines online after a shift, survives JSON round trips; calibration drives a
// (virtual-clock) fake model and the disk cache round-trips.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorLog, keptFractions, LatencyModel, type PassShape } from '../ts/cascade/latency.js';
import { calibrate, loadCached, modelKey, storeCached } from '../ts/cascade/calibrate.js';
import { Rng } from '../ts/decode/rng.js';
import { evenSkipPlan } from '../ts/decode/variants.js';
import { FakeModel } from './strategies/fake-model.js';

// A GPU-like synthetic cost: weights are read once per pass (memory bound: time ~ bytes read by
// the sub-layers that run), arithmetic grows with tokens only past a knee, the LM head per output
// row, attention reads the cache once per pass and computes per token and cache entry;
// multiplicative noise.
function synthetic(s: PassShape, rng: Rng, noise = 0.04): number {
  const weights = 0.6 * s.fa + 1.4 * s.fm + 0.25; // ms to stream the weights
  const compute = s.n * (0.004 * s.fa + 0.01 * s.fm);
  const head = 0.012 * s.nOut;
  const attn = s.ctx * s.fa * 0.00025 + s.n * s.ctx * s.fa * 0.000004;
  const base = 0.05 + weights + compute + head + attn;
  const quant = s.quant ? 0.55 : 1;
  return base * quant * (1 + noise * (2 * rng.uniform() - 1));
}

function randomShape(rng: Rng, quant = 0): PassShape {
  const n = 1 + Math.floor(rng.uniform() * 64);
  const draft = rng.uniform() < 0.5;
  const fa = draft ? 0.3 + 0.7 * rng.uniform() : 1;
  const fm = draft ? 0.3 + 0.7 * rng.uniform() : 1;
  return { n, nOut: draft ? 1 + Math.floor(rng.uniform() * 3) : n, ctx: Math.floor(rng.uniform() * 2048), fa, fm, quant };
}

describe('LatencyModel', () => {
  it('keeps the shape of n it calibrated through thousands of one-token observations (no covariance windup)', () => {
    // A generation that stops drafting only observes n = 1 for a long time; forgetting must not let the
    // unobserved directions grow until one noisy sample throws the cost of n > 1 far off (which locked
    // the router into plain decoding on the H200, 2026-11-30).
    const measured: [number, number][] = [[1, 0.595], [2, 0.591], [4, 0.585], [8, 0.712], [16, 0.897], [32, 1.293], [64, 2.475]];
    const rng = new Rng(3);
    const lm = new LatencyModel();
    for (let rep = 0; rep < 3; rep++) for (const [n, ms] of measured) lm.observe({ n, nOut: n, ctx: 600, fa: 1, fm: 1, quant: 0 }, ms);
    for (let i = 0; i < 4000; i++) lm.observe({ n: 1, nOut: 1, ctx: 600 + (i % 200), fa: 1, fm: 1, quant: 0 }, 0.6 * (1 + 0.1 * (rng.uniform() - 0.5)), 'verify');
    for (const [n, ms] of measured.slice(1, 5)) {
      const p = lm.predict({ n, nOut: n, ctx: 700, fa: 1, fm: 1, quant: 0 });
      expect(Math.abs(p - ms) / ms).toBeLessThan(0.25);
    }
  });

  it('does not fit a one-off pass (graph capture, GC pause) as the cost of its shape', () => {
    const measured: [number, number][] = [[1, 0.595], [2, 0.591], [4, 0.585], [8, 0.712], [16, 0.897], [32, 1.293], [64, 2.475]];
    const lm = new LatencyModel();
    for (let rep = 0; rep < 4; rep++) for (const [n, ms] of measured) lm.observe({ n, nOut: n, ctx: 600, fa: 1, fm: 1, quant: 0 }, ms, 'verify');
    const shape = { n: 24, nOut: 24, ctx: 600, fa: 1, fm: 1, quant: 0, branches: 6 };
    const before = lm.predict(shape);
    lm.observe(shape, 25 * before, 'verify'); // a 25x pass on a shape never seen before
    expect(lm.predict(shape) / before).toBeLessThan(1.2);
    expect(lm.predict({ n: 8, nOut: 8, ctx: 600, fa: 1, fm: 1, quant: 0 }) / 0.712).toBeLessThan(1.2);
  });

  it('fits the measured step-shaped GPU cost of n (H200, pycode-small) within 10% everywhere in 1..64', () => {
    // Measured full-model forwards of n chain tokens (bench --kernels, 2026-11-30): flat to 4, then steps.
    const measured: [number, number][] = [[1, 0.595], [2, 0.591], [4, 0.585], [8, 0.712], [16, 0.897], [32, 1.293], [64, 2.475]];
    const lm = new LatencyModel();
    for (let rep = 0; rep < 3; rep++) for (const [n, ms] of measured) lm.observe({ n, nOut: n, ctx: 600, fa: 1, fm: 1, quant: 0 }, ms);
    const interp = (n: number) => {
      for (let i = 1; i < measured.length; i++) {
        const [n0, t0] = measured[i - 1];
        const [n1, t1] = measured[i];
        if (n <= n1) return t0 + ((t1 - t0) * (n - n0)) / (n1 - n0);
      }
      return measured[measured.length - 1][1];
    };
    let worst = 0;
    for (let n = 1; n <= 64; n++) {
      const p = lm.predict({ n, nOut: n, ctx: 600, fa: 1, fm: 1, quant: 0 });
      worst = Math.max(worst, Math.abs(p - interp(n)) / interp(n));
    }
    expect(worst).toBeLessThan(0.1);
  });

  it('median abs % error <= 10% on held-out passes after calibration-sized training', () => {
    const rng = new Rng(7);
    const lm = new LatencyModel();
    for (let i = 0; i < 60; i++) {
      const s = randomShape(rng);
      lm.observe(s, synthetic(s, rng));
    }
    const log = new ErrorLog(1000);
    for (let i = 0; i < 500; i++) {
      const s = randomShape(rng);
      log.push(lm.predict(s), synthetic(s, rng, 0));
    }
    console.log(`held-out median abs error ${(100 * log.median()).toFixed(2)}%`);
    expect(log.median()).toBeLessThanOrEqual(0.1);
  });

  it('learns quant modes separately and tracks a shift online (forgetting)', () => {
    const rng = new Rng(8);
    const lm = new LatencyModel();
    for (let i = 0; i < 80; i++) {
      const s = randomShape(rng, i % 2);
      lm.observe(s, synthetic(s, rng));
    }
    const q = randomShape(rng, 1);
    expect(Math.abs(lm.predict(q) - synthetic(q, rng, 0)) / synthetic(q, rng, 0)).toBeLessThan(0.15);
    // The device gets 1.5x slower (thermal throttling, another process...): online samples adapt.
    for (let i = 0; i < 400; i++) {
      const s = randomShape(rng);
      lm.observe(s, 1.5 * synthetic(s, rng), 'shifted');
    }
    const log = new ErrorLog(1000);
    for (let i = 0; i < 300; i++) {
      const s = randomShape(rng);
      log.push(lm.predict(s), 1.5 * synthetic(s, rng, 0));
    }
    expect(log.median()).toBeLessThanOrEqual(0.1);
    expect(lm.errors.get('shifted')!.count).toBeGreaterThan(100);
  });

  it('round-trips through JSON', () => {
    const rng = new Rng(9);
    const lm = new LatencyModel();
    for (let i = 0; i < 30; i++) {
      const s = randomShape(rng);
      lm.observe(s, synthetic(s, rng));
    }
    const copy = LatencyModel.fromJSON(JSON.parse(JSON.stringify(lm.toJSON())));
    for (let i = 0; i < 20; i++) {
      const s = randomShape(rng);
      expect(copy.predict(s)).toBeCloseTo(lm.predict(s), 9);
    }
  });

  it('kept fractions of a plan', () => {
    expect(keptFractions(undefined)).toEqual({ fa: 1, fm: 1 });
    expect(keptFractions(Uint8Array.of(0, 0, 1, 0, 1, 1, 0, 0))).toEqual({ fa: 0.5, fm: 0.75 });
  });
});

describe('calibration', () => {
  it('times passes on a scratch context (fake model, virtual clock) and predicts its costs', async () => {
    const model = new FakeModel({ numLayers: 8 });
    const lm = new LatencyModel();
    const plan = evenSkipPlan(8, 6);
    const rep = await calibrate(
      model,
      64,
      2048,
      [
        { quant: 0, sizes: [1, 2, 4, 8, 16, 32, 64], allRows: true },
        { skip: plan, quant: 0, sizes: [1, 2, 4, 8], allRows: false },
        { quant: 9, sizes: [1, 2], allRows: false }, // the fake rejects mode 9: skipped, no error
      ],
      lm,
      { clock: model.now },
    );
    expect(rep.passes).toBe(2 * (7 + 4));
    expect(model.liveContexts).toBe(0);
    // Predict a few passes and compare with the fake's virtual cost.
    const c = model.spec.cost!;
    const truth = (n: number, nOut: number, ctx: number, skip?: Uint8Array) =>
      (c.base + c.perToken * n + c.perCtx * ctx * n + c.perOut * nOut) * model.costFraction(skip, 0);
    const { fa, fm } = keptFractions(plan);
    for (const [n, ctx] of [[1, 100], [12, 64], [40, 200], [3, 20], [6, 150]]) {
      expect(Math.abs(lm.predict({ n, nOut: n, ctx, fa: 1, fm: 1, quant: 0 }) / truth(n, n, ctx) - 1)).toBeLessThan(0.1);
      if (n <= 8) expect(Math.abs(lm.predict({ n, nOut: 1, ctx, fa, fm, quant: 0 }) / truth(n, 1, ctx, plan) - 1)).toBeLessThan(0.1);
    }
  });

  it('caches per model + device on disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'casspec-cache-'));
    const old = process.env.CASSPEC_CACHE_DIR;
    process.env.CASSPEC_CACHE_DIR = dir;
    try {
      const model = new FakeModel({ numLayers: 6, vocab: 50 });
      const key = modelKey(model, 6, 50);
      expect(key).not.toBe(modelKey(new FakeModel({ numLayers: 6, vocab: 51 }), 6, 51));
      expect(loadCached(key)).toBeUndefined();
      const lm = new LatencyModel();
      lm.observe({ n: 1, nOut: 1, ctx: 10, fa: 1, fm: 1, quant: 0 }, 2);
      expect(storeCached(key, lm)).toContain(dir);
      const back = loadCached(key);
      expect(back?.source).toBe('process'); // this process remembers; a new one reads the file
      expect(back!.model.predict({ n: 1, nOut: 1, ctx: 10, fa: 1, fm: 1, quant: 0 })).toBeCloseTo(lm.predict({ n: 1, nOut: 1, ctx: 10, fa: 1, fm: 1, quant: 0 }));
    } finally {
      process.env.CASSPEC_CACHE_DIR = old;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
