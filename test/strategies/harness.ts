// Runs the real generation loop (ts/generate.ts) on a fake model context.
import { generationLoop, type GenerationResult } from '../../ts/generate.js';
import type { Strategy } from '../../ts/decode/strategy.js';
import { createStrategy, type StrategyEnv } from '../../ts/decode/registry.js';
import { CasSpecStrategy, type CasSpecOptions } from '../../ts/cascade/dytc.js';
import { LatencyModel } from '../../ts/cascade/latency.js';
import type { FakeModel } from './fake-model.js';

export interface LoopOptions {
  maxTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  capacity?: number;
  eos?: number[];
}

export async function runFake(model: FakeModel, strategy: Strategy, prompt: number[], o: LoopOptions): Promise<GenerationResult> {
  const ctx = await model.createContext(o.capacity ?? prompt.length + o.maxTokens + 80);
  try {
    const it = generationLoop({
      ctx,
      numLayers: model.spec.numLayers,
      prompt,
      maxTokens: o.maxTokens,
      eos: new Set(o.eos ?? []),
      temperature: o.temperature ?? 0,
      topP: o.topP ?? 1,
      seed: o.seed ?? 0,
      strategy,
      decode: () => ({ push: () => '', flush: () => '' }),
    });
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  } finally {
    ctx.dispose();
  }
}

export function fakeEnv(model: FakeModel): StrategyEnv {
  return { numLayers: model.spec.numLayers, vocabSize: model.spec.vocab, model };
}

/** Deterministic pseudo-random prompt (token 1 first selects the fake's positional regime). */
export function fakePrompt(seed: number, length: number, vocab: number, first?: number): number[] {
  const out: number[] = [];
  let h = (seed * 2654435761) >>> 0;
  for (let i = 0; i < length; i++) {
    h = (Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) + 0x297a2d39) >>> 0;
    out.push(2 + (h % (vocab - 2)));
  }
  if (first !== undefined) out[0] = first;
  return out;
}

/**
 * A strategy by name for fake-model tests. cas-spec gets the fake's virtual clock (so its latency
 * model sees the fake's cost structure, where verification width is cheap, instead of the timing of
 * JavaScript stand-in code) and a fresh, unpersisted latency model.
 */
export function fakeStrategy(name: string, model: FakeModel, extra: Partial<CasSpecOptions> = {}): Strategy {
  if (name !== 'cas-spec') return createStrategy(name, fakeEnv(model));
  return new CasSpecStrategy(fakeEnv(model), { clock: model.now, latency: new LatencyModel(), persist: false, ...extra });
}
