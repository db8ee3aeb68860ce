// CPU benchmark of every strategy (opt-in: CASSPEC_SPEC_BENCH=1, optional CASSPEC_SPEC_BENCH_MODELS,
// _PROMPTS, _TOKENS). Reports tokens/s (prefill included, as Spec-Bench), decode tokens/s and mean
// tokens per verification step over a spread of dev prompts, after one warm-up generation per
// strategy; checks that every strategy's output equals plain decoding. Strategies run interleaved,
// best of CASSPEC_SPEC_BENCH_REPS (default 2) per prompt, to tame noise from a shared machine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model, type GenerationStats } from '../ts/index.js';
import { strategyNames } from '../ts/decode/registry.js';
import { modelDir, repoRoot } from './reference/models.js';

const on = process.env.CASSPEC_SPEC_BENCH === '1';
const models = (process.env.CASSPEC_SPEC_BENCH_MODELS ?? 'pycode-tiny,pycode-small').split(',');
const nPrompts = Number(process.env.CASSPEC_SPEC_BENCH_PROMPTS ?? 8);
const tokens = Number(process.env.CASSPEC_SPEC_BENCH_TOKENS ?? 96);
const reps = Number(process.env.CASSPEC_SPEC_BENCH_REPS ?? 2);

describe.skipIf(!on)('strategy benchmark (cpu)', () => {
  for (const name of models) {
    it(name, async () => {
      const all = readFileSync(join(repoRoot, '..', 'shared', 'bench', 'pycode-dev.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string });
      const prompts = Array.from({ length: nPrompts }, (_, i) => all[Math.floor((i * all.length) / nPrompts)].prompt.slice(-1000));
      const model = await Model.load(modelDir(name), { backend: 'cpu' });
      try {
        // Strategies interleaved per prompt, best of `reps` per (prompt, strategy): load from other
        // processes then hits every strategy alike.
        const names = ['plain', ...strategyNames().filter((s) => s !== 'plain')];
        for (const strategy of names) await model.complete(prompts[0], { maxTokens: 16, strategy, ignoreEos: true }); // warm-up
        const acc = new Map(names.map((n) => [n, { gen: 0, ms: 0, decodeMs: 0, steps: 0, appended: 0, draftMs: 0, verifyMs: 0 }]));
        for (const p of prompts) {
          let ref: number[] | undefined;
          for (const strategy of names) {
            let best: GenerationStats | undefined;
            for (let rep = 0; rep < reps; rep++) {
              const r = await model.complete(p, { maxTokens: tokens, strategy, ignoreEos: true });
              if (strategy === 'plain') ref ??= r.tokens;
              else expect(r.tokens).toEqual(ref);
              if (!best || r.stats.totalMs < best.totalMs) best = r.stats;
            }
            const a = acc.get(strategy)!;
            a.gen += best!.generatedTokens;
            a.ms += best!.totalMs;
            a.decodeMs += best!.totalMs - best!.timeToFirstTokenMs;
            a.steps += best!.steps;
            a.appended += best!.meanAccepted * best!.steps;
            a.draftMs += best!.draftMs;
            a.verifyMs += best!.verifyMs;
          }
        }
        const rows = names.map((n) => {
          const a = acc.get(n)!;
          return `| ${n} | ${((a.gen * 1000) / a.ms).toFixed(1)} | ${(((a.gen - prompts.length) * 1000) / a.decodeMs).toFixed(1)} | ${(a.appended / a.steps).toFixed(2)} | ${((100 * a.draftMs) / (a.draftMs + a.verifyMs)).toFixed(0)}% |`;
        });
        console.log(
          `\n${name} (cpu, ${model.info.device}), ${prompts.length} prompts x ${tokens} tokens\n| strategy | tok/s | decode tok/s | tokens/step | draft share |\n|---|---|---|---|---|\n${rows.join('\n')}`,
        );
      } finally {
        model.dispose();
      }
    }, 1_200_000);
  }
});
