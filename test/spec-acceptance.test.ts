// Acceptance tracker: windowed EMA (lambda 0.7 over 20 steps) with warm-up, calibrated buckets,
// exploration of idle sources.
import { describe, expect, it } from 'vitest';
import { AcceptanceTracker, WindowedEma, confidenceBucket } from '../ts/cascade/acceptance.js';

describe('WindowedEma', () => {
  it('weights the last 20 observations by 0.7^age and blends in the prior during warm-up', () => {
    const e = new WindowedEma(0.7, 20, 0.5, 1);
    expect(e.value).toBe(0.5);
    e.push(1);
    // (1 * 1 + 0.7 * 0.5) / (1 + 0.7)
    expect(e.value).toBeCloseTo(1.35 / 1.7, 12);
    for (let i = 0; i < 30; i++) e.push(i % 2);
    // Full window, no prior: exact weighted mean of the last 20.
    let num = 0;
    let den = 0;
    for (let age = 0; age < 20; age++) {
      const x = (29 - age) % 2;
      num += Math.pow(0.7, age) * x;
      den += Math.pow(0.7, age);
    }
    expect(e.value).toBeCloseTo(num / den, 12);
  });
});

describe('AcceptanceTracker', () => {
  it('tracks per-source rates from step outcomes and calibrates confidence buckets', () => {
    const t = new AcceptanceTracker();
    for (let step = 0; step < 200; step++) {
      const outs = [];
      // High-confidence tokens are accepted 90% of the time, low-confidence 20%.
      for (let k = 0; k < 5; k++) outs.push({ source: 'ls40', bucket: 'c9', accepted: (step * 5 + k) % 10 !== 0 });
      for (let k = 0; k < 5; k++) outs.push({ source: 'ls40', bucket: 'c0', accepted: (step * 5 + k) % 5 === 0 });
      t.recordStep(outs);
    }
    expect(t.rate('ls40')).toBeGreaterThan(0.45);
    expect(t.rate('ls40')).toBeLessThan(0.65);
    expect(t.estimate('ls40', 'c9')).toBeGreaterThan(0.8);
    expect(t.estimate('ls40', 'c0')).toBeLessThan(0.3);
    expect(t.summary().ls40.evaluated).toBe(2000);
    expect(confidenceBucket(0.95)).toBe('c9');
  });

  it('relaxes an idle source back towards its prior (exploration)', () => {
    const t = new AcceptanceTracker();
    t.setPrior('pld', 0.5);
    for (let i = 0; i < 10; i++) t.recordStep([{ source: 'pld', bucket: '', accepted: false }]);
    const low = t.rate('pld');
    expect(low).toBeLessThan(0.05);
    for (let i = 0; i < 60; i++) t.recordStep([{ source: 'ls40', bucket: '', accepted: true }]);
    expect(t.rate('pld')).toBeGreaterThan(0.35);
  });
});
