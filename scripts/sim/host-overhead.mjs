#!/usr/bin/env node
// Where a decoding step's host time goes: a no-op native round trip (truncate to the same length),
// a bare loop of one-token forwards (each folding the previous commit), and plain generation of the
// same length. Their differences are the N-API hop and the decoding loop's own JavaScript.
//
//   node scripts/sim/host-overhead.mjs [--model DIR] [--backend cpu|cuda] [--steps 1000]
// Without --model it times a tiny dummy model (1 layer, hidden 64), where the forward itself is
// small, so the overheads show.
import { parseArgs } from 'node:util';
import { Model } from '../../dist/index.js';

const { values: a } = parseArgs({
  options: { model: { type: 'string' }, backend: { type: 'string', default: 'auto' }, steps: { type: 'string', default: '1000' } },
});
const tiny = {
  vocabSize: 256, hiddenSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 2, headDim: 32, intermediateSize: 128, maxPositions: 8192,
  ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false, torchDtype: 'F32', bosTokenId: 1, eosTokenIds: [2],
};
const m = a.model ? await Model.load(a.model, { backend: a.backend }) : await Model.loadDummy(tiny, { backend: a.backend });
const N = Number(a.steps);
const view = m['view'];
const us = (t0, n) => (((performance.now() - t0) / n) * 1000).toFixed(1);
for (let rep = 0; rep < 3; rep++) {
  const ctx = await view.createContext(N + 16);
  let t = performance.now();
  for (let i = 0; i < N; i++) await ctx.truncate(0);
  const noop = us(t, N);
  t = performance.now();
  for (let i = 0; i < N; i++) {
    const commit = i ? Int32Array.of(i - 1) : undefined;
    await ctx.forward({ tokens: Int32Array.of(3 + (i % 200)), slots: Int32Array.of(i), parents: Int32Array.of(-1), commit });
  }
  const bare = us(t, N);
  ctx.dispose();
  const r = await m.complete([5, 6, 7, 8], { maxTokens: N, ignoreEos: true, strategy: 'plain' });
  const gen = ((r.stats.totalMs / r.stats.generatedTokens) * 1000).toFixed(1);
  console.log(`no-op round trip ${noop} us; bare one-token forward loop ${bare} us/step; plain generation ${gen} us/token`);
}
